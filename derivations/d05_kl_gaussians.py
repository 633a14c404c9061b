"""Topic 5: the KL divergence between Gaussians, in closed form, checked numerically.

Every VAE loss contains KL(q(z|x) || p(z)). For Gaussians it has a closed form, and
this module checks each form against an honest numerical value:

* Eq 5.1  diagonal q against N(0, I)                (1-D: scipy quad)
* Eq 5.2  two diagonal Gaussians                    (1-D: quad, 2-D: dblquad)
* Eq 5.3  full covariance against N(0, I)           (2-D: dblquad, 6-D: Monte Carlo)
* Eq 5.4  two full-covariance Gaussians             (Monte Carlo in 5-D)
* Eq 5.5  KL >= 0, and KL = 0 exactly when the two are equal
* Eq 5.6  KL is not symmetric (a worked 1-D example)
* Eq 5.7  the engine's ``kl_normal_standard`` and ``Normal.kl`` give Eq 5.1 / 5.2

Run it: ``python -m minivae.derivations.d05_kl_gaussians`` (or ``minivae derive 05_kl_gaussians``).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from scipy import integrate, stats

import minivae as mv
from .table import Table, main

TITLE = "Topic 5: KL divergence between Gaussians"

SEED = 5
MC_SAMPLES = 200_000
MC_SIGMAS = 5.0  # Monte Carlo rows pass when the error is within 5 standard errors
QUAD_TOL = 1e-7  # quad / dblquad reach ~1e-10 on these smooth integrands


# --------------------------------------------------------------------------- formulas
def kl_diag_standard(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Eq 5.1: KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over the last axis."""
    return 0.5 * np.sum(np.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)


def kl_diag_diag(mu0: np.ndarray, logvar0: np.ndarray, mu1: np.ndarray, logvar1: np.ndarray) -> np.ndarray:
    """Eq 5.2: KL(N(mu0, diag e^logvar0) || N(mu1, diag e^logvar1)), summed over the last axis."""
    var_ratio = np.exp(logvar0 - logvar1)
    mean_term = (mu0 - mu1) ** 2 * np.exp(-logvar1)
    return 0.5 * np.sum(var_ratio + mean_term - 1.0 - (logvar0 - logvar1), axis=-1)


def kl_full_standard(m: np.ndarray, S: np.ndarray) -> float:
    """Eq 5.3: KL(N(m, S) || N(0, I)) = 1/2 (tr S + m^T m - k - log det S)."""
    k = m.shape[0]
    _, logdet = np.linalg.slogdet(S)
    return 0.5 * (np.trace(S) + m @ m - k - logdet)


def kl_full(m0: np.ndarray, S0: np.ndarray, m1: np.ndarray, S1: np.ndarray) -> float:
    """Eq 5.4: KL(N(m0, S0) || N(m1, S1)) = 1/2 (tr(S1^-1 S0) + d^T S1^-1 d - k + log det S1 - log det S0)."""
    k = m0.shape[0]
    d = m1 - m0
    S1_inv = np.linalg.inv(S1)
    _, logdet0 = np.linalg.slogdet(S0)
    _, logdet1 = np.linalg.slogdet(S1)
    return 0.5 * (np.trace(S1_inv @ S0) + d @ S1_inv @ d - k + logdet1 - logdet0)


# --------------------------------------------------------------------------- numerical references
def _kl_by_quad_1d(m0: float, s0: float, m1: float, s1: float) -> float:
    """KL(N(m0, s0^2) || N(m1, s1^2)) as the integral of q log(q/p), over +-12 sd of q."""
    q, p = stats.norm(m0, s0), stats.norm(m1, s1)
    value, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), m0 - 12 * s0, m0 + 12 * s0, epsabs=1e-12)
    return value


def _kl_by_dblquad_2d(m0: np.ndarray, S0: np.ndarray, m1: np.ndarray, S1: np.ndarray) -> float:
    """KL between two 2-D Gaussians as a double integral over a box of +-10 sd around m0."""
    q, p = stats.multivariate_normal(m0, S0), stats.multivariate_normal(m1, S1)
    half = 10.0 * np.sqrt(np.diag(S0))

    def integrand(y: float, x: float) -> float:
        z = np.array([x, y])
        return q.pdf(z) * (q.logpdf(z) - p.logpdf(z))

    value, _ = integrate.dblquad(integrand, m0[0] - half[0], m0[0] + half[0], m0[1] - half[1], m0[1] + half[1], epsabs=1e-10)
    return value


def _kl_by_monte_carlo(m0, S0, m1, S1, rng: np.random.Generator) -> tuple[float, float]:
    """KL as E_q[log q - log p] from MC_SAMPLES draws: (estimate, standard error)."""
    q, p = stats.multivariate_normal(m0, S0), stats.multivariate_normal(m1, S1)
    z = rng.multivariate_normal(m0, S0, size=MC_SAMPLES)
    log_ratio = q.logpdf(z) - p.logpdf(z)
    return float(log_ratio.mean()), float(log_ratio.std(ddof=1) / math.sqrt(MC_SAMPLES))


def _random_spd(k: int, rng: np.random.Generator) -> np.ndarray:
    """A well-conditioned random covariance matrix: A A^T / k + 0.3 I."""
    A = rng.standard_normal((k, k))
    return A @ A.T / k + 0.3 * np.eye(k)


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 5.1 - 5.7 and return the table."""
    rng = np.random.default_rng(SEED)
    t = Table(TITLE)
    mc_note = f"Monte Carlo, {MC_SAMPLES} draws, tolerance = {MC_SIGMAS:g} standard errors"

    # Eq 5.1 in 1-D against quadrature, at a few (mu, logvar).
    for mu, logvar in [(0.7, -0.8), (-2.0, 1.1), (0.0, 0.0)]:
        exact = _kl_by_quad_1d(mu, math.exp(0.5 * logvar), 0.0, 1.0)
        t.equal(f"Eq 5.1 KL diag||N(0,1) vs quad (mu={mu}, logvar={logvar})",
                kl_diag_standard(np.array([mu]), np.array([logvar])), exact, QUAD_TOL)

    # Eq 5.1 for a batch equals the full-covariance formula with a diagonal S, row by row.
    mu_b, logvar_b = rng.standard_normal((4, 3)), 0.5 * rng.standard_normal((4, 3))
    full_rows = [kl_full_standard(m, np.diag(np.exp(lv))) for m, lv in zip(mu_b, logvar_b)]
    t.equal("Eq 5.1 diag formula vs Eq 5.3 with S = diag", kl_diag_standard(mu_b, logvar_b), full_rows, 1e-12)

    # Eq 5.2 in 1-D (quad) and 2-D (dblquad).
    exact = _kl_by_quad_1d(1.0, 0.5, -0.5, 1.5)
    t.equal("Eq 5.2 KL diag||diag vs quad (1-D)",
            kl_diag_diag(np.array([1.0]), np.array([2 * math.log(0.5)]), np.array([-0.5]), np.array([2 * math.log(1.5)])),
            exact, QUAD_TOL)
    mu0, lv0, mu1, lv1 = np.array([0.3, -1.0]), np.array([-0.4, 0.6]), np.array([1.0, 0.5]), np.array([0.2, -0.3])
    exact = _kl_by_dblquad_2d(mu0, np.diag(np.exp(lv0)), mu1, np.diag(np.exp(lv1)))
    t.equal("Eq 5.2 KL diag||diag vs dblquad (2-D)", kl_diag_diag(mu0, lv0, mu1, lv1), exact, QUAD_TOL)

    # Eq 5.3: full covariance against the standard normal, 2-D by dblquad and 6-D by Monte Carlo.
    m2, S2 = np.array([0.5, -0.8]), np.array([[1.2, 0.6], [0.6, 0.9]])
    exact = _kl_by_dblquad_2d(m2, S2, np.zeros(2), np.eye(2))
    t.equal("Eq 5.3 KL full||N(0,I) vs dblquad (2-D)", kl_full_standard(m2, S2), exact, QUAD_TOL)
    m6, S6 = 0.5 * rng.standard_normal(6), _random_spd(6, rng)
    estimate, se = _kl_by_monte_carlo(m6, S6, np.zeros(6), np.eye(6), rng)
    t.equal("Eq 5.3 KL full||N(0,I) vs Monte Carlo (6-D)", kl_full_standard(m6, S6), estimate, MC_SIGMAS * se, note=mc_note)

    # Eq 5.4: two full covariances, 2-D by dblquad and 5-D by Monte Carlo.
    m1_2, S1_2 = np.array([-0.3, 0.4]), np.array([[0.8, -0.3], [-0.3, 1.5]])
    exact = _kl_by_dblquad_2d(m2, S2, m1_2, S1_2)
    t.equal("Eq 5.4 KL full||full vs dblquad (2-D)", kl_full(m2, S2, m1_2, S1_2), exact, QUAD_TOL)
    ma, Sa, mb, Sb = rng.standard_normal(5), _random_spd(5, rng), rng.standard_normal(5), _random_spd(5, rng)
    estimate, se = _kl_by_monte_carlo(ma, Sa, mb, Sb, rng)
    t.equal("Eq 5.4 KL full||full vs Monte Carlo (5-D)", kl_full(ma, Sa, mb, Sb), estimate, MC_SIGMAS * se, note=mc_note)

    # Eq 5.5: non-negative on many random pairs; zero for identical arguments.
    pairs = [kl_diag_diag(rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4))
             for _ in range(500)]
    t.less_equal("Eq 5.5 KL >= 0 (min of 500 random pairs, -KL <= 0)", -min(pairs), 0.0,
                 note=f"smallest KL seen: {min(pairs):.3g}")
    self_kl = [kl_diag_diag(m, lv, m, lv) for m, lv in zip(mu_b, logvar_b)]
    t.equal("Eq 5.5 KL(q||q) = 0", self_kl, 0.0, 1e-12)
    t.equal("Eq 5.5 KL(q||q) = 0 (full cov)", kl_full(m6, S6, m6, S6), 0.0, 1e-12)

    # Eq 5.6: asymmetry. q = N(0, 1), p = N(1, 4): KL(q||p) = (ln 4 - 1/2)/2, KL(p||q) = (4 - ln 4)/2.
    zero, one, log4 = np.array([0.0]), np.array([1.0]), np.array([math.log(4.0)])
    forward, backward = float(kl_diag_diag(zero, zero, one, log4)), float(kl_diag_diag(one, log4, zero, zero))
    t.equal("Eq 5.6 KL(N(0,1)||N(1,4)) = (ln4 - 1/2)/2", forward, (math.log(4) - 0.5) / 2, 1e-12)
    t.equal("Eq 5.6 KL(N(0,1)||N(1,4)) vs quad", forward, _kl_by_quad_1d(0, 1, 1, 2), QUAD_TOL)
    t.equal("Eq 5.6 KL(N(1,4)||N(0,1)) = (4 - ln4)/2", backward, (4 - math.log(4)) / 2, 1e-12)
    t.equal("Eq 5.6 KL(N(1,4)||N(0,1)) vs quad", backward, _kl_by_quad_1d(1, 2, 0, 1), QUAD_TOL)
    t.holds("Eq 5.6 KL(q||p) != KL(p||q)", abs(forward - backward) > 0.5, forward, backward)

    # Eq 5.7: the engine's KL agrees with the formulas (float64, batch of 4 rows of 3 latents).
    engine_kl = mv.kl_normal_standard(mv.tensor(mu_b, dtype="float64"), mv.tensor(logvar_b, dtype="float64"))
    t.equal("Eq 5.7 mv.kl_normal_standard vs Eq 5.1", np.asarray(engine_kl.numpy()).reshape(-1),
            kl_diag_standard(mu_b, logvar_b), 1e-12)
    q = mv.distributions.Normal(mv.tensor(mu_b, dtype="float64"), mv.tensor(logvar_b, dtype="float64"))
    p = mv.distributions.Normal(mv.tensor(mu_b[::-1].copy(), dtype="float64"), mv.tensor(logvar_b[::-1].copy(), dtype="float64"))
    t.equal("Eq 5.7 Normal.kl(other) vs Eq 5.2", np.asarray(q.kl(p).numpy()).reshape(-1),
            kl_diag_diag(mu_b, logvar_b, mu_b[::-1], logvar_b[::-1]), 1e-12)

    if plot_dir is not None:
        _plot(plot_dir)
    return t


def _plot(plot_dir: str) -> None:
    """KL(q||p) and KL(p||q) for q = N(0,1), p = N(m, s^2) over a grid of m: the asymmetry at a glance."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = np.linspace(-3, 3, 121)
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in (0.5, 2.0):
        lv = np.full((means.size, 1), 2 * math.log(s))
        zeros = np.zeros((means.size, 1))
        ax.plot(means, kl_diag_diag(zeros, zeros, means[:, None], lv), label=f"KL(N(0,1) || N(m,{s}^2))")
        ax.plot(means, kl_diag_diag(means[:, None], lv, zeros, zeros), "--", label=f"KL(N(m,{s}^2) || N(0,1))")
    ax.set_xlabel("m")
    ax.set_ylabel("KL (nats)")
    ax.set_title("KL between 1-D Gaussians is not symmetric")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "05_kl_gaussians.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
