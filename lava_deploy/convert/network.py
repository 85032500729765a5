"""The integer spiking network: what conversion produces and every backend runs.

A :class:`SpikingNetwork` is a chain of synapse layers (dense or conv), each
followed by accumulate-then-emit neurons (see ``neuron-spec.md``); a layer may
also receive a residual shortcut (:class:`SkipInput`) from an earlier layer. It holds
integers only, so the PyTorch reference, the netx HDF5 file and the Lava
process models all read the same numbers. No Lava import here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from lava_deploy import chip
from lava_deploy.chip import STATE_BITS
from lava_deploy.errors import DeployError


@dataclass
class SkipInput:
    """A residual shortcut: a second synapse into a layer's neurons from an earlier layer's spikes.

    Always a convolution (a 1x1 kernel: the identity as a diagonal, or a
    strided projection), in the same potential units as the layer's main
    synapse, so that both branches add in the neurons. Its spikes are delayed
    by :meth:`SpikingNetwork.skip_delay` steps so that they meet the main
    branch's spikes of the same sample.

    Attributes:
        source: index of the layer whose spikes it carries.
        weight_mantissa: even integers in [-256, 254], ``(out, in, kH, kW)``.
        weight_exp: the synaptic weight is ``weight_mantissa << weight_exp``.
        input_shape: ``(C, H, W)``, the source layer's output shape.
        stride, padding: conv geometry, (H, W) pairs.
    """

    source: int
    weight_mantissa: np.ndarray
    weight_exp: int
    input_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    kind = "conv"
    dilation = (1, 1)
    groups = 1

    @property
    def weight(self) -> np.ndarray:
        """The integer synaptic weights, mantissa shifted by the exponent (int64)."""
        return self.weight_mantissa.astype(np.int64) << self.weight_exp

    @property
    def fan_in(self) -> int:
        """Synapses into one neuron."""
        return int(np.prod(self.weight_mantissa.shape[1:]))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` the shortcut produces."""
        _, _, kh, kw = self.weight_mantissa.shape
        return (self.weight_mantissa.shape[0],
                conv_output_size(self.input_shape[1], kh, self.stride[0], self.padding[0]),
                conv_output_size(self.input_shape[2], kw, self.stride[1], self.padding[1]))


@dataclass
class SpikingLayer:
    """One synapse layer and the neurons it drives.

    Attributes:
        kind: ``"dense"`` or ``"conv"``.
        weight_mantissa: even integers in [-256, 254]; dense ``(out, in)``,
            conv ``(out, in/groups, kH, kW)`` in PyTorch's cross-correlation order.
        weight_exp: per-layer exponent; the synaptic weight is
            ``weight_mantissa << weight_exp`` (never negative, so no bits are lost).
        bias: integer bias per output channel, in potential units (scale S).
        scale_exp: F, with scale S = 2**F: a potential u stands for u / S.
        levels: L, the largest code a neuron emits (0 for the readout layer,
            whose neurons only accumulate and hand their potential on as logits).
        input_shape, output_shape: ``(C, H, W)``; a dense layer of F neurons
            has output ``(F, 1, 1)``, so flattening keeps PyTorch's order.
        stride, padding, dilation, groups: conv geometry, (H, W) pairs.
        accumulate_shift: bits that arrive per time step (1 for binary spikes;
            more for the graded digit planes of the input image).
        skip: a residual shortcut into the same neurons, or None.
    """

    kind: str
    weight_mantissa: np.ndarray
    weight_exp: int
    bias: np.ndarray
    scale_exp: int
    levels: int
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    accumulate_shift: int = 1
    skip: Optional[SkipInput] = None

    @property
    def weight(self) -> np.ndarray:
        """The integer synaptic weights, mantissa shifted by the exponent (int64)."""
        return self.weight_mantissa.astype(np.int64) << self.weight_exp

    @property
    def synapses_in(self) -> list["SpikingLayer | SkipInput"]:
        """The synapses into this layer's neurons: its own, and its shortcut's."""
        return [self] + ([self.skip] if self.skip is not None else [])

    @property
    def is_readout(self) -> bool:
        """True for the last layer, whose potentials are the logits."""
        return self.levels == 0

    @property
    def num_neurons(self) -> int:
        """Number of neurons this layer drives."""
        return int(np.prod(self.output_shape))

    @property
    def fan_in(self) -> int:
        """Synapses into one neuron."""
        return int(np.prod(self.weight_mantissa.shape[1:]))

    def threshold(self, time_steps: int) -> int:
        """The first emit step's threshold theta = 2**(T-1) * S."""
        return 1 << (time_steps - 1 + self.scale_exp)

    def potential_bounds(self, input_levels: int, skip_levels: int = 0) -> tuple[int, int]:
        """Smallest and largest potential any input code in 0..input_levels can produce.

        ``skip_levels`` is the largest code arriving through the shortcut.
        Horner accumulation only ever holds a prefix of the final sum, so these
        bound every intermediate potential too.
        """
        positive, negative = self.bias.astype(np.int64), self.bias.astype(np.int64)
        for synapse, levels in zip(self.synapses_in, (input_levels, skip_levels)):
            w = synapse.weight.reshape(synapse.weight.shape[0], -1)
            positive = positive + np.clip(w, 0, None).sum(axis=1) * levels
            negative = negative + np.clip(w, None, 0).sum(axis=1) * levels
        low = min(int(negative.min()), int(self.bias.min()), 0)
        high = max(int(positive.max()), int(self.bias.max()), 0)
        return low, high

    def headroom_bits(self, input_levels: int, skip_levels: int = 0) -> int:
        """Spare bits of the 24-bit signed state (negative: it can overflow)."""
        low, high = self.potential_bounds(input_levels, skip_levels)
        needed = max(high.bit_length(), (-low - 1).bit_length() if low < 0 else 0) + 1
        return STATE_BITS - needed


@dataclass
class SpikingNetwork:
    """A converted network: integer layers plus what is needed to feed and read it.

    Attributes:
        layers: the synapse layers in order; the last one is the readout.
        time_steps: T, bits per activation code and steps per sample.
        input_bits: T_in, bits of the input image codes (pixel = k / (2**T_in - 1)).
        input_shape: ``(C, H, W)`` of the image.
        class_names: label names, index = class.
        metadata: free-form provenance (dataset, checkpoint hash, accuracies).
    """

    layers: list[SpikingLayer]
    time_steps: int
    input_bits: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    metadata: dict = field(default_factory=dict)

    @property
    def input_levels(self) -> int:
        """Largest input code, 2**T_in - 1."""
        return (1 << self.input_bits) - 1

    @property
    def input_digit_bits(self) -> int:
        """Bits per input digit plane, so that T planes carry all T_in bits."""
        return -(-self.input_bits // self.time_steps)

    def layer_input_levels(self, index: int) -> int:
        """Largest code arriving at layer ``index`` (input codes for the first)."""
        return self.input_levels if index == 0 else self.layers[index - 1].levels

    def skip_levels(self, index: int) -> int:
        """Largest code arriving through layer ``index``'s shortcut (0 without one)."""
        skip = self.layers[index].skip
        return 0 if skip is None else self.layers[skip.source].levels

    def skip_delay(self, index: int) -> int:
        """Steps the shortcut into layer ``index`` must hold its spikes so both branches carry one sample.

        The source's spikes reach the layer after it when that layer
        accumulates; each layer in between adds T + 1 steps.
        """
        return (index - self.layers[index].skip.source - 1) * (self.time_steps + 1)

    def headroom(self) -> list[int]:
        """Spare bits of the 24-bit state per layer (negative: overflow possible)."""
        return [layer.headroom_bits(self.layer_input_levels(i), self.skip_levels(i))
                for i, layer in enumerate(self.layers)]

    @property
    def steps_per_sample(self) -> int:
        """A pipelined network takes a new sample every T steps."""
        return self.time_steps

    @property
    def latency_steps(self) -> int:
        """Steps from a sample's first input digit to its logits: (layers) * (T + 1).

        Each layer accumulates T steps and emits T steps, overlapping the next
        layer's accumulation, and every synapse adds one step of delay.
        """
        return len(self.layers) * (self.time_steps + 1)

    def accumulate_start(self, index: int) -> int:
        """Step offset, after the input's first digit, at which layer ``index`` accumulates sample 0."""
        return 1 + index * (self.time_steps + 1)


def encode_input_digits(codes: np.ndarray, input_bits: int, time_steps: int) -> np.ndarray:
    """Split input codes into T digit planes, most significant first.

    Each plane carries ``ceil(T_in / T)`` bits, so plane j holds
    ``(k >> (m * (T-1-j))) & (2**m - 1)``; with T_in <= T these are plain binary
    bit-plane spikes. Returns shape ``(T, *codes.shape)``.
    """
    shift = -(-input_bits // time_steps)
    mask = (1 << shift) - 1
    codes = np.asarray(codes, dtype=np.int64)
    return np.stack([(codes >> (shift * (time_steps - 1 - j))) & mask for j in range(time_steps)])


def validate_network(network: SpikingNetwork) -> None:
    """Refuse an integer network that Loihi's fixed point cannot run exactly: the one rule for every path.

    The netx reader applies it to every file, the writer to everything it
    writes, so export, ``info``, ``check`` and every backend agree on what can
    run: weight mantissas on the 8-bit grid, weight exponents in the file's
    range, thresholds and clamps inside the 24-bit state, T and input bits in
    range, and no membrane potential that can leave the 24-bit state for any
    input (:meth:`SpikingLayer.headroom_bits`). A network that passes never
    overflows on any backend; the reference never reports figures for a
    network Lava would stop on.

    Raises:
        DeployError: one line naming the layer and the value at fault.
    """
    T = network.time_steps
    if not chip.TIME_STEPS_MIN <= T <= chip.TIME_STEPS_MAX:
        raise DeployError(f"T = {T} time steps outside {chip.TIME_STEPS_MIN}..{chip.TIME_STEPS_MAX}")
    if not chip.INPUT_BITS_MIN <= network.input_bits <= chip.INPUT_BITS_MAX:
        raise DeployError(f"input bits {network.input_bits} outside {chip.INPUT_BITS_MIN}..{chip.INPUT_BITS_MAX}")
    for i, layer in enumerate(network.layers):
        for synapse in layer.synapses_in:
            what = f"layer {i}: " + ("shortcut " if synapse is layer.skip else "")
            if not chip.WEIGHT_EXP_MIN <= synapse.weight_exp <= chip.WEIGHT_EXP_MAX:
                raise DeployError(f"{what}weight exponent {synapse.weight_exp} outside the chip's "
                                  f"{chip.WEIGHT_EXP_MIN}..{chip.WEIGHT_EXP_MAX} (weights too large for 8 bits)")
            mantissa = synapse.weight_mantissa
            if mantissa.size and (mantissa.min() < chip.WEIGHT_MANTISSA_MIN or mantissa.max() > chip.WEIGHT_MANTISSA_MAX
                                  or (mantissa % 2).any()):
                raise DeployError(f"{what}weight mantissas are not even integers in "
                                  f"[{chip.WEIGHT_MANTISSA_MIN}, {chip.WEIGHT_MANTISSA_MAX}]")
        if not 0 <= layer.scale_exp < chip.STATE_BITS:
            raise DeployError(f"layer {i}: scale exponent {layer.scale_exp} outside 0..{chip.STATE_BITS - 1}")
        if not layer.is_readout:
            if not 1 <= layer.levels < (1 << T):
                raise DeployError(f"layer {i}: {layer.levels} levels outside 1..{(1 << T) - 1} for T = {T}")
            if (layer.levels << layer.scale_exp) >= chip.STATE_LIMIT:
                raise DeployError(f"layer {i}: threshold 2^{T - 1 + layer.scale_exp} (top level "
                                  f"{layer.levels << layer.scale_exp}) does not fit the {chip.STATE_BITS}-bit state")
        spare = layer.headroom_bits(network.layer_input_levels(i), network.skip_levels(i))
        if spare < 0:
            low, high = layer.potential_bounds(network.layer_input_levels(i), network.skip_levels(i))
            raise DeployError(f"layer {i}: membrane potential can reach {high if high >= -low else low}, which "
                              f"overflows Loihi's {chip.STATE_BITS}-bit state by {-spare} bit(s)")


def layer_summary(network: SpikingNetwork) -> list[dict]:
    """One dict per layer for tables: kind, shapes, fan-in, weight bits, exponent, headroom."""
    rows = []
    for i, (layer, spare) in enumerate(zip(network.layers, network.headroom())):
        rows.append({
            "index": i,
            "kind": layer.kind,
            "input_shape": tuple(layer.input_shape),
            "output_shape": tuple(layer.output_shape),
            "fan_in": layer.fan_in,
            "weight_bits": 8,
            "weight_exp": layer.weight_exp,
            "scale_exp": layer.scale_exp,
            "levels": layer.levels,
            "headroom_bits": spare,
            "neuron": "readout" if layer.is_readout else "accumulate-emit",
            "skip_from": None if layer.skip is None else layer.skip.source,
        })
    return rows


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """PyTorch's convolution output size along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1

