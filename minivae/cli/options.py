"""What every command shares: argparse value types, the --help formatter, one-line errors, --backend."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any, Callable, Iterator


# =============================================================================
# argparse helpers
# =============================================================================


def checked_type(kind: type, accept: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and rejects values outside the accepted range."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = _integral_float(text) if kind is int else None  # "1e8" is an integer too
            if value is None:
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


def _integral_float(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


positive_int = checked_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = checked_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked_type(float, lambda v: v > 0, "a positive number")
non_negative_float = checked_type(float, lambda v: v >= 0, "a number >= 0")


def error(command: str, message: Any) -> int:
    print(f"minivae {command}: error: {message}", file=sys.stderr)
    return 2


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that appends "(default: X)", except where there is nothing to show
    (on/off flags, a default of None) or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


#: Every command shows its defaults in --help.
HELP = {"formatter_class": DefaultsFormatter}


def single_threaded_blas():
    """One BLAS thread: faster for these small matrices (see minivae.training.blas_threads)."""
    from minivae.training.trainer import blas_threads

    return blas_threads(1)


def add_backend(p: argparse.ArgumentParser) -> None:
    """The --backend flag of the commands that compute."""
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="array backend")


def set_backend(name: str) -> None:
    """Switch to the --backend the user chose (CuPy is imported only then)."""
    from minivae.providers import backend

    backend.set_backend(name)


@contextlib.contextmanager
def signal_handlers(handler: Callable[[int, Any], None], *signals: int | None) -> Iterator[None]:
    """``handler`` for each of ``signals`` (None: a signal this platform lacks) while the block runs,
    the previous handlers restored afterwards; nothing outside the main thread, where Python
    allows no handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals if s is not None}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
