"""The CLI end to end on real data, in-process: defaults from the network file, options, one-line errors (exit 2)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lava_deploy import __version__
from lava_deploy.cli import build_parser, main
from lava_deploy.data import load_dataset
from lava_deploy.simulate import BACKENDS, load_network, simulate, write_predictions

MODELS = Path(__file__).resolve().parent.parent / "netx_models"
MLP = MODELS / "digits-mlp-t3" / "model.net"
CNN = MODELS / "mnist5k-cnn-t3"


def _one_line_error(capsys, *argv, fragments=()) -> str:
    """Run the CLI in-process, assert exit 2 with one stderr line holding every fragment, and return the line."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])
    return err[0]


def _train(output: Path, *time_steps: str) -> None:
    assert main(["train", "--model", "mlp", "--dataset", "digits", *time_steps, "--epochs", "3", "--seed", "0",
                 "-q", "-o", str(output)]) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits MLP trained briefly at T = 2 through the CLI, and its export."""
    d = tmp_path_factory.mktemp("cli")
    ckpt, net = d / "mlp.pt", d / "mlp.net"
    _train(ckpt, "--time-steps", "2")
    assert main(["export", str(ckpt), "-o", str(net)]) == 0
    return ckpt, net


def test_train_export_simulate_on_the_dataset_the_file_records(trained, capsys):
    _, net = trained
    assert main(["simulate", str(net), "--backend", "reference", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "reference" and summary["samples"] == 360        # digits' whole test split
    assert summary["accuracy"] > 0.8
    assert summary["steps_per_sample"] == 2 and summary["spikes_per_sample"] > 0


def test_deprecated_bits_trains_the_same_checkpoint_as_time_steps_and_says_so(trained, tmp_path, capsys):
    ckpt, _ = trained
    again = tmp_path / "again.pt"
    capsys.readouterr()
    _train(again, "--bits", "2")
    assert capsys.readouterr().err == "lava-deploy: note: --bits is deprecated; use --time-steps\n"
    first, second = torch.load(ckpt, weights_only=False), torch.load(again, weights_only=False)
    assert first["info"] == second["info"] and second["info"]["levels"] == 3      # T = 2, not the default 3
    for key, value in first["state_dict"].items():      # also: training is deterministic
        assert torch.equal(value, second["state_dict"][key]), key
    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--time-steps" in train_help and "--bits" not in train_help


def test_simulate_writes_predictions_of_the_files_own_dataset(tmp_path, capsys):
    """No --dataset, no --samples: all 1000 mnist5k test samples, the accuracy of the model's card."""
    out = tmp_path / "p.npz"
    assert main(["simulate", str(CNN / "model.net"), "--backend", "reference", "--predictions", str(out),
                 "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    with np.load(out, allow_pickle=False) as saved:
        labels, predictions, logits = saved["labels"], saved["predictions"], saved["logits"]
        class_names = list(saved["class_names"])
    assert len(labels) == len(predictions) == len(logits) == summary["samples"] == 1000
    assert np.array_equal(labels, load_dataset("mnist5k").y_test)
    assert np.array_equal(predictions, logits.argmax(axis=1)) and logits.shape == (1000, 10)
    accuracy = float((predictions == labels).mean())
    figures = json.loads((CNN / "figures.json").read_text())
    assert accuracy == summary["accuracy"] == figures["reference_test_accuracy"]
    assert f"| integer reference test accuracy | {accuracy:.4f}" in (CNN / "README.md").read_text()
    assert f"{accuracy:.4f}" == "0.9810"
    assert class_names == load_network(CNN / "model.net").class_names
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


def test_write_predictions_from_python(tmp_path):
    result = simulate(MLP, backend="reference", samples=7)
    path = write_predictions(result, tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved) == ["class_names", "labels", "logits", "predictions"]
        assert np.array_equal(saved["logits"], result.logits) and np.array_equal(saved["labels"], result.labels)
        assert len(saved["class_names"]) == 0


def test_bad_prediction_outputs_are_refused_before_the_run(tmp_path, capsys):
    net = tmp_path / "mlp.net"
    shutil.copy(MLP, net)
    before = net.read_bytes()
    _one_line_error(capsys, "simulate", net, "--predictions", tmp_path, fragments=["is a folder"])
    _one_line_error(capsys, "simulate", net, "--predictions", tmp_path / "no" / "p.npz", fragments=["does not exist"])
    _one_line_error(capsys, "simulate", net, "--predictions", net, fragments=["is the input"])
    _one_line_error(capsys, "simulate", net, "--dataset", "mnist5k", "--predictions", tmp_path / "p.npz",
                    fragments=["expects (1, 8, 8)"])        # a run that fails writes nothing
    _one_line_error(capsys, "simulate", net, "--input-spikes", tmp_path / "in.npy", "--predictions",
                    tmp_path / "p.npz", fragments=["--predictions", "--output-spikes"])
    assert net.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["mlp.net"]


def _recording_dataset(tmp_path: Path, value: object) -> Path:
    """The shipped MLP with its metadata's dataset removed (None) or replaced by ``value``."""
    path = tmp_path / "unnamed.net"
    shutil.copy(MLP, path)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f["lava_deploy"].attrs["metadata"])
        meta.pop("dataset")
        f["lava_deploy"].attrs["metadata"] = json.dumps(meta if value is None else {**meta, "dataset": value})
    return path


@pytest.mark.parametrize("value", [None, 5, ""])
def test_a_file_that_records_no_dataset_needs_dataset(tmp_path, capsys, value):
    net = _recording_dataset(tmp_path, value)
    for verb in ("simulate", "compare"):
        _one_line_error(capsys, verb, net, "-q", fragments=["--dataset"])
    assert main(["simulate", str(net), "--dataset", "digits", "--samples", "5", "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 5


def test_check_counts_all_samples_of_the_files_dataset(capsys):
    assert main(["check", str(CNN / "model.net"), "--json"]) == 0
    energy = json.loads(capsys.readouterr().out)["energy"]
    assert energy["dataset"] == "mnist5k" and energy["activity"]["samples"] == 1000


def test_every_verb_defaults_to_all_samples_and_the_files_dataset():
    parser = build_parser()
    for verb in ("simulate", "compare", "check"):
        args = parser.parse_args([verb, "model.net"])
        assert args.samples is None and args.dataset is None, verb


@pytest.mark.lava
def test_compare_defaults_to_every_sample_of_the_files_dataset(capsys):
    assert main(["compare", str(MLP), "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 360 and summary["spike_agreement"] == 1.0


def test_backend_choices_come_from_the_library(capsys):
    line = _one_line_error(capsys, "simulate", MLP, "--backend", "bogus", fragments=["--backend", "'bogus'"])
    assert line.endswith(f"(choose from {', '.join(BACKENDS)})")
    against = [b for b in BACKENDS if b != "reference"]
    line = _one_line_error(capsys, "compare", MLP, "--backend", "reference", fragments=["'reference'"])
    assert line.endswith(f"(choose from {', '.join(against)})")
    verbs = build_parser()._subparsers._group_actions[0].choices
    assert "{" + ",".join(BACKENDS) + "}" in verbs["simulate"].format_help()
    assert "{" + ",".join(against) + "}" in verbs["compare"].format_help()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"lava-deploy {__version__}\n"


def test_version_of_the_module_entry_point():
    """A real process: ``python -m lava_deploy`` reaches main() and exits with its code."""
    result = subprocess.run([sys.executable, "-m", "lava_deploy", "--version"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"lava-deploy {__version__}\n", "")


def test_bad_inputs_are_one_line_errors_and_leave_no_file(tmp_path, trained, capsys):
    out = tmp_path / "out.net"
    _one_line_error(capsys, "export", tmp_path / "missing.pt", "-o", out, fragments=["does not exist"])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained[0].read_bytes()[:300])
    _one_line_error(capsys, "export", corrupt, "-o", out, fragments=["cannot read checkpoint"])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    _one_line_error(capsys, "export", foreign, "-o", out, fragments=["not a lava-deploy checkpoint"])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _one_line_error(capsys, "export", text, "-o", out, fragments=["cannot read checkpoint"])
    assert not out.exists()
    ckpt = tmp_path / "x.pt"
    _one_line_error(capsys, "train", "--dataset", "imagenet", "-o", ckpt, fragments=["unknown dataset"])
    for flag in ("--time-steps", "--bits"):
        for bits in ("0", "9"):
            _one_line_error(capsys, "train", flag, bits, "-o", ckpt, fragments=["1..8"])
    _one_line_error(capsys, "train", "--model", "mlp", fragments=["required"])
    _one_line_error(capsys, "simulate", trained[1], "--dataset", "mnist5k", fragments=["shape"])
    assert not ckpt.exists()
    assert list(tmp_path.glob(".*tmp")) == []


@pytest.mark.parametrize("signum, code, message", [
    (signal.SIGTERM, 143, "lava-deploy: interrupted by SIGTERM"),
    (signal.SIGHUP, 129, "lava-deploy: interrupted by SIGHUP"),
])
def test_sigterm_and_sighup_end_a_command_the_way_ctrl_c_does(monkeypatch, capsys, signum, code, message):
    """The same way out as Ctrl-C, whose Lava runs test_lifecycle follows to the end: the command's cleanups
    run, one line, exit 128 + the signal's number, and a second signal is ignored."""
    cleaned = []

    def command(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signum)
            time.sleep(30)      # the handler raises in here
        finally:
            os.kill(os.getpid(), signum)    # during cleanup: ignored
            cleaned.append(signum)
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=command)
    monkeypatch.setattr("lava_deploy.cli.build_parser", lambda: parser)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        started = time.monotonic()
        assert main([]) == code
        assert time.monotonic() - started < 20
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert cleaned == [signum]
    assert capsys.readouterr().err.strip().splitlines() == [message]
