"""Dense feed-forward networks as in the paper's Definition 1.

A network with L layers computes ``z_l = W_l y_{l-1} + b_l`` and ``y_l = phi_l(z_l)`` for
``l = 1..L`` with ``y_0 = x``; the last layer is linear (``phi_L = identity``). ``W_l`` has shape
``(n_l, n_{l-1})``, as in the paper (PyTorch's ``nn.Linear`` convention; Keras stores the
transpose).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from neurosim.errors import ShapeError, UnsupportedLayerError, ValidationError, param_error

__all__ = ["Activation", "ACTIVATIONS", "Dense", "Network", "make_activation"]


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


@dataclass
class Dense:
    """One fully connected layer ``y = phi(W x + b)``.

    Attributes
    ----------
    W : ndarray, shape (n_out, n_in)
        Weights.
    b : ndarray, shape (n_out,)
        Biases.
    activation : Activation
        The element-wise non-linearity phi.
    """

    W: np.ndarray
    b: np.ndarray
    activation: Activation = field(default_factory=lambda: Activation("identity"))

    @property
    def n_in(self) -> int:
        """Fan-in: the width of the previous layer."""
        return int(self.W.shape[1])

    @property
    def n_out(self) -> int:
        """Number of neurons in this layer."""
        return int(self.W.shape[0])

    kind = "dense"


class Network:
    """A feed-forward network of :class:`Dense` layers (paper Def. 1).

    Parameters
    ----------
    layers : sequence of Dense
        Layers 1..L. Their shapes must chain (``W_l.shape[1] == W_{l-1}.shape[0]``).
    dtype : {numpy.float32, numpy.float64}, optional
        Floating type of weights and computations. Default: float64, or float32 when every
        given weight array is float32.
    metadata : dict, optional
        Free-form JSON-serializable information (name, how it was trained, ...). Saved with
        the network.

    Raises
    ------
    ShapeError
        If the layers' shapes do not chain or a bias has the wrong length.
    ValidationError
        If a weight or bias is not finite, or the last layer is not linear.
    """

    def __init__(
        self,
        layers: Sequence[Dense],
        dtype: "np.dtype | type | str | None" = None,
        metadata: dict | None = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise param_error("Network", "layers", "a non-empty sequence of Dense layers", layers)
        if dtype is None:
            dtype = (
                np.float32
                if all(np.asarray(layer.W).dtype == np.float32 for layer in layers)
                else np.float64
            )
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise param_error("Network", "dtype", "float32 or float64", str(dtype))
        self.dtype = dtype
        self.layers: list[Dense] = []
        for index, layer in enumerate(layers, start=1):
            if not isinstance(layer, Dense):
                raise UnsupportedLayerError(
                    f"Layer {index} of the network is a {type(layer).__name__}; "
                    "only Dense layers are supported."
                )
            W = np.array(layer.W, dtype=dtype, copy=True, order="C")
            b = np.array(layer.b, dtype=dtype, copy=True).reshape(-1)
            if W.ndim != 2:
                raise ShapeError(
                    f"The weights of layer {index} must be a 2-D array (n_out, n_in). "
                    f"Got shape {W.shape} instead."
                )
            if b.shape != (W.shape[0],):
                raise ShapeError(
                    f"The bias of layer {index} must have shape ({W.shape[0]},) to match its "
                    f"weights of shape {W.shape}. Got shape {b.shape} instead."
                )
            if self.layers and W.shape[1] != self.layers[-1].n_out:
                raise ShapeError(
                    f"Layer {index} expects {W.shape[1]} inputs but layer {index - 1} has "
                    f"{self.layers[-1].n_out} neurons: the weight shapes do not chain."
                )
            for what, array in (("weights", W), ("bias", b)):
                bad = ~np.isfinite(array)
                if bad.any():
                    where = tuple(int(i) for i in np.argwhere(bad)[0])
                    raise ValidationError(
                        f"The {what} of layer {index} must be finite. Got {array[where]} at "
                        f"index {where} ({int(bad.sum())} non-finite values in all)."
                    )
            activation = make_activation(layer.activation)
            self.layers.append(Dense(W, b, activation))
        if self.layers[-1].activation.name != "identity":
            raise ValidationError(
                f"The last layer must be linear (activation 'identity', paper Def. 1). "
                f"Got {self.layers[-1].activation} instead."
            )
        self.metadata: dict = dict(metadata or {})

    # --- construction helpers -----------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        weights: Iterable[np.ndarray],
        biases: Iterable[np.ndarray],
        activations: Iterable["str | Activation"],
        dtype=None,
        metadata: dict | None = None,
    ) -> "Network":
        """Build a network from lists of weights ``(n_l, n_{l-1})``, biases and activations."""
        weights, biases, activations = list(weights), list(biases), list(activations)
        if not (len(weights) == len(biases) == len(activations)):
            raise ShapeError(
                "Network.from_arrays needs one weight matrix, one bias and one activation per "
                f"layer. Got {len(weights)} weights, {len(biases)} biases and "
                f"{len(activations)} activations."
            )
        layers = [
            Dense(np.asarray(W), np.asarray(b), make_activation(a))
            for W, b, a in zip(weights, biases, activations)
        ]
        return cls(layers, dtype=dtype, metadata=metadata)

    @classmethod
    def random(
        cls,
        widths: Sequence[int],
        activation: str = "relu",
        seed: int = 0,
        dtype=np.float64,
    ) -> "Network":
        """A network with He-initialized random weights, for tests and examples.

        ``widths = [n_0, n_1, ..., n_L]``; hidden layers use ``activation``, the last is linear.
        """
        if len(widths) < 2 or any(int(w) < 1 for w in widths):
            raise param_error("Network.random", "widths", "at least two positive integers", widths)
        rng = np.random.default_rng(seed)
        weights, biases, acts = [], [], []
        for l in range(1, len(widths)):
            n_in, n_out = int(widths[l - 1]), int(widths[l])
            weights.append(rng.normal(0.0, math.sqrt(2.0 / n_in), size=(n_out, n_in)))
            biases.append(rng.normal(0.0, 0.1, size=n_out))
            acts.append(activation if l < len(widths) - 1 else "identity")
        return cls.from_arrays(weights, biases, acts, dtype=dtype)

    # --- properties -----------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """L, the number of weight layers."""
        return len(self.layers)

    @property
    def widths(self) -> list[int]:
        """``[n_0, n_1, ..., n_L]``."""
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    @property
    def weights(self) -> list[np.ndarray]:
        return [layer.W for layer in self.layers]

    @property
    def biases(self) -> list[np.ndarray]:
        return [layer.b for layer in self.layers]

    @property
    def activations(self) -> list[Activation]:
        return [layer.activation for layer in self.layers]

    @property
    def lipschitz_constants(self) -> list[float]:
        """Lipschitz constant of each layer's activation."""
        return [layer.activation.lipschitz for layer in self.layers]

    def __repr__(self) -> str:
        acts = ", ".join(str(a) for a in self.activations)
        name = self.metadata.get("name")
        named = f" {name!r}" if name else ""
        return f"<Network{named} {'-'.join(map(str, self.widths))} [{acts}] {self.dtype.name}>"

    # --- computation ---------------------------------------------------------------------
    def check_input(self, X, owner: str = "data") -> np.ndarray:
        """Return ``X`` as a 2-D C-contiguous array of this network's dtype, or raise.

        Raises
        ------
        ShapeError
            If ``X`` is not (n_samples, n_inputs).
        ValidationError
            If ``X`` holds NaN or infinity.
        """
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ShapeError(
                f"The {owner} must have shape (n_samples, {self.n_inputs}) to match the network's "
                f"input width. Got shape {X.shape} instead."
            )
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValidationError(f"The {owner} must be finite. Got NaN or infinite values.")
        return X

    def forward(self, X, return_all: bool = False):
        """Run a batch through the network.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_0)
        return_all : bool
            If True, return the list ``[y_0, y_1, ..., y_L]`` of every layer's activations
            (what the simulator caches); otherwise only ``y_L``.
        """
        y = self.check_input(X)
        ys = [y]
        for layer in self.layers:
            z = y @ layer.W.T
            z += layer.b
            y = layer.activation(z)
            ys.append(y)
        return ys if return_all else y

    def trace(self, X) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pre-activations and activations of every layer.

        Returns
        -------
        zs : list of ndarray
            ``[z_0 = x, z_1, ..., z_L]``.
        ys : list of ndarray
            ``[y_0 = x, y_1, ..., y_L]``.
        """
        y = self.check_input(X)
        zs, ys = [y], [y]
        for layer in self.layers:
            z = y @ layer.W.T + layer.b
            y = layer.activation(z)
            zs.append(z)
            ys.append(y)
        return zs, ys

    def predict(self, X) -> np.ndarray:
        """Class predictions: the argmax of the output."""
        return np.argmax(self.forward(X), axis=1)

    def astype(self, dtype) -> "Network":
        """A copy with weights in ``dtype``."""
        return Network(self.layers, dtype=dtype, metadata=self.metadata)

    def copy(self) -> "Network":
        return Network(self.layers, dtype=self.dtype, metadata=self.metadata)

    def with_weights(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray] | None = None,
                     metadata: dict | None = None) -> "Network":
        """A network of the same shape and activations with other weights (and biases)."""
        biases = self.biases if biases is None else biases
        return Network.from_arrays(
            weights, biases, self.activations, dtype=self.dtype,
            metadata=self.metadata if metadata is None else metadata,
        )

    def equals(self, other: "Network", rtol: float = 0.0, atol: float = 0.0) -> bool:
        """Same shapes, activations and (within tolerance) weights and biases."""
        if self.widths != other.widths or self.activations != other.activations:
            return False
        return all(
            np.allclose(a.W, b.W, rtol=rtol, atol=atol) and np.allclose(a.b, b.b, rtol=rtol, atol=atol)
            for a, b in zip(self.layers, other.layers)
        )
