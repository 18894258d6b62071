"""The IDX file format (MNIST's): gunzip, parse and write, with every fault reported as a ``ValueError``.

The header is 2 zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions ``d``, then ``d`` big-endian uint32 sizes; the payload follows.
Every message names the file (or download) it is about and what is wrong with it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "gunzip", "parse_idx", "read_idx", "write_idx"]

# IDX type codes -> big-endian NumPy dtypes (the format's spec, LeCun's MNIST page).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"


def gunzip(raw: bytes, name: str | os.PathLike) -> bytes:
    """Decompress gzip bytes; ``raw`` without the gzip magic bytes is returned unchanged.

    Raises:
        ``ValueError`` naming ``name`` for a corrupt or truncated gzip stream (``zlib.error``, ``EOFError``
        and ``gzip.BadGzipFile`` never escape).
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as err:  # the stream ends before its end-of-stream marker
        raise ValueError(f"{name}: truncated gzip data ({err})") from err
    except (OSError, zlib.error) as err:  # BadGzipFile (bad header, CRC or length), or a corrupt deflate body
        raise ValueError(f"{name}: corrupt gzip data ({err})") from err


def parse_idx(data: bytes, name: str | os.PathLike) -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file.

    Args:
        data: the file's bytes.
        name: the file or URL, for error messages.

    Returns:
        An array of shape ``(n0, n1, ..., n_{d-1})`` in native byte order (uint8 for images and labels).

    Raises:
        ``ValueError`` naming ``name`` for wrong magic bytes, an unknown type code, missing dimensions, sizes
        whose product overflows, or a payload whose size does not match the header (truncated or padded).
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file (only {len(data)} bytes, the header alone needs 4)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{name}: not an IDX file (magic number starts with bytes {data[0]:#04x} {data[1]:#04x}, "
            "expected 0x00 0x00)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(
            f"{name}: unknown IDX data type code {code:#04x} "
            f"(expected one of {', '.join(f'{c:#04x}' for c in IDX_DTYPES)})"
        )
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header_len})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    # Python integers: sizes up to 2**32 - 1 each never wrap around, however many dimensions there are.
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{name}: IDX payload {kind}: header says shape {dims} of {dtype.name} = {expected} bytes, "
            f"file has {actual}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or raw.

    Args:
        path: the file.

    Returns:
        An array of shape ``(n0, n1, ..., n_{d-1})`` in native byte order (uint8 for images and labels).

    Raises:
        ``FileNotFoundError`` if there is no such file; ``ValueError`` (naming the file) if it is a
        directory, for corrupt gzip data, wrong magic bytes, an unknown type code, missing dimensions, or a
        payload whose size does not match the header (a truncated or padded file).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not an IDX file")
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    return parse_idx(gunzip(path.read_bytes(), path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or the name ends in ``.gz``).

    The inverse of :func:`read_idx`; used by the tests and handy for making small data sets.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {v.newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(native.newbyteorder(">")).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path
