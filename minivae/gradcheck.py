"""Finite-difference gradient checking, a public feature.

For a function f of some tensors, the analytic gradient from ``backward()`` is
compared element by element with the central difference

    ∂f/∂θᵢ ≈ [f(θ + h·eᵢ) - f(θ - h·eᵢ)] / (2h),

whose error is O(h²). Everything runs in float64, where h = 1e-6 leaves about
1e-10 of rounding error. A non-scalar output is reduced with fixed random
weights w (a random vector-Jacobian product, ⟨w, f⟩), which checks every output.

Stochastic nodes: pass the generators that ``fn`` draws from as ``rng``; each is
rewound to the same state before every evaluation, so all evaluations see the
same noise (common random numbers) and the difference quotient measures only
the change in θ.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Sequence

from minivae.providers import backend
from minivae.nn import Module
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree; the message holds the report."""

    def __init__(self, report: "GradcheckReport") -> None:
        super().__init__("gradcheck failed:\n" + str(report))
        self.report = report


@dataclass
class InputCheck:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    passed: bool

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict} {self.name} {self.shape}: max abs err {self.max_abs_error:.3e}, max rel err "
                f"{self.max_rel_error:.3e}; worst at {self.worst_index}: analytic {self.analytic:.6g}, "
                f"numeric {self.numeric:.6g}")

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython: a cell's result reads like print()
        printer.text(str(self))


@dataclass
class GradcheckReport:
    inputs: list[InputCheck] = field(default_factory=list)
    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.inputs)

    def _rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        head = ("input", "shape", "max abs err", "max rel err", "worst index", "analytic", "numeric", "result")
        rows = [
            (
                c.name,
                str(c.shape),
                f"{c.max_abs_error:.3e}",
                f"{c.max_rel_error:.3e}",
                str(c.worst_index),
                f"{c.analytic:.6g}",
                f"{c.numeric:.6g}",
                "PASS" if c.passed else "FAIL",
            )
            for c in self.inputs
        ]
        return head, rows

    def _legend(self) -> str:
        return f"(central differences, eps={self.eps:g}; pass when |a - n| <= {self.atol:g} + {self.rtol:g}·|n|)"

    def __str__(self) -> str:
        """One row per checked input, aligned columns, then how the check was made."""
        head, rows = self._rows()
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [head, *rows]]
        lines.append(self._legend())
        return "\n".join(lines)

    def __repr__(self) -> str:  # the dataclass dump would hide the table a notebook or REPL should show
        return str(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython's plain-text display
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """The same table for Jupyter, failing rows in red."""
        from html import escape

        head, rows = self._rows()
        cells = "".join(f"<th>{escape(h)}</th>" for h in head)
        body = []
        for row in rows:
            style = ' style="color:#b00020;font-weight:bold"' if row[-1] == "FAIL" else ""
            body.append(f"<tr{style}>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>")
        verdict = "all inputs pass" if self.ok else "GRADCHECK FAILED"
        return (f"<div><b>gradcheck: {verdict}</b><table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}"
                f"</tbody></table><small>{escape(self._legend())}</small></div>")


def _takes_no_arguments(fn: Callable[..., Tensor]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): call it with the inputs
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return not any(p.kind in positional for p in parameters)


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Tensor | Sequence[Tensor] | Module,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    rng: Generator | Sequence[Generator] | None = None,
    raise_on_failure: bool = True,
    noncontiguous: bool = False,
) -> GradcheckReport:
    """Compare ``backward()`` with central differences for every input that requires grad.

    ``inputs`` is a tensor, a sequence of tensors (``fn(*inputs)`` is called, or ``fn()``
    when it takes no arguments: a closure over them) or a Module (``fn()`` is called and
    the module's parameters are checked). All must be
    float64. Inputs may be views with any strides (transposed, sliced) and 0-d; each
    element is perturbed where it lives, so ``fn`` sees exactly the layout it was given.
    A tensor passed twice is checked once (its gradient is the sum of both uses).
    ``noncontiguous=True`` runs the whole check a second time with every input's values
    moved into a strided (non-contiguous) array, to catch a backward that is right only
    for contiguous arrays. Returns a :class:`GradcheckReport`; raises
    :class:`GradcheckError` on a mismatch unless ``raise_on_failure=False``.
    """
    if isinstance(inputs, Module):
        named = list(inputs.named_parameters())
        call = lambda: fn()  # noqa: E731
    else:
        if not isinstance(inputs, (Tensor, list, tuple)):  # a bare array would be iterated row by row
            raise TypeError(f"gradcheck: inputs is a {type(inputs).__name__}, expected a minivae Tensor, a list of "
                            "them or a Module; wrap arrays as Tensor(x, requires_grad=True) in float64")
        tensors = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        named = [(getattr(t, "name", None) or f"input[{i}]", t) for i, t in enumerate(tensors)]
        # fn(*inputs), or fn() for a closure over them: `lambda: loss(x)`, as for a Module
        call = fn if _takes_no_arguments(fn) else lambda: fn(*tensors)
    for name, t in named:
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: {name} is a {type(t).__name__}, expected a minivae Tensor")
        if t.dtype != "float64":
            raise TypeError(
                f"gradcheck: {name} is {t.dtype}; finite differences need float64 "
                "(use tensor(..., dtype='float64') or module.astype('float64'))"
            )
    seen: set[int] = set()
    checked = []
    for name, t in named:
        if t.requires_grad and id(t) not in seen:
            seen.add(id(t))
            checked.append((name, t))
    if not checked:
        raise ValueError("gradcheck: no input requires grad; nothing to check")
    report = GradcheckReport(eps=eps, atol=atol, rtol=rtol)
    layouts = [""] + ([" (strided)"] if noncontiguous else [])
    for suffix in layouts:
        swapped = [(t, t.data) for _, t in named]
        try:
            for _, t in named:
                # A private copy where perturbing in place would be wrong: a read-only or
                # broadcast (stride-0) array, where one memory cell stands for many elements.
                if suffix or _aliased_or_readonly(t.data):
                    t.data = _strided_copy(t.data) if suffix else t.data.copy()
            report.inputs += _check(fn, call, checked, rng, eps, atol, rtol, suffix)
        finally:
            for t, data in swapped:
                t.data = data
    if raise_on_failure and not report.ok:
        raise GradcheckError(report)
    return report


def _check(fn, call, checked, rng, eps: float, atol: float, rtol: float, suffix: str) -> list[InputCheck]:
    """One analytic-versus-numeric comparison for every tensor in ``checked``."""

    generators = [] if rng is None else [rng] if isinstance(rng, Generator) else list(rng)
    states = [g.get_state() for g in generators]

    def evaluate() -> Tensor:
        for g, s in zip(generators, states):
            g.set_state(s)
        out = call()
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        return out

    # Analytic: backward of <w, f> with fixed random weights w, of both signs and never
    # near 0, also for a one-element output: a backward that ignores its upstream
    # gradient would pass a check seeded with ones.
    saved_grads = [t.grad for _, t in checked]
    for _, t in checked:
        t.grad = None
    out = evaluate()
    xp = backend.array_module(out.data)
    draw = Generator(20240229)
    signs = draw.uniform(out.shape, dtype="float64") < 0.5
    weights = backend.to_backend(draw.uniform(out.shape, 0.5, 1.5, dtype="float64") * (1 - 2 * signs))
    weights = weights.astype(out.data.dtype)
    out.backward(weights)
    analytic = [
        backend.to_numpy(t.grad).copy() if t.grad is not None else backend.to_numpy(xp.zeros_like(t.data))
        for _, t in checked
    ]
    for (_, t), g in zip(checked, saved_grads):
        t.grad = g

    def objective() -> float:
        return float((evaluate().data * weights).sum())

    results = []
    with no_grad():
        for (name, t), grad in zip(checked, analytic):
            numeric = _central_differences(objective, t, eps)
            err = abs(grad - numeric)
            allowed = atol + rtol * abs(numeric)
            worst = tuple(int(i) for i in divmod_index(int((err - allowed).argmax()), t.shape)) if err.size else ()
            rel = err / (abs(numeric) + 1e-12)
            results.append(
                InputCheck(
                    name=name + suffix,
                    shape=t.shape,
                    max_abs_error=float(err.max()) if err.size else 0.0,
                    max_rel_error=float(rel.max()) if rel.size else 0.0,
                    worst_index=worst,
                    analytic=float(grad[worst]) if grad.size else 0.0,  # (an empty input passes trivially)
                    numeric=float(numeric[worst]) if numeric.size else 0.0,
                    passed=bool((err <= allowed).all()),
                )
            )
    return results


def _aliased_or_readonly(a) -> bool:
    """True when writing one element of ``a`` in place is impossible or changes others too."""
    flags = getattr(a, "flags", None)
    if flags is not None and not getattr(flags, "writeable", True):
        return True
    return any(stride == 0 and n > 1 for stride, n in zip(a.strides, a.shape))


def _strided_copy(a):
    """The values of ``a`` in a non-contiguous array (every other element of a buffer)."""
    xp = backend.array_module(a)
    buffer = xp.zeros(a.shape + (2,), dtype=a.dtype)
    view = buffer[..., 0]
    view[...] = a
    return view


def _central_differences(objective: Callable[[], float], t: Tensor, eps: float):
    """[f(θ + h eᵢ) - f(θ - h eᵢ)] / 2h for every element i of t (restores t exactly).

    Each element is written where it lives, through its multi-index: for a view
    (transposed, sliced) a flat reshape would be a copy, and perturbing the copy would
    leave t unchanged (a numeric gradient of 0).
    """
    import numpy as np  # the numerical result is always gathered on the host

    numeric = np.zeros(t.shape, dtype=np.float64)
    data = t.data
    for index in np.ndindex(*t.shape):
        original = data[index].item()
        data[index] = original + eps
        plus = objective()
        data[index] = original - eps
        minus = objective()
        data[index] = original
        numeric[index] = (plus - minus) / (2 * eps)
    return numeric


def divmod_index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The multi-index of a flat (C-order) position."""
    index = []
    for n in reversed(shape):
        flat, r = divmod(flat, n)
        index.append(r)
    return tuple(reversed(index))
