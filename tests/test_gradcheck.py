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
    assert report.inputs[0].max_abs_error == pytest.approx(0.01, rel=1e-4)
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
