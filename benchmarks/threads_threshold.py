"""Where splitting a CPU loop across threads starts to pay: the ``MIN_PIECE`` of kernels/threads.py.

For each loop a training step runs (the BCE forward and gradient, the ReLU backward with
and without its bias gradient, Adam and SGD over a parameter list) and each size from 2^12
to 2^21 float32 elements, it times the loop done as one piece on one thread and cut in two
pieces on two threads, interleaved, best of ``--repeats`` (minimum: the least disturbed
run), and prints the speed-up; the threshold is the smallest size from which two threads
win by at least 10% for every loop. Run it on a quiet machine:

    python benchmarks/threads_threshold.py --json benchmarks/results/threads_threshold-DATE.json

Between the loops each call runs a 512x512 matrix product, so BLAS's threads are as awake
as in a step (OpenBLAS's workers spin for a while after a product).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import threadpoolctl  # noqa: E402

import minivae.kernels.cpu as kc  # noqa: E402
import minivae.kernels.threads as kt  # noqa: E402
from minivae.providers.cpu import PROVIDER  # noqa: E402


def _cases(elements: int, rng: np.random.Generator) -> dict:
    cols = 784 if elements >= 784 * 8 else 64
    rows = max(1, elements // cols)
    f = np.float32
    logits, target = rng.standard_normal((rows, cols)).astype(f), rng.uniform(0, 1, (rows, cols)).astype(f)
    g, y = rng.standard_normal((rows, cols)).astype(f), np.maximum(rng.standard_normal((rows, cols)), 0).astype(f)
    out, bias = np.empty_like(g), np.empty(cols, f)
    e = np.exp(-np.abs(logits))
    grad_rows = np.zeros(rows, f)  # e is overwritten in place: with g = 0 it stays 0 (no denormals, no NaN)
    params = [rng.standard_normal(s).astype(f) for s in ((rows, cols), (cols,))]
    grads = [rng.standard_normal(p.shape).astype(f) * 1e-3 for p in params]
    ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    return {
        "bce forward": lambda: PROVIDER.bce_logits(logits, target),
        "bce row sums": lambda: PROVIDER.bce_logits_row_sums(logits, target),
        "bce gradient": lambda: kc.bce_logits_backward_saved(logits, target, e, grad_rows=grad_rows),
        "relu backward": lambda: kc.relu_backward(g, y, out),
        "relu backward + bias": lambda: kc.relu_backward_bias(g, y, out, bias),
        "adam foreach": lambda: kc.adam_foreach(params, grads, ms, vs, 1e-3, 0.9, 0.999, 1e-8, 1, 0.0),
        "sgd foreach": lambda: kc.sgd_foreach(params, grads, params, np.zeros(2, bool), 1e-5, 0.0, 0.0),
    }


def _time(fn, threads: int, pieces_floor: int, repeats: int, a: np.ndarray) -> float:
    best = float("inf")
    saved = kt.MIN_PIECE
    kt.MIN_PIECE = pieces_floor
    try:
        with threadpoolctl.threadpool_limits(threads):
            for _ in range(repeats):
                a @ a  # BLAS's threads awake, as between a step's products
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
    finally:
        kt.MIN_PIECE = saved
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=pathlib.Path, help="write every figure here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    sizes = [1 << k for k in range(12, 22)]
    rows = []
    for elements in sizes:
        cases = _cases(elements, rng)
        for name, fn in cases.items():
            fn()  # compile / warm
            one = _time(fn, 1, 1 << 40, args.repeats, a)       # one piece, one thread
            two = _time(fn, 2, elements // 2, args.repeats, a)  # two pieces, two threads
            rows.append({"loop": name, "elements": elements, "one_thread_us": one * 1e6, "two_threads_us": two * 1e6,
                         "speedup": one / two})
            print(f"{name:22s} {elements:>8d}  1 thread {one * 1e6:9.1f} us  2 threads {two * 1e6:9.1f} us"
                  f"  speed-up {one / two:5.2f}", flush=True)
    per_loop = {}
    for name in dict.fromkeys(r["loop"] for r in rows):
        wins = [n for n in sizes if all(r["speedup"] >= 1.1 for r in rows if r["loop"] == name and r["elements"] >= n)]
        per_loop[name] = min(wins) if wins else None
        print(f"  {name:22s} two threads win from {per_loop[name]} elements on")
    winning = [n for n in sizes if all(r["speedup"] >= 1.1 for r in rows if r["elements"] >= n)]
    threshold = min(winning) if winning else None
    print(f"two threads win by >= 10% for every loop from {threshold} elements on "
          f"(kernels/threads.py: pieces of at least MIN_PIECE = {kt.MIN_PIECE}, so arrays of >= {2 * kt.MIN_PIECE})")
    if args.json:
        load = os.getloadavg()
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
            "cpus": len(os.sched_getaffinity(0)), "loadavg_after": load, "blas": threadpoolctl.threadpool_info(),
            "repeats": args.repeats, "rows": rows, "threshold_elements": threshold, "per_loop": per_loop, "MIN_PIECE": kt.MIN_PIECE}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
