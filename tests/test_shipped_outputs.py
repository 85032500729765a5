"""The shipped models compute exactly what they computed when they were shipped.

Stored SHA-256 digests of every logit, every hidden activation code and every
spike the integer reference computes for each shipped model on its whole test
split (tests/data/shipped_output_hashes.json). Any change to reading, conversion
arithmetic or the reference that alters a single bit fails here. Lava is held
to the reference by the spike-for-spike tests. Regenerate the file only for a
deliberate change of a shipped model: ``python tests/test_shipped_outputs.py``.

Models of the full MNIST and Fashion-MNIST, which a fresh clone has not fetched,
are hashed on the first 200 images of their official test sets, kept in
tests/data/idx_heads/ as IDX files (written from the fetched data by
``python tests/test_shipped_outputs.py --heads``; checked against it by
tests/test_data_idx.py where it is fetched).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lava_deploy.data.datasets import IDX_DATASETS, IDX_FILES, load_dataset
from lava_deploy.data.idx import write_idx
from lava_deploy.simulate import load_network, simulation_inputs
from lava_deploy.network.reference import run_reference

ROOT = Path(__file__).resolve().parent
HASHES = ROOT / "data" / "shipped_output_hashes.json"
MODELS = ROOT.parent / "netx_models"
#: The first test images of each IDX dataset, in the data-folder layout (a 1-image training split).
IDX_HEADS = ROOT / "data" / "idx_heads"
IDX_HEAD_SAMPLES = 200


def hashed_dataset(dataset: str) -> str:
    """The dataset spec a shipped model is hashed on: its own, or the IDX heads for MNIST and Fashion-MNIST."""
    return f"{dataset}:{IDX_HEADS}" if dataset in IDX_DATASETS else dataset


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
    codes, labels = simulation_inputs(network, hashed_dataset(network.metadata["dataset"]))
    ref = run_reference(network, codes, spikes=True)
    return {"samples": len(labels), "logits": _digest([ref.logits.astype(np.int64)]),
            "codes": _digest([c.astype(np.int64) for c in ref.codes]),
            "spikes": _digest([np.packbits(s.astype(bool)) for s in ref.spikes])}


@pytest.mark.parametrize("name", sorted(json.loads(HASHES.read_text())))
def test_shipped_model_outputs_are_bit_identical_to_the_stored_hashes(name):
    assert output_hashes(name) == json.loads(HASHES.read_text())[name]


def write_idx_heads() -> None:
    """tests/data/idx_heads/: the first test images of each fetched IDX dataset, and one training image."""
    import gzip
    for name in IDX_DATASETS:
        data = load_dataset(name)
        folder = IDX_HEADS / IDX_DATASETS[name].folders[0]
        folder.mkdir(parents=True, exist_ok=True)
        heads = {"train": (data.x_train[:1], data.y_train[:1]),
                 "test": (data.x_test[:IDX_HEAD_SAMPLES], data.y_test[:IDX_HEAD_SAMPLES])}
        for split, (images, labels) in heads.items():
            for stem, array in zip(IDX_FILES[split], (np.rint(images[:, 0] * 255), labels)):
                write_idx(folder / stem, array.astype(np.uint8))
                (folder / f"{stem}.gz").write_bytes(gzip.compress((folder / stem).read_bytes(), mtime=0))
                (folder / stem).unlink()


if __name__ == "__main__":
    if sys.argv[1:] == ["--heads"]:
        write_idx_heads()
        sys.exit()
    names = sorted(p.parent.name for p in MODELS.glob("*/model.net"))
    json.dump({name: output_hashes(name) for name in names}, sys.stdout, indent=1)
