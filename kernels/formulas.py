"""Every elementwise formula of the VAE, written once as scalar Python.

Each function below takes and returns plain floats and uses only ``math``, so the
same source compiles for two targets:

* ``GPU.<name>``: ``numba.cuda.jit(device=True)(<name>)``, called from CUDA kernels;
* ``CPU.<name>``: ``numba.njit(<name>)``, called from the prange loops in ``cpu.py``.

The functions are also registered with ``numba.extending.register_jitable`` so that
one formula may call another (``activation`` calls ``sigmoid``) on either target
without a second copy of the math. Uncompiled, they stay ordinary Python functions,
which is what the tests compare against NumPy.

Activations are selected by a small integer code (``RELU`` ...), because a kernel
argument has to be a number; ``activation_code("relu")`` turns names into codes.

Activation derivatives are expressed from the activation's OUTPUT ``y``
(``activation_grad``) -- every activation here has a derivative that is a function
of its output, which lets a layer keep only ``y`` for the backward pass.
``activation_grad_from_preact`` gives the same derivative from the pre-activation
``x`` by recomputing ``y`` first.

| activation | y = f(x)                          | f'(x) written with y                    |
|------------|-----------------------------------|------------------------------------------|
| identity   | x                                 | 1                                        |
| relu       | max(x, 0)                         | 1 if y > 0 else 0                        |
| leaky_relu | x if x > 0 else slope * x         | 1 if y > 0 else slope   (needs slope>=0) |
| sigmoid    | 1 / (1 + exp(-x)), stable form    | y (1 - y)                                |
| tanh       | tanh(x)                           | 1 - y^2                                  |
| softplus   | max(x, 0) + log1p(exp(-abs(x)))   | sigmoid(x) = 1 - exp(-y) = -expm1(-y)   |
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numba
from numba.extending import register_jitable

IDENTITY = 0
RELU = 1
LEAKY_RELU = 2
SIGMOID = 3
TANH = 4
SOFTPLUS = 5

ACTIVATIONS = {
    "identity": IDENTITY,
    "linear": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "softplus": SOFTPLUS,
}


def activation_code(act: int | str) -> int:
    """Map an activation name (or an already numeric code) to its integer code."""
    if isinstance(act, str):
        try:
            return ACTIVATIONS[act]
        except KeyError:
            raise ValueError(f"unknown activation {act!r}; known: {sorted(ACTIVATIONS)}") from None
    code = int(act)
    if code not in ACTIVATIONS.values():
        raise ValueError(f"unknown activation code {code}")
    return code


# --------------------------------------------------------------------------- activations


@register_jitable
def relu(x):
    """max(x, 0), spelled as a branch: numba's CUDA target rejects mixed-type max()."""
    return x if x > 0.0 else 0.0 * x


@register_jitable
def sigmoid(x):
    """sigma(x) = 1 / (1 + e^-x), evaluated so that exp never overflows.

    For x < 0 we use e^x / (1 + e^x): both forms are equal, but only the one whose
    exponent is <= 0 is safe.
    """
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@register_jitable
def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), which neither overflows nor loses
    the tiny values of very negative x."""
    return relu(x) + math.log1p(math.exp(-abs(x)))


@register_jitable
def activation(code, x, slope):
    """y = f(x) for the activation with this code (``slope`` only used by leaky relu)."""
    if code == RELU:
        return relu(x)
    if code == LEAKY_RELU:
        return x if x > 0.0 else slope * x
    if code == SIGMOID:
        return sigmoid(x)
    if code == TANH:
        return math.tanh(x)
    if code == SOFTPLUS:
        return softplus(x)
    return x + 0.0  # identity; "+ 0.0" keeps the return type a float on every branch


@register_jitable
def activation_grad(code, y, slope):
    """f'(x) written in terms of the OUTPUT y = f(x) (see the module table).

    At the kink of relu / leaky relu (x = 0) we pick the left derivative (0 / slope),
    the same choice as ``x > 0`` on the pre-activation.
    """
    if code == RELU:
        return 1.0 if y > 0.0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if y > 0.0 else slope
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == SOFTPLUS:
        # sigmoid(x) = 1 - e^{-softplus(x)}; expm1 keeps it accurate when y is tiny.
        return -math.expm1(-y)
    return 1.0


@register_jitable
def activation_grad_from_preact(code, x, slope):
    """f'(x) from the PRE-activation x: recompute y = f(x), then use activation_grad."""
    return activation_grad(code, activation(code, x, slope), slope)


@register_jitable
def bias_act(code, x, b, slope):
    """Forward of a dense layer's epilogue: y = f(x + b)."""
    return activation(code, x + b, slope)


@register_jitable
def bias_act_backward(code, g, saved, slope, from_output):
    """dL/dx = g * f'(.) where ``saved`` is y (from_output) or x + b (otherwise)."""
    if from_output:
        return g * activation_grad(code, saved, slope)
    return g * activation_grad_from_preact(code, saved, slope)


# ------------------------------------------------------------------------ VAE pieces


@register_jitable
def reparam(mu, logvar, eps):
    """z = mu + sigma * eps with sigma = exp(logvar / 2)."""
    return mu + math.exp(0.5 * logvar) * eps


@register_jitable
def reparam_grad_logvar(g, logvar, eps):
    """dL/dlogvar = g * dz/dlogvar = g * 0.5 * exp(logvar / 2) * eps.  (dL/dmu = g.)"""
    return g * 0.5 * math.exp(0.5 * logvar) * eps


@register_jitable
def gaussian_kl(mu, logvar):
    """KL(N(mu, e^lv) || N(0, 1)) for one latent dimension:
    0.5 * (e^lv + mu^2 - 1 - lv)."""
    return 0.5 * (math.exp(logvar) + mu * mu - 1.0 - logvar)


@register_jitable
def gaussian_kl_grad_mu(g, mu):
    """dKL/dmu = mu, times the upstream gradient g."""
    return g * mu


@register_jitable
def gaussian_kl_grad_logvar(g, logvar):
    """dKL/dlv = 0.5 * (e^lv - 1), times the upstream gradient g."""
    return g * 0.5 * math.expm1(logvar)


@register_jitable
def bce_with_logits(logit, target):
    """Binary cross-entropy of target x under Bernoulli(sigmoid(l)):
    -x log s(l) - (1 - x) log(1 - s(l)) = max(l, 0) - l x + log1p(e^-|l|)."""
    return relu(logit) - logit * target + math.log1p(math.exp(-abs(logit)))


@register_jitable
def bce_with_logits_grad(g, logit, target):
    """d BCE / dl = sigmoid(l) - x, times the upstream gradient g."""
    return g * (sigmoid(logit) - target)


# ------------------------------------------------------------------------------- Adam


@register_jitable
def adam(p, g, m, v, lr, beta1, beta2, eps, bias_corr1, bias_corr2, weight_decay, decoupled):
    """One Adam step for one parameter element; returns (p_new, m_new, v_new).

    bias_corr1 = 1 - beta1^t and bias_corr2 = 1 - beta2^t are computed once per step
    on the host, so no element evaluates a power.

        L2 (decoupled=False, Adam + L2 penalty):  g <- g + wd * p
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr * (m / bias_corr1) / (sqrt(v / bias_corr2) + eps)
        decoupled=True (AdamW, as in Loshchilov & Hutter / PyTorch):
             p <- p - lr * wd * p_old   in addition, and g is NOT changed.
    """
    if not decoupled:
        g = g + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    step = lr * (m / bias_corr1) / (math.sqrt(v / bias_corr2) + eps)
    if decoupled:
        step = step + lr * weight_decay * p
    return p - step, m, v


# -------------------------------------------------------------------- compiled tables

#: names of the formulas that get compiled for both targets
FORMULAS = (
    "relu",
    "sigmoid",
    "softplus",
    "activation",
    "activation_grad",
    "activation_grad_from_preact",
    "bias_act",
    "bias_act_backward",
    "reparam",
    "reparam_grad_logvar",
    "gaussian_kl",
    "gaussian_kl_grad_mu",
    "gaussian_kl_grad_logvar",
    "bce_with_logits",
    "bce_with_logits_grad",
    "adam",
)


def _compile_all(compiler) -> SimpleNamespace:
    """Apply one compiler to every formula; compilation itself happens on first call."""
    namespace = globals()
    return SimpleNamespace(**{name: compiler(namespace[name]) for name in FORMULAS})


#: CPU versions: numba.njit of the very same Python functions.
CPU = _compile_all(numba.njit(error_model="numpy"))


def _cuda_device_compiler():
    """cuda.jit(device=True), or None when this numba has no CUDA target at all."""
    try:
        from numba import cuda
    except Exception:  # pragma: no cover - numba built without the CUDA target
        return None
    return cuda.jit(device=True)


_cuda_compiler = _cuda_device_compiler()

#: GPU versions: numba.cuda.jit(device=True) of the same functions (lazy: nothing is
#: compiled, and no GPU is touched, until a kernel using them is first launched).
GPU = _compile_all(_cuda_compiler) if _cuda_compiler is not None else None


def python_function(compiled) -> object:
    """The Python function a CPU or GPU compiled formula was built from.

    numba's CPU dispatchers and real CUDA dispatchers call it ``py_func``; the CUDA
    simulator's fake kernels call it ``fn``.
    """
    for attribute in ("py_func", "fn"):
        function = getattr(compiled, attribute, None)
        if function is not None:
            return function
    raise TypeError(f"{compiled!r} does not expose its Python function")
