"""A Lava run leaves nothing behind, however it ends: signals to the CLI, a killed CLI, a process-model error;
and so does every shard of a sharded run (--workers, --ray).

Each run gets a TMPDIR of its own; its shared memory is known by name from the
/dev/shm mappings of the worker's session while it runs (other runs on the
machine may create and remove segments meanwhile, so a plain before/after
count would not be this run's).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from factories import random_codes, random_network, shared_memory_mapped_by
from lava_deploy.errors import DeployError
from lava_deploy.simulate.lava_cpu.runner import run_lava

pytestmark = pytest.mark.lava

#: 1,000 mnist5k samples at about 35 ms each: a run still going long after the signal (the digits CNN's 360
#: samples could end, and the caller with them, in the moment between the signal's aim and its arrival).
MODEL = str(Path(__file__).resolve().parents[1] / "netx_models" / "mnist5k-cnn-t3" / "model.net")


@pytest.fixture(scope="module")
def shard_stream(tmp_path_factory) -> str:
    """A dataset spec of 3,000 test samples (mnist5k's 5,000 images three times), for two shards of 1,500.

    The second shard's Lava run compiles while the first runs, which leaves its compiler a small share of
    two cores: its first sample may come 25 s after the first shard's. Shards of mnist5k's 500 could end first.
    """
    from lava_deploy.data.datasets import load_dataset
    mnist = load_dataset("mnist5k")
    images = np.concatenate([mnist.x_train, mnist.x_test])[:, 0]
    labels = np.concatenate([mnist.y_train, mnist.y_test])
    path = tmp_path_factory.mktemp("stream") / "stream.npz"
    np.savez(path, x=np.tile(np.round(images * 255).astype(np.uint8), (3, 1, 1)), y=np.tile(labels, 3))
    return f"npz:{path}"


def _stat(pid: str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _live(predicate) -> list[int]:
    """Live (not zombie) processes for which ``predicate(pid, stat fields)`` holds."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = _stat(entry.name)
            if fields[0] != "Z" and predicate(entry.name, fields):
                found.append(int(entry.name))
        except (OSError, IndexError):     # gone meanwhile
            continue
    return found


def _session(sid: int) -> list[int]:
    return _live(lambda pid, fields: int(fields[3]) == sid)


def _workers(tmpdir: Path) -> list[int]:
    """The run's worker processes: the worker and Lava's forks of it, named after the job folder in ``tmpdir``."""
    def is_worker(pid: str, fields: list[str]) -> bool:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"lava_cpu.worker" in cmdline and str(tmpdir).encode() in cmdline
    return _live(is_worker)


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _start_cli(tmp_path: Path, *options: str, runs: int = 1, dataset: str = "mnist5k",
               env: Optional[dict] = None) -> tuple[subprocess.Popen, Path, list[int], set[str]]:
    """Start ``simulate --backend lava-cpu`` on ``dataset`` with ``options`` and wait until each of its ``runs``
    Lava runs (one per shard) has finished a sample.

    Returns the CLI, its TMPDIR, the workers' sessions and the shared memory they map.
    """
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cli = subprocess.Popen([sys.executable, "-m", "lava_deploy", "simulate", MODEL, "--backend", "lava-cpu",
                            "--dataset", dataset, "-q", *options], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir), **(env or {})})

    def each_finished_a_sample() -> bool:
        finished = []
        for progress in tmpdir.glob("lava-deploy-*/progress.npy"):
            try:
                finished.append(int(np.load(progress)[0]) > 0)
            except (OSError, ValueError):    # being written
                return False
        return len(finished) == runs and all(finished)
    assert _wait(each_finished_a_sample, 180), "Lava never finished a sample in every run"
    sessions = sorted({int(_stat(str(pid))[3]) for pid in _workers(tmpdir)})
    assert len(sessions) == runs, f"expected {runs} Lava runs, found sessions {sessions}"
    segments = shared_memory_mapped_by([pid for sid in sessions for pid in _session(sid)])
    assert segments, "the run maps no shared memory: nothing to check"
    assert cli.poll() is None, "the run ended before the signal"
    return cli, tmpdir, sessions, segments


def _assert_nothing_left(tmpdir: Path, sessions: list[int], segments: set[str]) -> None:
    def alive() -> list[int]:
        return [pid for sid in sessions for pid in _session(sid)]
    assert _wait(lambda: not alive(), 5), f"processes of the run still alive: {alive()}"
    assert _wait(lambda: not list(tmpdir.iterdir()), 5), f"left in TMPDIR: {sorted(os.listdir(tmpdir))}"
    assert not segments & set(os.listdir("/dev/shm")), "the run's shared memory is left in /dev/shm"


# SIGTERM and SIGHUP take Ctrl-C's way out (test_cli follows them there): one Lava run each would repeat it.
def test_ctrl_c_twice_during_a_lava_run_leaves_nothing(tmp_path):
    """The second Ctrl-C lands while the first one's cleanup runs: it is ignored, the cleanup finishes."""
    cli, tmpdir, sessions, segments = _start_cli(tmp_path)
    cli.send_signal(signal.SIGINT)
    time.sleep(0.1)     # the first is being handled: signals sent together would merge into one
    assert cli.poll() is None
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == 130
    assert err.strip().splitlines() == ["lava-deploy: interrupted"]
    _assert_nothing_left(tmpdir, sessions, segments)


def test_sigkill_during_a_lava_run_leaves_nothing(tmp_path):
    """The CLI killed outright: its worker, watching the CLI, ends the run and removes the job itself."""
    cli, tmpdir, sessions, segments = _start_cli(tmp_path)
    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=30)
    assert cli.returncode == -9
    _assert_nothing_left(tmpdir, sessions, segments)


def test_ctrl_c_during_a_sharded_run_stops_every_shard(tmp_path, shard_stream):
    """Two shards, each a Lava run of its own, started by threads of the CLI: Ctrl-C stops both. (A killed CLI's
    shard workers end themselves as a single run's worker does: each watches the CLI's pid, tested above.)"""
    cli, tmpdir, sessions, segments = _start_cli(tmp_path, "--workers", "2", runs=2, dataset=shard_stream)
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == 130
    assert err.strip().splitlines() == ["lava-deploy: interrupted"]
    _assert_nothing_left(tmpdir, sessions, segments)


def test_ctrl_c_during_a_ray_run_stops_every_shard_and_ray(tmp_path, shard_stream):
    """--ray on a local Ray instance, two shards as Ray tasks: Ctrl-C cancels both (each cleans up its Lava
    run) and shuts the instance down."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'lava-deploy[ray]')")
    # Ray's own session folder, kept by Ray after it stops, goes elsewhere, under a path short enough for its
    # sockets; TMPDIR must then be left empty.
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        cli, tmpdir, sessions, segments = _start_cli(tmp_path, "--ray", "--workers", "2", runs=2,
                                                     dataset=shard_stream, env={"RAY_TMPDIR": ray_tmp})
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=90)
        assert cli.returncode == 130
        assert err.strip().splitlines() == ["lava-deploy: interrupted"]
        _assert_nothing_left(tmpdir, sessions, segments)

        def ray_processes() -> list[int]:
            return _live(lambda pid, fields: ray_tmp.encode() in Path(f"/proc/{pid}/cmdline").read_bytes())
        assert _wait(lambda: not ray_processes(), 10), f"Ray processes still alive: {ray_processes()}"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def own_tmpdir(tmp_path, monkeypatch) -> Path:
    """TMPDIR for this process (the runner's job folder) and the worker it starts (Lava's pymp-* folder)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    return tmpdir


def test_process_model_error_leaves_no_shared_memory(own_tmpdir):
    """A corrupted job file makes the sink fail at the last sample: Lava's stop() would then block forever."""
    rng = np.random.default_rng(3)
    network = random_network(rng, time_steps=2, input_bits=2, conv=False)
    codes = random_codes(rng, network, 600)
    seen: set[str] = set()
    running = True

    def watch() -> None:
        corrupted = False
        while running:
            segments = shared_memory_mapped_by(_workers(own_tmpdir))
            seen.update(segments)
            if segments and not corrupted:     # Lava runs: a label of -1 leaves the sink one label short
                for labels in own_tmpdir.glob("lava-deploy-*/input_labels.npy"):
                    np.load(labels, mmap_mode="r+")[-1] = -1
                    corrupted = True
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(DeployError, match="output at step .*IndexError"):
            run_lava(network, codes, np.zeros(len(codes), np.int64), record_spikes=False, timeout_s=90)
    finally:
        running = False
        watcher.join()
    assert seen, "the run was never seen mapping shared memory: nothing to check"
    assert not seen & set(os.listdir("/dev/shm")), "the run's shared memory is left in /dev/shm"
    assert _wait(lambda: not _workers(own_tmpdir), 5)
    assert list(own_tmpdir.iterdir()) == []


_RELEASE = """
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from lava_deploy.simulate.lava_cpu.worker import _release_shared_memory
channel, other = shared_memory.SharedMemory(create=True, size=4096), shared_memory.SharedMemory(create=True, size=64)
other.close()       # neither mapped nor open here any more: not this process's to unlink
_release_shared_memory(None)        # no Lava runtime: what the process holds is found without one
print(Path("/dev/shm", channel.name).exists(), Path("/dev/shm", other.name).exists())
other.unlink()
resource_tracker.unregister(channel._name, "shared_memory")
"""


def test_releasing_shared_memory_unlinks_the_segments_the_worker_maps():
    """Without Lava's shared-memory manager, whose server a busy machine can leave killed halfway."""
    child = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["False", "True"]


def test_next_run_removes_the_job_folder_of_a_killed_run(own_tmpdir):
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(gone.pid, 0)
    stale = own_tmpdir / f"lava-deploy-{gone.pid}-k1ll3d_x"
    (stale / "errors").mkdir(parents=True)
    (stale / "input_codes.npy").write_bytes(b"left by a run killed with SIGKILL")
    kept = [own_tmpdir / f"lava-deploy-{os.getpid()}-l1v3ab_c",   # a run of a live process
            own_tmpdir / "lava-deploy-notapid",                     # not a job folder's name
            own_tmpdir / f"lava-deploy-{gone.pid}-f1l3abcd"]         # a file, not a folder
    kept[0].mkdir()
    kept[1].mkdir()
    kept[2].write_text("")
    if os.getuid() == 0:        # root can give a folder to another user: it is not ours to remove
        kept.append(own_tmpdir / f"lava-deploy-{gone.pid}-0th3rusr")
        kept[-1].mkdir()
        os.chown(kept[-1], 4242, -1)
    rng = np.random.default_rng(0)
    network = random_network(rng, time_steps=1, input_bits=1, conv=False)
    run_lava(network, np.zeros((1, *network.input_shape), np.int64), np.zeros(1, np.int64), record_spikes=False)
    assert sorted(own_tmpdir.iterdir()) == sorted(kept)
