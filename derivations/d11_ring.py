"""Topic 11: any distribution from a normal one through a function, on the lecture's ring.

With z ~ N(0, I_2) and f(z) = z/10 + z/||z||, the point f(z) lies in the direction
of z at radius r = ||z||/10 + 1. ||z|| has the Rayleigh density rho exp(-rho^2/2),
so the radius has an analytic density and CDF by a one-dimensional change of
variables. The checks compare samples of f(z) with those formulas: a
Kolmogorov-Smirnov distance against its DKW confidence bound, a histogram
against bin probabilities, and moments against their closed forms.

Run it: ``python -m minivae.derivations.d11_ring`` (or ``minivae derive 11_ring``);
``--plot DIR`` writes the histogram with the density.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import integrate, stats

from .table import Table, main

TITLE = "11. A ring from a Gaussian: f(z) = z/10 + z/||z||"

SEED = 11
N_SAMPLES = 200_000
N_SIGMA = 5.0
KS_ALPHA = 1e-6          # the DKW bound holds with probability 1 - KS_ALPHA
N_BINS = 40
SCALE = 10.0             # the 10 in z/10


# --------------------------------------------------------------------------
# Formulas under test
# --------------------------------------------------------------------------
def ring_map(z: np.ndarray) -> np.ndarray:
    """f(z) = z/10 + z/||z|| for z of shape (..., 2)."""
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    return z / SCALE + z / norm


def ring_radius_pdf(r: np.ndarray) -> np.ndarray:
    """Density of r = ||z||/10 + 1 (Eq. 11.3).

    rho = ||z|| = 10 (r - 1) has density rho exp(-rho^2/2); the change of variables
    multiplies by |d rho / d r| = 10 (the Jacobian factor).
    """
    r = np.asarray(r, dtype=np.float64)
    rho = SCALE * (r - 1.0)
    return np.where(r >= 1.0, SCALE * rho * np.exp(-0.5 * rho**2), 0.0)


def ring_radius_cdf(r: np.ndarray) -> np.ndarray:
    """P(R <= r) = P(||z|| <= 10 (r - 1)) = 1 - exp(-50 (r - 1)^2) for r >= 1 (Eq. 11.4)."""
    r = np.asarray(r, dtype=np.float64)
    rho = SCALE * (r - 1.0)
    return np.where(r >= 1.0, -np.expm1(-0.5 * rho**2), 0.0)


def ring_radius_moments() -> tuple[float, float]:
    """Mean and variance of r: E||z|| = sqrt(pi/2), Var||z|| = (4 - pi)/2, scaled by 1/10 (Eq. 11.5)."""
    return 1.0 + np.sqrt(np.pi / 2) / SCALE, (4.0 - np.pi) / 2 / SCALE**2


def ring_density_2d(x: np.ndarray) -> np.ndarray:
    """Density of f(z) in the plane: the angle is uniform, so p(x) = p_R(||x||) / (2 pi ||x||) (Eq. 11.6)."""
    r = np.linalg.norm(x, axis=-1)
    return ring_radius_pdf(r) / (2 * np.pi * r)


# --------------------------------------------------------------------------
# Numerical references
# --------------------------------------------------------------------------
def jacobian_determinant(z: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """det of the 2x2 Jacobian of ring_map at each row of z, by central differences."""
    cols = []
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        cols.append((ring_map(z + step) - ring_map(z - step)) / (2 * h))
    # cols[j][:, i] = d f_i / d z_j
    return cols[0][:, 0] * cols[1][:, 1] - cols[1][:, 0] * cols[0][:, 1]


def dkw_bound(n: int, alpha: float) -> float:
    """Dvoretzky-Kiefer-Wolfowitz: P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2); solve for eps."""
    return float(np.sqrt(np.log(2.0 / alpha) / (2.0 * n)))


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------
def run(plot_dir: str | None = None) -> Table:
    table = Table(TITLE)
    rng = np.random.default_rng(SEED)
    z = rng.standard_normal((N_SAMPLES, 2))
    x = ring_map(z)
    r = np.linalg.norm(x, axis=-1)
    rho = np.linalg.norm(z, axis=-1)

    # Eq 11.1: the radius of f(z) is ||z||/10 + 1, and the direction is that of z.
    table.equal("Eq 11.1 ||f(z)|| = ||z||/10 + 1", r, rho / SCALE + 1.0, tol=1e-12)
    table.equal("Eq 11.1 f(z)/||f(z)|| = z/||z||", x / r[:, None], z / rho[:, None], tol=1e-12)

    # Eq 11.2: ||z|| is Rayleigh, checked by Cartesian quadrature of the 2-D Gaussian over a disc.
    for radius in (0.5, 1.0, 2.0):
        disc, _ = integrate.dblquad(lambda v, u: np.exp(-0.5 * (u * u + v * v)) / (2 * np.pi), -radius, radius,
                                    lambda u: -np.sqrt(radius**2 - u * u), lambda u: np.sqrt(radius**2 - u * u),
                                    epsabs=1e-13, epsrel=1e-12)
        table.equal(f"Eq 11.2 P(||z|| <= {radius:g}): Rayleigh CDF = quadrature", 1 - np.exp(-0.5 * radius**2),
                    disc, tol=1e-12)

    # Eq 11.3: the radius density integrates to 1 and its integral is the CDF.
    total, _ = integrate.quad(ring_radius_pdf, 1.0, 2.5, points=[1.1], limit=200)
    table.equal("Eq 11.3 integral of p_R = 1", total, 1.0, tol=1e-10)
    # Eq 11.3 bin by bin: counts against n * (integral of the density over the bin).
    edges = np.linspace(1.0, 1.0 + 4.5 / SCALE, N_BINS + 1)
    counts, _ = np.histogram(r, bins=edges)
    probs = np.array([integrate.quad(ring_radius_pdf, a, b)[0] for a, b in zip(edges[:-1], edges[1:])])
    expected = N_SAMPLES * probs
    z_scores = (counts - expected) / np.sqrt(expected * (1 - probs))
    table.less_equal("Eq 11.3 histogram: max |count - n p_bin| / SD <= 5", np.abs(z_scores).max(), N_SIGMA,
                     note=f"{N_BINS} bins on [1, 1.45]; binomial standard deviation per bin")

    for r0 in (1.05, 1.1, 1.2, 1.3):
        partial, _ = integrate.quad(ring_radius_pdf, 1.0, r0, limit=200)
        table.equal(f"Eq 11.4 F_R({r0:g}) = integral of p_R", ring_radius_cdf(r0), partial, tol=1e-10)

    # Eq 11.4: the empirical CDF of the samples stays within the DKW band of the analytic CDF.
    ks = stats.kstest(r, ring_radius_cdf).statistic
    table.less_equal("Eq 11.4 KS distance(samples, F_R) <= DKW bound", ks, dkw_bound(N_SAMPLES, KS_ALPHA),
                     note=f"{N_SAMPLES} samples; the bound holds with probability 1 - {KS_ALPHA:g}")

    # Eq 11.5: moments, closed form against quadrature and against the samples.
    mean, var = ring_radius_moments()
    mean_q, _ = integrate.quad(lambda t: t * ring_radius_pdf(t), 1.0, 2.5, points=[1.1], limit=200)
    var_q, _ = integrate.quad(lambda t: (t - mean_q) ** 2 * ring_radius_pdf(t), 1.0, 2.5, points=[1.1], limit=200)
    table.equal("Eq 11.5 E[R] closed form = quadrature", mean, mean_q, tol=1e-10)
    table.equal("Eq 11.5 Var[R] closed form = quadrature", var, var_q, tol=1e-10)
    table.equal("Eq 11.5 E[R] closed form = sample mean", mean, r.mean(), tol=N_SIGMA * r.std(ddof=1) / np.sqrt(N_SAMPLES),
                note="tolerance 5 standard errors")
    # SE of the sample variance: sqrt((mu4 - var^2) / n), with mu4 estimated from the samples.
    se_var = np.sqrt((np.mean((r - r.mean()) ** 4) - r.var() ** 2) / N_SAMPLES)
    table.equal("Eq 11.5 Var[R] closed form = sample variance", var, r.var(ddof=1), tol=N_SIGMA * se_var)

    # Eq 11.6: the plane density by the polar argument equals p_z(z) / |det J_f(z)|.
    zs = z[:2000]
    via_jacobian = stats.multivariate_normal(cov=np.eye(2)).pdf(zs) / np.abs(jacobian_determinant(zs))
    table.equal("Eq 11.6 p(f(z)) = p_z(z) / |det J_f(z)|", ring_density_2d(ring_map(zs)), via_jacobian, tol=1e-6,
                relative=True, note="Jacobian by central differences at 2000 sample points")
    # Eq 11.6: the angle is uniform on [0, 2 pi).
    angle = (np.arctan2(x[:, 1], x[:, 0]) % (2 * np.pi)) / (2 * np.pi)
    table.less_equal("Eq 11.6 KS distance(angle / 2 pi, U[0,1]) <= DKW bound", stats.kstest(angle, "uniform").statistic,
                     dkw_bound(N_SAMPLES, KS_ALPHA))

    if plot_dir is not None:
        _plot(plot_dir, x, r)
    return table


def _plot(plot_dir: str, x: np.ndarray, r: np.ndarray) -> None:
    """Left: the samples in the plane. Right: the radius histogram against the analytic density."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.scatter(x[:5000, 0], x[:5000, 1], s=1, alpha=0.4)
    left.set_aspect("equal")
    left.set_title("f(z) = z/10 + z/||z||, 5000 samples")
    grid = np.linspace(1.0, 1.5, 400)
    right.hist(r, bins=80, range=(1.0, 1.5), density=True, alpha=0.5, label=f"{len(r)} samples")
    right.plot(grid, ring_radius_pdf(grid), "k", label="10 rho exp(-rho^2/2), rho = 10(r-1)")
    right.set_xlabel("radius r = ||f(z)||")
    right.set_title("Radius: histogram and analytic density")
    right.legend()
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "11_ring.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
