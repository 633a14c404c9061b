"""Numba kernels for minivae: CUDA (tiled GEMM, fused elementwise ops, reductions)
and multi-threaded CPU versions of the elementwise ops. Standalone: never imports
minivae.

Importing this package needs no GPU: the CPU functions work at once, and the CUDA
kernels compile on their first launch (on NumPy arrays under NUMBA_ENABLE_CUDASIM=1).

Every elementwise formula lives once in ``kernels.formulas`` and is compiled for both
targets (``formulas.GPU.*`` with ``cuda.jit(device=True)``, ``formulas.CPU.*`` with
``numba.njit``).

Public API (``out``-style arguments are caller-allocated buffers, written in place):

=================================================  ==============================================
GPU: ``kernels.cuda``                               computes
=================================================  ==============================================
``matmul(a, b, out, *, trans_a, trans_b,           out = op(a) @ op(b) [+ bias] [+ out];
bias, accumulate, stream)``                         op = transpose when flagged, read in place
``bias_act_forward(x, bias, out, act, slope)``     out = f(x + bias)   (bias may be None)
``bias_act_backward(grad_out, saved, grad_in,      grad_in = grad_out * f'(.); grad_bias =
act, slope, *, grad_bias, from_output)``            column sums of grad_in, same pass
``reparam_forward(mu, logvar, eps, z)``            z = mu + exp(logvar/2) * eps
``reparam_backward(grad_z, logvar, eps,            grad_mu = grad_z (skipped when None),
grad_mu, grad_logvar)``                             grad_logvar = grad_z * exp(logvar/2) * eps / 2
``kl_forward(mu, logvar, out)``                    out[i] = sum_j KL term, per row
``kl_backward(mu, logvar, grad_rows, grad_mu,      g = scale * grad_rows[i]; grad_mu = g mu,
grad_logvar, *, scale)``                            grad_logvar = g (exp(lv) - 1) / 2
``bce_logits_forward(logits, target, out)``        elementwise BCE with logits
``bce_logits_sum(logits, target, out)``            out[0] = sum of the BCE (fused reduction)
``bce_logits_row_sums(logits, target, out)``       out[i] = BCE summed over row i (fused)
``bce_logits_backward(logits, target, grad_in,     grad_in = scale * g * (sigmoid(l) - x), g =
*, scale, grad_out, grad_rows)``                    grad_out, grad_rows[i] per row, or 1
``adam_update(param, grad, m, v, lr, beta1,        one Adam / AdamW step in place
beta2, eps, step, weight_decay, *, decoupled)``
``column_sum(x, out, *, accumulate)``              out[j] = sum_i x[i, j]
``total_sum(x, out, *, accumulate)``               out[0] = sum of all of x
``fill(out, value)``                               out[...] = value
``as_device_array(a)``                             cached numba view of a CuPy array
``cuda_stream(stream)``                            0 / numba stream / CuPy stream / pointer
``launch_overhead_probe(repeats)``                 seconds of host time per empty launch
``recording(run=True)``                            context: list of the launches made in it
=================================================  ==============================================

Every GPU function also takes ``stream=0``. The CPU module ``kernels.cpu`` has the
same elementwise functions for NumPy arrays (no ``stream``), plus ``column_sum``,
``total_sum`` and ``bce_logits_sum`` returning Python floats where the GPU writes a
1-element array; matrix products on the CPU stay with NumPy.

For low host overhead on a GPU, ``import minivae.kernels`` sets
``NUMBA_CUDA_ARRAY_INTERFACE_SYNC=0`` and ``CUPY_CUDA_ARRAY_INTERFACE_SYNC=0`` (unless
already set; see ``kernels.cuda_settings``): import it before CuPy. Pass CuPy's stream
as ``stream=cupy.cuda.get_current_stream()`` (or
``numba.cuda.external_stream(cupy.cuda.get_current_stream().ptr)``).
"""

from __future__ import annotations

import importlib

# First, before anything imports numba's CUDA target: the interop settings it reads
# when it loads (see cuda_settings).
from . import cuda_settings

cuda_settings.apply()

from . import cpu, formulas  # noqa: E402  (after the settings, on purpose)
from .formulas import ACTIVATIONS, activation_code

__all__ = ["ACTIVATIONS", "activation_code", "cpu", "cuda", "formulas", "launch_overhead_probe"]


def __getattr__(name: str):
    """``kernels.cuda`` (all CUDA entry points) is imported on first use, so that a
    numba without a working CUDA target never breaks ``import minivae.kernels``."""
    if name == "cuda":
        module = importlib.import_module(".cuda", __name__)
        globals()["cuda"] = module
        return module
    if name == "launch_overhead_probe":
        from .cuda_launch import launch_overhead_probe

        return launch_overhead_probe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
