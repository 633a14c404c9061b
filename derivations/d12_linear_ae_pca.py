"""Topic 12: a linear autoencoder learns the principal subspace (Eckart-Young).

The exact statement: among all matrices of rank at most k, the truncated SVD of
X is the closest in Frobenius norm, and its squared error is the sum of the
discarded squared singular values. A linear autoencoder x -> x E D (encoder E
of shape (d, k), decoder D of shape (k, d), no biases, centred data) can only
produce rank-k reconstructions, so its loss is at least that sum; at the global
minimum the reconstruction is the projection onto the top-k right singular
vectors, and the decoder's directions span that subspace.

Here the autoencoder is trained with minivae's own autograd (float64, full-batch
gradient descent) and compared with the SVD through principal angles.

Run it: ``python -m minivae.derivations.d12_linear_ae_pca`` (or ``minivae derive 12_linear_ae_pca``).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.linalg import subspace_angles

from .table import Table, main

TITLE = "12. Linear autoencoder = PCA subspace (Eckart-Young), trained with minivae"

SEED = 12
N, D, K = 400, 6, 2
SCALES = (3.0, 2.0, 0.8, 0.5, 0.3, 0.2)   # well-separated spectrum: sigma_k >> sigma_k+1 makes the optimum unique
STEPS, LR = 6000, 0.05


# --------------------------------------------------------------------------
# Data and formulas under test
# --------------------------------------------------------------------------
def make_data(seed: int = SEED) -> np.ndarray:
    """Centred data with a known spread along random orthogonal axes."""
    rng = np.random.default_rng(seed)
    axes, _ = np.linalg.qr(rng.normal(size=(D, D)))
    x = rng.normal(size=(N, D)) * np.array(SCALES) @ axes.T
    return x - x.mean(axis=0)


def eckart_young_error(singular_values: np.ndarray, k: int) -> float:
    """min over rank-k M of ||X - M||_F^2 = sum of the squared singular values after the k-th (Eq. 12.2)."""
    return float(np.sum(singular_values[k:] ** 2))


def projection_error(x: np.ndarray, basis: np.ndarray) -> float:
    """||X - X B B^T||_F^2 for an orthonormal basis B of shape (d, k)."""
    return float(np.sum((x - x @ basis @ basis.T) ** 2))


def ae_gradients(x: np.ndarray, enc: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of L = ||X - X E D||_F^2 / n by hand (Eq. 12.4), with residual R = X - X E D:

    dL/dD = -2/n (X E)^T R,    dL/dE = -2/n X^T R D^T.
    """
    n = x.shape[0]
    resid = x - x @ enc @ dec
    return -2.0 / n * x.T @ resid @ dec.T, -2.0 / n * (x @ enc).T @ resid


# --------------------------------------------------------------------------
# The autoencoder, written with minivae
# --------------------------------------------------------------------------
def build_autoencoder(seed: int = SEED):
    """Encoder Linear(d, k) and decoder Linear(k, d), no biases (the data is centred), float64."""
    import minivae as mv

    rng = mv.random.Generator(seed)
    enc = mv.nn.Linear(D, K, bias=False, rng=rng, init="xavier", dtype="float64")
    dec = mv.nn.Linear(K, D, bias=False, rng=rng, init="xavier", dtype="float64")
    return enc, dec


def ae_loss(x, enc, dec):
    """L = ||X - X E D||_F^2 / n: the squared error per example, summed over features."""
    import minivae as mv

    xt = mv.tensor(x, dtype="float64")
    return mv.losses.mse(dec(enc(xt)), xt, reduction="sum") * (1.0 / x.shape[0])


def train_autoencoder(x: np.ndarray, steps: int = STEPS, lr: float = LR):
    """Full-batch gradient descent: deterministic, and it converges to the global minimum here
    (the linear AE has saddles but no spurious local minima)."""
    import minivae as mv

    enc, dec = build_autoencoder()
    opt = mv.optim.SGD(enc.parameters() + dec.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ae_loss(x, enc, dec)
        loss.backward()
        opt.step()
        history.append(loss.item())
    return enc, dec, np.array(history)


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------
def run(plot_dir: str | None = None) -> Table:
    table = Table(TITLE)
    x = make_data()
    _, sing, vt = np.linalg.svd(x, full_matrices=False)
    top = vt[:K].T                        # (d, k): the top-k principal directions
    best = eckart_young_error(sing, K)

    # Eq 12.1 / 12.2: projecting on the top-k directions is the truncated SVD, with error = discarded sigma^2.
    u, _, _ = np.linalg.svd(x, full_matrices=False)
    truncated = u[:, :K] * sing[:K] @ vt[:K]
    table.equal("Eq 12.1 X V_k V_k^T = U_k S_k V_k^T", x @ top @ top.T, truncated, tol=1e-12)
    table.equal("Eq 12.2 ||X - X V_k V_k^T||^2 = sum_{i>k} sigma_i^2", projection_error(x, top), best, tol=1e-10,
                relative=True)

    # Eq 12.3: no other rank-k reconstruction does better (random subspaces, random linear AEs).
    rng = np.random.default_rng(SEED + 1)
    random_bases = [np.linalg.qr(rng.normal(size=(D, K)))[0] for _ in range(200)]
    table.less_equal("Eq 12.3 optimum <= min over 200 random rank-k projections", best,
                     min(projection_error(x, b) for b in random_bases))
    random_aes = [(rng.normal(size=(D, K)), rng.normal(size=(K, D))) for _ in range(200)]
    table.less_equal("Eq 12.3 optimum <= min over 200 random linear AEs (E, D)", best,
                     min(float(np.sum((x - x @ e @ dd) ** 2)) for e, dd in random_aes))

    # Eq 12.4: minivae's backward pass against the gradients derived by hand.
    enc, dec = build_autoencoder(seed=SEED + 2)
    loss = ae_loss(x, enc, dec)
    loss.backward()
    g_enc, g_dec = ae_gradients(x, enc.weight.numpy(), dec.weight.numpy())
    table.equal("Eq 12.4 dL/dE: minivae = -2/n X^T R D^T", enc.weight.grad, g_enc, tol=1e-10, relative=True)
    table.equal("Eq 12.4 dL/dD: minivae = -2/n (XE)^T R", dec.weight.grad, g_dec, tol=1e-10, relative=True)

    # Eq 12.5: training reaches the Eckart-Young error, and the decoder spans the top-k subspace.
    enc, dec, history = train_autoencoder(x)
    e, dd = enc.weight.numpy(), dec.weight.numpy()
    final = float(np.sum((x - x @ e @ dd) ** 2))
    table.equal("Eq 12.5 trained AE error = sum_{i>k} sigma_i^2", final, best, tol=1e-10, relative=True,
                note=f"{STEPS} full-batch gradient-descent steps, lr {LR}, float64")
    angles = subspace_angles(dd.T, top)
    table.equal("Eq 12.6 principal angles(decoder, V_k) = 0", angles, 0.0, tol=1e-6,
                note="scipy.linalg.subspace_angles, radians; the decoder's directions are the rows of D")
    table.equal("Eq 12.6 E D = V_k V_k^T (orthogonal projector)", e @ dd, top @ top.T, tol=1e-6)
    # The AE finds the subspace, not the axes: D's rows need not be orthonormal nor equal to v_1, v_2.
    off = float(np.abs(dd @ dd.T - np.eye(K)).max())
    table.holds("Eq 12.7 decoder rows are not the principal axes themselves", off > 1e-2, off, 0.0,
                note="max |D D^T - I|: any invertible A gives the same loss with (E A, A^-1 D)")
    # And a subspace check that can fail: the top-(k) span is not reached by the bottom directions.
    table.holds("Eq 12.6 contrast: angles(V_bottom, V_k) = pi/2", bool(np.allclose(subspace_angles(vt[K:2 * K].T, top),
                np.pi / 2)), float(subspace_angles(vt[K:2 * K].T, top).min()), np.pi / 2)

    if plot_dir is not None:
        _plot(plot_dir, history, best / N)
    return table


def _plot(plot_dir: str, history: np.ndarray, optimum: float) -> None:
    """Training loss above the Eckart-Young floor, on a log scale."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(history - optimum + 1e-16)
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel("loss - sum_{i>k} sigma_i^2 / n")
    ax.set_title("A linear AE descends to the PCA (Eckart-Young) error")
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "12_linear_ae_pca.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
