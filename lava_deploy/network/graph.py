"""The integer spiking network: a graph of neuron layers joined by typed synapses.

Nodes are the network's input and its neuron layers; each layer sums the
synaptic currents of one or more incoming edges (a residual shortcut is one
more edge, as Lava's InPorts sum every connection), adds its bias and runs
its neuron model. A synapse kind (dense, conv) and a neuron kind
(accumulate-then-emit, readout) each own their arithmetic, their netx keys,
their Lava construction and their costs; registering a new class is all the
rest of the package needs (see ``docs/architecture.md``). Timing is derived
from the graph: a layer's depth is one more than its deepest source; the pace
is the spike encoding's (``ENCODINGS``: bit-serial sends a code as T binary
spikes, graded as one graded spike).

Integers only, so the reference, the netx file and every backend read the
same numbers. No Lava import here: backends import Lava inside their methods.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np

from lava_deploy import chip
from lava_deploy.errors import DeployError

if TYPE_CHECKING:     # typing only: the arithmetic takes torch tensors, the file methods h5py groups
    import h5py
    import torch

#: The network's input as an edge's source (layers are numbered 0, 1, ...).
INPUT = -1

SYNAPSE_KINDS: dict[str, type["Synapse"]] = {}
NEURON_KINDS: dict[str, type["Neuron"]] = {}
#: Spike encoding -> the neuron kind of a hidden layer in a network of that encoding.
ENCODINGS: dict[str, type["Neuron"]] = {}
#: The encoding of a network that names none: each code as T binary spikes, most significant first.
BIT_SERIAL = "bit-serial"


def register_synapse(cls: type["Synapse"]) -> type["Synapse"]:
    """Class decorator: make a synapse kind known to the file reader and every backend by its ``kind``."""
    SYNAPSE_KINDS[cls.kind] = cls
    return cls


def register_neuron(cls: type["Neuron"]) -> type["Neuron"]:
    """Class decorator: make a neuron kind known to the file reader and every backend by its ``kind``, and,
    when it declares an ``encoding`` of its own, that encoding's hidden kind (a kind that inherits its encoding,
    such as a Transformer's signed neuron, sends in it without setting the network's pace)."""
    NEURON_KINDS[cls.kind] = cls
    if vars(cls).get("encoding") is not None:
        ENCODINGS[cls.encoding] = cls
    return cls


@dataclass
class Synapse(ABC):
    """Weighted connections from one node's outputs to a layer's neurons.

    Attributes:
        weight_mantissa: even integers in [-256, 254] (Loihi's 8-bit mixed-sign grid).
        weight_exp: the synaptic weight is ``weight_mantissa << weight_exp`` (never negative: no bit is lost).
        input_shape: ``(C, H, W)`` of the source's output.
    """

    kind: ClassVar[str]
    #: Nodes whose outputs it combines: 1 for a weighted sum, 2 for a product of two activations.
    operands: ClassVar[int] = 1
    weight_mantissa: np.ndarray
    weight_exp: int
    input_shape: tuple[int, int, int]

    @property
    def weight(self) -> np.ndarray:
        """The integer synaptic weights, mantissa shifted by the exponent (int64)."""
        return self.weight_mantissa.astype(np.int64) << self.weight_exp

    @property
    def fan_in(self) -> int:
        """Synapses into one neuron."""
        return int(np.prod(self.weight_mantissa.shape[1:]))

    @property
    def operand_shapes(self) -> list[tuple[int, int, int]]:
        """``(C, H, W)`` of each operand's source, in the order of :attr:`Edge.sources`."""
        return [self.input_shape]

    def shape_problem(self) -> Optional[str]:
        """Why its parameters do not make a synapse (checked by the one rule), or None."""
        return None

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the current it delivers."""

    @abstractmethod
    def current(self, x: "torch.Tensor", single: bool) -> "torch.Tensor":
        """Integer synaptic current ``w x`` for a batch ``(N, C, H, W)`` of codes or spikes, no bias.

        With ``single`` it must compute exactly in float32 (every product and partial sum is an integer
        below 2**24 when the layer has 24-bit headroom): only routines that sum products, never
        transforms that round (Winograd, FFT). Otherwise float64.
        """

    def accumulate(self, planes: "torch.Tensor", shift: int, single: bool) -> "torch.Tensor":
        """Spike level: the current after T steps of ``planes`` ``(T, N, C, H, W)``, most significant first.

        Horner's rule, ``u <- 2**shift u + w s_j``: after T steps ``u = w k`` (``docs/neuron.md``, section 3).
        A product synapse receives ``(planes of A, planes of B)`` and overrides this.
        """
        u = 0
        for plane in planes:
            u = u * float(1 << shift) + self.current(plane, single)
        return u

    def current_bounds(self, ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Smallest and largest current per output channel when each operand's codes lie in ``ranges``."""
        (low, high), = ranges
        w = self.weight.reshape(self.weight.shape[0], -1)
        positive, negative = np.clip(w, 0, None).sum(axis=1), np.clip(w, None, 0).sum(axis=1)
        return positive * low + negative * high, positive * high + negative * low

    @abstractmethod
    def write_netx(self, group: "h5py.Group") -> None:
        """Write this synapse's netx keys (weights and geometry) into a layer group."""

    @classmethod
    @abstractmethod
    def read_netx(cls, reader: Any, group: "h5py.Group", where: str,
                  input_shape: tuple[int, int, int], shortcut: bool) -> "Synapse":
        """Read and validate this kind's keys (``shortcut``: the reduced key set of a ``skip`` group)."""

    @abstractmethod
    def lava_process(self, message_bits: int) -> Any:
        """The Lava synapse process (Dense, Conv) with these weights, in Lava's axis order."""

    @abstractmethod
    def lava_shape(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """Lava's order for a ``(C, H, W)`` array on this synapse's ports."""

    @abstractmethod
    def fan_out_map(self) -> np.ndarray:
        """Synapses each input neuron reaches, shaped like the input ``(C, H, W)``."""

    @abstractmethod
    def input_axons(self, tile_h: int, tile_w: int) -> int:
        """Distinct inputs feeding a core that holds a ``tile_h`` x ``tile_w`` tile of output positions."""

    def fan_out_maps(self) -> list[np.ndarray]:
        """:meth:`fan_out_map` of each operand, in the order of :attr:`Edge.sources`."""
        return [self.fan_out_map()]

    def off_chip(self) -> Optional[str]:
        """What Loihi 2 would need beyond its neurocores to run this synapse, or None (native)."""
        return None


@dataclass
class Neuron(ABC):
    """What a layer's neurons do with their accumulated potential.

    Attributes:
        scale_exp: F, with scale S = 2**F: a potential u stands for u / S.
        encoding: the spike encoding a layer of this kind sends its codes in (a key of ``ENCODINGS``); None
            for a kind that sends no spikes (the readout), which fits every encoding. A kind with an encoding
            also sets the network's pace: ``steps_per_sample`` and ``emit_delay``.
    """

    kind: ClassVar[str]
    is_readout: ClassVar[bool] = False
    encoding: ClassVar[Optional[str]] = None
    #: Emits signed spikes (-1, 0, 1: ``docs/transformer-arithmetic.md``, section 1) rather than binary ones.
    signed: ClassVar[bool] = False
    #: ``layer/N/neuron/type`` in the netx file.
    netx_type: ClassVar[str] = "ACCEMIT"
    scale_exp: int

    @property
    def levels(self) -> int:
        """Largest code the neurons emit (0: they emit none)."""
        return 0

    @property
    def code_range(self) -> tuple[int, int]:
        """Smallest and largest code the neurons emit."""
        return (0, self.levels)

    def threshold(self, time_steps: int) -> int:
        """The first emit step's threshold theta = 2**(T-1) * S."""
        return 1 << (time_steps - 1 + self.scale_exp)

    @abstractmethod
    def codes(self, potential: "torch.Tensor") -> "torch.Tensor":
        """Code level: the outputs (codes, or logits) of accumulated potentials."""

    @abstractmethod
    def spikes(self, potential: "torch.Tensor", time_steps: int) -> "torch.Tensor":
        """Spike level: the ``(steps, *potential.shape)`` messages emitted from accumulated potentials, one
        per step of the encoding's sample (binary spikes, or graded payloads)."""

    @classmethod
    def steps_per_sample(cls, time_steps: int) -> int:
        """Steps in which a layer of this kind sends one sample's codes (and its successor accumulates them)."""
        raise TypeError(f"a {cls.kind} layer sends no spikes")

    @classmethod
    def emit_delay(cls, time_steps: int) -> int:
        """Steps from a layer's first accumulation step of a sample to its first message of that sample."""
        raise TypeError(f"a {cls.kind} layer sends no spikes")

    def message_bits(self, time_steps: int) -> int:
        """Bits of the payload each message carries (1: binary spikes)."""
        raise TypeError(f"a {self.kind} layer sends no spikes")

    def messages(self, codes: np.ndarray) -> np.ndarray:
        """Messages a neuron sends per sample for each of its codes (what synaptic operations are charged by)."""
        raise TypeError(f"a {self.kind} layer sends no spikes")

    @abstractmethod
    def netx_keys(self, time_steps: int) -> dict[str, int]:
        """The ``layer/N/neuron`` keys besides ``type``."""

    @classmethod
    @abstractmethod
    def from_netx(cls, keys: dict[str, int]) -> "Neuron":
        """Rebuild from validated ``layer/N/neuron`` keys."""

    @classmethod
    def read_netx(cls, reader: Any, group: "h5py.Group", where: str, keys: dict[str, int]) -> "Neuron":
        """Rebuild from the common keys, already read and range-checked, and any keys of this kind's own."""
        return cls.from_netx(keys)

    def off_chip(self) -> Optional[str]:
        """What Loihi 2 would need beyond its neurocores to run this neuron model, or None (native)."""
        return None

    def operations(self, shape: tuple[int, int, int]) -> int:
        """Integer operations per sample beyond a neuron's update, for ``shape`` neurons (a function unit's)."""
        return 0

    def validate(self, time_steps: int, where: str) -> None:
        """Refuse parameters the chip's state cannot hold (one line)."""
        if not 0 <= self.scale_exp < chip.STATE_BITS:
            raise DeployError(f"{where}: scale exponent {self.scale_exp} outside 0..{chip.STATE_BITS - 1}")


@dataclass
class Edge:
    """A synapse from ``source`` (a layer's index, or :data:`INPUT`) into a layer's neurons.

    A product synapse (two operands) also names its second operand's node, ``operand``.
    """

    source: int
    synapse: Synapse
    operand: Optional[int] = None

    @property
    def sources(self) -> tuple[int, ...]:
        """The nodes whose outputs the synapse takes: ``(source,)``, or ``(source, operand)`` for a product."""
        return (self.source,) if self.operand is None else (self.source, self.operand)


@dataclass
class Layer:
    """A node: neurons that sum the currents of their incoming edges, add a bias, and run a neuron model.

    Attributes:
        inputs: incoming edges; the first is the layer's main synapse (netx's layer keys), further ones
            are shortcuts (netx's ``skip`` groups).
        neuron: the neuron model (accumulate-then-emit, or readout).
        bias: integer bias in potential units (scale S), added once per sample: one per output channel
            ``(C,)``, or one per neuron ``(C, H, W)`` (a first layer whose folded input normalization meets
            zero padding, a Transformer's position embedding).
        accumulate_shift: bits that arrive per time step on every edge (the input's digit bits for a
            layer fed by the input, else the bits of its sources' messages: 1 for binary spikes).
    """

    inputs: list[Edge]
    neuron: Neuron
    bias: np.ndarray
    accumulate_shift: int = 1

    @property
    def synapse(self) -> Synapse:
        """The main synapse (the first edge's)."""
        return self.inputs[0].synapse

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the neurons (a dense layer of F neurons is ``(F, 1, 1)``)."""
        return self.synapse.output_shape

    @property
    def neuron_bias(self) -> np.ndarray:
        """The bias of every neuron, ``(C, H, W)`` (a per-channel bias broadcast; read-only)."""
        channels, height, width = self.output_shape
        return np.broadcast_to(self.bias.reshape(channels, *((1, 1) if self.bias.ndim == 1 else (height, width))),
                               (channels, height, width))

    @property
    def num_neurons(self) -> int:
        """Number of neurons."""
        return int(np.prod(self.output_shape))

    @property
    def fan_in(self) -> int:
        """Synapses into one neuron, over every edge."""
        return sum(edge.synapse.fan_in for edge in self.inputs)

    @property
    def is_readout(self) -> bool:
        """True when the neurons only accumulate and hand their potentials on as logits."""
        return self.neuron.is_readout

    @property
    def levels(self) -> int:
        """Largest code the neurons emit (0 for a readout)."""
        return self.neuron.levels

    def threshold(self, time_steps: int) -> int:
        """The first emit step's threshold theta = 2**(T-1) * S (the neuron model's)."""
        return self.neuron.threshold(time_steps)

    def potential_bounds(self, ranges: list[list[tuple[int, int]]]) -> tuple[int, int]:
        """Smallest and largest potential when each edge's operands send codes in ``ranges`` (one list per edge)."""
        bias = self.bias.reshape(len(self.bias), -1).astype(np.int64)       # each channel's neurons
        positive, negative = bias.max(axis=1), bias.min(axis=1)
        for edge, edge_ranges in zip(self.inputs, ranges):
            low, high = edge.synapse.current_bounds(edge_ranges)
            positive, negative = positive + high, negative + low
        low = min(int(negative.min()), int(self.bias.min()), 0)
        high = max(int(positive.max()), int(self.bias.max()), 0)
        return low, high


@dataclass
class SpikingNetwork:
    """A converted network: neuron layers in topological order, the last one the readout.

    Attributes:
        layers: the nodes after the input; every edge comes from the input or an earlier layer.
        time_steps: T, bits per activation code (and steps per sample when bit-serial).
        input_bits: T_in, bits of the input image codes (pixel = k / (2**T_in - 1)).
        input_shape: ``(C, H, W)`` of the image.
        class_names: label names, index = class.
        metadata: free-form provenance (dataset, checkpoint hash, accuracies).
        encoding: how codes travel (a key of ``ENCODINGS``): ``bit-serial``, T binary spikes per code, or
            ``graded``, one graded spike per code; the hidden layers' neuron kind is the encoding's.
    """

    layers: list[Layer]
    time_steps: int
    input_bits: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    metadata: dict = field(default_factory=dict)
    encoding: str = BIT_SERIAL

    @property
    def emitter(self) -> type[Neuron]:
        """The neuron kind of the hidden layers: the encoding's, which sets the pipeline's pace."""
        if self.encoding not in ENCODINGS:
            raise DeployError(f"unknown spike encoding '{self.encoding}' (known: {', '.join(ENCODINGS)})")
        return ENCODINGS[self.encoding]

    @property
    def input_levels(self) -> int:
        """Largest input code, 2**T_in - 1."""
        return (1 << self.input_bits) - 1

    @property
    def input_digit_bits(self) -> int:
        """Bits per input digit plane, so that the planes of one sample carry all T_in bits."""
        return -(-self.input_bits // self.steps_per_sample)

    def message_bits(self, source: int) -> int:
        """Bits a node sends per step: the input's digit bits, or a layer's message payload."""
        return self.input_digit_bits if source == INPUT else self.layers[source].neuron.message_bits(self.time_steps)

    def source_levels(self, source: int) -> int:
        """Largest code a node sends: the input's top code, or a layer's top level."""
        return self.input_levels if source == INPUT else self.layers[source].levels

    def source_range(self, source: int) -> tuple[int, int]:
        """Smallest and largest code a node sends (negative ones from signed neurons)."""
        return (0, self.input_levels) if source == INPUT else self.layers[source].neuron.code_range

    def source_shape(self, source: int) -> tuple[int, int, int]:
        """``(C, H, W)`` of what a node sends."""
        return self.input_shape if source == INPUT else self.layers[source].output_shape

    def depth(self, index: int) -> int:
        """Neuron layers on the longest path from the input to layer ``index``, itself included."""
        depths = {INPUT: 0}
        for i, layer in enumerate(self.layers[:index + 1]):       # topological order: sources come first
            depths[i] = 1 + max(depths[source] for edge in layer.inputs for source in edge.sources)
        return depths[index]

    @property
    def layer_steps(self) -> int:
        """Steps between the starts of two successive layers: the emit delay plus the synapse's one step.

        Bit-serial: a layer accumulates T steps, then emits T steps while the next one accumulates (T + 1).
        Graded: a layer sends its code at the end of its one accumulation step (1).
        """
        return self.emitter.emit_delay(self.time_steps) + 1

    def accumulate_start(self, index: int) -> int:
        """Step offset, after the input's first digit, at which layer ``index`` accumulates sample 0."""
        return 1 + (self.depth(index) - 1) * self.layer_steps

    def emit_start(self, index: int) -> int:
        """Step offset, after the input's first digit, of hidden layer ``index``'s first message of sample 0."""
        return self.accumulate_start(index) + self.emitter.emit_delay(self.time_steps)

    def edge_delay(self, index: int, edge: Edge, source: Optional[int] = None) -> int:
        """Steps an edge into layer ``index`` must hold its spikes so that every edge carries one sample.

        A source's spikes reach the layer right after it when that layer
        accumulates; each layer deeper adds :attr:`layer_steps`. ``source``: which of
        a product's operands (default: the edge's first).
        """
        source = edge.source if source is None else source
        source_depth = 0 if source == INPUT else self.depth(source)
        return (self.depth(index) - source_depth - 1) * self.layer_steps

    def consumers(self, source: int) -> list[tuple[int, Edge]]:
        """(layer index, edge) of every edge that carries ``source``'s output."""
        return [(i, edge) for i, layer in enumerate(self.layers) for edge in layer.inputs if source in edge.sources]

    def potential_bounds(self, index: int) -> tuple[int, int]:
        """Smallest and largest potential any input codes can produce in layer ``index``.

        Horner accumulation only ever holds a prefix of the final sum, so these
        bound every intermediate potential too.
        """
        layer = self.layers[index]
        return layer.potential_bounds([[self.source_range(source) for source in edge.sources]
                                       for edge in layer.inputs])

    def headroom_bits(self, index: int) -> int:
        """Spare bits of layer ``index``'s 24-bit signed state (negative: it can overflow)."""
        return headroom_bits(*self.potential_bounds(index))

    def headroom(self) -> list[int]:
        """Spare bits of the 24-bit state per layer (negative: overflow possible)."""
        return [self.headroom_bits(i) for i in range(len(self.layers))]

    @property
    def steps_per_sample(self) -> int:
        """A pipelined network takes a new sample every T steps (bit-serial) or every step (graded)."""
        return self.emitter.steps_per_sample(self.time_steps)

    @property
    def latency_steps(self) -> int:
        """Steps from a sample's first input digit to its logits, both included: depth (T + 1) bit-serial,
        depth + 1 graded."""
        return self.accumulate_start(len(self.layers) - 1) + self.steps_per_sample

    def with_encoding(self, encoding: str) -> "SpikingNetwork":
        """The same integer network with its codes sent in ``encoding``: every hidden layer's neuron becomes
        the encoding's kind (same parameters), every accumulate shift the bits its sources then send."""
        network = SpikingNetwork([], self.time_steps, self.input_bits, self.input_shape, list(self.class_names),
                                 dict(self.metadata), encoding)
        kind = network.emitter
        # The readout, and a Transformer's kinds (which send in the encoding they inherit), stay as they are.
        keep = [layer.is_readout or type(layer.neuron) is not self.emitter for layer in self.layers]
        transformer = any(keep[:-1]) or any(edge.operand is not None for layer in self.layers for edge in layer.inputs)
        if encoding != self.encoding and transformer:
            raise DeployError(f"a Transformer's nodes (signed neurons, products, function units) are sent "
                              f"bit-serially only, not {encoding}")
        for layer, kept in zip(self.layers, keep):
            neuron = layer.neuron if kept else kind(**{f.name: getattr(layer.neuron, f.name) for f in fields(kind)})
            network.layers.append(Layer(list(layer.inputs), neuron, layer.bias))
            network.layers[-1].accumulate_shift = network.message_bits(layer.inputs[0].source)
        return network


def headroom_bits(low: int, high: int) -> int:
    """Spare bits of the 24-bit signed state for potentials in ``[low, high]`` (negative: it can overflow)."""
    needed = max(high.bit_length(), (-low - 1).bit_length() if low < 0 else 0) + 1
    return chip.STATE_BITS - needed


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """PyTorch's convolution output size along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def encode_input_digits(codes: np.ndarray, input_bits: int, steps: int) -> np.ndarray:
    """Split input codes into digit planes, one per step of a sample (T bit-serial, 1 graded), most
    significant first.

    Each plane carries ``m = ceil(T_in / steps)`` bits, so plane j holds
    ``(k >> (m * (steps-1-j))) & (2**m - 1)``; with T_in <= steps these are plain
    binary bit-plane spikes, with one step the whole code. Returns shape ``(steps, *codes.shape)``.
    """
    shift = -(-input_bits // steps)
    mask = (1 << shift) - 1
    codes = np.asarray(codes, dtype=np.int64)
    return np.stack([(codes >> (shift * (steps - 1 - j))) & mask for j in range(steps)])
