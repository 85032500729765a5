"""Graded spikes: each code sent whole as one graded spike, one step per layer, still bit-exact.

The graded neuron emits exactly the codes of the bit-serial one (property
tests), a graded network computes the same logits and codes as its
bit-serial twin on the reference and on Lava, payload for payload, and its
file, timing, check and energy figures are the encoding's.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factories import random_codes, random_network, random_residual_network
from lava_deploy.check import estimate_energy, fit_network, measure_activity
from lava_deploy.check.limits import CoreLimits
from lava_deploy.cli import main
from lava_deploy.errors import DeployError
from lava_deploy.network import (BIT_SERIAL, GRADED, INPUT, AccumulateEmit, DenseSynapse, Edge, GradedEmit, Layer,
                                 Readout, SpikingNetwork, encode_input_digits, validate_network)
from lava_deploy.network.netx import read_netx, write_netx
from lava_deploy.network.neurons import popcount
from lava_deploy.network.reference import run_reference
from test_netx import _assert_same_layers

SHIPPED = Path(__file__).resolve().parents[1] / "netx_models"


# ---- the neuron ------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(time_steps=st.integers(1, 8), extra_scale=st.integers(0, 6), data=st.data())
def test_graded_payload_is_the_code_and_the_value_of_the_bit_serial_spikes(time_steps, extra_scale, data):
    """For any potential in the 24-bit state: payload = clip(floor(u / S), 0, L) = the bit-serial spikes read as a
    binary number, one graded spike exactly where the code is not zero, the bit-serial count its 1-bits."""
    T, scale_exp = time_steps, time_steps - 1 + extra_scale
    levels = data.draw(st.integers(1, (1 << T) - 1))
    potentials = data.draw(st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=40))
    u = torch.tensor(potentials, dtype=torch.float64)
    graded, serial = GradedEmit(scale_exp, levels), AccumulateEmit(scale_exp, levels)
    payload = graded.spikes(u, T)
    assert payload.shape == (1, len(potentials)) and payload.dtype == torch.uint8
    code = np.clip(np.floor_divide(np.array(potentials, np.int64), 1 << scale_exp), 0, levels)
    np.testing.assert_array_equal(payload[0].numpy(), code)
    bits = serial.spikes(u, T).numpy().astype(np.int64)
    np.testing.assert_array_equal(sum(bits[j] << (T - 1 - j) for j in range(T)), code)
    np.testing.assert_array_equal(graded.messages(code), code != 0)
    np.testing.assert_array_equal(serial.messages(code), bits.sum(axis=0))
    assert graded.message_bits(T) == T and serial.message_bits(T) == 1
    assert graded.netx_keys(T) == {**serial.netx_keys(T), "gradedSpike": 1}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(1, 8), input_bits=st.integers(1, 8),
       conv=st.booleans(), clamp=st.booleans(), residual=st.booleans())
def test_graded_network_computes_the_bit_serial_codes_and_logits(seed, time_steps, input_bits, conv, clamp,
                                                                residual):
    """Spike level, graded: the payloads are the code-level network's codes, the logits its logits; the pace is
    one step per sample and per layer."""
    rng = np.random.default_rng(seed)
    if residual:
        serial = random_residual_network(rng, time_steps=time_steps, input_bits=input_bits)
    else:
        levels = int(rng.integers(1, 1 << time_steps)) if clamp else None
        serial = random_network(rng, time_steps=time_steps, input_bits=input_bits, conv=conv, levels=levels)
    graded = serial.with_encoding(GRADED)
    try:
        validate_network(serial)
    except DeployError:     # the factory's potentials can outgrow 24 bits at T = 8: graded refuses it as well
        with pytest.raises(DeployError, match="overflows Loihi's 24-bit state"):
            validate_network(graded)
        return
    validate_network(graded)
    codes = random_codes(rng, serial, 6)
    by_code = run_reference(serial, codes)
    by_payload = run_reference(graded, codes, spikes=True)
    np.testing.assert_array_equal(by_payload.logits, by_code.logits)
    for k, payload, graded_codes in zip(by_code.codes, by_payload.spikes, by_payload.codes):
        assert payload.shape == (len(codes), 1, *k.shape[1:]) and payload.dtype == np.uint8
        np.testing.assert_array_equal(payload[:, 0], k)
        np.testing.assert_array_equal(graded_codes, k)
    depth = [graded.depth(i) for i in range(len(graded.layers))]
    assert graded.steps_per_sample == 1 and graded.input_digit_bits == input_bits
    assert [graded.accumulate_start(i) for i in range(len(depth))] == depth
    assert graded.latency_steps == depth[-1] + 1
    assert serial.latency_steps == depth[-1] * (time_steps + 1)         # the bit-serial pace, unchanged
    assert [layer.accumulate_shift for layer in graded.layers] == \
        [input_bits] + [time_steps] * (len(graded.layers) - 1)
    for i, layer in enumerate(graded.layers):
        for edge in layer.inputs[1:]:
            source_depth = graded.depth(edge.source)
            assert graded.edge_delay(i, edge) == depth[i] - source_depth - 1
    back = graded.with_encoding(BIT_SERIAL)
    assert back.encoding == BIT_SERIAL
    _assert_same_layers(serial, back)


def test_one_graded_input_digit_is_the_whole_code():
    codes = np.arange(1 << 12).reshape(-1, 1)
    np.testing.assert_array_equal(encode_input_digits(codes, 12, 1), codes[None])


def test_validation_refuses_mixed_encodings_and_unknown_ones():
    serial = random_network(np.random.default_rng(0))
    mixed = serial.with_encoding(GRADED)
    mixed.layers[1].neuron = AccumulateEmit(mixed.layers[1].neuron.scale_exp, mixed.layers[1].levels)
    with pytest.raises(DeployError, match="layer 1: a accumulate-emit neuron in a graded network"):
        validate_network(mixed)
    shifted = serial.with_encoding(GRADED)
    shifted.layers[1].accumulate_shift = 1
    with pytest.raises(DeployError, match="layer 1: accumulate shift 1 is not the 3 bit"):
        validate_network(shifted)
    for bad in (lambda: serial.with_encoding("unary"), lambda: validate_network(
            SpikingNetwork(serial.layers, 3, 4, serial.input_shape, serial.class_names, encoding="unary"))):
        with pytest.raises(DeployError, match="unknown spike encoding 'unary'"):
            bad()


# ---- the file --------------------------------------------------------------------------------------

def test_graded_file_round_trip_and_bit_serial_files_stay_format_1(tmp_path):
    serial = random_residual_network(np.random.default_rng(1))
    write_netx(serial, tmp_path / "serial.net")
    write_netx(serial.with_encoding(GRADED), tmp_path / "graded.net")
    with h5py.File(tmp_path / "serial.net") as f:
        assert f["lava_deploy"].attrs["formatVersion"] == 1 and "encoding" not in f["lava_deploy"].attrs
        assert f["simulation/tSample"][()] == 3
        assert not any("gradedSpike" in f[f"layer/{k}/neuron"] for k in f["layer"] if "neuron" in f[f"layer/{k}"])
    with h5py.File(tmp_path / "graded.net") as f:
        assert f["lava_deploy"].attrs["formatVersion"] == 2 and f["lava_deploy"].attrs["encoding"] == GRADED
        assert f["simulation/tSample"][()] == 1
        neurons = [f[f"layer/{k}/neuron"] for k in sorted(f["layer"], key=int) if "neuron" in f[f"layer/{k}"]]
        assert [int(n["gradedSpike"][()]) if "gradedSpike" in n else 0 for n in neurons] == [1] * 5 + [0]
        assert [int(n["phase"][()]) for n in neurons] == [1, 2, 3, 4, 5, 6]
        assert int(f["layer/3/skip/delay"][()]) == 1
    back = read_netx(tmp_path / "graded.net")
    assert back.encoding == GRADED and back.steps_per_sample == 1
    _assert_same_layers(serial.with_encoding(GRADED), back)
    assert read_netx(tmp_path / "serial.net").encoding == BIT_SERIAL


def _edited(path: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "bad.net"
    shutil.copyfile(path, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    return bad


def _set(key: str, value):
    def edit(f):
        del f[key]
        f.create_dataset(key, data=value)
    return edit


def _attr(name: str, value):
    def edit(f):
        f["lava_deploy"].attrs[name] = value
    return edit


MALFORMED = {
    "graded spike off": (_set("layer/2/neuron/gradedSpike", 0), "layer/2/neuron: 'gradedSpike' is 0, not 1"),
    "graded spike in readout": (lambda f: f["layer/4/neuron"].create_dataset("gradedSpike", data=1),
                                "layer/4/neuron: 'gradedSpike' is 1, not 0"),
    "bit-serial pace": (_set("simulation/tSample", 3), "simulation: 'tSample' is not 1"),
    "unknown encoding": (_attr("encoding", "unary"), "unknown encoding 'unary'"),
    "no encoding": (lambda f: f["lava_deploy"].attrs.__delitem__("encoding"), "missing attribute 'encoding'"),
    "format 1": (_attr("formatVersion", 1), "layer/0: 'digitBits' is not 2"),
    "format 3": (_attr("formatVersion", 3), "format version 3 is not one this lava-deploy reads (1..2)"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_graded_file_is_one_line(tmp_path, capsys, case):
    """A graded file whose encoding, pace or neurons disagree is refused by name (a format-1 reader's view too)."""
    network = random_network(np.random.default_rng(2), time_steps=3, input_bits=5, conv=False, hidden=(6, 5, 4))
    path = tmp_path / "graded.net"
    write_netx(network.with_encoding(GRADED), path)
    edit, expected = MALFORMED[case]
    assert main(["info", str(_edited(path, tmp_path, edit))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


# ---- check and energy ------------------------------------------------------------------------------

def _hand_network() -> SpikingNetwork:
    """Zero weights and biases of k * S make the hidden codes 3, 0, 2 whatever the input (T = 2, 2-bit input)."""
    hidden = Layer([Edge(INPUT, DenseSynapse(np.zeros((3, 2), np.int64), 0, (2, 1, 1)))], AccumulateEmit(3, 3),
                   np.array([3, 0, 2]) << 3, 1)
    readout = Layer([Edge(0, DenseSynapse(np.full((1, 3), 2, np.int64), 0, (3, 1, 1)))], Readout(3),
                    np.zeros(1, np.int64))
    return SpikingNetwork([hidden, readout], 2, 2, (2, 1, 1), ["0"])


def test_graded_energy_counts_by_hand():
    """Input codes 3 and 1: two graded spikes (bit-serial: three digits); hidden codes 3, 0, 2: two graded spikes
    (bit-serial: three 1-bits); each one synaptic operation per synapse reached; one neuron update per sample."""
    serial = _hand_network()
    codes = np.array([3, 1]).reshape(1, 2, 1, 1)
    before = measure_activity(serial, codes)
    assert (before.input_spikes, before.spikes_per_layer, before.synaptic_ops_per_layer) == (3, [3.0], [9, 3])
    graded = measure_activity(serial.with_encoding(GRADED), codes)
    assert graded.input_spikes == 2 and graded.spikes_per_layer == [2.0]
    assert graded.synaptic_ops_per_layer == [2 * 3, 2 * 1]
    assert graded.neuron_updates == 3 + 1 and graded.steps_per_sample == 1 and graded.latency_steps == 3
    assert graded.payload_bits == [2, 2] and before.payload_bits == [1, 1]
    assert estimate_energy(graded).total_nj == pytest.approx((8 * 23.6 + 4 * 52.0 + 4 * 1.7) / 1e3)


def test_payload_bits_are_linted_against_the_message_limit():
    network = random_network(np.random.default_rng(3), time_steps=4, input_bits=12).with_encoding(GRADED)
    ok = [f.message for f in fit_network(network).findings if f.severity == "ok"]
    assert "input arrives as 12-bit graded spikes" in ok
    assert sum("codes leave as 4-bit graded spikes" in m for m in ok) == 2
    narrow = fit_network(network, CoreLimits(message_bits=3))
    errors = [(f.layer, f.message) for f in narrow.findings if f.severity == "error"]
    assert errors == [(0, "input digits of 12 bits exceed 3-bit graded spikes"),
                      (0, "codes of 4 bits exceed 3-bit graded spikes"), (1, "codes of 4 bits exceed 3-bit graded spikes")]
    assert not narrow.deployable


# ---- Lava ------------------------------------------------------------------------------------------

def _lava_equals_reference(network: SpikingNetwork, codes: np.ndarray, **kwargs):
    from lava_deploy.simulate.lava_cpu.runner import run_lava

    labels = np.arange(len(codes)) % network.layers[-1].num_neurons
    ref = run_reference(network, codes, spikes=True)
    lava = run_lava(network, codes, labels, **kwargs)
    np.testing.assert_array_equal(lava.logits, ref.logits)
    np.testing.assert_array_equal(lava.labels, labels)
    for layer, (ours, theirs) in enumerate(zip(lava.spikes, ref.spikes)):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.uint8, layer
        np.testing.assert_array_equal(ours, theirs, err_msg=f"layer {layer}")
    return ref, lava


@pytest.mark.lava
@pytest.mark.parametrize("seed, time_steps, input_bits, conv, clamp", [
    (0, 1, 1, False, False),     # T = 1: one-bit payloads
    (1, 2, 5, True, True),       # 5-bit input payloads, clamped levels
    (2, 3, 8, True, False),
    (3, 4, 11, False, True),     # 11-bit input payloads
])
def test_lava_equals_reference_payload_for_payload(seed, time_steps, input_bits, conv, clamp):
    rng = np.random.default_rng(seed)
    levels = max(1, (1 << time_steps) - 2) if clamp else None
    network = random_network(rng, time_steps=time_steps, input_bits=input_bits, conv=conv,
                             levels=levels).with_encoding(GRADED)
    codes = random_codes(rng, network, 12)
    ref, lava = _lava_equals_reference(network, codes)
    assert lava.steps_per_sample == 1 and lava.steps_run == network.accumulate_start(len(network.layers) - 1) + 12
    assert 0 < lava.cpu_seconds        # the simulation's CPU time in Lava's processes (the benchmark's measure)
    payloads = np.concatenate([s.reshape(-1) for s in ref.spikes])
    assert 0 < (payloads != 0).sum() < payloads.size      # silent and firing neurons both occur
    if time_steps > 1:
        assert (payloads > 1).any()                         # payloads above one bit really travel


@pytest.mark.lava
def test_lava_residual_graded_network_and_reset_schedule():
    """Shortcuts held one step per skipped layer meet the main branch's payloads; the reset loop agrees."""
    rng = np.random.default_rng(4)
    network = random_residual_network(rng, time_steps=3).with_encoding(GRADED)
    assert [network.edge_delay(i, e) for i, layer in enumerate(network.layers) for e in layer.inputs[1:]] == [1, 1]
    codes = random_codes(rng, network, 8)
    _lava_equals_reference(network, codes)
    _, reset = _lava_equals_reference(network, codes[:3], schedule="reset")
    assert reset.steps_run == 3 * (network.accumulate_start(len(network.layers) - 1) + 1)


@pytest.mark.lava
def test_export_graded_shipped_checkpoint_then_compare(tmp_path, capsys):
    """``export --encoding graded`` of a shipped checkpoint: the shipped integers, and Lava equals the reference."""
    path = tmp_path / "graded.net"
    assert main(["export", str(SHIPPED / "digits-cnn-t3" / "model.pt"), "-o", str(path), "--encoding", "graded"]) == 0
    capsys.readouterr()
    shipped, graded = read_netx(SHIPPED / "digits-cnn-t3" / "model.net"), read_netx(path)
    _assert_same_layers(shipped.with_encoding(GRADED), graded)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["encoding"], info["steps_per_sample"], info["latency_steps"]) == ("graded", 1, 5)
    assert main(["compare", str(path), "--samples", "30", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["encoding"] == "graded" and summary["samples"] == 30
    assert summary["spike_agreement"] == 1.0 and summary["prediction_agreement"] == 1.0
    assert summary["logit_agreement"] == 1.0
    assert summary["steps_per_sample"] == {"reference": 1, "lava_cpu": 1}
    assert summary["latency_steps"] == {"reference": 5, "lava_cpu": 5}


def test_export_refuses_an_unknown_encoding(tmp_path, capsys):
    assert main(["export", str(SHIPPED / "digits-mlp-t3" / "model.pt"), "-o", str(tmp_path / "x.net"),
                 "--encoding", "unary"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown encoding 'unary'" in err
    assert list(tmp_path.iterdir()) == []


def test_loihi2_refuses_graded_networks_before_any_work():
    from lava_deploy.simulate.lava_cpu.runner import run_lava

    network = random_network(np.random.default_rng(5)).with_encoding(GRADED)
    with pytest.raises(DeployError, match="graded networks are not mapped onto Loihi 2 yet"):
        run_lava(network, random_codes(np.random.default_rng(5), network, 2), np.zeros(2, np.int64), loihi2=True)
