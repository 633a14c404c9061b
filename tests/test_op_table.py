"""The op table: every op x awkward case x dtype x kernel set.

Each row is an op; each case feeds it inputs of one awkward kind: 0-d, size-1 axes
broadcast on both sides, zero-size axes, transposed and strided (non-contiguous) views,
negative axes, keepdims, a tensor used several times in one graph, extreme values
(±1e4 logits, log-variances ±30) and the kinks (exactly 0 for sqrt, log, pow, abs, relu).
Every (row, case) runs in float64 and float32, on the "reference" and "custom" kernel sets,
and is checked three ways:

1. the value against a float64 NumPy formula;
2. the gradient for a random upstream gradient G (not ones: a backward that ignores its
   upstream gradient passes a ones-check) against float64 central differences of ⟨G, f⟩,
   or, at a kink, against the documented subgradient; float32 against the float64 gradient;
3. value and gradient against PyTorch, when it is installed (CI has no PyTorch: skipped).

Every case also asserts that no input array changed and that each .grad is an array
of its input's shape and dtype. Shapes are tiny: the table must stay fast on 2 cores.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from scipy import special

import minivae as mv
from minivae import losses, ops
from minivae.tensor import Tensor

try:  # the comparison with PyTorch runs only where it is installed (the `bench` extra, not CI)
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - CI
    torch = F = None
# Where PyTorch is absent the PyTorch column is off; test_the_pytorch_column_ran_or_says_it_was_skipped
# says so in the test summary rather than letting it switch off silently.

use_kernels = mv.use_kernels  # the one line to change if the kernel-set switch moves
KERNEL_SETS = ("reference", "custom")
DTYPES = ("float64", "float32")
R = np.random.default_rng(20261203)


# ---------------------------------------------------------------------------------- inputs
@dataclass
class In:
    """One input: its float64 values and how they are laid out in memory."""

    values: np.ndarray
    layout: str = "contiguous"  # or "transposed" (a .T of a contiguous array) or "strided"
    grad: bool = True

    def array(self, dtype: str) -> np.ndarray:
        v = self.values.astype(dtype)
        if self.layout == "transposed":
            return np.ascontiguousarray(v.T).T
        if self.layout == "strided":
            buffer = np.zeros(v.shape + (2,), dtype=dtype)
            buffer[..., 0] = v
            return buffer[..., 0]
        return v.copy()


def u(*shape, lo=-2.0, hi=2.0) -> np.ndarray:
    return np.asarray(R.uniform(lo, hi, size=shape))


def pos(*shape) -> np.ndarray:
    return u(*shape, lo=0.3, hi=3.0)


def c(v, grad=True) -> In:
    return In(np.asarray(v, dtype=float), "contiguous", grad)


def T(v) -> In:
    assert np.ndim(v) >= 2
    return In(np.asarray(v, dtype=float), "transposed")


def S(v) -> In:
    return In(np.asarray(v, dtype=float), "strided")


@dataclass
class Case:
    id: str
    inputs: list[In]
    kw: dict = field(default_factory=dict)
    uses: int = 1  # the op is applied this many times to the same tensors and the results added
    same: bool = False  # one tensor fills every input slot of the op
    expect: Callable | None = None  # expect(G, *xs) -> expected gradients, where differences cannot be used
    raises: tuple | None = None  # (exception type, message pattern)
    torch: bool = True


@dataclass
class Row:
    name: str
    fn: Callable  # minivae
    ref: Callable  # NumPy, float64
    tfn: Callable | None  # PyTorch
    cases: list[Case]
    nargs: int = 1
    out_dtype: str | None = None


def call(f: Callable, xs: list, case: Case, nargs: int):
    args = [xs[0]] * nargs if case.same else list(xs)
    out = f(*args, **case.kw)
    for _ in range(case.uses - 1):
        out = out + f(*args, **case.kw)
    return out


# ----------------------------------------------------------------------------- case families
def unary_cases(dom=u, extreme=None, kink=None, kink_grad=None) -> list[Case]:
    cases = [
        Case("0-d", [c(dom())]),
        Case("vector", [c(dom(5))]),
        Case("transposed", [T(dom(3, 4))]),
        Case("strided", [S(dom(2, 3))]),
        Case("zero-size", [c(dom(0, 3))]),
        Case("used 3 times", [c(dom(2, 3))], uses=3),
        Case("0-d used 3 times", [c(dom())], uses=3),
    ]
    if extreme is not None:
        cases.append(Case("extreme", [c(extreme)]))
    if kink is not None:
        cases.append(Case("kink", [c(kink)], expect=lambda G, x: [G * np.asarray(kink_grad, dtype=float)]))
    return cases


def binary_cases(da=u, db=u, same_dom=None) -> list[Case]:
    same_dom = same_dom or da
    return [
        Case("same shape", [c(da(2, 3)), c(db(2, 3))]),
        Case("size-1 axes on both sides", [c(da(2, 1)), c(db(1, 3))]),
        Case("0-d with matrix", [c(da()), c(db(2, 3))]),
        Case("vector with 0-d", [c(da(3)), c(db())]),
        Case("leading axes added", [c(da(2, 3, 4)), c(db(3, 1))]),
        Case("zero-size", [c(da(0, 3)), c(db(3))]),
        Case("transposed with strided", [T(da(3, 4)), S(db(3, 4))]),
        Case("one tensor in both slots", [c(same_dom(2, 3))], same=True),
        Case("0-d both used 3 times", [c(da()), c(db())], uses=3),
    ]


def reduction_cases(dom=u, keepdims=True, tuples=True, default_all=True, empty_error=None) -> list[Case]:
    kd = {"keepdims": True} if keepdims else {}
    cases = [
        Case("default axis", [c(dom(2, 3))]),
        Case("axis -1", [c(dom(2, 3))], {"axis": -1}),
        Case("axis 0" + (" keepdims" if keepdims else ""), [c(dom(3, 2))], {"axis": 0, **kd}),
        Case("0-d default axis", [c(dom())]),
        Case("0-d axis 0", [c(dom())], {"axis": 0}),
        Case("0-d axis -1", [c(dom())], {"axis": -1}),
        Case("transposed axis 1", [T(dom(3, 4))], {"axis": 1}),
        Case("strided axis 0", [S(dom(2, 3))], {"axis": 0}),
        Case("zero-size, other axis", [c(dom(0, 3))], {"axis": 1}),
        Case("used 3 times", [c(dom(2, 3))], {"axis": -1}, uses=3),
        Case("0-d used 3 times", [c(dom())], uses=3),
    ]
    if tuples:
        cases += [
            Case("axes (0, 2)", [c(dom(2, 3, 2))], {"axis": (0, 2)}),
            Case("axes (-1, -3) keepdims", [c(dom(2, 3, 2))], {"axis": (-1, -3), **kd}),
            Case("axis None", [c(dom(2, 3))], {"axis": None}),
        ]
    empty = Case("empty axis", [c(dom(0, 3))], {"axis": 0})
    if empty_error:
        empty.raises = empty_error
    cases.append(empty)
    return cases


def tkw(kw: dict, ndim: int | None = None, all_axes_if_none: bool = False) -> dict:
    """minivae keyword arguments in PyTorch's spelling."""
    out = {}
    if "axis" in kw and kw["axis"] is not None:
        out["dim"] = kw["axis"]
    elif all_axes_if_none and ndim is not None:
        out["dim"] = tuple(range(ndim))
    if "keepdims" in kw:
        out["keepdim"] = kw["keepdims"]
    return out


def t_reduce(name: str, default_all: bool = True):
    def f(x, **kw):
        fn = getattr(torch, name)
        args = tkw(kw, x.ndim, all_axes_if_none=(name == "logsumexp"))
        if name == "logsumexp" and "axis" not in kw:
            args["dim"] = -1
        if name in ("var", "std") and "correction" in kw:
            args["correction"] = kw["correction"]
        return fn(x, **args)

    return f


def np_reduce(fn):
    return lambda x, axis=None, keepdims=False, **kw: fn(x, axis=axis if np.ndim(x) else None, keepdims=keepdims, **kw)


def np_logsumexp(x, axis=-1, keepdims=False):
    if np.ndim(x) == 0:
        return np.asarray(x)
    return special.logsumexp(x, axis=axis, keepdims=keepdims) if x.size else np.log(np.exp(x).sum(axis=axis, keepdims=keepdims))


def np_softmax(x, axis=-1):
    if np.ndim(x) == 0:
        return np.ones_like(x)
    return special.softmax(x, axis=axis) if x.size else x.copy()


def ties(op: str):
    """max/min of rows with ties: tied elements share the gradient equally."""
    x = [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]] if op == "max" else [[1.0, 1.0, 3.0], [0.0, 2.0, 0.0]]
    share = np.array([[0, 0.5, 0.5], [0.5, 0.5, 0]]) if op == "max" else np.array([[0.5, 0.5, 0], [0.5, 0, 0.5]])
    return Case("ties", [c(x)], {"axis": 1}, expect=lambda G, x: [G[:, None] * share])


# ------------------------------------------------------------------------------------ rows
ROWS: list[Row] = []


def row(name, fn, ref, tfn, cases, **kw):
    ROWS.append(Row(name, fn, ref, tfn, cases, **kw))


_t = (lambda f: f) if torch is not None else (lambda f: None)
EXTREME = [-1e4, -50.0, -1.0, 1.0, 50.0, 1e4]
LOGVARS = [-30.0, -1.0, 0.0, 30.0]
np_sigmoid = special.expit

# elementwise
row("neg", lambda x: -x, np.negative, _t(lambda x: -x), unary_cases())
row("exp", mv.exp, np.exp, _t(torch.exp if torch else None), unary_cases(extreme=LOGVARS))
row("log", mv.log, np.log, _t(torch.log if torch else None), unary_cases(pos, kink=[0.0, 1.0], kink_grad=[np.inf, 1.0]))
row("sqrt", mv.sqrt, np.sqrt, _t(torch.sqrt if torch else None), unary_cases(pos, kink=[0.0, 4.0], kink_grad=[np.inf, 0.25]))
row("abs", mv.abs, np.abs, _t(torch.abs if torch else None), unary_cases(extreme=EXTREME, kink=[0.0, -1.0, 2.0], kink_grad=[0.0, -1.0, 1.0]))
row("sin", mv.sin, np.sin, _t(torch.sin if torch else None), unary_cases())
row("cos", mv.cos, np.cos, _t(torch.cos if torch else None), unary_cases())
row("square", mv.square, np.square, _t(torch.square if torch else None), unary_cases(kink=[0.0, -1.5], kink_grad=[0.0, -3.0]))
row("sign", mv.sign, np.sign, _t(torch.sign if torch else None), unary_cases(kink=[0.0, -1.0, 2.0], kink_grad=[0.0, 0.0, 0.0]))
row("log1p", mv.log1p, np.log1p, _t(torch.log1p if torch else None), unary_cases(lambda *s: u(*s, lo=-0.9, hi=3.0), extreme=[1e-300, 1e4]))
row("expm1", mv.expm1, np.expm1, _t(torch.expm1 if torch else None), unary_cases(extreme=[-30.0, 1e-300, 30.0]))
row("erf", mv.erf, special.erf, _t(torch.erf if torch else None), unary_cases(extreme=EXTREME))
row("relu", mv.relu, lambda x: np.maximum(x, 0), _t(torch.relu if torch else None),
    unary_cases(extreme=EXTREME, kink=[0.0, -1.0, 2.0], kink_grad=[0.0, 0.0, 1.0]))
row("leaky_relu", lambda x: mv.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
    _t(lambda x: F.leaky_relu(x, 0.1)), unary_cases(extreme=EXTREME, kink=[0.0, -1.0, 2.0], kink_grad=[0.1, 0.1, 1.0]))
row("sigmoid", mv.sigmoid, np_sigmoid, _t(torch.sigmoid if torch else None), unary_cases(extreme=EXTREME))
row("tanh", mv.tanh, np.tanh, _t(torch.tanh if torch else None), unary_cases(extreme=EXTREME))
row("softplus", mv.softplus, lambda x: np.logaddexp(0, x), _t(F.softplus if F else None), unary_cases(extreme=EXTREME))
row("logsigmoid", mv.logsigmoid, lambda x: -np.logaddexp(0, -x), _t(F.logsigmoid if F else None), unary_cases(extreme=EXTREME))
row("silu", mv.silu, lambda x: x * np_sigmoid(x), _t(F.silu if F else None), unary_cases(extreme=EXTREME))
row("gelu", mv.gelu, lambda x: x * 0.5 * (1 + special.erf(x / np.sqrt(2))), _t(F.gelu if F else None), unary_cases(extreme=EXTREME))
row("elu", mv.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), _t(F.elu if F else None),
    unary_cases(extreme=EXTREME, kink=[0.0, -1.0], kink_grad=[1.0, np.exp(-1.0)]))
row("elu(alpha=0.5)", lambda x: mv.elu(x, alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(np.minimum(x, 0))),
    _t(lambda x: F.elu(x, 0.5)), unary_cases())
for p, dom, kink, grad in [(2, u, [0.0], [0.0]), (3, u, [0.0], [0.0]), (0.5, pos, [0.0], [np.inf]), (-1.5, pos, None, None),
                           (0, u, [0.0, 2.0], [0.0, 0.0]), (1, u, [0.0], [1.0])]:
    row(f"pow {p}", lambda x, p=p: x ** p, lambda x, p=p: np.power(x, float(p)), _t(lambda x, p=p: x ** p),
        unary_cases(dom, kink=kink, kink_grad=grad))
row("rpow 2 ** x", lambda x: 2.0 ** x, lambda x: np.power(2.0, x), _t(lambda x: 2.0 ** x), unary_cases(extreme=[-30.0, 30.0]))
for lo, hi in [(-1.0, 1.0), (None, 0.5), (-0.5, None)]:
    bounds = [b for b in (lo, hi) if b is not None]
    row(f"clip({lo}, {hi})", lambda x, lo=lo, hi=hi: mv.clip(x, lo, hi), lambda x, lo=lo, hi=hi: np.clip(x, lo, hi),
        _t(lambda x, lo=lo, hi=hi: torch.clamp(x, lo, hi)),
        unary_cases(kink=bounds + [3.0, -3.0], kink_grad=[0.0] * len(bounds) + [float(hi is None), float(lo is None)]))
    # At a bound our gradient is 0 (README, Conventions); PyTorch's clamp passes it through
    # at the bound in recent versions (2.13), so its column is compared off the bounds only.
    ROWS[-1].cases[-1].torch = False

# binary elementwise
row("add", lambda a, b: a + b, np.add, _t(torch.add if torch else None), binary_cases(), nargs=2)
row("sub", lambda a, b: a - b, np.subtract, _t(torch.sub if torch else None), binary_cases(), nargs=2)
row("mul", lambda a, b: a * b, np.multiply, _t(torch.mul if torch else None), binary_cases(), nargs=2)
row("div", lambda a, b: a / b, np.divide, _t(torch.div if torch else None), binary_cases(u, pos, pos), nargs=2)
row("pow a ** b", lambda a, b: a ** b, np.power, _t(torch.pow if torch else None),
    binary_cases(pos, u) + [Case("base 0", [c([0.0, 0.0, 0.0]), c([0.0, 2.0, 1.5])],
                                 expect=lambda G, a, b: [np.zeros(3), np.zeros(3)])], nargs=2)
for name in ("maximum", "minimum"):
    row(name, getattr(mv, name), getattr(np, name), _t(getattr(torch, name) if torch else None),
        binary_cases() + [Case("ties", [c([1.0, 2.0, 3.0]), c([1.0, 0.0, 3.0])],
                               expect=lambda G, a, b, name=name: [G * ([0.5, 1.0, 0.5] if name == "maximum" else [0.5, 0.0, 0.5]),
                                                                   G * ([0.5, 0.0, 0.5] if name == "maximum" else [0.5, 1.0, 0.5])])],
        nargs=2)

MASK = np.array([[True, False, True], [False, False, True]])
row("where", lambda a, b, cond=MASK: mv.where(cond, a, b), lambda a, b, cond=MASK: np.where(cond, a, b),
    _t(lambda a, b, cond=MASK: torch.where(torch.as_tensor(cond), a, b)),
    [Case("same shape", [c(u(2, 3)), c(u(2, 3))]),
     Case("broadcast mask, size-1 and 0-d", [c(u(1, 3)), c(u())], {"cond": np.array([[True], [False]])}),
     Case("transposed with strided", [T(u(2, 3)), S(u(2, 3))]),
     Case("zero-size", [c(u(0, 3)), c(u(3))], {"cond": np.zeros((0, 3), dtype=bool)}),
     Case("one tensor in both slots", [c(u(2, 3))], same=True),
     Case("used 3 times", [c(u(2, 3)), c(u(2, 3))], uses=3),
     Case("0-d mask", [c(u(2)), c(u(2))], {"cond": np.array(True)}),
     Case("float mask is an error", [c(u(2)), c(u(2))], {"cond": np.array([1.0, 0.0])},
          raises=(TypeError, "where: the condition must be a boolean array"))],
    nargs=2)

# reductions
row("sum", mv.sum, np_reduce(np.sum), _t(t_reduce("sum")), reduction_cases())
row("mean", mv.mean, np_reduce(np.mean), _t(t_reduce("mean")), reduction_cases())
for name in ("max", "min"):
    row(name, getattr(mv, name), np_reduce(getattr(np, "amax" if name == "max" else "amin")),
        _t(t_reduce("amax" if name == "max" else "amin")),
        reduction_cases(empty_error=(ValueError, f"{name}: cannot take the {name} over an empty axis")) + [ties(name)])


def _np_var(x, axis=None, keepdims=False, correction=1):
    if np.ndim(x) == 0:
        axis = None
    n = np.size(x) if axis is None else math.prod(np.shape(x)[a] for a in np.atleast_1d(axis))
    with np.errstate(all="ignore"):
        d = x - np.mean(x, axis=axis, keepdims=True) if n else x
        ss = np.sum(d * d, axis=axis, keepdims=keepdims)
        return ss / (n - correction) if n - correction > 0 else ss * np.inf


row("var", mv.var, _np_var, _t(t_reduce("var")), reduction_cases() + [
    Case("correction 0", [c(u(3, 4))], {"axis": 1, "correction": 0})])
row("std", mv.std, lambda *a, **k: np.sqrt(_np_var(*a, **k)), _t(t_reduce("std")),
    [c_ for c_ in reduction_cases() if not c_.id.startswith("0-d") and c_.id != "empty axis"] + [
        Case("correction 0", [c(u(3, 4))], {"axis": 1, "correction": 0})])
row("logsumexp", mv.logsumexp, np_logsumexp, _t(t_reduce("logsumexp")),
    reduction_cases() + [Case("extreme", [c([[1e4, 1e4, -1e4], [-1e4, -1e4, -1e4 - 1]])], {"axis": 1})])
for name, f, ref, tf in [("softmax", mv.softmax, np_softmax, "softmax"), ("log_softmax", mv.log_softmax,
                                                                       lambda x, axis=-1: x - np_logsumexp(x, axis, keepdims=True), "log_softmax")]:
    row(name, f, ref, _t(lambda x, axis=-1, tf=tf: getattr(torch, tf)(x, dim=axis)),
        [cs for cs in reduction_cases(keepdims=False, tuples=False) if cs.id != "empty axis"] + [
            Case("empty axis", [c(u(0, 3))], {"axis": 0}),
            Case("extreme", [c([[1e4, 0.0, -1e4], [50.0, 50.0, -50.0]])], {"axis": 1})])

# shape
row("reshape", lambda x, shape: x.reshape(shape), lambda x, shape: np.reshape(x, shape),
    _t(lambda x, shape: x.reshape(shape)),
    [Case("(2, 3) -> (3, 2)", [c(u(2, 3))], {"shape": (3, 2)}),
     Case("-1", [c(u(2, 3))], {"shape": (-1,)}),
     Case("0-d -> (1, 1)", [c(u())], {"shape": (1, 1)}),
     Case("(1,) -> 0-d", [c(u(1))], {"shape": ()}),
     Case("zero-size", [c(u(0, 3))], {"shape": (3, 0)}),
     Case("transposed", [T(u(3, 4))], {"shape": (2, 6)}),
     Case("used 3 times", [c(u(2, 3))], {"shape": (6,)}, uses=3)])
row("clone", lambda x: x.clone(), np.copy, _t(lambda x: x.clone()), unary_cases(extreme=EXTREME))
row("transpose", lambda x, axes=(): x.transpose(*axes), lambda x, axes=(): np.transpose(x, axes or None),
    _t(lambda x, axes=(): x.permute(axes or tuple(reversed(range(x.ndim))))),
    [Case("default", [c(u(2, 3))]), Case("3-d", [c(u(2, 3, 4))], {"axes": (1, 0, 2)}),
     Case("negative axes", [c(u(2, 3, 4))], {"axes": (-1, 0, -2)}), Case("0-d", [c(u())]),
     Case("zero-size", [c(u(0, 3))]), Case("strided", [S(u(2, 3))]),
     Case("used 3 times", [c(u(2, 3))], uses=3),
     Case("not a permutation", [c(u(2, 3))], {"axes": (0, 0)}, raises=(ValueError, "not a permutation"))])
row("getitem", lambda x, key: x[key], lambda x, key: x[key], _t(lambda x, key: x[key]),
    [Case("slices", [c(u(3, 4))], {"key": (slice(1, None), slice(None, None, 2))}),
     Case("negative int", [c(u(3, 4))], {"key": -1}),
     Case("repeated index", [c(u(3, 2))], {"key": ([0, 0, 2],)}),
     Case("mask", [c(u(2, 3))], {"key": MASK}),
     Case("None and Ellipsis", [c(u(2, 3))], {"key": (Ellipsis, None, 1)}),
     Case("0-d", [c(u())], {"key": ()}),
     Case("empty slice", [c(u(3, 2))], {"key": slice(1, 1)}),
     Case("transposed", [T(u(3, 4))], {"key": (slice(None), 1)}),
     Case("used 3 times", [c(u(3, 2))], {"key": 0}, uses=3)])
row("concat", lambda *xs, axis=0: mv.concat(list(xs), axis=axis), lambda *xs, axis=0: np.concatenate(xs, axis=axis),
    _t(lambda *xs, axis=0: torch.cat(xs, dim=axis)),
    [Case("axis 0", [c(u(2, 3)), c(u(1, 3)), c(u(3, 3))]), Case("axis -1", [c(u(2, 1)), c(u(2, 3))], {"axis": -1}),
     Case("zero-size part", [c(u(0, 3)), c(u(2, 3))]), Case("transposed with strided", [T(u(3, 2)), S(u(3, 2))], {"axis": 1}),
     Case("one tensor twice", [c(u(2, 3))], same=True), Case("used 3 times", [c(u(1, 2)), c(u(1, 2))], uses=3),
     Case("0-d", [c(u()), c(u())], raises=(ValueError, "0-d tensors have no axis"))], nargs=2)
row("concat with raw values first", lambda x: mv.concat([[[1.0, 2.0]], np.zeros((1, 2), dtype=int), x]),
    lambda x: np.concatenate([[[1.0, 2.0]], np.zeros((1, 2)), x]), None, [Case("the dtype comes from the tensor", [c(u(2, 2))])])
row("stack", lambda *xs, axis=0: mv.stack(list(xs), axis=axis), lambda *xs, axis=0: np.stack(xs, axis=axis),
    _t(lambda *xs, axis=0: torch.stack(xs, dim=axis)),
    [Case("axis 0", [c(u(2, 3)), c(u(2, 3))]), Case("axis -1", [c(u(2, 3)), c(u(2, 3))], {"axis": -1}),
     Case("0-d", [c(u()), c(u())]), Case("zero-size", [c(u(0, 3)), c(u(0, 3))], {"axis": 1}),
     Case("transposed with strided", [T(u(3, 2)), S(u(3, 2))], {"axis": 2}), Case("one tensor twice", [c(u(2))], same=True),
     Case("shapes differ", [c(u(2)), c(u(3))], raises=(ValueError, "stack: tensors have different shapes"))], nargs=2)
row("broadcast_to", lambda x, shape: mv.broadcast_to(x, shape), lambda x, shape: np.broadcast_to(x, shape),
    _t(lambda x, shape: torch.broadcast_to(x, shape)),
    [Case("(1, 3) -> (4, 3)", [c(u(1, 3))], {"shape": (4, 3)}), Case("0-d -> (2, 3)", [c(u())], {"shape": (2, 3)}),
     Case("leading axes", [c(u(3, 1))], {"shape": (2, 3, 4)}), Case("to zero-size", [c(u(1, 3))], {"shape": (0, 3)}),
     Case("transposed", [T(u(3, 1))], {"shape": (2, 3, 2)}), Case("used 3 times", [c(u(2, 1))], {"shape": (2, 2)}, uses=3),
     Case("impossible", [c(u(2))], {"shape": (3,)}, raises=(ValueError, r"broadcast_to: a tensor of shape \(2,\)"))])
row("expand", lambda x, sizes: x.expand(*sizes), lambda x, sizes: np.broadcast_to(
    x, tuple(x.shape[i - len(sizes) + x.ndim] if n == -1 else n for i, n in enumerate(sizes))),
    _t(lambda x, sizes: x.expand(*sizes)),
    [Case("-1 keeps an axis", [c(u(1, 3))], {"sizes": (4, -1)}), Case("new leading axis", [c(u(3))], {"sizes": (2, 3)}),
     Case("0-d", [c(u())], {"sizes": (2,)}), Case("strided", [S(u(2, 1))], {"sizes": (2, 3)})])
row("squeeze", lambda x, axis=None: x.squeeze(axis), lambda x, axis=None: np.squeeze(x, axis),
    _t(lambda x, axis=None: x.squeeze() if axis is None else x.squeeze(axis)),
    [Case("all", [c(u(1, 3, 1))]), Case("axis -1", [c(u(2, 1))], {"axis": -1}), Case("axes (0, 2)", [c(u(1, 2, 1))], {"axis": (0, 2)}),
     Case("0-d", [c(u())]), Case("zero-size", [c(u(0, 1))], {"axis": 1}), Case("transposed", [T(u(1, 3))]),
     Case("not size 1", [c(u(2, 3))], {"axis": 0}, raises=(ValueError, "squeeze: axis 0 of shape"))])
row("unsqueeze", lambda x, axis: x.unsqueeze(axis), lambda x, axis: np.expand_dims(x, axis), _t(lambda x, axis: x.unsqueeze(axis)),
    [Case("axis 0", [c(u(2, 3))], {"axis": 0}), Case("axis -1", [c(u(2, 3))], {"axis": -1}), Case("0-d", [c(u())], {"axis": 0}),
     Case("zero-size", [c(u(0, 3))], {"axis": 1}), Case("strided", [S(u(2, 3))], {"axis": -2}),
     Case("used 3 times", [c(u(2))], {"axis": 0}, uses=3)])
row("flatten", lambda x, **k: x.flatten(**k),
    lambda x, start_axis=0, end_axis=-1: np.reshape(x, (1,)) if np.ndim(x) == 0 else np.reshape(
        x, x.shape[:start_axis % x.ndim] + (-1,) + x.shape[end_axis % x.ndim + 1:]) if x.size else np.reshape(
        x, x.shape[:start_axis % x.ndim] + (0,) + x.shape[end_axis % x.ndim + 1:]),
    _t(lambda x, start_axis=0, end_axis=-1: torch.flatten(x, start_axis, end_axis)),
    [Case("all", [c(u(2, 3, 2))]), Case("axes 1..2", [c(u(2, 3, 2))], {"start_axis": 1, "end_axis": 2}),
     Case("negative axes", [c(u(2, 3, 2))], {"start_axis": -2, "end_axis": -1}), Case("0-d", [c(u())]),
     Case("zero-size", [c(u(2, 0, 3))], {"start_axis": 1}), Case("transposed", [T(u(3, 4))])])
row("astype float64", lambda x: mv.astype(x, "float64") * 1.0, lambda x: x, None,
    [Case("vector", [c(u(3))]), Case("0-d", [c(u())]), Case("transposed", [T(u(2, 3))])], out_dtype="float64")

# matrix products
row("matmul", lambda a, b: a @ b, np.matmul, _t(torch.matmul if torch else None),
    [Case("(2, 3) @ (3, 4)", [c(u(2, 3)), c(u(3, 4))]), Case("vector @ matrix", [c(u(3)), c(u(3, 2))]),
     Case("matrix @ vector", [c(u(2, 3)), c(u(3))]), Case("vector @ vector", [c(u(3)), c(u(3))]),
     Case("batch broadcast on both sides", [c(u(2, 1, 3, 4)), c(u(5, 4, 2))]),
     Case("batch @ matrix", [c(u(2, 3, 4)), c(u(4, 2))]), Case("matrix @ batch", [c(u(3, 4)), c(u(2, 4, 5))]),
     Case("vector @ batch", [c(u(4)), c(u(2, 4, 3))]), Case("batch @ vector", [c(u(2, 3, 4)), c(u(4))]),
     Case("zero rows", [c(u(0, 3)), c(u(3, 2))]), Case("zero inner", [c(u(2, 0)), c(u(0, 3))]),
     Case("zero batch", [c(u(0, 2, 3)), c(u(3, 2))]),
     Case("transposed @ strided", [T(u(2, 3)), S(u(3, 4))]), Case("one tensor twice", [c(u(3, 3))], same=True),
     Case("used 3 times", [c(u(2, 3)), c(u(3, 2))], uses=3),
     Case("inner mismatch", [c(u(2, 3)), c(u(4, 2))], raises=(ValueError, "inner dimensions differ")),
     Case("0-d", [c(u()), c(u(2))], raises=(ValueError, "0-d operand"))], nargs=2)


def _act(name, v):
    return {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": np_sigmoid,
            "softplus": lambda v: np.logaddexp(0, v), "leaky_relu": lambda v: np.where(v > 0, v, 0.1 * v), None: lambda v: v}[name](v)


def _tact(name, v):
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus,
            "leaky_relu": lambda v: F.leaky_relu(v, 0.1), None: lambda v: v}[name](v)


LINEAR_CASES = [Case("batch", [c(u(4, 3)), c(u(3, 2)), c(u(2))]), Case("leading axes", [c(u(2, 2, 3)), c(u(3, 2)), c(u(2))]),
                Case("vector input", [c(u(3)), c(u(3, 2)), c(u(2))]), Case("zero rows", [c(u(0, 3)), c(u(3, 2)), c(u(2))]),
                Case("transposed x, strided W", [T(u(4, 3)), S(u(3, 2)), c(u(2))]),
                Case("used 3 times", [c(u(2, 3)), c(u(3, 2)), c(u(2))], uses=3),
                Case("one row, one unit", [c(u(1, 1)), c(u(1, 1)), c(u(1))])]
for act in (None, "relu", "leaky_relu", "sigmoid", "tanh", "softplus"):
    row(f"linear+{act}" if act else "linear", lambda x, w, b, act=act: mv.linear(x, w, b, activation=act, slope=0.1),
        lambda x, w, b, act=act: _act(act, x @ w + b), _t(lambda x, w, b, act=act: _tact(act, x @ w + b)), LINEAR_CASES, nargs=3)
row("linear without bias", lambda x, w: mv.linear(x, w), np.matmul, _t(torch.matmul if torch else None),
    [Case("batch", [c(u(4, 3)), c(u(3, 2))]), Case("transposed", [T(u(4, 3)), T(u(3, 2))])], nargs=2)


# losses and the VAE nodes
def np_bce(l, t):
    return np.maximum(l, 0) - l * t + np.log1p(np.exp(-np.abs(l)))


def t_bce(l, t, reduce=None):
    shape = torch.broadcast_shapes(l.shape, t.shape)
    v = F.binary_cross_entropy_with_logits(l.expand(shape), t.expand(shape), reduction="none")
    return v if reduce is None else v.sum(**reduce)


def prob(*shape):
    return u(*shape, lo=0.0, hi=1.0)


BCE_CASES = [Case("same shape", [c(u(3, 4)), c(prob(3, 4))]), Case("0-d", [c(0.5), c(0.0)]),
             Case("0-d pair used 3 times", [c(u()), c(prob())], uses=3),
             Case("target broadcast", [c(u(3, 4)), c(prob(4))]), Case("logits broadcast", [c(u(1, 4)), c(prob(3, 4))]),
             Case("extreme logits", [c([-1e4, -80.0, 80.0, 1e4]), c([1.0, 0.0, 0.5, 0.0])]),
             Case("transposed with strided", [T(u(3, 4)), S(prob(3, 4))]), Case("zero-size", [c(u(0, 4)), c(prob(0, 4))]),
             Case("used 3 times", [c(u(2, 3)), c(prob(2, 3))], uses=3)]
row("bce_with_logits", mv.bce_with_logits, np_bce, _t(t_bce), BCE_CASES, nargs=2)
row("bce_with_logits_sum", lambda l, t, axis=None: mv.bce_with_logits_sum(l, t, axis=axis),
    lambda l, t, axis=None: np_bce(l, t).sum(axis=axis),
    _t(lambda l, t, axis=None: t_bce(l, t, {} if axis is None else {"dim": axis})),
    BCE_CASES + [Case("axis -1", [c(u(3, 4)), c(prob(3, 4))], {"axis": -1}),
                 Case("axes (0, 1)", [c(u(2, 3, 4)), c(prob(2, 3, 4))], {"axis": (0, 1)}),
                 Case("axis 0, extreme", [c([[1e4, -1e4], [-1e4, 1e4]]), c([[0.0, 1.0], [0.25, 1.0]])], {"axis": 0})], nargs=2)

LABELS = np.array([0, 2, 1, 2])
for name, f, tname in [("cross_entropy", losses.cross_entropy, "cross_entropy"), ("nll_loss", losses.nll_loss, "nll_loss")]:
    def ref(x, labels=LABELS, reduction="mean", name=name):
        axis = 1 if x.ndim >= 2 else 0
        logp = x - np_logsumexp(x, axis=axis, keepdims=True) if name == "cross_entropy" else x
        picked = -np.squeeze(np.take_along_axis(logp, np.expand_dims(labels, axis), axis=axis), axis)
        return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](picked)

    row(name, lambda x, labels=LABELS, reduction="mean", f=f: f(x, labels, reduction), ref,
        _t(lambda x, labels=LABELS, reduction="mean", tname=tname: getattr(F, tname)(x, torch.as_tensor(labels), reduction=reduction)),
        [Case("mean", [c(u(4, 3))]), Case("sum", [c(u(4, 3))], {"reduction": "sum"}), Case("none", [c(u(4, 3))], {"reduction": "none"}),
         Case("one example", [c(u(3))], {"labels": np.array(1)}),
         Case("classes on axis 1 of 3-d", [c(u(2, 3, 2))], {"labels": np.array([[0, 2], [1, 1]])}),
         Case("extreme logits", [c([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, 0.0], [1e4, 1e4, -1e4]])]),
         Case("transposed", [T(u(4, 3))]), Case("zero-size batch", [c(u(0, 3))], {"labels": np.zeros(0, dtype=int), "reduction": "sum"}),
         Case("used 3 times", [c(u(4, 3))], uses=3),
         Case("float labels", [c(u(4, 3))], {"labels": LABELS * 1.0}, raises=(TypeError, "labels must be integer class indices"))])

row("kl_normal_standard", mv.kl_normal_standard, lambda m, lv: 0.5 * (np.exp(lv) + m * m - 1 - lv).sum(axis=-1),
    _t(lambda m, lv: 0.5 * (torch.exp(lv) + m * m - 1 - lv).sum(dim=-1)),
    [Case("batch", [c(u(3, 2)), c(u(3, 2))]), Case("one row", [c(u(2)), c(u(2))]),
     # at e^30 a change of 1e-6 in mu is below the output's float64 resolution: the formula instead
     Case("log-variances ±30", [c(u(2, 2)), c([[-30.0, 30.0], [30.0, -30.0]])],
          expect=lambda G, m, lv: [G[:, None] * m, G[:, None] * 0.5 * np.expm1(lv)]),
     Case("transposed with strided", [T(u(3, 2)), S(u(3, 2))]), Case("zero rows", [c(u(0, 2)), c(u(0, 2))]),
     Case("used 3 times", [c(u(2, 2)), c(u(2, 2))], uses=3)], nargs=2)
EPS = u(3, 2)
row("reparameterize", lambda m, lv, eps=EPS: mv.reparameterize(m, lv, eps), lambda m, lv, eps=EPS: m + np.exp(lv / 2) * eps,
    _t(lambda m, lv, eps=EPS: m + torch.exp(lv / 2) * torch.as_tensor(eps)),
    [Case("batch", [c(u(3, 2)), c(u(3, 2))]),
     Case("log-variances ±30", [c(u(3, 2)), c([[-30.0, 30.0], [30.0, -30.0], [0.0, 1.0]])],
          expect=lambda G, m, lv: [G, G * 0.5 * np.exp(lv / 2) * EPS]),
     Case("transposed with strided", [T(u(3, 2)), S(u(3, 2))]), Case("broadcast mu and logvar", [c(u(2)), c(u(1, 2))]),
     Case("k samples", [c(u(3, 2)), c(u(3, 2))], {"eps": u(4, 3, 2)}), Case("used 3 times", [c(u(3, 2)), c(u(3, 2))], uses=3)],
    nargs=2)


# ------------------------------------------------------------------------------- the checks
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=3e-5, atol=1e-5)}
GRAD_TOL = {"float64": dict(rtol=1e-5, atol=1e-6), "float32": dict(rtol=2e-3, atol=2e-4)}
H = 1e-6


def _run(row: Row, case: Case, dtype: str, seed: int):
    """(inputs, output, gradients) of one case in one dtype, asserting the engine's invariants."""
    tensors = [Tensor(inp.array(dtype), requires_grad=inp.grad, dtype=dtype) for inp in case.inputs]
    before = [t.data.copy() for t in tensors]
    y = call(row.fn, tensors, case, row.nargs)
    assert isinstance(y, Tensor)
    out_dtype = row.out_dtype or dtype
    assert y.dtype == out_dtype, f"{row.name}: output is {y.dtype}, input {dtype}"
    G = np.random.default_rng(seed).normal(size=y.shape).astype(out_dtype)
    grads = None
    if y.requires_grad:
        y.backward(G)
        grads = []
        for t in tensors:
            assert t.grad is not None, f"{row.name}: no gradient reached an input"
            assert type(t.grad) is np.ndarray, f"{row.name}: .grad is a {type(t.grad).__name__}, not an array"
            assert t.grad.shape == t.shape and t.grad.dtype == t.dtype
            grads.append(t.grad)
    for t, b in zip(tensors, before):
        np.testing.assert_array_equal(t.data, b, err_msg=f"{row.name} changed an input")
    return y, G, grads


def _numeric(row: Row, case: Case, G: np.ndarray) -> list[np.ndarray]:
    """Central differences of ⟨G, f(x)⟩ in float64, one input element at a time."""
    xs = [inp.values.astype(np.float64).copy() for inp in case.inputs]

    def f() -> np.ndarray:
        with mv.no_grad():
            return call(row.fn, [Tensor(x, dtype="float64") for x in xs], case, row.nargs).numpy().copy()

    grads = []
    for x in xs:
        num = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            original = x[idx]
            x[idx] = original + H
            plus = f()
            x[idx] = original - H
            minus = f()
            x[idx] = original
            # difference the outputs before weighting: a huge unrelated output (e^30)
            # would otherwise swamp a small change in the weighted sum
            num[idx] = ((plus - minus) * G).sum() / (2 * H)
        grads.append(num)
    return grads


def _torch_check(row: Row, case: Case, y: Tensor, G: np.ndarray, grads) -> None:
    ts = [torch.tensor(inp.values, dtype=torch.float64, requires_grad=True) for inp in case.inputs]
    out = call(row.tfn, ts, case, row.nargs)
    np.testing.assert_allclose(y.numpy(), out.detach().numpy(), rtol=1e-9, atol=1e-12, equal_nan=True,
                               err_msg=f"{row.name}: value differs from PyTorch")
    if grads is not None and out.requires_grad:
        out.backward(torch.as_tensor(G, dtype=torch.float64))
        for ours, t in zip(grads, ts):
            theirs = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
            np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9, equal_nan=True,
                                       err_msg=f"{row.name}: gradient differs from PyTorch")


PARAMS = [pytest.param(r, cs, id=f"{r.name}-{cs.id}") for r in ROWS for cs in r.cases]


@pytest.fixture(params=KERNEL_SETS)
def kernels(request):
    with use_kernels(request.param):
        yield request.param


@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")  # NumPy's and PyTorch's on empty/extreme inputs
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row,case", PARAMS)
def test_op_table(row: Row, case: Case, dtype: str, kernels: str):
    seed = zlib.crc32(f"{row.name}|{case.id}".encode())  # the same G in every run (hash() is salted)
    if case.raises:
        tensors = [Tensor(inp.array(dtype), requires_grad=True, dtype=dtype) for inp in case.inputs]
        with pytest.raises(case.raises[0], match=case.raises[1]):
            call(row.fn, tensors, case, row.nargs)
        return
    y, G, grads = _run(row, case, dtype, seed)
    xs = [inp.values.astype(np.float64) for inp in case.inputs]
    with np.errstate(all="ignore"):
        want = np.asarray(call(row.ref, xs, case, row.nargs))
    assert y.shape == want.shape, f"{row.name}: shape {y.shape}, expected {want.shape}"
    np.testing.assert_allclose(y.numpy(), want, equal_nan=True, **TOL[dtype])
    if grads is None:
        return
    G64 = G.astype(np.float64)
    if dtype == "float64":
        expected = case.expect(G64, *xs) if case.expect else _numeric(row, case, G64)
        for ours, theirs in zip(grads, expected):
            np.testing.assert_allclose(ours, theirs, equal_nan=True, **GRAD_TOL[dtype])
        if torch is not None and row.tfn is not None and case.torch:
            _torch_check(row, case, y, G64, grads)
    else:  # float32 against this engine's float64 gradient, itself checked in the float64 case
        with use_kernels(kernels):
            tensors = [Tensor(inp.array("float64"), requires_grad=inp.grad, dtype="float64") for inp in case.inputs]
            out = call(row.fn, tensors, case, row.nargs)
            out.backward(G.astype(out.dtype))
        for ours, t in zip(grads, tensors):
            scale = np.nanmax(np.abs(t.grad), initial=1.0) if t.grad.size else 1.0
            finite = np.isfinite(t.grad)
            np.testing.assert_allclose(ours[finite], t.grad[finite], rtol=GRAD_TOL[dtype]["rtol"],
                                       atol=GRAD_TOL[dtype]["atol"] * scale)


# ---------------------------------------------------------------- ops without a gradient
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["eq", "ne", "lt", "le", "gt", "ge"])
@pytest.mark.parametrize("a,b", [(u(2, 3), u(2, 3)), (u(2, 1), u(1, 3)), (u(), u(3)), (u(0, 3), u(3)),
                                 (np.array([1.0, 2.0]), np.array([1.0, 3.0]))], ids=["same", "both sides", "0-d", "empty", "ties"])
def test_comparisons_are_boolean_masks(name, a, b, dtype):
    x, y = mv.tensor(a, dtype=dtype), mv.tensor(b, dtype=dtype)
    got = getattr(mv, name)(x, y)
    want = getattr(np, {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
                        "ge": "greater_equal"}[name])(a.astype(dtype), b.astype(dtype))
    assert isinstance(got, np.ndarray) and got.dtype == bool
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("labels,classes,shape", [([0, 2, 1], None, (3, 3)), (np.array(1), 4, (4,)), (np.zeros((2, 0), dtype=int), 3, (2, 0, 3)),
                                                  (np.array([[1, 0], [0, 1]]), 2, (2, 2, 2))])
def test_one_hot(labels, classes, shape):
    out = mv.one_hot(labels, classes, dtype="float64")
    assert out.shape == shape and out.dtype == "float64" and not out.requires_grad
    lab = np.asarray(labels)
    if out.size:
        np.testing.assert_array_equal(out.numpy().argmax(axis=-1), lab)
        np.testing.assert_array_equal(out.numpy().sum(axis=-1), np.ones(lab.shape))
    with pytest.raises(ValueError, match=r"one_hot: labels must lie in \[0, 2\)"):
        mv.one_hot([0, 2], 2)
    with pytest.raises(TypeError, match="one_hot: labels must be integers"):
        mv.one_hot([0.5], 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("shape,axis", [((2, 3), None), ((2, 3), 1), ((2, 3), -2), ((), None), ((), 0), ((), -1),
                                        ((1, 4), 0), ((0, 3), 1), ((4,), 0)])
def test_argmax_and_argmin_are_indices_as_in_numpy(name, shape, axis, dtype):
    data = np.random.default_rng(3).normal(size=shape)
    x = mv.tensor(data, dtype=dtype, requires_grad=True)
    got = getattr(x, name)(axis=axis)
    want = getattr(np, name)(data.astype(dtype).reshape(1) if data.ndim == 0 and axis is not None else data.astype(dtype), axis=axis)
    assert not isinstance(got, mv.Tensor) and np.asarray(got).dtype.kind == "i"
    np.testing.assert_array_equal(got, want)
    assert np.shape(getattr(mv, name)(x, axis=axis, keepdims=True)) == np.shape(
        getattr(np, name)(data.reshape(1) if data.ndim == 0 and axis is not None else data, axis=axis, keepdims=True))


def test_argmax_takes_the_first_of_a_tie_and_explains_bad_axes_and_empty_tensors():
    ties = mv.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    assert ties.argmax(axis=1).tolist() == [1, 0] and ties.argmin(axis=-1).tolist() == [0, 2] and ties.argmax() == 1
    transposed = mv.tensor(np.arange(6.0).reshape(2, 3).T)  # a non-contiguous view
    assert transposed.argmax(axis=0).tolist() == [2, 2] and transposed.argmax() == 5
    with pytest.raises(ValueError, match=r"^argmax: axis 2 is out of range for a tensor of shape \(2, 3\)"):
        ties.argmax(axis=2)
    with pytest.raises(ValueError, match=r"^argmin: axis \(0, 1\) is out of range"):
        ties.argmin(axis=(0, 1))
    with pytest.raises(ValueError, match=r"^argmax: a tensor of shape \(0, 3\) has no elements \("):
        mv.tensor(np.zeros((0, 3))).argmax()
    with pytest.raises(ValueError, match=r"^argmax: a tensor of shape \(2, 0\) has no elements along axis 1"):
        mv.tensor(np.zeros((2, 0))).argmax(axis=1)
    with pytest.raises(TypeError, match="^argmax: expected a Tensor, got list"):
        mv.argmax([1.0, 2.0])


def test_clone_is_a_copy_in_the_graph():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x.clone()
    y.data[0] = 100.0  # its own memory
    assert x.tolist() == [1.0, 2.0] and y.op == "clone" and y.parents == (x,)
    (y * x).sum().backward()  # x used twice, once through the clone
    assert x.grad.tolist() == [1.0 + 100.0, 2.0 + 2.0]


def test_the_table_covers_every_public_op():
    """A new op must get a row: every public function of minivae.ops appears in the table."""
    public = {name for name, fn in vars(ops).items()
              if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__.startswith("minivae.ops.")}
    public -= set(ops.HELPERS)  # helpers that lift operands, not ops
    covered = {re.split(r"[ (+]", r.name)[0] for r in ROWS}
    covered = {"power" if name in ("pow", "rpow") else name for name in covered}
    covered |= {"eq", "ne", "lt", "le", "gt", "ge", "one_hot", "argmax", "argmin"}  # the tests above: no gradient
    assert public <= covered, f"ops without a row in the table: {sorted(public - covered)}"
    assert all(hasattr(mv, name) for name in public)


def test_the_pytorch_column_ran_or_says_it_was_skipped():
    """The PyTorch column (values and float64 gradients against torch) needs PyTorch, which
    CI does not install (its Linux wheel brings CUDA libraries of several GB). Without it
    the column is off, and this test says so in pytest's warnings summary."""
    twins = [r.name for r in ROWS if r.tfn is not None]
    if torch is None:
        assert twins == []  # every row's PyTorch twin is off, not half of them
        warnings.warn("test_op_table: the PyTorch column was SKIPPED (PyTorch is not installed; "
                      "pip install '.[bench]' to run it)", UserWarning, stacklevel=1)
    else:
        assert len(twins) >= 40, f"only {len(twins)} rows have a PyTorch twin"
