"""Sparsity: spikes per sample and accuracy of the digits CNN for several bit-L1 weights.

Trains the same CNN (T=3, digits) with the bit-L1 penalty at several weights
and seeds, exports each, and measures the integer reference's accuracy and
spikes per sample on the full test split. Writes JSON, a markdown table and a
plot to benchmarks/results/.

    .venv/bin/python benchmarks/sparsity.py [--weights 0 0.1 0.25 0.5 1 2] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lava_deploy.convert import convert_model
from lava_deploy.simulate import SimulationResult, simulate
from lava_deploy.data.datasets import load_dataset
from lava_deploy.train.trainer import TrainConfig, train
from machine import machine_info

RESULTS = Path(__file__).parent / "results"


def run(weights: list[float], seeds: list[int], model: str, dataset: str, bits: int) -> dict:
    """Train, convert and measure every (weight, seed); return the raw rows and per-weight means."""
    data = load_dataset(dataset)
    rows = []
    for weight in weights:
        for seed in seeds:
            trained = train(TrainConfig(model=model, dataset=dataset, bits=bits, bit_l1=weight, seed=seed),
                            progress=False, dataset=data)
            info = trained.info
            network = convert_model(trained.model, info.input_shape, info.input_bits, info.class_names)
            result: SimulationResult = simulate(network, dataset, "reference")
            rows.append({"bit_l1": weight, "seed": seed, "float_accuracy": trained.test_accuracy,
                         "integer_accuracy": result.accuracy, "spikes_per_sample": result.spikes_per_sample})
            print(f"bit_l1={weight:<5} seed={seed}  integer accuracy {result.accuracy:.4f}  "
                  f"spikes/sample {result.spikes_per_sample:.1f}", flush=True)
    means = []
    for weight in weights:
        group = [r for r in rows if r["bit_l1"] == weight]
        means.append({"bit_l1": weight,
                      **{k: statistics.mean(r[k] for r in group)
                         for k in ("float_accuracy", "integer_accuracy", "spikes_per_sample")}})
    base = means[0]
    for m in means:
        m["spike_reduction"] = 1 - m["spikes_per_sample"] / base["spikes_per_sample"]
        m["accuracy_cost"] = base["integer_accuracy"] - m["integer_accuracy"]
    return {"model": model, "dataset": dataset, "time_steps": bits, "seeds": seeds, "rows": rows, "means": means,
            "machine": machine_info()}


def write(report: dict) -> None:
    """JSON, markdown table and plot under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sparsity.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Bit-L1 sparsity: {report['model']} on {report['dataset']}, T={report['time_steps']}",
             f"Mean over seeds {report['seeds']}; integer reference on the full test split.", "",
             "| bit-L1 weight | float acc. | integer acc. | spikes/sample | spike reduction | accuracy cost |",
             "|---|---|---|---|---|---|"]
    for m in report["means"]:
        lines.append(f"| {m['bit_l1']} | {m['float_accuracy']:.4f} | {m['integer_accuracy']:.4f} | "
                     f"{m['spikes_per_sample']:.1f} | {m['spike_reduction']:.1%} | {m['accuracy_cost']:+.2%} |")
    (RESULTS / "sparsity.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in report["rows"]:
        ax.scatter(r["spikes_per_sample"], 100 * r["integer_accuracy"], color="0.7", s=12)
    means = report["means"]
    ax.plot([m["spikes_per_sample"] for m in means], [100 * m["integer_accuracy"] for m in means], "o-")
    for m in means:
        ax.annotate(f"{m['bit_l1']}", (m["spikes_per_sample"], 100 * m["integer_accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("spikes per sample")
    ax.set_ylabel("test accuracy (%), integer network")
    ax.set_title(f"Bit-L1 weight: spikes against accuracy ({report['dataset']} {report['model']}, T={report['time_steps']})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "sparsity.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--bits", type=int, default=3)
    args = parser.parse_args()
    write(run(args.weights, args.seeds, args.model, args.dataset, args.bits))


if __name__ == "__main__":
    main()
