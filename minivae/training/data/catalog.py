"""One entry point by name, for the command line: ``load_dataset("digits", "train")``."""

from __future__ import annotations

from typing import Any

from minivae.training.data.dataset import Dataset, check_split
from minivae.training.data.digits import load_digits
from minivae.training.data.mnist import load_mnist
from minivae.training.data.toy2d import gaussian_mixture, load_synthetic, ring, two_moons


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
    check_split(split)
    if name == "digits":
        return load_digits(split=split, **options)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(split=split, kind=name, **options)
    synthetic = {"ring": ring, "moons": two_moons, "mixture": gaussian_mixture}
    if name in synthetic:
        n = options.pop("n", 2000)
        seed = options.pop("seed", 0)
        test_fraction = options.pop("test_fraction", 0.2)
        return load_synthetic(synthetic[name], name, split, n, seed, test_fraction, **options)
    raise ValueError(f"unknown data set {name!r}; valid names are: {', '.join(DATASET_NAMES)}")
