"""The QCFS ANN: the quantization-clip-floor-shift activation, the model families and the residual block.

Below both training and conversion, which each build on these modules.
"""
from lava_deploy.qcfs.activation import QCFS
from lava_deploy.qcfs.models import InputNormalization, ResidualBlock, build_model, model_spec, qcfs_layers

__all__ = ["QCFS", "InputNormalization", "ResidualBlock", "build_model", "model_spec", "qcfs_layers"]
