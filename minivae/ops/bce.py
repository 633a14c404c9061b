"""Binary cross-entropy from logits, elementwise and summed in one node.

Both make one provider call for the value and one for the gradient with respect to
the logits. Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.6.
"""

from __future__ import annotations

from typing import Any

from minivae.ops.operands import array_module, binary_operands, expand_back, needs_grad, reduction_axes
from minivae.providers import backend, provider_for
from minivae.tensor import Tensor


def _bce_operands(op: str, logits: Any, target: Any) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """The two operands as tensors of one dtype, and the shape they broadcast to."""
    logits, target = binary_operands(op, logits, target)
    try:
        shape = backend.numpy.broadcast_shapes(logits.shape, target.shape)
    except ValueError:
        raise ValueError(f"{op}: logits {logits.shape} and target {target.shape} do not broadcast") from None
    return logits, target, shape


def _bce_node(logits: Tensor, target: Tensor, value, saved, provider, expand_grad, op: str) -> Tensor:
    """The node shared by the two BCE ops: ``expand_grad`` maps the upstream gradient to
    ℓ's elementwise shape (the identity, or undoing a sum). The provider's ``saved``
    (e^-|l| on the CPU) serves one backward; a second one (retain_graph) recomputes.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.6."""

    def backward(g):
        nonlocal saved
        g = expand_grad(g)
        once, saved = saved, None
        gl = provider.bce_logits_grad(logits.data, target.data, once, g) if needs_grad(logits) else None
        gt = -g * logits.data if needs_grad(target) else None
        return gl, gt

    return Tensor.from_op(value, (logits, target), backward, op)


def bce_with_logits(logits: Tensor, target: Any) -> Tensor:
    """Elementwise Bernoulli negative log-likelihood from logits l for targets x ∈ [0, 1]:

        ℓ(l, x) = -[x ln σ(l) + (1 - x) ln(1 - σ(l))] = max(l, 0) - l·x + ln(1 + e^-|l|),

    the right-hand form being finite for every l.   ∂ℓ/∂l = σ(l) - x,   ∂ℓ/∂x = -l.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.6.
    """
    logits, target, _ = _bce_operands("bce_with_logits", logits, target)
    provider = provider_for(logits.data)
    value, saved = provider.bce_logits(logits.data, target.data)
    return _bce_node(logits, target, value, saved, provider, lambda g: g, "bce_with_logits")


def bce_with_logits_sum(logits: Tensor, target: Any, axis=None) -> Tensor:
    """y = Σ ℓ(l, x) over ``axis`` (all axes by default), ℓ the elementwise loss of
    :func:`bce_with_logits`, in one node: the value of ``bce_with_logits(l, x).sum(axis)``.

    l̄ = g · (σ(l) - x),   x̄ = -g · l,   with g broadcast back over the summed axes (as for ``sum``).

    Why one node: the elementwise values are summed and dropped in the forward pass
    instead of being kept by the graph until backward, and a provider may never hold
    them all at once (the CPU provider makes them a block of rows at a time). Summing
    over the last axis gives the same row sums as the two-node form; a sum over more
    axes adds those row sums, which may differ from one flat sum in the last float bit.
    Derivation: derivations/01_losses_as_likelihoods.md, Eq. 1.6.
    """
    logits, target, shape = _bce_operands("bce_with_logits_sum", logits, target)
    provider = provider_for(logits.data)
    axes = reduction_axes(axis, len(shape))
    if logits.shape == target.shape and axes and axes[-1] == len(shape) - 1:
        sums, saved = provider.bce_logits_row_sums(logits.data, target.data)  # over the last axis
        total = sums.sum(axis=axes[:-1]) if len(axes) > 1 else sums
    else:
        values, saved = provider.bce_logits(logits.data, target.data)
        total = values.sum(axis=axes)
    xp = array_module(logits)
    return _bce_node(logits, target, total, saved, provider,
                     lambda g: expand_back(g, shape, axes, False, xp), "bce_with_logits_sum")
