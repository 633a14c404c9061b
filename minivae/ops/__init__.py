"""Every differentiable op: its forward value and its vector-Jacobian product, side by side.

Read each op as a row of a table. For y = f(x) and an upstream gradient
g = dL/dy, the op's ``backward(g)`` returns dL/dx = g · ∂y/∂x for each input
(None for inputs that do not need one). The docstring states the derivative and
cites its equation in ``derivations/``.

The ops are grouped by what they do, one module each, every one readable in a sitting:

====================  ==================================================================
module                holds
====================  ==================================================================
``operands``          lifting operands to tensors, ``array_module(t)``, reduction axes
``arithmetic``        ``+ - * /``, ``neg``, ``power``, ``matmul``
``dense``             ``linear``: the dense layer x @ W + b, optionally fused with its activation
``reductions``        ``sum``, ``mean``, ``max``, ``min``, ``var``, ``std``, ``logsumexp``,
                      ``log_softmax``, ``softmax``
``shape``             ``reshape``, ``transpose``, ``squeeze``, ``unsqueeze``, ``flatten``,
                      ``broadcast_to``, ``expand``, indexing, ``concat``, ``stack``, ``astype``, ``clone``
``elementwise``       ``exp``, ``log``, ``sqrt``, ``sin``, ``erf``, ``clip``, ``gelu``, ...
``activations``       ``relu``, ``leaky_relu``, ``sigmoid``, ``tanh``, ``softplus`` (provider kernels)
``compare``           comparisons (boolean masks), ``argmax``/``argmin`` (indices), ``where``,
                      ``maximum``, ``minimum``
``bce``               ``bce_with_logits``, ``bce_with_logits_sum``
``labels``            ``one_hot``
====================  ==================================================================

Every public name is re-exported here, so ``mv.ops.relu`` and ``mv.relu`` are the
same function. Conventions: gradients may come back in the broadcast output shape
(``Tensor.backward`` sums them down); arrays are reached through ``array_module`` so
the same code runs on NumPy and CuPy; Python scalars and raw arrays are constants in
the dtype of the tensor they meet, and two float dtypes never mix silently.
"""

from __future__ import annotations

from minivae.ops.activations import leaky_relu, relu, sigmoid, softplus, tanh
from minivae.ops.arithmetic import add, div, matmul, mul, neg, power, sub
from minivae.ops.bce import bce_with_logits, bce_with_logits_sum
from minivae.ops.compare import argmax, argmin, eq, ge, gt, le, lt, maximum, minimum, ne, where
from minivae.ops.elementwise import (
    abs, clip, cos, elu, erf, exp, expm1, gelu, log, log1p, logsigmoid, sign, silu, sin, sqrt, square,
)
from minivae.ops.labels import one_hot
from minivae.ops.dense import linear
from minivae.ops.operands import array_module, as_tensor, binary_operands
from minivae.ops.reductions import log_softmax, logsumexp, max, mean, min, softmax, std, sum, var
from minivae.ops.shape import (
    astype, broadcast_to, clone, concat, expand, flatten, getitem, reshape, squeeze, stack, transpose, unsqueeze,
)
from minivae.providers import backend
from minivae.tensor import Tensor

# Helpers for modules that build their own ops (distributions, losses, a course's exercises).
HELPERS = ("array_module", "as_tensor", "binary_operands")


def _or_not_implemented(compare):
    """``x == other`` as ``compare`` for numeric operands; NotImplemented (Python then uses identity) otherwise."""
    def method(self, other):
        numeric = isinstance(other, (Tensor, int, float, list, tuple, backend.numpy.ndarray, backend.numpy.number))
        return compare(self, other) if numeric or backend.is_gpu_array(other) else NotImplemented
    method.__name__ = f"__{compare.__name__}__"
    return method


def install_tensor_operators() -> None:
    """Give :class:`~minivae.tensor.Tensor` its operators and methods, each a call into an op.

    Done here, once (``minivae/__init__.py`` calls it), because ``tensor.py`` sits below
    the ops: an op needs ``Tensor``, and ``x + y`` needs the op. Comparisons give boolean
    masks (no gradient), ``==`` and ``!=`` included, as in NumPy and PyTorch; against an
    object that is not numeric (None, a string, a model) ``==`` answers NotImplemented, so
    Python falls back to identity (False) instead of raising. ``hash`` stays identity
    (``Tensor.__hash__``), so tensors still work as dict keys and set members; test
    membership in a list by identity, ``any(p is q for q in params)``.
    """
    methods = {
        "__add__": add, "__radd__": lambda self, other: add(other, self),
        "__sub__": sub, "__rsub__": lambda self, other: sub(other, self),
        "__mul__": mul, "__rmul__": lambda self, other: mul(other, self),
        "__truediv__": div, "__rtruediv__": lambda self, other: div(other, self),
        "__pow__": power, "__rpow__": lambda self, base: power(base, self),
        "__matmul__": matmul, "__rmatmul__": lambda self, other: matmul(other, self),
        "__neg__": neg, "__abs__": abs,
        "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
        "__eq__": _or_not_implemented(eq), "__ne__": _or_not_implemented(ne),
        "__getitem__": getitem,
        # methods: x.sum(axis) is ops.sum(x, axis), and so on
        "sum": sum, "mean": mean, "reshape": reshape, "transpose": transpose, "astype": astype,
        "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "square": square, "sign": sign, "log1p": log1p,
        "expm1": expm1, "sigmoid": sigmoid, "tanh": tanh, "relu": relu, "clip": clip, "max": max, "min": min,
        "var": var, "std": std, "logsumexp": logsumexp, "softmax": softmax, "log_softmax": log_softmax,
        "squeeze": squeeze, "unsqueeze": unsqueeze, "flatten": flatten, "expand": expand,
        "broadcast_to": broadcast_to, "clone": clone, "argmax": argmax, "argmin": argmin,
        "T": property(lambda self: transpose(self), doc="x with its axes reversed (ops.transpose)."),
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)


__all__ = [
    "abs", "add", "argmax", "argmin", "astype", "bce_with_logits", "bce_with_logits_sum", "broadcast_to", "clip",
    "clone", "concat", "cos", "div", "elu", "eq", "erf", "exp", "expand", "expm1", "flatten", "ge", "gelu", "getitem", "gt", "le",
    "leaky_relu", "linear", "log", "log1p", "log_softmax", "logsigmoid", "logsumexp", "lt", "matmul", "max",
    "maximum", "mean", "min", "minimum", "mul", "ne", "neg", "one_hot", "power", "relu", "reshape", "sigmoid",
    "sign", "silu", "sin", "softmax", "softplus", "sqrt", "square", "squeeze", "stack", "std", "sub", "sum",
    "tanh", "transpose", "unsqueeze", "var", "where",
    *HELPERS, "install_tensor_operators",
]
