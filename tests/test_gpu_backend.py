"""The CuPy backend's kernel path, tested without a GPU.

``cuda.simulate_on_host()`` sends NumPy arrays through the GPU provider, whose
kernels run on Numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1).
That covers everything the GPU path does except CuPy itself: the provider's shape
handling and output allocation, the CUDA kernels, and their wiring into minivae/ops/,
distributions.py and optim.py. The CuPy-specific parts (allocation with cupy.empty,
CuPy's stream, device-array views) are covered by tests/test_gpu_real.py on a GPU.

The simulator is slow (a Python thread per CUDA thread), so shapes are tiny.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import minivae as mv
from minivae import providers
from minivae.models import build_model
from minivae.providers import backend, base, cpu as accel_cpu, cuda as accel_cuda, reference

ROOT = Path(__file__).resolve().parents[1]
PROVIDER_METHODS = tuple(name for name in vars(base.Provider) if not name.startswith("_") and name != "name")
# What one VAE training step asks of its provider (fused linear + ReLU layers, the BCE
# summed over pixels); activation_grad and bce_logits are covered by the unit tests.
VAE_STEP_METHODS = {"matmul", "column_sum", "activation", "activation_grad_bias", "reparam", "reparam_grad_logvar",
                    "kl_rows", "kl_grads", "bce_logits_row_sums", "bce_logits_grad", "adam_foreach", "adam"}

# Agreement with the NumPy reference path, per dtype: (loss rtol, gradient tolerance
# relative to the largest entry of that gradient, parameter atol after Adam).
# float64: the kernels compute the same formulas, so only summation order differs.
# float32: both compute in float32, in different orders (fused passes, tree sums),
# so they differ by a few float32 ulps.
TOLERANCES = {"float64": (1e-12, 1e-10, 1e-12), "float32": (2e-6, 2e-5, 2e-6)}


def _vae_steps(dtype: str, steps: int, simulated: bool):
    """``steps`` Adam steps of a 6-4-2 VAE on a batch of 5: per step (loss, grads, params after)."""
    model = build_model("vae", 6, 2, 4, mv.random.Generator(0)).astype(dtype)
    opt = mv.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.01)
    x = np.random.default_rng(1).uniform(0, 1, (5, 6)).astype(dtype)
    noise = mv.random.Generator(5)
    history = []
    with accel_cuda.simulate_on_host() if simulated else providers.use_kernels("reference"):
        for _ in range(steps):
            loss = model.loss(x, None, noise)["loss"]
            opt.zero_grad()
            loss.backward()
            grads = {name: p.grad.copy() for name, p in model.named_parameters()}
            opt.step()
            history.append((loss.item(), grads, {name: p.numpy().copy() for name, p in model.named_parameters()}))
    return history


@pytest.mark.parametrize("dtype,steps", [("float64", 2), ("float32", 1)])
def test_full_vae_training_step_on_the_cuda_kernels_matches_numpy(dtype, steps, monkeypatch):
    calls: dict[str, int] = {}
    original = accel_cuda.CudaKernels

    class Counting(original):  # counts which hot paths really ran on the kernels
        pass

    for name in PROVIDER_METHODS:
        def counted(self, *args, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return getattr(original, _name)(self, *args, **kwargs)

        setattr(Counting, name, counted)
    monkeypatch.setattr(accel_cuda, "CudaKernels", Counting)

    reference = _vae_steps(dtype, steps, simulated=False)
    simulated = _vae_steps(dtype, steps, simulated=True)

    assert set(calls) == VAE_STEP_METHODS, f"hot paths that did not use the CUDA kernels: {VAE_STEP_METHODS - set(calls)}"
    assert calls["adam"] == 10 * steps  # every parameter of the 4 + 2 + 2 + 2 Linear layers, each step
    loss_rtol, grad_tol, param_atol = TOLERANCES[dtype]
    for step, ((loss_r, grads_r, params_r), (loss_s, grads_s, params_s)) in enumerate(zip(reference, simulated)):
        assert loss_s == pytest.approx(loss_r, rel=loss_rtol), f"step {step}: loss"
        assert grads_s.keys() == grads_r.keys() and len(grads_r) == 10
        for name in grads_r:
            assert grads_s[name].dtype == np.dtype(dtype)
            scale = np.abs(grads_r[name]).max()
            np.testing.assert_allclose(grads_s[name], grads_r[name], rtol=0, atol=grad_tol * scale,
                                       err_msg=f"step {step}: gradient of {name}")
        for name in params_r:
            np.testing.assert_allclose(params_s[name], params_r[name], rtol=0, atol=param_atol,
                                       err_msg=f"step {step}: {name} after Adam")


# --------------------------------------------------------------------------- launches per step

#: Our kernel launches per training step of the 6-4-2 VAE (one hidden layer on each side,
#: 10 parameters): 14 matrix products, 10 Adam updates and 13 fused passes (2 linear+ReLU
#: activations, 2 ReLU backward + bias gradient, 3 bias gradients, reparameterisation and
#: its gradient, KL rows and gradient, BCE row sums and gradient), at every batch size.
#: Before the provider rework it was 39, and 44 above 128 rows (zero-fills before atomics).
#: The README's GPU section quotes this number.
LAUNCH_BUDGET = 37


def _recorded_step(batch: int, run: bool):
    from minivae.kernels import cuda_launch

    model = build_model("vae", 6, 2, 4, mv.random.Generator(0)).astype("float32")
    opt = mv.optim.Adam(model.parameters(), lr=0.05)
    x = np.random.default_rng(1).uniform(0, 1, (batch, 6)).astype("float32")
    with accel_cuda.simulate_on_host():
        with cuda_launch.recording(run=run) as launches:
            loss = model.loss(x, None, mv.random.Generator(5))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    return launches


def _kinds(launches) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for launch in launches:
        kinds[launch.kernel] = kinds.get(launch.kernel, 0) + 1
    return kinds


def test_launches_per_vae_training_step_stay_within_the_budget():
    run = _recorded_step(5, run=True)
    # A dry run (recording(run=False): nothing launched, nothing moved) records the same
    # launches; it is how the Python side of a step is timed without a GPU, and how the
    # batch of 130 (> 128 rows: several row blocks per column sum) is counted here at
    # no simulator cost.
    assert [(x.kernel, x.grid, x.block) for x in _recorded_step(5, run=False)] == \
        [(x.kernel, x.grid, x.block) for x in run]
    for launches in (run, _recorded_step(130, run=False)):
        kinds = _kinds(launches)
        assert len(launches) <= LAUNCH_BUDGET, kinds
        assert kinds["gemm"] == 14 and kinds.get("_adam_kernel", 0) + kinds.get("_adam_rows_kernel", 0) == 10
        assert "_fill_kernel" not in kinds  # outputs of atomic sums come zeroed by the allocator


# --------------------------------------------------------------------------- provider units


@pytest.fixture(scope="module")
def gpu():
    return accel_cuda.CudaKernels(xp=np, stream=lambda: 0)


@pytest.mark.parametrize("provider", [accel_cuda.CudaKernels, accel_cuda.AutoProvider])
def test_provider_implements_every_method_of_the_interface_with_its_signature(provider):
    assert len(PROVIDER_METHODS) == 15
    for name in PROVIDER_METHODS:
        assert name in vars(provider), f"{provider.__name__}.{name} is left to a base class"
        want = inspect.signature(getattr(base.Provider, name))
        got = inspect.signature(getattr(provider, name))
        params = [(p.name, p.kind, p.default) for p in got.parameters.values()]
        assert params == [(p.name, p.kind, p.default) for p in want.parameters.values()], name


def test_provider_matmul_layouts_awkward_shapes(gpu):
    rng = np.random.default_rng(0)
    a, b, bias = rng.normal(size=(3, 17)), rng.normal(size=(17, 5)), rng.normal(size=(5, 2))[:, 1]  # strided bias
    np.testing.assert_allclose(gpu.matmul(a, b, bias=bias), a @ b + bias, rtol=1e-12)
    at, g = rng.normal(size=(17, 3)), rng.normal(size=(17, 5))
    np.testing.assert_allclose(gpu.matmul(at, g, trans_a=True), at.T @ g, rtol=1e-12)
    w = rng.normal(size=(4, 5)).astype(np.float32)
    out = gpu.matmul(g.astype(np.float32), w, trans_b=True)
    assert out.dtype == np.float32 and out.shape == (17, 4)
    np.testing.assert_allclose(out, g.astype(np.float32) @ w.T, rtol=1e-5, atol=1e-5)
    empty = gpu.matmul(np.zeros((0, 4)), rng.normal(size=(4, 3)))
    assert empty.shape == (0, 3)


def test_provider_column_sum_across_several_blocks(gpu):
    g = np.random.default_rng(1).normal(size=(130, 2))  # > 128 rows: two row blocks and atomics
    np.testing.assert_allclose(gpu.column_sum(g), g.sum(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(gpu.column_sum(np.zeros((0, 3))), np.zeros(3))


@pytest.mark.parametrize("shape", [(), (2, 3, 4), (0, 3)])
def test_provider_activation_shapes(gpu, shape):
    x = np.random.default_rng(2).normal(size=shape) * 3
    g = np.random.default_rng(3).normal(size=shape)
    y = gpu.activation("softplus", x, 0.0)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, accel_cpu.PROVIDER.activation("softplus", x, 0.0), rtol=1e-12)
    np.testing.assert_allclose(gpu.activation_grad("softplus", g, y, 0.0),
                               accel_cpu.PROVIDER.activation_grad("softplus", g, y, 0.0), rtol=1e-12)
    if x.ndim:
        u, gb = gpu.activation_grad_bias("softplus", g, y, 0.0)
        want_u, want_gb = reference.PROVIDER.activation_grad_bias("softplus", g, y, 0.0)
        np.testing.assert_allclose(u, want_u, rtol=1e-12)
        np.testing.assert_allclose(gb, want_gb, rtol=1e-12, atol=1e-12)


def test_provider_sampling_kl_bce_and_adam_match_the_reference(gpu):
    rng = np.random.default_rng(4)
    ref = reference.PROVIDER
    mu, lv, eps, g = (rng.normal(size=(3, 33)) for _ in range(4))  # 33 > 32: a KL row spans two warps' strides
    np.testing.assert_allclose(gpu.reparam(mu[0], lv[0], eps[0]), ref.reparam(mu[0], lv[0], eps[0]), rtol=1e-12)
    np.testing.assert_allclose(gpu.reparam_grad_logvar(g, lv, eps), ref.reparam_grad_logvar(g, lv, eps), rtol=1e-12)
    np.testing.assert_allclose(gpu.kl_rows(mu, lv), ref.kl_rows(mu, lv), rtol=1e-12)
    rows = rng.normal(size=3)
    for got, want in zip(gpu.kl_grads(mu, lv, rows), ref.kl_grads(mu, lv, rows)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    logits, target = 5 * rng.normal(size=(2, 2, 3)), rng.uniform(size=(2, 2, 3))
    values, saved = gpu.bce_logits(logits, target)
    assert saved is None  # the GPU recomputes e^-|l| in the gradient kernel
    np.testing.assert_allclose(values, ref.bce_logits(logits, target)[0], rtol=1e-12)
    sums, saved = gpu.bce_logits_row_sums(logits, target)
    assert sums.shape == (2, 2) and saved is None
    np.testing.assert_allclose(sums, values.sum(-1), rtol=1e-12)
    upstream = rng.normal(size=(2, 2, 3))
    np.testing.assert_allclose(gpu.bce_logits_grad(logits, target, None, upstream),
                               ref.bce_logits_grad(logits, target, None, upstream), rtol=1e-12)
    states = []
    for provider in (gpu, ref):  # 3-D (flat kernel), 2-D (row kernel) and 1-D parameters
        for shape in ((2, 3, 2), (3, 4), (5,)):
            size = int(np.prod(shape))
            p, m, v = np.linspace(-1, 1, size).reshape(shape), np.full(shape, 0.1), np.full(shape, 0.2)
            provider.adam(p, np.cos(np.arange(size * 1.0)).reshape(shape), m, v, 0.01, 0.9, 0.999, 1e-8, 3, 0.1)
            states.append((p, m, v))
    for got, want in zip(states[:3], states[3:]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_provider_takes_any_layout_and_broadcasts(gpu):
    """Transposed, sliced and stride-0 views, more than two axes and broadcasting
    operands: what the ops may hand a provider. Compared with the reference provider."""
    rng = np.random.default_rng(12)
    ref = reference.PROVIDER
    x = rng.normal(size=(6, 5)).T                     # (5, 6), column-major
    owned = x.copy(order="F")                         # not C-contiguous: not written in place
    np.testing.assert_allclose(gpu.activation("tanh", owned, 0.0, inplace=True), np.tanh(x), rtol=1e-12)
    np.testing.assert_array_equal(owned, x)
    w = rng.normal(size=(6, 7))[::-1, ::2]            # (6, 4): negative and doubled strides
    np.testing.assert_allclose(gpu.matmul(w, x, trans_a=True, trans_b=True), w.T @ x.T, rtol=1e-12)
    np.testing.assert_allclose(gpu.column_sum(x[:, ::2]), x[:, ::2].sum(0), rtol=1e-12)
    mu, lv = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    eps = rng.normal(size=(2, 4, 3))                  # two draws per example: mu and lv broadcast
    np.testing.assert_allclose(gpu.reparam(mu, lv, eps), ref.reparam(mu, lv, eps), rtol=1e-12)
    g = rng.normal(size=(2, 4, 3))
    np.testing.assert_allclose(gpu.reparam_grad_logvar(g, lv, eps), ref.reparam_grad_logvar(g, lv, eps), rtol=1e-12)
    np.testing.assert_allclose(gpu.kl_rows(mu.T, lv.T), ref.kl_rows(mu.T, lv.T), rtol=1e-12)
    rows = rng.normal(size=3)
    for got, want in zip(gpu.kl_grads(mu.T, lv.T, rows), ref.kl_grads(mu.T, lv.T, rows)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    logits, target = 4 * rng.normal(size=(2, 3, 5)), rng.uniform(size=(3, 5))  # the target broadcasts
    values, saved = gpu.bce_logits(logits, target)
    np.testing.assert_allclose(values, ref.bce_logits(logits, target)[0], rtol=1e-12)
    sums, _ = gpu.bce_logits_row_sums(logits, np.broadcast_to(target, logits.shape))
    np.testing.assert_allclose(sums, values.sum(-1), rtol=1e-12)
    upstream = np.broadcast_to(rng.normal(size=(2, 3, 1)), (2, 3, 5))  # the gradient of a row sum
    np.testing.assert_allclose(gpu.bce_logits_grad(logits, target, saved, upstream),
                               ref.bce_logits_grad(logits, target, None, upstream), rtol=1e-12)
    everything = np.broadcast_to(np.array(0.5), (2, 3, 5))  # the gradient of a sum over all axes
    np.testing.assert_allclose(gpu.bce_logits_grad(logits, target, None, everything),
                               ref.bce_logits_grad(logits, target, None, everything), rtol=1e-12)


def test_provider_falls_back_for_inputs_no_kernel_takes(gpu):
    a, b = np.arange(6).reshape(2, 3), np.arange(6).reshape(3, 2)  # integers: the reference code
    np.testing.assert_array_equal(gpu.matmul(a, b), a @ b)
    assert gpu.activation("relu", np.ones((2, 2), np.float16), 0.0).dtype == np.float16
    with pytest.raises(ValueError, match="unknown name 'swish'"):
        gpu.activation("swish", np.ones(3), 0.0)


def test_auto_provider_says_it_is_unmeasured_and_uses_the_documented_default():
    auto = accel_cuda.auto_provider()
    assert auto is accel_cuda.auto_provider() and auto.measured is accel_cuda.AUTO_MEASURED is False
    assert set(auto.choices) == set(PROVIDER_METHODS)
    assert auto.choices["matmul"] == {"small": auto.vendor, "large": auto.vendor}  # cuBLAS
    assert all(by_size == {"small": auto.custom, "large": auto.custom}
               for method, by_size in auto.choices.items() if method != "matmul")
    seen = []

    class Recorder:
        def __init__(self, label):
            self.label = label

        def __getattr__(self, method):
            return lambda *args, **kwargs: seen.append((self.label, method))

    routed = accel_cuda.AutoProvider(Recorder("custom"), Recorder("vendor"),
                                     {m: {"small": "custom", "large": "vendor"} for m in PROVIDER_METHODS})
    routed.matmul(np.zeros((128, 2)), np.zeros((2, 2)))
    routed.matmul(np.zeros((129, 2)), np.zeros((2, 2)))
    routed.kl_rows(np.zeros(3), np.zeros(3))
    assert seen == [("custom", "matmul"), ("vendor", "matmul"), ("custom", "kl_rows")]


def test_simulate_on_host_is_scoped():
    x = np.zeros((2, 2))
    with accel_cuda.simulate_on_host() as provider:
        assert isinstance(provider, accel_cuda.CudaKernels) and provider.xp is np
        assert providers.provider_for(x) is provider
        with providers.use_kernels("reference"):  # a forced provider serves every kernel set
            assert providers.provider_for(x) is provider
        with pytest.raises(RuntimeError, match="already active"):
            with accel_cuda.simulate_on_host():
                pass
    assert providers.provider_for(x) is accel_cpu.PROVIDER  # auto on the CPU: the CPU provider


# --------------------------------------------------------------------------- missing CuPy / GPU


@pytest.fixture
def clean_gpu_env(monkeypatch):
    """Forget any loaded CuPy and the GPU environment variables; restore both afterwards."""
    for key in backend.GPU_ENVIRONMENT:
        # setenv first so that monkeypatch records the original state (set or not) and
        # undoes what load_cupy sets during the test
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    monkeypatch.setattr(backend, "_cupy", None)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_asking_for_cupy_without_cupy_says_what_to_install(clean_gpu_env):
    with pytest.raises(backend.BackendError, match=r"CuPy is not installed.*minivae\[gpu-cu12\].*minivae\[gpu-cu13\]"):
        mv.set_backend("cupy")
    assert backend.get_backend() == "numpy"
    with pytest.raises(backend.BackendError, match="CuPy is not installed"):
        accel_cuda.CudaKernels().xp  # the real provider needs CuPy too
    # The low-overhead settings were put in place before the import was tried.
    assert all(os.environ[key] == "0" for key in backend.GPU_ENVIRONMENT)


def test_cupy_without_a_usable_device_is_a_clear_error(clean_gpu_env, monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("NUMBA_CUDA_ARRAY_INTERFACE_SYNC", "1")  # a user's own choice is kept
    with pytest.raises(backend.BackendError, match="no usable CUDA device.*numpy"):
        mv.set_backend("cupy")
    assert backend.get_backend() == "numpy" and backend._cupy is None
    assert os.environ["NUMBA_CUDA_ARRAY_INTERFACE_SYNC"] == "1"


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
@pytest.mark.parametrize("command", [["demo", "--epochs", "1"], ["train", "vae", "--epochs", "1"]])
def test_cli_backend_cupy_without_cupy_fails_cleanly(command, clean_gpu_env, tmp_path, capsys):
    from minivae import cli

    code = cli.main([*command, "--backend", "cupy", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "CuPy is not installed" in err and "minivae[gpu-cu12]" in err
    assert backend.get_backend() == "numpy" and not (tmp_path / "run" / "checkpoint.npz").exists()


# --------------------------------------------------------------------------- the GPU benchmark


def _load_gpu_benchmark():
    spec = importlib.util.spec_from_file_location("benchmarks_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_refuses_to_run_without_a_gpu():
    bench = _load_gpu_benchmark()
    if importlib.util.find_spec("cupy") is None or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        with pytest.raises(bench.NoGPU, match="needs an NVIDIA GPU"):
            bench.require_gpu()
    # As a command: exit status 2 and the reason on stderr, no traceback.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_ENABLE_CUDASIM"] = "1" if importlib.util.find_spec("cupy") else "0"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", os.devnull],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "needs an NVIDIA GPU" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="--simulate needs Numba's CUDA simulator")
def test_gpu_benchmark_plumbing_on_the_simulator(tmp_path):
    """Every section of benchmarks/gpu.py at toy sizes (--simulate): catches mistakes in the
    script before a GPU session has to; the numbers themselves mean nothing."""
    bench = _load_gpu_benchmark()
    out = tmp_path / "gpu.json"
    previous = (backend.get_backend(), providers.get_kernels())
    assert bench.main(["--simulate", "--quiet", "--out", str(out)]) == 0
    assert (backend.get_backend(), providers.get_kernels()) == previous  # the script restores minivae's state
    result = json.loads(out.read_text())
    assert result["simulated"] is True and "simulator" in result["environment"]["device"]
    assert result["environment"]["settings"]["CUPY_TF32"] == "0"
    assert len(result["gemm"]) == 1 + 4 * 3  # the square case, then 3 products of each of the 4 layer shapes
    assert {row["layout"] for row in result["gemm"]} == {"A@B", "A.T@B", "A@B.T"}
    assert all(row["max_rel_diff"] < 1e-5 for row in result["gemm"])
    kernels = result["elementwise"]["kernels"]
    assert {(row["kernel"], row["size"]) for row in kernels} == {
        (name, size) for name in bench.ELEMENTWISE for size in ("large", "vae")}
    assert all(row.get("max_rel_diff", 0.0) < 1e-5 for row in kernels)
    (step,) = result["vae_step"]["steps"]
    assert step["batch"] == 5 and step["custom_vs_vendor_first_loss_rel_diff"] < 1e-5
    assert {"minivae_custom_ms", "minivae_vendor_ms", "custom_over_vendor_time"} <= step.keys()
    assert {"empty_numba_kernel_us", "our_kernel_cached_views_us", "provider_activation_us"} <= result["launch"].keys()


def test_gpu_benchmark_host_side_runs_without_a_gpu():
    """--host-side: the Python cost per provider call and per step, launches recorded, not made."""
    bench = _load_gpu_benchmark()
    result = bench.bench_host_side(batch=4, repeats=2, rounds=1, quiet=True)
    assert result["launches_per_step"] <= LAUNCH_BUDGET  # the 784-400-20 VAE has the budget model's layers
    assert len(result["provider_call_us"]) == 12 and all(us > 0 for us in result["provider_call_us"].values())
    assert result["step_host_ms"] > 0
