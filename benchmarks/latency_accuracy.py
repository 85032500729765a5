"""Time steps, spikes and accuracy: our conversion against rate-coded IF conversion and SpikingJelly's.

On the same trained QCFS networks (the shipped digits and mnist5k CNNs), the
same test samples and this machine:

(a) ours: the accumulate-then-emit network at T = log2 Q (the integer
    reference, spike for spike what Lava runs); for digits also the same CNN
    trained at T = 1..4 (netx_models/digits-cnn-t3/family.json).
(b) rate-coded IF conversion as the QCFS paper does it: the same weights,
    every QCFS replaced by an integrate-and-fire neuron with threshold lambda
    (the trained QCFS threshold), soft reset, initial potential lambda / 2,
    the image as a constant input current, logits accumulated over T steps.
(c) SpikingJelly's ann2snn Converter (99.9% robust normalization, calibrated
    on the training split) on the ReLU form of the network (QCFS -> ReLU,
    same weights), run with its IF neurons for T steps.

For each: accuracy and spikes per sample against T, and the first T within
0.5 points of the ANN's accuracy (the quantized QCFS network's), with the
spikes per sample there.

    .venv/bin/python benchmarks/latency_accuracy.py [--models digits-cnn-t3 mnist5k-cnn-t3] [--max-steps 256]
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lava_deploy.simulate import simulate
from lava_deploy.train.checkpoint import load_checkpoint
from lava_deploy.data.datasets import dequantize_input, load_dataset, quantize_input
from lava_deploy.qcfs.activation import QCFS
from machine import machine_info, write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
#: Within how much of the ANN's accuracy counts as reaching it (0.5 points).
TOLERANCE = 0.005
#: Time steps at which curves are reported (every step is computed).
GRID = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def _run_if(model: nn.Sequential, x: torch.Tensor, y: np.ndarray, max_steps: int) -> dict:
    """Rate-coded IF network (soft reset, v0 = theta / 2, constant input): accuracy and spikes at every step."""
    neurons = [m for m in model if isinstance(m, QCFS)]
    thetas = {id(m): float(m.threshold.detach()) for m in neurons}
    potentials: dict[int, torch.Tensor] = {}
    logits, spikes = 0, 0.0
    accuracy, spike_counts = [], []
    with torch.no_grad():
        for _ in range(max_steps):
            h = x
            for module in model:
                if isinstance(module, QCFS):
                    theta = thetas[id(module)]
                    v = (potentials[id(module)] if id(module) in potentials else theta / 2) + h
                    fired = (v >= theta).to(h.dtype)
                    potentials[id(module)] = v - fired * theta
                    spikes += float(fired.sum()) / len(x)
                    h = fired * theta
                else:
                    h = module(h)
            logits = logits + h
            accuracy.append(float((logits.argmax(1).numpy() == y).mean()))
            spike_counts.append(spikes)
    return {"accuracy": accuracy, "spikes_per_sample": spike_counts}


def relu_form(model: nn.Sequential) -> nn.Sequential:
    """The same network with every QCFS replaced by ReLU (same weights)."""
    return nn.Sequential(*[nn.ReLU() if isinstance(m, QCFS) else copy.deepcopy(m) for m in model]).eval()


def _run_spikingjelly(model: nn.Sequential, x_train: torch.Tensor, x: torch.Tensor, y: np.ndarray,
                      max_steps: int) -> dict:
    """SpikingJelly's ann2snn on the ReLU form: accuracy and spikes (its IF neurons' outputs) at every step."""
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.ann2snn import Converter

    calibration = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, torch.zeros(len(x_train))),
                                              batch_size=256)
    snn = Converter(calibration, mode="99.9%")(relu_form(model)).eval()
    counted = {"spikes": 0.0}
    for module in snn.modules():
        if isinstance(module, neuron.IFNode):
            module.register_forward_hook(lambda m, i, o: counted.__setitem__("spikes", counted["spikes"] + float(o.sum())))
    functional.reset_net(snn)
    logits, accuracy, spike_counts = 0, [], []
    with torch.no_grad():
        for _ in range(max_steps):
            logits = logits + snn(x)
            accuracy.append(float((logits.argmax(1).numpy() == y).mean()))
            spike_counts.append(counted["spikes"] / len(x))
    return {"accuracy": accuracy, "spikes_per_sample": spike_counts}


def _reached(curve: dict, target: float) -> dict:
    """First T (1-based) whose accuracy is within TOLERANCE of ``target``, with the spikes per sample there,
    and the first T from which it stays within for every longer run measured."""
    within = [accuracy >= target - TOLERANCE for accuracy in curve["accuracy"]]
    stays = next((t for t in range(1, len(within) + 1) if all(within[t - 1:])), None)
    for t, ok in enumerate(within, start=1):
        if ok:
            return {"time_steps": t, "accuracy": curve["accuracy"][t - 1],
                    "spikes_per_sample": curve["spikes_per_sample"][t - 1], "stays_within_from": stays}
    return {"time_steps": None, "accuracy": None, "spikes_per_sample": None, "stays_within_from": None}


def _on_grid(curve: dict) -> dict:
    return {"time_steps": [t for t in GRID if t <= len(curve["accuracy"])],
            "accuracy": [curve["accuracy"][t - 1] for t in GRID if t <= len(curve["accuracy"])],
            "spikes_per_sample": [curve["spikes_per_sample"][t - 1] for t in GRID if t <= len(curve["accuracy"])]}


def measure(name: str, max_steps: int) -> dict:
    """All three methods on one shipped model's full test split."""
    folder = ROOT / "netx_models" / name
    model, info = load_checkpoint(folder / "model.pt")
    data = load_dataset(info.dataset)
    x = torch.from_numpy(dequantize_input(quantize_input(data.x_test, info.input_bits), info.input_bits))
    x_train = torch.from_numpy(dequantize_input(quantize_input(data.x_train, info.input_bits), info.input_bits))
    y = data.y_test
    with torch.no_grad():
        ann = float((model(x).argmax(1).numpy() == y).mean())
        relu = float((relu_form(model)(x).argmax(1).numpy() == y).mean())
    ours = simulate(folder / "model.net", info.dataset, "reference")
    family_file = folder / "family.json"
    family = json.loads(family_file.read_text()) if family_file.is_file() else []
    row = {"model": name, "dataset": info.dataset, "samples": len(y), "ann_accuracy": ann,
           "relu_form_accuracy": relu,
           "ours": {"time_steps": ours.steps_per_sample, "latency_steps": ours.latency_steps,
                    "accuracy": ours.accuracy, "spikes_per_sample": ours.spikes_per_sample,
                    "family": [{k: m[k] for k in ("time_steps", "reference_test_accuracy", "spikes_per_sample")}
                               for m in family]}}
    row["ours"]["reached"] = ours.accuracy >= ann - TOLERANCE
    print(f"{name}: ANN {ann:.4f} (ReLU form {relu:.4f}); ours T={ours.steps_per_sample} {ours.accuracy:.4f} "
          f"{ours.spikes_per_sample:.0f} spikes", flush=True)
    rate = _run_if(model, x, y, max_steps)
    row["rate_if"] = {"curve": _on_grid(rate), "reached": _reached(rate, ann)}
    print(f"{name}: rate-coded IF reaches ANN-0.5 at T={row['rate_if']['reached']['time_steps']}", flush=True)
    try:
        jelly = _run_spikingjelly(model, x_train, x, y, max_steps)
        row["spikingjelly"] = {"curve": _on_grid(jelly), "reached": _reached(jelly, ann), "mode": "99.9%"}
        print(f"{name}: SpikingJelly reaches ANN-0.5 at T={row['spikingjelly']['reached']['time_steps']}", flush=True)
    except ImportError as exc:
        row["spikingjelly"] = {"absent": f"spikingjelly not importable ({exc}); install with "
                                         "pip install -e '.[bench]'"}
    rate_t = row["rate_if"]["reached"]["time_steps"]
    rate_spikes = row["rate_if"]["reached"]["spikes_per_sample"]
    row["target"] = {
        "step_ratio": (rate_t / ours.steps_per_sample) if rate_t else None,
        "spike_ratio": (rate_spikes / ours.spikes_per_sample) if rate_spikes else None,
        "met": bool(row["ours"]["reached"] and rate_t and rate_t >= 4 * ours.steps_per_sample
                    and rate_spikes > ours.spikes_per_sample),
    }
    return row


def write(report: dict) -> None:
    """JSON, markdown table with the target verdicts, and one plot per model."""
    machine = write_report(RESULTS, "latency_accuracy", report)
    lines = ["# Time steps, spikes and accuracy against rate-coded conversions", "",
             f"Same trained networks, full test splits, this machine: {machine}.",
             f"'Reached' is the first T within {100 * TOLERANCE:.1f} points of the ANN (the quantized QCFS network).",
             f"SpikingJelly {report.get('spikingjelly_version')}: the newest release for Python 3.10 (2.0.0 "
             "requires Python >= 3.11; Lava pins 3.10); installed by `make bench` (extra `bench`).",
             "", "| model | ANN | method | T reached | accuracy there | spikes/sample there | "
                 "within from then on, from T | latency note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        o = r["ours"]
        lines.append(f"| {r['model']} | {r['ann_accuracy']:.4f} | ours (accumulate-emit, T = log2 Q) | "
                     f"{o['time_steps'] if o['reached'] else 'not reached'} | {o['accuracy']:.4f} | "
                     f"{o['spikes_per_sample']:.1f} | {o['time_steps']} (exact) | "
                     f"end-to-end latency {o['latency_steps']} steps pipelined |")
        for key, label in (("rate_if", "rate-coded IF (soft reset, v0 = theta/2)"),
                           ("spikingjelly", "SpikingJelly ann2snn (99.9%), ReLU form")):
            m = r[key]
            if "absent" in m:
                lines.append(f"| {r['model']} | {r['ann_accuracy']:.4f} | {label} | absent: {m['absent']} | | | | |")
                continue
            hit = m["reached"]
            if hit["time_steps"] is None:
                lines.append(f"| {r['model']} | {r['ann_accuracy']:.4f} | {label} | not within "
                             f"{report['max_steps']} | {m['curve']['accuracy'][-1]:.4f} at {report['max_steps']} | | | |")
            else:
                lines.append(f"| {r['model']} | {r['ann_accuracy']:.4f} | {label} | {hit['time_steps']} | "
                             f"{hit['accuracy']:.4f} | {hit['spikes_per_sample']:.1f} | "
                             f"{hit['stays_within_from'] or 'never'} | plus one step per layer |")
    lines += ["", "Target: ours reaches the ANN's accuracy at T = log2 Q with >= 4x fewer time steps than "
                  "rate-coded IF, and fewer spikes per sample.", ""]
    for r in report["rows"]:
        t = r["target"]
        stays = r["rate_if"]["reached"].get("stays_within_from")
        detail = (f"rate-coded IF first comes within at T = {r['rate_if']['reached']['time_steps']}, "
                  f"{t['step_ratio']:.2f}x our time steps, with {t['spike_ratio']:.2f}x our spikes; it stays "
                  f"within from T = {stays}" if stays else
                  f"rate-coded IF first comes within at T = {r['rate_if']['reached']['time_steps']}, "
                  f"{t['step_ratio']:.2f}x our time steps, with {t['spike_ratio']:.2f}x our spikes, but does not "
                  f"stay within: at T = {report['max_steps']} it is at "
                  f"{r['rate_if']['curve']['accuracy'][-1]:.4f}") if t["step_ratio"] else \
            "rate-coded IF never came within 0.5 points of the ANN's accuracy"
        lines.append(f"- {r['model']}: **{'met' if t['met'] else 'not met'}** ({detail}; ReLU form of the network: "
                     f"{r['relu_form_accuracy']:.4f}).")
    (RESULTS / "latency_accuracy.md").write_text("\n".join(lines) + "\n")
    for r in report["rows"]:
        _plot(r, RESULTS / f"latency_accuracy_{r['model']}.png")


def _plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc_ax, spike_ax) = plt.subplots(1, 2, figsize=(10, 3.9))
    for key, label in (("rate_if", "rate-coded IF"), ("spikingjelly", "SpikingJelly ann2snn")):
        if "curve" in r[key]:
            c = r[key]["curve"]
            acc_ax.plot(c["time_steps"], [100 * a for a in c["accuracy"]], "o-", ms=3, label=label)
            spike_ax.plot(c["time_steps"], c["spikes_per_sample"], "o-", ms=3, label=label)
    family = r["ours"]["family"] or [{"time_steps": r["ours"]["time_steps"], "reference_test_accuracy":
                                      r["ours"]["accuracy"], "spikes_per_sample": r["ours"]["spikes_per_sample"]}]
    acc_ax.plot([m["time_steps"] for m in family], [100 * m["reference_test_accuracy"] for m in family], "s-",
                color="k", label="ours (accumulate-emit)")
    spike_ax.plot([m["time_steps"] for m in family], [m["spikes_per_sample"] for m in family], "s-", color="k",
                  label="ours (accumulate-emit)")
    acc_ax.axhline(100 * r["ann_accuracy"], ls="--", color="0.5", label="ANN (quantized QCFS)")
    for ax in (acc_ax, spike_ax):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("time steps T")
    acc_ax.set_ylim(max(0, 100 * r["ann_accuracy"] - 40), 100)
    acc_ax.set_ylabel("test accuracy (%)")
    spike_ax.set_yscale("log")
    spike_ax.set_ylabel("spikes per sample")
    acc_ax.set_title(f"{r['model']}: accuracy against T")
    spike_ax.set_title("spikes per sample against T")
    acc_ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits-cnn-t3", "mnist5k-cnn-t3"])
    parser.add_argument("--max-steps", type=int, default=256)
    parser.add_argument("--from-json", action="store_true", help="only redraw the table and plots from the JSON")
    args = parser.parse_args()
    if args.from_json:
        write(json.loads((RESULTS / "latency_accuracy.json").read_text()))
        return
    write({"rows": [measure(name, args.max_steps) for name in args.models], "max_steps": args.max_steps,
           "machine": machine_info(), "spikingjelly_version": _version("spikingjelly")})


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
