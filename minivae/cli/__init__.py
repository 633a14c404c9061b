"""The ``minivae`` command line.

Each group of subcommands lives in its own module with a ``register(subparsers)``
function; this file only assembles them, so ``minivae --help`` lists everything.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Each module defines register(subparsers) and imports its heavy dependencies lazily,
# so `minivae --help` stays fast.
COMMAND_MODULES = (
    "minivae.cli.models",  # demo, train, eval, sample, gradcheck
    "minivae.cli.derive",  # derive
    "minivae.cli.estimators",  # estimators
    "minivae.cli.lab",  # lab decoders
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
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C: a short line, not a traceback; every file is written atomically, so nothing is half-saved.
        print(f"\nminivae {args.command}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from minivae import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
