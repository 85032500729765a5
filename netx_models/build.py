"""Regenerate every shipped model and its card: train, export, measure on both backends.

    .venv/bin/python netx_models/build.py [--only digits-cnn-t3] [--samples 200]

Each model lands in netx_models/<name>/ as model.net (netx HDF5), model.pt
(the checkpoint it came from) and README.md (its card, with the figures
measured here and the exact commands that produced it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import lava_deploy
from lava_deploy.check import check
from lava_deploy.compare import compare
from lava_deploy.convert import convert_model
from lava_deploy.export import export, info
from lava_deploy.simulate import simulate
from lava_deploy.data.datasets import load_dataset
from lava_deploy.train.checkpoint import load_checkpoint
from lava_deploy.train.trainer import TrainConfig, train

HERE = Path(__file__).parent

#: name -> training arguments; the CLI flags are the same names.
MODELS = {
    "digits-mlp-t3": dict(model="mlp", dataset="digits", bits=3, seed=0),
    "digits-cnn-t3": dict(model="cnn", dataset="digits", bits=3, seed=0),
    "mnist5k-cnn-t3": dict(model="cnn", dataset="mnist5k", bits=3, seed=0, epochs=20),
    "mnist5k-resnet-t3": dict(model="resnet", dataset="mnist5k", bits=3, seed=0, epochs=20),
    "mnist-cnn-t3": dict(model="cnn", dataset="mnist", bits=3, seed=0, epochs=8, qat_epochs=2),
    "fashion-mnist-cnn-t3": dict(model="cnn", dataset="fashion-mnist", bits=3, seed=0, epochs=10, qat_epochs=2),
    "fashion-mnist-cnn-t4": dict(model="cnn", dataset="fashion-mnist", bits=4, seed=0, epochs=6, qat_epochs=1),
    "mnist-vit-t4": dict(model="vit", dataset="mnist", bits=4, seed=0, epochs=12, qat_epochs=2, batch_size=128,
                         lr=0.0015),
}
#: Datasets with an official test set (the others are split 80/20 with a fixed seed).
OFFICIAL_SPLITS = {"mnist": "official 60,000/10,000 split", "fashion-mnist": "official 60,000/10,000 split"}


def _command(name: str, args: dict) -> str:
    # TrainConfig's ``bits`` is the CLI's --time-steps.
    flags = " ".join(f"--{'time-steps' if k == 'bits' else k.replace('_', '-')} {v}" for k, v in args.items())
    return (f"lava-deploy train {flags} -o netx_models/{name}/model.pt\n"
            f"lava-deploy export netx_models/{name}/model.pt -o netx_models/{name}/model.net\n"
            f"lava-deploy compare netx_models/{name}/model.net --dataset {args['dataset']} --samples {{samples}}")


def build(name: str, samples: int | None, trained_in: float | None = None) -> dict:
    """Train, export and compare one model; write its card; return its figures.

    ``trained_in``: the checkpoint in place was trained by the card's own command in this many seconds
    (a Transformer trains for hours on 2 shared cores): export and measure it without training again.
    """
    args = MODELS[name]
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    if trained_in is None:
        start = time.perf_counter()
        metrics = train(TrainConfig(**args), output=folder / "model.pt", progress=True).info.metrics
        train_seconds = time.perf_counter() - start
    else:
        metrics, train_seconds = load_checkpoint(folder / "model.pt")[1].metrics, trained_in
    network = export(folder / "model.pt", folder / "model.net")
    if samples is None:
        samples = len(load_dataset(args["dataset"]).y_test)
    result = compare(folder / "model.net", dataset=args["dataset"], samples=samples)
    summary = result.summary()
    figures = {
        "name": name, **args, "input_bits": network.input_bits, "time_steps": network.time_steps,
        "float_test_accuracy": metrics["float_test_accuracy"],
        "float_test_accuracy_before_qat": metrics.get("float_test_accuracy_before_qat"),
        "reference_test_accuracy": network.metadata["reference_test_accuracy"],
        "test_samples": samples,
        "compare": summary, "train_seconds": train_seconds,
        # Times mean little on a busy machine: the 1-minute load average at the end says how busy it was.
        "load_average": round(os.getloadavg()[0], 1),
        "commands": _command(name, args).format(samples=samples),
        "versions": {"lava_deploy": lava_deploy.__version__, "python": platform.python_version()},
    }
    write_card(name, figures)
    return figures


def write_card(name: str, figures: dict) -> None:
    """Add the layer table and the Loihi 2 check (fit and energy on 200 test samples); write figures.json and the card."""
    figures["layers"] = info(HERE / name / "model.net")["layers"]
    result = check(HERE / name / "model.net", dataset=figures["dataset"], samples=200)
    energy = result.energy.to_dict()
    figures["loihi2_check"] = {"cores": result.fit.cores, "chips": result.fit.chips,
                               "deployable": result.deployable, "problems": result.fit.problems,
                               "samples": energy["activity"]["samples"], "activity": energy["activity"],
                               "energy_nj": energy["energy_nj"]}
    folder = HERE / name
    (folder / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    (folder / "README.md").write_text(card(figures))


#: model -> time steps of the family trained beside it for the accuracy-against-T plot.
FAMILIES = {"digits-cnn-t3": (1, 2, 3, 4)}


def build_family(name: str) -> list[dict]:
    """Train the model's architecture at every T of its family; write family.json beside the model."""
    args = MODELS[name]
    data = load_dataset(args["dataset"])
    family = []
    for T in FAMILIES[name]:
        trained = train(TrainConfig(**{**args, "bits": T}), progress=False, dataset=data)
        info_ = trained.info
        network = convert_model(trained.model, info_.input_shape, info_.input_bits, info_.class_names)
        result = simulate(network, args["dataset"], "reference")
        family.append({"time_steps": T, "float_test_accuracy": trained.test_accuracy,
                       "reference_test_accuracy": result.accuracy, "spikes_per_sample": result.spikes_per_sample,
                       "latency_steps": network.latency_steps, "test_samples": len(result.labels)})
        print(f"{name} family T={T}: float {trained.test_accuracy:.4f} reference {result.accuracy:.4f} "
              f"spikes/sample {result.spikes_per_sample:.1f}", flush=True)
    (HERE / name / "family.json").write_text(json.dumps(family, indent=2))
    return family


#: How a card names each model family.
FAMILY_NAMES = {"mlp": "MLP", "cnn": "CNN (VGG-style)", "resnet": "ResNet (basic blocks, identity and projection shortcuts)",
                "vit": "Vision Transformer (pre-norm blocks: signed neurons, products of spike trains, integer softmax, "
                       "LayerNorm and GELU units; docs/transformer-arithmetic.md)"}
#: What a card adds for a model family, after its figures.
FAMILY_NOTES = {"vit": (
    "The float accuracy is the quantized float twin's: the model computing with every stage rounded as the "
    "export rounds it, which is exactly the integer network (docs/transformer-arithmetic.md, section 5); both are "
    "measured on all 10,000 test images. Products and function units have no Loihi 2 neurocore: the check below "
    "places them on embedded cores or the host and counts their operations.\n\n")}


def _inputs(row: dict) -> str:
    """A layer's inputs for the card: its shortcut, and for a graph its source and a product's operand."""
    parts = []
    if row.get("source") not in (None, -1, row["index"] - 1) or row.get("operand") is not None:
        parts.append(f"layer {row['source']}" if row["source"] != -1 else "input")
    if row.get("operand") is not None:
        parts.append(f"x layer {row['operand']}")
    if row.get("skip_from") is not None:
        parts.append(f"{'+ layer' if parts else 'from layer'} {row['skip_from']}")
    return " ".join(parts)


def _kind(row: dict) -> str:
    """The synapse kind, and the node's unit where it is not the accumulate-emit neuron."""
    return row["kind"] if row.get("neuron") in (None, "accumulate-emit", "readout") else f"{row['kind']} > {row['neuron']}"


def card(f: dict) -> str:
    """The model card in markdown."""
    c = f["compare"]
    rows = "\n".join(f"| {r['index']} | {_kind(r)} | {tuple(r['input_shape'])} | {tuple(r['output_shape'])} | "
                     f"{r['fan_in']} | {r['weight_exp']} | 2^{r['scale_exp']} | {r['headroom_bits']} | "
                     f"{_inputs(r)} |" for r in f["layers"])
    inputs = "inputs" if f["model"] == "vit" else "shortcut"
    gap = f["float_test_accuracy"] - f["reference_test_accuracy"]
    return f"""# {f['name']}

QCFS {FAMILY_NAMES[f['model']]} on `{f['dataset']}`, converted to an integer spiking network that Lava runs spike for spike.

| | |
|---|---|
| dataset | `{f['dataset']}` ({OFFICIAL_SPLITS.get(f['dataset'], 'fixed 80/20 split')}; test split used below) |
| time steps T | {f['time_steps']} (QCFS levels {2 ** f['time_steps'] - 1}) |
| input | {f['input_bits']}-bit pixels as {f['time_steps']} digit planes, most significant first |
| float QCFS test accuracy | {f['float_test_accuracy']:.4f} (before 8-bit fine-tuning: {f['float_test_accuracy_before_qat']:.4f}) |
| integer reference test accuracy | {f['reference_test_accuracy']:.4f} (full test split; float minus integer: {100 * gap:.2f} points) |
| Lava CPU accuracy ({c['samples']} samples) | {c['accuracy']['lava_cpu']:.4f} (reference on the same samples: {c['accuracy']['reference']:.4f}) |
| spike agreement Lava vs reference | {c['spike_agreement']:.6f} |
| prediction agreement | {c['prediction_agreement']:.4f} |
| spikes per sample | {c['spikes_per_sample']['reference']:.1f} |
| latency | {c['latency_steps']['lava_cpu']} steps; a new sample every {c['steps_per_sample']['lava_cpu']} steps |
| Lava CPU wall time | {c['seconds_per_sample']['lava_cpu'] * 1000:.1f} ms per sample (2 cores{_load(f)}) |
| training time | {f['train_seconds']:.0f} s (2 cores{_load(f, 'train_load_average')}) |

{FAMILY_NOTES.get(f['model'], '')}## Layers

| # | type | input (C,H,W) | output | fan-in | weight exp | scale S | 24-bit headroom | {inputs} |
|---|---|---|---|---|---|---|---|---|
{rows}

## Loihi 2 check (`lava-deploy check`, estimate; not run on silicon)

{_check_section(f['loihi2_check'])}

## Reproduce

```bash
{_fetch_command(f['dataset'])}{f['commands']}
```

Files: `model.net` (netx HDF5, see docs/netx-format.md), `model.pt` (checkpoint), `figures.json` (all figures).
Generated by `netx_models/build.py` with lava-deploy {f['versions']['lava_deploy']}, Python {f['versions']['python']}.
"""


def _load(f: dict, key: str = "load_average") -> str:
    """The load the times were measured under, where it was recorded and the cores were shared (the training's
    own where a checkpoint was trained apart, ``train_load_average``)."""
    load = f.get(key, f.get("load_average"))
    return f", shared: load average {load}" if isinstance(load, str) or (load and load > 2.5) else ""


def _fetch_command(dataset: str) -> str:
    """The data fetch a card's commands need first, if any."""
    return f"lava-deploy data fetch {dataset}\n" if dataset in OFFICIAL_SPLITS else ""


def _check_section(c: dict) -> str:
    e, a = c["energy_nj"], c["activity"]
    verdict = "deployable as is" if c["deployable"] else "**not deployable as is**: " + "; ".join(c["problems"])
    return (f"{c['cores']} neurocore(s) on {c['chips']} chip(s); {verdict}.\n"
            f"Per sample ({c['samples']} test samples): {a['spikes']:.1f} spikes (input digits included), "
            f"{a['synaptic_ops']:.0f} synaptic operations, "
            + (f"{a['unit_operations']:.0f} operations on embedded cores or the host, "
               if a.get("unit_operations") else "")
            + f"{e['total']:.1f} nJ with first-generation Loihi's "
            f"published per-operation energies, against {a['macs']} MACs = {e['ann_fp32']:.1f} nJ (fp32) / "
            f"{e['ann_int8']:.1f} nJ (int8) as a dense ANN (docs/loihi2-resources.md).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), help="build only these models")
    parser.add_argument("--samples", type=int, default=None, help="test samples for the Lava comparison (default: all)")
    parser.add_argument("--trained-in", type=float, metavar="SECONDS",
                        help="with --only NAME: its checkpoint in place was trained by the card's command in SECONDS; "
                             "export and measure it without training again")
    parser.add_argument("--cards-only", action="store_true",
                        help="keep the trained models and their figures; redo the check and rewrite the cards")
    args = parser.parse_args()
    if args.cards_only:
        for name in args.only or MODELS:
            write_card(name, json.loads((HERE / name / "figures.json").read_text()))
        return
    for name in args.only or MODELS:
        figures = build(name, args.samples, args.trained_in)
        print(f"{name}: float {figures['float_test_accuracy']:.4f}  reference {figures['reference_test_accuracy']:.4f}"
              f"  spike agreement {figures['compare']['spike_agreement']:.6f}")
        if name in FAMILIES:
            build_family(name)


if __name__ == "__main__":
    main()
