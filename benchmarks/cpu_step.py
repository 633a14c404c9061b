"""Time one VAE training step on the CPU: minivae as users write it vs PyTorch written the same way,
and both against the matrix-product limit, in one run.

Model: 784-400-20 VAE: encoder 784 -> 400 ReLU -> two heads (mu, logvar) of 20; decoder
20 -> 400 ReLU -> 784 logits; Bernoulli decoder (BCE with logits summed over pixels) +
analytic KL, divided by the batch size; float32. One step = forward, backward,
optimizer update (SGD or Adam, lr 1e-3), with fresh Gaussian noise.

Variants (``--variants``; the default set is marked *):

* ``minivae-user-sgd`` / ``minivae-user-adam`` *: the model as a user writes it: one
  ``nn.Linear`` per layer and a separate ``mv.relu`` call after it, ``mv.Normal(mu,
  logvar).rsample(rng=...)``, ``losses.bce_with_logits(..., reduction="sum")``,
  ``q.kl_standard().sum()``, ``optim.SGD`` / ``optim.Adam``.
* ``minivae-seq-sgd`` / ``minivae-seq-adam`` *: the same model with ``nn.Sequential(nn.Linear,
  nn.ReLU, ...)`` bodies, which fuse each Linear + ReLU pair into one node.
* ``matmul-limit`` *: the five big matrix products of the step alone (forward x@W1 and
  h@W4; backward h^T@g, g@W4^T and x^T@g1), NumPy's BLAS writing into preallocated
  arrays: no engine can do the step in less time with this BLAS. Timed in the same
  process as the minivae variants, interleaved with them, and printed beside each step.
* ``torch-user-sgd`` / ``torch-user-adam`` *: PyTorch eager written the same way
  (``nn.Linear`` + ``F.relu``, ``mu + exp(logvar/2) * randn_like(mu)``,
  ``F.binary_cross_entropy_with_logits(reduction="sum")``, the KL formula,
  ``torch.optim.SGD`` / ``torch.optim.Adam`` with their defaults).
* ``torch-matmul`` *: the same five products with PyTorch's BLAS (for reading the torch rows).
* ``minivae-sliced-adam``: one 2x20 head sliced into mu and logvar, layers fused with
  ``nn.Linear(..., activation="relu")`` (the spelling of earlier versions of this script).
* ``minivae-reference-adam``: the user spelling on the plain reference code
  (``set_kernels("reference")``).
* ``numpy-floor``: a hand-written NumPy forward/backward/Adam of the step (one 2x20 head).
* ``autograd-adam``: HIPS autograd on the same function (one 2x20 head).

How it is timed (the machine may be shared, so every comparison is made inside one run):
one child process per (library family, batch, thread count) builds all its variants,
warms each up, then cycles through them ``--cycles`` times, timing ``--block`` single
steps of each per cycle (the order rotates), so a burst of load hits them all alike.
The children run round-robin ``--rounds`` times; a figure is the median over rounds of
the per-round median step time, and a ratio is the median over rounds of the per-round
ratios (minivae and the NumPy limit share a process; the torch child runs right after
the minivae child of the same batch and thread count). Each child records the load
average, the kernel's CPU pressure (/proc/pressure/cpu) and its own CPU time / wall time.
Besides wall time each step's process CPU time is recorded (``cpu ms``, all threads): with
one thread it is a measure a busy machine disturbs much less than wall time (with two,
spinning BLAS / OpenMP worker threads count too). ``faults`` = page faults per step.
Thread counts: ``--threads 1 2`` (default) limits BLAS (threadpoolctl), PyTorch
(``torch.set_num_threads``), OpenMP and Numba alike.

Memory (one process per variant and batch, at the largest thread count): ``train_peak_mb``
is the peak resident memory during 30 steps above the resident memory before the model
was built (the kernel's peak counter is reset there through /proc/self/clear_refs), so
library imports (PyTorch ~300 MB, numba ~100 MB: loaded before the baseline) do not
count; ``process_peak_mb`` is the whole process's peak, imports included.

Run:  python benchmarks/cpu_step.py [--json benchmarks/results/cpu_step-DATE.json]
      python benchmarks/cpu_step.py --quick            (one round, fewer cycles: a smoke run)
Compare runs only with the same environment: NumPy's OpenBLAS kernel (recorded via
threadpoolctl) depends on OPENBLAS_CORETYPE, and glibc's malloc settings (MALLOC_*_,
recorded too) change how much time page faults take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, NamedTuple

D_IN, D_HID, D_Z = 784, 400, 20
LR = 1e-3


# ----------------------------------------------------------------------------
# the step, many ways; each builder returns a zero-argument step function
# ----------------------------------------------------------------------------
def set_kernel_set(name: str) -> None:
    """Select minivae's kernel set (the public entry point moved between versions)."""
    try:
        from minivae.providers import set_kernels
    except ImportError:  # before the provider package exported it
        from minivae.providers.backend import set_kernels
    set_kernels(name)


def build_minivae(batch: int, seed: int, return_model: bool = False, spelling: str = "user",
                  optimizer: str = "adam"):
    """The step in minivae. ``spelling``: "user" (Linear + separate mv.relu calls),
    "sequential" (nn.Sequential bodies) or "sliced" (fused Linear(activation=) layers and
    one 2x20 head sliced into mu and logvar)."""
    import numpy as np

    import minivae as mv
    from minivae import nn

    rng = mv.random.Generator(seed)

    class UserVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(D_IN, D_HID, rng=rng)
            self.fc_mu = nn.Linear(D_HID, D_Z, rng=rng, init="xavier")
            self.fc_logvar = nn.Linear(D_HID, D_Z, rng=rng, init="xavier")
            self.fc3 = nn.Linear(D_Z, D_HID, rng=rng)
            self.fc4 = nn.Linear(D_HID, D_IN, rng=rng, init="xavier")

        def loss(self, x):
            h = mv.relu(self.fc1(x))
            q = mv.Normal(self.fc_mu(h), self.fc_logvar(h))
            z = q.rsample(rng=rng)
            logits = self.fc4(mv.relu(self.fc3(z)))
            nll = mv.losses.bce_with_logits(logits, x, reduction="sum")
            return (nll + q.kl_standard().sum()) / x.shape[0]

    class SequentialVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(D_IN, D_HID, rng=rng), nn.ReLU())
            self.fc_mu = nn.Linear(D_HID, D_Z, rng=rng, init="xavier")
            self.fc_logvar = nn.Linear(D_HID, D_Z, rng=rng, init="xavier")
            self.decoder = nn.Sequential(nn.Linear(D_Z, D_HID, rng=rng), nn.ReLU(),
                                         nn.Linear(D_HID, D_IN, rng=rng, init="xavier"))

        def loss(self, x):
            h = self.body(x)
            q = mv.Normal(self.fc_mu(h), self.fc_logvar(h))
            z = q.rsample(rng=rng)
            logits = self.decoder(z)
            nll = mv.losses.bce_with_logits(logits, x, reduction="sum")
            return (nll + q.kl_standard().sum()) / x.shape[0]

    class SlicedVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_hidden = nn.Linear(D_IN, D_HID, rng=rng, activation="relu")
            self.enc_out = nn.Linear(D_HID, 2 * D_Z, rng=rng, init="xavier")
            self.dec_hidden = nn.Linear(D_Z, D_HID, rng=rng, activation="relu")
            self.dec_out = nn.Linear(D_HID, D_IN, rng=rng, init="xavier")

        def loss(self, x):
            h = self.enc_out(self.enc_hidden(x))
            q = mv.Normal(h[:, :D_Z], h[:, D_Z:])
            z = q.rsample(rng=rng)
            logits = self.dec_out(self.dec_hidden(z))
            nll = mv.losses.bce_with_logits(logits, x, reduction="sum")
            return (nll + q.kl_standard().sum()) / x.shape[0]

    models = {"user": UserVAE, "sequential": SequentialVAE, "sliced": SlicedVAE}
    if spelling not in models:
        raise ValueError(f"build_minivae: spelling must be one of {sorted(models)}, got {spelling!r}")
    model = models[spelling]()
    if optimizer == "adam":
        opt = mv.optim.Adam(model.parameters(), lr=LR)
    elif optimizer == "sgd":
        opt = mv.optim.SGD(model.parameters(), lr=LR)
    else:
        raise ValueError(f"build_minivae: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    x = mv.tensor(np.random.default_rng(seed).random((batch, D_IN), dtype=np.float32))

    def step():
        opt.zero_grad()
        loss = model.loss(x)
        loss.backward()
        opt.step()
        return loss.item()

    return (step, model) if return_model else step


def build_minivae_reference(batch: int, seed: int):
    """The user spelling, Adam, on the reference kernel set (switched for each step)."""
    step = build_minivae(batch, seed, spelling="user", optimizer="adam")

    def reference_step():
        set_kernel_set("reference")
        try:
            return step()
        finally:
            set_kernel_set("auto")

    return reference_step


def _big_products(batch: int, seed: int, lib: str):
    """(operands, outputs) of the step's five big matrix products, random values."""
    import numpy as np

    gen = np.random.default_rng(seed)
    f32 = np.float32
    arrays = {
        "x": gen.random((batch, D_IN), dtype=f32),
        "W1": gen.standard_normal((D_IN, D_HID), dtype=f32) * f32(0.05),
        "h": gen.random((batch, D_HID), dtype=f32),
        "W4": gen.standard_normal((D_HID, D_IN), dtype=f32) * f32(0.05),
        "g": gen.standard_normal((batch, D_IN), dtype=f32),
        "g1": gen.standard_normal((batch, D_HID), dtype=f32),
    }
    outs = [np.empty(shape, f32) for shape in
            ((batch, D_HID), (batch, D_IN), (D_HID, D_IN), (batch, D_HID), (D_IN, D_HID))]
    if lib == "torch":
        import torch

        arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
        outs = [torch.from_numpy(o) for o in outs]
    return arrays, outs


def build_matmul_limit(batch: int, seed: int):
    """The five big products of the step, NumPy's BLAS, outputs preallocated (no page faults);
    the transposed operands are views, which BLAS reads in place."""
    import numpy as np

    a, (o1, o2, o3, o4, o5) = _big_products(batch, seed, "numpy")
    x, W1, h, W4, g, g1 = a["x"], a["W1"], a["h"], a["W4"], a["g"], a["g1"]

    def step():
        np.matmul(x, W1, out=o1)      # encoder hidden layer, forward
        np.matmul(h, W4, out=o2)      # decoder output layer, forward
        np.matmul(h.T, g, out=o3)     # its weight gradient
        np.matmul(g, W4.T, out=o4)    # its input gradient
        np.matmul(x.T, g1, out=o5)    # the encoder hidden layer's weight gradient
        return 0.0

    return step


def build_torch_matmul(batch: int, seed: int):
    """The same five products with PyTorch's BLAS."""
    import torch

    a, (o1, o2, o3, o4, o5) = _big_products(batch, seed, "torch")
    x, W1, h, W4, g, g1 = a["x"], a["W1"], a["h"], a["W4"], a["g"], a["g1"]

    def step():
        torch.mm(x, W1, out=o1)
        torch.mm(h, W4, out=o2)
        torch.mm(h.t(), g, out=o3)
        torch.mm(g, W4.t(), out=o4)
        torch.mm(x.t(), g1, out=o5)
        return 0.0

    return step


def build_torch(batch: int, seed: int, optimizer: str = "adam"):
    """PyTorch eager, written the way its users write a VAE."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(seed)
    fc1, fc_mu, fc_logvar = nn.Linear(D_IN, D_HID), nn.Linear(D_HID, D_Z), nn.Linear(D_HID, D_Z)
    fc3, fc4 = nn.Linear(D_Z, D_HID), nn.Linear(D_HID, D_IN)
    params = [p for layer in (fc1, fc_mu, fc_logvar, fc3, fc4) for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=LR) if optimizer == "adam" else torch.optim.SGD(params, lr=LR)
    x = torch.rand(batch, D_IN)

    def step():
        opt.zero_grad()
        h = F.relu(fc1(x))
        mu, logvar = fc_mu(h), fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = fc4(F.relu(fc3(z)))
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * torch.sum(torch.exp(logvar) + mu * mu - 1 - logvar)
        loss = (nll + kl) / batch
        loss.backward()
        opt.step()
        return loss.item()

    return step


def build_numpy_floor(batch: int, seed: int):
    import numpy as np

    gen = np.random.default_rng(seed)
    f32 = np.float32
    shapes = [(D_IN, D_HID), (D_HID,), (D_HID, 2 * D_Z), (2 * D_Z,), (D_Z, D_HID), (D_HID,), (D_HID, D_IN), (D_IN,)]
    params = [(gen.standard_normal(s) * np.sqrt(2 / s[0])).astype(f32) if len(s) == 2 else np.zeros(s, f32) for s in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x = gen.random((batch, D_IN), dtype=f32)
    t = [0]

    def step():
        W1, b1, W2, b2, W3, b3, W4, b4 = params
        h1 = x @ W1 + b1
        a1 = np.maximum(h1, 0)
        enc = a1 @ W2 + b2
        mu, lv = enc[:, :D_Z], enc[:, D_Z:]
        eps = gen.standard_normal((batch, D_Z), dtype=f32)
        std = np.exp(0.5 * lv)
        z = mu + std * eps
        h3 = z @ W3 + b3
        a3 = np.maximum(h3, 0)
        logits = a3 @ W4 + b4
        rec = np.sum(np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits))))
        kl = 0.5 * np.sum(np.exp(lv) + mu * mu - 1 - lv)
        loss = (rec + kl) / batch
        # backward
        dlogits = (1 / (1 + np.exp(-logits)) - x) / batch
        grads = [None] * 8
        grads[6], grads[7] = a3.T @ dlogits, dlogits.sum(0)
        dh3 = (dlogits @ W4.T) * (h3 > 0)
        grads[4], grads[5] = z.T @ dh3, dh3.sum(0)
        dz = dh3 @ W3.T
        denc = np.empty_like(enc)
        denc[:, :D_Z] = dz + mu / batch
        denc[:, D_Z:] = dz * 0.5 * std * eps + 0.5 * (np.exp(lv) - 1) / batch
        grads[2], grads[3] = a1.T @ denc, denc.sum(0)
        dh1 = (denc @ W2.T) * (h1 > 0)
        grads[0], grads[1] = x.T @ dh1, dh1.sum(0)
        # Adam
        t[0] += 1
        c1, c2 = 1 - 0.9 ** t[0], 1 - 0.999 ** t[0]
        for p, g, mi, vi in zip(params, grads, m, v):
            mi *= 0.9
            mi += 0.1 * g
            vi *= 0.999
            vi += 0.001 * g * g
            p -= (1e-3 / c1) * mi / (np.sqrt(vi / c2) + 1e-8)
        return float(loss)

    return step


def build_autograd(batch: int, seed: int):
    import autograd.numpy as anp
    import numpy as np
    from autograd import grad

    gen = np.random.default_rng(seed)
    shapes = [(D_IN, D_HID), (D_HID,), (D_HID, 2 * D_Z), (2 * D_Z,), (D_Z, D_HID), (D_HID,), (D_HID, D_IN), (D_IN,)]
    params = [(gen.standard_normal(s) * np.sqrt(2 / s[0])).astype(np.float32) if len(s) == 2 else np.zeros(s, np.float32) for s in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x = gen.random((batch, D_IN), dtype=np.float32)
    t = [0]

    def loss_fn(ps, eps):
        W1, b1, W2, b2, W3, b3, W4, b4 = ps
        enc = anp.maximum(anp.dot(x, W1) + b1, 0) @ W2 + b2
        mu, lv = enc[:, :D_Z], enc[:, D_Z:]
        z = mu + anp.exp(0.5 * lv) * eps
        logits = anp.maximum(anp.dot(z, W3) + b3, 0) @ W4 + b4
        rec = anp.sum(anp.maximum(logits, 0) - logits * x + anp.log1p(anp.exp(-anp.abs(logits))))
        kl = 0.5 * anp.sum(anp.exp(lv) + mu * mu - 1 - lv)
        return (rec + kl) / batch

    loss_grad = grad(loss_fn)

    def step():
        eps = gen.standard_normal((batch, D_Z), dtype=np.float32)
        grads = loss_grad(params, eps)
        t[0] += 1
        c1, c2 = 1 - 0.9 ** t[0], 1 - 0.999 ** t[0]
        for p, g, mi, vi in zip(params, grads, m, v):
            mi *= 0.9
            mi += 0.1 * g
            vi *= 0.999
            vi += 0.001 * g * g
            p -= ((1e-3 / c1) * mi / (np.sqrt(vi / c2) + 1e-8)).astype(p.dtype)
        return 0.0

    return step


class Variant(NamedTuple):
    family: str  # variants of one family share a child process (one set of libraries)
    build: Callable
    label: str


VARIANTS: dict[str, Variant] = {
    "minivae-user-sgd": Variant("numpy", lambda b, s: build_minivae(b, s, spelling="user", optimizer="sgd"),
                                "minivae, user spelling, SGD"),
    "minivae-user-adam": Variant("numpy", lambda b, s: build_minivae(b, s, spelling="user", optimizer="adam"),
                                 "minivae, user spelling, Adam"),
    "minivae-seq-sgd": Variant("numpy", lambda b, s: build_minivae(b, s, spelling="sequential", optimizer="sgd"),
                               "minivae, Sequential, SGD"),
    "minivae-seq-adam": Variant("numpy", lambda b, s: build_minivae(b, s, spelling="sequential", optimizer="adam"),
                                "minivae, Sequential, Adam"),
    "minivae-sliced-adam": Variant("numpy", lambda b, s: build_minivae(b, s, spelling="sliced", optimizer="adam"),
                                   "minivae, fused + sliced head, Adam"),
    "minivae-reference-adam": Variant("numpy", build_minivae_reference, "minivae reference kernels, user, Adam"),
    "numpy-floor": Variant("numpy", lambda b, s: build_numpy_floor(b, s), "hand-written NumPy step, Adam"),
    "matmul-limit": Variant("numpy", build_matmul_limit, "five big products alone, NumPy BLAS"),
    "torch-user-sgd": Variant("torch", lambda b, s: build_torch(b, s, "sgd"), "PyTorch, same spelling, SGD"),
    "torch-user-adam": Variant("torch", lambda b, s: build_torch(b, s, "adam"), "PyTorch, same spelling, Adam"),
    "torch-matmul": Variant("torch", build_torch_matmul, "five big products alone, PyTorch BLAS"),
    "autograd-adam": Variant("autograd", lambda b, s: build_autograd(b, s), "HIPS autograd, Adam"),
}
DEFAULT_VARIANTS = ("minivae-user-sgd", "minivae-user-adam", "minivae-seq-sgd", "minivae-seq-adam",
                    "matmul-limit", "torch-user-sgd", "torch-user-adam", "torch-matmul")
MEMORY_VARIANTS = ("minivae-user-sgd", "minivae-user-adam", "minivae-seq-adam", "numpy-floor",
                   "minivae-reference-adam", "torch-user-sgd", "torch-user-adam", "autograd-adam")
#: the PyTorch row each minivae row is compared with (same optimizer)
TORCH_TWIN = {"minivae-user-sgd": "torch-user-sgd", "minivae-seq-sgd": "torch-user-sgd",
              "minivae-user-adam": "torch-user-adam", "minivae-seq-adam": "torch-user-adam",
              "minivae-sliced-adam": "torch-user-adam", "minivae-reference-adam": "torch-user-adam",
              "numpy-floor": "torch-user-adam", "autograd-adam": "torch-user-adam"}
FAMILY_LIMIT = {"numpy": "matmul-limit", "torch": "torch-matmul"}
#: issue 24's targets, with 2 threads: minivae as users write it vs PyTorch; the step vs its five products
TARGET_VS_TORCH = 0.85
TARGET_VS_LIMIT = {128: 1.3, 1024: 1.15}
#: with 1 thread: no worse vs PyTorch than the previous round (results/cpu_step-2026-12-03.json), per optimizer
TARGET_VS_TORCH_ONE_THREAD = {("sgd", 128): 0.82, ("sgd", 1024): 0.88, ("adam", 128): 0.64, ("adam", 1024): 0.79}
#: peak training memory at most this fraction of PyTorch's
TARGET_MEMORY_VS_TORCH = 0.5


# ----------------------------------------------------------------------------
# measuring (inside a child process)
# ----------------------------------------------------------------------------
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def cpu_pressure() -> str | None:
    """The kernel's CPU pressure line: the share of time some runnable task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as f:
            return f.readline().strip()
    except OSError:
        return None


def _prepare_libraries(family: str, threads: int) -> None:
    """Import what the family needs before any timing or memory baseline, with its thread count."""
    if family == "torch":
        import torch

        torch.set_num_threads(threads)
    if family == "numpy":
        set_kernel_set("auto")
        try:  # load numba (its import is ~100 MB) before the baseline, as torch is loaded for its rows
            import minivae.providers.cpu  # noqa: F401
        except ImportError:
            pass


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer", "num_threads")
    return [{k: i.get(k) for k in keep} | {"library": os.path.basename(i.get("filepath", "")),
                                           "shipped_with": os.path.basename(os.path.dirname(i.get("filepath", "")))}
            for i in threadpool_info()]


def time_family(family: str, names: list[str], batch: int, threads: int, seed: int,
                warmup: int, cycles: int, block: int) -> dict:
    """Build every variant of one family, then time them interleaved (see the module docstring)."""
    import gc

    from threadpoolctl import threadpool_limits

    _prepare_libraries(family, threads)
    start_load, start_psi = loadavg(), cpu_pressure()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with threadpool_limits(limits=threads):
        steps = {name: VARIANTS[name].build(batch, seed) for name in names}
        for step in steps.values():
            for _ in range(warmup):
                step()
        gc.collect()
        times: dict[str, list[float]] = {name: [] for name in names}
        cpu_times: dict[str, list[float]] = {name: [] for name in names}
        faults: dict[str, list[int]] = {name: [] for name in names}
        order = list(names)
        for cycle in range(cycles):
            rotated = order[cycle % len(order):] + order[: cycle % len(order)]
            for name in rotated:
                step = steps[name]
                for _ in range(block):
                    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    c0, t0 = time.process_time(), time.perf_counter()
                    step()
                    t1, c1 = time.perf_counter(), time.process_time()
                    times[name].append(t1 - t0)
                    cpu_times[name].append(c1 - c0)
                    faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        blas = blas_info()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rows = {}
    for name in names:
        ts = sorted(times[name])
        rows[name] = {"ms_median": 1e3 * statistics.median(ts), "ms_min": 1e3 * ts[0],
                      "cpu_ms_median": 1e3 * statistics.median(cpu_times[name]),
                      "ms_p90": 1e3 * ts[int(0.9 * (len(ts) - 1))], "steps": len(ts),
                      "page_faults_per_step": statistics.median(faults[name])}
    return {"family": family, "batch": batch, "threads": threads, "rows": rows,
            "load_start": start_load, "load_end": loadavg(), "cpu_pressure_start": start_psi,
            "cpu_pressure_end": cpu_pressure(), "cpu_seconds_per_wall_second": cpu / wall, "blas": blas}


def measure_memory(name: str, batch: int, threads: int, seed: int, steps: int = 30) -> dict:
    """Peak resident memory of one variant while training (its own process)."""
    import gc
    import tracemalloc

    from threadpoolctl import threadpool_limits

    variant = VARIANTS[name]
    _prepare_libraries(variant.family, threads)
    with threadpool_limits(limits=threads):
        gc.collect()
        base = _status_mb("VmRSS")
        reset = _reset_peak_rss()
        step = variant.build(batch, seed)
        for _ in range(steps):
            step()
        peak = _status_mb("VmHWM")
        traced = None
        if variant.family != "torch":  # NumPy reports its buffers to tracemalloc; PyTorch does not
            tracemalloc.start()
            step()
            traced = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    return {"variant": name, "batch": batch, "threads": threads, "baseline_rss_mb": base,
            "train_peak_mb": (peak - base) if reset else None, "process_peak_mb": peak if reset else None,
            "numpy_peak_mb": traced}


# ----------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------
def machine() -> dict:
    info: dict = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        info["cpu"] = fields.get("model name", info["cpu"])
        info["vendor"] = fields.get("vendor_id")
        info["family_model_stepping"] = [fields.get("cpu family"), fields.get("model"), fields.get("stepping")]
        flags = fields.get("flags", "").split()
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
        info["hypervisor"] = "hypervisor" in flags
        cores = {line.split(":")[1].strip() for line in text.splitlines() if line.startswith("core id")}
        info["physical_cores"] = len(cores) or None
    except OSError:
        pass
    info["platform"] = platform.platform()
    info["environment"] = {k: v for k, v in os.environ.items()
                           if k.startswith(("OPENBLAS_", "MALLOC_", "OMP_", "MKL_", "NUMBA_", "MINIVAE_"))}
    return info


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "minivae", "torch", "autograd", "numba", "threadpoolctl"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "installed")
        except ImportError:
            out[mod] = None
    try:
        import torch

        out["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        pass
    return out


def available(family: str) -> bool:
    module = {"torch": "torch", "autograd": "autograd"}.get(family)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ----------------------------------------------------------------------------
# the parent: round-robin children, then the tables
# ----------------------------------------------------------------------------
def _child(args: argparse.Namespace, extra: list[str], threads: int) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    cmd = [sys.executable, os.path.abspath(__file__), *extra, "--seed", str(args.seed)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  child {' '.join(extra)} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(children: list[dict], names: list[str], batches: list[int], thread_counts: list[int]) -> list[dict]:
    """One row per (threads, batch, variant): median over rounds, and per-round ratios' medians."""
    rows = []
    for threads in thread_counts:
        for batch in batches:
            rounds: dict[int, dict[str, dict]] = {}
            for c in children:
                if c["batch"] == batch and c["threads"] == threads:
                    rounds.setdefault(c["round"], {}).update(c["rows"])
            for name in names:
                per_round = [r[name] for r in rounds.values() if name in r]
                if not per_round:
                    continue
                twin = TORCH_TWIN.get(name)
                limit = FAMILY_LIMIT.get(VARIANTS[name].family)
                vs_torch = [r[name]["ms_median"] / r[twin]["ms_median"] for r in rounds.values()
                            if name in r and twin in r]
                vs_limit = [r[name]["ms_median"] / r[limit]["ms_median"] for r in rounds.values()
                            if name in r and limit in r and name != limit]
                cpu_vs_torch = [r[name]["cpu_ms_median"] / r[twin]["cpu_ms_median"] for r in rounds.values()
                                if name in r and twin in r]
                rows.append({
                    "variant": name, "label": VARIANTS[name].label, "batch": batch, "threads": threads,
                    "ms_median": _median([p["ms_median"] for p in per_round]),
                    "ms_round_medians": [p["ms_median"] for p in per_round],
                    "ms_min": min(p["ms_min"] for p in per_round),
                    "cpu_ms_median": _median([p["cpu_ms_median"] for p in per_round]),
                    "cpu_vs_torch": _median(cpu_vs_torch),
                    "page_faults_per_step": _median([p["page_faults_per_step"] for p in per_round]),
                    "torch_twin": twin if vs_torch else None, "vs_torch": _median(vs_torch),
                    "vs_torch_rounds": vs_torch,
                    "limit": limit if vs_limit else None, "vs_limit": _median(vs_limit), "vs_limit_rounds": vs_limit,
                })
    return rows


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def print_tables(rows: list[dict], memory: list[dict], header: str) -> list[str]:
    print(header)
    for threads in sorted({r["threads"] for r in rows}):
        for batch in sorted({r["batch"] for r in rows}):
            group = [r for r in rows if r["threads"] == threads and r["batch"] == batch]
            if not group:
                continue
            limit = next((r["ms_median"] for r in group if r["variant"] == "matmul-limit"), None)
            print(f"\n{threads} thread(s), batch {batch}" + (f"  (matrix-product limit, NumPy BLAS: {limit:.2f} ms)" if limit else ""))
            print(f"  {'variant':<24} {'ms/step':>8} {'min':>7} {'vs torch':>9} {'vs limit':>9} {'faults':>7}"
                  f" {'cpu ms':>8} {'cpu vs torch':>12}")
            for r in group:
                print(f"  {r['variant']:<24} {r['ms_median']:>8.2f} {r['ms_min']:>7.2f} {_fmt(r['vs_torch']):>9} "
                      f"{_fmt(r['vs_limit']):>9} {r['page_faults_per_step']:>7.0f} {r['cpu_ms_median']:>8.2f}"
                      f" {_fmt(r['cpu_vs_torch']):>12}")
    if memory:
        print("\nmemory (largest thread count): train peak MB above the pre-model baseline / whole-process peak MB")
        for batch in sorted({m["batch"] for m in memory}):
            parts = [f"{m['variant']} {_fmt(m['train_peak_mb'], '.0f', '')}/{_fmt(m['process_peak_mb'], '.0f', '')}"
                     for m in memory if m["batch"] == batch]
            print(f"  batch {batch}: " + ", ".join(parts))
    return check_targets(rows, memory)


def check_targets(rows: list[dict], memory: list[dict]) -> list[str]:
    """The issue's targets, each HOLDS or MISSED with its ratio."""
    lines = []
    for r in rows:
        if r["variant"] in ("minivae-user-sgd", "minivae-user-adam", "minivae-seq-adam", "minivae-seq-sgd"):
            optimizer = r["variant"].rsplit("-", 1)[-1]
            want = (TARGET_VS_TORCH if r["threads"] != 1
                    else TARGET_VS_TORCH_ONE_THREAD.get((optimizer, r["batch"]), TARGET_VS_TORCH))
            if r["vs_torch"] is not None:
                ok = r["vs_torch"] <= want
                lines.append(f"{'HOLDS ' if ok else 'MISSED'} {r['variant']} vs {r['torch_twin']}, batch {r['batch']}, "
                             f"{r['threads']} thread(s): {r['vs_torch']:.2f}x (target <= {want}x)")
            target = TARGET_VS_LIMIT.get(r["batch"]) if r["threads"] != 1 else None
            if r["vs_limit"] is not None and target is not None:
                ok = r["vs_limit"] <= target
                lines.append(f"{'HOLDS ' if ok else 'MISSED'} {r['variant']} vs its five big products, batch {r['batch']}, "
                             f"{r['threads']} thread(s): {r['vs_limit']:.2f}x (target <= {target}x)")
    for batch in sorted({m["batch"] for m in memory}):
        got = {m["variant"]: m["train_peak_mb"] for m in memory if m["batch"] == batch}
        for name, twin in (("minivae-user-adam", "torch-user-adam"), ("minivae-user-sgd", "torch-user-sgd")):
            if got.get(name) is not None and got.get(twin) is not None:
                ok = got[name] <= TARGET_MEMORY_VS_TORCH * got[twin]
                lines.append(f"{'HOLDS ' if ok else 'MISSED'} memory {name} vs {twin}, batch {batch}: "
                             f"{got[name]:.0f} vs {got[twin]:.0f} MB train peak (target <= {TARGET_MEMORY_VS_TORCH}x)")
    print("\ntargets:")
    for line in lines:
        print("  " + line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds of the timing children")
    parser.add_argument("--cycles", type=int, default=10, help="interleaving cycles inside a child")
    parser.add_argument("--block", type=int, default=3, help="steps of one variant per cycle")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--memory", nargs="*", default=None, choices=list(VARIANTS),
                        help="variants whose peak memory is measured (default: those timed, of MEMORY_VARIANTS); "
                             "give the flag alone to skip")
    parser.add_argument("--quick", action="store_true", help="one round of 4 cycles: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child-time", nargs=3, metavar=("FAMILY", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-memory", nargs=3, metavar=("VARIANT", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_time:
        family, batch, threads = args.child_time[0], int(args.child_time[1]), int(args.child_time[2])
        names = [n for n in args.variants if VARIANTS[n].family == family]
        print(json.dumps(time_family(family, names, batch, threads, args.seed, args.warmup, args.cycles, args.block)))
        return 0
    if args.child_memory:
        name, batch, threads = args.child_memory[0], int(args.child_memory[1]), int(args.child_memory[2])
        print(json.dumps(measure_memory(name, batch, threads, args.seed)))
        return 0

    if args.quick:
        args.rounds, args.cycles = 1, 4
    names = [n for n in args.variants if available(VARIANTS[n].family)]
    for n in set(args.variants) - set(names):
        print(f"  {n}: {VARIANTS[n].family} is not importable, skipped", file=sys.stderr)
    families = [f for f in ("numpy", "torch", "autograd") if any(VARIANTS[n].family == f for n in names)]
    load_before, psi_before = loadavg(), cpu_pressure()
    started = time.time()

    children = []
    for rnd in range(args.rounds):
        for threads in args.threads:
            for batch in args.batches:
                fams = families if rnd % 2 == 0 else list(reversed(families))
                for family in fams:
                    extra = ["--child-time", family, str(batch), str(threads), "--variants", *names,
                             "--cycles", str(args.cycles), "--block", str(args.block), "--warmup", str(args.warmup)]
                    result = _child(args, extra, threads)
                    if result is not None:
                        result["round"] = rnd
                        children.append(result)
                        print(f"  round {rnd + 1}/{args.rounds}, {threads} thread(s), batch {batch}, {family}: "
                              + ", ".join(f"{n} {r['ms_median']:.2f}" for n, r in result["rows"].items())
                              + f" ms (load {result['load_start']})", file=sys.stderr)

    memory_names = args.memory if args.memory is not None else [n for n in names if n in MEMORY_VARIANTS]
    memory = []
    for batch in args.batches:
        for name in memory_names:
            if not available(VARIANTS[name].family):
                continue
            result = _child(args, ["--child-memory", name, str(batch), str(max(args.threads))], max(args.threads))
            if result is not None:
                memory.append(result)
    load_after, psi_after = loadavg(), cpu_pressure()

    rows = summarise(children, names, args.batches, args.threads)
    info, vers = machine(), versions()
    blas = next((c["blas"] for c in children if c["family"] == "numpy"), [])
    mine = [b for b in blas if b.get("user_api") == "blas" and b.get("shipped_with", "").startswith("numpy")]
    numpy_blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernel)"
                           for b in mine or [b for b in blas if b.get("user_api") == "blas"])
    header = (f"VAE 784-400-20 training step, float32; {info['cpu']} ({info['usable_cpus']} usable CPUs); "
              f"NumPy BLAS {numpy_blas or '?'}; PyTorch {vers.get('torch')} ({vers.get('torch_blas', '-')}); "
              f"{args.rounds} round(s) x {args.cycles} cycles x {args.block} steps; "
              f"load {load_before} -> {load_after}")
    targets = print_tables(rows, memory, header)
    if args.json:
        payload = {"benchmark": "cpu_step", "date": time.strftime("%Y-%m-%d"), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                   "seconds": round(time.time() - started, 1), "threads": args.threads, "batches": args.batches,
                   "rounds": args.rounds, "cycles": args.cycles, "block": args.block,
                   "loadavg_before": load_before, "loadavg_after": load_after,
                   "cpu_pressure_before": psi_before, "cpu_pressure_after": psi_after,
                   "machine": info, "numpy_blas": blas, "versions": vers, "results": rows, "memory": memory,
                   "targets": targets, "children": children}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
