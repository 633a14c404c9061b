"""The compiled hot paths ("custom" kernels) agree with the readable reference code.

Same inputs, same seed: every hot op's value and gradients, a whole VAE training
step, and gradcheck with the custom kernels switched on.
"""

import numpy as np
import pytest

import minivae as mv
from minivae import backend

RNG = np.random.default_rng(2024)


def run_both(fn, *arrays, dtype="float64"):
    """fn(*tensors) -> Tensor; returns [(value, grads)] for reference and custom kernels."""
    results = []
    for kernels in ("reference", "custom"):
        with backend.use_kernels(kernels):
            ts = [mv.tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
            out = fn(*ts)
            out.backward(np.linspace(0.5, 1.5, out.size).reshape(out.shape))
            results.append((out.numpy(), [t.grad.copy() for t in ts]))
    return results


HOT = {
    "relu": lambda x: mv.relu(x),
    "leaky_relu": lambda x: mv.leaky_relu(x, 0.2),
    "sigmoid": lambda x: mv.sigmoid(x),
    "tanh": lambda x: mv.tanh(x),
    "softplus": lambda x: mv.softplus(x),
}


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-6)])
@pytest.mark.parametrize("name", list(HOT))
def test_activations_agree(name, dtype, tol):
    x = RNG.uniform(-30, 30, (7, 13))
    (ref, ref_g), (fast, fast_g) = run_both(HOT[name], x, dtype=dtype)
    np.testing.assert_allclose(fast, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(fast_g[0], ref_g[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 3e-5)])
def test_linear_rsample_kl_and_bce_agree(dtype, tol):
    x, w, b = RNG.normal(size=(9, 5)), RNG.normal(size=(5, 8)), RNG.normal(size=8)
    eps = RNG.normal(size=(9, 4))
    target = RNG.uniform(0, 1, (9, 8))

    def step(x, w, b):
        h = mv.linear(x, w, b)
        mu, lv = h[:, :4] * 1.0, h[:, 4:] * 0.5  # multiply: contiguous copies, as a model's heads are
        z = mv.Normal(mu, lv).rsample(eps=eps)
        logits = mv.concat([z, z], axis=1)
        rec = mv.losses.bce_with_logits(logits, target.astype(dtype), reduction="sum")
        return rec + mv.kl_normal_standard(mu, lv).sum()

    (ref, ref_g), (fast, fast_g) = run_both(step, x, w, b, dtype=dtype)
    np.testing.assert_allclose(fast, ref, rtol=tol)
    for f, r in zip(fast_g, ref_g):
        np.testing.assert_allclose(f, r, rtol=tol, atol=tol)


def test_adam_step_agrees():
    params = {}
    for kernels in ("reference", "custom"):
        with backend.use_kernels(kernels):
            p = mv.tensor(np.linspace(-1, 1, 12).reshape(3, 4), requires_grad=True, dtype="float64")
            opt = mv.optim.Adam([p], lr=0.01, weight_decay=0.1)
            for k in range(4):
                p.grad = np.cos(np.arange(12.0) + k).reshape(3, 4)
                opt.step()
            params[kernels] = p.numpy()
    np.testing.assert_allclose(params["custom"], params["reference"], rtol=1e-12, atol=1e-15)


def test_gradcheck_passes_with_custom_kernels():
    rng = mv.random.Generator(3)
    with backend.use_kernels("custom"):
        enc = mv.nn.Linear(6, 4, rng=rng, dtype="float64")
        dec = mv.nn.Linear(2, 6, rng=rng, dtype="float64")
        x = mv.tensor(RNG.uniform(0, 1, (5, 6)), dtype="float64")
        noise = mv.random.Generator(9)

        def loss():
            h = mv.tanh(enc(x))
            q = mv.Normal(h[:, :2] * 1.0, h[:, 2:] * 1.0)
            logits = dec(mv.softplus(q.rsample(rng=noise)))
            return mv.losses.bce_with_logits(logits, x, "sum") + q.kl_standard().sum()

        params = mv.nn.Sequential(enc, dec)
        assert mv.gradcheck(loss, params, rng=noise).ok


def test_kernel_choice_validation_and_alias():
    with backend.use_kernels("vendor"):
        assert backend.get_kernels() == "reference"
    with pytest.raises(ValueError, match="unknown kernel set"):
        backend.set_kernels("fastest")
