"""The one interface every backend implements, and the registry that ``simulate``, ``compare`` and the CLI use.

A backend runs a validated integer network on input codes and returns a
:class:`~lava_deploy.simulate.result.SimulationResult`; it declares what it
supports (spike records, stock lava-dl netx networks) and checks, before any
work, that it can run here. Adding one is a module with a :func:`register_backend`
class and one import line in ``lava_deploy/simulate/__init__.py``.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Optional

import numpy as np

from lava_deploy.errors import DeployError
from lava_deploy.network import SpikingNetwork
from lava_deploy.network.netx_stock import StockNetwork
from lava_deploy.simulate.result import SimulationResult
from lava_deploy.simulate.stock import StockInput, StockResult

BACKENDS: dict[str, "Backend"] = {}


class RunCancelled(Exception):
    """A run stopped early because its ``cancel`` event was set (its backend has cleaned up)."""


class Backend(ABC):
    """A place where spiking networks run: the exact reference, a simulator, a chip.

    Attributes:
        name: what ``--backend`` calls it.
        records_spikes: it can return every hidden spike (``compare`` checks them one by one).
        runs_stock_netx: it runs stock lava-dl netx networks (:meth:`run_stock`).
    """

    name: ClassVar[str]
    records_spikes: ClassVar[bool] = True
    runs_stock_netx: ClassVar[bool] = False

    def require(self) -> None:
        """Raise a one-line DeployError when this backend cannot run here (called before any work)."""

    @abstractmethod
    def run(self, network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, *, record_spikes: bool = False,
            progress: Optional[Callable[[int], None]] = None, partition: Optional[str] = None,
            cancel: Optional[threading.Event] = None) -> SimulationResult:
        """Run ``codes`` ``(N, C, H, W)`` through ``network``; ``partition`` is a chip backend's SLURM partition.

        ``progress`` is called with the number of newly finished samples. ``cancel`` is set by another thread
        (a sharded run stopping its other shards): the backend then cleans up as on Ctrl-C and raises
        :class:`RunCancelled`, within a fraction of a second where it can.
        """

    def require_stock(self) -> None:
        """Raise a one-line DeployError unless this backend runs stock lava-dl netx networks."""
        if not self.runs_stock_netx:
            raise DeployError(f"stock netx networks do not run on --backend {self.name}; use "
                              + ", ".join(name for name, b in BACKENDS.items() if b.runs_stock_netx))

    def run_stock(self, network: StockNetwork, stock_input: StockInput, *, record_layers: bool = False) -> StockResult:
        """Run a stock lava-dl netx network on its input (spike frames, or its input neurons' bias).

        Backends that declare ``runs_stock_netx`` override it.
        """
        self.require_stock()
        raise TypeError(f"{type(self).__name__} declares runs_stock_netx but has no run_stock (a bug)")


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: one instance of the backend, known by its ``name`` to ``simulate``, ``compare`` and the CLI."""
    BACKENDS[cls.name] = cls()
    return cls


def get_backend(name: str) -> Backend:
    """The registered backend ``name`` (one line listing them all if there is none)."""
    if name not in BACKENDS:
        raise DeployError(f"unknown backend '{name}': use {', '.join(BACKENDS)}")
    return BACKENDS[name]


def stock_backend() -> Backend:
    """The backend a stock netx network runs on when none is named: the first registered that runs them."""
    return next(backend for backend in BACKENDS.values() if backend.runs_stock_netx)


def spikes_per_layer(spikes: list[np.ndarray]) -> list[float]:
    """Mean spikes per sample in each layer of ``(N, ...)`` spike records (a graded spike is one, whatever its
    payload; a signed spike of -1 counts as one)."""
    return [float((s != 0).reshape(len(s), -1).sum(axis=1).mean()) for s in spikes]
