"""The vector-quantised autoencoder, VQ-VAE (van den Oord, Vinyals & Kavukcuoglu, 2017).

The encoder maps x to M vectors z_e,1..z_e,M of dimension D (M "positions": the
paper quantises every cell of a convolutional feature map; with dense layers we
simply split the encoder output into M pieces). Each piece is replaced by the
nearest of K codebook vectors e_1..e_K,

    k_m = argmin_k ‖z_e,m - e_k‖²,        z_q,m = e_{k_m},

and the decoder sees z_q. So an image is described by M integers in {1..K}.

The loss, per example (sg[·] is the stop-gradient: its value, no derivative):

    L = -ln p(x | z_q)  +  ‖sg[z_e] - e‖²  +  β ‖z_e - sg[e]‖²
        reconstruction     codebook term     commitment term

- The argmin is piecewise constant in z_e: its derivative is 0 wherever it is
  defined. The reconstruction gradient would never reach the encoder, so the
  decoder's input is the *straight-through copy* z_e + sg[z_q - z_e]: its value
  is z_q, its gradient with respect to z_e is the identity. The gradient that the
  decoder computes at z_q is handed to z_e unchanged (a biased surrogate; see
  ``derivations/14_straight_through.md``).
- The reconstruction term therefore never moves the codebook. The codebook term
  does: its gradient 2(e_k - z_e) pulls each used code towards the encoder
  outputs assigned to it (a k-means step done by gradient descent).
- The commitment term keeps the encoder's outputs near their codes, so that
  z_e cannot drift away while the codebook chases it. The paper used β = 0.25.

Codebook updates: by the loss (the codebook term above, with the optimizer; what
the paper's experiments used, section 3.2), or by exponential moving averages
(``ema=True``, the alternative the paper mentions in section 3.2 and details in
its appendix A.1 but did not use for its experiments). With EMA the codebook term
is dropped and, after every training step, each code becomes the running mean of
the encoder outputs assigned to it:

    n_k ← γ n_k + (1 - γ) c_k,      m_k ← γ m_k + (1 - γ) s_k,      e_k ← m_k / n_k,

c_k the number of assignments to code k in the batch and s_k the sum of their z_e.
(n_k and m_k start at 1 and e_k, as if every code had been assigned to once.)

Diagnostics: how many codes are used, the perplexity exp(H) of the code
frequencies (K if all codes are used equally, 1 if one code takes everything),
dead codes (never chosen). ``restart_dead=True`` moves a code whose running usage
falls below 3 % of a fair share (1/K) onto a random encoder output of the batch.

Generation: ``fit_prior(x)`` counts how often each code is used at each position
on the data; ``sample`` draws each position's code independently from those
frequencies and decodes. The paper fits an autoregressive PixelCNN over the code
grid instead, p(k_1..k_M) = Π_m p(k_m | k_<m): it learns which codes go
together (the top of a 7 with the bottom of a 7), which the independent
frequencies cannot, so their samples mix parts of different digits.

Bound: with a uniform prior over the K^M code tuples and a deterministic
q(k | x), KL(q ‖ p) = M ln K, so ``neg_elbo`` = recon + M ln K (as in the paper).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from minivae.providers import backend
from minivae.models.ae import Decoder, Encoder, as_input
from minivae.nn import Module, Parameter
from minivae.random import Generator
from minivae.tensor import Tensor, is_grad_enabled, no_grad

#: a code whose running share of the assignments is below DEAD_FRACTION / K counts as dead (restart_dead)
DEAD_FRACTION = 0.03
#: decay of the running usage that decides which codes are dead
USAGE_DECAY = 0.99


# =============================================================================
# The nodes: nearest-code lookup, stop-gradient, straight-through copy
# =============================================================================


def _rows(t: Tensor, where: str, width: int) -> Any:
    if t.ndim < 1 or t.shape[-1] != width:
        raise ValueError(f"{where}: expected vectors of size {width} on the last axis, got shape {t.shape}")
    return t.data.reshape(-1, width)


def nearest_code(z_e: Tensor, codebook: Tensor) -> tuple[Tensor, np.ndarray]:
    """z_q = e_k with k = argmin_k ‖z_e - e_k‖², for every vector on z_e's last axis.

    Args:
        z_e: encoder outputs, shape (..., D).
        codebook: the K codes as rows, shape (K, D).

    Returns:
        ``(z_q, indices)``: z_q of z_e's shape, and the chosen code of each vector
        as a NumPy int array of shape z_e.shape[:-1].

    What is differentiated:
        - the codebook: z_q,i = e_{k_i} is a row lookup, so ∂z_q,i/∂e_k = I when
          k = k_i and 0 otherwise. The VJP scatters each upstream row back onto the
          code it came from: ē_k = Σ_{i: k_i = k} g_i (written as onehotᵀ @ g).
        - z_e: NOT differentiated. Between the boundaries of the Voronoi cells the
          choice k_i does not change, so ∂z_q/∂z_e = 0; on a boundary it jumps. The
          node returns no gradient for z_e, which is the true derivative almost
          everywhere (a finite-difference check agrees away from boundaries). To
          let the reconstruction gradient reach the encoder anyway, feed the
          decoder :func:`straight_through` (z_e, z_q).

    Derivation: derivations/14_straight_through.md (Eq. 14.1 and 14.5).
    """
    if not isinstance(z_e, Tensor) or not isinstance(codebook, Tensor):
        raise TypeError("nearest_code: z_e and codebook must be minivae Tensors")
    if codebook.ndim != 2 or codebook.shape[0] < 1:
        raise ValueError(f"nearest_code: the codebook must have shape (K >= 1, D), got {codebook.shape}")
    if z_e.dtype != codebook.dtype:
        raise TypeError(f"nearest_code: z_e is {z_e.dtype} {z_e.shape} but the codebook is {codebook.dtype} {codebook.shape}")
    k, d = codebook.shape
    rows = _rows(z_e, "nearest_code", d)
    xp = backend.array_module(rows)
    e = codebook.data
    # ‖z - e‖² = ‖z‖² - 2 z·e + ‖e‖²; the ‖z‖² term does not change the argmin.
    distances = (e * e).sum(axis=1)[None, :] - 2.0 * (rows @ e.T)
    index = xp.argmin(distances, axis=1)
    out = e[index].reshape(z_e.shape)

    def backward(g):
        onehot = xp.zeros((rows.shape[0], k), dtype=g.dtype)
        onehot[xp.arange(rows.shape[0]), index] = 1.0
        return None, onehot.T @ g.reshape(-1, d)

    z_q = Tensor.from_op(out, (z_e, codebook), backward, "nearest_code")
    return z_q, backend.to_numpy(index).reshape(z_e.shape[:-1])


def stop_gradient(x: Tensor) -> Tensor:
    """sg[x]: forward value x, derivative 0 (the VJP returns nothing for x).

    Written as a node (rather than ``x.detach()``) so the graph picture shows where
    the gradient is cut. ∂sg[x]/∂x := 0 by definition; the loss it appears in is a
    surrogate whose gradient, not value, is what we want.
    Derivation: derivations/14_straight_through.md (Eq. 14.5, 14.7).
    """
    return Tensor.from_op(x.data, (x,), lambda g: (None,), "stop_gradient")


def straight_through(z_e: Tensor, z_q: Tensor) -> Tensor:
    """z_e + sg[z_q - z_e]: forward value z_q, gradient copied to z_e unchanged.

    VJP: z̄_e = g (∂out/∂z_e := I, the straight-through rule), z̄_q = nothing (the
    sg[·] makes z_q a constant here, so the reconstruction never moves the codebook).
    The forward value is z_q itself (copied), not z_e + (z_q - z_e) computed in
    floating point, so it is bit-exact.

    This is not the derivative of the forward function (that is 0 almost
    everywhere, see :func:`nearest_code`): it is the gradient the decoder computed
    at z_q, used as if it had been computed at z_e. Its error is of the size of the
    quantisation error ‖z_q - z_e‖ times the curvature of the loss.
    Derivation: derivations/14_straight_through.md (Eq. 14.2 - 14.4).
    """
    if not isinstance(z_e, Tensor) or not isinstance(z_q, Tensor):
        raise TypeError("straight_through: z_e and z_q must be minivae Tensors")
    if z_e.shape != z_q.shape or z_e.dtype != z_q.dtype:
        raise ValueError(
            f"straight_through: z_e is {z_e.dtype} {z_e.shape} and z_q is {z_q.dtype} {z_q.shape}; they must match"
        )
    return Tensor.from_op(z_q.data.copy(), (z_e, z_q), lambda g: (g, None), "straight_through")


# =============================================================================
# Code statistics
# =============================================================================


def code_counts(indices: np.ndarray, k: int) -> np.ndarray:
    """How many times each of the k codes appears in ``indices`` (any shape)."""
    return np.bincount(np.asarray(indices).reshape(-1), minlength=int(k)).astype(np.float64)


def perplexity(counts: np.ndarray) -> float:
    """exp(H(p)) of the code frequencies p = counts / Σ counts: the effective number of codes used."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("perplexity: no code was counted")
    p = counts[counts > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


# =============================================================================
# The model
# =============================================================================


class VQVAE(Module):
    """Encoder -> M codes from a codebook of K vectors of size D -> decoder (see the module docstring).

    ``latent`` is D, the size of one code vector; the decoder sees M·D numbers
    (``self.latent``). Options: ``codebook_size`` K, ``positions`` M, ``commitment``
    β, ``ema`` (codebook by moving averages, decay ``decay``), ``restart_dead``.

    Running statistics (the EMA counts and sums, the running usage of each code)
    are kept as Parameters that never receive a gradient: the optimizer skips them
    (their ``.grad`` stays None) and checkpoints save them, so a resumed run
    continues exactly. They change only in training mode, with gradients on.
    """

    conditional = False
    discrete_latents = True  # figures: no decoded grid over a continuous latent plane
    prior_label = "each position's code drawn from its training frequencies"

    def __init__(
        self,
        input_dim: int,
        latent: int,
        hidden: int | Sequence[int],
        *,
        rng: Generator,
        codebook_size: int = 32,
        positions: int = 4,
        commitment: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        restart_dead: bool = False,
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        for name, value in (("latent", latent), ("codebook_size", codebook_size), ("positions", positions)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"VQVAE: {name} must be a positive integer, got {value!r}")
        if commitment < 0:
            raise ValueError(f"VQVAE: commitment (beta) must be >= 0, got {commitment}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"VQVAE: decay must lie in (0, 1), got {decay}")
        self.input_dim, self.code_dim = int(input_dim), int(latent)
        self.codebook_size, self.positions = int(codebook_size), int(positions)
        self.latent = self.positions * self.code_dim  # what the decoder reads
        self.commitment, self.ema, self.decay, self.restart_dead = float(commitment), bool(ema), float(decay), bool(restart_dead)
        self.encoder = Encoder(input_dim, hidden, self.latent, rng=rng)
        self.decoder = Decoder(self.latent, hidden, input_dim, rng=rng, likelihood=likelihood)
        # The encoder's last layer is Xavier-initialised, so its outputs start with
        # a spread of about 1 per coordinate: draw the codes at that scale.
        self.codebook = Parameter(rng.normal((self.codebook_size, self.code_dim)), dtype="float32")
        xp = backend.xp()
        self.usage = Parameter(xp.full(self.codebook_size, 1.0 / self.codebook_size), dtype="float32")
        if self.ema:
            self.ema_count = Parameter(xp.ones(self.codebook_size), dtype="float32")
            self.ema_sum = Parameter(self.codebook.data.copy(), dtype="float32")
        self.prior: np.ndarray | None = None  # (M, K) code frequencies, set by fit_prior
        self.restarts = 0  # codes restarted so far (this process)

    # -- encoding ----------------------------------------------------------------------
    def _split(self, flat: Tensor) -> Tensor:
        return flat.reshape(*flat.shape[:-1], self.positions, self.code_dim)

    def quantize(self, x: Any) -> tuple[Tensor, Tensor, np.ndarray]:
        """(z_e, z_q, indices): encoder outputs and their codes, shapes (N, M, D), (N, M, D), (N, M)."""
        z_e = self._split(self.encoder(as_input(x, self)))
        z_q, index = nearest_code(z_e, self.codebook)
        return z_e, z_q, index

    def loss(self, x: Any, y: np.ndarray | None, rng: Generator, step: int | None = None) -> dict[str, Tensor]:
        """Reconstruction + codebook term (loss updates only) + β·commitment; batch means in nats.
        (No warm-up: ``step`` is unused.)

        Also reported: ``perplexity`` and ``codes_used`` of this batch's codes, and
        ``neg_elbo`` = recon + M ln K (uniform prior over codes).
        """
        x = as_input(x, self)
        z_e, z_q, index = self.quantize(x)
        decoded = straight_through(z_e, z_q).reshape(z_e.shape[0], self.latent)
        recon = self.decoder.nll(self.decoder(decoded), x)
        commit = _sq_norm(z_e - stop_gradient(z_q))
        total = recon + self.commitment * commit
        out: dict[str, Tensor] = {}
        if not self.ema:
            codebook_term = _sq_norm(stop_gradient(z_e) - z_q)
            total = total + codebook_term
            out["codebook"] = codebook_term.mean()
        counts = code_counts(index, self.codebook_size)
        if self.training and is_grad_enabled():
            self._update_statistics(z_e, index, counts, rng)
        const = lambda v: Tensor(np.asarray(v, dtype=np.float64), dtype=self.dtype)  # noqa: E731
        out.update({
            "loss": total.mean(),
            "recon": recon.mean(),
            "commitment": commit.mean(),
            "neg_elbo": recon.mean() + self.positions * math.log(self.codebook_size),
            "perplexity": const(perplexity(counts)),
            "codes_used": const(float((counts > 0).sum())),
        })
        return out

    def _update_statistics(self, z_e: Tensor, index: np.ndarray, counts: np.ndarray, rng: Generator) -> None:
        """After a training forward pass: running usage, EMA codebook, restarts of dead codes."""
        xp = backend.array_module(self.codebook.data)
        dtype = self.codebook.data.dtype
        share = backend.to_backend(counts / counts.sum(), dtype=self.dtype)
        self.usage.data = (USAGE_DECAY * self.usage.data + (1 - USAGE_DECAY) * share).astype(dtype)
        rows = z_e.data.reshape(-1, self.code_dim)
        if self.ema:
            onehot = xp.zeros((rows.shape[0], self.codebook_size), dtype=dtype)
            onehot[xp.arange(rows.shape[0]), xp.asarray(index.reshape(-1))] = 1.0
            gamma = self.decay
            self.ema_count.data = (gamma * self.ema_count.data + (1 - gamma) * onehot.sum(axis=0)).astype(dtype)
            self.ema_sum.data = (gamma * self.ema_sum.data + (1 - gamma) * (onehot.T @ rows)).astype(dtype)
            # ε keeps a code that has gone unused for very long where it is, instead of dividing 0 by 0.
            eps = 1e-5
            self.codebook.data = ((self.ema_sum.data + eps * self.codebook.data)
                                  / (self.ema_count.data[:, None] + eps)).astype(dtype)
        if self.restart_dead:
            dead = np.flatnonzero(backend.to_numpy(self.usage.data) < DEAD_FRACTION / self.codebook_size)
            if dead.size:
                picks = rng.integers(0, rows.shape[0], shape=dead.size)
                codebook = self.codebook.data.copy()
                codebook[xp.asarray(dead)] = rows[xp.asarray(picks)]
                self.codebook.data = codebook
                usage = self.usage.data.copy()
                usage[xp.asarray(dead)] = 1.0 / self.codebook_size
                self.usage.data = usage
                if self.ema:
                    count, total = self.ema_count.data.copy(), self.ema_sum.data.copy()
                    count[xp.asarray(dead)] = 1.0
                    total[xp.asarray(dead)] = codebook[xp.asarray(dead)]
                    self.ema_count.data, self.ema_sum.data = count, total
                self.restarts += int(dead.size)

    # -- checking the gradient ---------------------------------------------------------
    def surrogate_loss(self, x: Any, frozen: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Tensor:
        """The function whose ordinary gradient the straight-through nodes claim to give.

        ``frozen`` = (z_e0, z_q0, k0) from a forward pass at the point being checked.
        Every sg[·] becomes its frozen value, and the code choice k0 is held fixed:

            recon(dec(z_e + (z_q0 - z_e0)))  +  ‖z_e0 - e_{k0}‖²  +  β ‖z_e - z_q0‖²

        (no codebook term with EMA). It is built from ordinary ops only, so finite
        differences of it are meaningful; at the frozen point its value equals
        :meth:`loss`'s and its gradient must equal the gradient of :meth:`loss`.
        """
        ze0, zq0, k0 = frozen
        x = as_input(x, self)
        z_e = self._split(self.encoder(x))
        shift = Tensor(zq0 - ze0, dtype=self.dtype)
        recon = self.decoder.nll(self.decoder((z_e + shift).reshape(z_e.shape[0], self.latent)), x)
        total = recon + self.commitment * _sq_norm(z_e - Tensor(zq0, dtype=self.dtype))
        if not self.ema:
            chosen = self.codebook[np.asarray(k0).reshape(-1)].reshape(*zq0.shape)
            total = total + _sq_norm(Tensor(ze0, dtype=self.dtype) - chosen)
        return total.mean()

    def gradcheck_loss(self, x: Any, y: np.ndarray | None, rng: Generator):
        """A function for :func:`minivae.gradcheck`: :meth:`loss` when recording, else the frozen surrogate.

        gradcheck takes the analytic gradient with ``backward()`` (recording on) and
        the numerical one from values under ``no_grad()``. The loss itself is
        piecewise constant in z_e, so its finite differences are not what the
        straight-through nodes compute; the surrogate's are. This checks that every
        parameter's gradient from the nodes equals the derivative of the surrogate
        at this point (and, for the codebook, of the real codebook term).
        """
        with no_grad():
            z_e, z_q, k = self.quantize(x)
        frozen = (backend.to_numpy(z_e.data).copy(), backend.to_numpy(z_q.data).copy(), k)

        def fn() -> Tensor:
            return self.loss(x, y, rng)["loss"] if is_grad_enabled() else self.surrogate_loss(x, frozen)

        return fn

    # -- using a trained model ----------------------------------------------------------
    def encode(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        """z_q flattened to (N, M·D): the quantised code that the decoder reads."""
        _, z_q, _ = self.quantize(x)
        return z_q.reshape(z_q.shape[0], self.latent)

    def codes(self, x: Any) -> np.ndarray:
        """The code indices of x, shape (N, M)."""
        with no_grad():
            return self.quantize(x)[2]

    def decode(self, z: Any, y: np.ndarray | None = None) -> Tensor:
        """E[x | z] for decoder inputs z of shape (N, M·D) (probabilities for Bernoulli pixels)."""
        return self.decoder.mean(self.decoder(as_input(z, self)))

    def decode_codes(self, index: np.ndarray) -> Tensor:
        """Decode code indices of shape (N, M)."""
        index = np.asarray(index)
        if index.ndim != 2 or index.shape[1] != self.positions:
            raise ValueError(f"decode_codes: expected indices of shape (N, {self.positions}), got {index.shape}")
        if index.size and (index.min() < 0 or index.max() >= self.codebook_size):
            raise ValueError(f"decode_codes: indices must lie in [0, {self.codebook_size})")
        z = backend.to_numpy(self.codebook.data)[index].reshape(len(index), self.latent)
        return self.decode(z)

    def reconstruct(self, x: Any, y: np.ndarray | None = None) -> Tensor:
        return self.decode(self.encode(x))

    def fit_prior(self, x: Any) -> np.ndarray:
        """Fit p(k_m = k) = (how often code k is chosen at position m on x) / N; returns the (M, K) table."""
        index = self.codes(x)
        if len(index) == 0:
            raise ValueError("fit_prior: no data")
        table = np.stack([code_counts(index[:, m], self.codebook_size) for m in range(self.positions)])
        self.prior = table / table.sum(axis=1, keepdims=True)
        return self.prior

    def sample(self, n: int, rng: Generator, y: np.ndarray | None = None) -> Tensor:
        """Draw every position's code independently from the fitted frequencies, then decode (mean image)."""
        if self.prior is None:
            raise RuntimeError("VQVAE.sample: no prior over the codes yet; call fit_prior(x) on training data first")
        index = np.stack([rng.numpy.choice(self.codebook_size, size=int(n), p=self.prior[m])
                          for m in range(self.positions)], axis=1)
        return self.decode_codes(index)

    def codebook_report(self, x: Any) -> dict[str, Any]:
        """Codebook diagnostics on x: counts per code, codes used, dead codes, perplexity (overall and per position)."""
        index = self.codes(x)
        counts = code_counts(index, self.codebook_size)
        return {
            "codebook_size": self.codebook_size,
            "positions": self.positions,
            "counts": counts.astype(int).tolist(),
            "codes_used": int((counts > 0).sum()),
            "dead_codes": np.flatnonzero(counts == 0).tolist(),
            "perplexity": perplexity(counts),
            "perplexity_per_position": [perplexity(code_counts(index[:, m], self.codebook_size))
                                        for m in range(self.positions)],
        }


def format_codebook_report(report: dict[str, Any]) -> str:
    """Two readable lines from :meth:`VQVAE.codebook_report`."""
    k = report["codebook_size"]
    return (
        f"codebook: {report['codes_used']} of {k} codes used, {len(report['dead_codes'])} dead; "
        f"perplexity {report['perplexity']:.1f} (at most {k})\n"
        "perplexity per position: " + " ".join(f"{p:.1f}" for p in report["perplexity_per_position"])
    )


def _sq_norm(t: Tensor) -> Tensor:
    """‖t‖² summed over the positions and code dimensions: one value per example, shape (N,)."""
    return (t * t).sum(axis=-1).sum(axis=-1)
