"""The Dataset container and the seeded, stratified train/test split every loader uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minivae.random import Generator


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


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")


def take_split(full: Dataset, split: str, test_fraction: float, seed: int, base_name: str) -> Dataset:
    """Return the requested part of ``full`` under a seeded, stratified split."""
    check_split(split)
    if split == "all":
        return full.subset(slice(None), name=f"{base_name}-all")
    train, test = split_indices(full.y, len(full), test_fraction, seed)
    return full.subset(train if split == "train" else test, name=f"{base_name}-{split}")
