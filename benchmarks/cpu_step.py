"""Time one training step of an MLP VAE on the CPU: minivae vs its peers, in one run.

Model: 784-400-20 VAE (encoder 784 -> 400 ReLU -> 2x20 (mu, logvar); decoder
20 -> 400 ReLU -> 784 logits), Bernoulli decoder (BCE-with-logits summed over
pixels) + analytic KL, mean over the batch, Adam, float32. One step = forward,
backward, optimizer update, with fresh Gaussian noise.

Implementations, each timed in its own subprocess (so peak memory is its own):
- ``minivae``      : the engine, as a user writes the model (nn.Linear, Normal, losses)
- ``numpy-floor``  : a hand-written NumPy forward/backward of the same step, the floor
                     for any NumPy-based engine
- ``torch``        : PyTorch eager on the CPU (when importable)
- ``autograd``     : HIPS autograd (when importable)

All use the same thread count (``--threads``, default: all cores) for BLAS and
PyTorch. Data are uniform [0, 1] pixels (no download needed); the time of a step
does not depend on the values. Run:  python benchmarks/cpu_step.py [--json out.json]
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
IMPLEMENTATIONS = ("minivae", "numpy-floor", "torch", "autograd")


# ----------------------------------------------------------------------------
# the step, four ways; each builder returns a zero-argument step function
# ----------------------------------------------------------------------------
def build_minivae(batch: int, seed: int):
    import numpy as np

    import minivae as mv
    from minivae import nn

    rng = mv.random.Generator(seed)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_hidden = nn.Linear(D_IN, D_HID, rng=rng)
            self.enc_out = nn.Linear(D_HID, 2 * D_Z, rng=rng, init="xavier")
            self.dec_hidden = nn.Linear(D_Z, D_HID, rng=rng)
            self.dec_out = nn.Linear(D_HID, D_IN, rng=rng, init="xavier")

        def loss(self, x):
            h = self.enc_out(mv.relu(self.enc_hidden(x)))
            q = mv.Normal(h[:, :D_Z], h[:, D_Z:])
            z = q.rsample(rng=rng)
            logits = self.dec_out(mv.relu(self.dec_hidden(z)))
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


BUILDERS = {"minivae": build_minivae, "numpy-floor": build_numpy_floor, "torch": build_torch, "autograd": build_autograd}


# ----------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure_one(name: str, batch: int, steps: int, warmup: int, threads: int, seed: int) -> dict:
    """Run inside a fresh process: build, warm up, time ``steps`` steps."""
    if name == "torch":
        import torch

        torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        step = BUILDERS[name](batch, seed)
        base = peak_rss_mb()
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    times.sort()
    return {
        "impl": name,
        "batch": batch,
        "ms_per_step_median": 1e3 * times[len(times) // 2],
        "ms_per_step_mean": 1e3 * sum(times) / len(times),
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_growth_mb": peak_rss_mb() - base,
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
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = measure_one(args.child[0], int(args.child[1]), args.steps, args.warmup, args.threads, args.seed)
        print(json.dumps(result))
        return 0

    results = []
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
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"VAE 784-400-20 training step, float32, {args.threads} threads, median of {args.steps} steps")
    print(f"{'batch':>6}  {'implementation':<14} {'ms/step':>9} {'vs floor':>9} {'vs torch':>9} {'peak RSS MB':>12}")
    for batch in args.batches:
        rows = {r["impl"]: r for r in results if r["batch"] == batch}
        floor = rows.get("numpy-floor", {}).get("ms_per_step_median")
        torch_ms = rows.get("torch", {}).get("ms_per_step_median")
        for name in args.impls:
            if name not in rows:
                continue
            ms = rows[name]["ms_per_step_median"]
            vs_floor = f"{ms / floor:.2f}x" if floor else "-"
            vs_torch = f"{ms / torch_ms:.2f}x" if torch_ms else "-"
            print(f"{batch:>6}  {name:<14} {ms:>9.2f} {vs_floor:>9} {vs_torch:>9} {rows[name]['peak_rss_mb']:>12.0f}")
    if args.json:
        payload = {"benchmark": "cpu_step", "date": time.strftime("%Y-%m-%d"), "threads": args.threads,
                   "machine": machine(), "versions": versions(), "results": results}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
