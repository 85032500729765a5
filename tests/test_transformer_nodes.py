"""The Transformer's node kinds in the integer reference: spike level equals code level (hypothesis), each kind's
spikes are the signed bits of its integer codes, saturation included; format 2 of the netx file round-trips them."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factories import random_codes, random_network, random_transformer_network
from lava_deploy.errors import DeployError
from lava_deploy.network import (GRADED, INPUT, ConvSynapse, Edge, LayerNorm, Lookup, ProductSynapse, SignedEmit,
                                 Softmax, validate_network)
from lava_deploy.network.functions import exp_table, layernorm_codes, lookup_codes, signed_bits, softmax_codes
from lava_deploy.network.netx import format_version, read_netx, write_netx
from lava_deploy.network.reference import run_reference


def _bits(codes: np.ndarray, time_steps: int) -> np.ndarray:
    """(N, T, ...) signed bits of (N, ...) codes."""
    return np.moveaxis(signed_bits(codes, time_steps), 0, 1)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(1, 6), input_bits=st.integers(1, 8),
       heads=st.sampled_from([1, 2]), bias_range=st.integers(0, 3))
def test_spike_level_equals_code_level_in_a_random_attention_block(seed, time_steps, input_bits, heads, bias_range):
    rng = np.random.default_rng(seed)
    net = random_transformer_network(rng, time_steps, input_bits, channels=2 * heads, heads=heads,
                                     bias_range=bias_range)
    validate_network(net)
    codes = random_codes(rng, net, 6)
    by_code, by_spike = run_reference(net, codes), run_reference(net, codes, spikes=True)
    np.testing.assert_array_equal(by_spike.logits, by_code.logits)
    for layer, k, spikes in zip(net.layers, by_code.codes, by_spike.spikes):
        low, high = layer.neuron.code_range
        assert low <= k.min() and k.max() <= high
        np.testing.assert_array_equal(spikes, _bits(k, time_steps) if layer.neuron.signed else
                                      _bits(k, time_steps).astype(bool))


def test_random_attention_blocks_reach_both_ends_of_every_code_range():
    """The networks above saturate and go negative: the property is tested where it is hardest."""
    rng = np.random.default_rng(1)
    seen = {}
    for _ in range(6):
        net = random_transformer_network(rng, 3)
        for layer, k in zip(net.layers, run_reference(net, random_codes(rng, net, 40)).codes):
            low, high = seen.get(layer.neuron.kind, (0, 0))
            seen[layer.neuron.kind] = (min(low, int(k.min())), max(high, int(k.max())))
    assert seen["signed-emit"] == (-7, 7) and seen["lookup"] == (-7, 7)
    assert seen["softmax"][1] == 7 and seen["layernorm"][0] < 0 < seen["layernorm"][1]


@pytest.mark.parametrize("time_steps", range(1, 9))
def test_signed_neuron_spikes_are_the_bits_of_its_clipped_floor_for_every_potential(time_steps):
    T = time_steps
    for scale_exp in sorted({max(T - 1, 0), T + 2}):
        for levels in sorted({1, (1 << T) - 1}):
            neuron = SignedEmit(scale_exp, levels)
            S = 1 << scale_exp
            u = torch.arange(-(levels + 3) * S - 5, (levels + 3) * S + 6, dtype=torch.float64).view(-1, 1, 1, 1)
            codes = neuron.codes(u)
            np.testing.assert_array_equal(codes.numpy().ravel(),
                                          np.clip(np.floor_divide(u.numpy().ravel(), S), -levels, levels))
            np.testing.assert_array_equal(neuron.spikes(u, T).numpy(), signed_bits(codes.numpy(), T))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(2, 6), kind=st.sampled_from(["softmax", "layernorm",
                                                                                           "lookup"]))
def test_function_units_compute_the_shared_functions_of_their_clipped_input_codes(seed, time_steps, kind):
    """Potentials far beyond the input range saturate the input code first; the spikes are the output's bits."""
    rng = np.random.default_rng(seed)
    T, levels = time_steps, (1 << time_steps) - 1
    scale_exp = int(rng.integers(T - 1, T + 3))
    u = rng.integers(-3 * levels << scale_exp, 3 * levels << scale_exp, size=(3, 6, 2, 2))
    k = np.clip(u >> scale_exp, -levels, levels)
    if kind == "softmax":
        table = exp_table(float(rng.uniform(0.05, 1.0)), levels)
        unit = Softmax(scale_exp, levels, levels, table=table, gain=2 * (levels + 1), groups=2)
        want = softmax_codes(k, table, 2 * (levels + 1), levels, 2)
    elif kind == "layernorm":
        unit = LayerNorm(scale_exp, levels, levels, gain=(levels + 1) // 4)
        want = layernorm_codes(k, (levels + 1) // 4, levels)
    else:
        table = rng.integers(-levels, levels + 1, size=2 * levels + 1)
        unit = Lookup(scale_exp, levels, levels, table=table)
        want = lookup_codes(k, table, levels)
    unit.validate(T, "unit")
    potential = torch.from_numpy(u).double()
    np.testing.assert_array_equal(unit.codes(potential).numpy(), want)
    np.testing.assert_array_equal(unit.spikes(potential, T).numpy(), signed_bits(want, T))
    low, high = unit.code_range
    assert low <= want.min() and want.max() <= high


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(1, 6), mode=st.sampled_from(["scores", "mix"]),
       saturate=st.booleans())
def test_product_spike_identity_equals_the_product_of_codes(seed, time_steps, mode, saturate):
    rng = np.random.default_rng(seed)
    T, levels, heads, dh, tokens = time_steps, (1 << time_steps) - 1, 2, 3, 4
    b_shape = (heads * dh, 2, 2)
    a_shape = b_shape if mode == "scores" else (heads * tokens, 2, 2)
    synapse = ProductSynapse(np.array([2 * int(rng.integers(-128, 128))]), int(rng.integers(0, 3)), a_shape,
                             b_shape, mode, heads)
    assert synapse.shape_problem() is None
    draw = (lambda shape: rng.choice([-levels, levels], size=shape)) if saturate else \
        (lambda shape: rng.integers(-levels, levels + 1, size=shape))
    a, b = draw((5, *a_shape)), draw((5, *b_shape))
    if mode == "mix":
        a = np.abs(a)       # attention codes are not negative
    planes = tuple(torch.from_numpy(signed_bits(x, T)).double() for x in (a, b))
    by_code = synapse.current((torch.from_numpy(a).double(), torch.from_numpy(b).double()), single=False)
    by_spike = synapse.accumulate(planes, 1, single=False)
    torch.testing.assert_close(by_spike, by_code, rtol=0, atol=0)
    low, high = synapse.current_bounds([(-levels if mode == "scores" else 0, levels), (-levels, levels)])
    assert (by_code.numpy() >= low.reshape(-1, 1, 1)).all() and (by_code.numpy() <= high.reshape(-1, 1, 1)).all()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(1, 5))
def test_format_2_round_trips_an_attention_block(tmp_path_factory, seed, time_steps):
    rng = np.random.default_rng(seed)
    net = random_transformer_network(rng, time_steps)
    path = tmp_path_factory.mktemp("netx") / "block.net"
    write_netx(net, path)
    back = read_netx(path)
    assert format_version(net) == 2 and format_version(back) == 2
    with h5py.File(path, "r") as f:
        assert f["lava_deploy"].attrs["formatVersion"] == 2 and f["lava_deploy"].attrs["encoding"] == "bit-serial"
    assert back.encoding == "bit-serial"
    assert [type(layer.neuron) for layer in back.layers] == [type(layer.neuron) for layer in net.layers]
    assert [[edge.sources for edge in layer.inputs] for layer in back.layers] == \
        [[edge.sources for edge in layer.inputs] for layer in net.layers]
    codes = random_codes(rng, net, 5)
    ours, theirs = run_reference(net, codes, spikes=True), run_reference(back, codes, spikes=True)
    np.testing.assert_array_equal(ours.logits, theirs.logits)
    for a, b in zip(ours.spikes, theirs.spikes):
        np.testing.assert_array_equal(a, b)


def test_bit_serial_chains_stay_format_1_and_graded_ones_name_their_edges_as_graphs_do(tmp_path):
    net = random_network(np.random.default_rng(0))
    write_netx(net, tmp_path / "chain.net")
    write_netx(random_network(np.random.default_rng(0), conv=False).with_encoding(GRADED), tmp_path / "graded.net")
    with h5py.File(tmp_path / "chain.net", "r") as f:
        assert f["lava_deploy"].attrs["formatVersion"] == 1 and "source" not in f["layer/1"]
        assert "encoding" not in f["lava_deploy"].attrs
    with h5py.File(tmp_path / "graded.net", "r") as f:
        assert f["lava_deploy"].attrs["formatVersion"] == 2 and f["lava_deploy"].attrs["encoding"] == GRADED
        assert [int(f[f"layer/{k}/source"][()]) for k in (1, 2)] == [0, 1]
        assert [int(f[f"layer/{k}/sourceDelay"][()]) for k in (1, 2)] == [0, 0]
    assert read_netx(tmp_path / "graded.net").encoding == GRADED


def test_a_transformer_is_not_sent_graded():
    net = random_transformer_network(np.random.default_rng(2), 3)
    with pytest.raises(DeployError, match="bit-serially only, not graded"):
        net.with_encoding(GRADED)
    net.encoding = GRADED
    with pytest.raises(DeployError, match="in a graded network"):
        validate_network(net)


def _edit(path, key, value):
    with h5py.File(path, "r+") as f:
        del f[key]
        f[key] = value


@pytest.mark.parametrize("key, value, message", [
    ("layer/6/operandDelay", 7, "misaligned: 'operandDelay'"),
    ("layer/6/operand", 11, "'operand' layer/11 is not the input or an earlier layer"),
    ("layer/6/heads", 3, "heads do not divide"),
    ("layer/6/neuron/table", np.arange(14), "'table' has shape"),
    ("layer/6/neuron/table", np.arange(15), "softmax table must hold"),
    ("layer/6/neuron/gain", 0, "'gain' 0 outside"),
    ("layer/9/neuron/table", np.full(15, 99), "lookup table must hold"),
    ("layer/3/neuron/type", np.array([b"SQUASH"], dtype="S10"), "unknown neuron type 'SQUASH'"),
    ("layer/1/bias", np.zeros((4, 2, 2), np.int64), "'bias' has shape"),
    ("layer/8/skip/delay", 0, "misaligned: 'delay'"),
])
def test_format_2_refuses_damaged_keys_in_one_line(tmp_path, key, value, message):
    net = random_transformer_network(np.random.default_rng(3), 3, channels=4, heads=2)
    path = tmp_path / "block.net"
    write_netx(net, path)
    _edit(path, key, value)
    with pytest.raises(DeployError, match=message):
        read_netx(path)


def test_a_product_of_the_input_or_of_mismatched_operands_is_refused():
    net = random_transformer_network(np.random.default_rng(4), 3, channels=4, heads=2)
    scores_layer = next(layer for layer in net.layers if layer.synapse.kind == "product")
    edge = scores_layer.inputs[0]
    scores_layer.inputs[0] = Edge(INPUT, edge.synapse, edge.operand)
    with pytest.raises(DeployError, match="codes of layers, not the input"):
        validate_network(net)
    scores_layer.inputs[0] = Edge(edge.source, edge.synapse, None)
    with pytest.raises(DeployError, match="takes 2 operand"):
        validate_network(net)
    scores_layer.inputs[0] = edge
    scores_layer.inputs.append(Edge(edge.source, ConvSynapse(np.zeros((18, 4, 1, 1), np.int64), 0, (4, 3, 3))))
    with pytest.raises(DeployError, match="takes no further edges"):
        validate_network(net)


def test_check_says_what_loihi2_needs_and_counts_the_off_chip_operations():
    from lava_deploy.check import estimate_energy, fit_network, measure_activity
    from lava_deploy.network.neurons import popcount

    rng = np.random.default_rng(5)
    net = random_transformer_network(rng, 3, channels=4, heads=2)
    fit = fit_network(net)
    off_chip = {row.index for row in fit.layers if row.needs}
    assert off_chip == {i for i, layer in enumerate(net.layers)
                        if layer.synapse.kind == "product" or layer.neuron.kind in ("softmax", "layernorm", "lookup")}
    assert all(fit.layers[i].cores == 0 for i in off_chip) and not fit.deployable
    assert any("embedded core or the host" in problem for problem in fit.problems)
    assert any("signed spikes" in finding.message for finding in fit.findings)
    codes = random_codes(rng, net, 20)
    activity = measure_activity(net, codes)
    assert [i for i, ops in enumerate(activity.unit_operations_per_layer) if ops] == sorted(off_chip)
    scores = next(i for i, layer in enumerate(net.layers) if layer.synapse.kind == "product")
    edge, hidden = net.layers[scores].inputs[0], run_reference(net, codes).codes
    spikes = [popcount(hidden[source]).sum() / len(codes) for source in edge.sources]
    tokens = 9
    by_hand = spikes[0] * tokens + spikes[1] * tokens + net.layers[scores].num_neurons \
        + net.layers[scores].neuron.operations(net.layers[scores].output_shape)
    assert activity.unit_operations_per_layer[scores] == pytest.approx(by_hand)
    energy = estimate_energy(activity)
    assert energy.unit_nj == pytest.approx(activity.unit_operations * 3.2 / 1e3) and energy.total_nj > energy.unit_nj
