"""Quantization-aware fine-tuning: train through the exact rounding of the export.

After float training, BatchNorm is folded into the synapses (same function,
fewer modules) and the thresholds are frozen, so each layer's map to the
integer domain is a constant scale. The weights and biases are then rounded in
the forward pass exactly as :mod:`lava_deploy.convert.fixed_point` rounds them
(gradients pass straight through), and a few epochs let the network adapt to
its 8-bit weights. Afterwards the float network and the exported integer
network compute the same codes: quantization loss is trained away, not hidden.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from lava_deploy.convert.fixed_point import Q_MAX, RoundSTE, best_weight_shift, scale_exponents, skip_exponent
from lava_deploy.convert.fold import FoldedLayer, fold_batchnorm, fold_model
from lava_deploy.convert.vit import attach_rounding as attach_vit_rounding, find_vit
from lava_deploy.qcfs.models import InputNormalization, ResidualBlock, build_model, qcfs_layers


def _weight_shift(weight: torch.Tensor, layer: FoldedLayer) -> int:
    return best_weight_shift(float(weight.detach().abs().max()) * layer.weight_scale)


class _RoundedWeight(nn.Module):
    """Parametrization: the weight the integer network will really use."""

    def __init__(self, layer: FoldedLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        step = 2.0 ** -_weight_shift(weight, self.layer)
        q = torch.clamp(RoundSTE.apply(weight * self.layer.weight_scale / step), -Q_MAX - 1, Q_MAX)
        return q * step / self.layer.weight_scale


class _RoundedSkipWeight(nn.Module):
    """Parametrization of a shortcut (a projection's weight, or an identity's gain): rounded in the
    potential units of the layer it feeds, as :func:`lava_deploy.convert.fixed_point.quantize_skip` rounds it."""

    def __init__(self, layer: FoldedLayer, time_steps: int) -> None:
        super().__init__()
        self.layer, self.time_steps = layer, time_steps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        layer, skip = self.layer, self.layer.skip
        main = layer.source.parametrizations.weight.original
        _, scale_exp = scale_exponents(_weight_shift(main, layer), layer.levels, self.time_steps)
        value = weight * skip.weight_scale * 2.0 ** scale_exp
        step = 2.0 ** (skip_exponent(float(value.detach().abs().max())) + 1)
        q = torch.clamp(RoundSTE.apply(value / step), -Q_MAX - 1, Q_MAX)
        return q * step / (skip.weight_scale * 2.0 ** scale_exp)


class _RoundedBias(nn.Module):
    """Parametrization: the bias rounded to 1/S, S following the layer's current weights."""

    def __init__(self, layer: FoldedLayer, time_steps: int) -> None:
        super().__init__()
        self.layer, self.time_steps = layer, time_steps

    def forward(self, bias: torch.Tensor) -> torch.Tensor:  # noqa: D102
        layer = self.layer
        weight = layer.source.parametrizations.weight.original
        _, scale_exp = scale_exponents(_weight_shift(weight, layer), layer.levels, self.time_steps)
        scale = 2.0 ** scale_exp
        folded = RoundSTE.apply((bias * layer.bias_scale + layer.bias_offset) * scale) / scale
        return (folded - layer.bias_offset) / layer.bias_scale


def _parameter_leaves(model: nn.Module) -> list[nn.Module]:
    """Modules without children, in registration order (into residual blocks), Identity left out."""
    return [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]


def without_batchnorm(model: nn.Sequential, spec: Sequence[dict], input_shape: Sequence[int]) -> tuple[nn.Sequential, list[dict]]:
    """The same function with every BatchNorm folded into the synapse before it.

    A projection shortcut's bias moves into the block's second convolution, so
    that each layer's bias is one parameter (rounded as the export rounds it).
    Returns the new model (in eval mode) and its spec (``bn`` off, biases on).
    """
    new_spec = [{**layer, "bn": False} for layer in spec]
    levels = qcfs_layers(model)[0].levels
    folded_model = build_model(new_spec, input_shape, levels).eval()
    leaves = _parameter_leaves(model)
    old = [m for m in leaves if not isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bns = {id(m): n for m, n in zip(leaves, leaves[1:]) if isinstance(n, nn.modules.batchnorm._BatchNorm)}
    with torch.no_grad():
        for source, target in zip(old, _parameter_leaves(folded_model)):
            if isinstance(source, (nn.Conv2d, nn.Linear)):
                bias = source.bias.double() if source.bias is not None else torch.zeros(len(source.weight), dtype=torch.float64)
                weight = source.weight.double()
                if id(source) in bns:
                    weight, bias = fold_batchnorm(weight, bias, bns[id(source)])
                target.weight.copy_(weight)
                target.bias.copy_(bias)
            elif hasattr(source, "threshold"):
                target.threshold.copy_(source.threshold)
        blocks = [b for b in model.modules() if isinstance(b, ResidualBlock)]
        for old_block, block in zip(blocks, [b for b in folded_model.modules() if isinstance(b, ResidualBlock)]):
            block.shortcut_gain.copy_(old_block.shortcut_gain)
            if not isinstance(block.shortcut, nn.Identity):
                projection = block.shortcut[0]
                block.conv2.bias += projection.bias
                projection.bias.zero_()
                projection.bias.requires_grad_(False)
    return folded_model, new_spec


def attach_rounding(model: nn.Sequential, input_shape: Sequence[int], input_bits: int) -> None:
    """Round weights and biases in the forward pass as the export will; thresholds freeze.

    The model must have no BatchNorm (see :func:`without_batchnorm`), so that
    each layer's integer-domain weights are its own weights times a constant.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("fold BatchNorm first (without_batchnorm)")
    if any(isinstance(m, InputNormalization) for m in model.modules()):
        raise ValueError("an input normalization scales the first weights per channel, not by one constant")
    for activation in qcfs_layers(model):
        activation.threshold.requires_grad_(False)
    time_steps = max(a.time_steps for a in qcfs_layers(model))
    for layer in fold_model(model, input_shape, input_bits):
        parametrize.register_parametrization(layer.source, "weight", _RoundedWeight(layer))
        parametrize.register_parametrization(layer.source, "bias", _RoundedBias(layer, time_steps))
        if layer.skip is not None:
            parametrize.register_parametrization(layer.skip.module, layer.skip.tensor,
                                                 _RoundedSkipWeight(layer, time_steps))


def detach_rounding(model: nn.Sequential) -> nn.Sequential:
    """Remove the rounding, keeping the rounded values as the plain parameters."""
    # Biases and shortcuts depend on the unrounded main weights: fix them first.
    projections = {id(block.shortcut[0]) for block in model.modules()
                   if isinstance(block, ResidualBlock) and not isinstance(block.shortcut, nn.Identity)}
    modules = [m for m in model.modules() if parametrize.is_parametrized(m)]
    order = [(m, "bias") for m in modules] + [(m, "shortcut_gain") for m in modules] + \
        sorted(((m, "weight") for m in modules), key=lambda item: id(item[0]) not in projections)
    for module, name in order:
        if parametrize.is_parametrized(module, name):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for activation in qcfs_layers(model):
        activation.threshold.requires_grad_(True)
    return model



def start_fine_tuning(model: nn.Sequential, spec: Sequence[dict], input_shape: Sequence[int],
                      input_bits: int) -> tuple[nn.Sequential, list[dict]]:
    """Make the model compute with the rounding of the export, thresholds frozen.

    A Sequential of layers first has its BatchNorm folded (:func:`without_batchnorm`, :func:`attach_rounding`);
    a Vision Transformer computes its stages with their fixed-point values (:mod:`lava_deploy.convert.vit`).
    Returns the model to fine-tune and its spec.
    """
    vit = find_vit(model)
    if vit is not None:
        attach_vit_rounding(vit, max(a.time_steps for a in qcfs_layers(model)))
        return model, list(spec)
    model, spec = without_batchnorm(model, spec, input_shape)
    attach_rounding(model, input_shape, input_bits)
    return model, spec


def finish_fine_tuning(model: nn.Sequential) -> nn.Sequential:
    """After fine-tuning: a Sequential keeps its rounded values as plain parameters; a Vision Transformer keeps
    computing through its rounding (its float parameters are what the checkpoint and the export round)."""
    if find_vit(model) is None:
        detach_rounding(model)
    return model
