"""One training step, shared by the Trainer and the labs: loss, check, backward, update.

Written once so every loop in the project treats a bad loss the same way: a loss
that is NaN, infinite or beyond ``limit`` stops *before* ``backward`` and the
update, so the parameters are still the ones that produced it (not worse ones).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from minivae.nn import Module
from minivae.optim import Adam
from minivae.random import Generator
from minivae.tensor import Tensor


class BadLoss(FloatingPointError):
    """The loss of a step was not finite, or beyond the explosion limit; ``value`` holds it."""

    def __init__(self, value: float, limit: float) -> None:
        self.value, self.limit = value, limit
        what = "not finite" if not math.isfinite(value) else f"beyond {limit:.3g} (exploding)"
        super().__init__(f"the loss is {value:.6g}, {what}")


def call_loss(model: Any, x: Any, y: Any, rng: Generator, step: int | None) -> Any:
    """``model.loss(x, y, rng, step=step)``, or ``model.loss(x, y, rng)`` for a loss without a
    ``step`` parameter: the built-in models schedule the KL warm-up by it, a model of your own
    (Trainer's protocol) need not take it."""
    loss = model.loss
    return loss(x, y, rng, step=step) if _takes_step(loss) else loss(x, y, rng)


#: {loss function: whether it takes ``step``}: read once per function, not at every step.
_TAKES_STEP: dict[Any, bool] = {}


def _takes_step(loss: Any) -> bool:
    function = getattr(loss, "__func__", loss)  # a bound method's function is the same for every instance
    try:
        return _TAKES_STEP[function]
    except (KeyError, TypeError):  # not seen yet (or unhashable: read each time)
        pass
    try:
        parameters = inspect.signature(loss).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the protocol's three arguments
        takes = False
    else:
        takes = any(p.name == "step" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    try:
        _TAKES_STEP[function] = takes
    except TypeError:
        pass
    return takes


def check_loss_entries(model: Any, out: Any) -> None:
    """``model.loss`` returned {"loss": one-element tensor with a gradient, other one-element tensors}:
    a one-line TypeError naming the model and the fix otherwise (a student's model breaks it first)."""
    problem = None
    if not isinstance(out, dict):
        problem = f"returned a {type(out).__name__}, not a dict"
    elif "loss" not in out:
        problem = f"returned a dict without a 'loss' entry (it has {', '.join(map(repr, out)) or 'nothing'})"
    else:
        for name, value in out.items():
            if not isinstance(value, Tensor):
                problem = f"returned {name!r} as a {type(value).__name__}, not a one-element Tensor"
            elif value.size != 1:
                problem = f"returned {name!r} with shape {value.shape}, not one element (reduce it: .mean())"
            if problem:
                break
        if problem is None and not out["loss"].requires_grad:
            problem = ("returned a 'loss' that does not require grad (computed under no_grad(), detached, or "
                       "not from the parameters)")
    if problem:
        raise TypeError(f"{type(model).__name__}.loss(x, y, rng) {problem}; it must return a dict of one-element "
                        "tensors, {'loss': loss, ...} (the loss to minimise, averaged over the batch; other "
                        "entries are logged)")


def training_step(
    model: Module, optimizer: Adam, x: Any, y: Any, rng: Generator, limit: float = math.inf
) -> dict[str, Tensor]:
    """Minimise ``model.loss(x, y, rng, step)["loss"]`` by one optimizer step; returns the loss entries.
    ``step`` is the optimizer's count of steps taken so far (it drives schedules such as the KL
    warm-up): passed to the loss, never written into the model.

    Raises :class:`BadLoss` (without updating anything) when the loss is NaN, ±inf or
    ``|loss| > limit``.
    """
    out = call_loss(model, x, y, rng, step=optimizer.steps)
    check_loss_entries(model, out)
    value = out["loss"].item()
    if not math.isfinite(value) or abs(value) > limit:
        raise BadLoss(value, limit)
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    return out
