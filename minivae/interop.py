"""How a :class:`~minivae.tensor.Tensor` meets NumPy, matplotlib and Python's own conversions.

The rules follow PyTorch, and README "Conventions" lists them:

* **Conversion to an array** (``np.asarray(t)``, ``plt.imshow(t)``, anything that calls
  ``__array__``): a tensor without a gradient converts to its values (a float array, never
  an object array; a GPU tensor is copied to the host). A tensor that requires grad is
  refused with a ``TypeError`` naming ``.detach()``: the array would silently leave the
  graph, which is the bug a student would not see. ``t.numpy()`` is the explicit way and,
  unlike PyTorch's, works on any tensor (it says what it does; the repository's models
  and examples rely on it).
* **NumPy ufuncs** (``np.exp(t)``, ``np.add(a, t)``, ``ndarray + t``): a ufunc minivae has
  as an op runs that op, so the result is a Tensor and keeps its gradient. Any other
  ufunc (or one called with ``out=``, ``where=``, ``dtype=`` or a method such as
  ``np.add.reduce``) runs on the values when no input requires grad, and is a
  ``TypeError`` naming the fix otherwise.
* **NumPy functions** (``np.mean(t)``, ``np.sum(t, axis=0)``, ``np.concatenate``): the same
  rule through ``__array_function__``: a function minivae has (with arguments it
  supports) runs as the minivae op; others run on the values, or refuse a tensor that
  requires grad. Shape queries (``np.shape``, ``np.ndim``, ``np.size``) always work.
* **Python numbers** (``float(t)``, ``int(t)``, ``t.item()``, ``bool(t)``): one-element
  tensors only, with or without a gradient; a larger one is an error saying how many
  elements it has (``bool`` of one is ambiguous, as in NumPy and PyTorch).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from minivae import ops
from minivae.providers import backend
from minivae.tensor import Tensor

UFUNC_OPS: dict[np.ufunc, str] = {
    np.add: "add", np.subtract: "sub", np.multiply: "mul", np.true_divide: "div", np.power: "power",
    np.matmul: "matmul", np.negative: "neg", np.absolute: "abs", np.exp: "exp", np.log: "log",
    np.sqrt: "sqrt", np.square: "square", np.sign: "sign", np.log1p: "log1p", np.expm1: "expm1",
    np.tanh: "tanh", np.sin: "sin", np.cos: "cos", np.maximum: "maximum", np.minimum: "minimum",
    np.equal: "eq", np.not_equal: "ne", np.less: "lt", np.less_equal: "le", np.greater: "gt",
    np.greater_equal: "ge",
}  # ufunc -> the name of the minivae op that computes it, gradient included (looked up when called)


def _reduction(name: str) -> Callable[..., Tensor | None]:
    """np.sum/np.mean(a, axis, dtype, out, keepdims) and np.max/np.min(a, axis, out, keepdims):
    the op when only axis and keepdims are given (None means 'not here: run NumPy's own').
    ``__array_function__`` passes only what the caller wrote, so ``rest`` holds extras."""
    def call(a, axis=None, *more, keepdims=False, **rest):
        if any(m is not None for m in more) or any(v is not None for v in rest.values()):
            return None  # dtype=, out=, initial=, where=: not minivae's
        return getattr(ops, name)(a, axis, bool(keepdims))
    return call


def _spread(name: str) -> Callable[..., Tensor | None]:
    """np.var / np.std: NumPy's ``ddof`` (default 0, unlike minivae's correction=1) becomes ``correction``."""
    def call(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **rest):
        if dtype is not None or out is not None or rest:
            return None
        return getattr(ops, name)(a, axis, bool(keepdims), int(ddof))
    return call


def _positional(name: str, *allowed: str) -> Callable[..., Tensor | None]:
    def call(*args, **kwargs):
        if set(kwargs) - set(allowed):
            return None
        return getattr(ops, name)(*args, **kwargs)
    return call


FUNCTION_OPS: dict[Callable[..., Any], Callable[..., Tensor | None]] = {
    np.sum: _reduction("sum"), np.mean: _reduction("mean"),
    np.max: _reduction("max"), np.min: _reduction("min"),
    np.amax: _reduction("max"), np.amin: _reduction("min"),
    np.var: _spread("var"), np.std: _spread("std"),
    np.reshape: lambda a, shape=None, **kw: None if kw or shape is None else ops.reshape(a, shape),
    np.transpose: lambda a, axes=None: ops.transpose(a) if axes is None else ops.transpose(a, *axes),
    np.concatenate: _positional("concat", "axis"), np.stack: _positional("stack", "axis"),
    np.squeeze: _positional("squeeze", "axis"), np.where: _positional("where"),
    np.argmax: _positional("argmax", "axis"), np.argmin: _positional("argmin", "axis"),  # indices: no gradient
}

# Questions about the shape, answered for any tensor (they touch no values).
SHAPE_QUERIES = {np.shape, np.ndim, np.size}


def refuse_grad(t: Tensor, what: str) -> None:
    """The one message for an implicit conversion of a tensor that requires grad."""
    if t.requires_grad:
        # one element: most likely a loss kept for a plot or a log (losses.append(loss); plt.plot(losses))
        scalar = "; for a loss to plot or log, use loss.item() (a float)" if t.size == 1 else ""
        raise TypeError(
            f"{what}: this tensor {t.shape} requires grad, and an array would silently drop its gradient. "
            f"Call t.detach() first (or t.numpy() for the values), or compute it under mv.no_grad(){scalar}"
        )


def as_array(t: Tensor, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``t.__array__``: the values as a NumPy array (see the module docstring for the rules)."""
    refuse_grad(t, "np.asarray(tensor)")
    values = backend.to_numpy(t.data)
    if dtype is not None and values.dtype != np.dtype(dtype):
        if copy is False:
            raise ValueError(f"np.asarray(tensor, dtype={dtype}, copy=False): the {values.dtype} values need a copy")
        return values.astype(dtype)
    return values.copy() if copy else values


def _to_values(value: Any, what: str) -> Any:
    """Tensors (also inside lists and tuples) replaced by their NumPy values."""
    if isinstance(value, Tensor):
        refuse_grad(value, what)
        return backend.to_numpy(value.data)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_values(v, what) for v in value)
    return value


def _needs_grad(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, (list, tuple)):
        return any(_needs_grad(v) for v in value)
    if isinstance(value, dict):
        return any(_needs_grad(v) for v in value.values())
    return False


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``Tensor.__array_ufunc__``: the minivae op when there is one, else NumPy on the values."""
    op = UFUNC_OPS.get(ufunc)
    if op is not None and method == "__call__" and not kwargs:
        return getattr(ops, op)(*inputs)
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    how = f" (minivae has it as mv.{op}, without out=/where=/dtype=)" if op is not None else ""
    try:
        args = _to_values(inputs, name)
        if "out" in kwargs:
            kwargs = {**kwargs, "out": _to_values(kwargs["out"], name)}
    except TypeError as err:
        raise TypeError(f"{err}{how}") from None
    return getattr(ufunc, method)(*args, **kwargs)


def array_function(func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``Tensor.__array_function__``: the minivae op when there is one, else NumPy on the values."""
    if func in SHAPE_QUERIES:
        args = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        return func(*args, **kwargs)
    op = FUNCTION_OPS.get(func)
    if op is not None:
        try:
            result = op(*args, **kwargs)
        except TypeError:  # arguments the minivae op does not take: NumPy's own, on the values
            if _needs_grad((args, kwargs)):
                raise  # the op's own error, not a refusal to convert
            result = None
        if result is not None:
            return result
    name = f"np.{func.__name__}"
    return func(*_to_values(args, name), **{k: _to_values(v, name) for k, v in kwargs.items()})
