"""The settings of one training run (:class:`TrainConfig`) and what may differ on resume.

A config is plain data: it is written to ``config.json`` and into every checkpoint,
and a resumed run must have the same settings as the saved one except for the
few in :data:`RESUMABLE_KEYS`.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from minivae.models import MODELS, model_options
from minivae.training.data import BINARIZE_MODES, DATASET_NAMES

IMAGE_DATA = ("digits", "mnist", "fashion-mnist")
#: Settings that may change when a run is resumed: everything else must match,
#: or the resumed run would not be a continuation of the saved one.
RESUMABLE_KEYS = ("epochs", "backend", "data_dir", "download")
#: ``model`` of a run whose model object was handed to the Trainer (``Trainer(config, out, model=m)``)
#: rather than built from a registered name: it has no builder options and no likelihood choice.
CUSTOM_MODEL = "custom"
#: Decoder likelihoods of the models that take a ``likelihood`` option. A builder may
#: declare its own with a ``likelihoods`` attribute (``builder.likelihoods = (...)``);
#: a model without a ``likelihood`` option has none to choose.
ALL_LIKELIHOODS = ("bernoulli", "gaussian", "mse")
_LIKELIHOODS = {"ae": ALL_LIKELIHOODS, "dae": ALL_LIKELIHOODS}


def likelihoods_of(model: str) -> tuple[str, ...]:
    """The decoder likelihoods ``model`` supports; () when it has no choice of likelihood."""
    declared = getattr(MODELS.get(model), "likelihoods", None)
    if declared is not None:
        return tuple(declared)
    if model not in MODELS or "likelihood" not in model_options(model):
        return ()
    # Only the plain autoencoders may use "mse": a VAE's ELBO needs a normalised density.
    return _LIKELIHOODS.get(model, ("bernoulli", "gaussian"))


class ConfigError(ValueError):
    """A setting outside its valid range; the message names the setting's command-line flag."""


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
    binarize: str = "none"  # none | dynamic | static: grey images -> 0/1 pixels for a Bernoulli likelihood
    codebook_size: int = 32  # K codes (vqvae)
    positions: int = 4  # M code vectors per example, each of size --latent (vqvae)
    commitment: float = 0.25  # β of the commitment term (vqvae; the paper's value)
    ema: bool = False  # codebook by moving averages instead of the codebook loss (vqvae)
    restart_dead: bool = False  # move long-unused codes onto encoder outputs (vqvae)
    made_hidden: list[int] = field(default_factory=lambda: [64])  # masked hidden widths; [] = direct path (madevae)
    free_bits: float = 0.0  # λ, nats per latent dimension that cost nothing (madevae)

    def __post_init__(self) -> None:
        if isinstance(self.hidden, (int, np.integer)):
            self.hidden = [int(self.hidden)]
        self.hidden = [int(h) for h in self.hidden]
        if self.likelihood is None:
            self.likelihood = "bernoulli" if self.data in IMAGE_DATA else "gaussian"
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` (naming the flag, e.g. ``--latent``) for a setting out of range."""
        if self.model not in MODELS and self.model != CUSTOM_MODEL:
            raise ConfigError(f"model: unknown {self.model!r}; registered models are: {', '.join(MODELS)} "
                              f"(or {CUSTOM_MODEL!r} with Trainer(config, out_dir, model=your_model))")
        if self.data not in DATASET_NAMES:
            raise ConfigError(f"--data: unknown {self.data!r}; valid names are: {', '.join(DATASET_NAMES)}")
        positive = {"latent": self.latent, "epochs": self.epochs, "batch-size": self.batch_size, "k": self.k}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"--hidden must be one or more positive layer widths, got {self.hidden}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be positive and finite, got {self.lr}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"--test-fraction must lie strictly between 0 and 1, got {self.test_fraction}")
        if self.beta < 0 or self.warmup < 0:
            raise ConfigError(f"--beta and --warmup must be >= 0, got beta={self.beta}, warmup={self.warmup}")
        for name, value in (("codebook-size", self.codebook_size), ("positions", self.positions)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        if self.commitment < 0 or self.free_bits < 0:
            raise ConfigError(f"--commitment and --free-bits must be >= 0, got {self.commitment}, {self.free_bits}")
        if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in self.made_hidden):
            raise ConfigError(f"--made-hidden must be positive widths (none for the direct path only), got {self.made_hidden}")
        supported = likelihoods_of(self.model)
        if supported and self.likelihood not in supported:
            raise ConfigError(
                f"--likelihood {self.likelihood}: model {self.model} supports {', '.join(supported)}"
            )
        if self.binarize not in BINARIZE_MODES:
            raise ConfigError(f"--binarize must be one of {', '.join(BINARIZE_MODES)}, got {self.binarize!r}")
        if self.binarize != "none" and (self.likelihood != "bernoulli" or self.data not in IMAGE_DATA):
            raise ConfigError(
                f"--binarize {self.binarize}: binarizing makes 0/1 images for a Bernoulli likelihood, "
                f"but this run has --data {self.data} and --likelihood {self.likelihood}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config from saved settings; unknown keys are an error (they come from another version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"config has unknown settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_kwargs(self, steps_per_epoch: int) -> dict[str, Any]:
        """The options of :func:`build_model` that this model takes, from these settings."""
        if self.model == CUSTOM_MODEL:
            return {}
        wanted = {
            "likelihood": self.likelihood,
            "beta": self.beta,
            "warmup_steps": self.warmup * steps_per_epoch,
            "k": self.k,
            "noise": self.noise,
            "level": self.noise_level,
            "estimator": self.estimator,
            "codebook_size": self.codebook_size,
            "positions": self.positions,
            "commitment": self.commitment,
            "ema": self.ema,
            "restart_dead": self.restart_dead,
            "made_hidden": tuple(self.made_hidden),
            "free_bits": self.free_bits,
        }
        return {name: wanted[name] for name in model_options(self.model) if name in wanted}


def config_differences(saved: dict[str, Any], current: dict[str, Any], ignore: Sequence[str] = ()) -> list[str]:
    """Human-readable 'key: saved X, now Y' lines for every setting that differs.

    A setting the saved run does not mention (it predates that setting) counts as its default.
    """
    defaults = TrainConfig.__dataclass_fields__
    saved = {**{k: _default(f) for k, f in defaults.items() if k not in saved and k in current}, **saved}
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def _default(f: Any) -> Any:
    """The default value of a dataclass field (calling its factory), as :meth:`TrainConfig.to_dict` would write it."""
    from dataclasses import MISSING

    value = f.default_factory() if f.default_factory is not MISSING else f.default
    return None if value is MISSING else value
