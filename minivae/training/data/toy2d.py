"""Synthetic 2-D point clouds whose shape you can see in one scatter plot: a ring, two
moons, a mixture of Gaussians on a circle."""

from __future__ import annotations

from typing import Any

import numpy as np

from minivae.random import Generator
from minivae.training.data.dataset import Dataset, check_split, take_split


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


def load_synthetic(make, name: str, split: str, n: int, seed: int, test_fraction: float, **options: Any) -> Dataset:
    """Draw one pool of ``n`` points with ``Generator(seed)`` and cut it like :func:`load_digits`.

    Drawing a single pool (rather than a separate seed per split) guarantees
    that train and test come from the same distribution and never overlap.
    """
    check_split(split)
    full = make(n, Generator(seed), **options)
    return take_split(full, split, test_fraction, seed, name)
