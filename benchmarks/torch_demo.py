"""``minivae demo``'s training workload in PyTorch, and a side-by-side timing of the two.

The workload of ``minivae demo`` (settings in ``minivae.cli.train.DEMO``): a VAE with a
2-D latent space on the 8x8 digits (the same train/test split, 1437 / 360 images), encoder
64 -> 256 ReLU -> 128 ReLU -> (mu, logvar) of 2, decoder 2 -> 256 ReLU -> 128 ReLU -> 64
logits, Bernoulli likelihood (BCE with logits summed over pixels) + analytic KL, averaged
over the batch; Adam lr 1e-3, batch 32 reshuffled every epoch, 300 epochs (13,500 steps);
after every step the four loss entries (loss, recon, kl, -ELBO) are read as Python floats,
after every epoch the test set is evaluated (batches of 500, no graph) and, every 6th
epoch, the parameters and optimizer state are saved. The PyTorch twin below does all of
that with PyTorch's own idioms (``nn.Linear`` + ``F.relu``, ``torch.randn_like``,
``F.binary_cross_entropy_with_logits``, ``torch.save``).

Three ways to time it, each in a fresh process, interleaved over ``--rounds``:

* ``torch``: the twin's training loop (timer inside the process, after imports and data);
  its CPU time is recorded too (with one thread, a figure a busy machine disturbs less);
* ``minivae``: minivae's ``Trainer`` on the demo settings (the loop ``minivae demo`` runs,
  timer inside the process, without the figures and diagnostics written afterwards);
* ``demo-command``: the whole ``minivae demo --quiet`` command, start-up and figures included
  (wall time of the process, as a user sees it);
* ``torch-ftz``: the twin with ``torch.set_flush_denormal(True)``: Adam's moments of
  weights that get no gradient (dead ReLU units) stop on subnormal numbers, in PyTorch as
  in NumPy, and x86 computes on those ~100x slower; minivae stores such a state as 0
  (``kernels/formulas.py``: ``flush_subnormal``), PyTorch only with this process-wide switch;
* ``products``: the floor of any NumPy engine: every matrix product minivae's trainer makes
  (traced over one epoch: shapes, transposes, dtype) replayed alone for all the epochs,
  with one BLAS thread. If it alone takes more than half the twin's time, the 0.5x target
  cannot be met by an engine whose products are NumPy's.

Threads: minivae's trainer uses one BLAS thread (faster for these small products); the
twin uses ``--torch-threads`` (default 1, the faster setting here; PyTorch's default is one
per core: pass 0 to keep it).

Run:  python benchmarks/torch_demo.py [--rounds 3] [--epochs 300] [--json out.json]
      python benchmarks/torch_demo.py --only torch      (just the twin, printing its time)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENGINES = ("minivae", "torch", "torch-ftz", "demo-command", "products")
SAVE_EVERY_DIVISOR = 50  # the trainer saves about 50 times per run (every epochs // 50 epochs)


def demo_settings(epochs: int | None) -> dict:
    from minivae.cli.train import DEMO, DEMO_EPOCHS

    return {**DEMO, "epochs": DEMO_EPOCHS if epochs is None else epochs}


def load_demo_data(settings: dict):
    """The demo's train and test splits, exactly as the trainer loads them."""
    from minivae.training.config import TrainConfig
    from minivae.training.trainer import load_data

    train, test = load_data(TrainConfig(**settings))
    return train.x, test.x


def run_torch(epochs: int | None, threads: int, seed: int = 0, flush_denormal: bool = False) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    if threads > 0:
        torch.set_num_threads(threads)
    if flush_denormal:  # FTZ/DAZ for the whole process: subnormals read and written as 0
        torch.set_flush_denormal(True)
    settings = demo_settings(epochs)
    train_x, test_x = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in load_demo_data(settings))
    torch.manual_seed(seed)
    hidden, latent, dim = settings["hidden"], settings["latent"], train_x.shape[1]

    def stack(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return layers

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*stack([dim, *hidden]))
            self.mu, self.logvar = nn.Linear(hidden[-1], latent), nn.Linear(hidden[-1], latent)
            self.decoder = nn.Sequential(*stack([latent, *hidden]), nn.Linear(hidden[-1], dim))

        def loss(self, x):
            h = self.body(x)
            mu, logvar = self.mu(h), self.logvar(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = self.decoder(z)
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            kl = 0.5 * (torch.exp(logvar) + mu * mu - 1 - logvar).sum(-1)
            return {"loss": (recon + kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                    "neg_elbo": (recon + kl).mean()}

    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    batch, n_epochs = settings["batch_size"], settings["epochs"]
    save_every = max(1, n_epochs // SAVE_EVERY_DIVISOR)
    history = []
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu_started = time.perf_counter(), time.process_time()
        for epoch in range(1, n_epochs + 1):
            model.train()
            totals: dict[str, float] = {}
            order = torch.randperm(len(train_x))
            for start in range(0, len(train_x), batch):
                xb = train_x[order[start:start + batch]]
                out = model.loss(xb)
                opt.zero_grad()
                out["loss"].backward()
                opt.step()
                for name, t in out.items():
                    totals[name] = totals.get(name, 0.0) + t.item() * len(xb)
            model.eval()
            test: dict[str, float] = {}
            with torch.no_grad():
                for start in range(0, len(test_x), 500):
                    xb = test_x[start:start + 500]
                    for name, t in model.loss(xb).items():
                        test[name] = test.get(name, 0.0) + t.item() * len(xb)
            history.append({"epoch": epoch, "train": {k: v / len(train_x) for k, v in totals.items()},
                            "test": {k: v / len(test_x) for k, v in test.items()}})
            if epoch % save_every == 0 or epoch == n_epochs:
                path = os.path.join(tmp, "checkpoint.pt")
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "history": history}, path + ".tmp")
                os.replace(path + ".tmp", path)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"engine": "torch", "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "epochs": n_epochs, "threads": torch.get_num_threads(),
            "final_test_neg_elbo": history[-1]["test"]["neg_elbo"], "torch": torch.__version__}


def run_minivae(epochs: int | None, seed: int = 0) -> dict:
    from minivae.training.config import TrainConfig
    from minivae.training.trainer import Trainer

    settings = demo_settings(epochs)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(**settings, seed=seed), Path(tmp) / "run", progress=False)
        with trainer:
            started, cpu_started = time.perf_counter(), time.process_time()
            history = trainer.fit()
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"engine": "minivae", "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "epochs": settings["epochs"], "threads": trainer.threads,
            "final_test_neg_elbo": history[-1]["test"]["neg_elbo"]}


def trace_products(settings: dict, seed: int = 0) -> list[tuple]:
    """Every matrix product minivae's trainer makes in one epoch of the demo (training steps
    and the epoch's test evaluation), as (a's shape, b's shape, trans_a, trans_b, dtype)."""
    from minivae.providers.cpu import CpuProvider
    from minivae.training.config import TrainConfig
    from minivae.training.trainer import Trainer

    calls: list[tuple] = []
    original = CpuProvider.matmul

    def recording(self, a, b, *, trans_a=False, trans_b=False, bias=None):
        calls.append((a.shape, b.shape, trans_a, trans_b, a.dtype.str))
        return original(self, a, b, trans_a=trans_a, trans_b=trans_b, bias=bias)

    CpuProvider.matmul = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(TrainConfig(**{**settings, "epochs": 1}, seed=seed), Path(tmp) / "run", progress=False)
            with trainer:
                trainer.fit()
    finally:
        CpuProvider.matmul = original
    return calls


def run_products(epochs: int | None, seed: int = 0) -> dict:
    """The floor of any NumPy engine on this workload: the same matrix products (shapes,
    transposes, dtype; one BLAS thread as the trainer) replayed alone, epoch after epoch,
    into preallocated outputs: no Python graph, no elementwise work, no optimizer."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    settings = demo_settings(epochs)
    calls = trace_products(settings, seed)
    rng = np.random.default_rng(seed)
    operands = []
    for a_shape, b_shape, trans_a, trans_b, dtype in calls:
        a = rng.standard_normal(a_shape).astype(dtype)
        b = rng.standard_normal(b_shape).astype(dtype)
        a, b = (a.T if trans_a else a), (b.T if trans_b else b)
        operands.append((a, b, np.empty((a.shape[0], b.shape[1]), dtype=dtype)))
    with threadpool_limits(1, user_api="blas"):
        for a, b, out in operands:  # warm up: first calls allocate BLAS buffers
            np.matmul(a, b, out=out)
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(settings["epochs"]):
            for a, b, out in operands:
                np.matmul(a, b, out=out)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"engine": "products", "train_seconds": seconds, "train_cpu_seconds": cpu_seconds,
            "epochs": settings["epochs"], "products_per_epoch": len(calls), "threads": 1}


def run_demo_command(epochs: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        # the installed console script (what a user types), run by this interpreter
        cmd = [sys.executable, "-c", "import sys; from minivae.cli import main; sys.exit(main())",
               "demo", "--quiet", "--out", str(Path(tmp) / "demo")]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"minivae demo failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {"engine": "demo-command", "wall_seconds": seconds}


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--torch-threads", type=int, default=1, help="0: PyTorch's default")
    parser.add_argument("--only", choices=ENGINES)
    parser.add_argument("--skip", nargs="*", default=[], choices=ENGINES)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    if args.only:
        if args.only in ("torch", "torch-ftz"):
            result = run_torch(args.epochs, args.torch_threads, flush_denormal=args.only == "torch-ftz")
            result["engine"] = args.only
        elif args.only == "minivae":
            result = run_minivae(args.epochs)
        elif args.only == "products":
            result = run_products(args.epochs)
        else:
            result = run_demo_command(args.epochs)
        print(json.dumps(result))
        return 0

    engines = [e for e in ENGINES if e not in args.skip]
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    load_before = _loadavg()
    for rnd in range(args.rounds):
        for engine in (engines if rnd % 2 == 0 else list(reversed(engines))):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--only", engine,
                   "--torch-threads", str(args.torch_threads)]
            if args.epochs is not None:
                cmd += ["--epochs", str(args.epochs)]
            started, load = time.perf_counter(), _loadavg()
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{engine} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["process_seconds"] = time.perf_counter() - started
            result["load_start"] = load
            runs[engine].append(result)
            shown = result.get("train_seconds", result.get("wall_seconds"))
            print(f"  round {rnd + 1}: {engine} {shown:.1f} s (process {result['process_seconds']:.1f} s, load {load})",
                  file=sys.stderr)

    def med(engine, key):
        values = [r[key] for r in runs.get(engine, []) if key in r]
        return statistics.median(values) if values else None

    mv_s, torch_s, cmd_s = med("minivae", "train_seconds"), med("torch", "train_seconds"), med("demo-command", "wall_seconds")
    products_s = med("products", "train_seconds")
    ftz_s = med("torch-ftz", "train_seconds")
    mv_cpu, torch_cpu = med("minivae", "train_cpu_seconds"), med("torch", "train_cpu_seconds")
    torch_proc = med("torch", "process_seconds")
    print(f"minivae demo workload ({runs.get('minivae', [{}])[0].get('epochs', args.epochs) if runs.get('minivae') else args.epochs} epochs, batch 32), "
          f"median of {args.rounds} round(s); load {load_before} -> {_loadavg()}")
    if mv_s is not None:
        print(f"  minivae Trainer loop:   {mv_s:7.2f} s")
    if torch_s is not None:
        print(f"  PyTorch twin loop:      {torch_s:7.2f} s   (whole process {torch_proc:.2f} s)")
    if cmd_s is not None:
        print(f"  `minivae demo` command: {cmd_s:7.2f} s   (start-up, figures and diagnostics included)")
    if ftz_s is not None:
        print(f"  PyTorch twin, torch.set_flush_denormal(True): {ftz_s:7.2f} s")
    if products_s is not None:
        print(f"  its matrix products alone (NumPy's BLAS, 1 thread): {products_s:7.2f} s")
    if mv_s and torch_s:
        print(f"  training loops, minivae / PyTorch: {mv_s / torch_s:.2f}x (target <= 0.5x); in CPU time "
              f"{mv_cpu:.2f} / {torch_cpu:.2f} s = {mv_cpu / torch_cpu:.2f}x")
    if mv_s and ftz_s:
        print(f"  minivae / PyTorch twin with flush-to-zero: {mv_s / ftz_s:.2f}x")
    if products_s and torch_s:
        floor = products_s / torch_s
        print(f"  products alone / PyTorch twin: {floor:.2f}x: the floor of any NumPy engine here "
              f"({'the 0.5x target is out of reach: the products alone exceed it' if floor > 0.5 else 'below the 0.5x target'})")
        if mv_s:
            print(f"  minivae loop / its products alone: {mv_s / products_s:.2f}x")
    if cmd_s and torch_proc:
        print(f"  whole command / whole PyTorch process: {cmd_s / torch_proc:.2f}x")
    if args.json:
        payload = {"benchmark": "demo_vs_torch", "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds,
                   "load_before": load_before, "load_after": _loadavg(), "cpu": platform.processor(),
                   "runs": runs, "median": {"minivae_train_seconds": mv_s, "torch_train_seconds": torch_s,
                                            "minivae_train_cpu_seconds": mv_cpu, "torch_train_cpu_seconds": torch_cpu,
                                            "torch_process_seconds": torch_proc, "demo_command_seconds": cmd_s,
                                            "products_alone_seconds": products_s, "torch_ftz_train_seconds": ftz_s}}
        tmp = args.json + ".tmp"
        Path(tmp).write_text(json.dumps(payload, indent=1))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
