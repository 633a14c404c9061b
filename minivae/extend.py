"""Public helpers for writing your own op and plugging it into minivae.

- :func:`array_module` gives the array library (NumPy, or CuPy on a GPU) that holds
  an array or a tensor's data, so one op's code runs on both.
- ``Tensor.from_op(data, parents, backward, op)`` (in :mod:`minivae.tensor`) makes
  the graph node; see "Write your own op" (course/write_your_own_op.md).
- :func:`replace_op` swaps your function in for one of the library's, for the length
  of a ``with`` block, so the library's models (a VAE's KL, its sampling node)
  train with your code::

      with mv.extend.replace_op("kl_normal_standard", my_kl):
          train(model, ...)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from minivae.providers import backend
from minivae.tensor import Tensor

# The ops replace_op can swap, and the modules whose attribute the library looks up at
# call time (Normal.kl_standard calls kl_normal_standard(...), Normal.rsample calls
# reparameterize(...)): the two nodes on every VAE's training path. Activations are not
# here: a Linear followed by an activation module runs as one fused node, which would
# never call a swapped-in sigmoid.
REPLACEABLE: dict[str, tuple[str, ...]] = {
    "kl_normal_standard": ("minivae.distributions",),
    "reparameterize": ("minivae.distributions",),
}


def array_module(x: Any):
    """``numpy`` or ``cupy``: the module whose functions work on ``x`` (an array or a Tensor).

    Write ``xp = array_module(x)`` at the top of an op and ``xp.exp(...)`` below, never
    ``np.exp``, and the op runs on the GPU backend unchanged. For a tensor it is
    ``minivae.ops.array_module``; it also takes the bare arrays a VJP works with.
    """
    return backend.array_module(x.data if isinstance(x, Tensor) else x)


@contextlib.contextmanager
def replace_op(name: str, fn: Callable[..., Tensor]) -> Iterator[None]:
    """Inside the block, the library calls ``fn`` wherever it would call the op ``name``.

    ``name`` is one of :data:`REPLACEABLE`; ``fn`` takes and returns what the op does
    (Tensors). The swap is process-wide (not per thread) and undone on leaving the block,
    also after an error. ``mv.<name>`` (the name imported at package level) is swapped too.
    """
    import importlib

    import minivae

    if name not in REPLACEABLE:
        raise ValueError(f"replace_op: {name!r} cannot be replaced; expected one of {sorted(REPLACEABLE)}")
    if not callable(fn):
        raise TypeError(f"replace_op: the replacement for {name!r} must be callable, got {type(fn).__name__}")
    slots = [importlib.import_module(m) for m in REPLACEABLE[name]] + [minivae]
    saved = [(module, getattr(module, name)) for module in slots]
    try:
        for module in slots:
            setattr(module, name, fn)
        yield
    finally:
        for module, original in saved:
            setattr(module, name, original)
