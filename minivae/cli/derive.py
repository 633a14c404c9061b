"""``minivae derive``: list the derivations, or run their numeric checks.

The derivations are not part of the ``minivae`` package: they are found through the
entry-point group ``minivae.derivations`` (declared in pyproject.toml and installed
with the package), so the command line never imports a top-level folder by name.
A provider is a module with ``topics()``, ``resolve(name)``, ``load(topic)`` and
``run(topic, plot_dir=None)``, and optionally ``text(topic)`` for ``--show`` (see
``derivations/__init__.py``, installed as ``minivae.derivations``).
"""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from types import ModuleType

from minivae.cli.options import error

GROUP = "minivae.derivations"


class NoDerivations(LookupError):
    """No provider is installed in the entry-point group."""


def providers() -> list[ModuleType]:
    """Every installed derivation provider, in name order; NoDerivations when there is none."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    if not found:
        raise NoDerivations(
            f"no derivations are installed (the entry-point group {GROUP!r} is empty); "
            "install minivae from its source folder with `pip install .`, which includes them"
        )
    return [ep.load() for ep in found]


def topics() -> dict[str, ModuleType]:
    """{topic: the provider that holds it}, in reading order."""
    owner: dict[str, ModuleType] = {}
    for provider in providers():
        for topic in provider.topics():
            owner.setdefault(topic, provider)
    return dict(sorted(owner.items()))


def register(subparsers) -> None:
    from minivae.cli.options import HELP

    p = subparsers.add_parser(
        "derive",
        help="list the derivations or check them numerically",
        description="Without NAME, list the derivation topics. With NAME (a topic, its number, or 'all'), "
        "evaluate both sides of every numbered equation and print the tables; exit 1 on any FAIL.",
        **HELP,
    )
    p.add_argument("name", nargs="?", help="topic name or number (e.g. 05 or 05_kl_gaussians), or 'all'")
    p.add_argument("--plot", metavar="DIR", help="also write the topic's figures (PNG) into DIR")
    p.add_argument("--show", action="store_true",
                   help="print the derivation's text (the Markdown the docstrings cite) instead of checking it")
    p.set_defaults(func=_derive)


def _show(names: list[str], owners: dict[str, ModuleType]) -> int:
    """Print each topic's derivation text, in reading order."""
    for topic in names:
        text = getattr(owners[topic], "text", None)
        if text is None:
            return error("derive", f"--show: the provider of {topic!r} ({owners[topic].__name__}) has no text(topic)")
        print(text(topic).rstrip("\n") + "\n")
    return 0


def _derive(args: argparse.Namespace) -> int:
    try:
        owners = topics()
    except NoDerivations as err:
        return error("derive", err)
    if not args.name:
        for topic, provider in owners.items():
            title = getattr(provider.load(topic), "TITLE", "")
            print(f"{topic:<28} {title}")
        return 0
    names: list[str] = []
    problems = []
    for provider in dict.fromkeys(owners.values()):
        try:
            names += [t for t in provider.resolve(args.name) if t not in names]
        except KeyError as err:
            problems.append(err.args[0])
    if not names:
        return error("derive", problems[0] if problems else f"no topic {args.name!r}")
    if args.show:
        return _show(names, owners)
    if args.plot:
        from minivae.training.runfolder import RunFolderError, writable_folder

        try:
            writable_folder(args.plot, "--plot")  # before any check runs, not after
        except RunFolderError as err:
            return error("derive", err)
    from tqdm import tqdm

    from minivae.training.runfolder import staged_folder

    failed = []
    # A bar on stderr while several topics run; each table goes to stdout above it as soon as it is done.
    with tqdm(names, desc="derivations", unit="topic", disable=len(names) < 2, dynamic_ncols=True) as bar:
        for topic in bar:
            bar.set_postfix_str(topic, refresh=True)
            with staged_folder(args.plot) as plot_dir:  # figures written whole or not at all
                table = owners[topic].run(topic, plot_dir=plot_dir)
            tqdm.write(table.render() + "\n")
            if not table.ok:
                failed.append(topic)
    print(f"{len(names) - len(failed)} of {len(names)} topics passed" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0

