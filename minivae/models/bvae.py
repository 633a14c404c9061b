"""A VAE with binary latent variables, trained with a choice of gradient estimator.

Generative model:  z ∈ {0, 1}^K,  p(z) = Π_k Bernoulli(z_k; ½),  x ~ Π_pixels Bernoulli(σ(dec(z))).
Inference model:   q(z | x) = Π_k Bernoulli(z_k; σ(l_k(x))),  l = enc(x) the encoder's logits.

Loss (negative ELBO, summed over pixels, averaged over the batch):

    loss = E_q[-ln p(x | z)] + KL(q(z | x) ‖ p(z)),
    KL   = Σ_k [q_k ln q_k + (1 - q_k) ln(1 - q_k) + ln 2]   (closed form, q_k = σ(l_k)).

The KL is exact and differentiable; only the reconstruction term needs an
estimator for the encoder, since z is discrete. ``estimator`` picks it:

- ``"reinforce"``: z ~ q drawn as a constant; the encoder gets (f - 0)·∇ ln q(z|x),
  f = -ln p(x|z) (the score-function surrogate), the decoder its usual gradient.
- ``"reinforce-baseline"``: the same with b(x) = moving average + a learned,
  input-dependent correction (NVIL-style, Mnih & Gregor 2014); the baseline net
  regresses on f - moving average, its loss added with a zero-valued term so the
  printed loss stays the negative ELBO.
- ``"gumbel"``: relaxed z = σ((l + logistic noise)/τ) fed to the decoder; the loss is
  pathwise-differentiable. It trains a relaxed objective (biased for the discrete one).
- ``"straight-through"``: hard z forward, ∂z/∂l := σ'(l) backward (biased).

``neg_elbo`` in the loss dict is always the discrete bound with a hard sample,
comparable across estimators.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minivae import losses, ops
from minivae.stochastic import (
    LearnedBaseline,
    MovingAverageBaseline,
    bernoulli_kl_uniform,
    bernoulli_kl_uniform_per_dim,
    bernoulli_log_prob,
    relaxed_bernoulli,
    sample_bernoulli,
    score_function_surrogate,
    straight_through_bernoulli,
    zero_with_gradient_of,
)
from minivae.models.ae import as_input
from minivae.nn import Linear, Module, Parameter, ReLU, Sequential
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad

ESTIMATORS = ("reinforce", "reinforce-baseline", "gumbel", "straight-through")


def _mlp(sizes: Sequence[int], rng: Generator) -> Sequential:
    """Linear -> ReLU -> ... -> Linear (He init for layers feeding a ReLU, Xavier for the last)."""
    layers: list[Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(Linear(a, b, rng=rng, init="xavier" if last else "he"))
        if not last:
            layers.append(ReLU())
    return Sequential(*layers)


class BernoulliPosterior:
    """q(z | x) = Π_k Bernoulli(σ(l_k)): what the diagnostics need from a posterior."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> Tensor:
        """E_q[z] = σ(l)."""
        return ops.sigmoid(self.logits)

    def sample(self, rng: Generator) -> Tensor:
        return sample_bernoulli(self.logits, rng)

    def log_prob(self, z: Any) -> Tensor:
        return bernoulli_log_prob(self.logits, z)

    def kl_prior_per_dim(self) -> Tensor:
        """KL(q(z_k | x) ‖ Bernoulli(½)) per latent coordinate, shape (batch, K)."""
        return bernoulli_kl_uniform_per_dim(self.logits)


class BernoulliVAE(Module):
    """Binary-latent VAE on pixels in [0, 1] (see the module docstring)."""

    conditional = False

    def __init__(
        self,
        input_dim: int,
        latent: int = 32,
        hidden: int | Sequence[int] = 128,
        *,
        rng: Generator,
        estimator: str = "reinforce-baseline",
        tau: float = 0.5,
        baseline_decay: float = 0.9,
    ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"BernoulliVAE: estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if tau <= 0:
            raise ValueError(f"BernoulliVAE: tau must be > 0, got {tau}")
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        self.input_dim, self.latent = int(input_dim), int(latent)
        self.estimator, self.tau = estimator, float(tau)
        self.encoder = _mlp((self.input_dim, *hidden, self.latent), rng)
        self.decoder = _mlp((self.latent, *reversed(hidden), self.input_dim), rng)
        if estimator == "reinforce-baseline":
            self.baseline = LearnedBaseline(self.input_dim, hidden=64, rng=rng)
            self.baseline_decay = float(baseline_decay)
            # The moving average's state (value, number of updates) kept as a buffer in a Parameter so
            # that state_dict() and checkpoints hold it and a resumed run continues exactly. It never
            # receives a gradient, and optimizers skip parameters whose grad is None.
            self.moving_average_state = Parameter(np.zeros(2), dtype="float64")

    # -- the model ---------------------------------------------------------------------
    def _as_input(self, x: Any) -> Tensor:
        # the encoder's dtype, not the model's: the moving-average state is float64 always
        return as_input(x, self.encoder, owner=type(self).__name__)

    def posterior(self, x: Any, y: Any = None) -> BernoulliPosterior:
        return BernoulliPosterior(self.encoder(self._as_input(x)))

    def recon_nll(self, z: Tensor, x: Tensor) -> Tensor:
        """-ln p(x | z) summed over pixels: one value per example."""
        return losses.bce_with_logits(self.decoder(z), x, reduction="sum", axis=-1)

    def loss(self, x: Any, y: Any, rng: Generator, step: int | None = None) -> dict[str, Tensor]:
        """Negative ELBO with the chosen estimator; entries are batch means (nats per example).
        No warm-up: ``step`` is unused."""
        x = self._as_input(x)
        logits = self.encoder(x)
        kl = bernoulli_kl_uniform(logits)
        extra: dict[str, Tensor] = {}
        if self.estimator in ("reinforce", "reinforce-baseline"):
            z = sample_bernoulli(logits, rng)  # a constant: no path from z back to the encoder
            f = self.recon_nll(z, x)  # pathwise for the decoder
            log_q = bernoulli_log_prob(logits, z)
            if self.estimator == "reinforce":
                recon = score_function_surrogate(f, log_q)
            else:
                ma = MovingAverageBaseline(self.baseline_decay)
                ma.value, ma.updates = float(self.moving_average_state.data[0]), int(self.moving_average_state.data[1])
                offset = ma.value
                with no_grad():
                    b = self.baseline(x).data + offset  # b(x) = moving average + learned correction
                recon = score_function_surrogate(f, log_q, b)
                mse = self.baseline.loss(x, f, offset=offset)
                ma.update(f)  # after use: this batch's b came from earlier batches only
                self.moving_average_state.data[:] = (ma.value, ma.updates)
                extra["baseline_mse"] = mse.detach()
                recon = recon + zero_with_gradient_of(mse)  # trains b(x); adds 0 to the value
            hard_recon = f
        elif self.estimator == "gumbel":
            z = relaxed_bernoulli(logits, self.tau, rng=rng)
            recon = self.recon_nll(z, x)
            with no_grad():  # the discrete bound, for reporting only
                hard_recon = self.recon_nll(Tensor((z.data > 0.5), dtype=z.dtype), x)
        else:  # straight-through
            z = straight_through_bernoulli(logits, rng)
            recon = self.recon_nll(z, x)
            hard_recon = recon
        return {
            "loss": (recon + kl).mean(),
            "recon": recon.detach().mean(),
            "kl": kl.mean(),
            "neg_elbo": (hard_recon.detach() + kl.detach()).mean(),
            **extra,
        }

    def neg_elbo(self, x: Any, rng: Generator, samples: int = 1) -> float:
        """The discrete negative ELBO averaged over the batch and ``samples`` hard draws (no gradient)."""
        with no_grad():
            x = self._as_input(x)
            q = self.posterior(x)
            kl = bernoulli_kl_uniform(q.logits).data
            recon = np.mean([self.recon_nll(q.sample(rng), x).data for _ in range(samples)], axis=0)
            return float((recon + kl).mean())

    # -- using a trained model -----------------------------------------------------------
    def encode(self, x: Any, y: Any = None) -> Tensor:
        """q(z_k = 1 | x) = σ(l_k(x)): the posterior mean code."""
        return self.posterior(x).mean

    def decode(self, z: Any, y: Any = None) -> Tensor:
        """E[x | z]: pixel probabilities."""
        return ops.sigmoid(self.decoder(self._as_input(z)))

    def reconstruct(self, x: Any, y: Any = None) -> Tensor:
        """Decode the rounded posterior mean (the most probable code under q)."""
        code = self.encode(x).data > 0.5
        return self.decode(code.astype(np.float32))

    def sample(self, n: int, rng: Generator, y: Any = None) -> Tensor:
        """z ~ Bernoulli(½)^K, then the mean image E[x | z]."""
        z = rng.bernoulli(np.full((int(n), self.latent), 0.5), dtype=self.encoder.dtype)
        return self.decode(z)


def build_bvae(
    input_dim: int,
    latent: int,
    hidden: int | Sequence[int],
    rng: Generator,
    num_classes: int | None = None,
    *,
    estimator: str = "reinforce-baseline",
    tau: float = 0.5,
) -> BernoulliVAE:
    """Builder in the registry's form ``builder(input_dim, latent, hidden, rng, num_classes=None, **options)``.

    Register with ``MODELS["bvae"] = build_bvae``; labels (num_classes) are not used.
    """
    return BernoulliVAE(input_dim, latent, hidden, rng=rng, estimator=estimator, tau=tau)
