"""The compiled CPU provider: the reference provider's results, with fewer passes over memory.

It inherits every method of :class:`~minivae.providers.reference.ReferenceProvider`
and overrides only where it saves time on a training step, without restating a
formula in NumPy: its NumPy passes call the reference's functions with an ``out``
buffer (``exp_neg_abs``, ``log1p_of``, ``relu``), and the per-element math of its
compiled loops lives in ``kernels/formulas.py``. It is faster because it

* works in place on arrays that only the caller holds (a fresh matrix product gets
  its bias and its ReLU added in place: ``activation(..., inplace=True)``),
* saves what the backward pass needs (e^-|l| of the BCE) instead of recomputing it,
  and reuses that buffer for the gradient,
* runs the arithmetic-only passes (ReLU backward + bias gradient, the BCE's
  combination and gradient, Adam) as one compiled loop each (``kernels.cpu``),
* leaves exp / log1p to NumPy: its SIMD float32 versions are about 10x faster
  than the scalar libm calls a compiled loop makes,
* runs large arrays on every thread the user allows BLAS (``kernels.threads``: row pieces
  by size alone, shared among the calling thread and sleeping workers), and updates all
  parameters in one compiled call per optimizer step (``adam_foreach``, ``sgd_foreach``),
* and takes its big arrays (products, activations, gradients, the BCE's saved values) from
  an arena (:mod:`minivae.providers.arena`) that hands the previous step's buffers out
  again once nothing holds them: no fresh pages to fault in (measured: ~4,600 page
  faults and a fifth of the time of a VAE step at batch 1024 without it).

Inputs of any layout are accepted: what the compiled loops need (C-contiguous, one
dtype, at least 1-D) is arranged here, and anything else (broadcast operands) goes
to the reference methods.
"""

from __future__ import annotations

import numpy as np

import minivae.kernels.cpu as kc
from minivae.kernels.threads import on_rows, piece_bounds, run_pieces
from minivae.providers.arena import ARENA
from minivae.providers.reference import ReferenceProvider, exp_neg_abs, log1p_of, relu


def _rows(a: np.ndarray) -> np.ndarray:
    """(rows, features) view of a C-contiguous array; a 0-d or 1-D array is one row."""
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _contiguous(a: np.ndarray) -> np.ndarray:
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _exp_neg_abs_into(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """e = e^-|x| (the reference's formula, written into ``e``: no temporaries)."""
    return exp_neg_abs(np, x, out=e)


def _exp_neg_abs(x: np.ndarray) -> np.ndarray:
    """e^-|x| in one new buffer, large arrays a row piece per thread."""
    e = ARENA.empty(x.shape, x.dtype)
    x2, e2 = _rows(x), _rows(e)
    on_rows(_exp_neg_abs_into, (x2, e2))
    return e


# Large arrays are cut into row pieces that kernels.threads shares among the threads the
# user allows (the same number BLAS uses); small ones are done at once by the calling thread.
# Each piece runs one of these functions on its rows (NumPy's ufuncs release the GIL).


def _add_row_vector(out: np.ndarray, bias: np.ndarray) -> None:
    np.add(out, bias, out=out)


def _relu_into(x: np.ndarray, y: np.ndarray) -> None:
    relu(np, x, out=y)


def _bce_into(logits: np.ndarray, target: np.ndarray, e: np.ndarray, values: np.ndarray) -> None:
    """e = e^-|l|, values = max(l, 0) - l x + log1p(e): the BCE forward of some rows."""
    _exp_neg_abs_into(logits, e)
    log1p_of(np, e, out=values)  # (into a buffer: for a 0-d e, np.log1p(e) would be a new scalar)
    kc.bce_logits_combine(logits, target, values)


class CpuProvider(ReferenceProvider):
    """The reference provider with the hot paths of a training step compiled or done in place."""

    name = "custom-cpu"

    # -- dense layer ---------------------------------------------------------------------
    def matmul(self, a, b, *, trans_a=False, trans_b=False, bias=None):
        a, b = (a.T if trans_a else a), (b.T if trans_b else b)
        if a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and a.dtype.kind == "f":
            # BLAS writes into an arena buffer; a transposed operand is read in place
            out = np.matmul(a, b, out=ARENA.empty((a.shape[0], b.shape[1]), a.dtype))
        else:
            out = a @ b
        if bias is not None:  # in place: out is a fresh product
            if out.ndim == 2 and bias.ndim == 1:
                on_rows(_add_row_vector, (out,), bias)
            else:
                out += bias
        return out

    # -- activations -------------------------------------------------------------------------
    def activation(self, name, x, slope, *, inplace=False):
        if name == "relu" and x.ndim and x.flags.c_contiguous:
            # in place on a dense layer's fresh product; else into an arena buffer
            y = x if inplace else ARENA.empty(x.shape, x.dtype)
            on_rows(_relu_into, (_rows(x), _rows(y)))
            return y
        return super().activation(name, x, slope)

    @staticmethod
    def _relu_loop_fits(name, g, y) -> bool:
        """Whether the compiled ReLU backward loops take these arrays (after a contiguous copy)."""
        return name == "relu" and g.ndim > 0 and g.shape == y.shape and g.dtype == y.dtype

    def activation_grad(self, name, g, y, slope):
        if not self._relu_loop_fits(name, g, y):
            return super().activation_grad(name, g, y, slope)
        g, y = _contiguous(g), _contiguous(y)
        grad = ARENA.empty(g.shape, g.dtype)
        kc.relu_backward(_rows(g), _rows(y), _rows(grad))
        return grad

    def activation_grad_bias(self, name, g, y, slope):
        if not self._relu_loop_fits(name, g, y):
            return super().activation_grad_bias(name, g, y, slope)
        g, y = _contiguous(g), _contiguous(y)
        grad = ARENA.empty(g.shape, g.dtype)
        grad_bias = np.empty(g.shape[-1], dtype=g.dtype)
        kc.relu_backward_bias(_rows(g), _rows(y), _rows(grad), grad_bias)
        return grad, grad_bias

    # -- Bernoulli likelihood from logits ---------------------------------------------------------
    def bce_logits(self, logits, target):
        """(values, e^-|l|): the gradient later reads e instead of computing it again."""
        if not self._fits(logits, target):
            return super().bce_logits(logits, target)
        logits, target = _contiguous(logits), _contiguous(target)
        e, values = ARENA.empty(logits.shape, logits.dtype), ARENA.empty(logits.shape, logits.dtype)
        on_rows(_bce_into, (_rows(logits), _rows(target), _rows(e), _rows(values)))
        return values, e

    def bce_logits_row_sums(self, logits, target, block: int = 256):
        """(row sums, e^-|l|), the values made ``block`` rows at a time in one small scratch
        buffer instead of one array as large as the logits. Each row is summed whole by
        NumPy, so the sums equal ``bce_logits(...)[0].sum(-1)``."""
        if not self._fits(logits, target) or logits.ndim == 0:
            return super().bce_logits_row_sums(logits, target)
        logits, target = _contiguous(logits), _contiguous(target)
        e = ARENA.empty(logits.shape, logits.dtype)
        l2, t2, e2 = _rows(logits), _rows(target), _rows(e)
        sums = np.empty(l2.shape[0], dtype=logits.dtype)
        bounds = piece_bounds(l2.shape[0], l2.size)
        scratch = ARENA.empty((len(bounds), min(block, l2.shape[0]), l2.shape[1]), logits.dtype)

        def piece(k: int) -> None:  # one scratch per piece: pieces may run on different threads
            for start in range(bounds[k][0], bounds[k][1], block):
                stop = min(start + block, bounds[k][1])
                values = scratch[k, : stop - start]
                _exp_neg_abs_into(l2[start:stop], e2[start:stop])
                log1p_of(np, e2[start:stop], out=values)
                kc.bce_logits_combine(l2[start:stop], t2[start:stop], values)
                values.sum(axis=-1, out=sums[start:stop])

        run_pieces(piece, len(bounds))
        return sums.reshape(logits.shape[:-1]), e

    def bce_logits_grad(self, logits, target, saved, g):
        """g · (σ(l) - x) with σ from the saved e = e^-|l|, written into e's own buffer.

        ``g`` is usually the broadcast (stride-0) gradient of a sum: then only one value
        per row is read, without copying it out.
        """
        if not self._fits(logits, target) or g.shape != logits.shape or logits.ndim == 0:
            return super().bce_logits_grad(logits, target, saved, g)
        logits, target = _contiguous(logits), _contiguous(target)
        e = saved if saved is not None else _exp_neg_abs(logits)
        l2, t2, e2 = _rows(logits), _rows(target), _rows(e)
        if g.strides[-1] == 0:
            per_row = np.ascontiguousarray(g[..., 0]).reshape(-1)
            kc.bce_logits_backward_saved(l2, t2, e2, grad_rows=per_row)
        else:
            kc.bce_logits_backward_saved(l2, t2, e2, grad_out=_rows(_contiguous(g)))
        return e

    @staticmethod
    def _fits(logits, target) -> bool:
        return logits.shape == target.shape and logits.dtype == target.dtype

    # -- optimizer -------------------------------------------------------------------------------
    def adam(self, param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay):
        if not (param.flags.c_contiguous and grad.flags.c_contiguous and m.flags.c_contiguous
                and v.flags.c_contiguous and grad.dtype == param.dtype == m.dtype == v.dtype):
            return super().adam(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay)
        kc.adam_update(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled=False)

    def adam_foreach(self, params, grads, ms, vs, lr, beta1, beta2, eps, step, weight_decay):
        """One compiled call over all parameters; if some array does not suit the loop (a
        strided view, another dtype: the loop checks every one before it writes anything),
        one call over those that do and the reference's NumPy for the rest."""
        try:
            kc.adam_foreach(params, grads, ms, vs, lr, beta1, beta2, eps, step, weight_decay)
            return
        except ValueError:
            loop, rest = _compiled_or_not(params, grads, ms, vs)
        if loop:
            kc.adam_foreach(*([arrays[i] for i in loop] for arrays in (params, grads, ms, vs)),
                            lr, beta1, beta2, eps, step, weight_decay)
        for i in rest:
            self.adam(params[i], grads[i], ms[i], vs[i], lr, beta1, beta2, eps, step, weight_decay)

    def sgd_foreach(self, params, grads, velocities, lr, momentum, weight_decay):
        """As adam_foreach; a velocity not started yet gets an empty array the loop fills
        with the first step's gradient (the reference copies that gradient: same numbers)."""
        if momentum:
            started = np.array([v is not None for v in velocities])
            for i, v in enumerate(velocities):
                if v is None and isinstance(params[i], np.ndarray):
                    velocities[i] = np.empty_like(params[i], order="C")
        try:
            kc.sgd_foreach(params, grads, velocities if momentum else params,
                           started if momentum else np.zeros(len(params), bool), lr, momentum, weight_decay)
            return
        except ValueError:
            loop, rest = _compiled_or_not(params, grads, velocities) if momentum else _compiled_or_not(params, grads)
        if loop:
            chosen = [params[i] for i in loop]
            kc.sgd_foreach(chosen, [grads[i] for i in loop], [velocities[i] for i in loop] if momentum else chosen,
                           started[loop] if momentum else np.zeros(len(loop), bool), lr, momentum, weight_decay)
        if rest:
            picks = [velocities[i] if not momentum or started[i] else None for i in rest]
            super().sgd_foreach([params[i] for i in rest], [grads[i] for i in rest], picks, lr, momentum,
                                weight_decay)
            for i, v in zip(rest, picks):
                velocities[i] = v


def _compiled_or_not(params: list, *others: list) -> tuple[list[int], list[int]]:
    """(indices the foreach loops take, the rest): C-contiguous NumPy float arrays of the
    first such parameter's dtype, all of one shape with their gradient and states."""
    loop, rest, dtype = [], [], None
    for i, p in enumerate(params):
        if dtype is None and type(p) is np.ndarray and p.dtype.kind == "f":
            dtype = p.dtype
        arrays = [p] + [other[i] for other in others]
        if all(type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous and a.shape == p.shape
               for a in arrays):
            loop.append(i)
        else:
            rest.append(i)
    return loop, rest


PROVIDER = CpuProvider()
