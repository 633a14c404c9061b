"""ln p(x) of a test set by importance sampling, a block of examples at a time, with progress."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

from minivae.models import importance_log_likelihood
from minivae.random import Generator


def importance_log_likelihoods(model, test, k: int, chunk: int, seed: int, conditional: bool) -> np.ndarray:
    """Importance-sampled ln p(x) (ln p(x|y) for a conditional model), a block of examples at a time with progress."""
    rng = Generator(seed)
    block = 100  # importance_log_likelihood's own batch: the draws are the same as in one call
    parts = []
    with tqdm(total=len(test), desc=f"ln p(x), k={k}", unit="example", dynamic_ncols=True) as bar:
        for start in range(0, len(test), block):
            rows = slice(start, start + block)
            parts.append(importance_log_likelihood(model, test.x[rows], k=k, rng=rng, chunk=chunk, batch_size=block,
                                                   y=test.y[rows] if conditional else None))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)
