"""Lava's fixed-point CPU simulator against the integer reference, spike for spike; failure handling."""
from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

from factories import random_codes, random_network, with_neuron_bias
from lava_deploy.errors import DeployError
from lava_deploy.simulate.lava_cpu.runner import run_lava
from lava_deploy.network.reference import run_reference

pytestmark = pytest.mark.lava


def _worker_processes() -> list[str]:
    """Command lines of the live Lava workers started by this process, and of their forked children, which share
    the command line (whose last word is the caller's pid): other runs on the machine are not this test's."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "lava_cpu.worker" in line and line.split()[-1] == str(os.getpid())]


def _assert_matches_reference(network, codes, labels, **kwargs):
    ref = run_reference(network, codes, spikes=True)
    lava = run_lava(network, codes, labels, **kwargs)
    np.testing.assert_array_equal(lava.logits, ref.logits)
    np.testing.assert_array_equal(lava.labels, labels)
    assert len(lava.spikes) == len(ref.spikes)
    for layer, (ours, theirs) in enumerate(zip(lava.spikes, ref.spikes)):
        assert ours.shape == theirs.shape, layer
        np.testing.assert_array_equal(ours, theirs, err_msg=f"layer {layer}")
    if kwargs.get("schedule", "pipelined") == "pipelined":
        assert lava.steps_per_sample == network.time_steps
    return ref, lava


@pytest.mark.parametrize("seed, time_steps, input_bits, conv, clamp", [
    (0, 1, 1, False, False),     # binary input, one step per sample
    (1, 2, 5, True, True),       # graded input digits (3 bits per step), clamped levels
    (2, 3, 8, True, False),
    (3, 4, 4, False, True),
])
def test_lava_equals_reference_spike_for_spike(seed, time_steps, input_bits, conv, clamp):
    rng = np.random.default_rng(seed)
    levels = max(1, (1 << time_steps) - 2) if clamp else None
    network = random_network(rng, time_steps=time_steps, input_bits=input_bits, conv=conv, levels=levels)
    codes = random_codes(rng, network, 12)
    labels = rng.integers(0, 4, len(codes))
    ref, _ = _assert_matches_reference(network, codes, labels)
    # The case is only worth its time if neurons both fire and stay silent.
    total = sum(s.sum() for s in ref.spikes)
    assert 0 < total < sum(s.size for s in ref.spikes)


def test_a_bias_per_neuron_runs_spike_for_spike():
    """A first conv with one bias per neuron (an imported model's input normalization at the zero padding)."""
    rng = np.random.default_rng(7)
    network = with_neuron_bias(rng, random_network(rng, time_steps=3, input_bits=8, conv=True, levels=5))
    codes = random_codes(rng, network, 12)
    ref, _ = _assert_matches_reference(network, codes, rng.integers(0, 4, len(codes)))
    assert 0 < ref.spikes[0].sum() < ref.spikes[0].size


def test_fast_conv_equals_lava_conv_model():
    """Our vectorized Conv model against lava-nc's own (exponent 0, which lava-nc's model supports)."""
    rng = np.random.default_rng(7)
    network = random_network(rng, time_steps=2, input_bits=2, conv=True)
    network.layers[0].synapse.weight_exp = 0
    codes = random_codes(rng, network, 4)
    labels = np.zeros(len(codes), np.int64)
    _, fast = _assert_matches_reference(network, codes, labels, fast_conv=True)
    _, stock = _assert_matches_reference(network, codes, labels, fast_conv=False)
    for a, b in zip(fast.spikes, stock.spikes):
        np.testing.assert_array_equal(a, b)


def test_reset_per_sample_schedule_gives_the_same_spikes():
    """The baseline loop of the throughput benchmark computes the same network, one sample per run."""
    rng = np.random.default_rng(8)
    network = random_network(rng, time_steps=3, input_bits=8, conv=True)
    codes = random_codes(rng, network, 3)
    _, lava = _assert_matches_reference(network, codes, rng.integers(0, 4, 3), schedule="reset")
    assert lava.steps_run == 3 * (network.accumulate_start(len(network.layers) - 1) + network.time_steps)


def test_process_model_error_is_one_line_and_leaves_no_process():
    rng = np.random.default_rng(3)
    network = random_network(rng, time_steps=4, input_bits=8, conv=False)
    first = network.layers[0].synapse
    first.weight_mantissa[:] = 254      # the largest weights on the brightest input overflow 24 bits
    first.weight_exp = 7
    codes = np.full((3, *network.input_shape), network.input_levels)
    start = time.monotonic()
    with pytest.raises(DeployError) as info:
        run_lava(network, codes, np.zeros(3, np.int64), timeout_s=90)
    assert time.monotonic() - start < 90
    message = str(info.value)
    assert "\n" not in message
    assert "layer 0" in message and "24-bit" in message, message
    assert _worker_processes() == []


def test_timeout_stops_the_run_and_leaves_no_process():
    rng = np.random.default_rng(4)
    network = random_network(rng, time_steps=2, input_bits=2, conv=False)
    codes = random_codes(rng, network, 2000)
    with pytest.raises(DeployError, match="did not finish within 3 s"):
        run_lava(network, codes, np.zeros(len(codes), np.int64), timeout_s=3)
    assert _worker_processes() == []


@pytest.mark.parametrize("seed, time_steps", [(0, 2), (1, 3)])
def test_residual_network_equals_reference_spike_for_spike(seed, time_steps):
    """Identity-shaped and strided projection shortcuts, delayed to meet the main branch: still bit-exact."""
    from factories import random_residual_network

    rng = np.random.default_rng(seed)
    network = random_residual_network(rng, time_steps=time_steps)
    assert [network.edge_delay(i, edge) for i, layer in enumerate(network.layers) for edge in layer.inputs[1:]] \
        == [time_steps + 1] * 2
    codes = random_codes(rng, network, 10)
    ref, _ = _assert_matches_reference(network, codes, rng.integers(0, 4, len(codes)))
    total = sum(s.sum() for s in ref.spikes)
    assert 0 < total < sum(s.size for s in ref.spikes)

