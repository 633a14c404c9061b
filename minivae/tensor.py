"""Tensor and the reverse-mode engine.

A :class:`Tensor` holds a backend array (``.data``) and, when it was produced by
an op while gradients were being recorded, the op's name, its inputs
(``_parents``) and a function ``_backward(g)`` mapping the gradient of the
output to the gradients of the inputs (the vector-Jacobian products).

``loss.backward()`` walks the graph in reverse topological order, calls each
node's ``_backward`` once with the sum of all gradients that reached it, sums
broadcast axes back to each input's shape, and adds the result into the
``.grad`` of leaf tensors. The ops themselves live in :mod:`minivae.ops`, which
also gives this class its operators (``install_tensor_operators``).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import weakref
from typing import Any, Callable, Iterator, Sequence

from minivae.providers import backend

FLOAT_DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"

# Recording and anomaly checking are switched per context (thread / task), not
# through a module global, so a `no_grad()` block in one thread leaves others alone.
_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("minivae_grad_enabled", default=True)
_anomaly_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("minivae_anomaly_mode", default=False)
# Each backward() gets a number; a node that keeps a .grad records which passes it holds and
# which array it wrote (``_grad_record``: first pass, last pass, a weak reference to the array),
# so a drawing of gradients can tell a fresh one from a summed, stale or hand-set one.
_backward_pass_numbers = itertools.count(1)


class AnomalyError(FloatingPointError):
    """Raised under :func:`detect_anomaly` when an op produces NaN or Inf."""


class GraphFreedError(RuntimeError):
    """Raised when backward() reaches a graph that an earlier backward() freed."""


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Evaluate without recording a graph (inference, optimizer updates, evaluation)."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


def is_anomaly_enabled() -> bool:
    """True inside :func:`detect_anomaly` (in this thread / task)."""
    return _anomaly_mode.get()


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Check every op's output and every backward gradient for NaN/Inf.

    The first op that produces a non-finite value raises :class:`AnomalyError`
    naming the op and its input shapes; so does a NumPy floating-point report
    (overflow, divide by zero, invalid value) inside an op (:mod:`minivae.numerics`).
    Slow: for debugging only.
    """
    token = _anomaly_mode.set(True)
    try:
        yield
    finally:
        _anomaly_mode.reset(token)


_SCALARS = (float, int, bool)


def _check_real(data: Any, where: str) -> None:
    """Refuse what a float tensor cannot hold faithfully, instead of converting it silently:
    complex values (NumPy would drop the imaginary part) and non-numbers such as None
    (NumPy would make them NaN) or strings."""
    if type(data) in _SCALARS:
        return
    kind = getattr(getattr(data, "dtype", None), "kind", None)
    if kind is None:  # lists, tuples, complex or other Python objects
        if isinstance(data, complex):
            kind = "c"
        else:
            try:
                kind = backend.numpy.asarray(data).dtype.kind
            except ValueError as err:  # ragged nested lists
                raise ValueError(f"{where}: cannot make an array from {type(data).__name__} ({err})") from None
    if kind == "c":
        raise TypeError(
            f"{where}: complex values are not supported (converting would drop the imaginary part); "
            "pass the real part explicitly (x.real) if that is what you mean"
        )
    if kind == "O":
        values = backend.numpy.asarray(data, dtype=object).reshape(-1)
        for i, v in enumerate(values):
            if isinstance(v, complex) or not isinstance(v, (int, float, backend.numpy.number)):
                raise TypeError(
                    f"{where}: element {i} of the data is {v!r} ({type(v).__name__}); expected real numbers only "
                    "(None and other objects would become NaN)"
                )
    elif kind not in "fiub":
        raise TypeError(f"{where}: data of dtype {getattr(data, 'dtype', kind)} is not numeric; expected real numbers")


def canonical_dtype(dtype: Any, where: str = "tensor") -> str:
    """'float32' or 'float64' from any spelling (None means float32); anything else is an error."""
    if dtype is None:
        return DEFAULT_DTYPE
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    name = {"float": "float64", "double": "float64", "single": "float32"}.get(name, name)
    if name not in FLOAT_DTYPES:
        raise TypeError(f"{where}: dtype {dtype!r} is not supported; minivae tensors are float32 or float64")
    return name


class Tensor:
    """An array with an optional gradient and the record of how it was computed."""

    # Let `ndarray <op> Tensor` call the Tensor's reflected operator.
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None) -> None:
        if isinstance(data, Tensor):
            data, dtype = data.data, dtype or data.dtype
        else:
            _check_real(data, "tensor")
        self.data = backend.to_backend(data, dtype=canonical_dtype(dtype))
        self.grad: Any = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.op = "input"
        self.stochastic = False
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[Any], Sequence[Any]] | None = None
        self._freed = False
        self._retains_grad = False

    # -- construction by ops -------------------------------------------------
    @classmethod
    def from_op(
        cls,
        data: Any,
        parents: tuple["Tensor", ...],
        backward: Callable[[Any], Sequence[Any]],
        op: str,
        stochastic: bool = False,
    ) -> "Tensor":
        """A new node of the graph: the public way to write your own op.

        ``data`` is the output array (computed from the parents' ``.data``),
        ``parents`` the input tensors, ``op`` a name for error messages and graphs,
        and ``backward(g)`` the vector-Jacobian product: given g = dL/d(output), an
        array of the output's shape, it returns a tuple with one gradient (or None)
        per parent, each of the parent's dtype and of the parent's shape (or of the
        broadcast output shape: the engine then sums it down). ``stochastic=True``
        marks a sampling node (drawn differently in graphs). The edge is recorded only
        when some parent requires a gradient and recording is on (not in ``no_grad``)::

            def cube(x: Tensor) -> Tensor:
                return Tensor.from_op(x.data ** 3, (x,), lambda g: (g * 3 * x.data ** 2,), "cube")

        A backward that returns a bare array or the wrong number of gradients is an
        error naming the op. See "Write your own op" (course/write_your_own_op.md).
        """
        out = cls.__new__(cls)
        out.data = data if type(data) is backend.numpy.ndarray else backend.array_module(data).asarray(data)
        out.grad = None
        out.name = None
        out.op = op
        out.stochastic = stochastic
        out._freed = False
        out._retains_grad = False
        if _anomaly_mode.get():
            _check_finite(out.data, f"forward of '{op}'", parents)
        if _grad_enabled.get() and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
        else:
            out.requires_grad = False
            out._parents = ()
            out._backward = None
        return out

    # -- basic properties -----------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        """The NumPy dtype of the values (as for NumPy and CuPy arrays): it compares equal to
        ``"float32"``, ``np.float32`` and ``np.dtype("float32")`` alike, and prints as ``float32``."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        return self._backward is None and not self._freed

    @property
    def parents(self) -> tuple["Tensor", ...]:
        """The tensors this one was computed from, in the op's argument order (read-only;
        empty for a leaf, for a result made under ``no_grad()``, and after the graph is freed)."""
        return self._parents

    def numpy(self):
        """The values as a NumPy array (a copy for GPU tensors), with or without a gradient:
        the explicit conversion. (PyTorch refuses ``.numpy()`` on a tensor that requires
        grad; minivae refuses only the implicit ``np.asarray(t)``, see :mod:`minivae.interop`.)"""
        return backend.to_numpy(self.data)

    def item(self) -> float:
        """The value of a one-element tensor (any shape) as a Python float, as in PyTorch."""
        return self._one_value("item()")

    def tolist(self) -> Any:
        """The values as nested Python lists of floats (a float for a 0-d tensor), as in PyTorch."""
        return backend.to_numpy(self.data).tolist()

    def _one_value(self, what: str) -> float:
        if self.data.size != 1:
            raise ValueError(
                f"{what}: only a one-element tensor converts to a Python number; this one has shape "
                f"{self.shape} ({self.size} elements). Reduce it first (.sum(), .mean()) or index one element"
            )
        return float(self.data.reshape(-1)[0])

    # -- Python and NumPy conversions (the rules: minivae/interop.py) -------------
    def __float__(self) -> float:
        return self._one_value("float(tensor)")

    def __int__(self) -> int:
        return int(self._one_value("int(tensor)"))  # truncates toward zero, as int(2.7) and PyTorch do

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"bool(tensor): the truth value of a tensor with {self.size} elements (shape {self.shape}) is "
                "ambiguous; use (t != 0).any() / .all() on the comparison, or compare one element"
            )
        return bool(self.data.reshape(-1)[0])

    def __array__(self, dtype: Any = None, copy: bool | None = None):
        return interop.as_array(self, dtype, copy)

    def __array_ufunc__(self, ufunc, method: str, *inputs, **kwargs):
        return interop.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return interop.array_function(func, args, kwargs)

    def detach(self) -> "Tensor":
        """The same values, cut from the graph (shares memory)."""
        return Tensor(self.data, dtype=self.dtype)

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after backward (for teaching and debugging)."""
        self._retains_grad = True
        return self

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if not self.is_leaf:
            raise RuntimeError(f"requires_grad_: only leaf tensors can change requires_grad (this is the output of '{self.op}')")
        self.requires_grad = bool(flag)
        return self

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self.op}" if self.op != "input" else ""
        name = f", name={self.name!r}" if self.name else ""  # a parameter's dotted name: which one is printed
        return f"Tensor({self.numpy()!r}, dtype={self.dtype}{grad}{op}{name})"

    def __format__(self, spec: str) -> str:
        """``f"{loss:.3f}"``: a format spec formats the value of a one-element tensor, as for a
        float (an integer code such as ``d`` takes a whole value); no spec gives ``str(t)``."""
        if not spec:
            return str(self)
        if self.data.size != 1:
            raise TypeError(
                f"format(tensor, {spec!r}): a format spec applies to a one-element tensor; this one has shape "
                f"{self.shape} ({self.size} elements). Format one value (t[i].item()) or the array (t.numpy())"
            )
        value = self._one_value("format(tensor)")
        if spec[-1] in "bcdoxXn" and value.is_integer():  # tensors are float; "{:d}" of 7.0 means 7
            return format(int(value), spec)
        return format(value, spec)

    def __round__(self, ndigits: int | None = None) -> float | int:
        """``round(loss, 3)``: the value of a one-element tensor rounded, as ``round`` of a float."""
        if self.data.size != 1:
            raise TypeError(
                f"round(tensor): only a one-element tensor rounds to a Python number; this one has shape "
                f"{self.shape} ({self.size} elements). Round the values with np.round(t.numpy(), ndigits)"
            )
        return round(self._one_value("round(tensor)"), ndigits)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor (it has no first axis); use t.size or t.item()")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tensor"]:
        """The rows (``t[0]``, ``t[1]``, ...), each a node of the graph. Without this Python would
        iterate through ``__getitem__`` until an IndexError, and a 0-d tensor would be an empty loop."""
        if self.ndim == 0:
            raise TypeError("cannot iterate over a 0-d tensor (it has no first axis); use t.item() for its value")
        return (self[i] for i in range(self.shape[0]))

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(
            "t[...] = value: tensors are not assigned in place (the graph would not see the change). Build a new "
            "tensor (mv.where(mask, value, t), mv.concat), or change a leaf's values outside the graph "
            "(no gradient sees it) with t.data[...] = value"
        )

    # == and != are elementwise (below), so a tensor's hash cannot follow its values: it is its
    # identity, which keeps tensors usable as dict keys and set members (the engine's own
    # bookkeeping and optimizers rely on it; dicts and sets compare by `is` before `==`).
    def __hash__(self) -> int:
        return id(self)

    # -- the reverse pass -------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the seed (the gradient of some scalar with respect to ``self``);
        it may be omitted only when ``self`` has one element. The graph is freed
        afterwards unless ``retain_graph=True``.
        """
        if self._freed:
            raise GraphFreedError(_freed_message(self))
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad (no input had requires_grad=True, "
                "or it was computed under no_grad())"
            )
        xp = backend.array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: the output has shape {self.shape}; a seed gradient is needed for a non-scalar "
                    "output: call .backward(grad) with an array of that shape, or reduce it with .sum()/.mean() first"
                )
            seed = xp.ones_like(self.data)
        else:
            seed = xp.array(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if seed.shape != self.data.shape:
                raise ValueError(f"backward: seed gradient has shape {seed.shape}, expected the output's shape {self.shape}")

        order = _topological_order(self)
        pass_number = self._backward_pass = next(_backward_pass_numbers)
        # id(node) -> (gradient, owned). An "owned" gradient is a fresh array no one
        # else holds, so further contributions can be added into it in place.
        pending: dict[int, tuple[Any, bool]] = {id(self): (seed, True)}
        anomaly = _anomaly_mode.get()
        for node in reversed(order):
            entry = pending.pop(id(node), None)
            if entry is None:
                continue
            g, owned = entry
            if node._backward is None or node._retains_grad:
                _accumulate_leaf(node, g, owned, pass_number)
            if node._backward is None:
                continue
            parent_grads = node._backward(g)
            if type(parent_grads) is not tuple and type(parent_grads) is not list or len(parent_grads) != len(node._parents):
                _check_backward_result(node, parent_grads)
            for i, (parent, pg) in enumerate(zip(node._parents, parent_grads)):
                if pg is None or not parent.requires_grad:
                    continue
                data = parent.data
                if type(pg) is _ndarray and pg.shape == data.shape and pg.dtype == data.dtype:
                    pg_owned = pg is not g and pg.base is None  # (_fit_to's answer, without the call)
                else:
                    pg, pg_owned = _fit_to(pg, parent, node, i, upstream=g)
                if anomaly:
                    _check_finite(pg, f"backward of '{node.op}' (gradient for input {i}, {describe(parent)})",
                                  node._parents)
                key = id(parent)
                entry = pending.get(key)
                if entry is not None:
                    acc, acc_owned = entry
                    if acc_owned:
                        acc += pg  # an array (even 0-d) that only this pass holds: add in place
                    else:
                        # a + b of two 0-d arrays is a NumPy scalar, which a later in-place
                        # add would silently rebind: keep every gradient an array.
                        pending[key] = (_as_array(acc + pg), True)
                else:
                    pending[key] = (pg, pg_owned)
        if not retain_graph:
            for node in order:
                if node._backward is not None:
                    node._backward = None
                    node._parents = ()
                    node._freed = True

    # The operators (x + y, x @ W, x[i], x.sum(), ...) are calls into the ops, given to this
    # class in one place: minivae.ops.install_tensor_operators(), run by minivae/__init__.py.


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that need a gradient, each after all of its inputs (iterative DFS)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        if node._freed:
            raise GraphFreedError(_freed_message(node))
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return order


_ndarray = backend.numpy.ndarray


def _fit_to(pg: Any, parent: Tensor, node: Tensor, index: int, upstream: Any) -> tuple[Any, bool]:
    """Sum a gradient over broadcast axes to the parent's shape; report if it is a fresh array."""
    if type(pg) is not backend.numpy.ndarray:
        pg = _as_array(pg)
    fresh = pg is not upstream and pg.base is None
    if pg.shape != parent.data.shape:
        pg = unbroadcast(pg, parent.data.shape)
        fresh = True
        if pg.shape != parent.data.shape:
            raise RuntimeError(
                f"backward of '{node.op}': gradient for input {index} ({describe(parent)}) has shape {pg.shape}, "
                f"which does not reduce to the input's shape {parent.shape}"
            )
    if pg.dtype != parent.data.dtype:
        raise TypeError(
            f"backward of '{node.op}': gradient for input {index} ({describe(parent)}) is {pg.dtype}, "
            f"but the input is {parent.dtype}"
        )
    return pg, fresh


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving ``shape``.

    If y = broadcast(x), every element of x fed several elements of y, so its
    gradient is the sum of theirs.
    """
    extra = g.ndim - len(shape)
    if extra < 0:
        return g  # caller reports the mismatch
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if g.ndim != len(shape) else g


def _as_array(a: Any) -> Any:
    """``a`` as an array of its own module (NumPy turns 0-d results into scalars)."""
    return backend.array_module(a).asarray(a)


def _accumulate_leaf(node: Tensor, g: Any, owned: bool, pass_number: int) -> None:
    grad = node.grad
    if grad is None:
        node.grad = g if owned else g.copy()
        first = pass_number
    else:
        # the engine's own .grad keeps its first pass; one set by hand has an unknown start (None)
        first = node._grad_record[0] if grad_written_by_backward(node) else None
        if type(grad) is backend.numpy.ndarray and grad.flags.writeable or backend.is_gpu_array(grad):
            grad += g
        else:  # a scalar or read-only array someone stored in .grad: replace, never drop
            node.grad = _as_array(grad + g)
    node._grad_record = (first, pass_number, _weak(node.grad))


def grad_written_by_backward(t: Tensor) -> bool:
    """Whether ``t.grad`` is the array a backward() wrote (not one assigned by hand since)."""
    record = getattr(t, "_grad_record", None)
    return record is not None and t.grad is not None and record[2]() is t.grad


def _weak(a: Any) -> Callable[[], Any]:
    """A weak reference to ``a`` (it must not keep a .grad set to None alive)."""
    try:
        return weakref.ref(a)
    except TypeError:  # an object without weak references: never taken for the backward's own array
        return lambda: None


def _check_backward_result(node: Tensor, returned: Any) -> None:
    """Refuse a backward that breaks the contract: one gradient (or None) per input, in a tuple.

    A bare array would otherwise be iterated row by row (and reported as a shape
    mismatch far from the cause), and a surplus gradient silently dropped by zip (a
    gradient one place off would then reach the wrong input).
    """
    n = len(node._parents)
    if type(returned) is tuple or type(returned) is list:
        what = f"{len(returned)} gradients"
    else:
        shape = getattr(returned, "shape", None)
        what = f"a bare {type(returned).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
    example = "(gx,)" if n == 1 else "(" + ", ".join(f"g{i}" for i in range(n)) + ")"
    raise TypeError(
        f"backward of '{node.op}' returned {what}; it must return a tuple with one gradient (or None) "
        f"per input, and this op has {n} input{'s' if n != 1 else ''}: return {example}"
    )


def _freed_message(node: Tensor) -> str:
    return (
        f"backward: the graph through op '{node.op}' (shape {node.shape}) was already freed by an earlier "
        "backward(). Pass retain_graph=True to the first backward() to go through the graph twice, "
        "or recompute the forward pass."
    )


def describe(t: Tensor) -> str:
    """How messages name a tensor: ``enc.0.weight (4, 8)`` when it has a name (a module's
    parameters take theirs when attached), else its shape."""
    return f"{t.name} {t.shape}" if t.name else str(t.shape)


def _check_finite(a: Any, where: str, inputs: Sequence[Tensor]) -> None:
    xp = backend.array_module(a)
    if not bool(xp.all(xp.isfinite(a))):
        shapes = ", ".join(describe(p) for p in inputs) or "none"
        kinds = []
        if bool(xp.any(xp.isnan(a))):
            kinds.append("NaN")
        if bool(xp.any(xp.isinf(a))):
            kinds.append("Inf")
        raise AnomalyError(f"detect_anomaly: {where} produced {'/'.join(kinds)}; input shapes: {shapes}")


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new leaf tensor holding a copy of ``data``, on the current backend (as ``torch.tensor``).

    With ``dtype=None``, a float32 or float64 array (or tensor) keeps its dtype; Python
    numbers and lists, integer and bool arrays become float32 (minivae tensors are always
    float; PyTorch would make integers int64). The data is always copied, so changing the
    array afterwards never changes the tensor. ``Tensor(data)``, the low-level constructor,
    instead defaults to float32 and may share memory with a NumPy array of that dtype.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None:
        found = getattr(data, "dtype", None)
        dtype = found if found is not None and getattr(found, "name", None) in FLOAT_DTYPES else DEFAULT_DTYPE
    out = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if hasattr(data, "__array__") or backend.is_gpu_array(data):  # may share memory: copy
        out.data = out.data.copy()
    return out


from minivae import interop  # noqa: E402  (it imports Tensor; __array__ and friends call into it)
