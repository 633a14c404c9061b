"""Derivations of the theory behind minivae, each with an executable numeric check.

Topic ``NN_name`` is the Markdown file ``NN_name.md`` (the derivation, in numbered
steps) and the module ``dNN_name.py`` whose ``run()`` evaluates both sides of every
numbered equation and returns a :class:`~minivae.derivations.table.Table`.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType

from .table import Table

HERE = Path(__file__).resolve().parent
_MODULE = re.compile(r"^d(\d\d)_(\w+)$")


def topics() -> dict[str, str]:
    """{'NN_name': module name}, in reading order."""
    found = {}
    for info in pkgutil.iter_modules([str(HERE)]):
        match = _MODULE.match(info.name)
        if match:
            found[f"{match.group(1)}_{match.group(2)}"] = f"{__name__}.{info.name}"
    return dict(sorted(found.items()))


def resolve(name: str) -> list[str]:
    """Topic names matching ``name``: 'all', an exact topic, its number ('05'), or a unique prefix/part."""
    available = topics()
    if name == "all":
        return list(available)
    if name in available:
        return [name]
    matches = [t for t in available if t.startswith(name) or name in t.split("_", 1)[1]]
    if not matches:
        raise KeyError(f"derive: no topic {name!r}; choose from: all, " + ", ".join(available))
    return matches


def load(topic: str) -> ModuleType:
    return importlib.import_module(topics()[topic])


def text(topic: str) -> str:
    """The derivation itself: the Markdown that docstrings cite as ``derivations/NN_name.md``
    (installed with the package, so ``minivae derive NN --show`` prints it anywhere)."""
    return (HERE / f"{topic}.md").read_text(encoding="utf-8")


def run(topic: str, plot_dir: str | None = None) -> Table:
    """Run one topic's checks and return its table."""
    return load(topic).run(plot_dir=plot_dir)
