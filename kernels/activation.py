"""The element-wise activations as the kernels compute them (scalar, inlined into each
kernel): the same arithmetic for the clean cache, the faulty rows and every kernel module;
and what a crashed neuron outputs."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from neurosim.kernels.codes import (
    ACT_ELU, ACT_GELU, ACT_GELU_TANH, ACT_HARDSIGMOID, ACT_HARDSWISH, ACT_HARDTANH, ACT_LEAKY,
    ACT_RELU, ACT_SIGMOID, ACT_SILU, ACT_SOFTPLUS, ACT_TANH, CRASH_PAPER, CRASH_SILENT,
)

__all__ = ["act", "sigmoid", "crashed_output"]


@njit(cache=True, inline="always")
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def act(x, code, alpha, beta):
    """phi(x) for activation ``code`` with parameters ``alpha, beta`` (see neurosim.activations)."""
    if code == ACT_RELU:
        return x if x > 0 else 0.0
    if code == ACT_LEAKY:
        return x if x >= 0 else alpha * x
    if code == ACT_TANH:
        return np.tanh(x)
    if code == ACT_SIGMOID:
        return sigmoid(x)
    if code == ACT_SOFTPLUS:
        return np.logaddexp(0.0, x)
    if code == ACT_ELU:
        return x if x > 0 else alpha * math.expm1(x)
    if code == ACT_HARDTANH:
        return min(max(x, alpha), beta)
    if code == ACT_GELU:
        return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))
    if code == ACT_GELU_TANH:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    if code == ACT_SILU:
        return x * sigmoid(x)
    if code == ACT_HARDSWISH:
        return x * min(max(x + 3.0, 0.0), 6.0) / 6.0
    if code == ACT_HARDSIGMOID:
        return min(max(alpha * x + beta, 0.0), 1.0)
    return x


@njit(cache=True, inline="always")
def crashed_output(mode, value, bias, code, alpha, beta):
    """A crashed neuron's output: 0 (``CRASH_SILENT``), ``phi(b)`` (``CRASH_PAPER``: z := b)
    or ``value`` (``CRASH_STUCK``)."""
    if mode == CRASH_SILENT:
        return 0.0
    if mode == CRASH_PAPER:
        return act(bias, code, alpha, beta)
    return value
