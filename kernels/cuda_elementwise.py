"""Fused elementwise CUDA kernels of a VAE, one launch each, built from formulas.py.

Each kernel reads its inputs once and writes its outputs once; the math per element
is a device-compiled formula from ``formulas.GPU``, never re-typed here. The
batch-shaped ops take 2-D (rows, features) arrays of any strides (a 1-D array is
treated as one row): the kernels index ``a[row, col]``, so a transposed or broadcast
view is read in place. Adam takes any shape, C-contiguous.

Arithmetic runs in the arrays' dtype: the formulas write their constants with
``formulas.cast`` and every scalar argument (slope, scale, learning rate...) is
converted to the dtype on the host, so a float32 kernel has no float64 instruction
(tests/kernels/test_cuda_compile.py checks the PTX). Kernels that need a typed zero
or a shared array are made per dtype by small cached factories.

All functions launch asynchronously on ``stream`` (see ``cuda_launch.cuda_stream``)
through ``cuda_launch.launch`` and return their main output.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from . import formulas
from .cuda_launch import THREADS_1D, HostStaging, cuda_stream, flat, grid_1d, launch, require_c_contiguous
from .cuda_reduce import (
    RED_X,
    RED_Y,
    ROWS_PER_BLOCK,
    block_sum_1d,
    block_sum_over_x,
    block_sum_over_y,
    column_grid,
    prepare_atomic_output,
    store_total,
)

# Kernels may only call module-level globals, so bind the device formulas here.
_activation = formulas.GPU.activation
_bias_act_backward = formulas.GPU.bias_act_backward
_reparam = formulas.GPU.reparam
_reparam_grad_logvar = formulas.GPU.reparam_grad_logvar
_gaussian_kl = formulas.GPU.gaussian_kl
_gaussian_kl_grad_mu = formulas.GPU.gaussian_kl_grad_mu
_gaussian_kl_grad_logvar = formulas.GPU.gaussian_kl_grad_logvar
_bce = formulas.GPU.bce_with_logits
_bce_grad = formulas.GPU.bce_with_logits_grad
_adam = formulas.GPU.adam


def _typed(dtype, value):
    """A host scalar as a NumPy scalar of the kernel's dtype (numba then types it so)."""
    return np.dtype(dtype).type(value)


# ------------------------------------------------------------------ bias + activation


@cuda.jit
def _bias_act_kernel(x, bias, out, code, slope):
    cols = x.shape[1]
    for i in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        out[row, col] = _activation(code, x[row, col] + bias[col], slope)


@cuda.jit
def _act_kernel(x, out, code, slope):
    # f alone (the bias already added, e.g. by the matrix product): no bias argument,
    # since each array argument costs host time at every launch.
    cols = x.shape[1]
    for i in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        out[row, col] = _activation(code, x[row, col], slope)


@functools.lru_cache(maxsize=None)
def bias_act_backward_kernel(want_bias_grad: bool, dtype: np.dtype):
    element, zero = numba.from_dtype(dtype), dtype.type(0)

    @cuda.jit
    def bias_act_grad_columns(grad_out, saved, grad_in, grad_bias, code, slope, from_output, single_block,
                              accumulate):
        # (RED_X, RED_Y) blocks: a warp spans 32 columns of one row (coalesced), and
        # each thread walks down its column, so the column sums come for free.
        cache = cuda.shared.array((RED_Y, RED_X), element)
        col = cuda.blockIdx.x * RED_X + cuda.threadIdx.x
        first = cuda.blockIdx.y * ROWS_PER_BLOCK
        last = first + ROWS_PER_BLOCK  # an if, not min(): see cuda_reduce
        if last > grad_out.shape[0]:
            last = grad_out.shape[0]
        partial = zero
        if col < grad_out.shape[1]:
            for row in range(first + cuda.threadIdx.y, last, RED_Y):
                g = _bias_act_backward(code, grad_out[row, col], saved[row, col], slope, from_output)
                grad_in[row, col] = g
                partial += g
        if want_bias_grad:
            total = block_sum_over_y(cache, partial)
            if cuda.threadIdx.y == 0 and col < grad_out.shape[1]:
                store_total(grad_bias, col, total, single_block, accumulate)

    return bias_act_grad_columns


def _rows(stage: HostStaging, name: str, a, written: bool = False):
    """Device view of a batch-shaped array as 2-D (a 1-D array becomes one row)."""
    a = stage(a, written)
    if a.ndim == 1:
        return a.reshape(1, a.shape[0])
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {tuple(a.shape)}")
    return a


def _vector(stage: HostStaging, name: str, a, length: int, written: bool = False):
    a = stage(a, written)
    if tuple(a.shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(a.shape)}")
    return a


def _same_shape(**arrays) -> None:
    shapes = {name: tuple(a.shape) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shapes differ: {shapes}")


def bias_act_forward(x, bias, out, act="relu", slope: float = 0.01, *, stream=0):
    """out = f(x + bias), bias (N,) broadcast over the rows of x (M, N).

    ``bias=None`` applies f alone (e.g. after ``matmul(..., bias=b)``); ``act`` is a
    name or code from ``formulas.ACTIVATIONS``; ``slope`` is leaky relu's.
    ``out`` may be ``x`` itself.
    """
    code = formulas.activation_code(act)
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_x, d_out = _rows(stage, "x", x), _rows(stage, "out", out, written=True)
    _same_shape(x=d_x, out=d_out)
    slope = _typed(d_out.dtype, slope)
    if bias is None:
        launch(_act_kernel, grid_1d(d_x.size), THREADS_1D, stream, d_x, d_out, code, slope)
    else:
        d_bias = _vector(stage, "bias", bias, d_x.shape[1])
        launch(_bias_act_kernel, grid_1d(d_x.size), THREADS_1D, stream, d_x, d_bias, d_out, code, slope)
    stage.finish()
    return out


def bias_act_backward(grad_out, saved, grad_in, act="relu", slope: float = 0.01, *,
                      grad_bias=None, from_output: bool = True, accumulate_bias: bool = False,
                      stream=0):
    """grad_in = grad_out * f'(.), and optionally grad_bias = column sums of grad_in.

    ``saved`` is the layer OUTPUT y = f(x + b) when ``from_output`` (the default; see
    the derivative table in formulas.py), else the pre-activation x + b.
    ``grad_bias`` (N,) receives the bias gradient in the same pass (``+=`` with
    ``accumulate_bias``: pass a zeroed ``grad_bias`` with ``accumulate_bias=True`` to
    save the zero-fill launch that several row blocks would otherwise need).
    ``grad_in`` may be ``grad_out`` itself.
    """
    code = formulas.activation_code(act)
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_grad_out, d_saved = _rows(stage, "grad_out", grad_out), _rows(stage, "saved", saved)
    d_grad_in = _rows(stage, "grad_in", grad_in, written=True)
    _same_shape(grad_out=d_grad_out, saved=d_saved, grad_in=d_grad_in)
    rows, cols = d_grad_out.shape
    grid = column_grid(rows, cols)
    single = grid[1] == 1
    d_grad_bias = None
    if grad_bias is not None:
        d_grad_bias = _vector(stage, "grad_bias", grad_bias, cols, written=True)
        prepare_atomic_output(d_grad_bias, single, accumulate_bias, stream)
    if cols:
        dtype = np.dtype(d_grad_in.dtype)
        launch(bias_act_backward_kernel(d_grad_bias is not None, dtype), grid, (RED_X, RED_Y), stream,
               d_grad_out, d_saved, d_grad_in, d_grad_bias if d_grad_bias is not None else d_grad_in,
               code, _typed(dtype, slope), bool(from_output), single, bool(accumulate_bias))
    stage.finish()
    return grad_in


# --------------------------------------------------------------- reparameterisation


@cuda.jit
def _reparam_forward_kernel(mu, logvar, eps, z):
    cols = mu.shape[1]
    for i in range(cuda.grid(1), mu.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        z[row, col] = _reparam(mu[row, col], logvar[row, col], eps[row, col])


@cuda.jit
def _reparam_backward_kernel(grad_z, logvar, eps, grad_mu, grad_logvar):
    cols = grad_z.shape[1]
    for i in range(cuda.grid(1), grad_z.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        g = grad_z[row, col]
        grad_logvar[row, col] = _reparam_grad_logvar(g, logvar[row, col], eps[row, col])
        grad_mu[row, col] = g


@cuda.jit
def _reparam_grad_logvar_kernel(grad_z, logvar, eps, grad_logvar):
    cols = grad_z.shape[1]
    for i in range(cuda.grid(1), grad_z.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        grad_logvar[row, col] = _reparam_grad_logvar(grad_z[row, col], logvar[row, col], eps[row, col])


def reparam_forward(mu, logvar, eps, z, *, stream=0):
    """z = mu + exp(logvar / 2) * eps, elementwise (eps ~ N(0, 1) drawn by the caller)."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    args = [_rows(stage, "mu", mu), _rows(stage, "logvar", logvar), _rows(stage, "eps", eps),
            _rows(stage, "z", z, written=True)]
    _same_shape(mu=args[0], logvar=args[1], eps=args[2], z=args[3])
    launch(_reparam_forward_kernel, grid_1d(args[0].size), THREADS_1D, stream, *args)
    stage.finish()
    return z


def reparam_backward(grad_z, logvar, eps, grad_mu, grad_logvar, *, stream=0):
    """grad_mu = grad_z;  grad_logvar = grad_z * 0.5 * exp(logvar / 2) * eps.

    ``grad_mu=None`` writes only grad_logvar (the engine passes grad_z itself on as
    mu's gradient, so the copy would be wasted memory traffic). Returns grad_logvar.
    """
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    arrays = dict(grad_z=_rows(stage, "grad_z", grad_z), logvar=_rows(stage, "logvar", logvar),
                  eps=_rows(stage, "eps", eps))
    if grad_mu is not None:
        arrays["grad_mu"] = _rows(stage, "grad_mu", grad_mu, written=True)
    arrays["grad_logvar"] = _rows(stage, "grad_logvar", grad_logvar, written=True)
    _same_shape(**arrays)
    kernel = _reparam_backward_kernel if grad_mu is not None else _reparam_grad_logvar_kernel
    launch(kernel, grid_1d(arrays["grad_z"].size), THREADS_1D, stream, *arrays.values())
    stage.finish()
    return grad_logvar


# --------------------------------------------------------------------- Gaussian KL


@functools.lru_cache(maxsize=None)
def _row_sums_kernel(term, dtype: np.dtype, name: str):
    """out[r] = Σ_c term(a[r, c], b[r, c]): one row per threadIdx.y, its columns shared by
    the 32 x-threads (coalesced reads); no atomics, no zeroing, no per-element values
    stored. ``term`` is a device formula (the Gaussian KL of one coordinate, the BCE of
    one pixel)."""
    element, zero = numba.from_dtype(dtype), dtype.type(0)

    def row_sums(a, b, out):
        cache = cuda.shared.array((RED_Y, RED_X), element)
        row = cuda.blockIdx.x * RED_Y + cuda.threadIdx.y
        partial = zero
        if row < a.shape[0]:
            for col in range(cuda.threadIdx.x, a.shape[1], RED_X):
                partial += term(a[row, col], b[row, col])
        total = block_sum_over_x(cache, partial)
        if cuda.threadIdx.x == 0 and row < a.shape[0]:
            out[row] = total

    row_sums.__name__ = row_sums.__qualname__ = name  # how profilers and the PTX record name it
    return cuda.jit(row_sums)


def kl_rows_kernel(dtype: np.dtype):
    """Per-row KL(N(mu, e^logvar) ‖ N(0, I)) of (rows, latent) arrays."""
    return _row_sums_kernel(_gaussian_kl, dtype, "kl_rows")


@cuda.jit
def _kl_backward_kernel(mu, logvar, grad_rows, scale, grad_mu, grad_logvar):
    cols = mu.shape[1]
    for i in range(cuda.grid(1), mu.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        g = scale * grad_rows[row]
        grad_mu[row, col] = _gaussian_kl_grad_mu(g, mu[row, col])
        grad_logvar[row, col] = _gaussian_kl_grad_logvar(g, logvar[row, col])


def _launch_row_sums(kernel_for, names: tuple[str, str], a, b, out, stream):
    """Stage (rows, cols) arrays ``a`` and ``b`` and an output of one value per row, and
    launch a row-sum kernel from ``_row_sums_kernel`` on them (one row per threadIdx.y)."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_a, d_b = _rows(stage, names[0], a), _rows(stage, names[1], b)
    _same_shape(**{names[0]: d_a, names[1]: d_b})
    d_out = _vector(stage, "out", out, d_a.shape[0], written=True)
    blocks = max(1, -(-d_a.shape[0] // RED_Y))
    launch(kernel_for(np.dtype(d_out.dtype)), blocks, (RED_X, RED_Y), stream, d_a, d_b, d_out)
    stage.finish()
    return out


def kl_forward(mu, logvar, out, *, stream=0):
    """out[i] = sum_j 0.5 * (exp(lv_ij) + mu_ij^2 - 1 - lv_ij): KL(q(z|x_i) || N(0, I)) per row."""
    return _launch_row_sums(kl_rows_kernel, ("mu", "logvar"), mu, logvar, out, stream)


def kl_backward(mu, logvar, grad_rows, grad_mu, grad_logvar, *, scale: float = 1.0, stream=0):
    """Backward of kl_forward, given the gradient of the loss w.r.t. each row's KL:

        g_i = scale * grad_rows[i];  grad_mu = g_i * mu;  grad_logvar = g_i * 0.5 * (exp(lv) - 1)
    """
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_mu, d_logvar = _rows(stage, "mu", mu), _rows(stage, "logvar", logvar)
    d_grad_mu = _rows(stage, "grad_mu", grad_mu, written=True)
    d_grad_logvar = _rows(stage, "grad_logvar", grad_logvar, written=True)
    _same_shape(mu=d_mu, logvar=d_logvar, grad_mu=d_grad_mu, grad_logvar=d_grad_logvar)
    d_grad_rows = _vector(stage, "grad_rows", grad_rows, d_mu.shape[0])
    launch(_kl_backward_kernel, grid_1d(d_mu.size), THREADS_1D, stream,
           d_mu, d_logvar, d_grad_rows, _typed(d_grad_mu.dtype, scale), d_grad_mu, d_grad_logvar)
    stage.finish()
    return grad_mu


# ------------------------------------------------------------ BCE with logits


@cuda.jit
def _bce_kernel(logits, target, out):
    cols = logits.shape[1]
    for i in range(cuda.grid(1), logits.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        out[row, col] = _bce(logits[row, col], target[row, col])


@functools.lru_cache(maxsize=None)
def bce_sum_kernel(dtype: np.dtype):
    element, zero = numba.from_dtype(dtype), dtype.type(0)

    @cuda.jit
    def bce_sum(logits, target, out, single_block, accumulate):
        cache = cuda.shared.array(THREADS_1D, element)
        cols = logits.shape[1]
        partial = zero
        for i in range(cuda.grid(1), logits.shape[0] * cols, cuda.gridsize(1)):
            row = i // cols
            col = i - row * cols
            partial += _bce(logits[row, col], target[row, col])
        total = block_sum_1d(cache, partial)
        if cuda.threadIdx.x == 0:
            store_total(out, 0, total, single_block, accumulate)

    return bce_sum


def bce_row_sums_kernel(dtype: np.dtype):
    """Per-row sums of the BCE with logits (the values themselves are never stored)."""
    return _row_sums_kernel(_bce, dtype, "bce_row_sums")


#: how bce_logits_backward gets its upstream gradient g
_GRAD_SCALE, _GRAD_FULL, _GRAD_ROWS = 0, 1, 2


@functools.lru_cache(maxsize=None)
def bce_backward_kernel(mode: int):
    @cuda.jit
    def bce_grad_rows(logits, target, grad, scale, grad_in):
        cols = logits.shape[1]
        for i in range(cuda.grid(1), logits.shape[0] * cols, cuda.gridsize(1)):
            row = i // cols
            col = i - row * cols
            if mode == _GRAD_FULL:
                g = scale * grad[row, col]
            elif mode == _GRAD_ROWS:
                g = scale * grad[row]
            else:
                g = scale
            grad_in[row, col] = _bce_grad(g, logits[row, col], target[row, col])

    return bce_grad_rows


def bce_logits_forward(logits, target, out, *, stream=0):
    """out = max(l, 0) - l * x + log1p(exp(-|l|)) elementwise (BCE of x under sigmoid(l))."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_logits, d_target = _rows(stage, "logits", logits), _rows(stage, "target", target)
    d_out = _rows(stage, "out", out, written=True)
    _same_shape(logits=d_logits, target=d_target, out=d_out)
    launch(_bce_kernel, grid_1d(d_logits.size), THREADS_1D, stream, d_logits, d_target, d_out)
    stage.finish()
    return out


def bce_logits_sum(logits, target, out, *, accumulate: bool = False, stream=0):
    """out[0] = sum over all elements of the BCE above (out has shape (1,)), fused:
    the per-element losses are never stored."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_logits, d_target = _rows(stage, "logits", logits), _rows(stage, "target", target)
    _same_shape(logits=d_logits, target=d_target)
    d_out = _vector(stage, "out", out, 1, written=True)
    blocks = grid_1d(d_logits.size)
    single = blocks == 1
    prepare_atomic_output(d_out, single, accumulate, stream)
    launch(bce_sum_kernel(np.dtype(d_out.dtype)), blocks, THREADS_1D, stream,
           d_logits, d_target, d_out, single, bool(accumulate))
    stage.finish()
    return out


def bce_logits_row_sums(logits, target, out, *, stream=0):
    """out[i] = sum over the columns of row i of the BCE above (out has shape (rows,)),
    fused: the per-element losses are never stored."""
    return _launch_row_sums(bce_row_sums_kernel, ("logits", "target"), logits, target, out, stream)


def bce_logits_backward(logits, target, grad_in, *, scale: float = 1.0, grad_out=None, grad_rows=None,
                        stream=0):
    """grad_in = scale * g * (sigmoid(l) - x), where g is ``grad_out`` (same shape as the
    logits), or ``grad_rows[i]`` for every element of row i (the gradient of row sums),
    or 1 when neither is given (the gradient of ``bce_logits_sum``; pass scale=1/M for
    a batch mean). ``grad_out`` may be a strided or broadcast view."""
    if grad_out is not None and grad_rows is not None:
        raise ValueError("bce_logits_backward: pass grad_out or grad_rows, not both")
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_logits, d_target = _rows(stage, "logits", logits), _rows(stage, "target", target)
    d_grad_in = _rows(stage, "grad_in", grad_in, written=True)
    _same_shape(logits=d_logits, target=d_target, grad_in=d_grad_in)
    mode, d_grad = _GRAD_SCALE, d_logits
    if grad_out is not None:
        mode, d_grad = _GRAD_FULL, _rows(stage, "grad_out", grad_out)
        _same_shape(logits=d_logits, grad_out=d_grad)
    elif grad_rows is not None:
        mode, d_grad = _GRAD_ROWS, _vector(stage, "grad_rows", grad_rows, d_logits.shape[0])
    launch(bce_backward_kernel(mode), grid_1d(d_logits.size), THREADS_1D, stream,
           d_logits, d_target, d_grad, _typed(d_grad_in.dtype, scale), d_grad_in)
    stage.finish()
    return grad_in


# -------------------------------------------------------------------------- Adam


@cuda.jit
def _adam_kernel(param, grad, m, v, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, bias_corr1, bias_corr2,
                 weight_decay, decoupled):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p, m_new, v_new = _adam(param[i], grad[i], m[i], v[i], lr, beta1, beta2, one_minus_beta1, one_minus_beta2,
                                eps, bias_corr1, bias_corr2, weight_decay, decoupled)
        param[i] = p
        m[i] = m_new
        v[i] = v_new


@cuda.jit
def _adam_rows_kernel(param, grad, m, v, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, bias_corr1,
                      bias_corr2, weight_decay, decoupled):
    # The same update for a 2-D parameter (a weight matrix), so that it needs no 1-D view.
    cols = param.shape[1]
    for i in range(cuda.grid(1), param.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        p, m_new, v_new = _adam(param[row, col], grad[row, col], m[row, col], v[row, col], lr, beta1, beta2,
                                one_minus_beta1, one_minus_beta2, eps, bias_corr1, bias_corr2, weight_decay, decoupled)
        param[row, col] = p
        m[row, col] = m_new
        v[row, col] = v_new


def adam_update(param, grad, m, v, lr: float, beta1: float, beta2: float, eps: float, step: int,
                weight_decay: float = 0.0, *, decoupled: bool = True, stream=0):
    """One Adam step in place on param, m, v (all one shape, C-contiguous).

    ``step`` is the 1-based step count t used in the bias corrections 1 - beta^t.
    ``decoupled=True`` is AdamW (p -= lr * wd * p); ``False`` adds wd * p to the
    gradient (classic L2). See ``formulas.adam``. The scalars are converted to the
    parameter's dtype on the host (float32 math in a float32 kernel).
    """
    if step < 1:
        raise ValueError("step counts from 1")
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    arrays = dict(param=stage(param, True), grad=stage(grad), m=stage(m, True), v=stage(v, True))
    for name, a in arrays.items():
        require_c_contiguous(name, a)
    _same_shape(**arrays)
    if arrays["param"].ndim == 2:  # a weight matrix: no reshaped views to make (host time)
        kernel, (d_param, d_grad, d_m, d_v) = _adam_rows_kernel, arrays.values()
    else:
        kernel, (d_param, d_grad, d_m, d_v) = _adam_kernel, (flat(a) for a in arrays.values())
    t = np.dtype(d_param.dtype).type
    launch(kernel, grid_1d(d_param.size), THREADS_1D, stream,
           d_param, d_grad, d_m, d_v, t(lr), t(beta1), t(beta2), t(1.0 - beta1), t(1.0 - beta2), t(eps),
           t(1.0 - beta1**step), t(1.0 - beta2**step), t(weight_decay), bool(decoupled))
    stage.finish()
    return param


def ptx_variants(dtype: np.dtype) -> list[tuple[object, str, tuple]]:
    """Every kernel this module launches, for ``dtype`` and C-contiguous arrays (the
    provider's layout): (kernel, flags, argument types) rows, the registry that
    ``kernels/cuda_ptx.py`` compiles to PTX without a GPU."""
    f = numba.from_dtype(dtype)
    m1, m2 = f[::1], f[:, ::1]
    code, flag = numba.int64, numba.boolean
    rows = [(_bias_act_kernel, "", (m2, m1, m2, code, f)), (_act_kernel, "", (m2, m2, code, f))]
    for want in (False, True):
        rows.append((bias_act_backward_kernel(want, dtype), f"bias_grad={want:d}",
                     (m2, m2, m2, m1 if want else m2, code, f, flag, flag, flag)))
    rows += [
        (_reparam_forward_kernel, "", (m2, m2, m2, m2)),
        (_reparam_backward_kernel, "", (m2, m2, m2, m2, m2)),
        (_reparam_grad_logvar_kernel, "", (m2, m2, m2, m2)),
        (kl_rows_kernel(dtype), "", (m2, m2, m1)),
        (_kl_backward_kernel, "", (m2, m2, m1, f, m2, m2)),
        (_bce_kernel, "", (m2, m2, m2)),
        (bce_sum_kernel(dtype), "", (m2, m2, m1, flag, flag)),
        (bce_row_sums_kernel(dtype), "", (m2, m2, m1)),
    ]
    for mode, grad in ((_GRAD_SCALE, m2), (_GRAD_FULL, m2), (_GRAD_ROWS, m1)):
        rows.append((bce_backward_kernel(mode), f"grad_mode={mode}", (m2, m2, grad, f, m2)))
    rows += [
        (_adam_kernel, "", (m1, m1, m1, m1, f, f, f, f, f, f, f, f, f, flag)),
        (_adam_rows_kernel, "", (m2, m2, m2, m2, f, f, f, f, f, f, f, f, f, flag)),
    ]
    return rows
