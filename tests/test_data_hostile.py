"""Hostile dataset files: each gives one line naming the file, runs no code and stays under 1 GB.

Every file is built here, then all are loaded by one child process that forks
once per file under a 1 GiB address-space limit (RLIMIT_AS) and reports the
exception and its peak resident memory (ru_maxrss, the pages the child itself
touched). The limit counts everything mapped, inherited or not: an allocation
that the file's size does not justify fails there with MemoryError, which the
loader must never turn into a DeployError.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lava_deploy.data import datasets as data_module

GIB = 1 << 30
REPO = Path(__file__).resolve().parents[1]
MARKER = "MARKER"          # a payload that runs creates this file in its case's folder

CHILD = r"""
import json, os, resource, sys
from lava_deploy.errors import DeployError
from lava_deploy.data.datasets import load_dataset

for spec in sys.argv[2:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        limit = int(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            load_dataset(spec)
            outcome = {"error": None, "message": ""}
        except BaseException as exc:       # MemoryError included: the test reports it
            outcome = {"error": type(exc).__name__, "message": str(exc)}
        outcome["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with os.fdopen(write, "w") as pipe:
            pipe.write(json.dumps(outcome))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    print(text if text else json.dumps({"error": f"child died (status {status})", "message": "", "maxrss": 0}))
"""

CASES: dict[str, tuple] = {}


def case(name: str, match: str):
    """Register a builder ``(folder) -> (spec, file name the message must hold)`` and the message it expects."""
    def register(build):
        CASES[name] = (build, match)
        return build
    return register


# ---- payloads ------------------------------------------------------------------------------------

class Reduced:
    """Pickles as the given ``__reduce__`` value: (callable, args[, state])."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def call(function, *args) -> Reduced:
    """What a hostile pickle calls on load: ``function(*args)``."""
    return Reduced(function, args)


def code_payload(folder: Path, kind: str) -> Reduced:
    """A call that creates ``folder / MARKER`` when unpickled: the four ways in that the cases try."""
    from numpy.testing._private.utils import runstring
    folder.mkdir(parents=True, exist_ok=True)
    touch = f"open({str(folder / MARKER)!r}, 'w').close()"
    if kind == "os.system":
        return call(os.system, f"touch {folder / MARKER}")
    if kind == "builtins.exec":
        return call(builtins.exec, touch)
    if kind == "runstring":                  # a numpy function that runs code: allowed by 'numpy.*'
        return call(runstring, touch, {})
    assert kind == "numpy.load"              # another: loads a .npy whose object array runs code
    np.save(folder / "evil.npy", np.array([call(builtins.exec, touch)], dtype=object), allow_pickle=True)
    return call(np.load, str(folder / "evil.npy"), None, True)


def write_cifar(folder: Path, replace: dict[str, object] | None = None, raw: dict[str, bytes] | None = None) -> str:
    """A small, valid CIFAR-10 folder with some of its files replaced by objects or by raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    content = {name: {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8),
                      b"labels": [int(v) for v in rng.integers(0, 10, 6)]}
               for name in ("data_batch_1", "test_batch")}
    content["batches.meta"] = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    content.update(replace or {})
    for name, obj in content.items():
        (folder / name).write_bytes(pickle.dumps(obj))
    for name, blob in (raw or {}).items():
        (folder / name).write_bytes(blob)
    return f"cifar10:{folder}"


def batch(**fields) -> dict:
    """A valid batch of 6 images with some fields replaced (keyword names are the keys, as bytes)."""
    rng = np.random.default_rng(1)
    out = {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4, 5, 6]}
    out.update({key.encode(): value for key, value in fields.items()})
    return out


def write_npz(folder: Path, members: dict[str, bytes | np.ndarray], compression=zipfile.ZIP_STORED) -> str:
    """An npz whose members are arrays (saved as .npy) or raw .npy bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "d.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for key, value in members.items():
            if isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, value, allow_pickle=True)
                value = buffer.getvalue()
            archive.writestr(f"{key}.npy", value)
    return f"npz:{path}"


def npy_header(shape: tuple, dtype: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"shape": shape, "fortran_order": False, "descr": dtype})
    return buffer.getvalue()


def images(n: int = 10) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (n, 4, 4), dtype=np.uint8)


def labels(n: int = 10) -> np.ndarray:
    return np.arange(n) % 2


# ---- CIFAR-10 pickles that run code, crash numpy or allocate ---------------------------------------

@case("cifar os.system", "refusing to load 'posix.system'")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(data=code_payload(folder, "os.system"))}), "data_batch_1"


@case("cifar builtins.exec", "refusing to load 'builtins.exec'")
def _(folder):
    return write_cifar(folder, {"test_batch": code_payload(folder, "builtins.exec")}), "test_batch"


@case("cifar numpy runstring gadget", "refusing to load 'numpy.testing._private.utils.runstring'")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(data=code_payload(folder, "runstring"))}), "data_batch_1"


@case("cifar numpy.load allow_pickle gadget", "refusing to load 'numpy.load'")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(data=code_payload(folder, "numpy.load"))}), "data_batch_1"


@case("cifar meta os.system", "refusing to load 'posix.system'")
def _(folder):
    return write_cifar(folder, {"batches.meta": code_payload(folder, "os.system")}), "batches.meta"


@case("cifar object array with short state (segfaults numpy)", "not plain numbers")
def _(folder):
    from numpy.core.multiarray import _reconstruct
    short = Reduced(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1000,), np.dtype("O"), False, [1, 2]))
    return write_cifar(folder, {"data_batch_1": batch(data=short)}), "data_batch_1"


@case("cifar object array", "not plain numbers")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(data=np.arange(6 * 3072, dtype=object).reshape(6, 3072))}), \
        "data_batch_1"


@case("cifar object array holding a payload", "refusing to load 'builtins.exec'")
def _(folder):
    data = np.array([code_payload(folder, "builtins.exec")], dtype=object)
    return write_cifar(folder, {"data_batch_1": batch(data=data)}), "data_batch_1"


@case("cifar _reconstruct of 10**12 elements", "reconstruction numpy does not write")
def _(folder):
    from numpy.core.multiarray import _reconstruct
    return write_cifar(folder, {"test_batch": batch(data=call(_reconstruct, np.ndarray, (10 ** 12,), b"b"))}), \
        "test_batch"


@case("cifar ndarray called with 10**10 objects", "not callable")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(data=call(np.ndarray, (10 ** 10,), "O"))}), "test_batch"


@case("cifar memo index 2**29 (4 GiB memo)", "memo index")
def _(folder):
    return write_cifar(folder, raw={"data_batch_1": b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 29) + b"."}), \
        "data_batch_1"


@case("cifar 1.2 million empty lists", "MAX_PICKLE_OPCODES")
def _(folder):
    return write_cifar(folder, raw={"data_batch_1": b"\x80\x02" + b"]" * 1_200_000 + b"."}), "data_batch_1"


@case("cifar bytes claiming 1 TiB", "bytes8")
def _(folder):
    return write_cifar(folder, raw={"test_batch": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc."}), \
        "test_batch"


@case("cifar file over the size limit", "MAX_CIFAR_FILE_BYTES")
def _(folder):
    spec = write_cifar(folder)
    with open(folder / "data_batch_1", "r+b") as f:
        f.truncate(data_module.MAX_CIFAR_FILE_BYTES + 1)    # sparse: costs no disk
    return spec, "data_batch_1"


# ---- CIFAR-10 files that unpickle but are not a batch ------------------------------------------------

@case("cifar meta without label_names", "b'label_names' must list the 10 class names")
def _(folder):
    return write_cifar(folder, {"batches.meta": {b"num_vis": 3072}}), "batches.meta"


@case("cifar meta not a dict", "not a CIFAR-10 batches.meta")
def _(folder):
    return write_cifar(folder, {"batches.meta": [b"airplane"]}), "batches.meta"


@case("cifar meta with 3 names", "must list the 10 class names")
def _(folder):
    return write_cifar(folder, {"batches.meta": {b"label_names": [b"a", b"b", b"c"]}}), "batches.meta"


@case("cifar meta names not text", "class names must be a list of 1 to 1000 strings")
def _(folder):
    return write_cifar(folder, {"batches.meta": {b"label_names": list(range(10))}}), "batches.meta"


@case("cifar meta names not UTF-8", "not UTF-8")
def _(folder):
    return write_cifar(folder, {"batches.meta": {b"label_names": [b"\xff"] * 10}}), "batches.meta"


@case("cifar batch not a dict", "not a CIFAR-10 batch")
def _(folder):
    return write_cifar(folder, {"data_batch_1": [1, 2, 3]}), "data_batch_1"


@case("cifar data 3000 columns", "uint8 array of N x 3072")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(data=np.zeros((6, 3000), np.uint8))}), "data_batch_1"


@case("cifar data float", "uint8 array of N x 3072")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(data=np.zeros((6, 3072)))}), "test_batch"


@case("cifar label 10", "label 10 for 10 class names")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(labels=[0, 1, 2, 3, 4, 10])}), "data_batch_1"


@case("cifar label 10**9", "label 1000000000 for 10 class names")
def _(folder):
    return write_cifar(folder, {"data_batch_1": batch(labels=[0, 1, 2, 3, 4, 10 ** 9])}), "data_batch_1"


@case("cifar label -1", "non-negative integer labels")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(labels=[0, 1, 2, 3, 4, -1])}), "test_batch"


@case("cifar labels float", "non-negative integer labels")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(labels=[0.5] * 6)}), "test_batch"


@case("cifar labels ragged", "b'labels' must be a list of integers")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(labels=[[1], [1, 2], 3, 4, 5, 6])}), "test_batch"


@case("cifar 5 labels for 6 images", "one label per image")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(labels=[1, 2, 3, 4, 5])}), "test_batch"


@case("cifar labels an array", "b'labels' must be a list")
def _(folder):
    return write_cifar(folder, {"test_batch": batch(labels=np.arange(6))}), "test_batch"


@case("cifar truncated batch", "cannot read CIFAR-10 batch")
def _(folder):
    spec = write_cifar(folder)
    blob = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(blob[: len(blob) // 2])
    return spec, "data_batch_1"


# ---- npz -----------------------------------------------------------------------------------------

@case("npz empty", "holds no arrays")
def _(folder):
    folder.mkdir(parents=True)
    np.savez(folder / "d.npz")
    return f"npz:{folder / 'd.npz'}", "d.npz"


@case("npz truncated", "not a readable .npz")
def _(folder):
    spec = write_npz(folder, {"x": images(1000), "y": labels(1000)})
    blob = (folder / "d.npz").read_bytes()
    (folder / "d.npz").write_bytes(blob[: len(blob) // 2])
    return spec, "d.npz"


@case("npz corrupt deflate data", "not a readable .npz")
def _(folder):
    spec = write_npz(folder, {"x": np.random.default_rng(3).random((100, 8, 8)), "y": labels(100)},
                     zipfile.ZIP_DEFLATED)
    blob = bytearray((folder / "d.npz").read_bytes())
    blob[2000:2400] = bytes(400)
    (folder / "d.npz").write_bytes(bytes(blob))
    return spec, "d.npz"


@case("npz a .npy file", "not a readable .npz")
def _(folder):
    folder.mkdir(parents=True)
    np.save(folder / "d.npy", images())
    return f"npz:{folder / 'd.npy'}", "d.npy"


@case("npz member not npy", ".npy version \\(32, 103\\)")
def _(folder):
    return write_npz(folder, {"x": b"\x93NUMPY garbage" * 20, "y": labels()}), "d.npz"


@case("npz header of 931 GiB", "over the 4 GiB MEMORY_BUDGET")
def _(folder):
    return write_npz(folder, {"x": npy_header((10 ** 6, 1000, 1000), "|u1") + bytes(64), "y": labels()}), "d.npz"


@case("npz header of 0.9 GiB, member of 64 bytes", "declares 1000000000 bytes of data")
def _(folder):
    return write_npz(folder, {"x": npy_header((1000, 1000, 1000), "|u1") + bytes(64), "y": labels()}), "d.npz"


@case("npz header length of 4 GiB", "not a readable .npz")
def _(folder):
    return write_npz(folder, {"x": b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" * 100,
                              "y": labels()}), "d.npz"


@case("npz zip bomb of 255 KB", "MAX_COMPRESSION_RATIO")
def _(folder):
    folder.mkdir(parents=True)
    path = folder / "d.npz"
    count, chunk = 320_000, bytes(784 * 1000)            # 320,000 black 28x28 images: 251 MB of zeros
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("x.npy", "w") as member:
            member.write(npy_header((count, 28, 28), "|u1"))
            for _ in range(count // 1000):
                member.write(chunk)
        buffer = io.BytesIO()
        np.save(buffer, labels(count))
        archive.writestr("y.npy", buffer.getvalue())
    assert 240_000 < path.stat().st_size < 270_000
    return f"npz:{path}", "d.npz"


@case("npz lzma member", "compression method 14")
def _(folder):
    return write_npz(folder, {"x": images(), "y": labels()}, zipfile.ZIP_LZMA), "d.npz"


@case("npz label 10**9", "MAX_CLASSES = 1000")
def _(folder):
    return write_npz(folder, {"x": images(), "y": np.array([0] * 9 + [10 ** 9])}), "d.npz"


@case("npz label 5*10**7", "MAX_CLASSES = 1000")
def _(folder):
    return write_npz(folder, {"x": images(), "y": np.array([0] * 9 + [5 * 10 ** 7])}), "d.npz"


@case("npz label 5*10**7 with 3 class names", "label 50000000 for 3 class names")
def _(folder):
    return write_npz(folder, {"x": images(), "y": np.array([0] * 9 + [5 * 10 ** 7]),
                              "class_names": np.array(["a", "b", "c"])}), "d.npz"


@case("npz label -1", "non-negative integer labels")
def _(folder):
    return write_npz(folder, {"x": images(), "y": np.array([0] * 9 + [-1])}), "d.npz"


@case("npz labels float", "non-negative integer labels")
def _(folder):
    return write_npz(folder, {"x": images(), "y": np.zeros(10)}), "d.npz"


@case("npz object x running code", "'x' holds Python objects")
def _(folder):
    x = np.array([code_payload(folder, "builtins.exec")] * 10, dtype=object).reshape(10, 1, 1)
    return write_npz(folder, {"x": x, "y": labels()}), "d.npz"


@case("npz object y", "'y' holds Python objects")
def _(folder):
    return write_npz(folder, {"x": images(), "y": np.array([0] * 10, dtype=object)}), "d.npz"


@case("npz object class_names running code", "'class_names' holds Python objects")
def _(folder):
    names = np.array([code_payload(folder, "builtins.exec"), "b"], dtype=object)
    return write_npz(folder, {"x": images(), "y": labels(), "class_names": names}), "d.npz"


@case("npz 2000 class names", "class names must be a list of 1 to 1000 strings")
def _(folder):
    return write_npz(folder, {"x": images(), "y": labels(),
                              "class_names": np.array([str(i) for i in range(2000)])}), "d.npz"


@case("npz structured x", "images of dtype")
def _(folder):
    return write_npz(folder, {"x": np.zeros((10, 4, 4), dtype=[("a", "u1"), ("b", "f4")]), "y": labels()}), \
        "d.npz"


@case("npz complex x", "images of dtype complex128")
def _(folder):
    return write_npz(folder, {"x": np.zeros((10, 4, 4), complex), "y": labels()}), "d.npz"


@case("npz bool x", "images of dtype bool")
def _(folder):
    return write_npz(folder, {"x": np.zeros((10, 4, 4), bool), "y": labels()}), "d.npz"


for _value in ("nan", "inf", "-inf", "-0.5", "1.5"):
    @case(f"npz pixel {_value}", f"pixels range from .*{_value.lstrip('-')}")
    def _(folder, value=float(_value)):
        x = np.random.default_rng(4).random((10, 4, 4))
        x[3, 2, 1] = value
        return write_npz(folder, {"x": x, "y": labels()}), "d.npz"


@case("npz pixel 256", "pixels range from 0 to 256")
def _(folder):
    x = images().astype(np.int64)
    x[0, 0, 0], x[1, 0, 0] = 0, 256
    return write_npz(folder, {"x": x, "y": labels()}), "d.npz"


@case("npz images without pixels", "no pixels")
def _(folder):
    return write_npz(folder, {"x": np.zeros((10, 0, 4), np.uint8), "y": labels()}), "d.npz"


@case("npz 3 samples", "3 images; at least 5")
def _(folder):
    return write_npz(folder, {"x": images(3), "y": labels(3)}), "d.npz"


@case("npz 4 channels", "expected \\(N, H, W\\)")
def _(folder):
    return write_npz(folder, {"x": np.zeros((10, 4, 5, 4), np.uint8), "y": labels()}), "d.npz"


# ---- the tests -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[Path, str, dict]]:
    """Build every case's files, load them all in one forking child; per case: folder, file name, outcome."""
    base = tmp_path_factory.mktemp("hostile")
    built = {}
    for index, (name, (build, _)) in enumerate(CASES.items()):
        folder = base / f"case{index}"
        spec, file_name = build(folder)
        built[name] = (folder, file_name, spec)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", CHILD, str(GIB)] + [spec for *_, spec in built.values()],
                            capture_output=True, text=True, env=env, timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == len(built), result.stderr
    return {name: (folder, file_name, json.loads(line))
            for (name, (folder, file_name, _)), line in zip(built.items(), lines)}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_is_one_line_error(outcomes, name):
    folder, file_name, outcome = outcomes[name]
    assert not (folder / MARKER).exists(), "a payload ran"
    assert outcome["error"] == "DeployError", outcome
    assert outcome["maxrss"] < GIB
    message = outcome["message"]
    assert "\n" not in message and file_name in message, message
    assert re.search(CASES[name][1], message), message


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "runstring", "numpy.load"])
def test_payloads_run_when_unpickled_plainly(tmp_path, kind):
    """The payloads are live: plain pickle runs them and the marker appears."""
    pickle.loads(pickle.dumps(code_payload(tmp_path, kind)))
    assert (tmp_path / MARKER).exists()


def test_stratification_allocates_nothing_per_label_value():
    """Labels up to 5*10**7 reach the split only through code that trusts them; it must not count per value."""
    y = np.array([0, 1] * 20 + [5 * 10 ** 7])
    import sklearn.model_selection  # noqa: F401  (its import is not the split's memory)
    tracemalloc.start()
    try:
        data = data_module._split("t", np.zeros((len(y), 1, 2, 2)), y, ["c"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data.y_test) == 9 and peak < 10 << 20
