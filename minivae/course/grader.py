"""The autograder: one exercise's checks, run on a student's file.

``grade(name, path)`` imports the file, builds the op from the student's functions and
runs :func:`minivae.testing.check_op` against a float64 NumPy reference on the awkward
cases of the op table. For the exercises where the student writes a VJP by hand, the op
is built here (not from the file's own glue), with the contract checked strictly: a
tuple of one gradient per input, each of ITS input's shape and dtype. (The engine would
sum a gradient of the broadcast shape down by itself; the exercise is to do it.)

``python -m minivae.course.grader NAME FILE`` prints the report and exits 0 when every
check passes, 1 otherwise. ``minivae exercise check`` runs it in a subprocess with a time
limit, so a student's endless loop cannot hang the command.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
from scipy import special

from minivae.course.exercises import EXERCISES, get
from minivae.tensor import Tensor
from minivae.testing import (
    EXTREME_LOGITS, Case, Check, ContractError, OpReport, binary_cases, check_op, unary_cases,
)


class StudentFileError(Exception):
    """The student's file cannot be used at all (does not import, lacks a function)."""


# ------------------------------------------------------------------------ the student's file
def load(path: str | Path) -> ModuleType:
    """Import the file at ``path`` as a fresh module; StudentFileError says what went wrong."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"minivae_exercise_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise StudentFileError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise StudentFileError(f"{path.name}, line {err.lineno}: SyntaxError: {err.msg}") from None
    except SystemExit:
        raise
    except Exception as err:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == str(path)]
        where = f", line {frames[-1].lineno}" if frames else ""
        raise StudentFileError(f"importing {path.name}{where} raised {type(err).__name__}: {err}") from None
    return module


def _function(module: ModuleType, name: str, params: str) -> Callable:
    fn = getattr(module, name, None)
    if not callable(fn):
        raise StudentFileError(f"the file defines no function {name}({params}); keep the stub's function names")
    return fn


def strict_op(forward: Callable, vjp: Callable, inputs: tuple[str, ...], n_constants: int = 0,
              vjp_gets_output: bool = True, name: str = "op") -> Callable[..., Tensor]:
    """The op built from a student's ``forward`` and ``vjp`` on arrays, with the contract checked.

    The op takes the tensors named ``inputs`` and then ``n_constants`` plain arrays;
    ``vjp(g, *arrays[, y])`` must return one gradient per tensor input (a bare array when
    there is one), each of that input's shape and dtype: anything else is a
    :class:`ContractError` that says what was returned and what was expected.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.1 (the node's backward is the VJP
    x̄ = Jᵀg; the student's ``vjp`` supplies it, and Eq. 15.4 is the sum over broadcast axes
    the contract asks for).
    """
    n = len(inputs)

    def op(*args):
        tensors, constants = args[:n], args[n:]
        arrays = [t.data for t in tensors] + list(constants)
        y = forward(*arrays)
        if not isinstance(y, (np.ndarray, np.generic)):
            raise ContractError(f"forward returned a {type(y).__name__}; expected an array")
        y = np.asarray(y)

        def backward(g):
            grads = vjp(g, *arrays, y) if vjp_gets_output else vjp(g, *arrays)
            if n == 1 and not isinstance(grads, (tuple, list)):
                grads = (grads,)
            if not isinstance(grads, (tuple, list)) or len(grads) != n:
                got = f"{len(grads)} values" if isinstance(grads, (tuple, list)) else f"a {type(grads).__name__}"
                raise ContractError(f"vjp returned {got}; expected a tuple of {n} gradients ({', '.join(inputs)})")
            return tuple(_checked_gradient(gr, t, nm) for gr, t, nm in zip(grads, tensors, inputs))

        return Tensor.from_op(y, tuple(tensors), backward, f"{name} (yours)")

    op.__signature__ = inspect.Signature(  # check_op names the inputs in its messages
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_ONLY) for p in inputs]
        + [inspect.Parameter(f"constant{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(n_constants)])
    return op


def _checked_gradient(grad, t: Tensor, name: str):
    if not isinstance(grad, (np.ndarray, np.generic)):
        raise ContractError(f"vjp returned a {type(grad).__name__} as the gradient of {name}; expected an array")
    grad = np.asarray(grad)
    if grad.shape != t.shape:
        message = f"vjp returned a gradient of shape {grad.shape} for {name}, whose shape is {t.shape}"
        if _broadcasts_to(t.shape, grad.shape):
            message += (f": {name} was broadcast, so sum the gradient over the axes broadcasting added or "
                        f"stretched (keepdims=True), back to {name}'s own shape")
        raise ContractError(message)
    if grad.dtype != t.dtype:
        raise ContractError(f"vjp returned a {grad.dtype} gradient for {name}, which is {t.dtype}: keep the input's dtype")
    return grad


def _broadcasts_to(small: tuple[int, ...], big: tuple[int, ...]) -> bool:
    if len(small) > len(big):
        return False
    return all(s in (1, b) for s, b in zip(small[::-1], big[::-1]))


# ----------------------------------------------------------------------------- the checks
@dataclass
class Spec:
    """How to grade one exercise: build the op, the reference, the cases, the hints."""

    build: Callable[[ModuleType], Callable[..., Tensor]]
    reference: Callable[..., np.ndarray]
    cases: Callable[[], list[Case]]
    hints: dict[str, str]  # check.what (its first word or all of it) -> hint
    reference_vjp: Callable | None = None  # exact gradients, where differences lose every digit

    def hint(self, check: Check, case: Case) -> str | None:
        return self.hints.get(check.what) or self.hints.get(check.what.split()[0])


def _rng() -> np.random.Generator:
    return np.random.default_rng(2026)


def _row_cases(low: float = -2.0, high: float = 2.0) -> list[Case]:
    """Cases for an op that reduces the last axis of one input."""
    r = _rng()
    d = lambda *shape: r.uniform(low, high, size=shape)  # noqa: E731
    return [
        Case("vector", (d(5),)),
        Case("matrix", (d(2, 3),)),
        Case("3-d", (d(2, 3, 4),)),
        Case("a last axis of size 1", (d(3, 1),)),
        Case("non-contiguous (transposed) view", (d(3, 4),), layouts=("transposed",)),
        Case("non-contiguous (strided) view", (d(2, 3),), layouts=("strided",)),
        Case("a tensor used twice", (d(2, 3),), uses=2),
    ]


def _sigmoid_spec() -> Spec:
    return Spec(
        build=lambda m: strict_op(_function(m, "forward", "x"), _function(m, "vjp", "g, x, y"), ("x",), name="sigmoid"),
        reference=special.expit,
        cases=lambda: unary_cases(low=-4, high=4, extreme=EXTREME_LOGITS),
        hints={"value": "σ(x) = 1 / (1 + e^-x); exponentiate only -|x| so that nothing overflows",
               "gradient": "x̄ = g · y · (1 - y) with y = σ(x) (Eq. 2.3: minivae derive 02 --show)"},
    )


def _div_spec() -> Spec:
    return Spec(
        build=lambda m: strict_op(_function(m, "forward", "a, b"), _function(m, "vjp", "g, a, b"), ("a", "b"),
                                  vjp_gets_output=False, name="div"),
        reference=lambda a, b: a / b,
        cases=lambda: binary_cases(low=-2, high=2, low_b=0.5, high_b=2.0, seed=1),
        hints={"value": "y = a / b, elementwise with broadcasting",
               "gradient of a": "ā = g / b, then summed back to a's shape (Eq. 15.7 and 15.4: minivae derive 15 --show)",
               "gradient of b": "b̄ = -g · a / b², then summed back to b's shape (Eq. 15.7 and 15.4: minivae derive 15 --show)"},
    )


def _logsumexp_reference(x):
    return special.logsumexp(x, axis=-1)


def _logsumexp_spec() -> Spec:
    extreme = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [30.0, 29.0, -5.0]])
    return Spec(
        build=lambda m: strict_op(_function(m, "forward", "x"), _function(m, "vjp", "g, x, y"), ("x",), name="logsumexp"),
        reference=_logsumexp_reference,
        cases=lambda: _row_cases() + [Case("extreme values", (extreme,))],
        hints={"value": "y = m + log Σ exp(x - m) over the last axis, m the row maximum",
               "gradient": "x̄ = g[..., None] · exp(x - y[..., None]): one g per row, lined up with the rows (Eq. 15.33)"},
    )


def _kl_reference(mu, logvar):
    return 0.5 * (np.exp(logvar) + mu * mu - 1 - logvar).sum(axis=-1)


def _kl_spec() -> Spec:
    def cases():
        r = _rng()
        d = lambda *shape: r.uniform(-2, 2, size=shape)  # noqa: E731
        return [
            Case("one row (d,)", (d(4), d(4))),
            Case("a batch (n, d)", (d(3, 4), d(3, 4))),
            Case("3-d", (d(2, 3, 2), d(2, 3, 2))),
            Case("d = 1", (d(3, 1), d(3, 1))),
            Case("non-contiguous views (transposed with strided)", (d(3, 4), d(3, 4)), layouts=("transposed", "strided")),
            Case("a tensor used twice", (d(2, 3), d(2, 3)), uses=2),
            Case("extreme values (log-variances ±30)", (d(2, 5), np.array([[-30.0, -1.0, 0.0, 1.0, 30.0]] * 2))),
        ]

    return Spec(
        build=lambda m: strict_op(_function(m, "forward", "mu, logvar"), _function(m, "vjp", "g, mu, logvar"),
                                  ("mu", "logvar"), vjp_gets_output=False, name="kl"),
        reference=_kl_reference,
        cases=cases,
        reference_vjp=lambda g, mu, logvar: (g[..., None] * mu, g[..., None] * 0.5 * np.expm1(logvar)),
        hints={"value": "KL = ½ Σ_d (e^logvar + mu² - 1 - logvar), summed over the last axis; it is >= 0 (Eq. 5.1: minivae derive 05 --show)",
               "gradient of mu": "mū = g[..., None] · mu",
               "gradient of logvar": "logvar̄ = g[..., None] · ½ (e^logvar - 1)"},
    )


def _reparameterize_spec() -> Spec:
    def cases():
        r = _rng()
        d = lambda *shape: r.uniform(-2, 2, size=shape)  # noqa: E731
        noise = lambda *shape: r.standard_normal(shape)  # noqa: E731
        flags = (False, False, True)
        return [
            Case("same shapes", (d(3, 4), d(3, 4), noise(3, 4)), constant=flags),
            Case("0-d", (d(), d(), noise()), constant=flags),
            Case("eps with a leading sample axis (k, n, d)", (d(3, 4), d(3, 4), noise(2, 3, 4)), constant=flags),
            Case("mu and logvar of one row (1, d), eps (n, d)", (d(1, 4), d(1, 4), noise(3, 4)), constant=flags),
            Case("non-contiguous views (transposed with strided)", (d(3, 4), d(3, 4), noise(3, 4)),
                 layouts=("transposed", "strided", "contiguous"), constant=flags),
            Case("a tensor used twice", (d(2, 3), d(2, 3), noise(2, 3)), constant=flags, uses=2),
            Case("extreme values (log-variances ±30)",
                 (d(5), np.array([-30.0, -1.0, 0.0, 1.0, 30.0]), noise(5)), constant=flags),
        ]

    return Spec(
        build=lambda m: strict_op(_function(m, "forward", "mu, logvar, eps"), _function(m, "vjp", "g, mu, logvar, eps"),
                                  ("mu", "logvar"), n_constants=1, vjp_gets_output=False, name="reparameterize"),
        reference=lambda mu, logvar, eps: mu + np.exp(0.5 * logvar) * eps,
        cases=cases,
        reference_vjp=lambda g, mu, logvar, eps: (g, g * 0.5 * np.exp(0.5 * logvar) * eps),
        hints={"value": "z = mu + exp(logvar / 2) · eps",
               "gradient of mu": "∂z/∂mu = 1: mū = g, summed back to mu's shape",
               "gradient of logvar": "∂z/∂logvar = ½ · exp(logvar / 2) · eps: is the eps factor there? "
                                     "Then sum back to logvar's shape (Eq. 6.4: minivae derive 06 --show)"},
    )


def _iwae_reference(log_w):
    return special.logsumexp(log_w, axis=0) - np.log(log_w.shape[0])


def _iwae_spec() -> Spec:
    def cases():
        r = _rng()
        d = lambda *shape: r.uniform(-120, -80, size=shape)  # noqa: E731  (log-weights of an MNIST VAE)
        return [
            Case("k samples of one example (k,)", (d(5),)),
            Case("a batch (k, n)", (d(5, 3),)),
            Case("k = 1", (d(1, 3),)),
            Case("(k, n, m)", (d(4, 2, 3),)),
            Case("non-contiguous (transposed) view", (d(3, 4),), layouts=("transposed",)),
            Case("non-contiguous (strided) view", (d(4, 3),), layouts=("strided",)),
            Case("a tensor used twice", (d(4, 3),), uses=2),
            Case("extreme values (log-weights of ±1e4)",
                 (np.array([[-1e4, 1e4, -1e4], [-1e4 - 1.0, 1e4 - 2.0, -1e4 - 3.0]]),)),
        ]

    return Spec(
        build=lambda m: _function(m, "iwae_bound", "log_w"),
        reference=_iwae_reference,
        cases=cases,
        hints={"value": "L_k = m + log((1/k) Σ_i exp(log_w_i - m)) over axis 0, m = the maximum over axis 0",
               "gradient": "the engine differentiates your composition: a wrong gradient means a wrong value "
                           "somewhere, or an op with no gradient (a NumPy function on .data) in the path"},
    )


def _score_reference(logits, b, f, baseline):
    log_p = (b * -np.logaddexp(0, -logits) + (1 - b) * -np.logaddexp(0, logits)).sum(axis=-1)
    return ((f - baseline) * log_p).mean(axis=0)


def _score_spec() -> Spec:
    def cases():
        r = _rng()
        flags = (False, True, True, True)

        def case(name, logits, samples, baseline_shape=(), layouts=(), uses=1):
            logits = np.asarray(logits, dtype=float)
            b = (r.uniform(size=(samples,) + logits.shape) < 0.5).astype(float)
            f = r.uniform(-3, 3, size=(samples,) + logits.shape[:-1])
            baseline = r.uniform(-1, 1, size=baseline_shape)
            return Case(name, (logits, b, f, baseline), constant=flags, layouts=layouts, uses=uses)

        return [
            case("one latent vector (d,), 4 samples", r.uniform(-3, 3, 5), 4),
            case("a batch (n, d), 3 samples", r.uniform(-3, 3, (2, 4)), 3),
            case("one sample", r.uniform(-3, 3, (2, 4)), 1),
            case("a baseline per example (n,)", r.uniform(-3, 3, (3, 4)), 2, baseline_shape=(3,)),
            case("non-contiguous (transposed) logits", r.uniform(-3, 3, (4, 3)), 2,
                 layouts=("transposed", "contiguous", "contiguous", "contiguous")),
            case("a tensor used twice", r.uniform(-3, 3, (2, 3)), 2, uses=2),
            case("extreme values (logits ±1e4)", [-1e4, -50.0, 0.0, 50.0, 1e4], 4),
        ]

    return Spec(
        build=lambda m: _function(m, "surrogate", "logits, b, f, baseline"),
        reference=_score_reference,
        cases=cases,
        hints={"value": "surrogate = mean over samples (axis 0) of (f - baseline) · Σ_d [b ln σ(θ) + (1 - b) ln σ(-θ)]; "
                        "is the baseline subtracted?",
               "gradient": "the surrogate's gradient is mean_s (f - c)(b - σ(θ)): b, f and c are constants, "
                           "only ln p(b | θ) depends on θ (Eq. 7.5: minivae derive 07 --show)"},
    )


SPECS: dict[str, Callable[[], Spec]] = {
    "sigmoid": _sigmoid_spec, "div": _div_spec, "logsumexp": _logsumexp_spec, "kl": _kl_spec,
    "reparameterize": _reparameterize_spec, "iwae": _iwae_spec, "score": _score_spec,
}
assert set(SPECS) == set(EXERCISES), "every exercise needs a grading spec"


def grade(name: str, path: str | Path) -> OpReport:
    """Grade the file at ``path`` as exercise ``name``; StudentFileError if it cannot be used."""
    spec = SPECS[get(name).name]()
    fn = spec.build(load(path))
    return check_op(fn, spec.reference, spec.cases(), name=f"exercise {name}", hint=spec.hint,
                    reference_vjp=spec.reference_vjp)


def main(argv: list[str] | None = None) -> int:
    """``python -m minivae.course.grader NAME FILE``: print the report; 0 all pass, 1 otherwise."""
    name, path = (sys.argv[1:] if argv is None else argv)[:2]
    exercise = get(name)
    print(f"grading {Path(path).name} as exercise {name} ({exercise.lecture}: {exercise.title})\n", flush=True)
    try:
        report = grade(name, path)
    except SystemExit as err:  # at import time; sys.exit inside the op is caught by check_op
        print(f"FAIL  importing your file called sys.exit({err.code!r})")
        return 1
    except StudentFileError as err:
        print(f"FAIL  {err}")
        return 1
    except Exception as err:  # a grader bug: one line, never the grader's traceback
        print(f"the grader itself failed ({type(err).__name__}: {err}); please report this to your teacher")
        return 3
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
