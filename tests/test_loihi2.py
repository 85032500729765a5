"""The loihi2 backend where lava-loihi is absent: one line, exit 2, nothing run, nothing written."""
from __future__ import annotations

import numpy as np
import pytest

from lava_deploy.cli import main
from lava_deploy.errors import DeployError
from lava_deploy.simulate import loihi2, simulate

SHIPPED = "netx_models/digits-mlp-t3/model.net"
MISSING = "lava-deploy: error: the Loihi 2 backend needs Intel's lava-loihi (INRC); use --backend lava-cpu\n"


def test_lava_loihi_is_not_installed_here():
    assert not loihi2.lava_loihi_installed()


@pytest.mark.parametrize("verb", ["simulate", "compare"])
def test_cli_says_one_line_and_exits_2(verb, capsys, tmp_path):
    assert main([verb, SHIPPED, "--backend", "loihi2", "--plots" if verb == "compare" else "-q",
                 *([str(tmp_path / "plots")] if verb == "compare" else [])]) == 2
    captured = capsys.readouterr()
    assert captured.err == MISSING and captured.out == ""
    assert not (tmp_path / "plots").exists()


def test_python_api_raises_before_reading_anything():
    with pytest.raises(DeployError, match="needs Intel's lava-loihi"):
        simulate("no-such-file.net", backend="loihi2")


def test_with_lava_loihi_but_no_neurocore_model_of_the_neuron(monkeypatch):
    monkeypatch.setattr(loihi2, "lava_loihi_installed", lambda: True)
    with pytest.raises(DeployError, match="no Loihi 2 NeuroCore model registered"):
        loihi2.require_loihi2()


def test_model_discovery_sees_the_cpu_models_but_no_neurocore_model():
    """The search Lava's compiler does finds our CPU models; none of them is for a NeuroCore."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs

    from lava_deploy.simulate.lava_cpu.process.process import AccumulateEmit

    probe = AccumulateEmit(shape=(1,), bias=np.zeros(1), vth=1, clamp=1, time_steps=1, accumulate_shift=1, phase=1,
                           readout=False, num_samples=1)
    found = {model.__name__ for model in ProcGroupDiGraphs._find_proc_models(probe)}
    assert len(found) >= 2                      # fixed_pt and floating_pt
    assert loihi2.neurocore_models() == []
