"""Reconstruction losses, each a negative log-likelihood.

Every loss returns per-element values reduced by ``reduction``:
``"sum"`` (the log-likelihood of the whole batch, what an ELBO uses),
``"mean"`` (average over all elements) or ``"none"`` (the per-element tensor).
"""

from __future__ import annotations

import math
from typing import Any

from minivae import ops
from minivae.providers import backend
from minivae.tensor import Tensor

REDUCTIONS = ("sum", "mean", "none")

#: Probabilities are clipped to [BCE_EPS, 1 - BCE_EPS] in :func:`bce` so log(0) never
#: happens: the clipped loss is at most about -ln(1e-7) ≈ 16.1 nats per element (≈ 15.9 in
#: float32, where 1 - 1e-7 rounds to 1 - 1.19e-7). Prefer :func:`bce_with_logits`, which needs no clipping.
BCE_EPS = 1e-7


#: ln 2π, the constant of every Gaussian log-density in minivae.
LOG_2PI = math.log(2 * math.pi)


def _reduce(values: Tensor, reduction: str, name: str, axis: int | None = None) -> Tensor:
    if axis is not None and reduction != "sum":
        raise ValueError(f"{name}: axis={axis} sums over that axis; it goes with reduction='sum', not {reduction!r}")
    if reduction == "sum":
        return values.sum(axis=axis)
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_shapes(name: str, pred: Tensor, target: Any, axis: int | None = None) -> None:
    """Prediction and target must have one shape; with a per-example sum (``axis``, what a
    model with sample axes uses) they need only broadcast. A float target must also have the
    prediction's precision (the engine's rule), said here so the error names the loss, not
    the ``sub`` or ``mul`` inside it."""
    target_dtype = getattr(target, "dtype", None)
    mixed = isinstance(target, Tensor) or getattr(target, "ndim", 0) > 0  # 0-d arrays take pred's dtype
    if mixed and target_dtype is not None and target_dtype.kind == "f" and target_dtype != pred.dtype:
        raise TypeError(
            f"{name}: the target is {target_dtype} {tuple(target.shape)} but the prediction is {pred.dtype} "
            f"{pred.shape}; minivae does not mix float precisions silently. Convert the target, e.g. "
            f"target.astype('{pred.dtype}')"
        )
    if axis is not None:
        shape = getattr(target, "shape", ())
        try:
            backend.numpy.broadcast_shapes(pred.shape, tuple(shape))
        except ValueError:
            raise ValueError(f"{name}: prediction {pred.shape} and target {tuple(shape)} do not broadcast") from None
        return
    shape = getattr(target, "shape", None)
    if shape is not None and tuple(shape) != pred.shape:
        raise ValueError(f"{name}: prediction has shape {pred.shape} but target has shape {tuple(shape)}; they must match")


def _check_probabilities(name: str, target: Any) -> None:
    """Bernoulli targets must lie in [0, 1] (grey pixels are fine, 2.0 or NaN is a bug).

    Checked for host arrays; on the GPU the check would stall the stream every step.
    """
    data = target.data if isinstance(target, Tensor) else target
    if backend.is_gpu_array(data):
        return
    values = backend.numpy.asarray(data)
    if values.dtype.kind in "fc" and values.size:
        nan = backend.numpy.isnan(values)
        if nan.any():
            first = tuple(int(i) for i in backend.numpy.argwhere(nan)[0])
            rows = ""
            if values.ndim > 1:  # which examples (rows) hold one: where to look in the data
                bad = backend.numpy.flatnonzero(nan.reshape(len(values), -1).any(axis=1))
                listed = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
                rows = f" in {len(bad)} of {len(values)} rows ({listed})"
            raise ValueError(
                f"{name}: the target contains NaN: {int(nan.sum())} of {values.size} values{rows}, the first at "
                f"index {first} of shape {values.shape}; the data has NaN before the loss (check its loading "
                "and normalisation, e.g. a division by zero)"
            )
    if values.size and not (values.min() >= 0 and values.max() <= 1):
        raise ValueError(
            f"{name}: targets must lie in [0, 1] (Bernoulli probabilities), got values from "
            f"{values.min()} to {values.max()} in a target of shape {values.shape}"
        )


def mse(pred: Tensor, target: Any, reduction: str = "mean", axis: int | None = None) -> Tensor:
    """Squared error (pred - target)².  Equals the unit-variance Gaussian NLL minus ½ln(2π) and halved.
    With ``reduction="sum"`` and ``axis``, the sum over that axis only (one value per example).
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.2-1.3."""
    _check_shapes("mse", pred, target, axis)
    diff = pred - target
    return _reduce(diff * diff, reduction, "mse", axis)


def bce(prob: Tensor, target: Any, reduction: str = "mean", eps: float = BCE_EPS) -> Tensor:
    """Bernoulli NLL from probabilities p: -[x ln p + (1 - x) ln(1 - p)], p clipped to [eps, 1 - eps].
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.4."""
    _check_shapes("bce", prob, target)
    _check_probabilities("bce", target)
    target = ops.as_tensor(target, prob, "bce")  # 0/1 integer labels: prob's dtype before `1.0 - target`
    p = ops.clip(prob, eps, 1.0 - eps)
    values = -(target * ops.log(p) + (1.0 - target) * ops.log(1.0 - p))
    return _reduce(values, reduction, "bce")


def bce_with_logits(logits: Tensor, target: Any, reduction: str = "mean", axis: int | None = None) -> Tensor:
    """Bernoulli NLL from logits l: max(l, 0) - l·x + ln(1 + e^-|l|); stable for any l (see ops).
    With ``reduction="sum"`` and ``axis``, the sum over that axis only (one value per example).
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.5-1.6."""
    _check_shapes("bce_with_logits", logits, target, axis)
    _check_probabilities("bce_with_logits", target)
    if reduction == "sum":  # one node that does not keep the elementwise values (same numbers)
        return ops.bce_with_logits_sum(logits, target, axis=axis)
    return _reduce(ops.bce_with_logits(logits, target), reduction, "bce_with_logits", axis)


def gaussian_nll(mean: Tensor, target: Any, logvar: Tensor | float | None = None, reduction: str = "mean",
                 axis: int | None = None) -> Tensor:
    """Gaussian NLL of ``target`` under N(mean, exp(logvar)), constant included:

        ½ [ln(2π) + logvar + (x - mean)² e^(-logvar)]

    With ``logvar=None`` the variance is 1: ½ (x - mean)² + ½ ln(2π). With
    ``reduction="sum"`` and ``axis``, the sum over that axis only (one value per
    example). This is the one home of the Gaussian log-density: ``Normal.log_prob``
    and the models' Gaussian decoders call it.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.1.
    """
    _check_shapes("gaussian_nll", mean, target, axis)
    diff = mean - target
    if logvar is None:
        values = 0.5 * (diff * diff + LOG_2PI)
    else:
        inv_var = ops.exp(-logvar) if isinstance(logvar, Tensor) else math.exp(-logvar)
        values = 0.5 * (diff * diff * inv_var + logvar + LOG_2PI)
    return _reduce(values, reduction, "gaussian_nll", axis)


def _class_index(name: str, scores: Tensor, labels: Any) -> tuple[Any, int]:
    """(an index that picks each label's score, the class axis), after checking the labels.

    Shapes as in PyTorch: scores (N, C) with labels (N,); (N, C, d₁, ...) with labels
    (N, d₁, ...), the classes on axis 1; or one example, scores (C,) with a 0-d label.
    """
    if scores.ndim == 0:
        raise ValueError(f"{name}: scores must have a class axis, got a 0-d tensor")
    axis = 1 if scores.ndim >= 2 else 0
    classes = scores.shape[axis]
    y = backend.to_numpy(labels.data if isinstance(labels, Tensor) else labels)
    y = backend.numpy.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: labels must be integer class indices, got dtype {y.dtype}; for one-hot or soft "
            "targets use -(targets * log_softmax(logits, axis)).sum(axis)"
        )
    expected = scores.shape[:axis] + scores.shape[axis + 1:]
    if y.shape != expected:
        raise ValueError(f"{name}: scores of shape {scores.shape} need labels of shape {expected}, got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{name}: labels must lie in [0, {classes}), got values from {y.min()} to {y.max()}")
    grid = list(backend.numpy.indices(y.shape, sparse=True))
    return tuple(grid[:axis] + [y] + grid[axis:]), axis


def nll_loss(log_probs: Tensor, labels: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer labels under categorical log-probabilities:
    ℓᵢ = -log_probs[i, yᵢ] (classes on axis 1, or axis 0 for one example).

    ∂ℓᵢ/∂log_probs[i, c] = -[c = yᵢ]: the gradient is -g at each label and 0 elsewhere.
    A reduction ``"mean"`` (the default, as in PyTorch) averages over the examples.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.47.
    """
    index, _ = _class_index("nll_loss", log_probs, labels)
    return _reduce(-log_probs[index], reduction, "nll_loss")


def cross_entropy(logits: Tensor, labels: Any, reduction: str = "mean") -> Tensor:
    """Categorical NLL from logits: ℓᵢ = logsumexp(lᵢ) - lᵢ[yᵢ] = -log_softmax(lᵢ)[yᵢ].

    ∂ℓᵢ/∂lᵢ = softmax(lᵢ) - onehot(yᵢ) (composed from ``log_softmax`` and ``nll_loss``,
    stable for any logits). The categorical analogue of the Bernoulli likelihood in
    derivations/01_losses_as_likelihoods.md, Eq. 1.4.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.46-15.47.
    """
    _, axis = _class_index("cross_entropy", logits, labels)
    return nll_loss(ops.log_softmax(logits, axis=axis), labels, reduction)
