"""Image data sets for the course's experiments, as NumPy arrays: the same data on every machine.

One entry point, :func:`load_images`, returns an :class:`ImageData` with train / validation / test
splits (float32 pixels in [0, 1], int64 labels). Sources:

* ``"fashion-mnist"`` and ``"mnist"``: the four standard IDX files, found in this order (see
  ``bncourse._download``):

  1. the packaged folder ``$BNCOURSE_DATASETS_DIR/<name>`` (default ``/usr/share/datasets``; Debian's
     ``dataset-fashion-mnist`` package puts Fashion-MNIST there);
  2. the user cache ``$BNCOURSE_CACHE_DIR/<name>`` (default ``~/.cache/bncourse`` on Linux);
  3. a one-time download, trying the base URLs of ``$BNCOURSE_MIRRORS`` (comma-separated) and then the
     built-in mirrors in turn, with a progress bar (``BNCOURSE_PROGRESS=0`` hides it).

  Every file is verified before use, wherever it comes from. Fashion-MNIST: the SHA-256 of the
  **decompressed** IDX bytes (:data:`FASHION_MNIST_PAYLOAD_SHA256`, computed from Debian's package; it is
  the same for the upstream files, Debian's recompressed ones and any re-gzipped mirror), or the published
  SHA-256 of the upstream ``.gz`` file (:data:`FASHION_MNIST_GZ_SHA256`). MNIST: the published SHA-256 of
  the upstream ``.gz`` files (:data:`MNIST_SHA256`; no digest of its payload is pinned, so a re-gzipped
  MNIST mirror is rejected).
* ``"digits"``: scikit-learn's bundled 8×8 digits (1 797 images; always available, no network);
* ``"idx"``: a user folder of IDX files (gzip-compressed or raw) given by ``path=``;
* ``"auto"``: Fashion-MNIST if it can be had (packaged, cached or downloaded), else digits, with a visible
  notice. The chapters ask for ``"fashion-mnist"`` explicitly: their claims were checked on it.

Every fault in a data file is a ``ValueError`` naming the file and the problem (corrupt gzip, bad IDX
header, payload size, labels outside the class range, pixel values outside their range, wrong digest),
never silently wrong numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bncourse import _download
from bncourse._download import RemoteDataset, RemoteFile, cache_root, datasets_root, sha256_file
from bncourse._idx import parse_idx, read_idx, write_idx

__all__ = [
    "ImageData",
    "load_images",
    "read_idx",
    "write_idx",
    "sha256_file",
    "clear_cache",
    "FASHION_MNIST",
    "MNIST",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_PAYLOAD_SHA256",
    "FASHION_MNIST_GZ_SHA256",
    "MNIST_SHA256",
    "FASHION_MNIST_CLASSES",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files (the default packaged folder).
FASHION_MNIST_DIR = Path(_download.DEFAULT_DATASETS_DIR) / "fashion-mnist"

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

#: SHA-256 of the decompressed Fashion-MNIST IDX files, computed from Debian's ``dataset-fashion-mnist``
#: (its ``.gz`` files are recompressed; these payload digests are what every copy shares).
FASHION_MNIST_PAYLOAD_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
#: SHA-256 of the upstream Fashion-MNIST ``.gz`` files as published by two independent sources (torchvision's
#: prototype ``FashionMNIST`` dataset and batchup's ``fashion_mnist`` module); the upstream README and
#: torchvision's ``FashionMNIST`` publish only their MD5s.
FASHION_MNIST_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
FASHION_MNIST_MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
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

FASHION_MNIST = RemoteDataset(
    "fashion-mnist",
    tuple(RemoteFile(s + ".gz", FASHION_MNIST_PAYLOAD_SHA256[s + ".gz"], (FASHION_MNIST_GZ_SHA256[s + ".gz"],))
          for s in IDX_FILES),
    FASHION_MNIST_MIRRORS,
)
MNIST = RemoteDataset(
    "mnist", tuple(RemoteFile(s + ".gz", None, (MNIST_SHA256[s + ".gz"],)) for s in IDX_FILES), MNIST_MIRRORS,
)
_REMOTE = {"fashion-mnist": (FASHION_MNIST, FASHION_MNIST_CLASSES), "mnist": (MNIST, DIGIT_CLASSES)}


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
        if (folder / c).exists():
            return folder / c
    raise FileNotFoundError(f"{folder}: no IDX file named {stem}[.gz] (need {', '.join(s + '[.gz]' for s in IDX_FILES)})")


#: The most classes an IDX folder may have: its labels must be below this (the class names are made
#: from ``0 .. max(label)``, so an absurd label would otherwise allocate billions of them).
MAX_CLASSES = 1 << 16


def _check_arrays(
    arrays: list[np.ndarray], names: list[str], where: str, n_classes: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the four arrays of an MNIST-format data set -> (x_train, y_train, x_test, y_test).

    Images: 3-D ``(n, H, W)``, the same ``H, W`` in both splits; uint8, or another integer type with values in
    [0, 255] (8-bit intensities), or floating point with finite values in [0, 1]. Labels: 1-D, integers,
    one per image, in ``[0, n_classes)`` (in ``[0, MAX_CLASSES)`` when ``n_classes`` is None).
    """
    xtr, ytr, xte, yte = arrays
    for x, y, xn, yn, split in ((xtr, ytr, names[0], names[1], "train"), (xte, yte, names[2], names[3], "test")):
        if x.ndim != 3 or y.ndim != 1:
            raise ValueError(f"{where}: {split} images must be 3-D (n, H, W) and labels 1-D; got {x.shape}, {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{where}: {len(x)} {split} images but {len(y)} labels")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{yn}: labels must be integers, got {y.dtype}")
        if len(y):
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or (n_classes is not None and hi >= n_classes):
                bad = int(np.flatnonzero((y < 0) | (y >= (n_classes if n_classes is not None else np.inf)))[0])
                allowed = f"[0, {n_classes})" if n_classes is not None else "non-negative"
                raise ValueError(f"{yn}: label {int(y[bad])} at index {bad} is outside the class range {allowed}")
            if n_classes is None and hi >= MAX_CLASSES:   # one class name per label value follows
                bad = int(np.flatnonzero(y >= MAX_CLASSES)[0])
                raise ValueError(f"{yn}: label {int(y[bad])} at index {bad} is beyond the {MAX_CLASSES} "
                                 "classes an IDX folder may have (labels are 0, 1, ..., n_classes - 1)")
        if x.size and x.dtype != np.uint8:
            if np.issubdtype(x.dtype, np.integer):
                lo_ok, hi_ok, what = 0, 255, "8-bit pixel values [0, 255]"
            else:
                lo_ok, hi_ok, what = 0.0, 1.0, "[0, 1] for floating-point pixels"
            finite = bool(np.isfinite(x).all()) if not np.issubdtype(x.dtype, np.integer) else True
            lo, hi = x.min(), x.max()
            if not finite or lo < lo_ok or hi > hi_ok:
                raise ValueError(
                    f"{xn}: {x.dtype} image values must be {what}; found min {lo}, max {hi}"
                    + ("" if finite else " and non-finite values")
                )
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"{where}: train images are {xtr.shape[1:]} but test images {xte.shape[1:]}")
    return xtr, ytr, xte, yte


def _read_idx_folder(folder: Path, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read and check the four standard files of an MNIST-format folder -> (x_train, y_train, x_test, y_test)."""
    paths = [_find_idx_file(folder, s) for s in IDX_FILES]
    return _check_arrays([read_idx(p) for p in paths], [str(p) for p in paths], str(folder), n_classes)


def _load_remote(source: str, cache_dir: str | os.PathLike | None) -> tuple[tuple, str]:
    """Fashion-MNIST or MNIST from the packaged folder, the cache or the mirrors, verified."""
    dataset, classes = _REMOTE[source]
    payloads, origin = _download.obtain(dataset, cache_dir=cache_dir)
    names = [str(Path(origin) / s.name) for s in dataset.files]
    arrays = [parse_idx(payloads[s.name], n) for s, n in zip(dataset.files, names)]
    return _check_arrays(arrays, names, origin, len(classes)), origin


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
        source: ``"fashion-mnist"``, ``"mnist"`` (packaged, cached or downloaded once; always verified),
            ``"digits"`` (scikit-learn, 8×8), ``"idx"`` (with ``path``) or ``"auto"`` (Fashion-MNIST when it
            can be had, else digits with a notice).
        flatten: ``True`` -> ``x`` of shape ``(n, H*W)`` (for MLPs); ``False`` -> ``(n, 1, H, W)`` (for CNNs).
        n_val: images moved from the training set into the validation set (chosen with ``seed``); default
            5000 for the 60k-image sets and 200 for digits.
        seed: seed of the train/validation split (the test set is always the same).
        path: folder holding the four IDX files, for ``source="idx"``; with ``"fashion-mnist"`` / ``"mnist"``
            a folder used instead of the packaged one, cache and mirrors (verified all the same).
        cache_dir: download cache (default ``$BNCOURSE_CACHE_DIR`` or the platform's user cache folder).
        verbose: with ``source="auto"``, print one line saying which data set was used and why.

    Returns:
        An :class:`ImageData`. Fashion-MNIST: x_train (55000, 784), x_val (5000, 784), x_test (10000, 784).
        Digits: x_train (1237, 64), x_val (200, 64), x_test (360, 64), ``image_shape == (1, 8, 8)``.
        Results are cached in memory: a second call with the same arguments is free (the arrays are shared:
        copy them before modifying them in place).

    Raises:
        ``ValueError`` naming the file and the problem for any corrupt or unverifiable data file (and when
        every mirror served a bad file); ``OSError`` naming every mirror tried when none could be reached.
    """
    valid = ("auto", "fashion-mnist", "mnist", "digits", "idx")
    if source not in valid:
        raise ValueError(f"load_images: unknown source {source!r}; expected one of {valid}")
    preloaded = None
    if source == "auto":
        source, preloaded = _resolve_auto(path, cache_dir, verbose)
    if n_val is None:
        n_val = 200 if source == "digits" else 5000
    # The folders the environment points at are part of the key: changing them loads again.
    key = (source, flatten, n_val, seed, str(path), str(cache_dir), str(datasets_root()), str(cache_root()),
           _download.env_mirrors())
    if key in _CACHE:
        return _CACHE[key]

    if source == "digits":
        xtr, ytr, xte, yte = _load_digits_arrays()
        data = _finish(xtr, ytr, xte, yte, source="digits", class_names=DIGIT_CLASSES,
                       origin="sklearn.datasets.load_digits", flatten=flatten, n_val=n_val, seed=seed)
    elif source in _REMOTE:
        dataset, classes = _REMOTE[source]
        if path is not None:  # a folder of the user's, verified like the packaged one
            payloads = _download.read_folder(path, dataset)
            names = [str(Path(path) / s.name) for s in dataset.files]
            arrays = [parse_idx(payloads[s.name], n) for s, n in zip(dataset.files, names)]
            (xtr, ytr, xte, yte), origin = _check_arrays(arrays, names, str(path), len(classes)), str(path)
        else:
            (xtr, ytr, xte, yte), origin = preloaded or _load_remote(source, cache_dir)
        data = _finish(xtr, ytr, xte, yte, source=source, class_names=classes,
                       origin=origin, flatten=flatten, n_val=n_val, seed=seed)
    else:  # "idx"
        if path is None:
            raise ValueError("load_images(source='idx') needs path= (a folder with the four IDX files)")
        folder = Path(path)
        xtr, ytr, xte, yte = _read_idx_folder(folder)
        n_classes = int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
        data = _finish(xtr, ytr, xte, yte, source="idx", class_names=[str(i) for i in range(n_classes)],
                       origin=str(folder), flatten=flatten, n_val=n_val, seed=seed)
    _CACHE[key] = data
    return data


def _resolve_auto(
    path: str | os.PathLike | None, cache_dir: str | os.PathLike | None, verbose: bool,
) -> tuple[str, tuple | None]:
    """``("fashion-mnist", arrays and origin or None)`` when it can be had, else ``("digits", None)`` with a
    notice that is always shown.

    With ``path``, only that folder is looked at; without, the packaged folder, the cache and the mirrors
    (an unreachable network means digits; a corrupt file is an error, never a silent switch).
    """
    loaded = None
    if path is not None:
        found = _download._folder_files(Path(path), FASHION_MNIST) is not None
        where = str(path)
    else:
        try:
            loaded = _load_remote("fashion-mnist", cache_dir)
            found, where = True, loaded[1]
        except OSError as err:
            found, where = False, f"the packaged folder, the cache or any mirror ({err})"
    if found:
        if verbose:
            print(f"bncourse.data: using Fashion-MNIST from {where}")
        return "fashion-mnist", loaded
    print(
        f"bncourse.data: NOTICE: Fashion-MNIST not found in {where} (apt install dataset-fashion-mnist, or go "
        "online once); falling back to scikit-learn digits (8x8): results differ from the course's"
    )
    return "digits", None
