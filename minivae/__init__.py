"""minivae: a from-scratch autograd engine for autoencoders and variational autoencoders.

Every gradient is visible (each op's derivative is written next to its forward
pass in :mod:`minivae.ops`), checked (:func:`gradcheck`) and fast.

    >>> import minivae as mv
    >>> x = mv.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4.], dtype=float32)
"""

from minivae.providers import backend
from minivae import ops

ops.install_tensor_operators()  # x + y, x @ W, x.sum(), ...: the one place Tensor gets its operators

from minivae import distributions, losses, nn, optim, random, stochastic
from minivae.providers import get_kernels, set_kernels, use_kernels
from minivae.providers.backend import get_backend, set_backend, use_backend
from minivae.distributions import Normal, kl_normal_standard, reparameterize
from minivae.gradcheck import GradcheckError, GradcheckReport, gradcheck
from minivae.graphview import draw_graph, graph_summary
from minivae.ops import (
    abs,
    add,
    astype,
    bce_with_logits,
    bce_with_logits_sum,
    clip,
    concat,
    cos,
    div,
    exp,
    getitem,
    leaky_relu,
    linear,
    log,
    log_softmax,
    logsumexp,
    matmul,
    mean,
    mul,
    neg,
    power,
    relu,
    reshape,
    sigmoid,
    sin,
    softmax,
    softplus,
    sqrt,
    sub,
    sum,
    tanh,
    transpose,
)
from minivae.ops import (  # the ops a course reaches for beyond the layers above
    broadcast_to, elu, eq, erf, expand, expm1, flatten, ge, gelu, gt, le, log1p, logsigmoid, lt, max, maximum,
    min, minimum, ne, one_hot, sign, silu, square, squeeze, stack, std, unsqueeze, var, where,
)
from minivae.tensor import AnomalyError, GraphFreedError, Tensor, detect_anomaly, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

__all__ = [
    "AnomalyError", "GradcheckError", "GradcheckReport", "GraphFreedError", "Normal", "Tensor",
    "abs", "add", "astype", "backend", "bce_with_logits", "bce_with_logits_sum", "clip", "concat", "cos", "detect_anomaly", "distributions",
    "div", "draw_graph", "exp", "get_backend", "get_kernels", "getitem", "gradcheck", "graph_summary", "is_grad_enabled",
    "kl_normal_standard", "leaky_relu", "linear", "log", "log_softmax", "logsumexp", "losses", "matmul",
    "mean", "mul", "neg", "nn", "no_grad", "optim", "power", "random", "relu", "reparameterize", "reshape",
    "set_backend", "set_kernels", "sigmoid", "sin", "softmax", "softplus", "sqrt", "stochastic", "sub", "sum", "tanh", "tensor", "transpose",
    "use_backend", "use_kernels",
    "broadcast_to", "elu", "eq", "erf", "expand", "expm1", "flatten", "ge", "gelu", "gt", "le", "log1p", "logsigmoid",
    "lt", "max", "maximum", "min", "minimum", "ne", "one_hot", "sign", "silu", "square", "squeeze", "stack", "std",
    "unsqueeze", "var", "where",
]
