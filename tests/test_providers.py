"""One table: every provider against the reference, method by method and through the engine.

Providers: the NumPy reference, the compiled CPU provider, and our CUDA kernels on
Numba's simulator (``CudaKernels(xp=numpy)``, tests/conftest.py sets the simulator).
For each provider method, awkward inputs (0-d, one row, non-contiguous views,
broadcast operands, zero rows) must give the reference's numbers and must leave
the inputs untouched. Then every op that calls a provider is gradchecked in float64
with each provider serving the whole engine (``providers.use_provider``), and a few
training steps of the benchmark VAE must agree across kernel sets.
"""

from __future__ import annotations

import importlib.util
import inspect
import pathlib

import numpy as np
import pytest
import threadpoolctl

import minivae as mv
from minivae import ops, providers
from minivae.kernels import threads
from minivae.providers import base, cpu, cuda, reference

RNG = np.random.default_rng(0)
REF = reference.PROVIDER
CUDA_SIM = cuda.CudaKernels(xp=np, stream=lambda: 0)
PROVIDERS = {"reference": REF, "cpu": cpu.PROVIDER, "cuda-sim": CUDA_SIM}
TOL = {"float64": 1e-12, "float32": 3e-6}


def _arr(shape, dtype, scale=2.0, transpose=False):
    a = (scale * RNG.standard_normal(shape[::-1] if transpose else shape)).astype(dtype)
    return a.T if transpose else a


def _assert_same(got, want, dtype):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w, dtype)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {dtype}"
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def _call_unmutated(provider, method, args, kwargs=None):
    """Call ``provider.method(*args)`` and check that no input array changed."""
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(provider, method)(*args, **(kwargs or {}))
    for a, b in zip(args, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f"{provider.name}.{method} changed an input")
    return out


# ----------------------------------------------------------------------------- the interface


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_every_provider_implements_the_interface_with_its_signatures(name):
    provider = PROVIDERS[name]
    assert isinstance(provider, base.Provider)
    for method in providers._METHODS:
        want = inspect.signature(getattr(base.Provider, method))
        got = inspect.signature(getattr(type(provider), method))
        want_params = [(p.name, p.kind) for p in want.parameters.values()]
        got_params = [(p.name, p.kind) for p in got.parameters.values()][: len(want_params)]
        assert got_params == want_params, f"{name}.{method}{got} differs from the interface {want}"


def test_the_kernel_set_is_chosen_in_one_place():
    x = np.zeros((2, 2))
    with providers.use_kernels("reference"):
        assert providers.provider_for(x) is REF
    with providers.use_kernels("custom"):
        assert providers.provider_for(x) is cpu.PROVIDER
    with providers.use_kernels("auto"):
        assert providers.provider_for(x) is cpu.PROVIDER
        with providers.use_provider(CUDA_SIM):
            assert providers.provider_for(x) is CUDA_SIM
        assert providers.provider_for(x) is cpu.PROVIDER
    with pytest.raises(TypeError, match="lacks provider methods"):
        with providers.use_provider(object()):
            pass
    with pytest.raises(ValueError, match="unknown kernel set 'vendor'"):
        providers.set_kernels("vendor")


def test_the_kernel_set_is_per_thread():
    """use_kernels in one thread never changes the kernel set another thread sees."""
    import threading

    x = np.zeros((2, 2))
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with providers.use_kernels("reference"):
            seen["worker"] = (providers.get_kernels(), providers.provider_for(x))
            inside.set()
            release.wait(30)
        seen["worker after"] = providers.get_kernels()

    with providers.use_kernels("custom"):
        thread = threading.Thread(target=worker)
        thread.start()
        assert inside.wait(30)
        # the worker is inside its block: this thread still has its own choice
        seen["main"] = (providers.get_kernels(), providers.provider_for(x))
        release.set()
        thread.join(30)
        assert providers.get_kernels() == "custom"
    assert seen["worker"] == ("reference", REF)
    assert seen["main"] == ("custom", cpu.PROVIDER)
    assert seen["worker after"] == providers.get_kernels()  # its block restored the thread's start value
    with pytest.raises(ValueError, match="set_kernels: unknown kernel set 'vendor'"):
        with providers.use_kernels("vendor"):
            pass


# ----------------------------------------------------------------------- method by method

LAYOUTS = {  # name -> (shape, transposed?)
    "one row": ((1, 5), False),
    "block": ((6, 5), False),
    "transposed view": ((6, 5), True),
    "zero rows": ((0, 5), False),
}


# The simulator is slow (a Python thread per CUDA thread): fewer rows for it.
METHOD_CASES = [("cpu", layout, dtype) for layout in LAYOUTS for dtype in ("float64", "float32")] + [
    ("cuda-sim", "transposed view", "float64"), ("cuda-sim", "one row", "float32"), ("cuda-sim", "zero rows", "float64")]


@pytest.mark.parametrize("name,layout,dtype", METHOD_CASES)
def test_methods_match_the_reference(name, layout, dtype):
    provider = PROVIDERS[name]
    shape, transposed = LAYOUTS[layout]
    x, g = _arr(shape, dtype, transpose=transposed), _arr(shape, dtype, transpose=transposed)
    w = _arr((shape[1], 3), dtype)
    for kwargs, a, b in (({}, x, w), ({"trans_b": True}, x, w.T.copy()), ({"trans_a": True}, x, g)):
        _assert_same(_call_unmutated(provider, "matmul", (a, b), kwargs), REF.matmul(a, b, **kwargs), dtype)
    bias = _arr((6,), dtype)[::2]  # a strided bias
    _assert_same(_call_unmutated(provider, "matmul", (x, w), {"bias": bias}), REF.matmul(x, w, bias=bias), dtype)
    _assert_same(_call_unmutated(provider, "column_sum", (g,)), REF.column_sum(g), dtype)
    for act in base.ACTIVATION_NAMES:
        y = _call_unmutated(provider, "activation", (act, x, 0.1))
        _assert_same(y, REF.activation(act, x, 0.1), dtype)
        _assert_same(_call_unmutated(provider, "activation_grad", (act, g, y, 0.1)), REF.activation_grad(act, g, y, 0.1), dtype)
        _assert_same(_call_unmutated(provider, "activation_grad_bias", (act, g, y, 0.1)),
              REF.activation_grad_bias(act, g, y, 0.1), dtype)
        owned = x.copy()
        _assert_same(provider.activation(act, owned, 0.1, inplace=True), REF.activation(act, x, 0.1), dtype)
    mu, lv, eps = x, _arr(shape, dtype, transpose=transposed), g
    _assert_same(_call_unmutated(provider, "reparam", (mu, lv, eps)), REF.reparam(mu, lv, eps), dtype)
    _assert_same(_call_unmutated(provider, "reparam_grad_logvar", (g, lv, eps)), REF.reparam_grad_logvar(g, lv, eps), dtype)
    _assert_same(_call_unmutated(provider, "kl_rows", (mu, lv)), REF.kl_rows(mu, lv), dtype)
    rows = _arr(shape[:1], dtype)
    _assert_same(_call_unmutated(provider, "kl_grads", (mu, lv, rows)), REF.kl_grads(mu, lv, rows), dtype)
    logits, target = 10 * x, RNG.uniform(0, 1, x.shape).astype(dtype)
    value, saved = _call_unmutated(provider, "bce_logits", (logits, target))
    _assert_same(value, REF.bce_logits(logits, target)[0], dtype)
    want_grad = REF.bce_logits_grad(logits, target, None, g)
    _assert_same(provider.bce_logits_grad(logits, target, saved, g), want_grad, dtype)
    sums, saved = _call_unmutated(provider, "bce_logits_row_sums", (logits, target))
    _assert_same(sums, REF.bce_logits_row_sums(logits, target)[0], dtype)
    summed = np.broadcast_to(rows[:, None], logits.shape)  # the stride-0 gradient of a row sum
    _assert_same(provider.bce_logits_grad(logits, target, saved, summed), REF.bce_logits_grad(logits, target, None, summed), dtype)
    _assert_same(provider.bce_logits_grad(logits, target, None, g), want_grad, dtype)


@pytest.mark.parametrize("name", ["cpu", "cuda-sim"])
def test_zero_d_and_broadcast_operands_match_the_reference(name):
    provider = PROVIDERS[name]
    for dtype in ("float64", "float32"):
        s = np.asarray(0.5, dtype=dtype)
        zero = np.asarray(0.0, dtype=dtype)
        for act in base.ACTIVATION_NAMES:
            _assert_same(provider.activation(act, s, 0.1), REF.activation(act, s, 0.1), dtype)
            _assert_same(provider.activation_grad(act, s, s, 0.1), REF.activation_grad(act, s, s, 0.1), dtype)
        # logit 0.5, target 0: ln(1 + e^0.5) = 0.974 (a 0-d value once came back as 0.474)
        value, saved = provider.bce_logits(s, zero)
        _assert_same(value, REF.bce_logits(s, zero)[0], dtype)
        assert float(value) == pytest.approx(np.log1p(np.exp(0.5)), rel=1e-6)
        _assert_same(provider.bce_logits_grad(s, zero, saved, s), REF.bce_logits_grad(s, zero, None, s), dtype)
        mu, lv = _arr((4, 3), dtype), _arr((1, 3), dtype)  # logvar broadcast over rows
        eps = _arr((2, 4, 3), dtype)  # extra sample axis
        _assert_same(provider.reparam(mu, lv, eps), REF.reparam(mu, lv, eps), dtype)
        _assert_same(provider.kl_rows(mu, lv), REF.kl_rows(mu, lv), dtype)
        logits, target = _arr((4, 3), dtype), RNG.uniform(0, 1, (1, 3)).astype(dtype)
        _assert_same(provider.bce_logits(logits, target)[0], REF.bce_logits(logits, target)[0], dtype)


@pytest.mark.parametrize("name", ["cpu", "cuda-sim"])
def test_adam_matches_the_reference_including_strided_parameters(name):
    provider = PROVIDERS[name]
    for dtype in ("float64", "float32"):
        states = {}
        for who in (provider, REF):
            p = np.linspace(-1, 1, 24, dtype=dtype).reshape(4, 6)
            view = p[:, ::2]  # a non-contiguous parameter view
            m, v = np.full(view.shape, 0.1, dtype), np.full(view.shape, 0.2, dtype)
            grad = np.cos(np.arange(12.0)).reshape(4, 3).astype(dtype)
            for step in (1, 2, 3):
                who.adam(view, grad, m, v, 0.01, 0.9, 0.999, 1e-8, step, 0.1)
            states[who.name] = (p, m, v)
        _assert_same(states[provider.name], states[REF.name], dtype)


# --------------------------------------------------------------------- through the engine


def _provider_ops():
    """Every op whose arrays come from a provider, as (name, function, input shapes)."""
    w_b = [(4, 3), (3,)]
    table = [
        ("linear", lambda x, w, b: ops.linear(x, w, b), [(5, 4)] + w_b),
        ("linear, 3-D input", lambda x, w, b: ops.linear(x, w, b), [(2, 5, 4)] + w_b),
        ("rsample", lambda mu, lv: mv.reparameterize(mu, lv, np.linspace(-1, 1, 15).reshape(5, 3)), [(5, 3), (5, 3)]),
        ("rsample, broadcast logvar", lambda mu, lv: mv.reparameterize(mu, lv, np.ones((2, 5, 3))), [(5, 3), (1, 3)]),
        ("kl_normal_standard", mv.kl_normal_standard, [(5, 3), (5, 3)]),
        ("bce_with_logits", lambda l, t: ops.bce_with_logits(3 * l, t.sigmoid()), [(5, 3), (5, 3)]),
        ("bce_with_logits, 0-d", lambda l, t: ops.bce_with_logits(l, t.sigmoid()), [(), ()]),
        ("bce_with_logits_sum", lambda l, t: ops.bce_with_logits_sum(3 * l, t.sigmoid()), [(5, 3), (5, 3)]),
        ("bce_with_logits_sum, axis 0", lambda l, t: ops.bce_with_logits_sum(l, t.sigmoid(), axis=0), [(5, 3), (5, 3)]),
        ("bce_with_logits_sum, transposed", lambda l, t: ops.bce_with_logits_sum(l.T, t.sigmoid().T), [(3, 5), (3, 5)]),
    ]
    for act in base.ACTIVATION_NAMES:
        table.append((act, getattr(ops, act), [(4, 3)]))
        table.append((f"{act}, transposed view", lambda x, f=getattr(ops, act): f(x.T), [(3, 4)]))
        table.append((f"linear → {act} (fused)", lambda x, w, b, a=act: ops.linear(x, w, b, activation=a), [(5, 4)] + w_b))
    return table


def _inputs(op_name, shapes):
    rng = np.random.default_rng(sum(map(ord, op_name)))
    return [mv.tensor(rng.uniform(-1.5, 1.5, s) + 0.05, dtype="float64", requires_grad=True) for s in shapes], rng


OPS = _provider_ops()
OP_IDS = [row[0] for row in OPS]


@pytest.mark.parametrize("name", ["reference", "cpu"])
@pytest.mark.parametrize("op_name,fn,shapes", OPS, ids=OP_IDS)
def test_gradcheck_every_provider_op(name, op_name, fn, shapes):
    """float64 central differences vs backward, with a random upstream gradient."""
    inputs, rng = _inputs(op_name, shapes)
    with providers.use_provider(PROVIDERS[name]):
        upstream = rng.standard_normal(fn(*inputs).shape)
        report = mv.gradcheck(lambda *xs: (fn(*xs) * upstream).sum(), inputs)
    assert report.ok, report


@pytest.mark.parametrize("op_name,fn,shapes", OPS, ids=OP_IDS)
def test_cuda_kernels_give_the_gradchecked_values_and_gradients(op_name, fn, shapes):
    """The simulator runs a CUDA kernel in a Python thread per CUDA thread, too slow for
    finite differences; one forward and backward is compared with the reference
    provider's, which the test above gradchecks."""
    results = []
    for provider in (REF, CUDA_SIM):
        inputs, rng = _inputs(op_name, shapes)
        with providers.use_provider(provider):
            out = fn(*inputs)
            (out * rng.standard_normal(out.shape)).sum().backward()
        results.append([out.numpy()] + [x.grad for x in inputs])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("spelling", ["user", "sequential", "sliced"])
def test_benchmark_vae_step_same_losses_and_parameters_on_every_kernel_set(spelling):
    """Five Adam steps of the benchmark's VAE, in each of its spellings: same losses, same parameters."""
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


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_bce_sum_second_backward_recomputes_what_the_first_consumed(name):
    """The CPU provider writes the gradient into the saved e^-|l|; a second backward
    (retain_graph) must still give the same gradient."""
    with providers.use_provider(PROVIDERS[name]):
        l = mv.tensor(RNG.uniform(-4, 4, (5, 6)), requires_grad=True, dtype="float64")
        t = mv.tensor(RNG.uniform(0, 1, (5, 6)), dtype="float64")
        loss = ops.bce_with_logits_sum(l, t)
        loss.backward(retain_graph=True)
        first = l.grad.copy()
        l.grad = None
        loss.backward()
        np.testing.assert_allclose(l.grad, first, rtol=0, atol=0)


# ------------------------------------------------------------------ the threaded CPU paths



@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("rows", [8, 256])  # 8 x 784: one piece (under the threshold); 256 x 784: 4 pieces
def test_cpu_provider_on_one_and_two_threads_below_and_above_the_threshold(rows, count, monkeypatch):
    """The step's threaded methods give the reference's numbers whether or not they split."""
    monkeypatch.setattr(threads, "_CPUS", max(threads._CPUS, 2))  # two threads even on a one-CPU runner
    # The default threshold keeps these sizes whole (it is measured per machine); this one makes
    # 256 x 784 split into pieces, so the threaded path is what is compared.
    monkeypatch.setattr(threads, "MIN_PIECE", 1 << 16)
    dtype = "float32"
    shape = (rows, 784)
    assert (len(threads.piece_bounds(*shape[:1], rows * 784)) > 1) == (rows * 784 >= 2 * threads.MIN_PIECE)
    logits, target = _arr(shape, dtype, 4.0), RNG.uniform(0, 1, shape).astype(dtype)
    g, x, w, b = _arr(shape, dtype), _arr((rows, 20), dtype), _arr((20, 784), dtype, 0.3), _arr((784,), dtype)
    with threadpoolctl.threadpool_limits(count):
        assert threads.thread_count() == count
        values, saved = cpu.PROVIDER.bce_logits(logits, target)
        _assert_same(values, REF.bce_logits(logits, target)[0], dtype)
        _assert_same(cpu.PROVIDER.bce_logits_row_sums(logits, target)[0], REF.bce_logits_row_sums(logits, target)[0],
                     dtype)
        grad_sum = np.broadcast_to(np.float32(0.5), shape)  # the stride-0 gradient of a sum
        _assert_same(cpu.PROVIDER.bce_logits_grad(logits, target, saved, grad_sum),
                     REF.bce_logits_grad(logits, target, None, grad_sum), dtype)
        product = cpu.PROVIDER.matmul(x, w, bias=b)
        _assert_same(product, REF.matmul(x, w, bias=b), dtype)
        y = cpu.PROVIDER.activation("relu", product, 0.0)
        _assert_same(y, REF.activation("relu", product, 0.0), dtype)
        _assert_same(cpu.PROVIDER.activation_grad("relu", g, y, 0.0), REF.activation_grad("relu", g, y, 0.0), dtype)
        got_u, got_b = cpu.PROVIDER.activation_grad_bias("relu", g, y, 0.0)
        want_u, want_b = REF.activation_grad_bias("relu", g, y, 0.0)
        _assert_same(got_u, want_u, dtype)
        np.testing.assert_allclose(got_b, want_b, rtol=1e-5, atol=1e-5)  # a sum of `rows` terms, other order


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_foreach_optimizers_match_the_reference_with_awkward_parameters(momentum):
    """Contiguous parameters go to one compiled call, a strided view and a float64 one the
    per-parameter path; all end where the reference's per-parameter NumPy puts them."""
    def model():
        base = np.linspace(-1, 1, 24, dtype="float32").reshape(4, 6)
        params = [np.linspace(-2, 2, 600, dtype="float32").reshape(20, 30), base[:, ::2],
                  np.array(0.5, "float32"), np.linspace(0, 1, 7)]  # the last is float64
        grads = [np.cos(np.arange(p.size, dtype="float64")).reshape(p.shape).astype(p.dtype) for p in params]
        return params, grads, base

    results = {}
    for provider in (cpu.PROVIDER, REF):
        params, grads, base = model()
        velocities = [None] * len(params)
        ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        for step in (1, 2, 3):
            provider.sgd_foreach(params, grads, velocities, 0.1, momentum, 0.01)
            provider.adam_foreach(params, grads, ms, vs, 0.01, 0.9, 0.999, 1e-8, step, 0.1)
        results[provider.name] = params, velocities, ms, vs, base
    for got, want in zip(results[cpu.PROVIDER.name], results[REF.name]):
        for a, b in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
            if b is None:
                assert a is None
            else:
                _assert_same(a, b, str(b.dtype))
