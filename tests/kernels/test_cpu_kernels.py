"""The compiled CPU loops (kernels.cpu) vs NumPy float64 references.

Same tolerances as the GPU tests (kernel_reference.tolerance): float32 rtol 1e-5 /
atol 1e-6, float64 1e-12. Shapes include 1x1, one row, one column and odd sizes.
"""

import numba
import numpy as np
import pytest
import threadpoolctl
from kernel_reference import adam_step, bce_with_logits, tolerance

from minivae.kernels import cpu, formulas, threads

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


# ------------------------------------------------------------ foreach optimizers, threads


FOREACH_SHAPES = [(37, 33), (33,), (), (1, 1), (5, 4), (4,)]


def _model(rng, dtype, shapes=FOREACH_SHAPES):
    params = [np.array(_rand(rng, s, dtype), dtype) for s in shapes]  # np.array: a 0-d array, not a scalar
    return params, [np.array(_rand(rng, s, dtype, 0.1), dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [32, 4])  # 4: the list takes two compiled calls, the last one padded
def test_adam_foreach_is_adam_update_on_each_parameter_bit_for_bit(dtype, chunk, monkeypatch):
    monkeypatch.setattr(cpu, "FOREACH_CHUNK", chunk)
    rng = np.random.default_rng(5)
    params, grads = _model(rng, dtype)
    ms, vs = [np.full(p.shape, 0.1, dtype) for p in params], [np.full(p.shape, 0.2, dtype) for p in params]
    one = [a.copy() for a in params], [a.copy() for a in ms], [a.copy() for a in vs]
    for step in (1, 2, 3):
        cpu.adam_foreach(params, grads, ms, vs, 1e-2, 0.9, 0.999, 1e-8, step, 0.01)
        for p, g, m, v in zip(*one[:1], grads, *one[1:]):
            cpu.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, step, 0.01)
    for got, want in zip(params + ms + vs, one[0] + one[1] + one[2]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.01), (0.0, 0.01)])
def test_sgd_foreach_rounds_like_the_numpy_expressions(dtype, momentum, weight_decay):
    """The reference provider's NumPy (g + wd*p; v *= mu; v += g; p -= lr*v), bit for bit,
    with the first step starting v as the gradient."""
    rng = np.random.default_rng(6)
    params, grads = _model(rng, dtype)
    want = [p.copy() for p in params]
    velocities, want_v = [np.empty_like(p) for p in params], [None] * len(params)
    for step in range(3):
        cpu.sgd_foreach(params, grads, velocities if momentum else params, np.full(len(params), step > 0),
                        0.1, momentum, weight_decay)
        for i, (p, g) in enumerate(zip(want, grads)):
            d = g + dtype(weight_decay) * p if weight_decay else g
            if momentum:
                if want_v[i] is None:
                    want_v[i] = np.array(d, copy=True)
                else:
                    want_v[i] *= dtype(momentum)
                    want_v[i] += d
                d = want_v[i]
            p -= dtype(0.1) * d
    for got, exp in zip(params, want):
        np.testing.assert_array_equal(got, exp)
    if momentum:
        for got, exp in zip(velocities, want_v):
            np.testing.assert_array_equal(got, exp)


def test_foreach_rejects_bad_lists():
    p = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="adam_foreach: array 0 of a list is not a C-contiguous float32"):
        cpu.adam_foreach([p], [p.T.copy().T], [p.copy()], [p.copy()], 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(ValueError, match="adam_foreach: the lists have different lengths"):
        cpu.adam_foreach([p], [p], [p], [], 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(ValueError, match="sgd_foreach: array 0 of a list is not a C-contiguous float32"):
        cpu.sgd_foreach([p], [p.astype(np.float64)], [p], [False], 0.1, 0.0)
    with pytest.raises(ValueError, match=r"sgd_foreach: started must have shape \(1,\)"):
        cpu.sgd_foreach([p], [p], [p], [False, True], 0.1, 0.0)


def test_piece_bounds_cover_the_rows_by_size_alone(monkeypatch):
    monkeypatch.setattr(threads, "MIN_PIECE", 1 << 16)  # a threshold at which a 1024 x 784 array splits 8 ways
    assert threads.piece_bounds(1000, 2 * threads.MIN_PIECE - 1) == [(0, 1000)]
    for rows, elements in [(1000, 2 * threads.MIN_PIECE), (3, 10**9), (1024, 1024 * 784), (7, 7 * threads.MIN_PIECE)]:
        bounds = threads.piece_bounds(rows, elements)
        assert len(bounds) in (1, 2, 4, 8) and len(bounds) <= rows
        assert bounds[0][0] == 0 and bounds[-1][1] == rows
        assert all(a < b for a, b in bounds) and all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
    assert len(threads.piece_bounds(1024, 1024 * 784)) == threads.MAX_PIECES


def test_thread_count_follows_the_blas_setting():
    with threadpoolctl.threadpool_limits(1):
        assert threads.thread_count() == 1
    with threadpoolctl.threadpool_limits(2):
        assert threads.thread_count() == min(2, threads._CPUS, numba.config.NUMBA_NUM_THREADS)
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            assert threads.thread_count() == 1
        finally:
            numba.set_num_threads(before)


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads even on a one-CPU machine, and tiny pieces, so small arrays take the threaded path."""
    monkeypatch.setattr(threads, "_CPUS", 2)
    monkeypatch.setattr(threads, "MIN_PIECE", 64)
    with threadpoolctl.threadpool_limits(2):
        assert threads.thread_count() == 2
        yield


def test_run_pieces_uses_a_second_thread_and_returns_its_errors(two_threads):
    import threading

    seen = {}
    threads.run_pieces(lambda k: seen.setdefault(k, threading.get_ident()), 4)
    assert sorted(seen) == [0, 1, 2, 3] and len(set(seen.values())) == 2

    def fail(k):
        if k == 3:
            raise ZeroDivisionError("piece 3")
        threads.run_pieces(lambda j: None, 2)  # a nested split runs serially, no deadlock

    with pytest.raises(ZeroDivisionError, match="piece 3"):
        threads.run_pieces(fail, 4)
    threads.run_pieces(lambda k: None, 4)  # the workers still serve


@pytest.mark.parametrize("rows", [1, 3, 40])  # one piece (under 2 x MIN_PIECE = 128 elements), 2 pieces, 8 pieces
@pytest.mark.parametrize("count", [1, 2])
def test_split_loops_equal_the_single_piece_loops_on_one_and_two_threads(rows, count, two_threads):
    rng = np.random.default_rng(rows)
    shape = (rows, 50)
    logits, target, g = _rand(rng, shape), rng.uniform(0, 1, shape).astype(np.float32), _rand(rng, shape)
    y = np.maximum(_rand(rng, shape), 0)
    e0 = np.exp(-np.abs(logits))
    params, grads = _model(rng, np.float32, [shape, (50,), ()])

    def run():
        out = {"relu": cpu.relu_backward(g, y, np.empty_like(g))}
        bias = np.empty(50, np.float32)
        out["relu+bias"] = cpu.relu_backward_bias(g, y, np.empty_like(g), bias), bias
        values = np.log1p(e0)
        out["combine"] = cpu.bce_logits_combine(logits, target, values)
        out["grad rows"] = cpu.bce_logits_backward_saved(logits, target, e0.copy(), grad_rows=g[:, 0].copy())
        out["grad full"] = cpu.bce_logits_backward_saved(logits, target, e0.copy(), grad_out=g)
        ps, ms, vs = [p.copy() for p in params], [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        cpu.adam_foreach(ps, grads, ms, vs, 1e-2, 0.9, 0.999, 1e-8, 1, 0.0)
        vel = [np.empty_like(p) for p in params]
        cpu.sgd_foreach(ps, grads, vel, np.zeros(3, bool), 0.1, 0.9, 0.01)
        out["optim"] = ps + ms + vs + vel
        return out

    with threadpoolctl.threadpool_limits(count):
        split = run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threads, "MIN_PIECE", 1 << 40)  # everything one piece, one thread
        whole = run()
    for key in whole:
        for got, want in zip(_flat(split[key]), _flat(whole[key])):
            if key == "relu+bias":  # the bias gradient adds the pieces' sums: rounding may differ
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(got, want, err_msg=key)
    np.testing.assert_allclose(split["relu+bias"][1], split["relu"].sum(axis=0), rtol=1e-5, atol=1e-5)


def _flat(x):
    return [a for item in (x if isinstance(x, (list, tuple)) else [x]) for a in (item if isinstance(item, list) else [item])]


def test_bias_gradient_does_not_depend_on_the_thread_count(two_threads):
    rng = np.random.default_rng(9)
    g, y = _rand(rng, (64, 30)), np.maximum(_rand(rng, (64, 30)), 0)
    sums = []
    for count in (1, 2):
        with threadpoolctl.threadpool_limits(count):
            bias = np.empty(30, np.float32)
            cpu.relu_backward_bias(g, y, np.empty_like(g), bias)
            sums.append(bias)
    np.testing.assert_array_equal(sums[0], sums[1])
