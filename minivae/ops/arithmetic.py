"""Arithmetic: ``+ - * /``, negation, powers and the matrix product.

Each VJP is a one-line rule of calculus, derived in derivations/15_vjp_rules.md
(Eq. 15.5-15.10, and 15.43-15.45 for ``matmul``). Gradients may come back in the
broadcast output shape; ``Tensor.backward`` sums them down to each input's shape.
"""

from __future__ import annotations

from typing import Any

from minivae.ops.operands import array_module, binary_operands, broadcast_values, needs_grad
from minivae.providers import backend
from minivae.tensor import Tensor


def add(a: Any, b: Any) -> Tensor:
    """y = a + b.   ∂y/∂a = 1, ∂y/∂b = 1, so ā = g, b̄ = g (summed over broadcast axes).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.5.
    """
    a, b = binary_operands("add", a, b)
    return Tensor.from_op(broadcast_values("add", lambda x, y: x + y, a, b), (a, b), lambda g: (g, g), "add")


def sub(a: Any, b: Any) -> Tensor:
    """y = a - b.   ā = g, b̄ = -g.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.5.
    """
    a, b = binary_operands("sub", a, b)

    def backward(g):
        return g, (-g if needs_grad(b) else None)

    return Tensor.from_op(broadcast_values("sub", lambda x, y: x - y, a, b), (a, b), backward, "sub")


def mul(a: Any, b: Any) -> Tensor:
    """y = a · b.   ā = g · b, b̄ = g · a.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.6.
    """
    a, b = binary_operands("mul", a, b)

    def backward(g):
        return (g * b.data if needs_grad(a) else None), (g * a.data if needs_grad(b) else None)

    return Tensor.from_op(broadcast_values("mul", lambda x, y: x * y, a, b), (a, b), backward, "mul")


def div(a: Any, b: Any) -> Tensor:
    """y = a / b.   ā = g / b, b̄ = -g · a / b².
    Derivation: derivations/15_vjp_rules.md, Eq. 15.7.
    """
    a, b = binary_operands("div", a, b)

    def backward(g):
        ga = g / b.data if needs_grad(a) else None
        gb = -g * a.data / (b.data * b.data) if needs_grad(b) else None
        return ga, gb

    return Tensor.from_op(broadcast_values("div", lambda x, y: x / y, a, b), (a, b), backward, "div")


def neg(a: Tensor) -> Tensor:
    """y = -a.   ā = -g.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.8.
    """
    return Tensor.from_op(-a.data, (a,), lambda g: (-g,), "neg")


def power(a: Any, exponent: Any) -> Tensor:
    """y = aᵇ, for a constant number b (``x ** 3``) or a tensor exponent (``x ** y``, ``2 ** x``).

    ā = g · b · a^(b-1),   b̄ = g · y · ln a.
    At the points where these formulas read 0 · ∞ the gradient is 0, as in PyTorch:
    ā = 0 where b = 0 (y = a⁰ = 1 is constant, also at a = 0), and b̄ = 0 where a = 0 and
    b ≥ 0 (y = 0ᵇ does not change as b moves). A negative a with a non-integer b gives NaN,
    as for NumPy's power. Derivation: derivations/15_vjp_rules.md, Eq. 15.9-15.10.
    """
    if isinstance(a, Tensor) and isinstance(exponent, (int, float, backend.numpy.number)):
        p = float(exponent) if isinstance(exponent, backend.numpy.number) else exponent

        def backward(g):
            if p == 2:
                return (g * (2 * a.data),)
            if p == 0:
                return (g * 0,)
            return (g * (p * a.data ** (p - 1)),)

        return Tensor.from_op(a.data ** p, (a,), backward, "pow")

    a, b = binary_operands("pow", a, exponent)
    xp = array_module(a)
    # not quiet: a NaN here (negative base, non-integer exponent) or 0 ** -1 is reported as
    # for x ** 0.5 above (mv.NumericWarning); only the backward's both-branches `where` is quiet
    y = broadcast_values("pow", lambda u, v: u ** v, a, b)

    def backward(g):
        ga = gb = None
        with backend.quiet_errors(a.data):
            if needs_grad(a):
                ga = xp.where(b.data == 0, 0, g * (b.data * a.data ** (b.data - 1))).astype(g.dtype)
            if needs_grad(b):
                gb = xp.where((a.data == 0) & (b.data >= 0), 0, g * (y * xp.log(a.data))).astype(g.dtype)
        return ga, gb

    return Tensor.from_op(y, (a, b), backward, "pow")


def matmul(a: Any, b: Any) -> Tensor:
    """y = a @ b.   ā = g @ bᵀ,   b̄ = aᵀ @ g   (ᵀ swaps the last two axes).

    NumPy's matmul rules: (n, k) @ (k, m) is the matrix product; a vector (k,) is taken
    as a row on the left or a column on the right and that axis is dropped from y; N-D
    tensors are stacks of matrices in their last two axes whose leading (batch) axes
    broadcast against each other, (..., n, k) @ (..., k, m) (the IWAE's k samples).
    A batch axis that broadcasting stretched gets the sum of the per-batch gradients
    (the engine sums them, as for ``add``). For (..., n, k) @ (k, m) the batch axes are
    folded into the rows, so b̄ = aᵀ @ g is one matrix product.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.43-15.45.
    """
    a, b = binary_operands("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: shapes {a.shape} @ {b.shape}: a 0-d operand has no matrix axes; use * for scalars")
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != k_b:
        raise ValueError(
            f"matmul: inner dimensions differ: {a.shape} @ {b.shape} (a has {a.shape[-1]} columns, b has {k_b} rows)"
        )
    try:
        y = a.data @ b.data
    except ValueError:
        raise ValueError(f"matmul: the batch axes of {a.shape} @ {b.shape} cannot be broadcast together") from None
    xp = array_module(a)

    def backward(g):
        A = a.data if a.ndim > 1 else a.data[None, :]  # (..., n, k)
        B = b.data if b.ndim > 1 else b.data[:, None]  # (..., k, m)
        G = g[..., None] if b.ndim == 1 else g  # (..., n, m), with the dropped axes back
        G = G[..., None, :] if a.ndim == 1 else G
        ga = gb = None
        if needs_grad(a):
            ga = G @ xp.swapaxes(B, -1, -2)
            if a.ndim == 1:  # back to (k,): sum the row axis and any batch axes
                ga = ga.sum(axis=tuple(range(ga.ndim - 1)))
        if needs_grad(b):
            if b.ndim == 2 and a.ndim > 2:  # one product with the batch folded into the rows
                rows = 1
                for n in A.shape[:-1]:
                    rows *= n
                gb = A.reshape(rows, A.shape[-1]).T @ G.reshape(rows, B.shape[-1])
            else:
                gb = xp.swapaxes(A, -1, -2) @ G
            if b.ndim == 1:
                gb = gb[..., 0].sum(axis=tuple(range(gb.ndim - 2)))
        return ga, gb

    return Tensor.from_op(y, (a, b), backward, "matmul")
