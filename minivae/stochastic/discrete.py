"""Discrete latent variables: sampling nodes and their gradient estimators.

A Bernoulli or categorical draw is a step function of its parameters, so it has
no useful derivative: the pathwise gradient is zero almost everywhere. Three ways
around that, all here:

1. Score function (unbiased, noisy). Draw z as a constant and differentiate
   ln q(z) instead; see :func:`minivae.estimators.score_function_surrogate`.
   This module supplies the stable log-probabilities from logits:

       Bernoulli:    ln q(z) = z ln σ(l) + (1 - z) ln σ(-l) = -bce_with_logits(l, z)
       categorical:  ln q(z = k) = l_k - logsumexp(l)   (z one-hot: Σ_k z_k log_softmax(l)_k)

2. Straight-through (biased, cheap). Forward: the hard sample z. Backward: pretend
   z was its mean, i.e. use ∂p/∂l (σ'(l) = σ(1-σ) for a Bernoulli, the softmax
   Jacobian for a categorical). Biased: for f(z) = (z - t)² with z ~ Bernoulli(p)
   the true gradient is σ'(l)·(1 - 2t) but straight-through averages to
   σ'(l)·2(p - t); they agree only at p = 1/2.

3. Gumbel-softmax / Concrete relaxation (biased, low variance). The Gumbel-max
   trick says argmax_k (l_k + G_k), G_k = -ln(-ln U_k), is an exact categorical
   draw. Replace the argmax by a softmax at temperature τ:

       y = softmax((l + G) / τ),

   a reparameterized, differentiable sample on the simplex. It optimises a
   different (relaxed) objective, so the gradient is biased for the discrete one;
   the bias shrinks as τ → 0 while the variance grows. The binary case is
   y = σ((l + ln U - ln(1 - U)) / τ) (logistic noise). The straight-through
   variant (``hard=True``) uses the one-hot argmax forward and y's gradient backward.

Every sampler takes ``rng`` explicitly; the Gumbel/logistic noise can also be
passed in (``noise=``) for fixed-noise gradient checks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minivae.providers import backend
from minivae import ops
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad

LOG2 = math.log(2.0)
_TINY = 1e-12  # keeps ln U and ln(1 - U) finite for uniform draws at the ends of [0, 1)


def _check_logits(logits: Any, where: str) -> Tensor:
    if not isinstance(logits, Tensor):
        raise TypeError(f"{where}: logits must be a minivae Tensor, got {type(logits).__name__}")
    return logits


def _check_tau(tau: float, where: str) -> float:
    if not tau > 0:
        raise ValueError(f"{where}: the temperature tau must be > 0, got {tau}")
    return float(tau)


def _relaxation_inputs(where: str, logits: Any, tau: float, rng: Generator | None, noise: Any, draw) -> tuple:
    """(logits, tau, noise) of a relaxed sample, checked; the noise drawn by ``draw`` from ``rng``
    unless it was given (fixed noise for a gradient check)."""
    logits, tau = _check_logits(logits, where), _check_tau(tau, where)
    if noise is None:
        if rng is None:
            raise ValueError(f"{where}: pass rng=Generator(seed) to draw the noise, or noise=... to fix it")
        noise = draw(logits.shape, rng, dtype=logits.dtype)
    return logits, tau, noise


# ----------------------------------------------------------------------------
# straight-through: one node
# ----------------------------------------------------------------------------
def straight_through(hard: Any, soft: Tensor) -> Tensor:
    """Forward value ``hard`` (a constant), backward: the gradient goes to ``soft`` unchanged.

    ∂out/∂soft := I. The forward/backward mismatch is the whole estimator, and its bias.
    Derivation: derivations/14_straight_through.md, Eq. 14.2-14.3.
    """
    xp = backend.array_module(soft.data)
    value = xp.asarray(hard.data if isinstance(hard, Tensor) else hard, dtype=soft.data.dtype)
    if value.shape != soft.shape:
        raise ValueError(f"straight_through: hard value {value.shape} and soft value {soft.shape} differ in shape")
    return Tensor.from_op(value, (soft,), lambda g: (g,), "straight_through", stochastic=True)


# ----------------------------------------------------------------------------
# Bernoulli
# ----------------------------------------------------------------------------
def sample_bernoulli(logits: Tensor, rng: Generator) -> Tensor:
    """z ~ Bernoulli(σ(l)) elementwise, as a constant tensor (no gradient: use an estimator).
    Derivation: none (a draw, not a differentiable node).
    """
    logits = _check_logits(logits, "sample_bernoulli")
    with no_grad():
        probs = ops.sigmoid(logits).data
    return Tensor(rng.bernoulli(probs, dtype=logits.dtype), dtype=logits.dtype)


def bernoulli_log_prob(logits: Tensor, z: Any) -> Tensor:
    """ln q(z) = Σ_d [z_d ln σ(l_d) + (1 - z_d) ln σ(-l_d)] over the last axis, = -Σ bce_with_logits(l, z).

    Finite for every logit (no log of a rounded probability). ∂/∂l = z - σ(l).
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.5-1.6.
    """
    logits = _check_logits(logits, "bernoulli_log_prob")
    return -ops.bce_with_logits(logits, z).sum(axis=-1)


def bernoulli_kl_uniform_per_dim(logits: Tensor) -> Tensor:
    """KL(Bernoulli(p) ‖ Bernoulli(½)) per coordinate, p = σ(l):

        p ln p + (1 - p) ln(1 - p) + ln 2,   with ln p = -softplus(-l), ln(1 - p) = -softplus(l),

    i.e. ln 2 - H(p), H the Bernoulli entropy. Composed from ops (sigmoid, softplus), so
    its gradient is theirs. Derivation: derivations/09_entropy.md, Eq. 9.1.
    """
    p = ops.sigmoid(logits)
    return LOG2 - (p * ops.softplus(-logits) + (1.0 - p) * ops.softplus(logits))


def bernoulli_kl_uniform(logits: Tensor) -> Tensor:
    """Σ_d KL(Bernoulli(σ(l_d)) ‖ Bernoulli(½)) over the last axis (between 0 and D ln 2).
    Derivation: derivations/09_entropy.md, Eq. 9.1.
    """
    return bernoulli_kl_uniform_per_dim(logits).sum(axis=-1)


def straight_through_bernoulli(logits: Tensor, rng: Generator) -> Tensor:
    """Forward: z ~ Bernoulli(σ(l)) (hard 0/1). Backward: ∂z/∂l := σ'(l) = σ(l)(1 - σ(l)). Biased.
    Derivation: derivations/14_straight_through.md, Eq. 14.2.
    """
    logits = _check_logits(logits, "straight_through_bernoulli")
    probs = ops.sigmoid(logits)
    hard = rng.bernoulli(probs.data, dtype=logits.dtype)
    return straight_through(hard, probs)


def logistic_noise(shape: tuple[int, ...], rng: Generator, dtype: Any = "float64") -> Any:
    """L = ln U - ln(1 - U), U ~ Uniform(0, 1): the difference of two Gumbels.
    Derivation: none (noise, drawn outside the graph).
    """
    u = np.clip(backend.to_numpy(rng.uniform(shape, dtype="float64")), _TINY, 1 - _TINY)
    return backend.to_backend(np.log(u) - np.log1p(-u), dtype=dtype)


def relaxed_bernoulli(
    logits: Tensor, tau: float, rng: Generator | None = None, noise: Any = None, hard: bool = False
) -> Tensor:
    """Binary Concrete sample y = σ((l + L) / τ), L logistic noise (from ``rng`` or given as ``noise``).

    Differentiable in l: ∂y/∂l = y(1 - y)/τ. With ``hard=True`` the forward value is
    1[y > ½] = 1[l + L > 0], which is an exact Bernoulli(σ(l)) draw, and the gradient
    is still y's (straight-through Gumbel). Composed from ops: the gradient is the sigmoid's.
    Derivation: derivations/02_backprop_dense.md, Eq. 2.3.
    """
    logits, tau, noise = _relaxation_inputs("relaxed_bernoulli", logits, tau, rng, noise, logistic_noise)
    y = ops.sigmoid((logits + noise) * (1.0 / tau))
    if hard:
        return straight_through((y.data > 0.5).astype(y.data.dtype), y)
    return y


# ----------------------------------------------------------------------------
# categorical (one-hot over the last axis)
# ----------------------------------------------------------------------------
def gumbel_noise(shape: tuple[int, ...], rng: Generator, dtype: Any = "float64") -> Any:
    """G = -ln(-ln U), U ~ Uniform(0, 1): standard Gumbel noise.
    Derivation: none (noise, drawn outside the graph).
    """
    u = np.clip(backend.to_numpy(rng.uniform(shape, dtype="float64")), _TINY, 1 - _TINY)
    return backend.to_backend(-np.log(-np.log(u)), dtype=dtype)


def one_hot_argmax(values: Any) -> Any:
    """One-hot of the argmax over the last axis (same shape and dtype as ``values``).
    Derivation: none (an array, not a node).
    """
    data = values.data if isinstance(values, Tensor) else values
    xp = backend.array_module(data)
    index = data.argmax(axis=-1)
    return (xp.arange(data.shape[-1]) == index[..., None]).astype(data.dtype)


def sample_categorical(logits: Tensor, rng: Generator) -> Tensor:
    """z ~ Categorical(softmax(l)) as a one-hot constant, by Gumbel-max: argmax_k (l_k + G_k).
    Derivation: none (a draw, not a differentiable node).
    """
    logits = _check_logits(logits, "sample_categorical")
    g = gumbel_noise(logits.shape, rng, dtype=logits.dtype)
    return Tensor(one_hot_argmax(logits.data + g), dtype=logits.dtype)


def categorical_log_prob(logits: Tensor, z_one_hot: Any) -> Tensor:
    """ln q(z) = Σ_k z_k (l_k - logsumexp(l)) over the last axis (stable log-softmax).  ∂/∂l = z - softmax(l).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.35.
    """
    logits = _check_logits(logits, "categorical_log_prob")
    return (ops.log_softmax(logits, axis=-1) * z_one_hot).sum(axis=-1)


def straight_through_categorical(logits: Tensor, rng: Generator) -> Tensor:
    """Forward: a one-hot draw z ~ Categorical(softmax(l)). Backward: through softmax(l). Biased.
    Derivation: derivations/14_straight_through.md, Eq. 14.2.
    """
    logits = _check_logits(logits, "straight_through_categorical")
    z = sample_categorical(logits, rng)
    return straight_through(z.data, ops.softmax(logits, axis=-1))


def gumbel_softmax(
    logits: Tensor, tau: float, rng: Generator | None = None, noise: Any = None, hard: bool = False
) -> Tensor:
    """Concrete sample y = softmax((l + G) / τ) over the last axis; G Gumbel (from ``rng`` or ``noise``).

    Composed from ops, so its gradient is the engine's (and gradcheck-able with fixed
    noise). ``hard=True``: forward one_hot(argmax y) (an exact categorical draw, since
    argmax y = argmax (l + G)), backward through y.
    Derivation: derivations/15_vjp_rules.md, Eq. 15.34 (the softmax's VJP).
    """
    logits, tau, noise = _relaxation_inputs("gumbel_softmax", logits, tau, rng, noise, gumbel_noise)
    y = ops.softmax((logits + noise) * (1.0 / tau), axis=-1)
    if hard:
        return straight_through(one_hot_argmax(y.data), y)
    return y


__all__ = [
    "bernoulli_kl_uniform",
    "bernoulli_kl_uniform_per_dim",
    "bernoulli_log_prob",
    "categorical_log_prob",
    "gumbel_noise",
    "gumbel_softmax",
    "logistic_noise",
    "one_hot_argmax",
    "relaxed_bernoulli",
    "sample_bernoulli",
    "sample_categorical",
    "straight_through",
    "straight_through_bernoulli",
    "straight_through_categorical",
]
