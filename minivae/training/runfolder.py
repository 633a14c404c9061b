"""Run folders and files: atomic writes, the folder lock, overwrite and resume rules.

Three rules keep a run folder from losing or mixing anything:

- **Atomic writes.** Every file goes to a temporary file in the same folder first
  and is then renamed over the target with ``os.replace``: a reader (or a crash)
  sees the old file or the new one, never half of one.
- **One writer.** A training run holds an OS lock on its folder (``fcntl.flock`` on
  the folder itself). The kernel drops the lock when the process ends, however it
  ends, so a killed run never leaves a stale lock; a second run into the same
  folder gets a clear error instead of mixing its files with the first one's.
- **Nothing replaced by accident.** A run knows exactly what it wrote: every file
  name goes into the folder's manifest (:data:`MANIFEST`, itself written atomically)
  *before* the file is written. A folder that holds a run is only reused with
  ``--resume`` (continue it; it must hold a checkpoint) or ``--overwrite`` (start
  afresh: the files listed in the manifest, and only those, are removed first).
  A folder that is not empty and has no manifest is not a minivae run (a project
  folder, ``/``, a data folder): it is refused, with or without ``--overwrite``.
- **No debris.** A write killed half-way leaves its temporary file
  (``.NAME.XXXXXXXX.tmp``); a run removes the stale ones of its own files when it
  starts, resumes or ends, and only while it holds the folder's lock.

Every problem is a :class:`RunFolderError` whose one-line message names the
command-line flag and the path, ready to print.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from minivae.files import atomic_write_bytes, atomic_write_json, atomic_write_text, json_text  # noqa: F401 (the names used to live here)

try:  # POSIX; on Windows runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: The manifest: the names of the files a run (and eval and sample) wrote into its folder.
MANIFEST = "minivae-run.json"
MANIFEST_FORMAT = "minivae-run-1"

#: The names a run (and the eval and sample commands) may write into a run folder, as glob
#: patterns. ``--overwrite`` removes only the files listed in the manifest; these patterns
#: only say which names a run may take, so that a user's file of such a name that the
#: manifest does not list is never replaced. A new figure written into run folders belongs here.
RUN_FILES = (
    "config.json", "metrics.json", "metrics.csv", "checkpoint.npz", "eval.json", "binarized_train.npz",
    "reconstructions.png", "samples.png", "latent_manifold.png", "latent_scatter.png", "loss_curves.png",
    "class_samples.png", "samples-*.png", "*_samples.png", "codebook*.png", "codebook.json",
)

#: The figures a training run may write (minivae.training.figures.write_figures).
FIGURE_NAMES = ("reconstructions.png", "codebook_usage.png", "samples.png", "latent_manifold.png",
                "latent_scatter.png", "loss_curves.png", "class_samples.png")
#: Exactly the names a training run writes: a file of one of these names that the manifest does not
#: list is the user's, and a new run into the folder is refused rather than replace it.
RUN_OUTPUTS = ("config.json", "metrics.json", "metrics.csv", "checkpoint.npz", "binarized_train.npz",
               "codebook.json", *FIGURE_NAMES)


class RunFolderError(ValueError):
    """A folder or file that cannot be used as asked; the message names the flag and the path."""


# =============================================================================
# Atomic files (the write itself has one home: minivae/files.py)
# =============================================================================


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike | None) -> Iterator[str | None]:
    """A fresh hidden folder inside ``folder`` for code that writes files in place (``savefig(path)``);
    what it holds is moved into ``folder`` by renames once the block ends without error, so a good
    file is never replaced by a half-written one. None passes through (no folder, nothing staged)."""
    if folder is None:
        yield None
        return
    remove_dead_stages(folder)
    stage = Path(tempfile.mkdtemp(prefix=f"{_STAGE_PREFIX}{os.getpid()}.", suffix=".tmp", dir=folder))
    try:
        yield str(stage)
        for made in sorted(stage.iterdir()):
            os.replace(made, Path(folder) / made.name)  # atomic: the same file system
    finally:
        shutil.rmtree(stage, ignore_errors=True)


#: How this machine's stage folders begin: its name without dots (they separate the parts), then the pid.
_STAGE_PREFIX = f".minivae-stage.{re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname())[:40] or 'host'}."


def remove_dead_stages(folder: str | os.PathLike) -> list[str]:
    """Remove the stage folders in ``folder`` whose process is gone (killed before its finally ran).

    A stage is named ``.minivae-stage.<host>.<pid>.<random>.tmp``. Only this machine's stages
    are judged (a folder shared over the network or with a container holds pids this machine
    cannot see), and one whose process still runs (or belongs to another user: we cannot
    tell) is someone's work in progress and is left alone; no lock is needed for that. Not on
    Windows, where there is no way to ask about a pid without a signal. Returns the names removed.
    """
    if os.name == "nt":
        return []
    removed = []
    for entry in Path(folder).glob(f"{_STAGE_PREFIX}*.tmp"):
        pid = entry.name[len(_STAGE_PREFIX):].split(".")[0]
        if not pid.isdigit() or not entry.is_dir() or entry.is_symlink() or _process_alive(int(pid)):
            continue  # not a name this code makes, or someone's live stage: never guess
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number we cannot ask about): assume alive
    return True


# =============================================================================
# Checks before anything is computed
# =============================================================================


def explain(err: OSError) -> str:
    """The cause of an OS error in a few words (for one-line messages)."""
    reasons = {
        errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device", errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "it exists and is a file, not a folder", errno.ENAMETOOLONG: "the file name is too long",
        errno.EDQUOT: "the disk quota is exceeded", errno.EFBIG: "the file is too large for this file system",
        errno.ELOOP: "a symbolic link loop", errno.EISDIR: "it is a folder",
    }
    return reasons.get(err.errno, err.strerror or str(err))


def writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """Create folder ``path`` if needed and prove it writable, or raise a one-line :class:`RunFolderError`."""
    path = Path(path)
    check_name_length(path / MANIFEST, flag)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{flag} {path}: is a file, not a folder; choose a folder path")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"{flag} {path}: {parent} is a file, so nothing can be created under it")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as err:
        raise RunFolderError(f"{flag} {path}: cannot write in this folder ({explain(err)})") from None
    return path


#: The longest file name most file systems hold (ext4, XFS, tmpfs, APFS, NTFS).
NAME_MAX = 255
#: What atomic writes add to a name for their temporary file: "." + name + ".XXXXXXXX.tmp".
TEMP_EXTRA = 14


def check_name_length(path: Path, flag: str) -> None:
    """Refuse a file name the file system cannot hold (with its temporary name), before any work."""
    try:
        limit = os.pathconf(".", "PC_NAME_MAX")  # the usual limit; checked before anything touches the path
    except (OSError, ValueError, AttributeError):
        limit = NAME_MAX
    for part in path.parts:
        if len(part.encode()) > limit:
            raise RunFolderError(f"{flag} {path}: the name {part[:20]}... is {len(part.encode())} bytes long; "
                                 f"this file system holds names of at most {limit}")
    if len(path.name.encode()) + TEMP_EXTRA > limit:
        raise RunFolderError(f"{flag} {path}: the file name is {len(path.name.encode())} bytes long; at most "
                             f"{limit - TEMP_EXTRA} fit (its temporary file while writing adds {TEMP_EXTRA})")


def _probe(folder: Path) -> None:
    """Create, write, sync and remove a file in ``folder``: os.access can say yes on read-only
    mounts and for root, and an empty file can be created on a full disk, so only a real write
    of some bytes is proof."""
    fd, probe = tempfile.mkstemp(prefix=".minivae-probe.", dir=folder)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(probe)


def writable_file(path: str | os.PathLike, flag: str, *, overwrite: bool = False) -> Path:
    """Check that file ``path`` can be written (and may be replaced), before any work is done."""
    path = Path(path)
    check_name_length(path, flag)
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
        raise RunFolderError(f"{flag} {path}: cannot write in this folder ({explain(err)})") from None
    return path


# =============================================================================
# The run folder
# =============================================================================


def read_manifest(folder: str | os.PathLike, flag: str) -> list[str] | None:
    """The names listed in ``folder``'s manifest, or None when there is none (not a minivae run)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        files = document["files"]
        if document.get("format") != MANIFEST_FORMAT or not all(isinstance(f, str) for f in files):
            raise ValueError("unexpected content")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunFolderError(
            f"{flag} {folder}: its {MANIFEST} is damaged ({type(err).__name__}: {err}); it lists the "
            f"files minivae wrote there, so nothing in the folder is replaced: choose another {flag}"
        ) from None
    # Plain names in this folder only: an edited manifest must never reach outside it.
    return [f for f in files if f and f == Path(f).name and f not in (".", "..")]




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
        check_name_length(self.path / MANIFEST, flag)  # before exists(), which fails on such names
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
                        f"{self.flag} {self.path}: another minivae process is using this folder (training, or "
                        f"writing eval or samples: it holds the folder's lock); wait for it to end or choose another "
                        f"{self.flag}"
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

    # -------------------------------------------------------------------------
    # The manifest: what this run wrote
    # -------------------------------------------------------------------------

    def manifest(self) -> list[str] | None:
        """The names listed in the folder's manifest, or None when there is none (not a minivae run)."""
        return read_manifest(self.path, self.flag)

    def record(self, *names: str) -> None:
        """List ``names`` in the manifest, BEFORE they are written: a write killed half-way is listed too."""
        listed = self.manifest() or []
        new = [n for n in names if n not in listed]
        if new or not (self.path / MANIFEST).is_file():
            atomic_write_json(self.path / MANIFEST, {"format": MANIFEST_FORMAT, "files": listed + new})

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Record ``name`` in the manifest, then write it atomically."""
        self.record(name)
        atomic_write_bytes(self.path / name, data)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json_text(obj))

    def prune(self) -> None:
        """Drop manifest entries whose file is gone (recorded for a write that never happened)."""
        listed = self.manifest()
        if listed is not None:
            kept = [n for n in listed if (self.path / n).exists()]
            if kept != listed:
                atomic_write_json(self.path / MANIFEST, {"format": MANIFEST_FORMAT, "files": kept})

    def run_files(self) -> list[Path]:
        """The files of this folder's run that exist now: those its manifest lists."""
        return sorted(self.path / n for n in (self.manifest() or []) if (self.path / n).is_file())

    def foreign_files(self) -> list[Path]:
        """Files in the folder that no minivae run listed (the user's), its own temporary files aside."""
        listed = set(self.manifest() or []) | {MANIFEST}
        return sorted(p for p in self.path.iterdir() if p.name not in listed and not self._is_temp(p.name))

    # -------------------------------------------------------------------------
    # The rules
    # -------------------------------------------------------------------------

    def check(self, *, resume: bool, overwrite: bool, checkpoint: str, writes: tuple[str, ...] = ()) -> None:
        """Apply the resume / overwrite rules (raise :class:`RunFolderError`); changes nothing.

        ``writes``: the names the new run will write; one that exists and that the manifest does
        not list is the user's, and is never replaced.
        """
        listed = self.manifest()
        if resume:
            if not (self.path / checkpoint).is_file():
                existing = self.run_files()
                found = f"it holds {', '.join(p.name for p in existing)} but" if existing else "it"
                raise RunFolderError(
                    f"--resume: nothing to resume in {self.path}: {found} has no {checkpoint}; "
                    "check the --out folder, or drop --resume to start a new run"
                )
            return  # a run of an older minivae (no manifest) may be resumed too: its checkpoint is checked on load
        foreign = self.foreign_files()
        if listed is None and foreign:
            raise RunFolderError(
                f"{self.flag} {self.path} is not empty and is not a minivae run folder (no {MANIFEST}; it holds "
                f"{_names(foreign)}); minivae writes only into a new or empty folder or one of its own runs, so "
                f"nothing of yours is replaced{' (not even with --overwrite)' if overwrite else ''}: "
                f"choose a new {self.flag} folder"
            )
        existing = self.run_files()
        if existing and not overwrite:
            raise RunFolderError(
                f"{self.flag} {self.path} already holds a run ({_names(existing)}); "
                "pass --resume to continue it, --overwrite to replace it (only the files the run wrote, listed in "
                f"{MANIFEST}, are removed), or choose another folder"
            )
        clash = [p for p in foreign if any(fnmatch.fnmatch(p.name, w) for w in writes)]
        if clash:
            raise RunFolderError(
                f"{self.flag} {self.path}: {_names(clash)} would be replaced by this run but {MANIFEST} does not list "
                f"{'it' if len(clash) == 1 else 'them'} (not written by minivae); move "
                f"{'it' if len(clash) == 1 else 'them'} away or choose another {self.flag}"
            )

    def clear(self) -> None:
        """--overwrite: remove the files the manifest lists (and only those), so nothing of the old run mixes
        with the new one. The manifest goes last: a failure half-way still lists what is left."""
        for old in self.run_files():
            try:
                old.unlink()
            except OSError as err:
                raise RunFolderError(f"--overwrite: cannot remove {old} ({explain(err)})") from None
        self.prune()

    def _is_temp(self, name: str) -> bool:
        """A temporary file of an atomic write of a run file, or a write probe (see :func:`atomic_write_bytes`)."""
        if name.startswith(".minivae-probe."):
            return True
        if not (name.startswith(".") and name.endswith(".tmp")):
            return False
        target = name[1:-len(".tmp")].rsplit(".", 1)[0]  # ".NAME.XXXXXXXX.tmp" -> NAME
        known = {MANIFEST, *(self.manifest() or [])}
        return target in known or any(fnmatch.fnmatch(target, pattern) for pattern in RUN_FILES)

    def remove_stale_temp_files(self) -> list[Path]:
        """Remove the temporary files killed writes of this run left behind. Only with the lock held:
        a running writer's temporary file is never touched."""
        if self._key is None:
            raise RunFolderError(f"{self.path}: stale temporary files are only removed while holding the lock")
        removed = []
        for p in self.path.iterdir():
            if self._is_temp(p.name) and p.is_file() and not p.is_symlink():
                try:
                    p.unlink()
                    removed.append(p)
                except FileNotFoundError:
                    pass
        return removed


def _names(paths: list[Path], most: int = 3) -> str:
    names = ", ".join(p.name for p in paths[:most])
    return names + (f" and {len(paths) - most} more" if len(paths) > most else "")


def folder_in_use(path: str | os.PathLike) -> bool:
    """Whether another minivae process holds ``path``'s lock now: a training, or an eval or sample
    writing into the run (for readers such as eval and explore, before they load anything).

    Probed with a shared, non-blocking lock that is dropped at once: it fails exactly
    while someone holds the exclusive one.
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
