"""Fused nodes give the numbers of the steps they fuse.

``linear(..., activation=f)`` (what ``Sequential`` builds from Linear + activation
modules) against ``f(linear(...))``, and ``bce_with_logits_sum`` against
``bce_with_logits(...).sum(axis)``: values and gradients, on every kernel set.
Provider-by-provider agreement is in test_providers.py; speed is shown by
benchmarks/cpu_step.py, never in a test.
"""

import numpy as np
import pytest

from minivae import providers
import minivae as mv
from minivae import nn, ops

RNG = np.random.default_rng(7)
ACTS = ["relu", "leaky_relu", "sigmoid", "tanh", "softplus"]


def _grads(fn, arrays, kernels, dtype):
    with providers.use_kernels(kernels):
        ts = [mv.tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
        out = fn(*ts)
        seed = np.linspace(0.5, 1.5, out.size).reshape(out.shape)
        out.backward(seed)
        return out.numpy(), [t.grad.copy() for t in ts]


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 3e-5)])
@pytest.mark.parametrize("act", ACTS)
def test_fused_linear_activation_matches_two_nodes(act, dtype, tol):
    x, w, b = RNG.normal(size=(11, 6)), RNG.normal(size=(6, 9)), RNG.normal(size=9)
    slope = 0.2 if act == "leaky_relu" else 0.01

    def fused(x, w, b):
        return ops.linear(x, w, b, activation=act, slope=slope)

    def separate(x, w, b):
        h = ops.linear(x, w, b)
        return ops.leaky_relu(h, slope) if act == "leaky_relu" else getattr(ops, act)(h)

    want, want_g = _grads(separate, (x, w, b), "reference", dtype)
    for kernels in ("reference", "custom"):
        got, got_g = _grads(fused, (x, w, b), kernels, dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        for g, r in zip(got_g, want_g):
            np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


def test_sequential_fuses_linear_and_activation_modules():
    rng = mv.random.Generator(0)
    seq = nn.Sequential(nn.Linear(5, 4, rng=rng), nn.Tanh(), nn.Linear(4, 3, rng=rng), nn.LeakyReLU(0.3),
                        nn.Linear(3, 2, rng=rng))
    x = mv.tensor(RNG.normal(size=(6, 5)), dtype="float32")
    out = seq(x)
    assert out.op == "linear" and out.parents[0].op == "linear+leaky_relu"
    w = [p.data for p in seq.parameters()]
    h = np.tanh(x.numpy() @ w[0] + w[1]) @ w[2] + w[3]
    np.testing.assert_allclose(out.numpy(), np.where(h > 0, h, 0.3 * h) @ w[4] + w[5], rtol=1e-5, atol=1e-6)
    assert "activation='relu'" in repr(nn.Linear(2, 2, rng=rng, activation="relu"))
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Linear(2, 2, rng=rng, activation="gelu")


@pytest.mark.parametrize("axis", [None, -1, 0])
def test_bce_sum_node_matches_elementwise_then_sum(axis):
    """bce_with_logits_sum is bce_with_logits(...).sum(axis) in one node: same values and
    gradients (for the logits and the target), on both paths."""
    logits = RNG.uniform(-30, 30, (7, 12))
    target = RNG.uniform(0, 1, (7, 12))

    def two_nodes(l, t):
        return ops.bce_with_logits(l, t).sum(axis=axis)

    def one_node(l, t):
        return ops.bce_with_logits_sum(l, t, axis=axis)

    for dtype, tol in (("float64", 1e-12), ("float32", 2e-5)):
        want, want_g = _grads(two_nodes, (logits, target), "reference", dtype)
        for kernels in ("reference", "custom"):
            got, got_g = _grads(one_node, (logits, target), kernels, dtype)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
            for g, r in zip(got_g, want_g):
                np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


