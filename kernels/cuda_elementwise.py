"""Fused elementwise CUDA kernels of a VAE, one launch each, built from formulas.py.

Each kernel reads its inputs once and writes its outputs once; the math per element
is a device-compiled formula from ``formulas.GPU``, never re-typed here. The
batch-shaped ops take 2-D (rows, features) C-contiguous arrays (a 1-D array is
treated as one row); Adam takes any shape.

Arithmetic runs in float64 registers (the formulas use float64 constants and the
scalars come from Python) and is stored at the arrays' dtype; these kernels are
bound by memory traffic, not arithmetic.

All functions launch asynchronously on ``stream`` (see ``cuda_launch.cuda_stream``)
and return their main output.
"""

from __future__ import annotations

import functools

import numba
from numba import cuda

from . import formulas
from .cuda_launch import THREADS_1D, HostStaging, cuda_stream, flat, grid_1d, require_c_contiguous
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


# ------------------------------------------------------------------ bias + activation


@functools.lru_cache(maxsize=None)
def _bias_act_forward_kernel(has_bias: bool):
    @cuda.jit
    def kernel(x, bias, out, code, slope):
        cols = x.shape[1]
        for i in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
            row = i // cols
            col = i - row * cols
            value = x[row, col]
            if has_bias:
                value += bias[col]
            out[row, col] = _activation(code, value, slope)

    return kernel


@functools.lru_cache(maxsize=None)
def _bias_act_backward_kernel(want_bias_grad: bool):
    @cuda.jit
    def kernel(grad_out, saved, grad_in, grad_bias, code, slope, from_output, single_block, accumulate):
        # (RED_X, RED_Y) blocks: a warp spans 32 columns of one row (coalesced), and
        # each thread walks down its column, so the column sums come for free.
        cache = cuda.shared.array((RED_Y, RED_X), numba.float64)
        col = cuda.blockIdx.x * RED_X + cuda.threadIdx.x
        first = cuda.blockIdx.y * ROWS_PER_BLOCK
        last = first + ROWS_PER_BLOCK  # an if, not min(): see cuda_reduce
        if last > grad_out.shape[0]:
            last = grad_out.shape[0]
        partial = 0.0
        if col < grad_out.shape[1]:
            for row in range(first + cuda.threadIdx.y, last, RED_Y):
                g = _bias_act_backward(code, grad_out[row, col], saved[row, col], slope, from_output)
                grad_in[row, col] = g
                partial += g
        if want_bias_grad:
            total = block_sum_over_y(cache, partial)
            if cuda.threadIdx.y == 0 and col < grad_out.shape[1]:
                store_total(grad_bias, col, total, single_block, accumulate)

    return kernel


def _rows(stage: HostStaging, name: str, a, written: bool = False):
    """Device view of a batch-shaped array as 2-D (a 1-D array becomes one row)."""
    a = stage(a, written)
    require_c_contiguous(name, a)
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
    d_bias = None if bias is None else _vector(stage, "bias", bias, d_x.shape[1])
    kernel = _bias_act_forward_kernel(d_bias is not None)
    kernel[grid_1d(d_x.size), THREADS_1D, stream](
        d_x, d_bias if d_bias is not None else d_x, d_out, code, float(slope)
    )
    stage.finish()
    return out


def bias_act_backward(grad_out, saved, grad_in, act="relu", slope: float = 0.01, *,
                      grad_bias=None, from_output: bool = True, accumulate_bias: bool = False,
                      stream=0):
    """grad_in = grad_out * f'(.), and optionally grad_bias = column sums of grad_in.

    ``saved`` is the layer OUTPUT y = f(x + b) when ``from_output`` (the default; see
    the derivative table in formulas.py), else the pre-activation x + b.
    ``grad_bias`` (N,) receives the bias gradient in the same pass (``+=`` with
    ``accumulate_bias``). ``grad_in`` may be ``grad_out`` itself.
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
        kernel = _bias_act_backward_kernel(d_grad_bias is not None)
        kernel[grid, (RED_X, RED_Y), stream](
            d_grad_out, d_saved, d_grad_in, d_grad_bias if d_grad_bias is not None else d_grad_in,
            code, float(slope), bool(from_output), single, bool(accumulate_bias),
        )
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


def reparam_forward(mu, logvar, eps, z, *, stream=0):
    """z = mu + exp(logvar / 2) * eps, elementwise (eps ~ N(0, 1) drawn by the caller)."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    args = [_rows(stage, "mu", mu), _rows(stage, "logvar", logvar), _rows(stage, "eps", eps),
            _rows(stage, "z", z, written=True)]
    _same_shape(mu=args[0], logvar=args[1], eps=args[2], z=args[3])
    _reparam_forward_kernel[grid_1d(args[0].size), THREADS_1D, stream](*args)
    stage.finish()
    return z


def reparam_backward(grad_z, logvar, eps, grad_mu, grad_logvar, *, stream=0):
    """grad_mu = grad_z;  grad_logvar = grad_z * 0.5 * exp(logvar / 2) * eps."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    arrays = dict(grad_z=_rows(stage, "grad_z", grad_z), logvar=_rows(stage, "logvar", logvar),
                  eps=_rows(stage, "eps", eps), grad_mu=_rows(stage, "grad_mu", grad_mu, written=True),
                  grad_logvar=_rows(stage, "grad_logvar", grad_logvar, written=True))
    _same_shape(**arrays)
    _reparam_backward_kernel[grid_1d(arrays["grad_z"].size), THREADS_1D, stream](*arrays.values())
    stage.finish()
    return grad_mu


# --------------------------------------------------------------------- Gaussian KL


@cuda.jit
def _kl_rows_kernel(mu, logvar, out):
    # (RED_X, RED_Y) blocks: threadIdx.y picks a row, the 32 x-threads share its columns.
    cache = cuda.shared.array((RED_Y, RED_X), numba.float64)
    row = cuda.blockIdx.x * RED_Y + cuda.threadIdx.y
    partial = 0.0
    if row < mu.shape[0]:
        for col in range(cuda.threadIdx.x, mu.shape[1], RED_X):
            partial += _gaussian_kl(mu[row, col], logvar[row, col])
    total = block_sum_over_x(cache, partial)
    if cuda.threadIdx.x == 0 and row < mu.shape[0]:
        out[row] = total


@cuda.jit
def _kl_backward_kernel(mu, logvar, grad_rows, scale, grad_mu, grad_logvar):
    cols = mu.shape[1]
    for i in range(cuda.grid(1), mu.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        g = scale * grad_rows[row]
        grad_mu[row, col] = _gaussian_kl_grad_mu(g, mu[row, col])
        grad_logvar[row, col] = _gaussian_kl_grad_logvar(g, logvar[row, col])


def kl_forward(mu, logvar, out, *, stream=0):
    """out[i] = sum_j 0.5 * (exp(lv_ij) + mu_ij^2 - 1 - lv_ij): KL(q(z|x_i) || N(0, I)) per row."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_mu, d_logvar = _rows(stage, "mu", mu), _rows(stage, "logvar", logvar)
    _same_shape(mu=d_mu, logvar=d_logvar)
    d_out = _vector(stage, "out", out, d_mu.shape[0], written=True)
    blocks = max(1, -(-d_mu.shape[0] // RED_Y))
    _kl_rows_kernel[blocks, (RED_X, RED_Y), stream](d_mu, d_logvar, d_out)
    stage.finish()
    return out


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
    _kl_backward_kernel[grid_1d(d_mu.size), THREADS_1D, stream](
        d_mu, d_logvar, d_grad_rows, float(scale), d_grad_mu, d_grad_logvar
    )
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


@cuda.jit
def _bce_sum_kernel(logits, target, out, single_block, accumulate):
    cache = cuda.shared.array(THREADS_1D, numba.float64)
    cols = logits.shape[1]
    partial = 0.0
    for i in range(cuda.grid(1), logits.shape[0] * cols, cuda.gridsize(1)):
        row = i // cols
        col = i - row * cols
        partial += _bce(logits[row, col], target[row, col])
    total = block_sum_1d(cache, partial)
    if cuda.threadIdx.x == 0:
        store_total(out, 0, total, single_block, accumulate)


@functools.lru_cache(maxsize=None)
def _bce_backward_kernel(has_grad_out: bool):
    @cuda.jit
    def kernel(logits, target, grad_out, scale, grad_in):
        cols = logits.shape[1]
        for i in range(cuda.grid(1), logits.shape[0] * cols, cuda.gridsize(1)):
            row = i // cols
            col = i - row * cols
            g = scale * grad_out[row, col] if has_grad_out else scale
            grad_in[row, col] = _bce_grad(g, logits[row, col], target[row, col])

    return kernel


def bce_logits_forward(logits, target, out, *, stream=0):
    """out = max(l, 0) - l * x + log1p(exp(-|l|)) elementwise (BCE of x under sigmoid(l))."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_logits, d_target = _rows(stage, "logits", logits), _rows(stage, "target", target)
    d_out = _rows(stage, "out", out, written=True)
    _same_shape(logits=d_logits, target=d_target, out=d_out)
    _bce_kernel[grid_1d(d_logits.size), THREADS_1D, stream](d_logits, d_target, d_out)
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
    _bce_sum_kernel[blocks, THREADS_1D, stream](d_logits, d_target, d_out, single, bool(accumulate))
    stage.finish()
    return out


def bce_logits_backward(logits, target, grad_in, *, scale: float = 1.0, grad_out=None, stream=0):
    """grad_in = scale * grad_out * (sigmoid(l) - x); ``grad_out=None`` means all ones
    (the gradient of ``bce_logits_sum``; pass scale=1/M for a batch mean)."""
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    d_logits, d_target = _rows(stage, "logits", logits), _rows(stage, "target", target)
    d_grad_in = _rows(stage, "grad_in", grad_in, written=True)
    _same_shape(logits=d_logits, target=d_target, grad_in=d_grad_in)
    d_grad_out = None
    if grad_out is not None:
        d_grad_out = _rows(stage, "grad_out", grad_out)
        _same_shape(logits=d_logits, grad_out=d_grad_out)
    kernel = _bce_backward_kernel(d_grad_out is not None)
    kernel[grid_1d(d_logits.size), THREADS_1D, stream](
        d_logits, d_target, d_grad_out if d_grad_out is not None else d_logits, float(scale), d_grad_in
    )
    stage.finish()
    return grad_in


# -------------------------------------------------------------------------- Adam


@cuda.jit
def _adam_kernel(param, grad, m, v, lr, beta1, beta2, eps, bias_corr1, bias_corr2, weight_decay, decoupled):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p, m_new, v_new = _adam(param[i], grad[i], m[i], v[i], lr, beta1, beta2, eps,
                                bias_corr1, bias_corr2, weight_decay, decoupled)
        param[i] = p
        m[i] = m_new
        v[i] = v_new


def adam_update(param, grad, m, v, lr: float, beta1: float, beta2: float, eps: float, step: int,
                weight_decay: float = 0.0, *, decoupled: bool = True, stream=0):
    """One Adam step in place on param, m, v (all one shape, C-contiguous).

    ``step`` is the 1-based step count t used in the bias corrections 1 - beta^t.
    ``decoupled=True`` is AdamW (p -= lr * wd * p); ``False`` adds wd * p to the
    gradient (classic L2). See ``formulas.adam``.
    """
    if step < 1:
        raise ValueError("step counts from 1")
    stream = cuda_stream(stream)
    stage = HostStaging(stream)
    arrays = dict(param=stage(param, True), grad=stage(grad), m=stage(m, True), v=stage(v, True))
    for name, a in arrays.items():
        require_c_contiguous(name, a)
    _same_shape(**arrays)
    d_param, d_grad, d_m, d_v = (flat(a) for a in arrays.values())
    _adam_kernel[grid_1d(d_param.shape[0]), THREADS_1D, stream](
        d_param, d_grad, d_m, d_v, float(lr), float(beta1), float(beta2), float(eps),
        1.0 - beta1**step, 1.0 - beta2**step, float(weight_decay), bool(decoupled),
    )
    stage.finish()
    return param
