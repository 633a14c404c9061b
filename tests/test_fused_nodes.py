"""The CPU fast paths (issue 7) give the reference path's losses and gradients.

Covers what the CPU provider does differently from the reference code: the fused
linear + activation node (and Sequential's fusion into it), in-place activations,
the BCE that saves e^-|l| and reads a broadcast upstream gradient in place, the
serial Adam loop, and a whole VAE training step from the benchmark. No timing here:
speed is shown by benchmarks/cpu_step.py.
"""

import numpy as np
import pytest

from minivae import providers
import minivae as mv
from minivae import backend, nn, ops

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
    x = mv.tensor(RNG.normal(size=(6, 5)))
    out = seq(x)
    assert out.op == "linear" and out._parents[0].op == "linear+leaky_relu"
    w = [p.data for p in seq.parameters()]
    h = np.tanh(x.numpy() @ w[0] + w[1]) @ w[2] + w[3]
    np.testing.assert_allclose(out.numpy(), np.where(h > 0, h, 0.3 * h) @ w[4] + w[5], rtol=1e-5, atol=1e-6)
    assert "activation='relu'" in repr(nn.Linear(2, 2, rng=rng, activation="relu"))
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Linear(2, 2, rng=rng, activation="gelu")


@pytest.mark.parametrize("reduce", ["sum", "rows", "none"])
def test_bce_saved_exp_and_broadcast_gradient(reduce):
    logits = RNG.uniform(-40, 40, (8, 13))
    target = RNG.uniform(0, 1, (8, 13))

    def loss(l):
        values = ops.bce_with_logits(l, target)
        return values.sum() if reduce == "sum" else values.sum(axis=-1) if reduce == "rows" else values

    for dtype, tol in (("float64", 1e-12), ("float32", 2e-5)):
        ref, (ref_g,) = _grads(loss, (logits,), "reference", dtype)
        got, (got_g,) = _grads(loss, (logits,), "custom", dtype)
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(got_g, ref_g, rtol=tol, atol=tol)


def test_auto_uses_the_cpu_provider():
    from minivae.providers import cpu as accel_cpu

    with providers.use_kernels("auto"):
        assert providers.provider_for(np.zeros(3)) is accel_cpu.PROVIDER


@pytest.mark.parametrize("spelling", ["user", "sequential", "sliced"])
def test_benchmark_vae_step_same_losses_and_parameters_on_both_paths(spelling):
    """Five Adam steps of the benchmark's VAE in each spelling (separate Linear and relu calls;
    Sequential, which fuses them; fused layers with one sliced head): same losses, same
    parameters, reference vs custom."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_step.py"
    spec = importlib.util.spec_from_file_location("cpu_step", path)
    cpu_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_step)
    results = {}
    for kernels in ("reference", "custom"):
        with providers.use_kernels(kernels):
            step, model = cpu_step.build_minivae(16, seed=3, return_model=True, spelling=spelling)
            losses = [step() for _ in range(5)]
            results[kernels] = losses, [p.numpy().copy() for p in model.parameters()]
    np.testing.assert_allclose(results["custom"][0], results["reference"][0], rtol=1e-5)
    for got, want in zip(results["custom"][1], results["reference"][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


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


@pytest.mark.parametrize("kernels", ["reference", "custom"])
def test_bce_sum_node_gradcheck_and_second_backward(kernels):
    """float64 gradcheck of the fused node; a second backward (retain_graph) gives the same
    gradient although the first one reused the saved e^-|l| buffer for its result."""
    with providers.use_kernels(kernels):
        l = mv.tensor(RNG.uniform(-4, 4, (5, 6)), requires_grad=True, dtype="float64")
        t = mv.tensor(RNG.uniform(0, 1, (5, 6)), requires_grad=True, dtype="float64")
        assert mv.gradcheck(lambda l, t: ops.bce_with_logits_sum(l, t, axis=-1), [l, t]).ok
        assert mv.gradcheck(lambda l: mv.losses.bce_with_logits(l, t, "sum"), [l]).ok
        l.grad = None
        loss = ops.bce_with_logits_sum(l, t)
        loss.backward(retain_graph=True)
        first = l.grad.copy()
        l.grad = None
        loss.backward()
        np.testing.assert_allclose(l.grad, first, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_row_sums_in_blocks_equal_whole_row_sums(dtype):
    """The provider's blockwise row sums (any block size) are exactly those of the full array;
    the fused node on 3-D logits (samples, batch, pixels) agrees with the two-node form."""
    from minivae.providers import cpu as accel_cpu

    logits = RNG.uniform(-30, 30, (10, 17)).astype(dtype)
    target = RNG.uniform(0, 1, (10, 17)).astype(dtype)
    full = accel_cpu.PROVIDER.bce_logits(logits, target).sum(axis=-1)
    for block in (1, 3, 10, 256):
        sums, e = accel_cpu.PROVIDER.bce_logits_row_sums_saving(logits, target, block=block)
        np.testing.assert_array_equal(sums, full)
        np.testing.assert_array_equal(e, np.exp(-np.abs(logits)))
    l3, t3 = RNG.uniform(-5, 5, (3, 4, 6)), RNG.uniform(0, 1, (3, 4, 6))
    for axis in (-1, None, (1, 2)):
        want, want_g = _grads(lambda l, t: ops.bce_with_logits(l, t).sum(axis=axis), (l3, t3), "reference", dtype)
        got, got_g = _grads(lambda l, t: ops.bce_with_logits_sum(l, t, axis=axis), (l3, t3), "custom", dtype)
        tol = 1e-12 if dtype == "float64" else 2e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        for g, r in zip(got_g, want_g):
            np.testing.assert_allclose(g, r, rtol=tol, atol=tol)
