"""The gradient-variance lab's own tools: the optimal control variate and the Gaussian score.

The estimator node and its baselines are part of the engine, next to the other
stochastic nodes: :mod:`minivae.stochastic` (``score_function_surrogate``,
``MovingAverageBaseline``, ``LearnedBaseline``, ``leave_one_out_baseline``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minivae import losses, ops
from minivae.providers import backend
from minivae.tensor import Tensor


def optimal_control_variate(f_value: Any, scores: Any, per_parameter: bool = True) -> np.ndarray | float:
    """The variance-minimising coefficient c for ĝ = mean_i[f_i s_i] - c · mean_i[s_i].

    With s = ∇_φ ln q(z) (E[s] = 0) the control variate c·s leaves the mean
    alone, and Var(f s - c s) is smallest at

        per parameter p:   c*_p = Cov(f s_p, s_p) / Var(s_p)
        one scalar c:      c*   = Σ_p Cov(f s_p, s_p) / Σ_p Var(s_p)   (minimises the trace of the covariance)

    estimated here from the batch itself. That makes c depend (weakly) on the
    samples, which adds a bias of order 1/n; the lab measures it to be far below
    the noise. Args: f_value of shape (n,), scores of shape (n, P).
    """
    f = np.asarray(backend.to_numpy(f_value.data if isinstance(f_value, Tensor) else f_value), dtype=np.float64)
    s = np.asarray(backend.to_numpy(scores), dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if f.shape != (s.shape[0],):
        raise ValueError(f"optimal_control_variate: f has shape {f.shape}, scores {s.shape}; expected (n,) and (n, P)")
    if s.shape[0] < 2:
        raise ValueError("optimal_control_variate: needs at least 2 samples to estimate covariances")
    fs = f[:, None] * s
    cov = ((fs - fs.mean(0)) * (s - s.mean(0))).mean(0)
    var = ((s - s.mean(0)) ** 2).mean(0)
    if per_parameter:
        return cov / np.maximum(var, 1e-300)
    return float(cov.sum() / max(var.sum(), 1e-300))


def gaussian_score(z: Any, mu: Any, sigma: Any) -> tuple[np.ndarray, np.ndarray]:
    """∇ ln N(z; mu, σ²) per sample: (∂/∂mu, ∂/∂σ) = ((z - mu)/σ², ((z - mu)² - σ²)/σ³)."""
    z, mu, sigma = (np.asarray(backend.to_numpy(a), dtype=np.float64) for a in (z, mu, sigma))
    d = z - mu
    return d / sigma**2, (d * d - sigma**2) / sigma**3


def gaussian_log_prob(z: Any, mu: Tensor, sigma: Tensor) -> Tensor:
    """ln N(z; mu, diag σ²) = Σ_d [-ln σ_d - (z_d - mu_d)²/(2σ_d²)] - (D/2) ln 2π, over the last axis.

    Parameterised by σ itself (not log σ²) so the lab can report ∂/∂σ directly.
    A deliberate second form of ``Normal(mu, 2 ln σ).log_prob(z)`` (its home, via losses.gaussian_nll);
    tests/test_estimators.py pins the two together.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.1.
    """
    diff = z - mu
    terms = ops.log(sigma) + 0.5 * diff * diff / (sigma * sigma)
    return -terms.sum(axis=-1) - 0.5 * mu.shape[-1] * losses.LOG_2PI


__all__: Sequence[str] = ("gaussian_log_prob", "gaussian_score", "optimal_control_variate")
