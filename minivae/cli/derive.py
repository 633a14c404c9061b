"""``minivae derive``: list the derivations, or run their numeric checks."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "derive",
        help="list the derivations or check them numerically",
        description="Without NAME, list the derivation topics. With NAME (a topic, its number, or 'all'), "
        "evaluate both sides of every numbered equation and print the tables; exit 1 on any FAIL.",
    )
    p.add_argument("name", nargs="?", help="topic name or number (e.g. 05 or 05_kl_gaussians), or 'all'")
    p.add_argument("--plot", metavar="DIR", help="also write the topic's figures (PNG) into DIR")
    p.set_defaults(func=_derive)


def _derive(args: argparse.Namespace) -> int:
    import derivations

    if not args.name:
        for topic, module in derivations.topics().items():
            title = getattr(derivations.load(topic), "TITLE", "")
            print(f"{topic:<28} {title}")
        return 0
    try:
        names = derivations.resolve(args.name)
    except KeyError as err:
        print(err.args[0])
        return 2
    failed = []
    for topic in names:
        table = derivations.run(topic, plot_dir=args.plot)
        print(table.render())
        print()
        if not table.ok:
            failed.append(topic)
    print(f"{len(names) - len(failed)} of {len(names)} topics passed" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
