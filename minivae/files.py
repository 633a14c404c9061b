"""Writing a file so that a reader, or a crash, sees the old file or the new one, never half of one.

The data goes to a temporary file beside the target (``.NAME.XXXXXXXX.tmp``, same folder, so the
same file system), is flushed to disk, and is then renamed over the target with ``os.replace``,
which is atomic. Every file minivae writes goes through here: checkpoints, metrics, figures,
graph pictures. An error names the file meant, not the temporary one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None  # name the file meant
    try:
        os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)  # atomic on POSIX and Windows when on the same file system
    except OSError as err:
        discard_temp(temp)
        if err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None  # name the file meant, not the temporary one
    except BaseException:
        discard_temp(temp)
        raise


def discard_temp(temp: str) -> None:
    """Remove a temporary file; on a read-only or failing disk that may fail too, and the next run removes it."""
    try:
        os.unlink(temp)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """The one layout of every JSON file minivae writes: indented, keys in their order, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))
