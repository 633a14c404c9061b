"""GPU benchmark of minivae: our CUDA kernels against cuBLAS / CuPy, and the VAE step against PyTorch.

One command, one JSON file::

    python benchmarks/gpu.py --out benchmarks/results/gpu.json      # ~3-6 minutes
    python benchmarks/gpu.py --quick --out /tmp/gpu-quick.json      # ~1 minute, fewer rounds

Needs an NVIDIA GPU, CuPy and numba-cuda: ``pip install -e ".[gpu-cu12,bench]"`` when
nvidia-smi's header says "CUDA Version: 12.x", ``".[gpu-cu13,bench]"`` for 13.x (the
PyTorch wheels of ``bench`` are built for CUDA 13; on a CUDA 12 driver take PyTorch's
cu12 build or ``--no-torch``). On a machine where CuPy, numba-cuda and PyTorch are
already installed and no registry is reachable: ``pip install --no-deps -e .`` or just
``PYTHONPATH=. python benchmarks/gpu.py`` (this script also puts the checkout on its
path). Without a GPU it stops at once with exit status 2 and says what is missing. Sections:

1. ``gemm``: SGEMM GFLOP/s of our tiled kernel (``minivae.kernels.cuda.matmul``) against cuBLAS
   (through ``cupy.matmul``), FP32 with TF32 switched off, at 4096^3 and at the three
   products of each dense layer of the 784-400-20 VAE at batch 128 / 1024 / 4096:
   forward ``A @ B``, weight gradient ``A.T @ B``, input gradient ``A @ B.T``.
2. ``elementwise``: each fused kernel's effective bandwidth (the bytes it must move,
   divided by its time) against the measured device-to-device copy bandwidth, and its
   speed-up over the same computation written as a chain of CuPy ops (what minivae's
   reference code runs), on a large array (DRAM-bound) and at the VAE's shapes.
3. ``vae_step``: one training step (forward, backward, Adam) of the 784-400-20 VAE with
   a Bernoulli decoder, float32, at batch 128 / 1024 / 4096: minivae with our kernels
   (``custom``), minivae with cuBLAS + CuPy (``vendor``), and PyTorch eager (if
   importable). ms per step and ratios; also the host (Python) time per step, which
   tells whether a step is launch-bound.
4. ``launch``: host microseconds per kernel launch: numba's empty-kernel probe, one of
   our kernels on CuPy arrays (cached and fresh device-array views), the provider call
   minivae makes, and CuPy's / PyTorch's own elementwise launches for comparison.

Timing: CUDA events on the stream the work runs on, after warm-up; each figure is the
median over ``--rounds`` rounds of back-to-back calls (each round about 50 ms of work).

``--host-side`` needs no GPU: it times the Python side of each provider call and of a
whole training step at batch 128 with every launch recorded but not made
(``minivae.kernels.cuda_launch.recording(run=False)``), on NumPy arrays: our wrappers and the
provider, without numba-cuda's own dispatch (about 6-7 us plus 3-4 us per array
argument on a real GPU, by numba-cuda's account) and without CuPy's allocations.

``--simulate`` is for the test suite only: it runs every code path at toy sizes on
Numba's CUDA simulator with NumPy arrays (and PyTorch on the CPU), to catch mistakes in
this script without a GPU. Its timings mean nothing and the JSON says so.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

# --- environment: must be in place before numba / CuPy / PyTorch are imported ----------------
# Low-overhead interop (the same settings minivae.providers.backend applies; see kernels/cuda_launch.py).
for _key, _value in {
    "NUMBA_CUDA_ARRAY_INTERFACE_SYNC": "0",
    "CUPY_CUDA_ARRAY_INTERFACE_SYNC": "0",
    "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS": "0",
}.items():
    os.environ.setdefault(_key, _value)
# FP32 everywhere: cuBLAS must not use TF32 tensor cores, or the GEMM comparison would
# set our FP32 kernel against a 10-bit-mantissa one. CUPY_TF32 is read by CuPy at its
# first matmul (default off); NVIDIA_TF32_OVERRIDE=0 switches TF32 off in every NVIDIA
# library of the process (cuBLAS under PyTorch included). Forced, not defaulted.
os.environ["CUPY_TF32"] = "0"
os.environ["NVIDIA_TF32_OVERRIDE"] = "0"

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

D_IN, D_HID, D_Z = 784, 400, 20
INSTALL_HINT = ('pip install -e ".[gpu-cu12,bench]" if nvidia-smi shows "CUDA Version: 12.x", '
                '".[gpu-cu13,bench]" for 13.x (CuPy and numba-cuda with their CUDA wheels; torch for the '
                'PyTorch column); where they are installed already: pip install --no-deps -e .')


class NoGPU(RuntimeError):
    """This machine cannot run the GPU benchmark; the message says why and what to install."""


def require_gpu():
    """CuPy with a usable CUDA device and numba's real CUDA target, or :class:`NoGPU`."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise NoGPU("benchmarks/gpu.py needs an NVIDIA GPU, not Numba's CUDA simulator: "
                    "unset NUMBA_ENABLE_CUDASIM (timings on the simulator mean nothing)")
    try:
        import cupy
    except ImportError as err:
        raise NoGPU(f"benchmarks/gpu.py needs an NVIDIA GPU with CuPy, and CuPy is not installed ({err}). "
                    f"On a machine with an NVIDIA GPU and a CUDA 12 driver: {INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # no driver, no device, broken install
        raise NoGPU(f"benchmarks/gpu.py needs an NVIDIA GPU; CuPy found no usable CUDA device ({err})") from None
    if count == 0:
        raise NoGPU("benchmarks/gpu.py needs an NVIDIA GPU; CuPy found no CUDA device")
    from numba import cuda

    if not cuda.is_available():
        raise NoGPU("benchmarks/gpu.py needs an NVIDIA GPU visible to numba's CUDA target, and numba "
                    f"cannot use it (numba.cuda.is_available() is False). {INSTALL_HINT}")
    return cupy


# =============================================================================================
# sizes: the real plan, and toy sizes for --simulate
# =============================================================================================
REAL = {
    "square": 4096,
    "batches": (128, 1024, 4096),
    "dims": (D_IN, D_HID, D_Z),
    "large": (16384, 4096),  # 268 MB per float32 array: far beyond the H100's 50 MB L2
    "launch_repeats": 2000,
    "launch_shape": (128, 20),  # a latent-sized array: the kernel itself takes a few microseconds
    "target_ms": 50.0,
}
TOY = {"square": 8, "batches": (5,), "dims": (6, 4, 2), "large": (4, 33), "launch_repeats": 3, "launch_shape": (2, 3),
       "target_ms": 0.0}


def layer_shapes(dims: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(in, out) of each Linear of the VAE: encoder hidden, mu and logvar heads, decoder hidden and output."""
    d_in, d_hid, d_z = dims
    return [(d_in, d_hid), (d_hid, d_z), (d_z, d_hid), (d_hid, d_in)]


# =============================================================================================
# clocks: CUDA events (CuPy or PyTorch) or, under --simulate, the host clock
# =============================================================================================
class Clock:
    """Times ``fn()`` called back to back: median ms per call over rounds, plus host ms per call."""

    def __init__(self, rounds: int, warmup: int, target_ms: float) -> None:
        self.rounds, self.warmup, self.target_ms = rounds, warmup, target_ms

    # a backend supplies these three
    def sync(self) -> None:
        raise NotImplementedError

    def mark(self) -> Any:
        raise NotImplementedError

    def elapsed_ms(self, start: Any, end: Any) -> float:
        raise NotImplementedError

    def measure(self, fn: Callable[[], Any], max_iters: int = 1000) -> dict[str, float]:
        for _ in range(self.warmup):
            fn()
        self.sync()
        iters = 1
        if self.target_ms > 0:  # enough calls per round for about target_ms of work
            started = time.perf_counter()
            fn()
            self.sync()
            one_ms = (time.perf_counter() - started) * 1e3
            iters = max(1, min(max_iters, int(self.target_ms / max(one_ms, 1e-3))))
        device, host = [], []
        for _ in range(self.rounds):
            start = self.mark()
            host_start = time.perf_counter()
            for _ in range(iters):
                fn()
            host_ms = (time.perf_counter() - host_start) * 1e3
            end = self.mark()
            device.append(self.elapsed_ms(start, end) / iters)
            host.append(host_ms / iters)
        return {"ms": statistics.median(device), "min_ms": min(device), "max_ms": max(device),
                "host_ms": statistics.median(host), "iters": iters, "rounds": self.rounds}


class CupyClock(Clock):
    def __init__(self, cupy, stream, **kw) -> None:
        super().__init__(**kw)
        self.cp, self.stream = cupy, stream

    def sync(self) -> None:
        self.stream.synchronize()

    def mark(self):
        event = self.cp.cuda.Event()
        event.record(self.stream)
        return event

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return self.cp.cuda.get_elapsed_time(start, end)


class TorchClock(Clock):
    def __init__(self, torch, **kw) -> None:
        super().__init__(**kw)
        self.torch = torch

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def mark(self):
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return start.elapsed_time(end)


class HostClock(Clock):
    """--simulate only: the simulator runs kernels synchronously on the host."""

    def sync(self) -> None:
        pass

    def mark(self) -> float:
        return time.perf_counter()

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1e3


# =============================================================================================
# the machine the numbers were taken on
# =============================================================================================
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(cp, simulate: bool) -> dict[str, Any]:
    import numba
    import numpy

    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "numba_cuda": _version("numba-cuda"),
        "cupy": getattr(cp, "__version__", None) if cp is not None else None,
        "torch": _version("torch"),
        "settings": {k: os.environ.get(k) for k in (
            "CUPY_TF32", "NVIDIA_TF32_OVERRIDE", "NUMBA_CUDA_ARRAY_INTERFACE_SYNC",
            "CUPY_CUDA_ARRAY_INTERFACE_SYNC", "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS")},
    }
    if simulate:
        env["device"] = "Numba CUDA simulator (--simulate: a plumbing test; timings mean nothing)"
        return env
    runtime = cp.cuda.runtime
    device = cp.cuda.Device()
    props = runtime.getDeviceProperties(device.id)
    name = props.get("name", b"?")
    env.update({
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": device.compute_capability,
        "multiprocessors": props.get("multiProcessorCount"),
        "memory_gib": round(props.get("totalGlobalMem", 0) / 2**30, 1),
        "l2_cache_mib": round(props.get("l2CacheSize", 0) / 2**20, 1),
        "driver": _cuda_version(runtime.driverGetVersion()),
        "cuda_runtime": _cuda_version(runtime.runtimeGetVersion()),
    })
    try:
        import torch

        env["torch_cuda"] = torch.version.cuda
    except ImportError:
        pass
    return env


def _cuda_version(code: int) -> str:
    """12040 -> '12.4' (the CUDA version encoding: 1000 * major + 10 * minor)."""
    return f"{code // 1000}.{(code % 1000) // 10}"


# =============================================================================================
# 1. SGEMM
# =============================================================================================
def gemm_cases(plan: dict) -> list[dict[str, Any]]:
    """(name, layout, m, n, k): the square case and the three products of every VAE layer per batch."""
    n = plan["square"]
    cases = [{"case": f"square {n}^3", "layout": "A@B", "m": n, "n": n, "k": n}]
    for batch in plan["batches"]:
        for d_in, d_out in layer_shapes(plan["dims"]):
            layer = f"batch {batch}, {d_in}->{d_out}"
            cases += [
                {"case": f"{layer} forward", "layout": "A@B", "m": batch, "n": d_out, "k": d_in},
                {"case": f"{layer} weight grad", "layout": "A.T@B", "m": d_in, "n": d_out, "k": batch},
                {"case": f"{layer} input grad", "layout": "A@B.T", "m": batch, "n": d_in, "k": d_out},
            ]
    return cases


def bench_gemm(ctx: "Context") -> list[dict[str, Any]]:
    from minivae.kernels import cuda as kc

    xp, results = ctx.xp, []
    for case in gemm_cases(ctx.plan):
        m, n, k = case["m"], case["n"], case["k"]
        trans_a, trans_b = case["layout"] == "A.T@B", case["layout"] == "A@B.T"
        a = ctx.randn((k, m) if trans_a else (m, k))
        b = ctx.randn((n, k) if trans_b else (k, n))
        ours, vendor = xp.empty((m, n), dtype=xp.float32), xp.empty((m, n), dtype=xp.float32)
        op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)

        def run_ours():
            kc.matmul(a, b, ours, trans_a=trans_a, trans_b=trans_b, stream=ctx.stream)

        def run_vendor():
            xp.matmul(op_a, op_b, out=vendor)

        t_ours, t_vendor = ctx.clock.measure(run_ours), ctx.clock.measure(run_vendor)
        flop = 2.0 * m * n * k
        row = {
            **case,
            "ours_ms": t_ours["ms"], "cublas_ms": t_vendor["ms"],
            "ours_gflops": flop / t_ours["ms"] / 1e6, "cublas_gflops": flop / t_vendor["ms"] / 1e6,
            "ours_over_cublas_time": t_ours["ms"] / t_vendor["ms"],
            "max_rel_diff": _max_rel_diff(xp, ours, vendor),
        }
        results.append(row)
        ctx.say(f"  {case['case']:<42} {case['layout']:<6} ours {row['ours_gflops']:9.1f} GFLOP/s   "
                f"cuBLAS {row['cublas_gflops']:9.1f} GFLOP/s   ours/cuBLAS time {row['ours_over_cublas_time']:5.2f}")
    return results


def _max_rel_diff(xp, got, want) -> float:
    scale = float(xp.abs(want).max()) if want.size else 0.0
    return float(xp.abs(got - want).max()) / scale if scale else 0.0


# =============================================================================================
# 2. fused elementwise kernels
# =============================================================================================
ELEMENTWISE = ("bias + relu forward", "relu backward + bias grad", "reparameterize forward", "Gaussian KL per row",
               "BCE with logits forward", "BCE with logits, fused sum", "BCE with logits backward", "Adam update")


def elementwise_cases(ctx: "Context", rows: int, cols: int) -> list[dict[str, Any]]:
    """Each fused kernel (in the order of ELEMENTWISE), the CuPy op chain minivae's reference
    code runs for it, and the bytes it must move at least (every input read once, every
    output written once)."""
    from minivae.kernels import cuda as kc

    xp, s, item = ctx.xp, ctx.stream, 4  # float32
    n = rows * cols
    x, g, y, mu, lv, eps = (ctx.randn((rows, cols)) for _ in range(6))
    y = xp.maximum(y, 0)
    bias = ctx.randn((cols,))
    target = xp.abs(ctx.randn((rows, cols))) % 1
    out, out2, grad_bias = xp.empty_like(x), xp.empty_like(x), xp.empty(cols, dtype=xp.float32)
    kl_out, total = xp.empty(rows, dtype=xp.float32), xp.empty(1, dtype=xp.float32)
    p, p2, grad = ctx.randn((n,)), ctx.randn((n,)), ctx.randn((n,))
    m, v, m2, v2 = (xp.zeros(n, dtype=xp.float32) for _ in range(4))

    def sigmoid(a):  # minivae's stable reference sigmoid
        e = xp.exp(-xp.abs(a))
        return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))

    def bce(l, t):
        return xp.maximum(l, 0) - l * t + xp.log1p(xp.exp(-xp.abs(l)))

    def adam_chain():  # optim.Adam's reference update, L2 weight decay 0, step 3
        m2[...] *= 0.9
        m2[...] += 0.1 * grad
        v2[...] *= 0.999
        v2[...] += 0.001 * (grad * grad)
        denom = xp.sqrt(v2 / (1 - 0.999**3))
        denom += 1e-8
        p2[...] -= (1e-3 / (1 - 0.9**3)) * (m2 / denom)

    return [
        {"kernel": "bias + relu forward", "bytes": (2 * n + cols) * item,
         "ours": lambda: kc.bias_act_forward(x, bias, out, "relu", stream=s),
         "chain": lambda: xp.maximum(x + bias, 0), "check": (out, lambda: xp.maximum(x + bias, 0))},
        {"kernel": "relu backward + bias grad", "bytes": (3 * n + cols) * item,
         "ours": lambda: kc.bias_act_backward(g, y, out, "relu", grad_bias=grad_bias, stream=s),
         "chain": lambda: (g * (y > 0)).sum(axis=0), "check": (grad_bias, lambda: (g * (y > 0)).sum(axis=0))},
        {"kernel": "reparameterize forward", "bytes": 4 * n * item,
         "ours": lambda: kc.reparam_forward(mu, lv, eps, out, stream=s),
         "chain": lambda: mu + xp.exp(0.5 * lv) * eps, "check": (out, lambda: mu + xp.exp(0.5 * lv) * eps)},
        {"kernel": "Gaussian KL per row", "bytes": (2 * n + rows) * item,
         "ours": lambda: kc.kl_forward(mu, lv, kl_out, stream=s),
         "chain": lambda: 0.5 * (xp.exp(lv) + mu * mu - 1 - lv).sum(axis=-1),
         "check": (kl_out, lambda: 0.5 * (xp.exp(lv) + mu * mu - 1 - lv).sum(axis=-1))},
        {"kernel": "BCE with logits forward", "bytes": 3 * n * item,
         "ours": lambda: kc.bce_logits_forward(x, target, out, stream=s),
         "chain": lambda: bce(x, target), "check": (out, lambda: bce(x, target))},
        {"kernel": "BCE with logits, fused sum", "bytes": 2 * n * item,
         "ours": lambda: kc.bce_logits_sum(x, target, total, stream=s),
         "chain": lambda: bce(x, target).sum(), "check": (total, lambda: bce(x, target).sum().reshape(1))},
        {"kernel": "BCE with logits backward", "bytes": 4 * n * item,
         "ours": lambda: kc.bce_logits_backward(x, target, out2, grad_out=g, stream=s),
         "chain": lambda: g * (sigmoid(x) - target), "check": (out2, lambda: g * (sigmoid(x) - target))},
        {"kernel": "Adam update", "bytes": 7 * n * item,
         "ours": lambda: kc.adam_update(p, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 3, 0.0, decoupled=False, stream=s),
         "chain": adam_chain, "check": None},
    ]


def copy_bandwidth(ctx: "Context", rows: int, cols: int) -> dict[str, float]:
    """Device-to-device copy of one float32 (rows, cols) array: GB/s counting read + write."""
    xp = ctx.xp
    src, dst = ctx.randn((rows, cols)), xp.empty((rows, cols), dtype=xp.float32)
    nbytes = src.size * 4
    if ctx.simulate:
        memcpy = lambda: xp.copyto(dst, src)  # noqa: E731
    else:
        runtime = ctx.cp.cuda.runtime
        memcpy = lambda: runtime.memcpyAsync(  # noqa: E731
            dst.data.ptr, src.data.ptr, nbytes, runtime.memcpyDeviceToDevice, ctx.stream.ptr)
    elementwise = lambda: xp.copyto(dst, src)  # noqa: E731
    return {
        "bytes": 2 * nbytes,
        "memcpy_gbs": 2 * nbytes / ctx.clock.measure(memcpy)["ms"] / 1e6,
        "cupy_copy_kernel_gbs": 2 * nbytes / ctx.clock.measure(elementwise)["ms"] / 1e6,
    }


def bench_elementwise(ctx: "Context") -> dict[str, Any]:
    rows, cols = ctx.plan["large"]
    copy = copy_bandwidth(ctx, rows, cols)
    ctx.say(f"  device-to-device copy: {copy['memcpy_gbs']:.0f} GB/s (memcpy), "
            f"{copy['cupy_copy_kernel_gbs']:.0f} GB/s (CuPy copy kernel), on {rows}x{cols} float32")
    batch, (d_in, d_hid, d_z) = max(ctx.plan["batches"]), ctx.plan["dims"]
    vae_shape = {  # the shape each kernel sees in the VAE step at the largest batch
        "bias + relu forward": (batch, d_hid), "relu backward + bias grad": (batch, d_hid),
        "reparameterize forward": (batch, d_z), "Gaussian KL per row": (batch, d_z),
        "BCE with logits forward": (batch, d_in), "BCE with logits, fused sum": (batch, d_in),
        "BCE with logits backward": (batch, d_in), "Adam update": (d_in, d_hid),
    }
    # every kernel on the large array, then each at its own VAE shape
    groups = [("large", rows, cols, ELEMENTWISE)] + [("vae", *vae_shape[name], (name,)) for name in ELEMENTWISE]
    results = []
    for size, r, c, wanted in groups:
        for case in elementwise_cases(ctx, r, c):
            if case["kernel"] in wanted:
                t_ours, t_chain = ctx.clock.measure(case["ours"]), ctx.clock.measure(case["chain"])
                row = {
                    "kernel": case["kernel"], "size": size, "shape": [r, c],
                    "bytes": case["bytes"], "ours_ms": t_ours["ms"], "cupy_chain_ms": t_chain["ms"],
                    "ours_gbs": case["bytes"] / t_ours["ms"] / 1e6,
                    "fraction_of_copy_bandwidth": case["bytes"] / t_ours["ms"] / 1e6 / copy["memcpy_gbs"],
                    "speedup_over_cupy_chain": t_chain["ms"] / t_ours["ms"],
                }
                if case["check"] is not None:  # the chains write nothing: `got` still holds our last result
                    got, want = case["check"]
                    row["max_rel_diff"] = _max_rel_diff(ctx.xp, got, want())
                results.append(row)
                ctx.say(f"  {size:<5} {case['kernel']:<28} {str((r, c)):<14} {row['ours_gbs']:8.0f} GB/s "
                        f"({100 * row['fraction_of_copy_bandwidth']:5.1f}% of copy)   "
                        f"x{row['speedup_over_cupy_chain']:5.2f} vs CuPy chain")
    return {"copy": copy, "kernels": results,
            "note": "'vae' shapes (a few MB) fit in L2, so their GB/s can exceed the DRAM copy bandwidth"}


# =============================================================================================
# 3. the VAE training step
# =============================================================================================
def minivae_step(ctx: "Context", batch: int) -> Callable[[], None]:
    """One step of the registered VAE (784-400-20, Bernoulli decoder, float32), data already on the device."""
    import numpy as np

    import minivae as mv
    from minivae import providers
    from minivae.models import build_model

    d_in, d_hid, d_z = ctx.plan["dims"]
    model = build_model("vae", d_in, d_z, d_hid, mv.random.Generator(0))
    opt = mv.optim.Adam(model.parameters(), lr=1e-3)
    x = mv.tensor(np.random.default_rng(1).random((batch, d_in), dtype=np.float32))  # on the current backend
    noise = mv.random.Generator(2)

    def step() -> None:
        loss = model.loss(x, None, noise)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step.first_loss = lambda: model.loss(x, None, mv.random.Generator(3))["loss"].item()  # type: ignore[attr-defined]
    return step


def torch_step(ctx: "Context", batch: int):
    """The same model and step in PyTorch eager (default Adam), noise drawn on the device."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    device = "cpu" if ctx.simulate else "cuda"
    d_in, d_hid, d_z = ctx.plan["dims"]
    torch.manual_seed(0)
    layers = nn.ModuleDict({"enc": nn.Linear(d_in, d_hid), "mu": nn.Linear(d_hid, d_z), "logvar": nn.Linear(d_hid, d_z),
                            "dec": nn.Linear(d_z, d_hid), "out": nn.Linear(d_hid, d_in)}).to(device)
    opt = torch.optim.Adam(layers.parameters(), lr=1e-3)
    x = torch.rand(batch, d_in, device=device)

    def step() -> None:
        h = F.relu(layers["enc"](x))
        mu, logvar = layers["mu"](h), layers["logvar"](h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = layers["out"](F.relu(layers["dec"](z)))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = 0.5 * (torch.exp(logvar) + mu * mu - 1 - logvar).sum(dim=1)
        loss = (recon + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_vae_step(ctx: "Context", use_torch: bool) -> dict[str, Any]:
    torch_clock = None
    if use_torch:
        try:
            import torch

            if ctx.simulate:
                torch_clock = HostClock(rounds=ctx.clock.rounds, warmup=ctx.clock.warmup, target_ms=ctx.clock.target_ms)
            elif torch.cuda.is_available():
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                torch_clock = TorchClock(torch, rounds=ctx.clock.rounds, warmup=ctx.clock.warmup,
                                         target_ms=ctx.clock.target_ms)
        except ImportError:
            pass
    rows = []
    for batch in ctx.plan["batches"]:
        row: dict[str, Any] = {"batch": batch}
        losses = {}
        for kernels in ("custom", "vendor"):
            with _minivae_kernels(ctx, kernels):
                step = minivae_step(ctx, batch)
                losses[kernels] = step.first_loss()
                timing = ctx.clock.measure(step, max_iters=200)
            row[f"minivae_{kernels}_ms"] = timing["ms"]
            row[f"minivae_{kernels}_host_ms"] = timing["host_ms"]
        row["custom_vs_vendor_first_loss_rel_diff"] = abs(losses["custom"] - losses["vendor"]) / abs(losses["vendor"])
        row["custom_over_vendor_time"] = row["minivae_custom_ms"] / row["minivae_vendor_ms"]
        if torch_clock is not None:
            row["torch_ms"] = torch_clock.measure(torch_step(ctx, batch), max_iters=200)["ms"]
            row["custom_over_torch_time"] = row["minivae_custom_ms"] / row["torch_ms"]
            row["vendor_over_torch_time"] = row["minivae_vendor_ms"] / row["torch_ms"]
        rows.append(row)
        torch_text = f"   torch {row['torch_ms']:7.3f} ms" if "torch_ms" in row else "   torch -"
        ctx.say(f"  batch {batch:>5}: minivae custom {row['minivae_custom_ms']:7.3f} ms "
                f"(host {row['minivae_custom_host_ms']:7.3f})   vendor {row['minivae_vendor_ms']:7.3f} ms{torch_text}")
    return {
        "model": "VAE {0}-{1}-{2} (encoder {0}->{1} ReLU->{2} mu, {2} logvar; decoder {2}->{1} ReLU->{0}), "
                 "Bernoulli decoder, Adam lr 1e-3, float32".format(*ctx.plan["dims"]),
        "steps": rows,
        "torch": "not run" if torch_clock is None else "PyTorch eager, default Adam (foreach), TF32 off",
        "notes": [
            "the batch is resident on the device for every implementation (no host-to-device data copy per step)",
            "minivae draws its Gaussian noise on the host (NumPy PCG64, the same numbers on every backend) and "
            "copies it to the GPU each step; PyTorch draws it on the GPU",
            "host_ms: Python time per step; when it is close to ms, the step is bound by launch overhead",
        ],
    }


class _minivae_kernels:
    """Run a block on minivae's GPU path with one kernel set (or its simulated stand-in)."""

    def __init__(self, ctx: "Context", kernels: str) -> None:
        self.ctx, self.kernels = ctx, kernels

    def __enter__(self):
        from minivae import providers
        from minivae.providers import backend, cuda as accel_cuda

        self._previous = (backend.get_backend(), providers.get_kernels())
        if self.ctx.simulate:
            providers.set_kernels("reference")
            self._sim = accel_cuda.simulate_on_host() if self.kernels == "custom" else None
            if self._sim is not None:
                self._sim.__enter__()
                providers.set_kernels("custom")
        else:
            backend.set_backend("cupy")
            providers.set_kernels(self.kernels)
        return self

    def __exit__(self, *exc):
        from minivae import providers
        from minivae.providers import backend

        if self.ctx.simulate and self._sim is not None:
            self._sim.__exit__(*exc)
        backend.set_backend(self._previous[0])
        providers.set_kernels(self._previous[1])
        return False


# =============================================================================================
# 4. launch overhead
# =============================================================================================
def host_us_per_call(ctx: "Context", fn: Callable[[int], Any], repeats: int) -> float:
    """Host microseconds per call of fn(i), i = 0..repeats-1 (launches only; one sync at the end)."""
    fn(0)
    ctx.clock.sync()
    started = time.perf_counter()
    for i in range(repeats):
        fn(i)
    elapsed = time.perf_counter() - started
    ctx.clock.sync()
    return elapsed / repeats * 1e6


def bench_launch(ctx: "Context", use_torch: bool) -> dict[str, Any]:
    import minivae.kernels
    from minivae.kernels import cuda as kc

    xp, n = ctx.xp, ctx.plan["launch_repeats"]
    shape = tuple(ctx.plan["launch_shape"])
    x, out = ctx.randn(shape), xp.empty(shape, dtype=xp.float32)
    pool = ctx.randn((n, shape[0] * shape[1]))
    fresh = [pool[i].reshape(shape) for i in range(n)]  # distinct array objects: no cached numba view
    provider = ctx.provider
    result = {
        "empty_numba_kernel_us": minivae.kernels.launch_overhead_probe(n) * 1e6,
        "our_kernel_cached_views_us": host_us_per_call(
            ctx, lambda i: kc.bias_act_forward(x, None, out, "relu", stream=ctx.stream), n),
        "our_kernel_fresh_views_us": host_us_per_call(
            ctx, lambda i: kc.bias_act_forward(fresh[i], None, out, "relu", stream=ctx.stream), n),
        "device_array_view_us": host_us_per_call(ctx, lambda i: kc.as_device_array(pool[i]), n),
        "provider_activation_us": host_us_per_call(ctx, lambda i: provider.activation("relu", x, 0.0), n),
        "cupy_elementwise_us": host_us_per_call(ctx, lambda i: xp.maximum(x, 0, out=out), n),
        "shape": list(shape),
        "note": "host time per call, launches queued back to back with one synchronisation at the end; "
                "'fresh views' passes a new CuPy array object each call, so numba builds its view each time",
    }
    if use_torch:
        try:
            import torch

            if ctx.simulate or torch.cuda.is_available():
                xt = torch.randn(*shape, device="cpu" if ctx.simulate else "cuda")
                sync = (lambda: None) if ctx.simulate else torch.cuda.synchronize
                torch.relu(xt)
                sync()
                started = time.perf_counter()
                for _ in range(n):
                    torch.relu(xt)
                result["torch_elementwise_us"] = (time.perf_counter() - started) / n * 1e6
                sync()
        except ImportError:
            pass
    for key, value in result.items():
        if key.endswith("_us"):
            ctx.say(f"  {key:<32} {value:8.2f} us")
    return result


# =============================================================================================
# 5. the Python side alone, no GPU needed
# =============================================================================================
def bench_host_side(batch: int = 128, repeats: int = 100, rounds: int = 7, quiet: bool = False) -> dict[str, Any]:
    """Host microseconds per provider call, and per training step, with launches recorded
    but not made (a dry run on NumPy arrays): the part of the launch cost that is ours.
    Each figure is the best of ``rounds`` rounds (host timings only get slower by noise)."""
    import numpy as np

    import minivae as mv
    from minivae.kernels.cuda_launch import recording
    from minivae.models import build_model
    from minivae.providers import cuda as accel_cuda, use_provider

    provider = accel_cuda.CudaKernels(xp=np, stream=lambda: 0)
    rng = np.random.default_rng(0)

    def f32(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    x, w, b, h = f32(batch, D_IN), f32(D_IN, D_HID), f32(D_HID), f32(batch, D_HID)
    mu, lv, eps = f32(batch, D_Z), f32(batch, D_Z), f32(batch, D_Z)
    rows_g = np.broadcast_to(f32(batch, 1), (batch, D_IN))  # the gradient of a row sum
    m, v = np.zeros_like(w), np.zeros_like(w)
    calls = {
        "matmul (x @ W + b)": lambda: provider.matmul(x, w, bias=b),
        "matmul (x.T @ g)": lambda: provider.matmul(x, h, trans_a=True),
        "activation relu in place": lambda: provider.activation("relu", h, 0.0, inplace=True),
        "activation_grad_bias relu": lambda: provider.activation_grad_bias("relu", h, h, 0.0),
        "column_sum": lambda: provider.column_sum(h),
        "reparam": lambda: provider.reparam(mu, lv, eps),
        "reparam_grad_logvar": lambda: provider.reparam_grad_logvar(mu, lv, eps),
        "kl_rows": lambda: provider.kl_rows(mu, lv),
        "kl_grads": lambda: provider.kl_grads(mu, lv, mu[:, 0]),
        "bce_logits_row_sums": lambda: provider.bce_logits_row_sums(x, x),
        "bce_logits_grad (row-sum g)": lambda: provider.bce_logits_grad(x, x, None, rows_g),
        "adam (784x400 weight)": lambda: provider.adam(w, w, m, v, 1e-3, 0.9, 0.999, 1e-8, 1, 0.0),
    }
    per_call: dict[str, float] = {}
    with recording(run=False), np.errstate(all="ignore"):  # outputs hold garbage in a dry run
        for name, call in calls.items():
            call()
            best = float("inf")
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(repeats):
                    call()
                best = min(best, (time.perf_counter() - started) / repeats * 1e6)
            per_call[name] = best
    model = build_model("vae", D_IN, D_Z, D_HID, mv.random.Generator(0))
    opt = mv.optim.Adam(model.parameters(), lr=1e-3)
    data = rng.random((batch, D_IN), dtype=np.float32)

    def step():
        loss = model.loss(data, None, mv.random.Generator(1))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    with use_provider(provider), recording(run=False) as launches, np.errstate(all="ignore"):
        step()
        step_ms = float("inf")
        for _ in range(rounds):
            launches.clear()
            started = time.perf_counter()
            step()
            step_ms = min(step_ms, (time.perf_counter() - started) * 1e3)
    result = {"batch": batch, "provider_call_us": per_call, "step_host_ms": step_ms,
              "launches_per_step": len(launches),
              "note": "dry run on NumPy arrays (launches recorded, not made): our Python per call; the "
                      "step time also holds the engine's own NumPy work (CuPy kernels on a GPU)"}
    if not quiet:
        for name, us in per_call.items():
            print(f"  {name:<32} {us:7.1f} us")
        print(f"  training step: {step_ms:.2f} ms of host time, {len(launches)} launches of ours")
    return result


# =============================================================================================
# driver
# =============================================================================================
class Context:
    """What every section needs: array module, stream, clock, sizes, printing."""

    def __init__(self, simulate: bool, plan: dict, rounds: int, warmup: int, quiet: bool) -> None:
        import numpy as np

        self.simulate, self.plan, self.quiet = simulate, plan, quiet
        self._rng = np.random.default_rng(0)
        if simulate:
            from minivae.providers import cuda as accel_cuda

            self.cp, self.xp, self.stream = None, np, 0
            self.clock: Clock = HostClock(rounds=1, warmup=0, target_ms=0.0)
            self.provider = accel_cuda.CudaKernels(xp=np, stream=lambda: 0)
        else:
            import cupy

            from minivae.providers import backend, cuda as accel_cuda

            backend.set_backend("cupy")  # checks the device, applies backend.GPU_ENVIRONMENT
            self.cp = self.xp = cupy
            self.stream = cupy.cuda.get_current_stream()
            self.clock = CupyClock(cupy, self.stream, rounds=rounds, warmup=warmup, target_ms=plan["target_ms"])
            self.provider = accel_cuda.PROVIDER

    def randn(self, shape) -> Any:
        """Standard normal float32 noise on the device (generated on the device when there is one)."""
        if self.simulate:
            return self._rng.standard_normal(shape, dtype="float32")
        return self.cp.random.standard_normal(shape, dtype=self.cp.float32)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


SECTIONS = ("gemm", "elementwise", "vae_step", "launch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"), help="JSON file to write")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="VAE batch sizes (default 128 1024 4096)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement")
    parser.add_argument("--quick", action="store_true", help="3 rounds of ~10 ms: a first look in about a minute")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--host-side", action="store_true",
                        help="no GPU needed: time the Python side of provider calls and of a step (dry run)")
    parser.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)  # test suite only
    args = parser.parse_args(argv)

    if args.host_side:
        result = {"benchmark": "minivae GPU path, Python side only (dry run)", "machine": platform.processor()
                  or platform.machine(), "python": platform.python_version(),
                  "host_side": bench_host_side(quiet=args.quiet)}
        if str(args.out) != os.devnull and args.out != str(ROOT / "benchmarks" / "results" / "gpu.json"):
            Path(args.out).write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
        return 0

    if args.simulate:
        from numba import config

        if not config.ENABLE_CUDASIM:
            print("benchmarks/gpu.py --simulate: set NUMBA_ENABLE_CUDASIM=1", file=sys.stderr)
            return 2
        plan = dict(TOY)
    else:
        try:
            require_gpu()
        except NoGPU as err:
            print(f"benchmarks/gpu.py: {err}", file=sys.stderr)
            return 2
        plan = dict(REAL)
    if args.batches:
        plan["batches"] = tuple(args.batches)
    if args.quick:
        args.rounds, plan["target_ms"] = min(args.rounds, 3), min(plan["target_ms"], 10.0)

    ctx = Context(args.simulate, plan, rounds=args.rounds, warmup=args.warmup, quiet=args.quiet)
    result: dict[str, Any] = {
        "benchmark": "minivae GPU kernels and training step",
        "simulated": bool(args.simulate),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment(ctx.cp, args.simulate),
        "timing": {"method": "host clock (simulator)" if args.simulate else "CUDA events, median over rounds",
                   "rounds": ctx.clock.rounds, "warmup_calls": ctx.clock.warmup,
                   "target_ms_per_round": ctx.clock.target_ms, "dtype": "float32", "tf32": False},
    }
    ctx.say(f"device: {result['environment']['device']}")
    runners = {
        "gemm": lambda: bench_gemm(ctx),
        "elementwise": lambda: bench_elementwise(ctx),
        "vae_step": lambda: bench_vae_step(ctx, use_torch=not args.no_torch),
        "launch": lambda: bench_launch(ctx, use_torch=not args.no_torch),
    }
    for section in SECTIONS:
        if section in args.sections:
            ctx.say(f"[{section}]")
            result[section] = runners[section]()

    out = Path(args.out)
    if str(out) != os.devnull:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
        os.replace(tmp, out)
        ctx.say(f"wrote {out}")
    return 0


def _jsonable(value: Any) -> Any:
    """NumPy / CuPy scalars as plain JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
