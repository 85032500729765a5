"""The QCFS paper's table, at seed scale, on the full MNIST and Fashion-MNIST test sets.

For QCFS CNNs trained at Q = 2^T levels (T = 2, 3, 4), on the same trained
weights and all 10,000 test images:

* ANN: the quantized QCFS network in float (what training optimizes);
* ours: the accumulate-then-emit spiking network at T = log2 Q (the integer
  reference, spike for spike what Lava runs: see the model cards);
* rate-coded IF, as the QCFS paper converts: every QCFS replaced by an IF neuron
  with the trained threshold, soft reset, initial potential theta / 2, the image
  as a constant current, logits summed over T = 1..64 steps.

The T = 3 networks (and Fashion-MNIST's T = 4) are the shipped ones
(netx_models/); the others are trained here with the same recipe but
TABLE_EPOCHS epochs and one of fine-tuning, cached in runs/qcfs_table/. Needs `lava-deploy data fetch mnist fashion-mnist` first.

    .venv/bin/python benchmarks/qcfs_table.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lava_deploy.convert import convert_model
from lava_deploy.data.datasets import dequantize_input, load_dataset, quantize_input
from lava_deploy.network.reference import run_reference
from lava_deploy.train.checkpoint import load_checkpoint
from lava_deploy.train.trainer import TrainConfig, train
from latency_accuracy import _run_if
from machine import machine_info, write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
CACHE = ROOT / "runs" / "qcfs_table"
sys.path.insert(0, str(ROOT / "netx_models"))
from build import MODELS  # noqa: E402  (the shipped models' recipes)

DATASETS = ("mnist", "fashion-mnist")
TIME_STEPS = (2, 3, 4)
#: Epochs of the networks trained only for this table (2 cores are shared; the shipped ones train longer).
TABLE_EPOCHS = 3
#: Test images the rate-coded IF network runs on (64 full forward passes each: all 10,000 would take
#: half an hour per network on one core); ANN and ours use all of them.
IF_SAMPLES = 1000
#: Rate-coded IF steps reported, as in the QCFS paper's tables.
IF_STEPS = (1, 2, 4, 8, 16, 32, 64)


def checkpoint_for(dataset: str, time_steps: int) -> tuple[Path, str]:
    """The shipped checkpoint of this dataset and T, else one trained here with the shipped T = 3 recipe."""
    name = f"{dataset}-cnn-t{time_steps}"
    shipped = ROOT / "netx_models" / name / "model.pt"
    if shipped.is_file():
        return shipped, "shipped"
    cached = CACHE / f"{name}.pt"
    if not cached.is_file():
        recipe = {**MODELS[f"{dataset}-cnn-t3"], "bits": time_steps, "epochs": TABLE_EPOCHS, "qat_epochs": 1}
        CACHE.mkdir(parents=True, exist_ok=True)
        train(TrainConfig(**recipe), output=cached, progress=True)
    return cached, "trained here"


def measure(dataset: str, time_steps: int) -> dict:
    """ANN, ours and rate-coded IF on one trained network's full test split."""
    path, origin = checkpoint_for(dataset, time_steps)
    model, info = load_checkpoint(path)
    data = load_dataset(dataset)
    codes = quantize_input(data.x_test, info.input_bits)
    x = torch.from_numpy(dequantize_input(codes, info.input_bits))
    y = data.y_test
    with torch.no_grad():
        ann = float((model(x).argmax(1).numpy() == y).mean())
    network = convert_model(model, info.input_shape, info.input_bits, info.class_names)
    start = time.perf_counter()
    ours = run_reference(network, codes)
    ours_seconds = time.perf_counter() - start
    ours_accuracy = float((ours.logits.argmax(1) == y).mean())
    rate = _run_if(model, x[:IF_SAMPLES], y[:IF_SAMPLES], max(IF_STEPS))
    with torch.no_grad():
        ann_head = float((model(x[:IF_SAMPLES]).argmax(1).numpy() == y[:IF_SAMPLES]).mean())
    row = {"dataset": dataset, "levels": 2 ** time_steps - 1, "time_steps": time_steps, "origin": origin,
           "epochs": info.training.get("epochs"), "samples": len(y), "ann": ann,
           "if_samples": IF_SAMPLES, "ann_on_if_samples": ann_head,
           "ours": {"time_steps": time_steps, "accuracy": ours_accuracy, "seconds": ours_seconds},
           "rate_if": {t: rate["accuracy"][t - 1] for t in IF_STEPS}}
    print(f"{dataset} T={time_steps}: ANN {ann:.4f} ({ann_head:.4f} on IF's), ours {ours_accuracy:.4f}, rate IF "
          + " ".join(f"{t}:{a:.4f}" for t, a in row["rate_if"].items()), flush=True)
    return row


def write(report: dict) -> None:
    """JSON, the markdown table and one plot per dataset."""
    machine = write_report(RESULTS, "qcfs_table", report)
    head = " | ".join(f"IF T={t}" for t in IF_STEPS)
    lines = ["# The QCFS table at seed scale: MNIST and Fashion-MNIST, all 10,000 test images", "",
             f"This machine: {machine}. Accuracy in percent. 'ours' is the accumulate-then-emit network at "
             "T = log2 Q (the integer reference; Lava equals it spike for spike, see the model cards); "
             "'IF' is rate-coded conversion of the same weights (soft reset, v0 = theta/2), as the QCFS paper "
             f"converts, on the first {IF_SAMPLES} test images (ANN on those beside it).", "",
             f"| dataset | L | weights | ANN | ours (T = log2 Q) | ANN, first {IF_SAMPLES} | {head} |",
             "|---|---|---|---|---|---|" + "---|" * len(IF_STEPS)]
    for r in report["rows"]:
        cells = " | ".join(f"{100 * a:.2f}" for a in r["rate_if"].values())
        lines.append(f"| {r['dataset']} | {r['levels']} | {r['origin']}, {r['epochs']} epochs | {100 * r['ann']:.2f} | "
                     f"{100 * r['ours']['accuracy']:.2f} (T={r['time_steps']}) | {100 * r['ann_on_if_samples']:.2f} | {cells} |")
    measured = {(r["dataset"], r["time_steps"]) for r in report["rows"]}
    missing = [f"{d} T={t}" for d in DATASETS for t in TIME_STEPS if (d, t) not in measured]
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(missing)} (no shipped network; "
                      f"`benchmarks/qcfs_table.py` without --shipped-only trains them, {TABLE_EPOCHS} epochs each)."]
    (RESULTS / "qcfs_table.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for dataset in sorted({r["dataset"] for r in report["rows"]}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in (r for r in report["rows"] if r["dataset"] == dataset):
            line, = ax.plot(list(IF_STEPS), [100 * a for a in r["rate_if"].values()], marker="o",
                            label=f"rate IF, L={r['levels']}")
            ax.plot([r["time_steps"]], [100 * r["ours"]["accuracy"]], marker="*", markersize=14, linestyle="",
                    color=line.get_color(), label=f"ours, T={r['time_steps']} (L={r['levels']})")
            ax.axhline(100 * r["ann_on_if_samples"], color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("time steps T")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{dataset}: ours at T = log2 Q (stars, all 10,000 test images)\n"
                     f"vs rate-coded IF (first {IF_SAMPLES}; dotted: the ANN on those)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"qcfs_table_{dataset}.png", dpi=120)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--time-steps", nargs="+", type=int, default=list(TIME_STEPS), choices=TIME_STEPS)
    parser.add_argument("--shipped-only", action="store_true",
                        help="only the networks shipped in netx_models/ (train none here)")
    args = parser.parse_args()
    pairs = [(dataset, t) for dataset in args.datasets for t in args.time_steps
             if not args.shipped_only or (ROOT / "netx_models" / f"{dataset}-cnn-t{t}" / "model.pt").is_file()]
    rows = [measure(dataset, t) for dataset, t in pairs]
    write({"machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
