"""The GPU provider of compiled hot paths: our Numba CUDA kernels (``kernels.cuda``) on CuPy arrays.

:class:`CudaKernels` implements every method of :class:`minivae.providers.base.Provider`
with the kernels of ``kernels/`` (tiled GEMM, fused elementwise passes, reductions);
``set_kernels("custom")`` sends every CuPy array here. It subclasses the reference
provider only to inherit its plain array code for inputs no kernel takes (integer or
mixed dtypes); every float32 / float64 input of any layout runs on our kernels.
:func:`auto_provider` (the ``"auto"`` kernel set on a GPU) picks, per method and
batch size, ours or the vendor's (the reference provider on CuPy: cuBLAS and CuPy's
kernels).

Any layout: the batch kernels index ``a[row, col]``, so transposed, sliced and
broadcast (stride-0) 2-D views are read in place, without a copy; arrays of more
dimensions are folded to 2-D (a copy only where the view cannot be folded), 0-d
arrays become 1x1, and inputs that broadcast against each other are broadcast as
stride-0 views. Outputs are new C-contiguous arrays.

How the hot path stays cheap (a 784-400-20 VAE layer runs for microseconds, so the
host side of a launch matters as much as the kernel):

* **One stream.** Every kernel is launched on CuPy's *current* stream, the stream
  CuPy's own ops and its memory pool use: ordered by the stream itself, no
  synchronisation, none done.
* **No host round trips.** No method reads a device value back; scalars (learning
  rate, slope) go in as Python numbers, converted to the array's dtype on the host.
* **No implicit syncs, no per-launch wrappers.** ``import minivae.kernels`` sets the interop
  variables before numba's CUDA target loads (``kernels/cuda_settings.py``), and
  numba-cuda >= 0.24 takes CuPy arrays as they are at launch.
* **Few launches.** One kernel per method call; outputs that several blocks add into
  atomically are allocated zeroed (a CuPy memset) instead of being zeroed by a second
  kernel; the BCE row sums never store the elementwise values and save nothing for
  the gradient (recomputing e^-|l| costs less than writing and re-reading it); the
  gradient of a sum (a stride-0 view) is read one value per row; Adam takes 1-D and
  2-D parameters without reshaping them. tests/test_gpu_backend.py counts
  the launches of a VAE training step.

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
from minivae.providers.base import ACTIVATION_NAMES
from minivae.providers.reference import PROVIDER as REFERENCE, ReferenceProvider

# kernels.cuda never imports minivae; importing it needs numba's CUDA target (or the
# simulator), which is why this module is imported only when a GPU array shows up.
from minivae.kernels import cuda as kc
from minivae.kernels.cuda_reduce import ROWS_PER_BLOCK

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _rows(a: Any) -> Any:
    """``a`` as the 2-D (rows, features) array the batch kernels take.

    1-D and 2-D arrays go as they are (a kernel reads a 1-D array as one row, and any
    strides), so no new array object is made on the common path; 0-d becomes (1, 1),
    and leading axes are folded into the rows (a view where the strides allow it).
    """
    if a.ndim in (1, 2):
        return a
    if a.ndim == 0:
        return a.reshape(1, 1)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _row_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) if len(shape) > 1 else 1


class CudaKernels(ReferenceProvider):
    """Every provider method on our CUDA kernels; each returns a new array (Adam: in place).

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
        cupy = backend.load_cupy()  # clear BackendError when CuPy or the GPU is missing
        self._xp = cupy
        # The CuPy stream object itself: kernels.cuda.cuda_stream wraps its pointer once
        # (cached) as a numba external stream; the null stream maps to numba's stream 0.
        self._stream_fn = cupy.cuda.get_current_stream

    @staticmethod
    def _ours(*arrays: Any) -> bool:
        """True when the kernels take these arrays: one float dtype they are compiled for."""
        dtype = arrays[0].dtype
        return dtype in _KERNEL_DTYPES and all(a.dtype == dtype for a in arrays)

    def _broadcast(self, *arrays: Any) -> tuple[tuple[int, ...], list[Any]]:
        """The common shape, and the arrays as views of it (stride 0 where broadcast)."""
        shape = arrays[0].shape
        if all(a.shape == shape for a in arrays):
            return shape, list(arrays)
        views = self.xp.broadcast_arrays(*arrays)
        return views[0].shape, list(views)

    # -- dense layer -------------------------------------------------------------
    def matmul(self, a, b, *, trans_a=False, trans_b=False, bias=None):
        """op(a) @ op(b) [+ bias], op = transpose when flagged; transposes and strided
        operands are read in place by the tiled kernel."""
        if a.ndim != 2 or b.ndim != 2 or not self._ours(a, b, *(() if bias is None else (bias,))):
            return super().matmul(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias)
        m = a.shape[1] if trans_a else a.shape[0]
        n = b.shape[0] if trans_b else b.shape[1]
        out = self.xp.empty((m, n), dtype=a.dtype)
        if bias is not None and bias.shape != (n,):
            bias = self.xp.broadcast_to(bias, (n,))
        return kc.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, bias=bias, stream=self._stream())

    def _zeroed_if_atomic(self, rows: int, cols: int, dtype) -> tuple[Any, bool]:
        """An output for column sums: zeroed (a memset, no kernel) when several row
        blocks add into it atomically, else uninitialised. Returns (out, accumulate)."""
        if rows > ROWS_PER_BLOCK:
            return self.xp.zeros(cols, dtype=dtype), True
        return self.xp.empty(cols, dtype=dtype), False

    def column_sum(self, g):
        """Σ_rows g: the bias gradient of a dense layer."""
        if g.ndim == 0 or not self._ours(g):
            return super().column_sum(g)
        rows = _rows(g)
        if rows.ndim == 1:
            rows = rows.reshape(1, rows.shape[0])
        out, accumulate = self._zeroed_if_atomic(rows.shape[0], rows.shape[1], g.dtype)
        return kc.column_sum(rows, out, accumulate=accumulate, stream=self._stream())

    # -- activations (derivatives from the output y) -----------------------------------
    @staticmethod
    def _check_name(name: str) -> None:
        if name not in ACTIVATION_NAMES:
            raise ValueError(f"activation: unknown name {name!r}; expected one of {sorted(ACTIVATION_NAMES)}")

    def activation(self, name, x, slope, *, inplace=False):
        self._check_name(name)
        if not self._ours(x):
            return super().activation(name, x, slope)
        # In place only into an array the kernel can write as it is (the caller owns it).
        out = x if inplace and x.ndim and x.flags.c_contiguous else self.xp.empty(x.shape, dtype=x.dtype)
        kc.bias_act_forward(_rows(x), None, _rows(out), name, slope, stream=self._stream())
        return out

    def activation_grad(self, name, g, y, slope):
        self._check_name(name)
        if not self._ours(g, y):
            return super().activation_grad(name, g, y, slope)
        shape, (g, y) = self._broadcast(g, y)
        out = self.xp.empty(shape, dtype=g.dtype)
        kc.bias_act_backward(_rows(g), _rows(y), _rows(out), name, slope, from_output=True, stream=self._stream())
        return out

    def activation_grad_bias(self, name, g, y, slope):
        """(g · f'(x), its column sums) in one pass: the fused layer's two gradients."""
        self._check_name(name)
        if g.ndim == 0 or not self._ours(g, y):
            return super().activation_grad_bias(name, g, y, slope)
        shape, (g, y) = self._broadcast(g, y)
        out = self.xp.empty(shape, dtype=g.dtype)
        grad_bias, accumulate = self._zeroed_if_atomic(_row_count(shape), shape[-1], g.dtype)
        kc.bias_act_backward(_rows(g), _rows(y), _rows(out), name, slope, grad_bias=grad_bias,
                             from_output=True, accumulate_bias=accumulate, stream=self._stream())
        return out, grad_bias

    # -- the sampling node and the KL -------------------------------------------------------
    def reparam(self, mu, logvar, eps):
        if not self._ours(mu, logvar, eps):
            return super().reparam(mu, logvar, eps)
        shape, (mu, logvar, eps) = self._broadcast(mu, logvar, eps)
        z = self.xp.empty(shape, dtype=mu.dtype)
        kc.reparam_forward(_rows(mu), _rows(logvar), _rows(eps), _rows(z), stream=self._stream())
        return z

    def reparam_grad_logvar(self, g, logvar, eps):
        if not self._ours(g, logvar, eps):
            return super().reparam_grad_logvar(g, logvar, eps)
        shape, (g, logvar, eps) = self._broadcast(g, logvar, eps)
        out = self.xp.empty(shape, dtype=g.dtype)
        # grad_mu=None: only grad_logvar is written (the engine passes g on as mu's gradient).
        kc.reparam_backward(_rows(g), _rows(logvar), _rows(eps), None, _rows(out), stream=self._stream())
        return out

    def kl_rows(self, mu, logvar):
        """Per-row KL(N(mu, e^logvar) ‖ N(0, I)): summed over the last axis."""
        if mu.ndim == 0 or not self._ours(mu, logvar):
            return super().kl_rows(mu, logvar)
        shape, (mu, logvar) = self._broadcast(mu, logvar)
        out = self.xp.empty(shape[:-1], dtype=mu.dtype)
        kc.kl_forward(_rows(mu), _rows(logvar), out.reshape(_row_count(shape)), stream=self._stream())
        return out

    def kl_grads(self, mu, logvar, g_rows):
        if mu.ndim == 0 or not self._ours(mu, logvar, g_rows):
            return super().kl_grads(mu, logvar, g_rows)
        shape, (mu, logvar) = self._broadcast(mu, logvar)
        if g_rows.shape != shape[:-1]:
            g_rows = self.xp.broadcast_to(g_rows, shape[:-1])
        grad_mu, grad_logvar = self.xp.empty(shape, dtype=mu.dtype), self.xp.empty(shape, dtype=mu.dtype)
        kc.kl_backward(_rows(mu), _rows(logvar), g_rows.reshape(_row_count(shape)), _rows(grad_mu),
                       _rows(grad_logvar), stream=self._stream())
        return grad_mu, grad_logvar

    # -- reconstruction loss --------------------------------------------------------------
    # Nothing is saved for the gradient (saved=None): recomputing e^-|l| in the backward
    # kernel, which reads the logits anyway, is cheaper on a GPU than writing it here and
    # reading it back there.
    def bce_logits(self, logits, target):
        if not self._ours(logits, target):
            return super().bce_logits(logits, target)
        shape, (logits, target) = self._broadcast(logits, target)
        out = self.xp.empty(shape, dtype=logits.dtype)
        kc.bce_logits_forward(_rows(logits), _rows(target), _rows(out), stream=self._stream())
        return out, None

    def bce_logits_row_sums(self, logits, target):
        """(Σ over the last axis of the BCE values, None): one fused pass, the values never stored."""
        if logits.ndim == 0 or not self._ours(logits, target):
            return super().bce_logits_row_sums(logits, target)
        shape, (logits, target) = self._broadcast(logits, target)
        sums = self.xp.empty(shape[:-1], dtype=logits.dtype)
        kc.bce_logits_row_sums(_rows(logits), _rows(target), sums.reshape(_row_count(shape)), stream=self._stream())
        return sums, None

    def bce_logits_grad(self, logits, target, saved, g):
        """g · (σ(l) - x). A g that is constant along the last axis (the stride-0 gradient
        of a row sum) is read as one value per row; ``saved`` is not used (always None here)."""
        if not self._ours(logits, target, g):
            return super().bce_logits_grad(logits, target, saved, g)
        shape, (logits, target, g) = self._broadcast(logits, target, g)
        out = self.xp.empty(shape, dtype=logits.dtype)
        if g.ndim >= 1 and g.strides[-1] == 0 and shape[-1] > 1:
            grad = dict(grad_rows=g[..., 0].reshape(_row_count(shape)))
        else:
            grad = dict(grad_out=_rows(g))
        kc.bce_logits_backward(_rows(logits), _rows(target), _rows(out), **grad, stream=self._stream())
        return out

    # -- optimizer ------------------------------------------------------------------------
    def adam(self, param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay):
        """One Adam step in place on param, m, v (all scalars are Python numbers: no sync).

        minivae's Adam adds the weight decay to the gradient (L2), not decoupled (AdamW)."""
        if not self._ours(param, grad, m, v) or not (param.flags.c_contiguous and m.flags.c_contiguous
                                                      and v.flags.c_contiguous):
            return super().adam(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay)
        if not grad.flags.c_contiguous:
            grad = self.xp.ascontiguousarray(grad)
        kc.adam_update(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled=False,
                       stream=self._stream())

    def adam_foreach(self, params, grads, ms, vs, lr, beta1, beta2, eps, step, weight_decay):
        """One Adam launch per parameter (one launch for all of them is still to be written)."""
        for param, grad, m, v in zip(params, grads, ms, vs):
            self.adam(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay)

    def sgd_foreach(self, params, grads, velocities, lr, momentum, weight_decay):
        """No SGD kernel of ours: the reference's array expressions (CuPy's kernels on a GPU)."""
        super().sgd_foreach(params, grads, velocities, lr, momentum, weight_decay)


#: The provider the "custom" kernel set gives CuPy arrays (CuPy bound on first use).
PROVIDER = CudaKernels()


# ---------------------------------------------------------------------------- "auto"

#: Where "auto" sends each method on a GPU, per batch-size class. No GPU benchmark is
#: committed yet (benchmarks/README.md, GPU section), so this is the documented default,
#: an estimate from reading the code rather than a measurement: cuBLAS for the matrix
#: products (our tiled SGEMM is estimated at 20-35% of cuBLAS), our fused kernels for
#: the rest (one launch and one pass over memory where CuPy runs a chain of elementwise
#: kernels with temporaries). Replace it with the winners of benchmarks/gpu.py once run.
AUTO_MEASURED = False
AUTO_CHOICES: dict[str, dict[str, str]] = {
    method: {"small": "custom", "large": "custom"}
    for method in ("column_sum", "activation", "activation_grad", "activation_grad_bias", "reparam",
                   "reparam_grad_logvar", "kl_rows", "kl_grads", "bce_logits", "bce_logits_row_sums",
                   "bce_logits_grad", "adam", "adam_foreach", "sgd_foreach")
}
AUTO_CHOICES["matmul"] = {"small": "vendor", "large": "vendor"}
#: rows of the first argument up to which a call counts as "small" (a batch of <= 128)
AUTO_SMALL_ROWS = 128


class AutoProvider:
    """Per method and batch-size class, our kernels or the vendor's (see AUTO_CHOICES)."""

    name = "auto-cuda"

    def __init__(self, custom: Any, vendor: Any, choices: dict[str, dict[str, str]] = AUTO_CHOICES,
                 small_rows: int = AUTO_SMALL_ROWS) -> None:
        self.custom, self.vendor, self.small_rows = custom, vendor, small_rows
        self.choices = {method: {size: custom if pick == "custom" else vendor for size, pick in by_size.items()}
                        for method, by_size in choices.items()}
        self.measured = AUTO_MEASURED

    def _pick(self, method: str, a: Any) -> Any:
        rows = a.shape[0] if a.ndim else 1
        return self.choices[method]["small" if rows <= self.small_rows else "large"]

    def matmul(self, a, b, *, trans_a=False, trans_b=False, bias=None):
        return self._pick("matmul", a).matmul(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias)

    def column_sum(self, g):
        return self._pick("column_sum", g).column_sum(g)

    def activation(self, name, x, slope, *, inplace=False):
        return self._pick("activation", x).activation(name, x, slope, inplace=inplace)

    def activation_grad(self, name, g, y, slope):
        return self._pick("activation_grad", g).activation_grad(name, g, y, slope)

    def activation_grad_bias(self, name, g, y, slope):
        return self._pick("activation_grad_bias", g).activation_grad_bias(name, g, y, slope)

    def reparam(self, mu, logvar, eps):
        return self._pick("reparam", mu).reparam(mu, logvar, eps)

    def reparam_grad_logvar(self, g, logvar, eps):
        return self._pick("reparam_grad_logvar", g).reparam_grad_logvar(g, logvar, eps)

    def kl_rows(self, mu, logvar):
        return self._pick("kl_rows", mu).kl_rows(mu, logvar)

    def kl_grads(self, mu, logvar, g_rows):
        return self._pick("kl_grads", mu).kl_grads(mu, logvar, g_rows)

    def bce_logits(self, logits, target):
        return self._pick("bce_logits", logits).bce_logits(logits, target)

    def bce_logits_row_sums(self, logits, target):
        return self._pick("bce_logits_row_sums", logits).bce_logits_row_sums(logits, target)

    def bce_logits_grad(self, logits, target, saved, g):
        # The provider that made `saved` must read it: both BCE forwards of a class pick alike,
        # and ours saves None, which the vendor also takes.
        return self._pick("bce_logits_grad", logits).bce_logits_grad(logits, target, saved, g)

    def adam(self, param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay):
        return self._pick("adam", param).adam(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay)

    def adam_foreach(self, params, grads, ms, vs, lr, beta1, beta2, eps, step, weight_decay):
        return self._pick("adam_foreach", params[0]).adam_foreach(params, grads, ms, vs, lr, beta1, beta2, eps,
                                                                   step, weight_decay)

    def sgd_foreach(self, params, grads, velocities, lr, momentum, weight_decay):
        return self._pick("sgd_foreach", params[0]).sgd_foreach(params, grads, velocities, lr, momentum,
                                                                 weight_decay)


_AUTO: AutoProvider | None = None


def auto_provider() -> AutoProvider:
    """The provider of the ``"auto"`` kernel set for CuPy arrays (made once).

    ``auto_provider().measured`` is False while the choices are the documented default
    (no GPU benchmark committed); see AUTO_CHOICES."""
    global _AUTO
    if _AUTO is None:
        _AUTO = AutoProvider(PROVIDER, REFERENCE)
    return _AUTO


# ---------------------------------------------------------------------- simulator hook

_simulating = False


@contextlib.contextmanager
def simulate_on_host() -> Iterator[CudaKernels]:
    """Test hook: NumPy arrays take the CUDA-kernel path, exactly as CuPy arrays would.

    Inside the block a :class:`CudaKernels` that allocates with NumPy and launches on
    the default stream serves every array (``minivae.providers.use_provider``). Meant
    for Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, which tests/conftest.py
    sets), where the kernels run on NumPy arrays directly; on a real GPU it still works,
    with numba copying each array to the device and back (slow, but a useful
    cross-check). Not re-entrant.
    """
    global _simulating
    from minivae.providers import use_provider

    if _simulating:
        raise RuntimeError("simulate_on_host() is already active")
    provider = CudaKernels(xp=np, stream=lambda: 0)
    _simulating = True
    try:
        with use_provider(provider):
            yield provider
    finally:
        _simulating = False
