"""Sharded runs: the samples split into contiguous shards, each an independent run of the same backend.

Any backend can be sharded: a shard is one call of its ``run`` on a slice of the
samples, and the shards' results are merged in sample order into what a single
run returns (the same logits, labels and spikes). Two engines run the shards:

- this machine (``workers``): one thread per shard, each waiting on its own
  backend run. A Lava run is a worker process of its own, cleaned up as any
  single run is, so the shards use as many cores as there are workers.
- Ray (``ray_address``): one Ray task per shard, on a cluster or, with
  ``"local"``, on a Ray instance started for the run and shut down after it.
  Ray schedules the tasks, retries a failed one and cancels them.

A shard that fails is run once more; when it fails again, the other shards are
stopped (each cleaned up as after Ctrl-C) and the error names its samples: no
partial result is returned. Ctrl-C stops every shard the same way.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from lava_deploy.errors import DeployError
from lava_deploy.network import SpikingNetwork
from lava_deploy.simulate.backend import Backend, RunCancelled
from lava_deploy.simulate.result import SimulationResult

#: ``ray_address`` that starts a Ray instance on this machine for the run (Ray's own name for it).
LOCAL_RAY = "local"
#: Runs of one shard before the whole run fails: the first and one retry.
ATTEMPTS = 2
#: Seconds between looks at the shards (progress, failures).
_POLL_S = 0.1
#: Seconds cancelled Ray tasks get to stop their runs (a Lava run's cleanup takes up to about 10 s).
_RAY_CANCEL_S = 30.0
RAY_MISSING = "--ray needs Ray: pip install 'lava-deploy[ray]'"


@dataclass(frozen=True)
class Shard:
    """Samples ``start`` to ``stop - 1`` of a run, its ``index``-th of ``count`` shards."""

    index: int
    count: int
    start: int
    stop: int

    @property
    def samples(self) -> slice:
        """The shard's samples, as a slice of the run's."""
        return slice(self.start, self.stop)

    def describe(self) -> str:
        """How an error names the shard: by its samples."""
        return f"samples {self.start}-{self.stop - 1} (shard {self.index + 1} of {self.count})"


def split_samples(samples: int, shards: int) -> list[Shard]:
    """``samples`` cut into at most ``shards`` contiguous shards whose sizes differ by at most one."""
    count = max(1, min(shards, samples))
    bounds = [round(i * samples / count) for i in range(count + 1)]
    return [Shard(i, count, bounds[i], bounds[i + 1]) for i in range(count)]


def check_workers(workers: Optional[int]) -> None:
    """Refuse a worker count that is not a whole number of at least 1 (None: the engine's default)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DeployError(f"--workers must be a whole number of at least 1, got {workers}")


def require_ray() -> None:
    """Raise a one-line DeployError unless Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise DeployError(RAY_MISSING) from None


class _Progress:
    """Samples finished per shard, passed on to the caller's ``progress`` from the caller's thread.

    Each attempt of a shard reports its own running count; a retried shard counts
    from 0 again, and only what goes past its failed attempt is passed on.
    """

    def __init__(self, shards: int, progress: Optional[Callable[[int], None]]) -> None:
        self.progress, self.shown = progress, [0] * shards

    def forward(self, latest: list[int]) -> None:
        """Pass on what ``latest`` (each shard's current attempt's count) adds to what was shown."""
        new = 0
        for i, done in enumerate(latest):
            if done > self.shown[i]:
                new += done - self.shown[i]
                self.shown[i] = done
        if new and self.progress is not None:
            self.progress(new)


class ShardFailed(DeployError):
    """A shard failed on every attempt: the run has no result."""


def _failure(failed: list[tuple[Shard, BaseException]]) -> ShardFailed:
    """One line naming each failed shard's samples and its last error."""
    def reason(exc: BaseException) -> str:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    parts = [f"{shard.describe()} failed {ATTEMPTS} times: {reason(exc)}" for shard, exc in failed]
    return ShardFailed("; ".join(parts) + "; the other shards were stopped and there is no result")


def merge_results(parts: list[SimulationResult], wall_seconds: float) -> SimulationResult:
    """The shards' results, in sample order, as one run's.

    Logits, labels and spikes are concatenated; a layer's mean spikes per
    sample is recomputed from the shards' integer totals, so it is the single
    run's figure; numeric ``extra`` figures (Lava's steps run) are added up.
    """
    first = parts[0]
    sizes = [len(p.labels) for p in parts]
    spikes = None
    if all(p.spikes is not None for p in parts):
        spikes = [np.concatenate(layer) for layer in zip(*(p.spikes for p in parts))]
    per_layer = None
    if all(p.spikes_per_layer is not None for p in parts):
        # Each shard's mean times its size is an integer count of spikes: rounding restores it exactly.
        totals = [sum(round(m * n) for m, n in zip(layer, sizes)) for layer in zip(*(p.spikes_per_layer
                                                                                 for p in parts))]
        per_layer = [total / sum(sizes) for total in totals]
    extra = {key: sum(p.extra[key] for p in parts) for key, value in first.extra.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool) and all(key in p.extra for p in parts)}
    extra["shards"] = len(parts)
    return SimulationResult(first.backend, np.concatenate([p.logits for p in parts]),
                            np.concatenate([p.labels for p in parts]), per_layer, first.steps_per_sample,
                            first.latency_steps, wall_seconds, spikes, extra)


def run_sharded(backend: Backend, network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, *,
                workers: Optional[int] = None, ray_address: Optional[str] = None, record_spikes: bool = False,
                progress: Optional[Callable[[int], None]] = None,
                partition: Optional[str] = None) -> SimulationResult:
    """Run ``backend`` on contiguous shards of the samples in parallel and merge the results in sample order.

    Args:
        backend: any backend; each shard is one call of its ``run``.
        network, codes, labels, record_spikes, partition: as for :meth:`Backend.run`.
        workers: number of shards (default: 1 here; on Ray, the cluster's CPUs). On this machine, each shard
            runs at once beside the others.
        ray_address: run the shards as Ray tasks: a cluster's address (``host:port``, ``ray://host:port``,
            ``auto``) or :data:`LOCAL_RAY` for a Ray instance on this machine. None: threads here.
        progress: called from the caller's thread with the number of newly finished samples, all shards
            together.

    Raises:
        ShardFailed: a shard failed twice (named by its samples); the other shards were stopped.
        DeployError: Ray is missing or its cluster cannot be reached.
    """
    check_workers(workers)
    start = time.perf_counter()
    if ray_address is None:
        parts = _run_here(backend, network, split_samples(len(codes), workers or 1), codes, labels, record_spikes,
                          partition, progress)
    else:
        parts = _run_on_ray(ray_address, backend, network, workers, codes, labels, record_spikes, partition,
                            progress)
    return merge_results(parts, time.perf_counter() - start)


def _run_here(backend: Backend, network: SpikingNetwork, shards: list[Shard], codes: np.ndarray,
              labels: np.ndarray, record_spikes: bool, partition: Optional[str],
              progress: Optional[Callable[[int], None]]) -> list[SimulationResult]:
    """Each shard in a thread of its own, waiting on its backend's run; retried once; all stopped together.

    The caller's thread only polls plain flags and sleeps (a Ctrl-C raised inside a lock's hold would leave
    it held), then sets ``cancel``, which every run looks at within a fraction of a second, and waits for the
    threads: each run has cleaned up when its thread ends.
    """
    cancel = threading.Event()
    results: list[Optional[SimulationResult]] = [None] * len(shards)
    errors: list[Optional[BaseException]] = [None] * len(shards)
    latest = [0] * len(shards)
    finished = [threading.Event() for _ in shards]

    def run(shard: Shard) -> None:
        def count(samples: int) -> None:
            latest[shard.index] += samples
        try:
            for attempt in range(1, ATTEMPTS + 1):
                latest[shard.index] = 0
                try:
                    results[shard.index] = backend.run(
                        network, codes[shard.samples], labels[shard.samples], record_spikes=record_spikes,
                        progress=count, partition=partition, cancel=cancel)
                    return
                except RunCancelled:
                    return
                except Exception as exc:  # noqa: BLE001 - any failure is retried, then reported by the caller
                    if attempt == ATTEMPTS:
                        errors[shard.index] = exc
                if cancel.is_set():     # stopped between attempts: neither a result nor a failure of its own
                    return
        finally:
            finished[shard.index].set()

    shown = _Progress(len(shards), progress)
    threads = [threading.Thread(target=run, args=(shard,), name=f"lava-deploy shard {shard.index}")
               for shard in shards]
    for thread in threads:
        thread.start()
    try:
        while not all(done.is_set() for done in finished):
            if any(done.is_set() and errors[i] is not None for i, done in enumerate(finished)):
                break
            shown.forward(latest)
            time.sleep(_POLL_S)
    finally:
        cancel.set()        # a no-op for runs that have ended
        for thread in threads:
            thread.join()
    shown.forward(latest)
    failed = [(shard, errors[shard.index]) for shard in shards if errors[shard.index] is not None]
    if failed:
        raise _failure(failed)
    return results


def _ray_shard(backend: Backend, network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray,
               record_spikes: bool, partition: Optional[str], index: int, counts: Any) -> SimulationResult:
    """A Ray task: one shard's run, reporting its samples finished to the ``counts`` actor.

    Ray's cancel raises KeyboardInterrupt here, which cleans the run up as Ctrl-C does.
    """
    done = 0

    def count(samples: int) -> None:
        nonlocal done
        done += samples
        counts.report.remote(index, done)
    return backend.run(network, codes, labels, record_spikes=record_spikes, progress=count, partition=partition)


class _Counts:
    """A Ray actor: the latest count of samples finished that each shard's running attempt reported."""

    def __init__(self, shards: int) -> None:
        self.latest = [0] * shards

    def report(self, index: int, done: int) -> None:
        self.latest[index] = done

    def get(self) -> list[int]:
        return self.latest


def _ray_init(address: str) -> None:
    """Connect to the Ray cluster at ``address`` (or start a local one), quietly and keeping our SIGTERM handler.

    ray.init replaces the caller's SIGTERM handler with an exit of its own, which would skip the CLI's cleanup
    and exit code; the handler is put back. A local start is tried twice: Ray gives its raylet a fixed 30 s to
    register, which a busy machine can miss.
    """
    import ray

    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        for _ in range(ATTEMPTS if address == LOCAL_RAY else 1):
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False)
                return
            except Exception as exc:  # noqa: BLE001 - Ray raises bare Exceptions on a failed start
                ray.shutdown()      # whatever of the attempt did start
                lines = str(exc).strip().splitlines()
                reason = lines[0] if lines else type(exc).__name__
        raise DeployError(f"could not start or reach Ray at '{address}': {reason}")
    finally:
        if main:
            signal.signal(signal.SIGTERM, sigterm)


def _run_on_ray(address: str, backend: Backend, network: SpikingNetwork, workers: Optional[int], codes: np.ndarray,
                labels: np.ndarray, record_spikes: bool, partition: Optional[str],
                progress: Optional[Callable[[int], None]]) -> list[SimulationResult]:
    """One Ray task per shard (Ray retries each once); on a failure or Ctrl-C, Ray cancels the others."""
    require_ray()
    import ray
    from ray.exceptions import RayTaskError

    started = not ray.is_initialized()      # a caller's own Ray session is left as it was
    if started:
        _ray_init(address)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        shards = split_samples(len(codes), workers)
        counts = ray.remote(num_cpus=0)(_Counts).remote(len(shards))
        task = ray.remote(num_cpus=1, max_retries=ATTEMPTS - 1, retry_exceptions=True)(_ray_shard)
        shared = ray.put(network)
        refs = {task.remote(backend, shared, codes[s.samples], labels[s.samples], record_spikes, partition,
                            s.index, counts): s for s in shards}
        results: list[Optional[SimulationResult]] = [None] * len(shards)
        failed: list[tuple[Shard, BaseException]] = []
        shown = _Progress(len(shards), progress)
        pending = list(refs)
        try:
            while pending and not failed:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_S)
                for ref in ready:
                    try:
                        results[refs[ref].index] = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - Ray has retried it: report it by its samples
                        cause = exc.cause if isinstance(exc, RayTaskError) else None
                        failed.append((refs[ref], cause or exc))
                shown.forward(ray.get(counts.get.remote()))
        finally:
            if pending:
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(pending, num_returns=len(pending), timeout=_RAY_CANCEL_S)
        if failed:
            raise _failure(failed)
        return results
    finally:
        if started:
            ray.shutdown()
