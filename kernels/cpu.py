"""Compiled CPU loops for the passes of a training step that NumPy would split in several.

The CPU provider (``minivae/providers/cpu.py``) leaves matrix products to BLAS and
exp / log1p to NumPy's SIMD ufuncs (about 10x faster in float32 than the scalar libm
calls a compiled loop makes). What is left for these loops is plain arithmetic over
memory that NumPy would do in several passes with temporaries: the ReLU backward with
its bias gradient, the BCE's combination and gradient from the saved e^-|l|, Adam.

The per-element math is ``formulas.CPU.*``: the same Python functions the CUDA
kernels compile, so each formula is written once (in ``kernels/formulas.py``).
Each loop is serial and compiled ``nogil``; large arrays are cut into row pieces that
``kernels.threads`` shares among threads (numba's own parallel loops were measured to
fight OpenBLAS's threads on 2 cores: a 784x400 Adam update took 2.2 ms in parallel
instead of 0.19 ms serial, and the next matrix products ran 2x slower).

Every public function checks shapes in Python, then calls a compiled loop; outputs are
caller-provided buffers (returned for convenience). Arrays are (rows, features),
C-contiguous; 1-D arrays count as one row. ``fastmath`` stays off so results match
NumPy to rounding (and NaNs propagate). Compiled code is cached on disk
(``cache=True``), so only the first run of a process pays for compilation.
"""

from __future__ import annotations

import numba
import numpy as np

from . import formulas
from . import threads
from .threads import on_rows, piece_bounds, run_pieces

_relu = formulas.CPU.relu
_activation_grad = formulas.CPU.activation_grad
_sigmoid_from_saved = formulas.CPU.sigmoid_from_saved
_bce_from_log1p = formulas.CPU.bce_from_log1p
_adam = formulas.CPU.adam
_flush_subnormal = formulas.CPU.flush_subnormal

_serial = numba.njit(fastmath=False, error_model="numpy", cache=True, nogil=True)


# --------------------------------------------------------------------- compiled loops


@_serial
def _relu_backward_bias(grad_out, y, grad_in, grad_bias):
    """grad_in = grad_out * relu'(y);  grad_bias[c] = sum_r grad_in[r, c] (same pass)."""
    rows, cols = grad_out.shape
    for c in range(cols):
        grad_bias[c] = 0.0
    for r in range(rows):
        for c in range(cols):
            g = grad_out[r, c] * _activation_grad(formulas.RELU, y[r, c], 0.0)
            grad_in[r, c] = g
            grad_bias[c] += g


@_serial
def _relu_backward(grad_out, y, grad_in):
    """grad_in = grad_out * relu'(y) (no bias gradient: a separate ReLU node)."""
    rows, cols = grad_out.shape
    for r in range(rows):
        for c in range(cols):
            grad_in[r, c] = grad_out[r, c] * _activation_grad(formulas.RELU, y[r, c], 0.0)


# The BCE passes write into an array they also read, given as ONE argument: when two
# arguments alias the same buffer, the compiled loop detects the overlap at run time and
# takes its scalar path, measured 4-6x slower than the SIMD one.


@_serial
def _bce_combine_inplace(logits, target, values):
    """values = max(l, 0) - l * x + values, values holding log1p(e^-|l|) on entry."""
    rows, cols = logits.shape
    for r in range(rows):
        for c in range(cols):
            values[r, c] = _bce_from_log1p(logits[r, c], target[r, c], values[r, c])


@_serial
def _bce_grad_rows_inplace(logits, target, e, grad_rows):
    """e = g_r * (sigmoid(l) - x), reading e = e^-|l| element by element before overwriting it."""
    rows, cols = logits.shape
    for r in range(rows):
        g = grad_rows[r]
        for c in range(cols):
            e[r, c] = g * (_sigmoid_from_saved(logits[r, c], e[r, c]) - target[r, c])


@_serial
def _bce_grad_full_inplace(logits, target, e, grad_out):
    rows, cols = logits.shape
    for r in range(rows):
        for c in range(cols):
            e[r, c] = grad_out[r, c] * (_sigmoid_from_saved(logits[r, c], e[r, c]) - target[r, c])


@_serial
def _adam_loop(param, grad, m, v, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, bias_corr1, bias_corr2,
               weight_decay, decoupled, tiny):
    for i in range(param.shape[0]):
        p, m_new, v_new = _adam(param[i], grad[i], m[i], v[i], lr, beta1, beta2, one_minus_beta1, one_minus_beta2,
                                eps, bias_corr1, bias_corr2, weight_decay, decoupled)
        param[i] = p
        m[i] = _flush_subnormal(m_new, tiny)  # no state stuck on a slow subnormal (formulas.py)
        v[i] = _flush_subnormal(v_new, tiny)


# The optimizers over a whole model in one call ("foreach"): tuples of 1-D arrays, one per
# parameter, seen as one long vector of which this call updates elements [lo, hi).


@_serial
def _adam_foreach(params, grads, ms, vs, lo, hi, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                  bias_corr1, bias_corr2, weight_decay, tiny):
    offset = 0
    for k in range(len(params)):
        n = params[k].shape[0]
        a, b = max(lo - offset, 0), min(hi - offset, n)
        if a < b:  # the loop over one array's slice: a separate function, so that it is SIMD-compiled
            _adam_loop(params[k][a:b], grads[k][a:b], ms[k][a:b], vs[k][a:b], lr, beta1, beta2, one_minus_beta1,
                       one_minus_beta2, eps, bias_corr1, bias_corr2, weight_decay, False, tiny)
        offset += n


@_serial
def _sgd_loop(p, g, v, started, lr, momentum, weight_decay, tiny):
    """p -= lr * v, v = momentum * v + (g + wd * p) (v = that gradient where not started yet);
    momentum 0 is plain SGD (v unused). Rounded like the NumPy expressions of the reference
    provider: each product and sum in the parameters' dtype, no fused multiply-add. A
    velocity below ``tiny`` is stored as 0, as Adam's moments (``formulas.flush_subnormal`` says why)."""
    for i in range(p.shape[0]):
        d = g[i] + weight_decay * p[i] if weight_decay != 0 else g[i]
        if momentum != 0:
            d = momentum * v[i] + d if started else d
            d = _flush_subnormal(d, tiny)
            v[i] = d
        p[i] = p[i] - lr * d


@_serial
def _sgd_foreach(params, grads, velocities, started, lo, hi, lr, momentum, weight_decay, tiny):
    offset = 0
    for k in range(len(params)):
        n = params[k].shape[0]
        a, b = max(lo - offset, 0), min(hi - offset, n)
        if a < b:
            _sgd_loop(params[k][a:b], grads[k][a:b], velocities[k][a:b], started[k], lr, momentum, weight_decay, tiny)
        offset += n


# ------------------------------------------------------------------------ checks


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


# ----------------------------------------------------------------------- public API


def relu_backward(grad_out: np.ndarray, y: np.ndarray, grad_in: np.ndarray) -> np.ndarray:
    """grad_in = grad_out * [y > 0] (``y`` the ReLU's output), one pass, no temporaries."""
    grad_out, y, grad_in = _rows("grad_out", grad_out), _rows("y", y), _rows("grad_in", grad_in)
    if not grad_out.shape == y.shape == grad_in.shape:
        _same_shape(grad_out=grad_out, y=y, grad_in=grad_in)
    on_rows(_relu_backward, (grad_out, y, grad_in))
    return grad_in


def relu_backward_bias(grad_out: np.ndarray, y: np.ndarray, grad_in: np.ndarray,
                       grad_bias: np.ndarray) -> np.ndarray:
    """grad_in = grad_out * [y > 0] and grad_bias = its column sums, in one pass.

    ``y`` is the ReLU's output. grad_in may be grad_out (in place). Column sums
    accumulate in the arrays' dtype, row after row, as ``grad_in.sum(axis=0)`` does; a
    large array is cut into row pieces (``kernels.threads``, by size alone), each summed
    so, and the pieces' sums added in order.
    """
    grad_out, y, grad_in = _rows("grad_out", grad_out), _rows("y", y), _rows("grad_in", grad_in)
    if not grad_out.shape == y.shape == grad_in.shape:
        _same_shape(grad_out=grad_out, y=y, grad_in=grad_in)
    grad_bias = _vector("grad_bias", grad_bias, grad_out.shape[1])
    bounds = piece_bounds(grad_out.shape[0], grad_out.size) if grad_out.size >= 2 * threads.MIN_PIECE else ()
    if len(bounds) <= 1:
        _relu_backward_bias(grad_out, y, grad_in, grad_bias)
        return grad_in
    partial = np.empty((len(bounds), grad_bias.shape[0]), dtype=grad_bias.dtype)

    def piece(k: int) -> None:
        a, b = bounds[k]
        _relu_backward_bias(grad_out[a:b], y[a:b], grad_in[a:b], partial[k])

    run_pieces(piece, len(bounds))
    np.copyto(grad_bias, partial[0])
    for k in range(1, len(bounds)):
        grad_bias += partial[k]
    return grad_in


def bce_logits_combine(logits: np.ndarray, target: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values = max(l, 0) - l * x + values, in place, where ``values`` holds log1p(e^-|l|)
    on entry (computed by the caller with NumPy's vectorised exp and log1p)."""
    logits, target, values = _rows("logits", logits), _rows("target", target), _rows("values", values)
    if not logits.shape == target.shape == values.shape:
        _same_shape(logits=logits, target=target, values=values)
    on_rows(_bce_combine_inplace, (logits, target, values))
    return values


def bce_logits_backward_saved(logits: np.ndarray, target: np.ndarray, e: np.ndarray, *,
                              grad_rows: np.ndarray | None = None,
                              grad_out: np.ndarray | None = None) -> np.ndarray:
    """e = g * (sigmoid(l) - x), in place, from e = e^-|l| saved by the forward pass (each
    element of e is read before it is overwritten).

    g is ``grad_rows[r]`` (one value per row, shape (rows,)) or ``grad_out`` (full shape).
    """
    logits, target, e = _rows("logits", logits), _rows("target", target), _rows("e", e)
    if not logits.shape == target.shape == e.shape:
        _same_shape(logits=logits, target=target, e=e)
    if (grad_rows is None) == (grad_out is None):
        raise ValueError("pass exactly one of grad_rows and grad_out")
    if grad_rows is not None:
        on_rows(_bce_grad_rows_inplace, (logits, target, e, _vector("grad_rows", grad_rows, logits.shape[0])))
    else:
        g = _rows("grad_out", grad_out)
        _same_shape(logits=logits, grad_out=g)
        on_rows(_bce_grad_full_inplace, (logits, target, e, g))
    return e


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                lr: float, beta1: float, beta2: float, eps: float, step: int,
                weight_decay: float = 0.0, *, decoupled: bool = False) -> np.ndarray:
    """One Adam step in place on param, m, v (one shape and float dtype, C-contiguous);
    ``step`` is the 1-based t of the bias corrections; decoupled=False adds weight decay
    to the gradient (L2, minivae's Adam), True is AdamW.

    The hyperparameters enter the loop in the parameters' own precision: in float32 the
    compiled loop then runs in float32 SIMD lanes, measured 3x faster than with float64
    scalars, which promote every element (a 784x400 update: 0.16 vs 0.46 ms). 1 - beta1
    and 1 - beta2 are formed in float64 first, then rounded, as NumPy and PyTorch do. The
    checks are kept cheap: a small model makes a dozen calls a step.
    """
    arrays = (param, grad, m, v)
    for name, a in zip(("param", "grad", "m", "v"), arrays):
        if type(a) is not np.ndarray or not a.flags.c_contiguous or a.dtype != param.dtype:
            raise ValueError(f"adam_update: {name} must be a C-contiguous NumPy array of the parameters' dtype")
    if not param.shape == grad.shape == m.shape == v.shape:
        _same_shape(param=param, grad=grad, m=m, v=v)
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    if param.dtype.kind != "f":
        raise ValueError(f"adam_update: parameters must be floating point, got {param.dtype}")
    real = param.dtype.type
    size = param.size
    flat = param.reshape(size), grad.reshape(size), m.reshape(size), v.reshape(size)
    rates = (real(lr), real(beta1), real(beta2), real(1.0 - beta1), real(1.0 - beta2), real(eps),
             real(1.0 - beta1**step), real(1.0 - beta2**step), real(weight_decay), bool(decoupled),
             real(np.finfo(param.dtype).tiny))
    on_rows(_adam_loop, flat, *rates)
    return param


# ------------------------------------------------------------- the optimizers, foreach

#: Parameters per compiled call: the tuples are padded to 1, 2, 4, ... or this many
#: arrays, so a model of any size compiles at most a handful of variants.
FOREACH_CHUNK = 32


def _foreach_chunks(name: str, *lists: list) -> list[tuple[tuple[np.ndarray, ...], ...]]:
    """The arrays as 1-D views, in tuples of one padded length; checks dtype, layout and sizes
    (the loop reads g[i], m[i], v[i] for every i of its parameter: a shorter array would be
    read out of bounds). Written for speed: a small model makes ~60 arrays a step."""
    params = lists[0]
    dtype = params[0].dtype
    sizes = [p.size for p in params]
    flat_lists = []
    for arrays in lists:
        if len(arrays) != len(params):
            raise ValueError(f"{name}: the lists have different lengths {[len(a) for a in lists]}")
        flat = []
        for i, a in enumerate(arrays):
            if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous or a.size != sizes[i]:
                raise ValueError(f"{name}: array {i} of a list is not a C-contiguous {dtype} NumPy array "
                                 f"of its parameter's size {sizes[i]}")
            flat.append(a if a.ndim == 1 else a.reshape(-1))
        flat_lists.append(flat)
    if dtype.kind != "f":
        raise ValueError(f"{name}: parameters must be floating point, got {dtype}")
    pad = np.empty(0, dtype)
    chunks = []
    for start in range(0, len(params), FOREACH_CHUNK):
        stop = min(start + FOREACH_CHUNK, len(params))
        width = 1
        while width < stop - start:
            width *= 2
        padding = [pad] * (width - (stop - start))
        chunks.append(tuple(tuple(flat[start:stop] + padding) for flat in flat_lists))
    return chunks


def _run_foreach(loop, arrays: tuple, *scalars) -> None:
    """``loop(*arrays, lo, hi, *scalars)`` over the whole chunk, its elements cut into pieces."""
    size = 0
    for a in arrays[0]:
        size += a.shape[0]
    if size < 2 * threads.MIN_PIECE or threads.thread_count() == 1:  # elementwise: same numbers whole
        loop(*arrays, 0, size, *scalars)
        return
    bounds = piece_bounds(size, size)
    run_pieces(lambda k: loop(*arrays, *bounds[k], *scalars), len(bounds))


def adam_foreach(params: list[np.ndarray], grads: list[np.ndarray], ms: list[np.ndarray], vs: list[np.ndarray],
                 lr: float, beta1: float, beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> None:
    """:func:`adam_update` (L2 weight decay) on every parameter of the lists, in one compiled
    call per ``FOREACH_CHUNK`` parameters instead of one per parameter. Same numbers."""
    if not params:
        return
    if step < 1:
        raise ValueError(f"adam_foreach: step counts from 1, got {step}")
    real = params[0].dtype.type
    rates = (real(lr), real(beta1), real(beta2), real(1.0 - beta1), real(1.0 - beta2), real(eps),
             real(1.0 - beta1**step), real(1.0 - beta2**step), real(weight_decay), real(np.finfo(real).tiny))
    for chunk in _foreach_chunks("adam_foreach", params, grads, ms, vs):
        _run_foreach(_adam_foreach, chunk, *rates)


def sgd_foreach(params: list[np.ndarray], grads: list[np.ndarray], velocities: list[np.ndarray],
                started: np.ndarray, lr: float, momentum: float, weight_decay: float = 0.0) -> None:
    """SGD on every parameter of the lists, in place, one compiled call per ``FOREACH_CHUNK``:

        d = g + weight_decay * p;   v = momentum * v + d  (v = d where not ``started[i]``);   p -= lr * v

    With momentum 0, ``velocities`` is not touched (pass the params again); ``started`` is
    a bool array, one entry per parameter.
    """
    if not params:
        return
    started = np.asarray(started, dtype=np.bool_)
    if started.shape != (len(params),):
        raise ValueError(f"sgd_foreach: started must have shape ({len(params)},), got {started.shape}")
    real = params[0].dtype.type
    for n, chunk in enumerate(_foreach_chunks("sgd_foreach", params, grads, velocities)):
        flags = np.zeros(len(chunk[0]), dtype=np.bool_)
        part = started[n * FOREACH_CHUNK:(n + 1) * FOREACH_CHUNK]
        flags[:part.shape[0]] = part
        _run_foreach(_sgd_foreach, chunk + (flags,), real(lr), real(momentum), real(weight_decay),
                     real(np.finfo(real).tiny))
