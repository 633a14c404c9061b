"""Elementwise functions y = f(x) with their derivatives, computed with the backend's arrays.

Each derivative is written with whichever of x and y makes it cheapest and free of
overflow. Derivations: derivations/15_vjp_rules.md, Eq. 15.11-15.25. (The activations
that a provider computes, relu to softplus, are in :mod:`minivae.ops.activations`.)
"""

from __future__ import annotations

from minivae.ops.operands import array_module
from minivae.providers import backend
from minivae.providers.reference import exp_neg_abs, log1p_of, stable_sigmoid
from minivae.tensor import Tensor


def exp(x: Tensor) -> Tensor:
    """y = eˣ.   x̄ = g · eˣ = g · y.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.11.
    """
    y = array_module(x).exp(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g * y,), "exp")


def expm1(x: Tensor) -> Tensor:
    """y = eˣ - 1, accurate for tiny x.   x̄ = g · eˣ = g · (y + 1).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.17.
    """
    y = array_module(x).expm1(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g * (y + 1),), "expm1")


def log(x: Tensor) -> Tensor:
    """y = ln x.   x̄ = g / x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.12.
    """
    with backend.quiet_errors(x.data, invalid=False):  # log 0 = -inf is quiet; log of a negative warns
        y = array_module(x).log(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / x.data,), "log")


def log1p(x: Tensor) -> Tensor:
    """y = ln(1 + x), accurate for tiny x.   x̄ = g / (1 + x).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.17.
    """
    xp = array_module(x)
    with backend.quiet_errors(x.data, invalid=False):  # log1p(-1) = -inf is quiet; below -1 warns
        y = xp.log1p(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / (1 + x.data),), "log1p")


def sqrt(x: Tensor) -> Tensor:
    """y = √x.   x̄ = g / (2√x) = g / (2y).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.13.
    """
    y = array_module(x).sqrt(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / (2 * y),), "sqrt")


def square(x: Tensor) -> Tensor:
    """y = x².   x̄ = g · 2x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.18.
    """
    return Tensor.from_op(x.data * x.data, (x,), lambda g: (g * (2 * x.data),), "square")


def abs(x: Tensor) -> Tensor:  # noqa: A001 - public name
    """y = |x|.   x̄ = g · sign(x) (the subgradient 0 is used at x = 0).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.14.
    """
    xp = array_module(x)
    return Tensor.from_op(xp.abs(x.data), (x,), lambda g: (g * xp.sign(x.data),), "abs")


def sign(x: Tensor) -> Tensor:
    """y = sign(x) ∈ {-1, 0, 1}.   x̄ = 0 (piecewise constant; 0 also at the jump, as in PyTorch).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.15.
    """
    xp = array_module(x)
    return Tensor.from_op(xp.sign(x.data), (x,), lambda g: (xp.zeros_like(g),), "sign")


def sin(x: Tensor) -> Tensor:
    """y = sin x.   x̄ = g · cos x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.16.
    """
    xp = array_module(x)
    return Tensor.from_op(xp.sin(x.data), (x,), lambda g: (g * xp.cos(x.data),), "sin")


def cos(x: Tensor) -> Tensor:
    """y = cos x.   x̄ = -g · sin x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.16.
    """
    xp = array_module(x)
    return Tensor.from_op(xp.cos(x.data), (x,), lambda g: (-g * xp.sin(x.data),), "cos")


def _erf(xp, v):
    if xp is backend.numpy:
        from scipy.special import erf
    else:  # CuPy
        from cupyx.scipy.special import erf
    return erf(v)


def erf(x: Tensor) -> Tensor:
    """y = erf(x) = (2/√π) ∫₀ˣ e^(-t²) dt.   x̄ = g · (2/√π) e^(-x²).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.19.
    """
    xp = array_module(x)
    c = 2.0 / 3.141592653589793 ** 0.5
    return Tensor.from_op(_erf(xp, x.data), (x,), lambda g: (g * (c * xp.exp(-x.data * x.data)),), "erf")


def clip(x: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """y = min(max(x, low), high); ``None`` leaves that side unbounded (not both).

    x̄ = g where low < x < high, else 0: also 0 at x equal to a bound, as in PyTorch
    (either one-sided derivative would do; this choice matches the frameworks students compare with).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.25.
    """
    if low is None and high is None:
        raise ValueError("clip: both bounds are None, so there is nothing to clip; give low, high or both")
    low = None if low is None else float(low)  # a NumPy float64 scalar would upcast float32 data
    high = None if high is None else float(high)
    xp = array_module(x)
    y, inside = x.data, None
    if low is not None:
        y, inside = xp.maximum(y, low), x.data > low
    if high is not None:
        y = xp.minimum(y, high)
        inside = x.data < high if inside is None else inside & (x.data < high)
    return Tensor.from_op(y, (x,), lambda g: (g * inside,), "clip")


def logsigmoid(x: Tensor) -> Tensor:
    """y = ln σ(x) = min(x, 0) - ln(1 + e^-|x|) (finite for every x).

    x̄ = g · (1 - σ(x)) = g · σ(-x).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.23.
    """
    xp = array_module(x)
    y = xp.minimum(x.data, 0) - log1p_of(xp, exp_neg_abs(xp, x.data))
    return Tensor.from_op(y, (x,), lambda g: (g * stable_sigmoid(xp, -x.data),), "logsigmoid")


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """y = x if x > 0 else α (eˣ - 1).   x̄ = g if x > 0 else g · α eˣ = g · (y + α).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.20.
    """
    xp = array_module(x)
    y = xp.where(x.data > 0, x.data, alpha * xp.expm1(xp.minimum(x.data, 0)))
    return Tensor.from_op(y, (x,), lambda g: (g * xp.where(x.data > 0, 1, y + alpha),), "elu")


def gelu(x: Tensor) -> Tensor:
    """y = x Φ(x), Φ the standard normal CDF, Φ(x) = ½ (1 + erf(x / √2)) (the exact GELU,
    PyTorch's default).   x̄ = g · (Φ(x) + x φ(x)),   φ(x) = e^(-x²/2) / √(2π).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.21.
    """
    xp = array_module(x)
    cdf = 0.5 * (1 + _erf(xp, x.data * 0.7071067811865476))
    y = x.data * cdf

    def backward(g):
        pdf = xp.exp(-0.5 * x.data * x.data) * 0.3989422804014327
        return (g * (cdf + x.data * pdf),)

    return Tensor.from_op(y, (x,), backward, "gelu")


def silu(x: Tensor) -> Tensor:
    """y = x σ(x) (also called swish).   x̄ = g · σ(x) (1 + x (1 - σ(x))).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.22.
    """
    xp = array_module(x)
    s = stable_sigmoid(xp, x.data)
    return Tensor.from_op(x.data * s, (x,), lambda g: (g * (s * (1 + x.data * (1 - s))),), "silu")
