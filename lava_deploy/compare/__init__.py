"""Compare: the same samples through the integer reference and Lava (CPU or Loihi 2), spike for spike."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lava_deploy.network import SpikingNetwork
from lava_deploy.errors import DeployError
from lava_deploy.compare import plots
from lava_deploy.files import check_output_folder
from lava_deploy.simulate import BACKENDS, SimulationResult, get_backend, load_network, require_run, simulate
from lava_deploy.simulate.reference import ReferenceBackend

REFERENCE = ReferenceBackend.name


@dataclass
class Comparison:
    """Both backends' results on the same samples, and how far they agree."""

    network: SpikingNetwork
    reference: SimulationResult
    lava: SimulationResult
    source: Optional[Path] = None

    @property
    def prediction_agreement(self) -> float:
        """Fraction of samples with the same predicted class."""
        return float((self.reference.predictions == self.lava.predictions).mean())

    @property
    def logit_agreement(self) -> float:
        """Fraction of samples whose logits are identical integers."""
        return float((self.reference.logits == self.lava.logits).all(axis=1).mean())

    @property
    def spike_agreement(self) -> Optional[float]:
        """Fraction of identical spikes (and silences) over all layers, samples and steps (None: not recorded);
        graded, of identical payloads."""
        if self.lava.spikes is None:
            return None
        same = sum(int((r == s).sum()) for r, s in zip(self.reference.spikes, self.lava.spikes))
        total = sum(r.size for r in self.reference.spikes)
        return same / total if total else 1.0

    def summary(self) -> dict:
        """JSON-ready figures (``lava-deploy compare --json``)."""
        backends = {"reference": self.reference, self.lava.backend.replace("-", "_"): self.lava}
        return {
            "samples": len(self.reference.labels),
            "time_steps": self.network.time_steps,
            "encoding": self.network.encoding,
            "accuracy": {name: r.accuracy for name, r in backends.items()},
            "float_test_accuracy": self.network.metadata.get("float_test_accuracy"),
            "prediction_agreement": self.prediction_agreement,
            "logit_agreement": self.logit_agreement,
            "spike_agreement": self.spike_agreement,
            "spikes_per_sample": {name: r.spikes_per_sample for name, r in backends.items()},
            "spikes_per_layer": {name: r.spikes_per_layer for name, r in backends.items()},
            "latency_steps": {name: r.latency_steps for name, r in backends.items()},
            "steps_per_sample": {name: r.steps_per_sample for name, r in backends.items()},
            "seconds_per_sample": {name: r.wall_seconds / max(len(r.labels), 1) for name, r in backends.items()},
        }

    def table(self) -> str:
        """The comparison as a plain-text table."""
        s, other = self.summary(), self.lava.backend.replace("-", "_")
        rows = [("", "reference", self.lava.backend)]
        for key, fmt in (("accuracy", "{:.4f}"), ("spikes_per_sample", "{:.1f}"), ("latency_steps", "{}"),
                         ("steps_per_sample", "{}"), ("seconds_per_sample", "{:.5f}")):
            rows.append((key.replace("_", " "), *(fmt.format(v) if v is not None else "not recorded"
                                                  for v in (s[key]["reference"], s[key][other]))))
        width = max(len(r[0]) for r in rows)
        lines = [f"{r[0]:<{width}}  {r[1]:>10}  {r[2]:>12}" for r in rows]
        lines.append(f"{'prediction agreement':<{width}}  {s['prediction_agreement']:>10.4f}")
        spikes = s["spike_agreement"]
        lines.append(f"{'spike agreement':<{width}}  " + (f"{spikes:>10.6f}" if spikes is not None else
                                                           f"{'not recorded on ' + self.lava.backend:>10}"))
        lines.append(f"{'identical logits':<{width}}  {s['logit_agreement']:>10.4f}")
        lines.append(f"samples: {s['samples']}, T = {s['time_steps']}, {s['encoding']} spikes")
        return "\n".join(lines)


def compare(network: SpikingNetwork | str | Path, dataset: Optional[str] = None, samples: Optional[int] = None,
            progress: Optional[Callable[[int], None]] = None, backend: str = "lava-cpu",
            partition: Optional[str] = None, workers: Optional[int] = None,
            ray_address: Optional[str] = None) -> Comparison:
    """Run the integer reference and a Lava backend on the same test samples.

    Args:
        network: converted network or netx file path.
        dataset: dataset spec whose test split feeds both backends; None: the one the network's metadata records.
        samples: number of test samples (all when None).
        progress: called with samples finished while Lava runs.
        backend: any registered backend but the reference itself: every spike is compared where it
            records spikes (``lava-cpu``), else logits and predictions (``loihi2``).
        partition: a chip backend's SLURM partition.
        workers, ray_address: run the other backend in shards, in parallel here or on Ray
            (:func:`~lava_deploy.simulate.simulate`); the reference runs whole.
    """
    if get_backend(backend).name == REFERENCE:
        raise DeployError(f"compare runs the reference against another backend: "
                          f"{', '.join(name for name in BACKENDS if name != REFERENCE)}")
    other = require_run(backend, workers, ray_address)
    source = None
    if not isinstance(network, SpikingNetwork):
        source = Path(network)
        network = load_network(network)
    reference = simulate(network, dataset, "reference", samples, record_spikes=True)
    lava = simulate(network, dataset, backend, samples, record_spikes=other.records_spikes, progress=progress,
                    partition=partition, workers=workers, ray_address=ray_address)
    if not np.array_equal(reference.labels, lava.labels):
        raise RuntimeError("Lava returned the samples' labels out of order: its pipeline is misaligned")
    return Comparison(network, reference, lava, source)


#: Figures of the same architecture trained at several T, written by netx_models/build.py beside a model.
FAMILY_FILE = "family.json"
_FAMILY_KEYS = {"time_steps": int, "float_test_accuracy": (int, float), "reference_test_accuracy": (int, float)}


def _read_family(path: Path) -> list[dict]:
    """The model family file, checked: a list of objects with T and both accuracies (one line if not)."""
    try:
        family = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(family, list) or not family or not all(
            isinstance(m, dict) and all(isinstance(m.get(k), t) and not isinstance(m.get(k), bool)
                                        for k, t in _FAMILY_KEYS.items())
            and isinstance(m.get("spikes_per_sample", 0.0), (int, float, type(None))) for m in family):
        raise DeployError(f"{path}: expected a list of objects with {', '.join(_FAMILY_KEYS)}")
    return family


def write_plots(comparison: Comparison, folder: str | Path, sample: int = 0) -> list[Path]:
    """accuracy_vs_time_steps.png, spikes_per_layer.png and raster.png (one sample, Lava's spikes) in ``folder``.

    Without Lava's spikes (a Loihi 2 run), the spike plots show the reference's.

    The accuracy plot uses the model family in ``family.json`` beside the network
    file when there is one (the shipped models have it); otherwise it shows
    this model's own point.
    """
    folder = check_output_folder(folder)
    T = comparison.network.time_steps
    family_file = comparison.source.parent / FAMILY_FILE if comparison.source else None
    title = "Accuracy against time steps"
    if family_file is not None and family_file.is_file():
        family = _read_family(family_file)
        meta = comparison.network.metadata
        title += f" ({meta.get('dataset', '')} {meta.get('model', '')} family)"
    else:
        family = [{"time_steps": T, "float_test_accuracy": comparison.network.metadata.get("float_test_accuracy",
                                                                                           float("nan")),
                   "reference_test_accuracy": comparison.reference.accuracy,
                   "spikes_per_sample": comparison.reference.spikes_per_sample}]
        title += " (this model only)"
    lava_point = (T, comparison.lava.accuracy, len(comparison.lava.labels))
    with_spikes = [r for r in (comparison.reference, comparison.lava) if r.spikes is not None]
    return [plots.plot_accuracy_vs_time_steps(family, folder / "accuracy_vs_time_steps.png", lava_point,
                                              title=title),
            plots.plot_spikes_per_layer(with_spikes, folder / "spikes_per_layer.png"),
            plots.plot_raster(comparison.network, with_spikes[-1].spikes, sample, folder / "raster.png")]
