"""Run folders and files: atomic writes, the folder lock, overwrite and resume rules.

Three rules keep a run folder from losing or mixing anything:

- **Atomic writes.** Every file goes to a temporary file in the same folder first
  and is then renamed over the target with ``os.replace``: a reader (or a crash)
  sees the old file or the new one, never half of one.
- **One writer.** A training run holds an OS lock on its folder (``fcntl.flock`` on
  the folder itself). The kernel drops the lock when the process ends, however it
  ends, so a killed run never leaves a stale lock; a second run into the same
  folder gets a clear error instead of mixing its files with the first one's.
- **Nothing replaced by accident.** A folder that holds a run is only reused with
  ``--resume`` (continue it; it must hold a checkpoint) or ``--overwrite`` (start
  afresh: the old run's files, and only those, are removed first).

Every problem is a :class:`RunFolderError` whose one-line message names the
command-line flag and the path, ready to print.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import tempfile
from pathlib import Path
from typing import Any

try:  # POSIX; on Windows runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: The files a run (and the eval and sample commands) write into a run folder, as glob
#: patterns. ``--overwrite`` removes exactly these; any other file in the folder is the
#: user's and is left alone. A new figure written into run folders belongs here.
RUN_FILES = (
    "config.json", "metrics.json", "metrics.csv", "checkpoint.npz", "eval.json", "binarized_train.npz",
    "reconstructions.png", "samples.png", "latent_manifold.png", "latent_scatter.png", "loss_curves.png",
    "class_samples.png", "samples-*.png", "*_samples.png", "codebook*.png", "codebook.json",
)


class RunFolderError(ValueError):
    """A folder or file that cannot be used as asked; the message names the flag and the path."""


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
# Checks before anything is computed
# =============================================================================


def _explain(err: OSError) -> str:
    reasons = {
        errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device", errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "it exists and is a file, not a folder",
    }
    return reasons.get(err.errno, err.strerror or str(err))


def writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """Create folder ``path`` if needed and prove it writable, or raise a one-line :class:`RunFolderError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{flag} {path}: is a file, not a folder; choose a folder path")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"{flag} {path}: {parent} is a file, so nothing can be created under it")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as err:
        raise RunFolderError(f"{flag} {path}: cannot write in this folder ({_explain(err)})") from None
    return path


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: os.access can say yes on read-only mounts and for
    root, so only a real write is proof."""
    fd, probe = tempfile.mkstemp(prefix=".minivae-probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def writable_file(path: str | os.PathLike, flag: str, *, overwrite: bool = False) -> Path:
    """Check that file ``path`` can be written (and may be replaced), before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise RunFolderError(f"{flag} {path}: is a folder; give a file name such as {path / 'out.png'}")
    if path.exists() and not overwrite:
        raise RunFolderError(f"{flag} {path}: the file exists; pass --overwrite to replace it, or choose another {flag}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"{flag} {path}: {parent} is a file, so nothing can be created under it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe(path.parent)
    except OSError as err:
        raise RunFolderError(f"{flag} {path}: cannot write in this folder ({_explain(err)})") from None
    return path


# =============================================================================
# The run folder
# =============================================================================

# Locks this process holds, by resolved folder: (file descriptor, number of holders).
# flock locks belong to an open file, so a second open in the same process would
# conflict with the first; a Trainer built twice on one folder in one process shares it.
_HELD: dict[str, list[int]] = {}


class RunFolder:
    """The output folder of one training run: created, checked writable and locked.

    ``RunFolder(path)`` creates the folder if needed and takes its lock;
    :meth:`release` (or leaving a ``with`` block) gives the lock back, and the
    operating system does so when the process ends.
    """

    def __init__(self, path: str | os.PathLike, flag: str = "--out") -> None:
        self.path, self.flag = Path(path), flag
        self._key: str | None = None
        self.created = not self.path.exists()  # so a refused run can leave no empty folder behind
        writable_folder(self.path, flag)
        self._lock()

    def _lock(self) -> None:
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
        else:
            fd = os.open(self.path, os.O_RDONLY)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise RunFolderError(
                        f"{self.flag} {self.path}: another minivae process is training in this folder "
                        f"(it holds the folder's lock); wait for it to end or choose another {self.flag}"
                    ) from None
            _HELD[key] = [fd, 1]
        self._key = key

    def release(self) -> None:
        """Give the lock back (once per holder; the last one closes it)."""
        if self._key is None:
            return
        held = _HELD.get(self._key)
        if held is not None:
            held[1] -= 1
            if held[1] == 0:
                del _HELD[self._key]
                os.close(held[0])  # closing the file drops the flock
        self._key = None

    def abandon(self) -> None:
        """Release the lock and remove the folder again if this run created it and wrote nothing."""
        self.release()
        if self.created:
            try:
                self.path.rmdir()  # only succeeds when empty
            except OSError:
                pass

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def run_files(self) -> list[Path]:
        """The files of a run that are in the folder now (see :data:`RUN_FILES`)."""
        return sorted(p for p in self.path.iterdir()
                      if p.is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in RUN_FILES))

    def check(self, *, resume: bool, overwrite: bool, checkpoint: str) -> None:
        """Apply the resume / overwrite rules (raise :class:`RunFolderError`); changes nothing."""
        existing = self.run_files()
        if resume:
            if not (self.path / checkpoint).is_file():
                found = f"it holds {', '.join(p.name for p in existing)} but" if existing else "it"
                raise RunFolderError(
                    f"--resume: nothing to resume in {self.path}: {found} has no {checkpoint}; "
                    "check the --out folder, or drop --resume to start a new run"
                )
            return
        if existing and not overwrite:
            names = ", ".join(p.name for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
            raise RunFolderError(
                f"{self.flag} {self.path} already holds a run ({names}); "
                "pass --resume to continue it, --overwrite to replace it, or choose another folder"
            )

    def clear(self) -> None:
        """--overwrite: remove the old run's files (and only those), so nothing of it mixes with the new one."""
        for old in self.run_files():
            try:
                old.unlink()
            except OSError as err:
                raise RunFolderError(f"--overwrite: cannot remove {old} ({_explain(err)})") from None


def training_in_progress(path: str | os.PathLike) -> bool:
    """Whether a training run holds ``path``'s lock now (for readers such as eval and explore).

    Probed with a shared, non-blocking lock that is dropped at once: it fails exactly
    while a training holds the exclusive one.
    """
    path = Path(path)
    if fcntl is None or not path.is_dir():
        return False
    if str(path.resolve()) in _HELD:  # this process is training there
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False
