"""Mini-batches of a Dataset: shuffled with an explicit generator, or in order."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from minivae.random import Generator
from minivae.training.data.dataset import Dataset


# =============================================================================
# Mini-batches
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
