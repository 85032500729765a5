"""Random integer spiking networks for property tests, stock lava-dl netx files, and the shared memory a Lava run
maps (shared by several test files)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from lava_deploy.network import (INPUT, AccumulateEmit, ConvSynapse, DenseSynapse, Edge, Layer, LayerNorm, Lookup,
                                 ProductSynapse, Readout, SignedEmit, Softmax, SpikingNetwork, Synapse)
from lava_deploy.network.functions import exp_table


def _mantissa(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return 2 * rng.integers(-128, 128, size=shape)


def _layer(rng: np.random.Generator, synapse: Synapse, source: int, scale_exp: int, levels: int, shift: int,
           bias_range: int, time_steps: int, extra: tuple[Edge, ...] = ()) -> Layer:
    """A layer whose random bias spans +-bias_range thresholds, so saturation and silence both happen."""
    theta = 1 << (time_steps - 1 + scale_exp)
    width = synapse.output_shape[0]
    bias = rng.integers(-bias_range * theta, bias_range * theta + 1, size=width).astype(np.int64)
    neuron = Readout(scale_exp) if levels == 0 else AccumulateEmit(scale_exp, levels)
    return Layer([Edge(source, synapse), *extra], neuron, bias, shift)


def random_network(rng: np.random.Generator, time_steps: int = 3, input_bits: int = 4,
                   input_shape: tuple[int, int, int] = (1, 5, 5), conv: bool = True,
                   hidden: tuple[int, ...] = (6, 5), classes: int = 4,
                   levels: int | None = None, bias_range: int = 3) -> SpikingNetwork:
    """A small network whose potentials cover negative, in-range and saturated values.

    ``bias_range`` scales the bias against the threshold, so saturation and
    silence both happen; ``levels`` below 2**T - 1 exercises the clamp.
    """
    levels = (1 << time_steps) - 1 if levels is None else levels
    layers = []
    shape = input_shape
    for i, width in enumerate((*hidden, classes)):
        readout = i == len(hidden)
        scale_exp = int(rng.integers(time_steps, time_steps + 4))
        exp = int(rng.integers(0, 3))
        shift = -(-input_bits // time_steps) if i == 0 else 1
        if conv and i == 0:
            synapse = ConvSynapse(_mantissa(rng, (width, shape[0], 3, 3)), exp, shape, padding=(1, 1))
        else:
            synapse = DenseSynapse(_mantissa(rng, (width, int(np.prod(shape)))), exp, shape)
        layers.append(_layer(rng, synapse, i - 1 if i else INPUT, scale_exp, 0 if readout else levels, shift,
                             bias_range, time_steps))
        shape = synapse.output_shape
    return SpikingNetwork(layers, time_steps, input_bits, input_shape, [str(c) for c in range(classes)])


def with_neuron_bias(rng: np.random.Generator, network: SpikingNetwork, layer: int = 0) -> SpikingNetwork:
    """The network with one random bias per neuron in ``layer`` (as a folded input normalization gives)."""
    target = network.layers[layer]
    theta = target.threshold(network.time_steps)
    target.bias = rng.integers(-3 * theta, 3 * theta + 1, size=target.output_shape).astype(np.int64)
    return network


def random_codes(rng: np.random.Generator, network: SpikingNetwork, n: int) -> np.ndarray:
    """Uniform random input codes for ``network``."""
    return rng.integers(0, network.input_levels + 1, size=(n, *network.input_shape))


def random_residual_network(rng: np.random.Generator, time_steps: int = 3, input_bits: int = 4,
                            channels: int = 3, size: int = 6, classes: int = 4) -> SpikingNetwork:
    """A stem conv, an identity-shaped block (shortcut from the stem), a strided block with a 1x1
    projection shortcut, and a dense readout: every kind of shortcut and delay, with random integers."""
    levels = (1 << time_steps) - 1
    shift = -(-input_bits // time_steps)
    plan = [  # (output channels, stride, shortcut source)
        (channels, 1, None), (channels, 1, None), (channels, 1, 0), (2 * channels, 2, None), (2 * channels, 1, 2)]
    layers: list[Layer] = []
    shape = (1, size, size)
    for i, (out, stride, source) in enumerate(plan):
        synapse = ConvSynapse(_mantissa(rng, (out, shape[0], 3, 3)), int(rng.integers(0, 3)), shape,
                              stride=(stride, stride), padding=(1, 1))
        extra = ()
        if source is not None:
            skip_in = layers[source].output_shape
            skip_stride = skip_in[1] // synapse.output_shape[1]
            extra = (Edge(source, ConvSynapse(_mantissa(rng, (out, skip_in[0], 1, 1)), int(rng.integers(0, 3)),
                                              skip_in, stride=(skip_stride, skip_stride))),)
        layers.append(_layer(rng, synapse, i - 1 if i else INPUT, int(rng.integers(time_steps, time_steps + 4)),
                             levels, shift if i == 0 else 1, 3, time_steps, extra))
        shape = synapse.output_shape
    readout = Layer([Edge(len(layers) - 1, DenseSynapse(_mantissa(rng, (classes, int(np.prod(shape)))), 0, shape))],
                    Readout(time_steps + 2), rng.integers(-50, 50, size=classes).astype(np.int64))
    return SpikingNetwork([*layers, readout], time_steps, input_bits, (1, size, size),
                          [str(c) for c in range(classes)])


def stock_neuron(kind: str = "CUBA", threshold: int = 200, current_decay: int = 1024,
                 voltage_decay: int = 128) -> dict:
    """A netx neuron group as lava-dl writes one: CUBA (slayer's cuba blocks) or LOIHI (LIF, as PilotNet's)."""
    keys = {"type": kind, "iDecay": current_decay, "vDecay": voltage_decay, "vThMant": threshold, "refDelay": 1}
    if kind == "CUBA":
        keys["gradedSpike"] = 0
    else:
        keys.update({"scaleRho": 1.0, "tauRho": 0.5, "theta": 1600, "wgtExp": 0})
    return keys


def stock_input_layer(shape: tuple[int, ...], neuron: Optional[dict] = None) -> dict:
    """netx's input layer (C, H, W) or (n,): a shape alone, or with input neurons (then ``weight`` and ``bias``
    are the data transform lava-dl's datasets apply, as in lava-dl's files)."""
    return {"type": "input", "shape": list(shape), **({"neuron": neuron, "weight": 36, "bias": 34} if neuron else {})}


def stock_conv(rng: np.random.Generator, shape: tuple[int, int, int], in_channels: int, kernel: int,
               neuron: dict, stride: int = 1, padding: int = 0, weights: tuple[int, int] = (-60, 100)) -> dict:
    """A netx conv layer with output ``shape`` (C, H, W) and random even 8-bit weights (netx's (out, in, kH, kW, 1))."""
    return {"type": "conv", "shape": list(shape), "neuron": neuron,
            "weight": 2 * rng.integers(*weights, (shape[0], in_channels, kernel, kernel, 1)),
            "bias": rng.integers(-20, 20, shape[0]), "stride": [stride, stride], "padding": [padding, padding],
            "dilation": [1, 1], "groups": 1, "inChannels": in_channels, "outChannels": shape[0],
            "kernelSize": [kernel, kernel]}


def stock_dense(rng: np.random.Generator, inputs: int, outputs: int, neuron: Optional[dict] = None,
                weights: tuple[int, int] = (-30, 60)) -> dict:
    """A netx dense layer; without a neuron netx makes it a non-leaky integrator (as bootstrap's last layer)."""
    return {"type": "dense", "shape": [outputs], "weight": 2 * rng.integers(*weights, (outputs, inputs)),
            "inFeatures": inputs, "outFeatures": outputs, **({"neuron": neuron} if neuron else {})}


def write_stock_netx(path: Path, layers: list[dict]) -> Path:
    """A stock netx file, keys and layouts as lava-dl writes them (strings as (1,) S10 arrays)."""
    def value(v: object) -> np.ndarray:
        return np.array([v.encode()], dtype="S10") if isinstance(v, str) else np.asarray(v)

    with h5py.File(path, "w") as f:
        f["simulation/Ts"], f["simulation/tSample"] = 1, 16
        for i, keys in enumerate(layers):
            group = f.create_group(f"layer/{i}")
            for key, item in keys.items():
                if key == "neuron":
                    neuron = group.create_group("neuron")
                    for name, v in item.items():
                        neuron.create_dataset(name, data=value(v))
                else:
                    group.create_dataset(key, data=value(item))
    return path

def random_transformer_network(rng: np.random.Generator, time_steps: int = 3, input_bits: int = 4,
                               channels: int = 4, heads: int = 2, size: int = 3, classes: int = 3,
                               bias_range: int = 2) -> SpikingNetwork:
    """One pre-norm attention block and an MLP-like lookup, with random integers.

    A signed patch embedding with a per-neuron bias, a LayerNorm unit, signed Q, K and V, a scores product into
    a softmax unit, a mix product, a residual add (a 1x1 conv and the embedding's identity shortcut), a lookup
    unit and a dense readout. Biases span +-``bias_range`` thresholds, so both ends of every code range occur.
    """
    T, levels = time_steps, (1 << time_steps) - 1
    shift = -(-input_bits // time_steps)
    layers: list[Layer] = []

    def scale() -> int:
        return int(rng.integers(max(T - 1, 1), T + 3))

    def bias(width: int, scale_exp: int, shape=None) -> np.ndarray:
        theta = 1 << (T - 1 + scale_exp)
        return rng.integers(-bias_range * theta, bias_range * theta + 1, size=shape or width).astype(np.int64)

    def conv1x1(source: int, out: int) -> ConvSynapse:
        shape = layers[source].output_shape
        return ConvSynapse(_mantissa(rng, (out, shape[0], 1, 1)), int(rng.integers(0, 2)), shape)

    def add(edges: list[Edge], neuron, bias_values, accumulate_shift: int = 1) -> int:
        layers.append(Layer(edges, neuron, bias_values, accumulate_shift))
        return len(layers) - 1

    patch = ConvSynapse(_mantissa(rng, (channels, 1, 2, 2)), int(rng.integers(0, 2)), (1, 2 * size, 2 * size),
                        stride=(2, 2))
    f = scale()
    embed = add([Edge(INPUT, patch)], SignedEmit(f, levels), bias(channels, f, patch.output_shape), shift)
    f = max(T - 1, 1)
    identity = ConvSynapse(np.full((channels, 1, 1, 1), 2), f - 1, patch.output_shape, groups=channels)
    norm = add([Edge(embed, identity)], LayerNorm(f, levels, levels, gain=max(1, (levels + 1) // 4)),
               np.zeros(channels, np.int64))
    qkv = []
    for _ in range(3):
        f = scale()
        qkv.append(add([Edge(norm, conv1x1(norm, channels))], SignedEmit(f, levels), bias(channels, f)))
    tokens = size * size
    scores = ProductSynapse(np.array([2 * int(rng.integers(1, 128))]), 0, layers[qkv[0]].output_shape,
                            layers[qkv[1]].output_shape, "scores", heads)
    f = scale() + 4
    table = exp_table(float(rng.uniform(0.05, 1.0)), levels)
    attention = add([Edge(qkv[0], scores, qkv[1])],
                    Softmax(f, levels, levels, table=table, gain=(levels + 1) << int(rng.integers(0, 2)), groups=heads),
                    bias(heads * tokens, f))
    # the mix sums up to P attention codes times L: a multiplier that keeps M P L^2 inside the 24-bit state
    largest = min(127, (1 << 22) // (2 * tokens * levels * levels))
    mix = ProductSynapse(np.array([2 * int(rng.integers(-largest, largest + 1))]), 0, layers[attention].output_shape,
                         layers[qkv[2]].output_shape, "mix", heads)
    f = scale() + 4
    mixed = add([Edge(attention, mix, qkv[2])], SignedEmit(f, levels), bias(channels, f))
    f = scale()
    residual = add([Edge(mixed, conv1x1(mixed, channels)),
                    Edge(embed, ConvSynapse(_mantissa(rng, (channels, 1, 1, 1)), 0, layers[embed].output_shape,
                                            groups=channels))], SignedEmit(f, levels), bias(channels, f))
    f = scale()
    lookup = add([Edge(residual, conv1x1(residual, 2 * channels))],
                 Lookup(f, levels, levels, table=rng.integers(-levels, levels + 1, size=2 * levels + 1)),
                 bias(2 * channels, f))
    shape = layers[lookup].output_shape
    readout = DenseSynapse(_mantissa(rng, (classes, int(np.prod(shape)))), 0, shape)
    add([Edge(lookup, readout)], Readout(T + 2), rng.integers(-50, 50, size=classes).astype(np.int64))
    return SpikingNetwork(layers, T, input_bits, (1, 2 * size, 2 * size), [str(c) for c in range(classes)])


def shared_memory_mapped_by(pids: list[int]) -> set[str]:
    """Names of the /dev/shm entries that ``pids`` map (psm_* segments; Lava's semaphores are unlinked at once)."""
    names = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError:
            continue
        names.update(line.rsplit("/dev/shm/", 1)[1] for line in maps
                     if "/dev/shm/" in line and not line.endswith("(deleted)"))
    return names
