"""Image data sets for the course's experiments, as NumPy arrays — offline first.

One entry point, :func:`load_images`, returns an :class:`ImageData` with train / validation / test
splits (float32 pixels in [0, 1], int64 labels). Sources:

* ``"fashion-mnist"`` — Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``,
  four IDX ``.gz`` files; 60 000 train + 10 000 test images of 28×28 pixels);
* ``"mnist"`` — downloaded *once* (only when asked for explicitly) into a cache folder and checked against
  the published SHA-256 digests of the four standard files;
* ``"digits"`` — scikit-learn's bundled 8×8 digits (1 797 images; always available, no network);
* ``"idx"`` — a user folder of IDX files (gzip-compressed or raw) given by ``path=``;
* ``"auto"`` — Fashion-MNIST when installed, else digits, and it says so in one line.

The IDX reader validates everything it reads (magic number, type code, dimensions, payload size) and a
bad file gives a :class:`ValueError` that names the file and what is wrong — never silently wrong numbers.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "ImageData",
    "load_images",
    "read_idx",
    "sha256_file",
    "download_verified",
    "clear_cache",
    "FASHION_MNIST_DIR",
    "MNIST_SHA256",
    "FASHION_MNIST_CLASSES",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]

#: The four standard files of an MNIST-format data set: (train images, train labels, test images, test labels).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Published SHA-256 digests of the four standard MNIST ``.gz`` files (as used by TFDS / Keras).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# IDX type codes -> big-endian NumPy dtypes (the format's spec, LeCun's MNIST page).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass
class ImageData:
    """Train / validation / test splits of an image classification data set.

    Attributes:
        x_train, x_val, x_test: float32 arrays with values in [0, 1], shape ``(n, H*W)`` when loaded with
            ``flatten=True`` and ``(n, 1, H, W)`` otherwise.
        y_train, y_val, y_test: int64 class labels, shape ``(n,)``.
        source: ``"fashion-mnist"``, ``"mnist"``, ``"digits"`` or ``"idx"``.
        class_names: one name per class (index = label).
        image_shape: ``(1, H, W)`` of one image, whatever the layout of ``x_*``.
        origin: where the data came from (a folder, or ``"sklearn.datasets.load_digits"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: list[str]
    image_shape: tuple[int, int, int]
    origin: str = ""
    flatten: bool = field(default=True)

    @property
    def n_features(self) -> int:
        """Number of input values per image (``C*H*W``), the first entry of an MLP's ``sizes``."""
        return int(np.prod(self.image_shape))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:  # a short summary, not 60 000 numbers
        return (
            f"ImageData(source={self.source!r}, image_shape={self.image_shape}, "
            f"train={self.x_train.shape}, val={self.x_val.shape}, test={self.x_test.shape}, "
            f"classes={self.n_classes})"
        )


# --------------------------------------------------------------------------------------------------
# IDX files and checksums
# --------------------------------------------------------------------------------------------------


def _open_bytes(path: Path) -> bytes:
    """Read a file, gunzipping it when it starts with the gzip magic bytes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:  # BadGzipFile is an OSError; truncation raises EOFError
            raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or raw.

    The header is 2 zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions ``d``, then ``d`` big-endian uint32 sizes; the payload follows.

    Args:
        path: the file.

    Returns:
        An array of shape ``(n0, n1, ..., n_{d-1})`` in native byte order (uint8 for images and labels).

    Raises:
        ``FileNotFoundError`` if there is no such file; ``ValueError`` (naming the file) for wrong magic bytes,
        an unknown type code, missing dimensions, or a payload whose size does not match the header
        (a truncated or padded file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _open_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes, the header alone needs 4)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number starts with bytes {data[0]:#04x} {data[1]:#04x}, "
            "expected 0x00 0x00)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX data type code {code:#04x} "
            f"(expected one of {', '.join(f'{c:#04x}' for c in _IDX_DTYPES)})"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header_len})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX payload {kind}: header says shape {dims} of {dtype.name} = {expected} bytes, "
            f"file has {actual}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or the name ends in ``.gz``).

    The inverse of :func:`read_idx`; used by the tests and handy for making small data sets.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {v.newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(native.newbyteorder(">")).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _urlretrieve(url: str, dest: Path) -> None:
    """Default fetch function: download ``url`` to ``dest`` (replaced in tests by a local copy)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310
        shutil.copyfileobj(response, out)


#: The function that downloads ``(url, destination_path)``; tests monkeypatch it (no network in CI).
fetch: Callable[[str, Path], None] = _urlretrieve


def download_verified(
    name: str,
    sha256: str,
    cache_dir: str | os.PathLike,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    *,
    fetch_fn: Callable[[str, Path], None] | None = None,
) -> Path:
    """Return ``cache_dir/name``, downloading it first if needed, and only if its SHA-256 is ``sha256``.

    A cached file with the wrong digest (corrupt, truncated, substituted) is deleted and fetched again; a
    download with the wrong digest is deleted and the next mirror is tried. The file appears in
    ``cache_dir`` only after it has been verified (download to a temporary name, then rename).

    Raises:
        ``ValueError`` if every mirror gave a file with the wrong digest (the message lists the digests);
        ``OSError`` if no mirror could be reached (offline), with a hint to use the offline sources.
    """
    fetch_fn = fetch_fn if fetch_fn is not None else fetch
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / name
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        target.unlink()  # corrupt cache entry: never use it
    cache_dir.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for mirror in mirrors:
        fd, tmp_name = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=cache_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch_fn(mirror + name, tmp)
            digest = sha256_file(tmp)
            if digest != sha256:
                problems.append(f"{mirror + name}: SHA-256 {digest} != expected {sha256}")
                continue
            tmp.replace(target)
            return target
        except OSError as err:
            problems.append(f"{mirror + name}: {err}")
        finally:
            if tmp.exists():
                tmp.unlink()
    if all(": SHA-256" not in p for p in problems):
        raise OSError(
            f"could not download {name} ({'; '.join(problems)}). Offline? Use load_images('fashion-mnist') "
            "(apt install dataset-fashion-mnist) or load_images('digits')."
        )
    raise ValueError(f"download of {name} failed verification: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------------
# Loading and splitting
# --------------------------------------------------------------------------------------------------

_CACHE: dict[tuple, ImageData] = {}


def clear_cache() -> None:
    """Forget the data sets :func:`load_images` keeps in memory."""
    _CACHE.clear()


def _find_idx_file(folder: Path, stem: str) -> Path:
    """``folder/stem.gz`` or ``folder/stem`` (also accepts the ``stem.idx3-ubyte`` spelling with a dot)."""
    candidates = [stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")]
    for c in candidates:
        if (folder / c).is_file():
            return folder / c
    raise FileNotFoundError(f"{folder}: no IDX file named {stem}[.gz] (need {', '.join(s + '[.gz]' for s in IDX_FILES)})")


def _read_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the four standard files of an MNIST-format folder -> (x_train, y_train, x_test, y_test) uint8."""
    xtr, ytr, xte, yte = (read_idx(_find_idx_file(folder, s)) for s in IDX_FILES)
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "test")):
        if x.ndim != 3 or y.ndim != 1:
            raise ValueError(f"{folder}: {split} images must be 3-D (n, H, W) and labels 1-D; got {x.shape}, {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"{folder}: train images are {xtr.shape[1:]} but test images {xte.shape[1:]}")
    return xtr, ytr, xte, yte


def _load_digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits, pixel values 0..16 -> a fixed 80/20 train/test split (seed-independent)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    labels = d.target.astype(np.int64)
    order = np.random.default_rng(12345).permutation(len(labels))  # fixed test set, independent of `seed`
    n_test = 360
    te, tr = order[:n_test], order[n_test:]
    return images[tr], labels[tr], images[te], labels[te]


def _finish(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, *,
    source: str, class_names: list[str], origin: str, flatten: bool, n_val: int, seed: int,
) -> ImageData:
    """Scale to float32 [0, 1], split off a seeded validation set, reshape."""
    def scale(x: np.ndarray) -> np.ndarray:
        if x.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(255.0)
        return np.asarray(x, dtype=np.float32)

    xtr, xte = scale(xtr), scale(xte)
    ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    if not 0 <= n_val < len(xtr):
        raise ValueError(f"n_val={n_val} must be in [0, {len(xtr)}) for {source} ({len(xtr)} training images)")
    perm = np.random.default_rng(seed).permutation(len(xtr))
    val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    h, w = xtr.shape[1:]
    shape = (-1, h * w) if flatten else (-1, 1, h, w)
    return ImageData(
        x_train=np.ascontiguousarray(xtr[tr_idx].reshape(shape)), y_train=ytr[tr_idx],
        x_val=np.ascontiguousarray(xtr[val_idx].reshape(shape)), y_val=ytr[val_idx],
        x_test=np.ascontiguousarray(xte.reshape(shape)), y_test=yte,
        source=source, class_names=list(class_names), image_shape=(1, int(h), int(w)),
        origin=origin, flatten=flatten,
    )


def load_images(
    source: str = "auto",
    *,
    flatten: bool = True,
    n_val: int | None = None,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> ImageData:
    """Load an image classification data set as NumPy train / val / test splits.

    Args:
        source: ``"auto"`` (Fashion-MNIST if installed, else digits), ``"fashion-mnist"``, ``"mnist"``
            (downloads once, SHA-256 verified), ``"digits"`` (scikit-learn, 8×8) or ``"idx"`` (with ``path``).
        flatten: ``True`` -> ``x`` of shape ``(n, H*W)`` (for MLPs); ``False`` -> ``(n, 1, H, W)`` (for CNNs).
        n_val: images moved from the training set into the validation set (chosen with ``seed``); default
            5000 for the 60k-image sets and 200 for digits.
        seed: seed of the train/validation split (the test set is always the same).
        path: folder holding the four IDX files, for ``source="idx"`` (or to override the Fashion-MNIST folder).
        cache_dir: download folder for ``"mnist"`` (default ``~/.cache/bncourse``).
        verbose: with ``source="auto"``, print one line saying which data set was used and why.

    Returns:
        An :class:`ImageData`. Fashion-MNIST: x_train (55000, 784), x_val (5000, 784), x_test (10000, 784).
        Digits: x_train (1237, 64), x_val (200, 64), x_test (360, 64), ``image_shape == (1, 8, 8)``.
        Results are cached in memory: a second call with the same arguments is free (the arrays are shared:
        copy them before modifying them in place).
    """
    valid = ("auto", "fashion-mnist", "mnist", "digits", "idx")
    if source not in valid:
        raise ValueError(f"load_images: unknown source {source!r}; expected one of {valid}")
    if source == "auto":
        folder = Path(path) if path is not None else FASHION_MNIST_DIR
        try:
            _find_idx_file(folder, IDX_FILES[0])
            found = True
        except FileNotFoundError:
            found = False
        if found:
            msg = f"bncourse.data: using Fashion-MNIST from {folder} (Debian package dataset-fashion-mnist)"
            source = "fashion-mnist"
        else:
            msg = (
                f"bncourse.data: Fashion-MNIST not found in {folder} (apt install dataset-fashion-mnist); "
                "falling back to scikit-learn digits (8x8)"
            )
            source = "digits"
        if verbose:
            print(msg)
    if n_val is None:
        n_val = 200 if source == "digits" else 5000
    key = (source, flatten, n_val, seed, str(path), str(cache_dir))
    if key in _CACHE:
        return _CACHE[key]

    if source == "digits":
        xtr, ytr, xte, yte = _load_digits_arrays()
        data = _finish(xtr, ytr, xte, yte, source="digits", class_names=DIGIT_CLASSES,
                       origin="sklearn.datasets.load_digits", flatten=flatten, n_val=n_val, seed=seed)
    elif source == "fashion-mnist":
        folder = Path(path) if path is not None else FASHION_MNIST_DIR
        if not folder.is_dir():
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {folder}: install Debian's package (apt install "
                "dataset-fashion-mnist), pass path= to a folder with the IDX files, or use source='digits'"
            )
        xtr, ytr, xte, yte = _read_idx_folder(folder)
        data = _finish(xtr, ytr, xte, yte, source="fashion-mnist", class_names=FASHION_MNIST_CLASSES,
                       origin=str(folder), flatten=flatten, n_val=n_val, seed=seed)
    elif source == "mnist":
        folder = Path(cache_dir if cache_dir is not None else Path.home() / ".cache" / "bncourse").expanduser()
        folder = folder / "mnist"
        for name, digest in MNIST_SHA256.items():
            download_verified(name, digest, folder)
        xtr, ytr, xte, yte = _read_idx_folder(folder)
        data = _finish(xtr, ytr, xte, yte, source="mnist", class_names=DIGIT_CLASSES,
                       origin=str(folder), flatten=flatten, n_val=n_val, seed=seed)
    else:  # "idx"
        if path is None:
            raise ValueError("load_images(source='idx') needs path= (a folder with the four IDX files)")
        folder = Path(path)
        xtr, ytr, xte, yte = _read_idx_folder(folder)
        n_classes = int(max(ytr.max(), yte.max())) + 1
        data = _finish(xtr, ytr, xte, yte, source="idx", class_names=[str(i) for i in range(n_classes)],
                       origin=str(folder), flatten=flatten, n_val=n_val, seed=seed)
    _CACHE[key] = data
    return data
