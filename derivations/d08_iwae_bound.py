"""Topic 8: importance sampling and the IWAE bound, checked on a linear-Gaussian model.

The model is z ~ N(0, I), x | z ~ N(W z + b, s^2 I). Everything about it is
Gaussian, so log p(x), the exact posterior p(z | x) and the KL between a
Gaussian proposal and that posterior are all closed forms. The IWAE bounds

    L_k = E[ log (1/k) sum_i p(x, z_i) / q(z_i) ],   z_1..z_k ~ q,

have no closed form for k > 1, so they are estimated by Monte Carlo with many
independent replicates; every Monte Carlo row states its tolerance as a number
of standard errors.

Run it: ``python -m minivae.derivations.d08_iwae_bound`` (or ``minivae derive 08_iwae_bound``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from scipy import integrate
from scipy.special import logsumexp

from .table import Table, main

TITLE = "8. Importance sampling and the IWAE bound (linear-Gaussian model)"

SEED = 8
Z_DIM, X_DIM = 2, 3
NOISE_STD = 0.6          # s, the decoder's standard deviation
N_SIGMA = 5.0            # Monte Carlo tolerance: this many standard errors
REPLICATES = 2000        # independent estimates of each L_k
KS = (1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512)


# --------------------------------------------------------------------------
# Gaussian helpers
# --------------------------------------------------------------------------
@dataclass
class Gaussian:
    """A full-covariance Gaussian N(mean, cov)."""

    mean: np.ndarray
    cov: np.ndarray

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """log N(z; mean, cov) for z of shape (..., d)."""
        d = self.mean.shape[0]
        chol = np.linalg.cholesky(self.cov)
        diff = z - self.mean
        # Solve L y = diff for every sample at once (y = L^{-1} diff).
        y = np.linalg.solve(chol, diff.reshape(-1, d).T).T.reshape(diff.shape)
        log_det = 2.0 * np.sum(np.log(np.diag(chol)))
        return -0.5 * (np.sum(y**2, axis=-1) + d * np.log(2 * np.pi) + log_det)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        chol = np.linalg.cholesky(self.cov)
        eps = rng.standard_normal((*shape, self.mean.shape[0]))
        return self.mean + eps @ chol.T


def gaussian_kl(q: Gaussian, p: Gaussian) -> float:
    """KL(q || p) between two Gaussians, closed form."""
    d = q.mean.shape[0]
    p_inv = np.linalg.inv(p.cov)
    diff = p.mean - q.mean
    return 0.5 * float(
        np.trace(p_inv @ q.cov) + diff @ p_inv @ diff - d
        + np.linalg.slogdet(p.cov)[1] - np.linalg.slogdet(q.cov)[1]
    )


# --------------------------------------------------------------------------
# The model and the formulas under test
# --------------------------------------------------------------------------
@dataclass
class LinearGaussianModel:
    weight: np.ndarray   # W, shape (X_DIM, Z_DIM)
    bias: np.ndarray     # b, shape (X_DIM,)
    noise_std: float     # s

    def log_joint(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """log p(x, z) = log N(z; 0, I) + log N(x; W z + b, s^2 I), for z of shape (..., Z_DIM)."""
        d_x, d_z = self.weight.shape
        log_prior = -0.5 * np.sum(z**2, axis=-1) - 0.5 * d_z * np.log(2 * np.pi)
        resid = x - (z @ self.weight.T + self.bias)
        s2 = self.noise_std**2
        log_lik = -0.5 * np.sum(resid**2, axis=-1) / s2 - 0.5 * d_x * np.log(2 * np.pi * s2)
        return log_prior + log_lik


def log_marginal(model: LinearGaussianModel, x: np.ndarray) -> float:
    """Exact log p(x): x = W z + b + s*noise is Gaussian with mean b and covariance W W^T + s^2 I (Eq. 8.1)."""
    cov = model.weight @ model.weight.T + model.noise_std**2 * np.eye(len(x))
    return float(Gaussian(model.bias, cov).log_prob(x))


def exact_posterior(model: LinearGaussianModel, x: np.ndarray) -> Gaussian:
    """p(z | x): precision I + W^T W / s^2, mean = cov W^T (x - b) / s^2 (completing the square)."""
    s2 = model.noise_std**2
    precision = np.eye(model.weight.shape[1]) + model.weight.T @ model.weight / s2
    cov = np.linalg.inv(precision)
    return Gaussian(cov @ model.weight.T @ (x - model.bias) / s2, cov)


def iwae_bound(log_w: np.ndarray) -> np.ndarray:
    """One draw of the k-sample bound from log-weights of shape (..., k): log of the *mean* weight.

    logsumexp keeps it stable: the weights themselves under- or overflow easily.
    """
    k = log_w.shape[-1]
    return logsumexp(log_w, axis=-1) - np.log(k)


def elbo_closed_form(model: LinearGaussianModel, x: np.ndarray, q: Gaussian) -> float:
    """L_1 = E_q[log p(x|z)] + E_q[log p(z)] + H(q), each a Gaussian expectation (Eq. 8.3)."""
    d_x, d_z = model.weight.shape
    s2 = model.noise_std**2
    resid = x - model.weight @ q.mean - model.bias
    # E||x - W z - b||^2 = ||x - W m - b||^2 + tr(W S W^T) for z ~ N(m, S).
    expected_sq = resid @ resid + np.trace(model.weight @ q.cov @ model.weight.T)
    e_log_lik = -0.5 * expected_sq / s2 - 0.5 * d_x * np.log(2 * np.pi * s2)
    e_log_prior = -0.5 * (q.mean @ q.mean + np.trace(q.cov)) - 0.5 * d_z * np.log(2 * np.pi)
    entropy = 0.5 * d_z * np.log(2 * np.pi * np.e) + 0.5 * np.linalg.slogdet(q.cov)[1]
    return float(e_log_lik + e_log_prior + entropy)


def chi_square(posterior: Gaussian, q: Gaussian) -> float:
    """Var_q[w / p(x)] = integral of posterior^2 / q minus 1, a Gaussian integral (Eq. 8.7).

    Finite only when 2 P_post - P_q is positive definite (P = precision); then
    the integrand is exp(-1/2 z^T A z + h^T z + c) with A = 2 P_post - P_q.
    """
    d = q.mean.shape[0]
    p1, p2 = np.linalg.inv(posterior.cov), np.linalg.inv(q.cov)
    m1, m2 = posterior.mean, q.mean
    a = 2 * p1 - p2
    h = 2 * p1 @ m1 - p2 @ m2
    c = (-d * np.log(2 * np.pi) - np.linalg.slogdet(posterior.cov)[1] - m1 @ p1 @ m1
         + 0.5 * d * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(q.cov)[1] + 0.5 * m2 @ p2 @ m2)
    log_integral = c + 0.5 * h @ np.linalg.solve(a, h) + 0.5 * d * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(a)[1]
    return float(np.exp(log_integral) - 1.0)


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------
def make_problem(seed: int = SEED) -> tuple[LinearGaussianModel, np.ndarray, Gaussian, Gaussian]:
    """A fixed model, one observation drawn from it, its exact posterior and a deliberately imperfect q.

    q is mean-field (diagonal), its mean is shifted and its variances inflated:
    a typical encoder that is close to, but not equal to, the posterior.
    """
    rng = np.random.default_rng(seed)
    model = LinearGaussianModel(rng.normal(size=(X_DIM, Z_DIM)), rng.normal(size=X_DIM), NOISE_STD)
    z_true = rng.standard_normal(Z_DIM)
    x = model.weight @ z_true + model.bias + NOISE_STD * rng.standard_normal(X_DIM)
    post = exact_posterior(model, x)
    q = Gaussian(post.mean + 0.4 * np.sqrt(np.diag(post.cov)), np.diag(1.5 * np.diag(post.cov)))
    return model, x, post, q


def estimate_bounds(model, x, q, ks, replicates, rng) -> dict[int, np.ndarray]:
    """For each k, `replicates` independent draws of the k-sample bound."""
    draws = {}
    for k in ks:
        z = q.sample(rng, (replicates, k))
        log_w = model.log_joint(x, z) - q.log_prob(z)
        draws[k] = iwae_bound(log_w)
    return draws


def run(plot_dir: str | None = None) -> Table:
    table = Table(TITLE)
    rng = np.random.default_rng(SEED + 1)
    model, x, post, q = make_problem()
    log_px = log_marginal(model, x)

    # Eq 8.1: the marginal, checked against the joint integrated over z by quadrature.
    integral, _ = integrate.dblquad(
        lambda z1, z0: np.exp(model.log_joint(x, np.array([z0, z1]))), -10, 10, -10, 10, epsabs=1e-13, epsrel=1e-10
    )
    table.equal("Eq 8.1 log p(x) = log int p(x,z) dz", log_px, np.log(integral), tol=1e-7,
                note="closed form N(x; b, W W^T + s^2 I) against scipy dblquad over [-10, 10]^2")

    # Eq 8.2: importance sampling is unbiased for p(x) (not for log p(x)).
    n_is = 400_000
    z = q.sample(rng, (n_is,))
    ratio = np.exp(model.log_joint(x, z) - q.log_prob(z) - log_px)   # w / p(x): mean 1
    se = ratio.std(ddof=1) / np.sqrt(n_is)
    table.equal("Eq 8.2 E_q[p(x,z)/q(z)] / p(x) = 1", ratio.mean(), 1.0, tol=N_SIGMA * se,
                note=f"{n_is} draws from q; tolerance {N_SIGMA:g} standard errors")

    # Eq 8.3: L_1 is the ELBO = log p(x) - KL(q || p(z|x)), both exact here.
    elbo = elbo_closed_form(model, x, q)
    kl = gaussian_kl(q, post)
    table.equal("Eq 8.3 ELBO = log p(x) - KL(q||p(z|x))", elbo, log_px - kl, tol=1e-10,
                note=f"two closed forms; KL = {kl:.4f} nats")

    bounds = estimate_bounds(model, x, q, KS, REPLICATES, rng)
    means = {k: float(b.mean()) for k, b in bounds.items()}
    ses = {k: float(b.std(ddof=1) / np.sqrt(len(b))) for k, b in bounds.items()}
    table.equal("Eq 8.4 L_1 (Monte Carlo) = ELBO", means[1], elbo, tol=N_SIGMA * ses[1],
                note=f"{REPLICATES} replicates; tolerance {N_SIGMA:g} standard errors")

    # Eq 8.5: L_k <= L_{k+1}. It holds in expectation, so compare the two means with
    # the standard error of their difference (independent replicates).
    for k_small, k_big in zip(KS[:-1], KS[1:]):
        se_diff = np.hypot(ses[k_small], ses[k_big])
        table.less_equal(f"Eq 8.5 L_{k_small} <= L_{k_big}", means[k_small], means[k_big], tol=N_SIGMA * se_diff,
                         note=f"tolerance {N_SIGMA:g} standard errors of the difference" if k_small == 1 else "")
    # The first steps are large enough to be resolved: the improvement is real, not noise.
    gain = means[2] - means[1]
    table.holds("Eq 8.5 L_2 - L_1 > 5 SE (strict gain)", gain > N_SIGMA * np.hypot(ses[1], ses[2]), gain,
                N_SIGMA * np.hypot(ses[1], ses[2]))

    # Eq 8.6: every L_k is below log p(x).
    for k in (1, 8, 64, 512):
        table.less_equal(f"Eq 8.6 L_{k} <= log p(x)", means[k], log_px, tol=N_SIGMA * ses[k])

    # Eq 8.7: L_k -> log p(x), with gap ~ chi^2 / (2k) for large k.
    chi2 = chi_square(post, q)
    finite = bool(np.all(np.linalg.eigvalsh(2 * np.linalg.inv(post.cov) - np.linalg.inv(q.cov)) > 0))
    table.holds("Eq 8.7 weights have finite variance (2 P_post - P_q > 0)", finite, chi2,
                note="the condition under which L_k converges at rate 1/k")
    chi2_mc = float(np.mean((ratio - 1.0) ** 2))
    se_chi2 = float(np.std((ratio - 1.0) ** 2, ddof=1) / np.sqrt(n_is))
    table.equal("Eq 8.7 chi^2 closed form = Var_q[w/p(x)]", chi2, chi2_mc, tol=N_SIGMA * se_chi2,
                note="Gaussian integral against the Monte Carlo variance of the Eq 8.2 draws")
    k_max = KS[-1]
    table.equal(f"Eq 8.7 L_{k_max} = log p(x) - chi^2/(2k)", means[k_max], log_px - chi2 / (2 * k_max),
                tol=N_SIGMA * ses[k_max], note="delta method; the neglected O(1/k^2) term is ~1e-6")
    table.less_equal(f"Eq 8.7 log p(x) - L_{k_max} <= 5 SE", log_px - means[k_max], 0.0, tol=N_SIGMA * ses[k_max],
                     note=f"the gap closed from KL = {kl:.3f} at k = 1")

    # Eq 8.8: with q = the exact posterior every weight equals p(x), so every L_k = log p(x).
    z = post.sample(rng, (50, 16))
    log_w = model.log_joint(x, z) - post.log_prob(z)
    table.equal("Eq 8.8 q = p(z|x): log w = log p(x)", log_w, log_px, tol=1e-10,
                note="800 draws: the weight is constant, zero variance")
    table.equal("Eq 8.8 q = p(z|x): L_16 = log p(x)", iwae_bound(log_w), log_px, tol=1e-10)

    if plot_dir is not None:
        _plot(plot_dir, means, ses, log_px, elbo, chi2)
    return table


def _plot(plot_dir: str, means: dict, ses: dict, log_px: float, elbo: float, chi2: float) -> None:
    """L_k with 5-SE error bars against k, the ELBO, log p(x) and the 1/k asymptote."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.array(sorted(means))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.errorbar(ks, [means[k] for k in ks], yerr=[N_SIGMA * ses[k] for k in ks], fmt="o", capsize=3,
                label="L_k (Monte Carlo, 5 SE)")
    fine = np.geomspace(1, ks.max(), 200)
    ax.plot(fine, log_px - chi2 / (2 * fine), ":", label="log p(x) - chi^2 / (2k)")
    ax.axhline(log_px, color="k", label="log p(x) (exact)")
    ax.axhline(elbo, color="tab:red", ls="--", label="ELBO = L_1 (exact)")
    ax.set_xscale("log", base=2)
    ax.set_ylim(elbo - 0.1, log_px + 0.05)
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel("nats")
    ax.set_title("IWAE bounds climb to log p(x)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "08_iwae_bound.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
