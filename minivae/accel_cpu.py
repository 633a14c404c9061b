"""The CPU provider of compiled hot paths: our Numba kernels (``kernels.cpu``) on NumPy arrays.

Used by ops.py when ``set_kernels("custom")`` is chosen. Each function computes
exactly what the reference code next to it in ops.py / distributions.py / optim.py
computes (the tests compare them); the formulas themselves live once, in
``kernels.formulas``, shared with the GPU kernels. Matrix products stay with
NumPy's BLAS, which is already multi-threaded and fast on the CPU.
"""

from __future__ import annotations

import numpy as np

import kernels.cpu as kc


class CpuKernels:
    """Hot-path functions on C-contiguous float NumPy arrays; each returns a new array."""

    name = "custom-cpu"

    # -- dense layer -------------------------------------------------------------
    @staticmethod
    def matmul(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False, bias=None) -> np.ndarray:
        out = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def column_sum(g: np.ndarray) -> np.ndarray:
        return kc.column_sum(g, np.empty(g.shape[-1], dtype=g.dtype))

    # -- activations (derivatives from the output y) -----------------------------------
    @staticmethod
    def activation(name: str, x: np.ndarray, slope: float) -> np.ndarray:
        out = np.empty_like(x)
        kc.bias_act_forward(x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1), None,
                            out.reshape(-1, x.shape[-1]) if x.ndim else out.reshape(1, 1), name, slope)
        return out

    @staticmethod
    def activation_grad(name: str, g: np.ndarray, y: np.ndarray, slope: float) -> np.ndarray:
        out = np.empty_like(g)
        rows = (lambda a: a.reshape(-1, a.shape[-1])) if g.ndim else (lambda a: a.reshape(1, 1))
        kc.bias_act_backward(rows(g), rows(y), rows(out), name, slope, from_output=True)
        return out

    # -- the sampling node and the KL -------------------------------------------------------
    @staticmethod
    def reparam(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
        z = np.empty_like(mu)
        rows = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
        kc.reparam_forward(rows(mu), rows(logvar), rows(eps), rows(z))
        return z

    @staticmethod
    def reparam_grad_logvar(g: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
        grad_mu, grad_logvar = np.empty_like(g), np.empty_like(g)
        rows = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
        kc.reparam_backward(rows(g), rows(logvar), rows(eps), rows(grad_mu), rows(grad_logvar))
        return grad_logvar

    @staticmethod
    def kl_rows(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        return kc.kl_forward(mu, logvar, np.empty(mu.shape[0], dtype=mu.dtype))

    @staticmethod
    def kl_grads(mu: np.ndarray, logvar: np.ndarray, g_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grad_mu, grad_logvar = np.empty_like(mu), np.empty_like(mu)
        kc.kl_backward(mu, logvar, g_rows, grad_mu, grad_logvar)
        return grad_mu, grad_logvar

    # -- reconstruction loss --------------------------------------------------------------
    @staticmethod
    def bce_logits(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        out = np.empty_like(logits)
        rows = lambda a: a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)  # noqa: E731
        kc.bce_logits_forward(rows(logits), rows(target), rows(out))
        return out

    @staticmethod
    def bce_logits_grad(logits: np.ndarray, target: np.ndarray, g: np.ndarray) -> np.ndarray:
        out = np.empty_like(logits)
        rows = lambda a: a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)  # noqa: E731
        kc.bce_logits_backward(rows(logits), rows(target), rows(out), grad_out=rows(g))
        return out

    # -- optimizer ------------------------------------------------------------------------
    @staticmethod
    def adam(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay) -> None:
        # minivae's Adam adds weight decay to the gradient (L2), not decoupled (AdamW)
        kc.adam_update(param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled=False)


PROVIDER = CpuKernels()
