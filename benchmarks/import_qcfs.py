"""import-qcfs: does the imported integer network predict what the QCFS authors' network predicts?

For each architecture (vgg16, resnet18, resnet20, resnet34) a checkpoint in
the reference code's own key layout (tests/qcfs_reference.py, written from
its model definitions) goes through ``import_qcfs``, conversion and the
integer reference (``lava_deploy.network.reference``), and is compared on the
same inputs with the network computed in the reference's own form (its IF /
MyFloor formulas, its input normalization):

(a) **random** weights, calibrated from data (BatchNorm statistics,
    thresholds at the 99th percentile), at the authors' channel widths
    divided by ``--narrow`` (1: theirs), on ``--samples`` random 8-bit 32x32
    images with structure, CIFAR-10's normalization;
(b) **trained**: the same architectures, narrowed, trained briefly in their
    own form (straight-through floor, BatchNorm, Adam) on mnist5k padded to
    32x32 and repeated over 3 channels, on its 1,000 test images.

Agreement of the predictions: the imported network folded but *unrounded*
(float64) against the reference in float64 and float32 (the import is
exact: 1.0 up to float32's own ties); the *integer* network (8-bit weights)
against the reference in float32 (its arithmetic); and, as the evidence that
the 8-bit weights are what moves predictions, the folded network with its
weights rounded to 10, 12 and 16-bit mantissas. Per layer, the share of codes
the integer network changes.

    .venv/bin/python benchmarks/import_qcfs.py [--archs vgg16 resnet20] [--samples 500] [--narrow 1]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lava_deploy.convert import convert_model
from lava_deploy.convert.fold import fold_model, run_folded
from lava_deploy.data import load_dataset, quantize_input
from lava_deploy.network.reference import run_reference
from lava_deploy.train.checkpoint import load_checkpoint
from lava_deploy.train.import_qcfs import import_qcfs
from machine import machine_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from qcfs_reference import CIFAR10_MEAN, CIFAR10_STD, Reference, normalize, smooth_images  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ARCHS = ("vgg16", "resnet18", "resnet20", "resnet34")
#: Each architecture's layout and L: both reference implementations, and the newer one's default L = 8
#: (L + 1 not a power of two: T = 4, codes clamped to 8) beside the older one's 16.
SETUP = {"vgg16": ("IF", 8), "resnet18": ("MyFloor", 16), "resnet20": ("IF", 8), "resnet34": ("MyFloor", 16)}
#: Width divisors of the trained networks, so that training stays minutes on two cores.
TRAIN_NARROW = {"vgg16": 8, "resnet18": 8, "resnet20": 2, "resnet34": 8}
MNIST_MEAN, MNIST_STD = (0.1307,) * 3, (0.3081,) * 3
SWEEP_BITS = (10, 12, 16)


def rounded(folded: list, bits: int) -> list:
    """The folded layers with weights rounded to ``bits``-bit signed mantissas on each layer's finest grid
    that holds its largest weight (and biases to half that step), as the conversion does with 8 bits."""
    q_max, out = (1 << (bits - 1)) - 1, []
    for layer in folded:
        layer = copy.copy(layer)
        step = 2.0 ** -math.floor(math.log2((q_max + 0.49) / np.abs(layer.weight).max()))
        layer.weight = np.clip(np.floor(layer.weight / step + 0.5), -q_max - 1, q_max) * step
        layer.bias = np.floor(layer.bias / step * 2 + 0.5) * step / 2
        if layer.skip is not None:
            layer.skip = copy.copy(layer.skip)
            skip_step = 2.0 ** -math.floor(math.log2((q_max + 0.49) / np.abs(layer.skip.weight).max()))
            layer.skip.weight = np.clip(np.floor(layer.skip.weight / skip_step + 0.5), -q_max - 1, q_max) * skip_step
        out.append(layer)
    return out


def train(reference: Reference, images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0) -> float:
    """Adam on cross-entropy in the reference's own form; returns seconds taken."""
    start, generator = time.time(), torch.Generator().manual_seed(seed)
    parameters = reference.parameters()
    optimizer = torch.optim.Adam(parameters, lr=2e-3)
    reference.training = True
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images), 64):
            batch = order[i:i + 64]
            loss = F.cross_entropy(reference.forward(normalize(images[batch], MNIST_MEAN, MNIST_STD)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    reference.training = False
    for p in parameters:
        p.requires_grad_(False)
    return time.time() - start


def measure(reference: Reference, codes: torch.Tensor, labels: np.ndarray | None, mean, std, folder: Path,
            sweep: bool) -> dict:
    """Import ``reference``'s state dict, convert it, and compare every form on ``codes``."""
    arch, flavour, levels = reference.arch, reference.flavour, reference.levels
    channels = codes.shape[1]
    path, dataset = folder / f"{arch}.pth", folder / "images.npz"
    torch.save(reference.state, path)
    np.savez(dataset, x=codes.numpy().astype(np.uint8), y=np.arange(len(codes)) % 10 if labels is None else labels)
    timings = {}
    start = time.time()
    info = import_qcfs(path, arch, f"npz:{dataset}", levels, folder / f"{arch}.pt", mean=mean[:1] if channels == 1
                       else mean, std=std[:1] if channels == 1 else std)
    model, info = load_checkpoint(folder / f"{arch}.pt")
    network = convert_model(model, info.input_shape, info.input_bits, info.class_names)
    timings["import_and_convert_s"] = time.time() - start

    start = time.time()
    ref32 = reference.forward(normalize(codes, mean, std)).argmax(1).numpy()
    exact = reference.double()
    exact.codes = []
    ref64 = exact.forward(normalize(codes, mean, std, dtype=torch.float64)).argmax(1).numpy()
    timings["reference_form_s"] = time.time() - start
    start = time.time()
    folded = fold_model(model, info.input_shape, info.input_bits)
    unrounded_logits, unrounded_codes = run_folded(folded, codes.numpy())
    timings["folded_s"] = time.time() - start
    start = time.time()
    integer = run_reference(network, codes.numpy())
    timings["integer_reference_s"] = time.time() - start
    unrounded = unrounded_logits.argmax(1)

    changed = [float((ours != theirs.numpy().reshape(ours.shape)).mean())
               for ours, theirs in zip(integer.codes, exact.codes)]
    row = {
        "arch": arch, "activation": flavour, "levels": levels, "time_steps": network.time_steps,
        "narrow": reference.narrow, "input_shape": list(info.input_shape), "samples": len(codes),
        "parameters": int(sum(v.numel() for k, v in reference.state.items() if v.is_floating_point())),
        "tensors": len(reference.state), "layers": len(network.layers),
        "classes_predicted": int(len(np.unique(ref32))),
        "agreement": {
            "unrounded_vs_reference_float64": float((unrounded == ref64).mean()),
            "unrounded_vs_reference_float32": float((unrounded == ref32).mean()),
            "reference_float64_vs_float32": float((ref64 == ref32).mean()),
            "integer_vs_reference_float32": float((integer.predictions == ref32).mean()),
            "integer_vs_unrounded": float((integer.predictions == unrounded).mean()),
        },
        "unrounded_codes_equal_reference": all(np.array_equal(ours.reshape(theirs.shape), theirs.numpy())
                                               for ours, theirs in zip(unrounded_codes, exact.codes)),
        "integer_codes_changed": {"first": changed[0], "mean": float(np.mean(changed)), "last": changed[-1]},
        "headroom_bits_min": int(min(network.headroom())),
        "timings": timings,
    }
    disagree = integer.predictions != ref32
    row["disagreements"] = int(disagree.sum())
    row["disagreements_where_unrounded_agrees"] = int((disagree & (unrounded == ref32)).sum())
    if sweep:
        row["agreement_by_weight_bits"] = {"8 (integer network)": row["agreement"]["integer_vs_reference_float32"]}
        for bits in SWEEP_BITS:
            logits, _ = run_folded(rounded(folded, bits), codes.numpy())
            row["agreement_by_weight_bits"][str(bits)] = float((logits.argmax(1) == ref32).mean())
        row["agreement_by_weight_bits"]["unrounded"] = row["agreement"]["unrounded_vs_reference_float32"]
    if labels is not None:
        row["accuracy"] = {"reference_float32": float((ref32 == labels).mean()),
                           "integer": float((integer.predictions == labels).mean())}
    return row


def run(archs: list[str], samples: int, narrow: int, epochs: int, train_samples: int, trained: bool,
        sweep: bool) -> dict:
    torch.manual_seed(0)
    rows = {"random": [], "trained": []}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            flavour, levels = SETUP[arch]
            reference = Reference(arch, flavour, levels, narrow=narrow)
            reference.forward(normalize(smooth_images(256, (3, 32, 32), seed=1), CIFAR10_MEAN, CIFAR10_STD),
                              calibrate=True)
            folder = Path(tempfile.mkdtemp(dir=tmp))
            row = measure(reference, smooth_images(samples, (3, 32, 32), seed=2), None, CIFAR10_MEAN, CIFAR10_STD,
                          folder, sweep)
            rows["random"].append(row)
            print(json.dumps({"random": arch, **row["agreement"], "changed": row["integer_codes_changed"]}),
                  flush=True)
        if trained:
            data = load_dataset("mnist5k")

            def padded(x):      # 28x28 -> 32x32 (VGG-16's five pools), as 8-bit codes
                return torch.from_numpy(np.pad(quantize_input(x, 8), ((0, 0), (0, 0), (2, 2), (2, 2))))
            x_train, x_test = padded(data.x_train[:train_samples]), padded(data.x_test)
            y_train = torch.from_numpy(data.y_train[:train_samples])
            for arch in archs:
                flavour, levels = SETUP[arch]
                reference = Reference(arch, flavour, levels, narrow=TRAIN_NARROW[arch], seed=1)
                reference.forward(normalize(x_train[:256], MNIST_MEAN, MNIST_STD), calibrate=True)
                seconds = train(reference, x_train, y_train, epochs)
                folder = Path(tempfile.mkdtemp(dir=tmp))
                row = measure(reference, x_test, data.y_test, MNIST_MEAN, MNIST_STD, folder, sweep)
                row["training"] = {"epochs": epochs, "train_samples": len(x_train), "seconds": seconds}
                rows["trained"].append(row)
                print(json.dumps({"trained": arch, **row["agreement"], **row["accuracy"]}), flush=True)
    return {"rows": rows, "machine": machine_info(),
            "command": "benchmarks/import_qcfs.py " + " ".join(sys.argv[1:])}


def write(report: dict) -> None:
    """JSON and a markdown table under benchmarks/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "import_qcfs.json").write_text(json.dumps(report, indent=2))
    lines = ["# import-qcfs: the imported integer network against the QCFS reference network",
             "", f"`{report['command']}`; {report['machine']['cpu_count']} cores, torch {report['machine']['torch']}.",
             "Predictions agree where both pick the same class. *unrounded*: the imported network folded, "
             "weights not rounded (float64); *integer*: the converted network (8-bit weight mantissas), "
             "integer reference; *reference*: their forward pass in their own form (float32 unless noted). "
             "*width /*: the authors' channel widths divided by this (1: theirs). *disagreements*: inputs where "
             "integer and reference differ, and of those, where the unrounded network agrees with the reference "
             "(the rounding's). *codes changed*: share of a layer's codes that the integer network computes "
             "differently from the reference (float64), in its first layer, on average, in its last.", ""]
    for kind, title in (("random", "Random weights, calibrated, random structured 32x32 images, CIFAR-10 "
                                   "normalization"),
                        ("trained", "Trained in the reference's own form on mnist5k (padded to 32x32, 3 channels), "
                                    "its 1,000 test images")):
        rows = report["rows"][kind]
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| arch | layout, L (T) | width / | params | inputs | unrounded = ref. (f64) | unrounded = ref. "
                  "| integer = ref. | integer = unrounded | disagreements (all where unrounded agrees) | "
                  "codes changed: layer 1 / mean / last |" + (" accuracy ref. / integer |" if kind == "trained" else ""),
                  "|---" * (12 if kind == "trained" else 11) + "|"]
        for r in rows:
            a, c = r["agreement"], r["integer_codes_changed"]
            line = (f"| {r['arch']} | {r['activation']}, {r['levels']} ({r['time_steps']}) | {r['narrow']} | "
                    f"{r['parameters']:,} | {r['samples']} | {a['unrounded_vs_reference_float64']:.4f} | "
                    f"{a['unrounded_vs_reference_float32']:.4f} | {a['integer_vs_reference_float32']:.4f} | "
                    f"{a['integer_vs_unrounded']:.4f} | {r['disagreements']} "
                    f"({r['disagreements_where_unrounded_agrees']}) | "
                    f"{c['first']:.3f} / {c['mean']:.3f} / {c['last']:.3f} |")
            if kind == "trained":
                line += f" {r['accuracy']['reference_float32']:.4f} / {r['accuracy']['integer']:.4f} |"
            lines.append(line)
        if rows and "agreement_by_weight_bits" in rows[0]:
            keys = list(rows[0]["agreement_by_weight_bits"])
            lines += ["", "Agreement with the reference by weight mantissa bits (the folded network rounded "
                      "per layer as the conversion rounds to 8):", "",
                      "| arch | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            lines += [f"| {r['arch']} | " + " | ".join(f"{r['agreement_by_weight_bits'][k]:.4f}" for k in keys) + " |"
                      for r in rows]
        lines.append("")
    (RESULTS / "import_qcfs.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--samples", type=int, default=500, help="random inputs per architecture")
    parser.add_argument("--narrow", type=int, default=1, help="width divisor of the random networks")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the trained networks")
    parser.add_argument("--train-samples", type=int, default=4000, help="mnist5k training images used")
    parser.add_argument("--no-trained", action="store_true", help="random networks only")
    parser.add_argument("--no-sweep", action="store_true", help="skip the weight-bits sweep")
    args = parser.parse_args()
    write(run(args.archs, args.samples, args.narrow, args.epochs, args.train_samples, not args.no_trained,
              not args.no_sweep))


if __name__ == "__main__":
    main()
