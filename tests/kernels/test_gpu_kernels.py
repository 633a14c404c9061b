"""The CUDA kernels at real sizes on CuPy arrays (real GPU only).

Run with ``MINIVAE_GPU_TESTS=1 pytest -m gpu tests/kernels`` on a machine with an
NVIDIA GPU and CuPy; everywhere else these tests are skipped (the simulator would
take hours at these sizes). References are NumPy float64 on copies of the inputs.
"""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy")

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM or os.environ.get("MINIVAE_GPU_TESTS") != "1":
    pytest.skip("real-GPU tests need MINIVAE_GPU_TESTS=1", allow_module_level=True)

from kernel_reference import activation, activation_derivative, adam_step, bce_with_logits, kl_rows  # noqa: E402

from minivae.kernels import cuda as kc  # noqa: E402

BATCH, IN, OUT = 1024, 784, 400


def _gpu(rng, shape, scale=1.0):
    host = (scale * rng.standard_normal(shape)).astype(np.float32)
    return host.astype(np.float64), cp.asarray(host)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_matmul_dense_layer_sizes(trans_a, trans_b):
    rng = np.random.default_rng(0)
    shapes = {(False, False): ((BATCH, IN), (IN, OUT)),       # x @ W
              (True, False): ((BATCH, IN), (BATCH, OUT)),     # x.T @ dy
              (False, True): ((BATCH, OUT), (IN, OUT))}       # dy @ W.T
    (a_h, a), (b_h, b) = (_gpu(rng, s) for s in shapes[(trans_a, trans_b)])
    expected = (a_h.T if trans_a else a_h) @ (b_h.T if trans_b else b_h)
    bias_h, bias = _gpu(rng, expected.shape[1])
    out = cp.empty(expected.shape, cp.float32)
    kc.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, bias=bias, stream=cp.cuda.get_current_stream())
    k = a.shape[0] if trans_a else a.shape[1]
    np.testing.assert_allclose(out.get(), expected + bias_h, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softplus"])
def test_bias_act_round_trip(act):
    rng = np.random.default_rng(1)
    (x_h, x), (b_h, b), (g_h, g) = _gpu(rng, (BATCH, OUT)), _gpu(rng, OUT), _gpu(rng, (BATCH, OUT))
    y = cp.empty_like(x)
    kc.bias_act_forward(x, b, y, act)
    np.testing.assert_allclose(y.get(), activation(act, x_h + b_h), rtol=1e-5, atol=1e-6)
    grad_in, grad_bias = cp.empty_like(x), cp.empty(OUT, cp.float32)
    kc.bias_act_backward(g, y, grad_in, act, grad_bias=grad_bias)
    expected = g_h * activation_derivative(act, x_h + b_h)
    np.testing.assert_allclose(grad_in.get(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_bias.get(), expected.sum(0), rtol=1e-4, atol=1e-3)


def test_vae_latent_and_losses():
    rng = np.random.default_rng(2)
    (mu_h, mu), (lv_h, lv), (eps_h, eps) = (_gpu(rng, (BATCH, 20)) for _ in range(3))
    z = cp.empty_like(mu)
    kc.reparam_forward(mu, lv, eps, z)
    np.testing.assert_allclose(z.get(), mu_h + np.exp(lv_h / 2) * eps_h, rtol=1e-5, atol=1e-6)
    rows = cp.empty(BATCH, cp.float32)
    kc.kl_forward(mu, lv, rows)
    np.testing.assert_allclose(rows.get(), kl_rows(mu_h, lv_h), rtol=1e-5, atol=1e-5)
    (l_h, logits), target_h = _gpu(rng, (BATCH, IN), 3.0), rng.uniform(size=(BATCH, IN)).astype(np.float32)
    total = cp.empty(1, cp.float32)
    kc.bce_logits_sum(logits, cp.asarray(target_h), total)
    np.testing.assert_allclose(total.get()[0], bce_with_logits(l_h, target_h).sum(), rtol=1e-5)
    col = cp.empty(IN, cp.float32)
    kc.column_sum(logits, col)
    np.testing.assert_allclose(col.get(), l_h.sum(0), rtol=1e-4, atol=1e-3)


def test_adam_full_weight_matrix():
    rng = np.random.default_rng(3)
    (p_h, p), (g_h, g) = _gpu(rng, (IN, OUT)), _gpu(rng, (IN, OUT))
    m, v = cp.zeros_like(p), cp.zeros_like(p)
    kc.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, step=1, weight_decay=0.01)
    ref_p, _, _ = adam_step(p_h, g_h, 0 * p_h, 0 * p_h, 1, 1e-3, 0.9, 0.999, 1e-8, 0.01, True)
    np.testing.assert_allclose(p.get(), ref_p, rtol=1e-5, atol=1e-6)
