"""The IDX file format of MNIST and Fashion-MNIST: reading (gzip or not) with every header
field checked, and writing (for tests and converted data)."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from minivae.training.data.dataset import DataError


# =============================================================================
# The IDX file format (MNIST, Fashion-MNIST)
# =============================================================================
#
# An IDX file is a 4-byte magic number, then one big-endian uint32 per
# dimension, then the values in C order, big-endian:
#
#   byte 0, 1   always 0x00 0x00
#   byte 2      element type (0x08 = uint8, the only one MNIST uses)
#   byte 3      number of dimensions
#   then        ndim x uint32 sizes, then prod(sizes) elements

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    """Bytes of ``path``, decompressed if the file is gzip (detected by content, not name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read file ({err})") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:  # zlib.error: a flipped byte in the stream
        raise DataError(f"{path}: broken gzip data ({err}); delete the file and fetch it again") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a NumPy array in native byte order.

    Raises :class:`DataError`, naming the file, when the magic number is wrong,
    the element type is unknown, or the data are shorter (truncated download)
    or longer than the declared dimensions say.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX file (the magic number alone has 4)")
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path}: not an IDX file: magic number starts with bytes 0x{zero0:02x} 0x{zero1:02x}, "
            "expected 0x00 0x00"
        )
    if type_code not in _IDX_TYPES:
        known = ", ".join(f"0x{code:02x}" for code in _IDX_TYPES)
        raise DataError(f"{path}: unknown IDX element type 0x{type_code:02x}, expected one of {known} (0x08 = uint8)")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated header: {ndim} dimensions need {header_size} header bytes, file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = _IDX_TYPES[type_code]
    # Python integers: a header may declare sizes whose product overflows 64 bits.
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        problem = "truncated" if found < expected else "too long"
        raise DataError(
            f"{path}: file is {problem}: header declares shape {tuple(dims)} of {dtype.name} "
            f"= {expected} data bytes, but the file holds {found}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    # astype to native order also makes a private, writable copy of the buffer.
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends with ``.gz``.

    Supported element types: uint8, int8, int16, int32, float32, float64.
    Used by the tests to make small MNIST-like files, and handy for exporting.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        names = ", ".join(dtype.newbyteorder("=").name for dtype in _IDX_TYPES.values())
        raise ValueError(f"write_idx({path}): cannot store dtype {array.dtype}; supported: {names}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx({path}): array must have 1 to 255 dimensions, got {array.ndim}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)
