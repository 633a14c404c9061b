"""Topic 2: backpropagation through a dense layer and its activations, by hand.

Reverse mode never forms a Jacobian. Each op receives the gradient G of the loss with
respect to its output and returns the gradient with respect to its inputs: a
vector-Jacobian product (VJP). This module writes those VJPs in NumPy and compares them
with the engine's backward and with central finite differences.

* Eq 2.1  Y = X W + b:   dX = G W^T,  dW = X^T G,  db = column sums of G
* Eq 2.2  relu:     dx = g * [x > 0]
* Eq 2.3  sigmoid:  dx = g * s (1 - s),       s = sigmoid(x)
* Eq 2.4  tanh:     dx = g * (1 - tanh(x)^2)
* Eq 2.5  softplus: dx = g * sigmoid(x)
* Eq 2.6  chaining: a two-layer network X -> tanh(X W1 + b1) -> (.) W2 + b2, backward by hand

Run it: ``python -m minivae.derivations.d02_backprop_dense`` (or ``minivae derive 02_backprop_dense``).
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
from scipy import special

import minivae as mv
from .table import Table, central_difference, main

TITLE = "Topic 2: backprop through a dense layer and activations (VJPs by hand)"

SEED = 2
EXACT_TOL = 1e-12  # hand VJP vs engine: the same arithmetic, up to summation order
FD_STEP = 1e-6
FD_TOL = 1e-8  # central differences: truncation ~ h^2, rounding ~ 1e-16 / h


# --------------------------------------------------------------------------- forward, in NumPy
def linear_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Y = X W + b, X of shape (batch, in), W (in, out), b (out,) broadcast over the batch."""
    return X @ W + b


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": special.expit,
    "tanh": np.tanh,
    "softplus": lambda x: np.logaddexp(0.0, x),
}


# --------------------------------------------------------------------------- VJPs, by hand
def linear_vjp(X: np.ndarray, W: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq 2.1: given G = dL/dY for Y = X W + b, return (dL/dX, dL/dW, dL/db)."""
    dX = G @ W.T
    dW = X.T @ G
    db = G.sum(axis=0)  # b was broadcast over the batch, so its gradient sums over the batch
    return dX, dW, db


def relu_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq 2.2: relu'(x) = 1 for x > 0 and 0 for x < 0 (the engine takes 0 at x = 0)."""
    return g * (x > 0)


def sigmoid_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq 2.3: sigmoid' = s (1 - s), computed from the output s."""
    s = special.expit(x)
    return g * s * (1 - s)


def tanh_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq 2.4: tanh' = 1 - tanh^2, again from the output."""
    return g * (1 - np.tanh(x) ** 2)


def softplus_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq 2.5: d/dx log(1 + e^x) = sigmoid(x)."""
    return g * special.expit(x)


def two_layer_vjp(X, W1, b1, W2, b2, G) -> dict[str, np.ndarray]:
    """Eq 2.6: backward through Y = tanh(X W1 + b1) W2 + b2, one VJP per op, last op first."""
    A = linear_forward(X, W1, b1)
    H = np.tanh(A)
    dH, dW2, db2 = linear_vjp(H, W2, G)
    dA = tanh_vjp(A, dH)
    dX, dW1, db1 = linear_vjp(X, W1, dA)
    return {"X": dX, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# --------------------------------------------------------------------------- references
def _leaf(a: np.ndarray) -> mv.Tensor:
    return mv.tensor(a, requires_grad=True, dtype="float64")


ENGINE_ACTIVATIONS: dict[str, Callable[[mv.Tensor], mv.Tensor]] = {
    "relu": mv.relu,
    "sigmoid": mv.sigmoid,
    "tanh": mv.tanh,
    "softplus": mv.softplus,
}

HAND_VJPS = {"relu": "relu_vjp", "sigmoid": "sigmoid_vjp", "tanh": "tanh_vjp", "softplus": "softplus_vjp"}


# --------------------------------------------------------------------------- the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 2.1 - 2.6 and return the table."""
    rng = np.random.default_rng(SEED)
    t = Table(TITLE)
    batch, n_in, n_out = 4, 3, 5
    X = rng.standard_normal((batch, n_in))
    W = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out)
    # The loss L = sum(G * Y) has dL/dY = G: a random G stands for "whatever comes from above".
    G = rng.standard_normal((batch, n_out))

    # ---- Eq 2.1 against the engine
    hand = dict(zip(("X", "W", "b"), linear_vjp(X, W, G)))
    Xt, Wt, bt = _leaf(X), _leaf(W), _leaf(b)
    ((Xt @ Wt + bt) * G).sum().backward()
    for name, leaf in (("X", Xt), ("W", Wt), ("b", bt)):
        t.equal(f"Eq 2.1 d{name} by hand vs engine backward", hand[name], np.asarray(leaf.grad), EXACT_TOL)

    # ... and against finite differences, perturbing one argument at a time.
    fd = {
        "X": central_difference(lambda v: float(np.sum(G * linear_forward(v, W, b))), X, FD_STEP),
        "W": central_difference(lambda v: float(np.sum(G * linear_forward(X, v, b))), W, FD_STEP),
        "b": central_difference(lambda v: float(np.sum(G * linear_forward(X, W, v))), b, FD_STEP),
    }
    for name in ("X", "W", "b"):
        t.equal(f"Eq 2.1 d{name} by hand vs central differences", hand[name], fd[name], FD_TOL,
                note=f"step {FD_STEP:g}")

    # ... and the engine's own Linear module (x @ weight + bias) gives the same weight gradients.
    layer = mv.nn.Linear(n_in, n_out, rng=mv.random.Generator(SEED), dtype="float64")
    Wl = layer.weight.numpy().copy()
    (layer(mv.tensor(X, dtype="float64")) * G).sum().backward()
    _, dW_hand, db_hand = linear_vjp(X, Wl, G)
    t.equal("Eq 2.1 dW by hand vs nn.Linear weight.grad", dW_hand, np.asarray(layer.weight.grad), EXACT_TOL)
    t.equal("Eq 2.1 db by hand vs nn.Linear bias.grad", db_hand, np.asarray(layer.bias.grad), EXACT_TOL)

    # ---- Eq 2.2 - 2.5: elementwise activations
    x = rng.standard_normal((batch, n_out)) * 2.0
    x = np.where(np.abs(x) < 0.05, 0.05 * np.sign(x) + x, x)  # keep finite differences away from relu's kink
    g = rng.standard_normal((batch, n_out))
    for number, name in zip(("2.2", "2.3", "2.4", "2.5"), ("relu", "sigmoid", "tanh", "softplus")):
        hand_vjp = globals()[HAND_VJPS[name]](x, g)  # looked up at run time so a test can swap in a wrong one
        xt = _leaf(x)
        (ENGINE_ACTIVATIONS[name](xt) * g).sum().backward()
        t.equal(f"Eq {number} {name} VJP by hand vs engine backward", hand_vjp, np.asarray(xt.grad), EXACT_TOL)
        f = ACTIVATIONS[name]
        fd_vjp = central_difference(lambda v: float(np.sum(g * f(v))), x, FD_STEP)
        t.equal(f"Eq {number} {name} VJP by hand vs central differences", hand_vjp, fd_vjp, FD_TOL,
                note=f"step {FD_STEP:g}")

    # ---- Eq 2.6: chaining VJPs through a small two-layer network
    W1, b1 = rng.standard_normal((n_in, 6)), rng.standard_normal(6)
    W2, b2 = rng.standard_normal((6, 2)), rng.standard_normal(2)
    G2 = rng.standard_normal((batch, 2))
    hand2 = two_layer_vjp(X, W1, b1, W2, b2, G2)
    leaves = {"X": _leaf(X), "W1": _leaf(W1), "b1": _leaf(b1), "W2": _leaf(W2), "b2": _leaf(b2)}
    out = mv.tanh(leaves["X"] @ leaves["W1"] + leaves["b1"]) @ leaves["W2"] + leaves["b2"]
    (out * G2).sum().backward()
    for name in ("X", "W1", "b1", "W2", "b2"):
        t.equal(f"Eq 2.6 two-layer d{name} by hand vs engine backward", hand2[name], np.asarray(leaves[name].grad), EXACT_TOL)

    def net_loss(W1_: np.ndarray) -> float:
        return float(np.sum(G2 * linear_forward(np.tanh(linear_forward(X, W1_, b1)), W2, b2)))

    t.equal("Eq 2.6 two-layer dW1 by hand vs central differences", hand2["W1"], central_difference(net_loss, W1, FD_STEP), FD_TOL,
            note=f"step {FD_STEP:g}")

    if plot_dir is not None:
        _plot(plot_dir)
    return t


def _plot(plot_dir: str) -> None:
    """Each activation next to its derivative (the factor its VJP multiplies g by)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.linspace(-4, 4, 401)
    ones = np.ones_like(x)
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    for ax, name in zip(axes, ("relu", "sigmoid", "tanh", "softplus")):
        ax.plot(x, ACTIVATIONS[name](x), label="f(x)")
        ax.plot(x, globals()[HAND_VJPS[name]](x, ones), "--", label="f'(x)")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    fig.savefig(os.path.join(plot_dir, "02_backprop_dense.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
