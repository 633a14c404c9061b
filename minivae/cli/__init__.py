"""The ``minivae`` command line.

Each group of subcommands lives in its own module with a ``register(subparsers)``
function; this file only assembles them, so ``minivae --help`` lists everything.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Sequence

# Each module defines register(subparsers) and imports its heavy dependencies lazily,
# so `minivae --help` stays fast.
COMMAND_MODULES = (
    "minivae.cli.models",  # demo, train, eval, sample, gradcheck
    "minivae.cli.derive",  # derive
    "minivae.cli.estimators",  # estimators
    "minivae.cli.lab",  # lab decoders
    "minivae.cli.explore",  # explore
    "minivae.cli.exercise",  # exercise list | start | check (the course autograder)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivae",
        description="Autoencoders and VAEs from scratch: train, sample, check gradients, verify derivations.",
    )
    parser.add_argument("--version", action="version", version=f"minivae {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    args.argv = argv  # for messages that repeat the command (e.g. how to resume)
    try:
        with _signals_interrupt():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        # Ctrl-C, SIGTERM, SIGHUP: a short line, not a traceback; every file is written atomically,
        # so nothing is half-saved. Exit 128 + the signal's number, as a shell reports it.
        signum = getattr(err, "signum", None) or signal.SIGINT
        print(f"\nminivae {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except OSError as err:
        # A full disk, a read-only remount, a vanished folder: one line naming the path and the cause.
        from minivae.training.runfolder import explain

        print(f"minivae {args.command}: error: {err.filename + ': ' if err.filename else ''}{explain(err)}",
              file=sys.stderr)
        return 2
    except MemoryError as err:
        why = str(err) or "the settings need more than the machine or ulimit -v allows"
        print(f"minivae {args.command}: error: out of memory ({why}); try smaller settings", file=sys.stderr)
        return 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that every command stops the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _signals_interrupt():
    """SIGTERM and SIGHUP interrupt a command as Ctrl-C does (by default they end Python silently)."""
    from minivae.cli.options import signal_handlers

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    return signal_handlers(interrupt, signal.SIGTERM, getattr(signal, "SIGHUP", None))


def _version() -> str:
    from minivae import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
