"""Lava CPU throughput: the pipelined stream against a reset-and-rerun-per-sample loop, as a ratio.

Pipelined: one run, a new sample every T steps, every layer busy with a
different sample. Reset-per-sample: the loop users write without pipelining:
one ``run()`` per sample for the full latency, then every neuron's state reset
through ``Var.set`` before the next. Both run in one invocation on the same
network and samples; both must give the reference's logits. Throughput is
samples per second of simulation (start-up and compilation excluded, the same
for both); wall time is reported too.

    .venv/bin/python benchmarks/lava_throughput.py [--models digits-mlp-t3 digits-cnn-t3] [--samples 200]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lava_deploy.simulate import load_network, simulation_inputs
from lava_deploy.simulate.lava_cpu.runner import run_lava
from lava_deploy.simulate.reference import run_reference
from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def measure(name: str, samples: int) -> dict:
    """Both schedules on the first ``samples`` test samples of a shipped model."""
    network = load_network(ROOT / "netx_models" / name / "model.net")
    dataset = network.metadata.get("dataset", "digits")
    codes, labels = simulation_inputs(network, dataset, samples)
    reference = run_reference(network, codes).logits
    row = {"model": name, "samples": len(labels), "time_steps": network.time_steps,
           "latency_steps": network.latency_steps}
    for schedule in ("pipelined", "reset"):
        result = run_lava(network, codes, labels, record_spikes=False, schedule=schedule)
        if not np.array_equal(result.logits, reference):
            raise SystemExit(f"{name} {schedule}: Lava's logits differ from the reference")
        row[schedule] = {"steps_run": result.steps_run, "steps_per_sample": result.steps_per_sample,
                         "run_seconds": result.run_seconds, "wall_seconds": result.wall_seconds,
                         "samples_per_second": len(labels) / result.run_seconds}
        print(f"{name} {schedule:>9}: {result.steps_run} steps in {result.run_seconds:.2f} s "
              f"({len(labels) / result.run_seconds:.1f} samples/s)", flush=True)
    row["throughput_ratio"] = row["pipelined"]["samples_per_second"] / row["reset"]["samples_per_second"]
    row["wall_ratio"] = row["reset"]["wall_seconds"] / row["pipelined"]["wall_seconds"]
    return row


def write(report: dict) -> None:
    """JSON, markdown table and a bar plot under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lava_throughput.json").write_text(json.dumps(report, indent=2))
    lines = ["# Lava CPU: pipelined stream against reset-and-rerun per sample",
             f"Target: pipelined >= 5x reset-per-sample. Machine: {report['machine']}.", "",
             "| model | samples | steps/sample pipelined | steps/sample reset | samples/s pipelined | "
             "samples/s reset | throughput ratio | wall ratio | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        p, q = r["pipelined"], r["reset"]
        lines.append(f"| {r['model']} | {r['samples']} | {p['steps_per_sample']} | {q['steps_per_sample']} | "
                     f"{p['samples_per_second']:.1f} | {q['samples_per_second']:.1f} | "
                     f"{r['throughput_ratio']:.1f}x | {r['wall_ratio']:.1f}x | "
                     f"{'met' if r['throughput_ratio'] >= 5 else 'not met'} |")
    (RESULTS / "lava_throughput.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = report["rows"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.bar(x - 0.2, [r["pipelined"]["samples_per_second"] for r in rows], 0.4, label="pipelined")
    ax.bar(x + 0.2, [r["reset"]["samples_per_second"] for r in rows], 0.4, label="reset per sample")
    for i, r in enumerate(rows):
        ax.annotate(f"{r['throughput_ratio']:.1f}x", (i - 0.2, r["pipelined"]["samples_per_second"]),
                    ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [r["model"] for r in rows])
    ax.set_ylabel("samples per second (Lava CPU)")
    ax.set_title("Lava CPU throughput: pipelined vs reset per sample")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "lava_throughput.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits-mlp-t3", "digits-cnn-t3"])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    write({"rows": [measure(name, args.samples) for name in args.models], "machine": machine_info()})


if __name__ == "__main__":
    main()
