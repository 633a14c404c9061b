"""Data sets for the lessons: small images, MNIST-style files and toy 2-D clouds.

Everything here returns plain NumPy arrays wrapped in a :class:`Dataset`; moving
a batch to the GPU is the engine's job, not the loader's. The module depends on
NumPy, scikit-learn (for its bundled digits) and :mod:`minivae.random` only, so
it can be used and tested before the rest of the engine exists.

What is in here, top to bottom:

* :class:`Dataset` -- inputs ``x`` of shape ``(n, d)`` in float32, optional
  integer labels ``y``, and enough metadata to draw the rows as images.
* :func:`load_digits` -- scikit-learn's 1797 handwritten 8x8 digits (no network).
* :func:`read_idx` / :func:`write_idx` -- the IDX file format of MNIST and
  Fashion-MNIST, with careful checks of every header field.
* :func:`load_mnist` -- MNIST / Fashion-MNIST from a folder, optionally
  downloaded into a cache and verified by SHA-256.
* :func:`ring`, :func:`two_moons`, :func:`gaussian_mixture` -- 2-D point
  clouds whose shape you can see in one scatter plot.
* :func:`load_dataset` -- one name-based entry point for the command line.
* :func:`batches` and :func:`one_hot` -- what a training loop needs.

Randomness is always explicit: functions that shuffle or sample take a
:class:`minivae.random.Generator` (or a ``seed`` where one fixed split is meant),
so the same seed gives the same numbers every time.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import importlib.util
import os
import struct
import zlib
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from minivae.random import Generator

__all__ = [
    "DataError",
    "Dataset",
    "SPLITS",
    "DATASET_NAMES",
    "split_indices",
    "load_digits",
    "read_idx",
    "write_idx",
    "load_mnist",
    "default_cache_dir",
    "ring",
    "two_moons",
    "gaussian_mixture",
    "load_dataset",
    "batches",
    "one_hot",
    "BINARIZE_MODES",
    "binarize",
    "binarize_dataset",
    "is_binary",
    "save_binarized",
    "load_binarized",
    "log_likelihood_refusal",
]

SPLITS = ("train", "test", "all")


class DataError(ValueError):
    """A data file or folder is missing, malformed or not what it claims to be.

    The message always names the file (or the paths that were tried), what was
    found and what was expected.
    """


# =============================================================================
# The Dataset container
# =============================================================================


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set held in memory.

    Attributes:
        x: inputs, float32, shape ``(n, d)``. Image pixels lie in [0, 1].
        y: integer class labels (int64, shape ``(n,)``), or ``None`` when the
            data set has no labels.
        image_shape: how one row of ``x`` is drawn as an image, e.g. ``(8, 8)``
            or ``(28, 28)``; ``None`` for 2-D point data.
        num_classes: number of label classes, or ``None`` without labels.
        name: a short human-readable name such as ``"digits-train"``.
    """

    x: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, ...] | None
    num_classes: int | None
    name: str

    def __post_init__(self) -> None:
        # Check once here so that every consumer can trust the shapes and types.
        if not isinstance(self.x, np.ndarray) or self.x.ndim != 2 or self.x.dtype != np.float32:
            found = f"{type(self.x).__name__} {getattr(self.x, 'dtype', '')} {getattr(self.x, 'shape', '')}"
            raise ValueError(f"Dataset {self.name!r}: x must be a float32 NumPy array of shape (n, d), got {found}")
        if self.y is not None:
            if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int64 or self.y.shape != (len(self.x),):
                found = f"{type(self.y).__name__} {getattr(self.y, 'dtype', '')} {getattr(self.y, 'shape', '')}"
                raise ValueError(
                    f"Dataset {self.name!r}: y must be an int64 array of shape ({len(self.x)},) or None, got {found}"
                )
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.x.shape[1]:
            raise ValueError(
                f"Dataset {self.name!r}: image_shape {self.image_shape} has {int(np.prod(self.image_shape))} "
                f"pixels but each row of x has {self.x.shape[1]} values"
            )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def dim(self) -> int:
        """Number of values per example (64 for 8x8 digits, 2 for point clouds)."""
        return int(self.x.shape[1])

    def subset(self, indices: Sequence[int] | np.ndarray | slice, name: str | None = None) -> "Dataset":
        """A new Dataset with the rows picked by ``indices`` (an index array or a slice)."""
        x = self.x[indices]
        y = None if self.y is None else self.y[indices]
        # Fancy indexing copies, slicing makes a view; copy both so a subset never
        # aliases its parent and editing one cannot silently change the other.
        return Dataset(
            x=np.array(x, dtype=np.float32, copy=True, ndmin=2),
            y=None if y is None else np.array(y, dtype=np.int64, copy=True, ndmin=1),
            image_shape=self.image_shape,
            num_classes=self.num_classes,
            name=self.name if name is None else name,
        )

    def images(self) -> np.ndarray:
        """The rows of ``x`` reshaped to ``(n, *image_shape)``, for plotting."""
        if self.image_shape is None:
            raise ValueError(f"Dataset {self.name!r} holds points, not images (image_shape is None)")
        return self.x.reshape((len(self.x), *self.image_shape))


# =============================================================================
# Seeded train/test split
# =============================================================================


def split_indices(
    labels: np.ndarray | None, n: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed, seeded train/test split of ``range(n)``; returns sorted (train, test) indices.

    With labels the split is *stratified*: each class is split on its own, so
    both halves keep the class proportions (within one example per class).
    Without labels it is a plain random split. The test part of a class (or of
    the whole set) has ``round(size * test_fraction)`` examples.

    The indices come back sorted, so a split keeps the original order of the
    data; shuffling is the job of :func:`batches`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    rng = Generator(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train_parts, test_parts = [], []
    for group in groups:
        shuffled = group[rng.permutation(len(group))]
        n_test = int(round(len(group) * test_fraction))
        test_parts.append(shuffled[:n_test])
        train_parts.append(shuffled[n_test:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")


def _take_split(full: Dataset, split: str, test_fraction: float, seed: int, base_name: str) -> Dataset:
    """Return the requested part of ``full`` under a seeded, stratified split."""
    _check_split(split)
    if split == "all":
        return full.subset(slice(None), name=f"{base_name}-all")
    train, test = split_indices(full.y, len(full), test_fraction, seed)
    return full.subset(train if split == "train" else test, name=f"{base_name}-{split}")


# =============================================================================
# scikit-learn's handwritten digits
# =============================================================================


def _digits_table() -> np.ndarray:
    """scikit-learn's digits as one (1797, 65) float table: 64 pixels, then the label.

    The data file ships inside scikit-learn (datasets/data/digits.csv.gz); it is read
    directly, as ``sklearn.datasets.load_digits`` reads it, because importing
    sklearn.datasets takes longer (~0.6 s) than the whole file. If the file is not
    where it is expected, scikit-learn's own loader is used.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    return np.column_stack([bunch.data, bunch.target])


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 1797 handwritten 8x8 digits bundled with scikit-learn (no download needed).

    Pixels are integers 0..16 in the original; they are divided by 16 so that
    every value lies in [0, 1], as a Bernoulli or sigmoid decoder expects.

    The train/test split is stratified by digit class and fixed by ``seed``
    (see :func:`split_indices`): the same seed always gives the same split, and
    "train" and "test" never share an example. ``split="all"`` returns all 1797.
    """
    _check_split(split)
    table = _digits_table()
    full = Dataset(
        x=(table[:, :-1] / 16.0).astype(np.float32),
        y=table[:, -1].astype(np.int64),
        image_shape=(8, 8),
        num_classes=10,
        name="digits",
    )
    return _take_split(full, split, test_fraction, seed, "digits")


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


# =============================================================================
# MNIST and Fashion-MNIST
# =============================================================================

# Default base URLs. MNIST's original home (yann.lecun.com) is often
# unavailable, so the default is the Google-hosted copy of the same files that
# TensorFlow uses; Fashion-MNIST comes from Zalando's own bucket. Override with
# ``url=`` to use any mirror that serves the same four .gz files.
_DEFAULT_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# SHA-256 of the published .gz files. These are not computed here: they are
# copied from TensorFlow Datasets' checksum tables
# (tensorflow_datasets/url_checksums/mnist.txt and fashion_mnist.txt), which
# list these exact URLs. A file whose digest is not in this table must be
# given one via ``sha256=`` -- downloads are never accepted unverified.
_KNOWN_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

_FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_cache_dir(kind: str) -> Path:
    """Where downloads go by default: ``$XDG_CACHE_HOME/minivae/<kind>`` or ``~/.cache/minivae/<kind>``."""
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "minivae" / kind


def _check_kind(kind: str) -> None:
    if kind not in _DEFAULT_URLS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, _DEFAULT_URLS))}, got {kind!r}")


def _find_file(stem: str, folders: Sequence[Path]) -> tuple[Path | None, list[Path]]:
    """First existing ``stem`` or ``stem.gz`` in ``folders``; also every path that was tried."""
    tried = []
    for folder in folders:
        for name in (stem, stem + ".gz"):
            candidate = folder / name
            tried.append(candidate)
            if candidate.is_file():
                return candidate, tried
            if candidate.is_dir() or candidate.is_symlink():  # not "not found": say what is there instead
                what = "a folder" if candidate.is_dir() else "a broken symbolic link or a link loop"
                raise DataError(f"{candidate}: is {what}, where the data file {name} should be")
    return None, tried


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path, expected_sha256: str) -> None:
    """Fetch ``url`` into ``target``, verified by SHA-256, written atomically.

    The bytes go to a temporary file in the target's folder first; only when
    the digest matches is it renamed over ``target`` with :func:`os.replace`
    (atomic on one file system). So an interrupted or corrupted download never
    leaves a half-written file under the real name.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as err:
                raise DataError(f"downloading {url} to {target} failed: {err}") from None
        found = digest.hexdigest()
        if found != expected_sha256.lower():
            raise DataError(
                f"downloading {url}: SHA-256 mismatch, got {found}, expected {expected_sha256}; "
                f"the file was discarded and {target} was not written"
            )
        os.replace(temp, target)
    finally:
        # On success the temp file has been renamed away; on any failure, remove it.
        temp.unlink(missing_ok=True)


def load_mnist(
    root: str | os.PathLike | None = None,
    split: str = "train",
    kind: str = "mnist",
    download: bool = False,
    url: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    sha256: Mapping[str, str] | None = None,
) -> Dataset:
    """MNIST or Fashion-MNIST (28x28 grey images, 10 classes) from IDX files.

    Files are looked up by their standard names, raw or ``.gz``
    (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-...`` for the test split), first in ``root`` (if given), then in
    ``cache_dir`` (default :func:`default_cache_dir`). ``split="all"`` joins
    the 60000 training and 10000 test examples, in that order.

    With ``download=True``, missing files are fetched as ``.gz`` from ``url``
    (a base URL; the file name is appended) into ``cache_dir``. Every download
    is checked against a SHA-256 digest: the built-in table of the published
    files, or ``sha256={"train-images-idx3-ubyte.gz": "<hex>", ...}`` which
    takes precedence (for other mirrors or other files). A file with no digest
    from either source is refused. Files already on disk are not re-checked.

    Pixels are scaled from 0..255 to [0, 1]; labels are int64.
    """
    _check_split(split)
    _check_kind(kind)
    if split == "all":
        parts = [load_mnist(root, s, kind, download, url, cache_dir, sha256) for s in ("train", "test")]
        return Dataset(
            x=np.concatenate([p.x for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            image_shape=(28, 28),
            num_classes=10,
            name=f"{kind}-all",
        )

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(kind)
    folders = ([Path(root)] if root is not None else []) + [cache]
    base_url = url if url is not None else _DEFAULT_URLS[kind]
    digests = dict(_KNOWN_SHA256[kind])
    if sha256 is not None:
        unknown = sorted(set(sha256) - set(digests))
        if unknown:
            raise ValueError(f"sha256= has unknown file names {unknown}; expected names among {sorted(digests)}")
        digests.update(sha256)

    paths = []
    for stem in _FILE_STEMS[split]:
        found, tried = _find_file(stem, folders)
        if found is None and download:
            file_url = base_url.rstrip("/") + "/" + stem + ".gz"
            found = cache / (stem + ".gz")
            _download(file_url, found, digests[stem + ".gz"])
        if found is None:
            listing = ", ".join(str(p) for p in tried)
            raise DataError(  # one line: the command line prints it as is
                f"{kind} {split} file {stem}[.gz] not found; tried: {listing}. "
                f"Pass --download (download=True in Python) to fetch it from {base_url} into {cache}, "
                f"or put the file (raw or .gz) in a folder given with --data-dir (root=)."
            )
        paths.append(found)

    images_path, labels_path = paths
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (n, rows, cols), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected uint8 labels of shape (n,), got {labels.dtype} {labels.shape}")
    if len(images) == 0:
        raise DataError(f"{images_path}: the file holds 0 images (header shape {images.shape}); expected at least 1")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{images_path}: the images are {images.shape[1]}x{images.shape[2]} pixels (header shape "
                        f"{images.shape}); expected at least 1x1")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the counts must agree (mixed-up or partial files?)"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be 0..9, found {int(labels.max())}")
    return Dataset(
        x=(images.reshape(len(images), -1) / np.float32(255.0)).astype(np.float32),
        y=labels.astype(np.int64),
        image_shape=tuple(int(s) for s in images.shape[1:]),
        num_classes=10,
        name=f"{kind}-{split}",
    )


# =============================================================================
# Synthetic 2-D data
# =============================================================================


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def ring(n: int, rng: Generator) -> Dataset:
    """The ring from the VAE lecture: z ~ N(0, I_2) pushed through f(z) = z/10 + z/||z||.

    The point of the example: a fixed non-linear map turns a plain Gaussian
    into a very non-Gaussian shape, so a decoder can do the same. Since
    f(z) points along z with length ||z||/10 + 1, every point lies at radius
    greater than 1 -- a ring of width about 0.1 with no mass in the middle.
    """
    n = _check_count(n)
    z = rng.numpy.standard_normal((n, 2))
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    # z = 0 exactly has probability zero; the floor only keeps the division finite.
    points = z / 10.0 + z / np.maximum(norm, np.finfo(np.float64).tiny)
    return Dataset(x=points.astype(np.float32), y=None, image_shape=None, num_classes=None, name="ring")


def two_moons(n: int, rng: Generator, noise: float = 0.05) -> Dataset:
    """Two interleaved half circles with Gaussian noise of std ``noise``; labels 0 and 1.

    The upper moon is the half circle of radius 1 around (0, 0); the lower one
    is the same shape flipped and moved to (1, 0.5). Angles are drawn at random
    (uniform on [0, pi]), so the points come in random order.
    """
    n = _check_count(n)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    labels = rng.numpy.integers(0, 2, size=n)
    angle = rng.numpy.uniform(0.0, np.pi, size=n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.where(labels[:, None] == 0, upper, lower)
    points = points + noise * rng.numpy.standard_normal((n, 2))
    return Dataset(
        x=points.astype(np.float32), y=labels.astype(np.int64), image_shape=None, num_classes=2, name="moons"
    )


def gaussian_mixture(n: int, rng: Generator, k: int = 8, radius: float = 2.0, std: float = 0.1) -> Dataset:
    """``k`` small round Gaussians (std ``std``) evenly spaced on a circle of ``radius``.

    Each point picks a component uniformly at random; the label is the
    component. A VAE with a Gaussian prior has to tear the prior apart into
    ``k`` islands, which makes "holes" in the latent space easy to see.
    """
    n = _check_count(n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    labels = rng.numpy.integers(0, k, size=n)
    angles = 2.0 * np.pi * np.arange(k) / k
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = centres[labels] + std * rng.numpy.standard_normal((n, 2))
    return Dataset(
        x=points.astype(np.float32), y=labels.astype(np.int64), image_shape=None, num_classes=int(k), name="mixture"
    )


def _synthetic(make, name: str, split: str, n: int, seed: int, test_fraction: float, **options: Any) -> Dataset:
    """Draw one pool of ``n`` points with ``Generator(seed)`` and cut it like :func:`load_digits`.

    Drawing a single pool (rather than a separate seed per split) guarantees
    that train and test come from the same distribution and never overlap.
    """
    _check_split(split)
    full = make(n, Generator(seed), **options)
    return _take_split(full, split, test_fraction, seed, name)


# =============================================================================
# One entry point by name (for the command line)
# =============================================================================

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "ring", "moons", "mixture")


def load_dataset(name: str, split: str = "train", **options: Any) -> Dataset:
    """Load a data set by name; ``options`` go to the underlying loader.

    * ``"digits"``: :func:`load_digits` (``test_fraction``, ``seed``).
    * ``"mnist"``, ``"fashion-mnist"``: :func:`load_mnist` (``root``,
      ``download``, ``url``, ``cache_dir``, ``sha256``).
    * ``"ring"``, ``"moons"``, ``"mixture"``: a pool of ``n`` points
      (default 2000) drawn with ``Generator(seed)`` (default 0) and split like
      digits (``test_fraction``, default 0.2); extra options such as
      ``noise`` (moons) or ``k``, ``radius``, ``std`` (mixture) go to
      :func:`two_moons` / :func:`gaussian_mixture`.
    """
    _check_split(split)
    if name == "digits":
        return load_digits(split=split, **options)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(split=split, kind=name, **options)
    synthetic = {"ring": ring, "moons": two_moons, "mixture": gaussian_mixture}
    if name in synthetic:
        n = options.pop("n", 2000)
        seed = options.pop("seed", 0)
        test_fraction = options.pop("test_fraction", 0.2)
        return _synthetic(synthetic[name], name, split, n, seed, test_fraction, **options)
    raise ValueError(f"unknown data set {name!r}; valid names are: {', '.join(DATASET_NAMES)}")


# =============================================================================
# Mini-batches and labels
# =============================================================================


def batches(
    data: Dataset | np.ndarray | tuple[np.ndarray, np.ndarray | None],
    batch_size: int,
    rng: Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """One epoch of mini-batches ``(x_batch, y_batch)`` as NumPy arrays.

    ``data`` is a :class:`Dataset`, an array ``x`` or a pair ``(x, y)``;
    ``y_batch`` is ``None`` when there are no labels. With ``shuffle=True``
    (the default) the order is a permutation drawn from ``rng``, which must be
    given -- there is no hidden default seed. The permutation is drawn when
    ``batches`` is called, so each call is one fresh epoch. Every example
    appears exactly once per epoch, except that ``drop_last=True`` skips a
    final batch smaller than ``batch_size``.
    """
    if isinstance(data, Dataset):
        x, y = data.x, data.y
    elif isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"batches: expected a pair (x, y), got a tuple of length {len(data)}")
        x, y = data
    else:
        x, y = data, None
    x = np.asarray(x)
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"batches: x has {len(x)} rows but y has {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if shuffle and rng is None:
        raise ValueError("batches(shuffle=True) needs rng=Generator(seed); pass shuffle=False for a fixed order")
    order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
    # The checks above run now, at the call; the batches themselves are produced
    # lazily by the inner generator (a generator function would delay the checks
    # until the first batch is asked for).
    return _iterate_batches(x, y, order, int(batch_size), drop_last)


def _iterate_batches(
    x: np.ndarray, y: np.ndarray | None, order: np.ndarray, batch_size: int, drop_last: bool
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if drop_last and len(index) < batch_size:
            return
        yield x[index], (None if y is None else y[index])


def one_hot(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """Float32 one-hot codes: shape ``labels.shape + (num_classes,)``, a single 1 per row.

    Labels must be integers in ``[0, num_classes)``; anything else is an error
    rather than a silently wrong code (NumPy indexing would wrap -1 around).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    labels = np.asarray(labels)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"one_hot: labels must lie in [0, {num_classes}), found values from {labels.min()} to {labels.max()}"
        )
    codes = np.zeros(labels.shape + (int(num_classes),), dtype=np.float32)
    np.put_along_axis(codes, labels[..., None], 1.0, axis=-1)
    return codes


# =============================================================================
# Binarization: grey pixels -> 0/1 pixels for a Bernoulli likelihood
# =============================================================================
#
# A Bernoulli decoder gives a probability to *binary* images only: on grey pixels
# its "-ln p(x | z)" is a cross-entropy, not a negative log-likelihood (it is not
# even minimal at x̂ = x). The binarization is therefore part of the model:
#   none:    the grey images as they are (fine for training, no log-likelihood);
#   dynamic: a fresh Bernoulli sample of each image every time it is used: pixel = 1
#            with probability equal to its grey level; seeded, so a run repeats;
#   static:  one such sample of the whole set, drawn once and kept (saved with the run).

BINARIZE_MODES = ("none", "dynamic", "static")


def check_binarize_mode(mode: str) -> str:
    if mode not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {', '.join(map(repr, BINARIZE_MODES))}, got {mode!r}")
    return mode


def binarize(x: np.ndarray, rng: Generator) -> np.ndarray:
    """One Bernoulli draw per pixel: 1 with probability x (the grey level), else 0; float32.

    ``x`` must hold probabilities in [0, 1]. Uniform u in [0, 1) gives pixel = [u < x],
    so black (0) stays 0 and white (1) stays 1 for every draw.
    """
    x = np.asarray(x)
    if x.size and (not np.issubdtype(x.dtype, np.floating) or np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
        raise ValueError(
            f"binarize: pixels must be floats in [0, 1] (grey levels as probabilities), got dtype {x.dtype}"
            + (f" with values from {np.nanmin(x)} to {np.nanmax(x)}" if x.size else "")
        )
    u = rng.numpy.random(size=x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


def is_binary(x: np.ndarray) -> bool:
    """True when every value is exactly 0 or 1 (what a Bernoulli likelihood can score)."""
    x = np.asarray(x)
    return bool(np.all((x == 0) | (x == 1)))


def binarize_dataset(data: Dataset, rng: Generator) -> Dataset:
    """The static binarization: one fixed Bernoulli sample of every image (labels kept)."""
    return Dataset(
        x=binarize(data.x, rng),
        y=None if data.y is None else data.y.copy(),
        image_shape=data.image_shape,
        num_classes=data.num_classes,
        name=f"{data.name}-binarized",
    )


def save_binarized(path: str | os.PathLike, x: np.ndarray) -> None:
    """Save 0/1 images as packed bits (8 pixels a byte) in an .npz, atomically."""
    x = np.asarray(x)
    if x.ndim != 2 or not is_binary(x):
        raise ValueError(f"save_binarized({path}): expected a 2-D array of 0/1 values, got shape {x.shape}")
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, bits=np.packbits(x.astype(np.uint8), axis=1), shape=np.array(x.shape))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load_binarized(path: str | os.PathLike) -> np.ndarray:
    """Read what :func:`save_binarized` wrote: float32 0/1 images of the saved shape."""
    try:
        with np.load(Path(path)) as saved:
            rows, cols = (int(s) for s in saved["shape"])
            bits = saved["bits"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a saved binarization (.npz with 'bits' and 'shape'): {err}") from err
    x = np.unpackbits(bits, axis=1, count=cols)
    if x.shape != (rows, cols):
        raise DataError(f"{path}: packed bits give shape {x.shape}, the file says {(rows, cols)}")
    return x.astype(np.float32)


def log_likelihood_refusal(x: np.ndarray, likelihood: str, binarize_mode: str = "none") -> str | None:
    """Why "log p(x)" must not be reported for these data and this likelihood, or None when it may.

    A Bernoulli likelihood scores only 0/1 pixels; on grey pixels (no binarization)
    its value is a cross-entropy, so calling it a log-likelihood in nats would be wrong.
    """
    check_binarize_mode(binarize_mode)
    if likelihood == "bernoulli" and binarize_mode == "none" and not is_binary(x):
        return (
            "Bernoulli likelihood on grey (non-binary) pixels: its value is a cross-entropy, "
            "not log p(x); train and evaluate with --binarize dynamic or static to report a log-likelihood"
        )
    return None
