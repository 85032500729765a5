"""Sharded runs: the wall time of a whole test split on Lava's CPU simulator, one run against shards in parallel.

For each model, the same samples run as one Lava run (``--workers 1``), as two
shards run at once on this machine (``--workers 2``) and as two Ray tasks on a
local Ray instance (``--ray --workers 2``; its start-up counted). Wall time is
the caller's, start-up and compilation included: what a user waits. The
configurations alternate, repeated, and the ratios use each one's best run, so
that other work on the machine weighs on all of them alike; the load is
recorded beside every run: the 1-minute load average before it, and the cores
that other processes kept busy during it (/proc/stat's busy time less this
benchmark's own CPU time, per second of wall time).

Every sharded result must equal the single run's logits, or the benchmark stops.

    .venv/bin/python benchmarks/sharding.py [--models digits-cnn-t3 mnist5k-cnn-t3] [--repeats 3] [--no-ray]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Optional

import numpy as np

from lava_deploy.simulate import LOCAL_RAY, load_network, network_dataset, simulate, simulation_inputs
from machine import machine_info, write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
#: Issue 17's target: two workers on two cores.
TARGET = 1.6
#: (name, workers, Ray address)
CONFIGS = [("1 worker", 1, None), ("2 workers", 2, None), ("Ray local, 2 shards", 2, LOCAL_RAY)]


def _busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot, over every core (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]        # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and its reaped descendants (the Lava workers and their processes)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def timed_run(path: Path, samples: Optional[int], workers: int, ray_address: Optional[str]) -> tuple[dict, np.ndarray]:
    """One run's wall time, CPU time and the machine's load around it; and its logits."""
    load = os.getloadavg()[0]
    busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
    result = simulate(path, backend="lava-cpu", samples=samples, workers=workers, ray_address=ray_address)
    wall = time.perf_counter() - start
    own = _own_seconds() - own
    others = max(0.0, _busy_seconds() - busy - own)
    return {"wall_seconds": wall, "cpu_seconds": own, "load_average_before": load,
            "other_processes_cores": others / wall}, result.logits


def measure(name: str, samples: Optional[int], repeats: int, configs: list) -> dict:
    """Every configuration ``repeats`` times, alternating; logits checked against the single run's."""
    path = ROOT / "netx_models" / name / "model.net"
    network = load_network(path)
    count = len(simulation_inputs(network, network_dataset(network), samples)[1])
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in configs}
    expected = None
    for _ in range(repeats):
        for label, workers, ray_address in configs:
            run, logits = timed_run(path, samples, workers, ray_address)
            expected = logits if expected is None else expected
            if not np.array_equal(logits, expected):
                raise SystemExit(f"{name}: {label} gave other logits than one run")
            runs[label].append(run)
            print(f"{name} {label}: {run['wall_seconds']:.1f} s wall, load {run['load_average_before']:.1f}, "
                  f"other processes {run['other_processes_cores']:.2f} cores", flush=True)
    best = {label: min(r["wall_seconds"] for r in rs) for label, rs in runs.items()}
    median = {label: statistics.median(r["wall_seconds"] for r in rs) for label, rs in runs.items()}
    single = configs[0][0]
    return {"model": name, "samples": count, "runs": runs, "best_wall_seconds": best,
            "median_wall_seconds": median,
            "speedup_best": {label: best[single] / best[label] for label in best if label != single},
            "speedup_median": {label: median[single] / median[label] for label in median if label != single},
            "single_run_cores_used": statistics.median(r["cpu_seconds"] / r["wall_seconds"] for r in runs[single])}


def _cores_range(runs: list[dict]) -> str:
    return f"{min(x['other_processes_cores'] for x in runs):.2f} to {max(x['other_processes_cores'] for x in runs):.2f}"


def write(report: dict) -> None:
    """JSON and a markdown table with the target's verdict."""
    machine = write_report(RESULTS, "sharding", report)
    labels = [label for label, _, _ in CONFIGS if any(label in r["best_wall_seconds"] for r in report["rows"])]
    lines = ["# Sharded runs: one Lava run against shards in parallel", "",
             f"Machine: {machine}. Wall time of the whole call (start-up and compilation included), best of "
             f"{report['repeats']} alternating repeats (median in brackets); logits identical in every run.", "",
             "| model | samples | " + " | ".join(f"{label} s" for label in labels) + " | "
             + " | ".join(f"speed-up, {label}" for label in labels[1:]) + " | one run's cores used |",
             "|---|---|" + "---|" * (2 * len(labels) - 1) + "---|"]
    for r in report["rows"]:
        times = [f"{r['best_wall_seconds'][label]:.1f} ({r['median_wall_seconds'][label]:.1f})" for label in labels]
        ratios = [f"{r['speedup_best'][label]:.2f}x ({r['speedup_median'][label]:.2f}x)" for label in labels[1:]]
        lines.append(f"| {r['model']} | {r['samples']} | " + " | ".join(times + ratios)
                     + f" | {r['single_run_cores_used']:.2f} |")
    lines += ["", f"Target (issue 17): 2 workers on 2 cores >= {TARGET}x.", ""]
    for r in report["rows"]:
        value = r["speedup_best"]["2 workers"]
        lines.append(f"- {r['model']}: {'met' if value >= TARGET else 'not met'} ({value:.2f}x best, "
                     f"{r['speedup_median']['2 workers']:.2f}x median)")
    lines += ["", "What bounds it: two shards do at least one run's work (each also starts and compiles its own "
              "Lava run), and two runs at once share the same cores, so the speed-up with 2 workers cannot exceed "
              f"{report['machine']['cpu_count']} / (one run's cores used). CPU seconds of this benchmark's "
              "processes (best run's), 1 worker / 2 workers:", ""]
    for r in report["rows"]:
        cpu = {label: min(r["runs"][label], key=lambda x: x["wall_seconds"])["cpu_seconds"]
               for label in ("1 worker", "2 workers")}
        lines.append(f"- {r['model']}: {cpu['1 worker']:.1f} / {cpu['2 workers']:.1f} s; bound "
                     f"{report['machine']['cpu_count'] / r['single_run_cores_used']:.2f}x")
    on_ray = {label for label, _, address in CONFIGS if address}
    local = [run for r in report["rows"] for label, rs in r["runs"].items() if label not in on_ray for run in rs]
    ray = [run for r in report["rows"] for label, rs in r["runs"].items() if label in on_ray for run in rs]
    lines += ["", "Load while measuring: 1-minute load average before a run "
              f"{min(x['load_average_before'] for x in local + ray):.1f} to "
              f"{max(x['load_average_before'] for x in local + ray):.1f} (Lava's own processes count in it); "
              "cores kept busy by processes other than this benchmark's during a run "
              f"{_cores_range(local)} (of {report['machine']['cpu_count']})"
              + (f", during the Ray runs {_cores_range(ray)} (Ray's own daemons, which are not this benchmark's "
                 "children)." if ray else "."), ""]
    if report.get("note"):
        lines += [report["note"], ""]
    (RESULTS / "sharding.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits-cnn-t3", "mnist5k-cnn-t3"])
    parser.add_argument("--samples", type=int, help="samples per model (default: the whole test split)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray configuration")
    parser.add_argument("--note", help="a line for the table, e.g. what else ran on the machine")
    parser.add_argument("--from-json", action="store_true", help="only redraw the table from the JSON")
    args = parser.parse_args()
    if args.from_json:
        write(json.loads((RESULTS / "sharding.json").read_text()))
        return
    configs = CONFIGS[:2] if args.no_ray else CONFIGS
    write({"rows": [measure(name, args.samples, args.repeats, configs) for name in args.models],
           "repeats": args.repeats, "note": args.note, "machine": machine_info()})


if __name__ == "__main__":
    main()
