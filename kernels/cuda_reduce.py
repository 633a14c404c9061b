"""Parallel sums on the GPU: column sums (bias gradients) and full sums (losses).

Both are two-level reductions:

1. each thread adds up its share of the input in a register (a grid-stride loop
   for full sums, a strided walk down one column for column sums);
2. the threads of a block combine their partial sums in shared memory with a tree
   (halve the active threads each round, ``syncthreads`` between rounds);
3. one thread per block (per column) writes the block's total: a plain store when
   the whole reduction fits in one block, otherwise ``cuda.atomic.add`` into an
   output that was zeroed first.

Partial sums are kept in the input's dtype (float32 math for float32 arrays, like
cuBLAS and CuPy's own sums): each thread adds only a short stretch serially and the
rest is a tree, so the rounding error grows like log(n), not n. Kernels with a shared
array or a typed zero are therefore made per dtype (``functools.lru_cache`` factories).
With more than one block the atomics make the order of the final additions
run-dependent (differences at rounding level).

The block-level helpers (``block_sum_1d``, ``block_sum_over_y``, ``block_sum_over_x``)
are device functions that the fused kernels in ``cuda_elementwise`` reuse.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from .cuda_launch import THREADS_1D, HostStaging, cuda_stream, flat, grid_1d, launch, require_c_contiguous

#: 2-D blocks for column / row reductions: 32 columns (one warp, coalesced) x 8 rows
RED_X = 32
RED_Y = 8
#: rows one column-reduction block covers; more rows -> more blocks plus atomics
ROWS_PER_BLOCK = 128

# ----------------------------------------------------------------- device helpers


@cuda.jit(device=True)
def block_sum_1d(cache, value):
    """Sum ``value`` over the THREADS_1D threads of a 1-D block; the total is
    returned to thread 0 (other threads get a partial). ``cache`` is a shared array
    array of THREADS_1D elements. Every thread of the block must call this."""
    tid = cuda.threadIdx.x
    cache[tid] = value
    cuda.syncthreads()
    step = THREADS_1D // 2
    while step > 0:
        if tid < step:
            cache[tid] += cache[tid + step]
        cuda.syncthreads()
        step //= 2
    return cache[0]


@cuda.jit(device=True)
def block_sum_over_y(cache, value):
    """For a (RED_X, RED_Y) block: sum ``value`` over threadIdx.y, separately for
    each threadIdx.x (i.e. per column). Returns the column total (valid for every
    thread after the last sync). ``cache`` is a shared array of shape (RED_Y, RED_X)."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    cache[ty, tx] = value
    cuda.syncthreads()
    step = RED_Y // 2
    while step > 0:
        if ty < step:
            cache[ty, tx] += cache[ty + step, tx]
        cuda.syncthreads()
        step //= 2
    return cache[0, tx]


@cuda.jit(device=True)
def block_sum_over_x(cache, value):
    """For a (RED_X, RED_Y) block: sum ``value`` over threadIdx.x, separately for
    each threadIdx.y (i.e. per row). ``cache`` is a shared array (RED_Y, RED_X)."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    cache[ty, tx] = value
    cuda.syncthreads()
    step = RED_X // 2
    while step > 0:
        if tx < step:
            cache[ty, tx] += cache[ty, tx + step]
        cuda.syncthreads()
        step //= 2
    return cache[ty, 0]


@cuda.jit(device=True)
def store_total(out, index, total, single_block, accumulate):
    """Write one block's total: a store (or +=) when it is the only block, an
    atomic add (into a zeroed or accumulating output) when several blocks share it."""
    if single_block:
        if accumulate:
            out[index] += total
        else:
            out[index] = total
    else:
        cuda.atomic.add(out, index, total)


# ----------------------------------------------------------------------- kernels


@cuda.jit
def _fill_kernel(out, value):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


@functools.lru_cache(maxsize=None)
def column_sum_kernel(dtype: np.dtype):
    element, zero = numba.from_dtype(dtype), dtype.type(0)

    @cuda.jit
    def column_sum_rows(x, out, single_block, accumulate):
        cache = cuda.shared.array((RED_Y, RED_X), element)
        col = cuda.blockIdx.x * RED_X + cuda.threadIdx.x
        first = cuda.blockIdx.y * ROWS_PER_BLOCK
        # (an if, not min(): the built-in CUDA target of numba 0.68 rejects min/max)
        last = first + ROWS_PER_BLOCK
        if last > x.shape[0]:
            last = x.shape[0]
        partial = zero
        if col < x.shape[1]:
            for row in range(first + cuda.threadIdx.y, last, RED_Y):
                partial += x[row, col]
        total = block_sum_over_y(cache, partial)
        if cuda.threadIdx.y == 0 and col < x.shape[1]:
            store_total(out, col, total, single_block, accumulate)

    return column_sum_rows


@functools.lru_cache(maxsize=None)
def total_sum_kernel(dtype: np.dtype):
    element, zero = numba.from_dtype(dtype), dtype.type(0)

    @cuda.jit
    def total_sum_flat(x, out, single_block, accumulate):
        cache = cuda.shared.array(THREADS_1D, element)
        partial = zero
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            partial += x[i]
        total = block_sum_1d(cache, partial)
        if cuda.threadIdx.x == 0:
            store_total(out, 0, total, single_block, accumulate)

    return total_sum_flat


# ----------------------------------------------------------------------- host API


@functools.lru_cache(maxsize=4096)
def column_grid(rows: int, cols: int) -> tuple[int, int]:
    """Grid for the (RED_X, RED_Y)-block column kernels: column strips x row chunks."""
    return (-(-cols // RED_X), max(1, -(-rows // ROWS_PER_BLOCK)))


def fill(out, value: float, *, stream=0):
    """out[...] = value (any shape, C-contiguous), on ``stream``."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_out = stage(out, written=True)
    require_c_contiguous("out", d_out)
    d_out = flat(d_out)
    if d_out.shape[0]:
        launch(_fill_kernel, grid_1d(d_out.shape[0]), THREADS_1D, stream, d_out, d_out.dtype.type(value))
    stage.finish()
    return out


def prepare_atomic_output(out, single_block: bool, accumulate: bool, stream) -> None:
    """Atomics add into ``out`` (a device array): zero it first unless the caller accumulates.

    (A caller that can allocate its output zeroed, e.g. with ``cupy.zeros`` -- a memset,
    not a kernel -- passes ``accumulate=True`` instead and saves this launch.)"""
    if not single_block and not accumulate:
        launch(_fill_kernel, grid_1d(out.shape[0]), THREADS_1D, stream, out, out.dtype.type(0))


def column_sum(x, out, *, accumulate: bool = False, stream=0):
    """out[j] = sum_i x[i, j]  (or out[j] += ... with accumulate=True).

    x: (M, N) of any strides, out: (N,); the bias gradient of a dense layer is
    column_sum(grad).
    """
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_x, d_out = stage(x), stage(out, written=True)
    rows, cols = d_x.shape
    if tuple(d_out.shape) != (cols,):
        raise ValueError(f"column_sum: x is {tuple(d_x.shape)}, out must be ({cols},), got {tuple(d_out.shape)}")
    if cols:
        grid = column_grid(rows, cols)
        single = grid[1] == 1
        prepare_atomic_output(d_out, single, accumulate, stream)
        launch(column_sum_kernel(np.dtype(d_out.dtype)), grid, (RED_X, RED_Y), stream,
               d_x, d_out, single, bool(accumulate))
    stage.finish()
    return out


def total_sum(x, out, *, accumulate: bool = False, stream=0):
    """out[0] = sum of all elements of x (any shape, C-contiguous); out has shape (1,)."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_x, d_out = stage(x), stage(out, written=True)
    require_c_contiguous("x", d_x)
    if tuple(d_out.shape) != (1,):
        raise ValueError(f"total_sum: out must have shape (1,), got {tuple(d_out.shape)}")
    d_x = flat(d_x)
    blocks = grid_1d(d_x.shape[0])
    single = blocks == 1
    prepare_atomic_output(d_out, single, accumulate, stream)
    launch(total_sum_kernel(np.dtype(d_out.dtype)), blocks, THREADS_1D, stream, d_x, d_out, single, bool(accumulate))
    stage.finish()
    return out


def ptx_variants(dtype: np.dtype) -> list[tuple[object, str, tuple]]:
    """Every kernel this module launches, for ``dtype`` and C-contiguous arrays (the
    provider's layout): (kernel, flags, argument types) rows, the registry that
    ``kernels/cuda_ptx.py`` compiles to PTX without a GPU."""
    f = numba.from_dtype(dtype)
    m1, m2 = f[::1], f[:, ::1]
    flag = numba.boolean
    return [(_fill_kernel, "", (m1, f)),
            (column_sum_kernel(dtype), "", (m2, m1, flag, flag)),
            (total_sum_kernel(dtype), "", (m1, m1, flag, flag))]
