"""Derivations 8-13: a wrong formula makes its table fail (that every table passes is
checked for all topics in test_derivations.py).

The perturbation tests replace one module-level formula with a plausible mistake
(the kind a student makes on paper) and check that the derivation's own table
catches it, on the row that is meant to catch it.
"""

from __future__ import annotations

import numpy as np
from derivation_helpers import failed_rows, load
from scipy.special import logsumexp


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
