"""Numba kernels (installed as ``neurosim.kernels``): private ``@njit`` functions of arrays."""
