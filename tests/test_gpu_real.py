"""The CuPy backend on a real GPU: our kernels wired into minivae, at real sizes.

Run on a machine with an NVIDIA GPU, CuPy and numba-cuda (``pip install -e ".[gpu-cu12,test]"`` for a
CUDA 12.x driver, ``".[gpu-cu13,test]"`` for 13.x, or ``pip install --no-deps -e .`` where they are
installed already)::

    MINIVAE_GPU_TESTS=1 python -m pytest -m gpu tests/test_gpu_real.py tests/kernels/test_gpu_kernels.py -v

Everywhere else these tests are skipped: without MINIVAE_GPU_TESTS=1, tests/conftest.py
puts numba on its CUDA simulator, which cannot take CuPy arrays. The simulator twins of
these checks, at toy sizes, are in tests/test_gpu_backend.py.

References are the NumPy (CPU) path on copies of the same values. Tolerances are for
float32: matrix products differ from BLAS by summation order (relative ~1e-6 * sqrt(K)),
elementwise kernels by a few ulps.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy")

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM or os.environ.get("MINIVAE_GPU_TESTS") != "1":
    pytest.skip("real-GPU tests need MINIVAE_GPU_TESTS=1", allow_module_level=True)
try:
    if cp.cuda.runtime.getDeviceCount() == 0:
        raise RuntimeError("no device")
except Exception as err:  # noqa: BLE001 - any CUDA failure means: no GPU here
    pytest.skip(f"no usable CUDA device ({err})", allow_module_level=True)

# FP32 matrix products for the vendor (cuBLAS) path too; CuPy reads this at its first matmul.
os.environ["CUPY_TF32"] = "0"

from minivae import providers
import minivae as mv  # noqa: E402
from minivae.providers import backend, cpu as accel_cpu, cuda as accel_cuda  # noqa: E402
from minivae.models import build_model  # noqa: E402

BATCH, IN, HID, Z = 1024, 784, 400, 20


@pytest.fixture(autouse=True)
def restore_backend():
    """Tests switch the backend (the Trainer does it globally); put numpy/auto back afterwards."""
    previous = backend.get_backend(), providers.get_kernels()
    yield
    backend.set_backend(previous[0])
    providers.set_kernels(previous[1])


def _pair(rng, shape, scale=1.0):
    """The same float32 values on the host and on the GPU."""
    host = (scale * rng.standard_normal(shape)).astype(np.float32)
    return host, cp.asarray(host)


def _assert_close(got, want, tol, what):
    """Agreement relative to the largest entry of the reference (so near-zero entries don't dominate)."""
    assert backend.is_gpu_array(got), f"{what}: result left the GPU"
    got = cp.asnumpy(got)
    scale = max(float(np.abs(want).max()), 1e-30)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale, err_msg=what)


# --------------------------------------------------------------------------- provider, real sizes


def test_provider_matmul_layouts_at_layer_sizes():
    gpu, cpu = accel_cuda.PROVIDER, accel_cpu.PROVIDER
    rng = np.random.default_rng(0)
    (x_h, x), (w_h, w), (b_h, b), (g_h, g) = (_pair(rng, s) for s in ((BATCH, IN), (IN, HID), (HID,), (BATCH, HID)))
    out = gpu.matmul(x, w, bias=b)
    assert out.dtype == cp.float32 and out.flags.c_contiguous and out.shape == (BATCH, HID)
    _assert_close(out, cpu.matmul(x_h.astype(np.float64), w_h.astype(np.float64), bias=b_h.astype(np.float64)), 1e-5, "x @ W + b")
    _assert_close(gpu.matmul(x, g, trans_a=True), x_h.T.astype(np.float64) @ g_h, 1e-5, "x.T @ g")
    _assert_close(gpu.matmul(g, w, trans_b=True), g_h.astype(np.float64) @ w_h.T, 1e-5, "g @ W.T")
    _assert_close(gpu.column_sum(g), g_h.astype(np.float64).sum(axis=0), 1e-5, "column sums")


@pytest.mark.parametrize("name,slope", [("relu", 0.0), ("leaky_relu", 0.2), ("sigmoid", 0.0), ("tanh", 0.0),
                                        ("softplus", 0.0)])
def test_provider_activations_at_layer_sizes(name, slope):
    rng = np.random.default_rng(1)
    (x_h, x), (g_h, g) = _pair(rng, (BATCH, HID), 4.0), _pair(rng, (BATCH, HID))
    y = accel_cuda.PROVIDER.activation(name, x, slope)
    y_ref = accel_cpu.PROVIDER.activation(name, x_h.astype(np.float64), slope)
    _assert_close(y, y_ref, 1e-6, f"{name} forward")
    y_h = cp.asnumpy(y)  # the derivative is read from the output, so both use the GPU's y
    _assert_close(accel_cuda.PROVIDER.activation_grad(name, g, y, slope),
           accel_cpu.PROVIDER.activation_grad(name, g_h.astype(np.float64), y_h.astype(np.float64), slope),
           1e-6, f"{name} backward")


def test_provider_sampling_kl_bce_adam_at_real_sizes():
    gpu, cpu = accel_cuda.PROVIDER, accel_cpu.PROVIDER
    rng = np.random.default_rng(2)
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    (mu_h, mu), (lv_h, lv), (eps_h, eps), (g_h, g) = (_pair(rng, (BATCH, Z)) for _ in range(4))
    _assert_close(gpu.reparam(mu, lv, eps), cpu.reparam(f64(mu_h), f64(lv_h), f64(eps_h)), 1e-6, "reparam")
    _assert_close(gpu.reparam_grad_logvar(g, lv, eps), cpu.reparam_grad_logvar(f64(g_h), f64(lv_h), f64(eps_h)), 1e-6,
           "reparam grad")
    _assert_close(gpu.kl_rows(mu, lv), cpu.kl_rows(f64(mu_h), f64(lv_h)), 1e-6, "KL rows")
    rows_h, rows = _pair(rng, (BATCH,))
    for got, want, what in zip(gpu.kl_grads(mu, lv, rows), cpu.kl_grads(f64(mu_h), f64(lv_h), f64(rows_h)),
                               ("KL grad mu", "KL grad logvar")):
        _assert_close(got, want, 1e-6, what)
    (l_h, logits), (u_h, upstream) = _pair(rng, (BATCH, IN), 5.0), _pair(rng, (BATCH, IN))
    t_h = rng.uniform(size=(BATCH, IN)).astype(np.float32)
    target = cp.asarray(t_h)
    values, saved = gpu.bce_logits(logits, target)
    _assert_close(values, cpu.bce_logits(f64(l_h), f64(t_h))[0], 1e-6, "BCE")
    sums, _ = gpu.bce_logits_row_sums(logits, target)
    _assert_close(sums, cpu.bce_logits_row_sums(f64(l_h), f64(t_h))[0], 1e-6, "BCE row sums")
    _assert_close(gpu.bce_logits_grad(logits, target, saved, upstream),
                  cpu.bce_logits_grad(f64(l_h), f64(t_h), None, f64(u_h)), 1e-6, "BCE grad")
    row_g = cp.broadcast_to(rows[:, None], (BATCH, IN))  # the gradient of a row sum: read one value per row
    _assert_close(gpu.bce_logits_grad(logits, target, None, row_g),
                  cpu.bce_logits_grad(f64(l_h), f64(t_h), None, np.broadcast_to(f64(rows_h)[:, None], (BATCH, IN))),
                  1e-6, "BCE grad, row-sum upstream")
    (p_h, p), (gr_h, grad) = _pair(rng, (IN, HID)), _pair(rng, (IN, HID))
    m, v = cp.full((IN, HID), 0.01, cp.float32), cp.full((IN, HID), 0.02, cp.float32)
    m_h, v_h, p64 = np.full((IN, HID), 0.01), np.full((IN, HID), 0.02), f64(p_h)
    gpu.adam(p, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 5, 0.01)
    cpu.adam(p64, f64(gr_h), m_h, v_h, 1e-3, 0.9, 0.999, 1e-8, 5, 0.01)
    for got, want, what in ((p, p64, "param"), (m, m_h, "m"), (v, v_h, "v")):
        _assert_close(got, want, 1e-6, f"Adam {what}")


def test_interop_settings_hold_and_views_of_any_layout_go_straight_to_the_kernels():
    from numba import cuda

    config = cuda.api.config  # numba-cuda's own settings module
    assert config.CUDA_ARRAY_INTERFACE_SYNC == 0 and config.CUDA_LOW_OCCUPANCY_WARNINGS == 0
    gpu, rng = accel_cuda.PROVIDER, np.random.default_rng(5)
    (x_h, x), (w_h, w) = _pair(rng, (HID, BATCH)), _pair(rng, (HID, IN))  # x.T and w.T: column-major views
    _assert_close(gpu.matmul(x.T, w), x_h.T.astype(np.float64) @ w_h, 1e-5, "x.T @ W, strided")
    _assert_close(gpu.activation("tanh", x.T, 0.0), np.tanh(x_h.T.astype(np.float64)), 1e-6, "tanh of a view")
    _assert_close(gpu.column_sum(x.T[::2]), x_h.T[::2].astype(np.float64).sum(0), 1e-5, "column sums of a view")


# --------------------------------------------------------------------------- whole steps


def _vae_step(x_host: np.ndarray, where: str, kernels: str):
    """One Adam step of the 784-400-20 VAE: loss, {name: grad}, {name: param after} on the host."""
    with backend.use_backend(where), providers.use_kernels(kernels):
        model = build_model("vae", IN, Z, HID, mv.random.Generator(0))
        opt = mv.optim.Adam(model.parameters(), lr=1e-3)
        loss = model.loss(x_host, None, mv.random.Generator(1))["loss"]
        opt.zero_grad()
        loss.backward()
        grads = {n: backend.to_numpy(p.grad) for n, p in model.named_parameters()}
        opt.step()
        return loss.item(), grads, {n: p.numpy() for n, p in model.named_parameters()}


def test_full_vae_step_custom_and_vendor_agree_with_the_cpu():
    x = np.random.default_rng(3).uniform(0, 1, (BATCH, IN)).astype(np.float32)
    loss_cpu, grads_cpu, params_cpu = _vae_step(x, "numpy", "reference")
    for kernels in ("custom", "reference", "auto"):  # ours, the vendor's, and auto's mix
        loss, grads, params = _vae_step(x, "cupy", kernels)
        assert loss == pytest.approx(loss_cpu, rel=1e-5), kernels
        for name, want in grads_cpu.items():
            scale = np.abs(want).max()
            np.testing.assert_allclose(grads[name], want, rtol=0, atol=1e-4 * scale, err_msg=f"{kernels}: grad {name}")
            # Adam's first step moves each parameter by about lr * sign(grad): compare where the
            # sign is not at the mercy of float32 rounding (|grad| well above the rounding noise).
            firm = np.abs(want) > 1e-3 * scale
            np.testing.assert_allclose(params[name][firm], params_cpu[name][firm], rtol=0, atol=1e-6,
                                       err_msg=f"{kernels}: {name} after Adam")
            assert np.all(np.abs(params[name] - params_cpu[name]) <= 2e-3 + 1e-6)


def test_kernels_follow_cupys_current_stream():
    x = np.random.default_rng(4).uniform(0, 1, (100, IN)).astype(np.float32)  # < 128 rows: no atomics, deterministic
    loss_null, grads_null, _ = _vae_step(x, "cupy", "custom")
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        assert accel_cuda.PROVIDER._stream() is stream or accel_cuda.PROVIDER._stream().ptr == stream.ptr
        loss_side, grads_side, _ = _vae_step(x, "cupy", "custom")
    assert loss_side == pytest.approx(loss_null, rel=1e-6)
    for name in grads_null:
        np.testing.assert_allclose(grads_side[name], grads_null[name], rtol=1e-6, atol=1e-7)


def test_short_training_on_digits_follows_the_cpu_loss_curve():
    """60 Adam steps on the 8x8 digits: custom and vendor GPU loss curves track the CPU one."""
    from minivae.training.data import batches, load_dataset

    data = load_dataset("digits", "train", test_fraction=0.2, seed=0)
    order = mv.random.Generator(7)
    fixed = [xb for _ in range(3) for xb, _ in batches(data, 64, rng=order)][:60]
    curves = {}
    for where, kernels in (("numpy", "reference"), ("cupy", "custom"), ("cupy", "reference")):
        with backend.use_backend(where), providers.use_kernels(kernels):
            model = build_model("vae", data.dim, 4, 64, mv.random.Generator(0))
            opt = mv.optim.Adam(model.parameters(), lr=3e-3)
            noise, curve = mv.random.Generator(1), []
            for xb in fixed:
                loss = model.loss(xb, None, noise)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                curve.append(loss.item())
        curves[(where, kernels)] = np.array(curve)
    cpu = curves[("numpy", "reference")]
    assert cpu[-10:].mean() < 0.8 * cpu[:5].mean(), "the model should learn something in 60 steps"
    for key in (("cupy", "custom"), ("cupy", "reference")):
        rel = np.abs(curves[key] - cpu) / np.abs(cpu)
        assert rel[:10].max() < 1e-4, f"{key}: first steps differ by {rel[:10].max():.2e}"
        assert rel.max() < 1e-2, f"{key}: curves drift apart by {rel.max():.2e}"


# --------------------------------------------------------------------------- backend completeness


def test_host_copies_state_dicts_checkpoints_and_gradcheck_on_cupy(tmp_path):
    from minivae.training.trainer import load_checkpoint, save_checkpoint

    with backend.use_backend("cupy"):
        model = build_model("vae", 6, 2, 4, mv.random.Generator(0))
        opt = mv.optim.Adam(model.parameters(), lr=0.01)
        rng = mv.random.Generator(1)
        loss = model.loss(np.random.default_rng(0).uniform(0, 1, (5, 6)), None, rng)["loss"]
        loss.backward()
        opt.step()
        assert backend.is_gpu_array(model.parameters()[0].data)
        assert isinstance(loss.numpy(), np.ndarray) and isinstance(loss.item(), float)
        state = model.state_dict()
        assert all(isinstance(v, np.ndarray) for v in state.values())
        assert all(isinstance(v, np.ndarray) for k, v in opt.state_dict().items() if "." in k)
        path = tmp_path / "checkpoint.npz"
        save_checkpoint(path, model, opt, rng, 1, {"model": "vae"}, [])
    # Load the GPU run's checkpoint on the CPU, and back onto the GPU: same numbers.
    cpu_model = build_model("vae", 6, 2, 4, mv.random.Generator(5))
    cpu_opt = mv.optim.Adam(cpu_model.parameters(), lr=0.01)
    load_checkpoint(path, cpu_model, cpu_opt, mv.random.Generator(9))
    for name, value in state.items():
        np.testing.assert_array_equal(cpu_model.state_dict()[name], value)
    with backend.use_backend("cupy"):
        gpu_model = build_model("vae", 6, 2, 4, mv.random.Generator(5))
        load_checkpoint(path, gpu_model, None, None)
        assert backend.is_gpu_array(gpu_model.parameters()[0].data)
        for name, value in state.items():
            np.testing.assert_array_equal(gpu_model.state_dict()[name], value)

        # gradcheck's host-side finite-difference loop on GPU tensors, with our float64 kernels
        with providers.use_kernels("custom"):
            small = build_model("vae", 6, 2, 4, mv.random.Generator(2)).astype("float64")
            x = np.random.default_rng(1).uniform(0, 1, (5, 6))
            noise = mv.random.Generator(3)
            report = mv.gradcheck(lambda: small.loss(x, None, noise)["loss"], small, rng=noise)
            assert report.ok


def test_cli_train_eval_and_demo_on_cupy_match_the_cpu_run(tmp_path):
    from minivae import cli

    common = ["train", "vae", "--data", "digits", "--epochs", "2", "--hidden", "64", "--quiet"]
    assert cli.main([*common, "--backend", "cupy", "--out", str(tmp_path / "gpu")]) == 0
    assert cli.main([*common, "--backend", "numpy", "--out", str(tmp_path / "cpu")]) == 0
    gpu = json.loads((tmp_path / "gpu" / "metrics.json").read_text())["epochs"]
    cpu = json.loads((tmp_path / "cpu" / "metrics.json").read_text())["epochs"]
    for g, c in zip(gpu, cpu):
        assert g["train"]["loss"] == pytest.approx(c["train"]["loss"], rel=5e-3)
        assert g["test"]["loss"] == pytest.approx(c["test"]["loss"], rel=5e-3)
    assert cli.main(["eval", str(tmp_path / "gpu"), "--k", "20", "--backend", "cupy"]) == 0
    assert cli.main(["demo", "--epochs", "2", "--backend", "cupy", "--quiet", "--out", str(tmp_path / "demo")]) == 0
