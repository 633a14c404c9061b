"""Test-session setup.

Kernels are tested on Numba's CUDA simulator unless MINIVAE_GPU_TESTS=1 asks for a
real GPU. The simulator must be chosen before anything imports numba, hence here.
"""

import os

if os.environ.get("MINIVAE_GPU_TESTS") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import matplotlib

matplotlib.use("Agg")
