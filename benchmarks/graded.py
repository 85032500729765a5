"""Graded spikes against bit-serial spikes on every shipped model, measured in one run.

For each shipped model (netx_models/*/model.pt):

1. ``lava-deploy export model.pt -o graded.net --encoding graded``: the same
   checkpoint as a graded network. Its integers must equal the shipped
   bit-serial file's (every weight, bias and neuron parameter), or the
   benchmark stops.
2. ``lava-deploy compare graded.net --samples 200 --json``, the command itself:
   Lava against the reference, payload for payload (spike agreement) and
   prediction for prediction.
3. Lava samples per second, bit-serial against graded, on a longer stream
   (``--stream``, 1,000 samples: the first test samples, the digits' 360
   repeated; a 200-sample run of a small network lasts a third of a second,
   which measures noise): simulation time only (compilation and start-up
   excluded, the same for both), best of ``--repeats`` alternating runs, spikes not recorded; every run's
   logits must equal the reference's. On the whole stream, and in the steady
   state (samples added over seconds added from a 20-sample stream: a run's
   first steps carry a fixed cost). The wall time of each call (start-up
   included) is recorded beside it, and the CPU time the simulation used in
   all of Lava's processes: it measures the simulation's work whatever else
   loads the machine, where simulation time measures the load too.
4. Latency in steps, steps per sample, spikes, synaptic operations, neuron
   updates and the estimated energy per sample (``lava-deploy check``'s counts
   and published per-operation figures) for both encodings.

The load average is recorded before and after every Lava measurement, and the
table says how loaded the machine was, how many cores a run keeps busy and how
far repeated runs of one measurement spread.

    .venv/bin/python benchmarks/graded.py [--models digits-cnn-t3 ...] [--samples 200] [--stream 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lava_deploy.check import estimate_energy, measure_activity
from lava_deploy.network import BIT_SERIAL, GRADED, SpikingNetwork
from lava_deploy.network.reference import run_reference
from lava_deploy.simulate import load_network, simulation_inputs
from lava_deploy.simulate.lava_cpu.runner import run_lava
from machine import machine_info, write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
#: Shipped models that export graded (a Transformer does not: its signed neurons, products and units send
#: bit-serially).
MODELS = sorted(p.parent.name for p in (ROOT / "netx_models").glob("*/model.pt")
                if json.loads((p.parent / "figures.json").read_text())["model"] != "vit")
#: Issue 17's target: graded Lava samples per second over bit-serial ones, at T = 3.
TARGET_SPEEDUP = 2.5
#: Samples of the short stream whose time, taken from the full stream's, leaves the steady state's.
SHORT = 20


def _cli(*args: str) -> str:
    """Run ``lava-deploy ARGS`` from this working tree and return its stdout (stop on failure)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "lava_deploy", *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"lava-deploy {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _same_integers(a: SpikingNetwork, b: SpikingNetwork) -> bool:
    """Every weight, bias and neuron parameter equal, edge for edge."""
    if len(a.layers) != len(b.layers) or (a.time_steps, a.input_bits) != (b.time_steps, b.input_bits):
        return False
    for x, y in zip(a.layers, b.layers):
        if (x.levels, x.neuron.scale_exp, len(x.inputs)) != (y.levels, y.neuron.scale_exp, len(y.inputs)) \
                or not np.array_equal(x.bias, y.bias):
            return False
        if any(e.source != f.source or not np.array_equal(e.synapse.weight, f.synapse.weight)
               for e, f in zip(x.inputs, y.inputs)):
            return False
    return True


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def speed(networks: dict[str, SpikingNetwork], codes: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    """Lava samples per second of each encoding, on a stream of all ``codes`` and in the steady state.

    A run's simulation time holds a fixed part besides its steps (each model's first step loads its
    weights and files); the steady state is the difference between the stream and a short stream of
    :data:`SHORT` samples: samples added over seconds added. Best of ``repeats`` alternating runs each, in
    simulation (wall) time and in the CPU time of all of Lava's processes.
    """
    lengths = {"stream": len(codes), "short": SHORT}
    runs: dict[str, dict[str, list[dict]]] = {name: {length: [] for length in lengths} for name in networks}
    for _ in range(repeats):
        for length, n in lengths.items():
            expected = run_reference(networks[BIT_SERIAL], codes[:n]).logits
            for name, network in networks.items():
                before = _load()
                result = run_lava(network, codes[:n], labels[:n], record_spikes=False)
                if not np.array_equal(result.logits, expected):
                    raise SystemExit(f"Lava's {name} logits differ from the reference")
                runs[name][length].append({"run_seconds": result.run_seconds, "cpu_seconds": result.cpu_seconds,
                                           "wall_seconds": result.wall_seconds, "steps_run": result.steps_run,
                                           "load_before": before, "load_after": _load()})
    out: dict = {}
    for name, measured in runs.items():
        best = {length: {key: min(r[key] for r in measured[length]) for key in ("run_seconds", "cpu_seconds",
                                                                                 "wall_seconds")}
                for length in lengths}
        added = lengths["stream"] - lengths["short"]
        out[name] = {"samples_per_second": lengths["stream"] / best["stream"]["run_seconds"],
                     "steady_samples_per_second": added / (best["stream"]["run_seconds"]
                                                           - best["short"]["run_seconds"]),
                     "steady_samples_per_cpu_second": added / (best["stream"]["cpu_seconds"]
                                                               - best["short"]["cpu_seconds"]),
                     "wall_samples_per_second": lengths["stream"] / best["stream"]["wall_seconds"],
                     "runs": measured}
    for key in ("samples_per_second", "steady_samples_per_second", "steady_samples_per_cpu_second",
                "wall_samples_per_second"):
        out[key.replace("samples_per", "speedup_per")] = out[GRADED][key] / out[BIT_SERIAL][key]
    return out


def activity(network: SpikingNetwork, codes: np.ndarray) -> dict:
    """Steps, spikes, synaptic operations and energy per sample (the counts ``lava-deploy check`` reports)."""
    estimate = estimate_energy(measure_activity(network, codes))
    a = estimate.activity
    return {"latency_steps": network.latency_steps, "steps_per_sample": network.steps_per_sample,
            "spikes_per_sample": a.spikes, "synaptic_ops_per_sample": a.synaptic_ops,
            "neuron_updates_per_sample": a.neuron_updates, "payload_bits": a.payload_bits,
            "energy_nj": {"synaptic": estimate.synaptic_nj, "neuron_updates": estimate.neuron_nj,
                          "spikes": estimate.spike_nj, "total": estimate.total_nj}}


def _stream(codes: np.ndarray, labels: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``length`` samples, repeated from the start where there are fewer (the digits' split: 360)."""
    reps = -(-length // len(labels))
    return np.concatenate([codes] * reps)[:length], np.concatenate([labels] * reps)[:length]


def measure(name: str, samples: int, stream: int, repeats: int, folder: Path) -> dict:
    """Every figure for one shipped model."""
    shipped = load_network(ROOT / "netx_models" / name / "model.net")
    path = folder / f"{name}-graded.net"
    _cli("export", str(ROOT / "netx_models" / name / "model.pt"), "-o", str(path), "--encoding", GRADED)
    graded = load_network(path)
    if graded.encoding != GRADED or not _same_integers(shipped, graded):
        raise SystemExit(f"{name}: the graded export's integers differ from the shipped file's")
    compared = json.loads(_cli("compare", str(path), "--samples", str(samples), "--json", "--quiet"))
    print(f"{name}: graded compare: spike agreement {compared['spike_agreement']}, prediction agreement "
          f"{compared['prediction_agreement']}, logit agreement {compared['logit_agreement']}", flush=True)
    split = simulation_inputs(shipped, shipped.metadata["dataset"])
    codes, labels = (x[:samples] for x in split)
    networks = {BIT_SERIAL: shipped, GRADED: graded}
    row = {"model": name, "samples": len(labels), "time_steps": shipped.time_steps,
           "compare_graded": {key: compared[key] for key in ("samples", "encoding", "accuracy", "spike_agreement",
                                                              "prediction_agreement", "logit_agreement",
                                                              "latency_steps", "steps_per_sample")},
           "lava": speed(networks, *_stream(*split, stream), repeats),
           **{name_: activity(network, codes) for name_, network in networks.items()}}
    lava = row["lava"]
    print(f"{name}: Lava {lava[BIT_SERIAL]['samples_per_second']:.1f} samples/s bit-serial, "
          f"{lava[GRADED]['samples_per_second']:.1f} graded ({lava['speedup_per_second']:.2f}x; steady state "
          f"{lava['steady_speedup_per_second']:.2f}x, per CPU second {lava['steady_speedup_per_cpu_second']:.2f}x); "
          "latency "
          f"{row[BIT_SERIAL]['latency_steps']} -> {row[GRADED]['latency_steps']} steps", flush=True)
    return row


def _verdict(value: float) -> str:
    return f"{'met' if value >= TARGET_SPEEDUP else 'not met'} ({value:.2f}x; target >= {TARGET_SPEEDUP}x)"


def write(report: dict) -> None:
    """JSON and a markdown table."""
    machine = write_report(RESULTS, "graded", report)
    runs = [run for r in report["rows"] for e in (BIT_SERIAL, GRADED) for length in r["lava"][e]["runs"].values()
            for run in length]
    loads = [x for run in runs for x in run["load_before"][:1] + run["load_after"][:1]]
    cores = np.median([run["cpu_seconds"] / run["run_seconds"] for run in runs])
    seconds = {length: [[x["run_seconds"] for x in r["lava"][e]["runs"][length]]
                        for r in report["rows"] for e in (BIT_SERIAL, GRADED)] for length in ("stream", "short")}
    spread = {length: max(max(s) / min(s) for s in measurements) for length, measurements in seconds.items()}
    b, g = BIT_SERIAL, GRADED
    lines = ["# Graded spikes against bit-serial spikes (measured in one run)", "",
             f"Machine: {machine}. The 1-minute load average on its {report['machine']['cpu_count']} cores was "
             f"{min(loads):.1f} to {max(loads):.1f} during the Lava runs (each run's figures are in graded.json); "
             "Lava's own processes count in it: a run keeps a median "
             f"{cores:.2f} cores busy (CPU seconds of all its processes over simulation seconds). Lava samples per "
             f"second are simulation time only (compilation excluded), best of {report['repeats']} alternating "
             f"runs, on a stream of {report['stream']} test samples (the digits' 360 repeated); every run's logits "
             "equal the reference's. The "
             f"slowest run of a measurement took up to {spread['stream']:.2f}x its best ({spread['short']:.2f}x "
             f"among the {SHORT}-sample runs). Wall time measures any other work "
             "on the machine as well as ours: the CPU time of all of Lava's processes during the simulation "
             "measures the simulation's own work.", "",
             "## Graded export against the reference (`lava-deploy compare NET --samples "
             f"{report['samples']} --json`)", "",
             "| model | encoding | accuracy (Lava) | spike (payload) agreement | prediction agreement | "
             "identical logits |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        c = r["compare_graded"]
        lines.append(f"| {r['model']} | {c['encoding']} | {c['accuracy']['lava_cpu']:.4f} | {c['spike_agreement']} | "
                     f"{c['prediction_agreement']} | {c['logit_agreement']} |")
    lines += ["", "## Speed and latency", "",
              f"Samples per second on the {report['stream']}-sample stream, and in the steady state: the samples "
              f"added over the seconds added from a {SHORT}-sample stream to it (a run's first steps load "
              "weights and files: a fixed cost, which weighs more on graded mode's shorter runs). Wall: simulation "
              "time; CPU: the CPU time of all of Lava's processes.", "",
              "| model | T | latency (steps) bit-serial / graded | steps per sample bit-serial / graded | "
              "samples/s bit-serial / graded (stream) | graded / bit-serial (stream) | steady samples/s "
              "bit-serial / graded | graded / bit-serial (steady, wall) | graded / bit-serial (steady, CPU) | "
              "wall samples/s incl. start-up bit-serial / graded |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lava = r["lava"]
        lines.append(f"| {r['model']} | {r['time_steps']} | {r[b]['latency_steps']} / {r[g]['latency_steps']} | "
                     f"{r[b]['steps_per_sample']} / {r[g]['steps_per_sample']} | "
                     f"{lava[b]['samples_per_second']:.1f} / {lava[g]['samples_per_second']:.1f} | "
                     f"{_verdict(lava['speedup_per_second'])} | {lava[b]['steady_samples_per_second']:.1f} / "
                     f"{lava[g]['steady_samples_per_second']:.1f} | {_verdict(lava['steady_speedup_per_second'])} | "
                     f"{_verdict(lava['steady_speedup_per_cpu_second'])} | "
                     f"{lava[b]['wall_samples_per_second']:.2f} / {lava[g]['wall_samples_per_second']:.2f} |")
    lines += ["", "## Activity and estimated energy per sample", "",
              "Counted by the integer reference on the same samples (`lava-deploy check`): a bit-serial code "
              "sends one binary spike per 1-bit, a graded code one graded spike when it is not zero; each "
              "spike is one synaptic operation per synapse it reaches. Energies are first-generation Loihi's "
              "per-operation figures (docs/loihi2-resources.md); no figure is published for a graded "
              "synaptic operation or message, so they are charged as binary ones (an assumption: the graded "
              "column is a lower bound if a payload costs more).", "",
              "| model | encoding | spikes | synaptic ops | neuron updates | payload bits (input, hidden) | "
              "energy nJ (synaptic + neuron + spikes) |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        for e in (b, g):
            a = r[e]
            nj = a["energy_nj"]
            lines.append(f"| {r['model']} | {e} | {a['spikes_per_sample']:.1f} | {a['synaptic_ops_per_sample']:.0f} | "
                         f"{a['neuron_updates_per_sample']} | {a['payload_bits'][0]}, "
                         f"{'/'.join(str(x) for x in a['payload_bits'][1:])} | {nj['total']:.1f} "
                         f"({nj['synaptic']:.1f} + {nj['neuron_updates']:.1f} + {nj['spikes']:.2f}) |")
    (RESULTS / "graded.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--stream", type=int, default=1000,
                        help="samples per speed run (a 200-sample run of a small network lasts 0.3 s: noise)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating Lava runs per encoding (best counts)")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the table from the JSON")
    parser.add_argument("--add", action="store_true",
                        help="keep graded.json's rows of the models not named in --models (measured earlier)")
    args = parser.parse_args()
    if args.from_json:
        write(json.loads((RESULTS / "graded.json").read_text()))
        return
    report = {"rows": [], "samples": args.samples, "stream": args.stream, "repeats": args.repeats,
              "machine": machine_info()}
    if args.add:
        report["rows"] = [r for r in json.loads((RESULTS / "graded.json").read_text())["rows"]
                          if r["model"] not in args.models]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:        # written after each model: a long run interrupted keeps what it measured
            report["rows"].append(measure(name, args.samples, args.stream, args.repeats, Path(tmp)))
            write(report)


if __name__ == "__main__":
    main()
