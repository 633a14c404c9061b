"""Topic 15: the vector-Jacobian product of every elementary op family of the engine.

Each rule is written here in NumPy, by hand, and compared twice: with the engine's own
backward (``import minivae as mv``, public API only) and with float64 central differences
of a NumPy forward pass. The loss is always L = sum(g * f(inputs)) with a random g, so
dL/df = g exactly and the hand VJP, the engine and the differences must all give dL/dinput.

* Eq 15.1-15.3   the VJP x̄ = Jᵀ g; one backward pass per scalar output; a tensor used twice
* Eq 15.4        broadcasting: the VJP of a copy is a sum over the copied axes (unbroadcast)
* Eq 15.5-15.10  add, sub, mul, div, neg, x ** p (p constant, p = 0 included), a ** b
* Eq 15.11-15.27 elementwise functions, with their kinks and the conventions used there
* Eq 15.28-15.35 sum, mean, var, std, max/min with ties, logsumexp, softmax, log_softmax
* Eq 15.36-15.42 shape ops as linear maps: the VJP is the adjoint (reshape, transpose, getitem,
                 concat/stack, broadcast_to, where, masks and one_hot)
* Eq 15.43-15.45 matmul: 2-D, with vectors, batched with broadcast batch axes
* Eq 15.46-15.47 cross_entropy and nll_loss from integer labels

Run it: ``python -m minivae.derivations.d15_vjp_rules`` (or ``minivae derive 15``).
"""

from __future__ import annotations

import inspect
import sys
from typing import Callable, Sequence

import numpy as np
from scipy import special

import minivae as mv
from .table import Table, central_difference, main

TITLE = "Topic 15: the VJP rules of the engine's ops, by hand"

SEED = 15
EXACT_TOL = 1e-12  # hand VJP vs engine: the same arithmetic up to summation order and formula
FD_STEP = 1e-5
FD_TOL = 1e-8  # central differences: truncation ~ h^2 f'''/6 ~ 1e-11, rounding ~ 1e-16 |L| / h ~ 1e-10
SQRT_PI = np.sqrt(np.pi)


# =========================================================================== (a), (b): the VJP, broadcasting
def vjp_from_jacobian(J: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq 15.1: x̄ = Jᵀ g, J the (m, n) Jacobian of y = f(x) with y in R^m, x in R^n."""
    return J.T @ g


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Eq 15.4: g (the broadcast shape) summed over the axes broadcasting added or stretched."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g  # axes added in front
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


# =========================================================================== (c) elementwise arithmetic
def add_vjp(a, b, g):
    """Eq 15.5: y = a + b gives ā = g, b̄ = g, each summed back to its own shape."""
    return unbroadcast(g, np.shape(a)), unbroadcast(g, np.shape(b))


def sub_vjp(a, b, g):
    """Eq 15.5: y = a - b gives ā = g, b̄ = -g."""
    return unbroadcast(g, np.shape(a)), unbroadcast(-g, np.shape(b))


def mul_vjp(a, b, g):
    """Eq 15.6: y = a b gives ā = g b, b̄ = g a."""
    return unbroadcast(g * b, np.shape(a)), unbroadcast(g * a, np.shape(b))


def div_vjp(a, b, g):
    """Eq 15.7: y = a / b gives ā = g / b, b̄ = -g a / b²."""
    return unbroadcast(g / b, np.shape(a)), unbroadcast(-g * a / b**2, np.shape(b))


def neg_vjp(a, g):
    """Eq 15.8: y = -a gives ā = -g."""
    return -g


def power_const_vjp(x, p: float, g):
    """Eq 15.9: y = x^p (p a constant) gives x̄ = g p x^(p-1); for p = 0, y = 1 and x̄ = 0 everywhere."""
    if p == 0:
        return np.zeros_like(g * x)
    return g * p * x ** (p - 1)


def power_vjp(a, b, g):
    """Eq 15.10: y = a^b gives ā = g b a^(b-1) and b̄ = g a^b ln a (a > 0).

    Where the formulas read 0·∞: ā = 0 where b = 0 (y = a⁰ = 1 is flat, as in Eq 15.9), and
    b̄ = 0 where a = 0 and b >= 0 (0^b stays 0 as b moves above 0).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        da = np.where(b == 0, 0.0, g * b * a ** (b - 1))
        db = np.where((a == 0) & (b >= 0), 0.0, g * a**b * np.log(a))
    return unbroadcast(da, a.shape), unbroadcast(db, b.shape)


# =========================================================================== (d) elementwise functions
def _phi(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def _Phi(x):
    return 0.5 * (1 + special.erf(x / np.sqrt(2)))


#: name -> (equation, NumPy forward f, derivative f' written by hand, engine op, input range).
#: The VJP of each is x̄ = g f'(x) (a diagonal Jacobian, Eq 15.11 for the argument).
ELEMENTWISE: dict[str, tuple[str, Callable, Callable, Callable, tuple[float, float]]] = {
    "exp": ("15.11", np.exp, np.exp, mv.exp, (-2, 2)),
    "log": ("15.12", np.log, lambda x: 1 / x, mv.log, (0.3, 3)),
    "sqrt": ("15.13", np.sqrt, lambda x: 0.5 / np.sqrt(x), mv.sqrt, (0.3, 3)),
    "abs": ("15.14", np.abs, np.sign, mv.abs, (-2, 2)),
    "sign": ("15.15", np.sign, np.zeros_like, mv.sign, (-2, 2)),
    "sin": ("15.16", np.sin, np.cos, mv.sin, (-3, 3)),
    "cos": ("15.16", np.cos, lambda x: -np.sin(x), mv.cos, (-3, 3)),
    "log1p": ("15.17", np.log1p, lambda x: 1 / (1 + x), mv.log1p, (-0.5, 2)),
    "expm1": ("15.17", np.expm1, np.exp, mv.expm1, (-2, 2)),
    "square": ("15.18", np.square, lambda x: 2 * x, mv.square, (-2, 2)),
    "erf": ("15.19", special.erf, lambda x: 2 / SQRT_PI * np.exp(-x * x), mv.erf, (-2, 2)),
    "elu": ("15.20", lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
            lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))), mv.elu, (-2, 2)),
    "gelu": ("15.21", lambda x: x * _Phi(x), lambda x: _Phi(x) + x * _phi(x), mv.gelu, (-3, 3)),
    "silu": ("15.22", lambda x: x * special.expit(x),
             lambda x: special.expit(x) * (1 + x * (1 - special.expit(x))), mv.silu, (-3, 3)),
    "logsigmoid": ("15.23", special.log_expit, lambda x: special.expit(-x), mv.logsigmoid, (-3, 3)),
}


def elementwise_vjp(name: str, x, g):
    """x̄ = g f'(x), f' from the table above."""
    return g * ELEMENTWISE[name][2](x)


def elu_vjp(x, alpha: float, g):
    """Eq 15.20: elu_α(x) = x for x > 0, α (eˣ - 1) otherwise: x̄ = g for x > 0, g α eˣ otherwise."""
    return g * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def softplus_beta(x, beta: float):
    """softplus_β(x) = ln(1 + e^(βx)) / β, computed without overflow."""
    return np.logaddexp(0.0, beta * x) / beta


def softplus_beta_vjp(x, beta: float, g):
    """Eq 15.24: d/dx ln(1 + e^(βx)) / β = σ(βx)."""
    return g * special.expit(beta * x)


def clip_vjp(x, low, high, g):
    """Eq 15.25: x̄ = g strictly inside (low, high), 0 outside and at the bounds (minivae's convention)."""
    return g * ((x > low) & (x < high))


def maximum_vjp(a, b, g):
    """Eq 15.26: ā = g ([a > b] + ½[a = b]), b̄ = g ([b > a] + ½[a = b]): a tie splits g in half."""
    wa = (a > b) + 0.5 * (a == b)
    return unbroadcast(g * wa, np.shape(a)), unbroadcast(g * (1 - wa), np.shape(b))


def minimum_vjp(a, b, g):
    """Eq 15.26: the same with < (the smaller one is picked)."""
    wa = (a < b) + 0.5 * (a == b)
    return unbroadcast(g * wa, np.shape(a)), unbroadcast(g * (1 - wa), np.shape(b))


def leaky_relu_vjp(x, slope: float, g):
    """Eq 15.27: x̄ = g for x > 0 and g·slope for x <= 0 (the left slope at 0)."""
    return g * np.where(x > 0, 1.0, slope)


# =========================================================================== (e) reductions
def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(ax % ndim for ax in axes)) if ndim else ()


def _keep(g, axes, keepdims: bool):
    """g with the reduced axes put back as size-1 axes, ready to broadcast against x."""
    return g if keepdims else np.expand_dims(g, axes)


def sum_vjp(x, axis, keepdims, g):
    """Eq 15.28: y = Σ x over the axes; every summand has coefficient 1, so x̄ = g copied back."""
    axes = _axes(axis, np.ndim(x))
    return np.broadcast_to(_keep(g, axes, keepdims), np.shape(x)).copy()


def mean_vjp(x, axis, keepdims, g):
    """Eq 15.29: y = Σ x / n, so x̄ = g / n copied back."""
    axes = _axes(axis, np.ndim(x))
    n = int(np.prod([np.shape(x)[ax] for ax in axes]))
    return np.broadcast_to(_keep(g, axes, keepdims) / n, np.shape(x)).copy()


def var_vjp(x, axis, keepdims, correction, g):
    """Eq 15.30: y = Σ (x - μ)² / (n - c), so x̄ = g · 2 (x - μ) / (n - c)."""
    axes = _axes(axis, np.ndim(x))
    n = int(np.prod([np.shape(x)[ax] for ax in axes]))
    mu = np.mean(x, axis=axes, keepdims=True)
    return _keep(g, axes, keepdims) * 2 * (x - mu) / (n - correction)


def std_vjp(x, axis, keepdims, correction, g):
    """Eq 15.31: y = √var, so x̄ = var̄ / (2y) = g (x - μ) / ((n - c) y)."""
    axes = _axes(axis, np.ndim(x))
    n = int(np.prod([np.shape(x)[ax] for ax in axes]))
    mu = np.mean(x, axis=axes, keepdims=True)
    y = np.sqrt(np.sum((x - mu) ** 2, axis=axes, keepdims=True) / (n - correction))
    return _keep(g, axes, keepdims) * (x - mu) / ((n - correction) * y)


def extreme_vjp(x, axis, keepdims, g, kind: str = "max"):
    """Eq 15.32: x̄ = g [x = y] / #{i : xᵢ = y}: the tied positions share the gradient equally."""
    axes = _axes(axis, np.ndim(x))
    y = (np.max if kind == "max" else np.min)(x, axis=axes, keepdims=True)
    hit = x == y
    return hit * _keep(g, axes, keepdims) / hit.sum(axis=axes, keepdims=True)


def logsumexp_vjp(x, axis, keepdims, g):
    """Eq 15.33: ∂/∂xᵢ ln Σ e^x = e^(xᵢ - y) = softmax(x)ᵢ over the reduced axes."""
    axes = _axes(axis, np.ndim(x))
    y = special.logsumexp(x, axis=axes, keepdims=True) if axes else x
    return _keep(g, axes, keepdims) * np.exp(x - y)


def _softmax(x, axis):
    return np.exp(x - special.logsumexp(x, axis=axis, keepdims=True))


def softmax_vjp(x, axis, g):
    """Eq 15.34: s = softmax(x) has J = diag(s) - s sᵀ, so x̄ = s ⊙ (g - Σ g s)."""
    s = _softmax(x, axis)
    return s * (g - np.sum(g * s, axis=axis, keepdims=True))


def log_softmax_vjp(x, axis, g):
    """Eq 15.35: y = x - logsumexp(x) has J = I - 1 sᵀ, so x̄ = g - s Σ g."""
    return g - _softmax(x, axis) * np.sum(g, axis=axis, keepdims=True)


# =========================================================================== (f) shape ops: the adjoint
def reshape_vjp(g, shape):
    """Eq 15.36: a reshape keeps every element, so x̄ = g put back in x's shape."""
    return np.reshape(g, shape)


def transpose_vjp(g, perm):
    """Eq 15.37: y = x permuted by perm gives x̄ = g permuted by the inverse permutation."""
    return np.transpose(g, np.argsort(perm))


def getitem_vjp(shape, key, g):
    """Eq 15.38: x̄ = zeros with g added at the selected positions, a repeated position collecting every copy."""
    out = np.zeros(shape)
    np.add.at(out, key, g)
    return out


def concat_vjp(g, sizes: Sequence[int], axis: int):
    """Eq 15.39: each input gets the slice of g that it occupies."""
    return np.split(g, np.cumsum(sizes)[:-1], axis=axis)


def stack_vjp(g, count: int, axis: int):
    """Eq 15.39: each input gets its own index along the new axis."""
    return [np.take(g, i, axis=axis) for i in range(count)]


def where_vjp(cond, a, b, g):
    """Eq 15.41: ā = g [cond], b̄ = g [not cond]; the condition gets nothing."""
    return unbroadcast(np.where(cond, g, 0.0), np.shape(a)), unbroadcast(np.where(cond, 0.0, g), np.shape(b))


# =========================================================================== (g) matmul
def matmul_vjp(a, b, g):
    """Eq 15.43-15.45: Ā = G Bᵀ, B̄ = Aᵀ G, a vector being a row (on the left) or a column (on the right),
    and each batch axis that broadcasting stretched summed back (Eq 15.4)."""
    if a.ndim == 1 and b.ndim == 1:  # y = u · v, a number
        return g * b, g * a
    if a.ndim == 2 and b.ndim == 1:  # y = A v
        return np.outer(g, b), a.T @ g
    if a.ndim == 1 and b.ndim == 2:  # y = u B
        return b @ g, np.outer(a, g)
    # stacks of matrices: one product per batch position, then the batch axes summed back
    da = np.einsum("...nm,...km->...nk", g, b)
    db = np.einsum("...nk,...nm->...km", a, g)
    return unbroadcast(da, a.shape), unbroadcast(db, b.shape)


# =========================================================================== (h) categorical losses
def cross_entropy_vjp(logits, labels, g, reduction: str = "mean"):
    """Eq 15.46-15.47: ℓᵢ = logsumexp(lᵢ) - lᵢ[yᵢ] gives l̄ᵢ = gᵢ (softmax(lᵢ) - onehot(yᵢ));
    the mean over N examples hands each gᵢ = g / N."""
    n = logits.shape[0]
    gi = np.full(n, g / n) if reduction == "mean" else (np.full(n, g) if reduction == "sum" else g)
    onehot = np.eye(logits.shape[1])[labels]
    return gi[:, None] * (_softmax(logits, -1) - onehot)


def nll_loss_vjp(log_probs, labels, g, reduction: str = "mean"):
    """Eq 15.47: ℓᵢ = -log_probs[i, yᵢ] gives -gᵢ at each label, 0 elsewhere."""
    n = log_probs.shape[0]
    gi = np.full(n, g / n) if reduction == "mean" else np.full(n, g)
    return -gi[:, None] * np.eye(log_probs.shape[1])[labels]


# =========================================================================== references
def _leaf(a) -> mv.Tensor:
    return mv.tensor(np.array(a, dtype=np.float64), requires_grad=True, dtype="float64")


def engine_vjp(f_mv: Callable, inputs: Sequence[np.ndarray], g) -> list[np.ndarray]:
    """The engine's backward: leaves for the inputs, y = f_mv(leaves), y.backward(g); their .grad."""
    leaves = [_leaf(a) for a in inputs]
    y = f_mv(*leaves)
    y.backward(np.asarray(g, dtype=np.float64))
    return [np.full(np.shape(a), np.nan) if leaf.grad is None else np.asarray(leaf.grad) for a, leaf in zip(inputs, leaves)]


def numeric_vjp(f_np: Callable, inputs: Sequence[np.ndarray], g) -> list[np.ndarray]:
    """Central differences of L = Σ g f(inputs), one input at a time."""
    grads = []
    for i in range(len(inputs)):
        def loss(v, i=i):
            args = list(inputs)
            args[i] = v
            return float(np.sum(g * f_np(*args)))

        grads.append(central_difference(loss, inputs[i], FD_STEP))
    return grads


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])


def _check(t: Table, eq: str, label: str, f_np: Callable | None, f_mv: Callable | None, inputs, g, hand,
           fd: bool = True, note: str = "") -> None:
    """Rows: the hand VJP against the engine's backward, and against central differences."""
    inputs = [np.asarray(a, dtype=np.float64) for a in inputs]
    g = np.asarray(g, dtype=np.float64)
    hand = [np.asarray(h, dtype=np.float64) for h in hand]
    for h, a in zip(hand, inputs):
        if h.shape != a.shape:  # a VJP must come back in its input's shape
            t.holds(f"Eq {eq} {label}: hand VJP has the input's shape", False, note=f"{h.shape} vs {a.shape}")
            return
    if f_mv is not None:
        t.equal(f"Eq {eq} {label}: by hand vs engine", _flat(hand), _flat(engine_vjp(f_mv, inputs, g)), EXACT_TOL,
                note=note)
    if fd and f_np is not None:
        t.equal(f"Eq {eq} {label}: by hand vs central differences", _flat(hand), _flat(numeric_vjp(f_np, inputs, g)),
                FD_TOL)


def _away_from(x, points, gap=0.05):
    """x moved so no entry lies within ``gap`` of a kink (central differences straddle no kink)."""
    for p in points:
        close = np.abs(x - p) < gap
        x = np.where(close, p + gap * np.where(x >= p, 1, -1) + (x - p), x)
    return x


# =========================================================================== the checks
def run(plot_dir: str | None = None) -> Table:
    """Evaluate both sides of Eq 15.1 - 15.47 and return the table (``plot_dir`` is unused: no figure)."""
    rng = np.random.default_rng(SEED)
    t = Table(TITLE)
    _check_vjp_idea(t, rng)
    _check_arithmetic(t, rng)
    _check_elementwise(t, rng)
    _check_reductions(t, rng)
    _check_shape_ops(t, rng)
    _check_matmul(t, rng)
    _check_losses(t, rng)
    return t


def _check_vjp_idea(t: Table, rng) -> None:
    # ---- Eq 15.1: x̄ = Jᵀ g for a map R^4 -> R^3 with a full Jacobian
    A = rng.standard_normal((3, 4))
    x = rng.standard_normal(4)
    g = rng.standard_normal(3)

    def f_np(v):
        return np.tanh(A @ v) * v[:3] ** 2

    J = np.stack([central_difference(lambda v, i=i: float(f_np(v)[i]), x, FD_STEP) for i in range(3)])  # row i = ∇yᵢ
    hand = vjp_from_jacobian(J, g)
    t.equal("Eq 15.1 x̄ = Jᵀg (J by differences) vs engine", hand,
            engine_vjp(lambda v: mv.tanh(mv.tensor(A, dtype="float64") @ v) * v[:3] ** 2, [x], g)[0], FD_TOL)
    t.equal("Eq 15.1 x̄ = Jᵀg vs central differences of gᵀf", hand, numeric_vjp(f_np, [x], g)[0], FD_TOL)

    # ---- Eq 15.2: one backward pass gives one row of J; m = 3 outputs need 3 passes
    rows = [engine_vjp(lambda v: mv.tanh(mv.tensor(A, dtype="float64") @ v) * v[:3] ** 2, [x], np.eye(3)[i])[0]
            for i in range(3)]
    t.equal("Eq 15.2 3 backward passes with g = e_i rebuild J", np.stack(rows), J, FD_TOL,
            note="reverse mode: one pass per scalar output, whatever the number of inputs")

    # ---- Eq 15.3: a tensor used several times collects the sum of its contributions
    x = rng.standard_normal(5)
    g = rng.standard_normal(5)
    _check(t, "15.3", "x*x + sin x (x used 3 times)", lambda v: v * v + np.sin(v),
           lambda v: v * v + mv.sin(v), [x], g, [g * x + g * x + g * np.cos(x)])
    G = rng.standard_normal((5, 5))
    _check(t, "15.3", "outer(x, x): x̄ = (G + Gᵀ) x", lambda v: v[:, None] * v[None, :],
           lambda v: v[:, None] * v[None, :], [x], G, [(G + G.T) @ x])

    # ---- Eq 15.4: unbroadcast, with size-1 axes on both sides, a 0-d operand and new leading axes
    cases = [((3, 1), (1, 4)), ((), (2, 3)), ((4,), (2, 3, 4)), ((2, 1, 4), (3, 1))]
    for sa, sb in cases:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        g = rng.standard_normal(np.broadcast_shapes(sa, sb))
        _check(t, "15.4", f"a{sa} * b{sb}", lambda u, v: u * v, lambda u, v: u * v, [a, b], g,
               [unbroadcast(g * b, sa), unbroadcast(g * a, sb)])


def _check_arithmetic(t: Table, rng) -> None:
    sa, sb = (3, 1), (1, 4)  # both sides broadcast
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    b = _away_from(b, [0.0], 0.4)  # a divisor far from 0
    g = rng.standard_normal((3, 4))
    _check(t, "15.5", "add a(3,1) + b(1,4)", np.add, mv.add, [a, b], g, add_vjp(a, b, g))
    _check(t, "15.5", "sub a(3,1) - b(1,4)", np.subtract, mv.sub, [a, b], g, sub_vjp(a, b, g))
    _check(t, "15.6", "mul a(3,1) * b(1,4)", np.multiply, mv.mul, [a, b], g, mul_vjp(a, b, g))
    _check(t, "15.7", "div a(3,1) / b(1,4)", np.divide, mv.div, [a, b], g, div_vjp(a, b, g))
    s = np.float64(rng.standard_normal())
    _check(t, "15.7", "div 0-d / b(1,4)", np.divide, mv.div, [s, b], g[:1], div_vjp(s, b, g[:1]))
    _check(t, "15.8", "neg", np.negative, mv.neg, [a], g[:, :1], [neg_vjp(a, g[:, :1])])

    # ---- Eq 15.9: x ** p with a constant p
    x = rng.uniform(0.6, 2.0, (2, 3))  # away from 0, where x^-1.5 curves hard
    gx = rng.standard_normal((2, 3))
    for p in (3, 2, 0.5, -1.5):
        _check(t, "15.9", f"x ** {p}", lambda v, p=p: v**p, lambda v, p=p: v**p, [x], gx, [power_const_vjp(x, p, gx)])
    x0 = np.array([[0.0, -1.5, 2.0], [0.0, 3.0, -0.2]])  # x ** 0 = 1, flat even at x = 0
    _check(t, "15.9", "x ** 0 = 1: gradient 0 everywhere, x = 0 included", lambda v: v**0.0,
           lambda v: v**0, [x0], gx, [power_const_vjp(x0, 0, gx)])

    # ---- Eq 15.10: a ** b with a tensor exponent (a > 0), broadcasting on both sides; and 2 ** x
    base = rng.uniform(0.4, 2.0, (3, 1))
    expo = rng.standard_normal((1, 4))
    _check(t, "15.10", "a(3,1) ** b(1,4)", np.power, mv.power, [base, expo], g, power_vjp(base, expo, g))
    xs = rng.standard_normal(4)
    _check(t, "15.10", "2 ** x: x̄ = g 2^x ln 2", lambda v: 2.0**v, lambda v: 2.0**v, [xs], g[0],
           [power_vjp(np.full(4, 2.0), xs, g[0])[1]])
    a0, b0, g0 = np.array([0.0, 0.0, 0.7]), np.array([1.5, 2.0, 0.0]), np.array([0.9, -1.1, 0.6])
    _check(t, "15.10", "a ** b at a = 0 (b > 0) and at b = 0: the 0·∞ points give 0", None, mv.power, [a0, b0], g0,
           power_vjp(a0, b0, g0), fd=False)
    _check(t, "15.10", "b̄ of 0 ** b (b > 0) is 0: 0^b stays 0", lambda v: a0[:2] ** v,
           lambda v: mv.tensor(a0[:2], dtype="float64") ** v, [b0[:2]], g0[:2], [power_vjp(a0[:2], b0[:2], g0[:2])[1]])


def _check_elementwise(t: Table, rng) -> None:
    shape = (3, 4)
    g = rng.standard_normal(shape)
    for name, (eq, f_np, _, f_mv, (lo, hi)) in ELEMENTWISE.items():
        x = _away_from(rng.uniform(lo, hi, shape), [0.0] if name in ("abs", "sign", "elu") else [])
        _check(t, eq, name, f_np, f_mv, [x], g, [elementwise_vjp(name, x, g)])

    # ---- kinks and conventions: abs and sign at 0 (abs: central differences give 0 there too)
    z = np.array([0.0, -1.0, 1.0])
    gz = np.array([0.7, -0.3, 1.1])
    _check(t, "15.14", "abs at 0: subgradient 0", np.abs, mv.abs, [z], gz, [elementwise_vjp("abs", z, gz)])
    _check(t, "15.15", "sign at 0: gradient 0 (a jump: no derivative)", None, mv.sign, [z], gz,
           [elementwise_vjp("sign", z, gz)], fd=False)

    # ---- Eq 15.20: elu with α ≠ 1 (left slope α eˣ), and at 0 the left derivative α
    x = _away_from(rng.uniform(-2, 2, shape), [0.0])
    _check(t, "15.20", "elu, alpha = 0.5", lambda v: np.where(v > 0, v, 0.5 * np.expm1(np.minimum(v, 0))),
           lambda v: mv.elu(v, alpha=0.5), [x], g, [elu_vjp(x, 0.5, g)])
    _check(t, "15.20", "elu at 0, alpha = 0.5: the left derivative alpha", None, lambda v: mv.elu(v, alpha=0.5),
           [z], gz, [elu_vjp(z, 0.5, gz)], fd=False)

    # ---- Eq 15.24: softplus with β
    has_beta = "beta" in inspect.signature(mv.softplus).parameters
    for beta in (1.0, 2.5, 0.5):
        x = rng.uniform(-3, 3, shape)
        if has_beta:
            engine, note = (lambda v, b=beta: mv.softplus(v, beta=b)), ""
        elif beta == 1.0:
            engine, note = mv.softplus, ""
        else:
            engine = lambda v, b=beta: mv.softplus(b * v) / b  # noqa: E731
            note = "mv.softplus has no beta: the engine row checks the composition softplus(beta x) / beta"
        _check(t, "15.24", f"softplus, beta = {beta}", lambda v, b=beta: softplus_beta(v, b), engine, [x], g,
               [softplus_beta_vjp(x, beta, g)], note=note)

    # ---- Eq 15.25: clip: inside, outside, and exactly at the bounds
    low, high = -0.5, 0.8
    x = _away_from(rng.uniform(-1.5, 1.5, shape), [low, high])
    _check(t, "15.25", "clip(-0.5, 0.8)", lambda v: np.clip(v, low, high), lambda v: mv.clip(v, low, high), [x], g,
           [clip_vjp(x, low, high, g)])
    xb = np.array([low, high, 0.1])
    gb = np.array([1.3, -0.4, 0.9])
    _check(t, "15.25", "clip at both bounds: 0", None, lambda v: mv.clip(v, low, high), [xb], gb,
           [clip_vjp(xb, low, high, gb)], fd=False)
    central = central_difference(lambda v: float(np.clip(v[0], low, high)), np.array([low]), 1e-7)  # ½, the average
    one_sided = (np.clip(low + 1e-7, low, high) - low) / 1e-7, (low - np.clip(low - 1e-7, low, high)) / 1e-7
    t.holds("Eq 15.25 at x = low the one-sided slopes are 1 and 0; minivae takes 0",
            abs(one_sided[0] - 1) < 1e-6 and abs(one_sided[1]) < 1e-12 and clip_vjp(xb, low, high, gb)[0] == 0,
            left=one_sided[0], right=one_sided[1], note=f"central differences give {float(central[0]):.3g} there")

    # ---- Eq 15.26: maximum / minimum of two tensors, broadcasting, and ties
    a = rng.standard_normal((3, 1))
    b = rng.standard_normal((1, 4))
    b[0, 1] = a[1, 0] + 0.3  # keep differences away from ties in the untied check
    a, b = _away_from(a, list(b.ravel()), 0.05), b
    gg = rng.standard_normal((3, 4))
    _check(t, "15.26", "maximum a(3,1), b(1,4)", np.maximum, mv.maximum, [a, b], gg, maximum_vjp(a, b, gg))
    _check(t, "15.26", "minimum a(3,1), b(1,4)", np.minimum, mv.minimum, [a, b], gg, minimum_vjp(a, b, gg))
    ta = np.array([1.0, 2.0, -0.5, 0.3])
    tb = np.array([1.0, 1.0, -0.5, 0.9])  # ties at positions 0 and 2
    gt = np.array([0.8, -1.2, 2.0, 0.5])
    # At a tie, central differences of max(a, b) in a give (h - 0) / 2h = ½: the same split as minivae's.
    _check(t, "15.26", "maximum with ties: g split in half", np.maximum, mv.maximum, [ta, tb], gt,
           maximum_vjp(ta, tb, gt))
    _check(t, "15.26", "minimum with ties: g split in half", np.minimum, mv.minimum, [ta, tb], gt,
           minimum_vjp(ta, tb, gt))

    # ---- Eq 15.27: leaky_relu, and at 0 the left slope
    x = _away_from(rng.uniform(-2, 2, shape), [0.0])
    _check(t, "15.27", "leaky_relu, slope 0.2", lambda v: np.where(v > 0, v, 0.2 * v),
           lambda v: mv.leaky_relu(v, 0.2), [x], g, [leaky_relu_vjp(x, 0.2, g)])
    _check(t, "15.27", "leaky_relu at 0: the slope (left derivative)", None, lambda v: mv.leaky_relu(v, 0.2), [z], gz,
           [leaky_relu_vjp(z, 0.2, gz)], fd=False)


def _check_reductions(t: Table, rng) -> None:
    x = rng.standard_normal((2, 3, 4))
    s0 = np.float64(0.7)  # a 0-d tensor

    def reduction_rows(eq, name, f_np, f_mv, vjp, settings, *extra):
        for axis, keepdims in settings:
            y_shape = np.shape(f_np(x, axis, keepdims, *extra))
            g = rng.standard_normal(y_shape)
            _check(t, eq, f"{name} axis={axis} keepdims={keepdims}" + (f" correction={extra[0]}" if extra else ""),
                   lambda v: f_np(v, axis, keepdims, *extra), lambda v: f_mv(v, axis, keepdims, *extra), [x], g,
                   [vjp(x, axis, keepdims, *extra, g)])

    settings = [(None, False), ((0, -1), False), (-2, True)]
    reduction_rows("15.28", "sum", lambda v, a, k: np.sum(v, axis=a, keepdims=k),
                   lambda v, a, k: mv.sum(v, axis=a, keepdims=k), sum_vjp, settings)
    reduction_rows("15.29", "mean", lambda v, a, k: np.mean(v, axis=a, keepdims=k),
                   lambda v, a, k: mv.mean(v, axis=a, keepdims=k), mean_vjp, settings)
    _check(t, "15.28", "sum of a 0-d tensor", np.sum, mv.sum, [s0], np.float64(1.7), [sum_vjp(s0, None, False, 1.7)])
    _check(t, "15.29", "mean of a 0-d tensor", np.mean, mv.mean, [s0], np.float64(1.7),
           [mean_vjp(s0, None, False, 1.7)])
    for correction in (1, 0):
        reduction_rows("15.30", "var", lambda v, a, k, c: np.var(v, axis=a, keepdims=k, ddof=c),
                       lambda v, a, k, c: v.var(axis=a, keepdims=k, correction=c), var_vjp,
                       [(None, False), ((0, 2), True), (-1, False)], correction)
        reduction_rows("15.31", "std", lambda v, a, k, c: np.std(v, axis=a, keepdims=k, ddof=c),
                       lambda v, a, k, c: v.std(axis=a, keepdims=k, correction=c), std_vjp,
                       [(1, False), ((-1, 0), True)], correction)

    # ---- Eq 15.32: max / min over axes; untied (differences apply), then ties (a convention)
    for kind, f_np, f_mv in (("max", np.max, mv.max), ("min", np.min, mv.min)):
        for axis, keepdims in ((1, False), (-1, True), (None, False), ((0, 2), False)):
            g = rng.standard_normal(np.shape(f_np(x, axis=axis, keepdims=keepdims)))
            _check(t, "15.32", f"{kind} axis={axis} keepdims={keepdims}, no ties",
                   lambda v: f_np(v, axis=axis, keepdims=keepdims), lambda v: f_mv(v, axis=axis, keepdims=keepdims),
                   [x], g, [extreme_vjp(x, axis, keepdims, g, kind)])
        _check(t, "15.32", f"{kind} of a 0-d tensor", f_np, f_mv, [s0], np.float64(-0.4),
               [extreme_vjp(s0, None, False, np.float64(-0.4), kind)])

    tied = np.array([[1.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, -1.0], [0.0, -4.0, 5.0, -4.0]])
    for kind, f_np, f_mv in (("max", np.max, mv.max), ("min", np.min, mv.min)):
        for axis in (1, -2, None):
            g = rng.standard_normal(np.shape(f_np(tied, axis=axis)))
            hand = extreme_vjp(tied, axis, False, g, kind)
            _check(t, "15.32", f"{kind} axis={axis} with ties: shared equally", None,
                   lambda v: f_mv(v, axis=axis), [tied], g, [hand], fd=False)
            # Moving all tied entries together by h moves each extreme by h: the derivative along that
            # direction v is Σ g, and a correct x̄ must satisfy <x̄, v> = Σ g (a share of 1 per slot).
            y = f_np(tied, axis=axis, keepdims=True)
            v = (tied == y).astype(float)
            along = (np.sum(g * f_np(tied + FD_STEP * v, axis=axis)) - np.sum(g * f_np(tied - FD_STEP * v, axis=axis))) / (
                2 * FD_STEP)
            t.equal(f"Eq 15.32 {kind} axis={axis} with ties: <x̄, v> = derivative along the tied set",
                    np.sum(hand * v), along, FD_TOL)

    # ---- Eq 15.33: logsumexp over one, several or all axes (gradient = softmax), and 0-d
    for axis, keepdims in ((-1, False), ((0, 1), False), (None, False), (1, True)):
        g = rng.standard_normal(np.shape(special.logsumexp(x, axis=axis, keepdims=keepdims)))
        _check(t, "15.33", f"logsumexp axis={axis} keepdims={keepdims}",
               lambda v: special.logsumexp(v, axis=axis, keepdims=keepdims),
               lambda v: mv.logsumexp(v, axis=axis, keepdims=keepdims), [x], g, [logsumexp_vjp(x, axis, keepdims, g)])
    _check(t, "15.33", "logsumexp of a 0-d tensor: y = x", lambda v: v, lambda v: mv.logsumexp(v), [s0],
           np.float64(0.9), [logsumexp_vjp(s0, -1, False, np.float64(0.9))])

    # ---- Eq 15.34, 15.35: softmax and log_softmax, along the last and the first axis
    for axis in (-1, 0):
        g = rng.standard_normal(x.shape)
        _check(t, "15.34", f"softmax axis={axis}", lambda v: _softmax(v, axis), lambda v: mv.softmax(v, axis=axis),
               [x], g, [softmax_vjp(x, axis, g)])
        _check(t, "15.35", f"log_softmax axis={axis}", lambda v: v - special.logsumexp(v, axis=axis, keepdims=True),
               lambda v: mv.log_softmax(v, axis=axis), [x], g, [log_softmax_vjp(x, axis, g)])


def _check_shape_ops(t: Table, rng) -> None:
    x = rng.standard_normal((2, 3, 4))
    # ---- Eq 15.36: reshape, flatten, squeeze, unsqueeze (and astype, the identity on values)
    cases = [
        ("reshape to (4, 6)", lambda v: v.reshape(4, 6), lambda v: v.reshape(4, 6), x),
        ("flatten(1)", lambda v: v.reshape(2, 12), lambda v: mv.flatten(v, 1), x),
        ("squeeze(axis=-1) of (3, 1)", lambda v: v[:, 0], lambda v: mv.squeeze(v, axis=-1), x[0, :, :1]),
        ("unsqueeze(-1)", lambda v: v[..., None], lambda v: mv.unsqueeze(v, -1), x),
        ("flatten of a 0-d tensor", lambda v: np.reshape(v, (1,)), mv.flatten, np.float64(1.3)),
    ]
    for label, f_np, f_mv, v in cases:
        g = rng.standard_normal(np.shape(f_np(v)))
        _check(t, "15.36", label, f_np, f_mv, [v], g, [reshape_vjp(g, np.shape(v))])
    g32 = rng.standard_normal(3)
    x32 = mv.tensor(rng.standard_normal(3), requires_grad=True, dtype="float32")
    mv.astype(x32, "float64").backward(g32)
    t.equal("Eq 15.36 astype float32 -> float64: x̄ = g cast back", g32.astype(np.float32), np.asarray(x32.grad), 0.0,
            note="the identity map: g only changes precision")

    # ---- Eq 15.37: transpose / permute (default reversal, an explicit and a negative permutation, .T)
    for label, perm, f_mv in (("transpose()", (2, 1, 0), lambda v: mv.transpose(v)),
                              ("transpose(2, 0, 1)", (2, 0, 1), lambda v: mv.transpose(v, 2, 0, 1)),
                              ("transpose(-1, 0, 1)", (2, 0, 1), lambda v: v.transpose(-1, 0, 1)),
                              (".T", (2, 1, 0), lambda v: v.T)):
        g = rng.standard_normal(np.transpose(x, perm).shape)
        _check(t, "15.37", label, lambda v, p=perm: np.transpose(v, p), f_mv, [x], g, [transpose_vjp(g, perm)])

    # ---- Eq 15.38: getitem, a scatter-add: repeated indices accumulate
    m = rng.standard_normal((5, 3))
    rows = np.array([0, 2, 0, 0, -1])
    pairs = (np.array([1, 1, 4, 1]), np.array([2, 2, 0, -1]))
    mask = m > 0
    for label, key in (("rows [0, 2, 0, 0, -1] (row 0 three times)", rows),
                       ("pairs with (1, 2) twice", pairs),
                       ("slice [1:, ::-2]", (slice(1, None), slice(None, None, -2))),
                       ("mask m > 0", mask),
                       ("integer -1 (last row)", -1)):
        g = rng.standard_normal(np.shape(m[key]))
        _check(t, "15.38", f"getitem {label}", lambda v, k=key: v[k], lambda v, k=key: v[k], [m], g,
               [getitem_vjp(m.shape, key, g)])

    # ---- Eq 15.39: concat and stack, the gradient sliced back
    parts = [rng.standard_normal((2, n)) for n in (3, 1, 2)]
    g = rng.standard_normal((2, 6))
    _check(t, "15.39", "concat of (2,3), (2,1), (2,2) along axis -1", lambda *p: np.concatenate(p, axis=-1),
           lambda *p: mv.concat(p, axis=-1), parts, g, concat_vjp(g, [3, 1, 2], -1))
    same = [rng.standard_normal((2, 3)) for _ in range(3)]
    g = rng.standard_normal((2, 3, 3))
    _check(t, "15.39", "stack of three (2,3) along axis -1", lambda *p: np.stack(p, axis=-1),
           lambda *p: mv.stack(p, axis=-1), same, g, stack_vjp(g, 3, -1))
    scalars = [np.float64(v) for v in rng.standard_normal(3)]
    g = rng.standard_normal(3)
    _check(t, "15.39", "stack of three 0-d tensors", lambda *p: np.stack(p), lambda *p: mv.stack(p), scalars, g,
           stack_vjp(g, 3, 0))

    # ---- Eq 15.40: broadcast_to / expand, a sum over the copies
    for label, v, shape, f_mv in (("broadcast_to (3,1) -> (2,3,4)", x[0, :, :1], (2, 3, 4),
                                   lambda u: mv.broadcast_to(u, (2, 3, 4))),
                                  ("expand(4, -1) of (1,3)", x[0, :1, :3], (4, 3), lambda u: u.expand(4, -1)),
                                  ("broadcast_to 0-d -> (2,2)", np.float64(0.4), (2, 2),
                                   lambda u: mv.broadcast_to(u, (2, 2)))):
        g = rng.standard_normal(shape)
        _check(t, "15.40", label, lambda u, s=shape: np.broadcast_to(u, s), f_mv, [v], g, [unbroadcast(g, np.shape(v))])

    # ---- Eq 15.41: where (condition broadcast, a 0-d branch), and a mask used as a constant
    cond = rng.standard_normal((3, 1)) > 0
    cond[0, 0], cond[1, 0] = True, False
    a, b = rng.standard_normal((1, 4)), np.float64(-0.6)
    g = rng.standard_normal((3, 4))
    _check(t, "15.41", "where(cond (3,1), a (1,4), b 0-d)", lambda u, w: np.where(cond, u, w),
           lambda u, w: mv.where(cond, u, w), [a, b], g, where_vjp(cond, a, b, g))
    xm = _away_from(rng.standard_normal((3, 4)), [0.0])
    _check(t, "15.41", "where(x > 0, x, 0.1 x): the mask x > 0 is a constant", lambda u: np.where(u > 0, u, 0.1 * u),
           lambda u: mv.where(u > 0, u, 0.1 * u), [xm], g, [g * np.where(xm > 0, 1.0, 0.1)])

    # ---- Eq 15.42: comparisons and one_hot are not differentiable: no Tensor, no gradient
    xt = _leaf(xm)
    answers = [mv.gt(xt, 0.0), mv.eq(xt, xt), xt <= 0.1, mv.ne(xt, 0.0), mv.lt(xt, 1.0), mv.ge(xt, -1.0)]
    t.holds("Eq 15.42 comparisons give boolean arrays, not tensors (no gradient)",
            all(not isinstance(r, mv.Tensor) and r.dtype == bool for r in answers))
    hot = mv.one_hot(np.array([2, 0, 2]), 4, dtype="float64")
    t.holds("Eq 15.42 one_hot is a constant tensor (labels are data)",
            isinstance(hot, mv.Tensor) and not hot.requires_grad and np.array_equal(hot.numpy(), np.eye(4)[[2, 0, 2]]))


def _check_matmul(t: Table, rng) -> None:
    cases = [
        ("15.43", "2-D (3,4) @ (4,2)", (3, 4), (4, 2)),
        ("15.44", "matrix-vector (3,4) @ (4,)", (3, 4), (4,)),
        ("15.44", "vector-matrix (4,) @ (4,2)", (4,), (4, 2)),
        ("15.44", "vector-vector (4,) @ (4,)", (4,), (4,)),
        ("15.45", "batched (2,1,3,4) @ (5,4,2)", (2, 1, 3, 4), (5, 4, 2)),
        ("15.45", "batched (2,3,4) @ (4,2) (b shared by the batch)", (2, 3, 4), (4, 2)),
        ("15.45", "batched (1,3,4) @ (2,4,2)", (1, 3, 4), (2, 4, 2)),
    ]
    for eq, label, sa, sb in cases:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        g = rng.standard_normal(np.shape(a @ b))
        _check(t, eq, f"matmul {label}", np.matmul, mv.matmul, [a, b], g, matmul_vjp(a, b, g))


def _check_losses(t: Table, rng) -> None:
    n, c = 5, 4
    logits = rng.standard_normal((n, c)) * 2
    labels = np.array([1, 3, 3, 0, 1])

    def ce_np(l, reduction):
        per = special.logsumexp(l, axis=-1) - l[np.arange(n), labels]
        return per.mean() if reduction == "mean" else per.sum() if reduction == "sum" else per

    for reduction, g in (("none", rng.standard_normal(n)), ("sum", np.float64(1.4)), ("mean", np.float64(1.0))):
        eq = "15.46" if reduction == "none" else "15.47"
        _check(t, eq, f"cross_entropy (5,4) logits, reduction={reduction}", lambda l, r=reduction: ce_np(l, r),
               lambda l, r=reduction: mv.losses.cross_entropy(l, labels, reduction=r), [logits], g,
               [cross_entropy_vjp(logits, labels, g, reduction)])
    one = logits[0]
    _check(t, "15.46", "cross_entropy of one example (C,), 0-d label",
           lambda l: special.logsumexp(l) - l[2], lambda l: mv.losses.cross_entropy(l, np.array(2)), [one],
           np.float64(1.0), [special.softmax(one) - np.eye(c)[2]])
    logp = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    _check(t, "15.47", "nll_loss (5,4) log-probabilities, mean", lambda l: -l[np.arange(n), labels].mean(),
           lambda l: mv.losses.nll_loss(l, labels), [logp], np.float64(1.0), [nll_loss_vjp(logp, labels, 1.0)])


if __name__ == "__main__":
    sys.exit(main(run, sys.argv[1:]))
