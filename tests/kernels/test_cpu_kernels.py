"""The compiled CPU loops (kernels.cpu) vs NumPy float64 references.

Same tolerances as the GPU tests (kernel_reference.tolerance): float32 rtol 1e-5 /
atol 1e-6, float64 1e-12. Shapes include 1x1, one row, one column and odd sizes.
"""

import numpy as np
import pytest
from kernel_reference import adam_step, bce_with_logits, tolerance

from minivae.kernels import cpu, formulas

SHAPES = [(1, 1), (1, 7), (3, 5), (37, 33)]


def _rand(rng, shape, dtype=np.float32, scale=2.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _check(actual, expected, dtype=np.float32):
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_backward_with_bias_gradient(shape, dtype):
    rng = np.random.default_rng(0)
    y = np.maximum(_rand(rng, shape, dtype), 0)
    y.flat[0] = 0.0  # the kink: derivative 0
    g = _rand(rng, shape, dtype)
    grad, grad_bias = np.empty_like(g), np.empty(shape[1], dtype)
    cpu.relu_backward_bias(g, y, grad, grad_bias)
    expected = g.astype(np.float64) * (y > 0)
    _check(grad, expected, dtype)
    _check(grad_bias, expected.sum(axis=0), dtype)
    cpu.relu_backward_bias(g, y, g, grad_bias)  # in place
    _check(g, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_bce_combine_and_gradient_from_saved_exp(shape, dtype):
    rng = np.random.default_rng(1)
    logits = _rand(rng, shape, dtype, scale=5.0)
    logits.flat[0] = 0.0  # sigmoid's two forms meet at 0
    target = rng.uniform(0, 1, shape).astype(dtype)
    e = np.exp(-np.abs(logits))
    values = np.log1p(e)
    assert cpu.bce_logits_combine(logits, target, values) is values  # in place
    _check(values, bce_with_logits(logits.astype(np.float64), target.astype(np.float64)), dtype)
    sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
    g_rows = _rand(rng, (shape[0],), dtype)
    saved = e.copy()
    grad = cpu.bce_logits_backward_saved(logits, target, saved, grad_rows=g_rows)
    assert grad is saved  # the gradient overwrites the saved e^-|l|
    _check(grad, g_rows[:, None] * (sig - target), dtype)
    g_full = _rand(rng, shape, dtype)
    grad = cpu.bce_logits_backward_saved(logits, target, e.copy(), grad_out=g_full)
    _check(grad, g_full * (sig - target), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_backward_without_bias(shape, dtype):
    rng = np.random.default_rng(2)
    y = np.maximum(_rand(rng, shape, dtype), 0)
    y.flat[0] = 0.0
    g = _rand(rng, shape, dtype)
    grad = cpu.relu_backward(g, y, np.empty_like(g))
    np.testing.assert_array_equal(grad, g * (y > 0))


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


def test_float32_adam_rates_are_rounded_once_like_numpy_and_torch():
    # One step from m = v = 0 leaves m = f32(1 - beta1) g and v = f32(1 - beta2) g²: the rates
    # are formed in float64 and rounded once. 1 - f32(0.999) would be 1.3e-5 off in v.
    g = np.array([0.5, -3.0, 7.25], np.float32)
    param, m, v = np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32)
    cpu.adam_update(param, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1)
    np.testing.assert_array_equal(m, np.float32(1 - 0.9) * g)
    np.testing.assert_array_equal(v, np.float32(1 - 0.999) * g * g)


def test_rejects_bad_arguments():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        cpu.relu_backward_bias(x, np.zeros((4, 3), np.float32), x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        cpu.bce_logits_combine(np.zeros((4, 3), np.float32).T, x, x)
    with pytest.raises(ValueError, match="step counts from 1"):
        cpu.adam_update(x, x, x, x, 1e-3, 0.9, 0.999, 1e-8, step=0)
    with pytest.raises(ValueError, match="exactly one"):
        cpu.bce_logits_backward_saved(x, x, x)


def test_cpu_loops_use_the_shared_formulas():
    assert cpu._sigmoid_from_saved is formulas.CPU.sigmoid_from_saved
    assert formulas.python_function(cpu._adam) is formulas.adam
    assert formulas.python_function(cpu._bce_from_log1p) is formulas.bce_from_log1p
