"""Memory estimates made before allocating: a huge setting is refused with a number, not a MemoryError.

The estimates are deliberately rough (within a small factor): they only have to
tell "fits easily" from "cannot possibly fit", e.g. ``--latent 100000000``.
"""

from __future__ import annotations

import os
from typing import Sequence

FLOAT_BYTES = 4  # float32 parameters and activations


class MemoryEstimateError(ValueError):
    """A setting would need more memory than the machine has; the message says how much."""


def available_bytes() -> int | None:
    """Memory available to a new allocation: MemAvailable on Linux, else physical memory, else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def mlp_parameters(widths: Sequence[int]) -> int:
    """Weights and biases of a chain of dense layers through ``widths``."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def training_bytes(input_dim: int, latent: int, hidden: Sequence[int], batch: int, samples: int = 1) -> int:
    """Parameters x 4 (value, gradient, Adam's two moments) plus a batch's activations (x samples, for IWAE)."""
    hidden = list(hidden)
    params = mlp_parameters([input_dim, *hidden, 2 * latent]) + mlp_parameters([latent, *hidden[::-1], input_dim])
    activations = batch * samples * (2 * sum(hidden) + 3 * latent + 2 * input_dim)
    return FLOAT_BYTES * (4 * params + 4 * activations)  # activations: value, gradient and saved copies


def check_fits(needed: int, what: str) -> None:
    """Raise :class:`MemoryEstimateError` when ``needed`` bytes exceed the memory available."""
    free = available_bytes()
    if free is not None and needed > free:
        raise MemoryEstimateError(
            f"{what} needs about {gigabytes(needed)} of memory, more than the {gigabytes(free)} available"
        )
