"""Run a shipped model on Loihi 2 and compare it with the integer reference, end to end (INRC systems).

    .venv/bin/python hardware/run_and_compare.py netx_models/digits-cnn-t3/model.net \\
        --dataset digits --samples 200 --partition oheogulch

Steps: check the network fits (exit 1 if not), run the reference and the chip
on the same test samples, write everything under hardware/results/<model>-<UTC
time>/ (check.json, compare.json, environment.json) and print the comparison.
Exit 0 only when every prediction and every logit agree. Without lava-loihi it
stops at once with one line and exit 2: nothing here pretends to be hardware.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lava_deploy.check import check
from lava_deploy.compare import compare
from lava_deploy.errors import DeployError
from lava_deploy.simulate.loihi2 import require_loihi2

RESULTS = Path(__file__).parent / "results"


def environment(partition: str | None) -> dict:
    """Where the run happened: host, partition and the versions of everything involved."""
    versions = {}
    for package in ("lava-deploy", "lava-nc", "lava-loihi", "lava-dl", "torch", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"host": socket.gethostname(), "partition": partition, "python": platform.python_version(),
            "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    """Check, run on Loihi 2, compare with the reference, and record the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", help="netx HDF5 file, e.g. netx_models/digits-cnn-t3/model.net")
    parser.add_argument("--dataset", help="test split to run (default: the network's own dataset)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--partition", help="SLURM partition of the Loihi 2 system (default: the scheduler's)")
    args = parser.parse_args(argv)
    try:
        require_loihi2()
        fit = check(args.network, dataset=args.dataset, samples=args.samples)
        if not fit.deployable:
            print(fit.table())
            return 1
        dataset = args.dataset or fit.dataset
        result = compare(args.network, dataset=dataset, samples=args.samples, backend="loihi2",
                         partition=args.partition)
    except DeployError as exc:
        print(f"run_and_compare: error: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = RESULTS / f"{Path(args.network).parent.name}-{stamp}"
    folder.mkdir(parents=True)
    (folder / "check.json").write_text(json.dumps(fit.to_dict(), indent=2))
    (folder / "compare.json").write_text(json.dumps(result.summary(), indent=2))
    (folder / "environment.json").write_text(json.dumps(environment(args.partition), indent=2))
    print(result.table())
    print(f"results: {folder}")
    return 0 if result.prediction_agreement == 1.0 and result.logit_agreement == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
