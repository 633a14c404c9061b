"""Integer labels as one-hot rows: data for a conditional model, not a differentiable op."""

from __future__ import annotations

from typing import Any

from minivae.providers import backend
from minivae.tensor import Tensor


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
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, (int, backend.numpy.integer))):
        raise TypeError(f"one_hot: num_classes must be an integer, got {num_classes!r}")
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
