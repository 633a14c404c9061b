"""Comparisons, and the ops that choose between two tensors by one: where, maximum, minimum.

A comparison answers a yes/no question, so it has no gradient: each returns a plain
boolean array of the backend (not a Tensor; minivae tensors are float), to use as a
mask: in ``where``, for indexing (x[mask]), or as numbers via mask * 1.0.
Derivations: derivations/15_vjp_rules.md, Eq. 15.26, 15.41, 15.42.
"""

from __future__ import annotations

from typing import Any

from minivae.ops.operands import array_module, binary_operands, broadcast_values, needs_grad
from minivae.tensor import Tensor


def _compare(op: str, a: Any, b: Any, fn):
    a, b = binary_operands(op, a, b)
    return broadcast_values(op, fn, a, b)


def eq(a: Any, b: Any):
    """a == b elementwise, a boolean array (not differentiable).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _compare("eq", a, b, lambda u, v: u == v)


def ne(a: Any, b: Any):
    """a != b elementwise, a boolean array (not differentiable).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _compare("ne", a, b, lambda u, v: u != v)


def lt(a: Any, b: Any):
    """a < b elementwise, a boolean array (not differentiable).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _compare("lt", a, b, lambda u, v: u < v)


def le(a: Any, b: Any):
    """a <= b elementwise, a boolean array (not differentiable).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _compare("le", a, b, lambda u, v: u <= v)


def gt(a: Any, b: Any):
    """a > b elementwise, a boolean array (not differentiable).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _compare("gt", a, b, lambda u, v: u > v)


def ge(a: Any, b: Any):
    """a >= b elementwise, a boolean array (not differentiable).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _compare("ge", a, b, lambda u, v: u >= v)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """y = a where ``condition`` else b (all three broadcast together).

    ā = g · [condition],   b̄ = g · [not condition]; the condition, a boolean mask
    (e.g. ``x > 0``), gets no gradient. Derivation: derivations/15_vjp_rules.md, Eq. 15.41.
    """
    a, b = binary_operands("where", a, b)
    xp = array_module(a)
    cond = condition.data if isinstance(condition, Tensor) else xp.asarray(condition)
    if cond.dtype != bool:
        raise TypeError(f"where: the condition must be a boolean array (e.g. x > 0), got dtype {cond.dtype}")
    try:
        y = xp.where(cond, a.data, b.data)
    except ValueError:
        raise ValueError(f"where: shapes {cond.shape} (condition), {a.shape} and {b.shape} cannot be broadcast together") from None

    def backward(g):
        zero = g.dtype.type(0)
        return (xp.where(cond, g, zero) if needs_grad(a) else None), (xp.where(cond, zero, g) if needs_grad(b) else None)

    return Tensor.from_op(y, (a, b), backward, "where")


def _pick(op: str, a: Any, b: Any, first_wins) -> Tensor:
    """The node of ``maximum`` / ``minimum``: y = the picked operand, a tie splitting g in half.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.26."""
    a, b = binary_operands(op, a, b)
    xp = array_module(a)
    y = broadcast_values(op, xp.maximum if op == "maximum" else xp.minimum, a, b)

    def backward(g):
        # the share of g that goes to a: 1 where a is picked, ½ on a tie, 0 where b is picked
        wa = xp.where(first_wins(a.data, b.data), 1.0, xp.where(a.data == b.data, 0.5, 0.0)).astype(g.dtype)
        return (g * wa if needs_grad(a) else None), (g * (1 - wa) if needs_grad(b) else None)

    return Tensor.from_op(y, (a, b), backward, op)


def maximum(a: Any, b: Any) -> Tensor:
    """y = max(a, b) elementwise (broadcasting).

    ā = g · ([a > b] + ½[a = b]),   b̄ = g · ([b > a] + ½[a = b]): a tie splits the gradient
    in half (PyTorch's rule), so ā + b̄ = g always. Derivation: derivations/15_vjp_rules.md, Eq. 15.26.
    """
    return _pick("maximum", a, b, lambda u, v: u > v)


def minimum(a: Any, b: Any) -> Tensor:
    """y = min(a, b) elementwise.   ā = g · ([a < b] + ½[a = b]),   b̄ = g · ([b < a] + ½[a = b]).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.26.
    """
    return _pick("minimum", a, b, lambda u, v: u < v)
