"""What every op does before its math: lift its operands to tensors and name its axes.

- ``as_tensor`` / ``binary_operands`` / ``same_dtype``: Python scalars and raw arrays
  become constants in the dtype of the tensor they meet; two tensors of different
  float dtypes are an error (no silent upcast).
- ``array_module(t)``: NumPy or CuPy, whichever holds ``t``'s array, so one op body
  runs on both.
- ``reduction_axes`` / ``element_count`` / ``expand_back``: the axes a reduction runs
  over, how many elements it combines, and how its VJP broadcasts g back.

None of these is an op (no node, no derivative): they have no derivation.
"""

from __future__ import annotations

from typing import Any, Sequence

from minivae.providers import backend
from minivae.tensor import Tensor


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


def same_dtype(op: str, tensors: Sequence[Any]) -> list[Tensor]:
    """A list of tensors and raw values lifted to tensors of one dtype: raw values take
    the dtype of the tensors, wherever they stand in the list.
    Derivation: none (a helper that lifts operands, not an op)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    tensors = [as_tensor(t, like, op) for t in tensors]
    dtypes = {str(t.dtype) for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: tensors have mixed dtypes {sorted(dtypes)}; convert them to one dtype first")
    return tensors


def broadcast_values(op: str, fn, a: Tensor, b: Tensor):
    """``fn(a, b)`` on the two tensors' arrays; a broadcast failure names ``op`` and both shapes.
    Derivation: none (a helper, not an op)."""
    try:
        return fn(a.data, b.data)
    except ValueError as err:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together ({err})") from None


def array_module(t: Tensor):
    """The array module that holds ``t``'s data: ``numpy``, or ``cupy`` for a tensor on a GPU.
    Write ``xp = array_module(t)`` and then ``xp.exp(t.data)``: the same code runs on both.
    Derivation: none (a helper, not an op)."""
    return backend.array_module(t.data)


def needs_grad(t: Tensor) -> bool:
    """Whether backward must compute a gradient for ``t`` (skip the work otherwise).
    Derivation: none (a helper, not an op)."""
    return t.requires_grad


def reduction_axes(axis, ndim: int, op: str = "reduction") -> tuple[int, ...]:
    """The axes a reduction runs over, sorted and non-negative (``None``: all of them).

    As in PyTorch, a 0-d tensor accepts axis 0 or -1 and reduces over nothing.
    Derivation: none (a helper, not an op).
    """
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, backend.numpy.integer)) else tuple(axis)
    n = ndim if ndim > 0 else 1
    for ax in axes:
        if not isinstance(ax, (int, backend.numpy.integer)) or not -n <= ax < n:
            raise ValueError(f"{op}: axis {ax!r} is out of range for a tensor with {ndim} dimensions")
    if ndim == 0:
        return ()
    normalized = sorted(int(ax) % n for ax in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{op}: axis {axis!r} names the same axis twice")
    return tuple(normalized)


def element_count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    """How many elements a reduction over ``axes`` combines (0 for an empty axis).
    Derivation: none (a helper, not an op)."""
    n = 1
    for ax in axes:
        n *= shape[ax]
    return n


def expand_back(g, x_shape, axes, keepdims, xp):
    """Undo a reduction's shape change so g broadcasts against the input (the step every
    reduction's VJP shares). Derivation: derivations/15_vjp_rules.md, Eq. 15.4."""
    if not keepdims:
        for ax in axes:
            g = xp.expand_dims(g, ax)
    return xp.broadcast_to(g, x_shape)
