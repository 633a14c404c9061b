"""Optimizers (SGD with momentum, Adam) and gradient clipping by global norm.

Updates are made in place on ``param.data`` and never recorded in a graph.
Optimizer state is kept per parameter, in the parameter order given, so
``state_dict()`` is a plain dict of NumPy arrays and numbers for checkpoints.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from minivae.providers import backend, provider_for
from minivae.tensor import Tensor


class Optimizer:
    """Holds the parameters to update and their per-parameter state.
    Derivation: none (an update rule, not a node: it reads the gradients backward made)."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = _parameter_list(type(self).__name__, params)
        _check_number(type(self).__name__, "learning rate", lr, positive=True)
        self.lr = float(lr)
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient: one provider call for them all
        (``*_foreach``), which the CPU provider makes one compiled loop."""
        self.steps += 1
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if live:
            self._update(live)

    def _update(self, live: list[int]) -> None:
        """Update parameters ``self.params[i]`` for i in ``live`` (each has a gradient)."""
        raise NotImplementedError

    # -- checkpoints --------------------------------------------------------------
    _buffers: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """{'steps', 'lr', '<buffer>.<i>': NumPy array}: everything needed to resume exactly."""
        state: dict[str, Any] = {"steps": self.steps, "lr": self.lr}
        for name in self._buffers:
            for i, buf in enumerate(getattr(self, name)):
                if buf is not None:
                    state[f"{name}.{i}"] = backend.to_numpy(buf).copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])
        for name in self._buffers:
            buffers = getattr(self, name)
            for i, p in enumerate(self.params):
                key = f"{name}.{i}"
                if key in state:
                    if tuple(state[key].shape) != p.shape:
                        raise ValueError(
                            f"{type(self).__name__}.load_state_dict: {key} has shape {tuple(state[key].shape)}, "
                            f"parameter {i} ({p.name or 'unnamed'}) has shape {p.shape}"
                        )
                    buffers[i] = backend.to_backend(state[key], dtype=p.dtype).copy()
                else:
                    buffers[i] = None


def _check_number(owner: str, name: str, value: Any, positive: bool = False) -> None:
    """A finite real number (>= 0; > 0 with ``positive``): NaN compares False with
    everything, so a plain ``value <= 0`` test would let it through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "positive and finite" if positive else "finite and >= 0"
        raise ValueError(f"{owner}: {name} must be {need}, got {value}")


def _parameter_list(name: str, params: Any) -> list[Tensor]:
    """The parameters as a list, or an error that names the usual fix (``model.parameters()``)."""
    fix = f"pass {name}(model.parameters(), lr=...)"
    if isinstance(params, Tensor):
        raise TypeError(f"{name}: got one tensor {params.shape}, not a list of parameters; {fix}, or {name}([t], lr=...)")
    if callable(getattr(params, "parameters", None)):
        raise TypeError(f"{name}: got the model itself ({type(params).__name__}), not its parameters; {fix}")
    if isinstance(params, (str, bytes, dict)) or not hasattr(params, "__iter__"):
        raise TypeError(f"{name}: params must be an iterable of tensors, got {type(params).__name__}; {fix}")
    found = list(params)
    if not found:
        raise ValueError(f"{name}: got an empty parameter list; {fix} (a model whose parameters exist)")
    for i, p in enumerate(found):
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Tensor):
            raise TypeError(f"{name}: parameter {i} is a (name, tensor) pair from named_parameters(); {fix}")
        if not isinstance(p, Tensor) or not p.requires_grad:
            what = type(p).__name__ if not isinstance(p, Tensor) else "a tensor that does not require grad"
            raise TypeError(f"{name}: parameter {i} ({getattr(p, 'name', None) or what}) is not a tensor that "
                            f"requires grad; {fix}")
        if not p.is_leaf:  # backward keeps no .grad on a computed tensor: the step would never move it
            raise TypeError(f"{name}: parameter {i} is the output of '{p.op}', not a leaf tensor (its .grad is never "
                            f"kept, so it would never change); {fix}")
    first: dict[int, int] = {}
    for i, p in enumerate(found):
        if id(p) in first:  # it would be updated twice per step
            raise ValueError(f"{name}: parameter {i} ({p.name or tuple(p.shape)}) is listed twice (also parameter "
                             f"{first[id(p)]}); pass each once, e.g. {name}(model.parameters(), lr=...) of the "
                             "model that holds them all")
        first[id(p)] = i
    return found


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay.

    g ← ∇ + λ·θ;   v ← μ·v + g;   θ ← θ - lr·v      (plain SGD when μ = 0)
    A velocity below the dtype's smallest normal number is stored as 0 (as Adam's moments).
    Derivation: none (an update rule, not a node: it reads the gradients backward made).
    """

    _buffers = ("velocity",)

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        _check_number("SGD", "momentum", momentum)
        _check_number("SGD", "weight_decay", weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.velocity: list[Any] = [None] * len(self.params)

    def _update(self, live: list[int]) -> None:
        params = [self.params[i] for i in live]
        velocities = [self.velocity[i] for i in live]  # None until a parameter's first step
        provider_for(params[0].data).sgd_foreach([p.data for p in params], [p.grad for p in params], velocities,
                                                 self.lr, self.momentum, self.weight_decay)
        for i, v in zip(live, velocities):
            self.velocity[i] = v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction and optional L2 weight decay.

    g ← ∇ + λ·θ;   m ← β₁m + (1-β₁)g;   v ← β₂v + (1-β₂)g²
    θ ← θ - lr · (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε)
    On the CPU, m and v are stored as 0 once below the dtype's smallest normal number: a
    parameter whose gradient stays 0 (a dead ReLU unit) would otherwise keep its moments on
    a subnormal for ever, which x86 computes ~100x slower, and they move nothing
    (kernels/formulas.py ``flush_subnormal``).
    Derivation: none (an update rule, not a node; its formula's one home is kernels/formulas.py ``adam``).
    """

    _buffers = ("m", "v")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        b1, b2 = betas
        for name, value in (("beta1", b1), ("beta2", b2), ("eps", eps), ("weight_decay", weight_decay)):
            _check_number("Adam", name, value)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        if eps <= 0:
            raise ValueError(f"Adam: eps must be positive (it keeps the step finite where v = 0), got {eps}")
        self.beta1, self.beta2, self.eps, self.weight_decay = b1, b2, eps, weight_decay
        self.m: list[Any] = [None] * len(self.params)
        self.v: list[Any] = [None] * len(self.params)

    def _update(self, live: list[int]) -> None:
        for i in live:
            if self.m[i] is None:
                xp = backend.array_module(self.params[i].data)
                self.m[i] = xp.zeros_like(self.params[i].data)
                self.v[i] = xp.zeros_like(self.params[i].data)
        provider_for(self.params[live[0]].data).adam_foreach(
            [self.params[i].data for i in live], [self.params[i].grad for i in live], [self.m[i] for i in live],
            [self.v[i] for i in live], self.lr, self.beta1, self.beta2, self.eps, self.steps, self.weight_decay)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "betas": (self.beta1, self.beta2), "eps": self.eps}


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping. ‖g‖ = √(Σ_params Σ_elements g²).
    Derivation: none (it rescales gradients, it is not a node).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g * g).sum()) for g in grads))
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for g in grads:
            g *= scale
    return total
