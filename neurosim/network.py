"""Feed-forward networks as in the paper's Definition 1.

A network with L layers computes ``z_l = A_l y_{l-1} + b_l`` and ``y_l = phi_l(z_l)`` for
``l = 1..L`` with ``y_0 = x``; the last layer is linear (``phi_L = identity``). Each layer is a
registered :class:`~neurosim.layers.Layer` (:class:`~neurosim.layers.Dense`: ``A_l = W_l`` of
shape ``(n_l, n_{l-1})``, as in the paper and PyTorch's ``nn.Linear``; Keras stores the
transpose).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from neurosim.activations import ACTIVATION_CODES, ACTIVATIONS, Activation, make_activation
from neurosim.errors import ShapeError, UnsupportedLayerError, ValidationError, param_error
from neurosim.layers import LAYERS, Dense, Layer

__all__ = ["Activation", "ACTIVATIONS", "ACTIVATION_CODES", "Dense", "Layer", "Network",
           "make_activation"]


class Network:
    """A feed-forward network of registered layers (paper Def. 1).

    Parameters
    ----------
    layers : sequence of Layer
        Layers 1..L (:class:`Dense`, or any type registered with
        :func:`neurosim.layers.register_layer`). Their shapes must chain
        (``layer_l.n_in == layer_{l-1}.n_out``).
    dtype : {numpy.float32, numpy.float64}, optional
        Floating type of weights and computations. Default: float64, or float32 when every
        given layer's weights are float32.
    metadata : dict, optional
        Free-form JSON-serializable information (name, how it was trained, ...). Saved with
        the network.

    Raises
    ------
    ShapeError
        If the layers' shapes do not chain or a bias has the wrong length.
    ValidationError
        If a weight or bias is not finite, or the last layer is not linear.
    UnsupportedLayerError
        If a layer is not of a registered type.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        dtype: "np.dtype | type | str | None" = None,
        metadata: dict | None = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise param_error("Network", "layers", "a non-empty sequence of layers", layers)
        for index, layer in enumerate(layers, start=1):
            if not isinstance(layer, Layer) or LAYERS.get(type(layer).kind) is not type(layer):
                raise UnsupportedLayerError(
                    f"Layer {index} of the network is a {type(layer).__name__}; only registered "
                    f"layer types are supported ({', '.join(sorted(LAYERS))}; see "
                    "neurosim.layers.register_layer)."
                )
        if dtype is None:
            dtype = (
                np.float32
                if all(np.asarray(layer.synapse_weights).dtype == np.float32 for layer in layers)
                else np.float64
            )
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise param_error("Network", "dtype", "float32 or float64", str(dtype))
        self.dtype = dtype
        self.layers: list[Layer] = []
        for index, layer in enumerate(layers, start=1):
            layer = layer.cast(dtype, index)
            if self.layers and layer.n_in != self.layers[-1].n_out:
                raise ShapeError(
                    f"Layer {index} expects {layer.n_in} inputs but layer {index - 1} has "
                    f"{self.layers[-1].n_out} neurons: the weight shapes do not chain."
                )
            layer.check_finite(index)
            self.layers.append(layer)
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
        """Each layer's stored weights (``W`` for Dense layers)."""
        return [layer.synapse_weights for layer in self.layers]

    @property
    def biases(self) -> list[np.ndarray]:
        return [layer.bias for layer in self.layers]

    @property
    def activations(self) -> list[Activation]:
        return [layer.activation for layer in self.layers]

    @property
    def lipschitz_constants(self) -> list[float]:
        """Lipschitz constant of each layer's activation."""
        return [layer.activation.lipschitz for layer in self.layers]

    @property
    def layer_kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]

    @property
    def n_params(self) -> int:
        """Number of stored weights and biases."""
        return sum(layer.n_params for layer in self.layers)

    def __repr__(self) -> str:
        acts = ", ".join(str(a) for a in self.activations)
        name = self.metadata.get("name")
        named = f" {name!r}" if name else ""
        return f"<Network{named} {'-'.join(map(str, self.widths))} [{acts}] {self.dtype.name}>"

    def lipschitz_chain(self, from_layer: int = 0) -> float:
        """``C`` with ``||y_L(a) - y_L(b)||_2 <= C ||y_l(a) - y_l(b)||_2`` for activations of
        layer ``l = from_layer`` (Prop. 2).

        ``C = prod_{k > l} ||A_k||_2 * prod_{l < k < L} Lip(phi_k)`` (the last layer is linear).
        """
        if not 0 <= from_layer <= self.n_layers:
            raise param_error("lipschitz_chain", "from_layer", f"a layer in 0..{self.n_layers}",
                              from_layer)
        c = 1.0
        for k in range(from_layer + 1, self.n_layers + 1):
            layer = self.layers[k - 1]
            c *= layer.operator_norm()
            if k < self.n_layers:
                c *= layer.activation.lipschitz
        return c

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
            y = layer.activation(layer.linear(y))
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
            z = layer.linear(y)
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
        """A network of the same layers and activations with other stored weights (and biases)."""
        biases = self.biases if biases is None else biases
        if not (len(weights) == len(biases) == self.n_layers):
            raise ShapeError(
                f"with_weights needs one weight array and one bias per layer ({self.n_layers}). "
                f"Got {len(weights)} weights and {len(biases)} biases."
            )
        layers = [layer.with_parameters(synapse_weights=w, bias=b)
                  for layer, w, b in zip(self.layers, weights, biases)]
        return Network(layers, dtype=self.dtype,
                       metadata=self.metadata if metadata is None else metadata)

    def equals(self, other: "Network", rtol: float = 0.0, atol: float = 0.0) -> bool:
        """Same layer kinds, shapes, activations and (within tolerance) arrays."""
        if (self.widths != other.widths or self.activations != other.activations
                or self.layer_kinds != other.layer_kinds):
            return False
        for a, b in zip(self.layers, other.layers):
            arrays_a, arrays_b = a.arrays(), b.arrays()
            if list(arrays_a) != list(arrays_b) or a.attrs() != b.attrs():
                return False
            if not all(np.shape(arrays_a[k]) == np.shape(arrays_b[k])
                       and np.allclose(arrays_a[k], arrays_b[k], rtol=rtol, atol=atol) for k in arrays_a):
                return False
        return True
