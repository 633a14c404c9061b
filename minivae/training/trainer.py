"""Training with seeded mini-batches, per-epoch metrics and exact-resume checkpoints.

One run lives in one folder (see :mod:`minivae.training.runfolder` for the rules):

    config.json       the settings of the run (:class:`~minivae.training.config.TrainConfig`)
    metrics.json      per-epoch train and test metrics, plus the final test numbers and diagnostics
    metrics.csv       the same per-epoch numbers as a table
    checkpoint.npz    parameters, optimizer state, RNG state, epoch, config, history

The checkpoint (:mod:`minivae.training.checkpoint`) is written after the metrics
of its epoch and holds everything the next epoch depends on: parameters, Adam's
moment estimates and step count, and the state of the generator that shuffles
the data and draws the noise. Resuming therefore gives bit-for-bit the same
parameters as a run that was never interrupted.

Checkpoints come at the end of every ``save_every`` epochs, every
``checkpoint_seconds`` of training (default 5 minutes, at the next step
boundary) and when a stop is requested (:meth:`Trainer.request_stop`, which the
command line calls on SIGINT, SIGTERM and SIGHUP). The last two may fall inside
an epoch: the checkpoint then also records the position in that epoch (see
:mod:`minivae.training.checkpoint`), and resuming continues from that very step,
bit for bit.

Randomness: ``Generator(seed)`` spawns two independent streams, one for the
initial weights and one for training (shuffling and the models' noise).
Test-set evaluation draws from a separate generator seeded by (seed, epoch),
so evaluating never shifts the training stream.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

from minivae.models import build_model
from minivae.nn import Module
from minivae.optim import Adam
from minivae.providers import backend
from minivae.random import Generator
from minivae.tensor import no_grad
from minivae.training.checkpoint import (  # noqa: F401  (re-exported: the names used to live here)
    CHECKPOINT, CHECKPOINT_FORMAT, Checkpoint, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint,
)
from minivae.training.config import (  # noqa: F401
    CUSTOM_MODEL, IMAGE_DATA, RESUMABLE_KEYS, ConfigError, TrainConfig, config_differences,
)
from minivae.training.data import (
    DataError, Dataset, batches, binarize, binarize_dataset, load_dataset, save_binarized,
)
from minivae.training.memory import MemoryEstimateError, check_fits, loading_bytes, training_bytes
from minivae.training.runfolder import (  # noqa: F401
    RUN_OUTPUTS, RunFolder, RunFolderError, atomic_write_bytes, atomic_write_json, atomic_write_text,
)
from minivae.training.step import BadLoss, call_loss, training_step

#: A loss this many times larger than the run's first loss (in absolute value, at least 1)
#: has exploded: training stops as it does for NaN. A trained model only gets better than
#: its initialisation, so a legitimate run never comes near.
EXPLODING_FACTOR = 1e4
#: I(z; x) is O(N^2): the end-of-run diagnostics use at most this many test examples.
DIAGNOSTIC_EXAMPLES = 2000


#: Training time between two checkpoints at most, in seconds: a long epoch never risks more.
CHECKPOINT_SECONDS = 300.0


class TrainingDiverged(FloatingPointError):
    """The loss became NaN, infinite or exploded; the message names the epoch, the step and what was kept."""


class TrainingStopped(KeyboardInterrupt):
    """Training stopped at a step boundary on request (a signal); the state there was saved first."""

    def __init__(self, signum: int | None) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def blas_threads(n: int | None = 1) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block (None: leave it alone).

    These models multiply small matrices (tens to hundreds of rows): a
    multi-threaded BLAS spends more time waking and syncing threads than
    multiplying, and on a busy machine measured 5-10x slower than one thread.
    threadpoolctl ships with scikit-learn.
    """
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        yield
        return
    with threadpool_limits(int(n), user_api="blas"):
        yield


# =============================================================================
# Data and evaluation
# =============================================================================


def evaluate(model: Module, data: Dataset, rng: Generator, batch_size: int = 500,
             step: int | None = None) -> dict[str, float]:
    """Per-example averages of every entry of ``model.loss`` over ``data`` (no graph, eval mode);
    ``step`` goes to the loss (the KL warm-up weight; None: after the warm-up)."""
    totals: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for xb, yb in batches(data, batch_size, shuffle=False):
                for name, value in call_loss(model, xb, yb, rng, step=step).items():
                    totals[name] = totals.get(name, 0.0) + value.item() * len(xb)
    finally:
        model.train(was_training)
    return {name: total / len(data) for name, total in totals.items()}


TEST_BINARIZE_SEED = 20160101  # one fixed 0/1 test set for every binarizing run
STATIC_BINARIZE_OFFSET = 7919  # the static training sample's seed: the run's seed plus this
BINARIZED_TRAIN = "binarized_train.npz"  # where a static run keeps its sample


def load_data(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """The train and test splits. The split itself is fixed (seed 0), whatever the training seed.

    Raises :class:`DataError` when the two splits do not fit one model (different image sizes).
    """
    options: dict[str, Any] = {}
    if config.data in ("mnist", "fashion-mnist"):
        options = {"root": config.data_dir, "download": config.download}
    else:
        options = {"test_fraction": config.test_fraction, "seed": 0}
    train, test = load_dataset(config.data, "train", **options), load_dataset(config.data, "test", **options)
    if "test_fraction" in options and (len(test) < 1 or len(train) < config.batch_size):
        raise DataError(
            f"--test-fraction {config.test_fraction}: the split of {config.data} leaves {len(train)} training and "
            f"{len(test)} test examples; training needs at least one batch (--batch-size {config.batch_size}) "
            "and the test set at least one example"
        )
    if train.dim != test.dim or train.image_shape != test.image_shape:
        where = f" in --data-dir {config.data_dir}" if config.data_dir else ""
        shape = lambda d: "x".join(map(str, d.image_shape)) if d.image_shape else f"{d.dim} values"  # noqa: E731
        raise DataError(
            f"{config.data}{where}: the training images are {shape(train)} but the test images are {shape(test)}; "
            "one model cannot read both (mixed-up files?)"
        )
    if config.binarize != "none":
        # The test images are binarized once, with a seed shared by every run, so that runs
        # are scored on the same 0/1 test set. "static" fixes one sample of the training set
        # too (from the run's seed; the trainer saves it in the run folder); "dynamic" draws
        # a fresh one for every batch in the training loop.
        test = binarize_dataset(test, Generator(TEST_BINARIZE_SEED))
        if config.binarize == "static":
            train = binarize_dataset(train, Generator(config.seed + STATIC_BINARIZE_OFFSET))
    return train, test


# =============================================================================
# The training loop
# =============================================================================


#: What ``Trainer(config, out_dir, model=...)`` needs of a model (see :class:`Trainer`).
MODEL_PROTOCOL = ("loss", "parameters", "train", "eval", "state_dict", "load_state_dict")


def check_model_protocol(model: Any) -> None:
    """A one-line error naming what a model handed to the Trainer lacks."""
    missing = [name for name in MODEL_PROTOCOL if not callable(getattr(model, name, None))]
    if missing or not hasattr(model, "training"):
        missing += [] if hasattr(model, "training") else ["training (a flag)"]
        raise TypeError(
            f"Trainer(model=...): {type(model).__name__} lacks {', '.join(missing)}; a model needs loss(x, y, rng) "
            "-> {'loss': tensor, ...} and the rest of the protocol in Trainer's docstring (subclass "
            "minivae.nn.Module for parameters/train/eval/state_dict)"
        )
    if not model.parameters():
        raise ValueError(f"Trainer(model=...): {type(model).__name__}.parameters() is empty: nothing to train")


class Trainer:
    """Build the data, model and optimizer of a run, then ``fit()`` it epoch by epoch.

    The output folder is locked for as long as the trainer lives (:meth:`close`, or
    use it in a ``with`` block). ``resume=True`` continues from
    ``out_dir/checkpoint.npz`` and is an error when there is none; without it, a
    folder that holds a run is an error unless ``overwrite=True``, which first
    removes the files the run's manifest lists (and nothing else; a non-empty folder
    without a manifest is refused). ``threads`` caps BLAS threads while fitting.

    **Your own model.** ``Trainer(config, out_dir, model=my_model)`` trains any object
    with this small protocol (the built-in models follow it too), with the same run
    folder, checkpoints, resume and metrics; ``config.model`` is recorded as ``"custom"``
    and the config's data, epochs, batch size, lr and seed apply (its latent/hidden do not):

    * ``loss(x, y, rng) -> dict[str, Tensor]``: one-element tensors, averaged over the
      batch; ``"loss"`` is minimised, every entry is logged (a ``step`` keyword, if the loss
      takes one, gets the optimizer's step count, as the built-in models' KL warm-up does). ``x`` is a NumPy batch
      (rows are examples), ``y`` its labels or None, ``rng`` a ``minivae.random.Generator``
      for any noise (checkpointed, so resume is exact).
    * ``parameters()``, ``train(mode=True)`` / ``eval()`` with a ``training`` flag, and
      ``state_dict()`` / ``load_state_dict(state)`` for checkpoints: subclass
      :class:`minivae.nn.Module` and these come with it.
    * Optional, for the figures of :func:`minivae.training.figures.write_figures`:
      ``encode(x, y)`` and ``decode(z, y)`` (reconstructions, latent scatter, and the latent
      manifold when ``latent == 2``), ``sample(n, rng)`` (samples). The loss curves
      need nothing.

    To load such a run later, build the same model and call
    :func:`~minivae.training.checkpoint.load_checkpoint` (``load_run`` knows only the
    registered models).

    The checkpoint and metrics files are rewritten every ``save_every`` epochs and
    after the last one. By default that is every epoch for runs of up to 50 epochs
    and about 50 times in longer ones: each save rewrites the whole history, so
    saving after every one of hundreds of short epochs would cost more than training.
    They are also saved after ``checkpoint_seconds`` of training since the last save
    and when :meth:`request_stop` is called, at the next step boundary, even inside
    an epoch (the checkpoint then records the position in it).
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
        threads: int | None = 1,
        save_every: int | None = None,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        model: Any = None,
    ) -> None:
        if model is not None:
            check_model_protocol(model)
            config = dataclasses.replace(config, model=CUSTOM_MODEL)  # what config.json records
        elif config.model == CUSTOM_MODEL:
            raise ConfigError(f"model {CUSTOM_MODEL!r}: pass the model object, Trainer(config, out_dir, model=...)")
        self.custom_model = model
        self.config, self.out_dir = config, Path(out_dir)
        self.progress, self.log, self.threads = progress, log, threads
        if save_every is not None and save_every < 1:
            raise ValueError(f"save_every must be a positive number of epochs, got {save_every}")
        if not checkpoint_seconds > 0:
            raise ValueError(f"checkpoint_seconds must be a positive number of seconds, got {checkpoint_seconds}")
        self.save_every = save_every or max(1, min(config.epochs // 50, 1_000_000))
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.stop_signal: int | None = None  # set by request_stop(); honoured at the next step boundary
        self._stop_requested = False
        self.position: dict[str, Any] | None = None  # inside the next epoch, when resumed from a mid-epoch save
        self.saved_position: dict[str, Any] | None = None
        self.final_diagnostics: dict[str, Any] | None = None
        self.stopped: dict[str, Any] | None = None
        # The folder first: a second run into it, or an unusable path, fails before anything is loaded.
        self.folder = RunFolder(self.out_dir)
        try:
            self.folder.check(resume=resume, overwrite=overwrite, checkpoint=CHECKPOINT, writes=RUN_OUTPUTS)
            self._build(resume)
            if overwrite and not resume:  # only once the new run is known to start: a failed start loses nothing
                self.folder.clear()
            self.folder.remove_stale_temp_files()  # of writes killed half-way; we hold the lock
            self.folder.write_json("config.json", config.to_dict())
        except BaseException:
            self.folder.abandon()
            raise

    def _build(self, resume: bool) -> None:
        config = self.config
        backend.set_backend(config.backend)
        self.train_set, self.test_set = load_data(config)
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        root = Generator(config.seed)
        init_rng, self.rng = root.spawn(), root.spawn()
        if self.custom_model is not None:
            self.model = self.custom_model
        else:
            options = config.model_kwargs(self.steps_per_epoch)
            samples = config.k if "k" in options else 1
            flags = {"k": "--k", "positions": "--positions", "codebook_size": "--codebook-size",
                     "made_hidden": "--made-hidden"}
            check_fits(
                training_bytes(self.train_set.dim, config.latent, config.hidden, config.batch_size, samples,
                               model=config.model, options=options, num_classes=self.train_set.num_classes),
                f"{config.model} with --latent {config.latent} --hidden {' '.join(map(str, config.hidden))} "
                f"--batch-size {config.batch_size}"
                + "".join(f" {flag} {' '.join(map(str, v)) if isinstance(v, tuple) else v}"
                          for name, flag in flags.items() if (v := options.get(name)) is not None),
            )
            self.model = build_model(
                config.model, self.train_set.dim, config.latent, config.hidden, init_rng,
                num_classes=self.train_set.num_classes, **config.model_kwargs(self.steps_per_epoch),
            )
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self.epoch = self.saved_epoch = 0
        self.history: list[dict[str, Any]] = []

        path = self.checkpoint_path
        if resume:
            ckpt = load_checkpoint(path, self.model, self.optimizer, self.rng, config=config.to_dict())
            diff = config_differences(ckpt.config, config.to_dict(), ignore=RESUMABLE_KEYS)
            if diff:
                raise CheckpointError(
                    f"{path}: cannot resume with other settings (only {', '.join(RESUMABLE_KEYS)} may change):\n  "
                    + "\n  ".join(diff)
                )
            self._warn_if_config_edited(ckpt.config)
            self.epoch, self.history = ckpt.epoch, ckpt.history
            self.saved_epoch, self.position = ckpt.epoch, ckpt.position
            self.saved_position = ckpt.position
            self._first_loss = (ckpt.position or {}).get("first_loss")
            where = (f"at step {ckpt.position['step']} of epoch {self.epoch + 1}" if ckpt.position
                     else f"after epoch {self.epoch}")
            self.log(f"resuming {path} {where}")

    def _warn_if_config_edited(self, saved: dict[str, Any]) -> None:
        """config.json is a copy for reading; the checkpoint's settings are the ones a resumed run uses
        (with the command line's, which must agree). Say so when the copy was edited."""
        path = self.out_dir / "config.json"
        try:
            on_disk = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            on_disk = None
        if not isinstance(on_disk, dict):
            diff = ["it is missing or not valid JSON"] if path.exists() else []
        else:
            diff = config_differences(saved, on_disk)
        if diff:
            self.log(f"warning: {path} differs from the settings saved in the checkpoint ({'; '.join(diff)}); "
                     f"the checkpoint is authoritative (edits to config.json are not used), and config.json is "
                     "rewritten from the settings of this run")

    def close(self) -> None:
        """Release the folder's lock (the OS also does so when the process ends)."""
        self.folder.release()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def eval_rng(self, epoch: int) -> Generator:
        """The test-set noise of an epoch: its own stream, so evaluating never shifts training."""
        return Generator(self.config.seed * 1_000_003 + 7919 * epoch + 17)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.saved_epoch or self.saved_position)

    def kept(self) -> str:
        """What the folder holds now, in words (for messages after a stop): exactly what is on disk."""
        if self.saved_position:
            return (f"saved {self.checkpoint_path} at step {self.saved_position['step']} of {self.steps_per_epoch} "
                    f"in epoch {self.saved_epoch + 1}" + (f" and the metrics of epochs 1-{self.saved_epoch}"
                                                           if self.saved_epoch else ""))
        if self.saved_epoch:
            return f"{self.checkpoint_path} (after epoch {self.saved_epoch}) and the metrics were kept"
        if (self.out_dir / "metrics.json").is_file() and self.history:
            return f"no checkpoint had been written yet; metrics.json holds epochs 1-{self.history[-1]['epoch']}"
        return "no checkpoint had been written yet (only config.json is on disk)"

    def request_stop(self, signum: int | None = None) -> None:
        """Ask training to save and stop at the next step boundary (safe to call from a signal handler)."""
        self.stop_signal, self._stop_requested = signum, True

    def fit(self, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Train until ``config.epochs``; returns the per-epoch history."""
        if self.config.binarize == "static":  # the run's one fixed sample, saved with it (packed bits)
            self.folder.record(BINARIZED_TRAIN)
            save_binarized(self.out_dir / BINARIZED_TRAIN, self.train_set.x)
        self._last_save = time.monotonic()
        # One bar for the whole run (epochs are short); it shows the running epoch averages.
        total = self.config.epochs * self.steps_per_epoch
        bar = tqdm(total=total, initial=min(self.optimizer.steps, total), desc="training", unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        with blas_threads(self.threads), bar:
            history = self._fit(on_epoch_end, bar)
        self.folder.remove_stale_temp_files()  # a completed run leaves no temporary file behind
        return history

    def _fit(self, on_epoch_end: Callable[[dict[str, Any]], None] | None, bar: tqdm) -> list[dict[str, Any]]:
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            started = time.perf_counter()
            bar.set_description(f"epoch {epoch}/{self.config.epochs}")
            train_metrics = self._train_epoch(epoch, bar)
            # the KL weight of the epoch's last training step, so test and train losses compare
            last_step = max(self.optimizer.steps - 1, 0)
            test_metrics = evaluate(self.model, self.test_set, self.eval_rng(epoch), step=last_step)
            if not all(math.isfinite(v) for v in test_metrics.values()):
                self._diverged(f"the test loss is {test_metrics.get('loss')} after epoch {epoch}")
            row = {
                "epoch": epoch,
                "step": self.optimizer.steps,
                "seconds": round(time.perf_counter() - started, 4),
                "train": train_metrics,
                "test": test_metrics,
            }
            self.history.append(row)
            self.epoch = epoch
            if (epoch % self.save_every == 0 or epoch == self.config.epochs or self._stop_requested
                    or time.monotonic() - self._last_save >= self.checkpoint_seconds):
                self.save()
            if on_epoch_end is not None:
                on_epoch_end(row)
            if self._stop_requested:
                raise TrainingStopped(self.stop_signal)
        return self.history

    def save(self, position: dict[str, Any] | None = None) -> None:
        """Metrics first, then the checkpoint (both atomic), at the end of ``self.epoch`` or, with
        ``position``, inside the next epoch."""
        self.write_metrics()
        self.folder.record(CHECKPOINT)
        save_checkpoint(
            self.checkpoint_path, self.model, self.optimizer, self.rng, self.epoch, self.config.to_dict(), self.history,
            position=position,
        )
        self.saved_epoch, self.saved_position = self.epoch, position
        self._last_save = time.monotonic()

    def _loss_limit(self) -> float:
        first = self.history[0]["train"]["loss"] if self.history else getattr(self, "_first_loss", None)
        return math.inf if first is None else EXPLODING_FACTOR * max(abs(first), 1.0)

    def _diverged(self, what: str) -> None:
        """Record the stop in metrics.json (the checkpoint stays the last good one), then raise."""
        self.stopped = {"reason": what, "after_epoch": self.epoch, "checkpoint_epoch": self.saved_epoch}
        self.write_metrics()
        raise TrainingDiverged(
            f"training stopped: {what}; {self.kept()} (metrics.json records the stop). "
            "Try a smaller --lr or a KL --warmup."
        )

    def _train_epoch(self, epoch: int, bar: tqdm) -> dict[str, float]:
        model, opt = self.model, self.optimizer
        model.train()
        totals: dict[str, float] = {}
        seen = first = 0
        start, self.position = self.position, None
        if start is not None:  # resumed inside this epoch: redraw its order, then skip the batches already taken
            now = self.rng.get_state()
            self.rng.set_state(start["epoch_rng"])
        epoch_rng = self.rng.get_state()
        order = batches(self.train_set, self.config.batch_size, rng=self.rng)  # draws the epoch's permutation
        if start is not None:
            self.rng.set_state(now)
            first, seen, totals = int(start["step"]), int(start["seen"]), dict(start["totals"])
            order = itertools.islice(order, first, None)
        limit = self._loss_limit()
        for index, (xb, yb) in enumerate(order, start=first):
            if self.config.binarize == "dynamic":  # a fresh 0/1 sample of each image; the rng is checkpointed
                xb = binarize(xb, self.rng)
            try:
                out = training_step(model, opt, xb, yb, self.rng, limit=limit)
            except BadLoss as err:
                self._diverged(
                    f"{err} at epoch {epoch}, step {opt.steps + 1} (batch {index + 1} of {self.steps_per_epoch})"
                )
            if not math.isfinite(limit):  # the run's first loss sets the scale of an explosion
                self._first_loss = out["loss"].item()
                limit = self._loss_limit()
            seen += len(xb)
            for name, t in out.items():
                totals[name] = totals.get(name, 0.0) + t.item() * len(xb)
            bar.set_postfix({n: f"{totals[n] / seen:.3f}" for n in ("loss", "recon", "kl") if n in totals},
                            refresh=False)
            bar.update()
            due = time.monotonic() - self._last_save >= self.checkpoint_seconds
            if self._stop_requested or (due and index + 1 < self.steps_per_epoch):  # the epoch's end saves anyway
                # A step boundary: everything the rest of the epoch depends on goes into the checkpoint.
                self.save(position={"step": index + 1, "epoch_rng": epoch_rng, "totals": totals, "seen": seen,
                                    "first_loss": getattr(self, "_first_loss", None)})
                if self._stop_requested:
                    raise TrainingStopped(self.stop_signal)
        return {name: total / seen for name, total in totals.items()}

    def diagnostics(self, max_examples: int | None = None, progress: bool = False) -> dict[str, Any] | None:
        """Active units, per-dimension KL, I(z; x) and a collapse warning on (a subsample of) the test set.

        At most ``max_examples`` (default :data:`DIAGNOSTIC_EXAMPLES`) test examples, drawn with a fixed seed: I(z; x) costs O(N^2).
        None for models without an unconditional posterior q(z | x) (AE, DAE, CVAE) and for a
        test set of fewer than 2 examples (there is no variance to measure).
        """
        if not hasattr(self.model, "posterior") or getattr(self.model, "conditional", False):
            return None
        from minivae.training.diagnostics import diagnostics_report

        n = len(self.test_set)
        max_examples = DIAGNOSTIC_EXAMPLES if max_examples is None else max_examples
        if n < 2:
            return None
        rows = np.arange(n)
        if n > max_examples:
            rows = np.sort(Generator(self.config.seed + 4243).numpy.permutation(n)[:max_examples])
        self.model.eval()
        report = diagnostics_report(self.model, self.test_set.x[rows], rng=Generator(self.config.seed + 4242),
                                    progress=progress)
        report["examples"], report["test_examples"] = int(len(rows)), int(n)
        return report

    def finish(self, progress: bool = False) -> dict[str, Any] | None:
        """After :meth:`fit`: the diagnostics, computed once and added to metrics.json.

        The checkpoint and metrics are already on disk when this runs, so a failure
        here loses nothing; it propagates for the caller to report.
        """
        self.final_diagnostics = self.diagnostics(progress=progress) if self.history else None
        if self.final_diagnostics is not None:
            self.write_metrics()
        return self.final_diagnostics

    def write_metrics(self) -> None:
        """metrics.json (history + final test numbers) and metrics.csv, both atomically."""
        last = self.history[-1] if self.history else None
        final = None
        if last is not None and self.stopped is None:
            final = {"epoch": last["epoch"], "test": last["test"]}
            if "neg_elbo" in last["test"]:
                final["test_neg_elbo_nats"] = last["test"]["neg_elbo"]
            if self.final_diagnostics is not None:
                final["diagnostics"] = self.final_diagnostics
        units = "squared error per example" if self.config.likelihood == "mse" else "nats per example"
        document = {"config": self.config.to_dict(), "units": units, "epochs": self.history, "final": final}
        if self.stopped is not None:
            document["stopped"] = self.stopped
        self.folder.write_json("metrics.json", document)
        names = sorted({n for row in self.history for n in row["train"]})
        header = ["epoch", "step", "seconds"] + [f"{split}_{n}" for split in ("train", "test") for n in names]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        for row in self.history:
            writer.writerow(
                [row["epoch"], row["step"], row["seconds"]]
                + [repr(row[split].get(n, "")) for split in ("train", "test") for n in names]
            )
        self.folder.write_text("metrics.csv", text.getvalue())


def load_run(
    run_dir: str | os.PathLike, data_dir: str | None = None, download: bool = False
) -> tuple[TrainConfig, Module, Checkpoint]:
    """Rebuild a trained model from a run folder (for eval, sample and figures).

    The data settings come from the caller, never from the saved files: ``data_dir``
    (None keeps the saved one) and ``download`` (default False, so an edited config
    can never make evaluation reach the network).
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not run_dir.exists():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a run directory")
    ckpt = read_checkpoint(path)
    try:
        config = TrainConfig.from_dict(ckpt.config)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: the saved settings are not valid ({err})") from None
    config.download = bool(download)
    if data_dir is not None:
        config.data_dir = str(data_dir)
    if config.model == CUSTOM_MODEL:
        raise CheckpointError(
            f"{run_dir} was trained with a model of your own (config model {CUSTOM_MODEL!r}): build that model and "
            f"call minivae.training.checkpoint.load_checkpoint('{path}', model)"
        )
    train_set, _ = load_data(config)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    try:  # a saved config may ask for anything (an edited checkpoint): check before allocating
        check_fits(loading_bytes(config.model, train_set.dim, config.latent, config.hidden,
                                 config.model_kwargs(steps_per_epoch), train_set.num_classes),
                   f"{path}: the saved model ({config.model}, --latent {config.latent}, --hidden "
                   f"{' '.join(map(str, config.hidden))})")
    except MemoryEstimateError as err:
        raise CheckpointError(str(err)) from None
    model = build_model(
        config.model, train_set.dim, config.latent, config.hidden, Generator(0),
        num_classes=train_set.num_classes, **config.model_kwargs(steps_per_epoch),
    )
    load_checkpoint(path, model, config=config.to_dict())
    model.eval()
    return config, model, ckpt
