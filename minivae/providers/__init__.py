"""Providers: the code that computes an op's arrays (NumPy reference, compiled CPU, CUDA kernels)."""
