"""Exercise `iwae` (lecture 5, tighter bounds): the IWAE bound with a stable log-mean-exp.

Task: write ``iwae_bound(log_w)`` from minivae ops (no backward to write: the engine
differentiates your composition). ``log_w`` holds k log importance weights per example,
ln w_i = ln p(x, z_i) - ln q(z_i | x), along axis 0 (shape (k, ...)). The bound is

    L_k = ln (1/k) Σ_i w_i = ln Σ_i exp(ln w_i) - ln k       (one value per example: shape (...)).

Log-weights are large negative numbers (ln p(x, z) ≈ -100 on MNIST, and far lower early in
training): exp(-1e4) is 0, and ln 0 = -inf. Subtract the maximum over k first:

    L_k = m + ln (1/k) Σ_i exp(ln w_i - m),   m = max_i ln w_i,

where every exp is <= 1 and at least one is 1. (The gradient is the same whether or not m
is detached from the graph: m cancels.) Useful ops: mv.max, mv.exp, mv.log, .sum, .detach().
Check:  minivae exercise check iwae iwae.py
"""

import math

import minivae as mv
from minivae.tensor import Tensor


def iwae_bound(log_w: Tensor) -> Tensor:
    k = log_w.shape[0]
    m = mv.max(log_w, axis=0, keepdims=True).detach()
    return (m + mv.log(mv.exp(log_w - m).sum(axis=0, keepdims=True)))[0] - math.log(k)
