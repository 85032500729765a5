"""Sharded runs: contiguous shards merged into exactly a single run's result, retries, failures, Ray."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from factories import random_codes, random_network
from lava_deploy.cli import main
from lava_deploy.compare import compare
from lava_deploy.errors import DeployError
from lava_deploy.simulate import get_backend, simulate
from lava_deploy.simulate.backend import Backend, RunCancelled
from lava_deploy.simulate.shards import ATTEMPTS, RAY_MISSING, ShardFailed, run_sharded, split_samples

MODELS = Path(__file__).resolve().parent.parent / "netx_models"
DIGITS_CNN = MODELS / "digits-cnn-t3" / "model.net"
DIGITS_MLP = MODELS / "digits-mlp-t3" / "model.net"
REFERENCE = get_backend("reference")


@pytest.mark.parametrize("samples, shards", [(10, 3), (7, 7), (3, 5), (1000, 2), (1, 1)])
def test_shards_are_contiguous_cover_every_sample_and_differ_by_one_at_most(samples, shards):
    split = split_samples(samples, shards)
    assert len(split) == min(samples, shards)
    assert split[0].start == 0 and split[-1].stop == samples
    assert all(a.stop == b.start for a, b in zip(split, split[1:]))
    sizes = [s.stop - s.start for s in split]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert [s.index for s in split] == list(range(len(split)))


def _network_and_codes(samples: int = 23):
    rng = np.random.default_rng(5)
    network = random_network(rng, time_steps=3, input_bits=4)
    return network, random_codes(rng, network, samples), rng.integers(0, 4, samples)


def test_merged_shards_equal_one_run_spike_for_spike():
    network, codes, labels = _network_and_codes()
    whole = REFERENCE.run(network, codes, labels, record_spikes=True)
    counted = []
    merged = run_sharded(REFERENCE, network, codes, labels, workers=4, record_spikes=True, progress=counted.append)
    assert np.array_equal(merged.logits, whole.logits)
    assert np.array_equal(merged.labels, labels)
    assert len(merged.spikes) == len(whole.spikes)
    assert all(np.array_equal(a, b) for a, b in zip(merged.spikes, whole.spikes))
    assert merged.spikes_per_layer == whole.spikes_per_layer        # exactly: from the same integer totals
    assert sum(counted) == len(codes)
    assert merged.extra["shards"] == 4


class _Flaky(Backend):
    """The reference, failing the first ``fail_times`` attempts of the shard that holds sample ``bad_sample``."""

    name = "flaky"

    def __init__(self, bad_sample: np.ndarray, fail_times: int) -> None:
        self.bad_sample, self.fail_times, self.attempts = bad_sample, fail_times, 0
        self.lock = threading.Lock()

    def run(self, network, codes, labels, *, record_spikes=False, progress=None, partition=None, cancel=None):
        if any(np.array_equal(c, self.bad_sample) for c in codes):
            with self.lock:
                self.attempts += 1
                failing = self.attempts <= self.fail_times
            if failing:
                progress(len(codes) - 1)        # a failed attempt's progress must not be counted twice
                raise DeployError("Lava simulation failed: the node went away")
        return REFERENCE.run(network, codes, labels, record_spikes=record_spikes, progress=progress)


def test_a_shard_that_fails_once_is_retried_and_the_result_is_whole():
    network, codes, labels = _network_and_codes()
    flaky = _Flaky(codes[12], fail_times=1)
    counted = []
    merged = run_sharded(flaky, network, codes, labels, workers=3, progress=counted.append)
    assert flaky.attempts == 2
    assert np.array_equal(merged.logits, REFERENCE.run(network, codes, labels).logits)
    assert sum(counted) == len(codes)


def test_a_shard_that_fails_twice_is_named_by_its_samples_and_there_is_no_result():
    network, codes, labels = _network_and_codes()
    flaky = _Flaky(codes[12], fail_times=ATTEMPTS)
    with pytest.raises(ShardFailed) as failure:
        run_sharded(flaky, network, codes, labels, workers=3)
    assert flaky.attempts == ATTEMPTS
    assert str(failure.value) == ("samples 8-14 (shard 2 of 3) failed 2 times: Lava simulation failed: the node "
                                  "went away; the other shards were stopped and there is no result")


class _Stuck(Backend):
    """Shard 0 fails at once; every other shard runs until it is cancelled."""

    name = "stuck"

    def __init__(self) -> None:
        self.cancelled = []

    def run(self, network, codes, labels, *, record_spikes=False, progress=None, partition=None, cancel=None):
        if labels[0] == -1:
            raise RuntimeError("shard 0 is broken")
        if not cancel.wait(timeout=30):
            raise AssertionError("never cancelled")
        self.cancelled.append(int(labels[0]))
        raise RunCancelled("cancelled")


def test_a_failed_shard_stops_the_others():
    network, codes, _ = _network_and_codes(9)
    labels = np.arange(9)
    labels[0] = -1
    stuck = _Stuck()
    with pytest.raises(ShardFailed, match=r"samples 0-2 \(shard 1 of 3\) failed 2 times: shard 0 is broken"):
        run_sharded(stuck, network, codes, labels, workers=3)
    assert sorted(stuck.cancelled) == [3, 6]


def test_bad_worker_counts_and_missing_ray_are_one_line_errors(capsys, monkeypatch):
    for bad in ("0", "-2"):
        capsys.readouterr()
        assert main(["simulate", str(DIGITS_MLP), "--workers", bad]) == 2
        assert capsys.readouterr().err.strip() == ("lava-deploy: error: --workers must be a whole number of at "
                                                   f"least 1, got {bad}")
    assert main(["simulate", str(DIGITS_MLP), "--input-spikes", "x.npy", "--workers", "2"]) == 2
    assert "a stock network's run is one stream" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)       # what an install without Ray sees
    with pytest.raises(DeployError, match=r"--ray needs Ray: pip install 'lava-deploy\[ray\]'") as missing:
        simulate(DIGITS_MLP, samples=3, ray_address="local")
    assert str(missing.value) == RAY_MISSING


@pytest.mark.lava
def test_compare_with_two_workers_gives_the_logits_and_spikes_of_one():
    two = compare(DIGITS_CNN, samples=30, workers=2)
    one = simulate(DIGITS_CNN, backend="lava-cpu", samples=30, record_spikes=True)
    assert two.lava.extra["shards"] == 2 and "shards" not in one.extra
    assert np.array_equal(two.lava.logits, one.logits)
    assert np.array_equal(two.lava.labels, one.labels)
    assert len(two.lava.spikes) == len(one.spikes)
    assert all(np.array_equal(a, b) for a, b in zip(two.lava.spikes, one.spikes))
    assert two.logit_agreement == 1.0 and two.spike_agreement == 1.0


@pytest.mark.lava
def test_ray_local_mode_runs_the_shards_and_merges_them_in_order(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'lava-deploy[ray]')")
    whole, sharded = tmp_path / "whole.npz", tmp_path / "ray.npz"
    base = ["simulate", str(DIGITS_MLP), "--backend", "lava-cpu", "--samples", "9", "-q", "--json"]
    assert main([*base, "--predictions", str(whole)]) == 0
    capsys.readouterr()
    assert main([*base, "--predictions", str(sharded), "--ray", "--workers", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["shards"] == 3
    with np.load(whole) as a, np.load(sharded) as b:
        assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["labels"], b["labels"])
