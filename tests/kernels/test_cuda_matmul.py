"""The tiled GEMM vs NumPy float64, for all layouts, on awkward shapes (simulator).

Tiles are 64 x 64 x 16, so the shapes below cover: a single element, one row, one
column, K spanning three partial K tiles (33 = 16 + 16 + 1), and M, N just past a
tile (65 x 66, i.e. four thread blocks, three of them mostly padding).
Tolerance: float32 rtol 1e-5 with atol 1e-5 * sqrt(K) (rounding of a K-term dot
product); float64 1e-12.
"""

import numpy as np
import pytest

from minivae.kernels import cuda as kc
from minivae.kernels import cuda_matmul

LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 3, 1), (17, 33, 20), (65, 2, 66)]


def _operands(rng, m, k, n, trans_a, trans_b, dtype):
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    stored_a = np.ascontiguousarray(a.T if trans_a else a, dtype=dtype)
    stored_b = np.ascontiguousarray(b.T if trans_b else b, dtype=dtype)
    return stored_a.astype(np.float64), stored_b.astype(np.float64), stored_a, stored_b


def _reference(stored_a, stored_b, trans_a, trans_b):
    return (stored_a.T if trans_a else stored_a) @ (stored_b.T if trans_b else stored_b)


def _check(actual, expected, k, dtype):
    if dtype == np.float32:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_tile_constants_are_consistent():
    assert cuda_matmul.THREADS_X * cuda_matmul.THREAD_N == cuda_matmul.BLOCK_N
    assert cuda_matmul.THREADS_Y * cuda_matmul.THREAD_M == cuda_matmul.BLOCK_M
    # every thread copies a whole number of slab elements
    assert (cuda_matmul.BLOCK_M * cuda_matmul.BLOCK_K) % cuda_matmul.THREADS == 0
    assert (cuda_matmul.BLOCK_N * cuda_matmul.BLOCK_K) % cuda_matmul.THREADS == 0


@pytest.mark.parametrize("trans_a, trans_b", LAYOUTS)
@pytest.mark.parametrize("m, k, n", SHAPES)
def test_matmul_layouts_float32(m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a64, b64, a, b = _operands(rng, m, k, n, trans_a, trans_b, np.float32)
    out = np.full((m, n), np.nan, np.float32)
    kc.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b)
    _check(out, _reference(a64, b64, trans_a, trans_b), k, np.float32)


@pytest.mark.parametrize("trans_a, trans_b", LAYOUTS[:3])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (17, 33, 20)])
def test_matmul_with_bias_float64(m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(7)
    a64, b64, a, b = _operands(rng, m, k, n, trans_a, trans_b, np.float64)
    bias = rng.standard_normal(n)
    out = np.full((m, n), np.nan)
    kc.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, bias=bias)
    _check(out, _reference(a64, b64, trans_a, trans_b) + bias, k, np.float64)


def test_matmul_accumulate_with_bias_float32():
    """Gradient accumulation: out += A.T @ B (+ bias)."""
    rng = np.random.default_rng(8)
    m, k, n = 17, 33, 20
    a64, b64, a, b = _operands(rng, m, k, n, True, False, np.float32)
    start = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = start.copy()
    kc.matmul(a, b, out, trans_a=True, bias=bias, accumulate=True)
    _check(out, start + _reference(a64, b64, True, False) + bias, k, np.float32)


def test_matmul_empty_k_gives_bias():
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    bias = np.arange(4, dtype=np.float32)
    out = np.full((3, 4), np.nan, np.float32)
    kc.matmul(a, b, out, bias=bias)
    np.testing.assert_array_equal(out, np.broadcast_to(bias, (3, 4)))


def test_matmul_rejects_bad_shapes_and_dtypes():
    a = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError):
        kc.matmul(a, np.zeros((4, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError):
        kc.matmul(a, np.zeros((5, 2), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        kc.matmul(a, np.zeros((5, 2), np.float32), np.zeros((3, 2), np.float32), bias=np.zeros(3, np.float32))
    with pytest.raises(TypeError):
        kc.matmul(a, np.zeros((5, 2), np.float64), np.zeros((3, 2), np.float32))
