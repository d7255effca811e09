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
from neurosim.layers import LAYERS, TRANSFORMS, Dense, Layer, Transform

__all__ = ["Activation", "ACTIVATIONS", "ACTIVATION_CODES", "Dense", "Layer", "Network",
           "make_activation"]


class CheckedInputs(np.ndarray):
    """Inputs already checked by :meth:`Network.check_input`: flat rows in ``(C, H, W)`` order.

    A view type only: checking such an array again does not convert its layout a second time
    (a channels-last network would otherwise transpose it twice). Slices keep the type.
    """


class Network:
    """A feed-forward network of registered layers (paper Def. 1).

    Parameters
    ----------
    layers : sequence of Layer and Transform
        Weighted layers 1..L (:class:`Dense`, :class:`Conv2d`, or any type registered with
        :func:`neurosim.layers.register_layer`), optionally with parameter-free transforms
        (:class:`Flatten`, :class:`MaxPool2d`, :class:`AvgPool2d`, :class:`GlobalAvgPool2d`)
        before any of them; each transform belongs to the weighted layer after it, which
        receives its output. Shapes must chain.
    dtype : {numpy.float32, numpy.float64}, optional
        Floating type of weights and computations. Default: float64, or float32 when every
        given layer's weights are float32.
    metadata : dict, optional
        Free-form JSON-serializable information (name, how it was trained, ...). Saved with
        the network.
    input_shape : tuple, optional
        Shape of one input, channels first: ``(n_0,)`` or ``(C, H, W)``. Default: the first
        layer's (a Conv2d's ``in_shape``).
    layout : {"NCHW", "NHWC"}, optional
        The layout of image data the network was trained with (PyTorch and ONNX: NCHW, Keras:
        NHWC; default NCHW). Data is given in that layout (or flat, in that layout's order);
        activations inside are always stored channels first.

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
        input_shape: "tuple | None" = None,
        layout: "str | None" = None,
    ) -> None:
        items = list(layers)
        weighted = [item for item in items if isinstance(item, Layer)]
        if not weighted:
            raise param_error("Network", "layers", "a non-empty sequence of layers", layers)
        for index, item in enumerate(items, start=1):
            if isinstance(item, Transform):
                if TRANSFORMS.get(type(item).kind) is not type(item):
                    raise UnsupportedLayerError(
                        f"Item {index} of the network is an unregistered transform "
                        f"{type(item).__name__}.")
                continue
            if not isinstance(item, Layer) or LAYERS.get(type(item).kind) is not type(item):
                raise UnsupportedLayerError(
                    f"Layer {index} of the network is a {type(item).__name__}; only registered "
                    f"layer types are supported ({', '.join(sorted(LAYERS))}; see "
                    "neurosim.layers.register_layer) and the transforms "
                    f"{', '.join(sorted(TRANSFORMS))}."
                )
        if isinstance(items[-1], Transform):
            raise ShapeError(
                f"The network ends with {items[-1].describe()}; it must end with a weighted "
                "layer (the linear output layer of Def. 1).")
        if dtype is None:
            dtype = (
                np.float32
                if all(np.asarray(layer.synapse_weights).dtype == np.float32 for layer in weighted)
                else np.float64
            )
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise param_error("Network", "dtype", "float32 or float64", str(dtype))
        self.dtype = dtype
        first = None  # the first layer, cast once: it may give the input shape
        if input_shape is None:
            if isinstance(items[0], Transform):
                raise ShapeError(f"A network that starts with {items[0].describe()} needs "
                                 "input_shape (the shape of one input).")
            first = weighted[0].cast(dtype, 1)  # validates its shapes first
            input_shape = tuple(getattr(first, "in_shape", None) or (first.n_in,))
        try:
            input_shape = tuple(int(v) for v in input_shape)
        except (TypeError, ValueError):
            raise param_error("Network", "input_shape", "a tuple of positive ints", input_shape) from None
        if len(input_shape) not in (1, 3) or min(input_shape) < 1:
            raise param_error("Network", "input_shape", "(n,) or (C, H, W) of positive ints",
                              input_shape)
        if layout is None:
            layout = "NCHW" if len(input_shape) == 3 else None
        if layout is not None:
            layout = str(layout).upper()
            if layout not in ("NCHW", "NHWC"):
                raise param_error("Network", "layout", "'NCHW' or 'NHWC'", layout)
            if len(input_shape) != 3:
                raise param_error("Network", "layout", "None for vector inputs", layout)
        self.input_shape = input_shape
        self.layout = layout
        self.layers: list[Layer] = []
        self.pre: list[tuple] = []
        self.shapes: list[tuple] = [input_shape]
        self.items: list = []
        shape, pending, index = input_shape, [], 0
        for item in items:
            if isinstance(item, Transform):
                bound = item.bind(shape)
                pending.append(bound)
                self.items.append(bound)
                shape = bound.out_shape
                continue
            index += 1
            layer = first if (index == 1 and first is not None) else item.cast(dtype, index)
            in_shape = tuple(getattr(layer, "in_shape", None) or (layer.n_in,))
            size = int(np.prod(shape))
            ok = in_shape == tuple(shape)
            if not ok and index == 1 and not pending and size == layer.n_in and len(shape) == 1:
                # A flat input given to a first conv layer: the image is its in_shape.
                self.shapes[0] = shape = in_shape
                self.input_shape = in_shape
                if self.layout is None and len(in_shape) == 3:
                    self.layout = "NCHW"
                ok = True
            if not ok:
                if len(in_shape) == 1 and len(shape) != 1 and size == layer.n_in:
                    raise ShapeError(
                        f"Layer {index} ({layer.kind}) takes a vector of {layer.n_in} but follows "
                        f"an output of shape {tuple(shape)}: add a Flatten before it.")
                what = f"layer {index - 1}" if index > 1 else "the input"
                if len(in_shape) == 1 and len(shape) == 1 and not pending and index > 1:
                    raise ShapeError(
                        f"Layer {index} expects {layer.n_in} inputs but layer {index - 1} has "
                        f"{size} neurons: the weight shapes do not chain.")
                raise ShapeError(
                    f"Layer {index} expects inputs of shape {in_shape} ({layer.n_in} values) but "
                    f"{what}{' after its transforms' if pending else ''} gives shape "
                    f"{tuple(shape)} ({size}): the shapes do not chain.")
            layer.check_finite(index)
            self.layers.append(layer)
            self.pre.append(tuple(pending))
            self.items.append(layer)
            pending = []
            shape = tuple(getattr(layer, "out_shape", None) or (layer.n_out,))
            self.shapes.append(shape)
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
        """``[n_0, n_1, ..., n_L]``: the number of values of the input and of each layer's
        output (neurons)."""
        return [int(np.prod(self.input_shape))] + [layer.n_out for layer in self.layers]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def has_transforms(self) -> bool:
        """True if some layer receives its inputs through pooling or flattening."""
        return any(self.pre)

    @property
    def data_shape(self) -> tuple:
        """The shape of one input as the data gives it (in the network's layout)."""
        if self.layout == "NHWC":
            C, H, W = self.input_shape
            return (H, W, C)
        return tuple(self.input_shape)

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
    def kinds(self) -> list[str]:
        """Kinds of every item in order, transforms included (what ``repr`` shows)."""
        return [item.kind for item in self.items]

    @property
    def n_params(self) -> int:
        """Number of stored weights and biases."""
        return sum(layer.n_params for layer in self.layers)

    def __repr__(self) -> str:
        acts = ", ".join(str(a) for a in self.activations)
        name = self.metadata.get("name")
        named = f" {name!r}" if name else ""
        if set(self.layer_kinds) == {"dense"} and not self.has_transforms:
            return f"<Network{named} {'-'.join(map(str, self.widths))} [{acts}] {self.dtype.name}>"
        parts = []
        for item in self.items:
            if isinstance(item, Transform):
                parts.append(item.kind)
            else:
                shape = getattr(item, "out_shape", None) or (item.n_out,)
                parts.append(f"{item.kind}{'x'.join(map(str, shape))}")
        return (f"<Network{named} {'x'.join(map(str, self.input_shape))} -> {' '.join(parts)} "
                f"[{acts}] {self.dtype.name}>")

    def lipschitz_chain(self, from_layer: int = 0) -> float:
        """``C`` with ``||y_L(a) - y_L(b)||_2 <= C ||y_l(a) - y_l(b)||_2`` for activations of
        layer ``l = from_layer`` (Prop. 2).

        ``C = prod_{k > l} ||A_k||_2 Lip(T_k) * prod_{l < k < L} Lip(phi_k)`` (the last layer is
        linear; ``T_k`` are the pooling and flattening steps before layer k, see
        :mod:`neurosim.layers.transforms` for their constants).
        """
        if not 0 <= from_layer <= self.n_layers:
            raise param_error("lipschitz_chain", "from_layer", f"a layer in 0..{self.n_layers}",
                              from_layer)
        c = 1.0
        for k in range(from_layer + 1, self.n_layers + 1):
            layer = self.layers[k - 1]
            c *= layer.operator_norm()
            for t in self.pre[k - 1]:
                c *= t.lipschitz
            if k < self.n_layers:
                c *= layer.activation.lipschitz
        return c

    # --- computation ---------------------------------------------------------------------
    def check_input(self, X, owner: str = "data") -> np.ndarray:
        """Return ``X`` as a 2-D C-contiguous array of this network's dtype, or raise.

        Image networks take ``(n, *data_shape)`` in their layout (``N x C x H x W`` or
        ``N x H x W x C``) or flat rows in that layout's order; the result is flat in
        ``(C, H, W)`` order, what the layers compute on, as a :class:`CheckedInputs` view (so
        that checking it again changes nothing).

        Raises
        ------
        ShapeError
            If ``X`` does not have the network's input shape.
        ValidationError
            If ``X`` holds NaN or infinity.
        """
        checked = isinstance(X, CheckedInputs)
        X = np.asarray(X)
        n_in = self.n_inputs
        if X.ndim == 1:
            X = X[None, :]
        image = len(self.input_shape) == 3 and not checked
        if image and X.ndim == 1 + 3 and tuple(X.shape[1:]) == self.data_shape:
            X = X.reshape(X.shape[0], -1)
        elif X.ndim != 2 or X.shape[1] != n_in:
            if image:
                axes = "N x H x W x C" if self.layout == "NHWC" else "N x C x H x W"
                raise ShapeError(
                    f"The {owner} must have shape (n_samples, {', '.join(map(str, self.data_shape))}) "
                    f"({axes}, the layout the network was trained with) or (n_samples, {n_in}) "
                    f"flat. Got shape {X.shape} instead."
                )
            raise ShapeError(
                f"The {owner} must have shape (n_samples, {n_in}) to match the network's "
                f"input width. Got shape {X.shape} instead."
            )
        if image and self.layout == "NHWC":
            C, H, W = self.input_shape
            X = X.reshape(X.shape[0], H, W, C).transpose(0, 3, 1, 2).reshape(X.shape[0], -1)
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValidationError(f"The {owner} must be finite. Got NaN or infinite values.")
        return X.view(CheckedInputs)

    def layer_input(self, l: int, Y: np.ndarray) -> np.ndarray:
        """What layer ``l`` (1-based) receives from activations ``Y`` of layer ``l - 1``: ``Y``
        through the layer's pooling and flattening steps."""
        for t in self.pre[l - 1]:
            Y = t.apply(Y)
        return Y

    def receives(self, l: int, inputs) -> np.ndarray:
        """The activations of layer ``l - 1`` that inputs ``inputs`` of layer ``l``'s matrix
        are computed from (through its pooling and flattening): what a core of layer ``l``
        that reads those inputs receives when it computes the pooling itself."""
        idx = np.unique(np.asarray(inputs, dtype=np.int64))
        for t in reversed(self.pre[l - 1]):
            idx = t.sources(idx)
        return idx

    def pullback(self, l: int, G: np.ndarray, Y_prev: np.ndarray) -> np.ndarray:
        """``G dz_l/dy_{l-1}``: row vectors ``G`` (m, ..., n_l) over layer ``l``'s
        pre-activations pulled back through ``A_l`` and the transforms before it, at the
        previous layer's activations ``Y_prev`` (m, n_{l-1})."""
        G = self.layers[l - 1].vjp(G)
        if not self.pre[l - 1]:
            return G
        inputs = [np.asarray(Y_prev, dtype=np.float64)]
        for t in self.pre[l - 1][:-1]:
            inputs.append(t.apply(inputs[-1]))
        for t, U in zip(reversed(self.pre[l - 1]), reversed(inputs)):
            G = t.vjp(G, U)
        return G

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
        for l, layer in enumerate(self.layers, start=1):
            y = layer.activation(layer.linear(self.layer_input(l, y)))
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
        for l, layer in enumerate(self.layers, start=1):
            z = layer.linear(self.layer_input(l, y))
            y = layer.activation(z)
            zs.append(z)
            ys.append(y)
        return zs, ys

    def predict(self, X) -> np.ndarray:
        """Class predictions: the argmax of the output."""
        return np.argmax(self.forward(X), axis=1)

    def astype(self, dtype) -> "Network":
        """A copy with weights in ``dtype``."""
        return self._rebuilt(self.layers, dtype, self.metadata)

    def copy(self) -> "Network":
        return self._rebuilt(self.layers, self.dtype, self.metadata)

    def _rebuilt(self, layers, dtype, metadata) -> "Network":
        """The same transforms, input shape and layout around other weighted ``layers``."""
        layers = iter(layers)
        items = [item if isinstance(item, Transform) else next(layers) for item in self.items]
        return Network(items, dtype=dtype, metadata=metadata, input_shape=self.input_shape,
                       layout=self.layout)

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
        return self._rebuilt(layers, self.dtype, self.metadata if metadata is None else metadata)

    def equals(self, other: "Network", rtol: float = 0.0, atol: float = 0.0) -> bool:
        """Same layer kinds, shapes, activations and (within tolerance) arrays."""
        if (self.widths != other.widths or self.activations != other.activations
                or self.kinds != other.kinds or self.input_shape != other.input_shape
                or self.layout != other.layout):
            return False
        if [t.params() for p in self.pre for t in p] != [t.params() for p in other.pre for t in p]:
            return False
        for a, b in zip(self.layers, other.layers):
            arrays_a, arrays_b = a.arrays(), b.arrays()
            if list(arrays_a) != list(arrays_b) or a.attrs() != b.attrs():
                return False
            if not all(np.shape(arrays_a[k]) == np.shape(arrays_b[k])
                       and np.allclose(arrays_a[k], arrays_b[k], rtol=rtol, atol=atol) for k in arrays_a):
                return False
        return True
