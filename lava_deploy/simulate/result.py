"""What a backend returns: per-sample logits, labels, optional spikes, and the figures runs are compared by."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class SimulationResult:
    """Per-sample outputs and the figures a user compares backends by.

    Attributes:
        backend: which backend produced it.
        logits: int64 ``(N, classes)``.
        labels: int64 ``(N,)``.
        spikes: per hidden layer, bool ``(N, T, C, H, W)`` when recorded.
        spikes_per_layer: mean spikes per sample in each hidden layer (None: not recorded, as on Loihi 2).
        steps_per_sample: time steps between consecutive samples (T when pipelined).
        latency_steps: steps from a sample's first input spike to its logits.
        wall_seconds: time the backend took for all samples.
    """

    backend: str
    logits: np.ndarray
    labels: np.ndarray
    spikes_per_layer: Optional[list[float]]
    steps_per_sample: int
    latency_steps: int
    wall_seconds: float
    spikes: Optional[list[np.ndarray]] = None
    extra: dict = field(default_factory=dict)

    @property
    def predictions(self) -> np.ndarray:
        """argmax of the logits, first index on ties."""
        return self.logits.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        """Fraction of samples classified correctly."""
        return float((self.predictions == self.labels).mean())

    @property
    def spikes_per_sample(self) -> Optional[float]:
        """Mean spikes per sample over all hidden layers (None when not recorded)."""
        return None if self.spikes_per_layer is None else float(sum(self.spikes_per_layer))

    def summary(self) -> dict:
        """The JSON-ready figures (``lava-deploy simulate --json``)."""
        samples = len(self.labels)
        return {
            "backend": self.backend,
            "samples": samples,
            "accuracy": self.accuracy,
            "spikes_per_sample": self.spikes_per_sample,
            "spikes_per_layer": self.spikes_per_layer,
            "steps_per_sample": self.steps_per_sample,
            "latency_steps": self.latency_steps,
            "wall_seconds": self.wall_seconds,
            "seconds_per_sample": self.wall_seconds / max(samples, 1),
            **self.extra,
        }
