"""Topic 4: the ELBO from Jensen's inequality, and the Jensen gap = KL(q || posterior).

Write p(x) as an expectation under q of the importance weight w(z) = p(x, z) / q(z).
The log of an average is at least the average of the logs (log is concave), which gives
the ELBO; the amount lost is exactly KL(q || p(z|x)).

* Eq 4.1  p(x) = E_q[w]                          (Monte Carlo on the topic-3 model; quad in 1-D)
* Eq 4.2  log E_q[w] >= E_q[log w]               (on the sample itself, and in closed form)
* Eq 4.3  log E_q[w] - E_q[log w] = KL(q || p(z|x))   (linear-Gaussian: closed form and quad;
                                                        a logistic model with no closed form: quad)
* Eq 4.4  the gap is zero iff w is constant, i.e. q = p(z|x)

Run it: ``python -m minivae.derivations.d04_jensen_elbo`` (or ``minivae derive 04_jensen_elbo``).
"""

from __future__ import annotations

import math
import sys
from typing import Callable

import numpy as np
from scipy import integrate, special, stats

from . import d03_elbo_decomposition as lg
from .table import Table, main

TITLE = "Topic 4: the ELBO from Jensen's inequality; Jensen gap = KL(q || p(z|x))"

SEED = 4
MC_SAMPLES = 200_000
MC_SIGMAS = 5.0
QUAD_TOL = 1e-8


# --------------------------------------------------------------------------- formulas
def log_weights(model: lg.LinearGaussian, x: np.ndarray, z: np.ndarray, mu: np.ndarray, S: np.ndarray) -> np.ndarray:
    """log w(z) = log p(x|z) + log p(z) - log q(z) for q = N(mu, S); z of shape (n, k)."""
    return lg.log_likelihood(model, x, z) + lg.log_prior(z) - stats.multivariate_normal(mu, S).logpdf(z)


def jensen_gap(log_px: float, elbo: float) -> float:
    """The Jensen gap log E[w] - E[log w]; Eq 4.3 says it equals KL(q || p(z|x))."""
    return log_px - elbo


def log_mean_exp(a: np.ndarray) -> float:
    """log of the average of exp(a), without overflow."""
    return float(special.logsumexp(a) - math.log(a.size))


# --------------------------------------------------------------------------- 1-D models for quadrature
def logistic_log_joint(z: float, x: int = 1, a: float = 2.5, c: float = -1.0) -> float:
    """log p(x, z) for z ~ N(0, 1), x | z ~ Bernoulli(sigmoid(a z + c)): no closed-form posterior."""
    logit = a * z + c
    log_lik = -np.logaddexp(0.0, -logit) if x == 1 else -np.logaddexp(0.0, logit)
    return float(stats.norm.logpdf(z) + log_lik)


def _quad(f: Callable[[float], float], center: float, scale: float) -> float:
    """Integral of f over center +- 14 scale (the integrands below are negligible outside)."""
    value, _ = integrate.quad(f, center - 14 * scale, center + 14 * scale, epsabs=1e-13, epsrel=1e-12, limit=200)
    return value


def quadrature_terms(log_joint: Callable[[float], float], mu: float, sd: float) -> dict[str, float]:
    """By quadrature in 1-D: log p(x), the ELBO, and KL(q || p(z|x)) with the posterior normalized numerically."""
    q = stats.norm(mu, sd)
    # The posterior can be wider than q; integrate over a range that covers both.
    width = max(sd, 1.0)
    px = _quad(lambda z: math.exp(log_joint(z)), 0.0, 1.0)
    log_px = math.log(px)
    elbo = _quad(lambda z: q.pdf(z) * (log_joint(z) - q.logpdf(z)), mu, width)
    kl = _quad(lambda z: q.pdf(z) * (q.logpdf(z) - (log_joint(z) - log_px)), mu, width)
    return {"log_px": log_px, "elbo": elbo, "kl": kl, "mean_w": _quad(lambda z: math.exp(log_joint(z)), mu, width)}


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 4.1 - 4.4 and return the table."""
    rng = np.random.default_rng(SEED)
    t = Table(TITLE)
    mc_note = f"{MC_SAMPLES} draws, tolerance = {MC_SIGMAS:g} standard errors"

    # ---- the multivariate linear-Gaussian model of topic 3, by Monte Carlo and closed form
    model = lg.make_model(rng)
    x = model.W @ rng.standard_normal(model.k) + model.b + model.s * rng.standard_normal(model.d)
    log_px = lg.log_marginal(model, x)
    m, Sigma = lg.posterior(model, x)
    # A diagonal q near the posterior: importance weights then have a finite, modest variance.
    mu, S = m + 0.1, np.diag(np.diag(Sigma)) * 1.3
    z = mu + rng.standard_normal((MC_SAMPLES, model.k)) @ np.linalg.cholesky(S).T
    logw = log_weights(model, x, z, mu, S)

    # Eq 4.1: the average weight estimates p(x). Compare w / p(x) with 1, so the standard error is relative.
    ratio = np.exp(logw - log_px)
    t.equal("Eq 4.1 E_q[w] / p(x) = 1 (Monte Carlo)", ratio.mean(), 1.0,
            MC_SIGMAS * ratio.std(ddof=1) / math.sqrt(MC_SAMPLES), note=mc_note)

    # Eq 4.2: Jensen holds for the empirical distribution of the sample too, so this is exact, not statistical.
    log_mean_w, mean_log_w = log_mean_exp(logw), float(logw.mean())
    t.less_equal("Eq 4.2 mean(log w) <= log mean(w) (same sample)", mean_log_w, log_mean_w)
    elbo = lg.elbo_closed(model, x, mu, S)
    t.less_equal("Eq 4.2 ELBO <= log p(x) (closed forms)", elbo, log_px)
    t.equal("Eq 4.2 E_q[log w] = ELBO (Monte Carlo vs closed)", mean_log_w, elbo,
            MC_SIGMAS * logw.std(ddof=1) / math.sqrt(MC_SAMPLES), note=mc_note)

    # Eq 4.3: the gap is the KL to the posterior (closed forms on both sides).
    kl_post = lg.kl_gaussians(mu, S, m, Sigma)
    t.equal("Eq 4.3 Jensen gap = KL(q||p(z|x)) (closed forms, k=2)", jensen_gap(log_px, elbo), kl_post, 1e-10)

    # Eq 4.4: at q = posterior every weight equals p(x): the gap and the spread of log w vanish.
    z_post = m + rng.standard_normal((1000, model.k)) @ np.linalg.cholesky(Sigma).T
    logw_post = log_weights(model, x, z_post, m, Sigma)
    t.equal("Eq 4.4 q = posterior: log w = log p(x) for every draw", logw_post, log_px, 1e-9)
    t.equal("Eq 4.4 q = posterior: Jensen gap = 0", jensen_gap(log_px, lg.elbo_closed(model, x, m, Sigma)), 0.0, 1e-10)

    # ---- 1-D linear-Gaussian: quadrature against the closed forms
    model1 = lg.LinearGaussian(W=np.array([[1.5]]), b=np.array([0.3]), s=0.8)
    x1 = np.array([1.7])
    m1, Sigma1 = lg.posterior(model1, x1)
    mu1, sd1 = 0.2, 0.9

    def log_joint_lg(zz: float) -> float:
        zv = np.array([zz])
        return float(lg.log_likelihood(model1, x1, zv) + lg.log_prior(zv))

    quad = quadrature_terms(log_joint_lg, mu1, sd1)
    elbo1 = lg.elbo_closed(model1, x1, np.array([mu1]), np.array([[sd1**2]]))
    t.equal("Eq 4.1 1-D: int q w dz = p(x) (quad vs closed)", quad["mean_w"], math.exp(lg.log_marginal(model1, x1)), QUAD_TOL,
            relative=True)
    t.equal("Eq 4.2 1-D: ELBO by quad vs closed", quad["elbo"], elbo1, QUAD_TOL)
    t.equal("Eq 4.3 1-D: Jensen gap (quad) = KL closed form", jensen_gap(quad["log_px"], quad["elbo"]),
            lg.kl_gaussians(np.array([mu1]), np.array([[sd1**2]]), m1, Sigma1), QUAD_TOL)

    # ---- 1-D logistic model: no closed form anywhere, quadrature only
    for mu_q, sd_q in [(0.0, 1.0), (0.8, 0.5), (1.5, 0.2)]:
        quad = quadrature_terms(logistic_log_joint, mu_q, sd_q)
        t.equal(f"Eq 4.3 logistic 1-D: gap = KL(q||p(z|x)) by quad (q=N({mu_q},{sd_q}^2))",
                jensen_gap(quad["log_px"], quad["elbo"]), quad["kl"], QUAD_TOL)
        t.less_equal(f"Eq 4.2 logistic 1-D: ELBO <= log p(x) (q=N({mu_q},{sd_q}^2))", quad["elbo"], quad["log_px"])

    if plot_dir is not None:
        _plot(plot_dir, logw, log_px)
    return t


def _plot(plot_dir: str, logw: np.ndarray, log_px: float) -> None:
    """Histogram of log w: its mean (the ELBO) sits left of log of the mean weight (log p(x))."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(logw, bins=120, density=True, color="lightsteelblue")
    ax.axvline(logw.mean(), color="C0", label=f"mean log w = ELBO ({logw.mean():.3f})")
    ax.axvline(log_mean_exp(logw), color="C3", ls="--", label=f"log mean w ({log_mean_exp(logw):.3f})")
    ax.axvline(log_px, color="k", ls=":", label=f"log p(x) ({log_px:.3f})")
    ax.set_xlabel("log w = log p(x, z) - log q(z),  z ~ q")
    ax.set_title("Jensen: E[log w] <= log E[w]; the gap is KL(q || p(z|x))")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "04_jensen_elbo.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
