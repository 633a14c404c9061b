"""The exercises: one stub and one reference solution per name, shipped as package data.

``stubs/NAME.py`` is what ``minivae exercise start`` copies for a student; its docstring
states the task and the math. ``solutions/NAME.py`` is the same file filled in, graded by
``minivae exercise check NAME --solution``. The grading itself is in
:mod:`minivae.course.grader`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Exercise:
    name: str
    lecture: str  # the lecture it follows (course/ notebooks, in order)
    title: str

    @property
    def stub(self) -> Path:
        return HERE / "stubs" / f"{self.name}.py"

    @property
    def solution(self) -> Path:
        return HERE / "solutions" / f"{self.name}.py"


EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise("sigmoid", "lecture 1 (an autograd engine by hand)", "the sigmoid and its VJP, stable for logits of ±1e4"),
    Exercise("div", "lecture 2 (a dense layer's backprop)", "a broadcasting binary op (a / b) and its VJP"),
    Exercise("kl", "lecture 3 (from AE to VAE)", "the Gaussian KL to N(0, I) and its gradient"),
    Exercise("reparameterize", "lecture 4 (backprop through a stochastic node)",
             "the reparameterized sample z = mu + exp(logvar/2)·eps and its backward"),
    Exercise("score", "lecture 4 (backprop through a stochastic node)",
             "the score-function surrogate for a Bernoulli latent, with a baseline"),
    Exercise("logsumexp", "lecture 5 (tighter bounds)", "logsumexp over the last axis and its VJP, without overflow"),
    Exercise("iwae", "lecture 5 (tighter bounds)", "the IWAE bound L_k with a stable log-mean-exp"),
)}


def get(name: str) -> Exercise:
    """The exercise called ``name``; KeyError with the list of names otherwise."""
    try:
        return EXERCISES[name]
    except KeyError:
        raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}") from None
