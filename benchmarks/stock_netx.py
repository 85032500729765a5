"""lava-dl's published netx networks through lava-deploy's documented command, against lava-dl's own run.

The four networks lava-dl publishes (read from a lava-dl checkout; not
committed here, see README "Stock lava-dl networks"):

    netx MNIST tutorial   tutorials/lava/lib/dl/netx/mnist/trained_mnist_network.net   dense-first, CUBA
    bootstrap MNIST       tutorials/lava/lib/dl/bootstrap/mnist/Trained/network.net    CUBA input neurons, dense
    tiny                  tests/lava/lib/dl/netx/tiny.net                              LIF input neurons, conv
    PilotNet LIF          tests/lava/lib/dl/netx/gts/pilotnet_lif/network.net          LIF input neurons, conv, dense

and PilotNet LIF without its input neurons (conv-first), fed unary spikes of
values 0..3. Their inputs are lava-dl's own where it publishes one (tiny's
``gts/tinynet/input_bias.npy``, PilotNet's ``gts/pilotnet_lif/image.npy``,
each held), else MNIST test images (mnist5k) encoded as lava-dl's tutorials
do: rate-coded spikes for the netx tutorial (its InpImgToSpk: v += pixel,
a spike and reset above 1), the input transform of lava-dl's datasets for
bootstrap's input neurons (bias = int(2 w pixel - w + b), a new image every
16 steps).

Each runs as a user runs it, ``lava-deploy simulate NET --input-spikes X.npy``
(or ``--input-bias``) ``--output-spikes out.npy --record-layers layers.npz
--json`` in a subprocess, and through lava-dl's own netx.hdf5.Network with
lava-nc's process models (tests/netx_itself.py); every layer's spikes must be
equal, step for step, or the benchmark stops. Per-step simulation time
(compilation excluded) of both with every layer recorded, and of lava-deploy
with the output alone.

    .venv/bin/python benchmarks/stock_netx.py --lava-dl DIR     # DIR: a lava-dl checkout (git clone)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT / "tests"))
import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: E402,F401  (before torch: see conftest)
from netx_itself import run_netx_itself  # noqa: E402
from machine import machine_info, write_report  # noqa: E402

from lava_deploy.data.datasets import load_dataset  # noqa: E402

NETWORKS = {
    "netx MNIST tutorial": "tutorials/lava/lib/dl/netx/mnist/trained_mnist_network.net",
    "bootstrap MNIST": "tutorials/lava/lib/dl/bootstrap/mnist/Trained/network.net",
    "tiny": "tests/lava/lib/dl/netx/tiny.net",
    "PilotNet LIF": "tests/lava/lib/dl/netx/gts/pilotnet_lif/network.net",
}
TINY_BIAS = "tests/lava/lib/dl/netx/gts/tinynet/input_bias.npy"
PILOTNET_IMAGE = "tests/lava/lib/dl/netx/gts/pilotnet_lif/image.npy"


def rate_coded(images: np.ndarray, steps: int) -> np.ndarray:
    """The netx MNIST tutorial's InpImgToSpk: per image, v += pixel each step; a spike where v > 1, then v = 0."""
    frames = []
    for image in images.reshape(len(images), -1):
        v = np.zeros_like(image)
        for _ in range(steps):
            v += image
            spikes = v > 1
            v[spikes] = 0
            frames.append(spikes.astype(np.int32))
    return np.stack(frames)


def input_transform(path: Path, images: np.ndarray, steps: int) -> np.ndarray:
    """lava-dl's datasets' input transform into the input neurons' bias, each image held for ``steps`` steps."""
    with h5py.File(path, "r") as f:
        weight, bias = (float(np.asarray(f["layer/0"][k]).reshape(-1)[0]) for k in ("weight", "bias"))
    frames = (2 * weight * images.reshape(len(images), -1) - weight + bias).astype(np.int32)
    return np.repeat(frames, steps, axis=0)


def without_input_neurons(path: Path, out: Path) -> Path:
    """The network with its input layer reduced to a shape: its first conv then takes spikes on netx's ``inp``."""
    shutil.copyfile(path, out)
    with h5py.File(out, "r+") as f:
        for key in ("neuron", "weight", "bias"):
            del f["layer/0"][key]
    return out


def ours(path: Path, flag: str, array: np.ndarray, folder: Path, record: bool, held_steps: int | None = None):
    """The documented command in a subprocess; its JSON, output spikes and every layer's."""
    np.save(folder / "input.npy", array)
    command = [sys.executable, "-m", "lava_deploy.cli", "simulate", str(path), flag, str(folder / "input.npy"),
               "--output-spikes", str(folder / "out.npy"), "--json"]
    command += ["--steps", str(held_steps)] if held_steps else []
    command += ["--record-layers", str(folder / "layers.npz")] if record else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{path.name}: lava-deploy failed: {done.stderr.strip()}")
    summary = json.loads(done.stdout)
    layers = None
    if record:
        with np.load(folder / "layers.npz") as recorded:
            layers = [recorded[name] for name in recorded.files]
    return summary, np.load(folder / "out.npy"), layers


def measure(name: str, path: Path, flag: str, array: np.ndarray, held_steps: int | None, folder: Path) -> dict:
    """Both runs, every layer compared; the per-step times."""
    summary, output, layers = ours(path, flag, array, folder, record=True, held_steps=held_steps)
    alone, alone_output, _ = ours(path, flag, array, folder, record=False, held_steps=held_steps)
    kwargs = {"spikes": array} if flag == "--input-spikes" else {"bias": array, "steps": held_steps}
    theirs, their_seconds = run_netx_itself(path, **kwargs)
    steps = summary["steps"]
    if len(layers) != len(theirs) or not all(np.array_equal(a, b) for a, b in zip(layers, theirs)) \
            or not np.array_equal(output, theirs[-1]) or not np.array_equal(alone_output, output):
        raise SystemExit(f"{name}: lava-deploy's spikes differ from lava-dl's own run")
    row = {"network": name, "input": flag[2:] + (" (held)" if held_steps else ""), "steps": steps,
           "layers": len(layers), "spikes_per_layer": summary["spikes_per_layer"],
           "output_spikes": summary["output_spikes"], "equal_every_layer_every_step": True,
           "ours_ms_per_step": 1e3 * summary["seconds_per_step"],
           "ours_output_only_ms_per_step": 1e3 * alone["seconds_per_step"],
           "lava_dl_ms_per_step": 1e3 * their_seconds / steps, "ours_wall_seconds": summary["wall_seconds"]}
    row["lava_dl_vs_ours"] = row["lava_dl_ms_per_step"] / row["ours_ms_per_step"]
    print(f"{name}: {steps} steps, {len(layers)} layers equal, {row['output_spikes']} output spikes; per step "
          f"ours {row['ours_ms_per_step']:.2f} ms (output only {row['ours_output_only_ms_per_step']:.2f}), lava-dl "
          f"{row['lava_dl_ms_per_step']:.2f} ms ({row['lava_dl_vs_ours']:.1f}x)", flush=True)
    return row


def write(report: dict) -> None:
    """JSON and a markdown table."""
    machine = write_report(RESULTS, "stock_netx", report)
    lines = ["# lava-dl's published networks through lava-deploy (one run)", "",
             f"Machine: {machine}. lava-dl's files (SHA-256 in stock_netx.json) as of lava-dl commit d825ac5.", "",
             "Every layer's spikes equal lava-dl's own `netx.hdf5.Network` run (lava-nc's models), step for step. "
             "Per-step simulation time, compilation excluded; every layer recorded in both runs unless noted.", "",
             "| network | input | steps | layers | output spikes | lava-deploy ms/step | lava-deploy, output only | "
             "lava-dl ms/step | lava-dl / lava-deploy |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['network']} | {r['input']} | {r['steps']} | {r['layers']} | {r['output_spikes']} | "
                     f"{r['ours_ms_per_step']:.2f} | {r['ours_output_only_ms_per_step']:.2f} | "
                     f"{r['lava_dl_ms_per_step']:.2f} | {r['lava_dl_vs_ours']:.1f}x |")
    (RESULTS / "stock_netx.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lava-dl", type=Path, required=True, help="a lava-dl checkout")
    parser.add_argument("--images", type=int, default=8, help="MNIST test images for the two MNIST networks")
    args = parser.parse_args()
    repo = args.lava_dl
    images = load_dataset("mnist5k").x_test[:args.images]
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = {name: repo / rel for name, rel in NETWORKS.items()}
        pilotnet_image = np.load(repo / PILOTNET_IMAGE)
        cases = [
            ("netx MNIST tutorial", paths["netx MNIST tutorial"], "--input-spikes", rate_coded(images, 32), None),
            ("bootstrap MNIST", paths["bootstrap MNIST"], "--input-bias",
             input_transform(paths["bootstrap MNIST"], images, 16), None),
            ("tiny", paths["tiny"], "--input-bias", np.load(repo / TINY_BIAS), 64),
            ("PilotNet LIF", paths["PilotNet LIF"], "--input-bias", pilotnet_image, 64),
            ("PilotNet LIF, conv-first, unary input 0..3",
             without_input_neurons(paths["PilotNet LIF"], folder / "pilotnet_conv_first.net"), "--input-spikes",
             rng.integers(0, 4, (64, *pilotnet_image.shape)) * (rng.random((64, *pilotnet_image.shape)) < 0.3),
             None),
        ]
        for name, path, flag, array, held in cases:
            rows.append(measure(name, path, flag, array, held, folder))
    files = {rel: hashlib.sha256((repo / rel).read_bytes()).hexdigest()
             for rel in (*NETWORKS.values(), TINY_BIAS, PILOTNET_IMAGE)}
    write({"machine": machine_info(), "lava_dl_files_sha256": files, "rows": rows})


if __name__ == "__main__":
    main()
