"""CLI: ``minivae demo | train | eval | sample | gradcheck``.

    minivae demo                                   # VAE, 2-D latent, digits -> runs/demo/
    minivae train vae --data digits --latent 2 --hidden 128 --epochs 100 --batch-size 64 --lr 1e-3
    minivae train vae ... --out runs/x --resume    # continue a run after its last checkpoint
    minivae eval runs/demo --k 1000                # test recon, -ELBO, importance-sampled ln p(x)
    minivae sample runs/demo --n 64 --out s.png
    minivae gradcheck vae                          # finite differences vs backward, float64

Every command returns an exit code: 0 success, 1 a failed check or diverged
training, 2 bad arguments or unusable files (argparse's own convention).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

#: Demo settings: the same VAE as `train vae` with a wider two-layer MLP, which
#: gives clearer digits in a few seconds on a laptop.
DEMO = {"model": "vae", "data": "digits", "latent": 2, "hidden": [256, 128], "batch_size": 32, "lr": 1e-3}
DEMO_EPOCHS = 300


# =============================================================================
# argparse helpers
# =============================================================================


def _checked(kind: type, accept: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and rejects values outside the accepted range."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
non_negative_float = _checked(float, lambda v: v >= 0, "a number >= 0")


def _error(command: str, message: Any) -> int:
    print(f"minivae {command}: error: {message}", file=sys.stderr)
    return 2


def single_threaded_blas():
    """One BLAS thread: faster for these small matrices (see minivae.training.blas_threads)."""
    from minivae.training.trainer import blas_threads

    return blas_threads(1)


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="array backend (default numpy)")


def _set_backend(name: str) -> None:
    from minivae.providers import backend

    backend.set_backend(name)


# =============================================================================
# demo and train
# =============================================================================


def _run_training(command: str, config, out: Path, *, resume: bool, overwrite: bool, quiet: bool, figures: bool) -> int:
    from minivae.providers.backend import BackendError
    from minivae.training.data import DataError
    from minivae.training.figures import write_figures
    from minivae.nn import StateDictError
    from minivae.training.trainer import CheckpointError, Trainer, TrainingDiverged

    started = time.perf_counter()
    with single_threaded_blas():
        try:
            trainer = Trainer(config, out, resume=resume, overwrite=overwrite, progress=not quiet)
        except (BackendError, CheckpointError, StateDictError, DataError, ValueError) as err:
            return _error(command, err)
        if trainer.epoch >= config.epochs:
            print(f"{out}: already trained for {trainer.epoch} epochs (--epochs {config.epochs}); nothing to do")
        try:
            every = max(1, config.epochs // 20)  # about 20 lines, whatever the number of epochs
            trainer.fit(on_epoch_end=None if quiet else lambda row: _print_epoch(row, every, config.epochs))
        except TrainingDiverged as err:
            print(f"minivae {command}: {err}", file=sys.stderr)
            return 1
        paths = write_figures(trainer.model, trainer.train_set, trainer.test_set, trainer.history, out, config.seed) if figures else []
    seconds = time.perf_counter() - started
    last = trainer.history[-1]["test"] if trainer.history else {}
    print(f"\n{config.model} on {config.data}: {trainer.epoch} epochs in {seconds:.1f} s; test set, per example "
          "(loss, recon, kl, neg_elbo in nats):")
    for name, value in last.items():
        print(f"  {name:<12} {value:9.3f}")
    report = trainer.diagnostics() if trainer.history else None
    if report is not None:
        from minivae.training.diagnostics import format_report

        print(format_report(report))
    print(f"wrote to {out}/: config.json, metrics.json, metrics.csv, checkpoint.npz"
          + "".join(f", {p.name}" for p in paths))
    return 0


def _print_epoch(row: dict[str, Any], every: int, last: int) -> None:
    if row["epoch"] % every and row["epoch"] not in (1, last):
        return
    parts = [f"{split} " + " ".join(f"{k}={v:.3f}" for k, v in row[split].items() if k != "neg_elbo")
             for split in ("train", "test")]
    tqdm.write(f"epoch {row['epoch']:>4}  " + "   ".join(parts))  # above the progress bar, not through it


def cmd_demo(args: argparse.Namespace) -> int:
    from minivae.training.trainer import TrainConfig

    config = TrainConfig(**DEMO, epochs=args.epochs, seed=args.seed, backend=args.backend)
    print(f"demo: a VAE with a 2-D latent space on the 8x8 digits, {args.epochs} epochs -> {args.out}/")
    # The demo always starts afresh in its folder: running it twice must just work.
    return _run_training("demo", config, Path(args.out), resume=False, overwrite=True, quiet=args.quiet, figures=True)


def cmd_train(args: argparse.Namespace) -> int:
    from minivae.training.trainer import TrainConfig

    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{args.data}"
    try:
        config = TrainConfig(
            model=args.model, data=args.data, latent=args.latent, hidden=args.hidden, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, likelihood=args.likelihood, beta=args.beta,
            warmup=args.warmup, k=args.k, noise=args.noise, noise_level=args.noise_level,
            test_fraction=args.test_fraction, data_dir=args.data_dir, download=args.download, backend=args.backend,
            estimator=args.estimator,
        )
    except ValueError as err:
        return _error("train", err)
    return _run_training(
        "train", config, out, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet, figures=not args.no_figures
    )


# =============================================================================
# eval and sample
# =============================================================================


def _load(command: str, run_dir: str, backend_name: str):
    from minivae.providers.backend import BackendError
    from minivae.nn import StateDictError
    from minivae.training.trainer import CheckpointError, load_run

    try:
        _set_backend(backend_name)
        return load_run(run_dir)
    except (BackendError, CheckpointError, StateDictError, ValueError) as err:
        print(f"minivae {command}: error: {err}", file=sys.stderr)
        return None


def cmd_eval(args: argparse.Namespace) -> int:
    from minivae.models import importance_log_likelihood
    from minivae.random import Generator
    from minivae.training.trainer import atomic_write_json, evaluate, load_data

    loaded = _load("eval", args.run_dir, args.backend)
    if loaded is None:
        return 2
    config, model, ckpt = loaded
    _, test = load_data(config)
    with single_threaded_blas():
        metrics = evaluate(model, test, Generator(args.seed))
        result: dict[str, Any] = {"run": str(args.run_dir), "epoch": ckpt.epoch, "test_examples": len(test)}
        result.update({f"test_{k}": v for k, v in metrics.items()})
        if hasattr(model, "log_weights"):
            started = time.perf_counter()
            ll = importance_log_likelihood(model, test.x, k=args.k, rng=Generator(args.seed + 1),
                                           y=test.y if getattr(model, "conditional", False) else None,
                                           chunk=args.chunk)
            result.update({
                "test_log_likelihood": float(ll.mean()),
                "test_log_likelihood_stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
                "k": args.k,
                "seconds_log_likelihood": round(time.perf_counter() - started, 3),
            })
    print(f"{args.run_dir}: {config.model} on {config.data}, epoch {ckpt.epoch}, {len(test)} test examples (nats per example)")
    if "test_recon" in result:
        print(f"  reconstruction  -ln p(x|z)      {result['test_recon']:9.3f}")
    if "test_neg_elbo" in result:
        print(f"  -ELBO                           {result['test_neg_elbo']:9.3f}")
    if "test_log_likelihood" in result:
        print(f"  ln p(x), importance-sampled, k={args.k:<5} {result['test_log_likelihood']:9.3f} "
              f"± {result['test_log_likelihood_stderr']:.3f}")
    out = Path(args.run_dir) / "eval.json"
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from minivae.training.figures import plot_samples
    from minivae.random import Generator
    from minivae.training.trainer import load_data

    loaded = _load("sample", args.run_dir, args.backend)
    if loaded is None:
        return 2
    config, model, _ = loaded
    if not hasattr(model, "sample"):
        return _error("sample", f"a {config.model} model cannot generate samples")
    train, _ = load_data(config)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.png"
    label = None
    if args.label is not None:
        if not getattr(model, "conditional", False):
            return _error("sample", f"--label needs a conditional model (cvae); this run is a {config.model}")
        if not 0 <= args.label < model.num_classes:
            return _error("sample", f"--label must be in [0, {model.num_classes}), got {args.label}")
        label = args.label
    plot_samples(model, Generator(args.seed), train.image_shape, out, n=args.n, data=train, y=label)
    print(f"wrote {args.n} samples to {out}")
    return 0


# =============================================================================
# gradcheck
# =============================================================================


def gradcheck_model(name: str, seed: int = 0):
    """Finite differences vs backward for a tiny model's loss, in float64, with common random numbers.

    Returns the :class:`minivae.GradcheckReport` (one row per parameter).
    """
    from minivae import gradcheck
    from minivae.models import build_model
    from minivae.random import Generator

    input_dim, latent, hidden, batch, classes = 6, 2, 8, 4, 3
    # A score-function surrogate's gradient is right only in expectation, so the discrete-latent
    # model is checked with its Gumbel-softmax relaxation, which is differentiable for fixed noise.
    options = {"estimator": "gumbel"} if name == "bvae" else {}
    model = build_model(name, input_dim, latent, hidden, Generator(seed), num_classes=classes, **options)
    model.astype("float64")
    data = Generator(seed + 1)
    # Biases start at exactly 0, so at initialisation a dead ReLU layer can hand the next
    # layer a pre-activation of exactly 0: a kink, where finite differences are meaningless.
    # Checking at a random point (biases ~ N(0, 0.5²)) avoids that and keeps units active.
    for pname, p in model.named_parameters():
        if pname.endswith("bias"):
            p.data = p.data + data.normal(p.shape, dtype="float64", std=0.5)
    x = data.numpy.random((batch, input_dim))  # pixels in [0, 1]
    y = data.numpy.integers(0, classes, size=batch)
    noise = Generator(seed + 2)  # rewound before every evaluation: the same eps each time
    return gradcheck(lambda: model.loss(x, y, noise)["loss"], model, rng=noise, raise_on_failure=False)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    report = gradcheck_model(args.model, args.seed)
    print(f"gradcheck {args.model}: loss of a tiny model (float64), every parameter")
    print(report)
    print("PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


# =============================================================================
# registration
# =============================================================================


def register(subparsers: argparse._SubParsersAction) -> None:
    from minivae.training.data import DATASET_NAMES
    from minivae.models import MODELS
    from minivae.models.bvae import ESTIMATORS

    p = subparsers.add_parser("demo", help="train a 2-D VAE on the digits and write all figures (~10-20 s)")
    p.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS, help=f"default {DEMO_EPOCHS}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_backend(p)
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser("train", help="train a model; metrics, checkpoint and figures go to --out")
    p.add_argument("model", choices=sorted(MODELS), help="which model")
    p.add_argument("--data", choices=DATASET_NAMES, default="digits")
    p.add_argument("--latent", type=positive_int, default=2)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[128], help="width of each hidden layer")
    p.add_argument("--epochs", type=positive_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--beta", type=non_negative_float, default=1.0, help="KL weight (vae, cvae; beta-VAE when > 1)")
    p.add_argument("--warmup", type=non_negative_int, default=0, help="epochs of linear KL warm-up (vae, cvae)")
    p.add_argument("--k", type=positive_int, default=5, help="importance samples (iwae)")
    p.add_argument("--noise", choices=("gaussian", "mask"), default="gaussian", help="corruption (dae)")
    p.add_argument("--noise-level", type=non_negative_float, default=0.3, help="noise std or mask probability (dae)")
    p.add_argument("--likelihood", choices=("bernoulli", "gaussian", "mse"), default=None,
                   help="decoder likelihood (default: bernoulli for images, gaussian for 2-D points)")
    p.add_argument("--estimator", choices=ESTIMATORS, default="reinforce-baseline",
                   help="gradient estimator for the discrete latents of bvae")
    p.add_argument("--test-fraction", type=positive_float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    p.add_argument("--data-dir", default=None, help="folder with MNIST / Fashion-MNIST IDX files")
    p.add_argument("--download", action="store_true", help="download MNIST / Fashion-MNIST if missing")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true")
    _add_backend(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="test reconstruction, -ELBO and importance-sampled log-likelihood of a run")
    p.add_argument("run_dir")
    p.add_argument("--k", type=positive_int, default=1000, help="importance samples per test example (default 1000)")
    p.add_argument("--chunk", type=positive_int, default=100, help="samples evaluated at once (memory bound)")
    p.add_argument("--seed", type=int, default=0)
    _add_backend(p)
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("sample", help="draw samples from a trained model into a PNG")
    p.add_argument("run_dir")
    p.add_argument("--n", type=positive_int, default=64)
    p.add_argument("--out", default=None, help="PNG path (default RUN_DIR/samples.png)")
    p.add_argument("--label", type=int, default=None, help="class to generate (cvae)")
    p.add_argument("--seed", type=int, default=0)
    _add_backend(p)
    p.set_defaults(func=cmd_sample)

    p = subparsers.add_parser("gradcheck", help="finite-difference check of a tiny model's gradients (float64)")
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gradcheck)
