"""A NIR graph written by ``lava-deploy export --format nir``, run rate-coded in sinabs (approximate).

NIR has no accumulate-then-emit neuron, so the exported graph carries the
rate-coded reading of the integer network (``docs/nir.md``): integrate-and-fire
neurons that subtract their threshold when they fire and start each sample at
half of it, a constant input current, and logits read as the mean over the
steps of the output's current. NIR's ``IF`` node resets to a value and has no
initial potential, so those two facts travel in each IF node's metadata
(:data:`V_INIT`, :data:`RESET`); the graph's metadata says how the input is
scaled (:data:`INPUT_LEVELS`).

The simulator is sinabs (SynSense), through nirtorch: sinabs's own mapping of
NIR nodes to PyTorch and sinabs layers, wired by nirtorch's graph interpreter.
Two readings of the IF nodes:

* ``qcfs``: sinabs's IAF with one spike per step, subtractive reset, no floor
  under the potential, starting at the node's ``v_init`` (what the export means);
* ``sinabs``: sinabs's own reading of an IF node, as a user importing the file
  gets it (potential from 0, several spikes per step where it exceeds the
  threshold several times, potential floored at minus the threshold).

sinabs and nir are optional (``pip install 'lava-deploy[nir]'``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from lava_deploy.errors import DeployError

if TYPE_CHECKING:     # typing only: nir is optional
    import nir

#: Graph metadata: the input node takes ``codes / INPUT_LEVELS`` (pixels in [0, 1]) as a current every step.
INPUT_LEVELS = "input_levels"
#: Graph metadata: the class names, as a JSON list.
CLASS_NAMES = "class_names"
#: IF node metadata: each neuron's potential at the start of a sample (half its threshold).
V_INIT = "v_init"
#: IF node metadata: ``subtract`` (the threshold is subtracted on a spike; NIR's IF resets to ``v_reset``).
RESET = "reset"

READINGS = ("qcfs", "sinabs")
NIR_EXTRA = "pip install 'lava-deploy[nir]'"


@dataclass
class NirRateResult:
    """A rate-coded run of a NIR graph.

    Attributes:
        logits: ``(N, classes)``, the mean over the steps of the output's current (the integer
            network's logits, approximately).
        time_steps: steps each sample ran.
        spikes_per_sample: spikes of all IF neurons per sample.
        seconds: wall-clock time of the run.
    """

    logits: np.ndarray
    time_steps: int
    spikes_per_sample: float
    seconds: float

    @property
    def predictions(self) -> np.ndarray:
        """argmax of the logits."""
        return self.logits.argmax(axis=1)


def require_nir(simulator: bool = False) -> None:
    """Refuse in one line, before any work, when nir (and with ``simulator`` sinabs) is not installed."""
    try:
        import nir  # noqa: F401
        if simulator:
            import sinabs  # noqa: F401
    except ImportError as exc:
        raise DeployError(f"{'running' if simulator else 'writing'} NIR graphs needs {exc.name}: {NIR_EXTRA}") from None


def read_nir(path: str | Path) -> "nir.NIRGraph":
    """Read a NIR file with NIR's own reader, which checks every edge's types (one-line DeployError)."""
    require_nir()
    import nir
    if not Path(path).is_file():
        raise DeployError(f"NIR file {path} does not exist")
    try:
        return nir.read(path)
    except Exception as exc:  # h5py, KeyError, ValueError: a damaged or foreign file
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeployError(f"cannot read NIR graph {path}: {message}") from None


def class_names(graph: "nir.NIRGraph") -> list[str]:
    """The class names a lava-deploy NIR graph records (empty if none)."""
    names = graph.metadata.get(CLASS_NAMES)
    return json.loads(names) if isinstance(names, str) else []


def run_nir(graph: "nir.NIRGraph | str | Path", codes: np.ndarray, time_steps: int, *, reading: str = "qcfs",
            batch_size: int = 32, progress: Optional[Callable[[int], None]] = None) -> NirRateResult:
    """Run input codes through a lava-deploy NIR graph for ``time_steps`` steps per sample in sinabs.

    Args:
        graph: a graph from :func:`lava_deploy.export.to_nir`, or the path of a file holding one.
        codes: ``(N, C, H, W)`` input codes in 0..``input_levels`` (the graph's metadata).
        time_steps: steps per sample (the rate code's resolution; unrelated to the bit-serial T).
        reading: ``qcfs`` (the export's neurons) or ``sinabs`` (sinabs's own reading of IF nodes).
        batch_size: samples per forward pass (bounds memory: activations are ``batch * steps`` deep).
        progress: called with the number of samples finished after each batch.

    Raises:
        DeployError: nir or sinabs missing, an unreadable file, a graph lava-deploy did not write,
            or bad arguments (one line).
    """
    require_nir(simulator=True)
    import nir
    import nirtorch
    import sinabs.layers as sl
    from sinabs.activation import MembraneSubtract, SingleSpike
    from sinabs.nir import _import_sinabs_module    # sinabs's node mapping (its from_nir wiring is avoided: below)

    if reading not in READINGS:
        raise DeployError(f"unknown NIR reading '{reading}' (choose from {', '.join(READINGS)})")
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise DeployError(f"time steps must be a whole number of at least 1, got {time_steps}")
    if not isinstance(graph, nir.NIRGraph):
        graph = read_nir(graph)
    levels = graph.metadata.get(INPUT_LEVELS)
    neurons = {name: node for name, node in graph.nodes.items() if isinstance(node, nir.IF)}
    if levels is None or any(V_INIT not in node.metadata for node in neurons.values()):
        raise DeployError(f"the NIR graph records no '{INPUT_LEVELS}' or no '{V_INIT}' on its IF nodes: "
                          "not written by lava-deploy export")

    def stock(node: Any) -> torch.nn.Module:
        return _import_sinabs_module(node, batch_size=None, num_timesteps=time_steps)

    def qcfs_if(node: Any) -> torch.nn.Module:
        return sl.IAFSqueeze(spike_threshold=torch.as_tensor(node.v_threshold, dtype=torch.float32),
                             spike_fn=SingleSpike, reset_fn=MembraneSubtract(), min_v_mem=None,
                             num_timesteps=time_steps)

    node_map = {kind: stock for kind in (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.Flatten, nir.SumPool2d,
                                         nir.IF)}
    if reading == "qcfs":
        node_map[nir.IF] = qcfs_if
    # nirtorch's interpreter defers a node until all its inputs exist; sinabs.from_nir's older executor runs
    # nodes depth first, which runs a residual join before one of its branches and drops that branch.
    model = nirtorch.nir_to_torch(graph, node_map).eval()
    layers = {name: model.get_submodule(name) for name in neurons}
    spikes = [0.0]
    for layer in layers.values():
        layer.register_forward_hook(lambda _module, _input, out: spikes.__setitem__(0, spikes[0] + float(out.sum())))
    codes = np.asarray(codes)
    logits = []
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(codes), batch_size):
            batch = torch.from_numpy(codes[first:first + batch_size].astype(np.float32) / float(levels))
            n = len(batch)
            for name, layer in layers.items():
                layer.reset_states()
                if reading == "qcfs":
                    layer.init_state_with_shape((n, *neurons[name].v_threshold.shape))
                    layer.v_mem.copy_(torch.as_tensor(neurons[name].metadata[V_INIT]).expand_as(layer.v_mem))
            # sinabs's squeezed layers take samples x steps as one batch dimension, sample-major
            steps = batch.unsqueeze(1).expand(n, time_steps, *batch.shape[1:]).flatten(0, 1)
            out, _ = model(steps)
            logits.append(out.reshape(n, time_steps, -1).double().mean(dim=1).numpy())
            if progress:
                progress(n)
    seconds = time.perf_counter() - start
    return NirRateResult(np.concatenate(logits), time_steps, spikes[0] / max(len(codes), 1), seconds)
