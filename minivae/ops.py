"""Every differentiable op: its forward value and its vector-Jacobian product, side by side.

Read each op as a row of a table. For y = f(x) and an upstream gradient
g = dL/dy, the op's ``backward(g)`` returns dL/dx = g · ∂y/∂x for each input
(None for inputs that do not need one). The docstring states the derivative.

Conventions:
- Gradients may come back in the broadcast output shape; the engine
  (`Tensor.backward`) sums them down to each input's shape.
- Arrays are reached only through ``backend.array_module`` so the same code runs
  on NumPy and CuPy.
- Python scalars and raw arrays are constants in the dtype of the tensor they
  meet; two tensors of different float dtypes are an error (no silent upcast).
"""

from __future__ import annotations

from typing import Any, Sequence

from minivae.providers import backend, provider_for
from minivae.providers.base import ACTIVATION_NAMES
from minivae.tensor import Tensor, canonical_dtype


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def as_tensor(x: Any, like: Tensor | None, op: str) -> Tensor:
    """``x`` as a Tensor: a raw value becomes a constant in the dtype (and on the device)
    of ``like``. For modules that build their own ops.
    Derivation: none (a helper that lifts operands, not an op).
    """
    if isinstance(x, Tensor):
        return x
    # A raw float array of one or more dimensions keeps its precision, as mv.tensor(x)
    # would, so float64 data meeting a float32 tensor is the same error as for two
    # tensors. Python numbers, 0-d arrays and integer/bool arrays take ``like``'s dtype
    # (PyTorch's rule for numbers; PyTorch would upcast where minivae refuses).
    found = getattr(x, "dtype", None)
    kept = found if getattr(x, "ndim", 0) > 0 and getattr(found, "name", None) in ("float32", "float64") else None
    if like is not None and kept is not None and kept != like.dtype:
        raise TypeError(
            f"{op}: a raw {kept} array of shape {tuple(x.shape)} meets a {like.dtype} tensor of shape {like.shape}; "
            f"minivae does not mix float precisions silently. Convert the array first, e.g. "
            f"mv.tensor(x, dtype='{like.dtype}') or x.astype('{like.dtype}')."
        )
    dtype = like.dtype if like is not None else kept
    if like is not None and backend.is_gpu_array(like.data) and not backend.is_gpu_array(x):
        x = backend.array_module(like.data).asarray(x)
    try:
        return Tensor(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{op}: cannot use {type(x).__name__} as an operand ({err})") from err


def binary_operands(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Lift a binary op's operands to tensors of one dtype (an error names ``op``).
    Derivation: none (a helper that lifts operands, not an op).
    """
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    a, b = as_tensor(a, like, op), as_tensor(b, like, op)
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: operands are {a.dtype} {a.shape} and {b.dtype} {b.shape}; minivae does not mix float "
            "precisions silently. Convert one explicitly, e.g. x.astype('float64')."
        )
    return a, b


def _broadcast(op: str, fn, a: Tensor, b: Tensor):
    try:
        return fn(a.data, b.data)
    except ValueError as err:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together ({err})") from None


def _xp(t: Tensor):
    return backend.array_module(t.data)


def _need(t: Tensor) -> bool:
    return t.requires_grad


# ----------------------------------------------------------------------------
# arithmetic
# ----------------------------------------------------------------------------
# No derivation files for these: each VJP is a one-line rule of calculus, stated in the
# docstring (matmul and linear link derivations/02_backprop_dense.md).
def add(a: Any, b: Any) -> Tensor:
    """y = a + b.   ∂y/∂a = 1, ∂y/∂b = 1, so ā = g, b̄ = g (summed over broadcast axes).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.5.
    """
    a, b = binary_operands("add", a, b)
    return Tensor.from_op(_broadcast("add", lambda x, y: x + y, a, b), (a, b), lambda g: (g, g), "add")


def sub(a: Any, b: Any) -> Tensor:
    """y = a - b.   ā = g, b̄ = -g.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.5.
    """
    a, b = binary_operands("sub", a, b)

    def backward(g):
        return g, (-g if _need(b) else None)

    return Tensor.from_op(_broadcast("sub", lambda x, y: x - y, a, b), (a, b), backward, "sub")


def mul(a: Any, b: Any) -> Tensor:
    """y = a · b.   ā = g · b, b̄ = g · a.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.6.
    """
    a, b = binary_operands("mul", a, b)

    def backward(g):
        return (g * b.data if _need(a) else None), (g * a.data if _need(b) else None)

    return Tensor.from_op(_broadcast("mul", lambda x, y: x * y, a, b), (a, b), backward, "mul")


def div(a: Any, b: Any) -> Tensor:
    """y = a / b.   ā = g / b, b̄ = -g · a / b².
    Derivation: derivations/15_vjp_rules.md, Eq. 15.7.
    """
    a, b = binary_operands("div", a, b)

    def backward(g):
        ga = g / b.data if _need(a) else None
        gb = -g * a.data / (b.data * b.data) if _need(b) else None
        return ga, gb

    return Tensor.from_op(_broadcast("div", lambda x, y: x / y, a, b), (a, b), backward, "div")


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
    xp = _xp(a)
    with backend.quiet_errors(a.data):
        y = _broadcast("pow", lambda u, v: u ** v, a, b)

    def backward(g):
        ga = gb = None
        with backend.quiet_errors(a.data):
            if _need(a):
                ga = xp.where(b.data == 0, 0, g * (b.data * a.data ** (b.data - 1))).astype(g.dtype)
            if _need(b):
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
    xp = _xp(a)

    def backward(g):
        A = a.data if a.ndim > 1 else a.data[None, :]  # (..., n, k)
        B = b.data if b.ndim > 1 else b.data[:, None]  # (..., k, m)
        G = g[..., None] if b.ndim == 1 else g  # (..., n, m), with the dropped axes back
        G = G[..., None, :] if a.ndim == 1 else G
        ga = gb = None
        if _need(a):
            ga = G @ xp.swapaxes(B, -1, -2)
            if a.ndim == 1:  # back to (k,): sum the row axis and any batch axes
                ga = ga.sum(axis=tuple(range(ga.ndim - 1)))
        if _need(b):
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


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None,
           slope: float = 0.01) -> Tensor:
    """y = x @ W + b, a dense layer in one node; with ``activation``, y = f(x @ W + b).

    Without an activation:   x̄ = g @ Wᵀ,   W̄ = xᵀ @ g,   b̄ = Σ_rows g.
    With one (a name from ``ACTIVATION_NAMES``; ``slope`` for leaky_relu) the node is
    the two steps ``linear → f`` fused: u = x @ W + b, y = f(u), and backward first
    forms ū = g · f'(u) (written with y, as for the activations below), then
    x̄ = ū @ Wᵀ,   W̄ = xᵀ @ ū,   b̄ = Σ_rows ū: the same numbers as ``relu(linear(x, W, b))``
    with one stored array fewer. ``draw_graph``/``graph_summary`` show it as
    ``linear → relu (fused)``. ``x`` may have leading batch axes (..., in), folded into rows.
    Derivation: derivations/02_backprop_dense.md, Eq. 2.1.
    """
    x, weight = binary_operands("linear", x, weight)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not fit weight of shape {weight.shape}; "
            f"expected input (..., {weight.shape[0] if weight.ndim == 2 else 'in'}) and weight (in, out)"
        )
    if bias is not None:
        _, bias = binary_operands("linear", weight, bias)
        if bias.shape != (weight.shape[1],):
            raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[1]},)")
    if activation is not None and activation not in ACTIVATION_NAMES:
        raise ValueError(f"linear: unknown activation {activation!r}; expected one of {sorted(ACTIVATION_NAMES)}")
    provider = provider_for(x.data)
    rows = x.data.reshape(-1, x.shape[-1])
    y = provider.matmul(rows, weight.data, bias=None if bias is None else bias.data)
    if activation is not None:  # the product is ours alone: f may overwrite it
        y = provider.activation(activation, y, slope, inplace=True)
    kept = y if activation is not None else None  # backward needs the output only for f'

    def backward(g):
        g = g.reshape(-1, weight.shape[1])
        gb = None
        if activation is not None:
            g, gb = provider.activation_grad_bias(activation, g, kept, slope)
        elif bias is not None and _need(bias):
            gb = provider.column_sum(g)
        gx = provider.matmul(g, weight.data, trans_b=True).reshape(x.shape) if _need(x) else None
        gw = provider.matmul(rows, g, trans_a=True) if _need(weight) else None
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    out = y.reshape(x.shape[:-1] + (weight.shape[1],))
    return Tensor.from_op(out, parents, backward, "linear" if activation is None else f"linear+{activation}")


# ----------------------------------------------------------------------------
# reductions and shape
# ----------------------------------------------------------------------------
# A reduction's VJP broadcasts g back over the reduced axes; a shape op's VJP undoes the
# re-labelling. Too short for derivation files: the rule is in each docstring.
def _axes(axis, ndim: int, op: str = "reduction") -> tuple[int, ...]:
    """The axes a reduction runs over, sorted and non-negative (``None``: all of them).

    As in PyTorch, a 0-d tensor accepts axis 0 or -1 and reduces over nothing.
    """
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, backend.numpy.integer)) else tuple(axis)
    n = ndim if ndim > 0 else 1  # (this module's max is the op: builtins are shadowed)
    for ax in axes:
        if not isinstance(ax, (int, backend.numpy.integer)) or not -n <= ax < n:
            raise ValueError(f"{op}: axis {ax!r} is out of range for a tensor with {ndim} dimensions")
    if ndim == 0:
        return ()
    normalized = sorted(int(ax) % n for ax in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{op}: axis {axis!r} names the same axis twice")
    return tuple(normalized)


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    """How many elements a reduction over ``axes`` combines (0 for an empty axis)."""
    n = 1
    for ax in axes:
        n *= shape[ax]
    return n


def _expand_back(g, x_shape, axes, keepdims, xp):
    """Undo a reduction's shape change so g broadcasts against the input."""
    if not keepdims:
        for ax in axes:
            g = xp.expand_dims(g, ax)
    return xp.broadcast_to(g, x_shape)


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - public name
    """y = Σ x over ``axis`` (an int, a tuple, or None for all; a sum over an empty axis is 0).
    x̄ = g broadcast back over the summed axes.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.28.
    """
    axes = _axes(axis, x.ndim, "sum")
    xp = _xp(x)
    return Tensor.from_op(
        x.data.sum(axis=axes, keepdims=keepdims),
        (x,),
        lambda g: (_expand_back(g, x.shape, axes, keepdims, xp),),
        "sum",
    )


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """y = (1/n) Σ x over ``axis`` (n elements reduced; NaN over an empty axis, as 0/0 and
    PyTorch give).   x̄ = g / n broadcast back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.29.
    """
    axes = _axes(axis, x.ndim, "mean")
    n = _count(x.shape, axes)
    xp = _xp(x)
    with backend.quiet_errors(x.data):
        y = x.data.sum(axis=axes, keepdims=keepdims) / x.data.dtype.type(n)

    def backward(g):
        with backend.quiet_errors(g):
            return (_expand_back(g / g.dtype.type(n), x.shape, axes, keepdims, xp),)

    return Tensor.from_op(y, (x,), backward, "mean")


def reshape(x: Tensor, *shape) -> Tensor:
    """y = x viewed with a new shape.   x̄ = g reshaped back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot view {x.shape} ({x.size} elements) as {tuple(shape)}") from None
    return Tensor.from_op(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


def transpose(x: Tensor, *axes) -> Tensor:
    """y = x with axes permuted (reversed by default).   x̄ = g with the inverse permutation.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.37.
    """
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    perm = tuple(axes) if axes else tuple(reversed(range(x.ndim)))
    if all(isinstance(ax, int) and -x.ndim <= ax < x.ndim for ax in perm):
        perm = tuple(ax % x.ndim for ax in perm)  # negative axes count from the end
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {x.ndim} axes of a tensor of shape {x.shape}")
    inverse = tuple(perm.index(i) for i in range(x.ndim))
    return Tensor.from_op(x.data.transpose(perm), (x,), lambda g: (g.transpose(inverse),), "transpose")


def getitem(x: Tensor, key: Any) -> Tensor:
    """y = x[key] (slices, integers, index arrays, masks).

    x̄ = zeros like x with g added at the selected positions (``add.at`` so an
    index that repeats collects every contribution).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.38.
    """
    if isinstance(key, Tensor):
        key = key.data
    elif isinstance(key, tuple):
        key = tuple(k.data if isinstance(k, Tensor) else k for k in key)
    try:
        out = x.data[key]
    except IndexError as err:
        raise IndexError(f"getitem: index {key!r} is invalid for a tensor of shape {x.shape} ({err})") from None
    xp = _xp(x)

    basic = all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in (key if isinstance(key, tuple) else (key,)))

    def backward(g):
        gx = xp.zeros_like(x.data)
        if basic:  # each position selected at most once: plain assignment
            gx[key] = g
        else:
            xp.add.at(gx, key, g)
        return (gx,)

    return Tensor.from_op(out, (x,), backward, "getitem")


def _same_dtype(op: str, tensors: Sequence[Any]) -> list[Tensor]:
    """A list of tensors and raw values lifted to tensors of one dtype: raw values take
    the dtype of the tensors, wherever they stand in the list."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    tensors = [as_tensor(t, like, op) for t in tensors]
    dtypes = {str(t.dtype) for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: tensors have mixed dtypes {sorted(dtypes)}; convert them to one dtype first")
    return tensors


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """y = [x₁, x₂, ...] joined along ``axis``.   x̄ᵢ = the slice of g that xᵢ occupies.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.39.
    """
    tensors = _same_dtype("concat", tensors)
    if tensors[0].ndim == 0:
        raise ValueError("concat: 0-d tensors have no axis to join along; use stack to make a new axis")
    xp = _xp(tensors[0])
    try:
        out = xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as err:
        shapes = [t.shape for t in tensors]
        raise ValueError(f"concat: shapes {shapes} cannot be joined along axis {axis} ({err})") from None
    ax = axis % out.ndim
    bounds, start = [], 0
    for t in tensors:
        bounds.append((start, start + t.shape[ax]))
        start += t.shape[ax]

    def backward(g):
        index = [slice(None)] * g.ndim
        grads = []
        for t, (lo, hi) in zip(tensors, bounds):
            index[ax] = slice(lo, hi)
            grads.append(g[tuple(index)] if t.requires_grad else None)
        return tuple(grads)

    return Tensor.from_op(out, tuple(tensors), backward, "concat")


def astype(x: Tensor, dtype: Any) -> Tensor:
    """y = x converted to another float dtype.   x̄ = g converted back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    target = canonical_dtype(dtype, "astype")
    if target == x.dtype:
        return x
    source = x.dtype
    return Tensor.from_op(x.data.astype(target), (x,), lambda g: (g.astype(source),), "astype")


# ----------------------------------------------------------------------------
# elementwise functions
# ----------------------------------------------------------------------------
# Textbook derivatives (no derivation files), except where a docstring links one.
def exp(x: Tensor) -> Tensor:
    """y = eˣ.   x̄ = g · eˣ = g · y.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.11.
    """
    y = _xp(x).exp(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g * y,), "exp")


def log(x: Tensor) -> Tensor:
    """y = ln x.   x̄ = g / x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.12.
    """
    with backend.quiet_errors(x.data):
        y = _xp(x).log(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / x.data,), "log")


def sqrt(x: Tensor) -> Tensor:
    """y = √x.   x̄ = g / (2√x) = g / (2y).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.13.
    """
    y = _xp(x).sqrt(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / (2 * y),), "sqrt")


def sin(x: Tensor) -> Tensor:
    """y = sin x.   x̄ = g · cos x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.16.
    """
    xp = _xp(x)
    return Tensor.from_op(xp.sin(x.data), (x,), lambda g: (g * xp.cos(x.data),), "sin")


def cos(x: Tensor) -> Tensor:
    """y = cos x.   x̄ = -g · sin x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.16.
    """
    xp = _xp(x)
    return Tensor.from_op(xp.cos(x.data), (x,), lambda g: (-g * xp.sin(x.data),), "cos")


def abs(x: Tensor) -> Tensor:  # noqa: A001 - public name
    """y = |x|.   x̄ = g · sign(x) (the subgradient 0 is used at x = 0).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.14.
    """
    xp = _xp(x)
    return Tensor.from_op(xp.abs(x.data), (x,), lambda g: (g * xp.sign(x.data),), "abs")


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
    xp = _xp(x)
    y, inside = x.data, None
    if low is not None:
        y, inside = xp.maximum(y, low), x.data > low
    if high is not None:
        y = xp.minimum(y, high)
        inside = x.data < high if inside is None else inside & (x.data < high)
    return Tensor.from_op(y, (x,), lambda g: (g * inside,), "clip")


# The activations with a provider kernel. Each derivative is written with the OUTPUT
# y = f(x), so the backward pass needs only y (the formulas: providers/reference.py).
def _activation(name: str, x: Tensor, slope: float = 0.0) -> Tensor:
    """y = f(x) elementwise;  x̄ = g · f'(x), with f' computed from y."""
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


def logsumexp(x: Tensor, axis=-1, keepdims: bool = False) -> Tensor:
    """y = ln Σᵢ e^{xᵢ} over ``axis`` (an int, a tuple of axes, or None for all), computed
    as m + ln Σ e^{xᵢ - m} with m = max x, so no exponential overflows.

    ∂y/∂xᵢ = e^{xᵢ - y} = softmax(x)ᵢ, so x̄ = g · e^{x - y}.
    Edge cases: over an empty axis y = ln 0 = -inf; where every element is -inf, y = -inf
    (not NaN); on a 0-d tensor the default axis reduces nothing and y = x (as in PyTorch).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.33.
    """
    xp = _xp(x)
    axes = _axes(axis, x.ndim, "logsumexp")
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


# ----------------------------------------------------------------------------
# maxima and spread
# ----------------------------------------------------------------------------
def _reduced_keepdims(x: Tensor, axes: tuple[int, ...], op: str, reduce):
    """``reduce`` (a max or min) over ``axes`` with the axes kept; an empty axis is an error."""
    if any(x.shape[ax] == 0 for ax in axes):
        raise ValueError(f"{op}: cannot take the {op} over an empty axis of a tensor of shape {x.shape}")
    return reduce(x.data, axis=axes, keepdims=True)


def _extreme(op: str, x: Tensor, axis, keepdims: bool) -> Tensor:
    axes = _axes(axis, x.ndim, op)
    xp = _xp(x)
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


def _pick(op: str, a: Any, b: Any, first_wins) -> Tensor:
    a, b = binary_operands(op, a, b)
    xp = _xp(a)
    y = _broadcast(op, xp.maximum if op == "maximum" else xp.minimum, a, b)

    def backward(g):
        # the share of g that goes to a: 1 where a is picked, ½ on a tie, 0 where b is picked
        wa = xp.where(first_wins(a.data, b.data), 1.0, xp.where(a.data == b.data, 0.5, 0.0)).astype(g.dtype)
        return (g * wa if _need(a) else None), (g * (1 - wa) if _need(b) else None)

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


def var(x: Tensor, axis=None, keepdims: bool = False, correction: int = 1) -> Tensor:
    """y = Σ (x - μ)² / (n - c) over ``axis``, μ the mean over it, n its element count,
    c = ``correction`` (1 by default: the unbiased estimate, as in PyTorch; 0 as in NumPy).

    x̄ = g · 2 (x - μ) / (n - c). (The path through μ adds nothing: Σ (x - μ) = 0.)
    With n - c ≤ 0 the value is NaN or inf, as in PyTorch. Derivation: derivations/15_vjp_rules.md, Eq. 15.30.
    """
    axes = _axes(axis, x.ndim, "var")
    n = _count(x.shape, axes)
    xp = _xp(x)
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


# ----------------------------------------------------------------------------
# comparisons and masks: not differentiable, they return boolean arrays
# ----------------------------------------------------------------------------
# A comparison answers a yes/no question, so it has no gradient: each returns a plain
# boolean array of the backend (not a Tensor; minivae tensors are float), to use as
# a mask: in ``where``, for indexing (x[mask]), or as numbers via mask * 1.0.
def _compare(op: str, a: Any, b: Any, fn):
    a, b = binary_operands(op, a, b)
    return _broadcast(op, fn, a, b)


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
    xp = _xp(a)
    cond = condition.data if isinstance(condition, Tensor) else xp.asarray(condition)
    if cond.dtype != bool:
        raise TypeError(f"where: the condition must be a boolean array (e.g. x > 0), got dtype {cond.dtype}")
    try:
        y = xp.where(cond, a.data, b.data)
    except ValueError:
        raise ValueError(f"where: shapes {cond.shape} (condition), {a.shape} and {b.shape} cannot be broadcast together") from None

    def backward(g):
        zero = g.dtype.type(0)
        return (xp.where(cond, g, zero) if _need(a) else None), (xp.where(cond, zero, g) if _need(b) else None)

    return Tensor.from_op(y, (a, b), backward, "where")


# ----------------------------------------------------------------------------
# shape: new axes, removed axes, broadcast copies
# ----------------------------------------------------------------------------
# Each of these only re-labels or repeats elements, so its VJP puts g back into the
# input's shape: a reshape, or a sum over the repeated (broadcast) axes.
def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """y = [x₁, x₂, ...] along a new axis (all of one shape).   x̄ᵢ = g's i-th slice along that axis.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.39.
    """
    tensors = _same_dtype("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: tensors have different shapes {sorted(shapes)}; stack needs one shape")
    ndim = tensors[0].ndim + 1
    if not -ndim <= axis < ndim:
        raise ValueError(f"stack: axis {axis} is out of range for the {ndim}-d result")
    ax = axis % ndim
    xp = _xp(tensors[0])
    out = xp.stack([t.data for t in tensors], axis=ax)

    def backward(g):
        return tuple(xp.take(g, i, axis=ax) if t.requires_grad else None for i, t in enumerate(tensors))

    return Tensor.from_op(out, tuple(tensors), backward, "stack")


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """y = x repeated along broadcast axes to ``shape`` (NumPy's rules; a read-only view).

    x̄ = g summed over the axes that were added or stretched (the engine's unbroadcast).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.40.
    """
    shape = tuple(int(n) for n in shape)
    try:
        y = _xp(x).broadcast_to(x.data, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: a tensor of shape {x.shape} cannot be broadcast to {shape}") from None
    return Tensor.from_op(y, (x,), lambda g: (g,), "broadcast_to")


def expand(x: Tensor, *sizes) -> Tensor:
    """``broadcast_to`` with PyTorch's spelling: -1 keeps that axis's size, e.g.
    x.expand(4, -1) for x of shape (1, 3) gives (4, 3).   x̄ = g summed over the repeats.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.40.
    """
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: {sizes} has fewer axes than the tensor's shape {x.shape}")
    shape = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes))
    if any(n < 0 for n in shape):
        raise ValueError(f"expand: -1 is only allowed for an existing axis; got {sizes} for shape {x.shape}")
    return broadcast_to(x, shape)


def _reshaped(x: Tensor, shape: tuple[int, ...], op: str) -> Tensor:
    return Tensor.from_op(x.data.reshape(shape), (x,), lambda g: (g.reshape(x.shape),), op)


def squeeze(x: Tensor, axis=None) -> Tensor:
    """y = x without size-1 axes (all of them, or those in ``axis``).   x̄ = g reshaped back.

    Naming an axis whose size is not 1 is an error (PyTorch silently leaves it; NumPy
    raises, and a silent no-op would hide a shape bug).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    if axis is None:
        drop = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        drop = _axes(axis, x.ndim, "squeeze")
        bad = [ax for ax in drop if x.shape[ax] != 1]
        if bad:
            raise ValueError(f"squeeze: axis {bad[0]} of shape {x.shape} has size {x.shape[bad[0]]}, not 1")
    return _reshaped(x, tuple(n for i, n in enumerate(x.shape) if i not in drop), "squeeze")


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    """y = x with a new size-1 axis at position ``axis`` (-1: last).   x̄ = g reshaped back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    ndim = x.ndim + 1
    if not -ndim <= axis < ndim:
        raise ValueError(f"unsqueeze: axis {axis} is out of range for the {ndim}-d result")
    ax = axis % ndim
    return _reshaped(x, x.shape[:ax] + (1,) + x.shape[ax:], "unsqueeze")


def flatten(x: Tensor, start_axis: int = 0, end_axis: int = -1) -> Tensor:
    """y = x with axes start_axis..end_axis (inclusive) merged into one; a 0-d tensor
    becomes shape (1,), as in PyTorch.   x̄ = g reshaped back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    if x.ndim == 0:
        return _reshaped(x, (1,), "flatten")
    (s,), (e,) = _axes(start_axis, x.ndim, "flatten"), _axes(end_axis, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis} for shape {x.shape}")
    return _reshaped(x, x.shape[:s] + (_count(x.shape, tuple(range(s, e + 1))),) + x.shape[e + 1:], "flatten")


# ----------------------------------------------------------------------------
# more elementwise functions
# ----------------------------------------------------------------------------
# The derivatives below are textbook calculus (no derivation file); each is written
# with whichever of x and y makes it cheapest and free of overflow.
def _sigmoid_of(xp, v):
    """σ(v) without overflow: e^-|v| ≤ 1 is the only exponential taken."""
    e = xp.exp(-xp.abs(v))
    return xp.where(v >= 0, 1 / (1 + e), e / (1 + e))


def square(x: Tensor) -> Tensor:
    """y = x².   x̄ = g · 2x.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.18.
    """
    return Tensor.from_op(x.data * x.data, (x,), lambda g: (g * (2 * x.data),), "square")


def sign(x: Tensor) -> Tensor:
    """y = sign(x) ∈ {-1, 0, 1}.   x̄ = 0 (piecewise constant; 0 also at the jump, as in PyTorch).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.15.
    """
    xp = _xp(x)
    return Tensor.from_op(xp.sign(x.data), (x,), lambda g: (xp.zeros_like(g),), "sign")


def log1p(x: Tensor) -> Tensor:
    """y = ln(1 + x), accurate for tiny x.   x̄ = g / (1 + x).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.17.
    """
    xp = _xp(x)
    with backend.quiet_errors(x.data):
        y = xp.log1p(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / (1 + x.data),), "log1p")


def expm1(x: Tensor) -> Tensor:
    """y = eˣ - 1, accurate for tiny x.   x̄ = g · eˣ = g · (y + 1).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.17.
    """
    y = _xp(x).expm1(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g * (y + 1),), "expm1")


def logsigmoid(x: Tensor) -> Tensor:
    """y = ln σ(x) = min(x, 0) - ln(1 + e^-|x|) (finite for every x).

    x̄ = g · (1 - σ(x)) = g · σ(-x).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.23.
    """
    xp = _xp(x)
    y = xp.minimum(x.data, 0) - xp.log1p(xp.exp(-xp.abs(x.data)))
    return Tensor.from_op(y, (x,), lambda g: (g * _sigmoid_of(xp, -x.data),), "logsigmoid")


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
    xp = _xp(x)
    c = 2.0 / 3.141592653589793 ** 0.5
    return Tensor.from_op(_erf(xp, x.data), (x,), lambda g: (g * (c * xp.exp(-x.data * x.data)),), "erf")


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """y = x if x > 0 else α (eˣ - 1).   x̄ = g if x > 0 else g · α eˣ = g · (y + α).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.20.
    """
    xp = _xp(x)
    y = xp.where(x.data > 0, x.data, alpha * xp.expm1(xp.minimum(x.data, 0)))
    return Tensor.from_op(y, (x,), lambda g: (g * xp.where(x.data > 0, 1, y + alpha),), "elu")


def gelu(x: Tensor) -> Tensor:
    """y = x Φ(x), Φ the standard normal CDF, Φ(x) = ½ (1 + erf(x / √2)) (the exact GELU,
    PyTorch's default).   x̄ = g · (Φ(x) + x φ(x)),   φ(x) = e^(-x²/2) / √(2π).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.21.
    """
    xp = _xp(x)
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
    xp = _xp(x)
    s = _sigmoid_of(xp, x.data)
    return Tensor.from_op(x.data * s, (x,), lambda g: (g * (s * (1 + x.data * (1 - s))),), "silu")


# ----------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------
def one_hot(labels: Any, num_classes: int | None = None, dtype: Any = None) -> Tensor:
    """Integer labels of any shape → a constant tensor of shape labels.shape + (C,) with a 1
    at each label's class (C = ``num_classes``, or the largest label + 1). No gradient:
    labels are data, not parameters.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.42.
    """
    xp = backend.xp() if not backend.is_gpu_array(labels) else backend.array_module(labels)
    y = xp.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and bool(xp.all(y == xp.round(y))):
            y = y.astype(xp.int64)  # whole numbers stored as floats (e.g. a float tensor of labels)
        elif y.size:
            raise TypeError(f"one_hot: labels must be integers, got dtype {y.dtype}")
        else:
            y = y.astype(xp.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if num_classes < 0:
        raise ValueError(f"one_hot: num_classes must be >= 0, got {num_classes}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"one_hot: labels must lie in [0, {num_classes}), got values from {int(y.min())} to {int(y.max())}"
        )
    out = xp.arange(num_classes) == y[..., None]
    return Tensor(out, dtype=dtype)


def _bce_node(logits: Tensor, target: Tensor, value, saved, provider, expand_grad, op: str) -> Tensor:
    """The node shared by the two BCE ops: ``expand_grad`` maps the upstream gradient to
    ℓ's elementwise shape (the identity, or undoing a sum). The provider's ``saved``
    (e^-|l| on the CPU) serves one backward; a second one (retain_graph) recomputes."""

    def backward(g):
        nonlocal saved
        g = expand_grad(g)
        once, saved = saved, None
        gl = provider.bce_logits_grad(logits.data, target.data, once, g) if _need(logits) else None
        gt = -g * logits.data if _need(target) else None
        return gl, gt

    return Tensor.from_op(value, (logits, target), backward, op)


def _bce_operands(op: str, logits: Any, target: Any) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """The two operands as tensors of one dtype, and the shape they broadcast to."""
    logits, target = binary_operands(op, logits, target)
    try:
        shape = backend.numpy.broadcast_shapes(logits.shape, target.shape)
    except ValueError:
        raise ValueError(f"{op}: logits {logits.shape} and target {target.shape} do not broadcast") from None
    return logits, target, shape


def bce_with_logits(logits: Tensor, target: Any) -> Tensor:
    """Elementwise Bernoulli negative log-likelihood from logits l for targets x ∈ [0, 1]:

        ℓ(l, x) = -[x ln σ(l) + (1 - x) ln(1 - σ(l))] = max(l, 0) - l·x + ln(1 + e^-|l|),

    the right-hand form being finite for every l.   ∂ℓ/∂l = σ(l) - x,   ∂ℓ/∂x = -l.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.6.
    """
    logits, target, _ = _bce_operands("bce_with_logits", logits, target)
    provider = provider_for(logits.data)
    value, saved = provider.bce_logits(logits.data, target.data)
    return _bce_node(logits, target, value, saved, provider, lambda g: g, "bce_with_logits")


def bce_with_logits_sum(logits: Tensor, target: Any, axis=None) -> Tensor:
    """y = Σ ℓ(l, x) over ``axis`` (all axes by default), ℓ the elementwise loss of
    :func:`bce_with_logits`, in one node: the value of ``bce_with_logits(l, x).sum(axis)``.

    l̄ = g · (σ(l) - x),   x̄ = -g · l,   with g broadcast back over the summed axes (as for ``sum``).

    Why one node: the elementwise values are summed and dropped in the forward pass
    instead of being kept by the graph until backward, and a provider may never hold
    them all at once (the CPU provider makes them a block of rows at a time). Summing
    over the last axis gives the same row sums as the two-node form; a sum over more
    axes adds those row sums, which may differ from one flat sum in the last float bit.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.6.
    """
    logits, target, shape = _bce_operands("bce_with_logits_sum", logits, target)
    provider = provider_for(logits.data)
    axes = _axes(axis, len(shape))
    if logits.shape == target.shape and axes and axes[-1] == len(shape) - 1:
        sums, saved = provider.bce_logits_row_sums(logits.data, target.data)  # over the last axis
        total = sums.sum(axis=axes[:-1]) if len(axes) > 1 else sums
    else:
        values, saved = provider.bce_logits(logits.data, target.data)
        total = values.sum(axis=axes)
    xp = _xp(logits)
    return _bce_node(logits, target, total, saved, provider,
                     lambda g: _expand_back(g, shape, axes, False, xp), "bce_with_logits_sum")
