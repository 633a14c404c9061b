"""The gradient-variance lab: how noisy is each gradient estimator, and is it unbiased?

Setting. q(z) = N(mu, diag σ²) in D dimensions and a function f; we want

    g* = (∇_mu E_q[f(z)], ∇_σ E_q[f(z)])

and compare estimators built from n samples z_i = mu + σ ⊙ ε_i:

    reparam            (1/n) Σ_i ∇_{mu,σ} f(mu + σ ε_i)                 (pathwise; needs ∇f)
    score              (1/n) Σ_i f(z_i) ∇ ln q(z_i)                      (REINFORCE; f a black box)
    score+moving-avg   (1/n) Σ_i (f(z_i) - b) ∇ ln q(z_i),  b a moving average of earlier batches
    score+learned      the same with b = b_ψ(context) from a small net fitted by least squares
    score+leave-one-out  b_i = mean of the other n - 1 values f(z_j)
    score+optimal-cv   (1/n) Σ_i f(z_i) s_i - c* ⊙ (1/n) Σ_i s_i,   s = ∇ ln q,
                       c*_p = Cov(f s_p, s_p) / Var(s_p) per parameter, from the batch

Every estimator is computed by the engine: a graph with the estimator node of
:mod:`minivae.estimators` and one ``backward()``. The truth g* is analytic
(quadratic, sin) or Gauss-Hermite quadrature (net, bernoulli), exact to ~1e-12.

Test functions f (the sum over coordinates of a 1-D function unless said otherwise):

    quadratic   f(z) = Σ_d (z_d - 1)²            ∇_mu = 2(mu - 1),  ∇_σ = 2σ
    sin         f(z) = Σ_d sin z_d               ∇_mu = cos(mu) e^{-σ²/2},  ∇_σ = -σ sin(mu) e^{-σ²/2}
    net         f(z) = Σ_k v_k tanh(w_kᵀ z + c_k), a fixed random 1-hidden-layer network (not separable)
    bernoulli   f(z) = Σ_d [x_d ln σ(z_d) + (1 - x_d) ln σ(-z_d)], a Bernoulli log-likelihood of fixed bits x
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from minivae import ops
from minivae.distributions import Normal
from minivae.labs.estimators import gaussian_log_prob, gaussian_score, optimal_control_variate
from minivae.nn import Linear, Module, ReLU, Sequential
from minivae.optim import Adam
from minivae.providers.reference import stable_sigmoid
from minivae.random import Generator
from minivae.stochastic import LearnedBaseline, MovingAverageBaseline, leave_one_out_baseline, score_function_surrogate
from minivae.tensor import Tensor, no_grad

FUNCTIONS = ("quadratic", "sin", "net", "bernoulli")
ESTIMATORS = (
    "reparam",
    "score",
    "score+moving-avg",
    "score+learned",
    "score+leave-one-out",
    "score+optimal-cv",
)
UNBIASED = ESTIMATORS  # all of them; optimal-cv up to an O(1/n) term from estimating c* on the batch
GH_NODES = 80


# ----------------------------------------------------------------------------
# problems: q's parameters, f as engine ops, and the exact gradient
# ----------------------------------------------------------------------------
@dataclass
class Problem:
    """One lab problem: q = N(mu, diag σ²) and f, with the exact gradient of E_q[f]."""

    name: str
    mu: np.ndarray
    sigma: np.ndarray
    f: Callable[[Tensor], Tensor]  # z of shape (n, D) -> f(z) of shape (n,)
    grad_mu: np.ndarray
    grad_sigma: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def true_grad(self) -> np.ndarray:
        return np.concatenate([self.grad_mu, self.grad_sigma])


def gauss_hermite_expectation(h: Callable[[np.ndarray], np.ndarray], m: np.ndarray, s: np.ndarray, n: int = GH_NODES):
    """E[h(m + s ε)] and E[h(m + s ε) ε] for ε ~ N(0, 1), elementwise over m, s, by n-node Gauss-Hermite.

    With the probabilists' nodes x_i and weights w_i (weight function e^{-x²/2}),
    E[u(ε)] = Σ_i w_i u(x_i) / √(2π), exact for polynomials of degree < 2n.
    """
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2 * math.pi)
    values = h(m[..., None] + s[..., None] * x)  # (..., n)
    return (values * w).sum(-1), (values * w * x).sum(-1)


def make_problem(name: str, dim: int, seed: int = 0) -> Problem:
    """The lab problem ``name`` in ``dim`` dimensions; q's parameters and f's constants come from ``seed``."""
    if name not in FUNCTIONS:
        raise ValueError(f"make_problem: unknown function {name!r}; choose one of {FUNCTIONS}")
    if dim < 1:
        raise ValueError(f"make_problem: dim must be >= 1, got {dim}")
    rng = Generator(seed)
    mu = rng.numpy.normal(0.0, 0.7, size=dim)
    sigma = rng.numpy.uniform(0.5, 1.2, size=dim)

    if name == "quadratic":
        def f(z: Tensor) -> Tensor:
            d = z - 1.0
            return (d * d).sum(axis=-1)

        return Problem(name, mu, sigma, f, 2 * (mu - 1.0), 2 * sigma)

    if name == "sin":
        damp = np.exp(-0.5 * sigma**2)

        def f(z: Tensor) -> Tensor:
            return ops.sin(z).sum(axis=-1)

        return Problem(name, mu, sigma, f, np.cos(mu) * damp, -sigma * np.sin(mu) * damp)

    if name == "net":
        hidden = 8
        w = rng.numpy.normal(0.0, 1.0 / math.sqrt(dim), size=(dim, hidden))
        c = rng.numpy.normal(0.0, 0.5, size=hidden)
        v = rng.numpy.normal(0.0, 1.0, size=hidden)

        def f(z: Tensor) -> Tensor:
            h = ops.tanh(ops.linear(z, Tensor(w, dtype=z.dtype), Tensor(c, dtype=z.dtype)))
            return ops.linear(h, Tensor(v[:, None], dtype=z.dtype)).reshape(z.shape[:-1])

        # Hidden unit k sees u_k = w_kᵀz + c_k ~ N(m_k, s_k²), m_k = w_kᵀmu + c_k, s_k² = Σ_d w_dk² σ_d².
        # With a_k = E[tanh'(u_k)] and b_k = E[tanh'(u_k) ε]:
        #   ∂E f/∂mu_d = Σ_k v_k w_dk a_k,   ∂E f/∂σ_d = Σ_k v_k b_k ∂s_k/∂σ_d = Σ_k v_k b_k w_dk² σ_d / s_k.
        m = mu @ w + c
        s = np.sqrt((w**2 * sigma[:, None] ** 2).sum(0))
        a, b = gauss_hermite_expectation(lambda u: 1.0 - np.tanh(u) ** 2, m, s)
        grad_mu = w @ (v * a)
        grad_sigma = (w**2 * sigma[:, None] / s) @ (v * b)
        return Problem(name, mu, sigma, f, grad_mu, grad_sigma, {"w": w, "c": c, "v": v})

    # bernoulli: fixed bits x_d, f = Σ_d ln p(x_d | logit z_d); h'(z) = x - σ(z).
    x = (np.arange(dim) % 2 == 0).astype(np.float64)

    def f(z: Tensor) -> Tensor:
        return -ops.bce_with_logits(z, Tensor(np.broadcast_to(x, z.shape), dtype=z.dtype)).sum(axis=-1)

    a, b = gauss_hermite_expectation(lambda u: x[:, None] - stable_sigmoid(np, u), mu, sigma)
    # ∂/∂mu E[h(mu + σε)] = E[h'(z)];  ∂/∂σ = E[h'(z) ε]
    return Problem(name, mu, sigma, f, a, b, {"x": x})


# ----------------------------------------------------------------------------
# estimators: each returns one gradient estimate (2D,) from n samples
# ----------------------------------------------------------------------------
@dataclass
class LabState:
    """Baselines fitted once per problem on separate warm-up draws (so they are independent of the test samples)."""

    moving_average: MovingAverageBaseline
    learned: LearnedBaseline
    context: Tensor  # the learned baseline's input: (mu, σ) concatenated


def _parameters(problem: Problem) -> tuple[Tensor, Tensor]:
    return (
        Tensor(problem.mu, requires_grad=True, dtype="float64"),
        Tensor(problem.sigma, requires_grad=True, dtype="float64"),
    )


def _draw(problem: Problem, n: int, rng: Generator) -> np.ndarray:
    return problem.mu + problem.sigma * rng.normal((n, problem.dim), dtype="float64")


def prepare_state(problem: Problem, seed: int = 12345, warmup_batches: int = 30, batch: int = 32) -> LabState:
    """Warm up the moving average and fit the learned baseline on draws from Generator(seed)."""
    rng = Generator(seed)
    ma = MovingAverageBaseline(decay=0.9)
    context = Tensor(np.concatenate([problem.mu, problem.sigma])[None, :], dtype="float64")
    learned = LearnedBaseline(2 * problem.dim, hidden=16, rng=rng, dtype="float64")
    opt = Adam(learned.parameters(), lr=0.05)
    for _ in range(warmup_batches):
        with no_grad():
            f = problem.f(Tensor(_draw(problem, batch, rng), dtype="float64"))
        ma.update(f)
        # b_ψ regresses on f; the context is the same for every draw, so b_ψ learns E_q[f].
        for _ in range(10):
            opt.zero_grad()
            learned.loss(context, f.reshape(1, -1).mean(axis=-1)).backward()
            opt.step()
    return LabState(ma, learned, context)


def estimate(name: str, problem: Problem, n: int, rng: Generator, state: LabState | None = None) -> np.ndarray:
    """One estimate of (∇_mu, ∇_σ) E_q[f] by estimator ``name`` from n samples drawn with ``rng``."""
    if name not in ESTIMATORS:
        raise ValueError(f"estimate: unknown estimator {name!r}; choose one of {ESTIMATORS}")
    if name in ("score+leave-one-out", "score+optimal-cv") and n < 2:
        raise ValueError(f"estimate: {name} needs at least 2 samples, got n={n}")
    if name in ("score+moving-avg", "score+learned") and state is None:
        state = prepare_state(problem)
    mu, sigma = _parameters(problem)
    eps = rng.normal((n, problem.dim), dtype="float64")

    if name == "reparam":
        z = mu + sigma * eps  # a graph node: gradients flow through z into mu and σ
        problem.f(z).mean().backward()
        return np.concatenate([mu.grad, sigma.grad])

    z = Tensor(problem.mu + problem.sigma * eps, dtype="float64")  # a constant: no pathwise gradient
    with no_grad():
        f = problem.f(z)
    log_q = gaussian_log_prob(z, mu, sigma)
    baseline: Any = None
    if name == "score+moving-avg":
        baseline = state.moving_average.value
    elif name == "score+learned":
        with no_grad():
            baseline = state.learned(state.context).item()
    elif name == "score+leave-one-out":
        baseline = leave_one_out_baseline(f)
    elif name == "score+optimal-cv":
        # ĝ = mean(f s) - c* ⊙ mean(s); both means by backward passes through ln q.
        s_mu, s_sigma = gaussian_score(z.data, problem.mu, problem.sigma)
        c = optimal_control_variate(f, np.concatenate([s_mu, s_sigma], axis=1), per_parameter=True)
        log_q.mean().backward(retain_graph=True)
        mean_score = np.concatenate([mu.grad, sigma.grad])
        mu.grad = sigma.grad = None
        score_function_surrogate(f, log_q).mean().backward()
        return np.concatenate([mu.grad, sigma.grad]) - c * mean_score
    score_function_surrogate(f, log_q, baseline).mean().backward()
    return np.concatenate([mu.grad, sigma.grad])


# ----------------------------------------------------------------------------
# many seeds -> mean, variance, error, cost
# ----------------------------------------------------------------------------
@dataclass
class EstimatorStats:
    estimator: str
    mean: np.ndarray  # (2D,) average estimate over seeds
    variance: np.ndarray  # (2D,) per-coordinate variance of one estimate (ddof=1)
    true_grad: np.ndarray
    seeds: int
    samples: int
    seconds_per_sample: float

    @property
    def mean_variance(self) -> float:
        """Average over the 2D gradient coordinates of Var(ĝ_p)."""
        return float(self.variance.mean())

    @property
    def rel_error(self) -> float:
        """‖mean - g*‖ / ‖g*‖."""
        return float(np.linalg.norm(self.mean - self.true_grad) / max(np.linalg.norm(self.true_grad), 1e-300))

    @property
    def max_z(self) -> float:
        """max_p |mean_p - g*_p| / standard error_p: the bias in standard errors (≲ 4 for an unbiased estimator)."""
        se = np.sqrt(self.variance / self.seeds)
        return float(np.max(np.abs(self.mean - self.true_grad) / np.maximum(se, 1e-300)))

    def __str__(self) -> str:
        return (f"{self.estimator}: mean variance {self.mean_variance:.4g} per coordinate, relative error "
                f"{self.rel_error:.4f}, bias {self.max_z:.2f} standard errors at most "
                f"({self.seeds} seeds of {self.samples} samples)")

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython: one readable line, not the arrays
        printer.text(str(self))


def run_estimators(
    problem: Problem,
    samples: int,
    seeds: int,
    estimators: Sequence[str] = ESTIMATORS,
    seed: int = 0,
) -> list[EstimatorStats]:
    """Each estimator over ``seeds`` independent draws (Generator(seed·10⁶ + s)); common noise across estimators."""
    if seeds < 2:
        raise ValueError(f"run_estimators: need at least 2 seeds to estimate a variance, got {seeds}")
    state = prepare_state(problem)
    out = []
    for name in estimators:
        draws = np.empty((seeds, 2 * problem.dim))
        start = time.perf_counter()
        for s in range(seeds):
            draws[s] = estimate(name, problem, samples, Generator(seed * 1_000_000 + s), state)
        elapsed = time.perf_counter() - start
        out.append(
            EstimatorStats(
                estimator=name,
                mean=draws.mean(0),
                variance=draws.var(0, ddof=1),
                true_grad=problem.true_grad,
                seeds=seeds,
                samples=samples,
                seconds_per_sample=elapsed / (seeds * samples),
            )
        )
    return out


def format_table(problem: Problem, stats: Sequence[EstimatorStats]) -> str:
    """A plain-text table: one row per estimator."""
    head = f"{'estimator':<20} {'dmu[0] mean':>12} {'dsig[0] mean':>12} {'mean var':>11} {'var/reparam':>11} {'rel err':>9} {'max |z|':>8} {'us/sample':>10}"
    ref = next((s.mean_variance for s in stats if s.estimator == "reparam"), None)
    lines = [
        f"f={problem.name}  D={problem.dim}  n={stats[0].samples} samples/estimate  {stats[0].seeds} seeds",
        f"true: dmu[0] = {problem.grad_mu[0]:.5f}   dsigma[0] = {problem.grad_sigma[0]:.5f}",
        head,
        "-" * len(head),
    ]
    d = problem.dim
    for s in stats:
        ratio = f"{s.mean_variance / ref:11.2f}" if ref else f"{'-':>11}"
        lines.append(
            f"{s.estimator:<20} {s.mean[0]:12.5f} {s.mean[d]:12.5f} {s.mean_variance:11.4g} {ratio} "
            f"{s.rel_error:9.4f} {s.max_z:8.2f} {1e6 * s.seconds_per_sample:10.2f}"
        )
    return "\n".join(lines)


def variance_sweep(
    function: str,
    dims: Sequence[int],
    samples: Sequence[int],
    seeds: int,
    estimators: Sequence[str] = ESTIMATORS,
) -> dict[str, np.ndarray]:
    """Mean per-coordinate variance for every (dim, samples) pair: {estimator: array (len(dims), len(samples))}."""
    table = {e: np.zeros((len(dims), len(samples))) for e in estimators}
    for i, d in enumerate(dims):
        problem = make_problem(function, d)
        for j, n in enumerate(samples):
            for st in run_estimators(problem, n, seeds, estimators):
                table[st.estimator][i, j] = st.mean_variance
    return table


def sweep_figures(function: str, dims: Sequence[int], samples: Sequence[int], seeds: int,
                  fixed_dim: int, fixed_samples: int) -> list[Any]:
    """Two log-log figures, one line per estimator: variance vs latent dimension, variance vs samples.

    Returned as figures a Jupyter cell shows inline (``InlineFigure``); :func:`plot_sweeps` saves them.
    """
    from minivae.training.figures import InlineFigure

    figures = []
    by_dim = variance_sweep(function, dims, [fixed_samples], seeds)
    by_n = variance_sweep(function, [fixed_dim], samples, seeds)
    for xs, table, label, fixed in (
        (dims, {k: v[:, 0] for k, v in by_dim.items()}, "latent dimension D", f"n={fixed_samples}"),
        (samples, {k: v[0, :] for k, v in by_n.items()}, "samples per estimate n", f"D={fixed_dim}"),
    ):
        fig = InlineFigure(figsize=(6, 4.2))
        ax = fig.add_subplot()
        for name, ys in table.items():
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("mean variance per gradient coordinate")
        ax.set_title(f"f = {function}, {fixed}, {seeds} seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figures.append(fig)
    return figures


def plot_sweeps(function: str, dims: Sequence[int], samples: Sequence[int], seeds: int, directory: str,
                fixed_dim: int, fixed_samples: int) -> list[str]:
    """The two figures of :func:`sweep_figures`, saved in ``directory``; returns their paths."""
    import io
    import os

    from minivae.files import atomic_write_bytes

    os.makedirs(directory, exist_ok=True)
    paths = []
    figures = sweep_figures(function, dims, samples, seeds, fixed_dim, fixed_samples)
    for fig, fname in zip(figures, ("variance_vs_dim.png", "variance_vs_samples.png")):
        path = os.path.join(directory, f"{function}_{fname}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
        atomic_write_bytes(path, buffer.getvalue())  # a killed run never leaves half a picture
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------
# the same question on a real model: encoder gradients of a trained Gaussian VAE
# ----------------------------------------------------------------------------
def vae_encoder_gradient_variance(
    train_steps: int = 200,
    repeats: int = 40,
    batch: int = 64,
    latent: int = 8,
    hidden: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Variance of the encoder's gradient of E_q[-ln p(x|z)] on real digits, reparam vs score function.

    A Gaussian VAE (the project's :class:`minivae.models.vae.VAE` when present, else a
    small local one) is trained briefly on the digits; then, on one fixed test batch,
    the encoder gradient of the reconstruction term is drawn ``repeats`` times with
    independent noise by each estimator. The KL term is analytic and identical for
    both, so it is left out. Returns the total variance (summed over all encoder
    weights) per estimator, their ratio and the gap between the two mean gradients.
    """
    from minivae.training.data import batches, load_digits
    from minivae.training.step import training_step
    from minivae.models.vae import VAE

    train, test = load_digits("train"), load_digits("test")
    rng = Generator(seed)
    model = VAE(train.dim, latent, hidden, rng=rng)
    opt = Adam(model.parameters(), lr=2e-3)
    step = 0
    while step < train_steps:
        for xb, yb in batches(train, 64, rng=rng):
            training_step(model, opt, xb, None, rng)  # the Trainer's step: loss, check, backward, update
            step += 1
            if step >= train_steps:
                break

    x = Tensor(test.x[:batch], dtype=model.parameters()[0].dtype)
    enc = model.encoder.parameters()
    ma = MovingAverageBaseline(0.9)
    warm = Generator(seed + 1)
    for _ in range(10):  # the moving average sees its own draws, independent of the measured ones
        with no_grad():
            q = model.posterior(x)
            ma.update(model.decoder.nll(model.decoder(q.sample(warm)), x))
    results: dict[str, Any] = {"model": type(model).__module__ + "." + type(model).__name__, "train_steps": train_steps}
    grads = {}
    for name in ("reparam", "score", "score+moving-avg"):
        draws = []
        for r in range(repeats):
            draw_rng = Generator(10_000 + r)
            model.zero_grad()
            q = model.posterior(x)
            if name == "reparam":
                recon = model.decoder.nll(model.decoder(q.rsample(rng=draw_rng)), x)
            else:
                z = q.sample(draw_rng)  # constant: the encoder learns only through ln q(z|x)
                with no_grad():
                    f = model.decoder.nll(model.decoder(z), x)
                b = ma.value if name == "score+moving-avg" else None
                recon = score_function_surrogate(f, q.log_prob(z), b)
            recon.mean().backward()
            draws.append(np.concatenate([np.asarray(p.grad, dtype=np.float64).ravel() for p in enc]))
        grads[name] = np.stack(draws)
        results[f"total_variance[{name}]"] = float(grads[name].var(0, ddof=1).sum())
    results["variance_ratio score/reparam"] = results["total_variance[score]"] / results["total_variance[reparam]"]
    results["variance_ratio score+moving-avg/reparam"] = (
        results["total_variance[score+moving-avg]"] / results["total_variance[reparam]"]
    )
    diff = grads["score"].mean(0) - grads["reparam"].mean(0)
    ref = np.linalg.norm(grads["reparam"].mean(0))
    results["mean_gap_relative"] = float(np.linalg.norm(diff) / ref)
    # What the gap would be from noise alone: √(E‖ḡ_score - ḡ_reparam - true diff‖²) with independent draws.
    noise = (results["total_variance[score]"] + results["total_variance[reparam]"]) / repeats
    results["mean_gap_noise_level"] = float(math.sqrt(noise) / ref)
    return results


