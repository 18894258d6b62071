"""The learner's first run, simulated: a fresh virtual environment, no packaged data, a mirror that lies.

Runs only with ``BNCOURSE_LEARNER_TEST=1`` (``make learner-test``; part of ``make test``): it builds a wheel
of the repository, installs it with its dependencies into a new virtual environment (not editable, not the
repository's ``.venv``; pip reuses its cache and the local CPU torch wheel), and executes the chapters that
load Fashion-MNIST in kernels of that environment with

* ``BNCOURSE_DATASETS_DIR`` an empty folder (no Debian package) and ``BNCOURSE_CACHE_DIR`` an empty folder;
* ``BNCOURSE_MIRRORS`` = a mirror on 127.0.0.1 serving broken files (truncated in transit, corrupt gzip,
  truncated file, a re-gzipped file with different labels), then a mirror on 127.0.0.1 serving the four
  Fashion-MNIST files copied from Debian's package.

It checks that the chapters pass with their asserts, that the broken files were rejected with messages
naming the file and the digest and the next mirror was tried, that the cache then holds exactly the four
verified files, and that the next chapters make no request at all.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bncourse import data as bd

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.environ.get("BNCOURSE_LEARNER_TEST") != "1",
                                reason="the learner test runs with BNCOURSE_LEARNER_TEST=1 (make learner-test)")
# Chapter 4 downloads (through the lying mirror); chapter 2 then reads the cache. The other chapters load data
# through the same function, and `make notebooks` and the book build execute all of them: one later chapter is
# enough to prove the cache path without executing chapters a third time.
FIRST = "ch4_batchnorm_algorithm.ipynb"
LATER = ["ch2_dataset_shift.ipynb"]
TIMINGS: dict[str, float] = {}
T0 = time.perf_counter()


def _broken_files(good: dict[str, bytes]) -> dict[str, tuple[bytes, int | None]]:
    """name -> (body, Content-Length to announce; None = the body's length): one fault per file."""
    ti, tl, ei, el = (name + ".gz" for name in bd.IDX_FILES)
    corrupt = bytearray(good[tl])
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 64] = bytes(64)  # zeroed deflate data mid-stream
    labels = bytearray(gzip.decompress(good[el]))
    labels[-1] = (labels[-1] + 1) % 10  # a valid file with one label changed
    return {
        ti: (good[ti][: len(good[ti]) // 3], len(good[ti])),  # the connection drops mid-transfer
        tl: (bytes(corrupt), None),
        ei: (good[ei][: len(good[ei]) // 2], None),  # a truncated file on the server
        el: (gzip.compress(bytes(labels)), None),
    }


class _Mirror:
    """Two mirrors on 127.0.0.1, ``/bad/`` and ``/good/``, logging every request path."""

    def __init__(self, good: dict[str, bytes]):
        self.good, self.bad, self.log = good, _broken_files(good), []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                mirror.log.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                if kind == "good" and name in mirror.good:
                    body, length = mirror.good[name], None
                elif kind == "bad" and name in mirror.bad:
                    body, length = mirror.bad[name]
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(length if length is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def mirror():
    folder = bd.FASHION_MNIST_DIR
    if not all((folder / (s + ".gz")).is_file() for s in bd.IDX_FILES):
        pytest.fail(f"the learner test serves Debian's Fashion-MNIST files from {folder}: install "
                    "dataset-fashion-mnist (make setup does)")
    m = _Mirror({s + ".gz": (folder / (s + ".gz")).read_bytes() for s in bd.IDX_FILES})
    yield m
    m.server.shutdown()


# Subprocesses see no PYTHONPATH (it would let pip and python find the source tree as "installed").
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def _check(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=CLEAN_ENV, cwd=cwd)
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def workdir():
    """A private folder (not pytest's shared basetemp, which concurrent pytest runs prune). Prints the measured
    times when the module is done (visible with -s / -rA)."""
    path = Path(tempfile.mkdtemp(prefix="bncourse-learner-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
    print("\nlearner test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items())
          + f"; {time.perf_counter() - T0:.1f} s since this module was imported")


@pytest.fixture(scope="module")
def learner(workdir):
    """A fresh virtual environment with bncourse installed from a wheel; returns its python."""
    start = time.perf_counter()
    dist, src = workdir / "dist", workdir / "src"  # built from a copy: nothing is written into the repository
    shutil.copytree(ROOT / "bncourse", src / "bncourse", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)]
    if subprocess.run(build + ["--no-build-isolation"], capture_output=True, env=CLEAN_ENV).returncode != 0:
        _check(build, "building the wheel")  # no setuptools here: let pip fetch the build backend
    wheel = next(dist.glob("bncourse-*.whl"))
    venv = workdir / "venv"
    _check([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    torch_cpu = os.environ.get("TORCH_CPU", "torch==2.13.0+cpu")
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    if subprocess.run(pip + [torch_cpu], capture_output=True, env=CLEAN_ENV).returncode != 0:
        _check(pip + ["torch>=2.3"], "installing torch")
    _check(pip + [str(wheel), "ipykernel", "nbclient", "nbformat"], "installing the wheel")
    _check([str(py), "-c", "import bncourse, nbclient, ipykernel"], "importing bncourse in the venv", cwd=workdir)
    TIMINGS["fresh venv (wheel build + install)"] = time.perf_counter() - start
    return py


@pytest.fixture(scope="module")
def learner_env(workdir, learner, mirror):
    base = workdir / "home"
    base.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BNCOURSE_", "JUPYTER", "PYTHON"))}
    env.update(
        BNCOURSE_DATASETS_DIR=str(base / "no-datasets"),
        BNCOURSE_CACHE_DIR=str(base / "cache"),
        BNCOURSE_MIRRORS=f"{mirror.url}/bad/,{mirror.url}/good/",
        BNCOURSE_PROGRESS="0",
        OMP_NUM_THREADS="1",
        JUPYTER_DATA_DIR=str(base / "jupyter-data"),  # no user kernelspec can replace the venv's python3
        JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
        IPYTHONDIR=str(base / "ipython"),
        HOME=str(base),
        # the user's pip cache all the same: the Colab simulation installs from it
        PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
        PATH=os.pathsep.join([str(learner.parent), os.environ.get("PATH", "")]),  # as an activated venv
    )
    (base / "no-datasets").mkdir()
    (base / "cache").mkdir()
    book = base / "book"  # a copy, away from the repository: `import bncourse` cannot find the source tree
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "_static", ".ipynb_checkpoints"))
    return env, base, book


def _run(py: Path, env: dict, book: Path, name: str) -> dict:
    out = book / ("executed-" + name)
    start = time.perf_counter()
    proc = subprocess.run([str(py), str(ROOT / "scripts" / "execute_notebook.py"), str(book / name), str(out)],
                          env=env, cwd=book, capture_output=True, text=True, timeout=600)
    TIMINGS[name] = time.perf_counter() - start
    assert proc.returncode == 0, f"{name} failed in the learner's environment:\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text(encoding="utf-8"))


def _streams(nb: dict, name: str) -> str:
    return "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == name)


def _probe(nb: dict) -> dict:
    line = next(s for s in _streams(nb, "stdout").splitlines() if s.startswith("BNCOURSE_PROBE "))
    return json.loads(line.removeprefix("BNCOURSE_PROBE "))


def test_first_chapter_downloads_through_a_lying_mirror(learner, learner_env, mirror):
    env, base, book = learner_env
    nb = _run(learner, env, book, FIRST)
    probe = _probe(nb)
    venv = learner.parent.parent
    assert Path(probe["prefix"]).resolve() == venv.resolve(), probe  # the kernel is the learner's python
    assert Path(probe["file"]).resolve().is_relative_to(venv.resolve()), probe  # bncourse from the wheel
    assert not Path(probe["file"]).resolve().is_relative_to(ROOT), probe

    # every broken file was fetched once, rejected, and the good mirror asked next
    names = [s + ".gz" for s in bd.IDX_FILES]
    assert sorted(mirror.log) == sorted([f"/bad/{n}" for n in names] + [f"/good/{n}" for n in names])
    err = _streams(nb, "stderr")
    ti, tl, ei, el = names
    assert f"rejected {mirror.url}/bad/{ti}: truncated download" in err
    assert f"rejected {mirror.url}/bad/{tl}: corrupt gzip data" in err
    assert f"rejected {mirror.url}/bad/{ei}: truncated gzip data" in err
    bad_labels = hashlib.sha256(gzip.decompress(mirror.bad[el][0])).hexdigest()
    assert (f"rejected {mirror.url}/bad/{el}: decompressed SHA-256 {bad_labels} != expected "
            f"{bd.FASHION_MNIST_PAYLOAD_SHA256[el]}") in err
    assert err.count("trying the next mirror") == 4

    # the cache holds exactly the four verified files: no partial download, nothing else
    cache = base / "cache" / "fashion-mnist"
    assert sorted(p.name for p in (base / "cache").iterdir()) == ["fashion-mnist"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(names)
    for n in names:
        assert (cache / n).read_bytes() == mirror.good[n]
        assert hashlib.sha256(gzip.decompress((cache / n).read_bytes())).hexdigest() == bd.FASHION_MNIST_PAYLOAD_SHA256[n]


@pytest.mark.parametrize("name", LATER)
def test_later_chapters_use_the_cache_and_make_no_request(learner, learner_env, mirror, name):
    env, base, book = learner_env
    if not (base / "cache" / "fashion-mnist").is_dir():
        pytest.skip("the first chapter did not fill the cache")
    before = len(mirror.log)
    nb = _run(learner, env, book, name)
    assert mirror.log[before:] == []  # a second run makes no request
    assert "bncourse.data:" not in _streams(nb, "stderr")  # nothing rejected, nothing downloaded
    assert "NOTICE" not in _streams(nb, "stdout")  # Fashion-MNIST, not a fallback to digits
    assert sorted(p.name for p in (base / "cache" / "fashion-mnist").iterdir()) == [s + ".gz" for s in sorted(bd.IDX_FILES)]


def test_install_cell_installs_the_package_where_it_is_missing(learner, learner_env, workdir):
    """Colab, simulated: bncourse is missing, its dependencies are there except tqdm. The generated install
    cell, pointed at this repository and commit instead of GitHub, installs bncourse and only the missing
    dependency, and changes nothing that was installed."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import sync_repository as sync

    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    sha = subprocess.run([git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    env, base, book = learner_env
    start = time.perf_counter()
    _check([str(learner), "-m", "pip", "uninstall", "-y", "bncourse", "tqdm"], "uninstalling bncourse and tqdm")

    def installed() -> dict[str, str]:
        proc = subprocess.run([str(learner), "-m", "pip", "list", "--format=json"], capture_output=True,
                              text=True, env=CLEAN_ENV, check=True)
        return {d["name"].lower(): d["version"] for d in json.loads(proc.stdout)}

    before = installed()
    assert "bncourse" not in before and "tqdm" not in before and "torch" in before
    cell = sync.install_cell(f"file://{ROOT}", sha)
    nb = {"cells": [cell, {"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {},
                           "outputs": [], "source": "import bncourse.data, tqdm\nprint('IMPORTED', tqdm.__version__)"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (book / "colab.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    out = _run(learner, env, book, "colab.ipynb")
    assert "IMPORTED" in _streams(out, "stdout")
    after = installed()
    TIMINGS["Colab simulation in all"] = time.perf_counter() - start
    added = sorted(set(after) - set(before))
    assert added == ["bncourse", "tqdm"], added  # nothing else was installed
    assert all(after[k] == v for k, v in before.items()), "the install cell changed an installed package"
