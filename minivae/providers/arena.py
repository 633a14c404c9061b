"""An arena of big NumPy buffers, handed out again once nothing else holds them.

Why: a training step allocates the same big arrays every time (layer outputs, their
gradients, the loss's saved values). When such an array is freed, glibc's malloc may
return its memory to the operating system, and the next step's array of the same size
is then mapped afresh: the kernel zero-fills every new 4 KiB page the first time it is
written (a page fault, a few microseconds each in a virtual machine). Measured with
``benchmarks/profile_step.py`` on a 2-core AMD EPYC VM, one VAE step at batch 1024
took ~4,600 page faults, about a fifth of its time. Reusing the buffers of the previous
step touches no new page.

How: :meth:`Arena.empty` is ``np.empty`` for arrays of at least ``min_bytes``; it keeps
a reference to each buffer it makes and hands a kept buffer out again when no one else
references it. "No one else" is read off Python's reference count: a buffer that only
the arena holds has exactly the count the arena's own reference gives it, measured once
at start-up with the same code path (so it adapts to the interpreter). Any tensor, view
(a view holds its base), gradient, saved value or user variable that still uses a buffer
raises its count, and the buffer is not handed out again until that reference is gone.

The arena is off where reference counts cannot be read this way (a free-threaded Python
build), and can be switched off with ``MINIVAE_ARENA=0`` or ``ARENA.enabled = False``.
What it keeps is bounded (``max_bytes`` in all, ``per_shape`` buffers per shape);
``ARENA.clear()`` lets the kept buffers go.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np


def _refs(buffers: list, i: int) -> int:
    """The reference count of ``buffers[i]``, as seen from here (the same path at start-up and later)."""
    return sys.getrefcount(buffers[i])


class Arena:
    """Buffers by (shape, dtype), reused once free (see the module docstring)."""

    def __init__(self, min_bytes: int = 1 << 16, max_bytes: int = 1 << 30, per_shape: int = 8) -> None:
        self.min_bytes, self.max_bytes, self.per_shape = int(min_bytes), int(max_bytes), int(per_shape)
        self._buffers: dict[tuple[Any, ...], list[np.ndarray]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        gil = getattr(sys, "_is_gil_enabled", lambda: True)()
        self.enabled = gil and os.environ.get("MINIVAE_ARENA", "1").strip() not in ("0", "off", "false", "no")
        probe = [np.empty(1)]
        self._free_refs = _refs(probe, 0)  # the count of a buffer that only the arena's list holds
        self.reused = 0  # statistics, for tests and the profiler
        self.made = 0

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` (a NumPy dtype)."""
        dtype = np.dtype(dtype)
        size = 1
        for n in shape:
            size *= n
        nbytes = size * dtype.itemsize
        if not self.enabled or nbytes < self.min_bytes:
            return np.empty(shape, dtype)
        key = (shape, dtype)
        with self._lock:
            buffers = self._buffers.get(key)
            if buffers is None:
                buffers = self._buffers[key] = []
            for i in range(len(buffers)):
                if _refs(buffers, i) == self._free_refs:
                    self.reused += 1
                    return buffers[i]
            buffer = np.empty(shape, dtype)
            self.made += 1
            if len(buffers) < self.per_shape and self._bytes + nbytes <= self.max_bytes:
                buffers.append(buffer)
                self._bytes += nbytes
            return buffer

    def empty_like(self, a: np.ndarray) -> np.ndarray:
        return self.empty(a.shape, a.dtype)

    def kept_bytes(self) -> int:
        """Bytes of the buffers the arena keeps (free or in use)."""
        return self._bytes

    def clear(self) -> None:
        """Forget every kept buffer (those still in use live on with their users)."""
        with self._lock:
            self._buffers.clear()
            self._bytes = 0


#: The arena of the CPU provider.
ARENA = Arena()
