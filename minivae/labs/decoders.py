"""The decoder-expressivity lab: how much z carries as the decoder p(x | z) grows stronger.

The course notes' claim. For every x, ELBO(x) ≤ ln p(x), and on average the rate
term pays for the information in z: E_x KL(q(z | x) ‖ p(z)) ≥ I(z; x). A
factorised decoder Π_i p(x_i | z) cannot describe how pixels go together, so
that information has to come through z. A decoder that can model the data on
its own (in the limit p(x | z) = p_data(x)) gains nothing from z, and the ELBO,
which charges for every nat z carries, is best with z ignored: q(z | x) = p(z),
KL = 0, I(z; x) = 0 (posterior collapse).

The experiment. One VAE (Gaussian encoder, the same factorised decoder f(z) as a
base, the same latent size and training), with decoders of growing capacity
(:class:`~minivae.models.made.MADEDecoder`):

    factorised          l_i = f_i(z)
    direct              + Σ_{j<i} W_ij x_j                      (logistic autoregression)
    MADE H              + a masked hidden layer of width H over x_<i

By default z reaches the decoder only through f(z), so every decoder has the
same access to z and only its power to model x without z grows. With
``condition_hidden=True`` z is also added to every masked hidden unit (the
usual conditional MADE): on these 1438 training images the larger MADEs then
use z to memorise, and KL stops falling after the first autoregressive step
(README, "Decoder expressivity").

trained on the binarised digits (a fixed Bernoulli draw of every image, seeded).
For each: test -ELBO, KL, I(z; x), active units (:mod:`minivae.training.diagnostics`).
Then one remedy on the strongest decoder, free bits (each latent dimension's
KL below λ is free, so the optimiser stops pushing it to the prior) or a KL
warm-up, and what it costs in -ELBO.

Run it with ``minivae lab decoders`` (about 90 s on two shared cores).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from minivae.models.made import MADEVAE
from minivae.optim import Adam
from minivae.random import Generator
from minivae.tensor import no_grad
from minivae.training.data import Dataset, batches, binarize_dataset, load_dataset
from minivae.training.diagnostics import diagnostics_report

#: (label, made_hidden): the decoders compared, weakest first (None = factorised, () = direct path only)
CAPACITIES: tuple[tuple[str, tuple[int, ...] | None], ...] = (
    ("factorised", None),
    ("direct", ()),
    ("MADE 32", (32,)),
    ("MADE 128", (128,)),
    ("MADE 512", (512,)),
)


@dataclass
class DecoderLabConfig:
    """The settings of one lab run (all recorded in its JSON)."""

    seed: int = 0
    epochs: int = 100
    latent: int = 16
    hidden: int = 128  # encoder and factorised-decoder width
    batch_size: int = 64
    lr: float = 2e-3
    capacities: Sequence[tuple[str, Sequence[int] | None]] = field(default_factory=lambda: list(CAPACITIES))
    condition_hidden: bool = False  # z also into every masked hidden unit (else only through f(z))
    free_bits: float = 0.25  # λ, nats per latent dimension (remedy 1)
    warmup_epochs: int = 30  # linear KL warm-up length (remedy 2)
    remedies: Sequence[str] = ("free-bits", "warm-up")

    def validate(self) -> None:
        for name in ("epochs", "latent", "hidden", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"decoder lab: {name} must be a positive integer, got {value!r}")
        if not self.lr > 0 or self.free_bits < 0 or self.warmup_epochs < 0:
            raise ValueError("decoder lab: lr must be > 0, free_bits and warmup_epochs >= 0")
        if not self.capacities:
            raise ValueError("decoder lab: no decoders to compare")
        unknown = set(self.remedies) - {"free-bits", "warm-up"}
        if unknown:
            raise ValueError(f"decoder lab: unknown remedies {sorted(unknown)}; choose from 'free-bits', 'warm-up'")


def lab_data(seed: int) -> tuple[Dataset, Dataset]:
    """The digits' fixed train/test split, each binarised once with a seeded Bernoulli draw."""
    train = load_dataset("digits", "train", test_fraction=0.2, seed=0)
    test = load_dataset("digits", "test", test_fraction=0.2, seed=0)
    root = Generator(seed * 7919 + 1)
    return binarize_dataset(train, root.spawn()), binarize_dataset(test, root.spawn())


def autoregressive_parameters(model: MADEVAE) -> int:
    """Free weights of the decoder's autoregressive part (masked-out weights not counted)."""
    total = 0
    for name, p in model.decoder.named_parameters():
        if name.startswith("base."):
            continue
        owner = model.decoder
        for part in name.split(".")[:-1]:
            owner = getattr(owner, part)
        mask = getattr(owner, "mask", None)
        if mask is not None and name.endswith("weight"):
            total += int(np.asarray(mask).sum())
        else:
            total += p.size
    return total


def train_one(
    config: DecoderLabConfig,
    train: Dataset,
    test: Dataset,
    made_hidden: Sequence[int] | None,
    *,
    free_bits: float = 0.0,
    warmup_epochs: int = 0,
) -> dict[str, Any]:
    """Train one MADEVAE for ``config.epochs`` and measure it on the test set (nats per image)."""
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    root = Generator(config.seed)
    model = MADEVAE(
        train.dim, config.latent, config.hidden, rng=root.spawn(), made_hidden=made_hidden,
        condition_hidden=config.condition_hidden, free_bits=free_bits, warmup_steps=warmup_epochs * steps_per_epoch,
    )
    optimizer = Adam(model.parameters(), lr=config.lr)
    rng = root.spawn()
    started = time.perf_counter()
    for _ in range(config.epochs):
        for xb, _ in batches(train, config.batch_size, rng=rng):
            loss = model.loss(xb, None, rng, step=optimizer.steps)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    model.eval()
    with no_grad():
        # Ten draws of z per test image: the one-sample -ELBO is noisy.
        draws = [model.loss(test.x, None, Generator(config.seed + 100 + i)) for i in range(10)]
    report = diagnostics_report(model, test.x, rng=Generator(config.seed + 4242))
    kl_dims = np.asarray(report["kl_per_dim"])
    return {
        "made_hidden": None if made_hidden is None else list(made_hidden),
        "autoregressive_parameters": autoregressive_parameters(model),
        "free_bits": free_bits,
        "warmup_epochs": warmup_epochs,
        "test_neg_elbo": float(np.mean([d["neg_elbo"].item() for d in draws])),
        "test_recon": float(np.mean([d["recon"].item() for d in draws])),
        "test_kl": float(np.mean([d["kl"].item() for d in draws])),
        "mutual_information": report["mutual_information"],
        "mi_upper_bound": report["mi_upper_bound"],
        "active_units": report["active_units"],
        "dims_over_0.1_nats": int((kl_dims > 0.1).sum()),
        "kl_per_dim": report["kl_per_dim"],
        "train_seconds": round(seconds, 2),
    }


def run_lab(config: DecoderLabConfig | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every decoder of ``config.capacities``, then the remedies on the last (strongest) one."""
    config = config or DecoderLabConfig()
    config.validate()
    started = time.perf_counter()
    train, test = lab_data(config.seed)
    rows = []
    for label, made_hidden in config.capacities:
        row = {"label": label, **train_one(config, train, test, made_hidden)}
        rows.append(row)
        log(_line(row))
    strongest_label, strongest = config.capacities[-1]
    remedies = []
    for remedy in config.remedies:
        options = {"free_bits": config.free_bits} if remedy == "free-bits" else {"warmup_epochs": config.warmup_epochs}
        detail = f"λ = {config.free_bits} nats/dim" if remedy == "free-bits" else f"{config.warmup_epochs} epochs"
        row = {"label": f"{strongest_label} + {remedy} ({detail})", "remedy": remedy,
               **train_one(config, train, test, strongest, **options)}
        row["neg_elbo_cost"] = row["test_neg_elbo"] - rows[-1]["test_neg_elbo"]
        remedies.append(row)
        log(_line(row) + f"   cost in -ELBO: {row['neg_elbo_cost']:+.2f} nats")
    settings = asdict(config)
    settings["capacities"] = [[label, None if h is None else list(h)] for label, h in config.capacities]
    settings["remedies"] = list(config.remedies)
    return {
        "experiment": "decoder expressivity vs information in z (binarised 8x8 digits)",
        "units": "nats per test image",
        "config": settings,
        "train_examples": len(train),
        "test_examples": len(test),
        "decoders": rows,
        "remedies": remedies,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }


def _line(row: dict[str, Any]) -> str:
    return (f"{row['label']:<40} -ELBO {row['test_neg_elbo']:6.2f}  recon {row['test_recon']:6.2f}  "
            f"KL {row['test_kl']:5.2f}  I(z;x) {row['mutual_information']:5.2f}  active {row['active_units']:>2}  "
            f"({row['train_seconds']:.1f} s)")


def machine() -> dict[str, Any]:
    """CPU model, cores this process may use, BLAS library: what the wall time was measured on."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        info["usable_cores"] = os.cpu_count()
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({f"{lib.get('internal_api')} {lib.get('version')}" for lib in threadpool_info()
                               if lib.get("user_api") == "blas"})
    except ImportError:  # pragma: no cover - comes with scikit-learn
        info["blas"] = []
    return info


# =============================================================================
# The figure
# =============================================================================


def plot_lab(results: dict[str, Any], path: str | os.PathLike | None = None) -> Path | Any:
    """Four panels against decoder capacity: KL, I(z; x), active units, -ELBO; remedies as extra markers.

    Saved to ``path`` (returns the path) or, without one, returned as a figure a notebook shows inline.
    """
    from minivae.training.figures import InlineFigure as Figure, show_or_save

    rows, remedies = results["decoders"], results["remedies"]
    x = np.arange(len(rows))
    labels = [r["label"] for r in rows]
    panels = (
        ("test_kl", "KL(q(z|x) ‖ p(z)), nats"),
        ("mutual_information", "I(z; x), nats"),
        ("active_units", "active units"),
        ("test_neg_elbo", "-ELBO, nats (lower is better)"),
    )
    markers = {"free-bits": ("tab:red", "*"), "warm-up": ("tab:green", "D")}
    fig = Figure(figsize=(13, 3.6))
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(x, [r[key] for r in rows], "o-", color="tab:blue", label="ELBO training")
        for j, r in enumerate(remedies):  # side by side at the strongest decoder, so none hides another
            color, marker = markers.get(r["remedy"], ("k", "s"))
            ax.plot([x[-1] + 0.18 * (j + 1)], [r[key]], marker, color=color, markersize=9,
                    label=r["label"].split(" + ", 1)[1])
        if key == "active_units":
            ax.axhline(results["config"]["latent"], color="0.6", lw=0.8, ls=":")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    m = results["machine"]
    fig.suptitle(
        f"The stronger the decoder p(x|z), the less z carries (binarised digits, latent {results['config']['latent']}, "
        f"{results['config']['epochs']} epochs, seed {results['config']['seed']}; {results['wall_seconds']:.0f} s on "
        f"{m.get('cpu')}, {m.get('usable_cores')} cores, {', '.join(m.get('blas') or ['?'])})",
        fontsize=8,
    )
    fig.tight_layout()
    return show_or_save(fig, path)


def write_lab(results: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """decoders.json and decoders.png in ``out_dir`` (both written atomically)."""
    from minivae.training.runfolder import atomic_write_text

    out_dir = Path(out_dir)
    json_path = out_dir / "decoders.json"
    atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
    return [json_path, plot_lab(results, out_dir / "decoders.png")]
