"""Rounding folded layers onto Loihi's fixed point (``docs/conversion.md``).

Per layer, a scale S = 2**F: weights become ``mantissa << exp`` with an 8-bit
mixed-sign mantissa on Loihi's grid (even integers in [-256, 254]) and a
non-negative exponent, biases ``round(b~ * S)``. Everything after this point is
integer arithmetic that every backend reproduces exactly; the distance between
the float network and this one is the quantization loss, reported separately.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from lava_deploy.convert.fold import FoldedLayer, FoldedSkip
from lava_deploy.chip import STATE_BITS
from lava_deploy.network import (INPUT, SYNAPSE_KINDS, AccumulateEmit, ConvSynapse, Edge, Layer, Readout,
                                 SpikingNetwork)

#: Largest mantissa half: Loihi drops the lowest bit of a mixed-sign 8-bit weight.
Q_MAX = 127


class RoundSTE(torch.autograd.Function):
    """Round half up forward, as :func:`_round` does (quantization-aware fine-tuning), identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.floor(x + 0.5)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def _round(x: np.ndarray) -> np.ndarray:
    """Round half up, the same on every platform (numpy's round is half-to-even).

    Raises:
        ValueError: a value int64 cannot hold (casting would wrap it silently).
    """
    x = np.floor(x + 0.5)
    if x.size and np.abs(x).max() >= 2.0**62:
        raise ValueError(f"a value of {x.flat[np.abs(x).argmax()]:.3g} does not fit any integer state")
    return x.astype(np.int64)


def quantize_layer(folded: FoldedLayer, source: int, time_steps: int, accumulate_shift: int,
                   weight_shift: int) -> Layer:
    """Round one folded layer, fed by node ``source``, with weight step 2**-weight_shift (in code units)."""
    q = np.clip(_round(folded.weight * 2.0**weight_shift), -Q_MAX - 1, Q_MAX)
    exp, scale_exp = scale_exponents(weight_shift, folded.levels, time_steps)
    synapse = SYNAPSE_KINDS[folded.kind]((2 * q).astype(np.int64), exp, folded.input_shape, **folded.geometry)
    edges = [Edge(source, synapse)] + ([quantize_skip(folded.skip, scale_exp)] if folded.skip is not None else [])
    neuron = Readout(scale_exp) if folded.levels == 0 else AccumulateEmit(scale_exp, folded.levels)
    return Layer(edges, neuron, _round(folded.bias * 2.0**scale_exp), accumulate_shift)


def quantize_skip(skip: FoldedSkip, scale_exp: int) -> Edge:
    """Round a shortcut into the potential units S = 2**scale_exp of the layer it feeds.

    Its own exponent is the smallest non-negative one whose 8-bit mantissa holds the largest weight.
    """
    value = skip.weight * 2.0**scale_exp
    exp = skip_exponent(float(np.abs(value).max()))
    q = np.clip(_round(value / 2.0 ** (exp + 1)), -Q_MAX - 1, Q_MAX)
    return Edge(skip.source, ConvSynapse((2 * q).astype(np.int64), exp, skip.input_shape, stride=skip.stride,
                                         padding=skip.padding))


def scale_exponents(weight_shift: int, levels: int, time_steps: int) -> tuple[int, int]:
    """(weight exponent, F) for a weight step of 2**-weight_shift code units.

    A mantissa step is 2 (Loihi drops the lowest bit), so S = 2**(G + 1 + exp);
    hidden layers need F >= T - 1 (integer thresholds) and F >= 1 (exact half
    step in the bias); the exponent is the smallest that gives that.
    """
    needed = 0 if levels == 0 else max(1, time_steps - 1)
    exp = max(0, needed - (weight_shift + 1))
    return exp, weight_shift + 1 + exp


def skip_exponent(peak: float) -> int:
    """A shortcut's weight exponent: the smallest e >= 0 whose 8-bit mantissa step 2**(e+1) holds ``peak``."""
    return max(0, -best_weight_shift(peak) - 1)


def best_weight_shift(peak: float) -> int:
    """Largest shift G with peak * 2**G <= 127, peak = max|W~|: the finest step that fits 8 bits."""
    return 16 if peak == 0 else math.floor(math.log2((Q_MAX + 0.49) / peak))


def to_fixed_point(folded: Sequence[FoldedLayer], time_steps: int, input_bits: int,
                   input_shape: Sequence[int], class_names: Sequence[str],
                   metadata: Optional[dict] = None) -> SpikingNetwork:
    """Round every folded layer and check that all potentials fit 24 bits.

    A layer whose potentials could overflow gets a coarser weight step (one
    bit per missing bit of headroom); a layer that still cannot fit is refused.

    Raises:
        ValueError: a layer overflows Loihi's 24-bit state even at the coarsest step.
    """
    network = SpikingNetwork([], time_steps, input_bits, tuple(input_shape), list(class_names), dict(metadata or {}))
    for i, layer in enumerate(folded):
        for name, values in (("weights", layer.weight), ("biases", layer.bias),
                             ("shortcut weights", None if layer.skip is None else layer.skip.weight)):
            if values is not None and not np.isfinite(values).all():
                raise ValueError(f"layer {i} has NaN or infinite {name}")
        shift = 1 if i > 0 else -(-input_bits // time_steps)
        weight_shift = best_weight_shift(float(np.abs(layer.weight).max()))
        while True:
            try:
                network.layers.append(quantize_layer(layer, i - 1 if i else INPUT, time_steps, shift, weight_shift))
            except ValueError as exc:
                raise ValueError(f"layer {i}: {exc}") from None
            spare = network.headroom_bits(i)
            if spare >= 0:
                break
            network.layers.pop()
            if weight_shift < -STATE_BITS:
                raise ValueError(f"layer {i} cannot fit Loihi's {STATE_BITS}-bit state at any weight precision")
            weight_shift += spare
    return network
