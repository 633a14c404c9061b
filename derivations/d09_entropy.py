"""Topic 9: Shannon entropy, differential entropy, and why the Gaussian has the most of it.

Discrete cases are exact sums. Continuous entropies are closed forms checked
against ``scipy.integrate.quad`` of -p log p (an honest numerical reference),
and a Monte Carlo estimate -E[log p(x)] where quadrature gets awkward (d = 5).

Run it: ``python -m minivae.derivations.d09_entropy`` (or ``minivae derive 09_entropy``).
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
from scipy import integrate, stats

from .table import Table, main

TITLE = "9. Entropy: coins, dice, Gaussians and the maximum-entropy property"

SEED = 9
N_SIGMA = 5.0
SIGMAS = (0.1, 1.0, 4.0)


# --------------------------------------------------------------------------
# Formulas under test
# --------------------------------------------------------------------------
def shannon_entropy(probs, base: float = np.e) -> float:
    """H(P) = -sum p log p, with 0 log 0 = 0 (an impossible outcome carries no uncertainty)."""
    p = np.asarray(probs, dtype=np.float64)
    nz = p[p > 0]
    return float(-np.sum(nz * np.log(nz)) / np.log(base))


def binary_entropy(p: float) -> float:
    """Entropy of a coin with P(heads) = p, in nats (Eq. 9.1)."""
    if p in (0.0, 1.0):
        return 0.0
    return float(-p * np.log(p) - (1 - p) * np.log(1 - p))


def gaussian_entropy(sigma: float) -> float:
    """Differential entropy of N(mu, sigma^2): 1/2 log(2 pi e sigma^2) (Eq. 9.3)."""
    return 0.5 * np.log(2 * np.pi * np.e * sigma**2)


def mvn_entropy(cov: np.ndarray) -> float:
    """Differential entropy of N(mu, Sigma) in d dimensions: d/2 log(2 pi e) + 1/2 log det Sigma (Eq. 9.4)."""
    d = cov.shape[0]
    return 0.5 * d * np.log(2 * np.pi * np.e) + 0.5 * np.linalg.slogdet(cov)[1]


def uniform_entropy(sigma: float) -> float:
    """Uniform of variance sigma^2 has width a = sigma sqrt(12), density 1/a, so H = log a (Eq. 9.5)."""
    return float(np.log(sigma * np.sqrt(12.0)))


def laplace_entropy(sigma: float) -> float:
    """Laplace of variance sigma^2 has scale b = sigma / sqrt(2) (variance 2 b^2); H = 1 + log(2 b) (Eq. 9.5)."""
    return float(1.0 + np.log(2.0 * sigma / np.sqrt(2.0)))


def logistic_entropy(sigma: float) -> float:
    """Logistic of variance sigma^2 has scale s = sigma sqrt(3) / pi (variance s^2 pi^2 / 3); H = log s + 2 (Eq. 9.5)."""
    return float(np.log(sigma * np.sqrt(3.0) / np.pi) + 2.0)


# The same-variance competitors, each as (name, closed-form entropy, scipy distribution).
def competitors(sigma: float) -> list[tuple[str, float, stats.rv_continuous]]:
    return [
        ("uniform", uniform_entropy(sigma), stats.uniform(loc=-sigma * np.sqrt(3), scale=sigma * np.sqrt(12))),
        ("Laplace", laplace_entropy(sigma), stats.laplace(scale=sigma / np.sqrt(2))),
        ("logistic", logistic_entropy(sigma), stats.logistic(scale=sigma * np.sqrt(3) / np.pi)),
    ]


# --------------------------------------------------------------------------
# Numerical references
# --------------------------------------------------------------------------
def _integrate_over_support(f: Callable[[float], float], dist: stats.rv_continuous) -> float:
    """Integrate f over the support of `dist`, splitting at 0 so a kink there (Laplace) is seen."""
    lo, hi = dist.support()
    lo, hi = max(lo, dist.ppf(1e-15)), min(hi, dist.ppf(1 - 1e-15))
    pieces = [(lo, 0.0), (0.0, hi)] if lo < 0.0 < hi else [(lo, hi)]
    return sum(integrate.quad(f, a, b, limit=200, epsabs=1e-12, epsrel=1e-12)[0] for a, b in pieces)


def entropy_by_quadrature(dist: stats.rv_continuous) -> float:
    """-integral p log p, with logpdf so the tails do not underflow to log 0."""
    return _integrate_over_support(lambda x: -dist.pdf(x) * dist.logpdf(x), dist)


def kl_to_gaussian_by_quadrature(dist: stats.rv_continuous, sigma: float) -> float:
    """KL(p || N(0, sigma^2)) = integral p (log p - log phi)."""
    phi = stats.norm(scale=sigma)
    return _integrate_over_support(lambda x: dist.pdf(x) * (dist.logpdf(x) - phi.logpdf(x)), dist)


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------
def run(plot_dir: str | None = None) -> Table:
    table = Table(TITLE)
    rng = np.random.default_rng(SEED)

    # Eq 9.1 coins: a fair coin is worth exactly 1 bit; a biased one less.
    table.equal("Eq 9.1 H(fair coin) = 1 bit", shannon_entropy([0.5, 0.5], base=2), 1.0, tol=1e-15)
    table.equal("Eq 9.1 H(coin p=0.9) = binary entropy", shannon_entropy([0.9, 0.1]), binary_entropy(0.9), tol=1e-15,
                note="generic sum against the two-term formula, nats")
    table.less_equal("Eq 9.1 H(coin p=0.9) <= log 2", binary_entropy(0.9), np.log(2))
    grid = np.linspace(0.0, 1.0, 1001)
    table.equal("Eq 9.1 argmax_p H(p) = 1/2", grid[np.argmax([binary_entropy(p) for p in grid])], 0.5, tol=0.0,
                note="on a grid of 1001 values of p")
    table.equal("Eq 9.1 H(certain coin) = 0", shannon_entropy([1.0, 0.0]), 0.0, tol=0.0)

    # Eq 9.2 dice: log2 6 ~ 2.585 bits for a fair die; any bias lowers it.
    table.equal("Eq 9.2 H(fair die) = log2 6 bits", shannon_entropy(np.full(6, 1 / 6), base=2), np.log2(6), tol=1e-14)
    biased = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    table.less_equal("Eq 9.2 H(biased die) < H(fair die)", shannon_entropy(biased, base=2), np.log2(6) - 1e-3)

    # Eq 9.3 Gaussian differential entropy against quadrature; it can be negative.
    for sigma in SIGMAS:
        table.equal(f"Eq 9.3 H(N(0,{sigma:g}^2)) closed form = quadrature", gaussian_entropy(sigma),
                    entropy_by_quadrature(stats.norm(scale=sigma)), tol=1e-9)
    table.holds("Eq 9.3 differential entropy < 0 for sigma=0.1", gaussian_entropy(0.1) < 0, gaussian_entropy(0.1), 0.0,
                note="negative whenever sigma < 1/sqrt(2 pi e) ~ 0.242: unlike Shannon entropy, it is not a count of bits")

    # Eq 9.4 multivariate: closed form against 2-D quadrature and against Monte Carlo in 5-D.
    cov2 = np.array([[1.0, 0.6], [0.6, 0.5]])
    prec2, logdet2 = np.linalg.inv(cov2), np.linalg.slogdet(cov2)[1]

    def neg_p_log_p(y: float, x: float) -> float:
        # The bivariate log-density written out: scipy's per-point logpdf is too slow inside dblquad.
        log_p = -np.log(2 * np.pi) - 0.5 * logdet2 - 0.5 * (prec2[0, 0] * x * x + 2 * prec2[0, 1] * x * y
                                                          + prec2[1, 1] * y * y)
        return -np.exp(log_p) * log_p

    quad2, _ = integrate.dblquad(neg_p_log_p, -9, 9, -9, 9, epsabs=1e-11, epsrel=1e-11)
    table.equal("Eq 9.4 H(N(0,S)), d=2: closed form = quadrature", mvn_entropy(cov2), quad2, tol=1e-7)
    a = rng.normal(size=(5, 5))
    cov5 = a @ a.T + 0.5 * np.eye(5)
    mvn5 = stats.multivariate_normal(mean=np.zeros(5), cov=cov5)
    n = 200_000
    neg_log_p = -mvn5.logpdf(mvn5.rvs(size=n, random_state=rng))
    se = neg_log_p.std(ddof=1) / np.sqrt(n)
    table.equal("Eq 9.4 H(N(0,S)), d=5: closed form = -E log p", mvn_entropy(cov5), neg_log_p.mean(), tol=N_SIGMA * se,
                note=f"{n} samples; tolerance {N_SIGMA:g} standard errors")
    eigvals = np.linalg.eigvalsh(cov5)
    table.equal("Eq 9.4 H(N(0,S)) = sum of H along eigenvectors", mvn_entropy(cov5),
                sum(gaussian_entropy(np.sqrt(v)) for v in eigvals), tol=1e-12,
                note="a rotation has |det| = 1, so it does not change entropy")

    # Eq 9.5 / 9.6 the same-variance competitors: closed form = quadrature, below the Gaussian,
    # and the gap is exactly KL(p || Gaussian of the same variance).
    sigma = 1.7
    h_gauss = gaussian_entropy(sigma)
    for name, h_closed, dist in competitors(sigma):
        table.equal(f"Eq 9.5 variance of {name} = sigma^2", dist.var(), sigma**2, tol=1e-12, relative=True)
        table.equal(f"Eq 9.5 H({name}) closed form = quadrature", h_closed, entropy_by_quadrature(dist), tol=1e-8)
        table.less_equal(f"Eq 9.6 H({name}) < H(Gaussian)", h_closed, h_gauss - 1e-3)
        table.equal(f"Eq 9.6 H(Gauss) - H({name}) = KL({name}||Gauss)", h_gauss - h_closed,
                    kl_to_gaussian_by_quadrature(dist, sigma), tol=1e-8)

    if plot_dir is not None:
        _plot(plot_dir, sigma)
    return table


def _plot(plot_dir: str, sigma: float) -> None:
    """The four same-variance densities, their entropies in the legend."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = np.linspace(-4.5 * sigma, 4.5 * sigma, 800)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(xs, stats.norm(scale=sigma).pdf(xs), lw=2.5, label=f"Gaussian  H = {gaussian_entropy(sigma):.4f}")
    for name, h, dist in competitors(sigma):
        ax.plot(xs, dist.pdf(xs), label=f"{name}  H = {h:.4f}")
    ax.set_title(f"Same variance ({sigma:g}^2): the Gaussian has the most entropy")
    ax.set_xlabel("x")
    ax.legend()
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "09_entropy.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
