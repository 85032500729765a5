"""Files written whole or not at all, only where the user meant them to go."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from lava_deploy.errors import DeployError


def check_output_file(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse, before any work, an output file that cannot be written or would overwrite an input.

    The folder must exist and take a new file (tried, not guessed: permission
    bits say nothing for root or a read-only mount); the path must not be a
    folder, nor any of ``inputs``.

    Raises:
        DeployError: one line naming the path and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise DeployError(f"output {path} is a folder; give a file name")
    for source in inputs:
        if Path(source).exists() and path.exists() and os.path.samefile(source, path):
            raise DeployError(f"output {path} is the input file {source}; choose another name")
    _check_writable_folder(path.parent if str(path.parent) else Path("."), f"output {path}")
    return path


def check_output_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and refuse one that is a file or cannot take new files (one line)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DeployError(f"{folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create folder {folder}: {exc.strerror}") from None
    _check_writable_folder(folder, f"folder {folder}")
    return folder


def _check_writable_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise DeployError(f"{what}: folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DeployError(f"{what}: cannot write into folder {folder} ({exc.strerror})") from None


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error it is removed.

    A reader never sees a half-written file, and a failed or interrupted run
    leaves nothing behind.

    Raises:
        DeployError: the folder cannot take the file (one line).
    """
    path = Path(path)
    check_output_file(path)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent) or ".", prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
