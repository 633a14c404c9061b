"""Every elementwise formula of the VAE, written once as scalar Python.

Each function below takes and returns plain floats and uses only ``math``, so the
same source compiles for two targets:

* ``GPU.<name>``: ``numba.cuda.jit(device=True)(<name>)``, called from CUDA kernels;
* ``CPU.<name>``: ``numba.njit(<name>)``, called from the prange loops in ``cpu.py``.

The functions are also registered with ``numba.extending.register_jitable`` so that
one formula may call another (``activation`` calls ``sigmoid``) on either target
without a second copy of the math. Uncompiled, they stay ordinary Python functions,
which is what the tests compare against NumPy.

Constants are written ``cast(0.5, x)``: "0.5 in x's float type". A bare Python float
is a float64 to numba, so ``0.5 * x`` on a float32 ``x`` would be computed in float64
(a double multiply, and ``math.exp`` of a double): correct, but 2x the registers and,
on consumer GPUs, 32-64x slower arithmetic. With ``cast`` a float32 kernel runs
float32 math from end to end (tests/kernels/test_cuda_compile.py counts the float64
instructions in the float32 PTX: zero) and a float64 kernel float64 math.

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
from numba import types
from numba.extending import overload, register_jitable

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


# ------------------------------------------------------------------------ typed constants


def cast(value, like):
    """``value`` as a number of ``like``'s float type (uncompiled Python: ``value`` as is,
    and NumPy's promotion rules keep a float32 result float32)."""
    return value


@overload(cast)
def _cast_compiled(value, like):
    # Compiled (CPU or CUDA): convert to the float type numba inferred for ``like``.
    if isinstance(like, types.Float):
        float_type = like

        def impl(value, like):
            return float_type(value)

        return impl
    return lambda value, like: value


# --------------------------------------------------------------------------- activations


@register_jitable
def relu(x):
    """max(x, 0), spelled as a branch: numba's CUDA target rejects mixed-type max()."""
    return x if x > cast(0.0, x) else cast(0.0, x) * x


@register_jitable
def sigmoid(x):
    """sigma(x) = 1 / (1 + e^-x), evaluated so that exp never overflows.

    For x < 0 we use e^x / (1 + e^x): both forms are equal, but only the one whose
    exponent is <= 0 is safe.
    """
    one = cast(1.0, x)
    if x >= cast(0.0, x):
        return one / (one + math.exp(-x))
    e = math.exp(x)
    return e / (one + e)


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
        return x if x > cast(0.0, x) else cast(slope, x) * x
    if code == SIGMOID:
        return sigmoid(x)
    if code == TANH:
        return math.tanh(x)
    if code == SOFTPLUS:
        return softplus(x)
    return x + cast(0.0, x)  # identity; "+ 0" keeps the return type a float on every branch


@register_jitable
def activation_grad(code, y, slope):
    """f'(x) written in terms of the OUTPUT y = f(x) (see the module table).

    At the kink of relu / leaky relu (x = 0) we pick the left derivative (0 / slope),
    the same choice as ``x > 0`` on the pre-activation.
    """
    one, zero = cast(1.0, y), cast(0.0, y)
    if code == RELU:
        return one if y > zero else zero
    if code == LEAKY_RELU:
        return one if y > zero else cast(slope, y)
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    if code == SOFTPLUS:
        # sigmoid(x) = 1 - e^{-softplus(x)}; expm1 keeps it accurate when y is tiny.
        return -math.expm1(-y)
    return one


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
    return mu + math.exp(cast(0.5, logvar) * logvar) * eps


@register_jitable
def reparam_grad_logvar(g, logvar, eps):
    """dL/dlogvar = g * dz/dlogvar = g * 0.5 * exp(logvar / 2) * eps.  (dL/dmu = g.)"""
    half = cast(0.5, logvar)
    return g * half * math.exp(half * logvar) * eps


@register_jitable
def gaussian_kl(mu, logvar):
    """KL(N(mu, e^lv) || N(0, 1)) for one latent dimension:
    0.5 * (e^lv + mu^2 - 1 - lv)."""
    return cast(0.5, logvar) * (math.exp(logvar) + mu * mu - cast(1.0, logvar) - logvar)


@register_jitable
def gaussian_kl_grad_mu(g, mu):
    """dKL/dmu = mu, times the upstream gradient g."""
    return g * mu


@register_jitable
def gaussian_kl_grad_logvar(g, logvar):
    """dKL/dlv = 0.5 * (e^lv - 1), times the upstream gradient g."""
    return g * cast(0.5, logvar) * math.expm1(logvar)


@register_jitable
def bce_with_logits(logit, target):
    """Binary cross-entropy of target x under Bernoulli(sigmoid(l)):
    -x log s(l) - (1 - x) log(1 - s(l)) = max(l, 0) - l x + log1p(e^-|l|)."""
    return relu(logit) - logit * target + math.log1p(math.exp(-abs(logit)))


@register_jitable
def sigmoid_from_saved(logit, e):
    """sigma(l) from e = e^-|l| (saved by a forward pass): 1 / (1 + e) for l >= 0 and
    e / (1 + e) for l < 0 -- the two stable forms of ``sigmoid`` without an exp."""
    one = cast(1.0, e)
    return (one if logit >= cast(0.0, logit) else e) / (one + e)


@register_jitable
def bce_from_log1p(logit, target, log1p_e):
    """``bce_with_logits`` with its last term log1p(e^-|l|) given (computed by NumPy's
    vectorised log1p on the CPU)."""
    return relu(logit) - logit * target + log1p_e


@register_jitable
def bce_with_logits_grad(g, logit, target):
    """d BCE / dl = sigmoid(l) - x, times the upstream gradient g."""
    return g * (sigmoid(logit) - target)


# ------------------------------------------------------------------------------- Adam


@register_jitable
def adam(p, g, m, v, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, bias_corr1, bias_corr2,
         weight_decay, decoupled):
    """One Adam step for one parameter element; returns (p_new, m_new, v_new).

    bias_corr1 = 1 - beta1^t and bias_corr2 = 1 - beta2^t are computed once per step
    on the host, so no element evaluates a power; so are 1 - beta1 and 1 - beta2, in
    float64 before rounding to the parameters' dtype (in float32, 1 - float32(0.999)
    would be 1.3e-5 off 0.001, and the EMA rate would differ from NumPy's and PyTorch's).

        L2 (decoupled=False, Adam + L2 penalty):  g <- g + wd * p
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr * (m / bias_corr1) / (sqrt(v / bias_corr2) + eps)
        decoupled=True (AdamW, as in Loshchilov & Hutter / PyTorch):
             p <- p - lr * wd * p_old   in addition, and g is NOT changed.

    The CPU loop stores m and v through :func:`flush_subnormal` (below says why).
    """
    if not decoupled:
        g = g + weight_decay * p
    m = beta1 * m + one_minus_beta1 * g
    v = beta2 * v + one_minus_beta2 * g * g
    step = lr * (m / bias_corr1) / (math.sqrt(v / bias_corr2) + eps)
    if decoupled:
        step = step + lr * weight_decay * p
    return p - step, m, v


@register_jitable
def flush_subnormal(x, tiny):
    """x, or 0 where |x| < ``tiny`` (the dtype's smallest normal number: 1.2e-38 in float32).

    For the optimizer states the CPU loops store (Adam's m and v, SGD's velocity). Where a
    gradient stays 0 (the weights of a dead ReLU unit), a state decays by 0.9 or 0.999 a
    step toward 0 but stops on a subnormal fixed point: 0.9 times the smallest subnormal
    rounds back to it. Every x86 operation on a subnormal takes about 100 cycles; in the
    demo a fifth of Adam's m ended there after 1000 steps and the step took twice as long.
    A state that small moves no parameter (its step is below 1e-30), so no result changes.
    GPUs do subnormal arithmetic at full speed: their kernels do not call this.
    NaN stays NaN (|NaN| < tiny is false).
    """
    return x - x if abs(x) < tiny else x  # x - x: a 0 of x's own dtype


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
    "sigmoid_from_saved",
    "bce_from_log1p",
    "adam",
    "flush_subnormal",
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
