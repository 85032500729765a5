"""The Loihi 2 backend: the same Processes on a chip, through Intel's lava-loihi (INRC only).

It follows lava-dl's tutorials: lava-loihi is detected with ``lava.utils.loihi``,
the run uses ``Loihi2HwCfg``, and the host-side source and sink reach the chip
through the embedded I/O adapters (``PyToNxAdapter`` / ``NxToPyAdapter``). The
synapses (Dense, Conv) have NeuroCore models in lava-loihi. The accumulate-emit
neuron needs one too (microcode written with lava-loihi's closed API); lava-deploy
does not ship it, so the backend refuses to start until one is registered
beside the neuron's Process, rather than run it anywhere but the chip.
Nothing here has run on silicon yet: see hardware/README.md.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lava_deploy.errors import DeployError
from lava_deploy.simulate.backend import register_backend
from lava_deploy.simulate.lava_cpu import LavaCpuBackend

#: The one line a user without lava-loihi gets.
LAVA_LOIHI_MISSING = "the Loihi 2 backend needs Intel's lava-loihi (INRC); use --backend lava-cpu"


def lava_loihi_installed() -> bool:
    """True when Intel's lava-loihi extension can be imported (as ``lava.utils.loihi`` checks)."""
    try:
        from lava.utils import loihi
    except ImportError:
        return False
    return bool(loihi.is_installed())


def neurocore_models() -> list[type]:
    """ProcessModels of the accumulate-emit neuron that run on a Loihi 2 NeuroCore.

    Lava's compiler finds models beside a Process (and in namespace packages
    extending its folder), which is where an INRC user's microcode model goes.
    """
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    from lava.magma.core.resources import Loihi2NeuroCore

    from lava_deploy.simulate.lava_cpu.process.process import AccumulateEmit

    probe = AccumulateEmit(shape=(1,), bias=np.zeros(1), vth=1, clamp=1, time_steps=1, accumulate_shift=1, first_step=1,
                           readout=False, num_samples=1)
    return [model for model in ProcGroupDiGraphs._find_proc_models(probe)
            if any(issubclass(r, Loihi2NeuroCore) for r in getattr(model, "required_resources", []))]


def require_loihi2() -> None:
    """Raise a one-line DeployError unless lava-loihi and a NeuroCore model of the neuron are present."""
    if not lava_loihi_installed():
        raise DeployError(LAVA_LOIHI_MISSING)
    if not neurocore_models():
        raise DeployError("lava-loihi is installed, but the accumulate-emit neuron has no Loihi 2 NeuroCore model "
                          "registered (lava-deploy ships CPU models only): see hardware/README.md, 'Neuron model'")


def hardware_run_config(partition: Optional[str] = None):
    """``Loihi2HwCfg`` as lava-dl's tutorials use it, on the SLURM partition given (or the scheduler's choice)."""
    from lava.magma.core.run_configs import Loihi2HwCfg
    from lava.utils import loihi, slurm

    if partition or slurm.is_available():
        loihi.use_slurm_host(partition=partition)
    return Loihi2HwCfg(select_tag="fixed_pt")


@register_backend
class Loihi2Backend(LavaCpuBackend):
    """The Lava network on a Loihi 2 chip; logits and predictions only (the chip's spikes are not recorded)."""

    name = "loihi2"
    records_spikes = False
    runs_stock_netx = False
    on_chip = True

    def require(self) -> None:
        """lava-loihi and a NeuroCore model of the neuron, or one line."""
        require_loihi2()
