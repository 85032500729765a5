"""Import a checkpoint saved by the QCFS authors' reference code as a lava-deploy checkpoint.

The QCFS paper's two public implementations save ``model.state_dict()`` of
the same model families under their own module names:

* the newer one (``ANN_SNN_QCFS``): activation ``IF`` with parameter
  ``thresh`` (lambda) and its level count L as a plain attribute (``-L``,
  default 8), a residual block's second activation named ``act``;
* the older one (``SNN_conversion_QCFS``): ReLUs replaced by ``MyFloor``
  with parameter ``up`` (lambda) and L as its attribute ``t`` (``--l``,
  default 16), the block's second activation named ``relu``; max pools
  replaced by average pools at the same positions. A model trained with
  DistributedDataParallel carries the prefix ``module.``.

Both compute the code ``clip(floor(z L / lambda + 1/2), 0, L)``, which is
:class:`~lava_deploy.qcfs.activation.QCFS`'s. L is not in the file, so it is
given. The architectures (their ``Models/VGG.py`` and ``Models/ResNet.py``):

* ``vgg16``: five stages of 2, 2, 3, 3, 3 blocks ``Conv2d(3x3, pad 1, bias)
  BatchNorm IF Dropout`` each ending in a 2x2 average pool (``layerN``), then
  ``classifier``: Flatten, Linear, IF, Dropout, Linear, IF, Dropout, Linear.
  ``vgg16_wobn`` (no BatchNorm) pools with MaxPool2d and is refused.
* ``resnet18`` / ``resnet34``: stem ``conv1`` (3x3 conv without bias,
  BatchNorm, IF), stages ``conv2_x`` .. ``conv5_x`` of 2, 2, 2, 2 / 3, 4, 6, 3
  basic blocks (strides 1, 2, 2, 2), global average pool, ``fc``.
* ``resnet20``: stem of 16 channels, ``conv2_x`` .. ``conv4_x`` of 3 blocks each
  (strides 1, 2, 2), global average pool, ``fc``.
  A basic block is ``residual_function`` (conv 3x3 stride s, BN, IF, conv 3x3,
  BN) plus ``shortcut`` (empty, or a 1x1 conv with stride s and BN where
  the stride or the width changes), then the activation.

Channel widths are read from the file's tensors, so a narrowed network
imports too; every key, shape and dtype is then checked against the model
those widths give. The dataset gives the input shape, the class names and
the normalization the reference code's loader applied, which is folded into
the first layer (:class:`~lava_deploy.qcfs.models.InputNormalization`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from lava_deploy import chip
from lava_deploy.data.datasets import CIFAR10_CLASSES, IDX_DATASETS, load_dataset
from lava_deploy.errors import DeployError
from lava_deploy.files import check_output_file
from lava_deploy.qcfs.activation import QCFS
from lava_deploy.qcfs.models import ResidualBlock, build_model
from lava_deploy.train.checkpoint import ModelInfo, file_sha256, read_plain_file, save_checkpoint

#: Architectures of the reference code's model pools that this importer knows.
ARCHITECTURES = ("vgg16", "vgg16_wobn", "resnet18", "resnet20", "resnet34")
#: Convolutions per stage of VGG-16.
_VGG16_STAGES = (2, 2, 3, 3, 3)
#: (stem width, blocks per stage) of the reference ResNets; stage strides are 1, then 2.
_RESNETS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet20": (3, 3, 3)}
#: What the reference code's loaders feed each dataset: image shape, class names, Normalize(mean, std).
REFERENCE_DATASETS = {
    "cifar10": ((3, 32, 32), CIFAR10_CLASSES, ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))),
    "cifar100": ((3, 32, 32), [str(c) for c in range(100)],
                 (tuple(v / 255 for v in (129.3, 124.1, 112.4)), tuple(v / 255 for v in (68.2, 65.4, 70.4)))),
}
#: The activation's parameter and the block's second activation, by reference implementation.
_LAYOUTS = {"thresh": ("IF", "act"), "up": ("MyFloor", "relu")}
#: Tensors of a BatchNorm in a state dict.
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: Bits of an input pixel: the reference code's ToTensor() gives k / 255.
INPUT_BITS = 8


@dataclass(frozen=True)
class _Part:
    """One module of the reference network, in execution order: what it is and its state-dict name."""

    kind: str               # conv, bn, act, linear, avgpool, maxpool, globalpool, block
    name: str
    stride: int = 1
    bias: bool = False


def reference_layout(arch: str) -> list[_Part]:
    """The reference network's modules that matter for conversion, in execution order (Dropout and
    Flatten do nothing at inference and hold no tensors)."""
    if arch in ("vgg16", "vgg16_wobn"):
        bn = arch == "vgg16"
        step = 4 if bn else 3                   # conv, [bn], act, dropout
        parts = []
        for stage, convs in enumerate(_VGG16_STAGES, 1):
            for j in range(convs):
                parts.append(_Part("conv", f"layer{stage}.{j * step}", bias=True))
                parts += [_Part("bn", f"layer{stage}.{j * step + 1}")] if bn else []
                parts.append(_Part("act", f"layer{stage}.{j * step + step - 2}"))
            parts.append(_Part("avgpool" if bn else "maxpool", f"layer{stage}.{convs * step}"))
        return parts + [_Part("linear", "classifier.1", bias=True), _Part("act", "classifier.2"),
                        _Part("linear", "classifier.4", bias=True), _Part("act", "classifier.5"),
                        _Part("linear", "classifier.7", bias=True)]
    if arch in _RESNETS:
        parts = [_Part("conv", "conv1.0"), _Part("bn", "conv1.1"), _Part("act", "conv1.2")]
        for stage, blocks in enumerate(_RESNETS[arch]):
            parts += [_Part("block", f"conv{stage + 2}_x.{b}", stride=2 if stage and not b else 1)
                      for b in range(blocks)]
        return parts + [_Part("globalpool", "avg_pool"), _Part("linear", "fc", bias=True)]
    raise DeployError(f"unknown architecture '{arch}' (choose from {', '.join(ARCHITECTURES)})")


def import_qcfs(checkpoint: str | Path, arch: str, dataset: str, levels: int, output: str | Path,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> ModelInfo:
    """Read a QCFS reference checkpoint and write it as a lava-deploy checkpoint, ready for ``export``.

    Args:
        checkpoint: a ``.pth`` state dict saved by either QCFS reference implementation.
        arch: ``vgg16``, ``resnet18``, ``resnet20`` or ``resnet34`` (``vgg16_wobn`` is refused: max pooling).
        dataset: a dataset spec (``cifar10:DIR``, ``mnist``, ``npz:PATH``, ...) or ``cifar10`` / ``cifar100``
            alone; it gives the input shape, the class names and, for CIFAR, the reference loader's
            normalization, and export later measures the test accuracy on it.
        levels: L, the level count the network was trained with (not stored in the file); any L >= 1:
            T = ceil(log2(L + 1)) and codes clamp to L.
        output: the checkpoint to write.
        mean, std: the normalization the images had in training, per channel (one value: every channel);
            None: the reference loader's for the dataset (none for datasets it has no loader for).

    Returns:
        What the written checkpoint records.

    Raises:
        DeployError: a bad path, a file that is not such a state dict (keys, shapes, dtypes or values),
            a max pool, an image size the architecture cannot take, a bad L (one line).
    """
    path = Path(checkpoint)
    check_output_file(output, inputs=[path])
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels < (1 << chip.TIME_STEPS_MAX):
        raise DeployError(f"L = {levels}: the level count must be a whole number in "
                          f"1..{(1 << chip.TIME_STEPS_MAX) - 1} (at most {chip.TIME_STEPS_MAX} time steps)")
    parts = reference_layout(arch)
    pooled = next((part for part in parts if part.kind == "maxpool"), None)
    if pooled is not None:
        raise DeployError(f"{arch}: {pooled.name} is a MaxPool2d, which has no exact spiking form (a maximum is "
                          "not a weighted sum of spikes); lava-deploy converts average pools only: use vgg16")
    input_shape, class_names, default_norm = _dataset_inputs(dataset)
    state = _read_state_dict(path)
    param = _activation_parameter(state, path)
    try:
        spec, mapping = _spec_and_mapping(parts, state, param, input_shape)
        _check_keys(state, mapping)
    except _Mismatch as exc:
        other = next((a for a in ARCHITECTURES if a != arch and _matches(a, state, param, input_shape)), None)
        hint = f" (its keys are {other}'s: --arch {other})" if other else ""
        raise DeployError(f"{path} is not a {arch} state dict of the QCFS reference code: {exc}{hint}") from None
    first = state[f"{parts[0].name}.weight"]
    normalization = _normalization(mean, std, default_norm, first.shape[1], input_shape[0], dataset)
    spec = ([normalization] if normalization else []) + spec
    if spec[-1]["out"] != len(class_names):
        raise DeployError(f"{path}: '{parts[-1].name}' has {spec[-1]['out']} outputs, but dataset '{dataset}' has "
                          f"{len(class_names)} classes")
    model = _load(spec, input_shape, levels, state, mapping, path, arch)
    info = ModelInfo(model=f"qcfs-{arch}", spec=spec, input_shape=tuple(input_shape), levels=levels,
                     input_bits=INPUT_BITS, dataset=dataset, class_names=list(class_names),
                     training={"imported_from": path.name, "sha256": file_sha256(path),
                               "reference_activation": _LAYOUTS[param][0], "architecture": arch})
    save_checkpoint(output, model, info)
    return info


class _Mismatch(DeployError):
    """The file's keys or tensor ranks are not the architecture's."""


def _dataset_inputs(dataset: str) -> tuple[tuple[int, int, int], list[str], Optional[tuple]]:
    """Image shape, class names and the reference loader's (mean, std), without loading what is known."""
    kind = dataset.partition(":")[0]
    if kind in REFERENCE_DATASETS:
        shape, names, norm = REFERENCE_DATASETS[kind]
        return shape, list(names), norm
    if kind in IDX_DATASETS:
        return (1, 28, 28), list(IDX_DATASETS[kind].class_names), None
    data = load_dataset(dataset)
    return data.input_shape, list(data.class_names), None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's state dict: a dict of tensors by name (a DistributedDataParallel prefix ``module.`` removed)."""
    state = read_plain_file(path, "save model.state_dict()")
    if not isinstance(state, dict) or not state \
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DeployError(f"{path} is not a state dict (a dict of tensors by name, as torch.save(model.state_dict()) "
                          "writes)")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _activation_parameter(state: dict[str, torch.Tensor], path: Path) -> str:
    """``thresh`` (IF, the newer implementation) or ``up`` (MyFloor, the older), whichever the file holds."""
    found = {key.rpartition(".")[2] for key in state} & set(_LAYOUTS)
    if len(found) != 1:
        what = "both IF ('thresh') and MyFloor ('up') thresholds" if found else "no QCFS threshold ('thresh' or 'up')"
        raise DeployError(f"{path} holds {what}: not a checkpoint of a QCFS reference implementation")
    return found.pop()


def _weight(state: dict[str, torch.Tensor], name: str, rank: int) -> torch.Tensor:
    """``name.weight`` of the given rank (its widths are read from it)."""
    key = f"{name}.weight"
    if key not in state:
        raise _Mismatch(f"it has no '{key}'")
    if state[key].dim() != rank:
        raise _Mismatch(f"'{key}' has shape {tuple(state[key].shape)}, not {rank}-dimensional")
    return state[key]


def _spec_and_mapping(parts: list[_Part], state: dict[str, torch.Tensor], param: str,
                      input_shape: Sequence[int]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """This project's spec for the reference network, and the (kind, reference name, reference key suffix)
    of every tensor, in the order the built model's modules hold them."""
    spec: list[dict] = []
    tensors: list[tuple[str, str, str]] = []
    height, width = input_shape[1:]
    block_act = _LAYOUTS[param][1]
    for part in parts:
        if part.kind == "conv":
            out = _weight(state, part.name, 4).shape[0]
            spec.append({"type": "conv", "out": int(out), "kernel": 3, "stride": 1, "padding": 1, "bias": part.bias})
            tensors += [("conv", part.name, "weight")] + ([("conv", part.name, "bias")] if part.bias else [])
        elif part.kind == "linear":
            spec.append({"type": "dense", "out": int(_weight(state, part.name, 2).shape[0]), "bias": part.bias})
            tensors += [("linear", part.name, "weight"), ("linear", part.name, "bias")]
        elif part.kind == "bn":
            spec[-1]["bn"] = True
            tensors += [("bn", part.name, key) for key in _BN_KEYS]
        elif part.kind == "act":
            spec[-1]["act"] = True
            tensors.append(("act", part.name, param))
        elif part.kind in ("avgpool", "maxpool"):      # a max pool only for telling its keys apart: refused
            spec.append({"type": "pool", "size": 2})
            height, width = height // 2, width // 2
        elif part.kind == "globalpool":
            if height != width:
                raise DeployError(f"the global average pool '{part.name}' meets a {height}x{width} map; lava-deploy "
                                  "pools square maps only")
            spec += [{"type": "pool", "size": height}] if height > 1 else []
            height = width = 1
        else:       # a basic block
            out = int(_weight(state, f"{part.name}.residual_function.0", 4).shape[0])
            spec.append({"type": "block", "out": out, "stride": part.stride, "bn": True})
            projection = part.stride != 1 or _channels(spec[:-1], input_shape) != out
            inner = [("residual_function.0", "weight"), *(("residual_function.1", k) for k in _BN_KEYS),
                     ("residual_function.2", param), ("residual_function.3", "weight"),
                     *(("residual_function.4", k) for k in _BN_KEYS)]
            if projection:
                inner += [("shortcut.0", "weight"), *(("shortcut.1", k) for k in _BN_KEYS)]
            tensors += [("block", part.name, f"{module}.{key}") for module, key in inner + [(block_act, param)]]
            height, width = (height - 1) // part.stride + 1, (width - 1) // part.stride + 1
    return spec, tensors


def _channels(spec: list[dict], input_shape: Sequence[int]) -> int:
    """Channels after the last layer of ``spec`` that has any."""
    return next((layer["out"] for layer in reversed(spec) if "out" in layer), input_shape[0])


def _check_keys(state: dict[str, torch.Tensor], tensors: list[tuple[str, str, str]]) -> None:
    """The file holds exactly the architecture's keys."""
    expected = [f"{name}.{suffix}" for _, name, suffix in tensors]
    missing = [key for key in expected if key not in state]
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        first = f"it has no '{missing[0]}'" if missing else f"it holds '{unexpected[0]}', which the architecture has not"
        raise _Mismatch(f"{first} ({len(missing)} key(s) missing, {len(unexpected)} unexpected)")


def _matches(arch: str, state: dict[str, torch.Tensor], param: str, input_shape: Sequence[int]) -> bool:
    """Whether the file's keys are exactly ``arch``'s (for a hint when they are not the requested one's)."""
    try:
        _check_keys(state, _spec_and_mapping(reference_layout(arch), state, param, input_shape)[1])
    except DeployError:
        return False
    return True


def _normalization(mean: Optional[Sequence[float]], std: Optional[Sequence[float]], default: Optional[tuple],
                   channels: int, image_channels: int, dataset: str) -> Optional[dict]:
    """The spec's ``normalize`` layer, or None where the images go in as they are."""
    if (mean is None) != (std is None):
        raise DeployError("give both --mean and --std, or neither (the dataset's reference normalization)")
    if mean is None:
        mean, std = default if default is not None else ((0.0,), (1.0,))
    values = {}
    for what, given in (("mean", mean), ("std", std)):
        given = [float(v) for v in given]
        if len(given) not in (1, channels):
            raise DeployError(f"--{what} has {len(given)} values for a first layer of {channels} input channels")
        values[what] = given * channels if len(given) == 1 else given
    if not all(map(math.isfinite, values["mean"])) or not all(math.isfinite(v) and v > 0 for v in values["std"]):
        raise DeployError("--mean must be finite and --std positive and finite")
    if image_channels not in (1, channels):
        raise DeployError(f"the first layer takes {channels} channels, dataset '{dataset}' has images of "
                          f"{image_channels}")
    if image_channels == channels and all(m == 0 for m in values["mean"]) and all(v == 1 for v in values["std"]):
        return None
    return {"type": "normalize", **values}


#: The reference basic block's modules, by this project's ResidualBlock names.
_BLOCK_MODULES = {"residual_function.0": "conv1", "residual_function.1": "bn1", "residual_function.2": "act1",
                  "residual_function.3": "conv2", "residual_function.4": "bn2", "shortcut.0": "shortcut.0",
                  "shortcut.1": "shortcut.1", "act": "act2", "relu": "act2"}
_MODULE_KINDS = {"conv": nn.Conv2d, "linear": nn.Linear, "bn": nn.modules.batchnorm._BatchNorm, "act": QCFS,
                 "block": ResidualBlock}


def _our_key(kind: str, index: str, suffix: str) -> str:
    """This project's state-dict key of the reference tensor ``suffix`` of a module at ``index``."""
    if kind == "block":
        module, _, key = suffix.rpartition(".")
        return f"{index}.{_BLOCK_MODULES[module]}.{'threshold' if key in _LAYOUTS else key}"
    return f"{index}.{'threshold' if suffix in _LAYOUTS else suffix}"


def _load(spec: list[dict], input_shape: Sequence[int], levels: int, state: dict[str, torch.Tensor],
          tensors: list[tuple[str, str, str]], path: Path, arch: str) -> nn.Sequential:
    """The spec's model holding the file's tensors, after checking each one's shape, dtype and values."""
    try:
        with torch.device("meta"):
            skeleton = build_model(spec, input_shape, levels)
    except DeployError as exc:
        raise DeployError(f"{arch} cannot take images of {tuple(input_shape)}: {exc}") from None
    ours = [(name, module) for name, module in skeleton.named_children()
            if isinstance(module, tuple(_MODULE_KINDS.values()))]
    modules = list(dict.fromkeys((kind, name) for kind, name, _ in tensors))
    if len(ours) != len(modules) or not all(isinstance(module, _MODULE_KINDS[kind])
                                            for (kind, _), (_, module) in zip(modules, ours)):
        raise RuntimeError(f"the spec of {arch} does not build the reference's modules")
    index = {name: our_name for (_, name), (our_name, _) in zip(modules, ours)}
    expected = skeleton.state_dict()
    values = {}
    for kind, name, suffix in tensors:
        key, ours_key = f"{name}.{suffix}", _our_key(kind, index[name], suffix)
        values[ours_key] = _checked(state[key], key, tuple(expected[ours_key].shape), path)
    model = build_model(spec, input_shape, levels)
    model.load_state_dict({**model.state_dict(), **values})
    return model.eval()


def _checked(tensor: torch.Tensor, key: str, shape: tuple, path: Path) -> torch.Tensor:
    """One reference tensor, checked, in this project's shape: a threshold is one positive number, a
    BatchNorm's batch count any integer, every other tensor finite floating point of the expected shape."""
    counter = key.endswith("num_batches_tracked")
    if tensor.is_floating_point() == counter or tensor.is_complex():
        raise DeployError(f"{path}: '{key}' is {tensor.dtype}, expected "
                          + ("an integer count" if counter else "floating point"))
    threshold = key.rpartition(".")[2] in _LAYOUTS
    if (tensor.numel() != 1 or tensor.dim() > 1) if threshold else tuple(tensor.shape) != shape:
        want = "one number" if threshold else str(shape)
        raise DeployError(f"{path}: '{key}' has shape {tuple(tensor.shape)}, expected {want}")
    if counter:
        return tensor.reshape(shape)
    tensor = tensor.detach().to(torch.float32).reshape(shape)
    if not bool(torch.isfinite(tensor).all()):
        raise DeployError(f"{path}: '{key}' holds NaN or infinite values")
    if threshold and float(tensor) <= 0:
        raise DeployError(f"{path}: threshold '{key}' is {float(tensor):.4g}; a QCFS threshold must be positive")
    if key.endswith("running_var") and bool((tensor < 0).any()):
        raise DeployError(f"{path}: '{key}' holds negative variances")
    return tensor
