"""Topic 10: the variational lower bound on mutual information, on a jointly Gaussian pair.

z ~ N(0, 1) and x = rho z + sqrt(1 - rho^2) n with n ~ N(0, 1) independent, so
(z, x) is a standard bivariate normal with correlation rho, z | x ~ N(rho x, 1 - rho^2),
and I(z; x) = -1/2 log(1 - rho^2) is known exactly. The bound

    I(z; x) >= H(z) + E_{p(z,x)}[log q(z | x)]

is evaluated for the Gaussian family q(z | x) = N(a x, v): in closed form, by
Monte Carlo (tolerance in standard errors), and against 2-D quadrature of the
definition of I.

Run it: ``python -m minivae.derivations.d10_mutual_information`` (or ``minivae derive 10_mutual_information``).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import integrate, optimize, stats

from .table import Table, main

TITLE = "10. Mutual information and its variational lower bound (bivariate Gaussian)"

SEED = 10
N_SIGMA = 5.0
N_SAMPLES = 200_000
RHOS = (0.3, 0.8, 0.95)


# --------------------------------------------------------------------------
# Formulas under test
# --------------------------------------------------------------------------
def gaussian_entropy(var: float) -> float:
    """H(N(m, var)) = 1/2 log(2 pi e var)."""
    return 0.5 * np.log(2 * np.pi * np.e * var)


def mutual_information(rho: float) -> float:
    """I(z; x) = H(z) - H(z | x) = 1/2 log 1 - 1/2 log(1 - rho^2) (Eq. 10.1)."""
    return -0.5 * np.log1p(-rho**2)


def expected_log_q(rho: float, a: float, v: float) -> float:
    """E_{p(z,x)}[log N(z; a x, v)] = -1/2 log(2 pi v) - E[(z - a x)^2] / (2 v) (Eq. 10.3).

    E[(z - a x)^2] = E z^2 - 2 a E[z x] + a^2 E x^2 = 1 - 2 a rho + a^2.
    """
    return -0.5 * np.log(2 * np.pi * v) - (1 - 2 * a * rho + a**2) / (2 * v)


def variational_bound(rho: float, a: float, v: float) -> float:
    """B(q) = H(z) + E[log q(z | x)] with H(z) = H(N(0, 1)) (Eq. 10.2)."""
    return gaussian_entropy(1.0) + expected_log_q(rho, a, v)


def bound_gap(rho: float, a: float, v: float) -> float:
    """I - B(q) = E_x KL(p(z|x) || q(z|x)), KL between N(rho x, 1 - rho^2) and N(a x, v) averaged over x (Eq. 10.4).

    Per x: 1/2[(1 - rho^2)/v + (rho - a)^2 x^2 / v - 1 + log(v / (1 - rho^2))]; then E x^2 = 1.
    """
    c = 1 - rho**2
    return 0.5 * ((c + (rho - a) ** 2) / v - 1 + np.log(v / c))


# --------------------------------------------------------------------------
# Numerical references
# --------------------------------------------------------------------------
def mutual_information_by_quadrature(rho: float) -> float:
    """integral p(z,x) log[p(z,x) / (p(z) p(x))] over the plane, truncated at +-12."""
    c = 1 - rho**2

    def integrand(x: float, z: float) -> float:
        # Written out by hand: scipy's per-point logpdf is too slow inside dblquad.
        log_joint = -np.log(2 * np.pi) - 0.5 * np.log(c) - (z * z - 2 * rho * z * x + x * x) / (2 * c)
        log_marginals = -np.log(2 * np.pi) - 0.5 * (z * z + x * x)
        return np.exp(log_joint) * (log_joint - log_marginals)

    value, _ = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-11, epsrel=1e-10)
    return value


def sample_pair(rho: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n draws of (z, x) built the way the model is written: x from z plus independent noise."""
    z = rng.standard_normal(n)
    x = rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return z, x


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------
def run(plot_dir: str | None = None) -> Table:
    table = Table(TITLE)
    rng = np.random.default_rng(SEED)
    mc_note = f"{N_SAMPLES} draws of (z, x); tolerance {N_SIGMA:g} standard errors"

    for rho in RHOS:
        info = mutual_information(rho)
        cond = 1 - rho**2
        # Eq 10.1: the closed form, its two entropy decompositions, and quadrature of the definition.
        table.equal(f"Eq 10.1 rho={rho}: I = -1/2 log(1-rho^2) vs quadrature", info,
                    mutual_information_by_quadrature(rho), tol=1e-7)
        joint_entropy = stats.multivariate_normal(cov=[[1, rho], [rho, 1]]).entropy()
        table.equal(f"Eq 10.1 rho={rho}: I = H(z) + H(x) - H(z,x)", info,
                    2 * gaussian_entropy(1.0) - joint_entropy, tol=1e-12,
                    note="H(z,x) from scipy's bivariate normal" if rho == RHOS[0] else "")

        # Eq 10.3: E[log q] by Monte Carlo, for the true conditional and for a worse q.
        z, x = sample_pair(rho, N_SAMPLES, rng)
        for label, a, v in (("true q", rho, cond), ("worse q", 0.7 * rho, 1.5 * cond)):
            log_q = stats.norm(loc=a * x, scale=np.sqrt(v)).logpdf(z)
            se = log_q.std(ddof=1) / np.sqrt(N_SAMPLES)
            table.equal(f"Eq 10.3 rho={rho}, {label}: E[log q] closed form = MC", expected_log_q(rho, a, v),
                        log_q.mean(), tol=N_SIGMA * se, note=mc_note if rho == RHOS[0] and label == "true q" else "")

        # Eq 10.4: the gap is an expected KL, and Eq 10.5: it vanishes for the true conditional.
        a_bad, v_bad = 0.7 * rho, 1.5 * cond
        table.equal(f"Eq 10.4 rho={rho}: I - B(q) = E_x KL(p(z|x)||q)", info - variational_bound(rho, a_bad, v_bad),
                    bound_gap(rho, a_bad, v_bad), tol=1e-12)
        table.equal(f"Eq 10.5 rho={rho}: B(true conditional) = I", variational_bound(rho, rho, cond), info, tol=1e-12)
        table.less_equal(f"Eq 10.6 rho={rho}: B(worse q) < I (strict)", variational_bound(rho, a_bad, v_bad),
                         info - 1e-3, note="a = 0.7 rho, v = 1.5 (1 - rho^2)" if rho == RHOS[0] else "")

        # Eq 10.7: maximising B over the family recovers the true conditional, and the maximum is I.
        res = optimize.minimize(lambda p: -variational_bound(rho, p[0], np.exp(p[1])), x0=[0.0, 0.0],
                                method="BFGS", options={"gtol": 1e-10})
        table.equal(f"Eq 10.7 rho={rho}: argmax_a B = rho", res.x[0], rho, tol=1e-5)
        table.equal(f"Eq 10.7 rho={rho}: argmax_v B = 1 - rho^2", np.exp(res.x[1]), cond, tol=1e-5)
        table.equal(f"Eq 10.7 rho={rho}: max B = I", -res.fun, info, tol=1e-10)

    # Eq 10.6 across random members of the family: never above I.
    rho = RHOS[1]
    params = np.column_stack([rng.uniform(-2, 2, 500), np.exp(rng.uniform(-3, 2, 500))])
    bounds = np.array([variational_bound(rho, a, v) for a, v in params])
    table.less_equal(f"Eq 10.6 rho={rho}: max over 500 random q of B <= I", bounds.max(), mutual_information(rho))

    if plot_dir is not None:
        _plot(plot_dir)
    return table


def _plot(plot_dir: str) -> None:
    """B(q) as a function of q's slope a (v at its best value for that a), against I."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for rho in RHOS:
        a = np.linspace(-0.5, 1.5, 400)
        best_v = 1 - 2 * a * rho + a**2   # the v maximising B for this a: E[(z - a x)^2]
        line = ax.plot(a, [variational_bound(rho, ai, vi) for ai, vi in zip(a, best_v)], label=f"B(q), rho={rho}")
        ax.axhline(mutual_information(rho), color=line[0].get_color(), ls=":", lw=1)
        ax.plot([rho], [mutual_information(rho)], "o", color=line[0].get_color())
    ax.set_xlabel("slope a of q(z|x) = N(a x, v)")
    ax.set_ylabel("nats")
    ax.set_ylim(-0.6, 1.4)
    ax.set_title("The bound touches I(z;x) (dotted) only at a = rho")
    ax.legend()
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "10_mutual_information.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
