"""minivae: a from-scratch autograd engine for autoencoders and variational autoencoders.

Every gradient is visible (each op's derivative is written next to its forward
pass in :mod:`minivae.ops`), checked (:func:`gradcheck`) and fast.

    >>> import minivae as mv
    >>> x = mv.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4.], dtype=float32)
"""

# Private names: `mv.<TAB>` in a notebook lists the library, not the modules it imports.
import importlib.abc as _importlib_abc
import importlib.util as _importlib_util
import sys as _sys
from pathlib import Path as _Path


class _SourceCheckoutFinder(_importlib_abc.MetaPathFinder):
    """Finds ``minivae.kernels`` and ``minivae.derivations`` in a source checkout.

    The repository keeps ``kernels/`` and ``derivations/`` at its top level, and the
    installed distribution maps them to ``minivae.kernels`` and ``minivae.derivations``
    (``package-dir`` in pyproject.toml), so that no generic top-level name is installed.
    A source checkout (``PYTHONPATH=.`` or ``python -m pytest`` from the repository root)
    has no ``minivae/kernels/`` folder: this finder serves those two names from the
    folders beside the package that was imported. Installed copies never install it.
    """

    FOLDERS = {f"{__name__}.kernels": "kernels", f"{__name__}.derivations": "derivations"}

    def __init__(self, root: _Path) -> None:
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        folder = self.FOLDERS.get(fullname)
        if folder is None:
            return None
        init = self.root / folder / "__init__.py"
        return _importlib_util.spec_from_file_location(fullname, init, submodule_search_locations=[str(init.parent)])


def _serve_the_checkout_folders() -> None:
    here = _Path(__file__).resolve().parent
    if (here / "kernels").is_dir() or not (here.parent / "kernels" / "__init__.py").is_file():
        return  # an installed package (the folders are inside it) or no checkout beside it
    if not any(isinstance(f, _SourceCheckoutFinder) for f in _sys.meta_path):
        # First: an editable install's finder elsewhere in sys.meta_path may map these names to
        # another checkout (the one it was installed from) than the one this minivae came from.
        _sys.meta_path.insert(0, _SourceCheckoutFinder(here.parent))


_serve_the_checkout_folders()  # before the engine imports minivae.kernels

from minivae.providers import backend  # noqa: E402
from minivae import ops  # noqa: E402

ops.install_tensor_operators()  # x + y, x @ W, x.sum(), ...: the one place Tensor gets its operators

from minivae import distributions, losses, nn, optim, random, stochastic
from minivae import extend, testing  # writing your own op (array_module, replace_op) and checking it (check_op)
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
    argmax, argmin, broadcast_to, clone, elu, eq, erf, expand, expm1, flatten, ge, gelu, gt, le, log1p, logsigmoid, lt, max, maximum,
    min, minimum, ne, one_hot, sign, silu, square, squeeze, stack, std, unsqueeze, var, where,
)
from minivae.tensor import AnomalyError, GraphFreedError, Tensor, detect_anomaly, is_grad_enabled, no_grad, tensor
from minivae.numerics import NumericWarning
from minivae import numerics

numerics.install()  # NumPy's floating-point warnings name the op and your line (see minivae/numerics.py)

__version__ = "0.1.0"

__all__ = [
    "AnomalyError", "GradcheckError", "GradcheckReport", "GraphFreedError", "Normal", "NumericWarning", "Tensor",
    "abs", "add", "astype", "backend", "bce_with_logits", "bce_with_logits_sum", "clip", "concat", "cos", "detect_anomaly", "distributions",
    "div", "draw_graph", "exp", "get_backend", "get_kernels", "getitem", "gradcheck", "graph_summary", "is_grad_enabled",
    "kl_normal_standard", "leaky_relu", "linear", "log", "log_softmax", "logsumexp", "losses", "matmul",
    "mean", "mul", "neg", "nn", "no_grad", "optim", "power", "random", "relu", "reparameterize", "reshape",
    "set_backend", "set_kernels", "sigmoid", "sin", "softmax", "softplus", "sqrt", "stochastic", "sub", "sum", "tanh", "tensor", "transpose",
    "use_backend", "use_kernels",
    "argmax", "argmin", "broadcast_to", "clone", "elu", "eq", "erf", "expand", "expm1", "flatten", "ge", "gelu", "gt", "le", "log1p", "logsigmoid",
    "lt", "max", "maximum", "min", "minimum", "ne", "one_hot", "sign", "silu", "square", "squeeze", "stack", "std",
    "unsqueeze", "var", "where",
]
