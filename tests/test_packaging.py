"""The installed distribution claims no top-level import name but ``minivae``.

The repository keeps ``kernels/`` and ``derivations/`` at its top level; pyproject.toml
installs them as ``minivae.kernels`` and ``minivae.derivations``. The main test builds
the wheel, installs it into a fresh virtual environment and works from a folder that
holds a course's own ``kernels/`` and ``derivations/`` packages (which must never be
imported): import, a training step, ``minivae derive``, ``--show`` of a derivation's
text, and the CUDA-simulator kernel tests. No network: the new environment sees this
interpreter's site-packages for the dependencies (numpy, numba, pytest, pip).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_pyproject_lists_every_package_folder():
    """The package list is explicit (package-dir maps two folders), so a new subpackage must be added."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "minivae").rglob("__init__.py")}
    on_disk |= {"minivae.kernels", "minivae.derivations"}
    assert listed == on_disk, f"pyproject's [tool.setuptools] packages misses {on_disk - listed}, has extra {listed - on_disk}"
    assert not [p for p in listed if not p.startswith("minivae")], "only the minivae namespace may be installed"


COURSE_KERNELS = 'raise ImportError("the course folder kernels/ was imported instead of minivae.kernels")\n'
COURSE_DERIVATIONS = 'raise ImportError("the course folder derivations/ was imported instead of minivae.derivations")\n'

TRAIN_STEP = """
import numpy as np, sys
import minivae as mv
from minivae.models import VAE
assert "kernels" not in sys.modules and "derivations" not in sys.modules, sorted(sys.modules)
assert mv.__file__.startswith(sys.prefix), mv.__file__
model = VAE(4, 2, 8, rng=mv.random.Generator(0))
opt = mv.optim.Adam(model.parameters(), lr=1e-2)
x = np.random.default_rng(1).random((5, 4)).astype(np.float32)
loss = model.loss(x, None, mv.random.Generator(2))["loss"]
loss.backward()
opt.step()
print("step ok", float(loss.data))
"""


def _run(args, cwd, env, timeout=120):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_built_wheel_works_in_a_fresh_venv_beside_a_courses_own_kernels_and_derivations(tmp_path):
    # 1. Build the wheel from a copy of the sources (no build folders left in the checkout).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("minivae", "kernels", "derivations"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp_path / "dist"), str(source)], cwd=tmp_path, env=os.environ.copy())
    wheel = next((tmp_path / "dist").glob("minivae-*.whl"))

    # 2. A fresh venv that sees this interpreter's site-packages for the dependencies only.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=os.environ.copy())
    python = venv / "bin" / "python"
    inner = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      cwd=tmp_path, env=os.environ.copy()).strip())
    outer = dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]])
    (inner / "outer_site_packages.pth").write_text("\n".join(outer) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    # --ignore-installed: a minivae in the outer environment is neither uninstalled nor counted as present.
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
         cwd=tmp_path, env=env)
    top_level = [p.name for p in inner.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", "__pycache__"))]
    assert top_level == ["minivae"], f"the wheel installs top-level {top_level}"
    # The explorer's page is package data: `minivae explore` serves it from the installed package.
    static = inner / "minivae" / "explore" / "static"
    assert sorted(p.name for p in static.iterdir()) == ["page.css", "page.html", "page.js"]

    # 3. A course folder with its own kernels/ and derivations/ packages: cwd comes first on sys.path.
    course = tmp_path / "course"
    for name, body in (("kernels", COURSE_KERNELS), ("derivations", COURSE_DERIVATIONS)):
        (course / name).mkdir(parents=True)
        (course / name / "__init__.py").write_text(body)
        (course / name / "cpu.py").write_text(body)

    assert "step ok" in _run([str(python), "-c", TRAIN_STEP], cwd=course, env=env)
    out = _run([str(venv / "bin" / "minivae"), "derive", "05"], cwd=course, env=env)
    assert "1 of 1 topics passed" in out
    listing = _run([str(python), "-m", "minivae", "derive"], cwd=course, env=env)
    assert "15_vjp_rules" in listing and "01_losses_as_likelihoods" in listing
    shown = _run([str(python), "-m", "minivae", "derive", "05", "--show"], cwd=course, env=env)
    assert shown.startswith("# 5. The KL divergence") and "Eq. 5.1" in shown
    # The exercises ship in the wheel: a stub to hand out, a reference solution the grader passes.
    _run([str(venv / "bin" / "minivae"), "exercise", "start", "kl", "work"], cwd=course, env=env)
    assert (course / "work" / "kl.py").read_text().startswith('"""Exercise `kl`')
    graded = _run([str(venv / "bin" / "minivae"), "exercise", "check", "kl", "--solution"], cwd=course, env=env)
    assert "(all pass)" in graded

    # 4. The CUDA-simulator kernel tests against the installed minivae.kernels (a quick subset).
    out = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "tile_constants or accumulate_with_bias or empty_k or rejects_bad",
                str(REPO / "tests" / "kernels" / "test_cuda_matmul.py")], cwd=course, env=env, timeout=300)
    assert " passed" in out and "failed" not in out


def test_python_dash_m_minivae_is_the_minivae_command():
    done = subprocess.run([sys.executable, "-m", "minivae", "derive"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "05_kl_gaussians" in done.stdout
