"""MNIST and Fashion-MNIST from a folder, optionally downloaded into a cache and verified
by SHA-256 (a file that does not match is refused, never used)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from minivae.training.data.dataset import DataError, Dataset, check_split
from minivae.training.data.idx import read_idx


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
    check_split(split)
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
