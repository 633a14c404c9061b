"""A wrong formula makes its derivation's table fail, on the row meant to catch it.

Each test swaps one module-level formula of a derivation (derivations/dNN_*.py) for a
plausible mistake, one a student could make on paper, and checks that the derivation's
own table catches it. That every table passes as written is checked for all topics in
test_derivations.py.
"""

from __future__ import annotations

import numpy as np
from derivation_helpers import failed_rows, load
from scipy import special
from scipy.special import logsumexp


# --- (a) topic 5: the KL without its factor 1/2 -------------------------------------
def test_kl_without_half_fails(monkeypatch) -> None:
    module = load("d05_kl_gaussians")
    monkeypatch.setattr(module, "kl_diag_standard",
                        lambda mu, logvar: np.sum(np.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1))
    failed = failed_rows(module.run())
    assert "Eq 5.1 KL diag||N(0,1) vs quad (mu=0.7, logvar=-0.8)" in failed
    assert "Eq 5.7 mv.kl_normal_standard vs Eq 5.1" in failed
    # The zero case (q = prior) cannot tell a factor apart, and the other equations are untouched.
    assert all(eq.startswith("Eq 5.1") or eq.startswith("Eq 5.7") for eq in failed), failed


def test_kl_full_sign_of_logdet_fails(monkeypatch) -> None:
    module = load("d05_kl_gaussians")

    def wrong(m, S):
        return 0.5 * (np.trace(S) + m @ m - m.shape[0] + np.linalg.slogdet(S)[1])

    monkeypatch.setattr(module, "kl_full_standard", wrong)
    failed = failed_rows(module.run())
    assert "Eq 5.3 KL full||N(0,I) vs dblquad (2-D)" in failed
    assert "Eq 5.3 KL full||N(0,I) vs Monte Carlo (6-D)" in failed


# --- (b) topic 1: wrong BCE-with-logits gradient or form ------------------------------
def test_bce_gradient_with_flipped_sign_fails(monkeypatch) -> None:
    module = load("d01_losses_as_likelihoods")
    monkeypatch.setattr(module, "bce_with_logits_grad", lambda l, x: x - special.expit(l))
    failed = failed_rows(module.run())
    assert "Eq 1.6 engine backward = sigmoid(l) - x" in failed
    assert "Eq 1.6 central difference = sigmoid(l) - x" in failed
    assert "Eq 1.6 engine backward at |l| up to 1000 = sigmoid(l) - x" in failed


def test_bce_without_log1p_term_fails(monkeypatch) -> None:
    module = load("d01_losses_as_likelihoods")
    monkeypatch.setattr(module, "bce_with_logits", lambda l, x: np.maximum(l, 0.0) - l * x)
    failed = failed_rows(module.run())
    assert "Eq 1.5 stable form = BCE(sigmoid(l), x), |l| <= 8, binary x" in failed
    assert "Eq 1.6 central difference = sigmoid(l) - x" in failed


def test_mse_without_half_fails(monkeypatch) -> None:
    module = load("d01_losses_as_likelihoods")
    monkeypatch.setattr(module, "gaussian_nll",
                        lambda x, mean, var: 0.5 * np.log(2 * np.pi * var) + (x - mean) ** 2 / var)
    failed = failed_rows(module.run())
    assert "Eq 1.1 Gaussian NLL formula vs -scipy logpdf (var = 0.3)" in failed
    assert "Eq 1.2 sum NLL(var=1) = SSE/2 + (n/2) log 2pi" in failed


# --- (c) topic 6: a wrong closed-form reparameterization gradient ---------------------
def test_reparam_sigma_gradient_missing_factor_fails(monkeypatch) -> None:
    module = load("d06_reparameterization")
    monkeypatch.setattr(module, "square_closed", lambda mu, sigma: (mu**2 + sigma**2, 2 * mu, sigma))
    failed = failed_rows(module.run())
    assert "Eq 6.3 d/dsigma E[z^2]: reparam MC vs closed" in failed
    assert "Eq 6.5 closed (dmu, dsigma) of E[z^2] vs finite differences" in failed
    assert "Eq 6.4 d/dlogvar E[z^2] via Normal.rsample vs (sigma/2) closed d/dsigma" in failed
    assert "Eq 6.2 d/dmu E[z^2]: reparam MC vs closed" not in failed


def test_reparam_exp_gradient_missing_sigma_fails(monkeypatch) -> None:
    """d/dsigma exp(a mu + a^2 sigma^2 / 2) written as a^2 E (forgetting the inner derivative's sigma)."""
    module = load("d06_reparameterization")

    def wrong(mu, sigma, a=module.EXP_RATE):
        value = np.exp(a * mu + 0.5 * a**2 * sigma**2)
        return value, a * value, a**2 * value

    monkeypatch.setattr(module, "exp_closed", wrong)
    failed = failed_rows(module.run())
    assert "Eq 6.3 d/dsigma E[exp(0.7z)]: reparam MC vs closed" in failed


# --- other topics: one planted mistake each -------------------------------------------
def test_bias_gradient_as_mean_fails(monkeypatch) -> None:
    module = load("d02_backprop_dense")
    right = module.linear_vjp

    def wrong(X, W, G):
        dX, dW, _ = right(X, W, G)
        return dX, dW, G.mean(axis=0)

    monkeypatch.setattr(module, "linear_vjp", wrong)
    failed = failed_rows(module.run())
    assert "Eq 2.1 db by hand vs engine backward" in failed
    assert "Eq 2.1 db by hand vs central differences" in failed
    assert "Eq 2.6 two-layer db1 by hand vs engine backward" in failed


def test_sigmoid_vjp_without_one_minus_s_fails(monkeypatch) -> None:
    module = load("d02_backprop_dense")
    monkeypatch.setattr(module, "sigmoid_vjp", lambda x, g: g * special.expit(x))
    failed = failed_rows(module.run())
    assert "Eq 2.3 sigmoid VJP by hand vs engine backward" in failed
    assert "Eq 2.3 sigmoid VJP by hand vs central differences" in failed


def test_posterior_without_prior_precision_fails(monkeypatch) -> None:
    """Forgetting the prior's identity in the posterior precision (I + W^T W / s^2)."""
    module = load("d03_elbo_decomposition")

    def wrong(model, x):
        Sigma = np.linalg.inv(model.W.T @ model.W / model.s**2)
        return Sigma @ model.W.T @ (x - model.b) / model.s**2, Sigma

    monkeypatch.setattr(module, "posterior", wrong)
    failed = failed_rows(module.run())
    assert "Eq 3.1 log p(x) = log p(x|z) + log p(z) - log p(z|x), 5 z's" in failed
    assert "Eq 3.3 ELBO + KL(q||p(z|x)) = log p(x) [q = N(0, I)]" in failed


def test_elbo_without_trace_term_fails(monkeypatch) -> None:
    """Dropping tr(W S W^T): the ELBO evaluated at the mean of q, as if z had no spread."""
    module = load("d03_elbo_decomposition")

    def wrong(model, x, mu, S):
        resid = x - (model.W @ mu + model.b)
        return -0.5 * model.d * np.log(2 * np.pi * model.s**2) - 0.5 * (resid @ resid) / model.s**2

    monkeypatch.setattr(module, "expected_log_likelihood", wrong)
    failed = failed_rows(module.run())
    assert "Eq 3.4 ELBO closed vs Monte Carlo [q = N(0, I)]" in failed
    assert "Eq 3.3 ELBO + KL(q||p(z|x)) = log p(x) [q diag, random]" in failed


def test_jensen_gap_reversed_fails(monkeypatch) -> None:
    module = load("d04_jensen_elbo")
    monkeypatch.setattr(module, "jensen_gap", lambda log_px, elbo: elbo - log_px)
    failed = failed_rows(module.run())
    assert "Eq 4.3 Jensen gap = KL(q||p(z|x)) (closed forms, k=2)" in failed
    assert "Eq 4.3 logistic 1-D: gap = KL(q||p(z|x)) by quad (q=N(0.0,1.0^2))" in failed


def test_sigma_score_without_minus_one_fails(monkeypatch) -> None:
    """d/dsigma log q without the -1/sigma from the normalizer: the score no longer has mean zero."""
    module = load("d07_score_function")
    monkeypatch.setattr(module, "score_sigma", lambda z, mu, sigma: (z - mu) ** 2 / sigma**3)
    failed = failed_rows(module.run())
    assert "Eq 7.1 E_q[d/dsigma log q] = 0 (quad)" in failed
    assert "Eq 7.2 engine d/dsigma log q = ((z-mu)^2/sigma^2 - 1)/sigma" in failed


def test_score_variance_formula_wrong_fails(monkeypatch) -> None:
    """(D+2)^2 instead of (D+2)(D+4): caught at small D (at D=64 the two differ by 3%, inside the MC bound)."""
    module = load("d07_score_function")
    monkeypatch.setattr(module, "score_variance_sq_norm", lambda dim, sigma: sigma**2 * (dim + 2) ** 2)
    failed = failed_rows(module.run())
    assert "Eq 7.6 D=1: Var score = sigma^2 (D+2)(D+4)" in failed
    assert "Eq 7.6 D=8: Var score = sigma^2 (D+2)(D+4)" in failed


# --- (a) topic 8: wrong IWAE bounds --------------------------------------------------
def test_iwae_mean_of_logs_fails(monkeypatch) -> None:
    """Averaging log-weights (Jensen on the wrong side) gives the ELBO for every k: no convergence."""
    module = load("d08_iwae_bound")
    monkeypatch.setattr(module, "iwae_bound", lambda log_w: np.mean(log_w, axis=-1))
    failed = failed_rows(module.run())
    assert any(eq.startswith("Eq 8.7 L_512") for eq in failed), failed
    assert "Eq 8.5 L_2 - L_1 > 5 SE (strict gain)" in failed


def test_iwae_missing_log_k_fails(monkeypatch) -> None:
    """log sum w instead of log mean w overshoots log p(x) by log k."""
    module = load("d08_iwae_bound")
    monkeypatch.setattr(module, "iwae_bound", lambda log_w: logsumexp(log_w, axis=-1))
    failed = failed_rows(module.run())
    assert "Eq 8.6 L_512 <= log p(x)" in failed and "Eq 8.6 L_8 <= log p(x)" in failed
    assert "Eq 8.8 q = p(z|x): L_16 = log p(x)" in failed


def test_wrong_marginal_fails(monkeypatch) -> None:
    """Forgetting the decoder noise in Cov[x] = W W^T + s^2 I breaks the quadrature check."""
    module = load("d08_iwae_bound")

    def no_noise(model, x):
        cov = model.weight @ model.weight.T + 1e-3 * np.eye(len(x))
        return float(module.Gaussian(model.bias, cov).log_prob(x))

    monkeypatch.setattr(module, "log_marginal", no_noise)
    assert "Eq 8.1 log p(x) = log int p(x,z) dz" in failed_rows(module.run())


# --- (b) topic 11: wrong ring radius density -------------------------------------------
def test_ring_density_without_jacobian_fails(monkeypatch) -> None:
    """Substituting rho = 10 (r - 1) into the Rayleigh density but dropping |d rho / dr| = 10."""
    module = load("d11_ring")

    def no_jacobian(r):
        r = np.asarray(r, dtype=np.float64)
        rho = module.SCALE * (r - 1.0)
        return np.where(r >= 1.0, rho * np.exp(-0.5 * rho**2), 0.0)

    monkeypatch.setattr(module, "ring_radius_pdf", no_jacobian)
    failed = failed_rows(module.run())
    assert "Eq 11.3 integral of p_R = 1" in failed
    assert "Eq 11.3 histogram: max |count - n p_bin| / SD <= 5" in failed


def test_ring_wrong_cdf_fails(monkeypatch) -> None:
    """A CDF with the wrong scale (exp(-(r-1)^2/2), forgetting the 10) is caught by KS and by quadrature."""
    module = load("d11_ring")
    monkeypatch.setattr(module, "ring_radius_cdf",
                        lambda r: np.where(np.asarray(r) >= 1.0, -np.expm1(-0.5 * (np.asarray(r) - 1.0) ** 2), 0.0))
    failed = failed_rows(module.run())
    assert "Eq 11.4 KS distance(samples, F_R) <= DKW bound" in failed


# --- (c) topic 9: wrong Gaussian entropy -----------------------------------------------
def test_gaussian_entropy_without_e_fails(monkeypatch) -> None:
    """1/2 log(2 pi sigma^2), forgetting the e: off by exactly 1/2 nat."""
    module = load("d09_entropy")
    monkeypatch.setattr(module, "gaussian_entropy", lambda sigma: 0.5 * np.log(2 * np.pi * sigma**2))
    failed = failed_rows(module.run())
    assert all(f"Eq 9.3 H(N(0,{s:g}^2)) closed form = quadrature" in failed for s in module.SIGMAS)


def test_wrong_laplace_scale_fails(monkeypatch) -> None:
    """Using b = sigma (variance 2 sigma^2) for the Laplace breaks the closed form."""
    module = load("d09_entropy")
    monkeypatch.setattr(module, "laplace_entropy", lambda sigma: float(1.0 + np.log(2.0 * sigma)))
    assert "Eq 9.5 H(Laplace) closed form = quadrature" in failed_rows(module.run())


# --- the other topics: each has a check that can fail ----------------------------------
def test_mutual_information_wrong_sign_fails(monkeypatch) -> None:
    module = load("d10_mutual_information")
    monkeypatch.setattr(module, "mutual_information", lambda rho: 0.5 * np.log1p(-rho**2))
    failed = failed_rows(module.run())
    assert any(eq.startswith("Eq 10.1") for eq in failed) and any(eq.startswith("Eq 10.5") for eq in failed)


def test_eckart_young_with_unsquared_singular_values_fails(monkeypatch) -> None:
    module = load("d12_linear_ae_pca")
    monkeypatch.setattr(module, "eckart_young_error", lambda s, k: float(np.sum(s[k:])))
    assert "Eq 12.2 ||X - X V_k V_k^T||^2 = sum_{i>k} sigma_i^2" in failed_rows(module.run())


def test_linear_ae_gradient_missing_factor_two_fails(monkeypatch) -> None:
    module = load("d12_linear_ae_pca")
    right = module.ae_gradients
    monkeypatch.setattr(module, "ae_gradients", lambda x, e, d: tuple(g / 2 for g in right(x, e, d)))
    failed = failed_rows(module.run())
    assert "Eq 12.4 dL/dE: minivae = -2/n X^T R D^T" in failed


def test_neg_elbo_without_one_half_fails(monkeypatch) -> None:
    """Writing SSE / s^2 instead of SSE / (2 s^2) (the lecture's dropped 1/2) is caught."""
    module = load("d13_vae_objective")
    monkeypatch.setattr(module, "neg_elbo_from_parts",
                        lambda sse, kl, n, s2: sse / s2 + 0.5 * n * np.log(2 * np.pi * s2) + kl)
    failed = failed_rows(module.run())
    assert any(eq.startswith("Eq 13.3") for eq in failed) and any(eq.startswith("Eq 13.4") for eq in failed)


def test_wrong_optimal_encoder_variance_fails(monkeypatch) -> None:
    module = load("d13_vae_objective")
    monkeypatch.setattr(module, "optimal_encoder_variance", lambda w2, weight: 1.0 / (1.0 + weight * w2))
    assert "Eq 13.7 argmin_var C = 1/(1 + 2||W_0||^2)" in failed_rows(module.run())


def test_tangent_instead_of_chord_for_the_dithered_loss_fails(monkeypatch) -> None:
    """Claiming the smoothed loss's gradient is the straight-through value f'(q(z)): the a·Δ/2 bias row fails."""
    module = load("d14_straight_through")
    monkeypatch.setattr(module, "smoothed_gradient",
                        lambda z, delta, f: module.A_1D * (float(module.grid_quantise(np.asarray(z), delta)) - module.T_1D))
    failed = failed_rows(module.run())
    assert any(eq.startswith("Eq 14.4 z=+0.93: d/dz E_u") for eq in failed), failed
    assert any(eq.startswith("Eq 14.4 z=-0.61: smoothed - straight-through") for eq in failed), failed


def test_codebook_gradient_without_the_factor_two_fails(monkeypatch) -> None:
    """d/de ||z - e||² written as (e - z): the engine row and the one-step-to-the-centroid row both fail."""
    module = load("d14_straight_through")
    original = module.codebook_gradient
    monkeypatch.setattr(module, "codebook_gradient", lambda z, e, index: original(z, e, index) / 2)
    failed = failed_rows(module.run())
    assert "Eq 14.5 engine d/de_k ||sg[z] - e_k||^2 = 2 sum (e_k - z_i)" in failed
    assert "Eq 14.6 e_k - grad / (2 n_k) = centroid of its vectors" in failed


def test_ema_without_the_pseudo_count_start_moves_unused_codes(monkeypatch) -> None:
    """Starting the EMA at n = 0, m = 0 divides 0 by 0 for an unused code: the last Eq 14.6 row fails."""
    module = load("d14_straight_through")

    def ema_from_zero(codebook, counts, sums, gamma, steps):
        n, m = np.zeros(len(codebook)), np.zeros_like(codebook)
        for _ in range(steps):
            n = gamma * n + (1 - gamma) * counts
            m = gamma * m + (1 - gamma) * sums
        with np.errstate(invalid="ignore", divide="ignore"):
            return m / n[:, None]

    monkeypatch.setattr(module, "ema_codebook", ema_from_zero)
    assert "Eq 14.6 EMA leaves an unused code where it was" in failed_rows(module.run())


def test_straight_through_bias_formula_with_the_wrong_sign_fails(monkeypatch) -> None:
    module = load("d14_straight_through")
    monkeypatch.setattr(module, "st_minus_true_gradient", lambda a, z, zq: (z - zq) @ a)
    assert "Eq 14.3 grad f(q(z)) - grad f(z) = A (q(z) - z)" in failed_rows(module.run())


def test_max_ties_giving_every_tied_element_the_full_gradient_fails(monkeypatch) -> None:
    """Each tied maximum getting all of g (no share): the tie rows of Eq 15.32 fail, the untied ones pass."""
    module = load("d15_vjp_rules")

    def full_to_every_tie(x, axis, keepdims, g, kind="max"):
        axes = module._axes(axis, np.ndim(x))
        y = (np.max if kind == "max" else np.min)(x, axis=axes, keepdims=True)
        return (x == y) * module._keep(g, axes, keepdims)

    monkeypatch.setattr(module, "extreme_vjp", full_to_every_tie)
    failed = failed_rows(module.run())
    assert "Eq 15.32 max axis=1 with ties: shared equally: by hand vs engine" in failed
    assert "Eq 15.32 max axis=1 with ties: <x̄, v> = derivative along the tied set" in failed
    assert "Eq 15.32 min axis=None with ties: <x̄, v> = derivative along the tied set" in failed
    assert all("with ties" in eq for eq in failed), failed


def test_unbroadcast_that_forgets_to_sum_fails(monkeypatch) -> None:
    """Keeping one copy's gradient instead of summing over the broadcast axes: Eq 15.4 fails, on both references."""
    module = load("d15_vjp_rules")

    def first_copy_only(g, shape):
        lead = g.ndim - len(shape)
        g = g[(0,) * lead] if lead else g
        index = tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)
        return g[index]

    monkeypatch.setattr(module, "unbroadcast", first_copy_only)
    failed = failed_rows(module.run())
    for row in ("Eq 15.4 a(3, 1) * b(1, 4): by hand vs engine", "Eq 15.4 a(3, 1) * b(1, 4): by hand vs central differences",
                "Eq 15.4 a() * b(2, 3): by hand vs engine", "Eq 15.40 broadcast_to (3,1) -> (2,3,4): by hand vs engine"):
        assert row in failed, (row, failed)
