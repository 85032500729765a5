"""QCFS model families, described as data and built as ``nn.Sequential``.

A model is a list of layer descriptions (``{"type": "conv", "out": 16, ...}``)
so that a checkpoint can rebuild it exactly and a reader can see it at a
glance. The built network is a plain ``nn.Sequential`` of Conv2d / Linear /
BatchNorm / QCFS / AvgPool2d / Flatten and :class:`ResidualBlock`, optionally
led by an :class:`InputNormalization`: conversion accepts any such sequence,
including one a user assembles by hand.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.qcfs.activation import QCFS
from lava_deploy.qcfs.vit import VisionTransformer, vit_spec

#: Channel widths of the CNN family's conv stages.
CNN_CHANNELS = (16, 32, 64)
#: The ResNet family: stem width, then (channels, stride) of each basic block.
RESNET_STEM = 16
RESNET_BLOCKS = ((16, 1), (32, 2), (64, 2))


class InputNormalization(nn.Module):
    """``(x - mean) / std`` per channel, as torchvision's ``Normalize`` applies it to the images.

    Models trained elsewhere (the QCFS reference code's CIFAR loaders) saw
    normalized images; conversion folds this into the first synapse layer.
    A one-channel image given to a model of more channels is repeated over
    them first (a grayscale dataset fed to a 3-channel network).

    Args:
        mean, std: one value per channel the model takes.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise DeployError(f"input normalization needs one mean and one std per channel, got {len(mean)} "
                              f"and {len(std)}")
        if not all(math.isfinite(m) for m in mean) or not all(math.isfinite(s) and s > 0 for s in std):
            raise DeployError("input normalization needs finite means and positive, finite standard deviations")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]))
        self.register_buffer("std", torch.tensor([float(s) for s in std]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x.expand(-1, len(self.mean), -1, -1)
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def extra_repr(self) -> str:  # noqa: D102
        return f"channels={len(self.mean)}"


class ResidualBlock(nn.Module):
    """A ResNet basic block with QCFS: ``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity when shape is kept, else a 1x1 strided
    convolution with BatchNorm (a projection). Both convolutions are 3x3.
    ``shortcut_gain`` (a buffer, 1 after float training) scales the shortcut:
    quantization-aware fine-tuning sets it to the identity's 8-bit rounded
    scale, so that the float block computes what the integer one does.

    Args:
        in_channels, out_channels: channels in and out.
        stride: of the first convolution and of the projection.
        levels: QCFS levels of both activations.
        threshold: initial QCFS threshold.
        bn: BatchNorm after each convolution (off: biases instead).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, levels: int, threshold: float = 8.0,
                 bn: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.act1 = QCFS(levels, threshold)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            projection = [nn.Conv2d(in_channels, out_channels, 1, stride, bias=not bn)]
            self.shortcut = nn.Sequential(*projection, *([nn.BatchNorm2d(out_channels)] if bn else []))
        self.act2 = QCFS(levels, threshold)
        self.register_buffer("shortcut_gain", torch.ones(()))

    def forward(self, x):  # noqa: D102
        main = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(main + self.shortcut(x) * self.shortcut_gain)


def model_spec(name: str, input_shape: Sequence[int], num_classes: int, input_bits: int = 8) -> list[dict]:
    """Layer descriptions of a named model family for an input ``(C, H, W)``.

    * ``mlp``: two hidden dense layers (128, 64), BatchNorm and QCFS each.
    * ``cnn``: VGG-style: conv-BN-QCFS blocks of 3x3 kernels, 2x2 average pools
      while the image size stays even, then the classifier. Conversion folds a
      pool into the layer after it, which then reads the unpooled map: where
      that would give the classifier more inputs than a Loihi core has axons
      (28x28 images: 64x14x14), one more conv block after the pool keeps the
      classifier's fan-in at C*H*W of the pooled map.
    * ``resnet``: a conv-BN-QCFS stem, three basic blocks (16, 32/2, 64/2
      channels/stride; identity and 1x1 projection shortcuts), a global
      average pool, then the classifier.
    * ``vit``: a Vision Transformer on 4x4 patches of the image (16 tokens), width 64, two pre-norm blocks of
      4-head attention and a 128-wide GELU MLP, mean over tokens, linear head; every synaptic input a QCFS
      code (:mod:`lava_deploy.qcfs.vit`). ``input_bits`` fixes its input codes.
    The classifier is last and has no activation: its outputs are the logits.
    """
    if name == "mlp":
        hidden = [{"type": "dense", "out": w, "bn": True, "act": True} for w in (128, 64)]
        return [*hidden, {"type": "dense", "out": num_classes}]
    if name == "cnn":
        _, height, width = input_shape
        spec: list[dict] = []
        for i, channels in enumerate(CNN_CHANNELS):
            spec.append({"type": "conv", "out": channels, "kernel": 3, "stride": 1, "padding": 1,
                         "bn": True, "act": True})
            if i > 0 and height % 2 == 0 and width % 2 == 0:
                spec.append({"type": "pool", "size": 2})
                height, width = height // 2, width // 2
        if spec[-1]["type"] == "pool" and CNN_CHANNELS[-1] * height * width * 4 > chip.INPUT_AXONS_PER_CORE:
            spec.append({**spec[-2]})
        spec.append({"type": "dense", "out": num_classes})
        return spec
    if name == "resnet":
        _, height, width = input_shape
        spec = [{"type": "conv", "out": RESNET_STEM, "kernel": 3, "stride": 1, "padding": 1, "bn": True, "act": True}]
        for channels, stride in RESNET_BLOCKS:
            spec.append({"type": "block", "out": channels, "stride": stride, "bn": True})
            height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
        if height > 1 or width > 1:
            if height != width:
                raise DeployError(f"the resnet's global pool needs a square feature map, got {height}x{width}")
            spec.append({"type": "pool", "size": height})
        spec.append({"type": "dense", "out": num_classes})
        return spec
    if name == "vit":
        return [vit_spec(input_shape, num_classes, input_bits)]
    raise DeployError(f"unknown model '{name}': use mlp, cnn, resnet or vit")


def build_model(spec: Sequence[dict], input_shape: Sequence[int], levels: int,
                threshold: float = 8.0) -> nn.Sequential:
    """Build the ``nn.Sequential`` a spec describes.

    Besides the families' layers (``conv``, ``dense``, each with optional
    ``bn``, ``act`` and ``bias``, which defaults to no bias where BatchNorm
    follows; ``block``; ``pool``), a spec may start with ``{"type":
    "normalize", "mean": [...], "std": [...]}`` (:class:`InputNormalization`).

    Args:
        spec: layer descriptions from :func:`model_spec` (or hand-written).
        input_shape: ``(C, H, W)`` of one input.
        levels: QCFS levels L of every activation (2**T - 1 for T time steps).
        threshold: initial QCFS threshold.
    """
    channels, height, width = input_shape
    modules: list[nn.Module] = []
    flat = False
    for position, layer in enumerate(spec):
        kind = layer["type"]
        if kind == "normalize":
            if position:
                raise DeployError("input normalization must be the first layer of a spec")
            if channels not in (1, len(layer["mean"])):
                raise DeployError(f"input normalization of {len(layer['mean'])} channels for images of {channels}")
            modules.append(InputNormalization(layer["mean"], layer["std"]))
            channels = len(layer["mean"])
        elif kind == "conv":
            if flat:
                raise DeployError("a conv layer cannot follow a dense layer")
            k, s, p = layer["kernel"], layer.get("stride", 1), layer.get("padding", 0)
            modules.append(nn.Conv2d(channels, layer["out"], k, s, p, bias=layer.get("bias", not layer.get("bn"))))
            channels = layer["out"]
            height, width = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
            if layer.get("bn"):
                modules.append(nn.BatchNorm2d(channels))
        elif kind == "block":
            if flat:
                raise DeployError("a residual block cannot follow a dense layer")
            stride = layer.get("stride", 1)
            modules.append(ResidualBlock(channels, layer["out"], stride, levels, threshold, bn=layer.get("bn", True)))
            channels = layer["out"]
            height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
        elif kind == "vit":
            if modules or flat:
                raise DeployError("a vit is a whole model: nothing comes before it")
            modules.append(VisionTransformer((channels, height, width), layer["classes"], levels, layer["patch"],
                                             layer["dim"], layer["depth"], layer["heads"], layer["mlp"],
                                             layer["input_bits"]))
            channels, height, width, flat = layer["classes"], 1, 1, True
        elif kind == "pool":
            size = layer["size"]
            if height % size or width % size:
                raise DeployError(f"average pool of {size} needs a size divisible by it, got {height}x{width}")
            modules.append(nn.AvgPool2d(size))
            height, width = height // size, width // size
        elif kind == "dense":
            if not flat:
                modules.append(nn.Flatten())
                channels, height, width, flat = channels * height * width, 1, 1, True
            modules.append(nn.Linear(channels, layer["out"], bias=layer.get("bias", not layer.get("bn"))))
            channels = layer["out"]
            if layer.get("bn"):
                modules.append(nn.BatchNorm1d(channels))
        else:
            raise DeployError(f"unknown layer type '{kind}' in model spec")
        if layer.get("act"):
            modules.append(QCFS(levels, threshold))
    return nn.Sequential(*modules)


def qcfs_layers(model: nn.Module) -> list[QCFS]:
    """The QCFS activations of a model, in order."""
    return [m for m in model.modules() if isinstance(m, QCFS)]


def spiking_layers(model: nn.Module) -> list[nn.Module]:
    """The modules whose codes leave as spikes (QCFS activations, a Transformer's function units), in order.

    Each has ``count_spikes`` and, after a forward pass with it set, ``spike_count`` (spikes per sample).
    """
    return [m for m in model.modules() if getattr(m, "emits", False)]
