"""Is the latent code used? Active units, per-dimension KL, posterior collapse, I(z; x).

Posterior collapse: the decoder explains x on its own, q(z | x) falls back onto the
prior p(z) for every x, the KL term goes to 0 and z carries no information. These
diagnostics look for it on a data set x_1..x_N:

- Active units (Burda et al., 2016). Dimension d is active when its posterior mean
  moves with x:   A_d = Var_x( E_q[z_d | x] ) > 0.01.
- Per-dimension KL. KL_d = mean_x KL(q(z_d | x) ‖ p(z_d)); a collapsed dimension has
  KL_d ≈ 0 (it is paid nothing because it says nothing).
- Mutual information between x and z under the encoder,
  I(z; x) = E_x[ KL(q(z | x) ‖ q(z)) ] with the aggregate posterior q(z) = (1/N) Σ_j q(z | x_j).
  With one sample z_i ~ q(z | x_i) per data point,

      Î = (1/N) Σ_i [ ln q(z_i | x_i) - ln (1/N) Σ_j q(z_i | x_j) ],

  the inner log-mean computed with logsumexp. Since the j = i term is in the
  mixture, Î ≤ ln N: it cannot report more than ln N nats (a known limitation).

Two kinds of posterior are understood: a Gaussian :class:`minivae.Normal`
(prior N(0, I)) and a factorised Bernoulli with ``.logits`` (prior Bernoulli(½)).
``model.posterior(x)`` must return one of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import logsumexp
from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

from minivae import losses
from minivae.distributions import Normal, kl_normal_standard, reparameterize
from minivae.providers import backend
from minivae.providers.reference import stable_sigmoid
from minivae.stochastic import bernoulli_kl_uniform_per_dim
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad

ACTIVE_THRESHOLD = 0.01
COLLAPSE_KL = 0.01  # nats per dimension below which a dimension counts as collapsed


def _posterior_arrays(model: Any, x: Any) -> tuple[str, dict[str, np.ndarray]]:
    """('gaussian', {mu, logvar}) or ('bernoulli', {logits}) as float64 NumPy arrays."""
    if not hasattr(model, "posterior"):
        raise TypeError(f"diagnostics: {type(model).__name__} has no posterior(x); diagnostics need q(z | x)")
    with no_grad():
        q = model.posterior(x)
    if isinstance(q, Normal):
        mu = backend.to_numpy(q.mu.data).astype(np.float64)
        logvar = np.broadcast_to(backend.to_numpy(q.logvar.data).astype(np.float64), mu.shape)
        return "gaussian", {"mu": mu, "logvar": logvar}
    logits = getattr(q, "logits", None)
    if isinstance(logits, Tensor):
        return "bernoulli", {"logits": backend.to_numpy(logits.data).astype(np.float64)}
    raise TypeError(
        f"diagnostics: posterior of type {type(q).__name__} is neither a Normal nor a Bernoulli with .logits"
    )


def posterior_means(kind: str, params: dict[str, np.ndarray]) -> np.ndarray:
    """E_q[z | x_i] for every row: mu (Gaussian) or σ(logits) (Bernoulli); shape (N, D)."""
    if kind == "gaussian":
        return params["mu"]
    return stable_sigmoid(np, params["logits"])


def active_units(means: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, np.ndarray, np.ndarray]:
    """(number active, boolean mask, Var_x E[z_d | x] per dimension) with A_d = Var > threshold."""
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] < 2:
        raise ValueError(f"active_units: need posterior means of shape (N >= 2, D), got {means.shape}")
    variance = means.var(axis=0)
    mask = variance > threshold
    return int(mask.sum()), mask, variance


def kl_per_dimension(kind: str, params: dict[str, np.ndarray]) -> np.ndarray:
    """mean_x KL(q(z_d | x) ‖ p(z_d)) per dimension d.

    Gaussian vs N(0, 1):      ½ (e^lv + mu² - 1 - lv)
    Bernoulli vs Bernoulli(½): p ln p + (1 - p) ln(1 - p) + ln 2, with ln p = -softplus(-l)
    """
    # The engine's nodes, evaluated without a graph: one home for each formula. The Gaussian
    # KL node sums over the last axis, so a trailing axis of size 1 keeps each dimension apart.
    with no_grad():
        if kind == "gaussian":
            mu, lv = (Tensor(params[name][..., None], dtype="float64") for name in ("mu", "logvar"))
            per_dim = kl_normal_standard(mu, lv)
        else:
            per_dim = bernoulli_kl_uniform_per_dim(Tensor(params["logits"], dtype="float64"))
    return backend.to_numpy(per_dim.data).mean(axis=0)


def _log_q_matrix(
    kind: str, params: dict[str, np.ndarray], z: np.ndarray, chunk: int = 256, progress: bool = False
) -> np.ndarray:
    """M[i, j] = ln q(z_i | x_j), filled a chunk of rows at a time to bound memory (chunk × N × D)."""
    n = z.shape[0]
    out = np.empty((n, n))
    starts = range(0, n, chunk)
    if progress:
        starts = tqdm(starts, desc=f"I(z; x) on {n} examples", unit="chunk", leave=False, dynamic_ncols=True)
    # The log-densities are the engine's losses (float64, no graph): one home for each formula.
    as64 = {name: Tensor(value[None], dtype="float64") for name, value in params.items()}  # every x_j: (1, N, D)
    with no_grad():
        for start in starts:
            zc = Tensor(z[start : start + chunk, None, :], dtype="float64")  # (c, 1, D)
            if kind == "gaussian":
                nll = losses.gaussian_nll(as64["mu"], zc, as64["logvar"], reduction="sum", axis=-1)
            else:
                nll = losses.bce_with_logits(as64["logits"], zc, reduction="sum", axis=-1)
            out[start : start + chunk] = -backend.to_numpy(nll.data)
    return out


def mutual_information(
    kind: str, params: dict[str, np.ndarray], rng: Generator, samples: int = 1, progress: bool = False
) -> float:
    """Î(z; x) = mean_i [ln q(z_i|x_i) - logsumexp_j ln q(z_i|x_j) + ln N], z_i ~ q(z|x_i), in nats (≤ ln N)."""
    first = next(iter(params.values()))
    n, d = first.shape
    if n < 2:
        raise ValueError("mutual_information: need at least 2 data points")
    total = 0.0
    for _ in range(samples):
        if kind == "gaussian":
            eps = rng.numpy.standard_normal((n, d))
            with no_grad():  # the sampling node, without a graph
                mu, lv = (Tensor(params[name], dtype="float64") for name in ("mu", "logvar"))
                z = backend.to_numpy(reparameterize(mu, lv, eps).data)
        else:
            p = stable_sigmoid(np, params["logits"])
            z = (rng.numpy.random((n, d)) < p).astype(np.float64)
        m = _log_q_matrix(kind, params, z, progress=progress)
        total += float(np.mean(np.diag(m) - logsumexp(m, axis=1) + math.log(n)))
    return total / samples


def collapse_warning(kl_dims: np.ndarray, active_mask: np.ndarray, kl_threshold: float = COLLAPSE_KL) -> str | None:
    """A sentence naming the unused latent dimensions, or None when every dimension is active.

    A dimension is unused when it is inactive (its posterior mean does not move with x):
    then it carries no information about x, whatever its KL. With KL < ``kl_threshold``
    it has fallen back onto the prior (classic collapse); with a larger KL the encoder
    pays for a posterior that differs from the prior yet is the same for every x
    (e.g. after too large a learning rate), which is just as useless.
    """
    active_mask = np.asarray(active_mask, dtype=bool)
    kl_dims = np.asarray(kl_dims)
    unused = np.flatnonzero(~active_mask)
    d = len(kl_dims)
    if unused.size == 0:
        return None
    at_prior = bool((kl_dims[unused] < kl_threshold).all())
    why = (f"KL < {kl_threshold} nats: q(z|x) is the prior" if at_prior
           else f"KL {kl_dims[unused].sum():.3g} nats paid for a posterior that ignores x")
    if unused.size == d:
        return (
            f"posterior collapse: all {d} latent dimensions are inactive (Var_x E[z|x] <= {ACTIVE_THRESHOLD}; {why}); "
            "z carries no information about x (try a smaller --lr, KL --warmup, or a weaker decoder)"
        )
    return (
        f"partial posterior collapse: {unused.size} of {d} latent dimensions are unused "
        f"(dims {unused.tolist()}: Var_x E[z|x] <= {ACTIVE_THRESHOLD}; {why})"
    )


def diagnostics_report(
    model: Any,
    x: Any,
    rng: Generator | None = None,
    threshold: float = ACTIVE_THRESHOLD,
    mi_samples: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """All diagnostics on a (test) set x, as a plain dict:

    ``posterior`` ('gaussian'/'bernoulli'), ``active_units``, ``latent_dim``,
    ``active_mask`` (list of bools), ``mean_variance`` (Var_x E[z_d|x] per dim),
    ``kl_per_dim``, ``kl_total``, ``mutual_information`` (nats), ``mi_upper_bound``
    (ln N), ``collapse_warning`` (str or None). ``rng`` (default Generator(0)) draws
    the samples of the MI estimate.
    """
    rng = Generator(0) if rng is None else rng
    kind, params = _posterior_arrays(model, x)
    count, mask, variance = active_units(posterior_means(kind, params), threshold)
    kl_dims = kl_per_dimension(kind, params)
    n = next(iter(params.values())).shape[0]
    return {
        "posterior": kind,
        "latent_dim": int(kl_dims.shape[0]),
        "active_units": count,
        "active_mask": mask.tolist(),
        "mean_variance": variance.tolist(),
        "kl_per_dim": kl_dims.tolist(),
        "kl_total": float(kl_dims.sum()),
        "mutual_information": mutual_information(kind, params, rng, samples=mi_samples, progress=progress),
        "mi_upper_bound": math.log(n),
        "collapse_warning": collapse_warning(kl_dims, mask),
    }


def format_report(report: dict[str, Any]) -> str:
    """A few readable lines from :func:`diagnostics_report`."""
    lines = [
        *([f"diagnostics on {report['examples']} of {report['test_examples']} test examples (a fixed subsample)"]
          if report.get("examples", 0) < report.get("test_examples", 0) else []),
        f"active units: {report['active_units']} / {report['latent_dim']} (Var_x E[z|x] > {ACTIVE_THRESHOLD})",
        "KL per dim (nats): " + " ".join(f"{v:.2f}" for v in report["kl_per_dim"]),
        f"KL total: {report['kl_total']:.3f} nats   I(z; x) ~ {report['mutual_information']:.3f} nats "
        f"(at most ln N = {report['mi_upper_bound']:.2f})",
    ]
    if report["collapse_warning"]:
        lines.append("WARNING: " + report["collapse_warning"])
    return "\n".join(lines)
