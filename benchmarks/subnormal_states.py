"""How many optimizer states sit on subnormal numbers as the demo trains, and what a step costs.

Round four of issue 24 (benchmarks/README.md): the weights of dead ReLU units get a gradient
of exactly 0, their Adam moments decay and, without ``flush_subnormal`` (kernels/formulas.py),
stop on a subnormal fixed point, which x86 computes on ~100x slower. This steps the demo's
model (``minivae.cli.train.DEMO``, the trainer's ``training_step``, one BLAS thread) in rounds
and prints, per round, the CPU time per step, the share of gradients that are exactly 0 and
the share of m and v entries that are subnormal. With the flush the last two columns stay 0
and the step time flat; ``git stash``/an older checkout shows the other case.

    python benchmarks/subnormal_states.py [--rounds 5] [--steps 450]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import profile_demo  # noqa: E402  (the demo's model, optimizer and data, built as the trainer builds them)


def subnormal_share(arrays) -> float:
    values = np.concatenate([np.asarray(a).ravel() for a in arrays])
    tiny = np.finfo(values.dtype).tiny
    return float(np.mean((values != 0) & (np.abs(values) < tiny)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=450, help="steps per round (450 = 10 demo epochs)")
    args = parser.parse_args(argv)
    from minivae.training.trainer import blas_threads, training_step

    model, opt, train, rng, batch = profile_demo.build()
    xs = [train.x[i * batch:(i + 1) * batch] for i in range(len(train) // batch)]
    print("round  steps so far  cpu us/step  zero grads  subnormal m  subnormal v")
    with blas_threads(1):
        for r in range(args.rounds):
            started = time.process_time()
            for i in range(args.steps):
                training_step(model, opt, xs[i % len(xs)], None, rng)
            per_step = (time.process_time() - started) / args.steps * 1e6
            grads = np.concatenate([p.grad.ravel() for p in model.parameters()])
            print(f"{r:5d}  {(r + 1) * args.steps:12d}  {per_step:11.0f}  {np.mean(grads == 0):10.3f}  "
                  f"{subnormal_share(opt.m):11.4f}  {subnormal_share(opt.v):11.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
