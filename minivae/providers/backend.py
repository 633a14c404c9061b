"""The one place where minivae touches an array library.

Every op reaches arrays through this module: `array_module(a)` answers "numpy or
cupy?" for an existing array (so a GPU tensor always stays on the GPU), and
`xp()` gives the module of the *current* backend for arrays made from scratch
(parameters, noise, zeros).

The backend choice is the only global mutable state in minivae. It starts as
the value of the environment variable ``MINIVAE_BACKEND`` (default ``numpy``)
and is changed with :func:`set_backend` or, for a block, :func:`use_backend`.

CuPy is imported lazily, the first time it is asked for, so a CPU user never
needs it installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType
from typing import Any, Iterator

import numpy  # the reference backend: always present

BACKENDS = ("numpy", "cupy")

_current: str = os.environ.get("MINIVAE_BACKEND", "numpy").strip().lower() or "numpy"
_cupy: ModuleType | None = None

class BackendError(RuntimeError):
    """Asking for a backend that this machine cannot provide."""


# Environment for a low-overhead GPU path, set (unless the user chose otherwise) just
# before CuPy is first imported; CuPy reads its variable once, at import. numba-cuda
# reads its own when it loads, which ``import minivae.kernels`` arranges to happen after they
# are set (kernels/cuda_settings.py, the same three values; a test keeps them equal).
# Why each one (see kernels/cuda_launch.py):
#   *_CUDA_ARRAY_INTERFACE_SYNC=0: no stream synchronisation each time one library
#       wraps the other's array; minivae launches everything on CuPy's current stream,
#       so those syncs would only stall the host.
#   NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0: small VAE grids would otherwise go through
#       the warnings machinery on every launch.
GPU_ENVIRONMENT = {
    "NUMBA_CUDA_ARRAY_INTERFACE_SYNC": "0",
    "CUPY_CUDA_ARRAY_INTERFACE_SYNC": "0",
    "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS": "0",
}

def load_cupy() -> ModuleType:
    """Import CuPy on first use and check that a GPU is really there."""
    global _cupy
    if _cupy is not None:
        return _cupy
    for key, value in GPU_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as err:
        raise BackendError(
            "set_backend('cupy'): CuPy is not installed. On a machine with an NVIDIA GPU, install "
            "the GPU extra that matches the driver's CUDA major (\"CUDA Version\" in the header "
            "of nvidia-smi): 12.x -> `pip install \"minivae[gpu-cu12]\"`, 13.x -> "
            "`pip install \"minivae[gpu-cu13]\"` (each brings CuPy and numba-cuda with its "
            "compiler wheels for that CUDA). Where CuPy and numba-cuda are already installed, "
            f"`pip install --no-deps -e .` or PYTHONPATH=<repo> is enough. ({err})"
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise BackendError(
            f"set_backend('cupy'): CuPy is installed but no usable CUDA device was found ({err}). "
            "Use the default 'numpy' backend on this machine."
        ) from err
    if count == 0:
        raise BackendError("set_backend('cupy'): CuPy found no CUDA device. Use the 'numpy' backend.")
    _cupy = cupy
    return cupy


def set_backend(name: str) -> None:
    """Choose where new arrays live: ``"numpy"`` (CPU, default) or ``"cupy"`` (NVIDIA GPU)."""
    global _current
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise ValueError(f"set_backend: unknown backend {name!r}; expected one of {BACKENDS}")
    if key == "cupy":
        load_cupy()
    _current = key


def get_backend() -> str:
    """The name of the current backend: ``"numpy"`` or ``"cupy"``."""
    if _current not in BACKENDS:
        raise ValueError(f"MINIVAE_BACKEND={_current!r} is not a backend; expected one of {BACKENDS}")
    return _current


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with another backend, restoring the previous one afterwards."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def xp() -> ModuleType:
    """The array module of the current backend (``numpy`` or ``cupy``)."""
    return load_cupy() if get_backend() == "cupy" else numpy


def is_gpu_array(a: Any) -> bool:
    """True for a CuPy array, checked without importing CuPy."""
    kind = type(a)
    if kind is numpy.ndarray:  # the common case, answered without string work
        return False
    return kind.__module__.split(".")[0] == "cupy"


def array_module(a: Any) -> ModuleType:
    """The module that owns array ``a``: ``cupy`` for GPU arrays, else ``numpy``."""
    if type(a) is numpy.ndarray:
        return numpy
    return load_cupy() if is_gpu_array(a) else numpy


def to_backend(a: Any, dtype: Any = None) -> Any:
    """Copy or view ``a`` (list, scalar, NumPy or CuPy array) as an array of the current backend."""
    module = xp()
    if module is numpy and is_gpu_array(a):
        a = a.get()
    return module.asarray(a, dtype=dtype)


def to_numpy(a: Any) -> numpy.ndarray:
    """A NumPy array with the same values (copies GPU arrays to the host)."""
    if is_gpu_array(a):
        return a.get()
    return numpy.asarray(a)


def quiet_errors(a: Any):
    """A context that silences NumPy's divide/invalid warnings for array ``a``.

    Used where -inf or NaN is the honest answer (log 0) and the caller checks for it.
    """
    if is_gpu_array(a):
        return contextlib.nullcontext()
    return numpy.errstate(divide="ignore", invalid="ignore")
