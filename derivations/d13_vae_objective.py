"""Topic 13: the course's VAE loss and the ELBO with a Gaussian decoder: which factor makes them one.

The lecture's objective, summed over examples i, is

    C = sum_i [ KL(N(mu_i, Sigma_i) || N(0, I)) + ||x_i - f(z_i)||^2 ].

The ELBO with a Gaussian decoder p(x | z) = N(f(z), s^2 I) in d dimensions gives

    -ELBO = sum_i [ ||x_i - f(z_i)||^2 / (2 s^2) + d/2 log(2 pi s^2) + KL_i ].

They differ by a constant exactly when 1 / (2 s^2) = 1, that is s^2 = 1/2; then
-ELBO = C + N d/2 log(pi). For any other s^2 the reconstruction and KL terms are
weighted differently, and the optimal encoder variance moves.

The loss values and gradients are computed with minivae (float64, fixed noise);
the references are scipy's Gaussian log-density and the lecture's matrix form of the KL.

Run it: ``python -m minivae.derivations.d13_vae_objective`` (or ``minivae derive 13_vae_objective``).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import optimize, stats

from .table import Table, main

TITLE = "13. The course's VAE loss vs the Gaussian-decoder ELBO: constants and the s^2 = 1/2 factor"

SEED = 13
N, D, K = 8, 4, 2            # examples, data dimension, latent dimension
N_SIGMA = 5.0
EQUIVALENT_VARIANCE = 0.5    # the decoder variance at which the two objectives coincide


# --------------------------------------------------------------------------
# Formulas under test
# --------------------------------------------------------------------------
def gaussian_log_likelihood(x: np.ndarray, mean: np.ndarray, s2: float) -> np.ndarray:
    """log N(x; mean, s^2 I) = -||x - mean||^2 / (2 s^2) - d/2 log(2 pi s^2), per row (Eq. 13.2)."""
    d = x.shape[-1]
    return -np.sum((x - mean) ** 2, axis=-1) / (2 * s2) - 0.5 * d * np.log(2 * np.pi * s2)


def kl_course(mu: np.ndarray, cov: np.ndarray) -> float:
    """The lecture's form: 1/2 (tr Sigma + mu^T mu - k - log det Sigma) (Eq. 13.1)."""
    k = mu.shape[0]
    return 0.5 * float(np.trace(cov) + mu @ mu - k - np.linalg.slogdet(cov)[1])


def neg_elbo_from_parts(sse: float, kl_total: float, n_values: int, s2: float) -> float:
    """-ELBO = SSE / (2 s^2) + (N d)/2 log(2 pi s^2) + sum KL, with N d the number of data values (Eq. 13.3)."""
    return sse / (2 * s2) + 0.5 * n_values * np.log(2 * np.pi * s2) + kl_total


def course_loss_from_parts(sse: float, kl_total: float) -> float:
    """C = SSE + sum KL (Eq. 13.4)."""
    return sse + kl_total


def optimal_encoder_variance(w_row_sq_norm: np.ndarray, recon_weight: float) -> np.ndarray:
    """argmin over sigma^2 of recon_weight * sigma^2 ||w_j||^2 + 1/2 (sigma^2 - log sigma^2) (Eq. 13.7).

    Setting the derivative recon_weight ||w_j||^2 + 1/2 - 1/(2 sigma^2) to zero gives
    sigma^2 = 1 / (1 + 2 recon_weight ||w_j||^2). recon_weight is 1 for C and 1/(2 s^2) for -ELBO.
    """
    return 1.0 / (1.0 + 2.0 * recon_weight * w_row_sq_norm)


def expected_sse(x: np.ndarray, mu: np.ndarray, var: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> float:
    """E over z_i ~ N(mu_i, diag var_i) of sum_i ||x_i - z_i W - c||^2 for a linear decoder (Eq. 13.6).

    z W = mu W + (eps * sigma) W; the noise part has mean zero and second moment
    sum_j var_ij ||W_j||^2 (W_j = row j of W), so it adds that to the squared error at the mean.
    """
    at_mean = np.sum((x - mu @ weight - bias) ** 2)
    return float(at_mean + np.sum(var @ np.sum(weight**2, axis=1)))


# --------------------------------------------------------------------------
# The VAE pieces, written with minivae
# --------------------------------------------------------------------------
def build_vae(seed: int = SEED):
    """Linear encoder heads for mu and log-variance and a linear decoder, float64."""
    import minivae as mv

    rng = mv.random.Generator(seed)
    enc_mu = mv.nn.Linear(D, K, rng=rng, init="xavier", dtype="float64")
    enc_logvar = mv.nn.Linear(D, K, rng=rng, init="xavier", dtype="float64")
    dec = mv.nn.Linear(K, D, rng=rng, init="xavier", dtype="float64")
    return enc_mu, enc_logvar, dec


def vae_terms(x: np.ndarray, eps: np.ndarray, enc_mu, enc_logvar, dec):
    """(SSE, sum of KL, mu, logvar) as minivae tensors, one reparameterised sample per example."""
    import minivae as mv

    xt = mv.tensor(x, dtype="float64")
    mu, logvar = enc_mu(xt), enc_logvar(xt)
    q = mv.distributions.Normal(mu, logvar)
    z = q.rsample(eps=eps)
    sse = mv.losses.mse(dec(z), xt, reduction="sum")
    return sse, q.kl_standard().sum(), mu, logvar


def grads_of(loss, modules) -> np.ndarray:
    """All parameter gradients of `loss`, flattened into one vector (after zeroing old ones)."""
    for m in modules:
        m.zero_grad()
    loss.backward()
    return np.concatenate([np.asarray(p.grad, dtype=np.float64).ravel() for m in modules for p in m.parameters()])


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------
def run(plot_dir: str | None = None) -> Table:
    table = Table(TITLE)
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(N, D))
    eps = rng.standard_normal((N, K))
    modules = build_vae()
    enc_mu, enc_logvar, dec = modules

    sse, kl_total, mu, logvar = vae_terms(x, eps, *modules)
    mu_np, var_np = mu.numpy(), np.exp(logvar.numpy())
    z_np = mu_np + np.sqrt(var_np) * eps
    recon_np = z_np @ dec.weight.numpy() + dec.bias.numpy()

    # Eq 13.1: the lecture's KL (trace / determinant form) against minivae's per-coordinate node.
    kl_ref = sum(kl_course(mu_np[i], np.diag(var_np[i])) for i in range(N))
    table.equal("Eq 13.1 sum KL: 1/2(tr S + m'm - k - log det S) = minivae", kl_ref, kl_total.item(), tol=1e-12)

    # Eq 13.2: the Gaussian log-likelihood formula against scipy, at several decoder variances.
    for s2 in (0.5, 1.0, 2.0):
        table.equal(f"Eq 13.2 log N(x; f(z), {s2:g} I) = scipy", gaussian_log_likelihood(x, recon_np, s2),
                    stats.norm(loc=recon_np, scale=np.sqrt(s2)).logpdf(x).sum(axis=-1), tol=1e-12)

    # Eq 13.3: -ELBO assembled from scipy and the lecture's KL equals the decomposed formula.
    for s2 in (0.5, 1.0, 2.0):
        neg_elbo_ref = -stats.norm(loc=recon_np, scale=np.sqrt(s2)).logpdf(x).sum() + kl_ref
        table.equal(f"Eq 13.3 -ELBO(s^2={s2:g}) = SSE/(2s^2) + Nd/2 log(2 pi s^2) + KL", neg_elbo_ref,
                    neg_elbo_from_parts(sse.item(), kl_total.item(), N * D, s2), tol=1e-11)

    # Eq 13.4: at s^2 = 1/2 the two objectives differ by the constant Nd/2 log(pi) only.
    s2 = EQUIVALENT_VARIANCE
    table.equal("Eq 13.4 -ELBO(s^2=1/2) - C = Nd/2 log(pi)",
                neg_elbo_from_parts(sse.item(), kl_total.item(), N * D, s2)
                - course_loss_from_parts(sse.item(), kl_total.item()), 0.5 * N * D * np.log(np.pi), tol=1e-11)

    # Eq 13.5: so their gradients agree exactly (minivae's backward on both graphs)...
    def neg_elbo_tensor(s2_value: float):
        sse_t, kl_t, _, _ = vae_terms(x, eps, *modules)
        return sse_t * (1.0 / (2 * s2_value)) + 0.5 * N * D * np.log(2 * np.pi * s2_value) + kl_t

    def course_tensor(recon_weight: float = 1.0):
        sse_t, kl_t, _, _ = vae_terms(x, eps, *modules)
        return sse_t * recon_weight + kl_t

    g_course = grads_of(course_tensor(), modules)
    g_half = grads_of(neg_elbo_tensor(0.5), modules)
    g_one = grads_of(neg_elbo_tensor(1.0), modules)
    table.equal("Eq 13.5 grad -ELBO(s^2=1/2) = grad C", g_half, g_course, tol=1e-12,
                note=f"all {g_course.size} parameters, one fixed noise draw per example")
    # ... but at s^2 = 1 (the lecture's 'variance I') they do not: -ELBO(1) weighs SSE by 1/2, not 1.
    gap = float(np.abs(g_one - g_course).max())
    table.holds("Eq 13.5 grad -ELBO(s^2=1) != grad C", gap > 1e-2, gap, 0.0)
    table.equal("Eq 13.5 grad -ELBO(s^2=1) = grad(SSE/2 + KL)", g_one, grads_of(course_tensor(0.5), modules), tol=1e-12)

    # Eq 13.6: the expected SSE of a linear decoder, against Monte Carlo over the noise.
    w, c = dec.weight.numpy(), dec.bias.numpy()
    draws = 20_000
    noise = rng.standard_normal((draws, N, K))
    sse_draws = np.sum((x - (mu_np + np.sqrt(var_np) * noise) @ w - c) ** 2, axis=(1, 2))
    table.equal("Eq 13.6 E_q[SSE] = SSE(mu) + sum var_ij ||W_j||^2", expected_sse(x, mu_np, var_np, w, c),
                sse_draws.mean(), tol=N_SIGMA * sse_draws.std(ddof=1) / np.sqrt(draws),
                note=f"{draws} noise draws; tolerance {N_SIGMA:g} standard errors")

    # Eq 13.7: same argmin over the encoder's variance at s^2 = 1/2, a different one at s^2 = 1.
    # Vary one encoder variance (example 0, latent 0) with everything else fixed; expectations are exact.
    def objective(var00: float, recon_weight: float) -> float:
        var = var_np.copy()
        var[0, 0] = var00
        kl = sum(kl_course(mu_np[i], np.diag(var[i])) for i in range(N))
        return recon_weight * expected_sse(x, mu_np, var, w, c) + kl

    def argmin(recon_weight: float) -> float:
        res = optimize.minimize_scalar(lambda t: objective(np.exp(t), recon_weight), bounds=(-10, 3),
                                       method="bounded", options={"xatol": 1e-12})
        return float(np.exp(res.x))

    w0 = float(np.sum(w[0] ** 2))
    best_c, best_half, best_one = argmin(1.0), argmin(1 / (2 * 0.5)), argmin(1 / (2 * 1.0))
    argmin_note = "numerical minimiser; an argmin is only located to ~sqrt(machine epsilon), hence 1e-6"
    table.equal("Eq 13.7 argmin_var C = 1/(1 + 2||W_0||^2)", best_c, optimal_encoder_variance(w0, 1.0), tol=1e-6,
                note=argmin_note)
    table.equal("Eq 13.7 argmin_var -ELBO(s^2=1/2) = argmin_var C", best_half, best_c, tol=1e-6)
    table.equal("Eq 13.7 argmin_var -ELBO(s^2=1) = 1/(1 + ||W_0||^2)", best_one, optimal_encoder_variance(w0, 0.5),
                tol=1e-6)
    table.holds("Eq 13.7 argmin_var -ELBO(s^2=1) != argmin_var C", abs(best_one - best_c) > 1e-2, best_one, best_c,
                note="s^2 only reweighs reconstruction against KL, so it moves the encoder, not the decoder")

    if plot_dir is not None:
        _plot(plot_dir, objective, w0)
    return table


def _plot(plot_dir: str, objective, w0: float) -> None:
    """The three objectives against one encoder variance, each shifted to start at 0, with their minima."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.geomspace(0.02, 2.0, 300)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, weight in (("C (course)", 1.0), ("-ELBO, s^2 = 1/2", 1.0), ("-ELBO, s^2 = 1", 0.5)):
        values = np.array([objective(v, weight) for v in grid])
        ls = "--" if "1/2" in label else "-"
        ax.plot(grid, values - values.min(), ls, label=label)
    for weight in (1.0, 0.5):
        ax.axvline(optimal_encoder_variance(w0, weight), color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("encoder variance sigma^2 (example 0, latent 0)")
    ax.set_ylabel("objective - its minimum (constants dropped)")
    ax.set_title("s^2 = 1/2 reproduces the course loss; s^2 = 1 moves the optimum")
    ax.legend()
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "13_vae_objective.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
