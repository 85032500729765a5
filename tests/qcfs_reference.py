"""The QCFS authors' networks in their own form, for testing the importer against them.

Written from the reference code's model definitions (``Models/VGG.py``,
``Models/ResNet.py``, ``Models/layer.py`` of ANN_SNN_QCFS; ``modules.py`` of
SNN_conversion_QCFS), not from lava_deploy's importer: :func:`forward` is
their ANN forward pass as functions of a state dict in their key layout,
with their two activations as they write them,

* ``IF`` (T = 0): ``x / thresh``, clamp to [0, 1], ``floor(x L + 0.5) / L``, times ``thresh``;
* ``MyFloor``: ``x / up``, ``floor(x t + 0.5) / t``, clamp to [0, 1], times ``up``;

on images normalized as their loaders do (``ToTensor`` then ``Normalize``).
With ``calibrate`` it first creates every tensor that is missing (random
weights) and sets each BatchNorm's statistics and each threshold from the
batch it sees, as a trained network's might be: each activation's threshold
at the 99th percentile of its input and BatchNorm's shift around -0.5, so
that about a third of the neurons are active and their codes use the whole
range 0..L. With ``training`` it is trainable as theirs is: BatchNorm on
batch statistics, a straight-through floor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: VGG-16's stages: conv widths, each stage ending in an average pool ('M').
VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
#: ResNets: (stem width, (width, blocks) per stage); stage strides are 1, 2, 2, 2.
RESNETS = {"resnet18": (64, ((64, 2), (128, 2), (256, 2), (512, 2))),
           "resnet34": (64, ((64, 3), (128, 4), (256, 6), (512, 3))),
           "resnet20": (16, ((16, 3), (32, 3), (64, 3)))}
#: Their CIFAR-10 loader's Normalize.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class Reference:
    """A reference network: its architecture, widths divided by ``narrow``, activation flavour and L.

    Args:
        arch: vgg16, vgg16_wobn, resnet18, resnet20 or resnet34.
        flavour: ``IF`` (newer implementation, tensor ``thresh``) or ``MyFloor`` (older, tensor ``up``).
        levels: L (IF's ``L``, MyFloor's ``t``).
        narrow: every channel width (and VGG's 4096 hidden units) divided by this, for fast tests.
        num_classes: outputs of the classifier (the first conv takes the images' channels).
    """

    def __init__(self, arch: str, flavour: str, levels: int, narrow: int = 1, num_classes: int = 10,
                 seed: int = 0) -> None:
        self.arch, self.flavour, self.levels, self.narrow, self.num_classes = arch, flavour, levels, narrow, num_classes
        self.state: dict[str, torch.Tensor] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self.calibrating = self.training = False
        self.codes: list[torch.Tensor] | None = None       # every activation's codes, when recording

    # ---- their modules, as functions of the state dict ----

    def _tensor(self, key: str, shape: tuple, init: str) -> torch.Tensor:
        if key not in self.state:
            assert self.calibrating, f"missing {key}"
            if init == "kaiming":       # kaiming_normal_(fan_out), as their init
                fan_out = shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1)
                value = torch.randn(shape, generator=self.generator) * (2.0 / fan_out) ** 0.5
            elif init == "linear":
                value = (torch.rand(shape, generator=self.generator) * 2 - 1) / shape[-1] ** 0.5
            else:                       # small biases, BatchNorm's affine parameters
                value = {"bias": 0.1, "gamma": 0.25, "beta": 0.3}[init] * torch.randn(shape, generator=self.generator)
                value = value + {"gamma": 1.0, "beta": -0.5}.get(init, 0.0)
            self.state[key] = value
        return self.state[key]

    def conv(self, x: torch.Tensor, name: str, out: int, kernel: int = 3, stride: int = 1, bias: bool = False):
        weight = self._tensor(f"{name}.weight", (out, x.shape[1], kernel, kernel), "kaiming")
        b = self._tensor(f"{name}.bias", (out,), "bias") if bias else None
        return F.conv2d(x, weight, b, stride, kernel // 2)

    def linear(self, x: torch.Tensor, name: str, out: int):
        return F.linear(x, self._tensor(f"{name}.weight", (out, x.shape[1]), "linear"),
                        self._tensor(f"{name}.bias", (out,), "bias"))

    def bn(self, x: torch.Tensor, name: str):
        channels = x.shape[1]
        weight = self._tensor(f"{name}.weight", (channels,), "gamma")
        bias = self._tensor(f"{name}.bias", (channels,), "beta")
        if self.calibrating:
            dims = [0, 2, 3] if x.dim() == 4 else [0]
            self.state[f"{name}.running_mean"] = x.mean(dims)
            self.state[f"{name}.running_var"] = x.var(dims)
            self.state[f"{name}.num_batches_tracked"] = torch.tensor(1000)
        if self.training:
            self.state[f"{name}.num_batches_tracked"] += 1
        return F.batch_norm(x, self.state[f"{name}.running_mean"], self.state[f"{name}.running_var"], weight, bias,
                            self.training, 0.1, 1e-5)

    def act(self, x: torch.Tensor, name: str):
        key = f"{name}.{'thresh' if self.flavour == 'IF' else 'up'}"
        if self.calibrating:
            sample = x.flatten()[:: max(1, x.numel() // 200_000)]
            self.state[key] = torch.tensor([max(float(torch.quantile(sample, 0.99)), 0.05)])
        threshold, levels = self.state[key], self.levels
        if self.flavour == "IF":
            x = torch.clamp(x / threshold, 0, 1)
            x = self._floor(x * levels + 0.5) / levels
        else:
            x = x / threshold
            x = self._floor(x * levels + 0.5) / levels
            x = torch.clamp(x, 0, 1)
        if self.codes is not None:
            self.codes.append(torch.round(x * levels).to(torch.int64))
        return x * threshold

    def _floor(self, x: torch.Tensor) -> torch.Tensor:
        """floor, with the identity's gradient (their GradFloor) when training."""
        return x + (torch.floor(x) - x).detach() if self.training else torch.floor(x)

    # ---- their architectures ----

    def _width(self, width: int) -> int:
        return max(1, width // self.narrow)

    def _vgg(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.arch == "vgg16"               # vgg16_wobn: no BatchNorm, and max pools
        step = 4 if bn else 3
        for stage, widths in enumerate(VGG16, 1):
            for j, width in enumerate(widths):   # Conv2d, BatchNorm2d, IF, Dropout per conv
                x = self.conv(x, f"layer{stage}.{step * j}", self._width(width), bias=True)
                x = self.bn(x, f"layer{stage}.{4 * j + 1}") if bn else x
                x = self.act(x, f"layer{stage}.{step * j + step - 2}")
            x = F.avg_pool2d(x, 2, 2) if bn else F.max_pool2d(x, 2, 2)
        x = x.flatten(1)                        # classifier: Flatten, Linear, IF, Dropout, Linear, IF, Dropout, Linear
        x = self.act(self.linear(x, "classifier.1", self._width(4096)), "classifier.2")
        x = self.act(self.linear(x, "classifier.4", self._width(4096)), "classifier.5")
        return self.linear(x, "classifier.7", self.num_classes)

    def _resnet(self, x: torch.Tensor) -> torch.Tensor:
        stem, stages = RESNETS[self.arch]
        x = self.act(self.bn(self.conv(x, "conv1.0", self._width(stem)), "conv1.1"), "conv1.2")
        for s, (width, blocks) in enumerate(stages):
            for b in range(blocks):
                name, stride, out = f"conv{s + 2}_x.{b}", 2 if s and not b else 1, self._width(width)
                r = self.conv(x, f"{name}.residual_function.0", out, stride=stride)
                r = self.act(self.bn(r, f"{name}.residual_function.1"), f"{name}.residual_function.2")
                r = self.bn(self.conv(r, f"{name}.residual_function.3", out), f"{name}.residual_function.4")
                shortcut = x
                if stride != 1 or x.shape[1] != out:
                    shortcut = self.bn(self.conv(x, f"{name}.shortcut.0", out, kernel=1, stride=stride),
                                       f"{name}.shortcut.1")
                x = self.act(r + shortcut, f"{name}.{'act' if self.flavour == 'IF' else 'relu'}")
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.linear(x, "fc", self.num_classes)

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors (all but BatchNorm's statistics), made to require gradients."""
        return [v.requires_grad_() for k, v in self.state.items() if not k.rsplit(".", 1)[1].startswith(("running", "num"))]

    def double(self) -> "Reference":
        """The same network in float64 (their arithmetic, without float32's rounding)."""
        copy = Reference(self.arch, self.flavour, self.levels, self.narrow, self.num_classes)
        copy.state = {k: v.detach().double() if v.is_floating_point() else v for k, v in self.state.items()}
        return copy

    def forward(self, x: torch.Tensor, calibrate: bool = False) -> torch.Tensor:
        """Logits of normalized images ``x`` (their model's output in ANN mode)."""
        self.calibrating = calibrate
        with torch.set_grad_enabled(self.training):
            logits = self._resnet(x) if self.arch in RESNETS else self._vgg(x)
            if calibrate:       # every class's logit standardized over the batch: all classes get predicted
                name = "fc" if self.arch in RESNETS else "classifier.7"
                mean, std = logits.mean(0), logits.std(0)
                self.state[f"{name}.weight"] /= std[:, None]
                self.state[f"{name}.bias"] = (self.state[f"{name}.bias"] - mean) / std
                logits = (logits - mean) / std
            return logits


def normalize(codes: torch.Tensor, mean, std, channels: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Their loaders: ``ToTensor`` (k / 255), a grayscale image repeated over ``channels`` (as
    ``Grayscale(channels)`` does), then ``Normalize(mean, std)``."""
    x = (codes.to(dtype) / 255).expand(-1, channels, -1, -1)
    mean = torch.tensor(mean, dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def smooth_images(n: int, shape: tuple, seed: int) -> torch.Tensor:
    """Random 8-bit images with structure at several scales (not white noise), as int64 codes."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    image = torch.zeros(n, channels, height, width)
    for size, weight in ((2, 1.0), (4, 0.6), (8, 0.4), (height, 0.2)):
        coarse = torch.rand(n, channels, min(size, height), min(size, width), generator=generator)
        image += weight * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    image = (image - image.amin((1, 2, 3), keepdim=True)) / (image.amax((1, 2, 3), keepdim=True)
                                                            - image.amin((1, 2, 3), keepdim=True))
    return torch.floor(image * 255 + 0.5).to(torch.int64)
