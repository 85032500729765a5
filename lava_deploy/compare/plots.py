"""Plots a person would rather look at than read: accuracy against T, spikes per layer, a spike raster."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lava_deploy.network import SpikingNetwork
from lava_deploy.files import atomic_output
from lava_deploy.simulate import SimulationResult


def _save(plt, fig, path: str | Path) -> None:
    """Write the figure as PNG atomically (no half-written image on error or Ctrl-C), then free it."""
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_spikes_per_layer(results: Sequence[SimulationResult], path: str | Path) -> Path:
    """Bar chart of mean spikes per sample in each hidden layer, one bar per backend."""
    plt = _pyplot()
    layers = len(results[0].spikes_per_layer)
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * layers + 2), 3.8))
    for i, result in enumerate(results):
        x = np.arange(layers) + (i - (len(results) - 1) / 2) * width
        bars = ax.bar(x, result.spikes_per_layer, width, label=result.backend)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(np.arange(layers), [f"layer {i + 1}" for i in range(layers)])
    ax.set_ylabel("spikes per sample")
    ax.set_title("Spikes per layer (mean over samples)")
    ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)
    return Path(path)


def plot_raster(network: SpikingNetwork, spikes: Sequence[np.ndarray], sample: int, path: str | Path) -> Path:
    """Raster of one sample's spikes: every hidden neuron (rows, grouped by layer) over time steps.

    Time is the pipelined network's own: layer l emits sample n's bits during
    the T steps after it finished accumulating them (graded: its payloads in the
    step that accumulated them).
    """
    plt = _pyplot()
    T = network.time_steps
    fig, ax = plt.subplots(figsize=(7, 4.5))
    offset = 0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for layer, train in enumerate(spikes):
        s = train[sample].reshape(network.steps_per_sample, -1)      # (steps, neurons)
        steps, neurons = np.nonzero(s)
        start = network.emit_start(layer)                            # first emit step of sample 0
        ax.scatter(start + steps, offset + neurons, s=4, marker="|", color=colors[layer % len(colors)],
                   label=f"layer {layer + 1} ({s.shape[1]} neurons)")
        offset += s.shape[1]
    ax.set_xlabel("time step (after the first input spike)")
    ax.set_ylabel("neuron (stacked by layer)")
    ax.set_title(f"Spike raster of test sample {sample}, T = {T}, {network.encoding}")
    ax.legend(loc="upper left", fontsize=7, markerscale=3)
    fig.tight_layout()
    _save(plt, fig, path)
    return Path(path)


def plot_accuracy_vs_time_steps(family: Sequence[dict], path: str | Path,
                                lava_point: tuple[int, float, int] | None = None, title: str = "") -> Path:
    """Test accuracy against T for a model family: float QCFS ANN and integer spiking reference; Lava's point.

    Args:
        family: one dict per trained model with ``time_steps``, ``float_test_accuracy``,
            ``reference_test_accuracy`` and optionally ``spikes_per_sample``.
        lava_point: (T, accuracy, samples) of the model run on Lava, marked on the plot.
    """
    plt = _pyplot()
    family = sorted(family, key=lambda m: m["time_steps"])
    steps = [m["time_steps"] for m in family]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(steps, [100 * m["float_test_accuracy"] for m in family], "o-", label="float QCFS ANN")
    ax.plot(steps, [100 * m["reference_test_accuracy"] for m in family], "s--", label="spiking, integer reference")
    if lava_point is not None:
        T, accuracy, samples = lava_point
        ax.plot([T], [100 * accuracy], "x", markersize=10, color="black",
                label=f"spiking, Lava CPU (this model, {samples} samples)")
    for m in family:
        if m.get("spikes_per_sample") is not None:
            ax.annotate(f"{m['spikes_per_sample']:.0f} spikes", (m["time_steps"], 100 * m["reference_test_accuracy"]),
                        textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7)
    ax.set_xticks(steps)
    ax.set_xlabel("time steps per sample T (QCFS levels 2^T - 1)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Accuracy against time steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(plt, fig, path)
    return Path(path)
