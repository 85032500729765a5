"""A stock lava-dl netx CUBA network runs through lava-deploy with the same spikes as through netx itself."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from lava_deploy.cli import main

pytestmark = pytest.mark.lava


def _cuba(group: h5py.Group, threshold: int) -> None:
    neuron = group.create_group("neuron")
    for key, value in {"iDecay": 1024, "vDecay": 128, "vThMant": threshold, "refDelay": 1, "gradedSpike": 0}.items():
        neuron.create_dataset(key, data=value)
    neuron.create_dataset("type", data=np.array([b"CUBA"], dtype="S10"))


def write_stock_network(path, rng) -> None:
    """input (1, 6, 6) -> conv 4x3x3 (padding 1) -> flatten -> dense 5, in netx's keys and layouts."""
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        specs = [("input", {"shape": [1, 6, 6]}),
                 ("conv", {"shape": [4, 6, 6], "weight": rng.integers(-60, 100, (4, 1, 3, 3)) * 2,
                           "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
                           "inChannels": 1, "outChannels": 4, "kernelSize": [3, 3]}),
                 ("flatten", {"shape": [144]}),
                 ("dense", {"shape": [5], "weight": rng.integers(-30, 60, (5, 144)) * 2,
                            "inFeatures": 144, "outFeatures": 5})]
        for i, (kind, keys) in enumerate(specs):
            group = layers.create_group(str(i))
            group.create_dataset("type", data=np.array([kind.encode()], dtype="S10"))
            for key, value in keys.items():
                group.create_dataset(key, data=np.asarray(value))
            if kind in ("conv", "dense"):
                _cuba(group, threshold=200)


def run_netx_itself(path, spikes: np.ndarray) -> np.ndarray:
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    network = netx.hdf5.Network(net_config=str(path))
    source = io.source.RingBuffer(data=np.moveaxis(spikes, 0, -1))
    sink = io.sink.RingBuffer(shape=network.out.shape, buffer=len(spikes))
    source.s_out.connect(network.inp)
    network.out.connect(sink.a_in)
    try:
        network.run(condition=RunSteps(num_steps=len(spikes)), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return np.moveaxis(sink.data.get(), -1, 0)
    finally:
        network.stop()


def test_stock_cuba_network_same_spikes_as_netx(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "stock.net"
    write_stock_network(path, rng)
    spikes = (rng.random((40, 6, 6, 1)) < 0.3).astype(np.int32)     # Lava's (x, y, c) frames
    np.save(tmp_path / "in.npy", spikes)
    assert main(["simulate", str(path), "--backend", "lava-cpu", "--input-spikes", str(tmp_path / "in.npy"),
                 "--output-spikes", str(tmp_path / "out.npy")]) == 0
    ours = np.load(tmp_path / "out.npy")
    theirs = run_netx_itself(path, spikes)
    assert ours.shape == theirs.shape == (40, 5)
    np.testing.assert_array_equal(ours, theirs)
    assert 0 < ours.sum() < ours.size, "the network must both fire and stay silent for the test to mean anything"


def test_stock_network_needs_input_spikes(tmp_path, capsys):
    path = tmp_path / "stock.net"
    write_stock_network(path, np.random.default_rng(1))
    assert main(["simulate", str(path), "--backend", "lava-cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stock netx network (CUBA neurons)" in err and "--input-spikes" in err
    np.save(tmp_path / "wrong.npy", np.zeros((5, 3, 3, 1), np.int32))
    assert main(["simulate", str(path), "--backend", "lava-cpu", "--input-spikes", str(tmp_path / "wrong.npy")]) == 2
    assert "the network's input is (6, 6, 1)" in capsys.readouterr().err
