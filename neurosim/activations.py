"""Element-wise activation functions with their Lipschitz constants.

The registry's order gives the numeric codes the Numba kernels use (arrays only, no strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from neurosim.errors import UnsupportedLayerError, param_error

__all__ = ["Activation", "ACTIVATIONS", "ACTIVATION_CODES", "make_activation"]


@dataclass(frozen=True)
class Activation:
    """An element-wise activation function with its Lipschitz constant.

    Attributes
    ----------
    name : str
        Registry name (``relu``, ``leaky_relu``, ``tanh``, ``sigmoid``, ``softplus``, ``identity``).
    alpha : float
        Negative slope of ``leaky_relu``; 0 for the others.
    """

    name: str
    alpha: float = 0.0

    @property
    def lipschitz(self) -> float:
        """Smallest L with ``|phi(a) - phi(b)| <= L |a - b|`` (the theory's Prop. 2 uses it)."""
        return _LIPSCHITZ[self.name](self.alpha)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return _FORWARD[self.name](z, self.alpha)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """phi'(z), element-wise (the subgradient 0 at relu's kink, alpha for leaky_relu)."""
        return _DERIVATIVE[self.name](z, self.alpha)

    def __str__(self) -> str:
        return f"leaky_relu(alpha={self.alpha:g})" if self.name == "leaky_relu" else self.name


def _sigmoid(z, _alpha):
    # Split by sign so that exp never overflows.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softplus(z, _alpha):
    return np.logaddexp(0.0, z).astype(z.dtype, copy=False)


_FORWARD: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "relu": lambda z, a: np.maximum(z, 0),
    "leaky_relu": lambda z, a: np.where(z >= 0, z, a * z).astype(z.dtype, copy=False),
    "tanh": lambda z, a: np.tanh(z),
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "identity": lambda z, a: z.copy(),
}

_DERIVATIVE: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "relu": lambda z, a: (z > 0).astype(z.dtype),
    "leaky_relu": lambda z, a: np.where(z >= 0, 1.0, a).astype(z.dtype),
    "tanh": lambda z, a: 1.0 - np.tanh(z) ** 2,
    "sigmoid": lambda z, a: _sigmoid(z, a) * (1.0 - _sigmoid(z, a)),
    "softplus": lambda z, a: _sigmoid(z, a),
    "identity": lambda z, a: np.ones_like(z),
}

_LIPSCHITZ: dict[str, Callable[[float], float]] = {
    "relu": lambda a: 1.0,
    "leaky_relu": lambda a: max(1.0, abs(a)),
    "tanh": lambda a: 1.0,
    "sigmoid": lambda a: 0.25,
    "softplus": lambda a: 1.0,
    "identity": lambda a: 1.0,
}

#: Names of the supported activations (the registry's keys).
ACTIVATIONS: tuple[str, ...] = tuple(_FORWARD)

#: Numeric codes used by the Numba kernels (arrays only, no strings).
ACTIVATION_CODES: dict[str, int] = {name: code for code, name in enumerate(ACTIVATIONS)}


def make_activation(spec: "str | Activation", alpha: float | None = None) -> Activation:
    """Turn a name (or an :class:`Activation`) into an :class:`Activation`.

    ``"leaky_relu"`` takes ``alpha`` (default 0.01, as in PyTorch); ``"linear"`` and ``"none"``
    are accepted as spellings of ``identity``.

    Raises
    ------
    UnsupportedLayerError
        For an unknown name; the message lists the supported ones.
    """
    if isinstance(spec, Activation):
        return spec
    if not isinstance(spec, str):
        raise param_error("Activation", "name", f"one of {', '.join(ACTIVATIONS)}", spec)
    name = spec.strip().lower()
    name = {"linear": "identity", "none": "identity", "leakyrelu": "leaky_relu"}.get(name, name)
    if name not in _FORWARD:
        raise UnsupportedLayerError(
            f"Unknown activation {spec!r}. Supported activations: {', '.join(ACTIVATIONS)}."
        )
    if name == "leaky_relu":
        alpha = 0.01 if alpha is None else float(alpha)
        if not math.isfinite(alpha):
            raise param_error("Activation 'leaky_relu'", "alpha", "a finite float", alpha)
        return Activation(name, alpha)
    return Activation(name, 0.0)
