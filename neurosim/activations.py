"""Element-wise activation functions with their Lipschitz constants.

The registry's order gives the numeric codes the Numba kernels use (arrays only, no strings).

Every activation states its true Lipschitz constant ``sup |phi'|`` (what Prop. 2 multiplies):

==============  ====================================  =========================================
name            phi(z)                                Lipschitz constant
==============  ====================================  =========================================
relu            max(z, 0)                             1
leaky_relu      z if z >= 0 else alpha z              max(1, |alpha|)
tanh, softplus                                        1
sigmoid                                               1/4
identity        z                                     1
elu             z if z > 0 else alpha (e^z - 1)       max(1, |alpha|)
hardtanh        clip(z, alpha, beta) (relu6: 0, 6)    1
gelu            z Phi(z) (exact, erf)                 Phi(sqrt 2) + sqrt 2 phi(sqrt 2) = 1.1289
gelu_tanh       PyTorch's tanh approximation          1.1290 (computed: max of |phi'|)
silu            z sigmoid(z)                          1.0998 (computed: max of |phi'|)
hardswish       z clip(z + 3, 0, 6) / 6               3/2 (slope (2z + 3)/6 on (-3, 3))
hardsigmoid     clip(alpha z + beta, 0, 1)            |alpha| (PyTorch/Keras: alpha = 1/6)
==============  ====================================  =========================================

GELU, its tanh form and SiLU have slopes above 1, so a network using them is not 1-Lipschitz
per layer as the paper's Def. 1 assumes; the theory uses the constants above and the
assumptions report says when Def. 1 fails. The computed constants come from maximising
``|phi'|`` numerically (the maximum is at the root of ``phi''``, found by bracketing; see
:func:`_max_slope`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import erf

from neurosim.errors import UnsupportedLayerError, param_error

__all__ = ["Activation", "ACTIVATIONS", "ACTIVATION_CODES", "make_activation"]


@dataclass(frozen=True)
class Activation:
    """An element-wise activation function with its Lipschitz constant.

    Attributes
    ----------
    name : str
        Registry name (see :data:`ACTIVATIONS`).
    alpha, beta : float
        Parameters: the negative slope of ``leaky_relu``, the scale of ``elu``, the bounds
        ``(alpha, beta)`` of ``hardtanh``, slope and offset of ``hardsigmoid``; 0 otherwise.
    """

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def lipschitz(self) -> float:
        """Smallest L with ``|phi(a) - phi(b)| <= L |a - b|`` (the theory's Prop. 2 uses it)."""
        return _LIPSCHITZ[self.name](self.alpha, self.beta)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return _FORWARD[self.name](z, self.alpha, self.beta)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """phi'(z), element-wise (one-sided subgradients at kinks: 0 at relu's)."""
        return _DERIVATIVE[self.name](z, self.alpha, self.beta)

    def __str__(self) -> str:
        if self.name in ("leaky_relu", "elu"):
            return f"{self.name}(alpha={self.alpha:g})"
        if self.name == "hardtanh":
            return f"hardtanh({self.alpha:g}, {self.beta:g})"
        if self.name == "hardsigmoid":
            return f"hardsigmoid(alpha={self.alpha:g}, beta={self.beta:g})"
        return self.name


def _sigmoid(z, *_):
    # Split by sign so that exp never overflows.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softplus(z, *_):
    return np.logaddexp(0.0, z).astype(z.dtype, copy=False)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu(z, *_):
    return (0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))).astype(z.dtype, copy=False)


def _gelu_d(z, *_):
    cdf = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
    return (cdf + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)).astype(z.dtype, copy=False)


def _gelu_tanh(z, *_):
    u = _SQRT_2_OVER_PI * (z + 0.044715 * z ** 3)
    return (0.5 * z * (1.0 + np.tanh(u))).astype(z.dtype, copy=False)


def _gelu_tanh_d(z, *_):
    u = _SQRT_2_OVER_PI * (z + 0.044715 * z ** 3)
    t = np.tanh(u)
    du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * z ** 2)
    return (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du).astype(z.dtype, copy=False)


def _silu(z, *_):
    return (z * _sigmoid(z)).astype(z.dtype, copy=False)


def _silu_d(z, *_):
    s = _sigmoid(z)
    return (s * (1.0 + z * (1.0 - s))).astype(z.dtype, copy=False)


def _elu(z, a, _b):
    return np.where(z > 0, z, a * np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)


def _hardswish(z, *_):
    return (z * np.clip(z + 3.0, 0.0, 6.0) / 6.0).astype(z.dtype, copy=False)


def _hardswish_d(z, *_):
    return np.where(z <= -3, 0.0, np.where(z >= 3, 1.0, (2 * z + 3) / 6.0)).astype(z.dtype, copy=False)


_FORWARD: dict[str, Callable] = {
    "relu": lambda z, a, b: np.maximum(z, 0),
    "leaky_relu": lambda z, a, b: np.where(z >= 0, z, a * z).astype(z.dtype, copy=False),
    "tanh": lambda z, a, b: np.tanh(z),
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "identity": lambda z, a, b: z.copy(),
    "elu": _elu,
    "hardtanh": lambda z, a, b: np.clip(z, a, b).astype(z.dtype, copy=False),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _silu,
    "hardswish": _hardswish,
    "hardsigmoid": lambda z, a, b: np.clip(a * z + b, 0.0, 1.0).astype(z.dtype, copy=False),
}

_DERIVATIVE: dict[str, Callable] = {
    "relu": lambda z, a, b: (z > 0).astype(z.dtype),
    "leaky_relu": lambda z, a, b: np.where(z >= 0, 1.0, a).astype(z.dtype),
    "tanh": lambda z, a, b: 1.0 - np.tanh(z) ** 2,
    "sigmoid": lambda z, a, b: _sigmoid(z) * (1.0 - _sigmoid(z)),
    "softplus": lambda z, a, b: _sigmoid(z),
    "identity": lambda z, a, b: np.ones_like(z),
    "elu": lambda z, a, b: np.where(z > 0, 1.0, a * np.exp(np.minimum(z, 0))).astype(z.dtype),
    "hardtanh": lambda z, a, b: ((z > a) & (z < b)).astype(z.dtype),
    "gelu": _gelu_d,
    "gelu_tanh": _gelu_tanh_d,
    "silu": _silu_d,
    "hardswish": _hardswish_d,
    "hardsigmoid": lambda z, a, b: np.where((a * z + b > 0) & (a * z + b < 1), a, 0.0).astype(z.dtype),
}


def _max_slope(derivative: Callable, lo: float, hi: float) -> float:
    """``max |phi'|`` for a smooth activation whose slope peaks once on ``[lo, hi]``.

    The peak is the root of ``phi''`` (a central difference of the analytic ``phi'``), found
    by Brent's method on a bracket where ``phi''`` changes sign; the slope at the root is then
    compared with the slopes at +-infinity (1 and 0 for GELU and SiLU).
    """
    def second(t):
        h = 1e-6
        return float(derivative(np.array([t + h]))[0] - derivative(np.array([t - h]))[0]) / (2 * h)

    root = brentq(second, lo, hi, xtol=1e-12)
    peak = abs(float(derivative(np.array([root]))[0]))
    # The slope's other extreme is a minimum below zero (at -root for GELU); include it.
    return max(peak, 1.0)


_LIP_CACHE: dict[str, float] = {}


def _computed(name: str) -> float:
    if name not in _LIP_CACHE:
        lo, hi = {"gelu": (0.5, 3.0), "gelu_tanh": (0.5, 3.0), "silu": (1.0, 4.0)}[name]
        peak = _max_slope(_DERIVATIVE[name], lo, hi)
        # |phi'| could also peak on the negative side: check the minimum there too.
        neg = -_max_slope_negative(_DERIVATIVE[name])
        _LIP_CACHE[name] = max(peak, neg)
    return _LIP_CACHE[name]


def _max_slope_negative(derivative: Callable) -> float:
    """The most negative slope of GELU / SiLU (their slope dips below 0 left of the origin)."""
    def second(t):
        h = 1e-6
        return float(derivative(np.array([t + h]))[0] - derivative(np.array([t - h]))[0]) / (2 * h)

    root = brentq(second, -5.0, -0.5, xtol=1e-12)
    return float(derivative(np.array([root]))[0])


_LIPSCHITZ: dict[str, Callable[[float, float], float]] = {
    "relu": lambda a, b: 1.0,
    "leaky_relu": lambda a, b: max(1.0, abs(a)),
    "tanh": lambda a, b: 1.0,
    "sigmoid": lambda a, b: 0.25,
    "softplus": lambda a, b: 1.0,
    "identity": lambda a, b: 1.0,
    "elu": lambda a, b: max(1.0, abs(a)),
    "hardtanh": lambda a, b: 1.0,
    "gelu": lambda a, b: _computed("gelu"),
    "gelu_tanh": lambda a, b: _computed("gelu_tanh"),
    "silu": lambda a, b: _computed("silu"),
    "hardswish": lambda a, b: 1.5,
    "hardsigmoid": lambda a, b: abs(a),
}

#: Names of the supported activations (the registry's keys).
ACTIVATIONS: tuple[str, ...] = tuple(_FORWARD)

#: Numeric codes used by the Numba kernels (arrays only, no strings).
ACTIVATION_CODES: dict[str, int] = {name: code for code, name in enumerate(ACTIVATIONS)}

_SPELLINGS = {"linear": "identity", "none": "identity", "leakyrelu": "leaky_relu",
              "swish": "silu", "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid",
              "hard_tanh": "hardtanh"}

#: Default parameters (alpha, beta) of the parametrised activations.
_DEFAULTS = {"leaky_relu": (0.01, 0.0), "elu": (1.0, 0.0), "hardtanh": (-1.0, 1.0),
             "hardsigmoid": (1.0 / 6.0, 0.5)}


def _parameter(name: str, key: str, value) -> float:
    """An activation parameter as a finite float (files may hold text or arrays there)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = None
    if v is None or not math.isfinite(v):
        raise param_error(f"Activation '{name}'", key, "a finite float", value)
    return v


def make_activation(spec: "str | Activation", alpha: float | None = None,
                    beta: float | None = None) -> Activation:
    """Turn a name (or an :class:`Activation`) into an :class:`Activation`.

    ``leaky_relu`` takes ``alpha`` (default 0.01, as in PyTorch); ``elu`` ``alpha`` (1.0);
    ``hardtanh`` the bounds ``alpha, beta`` (-1, 1); ``relu6`` is ``hardtanh(0, 6)``;
    ``hardsigmoid`` slope and offset ``alpha, beta`` (1/6 and 0.5, PyTorch's). ``linear``
    and ``none`` are spellings of ``identity``, ``swish`` of ``silu``.

    Raises
    ------
    UnsupportedLayerError
        For an unknown name; the message lists the supported ones.
    ValidationError
        For a parameter that is not finite, or hardtanh bounds out of order.
    """
    if isinstance(spec, Activation):
        return spec
    if not isinstance(spec, str):
        raise param_error("Activation", "name", f"one of {', '.join(ACTIVATIONS)}", spec)
    name = spec.strip().lower()
    name = _SPELLINGS.get(name, name)
    if name == "relu6":
        name, alpha, beta = "hardtanh", 0.0, 6.0
    if name not in _FORWARD:
        raise UnsupportedLayerError(
            f"Unknown activation {spec!r}. Supported activations: {', '.join(ACTIVATIONS)} "
            "(and relu6)."
        )
    if name not in _DEFAULTS:
        return Activation(name, 0.0, 0.0)
    a0, b0 = _DEFAULTS[name]
    alpha = a0 if alpha is None else _parameter(name, "alpha", alpha)
    beta = b0 if beta is None else _parameter(name, "beta", beta)
    if name == "hardtanh" and not alpha < beta:
        raise param_error("Activation 'hardtanh'", "bounds", "min < max", (alpha, beta))
    return Activation(name, alpha, beta)
