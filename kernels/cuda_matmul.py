"""Tiled shared-memory GEMM with register blocking, for the three products of a dense layer.

    forward          C = A   @ B      (+ bias)      a: (M, K)  b: (K, N)
    weight gradient  C = A.T @ B                    a: (K, M)  b: (K, N)   trans_a=True
    input gradient   C = A   @ B.T                  a: (M, K)  b: (N, K)   trans_b=True

A transposed operand is read in place (the index arithmetic swaps), never copied.

How one thread block works
--------------------------
The output is cut into BLOCK_M x BLOCK_N tiles, one per thread block of
THREADS_Y x THREADS_X threads. Each thread owns a THREAD_M x THREAD_N block of
outputs, spread with a stride of THREADS_Y rows / THREADS_X columns (so neighbouring
threads touch neighbouring addresses: coalesced stores, no shared-memory bank
conflicts on reads). The block walks the whole K dimension in steps of BLOCK_K:

    for each K tile:
        all threads copy an (BLOCK_M x BLOCK_K) slab of op(A) and a
        (BLOCK_K x BLOCK_N) slab of op(B) into shared memory, writing 0 for any
        element past the edge of the matrix (this is what makes every shape work);
        sync
        for kk in the tile: load THREAD_M values of A and THREAD_N of B into
        registers, do THREAD_M * THREAD_N multiply-adds
        sync

Every block loops over ALL of K itself, so the grid covers only M and N (unlike the
well-known documentation example whose bounds silently assume the grid covers K).
The epilogue adds the bias, optionally adds the old C (``accumulate=True``, for
gradient accumulation), and writes only in-bounds elements.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from .cuda_launch import HostStaging, cuda_stream, launch

BLOCK_M = 64  # output rows per thread block
BLOCK_N = 64  # output columns per thread block
BLOCK_K = 16  # depth of one shared-memory tile
THREAD_M = 4  # output rows per thread (register block)
THREAD_N = 4  # output columns per thread
THREADS_Y = BLOCK_M // THREAD_M
THREADS_X = BLOCK_N // THREAD_N
THREADS = THREADS_X * THREADS_Y
# Shared tiles are stored K-major, one padding column apart, so the transposing
# stores of the load phase hit 32 different banks instead of one.
PAD = 1
A_TILE_WIDTH = BLOCK_M + PAD  # shared-array shapes must be plain constants for numba
B_TILE_WIDTH = BLOCK_N + PAD

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.lru_cache(maxsize=None)
def _gemm_kernel(trans_a: bool, trans_b: bool, has_bias: bool, accumulate: bool, dtype: np.dtype):
    """Compile (lazily, on first launch) one GEMM variant; the flags are constants
    to numba, so each variant contains only its own branches."""
    element = numba.from_dtype(dtype)
    zero = dtype.type(0)
    loads_a = (BLOCK_M * BLOCK_K) // THREADS  # elements of the A slab each thread copies
    loads_b = (BLOCK_K * BLOCK_N) // THREADS

    @cuda.jit(device=True, inline="always")
    def gemm_tile(a, b, bias, c):
        m_total = c.shape[0]
        n_total = c.shape[1]
        k_total = a.shape[0] if trans_a else a.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * THREADS_X + tx
        row0 = cuda.blockIdx.y * BLOCK_M
        col0 = cuda.blockIdx.x * BLOCK_N

        a_tile = cuda.shared.array((BLOCK_K, A_TILE_WIDTH), element)
        b_tile = cuda.shared.array((BLOCK_K, B_TILE_WIDTH), element)
        acc = cuda.local.array((THREAD_M, THREAD_N), element)
        a_reg = cuda.local.array(THREAD_M, element)
        b_reg = cuda.local.array(THREAD_N, element)
        for i in range(THREAD_M):
            for j in range(THREAD_N):
                acc[i, j] = zero

        for k0 in range(0, k_total, BLOCK_K):
            # Copy the slabs. Consecutive threads take consecutive addresses of the
            # operand as it is stored, whichever way it is transposed.
            for load in range(loads_a):
                idx = tid + load * THREADS
                if trans_a:  # a is (K, M): m varies fastest in memory
                    kk = idx // BLOCK_M
                    mm = idx % BLOCK_M
                else:  # a is (M, K): k varies fastest
                    mm = idx // BLOCK_K
                    kk = idx % BLOCK_K
                row = row0 + mm
                k = k0 + kk
                if row < m_total and k < k_total:
                    a_tile[kk, mm] = a[k, row] if trans_a else a[row, k]
                else:
                    a_tile[kk, mm] = zero
            for load in range(loads_b):
                idx = tid + load * THREADS
                if trans_b:  # b is (N, K): k varies fastest
                    nn = idx // BLOCK_K
                    kk = idx % BLOCK_K
                else:  # b is (K, N): n varies fastest
                    kk = idx // BLOCK_N
                    nn = idx % BLOCK_N
                col = col0 + nn
                k = k0 + kk
                if col < n_total and k < k_total:
                    b_tile[kk, nn] = b[col, k] if trans_b else b[k, col]
                else:
                    b_tile[kk, nn] = zero
            cuda.syncthreads()

            for kk in range(BLOCK_K):
                for i in range(THREAD_M):
                    a_reg[i] = a_tile[kk, ty + i * THREADS_Y]
                for j in range(THREAD_N):
                    b_reg[j] = b_tile[kk, tx + j * THREADS_X]
                for i in range(THREAD_M):
                    for j in range(THREAD_N):
                        acc[i, j] += a_reg[i] * b_reg[j]
            # Nobody may overwrite the slabs while a slower thread still reads them.
            cuda.syncthreads()

        for i in range(THREAD_M):
            row = row0 + ty + i * THREADS_Y
            if row < m_total:
                for j in range(THREAD_N):
                    col = col0 + tx + j * THREADS_X
                    if col < n_total:
                        value = acc[i, j]
                        if has_bias:
                            value += bias[col]
                        if accumulate:
                            value += c[row, col]
                        c[row, col] = value

    # Two kernels around the one body, so that a product without a bias has no bias
    # argument at all: each array argument costs host time at every launch.
    if has_bias:

        @cuda.jit
        def gemm(a, b, bias, c):
            gemm_tile(a, b, bias, c)

    else:

        @cuda.jit
        def gemm(a, b, c):
            gemm_tile(a, b, c, c)  # (the bias slot is never read)

    return gemm


@functools.lru_cache(maxsize=4096)
def _grid(m: int, n: int) -> tuple[int, int]:
    return (-(-n // BLOCK_N), -(-m // BLOCK_M))


def matmul(a, b, out, *, trans_a: bool = False, trans_b: bool = False, bias=None,
           accumulate: bool = False, stream=0):
    """out = op(a) @ op(b) [+ bias] [+ out], op(x) = x.T when its trans flag is set.

    a, b, out (and bias, shape (N,)) are float32 or float64 arrays of one dtype:
    CuPy arrays or numba device arrays on a GPU, NumPy arrays under the simulator.
    ``out`` has shape (M, N), must be C-contiguous and must not overlap a or b.
    ``accumulate=True`` adds the product to the existing ``out`` (gradient
    accumulation). Launched asynchronously on ``stream`` (see ``cuda_stream``);
    returns ``out``.
    """
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_a, d_b, d_out = stage(a), stage(b), stage(out, written=True)
    m, k = (d_a.shape[1], d_a.shape[0]) if trans_a else d_a.shape
    k_b, n = (d_b.shape[1], d_b.shape[0]) if trans_b else d_b.shape
    if k != k_b or tuple(d_out.shape) != (m, n):
        raise ValueError(
            f"matmul shapes: op(a) is {(m, k)}, op(b) is {(k_b, n)}, out is {tuple(d_out.shape)}"
        )
    dtype = np.dtype(d_out.dtype)
    if dtype not in SUPPORTED_DTYPES or d_a.dtype != dtype or d_b.dtype != dtype:
        raise TypeError(f"matmul needs one float dtype, got {d_a.dtype}, {d_b.dtype}, {d_out.dtype}")
    d_bias = None
    if bias is not None:
        d_bias = stage(bias)
        if tuple(d_bias.shape) != (n,) or d_bias.dtype != dtype:
            raise ValueError(f"bias must have shape {(n,)} and dtype {dtype}")
    if m and n:
        kernel = _gemm_kernel(bool(trans_a), bool(trans_b), d_bias is not None, bool(accumulate), dtype)
        arrays = (d_a, d_b, d_out) if d_bias is None else (d_a, d_b, d_bias, d_out)
        launch(kernel, _grid(m, n), (THREADS_X, THREADS_Y), stream, *arrays)
    stage.finish()
    return out


def ptx_variants(dtype: np.dtype) -> list[tuple[object, str, tuple]]:
    """Every kernel this module launches, for ``dtype`` and C-contiguous arrays (the
    provider's layout): (kernel, flags, argument types) rows, the registry that
    ``kernels/cuda_ptx.py`` compiles to PTX without a GPU."""
    f = numba.from_dtype(dtype)
    m1, m2 = f[::1], f[:, ::1]
    rows = []
    for ta in (False, True):
        for tb in (False, True):
            for bias in (False, True):
                for acc in (False, True):
                    rows.append((_gemm_kernel(ta, tb, bias, acc, dtype), f"ta={ta:d} tb={tb:d} bias={bias:d} acc={acc:d}",
                                 (m2, m2, m1, m2) if bias else (m2, m2, m2)))
    return rows
