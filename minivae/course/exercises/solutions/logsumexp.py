"""Exercise `logsumexp` (lecture 5, tighter bounds): log Σ exp over the last axis, and its VJP.

Task: write ``forward(x)`` and ``vjp(g, x, y)`` for y = log Σ_j exp(x_j) over the LAST axis.

    forward:  y has x's shape without its last axis. It must not overflow: subtract the
              row maximum m first,  y = m + log Σ_j exp(x_j - m)  (every exp is <= 1).
    vjp:      ∂y/∂x_j = exp(x_j - y) = softmax(x)_j, so  x̄ = g[..., None] · exp(x - y[..., None]).
              g has y's shape (one number per row): for a matrix x, g is a vector, and it
              must be lined up with x's rows (g[..., None]), not broadcast against x's columns.

x has at least one axis (float32 or float64); y and the gradient keep its dtype.
Check:  minivae exercise check logsumexp logsumexp.py
"""

from minivae.extend import array_module
from minivae.tensor import Tensor


def forward(x):
    xp = array_module(x)
    m = x.max(axis=-1, keepdims=True)
    return (m + xp.log(xp.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def vjp(g, x, y):
    xp = array_module(x)
    return g[..., None] * xp.exp(x - y[..., None])


# -- given: your two functions as a minivae op
def logsumexp(x: Tensor) -> Tensor:
    """Your forward and vjp as one node of the graph (given, not part of the exercise).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.33.
    """
    y = forward(x.data)
    return Tensor.from_op(y, (x,), lambda g: (vjp(g, x.data, y),), "logsumexp (yours)")
