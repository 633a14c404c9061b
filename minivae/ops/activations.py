"""The activations with a provider kernel: relu, leaky_relu, sigmoid, tanh, softplus.

Each derivative is written with the OUTPUT y = f(x), so the backward pass needs only
y; the formulas themselves live once in ``providers/reference.py`` (``ACTIVATIONS``)
and ``kernels/formulas.py``. Derivations: derivations/02_backprop_dense.md, Eq. 2.2-2.5
(leaky_relu: derivations/15_vjp_rules.md, Eq. 15.27).
"""

from __future__ import annotations

from minivae.providers import provider_for
from minivae.tensor import Tensor


def _activation(name: str, x: Tensor, slope: float = 0.0) -> Tensor:
    """y = f(x) elementwise;  x̄ = g · f'(x), with f' computed from y (each activation below cites its row).
    Derivation: derivations/02_backprop_dense.md, Eq. 2.2-2.5."""
    provider = provider_for(x.data)
    y = provider.activation(name, x.data, slope)
    return Tensor.from_op(y, (x,), lambda g: (provider.activation_grad(name, g, y, slope),), name)


def relu(x: Tensor) -> Tensor:
    """y = max(x, 0).   x̄ = g · [y > 0] (the subgradient 0 at x = 0).
    Derivation: derivations/02_backprop_dense.md, Eq. 2.2."""
    return _activation("relu", x)


def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    """y = x if x > 0 else slope · x (slope ≥ 0).   x̄ = g · (1 if y > 0 else slope).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.27."""
    if slope < 0:
        raise ValueError(f"leaky_relu: slope must be >= 0, got {slope}")
    return _activation("leaky_relu", x, slope)


def sigmoid(x: Tensor) -> Tensor:
    """y = 1 / (1 + e⁻ˣ) (computed without overflow).   x̄ = g · y · (1 - y).
    Derivation: derivations/02_backprop_dense.md, Eq. 2.3."""
    return _activation("sigmoid", x)


def tanh(x: Tensor) -> Tensor:
    """y = tanh x.   x̄ = g · (1 - y²).
    Derivation: derivations/02_backprop_dense.md, Eq. 2.4."""
    return _activation("tanh", x)


def softplus(x: Tensor, beta: float = 1.0) -> Tensor:
    """y = ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|) (no overflow).

    x̄ = g · σ(x), and σ(x) = 1 - e^-y, so the derivative is also a function of y.
    With ``beta`` (> 0; a sharper or softer ReLU, as in PyTorch): y = softplus(β·x) / β,
    composed from the nodes above, so x̄ = g · σ(β·x) by the chain rule.
    Derivation: derivations/02_backprop_dense.md, Eq. 2.5.
    """
    if beta == 1.0:
        return _activation("softplus", x)
    if not (isinstance(beta, (int, float)) and beta > 0 and beta != float("inf")):
        raise ValueError(f"softplus: beta must be a positive finite number, got {beta!r}")
    return _activation("softplus", x * beta) / beta
