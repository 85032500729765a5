"""Hostile files and arguments against every verb: exit 2, one stderr line, nothing run, written or left running.

The corpus is built in a temporary folder from a shipped model: pickle payloads
that would create a marker file, netx files with NaN, infinite and out-of-range
values in every key, wrong metadata types, an oversized weight exponent, a
24-bit overflow and a header that declares gigabytes; bad numbers for every
flag; outputs that cannot or must not be written. Everything runs in-process.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lava_deploy.cli import main
from lava_deploy.errors import DeployError
from lava_deploy.network.netx import read_netx
from factories import stock_dense, stock_input_layer, stock_neuron, write_stock_netx
from test_data_hostile import MARKER, code_payload, images, labels, npy_header, write_cifar, write_npz

SHIPPED = Path(__file__).resolve().parents[1] / "netx_models" / "digits-mlp-t3"


class _Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _children() -> set[int]:
    """Live child processes of this test process (Linux /proc)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            pids.add(int(stat.parent.name))
    return pids


def _refused(capsys, *argv: str, fragment: str = "") -> str:
    """Run the CLI in-process and assert the one-line refusal; return the line."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], (argv, err)
    assert fragment in err[0], (argv, err[0])
    return err[0]


@pytest.fixture
def corpus(tmp_path):
    """A shipped model's files copied into a folder that also holds the marker's place."""
    shutil.copy(SHIPPED / "model.net", tmp_path / "good.net")
    shutil.copy(SHIPPED / "model.pt", tmp_path / "good.pt")
    return tmp_path


def _edited(corpus: Path, name: str, edit) -> Path:
    path = corpus / name
    shutil.copy(corpus / "good.net", path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _numeric_keys(path: Path) -> list[str]:
    keys = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: keys.append(name)
                     if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf" else None)
    return keys


def _replace(key: str, value: float):
    def edit(f: h5py.File) -> None:
        shape = f[key].shape
        del f[key]
        f.create_dataset(key, data=np.full(shape, value, dtype=np.float64))
    return edit


# Every verb that reads a network, with what it needs beside the file.
NETWORK_VERBS = [("info", []), ("check", ["--samples", "5"]), ("simulate", ["--backend", "reference", "-q"]),
                 ("compare", ["--samples", "5", "-q"])]


def test_every_numeric_netx_key_with_nan_infinite_or_out_of_range_values_is_refused(corpus, capsys):
    before = _children()
    keys = _numeric_keys(corpus / "good.net")
    assert len(keys) > 30       # layer/0, three layers with their neurons, simulation
    for key in keys:
        for value in (np.nan, np.inf, 2.0**40, -2.0**40):
            path = _edited(corpus, "bad.net", _replace(key, value))
            for verb, extra in NETWORK_VERBS:
                _refused(capsys, verb, path, *extra, fragment="bad.net")
    assert _children() == before


def _weight_bomb(f: h5py.File) -> None:
    """A 2 GiB weight matrix that the file declares but does not store (HDF5 fills it on reading)."""
    del f["layer/1/weight"]
    f.create_dataset("layer/1/weight", shape=(2**22, 64), dtype="i8")
    f["layer/1/outFeatures"][()] = 2**22
    f["layer/1/shape"][()] = [2**22]


def _scale_weights(f: h5py.File, layer: str, factor: int) -> None:
    weight = f[f"{layer}/weight"][()] * factor
    del f[f"{layer}/weight"]
    f.create_dataset(f"{layer}/weight", data=weight)
    f[f"{layer}/weightExponent"][()] = int(np.log2(factor))


def _replace_text(f: h5py.File, key: str, text: str) -> None:
    del f[key]
    f.create_dataset(key, data=np.array([text.encode()], dtype="S10"))


@pytest.mark.parametrize("name,edit,fragment", [
    ("metadata is a list", lambda f: f["lava_deploy"].attrs.__setitem__("metadata", "[1, 2]"), "'metadata'"),
    ("metadata is not JSON", lambda f: f["lava_deploy"].attrs.__setitem__("metadata", "{oops"), "'metadata'"),
    ("class names are numbers", lambda f: f["lava_deploy"].attrs.__setitem__("classNames", "[0, 1]"), "'classNames'"),
    ("time steps are text", lambda f: f["lava_deploy"].attrs.__setitem__("timeSteps", "three"), "'timeSteps'"),
    ("lava_deploy is an array", lambda f: (f.__delitem__("lava_deploy"), f.create_dataset("lava_deploy", data=1)),
     "lava_deploy"),
    ("weight exponent beyond the chip", lambda f: _scale_weights(f, "layer/1", 2**17), "weightExponent"),
    ("24-bit overflow", lambda f: _replace("layer/1/bias", 2.0**23)(f), "overflows"),
    ("header declares 2 GB", _weight_bomb, "declares"),
    ("unknown layer type", lambda f: _replace_text(f, "layer/2/type", "pool"), "unknown layer type"),
    ("unknown neuron", lambda f: _replace_text(f, "layer/2/neuron/type", "CUBA"), "neuron type"),
])
def test_malformed_netx_files_are_refused_by_every_verb(corpus, capsys, name, edit, fragment):
    path = _edited(corpus, "bad.net", edit)
    for verb, extra in NETWORK_VERBS:
        _refused(capsys, verb, path, *extra, fragment=fragment)


def test_a_pickle_payload_in_a_checkpoint_never_runs(corpus, capsys):
    marker = corpus / "pwned"
    good = torch.load(corpus / "good.pt", weights_only=True)
    for payload in ({"format": "lava-deploy-checkpoint", "evil": _Payload(marker)},      # before the format check
                    {**good, "info": {**good["info"], "metrics": _Payload(marker)}},
                    _Payload(marker)):
        torch.save(payload, corpus / "evil.pt")
        _refused(capsys, "export", corpus / "evil.pt", "-o", corpus / "out.net", fragment="evil.pt")
        assert not marker.exists()
    assert not (corpus / "out.net").exists()


@pytest.mark.parametrize("change,fragment", [
    (lambda p: p["info"].update(spec=[{"type": "dense", "out": 10**12, "act": True}]), "do not match"),
    (lambda p: p["info"].update(levels=-1), "'levels'"),
    (lambda p: p["info"].update(input_shape=[1, 0, 8]), "'input_shape'"),
    (lambda p: p.update(version=99), "version"),
    (lambda p: p.update(state_dict={"w": [1, 2]}), "tensors"),
])
def test_malformed_checkpoints_are_refused_before_any_model_is_built(corpus, capsys, change, fragment):
    payload = torch.load(corpus / "good.pt", weights_only=True)
    change(payload)
    torch.save(payload, corpus / "bad.pt")
    _refused(capsys, "export", corpus / "bad.pt", "-o", corpus / "out.net", fragment=fragment)
    assert not (corpus / "out.net").exists()


def test_bad_numbers_for_every_flag_are_one_line_errors(corpus, capsys, tmp_path):
    ckpt = tmp_path / "x.pt"
    for flag, value in (("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1"), ("--bit-l1", "nan"), ("--bit-l1", "-0.5"),
                        ("--seed", "-1"), ("--seed", str(2**40)), ("--epochs", "0"), ("--batch-size", "0"),
                        ("--time-steps", "0"), ("--time-steps", "9"), ("--input-bits", "17"), ("--qat-epochs", "-1")):
        _refused(capsys, "train", flag, value, "-o", ckpt, fragment=flag.split()[0])
    net = corpus / "good.net"
    for verb, extra in (("simulate", ["--backend", "reference"]), ("compare", []), ("check", [])):
        for samples in ("0", "-1"):
            _refused(capsys, verb, net, *extra, "--samples", samples, fragment="--samples")
    _refused(capsys, "simulate", net, "--backend", "gpu", fragment="unknown backend")
    assert not ckpt.exists()


def test_outputs_that_cannot_or_must_not_be_written_are_refused_before_any_work(corpus, capsys):
    good_pt, good_net = corpus / "good.pt", corpus / "good.net"
    before = good_pt.read_bytes()
    _refused(capsys, "export", good_pt, "-o", good_pt, fragment="is the input")
    assert good_pt.read_bytes() == before
    _refused(capsys, "export", good_pt, "-o", corpus / "missing" / "x.net", fragment="does not exist")
    _refused(capsys, "export", good_pt, "-o", corpus, fragment="is a folder")
    _refused(capsys, "export", good_pt, "-o", "/proc/x.net", fragment="cannot write")     # a read-only folder
    _refused(capsys, "train", "-q", "-o", corpus / "missing" / "x.pt", fragment="does not exist")
    _refused(capsys, "train", "-q", "-o", corpus, fragment="is a folder")
    (corpus / "plots").write_text("a file")
    _refused(capsys, "compare", good_net, "--samples", "2", "-q", "--plots", corpus / "plots", fragment="is a file")
    _refused(capsys, "compare", good_net, "--samples", "2", "-q", "--plots", "/proc/plots", fragment="/proc/plots")
    for verb in ("info", "check", "simulate", "compare"):
        _refused(capsys, verb, corpus, fragment="is a folder")
    _refused(capsys, "export", corpus, "-o", corpus / "y.net", fragment="is a folder")
    assert sorted(p.name for p in corpus.iterdir()) == ["good.net", "good.pt", "plots"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), min_size=1, max_size=8))
def test_netx_reader_fuzz_byte_flips_give_only_one_line_errors(tmp_path, flips):
    data = bytearray((SHIPPED / "model.net").read_bytes())
    for position, xor in flips:
        data[position % len(data)] ^= xor
    path = tmp_path / "flipped.net"
    path.write_bytes(bytes(data))
    try:
        read_netx(path)
    except DeployError as exc:
        assert len(str(exc).splitlines()) == 1


def _all_entries(path: Path) -> list[str]:
    entries = []
    with h5py.File(path, "r") as f:
        f.visit(entries.append)
        entries += [f"@{name}" for name in f["lava_deploy"].attrs if name != "inputEncoding"]   # a comment
    return entries


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
def test_netx_reader_fuzz_deleted_keys_give_only_one_line_errors(tmp_path, picks):
    path = tmp_path / "deleted.net"
    shutil.copy(SHIPPED / "model.net", path)
    entries = _all_entries(path)
    with h5py.File(path, "r+") as f:
        for pick in picks:
            name = entries[pick % len(entries)]
            if name.startswith("@") and "lava_deploy" in f and name[1:] in f["lava_deploy"].attrs:
                del f["lava_deploy"].attrs[name[1:]]
            elif not name.startswith("@") and name in f:
                del f[name]
    with pytest.raises(DeployError) as error:      # every entry is required
        read_netx(path)
    assert len(str(error.value).splitlines()) == 1


def _with_dataset(corpus: Path, spec: str) -> Path:
    """The good network, its metadata naming ``spec`` as its dataset (what ``check`` reads by default)."""
    def edit(f: h5py.File) -> None:
        meta = json.loads(f["lava_deploy"].attrs["metadata"])
        f["lava_deploy"].attrs["metadata"] = json.dumps({**meta, "dataset": spec})
    return _edited(corpus, "named.net", edit)


@pytest.mark.parametrize("kind", ["os.system", "runstring", "numpy.load"])
def test_cifar_payloads_never_run_through_any_verb(corpus, capsys, kind):
    folder = corpus / "cifar"
    spec = write_cifar(folder, replace={"test_batch": code_payload(folder, kind)})
    marker = folder / MARKER
    _refused(capsys, "train", "--dataset", spec, "-q", "-o", corpus / "x.pt", fragment="test_batch")
    _refused(capsys, "check", _with_dataset(corpus, spec), fragment="test_batch")      # the file names the set
    for verb in ("simulate", "compare"):
        _refused(capsys, verb, corpus / "good.net", "--dataset", spec, "-q", fragment="test_batch")
    assert not marker.exists() and not (corpus / "x.pt").exists()


@pytest.mark.parametrize("members,fragment", [
    ({}, "holds no arrays"),
    ({"x": npy_header((10**6, 10**6), "<f8"), "y": labels()}, "d.npz"),                  # 7 TB declared
    ({"x": images(), "y": np.array([10**9] + [0] * 9)}, "label"),
    ({"x": images(), "y": np.array([5 * 10**7] + [0] * 9)}, "label"),
])
def test_hostile_npz_datasets_are_refused_by_every_verb(corpus, capsys, members, fragment):
    spec = write_npz(corpus / "npz", members)
    _refused(capsys, "train", "--dataset", spec, "-q", "-o", corpus / "x.pt", fragment=fragment)
    for verb in ("simulate", "compare", "check"):
        _refused(capsys, verb, corpus / "good.net", "--dataset", spec, "-q" if verb != "check" else "--json",
                 fragment=fragment)
    assert not (corpus / "x.pt").exists()


def test_an_npz_of_another_image_shape_than_the_network_is_refused(corpus, capsys):
    spec = write_npz(corpus / "npz", {"x": images(), "y": labels()})       # 4x4 images, the network takes 8x8
    for verb in ("simulate", "compare", "check"):
        _refused(capsys, verb, corpus / "good.net", "--dataset", spec, fragment="expects (1, 8, 8)")


def test_an_input_file_whose_header_declares_more_than_it_holds_is_refused(corpus, capsys):
    rng = np.random.default_rng(0)
    dense = write_stock_netx(corpus / "dense.net", [stock_dense(rng, 8, 4, stock_neuron())])
    neurons = write_stock_netx(corpus / "neurons.net", [stock_input_layer((8,), stock_neuron()),
                                                        stock_dense(rng, 8, 4, stock_neuron())])
    bomb = corpus / "in.npy"
    bomb.write_bytes(npy_header((10**6, 10**6), "<i8"))
    for net, flag in ((dense, "--input-spikes"), (neurons, "--input-bias")):
        _refused(capsys, "simulate", net, flag, bomb, "--output-spikes", corpus / "out.npy", fragment="in.npy")
    assert not (corpus / "out.npy").exists()


def test_a_held_input_bias_is_not_held_for_more_steps_than_the_records_can_take(corpus, capsys):
    rng = np.random.default_rng(1)
    net = write_stock_netx(corpus / "neurons.net", [stock_input_layer((8,), stock_neuron()),
                                                    stock_dense(rng, 8, 4, stock_neuron())])
    np.save(corpus / "bias.npy", np.zeros(8, np.int32))
    _refused(capsys, "simulate", net, "--input-bias", corpus / "bias.npy", "--steps", 10**9, "--record-layers",
             corpus / "layers.npz", fragment="bytes")
    assert not (corpus / "layers.npz").exists()


PEAK = r"""
import sys
from lava_deploy.cli import main
code = main(sys.argv[1:])
# This process's own peak resident memory (ru_maxrss would carry a forking parent's peak over exec).
print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")))
sys.exit(code)
"""


def _small_hostile_files(corpus: Path) -> dict[str, Path | str]:
    """The three small files of issue #19: a 1.3 KB npz with a label of 5e7, a ~250 KB zip bomb, a 1 KB netx
    entry declaring a 2 GB weight."""
    label = write_npz(corpus / "label", {"x": images(), "y": np.array([5 * 10**7] + [0] * 9)})
    bomb = write_npz(corpus / "bomb", {"x": np.zeros((320_000, 28, 28), np.uint8), "y": np.zeros(320_000, np.int64)},
                     compression=zipfile.ZIP_DEFLATED)
    return {"label": label, "bomb": bomb, "netx": _edited(corpus, "bomb.net", _weight_bomb)}


def test_small_hostile_files_end_in_one_line_under_1_gb(corpus):
    files = _small_hostile_files(corpus)
    assert Path(files["label"][4:]).stat().st_size < 2000 and Path(files["bomb"][4:]).stat().st_size < 400_000
    runs = [("train", "--dataset", files["label"], "-q", "-o", corpus / "x.pt"),
            ("train", "--dataset", files["bomb"], "-q", "-o", corpus / "x.pt"),
            ("simulate", corpus / "good.net", "--dataset", files["label"]),
            ("info", files["netx"]), ("simulate", files["netx"], "--dataset", "digits")]
    for argv in runs:
        result = subprocess.run([sys.executable, "-c", PEAK, *map(str, argv)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, argv
        assert int(result.stdout.split()[-1]) < 1 << 30, (argv, int(result.stdout.split()[-1]) >> 20)


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s.__setitem__("1.weight", s["1.weight"] * 2**20), "layer 0: weight exponent 16 outside the chip's 0..7"),
    (lambda s: s.__setitem__("3.bias", s["3.bias"] + 1e19), "layer 1: a value of"),        # int64 would wrap it
    (lambda s: s.__setitem__("3.weight", s["3.weight"] * float("nan")), "layer 1 has NaN"),
])
def test_export_refuses_what_the_chip_cannot_take(corpus, capsys, change, fragment):
    payload = torch.load(corpus / "good.pt", weights_only=True)
    change(payload["state_dict"])
    torch.save(payload, corpus / "scaled.pt")
    _refused(capsys, "export", corpus / "scaled.pt", "-o", corpus / "out.net", fragment=fragment)
    assert not (corpus / "out.net").exists()


def test_export_refuses_an_accuracy_collapse_unless_forced(corpus, capsys):
    payload = torch.load(corpus / "good.pt", weights_only=True)
    payload["state_dict"]["3.weight"] = -payload["state_dict"]["3.weight"]     # the float accuracy stays recorded
    torch.save(payload, corpus / "collapsed.pt")
    _refused(capsys, "export", corpus / "collapsed.pt", "-o", corpus / "out.net", fragment="points below")
    assert not (corpus / "out.net").exists()
    assert main(["export", str(corpus / "collapsed.pt"), "-o", str(corpus / "out.net"), "--force"]) == 0
    assert (corpus / "out.net").exists()
