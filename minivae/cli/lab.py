"""``minivae lab decoders``: how much z carries as the decoder grows stronger.

    minivae lab decoders                          # the README's run -> runs/lab-decoders/
    minivae lab decoders --out examples/results   # decoders.json and decoders.png there
    minivae lab decoders --epochs 20 --quick      # two decoders, one remedy: a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from minivae.cli.options import non_negative_float, non_negative_int, positive_int

    p = subparsers.add_parser("lab", help="experiments from the course notes, with a figure (lab decoders)")
    labs = p.add_subparsers(dest="lab", metavar="LAB", required=True)
    d = labs.add_parser(
        "decoders",
        help="train one VAE with decoders of growing power (factorised -> MADE) and measure KL, I(z;x), active units",
        description=(
            "Trains the same VAE on the binarised digits with a factorised decoder and autoregressive (MADE) "
            "decoders of growing capacity, then a remedy (free bits, KL warm-up) on the strongest; writes "
            "decoders.json and decoders.png (see minivae/labs/decoders.py)."
        ),
    )
    d.add_argument("--epochs", type=positive_int, default=100, help="epochs per model (default 100)")
    d.add_argument("--seed", type=non_negative_int, default=0, help="seeds the weights, batches, noise and binarisation")
    d.add_argument("--latent", type=positive_int, default=16, help="latent dimensions (default 16)")
    d.add_argument("--free-bits", type=non_negative_float, default=0.25, help="λ in nats per latent dimension")
    d.add_argument("--warmup", type=non_negative_int, default=30, help="epochs of KL warm-up for that remedy")
    d.add_argument("--condition-hidden", action="store_true",
                   help="also feed z to every masked hidden unit (the usual conditional MADE)")
    d.add_argument("--quick", action="store_true", help="only the factorised and the direct decoder, free bits only")
    d.add_argument("--out", default="runs/lab-decoders", help="output folder (default runs/lab-decoders)")
    d.set_defaults(func=cmd_decoders)


def cmd_decoders(args: argparse.Namespace) -> int:
    from minivae.labs.decoders import CAPACITIES, DecoderLabConfig, run_lab, write_lab
    from minivae.training.trainer import blas_threads

    config = DecoderLabConfig(
        seed=args.seed, epochs=args.epochs, latent=args.latent, free_bits=args.free_bits,
        warmup_epochs=args.warmup, condition_hidden=args.condition_hidden,
    )
    if args.quick:
        config.capacities, config.remedies = list(CAPACITIES[:2]), ["free-bits"]
    try:
        config.validate()
    except ValueError as err:
        print(f"minivae lab decoders: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    from minivae.training.runfolder import RunFolderError, writable_folder

    try:
        writable_folder(out, "--out")  # before the minutes of training, not after
    except RunFolderError as err:
        print(f"minivae lab decoders: error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"decoder lab: {len(config.capacities)} decoders + {len(config.remedies)} remedies, {config.epochs} epoch{'' if config.epochs == 1 else 's'} each, "
          f"seed {config.seed} -> {out}/")
    try:
        with blas_threads(1):
            results = run_lab(config)
    except KeyboardInterrupt:
        print("minivae lab decoders: interrupted; nothing was written", file=sys.stderr)
        return 130
    try:
        paths = write_lab(results, out)
    except OSError as err:
        print(f"minivae lab decoders: error: cannot write to {out}: {err}", file=sys.stderr)
        return 2
    print(f"{time.perf_counter() - started:.1f} s; wrote " + ", ".join(str(p) for p in paths))
    return 0
