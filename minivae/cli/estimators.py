"""``minivae estimators``: the gradient-variance lab on the command line.

    minivae estimators --f sin --dim 5 --samples 100 --seeds 200
    minivae estimators --f quadratic --plot figures/      # + variance vs D and vs n figures
    minivae estimators --vae                               # encoder-gradient variance on a trained VAE
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from minivae.labs.variance import FUNCTIONS

    p = subparsers.add_parser(
        "estimators",
        help="compare gradient estimators (reparameterization, score function, baselines) by their variance",
        description=(
            "For q = N(mu, diag sigma^2) and a test function f, estimate d/dmu and d/dsigma of E_q[f] with "
            "every estimator over many seeds; print mean, variance, error against the exact gradient and "
            "time per sample."
        ),
    )
    p.add_argument("--f", dest="function", choices=FUNCTIONS, default="quadratic", help="test function (default quadratic)")
    p.add_argument("--dim", type=int, default=5, help="latent dimension D (default 5)")
    p.add_argument("--samples", type=int, default=100, help="samples per gradient estimate (default 100)")
    p.add_argument("--seeds", type=int, default=200, help="independent estimates per estimator (default 200)")
    p.add_argument("--plot", metavar="DIR", default=None, help="also write variance-vs-D and variance-vs-n figures here")
    p.add_argument("--vae", action="store_true", help="also measure encoder-gradient variance on a trained Gaussian VAE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from minivae.labs import variance as lab

    for name, value, low in (("--dim", args.dim, 1), ("--samples", args.samples, 2), ("--seeds", args.seeds, 2)):
        if value < low:
            raise SystemExit(f"minivae estimators: {name} must be >= {low}, got {value}")
    problem = lab.make_problem(args.function, args.dim)
    stats = lab.run_estimators(problem, args.samples, args.seeds)
    print(lab.format_table(problem, stats))
    print("(mean var = Var of one estimate, averaged over the 2D coordinates; max |z| = largest bias in standard errors)")
    if args.plot:
        dims = [1, 2, 4, 8, 16, 32]
        samples = [2, 4, 16, 64, 256]
        seeds = min(args.seeds, 100)
        for path in lab.plot_sweeps(args.function, dims, samples, seeds, args.plot, args.dim, args.samples):
            print(f"wrote {path}")
    if args.vae:
        print("\nencoder-gradient variance on a briefly trained Gaussian VAE (digits):")
        for key, value in lab.vae_encoder_gradient_variance().items():
            print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0
