"""The exercises and their autograder: every stub fails, every solution passes, and each
planted mistake fails with a message that names its case and says what is wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minivae as mv
from minivae.course.exercises import EXERCISES, HERE
from minivae.course.grader import grade
from minivae.testing import binary_cases, check_op, unary_cases

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minivae.cli", "exercise", *args],
                          capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def planted(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """The reference solution of ``name`` with one mistake planted (``old`` replaced by ``new``)."""
    text = EXERCISES[name].solution.read_text()
    assert old in text, f"the solution of {name} no longer contains {old!r}"
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new))
    return path


def failing(report, case: str | None = None):
    return [f for f in report.failures if case is None or f.case == case]


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_solution_passes_and_every_stub_fails(name):
    solved = grade(name, EXERCISES[name].solution)
    assert solved.ok, str(solved)
    stub = grade(name, EXERCISES[name].stub)
    assert not stub.ok and len(stub.failures) == len({(c.case, c.dtype) for c in stub.checks})
    assert "not written yet" in str(stub)


def test_at_least_seven_exercises_each_with_a_docstring_that_states_the_task():
    assert len(EXERCISES) >= 7
    for e in EXERCISES.values():
        text = e.stub.read_text()
        assert text.startswith('"""Exercise') and "Task:" in text and "lecture" in text and "Check:" in text, e.name


def test_a_vjp_that_ignores_the_upstream_gradient_is_caught(tmp_path):
    report = grade("sigmoid", planted(tmp_path, "sigmoid", "return g * y * (1 - y)", "return y * (1 - y)"))
    grads = [f for f in report.failures if f.what == "gradient of x"]
    assert grads and all("ignores the upstream gradient g" in f.hint for f in grads)
    assert {"0-d", "non-contiguous (strided) view", "a tensor used twice"} <= {f.case for f in grads}


def test_a_vjp_right_for_1d_inputs_only_is_caught(tmp_path):
    path = planted(tmp_path, "logsumexp", "return g[..., None] * xp.exp(x - y[..., None])", "return g * xp.exp(x - y)")
    report = grade("logsumexp", path)
    assert not failing(report, "vector")  # right for one row...
    wrong = failing(report, "matrix")  # ...not for several
    assert wrong and wrong[0].what == "backward" and "1-D inputs only" in wrong[0].hint
    assert "could not be broadcast" in wrong[0].detail


def test_a_vjp_that_does_not_sum_over_broadcast_axes_is_caught(tmp_path):
    path = planted(tmp_path, "div", "return sum_to_shape(g / b, a.shape), sum_to_shape(-g * a / (b * b), b.shape)",
                   "return g / b, -g * a / (b * b)")
    report = grade("div", path)
    assert not failing(report, "same shape")
    for case in ("broadcast on the left (a has a size-1 axis)", "broadcast on the right (b has a size-1 axis)",
                 "0-d with a matrix", "leading axes added"):
        (f, *_) = failing(report, case)
        assert "sum the gradient over the axes broadcasting added or stretched" in f.detail, case
    (f, *_) = failing(report, "broadcast on the left (a has a size-1 axis)")
    assert "shape (2, 3) for a, whose shape is (2, 1)" in f.detail


def test_an_op_that_overflows_for_large_inputs_is_caught(tmp_path):
    path = planted(tmp_path, "sigmoid", "e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows\n"
                   "    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))", "return 1 / (1 + xp.exp(-x))")
    report = grade("sigmoid", path)
    assert {f.case for f in report.failures} == {"extreme values"}
    assert all("overflow" in f.detail and "cannot overflow" in f.hint for f in report.failures)
    lse = grade("logsumexp", planted(tmp_path, "logsumexp", "m = x.max(axis=-1, keepdims=True)", "m = 0 * x[..., :1]"))
    assert {f.case for f in lse.failures} == {"extreme values"} and "overflow" in lse.failures[0].detail


@pytest.mark.parametrize("old,new,message", [
    ("return 0.5 * (xp.exp(logvar)", "return -0.5 * (xp.exp(logvar)", "every element has the wrong sign"),
    ("return 0.5 * (xp.exp(logvar)", "return (xp.exp(logvar)", "twice the right value: a missing factor ½"),
])
def test_a_kl_with_the_wrong_sign_or_without_its_half_is_caught(tmp_path, old, new, message):
    report = grade("kl", planted(tmp_path, "kl", old, new))
    values = [f for f in report.failures if f.what == "value"]
    assert values and all(message in f.hint for f in values)
    assert "one row (d,)" in {f.case for f in values}


def test_a_sample_whose_backward_drops_eps_is_caught(tmp_path):
    path = planted(tmp_path, "reparameterize", "g * 0.5 * xp.exp(0.5 * logvar) * eps", "g * 0.5 * xp.exp(0.5 * logvar)")
    report = grade("reparameterize", path)
    assert report.failures and all(f.what == "gradient of logvar" for f in report.failures)
    assert all("is the eps factor there" in f.hint for f in report.failures)
    assert "eps with a leading sample axis (k, n, d)" in {f.case for f in report.failures}


def test_the_stable_compositions_are_required(tmp_path):
    iwae = grade("iwae", planted(tmp_path, "iwae", "(m + mv.log(mv.exp(log_w - m).sum(axis=0, keepdims=True)))[0]",
                                 "mv.log(mv.exp(log_w).sum(axis=0))"))
    # the naive form fails at ±1e4, and in float32 already at the typical log-weights of -100 (e^-100 underflows)
    assert "extreme values (log-weights of ±1e4)" in {f.case for f in iwae.failures}
    assert all(f.case.startswith("extreme values") or f.dtype == "float32" for f in iwae.failures)
    score = grade("score", planted(tmp_path, "score", "mv.logsigmoid(logits) + (1 - b) * mv.logsigmoid(-logits)",
                                   "mv.log(mv.sigmoid(logits)) + (1 - b) * mv.log(mv.sigmoid(-logits))"))
    assert {f.case for f in score.failures} == {"extreme values (logits ±1e4)"}
    no_baseline = grade("score", planted(tmp_path, "score", "(f - baseline)", "f"))
    assert all("is the baseline subtracted?" in f.hint for f in no_baseline.failures if f.what == "value")


def test_wrong_shape_wrong_dtype_and_raising_code_get_clear_messages(tmp_path):
    shape = grade("logsumexp", planted(tmp_path, "logsumexp", "keepdims=True)))[..., 0]", "keepdims=True)))"))
    assert "the output has shape (1,), expected ()" in failing(shape, "vector")[0].detail
    dtype = grade("sigmoid", planted(tmp_path, "sigmoid", "return g * y * (1 - y)",
                                     "return (g * y * (1 - y)).astype('float64')"))
    assert {f.dtype for f in dtype.failures} == {"float32"}
    assert "vjp returned a float64 gradient for x, which is float32" in dtype.failures[0].detail
    raising = grade("kl", planted(tmp_path, "kl", "g = g[..., None]", "g = g[..., None] + undefined_name"))
    assert "your code raised NameError: name 'undefined_name' is not defined" in raising.failures[0].detail
    assert "at kl.py, line" in raising.failures[0].detail


def test_the_cli_lists_starts_and_checks(tmp_path):
    listed = cli("list")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == len(EXERCISES)
    assert all("lecture" in line for line in listed.stdout.splitlines())
    started = cli("start", "kl", str(tmp_path / "work"))
    assert started.returncode == 0 and (tmp_path / "work" / "kl.py").read_text() == EXERCISES["kl"].stub.read_text()
    (tmp_path / "work" / "kl.py").write_text("# my work\n")
    again = cli("start", "kl", str(tmp_path / "work"))
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.splitlines()) == 1
    assert (tmp_path / "work" / "kl.py").read_text() == "# my work\n"  # never replaced
    stub = cli("check", "kl", str(HERE / "stubs" / "kl.py"))
    assert stub.returncode == 1 and "FAIL  case 'one row (d,)', float64: forward" in stub.stdout
    solution = cli("check", "kl", "--solution")
    assert solution.returncode == 0 and "all pass" in solution.stdout
    for bad in (("check", "nope", "--solution"), ("check", "kl"), ("check", "kl", str(tmp_path / "missing.py"))):
        out = cli(*bad)
        assert out.returncode == 2 and out.stderr.startswith("minivae exercise: error:") and "Traceback" not in out.stderr


def test_two_starts_at_once_write_the_stub_once_and_never_over_each_other(tmp_path):
    command = [sys.executable, "-m", "minivae.cli", "exercise", "start", "iwae", str(tmp_path / "work")]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(run.wait(timeout=120) for run in runs)
    assert codes == [0, 2]
    assert (tmp_path / "work" / "iwae.py").read_text() == EXERCISES["iwae"].stub.read_text()
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["iwae.py"]  # no temporary file left behind
    for run in runs:
        run.stdout.close()
        run.stderr.close()


def test_an_endless_loop_a_syntax_error_and_a_crash_are_one_clear_message(tmp_path):
    loop = tmp_path / "loop.py"
    loop.write_text("def forward(x):\n    while True:\n        pass\n\ndef vjp(g, x, y):\n    return g\n")
    out = cli("check", "sigmoid", str(loop), "--timeout", "3")
    assert out.returncode == 1 and "did not finish within 3 s (an endless loop?)" in out.stdout
    broken = tmp_path / "broken.py"
    broken.write_text("def forward(x)\n    return x\n")
    out = cli("check", "sigmoid", str(broken))
    assert out.returncode == 1 and "broken.py, line 1: SyntaxError" in out.stdout
    crash = tmp_path / "crash.py"
    crash.write_text("import os\ndef forward(x):\n    os._exit(7)\ndef vjp(g, x, y):\n    return g\n")
    out = cli("check", "sigmoid", str(crash))
    assert out.returncode == 1 and "ended abnormally (exit 7" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    for body, message in (("import sys\ndef forward(x):\n    sys.exit(0)\n", "your code called sys.exit(0)"),
                          ("import os\ndef forward(x):\n    os._exit(0)\n", "ended before its report"),
                          ("import sys\nsys.exit(0)\n", "importing your file called sys.exit(0)"),
                          ("x = input()\n", "raised EOFError")):
        cheat = tmp_path / "cheat.py"
        cheat.write_text(body + "def vjp(g, x, y):\n    return g\n")
        out = cli("check", "sigmoid", str(cheat))
        assert out.returncode == 1 and message in out.stdout, (body, out.stdout)


def test_check_op_is_a_public_harness_for_new_exercises():
    report = check_op(mv.softplus, lambda x: np.logaddexp(0, x), unary_cases(extreme=[-1e4, 1e4]))
    assert report.ok, str(report)
    wrong = check_op(lambda x: mv.softplus(x) * 1.5, lambda x: np.logaddexp(0, x), unary_cases())
    assert not wrong.ok and "FAIL  case '0-d', float64: value" in str(wrong)


def test_stubs_and_solutions_are_package_data():
    text = (REPO / "pyproject.toml").read_text()  # (tomllib is 3.11+; the package supports 3.10)
    line = re.search(r'^"minivae\.course\.exercises" = \[(.*)\]$', text, re.M).group(1)
    globs = re.findall(r'"([^"]+)"', line)
    shipped = {p for g in globs for p in HERE.glob(g)}
    for e in EXERCISES.values():
        assert e.stub in shipped and e.solution in shipped


@pytest.mark.parametrize("name,fn,reference,cases", [
    ("sigmoid", mv.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda: unary_cases(extreme=[-30.0, 0.0, 30.0])),
    ("tanh", mv.tanh, np.tanh, unary_cases),
    ("logsigmoid", mv.logsigmoid, lambda x: -np.logaddexp(0, -x), lambda: unary_cases(extreme=[-1e4, 0.0, 1e4])),
    ("mul", mv.mul, np.multiply, binary_cases),
    ("div", mv.div, np.divide, lambda: binary_cases(low_b=0.5, high_b=2.0)),
])
def test_check_op_passes_the_librarys_own_ops(name, fn, reference, cases):
    """The harness must not fail a correct op (a check that always fails would teach nothing)."""
    report = check_op(fn, reference, cases(), name=name)
    assert report.ok, str(report)


def test_every_equation_a_hint_or_an_exercise_cites_exists():
    sources = [REPO / "minivae" / "course" / "grader.py", *sorted((HERE / "stubs").glob("*.py"))]
    cited = {eq for path in sources for eq in re.findall(r"Eq\. (\d+\.\d+)", path.read_text())}
    assert len(cited) >= 6
    tags = set()
    for md in (REPO / "derivations").glob("[0-9][0-9]_*.md"):
        tags |= set(re.findall(r"\\tag\{Eq\. (\d+\.\d+)\}", md.read_text()))
    assert cited <= tags, f"cited but not in any derivation: {sorted(cited - tags)}"
