"""bncourse._download: packaged folder, then cache, then mirrors on 127.0.0.1 (real HTTP, no internet).

A tiny two-file data set with pinned digests stands in for Fashion-MNIST; the real digests are checked
against Debian's package where it is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bncourse import _download as dl
from bncourse import data as bd

PAYLOADS = {
    "a-idx1-ubyte.gz": bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes([1, 2, 3, 4, 5]),
    "b-idx1-ubyte.gz": bytes([0, 0, 8, 1]) + (300).to_bytes(4, "big") + bytes(range(256)) + bytes(44),
}
GOOD = {n: gzip.compress(p, mtime=0) for n, p in PAYLOADS.items()}
TINY = dl.RemoteDataset(
    "tiny",
    tuple(dl.RemoteFile(n, hashlib.sha256(p).hexdigest()) for n, p in PAYLOADS.items()),
    (),
)


class Mirror:
    """An HTTP server on 127.0.0.1: ``routes[path] = (status, body, announced Content-Length or None)``."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.log: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                mirror.log.append(self.path)
                status, body, length = mirror.routes.get(self.path, (404, b"not found", None))
                if status == 0:  # not HTTP at all
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, prefix: str, files: dict[str, bytes], **overrides: tuple[int, bytes, int | None]) -> str:
        for name, body in files.items():
            self.routes[f"/{prefix}/{name}"] = (200, body, None)
        for name, route in overrides.items():
            self.routes[f"/{prefix}/{name.replace('_', '-')}"] = route
        return f"{self.url}/{prefix}/"


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.server.shutdown()
    m.server.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty packaged folder and cache; progress bars off unless a test turns them on."""
    monkeypatch.setenv("BNCOURSE_DATASETS_DIR", str(tmp_path / "datasets"))
    monkeypatch.setenv("BNCOURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BNCOURSE_PROGRESS", "0")
    monkeypatch.delenv("BNCOURSE_MIRRORS", raising=False)
    return tmp_path


def _cache_listing(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "cache" / "tiny").iterdir())


def test_download_once_then_cache(env, mirror, monkeypatch):
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("good", GOOD))
    payloads, origin = dl.obtain(TINY)
    assert payloads == PAYLOADS and origin == str(env / "cache" / "tiny")
    assert _cache_listing(env) == sorted(GOOD)  # exactly the files, no .part left
    assert len(mirror.log) == 2
    payloads, _ = dl.obtain(TINY)
    assert payloads == PAYLOADS and len(mirror.log) == 2  # the second run makes no request


@pytest.mark.parametrize("fault, message", [
    ("truncated in transit", "truncated download (4 of"),
    ("truncated file", "truncated gzip data"),
    ("corrupt body", "corrupt gzip data"),
    ("other payload", "decompressed SHA-256"),
    ("not gzip", "decompressed SHA-256"),
    ("gzip bomb", "expands beyond the 308 bytes its IDX header declares"),
    ("http 404", "HTTP Error 404"),
    ("not http", "bad HTTP response"),
])
def test_bad_first_mirror_is_rejected_and_the_next_one_used(env, mirror, monkeypatch, capsys, fault, message):
    name = "b-idx1-ubyte.gz"
    good = GOOD[name]
    corrupt = bytearray(good)
    corrupt[12:30] = b"\x00" * 18
    routes = {
        "truncated in transit": (200, good[:4], len(good)),
        "truncated file": (200, good[: len(good) - 12], None),
        "corrupt body": (200, bytes(corrupt), None),
        "other payload": (200, gzip.compress(PAYLOADS[name][:-1] + b"\x07"), None),
        "not gzip": (200, b"<html>captive portal</html>", None),
        # 3 MiB that expand to 3 GiB: stopped at the size the header declares
        "gzip bomb": (200, good + gzip.compress(bytes(1 << 20), mtime=0) * 3072, None),
        "http 404": (404, b"", None),
        "not http": (0, b"SSH-2.0-OpenSSH\r\n", None),
    }
    bad = mirror.serve("bad", {"a-idx1-ubyte.gz": GOOD["a-idx1-ubyte.gz"]}, **{name: routes[fault]})
    monkeypatch.setenv("BNCOURSE_MIRRORS", bad + "," + mirror.serve("good", GOOD))
    payloads, _ = dl.obtain(TINY)
    assert payloads == PAYLOADS
    assert mirror.log == ["/bad/a-idx1-ubyte.gz", f"/bad/{name}", f"/good/{name}"]
    err = capsys.readouterr().err
    assert f"rejected {bad}{name}" in err and message in err and "trying the next mirror" in err
    assert _cache_listing(env) == sorted(GOOD)


def test_every_mirror_bad_raises_naming_file_and_digests(env, mirror, monkeypatch):
    name = "a-idx1-ubyte.gz"
    wrong = gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))
    m1 = mirror.serve("m1", {name: wrong})
    m2 = mirror.serve("m2", {name: GOOD[name][:-3]})
    monkeypatch.setenv("BNCOURSE_MIRRORS", f"{m1},{m2}")
    with pytest.raises(ValueError, match=f"no mirror served a valid {name}") as info:
        dl.obtain(TINY)
    text = str(info.value)
    assert f"{m1}{name}: decompressed SHA-256 {hashlib.sha256(gzip.decompress(wrong)).hexdigest()}" in text
    assert TINY.files[0].payload_sha256 in text and f"{m2}{name}" in text
    assert _cache_listing(env) == []  # nothing partial or wrong is kept


def test_offline_is_an_os_error_naming_every_url(env, monkeypatch):
    dead = "http://127.0.0.1:9/"  # the discard port: connection refused
    monkeypatch.setenv("BNCOURSE_MIRRORS", dead)
    with pytest.raises(OSError, match=r"could not download a-idx1-ubyte\.gz for tiny \(offline\?\); tried: "
                                      r"http://127\.0\.0\.1:9/a-idx1-ubyte\.gz"):
        dl.obtain(TINY)


def test_env_mirrors_come_before_builtin_ones(env, mirror, monkeypatch):
    builtin = mirror.serve("builtin", GOOD)
    first = mirror.serve("first", GOOD)
    monkeypatch.setenv("BNCOURSE_MIRRORS", f" {first.rstrip('/')} , ")  # spaces, no slash, empty entries
    assert dl.env_mirrors() == (first,)
    dl.obtain(dl.RemoteDataset("tiny", TINY.files, (builtin,)))
    assert all(p.startswith("/first/") for p in mirror.log)


def test_packaged_folder_comes_first_and_is_verified(env, mirror, monkeypatch):
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("good", GOOD))
    packaged = env / "datasets" / "tiny"
    packaged.mkdir(parents=True)
    for name, payload in PAYLOADS.items():  # recompressed differently from the mirror's files
        (packaged / name).write_bytes(gzip.compress(payload, compresslevel=1, mtime=12345))
    assert (packaged / "a-idx1-ubyte.gz").read_bytes() != GOOD["a-idx1-ubyte.gz"]
    payloads, origin = dl.obtain(TINY)
    assert payloads == PAYLOADS and origin == str(packaged) and mirror.log == []
    (packaged / "b-idx1-ubyte.gz").write_bytes(gzip.compress(PAYLOADS["b-idx1-ubyte.gz"][:-1] + b"\x01"))
    with pytest.raises(ValueError, match=r"tiny/b-idx1-ubyte\.gz: decompressed SHA-256"):
        dl.obtain(TINY)  # a damaged package is an error, not a silent download
    (packaged / "b-idx1-ubyte.gz").unlink()
    (packaged / "b-idx1-ubyte").write_bytes(PAYLOADS["b-idx1-ubyte.gz"])  # uncompressed is fine too
    assert dl.obtain(TINY)[0] == PAYLOADS


def test_corrupt_cache_entry_is_deleted_and_fetched_again(env, mirror, monkeypatch, capsys):
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("good", GOOD))
    cache = env / "cache" / "tiny"
    cache.mkdir(parents=True)
    (cache / "a-idx1-ubyte.gz").write_bytes(GOOD["a-idx1-ubyte.gz"][:-5])  # an old partial download
    (cache / "b-idx1-ubyte.gz").write_bytes(GOOD["b-idx1-ubyte.gz"])
    assert dl.obtain(TINY)[0] == PAYLOADS
    assert mirror.log == ["/good/a-idx1-ubyte.gz"]
    assert "deleted a corrupt cached file" in capsys.readouterr().err


def test_cache_path_that_is_a_directory(env, mirror, monkeypatch):
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("good", GOOD))
    (env / "cache" / "tiny" / "a-idx1-ubyte.gz").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"tiny/a-idx1-ubyte\.gz: is a directory where a data file belongs"):
        dl.obtain(TINY)
    assert mirror.log == []


def test_cache_folder_that_is_a_file(env, mirror, monkeypatch):
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("good", GOOD))
    (env / "cache").mkdir()
    (env / "cache" / "tiny").write_bytes(b"")
    with pytest.raises(ValueError, match="the data cache folder is a file"):
        dl.obtain(TINY)


def test_upstream_gz_digest_is_accepted_without_a_payload_digest():
    name = "a-idx1-ubyte.gz"
    spec = dl.RemoteFile(name, None, (hashlib.sha256(GOOD[name]).hexdigest(),))
    assert dl.verify_bytes(GOOD[name], spec, "x") == PAYLOADS[name]
    regz = gzip.compress(PAYLOADS[name], mtime=99)
    with pytest.raises(ValueError, match=f"x: SHA-256 {hashlib.sha256(regz).hexdigest()} is not a published digest"):
        dl.verify_bytes(regz, spec, "x")  # MNIST: no payload digest pinned, a re-gzipped file is refused


def test_progress_bar_and_its_switch(env, mirror, monkeypatch, capsys):
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("good", GOOD))
    monkeypatch.delenv("BNCOURSE_PROGRESS")
    dl.obtain(TINY)
    assert "b-idx1-ubyte.gz" in capsys.readouterr().err  # tqdm's bar, labelled with the file
    for p in (env / "cache" / "tiny").iterdir():
        p.unlink()
    monkeypatch.setenv("BNCOURSE_PROGRESS", "0")
    dl.obtain(TINY)
    assert capsys.readouterr().err == ""


def test_default_folders(monkeypatch, tmp_path):
    monkeypatch.delenv("BNCOURSE_DATASETS_DIR", raising=False)
    monkeypatch.delenv("BNCOURSE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.datasets_root() == Path("/usr/share/datasets")
    assert dl.cache_root() == tmp_path / "xdg" / "bncourse"


@pytest.mark.parametrize("source", ["fashion-mnist", "auto"])
def test_load_images_through_a_mirror(env, mirror, monkeypatch, capsys, source):
    """load_images end to end on a fake data set whose digests replace the real ones; "auto" downloads too."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 10, 30, dtype=np.uint8),
              rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8)]
    files = {}
    for stem, arr in zip(bd.IDX_FILES, arrays):
        path = env / (stem + ".gz")
        bd.write_idx(path, arr)
        files[path.name] = path.read_bytes()
    fake = dl.RemoteDataset("fashion-mnist", tuple(
        dl.RemoteFile(n, hashlib.sha256(gzip.decompress(b)).hexdigest()) for n, b in files.items()), ())
    monkeypatch.setitem(bd._REMOTE, "fashion-mnist", (fake, bd.FASHION_MNIST_CLASSES))
    monkeypatch.setenv("BNCOURSE_MIRRORS", mirror.serve("m", files))
    bd.clear_cache()
    d = bd.load_images(source, n_val=5)
    assert d.source == "fashion-mnist" and d.x_train.shape == (25, 784) and d.origin.endswith("fashion-mnist")
    np.testing.assert_array_equal(d.y_test, arrays[3])
    assert len(mirror.log) == 4  # each file fetched once, also when "auto" looked for it first
    out = capsys.readouterr().out
    assert out == ("" if source != "auto" else f"bncourse.data: using Fashion-MNIST from {d.origin}\n")
    bd.clear_cache()


def test_pinned_digests_are_well_formed():
    for table in (bd.FASHION_MNIST_PAYLOAD_SHA256, bd.FASHION_MNIST_GZ_SHA256, bd.MNIST_SHA256):
        assert set(table) == {s + ".gz" for s in bd.IDX_FILES}
        assert all(len(v) == 64 and int(v, 16) >= 0 for v in table.values())
    assert bd.FASHION_MNIST_GZ_SHA256["train-images-idx3-ubyte.gz"].startswith("3aede38d61863908")


@pytest.mark.skipif(not (bd.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_package_matches_the_pinned_payload_digests_and_a_regzip_does_too():
    for spec in bd.FASHION_MNIST.files:
        raw = (bd.FASHION_MNIST_DIR / spec.name).read_bytes()
        payload = dl.verify_bytes(raw, spec, spec.name)
        assert hashlib.sha256(payload).hexdigest() == bd.FASHION_MNIST_PAYLOAD_SHA256[spec.name]
        if spec.name.startswith("t10k-labels"):  # a re-gzipped mirror verifies the same way (small file: fast)
            assert dl.verify_bytes(gzip.compress(payload, compresslevel=9, mtime=1), spec, "regz") == payload
