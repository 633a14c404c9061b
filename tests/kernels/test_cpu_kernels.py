"""Multi-threaded CPU kernels (kernels.cpu) vs NumPy float64 references.

Same tolerances as the GPU tests (kernel_reference.tolerance): float32 rtol 1e-5 /
atol 1e-6, float64 1e-12. Shapes include 1x1, one row, and row counts that do not
divide evenly among the threads' row slabs.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_reference import (
    ACTIVATION_NAMES,
    SLOPE,
    activation,
    activation_derivative,
    adam_step,
    bce_with_logits,
    kl_rows,
    reparam,
    tolerance,
)

from kernels import cpu, formulas

SHAPES = [(1, 1), (1, 7), (3, 5), (37, 33)]


def _rand(rng, shape, dtype=np.float32, scale=2.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _check(actual, expected, dtype=np.float32):
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_bias_act_forward_and_backward(act, dtype):
    rng = np.random.default_rng(1)
    for shape in SHAPES:
        x, bias, grad_out = _rand(rng, shape, dtype), _rand(rng, shape[1], dtype), _rand(rng, shape, dtype)
        pre = x.astype(np.float64) + bias
        y = np.empty_like(x)
        cpu.bias_act_forward(x, bias, y, act, SLOPE)
        _check(y, activation(act, pre), dtype)
        expected = grad_out * activation_derivative(act, pre)
        for saved, from_output in ((y, True), ((x + bias).astype(dtype), False)):
            grad_in, grad_bias = np.empty_like(x), np.full(shape[1], np.nan, dtype)
            cpu.bias_act_backward(grad_out, saved, grad_in, act, SLOPE, grad_bias=grad_bias,
                                  from_output=from_output)
            # y is rounded to dtype before the derivative is taken from it: loosen float32
            rtol = 1e-4 if dtype == np.float32 else 1e-10
            np.testing.assert_allclose(grad_in, expected, rtol=rtol, atol=rtol)
            np.testing.assert_allclose(grad_bias, expected.sum(0), rtol=rtol, atol=rtol * shape[0])


def test_bias_act_in_place_and_accumulated_bias_gradient():
    rng = np.random.default_rng(2)
    x = _rand(rng, (5, 4))
    expected = np.maximum(x.astype(np.float64), 0)
    cpu.bias_act_forward(x, None, x, "relu")
    _check(x, expected)
    grad = _rand(rng, (5, 4))
    grad_bias = np.ones(4, np.float32)
    want = grad.astype(np.float64) * (x > 0)
    cpu.bias_act_backward(grad, x, grad, "relu", grad_bias=grad_bias, accumulate_bias=True)
    _check(grad, want)
    _check(grad_bias, 1 + want.sum(0))


@pytest.mark.parametrize("shape", SHAPES)
def test_reparam_kl_bce(shape):
    rng = np.random.default_rng(3)
    mu, logvar, eps, g = (_rand(rng, shape, np.float64, 1.0) for _ in range(4))
    z = np.empty(shape)
    cpu.reparam_forward(mu, logvar, eps, z)
    _check(z, reparam(mu, logvar, eps), np.float64)
    grad_mu, grad_logvar = np.empty(shape), np.empty(shape)
    cpu.reparam_backward(g, logvar, eps, grad_mu, grad_logvar)
    _check(grad_mu, g, np.float64)
    _check(grad_logvar, g * 0.5 * np.exp(0.5 * logvar) * eps, np.float64)

    rows = np.empty(shape[0])
    cpu.kl_forward(mu, logvar, rows)
    _check(rows, kl_rows(mu, logvar), np.float64)
    grad_rows = _rand(rng, shape[0], np.float64)
    cpu.kl_backward(mu, logvar, grad_rows, grad_mu, grad_logvar, scale=0.5)
    _check(grad_mu, 0.5 * grad_rows[:, None] * mu, np.float64)
    _check(grad_logvar, 0.5 * grad_rows[:, None] * 0.5 * np.expm1(logvar), np.float64)

    logits = _rand(rng, shape, np.float64, 5.0)
    target = rng.uniform(size=shape)
    out = np.empty(shape)
    cpu.bce_logits_forward(logits, target, out)
    _check(out, bce_with_logits(logits, target), np.float64)
    _check(cpu.bce_logits_sum(logits, target), bce_with_logits(logits, target).sum(), np.float64)
    grad = np.empty(shape)
    cpu.bce_logits_backward(logits, target, grad, scale=3.0, grad_out=g)
    _check(grad, 3.0 * g * (activation("sigmoid", logits) - target), np.float64)
    cpu.bce_logits_backward(logits, target, grad)
    _check(grad, activation("sigmoid", logits) - target, np.float64)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 70), cols=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_column_and_total_sums_any_shape(rows, cols, seed):
    x = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    out = np.full(cols, np.nan, np.float32)
    cpu.column_sum(x, out)
    np.testing.assert_allclose(out, x.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    cpu.column_sum(x, out, accumulate=True)
    np.testing.assert_allclose(out, 2 * x.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    assert cpu.total_sum(x) == pytest.approx(x.astype(np.float64).sum(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("shape", [(1,), (7, 3), (33,)])
def test_adam_update_matches_numpy_adam(decoupled, shape):
    rng = np.random.default_rng(4)
    param = _rand(rng, shape, scale=1.0)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref = (param.astype(np.float64), np.zeros(shape), np.zeros(shape))
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
    for step in range(1, 5):
        grad = _rand(rng, shape, scale=1.0)
        cpu.adam_update(param, grad, m, v, step=step, decoupled=decoupled, **hyper)
        ref = adam_step(*ref[:1], grad, *ref[1:], step, decoupled=decoupled, **hyper)
    for actual, expected in zip((param, m, v), ref):
        _check(actual, expected)


def test_rejects_bad_arguments():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError):
        cpu.bias_act_forward(x, np.zeros(3, np.float32), x)
    with pytest.raises(ValueError):
        cpu.bias_act_forward(np.zeros((4, 3), np.float32).T, None, x)
    with pytest.raises(ValueError):
        cpu.adam_update(x, x, x, x, 1e-3, 0.9, 0.999, 1e-8, step=0)
    with pytest.raises(ValueError):
        cpu.bias_act_forward(x, None, x, "gelu")


def test_cpu_module_uses_the_shared_formulas():
    assert cpu._bce is formulas.CPU.bce_with_logits
    assert formulas.python_function(cpu._reparam) is formulas.reparam
