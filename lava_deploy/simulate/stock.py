"""Stock lava-dl netx networks: their input (spike frames, or the input neurons' bias), checked before any
work, and what a run of one returns.

Two ways in, as lava-dl itself feeds its networks (array layouts in Lava's
(x, y, c) order, ``StockNetwork.input_shape``):

- spikes on the network's input port, ``(steps, *input shape)``: frame t - 1
  arrives at step t; without message bits netx's synapses take any nonzero
  value as one spike, as lava-nc's own models do;
- a network whose first layer is an input neuron layer takes its input
  through those neurons' bias mantissa (``bias_mant``), as lava-dl's tutorials
  and tests set it: ``(steps, *shape)`` a new bias every step, or ``shape`` one
  bias held for ``steps`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from lava_deploy.errors import DeployError
from lava_deploy.network.netx_stock import StockNetwork

#: Lava's bit-accurate LIF keeps ``bias_mant`` in 16 bits (Loihi's own register is 13): a larger value would wrap.
BIAS_MIN, BIAS_MAX = -(1 << 15), (1 << 15) - 1
#: Input spike values travel as Lava's int32 messages.
SPIKE_MIN, SPIKE_MAX = -(1 << 31), (1 << 31) - 1
#: Most bytes the records of one run may take on disk (int32 per neuron and step).
RECORD_BUDGET_BYTES = 1 << 32


@dataclass(frozen=True)
class StockInput:
    """What drives a stock network for ``steps`` steps.

    Attributes:
        kind: ``spikes`` (frames on the input port) or ``bias`` (the input neurons' ``bias_mant``).
        frames: int32 ``(steps, *input shape)``; for a held bias, ``input shape`` alone.
        steps: steps to run.
        held: one bias for every step (set once, as lava-dl's tests set it) rather than a frame per step.
    """

    kind: str
    frames: np.ndarray
    steps: int
    held: bool = False


@dataclass
class StockResult:
    """A stock network's run: output spikes, every layer's on request, and its times.

    Attributes:
        backend: which backend ran it.
        output: ``(steps, *output shape)`` int32, Lava's order: the output port's value at each step.
        layers: ``layer_N`` (the file's ``layer/N``) -> ``(steps, *shape)`` of every block netx built, when recorded.
        steps: steps run.
        simulation_seconds: the steps alone (Lava's compilation and start-up excluded).
        wall_seconds: the whole call (start-up, compilation, the steps, reading the records).
    """

    backend: str
    output: np.ndarray
    layers: Optional[dict[str, np.ndarray]]
    steps: int
    simulation_seconds: float
    wall_seconds: float

    def summary(self) -> dict:
        """The JSON-ready figures (``lava-deploy simulate NET --input-spikes ... --json``)."""
        return {
            "backend": self.backend,
            "steps": self.steps,
            "simulation_seconds": self.simulation_seconds,
            "seconds_per_step": self.simulation_seconds / max(self.steps, 1),
            "wall_seconds": self.wall_seconds,
            "output_spikes": int(np.count_nonzero(self.output)),
            "spikes_per_layer": None if self.layers is None else
            {name: int(np.count_nonzero(spikes)) for name, spikes in self.layers.items()},
        }


def stock_input(network: StockNetwork, *, spikes: Optional[np.ndarray | str | Path] = None,
                bias: Optional[np.ndarray | str | Path] = None, steps: Optional[int] = None) -> StockInput:
    """Check the input the user gave a stock network against what the network takes, before any work.

    Args:
        network: the network's description.
        spikes: ``(steps, *input shape)`` spike frames, or a .npy path.
        bias: the input neurons' bias, ``(steps, *shape)`` or ``shape`` held for ``steps`` steps; or a .npy path.
        steps: steps to hold a single bias frame (only then).

    Raises:
        DeployError: one line saying what the network takes, in which layout.
    """
    flag, shape = network.input_flag, network.input_shape
    given = "--input-bias" if bias is not None else "--input-spikes" if spikes is not None else None
    if given is None:
        raise DeployError(f"{network.path.name} is a stock netx network: give its input with {flag} FILE.npy, "
                          f"{_layout(network)}")
    if spikes is not None and bias is not None:
        raise DeployError("give --input-spikes or --input-bias, not both")
    if given != flag:
        why = ("its first layer is an input neuron layer, which lava-dl feeds through the neurons' bias"
               if network.input_neurons else "it has no input neuron layer whose bias could take the input")
        raise DeployError(f"{network.path.name}: {given} does not fit this network ({why}): give {flag} FILE.npy, "
                          f"{_layout(network)}")
    frames = _integers(spikes if spikes is not None else bias, given)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise DeployError(f"--steps must be a whole number of at least 1, got {steps}")
    if spikes is not None:
        if steps is not None:
            raise DeployError("--steps holds an --input-bias; input spikes run for as many steps as they have frames")
        if frames.ndim != len(shape) + 1 or tuple(frames.shape[1:]) != shape or not len(frames):
            raise DeployError(f"input spikes have shape {frames.shape}; {network.path.name} takes {_layout(network)}")
        _check_range(frames, SPIKE_MIN, SPIKE_MAX, "input spikes", "Lava's 32-bit messages")
        return StockInput("spikes", frames.astype(np.int32), len(frames))
    held = tuple(frames.shape) == shape
    if held:
        if steps is None:
            raise DeployError(f"an input bias of shape {shape} is held for --steps N steps: give --steps")
    elif frames.ndim == len(shape) + 1 and tuple(frames.shape[1:]) == shape and len(frames):
        if steps is not None and steps != len(frames):
            raise DeployError(f"the input bias has {len(frames)} frames, one per step; --steps {steps} differs")
        steps = len(frames)
    else:
        raise DeployError(f"input bias has shape {frames.shape}; {network.path.name} takes {_layout(network)}")
    _check_range(frames, BIAS_MIN, BIAS_MAX, "input bias", "Lava's 16-bit bias_mant")
    return StockInput("bias", frames.astype(np.int32), steps, held)


def check_record_size(network: StockNetwork, steps: int, record_layers: bool) -> None:
    """Refuse a run whose records (int32 per neuron and step) would take more than RECORD_BUDGET_BYTES."""
    neurons = sum(layer.size for layer in network.layers) if record_layers else network.layers[-1].size
    if 4 * steps * neurons > RECORD_BUDGET_BYTES:
        raise DeployError(f"{steps} steps of {neurons} recorded neurons would take {4 * steps * neurons} bytes, "
                          f"more than {RECORD_BUDGET_BYTES}: run fewer steps"
                          + (" or leave out --record-layers" if record_layers else ""))


def _layout(network: StockNetwork) -> str:
    shape = network.input_shape
    if network.input_neurons:
        return f"(steps, {', '.join(map(str, shape))}) a bias per step, or {shape} held with --steps N"
    return f"(steps, {', '.join(map(str, shape))}) in Lava's (x, y, c) order" if len(shape) == 3 \
        else f"(steps, {', '.join(map(str, shape))})"


def _integers(source: np.ndarray | str | Path, flag: str) -> np.ndarray:
    """The user's array: integers, or floats holding whole numbers (lava-dl's own input files are float64)."""
    data = source if isinstance(source, np.ndarray) else load_npy(Path(source))
    if data.dtype.kind == "b":
        return data.astype(np.int64)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or (data != np.round(data)).any():
            raise DeployError(f"{flag}: values must be whole numbers")
        return data.astype(np.float64)
    if data.dtype.kind not in "iu":
        raise DeployError(f"{flag}: an array of integers is needed, not {data.dtype}")
    return data


def _check_range(data: np.ndarray, low: int, high: int, what: str, why: str) -> None:
    if data.size and (data.min() < low or data.max() > high):
        raise DeployError(f"{what} hold values outside {low}..{high} ({why})")


def load_npy(path: Path) -> np.ndarray:
    """A .npy file, never unpickled, its header checked against the file's size before anything is read."""
    if not path.is_file():
        raise DeployError(f"input file {path} does not exist")
    try:
        # Mapped first: a header that declares more than the file holds fails here, before any allocation.
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path.name}: not a .npy array ({str(exc).splitlines()[0]})") from None
