"""Backprop through a stochastic node: every sampling node and gradient estimator in one place.

A sample z ~ q_φ is not a function of φ in the usual sense, so a graph that samples
needs one of these:

=================================  ==========================================  ==============================
node                               gradient                                     where
=================================  ==========================================  ==============================
``reparameterize`` /               pathwise: z = mu + σ·eps, eps a constant      :mod:`minivae.distributions`
``Normal.rsample``                 (unbiased, low variance; continuous z)
``score_function_surrogate``       (f - b) ∇ ln q(z) (REINFORCE; unbiased,     :mod:`.score_function`
                                   noisy; any z, f a black box)
baselines b: ``MovingAverage-``    shrink (f - b), keep the mean                :mod:`.score_function`
``Baseline``, ``LearnedBaseline``,
``leave_one_out_baseline``
``sample_bernoulli``,              none: constants, for the score function     :mod:`.discrete`
``sample_categorical``
``straight_through`` (+ its        forward hard z, backward as if z were its   :mod:`.discrete`
Bernoulli / categorical forms)     mean (biased, cheap)
``relaxed_bernoulli``,             reparameterized relaxation at temperature    :mod:`.discrete`
``gumbel_softmax``                 τ (biased, low variance)
=================================  ==========================================  ==============================

Derivations: derivations/06_reparameterization.md (pathwise),
derivations/07_score_function.md (score function, baselines),
derivations/14_straight_through.md (straight-through).
"""

from __future__ import annotations

from minivae.distributions import Normal, reparameterize
from minivae.stochastic.discrete import (
    bernoulli_kl_uniform,
    bernoulli_kl_uniform_per_dim,
    bernoulli_log_prob,
    categorical_log_prob,
    gumbel_noise,
    gumbel_softmax,
    logistic_noise,
    one_hot_argmax,
    relaxed_bernoulli,
    sample_bernoulli,
    sample_categorical,
    straight_through,
    straight_through_bernoulli,
    straight_through_categorical,
)
from minivae.stochastic.score_function import (
    LearnedBaseline,
    MovingAverageBaseline,
    leave_one_out_baseline,
    score_function_surrogate,
    zero_with_gradient_of,
)

__all__ = [
    "LearnedBaseline", "MovingAverageBaseline", "Normal", "bernoulli_kl_uniform", "bernoulli_kl_uniform_per_dim",
    "bernoulli_log_prob", "categorical_log_prob", "gumbel_noise", "gumbel_softmax", "leave_one_out_baseline",
    "logistic_noise", "one_hot_argmax", "relaxed_bernoulli", "reparameterize", "sample_bernoulli",
    "sample_categorical", "score_function_surrogate", "straight_through", "straight_through_bernoulli",
    "straight_through_categorical", "zero_with_gradient_of",
]
