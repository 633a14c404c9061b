"""Topic 6: the reparameterization trick, checked against closed-form gradients.

To differentiate E_{z ~ N(mu, sigma^2)}[f(z)] with respect to mu and sigma, write
z = mu + sigma * eps with eps ~ N(0, 1). The noise no longer depends on the parameters, so
the gradient moves inside the expectation and autograd can follow the sample:

* Eq 6.1  E_q[f(z)] = E_eps[f(mu + sigma eps)]
* Eq 6.2  d/dmu    E = E_eps[f'(mu + sigma eps)]
* Eq 6.3  d/dsigma E = E_eps[f'(mu + sigma eps) eps]
* Eq 6.4  with the encoder's log-variance: d/dlogvar E = (sigma / 2) d/dsigma E
* Eq 6.5  closed forms of E, dE/dmu, dE/dsigma for f = z^2, z^3, z^4, exp(a z), relu(z)

The gradients are computed by the engine's backward, per sample, over fixed seeded noise.
Each is compared with the closed form within 5 standard errors of its Monte Carlo mean.
The closed forms themselves are checked against quadrature and finite differences.

Run it: ``python -m minivae.derivations.d06_reparameterization`` (or ``minivae derive 06_reparameterization``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import integrate, stats

import minivae as mv
from .table import Table, main

TITLE = "Topic 6: the reparameterization trick vs closed-form gradients"

SEED = 6
MU, SIGMA = 0.5, 0.8
N_SAMPLES = 100_000
MC_SIGMAS = 5.0
EXP_RATE = 0.7  # the a in f(z) = exp(a z)


# --------------------------------------------------------------------------- closed forms (Eq 6.5)
# Each returns (E[f(z)], dE/dmu, dE/dsigma) for z ~ N(mu, sigma^2).
def square_closed(mu: float, sigma: float) -> tuple[float, float, float]:
    """f = z^2: E = mu^2 + sigma^2."""
    return mu**2 + sigma**2, 2 * mu, 2 * sigma


def cube_closed(mu: float, sigma: float) -> tuple[float, float, float]:
    """f = z^3: E = mu^3 + 3 mu sigma^2 (odd central moments vanish)."""
    return mu**3 + 3 * mu * sigma**2, 3 * mu**2 + 3 * sigma**2, 6 * mu * sigma


def quartic_closed(mu: float, sigma: float) -> tuple[float, float, float]:
    """f = z^4: E = mu^4 + 6 mu^2 sigma^2 + 3 sigma^4 (E[eps^4] = 3)."""
    return (mu**4 + 6 * mu**2 * sigma**2 + 3 * sigma**4,
            4 * mu**3 + 12 * mu * sigma**2,
            12 * mu**2 * sigma + 12 * sigma**3)


def exp_closed(mu: float, sigma: float, a: float = EXP_RATE) -> tuple[float, float, float]:
    """f = exp(a z): E = exp(a mu + a^2 sigma^2 / 2), the log-normal mean."""
    value = math.exp(a * mu + 0.5 * a**2 * sigma**2)
    return value, a * value, a**2 * sigma * value


def relu_closed(mu: float, sigma: float) -> tuple[float, float, float]:
    """f = max(z, 0): E = mu Phi(mu/sigma) + sigma phi(mu/sigma); dE/dmu = Phi, dE/dsigma = phi."""
    t = mu / sigma
    return mu * stats.norm.cdf(t) + sigma * stats.norm.pdf(t), float(stats.norm.cdf(t)), float(stats.norm.pdf(t))


@dataclass
class Case:
    """One test function f, in the engine (for autograd) and in NumPy (for quadrature), with its closed form."""

    name: str
    f_engine: Callable[[mv.Tensor], mv.Tensor]
    f_numpy: Callable[[np.ndarray], np.ndarray]
    closed: Callable[[float, float], tuple[float, float, float]]


def cases() -> list[Case]:
    """The test functions. Built on each call, so a test can monkeypatch a closed form and see a FAIL."""
    a = EXP_RATE
    return [
        Case("z^2", lambda z: z**2, lambda z: z**2, square_closed),
        Case("z^3", lambda z: z**3, lambda z: z**3, cube_closed),
        Case("z^4", lambda z: z**4, lambda z: z**4, quartic_closed),
        Case(f"exp({a}z)", lambda z: mv.exp(a * z), lambda z: np.exp(a * z), exp_closed),
        Case("relu(z)", mv.relu, lambda z: np.maximum(z, 0.0), relu_closed),
    ]


# --------------------------------------------------------------------------- the estimator
def reparam_per_sample(case: Case, mu: float, sigma: float, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample f(z), df/dmu and df/dsigma for z = mu + sigma eps, by the engine's backward.

    mu and sigma are repeated into one leaf per sample, so after one backward pass
    leaf.grad[i] is the gradient for sample i alone; the Monte Carlo estimate is their mean
    and the spread gives its standard error.
    """
    mu_t = mv.tensor(np.full(eps.shape, mu), requires_grad=True, dtype="float64")
    sigma_t = mv.tensor(np.full(eps.shape, sigma), requires_grad=True, dtype="float64")
    values = case.f_engine(mu_t + sigma_t * eps)
    values.sum().backward()
    return values.numpy(), np.asarray(mu_t.grad), np.asarray(sigma_t.grad)


def mean_and_se(samples: np.ndarray) -> tuple[float, float]:
    """Monte Carlo mean and its standard error."""
    return float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(samples.size))


def _quad_expectation(f: Callable[[np.ndarray], np.ndarray], mu: float, sigma: float) -> float:
    """E[f(z)], z ~ N(mu, sigma^2), by scipy quad over mu +- 14 sigma."""
    value, _ = integrate.quad(lambda z: f(z) * stats.norm.pdf(z, mu, sigma), mu - 14 * sigma, mu + 14 * sigma,
                              epsabs=1e-13, epsrel=1e-12, limit=200)
    return value


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 6.1 - 6.5 and return the table."""
    t = Table(TITLE)
    eps = np.random.default_rng(SEED).standard_normal(N_SAMPLES)
    mc_note = f"{N_SAMPLES} draws, tolerance = {MC_SIGMAS:g} standard errors"
    h = 1e-5

    for case in cases():
        value, dmu, dsigma = case.closed(MU, SIGMA)

        # Eq 6.5: the closed form is right (quadrature for E, central differences of E for the gradients).
        t.equal(f"Eq 6.5 E[{case.name}] closed vs quad", value, _quad_expectation(case.f_numpy, MU, SIGMA), 1e-9)
        fd_mu = (case.closed(MU + h, SIGMA)[0] - case.closed(MU - h, SIGMA)[0]) / (2 * h)
        fd_sigma = (case.closed(MU, SIGMA + h)[0] - case.closed(MU, SIGMA - h)[0]) / (2 * h)
        t.equal(f"Eq 6.5 closed (dmu, dsigma) of E[{case.name}] vs finite differences", [dmu, dsigma], [fd_mu, fd_sigma], 1e-7)

        # Eq 6.1 - 6.3: the reparameterized Monte Carlo estimates, gradients by the engine.
        f_vals, g_mu, g_sigma = reparam_per_sample(case, MU, SIGMA, eps)
        for eq, label, samples, exact in (("6.1", "value of", f_vals, value), ("6.2", "d/dmu", g_mu, dmu),
                                          ("6.3", "d/dsigma", g_sigma, dsigma)):
            estimate, se = mean_and_se(samples)
            t.equal(f"Eq {eq} {label} E[{case.name}]: reparam MC vs closed", estimate, exact, MC_SIGMAS * se,
                    note=f"{mc_note} (se = {se:.2g})")

    # Per sample, autograd follows the path exactly: for f = z^2, df/dmu = 2z and df/dsigma = 2z eps.
    z = MU + SIGMA * eps
    _, g_mu, g_sigma = reparam_per_sample(cases()[0], MU, SIGMA, eps)
    t.equal("Eq 6.2 per-sample engine d/dmu z^2 = 2z", g_mu, 2 * z, 1e-12)
    t.equal("Eq 6.3 per-sample engine d/dsigma z^2 = 2z eps", g_sigma, 2 * z * eps, 1e-12)

    # One shared (scalar) mu: the engine sums the per-sample gradients when it undoes the broadcast.
    mu_scalar = mv.tensor(MU, requires_grad=True, dtype="float64")
    ((mu_scalar + SIGMA * eps) ** 2).mean().backward()
    t.equal("Eq 6.2 scalar mu, mean over samples: grad = mean of per-sample grads", float(np.asarray(mu_scalar.grad)),
            float(g_mu.mean()), 1e-10)

    # Eq 6.4: the engine's Normal.rsample uses logvar; its gradient is (sigma / 2) times the sigma-gradient.
    for case in (cases()[0], cases()[3]):
        shape = (N_SAMPLES, 1)  # Normal is over the last axis: one latent, many samples
        mu_t = mv.tensor(np.full(shape, MU), requires_grad=True, dtype="float64")
        logvar_t = mv.tensor(np.full(shape, 2 * math.log(SIGMA)), requires_grad=True, dtype="float64")
        zt = mv.distributions.Normal(mu_t, logvar_t).rsample(eps=eps.reshape(shape))
        case.f_engine(zt).sum().backward()
        estimate, se = mean_and_se(np.asarray(logvar_t.grad).ravel())
        t.equal(f"Eq 6.4 d/dlogvar E[{case.name}] via Normal.rsample vs (sigma/2) closed d/dsigma", estimate,
                0.5 * SIGMA * case.closed(MU, SIGMA)[2], MC_SIGMAS * se, note=f"{mc_note} (se = {se:.2g})")

    if plot_dir is not None:
        _plot(plot_dir)
    return t


def _plot(plot_dir: str) -> None:
    """Closed-form dE/dsigma of E[z^4] over sigma, with reparameterized MC estimates and 2-s.e. bars."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = cases()[2]
    sigmas = np.linspace(0.2, 1.5, 60)
    eps = np.random.default_rng(SEED).standard_normal(2_000)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sigmas, [case.closed(MU, s)[2] for s in sigmas], "k-", label="closed form")
    points = np.linspace(0.3, 1.4, 8)
    stats_ = [mean_and_se(reparam_per_sample(case, MU, s, eps)[2]) for s in points]
    ax.errorbar(points, [m for m, _ in stats_], yerr=[2 * se for _, se in stats_], fmt="o", capsize=3,
                label="reparam MC, 2000 draws (+-2 s.e.)")
    ax.set_xlabel("sigma")
    ax.set_ylabel(f"d/dsigma E[{case.name}]  (mu = {MU})")
    ax.set_title("Reparameterization gradient vs closed form")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "06_reparameterization.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
