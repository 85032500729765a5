"""Error-free folding of a QCFS network into integer-domain layers (``docs/conversion.md``).

Each synapse layer becomes ``k_l = clip(floor(W~ k_{l-1} + b~), 0, L)`` (plus
``W~_skip k_source`` for the second layer of a residual block) with

    W~ = W_hat * (lambda_{l-1} / L_{l-1}) * (L_l / lambda_l)
    b~ = b_hat * L_l / lambda_l + 1/2

where (W_hat, b_hat) have BatchNorm folded in, the QCFS half step moved into the
bias, and any average pool between two layers folded into the second one.
An input normalization ``(x - m) / s`` folds into the first layer: its weights
divided by s, and ``-m / s`` of every pixel inside the image moved into the
bias, which differs per neuron where zero padding meets it.
The result is still float; :mod:`lava_deploy.convert.fixed_point` rounds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lava_deploy.network import conv_output_size
from lava_deploy.errors import DeployError
from lava_deploy.qcfs.models import InputNormalization, ResidualBlock
from lava_deploy.qcfs.activation import QCFS

#: Modules that do nothing at inference (Flatten is implied by a dense layer).
_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)


@dataclass
class FoldedLayer:
    """A synapse layer in the integer code domain, before rounding.

    ``kind`` names the synapse kind (``lava_deploy.network.SYNAPSE_KINDS``) and
    ``geometry`` its keyword arguments beyond the weights (a conv's stride,
    padding, dilation, groups). ``levels`` is L of the QCFS activation that
    follows, or 0 for the readout layer, whose outputs are logits (scaled by a
    positive factor).
    ``source`` is the Conv2d/Linear it came from; when no BatchNorm follows it,
    ``weight = source.weight * weight_scale`` (pool spread aside) and
    ``bias = source.bias * bias_scale + bias_offset``, which is what
    quantization-aware fine-tuning rounds through.
    """

    kind: str
    weight: np.ndarray
    bias: np.ndarray        # (C,), or (C, H, W) where an input normalization meets zero padding
    levels: int
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    geometry: dict = field(default_factory=dict)
    source: Optional[nn.Module] = None
    weight_scale: float = 1.0
    bias_scale: float = 1.0
    bias_offset: float = 0.0
    skip: Optional["FoldedSkip"] = None


@dataclass
class FoldedSkip:
    """A residual shortcut into a folded layer, in the same code domain, before rounding.

    ``weight`` is ``(out, in, kH, kW)``: a diagonal 1x1 kernel for the identity,
    else the projection's (BatchNorm folded). ``module`` owns the tensor named
    ``tensor`` that quantization-aware fine-tuning rounds: the projection's
    ``weight``, or the block's scalar ``shortcut_gain`` for the identity; either
    way ``weight = module.<tensor> * weight_scale`` (times the identity's diagonal).
    """

    source: int
    weight: np.ndarray
    input_shape: tuple[int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    module: Optional[nn.Module] = None
    tensor: str = "weight"
    weight_scale: float = 1.0


def leaf_modules(model: nn.Module) -> list[nn.Module]:
    """The model's leaf modules in execution order (nested Sequentials flattened)."""
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in leaf_modules(child)]
    return [model]


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value), int(value))


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor,
                   bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of a synapse layer with the BatchNorm after it folded in (float64)."""
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), (bias - bn.running_mean.double()) * scale + bn.bias.detach().double()


def _spread_pool(weight: torch.Tensor, pool: int) -> torch.Tensor:
    """Fold a preceding ``pool x pool`` average pool into conv kernels (out, in, kH, kW)."""
    return weight.repeat_interleave(pool, dim=2).repeat_interleave(pool, dim=3) / pool**2


def fold_model(model: nn.Module, input_shape: Sequence[int], input_bits: int) -> list[FoldedLayer]:
    """Fold a QCFS ``nn.Sequential`` into integer-domain layers.

    Args:
        model: Conv2d / Linear, each optionally followed by BatchNorm and QCFS,
            with AvgPool2d between activations, and ResidualBlocks after a
            layer with an activation; the last synapse has no QCFS. An
            InputNormalization may come first, right before a Conv2d or Linear.
        input_shape: ``(C, H, W)``.
        input_bits: T_in; input pixel = k / (2**T_in - 1).

    Raises:
        DeployError: a module that has no exact spiking equivalent (ReLU, max
            pooling, pooling before an activation, ...).
    """
    modules = [m for m in leaf_modules(model) if not isinstance(m, _PASS_THROUGH)]
    normalization = modules.pop(0) if modules and isinstance(modules[0], InputNormalization) else None
    if normalization is not None and not (modules and isinstance(modules[0], (nn.Conv2d, nn.Linear))):
        raise DeployError("an input normalization must come right before the first Conv2d or Linear")
    if any(isinstance(m, InputNormalization) for m in modules):
        raise DeployError("an input normalization can only be the model's first module")
    shape = tuple(int(s) for s in input_shape)
    step_in = 1.0 / ((1 << input_bits) - 1)   # activation value of one input code step
    pool = 1
    layers: list[FoldedLayer] = []
    i = 0
    while i < len(modules):
        module = modules[i]
        if isinstance(module, nn.AvgPool2d):
            size, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            if size[0] != size[1] or size != stride or _pair(module.padding) != (0, 0):
                raise DeployError("only square, non-overlapping, unpadded average pools convert exactly")
            if shape[1] % size[0] or shape[2] % size[0]:
                raise DeployError(f"average pool of {size[0]} needs a feature map divisible by it, got {shape[1:]}")
            pool *= size[0]
            shape = (shape[0], shape[1] // size[0], shape[2] // size[0])
            i += 1
            continue
        if not isinstance(module, (nn.Conv2d, nn.Linear, ResidualBlock)):
            raise DeployError(f"cannot convert {type(module).__name__} at module {i}: "
                              "use Conv2d/Linear, BatchNorm, QCFS, AvgPool2d and ResidualBlock")
        if layers and layers[-1].levels == 0:
            raise DeployError(f"module {i}: a synapse layer follows one without QCFS activation")
        if isinstance(module, ResidualBlock):
            if pool > 1 or not layers:
                raise DeployError(f"module {i}: a residual block must follow a layer with a QCFS activation "
                                  "(a stem conv), with no pool in between")
            layers += _fold_block(module, len(layers) - 1, shape, step_in)
            shape, step_in, i = layers[-1].output_shape, _step(module.act2), i + 1
            continue
        i += 1
        bn = modules[i] if i < len(modules) and isinstance(modules[i], nn.modules.batchnorm._BatchNorm) else None
        i += bn is not None
        activation = modules[i] if i < len(modules) and isinstance(modules[i], QCFS) else None
        i += activation is not None
        if i < len(modules) and activation is None and isinstance(modules[i], nn.AvgPool2d):
            raise DeployError("pooling before the activation is not supported: pool after QCFS")
        layers.append(_fold_synapse(module, bn, activation, shape, step_in, pool, i,
                                    normalization if not layers else None))
        shape, step_in, pool = layers[-1].output_shape, _step(activation), 1
    if not layers or layers[-1].levels != 0:
        raise DeployError("the model must end with a synapse layer without activation (the classifier)")
    return layers


def _step(activation: Optional[QCFS]) -> float:
    """Activation value of one code step after ``activation``: lambda / L."""
    return float(activation.threshold.detach()) / activation.levels if activation is not None else 1.0


def _weight_and_bias(module: nn.Module, bn: Optional[nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    weight = module.weight.detach().double()
    bias = module.bias.detach().double() if module.bias is not None else torch.zeros(len(weight), dtype=torch.float64)
    return fold_batchnorm(weight, bias, bn) if bn is not None else (weight, bias)


def _fold_synapse(module: nn.Module, bn: Optional[nn.Module], activation: Optional[QCFS], shape: tuple,
                  step_in: float, pool: int, position: int,
                  normalization: Optional[InputNormalization] = None) -> FoldedLayer:
    """One Conv2d/Linear (+ BatchNorm, + QCFS) after an optional pool or input normalization, in the code domain."""
    weight, bias = _weight_and_bias(module, bn)
    in_shape = (shape[0], shape[1] * pool, shape[2] * pool)
    if normalization is not None:
        weight, bias = _fold_normalization(module, weight, bias, normalization, in_shape)
    if isinstance(module, nn.Conv2d):
        stride, padding, dilation = _pair(module.stride), _pair(module.padding), _pair(module.dilation)
        if pool > 1:
            if dilation != (1, 1):
                raise DeployError("a dilated conv after an average pool does not convert")
            weight = _spread_pool(weight, pool)
            stride = (stride[0] * pool, stride[1] * pool)
            padding = (padding[0] * pool, padding[1] * pool)
        kh, kw = weight.shape[2:]
        out_shape = (weight.shape[0],
                     conv_output_size(in_shape[1], kh, stride[0], padding[0], dilation[0]),
                     conv_output_size(in_shape[2], kw, stride[1], padding[1], dilation[1]))
        geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=module.groups)
        kind = "conv"
    else:
        if pool > 1:
            weight = _spread_pool(weight.reshape(len(weight), *shape), pool).reshape(len(weight), -1)
        if weight.shape[1] != int(np.prod(in_shape)):
            raise DeployError(f"Linear at module {position} expects {weight.shape[1]} inputs, gets {in_shape}")
        out_shape = (weight.shape[0], 1, 1)
        geometry = {}
        kind = "dense"
    ratio = activation.levels / float(activation.threshold.detach()) if activation is not None else 1.0
    scales = dict(source=module, weight_scale=step_in * ratio / (pool * pool), bias_scale=ratio,
                  bias_offset=0.5 if activation is not None else 0.0)
    weight, bias = weight * step_in * ratio, bias * ratio + scales["bias_offset"]
    levels = activation.levels if activation is not None else 0
    return FoldedLayer(kind, weight.numpy(), bias.numpy(), levels, in_shape, out_shape, geometry, **scales)


def _fold_normalization(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor, norm: InputNormalization,
                        shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of the first synapse for raw images of ``shape``: ``(x - m) / s`` folded in.

    The synapse sees ``x / s - m / s``: its weights divide by s, and the current
    of the constant image ``-m / s`` joins the bias. That image ends at the
    border, where the synapse's zero padding begins, so a padded conv's bias
    differs per neuron near the border; it stays per channel where it does not.
    A one-channel image repeated over the model's channels sums their weights.
    """
    inverse = 1.0 / norm.std.detach().double()
    channels = len(inverse)
    image = (-norm.mean.detach().double() * inverse).view(1, -1, 1, 1).expand(1, channels, shape[1], shape[2])
    if isinstance(module, nn.Conv2d):
        if shape[0] != channels and module.groups != 1:
            raise DeployError("a grouped first conv cannot take a one-channel image repeated over its channels")
        offset = F.conv2d(image, weight, None, module.stride, module.padding, module.dilation,
                                            module.groups)[0]
        weight = weight * inverse.view(1, -1, 1, 1)
        weight = weight.sum(1, keepdim=True) if shape[0] != channels else weight
        bias = bias.view(-1, 1, 1) + offset
        if bool((offset == offset[:, :1, :1]).all()):      # no padding: one bias per channel, as always
            bias = bias[:, 0, 0].contiguous()
        return weight, bias
    if weight.shape[1] != image.numel():
        raise DeployError(f"the first Linear expects {weight.shape[1]} inputs, the normalized image has {image.numel()}")
    offset = weight @ image.reshape(-1)
    weight = weight.reshape(len(weight), channels, -1) * inverse.view(1, -1, 1)
    weight = weight.sum(1) if shape[0] != channels else weight.reshape(len(weight), -1)
    return weight, bias + offset


def _fold_block(block: ResidualBlock, source: int, shape: tuple, step_in: float) -> list[FoldedLayer]:
    """A basic block as two layers; the second receives the shortcut from layer ``source``.

    Both branches are scaled into the second activation's code domain, so the
    neurons add them as the float block adds them before its activation.
    """
    first = _fold_synapse(block.conv1, _batchnorm(block.bn1), block.act1, shape, step_in, 1, 0)
    second = _fold_synapse(block.conv2, _batchnorm(block.bn2), block.act2, first.output_shape, _step(block.act1),
                           1, 0)
    ratio = block.act2.levels / float(block.act2.threshold.detach())
    gain = float(block.shortcut_gain)
    if isinstance(block.shortcut, nn.Identity):
        weight = gain * torch.eye(shape[0], dtype=torch.float64).view(shape[0], shape[0], 1, 1)
        bias, stride, padding = torch.zeros(shape[0], dtype=torch.float64), (1, 1), (0, 0)
        owner, tensor = block, "shortcut_gain"
    else:
        parts = leaf_modules(block.shortcut)
        projection = parts[0]
        if not isinstance(projection, nn.Conv2d) or projection.groups != 1 or _pair(projection.dilation) != (1, 1):
            raise DeployError("a shortcut must be the identity or a Conv2d (+ BatchNorm) without groups or dilation")
        weight, bias = _weight_and_bias(projection, _batchnorm(parts[1]) if len(parts) > 1 else None)
        weight, bias = weight * gain, bias * gain
        stride, padding = _pair(projection.stride), _pair(projection.padding)
        owner, tensor = projection, "weight"
    second.skip = FoldedSkip(source, (weight * step_in * ratio).numpy(), tuple(shape), stride, padding, owner, tensor,
                             weight_scale=step_in * ratio)
    second.bias = second.bias + (bias * ratio).numpy()
    kh, kw = weight.shape[2:]
    skip_shape = (weight.shape[0], conv_output_size(shape[1], kh, stride[0], padding[0]),
                  conv_output_size(shape[2], kw, stride[1], padding[1]))
    if skip_shape != second.output_shape:
        raise DeployError(f"the shortcut gives {skip_shape}, the block's main branch {second.output_shape}")
    return [first, second]


def _batchnorm(module: nn.Module) -> Optional[nn.Module]:
    return module if isinstance(module, nn.modules.batchnorm._BatchNorm) else None


def run_folded(layers: Sequence[FoldedLayer], codes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The folded network before any rounding, in float64, on input codes ``(N, C, H, W)``.

    Every layer computes ``clip(floor(W~ k + b~ (+ W~_skip k_source)), 0, L)``, the
    QCFS network's own codes (section 2 of docs/conversion.md); the integer
    network computes the same but with its weights and biases rounded onto
    Loihi's 8-bit grid, so the two differ by that rounding alone.

    Returns:
        The readout's potentials ``(N, classes)`` (the logits up to a positive
        factor) and every hidden layer's codes.
    """
    outputs = {-1: torch.from_numpy(np.asarray(codes, dtype=np.float64))}
    for i, layer in enumerate(layers):
        x = outputs[i - 1]
        weight = torch.from_numpy(layer.weight)
        if layer.kind == "conv":
            g = layer.geometry
            u = F.conv2d(x, weight, None, g["stride"], g["padding"], g.get("dilation", 1), g.get("groups", 1))
        else:
            u = (x.reshape(len(x), -1) @ weight.T).view(len(x), -1, 1, 1)
        if layer.skip is not None:
            u = u + F.conv2d(outputs[layer.skip.source], torch.from_numpy(layer.skip.weight), None,
                             layer.skip.stride, layer.skip.padding)
        bias = torch.from_numpy(np.asarray(layer.bias, dtype=np.float64))
        u = u + bias.view(1, len(bias), *(bias.shape[1:] or (1, 1)))
        outputs[i] = u if layer.levels == 0 else torch.clamp(torch.floor(u), 0, layer.levels)
    hidden = [outputs[i].to(torch.int64).numpy() for i in range(len(layers) - 1)]
    return outputs[len(layers) - 1].reshape(len(codes), -1).numpy(), hidden
