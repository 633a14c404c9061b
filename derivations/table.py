"""The table every derivation check prints: equation, left side, right side, error, tolerance, verdict.

A check module builds one :class:`Table`, adds a row per numbered equation of its
Markdown file, and returns it. Rows compare two numbers (``equal``), or state an
inequality (``less_equal``), or a fact that is true or false (``holds``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Row:
    equation: str
    left: float
    right: float
    error: float
    tolerance: float
    passed: bool
    note: str = ""


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)

    def equal(self, equation: str, left, right, tol: float, relative: bool = False, note: str = "") -> Row:
        """Both sides agree: max |left - right| <= tol (or <= tol * max|right| when ``relative``)."""
        lhs = np.asarray(left, dtype=np.float64)
        rhs = np.asarray(right, dtype=np.float64)
        if lhs.shape != rhs.shape and lhs.size != 1 and rhs.size != 1:
            raise ValueError(f"{equation}: left shape {lhs.shape} and right shape {rhs.shape} differ")
        diff = float(np.max(np.abs(lhs - rhs))) if lhs.size and rhs.size else 0.0
        scale = float(np.max(np.abs(rhs))) if relative else 1.0
        bound = tol * max(scale, 1e-300)
        passed = bool(np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs)) and diff <= bound)
        return self._add(Row(equation, _first(lhs), _first(rhs), diff, bound, passed, note))

    def less_equal(self, equation: str, left, right, tol: float = 0.0, note: str = "") -> Row:
        """An inequality: left <= right + tol, for every element."""
        lhs = np.asarray(left, dtype=np.float64)
        rhs = np.asarray(right, dtype=np.float64)
        excess = float(np.max(lhs - rhs))
        passed = bool(np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs)) and excess <= tol)
        return self._add(Row(equation, _first(lhs), _first(rhs), excess, tol, passed, note))

    def holds(self, equation: str, condition: bool, left: float = math.nan, right: float = math.nan, note: str = "") -> Row:
        """A statement that is simply true or false (left/right shown for context)."""
        return self._add(Row(equation, float(left), float(right), math.nan, math.nan, bool(condition), note))

    def _add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def render(self) -> str:
        head = ("equation", "left", "right", "error", "tolerance", "result")
        body = [
            (r.equation, _fmt(r.left), _fmt(r.right), _fmt(r.error), _fmt(r.tolerance), "PASS" if r.passed else "FAIL")
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
        lines = [self.title, "=" * len(self.title)]
        for line in [head, *body]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        for r in self.rows:
            if r.note:
                lines.append(f"  note [{r.equation}]: {r.note}")
        lines.append(f"{sum(r.passed for r in self.rows)} passed, {len(self.failures())} failed")
        return "\n".join(lines)


def central_difference(loss, value: np.ndarray, h: float) -> np.ndarray:
    """dL/dvalue of a scalar function, one entry at a time, in float64:
    (L(v + h eᵢ) - L(v - h eᵢ)) / 2h. The numeric side of the topics' gradient rows."""
    value = np.asarray(value, dtype=np.float64)
    grad = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = (loss(plus) - loss(minus)) / (2 * h)
    return grad


def _first(a: np.ndarray) -> float:
    return float(a.reshape(-1)[0]) if a.size else math.nan


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.6g}"


def main(run, argv: list[str]) -> int:
    """A topic module's command line: print its table; ``--plot DIR`` also writes its figure.

    Exit status 1 on any failure.
    """
    plot_dir = argv[argv.index("--plot") + 1] if "--plot" in argv else None
    table = run(plot_dir)
    print(table.render())
    return 0 if table.ok else 1
