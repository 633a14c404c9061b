"""Lesson: PCA is a linear autoencoder.

An autoencoder with no nonlinearity is two matrices: an encoder E (d x k) and a
decoder D (k x d). For centred data X (n x d) it reconstructs X̂ = X E D and is
trained to minimise the squared error per example,

    L(E, D) = ||X - X E D||²_F / n.

Whatever E and D are, X E D has rank at most k. The Eckart-Young theorem says
the best rank-k approximation of X in Frobenius norm is the truncated SVD
X = U S Vᵀ  ->  U_k S_k V_kᵀ = X V_k V_kᵀ, with squared error Σ_{i>k} σ_i².
So the linear AE can never beat

    L* = Σ_{i>k} σ_i² / n,

and at its global minimum (the loss has saddles but no other local minima) it
reaches L* with X E D = X V_k V_kᵀ: the decoder's k directions (the rows of D,
because minivae computes z @ D) span the same subspace as the top-k principal
directions V_k.

Two things to notice in the output:

1. The principal angles between span(rows of D) and span(V_k) are ~0 degrees,
   and the training error equals L* to several digits.
2. The individual decoder directions are NOT the principal axes: any
   invertible k x k matrix A gives the same loss with (E A, A⁻¹ D). An
   autoencoder learns the subspace, PCA additionally picks an ordered
   orthonormal basis of it (by variance). The "axis angle" column shows this.

The data are the 8x8 digits (64 pixels), centred with the training mean; the
encoder and decoder have no bias because centring already removed the mean
(an AE with biases learns it, at the cost of two more parameter vectors).

Run:  python examples/pca_linear_ae.py
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import numpy as np
from scipy.linalg import subspace_angles

import minivae as mv
from minivae.training.data import load_digits

DTYPE = "float32"  # the engine's default; float64 gives the same angles but runs several times slower here


def principal_directions(x_centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(singular values σ, all principal directions as columns V) of centred data."""
    _, sing, vt = np.linalg.svd(x_centred, full_matrices=False)
    return sing, vt.T


def eckart_young_error(sing: np.ndarray, k: int, n: int) -> float:
    """The smallest possible per-example squared error of any rank-k reconstruction: Σ_{i>k} σ_i² / n."""
    return float(np.sum(sing[k:] ** 2) / n)


def projection_error(x_centred: np.ndarray, basis: np.ndarray) -> float:
    """Per-example squared error of projecting onto an orthonormal basis (d, k): ||X - X B Bᵀ||² / n."""
    resid = x_centred - x_centred @ basis @ basis.T
    return float(np.sum(resid**2) / len(x_centred))


class LinearAutoencoder(mv.nn.Module):
    """x -> z = x E -> x̂ = z D. No activation, no bias: exactly the model PCA solves."""

    def __init__(self, dim: int, k: int, rng: mv.random.Generator, dtype: str = DTYPE) -> None:
        super().__init__()
        # Xavier init: there is no ReLU here, so the variance-preserving choice is the symmetric one.
        self.encoder = mv.nn.Linear(dim, k, rng=rng, init="xavier", bias=False, dtype=dtype)
        self.decoder = mv.nn.Linear(k, dim, rng=rng, init="xavier", bias=False, dtype=dtype)

    def forward(self, x: mv.Tensor) -> mv.Tensor:
        return self.decoder(self.encoder(x))


def reconstruction_loss(model: LinearAutoencoder, x: mv.Tensor) -> mv.Tensor:
    """||X - X̂||²_F / n: squared error summed over pixels, averaged over examples."""
    return mv.losses.mse(model(x), x, reduction="sum") * (1.0 / x.shape[0])


def train_linear_ae(
    x_centred: np.ndarray, k: int, steps: int, lr: float, seed: int
) -> tuple[LinearAutoencoder, list[float]]:
    """Full-batch Adam on the reconstruction loss; returns the model and the loss after every step.

    Full batch keeps the only randomness in the initial weights (seeded). Adam
    rather than plain gradient descent because the gap between the k-th and
    (k+1)-th eigenvalue of the digits' covariance is small (about 1.2x for
    k = 2 and 5), and plain gradient descent closes the last few degrees of
    angle slowly, at a rate set by that gap.
    """
    model = LinearAutoencoder(x_centred.shape[1], k, rng=mv.random.Generator(seed))
    opt = mv.optim.Adam(model.parameters(), lr=lr)
    x = mv.tensor(x_centred, dtype=DTYPE)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = reconstruction_loss(model, x)
        loss.backward()
        opt.step()
        history.append(loss.item())
    return model, history


def axis_angles_deg(decoder_rows: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Angle between decoder direction i and principal axis i (sign ignored), in degrees."""
    rows = decoder_rows / np.linalg.norm(decoder_rows, axis=1, keepdims=True)
    cosines = np.abs(np.sum(rows * top.T, axis=1))
    return np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0)))


def main(seed: int = 0, ks: Sequence[int] = (2, 3, 4, 5), steps: int = 1500, lr: float = 0.01) -> dict[str, Any]:
    """Train one linear AE per k and compare it with PCA. Returns the numbers per k."""
    train, test = load_digits("train", seed=0), load_digits("test", seed=0)
    # Statistics (mean, SVD, errors) in float64; the model trains in float32, which is
    # accurate enough here: its angles come out at about 1e-3 degrees.
    mean = train.x.astype(np.float64).mean(axis=0)
    x_train = train.x.astype(np.float64) - mean
    x_test = test.x.astype(np.float64) - mean  # the TRAINING mean: test data is never looked at while fitting
    sing, v = principal_directions(x_train)

    results: dict[str, Any] = {"seed": seed, "steps": steps, "lr": lr, "per_k": {}}
    for k in ks:
        model, history = train_linear_ae(x_train, k, steps=steps, lr=lr, seed=seed + k)
        enc = model.encoder.weight.numpy()   # (d, k)
        dec = model.decoder.weight.numpy()   # (k, d): its rows are the decoder's directions
        top = v[:, :k]
        angles = np.degrees(subspace_angles(dec.T, top))
        # Errors recomputed in float64 from the trained weights, so they compare cleanly with L*.
        ae_train = float(np.sum((x_train - x_train @ enc @ dec) ** 2) / len(x_train))
        ae_test = float(np.sum((x_test - x_test @ enc @ dec) ** 2) / len(x_test))
        optimum = eckart_young_error(sing, k, len(x_train))
        results["per_k"][k] = {
            "max_angle_deg": float(angles.max()),
            "angles_deg": [float(a) for a in sorted(angles)],
            "ae_train_error": ae_train,
            "eckart_young_error": optimum,
            "relative_excess": (ae_train - optimum) / optimum,
            "initial_error": history[0],
            "ae_test_error": ae_test,
            "pca_test_error": projection_error(x_test, top),
            "axis_angles_deg": [float(a) for a in axis_angles_deg(dec, top)],
            # On the data, X E D should equal the PCA reconstruction X V_k V_kᵀ. (E D itself need not be
            # the projector V_k V_kᵀ: some border pixels are 0 in every image, so E's weights on them
            # never get a gradient and stay at their random initial values.)
            "reconstruction_max_abs_diff": float(np.abs(x_train @ enc @ dec - x_train @ top @ top.T).max()),
        }
    return results


def _print(results: dict[str, Any]) -> None:
    print(f"Linear AE vs PCA on centred digits (Adam, full batch, {results['steps']} steps, lr {results['lr']})")
    print("errors are squared error per image (sum over 64 pixels); angles in degrees")
    header = f"{'k':>2} {'max angle':>10} {'AE train':>10} {'Eckart-Young':>13} {'excess':>9} {'AE test':>9} {'PCA test':>9}  axis angles (AE dir i vs PC i)"
    print(header)
    for k, r in results["per_k"].items():
        axes = ", ".join(f"{a:.0f}" for a in r["axis_angles_deg"])
        print(
            f"{k:>2} {r['max_angle_deg']:>10.4f} {r['ae_train_error']:>10.5f} {r['eckart_young_error']:>13.5f} "
            f"{r['relative_excess']:>9.1e} {r['ae_test_error']:>9.5f} {r['pca_test_error']:>9.5f}  [{axes}]"
        )
    print("-> the decoder spans the principal subspace (angles ~0) without being the principal axes themselves.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    _print(main(seed=args.seed, steps=args.steps, lr=args.lr))
