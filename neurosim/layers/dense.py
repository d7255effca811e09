"""Fully connected layers (paper Def. 1): ``y = phi(W x + b)``, ``W`` of shape (n_out, n_in)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurosim.activations import Activation, make_activation
from neurosim.errors import ShapeError
from neurosim.layers.base import Layer, real_array, register_layer

__all__ = ["Dense"]


@register_layer
@dataclass
class Dense(Layer):
    """One fully connected layer ``y = phi(W x + b)``.

    Attributes
    ----------
    W : ndarray, shape (n_out, n_in)
        Weights (PyTorch's ``nn.Linear`` convention; Keras stores the transpose). Every entry
        is a synapse: synapse ``s`` is ``W.flat[s]``, entry ``(s // n_in, s % n_in)``.
    b : ndarray, shape (n_out,)
        Biases.
    activation : Activation
        The element-wise non-linearity phi.
    """

    W: np.ndarray
    b: np.ndarray
    activation: Activation = field(default_factory=lambda: Activation("identity"))

    kind = "dense"

    @property
    def n_in(self) -> int:
        """Fan-in: the width of the previous layer."""
        return int(self.W.shape[1])

    @property
    def n_out(self) -> int:
        """Number of neurons in this layer."""
        return int(self.W.shape[0])

    @property
    def bias(self) -> np.ndarray:
        return self.b

    def linear(self, Y: np.ndarray) -> np.ndarray:
        z = Y @ self.W.T
        z += self.b
        return z

    def vjp(self, G: np.ndarray) -> np.ndarray:
        return G @ self.W.astype(np.float64)

    def dense_matrix(self) -> np.ndarray:
        return np.ascontiguousarray(self.W)

    @property
    def synapse_weights(self) -> np.ndarray:
        return self.W

    def synapse_coords(self, pos):
        pos = np.asarray(pos)
        return pos // self.n_in, pos % self.n_in

    def with_parameters(self, synapse_weights=None, bias=None, activation=None) -> "Dense":
        return Dense(self.W if synapse_weights is None else np.asarray(synapse_weights),
                     self.b if bias is None else np.asarray(bias),
                     self.activation if activation is None else make_activation(activation))

    @property
    def fan_in(self) -> int:
        return self.n_in

    def input_span(self, out_start: int, out_stop: int) -> tuple[int, int]:
        return 0, self.n_in

    def block_synapses(self, out_start, out_stop, in_start, in_stop) -> int:
        return (out_stop - out_start) * (in_stop - in_start)

    def arrays(self) -> dict:
        return {"W": self.W, "b": self.b}

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict, activation: Activation) -> "Dense":
        return cls(np.asarray(arrays["W"]), np.asarray(arrays["b"]), activation)

    def cast(self, dtype, index: int) -> "Dense":
        W = np.array(real_array(self.W, f"weights of layer {index}"), dtype=dtype, copy=True,
                     order="C")
        b = np.array(real_array(self.b, f"bias of layer {index}"), dtype=dtype,
                     copy=True).reshape(-1)
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
        return Dense(W, b, make_activation(self.activation))
