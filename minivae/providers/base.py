"""The provider interface: what an op asks of the code that computes its arrays.

An op in :mod:`minivae.ops` (or :mod:`minivae.distributions`, :mod:`minivae.optim`)
states its math and its vector-Jacobian product, then makes ONE call to the provider
of its input arrays for the heavy lifting. Three classes implement this interface:

- :class:`minivae.providers.reference.ReferenceProvider`: plain vectorised NumPy
  (or CuPy: then it is the "vendor" path, cuBLAS and CuPy's kernels). It reads like
  the docstrings and is the code to read first.
- :class:`minivae.providers.cpu.CpuProvider`: the same results on the CPU, faster
  (buffers it owns, in-place updates, compiled loops from ``kernels/``).
- :class:`minivae.providers.cuda.CudaKernels`: our Numba CUDA kernels on CuPy arrays.

Contract, for every provider and every method:

- Every method is mandatory; an op never asks whether a provider "has" something.
- Inputs may have any layout the op can produce (non-contiguous views, 0-d arrays
  where the op allows them). A provider that needs C-contiguous arrays makes them
  so itself; the op never branches on layout.
- Results are new arrays (nothing the caller holds is overwritten) except where a
  method says otherwise (``inplace=True``, ``adam``, ``bce_logits_grad``'s ``saved``).
- ``name`` is the activation's name, a key of ``ACTIVATION_NAMES``; ``slope`` is
  leaky_relu's negative slope (ignored by the others). Every activation derivative
  is written in terms of the OUTPUT y = f(x), so backward needs only y.

Which provider serves an array is decided in one place, :mod:`minivae.providers`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: The elementwise activations that have a provider kernel (forward and derivative from y).
ACTIVATION_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh", "softplus")

Array = Any  # a NumPy or CuPy array


@runtime_checkable
class Provider(Protocol):
    """The hot paths of a training step, on raw arrays."""

    name: str

    # -- dense layer ---------------------------------------------------------------------
    def matmul(self, a: Array, b: Array, *, trans_a: bool = False, trans_b: bool = False,
               bias: Array | None = None) -> Array:
        """(a or aᵀ) @ (b or bᵀ), plus ``bias`` added to every row when given. 2-D operands."""

    def column_sum(self, g: Array) -> Array:
        """Σ over the rows of ``g`` viewed as (rows, columns): a bias gradient."""

    # -- activations -------------------------------------------------------------------------
    def activation(self, name: str, x: Array, slope: float, *, inplace: bool = False) -> Array:
        """y = f(x). With ``inplace=True`` the provider may overwrite ``x`` (the caller owns it)."""

    def activation_grad(self, name: str, g: Array, y: Array, slope: float) -> Array:
        """g · f'(x), with f' written in terms of y = f(x)."""

    def activation_grad_bias(self, name: str, g: Array, y: Array, slope: float) -> tuple[Array, Array]:
        """(u = g · f'(x), Σ_rows u): a dense layer's pre-activation and bias gradients."""

    # -- the sampling node and the Gaussian KL ------------------------------------------------
    def reparam(self, mu: Array, logvar: Array, eps: Array) -> Array:
        """z = mu + exp(logvar / 2) · eps (broadcasting)."""

    def reparam_grad_logvar(self, g: Array, logvar: Array, eps: Array) -> Array:
        """g · ½ exp(logvar / 2) · eps, in the broadcast shape."""

    def kl_rows(self, mu: Array, logvar: Array) -> Array:
        """½ Σ_last-axis (e^logvar + mu² - 1 - logvar)."""

    def kl_grads(self, mu: Array, logvar: Array, g_rows: Array) -> tuple[Array, Array]:
        """(g · mu, g · ½ (e^logvar - 1)) with g_rows broadcast over the last axis."""

    # -- Bernoulli likelihood from logits ---------------------------------------------------------
    def bce_logits(self, logits: Array, target: Array) -> tuple[Array, Any]:
        """(max(l, 0) - l·x + ln(1 + e^-|l|) elementwise, saved): ``saved`` is whatever this
        provider keeps for the gradient (opaque to the caller; may be None)."""

    def bce_logits_row_sums(self, logits: Array, target: Array) -> tuple[Array, Any]:
        """(the values above summed over the last axis, saved). Same shapes for logits and target."""

    def bce_logits_grad(self, logits: Array, target: Array, saved: Any, g: Array) -> Array:
        """g · (σ(l) - x), with ``saved`` from the forward pass (None: recompute).
        The provider may reuse ``saved``'s memory: pass each ``saved`` at most once."""

    # -- optimizer -------------------------------------------------------------------------------
    def adam(self, param: Array, grad: Array, m: Array, v: Array, lr: float, beta1: float, beta2: float,
             eps: float, step: int, weight_decay: float) -> None:
        """One Adam step, in place on ``param``, ``m`` and ``v`` (see :class:`minivae.optim.Adam`)."""

    def adam_foreach(self, params: list[Array], grads: list[Array], ms: list[Array], vs: list[Array], lr: float,
                     beta1: float, beta2: float, eps: float, step: int, weight_decay: float) -> None:
        """``adam`` on every (param, grad, m, v) of the lists: a whole model's update in as few
        calls as the provider can make (PyTorch's "foreach" idea)."""

    def sgd_foreach(self, params: list[Array], grads: list[Array], velocities: list[Array | None], lr: float,
                    momentum: float, weight_decay: float) -> None:
        """SGD in place on every parameter (see :class:`minivae.optim.SGD`):
        d = g + λ·θ;  v ← μ·v + d;  θ ← θ - lr·v  (θ ← θ - lr·d when μ = 0). A ``None`` in
        ``velocities`` starts as d itself (v ← d): the provider stores the new array there."""
