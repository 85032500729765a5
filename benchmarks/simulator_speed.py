"""Simulator speed, as ratios measured in one run on the same networks and samples.

1. Lava CPU, pipelined (one run, a new sample every T steps) against
   reset-per-sample (one ``run()`` per sample, every neuron reset through
   ``Var.set`` in between: the loop users write) and against
   fresh-compile-per-sample (a new Lava network compiled for every sample).
   Pipelined and reset compare simulation time (compilation excluded, the same
   for both); fresh-compile compares wall time, compilation being its cost.
2. Lava CPU cost per time step of our network against a stock lava-dl netx
   network of the same topology with CUBA neurons (same layer shapes and
   weight mantissas), both run by this package's worker with the same Conv
   model, for the same number of steps. Per-step cost is simulation time
   over steps (compilation excluded for both).
3. The batched integer reference's samples per second against the quantized
   ANN's own forward pass (the trained checkpoint in PyTorch), same samples.

Every Lava result must equal the reference's logits, or the benchmark stops.

    .venv/bin/python benchmarks/simulator_speed.py [--models digits-mlp-t3 digits-cnn-t3] [--samples 200]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from lava_deploy.network import SpikingNetwork
from lava_deploy.network.netx_stock import read_stock_netx
from lava_deploy.simulate import load_network, simulation_inputs
from lava_deploy.simulate.lava_cpu.runner import run_lava, run_stock_netx
from lava_deploy.simulate.stock import StockInput
from lava_deploy.network.reference import run_reference
from lava_deploy.train.checkpoint import load_checkpoint
from lava_deploy.data.datasets import dequantize_input
from machine import machine_info, write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
#: Targets of issue 6, checked in the table.
TARGETS = {"pipelined_vs_reset": 5.0, "per_step_vs_stock": 1.5, "reference_vs_ann": 3.0}


def _checked(network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, **kwargs):
    result = run_lava(network, codes, labels, record_spikes=False, **kwargs)
    if not np.array_equal(result.logits, run_reference(network, codes).logits):
        raise SystemExit(f"Lava's logits differ from the reference ({kwargs})")
    return result


def schedules(network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray, fresh_samples: int) -> dict:
    """Pipelined, reset-per-sample and fresh-compile-per-sample on the same samples."""
    n = len(labels)
    pipelined = _checked(network, codes, labels)
    reset = _checked(network, codes, labels, schedule="reset")
    fresh_wall = sum(_checked(network, codes[i:i + 1], labels[i:i + 1]).wall_seconds for i in range(fresh_samples))
    out = {"pipelined": {"samples_per_second": n / pipelined.run_seconds, "wall_samples_per_second":
                         n / pipelined.wall_seconds, "steps_run": pipelined.steps_run},
           "reset": {"samples_per_second": n / reset.run_seconds, "steps_run": reset.steps_run},
           "fresh_compile": {"samples": fresh_samples, "wall_samples_per_second": fresh_samples / fresh_wall}}
    out["pipelined_vs_reset"] = out["pipelined"]["samples_per_second"] / out["reset"]["samples_per_second"]
    out["pipelined_vs_fresh_compile"] = (out["pipelined"]["wall_samples_per_second"]
                                         / out["fresh_compile"]["wall_samples_per_second"])
    return out


def write_stock_cuba(network: SpikingNetwork, path: Path) -> None:
    """The same topology in stock netx keys with CUBA neurons: same shapes, same weight mantissas."""
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")

        def group(kind: str, shape) -> h5py.Group:
            g = layers.create_group(str(len(layers)))
            g.create_dataset("type", data=np.array([kind.encode()], dtype="S10"))
            g.create_dataset("shape", data=np.asarray(shape))
            return g

        first_is_conv = network.layers[0].synapse.kind == "conv"
        group("input", network.input_shape if first_is_conv else [int(np.prod(network.input_shape))])
        for i, layer in enumerate(network.layers):
            synapse = layer.synapse
            if synapse.kind == "dense" and i > 0 and network.layers[i - 1].synapse.kind == "conv":
                group("flatten", [int(np.prod(network.layers[i - 1].output_shape))])
            if synapse.kind == "dense":
                g = group("dense", [layer.output_shape[0]])
                g.create_dataset("inFeatures", data=synapse.fan_in)
                g.create_dataset("outFeatures", data=layer.output_shape[0])
            else:
                g = group("conv", layer.output_shape)
                for key, value in {"stride": synapse.stride, "padding": synapse.padding,
                                   "dilation": synapse.dilation, "groups": synapse.groups,
                                   "inChannels": synapse.input_shape[0], "outChannels": layer.output_shape[0],
                                   "kernelSize": synapse.weight_mantissa.shape[2:]}.items():
                    g.create_dataset(key, data=np.asarray(value))
            g.create_dataset("weight", data=synapse.weight_mantissa)
            neuron = g.create_group("neuron")
            neuron.create_dataset("type", data=np.array([b"CUBA"], dtype="S10"))
            for key, value in {"iDecay": 1024, "vDecay": 128, "vThMant": 256, "refDelay": 1,
                               "gradedSpike": 0}.items():
                neuron.create_dataset(key, data=value)


def per_step_cost(network: SpikingNetwork, codes: np.ndarray, labels: np.ndarray) -> dict:
    """Simulation seconds per Lava step (compilation excluded) of ours and of the stock CUBA network, same steps."""
    ours = _checked(network, codes, labels)
    c, h, w = network.input_shape
    frame = network.layers[0].synapse.lava_shape(network.input_shape)
    spikes = (np.random.default_rng(0).random((ours.steps_run, *frame)) < 0.3).astype(np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stock.net"
        write_stock_cuba(network, path)
        stock = run_stock_netx(read_stock_netx(path), StockInput("spikes", spikes, len(spikes)))
    ours_step, stock_step = ours.run_seconds / ours.steps_run, stock.simulation_seconds / len(spikes)
    return {"steps": ours.steps_run, "ours_seconds_per_step": ours_step, "stock_cuba_seconds_per_step": stock_step,
            "stock_cuba_output_spikes": int((stock.output != 0).sum()), "per_step_vs_stock": ours_step / stock_step}


def reference_against_ann(name: str, network: SpikingNetwork, codes: np.ndarray, repeats: int = 5) -> dict:
    """Samples per second: batched integer reference vs the checkpoint's float forward (best of ``repeats``)."""
    model, info = load_checkpoint(ROOT / "netx_models" / name / "model.pt")
    x = torch.from_numpy(dequantize_input(codes, info.input_bits))

    def best(run) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return len(codes) / min(times)

    with torch.no_grad():
        ann = best(lambda: [model(x[i:i + 256]) for i in range(0, len(x), 256)])
    reference = best(lambda: run_reference(network, codes, batch_size=256))
    return {"reference_samples_per_second": reference, "ann_samples_per_second": ann,
            "reference_vs_ann": ann / reference}


def measure(name: str, samples: int, fresh_samples: int) -> dict:
    """Every figure for one shipped model."""
    network = load_network(ROOT / "netx_models" / name / "model.net")
    codes, labels = simulation_inputs(network, network.metadata["dataset"], samples)
    row = {"model": name, "samples": len(labels), "time_steps": network.time_steps}
    row.update(schedules(network, codes, labels, fresh_samples))
    print(f"{name}: pipelined/reset {row['pipelined_vs_reset']:.1f}x, "
          f"pipelined/fresh-compile {row['pipelined_vs_fresh_compile']:.1f}x", flush=True)
    row.update(per_step_cost(network, codes, labels))
    print(f"{name}: per step ours {1e3 * row['ours_seconds_per_step']:.3f} ms, stock CUBA "
          f"{1e3 * row['stock_cuba_seconds_per_step']:.3f} ms ({row['per_step_vs_stock']:.2f}x)", flush=True)
    row.update(reference_against_ann(name, network, codes))
    print(f"{name}: reference {row['reference_samples_per_second']:.0f} samples/s, ANN forward "
          f"{row['ann_samples_per_second']:.0f} samples/s ({row['reference_vs_ann']:.2f}x slower)", flush=True)
    return row


def _verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return f"{'met' if met else 'not met'} ({value:.2f}x; target {'>=' if higher_is_better else '<='} {target}x)"


def write(report: dict) -> None:
    """JSON, a markdown table with each target's verdict, and a plot of the ratios."""
    machine = write_report(RESULTS, "simulator_speed", report)
    lines = ["# Simulator speed (ratios measured in one run)", "", f"Machine: {machine}.", "",
             "| model | samples | pipelined samples/s | reset samples/s | fresh-compile samples/s (wall) | "
             "ours ms/step | stock CUBA ms/step | reference samples/s | ANN forward samples/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | {r['samples']} | {r['pipelined']['samples_per_second']:.1f} | "
                     f"{r['reset']['samples_per_second']:.1f} | {r['fresh_compile']['wall_samples_per_second']:.2f} | "
                     f"{1e3 * r['ours_seconds_per_step']:.3f} | {1e3 * r['stock_cuba_seconds_per_step']:.3f} | "
                     f"{r['reference_samples_per_second']:.0f} | {r['ann_samples_per_second']:.0f} |")
    lines += ["", "| model | pipelined vs reset | pipelined vs fresh compile (wall) | per step vs stock CUBA | "
                  "reference vs ANN forward (slowdown) |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | {_verdict(r['pipelined_vs_reset'], TARGETS['pipelined_vs_reset'], True)} | "
                     f"{r['pipelined_vs_fresh_compile']:.1f}x | "
                     f"{_verdict(r['per_step_vs_stock'], TARGETS['per_step_vs_stock'], False)} | "
                     f"{_verdict(r['reference_vs_ann'], TARGETS['reference_vs_ann'], False)} |")
    (RESULTS / "simulator_speed.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [("pipelined_vs_reset", "pipelined /\nreset"), ("pipelined_vs_fresh_compile", "pipelined /\nfresh compile"),
            ("per_step_vs_stock", "ours / stock CUBA\n(per step)"), ("reference_vs_ann", "ANN / reference\n(samples/s)")]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(report["rows"])
    for i, r in enumerate(report["rows"]):
        x = np.arange(len(keys)) + (i - (len(report["rows"]) - 1) / 2) * width
        bars = ax.bar(x, [r[k] for k, _ in keys], width, label=r["model"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(keys)), [label for _, label in keys], fontsize=8)
    ax.set_ylabel("ratio (log scale)")
    ax.set_title("Simulator speed ratios")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "simulator_speed.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits-mlp-t3", "digits-cnn-t3"])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--fresh-samples", type=int, default=5, help="samples run with a fresh compile each")
    parser.add_argument("--from-json", action="store_true", help="only redraw the table and plot from the JSON")
    args = parser.parse_args()
    if args.from_json:
        write(json.loads((RESULTS / "simulator_speed.json").read_text()))
        return
    write({"rows": [measure(name, args.samples, args.fresh_samples) for name in args.models],
           "machine": machine_info()})


if __name__ == "__main__":
    main()
