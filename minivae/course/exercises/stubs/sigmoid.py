"""Exercise `sigmoid` (lecture 1, an autograd engine by hand): the sigmoid and its VJP.

Task: write ``forward(x)`` and ``vjp(g, x, y)`` for y = σ(x) = 1 / (1 + e^-x), elementwise.

    forward:  y = σ(x). It must not overflow: for x = -1e4, e^-x = e^10000 is inf.
              Use  σ(x) = 1 / (1 + e^-x) for x >= 0  and  σ(x) = e^x / (1 + e^x) for x < 0,
              i.e. only ever exponentiate -|x|.
    vjp:      dσ/dx = σ(x) (1 - σ(x)) = y (1 - y), so  x̄ = g · y · (1 - y),
              where g is the upstream gradient dL/dy (same shape as x).

x is a NumPy (or CuPy) array of any shape, 0-d included, float32 or float64; return arrays
of x's shape and dtype. Get the array module with ``xp = array_module(x)``.
Check:  minivae exercise check sigmoid sigmoid.py
"""

from minivae.extend import array_module
from minivae.tensor import Tensor


def forward(x):
    raise NotImplementedError("exercise sigmoid: write forward")  # your code here


def vjp(g, x, y):
    raise NotImplementedError("exercise sigmoid: write vjp")  # your code here


# -- given: your two functions as a minivae op (it plugs into the engine like the built-in one)
def sigmoid(x: Tensor) -> Tensor:
    """Your forward and vjp as one node of the graph (given, not part of the exercise).
    Derivation: derivations/02_backprop_dense.md, Eq. 2.3.
    """
    y = forward(x.data)
    return Tensor.from_op(y, (x,), lambda g: (vjp(g, x.data, y),), "sigmoid (yours)")
