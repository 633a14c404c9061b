"""The MNIST experiment of the IWAE paper, written once for both frameworks.

Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016,
Table 1 (MNIST, one stochastic layer). This module holds everything that is not
the model code: the architecture and optimiser settings, the schedule, the seeds,
the initial weights, the stream of training batches, the test images and the
result files. ``mnist_iwae.py`` (minivae) and ``torch_mnist_iwae.py`` (PyTorch)
both import it, so the two columns of the table see the same initial weights, the
same batches in the same order with the same binarization, and the same noise
draws (both take their Gaussian noise from NumPy's PCG64 with the same seeds, in
the same order and shapes). It depends on NumPy and minivae's data helpers only
(host-side NumPy; no engine code), never on either framework's autograd.

Choices, as we read the paper (Section 5 and its appendix):
- architecture: 784 -> 200 -> 200 -> (mu, log σ²) of 50 latents; decoder
  50 -> 200 -> 200 -> 784 Bernoulli logits; tanh hidden units;
- initialisation: Glorot & Bengio's uniform heuristic, U(-a, a) with
  a = sqrt(6 / (fan_in + fan_out)); biases 0 (drawn here from one NumPy seed and
  loaded into both frameworks);
- Adam, β1 = 0.9, β2 = 0.999, ε = 1e-4, mini-batches of 20;
- schedule: stage i = 0..7 runs 3^i passes at learning rate 1e-3 · 10^(-i/7)
  (3280 passes in all). On a CPU we run the first ``stages`` stages;
- data: the 60000 MNIST training images, binarized dynamically (a fresh Bernoulli
  sample of each image every time it is used); the 10000 test images binarized
  once, with a fixed seed (the same 0/1 test set for every model);
- VAE with k samples: the Monte Carlo ELBO, the average of the k log-weights
  ln w_i = ln p(x|z_i) + ln p(z_i) - ln q(z_i|x) (KL sampled, not closed-form), as
  the authors' code trains it (the gradient of Σ_i ln w_i / k); IWAE with k: the
  bound L_k = ln (1/k) Σ_i w_i from the same log-weights. At k = 1 the two are
  the same function (ln of one weight), so VAE k=1 and IWAE k=1 are one algorithm
  with identical updates; Table 1 gives them one number, and so do we (both runs
  are made and checked equal);
- test NLL: -L_5000, 5000 importance samples per image, on a seeded subset of the
  test images when the machine cannot afford all 10000 (stated in the results);
- active units: latent u is active when Cov_x(E_q(z|x)[u]) > 0.01 (the paper's
  measure), computed over the 10000 binarized test images.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from minivae.random import Generator
from minivae.training.data import binarize, load_mnist

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"

# Table 1 of the paper: test NLL in nats (-L_5000), one stochastic layer.
PAPER_NLL = {"vae": {1: 86.76, 5: 86.47, 50: 86.35}, "iwae": {1: 86.76, 5: 85.54, 50: 84.78}}
RUNS = (("vae", 1), ("iwae", 1), ("vae", 5), ("iwae", 5), ("vae", 50), ("iwae", 50))

INPUT, HIDDEN, LATENT = 784, (200, 200), 50
BATCH = 20
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-4
ACTIVE_THRESHOLD = 1e-2

# Parameter names and shapes, (in, out) weights, in minivae's naming; the PyTorch
# twin maps them onto its own layers (transposing the weights).
LAYERS = (
    ("encoder.body.0", INPUT, HIDDEN[0]),
    ("encoder.body.2", HIDDEN[0], HIDDEN[1]),
    ("encoder.mu", HIDDEN[1], LATENT),
    ("encoder.logvar", HIDDEN[1], LATENT),
    ("decoder.net.0", LATENT, HIDDEN[1]),
    ("decoder.net.2", HIDDEN[1], HIDDEN[0]),
    ("decoder.net.4", HIDDEN[0], INPUT),
)


@dataclass(frozen=True)
class Settings:
    """What one benchmark run of the whole table used; saved in the results."""

    stages: int = 2  # stages 0..stages-1 of the paper's schedule: 1 + 3 + ... passes
    # Defaults = the committed CPU run (results/mnist_iwae-2026-12-03.json); the paper uses
    # 60000 training images, 8 stages and all 10000 test images.
    train_images: int = 20000  # the first N of the training set
    eval_images: int = 200  # test images for the final L_5000 (a seeded subset)
    curve_images: int = 40  # the first ones of those, for the L_5000 after every pass
    k_eval: int = 5000
    eval_rows: int = 20  # images per L_5000 pass ...
    eval_chunk: int = 100  # ... and samples per pass: eval_rows x eval_chunk decoder rows at once
    seed: int = 0
    curve_at: str = "pass"  # the curve point (L_k_eval, -ELBO, active units) after every "pass" or "stage"

    @property
    def seeds(self) -> dict[str, int]:
        """Every seed. The run's own ones derive from ``seed``: weights, training data (order +
        binarization), training noise. The test side is fixed whatever the seed (0/1 test set,
        test subset, evaluation noise), so runs of different seeds are scored on the same images."""
        s = self.seed
        return {"init": s, "data": s + 1, "noise": s + 2, "test_binarize": 3, "test_subset": 4, "eval": 5, "elbo": 6}

    def schedule(self) -> list[dict[str, float]]:
        """[{stage, passes, lr}]: 3^i passes at 1e-3 · 10^(-i/7)."""
        return [{"stage": i, "passes": 3**i, "lr": 1e-3 * 10 ** (-i / 7)} for i in range(self.stages)]

    def stage_ends(self) -> list[int]:
        """The pass numbers (1-based, cumulative) at which each stage ends: 1, 4, 13, 40, ..."""
        return [int(sum(3**j for j in range(i + 1))) for i in range(self.stages)]

    def epochs(self) -> list[float]:
        """The learning rate of every pass, in order."""
        return [st["lr"] for st in self.schedule() for _ in range(int(st["passes"]))]


def glorot_weights(seed: int) -> dict[str, np.ndarray]:
    """The initial parameters (float32), from one NumPy seed, in the order of LAYERS."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out: dict[str, np.ndarray] = {}
    for name, fan_in, fan_out in LAYERS:
        a = math.sqrt(6.0 / (fan_in + fan_out))
        out[name + ".weight"] = rng.uniform(-a, a, size=(fan_in, fan_out)).astype(np.float32)
        out[name + ".bias"] = np.zeros(fan_out, dtype=np.float32)
    return out


def normal_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise drawn exactly as minivae.random.Generator.normal draws it
    (float64 PCG64 draws, then rounded), so both frameworks get the same numbers."""
    return rng.standard_normal(size=shape, dtype=np.float64).astype(np.float32)


# -----------------------------------------------------------------------------
# Data
# -----------------------------------------------------------------------------


@dataclass
class Data:
    train: np.ndarray  # grey training images in [0, 1], float32 (binarized per use)
    test: np.ndarray  # the 10000 test images, binarized once
    eval_index: np.ndarray  # which test images the L_5000 uses (the first curve_images for the curve)


def data_available(folder: Path = DEFAULT_DATA) -> bool:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all((folder / n).exists() or (folder / (n + ".gz")).exists() for n in names)


def load_data(settings: Settings, folder: Path = DEFAULT_DATA) -> Data:
    seeds = settings.seeds
    train = load_mnist(folder, "train").x[: settings.train_images]
    test = binarize(load_mnist(folder, "test").x, Generator(seeds["test_binarize"]))
    order = Generator(seeds["test_subset"]).permutation(len(test))
    return Data(train=train, test=test, eval_index=order[: settings.eval_images])


def training_batches(train: np.ndarray, rng: Generator) -> Iterator[np.ndarray]:
    """One pass: a fresh permutation, then each batch of 20 freshly binarized (dynamic)."""
    order = rng.permutation(len(train))
    for start in range(0, len(order), BATCH):
        yield binarize(train[order[start : start + BATCH]], rng)


# -----------------------------------------------------------------------------
# Results
# -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "MINIVAE_"))}
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "environment": env,
            "gpu": None}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it private; a result file is for everyone to read
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


def run_file(folder: Path, framework: str, model: str, k: int) -> Path:
    return folder / f"{framework}-{model}-k{k}.json"


def claim(folder: Path, framework: str, model: str, k: int) -> bool:
    """Take a run for this process (so two workers of one framework can share the queue):
    False when its result exists or another worker holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    if run_file(folder, framework, model, k).exists():
        return False
    try:
        fd = os.open(folder / f".{framework}-{model}-k{k}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def active_units(mu: np.ndarray) -> int:
    """Latents whose posterior mean varies over the data: Var_x(mu_u(x)) > 0.01."""
    return int((np.var(np.asarray(mu, dtype=np.float64), axis=0) > ACTIVE_THRESHOLD).sum())


def base_record(framework: str, model: str, k: int, settings: Settings) -> dict[str, Any]:
    return {
        "framework": framework,
        "model": model,
        "k": k,
        "settings": asdict(settings),
        "seeds": settings.seeds,
        "schedule": settings.schedule(),
        "machine": machine(),
        "commit": git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_at_start": loadavg(),
    }


# -----------------------------------------------------------------------------
# One run (the same loop for both frameworks)
# -----------------------------------------------------------------------------


class Adapter:
    """What the loop needs from a framework: a model of one kind, trained and measured.

    ``step`` takes one optimizer step on a 0/1 batch and returns the batch loss;
    ``log_likelihood`` returns L_k for every row (float64, nats), drawing its noise
    from NumPy's PCG64(seed) in the order (row block of ``rows``) x (chunk of samples);
    ``neg_elbo`` is the one-sample -ELBO (closed-form KL) averaged over the rows, noise
    from PCG64(seed), 500 rows at a time; ``posterior_mean`` gives mu(x) as NumPy.
    """

    name = "?"

    def step(self, x: np.ndarray, lr: float) -> float:
        raise NotImplementedError

    def log_likelihood(self, x: np.ndarray, k: int, rows: int, chunk: int, seed: int, desc: str) -> np.ndarray:
        raise NotImplementedError

    def neg_elbo(self, x: np.ndarray, seed: int) -> float:
        raise NotImplementedError

    def posterior_mean(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def run_one(adapter: Adapter, model: str, k: int, settings: Settings, data: Data, folder: Path,
            stop_at: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one model on the schedule, measure it after every pass, save the record."""
    seeds = settings.seeds
    record = base_record(adapter.name, model, k, settings)
    record["curve"] = []
    data_rng = Generator(seeds["data"])
    x_curve = data.test[data.eval_index[: settings.curve_images]]
    x_eval = data.test[data.eval_index]
    n_batches = math.ceil(len(data.train) / BATCH)
    tag = f"{adapter.name} {model} k={k}"
    start = time.perf_counter()
    train_s, last_pass_s, ll_per_image = 0.0, None, None
    record["truncated"] = False
    lrs = settings.epochs()
    for epoch, lr in enumerate(lrs, 1):
        if stop_at is not None and last_pass_s is not None:
            final_eval = (ll_per_image or 0.0) * (len(x_eval) + len(x_curve))
            if time.time() + last_pass_s + final_eval > stop_at:
                record["truncated"] = True  # stop early rather than run past the deadline
                break
        t = time.perf_counter()
        total = 0.0
        for xb in tqdm(training_batches(data.train, data_rng), total=n_batches, desc=f"{tag} pass {epoch}",
                       disable=not progress, mininterval=60, leave=False):
            total += adapter.step(xb, lr)
        last_pass_s = time.perf_counter() - t
        train_s += last_pass_s
        row = {"epoch": epoch, "lr": lr, "pass_s": round(last_pass_s, 2), "train_loss": total / n_batches}
        curve_point = settings.curve_at == "pass" or epoch in settings.stage_ends()
        if epoch < len(lrs) and curve_point:  # the last pass gets the full evaluation below
            t = time.perf_counter()
            ll = adapter.log_likelihood(x_curve, settings.k_eval, settings.eval_rows, settings.eval_chunk,
                                        seeds["eval"], f"{tag} L_{settings.k_eval} (curve)")
            ll_per_image = (time.perf_counter() - t) / len(x_curve)
            row["curve_nll"] = float(-ll.mean())
            row["test_neg_elbo"] = adapter.neg_elbo(data.test, seeds["elbo"])
            row["active_units"] = active_units(adapter.posterior_mean(data.test))
        record["curve"].append(row)
        write_json(folder / f".{adapter.name}-{model}-k{k}.partial.json", record)
        if progress:
            print(f"[{time.strftime('%H:%M:%S')}] {tag} pass {epoch}: {row}", flush=True)
    t = time.perf_counter()
    ll = adapter.log_likelihood(x_eval, settings.k_eval, settings.eval_rows, settings.eval_chunk, seeds["eval"],
                                f"{tag} L_{settings.k_eval} ({len(x_eval)} images)")
    eval_s = time.perf_counter() - t
    last = record["curve"][-1]
    last["curve_nll"] = float(-ll[: len(x_curve)].mean())  # same images, same noise as the curve points
    last["test_neg_elbo"] = adapter.neg_elbo(data.test, seeds["elbo"])
    last["active_units"] = active_units(adapter.posterior_mean(data.test))
    nll = -ll
    record.update({
        "passes": len(record["curve"]),
        "test_nll": float(nll.mean()),
        "test_nll_sem": float(nll.std(ddof=1) / math.sqrt(len(nll))),
        "test_nll_per_image": [round(float(v), 4) for v in nll],
        "test_neg_elbo": last["test_neg_elbo"],
        "active_units": last["active_units"],
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "l5000_s_per_image": round(eval_s / len(x_eval), 4),
        "wall_s": round(time.perf_counter() - start, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_at_end": loadavg(),
    })
    write_json(run_file(folder, adapter.name, model, k), record)
    (folder / f".{adapter.name}-{model}-k{k}.partial.json").unlink(missing_ok=True)
    return record


def parse_args(framework: str, argv: list[str] | None = None):
    import argparse

    p = argparse.ArgumentParser(description=f"IWAE paper, MNIST Table 1, {framework} side (see iwae_experiment.py)")
    p.add_argument("--runs", nargs="+", default=[f"{m}:{k}" for m, k in RUNS],
                   help="which cells, as model:k (default all six, cheapest first)")
    p.add_argument("--stages", type=int, default=Settings.stages)
    p.add_argument("--train-images", type=int, default=Settings.train_images)
    p.add_argument("--eval-images", type=int, default=Settings.eval_images)
    p.add_argument("--curve-images", type=int, default=Settings.curve_images)
    p.add_argument("--k-eval", type=int, default=Settings.k_eval)
    p.add_argument("--seed", type=int, default=Settings.seed)
    p.add_argument("--curve-at", choices=("pass", "stage"), default=Settings.curve_at,
                   help="measure the curve (L_k_eval on --curve-images, -ELBO, active units) after every pass "
                        "or only at the end of each stage of the schedule")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mnist_iwae-runs",
                   help="folder of the per-run records")
    p.add_argument("--stop-at", default=None, help="HH:MM (UTC, today): end training early rather than pass it")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--time-eval", action="store_true",
                   help="instead of training: time one L_k_eval over all 10000 test images (the cost of "
                        "the evaluation after a schedule stage) and write OUT/<framework>-l5000-full.json")
    args = p.parse_args(argv)
    if not data_available(args.data_dir):
        p.exit(0, f"MNIST IDX files not found in {args.data_dir}; nothing to do (pass --data-dir)\n")
    args.settings = Settings(stages=args.stages, train_images=args.train_images, eval_images=args.eval_images,
                             curve_images=min(args.curve_images, args.eval_images), k_eval=args.k_eval,
                             seed=args.seed, curve_at=args.curve_at)
    if args.stop_at:
        hh, mm = (int(v) for v in args.stop_at.split(":"))
        now = time.gmtime()
        args.stop_at = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, hh, mm, 0, 0, 0, 0)) - time.timezone
    args.cells = []
    for cell in args.runs:
        model, _, k = cell.partition(":")
        if model not in ("vae", "iwae") or not k.isdigit() or int(k) < 1:
            p.error(f"--runs: expected model:k with model vae or iwae and k >= 1, got {cell!r}")
        args.cells.append((model, int(k)))
    return args


def time_full_eval(adapter: Adapter, settings: Settings, data: Data, folder: Path) -> dict[str, Any]:
    """One L_{k_eval} over every test image, timed: what evaluating after each stage of the
    schedule costs. The weights are the initial ones (the cost does not depend on them), so
    the NLL it prints is an untrained model's and is not a result."""
    t = time.perf_counter()
    ll = adapter.log_likelihood(data.test, settings.k_eval, settings.eval_rows, settings.eval_chunk,
                                settings.seeds["eval"], f"{adapter.name} L_{settings.k_eval} (all test images)")
    seconds = time.perf_counter() - t
    record = {"framework": adapter.name, "what": f"L_{settings.k_eval} on all test images, initial weights",
              "images": len(data.test), "k": settings.k_eval, "rows_per_pass": settings.eval_rows,
              "samples_per_pass": settings.eval_chunk, "seconds": round(seconds, 1),
              "s_per_image": round(seconds / len(data.test), 5), "untrained_nll": float(-ll.mean()),
              "machine": machine(), "commit": git_commit(), "load_at_end": loadavg(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(folder / f"{adapter.name}-l5000-full.json", record)
    return record


def run_all(framework: str, make_adapter, argv: list[str] | None = None) -> int:
    """The command line of both scripts: run every requested cell not yet done or taken."""
    args = parse_args(framework, argv)
    data = load_data(args.settings, args.data_dir)
    if args.time_eval:
        adapter = make_adapter("iwae", 1, glorot_weights(args.settings.seeds["init"]), args.settings.seeds["noise"])
        rec = time_full_eval(adapter, args.settings, data, args.out)
        print(f"{framework}: L_{rec['k']} on {rec['images']} test images in {rec['seconds']:.0f} s "
              f"({rec['s_per_image']:.4f} s per image)", flush=True)
        return 0
    for model, k in args.cells:
        if args.stop_at is not None and time.time() > args.stop_at:
            break
        if not claim(args.out, framework, model, k):
            continue
        adapter = make_adapter(model, k, glorot_weights(args.settings.seeds["init"]), args.settings.seeds["noise"])
        rec = run_one(adapter, model, k, args.settings, data, args.out, args.stop_at, not args.quiet)
        print(f"{framework} {model} k={k}: test NLL {rec['test_nll']:.2f} ± {rec['test_nll_sem']:.2f}, "
              f"-ELBO {rec['test_neg_elbo']:.2f}, active {rec['active_units']}, wall {rec['wall_s']:.0f} s",
              flush=True)
    return 0
