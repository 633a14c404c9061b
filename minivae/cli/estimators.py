"""``minivae estimators``: the gradient-variance lab on the command line.

    minivae estimators --f sin --dim 5 --samples 100 --seeds 200
    minivae estimators --f quadratic --plot figures/      # + variance vs D and vs n figures
    minivae estimators --vae                               # encoder-gradient variance on a trained VAE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Normal draws one table may take (--dim x --samples x --seeds): about a minute on one core.
#: Beyond it the command refuses up front instead of running for minutes without a word.
MAX_DRAWS = 200_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    from minivae.cli.options import HELP, checked_type
    from minivae.labs.variance import FUNCTIONS

    at_least_2 = checked_type(int, lambda v: v >= 2, "an integer >= 2")

    p = subparsers.add_parser(
        "estimators",
        help="compare gradient estimators (reparameterization, score function, baselines) by their variance",
        description=(
            "For q = N(mu, diag sigma^2) and a test function f, estimate d/dmu and d/dsigma of E_q[f] with "
            "every estimator over many seeds; print mean, variance, error against the exact gradient and "
            "time per sample."
        ),
        **HELP,
    )
    from minivae.cli.options import positive_int

    p.add_argument("--f", dest="function", choices=FUNCTIONS, default="quadratic", help="test function")
    p.add_argument("--dim", type=positive_int, default=5, help="latent dimension D")
    p.add_argument("--samples", type=at_least_2, default=100, help="samples per gradient estimate")
    p.add_argument("--seeds", type=at_least_2, default=200, help="independent estimates per estimator")
    p.add_argument("--plot", metavar="DIR", default=None, help="also write variance-vs-D and variance-vs-n figures here")
    p.add_argument("--vae", action="store_true", help="also measure encoder-gradient variance on a trained Gaussian VAE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from minivae.labs import variance as lab

    draws = args.dim * args.samples * args.seeds
    if draws > MAX_DRAWS:
        print(f"minivae estimators: error: --dim {args.dim} --samples {args.samples} --seeds {args.seeds} means "
              f"{draws:.3g} normal draws per estimator, above the limit of {MAX_DRAWS:.0e} (about a minute); "
              "lower one of them", file=sys.stderr)
        return 2
    if args.plot:
        from minivae.training.runfolder import RunFolderError, writable_folder

        try:
            writable_folder(args.plot, "--plot")  # before the minutes of work, not after
        except RunFolderError as err:
            print(f"minivae estimators: error: {err}", file=sys.stderr)
            return 2
    problem = lab.make_problem(args.function, args.dim)
    stats = lab.run_estimators(problem, args.samples, args.seeds)
    print(lab.format_table(problem, stats))
    print("(mean var = Var of one estimate, averaged over the 2D coordinates; max |z| = largest bias in standard errors)")
    if args.plot:
        dims = [1, 2, 4, 8, 16, 32]
        samples = [2, 4, 16, 64, 256]
        seeds = min(args.seeds, 100)
        print(f"variance sweeps for the figures: D in {dims}, n in {samples}, {seeds} seeds each ...", flush=True)
        from minivae.training.runfolder import staged_folder

        with staged_folder(args.plot) as stage:  # each figure whole or not at all
            made = lab.plot_sweeps(args.function, dims, samples, seeds, stage, args.dim, args.samples)
        for path in made:
            print(f"wrote {Path(args.plot) / Path(path).name}")
    if args.vae:
        print("\nencoder-gradient variance on a briefly trained Gaussian VAE (digits):")
        for key, value in lab.vae_encoder_gradient_variance().items():
            print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0
