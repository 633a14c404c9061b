"""Where the time of one minivae VAE training step goes, beyond its matrix products.

Builds the step of ``cpu_step.py`` (default: the user spelling with Adam) and reports, over
``--steps`` steps after a warm-up:

1. phases: forward (the loss), backward, optimizer, each with its wall time and the page
   faults it took (``ru_minflt``: a fault per fresh 4 KiB page of a newly allocated array);
2. per node: the forward time attributed to each op (the time from the previous node's
   creation to this one's, so Python between nodes counts to the next node) and the time
   inside each node's backward function; what the backward loop spends outside the nodes'
   functions is the engine's own overhead (graph walk, gradient bookkeeping);
3. per provider method: the time inside each compiled-provider call (matmul = BLAS), so
   ``total - matmul`` is what the step spends beyond its products;
4. the five big matrix products alone (``cpu_step.build_matmul_limit``), same process;
5. with ``--cprofile``: the functions with the most own time (cProfile).

The timers add a few microseconds per node; the phase times are measured in separate
steps without them. On a shared machine read the minimum columns (the least-disturbed step).

Run:  python benchmarks/profile_step.py [--batch 1024] [--threads 1] [--spelling user|sequential|sliced]
      [--optimizer adam|sgd] [--steps 40] [--clock wall|cpu] [--cprofile] [--json out.json]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import pstats
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the clock of every timer here (--clock cpu: this thread's CPU time, which a busy machine disturbs
#: much less than wall time; only meaningful with one BLAS thread, which runs in the calling thread)
now = time.perf_counter


def _load_cpu_step():
    spec = importlib.util.spec_from_file_location("cpu_step", HERE / "cpu_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"min": values[0], "median": statistics.median(values), "mean": sum(values) / len(values)}


def phase_times(model, opt, x, steps: int) -> dict:
    """Wall time and page faults of forward / backward / optimizer, per step."""
    out = {k: [] for k in ("forward", "backward", "optimizer", "step")}
    faults = {k: [] for k in ("forward", "backward", "optimizer")}
    for _ in range(steps):
        f0, t0 = _faults(), now()
        opt.zero_grad()
        loss = model.loss(x)
        f1, t1 = _faults(), now()
        loss.backward()
        f2, t2 = _faults(), now()
        opt.step()
        f3, t3 = _faults(), now()
        loss.item()
        for key, dt in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2), ("step", t3 - t0)):
            out[key].append(1e3 * dt)
        for key, df in (("forward", f1 - f0), ("backward", f2 - f1), ("optimizer", f3 - f2)):
            faults[key].append(df)
    return {k: {**_summary(v), "faults_median": statistics.median(faults[k]) if k in faults else None}
            for k, v in out.items()}


class NodeTimer:
    """Patch Tensor.from_op so every node's forward segment and backward call are timed."""

    def __init__(self):
        from minivae.tensor import Tensor

        self.Tensor = Tensor
        self.original = Tensor.__dict__["from_op"]
        self.forward = defaultdict(float)
        self.backward = defaultdict(float)
        self.count = defaultdict(int)
        self.last = now()

    def __enter__(self):
        timer, original = self, self.original.__func__

        def timed_backward(fn, op):
            def run(g):
                t0 = now()
                result = fn(g)
                timer.backward[op] += now() - t0
                return result
            return run

        def from_op(cls, data, parents, backward, op, stochastic=False):
            t = now()
            timer.forward[op] += t - timer.last
            timer.count[op] += 1
            out = original(cls, data, parents, timed_backward(backward, op), op, stochastic)
            timer.last = now()
            return out

        self.Tensor.from_op = classmethod(from_op)
        return self

    def mark(self):
        self.last = now()

    def __exit__(self, *exc):
        self.Tensor.from_op = self.original


class ProviderTimer:
    """Wrap every public method of the CPU provider instance with a timer."""

    def __init__(self):
        import numpy as np

        self.provider = None
        try:
            from minivae.providers import provider_for

            self.provider = provider_for(np.zeros((2, 2), np.float32))
        except ImportError:
            from minivae.providers import backend

            self.provider = backend.fast_path(np.zeros((2, 2), np.float32))
        self.time = defaultdict(float)
        self.calls = defaultdict(int)
        self.names = [] if self.provider is None else [
            n for n in dir(type(self.provider)) if not n.startswith("_") and callable(getattr(self.provider, n))]

    def __enter__(self):
        for name in self.names:
            fn = getattr(self.provider, name)

            def timed(*args, _fn=fn, _name=name, **kwargs):
                t0 = now()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    self.time[_name] += now() - t0
                    self.calls[_name] += 1

            setattr(self.provider, name, timed)
        return self

    def __exit__(self, *exc):
        for name in self.names:
            self.provider.__dict__.pop(name, None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spelling", default="user", choices=("user", "sequential", "sliced"))
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    parser.add_argument("--kernels", default="auto", choices=("auto", "custom", "reference"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    global now
    now = time.thread_time if args.clock == "cpu" else time.perf_counter

    from threadpoolctl import threadpool_limits

    cpu_step = _load_cpu_step()
    cpu_step.set_kernel_set(args.kernels)
    report: dict = {"clock": args.clock, "batch": args.batch, "threads": args.threads, "spelling": args.spelling,
                    "optimizer": args.optimizer, "kernels": args.kernels, "machine": cpu_step.machine(),
                    "load_start": cpu_step.loadavg()}
    with threadpool_limits(args.threads):
        import minivae as mv

        step, model = cpu_step.build_minivae(args.batch, 0, return_model=True, spelling=args.spelling,
                                             optimizer=args.optimizer)
        opt_cls = mv.optim.Adam if args.optimizer == "adam" else mv.optim.SGD
        opt = opt_cls(model.parameters(), lr=cpu_step.LR)
        import numpy as np

        x = mv.tensor(np.random.default_rng(0).random((args.batch, cpu_step.D_IN), dtype=np.float32))
        limit = cpu_step.build_matmul_limit(args.batch, 0)
        for _ in range(5):
            step()
            limit()

        # 1 + 4: phases and the product limit, interleaved step by step
        phases = phase_times(model, opt, x, 3)  # warm the new optimizer's state
        limit_ms, phase_runs = [], []
        for _ in range(args.steps):
            t0 = now()
            limit()
            limit_ms.append(1e3 * (now() - t0))
            phase_runs.append(phase_times(model, opt, x, 1))
        phases = {k: {"min": min(r[k]["min"] for r in phase_runs),
                      "median": statistics.median(r[k]["median"] for r in phase_runs),
                      "faults_median": statistics.median(r[k]["faults_median"] for r in phase_runs)
                      if phase_runs[0][k]["faults_median"] is not None else None}
                  for k in phase_runs[0]}
        report["phases_ms"] = phases
        report["matmul_limit_ms"] = _summary(limit_ms)

        # 2 + 3: per node and per provider method (timers on)
        node_timer, prov_timer = NodeTimer(), ProviderTimer()
        backward_total = 0.0
        with node_timer, prov_timer:
            for _ in range(args.steps):
                opt.zero_grad()
                node_timer.mark()
                loss = model.loss(x)
                t0 = now()
                loss.backward()
                backward_total += now() - t0
                opt.step()
        n = args.steps
        nodes = sorted(set(node_timer.forward) | set(node_timer.backward),
                       key=lambda op: -(node_timer.forward[op] + node_timer.backward[op]))
        report["nodes"] = {op: {"per_step": node_timer.count[op] / n, "forward_ms": 1e3 * node_timer.forward[op] / n,
                                "backward_ms": 1e3 * node_timer.backward[op] / n} for op in nodes}
        inside = sum(node_timer.backward.values())
        report["backward_engine_overhead_ms"] = 1e3 * (backward_total - inside) / n
        report["backward_total_ms"] = 1e3 * backward_total / n
        report["provider"] = {name: {"ms": 1e3 * prov_timer.time[name] / n, "calls": prov_timer.calls[name] / n}
                              for name in sorted(prov_timer.time, key=lambda k: -prov_timer.time[k])}

        if args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.steps):
                step()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            report["cprofile_top"] = text.getvalue()
    report["load_end"] = cpu_step.loadavg()

    m = report["machine"]
    print(f"{args.spelling} spelling, {args.optimizer}, batch {args.batch}, {args.threads} thread(s), {args.clock} clock, kernels "
          f"{args.kernels}; {m['cpu']}, {m['usable_cpus']} CPUs; load {report['load_start']} -> {report['load_end']}")
    print(f"{'phase':<10} {'min ms':>8} {'median ms':>10} {'faults':>7}")
    for k, v in phases.items():
        faults = "" if v["faults_median"] is None else f"{v['faults_median']:.0f}"
        print(f"{k:<10} {v['min']:>8.2f} {v['median']:>10.2f} {faults:>7}")
    lim = report["matmul_limit_ms"]
    print(f"{'products':<10} {lim['min']:>8.2f} {lim['median']:>10.2f}   (the five big products alone)")
    print(f"\n{'node':<26} {'/step':>5} {'fwd ms':>8} {'bwd ms':>8}   (timers on; mean per step)")
    for op, v in report["nodes"].items():
        print(f"{op:<26} {v['per_step']:>5.0f} {v['forward_ms']:>8.3f} {v['backward_ms']:>8.3f}")
    print(f"backward loop outside the nodes' functions: {report['backward_engine_overhead_ms']:.3f} ms "
          f"of {report['backward_total_ms']:.3f} ms")
    if report["provider"]:
        print(f"\n{'provider method':<26} {'calls':>5} {'ms':>8}")
        for name, v in report["provider"].items():
            print(f"{name:<26} {v['calls']:>5.0f} {v['ms']:>8.3f}")
    if args.cprofile:
        print(report["cprofile_top"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
