"""Floating-point warnings that name the minivae op and the line of your code that called it.

Without this, a loss that overflows shows NumPy's ``RuntimeWarning: overflow encountered
in exp`` pointing into ``providers/reference.py``, which says neither which op nor which of
your lines. ``import minivae`` routes NumPy's floating-point reports (divide by zero,
overflow, invalid value: those NumPy would warn about) through :func:`report`, which finds
the op on the call stack and warns with :class:`NumericWarning`, attributed to your line::

    train.py:12: NumericWarning: overflow encountered in minivae's forward of 'exp' (called from train.py:12); ...

(the message starts as NumPy's does, so filters such as ``ignore:overflow encountered`` still apply)

Turn them into errors naming the op with one line (standard Python)::

    warnings.simplefilter("error", mv.NumericWarning)

and under :func:`minivae.detect_anomaly` they raise :class:`~minivae.tensor.AnomalyError`.
Costs nothing until NumPy reports an error (NumPy calls the handler only then). Modes you
set yourself (``np.seterr(over="ignore")``, ``np.errstate``) are kept: only the modes that
were "warn" become "call". A report from NumPy code outside minivae reads as a plain
``RuntimeWarning`` at your line. Threads start with NumPy's defaults (NumPy keeps error
modes per thread), so there the plain NumPy warnings remain.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from minivae.tensor import AnomalyError, is_anomaly_enabled

PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: Code that computes arrays for the ops, not an op itself: skipped when naming the op.
NOT_OPS = tuple(PACKAGE + p for p in ("providers" + os.sep, "kernels" + os.sep, "numerics.py", "tensor.py"))
NUMPY = os.path.dirname(os.path.abspath(np.__file__)) + os.sep


class NumericWarning(RuntimeWarning):
    """A floating-point problem (overflow, divide by zero, invalid value) inside a minivae op."""


TENSOR = PACKAGE + "tensor.py"


def _locate() -> tuple[str | None, str | None, int]:
    """(the op, 'file:line' of the first caller outside minivae, frames from report() up to that caller).

    The op is the innermost public function of minivae on the stack (``exp``; a closure
    ``exp.<locals>.<lambda>`` counts as ``exp``); it ran backward when ``Tensor.backward``
    is further out.
    """
    frame, depth = sys._getframe(2), 2  # 0: _locate, 1: report, 2: the code that called the ufunc
    op, op_depth, backward = None, 1, False
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        inside = path.startswith(PACKAGE)
        if inside and op is None and not path.startswith(NOT_OPS):
            name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name).split(".<locals>.")[0]
            name = name.rsplit(".", 1)[-1]
            if not name.startswith("_"):
                op, op_depth = name, depth
        if path == TENSOR and frame.f_code.co_name == "backward":
            backward = True
        if not inside and not path.startswith(NUMPY):
            if frame.f_code.co_filename.startswith("<frozen"):  # `python -m minivae`: no code of yours
                frame = None
            break
        frame, depth = frame.f_back, depth + 1
    caller = None if frame is None else f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
    if op is not None:
        op = f"backward of '{op}'" if backward else f"forward of '{op}'"
    return op, caller, depth if frame is not None else op_depth


def report(kind: str, flag: int) -> None:
    """NumPy's error callback (``np.seterrcall``): warn naming the op and the caller's line."""
    op, caller, depth = _locate()
    if op is None:  # NumPy code of yours, not minivae's: what NumPy itself would say
        warnings.warn(f"{kind} encountered in a NumPy operation", RuntimeWarning, stacklevel=depth)
        return
    where = f" (called from {caller})" if caller else ""
    if is_anomaly_enabled():
        makes = "NaN" if kind.startswith("invalid") else "Inf"
        raise AnomalyError(f"detect_anomaly: {kind} encountered in {op}, which makes {makes}{where}")
    warnings.warn(
        f"{kind} encountered in minivae's {op}{where}; warnings.simplefilter('error', mv.NumericWarning) turns "
        "this into an error here, and mv.detect_anomaly() stops at the first op that makes NaN/Inf",
        NumericWarning, stacklevel=depth,
    )


def install() -> None:
    """Route NumPy's floating-point reports through :func:`report` (modes that were 'warn' only)."""
    modes = np.geterr()
    np.seterrcall(report)
    np.seterr(**{kind: "call" for kind, mode in modes.items() if mode == "warn"})
