"""Time one training step of an MLP VAE on the CPU: minivae vs its peers, in one run.

Model: 784-400-20 VAE (encoder 784 -> 400 ReLU -> 2x20 (mu, logvar); decoder
20 -> 400 ReLU -> 784 logits), Bernoulli decoder (BCE-with-logits summed over
pixels) + analytic KL, mean over the batch, Adam, float32. One step = forward,
backward, optimizer update, with fresh Gaussian noise.

Implementations, each timed in its own subprocess (so peak memory is its own):
- ``minivae-custom``    : the engine, as a user writes the model (nn.Linear with a fused
                          ReLU, Normal, losses), with the CPU provider (``set_kernels("custom")``,
                          which is what ``"auto"`` picks on the CPU)
- ``minivae-reference`` : the same model on the plain reference code (``set_kernels("reference")``)
- ``numpy-floor``  : a hand-written NumPy forward/backward of the same step, the floor
                     for any NumPy-based engine
- ``torch``        : PyTorch eager on the CPU (when importable)
- ``autograd``     : HIPS autograd (when importable)

All use the same thread count (``--threads``, default: all cores) for BLAS and
PyTorch. Data are uniform [0, 1] pixels (no download needed); the time of a step
does not depend on the values.

Memory, per implementation: ``train_peak_mb`` is the peak resident memory during the
timed steps above the resident memory before the model was built (the kernel's peak
counter is reset there through /proc/self/clear_refs), so library import footprints
(PyTorch's is ~300 MB) do not count; ``tracemalloc_peak_mb`` (NumPy-based paths only) is
the peak of live NumPy buffers over one extra step, measured after timing.

Run:  python benchmarks/cpu_step.py [--json out.json] [--repeats 3]
With ``--repeats`` the implementations are run round-robin that many times and the
median of the medians is reported (the machine may be shared: /proc/loadavg is
recorded before and after). Compare runs only with the same environment: NumPy's
OpenBLAS kernel (recorded via threadpoolctl) depends on OPENBLAS_CORETYPE, and glibc's
malloc settings (MALLOC_*_ variables, recorded too) change how much time page faults take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

D_IN, D_HID, D_Z = 784, 400, 20
IMPLEMENTATIONS = ("minivae-custom", "minivae-reference", "numpy-floor", "torch", "autograd")


# ----------------------------------------------------------------------------
# the step, four ways; each builder returns a zero-argument step function
# ----------------------------------------------------------------------------
def build_minivae(batch: int, seed: int, return_model: bool = False):
    import numpy as np

    import minivae as mv
    from minivae import nn

    rng = mv.random.Generator(seed)

    class VAE(nn.Module):
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

    model = VAE()
    opt = mv.optim.Adam(model.parameters(), lr=1e-3)
    x = mv.tensor(np.random.default_rng(seed).random((batch, D_IN), dtype=np.float32))

    def step():
        opt.zero_grad()
        loss = model.loss(x)
        loss.backward()
        opt.step()
        return loss.item()

    return (step, model) if return_model else step


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


def build_torch(batch: int, seed: int):
    import torch

    torch.manual_seed(seed)
    enc_h, enc_o = torch.nn.Linear(D_IN, D_HID), torch.nn.Linear(D_HID, 2 * D_Z)
    dec_h, dec_o = torch.nn.Linear(D_Z, D_HID), torch.nn.Linear(D_HID, D_IN)
    params = [p for layer in (enc_h, enc_o, dec_h, dec_o) for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.rand(batch, D_IN)

    def step():
        opt.zero_grad(set_to_none=True)
        h = enc_o(torch.relu(enc_h(x)))
        mu, lv = h[:, :D_Z], h[:, D_Z:]
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        logits = dec_o(torch.relu(dec_h(z)))
        rec = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * torch.sum(torch.exp(lv) + mu * mu - 1 - lv)
        loss = (rec + kl) / batch
        loss.backward()
        opt.step()
        return loss.item()

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


BUILDERS = {"minivae-custom": build_minivae, "minivae-reference": build_minivae, "numpy-floor": build_numpy_floor, "torch": build_torch, "autograd": build_autograd}


# ----------------------------------------------------------------------------
# measuring
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


def measure_one(name: str, batch: int, steps: int, warmup: int, threads: int, seed: int) -> dict:
    """Run inside a fresh process: build, warm up, time ``steps`` steps."""
    import gc
    import tracemalloc

    if name == "torch":
        import torch

        torch.set_num_threads(threads)
    if name.startswith("minivae"):
        from minivae import backend

        backend.set_kernels(name.split("-", 1)[1])
        if name == "minivae-custom":  # load numba (its import is ~100 MB) before the baseline, like torch's
            import minivae.providers.cpu  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=threads):
        gc.collect()
        base = _status_mb("VmRSS")
        reset = _reset_peak_rss()
        step = BUILDERS[name](batch, seed)
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        peak = _status_mb("VmHWM")
        traced = None
        if name != "torch":  # NumPy reports its buffers to tracemalloc; PyTorch does not
            tracemalloc.start()
            step()
            traced = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        blas = [{k: i.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
                for i in threadpool_info() if i.get("user_api") == "blas"]
    times.sort()
    return {
        "impl": name,
        "batch": batch,
        "ms_per_step_median": 1e3 * times[len(times) // 2],
        "ms_per_step_mean": 1e3 * sum(times) / len(times),
        "ms_per_step_min": 1e3 * times[0],
        "train_peak_mb": (peak - base) if reset else None,
        "tracemalloc_peak_mb": traced,
        "peak_rss_mb": _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "blas": blas,
        "steps": steps,
    }


def available(name: str) -> bool:
    module = {"torch": "torch", "autograd": "autograd"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "minivae", "torch", "autograd", "numba"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "installed")
        except ImportError:
            out[mod] = None
    return out


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
            cpu = names[0] if names else cpu
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "MALLOC_", "OMP_", "MKL_", "NUMBA_"))}
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "environment": env}


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--repeats", type=int, default=1, help="round-robin rounds; the median of the medians is reported")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = measure_one(args.child[0], int(args.child[1]), args.steps, args.warmup, args.threads, args.seed)
        print(json.dumps(result))
        return 0

    load_before = loadavg()
    runs: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.repeats):
        for batch in args.batches:
            for name in args.impls:
                if not available(name):
                    print(f"  {name}: not importable, skipped", file=sys.stderr)
                    continue
                cmd = [sys.executable, __file__, "--child", name, str(batch), "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--threads", str(args.threads), "--seed", str(args.seed)]
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    print(f"  {name} at batch {batch} failed:\n{done.stderr}", file=sys.stderr)
                    continue
                runs.setdefault((batch, name), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    load_after = loadavg()

    results = []
    for (batch, name), rs in runs.items():
        medians = sorted(r["ms_per_step_median"] for r in rs)
        row = dict(rs[0])
        row["ms_per_step_median"] = medians[len(medians) // 2]
        row["ms_per_step_medians"] = medians
        row["train_peak_mb"] = max((r["train_peak_mb"] for r in rs if r["train_peak_mb"] is not None), default=None)
        results.append(row)

    blas = next((r["blas"] for r in results if r["impl"] == "numpy-floor"), None)
    print(f"VAE 784-400-20 training step, float32, {args.threads} threads, median of {args.steps} steps"
          f" x {args.repeats} round(s); NumPy BLAS: {blas}; load {load_before} -> {load_after}")
    print(f"{'batch':>6}  {'implementation':<18} {'ms/step':>9} {'vs floor':>9} {'vs torch':>9} "
          f"{'train peak MB':>14} {'numpy peak MB':>14}")
    for batch in args.batches:
        rows = {r["impl"]: r for r in results if r["batch"] == batch}
        floor = rows.get("numpy-floor", {}).get("ms_per_step_median")
        torch_ms = rows.get("torch", {}).get("ms_per_step_median")
        for name in args.impls:
            if name not in rows:
                continue
            r = rows[name]
            ms = r["ms_per_step_median"]
            vs_floor = f"{ms / floor:.2f}x" if floor else "-"
            vs_torch = f"{ms / torch_ms:.2f}x" if torch_ms else "-"
            train = f"{r['train_peak_mb']:.0f}" if r["train_peak_mb"] is not None else "-"
            traced = f"{r['tracemalloc_peak_mb']:.0f}" if r["tracemalloc_peak_mb"] is not None else "-"
            print(f"{batch:>6}  {name:<18} {ms:>9.2f} {vs_floor:>9} {vs_torch:>9} {train:>14} {traced:>14}")
    if args.json:
        payload = {"benchmark": "cpu_step", "date": time.strftime("%Y-%m-%d"), "threads": args.threads,
                   "repeats": args.repeats, "loadavg_before": load_before, "loadavg_after": load_after,
                   "machine": machine(), "versions": versions(), "results": results}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
