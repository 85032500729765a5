"""Run a spiking network on Lava (fixed-point CPU simulator, or Loihi 2 via lava-loihi) in a child process.

The caller's side: write the job (network file, input codes, result files),
start :mod:`lava_deploy.simulate.lava_cpu.worker` in a session of its own, show
progress from the sink's counter, and always end that session's processes,
on success, error, timeout and Ctrl-C alike: SIGTERM first, so that the worker
releases Lava's shared memory, then SIGKILL for whatever is left. Job folders
are named ``lava-deploy-<pid>-<random>`` so that the folder of a run killed
outright (SIGKILL, power loss) is recognized and removed by the next run.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from lava_deploy.network import BIT_SERIAL, SpikingNetwork
from lava_deploy.errors import DeployError
from lava_deploy.network.netx import write_netx
from lava_deploy.network.netx_stock import StockNetwork
from lava_deploy.simulate.stock import StockInput, StockResult
from lava_deploy.simulate.backend import RunCancelled
from lava_deploy.simulate.lava_cpu.session import kill_session

#: Seconds allowed for start-up and compilation, and per simulated step, before a run counts as hung.
_STARTUP_S, _PER_STEP_S = 120.0, 0.25
#: ... and per step of each process beyond the first twenty (a Transformer's graph has seventy).
_PER_PROCESS_STEP_S = 0.02
#: Seconds the worker gets to release Lava's shared memory after SIGTERM, before its session is killed.
_GRACE_S = 5.0
#: A job folder: the owning process's pid (at most 7 digits: Linux's pid_max), then tempfile's random part.
_JOB_PREFIX = "lava-deploy-"
_JOB_NAME = re.compile(_JOB_PREFIX + r"([1-9][0-9]{0,6})-[a-z0-9_]{8}")
#: The job's file naming the worker's multiprocessing folder (pymp-*), for its removal.
TEMPDIR_FILE = "tempdir"


@dataclass
class LavaResult:
    """What a Lava run produced, in the reference's layouts."""

    logits: np.ndarray
    labels: np.ndarray
    spikes: Optional[list[np.ndarray]]
    steps_run: int
    steps_per_sample: int
    latency_steps: int
    run_seconds: float
    wall_seconds: float
    #: CPU seconds the simulation used in all of Lava's processes (None where /proc is missing).
    cpu_seconds: Optional[float] = None

    @property
    def predictions(self) -> np.ndarray:
        """argmax of the logits, first index on ties."""
        return self.logits.argmax(axis=1)

    @property
    def seconds_per_sample(self) -> float:
        """Wall time of the whole call (start-up included) per sample."""
        return self.wall_seconds / max(len(self.labels), 1)


def run_lava(network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, *, record_spikes: bool = True,
             fast_conv: bool = True, schedule: str = "pipelined", timeout_s: Optional[float] = None,
             progress: Optional[Callable[[int], None]] = None, loihi2: bool = False,
             partition: Optional[str] = None, cancel: Optional[threading.Event] = None) -> LavaResult:
    """Stream ``codes`` through the network on Lava (fixed_pt), one new sample every T steps (graded: every step).

    Args:
        network: the integer network.
        codes: input codes (N, C, H, W).
        labels: labels (N,), carried through the network beside the spikes.
        record_spikes: keep every hidden-layer spike, (N, T, C, H, W) per layer: bool, int8 for signed spikes
            (graded: (N, 1, C, H, W) uint8 payloads).
        fast_conv: run Conv with this package's vectorized bit-exact model instead of lava-nc's
            (which is 100x slower and requires weight exponent 0).
        schedule: ``pipelined`` (a new sample every T steps, or every step graded) or ``reset`` (one sample per run, every neuron
            reset in between: the usual loop, kept as the baseline the pipeline is measured against).
        timeout_s: give up (and clean up) after this long; default scales with the steps.
        progress: called with the number of newly finished samples.
        loihi2: run the layers on a Loihi 2 chip (lava-loihi; pipelined; no spikes recorded).
        partition: the SLURM partition of the Loihi 2 system (INRC), or None for the scheduler's choice.
        cancel: set by another thread to stop the run, cleaned up as on Ctrl-C (a sharded run's other shards).

    Raises:
        DeployError: a process model failed (one line naming it) or the run timed out.
        RunCancelled: ``cancel`` was set.
    """
    if schedule not in ("pipelined", "reset"):
        raise ValueError(f"unknown schedule '{schedule}': use pipelined or reset")
    if loihi2:      # the loihi2 backend's require() has checked for lava-loihi before any work
        off_chip = sorted({layer.neuron.kind for layer in network.layers if layer.neuron.signed}
                          | {layer.synapse.kind for layer in network.layers if layer.synapse.operands > 1})
        if off_chip:
            raise DeployError(f"{', '.join(off_chip)} nodes have no Loihi 2 process model (they need embedded "
                              "cores or the host; see lava-deploy check): use --backend lava-cpu")
        if any(len(layer.inputs) > 1 for layer in network.layers):
            raise DeployError("residual shortcuts are not mapped onto Loihi 2 yet (their spike delay is a CPU "
                              "process): use --backend lava-cpu")
        if network.encoding != BIT_SERIAL:
            raise DeployError(f"{network.encoding} networks are not mapped onto Loihi 2 yet (their neuron has no "
                              "NeuroCore model to look for): use --backend lava-cpu")
        record_spikes, schedule = False, "pipelined"
    codes = np.asarray(codes, dtype=np.int64)
    n, pace = len(codes), network.steps_per_sample
    per_run = network.accumulate_start(len(network.layers) - 1)
    steps = per_run + n * pace if schedule == "pipelined" else (per_run + pace) * n
    processes = sum(1 + len(layer.inputs) for layer in network.layers)      # neurons and synapses, delays aside
    per_step = _PER_STEP_S + _PER_PROCESS_STEP_S * max(0, processes - 20)
    timeout_s = timeout_s if timeout_s is not None else _STARTUP_S + per_step * steps
    start = time.perf_counter()
    with _job_folder() as job:
        write_netx(network, job / "network.net")
        np.save(job / "input_codes.npy", codes)
        np.save(job / "input_labels.npy", np.asarray(labels, dtype=np.int64))
        hidden = [layer for layer in network.layers if not layer.is_readout]
        outputs = {"logits": ((n, network.layers[-1].num_neurons), np.int64), "labels": ((n,), np.int64),
                   "progress": ((1,), np.int64)}
        if record_spikes:
            outputs.update({f"spikes_{i}": ((n, pace, layer.num_neurons), np.int8 if layer.neuron.signed else np.uint8)
                            for i, layer in enumerate(hidden)})
        for name, (shape, dtype) in outputs.items():
            np.lib.format.open_memmap(job / f"{name}.npy", mode="w+", dtype=dtype, shape=shape).flush()
        (job / "job.json").write_text(json.dumps({"kind": "loihi2" if loihi2 else "accumulate-emit",
                                                   "schedule": schedule, "num_samples": n, "partition": partition,
                                                   "record_spikes": record_spikes, "fast_conv": fast_conv}))
        _run_worker(job, timeout_s, progress, cancel)
        done = json.loads((job / "done.json").read_text())
        spikes = None
        if record_spikes:
            # binary spikes as bool, signed ones as int8, graded payloads as the uint8 codes they are (the
            # reference's layouts)
            def kind(layer):
                return np.int8 if layer.neuron.signed else bool if network.encoding == BIT_SERIAL else np.uint8
            spikes = [np.load(job / f"spikes_{i}.npy").astype(kind(layer)).reshape(n, pace, *layer.output_shape)
                      for i, layer in enumerate(hidden)]
        result = LavaResult(logits=np.load(job / "logits.npy"), labels=np.load(job / "labels.npy"), spikes=spikes,
                            steps_run=done["steps_run"], latency_steps=network.latency_steps,
                            steps_per_sample=pace if schedule == "pipelined" else done["steps_run"] // n,
                            run_seconds=done["run_seconds"], wall_seconds=0.0, cpu_seconds=done.get("cpu_seconds"))
    result.wall_seconds = time.perf_counter() - start
    return result


def run_stock_netx(network: StockNetwork, stock_input: StockInput, *, record_layers: bool = False,
                   timeout_s: Optional[float] = None) -> StockResult:
    """Run a stock lava-dl netx network (CUBA or LIF neurons) as lava-dl's netx builds it, on the user's input.

    Args:
        network: the file's description (:func:`~lava_deploy.network.netx_stock.read_stock_netx`).
        stock_input: spike frames on the input port, or the input neurons' bias (:mod:`lava_deploy.simulate.stock`).
        record_layers: keep the output spikes of every block, not only the output port's.
        timeout_s: give up (and clean up) after this long.

    Returns:
        The output port's value at every step (frame t - 1 of the input drives step t), every block's on request,
        and the simulation time (compilation excluded).
    """
    steps, start = stock_input.steps, time.perf_counter()
    records = {f"layer_{layer.group}": layer.shape for layer in network.layers} if record_layers \
        else {"output": network.output_shape}
    with _job_folder() as job:
        shutil.copyfile(network.path, job / "network.net")
        np.save(job / f"input_{stock_input.kind}.npy", stock_input.frames)
        for name, shape in records.items():
            np.lib.format.open_memmap(job / f"{name}.npy", mode="w+", dtype=np.int32, shape=(steps, *shape)).flush()
        (job / "job.json").write_text(json.dumps({
            "kind": "stock", "steps": steps, "input": stock_input.kind, "held": stock_input.held,
            "layers": [layer.group for layer in network.layers], "record_layers": record_layers}))
        _run_worker(job, timeout_s if timeout_s is not None else _STARTUP_S + _PER_STEP_S * steps, None)
        loaded = {name: np.load(job / f"{name}.npy") for name in records}
        seconds = json.loads((job / "done.json").read_text())["run_seconds"]
    layers = loaded if record_layers else None
    output = loaded[f"layer_{network.layers[-1].group}"] if record_layers else loaded["output"]
    return StockResult("lava-cpu", output, layers, steps, seconds, time.perf_counter() - start)


@contextlib.contextmanager
def _job_folder() -> Iterator[Path]:
    """A new job folder with its errors/ folder, removed afterwards; first, those of runs killed outright."""
    _remove_stale_jobs(Path(tempfile.gettempdir()))
    # The worker removes the folder itself when this process dies: both may try.
    with tempfile.TemporaryDirectory(prefix=f"{_JOB_PREFIX}{os.getpid()}-", ignore_cleanup_errors=True) as tmp:
        job = Path(tmp)
        (job / "errors").mkdir()
        yield job


def _remove_stale_jobs(folder: Path) -> None:
    """Remove this user's job folders in ``folder`` whose owning process no longer exists."""
    for entry in folder.glob(f"{_JOB_PREFIX}*"):
        match = _JOB_NAME.fullmatch(entry.name)
        if match is None or _pid_exists(int(match[1])):
            continue
        try:
            info = entry.lstat()
        except OSError:     # removed meanwhile
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            shutil.rmtree(entry, ignore_errors=True)


def _pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a reused pid counts: a folder is kept rather than lost)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's process
        return True
    return True


def _run_worker(job: Path, timeout_s: float, progress: Optional[Callable[[int], None]],
                cancel: Optional[threading.Event] = None) -> None:
    log = open(job / "worker.log", "wb")
    deadline = time.monotonic() + timeout_s
    reported = 0
    # The worker watches this pid: it ends itself when this process dies, however it dies.
    worker = subprocess.Popen([sys.executable, "-m", "lava_deploy.simulate.lava_cpu.worker", str(job),
                               str(os.getpid())],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)   # its own session: Ctrl-C reaches us, and we end it all
    try:
        while not _has_exited(worker):
            # A failed process model leaves Lava's runtime waiting forever: its report is the signal to stop.
            reports = sorted((job / "errors").glob("*.txt"))
            if reports:
                time.sleep(0.2)     # let the report be written in full
                raise DeployError(f"Lava simulation failed: {reports[0].read_text().strip()}")
            if time.monotonic() > deadline:
                raise DeployError(f"Lava simulation did not finish within {timeout_s:.0f} s and was stopped")
            if cancel is not None and cancel.is_set():
                raise RunCancelled("the Lava run was cancelled")
            time.sleep(0.1)
            reported = _report(job, reported, progress)
        _report(job, reported, progress)
    finally:
        end_session(worker)
        _remove_worker_tempdir(job)
        log.close()
    if worker.returncode != 0:
        error = job / "error.txt"
        if error.exists():
            raise DeployError(f"Lava simulation failed: {error.read_text().strip()}")
        lines = (job / "worker.log").read_text(errors="replace").strip().splitlines()
        raise DeployError(f"Lava simulation failed (exit {worker.returncode}): {lines[-1] if lines else 'no output'}")


def _has_exited(worker: subprocess.Popen) -> bool:
    """Whether the worker has exited, left for end_session to reap.

    Not Popen.poll(): an exception raised by a signal handler (Ctrl-C) between its taking and releasing
    a lock would leave the lock taken, and end_session's wait() blocked forever. One system call cannot
    be cut in half.
    """
    try:
        return os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:       # already reaped
        return True


def _report(job: Path, reported: int, progress: Optional[Callable[[int], None]]) -> int:
    if progress is None:
        return reported
    done = int(np.load(job / "progress.npy", mmap_mode="r")[0])
    if done > reported:
        progress(done - reported)
    return max(done, reported)


def _remove_worker_tempdir(job: Path) -> None:
    """Remove the multiprocessing folder of an ended worker: one killed after its grace leaves it behind."""
    try:
        folder = Path((job / TEMPDIR_FILE).read_text())
    except OSError:
        return
    # The file is the worker's; remove only what it could have made.
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("pymp-"):
        shutil.rmtree(folder, ignore_errors=True)


def end_session(worker: subprocess.Popen, grace_s: float = _GRACE_S) -> None:
    """End the worker and every process it started (Lava's runtime children included).

    SIGTERM first: the worker then releases Lava's shared memory and ends Lava's processes itself. Whatever
    of its session is alive after that, or after ``grace_s`` seconds, is killed, and the shared memory a
    worker still alive holds is unlinked.
    """
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    kill_session(worker.pid)
    worker.wait()
    # Lava's forked children die asynchronously: wait (briefly) until none of the group is alive.
    deadline = time.monotonic() + 5.0
    while _live_group_members(worker.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _live_group_members(group: int) -> list[int]:
    """PIDs in process group ``group`` that are not zombies (Linux /proc; empty elsewhere)."""
    members = []
    for process_stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = process_stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(process_stat.parent.name))
    return members
