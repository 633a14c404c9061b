"""Launch machinery shared by the CUDA kernels: arrays, streams, launch shapes.

Host overhead matters: a small VAE layer runs for microseconds, so a launch that
spends 50 us in Python is most of the step. What keeps it small:

1. **No implicit synchronisation.** Numba synchronises on every foreign
   (``__cuda_array_interface__``) array it is given unless
   ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC=0``, and CuPy does the same for numba's arrays
   unless ``CUPY_CUDA_ARRAY_INTERFACE_SYNC=0``. Both libraries read these when they
   load, which is why ``kernels/__init__.py`` sets them (``cuda_settings``) before
   anything imports numba's CUDA target. Everything is launched on one stream, so the
   sync is never needed.
2. **CuPy arrays passed as they are.** numba-cuda >= 0.24 reads a CuPy array's
   interface itself at launch (cheaply, without building a device-array object);
   with an older numba, ``as_device_array`` makes a numba view once per CuPy array
   and caches it while that array lives.
3. **One entry point per launch** (``launch`` below): counting launches per training
   step (tests/test_gpu_backend.py) and timing the Python side without a
   GPU both hook in here.
4. **Cached launch configurations** (``lru_cache`` on the shape arithmetic) and
   cached compiled kernels (numba's own dispatch cache, plus the variant caches in
   each kernel module).

Streams: every entry point takes ``stream=0`` (the default stream). To run on CuPy's
current stream, pass either the CuPy stream object, its raw pointer, or::

    numba.cuda.external_stream(cupy.cuda.get_current_stream().ptr)

``cuda_stream`` accepts all of these.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from numba import cuda

#: threads per block of the 1-D elementwise kernels
THREADS_1D = 256
#: at most this many blocks for a grid-stride loop; more work per thread after that
MAX_BLOCKS_1D = 4096

# Compile caches only: views of live CuPy arrays (entries die with their array) and
# numba stream wrappers of raw stream pointers.
_views: dict[int, object] = {}
_external_streams: dict[int, object] = {}


@functools.lru_cache(maxsize=None)
def is_simulator() -> bool:
    """True when numba runs CUDA kernels on its Python simulator (NUMBA_ENABLE_CUDASIM=1).

    Decided once, when numba's CUDA target loads; so is this answer (cached)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def _numba_cuda_version() -> tuple[int, ...]:
    """numba-cuda's version, or () for the CUDA target built into numba itself."""
    from importlib import metadata

    try:
        return tuple(int(part) for part in metadata.version("numba-cuda").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return ()


#: numba-cuda >= 0.24 takes a CuPy array straight at launch; older numba gets a cached view.
PASS_CUPY_DIRECTLY = _numba_cuda_version() >= (0, 24)


# ----------------------------------------------------------------------- launching


@dataclass
class Launch:
    """One recorded launch: the compiled kernel, its grid and block."""

    dispatcher: Any
    grid: Any
    block: Any

    @property
    def kernel(self) -> str:
        """The kernel's Python name (looked up only when asked: recording stays cheap)."""
        return kernel_name(self.dispatcher)


_recorder: list[Launch] | None = None  # set by `recording()` only
_recorder_runs = True


def launch(kernel, grid, block, stream, *args) -> None:
    """``kernel[grid, block, stream](*args)``: every kernel of this package starts here."""
    if _recorder is not None:
        _recorder.append(Launch(kernel, grid, block))
        if not _recorder_runs:
            return
    kernel[grid, block, stream](*args)


@contextlib.contextmanager
def recording(run: bool = True) -> Iterator[list[Launch]]:
    """Record every launch made inside the block (a list of :class:`Launch`).

    ``run=False`` is a dry run: nothing is launched and no host array is moved, so the
    Python side of a provider call can be timed on a machine without a GPU and without
    the simulator's cost (the outputs then hold garbage, of course). Not thread-safe;
    not re-entrant.
    """
    global _recorder, _recorder_runs
    if _recorder is not None:
        raise RuntimeError("minivae.kernels.cuda_launch.recording() is already active")
    _recorder, _recorder_runs = [], run
    try:
        yield _recorder
    finally:
        _recorder, _recorder_runs = None, True


def kernel_name(kernel) -> str:
    """The Python name of a compiled kernel (real dispatcher: py_func; simulator: fn)."""
    function = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None)
    return getattr(function, "__name__", repr(kernel))


# --------------------------------------------------------------------- arguments


def as_device_array(a):
    """Return something a numba kernel can take without copying or synchronising.

    * NumPy arrays come back unchanged (the simulator works on them directly; on a
      real GPU numba would copy them in and out, which is correct but slow);
    * numba device arrays come back unchanged;
    * any other ``__cuda_array_interface__`` object (a CuPy array) becomes a numba
      device-array view of the same memory, made once per array and cached.

    The cached view deliberately holds no reference to the CuPy array (so the cache
    never keeps memory alive); it is valid while that CuPy array is alive, which is
    as long as the cache keeps it.
    """
    if isinstance(a, np.ndarray) or _is_numba_array(a):
        return a
    if PASS_CUPY_DIRECTLY or not hasattr(a, "__cuda_array_interface__"):
        return a
    key = id(a)
    view = _views.get(key)
    if view is not None:
        return view
    try:
        view = cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=None, sync=False)
        weakref.finalize(a, _views.pop, key, None)
    except TypeError:
        # Not weak-referenceable (or an older numba): an uncached view that owns `a`.
        return _owning_view(a)
    _views[key] = view
    return view


def _owning_view(a):
    try:
        return cuda.as_cuda_array(a, sync=False)
    except TypeError:  # numba without the sync keyword
        return cuda.as_cuda_array(a)


def _is_numba_array(a) -> bool:
    return type(a).__module__.startswith("numba")


class HostStaging:
    """Moves host NumPy arguments to the device for one launch, and back afterwards.

    Numba would copy each NumPy argument in and out by itself, but separately per
    argument: an array passed twice (in place, ``out is x``) would come back with
    whichever copy is written last. Staging copies each host array once (per object),
    and copies back only the ones the kernel writes. (The simulator copies NumPy
    arguments the same way numba does, so it needs this too.) A strided host array is
    made contiguous for reading; a written one must be contiguous. Device arrays (CuPy,
    numba) pass straight through ``as_device_array``, so on the GPU fast path this costs
    a function call.
    """

    def __init__(self, stream=0):
        self.stream = stream
        self._device: dict[int, object] = {}
        self._written: list[tuple[np.ndarray, object]] = []

    def __call__(self, a, written: bool = False):
        if not isinstance(a, np.ndarray):
            return as_device_array(a)
        if _recorder is not None and not _recorder_runs:  # a dry run: nothing to move
            return a
        if written:
            require_c_contiguous("a host array that a kernel writes", a)
        device = self._device.get(id(a))
        if device is None:
            device = cuda.to_device(np.ascontiguousarray(a), stream=self.stream)
            self._device[id(a)] = device
        if written:
            self._written.append((a, device))
        return device

    def finish(self) -> None:
        """Copy the written host arrays back (synchronously, so they are ready)."""
        for host, device in self._written:
            device.copy_to_host(host, stream=self.stream)
        if self._written and self.stream != 0:
            self.stream.synchronize()


def cuda_stream(stream=0):
    """Turn ``stream`` into what a numba launch accepts.

    0 / None -> the default stream; a numba stream -> itself; an int -> the raw
    ``cudaStream_t`` pointer (wrapped once with ``cuda.external_stream``); an object
    with a ``.ptr`` (a CuPy stream) -> its pointer, wrapped the same way.
    """
    if stream is None or (isinstance(stream, int) and stream == 0):
        return 0
    if hasattr(stream, "ptr") and not hasattr(stream, "handle"):
        stream = int(stream.ptr)
        if stream == 0:
            return 0
    if isinstance(stream, int):
        wrapped = _external_streams.get(stream)
        if wrapped is None:
            wrapped = cuda.external_stream(stream)
            _external_streams[stream] = wrapped
        return wrapped
    return stream


@functools.lru_cache(maxsize=1024)
def grid_1d(n: int) -> int:
    """Blocks for a grid-stride loop over n items with THREADS_1D threads each."""
    return max(1, min(MAX_BLOCKS_1D, -(-n // THREADS_1D)))


def require_c_contiguous(name: str, a) -> None:
    """Kernels index flat memory; refuse a strided view rather than silently misread it."""
    flags = getattr(a, "flags", None)
    if flags is not None and not flags["C_CONTIGUOUS"]:
        raise ValueError(f"{name} must be C-contiguous")


def flat(a):
    """A 1-D view of a C-contiguous array (NumPy or numba device array)."""
    return a if a.ndim == 1 else a.reshape(a.size)


def launch_overhead_probe(repeats: int = 1000) -> float:
    """Mean host-side seconds per launch of an empty kernel on the default stream.

    Useful for a benchmark to tell launch overhead from kernel time; on the simulator
    the number is meaningless (but the call works).
    """
    import time

    dummy = cuda.device_array(1, dtype=np.float32) if not is_simulator() else np.zeros(1, np.float32)
    _noop[1, 1](dummy)  # compile outside the timed loop (and not through `launch`: not counted)
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        _noop[1, 1](dummy)
    cuda.synchronize()
    return (time.perf_counter() - start) / repeats


@cuda.jit
def _noop(x):
    pass
