"""Explicit, seeded randomness.

minivae has no hidden global random state: every function that draws noise takes
a :class:`Generator`. The same seed gives the same numbers, on every backend,
because all draws are made by NumPy's PCG64 on the host and then moved to the
current backend. (Drawing on the host costs a copy on the GPU; a GPU-side
generator can be added behind the same interface.)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minivae.providers import backend

Shape = int | Sequence[int]


class Generator:
    """A seeded source of random numbers.

    >>> rng = Generator(0)
    >>> rng.normal((2, 3)).shape
    (2, 3)
    """

    def __init__(self, seed: int | None = 0) -> None:
        if seed is None:
            raise ValueError("Generator(seed): a seed is required; minivae keeps randomness explicit")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            # int(1.5) would silently give the stream of seed 1
            raise TypeError(f"Generator(seed): the seed must be an integer, got {seed!r} ({type(seed).__name__})")
        if seed < 0:
            raise ValueError(f"Generator(seed): the seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.numpy = np.random.Generator(np.random.PCG64(self.seed))

    # -- draws ---------------------------------------------------------------
    def normal(self, shape: Shape, dtype: Any = "float32", mean: float = 0.0, std: float = 1.0) -> Any:
        """Standard normal noise (scaled and shifted), as an array of the current backend."""
        draw = self.numpy.standard_normal(size=_shape(shape), dtype=np.float64)
        if mean != 0.0 or std != 1.0:
            draw = mean + std * draw
        return backend.to_backend(draw, dtype=dtype)

    def uniform(self, shape: Shape, low: float = 0.0, high: float = 1.0, dtype: Any = "float32") -> Any:
        """Uniform noise on [low, high)."""
        return backend.to_backend(self.numpy.uniform(low, high, size=_shape(shape)), dtype=dtype)

    def bernoulli(self, p: Any, dtype: Any = "float32") -> Any:
        """0/1 draws with success probability ``p`` (array or scalar), same shape as ``p``."""
        p_host = backend.to_numpy(p)
        return backend.to_backend(self.numpy.random(size=np.shape(p_host)) < p_host, dtype=dtype)

    def integers(self, low: int, high: int | None = None, shape: Shape | None = None) -> np.ndarray:
        """Random integers in [low, high) as a NumPy array (used for indices, labels)."""
        return self.numpy.integers(low, high, size=None if shape is None else _shape(shape))

    def permutation(self, n: int) -> np.ndarray:
        """A random permutation of range(n) as a NumPy array (used for shuffling)."""
        return self.numpy.permutation(n)

    def spawn(self) -> "Generator":
        """A new, independent generator seeded from this one (deterministic)."""
        return Generator(int(self.numpy.integers(0, 2**63 - 1)))

    # -- state, for checkpoints and common random numbers ---------------------
    def get_state(self) -> dict:
        """A snapshot of the generator's state (a plain dict, JSON-friendly)."""
        return {"seed": self.seed, "bit_generator": self.numpy.bit_generator.state}

    def set_state(self, state: dict) -> None:
        """Restore a snapshot taken with :meth:`get_state`."""
        self.seed = int(state["seed"])
        self.numpy.bit_generator.state = state["bit_generator"]

    def __repr__(self) -> str:
        return f"Generator(seed={self.seed})"


def _shape(shape: Shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
