"""Exercise `reparameterize` (lecture 4, backprop through a stochastic node): the sampling node.

Task: write ``forward(mu, logvar, eps)`` and ``vjp(g, mu, logvar, eps)`` for the
reparameterized sample of q = N(mu, diag e^logvar):

    forward:  z = mu + exp(logvar / 2) · eps,   eps ~ N(0, I) given (a constant of the graph).
    vjp:      ∂z/∂mu = 1,   ∂z/∂logvar = ½ exp(logvar / 2) · eps,  so in z's shape
              mū = g,   logvar̄ = g · ½ exp(logvar / 2) · eps.
              eps may carry extra leading sample axes (k, ..., d) that mu and logvar do
              not have: z then has eps's shape, and each gradient must be summed over the
              axes broadcasting added or stretched, back to mu's and logvar's own shapes.

mu and logvar: arrays of the same shape (0-d included), float32 or float64; eps broadcasts
with them. Return (mū, logvar̄) with mū.shape == mu.shape and logvar̄.shape == logvar.shape.
Derivation: derivations/06_reparameterization.md (`minivae derive 06 --show` prints it).
Check:  minivae exercise check reparameterize reparameterize.py
"""

from minivae.extend import array_module
from minivae.tensor import Tensor


def sum_to_shape(grad, shape):
    """Sum ``grad`` over the axes broadcasting added or stretched, giving ``shape``."""
    raise NotImplementedError("exercise reparameterize: write sum_to_shape")  # your code here


def forward(mu, logvar, eps):
    raise NotImplementedError("exercise reparameterize: write forward")  # your code here


def vjp(g, mu, logvar, eps):
    raise NotImplementedError("exercise reparameterize: write vjp")  # your code here


# -- given: your two functions as a minivae op, with the library's signature, so
#    `with mv.extend.replace_op("reparameterize", reparameterize):` trains a VAE with it
def reparameterize(mu: Tensor, logvar: Tensor, eps) -> Tensor:
    """Your forward and vjp as one node of the graph (given, not part of the exercise).
    Derivation: derivations/06_reparameterization.md, Eq. 6.4.
    """
    eps = getattr(eps, "data", eps)
    eps = array_module(mu).asarray(eps, dtype=mu.dtype)
    z = forward(mu.data, logvar.data, eps)
    out = Tensor.from_op(z, (mu, logvar), lambda g: vjp(g, mu.data, logvar.data, eps), "rsample (yours)",
                         stochastic=True)
    out.eps = eps  # Normal.rsample keeps the noise it used
    return out
