"""Topic 14: the straight-through estimator of the VQ-VAE, what its gradient is and what it is not.

    quantiser  q(z) = e_k(z),  k(z) = argmin_k ||z - e_k||^2;    loss  L(z) = f(q(z))

* Eq 14.1  dL/dz = 0 wherever k(z) does not change (finite differences, and the engine's
           nearest_code node gives z no gradient)
* Eq 14.2  the straight-through copy z + sg[q(z) - z] hands z the gradient grad f(q(z)), exactly
* Eq 14.3  it is not grad f(z): for f with an L-Lipschitz gradient the gap is at most L ||q(z) - z||,
           and for a quadratic f it is exactly A (q(z) - z)
* Eq 14.4  it is not the gradient of the dithered loss E_u[f(q(z + u))] either (1-D grid of step Delta):
           that one is the slope (f(c +- Delta) - f(c)) / (+-Delta) to the neighbouring code; bias a Delta / 2
* Eq 14.5  the codebook term ||sg[z] - e_k||^2 gives e_k the gradient 2 sum_i (e_k - z_i) over its vectors
* Eq 14.6  a step of size 1/(2 n_k) on it, and the EMA recursion, both land on the centroid (k-means)
* Eq 14.7  the encoder's total gradient: grad f(q(z)) + 2 beta (z - e_k)

Run it: ``python -m minivae.derivations.d14_straight_through`` (or ``minivae derive 14``);
``--plot DIR`` draws the 1-D staircase and the three gradients.
"""

from __future__ import annotations

import math
import sys

import numpy as np

import minivae as mv
from .table import Table, main
from minivae.models.vqvae import nearest_code, stop_gradient, straight_through

TITLE = "Topic 14: the straight-through estimator (VQ-VAE)"

SEED = 14
K, D, N = 6, 3, 40  # codes, code dimension, encoder vectors
BETA = 0.25
DELTA = 0.5  # step of the 1-D code grid of Eq 14.4
A_1D, T_1D = 3.0, 0.3  # f(v) = a/2 (v - t)^2 in 1-D
GAMMA = 0.9  # EMA decay of Eq 14.6
EMA_STEPS = 400


# --------------------------------------------------------------------------- formulas
def quadratic(a: np.ndarray, t: np.ndarray):
    """f(v) = 1/2 (v - t)^T A (v - t) summed over rows, and its gradient A (v - t) (A symmetric)."""
    return (lambda v: 0.5 * np.einsum("...i,ij,...j->...", v - t, a, v - t).sum(),
            lambda v: (v - t) @ a)


def st_minus_true_gradient(a: np.ndarray, z: np.ndarray, zq: np.ndarray) -> np.ndarray:
    """Eq 14.3: grad f(q(z)) - grad f(z) = A (q(z) - z) for the quadratic f."""
    return (zq - z) @ a


def grid_quantise(z: np.ndarray, delta: float) -> np.ndarray:
    """The nearest multiple of delta."""
    return delta * np.round(z / delta)


def smoothed_gradient(z: float, delta: float, f) -> float:
    """Eq 14.4: d/dz E_u[f(q(z + u))], u ~ U(-delta/2, delta/2): the slope to the code that z + u can reach."""
    c = grid_quantise(np.asarray(z), delta)
    side = 1.0 if z >= c else -1.0
    return float((f(c + side * delta) - f(c)) / (side * delta))


def smoothed_loss(z: float, delta: float, f) -> float:
    """E_u[f(q(z + u))], computed exactly: f of each reachable code times the length of u that reaches it."""
    low, high = z - delta / 2, z + delta / 2
    c = grid_quantise(np.asarray(z), delta)
    boundary = c + delta / 2 if z >= c else c - delta / 2  # the one cell edge inside [low, high]
    neighbour = c + delta if z >= c else c - delta
    inside = (high - boundary) if z >= c else (boundary - low)
    return float(((delta - inside) * f(c) + inside * f(neighbour)) / delta)


def codebook_gradient(z: np.ndarray, codebook: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Eq 14.5: d/de_k of sum_i ||z_i - e_k(i)||^2 (z constant) = 2 sum_{i: k(i) = k} (e_k - z_i)."""
    grad = np.zeros_like(codebook)
    for k in range(len(codebook)):
        members = z[index == k]
        grad[k] = 2.0 * (len(members) * codebook[k] - members.sum(axis=0))
    return grad


def ema_codebook(codebook: np.ndarray, counts: np.ndarray, sums: np.ndarray, gamma: float, steps: int) -> np.ndarray:
    """Eq 14.6: n <- g n + (1-g) c,  m <- g m + (1-g) s,  e = m / n, from n = 1, m = e, with fixed assignments."""
    n = np.ones(len(codebook))
    m = codebook.copy()
    for _ in range(steps):
        n = gamma * n + (1 - gamma) * counts
        m = gamma * m + (1 - gamma) * sums
    return m / n[:, None]


# --------------------------------------------------------------------------- helpers
def _setup(rng: np.random.Generator):
    codebook = rng.normal(size=(K, D))
    codebook[-1] = 10.0  # far from every vector: an unused code (for the last row of Eq 14.6)
    z = codebook[rng.integers(0, K - 1, size=N)] + 0.3 * rng.normal(size=(N, D))  # vectors near the other codes
    m = rng.normal(size=(D, D))
    a = m @ m.T + 0.5 * np.eye(D)  # symmetric positive definite
    t = rng.normal(size=D)
    return codebook, z, a, t


def _margin(z: np.ndarray, codebook: np.ndarray) -> float:
    """The smallest gap between the nearest and second-nearest squared distance (how far from a cell edge)."""
    d = ((z[:, None, :] - codebook[None]) ** 2).sum(-1)
    d.sort(axis=1)
    return float((d[:, 1] - d[:, 0]).min())


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    t = Table(TITLE)
    rng = np.random.default_rng(SEED)
    codebook, z0, a, target = _setup(rng)
    f, grad_f = quadratic(a, target)

    # Eq 14.1: the quantised loss is flat inside a cell.
    zt = mv.tensor(z0, requires_grad=True, dtype="float64")
    et = mv.tensor(codebook, requires_grad=True, dtype="float64")
    zq_t, index = nearest_code(zt, et)
    zq = zq_t.numpy()
    h = 1e-6
    assert _margin(z0, codebook) > 1e-3  # well inside the cells: a step of h changes no code
    fd = np.zeros_like(z0)
    for i in range(N):
        for j in range(D):
            zp, zm = z0.copy(), z0.copy()
            zp[i, j] += h
            zm[i, j] -= h
            qp = codebook[np.argmin(((zp[:, None] - codebook[None]) ** 2).sum(-1), axis=1)]
            qm = codebook[np.argmin(((zm[:, None] - codebook[None]) ** 2).sum(-1), axis=1)]
            fd[i, j] = (f(qp) - f(qm)) / (2 * h)
    t.equal("Eq 14.1 dL/dz by central differences = 0", fd, 0.0, 1e-12)
    a_t = mv.tensor(a, dtype="float64")  # f through the engine: 1/2 (zq - t) A (zq - t)
    diff = zq_t - mv.tensor(target, dtype="float64")
    (0.5 * ((diff @ a_t) * diff).sum()).backward()
    t.holds("Eq 14.1 engine: nearest_code gives z no gradient", zt.grad is None or not np.any(zt.grad),
            note="the node's VJP returns nothing for z: the true derivative a.e.")

    # Eq 14.2: through the straight-through copy, z receives grad f at q(z).
    zt = mv.tensor(z0, requires_grad=True, dtype="float64")
    et = mv.tensor(codebook, requires_grad=True, dtype="float64")
    zq_t, _ = nearest_code(zt, et)
    st = straight_through(zt, zq_t)
    diff = st - mv.tensor(target, dtype="float64")
    (0.5 * ((diff @ a_t) * diff).sum()).backward()
    g_st = zt.grad
    t.equal("Eq 14.2 engine grad_z f(z + sg[q(z) - z]) = grad f(q(z))", g_st, grad_f(zq), 1e-12)
    t.holds("Eq 14.2 the copy sends nothing to the codebook", et.grad is None or not np.any(et.grad))
    t.equal("Eq 14.2 its value is q(z), bit for bit", st.numpy(), zq, 0.0)

    # Eq 14.3: not grad f(z); the gap is A (q(z) - z), at most ||A||_2 ||q(z) - z|| per vector.
    gap = g_st - grad_f(z0)
    t.equal("Eq 14.3 grad f(q(z)) - grad f(z) = A (q(z) - z)", gap, st_minus_true_gradient(a, z0, zq), 1e-12)
    lipschitz = float(np.linalg.norm(a, 2))
    t.less_equal("Eq 14.3 ||gap|| <= L ||q(z) - z|| per vector", np.linalg.norm(gap, axis=1),
                 lipschitz * np.linalg.norm(zq - z0, axis=1), 1e-12)
    t.holds("Eq 14.3 and the gap is not small here", float(np.abs(gap).max()) > 0.1, float(np.abs(gap).max()), 0.1)
    t.equal("Eq 14.3 no gap when z sits on its code", st_minus_true_gradient(a, codebook, codebook), 0.0, 0.0)

    # Eq 14.4: the dithered loss has another gradient; ST misses it by a Delta / 2 (1-D quadratic).
    f1 = lambda v: 0.5 * A_1D * (v - T_1D) ** 2  # noqa: E731
    points = np.array([-0.61, -0.2, 0.05, 0.4, 0.93])
    for z in points:
        c = float(grid_quantise(np.asarray(z), DELTA))
        numeric = (smoothed_loss(z + 1e-6, DELTA, f1) - smoothed_loss(z - 1e-6, DELTA, f1)) / 2e-6
        t.equal(f"Eq 14.4 z={z:+.2f}: d/dz E_u f(q(z+u)) (differences) = slope to the neighbour",
                numeric, smoothed_gradient(z, DELTA, f1), 1e-6)
        st_grad = A_1D * (c - T_1D)
        side = 1.0 if z >= c else -1.0
        t.equal(f"Eq 14.4 z={z:+.2f}: smoothed - straight-through = sign * a Delta / 2",
                smoothed_gradient(z, DELTA, f1) - st_grad, side * A_1D * DELTA / 2, 1e-9)
    # The dither is unbiased for the code itself: E_u[q(z + u)] = z on a uniform grid.
    u = np.linspace(-DELTA / 2, DELTA / 2, 200_001)[1:-1]
    t.equal("Eq 14.4 E_u[q(z + u)] = z (uniform dither, z = 0.4)", grid_quantise(0.4 + u, DELTA).mean(), 0.4, 1e-5)

    # Eq 14.5: the codebook term's gradient, from the engine.
    zt = mv.tensor(z0, requires_grad=True, dtype="float64")
    et = mv.tensor(codebook, requires_grad=True, dtype="float64")
    zq_t, index = nearest_code(zt, et)
    term = stop_gradient(zt) - zq_t
    (term * term).sum().backward()
    t.equal("Eq 14.5 engine d/de_k ||sg[z] - e_k||^2 = 2 sum (e_k - z_i)", et.grad,
            codebook_gradient(z0, codebook, index), 1e-12)
    t.holds("Eq 14.5 and z gets nothing from it (sg)", zt.grad is None or not np.any(zt.grad))

    # Eq 14.6: a step of 1/(2 n_k) lands on the centroid; the EMA converges to it.
    counts = np.bincount(index, minlength=K).astype(float)
    sums = np.stack([z0[index == k].sum(axis=0) for k in range(K)])
    used = counts > 0
    centroid = sums[used] / counts[used][:, None]
    stepped = codebook[used] - codebook_gradient(z0, codebook, index)[used] / (2 * counts[used][:, None])
    t.equal("Eq 14.6 e_k - grad / (2 n_k) = centroid of its vectors", stepped, centroid, 1e-12)
    ema = ema_codebook(codebook, counts, sums, GAMMA, EMA_STEPS)
    t.equal(f"Eq 14.6 EMA (gamma={GAMMA}, {EMA_STEPS} steps) -> centroid", ema[used], centroid, 1e-8,
            note="error shrinks like gamma^T")
    t.holds("Eq 14.6 (code 6 is unused)", not used[-1])
    t.equal("Eq 14.6 EMA leaves an unused code where it was", ema[~used], codebook[~used], 1e-12)

    # Eq 14.7: the encoder's total gradient in the VQ-VAE loss.
    zt = mv.tensor(z0, requires_grad=True, dtype="float64")
    et = mv.tensor(codebook, requires_grad=True, dtype="float64")
    zq_t, _ = nearest_code(zt, et)
    diff = straight_through(zt, zq_t) - mv.tensor(target, dtype="float64")
    commit = zt - stop_gradient(zq_t)
    (0.5 * ((diff @ a_t) * diff).sum() + BETA * (commit * commit).sum()).backward()
    t.equal("Eq 14.7 engine grad_z = grad f(q(z)) + 2 beta (z - e_k)", zt.grad,
            grad_f(zq) + 2 * BETA * (z0 - zq), 1e-12)

    if plot_dir is not None:
        _plot(plot_dir, f1)
    return t


def _plot(plot_dir: str, f1) -> None:
    """1-D: f(z), the staircase f(q(z)) and its dithered average; below, the three gradients."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.linspace(-1.2, 1.2, 1201)
    q = grid_quantise(z, DELTA)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    top.plot(z, f1(z), "0.6", label="f(z), unquantised")
    top.plot(z, f1(q), "C0", label="f(q(z)): flat in every cell")
    top.plot(z, [smoothed_loss(v, DELTA, f1) for v in z], "C2", label="E_u f(q(z + u)), dithered")
    top.legend(fontsize=8)
    top.set_title(f"codes every {DELTA}; f(v) = {A_1D}/2 (v - {T_1D})^2")
    bottom.plot(z, A_1D * (q - T_1D), "C3", label="straight-through: f'(q(z))")
    bottom.plot(z, [smoothed_gradient(v, DELTA, f1) for v in z], "C2", label="gradient of the dithered loss")
    bottom.plot(z, A_1D * (z - T_1D), "0.6", label="f'(z)")
    bottom.axhline(0, color="C0", lw=1, label="true gradient of f(q(z)): 0")
    bottom.set_xlabel("z")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "14_straight_through.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
