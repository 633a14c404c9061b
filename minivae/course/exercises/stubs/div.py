"""Exercise `div` (lecture 2, a dense layer's backprop): a broadcasting binary op and its VJP.

Task: write ``forward(a, b)`` and ``vjp(g, a, b)`` for y = a / b with NumPy broadcasting.

    forward:  y = a / b, of the broadcast shape of a and b.
    vjp:      ∂y/∂a = 1 / b,   ∂y/∂b = -a / b²,  so in the broadcast shape
              ā = g / b,   b̄ = -g · a / b².
              Then each gradient must be brought back to ITS input's shape: where
              broadcasting added leading axes or stretched a size-1 axis, that input fed
              several outputs, and its gradient is the SUM over them (keep the size-1
              axes: sum with keepdims=True, then reshape to the input's shape).

a and b are arrays (0-d included, float32 or float64, the same dtype); return the tuple
(ā, b̄) with ā.shape == a.shape and b̄.shape == b.shape.
Check:  minivae exercise check div div.py
"""

from minivae.extend import array_module
from minivae.tensor import Tensor


def sum_to_shape(grad, shape):
    """Sum ``grad`` over the axes broadcasting added or stretched, giving ``shape``."""
    raise NotImplementedError("exercise div: write sum_to_shape")  # your code here


def forward(a, b):
    raise NotImplementedError("exercise div: write forward")  # your code here


def vjp(g, a, b):
    raise NotImplementedError("exercise div: write vjp")  # your code here


# -- given: your two functions as a minivae op
def div(a: Tensor, b: Tensor) -> Tensor:
    """Your forward and vjp as one node of the graph (given, not part of the exercise).
    Derivation: derivations/15_vjp_rules.md, Eq. 15.4, 15.7.
    """
    y = forward(a.data, b.data)
    return Tensor.from_op(y, (a, b), lambda g: vjp(g, a.data, b.data), "div (yours)")
