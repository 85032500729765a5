"""lava-deploy check: Loihi 2 fit, fixed-point lint and energy, against small networks computed by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lava_deploy.check import check, estimate_energy, fit_network, measure_activity
from lava_deploy.check.fit import _input_axons
from lava_deploy.cli import main
from lava_deploy.network import (INPUT, AccumulateEmit, ConvSynapse, DenseSynapse, Edge, Layer, Readout,
                                 SpikingNetwork)
from lava_deploy.network.netx import write_netx

SHIPPED = Path(__file__).resolve().parents[1] / "netx_models"


def dense(inputs: int, outputs: int, levels: int, weight: int = 2, weight_exp: int = 0, scale_exp: int = 3,
          bias: np.ndarray | None = None) -> Layer:
    """A dense layer with every mantissa equal to ``weight`` (its source is set by :func:`network`)."""
    synapse = DenseSynapse(np.full((outputs, inputs), weight, np.int64), weight_exp, (inputs, 1, 1))
    neuron = Readout(scale_exp) if levels == 0 else AccumulateEmit(scale_exp, levels)
    return Layer([Edge(INPUT, synapse)], neuron, np.zeros(outputs, np.int64) if bias is None else bias)


def network(*layers: Layer, time_steps: int = 2, input_bits: int = 2) -> SpikingNetwork:
    """A chain: each layer fed by the one before."""
    for i, layer in enumerate(layers):
        layer.inputs[0].source = i - 1 if i else INPUT
        layer.accumulate_shift = -(-input_bits // time_steps) if i == 0 else 1
    classes = layers[-1].num_neurons
    return SpikingNetwork(list(layers), time_steps, input_bits, layers[0].synapse.input_shape,
                          [str(c) for c in range(classes)])


def test_small_dense_network_by_hand():
    fit = fit_network(network(dense(16, 8, levels=3), dense(8, 4, levels=0)))
    first, readout = fit.layers
    assert (first.neurons, first.synapses, first.fan_in, first.fan_out) == (8, 128, 16, 4.0)
    assert (readout.neurons, readout.synapses, readout.fan_in, readout.fan_out) == (4, 32, 8, 0.0)
    assert first.memory_bytes == 8 * (16 * 1 + 12) and readout.memory_bytes == 4 * (8 + 12)
    assert (first.cores, readout.cores, fit.cores, fit.chips) == (1, 1, 2, 1)
    assert first.weight_precision == "8-bit x 2^0"
    assert fit.deployable and fit.problems == []


def test_more_neurons_than_a_core_holds_take_two_cores():
    fit = fit_network(network(dense(4, 10000, levels=0)))
    assert fit.layers[0].neurons_per_core == 8192 and fit.layers[0].cores == 2
    assert fit.layers[0].limited_by == "neurons"


def test_memory_bounds_the_neurons_per_core():
    # 3000 one-byte synapses + 12 bytes of state per neuron: 196608 // 3012 = 65 neurons per core.
    layer = fit_network(network(dense(3000, 100, levels=0))).layers[0]
    assert (layer.neurons_per_core, layer.cores, layer.limited_by) == (65, 2, "memory")


def test_too_many_inputs_for_one_core_is_not_deployable():
    fit = fit_network(network(dense(5000, 10, levels=0)))
    assert not fit.deployable and fit.layers[0].cores == 0
    assert "5000 input axons" in fit.layers[0].problem and "layer 0 (dense)" in fit.problems[0]


def test_conv_tiles_receive_only_the_input_patch_under_them():
    synapse = ConvSynapse(np.full((4, 2, 3, 3), 2, np.int64), 0, (2, 10, 10), padding=(1, 1))
    conv = Layer([Edge(INPUT, synapse)], Readout(3), np.zeros(4, np.int64))
    assert _input_axons(conv, 4) == 2 * 3 * 3          # one position, all 4 channels: a 3x3 patch
    assert _input_axons(conv, 40) == 2 * 5 * 6         # 10 positions: a 3x4 tile under a 5x6 patch
    assert _input_axons(conv, 400) == 2 * 10 * 10      # the whole image
    reach = synapse.fan_out_map()[0]                       # 4 output channels per reached position
    assert (reach[0, 0], reach[0, 5], reach[5, 5]) == (4 * 4, 4 * 6, 4 * 9)


def test_lint_flags_weight_exponent_and_overflow():
    wide = dense(4, 3, levels=3, weight_exp=9)
    overflowing = dense(3, 2, levels=0, bias=np.array([1 << 23, 0]))
    fit = fit_network(network(wide, overflowing))
    errors = [f.message for f in fit.findings if f.severity == "error"]
    assert any("weight exponent 9 outside -8..7" in e for e in errors)
    assert any("24-bit state" in e for e in errors)
    assert not fit.deployable and len(fit.problems) == 2


def test_energy_counts_by_hand():
    # Zero weights and biases of k * S make the hidden codes 3, 0, 2 whatever the input.
    hidden = dense(2, 3, levels=3, weight=0, scale_exp=3, bias=np.array([3, 0, 2]) << 3)
    net = network(hidden, dense(3, 1, levels=0))
    codes = np.array([[[[3, 1]]]]).reshape(1, 2, 1, 1)      # digits 11 and 01: three input spikes
    activity = measure_activity(net, codes)
    assert activity.input_spikes == 3 and activity.spikes_per_layer == [3.0]   # popcount(3)+popcount(2)
    assert activity.synaptic_ops_per_layer == [3 * 3, 3 * 1]
    assert activity.neuron_updates == (3 + 1) * 2 and activity.macs == 3 * 2 + 1 * 3
    energy = estimate_energy(activity)
    assert energy.total_nj == pytest.approx((12 * 23.6 + 8 * 52.0 + 6 * 1.7) / 1e3)
    assert energy.ann_fp32_nj == pytest.approx(9 * 4.6 / 1e3)


def test_check_shipped_model_cli(capsys):
    assert main(["check", str(SHIPPED / "digits-cnn-t3" / "model.net"), "--samples", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deployable"] and report["chips"] == 1 and report["cores"] == sum(l["cores"] for l in report["layers"])
    assert report["energy"]["activity"]["samples"] == 20 and report["energy"]["energy_nj"]["total"] > 0
    assert "davies2018" in report["sources"]


def test_check_exits_1_naming_the_layer(tmp_path, capsys):
    path = tmp_path / "wide.net"
    write_netx(network(dense(5000, 10, levels=0)), path)
    assert main(["check", str(path), "--no-energy"]) == 1
    out = capsys.readouterr().out
    assert "NOT deployable as is" in out and "layer 0 (dense)" in out and "5000 input axons" in out
    assert "energy" not in out


def test_check_result_matches_info(capsys):
    result = check(str(SHIPPED / "digits-mlp-t3" / "model.net"), energy=False)
    assert main(["info", str(SHIPPED / "digits-mlp-t3" / "model.net"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loihi2"]["cores"] == result.fit.cores
