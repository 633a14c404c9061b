"""The reference provider: each hot path as plain vectorised array code.

This is the code to read next to the docstrings in :mod:`minivae.ops`: one
expression per formula, on whichever array module owns the inputs (NumPy on the
CPU; CuPy on a GPU, where this provider is the "vendor" path: cuBLAS for the
products, CuPy's kernels for the rest). It handles every layout and broadcast,
and it is what the faster providers are tested against.
"""

from __future__ import annotations

from typing import Any

from minivae.providers import backend
from minivae.providers.base import Array


def exp_neg_abs(xp, x: Array, out: Array | None = None) -> Array:
    """e = e^-|x| ≤ 1: the only exponential the stable sigmoid, softplus and BCE take, so
    none overflows. With ``out`` (the CPU provider's buffer) it is written there in three
    in-place passes, with the same values."""
    if out is None:
        return xp.exp(-xp.abs(x))
    xp.abs(x, out=out)
    xp.negative(out, out=out)
    return xp.exp(out, out=out)


def log1p_of(xp, e: Array, out: Array | None = None) -> Array:
    """ln(1 + e) for e = e^-|x|: the tail of softplus(x) = max(x, 0) + ln(1 + e^-|x|) and
    of the BCE (derivations/01_losses_as_likelihoods.md, Eq. 1.5)."""
    return xp.log1p(e) if out is None else xp.log1p(e, out=out)


def relu(xp, x: Array, out: Array | None = None) -> Array:
    """max(x, 0), into ``out`` when given (the CPU provider's in-place form)."""
    return xp.maximum(x, 0) if out is None else xp.maximum(x, 0, out=out)


def stable_sigmoid(xp, x: Array) -> Array:
    """σ(x) = 1 / (1 + e⁻ˣ), evaluated as e / (1 + e) with e = e^-|x| for x < 0 so
    that exp never overflows."""
    e = exp_neg_abs(xp, x)
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


# Activations: one row per function, forward and derivative side by side. Each
# derivative is written with the OUTPUT y, so a layer keeps only y for backward.
ACTIVATIONS = {
    #  name          y = f(x)                                                  f'(x) as a function of y
    "relu":       (lambda xp, x, s: relu(xp, x),                               lambda xp, y, s: y > 0),
    "leaky_relu": (lambda xp, x, s: xp.where(x > 0, x, x * s),                 lambda xp, y, s: xp.where(y > 0, 1, s)),
    "sigmoid":    (lambda xp, x, s: stable_sigmoid(xp, x),                     lambda xp, y, s: y * (1 - y)),
    "tanh":       (lambda xp, x, s: xp.tanh(x),                                lambda xp, y, s: 1 - y * y),
    "softplus":   (lambda xp, x, s: xp.maximum(x, 0) + log1p_of(xp, exp_neg_abs(xp, x)), lambda xp, y, s: -xp.expm1(-y)),
}


def _activation_row(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation: unknown name {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


class ReferenceProvider:
    """Every method of :class:`minivae.providers.base.Provider` in plain NumPy/CuPy."""

    name = "reference"

    # -- dense layer ---------------------------------------------------------------------
    def matmul(self, a, b, *, trans_a=False, trans_b=False, bias=None):
        out = (a.T if trans_a else a) @ (b.T if trans_b else b)
        return out if bias is None else out + bias

    def column_sum(self, g):
        return g.reshape(-1, g.shape[-1]).sum(axis=0) if g.ndim else g

    # -- activations -------------------------------------------------------------------------
    def activation(self, name, x, slope, *, inplace=False):
        forward, _ = _activation_row(name)
        return backend.array_module(x).asarray(forward(backend.array_module(x), x, slope), dtype=x.dtype)

    def activation_grad(self, name, g, y, slope):
        _, derivative = _activation_row(name)
        xp = backend.array_module(g)
        return xp.asarray(g * derivative(xp, y, slope), dtype=g.dtype)

    def activation_grad_bias(self, name, g, y, slope):
        u = self.activation_grad(name, g, y, slope)
        return u, self.column_sum(u)

    # -- the sampling node and the Gaussian KL ------------------------------------------------
    def reparam(self, mu, logvar, eps):
        xp = backend.array_module(mu)
        return mu + xp.exp(0.5 * logvar) * eps

    def reparam_grad_logvar(self, g, logvar, eps):
        xp = backend.array_module(g)
        return g * (0.5 * xp.exp(0.5 * logvar) * eps)

    def kl_rows(self, mu, logvar):
        xp = backend.array_module(mu)
        return 0.5 * (xp.exp(logvar) + mu * mu - 1 - logvar).sum(axis=-1)

    def kl_grads(self, mu, logvar, g_rows):
        xp = backend.array_module(mu)
        g = xp.expand_dims(g_rows, -1)
        return g * mu, g * (0.5 * (xp.exp(logvar) - 1))

    # -- Bernoulli likelihood from logits ---------------------------------------------------------
    def bce_logits(self, logits, target):
        xp = backend.array_module(logits)
        return xp.maximum(logits, 0) - logits * target + log1p_of(xp, exp_neg_abs(xp, logits)), None

    def bce_logits_row_sums(self, logits, target):
        values, saved = self.bce_logits(logits, target)
        return values.sum(axis=-1), saved

    def bce_logits_grad(self, logits, target, saved: Any, g):
        return g * (stable_sigmoid(backend.array_module(logits), logits) - target)

    # -- optimizer -------------------------------------------------------------------------------
    def adam(self, param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay):
        xp = backend.array_module(param)
        g = grad + weight_decay * param if weight_decay else grad
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        denom = xp.sqrt(v / (1 - beta2**step))
        denom += eps
        param -= (lr / (1 - beta1**step)) * (m / denom)
        _flush_subnormals(xp, m)  # as the compiled loops store them (kernels/formulas.py: flush_subnormal)
        _flush_subnormals(xp, v)

    def adam_foreach(self, params, grads, ms, vs, lr, beta1, beta2, eps, step, weight_decay):
        for param, grad, m, v in zip(params, grads, ms, vs):
            self.adam(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay)

    def sgd_foreach(self, params, grads, velocities, lr, momentum, weight_decay):
        for i, (param, g) in enumerate(zip(params, grads)):
            if weight_decay:
                g = g + weight_decay * param
            if momentum:
                xp = backend.array_module(param)
                if velocities[i] is None:
                    velocities[i] = xp.array(g)  # a copy, and an array even when g is a 0-d result (a scalar)
                else:
                    velocities[i] *= momentum
                    velocities[i] += g
                _flush_subnormals(xp, velocities[i])
                g = velocities[i]
            param -= lr * g


def _flush_subnormals(xp, a: Array) -> None:
    """``flush_subnormal`` of kernels/formulas.py over an array, in place: entries below the
    dtype's smallest normal number become 0 (an optimizer state stuck there moves no
    parameter and slows every x86 operation on it ~100x). NaN stays NaN."""
    a[xp.abs(a) < xp.finfo(a.dtype).tiny] = 0  # +0.0, as x - x in the compiled loops


PROVIDER = ReferenceProvider()
