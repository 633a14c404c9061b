"""CLI: ``minivae demo | train | eval | sample | gradcheck``.

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
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
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


def checked_type(kind: type, accept: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and rejects values outside the accepted range."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = _integral_float(text) if kind is int else None  # "1e8" is an integer too
            if value is None:
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


def _integral_float(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


positive_int = checked_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = checked_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked_type(float, lambda v: v > 0, "a positive number")
non_negative_float = checked_type(float, lambda v: v >= 0, "a number >= 0")


def _error(command: str, message: Any) -> int:
    print(f"minivae {command}: error: {message}", file=sys.stderr)
    return 2


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that appends "(default: X)", except where there is nothing to show
    (on/off flags, a default of None) or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


#: Every command shows its defaults in --help.
HELP = {"formatter_class": DefaultsFormatter}


def single_threaded_blas():
    """One BLAS thread: faster for these small matrices (see minivae.training.blas_threads)."""
    from minivae.training.trainer import blas_threads

    return blas_threads(1)


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="array backend")


def _set_backend(name: str) -> None:
    from minivae.providers import backend

    backend.set_backend(name)


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


@contextlib.contextmanager
def save_on_signals(trainer):
    """While training: SIGINT, SIGTERM and SIGHUP ask the trainer to save and stop at the next step
    boundary; a second signal stops at once (every file is written atomically, so the last complete
    checkpoint stays as it was)."""
    from minivae.training.trainer import TrainingStopped

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None:
            raise TrainingStopped(signum)
        trainer.request_stop(signum)

    wanted = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


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
            return _error(command, err)
        except OSError as err:
            return _error(command, os_error(err))
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
    print(f"demo: a VAE with a 2-D latent space on the 8x8 digits, {args.epochs} epochs -> {args.out}/")
    return _run_training("demo", config, Path(args.out), args, figures=True)


def cmd_train(args: argparse.Namespace) -> int:
    from minivae.training.trainer import TrainConfig

    from minivae.training.config import likelihoods_of

    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{args.data}"
    supported = likelihoods_of(args.model)
    if args.likelihood is not None and args.likelihood not in supported:
        if not supported:
            return _error("train", f"--likelihood: model {args.model} has no choice of likelihood; drop --likelihood")
        return _error("train", f"--likelihood {args.likelihood}: model {args.model} supports {', '.join(supported)}")
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
        return _error("train", err)
    return _run_training("train", config, out, args, figures=not args.no_figures)


# =============================================================================
# eval and sample
# =============================================================================


def _load(command: str, args: argparse.Namespace):
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
        _set_backend(args.backend)
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


def _log_likelihoods(model, test, k: int, chunk: int, seed: int, conditional: bool) -> np.ndarray:
    """Importance-sampled ln p(x) (ln p(x|y) for a conditional model), a block of examples at a time with progress."""
    from minivae.models import importance_log_likelihood
    from minivae.random import Generator

    rng = Generator(seed)
    block = 100  # importance_log_likelihood's own batch: the draws are the same as in one call
    parts = []
    with tqdm(total=len(test), desc=f"ln p(x), k={k}", unit="example", dynamic_ncols=True) as bar:
        for start in range(0, len(test), block):
            rows = slice(start, start + block)
            parts.append(importance_log_likelihood(model, test.x[rows], k=k, rng=rng, chunk=chunk, batch_size=block,
                                                   y=test.y[rows] if conditional else None))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def cmd_eval(args: argparse.Namespace) -> int:
    loaded = _load("eval", args)
    if loaded is None:
        return 2
    config, model, ckpt = loaded
    checked = _output("eval", args, Path(args.run_dir) / "eval.json", replaceable=True)
    if checked is None:
        return 2
    out, folder = checked
    try:
        return _eval(args, config, model, ckpt, out)
    finally:
        if folder is not None:
            folder.prune()  # eval.json listed but not written (interrupted): not this run's any more
            folder.release()


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
            return _error("eval", err)
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
            ll = _log_likelihoods(model, test, args.k, args.chunk, args.seed + 1, conditional)
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
    loaded = _load("sample", args)
    if loaded is None:
        return 2
    config, model, _ = loaded
    if not hasattr(model, "sample"):
        return _error("sample", f"a {config.model} model cannot generate samples")
    label = None
    if args.label is not None:
        if not getattr(model, "conditional", False):
            return _error("sample", f"--label needs a conditional model (cvae); this run is a {config.model}")
        if not 0 <= args.label < model.num_classes:
            return _error("sample", f"--label must be in [0, {model.num_classes}), got {args.label}")
        label = args.label
    # Never the training's samples.png: a name of its own, refused if it exists (unless --overwrite).
    name = f"samples-n{args.n}-seed{args.seed}" + (f"-label{label}" if label is not None else "") + ".png"
    suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else "png"
    if suffix not in ("png", "pdf", "svg") and not Path(args.out).is_dir():
        return _error("sample", f"--out {args.out}: a picture is written as .png, .pdf or .svg (by the suffix); "
                                f"got {Path(args.out).suffix or 'no suffix'}")
    checked = _output("sample", args, Path(args.run_dir) / name, replaceable=False)
    if checked is None:
        return 2
    out, folder = checked
    try:
        return _sample(args, model, config, label, out)
    finally:
        if folder is not None:
            folder.prune()
            folder.release()


def _sample(args: argparse.Namespace, model, config, label: int | None, out: Path) -> int:
    from minivae.random import Generator
    from minivae.training.figures import plot_samples
    from minivae.training.memory import MemoryEstimateError, check_fits
    from minivae.training.trainer import load_data

    train, _ = load_data(config)
    try:  # the n decoded samples, their latent codes and the picture of them, a few copies each
        check_fits(16 * args.n * (train.dim + getattr(model, "latent", 0) + 4), f"--n {args.n}")
    except MemoryEstimateError as err:
        return _error("sample", err)
    if hasattr(model, "fit_prior"):  # the VQ-VAE's prior over codes: code frequencies on the training set
        model.fit_prior(train.x)
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
    # The VQ-VAE's loss is piecewise constant in the encoder output; its gradient comes from
    # straight-through nodes, checked against the surrogate they differentiate (models/vqvae.py).
    fn = model.gradcheck_loss(x, y, noise) if hasattr(model, "gradcheck_loss") else lambda: model.loss(x, y, noise)["loss"]
    return gradcheck(fn, model, rng=noise, raise_on_failure=False)


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
    _add_backend(p)
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
    _add_backend(p)
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
    _add_backend(p)
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
    _add_backend(p)
    p.set_defaults(func=cmd_sample)

    p = subparsers.add_parser("gradcheck", help="finite-difference check of a tiny model's gradients (float64)",
                              **HELP)
    p.add_argument("model", choices=sorted(MODELS), help="which model")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    p.set_defaults(func=cmd_gradcheck)


# Shared with the other command modules (minivae.cli.explore), so a run is loaded, and its
# errors and flags read, exactly as for eval.
load_run_or_report = _load
report_error = _error
add_backend_flag = _add_backend
add_data_source_flags = _add_data_source
