"""``minivae eval`` and ``minivae sample``: load a run folder's checkpoint, measure it or draw from it.

The measuring itself (the test loss, the importance-sampled ln p(x)) lives in
:mod:`minivae.training`; this module reads the flags, checks the files and writes the results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from minivae.cli.options import error, set_backend, single_threaded_blas
from minivae.training.likelihood import importance_log_likelihoods

# =============================================================================
# eval and sample
# =============================================================================


def load_run_or_report(command: str, args: argparse.Namespace):
    """(config, model, checkpoint) of ``args.run_dir``, or None after printing a one-line error."""
    from minivae.nn import StateDictError
    from minivae.providers.backend import BackendError
    from minivae.training.data import DataError
    from minivae.training.runfolder import folder_in_use
    from minivae.training.trainer import CheckpointError, load_run

    if folder_in_use(args.run_dir):
        print(f"minivae {command}: error: {args.run_dir}: another minivae process is using this folder (a "
              "training still writing it, or an eval or sample writing into it: it holds the folder's lock); wait for "
              "it to end, then try again", file=sys.stderr)
        return None
    try:
        set_backend(args.backend)
        return load_run(args.run_dir, data_dir=args.data_dir, download=args.download)
    except (BackendError, CheckpointError, StateDictError, DataError, ValueError) as err:
        print(f"minivae {command}: error: {err}", file=sys.stderr)
        return None


def _output(command: str, args: argparse.Namespace, default: Path, replaceable: bool):
    """(checked output path, the run folder's lock or None), or None after printing a one-line error.

    Checked before any work: a long evaluation must not end in 'cannot write'.
    ``replaceable``: the default file is this command's own and may be replaced, if the
    run's manifest lists it (minivae wrote it; otherwise it is the user's).
    A file written into the run folder takes the folder's lock (one writer at a time)
    and is listed in the run's manifest before it is written.
    """
    from minivae.training.runfolder import RunFolder, RunFolderError, read_manifest, writable_file

    out = Path(args.out) if args.out else default
    folder = None
    try:
        in_run = out.parent.resolve() == Path(args.run_dir).resolve()
        listed = read_manifest(out.parent, "RUN_DIR") if in_run else None
        replaceable = replaceable and not args.out and out.name in (listed or [])
        checked = writable_file(out, "--out", overwrite=args.overwrite or replaceable)
        if in_run:
            folder = RunFolder(args.run_dir, flag="RUN_DIR")
            if listed is not None:  # a run of an older minivae has no manifest
                folder.record(out.name)
        return checked, folder
    except RunFolderError as err:
        if folder is not None:
            folder.release()
        hint = "" if args.out or "choose another" in str(err) else " (pass --out FILE to write elsewhere)"
        print(f"minivae {command}: error: {err}{hint}", file=sys.stderr)
        return None


def _write_into(command: str, args: argparse.Namespace, default: Path, replaceable: bool,
                write: Callable[[Path], int]) -> int:
    """``write(out)`` into the checked output path (see :func:`_output`); afterwards a file listed in
    the run's manifest but not written (an interrupted command) is pruned from it, and the run
    folder's lock released."""
    checked = _output(command, args, default, replaceable)
    if checked is None:
        return 2
    out, folder = checked
    try:
        return write(out)
    finally:
        if folder is not None:
            folder.prune()
            folder.release()


def cmd_eval(args: argparse.Namespace) -> int:
    loaded = load_run_or_report("eval", args)
    if loaded is None:
        return 2
    config, model, ckpt = loaded
    return _write_into("eval", args, Path(args.run_dir) / "eval.json", True, lambda out: _eval(args, config, model, ckpt, out))


def _eval(args: argparse.Namespace, config, model, ckpt, out: Path) -> int:
    from minivae.random import Generator
    from minivae.training.memory import MemoryEstimateError, check_fits
    from minivae.training.runfolder import atomic_write_json
    from minivae.training.data import log_likelihood_refusal
    from minivae.training.trainer import evaluate, load_data

    conditional = getattr(model, "conditional", False)
    _, test = load_data(config)
    if hasattr(model, "log_weights"):
        # The (k, 100) log-weights of a block are kept, plus chunk x 100 decoder outputs at a time.
        try:
            check_fits(16 * args.k * 100 + 16 * min(args.chunk, args.k) * 100 * test.dim,
                       f"--k {args.k} --chunk {args.chunk}")
        except MemoryEstimateError as err:
            return error("eval", err)
    with single_threaded_blas():
        print(f"evaluating {config.model} on {len(test)} test examples of {config.data}")
        metrics = evaluate(model, test, Generator(args.seed))
        result: dict[str, Any] = {"run": str(args.run_dir), "epoch": ckpt.epoch, "test_examples": len(test)}
        result.update({f"test_{k}": v for k, v in metrics.items()})
        # A Bernoulli likelihood scores 0/1 pixels only: on grey ones it is a cross-entropy.
        refusal = log_likelihood_refusal(test.x, config.likelihood, config.binarize)
        if refusal is not None and hasattr(model, "log_weights"):
            result["log_likelihood_refused"] = refusal
        elif hasattr(model, "log_weights"):
            started = time.perf_counter()
            ll = importance_log_likelihoods(model, test, args.k, args.chunk, args.seed + 1, conditional)
            result.update({
                "test_log_likelihood": float(ll.mean()),
                "test_log_likelihood_stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
                "log_likelihood_of": "ln p(x|y)" if conditional else "ln p(x)",
                "k": args.k,
                "seconds_log_likelihood": round(time.perf_counter() - started, 3),
            })
    units = "squared error" if config.likelihood == "mse" else "nats"
    print(f"{args.run_dir}: {config.model} on {config.data}, epoch {ckpt.epoch}, {len(test)} test examples "
          f"({units} per example)")
    if "test_recon" in result:
        recon = "squared error" if config.likelihood == "mse" else "-ln p(x|z)"
        print(f"  reconstruction  {recon:<15} {result['test_recon']:9.3f}")
    if "test_neg_elbo" in result:
        print(f"  -ELBO                           {result['test_neg_elbo']:9.3f}")
    if "log_likelihood_refused" in result:
        print(f"  no ln p(x): {result['log_likelihood_refused']}")
    if "test_log_likelihood" in result:
        what = f"{'ln p(x|y)' if conditional else 'ln p(x)'}, importance-sampled, k={args.k}"
        print(f"  {what:<31} {result['test_log_likelihood']:9.3f} "
              f"± {result['test_log_likelihood_stderr']:.3f}")
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    loaded = load_run_or_report("sample", args)
    if loaded is None:
        return 2
    config, model, _ = loaded
    if not hasattr(model, "sample"):
        return error("sample", f"a {config.model} model cannot generate samples")
    label = None
    if args.label is not None:
        if not getattr(model, "conditional", False):
            return error("sample", f"--label needs a conditional model (cvae); this run is a {config.model}")
        if not 0 <= args.label < model.num_classes:
            return error("sample", f"--label must be in [0, {model.num_classes}), got {args.label}")
        label = args.label
    # Never the training's samples.png: a name of its own, refused if it exists (unless --overwrite).
    name = f"samples-n{args.n}-seed{args.seed}" + (f"-label{label}" if label is not None else "") + ".png"
    suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else "png"
    if suffix not in ("png", "pdf", "svg") and not Path(args.out).is_dir():
        return error("sample", f"--out {args.out}: a picture is written as .png, .pdf or .svg (by the suffix); "
                                f"got {Path(args.out).suffix or 'no suffix'}")
    return _write_into("sample", args, Path(args.run_dir) / name, False, lambda out: _sample(args, model, config, label, out))


def _sample(args: argparse.Namespace, model, config, label: int | None, out: Path) -> int:
    from minivae.random import Generator
    from minivae.training.figures import plot_samples
    from minivae.training.memory import MemoryEstimateError, check_fits
    from minivae.training.trainer import load_data

    train, _ = load_data(config)
    try:  # the n decoded samples, their latent codes and the picture of them, a few copies each
        check_fits(16 * args.n * (train.dim + getattr(model, "latent", 0) + 4), f"--n {args.n}")
    except MemoryEstimateError as err:
        return error("sample", err)
    if hasattr(model, "fit_prior"):  # the VQ-VAE's prior over codes: code frequencies on the training set
        model.fit_prior(train.x)
    plot_samples(model, Generator(args.seed), train.image_shape, out, n=args.n, data=train, y=label)
    print(f"wrote {args.n} samples to {out}")
    return 0
