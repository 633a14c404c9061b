"""MNIST, IWAE paper Table 1, minivae side: VAE and IWAE for k in {1, 5, 50}.

The experiment itself (architecture, schedule, seeds, data stream, result files)
is in ``iwae_experiment.py``, shared with the PyTorch twin ``torch_mnist_iwae.py``.
This file is the minivae model behind it, built from the engine's public API
(minivae.models VAE / IWAE with tanh layers, minivae.optim.Adam,
importance_log_likelihood), plus ``--report``, which joins both frameworks'
records into ``results/mnist_iwae-<date>.json``, the figure and the README table.
The 40-pass run of issue 25 (stages 0-3 on all 60000 images) is driven by
``mnist_iwae_queue.py``, which runs this script one cell at a time and reports from its JSON.

    OMP_NUM_THREADS=1 python benchmarks/mnist_iwae.py --stages 2 --stop-at 09:12
    OMP_NUM_THREADS=1 python benchmarks/torch_mnist_iwae.py --stages 2 --stop-at 09:12
    python benchmarks/mnist_iwae.py --report RUNS/seed-0 RUNS/seed-10 ...

One thread per process (the two frameworks run side by side, one core each).
``--backend cupy`` runs the same code on a GPU: arrays go through minivae's
backend module (the batches are moved by the model's input tensors, results come
back through ``Tensor.numpy()``), nothing here calls NumPy on device data.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one thread per process, set before NumPy loads its BLAS (not when imported)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")  # before NumPy loads its BLAS

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iwae_experiment as exp  # noqa: E402

from minivae import no_grad  # noqa: E402
from minivae.models.ae import as_input  # noqa: E402
from minivae.models.iwae import IWAE, importance_log_likelihood  # noqa: E402
from minivae.optim import Adam  # noqa: E402
from minivae.providers import backend, set_kernels  # noqa: E402
from minivae.random import Generator  # noqa: E402


def build(model: str, k: int, weights: dict[str, np.ndarray]):
    """VAE (the k-sample Monte Carlo ELBO, mean of the log-weights) or IWAE (L_k),
    784-200-200-50 tanh, Bernoulli decoder, given weights."""
    net = IWAE(exp.INPUT, exp.LATENT, exp.HIDDEN, k=k, rng=Generator(0), activation="tanh",
               likelihood="bernoulli", objective="elbo" if model == "vae" else "iwae")
    net.load_state_dict(weights)  # the shared Glorot-uniform draw replaces minivae's own init
    return net


class MinivaeAdapter(exp.Adapter):
    name = "minivae"

    def __init__(self, model: str, k: int, weights: dict[str, np.ndarray], noise_seed: int) -> None:
        self.model = build(model, k, weights)
        self.noise = Generator(noise_seed)
        self.opt = Adam(self.model.parameters(), lr=1e-3, betas=exp.ADAM_BETAS, eps=exp.ADAM_EPS)

    def step(self, x: np.ndarray, lr: float) -> float:
        self.opt.lr = lr
        self.opt.zero_grad()
        loss = self.model.loss(x, None, self.noise)["loss"]
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def log_likelihood(self, x, k, rows, chunk, seed, desc):
        rng = Generator(seed)
        parts = []
        for start in tqdm(range(0, len(x), rows), desc=desc, mininterval=30, leave=False):
            parts.append(importance_log_likelihood(self.model, x[start : start + rows], k=k, rng=rng,
                                                   chunk=chunk, batch_size=rows))
        return np.concatenate(parts)

    def neg_elbo(self, x, seed):
        rng, total = Generator(seed), 0.0
        with no_grad():
            for start in range(0, len(x), 500):
                xb = as_input(x[start : start + 500], self.model)
                q = self.model.posterior(xb)
                recon = self.model.decoder.nll(self.model.decoder(q.rsample(rng=rng)), xb)
                total += float((recon + q.kl_standard()).sum().item())
        return total / len(x)

    def posterior_mean(self, x):
        with no_grad():
            return np.concatenate([self.model.encode(x[s : s + 1000]).numpy() for s in range(0, len(x), 1000)])


# -----------------------------------------------------------------------------
# The report: both frameworks' records, every seed -> one JSON, the figure, the table
# -----------------------------------------------------------------------------

FRAMEWORKS = ("torch", "minivae")
REFERENCE_RUN = "minivae-reference"  # minivae on its reference (plain NumPy) kernels: --reference-kernels
GAP_TARGET = 0.3  # nats: minivae within this of PyTorch on every cell (mean over seeds)


def load_records(folders: list[Path]) -> dict[tuple[str, str, int, int], dict]:
    """{(framework, model, k, seed): record} from the seed folders; runs stopped early by
    --stop-at are left out (not the same schedule), as are unfinished (.partial) ones."""
    records: dict = {}
    for folder in folders:
        for path in sorted(p for p in Path(folder).glob("*-k*.json") if not p.name.startswith(".")):
            rec = json.loads(path.read_text())
            if rec["truncated"]:
                print(f"left out (truncated at {rec['passes']} passes): {path}")
                continue
            key = (rec["framework"], rec["model"], rec["k"], rec["settings"]["seed"])
            if key in records:
                raise SystemExit(f"--report: two records for {key}: {path} and an earlier folder")
            records[key] = rec
    return records


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if len(v) > 1 else None  # one seed has no spread (and JSON has no NaN)
    return {"mean": float(v.mean()), "sd": sd, "sem": None if sd is None else sd / math.sqrt(len(v)),
            "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def _seed_runs(records: dict, framework: str, model: str, k: int) -> dict[int, dict]:
    """{seed: record} of one framework's runs of one cell."""
    return {s: r for (f, m, kk, s), r in records.items() if (f, m, kk) == (framework, model, k)}


def _paired_gap(records: dict, model: str, k: int, mine: str, theirs: str) -> dict[str, Any] | None:
    """mine − theirs, per seed both ran: the same test images under the same evaluation noise,
    so each seed's value is a paired mean over images; then its mean, sd and sem over seeds."""
    seeds = sorted(set(_seed_runs(records, mine, model, k)) & set(_seed_runs(records, theirs, model, k)))
    if not seeds:
        return None
    per_seed = [float(np.mean(np.subtract(records[(mine, model, k, s)]["test_nll_per_image"],
                                          records[(theirs, model, k, s)]["test_nll_per_image"]))) for s in seeds]
    return {"seeds": seeds, "per_seed": per_seed, **_stats(per_seed)}


def _cells(records: dict) -> list[dict]:
    """One row per (model, k): each framework's NLL per seed and over seeds, the paired
    minivae − PyTorch gap, and minivae's gap to its own reference-kernel run (the yardstick)."""
    rows = []
    for model, k in exp.RUNS:
        row: dict = {"model": model, "k": k, "paper_nll": exp.PAPER_NLL[model][k]}
        for fw in FRAMEWORKS + (REFERENCE_RUN,):
            runs = _seed_runs(records, fw, model, k)
            if not runs:
                continue
            seeds = sorted(runs)
            row[fw] = {"seeds": seeds}
            for key in ("test_nll", "test_neg_elbo", "active_units", "wall_s", "train_s", "eval_s"):
                row[fw][key] = [runs[s][key] for s in seeds]
            row[fw]["nll"] = _stats(row[fw]["test_nll"])
            row[fw]["neg_elbo"] = _stats(row[fw]["test_neg_elbo"])
        gap = _paired_gap(records, model, k, "minivae", "torch")
        if gap is not None:
            row["gap"] = {**gap, "within_target": bool(abs(gap["mean"]) <= GAP_TARGET)}
        yardstick = _paired_gap(records, model, k, "minivae", REFERENCE_RUN)
        if yardstick is not None:
            row["gap_to_reference_kernels"] = yardstick
        rows.append(row)
    return rows


def _orderings(records: dict, cells: list[dict]) -> dict[str, Any]:
    """The paper's ordering, per framework: on the seed means, and in how many single seeds."""
    out: dict[str, Any] = {}
    for fw in FRAMEWORKS:
        mean = {(c["model"], c["k"]): c[fw]["nll"]["mean"] for c in cells if fw in c}
        checks: dict[str, Any] = {}
        seeds = sorted({s for (f, _, _, s) in records if f == fw})
        for k in (1, 5, 50):
            name = f"iwae<=vae k={k}"
            if ("iwae", k) in mean and ("vae", k) in mean:
                checks[name] = {"seed_means": bool(mean[("iwae", k)] <= mean[("vae", k)])}
                both = [s for s in seeds if (fw, "iwae", k, s) in records and (fw, "vae", k, s) in records]
                held = [s for s in both
                        if records[(fw, "iwae", k, s)]["test_nll"] <= records[(fw, "vae", k, s)]["test_nll"]]
                checks[name]["seeds_held"] = f"{len(held)}/{len(both)}"
        if all(("iwae", k) in mean for k in (1, 5, 50)):
            name = "iwae k=50 < k=5 < k=1"
            checks[name] = {"seed_means": bool(mean[("iwae", 50)] < mean[("iwae", 5)] < mean[("iwae", 1)])}
            full = [s for s in seeds if all((fw, "iwae", k, s) in records for k in (1, 5, 50))]
            nll = {s: [records[(fw, "iwae", k, s)]["test_nll"] for k in (50, 5, 1)] for s in full}
            held = [s for s in full if nll[s][0] < nll[s][1] < nll[s][2]]
            checks[name]["seeds_held"] = f"{len(held)}/{len(full)}"
        # k = 1: the two objectives are one function, so the runs must be identical, not just close
        same = [s for s in seeds if (fw, "vae", 1, s) in records and (fw, "iwae", 1, s) in records]
        identical = [s for s in same if records[(fw, "vae", 1, s)]["test_nll_per_image"]
                     == records[(fw, "iwae", 1, s)]["test_nll_per_image"]]
        checks["vae k=1 identical to iwae k=1"] = f"{len(identical)}/{len(same)}"
        out[fw] = checks
    return out


def report(folders: list[Path], date: str, results: Path = exp.ROOT / "benchmarks" / "results") -> int:
    """Join the records of every seed folder into results/mnist_iwae-<date>.json, the figure, the table."""
    records = load_records(folders)
    if not records:
        print(f"--report: no run records in {[str(f) for f in folders]}")
        return 1
    cells = _cells(records)
    first = next(iter(records.values()))
    settings = {key: value for key, value in first["settings"].items() if key != "seed"}
    out = {
        "experiment": "Burda, Grosse & Salakhutdinov (ICLR 2016), Table 1, MNIST, one stochastic layer",
        "date": date,
        "machine": first["machine"],
        "settings": settings,
        "seeds": sorted({s for (_, _, _, s) in records}),
        "seed_scheme": "seed s: init s, data s+1, training noise s+2; test side fixed (binarize 3, subset 4, "
                       "L_5000 noise 5, -ELBO noise 6)",
        "schedule": first["schedule"],
        "paper_nll": {m: {str(k): v for k, v in d.items()} for m, d in exp.PAPER_NLL.items()},
        "gap_target_nats": GAP_TARGET,
        "cells": cells,
        "ordering": _orderings(records, cells),
        "runs": [records[key] for key in sorted(records)],
    }
    exp.write_json(results / f"mnist_iwae-{date}.json", out)
    _figure(records, first, results / f"mnist_iwae-{date}.png")
    _print_table(cells)
    print(json.dumps(out["ordering"], indent=1))
    return 0


def _figure(records: dict, first: dict, path: Path) -> None:
    """Test NLL (the curve images) after every pass, the mean over the seeds each framework ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = {("vae", 1): "#9ecae1", ("vae", 5): "#4292c6", ("vae", 50): "#08519c",
               ("iwae", 1): "#fcae91", ("iwae", 5): "#fb6a4a", ("iwae", 50): "#a50f15"}
    for fw in FRAMEWORKS:
        for model, k in exp.RUNS:
            runs = list(_seed_runs(records, fw, model, k).values())
            if not runs:
                continue
            # the measured passes only (every pass, or the stage ends with --curve-at stage)
            epochs = [row["epoch"] for row in runs[0]["curve"] if "curve_nll" in row]
            nll = np.mean([[row["curve_nll"] for row in r["curve"] if "curve_nll" in row] for r in runs], axis=0)
            ax.plot(epochs, nll, "-o" if fw == "minivae" else "--x", color=colours[(model, k)], ms=4,
                    label=f"{model.upper()} k={k} ({fw}, {len(runs)} seeds)")
    s = first["settings"]
    ax.set_xlabel("passes over the training set")
    ax.set_ylabel(f"test NLL = -L_{s['k_eval']} (nats), {s['curve_images']} test images")
    cpu, cores = first["machine"]["cpu"], first["machine"]["cores"]
    passes = sum(st["passes"] for st in first["schedule"])
    ax.set_xticks(range(1, passes + 1))
    ax.set_title(f"MNIST, IWAE paper architecture, first {s['stages']} stages of its schedule\n"
                 f"({passes} passes over {s['train_images']} training images), mean over seeds; "
                 f"{cpu}, {cores} cores, 1 thread per framework\n"
                 "solid minivae, dashed PyTorch (VAE k=1 and IWAE k=1 coincide)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def _print_table(cells: list[dict]) -> None:
    """The README table: seed means, the paired gap per seed and its mean, -ELBO, active units, wall."""
    print("| model | k | paper | PyTorch NLL, mean (range) | minivae NLL, mean (range) | minivae − PyTorch per seed "
          "| gap mean ± sem | minivae − minivae on reference kernels, mean ± sem (range) "
          "| -ELBO PT / mv | active units PT / mv | wall s PT / mv (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def nll(rec):
        if rec is None:
            return "–"
        return f"{rec['nll']['mean']:.2f} ({rec['nll']['min']:.2f}–{rec['nll']['max']:.2f})"

    def mean_of(rec, key, fmt):
        return "–" if rec is None else fmt.format(float(np.mean(rec[key])))

    def units(rec):
        return "–" if rec is None else ",".join(str(u) for u in rec["active_units"])

    def mean_sem(d):
        return "–" if d is None else f"{d['mean']:+.2f} ± {d['sem'] or 0:.2f} (n={d['n']})"

    for c in cells:
        t, m, g = c.get("torch"), c.get("minivae"), c.get("gap")
        per_seed = "–" if g is None else " ".join(f"{v:+.2f}" for v in g["per_seed"])
        y = c.get("gap_to_reference_kernels")
        yard = "–" if y is None else f"{mean_sem(y)} ({y['min']:+.2f} to {y['max']:+.2f})"
        print(f"| {c['model'].upper()} | {c['k']} | {c['paper_nll']:.2f} | {nll(t)} | {nll(m)} | {per_seed} | "
              f"{mean_sem(g)} | {yard} | "
              f"{mean_of(t, 'test_neg_elbo', '{:.2f}')} / {mean_of(m, 'test_neg_elbo', '{:.2f}')} | "
              f"{units(t)} / {units(m)} | {mean_of(t, 'wall_s', '{:.0f}')} / {mean_of(m, 'wall_s', '{:.0f}')} |")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--report" in argv:  # --report SEED_FOLDER [SEED_FOLDER ...]
        folders = [Path(a) for a in argv[argv.index("--report") + 1 :]]
        if not folders:
            folders = [exp.ROOT / "benchmarks" / "results" / "mnist_iwae-runs"]
        return report(folders, time.strftime("%Y-%m-%d", time.gmtime()))
    if "--backend" in argv:  # numpy (default) or cupy: the whole experiment on the GPU
        i = argv.index("--backend")
        backend.set_backend(argv[i + 1])
        del argv[i : i + 2]
    framework = "minivae"
    if "--reference-kernels" in argv:
        # The same model on the plain NumPy provider instead of the compiled loops: the same math
        # summed in other orders. Its gap to the default run is float32 rounding amplified by
        # training, inside one framework: the yardstick for the minivae-PyTorch gap.
        argv.remove("--reference-kernels")
        set_kernels("reference")
        framework = REFERENCE_RUN

    def make(model, k, weights, noise_seed):
        adapter = MinivaeAdapter(model, k, weights, noise_seed)
        adapter.name = framework
        adapter.model.to_backend()
        adapter.opt = Adam(adapter.model.parameters(), lr=1e-3, betas=exp.ADAM_BETAS, eps=exp.ADAM_EPS)
        return adapter

    return exp.run_all(framework, make, argv)


if __name__ == "__main__":
    sys.exit(main())
