"""Memory estimates made before allocating: a huge setting is refused with a number, not a MemoryError.

The estimate of a training run (:func:`training_bytes`) counts, for the model it will build:

- the **parameters**, 10 float32 copies: value, gradient, Adam's two moments, and the
  checkpoint's copies while it is written (the arrays gathered for ``np.savez``, then
  the archive's bytes);
- the **activations** of one batch: every layer's output for every example (and
  every importance sample, for IWAE), times :data:`ACTIVATION_COPIES` for the
  gradients and the temporaries the operations keep for backward. Each model's
  largest arrays are in the count: the VQ-VAE's distances to every code
  (positions x codebook size per example), the MADE decoder's masked layers, the
  IWAE's k decoder passes.

:data:`ACTIVATION_COPIES` and :data:`MARGIN` are set from the real peak: the test
``tests/test_memory_estimates.py`` traces every model's allocations (tracemalloc
sees NumPy's) through building it and two training steps at a few sizes, and
requires the estimate to lie between the peak and 10x the peak.

The memory available is the smaller of the machine's (MemAvailable) and what a
process limit (``ulimit -v``, RLIMIT_AS) still leaves this process.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

FLOAT_BYTES = 4  # float32 parameters and activations
#: Copies of a parameter alive at the peak: value, gradient, two Adam moments, 2 x (value and moments)
#: while a checkpoint is written.
PARAMETER_COPIES = 10
#: Copies of each activation: value, gradient, saved temporaries (measured; see the module's docstring).
ACTIVATION_COPIES = 6
#: Safety factor over the count: allocator slack, the interpreter's own arrays.
MARGIN = 1.25


class MemoryEstimateError(ValueError):
    """A setting would need more memory than the machine has; the message says how much."""


def _process_limit_left() -> int | None:
    """What RLIMIT_AS (``ulimit -v``) still allows this process to map, or None without a limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - used)


def available_bytes() -> int | None:
    """Memory available to a new allocation: MemAvailable on Linux (else physical memory), and no more
    than a process limit (``ulimit -v``) leaves; None when nothing is known."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
            free = None
    limit = _process_limit_left()
    if limit is not None:
        free = limit if free is None else min(free, limit)
    return free


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def mlp_parameters(widths: Sequence[int]) -> int:
    """Weights and biases of a chain of dense layers through ``widths``."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def model_size(model: str, input_dim: int, latent: int, hidden: Sequence[int], options: dict[str, Any] | None = None,
               num_classes: int | None = None) -> tuple[int, int]:
    """(parameters, activation values per example and sample) of a model, counted without building it."""
    options = options or {}
    hidden = [int(h) for h in hidden]
    classes = int(num_classes or 0) if model == "cvae" else 0
    code = latent  # what the decoder reads
    encoder_out = 2 * latent  # Gaussian mean and log-variance
    extra_params = extra_units = 0
    if model in ("ae", "dae"):
        encoder_out = latent
    elif model == "bvae":
        encoder_out = latent  # Bernoulli logits
        extra_units = 3 * latent  # probabilities, samples, the estimator's surrogate
    elif model == "vqvae":
        positions, size = int(options.get("positions", 4)), int(options.get("codebook_size", 32))
        code = encoder_out = positions * latent
        extra_params = 3 * size * latent  # the codebook, and its moving averages (ema)
        extra_units = 3 * positions * size + 4 * code  # distances to every code, their argmin, quantized codes
    elif model == "madevae":
        made = [int(h) for h in options.get("made_hidden", ())]
        extra_params = mlp_parameters([input_dim, *made, input_dim]) + input_dim * input_dim + latent * sum(made)
        extra_units = sum(made) + 3 * input_dim
    params = (mlp_parameters([input_dim + classes, *hidden, encoder_out])
              + mlp_parameters([code + classes, *hidden[::-1], input_dim]) + extra_params)
    units = input_dim + classes + sum(hidden) + encoder_out + 2 * code + sum(hidden) + 2 * input_dim + extra_units
    return params, units


def training_bytes(input_dim: int, latent: int, hidden: Sequence[int], batch: int, samples: int = 1,
                   model: str = "vae", options: dict[str, Any] | None = None, num_classes: int | None = None) -> int:
    """Bytes a training run of ``model`` needs at its peak (see the module's docstring), with the margin."""
    params, units = model_size(model, input_dim, latent, hidden, options, num_classes)
    activations = batch * samples * units
    return int(MARGIN * FLOAT_BYTES * (PARAMETER_COPIES * params + ACTIVATION_COPIES * activations))


def loading_bytes(model: str, input_dim: int, latent: int, hidden: Sequence[int],
                  options: dict[str, Any] | None = None, num_classes: int | None = None) -> int:
    """Bytes to rebuild a saved model and read its checkpoint (parameters, the archive's copies)."""
    params, _ = model_size(model, input_dim, latent, hidden, options, num_classes)
    return int(MARGIN * FLOAT_BYTES * PARAMETER_COPIES * params)


def check_fits(needed: int, what: str) -> None:
    """Raise :class:`MemoryEstimateError` when ``needed`` bytes exceed the memory available."""
    free = available_bytes()
    if free is not None and needed > free:
        raise MemoryEstimateError(
            f"{what} needs about {gigabytes(needed)} of memory, more than the {gigabytes(free)} available"
        )
