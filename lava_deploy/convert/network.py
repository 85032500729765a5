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

#: Loihi's signed state range (24 bits) that every membrane potential must fit.
STATE_BITS = 24
#: Loihi synapse: 8-bit mixed-sign weights lose their lowest bit, so mantissas
#: are even integers in [-256, 254] (lava's Dense truncates anything else).
WEIGHT_MANTISSA_MIN = -256
WEIGHT_MANTISSA_MAX = 254


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


def check_headroom(network: SpikingNetwork, reserve_bits: int = 0) -> list[int]:
    """Return the spare bits per layer; raise ValueError if any layer could overflow.

    Args:
        network: the converted network.
        reserve_bits: extra bits to demand beyond merely fitting.
    """
    spare = network.headroom()
    bad = [i for i, s in enumerate(spare) if s < reserve_bits]
    if bad:
        i = bad[0]
        raise ValueError(
            f"layer {i} can overflow Loihi's {STATE_BITS}-bit state by {-spare[i]} bit(s) "
            f"(bounds {network.layers[i].potential_bounds(network.layer_input_levels(i), network.skip_levels(i))})"
        )
    return spare


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

