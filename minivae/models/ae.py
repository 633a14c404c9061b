"""The plain autoencoder: an encoder x -> z and a decoder z -> x̂, trained to reconstruct.

Encoder and decoder are separate modules on purpose: the encoder alone is a
feature extractor (reuse it for a classifier), and the decoder can be fed any z
(walk the latent space, decode samples from a prior).

The decoder also owns the *likelihood* p(x | z) that turns its output into a
reconstruction loss, because "which loss?" is really "which noise model?":

- ``"bernoulli"``: the decoder outputs logits l; each pixel is a coin with
  P(x = 1) = σ(l), and -ln p(x | z) = Σ_pixels bce_with_logits(l, x). Right for
  pixels in [0, 1].
- ``"gaussian"``: the decoder outputs means m; p(x | z) = N(x; m, diag σ²) with
  one learned log-variance per coordinate (a Parameter, initialised to 0, i.e.
  σ = 1), so -ln p(x | z) = ½ Σ [ln 2π + ln σ² + (x - m)² / σ²]. Right for real
  valued data such as 2-D point clouds.
- ``"mse"`` (autoencoders only, no probabilistic reading needed):
  Σ_pixels (x - m)², the squared error.

Every loss here is summed over the coordinates of one example and averaged over
the batch (see :mod:`minivae.models` for the common protocol).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minivae.providers import backend
from minivae import losses, ops
from minivae.nn import Linear, Module, Parameter, ReLU, Sequential, Tanh
from minivae.random import Generator
from minivae.tensor import Tensor

LIKELIHOODS = ("bernoulli", "gaussian", "mse")


def hidden_sizes(hidden: int | Sequence[int]) -> tuple[int, ...]:
    """``128`` -> ``(128,)``; ``(256, 128)`` stays; every size must be a positive int."""
    sizes = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if not sizes or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h <= 0 for h in sizes):
        raise ValueError(f"hidden must be a positive int or a non-empty sequence of them, got {hidden!r}")
    return tuple(int(h) for h in sizes)


HIDDEN_ACTIVATIONS = ("relu", "tanh")


def relu_stack(in_dim: int, hidden: int | Sequence[int], rng: Generator, activation: str = "relu") -> Sequential:
    """The hidden layers Linear -> ReLU (He init), repeated; or Linear -> Tanh (Xavier init)
    with ``activation="tanh"``, the hidden units of the IWAE paper's networks."""
    if activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"hidden activation must be one of {HIDDEN_ACTIVATIONS}, got {activation!r}")
    layers: list[Module] = []
    width = in_dim
    for h in hidden_sizes(hidden):
        if activation == "relu":
            layers += [Linear(width, h, rng=rng, init="he"), ReLU()]
        else:
            layers += [Linear(width, h, rng=rng, init="xavier"), Tanh()]
        width = h
    return Sequential(*layers)


def mlp(
    in_dim: int, hidden: int | Sequence[int], out_dim: int, rng: Generator, activation: str = "relu"
) -> Sequential:
    """Linear -> ReLU (or Tanh) -> ... -> Linear; the last, linear layer uses Xavier init."""
    body = relu_stack(in_dim, hidden, rng, activation)
    return Sequential(*body, Linear(hidden_sizes(hidden)[-1], out_dim, rng=rng, init="xavier"))


def as_input(x: Any, like: Module, owner: str | None = None) -> Tensor:
    """Wrap a NumPy/CuPy batch as a constant tensor of the module's dtype (float32 or float64).

    Data (an array, or a tensor without a gradient) is cast to the model's dtype: NumPy
    hands out float64 by default. A tensor that requires a gradient is not: casting it
    would silently compute that gradient in the other precision (a float64 gradcheck
    through a float32 model fails with no hint why), so it must match the model.
    ``owner`` names the model in that error (default: ``like``'s class).
    """
    dtype = like.dtype
    if isinstance(x, Tensor):
        if x.dtype != dtype and x.requires_grad:
            why = " (e.g. to gradcheck in float64)" if x.dtype == "float64" else ""
            raise TypeError(
                f"{owner or type(like).__name__}: input tensor of shape {x.shape} is {x.dtype} and requires a gradient, but the "
                f"model computes in {dtype}; call model.astype('{x.dtype}') first{why}, "
                f"or pass x.detach().astype('{dtype}')"
            )
        return x if x.dtype == dtype else x.astype(dtype)
    return Tensor(x, dtype=dtype)


class Encoder(Module):
    """x (batch, input_dim) -> code (batch, out_dim) through ReLU hidden layers."""

    def __init__(self, input_dim: int, hidden: int | Sequence[int], out_dim: int, *, rng: Generator) -> None:
        super().__init__()
        self.input_dim, self.out_dim = int(input_dim), int(out_dim)
        self.net = mlp(self.input_dim, hidden, self.out_dim, rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(Module):
    """z (..., latent) -> distribution parameters of p(x | z) (..., output_dim).

    ``forward`` returns the raw output (logits for Bernoulli, means otherwise);
    :meth:`mean` turns it into E[x | z] and :meth:`nll` into -ln p(x | z).
    Leading sample axes are allowed: z of shape (k, batch, latent) decodes to
    (k, batch, output_dim), which is what the IWAE needs.
    """

    def __init__(
        self,
        latent: int,
        hidden: int | Sequence[int],
        output_dim: int,
        *,
        rng: Generator,
        likelihood: str = "bernoulli",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Decoder: likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.latent, self.output_dim, self.likelihood = int(latent), int(output_dim), likelihood
        self.net = mlp(self.latent, hidden, self.output_dim, rng, activation)
        if likelihood == "gaussian":
            # ln σ² per output coordinate, shared by all z: starts at σ = 1.
            self.logvar = Parameter(backend.xp().zeros(self.output_dim), dtype="float32")

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def mean(self, out: Tensor) -> Tensor:
        """E[x | z]: σ(logits) for Bernoulli pixels, the output itself otherwise."""
        return ops.sigmoid(out) if self.likelihood == "bernoulli" else out

    def nll(self, out: Tensor, x: Tensor) -> Tensor:
        """-ln p(x | z) summed over the last (coordinate) axis: one value per example (and sample).

        ``out`` may have more leading axes than ``x`` (samples); x broadcasts against it.
        """
        if self.likelihood == "bernoulli":
            return losses.bce_with_logits(out, x, reduction="sum", axis=-1)
        if self.likelihood == "mse":
            return losses.mse(out, x, reduction="sum", axis=-1)
        return losses.gaussian_nll(out, x, self.logvar, reduction="sum", axis=-1)


class Autoencoder(Module):
    """Deterministic autoencoder: loss = mean over the batch of -ln p(x | z = enc(x)).

    With ``likelihood="mse"`` that is the summed squared error Σ (x - x̂)².
    """

    conditional = False

    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        self.input_dim, self.latent = int(input_dim), int(latent)
        self.encoder = Encoder(input_dim, hidden, latent, rng=rng)
        self.decoder = Decoder(latent, hidden, input_dim, rng=rng, likelihood=likelihood)

    def corrupt(self, x: Tensor, rng: Generator) -> Tensor:
        """The encoder's input during training: the clean x here (the DAE overrides this)."""
        return x

    def loss(self, x: Any, y: np.ndarray | None, rng: Generator, step: int | None = None) -> dict[str, Tensor]:
        """{"loss": mean_batch Σ_pixels -ln p(x | enc(x̃)), "recon": the same}; x̃ = corrupt(x).
        (``step`` is the training loop's step count, which an autoencoder does not use.)"""
        x = as_input(x, self)
        recon = self.decoder.nll(self.decoder(self.encoder(self.corrupt(x, rng))), x)
        loss = recon.mean()
        return {"loss": loss, "recon": loss}

    def encode(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        """The code z = enc(x)."""
        return self.encoder(as_input(x, self))

    def decode(self, z: Any, y: np.ndarray | None = None) -> Tensor:
        """E[x | z] for any codes z (probabilities for Bernoulli pixels)."""
        return self.decoder.mean(self.decoder(as_input(z, self)))

    def reconstruct(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, rng: Generator, y: np.ndarray | None = None) -> Tensor:
        """Decode z ~ N(0, I).

        A plain autoencoder never asked its codes to look like N(0, I), so most of
        these fall in regions the decoder never saw: expect poor images. That is
        the lesson the VAE answers.
        """
        z = rng.normal((int(n), self.latent), dtype=self.dtype)
        return self.decode(z)
