"""Simulation: run an exported spiking network on a backend and measure it.

Backends: ``reference`` (the exact PyTorch integer model, no Lava needed),
``lava-cpu`` (Lava's fixed-point CPU simulator) and ``loihi2`` (a Loihi 2 chip
through Intel's lava-loihi, INRC only). Lava is imported only when asked for,
so that everything else works without it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from lava_deploy.convert.network import SpikingNetwork, validate_network
from lava_deploy.errors import DeployError
from lava_deploy.files import atomic_output, check_output_file
from lava_deploy.simulate.reference import _popcount, run_reference
from lava_deploy.data.datasets import check_input_shape, load_dataset, quantize_input

BACKENDS = ("reference", "lava-cpu", "loihi2")


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


def load_network(path: str | Path) -> SpikingNetwork:
    """Read an exported netx HDF5 network (one-line DeployError if it is malformed)."""
    from lava_deploy.export.netx import read_netx
    return read_netx(path)


def check_samples(samples: Optional[int]) -> None:
    """Refuse a sample count that is not a whole number of at least 1 (None means all)."""
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise DeployError(f"--samples must be a whole number of at least 1, got {samples}")


def simulation_inputs(network: SpikingNetwork, dataset: str, samples: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` test images of ``dataset`` as input codes, with their labels.

    Raises:
        DeployError: the dataset's image shape differs from the network's input.
    """
    check_samples(samples)
    data = load_dataset(dataset)
    check_input_shape(data, network.input_shape)
    count = len(data.y_test) if samples is None else min(samples, len(data.y_test))
    return quantize_input(data.x_test[:count], network.input_bits), data.y_test[:count].astype(np.int64)


def simulate(network: SpikingNetwork | str | Path, dataset: Optional[str] = None, backend: str = "reference",
             samples: Optional[int] = None, record_spikes: bool = False,
             progress: Optional[Callable[[int], None]] = None, partition: Optional[str] = None) -> SimulationResult:
    """Run a network on a dataset's test split with one backend.

    Args:
        network: a converted network or the path of an exported netx file.
        dataset: dataset spec (``digits``, ``mnist5k``, ``npz:PATH``, ``cifar10:DIR``); None: the one the
            network's metadata records.
        backend: ``reference``, ``lava-cpu`` or ``loihi2``.
        samples: how many test samples (all when None).
        record_spikes: keep every spike of every hidden layer (not on ``loihi2``).
        progress: called with the number of samples finished so far, as they finish.
        partition: ``loihi2`` only: the SLURM partition of the Loihi 2 system.

    Raises:
        DeployError: bad input, a failed run, or ``loihi2`` without lava-loihi.
    """
    if backend not in BACKENDS:
        raise DeployError(f"unknown backend '{backend}': use {', '.join(BACKENDS)}")
    if backend == "loihi2":
        from lava_deploy.simulate.loihi2 import require_loihi2
        require_loihi2()        # before any work: without lava-loihi this is all the user sees
    if isinstance(network, SpikingNetwork):
        validate_network(network)       # a file was checked when read; one rule for every backend
    else:
        network = load_network(network)
    dataset = dataset or network.metadata.get("dataset")
    if not isinstance(dataset, str) or not dataset:     # metadata is free-form JSON: a file may record anything
        raise DeployError("no dataset given and the network file records none: give one with --dataset")
    codes, labels = simulation_inputs(network, dataset, samples)
    if backend == "reference":
        start = time.perf_counter()
        ref = run_reference(network, codes, spikes=record_spikes, progress=progress)
        wall = time.perf_counter() - start
        spikes_per_layer = [float(_popcount(c).reshape(len(c), -1).sum(axis=1).mean()) for c in ref.codes]
        return SimulationResult("reference", ref.logits, labels, spikes_per_layer, network.steps_per_sample,
                                network.latency_steps, wall, ref.spikes)
    from lava_deploy.simulate.lava_cpu.runner import run_lava
    hardware = backend == "loihi2"
    lava = run_lava(network, codes, labels, record_spikes=not hardware, progress=progress, loihi2=hardware,
                    partition=partition)
    spikes_per_layer = None if lava.spikes is None else \
        [float(s.reshape(len(s), -1).sum(axis=1).mean()) for s in lava.spikes]
    # Labels that travelled through Lava beside the spikes: a misaligned pipeline shows in the accuracy.
    return SimulationResult(backend, lava.logits, lava.labels, spikes_per_layer, lava.steps_per_sample,
                            lava.latency_steps, lava.wall_seconds, lava.spikes if record_spikes else None,
                            extra={"steps_run": lava.steps_run})


def write_predictions(result: SimulationResult, path: str | Path, class_names: Sequence[str] = ()) -> Path:
    """Write a run's per-sample ``labels``, ``predictions`` and ``logits`` (and ``class_names``) as .npz.

    The file is written whole or not at all and holds plain integer and
    string arrays only, so ``np.load(path, allow_pickle=False)`` reads it.

    Raises:
        DeployError: the path cannot take the file (one line).
    """
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, labels=result.labels, predictions=result.predictions, logits=result.logits,
                 class_names=np.array(list(class_names), dtype=str))
    return Path(path)


def simulate_spikes(network: str | Path, input_spikes: np.ndarray | str | Path, backend: str = "lava-cpu",
                    output: Optional[str | Path] = None) -> np.ndarray:
    """Run a stock lava-dl netx network (CUBA neurons, no lava-deploy metadata) on recorded input spikes.

    The network is built by lava-dl's own netx, unchanged; this is how a netx
    model from elsewhere runs beside ours.

    Args:
        network: netx HDF5 file.
        input_spikes: ``(steps, *input shape)`` integers in Lava's (x, y, c) order, or a .npy path.
        backend: only ``lava-cpu`` runs stock networks.
        output: write the output spikes here as .npy (atomically).

    Returns:
        ``(steps, *output shape)`` output spikes.
    """
    if backend != "lava-cpu":
        raise DeployError(f"stock netx networks run on --backend lava-cpu only, not '{backend}'")
    if output is not None:
        check_output_file(output, inputs=[network] + ([] if isinstance(input_spikes, np.ndarray) else [input_spikes]))
    if not isinstance(input_spikes, np.ndarray):
        input_spikes = _load_npy(Path(input_spikes))
    from lava_deploy.simulate.lava_cpu.runner import run_stock_netx
    spikes = run_stock_netx(network, input_spikes).spikes
    if output is not None:
        with atomic_output(output) as tmp, open(tmp, "wb") as handle:
            np.save(handle, spikes)
    return spikes


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DeployError(f"input spike file {path} does not exist")
    try:
        # Mapped first: a header that declares more than the file holds fails here, before any allocation.
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path.name}: not a .npy array ({str(exc).splitlines()[0]})") from None
