"""The conditional VAE: the label y is given to both networks.

    q(z | x, y) = N(mu([x, onehot(y)]), diag exp(logvar([x, onehot(y)])))
    p(x | z, y) = decoder([z, onehot(y)])

Everything else is the VAE: loss = recon + β·KL(q(z | x, y) ‖ N(0, I)). Since
the decoder is told the class, z is free to hold everything else (slant,
thickness, style), and ``sample(n, rng, y=c)`` draws images of the chosen
class c; the same z with different labels gives the same style in each class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minivae import ops
from minivae.providers import backend
from minivae.random import Generator
from minivae.tensor import Tensor
from minivae.models.vae import VAE


class ConditionalVAE(VAE):
    conditional = True

    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        num_classes: int,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        warmup_steps: int = 0,
    ) -> None:
        if num_classes is None or int(num_classes) < 2:
            raise ValueError(f"ConditionalVAE: num_classes must be an int >= 2 (a labelled data set), got {num_classes!r}")
        super().__init__(
            input_dim, latent, hidden, rng=rng, likelihood=likelihood, beta=beta,
            warmup_steps=warmup_steps, condition_dim=int(num_classes),
        )
        self.num_classes = int(num_classes)

    def _code(self, y: np.ndarray | None, like: Tensor) -> Tensor:
        """onehot(y) as a constant tensor, broadcast over any leading sample axes of ``like``."""
        if y is None:
            raise ValueError("ConditionalVAE: labels y are required (one integer class per example)")
        y = np.asarray(y)
        if y.shape != (like.shape[-2],):
            raise ValueError(f"ConditionalVAE: y has shape {y.shape}, expected ({like.shape[-2]},) to match the batch")
        codes = ops.one_hot(y, self.num_classes, dtype=like.dtype).data
        xp = backend.array_module(codes)
        return Tensor(xp.ascontiguousarray(xp.broadcast_to(codes, like.shape[:-1] + (self.num_classes,))), dtype=like.dtype)

    def encoder_input(self, x: Tensor, y: np.ndarray | None) -> Tensor:
        return ops.concat([x, self._code(y, x)], axis=-1)

    def decoder_input(self, z: Tensor, y: np.ndarray | None) -> Tensor:
        return ops.concat([z, self._code(y, z)], axis=-1)

    def sample(self, n: int, rng: Generator, y: np.ndarray | int | None = None) -> Tensor:
        """n images of class y (an int or one label per image); y=None cycles 0, 1, ..., C-1, 0, ..."""
        if y is None:
            y = np.arange(int(n)) % self.num_classes
        elif np.ndim(y) == 0:
            y = np.full(int(n), int(y))
        return super().sample(n, rng, np.asarray(y, dtype=np.int64))
