"""Fused CUDA elementwise kernels and reductions vs NumPy float64 references.

Runs on Numba's CUDA simulator (tests/conftest.py), so shapes are tiny and awkward:
1x1, one row, 17x33 (not a multiple of 32-wide blocks), and 130 rows (more than one
128-row block, which exercises the atomic path of the column reductions).
Tolerances: float32 results rtol 1e-5 / atol 1e-6 against float64 math
(kernel_reference.tolerance); float64 results 1e-12.
"""

import numpy as np
import pytest
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
from numba import cuda

from minivae.kernels import cpu, formulas
from minivae.kernels import cuda as kc
from minivae.kernels import cuda_elementwise, cuda_launch, cuda_reduce

SHAPES = [(1, 1), (3, 5), (17, 33)]


def _rand(rng, shape, dtype=np.float32, scale=2.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _check(actual, expected, dtype=np.float32):
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------- formulas


def test_gpu_and_cpu_formulas_are_compiled_from_the_same_functions():
    for name in formulas.FORMULAS:
        source = getattr(formulas, name)
        assert formulas.python_function(getattr(formulas.GPU, name)) is source
        assert formulas.python_function(getattr(formulas.CPU, name)) is source
    # and the kernels really call those compiled objects
    assert cuda_elementwise._activation is formulas.GPU.activation
    assert cuda_elementwise._adam is formulas.GPU.adam
    assert cpu._adam is formulas.CPU.adam


def test_activation_codes():
    assert formulas.activation_code("relu") == formulas.RELU
    assert formulas.activation_code(formulas.TANH) == formulas.TANH
    with pytest.raises(ValueError):
        formulas.activation_code("swish")


# ------------------------------------------------------------ bias + activation


@pytest.mark.parametrize("act", ACTIVATION_NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (17, 33)])
def test_bias_act_forward(act, shape):
    rng = np.random.default_rng(1)
    x, bias = _rand(rng, shape), _rand(rng, shape[1])
    out = np.full(shape, np.nan, np.float32)
    kc.bias_act_forward(x, bias, out, act, SLOPE)
    _check(out, activation(act, x.astype(np.float64) + bias))


def test_bias_act_forward_without_bias_in_place_float64():
    rng = np.random.default_rng(2)
    x = _rand(rng, (3, 5), np.float64)
    expected = activation("softplus", x)
    kc.bias_act_forward(x, None, x, "softplus")
    _check(x, expected, np.float64)


def test_bias_act_forward_extreme_inputs_stay_finite():
    x = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]], np.float64)
    for act in ("sigmoid", "softplus"):
        out = np.empty_like(x)
        kc.bias_act_forward(x, None, out, act)
        assert np.all(np.isfinite(out))
        _check(out, activation(act, x), np.float64)


@pytest.mark.parametrize(
    "act, from_output, shape",
    [(act, from_output, (3, 5)) for act in ACTIVATION_NAMES for from_output in (True, False)]
    + [("tanh", True, (17, 33))],
)
def test_bias_act_backward_with_bias_gradient(act, from_output, shape):
    rng = np.random.default_rng(3)
    pre = _rand(rng, shape, np.float64)
    y = activation(act, pre)
    grad_out = _rand(rng, shape, np.float64)
    grad_in = np.empty(shape)
    grad_bias = np.full(shape[1], np.nan)
    saved = y if from_output else pre
    kc.bias_act_backward(grad_out, saved, grad_in, act, SLOPE, grad_bias=grad_bias, from_output=from_output)
    expected = grad_out * activation_derivative(act, pre)
    _check(grad_in, expected, np.float64)
    _check(grad_bias, expected.sum(axis=0), np.float64)


@pytest.mark.parametrize("accumulate", [False, True])
def test_bias_act_backward_many_row_blocks(accumulate):
    """130 rows > ROWS_PER_BLOCK: several blocks add into grad_bias atomically."""
    assert 130 > cuda_reduce.ROWS_PER_BLOCK
    rng = np.random.default_rng(4)
    shape = (130, 3)
    y = activation("relu", _rand(rng, shape))
    grad_out = _rand(rng, shape)
    grad_in = np.empty_like(grad_out)
    start = np.array([1.0, -2.0, 0.5], np.float32)
    grad_bias = start.copy()
    kc.bias_act_backward(grad_out, y, grad_in, "relu", grad_bias=grad_bias, accumulate_bias=accumulate)
    expected = grad_out.astype(np.float64) * (y > 0)
    _check(grad_in, expected)
    np.testing.assert_allclose(grad_bias, expected.sum(0) + (start if accumulate else 0), rtol=1e-5, atol=1e-5)


def test_bias_act_backward_in_place_without_bias_gradient():
    rng = np.random.default_rng(5)
    y = activation("sigmoid", _rand(rng, (3, 5)))
    grad = _rand(rng, (3, 5))
    expected = grad.astype(np.float64) * y * (1 - y)
    kc.bias_act_backward(grad, y, grad, "sigmoid")
    _check(grad, expected)


def test_shape_mismatch_is_rejected():
    x = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError):
        kc.bias_act_forward(x, np.zeros(4, np.float32), x)
    with pytest.raises(ValueError):
        kc.reparam_forward(x, x, x, np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError):
        kc.bias_act_forward(x, None, np.zeros((5, 3), np.float32).T)  # a kernel cannot write a strided host array


def test_strided_and_broadcast_inputs_are_read_in_place():
    """The 2-D kernels index a[row, col], so transposed and stride-0 views need no copy."""
    rng = np.random.default_rng(11)
    x_t = _rand(rng, (5, 3)).T  # (3, 5), column-major
    out = np.empty((3, 5), np.float32)
    kc.bias_act_forward(x_t, None, out, "softplus")
    _check(out, activation("softplus", x_t.astype(np.float64)))
    logits, target = _rand(rng, (3, 5)), rng.uniform(size=(3, 5)).astype(np.float32)
    rows = _rand(rng, 3)
    broadcast = np.broadcast_to(rows[:, None], (3, 5))  # the gradient of a sum over the last axis
    grad_full, grad_rows = np.empty_like(logits), np.empty_like(logits)
    kc.bce_logits_backward(logits, target, grad_full, grad_out=broadcast)
    kc.bce_logits_backward(logits, target, grad_rows, grad_rows=rows)
    expected = rows[:, None].astype(np.float64) * (activation("sigmoid", logits.astype(np.float64)) - target)
    _check(grad_full, expected)
    _check(grad_rows, expected)


# ---------------------------------------------------------- reparam, KL, BCE


@pytest.mark.parametrize("shape", SHAPES)
def test_reparam_forward_and_backward(shape):
    rng = np.random.default_rng(6)
    mu, logvar, eps, g = (_rand(rng, shape, scale=1.0) for _ in range(4))
    z = np.empty_like(mu)
    kc.reparam_forward(mu, logvar, eps, z)
    _check(z, reparam(mu.astype(np.float64), logvar, eps))
    grad_mu, grad_logvar = np.empty_like(mu), np.empty_like(mu)
    kc.reparam_backward(g, logvar, eps, grad_mu, grad_logvar)
    _check(grad_mu, g)
    _check(grad_logvar, g * 0.5 * np.exp(0.5 * logvar.astype(np.float64)) * eps)
    only_logvar = np.full_like(mu, np.nan)
    assert kc.reparam_backward(g, logvar, eps, None, only_logvar) is only_logvar  # no grad_mu copy
    np.testing.assert_array_equal(only_logvar, grad_logvar)


@pytest.mark.parametrize("shape", SHAPES + [(9, 70)])
def test_kl_forward_rows(shape):
    rng = np.random.default_rng(7)
    mu, logvar = _rand(rng, shape, scale=1.0), _rand(rng, shape, scale=1.0)
    out = np.full(shape[0], np.nan, np.float32)
    kc.kl_forward(mu, logvar, out)
    _check(out, kl_rows(mu.astype(np.float64), logvar))


@pytest.mark.parametrize("shape", SHAPES)
def test_kl_backward(shape):
    rng = np.random.default_rng(8)
    mu, logvar = _rand(rng, shape, np.float64, 1.0), _rand(rng, shape, np.float64, 1.0)
    grad_rows = _rand(rng, shape[0], np.float64)
    grad_mu, grad_logvar = np.empty(shape), np.empty(shape)
    kc.kl_backward(mu, logvar, grad_rows, grad_mu, grad_logvar, scale=0.25)
    g = 0.25 * grad_rows[:, None]
    _check(grad_mu, g * mu, np.float64)
    _check(grad_logvar, g * 0.5 * (np.exp(logvar) - 1.0), np.float64)


@pytest.mark.parametrize("shape", SHAPES)
def test_bce_forward_sum_backward(shape):
    rng = np.random.default_rng(9)
    logits = _rand(rng, shape, scale=4.0)
    target = rng.uniform(size=shape).astype(np.float32)
    expected = bce_with_logits(logits.astype(np.float64), target)
    out = np.empty_like(logits)
    kc.bce_logits_forward(logits, target, out)
    _check(out, expected)
    total = np.full(1, np.nan, np.float32)
    kc.bce_logits_sum(logits, target, total)
    np.testing.assert_allclose(total[0], expected.sum(), rtol=1e-5)
    grad = np.empty_like(logits)
    kc.bce_logits_backward(logits, target, grad, scale=0.5)
    _check(grad, 0.5 * (activation("sigmoid", logits.astype(np.float64)) - target))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (9, 70), (1, 33)])
def test_bce_row_sums(shape, dtype):
    """One row per 32-thread warp: 70 columns span three strides, 9 rows two blocks."""
    rng = np.random.default_rng(12)
    logits = _rand(rng, shape, dtype, 4.0)
    target = rng.uniform(size=shape).astype(dtype)
    out = np.full(shape[0], np.nan, dtype)
    kc.bce_logits_row_sums(logits, target, out)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, bce_with_logits(logits.astype(np.float64), target).sum(axis=1), rtol=rtol)


def test_bce_backward_with_elementwise_grad_and_accumulated_sum():
    rng = np.random.default_rng(10)
    logits, grad_out = _rand(rng, (3, 5), np.float64), _rand(rng, (3, 5), np.float64)
    target = (rng.uniform(size=(3, 5)) > 0.5).astype(np.float64)
    grad = np.empty_like(logits)
    kc.bce_logits_backward(logits, target, grad, scale=2.0, grad_out=grad_out)
    _check(grad, 2.0 * grad_out * (activation("sigmoid", logits) - target), np.float64)
    total = np.array([10.0])
    kc.bce_logits_sum(logits, target, total, accumulate=True)
    _check(total[0], 10.0 + bce_with_logits(logits, target).sum(), np.float64)


# ------------------------------------------------------------------- reductions


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 33), (130, 3)])
def test_column_sum(shape):
    rng = np.random.default_rng(11)
    x = _rand(rng, shape)
    out = np.full(shape[1], np.nan, np.float32)
    kc.column_sum(x, out)
    np.testing.assert_allclose(out, x.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    kc.column_sum(x, out, accumulate=True)
    np.testing.assert_allclose(out, 2 * x.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 255, 257])
def test_total_sum(size):
    """Sizes around the 256-thread block: one block (plain store) and several (atomics)."""
    rng = np.random.default_rng(12)
    x = _rand(rng, size, np.float64)
    out = np.full(1, np.nan)
    kc.total_sum(x, out)
    _check(out[0], x.sum(), np.float64)
    kc.total_sum(x.reshape(1, size), out, accumulate=True)
    _check(out[0], 2 * x.sum(), np.float64)


def test_fill():
    out = np.zeros((3, 5), np.float32)
    kc.fill(out, 2.5)
    assert np.all(out == 2.5)


# ------------------------------------------------------------------------- Adam


@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("shape", [(1,), (17, 33)])
def test_adam_update_matches_numpy_adam(decoupled, shape):
    rng = np.random.default_rng(13)
    param = _rand(rng, shape, scale=1.0)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref_p, ref_m, ref_v = param.astype(np.float64), np.zeros(shape), np.zeros(shape)
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
    for step in (1, 2, 3):
        grad = _rand(rng, shape, scale=1.0)
        kc.adam_update(param, grad, m, v, step=step, decoupled=decoupled, **hyper)
        ref_p, ref_m, ref_v = adam_step(ref_p, grad, ref_m, ref_v, step, decoupled=decoupled, **hyper)
    _check(param, ref_p)
    _check(m, ref_m)
    _check(v, ref_v)


# ---------------------------------------------------------------- launch plumbing


def test_streams_and_device_arrays():
    x = np.ones((3, 5), np.float32)
    assert kc.as_device_array(x) is x
    assert kc.cuda_stream(0) == 0 and kc.cuda_stream(None) == 0
    stream = cuda.stream()
    assert kc.cuda_stream(stream) is stream
    out = np.empty_like(x)
    kc.bias_act_forward(x, None, out, "relu", stream=stream)
    stream.synchronize()
    assert np.all(out == 1)
    # a numba device array (the simulator's stand-in) round-trips too
    d_x = cuda.to_device(x)
    d_out = cuda.device_array_like(x)
    kc.bias_act_forward(d_x, np.full(5, 2, np.float32), d_out, "identity")
    assert np.all(d_out.copy_to_host() == 3)


def test_launch_overhead_probe_runs():
    assert cuda_launch.launch_overhead_probe(repeats=2) >= 0
