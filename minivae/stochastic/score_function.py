"""Score-function (REINFORCE) gradients as graph nodes, and their variance reduction.

The problem. We want  ∇_φ E_{z ~ q_φ}[f(z)]  when z cannot be written as a smooth
function of φ and outside noise (a Bernoulli or categorical draw, say), so the
reparameterization trick of :mod:`minivae.distributions` does not apply.

The score-function identity (likelihood ratio, REINFORCE). Because
∇_φ q_φ(z) = q_φ(z) ∇_φ ln q_φ(z),

    ∇_φ E_q[f(z)] = ∫ f(z) ∇_φ q_φ(z) dz = E_q[ f(z) ∇_φ ln q_φ(z) ],

estimated with samples z_1..z_n ~ q_φ by

    ĝ_SF = (1/n) Σ_i f(z_i) ∇_φ ln q_φ(z_i).

Only ln q_φ(z) has to be differentiable in φ; f can be a black box and z discrete.

Baselines. The score has mean zero, E_q[∇_φ ln q_φ(z)] = ∇_φ ∫ q_φ = ∇_φ 1 = 0, so any
b that does not depend on the sample z_i it multiplies can be subtracted for free:

    ĝ_b = (1/n) Σ_i (f(z_i) - b) ∇_φ ln q_φ(z_i),      E[ĝ_b] = E[ĝ_SF].

A good b (close to f) shrinks the factor (f - b) and with it the variance.

The surrogate loss (stochastic computation graphs, Schulman et al. 2015). To get
ĝ_b out of an ordinary ``loss.backward()`` we build a node whose

    forward value  = f(z)                                   (so the loss reads as usual)
    backward       = ∂/∂f: g      (pathwise gradient, where f depends on parameters directly)
                     ∂/∂ln q: g · (f(z) - b)                 (the score-function term)

That is the gradient of  f + stop_gradient(f - b) · ln q  with the value of f alone.
Here it is one node written with :meth:`Tensor.from_op`; writing it as the
composed expression ``f + (f.detach() - b) * (log_q - log_q.detach())`` would give
the same gradient (the last bracket is 0 forward, ln q backward), but one node
keeps the forward value bit-exact and the backward readable.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minivae import ops
from minivae.nn import Linear, Module, ReLU, Sequential
from minivae.providers import backend
from minivae.random import Generator
from minivae.tensor import Tensor

BaselineLike = float | int | np.ndarray | Tensor | None


def score_function_surrogate(f_value: Tensor, log_q: Tensor, baseline: BaselineLike = None) -> Tensor:
    """The REINFORCE node: forward value f(z), backward (f(z) - b)·∇ln q(z) plus f's own pathwise gradient.

    Args:
        f_value: f(z_i) per sample, any shape (typically ``(n,)``). If f depends
            on parameters directly (a decoder), their gradient flows through
            unchanged: ∂out/∂f = 1.
        log_q: ln q_φ(z_i) for the SAME samples, same shape as ``f_value``; the
            samples themselves must be constants of the graph (drawn without
            gradient), otherwise the pathwise and score terms would double count.
        baseline: b, a number, an array or a Tensor broadcastable to f's shape.
            It is used as a constant (no gradient reaches it: train a learned
            baseline with its own loss, see :class:`LearnedBaseline`). It must not
            depend on the sample z_i it is paired with, or the estimator is biased.

    Returns:
        A tensor equal to ``f_value`` whose backward sends g to f and
        g·(f - b) to ln q. Reduce it (``.mean()``) and call ``backward()``: the
        distribution's parameters then receive (1/n) Σ_i (f_i - b) ∇ ln q(z_i).

    Derivation: derivations/07_score_function.md, Eq. 7.5.
    """
    if not isinstance(f_value, Tensor) or not isinstance(log_q, Tensor):
        raise TypeError("score_function_surrogate: f_value and log_q must be minivae Tensors")
    f_value, log_q = ops.binary_operands("score_function_surrogate", f_value, log_q)
    if f_value.shape != log_q.shape:
        raise ValueError(
            f"score_function_surrogate: f_value has shape {f_value.shape} but log_q has shape {log_q.shape}; "
            "pair each sample's f(z_i) with its own ln q(z_i)"
        )
    xp = backend.array_module(f_value.data)
    if baseline is None:
        b = 0.0
    elif isinstance(baseline, Tensor):
        b = baseline.data  # a constant here: no gradient flows into the baseline
    else:
        b = xp.asarray(baseline, dtype=f_value.data.dtype)
    # The learning signal f - b is fixed at forward time (a stop-gradient).
    try:
        signal = xp.broadcast_to((f_value.data - b).astype(f_value.data.dtype), f_value.shape)
    except ValueError:
        raise ValueError(
            f"score_function_surrogate: baseline of shape {np.shape(b)} does not broadcast to f's shape {f_value.shape}"
        ) from None

    def backward(g):
        return g, g * signal

    out = Tensor.from_op(f_value.data.copy(), (f_value, log_q), backward, "score_function")
    out.learning_signal = signal  # kept for inspection (and for the lab's variance bookkeeping)
    return out


def zero_with_gradient_of(t: Tensor) -> Tensor:
    """t - stop_gradient(t): forward value 0, gradient that of t.

    Used to add an auxiliary objective (e.g. a baseline's regression loss) to a
    loss without changing the loss's printed value.
    Derivation: none (composed from sub and detach; its gradient is t's).
    """
    return t - t.detach()


# ----------------------------------------------------------------------------
# baselines: any b that does not depend on the sample it multiplies (Eq. 7.5)
# ----------------------------------------------------------------------------
class MovingAverageBaseline:
    """b_t = decay · b_{t-1} + (1 - decay) · mean(f of batch t), used for batch t + 1.

    Because b is computed from EARLIER batches only, it is independent of the
    current samples and the estimator stays unbiased. The first update sets b to
    the batch mean (no warm-up bias towards 0).
    Derivation: none (a number, not a node; why it keeps the mean: derivations/07_score_function.md, Eq. 7.5).
    """

    def __init__(self, decay: float = 0.9) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.value = 0.0
        self.updates = 0

    def update(self, f_value: Any) -> float:
        """Fold in a batch of f values (Tensor or array); returns the new b."""
        data = f_value.data if isinstance(f_value, Tensor) else f_value
        batch_mean = float(backend.to_numpy(data).mean())
        if self.updates == 0:
            self.value = batch_mean
        else:
            self.value = self.decay * self.value + (1.0 - self.decay) * batch_mean
        self.updates += 1
        return self.value

    def __repr__(self) -> str:
        return f"MovingAverageBaseline(decay={self.decay}, value={self.value:.4g}, updates={self.updates})"


class LearnedBaseline(Module):
    """An input-dependent baseline b_ψ(x): a small MLP trained to predict f by least squares.

        ψ* = argmin_ψ E[(f(z) - b_ψ(x))²]

    b_ψ(x) sees the input x but never the sample z, so subtracting it keeps the
    estimator unbiased; the closer it tracks E_q[f | x], the smaller the variance.
    Its regression loss is :meth:`loss`; add it with :func:`zero_with_gradient_of`
    (or step it with its own optimizer).
    Derivation: none (a small network built from ops; why b may depend on x: derivations/07_score_function.md, Eq. 7.5).
    """

    def __init__(self, input_dim: int, hidden: int = 32, *, rng: Generator, dtype: Any = "float32") -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.net = Sequential(
            Linear(self.input_dim, hidden, rng=rng, dtype=dtype),
            ReLU(),
            Linear(hidden, 1, rng=rng, init="xavier", dtype=dtype),
        )

    def forward(self, x: Tensor) -> Tensor:
        """b_ψ(x), one value per row: shape (batch,)."""
        return self.net(x).reshape(x.shape[:-1])

    def loss(self, x: Tensor, f_value: Tensor, offset: float = 0.0) -> Tensor:
        """Mean squared error between b_ψ(x) + offset and f (f is treated as a constant target)."""
        diff = self.forward(x) + offset - f_value.detach()
        return (diff * diff).mean()


def leave_one_out_baseline(f_value: Any) -> np.ndarray:
    """b_i = mean of the OTHER samples' f: (Σ_j f_j - f_i) / (n - 1).

    It depends on the other samples only, which are independent of z_i, so it is
    a valid (unbiased) baseline for n >= 2, with nothing to train or remember.
    Derivation: none (an array, not a node; why it is allowed: derivations/07_score_function.md, Eq. 7.5).
    """
    f = backend.to_numpy(f_value.data if isinstance(f_value, Tensor) else f_value).astype(np.float64)
    n = f.shape[0]
    if n < 2:
        raise ValueError("leave_one_out_baseline: needs at least 2 samples")
    return (f.sum(axis=0, keepdims=True) - f) / (n - 1)


__all__: Sequence[str] = (
    "BaselineLike",
    "LearnedBaseline",
    "MovingAverageBaseline",
    "leave_one_out_baseline",
    "score_function_surrogate",
    "zero_with_gradient_of",
)
