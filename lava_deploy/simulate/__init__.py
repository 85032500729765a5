"""Simulation: run an exported spiking network on a backend and measure it.

Backends implement one interface (:mod:`lava_deploy.simulate.backend`) and are
found by name in its registry: ``reference`` (the exact PyTorch integer model,
no Lava needed), ``lava-cpu`` (Lava's fixed-point CPU simulator; also stock
lava-dl netx networks, :func:`simulate_stock`) and ``loihi2`` (a Loihi 2 chip through Intel's
lava-loihi, INRC only). Lava itself is imported only inside a Lava run's own
process, so that everything else works without it. Any backend's run can be
split into shards run in parallel, here or on a Ray cluster
(:mod:`lava_deploy.simulate.shards`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from lava_deploy.data.datasets import check_input_shape, load_dataset, quantize_input
from lava_deploy.errors import DeployError
from lava_deploy.files import atomic_output, check_output_file
from lava_deploy.network import SpikingNetwork, validate_network
from lava_deploy.network.netx import read_netx
from lava_deploy.network.netx_stock import is_stock_netx, read_stock_netx
from lava_deploy.simulate import lava_cpu, loihi2, reference      # noqa: F401  (each registers its backend)
from lava_deploy.simulate.backend import BACKENDS, Backend, get_backend, register_backend, stock_backend
from lava_deploy.simulate.result import SimulationResult
from lava_deploy.simulate.shards import LOCAL_RAY, check_workers, require_ray, run_sharded
from lava_deploy.simulate.stock import StockInput, StockResult, check_record_size, stock_input

__all__ = ["simulate", "simulate_stock", "simulation_inputs", "network_dataset", "load_network", "write_predictions",
           "check_samples", "is_stock_netx", "SimulationResult", "StockInput", "StockResult", "Backend", "BACKENDS",
           "get_backend", "register_backend", "require_run", "run_sharded", "LOCAL_RAY"]


def load_network(path: str | Path) -> SpikingNetwork:
    """Read an exported netx HDF5 network (one-line DeployError if it is malformed)."""
    return read_netx(path)


def check_samples(samples: Optional[int]) -> None:
    """Refuse a sample count that is not a whole number of at least 1 (None means all)."""
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise DeployError(f"--samples must be a whole number of at least 1, got {samples}")


def network_dataset(network: SpikingNetwork, dataset: Optional[str] = None) -> str:
    """``dataset``, or when None the dataset spec the network's metadata records (one line if it records none)."""
    dataset = dataset or network.metadata.get("dataset")
    if not isinstance(dataset, str) or not dataset:     # metadata is free-form JSON: a file may record anything
        raise DeployError("no dataset given and the network file records none: give one with --dataset")
    return dataset


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


def require_run(backend: str, workers: Optional[int] = None, ray_address: Optional[str] = None) -> Backend:
    """The backend ``backend``, once it and the sharding asked for can run here (one-line DeployError if not).

    Called before any work: for a backend that cannot run here, its refusal is all the user sees.
    """
    runner = get_backend(backend)
    runner.require()
    check_workers(workers)
    if ray_address is not None:
        require_ray()
    return runner


def simulate(network: SpikingNetwork | str | Path, dataset: Optional[str] = None, backend: str = "reference",
             samples: Optional[int] = None, record_spikes: bool = False,
             progress: Optional[Callable[[int], None]] = None, partition: Optional[str] = None,
             workers: Optional[int] = None, ray_address: Optional[str] = None) -> SimulationResult:
    """Run a network on a dataset's test split with one backend, whole or in shards run in parallel.

    Args:
        network: a converted network or the path of an exported netx file.
        dataset: dataset spec (``digits``, ``mnist5k``, ``npz:PATH``, ``cifar10:DIR``); None: the one the
            network's metadata records.
        backend: a registered backend's name (:data:`BACKENDS`): ``reference``, ``lava-cpu``, ``loihi2``.
        samples: how many test samples (all when None).
        record_spikes: keep every spike of every hidden layer, where the backend records them.
        progress: called with the number of samples finished so far, as they finish.
        partition: ``loihi2`` only: the SLURM partition of the Loihi 2 system.
        workers: split the samples into this many contiguous shards, each an independent run, in parallel
            (None or 1 with no ``ray_address``: one run; with one, the Ray cluster's CPUs).
        ray_address: run the shards as tasks on the Ray cluster at this address, or on a Ray instance on this
            machine with :data:`LOCAL_RAY` (needs ``lava-deploy[ray]``).

    Raises:
        DeployError: bad input, a failed run (a shard's names its samples), or a backend that cannot run here
            (``loihi2`` without lava-loihi, ``ray_address`` without Ray).
    """
    runner = require_run(backend, workers, ray_address)
    if isinstance(network, SpikingNetwork):
        validate_network(network)       # a file was checked when read; one rule for every backend
    else:
        network = load_network(network)
    codes, labels = simulation_inputs(network, network_dataset(network, dataset), samples)
    if ray_address is None and (workers or 1) == 1:
        return runner.run(network, codes, labels, record_spikes=record_spikes, progress=progress, partition=partition)
    return run_sharded(runner, network, codes, labels, workers=workers, ray_address=ray_address,
                       record_spikes=record_spikes, progress=progress, partition=partition)


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


def simulate_stock(network: str | Path, *, input_spikes: Optional[np.ndarray | str | Path] = None,
                   input_bias: Optional[np.ndarray | str | Path] = None, steps: Optional[int] = None,
                   backend: Optional[str] = None, output: Optional[str | Path] = None,
                   record_layers: Optional[str | Path] = None) -> StockResult:
    """Run a stock lava-dl netx network (CUBA or LIF neurons, no lava-deploy metadata) on the input lava-dl feeds it.

    The network is built by lava-dl's own netx, unchanged; this is how a netx
    model from elsewhere runs beside ours. Layouts are Lava's (x, y, c) order
    (:mod:`lava_deploy.simulate.stock`).

    Args:
        network: netx HDF5 file.
        input_spikes: ``(steps, *input shape)`` frames on the input port (``Network.inp``), or a .npy path.
        input_bias: for a network whose first layer is an input neuron layer: its neurons' bias, ``(steps,
            *shape)`` or ``shape`` held for ``steps`` steps; or a .npy path.
        steps: steps to hold a single input bias frame.
        backend: a backend that runs stock networks; None: the first that does (``lava-cpu``).
        output: write the output spikes here as .npy (atomically).
        record_layers: record every block's output spikes and write them here as .npz, one array ``layer_N``
            per ``layer/N`` of the file that netx builds a block from (atomically).

    Raises:
        DeployError: the file, the input or an output is not what this needs (one line), or the run failed.
    """
    runner = get_backend(backend) if backend is not None else stock_backend()
    runner.require_stock()
    description = read_stock_netx(network)
    inputs = [network] + [p for p in (input_spikes, input_bias) if p is not None and not isinstance(p, np.ndarray)]
    for path in (output, record_layers):
        if path is not None:
            check_output_file(path, inputs=inputs)
    if output is not None and record_layers is not None and Path(output).resolve() == Path(record_layers).resolve():
        raise DeployError("--output-spikes and --record-layers need two different files")
    stock = stock_input(description, spikes=input_spikes, bias=input_bias, steps=steps)
    check_record_size(description, stock.steps, record_layers is not None)
    runner.require()
    result = runner.run_stock(description, stock, record_layers=record_layers is not None)
    if output is not None:
        with atomic_output(output) as tmp, open(tmp, "wb") as handle:
            np.save(handle, result.output)
    if record_layers is not None:
        with atomic_output(record_layers) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **result.layers)
    return result
