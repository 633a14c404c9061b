"""The folder tree is the design: these tests keep it true.

- The engine (the modules directly in ``minivae/``) imports only the engine and the
  providers, never the layers built on it (models, training, labs, cli).
- ``kernels/`` (installed as ``minivae.kernels``) never imports the engine; providers never import the engine.
- No module reaches into another module's private names (``ops._x``).
- Every public op in ``minivae.ops`` links to its derivation or says why it has none.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

import minivae
from minivae import ops

ROOT = pathlib.Path(minivae.__file__).resolve().parent
REPO = ROOT.parent
# minivae/__main__.py is `python -m minivae`: the command line's entry point, so it belongs to cli/.
ENGINE = sorted(p for p in ROOT.glob("*.py") if p.name != "__main__.py") + sorted((ROOT / "ops").glob("*.py"))
ABOVE = ("minivae.models", "minivae.training", "minivae.labs", "minivae.cli")


def _imports(path: pathlib.Path) -> list[str]:
    """Absolute module names a file imports (anywhere in it, lazy imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_never_imports_the_layers_above_it(path):
    upward = [name for name in _imports(path) if name.startswith(ABOVE)]
    assert not upward, f"minivae/{path.relative_to(ROOT)} imports {upward}: the engine must not depend on the layers above it"


@pytest.mark.parametrize("path", sorted((ROOT / "providers").glob("*.py")), ids=lambda p: p.name)
def test_providers_depend_on_nothing_but_arrays_and_kernels(path):
    allowed = ("minivae.providers", "minivae.kernels", "numpy", "numba", "cupy")
    wrong = [n for n in _imports(path) if n.startswith("minivae") and not n.startswith(allowed)]
    assert not wrong, f"providers/{path.name} imports {wrong}"


def test_kernels_never_import_minivae():
    """kernels/ installs as ``minivae.kernels``: it may import itself (relatively or by that
    name), never the engine, and never a top-level ``kernels`` (no such name is installed)."""
    for path in sorted((REPO / "kernels").glob("*.py")):
        wrong = [n for n in _imports(path) if n.split(".")[0] in ("minivae", "kernels")
                 and not (n == "minivae.kernels" or n.startswith("minivae.kernels."))]
        assert not wrong, f"kernels/{path.name} imports {wrong}"


def test_no_private_name_crosses_a_module():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in {"ops", "backend", "providers", "kc"}):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("minivae", "kernels")):
                offenders += [f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import {a.name}"
                              for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def _public_ops():
    return [(name, fn) for name, fn in vars(ops).items()
            if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__.startswith("minivae.ops.")
            and name not in ops.HELPERS]


@pytest.mark.parametrize("name,fn", _public_ops(), ids=[n for n, _ in _public_ops()])
def test_every_public_op_links_its_derivation_or_says_why_not(name, fn):
    doc = inspect.getdoc(fn) or ""
    links = [word.strip("().,;`") for word in doc.split() if word.startswith(("derivations/", "(derivations/"))]
    if not links:
        assert "Derivation: none" in doc, (
            f"ops.{name}: its docstring must link a derivation (derivations/NN_topic.md) or say "
            "'Derivation: none (why)'")
        return
    for link in links:
        target = REPO / link.split("#")[0]
        assert target.is_file(), f"ops.{name} links {link}, which does not exist"
    for path, first in re.findall(r"(derivations/\S+\.md), Eq\. (\d+\.\d+)", doc):
        assert f"Eq. {first}" in (REPO / path).read_text(), f"ops.{name} cites Eq. {first}, which {path} does not have"
