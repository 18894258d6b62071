"""Finding an MNIST-format data set's four files: the packaged folder, the user cache, then the mirrors.

:func:`obtain` returns the verified, decompressed IDX bytes of a :class:`RemoteDataset`, looking in turn in

1. ``$BNCOURSE_DATASETS_DIR/<key>/`` (default ``/usr/share/datasets``, where Debian's ``dataset-*`` packages
   put them);
2. ``$BNCOURSE_CACHE_DIR/<key>/`` (default: the platform's user cache folder, see :func:`cache_root`);
3. the mirrors: the comma-separated base URLs of ``$BNCOURSE_MIRRORS`` first, then the built-in ones. A
   download goes to a temporary name in the cache folder and is renamed to its final name only once verified;
   a mirror whose file is truncated, corrupt or different is reported (file, digests) and the next one is tried.

What is verified is the **decompressed IDX payload** (its SHA-256 survives recompression: Debian's packaged
``.gz`` files differ byte-wise from the upstream ones but hold the same payload); a ``.gz`` whose own SHA-256
is one of the published upstream digests is accepted too. A file failing verification is never used, and a
cached one is deleted. Every fault is a ``ValueError`` naming the file and the problem, or an ``OSError``
naming every mirror tried when none could be reached.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bncourse._idx import gunzip

__all__ = [
    "RemoteFile",
    "RemoteDataset",
    "datasets_root",
    "cache_root",
    "env_mirrors",
    "verify_bytes",
    "fetch_url",
    "obtain",
    "read_folder",
    "sha256_file",
]

DEFAULT_DATASETS_DIR = "/usr/share/datasets"
_CHUNK = 1 << 16
_OFF = ("0", "false", "off", "no")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set and the digests that identify it.

    Attributes:
        name: the standard file name, e.g. ``"train-images-idx3-ubyte.gz"``.
        payload_sha256: SHA-256 of the decompressed bytes, or ``None`` when only ``gz_sha256`` is known.
        gz_sha256: accepted SHA-256 digests of the compressed file itself (the published upstream ones).
    """

    name: str
    payload_sha256: str | None
    gz_sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteDataset:
    """A data set of files served by several mirrors under their standard names.

    Attributes:
        key: folder name under the data sets folder and the cache, e.g. ``"fashion-mnist"``.
        files: its files, in a fixed order.
        mirrors: built-in base URLs (ending in ``/``), tried after ``$BNCOURSE_MIRRORS``.
    """

    key: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]


# --------------------------------------------------------------------------------------------------
# Where to look (three environment variables)
# --------------------------------------------------------------------------------------------------


def datasets_root() -> Path:
    """``$BNCOURSE_DATASETS_DIR``, default ``/usr/share/datasets`` (Debian's ``dataset-*`` packages)."""
    return Path(os.environ.get("BNCOURSE_DATASETS_DIR") or DEFAULT_DATASETS_DIR).expanduser()


def cache_root() -> Path:
    """``$BNCOURSE_CACHE_DIR``, default the platform's user cache folder + ``bncourse``.

    Linux ``$XDG_CACHE_HOME/bncourse`` (``~/.cache/bncourse``); macOS ``~/Library/Caches/bncourse``;
    Windows ``%LOCALAPPDATA%\\bncourse\\Cache``.
    """
    env = os.environ.get("BNCOURSE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "bncourse" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "bncourse"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bncourse"


def env_mirrors() -> tuple[str, ...]:
    """The base URLs of ``$BNCOURSE_MIRRORS`` (comma-separated), each ending in ``/``."""
    raw = os.environ.get("BNCOURSE_MIRRORS", "")
    return tuple(u.strip().rstrip("/") + "/" for u in raw.split(",") if u.strip())


def _notice(message: str) -> None:
    """One line on stderr: visible in a terminal and in a notebook cell's output."""
    print(f"bncourse.data: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_bytes(raw: bytes, spec: RemoteFile, where: str | os.PathLike) -> bytes:
    """Check the bytes of one file against ``spec``; return its decompressed payload.

    Accepted: a file whose SHA-256 is one of ``spec.gz_sha256``, or whose decompressed payload has SHA-256
    ``spec.payload_sha256`` (raw, uncompressed IDX bytes are their own payload).

    Raises:
        ``ValueError`` naming ``where`` and the digests (expected and found) otherwise, or the gzip fault.
    """
    file_digest = hashlib.sha256(raw).hexdigest()
    if file_digest in spec.gz_sha256:
        return gunzip(raw, where)
    if spec.payload_sha256 is None:
        raise ValueError(
            f"{where}: SHA-256 {file_digest} is not a published digest of {spec.name} "
            f"(expected {' or '.join(spec.gz_sha256)}; {len(raw)} bytes)"
        )
    payload = gunzip(raw, where)
    payload_digest = hashlib.sha256(payload).hexdigest()
    if payload_digest != spec.payload_sha256:
        raise ValueError(
            f"{where}: decompressed SHA-256 {payload_digest} != expected {spec.payload_sha256} for {spec.name} "
            f"({len(raw)} bytes, {len(payload)} decompressed)"
        )
    return payload


def _read_file(path: Path) -> bytes:
    """The bytes of ``path``; a directory in a file's place is a ``ValueError`` naming it."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory where a data file belongs; remove it")
    return path.read_bytes()


# --------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------


def _progress_enabled() -> bool:
    return os.environ.get("BNCOURSE_PROGRESS", "").lower() not in _OFF


def fetch_url(url: str, dest: Path, *, timeout: float = 60.0) -> None:
    """Download ``url`` into ``dest`` with a tqdm progress bar (off with ``BNCOURSE_PROGRESS=0``).

    Raises:
        ``ValueError`` when the body is shorter than its ``Content-Length`` or the HTTP response is
        malformed (a truncated download); ``OSError`` (``urllib.error.URLError``) when the mirror cannot be
        reached or answers with an HTTP error.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:  # noqa: S310
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = None
            if _progress_enabled():
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                           desc=url.rsplit("/", 1)[-1], file=sys.stderr)
            received = 0
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except http.client.IncompleteRead as err:
        raise ValueError(f"{url}: truncated download ({len(err.partial)} more bytes came before the connection "
                         f"closed, {err.expected} still expected)") from err
    except http.client.HTTPException as err:  # malformed status line, headers...: never a raw http.client error
        raise ValueError(f"{url}: bad HTTP response ({type(err).__name__}: {err})") from err
    if total is not None and received != total:
        raise ValueError(f"{url}: truncated download ({received} of {total} bytes)")


#: The function that downloads ``(url, destination_path)``; tests may replace it.
fetch: Callable[[str, Path], None] = fetch_url


def _download(spec: RemoteFile, folder: Path, mirrors: tuple[str, ...],
              fetch_fn: Callable[[str, Path], None]) -> tuple[bytes | None, list[str], bool]:
    """Try each mirror in turn; the first verified file is renamed into ``folder``.

    Returns ``(payload, problems, bad_file)``: ``payload`` is ``None`` when every mirror failed, and
    ``bad_file`` says whether some mirror answered with a file that failed verification (not only
    unreachable mirrors).
    """
    target = folder / spec.name
    problems: list[str] = []
    bad_file = False
    for i, mirror in enumerate(mirrors):
        url = mirror + spec.name
        fd, tmp_name = tempfile.mkstemp(prefix=spec.name + ".", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch_fn(url, tmp)
            payload = verify_bytes(tmp.read_bytes(), spec, url)
            os.replace(tmp, target)  # atomic: the final name only ever holds a verified file
            return payload, problems, bad_file
        except (OSError, ValueError) as err:
            bad_file = bad_file or isinstance(err, ValueError)
            problems.append(f"{url}: {err}" if url not in str(err) else str(err))
            more = "trying the next mirror" if i + 1 < len(mirrors) else "no mirror left"
            _notice(f"rejected {problems[-1]}; {more}")
        finally:
            if tmp.exists():
                tmp.unlink()
    return None, problems, bad_file


def _folder_files(folder: Path, dataset: RemoteDataset) -> dict[str, Path] | None:
    """The dataset's files in ``folder`` (``name`` or ``name`` without ``.gz``), or None if one is missing."""
    found = {}
    for spec in dataset.files:
        for candidate in (spec.name, spec.name.removesuffix(".gz")):
            if (folder / candidate).exists():
                found[spec.name] = folder / candidate
                break
        else:
            return None
    return found


def read_folder(folder: str | os.PathLike, dataset: RemoteDataset) -> dict[str, bytes]:
    """The verified, decompressed bytes of ``dataset``'s files in ``folder`` (``name`` or ``name`` less ``.gz``).

    Raises:
        ``FileNotFoundError`` if one is missing; ``ValueError`` naming the file if one fails verification.
    """
    folder = Path(folder)
    files = _folder_files(folder, dataset) if folder.is_dir() else None
    if files is None:
        need = ", ".join(s.name for s in dataset.files)
        raise FileNotFoundError(f"{folder}: the {dataset.key} files are not all there (need {need})")
    return {n: verify_bytes(_read_file(p), s, p) for (n, p), s in zip(files.items(), dataset.files)}


def obtain(
    dataset: RemoteDataset,
    *,
    datasets_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    fetch_fn: Callable[[str, Path], None] | None = None,
) -> tuple[dict[str, bytes], str]:
    """The verified, decompressed bytes of every file of ``dataset``, and where they came from.

    Args:
        dataset: what to obtain.
        datasets_dir: the packaged data sets folder (default :func:`datasets_root`).
        cache_dir: the download cache (default :func:`cache_root`); files go to ``cache_dir/<key>/``.
        fetch_fn: downloads ``(url, path)`` (default :func:`fetch_url`).

    Returns:
        ``({file name: IDX bytes}, origin)``, origin being the packaged folder or the cache folder.

    Raises:
        ``ValueError`` naming the file for a packaged or cached file that fails verification (a cached one is
        deleted first), a cache path that is a directory, or when every mirror served a bad file;
        ``OSError`` naming every URL tried when no mirror could be reached (offline).
    """
    fetch_fn = fetch_fn if fetch_fn is not None else fetch
    packaged = Path(datasets_dir if datasets_dir is not None else datasets_root()).expanduser() / dataset.key
    if _folder_files(packaged, dataset) is not None:
        return read_folder(packaged, dataset), str(packaged)

    folder = Path(cache_dir if cache_dir is not None else cache_root()).expanduser() / dataset.key
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: the data cache folder is a file; remove it or set BNCOURSE_CACHE_DIR")
    payloads: dict[str, bytes] = {}
    missing: list[RemoteFile] = []
    for spec in dataset.files:
        path = folder / spec.name
        if not path.exists():
            missing.append(spec)
            continue
        raw = _read_file(path)
        try:
            payloads[spec.name] = verify_bytes(raw, spec, path)
        except ValueError as err:
            path.unlink()  # a corrupt cache entry is never used again
            _notice(f"deleted a corrupt cached file ({err}); downloading it again")
            missing.append(spec)
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        mirrors = env_mirrors() + tuple(m for m in dataset.mirrors if m not in env_mirrors())
        for spec in missing:
            payload, problems, bad_file = _download(spec, folder, mirrors, fetch_fn)
            if payload is not None:
                payloads[spec.name] = payload
                continue
            tried = "; ".join(problems)
            if bad_file:
                raise ValueError(f"no mirror served a valid {spec.name}: {tried}")
            raise OSError(
                f"could not download {spec.name} for {dataset.key} (offline?); tried: {tried}. "
                f"Install it into {packaged} (Debian: apt install dataset-{dataset.key}), put the files in "
                f"{folder}, or set BNCOURSE_MIRRORS to a mirror you can reach"
            )
    return {s.name: payloads[s.name] for s in dataset.files}, str(folder)
