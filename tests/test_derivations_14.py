"""Derivation 14 (straight-through): a wrong formula makes its table fail, on the row meant to catch it.

That the table passes as written is checked with every topic in test_derivations.py.
"""

from __future__ import annotations

import numpy as np
from derivation_helpers import failed_rows, load


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
