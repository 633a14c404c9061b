"""Topic 3: log p(x) = ELBO(q) + KL(q(z) || p(z|x)), on a linear-Gaussian model.

The model is the simplest "decoder" whose every quantity has a closed form:

    z ~ N(0, I_k),    x | z ~ N(W z + b, s^2 I_d).

Then p(x), the true posterior p(z|x) and, for any Gaussian q(z) = N(mu, S), the ELBO
are all exact, so the decomposition can be checked to rounding error, and the ELBO
can also be checked against its Monte Carlo estimate (what a VAE actually computes).

* Eq 3.1  Bayes' rule pointwise: log p(x) = log p(x|z) + log p(z) - log p(z|x) for every z
* Eq 3.2  the two ways to write the ELBO agree: E[log p(x,z)] + H[q] = E[log p(x|z)] - KL(q||p(z))
* Eq 3.3  log p(x) = ELBO(q) + KL(q || p(z|x)) for several q
* Eq 3.4  closed-form ELBO vs Monte Carlo
* Eq 3.5  ELBO <= log p(x), with equality when q is the exact posterior

Run it: ``python -m minivae.derivations.d03_elbo_decomposition`` (or ``minivae derive 03_elbo_decomposition``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .table import Table, main

TITLE = "Topic 3: the ELBO decomposition log p(x) = ELBO + KL(q || p(z|x))"

SEED = 3
MC_SAMPLES = 200_000
MC_SIGMAS = 5.0
EXACT_TOL = 1e-9  # sums of a few dozen float64 terms of size ~10


@dataclass
class LinearGaussian:
    """z ~ N(0, I_k), x | z ~ N(W z + b, s^2 I_d)."""

    W: np.ndarray  # (d, k)
    b: np.ndarray  # (d,)
    s: float

    @property
    def k(self) -> int:
        return self.W.shape[1]

    @property
    def d(self) -> int:
        return self.W.shape[0]


def make_model(rng: np.random.Generator, d: int = 5, k: int = 2, s: float = 0.7) -> LinearGaussian:
    """A random model of the given size (fixed by the caller's seeded generator)."""
    return LinearGaussian(W=rng.standard_normal((d, k)), b=0.5 * rng.standard_normal(d), s=s)


# --------------------------------------------------------------------------- formulas
def log_likelihood(model: LinearGaussian, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log p(x | z) for z of shape (..., k)."""
    resid = x - (z @ model.W.T + model.b)
    return -0.5 * model.d * math.log(2 * math.pi * model.s**2) - 0.5 * np.sum(resid**2, axis=-1) / model.s**2


def log_prior(z: np.ndarray) -> np.ndarray:
    """log N(z; 0, I)."""
    return -0.5 * z.shape[-1] * math.log(2 * math.pi) - 0.5 * np.sum(z**2, axis=-1)


def log_marginal(model: LinearGaussian, x: np.ndarray) -> float:
    """log p(x): x = W z + b + s e is Gaussian with mean b and covariance W W^T + s^2 I."""
    cov = model.W @ model.W.T + model.s**2 * np.eye(model.d)
    return float(stats.multivariate_normal(model.b, cov).logpdf(x))


def posterior(model: LinearGaussian, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact p(z | x) = N(m, Sigma), Sigma = (I + W^T W / s^2)^-1, m = Sigma W^T (x - b) / s^2."""
    precision = np.eye(model.k) + model.W.T @ model.W / model.s**2
    Sigma = np.linalg.inv(precision)
    m = Sigma @ model.W.T @ (x - model.b) / model.s**2
    return m, Sigma


def expected_log_likelihood(model: LinearGaussian, x: np.ndarray, mu: np.ndarray, S: np.ndarray) -> float:
    """E_{z~N(mu,S)} log p(x|z): the squared residual at the mean plus tr(W S W^T) from the spread of z."""
    resid = x - (model.W @ mu + model.b)
    spread = np.trace(model.W @ S @ model.W.T)
    return -0.5 * model.d * math.log(2 * math.pi * model.s**2) - 0.5 * (resid @ resid + spread) / model.s**2


def expected_log_prior(mu: np.ndarray, S: np.ndarray) -> float:
    """E_{z~N(mu,S)} log N(z; 0, I) = -k/2 log 2pi - (mu^T mu + tr S) / 2."""
    return -0.5 * mu.size * math.log(2 * math.pi) - 0.5 * (mu @ mu + np.trace(S))


def gaussian_entropy(S: np.ndarray) -> float:
    """H[N(mu, S)] = k/2 log(2 pi e) + 1/2 log det S."""
    return 0.5 * S.shape[0] * math.log(2 * math.pi * math.e) + 0.5 * np.linalg.slogdet(S)[1]


def kl_gaussians(m0: np.ndarray, S0: np.ndarray, m1: np.ndarray, S1: np.ndarray) -> float:
    """KL(N(m0,S0) || N(m1,S1)), the full-covariance formula of topic 5 (Eq 5.4)."""
    d = m1 - m0
    S1_inv = np.linalg.inv(S1)
    return 0.5 * (np.trace(S1_inv @ S0) + d @ S1_inv @ d - m0.size + np.linalg.slogdet(S1)[1] - np.linalg.slogdet(S0)[1])


def elbo_closed(model: LinearGaussian, x: np.ndarray, mu: np.ndarray, S: np.ndarray) -> float:
    """ELBO(q) = E_q[log p(x|z)] + E_q[log p(z)] + H[q], every term in closed form."""
    return expected_log_likelihood(model, x, mu, S) + expected_log_prior(mu, S) + gaussian_entropy(S)


def elbo_monte_carlo(model: LinearGaussian, x: np.ndarray, mu: np.ndarray, S: np.ndarray,
                     rng: np.random.Generator, n: int = MC_SAMPLES) -> tuple[float, float]:
    """The VAE's estimate: average of log p(x|z) + log p(z) - log q(z), z = mu + L eps. Returns (mean, s.e.)."""
    L = np.linalg.cholesky(S)
    z = mu + rng.standard_normal((n, mu.size)) @ L.T
    log_q = stats.multivariate_normal(mu, S).logpdf(z)
    terms = log_likelihood(model, x, z) + log_prior(z) - log_q
    return float(terms.mean()), float(terms.std(ddof=1) / math.sqrt(n))


# --------------------------------------------------------------------------- the checks
def _candidate_qs(model: LinearGaussian, x: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Some Gaussians q: diagonal ones like a VAE encoder's, and the exact posterior."""
    m, Sigma = posterior(model, x)
    k = model.k
    return [
        ("q = N(0, I)", np.zeros(k), np.eye(k)),
        ("q diag, random", rng.standard_normal(k), np.diag(np.exp(0.5 * rng.standard_normal(k)))),
        ("q diag, posterior mean", m, np.diag(np.diag(Sigma))),
        ("q = exact posterior", m, Sigma),
    ]


def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 3.1 - 3.5 and return the table."""
    rng = np.random.default_rng(SEED)
    t = Table(TITLE)
    model = make_model(rng)
    z_true = rng.standard_normal(model.k)
    x = model.W @ z_true + model.b + model.s * rng.standard_normal(model.d)

    log_px = log_marginal(model, x)
    m, Sigma = posterior(model, x)

    # Eq 3.1: Bayes' rule at several z. Holding for all z is what makes (m, Sigma) the posterior.
    z_points = rng.standard_normal((5, model.k)) * 2.0
    log_post = stats.multivariate_normal(m, Sigma).logpdf(z_points)
    rhs = log_likelihood(model, x, z_points) + log_prior(z_points) - log_post
    t.equal("Eq 3.1 log p(x) = log p(x|z) + log p(z) - log p(z|x), 5 z's", rhs, log_px, EXACT_TOL)

    for name, mu, S in _candidate_qs(model, x, rng):
        elbo = elbo_closed(model, x, mu, S)
        kl_post = kl_gaussians(mu, S, m, Sigma)

        # Eq 3.2: "reconstruction minus KL to the prior" is the same number.
        recon_minus_kl = expected_log_likelihood(model, x, mu, S) - kl_gaussians(mu, S, np.zeros(model.k), np.eye(model.k))
        t.equal(f"Eq 3.2 E log p(x,z) + H = E log p(x|z) - KL(q||p(z)) [{name}]", elbo, recon_minus_kl, EXACT_TOL)

        # Eq 3.3: the decomposition.
        t.equal(f"Eq 3.3 ELBO + KL(q||p(z|x)) = log p(x) [{name}]", elbo + kl_post, log_px, EXACT_TOL)

        # Eq 3.4: closed form vs the Monte Carlo estimate a VAE would use.
        estimate, se = elbo_monte_carlo(model, x, mu, S, rng)
        tol = max(MC_SIGMAS * se, 1e-9)  # at the exact posterior every term equals log p(x): se = 0
        t.equal(f"Eq 3.4 ELBO closed vs Monte Carlo [{name}]", elbo, estimate, tol,
                note=f"{MC_SAMPLES} draws, tolerance = {MC_SIGMAS:g} standard errors (se = {se:.2g})")

        # Eq 3.5: the bound, tight only at the posterior.
        t.less_equal(f"Eq 3.5 ELBO <= log p(x) [{name}]", elbo, log_px, tol=EXACT_TOL, note=f"gap = KL = {kl_post:.4g}")

    tight = elbo_closed(model, x, m, Sigma)
    t.equal("Eq 3.5 ELBO(exact posterior) = log p(x)", tight, log_px, EXACT_TOL)

    if plot_dir is not None:
        _plot(plot_dir)
    return t


def _plot(plot_dir: str) -> None:
    """A 1-D version (k = 1): ELBO and log p(x) as the mean of q moves; the gap between them is the KL."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(SEED)
    model = make_model(rng, d=3, k=1)
    x = model.W @ np.array([1.0]) + model.b
    log_px = log_marginal(model, x)
    m, Sigma = posterior(model, x)
    sd = math.sqrt(Sigma[0, 0])
    means = np.linspace(m[0] - 3 * sd, m[0] + 3 * sd, 101)
    fig, ax = plt.subplots(figsize=(6, 4))
    for scale in (1.0, 2.0):
        S = Sigma * scale**2
        elbos = [elbo_closed(model, x, np.array([mu]), S) for mu in means]
        ax.plot(means, elbos, label=f"ELBO, q = N(mu, ({scale:g} sd_post)^2)")
    ax.axhline(log_px, color="k", ls="--", label="log p(x)")
    ax.axvline(m[0], color="gray", ls=":", label="posterior mean")
    ax.set_xlabel("mean of q")
    ax.set_ylabel("nats")
    ax.set_title("log p(x) - ELBO = KL(q || p(z|x))")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "03_elbo_decomposition.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
