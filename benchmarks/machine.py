"""The machine and versions a benchmark ran on, recorded beside its figures."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

import lava_deploy


def machine_info() -> dict:
    """Python, torch, lava-deploy and lava-nc versions, CPU threads and processor."""
    try:
        from importlib.metadata import version
        lava = version("lava-nc")
    except Exception:  # noqa: BLE001 - Lava is optional for some benchmarks
        lava = None
    return {"python": platform.python_version(), "torch": torch.__version__, "lava_deploy": lava_deploy.__version__,
            "lava_nc": lava, "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def write_report(results: Path, name: str, report: dict) -> str:
    """Write ``report`` as ``results/name.json``; return its machine as one line for the markdown beside it."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(report, indent=2))
    return ", ".join(f"{k} {v}" for k, v in report["machine"].items())
