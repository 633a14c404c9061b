"""Topic 7: the likelihood-ratio (score-function) gradient, and why VAEs prefer reparameterization.

    d/dtheta E_{q_theta}[f(z)] = E_q[f(z) d/dtheta log q_theta(z)]

needs only f's values, not its derivative, so it works for any f. It is unbiased but
usually far noisier than the reparameterized estimator of topic 6.

* Eq 7.1  the score has mean zero: E_q[d/dtheta log q] = 0          (quad, and MC with engine autograd)
* Eq 7.2  the Gaussian score: d/dmu log q = (z - mu)/sigma^2, d/dsigma log q = ((z - mu)^2/sigma^2 - 1)/sigma
* Eq 7.3  E_q[f d log q] equals the closed-form gradients of topic 6     (MC, 5 standard errors)
* Eq 7.4  per-sample variance: score function > reparameterization, on the same draws
* Eq 7.5  a baseline b keeps the estimate unbiased and lowers its variance
* Eq 7.6  f = ||z||^2 in D dimensions, mu = 0: Var_score = sigma^2 (D+2)(D+4), Var_reparam = 4 sigma^2

Run it: ``python -m minivae.derivations.d07_score_function`` (or ``minivae derive 07_score_function``);
``--plot DIR`` also draws the variance against the dimension D.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from scipy import integrate, stats

import minivae as mv
from . import d06_reparameterization as rp
from .table import Table, main

TITLE = "Topic 7: the score-function (likelihood-ratio) gradient and its variance"

SEED = 7
MU, SIGMA = rp.MU, rp.SIGMA
N_SAMPLES = 100_000
MC_SIGMAS = 5.0
DIMENSIONS = (1, 2, 4, 8, 16, 32, 64)
N_DIM_SAMPLES = 20_000


# --------------------------------------------------------------------------- formulas
def score_mu(z: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Eq 7.2: d/dmu log N(z; mu, sigma^2) = (z - mu) / sigma^2."""
    return (z - mu) / sigma**2


def score_sigma(z: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Eq 7.2: d/dsigma log N(z; mu, sigma^2) = ((z - mu)^2 / sigma^2 - 1) / sigma."""
    return ((z - mu) ** 2 / sigma**2 - 1.0) / sigma


def score_variance_sq_norm(dim: int, sigma: float) -> float:
    """Eq 7.6: Var of f(z) d/dmu_1 log q for f = ||z||^2, q = N(0, sigma^2 I_D): sigma^2 (D+2)(D+4)."""
    return sigma**2 * (dim + 2) * (dim + 4)


def reparam_variance_sq_norm(dim: int, sigma: float) -> float:
    """Eq 7.6: Var of d/dmu_1 ||mu + sigma eps||^2 = Var(2 sigma eps_1) = 4 sigma^2, for any D."""
    return 4 * sigma**2


# --------------------------------------------------------------------------- the estimator, with the engine
def engine_scores(z: np.ndarray, mu: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample d/dmu and d/dsigma of log q(z), by backward through the engine's Normal.log_prob.

    z is a constant (the sample is not differentiated: that is the point of this estimator).
    Normal takes a log-variance l = 2 log sigma, so d/dsigma = (2 / sigma) d/dl.
    """
    shape = (z.size, 1)  # one latent per row: log_prob sums over the last axis only
    mu_t = mv.tensor(np.full(shape, mu), requires_grad=True, dtype="float64")
    logvar_t = mv.tensor(np.full(shape, 2 * math.log(sigma)), requires_grad=True, dtype="float64")
    mv.distributions.Normal(mu_t, logvar_t).log_prob(z.reshape(shape)).sum().backward()
    return np.asarray(mu_t.grad).ravel(), np.asarray(logvar_t.grad).ravel() * 2.0 / sigma


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 7.1 - 7.6 and return the table."""
    t = Table(TITLE)
    rng = np.random.default_rng(SEED)
    eps = rng.standard_normal(N_SAMPLES)
    z = MU + SIGMA * eps
    mc_note = f"{N_SAMPLES} draws, tolerance = {MC_SIGMAS:g} standard errors"

    # Eq 7.2: the engine's backward through log_prob gives the hand-derived score, sample by sample.
    s_mu, s_sigma = engine_scores(z, MU, SIGMA)
    t.equal("Eq 7.2 engine d/dmu log q = (z - mu)/sigma^2", s_mu, score_mu(z, MU, SIGMA), 1e-10)
    t.equal("Eq 7.2 engine d/dsigma log q = ((z-mu)^2/sigma^2 - 1)/sigma", s_sigma, score_sigma(z, MU, SIGMA), 1e-10)

    # Eq 7.1: the score has mean zero, exactly (quad) and within MC error.
    q = stats.norm(MU, SIGMA)
    for name, score in (("d/dmu", score_mu), ("d/dsigma", score_sigma)):
        exact, _ = integrate.quad(lambda v: q.pdf(v) * score(v, MU, SIGMA), MU - 14 * SIGMA, MU + 14 * SIGMA, epsabs=1e-13)
        t.equal(f"Eq 7.1 E_q[{name} log q] = 0 (quad)", exact, 0.0, 1e-10)
    for name, samples in (("d/dmu", s_mu), ("d/dsigma", s_sigma)):
        estimate, se = rp.mean_and_se(samples)
        t.equal(f"Eq 7.1 E_q[{name} log q] = 0 (MC, engine scores)", estimate, 0.0, MC_SIGMAS * se, note=mc_note)

    # Eq 7.3 and 7.4, for each test function of topic 6, on the same draws for both estimators.
    for case in rp.cases():
        _, dmu, dsigma = case.closed(MU, SIGMA)
        f = case.f_numpy(z)
        _, rep_mu, rep_sigma = rp.reparam_per_sample(case, MU, SIGMA, eps)
        for label, lr_samples, rep_samples, exact in (("d/dmu", f * s_mu, rep_mu, dmu),
                                                       ("d/dsigma", f * s_sigma, rep_sigma, dsigma)):
            estimate, se = rp.mean_and_se(lr_samples)
            t.equal(f"Eq 7.3 {label} E[{case.name}]: score-function MC vs closed", estimate, exact, MC_SIGMAS * se,
                    note=f"{mc_note} (se = {se:.2g})")
            var_lr, var_rep = float(lr_samples.var(ddof=1)), float(rep_samples.var(ddof=1))
            t.holds(f"Eq 7.4 {label} E[{case.name}]: Var score-function > Var reparam", var_lr > var_rep, var_lr, var_rep,
                    note=f"per-sample variances, ratio {var_lr / var_rep:.3g}")

    # Eq 7.5: a constant baseline b: E[(f - b) score] = E[f score] - b E[score] = the same gradient.
    case = rp.cases()[0]
    f = case.f_numpy(z)
    baseline = float(case.f_numpy(MU + SIGMA * rng.standard_normal(1000)).mean())  # independent draws: b stays constant
    with_b = (f - baseline) * s_mu
    estimate, se = rp.mean_and_se(with_b)
    t.equal(f"Eq 7.5 d/dmu E[z^2] with baseline b = {baseline:.3f}: MC vs closed", estimate, case.closed(MU, SIGMA)[1],
            MC_SIGMAS * se, note=mc_note)
    t.holds("Eq 7.5 baseline lowers the variance", with_b.var() < (f * s_mu).var(), with_b.var(), (f * s_mu).var())

    # Eq 7.6: the variance against the dimension, closed form vs sample variance.
    sweep = _dimension_sweep(np.random.default_rng(SEED + 1))
    for dim, (var_lr, se_lr, var_rep, se_rep) in sweep.items():
        if dim in (1, 8, 64):
            t.equal(f"Eq 7.6 D={dim}: Var score = sigma^2 (D+2)(D+4)", var_lr, score_variance_sq_norm(dim, SIGMA),
                    MC_SIGMAS * se_lr, note=f"{N_DIM_SAMPLES} draws; s.e. of a sample variance, 5 s.e.")
            t.equal(f"Eq 7.6 D={dim}: Var reparam = 4 sigma^2", var_rep, reparam_variance_sq_norm(dim, SIGMA),
                    MC_SIGMAS * se_rep, note=f"{N_DIM_SAMPLES} draws; s.e. of a sample variance, 5 s.e.")

    if plot_dir is not None:
        _plot(plot_dir, sweep)
    return t


def _variance_and_se(samples: np.ndarray) -> tuple[float, float]:
    """Sample variance and its standard error, sqrt((m4 - var^2) / n), m4 the fourth central moment."""
    centred = samples - samples.mean()
    var = float(np.mean(centred**2))
    m4 = float(np.mean(centred**4))
    return var, math.sqrt(max(m4 - var**2, 0.0) / samples.size)


def _dimension_sweep(rng: np.random.Generator) -> dict[int, tuple[float, float, float, float]]:
    """For f = ||z||^2, z ~ N(0, sigma^2 I_D): per-sample variance (and s.e.) of both mu_1-gradient estimators."""
    out = {}
    for dim in DIMENSIONS:
        eps = rng.standard_normal((N_DIM_SAMPLES, dim))
        z = SIGMA * eps  # mu = 0
        f = np.sum(z**2, axis=1)
        score_estimates = f * score_mu(z[:, 0], 0.0, SIGMA)
        reparam_estimates = 2 * z[:, 0]  # d/dmu_1 of ||mu + sigma eps||^2
        out[dim] = (*_variance_and_se(score_estimates), *_variance_and_se(reparam_estimates))
    return out


def _plot(plot_dir: str, sweep: dict[int, tuple[float, float, float, float]]) -> None:
    """Variance of the two gradient estimators against the dimension D (log-log), MC points and closed forms."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = np.array(sorted(sweep))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(dims, [score_variance_sq_norm(d, SIGMA) for d in dims], "C3-", label="score function: sigma^2 (D+2)(D+4)")
    ax.plot(dims, [sweep[d][0] for d in dims], "C3o")
    ax.plot(dims, [reparam_variance_sq_norm(d, SIGMA) for d in dims], "C0-", label="reparameterization: 4 sigma^2")
    ax.plot(dims, [sweep[d][2] for d in dims], "C0o")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("dimension D")
    ax.set_ylabel("per-sample variance of d/dmu_1 estimate")
    ax.set_title("f(z) = ||z||^2, z ~ N(0, sigma^2 I): lines closed form, dots MC")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "07_score_function.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
