"""The 40-pass MNIST queue (issue 25): the IWAE paper's stages 0-3 in both frameworks.

The paper's schedule up to stage 3 is 1 + 3 + 9 + 27 = 40 passes over all 60000
training images (learning rate 1e-3 · 10^(-i/7) in stage i); everything else is
``iwae_experiment.py`` unchanged (architecture, Glorot weights, Adam, dynamic
binarization, objectives, shared batches and noise). After each stage: L_5000 on
the seeded 200-image test subset (the curve); at the end: L_5000 on all 10000
test images, the -ELBO and the active units.

One seed of both frameworks is about 7 CPU-hours, more than one working period,
so this runner is built to be started, killed and started again:

- each run (framework x cell x seed) is one child process (``mnist_iwae.py`` or
  ``torch_mnist_iwae.py``, one thread), at most ``--jobs`` (2) at a time;
- a finished run is appended to ONE results JSON, atomically (file lock, then a
  temporary file renamed over the old one), with its command, machine, versions
  and wall time; nothing else ever enters that file;
- a run that was cut off (runner killed, session ended) left only scratch files:
  they are discarded and the run starts again from pass 1, never half-counted;
- re-invoking the runner skips the runs already in the JSON;
- Ctrl-C / SIGTERM stops the children and discards their partial runs;
  the children also die with the runner (Linux parent-death signal), so a
  ``kill -9`` of the runner leaves no orphan training behind.

    mkdir -p runs && nohup python benchmarks/mnist_iwae_queue.py >> runs/mnist_iwae_queue.log 2>&1 &  # start/resume
    python benchmarks/mnist_iwae_queue.py --dry-run    # what remains, and what it costs
    python benchmarks/mnist_iwae_queue.py --report     # table + figure from the JSON (partial is fine)
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import fcntl
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import iwae_experiment as exp  # noqa: E402

DEFAULT_RESULTS = exp.ROOT / "benchmarks" / "results" / "mnist_iwae_40pass.json"
DEFAULT_WORK = exp.ROOT / "runs" / "mnist_iwae_queue"  # scratch folders and logs (git-ignored)

# The paper's stages 0-3 on the full data: what this queue exists for.
PAPER_40 = exp.Settings(stages=4, train_images=60000, eval_images=10000, curve_images=200, k_eval=5000,
                        curve_at="stage")
# Every cell of Table 1. k = 1 once: VAE k=1 and IWAE k=1 are one algorithm (identical updates,
# checked bit for bit by tests/test_mnist_iwae.py), so the k = 1 run stands for both rows.
CELLS = (("iwae", 1), ("vae", 5), ("iwae", 5), ("vae", 50), ("iwae", 50))
FRAMEWORKS = ("minivae", "torch")
SCRIPTS = {"minivae": BENCH / "mnist_iwae.py", "torch": BENCH / "torch_mnist_iwae.py"}
EXTRA_SEEDS = (10, 20)  # optional, minivae alone at k = 50: the seed spread at this schedule

# Cost model, measured on the 2-core AMD EPYC, one thread per process (benchmarks/README.md,
# "MNIST against the IWAE paper"; results/mnist_iwae-2026-12-03.json and
# results/mnist_iwae_l5000_full-2026-12-03.json): ms per Adam step of 20 images, and s per
# test image for L_5000 (465 s and 895 s for the 10000 test images).
MS_PER_STEP = {"minivae": {1: 3.1, 5: 5.3, 50: 26.0}, "torch": {1: 5.5, 5: 8.1, 50: 35.0}}
L5000_S_PER_IMAGE = {"minivae": 465 / 10000, "torch": 895 / 10000}
GAP_TARGET = 0.3  # nats: minivae within this of PyTorch per cell (the target)
STAGE_EXTRA_S = 10.0  # the -ELBO and active units over the 10000 test images, per stage (a guess, small)


class QueueError(Exception):
    """A problem the user must fix; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class Run:
    framework: str
    model: str
    k: int
    seed: int

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.model}-k{self.k}-seed{self.seed}"


def plan(extra_seeds: bool = False, cells: tuple[tuple[str, int], ...] = CELLS,
         frameworks: tuple[str, ...] = FRAMEWORKS) -> list[Run]:
    """Every run, in the order they are started: cheapest cells first, the two frameworks of a
    cell next to each other (so a paired gap exists as soon as both finish), extra seeds last."""
    runs = [Run(fw, model, k, 0) for model, k in cells for fw in FRAMEWORKS if fw in frameworks]
    if extra_seeds and "minivae" in frameworks:
        runs += [Run("minivae", model, 50, seed) for seed in EXTRA_SEEDS for model in ("vae", "iwae")
                 if (model, 50) in cells]
    return runs


def estimate_s(run: Run, settings: exp.Settings) -> float:
    """Expected seconds of one run on the measured machine: training steps, the curve points
    after stages 0..n-2, the final L_k on eval_images, and the per-stage -ELBO/active units."""
    steps = sum(st["passes"] for st in settings.schedule()) * math.ceil(settings.train_images / exp.BATCH)
    ms = MS_PER_STEP[run.framework]
    per_step = ms.get(run.k) or np.interp(run.k, sorted(ms), [ms[k] for k in sorted(ms)])
    curve_points = settings.stages - 1 if settings.curve_at == "stage" else len(settings.epochs()) - 1
    images = settings.eval_images + curve_points * settings.curve_images
    eval_s = images * L5000_S_PER_IMAGE[run.framework] * settings.k_eval / 5000
    return steps * per_step / 1000 + eval_s + settings.stages * STAGE_EXTRA_S


def makespan_s(durations: list[float], jobs: int) -> float:
    """Wall time of running these in the given order on ``jobs`` lanes (each takes the next run)."""
    lanes = [0.0] * jobs
    for d in durations:
        lanes[lanes.index(min(lanes))] += d
    return max(lanes) if durations else 0.0


# -----------------------------------------------------------------------------
# The results JSON: one file, appended atomically, never half-written
# -----------------------------------------------------------------------------


class locked:
    """An exclusive advisory lock on ``<path>.lock`` (flock: released by the kernel if we die)."""

    def __init__(self, path: Path, wait: bool = True) -> None:
        self.path, self.wait = Path(str(path) + ".lock"), wait

    def __enter__(self) -> "locked":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def read_results(path: Path) -> dict[str, Any] | None:
    """The results file, or None when there is none yet; a broken one is an error, never replaced."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise QueueError(f"results file {path} is not readable JSON ({e}); fix or move it, nothing was changed")
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or "settings" not in data:
        raise QueueError(f"results file {path} has no 'settings' and 'runs' list; not a queue results file")
    return data


def check_settings(data: dict[str, Any] | None, settings: exp.Settings, path: Path) -> None:
    """One results file holds one schedule: refuse to mix runs of different settings in it."""
    if data is None:
        return
    wanted = {k: v for k, v in asdict(settings).items() if k != "seed"}
    if data["settings"] != wanted:
        diff = {k: (data["settings"].get(k), v) for k, v in wanted.items() if data["settings"].get(k) != v}
        raise QueueError(f"results file {path} holds runs of other settings (file vs now: {diff}); "
                         "pass --results with another file")


def new_results(settings: exp.Settings) -> dict[str, Any]:
    return {
        "experiment": "Burda, Grosse & Salakhutdinov (ICLR 2016), Table 1, MNIST, one stochastic layer: "
                      f"stages 0-{settings.stages - 1} of the paper's schedule",
        "settings": {k: v for k, v in asdict(settings).items() if k != "seed"},
        "schedule": settings.schedule(),
        "paper_nll": {m: {str(k): v for k, v in d.items()} for m, d in exp.PAPER_NLL.items()},
        "note": "k = 1 runs once (model iwae): VAE k=1 and IWAE k=1 are one algorithm",
        "runs": [],
    }


def append_run(path: Path, settings: exp.Settings, entry: dict[str, Any]) -> None:
    """Add one finished run: under the lock, read, check, append, write to a temporary file, rename."""
    with locked(path):
        data = read_results(path)
        check_settings(data, settings, path)
        data = data or new_results(settings)
        if any(r["run_id"] == entry["run_id"] for r in data["runs"]):
            raise QueueError(f"results file {path} already holds run {entry['run_id']}; not added twice")
        data["runs"].append(entry)
        exp.write_json(path, data)


def done_ids(path: Path) -> set[str]:
    data = read_results(path)
    return {r["run_id"] for r in data["runs"]} if data else set()


# -----------------------------------------------------------------------------
# One run = one child process
# -----------------------------------------------------------------------------


def child_command(run: Run, settings: exp.Settings, data_dir: Path, out: Path) -> list[str]:
    s = settings
    return [sys.executable, str(SCRIPTS[run.framework]), "--runs", f"{run.model}:{run.k}", "--seed", str(run.seed),
            "--stages", str(s.stages), "--train-images", str(s.train_images), "--eval-images", str(s.eval_images),
            "--curve-images", str(s.curve_images), "--k-eval", str(s.k_eval), "--curve-at", s.curve_at,
            "--data-dir", str(data_dir), "--out", str(out)]


def child_env() -> dict[str, str]:
    """One thread per process, and this checkout's minivae (not whatever is installed)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(exp.ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT/SIGHUP while a child is being started or a run recorded, so an
    interrupt never lands between "process started" and "process known" (an orphan) or
    between "record read" and "record appended"; it is delivered right after."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _die_with_parent(runner_pid: int):
    """In the child, before exec: get SIGTERM when the runner dies, however it dies (Linux),
    and take the stop signals again (the child inherits the runner's blocked set)."""

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return  # not Linux: the runner's own SIGINT/SIGTERM handler still stops the children
        if os.getppid() != runner_pid:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": sys.version.split()[0], **{n: version(n) for n in ("numpy", "torch", "numba", "scipy")}}


@dataclass
class Child:
    run: Run
    proc: subprocess.Popen
    scratch: Path
    log: Path
    command: list[str]
    started: float
    started_utc: str


def start(run: Run, settings: exp.Settings, data_dir: Path, work: Path) -> Child:
    scratch, log = work / run.id, work / "logs" / f"{run.id}.log"
    shutil.rmtree(scratch, ignore_errors=True)  # a cut-off earlier attempt: discarded, started afresh
    scratch.mkdir(parents=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = child_command(run, settings, data_dir, scratch)
    with open(log, "w") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=exp.ROOT, env=child_env(), start_new_session=True,
                                preexec_fn=_die_with_parent(os.getpid()))
    return Child(run, proc, scratch, log, command, time.perf_counter(),
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def collect(child: Child, settings: exp.Settings) -> dict[str, Any]:
    """The finished child's record, checked complete, with the runner's bookkeeping added."""
    run = child.run
    path = exp.run_file(child.scratch, run.framework, run.model, run.k)
    if child.proc.returncode != 0:
        raise QueueError(f"{run.id}: exit status {child.proc.returncode}; see {child.log}")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise QueueError(f"{run.id}: no complete record at {path} ({e}); see {child.log}")
    passes = len(settings.epochs())
    if record.get("truncated") or record.get("passes") != passes or \
            len(record.get("test_nll_per_image", [])) != settings.eval_images:
        raise QueueError(f"{run.id}: record at {path} is not a complete {passes}-pass run; not counted")
    return {
        "run_id": run.id,
        **record,
        "command": shlex.join(child.command),
        "versions": versions(),
        "runner": {"started": child.started_utc, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "wall_s": round(time.perf_counter() - child.started, 1), "log": str(child.log)},
    }


def stop(child: Child) -> None:
    """End a child and everything it started, then forget its partial run."""
    try:
        os.killpg(child.proc.pid, signal.SIGTERM)
        child.proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
    shutil.rmtree(child.scratch, ignore_errors=True)


class Interrupted(Exception):
    pass


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def remaining_runs(args) -> list[Run]:
    done = done_ids(args.results)
    return [r for r in plan(args.extra_seeds, args.cells, args.frameworks) if r.id not in done]


def run_queue(args) -> int:
    settings = args.settings
    try:
        queue_lock = locked(args.work / "queue", wait=False).__enter__()
    except BlockingIOError:
        raise QueueError(f"another runner holds {args.work}/queue.lock; it is working on this queue already")
    # SIGHUP too, unless it is ignored: under nohup a closed terminal must not stop the queue
    handled = [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    old = {s: signal.signal(s, _raise_interrupted) for s in handled}
    running: list[Child] = []
    failed: list[str] = []
    try:
        check_settings(read_results(args.results), settings, args.results)
        todo = remaining_runs(args)
        for stale in sorted(p for p in args.work.glob("*-seed*") if p.is_dir()):  # we hold the queue lock
            say(f"discarding the partial run {stale.name} (cut off earlier; it will start again from pass 1)")
            shutil.rmtree(stale)
        say(f"{len(todo)} runs to go, results -> {args.results}")
        while todo or running:
            while todo and len(running) < args.jobs:
                run = todo[0]
                if args.deadline is not None and time.time() + estimate_s(run, settings) > args.deadline:
                    say(f"{run.id} (about {estimate_s(run, settings) / 3600:.1f} h) would not end before "
                        "--deadline; not started")
                    todo = []
                    break
                with signals_deferred():
                    todo.pop(0)
                    running.append(start(run, settings, args.data_dir, args.work))
                say(f"started {run.id} (pid {running[-1].proc.pid}, log {running[-1].log})")
            time.sleep(args.poll)
            for child in [c for c in running if c.proc.poll() is not None]:
                try:
                    with signals_deferred():
                        running.remove(child)
                        entry = collect(child, settings)
                        append_run(args.results, settings, entry)
                        shutil.rmtree(child.scratch, ignore_errors=True)
                    say(f"done {child.run.id}: test NLL {entry['test_nll']:.2f}, wall {entry['runner']['wall_s']:.0f} s"
                        f" -> {args.results}")
                except QueueError as e:
                    failed.append(child.run.id)
                    say(f"FAILED {e}")
                    shutil.rmtree(child.scratch, ignore_errors=True)
    except (Interrupted, KeyboardInterrupt) as e:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # a second Ctrl-C must not cut the cleanup
        for child in running:
            if child.proc.poll() == 0:  # it finished before we looked: keep it, it is complete
                try:
                    append_run(args.results, settings, collect(child, settings))
                    say(f"interrupted ({e or 'SIGINT'}): kept the finished run {child.run.id}")
                    shutil.rmtree(child.scratch, ignore_errors=True)
                    continue
                except QueueError:
                    pass
            stop(child)
            say(f"interrupted ({e or 'SIGINT'}): discarded the partial run {child.run.id}")
        running.clear()
        return 130
    finally:
        for child in running:  # an unexpected error (a full disk, say): no child trains on unseen
            stop(child)
        for s, handler in old.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a second signal now acts as usual
        queue_lock.__exit__()
    left = remaining_runs(args)
    say(f"queue stopped: {len(left)} runs remain" + (f", failed this time: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def say(text: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC] {text}", flush=True)


def dry_run(args) -> int:
    todo = remaining_runs(args)
    check_settings(read_results(args.results), args.settings, args.results)
    total = len(plan(args.extra_seeds, args.cells, args.frameworks))
    print(f"results: {args.results} ({total - len(todo)} of {total} runs done)")
    for run in todo:
        print(f"  to run: {run.id:28s} about {estimate_s(run, args.settings) / 3600:5.2f} h")
    est = [estimate_s(r, args.settings) for r in todo]
    print(f"remaining: {len(todo)} runs, {sum(est) / 3600:.1f} CPU-hours, about "
          f"{makespan_s(est, args.jobs) / 3600:.1f} h wall with {args.jobs} at a time "
          "(per-step times of the 2-core AMD EPYC, benchmarks/README.md)")
    return 0


# -----------------------------------------------------------------------------
# The report: the table and the figure from the JSON, partial or complete
# -----------------------------------------------------------------------------

ROWS = (("vae", 1), ("iwae", 1), ("vae", 5), ("iwae", 5), ("vae", 50), ("iwae", 50))


def _record_of(records: dict, framework: str, model: str, k: int, seed: int) -> dict | None:
    """k = 1 ran once (as iwae) and stands for both rows."""
    return records.get((framework, "iwae" if k == 1 else model, k, seed))


def report_rows(data: dict[str, Any], extra_seeds: bool = False, cells: tuple[tuple[str, int], ...] = CELLS,
                frameworks: tuple[str, ...] = FRAMEWORKS) -> tuple[list[dict], list[str]]:
    """One row per Table 1 cell: paper, each framework's NLL (seed 0, and minivae's seed spread),
    the paired gap, distance to the paper, -ELBO, active units, wall; and the runs still missing."""
    records = {(r["framework"], r["model"], r["k"], r["settings"]["seed"]): r for r in data["runs"]}
    done = {r["run_id"] for r in data["runs"]}
    missing = [r.id for r in plan(extra_seeds, cells, frameworks) if r.id not in done]
    rows = []
    for model, k in ROWS:
        row: dict[str, Any] = {"model": model, "k": k, "paper": exp.PAPER_NLL[model][k]}
        for fw in FRAMEWORKS:
            rec = _record_of(records, fw, model, k, 0)
            if rec is not None:
                row[fw] = {"nll": rec["test_nll"], "sem": rec["test_nll_sem"], "neg_elbo": rec["test_neg_elbo"],
                           "active_units": rec["active_units"], "wall_s": rec["runner"]["wall_s"],
                           "commit": (rec.get("commit") or "?")[:7],
                           "above_paper": rec["test_nll"] - row["paper"]}
        seeds = {s: r for (fw, m, kk, s), r in records.items() if (fw, m, kk) == ("minivae", model, k) and k == 50}
        if len(seeds) > 1:
            nll = [seeds[s]["test_nll"] for s in sorted(seeds)]
            row["minivae_seeds"] = {"seeds": sorted(seeds), "nll": nll, "min": min(nll), "max": max(nll)}
        mv, pt = _record_of(records, "minivae", model, k, 0), _record_of(records, "torch", model, k, 0)
        if mv is not None and pt is not None:
            row["gap"] = float(np.mean(np.subtract(mv["test_nll_per_image"], pt["test_nll_per_image"])))
        rows.append(row)
    return rows, missing


def markdown_table(rows: list[dict]) -> str:
    def cell(row, fw, key, fmt):
        return fmt.format(row[fw][key]) if fw in row else "missing"

    lines = ["| model | k | paper | PyTorch | minivae | minivae − PyTorch (paired) | above paper PT / mv "
             "| -ELBO PT / mv | active units PT / mv | wall min PT / mv |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mv = cell(r, "minivae", "nll", "{:.2f}")
        if "minivae_seeds" in r:
            s = r["minivae_seeds"]
            mv += f" (seeds {','.join(map(str, s['seeds']))}: {s['min']:.2f}–{s['max']:.2f})"
        gap = f"{r['gap']:+.2f}" if "gap" in r else "–"
        wall = [f"{r[fw]['wall_s'] / 60:.1f}" if fw in r else "missing" for fw in ("torch", "minivae")]
        lines.append(f"| {r['model'].upper()} | {r['k']} | {r['paper']:.2f} | {cell(r, 'torch', 'nll', '{:.2f}')} | "
                     f"{mv} | {gap} | {cell(r, 'torch', 'above_paper', '{:+.2f}')} / "
                     f"{cell(r, 'minivae', 'above_paper', '{:+.2f}')} | "
                     f"{cell(r, 'torch', 'neg_elbo', '{:.2f}')} / {cell(r, 'minivae', 'neg_elbo', '{:.2f}')} | "
                     f"{cell(r, 'torch', 'active_units', '{}')} / {cell(r, 'minivae', 'active_units', '{}')} | "
                     f"{wall[0]} / {wall[1]} |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, on the cells that are in: the paper's ordering per framework
    (IWAE <= VAE at each k; IWAE k=50 < 5 < 1) and the minivae-PyTorch gap within GAP_TARGET."""
    nll = {(r["model"], r["k"], fw): r[fw]["nll"] for r in rows for fw in FRAMEWORKS if fw in r}
    lines = []
    for fw in FRAMEWORKS:
        checks = [f"IWAE <= VAE at k={k}: {'yes' if nll[('iwae', k, fw)] <= nll[('vae', k, fw)] else 'NO'}"
                  for k in (5, 50) if ("iwae", k, fw) in nll and ("vae", k, fw) in nll]
        if all(("iwae", k, fw) in nll for k in (1, 5, 50)):
            ok = nll[("iwae", 50, fw)] < nll[("iwae", 5, fw)] < nll[("iwae", 1, fw)]
            checks.append(f"IWAE k=50 < 5 < 1: {'yes' if ok else 'NO'}")
        lines.append(f"ordering, {fw}: " + ("; ".join(checks) if checks else "not enough cells yet"))
    gaps = [f"{r['model'].upper()} k={r['k']} {r['gap']:+.2f} {'within' if abs(r['gap']) <= GAP_TARGET else 'OUTSIDE'}"
            for r in rows if "gap" in r and not (r["k"] == 1 and r["model"] == "vae")]
    lines.append(f"paired gap (target |gap| <= {GAP_TARGET} nats): " + ("; ".join(gaps) if gaps else "no pair yet"))
    commits = sorted({r[fw]["commit"] for r in rows for fw in FRAMEWORKS if fw in r})
    lines.append(f"model code at commit(s): {', '.join(commits) if commits else '-'}")
    return lines


def curves(data: dict[str, Any]) -> Iterator[tuple[dict, list[int], list[float]]]:
    """(record, passes, NLL on the curve images) of every run, the curve points only."""
    for rec in data["runs"]:
        points = [(row["epoch"], row["curve_nll"]) for row in rec["curve"] if "curve_nll" in row]
        yield rec, [p for p, _ in points], [v for _, v in points]


def figure(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colours = {("vae", 5): "#4292c6", ("vae", 50): "#08519c", ("iwae", 1): "#6a3d9a", ("iwae", 5): "#fb6a4a",
               ("iwae", 50): "#a50f15"}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for rec, passes, nll in curves(data):
        seed = rec["settings"]["seed"]
        label = ("VAE=IWAE" if rec["k"] == 1 else rec["model"].upper()) + f" k={rec['k']} ({rec['framework']}"
        label += ")" if seed == 0 else f", seed {seed})"
        ax.plot(passes, nll, "-o" if rec["framework"] == "minivae" else "--x", ms=4, label=label,
                color=colours[(rec["model"], rec["k"])], alpha=1.0 if seed == 0 else 0.4)
    for (model, k), colour in colours.items():
        ax.axhline(exp.PAPER_NLL[model][k], color=colour, lw=0.8, ls=":")
    s = data["settings"]
    ax.set_xscale("log")
    ends = [int(sum(3**j for j in range(i + 1))) for i in range(s["stages"])]
    ax.set_xticks(ends, [str(e) for e in ends])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("passes over the training set (end of each stage)")
    ax.set_ylabel(f"test NLL = -L_{s['k_eval']} (nats), {s['curve_images']} test images")
    machine = next((r["machine"] for r in data["runs"]), {"cpu": "?", "cores": "?"})
    ax.set_title(f"MNIST, IWAE paper, stages 0-{s['stages'] - 1} ({ends[-1]} passes over {s['train_images']} "
                 f"images)\nsolid minivae, dashed PyTorch, dotted: the paper's Table 1 after 3280 passes\n"
                 f"{machine['cpu']}, one thread per run", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def report(args) -> int:
    data = read_results(args.results)
    if data is None:
        raise QueueError(f"--report: no results file at {args.results} yet (start the queue first)")
    rows, missing = report_rows(data, args.extra_seeds, args.cells, args.frameworks)
    print(markdown_table(rows))
    for line in targets(rows):
        print(line)
    if data["runs"]:
        png = args.results.with_suffix(".png")
        figure(data, png)
        print(f"figure: {png}")
    if missing:
        print(f"still missing ({len(missing)} runs): {', '.join(missing)}")
    else:
        print("every run of the queue is in the file")
    return 0


# -----------------------------------------------------------------------------
# Command line
# -----------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        """Bad arguments: one line on stderr, exit 2 (argparse would add the usage)."""
        self.exit(2, f"mnist_iwae_queue: {message}\n")


def next_utc(hh_mm: str, p: argparse.ArgumentParser) -> float:
    """The next time the UTC clock shows HH:MM (today, or tomorrow if that has passed)."""
    try:
        hh, mm = (int(v) for v in hh_mm.split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60):
            raise ValueError
    except ValueError:
        p.error(f"--deadline: expected HH:MM (UTC, 00:00 to 23:59), got {hh_mm!r}")
    now = time.gmtime()
    at = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, hh, mm, 0))
    return at if at > time.time() else at + 86400


def parse_args(argv: list[str] | None):
    p = OneLineParser(description="The 40-pass MNIST queue of issue 25: run, resume, report.")
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do, with a time estimate")
    p.add_argument("--report", action="store_true", help="the README table and the figure from the results JSON")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the one results JSON (appended to)")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folders and logs of the runs")
    p.add_argument("--data-dir", type=Path, default=exp.DEFAULT_DATA)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    p.add_argument("--cells", nargs="+", default=[f"{m}:{k}" for m, k in CELLS],
                   help="which cells, as model:k (default: the five of Table 1, k = 1 once)")
    p.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS),
                   help="which frameworks (default both)")
    p.add_argument("--extra-seeds", action="store_true", help=f"also seeds {EXTRA_SEEDS} for minivae at k = 50")
    p.add_argument("--deadline", default=None,
                   help="HH:MM UTC (the next one): start no run whose estimate would end after it")
    p.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    # a smaller schedule, for tests and for proving the pipeline; its own results file, please
    for name in ("stages", "train_images", "eval_images", "curve_images", "k_eval"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(PAPER_40, name))
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs: expected at least 1, got {args.jobs}")
    if min(args.stages, args.train_images, args.eval_images, args.curve_images, args.k_eval) < 1:
        p.error("--stages, --train-images, --eval-images, --curve-images, --k-eval: expected positive integers")
    cells = []
    for cell in args.cells:
        model, _, k = cell.partition(":")
        if model not in ("vae", "iwae") or k not in ("1", "5", "50"):
            p.error(f"--cells: expected model:k with model vae or iwae and k 1, 5 or 50, got {cell!r}")
        cells.append((model, int(k)))
    args.cells, args.frameworks = tuple(cells), tuple(args.frameworks)
    args.settings = exp.Settings(stages=args.stages, train_images=args.train_images, eval_images=args.eval_images,
                                 curve_images=min(args.curve_images, args.eval_images), k_eval=args.k_eval,
                                 curve_at="stage")
    if args.deadline is not None:
        args.deadline = next_utc(args.deadline, p)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.report:
            return report(args)
        if args.dry_run:
            return dry_run(args)
        if not exp.data_available(args.data_dir):
            raise QueueError(f"MNIST IDX files not found in {args.data_dir} (pass --data-dir)")
        return run_queue(args)
    except QueueError as e:
        print(f"mnist_iwae_queue: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full results/work folder: say so, in one line
        where = f"cannot write {e.filename}: " if e.filename else ""
        print(f"mnist_iwae_queue: {where}{e.strerror or e} (the results file is unchanged)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
