"""The diagonal Gaussian, its reparameterized sampling node and its analytic KL.

A VAE's encoder outputs mu and logvar = ln σ². Two nodes here have their own
hand-written backward because they are the heart of the lesson:

- :func:`reparameterize`: z = mu + exp(logvar/2) · eps. The randomness sits in
  eps, a constant of the graph, so gradients flow to mu and logvar.
- :func:`kl_normal_standard`: KL(N(mu, σ²) ‖ N(0, 1)) summed over the last axis.

Everything else (log-density, entropy, KL between two Gaussians) is composed from
elementary ops, so its gradient comes from the engine. A distribution here is a
vector distribution over the LAST axis: ``log_prob``, ``entropy`` and the KLs sum
over it, leaving one value per batch element.
"""

from __future__ import annotations

from typing import Any

from minivae.providers import backend, provider_for
from minivae import losses, ops
from minivae.random import Generator
from minivae.tensor import Tensor



def reparameterize(mu: Tensor, logvar: Tensor, eps: Any) -> Tensor:
    """The sampling node z = mu + exp(logvar / 2) · eps, with eps ~ N(0, I) given.

    ∂z/∂mu = 1                                  → mū = g
    ∂z/∂logvar = ½ exp(logvar / 2) · eps         → logvar̄ = g · ½ σ · eps
    ``eps`` may carry extra leading sample axes (k, ...); the engine sums them out.
    Derivation: derivations/06_reparameterization.md, Eq. 6.1-6.4.
    """
    mu, logvar = ops.binary_operands("rsample", mu, logvar)
    xp = backend.array_module(mu.data)
    eps = xp.asarray(eps.data if isinstance(eps, Tensor) else eps, dtype=mu.data.dtype)
    try:
        xp.broadcast_shapes(mu.shape, logvar.shape, eps.shape)
    except ValueError:
        raise ValueError(
            f"rsample: noise of shape {eps.shape} does not broadcast with mu {mu.shape} and logvar {logvar.shape}"
        ) from None
    provider = provider_for(mu.data)
    z = provider.reparam(mu.data, logvar.data, eps)

    def backward(g):
        return g, (provider.reparam_grad_logvar(g, logvar.data, eps) if logvar.requires_grad else None)

    out = Tensor.from_op(z, (mu, logvar), backward, "rsample", stochastic=True)
    out.eps = eps  # kept so a reader (or a gradient check) can replay this exact sample
    return out


def kl_normal_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag e^logvar) ‖ N(0, I)) = ½ Σ_d (e^logvar + mu² - 1 - logvar), summed over the last axis.

    ∂KL/∂mu = mu,   ∂KL/∂logvar = ½ (e^logvar - 1).
    Derivation: derivations/05_kl_gaussians.md, Eq. 5.1.
    """
    mu, logvar = ops.binary_operands("kl_normal_standard", mu, logvar)
    try:
        backend.numpy.broadcast_shapes(mu.shape, logvar.shape)
    except ValueError:
        raise ValueError(f"kl_normal_standard: mu {mu.shape} and logvar {logvar.shape} do not broadcast") from None
    if mu.ndim == 0 and logvar.ndim == 0:
        raise ValueError("kl_normal_standard: mu and logvar are 0-d; the KL sums over a last axis (give shape (d,) or (n, d))")
    provider = provider_for(mu.data)
    value = provider.kl_rows(mu.data, logvar.data)

    def backward(g):
        gmu, glv = provider.kl_grads(mu.data, logvar.data, g)
        return (gmu if mu.requires_grad else None), (glv if logvar.requires_grad else None)

    return Tensor.from_op(value, (mu, logvar), backward, "kl_normal_standard")


class Normal:
    """A Gaussian with independent coordinates: N(mu, diag(exp(logvar))) over the last axis.
    Derivation: derivations/05_kl_gaussians.md, Eq. 5.7 (which method computes which KL).
    """

    def __init__(self, mu: Any, logvar: Any) -> None:
        if not isinstance(mu, Tensor) and not isinstance(logvar, Tensor):
            mu, logvar = Tensor(mu), Tensor(logvar)
        self.mu, self.logvar = ops.binary_operands("Normal", mu, logvar)
        self.eps: Any = None

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def stddev(self) -> Tensor:
        return ops.exp(0.5 * self.logvar)

    @property
    def shape(self) -> tuple[int, ...]:
        return _broadcast_shape(self.mu.shape, self.logvar.shape)

    def rsample(self, rng: Generator | None = None, eps: Any = None, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """A differentiable sample z = mu + σ·eps (see :func:`reparameterize`).

        Pass either ``rng`` (eps is drawn from it, shape ``sample_shape + shape``) or
        ``eps`` itself (fixed noise: common random numbers for gradient checks). The
        noise used is kept in ``self.eps`` and on the returned tensor as ``z.eps``.
        Derivation: derivations/06_reparameterization.md, Eq. 6.1.
        """
        if eps is None:
            if rng is None:
                raise ValueError("Normal.rsample: pass rng=Generator(seed) to draw noise, or eps=... to fix it")
            if not isinstance(rng, Generator):  # a seed or NumPy's generator: PyTorch/NumPy habits
                raise TypeError("Normal.rsample: rng must be a minivae.random.Generator (mv.random.Generator(seed)), "
                                f"got {type(rng).__name__} {rng!r}"[:200])
            eps = rng.normal(tuple(sample_shape) + self.shape, dtype=self.mu.dtype)
        z = reparameterize(self.mu, self.logvar, eps)
        self.eps = z.eps
        return z

    def sample(self, rng: Generator, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """A sample with no gradient (for generation and evaluation).
        Derivation: none (a detached draw, not a differentiable node)."""
        with_grad = self.rsample(rng=rng, sample_shape=sample_shape)
        return with_grad.detach()

    def log_prob(self, z: Any) -> Tensor:
        """ln N(z; mu, σ²) = -½ Σ_d [ln 2π + logvar + (z - mu)² e^-logvar], summed over the last axis.
        Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.1."""
        z = z if isinstance(z, Tensor) else ops.as_tensor(z, self.mu, "log_prob")
        return -losses.gaussian_nll(self.mu, z, self.logvar, reduction="sum", axis=-1)

    def entropy(self) -> Tensor:
        """H = ½ Σ_d (ln 2π + 1 + logvar), summed over the last axis (broadcast to mu's shape).
        Derivation: derivations/09_entropy.md, Eq. 9.3-9.4."""
        logvar = self.logvar + 0.0 * self.mu  # broadcast to the full shape
        return 0.5 * (losses.LOG_2PI + 1 + logvar).sum(axis=-1)

    def kl_standard(self) -> Tensor:
        """KL(self ‖ N(0, I)) summed over the last axis (the analytic node).
        Derivation: derivations/05_kl_gaussians.md, Eq. 5.1."""
        return kl_normal_standard(self.mu, self.logvar)

    def kl(self, other: "Normal") -> Tensor:
        """KL(self ‖ other) = ½ Σ_d [lv₂ - lv₁ + (e^lv₁ + (mu₁ - mu₂)²) e^-lv₂ - 1], summed over the last axis.
        Derivation: derivations/05_kl_gaussians.md, Eq. 5.2."""
        if not isinstance(other, Normal):
            raise TypeError(f"Normal.kl: other must be a Normal, got {type(other).__name__}")
        diff = self.mu - other.mu
        terms = other.logvar - self.logvar + (ops.exp(self.logvar) + diff * diff) * ops.exp(-other.logvar) - 1
        return 0.5 * terms.sum(axis=-1)

    def __repr__(self) -> str:
        return f"Normal(shape={self.shape}, dtype={self.mu.dtype})"


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape NumPy broadcasting gives ``a`` and ``b`` (pure Python, any backend)."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ValueError(f"Normal: mu shape {a} and logvar shape {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)
