"""The shipped models compute exactly what they computed when they were shipped.

Stored SHA-256 digests of every logit, every hidden activation code and every
spike the integer reference computes for each shipped model on its whole test
split (tests/data/shipped_output_hashes.json). Any change to reading, conversion
arithmetic or the reference that alters a single bit fails here. Lava is held
to the reference by the spike-for-spike tests. Regenerate the file only for a
deliberate change of a shipped model: ``python tests/test_shipped_outputs.py``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lava_deploy.simulate import load_network, simulation_inputs
from lava_deploy.network.reference import run_reference

ROOT = Path(__file__).resolve().parent
HASHES = ROOT / "data" / "shipped_output_hashes.json"
MODELS = ROOT.parent / "netx_models"


def _digest(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def output_hashes(name: str) -> dict:
    """Digests of the reference's logits, hidden codes and spikes for a shipped model on its test split."""
    network = load_network(MODELS / name / "model.net")
    codes, labels = simulation_inputs(network, network.metadata["dataset"])
    ref = run_reference(network, codes, spikes=True)
    return {"samples": len(labels), "logits": _digest([ref.logits.astype(np.int64)]),
            "codes": _digest([c.astype(np.int64) for c in ref.codes]),
            "spikes": _digest([np.packbits(s.astype(bool)) for s in ref.spikes])}


@pytest.mark.parametrize("name", sorted(json.loads(HASHES.read_text())))
def test_shipped_model_outputs_are_bit_identical_to_the_stored_hashes(name):
    assert output_hashes(name) == json.loads(HASHES.read_text())[name]


if __name__ == "__main__":
    names = sorted(p.parent.name for p in MODELS.glob("*/model.net"))
    json.dump({name: output_hashes(name) for name in names}, sys.stdout, indent=1)
