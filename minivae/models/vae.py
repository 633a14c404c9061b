"""The variational autoencoder (Kingma & Welling, 2014) and the β-VAE.

Generative model:   z ~ p(z) = N(0, I),   x ~ p(x | z)  (the decoder's likelihood).
Inference model:    q(z | x) = N(mu(x), diag exp(logvar(x)))  (the encoder).

For every x the evidence lower bound holds (Jensen's inequality):

    ln p(x) >= ELBO(x) = E_q[ln p(x | z)] - KL(q(z | x) ‖ p(z)).

Training minimises the negative ELBO averaged over the batch,

    loss = mean_batch [ recon(x) + β · KL(x) ],
    recon(x) = -ln p(x | z),  z = mu + exp(logvar / 2) · ε,  ε ~ N(0, I)   (one sample),
    KL(x)    = ½ Σ_d (exp(logvar_d) + mu_d² - 1 - logvar_d)                 (closed form).

Writing z as a deterministic function of (mu, logvar) and outside noise ε is the
reparameterisation trick: the sample becomes a node of the graph that gradients
flow through. β = 1 is the VAE; β > 1 the β-VAE (a stronger pull towards the
prior, often more disentangled codes, blurrier reconstructions). With a KL
warm-up, the weight grows linearly from 0 to β over ``warmup_steps`` optimizer
steps, so the decoder learns to use z before the KL term can switch it off.

The reported "neg_elbo" always uses β = 1: it is the bound itself, in nats.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minivae import losses
from minivae.distributions import Normal
from minivae.nn import Linear, Module
from minivae.random import Generator
from minivae.tensor import Tensor
from minivae.models.ae import Decoder, as_input, hidden_sizes, relu_stack




def kl_warmup_weight(beta: float, warmup_steps: int, step: int | None) -> float:
    """The KL weight after ``step`` optimizer steps: β · min(1, step / warmup_steps), linear from 0
    (β itself with no warm-up, or with ``step=None``: evaluation, after the warm-up)."""
    if warmup_steps == 0 or step is None:
        return beta
    return beta * min(1.0, step / warmup_steps)


class GaussianEncoder(Module):
    """x -> q(z | x) = Normal(mu(x), logvar(x)): shared ReLU (or tanh) layers, then two linear heads."""

    def __init__(
        self, input_dim: int, hidden: int | Sequence[int], latent: int, *, rng: Generator, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.input_dim, self.latent = int(input_dim), int(latent)
        self.body = relu_stack(self.input_dim, hidden, rng, activation)
        width = hidden_sizes(hidden)[-1]
        self.mu = Linear(width, self.latent, rng=rng, init="xavier")
        self.logvar = Linear(width, self.latent, rng=rng, init="xavier")

    def forward(self, x: Tensor) -> Normal:
        h = self.body(x)
        return Normal(self.mu(h), self.logvar(h))


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """ln N(z; 0, I) = -½ Σ_d (z_d² + ln 2π), summed over the last axis."""
    return -losses.gaussian_nll(z, 0.0, reduction="sum", axis=-1)


class VAE(Module):
    """Gaussian encoder, Bernoulli or Gaussian decoder, loss = recon + β·KL (see the module docstring)."""

    conditional = False

    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        warmup_steps: int = 0,
        condition_dim: int = 0,
        activation: str = "relu",
        samples: int = 1,
    ) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"VAE: likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if beta < 0:
            raise ValueError(f"VAE: beta must be >= 0, got {beta}")
        if warmup_steps < 0:
            raise ValueError(f"VAE: warmup_steps must be >= 0, got {warmup_steps}")
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"VAE: samples (z draws per example) must be a positive int, got {samples!r}")
        # samples = k > 1: the reconstruction term is averaged over k draws of z, the KL stays
        # closed-form. (The IWAE paper's k-sample VAE samples the KL too: that one is
        # IWAE(objective="elbo"), whose k = 1 case is the IWAE's own update.)
        self.samples = int(samples)
        self.input_dim, self.latent = int(input_dim), int(latent)
        self.beta, self.warmup_steps = float(beta), int(warmup_steps)
        # condition_dim > 0 only for the CVAE: extra inputs (a one-hot label) for both networks.
        self.encoder = GaussianEncoder(input_dim + condition_dim, hidden, latent, rng=rng, activation=activation)
        self.decoder = Decoder(
            latent + condition_dim, hidden, input_dim, rng=rng, likelihood=likelihood, activation=activation
        )

    # -- what the networks see (the CVAE appends the label here) -----------------------
    def encoder_input(self, x: Tensor, y: np.ndarray | None) -> Tensor:
        return x

    def decoder_input(self, z: Tensor, y: np.ndarray | None) -> Tensor:
        return z

    # -- the model -------------------------------------------------------------------------
    def posterior(self, x: Any, y: np.ndarray | None = None) -> Normal:
        """q(z | x) (and y for the CVAE)."""
        return self.encoder(self.encoder_input(as_input(x, self), y))

    def kl_weight(self, step: int | None = None) -> float:
        """β, ramped linearly from 0 over the first ``warmup_steps`` optimizer steps; ``step``
        is the number of steps taken so far (None, e.g. for evaluation: the warm-up is over)."""
        return kl_warmup_weight(self.beta, self.warmup_steps, step)

    def loss(self, x: Any, y: np.ndarray | None, rng: Generator, step: int | None = None) -> dict[str, Tensor]:
        """Negative ELBO with weighted KL; entries are batch means (nats per example).
        ``step`` (optimizer steps taken so far) sets the KL warm-up weight (:meth:`kl_weight`).

        One draw of z per example; with ``samples=k`` the reconstruction term is the
        average over k draws (a lower-variance estimate of the same ELBO).
        """
        x = as_input(x, self)
        q = self.posterior(x, y)
        if self.samples == 1:
            z = q.rsample(rng=rng)
            recon = self.decoder.nll(self.decoder(self.decoder_input(z, y)), x)
        else:
            z = q.rsample(rng=rng, sample_shape=(self.samples,))  # (k, batch, latent)
            recon = self.decoder.nll(self.decoder(self.decoder_input(z, y)), x).mean(axis=0)
        kl = q.kl_standard()
        return {
            "loss": (recon + self.kl_weight(step) * kl).mean(),
            "recon": recon.mean(),
            "kl": kl.mean(),
            "neg_elbo": (recon + kl).mean(),
        }

    def log_weights(self, x: Any, y: np.ndarray | None, k: int, rng: Generator) -> Tensor:
        """ln w_i = ln p(x | z_i) + ln p(z_i) - ln q(z_i | x) for k samples z_i ~ q: shape (k, batch).

        E_q[w] = p(x), so these are the importance weights of the IWAE bound and
        of the importance-sampled log-likelihood.
        """
        x = as_input(x, self)
        q = self.posterior(x, y)
        z = q.rsample(rng=rng, sample_shape=(int(k),))  # (k, batch, latent)
        log_px_z = -self.decoder.nll(self.decoder(self.decoder_input(z, y)), x)
        return log_px_z + standard_normal_log_prob(z) - q.log_prob(z)

    # -- using a trained model ------------------------------------------------------------
    def encode(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        """The posterior mean mu(x): the usual point code of x."""
        return self.posterior(x, y).mean

    def decode(self, z: Any, y: np.ndarray | None = None) -> Tensor:
        """E[x | z]: pixel probabilities (Bernoulli) or means (Gaussian)."""
        z = as_input(z, self)
        return self.decoder.mean(self.decoder(self.decoder_input(z, y)))

    def reconstruct(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        """decode(encode(x)): the reconstruction through the posterior mean."""
        return self.decode(self.encode(x, y), y)

    def sample(self, n: int, rng: Generator, y: np.ndarray | None = None) -> Tensor:
        """Generate: z ~ N(0, I), then E[x | z] (the mean image, not a noisy pixel draw)."""
        z = rng.normal((int(n), self.latent), dtype=self.dtype)
        return self.decode(z, y)
