"""Reductions: sums, means, extremes, spread, and logsumexp with the softmaxes built on it.

A reduction's VJP broadcasts g back over the reduced axes (``expand_back``), scaled by
what each element contributed. Derivations: derivations/15_vjp_rules.md, Eq. 15.28-15.35.
(This module's ``sum``, ``max`` and ``min`` are the ops: Python's builtins are shadowed.)
"""

from __future__ import annotations

from minivae.ops.elementwise import exp, sqrt
from minivae.ops.operands import array_module, element_count, expand_back, reduction_axes
from minivae.providers import backend
from minivae.tensor import Tensor


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - public name
    """y = Σ x over ``axis`` (an int, a tuple, or None for all; a sum over an empty axis is 0).
    x̄ = g broadcast back over the summed axes.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.28.
    """
    axes = reduction_axes(axis, x.ndim, "sum")
    xp = array_module(x)
    return Tensor.from_op(
        x.data.sum(axis=axes, keepdims=keepdims),
        (x,),
        lambda g: (expand_back(g, x.shape, axes, keepdims, xp),),
        "sum",
    )


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """y = (1/n) Σ x over ``axis`` (n elements reduced; NaN over an empty axis, as 0/0 and
    PyTorch give).   x̄ = g / n broadcast back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.29.
    """
    axes = reduction_axes(axis, x.ndim, "mean")
    n = element_count(x.shape, axes)
    xp = array_module(x)
    with backend.quiet_errors(x.data):
        y = x.data.sum(axis=axes, keepdims=keepdims) / x.data.dtype.type(n)

    def backward(g):
        with backend.quiet_errors(g):
            return (expand_back(g / g.dtype.type(n), x.shape, axes, keepdims, xp),)

    return Tensor.from_op(y, (x,), backward, "mean")


def _reduced_keepdims(x: Tensor, axes: tuple[int, ...], op: str, reduce):
    """``reduce`` (a max or min) over ``axes`` with the axes kept; an empty axis is an error."""
    if any(x.shape[ax] == 0 for ax in axes):
        raise ValueError(f"{op}: cannot take the {op} over an empty axis of a tensor of shape {x.shape}")
    return reduce(x.data, axis=axes, keepdims=True)


def _extreme(op: str, x: Tensor, axis, keepdims: bool) -> Tensor:
    """The node of ``max`` / ``min``: ties share the gradient equally.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.32."""
    axes = reduction_axes(axis, x.ndim, op)
    xp = array_module(x)
    y_keep = _reduced_keepdims(x, axes, op, xp.max if op == "max" else xp.min)
    y = y_keep if keepdims else y_keep.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))

    def backward(g):
        hit = x.data == y_keep  # every position that attains the extreme
        share = g.dtype.type(1) / hit.sum(axis=axes, keepdims=True).astype(g.dtype)
        g_keep = g if keepdims else xp.expand_dims(g, axes)
        return (hit * (g_keep * share),)

    return Tensor.from_op(y, (x,), backward, op)


def max(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - public name
    """y = max x over ``axis`` (an int, a tuple, or None for all).

    x̄ = g · [x = y] / #{i : xᵢ = y}: when several elements tie for the maximum they share
    its gradient equally (PyTorch's ``amax`` does the same; its ``max(dim)`` gives it all
    to one index). A max over an empty axis is an error (there is no such value).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.32.
    """
    return _extreme("max", x, axis, keepdims)


def min(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - public name
    """y = min x over ``axis``.   x̄ = g · [x = y] / #{i : xᵢ = y} (ties share equally, as in ``max``).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.32.
    """
    return _extreme("min", x, axis, keepdims)


def var(x: Tensor, axis=None, keepdims: bool = False, correction: int = 1) -> Tensor:
    """y = Σ (x - μ)² / (n - c) over ``axis``, μ the mean over it, n its element count,
    c = ``correction`` (1 by default: the unbiased estimate, as in PyTorch; 0 as in NumPy).

    x̄ = g · 2 (x - μ) / (n - c). (The path through μ adds nothing: Σ (x - μ) = 0.)
    With n - c ≤ 0 the value is NaN or inf, as in PyTorch. Derivation: derivations/15_vjp_rules.md, Eq. 15.30.
    """
    axes = reduction_axes(axis, x.ndim, "var")
    n = element_count(x.shape, axes)
    xp = array_module(x)
    with backend.quiet_errors(x.data):
        mu = x.data.sum(axis=axes, keepdims=True) / x.data.dtype.type(n)
        d = x.data - mu
        inv = x.data.dtype.type(1.0 / (n - correction) if n - correction > 0 else float("inf"))
        y = (d * d).sum(axis=axes, keepdims=keepdims) * inv

    def backward(g):
        g_keep = g if keepdims else xp.expand_dims(g, axes)
        with backend.quiet_errors(g):
            return (g_keep * (2 * inv) * d,)

    return Tensor.from_op(y, (x,), backward, "var")


def std(x: Tensor, axis=None, keepdims: bool = False, correction: int = 1) -> Tensor:
    """y = √var(x) (composed from ``var`` and ``sqrt``, so x̄ = g · (x - μ) / ((n - c) · y);
    NaN where all the elements are equal, where y = 0 has no derivative).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.31.
    """
    return sqrt(var(x, axis=axis, keepdims=keepdims, correction=correction))


def logsumexp(x: Tensor, axis=-1, keepdims: bool = False) -> Tensor:
    """y = ln Σᵢ e^{xᵢ} over ``axis`` (an int, a tuple of axes, or None for all), computed
    as m + ln Σ e^{xᵢ - m} with m = max x, so no exponential overflows.

    ∂y/∂xᵢ = e^{xᵢ - y} = softmax(x)ᵢ, so x̄ = g · e^{x - y}.
    Edge cases: over an empty axis y = ln 0 = -inf; where every element is -inf, y = -inf
    (not NaN); on a 0-d tensor the default axis reduces nothing and y = x (as in PyTorch).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.33.
    """
    xp = array_module(x)
    axes = reduction_axes(axis, x.ndim, "logsumexp")
    if any(x.shape[ax] == 0 for ax in axes):
        m = xp.full(tuple(1 if i in axes else n for i, n in enumerate(x.shape)), 0.0, dtype=x.data.dtype)
    else:
        m = x.data.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # rows of all -inf give -inf, not NaN
    with backend.quiet_errors(x.data):
        y_keep = m + xp.log(xp.exp(x.data - m).sum(axis=axes, keepdims=True))
    y = y_keep if keepdims else y_keep.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))

    def backward(g):
        g_keep = g if keepdims else xp.expand_dims(g, axes)
        with backend.quiet_errors(g):
            return (g_keep * xp.exp(x.data - y_keep),)

    return Tensor.from_op(y, (x,), backward, "logsumexp")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax(x) = x - logsumexp(x) over ``axis`` (composed; its gradient follows from
    the two ops). On a 0-d tensor it is 0 (one class has probability 1), as in PyTorch.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.35.
    """
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax(x) = exp(log_softmax(x)) (composed).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.34.
    """
    return exp(log_softmax(x, axis=axis))
