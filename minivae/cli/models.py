"""CLI: ``minivae demo | train | eval | sample | gradcheck``: their flags, in one place.

    minivae demo                                   # VAE, 2-D latent, digits -> runs/demo/
    minivae train vae --data digits --latent 2 --hidden 128 --epochs 100 --batch-size 64 --lr 1e-3
    minivae train vae ... --out runs/x --resume    # continue a run after its last checkpoint
    minivae eval runs/demo --k 1000                # test recon, -ELBO, importance-sampled ln p(x)
    minivae sample runs/demo --n 64 --out s.png
    minivae gradcheck vae                          # finite differences vs backward, float64

Every command returns an exit code: 0 success, 1 a failed check or diverged
training (or a disk error once training had started), 2 bad arguments or unusable
files (argparse's own convention), 128 + the signal's number when stopped by a
signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP. Training saves
its state at the next step boundary before it stops. Errors are one line naming
the flag or file at fault.

The commands themselves: :mod:`.train` (demo, train), :mod:`.evaluate` (eval, sample);
shared flag types and errors: :mod:`.options`.
"""

from __future__ import annotations

import argparse

from minivae.cli.evaluate import cmd_eval, cmd_sample, load_run_or_report
from minivae.cli.options import (
    HELP,
    add_backend,
    error,
    single_threaded_blas,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from minivae.cli.train import DEMO, DEMO_EPOCHS, cmd_demo, cmd_train
from minivae.models.checks import gradcheck_model


# =============================================================================
# gradcheck
# =============================================================================


def cmd_gradcheck(args: argparse.Namespace) -> int:
    report = gradcheck_model(args.model, args.seed)
    print(f"gradcheck {args.model}: loss of a tiny model (float64), every parameter")
    if args.model == "vqvae":
        print("(the straight-through gradient against differences of its surrogate, sg[.] frozen at the point: "
              "see VQVAE.gradcheck_loss; the running statistics are parameters with no gradient)")
    print(report)
    print("PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


# =============================================================================
# registration
# =============================================================================


def _likelihood_help() -> str:
    from minivae.models import MODELS
    from minivae.training.config import ALL_LIKELIHOODS, likelihoods_of

    by = {name: [m for m in MODELS if name in likelihoods_of(m)] for name in ALL_LIKELIHOODS}
    none = [m for m in MODELS if not likelihoods_of(m)]
    return ("decoder likelihood (default: bernoulli for images, gaussian for 2-D points); "
            + "; ".join(f"{name}: {', '.join(models)}" for name, models in by.items() if models)
            + (f"; none to choose for {', '.join(none)}" if none else ""))


def _add_checkpoint_minutes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-minutes", type=positive_float, default=5.0,
                   help="also save a checkpoint after this much training time, even inside an epoch "
                        "(besides the end of epochs, and on Ctrl-C, SIGTERM or SIGHUP)")


def _add_data_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST / Fashion-MNIST IDX files (default: the run's own setting)")
    p.add_argument("--download", action="store_true",
                   help="download MNIST / Fashion-MNIST if missing (never done without this flag)")


def register(subparsers: argparse._SubParsersAction) -> None:
    from minivae.models import MODELS
    from minivae.models.bvae import ESTIMATORS
    from minivae.training.config import ALL_LIKELIHOODS
    from minivae.training.data import DATASET_NAMES

    seed_help = "random seed (an integer >= 0)"
    p = subparsers.add_parser("demo", help="train a 2-D VAE on the digits and write all figures (~10-20 s)", **HELP)
    p.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS, help="training epochs")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the demo run in --out after its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (its files are removed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_checkpoint_minutes(p)
    add_backend(p)
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser("train", help="train a model; metrics, checkpoint and figures go to --out", **HELP)
    p.add_argument("model", choices=sorted(MODELS), help="which model")
    p.add_argument("--data", choices=DATASET_NAMES, default="digits", help="data set")
    p.add_argument("--latent", type=positive_int, default=2, help="latent dimensions")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[128], help="width of each hidden layer")
    p.add_argument("--epochs", type=positive_int, default=100, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=64, help="examples per step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--beta", type=non_negative_float, default=1.0, help="KL weight (vae, cvae; beta-VAE when > 1)")
    p.add_argument("--warmup", type=non_negative_int, default=0, help="epochs of linear KL warm-up (vae, cvae)")
    p.add_argument("--k", type=positive_int, default=5, help="importance samples (iwae)")
    p.add_argument("--noise", choices=("gaussian", "mask"), default="gaussian", help="corruption (dae)")
    p.add_argument("--noise-level", type=non_negative_float, default=0.3, help="noise std or mask probability (dae)")
    p.add_argument("--likelihood", choices=ALL_LIKELIHOODS, default=None, help=_likelihood_help())
    p.add_argument("--estimator", choices=ESTIMATORS, default="reinforce-baseline",
                   help="gradient estimator for the discrete latents of bvae")
    p.add_argument("--binarize", choices=("none", "dynamic", "static"), default="none",
                   help="grey images to 0/1 pixels for a Bernoulli likelihood: a fresh sample each use "
                        "(dynamic) or one fixed sample saved with the run (static); without it eval "
                        "reports no ln p(x) on grey images")
    p.add_argument("--codebook-size", type=positive_int, default=32, help="codes in the codebook (vqvae)")
    p.add_argument("--positions", type=positive_int, default=4,
                   help="code vectors per example, each of size --latent (vqvae)")
    p.add_argument("--commitment", type=non_negative_float, default=0.25, help="commitment weight beta (vqvae)")
    p.add_argument("--ema", action="store_true", help="update the codebook by moving averages, not by the loss (vqvae)")
    p.add_argument("--restart-dead", action="store_true", help="move long-unused codes onto encoder outputs (vqvae)")
    p.add_argument("--made-hidden", type=positive_int, nargs="*", default=[64],
                   help="masked hidden widths of the MADE decoder; none: the direct path only (madevae)")
    p.add_argument("--free-bits", type=non_negative_float, default=0.0,
                   help="nats per latent dimension the KL term does not charge (madevae)")
    p.add_argument("--test-fraction", type=positive_float, default=0.2, help="share of digits / 2-D points held out")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    p.add_argument("--out", default=None, help="run folder (default runs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz (an error if none)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (its files are removed)")
    _add_data_source(p)
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_checkpoint_minutes(p)
    add_backend(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="test reconstruction, -ELBO and importance-sampled log-likelihood of a run",
                              **HELP)
    p.add_argument("run_dir", help="the run folder (holds checkpoint.npz)")
    p.add_argument("--k", type=positive_int, default=1000, help="importance samples per test example")
    p.add_argument("--chunk", type=positive_int, default=100, help="samples evaluated at once (memory bound)")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    p.add_argument("--out", default=None, help="JSON file for the results (default RUN_DIR/eval.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_data_source(p)
    add_backend(p)
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("sample", help="draw samples from a trained model into a PNG", **HELP)
    p.add_argument("run_dir", help="the run folder (holds checkpoint.npz)")
    p.add_argument("--n", type=positive_int, default=64, help="number of samples")
    p.add_argument("--out", default=None,
                   help="picture file, .png, .pdf or .svg by its suffix (default RUN_DIR/samples-nN-seedS.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--label", type=int, default=None, help="class to generate (cvae)")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    _add_data_source(p)
    add_backend(p)
    p.set_defaults(func=cmd_sample)

    p = subparsers.add_parser("gradcheck", help="finite-difference check of a tiny model's gradients (float64)",
                              **HELP)
    p.add_argument("model", choices=sorted(MODELS), help="which model")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    p.set_defaults(func=cmd_gradcheck)


# Shared with the other command modules (minivae.cli.explore, exercise) and benchmarks/profile_demo.py,
# so a run is loaded, and its errors and flags read, exactly as for eval.
__all__ = ["DEMO", "DEMO_EPOCHS", "HELP", "add_backend_flag", "add_data_source_flags", "load_run_or_report",
           "non_negative_int", "positive_int", "register", "report_error", "single_threaded_blas"]
report_error = error
add_backend_flag = add_backend
add_data_source_flags = _add_data_source
