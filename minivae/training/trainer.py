"""Training with seeded mini-batches, per-epoch metrics and exact-resume checkpoints.

One run lives in one directory:

    config.json       the settings of the run (TrainConfig)
    metrics.json      per-epoch train and test metrics, plus the final test numbers
    metrics.csv       the same per-epoch numbers as a table
    checkpoint.npz    parameters, optimizer state, RNG state, epoch, config, history

Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so a crash or Ctrl-C mid-write never destroys what was saved
before. The checkpoint is written at the end of every epoch, after that epoch's
metrics, and holds everything the next epoch depends on: parameters, Adam's
moment estimates and step count, and the state of the generator that shuffles
the data and draws the noise. Resuming therefore gives bit-for-bit the same
parameters as a run that was never interrupted.

Randomness: ``Generator(seed)`` spawns two independent streams, one for the
initial weights and one for training (shuffling and the models' noise).
Test-set evaluation draws from a separate generator seeded by (seed, epoch),
so evaluating never shifts the training stream.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from minivae.providers import backend
from minivae.training.data import DATASET_NAMES, Dataset, batches, load_dataset
from minivae.models import MODELS, build_model, model_options
from minivae.nn import Module, StateDictError
from minivae.optim import Adam
from minivae.random import Generator
from minivae.tensor import no_grad

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "minivae-checkpoint-1"
IMAGE_DATA = ("digits", "mnist", "fashion-mnist")
#: Settings that may change when a run is resumed: everything else must match,
#: or the resumed run would not be a continuation of the saved one.
RESUMABLE_KEYS = ("epochs", "backend", "data_dir", "download")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and step."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed or saved with other settings."""


@dataclass
class TrainConfig:
    """Everything that defines a run. ``hidden`` is one width per hidden layer."""

    model: str = "vae"
    data: str = "digits"
    latent: int = 2
    hidden: list[int] = field(default_factory=lambda: [128])
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    likelihood: str | None = None  # None: bernoulli for images, gaussian for 2-D points
    beta: float = 1.0
    warmup: int = 0  # epochs of linear KL warm-up (vae, cvae)
    k: int = 5  # importance samples (iwae)
    noise: str = "gaussian"  # dae corruption: gaussian or mask
    noise_level: float = 0.3
    test_fraction: float = 0.2
    data_dir: str | None = None
    download: bool = False
    backend: str = "numpy"
    estimator: str = "reinforce-baseline"  # gradient estimator of discrete latents (bvae)

    def __post_init__(self) -> None:
        if isinstance(self.hidden, (int, np.integer)):
            self.hidden = [int(self.hidden)]
        self.hidden = [int(h) for h in self.hidden]
        if self.likelihood is None:
            self.likelihood = "bernoulli" if self.data in IMAGE_DATA else "gaussian"
        self.validate()

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model: unknown {self.model!r}; registered models are: {', '.join(MODELS)}")
        if self.data not in DATASET_NAMES:
            raise ValueError(f"data: unknown {self.data!r}; valid names are: {', '.join(DATASET_NAMES)}")
        positive = {"latent": self.latent, "epochs": self.epochs, "batch_size": self.batch_size, "k": self.k}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be one or more positive layer widths, got {self.hidden}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.beta < 0 or self.warmup < 0:
            raise ValueError(f"beta and warmup must be >= 0, got beta={self.beta}, warmup={self.warmup}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"config has unknown settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_kwargs(self, steps_per_epoch: int) -> dict[str, Any]:
        """The options of :func:`build_model` that this model takes, from these settings."""
        wanted = {
            "likelihood": self.likelihood,
            "beta": self.beta,
            "warmup_steps": self.warmup * steps_per_epoch,
            "k": self.k,
            "noise": self.noise,
            "level": self.noise_level,
            "estimator": self.estimator,
        }
        return {name: wanted[name] for name in model_options(self.model) if name in wanted}


def config_differences(saved: dict[str, Any], current: dict[str, Any], ignore: Sequence[str] = ()) -> list[str]:
    """Human-readable 'key: saved X, now Y' lines for every setting that differs."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


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
# Atomic files
# =============================================================================


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)  # atomic on POSIX and Windows when on the same file system
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# =============================================================================
# Checkpoints
# =============================================================================


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Adam,
    rng: Generator,
    epoch: int,
    config: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    """Write one .npz with everything needed to resume (atomically)."""
    arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        if isinstance(value, np.ndarray):
            arrays[f"opt/{key}"] = value
        else:
            meta[key] = list(value) if isinstance(value, tuple) else value
    # Strings go in as 0-d unicode arrays, so loading never needs pickle.
    arrays["format"] = np.array(CHECKPOINT_FORMAT)
    arrays["opt_meta"] = np.array(json.dumps(meta))
    arrays["rng"] = np.array(json.dumps(rng.get_state()))
    arrays["epoch"] = np.array(int(epoch))
    arrays["config"] = np.array(json.dumps(config))
    arrays["history"] = np.array(json.dumps(history))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    rng_state: dict[str, Any]
    epoch: int
    config: dict[str, Any]
    history: list[dict[str, Any]]


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle involved)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({err})") from err
    if "format" not in files or str(files["format"][()]) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a minivae checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    optimizer = json.loads(str(files["opt_meta"][()]))
    optimizer.update({k[len("opt/"):]: v for k, v in files.items() if k.startswith("opt/")})
    return Checkpoint(
        params={k[len("param/"):]: v for k, v in files.items() if k.startswith("param/")},
        optimizer=optimizer,
        rng_state=json.loads(str(files["rng"][()])),
        epoch=int(files["epoch"][()]),
        config=json.loads(str(files["config"][()])),
        history=json.loads(str(files["history"][()])),
    )


def load_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Adam | None = None,
    rng: Generator | None = None,
    config: dict[str, Any] | None = None,
) -> Checkpoint:
    """Restore parameters (and optimizer and RNG state, if given) from ``path``.

    A model of another architecture raises :class:`StateDictError` naming the
    mismatched parameters AND, when ``config`` is given, the settings that differ.
    """
    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt.params)
    except StateDictError as err:
        diff = config_differences(ckpt.config, config, ignore=RESUMABLE_KEYS) if config is not None else []
        hint = ("\nsettings that differ from the saved run:\n  " + "\n  ".join(diff)) if diff else ""
        raise StateDictError(f"{path}: checkpoint of another architecture. {err}{hint}") from err
    if optimizer is not None:
        optimizer.load_state_dict(ckpt.optimizer)
    if rng is not None:
        rng.set_state(ckpt.rng_state)
    return ckpt


# =============================================================================
# Evaluation
# =============================================================================


def evaluate(model: Module, data: Dataset, rng: Generator, batch_size: int = 500) -> dict[str, float]:
    """Per-example averages of every entry of ``model.loss`` over ``data`` (no graph, eval mode)."""
    totals: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for xb, yb in batches(data, batch_size, shuffle=False):
                for name, value in model.loss(xb, yb, rng).items():
                    totals[name] = totals.get(name, 0.0) + value.item() * len(xb)
    finally:
        model.train(was_training)
    return {name: total / len(data) for name, total in totals.items()}


def load_data(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """The train and test splits. The split itself is fixed (seed 0), whatever the training seed."""
    options: dict[str, Any] = {}
    if config.data in ("mnist", "fashion-mnist"):
        options = {"root": config.data_dir, "download": config.download}
    else:
        options = {"test_fraction": config.test_fraction, "seed": 0}
    return load_dataset(config.data, "train", **options), load_dataset(config.data, "test", **options)


# =============================================================================
# The training loop
# =============================================================================


class Trainer:
    """Build the data, model and optimizer of a run, then ``fit()`` it epoch by epoch.

    ``resume=True`` continues from ``out_dir/checkpoint.npz`` when there is one;
    without it, an existing checkpoint is an error unless ``overwrite=True`` (so
    a finished run is never replaced by accident). ``threads`` caps BLAS threads
    while fitting (see :func:`blas_threads`).

    The checkpoint and metrics files are rewritten every ``save_every`` epochs and
    after the last one. By default that is every epoch for runs of up to 50 epochs
    and about 50 times in longer ones: each save rewrites the whole history, so
    saving after every one of hundreds of short epochs would cost more than training.
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
    ) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.progress, self.log, self.threads = progress, log, threads
        if save_every is not None and save_every < 1:
            raise ValueError(f"save_every must be a positive number of epochs, got {save_every}")
        self.save_every = save_every or max(1, config.epochs // 50)
        backend.set_backend(config.backend)
        self.train_set, self.test_set = load_data(config)
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)

        root = Generator(config.seed)
        init_rng, self.rng = root.spawn(), root.spawn()
        self.model = build_model(
            config.model, self.train_set.dim, config.latent, config.hidden, init_rng,
            num_classes=self.train_set.num_classes, **config.model_kwargs(self.steps_per_epoch),
        )
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        self.epoch = self.saved_epoch = 0
        self.history: list[dict[str, Any]] = []

        path = self.checkpoint_path
        if path.exists() and resume:
            ckpt = load_checkpoint(path, self.model, self.optimizer, self.rng, config=config.to_dict())
            diff = config_differences(ckpt.config, config.to_dict(), ignore=RESUMABLE_KEYS)
            if diff:
                raise CheckpointError(
                    f"{path}: cannot resume with other settings (only {', '.join(RESUMABLE_KEYS)} may change):\n  "
                    + "\n  ".join(diff)
                )
            self.epoch, self.history = ckpt.epoch, ckpt.history
            self.saved_epoch = ckpt.epoch
            self.log(f"resuming {path} after epoch {self.epoch}")
        elif path.exists() and not overwrite:
            raise CheckpointError(
                f"{self.out_dir} already holds a run ({path.name}); pass --resume to continue it, "
                "or choose another --out directory"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out_dir / "config.json", config.to_dict())

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def eval_rng(self, epoch: int) -> Generator:
        """The test-set noise of an epoch: its own stream, so evaluating never shifts training."""
        return Generator(self.config.seed * 1_000_003 + 7919 * epoch + 17)

    def fit(self, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Train until ``config.epochs``; returns the per-epoch history."""
        # One bar for the whole run (epochs are short); it shows the running epoch averages.
        total = self.config.epochs * self.steps_per_epoch
        bar = tqdm(total=total, initial=min(self.optimizer.steps, total), desc="training", unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        with blas_threads(self.threads), bar:
            return self._fit(on_epoch_end, bar)

    def _fit(self, on_epoch_end: Callable[[dict[str, Any]], None] | None, bar: tqdm) -> list[dict[str, Any]]:
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            started = time.perf_counter()
            bar.set_description(f"epoch {epoch}/{self.config.epochs}")
            train_metrics = self._train_epoch(epoch, bar)
            test_metrics = evaluate(self.model, self.test_set, self.eval_rng(epoch))
            row = {
                "epoch": epoch,
                "step": self.optimizer.steps,
                "seconds": round(time.perf_counter() - started, 4),
                "train": train_metrics,
                "test": test_metrics,
            }
            self.history.append(row)
            self.epoch = epoch
            if epoch % self.save_every == 0 or epoch == self.config.epochs:
                self.write_metrics()
                save_checkpoint(
                    self.checkpoint_path, self.model, self.optimizer, self.rng, epoch, self.config.to_dict(), self.history
                )
                self.saved_epoch = epoch
            if on_epoch_end is not None:
                on_epoch_end(row)
        return self.history

    def _train_epoch(self, epoch: int, bar: tqdm) -> dict[str, float]:
        model, opt = self.model, self.optimizer
        model.train()
        totals: dict[str, float] = {}
        seen = 0
        for index, (xb, yb) in enumerate(batches(self.train_set, self.config.batch_size, rng=self.rng)):
            if hasattr(model, "step"):
                model.step = opt.steps  # drives the KL warm-up
            out = model.loss(xb, yb, self.rng)
            value = out["loss"].item()
            if not math.isfinite(value):
                kept = (
                    f"the last good checkpoint {self.checkpoint_path} (after epoch {self.saved_epoch}) was kept"
                    if self.checkpoint_path.exists() else "no checkpoint had been written yet"
                )
                raise TrainingDiverged(
                    f"training stopped: the loss is {value} at epoch {epoch}, step {opt.steps + 1} "
                    f"(batch {index + 1} of {self.steps_per_epoch}); {kept}. "
                    "Try a smaller --lr or a KL --warmup."
                )
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            seen += len(xb)
            for name, t in out.items():
                totals[name] = totals.get(name, 0.0) + (value if name == "loss" else t.item()) * len(xb)
            bar.set_postfix({n: f"{totals[n] / seen:.3f}" for n in ("loss", "recon", "kl") if n in totals},
                            refresh=False)
            bar.update()
        return {name: total / seen for name, total in totals.items()}

    def diagnostics(self) -> dict[str, Any] | None:
        """Active units, per-dimension KL, I(z; x) and a collapse warning on the test set.

        None for models without an unconditional posterior q(z | x) (AE, DAE, CVAE).
        """
        if not hasattr(self.model, "posterior") or getattr(self.model, "conditional", False):
            return None
        from minivae.training.diagnostics import diagnostics_report

        self.model.eval()
        return diagnostics_report(self.model, self.test_set.x, rng=Generator(self.config.seed + 4242))

    def write_metrics(self) -> None:
        """metrics.json (history + final test numbers) and metrics.csv, both atomically."""
        last = self.history[-1] if self.history else None
        final = None
        if last is not None:
            final = {"epoch": last["epoch"], "test": last["test"]}
            if "neg_elbo" in last["test"]:
                final["test_neg_elbo_nats"] = last["test"]["neg_elbo"]
            if self.epoch >= self.config.epochs:
                final["diagnostics"] = self.diagnostics()
        atomic_write_json(
            self.out_dir / "metrics.json",
            {"config": self.config.to_dict(), "units": "nats per example", "epochs": self.history, "final": final},
        )
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
        atomic_write_text(self.out_dir / "metrics.csv", text.getvalue())


def load_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, Module, Checkpoint]:
    """Rebuild a trained model from a run directory (for eval, sample and figures)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    ckpt = read_checkpoint(path)
    config = TrainConfig.from_dict(ckpt.config)
    train_set, _ = load_data(config)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    model = build_model(
        config.model, train_set.dim, config.latent, config.hidden, Generator(0),
        num_classes=train_set.num_classes, **config.model_kwargs(steps_per_epoch),
    )
    load_checkpoint(path, model, config=config.to_dict())
    model.eval()
    return config, model, ckpt
