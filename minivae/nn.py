"""Layers: Module, Parameter, Linear, Sequential and activation modules.

A :class:`Module` finds its parameters and sub-modules by looking at its own
attributes, so a model is written as plain Python::

    class Encoder(Module):
        def __init__(self, rng):
            super().__init__()
            self.hidden = Linear(64, 32, rng=rng)
            self.out = Linear(32, 4, rng=rng)

        def forward(self, x):
            return self.out(relu(self.hidden(x)))
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from minivae.providers import backend
from minivae.providers.base import ACTIVATION_NAMES
from minivae import ops
from minivae.random import Generator
from minivae.tensor import Tensor, canonical_dtype


class Parameter(Tensor):
    """A tensor that a Module owns and an optimizer updates (requires_grad=True).

    Attached to a module, it takes its dotted name in the model (``p.name == "enc.0.weight"``,
    the name ``named_parameters()`` and ``state_dict()`` use), so error messages,
    ``graph_summary`` and ``draw_graph`` say which parameter they mean. A name given
    explicitly (``Parameter(data, name="codebook")``) is kept.
    """

    def __init__(self, data: Any, dtype: Any = None, name: str | None = None) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)
        self._named_by_module = name is None


class StateDictError(KeyError):
    """A state dict that does not fit the model: missing, unexpected or mis-shaped entries."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Module:
    """Base class of every layer and model."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() in __init__ before assigning attributes"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)
        if isinstance(value, (Parameter, Module)):
            self._name_parameters()

    def _name_parameters(self) -> None:
        """Give every parameter below this module its dotted name from here. Attaching this
        module to a parent later renames them from the parent (``0.weight`` -> ``enc.0.weight``),
        so the outermost module's names win, as in ``named_parameters()``."""
        for dotted, p in self.named_parameters():
            if getattr(p, "_named_by_module", False):
                p.name = dotted

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- parameters ---------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for every parameter, in definition order."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(prefix + name + ".")

    @property
    def dtype(self) -> str:
        """The dtype of the first parameter (models keep all parameters in one dtype).
        Found without generators, as ``parameters()`` is: models read it on every batch."""
        stack: list[Module] = [self]
        while stack:
            module = stack.pop()
            for p in module._parameters.values():
                return p.dtype
            stack.extend(reversed(module._modules.values()))
        raise ValueError(f"{type(self).__name__} has no parameters, so no dtype")

    def parameters(self) -> list[Parameter]:
        """Every parameter, in the order of ``named_parameters`` (walked without generators:
        models call this on every batch)."""
        out: list[Parameter] = []
        stack: list[Module] = [self]
        while stack:
            module = stack.pop()
            out.extend(module._parameters.values())
            stack.extend(reversed(module._modules.values()))
        return out

    def modules(self) -> Iterator["Module"]:
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def zero_grad(self) -> None:
        """Forget accumulated gradients (sets every ``.grad`` to None)."""
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def train(self, mode: bool = True) -> "Module":
        """Training mode (e.g. noise layers active); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def astype(self, dtype: Any) -> "Module":
        """Convert every parameter, in place, to float32 or float64 (gradcheck wants float64)."""
        target = canonical_dtype(dtype, f"{type(self).__name__}.astype")
        for p in self.parameters():
            p.data = p.data.astype(target)
            p.grad = None
        return self

    def to_backend(self) -> "Module":
        """Move every parameter to the current backend (e.g. after ``set_backend('cupy')``)."""
        for p in self.parameters():
            p.data = backend.to_backend(p.data, dtype=p.dtype)
            p.grad = None
        return self

    # -- saving and loading -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{name: NumPy copy of the parameter}: safe to save, independent of the backend."""
        return {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy values into the parameters; every name and shape must match exactly."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        misshaped = [
            f"{k}: saved {tuple(state[k].shape)}, model {own[k].shape}"
            for k in own
            if k in state and tuple(getattr(state[k], "shape", ())) != own[k].shape
        ]
        if missing or unexpected or misshaped:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if unexpected:
                parts.append(f"unexpected {unexpected}")
            if misshaped:
                parts.append(f"wrong shape [{'; '.join(misshaped)}]")
            raise StateDictError(
                f"{type(self).__name__}.load_state_dict: the state does not fit this model: " + ", ".join(parts)
            )
        for name, p in own.items():
            p.data = backend.to_backend(state[name], dtype=p.dtype).copy()
            p.grad = None

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""


class Linear(Module):
    """y = x @ weight + bias, with weight of shape (in_features, out_features).

    ``activation`` (a name from ``ACTIVATION_NAMES``, e.g. ``"relu"``; default None)
    makes it y = f(x @ weight + bias) in one fused node (see ``ops.linear``); the same
    numbers as ``ops.relu(Linear(...)(x))``, faster. ``slope`` is leaky_relu's.
    A :class:`Sequential` fuses ``Linear`` followed by an activation module by itself.

    Initialisation, drawn from the explicit generator ``rng``:
    - ``"he"`` (default, for ReLU-like layers): W ~ N(0, 2 / in_features)
    - ``"xavier"`` (for tanh/sigmoid/linear layers): W ~ N(0, 2 / (in_features + out_features))
    Biases start at zero.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rng: Generator,
        init: str = "he",
        bias: bool = True,
        dtype: Any = "float32",
        activation: str | None = None,
        slope: float = 0.01,
    ) -> None:
        super().__init__()
        if activation is not None and activation not in ACTIVATION_NAMES:
            raise ValueError(f"Linear: unknown activation {activation!r}; expected one of {sorted(ACTIVATION_NAMES)}")
        self.activation, self.slope = activation, slope
        if not isinstance(rng, Generator):
            raise TypeError(
                f"Linear({in_features}, {out_features}): rng must be a minivae.random.Generator, got {type(rng).__name__}"
            )
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear: sizes must be positive, got in={in_features}, out={out_features}")
        fan = {"he": in_features / 2, "xavier": (in_features + out_features) / 2}
        if init not in fan:
            raise ValueError(f"Linear: unknown init {init!r}; expected 'he' or 'xavier'")
        self.in_features, self.out_features = in_features, out_features
        std = 1.0 / math.sqrt(fan[init])
        self.weight = Parameter(rng.normal((in_features, out_features), dtype=dtype, std=std), dtype=dtype)
        self.bias = Parameter(backend.xp().zeros(out_features), dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return ops.linear(x, self.weight, self.bias, self.activation, self.slope)

    def extra_repr(self) -> str:
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}{act}"


class Sequential(Module):
    """Modules applied one after another; ``seq[i]`` is the i-th."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Module")
            setattr(self, str(i), layer)

    def forward(self, x: Tensor) -> Tensor:
        """Each layer in turn; a plain ``Linear`` followed by an activation module runs as
        one fused ``ops.linear(..., activation=...)`` node (same values and gradients)."""
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            layer = layers[i]
            fused = _fusable_activation(layers[i + 1]) if i + 1 < len(layers) else None
            if fused is not None and type(layer) is Linear and layer.activation is None:
                x = ops.linear(x, layer.weight, layer.bias, *fused)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x)


class LeakyReLU(Module):
    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return ops.leaky_relu(x, self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.sigmoid(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.tanh(x)


class Softplus(Module):
    def forward(self, x: Tensor) -> Tensor:
        return ops.softplus(x)


def _fusable_activation(module: Module) -> tuple[str, float] | None:
    """(activation name, slope) when ``module`` is exactly one of the activation modules."""
    kind = type(module)
    if kind is LeakyReLU:  # a negative slope is left to ops.leaky_relu, which rejects it
        return ("leaky_relu", module.slope) if module.slope >= 0 else None
    name = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh", Softplus: "softplus"}.get(kind)
    return None if name is None else (name, 0.01)


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x
