"""Autoencoder models and the registry the command line builds them from.

The protocol every model follows (so the training loop, figures and CLI work
with any of them):

- it is an :class:`minivae.nn.Module`;
- ``loss(x, y, rng) -> dict[str, Tensor]``: ``"loss"`` is the scalar to minimise
  (summed over the coordinates of an example, MEAN over the batch); the other
  entries (``"recon"``, ``"kl"``, ``"neg_elbo"``, ...) are per-example averages,
  for reporting. ``y`` is an integer label array or None; ``rng`` gives all noise;
- models with a latent space also give ``encode(x, y=None)`` (the posterior mean,
  or the code), ``decode(z, y=None)`` (probabilities or means) and
  ``sample(n, rng, y=None)``; ``conditional = True`` marks models that need y;
- models with a tractable density ratio give ``log_weights(x, y, k, rng)`` (shape
  (k, batch)) and so get :func:`importance_log_likelihood` for free.

A builder is ``builder(input_dim, latent, hidden, rng, num_classes=None, **options)``;
register a new one with ``MODELS["name"] = builder``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from minivae.nn import Module
from minivae.random import Generator
from minivae.models.ae import Autoencoder, Decoder, Encoder
from minivae.models.bvae import BernoulliVAE, build_bvae
from minivae.models.cvae import ConditionalVAE
from minivae.models.dae import DenoisingAutoencoder
from minivae.models.iwae import IWAE, importance_log_likelihood, iwae_bound
from minivae.models.made import MADEVAE
from minivae.models.vae import VAE, GaussianEncoder
from minivae.models.vqvae import VQVAE

Builder = Callable[..., Module]


def _ae(input_dim, latent, hidden, rng, num_classes=None, *, likelihood="bernoulli"):
    return Autoencoder(input_dim, latent, hidden, rng=rng, likelihood=likelihood)


def _dae(input_dim, latent, hidden, rng, num_classes=None, *, likelihood="bernoulli", noise="gaussian", level=0.3):
    return DenoisingAutoencoder(input_dim, latent, hidden, rng=rng, likelihood=likelihood, noise=noise, level=level)


def _vae(input_dim, latent, hidden, rng, num_classes=None, *, likelihood="bernoulli", beta=1.0, warmup_steps=0):
    return VAE(input_dim, latent, hidden, rng=rng, likelihood=likelihood, beta=beta, warmup_steps=warmup_steps)


def _cvae(input_dim, latent, hidden, rng, num_classes=None, *, likelihood="bernoulli", beta=1.0, warmup_steps=0):
    return ConditionalVAE(
        input_dim, latent, hidden, rng=rng, num_classes=num_classes, likelihood=likelihood, beta=beta,
        warmup_steps=warmup_steps,
    )


def _iwae(input_dim, latent, hidden, rng, num_classes=None, *, likelihood="bernoulli", k=5):
    return IWAE(input_dim, latent, hidden, rng=rng, k=k, likelihood=likelihood)


MODELS: dict[str, Builder] = {"ae": _ae, "dae": _dae, "vae": _vae, "cvae": _cvae, "iwae": _iwae}
MODELS["bvae"] = build_bvae  # binary latents; option estimator= (see models/bvae.py)


def _vqvae(input_dim, latent, hidden, rng, num_classes=None, *, likelihood="bernoulli", codebook_size=32,
           positions=4, commitment=0.25, ema=False, restart_dead=False):
    return VQVAE(input_dim, latent, hidden, rng=rng, likelihood=likelihood, codebook_size=codebook_size,
                 positions=positions, commitment=commitment, ema=ema, restart_dead=restart_dead)


def _madevae(input_dim, latent, hidden, rng, num_classes=None, *, beta=1.0, warmup_steps=0, made_hidden=(64,),
             free_bits=0.0):
    return MADEVAE(input_dim, latent, hidden, rng=rng, made_hidden=made_hidden, beta=beta,
                   warmup_steps=warmup_steps, free_bits=free_bits)


MODELS["vqvae"] = _vqvae  # vector-quantised codes (see models/vqvae.py)
MODELS["madevae"] = _madevae  # VAE with an autoregressive MADE decoder (see models/made.py)


def model_options(name: str) -> tuple[str, ...]:
    """The keyword options a registered model accepts (e.g. ('likelihood', 'beta', 'warmup_steps'))."""
    builder = _builder(name)
    return tuple(
        p.name for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def build_model(
    name: str,
    input_dim: int,
    latent: int,
    hidden: int | Sequence[int],
    rng: Generator,
    num_classes: int | None = None,
    **options: Any,
) -> Module:
    """Build a registered model; an option it does not take is an error naming the ones it does."""
    builder = _builder(name)
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(builder).parameters.values()
    ):
        raise ValueError(f"model {name!r} does not take option(s) {unknown}; it takes {list(accepted)}")
    return builder(input_dim, latent, hidden, rng, num_classes, **options)


def _builder(name: str) -> Builder:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models are: {', '.join(MODELS)}")
    return MODELS[name]


__all__ = [
    "MODELS", "Autoencoder", "BernoulliVAE", "ConditionalVAE", "Decoder", "DenoisingAutoencoder", "Encoder", "GaussianEncoder",
    "IWAE", "MADEVAE", "VAE", "VQVAE", "build_model", "importance_log_likelihood", "iwae_bound", "model_options",
]
