"""Reconstruction losses, each a negative log-likelihood.

Every loss returns per-element values reduced by ``reduction``:
``"sum"`` (the log-likelihood of the whole batch, what an ELBO uses),
``"mean"`` (average over all elements) or ``"none"`` (the per-element tensor).
"""

from __future__ import annotations

import math
from typing import Any

from minivae import ops
from minivae.tensor import Tensor

REDUCTIONS = ("sum", "mean", "none")

#: Probabilities are clipped to [BCE_EPS, 1 - BCE_EPS] in :func:`bce` so log(0) never
#: happens: the clipped loss is at most about -ln(1e-7) ≈ 16.1 nats per element (≈ 15.9 in
#: float32, where 1 - 1e-7 rounds to 1 - 1.19e-7). Prefer :func:`bce_with_logits`, which needs no clipping.
BCE_EPS = 1e-7


def _reduce(values: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_shapes(name: str, pred: Tensor, target: Any) -> None:
    shape = getattr(target, "shape", None)
    if shape is not None and tuple(shape) != pred.shape:
        raise ValueError(f"{name}: prediction has shape {pred.shape} but target has shape {tuple(shape)}; they must match")


def mse(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Squared error (pred - target)².  Equals the unit-variance Gaussian NLL minus ½ln(2π) and halved."""
    _check_shapes("mse", pred, target)
    diff = pred - target
    return _reduce(diff * diff, reduction, "mse")


def bce(prob: Tensor, target: Any, reduction: str = "mean", eps: float = BCE_EPS) -> Tensor:
    """Bernoulli NLL from probabilities p: -[x ln p + (1 - x) ln(1 - p)], p clipped to [eps, 1 - eps]."""
    _check_shapes("bce", prob, target)
    p = ops.clip(prob, eps, 1.0 - eps)
    values = -(target * ops.log(p) + (1.0 - target) * ops.log(1.0 - p))
    return _reduce(values, reduction, "bce")


def bce_with_logits(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Bernoulli NLL from logits l: max(l, 0) - l·x + ln(1 + e^-|l|); stable for any l (see ops)."""
    _check_shapes("bce_with_logits", logits, target)
    if reduction == "sum":  # one node that does not keep the elementwise values (same numbers)
        return ops.bce_with_logits_sum(logits, target)
    return _reduce(ops.bce_with_logits(logits, target), reduction, "bce_with_logits")


def gaussian_nll(mean: Tensor, target: Any, logvar: Tensor | float | None = None, reduction: str = "mean") -> Tensor:
    """Gaussian NLL of ``target`` under N(mean, exp(logvar)), constant included:

        ½ [ln(2π) + logvar + (x - mean)² e^(-logvar)]

    With ``logvar=None`` the variance is 1: ½ (x - mean)² + ½ ln(2π).
    """
    _check_shapes("gaussian_nll", mean, target)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    diff = mean - target
    if logvar is None:
        values = 0.5 * (diff * diff) + half_log_2pi
    else:
        inv_var = ops.exp(-logvar) if isinstance(logvar, Tensor) else math.exp(-logvar)
        values = 0.5 * (diff * diff * inv_var + logvar) + half_log_2pi
    return _reduce(values, reduction, "gaussian_nll")
