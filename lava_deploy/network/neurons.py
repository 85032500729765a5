"""The neuron kinds: accumulate-then-emit (QCFS codes as spikes) and readout (logits).

Both accumulate their input for T steps (Horner: ``u <- 2^m u + w s_j``, most
significant digit first) and add their bias once; they differ in what follows
(``docs/neuron.md``). One class per kind, registered by its ``kind``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.network.graph import BIT_SERIAL, Neuron, register_neuron


def popcount(codes: np.ndarray) -> np.ndarray:
    """The 1-bits of each code's magnitude: the spikes a bit-serial neuron sends for it (a signed code's spikes
    carry its sign)."""
    codes = np.abs(codes.astype(np.int64))
    count = np.zeros_like(codes)
    while codes.any():
        count += codes & 1
        codes = codes >> 1
    return count


@register_neuron
@dataclass
class AccumulateEmit(Neuron):
    """Emit phase: the T bits of ``clip(floor(u / S), 0, L)``, most significant first.

    Attributes:
        levels: L, the largest code emitted (2**T - 1 unless the QCFS layer had fewer levels).
    """

    kind = "accumulate-emit"
    encoding = BIT_SERIAL
    levels: int = 1

    @property
    def clamp(self) -> int:
        """L * S: the potential is clamped to it before emitting, which keeps every code <= L."""
        return self.levels << self.scale_exp

    def codes(self, potential: torch.Tensor) -> torch.Tensor:
        """``clip(floor(u / S), 0, L)``."""
        return torch.clamp(torch.floor(potential / float(1 << self.scale_exp)), 0, self.levels)

    def spikes(self, potential: torch.Tensor, time_steps: int) -> torch.Tensor:
        """Bit j fires where the (clamped) potential reaches theta >> j, which is then subtracted.

        Negative potentials never cross a threshold and saturated ones fire every step.
        """
        u = torch.minimum(potential, torch.tensor(float(self.clamp), dtype=potential.dtype))
        theta = self.threshold(time_steps)
        out = []
        for j in range(time_steps):
            theta_j = float(theta >> j)
            s = u >= theta_j
            u = u - s * theta_j
            out.append(s)
        return torch.stack(out)

    @classmethod
    def steps_per_sample(cls, time_steps: int) -> int:
        """T: one binary spike per bit."""
        return time_steps

    @classmethod
    def emit_delay(cls, time_steps: int) -> int:
        """T: the emit phase follows the T accumulation steps."""
        return time_steps

    def message_bits(self, time_steps: int) -> int:
        """Binary spikes: 1."""
        return 1

    def messages(self, codes: np.ndarray) -> np.ndarray:
        """One spike per 1-bit of the code."""
        return popcount(codes)

    def netx_keys(self, time_steps: int) -> dict[str, int]:
        """``levels``, ``scaleExp``, ``vThMant`` (CUBA's name for the threshold) and ``readout`` = 0."""
        return {"levels": self.levels, "scaleExp": self.scale_exp, "vThMant": self.threshold(time_steps),
                "readout": 0}

    @classmethod
    def from_netx(cls, keys: dict[str, int]) -> "AccumulateEmit":
        """From validated keys."""
        return cls(scale_exp=keys["scaleExp"], levels=keys["levels"])

    def validate(self, time_steps: int, where: str) -> None:
        """Levels within T bits; threshold and clamp inside the 24-bit state."""
        super().validate(time_steps, where)
        if not 1 <= self.levels < (1 << time_steps):
            raise DeployError(f"{where}: {self.levels} levels outside 1..{(1 << time_steps) - 1} for T = {time_steps}")
        if self.scale_exp < time_steps - 1:
            raise DeployError(f"{where}: scale exponent {self.scale_exp} below T - 1 = {time_steps - 1} "
                              "(thresholds theta >> j must be integers)")
        if self.clamp >= chip.STATE_LIMIT:
            raise DeployError(f"{where}: threshold 2^{time_steps - 1 + self.scale_exp} (top level {self.clamp}) "
                              f"does not fit the {chip.STATE_BITS}-bit state")


@register_neuron
@dataclass
class Readout(Neuron):
    """Only accumulates: the potential after accumulation and bias is the logit (scale S), never a spike."""

    kind = "readout"
    is_readout = True

    def codes(self, potential: torch.Tensor) -> torch.Tensor:
        """The logits, one row per sample."""
        return potential.reshape(len(potential), -1)

    def spikes(self, potential: torch.Tensor, time_steps: int) -> torch.Tensor:
        """A readout sends its logits as one graded message, not as spikes."""
        raise TypeError("a readout layer emits no spikes")

    def netx_keys(self, time_steps: int) -> dict[str, int]:
        """``levels`` = 0, ``scaleExp``, ``vThMant`` (unused: the threshold of the same scale) and ``readout`` = 1."""
        return {"levels": 0, "scaleExp": self.scale_exp, "vThMant": self.threshold(time_steps), "readout": 1}

    @classmethod
    def from_netx(cls, keys: dict[str, int]) -> "Readout":
        """From validated keys."""
        return cls(scale_exp=keys["scaleExp"])
