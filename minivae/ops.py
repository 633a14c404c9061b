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

from minivae.providers import backend
from minivae.tensor import Tensor, canonical_dtype


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _as_tensor(x: Any, like: Tensor | None, op: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    dtype = like.dtype if like is not None else None
    if like is not None and backend.is_gpu_array(like.data) and not backend.is_gpu_array(x):
        x = backend.array_module(like.data).asarray(x)
    try:
        return Tensor(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{op}: cannot use {type(x).__name__} as an operand ({err})") from err


def _pair(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Lift a binary op's operands to tensors of one dtype."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    a, b = _as_tensor(a, like, op), _as_tensor(b, like, op)
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


def _fast(*arrays):
    """The compiled-kernel provider when one is selected and every array suits it, else None.

    Kernels take C-contiguous arrays of one float dtype; anything else (views with
    strides, broadcasting) runs the reference code below, which handles every case.
    """
    fast = backend.fast_path(arrays[0])
    if fast is None:
        return None
    dtype = arrays[0].dtype
    if all(a.flags.c_contiguous and a.dtype == dtype for a in arrays):
        return fast
    return None


# ----------------------------------------------------------------------------
# arithmetic
# ----------------------------------------------------------------------------
def add(a: Any, b: Any) -> Tensor:
    """y = a + b.   ∂y/∂a = 1, ∂y/∂b = 1, so ā = g, b̄ = g (summed over broadcast axes)."""
    a, b = _pair("add", a, b)
    return Tensor.from_op(_broadcast("add", lambda x, y: x + y, a, b), (a, b), lambda g: (g, g), "add")


def sub(a: Any, b: Any) -> Tensor:
    """y = a - b.   ā = g, b̄ = -g."""
    a, b = _pair("sub", a, b)

    def backward(g):
        return g, (-g if _need(b) else None)

    return Tensor.from_op(_broadcast("sub", lambda x, y: x - y, a, b), (a, b), backward, "sub")


def mul(a: Any, b: Any) -> Tensor:
    """y = a · b.   ā = g · b, b̄ = g · a."""
    a, b = _pair("mul", a, b)

    def backward(g):
        return (g * b.data if _need(a) else None), (g * a.data if _need(b) else None)

    return Tensor.from_op(_broadcast("mul", lambda x, y: x * y, a, b), (a, b), backward, "mul")


def div(a: Any, b: Any) -> Tensor:
    """y = a / b.   ā = g / b, b̄ = -g · a / b²."""
    a, b = _pair("div", a, b)

    def backward(g):
        ga = g / b.data if _need(a) else None
        gb = -g * a.data / (b.data * b.data) if _need(b) else None
        return ga, gb

    return Tensor.from_op(_broadcast("div", lambda x, y: x / y, a, b), (a, b), backward, "div")


def neg(a: Tensor) -> Tensor:
    """y = -a.   ā = -g."""
    return Tensor.from_op(-a.data, (a,), lambda g: (-g,), "neg")


def power(a: Tensor, exponent: float) -> Tensor:
    """y = a^p for a constant scalar p.   ā = g · p · a^(p-1)."""
    if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float)):
        raise TypeError(f"pow: the exponent must be a Python int or float, got {type(exponent).__name__}")
    p = exponent

    def backward(g):
        if p == 2:
            return (g * (2 * a.data),)
        return (g * (p * a.data ** (p - 1)),)

    return Tensor.from_op(a.data ** p, (a,), backward, "pow")


def matmul(a: Any, b: Any) -> Tensor:
    """y = a @ b.   ā = g @ bᵀ, b̄ = aᵀ @ g.

    ``a`` may carry leading batch axes (..., n, k) @ (k, m): then b̄ sums the
    per-batch products, which is aᵀ @ g with the batch axes folded into n.
    Also supported: matrix @ vector and vector @ vector.
    """
    a, b = _pair("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0 or b.ndim > 2 or (b.ndim == 1 and a.ndim > 2):
        raise ValueError(
            f"matmul: unsupported shapes {a.shape} @ {b.shape}; expected (..., n, k) @ (k, m), (n, k) @ (k,), or (k,) @ (k,)"
        )
    if a.shape[-1] != b.shape[0]:
        raise ValueError(
            f"matmul: inner dimensions differ: {a.shape} @ {b.shape} (a has {a.shape[-1]} columns, b has {b.shape[0]} rows)"
        )
    xp = _xp(a)

    def backward(g):
        ga = gb = None
        if b.ndim == 1:  # (n, k) @ (k,) or (k,) @ (k,)
            if _need(a):
                ga = xp.multiply.outer(g, b.data) if a.ndim == 2 else g * b.data
            if _need(b):
                gb = a.data.T @ g if a.ndim == 2 else g * a.data
            return ga, gb
        if _need(a):
            ga = g @ b.data.T
        if _need(b):
            a2 = a.data.reshape(-1, a.shape[-1]) if a.ndim != 1 else a.data.reshape(1, -1)
            gb = a2.T @ g.reshape(a2.shape[0], -1)
        return ga, gb

    return Tensor.from_op(a.data @ b.data, (a, b), backward, "matmul")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None,
           slope: float = 0.01) -> Tensor:
    """y = x @ W + b in one node (a dense layer); with ``activation``, y = f(x @ W + b).

    Without an activation:   x̄ = g @ Wᵀ,   W̄ = xᵀ @ g,   b̄ = Σ_rows g.
    With one (a name from ``ACTIVATIONS``; ``slope`` for leaky_relu), the layer's own
    pre-activation gradient comes first, from the output as in ``_activation``:
        u = x @ W + b,   y = f(u),   ū = g · f'(u) (written with y),
    and then x̄ = ū @ Wᵀ,   W̄ = xᵀ @ ū,   b̄ = Σ_rows ū: the same numbers as
    ``relu(linear(x, W, b))``, in one node, with f applied in place on the product.
    ``x`` may have leading batch axes (..., in); they are folded into the rows.
    One node instead of matmul + add (+ activation) saves temporaries and graph steps.
    """
    x, weight = _pair("linear", x, weight)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not fit weight of shape {weight.shape}; "
            f"expected input (..., {weight.shape[0] if weight.ndim == 2 else 'in'}) and weight (in, out)"
        )
    if bias is not None:
        _, bias = _pair("linear", weight, bias)
        if bias.shape != (weight.shape[1],):
            raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[1]},)")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"linear: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    rows = x.data.reshape(-1, x.shape[-1])
    fast = _fast(rows, weight.data)
    if fast:
        out = fast.matmul(rows, weight.data, bias=None if bias is None else bias.data)
        if activation is not None:  # the product is ours: apply f in place where the provider can
            inplace = getattr(fast, "activation_inplace", None)
            out = inplace(activation, out, slope) if inplace else fast.activation(activation, out, slope)
    else:
        out = rows @ weight.data
        if bias is not None:
            out += bias.data  # in place: out is a fresh matmul result
        if activation is not None:
            out = ACTIVATIONS[activation][0](_xp(x), out, slope)
    y2 = out  # (rows, out): the activation's output, kept for its derivative
    out = out.reshape(x.shape[:-1] + (weight.shape[1],))

    def backward(g):
        g2 = g.reshape(-1, weight.shape[1])
        want_bias = bias is not None and _need(bias)
        if fast and g2.flags.c_contiguous:  # the transposes are read in place by the kernel
            gb = None
            if activation is not None:
                fused = getattr(fast, "activation_grad_bias", None)
                if fused and want_bias:  # ū and b̄ in one pass
                    g2, gb = fused(activation, g2, y2, slope)
                else:
                    g2 = fast.activation_grad(activation, g2, y2, slope)
            gx = fast.matmul(g2, weight.data, trans_b=True).reshape(x.shape) if _need(x) else None
            gw = fast.matmul(rows, g2, trans_a=True) if _need(weight) else None
            if want_bias and gb is None:
                gb = fast.column_sum(g2)
            return gx, gw, gb
        if activation is not None:
            g2 = g2 * ACTIVATIONS[activation][1](_xp(x), y2, slope)
        gx = (g2 @ weight.data.T).reshape(x.shape) if _need(x) else None
        gw = rows.T @ g2 if _need(weight) else None
        gb = g2.sum(axis=0) if want_bias else None
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, "linear" if activation is None else f"linear+{activation}")


# ----------------------------------------------------------------------------
# reductions and shape
# ----------------------------------------------------------------------------
def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(ax % max(ndim, 1) for ax in axes))


def _expand_back(g, x_shape, axes, keepdims, xp):
    """Undo a reduction's shape change so g broadcasts against the input."""
    if not keepdims:
        for ax in axes:
            g = xp.expand_dims(g, ax)
    return xp.broadcast_to(g, x_shape)


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - public name
    """y = Σ x over ``axis``.   x̄ = g broadcast back over the summed axes."""
    axes = _axes(axis, x.ndim)
    xp = _xp(x)
    return Tensor.from_op(
        x.data.sum(axis=axes, keepdims=keepdims),
        (x,),
        lambda g: (_expand_back(g, x.shape, axes, keepdims, xp),),
        "sum",
    )


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """y = (1/n) Σ x over ``axis`` (n elements reduced).   x̄ = g / n broadcast back."""
    axes = _axes(axis, x.ndim)
    n = 1
    for ax in axes:
        n *= x.shape[ax]
    xp = _xp(x)
    return Tensor.from_op(
        x.data.mean(axis=axes, keepdims=keepdims),
        (x,),
        lambda g: (_expand_back(g / n, x.shape, axes, keepdims, xp),),
        "mean",
    )


def reshape(x: Tensor, *shape) -> Tensor:
    """y = x viewed with a new shape.   x̄ = g reshaped back."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot view {x.shape} ({x.size} elements) as {tuple(shape)}") from None
    return Tensor.from_op(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


def transpose(x: Tensor, *axes) -> Tensor:
    """y = x with axes permuted (reversed by default).   x̄ = g with the inverse permutation."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    perm = tuple(axes) if axes else tuple(reversed(range(x.ndim)))
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: {perm} is not a permutation of the {x.ndim} axes of a tensor of shape {x.shape}")
    inverse = tuple(perm.index(i) for i in range(x.ndim))
    return Tensor.from_op(x.data.transpose(perm), (x,), lambda g: (g.transpose(inverse),), "transpose")


def getitem(x: Tensor, key: Any) -> Tensor:
    """y = x[key] (slices, integers, index arrays, masks).

    x̄ = zeros like x with g added at the selected positions (``add.at`` so an
    index that repeats collects every contribution).
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


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """y = [x₁, x₂, ...] joined along ``axis``.   x̄ᵢ = the slice of g that xᵢ occupies."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    first = tensors[0] if isinstance(tensors[0], Tensor) else None
    tensors = [_as_tensor(t, first, "concat") for t in tensors]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"concat: tensors have mixed dtypes {sorted(dtypes)}; convert them to one dtype first")
    xp = _xp(tensors[0])
    try:
        out = xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as err:
        shapes = [t.shape for t in tensors]
        raise ValueError(f"concat: shapes {shapes} cannot be joined along axis {axis} ({err})") from None
    bounds, start = [], 0
    for t in tensors:
        bounds.append((start, start + t.shape[axis]))
        start += t.shape[axis]
    ax = axis % out.ndim

    def backward(g):
        index = [slice(None)] * g.ndim
        grads = []
        for t, (lo, hi) in zip(tensors, bounds):
            index[ax] = slice(lo, hi)
            grads.append(g[tuple(index)] if t.requires_grad else None)
        return tuple(grads)

    return Tensor.from_op(out, tuple(tensors), backward, "concat")


def astype(x: Tensor, dtype: Any) -> Tensor:
    """y = x converted to another float dtype.   x̄ = g converted back."""
    target = canonical_dtype(dtype, "astype")
    if target == x.dtype:
        return x
    source = x.dtype
    return Tensor.from_op(x.data.astype(target), (x,), lambda g: (g.astype(source),), "astype")


# ----------------------------------------------------------------------------
# elementwise functions
# ----------------------------------------------------------------------------
def exp(x: Tensor) -> Tensor:
    """y = eˣ.   x̄ = g · eˣ = g · y."""
    y = _xp(x).exp(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g * y,), "exp")


def log(x: Tensor) -> Tensor:
    """y = ln x.   x̄ = g / x."""
    with backend.quiet_errors(x.data):
        y = _xp(x).log(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / x.data,), "log")


def sqrt(x: Tensor) -> Tensor:
    """y = √x.   x̄ = g / (2√x) = g / (2y)."""
    y = _xp(x).sqrt(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / (2 * y),), "sqrt")


def sin(x: Tensor) -> Tensor:
    """y = sin x.   x̄ = g · cos x."""
    xp = _xp(x)
    return Tensor.from_op(xp.sin(x.data), (x,), lambda g: (g * xp.cos(x.data),), "sin")


def cos(x: Tensor) -> Tensor:
    """y = cos x.   x̄ = -g · sin x."""
    xp = _xp(x)
    return Tensor.from_op(xp.cos(x.data), (x,), lambda g: (-g * xp.sin(x.data),), "cos")


def abs(x: Tensor) -> Tensor:  # noqa: A001 - public name
    """y = |x|.   x̄ = g · sign(x) (the subgradient 0 is used at x = 0)."""
    xp = _xp(x)
    return Tensor.from_op(xp.abs(x.data), (x,), lambda g: (g * xp.sign(x.data),), "abs")


def clip(x: Tensor, low: float, high: float) -> Tensor:
    """y = min(max(x, low), high).   x̄ = g where low ≤ x ≤ high, else 0."""
    xp = _xp(x)
    y = xp.clip(x.data, low, high)
    return Tensor.from_op(y, (x,), lambda g: (g * ((x.data >= low) & (x.data <= high)),), "clip")


# Activations: one table row per function, forward and derivative side by side.
# Each derivative is written in terms of the OUTPUT y (every one of these allows it),
# so the backward pass only needs y. The compiled kernels use the same convention.
ACTIVATIONS = {
    #  name          y = f(x)                                              f'(x) as a function of y
    "relu":       (lambda xp, x, s: xp.maximum(x, 0),                     lambda xp, y, s: y > 0),
    "leaky_relu": (lambda xp, x, s: xp.where(x > 0, x, x * s),            lambda xp, y, s: xp.where(y > 0, 1, s).astype(y.dtype)),
    "sigmoid":    (lambda xp, x, s: _stable_sigmoid(xp, x),               lambda xp, y, s: y * (1 - y)),
    "tanh":       (lambda xp, x, s: xp.tanh(x),                           lambda xp, y, s: 1 - y * y),
    "softplus":   (lambda xp, x, s: xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x))), lambda xp, y, s: -xp.expm1(-y)),
}


def _activation(name: str, x: Tensor, slope: float = 0.0) -> Tensor:
    """y = f(x) elementwise;  x̄ = g · f'(x), with f' read off the table above (from y)."""
    forward, derivative = ACTIVATIONS[name]
    fast = _fast(x.data)
    xp = _xp(x)
    y = fast.activation(name, x.data, slope) if fast else forward(xp, x.data, slope)

    def backward(g):
        if fast and g.flags.c_contiguous:
            return (fast.activation_grad(name, g, y, slope),)
        return (g * derivative(xp, y, slope),)

    return Tensor.from_op(y, (x,), backward, name)


def relu(x: Tensor) -> Tensor:
    """y = max(x, 0).   x̄ = g · [x > 0] (the subgradient 0 at x = 0)."""
    return _activation("relu", x)


def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    """y = x if x > 0 else slope · x (slope ≥ 0).   x̄ = g · (1 if x > 0 else slope)."""
    if slope < 0:
        raise ValueError(f"leaky_relu: slope must be >= 0, got {slope}")
    return _activation("leaky_relu", x, slope)


def _stable_sigmoid(xp, v):
    # For v < 0, eᵛ / (1 + eᵛ) avoids overflowing e⁻ᵛ.
    e = xp.exp(-xp.abs(v))
    return xp.where(v >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(x: Tensor) -> Tensor:
    """y = 1 / (1 + e⁻ˣ) (computed without overflow).   x̄ = g · y · (1 - y)."""
    return _activation("sigmoid", x)


def tanh(x: Tensor) -> Tensor:
    """y = tanh x.   x̄ = g · (1 - y²)."""
    return _activation("tanh", x)


def softplus(x: Tensor) -> Tensor:
    """y = ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|) (no overflow).

    x̄ = g · σ(x), and σ(x) = 1 - e^-y, so the derivative is also a function of y.
    """
    return _activation("softplus", x)


def logsumexp(x: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """y = ln Σᵢ e^{xᵢ} along ``axis``, computed as m + ln Σ e^{xᵢ - m} with m = max x.

    ∂y/∂xᵢ = e^{xᵢ - y} = softmax(x)ᵢ, so x̄ = g · softmax(x).
    """
    xp = _xp(x)
    (ax,) = _axes(axis, x.ndim)
    m = x.data.max(axis=ax, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # rows of all -inf give -inf, not NaN
    with backend.quiet_errors(x.data):
        y_keep = m + xp.log(xp.exp(x.data - m).sum(axis=ax, keepdims=True))
    y = y_keep if keepdims else y_keep.squeeze(ax)

    def backward(g):
        g_keep = g if keepdims else xp.expand_dims(g, ax)
        return (g_keep * xp.exp(x.data - y_keep),)

    return Tensor.from_op(y, (x,), backward, "logsumexp")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax(x) = x - logsumexp(x) (composed; its gradient follows from the two ops)."""
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax(x) = exp(log_softmax(x)) (composed)."""
    return exp(log_softmax(x, axis=axis))


def _bce_values(logits: Tensor, target: Tensor):
    """(ℓ elementwise, the provider or None, e^-|l| if the provider saved it): the forward of the two ops below."""
    xp = _xp(logits)
    l, t = logits.data, target.data
    fast = _fast(l, t) if l.shape == t.shape else None
    # A provider may save e^-|l| in the forward pass, so the backward needs no exp.
    saving = getattr(fast, "bce_logits_saving", None) if fast else None
    saved = None
    try:
        if saving:
            value, saved = saving(l, t)
        else:
            value = fast.bce_logits(l, t) if fast else xp.maximum(l, 0) - l * t + xp.log1p(xp.exp(-xp.abs(l)))
    except ValueError:
        raise ValueError(f"bce_with_logits: logits {logits.shape} and target {target.shape} do not broadcast") from None
    return value, fast, saved


def _bce_backward(logits: Tensor, target: Tensor, fast, saved):
    """The VJP of ℓ(l, x) for an upstream g of ℓ's (broadcast) shape: (g · (σ(l) - x), -g · l).

    Each call may use the saved e^-|l| once: the gradient overwrites it (no new buffer),
    and a second backward through the node (retain_graph=True) recomputes e instead.
    """
    xp = _xp(logits)
    l, t = logits.data, target.data

    def backward(g):
        nonlocal saved
        if fast and _need(logits):
            gt = -g * l if _need(target) else None
            if saved is not None:  # reads a broadcast g in place
                e, saved = saved, None
                return fast.bce_logits_grad_saved(l, t, e, g, out=e), gt
            # In a model g is usually the broadcast (stride-0) gradient of a sum:
            # one contiguous copy plus one fused pass, instead of the reference's chain of ops.
            g = g if g.flags.c_contiguous else xp.ascontiguousarray(g)
            return fast.bce_logits_grad(l, t, g), gt
        gl = g * (_stable_sigmoid(xp, l) - t) if _need(logits) else None
        gt = -g * l if _need(target) else None
        return gl, gt

    return backward


def bce_with_logits(logits: Tensor, target: Any) -> Tensor:
    """Elementwise Bernoulli negative log-likelihood from logits l for targets x ∈ [0, 1]:

        ℓ(l, x) = -[x ln σ(l) + (1 - x) ln(1 - σ(l))] = max(l, 0) - l·x + ln(1 + e^-|l|),

    the right-hand form being finite for every l.   ∂ℓ/∂l = σ(l) - x,   ∂ℓ/∂x = -l.
    """
    logits, target = _pair("bce_with_logits", logits, target)
    value, fast, saved = _bce_values(logits, target)
    return Tensor.from_op(value, (logits, target), _bce_backward(logits, target, fast, saved), "bce_with_logits")


def bce_with_logits_sum(logits: Tensor, target: Any, axis=None) -> Tensor:
    """y = Σ ℓ(l, x) over ``axis`` (all axes by default), ℓ the elementwise loss of
    :func:`bce_with_logits`, in one node: the value of ``bce_with_logits(l, x).sum(axis)``.

    l̄ = g · (σ(l) - x),   x̄ = -g · l,   with g broadcast back over the summed axes (as for ``sum``).

    Why one node: the elementwise values are summed and dropped in the forward pass
    instead of being kept by the graph until backward, and the CPU provider never
    holds them all at once (it makes them a block of rows at a time): one or two
    batch x pixels arrays fewer allocated in every training step. Summing over the
    last axis gives the same row sums as the two-node form; a sum over more axes
    adds those row sums, which may differ from one flat sum in the last float bit.
    """
    logits, target = _pair("bce_with_logits_sum", logits, target)
    xp = _xp(logits)
    fast = _fast(logits.data, target.data) if logits.shape == target.shape and logits.ndim >= 1 else None
    row_sums = getattr(fast, "bce_logits_row_sums_saving", None) if fast else None
    axes = _axes(axis, max(logits.ndim, target.ndim))
    if row_sums and axes[-1] == logits.ndim - 1:  # a provider that never holds all the values
        total, saved = row_sums(logits.data, target.data)  # summed over the last axis
        shape = logits.shape
        if len(axes) > 1:
            total = total.sum(axis=axes[:-1])
    else:
        value, fast, saved = _bce_values(logits, target)
        shape = value.shape
        total = value.sum(axis=axes)
        del value  # the point of this node: the elementwise values are not kept
    elementwise = _bce_backward(logits, target, fast, saved)

    def backward(g):
        return elementwise(_expand_back(g, shape, axes, False, xp))

    return Tensor.from_op(total, (logits, target), backward, "bce_with_logits_sum")
