"""Topic 1: reconstruction losses are negative log-likelihoods.

* Eq 1.1  the Gaussian negative log-density
* Eq 1.2  MSE: the unit-variance Gaussian NLL is 1/2 SSE + (n/2) log 2 pi
* Eq 1.3  the constant does not depend on the prediction, so the gradients agree
* Eq 1.4  BCE is the Bernoulli NLL
* Eq 1.5  BCE from logits: softplus(l) - l x = max(l, 0) - l x + log(1 + e^-|l|), finite for any l
* Eq 1.6  its gradient is sigmoid(l) - x (engine backward and finite differences, also at |l| = 1000)

Run it: ``python -m minivae.derivations.d01_losses_as_likelihoods`` (or ``minivae derive 01_losses_as_likelihoods``).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from scipy import special, stats

import minivae as mv
from .table import Table, main

TITLE = "Topic 1: reconstruction losses as negative log-likelihoods"

SEED = 1
EXACT_TOL = 1e-12
FD_STEP = 1e-6
FD_TOL = 1e-8  # central differences: truncation ~ h^2 = 1e-12, rounding ~ 1e-16 / h = 1e-10


# --------------------------------------------------------------------------- formulas
def gaussian_nll(x: np.ndarray, mean: np.ndarray, var: float | np.ndarray) -> np.ndarray:
    """Eq 1.1: -log N(x; mean, var) per element = 1/2 log(2 pi var) + (x - mean)^2 / (2 var)."""
    return 0.5 * np.log(2 * math.pi * var) + (x - mean) ** 2 / (2 * var)


def mse_constant(n: int) -> float:
    """Eq 1.2: sum of n unit-variance Gaussian NLLs minus half the squared error: (n/2) log 2 pi."""
    return 0.5 * n * math.log(2 * math.pi)


def bernoulli_nll(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Eq 1.4: -log Bernoulli(x; p) = -[x log p + (1 - x) log(1 - p)] per element (this is BCE)."""
    return -(x * np.log(p) + (1 - x) * np.log(1 - p))


def bce_with_logits(logit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Eq 1.5: the stable form max(l, 0) - l x + log(1 + exp(-|l|)); exp never sees a positive argument."""
    return np.maximum(logit, 0.0) - logit * x + np.log1p(np.exp(-np.abs(logit)))


def bce_with_logits_grad(logit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Eq 1.6: d/dl [softplus(l) - l x] = sigmoid(l) - x (expit is scipy's overflow-free sigmoid)."""
    return special.expit(logit) - x


# --------------------------------------------------------------------------- helpers
def _engine_grad(loss_fn, value: np.ndarray) -> np.ndarray:
    """Gradient of a scalar engine loss with respect to one float64 input."""
    t = mv.tensor(value, requires_grad=True, dtype="float64")
    loss_fn(t).backward()
    return np.asarray(t.grad)


def _central_difference(f, value: np.ndarray, h: float = FD_STEP) -> np.ndarray:
    """Elementwise central difference (f(v + h) - f(v - h)) / 2h of an elementwise function f."""
    return (f(value + h) - f(value - h)) / (2 * h)


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 1.1 - 1.6 and return the table."""
    rng = np.random.default_rng(SEED)
    t = Table(TITLE)

    # ---- Gaussian likelihood and MSE
    x = rng.standard_normal((4, 6))
    mean = x + 0.5 * rng.standard_normal((4, 6))
    t.equal("Eq 1.1 Gaussian NLL formula vs -scipy logpdf (var = 0.3)", gaussian_nll(x, mean, 0.3),
            -stats.norm.logpdf(x, mean, math.sqrt(0.3)), EXACT_TOL)

    sse = float(np.sum((x - mean) ** 2))
    t.equal("Eq 1.2 sum NLL(var=1) = SSE/2 + (n/2) log 2pi", float(gaussian_nll(x, mean, 1.0).sum()),
            0.5 * sse + mse_constant(x.size), 1e-10)

    # The engine's losses: gaussian_nll(sum) - mse(sum)/2 is the same constant for any prediction.
    for shift in (0.0, 1.0, -3.0):
        pred = mv.tensor(mean + shift, dtype="float64")
        nll = mv.losses.gaussian_nll(pred, x, reduction="sum").item()
        half_mse = 0.5 * mv.losses.mse(pred, x, reduction="sum").item()
        t.equal(f"Eq 1.2 engine gaussian_nll - mse/2 = (n/2) log 2pi (prediction shifted by {shift:g})",
                nll - half_mse, mse_constant(x.size), 1e-10)

    # Eq 1.3: equal gradients, so minimizing either gives the same decoder.
    grad_nll = _engine_grad(lambda m: mv.losses.gaussian_nll(m, x, reduction="sum"), mean)
    grad_mse = _engine_grad(lambda m: 0.5 * mv.losses.mse(m, x, reduction="sum"), mean)
    t.equal("Eq 1.3 engine d/dmean gaussian_nll = d/dmean mse/2", grad_nll, grad_mse, EXACT_TOL)
    t.equal("Eq 1.3 engine d/dmean mse/2 = mean - x", grad_mse, mean - x, EXACT_TOL)

    # ---- Bernoulli likelihood and BCE
    p = rng.uniform(0.02, 0.98, size=(3, 5))
    bits = (rng.uniform(size=(3, 5)) < 0.5).astype(np.float64)
    t.equal("Eq 1.4 Bernoulli NLL formula vs -scipy logpmf", bernoulli_nll(p, bits), -stats.bernoulli.logpmf(bits, p), EXACT_TOL)
    engine_bce = mv.losses.bce(mv.tensor(p, dtype="float64"), bits, reduction="none").numpy()
    t.equal("Eq 1.4 engine bce vs Bernoulli NLL", engine_bce, bernoulli_nll(p, bits), EXACT_TOL)

    # ---- from logits: moderate values, where the naive form is still accurate
    logits = rng.uniform(-8, 8, size=(3, 5))
    soft = rng.uniform(0, 1, size=(3, 5))  # soft targets (e.g. grey pixels) are allowed too
    for name, target in (("binary x", bits), ("x in [0,1]", soft)):
        t.equal(f"Eq 1.5 stable form = BCE(sigmoid(l), x), |l| <= 8, {name}", bce_with_logits(logits, target),
                bernoulli_nll(special.expit(logits), target), 1e-10)
    t.equal("Eq 1.5 stable form = softplus(l) - l x (np.logaddexp)", bce_with_logits(logits, soft),
            np.logaddexp(0.0, logits) - logits * soft, 1e-12)

    # ---- huge logits: the naive form breaks, the stable form stays exact
    huge = np.array([-1000.0, -50.0, 50.0, 1000.0, -1000.0, 1000.0])
    huge_x = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    exact = np.logaddexp(0.0, huge) - huge * huge_x  # = 1000, 50, 50, 1000, ~0, ~0
    t.equal("Eq 1.5 stable form at |l| up to 1000 vs softplus(l) - l x", bce_with_logits(huge, huge_x), exact, EXACT_TOL)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        naive = bernoulli_nll(1.0 / (1.0 + np.exp(-huge)), huge_x)
    t.holds("Eq 1.5 naive -log(sigmoid(l)) at l = -1000, x = 1 is not finite", not np.isfinite(naive[0]), naive[0], exact[0],
            note="sigmoid(-1000) underflows to 0 and log(0) = -inf: the reason for the stable form")
    engine_huge = mv.losses.bce_with_logits(mv.tensor(huge, dtype="float64"), huge_x, reduction="none").numpy()
    t.equal("Eq 1.5 engine bce_with_logits at |l| up to 1000", engine_huge, bce_with_logits(huge, huge_x), EXACT_TOL)

    # ---- the gradient
    engine_grad = _engine_grad(lambda l: mv.losses.bce_with_logits(l, soft, reduction="sum"), logits)
    t.equal("Eq 1.6 engine backward = sigmoid(l) - x", engine_grad, bce_with_logits_grad(logits, soft), EXACT_TOL)
    fd = _central_difference(lambda l: bce_with_logits(l, soft), logits)
    t.equal("Eq 1.6 central difference = sigmoid(l) - x", fd, bce_with_logits_grad(logits, soft), FD_TOL,
            note=f"step {FD_STEP:g}")
    engine_grad_huge = _engine_grad(lambda l: mv.losses.bce_with_logits(l, huge_x, reduction="sum"), huge)
    t.equal("Eq 1.6 engine backward at |l| up to 1000 = sigmoid(l) - x", engine_grad_huge,
            bce_with_logits_grad(huge, huge_x), EXACT_TOL)
    t.equal("Eq 1.6 gradient at l = -1000, x = 1 is exactly -1", engine_grad_huge[0], -1.0, EXACT_TOL,
            note="the loss grows like -l there, so its slope is -1")
    fd_huge = _central_difference(lambda l: bce_with_logits(l, huge_x), huge)
    t.equal("Eq 1.6 central difference at |l| up to 1000", fd_huge, bce_with_logits_grad(huge, huge_x), 1e-6,
            note="rounding error ~ 1e-16 * 1000 / step")

    if plot_dir is not None:
        _plot(plot_dir)
    return t


def _plot(plot_dir: str) -> None:
    """The stable BCE-with-logits and its gradient over a wide range of logits, for x = 0, 0.5, 1."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    l = np.linspace(-10, 10, 401)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.5))
    for target in (0.0, 0.5, 1.0):
        ax0.plot(l, bce_with_logits(l, target), label=f"x = {target:g}")
        ax1.plot(l, bce_with_logits_grad(l, target), label=f"x = {target:g}")
    ax0.set_title("max(l,0) - l x + log(1 + e^-|l|)")
    ax1.set_title("gradient sigmoid(l) - x")
    for ax in (ax0, ax1):
        ax.set_xlabel("logit l")
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "01_losses_as_likelihoods.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
