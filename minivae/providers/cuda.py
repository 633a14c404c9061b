"""The GPU provider of compiled hot paths: our Numba CUDA kernels (``kernels.cuda``) on CuPy arrays.

``backend.fast_path`` hands :data:`PROVIDER` to ops.py, distributions.py and optim.py
for every CuPy array while the kernel set is ``"auto"`` or ``"custom"``. It offers the
same functions, with the same meaning, as :class:`minivae.accel_cpu.CpuKernels`; the
reference code next to each call site in ops.py is the specification and the tests
compare the two. ``set_kernels("vendor")`` (= ``"reference"``) runs that reference
code instead, i.e. cuBLAS and CuPy's own elementwise kernels.

How the hot path stays cheap (a 784-400-20 VAE layer runs for microseconds, so the
host side of a launch matters as much as the kernel):

* **One stream.** Every kernel is launched on CuPy's *current* stream
  (``cupy.cuda.get_current_stream()``), the stream CuPy's own ops and its memory pool
  use. Our kernels and CuPy's are therefore ordered by the stream itself; no
  synchronisation is needed between them, and none is done.
* **No host round trips.** No method reads a device value back (no ``.item()``,
  ``float(array)``, ``bool(array)``); scalars such as the learning rate go in as
  Python numbers. Outputs are allocated with ``cupy.empty`` from CuPy's pool, which is
  stream-ordered, so reusing freed memory is safe on the same stream.
* **No implicit syncs when numba wraps a CuPy array.** ``backend._load_cupy`` sets
  ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC=0`` and ``CUPY_CUDA_ARRAY_INTERFACE_SYNC=0``
  (and ``NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0``) with ``os.environ.setdefault``
  *before* importing CuPy: CuPy reads its variable once at import, numba re-reads its
  own at each kernel compile (and :class:`CudaKernels` reloads numba's config once).
  To be sure in a script that imports CuPy itself first, export them in the shell.
* **Cached device-array views.** ``kernels.cuda`` turns each CuPy array into a numba
  view once (``kernels.cuda.as_device_array``) and caches it while the array lives:
  parameters and optimizer moments, which are passed every step, are wrapped once.
  Fresh activations are wrapped on first use; this provider avoids creating extra
  Python array objects (it reshapes only when an array is not already 2-D).

Traps measured by others, kept out of this module on purpose: an implicit sync per
foreign array (the env vars above), building the numba view anew on every launch (the
cache), numba's occupancy warning on every small launch (the env var above), and
launching on numba's default stream while CuPy works on another (ordering bugs, or a
sync to hide them).

Testing without a GPU: :func:`simulate_on_host` runs this provider on NumPy arrays
under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), through the whole engine.
"""

from __future__ import annotations

import contextlib
import math
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np

from minivae.providers import backend

# kernels.cuda never imports minivae; importing it needs numba's CUDA target (or the
# simulator), which is why this module is imported only when a GPU array shows up.
from kernels import cuda as kc


def _rows(a: Any) -> Any:
    """``a`` as the 2-D (rows, features) array the batch kernels take (a view, no copy).

    1-D and 2-D arrays go as they are (the kernels read a 1-D array as one row), so
    no new array object is made on the common path; 0-d becomes (1, 1), and leading
    batch axes are folded into the rows (written so that zero-size shapes work too).
    """
    if a.ndim in (1, 2):
        return a
    if a.ndim == 0:
        return a.reshape(1, 1)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


class CudaKernels:
    """Hot-path functions on C-contiguous float arrays; each returns a new array (Adam: in place).

    ``xp`` is the array module outputs are allocated with and ``stream`` a function
    returning the stream to launch on. The defaults (``None``) mean CuPy and CuPy's
    current stream, resolved on first use; :func:`simulate_on_host` passes NumPy and
    the default stream instead, for the simulator.
    """

    name = "custom-cuda"

    def __init__(self, xp: ModuleType | None = None, stream: Callable[[], Any] | None = None) -> None:
        self._xp = xp
        self._stream_fn = stream

    # -- wiring -------------------------------------------------------------------
    @property
    def xp(self) -> ModuleType:
        """The array module outputs are allocated with (CuPy unless told otherwise)."""
        if self._xp is None:
            self._bind_cupy()
        return self._xp  # type: ignore[return-value]

    def _stream(self) -> Any:
        if self._stream_fn is None:
            self._bind_cupy()
        return self._stream_fn()  # type: ignore[misc]

    def _bind_cupy(self) -> None:
        cupy = backend._load_cupy()  # clear BackendError when CuPy or the GPU is missing
        from numba.core import config

        config.reload_config()  # pick up backend.GPU_ENVIRONMENT now, not at the next compile
        self._xp = cupy
        # The CuPy stream object itself: kernels.cuda.cuda_stream wraps its pointer once
        # (cached) as a numba external stream; the null stream maps to numba's stream 0.
        self._stream_fn = cupy.cuda.get_current_stream

    # -- dense layer -------------------------------------------------------------
    def matmul(self, a: Any, b: Any, *, trans_a: bool = False, trans_b: bool = False, bias: Any = None) -> Any:
        """op(a) @ op(b) [+ bias], op = transpose when flagged; the transposes are read in place."""
        m = a.shape[1] if trans_a else a.shape[0]
        n = b.shape[0] if trans_b else b.shape[1]
        out = self.xp.empty((m, n), dtype=a.dtype)
        if bias is not None and not bias.flags.c_contiguous:
            bias = self.xp.ascontiguousarray(bias)
        return kc.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, bias=bias, stream=self._stream())

    def column_sum(self, g: Any) -> Any:
        """Σ_rows g: the bias gradient of a dense layer."""
        rows = _rows(g)
        out = self.xp.empty(rows.shape[-1], dtype=g.dtype)
        if rows.ndim == 1:  # a single row sums to itself
            rows = rows.reshape(1, rows.shape[0])
        return kc.column_sum(rows, out, stream=self._stream())

    # -- activations (derivatives from the output y) -----------------------------------
    def activation(self, name: str, x: Any, slope: float) -> Any:
        out = self.xp.empty_like(x)
        kc.bias_act_forward(_rows(x), None, _rows(out), name, slope, stream=self._stream())
        return out

    def activation_grad(self, name: str, g: Any, y: Any, slope: float) -> Any:
        out = self.xp.empty_like(g)
        kc.bias_act_backward(_rows(g), _rows(y), _rows(out), name, slope, from_output=True, stream=self._stream())
        return out

    # -- the sampling node and the KL -------------------------------------------------------
    def reparam(self, mu: Any, logvar: Any, eps: Any) -> Any:
        z = self.xp.empty_like(mu)
        kc.reparam_forward(_rows(mu), _rows(logvar), _rows(eps), _rows(z), stream=self._stream())
        return z

    def reparam_grad_logvar(self, g: Any, logvar: Any, eps: Any) -> Any:
        # The kernel also writes grad_mu (= g); the engine passes g itself on as mu's
        # gradient, so that copy goes to a scratch buffer (never into g, which other
        # graph nodes may hold).
        grad_mu, grad_logvar = self.xp.empty_like(g), self.xp.empty_like(g)
        kc.reparam_backward(_rows(g), _rows(logvar), _rows(eps), _rows(grad_mu), _rows(grad_logvar),
                            stream=self._stream())
        return grad_logvar

    def kl_rows(self, mu: Any, logvar: Any) -> Any:
        """Per-row KL(N(mu, e^logvar) ‖ N(0, I)) of 2-D (rows, latent) arrays."""
        out = self.xp.empty(mu.shape[0], dtype=mu.dtype)
        return kc.kl_forward(mu, logvar, out, stream=self._stream())

    def kl_grads(self, mu: Any, logvar: Any, g_rows: Any) -> tuple[Any, Any]:
        grad_mu, grad_logvar = self.xp.empty_like(mu), self.xp.empty_like(mu)
        kc.kl_backward(mu, logvar, g_rows, grad_mu, grad_logvar, stream=self._stream())
        return grad_mu, grad_logvar

    # -- reconstruction loss --------------------------------------------------------------
    def bce_logits(self, logits: Any, target: Any) -> Any:
        out = self.xp.empty_like(logits)
        kc.bce_logits_forward(_rows(logits), _rows(target), _rows(out), stream=self._stream())
        return out

    def bce_logits_grad(self, logits: Any, target: Any, g: Any) -> Any:
        out = self.xp.empty_like(logits)
        kc.bce_logits_backward(_rows(logits), _rows(target), _rows(out), grad_out=_rows(g), stream=self._stream())
        return out

    # -- optimizer ------------------------------------------------------------------------
    def adam(self, param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay) -> None:
        """One Adam step in place on param, m, v (all scalars are Python numbers: no sync)."""
        # minivae's Adam adds weight decay to the gradient (L2), not decoupled (AdamW)
        kc.adam_update(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled=False,
                       stream=self._stream())


#: The provider ``backend.fast_path`` returns for CuPy arrays (CuPy bound on first use).
PROVIDER = CudaKernels()


@contextlib.contextmanager
def simulate_on_host() -> Iterator[CudaKernels]:
    """Test hook: NumPy arrays take the CUDA-kernel path, exactly as CuPy arrays would.

    Inside the block, ``backend.fast_path`` returns a :class:`CudaKernels` that
    allocates with NumPy and launches on the default stream, for every NumPy array,
    unless the kernel set is ``"reference"``. Meant for Numba's CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``, which tests/conftest.py sets), where the kernels run
    on NumPy arrays directly; on a real GPU it still works, with numba copying each
    array to the device and back (slow, but a useful cross-check). Not re-entrant.
    """
    if backend._host_override is not None:
        raise RuntimeError("simulate_on_host() is already active")
    provider = CudaKernels(xp=np, stream=lambda: 0)
    backend._host_override = provider
    try:
        yield provider
    finally:
        backend._host_override = None
