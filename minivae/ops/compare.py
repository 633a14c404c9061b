"""Comparisons, and the ops that choose between two tensors by one: where, maximum, minimum.

A comparison answers a yes/no question, so it has no gradient: each returns a boolean
array of the backend (not a Tensor; minivae tensors are float), to use as a mask: in
``where``, for indexing (x[mask]), or as numbers via mask * 1.0. On the CPU that array is a
``Mask``: a NumPy array in every way except its truth value, which explains itself (below).
Derivations: derivations/15_vjp_rules.md, Eq. 15.26, 15.41, 15.42.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minivae.ops.operands import array_module, binary_operands, broadcast_values, needs_grad
from minivae.tensor import Tensor

_SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class Mask(np.ndarray):
    """The boolean array ``a < b`` (``==``, ``>=``, ...) gives for two tensors on the CPU.

    It is a NumPy array (index with it, pass it to ``where``, ``mask * 1.0``, ``mask.all()``);
    arrays computed from it are plain arrays again. Only ``bool(mask)`` of more than one
    element differs from NumPy's message: Python asks it silently in ``if a == b:``, in
    ``x in [a, b]`` (``in`` tests ``==`` against each item) and in ``max(a, b)``/``sorted``
    (they compare with ``>``/``<``), so the message names the comparison and the way out.
    Derivation: none (a helper, not an op).
    """

    op: str = "eq"

    def __array_finalize__(self, obj: Any) -> None:
        self.op = getattr(obj, "op", "eq")

    def __array_wrap__(self, array, context=None, return_scalar=None):
        # mask & other, mask * 1.0, mask.sum(): results are plain arrays (or NumPy scalars);
        # in place (mask |= other, out=mask) the mask itself comes back
        if array is self:
            return self
        array = np.asarray(array).view(np.ndarray)
        if return_scalar is None:  # NumPy 1.x asks no question: a 0-d result is a scalar, as for ndarray
            return_scalar = array.ndim == 0
        return array[()] if return_scalar else array

    def astype(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """A plain array of the values (``mask.astype(np.float32)`` is numbers, not a comparison)."""
        return self.view(np.ndarray).astype(*args, **kwargs)

    def __reduce__(self):  # pickling keeps which comparison it was
        rebuild, arguments, state = super().__reduce__()[:3]
        return rebuild, arguments, (state, self.op)

    def __setstate__(self, state) -> None:
        array_state, self.op = state
        super().__setstate__(array_state)

    def __bool__(self) -> bool:
        if self.size == 1:
            return bool(self.reshape(-1)[0])
        sym = _SYMBOLS.get(self.op, self.op)
        raise ValueError(
            f"bool(a {sym} b): comparing tensors is elementwise ({self.size} elements, shape {self.shape}), "
            f"so its truth value is ambiguous; use (a {sym} b).all() or .any(); note that `x in [a, b]` "
            "tests == against each item (use any(x is t for t in items)) and max()/min()/sorted() "
            "compare with > and < (use mv.maximum / mv.minimum, or compare .item() values)"
        )

    def __repr__(self) -> str:
        return repr(self.view(np.ndarray))


def _compare(op: str, a: Any, b: Any, fn):
    a, b = binary_operands(op, a, b)
    result = broadcast_values(op, fn, a, b)
    if type(result) is not np.ndarray:  # a GPU array (or a NumPy bool scalar) stays as it is
        return result
    mask = result.view(Mask)
    mask.op = op
    return mask


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


def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False):
    """The index of the largest element along ``axis`` (of the flattened tensor for None):
    an integer array of the backend (not a Tensor: an index has no gradient), the first
    index on a tie, as in NumPy and PyTorch. E.g. the predicted class: ``logits.argmax(axis=-1)``.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _arg_extreme("argmax", x, axis, keepdims)


def argmin(x: Tensor, axis: int | None = None, keepdims: bool = False):
    """The index of the smallest element along ``axis`` (no gradient; the first on a tie).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    return _arg_extreme("argmin", x, axis, keepdims)


def _arg_extreme(op: str, x: Any, axis: int | None, keepdims: bool):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if isinstance(axis, np.integer):
        axis = int(axis)
    axes = max(x.ndim, 1)  # a 0-d tensor takes axis 0 / -1, as in PyTorch
    if axis is not None and not (type(axis) is int and -axes <= axis < axes):
        raise ValueError(f"{op}: axis {axis!r} is out of range for a tensor of shape {x.shape} "
                         f"(expected one int in [-{axes}, {axes - 1}], or None for all elements)")
    if axis is None and x.size == 0:
        raise ValueError(f"{op}: a tensor of shape {x.shape} has no elements (there is no index to give)")
    if axis is not None and x.ndim and x.shape[axis] == 0:
        raise ValueError(f"{op}: a tensor of shape {x.shape} has no elements along axis {axis} (there is no index to give)")
    data = x.data if x.ndim or axis is None else x.data.reshape(1)
    return getattr(data, op)(axis=axis, keepdims=keepdims)


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
