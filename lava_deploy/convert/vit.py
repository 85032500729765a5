"""A QCFS Vision Transformer -> its integer spiking network (``docs/transformer-arithmetic.md``, section 5).

Each stage of :class:`~lava_deploy.qcfs.vit.VisionTransformer` (an affine map
in code units) is rounded onto Loihi's fixed point as :mod:`.fixed_point`
rounds a folded layer: an 8-bit mantissa grid, a scale S = 2**F, a coarser
step where the 24-bit state would overflow. :func:`round_stage` does it once
for both users: quantization-aware fine-tuning (installed as the model's
``rounding``, the forward pass then computes exactly the integer network) and
:func:`convert_vit`, which builds the network's nodes from the same integers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from lava_deploy.chip import STATE_BITS, WEIGHT_EXP_MAX
from lava_deploy.convert.fixed_point import Q_MAX, RoundSTE, best_weight_shift, scale_exponents, skip_exponent
from lava_deploy.network import (INPUT, ConvSynapse, Edge, Layer, LayerNorm, Lookup, Readout, SignedEmit, Softmax,
                                 SpikingNetwork, Synapse, headroom_bits)
from lava_deploy.network.functions import exp_table
from lava_deploy.qcfs.vit import Stage, StageValues, VisionTransformer


@dataclass
class RoundedStage:
    """A stage on the fixed-point grid: the integer synapses and bias, and their values in code units."""

    synapse: Synapse
    skip: Optional[Synapse]
    bias: np.ndarray
    scale_exp: int
    values: StageValues


def _integers(x: torch.Tensor, what: str) -> np.ndarray:
    array = x.detach().double().numpy()
    if not np.isfinite(array).all() or (array.size and np.abs(array).max() >= 2.0**62):
        raise ValueError(f"{what} do not fit any integer state")
    return array.astype(np.int64)


def round_stage(stage: Stage, time_steps: int) -> RoundedStage:
    """Round a stage: mantissas of the finest step that fits 8 bits, coarser while the 24-bit state overflows
    or the shortcut's gain needs a weight exponent above the chip's.

    The forward pass uses ``values`` (integers over S, rounding passed straight through for gradients);
    conversion uses the integers. The shortcut's gain is rounded in the same potential units S.

    Raises:
        ValueError: no step keeps the potentials inside the 24-bit state, or a value is not finite.
    """
    shift = best_weight_shift(float(stage.weight.detach().abs().max()))
    while True:
        q = torch.clamp(RoundSTE.apply(stage.weight * 2.0**shift), -Q_MAX - 1, Q_MAX)
        exp, scale_exp = scale_exponents(shift, stage.levels, time_steps)
        scale = 2.0**scale_exp
        synapse = stage.synapse(_integers(2 * q, "weights"), exp)
        bias = RoundSTE.apply(stage.bias * scale)
        edges, ranges = [Edge(INPUT, synapse)], [stage.ranges]
        skip, skip_value = None, None
        if stage.skip_gain is not None:
            value = stage.skip_gain * scale
            skip_exp = skip_exponent(abs(float(value.detach())))
            if skip_exp > WEIGHT_EXP_MAX:
                # weights so small that their finest step makes S outgrow the shortcut's exponent range
                # (a block whose MLP has died): a coarser step, as for a 24-bit overflow
                shift -= skip_exp - WEIGHT_EXP_MAX
                continue
            skip_q = torch.clamp(RoundSTE.apply(value / 2.0 ** (skip_exp + 1)), -Q_MAX - 1, Q_MAX)
            channels = synapse.output_shape[0]
            skip = stage.skip(np.full(channels, int(_integers(2 * skip_q, "shortcut gains"))), skip_exp)
            edges.append(Edge(INPUT, skip))
            ranges.append([stage.skip_range])
            skip_value = skip_q * 2.0 ** (skip_exp + 1) / scale
        bias_int = _integers(bias, "biases")
        layer = Layer(edges, Readout(scale_exp), bias_int)
        spare = headroom_bits(*layer.potential_bounds(ranges))
        if spare >= 0:
            values = StageValues(q * 2.0 ** (exp + 1) / scale, bias / scale, skip_value)
            return RoundedStage(synapse, skip, bias_int, scale_exp, values)
        if shift < -STATE_BITS:
            raise ValueError(f"no weight precision keeps this layer inside Loihi's {STATE_BITS}-bit state")
        shift += spare


def attach_rounding(model: VisionTransformer, time_steps: int) -> None:
    """Make ``model`` compute with its stages' fixed-point values (thresholds frozen: they set the grid)."""
    for name, parameter in model.named_parameters():
        if name.endswith("threshold"):
            parameter.requires_grad_(False)
    model.rounding = lambda stage: round_stage(stage, time_steps).values


def convert_vit(model: VisionTransformer, time_steps: int, class_names: list[str],
                metadata: Optional[dict] = None) -> SpikingNetwork:
    """The integer spiking network of a trained ViT (eval mode), node by node as in the arithmetic page.

    Raises:
        ValueError: a stage that no fixed point holds.
    """
    model.eval()
    L, T = model.levels, time_steps
    with torch.no_grad():
        stages = {name: round_stage(stage, T) for name, stage in model.stages().items()}
    shape = model.token_shape
    layers: list[Layer] = []

    def add(edges: list[Edge], neuron, bias: np.ndarray, shift: int = 1) -> int:
        layers.append(Layer(edges, neuron, bias, shift))
        return len(layers) - 1

    def neuron_layer(name: str, sources: tuple[int, ...], neuron_of, shift: int = 1) -> int:
        rounded = stages[name]
        product = rounded.synapse.operands == 2         # (A, B); otherwise (main source, shortcut source)
        edges = [Edge(sources[0], rounded.synapse, sources[1] if product else None)]
        if rounded.skip is not None:
            edges.append(Edge(sources[1], rounded.skip))
        return add(edges, neuron_of(rounded.scale_exp), rounded.bias, shift)

    def layernorm(source: int) -> int:
        norm_exp = max(1, T - 1)        # an identity of weight 2**F: the input code is the source's code
        identity = ConvSynapse(np.full((shape[0], 1, 1, 1), 2), norm_exp - 1, shape, groups=shape[0])
        return add([Edge(source, identity)], LayerNorm(norm_exp, L, L, gain=model.norm_gain),
                   np.zeros(shape[0], np.int64))

    signed = lambda f: SignedEmit(f, L)            # noqa: E731
    digit_bits = -(-model.input_bits // T)
    residual = neuron_layer("embed", (INPUT,), signed, digit_bits)
    for b, block in enumerate(model.blocks):
        name = f"block{b}."
        norm = layernorm(residual)
        q, k, v = (neuron_layer(name + part, (norm,), signed) for part in "qkv")
        table = exp_table(float(block.score_act.step), L)
        attention = neuron_layer(name + "scores", (q, k), lambda f: Softmax(f, L, L, table=table,
                                                                           gain=model.softmax_gain, groups=model.heads))
        mixed = neuron_layer(name + "mix", (attention, v), signed)
        residual = neuron_layer(name + "proj", (mixed, residual), signed)
        gelu = model.gelu_table(block)
        hidden = neuron_layer(name + "fc1", (layernorm(residual),), lambda f: Lookup(f, L, L, table=gelu))
        residual = neuron_layer(name + "fc2", (hidden, residual), signed)
    neuron_layer("head", (layernorm(residual),), Readout)
    return SpikingNetwork(layers, T, model.input_bits, model.input_shape, list(class_names), dict(metadata or {}))


def find_vit(model: torch.nn.Module) -> Optional[VisionTransformer]:
    """The model's Vision Transformer, if it is one (alone, or the only module of a Sequential)."""
    return next((m for m in model.modules() if isinstance(m, VisionTransformer)), None)
