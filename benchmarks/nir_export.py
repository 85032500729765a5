"""NIR export: what moving a shipped model to another NIR platform costs, against T.

For each shipped model (netx_models/*/model.net): `export_nir` writes the NIR
graph (the rate-coded reading of the same integer weights, docs/nir.md),
NIR's own reader (`nir.read`) reads it back, and sinabs runs it through
nirtorch for T steps per sample, on the model's full test split:

- reading `qcfs`: the export's neurons (IF, subtractive reset, one spike per
  step, initial potential half the threshold, from each IF node's metadata);
- reading `sinabs`: sinabs's own reading of NIR's IF node, as a user who
  loads the file gets it (potential from 0, several spikes per step, floor
  at minus the threshold).

Beside them, the exact bit-serial result at its own T (the integer
reference, which Lava equals spike for spike: tests/test_shipped_outputs.py):
accuracy, spikes per sample (hidden layers), steps per sample.

    .venv/bin/python benchmarks/nir_export.py [--models digits-mlp-t3 ...] [--time-steps 4 7 8 16 32 64] [--samples N]
        [--readings qcfs sinabs]

Writes benchmarks/results/nir.{json,md,png}; models measured before and not
named again keep their rows (so that models can be run apart, with their own
sample counts).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lava_deploy.export import export_nir
from lava_deploy.export.nir_graph import rate_limit_logits
from lava_deploy.network.netx import read_netx
from lava_deploy.network.reference import run_reference
from lava_deploy.simulate import simulation_inputs
from lava_deploy.simulate.nir_rate import READINGS, read_nir, run_nir
from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
#: Shipped models with a NIR form (a Transformer has none: no signed neuron, product or function unit in NIR).
MODELS = tuple(sorted(p.parent.name for p in (ROOT / "netx_models").glob("*/model.net")
                      if json.loads((p.parent / "figures.json").read_text())["model"] != "vit"))
#: 7 = L, the top code at T = 3: a first layer with constant input then counts exactly its code.
TIME_STEPS = (4, 7, 8, 16, 32, 64)


def measure(model: str, time_steps: list[int], samples: int | None, readings: list[str], folder: Path) -> dict:
    """Export, read back and run one shipped model at every T; the bit-serial figures beside."""
    source = ROOT / "netx_models" / model / "model.net"
    network = read_netx(source)
    codes, labels = simulation_inputs(network, network.metadata["dataset"], samples)
    reference = run_reference(network, codes)
    path = folder / f"{model}.nir"
    start = time.perf_counter()
    export_nir(source, path)
    exported = time.perf_counter() - start
    start = time.perf_counter()
    graph = read_nir(path)
    read = time.perf_counter() - start
    row = {"model": model, "samples": len(labels), "nir_bytes": path.stat().st_size, "export_seconds": exported,
           "read_seconds": read, "nodes": {kind: sum(type(n).__name__ == kind for n in graph.nodes.values())
                                           for kind in sorted({type(n).__name__ for n in graph.nodes.values()})},
           "bit_serial": {"time_steps": network.time_steps, "steps_per_sample": network.steps_per_sample,
                          "latency_steps": network.latency_steps,
                          "accuracy": float((reference.predictions == labels).mean()),
                          "spikes_per_sample": float(reference.spikes_per_layer(network).sum())},
           "limit_accuracy": float((rate_limit_logits(network, codes).argmax(axis=1) == labels).mean()),
           "rate": {reading: [] for reading in readings}}
    for steps in time_steps:
        for reading in readings:
            result = run_nir(graph, codes, steps, reading=reading)
            row["rate"][reading].append({
                "time_steps": steps, "accuracy": float((result.predictions == labels).mean()),
                "prediction_agreement": float((result.predictions == reference.predictions).mean()),
                "spikes_per_sample": result.spikes_per_sample, "seconds": result.seconds})
            print(f"{model} T={steps} {reading}: accuracy {row['rate'][reading][-1]['accuracy']:.4f} "
                  f"({result.seconds:.1f} s)", flush=True)
    return row


def write_markdown(rows: list[dict], info: dict) -> str:
    lines = ["# NIR export: rate-coded accuracy against T, beside the exact bit-serial network", "",
             "Shipped models, the first test samples of each split (column samples), this machine: "
             + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
             "Each model exported with `lava-deploy export model.net --format nir`, read back with `nir.read`, "
             "run in sinabs 2.0.3 through nirtorch 2.6 (`lava_deploy.simulate.nir_rate.run_nir`). "
             "Reading `qcfs`: the export's neurons (IF, subtractive reset, one spike per step, start at half the "
             "threshold); `sinabs`: sinabs's own reading of NIR's IF node (start at 0, several spikes per step, "
             "floor at minus the threshold). Bit-serial: the integer reference, which Lava equals spike for "
             "spike, at the model's T (a new sample every T steps, pipelined). Spikes: hidden layers, per sample. "
             "Seconds are wall-clock on a machine shared with other jobs: they compare nothing.",
             "", "| model | bit-serial T | bit-serial accuracy | bit-serial spikes | NIR T | accuracy (qcfs) | "
                 "agreement with bit-serial (qcfs) | spikes (qcfs) | accuracy (sinabs) | spikes (sinabs) | "
                 "seconds (qcfs) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        exact = row["bit_serial"]
        stock_rows = row["rate"].get("sinabs") or [None] * len(row["rate"]["qcfs"])
        for qcfs, stock in zip(row["rate"]["qcfs"], stock_rows):
            stock_cells = f"{stock['accuracy']:.4f} | {stock['spikes_per_sample']:.1f}" if stock else "not run | not run"
            lines.append(f"| {row['model']} | {exact['time_steps']} | {exact['accuracy']:.4f} | "
                         f"{exact['spikes_per_sample']:.1f} | {qcfs['time_steps']} | {qcfs['accuracy']:.4f} | "
                         f"{qcfs['prediction_agreement']:.4f} | {qcfs['spikes_per_sample']:.1f} | "
                         f"{stock_cells} | {qcfs['seconds']:.1f} |")
    lines += ["", "Limit: the accuracy the rates converge to as T grows, the network without the floor "
                  "(`rate_limit_logits`, docs/nir.md section 2).", "",
              "| model | samples | limit accuracy | NIR file bytes | nodes | export s | nir.read s |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        nodes = ", ".join(f"{count} {kind}" for kind, count in row["nodes"].items())
        lines.append(f"| {row['model']} | {row['samples']} | {row['limit_accuracy']:.4f} | {row['nir_bytes']} | "
                     f"{nodes} | {row['export_seconds']:.2f} | {row['read_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        for reading, style in zip(READINGS, ("o-", "s--")):
            points = row["rate"].get(reading, [])
            ax.plot([p["time_steps"] for p in points], [p["accuracy"] for p in points], style,
                    label=f"NIR in sinabs ({reading})")
        exact = row["bit_serial"]
        ax.plot([exact["time_steps"]], [exact["accuracy"]], "k*", markersize=12, label="bit-serial (exact)")
        ax.axhline(exact["accuracy"], color="k", lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_title(row["model"])
        ax.set_xlabel("time steps per sample")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--time-steps", nargs="+", type=int, default=list(TIME_STEPS))
    parser.add_argument("--samples", type=int, help="test samples per model (default: the full split)")
    parser.add_argument("--readings", nargs="+", choices=READINGS, default=list(READINGS))
    parser.add_argument("--render", action="store_true", help="only rewrite nir.md and nir.png from nir.json")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / "nir.json"
    kept = {row["model"]: row for row in json.loads(saved.read_text())["models"]} if saved.exists() else {}
    if args.render:
        saved_data = json.loads(saved.read_text())
        (RESULTS / "nir.md").write_text(write_markdown(saved_data["models"], saved_data["machine"]))
        plot(saved_data["models"], RESULTS / "nir.png")
        return
    info = machine_info()
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:       # saved after each model: a long run keeps what it measured
            kept[model] = measure(model, args.time_steps, args.samples, args.readings, Path(folder))
            rows = [kept[name] for name in MODELS if name in kept] + \
                   [row for name, row in kept.items() if name not in MODELS]
            saved.write_text(json.dumps({"machine": info, "models": rows}, indent=2) + "\n")
            (RESULTS / "nir.md").write_text(write_markdown(rows, info))
            plot(rows, RESULTS / "nir.png")
    print(write_markdown(rows, info))


if __name__ == "__main__":
    main()
