"""Training: QCFS activations, models, data, the bit-L1 penalty and quantization-aware fine-tuning.

``from lava_deploy.train import TrainConfig, train`` (resolved on first use:
conversion imports this package's models without the trainer).
"""
_TRAINER_NAMES = ("TrainConfig", "TrainResult", "train")
__all__ = list(_TRAINER_NAMES)


def __getattr__(name: str):
    if name in _TRAINER_NAMES:
        from lava_deploy.train import trainer
        return getattr(trainer, name)
    raise AttributeError(f"module 'lava_deploy.train' has no attribute '{name}'")
