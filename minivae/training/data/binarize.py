"""Binarization: grey pixels to 0/1 pixels for a Bernoulli likelihood (dynamic or static),
the static sample's file, and the refusal of a likelihood that does not fit the data."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from minivae.files import atomic_write_bytes
from minivae.random import Generator
from minivae.training.data.dataset import DataError, Dataset


# =============================================================================
# Binarization: grey pixels -> 0/1 pixels for a Bernoulli likelihood
# =============================================================================
#
# A Bernoulli decoder gives a probability to *binary* images only: on grey pixels
# its "-ln p(x | z)" is a cross-entropy, not a negative log-likelihood (it is not
# even minimal at x̂ = x). The binarization is therefore part of the model:
#   none:    the grey images as they are (fine for training, no log-likelihood);
#   dynamic: a fresh Bernoulli sample of each image every time it is used: pixel = 1
#            with probability equal to its grey level; seeded, so a run repeats;
#   static:  one such sample of the whole set, drawn once and kept (saved with the run).

BINARIZE_MODES = ("none", "dynamic", "static")


def check_binarize_mode(mode: str) -> str:
    if mode not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {', '.join(map(repr, BINARIZE_MODES))}, got {mode!r}")
    return mode


def binarize(x: np.ndarray, rng: Generator) -> np.ndarray:
    """One Bernoulli draw per pixel: 1 with probability x (the grey level), else 0; float32.

    ``x`` must hold probabilities in [0, 1]. Uniform u in [0, 1) gives pixel = [u < x],
    so black (0) stays 0 and white (1) stays 1 for every draw.
    """
    x = np.asarray(x)
    if x.size and (not np.issubdtype(x.dtype, np.floating) or np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
        raise ValueError(
            f"binarize: pixels must be floats in [0, 1] (grey levels as probabilities), got dtype {x.dtype}"
            + (f" with values from {np.nanmin(x)} to {np.nanmax(x)}" if x.size else "")
        )
    u = rng.numpy.random(size=x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


def is_binary(x: np.ndarray) -> bool:
    """True when every value is exactly 0 or 1 (what a Bernoulli likelihood can score)."""
    x = np.asarray(x)
    return bool(np.all((x == 0) | (x == 1)))


def binarize_dataset(data: Dataset, rng: Generator) -> Dataset:
    """The static binarization: one fixed Bernoulli sample of every image (labels kept)."""
    return Dataset(
        x=binarize(data.x, rng),
        y=None if data.y is None else data.y.copy(),
        image_shape=data.image_shape,
        num_classes=data.num_classes,
        name=f"{data.name}-binarized",
    )


def save_binarized(path: str | os.PathLike, x: np.ndarray) -> None:
    """Save 0/1 images as packed bits (8 pixels a byte) in an .npz, atomically."""
    x = np.asarray(x)
    if x.ndim != 2 or not is_binary(x):
        raise ValueError(f"save_binarized({path}): expected a 2-D array of 0/1 values, got shape {x.shape}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, bits=np.packbits(x.astype(np.uint8), axis=1), shape=np.array(x.shape))
    atomic_write_bytes(path, buffer.getvalue())


def load_binarized(path: str | os.PathLike) -> np.ndarray:
    """Read what :func:`save_binarized` wrote: float32 0/1 images of the saved shape."""
    try:
        with np.load(Path(path)) as saved:
            rows, cols = (int(s) for s in saved["shape"])
            bits = saved["bits"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a saved binarization (.npz with 'bits' and 'shape'): {err}") from err
    x = np.unpackbits(bits, axis=1, count=cols)
    if x.shape != (rows, cols):
        raise DataError(f"{path}: packed bits give shape {x.shape}, the file says {(rows, cols)}")
    return x.astype(np.float32)


def log_likelihood_refusal(x: np.ndarray, likelihood: str, binarize_mode: str = "none") -> str | None:
    """Why "log p(x)" must not be reported for these data and this likelihood, or None when it may.

    A Bernoulli likelihood scores only 0/1 pixels; on grey pixels (no binarization)
    its value is a cross-entropy, so calling it a log-likelihood in nats would be wrong.
    """
    check_binarize_mode(binarize_mode)
    if likelihood == "bernoulli" and binarize_mode == "none" and not is_binary(x):
        return (
            "Bernoulli likelihood on grey (non-binary) pixels: its value is a cross-entropy, "
            "not log p(x); train and evaluate with --binarize dynamic or static to report a log-likelihood"
        )
    return None
