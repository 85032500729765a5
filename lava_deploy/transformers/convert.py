"""Calibrate, convert, and run a converted Transformer on labeled batches: accuracy, spikes, operations per T."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from lava_deploy.errors import DeployError
from lava_deploy.transformers.encoder import Batch, TransformerClassifier
from lava_deploy.transformers.ops import AnnOps
from lava_deploy.transformers.spiking import (ENERGY_AC_PJ, ENERGY_MAC_PJ, METHODS, NeuronGroup, SpikingOps,
                                              StepCounts)

#: Base thresholds: this percentile of each neuron's absolute activation in calibration.
PERCENTILE = 99.0
#: Thresholds per side of a multi-threshold neuron (the published setup; 6 for very large models).
LEVELS = 8
#: Neurons per universal group operator.
GROUP_SIZE = 64
#: Time steps of one run: every T up to it comes out of it.
MAX_STEPS = 16


@dataclass
class Calibration:
    """What a few ANN batches tell the conversions: thresholds per neuron site; per piece, its inputs' range and
    a random sample of them."""

    thresholds: dict[str, torch.Tensor]
    ranges: dict[str, list[float]]
    percentile: float
    samples: int
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


@torch.no_grad()
def calibrate(classifier: TransformerClassifier, batches: Iterable[Batch], percentile: float = PERCENTILE) -> Calibration:
    """Run the ANN on ``batches``; base thresholds from the ``percentile`` of every neuron's activation."""
    ops, samples = AnnOps(calibrate=True), 0
    for batch in batches:
        classifier.logits(ops, batch)
        samples += len(batch.token_valid)
    if not samples:
        raise DeployError("calibration needs at least one batch")
    return Calibration(ops.thresholds(percentile), dict(ops.ranges), percentile, samples, ops.piece_inputs())


@dataclass
class SpikingTransformer:
    """A classifier converted by one method: what its spiking ops need."""

    classifier: TransformerClassifier
    method: str
    calibration: Calibration
    levels: int = LEVELS
    group_size: int = GROUP_SIZE
    groups: Optional[dict[str, NeuronGroup]] = None

    def ops(self, steps: int) -> SpikingOps:
        """Fresh spiking ops for a run of ``steps`` steps."""
        ops = SpikingOps(self.method, self.calibration.thresholds, self.levels, self.groups, self.group_size)
        ops.start(steps)
        return ops

    @torch.no_grad()
    def run(self, batch: Batch, steps: int = MAX_STEPS) -> tuple[torch.Tensor, StepCounts]:
        """Simulate ``steps`` steps on ``batch``: the logits after each T (steps, B, classes) and the counts.

        The classification layer keeps analog input: it reads the running mean of
        the pooled final state, so the logits after T steps are the mean of the
        head's per-step outputs.
        """
        ops = self.ops(steps)
        total, logits = 0, []
        for t, hidden in enumerate(self.steps(ops, self.classifier.embed(batch), batch.token_valid), start=1):
            total = total + self.classifier.head(self.classifier.pool(hidden, batch.token_valid))
            logits.append(total / t)
        return torch.stack(logits), ops.counts

    def steps(self, ops: SpikingOps, x: torch.Tensor, token_valid: torch.Tensor) -> Iterator[torch.Tensor]:
        """The encoder's output at each step of ``ops``'s run, from the embedding current ``x``; times each step."""
        for t in range(1, ops.counts.steps + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            ops.step()
            yield self.classifier.hidden(ops, x, token_valid)
            ops.counts.add("seconds", "wall", t, time.perf_counter() - wall)
            ops.counts.add("seconds", "cpu", t, time.process_time() - cpu)

    @torch.no_grad()
    def trace(self, x: torch.Tensor, token_valid: torch.Tensor, steps: int) -> torch.Tensor:
        """The encoder's output at every step (steps, B, tokens, hidden) from the embedding current ``x``."""
        return torch.stack(list(self.steps(self.ops(steps), x, token_valid)))


def convert(classifier: TransformerClassifier, calibration: Calibration, method: str, levels: int = LEVELS,
            group_size: int = GROUP_SIZE) -> SpikingTransformer:
    """The spiking form of ``classifier`` by ``method``: ``ec`` (expectation compensation, ``levels``
    thresholds per side) or ``sta`` (spatio-temporal approximation, groups of ``group_size`` neurons fitted
    to each non-linear piece over its calibrated range, half its knots where its calibration inputs lie)."""
    if method not in METHODS:
        raise DeployError(f"unknown conversion method '{method}' (choose from {', '.join(METHODS)})")
    if not 1 <= levels <= 16:
        raise DeployError(f"levels must be 1..16, not {levels}")
    groups = None
    if method == "sta":
        if group_size < 2:
            raise DeployError(f"a neuron group needs at least 2 neurons, not {group_size}")
        groups = {key: NeuronGroup.fit(key.rsplit(".", 1)[1], low, high, group_size, calibration.inputs.get(key))
                  for key, (low, high) in calibration.ranges.items()}
    return SpikingTransformer(classifier, method, calibration, levels, group_size, groups)


@dataclass
class ConversionResult:
    """A converted classifier on labeled samples: per-T logits, the ANN's, and the operation counts.

    ``counts`` are summed over samples; ``ann_macs`` and ``ann_adds`` are the ANN's totals on the same samples.
    """

    method: str
    labels: np.ndarray
    ann_logits: np.ndarray
    logits: np.ndarray          # (steps, N, classes)
    counts: StepCounts
    ann_macs: float
    ann_adds: float

    @property
    def steps(self) -> int:
        """Time steps simulated."""
        return self.logits.shape[0]

    @property
    def ann_accuracy(self) -> float:
        """The ANN's accuracy on these samples."""
        return float((self.ann_logits.argmax(1) == self.labels).mean())

    def accuracy(self, t: int) -> float:
        """Accuracy of the spiking network after ``t`` steps."""
        return float((self.logits[t - 1].argmax(1) == self.labels).mean())

    def agreement(self, t: int) -> float:
        """Fraction of samples where the spiking network after ``t`` steps predicts what the ANN predicts."""
        return float((self.logits[t - 1].argmax(1) == self.ann_logits.argmax(1)).mean())

    def seconds(self, t: int) -> tuple[float, float]:
        """(wall, CPU) seconds the spiking simulation took for its first ``t`` steps, the ANN's excluded."""
        return tuple(float(self.counts.seconds[clock][:t].sum()) for clock in ("wall", "cpu"))

    def logit_error(self, t: int) -> float:
        """Mean absolute difference from the ANN's logits after ``t`` steps."""
        return float(np.abs(self.logits[t - 1] - self.ann_logits).mean())

    def operations(self, t: int) -> tuple[float, float, float]:
        """(spikes, additions, multiplications) per sample over the first ``t`` steps."""
        n = len(self.labels)
        return tuple(sum(float(v[:t].sum()) for v in getattr(self.counts, kind).values()) / n
                     for kind in ("spikes", "adds", "mults"))

    def energy_ratio(self, t: int) -> float:
        """Energy of ``t`` steps over the ANN's: (0.9 pJ per addition + 4.6 pJ per multiplication) over the same
        for the ANN's MACs and additions."""
        _, adds, mults = self.operations(t)
        n = len(self.labels)
        ann = (ENERGY_MAC_PJ * self.ann_macs + ENERGY_AC_PJ * self.ann_adds) / n
        return (ENERGY_AC_PJ * adds + ENERGY_MAC_PJ * mults) / ann

    def per_layer(self, t: int) -> dict[str, dict[str, float]]:
        """Spikes, additions and multiplications per sample over ``t`` steps, by encoder layer."""
        n, out = len(self.labels), {}
        for kind in ("spikes", "adds", "mults"):
            for site, values in getattr(self.counts, kind).items():
                layer = site.split(".")[0]
                entry = out.setdefault(layer, {"spikes": 0.0, "adds": 0.0, "mults": 0.0})
                entry[kind] += float(values[:t].sum()) / n
        return out

    def summary(self, steps: Iterable[int]) -> dict:
        """A JSON-ready table: ANN accuracy, then per T accuracy, agreement, logit error, operations, energy."""
        rows = []
        for t in steps:
            spikes, adds, mults = self.operations(t)
            rows.append({"T": t, "accuracy": self.accuracy(t), "agreement": self.agreement(t),
                         "logit_error": self.logit_error(t), "spikes_per_sample": spikes,
                         "additions_per_sample": adds, "multiplications_per_sample": mults,
                         "energy_ratio": self.energy_ratio(t), "wall_seconds": self.seconds(t)[0],
                         "cpu_seconds": self.seconds(t)[1]})
        n = len(self.labels)
        return {"method": self.method, "samples": n, "ann_accuracy": self.ann_accuracy,
                "ann_macs_per_sample": self.ann_macs / n, "ann_additions_per_sample": self.ann_adds / n,
                "rows": rows}


def evaluate(spiking: SpikingTransformer, batches: Iterable[tuple[Batch, np.ndarray]], steps: int = MAX_STEPS,
             progress: Optional[Callable[[int], None]] = None) -> ConversionResult:
    """Run the ANN and the spiking network (``steps`` steps, once) on every (batch, labels)."""
    labels, ann, logits = [], [], []
    counts, ann_ops = StepCounts(steps), AnnOps()
    with torch.no_grad():
        for batch, batch_labels in batches:
            ann.append(spiking.classifier.logits(ann_ops, batch).numpy())
            step_logits, batch_counts = spiking.run(batch, steps)
            logits.append(step_logits.numpy())
            counts.merge(batch_counts)
            labels.append(np.asarray(batch_labels))
            if progress:
                progress(len(batch_labels))
    if not labels:
        raise DeployError("no samples to evaluate")
    return ConversionResult(spiking.method, np.concatenate(labels), np.concatenate(ann), np.concatenate(logits, 1),
                            counts, ann_ops.total_macs(), sum(ann_ops.adds.values()))
