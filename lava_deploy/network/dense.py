"""The dense synapse kind: every input reaches every neuron (netx ``type`` = ``dense``).

A dense synapse right after a conv layer or the input flattens its source in
PyTorch's ``(C, H, W)`` order; netx marks that with a ``flatten`` layer group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import torch

from lava_deploy.network.graph import Synapse, register_synapse


@register_synapse
@dataclass
class DenseSynapse(Synapse):
    """``weight_mantissa`` is ``(out, in)``; the output is ``(out, 1, 1)``."""

    kind = "dense"

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(out, 1, 1)``, so that flattening keeps PyTorch's order downstream."""
        return (int(self.weight_mantissa.shape[0]), 1, 1)

    def current(self, x: torch.Tensor, single: bool) -> torch.Tensor:
        """A matrix product (sums of products, exact in float32 under 24-bit headroom)."""
        dtype = torch.float32 if single else torch.float64
        weight = torch.from_numpy(self.weight).to(dtype)
        return (x.to(dtype).reshape(len(x), -1) @ weight.T).reshape(len(x), *self.output_shape)

    def write_netx(self, group: h5py.Group) -> None:
        """netx's dense keys: ``shape`` (features,), ``inFeatures``, ``outFeatures``, ``weight``, ``weightExponent``."""
        group.create_dataset("shape", data=np.array([self.output_shape[0]]))
        group.create_dataset("inFeatures", data=self.weight_mantissa.shape[1])
        group.create_dataset("outFeatures", data=self.weight_mantissa.shape[0])
        group.create_dataset("weight", data=self.weight)
        group.create_dataset("weightExponent", data=self.weight_exp)

    @classmethod
    def read_netx(cls, reader: Any, group: h5py.Group, where: str, input_shape: tuple[int, int, int],
                  shortcut: bool) -> "DenseSynapse":
        """Read and check the keys against the source's flattened size."""
        if shortcut:
            raise reader.fail(where, "'type' must be 'conv' (a shortcut is a 1x1 identity or projection convolution)")
        fan_in = int(np.prod(input_shape))
        out = reader.scalar(group, "outFeatures", where, 1, reader.max_neurons)
        if reader.scalar(group, "inFeatures", where) != fan_in:
            raise reader.fail(where, f"'inFeatures' is not the {fan_in} outputs of the layer before")
        if tuple(reader.integers(group, "shape", where)) != (out,):
            raise reader.fail(where, f"'shape' is not ({out},), the layer's outFeatures")
        exp = reader.weight_exponent(group, where)
        weight = reader.integers(group, "weight", where, (out, fan_in))
        return cls(reader.mantissa(where, weight, exp), exp, tuple(input_shape))

    def lava_process(self, message_bits: int) -> Any:
        """lava's Dense, with the exponent (its fixed-point model shifts the summed input)."""
        from lava.proc.dense.process import Dense
        return Dense(weights=self.weight_mantissa.astype(np.int32), weight_exp=self.weight_exp, num_weight_bits=8,
                     num_message_bits=message_bits)

    def lava_shape(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """Flat: ``(C * H * W,)``."""
        return (int(np.prod(shape)),)

    def fan_out_map(self) -> np.ndarray:
        """Every input reaches every neuron."""
        return np.full(self.input_shape, self.output_shape[0], dtype=np.float64)

    def input_axons(self, tile_h: int, tile_w: int) -> int:
        """Every input feeds every core."""
        return int(np.prod(self.input_shape))
