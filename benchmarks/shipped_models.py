"""Every shipped model side by side: accuracy, T, latency, spikes, operations and Lava time per sample.

Collects the figures `netx_models/build.py` measured for each card (figures.json):
the integer reference's test accuracy on the whole test split, Lava's on the
samples it ran, the pipeline's latency in steps, spikes (input digits included)
and synaptic operations per sample from `lava-deploy check` (200 test samples),
the operations a Transformer's products and function units need off the
neurocores, and Lava CPU milliseconds per sample (under the load recorded
with them). Writes benchmarks/results/shipped_models.{md,json}.

    .venv/bin/python benchmarks/shipped_models.py
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def rows() -> list[dict]:
    """One row per shipped model, from its figures.json."""
    out = []
    for path in sorted((ROOT / "netx_models").glob("*/figures.json")):
        f = json.loads(path.read_text())
        c, activity = f["compare"], f["loihi2_check"]["activity"]
        out.append({"model": f["name"], "family": f["model"], "dataset": f["dataset"], "time_steps": f["time_steps"],
                    "float_test_accuracy": f["float_test_accuracy"],
                    "reference_test_accuracy": f["reference_test_accuracy"],
                    "lava_accuracy": c["accuracy"]["lava_cpu"], "lava_samples": c["samples"],
                    "spike_agreement": c["spike_agreement"], "latency_steps": c["latency_steps"]["lava_cpu"],
                    "spikes_per_sample": activity["spikes"], "synaptic_ops_per_sample": activity["synaptic_ops"],
                    "off_chip_ops_per_sample": activity.get("unit_operations", 0.0),
                    "lava_ms_per_sample": 1000 * c["seconds_per_sample"]["lava_cpu"],
                    "load_average": f.get("load_average")})
    return out


def table(found: list[dict]) -> str:
    """The markdown table."""
    lines = ["# The shipped models side by side", "",
             "From each card's figures (`netx_models/*/figures.json`, measured by `netx_models/build.py`). Accuracy: "
             "the integer reference on the whole test split (Lava equals it spike for spike on the samples it ran). "
             "Spikes (input digits included), synaptic operations and the operations of products and function units "
             "(embedded cores or the host; a Transformer's) are per sample, counted by `lava-deploy check` on 200 "
             "test samples. Lava ms per sample: the CPU simulator, pipelined, on 2 shared cores (load average in "
             "brackets where recorded).", "",
             "| model | dataset | T | float | integer | Lava (samples) | latency (steps) | spikes/sample | "
             "synaptic ops/sample | off-neurocore ops/sample | Lava ms/sample |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        load = f" (load average {r['load_average']})" if r["load_average"] else ""
        lines.append(f"| {r['model']} | {r['dataset']} | {r['time_steps']} | {r['float_test_accuracy']:.4f} | "
                     f"{r['reference_test_accuracy']:.4f} | {r['lava_accuracy']:.4f} ({r['lava_samples']}) | "
                     f"{r['latency_steps']} | {r['spikes_per_sample']:.0f} | {r['synaptic_ops_per_sample']:.0f} | "
                     f"{r['off_chip_ops_per_sample']:.0f} | {r['lava_ms_per_sample']:.1f}{load} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    found = rows()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shipped_models.json").write_text(json.dumps(found, indent=2))
    (RESULTS / "shipped_models.md").write_text(table(found))
    print(table(found))


if __name__ == "__main__":
    main()
