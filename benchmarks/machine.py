"""The machine and versions a benchmark ran on, recorded beside its figures."""
from __future__ import annotations

import os
import platform

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
