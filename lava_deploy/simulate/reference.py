"""The ``reference`` backend: the exact batched integer model (no Lava)."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

import numpy as np

from lava_deploy.network import SpikingNetwork
from lava_deploy.network.reference import run_reference
from lava_deploy.simulate.backend import Backend, RunCancelled, register_backend
from lava_deploy.simulate.result import SimulationResult


@register_backend
class ReferenceBackend(Backend):
    """What every other backend must reproduce, spike for spike; spikes per layer are the messages the codes make
    (their 1-bits bit-serial, their non-zero codes graded)."""

    name = "reference"

    def run(self, network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, *, record_spikes: bool = False,
            progress: Optional[Callable[[int], None]] = None, partition: Optional[str] = None,
            cancel: Optional[threading.Event] = None) -> SimulationResult:
        """The reference on every sample, in batches (``cancel`` is looked at after each)."""
        def batch_done(samples: int) -> None:
            if cancel is not None and cancel.is_set():
                raise RunCancelled("the reference run was cancelled")
            if progress is not None:
                progress(samples)
        start = time.perf_counter()
        ref = run_reference(network, codes, spikes=record_spikes, progress=batch_done)
        wall = time.perf_counter() - start
        spikes = [float(s) for s in ref.spikes_per_layer(network)]
        return SimulationResult(self.name, ref.logits, labels, spikes, network.steps_per_sample,
                                network.latency_steps, wall, ref.spikes)
