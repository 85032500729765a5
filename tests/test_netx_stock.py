"""Stock lava-dl netx networks run through lava-deploy with lava-dl's own spikes, every layer, step for step.

Each network is built here in netx's conventions (tests/factories.py), one
per way lava-dl networks take their input: conv-first and dense-first on
spikes, an input neuron layer through its bias (LIF, CUBA; held, per step);
lava-deploy runs it through its documented command and lava-dl's own
netx.hdf5.Network with lava-nc's models runs it beside (tests/netx_itself.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from factories import stock_conv, stock_dense, stock_input_layer, stock_neuron, write_stock_netx
from lava_deploy.cli import main
from netx_itself import run_netx_itself

MLP = Path(__file__).resolve().parent.parent / "netx_models" / "digits-mlp-t3" / "model.net"


def _conv_first(path, rng):
    """input (1, 6, 6) -> conv 4x3x3 (padding 1) -> flatten -> dense 5, CUBA."""
    return write_stock_netx(path, [stock_input_layer((1, 6, 6)),
                                   stock_conv(rng, (4, 6, 6), 1, 3, stock_neuron("CUBA"), padding=1),
                                   {"type": "flatten", "shape": [144]},
                                   stock_dense(rng, 144, 5, stock_neuron("CUBA"))])


def _dense_first(path, rng):
    """dense 24 -> 12 -> 5, CUBA, no input layer (as lava-dl's netx MNIST tutorial network)."""
    return write_stock_netx(path, [stock_dense(rng, 24, 12, stock_neuron("CUBA", threshold=120)),
                                   stock_dense(rng, 12, 5, stock_neuron("CUBA", threshold=120))])


def _lif_input_neurons(path, rng):
    """LIF input neurons (3, 9, 9) -> conv 6x3x3 stride 2 -> conv 8x3x3, as lava-dl's tiny.net and PilotNet."""
    lif = stock_neuron("LOIHI", threshold=25, current_decay=4096, voltage_decay=1024)
    return write_stock_netx(path, [stock_input_layer((3, 9, 9), lif),
                                   stock_conv(rng, (6, 4, 4), 3, 3, lif, stride=2, weights=(-20, 60)),
                                   stock_conv(rng, (8, 2, 2), 6, 3, lif, weights=(-20, 60))])


def _cuba_input_neurons(path, rng):
    """CUBA input neurons (16,) -> dense 12 -> dense 4 without neurons, as lava-dl's bootstrap MNIST network."""
    cuba = stock_neuron("CUBA", threshold=80, current_decay=4096, voltage_decay=123)
    return write_stock_netx(path, [stock_input_layer((16,), cuba), stock_dense(rng, 16, 12, cuba, weights=(-20, 80)),
                                   stock_dense(rng, 12, 4, weights=(-20, 80))])


def _ours(capsys, tmp_path, path, *flags):
    """lava-deploy's documented command, every layer recorded, --json read back."""
    out, layers = tmp_path / "out.npy", tmp_path / "layers.npz"
    assert main(["simulate", str(path), *map(str, flags), "--output-spikes", str(out), "--record-layers", str(layers),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    with np.load(layers) as recorded:
        return np.load(out), [recorded[name] for name in recorded.files], summary


def _assert_same_as_netx(ours, theirs, summary, steps, silent_output=False):
    """Every block's spikes equal, step for step; every block fires and stays silent (``silent_output``: but the
    last, an integrator netx builds with a threshold it never reaches, as in lava-dl's bootstrap network)."""
    output, layers = ours
    assert len(layers) == len(theirs)
    for i, (mine, stock) in enumerate(zip(layers, theirs)):
        assert mine.shape == stock.shape and len(mine) == steps
        np.testing.assert_array_equal(mine, stock, err_msg=f"block {i}")
        if not (silent_output and i == len(layers) - 1):
            assert 0 < np.count_nonzero(mine) < mine.size, f"block {i} must fire and stay silent to mean anything"
    np.testing.assert_array_equal(output, theirs[-1])
    assert summary["steps"] == steps and summary["output_spikes"] == np.count_nonzero(output)
    assert list(summary["spikes_per_layer"].values()) == [int(np.count_nonzero(s)) for s in layers]
    assert 0 < summary["simulation_seconds"] < summary["wall_seconds"]


@pytest.mark.lava
def test_conv_first_network_with_values_above_one_as_netx(tmp_path, capsys):
    """Unary input with values up to 3: lava-nc's fixed-point Conv takes any nonzero value as one spike."""
    rng = np.random.default_rng(0)
    path = _conv_first(tmp_path / "conv.net", rng)
    spikes = rng.integers(0, 4, (30, 6, 6, 1)) * (rng.random((30, 6, 6, 1)) < 0.4)    # Lava's (x, y, c) frames
    assert spikes.max() == 3
    np.save(tmp_path / "in.npy", spikes)
    output, layers, summary = _ours(capsys, tmp_path, path, "--input-spikes", tmp_path / "in.npy")
    theirs, _ = run_netx_itself(path, spikes=spikes)
    _assert_same_as_netx((output, layers), theirs, summary, 30)
    assert list(summary["spikes_per_layer"]) == ["layer_1", "layer_3"]


@pytest.mark.lava
def test_dense_first_network_takes_frames_as_wide_as_its_input(tmp_path, capsys):
    rng = np.random.default_rng(1)
    path = _dense_first(tmp_path / "dense.net", rng)
    spikes = (rng.random((30, 24)) < 0.4) * rng.integers(1, 3, (30, 24))
    np.save(tmp_path / "in.npy", spikes)
    output, layers, summary = _ours(capsys, tmp_path, path, "--input-spikes", tmp_path / "in.npy")
    theirs, _ = run_netx_itself(path, spikes=spikes)
    _assert_same_as_netx((output, layers), theirs, summary, 30)


@pytest.mark.lava
def test_lif_input_neurons_take_a_new_bias_every_step(tmp_path, capsys):
    """Graded input: the input neurons' bias changes every step (lava-dl's reference sets it between steps)."""
    rng = np.random.default_rng(2)
    path = _lif_input_neurons(tmp_path / "lif.net", rng)
    bias = rng.integers(0, 70, (24, 9, 9, 3))
    bias[8:12] = bias[7]        # unchanged frames too
    np.save(tmp_path / "bias.npy", bias)
    output, layers, summary = _ours(capsys, tmp_path, path, "--input-bias", tmp_path / "bias.npy")
    theirs, _ = run_netx_itself(path, bias=bias)
    _assert_same_as_netx((output, layers), theirs, summary, 24)
    assert list(summary["spikes_per_layer"]) == ["layer_0", "layer_1", "layer_2"]


@pytest.mark.lava
def test_cuba_input_neurons_hold_one_bias(tmp_path, capsys):
    """One bias held for --steps steps, as lava-dl's tests set an image into bias_mant once."""
    rng = np.random.default_rng(3)
    path = _cuba_input_neurons(tmp_path / "cuba.net", rng)
    bias = rng.integers(0, 120, 16).astype(np.float64)      # lava-dl's own bias files are float64
    np.save(tmp_path / "bias.npy", bias)
    output, layers, summary = _ours(capsys, tmp_path, path, "--input-bias", tmp_path / "bias.npy", "--steps", 25)
    theirs, _ = run_netx_itself(path, bias=bias, steps=25)
    _assert_same_as_netx((output, layers), theirs, summary, 25, silent_output=True)


def _refused(capsys, *argv, fragments=()):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_a_stock_network_picks_its_backend_and_names_its_input(tmp_path, capsys):
    rng = np.random.default_rng(4)
    dense, lif = _dense_first(tmp_path / "dense.net", rng), _lif_input_neurons(tmp_path / "lif.net", rng)
    _refused(capsys, "simulate", dense, fragments=["stock netx network", "--input-spikes", "(steps, 24)"])
    _refused(capsys, "simulate", lif, fragments=["--input-bias", "(steps, 9, 9, 3)", "--steps"])
    _refused(capsys, "simulate", dense, "--backend", "reference", fragments=["do not run on --backend reference",
                                                                            "lava-cpu"])


def test_input_of_the_wrong_kind_or_layout_is_refused_before_any_work(tmp_path, capsys):
    rng = np.random.default_rng(5)
    dense, lif = _dense_first(tmp_path / "dense.net", rng), _lif_input_neurons(tmp_path / "lif.net", rng)
    conv, cuba = _conv_first(tmp_path / "conv.net", rng), _cuba_input_neurons(tmp_path / "cuba.net", rng)
    arrays = {"w12": np.zeros((5, 12), np.int32), "w24": np.zeros((5, 24), np.int32),
              "chw": np.zeros((5, 1, 6, 6), np.int32), "bias": np.zeros((4, 9, 9, 3)),
              "huge": np.full((9, 9, 3), 40000), "half": np.full((16,), 0.5), "one": np.zeros(16, np.int64)}
    files = {}
    for name, array in arrays.items():
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], array)
    # netx's input port is the first synapse's input, not its output
    _refused(capsys, "simulate", dense, "--input-spikes", files["w12"], fragments=["(5, 12)", "(steps, 24)"])
    _refused(capsys, "simulate", conv, "--input-spikes", files["chw"], fragments=["(steps, 6, 6, 1)", "x, y, c"])
    _refused(capsys, "simulate", lif, "--input-spikes", files["bias"], fragments=["input neuron layer",
                                                                                  "--input-bias"])
    _refused(capsys, "simulate", dense, "--input-bias", files["w24"], fragments=["no input neuron layer",
                                                                                 "--input-spikes"])
    _refused(capsys, "simulate", lif, "--input-bias", files["huge"], "--steps", 3, fragments=["16-bit bias_mant"])
    _refused(capsys, "simulate", cuba, "--input-bias", files["half"], "--steps", 3, fragments=["whole numbers"])
    _refused(capsys, "simulate", cuba, "--input-bias", files["one"], fragments=["--steps"])
    _refused(capsys, "simulate", dense, "--input-spikes", files["w24"], "--steps", 3, fragments=["--steps"])
    _refused(capsys, "simulate", dense, "--input-spikes", files["w24"], "--dataset", "digits",
             fragments=["--dataset", "--input-spikes"])
    _refused(capsys, "simulate", dense, "--input-spikes", files["w24"], "--output-spikes", tmp_path / "o.npy",
             "--record-layers", tmp_path / "o.npy", fragments=["two different files"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npy") == sorted(f"{n}.npy" for n in arrays)


def test_what_netx_would_fail_on_is_refused_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(6)
    np.save(tmp_path / "in.npy", np.zeros((3, 24), np.int32))
    sdnn = write_stock_netx(tmp_path / "sdnn.net", [stock_dense(rng, 24, 5, {"type": "SDNN", "vThMant": 4})])
    _refused(capsys, "simulate", sdnn, "--input-spikes", tmp_path / "in.npy",
             fragments=["layer/0/neuron", "'SDNN'", "CUBA and LOIHI"])
    pool = write_stock_netx(tmp_path / "pool.net", [stock_input_layer((1, 6, 6)), {"type": "pool", "shape": [1, 3, 3]}])
    _refused(capsys, "simulate", pool, "--input-spikes", tmp_path / "in.npy", fragments=["layer/1", "'pool'"])
    wrong = write_stock_netx(tmp_path / "wrong.net", [stock_input_layer((1, 6, 6)),
                                                      stock_conv(rng, (4, 5, 5), 1, 3, stock_neuron())])
    _refused(capsys, "simulate", wrong, "--input-spikes", tmp_path / "in.npy",
             fragments=["layer/1", "not the convolution's output (4, 4, 4)"])
    chain = write_stock_netx(tmp_path / "chain.net", [stock_dense(rng, 24, 5, stock_neuron()),
                                                      stock_dense(rng, 6, 3, stock_neuron())])
    _refused(capsys, "simulate", chain, "--input-spikes", tmp_path / "in.npy",
             fragments=["layer/1", "takes 6 inputs", "gives 5"])


def test_a_lava_deploy_network_is_not_run_on_stock_flags(tmp_path, capsys):
    np.save(tmp_path / "in.npy", np.zeros((3, 64), np.int32))
    _refused(capsys, "simulate", MLP, "--input-spikes", tmp_path / "in.npy", fragments=["lava-deploy network",
                                                                                        "--dataset"])
    _refused(capsys, "simulate", MLP, "--record-layers", tmp_path / "l.npz", fragments=["--record-layers",
                                                                                        "lava-deploy network"])
