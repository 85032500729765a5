"""IDX files, the format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values in
big-endian C order. Files are hostile until validated: the header is checked
against the file's size (or, gzipped, against exactly the bytes the stream
holds) and against a byte budget before the data is read.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from lava_deploy.errors import DeployError

#: IDX type code -> numpy dtype (big-endian, as the format stores them).
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_TYPE_CODES = {dtype: code for code, dtype in IDX_DTYPES.items()}
#: Most dimensions an IDX header may declare (images have 3: count, height, width).
MAX_IDX_DIMENSIONS = 4
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, max_bytes: int) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain, told by its first bytes) into a native-endian array.

    Raises:
        DeployError: not an IDX file, a header whose data would exceed ``max_bytes``, or a file
            holding fewer or more bytes than its header declares (one line naming the file).
    """
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if compressed else raw
            shape, dtype = _read_header(stream, path)
            size = math.prod(shape) * dtype.itemsize
            if size > max_bytes:
                raise DeployError(f"{path}: its IDX header declares {shape} values of {size} bytes, more than "
                                  f"the {max_bytes} bytes allowed")
            if not compressed and Path(path).stat().st_size != stream.tell() + size:
                raise DeployError(f"{path}: the file holds {Path(path).stat().st_size - stream.tell()} bytes of "
                                  f"data, its IDX header declares {size}")
            data = stream.read(size)
            if len(data) != size or stream.read(1):
                raise DeployError(f"{path}: the gzip stream holds {'fewer' if len(data) != size else 'more'} "
                                  f"bytes than its IDX header declares ({size})")
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DeployError(f"{path}: no such file") from None
        raise DeployError(f"{path}: unreadable ({exc})") from None
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a plain (not gzipped) IDX file; the caller makes the write atomic."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _IDX_TYPE_CODES.get(dtype)
    if code is None or not 1 <= array.ndim <= MAX_IDX_DIMENSIONS:
        raise DeployError(f"IDX cannot hold an array of dtype {array.dtype} and {array.ndim} dimensions")
    with open(path, "wb") as out:
        out.write(bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape))
        out.write(np.ascontiguousarray(array, dtype).tobytes())


def _read_header(stream, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype an IDX header declares."""
    magic = stream.read(4)
    if len(magic) != 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_DTYPES \
            or not 1 <= magic[3] <= MAX_IDX_DIMENSIONS:
        raise DeployError(f"{path}: not an IDX file (magic number {magic.hex() or 'missing'})")
    dims = stream.read(4 * magic[3])
    if len(dims) != 4 * magic[3]:
        raise DeployError(f"{path}: IDX header cut short")
    return struct.unpack(f">{magic[3]}I", dims), IDX_DTYPES[magic[2]]
