"""The CLI end to end on real data, and its one-line errors with exit code 2."""
import json
import subprocess
import sys

import pytest
import torch

from lava_deploy.cli import main

CLI = [sys.executable, "-m", "lava_deploy"]


def _run(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits MLP trained briefly through the CLI, and its export."""
    d = tmp_path_factory.mktemp("cli")
    ckpt, net = d / "mlp.pt", d / "mlp.net"
    assert main(["train", "--model", "mlp", "--dataset", "digits", "--bits", "2", "--epochs", "3",
                 "--seed", "0", "-q", "-o", str(ckpt)]) == 0
    assert main(["export", str(ckpt), "-o", str(net)]) == 0
    return ckpt, net


def test_train_export_simulate_reference(trained, capsys):
    _, net = trained
    assert main(["simulate", str(net), "--backend", "reference", "--dataset", "digits", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "reference" and summary["samples"] == 360
    assert summary["accuracy"] > 0.8
    assert summary["steps_per_sample"] == 2 and summary["spikes_per_sample"] > 0


def test_training_is_deterministic(trained, tmp_path):
    ckpt, _ = trained
    again = tmp_path / "again.pt"
    assert main(["train", "--model", "mlp", "--dataset", "digits", "--bits", "2", "--epochs", "3",
                 "--seed", "0", "-q", "-o", str(again)]) == 0
    first, second = torch.load(ckpt, weights_only=False), torch.load(again, weights_only=False)
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_inputs_are_one_line_errors_and_leave_no_file(tmp_path, trained):
    out = tmp_path / "out.net"
    _assert_one_line_error(_run("export", str(tmp_path / "missing.pt"), "-o", str(out)), "does not exist")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained[0].read_bytes()[:300])
    _assert_one_line_error(_run("export", str(corrupt), "-o", str(out)), "cannot read checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    _assert_one_line_error(_run("export", str(foreign), "-o", str(out)), "not a lava-deploy checkpoint")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _assert_one_line_error(_run("export", str(text), "-o", str(out)), "cannot read checkpoint")
    assert not out.exists()
    ckpt = tmp_path / "x.pt"
    _assert_one_line_error(_run("train", "--dataset", "imagenet", "-o", str(ckpt)), "unknown dataset")
    for bits in ("0", "9"):
        _assert_one_line_error(_run("train", "--bits", bits, "-o", str(ckpt)), "1..8")
    _assert_one_line_error(_run("train", "--model", "mlp"), "required")
    _assert_one_line_error(_run("simulate", str(trained[1]), "--dataset", "mnist5k"), "shape")
    assert not ckpt.exists()
    assert list(tmp_path.glob(".*tmp")) == []
