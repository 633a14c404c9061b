"""Checkpoints: one ``.npz`` archive with everything a run needs to continue exactly.

Inside the archive (a zip file of ``.npy`` arrays):

    param/<name>     the model's parameters
    opt/<name>       the optimizer's arrays (Adam's moments); opt_meta: its scalars as JSON
    rng              the training generator's state (JSON)
    epoch            the last finished epoch
    config           the run's settings (JSON); history: the per-epoch metrics (JSON)
    position         only in a checkpoint saved inside an epoch (on a signal, or by time):
                     the batches of the next epoch already taken, the generator's state when
                     that epoch began (to redraw its order) and the running sums (JSON)
    format           "minivae-checkpoint-1"

Strings are stored as 0-d unicode arrays, so reading never needs pickle: the
archive is always opened with ``allow_pickle=False``, and a file that would need
it is reported as not a checkpoint. A damaged file (empty, truncated, bit-flipped,
a lone ``.npy``, random bytes, a missing entry) raises :class:`CheckpointError`
with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from minivae.nn import Module, StateDictError
from minivae.optim import Adam
from minivae.random import Generator
from minivae.training.config import RESUMABLE_KEYS, config_differences
from minivae.files import atomic_write_bytes

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "minivae-checkpoint-1"
_REQUIRED = ("format", "opt_meta", "rng", "epoch", "config", "history")
_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed or saved with other settings."""


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    rng_state: dict[str, Any]
    epoch: int
    config: dict[str, Any]
    history: list[dict[str, Any]]
    position: dict[str, Any] | None = None  # inside epoch ``epoch + 1``; None at an epoch's end


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Adam,
    rng: Generator,
    epoch: int,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    position: dict[str, Any] | None = None,
) -> None:
    """Write one .npz with everything needed to resume (atomically).

    ``position``: where inside epoch ``epoch + 1`` training stopped (see :class:`~minivae.training.Trainer`).
    """
    arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        if isinstance(value, np.ndarray):
            arrays[f"opt/{key}"] = value
        else:
            meta[key] = list(value) if isinstance(value, tuple) else value
    arrays["format"] = np.array(CHECKPOINT_FORMAT)
    arrays["opt_meta"] = np.array(json.dumps(meta))
    arrays["rng"] = np.array(json.dumps(rng.get_state()))
    arrays["epoch"] = np.array(int(epoch))
    arrays["config"] = np.array(json.dumps(config))
    arrays["history"] = np.array(json.dumps(history))
    if position is not None:
        arrays["position"] = np.array(json.dumps(position))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _open_archive(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, or a CheckpointError saying what kind of file this is instead."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None
    if not raw:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes); it is not a minivae checkpoint")
    if raw.startswith(_NPY_MAGIC):
        raise CheckpointError(f"{path}: this is a single .npy array, not a minivae checkpoint (an .npz archive)")
    if not raw.startswith(_ZIP_MAGIC):
        raise CheckpointError(
            f"{path}: not a minivae checkpoint: an .npz file is a zip archive starting with 'PK', "
            f"this file starts with {raw[:4].hex(' ')}"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, UnicodeError,
            NotImplementedError, RuntimeError) as err:  # the last two: a flipped compression or encryption flag
        text = str(err)
        # NumPy's message for object arrays suggests allow_pickle=True: that would run code from
        # the file, so it is never repeated here.
        reason = "it holds object arrays, which minivae never unpickles" if "pickle" in text else (
            f"{type(err).__name__}: {text}")
        raise CheckpointError(
            f"{path}: damaged or not a minivae checkpoint ({reason}); it may be truncated or corrupted"
        ) from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle involved)."""
    path = Path(path)
    files = _open_archive(path)
    missing = [key for key in _REQUIRED if key not in files]
    if "format" not in missing and (files["format"].dtype.kind != "U" or str(files["format"][()]) != CHECKPOINT_FORMAT):
        raise CheckpointError(f"{path} is not a minivae checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if missing:
        raise CheckpointError(
            f"{path}: the checkpoint lacks {', '.join(map(repr, missing))}; it is damaged or not a minivae checkpoint"
        )
    entry = "?"
    try:
        entry = "opt_meta"
        optimizer = json.loads(str(files["opt_meta"][()]))
        optimizer.update({k[len("opt/"):]: v for k, v in files.items() if k.startswith("opt/")})
        entry = "rng"
        rng_state = json.loads(str(files["rng"][()]))
        entry = "epoch"
        if files["epoch"].dtype.kind not in "iu" or files["epoch"].shape != ():
            raise TypeError(f"expected an integer, got {files['epoch'].dtype} {files['epoch'].shape}")
        epoch = int(files["epoch"][()])
        entry = "config"
        config = json.loads(str(files["config"][()]))
        entry = "history"
        history = json.loads(str(files["history"][()]))
        if not isinstance(config, dict) or not isinstance(history, list) or not isinstance(optimizer, dict):
            raise TypeError("wrong JSON type")
        position = None
        if "position" in files:
            entry = "position"
            position = json.loads(str(files["position"][()]))
            if not isinstance(position, dict) or not {"step", "epoch_rng", "totals", "seen"} <= set(position):
                raise TypeError("expected the step, the epoch's generator state and the running sums")
    except (ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: the checkpoint's entry {entry!r} is malformed ({err}); it is damaged") from None
    return Checkpoint(
        params={k[len("param/"):]: v for k, v in files.items() if k.startswith("param/")},
        optimizer=optimizer, rng_state=rng_state, epoch=epoch, config=config, history=history, position=position,
    )


def load_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Adam | None = None,
    rng: Generator | None = None,
    config: dict[str, Any] | None = None,
    ignore: Sequence[str] = RESUMABLE_KEYS,
) -> Checkpoint:
    """Restore parameters (and optimizer and RNG state, if given) from ``path``.

    A model of another architecture raises :class:`StateDictError` naming the
    mismatched parameters AND, when ``config`` is given, the settings that differ.
    """
    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt.params)
    except StateDictError as err:
        diff = config_differences(ckpt.config, config, ignore=ignore) if config is not None else []
        if config is not None and not diff:  # the same settings: what differs is the data's size
            raise StateDictError(
                f"{path}: the run was trained on data of another size than the {config.get('data')} data found now"
                + (f" in --data-dir {config['data_dir']}" if config.get("data_dir") else "")
                + f" (the model's first and last layers do not match: {err}); pass the --data-dir of the run's data"
            ) from err
        hint = ("\nsettings that differ from the saved run:\n  " + "\n  ".join(diff)) if diff else ""
        raise StateDictError(f"{path}: checkpoint of another architecture. {err}{hint}") from err
    try:
        if optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer)
        if rng is not None:
            rng.set_state(ckpt.rng_state)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: the optimizer or generator state is malformed ({err}); it is damaged") from None
    return ckpt
