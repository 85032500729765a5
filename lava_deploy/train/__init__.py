"""Training: QCFS networks with the bit-L1 penalty, quantization-aware fine-tuning and checkpoints.

``from lava_deploy.train import TrainConfig, train``.
"""
from lava_deploy.train.trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
