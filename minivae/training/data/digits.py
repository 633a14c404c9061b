"""scikit-learn's 1797 handwritten 8x8 digits, bundled with it: no network needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from minivae.training.data.dataset import Dataset, check_split, take_split


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
    check_split(split)
    table = _digits_table()
    full = Dataset(
        x=(table[:, :-1] / 16.0).astype(np.float32),
        y=table[:, -1].astype(np.int64),
        image_shape=(8, 8),
        num_classes=10,
        name="digits",
    )
    return take_split(full, split, test_fraction, seed, "digits")
