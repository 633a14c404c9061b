"""The dense layer as one node: y = x @ W + b, optionally fused with its activation.

Its arrays come from the provider (one call per step), so the kernel set decides the
code; its VJP is derived in derivations/02_backprop_dense.md (Eq. 2.1).
"""

from __future__ import annotations

from minivae.ops.operands import binary_operands, needs_grad
from minivae.providers import provider_for
from minivae.providers.base import ACTIVATION_NAMES
from minivae.tensor import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None,
           slope: float = 0.01) -> Tensor:
    """y = x @ W + b, a dense layer in one node; with ``activation``, y = f(x @ W + b).

    Without an activation:   x̄ = g @ Wᵀ,   W̄ = xᵀ @ g,   b̄ = Σ_rows g.
    With one (a name from ``ACTIVATION_NAMES``; ``slope`` for leaky_relu) the node is
    the two steps ``linear → f`` fused: u = x @ W + b, y = f(u), and backward first
    forms ū = g · f'(u) (written with y, as for the activations below), then
    x̄ = ū @ Wᵀ,   W̄ = xᵀ @ ū,   b̄ = Σ_rows ū: the same numbers as ``relu(linear(x, W, b))``
    with one stored array fewer. ``draw_graph``/``graph_summary`` show it as
    ``linear → relu (fused)``. ``x`` may have leading batch axes (..., in), folded into rows.
    Derivation: derivations/02_backprop_dense.md, Eq. 2.1.
    """
    x, weight = binary_operands("linear", x, weight)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not fit weight of shape {weight.shape}{_named(weight)}; "
            f"expected input (..., {weight.shape[0] if weight.ndim == 2 else 'in'}) and weight (in, out)"
        )
    if bias is not None:
        _, bias = binary_operands("linear", weight, bias)
        if bias.shape != (weight.shape[1],):
            raise ValueError(f"linear: bias has shape {bias.shape}{_named(bias)}, expected ({weight.shape[1]},)")
    if activation is not None and activation not in ACTIVATION_NAMES:
        raise ValueError(f"linear: unknown activation {activation!r}; expected one of {sorted(ACTIVATION_NAMES)}")
    provider = provider_for(x.data)
    rows = x.data.reshape(-1, x.shape[-1])
    y = provider.matmul(rows, weight.data, bias=None if bias is None else bias.data)
    if activation is not None:  # the product is ours alone: f may overwrite it
        y = provider.activation(activation, y, slope, inplace=True)
    kept = y if activation is not None else None  # backward needs the output only for f'

    def backward(g):
        g = g.reshape(-1, weight.shape[1])
        gb = None
        if activation is not None:
            g, gb = provider.activation_grad_bias(activation, g, kept, slope)
        elif bias is not None and needs_grad(bias):
            gb = provider.column_sum(g)
        gx = provider.matmul(g, weight.data, trans_b=True).reshape(x.shape) if needs_grad(x) else None
        gw = provider.matmul(rows, g, trans_a=True) if needs_grad(weight) else None
        return (gx, gw) if bias is None else (gx, gw, gb)

    parents = (x, weight) if bias is None else (x, weight, bias)
    out = y.reshape(x.shape[:-1] + (weight.shape[1],))
    return Tensor.from_op(out, parents, backward, "linear" if activation is None else f"linear+{activation}")


def _named(t: Tensor) -> str:
    """`` (enc.0.weight)`` for a named tensor (a module's parameter), else nothing."""
    return f" ({t.name})" if getattr(t, "name", None) else ""
