"""Random integer spiking networks for property tests (shared by several test files)."""
from __future__ import annotations

import numpy as np

from lava_deploy.convert.network import SkipInput, SpikingLayer, SpikingNetwork, conv_output_size


def _mantissa(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return 2 * rng.integers(-128, 128, size=shape)


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
            k = 3
            out = (width, conv_output_size(shape[1], k, 1, 1), conv_output_size(shape[2], k, 1, 1))
            layer = SpikingLayer("conv", _mantissa(rng, (width, shape[0], k, k)), exp,
                                 np.zeros(width, np.int64), scale_exp, 0 if readout else levels,
                                 shape, out, padding=(1, 1), accumulate_shift=shift)
        else:
            fan_in = int(np.prod(shape))
            out = (width, 1, 1)
            layer = SpikingLayer("dense", _mantissa(rng, (width, fan_in)), exp,
                                 np.zeros(width, np.int64), scale_exp, 0 if readout else levels,
                                 shape, out, accumulate_shift=shift)
        theta = 1 << (time_steps - 1 + scale_exp)
        layer.bias = rng.integers(-bias_range * theta, bias_range * theta + 1, size=width).astype(np.int64)
        layers.append(layer)
        shape = out
    return SpikingNetwork(layers, time_steps, input_bits, input_shape, [str(c) for c in range(classes)])


def random_codes(rng: np.random.Generator, network: SpikingNetwork, n: int) -> np.ndarray:
    """Uniform random input codes for ``network``."""
    return rng.integers(0, network.input_levels + 1, size=(n, *network.input_shape))


def random_residual_network(rng: np.random.Generator, time_steps: int = 3, input_bits: int = 4,
                            channels: int = 3, size: int = 6, classes: int = 4) -> SpikingNetwork:
    """A stem conv, an identity-shaped block (shortcut from the stem), a strided block with a 1x1
    projection shortcut, and a dense readout: every kind of shortcut and delay, with random integers."""
    levels = (1 << time_steps) - 1
    shift = -(-input_bits // time_steps)
    half = conv_output_size(size, 3, 2, 1)
    plan = [  # (input shape, output shape, stride, shortcut source)
        ((1, size, size), (channels, size, size), 1, None),
        ((channels, size, size), (channels, size, size), 1, None),
        ((channels, size, size), (channels, size, size), 1, 0),
        ((channels, size, size), (2 * channels, half, half), 2, None),
        ((2 * channels, half, half), (2 * channels, half, half), 1, 2),
    ]
    layers = []
    for i, (in_shape, out_shape, stride, source) in enumerate(plan):
        scale_exp = int(rng.integers(time_steps, time_steps + 4))
        layer = SpikingLayer("conv", _mantissa(rng, (out_shape[0], in_shape[0], 3, 3)), int(rng.integers(0, 3)),
                             np.zeros(out_shape[0], np.int64), scale_exp, levels, in_shape, out_shape,
                             stride=(stride, stride), padding=(1, 1), accumulate_shift=shift if i == 0 else 1)
        if source is not None:
            skip_in = layers[source].output_shape
            skip_stride = skip_in[1] // out_shape[1]
            layer.skip = SkipInput(source, _mantissa(rng, (out_shape[0], skip_in[0], 1, 1)), int(rng.integers(0, 3)),
                                   skip_in, stride=(skip_stride, skip_stride))
        theta = 1 << (time_steps - 1 + scale_exp)
        layer.bias = rng.integers(-3 * theta, 3 * theta + 1, size=out_shape[0]).astype(np.int64)
        layers.append(layer)
    last = layers[-1].output_shape
    readout = SpikingLayer("dense", _mantissa(rng, (classes, int(np.prod(last)))), 0,
                           rng.integers(-50, 50, size=classes).astype(np.int64), time_steps + 2, 0, last,
                           (classes, 1, 1))
    return SpikingNetwork([*layers, readout], time_steps, input_bits, (1, size, size),
                          [str(c) for c in range(classes)])
