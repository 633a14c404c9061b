"""Which code computes an op's arrays: the one place where the kernel set is read.

The ops state the math and call ``provider_for(array).<method>(...)`` once; the
provider interface is written down in :mod:`minivae.providers.base`. Providers:

========================  ================================================  ==============
kernel set                on the CPU (NumPy arrays)                          on a GPU (CuPy arrays)
========================  ================================================  ==============
``"reference"``           :mod:`.reference` (plain NumPy, OpenBLAS)          :mod:`.reference` on CuPy ("vendor": cuBLAS + CuPy)
``"custom"``              :mod:`.cpu` (owned buffers + compiled loops)       :mod:`.cuda` (our Numba CUDA kernels)
``"auto"`` (default)      :mod:`.cpu` (faster in benchmarks/cpu_step.py)     :func:`.cuda.auto_provider` (per op, the faster of ours and vendor)
========================  ================================================  ==============

The choice starts as the environment variable ``MINIVAE_KERNELS`` and changes with
:func:`set_kernels` or, for a block, :func:`use_kernels`, in the current thread (a
context variable: other threads keep their own choice). :func:`use_provider`
makes one provider object serve every array for a block (how the tests drive the
CUDA kernels on Numba's simulator with NumPy arrays, and how a reader can plug in
a provider of their own).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Any, Iterator

from minivae.providers import backend
from minivae.providers.base import ACTIVATION_NAMES, Provider
from minivae.providers.reference import PROVIDER as REFERENCE

KERNEL_SETS = ("auto", "custom", "reference")

# The kernel set and a provider forced by use_provider() are both per context (thread /
# asyncio task), like no_grad(): a use_kernels() block in one thread leaves the others
# alone. A new thread starts from MINIVAE_KERNELS, not from its parent's choice.
_kernel_set: contextvars.ContextVar[str] = contextvars.ContextVar(
    "minivae_kernel_set", default=os.environ.get("MINIVAE_KERNELS", "auto").strip().lower() or "auto")
_forced: contextvars.ContextVar[Any] = contextvars.ContextVar("minivae_forced_provider", default=None)


def _checked(name: str, where: str) -> str:
    key = str(name).strip().lower()
    if key not in KERNEL_SETS:
        raise ValueError(f"{where}: unknown kernel set {name!r}; expected one of {KERNEL_SETS}")
    return key


def set_kernels(name: str) -> None:
    """Choose the kernel set for the current thread (context): ``"auto"`` (default),
    ``"custom"`` (ours) or ``"reference"``."""
    _kernel_set.set(_checked(name, "set_kernels"))


def get_kernels() -> str:
    """The current kernel set."""
    current = _kernel_set.get()
    if current not in KERNEL_SETS:
        raise ValueError(f"MINIVAE_KERNELS={current!r} is not a kernel set; expected one of {KERNEL_SETS}")
    return current


@contextlib.contextmanager
def use_kernels(name: str) -> Iterator[None]:
    """Run a block with another kernel set, restoring the previous one afterwards
    (in this thread only: other threads keep theirs)."""
    token = _kernel_set.set(_checked(name, "set_kernels"))
    try:
        yield
    finally:
        _kernel_set.reset(token)


@contextlib.contextmanager
def use_provider(provider: Provider) -> Iterator[Provider]:
    """Let ``provider`` compute every op's arrays inside the block, whatever the kernel set."""
    missing = [m for m in _METHODS if not callable(getattr(provider, m, None))]
    if missing:
        raise TypeError(f"use_provider: {type(provider).__name__} lacks provider methods {missing}")
    token = _forced.set(provider)
    try:
        yield provider
    finally:
        _forced.reset(token)


def provider_for(array: Any) -> Provider:
    """The provider that computes ops on ``array`` under the current kernel set."""
    forced = _forced.get()
    if forced is not None:
        return forced
    choice = get_kernels()
    if choice == "reference":
        return REFERENCE
    if backend.is_gpu_array(array):
        from minivae.providers import cuda

        return cuda.PROVIDER if choice == "custom" else cuda.auto_provider()
    return _cpu()


_cpu_provider: Provider | None = None


def _cpu() -> Provider:
    # Imported on first use: it loads numba, which a user of the reference set never needs.
    # Kept once found: every op asks for it, and an import statement costs microseconds.
    global _cpu_provider
    if _cpu_provider is None:
        from minivae.providers import cpu

        _cpu_provider = cpu.PROVIDER
    return _cpu_provider


_METHODS = tuple(name for name in vars(Provider) if not name.startswith("_") and name != "name")

__all__ = ["ACTIVATION_NAMES", "KERNEL_SETS", "Provider", "get_kernels", "provider_for", "set_kernels",
           "use_kernels", "use_provider"]
