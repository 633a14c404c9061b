"""NumPy float64 references for the kernel tests (imported by the test files beside it).

Written directly from the math, independently of kernels/formulas.py.
"""

import numpy as np

ACTIVATION_NAMES = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus")
SLOPE = 0.1


def activation(name, x, slope=SLOPE):
    if name == "identity":
        return x.copy()
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, slope * x)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # an independent way to write sigma
    if name == "tanh":
        return np.tanh(x)
    if name == "softplus":
        return np.logaddexp(0.0, x)
    raise ValueError(name)


def activation_derivative(name, x, slope=SLOPE):
    """f'(x) from the pre-activation (left derivative 0 / slope at the kink)."""
    if name == "identity":
        return np.ones_like(x)
    if name == "relu":
        return (x > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, slope)
    if name == "sigmoid":
        s = activation("sigmoid", x)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 / np.cosh(x) ** 2
    if name == "softplus":
        return activation("sigmoid", x)
    raise ValueError(name)


def reparam(mu, logvar, eps):
    return mu + np.sqrt(np.exp(logvar)) * eps


def kl_rows(mu, logvar):
    return 0.5 * np.sum(np.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)


def bce_with_logits(logits, target):
    # -x log s(l) - (1 - x) log(1 - s(l)) = log(1 + e^l) - x l, with NumPy's accurate logaddexp
    return np.logaddexp(0.0, logits) - target * logits


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One textbook Adam (decoupled=False: L2 into the gradient) / AdamW step."""
    if not decoupled:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    new_p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    if decoupled:
        new_p = new_p - lr * weight_decay * p
    return new_p, m, v


def tolerance(dtype):
    """(rtol, atol) for comparing a kernel's result in dtype with a float64 reference."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)
