"""bncourse.data: IDX parsing and validation, SHA-256-checked downloads (offline, fetch injected), sources."""

from __future__ import annotations

import gzip
import hashlib
import shutil
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
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
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


def _server(files: dict[str, bytes], calls: list[str]):
    """A fetch function serving ``files`` by name (the "network"), logging the URLs asked for."""
    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise OSError(f"404 {url}")
        Path(dest).write_bytes(files[name])
    return fetch


def test_download_verified_fetches_once_and_verifies(tmp_path):
    content = b"hello IDX"
    digest = hashlib.sha256(content).hexdigest()
    calls: list[str] = []
    fetch = _server({"f.gz": content}, calls)
    p = bd.download_verified("f.gz", digest, tmp_path, mirrors=("http://m1/",), fetch_fn=fetch)
    assert p == tmp_path / "f.gz" and p.read_bytes() == content
    p2 = bd.download_verified("f.gz", digest, tmp_path, mirrors=("http://m1/",), fetch_fn=fetch)
    assert p2 == p and calls == ["http://m1/f.gz"]  # cached: no second fetch
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.gz"]  # no temporary files left


def test_download_verified_mismatch_raises_and_keeps_nothing(tmp_path):
    calls: list[str] = []
    fetch = _server({"f.gz": b"tampered"}, calls)
    expected = hashlib.sha256(b"original").hexdigest()
    with pytest.raises(ValueError, match="SHA-256") as info:
        bd.download_verified("f.gz", expected, tmp_path, mirrors=("http://m1/", "http://m2/"), fetch_fn=fetch)
    assert expected in str(info.value)
    assert calls == ["http://m1/f.gz", "http://m2/f.gz"]  # tried every mirror
    assert list(tmp_path.iterdir()) == []  # the bad download is not kept


def test_download_verified_replaces_corrupt_cache_and_uses_next_mirror(tmp_path):
    good = b"the real bytes"
    digest = hashlib.sha256(good).hexdigest()
    (tmp_path / "f.gz").write_bytes(b"the real byt")  # truncated earlier download in the cache
    calls: list[str] = []
    files = {"f.gz": good}

    def fetch(url, dest):  # first mirror is down, second serves the good file
        calls.append(url)
        if url.startswith("http://down/"):
            raise OSError("connection refused")
        _server(files, [])(url, dest)

    p = bd.download_verified("f.gz", digest, tmp_path, mirrors=("http://down/", "http://ok/"), fetch_fn=fetch)
    assert p.read_bytes() == good and calls == ["http://down/f.gz", "http://ok/f.gz"]


def test_download_verified_offline_message(tmp_path):
    def offline(url, dest):
        raise OSError("Name or service not known")
    with pytest.raises(OSError, match="Offline.*digits"):
        bd.download_verified("f.gz", "0" * 64, tmp_path, mirrors=("http://m/",), fetch_fn=offline)


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


def test_load_mnist_through_injected_fetch(tmp_path, monkeypatch):
    """The whole "mnist" path offline: the pinned digests are swapped for those of fake files."""
    served = tmp_path / "server"
    arrays = _fake_mnist_folder(served)
    files = {p.name: p.read_bytes() for p in served.iterdir()}
    calls: list[str] = []
    monkeypatch.setattr(bd, "fetch", _server(files, calls))
    monkeypatch.setattr(bd, "MNIST_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    bd.clear_cache()
    d = load_images("mnist", cache_dir=tmp_path / "cache", n_val=5, verbose=False)
    assert d.source == "mnist" and d.x_train.shape == (25, 784) and d.x_test.shape == (10, 784)
    np.testing.assert_array_equal(d.y_test, arrays[IDX_FILES[3]])
    np.testing.assert_allclose(d.x_test, arrays[IDX_FILES[2]].reshape(10, -1) / 255.0, rtol=1e-7)
    assert len(calls) == 4
    bd.clear_cache()
    load_images("mnist", cache_dir=tmp_path / "cache", n_val=5, verbose=False)
    assert len(calls) == 4  # verified files in the disk cache are reused
    bd.clear_cache()


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


def test_auto_falls_back_to_digits_with_one_line(tmp_path, capsys):
    bd.clear_cache()
    d = load_images("auto", path=tmp_path / "missing")
    out = capsys.readouterr().out.strip().splitlines()
    assert d.source == "digits"
    assert len(out) == 1 and "not found" in out[0] and "apt install dataset-fashion-mnist" in out[0] \
        and "digits" in out[0]
    load_images("auto", path=tmp_path / "missing", verbose=False)
    assert capsys.readouterr().out == ""


def test_auto_uses_an_installed_folder(tmp_path, capsys):
    _fake_mnist_folder(tmp_path)
    bd.clear_cache()
    d = load_images("auto", path=tmp_path, n_val=5)
    out = capsys.readouterr().out.strip().splitlines()
    assert d.source == "fashion-mnist" and d.x_train.shape == (25, 784)
    assert len(out) == 1 and out[0].startswith("bncourse.data: using Fashion-MNIST from") and str(tmp_path) in out[0]
    bd.clear_cache()


@pytest.mark.skipif(not (bd.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    d = load_images("fashion-mnist")
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
