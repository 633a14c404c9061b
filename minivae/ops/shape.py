"""Shape ops: views, permutations, indexing, joins, broadcast copies and dtype casts.

Each only re-labels, selects or repeats elements, so its VJP puts g back into the
input's shape: a reshape, an inverse permutation, a scatter-add, a slice, or a sum
over the repeated axes. Derivations: derivations/15_vjp_rules.md, Eq. 15.36-15.40.
"""

from __future__ import annotations

from typing import Any, Sequence

from minivae.ops.operands import array_module, element_count, reduction_axes, same_dtype
from minivae.tensor import Tensor, canonical_dtype


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


def clone(x: Any) -> Tensor:
    """y = a copy of x in memory of its own, in the graph (PyTorch's ``clone``).   x̄ = g.

    Changing ``y.data`` in place then leaves ``x`` alone, and the gradient still flows
    back to ``x`` (``detach()`` is the other way: the same values, cut from the graph).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"clone: expected a Tensor, got {type(x).__name__}")
    return Tensor.from_op(x.data.copy(), (x,), lambda g: (g,), "clone")


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


def _reshaped(x: Tensor, shape: tuple[int, ...], op: str) -> Tensor:
    """The node of squeeze / unsqueeze / flatten: a view, its VJP g reshaped back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36."""
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
        drop = reduction_axes(axis, x.ndim, "squeeze")
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
    (s,), (e,) = reduction_axes(start_axis, x.ndim, "flatten"), reduction_axes(end_axis, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis} for shape {x.shape}")
    return _reshaped(x, x.shape[:s] + (element_count(x.shape, tuple(range(s, e + 1))),) + x.shape[e + 1:], "flatten")


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """y = x repeated along broadcast axes to ``shape`` (NumPy's rules; a read-only view).

    x̄ = g summed over the axes that were added or stretched (the engine's unbroadcast).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.40.
    """
    shape = tuple(int(n) for n in shape)
    try:
        y = array_module(x).broadcast_to(x.data, shape)
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


def getitem(x: Tensor, key: Any) -> Tensor:
    """y = x[key] (slices, integers, index arrays, masks).

    x̄ = zeros like x with g added at the selected positions (``add.at`` so an
    index that repeats collects every contribution).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.38.
    """
    keys = key if isinstance(key, tuple) else (key,)
    index_tensor = next((k for k in keys if isinstance(k, Tensor)), None)
    if index_tensor is not None:  # a PyTorch habit: x[idx] with idx = mv.tensor([2, 0]), which is float
        raise IndexError(
            f"getitem: the index is a {index_tensor.dtype} tensor of shape {index_tensor.shape} (minivae tensors "
            f"are always float, mv.tensor([2, 0]) included); index the tensor of shape {x.shape} with an integer "
            "NumPy array or a list (x[np.array([2, 0])]), or a boolean mask (x[x > 0])"
        )
    try:
        out = x.data[key]
    except IndexError as err:
        raise IndexError(f"getitem: index {key!r} is invalid for a tensor of shape {x.shape} ({err})") from None
    xp = array_module(x)

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
    """y = [x₁, x₂, ...] joined along ``axis``.   x̄ᵢ = the slice of g that xᵢ occupies.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.39.
    """
    tensors = same_dtype("concat", tensors)
    if tensors[0].ndim == 0:
        raise ValueError("concat: 0-d tensors have no axis to join along; use stack to make a new axis")
    xp = array_module(tensors[0])
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


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """y = [x₁, x₂, ...] along a new axis (all of one shape).   x̄ᵢ = g's i-th slice along that axis.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.39.
    """
    tensors = same_dtype("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: tensors have different shapes {sorted(shapes)}; stack needs one shape")
    ndim = tensors[0].ndim + 1
    if not -ndim <= axis < ndim:
        raise ValueError(f"stack: axis {axis} is out of range for the {ndim}-d result")
    ax = axis % ndim
    xp = array_module(tensors[0])
    out = xp.stack([t.data for t in tensors], axis=ax)

    def backward(g):
        return tuple(xp.take(g, i, axis=ax) if t.requires_grad else None for i, t in enumerate(tensors))

    return Tensor.from_op(out, tuple(tensors), backward, "stack")


def astype(x: Tensor, dtype: Any) -> Tensor:
    """y = x converted to another float dtype.   x̄ = g converted back.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.36.
    """
    target = canonical_dtype(dtype, "astype")
    if target == x.dtype:
        return x
    source = x.dtype
    return Tensor.from_op(x.data.astype(target), (x,), lambda g: (g.astype(source),), "astype")
