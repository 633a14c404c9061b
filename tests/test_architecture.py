"""The folder tree is the design: these tests keep it true, and each guard is shown failing.

- Layers import only downward: the engine (``minivae/*.py``, ``ops/``, ``stochastic/``)
  and its ``providers/`` < ``models/`` < ``training/`` < ``labs/`` (which run on the
  training step, data and diagnostics) < ``cli/`` (and ``minivae/__main__.py``); ``explore/``
  (over a trained run) sits beside ``labs/``, ``course/`` (exercises) right on the engine.
  ``kernels/`` (installed as ``minivae.kernels``) imports only itself; providers import
  only providers and kernels; nothing imports a top-level ``kernels`` (no such name is
  installed). Every import counts: at the top, inside functions, relative
  (``from ..x import``) and ``importlib.import_module``.
- A private name (``_x``) is used only in the module that defines it, whatever alias
  reaches it (``import minivae.tensor as t; t._x``, ``from m import _x``, ``obj._x``).
- Every differentiable node in the engine (ops, distributions, losses, optimizers,
  stochastic nodes) and every function anywhere in ``minivae/`` that builds a node with
  its own backward (``Tensor.from_op``) says ``Derivation:``; each cited equation
  exists in the cited file (every number of a range, in that file's chapter), and a
  node with its own backward cites at least one.

Each checker is a function of source text, so the tests at the bottom plant a
violation in a synthetic file and see the checker report it.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re
from typing import Iterator

import pytest

import minivae
from minivae import distributions, losses, ops, optim, stochastic

ROOT = pathlib.Path(minivae.__file__).resolve().parent
REPO = ROOT.parent

# ----------------------------------------------------------------------------- reading the tree


def module_name(relpath: str) -> tuple[str, bool]:
    """("minivae.ops.shape", False) for "minivae/ops/shape.py"; packages end in __init__.py.
    The repository's kernels/ and derivations/ install as minivae.kernels and minivae.derivations."""
    parts = relpath[:-3].split("/")
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    if parts[0] in ("kernels", "derivations"):
        parts = ["minivae"] + parts
    return ".".join(parts), is_package


def _resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if node.level == 0:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def imports(source: str, name: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(absolute module, line) for every import in a file: top-level, lazy, relative, and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a constant name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, name, is_package)
            found.append((module, node.lineno))
            found += [(f"{module}.{a.name}", node.lineno) for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno))
    return found


def layer(module: str) -> str | None:
    """The layer of a project module (None: not ours, e.g. numpy)."""
    parts = module.split(".")
    if parts[0] in ("kernels", "derivations"):
        return "not installed"  # only minivae.kernels / minivae.derivations exist
    if parts[0] != "minivae":
        return None
    if len(parts) == 1:
        return "engine"  # the package itself re-exports only the engine
    return {"providers": "providers", "kernels": "kernels", "derivations": "derivations", "models": "models",
            "training": "training", "labs": "labs", "explore": "explore", "course": "course", "cli": "cli",
            "__main__": "cli"}.get(parts[1], "engine")


MAY_IMPORT = {
    "kernels": {"kernels"},
    "providers": {"providers", "kernels"},
    "engine": {"engine", "providers"},
    "models": {"engine", "providers", "models"},
    "training": {"engine", "providers", "models", "training"},
    "labs": {"engine", "providers", "models", "training", "labs"},
    "explore": {"engine", "providers", "models", "training", "explore"},  # the latent explorer, over a trained run
    "course": {"engine", "providers", "course"},  # the exercises: a student's ops, checked by the engine
    "cli": {"engine", "providers", "models", "training", "labs", "explore", "course", "cli", "kernels", "derivations"},
    "derivations": {"derivations", "engine", "providers", "models"},  # numeric checks of the engine and models
    "not installed": set(),
}


def layer_violations(files: dict[str, str]) -> list[str]:
    """'path:line imports X (layer a -> layer b)' for each upward or sideways import."""
    wrong = []
    for relpath, source in sorted(files.items()):
        name, is_package = module_name(relpath)
        here = layer(name)
        for target, line in imports(source, name, is_package):
            there = layer(target)
            if here is not None and there is not None and there not in MAY_IMPORT[here]:
                wrong.append(f"{relpath}:{line} imports {target} ({here} -> {there})")
    return wrong


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owned_names(tree: ast.Module) -> set[str]:
    """The private names a module defines: its top-level functions, classes and variables,
    its classes' methods and attributes, and attributes it sets on ``self``/``cls``."""
    owned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            owned.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        owned.add(t.id)
                    elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"):
                        owned.add(t.attr)
    return {n for n in owned if _private(n)}


def private_name_violations(files: dict[str, str]) -> list[str]:
    """'path:line name' for each private name a module uses but does not define, whatever
    reaches it: ``from m import _x``, ``alias._x`` for any module alias, ``obj._x``.
    (Access through ``self``/``cls``/``super()`` is a class using what it inherits.)"""
    trees = {relpath: ast.parse(source) for relpath, source in files.items()}
    owners: dict[str, set[str]] = {}
    for relpath, tree in trees.items():
        for n in _owned_names(tree):
            owners.setdefault(n, set()).add(relpath)
    wrong = []
    for relpath, tree in sorted(trees.items()):
        name, is_package = module_name(relpath)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and layer(_resolve(node, name, is_package)) is not None:
                wrong += [f"{relpath}:{node.lineno} from {_resolve(node, name, is_package)} import {a.name}"
                          for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super":
                    continue
                if node.attr in owners and relpath not in owners[node.attr]:
                    wrong.append(f"{relpath}:{node.lineno} .{node.attr} (defined in {sorted(owners[node.attr])})")
    return wrong


# ----------------------------------------------------------------------------- derivation links

LINK = re.compile(r"derivations/(\d\d)_\w+\.md")
EQUATIONS = re.compile(r"\A\s*[,(]?\s*Eq\.\s*(\d+\.\d+(?:\s*(?:-|–|,|and|, Eq\.)\s*\d+\.\d+)*)")
TAG = re.compile(r"\\tag\{Eq\. (\d+\.\d+)\}")


def _numbers(cited: str) -> Iterator[tuple[str, str | None]]:
    """("15.4", None) for a single equation, ("15.4", "15.9") for a range."""
    tokens = re.findall(r"\d+\.\d+|-|–", cited)
    i = 0
    while i < len(tokens):
        if i + 2 < len(tokens) and tokens[i + 1] in "-–":
            yield tokens[i], tokens[i + 2]
            i += 3
        else:
            yield tokens[i], None
            i += 1


def citation_problems(doc: str, where: str, need_equation: bool, repo: pathlib.Path = REPO) -> list[str]:
    """What is wrong with a docstring's derivation citations (empty: nothing)."""
    if "Derivation:" not in doc:
        return [f"{where}: no 'Derivation:' line (cite derivations/NN_topic.md, Eq. N.M, or say 'Derivation: none (why)')"]
    says_none = doc.split("Derivation:", 1)[1].lstrip().startswith("none (")
    if says_none and need_equation:
        return [f"{where}: builds a node with its own backward, so it must cite an equation, not 'none'"]
    links = list(LINK.finditer(doc))
    if not links and not says_none:
        return [f"{where}: 'Derivation:' names no derivations/NN_topic.md file"]
    problems = []
    for i, link in enumerate(links):
        path = repo / link.group(0)
        if not path.is_file():
            problems.append(f"{where}: cites {link.group(0)}, which does not exist")
            continue
        end = links[i + 1].start() if i + 1 < len(links) else len(doc)
        cited = EQUATIONS.match(doc[link.end():end])
        if not cited:
            problems.append(f"{where}: cites {link.group(0)} without an equation (write ', Eq. N.M')")
            continue
        tags = set(TAG.findall(path.read_text()))
        chapter = int(link.group(1))
        for first, last in _numbers(cited.group(1)):
            (c1, n1), (c2, n2) = (map(int, first.split(".")), map(int, (last or first).split(".")))
            if c1 != chapter or c2 != chapter or n2 < n1:
                problems.append(f"{where}: Eq. {first}{'-' + last if last else ''} is not a range of chapter {chapter}")
                continue
            missing = [f"{chapter}.{n}" for n in range(n1, n2 + 1) if f"{chapter}.{n}" not in tags]
            if missing:
                problems.append(f"{where}: {link.group(0)} has no Eq. {', '.join(missing)}")
    return problems


def _builds_a_node(fn: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "from_op"
               for n in ast.walk(fn))


def node_builders(source: str) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of each top-level function or method whose body calls ``from_op``."""
    tree = ast.parse(source)
    for node in tree.body:
        defs = [node] if isinstance(node, ast.FunctionDef) else (
            [(f"{node.name}.", n) for n in node.body if isinstance(n, ast.FunctionDef)] if isinstance(node, ast.ClassDef) else [])
        for item in defs:
            prefix, fn = item if isinstance(item, tuple) else ("", item)
            if fn.name != "from_op" and _builds_a_node(fn):
                yield prefix + fn.name, ast.get_docstring(fn) or ""


# ----------------------------------------------------------------------------- the tree itself


def _sources(*folders: str) -> dict[str, str]:
    return {str(p.relative_to(REPO)): p.read_text() for folder in folders for p in sorted((REPO / folder).rglob("*.py"))}


def test_every_import_points_down_the_layers():
    sources = _sources("minivae", "kernels", "derivations")
    assert len(sources) > 80
    assert not layer_violations(sources), "\n".join(layer_violations(sources))


def test_models_import_only_the_engine():
    models = {p: s for p, s in _sources("minivae").items() if p.startswith("minivae/models/")}
    assert len(models) >= 8
    for relpath, source in models.items():
        name, is_package = module_name(relpath)
        layers = {layer(t) for t, _ in imports(source, name, is_package)} - {None}
        assert layers <= {"engine", "providers", "models"}, f"{relpath} imports from {layers}"


def test_no_private_name_is_used_outside_its_module():
    wrong = private_name_violations(_sources("minivae", "kernels", "benchmarks", "examples"))
    assert not wrong, "private names used outside their module:\n" + "\n".join(wrong)


def _engine_nodes() -> Iterator[tuple[str, object]]:
    """Every public function and class of the engine's node modules, and Normal's methods."""
    modules = [m for m in vars(ops).values() if inspect.ismodule(m) and m.__name__.startswith("minivae.ops.")]
    modules += [distributions, losses, optim]
    modules += [m for m in vars(stochastic).values() if inspect.ismodule(m) and m.__name__.startswith("minivae.stochastic.")]
    assert len(modules) >= 14
    for module in modules:
        for name, obj in vars(module).items():
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", obj
    for name, fn in vars(distributions.Normal).items():
        if inspect.isfunction(fn) and not name.startswith("_"):
            yield f"minivae.distributions.Normal.{name}", fn


ENGINE_NODES = list(_engine_nodes())


@pytest.mark.parametrize("where,obj", ENGINE_NODES, ids=[w for w, _ in ENGINE_NODES])
def test_every_engine_node_cites_an_equation_that_exists(where, obj):
    problems = citation_problems(inspect.getdoc(obj) or "", where, need_equation=False)
    assert not problems, "\n".join(problems)


def test_every_function_that_builds_a_node_cites_an_equation():
    checked, problems = [], []
    for relpath, source in _sources("minivae").items():
        for name, doc in node_builders(source):
            checked.append(f"{relpath}:{name}")
            problems += citation_problems(doc, f"{relpath}:{name}", need_equation=True)
    assert len(checked) >= 20, checked  # the ops' nodes, the sampling and KL nodes, the stochastic and model nodes
    assert not problems, "\n".join(problems)


def test_every_public_op_is_reexported_and_every_module_is_in_the_engine_list():
    public = {name for name, fn in vars(ops).items() if inspect.isfunction(fn) and not name.startswith("_")}
    assert {"relu", "linear", "bce_with_logits_sum", "one_hot", "array_module"} <= public
    assert all(getattr(minivae, name) is getattr(ops, name) for name in ("relu", "sigmoid", "one_hot", "matmul"))
    on_disk = {p.stem for p in (ROOT / "ops").glob("*.py")} - {"__init__"}
    imported = {m.__name__.rsplit(".", 1)[1] for m in vars(ops).values() if inspect.ismodule(m)}
    assert on_disk <= imported, f"ops modules never imported by minivae/ops/__init__.py: {on_disk - imported}"


# ----------------------------------------------------------------------------- each guard fails on a planted violation


def test_the_layer_guard_catches_each_kind_of_upward_import():
    planted = {
        "minivae/models/a.py": "from minivae.training.data import one_hot\n",
        "minivae/models/b.py": "def f():\n    from ..labs import variance\n",  # lazy and relative
        "minivae/ops/c.py": "import importlib\nm = importlib.import_module('minivae.cli')\n",
        "minivae/providers/d.py": "from minivae import tensor\n",
        "kernels/e.py": "import minivae\n",
        "kernels/e2.py": "from minivae.kernels import cpu\nimport kernels.formulas\n",  # no top-level kernels
        "minivae/training/f.py": "from minivae.labs import decoders\n",
        "minivae/stochastic/__init__.py": "from ..models import vae\n",  # relative from a package
    }
    found = layer_violations(planted)
    assert sorted({v.split(":")[0] for v in found}) == sorted(planted), found
    fine = {"minivae/labs/g.py": "from minivae.training.step import training_step\nfrom ..models import vae\n",
            "minivae/models/h.py": "from minivae import ops\nfrom . import vae\nimport numpy\n",
            "minivae/cli/i.py": "import minivae.kernels.cuda_ptx\nfrom minivae import derivations\n",
            "kernels/j.py": "from . import formulas\nfrom minivae.kernels import cpu\n",
            "minivae/providers/k.py": "from minivae.kernels import cpu as kc\n",
            "minivae/__main__.py": "from minivae.cli import main\n"}
    assert layer_violations(fine) == []


def test_the_private_name_guard_catches_every_alias():
    home = {"minivae/tensor.py": "class Tensor:\n    def __init__(self):\n        self._parents = ()\n"
                                 "def _check_real(x):\n    return x\n"}
    planted = {
        "minivae/graphview.py": "def nodes(t):\n    return t._parents\n",  # an instance attribute
        "minivae/a.py": "import minivae.tensor as whatever\nwhatever._check_real(1)\n",  # any alias
        "minivae/b.py": "from minivae.tensor import _check_real\n",
        "minivae/c.py": "from .tensor import _check_real as fine_looking\n",  # relative, renamed
    }
    found = private_name_violations({**home, **planted})
    assert sorted({v.split(":")[0] for v in found}) == sorted(planted), found
    own = {**home, "minivae/d.py": "class A:\n    def f(self):\n        return self._parents, super()._x\n"
                                   "import numpy as np\nnp._NoValue\n"}
    assert private_name_violations(own) == []  # inherited access and other projects' privates are not ours


def test_the_citation_guard_checks_every_equation_exactly(tmp_path):
    (tmp_path / "derivations").mkdir()
    (tmp_path / "derivations" / "15_vjp_rules.md").write_text("".join(f"\\tag{{Eq. 15.{n}}}\n" for n in range(1, 11)))
    def problems(doc, need=False):
        return citation_problems(doc, "f", need, repo=tmp_path)
    assert problems("Derivation: derivations/15_vjp_rules.md, Eq. 15.4-15.9.") == []
    assert problems("Derivation: derivations/15_vjp_rules.md (Eq. 15.1 and 15.3, Eq. 15.5).") == []
    assert problems("Derivation: none (a helper, not an op).") == []
    assert problems("Derivation: derivations/15_vjp_rules.md, Eq. 15.4-15.99.")  # a range past the end
    assert problems("Derivation: derivations/15_vjp_rules.md, Eq. 15.11.")  # no such equation
    assert problems("Derivation: derivations/15_vjp_rules.md, Eq. 2.1.")  # another chapter's number
    assert problems("Derivation: derivations/15_vjp_rules.md.")  # a file and no equation
    assert problems("Derivation: derivations/16_missing.md, Eq. 16.1.")  # no such file
    assert problems("y = x.   x̄ = g.")  # no Derivation line at all
    assert problems("Derivation: none (composed).", need=True)  # a node with its own backward
    source = 'def f(x):\n    """y = x.\n    Derivation: none (why)."""\n    return Tensor.from_op(x, (x,), None, "f")\n'
    assert [name for name, _ in node_builders(source)] == ["f"]


def test_the_top_level_namespace_lists_the_library_not_what_it_imports():
    """`mv.<TAB>` in a notebook: no `sys`, `Path` or `importlib` beside the library's names."""
    import minivae as mv

    public = {name: getattr(mv, name) for name in dir(mv) if not name.startswith("_")}
    foreign = sorted(name for name, value in public.items()
                     if (getattr(value, "__module__", None) or getattr(value, "__name__", "minivae")).split(".")[0] != "minivae")
    assert not foreign, f"names in minivae's namespace that are not minivae's: {foreign}"
    assert {"Tensor", "tensor", "gradcheck", "draw_graph", "nn", "optim"} <= set(public)
