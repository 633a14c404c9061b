"""All CUDA entry points in one namespace: ``from kernels import cuda as kc``.

See the table in ``kernels/__init__.py``; the code lives in ``cuda_matmul``,
``cuda_elementwise``, ``cuda_reduce`` and ``cuda_launch``.
"""

from .cuda_elementwise import (
    adam_update,
    bce_logits_backward,
    bce_logits_forward,
    bce_logits_row_sums,
    bce_logits_sum,
    bias_act_backward,
    bias_act_forward,
    kl_backward,
    kl_forward,
    reparam_backward,
    reparam_forward,
)
from .cuda_launch import as_device_array, cuda_stream, is_simulator, launch, launch_overhead_probe, recording
from .cuda_matmul import matmul
from .cuda_reduce import column_sum, fill, total_sum

__all__ = [
    "adam_update",
    "as_device_array",
    "bce_logits_backward",
    "bce_logits_forward",
    "bce_logits_row_sums",
    "bce_logits_sum",
    "bias_act_backward",
    "bias_act_forward",
    "column_sum",
    "cuda_stream",
    "fill",
    "is_simulator",
    "kl_backward",
    "kl_forward",
    "launch",
    "launch_overhead_probe",
    "matmul",
    "recording",
    "reparam_backward",
    "reparam_forward",
    "total_sum",
]
