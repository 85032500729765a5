"""The ``lava-cpu`` backend: Lava's bit-accurate fixed-point CPU simulator, in a child process of its own."""
from __future__ import annotations

import threading
from typing import Callable, Optional

import numpy as np

from lava_deploy.network import SpikingNetwork
from lava_deploy.network.netx_stock import StockNetwork
from lava_deploy.simulate.backend import Backend, register_backend, spikes_per_layer
from lava_deploy.simulate.lava_cpu.runner import run_lava, run_stock_netx
from lava_deploy.simulate.result import SimulationResult
from lava_deploy.simulate.stock import StockInput, StockResult


@register_backend
class LavaCpuBackend(Backend):
    """Pipelined: a new sample every T steps; every hidden spike recorded on request; stock netx networks too."""

    name = "lava-cpu"
    runs_stock_netx = True
    #: Passed to the runner: ``True`` runs the layers on a Loihi 2 chip (the ``loihi2`` backend).
    on_chip = False

    def run(self, network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, *, record_spikes: bool = False,
            progress: Optional[Callable[[int], None]] = None, partition: Optional[str] = None,
            cancel: Optional[threading.Event] = None) -> SimulationResult:
        """Stream the samples through Lava; the labels travel beside the spikes, so a misaligned pipeline
        shows in the accuracy."""
        record = record_spikes and self.records_spikes
        lava = run_lava(network, codes, labels, record_spikes=record, progress=progress, loihi2=self.on_chip,
                        partition=partition, cancel=cancel)
        return SimulationResult(self.name, lava.logits, lava.labels,
                                None if lava.spikes is None else spikes_per_layer(lava.spikes),
                                lava.steps_per_sample, lava.latency_steps, lava.wall_seconds, lava.spikes,
                                extra={"steps_run": lava.steps_run})

    def run_stock(self, network: StockNetwork, stock_input: StockInput, *, record_layers: bool = False) -> StockResult:
        """The network as lava-dl's own netx builds it, fed as lava-dl feeds it, with this package's Conv model."""
        return run_stock_netx(network, stock_input, record_layers=record_layers)
