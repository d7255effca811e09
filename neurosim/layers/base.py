"""The layer protocol and the layer registry.

A layer computes ``y = phi(A y_prev + b)``: a linear map ``A`` (with bias ``b``) followed by an
element-wise activation ``phi``. Everything below the network (the kernels, the mapping onto
cores, quantization, the fault sites, the theory, the files) reaches a layer only through the
methods of :class:`Layer`, so a new layer type is one class registered with
:func:`register_layer`.

What a layer provides, and who uses it:

============================  ==============================================================
``n_in``, ``n_out``           shapes (the network checks that they chain)
``linear``, ``vjp``           forward pass (``A y + b``) and its transpose (``g A``): the
                              network's forward pass and the theory's backpropagation
``dense_matrix``              ``A`` as an ``(n_out, n_in)`` array: what the dense kernels and
                              the NumPy backend multiply with
``synapse_weights``           the stored weights, one per synapse (any shape; the flat C
                              order numbers the synapses): quantization, bit flips, stuck
                              cells
``synapse_coords``,           synapse number -> entry ``(i, j)`` of ``A``; ``weight_uses``
``weight_uses``               gives every entry a stored weight sets (shared conv kernels)
``fan_in``, ``input_span``,   how the layer maps onto cores and crossbar tiles
``block_synapses``
``operator_norm``,            the theory: Prop. 2 (spectral norm), the single-crash bound
``column_norms``,             (column norms), Prop. 3 (incoming L1 masses)
``incoming_mass``
``lipschitz``, ``n_params``   reports
``arrays``, ``attrs``,        neurosim's files (HDF5, npz)
``from_arrays``
``with_parameters``           the quantized network, training results
============================  ==============================================================
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from neurosim.activations import Activation
from neurosim.errors import UnsupportedLayerError, ValidationError

__all__ = ["Layer", "LAYERS", "register_layer", "layer_type", "real_array"]

#: Registered layer types, by ``kind`` (the name written into files).
LAYERS: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Class decorator: make a :class:`Layer` subclass known under its ``kind``.

    Networks accept only registered layer types, and the file readers build layers by kind.
    Registering a kind twice replaces the earlier class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer needs a Layer subclass; got {cls!r}")
    kind = getattr(cls, "kind", "")
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute 'kind'")
    LAYERS[kind] = cls
    return cls


def layer_type(kind: str) -> type:
    """The registered layer class of ``kind``; an unknown kind lists the known ones."""
    try:
        return LAYERS[kind]
    except (KeyError, TypeError):
        raise UnsupportedLayerError(
            f"Unknown layer kind {kind!r}. Registered layer kinds: {', '.join(sorted(LAYERS))}."
        ) from None


_KIND_NAMES = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects",
               "V": "raw records", "M": "dates", "m": "time spans"}


def real_array(values, what: str) -> np.ndarray:
    """``values`` as a NumPy array of real numbers (bool, integers or floats).

    Anything else (complex numbers, text, Python objects, ragged lists) is a ValidationError
    naming ``what`` ("the weights of layer 2"), never a silent cast: a complex weight would
    lose its imaginary part, and text would fail deep inside NumPy.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"The {what} must be an array of real numbers. Got "
                              f"{type(values).__name__} that is not one ({exc}).") from None
    if array.dtype.kind not in "biuf":
        kind = _KIND_NAMES.get(array.dtype.kind, f"dtype kind {array.dtype.kind!r}")
        raise ValidationError(f"The {what} must hold real numbers. Got {array.dtype} data "
                              f"({kind}) instead.")
    return array


class Layer:
    """Base class of the layer types (see the module docstring for the protocol).

    Subclasses are dataclasses holding their arrays and an ``activation``; they implement the
    methods that raise ``NotImplementedError`` here. The defaults below go through
    :meth:`dense_matrix` and suit small layers; large structured layers override them.
    """

    kind: ClassVar[str] = ""
    activation: Activation

    # --- shapes -------------------------------------------------------------------------
    @property
    def n_in(self) -> int:
        """Number of inputs (the previous layer's width)."""
        raise NotImplementedError

    @property
    def n_out(self) -> int:
        """Number of neurons."""
        raise NotImplementedError

    @property
    def bias(self) -> np.ndarray:
        """``b``, shape ``(n_out,)``."""
        raise NotImplementedError

    # --- computation --------------------------------------------------------------------
    def linear(self, Y: np.ndarray) -> np.ndarray:
        """Pre-activations ``Z = Y A^T + b`` of a batch ``Y`` (n_rows, n_in)."""
        raise NotImplementedError

    def vjp(self, G: np.ndarray) -> np.ndarray:
        """``G A``: a batch of row vectors ``G`` (..., n_out) pulled back through ``A``."""
        raise NotImplementedError

    def dense_matrix(self) -> np.ndarray:
        """``A`` as a C-contiguous ``(n_out, n_in)`` array."""
        raise NotImplementedError

    # --- synapses (the stored weights) ----------------------------------------------------
    @property
    def synapse_weights(self) -> np.ndarray:
        """The stored weights; synapse ``s`` is ``synapse_weights.flat[s]``."""
        raise NotImplementedError

    def synapse_coords(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entries ``(i, j)`` of ``A`` that synapses ``pos`` (flat indices) hold."""
        raise NotImplementedError

    def weight_uses(self, pos) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every entry of ``A`` that stored weights ``pos`` set, as ``(owner, i, j)``:
        ``owner[k]`` indexes ``pos``. One entry per weight unless weights are shared (a conv
        kernel weight is read at every output position)."""
        pos = np.asarray(pos, dtype=np.int64)
        i, j = self.synapse_coords(pos)
        return np.arange(pos.size, dtype=np.int64), np.asarray(i), np.asarray(j)

    def entry_values(self, rows, cols) -> np.ndarray:
        """``A[rows, cols]`` (0 where no synapse)."""
        return self.dense_matrix()[np.asarray(rows), np.asarray(cols)]

    @property
    def n_connections(self) -> int:
        """Number of (neuron, input) pairs with a synapse (the nonzero pattern of ``A``)."""
        return self.n_out * self.n_in

    @property
    def n_synapses(self) -> int:
        return int(self.synapse_weights.size)

    @property
    def n_params(self) -> int:
        """Number of trainable numbers (stored weights and biases)."""
        return int(self.synapse_weights.size + self.bias.size)

    def with_parameters(self, synapse_weights=None, bias=None, activation=None) -> "Layer":
        """A layer of the same kind and shape with other weights, bias or activation."""
        raise NotImplementedError

    # --- mapping onto cores ---------------------------------------------------------------
    @property
    def fan_in(self) -> int:
        """The most inputs any one neuron reads (a core must hold all of a neuron's inputs)."""
        raise NotImplementedError

    def input_span(self, out_start: int, out_stop: int) -> tuple[int, int]:
        """The range of inputs that neurons ``out_start:out_stop`` read."""
        raise NotImplementedError

    def block_synapses(self, out_start: int, out_stop: int, in_start: int, in_stop: int) -> int:
        """Number of synapses between neurons ``out_start:out_stop`` and inputs ``in_start:in_stop``."""
        raise NotImplementedError

    # --- theory ---------------------------------------------------------------------------
    def operator_norm(self) -> float:
        """``||A||_2`` (Prop. 2)."""
        return float(np.linalg.norm(self.dense_matrix().astype(np.float64), 2))

    def column_norms(self) -> np.ndarray:
        """``||A[:, j]||_2`` for every input j: the change of ``z`` when input j drops to 0
        is at most this times ``|y_j|``."""
        return np.linalg.norm(self.dense_matrix().astype(np.float64), axis=0)

    def incoming_mass(self) -> np.ndarray:
        """``W^i = sum_j |A_ij|``, each neuron's incoming L1 mass (Prop. 3, Assumption 3)."""
        return np.abs(self.dense_matrix().astype(np.float64)).sum(axis=1)

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant of the whole layer in l2: ``||A||_2 Lip(phi)``."""
        return self.operator_norm() * self.activation.lipschitz

    # --- files ----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The layer's arrays by name, in a fixed order (saved to files, hashed)."""
        raise NotImplementedError

    def attrs(self) -> dict:
        """Extra JSON-serializable settings saved beside the arrays (none by default)."""
        return {}

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict, activation: Activation) -> "Layer":
        """Rebuild a layer from what :meth:`arrays` and :meth:`attrs` gave."""
        raise NotImplementedError

    # --- validation -----------------------------------------------------------------------
    def cast(self, dtype, index: int) -> "Layer":
        """A copy in ``dtype`` whose shapes are checked (``index`` names the layer in errors)."""
        raise NotImplementedError

    def check_finite(self, index: int) -> None:
        """Raise ValidationError naming the layer and the first NaN or infinite value."""
        for name, array in self.arrays().items():
            bad = ~np.isfinite(array)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                what = {"W": "weights", "b": "bias", "K": "kernel"}.get(name, f"'{name}'")
                raise ValidationError(
                    f"The {what} of layer {index} must be finite. Got {array[where]} at "
                    f"index {where} ({int(bad.sum())} non-finite values in all)."
                )
