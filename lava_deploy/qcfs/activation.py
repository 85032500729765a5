"""The QCFS activation: quantization-clip-floor-shift with a trainable threshold.

``QCFS(levels=L)`` computes ``lambda * clip(floor(z L / lambda + 1/2), 0, L) / L``
(docs/conversion.md, section 1), the activation whose integer code ``k`` a spiking neuron later
emits as T = ceil(log2(L + 1)) binary spikes. The floor passes gradients
straight through, and the threshold ``lambda`` learns.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class _FloorSTE(torch.autograd.Function):
    """floor() forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def popcount(codes: torch.Tensor) -> torch.Tensor:
    """Number of 1-bits of non-negative integer codes (as the same dtype)."""
    codes = codes.to(torch.int64)
    count = torch.zeros_like(codes)
    while bool(codes.any()):
        count += codes & 1
        codes = codes >> 1
    return count


class _BitCount(torch.autograd.Function):
    """Spikes of a code (the 1-bits of its magnitude), with a fine-grained surrogate gradient.

    The gradient is the central difference ``(pop(k+1) - pop(k-1)) / 2``: it
    pushes each code towards the neighbouring code with fewer 1-bits (7 -> 8
    saves two spikes), not merely towards zero as an L1 on activations would.
    """

    @staticmethod
    def forward(ctx, scaled: torch.Tensor, levels: int, low: int) -> torch.Tensor:  # noqa: D102
        k = torch.clamp(torch.floor(scaled), low, levels).to(torch.int64)
        ctx.save_for_backward(k)
        ctx.levels, ctx.low = levels, low
        return popcount(k.abs()).to(scaled.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (k,) = ctx.saved_tensors
        up = popcount(torch.clamp(k + 1, max=ctx.levels).abs())
        down = popcount(torch.clamp(k - 1, min=ctx.low).abs())
        return grad * (up - down).to(grad.dtype) / 2, None, None


class QCFS(nn.Module):
    """QCFS activation with ``levels`` quantization steps above zero and a trainable threshold.

    Args:
        levels: L, the largest integer code (2**T - 1 for T spikes per neuron;
            the QCFS reference code's ``t`` levels also work).
        threshold: initial lambda, the activation value of code L.

    After each forward pass ``spike_count`` holds the number of 1-bits of the
    codes (differentiable through a surrogate), for the bit-L1 regularizer.
    """

    #: Its codes leave as spikes (a code used inside a function unit does not).
    emits = True

    def __init__(self, levels: int = 7, threshold: float = 8.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS needs at least one level, got {levels}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.spike_count: torch.Tensor | None = None
        self.count_spikes = False

    @property
    def time_steps(self) -> int:
        """Bits (and spikes per neuron at most) needed for a code: ceil(log2(L + 1))."""
        return max(1, math.ceil(math.log2(self.levels + 1)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        scaled = torch.clamp(z / self.threshold, 0, 1) * self.levels + 0.5
        if self.count_spikes:
            self.spike_count = _BitCount.apply(scaled, self.levels, 0).sum() / len(z)
        return _FloorSTE.apply(scaled) * (self.threshold / self.levels)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Integer codes k for pre-activations z (no gradient)."""
        return torch.clamp(torch.floor(z * self.levels / self.threshold + 0.5), 0, self.levels)

    def extra_repr(self) -> str:  # noqa: D102
        return f"levels={self.levels}, threshold={float(self.threshold):.4g}"


class CodeQCFS(QCFS):
    """QCFS in the code domain, for networks computed on integer codes (the Vision Transformer).

    Its input is the pre-activation already divided by the step and shifted by
    the half step, ``z L / lambda + 1/2``; its output is the integer code
    ``clip(floor(.), low, L)`` itself (a float tensor holding integers; the
    floor passes gradients straight through). The threshold lambda sets the
    step ``lambda / L`` that the network's multipliers use.

    Args:
        levels: L.
        threshold: initial lambda.
        signed: codes in [-L, L] (a signed neuron) rather than [0, L].
        emits: its codes leave as spikes; False for the input codes of a function unit (a softmax's scores),
            which spike counts and the bit-L1 penalty leave out.
    """

    def __init__(self, levels: int = 7, threshold: float = 8.0, signed: bool = True, emits: bool = True) -> None:
        super().__init__(levels, threshold)
        self.signed, self.emits = signed, emits

    @property
    def low(self) -> int:
        """The smallest code: -L when signed, else 0."""
        return -self.levels if self.signed else 0

    @property
    def step(self) -> torch.Tensor:
        """The activation value of one code step, lambda / L."""
        return self.threshold / self.levels

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.count_spikes:
            self.spike_count = _BitCount.apply(scaled, self.levels, self.low).sum() / len(scaled)
        return torch.clamp(_FloorSTE.apply(scaled), self.low, self.levels)

    def extra_repr(self) -> str:  # noqa: D102
        return super().extra_repr() + (", signed" if self.signed else "")
