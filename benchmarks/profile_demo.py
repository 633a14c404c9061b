"""Where a small-batch step of ``minivae demo`` spends its Python: cProfile per step.

The demo's model and optimizer (``minivae.cli.models.DEMO``: a VAE 64-256-128-2 on the 8x8
digits, batch 32, Adam), stepped exactly as the trainer steps it (``training_step`` and the
four ``.item()`` reads after it), under cProfile. It prints, per training step, the number
of Python function calls (a count: the same on a busy and a quiet machine), the profile's
time, and the functions with the most own time (calls per step, microseconds per call),
then the same split by phase: forward nodes, backward closures, the optimizer. Times under
cProfile are inflated about 2x by its own bookkeeping; compare them with each other, not
with ``torch_demo.py``.

    python benchmarks/profile_demo.py --steps 300 --out benchmarks/results/profile_demo-DATE.txt
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pathlib
import pstats
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build(seed: int = 0):
    from minivae.cli.models import DEMO
    from minivae.models import build_model
    from minivae.optim import Adam
    from minivae.random import Generator
    from minivae.training.config import TrainConfig
    from minivae.training.trainer import load_data

    config = TrainConfig(**DEMO, epochs=1, seed=seed)
    train, _ = load_data(config)
    root = Generator(seed)
    init_rng, rng = root.spawn(), root.spawn()
    model = build_model(config.model, train.dim, config.latent, config.hidden, init_rng,
                        num_classes=train.num_classes, **config.model_kwargs(1))
    return model, Adam(model.parameters(), lr=config.lr), train, rng, config.batch_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=pathlib.Path, help="also write the report here")
    args = parser.parse_args(argv)

    from minivae.training.trainer import blas_threads, training_step

    model, opt, train, rng, batch = build()
    xs = [train.x[i * batch:(i + 1) * batch] for i in range(len(train) // batch)]
    ys = [None] * len(xs)

    def steps(n: int) -> None:
        for i in range(n):
            out = training_step(model, opt, xs[i % len(xs)], ys[i % len(xs)], rng)
            for t in out.values():
                t.item()

    with blas_threads(1):
        steps(20)  # compile, warm the arena
        wall = time.perf_counter()
        steps(args.steps)
        wall = (time.perf_counter() - wall) / args.steps
        profile = cProfile.Profile()
        profile.enable()
        steps(args.steps)
        profile.disable()
    stats = pstats.Stats(profile)
    calls = stats.total_calls / args.steps
    lines = [f"minivae demo step (batch {batch}, {len(model.parameters())} parameters), {args.steps} steps, one BLAS "
             f"thread, load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"wall time per step without the profiler: {wall * 1e6:.0f} us",
             f"Python function calls per step: {calls:.0f}; profiled time per step: "
             f"{stats.total_tt / args.steps * 1e6:.0f} us", "",
             f"{'calls/step':>10} {'own us/call':>11} {'own us/step':>11} {'cum us/step':>11}  function"]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])
    for (path, line, name), (cc, nc, tt, ct, _) in rows[: args.top]:
        where = f"{pathlib.Path(path).name}:{line}" if line else path
        lines.append(f"{nc / args.steps:10.1f} {tt / nc * 1e6:11.2f} {tt / args.steps * 1e6:11.1f} "
                     f"{ct / args.steps * 1e6:11.1f}  {name} ({where})")
    lines.append("")
    phases = {"forward (model.loss)": ("loss", "models"), "backward (Tensor.backward)": ("backward", "tensor.py"),
              "optimizer (Optimizer.step)": ("step", "optim.py")}
    for label, (name, file) in phases.items():
        hits = [(nc, ct) for (path, _, fn), (_, nc, _, ct, _) in rows if fn == name and file in path]
        if hits:
            nc, ct = max(hits, key=lambda h: h[1])
            lines.append(f"{label}: {ct / args.steps * 1e6:.0f} us per step (profiled, cumulative), "
                         f"{nc / args.steps:.0f} call(s) per step")
    report = "\n".join(lines)
    if args.out:
        args.out.write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
