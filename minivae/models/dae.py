"""The denoising autoencoder: reconstruct the CLEAN x from a corrupted copy x̃.

    loss = mean over the batch of  -ln p(x | z = enc(x̃)),   x̃ ~ C(x̃ | x)

Copying the input is no longer a solution, so the network has to learn what
typical inputs look like (and how to pull a noisy one back towards them).
Two corruptions C, both drawn from the explicit generator ``rng``:

- ``"gaussian"``: x̃ = x + σ·ε with ε ~ N(0, I) (``level`` = σ);
- ``"mask"``: each coordinate is set to 0 with probability p (``level`` = p),
  x̃ = x · m with m ~ Bernoulli(1 - p) ("dropout on the input").

The loss always compares with the clean x: the corruption is in the input only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minivae.random import Generator
from minivae.tensor import Tensor
from minivae.models.ae import Autoencoder

NOISES = ("gaussian", "mask")


class DenoisingAutoencoder(Autoencoder):
    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        likelihood: str = "bernoulli",
        noise: str = "gaussian",
        level: float = 0.3,
    ) -> None:
        super().__init__(input_dim, latent, hidden, rng=rng, likelihood=likelihood)
        if noise not in NOISES:
            raise ValueError(f"DenoisingAutoencoder: noise must be one of {NOISES}, got {noise!r}")
        if noise == "mask" and not 0.0 <= level < 1.0:
            raise ValueError(f"DenoisingAutoencoder: a masking level is a probability in [0, 1), got {level}")
        if noise == "gaussian" and level < 0:
            raise ValueError(f"DenoisingAutoencoder: a Gaussian noise level is a std >= 0, got {level}")
        self.noise, self.level = noise, float(level)

    def corrupt(self, x: Tensor, rng: Generator) -> Tensor:
        """x̃ ~ C(x̃ | x). The noise is a constant of the graph: no gradient flows into it."""
        if self.noise == "gaussian":
            return x + rng.normal(x.shape, dtype=x.dtype, std=self.level)
        keep = rng.bernoulli(np.full(x.shape, 1.0 - self.level), dtype=x.dtype)  # 1 = keep the pixel
        return x * keep
