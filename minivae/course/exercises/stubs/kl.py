"""Exercise `kl` (lecture 3, from AE to VAE): the Gaussian KL to N(0, I) and its gradient.

Task: write ``forward(mu, logvar)`` and ``vjp(g, mu, logvar)`` for the KL divergence of a
diagonal Gaussian q = N(mu, diag e^logvar) from the standard normal, summed over the last axis:

    forward:  KL = ½ Σ_d ( e^logvar_d + mu_d² - 1 - logvar_d )      (>= 0; 0 only at mu = 0, logvar = 0)
    vjp:      ∂KL/∂mu_d = mu_d,   ∂KL/∂logvar_d = ½ (e^logvar_d - 1);
              g has KL's shape (one number per row), so  mū = g[..., None] · mu,
              logvar̄ = g[..., None] · ½ (e^logvar - 1).

mu and logvar have the same shape (..., d) (float32 or float64); the KL has shape (...).
Derivation: derivations/05_kl_gaussians.md (`minivae derive 05 --show` prints it).
Check:  minivae exercise check kl kl.py
"""

from minivae.extend import array_module
from minivae.tensor import Tensor


def forward(mu, logvar):
    raise NotImplementedError("exercise kl: write forward")  # your code here


def vjp(g, mu, logvar):
    raise NotImplementedError("exercise kl: write vjp")  # your code here


# -- given: your two functions as a minivae op, with the library's signature, so
#    `with mv.extend.replace_op("kl_normal_standard", kl_normal_standard):` trains a VAE with it
def kl_normal_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """Your forward and vjp as one node of the graph (given, not part of the exercise).
    Derivation: derivations/05_kl_gaussians.md, Eq. 5.1.
    """
    y = forward(mu.data, logvar.data)
    return Tensor.from_op(y, (mu, logvar), lambda g: vjp(g, mu.data, logvar.data), "kl (yours)")
