"""The netx HDF5 file: round trip, stock netx can open it, atomic writes, and every malformed case."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from factories import random_network, with_neuron_bias
from lava_deploy.cli import main
from lava_deploy.network.netx import NEURON_TYPE, read_netx, write_netx


def _written(network, path):
    write_netx(network, path)
    return network, path


@pytest.fixture
def network_file(tmp_path):
    network = random_network(np.random.default_rng(0), time_steps=3, input_bits=8, conv=True)
    network.metadata = {"float_test_accuracy": 0.5}
    return _written(network, tmp_path / "net.net")


def test_round_trip_keeps_every_number(network_file):
    network, path = network_file
    back = read_netx(path)
    assert (back.time_steps, back.input_bits, back.input_shape) == (3, 8, network.input_shape)
    assert back.class_names == network.class_names and back.metadata == network.metadata
    _assert_same_layers(network, back)


def test_a_bias_per_neuron_round_trips_and_a_bias_of_another_shape_is_refused(tmp_path, capsys):
    network = with_neuron_bias(np.random.default_rng(5), random_network(np.random.default_rng(5), conv=True))
    _written(network, tmp_path / "net.net")
    back = read_netx(tmp_path / "net.net")
    assert back.layers[0].bias.shape == network.layers[0].output_shape
    _assert_same_layers(network, back)
    with h5py.File(tmp_path / "net.net", "r+") as f:
        del f["layer/1/bias"]
        f["layer/1/bias"] = np.zeros((6, 5, 4), np.int64)
    assert main(["info", str(tmp_path / "net.net")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layer/1" in err and "'bias' has shape (6, 5, 4), expected (6, 5, 5)" in err


def _assert_same_layers(network, back):
    """Every node, edge, synapse field and number equal."""
    assert len(back.layers) == len(network.layers)
    for ours, theirs in zip(network.layers, back.layers):
        assert (ours.neuron, ours.accumulate_shift, len(ours.inputs)) == (theirs.neuron, theirs.accumulate_shift,
                                                                          len(theirs.inputs))
        np.testing.assert_array_equal(ours.bias, theirs.bias)
        for mine, read in zip(ours.inputs, theirs.inputs):
            assert mine.source == read.source and type(mine.synapse) is type(read.synapse)
            fields = {k: v for k, v in vars(mine.synapse).items() if k != "weight_mantissa"}
            assert fields == {k: v for k, v in vars(read.synapse).items() if k != "weight_mantissa"}
            np.testing.assert_array_equal(mine.synapse.weight_mantissa, read.synapse.weight_mantissa)


def test_stock_netx_reads_the_layout(network_file):
    """lava-dl's own NetDict walks the file with netx's keys: types, shapes, weights."""
    from lava.lib.dl.netx.utils import NetDict

    network, path = network_file
    layers = NetDict(str(path))["layer"]
    types = [layers[i]["type"] for i in range(len(layers))]
    assert types == ["input", "conv", "flatten", "dense", "dense"]
    assert layers[1]["neuron"]["type"] == NEURON_TYPE
    np.testing.assert_array_equal(layers[1]["weight"], network.layers[0].synapse.weight)
    assert list(layers[3]["shape"]) == [network.layers[1].output_shape[0]]


def test_failed_write_leaves_nothing(tmp_path):
    network = random_network(np.random.default_rng(1), conv=False)
    network.metadata = {"unserializable": object()}
    path = tmp_path / "net.net"
    with pytest.raises(TypeError):
        write_netx(network, path)
    assert list(tmp_path.iterdir()) == []


def _edit(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


def _replace(key, value):
    def edit(f):
        del f[key]
        f.create_dataset(key, data=value)
    return edit


MALFORMED = {
    "missing key": (lambda f: f["layer/3"].__delitem__("bias"), "layer/3: missing key 'bias'"),
    "wrong shape": (_replace("layer/4/weight", np.zeros((4, 3), np.int64)), "layer/4: 'weight' has shape (4, 3)"),
    "unknown layer": (_replace("layer/3/type", np.array([b"pool"], "S10")), "layer/3: unknown layer type 'pool'"),
    "unknown neuron": (_replace("layer/1/neuron/type", np.array([b"LIFX"], "S10")),
                       "layer/1/neuron: unknown neuron type 'LIFX'"),
    "NaN weights": (lambda f: _replace("layer/3/weight", np.full(f["layer/3/weight"].shape, np.nan))(f),
                    "layer/3: 'weight' contains NaN"),
    "bad mantissa": (lambda f: _replace("layer/3/weight", f["layer/3/weight"][()] + 1)(f),
                     "layer/3: 'weight' is not an even 8-bit mantissa"),
    "wrong phase": (_replace("layer/3/neuron/phase", 7), "layer/3/neuron: 'phase' is not the pipeline offset"),
    "missing input": (lambda f: f["layer"].__delitem__("0"), "layer/0: missing input layer"),
    "gap in layers": (lambda f: f["layer"].__delitem__("2"), "layer groups must be numbered 0..n-1"),
}


def _edited_copy(path, tmp_path, edit):
    bad = tmp_path / "bad.net"
    shutil.copyfile(path, bad)
    _edit(bad, edit)
    return bad


def _assert_one_line(argv, capsys, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_file_is_one_line_naming_layer_and_key(network_file, tmp_path, capsys, case):
    edit, expected = MALFORMED[case]
    _assert_one_line(["info", str(_edited_copy(network_file[1], tmp_path, edit))], capsys, expected)


def test_truncated_and_foreign_files(network_file, tmp_path, capsys):
    _, path = network_file
    truncated = tmp_path / "truncated.net"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    text = tmp_path / "notes.net"
    text.write_text("not hdf5")
    for bad, expected in ((truncated, "not an HDF5 file or truncated"), (text, "not an HDF5 file or truncated"),
                          (tmp_path / "none.net", "does not exist")):
        assert main(["simulate", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err


@pytest.fixture
def residual_file(tmp_path):
    from factories import random_residual_network

    return _written(random_residual_network(np.random.default_rng(0), time_steps=3), tmp_path / "residual.net")


def test_residual_round_trip_and_stock_reading(residual_file):
    from lava.lib.dl.netx.utils import NetDict

    network, path = residual_file
    _assert_same_layers(network, read_netx(path))
    with h5py.File(path) as f:
        assert int(f["layer/3/skip/source"][()]) == 1 and int(f["layer/3/skip/delay"][()]) == 4
    # The chain stays netx's: NetDict walks it, the shortcut is one more group it can ignore.
    layers = NetDict(str(path))["layer"]
    assert [layers[i]["type"] for i in range(len(layers))] == ["input", *["conv"] * 5, "flatten", "dense"]
    assert layers[3]["skip"]["delay"] == 4


MALFORMED_SKIPS = {
    "misaligned": (_replace("layer/3/skip/delay", 3), "layer/3/skip: misaligned: 'delay' is 3 steps"),
    "later source": (_replace("layer/3/skip/source", 4), "'source' layer/4 is not an earlier layer with neurons"),
    "input as source": (_replace("layer/3/skip/source", 0), "'source' layer/0 is not an earlier layer"),
    "channels": (_replace("layer/5/skip/inChannels", 5), "layer/5/skip: 'inChannels' is not the 3 channels"),
    "weight shape": (_replace("layer/5/skip/weight", np.zeros((6, 3, 3, 3), np.int64)),
                     "layer/5/skip: 'weight' has shape (6, 3, 3, 3)"),
    "stride": (_replace("layer/5/skip/stride", np.array([1, 1])), "layer/5/skip: 'shape' is not the conv's output shape (6, 6, 6)"),
    "missing delay": (lambda f: f["layer/3/skip"].__delitem__("delay"), "layer/3/skip: missing key 'delay'"),
    "not conv": (_replace("layer/3/skip/type", np.array([b"dense"], "S10")), "layer/3/skip: 'type' must be 'conv'"),
}


@pytest.mark.parametrize("case", MALFORMED_SKIPS)
def test_malformed_or_misaligned_skip_is_one_line(residual_file, tmp_path, capsys, case):
    edit, expected = MALFORMED_SKIPS[case]
    bad = _edited_copy(residual_file[1], tmp_path, edit)
    for verb in ("info", "simulate"):
        _assert_one_line([verb, str(bad)], capsys, expected)
