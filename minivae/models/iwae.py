"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov, 2016) and
importance-sampled log-likelihoods.

With k samples z_1..z_k ~ q(z | x) and importance weights

    w_i = p(x | z_i) p(z_i) / q(z_i | x),      E_q[w_i] = p(x),

the IWAE bound is

    L_k(x) = E[ ln (1/k) Σ_i w_i ] = E[ logsumexp_i(ln w_i) - ln k ]  <=  ln p(x).

By Jensen (ln of an average >= average of ln), L_1 = ELBO <= L_k <= L_{k+1},
and L_k -> ln p(x) as k -> ∞. The IWAE trains the same networks as the VAE on
-L_k; its gradient weights each sample by its normalised weight w_i / Σ_j w_j,
so the encoder is no longer punished for samples the decoder explains badly.

:func:`importance_log_likelihood` evaluates the same estimator with a large k
(1000-5000) to compare models: that is the test log-likelihood of the IWAE paper.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.special import logsumexp as np_logsumexp

from minivae import ops
from minivae.nn import Module
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad
from minivae.models.ae import as_input
from minivae.models.vae import VAE, standard_normal_log_prob


class IWAE(VAE):
    """The VAE's networks trained on the k-sample bound L_k instead of the ELBO.

    ``objective="elbo"`` trains the same networks on the average of the k log-weights,
    -(1/k) Σ_i ln w_i: the k-sample VAE of the IWAE paper (its authors' code trains the
    VAE so: the KL term is sampled, not closed-form). Both objectives share the samples
    and the log-weights; at k = 1 they are the same function, bit for bit, which is why
    the paper's Table 1 has one number for VAE and IWAE at k = 1.
    """

    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        k: int = 5,
        likelihood: str = "bernoulli",
        activation: str = "relu",
        objective: str = "iwae",
    ) -> None:
        super().__init__(input_dim, latent, hidden, rng=rng, likelihood=likelihood, activation=activation)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"IWAE: k (importance samples) must be a positive int, got {k!r}")
        self.k = int(k)
        if objective not in ("iwae", "elbo"):
            raise ValueError(f"IWAE: objective must be 'iwae' (L_k) or 'elbo' (mean of the k log-weights), "
                             f"got {objective!r}")
        self.objective = objective

    def loss(self, x: Any, y: np.ndarray | None, rng: Generator, step: int | None = None) -> dict[str, Tensor]:
        """loss = -mean_batch L_k (or of the mean log-weight with objective="elbo"); "recon" and "kl" are
        reported for the same samples (one-sample terms, averaged). No warm-up: ``step`` is unused."""
        x = as_input(x, self)
        q = self.posterior(x, y)
        z = q.rsample(rng=rng, sample_shape=(self.k,))  # (k, batch, latent)
        log_px_z = -self.decoder.nll(self.decoder(self.decoder_input(z, y)), x)  # (k, batch)
        log_w = log_px_z + standard_normal_log_prob(z) - q.log_prob(z)
        if self.objective == "iwae":
            bound = ops.logsumexp(log_w, axis=0) - math.log(self.k)  # L_k per example
        else:
            bound = log_w.mean(axis=0)  # the k-sample Monte Carlo ELBO per example
        return {
            "loss": -bound.mean(),
            "recon": -log_px_z.mean(),
            "kl": q.kl_standard().mean(),
            "neg_elbo": -log_w.mean(),  # the k-sample average of the one-sample ELBO estimate
        }


def iwae_bound(model: Module, x: Any, k: int, rng: Generator, y: np.ndarray | None = None) -> np.ndarray:
    """One draw of L_k(x) = logsumexp_i ln w_i - ln k for each row of x (float64 NumPy, no graph)."""
    with no_grad():
        log_w = model.log_weights(x, y, k, rng).numpy().astype(np.float64)
    return np_logsumexp(log_w, axis=0) - math.log(k)


def importance_log_likelihood(
    model: Module,
    x: Any,
    k: int = 1000,
    rng: Generator | None = None,
    y: np.ndarray | None = None,
    chunk: int = 100,
    batch_size: int = 100,
) -> np.ndarray:
    """ln p(x) ≈ logsumexp_{i<=k} ln w_i - ln k for every row of x, in nats (float64 array).

    Any model with ``log_weights(x, y, k, rng)`` works (VAE, CVAE, IWAE). Memory
    stays bounded: rows go ``batch_size`` at a time and samples ``chunk`` at a
    time, so at most chunk × batch_size decoder outputs exist at once; only the
    (k, batch) log-weights are kept, and combined in float64 at the end.
    The estimate is itself a lower bound in expectation (it is L_k), tight as k grows.
    """
    if rng is None:
        raise ValueError("importance_log_likelihood: pass rng=Generator(seed); the estimate is random")
    if not hasattr(model, "log_weights"):
        raise TypeError(f"importance_log_likelihood: {type(model).__name__} has no log_weights(x, y, k, rng)")
    for name, value in (("k", k), ("chunk", chunk), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"importance_log_likelihood: {name} must be a positive int, got {value!r}")
    x = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
    out = np.empty(len(x), dtype=np.float64)
    with no_grad():
        for start in range(0, len(x), batch_size):
            rows = slice(start, start + batch_size)
            yb = None if y is None else np.asarray(y)[rows]
            parts = []
            for done in range(0, k, chunk):
                m = min(chunk, k - done)
                parts.append(model.log_weights(x[rows], yb, m, rng).numpy().astype(np.float64))
            out[rows] = np_logsumexp(np.concatenate(parts, axis=0), axis=0) - math.log(k)
    return out
