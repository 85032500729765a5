"""The graded neuron kind: the whole code in one graded spike, one step per layer (``docs/neuron.md``, section 7).

Loihi 2 carries an integer payload on a spike (Lava's ``num_message_bits``).
A graded neuron accumulates a sample in one step (its sources' codes arrive
whole), adds its bias, and sends ``clip(floor(u / S), 0, L)`` as one graded
spike at the end of that step; a zero code sends nothing. The network then
takes a new sample every step, and a layer starts one step after the layer
before it. Same integers, same codes as the bit-serial accumulate-emit neuron.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lava_deploy.network.graph import register_neuron
from lava_deploy.network.neurons import AccumulateEmit

#: The encoding's name in files and on the command line.
GRADED = "graded"


@register_neuron
@dataclass
class GradedEmit(AccumulateEmit):
    """Sends ``clip(floor(u / S), 0, L)`` as one graded spike of T bits (payload bits) per sample.

    It keeps the accumulate-emit neuron's parameters and their rules (levels in
    T bits, the same clamp and file keys), so a network converts between the
    two encodings without touching an integer.
    """

    kind = "graded"
    encoding = GRADED

    @classmethod
    def steps_per_sample(cls, time_steps: int) -> int:
        """One: the code travels whole."""
        return 1

    @classmethod
    def emit_delay(cls, time_steps: int) -> int:
        """Zero: the code leaves at the end of the step that accumulated it."""
        return 0

    def message_bits(self, time_steps: int) -> int:
        """T: a payload holds any code up to 2**T - 1."""
        return time_steps

    def messages(self, codes: np.ndarray) -> np.ndarray:
        """One graded spike for a non-zero code, none for zero."""
        return (codes != 0).astype(np.int64)

    def spikes(self, potential: torch.Tensor, time_steps: int) -> torch.Tensor:
        """``(1, *potential.shape)`` uint8 payloads: the codes themselves (T <= 8 bits)."""
        return self.codes(potential).to(torch.uint8).unsqueeze(0)

    def netx_keys(self, time_steps: int) -> dict[str, int]:
        """The accumulate-emit keys and ``gradedSpike`` = 1 (CUBA's key for graded output)."""
        return {**super().netx_keys(time_steps), "gradedSpike": 1}
