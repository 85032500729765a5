"""The loihi2 backend refuses in one line, exit 2, nothing run or written, unless it can run: with lava-loihi or not."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lava_deploy.cli import main
from lava_deploy.errors import DeployError
from lava_deploy.simulate import loihi2, simulate

SHIPPED = Path(__file__).resolve().parents[1] / "netx_models" / "digits-mlp-t3" / "model.net"
NO_NEUROCORE_MODEL = "no Loihi 2 NeuroCore model registered"


def _refusal() -> str:
    """What ``--backend loihi2`` says here, from what this environment has; skip where the backend would run."""
    if not loihi2.lava_loihi_installed():
        return loihi2.LAVA_LOIHI_MISSING
    if not loihi2.neurocore_models():
        return NO_NEUROCORE_MODEL
    pytest.skip("lava-loihi and a NeuroCore model of the neuron are here: the backend runs (see hardware/)")


@pytest.mark.parametrize("installed", [True, False])
def test_detection_follows_lava(monkeypatch, installed):
    from lava.utils import loihi

    monkeypatch.setattr(loihi, "is_installed", lambda *args, **kwargs: installed)
    assert loihi2.lava_loihi_installed() is installed


@pytest.mark.parametrize("verb", ["simulate", "compare"])
def test_cli_says_one_line_and_exits_2(verb, capsys, tmp_path):
    expected = _refusal()
    assert main([verb, str(SHIPPED), "--backend", "loihi2", "--plots" if verb == "compare" else "-q",
                 *([str(tmp_path / "plots")] if verb == "compare" else [])]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("lava-deploy: error: ")
    assert captured.err.count("\n") == 1 and expected in captured.err
    assert not (tmp_path / "plots").exists()


def test_python_api_raises_before_reading_anything():
    with pytest.raises(DeployError, match=re.escape(_refusal())):
        simulate("no-such-file.net", backend="loihi2")


def test_without_lava_loihi_that_is_all_the_user_sees(monkeypatch):
    monkeypatch.setattr(loihi2, "lava_loihi_installed", lambda: False)
    with pytest.raises(DeployError, match=f"^{re.escape(loihi2.LAVA_LOIHI_MISSING)}$"):
        loihi2.require_loihi2()


def test_with_lava_loihi_but_no_neurocore_model_of_the_neuron(monkeypatch):
    monkeypatch.setattr(loihi2, "lava_loihi_installed", lambda: True)
    monkeypatch.setattr(loihi2, "neurocore_models", lambda: [])
    with pytest.raises(DeployError, match=NO_NEUROCORE_MODEL):
        loihi2.require_loihi2()


def test_model_discovery_sees_the_cpu_models_and_ships_no_neurocore_model():
    """The search Lava's compiler does finds our CPU models; none of lava-deploy's own is for a NeuroCore."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs

    from lava_deploy.simulate.lava_cpu.process.process import AccumulateEmit

    probe = AccumulateEmit(shape=(1,), bias=np.zeros(1), vth=1, clamp=1, time_steps=1, accumulate_shift=1, first_step=1,
                           readout=False, num_samples=1)
    found = ProcGroupDiGraphs._find_proc_models(probe)
    ours = {f"{m.__module__}.{m.__qualname__}" for m in found if m.__module__.startswith("lava_deploy.")}
    assert len(ours) >= 2                       # fixed_pt and floating_pt
    neurocore = {f"{m.__module__}.{m.__qualname__}" for m in loihi2.neurocore_models()}
    assert neurocore <= {f"{m.__module__}.{m.__qualname__}" for m in found} and not neurocore & ours
