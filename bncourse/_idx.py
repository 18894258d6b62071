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

__all__ = ["IDX_DTYPES", "MAX_IDX_BYTES", "gunzip", "parse_idx", "read_idx", "write_idx"]

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


#: The largest IDX payload read (bytes): MNIST's largest file is 47 MB. A header that declares more is an
#: error rather than an attempt to allocate it.
MAX_IDX_BYTES = 1 << 30

_CHUNK = 1 << 20     # decompressed bytes per step of the streaming gunzip


def _may_be_idx(head: bytes | bytearray) -> bool:
    """Whether the first 4 bytes are an IDX header's (magic, a known type code, at least one dimension)."""
    return head[0] == 0 and head[1] == 0 and head[2] in IDX_DTYPES and head[3] != 0


def _declared_size(head: bytes) -> int | None:
    """The total size (header + payload) an IDX header declares, or ``None`` when ``head`` is too short
    to tell or is not an IDX header (then :func:`parse_idx` reports what is wrong with it)."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES or head[3] == 0:
        return None
    header_len = 4 + 4 * head[3]
    if len(head) < header_len:
        return None
    dims = np.frombuffer(head, dtype=">u4", count=head[3], offset=4)
    return header_len + math.prod(int(d) for d in dims) * IDX_DTYPES[head[2]].itemsize


def gunzip(raw: bytes, name: str | os.PathLike) -> bytes:
    """Decompress gzip bytes; ``raw`` without the gzip magic bytes is returned unchanged.

    The stream is decompressed a chunk at a time and never beyond the size its IDX header declares
    (nor beyond :data:`MAX_IDX_BYTES`), so a small file that expands to gigabytes (a gzip bomb) is an
    error, not a ``MemoryError``. A stream that is not IDX data stops at its first bytes (enough for
    :func:`parse_idx` to say what is wrong with them).

    Raises:
        ``ValueError`` naming ``name`` for a corrupt or truncated gzip stream (``zlib.error``, ``EOFError``
        and ``gzip.BadGzipFile`` never escape), and for one that expands beyond its declared size.
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    out = bytearray()
    limit: int | None = None
    rest = raw
    try:
        while True:                                          # one gzip member after another
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            chunk = rest
            while not inflater.eof:
                cap = _CHUNK if limit is None else min(_CHUNK, max(limit + 1 - len(out), 1))
                piece = inflater.decompress(chunk, cap)
                out += piece
                chunk = inflater.unconsumed_tail
                if limit is None and len(out) >= 4:
                    if not _may_be_idx(out):
                        return bytes(out)                    # parse_idx reports what it is not
                    limit = _declared_size(bytes(out))
                    if limit is not None and limit > MAX_IDX_BYTES:
                        raise ValueError(f"{name}: IDX header declares {limit} bytes, more than the "
                                         f"{MAX_IDX_BYTES} bytes bncourse reads")
                if limit is not None and len(out) > limit:
                    raise ValueError(f"{name}: gzip data expands beyond the {limit} bytes its IDX header "
                                     "declares (a corrupt file or a gzip bomb)")
                if not chunk and len(piece) < cap:           # all input used, no output pending
                    break
            if not inflater.eof:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            rest = inflater.unused_data.lstrip(b"\0")       # gzip allows zero padding after a member
            if not rest:
                return bytes(out)
            if rest[:2] != GZIP_MAGIC:
                raise OSError("Not a gzipped file (trailing garbage)")
    except EOFError as err:  # the stream ends before its end-of-stream marker
        raise ValueError(f"{name}: truncated gzip data ({err})") from err
    except (OSError, zlib.error) as err:  # a bad header, CRC or length, or a corrupt deflate body
        what = {"incorrect data check": "CRC check failed: ",
                "incorrect length check": "length check failed: "}.get(str(err).rpartition(": ")[2], "")
        raise ValueError(f"{name}: corrupt gzip data ({what}{err})") from err


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
