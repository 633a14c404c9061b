"""Derivations 1-7: a wrong formula makes its table fail (that every table passes is
checked for all topics in test_derivations.py).

Each perturbation test swaps one module-level formula for a plausible mistake (one a
student could make on paper) and checks that the derivation's own table catches it,
on the row meant to catch it.
"""

from __future__ import annotations

import numpy as np
from derivation_helpers import failed_rows, load
from scipy import special


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
