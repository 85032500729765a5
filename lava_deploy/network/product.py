"""The product synapse kind: a product of two spiking activations (netx ``type`` = ``product``).

Attention multiplies activations by activations: queries by keys, attention
by values. A product node receives both operands as T spike planes and keeps
``P_t = 4 P_{t-1} + 2 (a_t B_{t-1} + A_{t-1} b_t) + a_t b_t``, which is
``A_t B_t`` after every step and the exact product after the T-th
(``docs/transformer-arithmetic.md``, section 3); its current is ``M P`` with
an integer multiplier ``M = mantissa << exponent``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import h5py
import numpy as np
import torch

from lava_deploy.network.graph import Synapse, register_synapse

#: The two bilinear forms of attention (d: a head's channel, i: query position, j: key position).
MODES = {"scores": "nhdi,nhdj->nhji", "mix": "nhji,nhdj->nhdi"}


def attention_product(mode: str, heads: int, a: torch.Tensor, b: torch.Tensor,
                      einsum: Callable = torch.einsum) -> torch.Tensor:
    """The sums of products of :class:`ProductSynapse` for batches ``a`` ``(N, C_A, H_A, W_A)`` and ``b``
    ``(N, C_B, H_B, W_B)``: ``(N, heads P_B, H_A, W_A)`` for scores, ``(N, C_B, H_A, W_A)`` for mix.

    Batched matrix products: every sum of integer products is exact while it stays below 2**24 (float32).
    ``einsum``: ``numpy.einsum`` for numpy arrays (Lava's models run without torch).
    """
    n, (channels, height, width) = len(a), a.shape[1:]
    keys = b.shape[2] * b.shape[3]
    out = einsum(MODES[mode], a.reshape(n, heads, channels // heads, height * width),
                 b.reshape(n, heads, b.shape[1] // heads, keys))
    return out.reshape(n, -1, height, width)


@register_synapse
@dataclass
class ProductSynapse(Synapse):
    """``M`` times a bilinear form of two operands, per attention head.

    ``weight_mantissa`` is the multiplier's mantissa, shape ``(1,)``. Tokens are the positions of ``(C, H, W)``
    arrays (P = H W of them):

    * ``scores``: A and B are ``(heads d_h, H, W)`` (queries, keys); ``out[g P + j, i] = sum_d A[g d_h + d, i]
      B[g d_h + d, j]``, shape ``(heads P_B, H_A, W_A)``.
    * ``mix``: A is ``(heads P_B, H, W)`` (attention codes), B ``(heads d_h, H_B, W_B)`` (values);
      ``out[g d_h + d, i] = sum_j A[g P_B + j, i] B[g d_h + d, j]``, shape ``(heads d_h, H_A, W_A)``.

    Attributes:
        operand_shape: ``(C, H, W)`` of operand B (``input_shape`` is A's).
        mode: ``scores`` or ``mix``.
        heads: attention heads.
    """

    kind = "product"
    operands = 2
    operand_shape: tuple[int, int, int] = (1, 1, 1)
    mode: str = "scores"
    heads: int = 1

    @property
    def multiplier(self) -> int:
        """M = mantissa << exponent."""
        return int(self.weight[0])

    @property
    def tokens(self) -> int:
        """Key positions: operand B's."""
        return int(self.operand_shape[1] * self.operand_shape[2])

    @property
    def head_channels(self) -> int:
        """d_h: channels per head of operand B (and of A for scores)."""
        return self.operand_shape[0] // self.heads

    @property
    def fan_in(self) -> int:
        """Products summed into one neuron (d_h for scores, P_B for mix)."""
        return self.head_channels if self.mode == "scores" else self.tokens

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(heads P_B, H_A, W_A)`` for scores, ``(heads d_h, H_A, W_A)`` for mix."""
        channels = self.heads * self.tokens if self.mode == "scores" else self.operand_shape[0]
        return (channels, self.input_shape[1], self.input_shape[2])

    @property
    def operand_shapes(self) -> list[tuple[int, int, int]]:
        """A's shape, then B's."""
        return [self.input_shape, self.operand_shape]

    def shape_problem(self) -> str | None:
        """Why the operands cannot meet in this form, or None."""
        (ca, _, _), cb = self.input_shape, self.operand_shape[0]
        if self.mode not in MODES:
            return f"unknown product mode '{self.mode}' (use {', '.join(MODES)})"
        if self.heads < 1 or cb % self.heads:
            return f"{self.heads} heads do not divide operand B's {cb} channels"
        want = cb if self.mode == "scores" else self.heads * self.tokens
        if ca != want:
            return f"operand A has {ca} channels; a {self.mode} product of B {tuple(self.operand_shape)} needs {want}"
        if self.weight_mantissa.shape != (1,):
            return f"the multiplier's mantissa has shape {self.weight_mantissa.shape}, not (1,)"
        return None

    def bilinear(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The sums of products, no multiplier: ``(N, *output_shape)``."""
        return attention_product(self.mode, self.heads, a, b)

    def current(self, x: tuple[torch.Tensor, torch.Tensor], single: bool) -> torch.Tensor:
        """``M`` times the bilinear form of the operands ``x = (A, B)`` (batched matrix products: exact sums)."""
        dtype = torch.float32 if single else torch.float64
        a, b = (t.to(dtype) for t in x)
        return self.bilinear(a, b) * float(self.multiplier)

    def accumulate(self, planes: tuple[torch.Tensor, torch.Tensor], shift: int, single: bool) -> torch.Tensor:
        """Spike level: ``P <- 4P + 2 (a B + A b) + a b``, ``A <- 2A + a``, ``B <- 2B + b``, plane by plane; ``M P``."""
        dtype = torch.float32 if single else torch.float64
        a_planes, b_planes = (p.to(dtype) for p in planes)
        A, B = torch.zeros_like(a_planes[0]), torch.zeros_like(b_planes[0])
        P = self.bilinear(A, B)
        for a, b in zip(a_planes, b_planes):
            P = 4 * P + 2 * (self.bilinear(a, B) + self.bilinear(A, b)) + self.bilinear(a, b)
            A, B = 2 * A + a, 2 * B + b
        return P * float(self.multiplier)

    def current_bounds(self, ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """``M`` times the fan-in times the extreme corner products of the operands' code ranges."""
        (a_low, a_high), (b_low, b_high) = ranges
        corners = [a * b for a in (a_low, a_high) for b in (b_low, b_high)]
        ends = sorted((self.multiplier * self.fan_in * min(corners), self.multiplier * self.fan_in * max(corners)))
        return tuple(np.full(self.output_shape[0], end, dtype=np.int64) for end in ends)

    def write_netx(self, group: h5py.Group) -> None:
        """``shape``, ``mode``, ``heads``, ``weight`` (the multiplier, (1,)) and ``weightExponent``."""
        group.create_dataset("shape", data=np.array(self.output_shape))
        group.create_dataset("mode", data=np.array([self.mode.encode()], dtype="S10"))
        group.create_dataset("heads", data=self.heads)
        group.create_dataset("weight", data=self.weight)
        group.create_dataset("weightExponent", data=self.weight_exp)

    @classmethod
    def read_netx(cls, reader: Any, group: h5py.Group, where: str, input_shape: tuple[int, int, int],
                  shortcut: bool, operand_shape: tuple[int, int, int] = (1, 1, 1)) -> "ProductSynapse":
        """Read and check the keys against both operands' shapes (``operand_shape``: B's)."""
        if shortcut:
            raise reader.fail(where, "a shortcut must be a conv")
        mode = reader.text(group, "mode", where)
        heads = reader.scalar(group, "heads", where, 1, reader.max_neurons)
        exp = reader.weight_exponent(group, where)
        weight = reader.integers(group, "weight", where, (1,))
        synapse = cls(reader.mantissa(where, weight, exp), exp, tuple(input_shape), tuple(operand_shape), mode, heads)
        problem = synapse.shape_problem()
        if problem:
            raise reader.fail(where, problem)
        if np.prod(synapse.output_shape) > reader.max_neurons:
            raise reader.fail(where, f"the product's output {synapse.output_shape} exceeds {reader.max_neurons} neurons")
        if tuple(reader.integers(group, "shape", where)) != synapse.output_shape:
            raise reader.fail(where, f"'shape' is not the product's output shape {synapse.output_shape}")
        return synapse

    def lava_process(self, message_bits: int) -> Any:
        """None: a product has no synapse process of its own; its node's process receives both operands."""
        return None

    def lava_shape(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """``(W, H, C)``, as a conv's."""
        c, h, w = shape
        return (w, h, c)

    def fan_out_map(self) -> np.ndarray:
        """Additions each spike of operand A triggers: one per partner in B (P_B for scores, d_h for mix)."""
        per_spike = self.tokens if self.mode == "scores" else self.head_channels
        return np.full(self.input_shape, per_spike, dtype=np.float64)

    def operand_fan_out_map(self) -> np.ndarray:
        """Additions each spike of operand B triggers: one per query position of A."""
        return np.full(self.operand_shape, self.input_shape[1] * self.input_shape[2], dtype=np.float64)

    def fan_out_maps(self) -> list[np.ndarray]:
        """A's additions per spike, then B's."""
        return [self.fan_out_map(), self.operand_fan_out_map()]

    def off_chip(self) -> str:
        """No neurocore synapse multiplies two activations."""
        return "an embedded core or the host (prefixes of both operands, additions per spike, one multiply by M)"

    def input_axons(self, tile_h: int, tile_w: int) -> int:
        """Both operands whole: a product core needs every token of B and the tile's tokens of A."""
        return int(np.prod(self.operand_shape)) + self.input_shape[0] * tile_h * tile_w
