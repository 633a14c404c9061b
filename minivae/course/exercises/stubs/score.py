"""Exercise `score` (lecture 4, backprop through a stochastic node): the score-function
surrogate for a Bernoulli latent, with a baseline.

A Bernoulli latent b ~ Bern(σ(θ)) cannot be reparameterized. The score-function (REINFORCE)
estimator of ∇_θ E[f(b)] is  (f(b) - c) ∇_θ ln p(b | θ), where the baseline c (any number
not depending on b) lowers its variance without biasing it. In an autograd engine one writes
a SURROGATE whose gradient is that estimator, averaged over S samples:

    surrogate(θ) = (1/S) Σ_s (f(b_s) - c) · Σ_d ln p(b_s,d | θ_d),
    ln p(b | θ) = b ln σ(θ) + (1 - b) ln σ(-θ)     (its gradient: b - σ(θ)).

Task: write ``surrogate(logits, b, f, baseline)`` from minivae ops. logits θ: a Tensor of
shape (..., d); b: an array of samples in {0, 1}, shape (S, ..., d); f: an array of shape
(S, ...) (the values f(b_s), constants); baseline: an array that broadcasts with f (0-d, or
(...)). Return the surrogate, shape (...). Logits reach ±1e4: ln σ(θ) = -softplus(-θ) must
not become ln 0. Useful ops: mv.logsigmoid (stable), .sum, .mean; b, f and c are constants.
Check:  minivae exercise check score score.py
"""

import minivae as mv
from minivae.tensor import Tensor


def surrogate(logits: Tensor, b, f, baseline) -> Tensor:
    raise NotImplementedError("exercise score: write surrogate")  # your code here
