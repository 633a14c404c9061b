"""gradcheck itself: it must pass correct gradients and catch wrong ones."""

import numpy as np
import pytest

import minivae as mv
from minivae.tensor import Tensor


def planted_square(x: Tensor) -> Tensor:
    """y = x² with a deliberately wrong backward (2x + 0.01)."""
    return Tensor.from_op(x.data**2, (x,), lambda g: (g * (2 * x.data + 0.01),), "bad_square")


def test_gradcheck_catches_a_planted_wrong_gradient():
    x = mv.tensor(np.linspace(-1, 1, 6), requires_grad=True, dtype="float64")
    with pytest.raises(mv.GradcheckError) as err:
        mv.gradcheck(lambda x: planted_square(x).sum(), [x])
    report = err.value.report
    assert not report.ok
    # the error is 0.01 times the random weight of the one output (0.5 <= |w| <= 1.5)
    assert 0.005 - 1e-8 <= report.inputs[0].max_abs_error <= 0.015 + 1e-8
    assert "FAIL" in str(err.value)


def test_gradcheck_report_without_raising():
    x = mv.tensor([0.5, 1.5], requires_grad=True, dtype="float64")
    report = mv.gradcheck(lambda x: planted_square(x), [x], raise_on_failure=False)
    assert not report.ok and report.inputs[0].name == "input[0]"
    good = mv.gradcheck(lambda x: x * x, [x])
    assert good.ok and good.inputs[0].max_abs_error < 1e-8


def test_gradcheck_catches_a_wrong_gradient_of_a_single_element():
    def almost_right(x: Tensor) -> Tensor:
        def backward(g):
            grad = g * 3 * x.data**2
            grad.reshape(-1)[4] += 0.5  # allowed there: 1e-5 + 1e-3 * 75
            return (grad,)

        return Tensor.from_op(x.data**3, (x,), backward, "almost_cube")

    x = mv.tensor(np.arange(1.0, 7.0).reshape(2, 3), requires_grad=True, dtype="float64")
    report = mv.gradcheck(lambda x: almost_right(x).sum(), [x], raise_on_failure=False)
    assert not report.ok and report.inputs[0].worst_index == (1, 1)


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="need float64"):
        mv.gradcheck(lambda x: x.sum(), [mv.tensor([1.0], requires_grad=True)])


def test_gradcheck_needs_something_to_check():
    with pytest.raises(ValueError, match="no input requires grad"):
        mv.gradcheck(lambda x: x.sum(), [mv.tensor([1.0], dtype="float64")])


def test_common_random_numbers_make_stochastic_functions_checkable():
    rng = mv.random.Generator(0)
    mu = mv.tensor([0.3, -0.2], requires_grad=True, dtype="float64")
    lv = mv.tensor([0.1, -0.5], requires_grad=True, dtype="float64")
    f = lambda m, l: (mv.Normal(m, l).rsample(rng=rng) ** 3).sum()  # noqa: E731
    assert mv.gradcheck(f, [mu, lv], rng=rng).ok
    # Without rewinding, every evaluation draws new noise and the check fails.
    fresh = mv.random.Generator(0)
    g = lambda m, l: (mv.Normal(m, l).rsample(rng=fresh) ** 3).sum()  # noqa: E731
    assert not mv.gradcheck(g, [mu, lv], raise_on_failure=False).ok


def test_gradcheck_restores_inputs_and_previous_grads():
    x = mv.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    x.grad = np.array([7.0, 7.0])
    before = x.numpy().copy()
    mv.gradcheck(lambda x: (x * x).sum(), [x])
    np.testing.assert_array_equal(x.numpy(), before)
    np.testing.assert_array_equal(x.grad, [7.0, 7.0])


# -- inputs of every layout, and the bugs a weaker checker would miss ---------------------
def test_gradcheck_perturbs_a_transposed_view_in_place():
    base = np.arange(1.0, 13.0).reshape(3, 4)
    x = Tensor(base.T, requires_grad=True, dtype="float64")  # shares memory, not contiguous
    assert not x.data.flags.c_contiguous
    report = mv.gradcheck(lambda x: (x * x * x).sum(), [x])
    assert report.ok
    assert report.inputs[0].numeric != 0.0  # the perturbation reached the values fn reads
    np.testing.assert_array_equal(base, np.arange(1.0, 13.0).reshape(3, 4))  # restored exactly


@pytest.mark.parametrize("view", ["transposed", "strided slice", "broadcast (read-only)"])
def test_gradcheck_agrees_with_the_formula_on_views(view):
    base = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    data = {"transposed": base.T, "strided slice": base[::2, 1::2],
            "broadcast (read-only)": np.broadcast_to(base[:1], (3, 6))}[view]
    x = Tensor(data, requires_grad=True, dtype="float64")
    w = np.random.default_rng(0).normal(size=x.shape)
    report = mv.gradcheck(lambda x: (mv.sin(x) * w).sum(), [x])
    assert report.ok and report.inputs[0].max_abs_error < 1e-8


def test_gradcheck_on_a_0d_input_and_an_input_used_twice():
    s = mv.tensor(0.7, requires_grad=True, dtype="float64")
    report = mv.gradcheck(lambda a, b: a * b * a, [s, s])  # the same tensor in two slots: s³
    assert report.ok and len(report.inputs) == 1 and report.inputs[0].shape == ()
    # analytic = w · 3s² for the random output weight w, 0.5 <= |w| <= 1.5 (not w · 2s: both uses count)
    assert 0.5 <= abs(report.inputs[0].analytic) / (3 * 0.7**2) <= 1.5
    assert mv.gradcheck(lambda s: s + s + s, [s]).ok


def ignores_upstream(x: Tensor) -> Tensor:
    """y = x² whose backward returns 2x, forgetting to multiply by g."""
    return Tensor.from_op(x.data**2, (x,), lambda g: (2 * x.data,), "no_upstream_square")


@pytest.mark.parametrize("reduce", ["sum", "none", "scalar"])
def test_gradcheck_catches_a_vjp_that_ignores_its_upstream_gradient(reduce):
    if reduce == "scalar":  # a single-element output: the seed must not be 1 either
        x = mv.tensor(0.8, requires_grad=True, dtype="float64")
        fn = ignores_upstream
    else:
        x = mv.tensor([0.5, -1.0, 2.0], requires_grad=True, dtype="float64")
        fn = (lambda x: ignores_upstream(x).sum()) if reduce == "sum" else ignores_upstream
    assert not mv.gradcheck(fn, [x], raise_on_failure=False).ok


def contiguous_only(x: Tensor) -> Tensor:
    """y = x² whose backward reads x's memory as if it were C-contiguous (a kernel's classic bug)."""

    def backward(g):
        flat = np.lib.stride_tricks.as_strided(x.data, shape=(x.size,), strides=(x.data.itemsize,))
        return (g * 2 * flat.reshape(x.shape),)

    return Tensor.from_op(x.data**2, (x,), backward, "contiguous_only_square")


def test_gradcheck_catches_a_vjp_wrong_only_for_non_contiguous_inputs():
    values = np.random.default_rng(1).normal(size=(3, 4))
    contiguous = mv.tensor(values, requires_grad=True, dtype="float64")
    assert mv.gradcheck(contiguous_only, [contiguous]).ok  # the bug is invisible here ...
    transposed = Tensor(np.ascontiguousarray(values.T).T, requires_grad=True, dtype="float64")
    assert not mv.gradcheck(contiguous_only, [transposed], raise_on_failure=False).ok  # ... not here
    # and noncontiguous=True finds it from the contiguous input alone
    report = mv.gradcheck(contiguous_only, [contiguous], raise_on_failure=False, noncontiguous=True)
    assert [c.passed for c in report.inputs] == [True, False]
    assert report.inputs[1].name == "input[0] (strided)"
    np.testing.assert_array_equal(contiguous.numpy(), values)


def test_a_closure_over_the_checked_tensors_works_as_for_a_module():
    """Found in QA: the README's `gradcheck(lambda: loss, module)` habit with tensors,
    `gradcheck(lambda: (x * x).sum(), x)`, said '<lambda>() takes 0 positional arguments but 1 was given'."""
    x = mv.tensor(np.array([0.5, -1.5, 2.0]), dtype="float64", requires_grad=True)
    w = mv.tensor(np.array([[1.0], [2.0], [0.5]]), dtype="float64", requires_grad=True)
    closure = mv.gradcheck(lambda: ((x @ w) ** 2).sum(), [x, w])
    taking = mv.gradcheck(lambda a, b: ((a @ b) ** 2).sum(), [x, w])
    assert [c.name for c in closure.inputs] == [c.name for c in taking.inputs] == ["input[0]", "input[1]"]
    assert closure.ok and [c.max_abs_error for c in closure.inputs] == [c.max_abs_error for c in taking.inputs]
    bad = lambda: mv.Tensor.from_op((x.data ** 2).sum(), (x,), lambda g: (g * x.data,), "bad")  # noqa: E731
    with pytest.raises(mv.GradcheckError):
        mv.gradcheck(bad, x)  # a closure is checked, not only called
