"""Check an op against a reference on every awkward case: the op table as a public harness.

``check_op(fn, reference)`` feeds ``fn`` (a function of minivae Tensors) the inputs
that break hand-written derivatives: 0-d arrays, size-1 axes broadcast on either
side, transposed and strided (non-contiguous) views, a tensor used twice, extreme
values (logits ±1e4, log-variances ±30), in float64 and float32. For each case it
compares

1. the value with ``reference`` (a float64 NumPy function of the same arrays);
2. the gradient, seeded with a random upstream gradient G (a backward that ignores
   G would pass a seed of ones), with float64 central differences of ⟨G, reference⟩;
3. the output's shape and dtype, each gradient's shape and dtype, and that no input
   array was changed.

Overflow, division by zero and invalid operations inside ``fn`` are errors here
(NumPy only warns): an op that overflows for large inputs fails the extreme case.
The answer is an :class:`OpReport`; ``print(report)`` shows one block per failing
check: the case, the worst element, analytic against numeric, and a hint.

A teacher writing a new exercise needs only this module::

    from minivae.testing import check_op, unary_cases
    report = check_op(my_softplus, lambda x: np.logaddexp(0, x), unary_cases(extreme=[-1e4, 1e4]))
    assert report.ok, report
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from minivae.providers import backend
from minivae.tensor import Tensor, unbroadcast

LAYOUTS = ("contiguous", "transposed", "strided")
EXTREME_LOGITS = (-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4)
EXTREME_LOGVARS = (-30.0, -1.0, 0.0, 1.0, 30.0)
_ENGINE_DIR = str(Path(__file__).resolve().parent)


class ContractError(Exception):
    """A broken promise of the op's interface (a gradient of the wrong shape, say):
    :func:`check_op` shows its message as it is, without "your code raised"."""


# ------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    """One set of inputs for an op, all float64 values (cast for the float32 run).

    ``layouts`` says how each input lies in memory ("contiguous", "transposed": the .T
    of a C-ordered array, "strided": every other element of a buffer); ``constant``
    marks inputs passed as plain arrays (noise, samples: no gradient); ``uses`` > 1
    applies the op that many times to the same tensors and adds the results (a tensor
    used twice); ``same`` fills every input slot with the first input.
    """

    name: str
    inputs: tuple[np.ndarray, ...]
    layouts: tuple[str, ...] = ()
    constant: tuple[bool, ...] = ()
    uses: int = 1
    same: bool = False

    def __post_init__(self) -> None:
        self.inputs = tuple(np.asarray(v, dtype=np.float64) for v in self.inputs)
        n = len(self.inputs)
        self.layouts = tuple(self.layouts) or ("contiguous",) * n
        self.constant = tuple(self.constant) or (False,) * n
        for layout, v in zip(self.layouts, self.inputs):
            if layout not in LAYOUTS:
                raise ValueError(f"Case {self.name!r}: layout {layout!r} is not one of {LAYOUTS}")
            if layout == "transposed" and v.ndim < 2:
                raise ValueError(f"Case {self.name!r}: a transposed input needs 2 or more axes, got shape {v.shape}")

    def describe(self) -> str:
        parts = []
        for v, layout, const in zip(self.inputs, self.layouts, self.constant):
            kind = "" if layout == "contiguous" else f" {layout}"
            parts.append(f"{v.shape}{kind}{' constant' if const else ''}")
        return ", ".join(parts)


def _draw(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=shape)


def unary_cases(low: float = -2.0, high: float = 2.0, extreme: Sequence[float] | None = None,
                seed: int = 0) -> list[Case]:
    """The op table's cases for an elementwise op of one input, values drawn from [low, high]."""
    rng = np.random.default_rng(seed)
    d = lambda *shape: _draw(rng, shape, low, high)  # noqa: E731
    cases = [
        Case("0-d", (d(),)),
        Case("vector", (d(5),)),
        Case("matrix", (d(2, 3),)),
        Case("non-contiguous (transposed) view", (d(3, 4),), layouts=("transposed",)),
        Case("non-contiguous (strided) view", (d(2, 3),), layouts=("strided",)),
        Case("a tensor used twice", (d(2, 3),), uses=2),
    ]
    if extreme is not None:
        cases.append(Case("extreme values", (np.asarray(extreme, dtype=np.float64),)))
    return cases


def binary_cases(low: float = -2.0, high: float = 2.0, low_b: float | None = None, high_b: float | None = None,
                 seed: int = 0) -> list[Case]:
    """The op table's cases for a broadcasting op of two inputs (b from [low_b, high_b])."""
    rng = np.random.default_rng(seed)
    lb, hb = (low if low_b is None else low_b), (high if high_b is None else high_b)
    a = lambda *shape: _draw(rng, shape, low, high)  # noqa: E731
    b = lambda *shape: _draw(rng, shape, lb, hb)  # noqa: E731
    overlap = (max(low, lb), min(high, hb)) if max(low, lb) < min(high, hb) else (low, high)
    both = lambda *shape: _draw(rng, shape, *overlap)  # noqa: E731  (one tensor in both slots)
    return [
        Case("same shape", (a(2, 3), b(2, 3))),
        Case("broadcast on the left (a has a size-1 axis)", (a(2, 1), b(2, 3))),
        Case("broadcast on the right (b has a size-1 axis)", (a(2, 3), b(1, 3))),
        Case("size-1 axes on both sides", (a(2, 1), b(1, 3))),
        Case("0-d with a matrix", (a(), b(2, 3))),
        Case("a vector with 0-d", (a(3,), b())),
        Case("leading axes added", (a(2, 3, 4), b(3, 1))),
        Case("0-d, both sides", (a(), b())),
        Case("non-contiguous views (transposed with strided)", (a(3, 4), b(3, 4)), layouts=("transposed", "strided")),
        Case("one tensor in both slots", (both(2, 3),), same=True),
        Case("a tensor used twice", (a(2, 3), b(3,)), uses=2),
    ]


# ----------------------------------------------------------------------------------- report
@dataclass
class Check:
    """The outcome of one check: a case, a dtype, and what was compared."""

    case: str
    dtype: str
    what: str  # "value", "gradient of mu", "error", ...
    passed: bool
    detail: str = ""  # for a failure: the worst element, yours against the reference
    hint: str = ""

    def block(self) -> str:
        lines = [f"FAIL  case '{self.case}', {self.dtype}: {self.what}"]
        lines += [f"      {line}" for line in self.detail.splitlines()]
        if self.hint:
            lines.append(f"      hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class OpReport:
    """Every check :func:`check_op` made; ``ok`` when all passed. ``str()`` lists the failures."""

    name: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        passed = sum(c.passed for c in self.checks)
        cases = len({(c.case, c.dtype) for c in self.checks})
        verdict = "all pass" if self.ok else f"{len(self.failures)} FAILED"
        return f"{self.name}: {passed} of {len(self.checks)} checks passed over {cases} case/dtype pairs ({verdict})"

    def render(self, limit: int | None = 8) -> str:
        """One block per failing check (the first ``limit`` of them), then the summary line."""
        # The same error in many cases (a stub's NotImplementedError) is shown once.
        failures, repeats = [], {}
        for f in self.failures:
            key = (f.what, f.detail.split("\n", 1)[-1]) if f.what in ("forward", "backward") else id(f)
            if key in repeats:
                repeats[key][1].append(f"'{f.case}' {f.dtype}")
            else:
                repeats[key] = (f, [])
                failures.append(f)
        blocks = []
        for f in failures[:limit]:
            key = (f.what, f.detail.split("\n", 1)[-1]) if f.what in ("forward", "backward") else id(f)
            more = repeats[key][1]
            blocks.append(f.block() + (f"\n      (the same in {len(more)} more case/dtype pairs)" if more else ""))
        if limit is not None and len(failures) > limit:
            blocks.append(f"... and {len(failures) - limit} more failing checks (fix these first)")
        return "\n\n".join(blocks + [self.summary()])

    def __str__(self) -> str:
        return self.render()

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython shows the same text as print()
        printer.text(str(self))


# ------------------------------------------------------------------------------------ check
def check_op(
    fn: Callable[..., Tensor],
    reference: Callable[..., np.ndarray],
    cases: Sequence[Case] | None = None,
    *,
    name: str | None = None,
    dtypes: Sequence[str] = ("float64", "float32"),
    hint: Callable[[Check, Case], str | None] | None = None,
    reference_vjp: Callable[..., Sequence[np.ndarray]] | None = None,
    seed: int = 0,
) -> OpReport:
    """Check ``fn`` (Tensors in, a Tensor out) against ``reference`` (float64 arrays in and out).

    ``cases`` defaults to :func:`unary_cases` or :func:`binary_cases` by the number of
    parameters of ``reference``. ``hint(check, case)`` may return a hint for a failing
    check (an exercise's own advice); generic hints (a flipped sign, a factor of 2, an
    ignored upstream gradient, an overflow) are added where they fit. The gradient of
    every non-constant input is compared with central differences of ⟨G, reference⟩ at
    the float64 values, for a fixed random G; the float32 run is held to float32
    tolerances against the same float64 numbers. Where differences lose every digit (an
    output of 1e13 from log-variances of 30 swamps a change of 1e-6 in another input),
    pass ``reference_vjp(G, *inputs)``: the exact float64 gradients, one per non-constant
    input, used instead.
    """
    import inspect

    if cases is None:
        arity = len(inspect.signature(reference).parameters)
        cases = binary_cases() if arity == 2 else unary_cases()
    report = OpReport(name or getattr(fn, "__name__", "op"))
    rng = np.random.default_rng(seed)
    for case in cases:
        expected = _expected(reference, case, rng, reference_vjp)
        for dtype in dtypes:
            checks = _check_case(fn, case, dtype, expected)
            for check in checks:
                if not check.passed:
                    check.hint = check.hint or (hint(check, case) if hint else None) or ""
            report.checks += checks
    return report


@dataclass
class _Expected:
    """The reference's answer for one case: value, upstream gradient G, and ⟨G, f⟩'s gradients."""

    value: np.ndarray | None = None
    seed: np.ndarray | None = None
    grads: list[np.ndarray | None] = field(default_factory=list)
    ones_grads: list[np.ndarray | None] = field(default_factory=list)  # the gradients for G = 1
    error: str = ""
    exact: bool = False  # the gradients come from a reference VJP, not from differences


def _slots(case: Case, xs: Sequence[Any]) -> list[Any]:
    return [xs[0]] * _arity(case) if case.same else list(xs)


def _arity(case: Case) -> int:
    return 2 if case.same else len(case.inputs)


def _composite(f: Callable, case: Case, xs: Sequence[Any]):
    """The op applied ``uses`` times to the case's inputs, results added."""
    args = _slots(case, xs)
    out = f(*args)
    for _ in range(case.uses - 1):
        out = out + f(*args)
    return out


def _expected(reference: Callable, case: Case, rng: np.random.Generator, reference_vjp=None) -> _Expected:
    xs = [v.copy() for v in case.inputs]
    try:
        value = np.asarray(_composite(reference, case, xs), dtype=np.float64)
    except Exception as err:  # the teacher's reference is broken: say so, do not grade against it
        return _Expected(error=f"the reference raised {type(err).__name__}: {err}")
    magnitude = rng.uniform(0.5, 1.5, size=value.shape)
    seed = np.where(rng.uniform(size=value.shape) < 0.5, -magnitude, magnitude)
    if reference_vjp is not None:
        return _Expected(value, seed, _exact(reference_vjp, case, xs, seed), _exact(reference_vjp, case, xs, 1.0 + 0 * seed),
                         exact=True)
    grads, ones = [], []
    for i, const in enumerate(case.constant):
        if const:
            grads.append(None)
            ones.append(None)
            continue
        grads.append(_central_differences(lambda: _composite(reference, case, xs), xs[i], seed))
        ones.append(_central_differences(lambda: _composite(reference, case, xs), xs[i], np.ones_like(seed)))
    return _Expected(value, seed, grads, ones)


def _exact(reference_vjp: Callable, case: Case, xs: list[np.ndarray], seed: np.ndarray) -> list[np.ndarray | None]:
    """The reference VJP's gradients for the case: summed over the slots an input fills, times ``uses``."""
    per_slot = list(reference_vjp(seed, *_slots(case, xs)))
    variable = [i for i, const in enumerate(case.constant) if not const] if not case.same else [0, 1]
    grads: list[np.ndarray | None] = [None] * len(case.inputs)
    for slot, grad in zip(variable, per_slot):
        i = 0 if case.same else slot
        grad = np.asarray(grad, dtype=np.float64)
        grad = unbroadcast(grad, xs[i].shape) if grad.ndim >= xs[i].ndim else np.broadcast_to(grad, xs[i].shape)
        total = case.uses * grad
        grads[i] = total if grads[i] is None else grads[i] + total
    return grads


def _central_differences(f: Callable[[], Any], x: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """d⟨seed, f⟩/dx by central differences, a step of 1e-6 relative to each element."""
    out = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        original = x[index]
        h = 1e-6 * max(1.0, abs(original))
        x[index] = original + h
        plus = float((np.asarray(f()) * seed).sum())
        x[index] = original - h
        minus = float((np.asarray(f()) * seed).sum())
        x[index] = original
        out[index] = (plus - minus) / (2 * h)
    return out


def _layout(v: np.ndarray, layout: str, dtype: str) -> np.ndarray:
    v = v.astype(dtype)
    if layout == "transposed":
        return np.ascontiguousarray(v.T).T
    if layout == "strided":
        buffer = np.zeros(v.shape + (2,), dtype=dtype)
        buffer[..., 0] = v
        return buffer[..., 0]
    return v.copy()


def _tolerance(dtype: str) -> tuple[float, float]:
    """(atol, rtol) for comparing with float64 numbers: float64 is held to the differences' own accuracy."""
    return (1e-6, 1e-5) if dtype == "float64" else (1e-4, 2e-3)


def _check_case(fn: Callable, case: Case, dtype: str, expected: _Expected) -> list[Check]:
    def fail(what: str, detail: str, hint: str = "") -> Check:
        return Check(case.name, dtype, what, False, detail, hint)

    where = f"inputs {case.describe()}"
    if expected.error:
        return [fail("reference", expected.error, "fix the reference function")]
    arrays = [_layout(v, layout, dtype) for v, layout in zip(case.inputs, case.layouts)]
    before = [a.copy() for a in arrays]
    args = [a if const else Tensor(a, requires_grad=True, dtype=dtype) for a, const in zip(arrays, case.constant)]
    try:
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            out = _composite(fn, case, args)
    except (Exception, SystemExit) as err:  # sys.exit() in the op is a failure too, not the end of the check
        return [fail("forward", f"{where}\n{_describe_error(err)}", _error_hint(err))]
    checks = []
    value_check = _compare_value(out, expected.value, dtype, where)
    checks.append(Check(case.name, dtype, "value", value_check is None) if value_check is None
                  else fail("value", *value_check))
    if not isinstance(out, Tensor) or out.shape != expected.value.shape:
        return checks  # no graph to go backward through, or no seed of the right shape
    try:
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            out.backward(expected.seed.astype(dtype))
    except (Exception, SystemExit) as err:
        return checks + [fail("backward", f"{where}\n{_describe_error(err)}", _error_hint(err))]
    names = _input_names(fn, case)
    for i, (arg, const) in enumerate(zip(args, case.constant)):
        if const:
            continue
        what = f"gradient of {names[i]}"
        problem = _compare_gradient(arg, expected, i, dtype, where)
        checks.append(Check(case.name, dtype, what, True) if problem is None else fail(what, *problem))
    changed = [names[i] for i, (a, b) in enumerate(zip(arrays, before)) if not np.array_equal(a, b, equal_nan=True)]
    checks.append(Check(case.name, dtype, "inputs unchanged", not changed) if not changed else fail(
        "inputs unchanged", f"{where}\nthe op wrote into its input {', '.join(changed)}",
        "never modify an input array in place (x += ...); compute a new array"))
    return checks


def _input_names(fn: Callable, case: Case) -> list[str]:
    """The op's parameter names (for messages), or input 0, input 1, ..."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    n = len(case.inputs)
    return params[:n] if len(params) >= n else [f"input {i}" for i in range(n)]


def _compare_value(out: Any, want: np.ndarray, dtype: str, where: str) -> tuple[str, str] | None:
    if not isinstance(out, Tensor):
        return (f"the op returned a {type(out).__name__}, not a minivae Tensor ({where})",
                "return a Tensor (Tensor.from_op(...), or a composition of minivae ops)")
    if out.shape != want.shape:
        return (f"the output has shape {out.shape}, expected {want.shape} ({where})",
                "check which axes the op keeps or reduces, and the broadcast shape")
    if out.dtype != dtype:
        return (f"the output is {out.dtype}, but the inputs are {dtype} ({where})",
                f"keep the inputs' dtype: build constants with the input's dtype (x.dtype), not float64 defaults")
    got = backend.to_numpy(out.data).astype(np.float64)
    return _compare_arrays(got, want, dtype, where, "value")


def _compare_gradient(arg: Tensor, expected: _Expected, i: int, dtype: str, where: str) -> tuple[str, str] | None:
    grad, want = arg.grad, expected.grads[i]
    if grad is None:
        if not np.any(want):
            return None
        return (f"no gradient reached this input ({where})",
                "the backward returned None for it, or the op is not connected to it in the graph")
    shape = tuple(getattr(grad, "shape", ()))
    if shape != arg.shape or getattr(grad, "dtype", None) != arg.dtype:
        return (f"the gradient is {getattr(grad, 'dtype', type(grad).__name__)} {shape}, expected "
                f"{arg.dtype} {arg.shape} ({where})", "return one gradient per input, of that input's shape and dtype")
    got = backend.to_numpy(grad).astype(np.float64)
    problem = _compare_arrays(got, want, dtype, where, "gradient", expected.exact)
    if problem is None:
        return None
    detail, hint = problem
    return detail, _gradient_hint(got, want, expected.ones_grads[i], dtype) or hint


def _compare_arrays(got: np.ndarray, want: np.ndarray, dtype: str, where: str, kind: str,
                    exact: bool = False) -> tuple[str, str] | None:
    atol, rtol = _tolerance(dtype)
    finite = np.isfinite(want)
    bad_nonfinite = finite & ~np.isfinite(got)
    excess = np.where(finite, np.abs(got - want) - (atol + rtol * np.abs(want)), 0.0)
    excess = np.where(np.isnan(excess) | bad_nonfinite, np.inf, excess)
    excess = np.where(~finite & (got != want), np.inf, excess)
    if got.size == 0 or excess.max() <= 0:
        return None
    worst = np.unravel_index(int(np.argmax(excess)), got.shape) if got.ndim else ()
    label = "analytic (yours)" if kind == "gradient" else "yours"
    truth = ("the reference VJP" if exact else "numeric (central differences of the reference)") \
        if kind == "gradient" else "reference"
    detail = (f"{where}\nworst element {[int(i) for i in worst] if worst else '(0-d)'}: {label} {got[worst]:.8g}, "
              f"{truth} {want[worst]:.8g}")
    count = int((excess > 0).sum())
    if got.size > 1:
        detail += f"  ({count} of {got.size} elements off)"
    hint = ""
    if bad_nonfinite.any():
        hint = "a non-finite (inf/nan) result where the true value is finite: an overflow for large inputs?"
    elif kind == "value":
        hint = _ratio_hint(got, want) or ""
    return detail, hint


def _ratio_hint(got: np.ndarray, want: np.ndarray) -> str | None:
    """A hint for a result that is the right one times a constant."""
    mask = np.abs(want) > 1e-6
    if not mask.any():
        return None
    ratio = got[mask] / want[mask]
    for factor, text in ((-1.0, "every element has the wrong sign"),
                         (2.0, "every element is twice the right value: a missing factor ½?"),
                         (0.5, "every element is half the right value: a factor ½ too many?")):
        if np.allclose(ratio, factor, rtol=1e-3):
            return text
    return None


def _gradient_hint(got, want, ones, dtype: str) -> str | None:
    atol, rtol = _tolerance(dtype)
    if ones is not None and got.shape == ones.shape and np.all(np.abs(got - ones) <= atol + rtol * np.abs(ones)):
        return ("your backward ignores the upstream gradient g: it returns the gradient for g = 1; "
                "multiply by g (the chain rule: x̄ = g · ∂y/∂x)")
    return _ratio_hint(got, want)


def _describe_error(err: BaseException) -> str:
    """The exception in one line, with the line of the op's own code that raised it (not the engine's)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(_ENGINE_DIR)]
    if isinstance(err, ContractError):
        return str(err)
    text = f"your code raised {type(err).__name__}: {err}"
    if isinstance(err, SystemExit):
        text = f"your code called sys.exit({err.code!r}); an op must return its result"
    if isinstance(err, FloatingPointError):
        text = f"{err} (NumPy would only have warned; the result would have held inf or nan)"
    if frames:
        last = frames[-1]
        text += f"\n  at {Path(last.filename).name}, line {last.lineno}: {(last.line or '').strip()}"
    return text


def _error_hint(err: BaseException) -> str:
    if isinstance(err, FloatingPointError) and "divide" in str(err):
        return ("a division by zero or the log of 0: for extreme inputs, use a form that never reaches 0 "
                "(log σ(x) = -softplus(-x), not log(σ(x)))")
    if isinstance(err, FloatingPointError) and "invalid" in str(err):
        return "an invalid operation (inf - inf, 0 · inf, 0/0): for extreme inputs, use a form that stays finite"
    if isinstance(err, FloatingPointError):
        return ("compute it in a form that cannot overflow for large |x| "
                "(e.g. exp(-|x|) instead of exp(-x), or subtract the maximum before exp)")
    if isinstance(err, NotImplementedError):
        return "this part of the exercise is not written yet"
    if isinstance(err, ValueError) and "broadcast" in str(err):
        return "shapes do not broadcast: is the code right for 1-D inputs only? (keepdims, or g[..., None])"
    return ""
