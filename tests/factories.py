"""Random integer spiking networks for property tests (shared by several test files)."""
from __future__ import annotations

import numpy as np

from lava_deploy.convert.network import SpikingLayer, SpikingNetwork, conv_output_size


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
