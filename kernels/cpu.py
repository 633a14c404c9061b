"""Multi-threaded CPU versions of the fused ops, for NumPy arrays.

A NumPy expression such as ``np.maximum(x + b, 0)`` makes one temporary array per
operation and walks memory once per operation; here each op is one parallel loop
(``numba.njit(parallel=True)`` with ``prange`` over rows) that reads its inputs
once and writes its outputs once. The per-element math is ``formulas.CPU.*``: the
same Python functions the GPU kernels compile. Matrix products stay with NumPy
(BLAS); there is deliberately no CPU matmul here.

Every public function validates shapes in Python, then calls a compiled loop;
outputs are caller-provided buffers (returned for convenience). Batch-shaped
arrays are (rows, features), C-contiguous; 1-D arrays count as one row.
``fastmath`` stays off so results match NumPy to rounding (and NaNs propagate).
Compiled code is cached on disk (``cache=True``), so only the first run of a
process pays for compilation.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from . import formulas

_activation = formulas.CPU.activation
_bias_act_backward = formulas.CPU.bias_act_backward
_reparam = formulas.CPU.reparam
_reparam_grad_logvar = formulas.CPU.reparam_grad_logvar
_gaussian_kl = formulas.CPU.gaussian_kl
_gaussian_kl_grad_mu = formulas.CPU.gaussian_kl_grad_mu
_gaussian_kl_grad_logvar = formulas.CPU.gaussian_kl_grad_logvar
_bce = formulas.CPU.bce_with_logits
_bce_grad = formulas.CPU.bce_with_logits_grad
_adam = formulas.CPU.adam

_parallel = numba.njit(parallel=True, fastmath=False, error_model="numpy", cache=True)


# --------------------------------------------------------------------- compiled loops


@_parallel
def _bias_act_forward(x, bias, out, code, slope):
    rows, cols = x.shape
    for r in prange(rows):
        for c in range(cols):
            value = x[r, c]
            if bias is not None:
                value += bias[c]
            out[r, c] = _activation(code, value, slope)


@_parallel
def _chunk_column_sums(x, partial):
    """partial[k] = column sums of the k-th slab of rows (one slab per task), so the
    threads never write the same element; the caller adds the slabs up."""
    rows = x.shape[0]
    chunks = partial.shape[0]
    for k in prange(chunks):
        for r in range(k * rows // chunks, (k + 1) * rows // chunks):
            for c in range(x.shape[1]):
                partial[k, c] += x[r, c]


@_parallel
def _bias_act_backward_loop(grad_out, saved, grad_in, partial, code, slope, from_output):
    rows, cols = grad_out.shape
    chunks = partial.shape[0]
    for k in prange(chunks):
        for r in range(k * rows // chunks, (k + 1) * rows // chunks):
            for c in range(cols):
                g = _bias_act_backward(code, grad_out[r, c], saved[r, c], slope, from_output)
                grad_in[r, c] = g
                partial[k, c] += g


@_parallel
def _reparam_forward(mu, logvar, eps, z):
    for r in prange(mu.shape[0]):
        for c in range(mu.shape[1]):
            z[r, c] = _reparam(mu[r, c], logvar[r, c], eps[r, c])


@_parallel
def _reparam_backward(grad_z, logvar, eps, grad_mu, grad_logvar):
    for r in prange(grad_z.shape[0]):
        for c in range(grad_z.shape[1]):
            g = grad_z[r, c]
            grad_logvar[r, c] = _reparam_grad_logvar(g, logvar[r, c], eps[r, c])
            grad_mu[r, c] = g


@_parallel
def _kl_forward(mu, logvar, out):
    for r in prange(mu.shape[0]):
        total = 0.0
        for c in range(mu.shape[1]):
            total += _gaussian_kl(mu[r, c], logvar[r, c])
        out[r] = total


@_parallel
def _kl_backward(mu, logvar, grad_rows, scale, grad_mu, grad_logvar):
    for r in prange(mu.shape[0]):
        g = scale * grad_rows[r]
        for c in range(mu.shape[1]):
            grad_mu[r, c] = _gaussian_kl_grad_mu(g, mu[r, c])
            grad_logvar[r, c] = _gaussian_kl_grad_logvar(g, logvar[r, c])


@_parallel
def _bce_forward(logits, target, out):
    for r in prange(logits.shape[0]):
        for c in range(logits.shape[1]):
            out[r, c] = _bce(logits[r, c], target[r, c])


@_parallel
def _bce_sum(logits, target):
    # prange turns the scalar "+=" into a per-thread reduction, summed in float64
    total = 0.0
    for r in prange(logits.shape[0]):
        row_total = 0.0
        for c in range(logits.shape[1]):
            row_total += _bce(logits[r, c], target[r, c])
        total += row_total
    return total


@_parallel
def _bce_backward(logits, target, grad_out, scale, grad_in):
    for r in prange(logits.shape[0]):
        for c in range(logits.shape[1]):
            g = scale if grad_out is None else scale * grad_out[r, c]
            grad_in[r, c] = _bce_grad(g, logits[r, c], target[r, c])


@_parallel
def _total_sum(x):
    total = 0.0
    for i in prange(x.shape[0]):
        total += x[i]
    return total


@_parallel
def _adam_loop(param, grad, m, v, lr, beta1, beta2, eps, bias_corr1, bias_corr2, weight_decay, decoupled):
    for i in prange(param.shape[0]):
        p, m_new, v_new = _adam(param[i], grad[i], m[i], v[i], lr, beta1, beta2, eps,
                                bias_corr1, bias_corr2, weight_decay, decoupled)
        param[i] = p
        m[i] = m_new
        v[i] = v_new


# ------------------------------------------------- specialised loops for the training step
#
# The loops above choose the activation by a runtime code and call libm's scalar exp /
# log1p per element; LLVM cannot vectorise either, and NumPy's SIMD float32 exp and log1p
# are about 10x faster. The training step on the CPU (``minivae.accel_cpu``) therefore
# leaves transcendental functions to NumPy ufuncs and uses the loops below for what they
# are good at: one pass over memory with plain arithmetic, one compiled loop per
# activation (no runtime switch), serial (``prange`` costs more than it saves on these
# sizes on a small machine, and its thread pool fights BLAS's: see ``adam_update``).
# The formulas are the same as in ``formulas`` (written out here, in the loop bodies,
# so that the compiler sees straight-line arithmetic).

_serial = numba.njit(fastmath=False, error_model="numpy", cache=True)


@_serial
def _relu_backward_bias(grad_out, y, grad_in, grad_bias):
    """grad_in = grad_out * [y > 0];  grad_bias[c] = sum_r grad_in[r, c] (same pass)."""
    rows, cols = grad_out.shape
    for c in range(cols):
        grad_bias[c] = 0.0
    for r in range(rows):
        for c in range(cols):
            g = grad_out[r, c] if y[r, c] > 0.0 else 0.0 * grad_out[r, c]
            grad_in[r, c] = g
            grad_bias[c] += g


@_serial
def _bce_combine(logits, target, log1p_e, out):
    """out = max(l, 0) - l * x + log1p(e^-|l|), the last term given (from NumPy)."""
    rows, cols = logits.shape
    for r in range(rows):
        for c in range(cols):
            l = logits[r, c]
            out[r, c] = (l if l > 0.0 else 0.0 * l) - l * target[r, c] + log1p_e[r, c]


@_serial
def _bce_grad_rows(logits, target, e, grad_rows, grad_in):
    """grad_in = g_r * (sigmoid(l) - x), sigmoid(l) = (1 if l >= 0 else e) / (1 + e) with
    e = e^-|l| saved by the forward pass (no exp here); g_r = grad_rows[r] (one upstream
    value per row: the gradient of a row sum, or of a total sum when all are equal)."""
    rows, cols = logits.shape
    for r in range(rows):
        g = grad_rows[r]
        for c in range(cols):
            ec = e[r, c]
            s = (1.0 if logits[r, c] >= 0.0 else ec) / (1.0 + ec)
            grad_in[r, c] = g * (s - target[r, c])


@_serial
def _bce_grad_full(logits, target, e, grad_out, grad_in):
    """As _bce_grad_rows with one upstream value per element."""
    rows, cols = logits.shape
    for r in range(rows):
        for c in range(cols):
            ec = e[r, c]
            s = (1.0 if logits[r, c] >= 0.0 else ec) / (1.0 + ec)
            grad_in[r, c] = grad_out[r, c] * (s - target[r, c])


@_serial
def _adam_serial(param, grad, m, v, lr, beta1, beta2, eps, bias_corr1, bias_corr2, weight_decay, decoupled):
    for i in range(param.shape[0]):
        p, m_new, v_new = _adam(param[i], grad[i], m[i], v[i], lr, beta1, beta2, eps,
                                bias_corr1, bias_corr2, weight_decay, decoupled)
        param[i] = p
        m[i] = m_new
        v[i] = v_new


# ------------------------------------------------------------------------ helpers


def _rows(name: str, a: np.ndarray) -> np.ndarray:
    """The array as 2-D (rows, features) without copying; 1-D is one row."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if a.ndim == 1:
        return a.reshape(1, a.shape[0])
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {a.shape}")
    return a


def _same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shapes differ: {shapes}")


def _vector(name: str, a: np.ndarray, length: int) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.shape != (length,):
        raise ValueError(f"{name} must be a NumPy array of shape ({length},)")
    return a


def _row_chunks(rows: int) -> int:
    """Slabs for the column sums: a few per thread, never more than there are rows."""
    return max(1, min(rows, 4 * numba.get_num_threads()))


def _store_columns(partial: np.ndarray, out: np.ndarray, accumulate: bool) -> None:
    totals = partial.sum(axis=0)
    if accumulate:
        out += totals
    else:
        out[...] = totals


# ----------------------------------------------------------------------- public API


def bias_act_forward(x: np.ndarray, bias: np.ndarray | None, out: np.ndarray,
                     act: int | str = "relu", slope: float = 0.01) -> np.ndarray:
    """out = f(x + bias), bias (N,) broadcast over rows (None: no bias). out may be x."""
    x, out = _rows("x", x), _rows("out", out)
    _same_shape(x=x, out=out)
    if bias is not None:
        _vector("bias", bias, x.shape[1])
    _bias_act_forward(x, bias, out, formulas.activation_code(act), float(slope))
    return out


def bias_act_backward(grad_out: np.ndarray, saved: np.ndarray, grad_in: np.ndarray,
                      act: int | str = "relu", slope: float = 0.01, *,
                      grad_bias: np.ndarray | None = None, from_output: bool = True,
                      accumulate_bias: bool = False) -> np.ndarray:
    """grad_in = grad_out * f'(.) with ``saved`` = output y (from_output) or
    pre-activation; optionally grad_bias (N,) = column sums of grad_in (+= with
    accumulate_bias), in the same pass over memory."""
    grad_out, saved, grad_in = _rows("grad_out", grad_out), _rows("saved", saved), _rows("grad_in", grad_in)
    _same_shape(grad_out=grad_out, saved=saved, grad_in=grad_in)
    rows, cols = grad_out.shape
    partial = np.zeros((_row_chunks(rows), cols), dtype=np.float64)
    _bias_act_backward_loop(grad_out, saved, grad_in, partial, formulas.activation_code(act),
                       float(slope), bool(from_output))
    if grad_bias is not None:
        _store_columns(partial, _vector("grad_bias", grad_bias, cols), accumulate_bias)
    return grad_in


def column_sum(x: np.ndarray, out: np.ndarray, *, accumulate: bool = False) -> np.ndarray:
    """out[j] = sum_i x[i, j] (+= with accumulate), float64 partial sums."""
    x = _rows("x", x)
    _vector("out", out, x.shape[1])
    partial = np.zeros((_row_chunks(x.shape[0]), x.shape[1]), dtype=np.float64)
    _chunk_column_sums(x, partial)
    _store_columns(partial, out, accumulate)
    return out


def total_sum(x: np.ndarray) -> float:
    """Sum of all elements (any shape, C-contiguous), accumulated in float64."""
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous")
    return float(_total_sum(x.reshape(x.size)))


def reparam_forward(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray, z: np.ndarray) -> np.ndarray:
    """z = mu + exp(logvar / 2) * eps."""
    mu, logvar, eps, z = _rows("mu", mu), _rows("logvar", logvar), _rows("eps", eps), _rows("z", z)
    _same_shape(mu=mu, logvar=logvar, eps=eps, z=z)
    _reparam_forward(mu, logvar, eps, z)
    return z


def reparam_backward(grad_z: np.ndarray, logvar: np.ndarray, eps: np.ndarray,
                     grad_mu: np.ndarray, grad_logvar: np.ndarray) -> np.ndarray:
    """grad_mu = grad_z;  grad_logvar = grad_z * 0.5 * exp(logvar / 2) * eps."""
    arrays = dict(grad_z=grad_z, logvar=logvar, eps=eps, grad_mu=grad_mu, grad_logvar=grad_logvar)
    arrays = {name: _rows(name, a) for name, a in arrays.items()}
    _same_shape(**arrays)
    _reparam_backward(*arrays.values())
    return grad_mu


def kl_forward(mu: np.ndarray, logvar: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[i] = sum_j 0.5 * (exp(lv_ij) + mu_ij^2 - 1 - lv_ij), per row."""
    mu, logvar = _rows("mu", mu), _rows("logvar", logvar)
    _same_shape(mu=mu, logvar=logvar)
    _kl_forward(mu, logvar, _vector("out", out, mu.shape[0]))
    return out


def kl_backward(mu: np.ndarray, logvar: np.ndarray, grad_rows: np.ndarray,
                grad_mu: np.ndarray, grad_logvar: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """g_i = scale * grad_rows[i]; grad_mu = g_i * mu; grad_logvar = g_i * 0.5 * (exp(lv) - 1)."""
    arrays = dict(mu=mu, logvar=logvar, grad_mu=grad_mu, grad_logvar=grad_logvar)
    mu, logvar, grad_mu, grad_logvar = (_rows(name, a) for name, a in arrays.items())
    _same_shape(mu=mu, logvar=logvar, grad_mu=grad_mu, grad_logvar=grad_logvar)
    _kl_backward(mu, logvar, _vector("grad_rows", grad_rows, mu.shape[0]), float(scale), grad_mu, grad_logvar)
    return grad_mu


def bce_logits_forward(logits: np.ndarray, target: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = max(l, 0) - l * x + log1p(exp(-|l|)), elementwise."""
    logits, target, out = _rows("logits", logits), _rows("target", target), _rows("out", out)
    _same_shape(logits=logits, target=target, out=out)
    _bce_forward(logits, target, out)
    return out


def bce_logits_sum(logits: np.ndarray, target: np.ndarray) -> float:
    """Sum of the elementwise BCE above, without storing it (float64 accumulation)."""
    logits, target = _rows("logits", logits), _rows("target", target)
    _same_shape(logits=logits, target=target)
    return float(_bce_sum(logits, target))


def bce_logits_backward(logits: np.ndarray, target: np.ndarray, grad_in: np.ndarray, *,
                        scale: float = 1.0, grad_out: np.ndarray | None = None) -> np.ndarray:
    """grad_in = scale * grad_out * (sigmoid(l) - x); grad_out=None means ones."""
    logits, target, grad_in = _rows("logits", logits), _rows("target", target), _rows("grad_in", grad_in)
    _same_shape(logits=logits, target=target, grad_in=grad_in)
    if grad_out is not None:
        grad_out = _rows("grad_out", grad_out)
        _same_shape(logits=logits, grad_out=grad_out)
    _bce_backward(logits, target, grad_out, float(scale), grad_in)
    return grad_in


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                lr: float, beta1: float, beta2: float, eps: float, step: int,
                weight_decay: float = 0.0, *, decoupled: bool = True, parallel: bool = False) -> np.ndarray:
    """One Adam step in place on param, m, v (any one shape, C-contiguous); ``step`` is
    the 1-based t of the bias corrections; decoupled=True is AdamW, False is L2.

    Serial by default: the loop vectorises and is about 2x NumPy's chain of ufuncs.
    ``parallel=True`` uses the prange loop; on a small machine numba's thread pool then
    competes with BLAS's (measured on 2 cores, 784x400 weight: 2.2 ms per call instead
    of 0.19 ms, and the next matrix products 2x slower), so only ask for it on big ones."""
    arrays = dict(param=param, grad=grad, m=m, v=v)
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous NumPy array")
    _same_shape(**arrays)
    if step < 1:
        raise ValueError("step counts from 1")
    flat = [a.reshape(a.size) for a in arrays.values()]
    loop = _adam_loop if parallel else _adam_serial
    loop(*flat, float(lr), float(beta1), float(beta2), float(eps),
         1.0 - beta1**step, 1.0 - beta2**step, float(weight_decay), bool(decoupled))
    return param


# ------------------------------------------------- the training step's fused passes


def relu_backward_bias(grad_out: np.ndarray, y: np.ndarray, grad_in: np.ndarray,
                       grad_bias: np.ndarray) -> np.ndarray:
    """grad_in = grad_out * [y > 0] and grad_bias = its column sums, in one serial pass.

    ``y`` is the ReLU's output; (rows, features) C-contiguous arrays of one dtype.
    grad_in may be grad_out (in place). Column sums accumulate in the arrays' dtype,
    row after row, as ``grad_in.sum(axis=0)`` does in NumPy.
    """
    grad_out, y, grad_in = _rows("grad_out", grad_out), _rows("y", y), _rows("grad_in", grad_in)
    _same_shape(grad_out=grad_out, y=y, grad_in=grad_in)
    _relu_backward_bias(grad_out, y, grad_in, _vector("grad_bias", grad_bias, grad_out.shape[1]))
    return grad_in


def bce_logits_combine(logits: np.ndarray, target: np.ndarray, log1p_e: np.ndarray,
                       out: np.ndarray) -> np.ndarray:
    """out = max(l, 0) - l * x + log1p_e, where log1p_e = log1p(e^-|l|) was computed by the
    caller (NumPy's vectorised exp and log1p). out may be log1p_e."""
    arrays = dict(logits=logits, target=target, log1p_e=log1p_e, out=out)
    arrays = {name: _rows(name, a) for name, a in arrays.items()}
    _same_shape(**arrays)
    _bce_combine(*arrays.values())
    return out


def bce_logits_backward_saved(logits: np.ndarray, target: np.ndarray, e: np.ndarray, grad_in: np.ndarray,
                              *, grad_rows: np.ndarray | None = None,
                              grad_out: np.ndarray | None = None) -> np.ndarray:
    """grad_in = g * (sigmoid(l) - x) from e = e^-|l| saved by the forward pass.

    g is ``grad_rows[r]`` (one value per row, shape (rows,)) or ``grad_out`` (full shape).
    """
    logits, target, e, grad_in = (_rows(n, a) for n, a in
                                  (("logits", logits), ("target", target), ("e", e), ("grad_in", grad_in)))
    _same_shape(logits=logits, target=target, e=e, grad_in=grad_in)
    if (grad_rows is None) == (grad_out is None):
        raise ValueError("pass exactly one of grad_rows and grad_out")
    if grad_rows is not None:
        _bce_grad_rows(logits, target, e, _vector("grad_rows", grad_rows, logits.shape[0]), grad_in)
    else:
        grad_out = _rows("grad_out", grad_out)
        _same_shape(logits=logits, grad_out=grad_out)
        _bce_grad_full(logits, target, e, grad_out, grad_in)
    return grad_in
