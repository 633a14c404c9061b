"""MNIST, IWAE paper Table 1, minivae side: VAE and IWAE for k in {1, 5, 50}.

The experiment itself (architecture, schedule, seeds, data stream, result files)
is in ``iwae_experiment.py``, shared with the PyTorch twin ``torch_mnist_iwae.py``.
This file is the minivae model behind it, built from the engine's public API
(minivae.models VAE / IWAE with tanh layers, minivae.optim.Adam,
importance_log_likelihood), plus ``--report``, which joins both frameworks'
records into ``results/mnist_iwae-<date>.json``, the figure and the README table.

    OMP_NUM_THREADS=1 python benchmarks/mnist_iwae.py --stages 2 --stop-at 09:12
    OMP_NUM_THREADS=1 python benchmarks/torch_mnist_iwae.py --stages 2 --stop-at 09:12
    python benchmarks/mnist_iwae.py --report

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
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iwae_experiment as exp  # noqa: E402

from minivae import no_grad  # noqa: E402
from minivae.models.ae import as_input  # noqa: E402
from minivae.models.iwae import IWAE, importance_log_likelihood  # noqa: E402
from minivae.optim import Adam  # noqa: E402
from minivae.providers import backend  # noqa: E402
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
# The report: both frameworks' records -> one JSON, the figure, the table
# -----------------------------------------------------------------------------


def _cells(records: dict[tuple[str, str, int], dict], others: dict[tuple[str, str, int], list[dict]]) -> list[dict]:
    rows = []
    for model, k in exp.RUNS:
        row: dict = {"model": model, "k": k, "paper_nll": exp.PAPER_NLL[model][k]}
        for fw in ("torch", "minivae"):
            rec = records.get((fw, model, k))
            if rec is None:
                continue
            row[fw] = {key: rec[key] for key in ("test_nll", "test_nll_sem", "test_neg_elbo", "active_units",
                                                 "passes", "truncated", "train_s", "eval_s", "wall_s",
                                                 "l5000_s_per_image")}
        for fw in ("torch", "minivae"):
            if fw in row and others.get((fw, model, k)):
                # the same cell with other seeds (weights, batches, noise), scored on the same test images
                row[fw]["other_seeds"] = [{key: o[key] for key in ("seeds", "test_nll", "test_neg_elbo",
                                                                  "active_units", "passes", "wall_s")}
                                          for o in others[(fw, model, k)]]
                nlls = [row[fw]["test_nll"]] + [o["test_nll"] for o in others[(fw, model, k)]]
                row[fw]["seed_range"] = float(max(nlls) - min(nlls))
        if "torch" in row and "minivae" in row:
            a = np.array(records[("minivae", model, k)]["test_nll_per_image"])
            b = np.array(records[("torch", model, k)]["test_nll_per_image"])
            diff = a - b  # the same test images under the same evaluation noise: a paired difference
            row["gap_minivae_minus_torch"] = float(diff.mean())
            row["gap_sem"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        rows.append(row)
    return rows


def _orderings(cells: list[dict], fw: str) -> dict[str, bool | None]:
    nll = {(c["model"], c["k"]): c[fw]["test_nll"] for c in cells if fw in c}
    out: dict[str, bool | None] = {}
    for k in (1, 5, 50):
        both = ("iwae", k) in nll and ("vae", k) in nll
        out[f"iwae<=vae k={k}"] = bool(nll[("iwae", k)] <= nll[("vae", k)]) if both else None
    have = all(("iwae", k) in nll for k in (1, 5, 50))
    out["iwae k=50 < k=5 < k=1"] = (bool(nll[("iwae", 50)] < nll[("iwae", 5)] < nll[("iwae", 1)]) if have else None)
    return out


def report(folder: Path, date: str, other_folders: list[Path] = ()) -> int:
    """Join the records of ``folder`` (the main seed) and of ``other_folders`` (other seeds)."""
    records: dict = {}
    others: dict = {}
    for path in sorted(p for p in folder.glob("*-k*.json") if not p.name.startswith(".")):  # not in-progress files
        rec = json.loads(path.read_text())
        records[(rec["framework"], rec["model"], rec["k"])] = rec
    for other in other_folders:
        for path in sorted(p for p in Path(other).glob("*-k*.json") if not p.name.startswith(".")):
            rec = json.loads(path.read_text())
            if rec["truncated"]:  # stopped early by --stop-at: not the same schedule, so not a seed of this cell
                print(f"left out (truncated at {rec['passes']} passes): {path}")
                continue
            others.setdefault((rec["framework"], rec["model"], rec["k"]), []).append(rec)
    if not records:
        print(f"--report: no run records in {folder}")
        return 1
    cells = _cells(records, others)
    first = next(iter(records.values()))
    out = {
        "experiment": "Burda, Grosse & Salakhutdinov (ICLR 2016), Table 1, MNIST, one stochastic layer",
        "date": date,
        "machine": first["machine"],
        "settings": first["settings"],
        "seeds": first["seeds"],
        "schedule": first["schedule"],
        "paper_nll": {m: {str(k): v for k, v in d.items()} for m, d in exp.PAPER_NLL.items()},
        "cells": cells,
        "ordering": {fw: _orderings(cells, fw) for fw in ("torch", "minivae")},
        "runs": [records[key] for key in sorted(records)],
        "runs_other_seeds": [rec for key in sorted(others) for rec in others[key]],
    }
    results = exp.ROOT / "benchmarks" / "results"
    exp.write_json(results / f"mnist_iwae-{date}.json", out)
    _figure(records, first, results / f"mnist_iwae-{date}.png")
    _print_table(cells, first)
    print(json.dumps(out["ordering"], indent=1))
    return 0


def _figure(records: dict, first: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = {("vae", 1): "#9ecae1", ("vae", 5): "#4292c6", ("vae", 50): "#08519c",
               ("iwae", 1): "#fcae91", ("iwae", 5): "#fb6a4a", ("iwae", 50): "#a50f15"}
    for (fw, model, k), rec in sorted(records.items()):
        epochs = [row["epoch"] for row in rec["curve"] if "curve_nll" in row]
        nll = [row["curve_nll"] for row in rec["curve"] if "curve_nll" in row]
        ax.plot(epochs, nll, "-o" if fw == "minivae" else "--x", color=colours[(model, k)], ms=4,
                label=f"{model.upper()} k={k} ({fw})")
    s = first["settings"]
    ax.set_xlabel("passes over the training set")
    ax.set_ylabel(f"test NLL = -L_{s['k_eval']} (nats), {s['curve_images']} test images")
    cpu, cores = first["machine"]["cpu"], first["machine"]["cores"]
    passes = sum(st["passes"] for st in first["schedule"])
    ax.set_xticks(range(1, passes + 1))
    ax.set_title(f"MNIST, IWAE paper architecture, first {s['stages']} stages of its schedule "
                 f"({passes} passes over {s['train_images']} training images)\n"
                 f"{cpu}, {cores} cores (shared), 1 thread per framework; solid minivae, dashed PyTorch", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def _print_table(cells: list[dict], first: dict) -> None:
    print("| model | k | paper NLL | PyTorch NLL | minivae NLL | gap (minivae - PyTorch) | "
          "PyTorch / minivae -ELBO | active units (PT / mv) | wall s (PT / mv) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        t, m = c.get("torch"), c.get("minivae")

        def f(rec, key, fmt="{:.2f}"):
            return "–" if rec is None else fmt.format(rec[key])

        gap = "–" if "gap_minivae_minus_torch" not in c else f"{c['gap_minivae_minus_torch']:+.2f} ± {c['gap_sem']:.2f}"
        for fw in ("torch", "minivae"):
            if c.get(fw, {}).get("other_seeds"):
                print(f"<!-- {fw} {c['model']} k={c['k']}: NLL over seeds "
                      f"{[c[fw]['test_nll']] + [o['test_nll'] for o in c[fw]['other_seeds']]}, "
                      f"range {c[fw]['seed_range']:.2f} -->")
        print(f"| {c['model'].upper()} | {c['k']} | {c['paper_nll']:.2f} | {f(t, 'test_nll')} | {f(m, 'test_nll')} | "
              f"{gap} | {f(t, 'test_neg_elbo')} / {f(m, 'test_neg_elbo')} | "
              f"{f(t, 'active_units', '{}')} / {f(m, 'active_units', '{}')} | "
              f"{f(t, 'wall_s', '{:.0f}')} / {f(m, 'wall_s', '{:.0f}')} |")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--report" in argv:
        argv.remove("--report")
        folder = exp.ROOT / "benchmarks" / "results" / "mnist_iwae-runs"
        if "--out" in argv:
            folder = Path(argv[argv.index("--out") + 1])
        others = [Path(argv[i + 1]) for i, a in enumerate(argv) if a == "--other-seeds"]
        return report(folder, time.strftime("%Y-%m-%d", time.gmtime()), others)
    if "--backend" in argv:  # numpy (default) or cupy: the whole experiment on the GPU
        i = argv.index("--backend")
        backend.set_backend(argv[i + 1])
        del argv[i : i + 2]

    def make(model, k, weights, noise_seed):
        adapter = MinivaeAdapter(model, k, weights, noise_seed)
        adapter.model.to_backend()
        adapter.opt = Adam(adapter.model.parameters(), lr=1e-3, betas=exp.ADAM_BETAS, eps=exp.ADAM_EPS)
        return adapter

    return exp.run_all("minivae", make, argv)


if __name__ == "__main__":
    sys.exit(main())
