"""``minivae exercise``: list the exercises, hand out a stub, grade a student's file.

    minivae exercise list                   names, one line each, with the lecture they follow
    minivae exercise start NAME DIR         copy the stub into DIR (never over an existing file)
    minivae exercise check NAME FILE        grade FILE: exit 0 when every check passes, 1 otherwise
    minivae exercise check NAME --solution  grade the reference solution (for teachers)

The grader runs in a subprocess with a time limit (``--timeout``), so a student's endless
loop ends with a message, and nothing the student's code does can crash this command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_TIMEOUT_S = 60.0


def register(subparsers) -> None:
    from minivae.cli.models import HELP

    p = subparsers.add_parser(
        "exercise",
        help="course exercises: list, start, check (an autograder)",
        description="Exercises with an autograder: list them, copy a stub to work on, check a solution.",
        **HELP,
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("list", help="the exercises, one line each, with the lecture they follow").set_defaults(func=_list)
    start = sub.add_parser("start", help="copy an exercise's stub into DIR")
    start.add_argument("name", help="an exercise name (see `minivae exercise list`)")
    start.add_argument("dir", help="folder to copy the stub into (created if missing)")
    start.set_defaults(func=_with_exercise(_start))
    check = sub.add_parser("check", help="grade a file (exit 0: all checks pass, 1: some fail)")
    check.add_argument("name", help="an exercise name")
    check.add_argument("file", nargs="?", help="the student's file")
    check.add_argument("--solution", action="store_true", help="grade the reference solution instead of FILE")
    check.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                       help=f"give up after S seconds (an endless loop, say); default {DEFAULT_TIMEOUT_S:g}")
    check.set_defaults(func=_with_exercise(_check))


def _error(message: object) -> int:
    print(f"minivae exercise: error: {message}", file=sys.stderr)
    return 2


def _with_exercise(action):
    """``action(args, exercise)`` as an argparse handler: NAME is looked up once, here; an
    unknown name is the one-line error that lists the exercises."""
    def handler(args: argparse.Namespace) -> int:
        from minivae.course.exercises import get

        try:
            exercise = get(args.name)
        except KeyError as err:
            return _error(err.args[0])
        return action(args, exercise)

    return handler


def _list(args: argparse.Namespace) -> int:
    from minivae.course.exercises import EXERCISES

    width = max(len(n) for n in EXERCISES)
    for e in EXERCISES.values():
        print(f"{e.name:<{width}}  {e.lecture}: {e.title}")
    return 0


def _start(args: argparse.Namespace, exercise) -> int:
    folder = Path(args.dir)
    target = folder / exercise.stub.name
    if (folder.exists() and not folder.is_dir()) or (not folder.exists() and folder.suffix == ".py"):
        return _error(f"{folder}: DIR is the folder to write {exercise.stub.name} into, not a file "
                      f"(e.g. minivae exercise start {exercise.name} work/)")
    if target.exists() or target.is_symlink():
        return _error(f"{target} already exists; it may hold your work, so it is left as it is "
                      "(move it away, or start in another folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Write to a temporary name, then link it into place: never over a file that appeared meanwhile.
        partial = folder / f".{exercise.stub.name}.partial-{os.getpid()}"
        shutil.copyfile(exercise.stub, partial)
        try:
            os.link(partial, target)
        finally:
            partial.unlink()
    except FileExistsError:
        return _error(f"{target} already exists; it may hold your work, so it is left as it is")
    except OSError as err:
        return _error(f"cannot write the stub into {folder}: {err.strerror or err}")
    print(f"wrote {target}  (the task is in its docstring; check it with: minivae exercise check {exercise.name} {target})")
    return 0


def _check(args: argparse.Namespace, exercise) -> int:
    if args.solution == bool(args.file):
        return _error("give either FILE (the file to grade) or --solution, not both and not neither")
    path = exercise.solution if args.solution else Path(args.file)
    if path.is_dir():
        return _error(f"{path} is a folder; give the file to grade (e.g. {path / exercise.stub.name})")
    if not path.is_file():
        return _error(f"{path}: no such file")
    if args.timeout <= 0:
        return _error(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    command = [sys.executable, "-m", "minivae.course.grader", exercise.name, str(path.resolve())]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                              cwd=path.resolve().parent, stdin=subprocess.DEVNULL)  # input() ends, not waits
    except subprocess.TimeoutExpired as timeout:
        _relay(timeout.stdout)
        print(f"FAIL  your code did not finish within {args.timeout:g} s (an endless loop?); "
              f"nothing more was graded (raise the limit with --timeout)")
        return 1
    _relay(done.stdout)
    if done.returncode not in (0, 1):
        # The grader process died (killed, out of memory, a crash in compiled code): say so in one line.
        last = (done.stderr or "").strip().splitlines()[-1:] or ["no message"]
        print(f"FAIL  the grading process ended abnormally (exit {done.returncode}: {last[0]})")
        return 1
    if done.returncode == 0 and not done.stdout.rstrip().endswith("(all pass)"):
        # exit 0 without the report's last line: the student's code ended the process early (os._exit)
        print("FAIL  the grading process ended before its report (did your code exit the process?)")
        return 1
    return done.returncode


def _relay(text) -> None:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text:
        print(text, end="" if text.endswith("\n") else "\n")
