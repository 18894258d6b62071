"""bncourse.data: IDX parsing and validation, sources; the packaged/cache/mirror chain is in test_data_download."""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from bncourse import data as bd
from bncourse.data import IDX_FILES, load_images, read_idx, sha256_file, write_idx


def _idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes() + payload


# ------------------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    raw = _idx_bytes(0x08, images.shape, images.tobytes())  # written by hand, not by write_idx
    path = tmp_path / ("a.gz" if compress else "a")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, images)


def test_read_idx_big_endian_types(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    path = tmp_path / "i32"
    path.write_bytes(_idx_bytes(0x0C, values.shape, values.astype(">i4").tobytes()))
    out = read_idx(path)
    assert out.dtype == np.int32 and out.dtype.byteorder in ("=", "<", "|")
    np.testing.assert_array_equal(out, values)
    f = np.array([0.5, -1.25], dtype=np.float64)
    write_idx(tmp_path / "f.gz", f)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.gz"), f)


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x00\x00", "only 2 bytes"),
        (b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc", "magic number"),
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc", "unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + (3).to_bytes(4, "big"), "truncated IDX header"),
        (b"\x00\x00\x08\x02" + (3).to_bytes(4, "big") + (4).to_bytes(4, "big") + bytes(11), "truncated"),
        (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(5), "trailing bytes"),
        (b"\x00\x00\x0c\x01" + (2).to_bytes(4, "big") + bytes(4), r"shape \(2,\) of int32 = 8 bytes"),
    ],
)
def test_read_idx_rejects_bad_files_naming_the_file(tmp_path, raw, match):
    path = tmp_path / "bad-file-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_gzip(tmp_path):
    good = gzip.compress(_idx_bytes(0x08, (100,), bytes(range(100))))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------------------------- sha256


def test_sha256_file_matches_hashlib(tmp_path):
    blob = np.random.default_rng(1).bytes(3_000_001)
    path = tmp_path / "blob"
    path.write_bytes(blob)
    assert sha256_file(path, chunk_size=4096) == hashlib.sha256(blob).hexdigest()
    assert sha256_file(path) == hashlib.sha256(blob).hexdigest()


def _fake_mnist_folder(folder: Path, n_train=30, n_test=10, hw=(28, 28), compress=True) -> dict:
    rng = np.random.default_rng(3)
    arrays = {
        IDX_FILES[0]: rng.integers(0, 256, size=(n_train, *hw), dtype=np.uint8),
        IDX_FILES[1]: rng.integers(0, 10, size=n_train, dtype=np.uint8),
        IDX_FILES[2]: rng.integers(0, 256, size=(n_test, *hw), dtype=np.uint8),
        IDX_FILES[3]: rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        write_idx(folder / (stem + (".gz" if compress else "")), arr)
    return arrays


def test_pinned_mnist_digests_are_the_published_ones():
    assert bd.MNIST_SHA256["train-images-idx3-ubyte.gz"].startswith("440fcabf73cc546fa21475e81ea3702")
    assert set(bd.MNIST_SHA256) == {s + ".gz" for s in IDX_FILES}
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in bd.MNIST_SHA256.values())


# ---------------------------------------------------------------------------------------- load_images


def test_load_idx_folder_raw_files_and_layouts(tmp_path):
    arrays = _fake_mnist_folder(tmp_path / "raw", n_train=40, n_test=6, hw=(5, 4), compress=False)
    bd.clear_cache()
    d = load_images("idx", path=tmp_path / "raw", n_val=8, seed=1, flatten=False)
    assert d.image_shape == (1, 5, 4) and d.x_train.shape == (32, 1, 5, 4) and d.x_val.shape == (8, 1, 5, 4)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    # the split is a partition of the original training set
    all_x = np.concatenate([d.x_train, d.x_val]).reshape(40, -1)
    orig = arrays[IDX_FILES[0]].reshape(40, -1) / np.float32(255)
    assert sorted(map(bytes, all_x.astype(np.float32))) == sorted(map(bytes, orig.astype(np.float32)))


def test_load_idx_mismatched_counts(tmp_path):
    _fake_mnist_folder(tmp_path)
    write_idx(tmp_path / (IDX_FILES[1] + ".gz"), np.zeros(29, dtype=np.uint8))
    bd.clear_cache()
    with pytest.raises(ValueError, match="30 train images but 29 labels"):
        load_images("idx", path=tmp_path, n_val=5)


def test_load_idx_needs_path_and_all_files(tmp_path):
    with pytest.raises(ValueError, match="needs path="):
        load_images("idx")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_images("idx", path=tmp_path)
    with pytest.raises(ValueError, match="unknown source"):
        load_images("cifar")


def test_digits_shapes_split_and_seed():
    bd.clear_cache()
    d = load_images("digits")
    assert d.source == "digits" and d.image_shape == (1, 8, 8) and d.n_features == 64
    assert d.x_train.shape == (1237, 64) and d.x_val.shape == (200, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.x_train.min() >= 0.0 and d.x_train.max() == pytest.approx(1.0)
    assert set(np.unique(d.y_train)) == set(range(10))
    again = load_images("digits")
    assert again is d  # in-process cache
    other = load_images("digits", seed=1)
    assert not np.array_equal(other.y_val, d.y_val)  # a different validation split ...
    np.testing.assert_array_equal(other.x_test, d.x_test)  # ... and the same test set
    bd.clear_cache()
    fresh = load_images("digits")
    assert fresh is not d
    np.testing.assert_array_equal(fresh.x_val, d.x_val)  # same seed, same split
    img = load_images("digits", flatten=False)
    assert img.x_train.shape == (1237, 1, 8, 8)
    np.testing.assert_array_equal(img.x_train.reshape(1237, -1), d.x_train)
    with pytest.raises(ValueError, match="n_val"):
        load_images("digits", n_val=5000)


def test_auto_falls_back_to_digits_with_a_visible_notice(tmp_path, capsys):
    bd.clear_cache()
    d = load_images("auto", path=tmp_path / "missing")
    out = capsys.readouterr().out.strip().splitlines()
    assert d.source == "digits"
    assert len(out) == 1 and "NOTICE" in out[0] and "not found" in out[0] \
        and "apt install dataset-fashion-mnist" in out[0] and "digits" in out[0]
    load_images("auto", path=tmp_path / "missing", verbose=False)
    assert "NOTICE" in capsys.readouterr().out  # never a silent switch of data set


def test_auto_offline_falls_back_with_notice(tmp_path, monkeypatch, capsys):
    """No package, empty cache, unreachable mirrors: digits, and it says so."""
    monkeypatch.setenv("BNCOURSE_DATASETS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("BNCOURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(bd, "FASHION_MNIST", bd.RemoteDataset("fashion-mnist", bd.FASHION_MNIST.files,
                                                              ("http://127.0.0.1:9/",)))
    monkeypatch.setitem(bd._REMOTE, "fashion-mnist", (bd.FASHION_MNIST, bd.FASHION_MNIST_CLASSES))
    bd.clear_cache()
    d = load_images("auto", verbose=False)
    assert d.source == "digits"
    assert "NOTICE" in capsys.readouterr().out
    bd.clear_cache()


def test_fashion_mnist_folder_with_other_data_is_rejected(tmp_path):
    """A folder of the user's that claims to be Fashion-MNIST is verified like the packaged one."""
    _fake_mnist_folder(tmp_path)
    bd.clear_cache()
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: decompressed SHA-256 [0-9a-f]{64} != expected "
                                         + bd.FASHION_MNIST_PAYLOAD_SHA256["train-images-idx3-ubyte.gz"]):
        load_images("fashion-mnist", path=tmp_path, n_val=5)


@pytest.mark.skipif(not (bd.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setenv("BNCOURSE_DATASETS_DIR", str(bd.FASHION_MNIST_DIR.parent))
    d = load_images("fashion-mnist")
    assert d.origin == str(bd.FASHION_MNIST_DIR)
    assert d.x_train.shape == (55000, 784) and d.x_val.shape == (5000, 784) and d.x_test.shape == (10000, 784)
    assert np.bincount(d.y_test).tolist() == [1000] * 10
    assert d.class_names[9] == "Ankle boot"


def test_corrupt_real_format_file_is_reported(tmp_path):
    _fake_mnist_folder(tmp_path)
    target = tmp_path / (IDX_FILES[2] + ".gz")
    raw = gzip.decompress(target.read_bytes())
    target.write_bytes(gzip.compress(raw[:-7]))
    bd.clear_cache()
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: IDX payload truncated"):
        load_images("idx", path=tmp_path, n_val=5)
    shutil.rmtree(tmp_path)


# ------------------------------------------------------------------------------- every fault, a ValueError


def test_corrupt_gzip_body_is_a_value_error(tmp_path):
    good = gzip.compress(_idx_bytes(0x08, (4000,), bytes(range(250)) * 16))
    broken = bytearray(good)
    broken[20:60] = b"\xff" * 40  # the deflate stream itself (zlib.error, not OSError)
    path = tmp_path / "body.gz"
    path.write_bytes(bytes(broken))
    with pytest.raises(ValueError, match="corrupt gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    crc = bytearray(good)
    crc[-8] ^= 0xFF  # a wrong CRC-32 in the trailer
    path.write_bytes(bytes(crc))
    with pytest.raises(ValueError, match="corrupt gzip data.*CRC"):
        read_idx(path)


def test_idx_dimensions_that_overflow_are_a_value_error(tmp_path):
    huge = (2**32 - 1).to_bytes(4, "big")
    path = tmp_path / "overflow-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + huge * 3 + bytes(16))  # 2**96 float32 values claimed
    with pytest.raises(ValueError, match=r"payload truncated: header says shape \(4294967295, 4294967295, "
                                         r"4294967295\)") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_a_directory_where_a_file_belongs(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz")


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 1, -1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int8), r"label -1 at index 2 is outside the class range non-negative"),
    (np.arange(10, dtype=np.float32), "labels must be integers, got float32"),
])
def test_bad_labels_name_the_file(tmp_path, labels, match):
    _fake_mnist_folder(tmp_path, n_test=10)
    write_idx(tmp_path / (IDX_FILES[3] + ".gz"), labels)
    bd.clear_cache()
    with pytest.raises(ValueError, match=match) as info:
        load_images("idx", path=tmp_path, n_val=5)
    assert IDX_FILES[3] in str(info.value)


def test_labels_outside_the_class_range(tmp_path):
    images = np.zeros((3, 2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"lab.gz: label 10 at index 1 is outside the class range \[0, 10\)"):
        bd._check_arrays([images, np.array([0, 1, 2], np.uint8), images, np.array([0, 10, 2], np.uint8)],
                         ["img.gz", "y.gz", "timg.gz", "lab.gz"], "folder", 10)


@pytest.mark.parametrize("images, match", [
    (np.full((10, 28, 28), 300, dtype=np.int16), r"int16 image values must be 8-bit pixel values \[0, 255\]; found min 300"),
    (np.full((10, 28, 28), 1.5, dtype=np.float32), r"float32 image values must be \[0, 1\]"),
    (np.full((10, 28, 28), np.nan, dtype=np.float64), "non-finite"),
])
def test_image_values_outside_their_range(tmp_path, images, match):
    _fake_mnist_folder(tmp_path, n_test=10)
    write_idx(tmp_path / (IDX_FILES[2] + ".gz"), images)
    bd.clear_cache()
    with pytest.raises(ValueError, match=match) as info:
        load_images("idx", path=tmp_path, n_val=5)
    assert IDX_FILES[2] in str(info.value)


def test_float_images_in_range_are_kept(tmp_path):
    _fake_mnist_folder(tmp_path, n_test=10)
    images = np.linspace(0, 1, 10 * 28 * 28, dtype=np.float32).reshape(10, 28, 28)
    write_idx(tmp_path / (IDX_FILES[2] + ".gz"), images)
    bd.clear_cache()
    d = load_images("idx", path=tmp_path, n_val=5)
    np.testing.assert_array_equal(d.x_test, images.reshape(10, -1))
    bd.clear_cache()


# ------------------------------------------------------------------------ gzip bombs and absurd labels

def _bomb(shape: tuple[int, ...], extra_mib: int) -> bytes:
    """A gzip file whose IDX header declares ``shape`` (uint8) but that expands ``extra_mib`` MiB
    further: gzip members of 1 MiB of zeros (about 1 KiB each) after the real one."""
    zeros = gzip.compress(bytes(1 << 20), mtime=0)
    return gzip.compress(_idx_bytes(0x08, shape, bytes(math.prod(shape))), mtime=0) + zeros * extra_mib


def test_gzip_bomb_stops_at_the_declared_size(tmp_path):
    """3 MiB of gzip expanding to 3 GiB, with a header that declares 100 bytes: a ValueError naming the
    file, raised after reading about the declared size (no MemoryError, no gigabytes allocated)."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_bomb((10, 10), 3 << 10))
    assert path.stat().st_size < 4 << 20
    started = time.perf_counter()
    with pytest.raises(ValueError, match="expands beyond the 112 bytes its IDX header declares") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert time.perf_counter() - started < 5.0


def test_gzip_header_declaring_too_much_is_refused(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (1 << 20, 1 << 12), b"")))
    with pytest.raises(ValueError, match=r"huge.gz: IDX header declares \d+ bytes, more than") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_multi_member_gzip_still_reads(tmp_path):
    payload = _idx_bytes(0x08, (6,), bytes(range(6)))
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(payload[:7]) + gzip.compress(payload[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(6))


def test_absurd_label_is_a_clear_error(tmp_path):
    """The label 2**31 - 1 would make 2**31 class names: an error naming the file, at once."""
    _fake_mnist_folder(tmp_path, n_test=10)
    labels = np.zeros(10, dtype=np.int32)
    labels[4] = 2**31 - 1
    write_idx(tmp_path / (IDX_FILES[3] + ".gz"), labels)
    bd.clear_cache()
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"label 2147483647 at index 4 is beyond the 65536 classes") as info:
        load_images("idx", path=tmp_path, n_val=5)
    assert IDX_FILES[3] in str(info.value)
    assert time.perf_counter() - started < 5.0
