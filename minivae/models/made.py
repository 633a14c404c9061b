"""An autoregressive decoder from masked dense layers (MADE, Germain et al., 2015), and a VAE using it.

A factorised decoder says the pixels are independent given z:

    p(x | z) = Π_i Bernoulli(x_i; σ(f_i(z))),

so everything that ties pixels together (strokes, the shape of a digit) must be
carried by z. An autoregressive decoder drops that assumption:

    p(x | z) = Π_i p(x_i | x_<i, z) = Π_i Bernoulli(x_i; σ(l_i(x_<i, z))),

which can represent ANY distribution over x, even with z ignored. That is the
lesson of the course notes: the more the decoder can model on its own, the less
information the ELBO's KL price makes worth putting in z (see
``minivae/labs/decoders.py``).

MADE computes all the l_i in one pass of an ordinary dense network whose weight
matrices are multiplied by fixed 0/1 masks, so that l_i can only see x_1..x_{i-1}.
Every unit gets a degree: input x_d has degree d (1..D); hidden unit k has a degree
m_k in 1..D-1 (assigned cyclically here, so no randomness is needed to rebuild
the masks); output l_i has degree i. A connection is kept when

    input d  -> hidden k:    m_k >= d          (the unit may depend on x_1..x_{m_k})
    hidden k' -> hidden k:   m_k >= m_k'
    hidden k -> output i:    i > m_k           (strict: l_i never sees x_i itself)
    input d  -> output i:    i > d             (the direct, strictly lower-triangular path)

By induction every hidden unit of degree m depends only on x_1..x_m, so l_i
depends only on x_<i. For D = 4 and three hidden units of degrees (1, 2, 3), the
input->hidden mask (rows: inputs 1..4, columns: units) and hidden->output mask
(rows: units, columns: outputs 1..4) are

    [[1 1 1]        [[0 1 1 1]
     [0 1 1]         [0 0 1 1]
     [0 0 1]         [0 0 0 1]]
     [0 0 0]]

x_4 feeds nothing and l_1 reads nothing but the bias and z: p(x_1 | z) has no
pixels to condition on, as it should.

z enters every hidden layer through an unmasked linear map, and the whole
factorised decoder f(z) is kept as a base: l = f(z) + [autoregressive terms].
``made_hidden=None`` leaves only f(z) (the plain factorised VAE decoder);
``made_hidden=()`` adds only the direct input->output path (a logistic
autoregressive model, "FVSBN"); hidden widths add masked hidden layers, the
capacity knob of the lab.

The gradient through a mask. A masked layer computes y = x @ (W ⊙ M) + b. Its VJP
(see :func:`masked_linear`) is

    x̄ = g @ (W ⊙ M)ᵀ,       W̄ = (xᵀ @ g) ⊙ M,       b̄ = Σ_rows g,

so a masked-out weight receives exactly zero gradient and stays at zero forever:
the autoregressive property is preserved by training, not only at initialisation.
And because x̄ also flows through W ⊙ M, ∂l_i/∂x_j = 0 for every j >= i, which the
tests check with the engine's own backward pass.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from minivae import ops
from minivae.distributions import Normal, kl_normal_standard
from minivae.models.ae import Decoder, as_input
from minivae.models.vae import GaussianEncoder, kl_warmup_weight, standard_normal_log_prob
from minivae.nn import Linear, Module, Parameter
from minivae.providers import backend
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad



# =============================================================================
# The masked dense layer
# =============================================================================


def masked_linear(x: Tensor, weight: Tensor, mask: Any, bias: Tensor | None = None) -> Tensor:
    """y = x @ (W ⊙ M) + b, with a fixed 0/1 mask M of W's shape.

    VJP:   x̄ = g @ (W ⊙ M)ᵀ,    W̄ = (xᵀ @ g) ⊙ M,    b̄ = Σ_rows g.
    Differentiated: x, W, b. Not differentiated: the mask (a constant of the
    architecture). W̄ is masked too, so a weight the mask removes gets gradient 0.
    ``x`` may have leading batch axes (..., in).
    Derivation: derivations/02_backprop_dense.md, Eq. 2.1 (the dense layer's VJPs; the mask is
    a constant factor of each weight, so it multiplies W̄ elementwise).
    """
    if not isinstance(weight, Tensor):
        raise TypeError(f"masked_linear: the weight must be a minivae Tensor, got {type(weight).__name__}")
    x = x if isinstance(x, Tensor) else Tensor(x, dtype=weight.dtype)
    if x.dtype != weight.dtype:
        raise TypeError(f"masked_linear: input is {x.dtype} {x.shape} but the weight is {weight.dtype} {weight.shape}")
    xp = backend.array_module(weight.data)
    m = xp.asarray(mask).astype(weight.data.dtype)
    if weight.ndim != 2 or m.shape != weight.shape:
        raise ValueError(f"masked_linear: weight {weight.shape} and mask {tuple(m.shape)} must be 2-D of one shape")
    if x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"masked_linear: input of shape {x.shape} does not fit weight of shape {weight.shape}")
    if bias is not None:
        if not isinstance(bias, Tensor) or bias.dtype != weight.dtype:
            raise TypeError(f"masked_linear: the bias must be a Tensor of the weight's dtype {weight.dtype}")
        if bias.shape != (weight.shape[1],):
            raise ValueError(f"masked_linear: bias has shape {bias.shape}, expected ({weight.shape[1]},)")
    w = weight.data * m  # the weights actually used
    rows = x.data.reshape(-1, x.shape[-1])
    out = rows @ w
    if bias is not None:
        out += bias.data
    out = out.reshape(x.shape[:-1] + (weight.shape[1],))

    def backward(g):
        g2 = g.reshape(-1, weight.shape[1])
        gx = (g2 @ w.T).reshape(x.shape) if x.requires_grad else None
        gw = (rows.T @ g2) * m if weight.requires_grad else None
        gb = g2.sum(axis=0) if bias is not None and bias.requires_grad else None
        return (gx, gw) if bias is None else (gx, gw, gb)

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, backward, "masked_linear")


def hidden_degrees(width: int, dim: int) -> np.ndarray:
    """Degrees 1..dim-1 for ``width`` hidden units, assigned cyclically (deterministic)."""
    if dim < 2:
        raise ValueError(f"MADE: needs at least 2 inputs to order, got {dim}")
    return np.arange(width) % (dim - 1) + 1


def made_masks(dim: int, hidden: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """(masks of the hidden layers in order, then hidden->output; the direct input->output mask).

    Degrees: inputs and outputs 1..dim, hidden units from :func:`hidden_degrees`.
    """
    degrees_in = np.arange(1, dim + 1)
    masks: list[np.ndarray] = []
    previous = degrees_in
    for width in hidden:
        current = hidden_degrees(width, dim)
        masks.append(current[None, :] >= previous[:, None])  # unit k sees units/inputs of degree <= m_k
        previous = current
    degrees_out = np.arange(1, dim + 1)
    masks.append(degrees_out[None, :] > previous[:, None])  # output i sees degrees < i
    direct = degrees_out[None, :] > degrees_in[:, None]
    return masks, direct


class MaskedLinear(Module):
    """A dense layer whose weight is multiplied by a fixed 0/1 mask (see :func:`masked_linear`)."""

    def __init__(self, mask: np.ndarray, *, rng: Generator, init: str = "he", bias: bool = True) -> None:
        super().__init__()
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"MaskedLinear: the mask must be 2-D (in, out), got shape {mask.shape}")
        self.in_features, self.out_features = mask.shape
        fan_in = max(1.0, float(mask.sum(axis=0).mean()))  # inputs a unit really has, on average
        std = math.sqrt((2.0 if init == "he" else 1.0) / fan_in)
        weight = backend.to_numpy(rng.normal(mask.shape, dtype="float64", std=std)) * mask  # masked weights start at 0
        self.weight = Parameter(weight, dtype="float32")
        self.bias = Parameter(np.zeros(self.out_features), dtype="float32") if bias else None
        self.mask = backend.to_backend(mask, dtype="float32")

    def forward(self, x: Tensor) -> Tensor:
        return masked_linear(x, self.weight, self.mask, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, kept {int(backend.to_numpy(self.mask).sum())} of {self.mask.size}"


# =============================================================================
# The decoder
# =============================================================================


class MADEDecoder(Module):
    """p(x | z) = Π_i Bernoulli(x_i; σ(l_i)),  l = f(z) + x @ (W_d ⊙ M_d) + MADE(x, z).

    ``factorised_hidden``: hidden widths of f, the ordinary decoder MLP z -> logits.
    ``made_hidden``: None (no autoregressive part: f alone), () (the direct path
    only) or the widths of the masked hidden layers (z added to each one through
    an unmasked linear map). See the module docstring for the masks.
    """

    def __init__(
        self,
        latent: int,
        output_dim: int,
        factorised_hidden: int | Sequence[int],
        made_hidden: Sequence[int] | None,
        *,
        rng: Generator,
        condition_hidden: bool = True,
    ) -> None:
        super().__init__()
        self.latent, self.output_dim = int(latent), int(output_dim)
        self.condition_hidden = bool(condition_hidden)
        self.base = Decoder(self.latent, factorised_hidden, self.output_dim, rng=rng, likelihood="bernoulli")
        self.autoregressive = made_hidden is not None
        self.made_hidden = tuple(int(h) for h in made_hidden) if made_hidden is not None else None
        self.n_hidden = 0
        if self.autoregressive:
            if any(h < 1 for h in self.made_hidden):
                raise ValueError(f"MADEDecoder: made_hidden widths must be positive, got {made_hidden!r}")
            masks, direct = made_masks(self.output_dim, self.made_hidden)
            self.direct = MaskedLinear(direct, rng=rng, init="xavier", bias=False)
            self.n_hidden = len(self.made_hidden)
            for i, width in enumerate(self.made_hidden):
                setattr(self, f"masked{i}", MaskedLinear(masks[i], rng=rng))
                if self.condition_hidden:
                    setattr(self, f"cond{i}", Linear(self.latent, width, rng=rng, init="he", bias=False))
            if self.n_hidden:
                self.out = MaskedLinear(masks[-1], rng=rng, init="xavier", bias=False)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        """Logits l (..., D) for pixels x (N, D) given z (N, L) or (k, N, L); l_i depends on x_<i and z only."""
        logits = self.base(z)
        if not self.autoregressive:
            return logits
        logits = logits + self.direct(x)
        h = x
        for i in range(self.n_hidden):
            u = getattr(self, f"masked{i}")(h)
            h = ops.relu(u + getattr(self, f"cond{i}")(z) if self.condition_hidden else u)
        if self.n_hidden:
            logits = logits + self.out(h)
        return logits

    def nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """-ln p(x | z) summed over pixels (x broadcasts against leading sample axes of the logits)."""
        return ops.bce_with_logits_sum(logits, x, axis=-1)

    def generate(self, z: Tensor, rng: Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ancestral sampling, one pixel after another: (probabilities p_i, pixels x_i), each (N, D).

        p_i = σ(l_i(x_<i, z)) given the pixels drawn before it. With ``rng`` None the
        pixels are set to 1 when p_i > ½ (greedy, deterministic) instead of drawn.
        """
        n = z.shape[0]
        x = np.zeros((n, self.output_dim))
        probs = np.zeros((n, self.output_dim))
        with no_grad():
            if not self.autoregressive:  # no dependence on x: one pass
                probs = backend.to_numpy(ops.sigmoid(self.forward(z, Tensor(x, dtype=z.dtype))).data).astype(np.float64)
                x = (rng.numpy.random(probs.shape) < probs) if rng is not None else probs > 0.5
                return probs, x.astype(np.float64)
            for i in range(self.output_dim):
                logits = self.forward(z, Tensor(x, dtype=z.dtype))
                p = backend.to_numpy(ops.sigmoid(logits[:, i]).data).astype(np.float64)
                probs[:, i] = p
                x[:, i] = (rng.numpy.random(n) < p) if rng is not None else (p > 0.5)
        return probs, x


# =============================================================================
# The VAE with that decoder
# =============================================================================


class MADEVAE(Module):
    """A Gaussian-encoder VAE whose decoder is :class:`MADEDecoder`; Bernoulli pixels (binarise the data).

    loss = mean_batch [ -ln p(x | z) ] + w · R,   z ~ q(z | x) (one reparameterised draw), where the rate
    term R is the KL, mean over the batch, or with ``free_bits`` λ > 0 (Kingma et al., 2016)

        R = Σ_d max(λ, mean_batch KL_d):

    a dimension whose KL is below λ nats costs a constant, so the gradient stops
    pushing it towards the prior (``ops.clip`` passes no gradient below λ). The
    weight w ramps from 0 to ``beta`` over ``warmup_steps`` optimizer steps (KL
    warm-up). ``neg_elbo`` is always the true bound: recon + KL, neither trick applied.
    """

    conditional = False
    prior_label = "z ~ N(0, I), then the pixels one by one"

    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        made_hidden: Sequence[int] | None = (64,),
        condition_hidden: bool = True,
        beta: float = 1.0,
        warmup_steps: int = 0,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if beta < 0 or warmup_steps < 0 or free_bits < 0:
            raise ValueError(
                f"MADEVAE: beta, warmup_steps and free_bits must be >= 0, got {beta}, {warmup_steps}, {free_bits}"
            )
        self.input_dim, self.latent = int(input_dim), int(latent)
        self.beta, self.warmup_steps, self.free_bits = float(beta), int(warmup_steps), float(free_bits)
        self.encoder = GaussianEncoder(input_dim, hidden, latent, rng=rng)
        self.decoder = MADEDecoder(latent, input_dim, hidden, made_hidden, rng=rng, condition_hidden=condition_hidden)

    def posterior(self, x: Any, y: np.ndarray | None = None) -> Normal:
        return self.encoder(as_input(x, self))

    def kl_weight(self, step: int | None = None) -> float:
        """β after ``step`` optimizer steps of the warm-up (None: past it); see :func:`kl_warmup_weight`."""
        return kl_warmup_weight(self.beta, self.warmup_steps, step)

    def loss(self, x: Any, y: np.ndarray | None, rng: Generator, step: int | None = None) -> dict[str, Tensor]:
        """Reconstruction + weighted rate (see the class docstring); entries are batch means in nats."""
        x = as_input(x, self)
        q = self.posterior(x)
        z = q.rsample(rng=rng)
        recon = self.decoder.nll(self.decoder(z, x), x)
        kl = q.kl_standard()
        if self.free_bits > 0:
            mu, logvar = q.mu, q.logvar
            # the KL node per dimension: it sums over the last axis, here of size 1
            kl_dims = kl_normal_standard(ops.unsqueeze(mu, -1), ops.unsqueeze(logvar, -1)).mean(axis=0)
            rate = ops.clip(kl_dims, self.free_bits, math.inf).sum()
        else:
            rate = kl.mean()
        return {
            "loss": recon.mean() + self.kl_weight(step) * rate,
            "recon": recon.mean(),
            "kl": kl.mean(),
            "neg_elbo": (recon + kl).mean(),
        }

    def log_weights(self, x: Any, y: np.ndarray | None, k: int, rng: Generator) -> Tensor:
        """ln p(x | z_i) + ln p(z_i) - ln q(z_i | x) for k draws z_i ~ q(z | x): shape (k, batch)."""
        x = as_input(x, self)
        q = self.posterior(x)
        z = q.rsample(rng=rng, sample_shape=(int(k),))
        log_px_z = -self.decoder.nll(self.decoder(z, x), x)
        log_pz = standard_normal_log_prob(z)
        return log_px_z + log_pz - q.log_prob(z)

    def encode(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        """The posterior mean mu(x)."""
        return self.posterior(x).mean

    def decode(self, z: Any, y: np.ndarray | None = None) -> Tensor:
        """Greedy autoregressive decoding: p_i = P(x_i = 1 | x_<i, z) with x_j = [p_j > ½] for j < i."""
        probs, _ = self.decoder.generate(as_input(z, self))
        return Tensor(probs, dtype=self.dtype)

    def reconstruct(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, rng: Generator, y: np.ndarray | None = None) -> Tensor:
        """z ~ N(0, I), then pixels drawn one by one; returns each pixel's probability given those before it."""
        z = Tensor(rng.normal((int(n), self.latent), dtype=self.dtype), dtype=self.dtype)
        probs, _ = self.decoder.generate(z, rng)
        return Tensor(probs, dtype=self.dtype)
