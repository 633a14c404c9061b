"""``minivae demo`` and ``minivae train``: a run folder, the training loop, signals that save and stop.

Ctrl-C, SIGTERM and SIGHUP save the state at the next step boundary and exit with
128 + the signal's number; errors are one line naming the flag or file (exit 2);
a diverged run exits 1.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from minivae.cli.options import error, signal_handlers, single_threaded_blas

DEMO = {"model": "vae", "data": "digits", "latent": 2, "hidden": [256, 128], "batch_size": 32, "lr": 1e-3}
DEMO_EPOCHS = 300


# =============================================================================
# demo and train
# =============================================================================


def signal_number(interrupt: BaseException) -> int:
    """The signal behind a KeyboardInterrupt (SIGINT unless it says otherwise)."""
    return getattr(interrupt, "signum", None) or signal.SIGINT


def os_error(err: OSError) -> str:
    """An OS error in one line: the path and the cause."""
    from minivae.training.runfolder import explain

    return f"{err.filename}: {explain(err)}" if err.filename else explain(err)


def save_on_signals(trainer):
    """While training: SIGINT, SIGTERM and SIGHUP ask the trainer to save and stop at the next step
    boundary; a second signal stops at once (every file is written atomically, so the last complete
    checkpoint stays as it was)."""
    from minivae.training.trainer import TrainingStopped

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None:
            raise TrainingStopped(signum)
        trainer.request_stop(signum)

    return signal_handlers(handler, signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))


def _run_training(command: str, config, out: Path, args: argparse.Namespace, *, figures: bool) -> int:
    from minivae.nn import StateDictError
    from minivae.providers.backend import BackendError
    from minivae.training.data import DataError
    from minivae.training.figures import write_figures
    from minivae.training.memory import MemoryEstimateError
    from minivae.training.runfolder import RunFolderError
    from minivae.training.trainer import CheckpointError, Trainer, TrainingDiverged

    quiet = args.quiet
    started = time.perf_counter()
    with single_threaded_blas():
        try:
            trainer = Trainer(config, out, resume=args.resume, overwrite=args.overwrite, progress=not quiet,
                              checkpoint_seconds=60 * args.checkpoint_minutes)
        except (BackendError, CheckpointError, StateDictError, DataError, RunFolderError, MemoryEstimateError,
                ValueError) as err:
            return error(command, err)
        except OSError as err:
            return error(command, os_error(err))
        with trainer:
            if trainer.epoch >= config.epochs:
                print(f"{out}: already trained for {trainer.epoch} epochs (--epochs {config.epochs}); nothing to do")
            try:
                every = max(1, config.epochs // 20)  # about 20 lines, whatever the number of epochs
                with save_on_signals(trainer):
                    trainer.fit(on_epoch_end=None if quiet else lambda row: _print_epoch(row, every, config.epochs))
            except TrainingDiverged as err:
                print(f"minivae {command}: {err}", file=sys.stderr)
                return 1
            except KeyboardInterrupt as stop:
                again = (f"resume with: {_rerun_command(args, '--resume')}" if trainer.has_checkpoint
                         else f"start again with: {_rerun_command(args, '--overwrite')}")
                name = signal.Signals(signal_number(stop)).name
                print(f"\nminivae {command}: interrupted at epoch {trainer.epoch + 1} ({name}); {trainer.kept()}; "
                      f"{again}", file=sys.stderr)
                return 128 + signal_number(stop)
            except OSError as err:  # a full disk, a read-only remount: the last complete checkpoint is untouched
                print(f"minivae {command}: error: cannot write {os_error(err)}; training stopped; {trainer.kept()}",
                      file=sys.stderr)
                return 1
            # The checkpoint and metrics are on disk: what follows is optional and may fail without loss.
            report = _optional(command, "the latent diagnostics", lambda: trainer.finish(progress=not quiet))
            paths = []
            if figures:
                from minivae.training.figures import FIGURE_NAMES

                trainer.folder.record(*FIGURE_NAMES)  # before writing: --overwrite must know them even if killed
                paths = _optional(command, "the figures", lambda: write_figures(
                    trainer.model, trainer.train_set, trainer.test_set, trainer.history, out, config.seed)) or []
                trainer.folder.prune()  # the figures this model has not
    seconds = time.perf_counter() - started
    last = trainer.history[-1]["test"] if trainer.history else {}
    units = "squared error" if config.likelihood == "mse" else "nats"
    print(f"\n{config.model} on {config.data}: {trainer.epoch} epochs in {seconds:.1f} s; test set, per example "
          f"({units}):")
    for name, value in last.items():
        print(f"  {name:<12} {value:9.3f}")
    if report is not None:
        from minivae.training.diagnostics import format_report

        print(format_report(report))
    if hasattr(trainer.model, "codebook_report") and trainer.history:  # VQ-VAE: codes used, dead, perplexity
        from minivae.models.vqvae import format_codebook_report

        codebook = trainer.model.codebook_report(trainer.test_set.x)
        print(format_codebook_report(codebook))
        paths = [*paths, trainer.folder.write_json("codebook.json", {"split": "test", **codebook})]
    print(f"wrote to {out}/: config.json, metrics.json, metrics.csv, checkpoint.npz"
          + "".join(f", {p.name}" for p in paths))
    return 0


def _optional(command: str, what: str, make: Callable[[], Any]) -> Any:
    """Run an optional last step; a failure is a warning (what is already saved stays saved)."""
    try:
        return make()
    except (OSError, ValueError, ArithmeticError, MemoryError) as err:
        print(f"minivae {command}: warning: {what} could not be made ({type(err).__name__}: {err}); "
              "the checkpoint and metrics are saved", file=sys.stderr)
        return None


def _rerun_command(args: argparse.Namespace, flag: str) -> str:
    """This command line with ``flag`` (--resume or --overwrite) in place of the other one."""
    argv = [a for a in getattr(args, "argv", None) or sys.argv[1:] if a not in ("--resume", "--overwrite")]
    return shlex.join(["minivae", *argv, flag])


def _print_epoch(row: dict[str, Any], every: int, last: int) -> None:
    if row["epoch"] % every and row["epoch"] not in (1, last):
        return
    parts = [f"{split} " + " ".join(f"{k}={v:.3f}" for k, v in row[split].items() if k != "neg_elbo")
             for split in ("train", "test")]
    tqdm.write(f"epoch {row['epoch']:>4}  " + "   ".join(parts))  # above the progress bar, not through it


def cmd_demo(args: argparse.Namespace) -> int:
    from minivae.training.trainer import TrainConfig

    config = TrainConfig(**DEMO, epochs=args.epochs, seed=args.seed, backend=args.backend)
    print(f"demo: a VAE with a 2-D latent space on the 8x8 digits, {args.epochs} epoch{'' if args.epochs == 1 else 's'} -> {args.out}/")
    return _run_training("demo", config, Path(args.out), args, figures=True)


def cmd_train(args: argparse.Namespace) -> int:
    from minivae.training.trainer import TrainConfig

    from minivae.training.config import likelihoods_of

    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{args.data}"
    supported = likelihoods_of(args.model)
    if args.likelihood is not None and args.likelihood not in supported:
        if not supported:
            return error("train", f"--likelihood: model {args.model} has no choice of likelihood; drop --likelihood")
        return error("train", f"--likelihood {args.likelihood}: model {args.model} supports {', '.join(supported)}")
    try:
        config = TrainConfig(
            model=args.model, data=args.data, latent=args.latent, hidden=args.hidden, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, likelihood=args.likelihood, beta=args.beta,
            warmup=args.warmup, k=args.k, noise=args.noise, noise_level=args.noise_level,
            test_fraction=args.test_fraction, data_dir=args.data_dir, download=args.download, backend=args.backend,
            estimator=args.estimator, binarize=args.binarize, codebook_size=args.codebook_size, positions=args.positions,
            commitment=args.commitment, ema=args.ema, restart_dead=args.restart_dead, made_hidden=args.made_hidden,
            free_bits=args.free_bits,
        )
    except ValueError as err:
        return error("train", err)
    return _run_training("train", config, out, args, figures=not args.no_figures)
