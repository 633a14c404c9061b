"""One training step, shared by the Trainer and the labs: loss, check, backward, update.

Written once so every loop in the project treats a bad loss the same way: a loss
that is NaN, infinite or beyond ``limit`` stops *before* ``backward`` and the
update, so the parameters are still the ones that produced it (not worse ones).
"""

from __future__ import annotations

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


def training_step(
    model: Module, optimizer: Adam, x: Any, y: Any, rng: Generator, limit: float = math.inf
) -> dict[str, Tensor]:
    """Minimise ``model.loss(x, y, rng, step)["loss"]`` by one optimizer step; returns the loss entries.
    ``step`` is the optimizer's count of steps taken so far (it drives schedules such as the KL
    warm-up): passed to the loss, never written into the model.

    Raises :class:`BadLoss` (without updating anything) when the loss is NaN, ±inf or
    ``|loss| > limit``.
    """
    out = model.loss(x, y, rng, step=optimizer.steps)
    value = out["loss"].item()
    if not math.isfinite(value) or abs(value) > limit:
        raise BadLoss(value, limit)
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    return out
