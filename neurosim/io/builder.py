"""One builder through which every reader turns what it finds in a file into a Network.

A reader walks its file's layers in order and tells the builder what it meets: a weighted
layer (:meth:`NetworkBuilder.add`), an activation (:meth:`~NetworkBuilder.activation`, folded
into the weighted layer before it), a softmax (:meth:`~NetworkBuilder.softmax`, allowed only at
the end, then dropped) or a list of activations for a weights-only file
(:meth:`~NetworkBuilder.activation_list`). :meth:`~NetworkBuilder.build` then makes the
Network, warns once when an output softmax was dropped and records it in the metadata, and
prefixes every error with the file's name.

A weighted layer may be given as a ready :class:`~neurosim.layers.Layer` or as any object that
the ``resolve`` callable of :meth:`~NetworkBuilder.build` turns into one (the Keras reader
folds activations before it has read the weights).

Pooling and flattening (:meth:`~NetworkBuilder.transform`) go between weighted layers. A
BatchNorm (:meth:`~NetworkBuilder.batchnorm`) is folded into the weighted layer right before
it with its inference statistics (``scale = gamma / sqrt(var + eps)``: ``W := scale W``,
``b := scale (b - mean) + beta``), and the metadata records it under ``folded_batchnorm``; a
BatchNorm with no Conv2d or Dense right before it is an error. An activation that follows a
max pooling is moved before it when it is non-decreasing (``phi(max a) = max phi(a)``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from neurosim.activations import Activation, make_activation
from neurosim.errors import FileFormatError, NeurosimError, UnsupportedLayerError
from neurosim.layers import (Conv2d, Dense, Layer, MaxPool2d, Transform, layer_type,
                             transform_type)
from neurosim.network import Network

#: Activations that commute with a max pooling (non-decreasing).
MONOTONE = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "elu", "hardtanh",
            "identity")

__all__ = ["NetworkBuilder", "SOFTMAX", "SOFTMAX_NAMES", "structure_of"]


def structure_of(network: Network) -> dict:
    """What a network file stores besides its layers: the input shape, the layout and the
    transforms before each layer (``pre[l]``: a list of ``{"kind": ..., **params}``)."""
    return {"input_shape": list(network.input_shape), "layout": network.layout,
            "pre": [[{"kind": t.kind, **t.params()} for t in pre] for pre in network.pre]}

#: The marker an activation parser returns for a softmax.
SOFTMAX = "softmax"
#: Names that mean a softmax in the activation lists of weights-only files.
SOFTMAX_NAMES = ("softmax", "log_softmax", "logsoftmax")


class NetworkBuilder:
    """Collects a file's layers in order; ``unit`` is the file format's word for a weighted
    layer in messages ("Linear", "Dense")."""

    def __init__(self, source: str, unit: str = "weighted"):
        self.source = source
        self.unit = unit
        self.specs: list[Any] = []
        self.activations: list[Activation] = []
        self.names: list[str] = []
        self.softmax_at: "str | None" = None
        #: Transforms, by the number of weighted layers added before them.
        self.transforms: list[tuple[int, Transform, str]] = []
        self.folded: list[dict] = []

    def __len__(self) -> int:
        return len(self.specs)

    # --- what a reader meets --------------------------------------------------------------
    def add(self, spec, where: str, name: "str | None" = None,
            activation: "Activation | str | None" = None) -> None:
        """A weighted layer (a Layer, or a spec for ``build``'s ``resolve``), optionally with
        its own activation (Keras' ``Dense(activation=...)``)."""
        self.check_open(where)
        self.specs.append(spec)
        self.activations.append(make_activation("identity"))
        self.names.append(name or where)
        if activation is not None:
            self.activation(activation, where)

    def add_layer(self, kind: str, arrays: dict, attrs: dict, activation: Activation,
                  where: str) -> None:
        """A layer of a registered ``kind`` from its arrays (neurosim's own files)."""
        try:
            cls = layer_type(kind)
        except UnsupportedLayerError as exc:
            raise UnsupportedLayerError(f"{where}: {exc}") from None
        self.add(cls.from_arrays(arrays, attrs, activation), where)

    def activation(self, activation: "Activation | str", where: str) -> None:
        """An activation after the last weighted layer (identity is a no-op)."""
        if activation == SOFTMAX:
            self.softmax(where)
            return
        activation = make_activation(activation)
        self.check_open(where)
        if activation.name == "identity":
            return
        after = [t for n, t, _ in self.transforms if n == len(self.specs)]
        if after:
            if all(isinstance(t, MaxPool2d) for t in after) and (
                    activation.name in MONOTONE or (activation.name == "hardsigmoid"
                                                    and activation.alpha >= 0)):
                pass  # phi(max a) = max phi(a): the activation moves before the pooling
            else:
                raise UnsupportedLayerError(
                    f"{where} applies {activation} after {after[-1].describe()}; neurosim "
                    f"supports an activation right after a {self.unit} layer, or after a max "
                    "pooling when it is non-decreasing.")
        if not self.specs:
            raise UnsupportedLayerError(
                f"{where} comes before any {self.unit} layer; activations are only supported "
                f"after a {self.unit} layer."
            )
        previous = self.activations[-1]
        if previous.name != "identity":
            raise UnsupportedLayerError(
                f"{where} applies {activation} on top of the {previous} of {self.unit} layer "
                f"{self.names[-1]}; only one activation per {self.unit} layer is supported."
            )
        self.activations[-1] = activation

    def transform(self, transform: Transform, where: str) -> None:
        """A pooling or flattening step before the next weighted layer."""
        self.check_open(where)
        self.transforms.append((len(self.specs), transform, where))

    def transform_specs(self, specs, where: str) -> None:
        """Transforms written by :func:`structure_of` (neurosim's own files)."""
        if not isinstance(specs, list):
            raise FileFormatError(f"{where}: the transforms must be a list. Got "
                                  f"{_short(specs)}.")
        for spec in specs:
            if not isinstance(spec, dict) or "kind" not in spec:
                raise FileFormatError(f"{where}: a transform must be a mapping with a 'kind'. "
                                      f"Got {_short(spec)}.")
            params = {k: v for k, v in spec.items() if k != "kind"}
            try:
                cls = transform_type(spec["kind"])
                t = cls.from_params(params)
            except UnsupportedLayerError as exc:
                raise UnsupportedLayerError(f"{where}: {exc}") from None
            except NeurosimError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            except (TypeError, ValueError, OverflowError) as exc:
                raise FileFormatError(f"{where}: malformed {_short(spec['kind'])} settings "
                                      f"{_short(params)}: {exc}") from None
            self.transform(t, where)

    def batchnorm(self, gamma, beta, mean, var, eps: float, where: str) -> None:
        """A BatchNorm at inference: folded into the weighted layer right before it."""
        self.check_open(where)
        gamma, beta, mean, var = (np.asarray(a, dtype=np.float64).reshape(-1)
                                  for a in (gamma, beta, mean, var))
        between = [t for n, t, _ in self.transforms if n == len(self.specs)]
        if not self.specs or between or self.activations[-1].name != "identity" \
                or not isinstance(self.specs[-1], (Dense, Conv2d)):
            what = ("nothing before it" if not self.specs else
                    f"{between[-1].describe()} before it" if between else
                    f"the {self.activations[-1]} of {self.names[-1]} before it"
                    if self.activations[-1].name != "identity" else
                    f"{self.names[-1]} before it, which is not a Conv2d or Dense")
            raise UnsupportedLayerError(
                f"{where} is a BatchNorm with {what}: neurosim folds a BatchNorm into the "
                "weighted layer (Conv2d or Dense) right before it, with no activation or pooling "
                "in between, and has nothing to fold this one into.")
        layer = self.specs[-1]
        n = layer.c_out if isinstance(layer, Conv2d) else layer.n_out
        if not (gamma.size == beta.size == mean.size == var.size == n):
            raise UnsupportedLayerError(
                f"{where}: the BatchNorm has {gamma.size} features but {self.names[-1]} before it "
                f"has {n} {'channels' if isinstance(layer, Conv2d) else 'outputs'}.")
        if not (np.isfinite(eps) and eps >= 0) or np.any(var + eps <= 0) or not all(
                np.isfinite(a).all() for a in (gamma, beta, mean, var)):
            raise UnsupportedLayerError(
                f"{where}: the BatchNorm statistics must be finite with var + eps > 0.")
        scale = gamma / np.sqrt(var + eps)
        W = np.asarray(layer.synapse_weights, dtype=np.float64)
        b = np.asarray(layer.b, dtype=np.float64)
        W = W * scale.reshape((-1,) + (1,) * (W.ndim - 1))
        b = scale * (b - mean) + beta
        dtype = np.asarray(layer.synapse_weights).dtype
        self.specs[-1] = layer.with_parameters(synapse_weights=W.astype(dtype),
                                               bias=b.astype(dtype))
        self.folded.append({"batchnorm": where, "into": self.names[-1], "eps": float(eps)})

    def softmax(self, where: str) -> None:
        """A softmax: only the network's output may have one (it is then dropped)."""
        self.check_open(where)
        if not self.specs:
            raise UnsupportedLayerError(
                f"{where} comes before any {self.unit} layer; a softmax is only supported as "
                "the network's output."
            )
        self.softmax_at = where

    def activation_list(self, activations, names: list[str]) -> list:
        """Activations of a weights-only file, one per weighted layer (a softmax only last).

        ``activations`` is a list (or a comma-separated string) of names or Activations; a
        softmax comes back as :data:`SOFTMAX`, which :meth:`add` takes as the last layer's
        activation (and then drops).
        """
        if isinstance(activations, str):
            activations = [a for a in activations.split(",") if a.strip()]
        activations = list(activations)
        out = []
        for index, act in enumerate(activations):
            if isinstance(act, str) and act.strip().lower() in SOFTMAX_NAMES:
                if index != len(activations) - 1:
                    raise UnsupportedLayerError(
                        f"{self.source}: softmax is only supported as the activation of the last "
                        "layer."
                    )
                out.append(SOFTMAX)
                continue
            try:
                out.append(make_activation(act))
            except UnsupportedLayerError as exc:
                label = names[index] if index < len(names) else index
                raise UnsupportedLayerError(f"{self.source}: layer {label}: {exc}") from None
        return out

    def check_open(self, where: str) -> None:
        """Raise unless more layers may come (nothing may follow the output softmax)."""
        if self.softmax_at is not None:
            raise UnsupportedLayerError(
                f"{where} follows the softmax of {self.softmax_at}; a softmax is only supported "
                "as the network's output."
            )

    # --- the result ---------------------------------------------------------------------
    def build(self, metadata: dict, stacklevel: int = 2,
              resolve: "Callable[[Any, Activation], Layer] | None" = None,
              input_shape=None, layout=None) -> Network:
        """The Network; warn once (and record it) when an output softmax was dropped.

        ``resolve(spec, activation)`` turns each added spec into a layer (default: a Layer
        spec gets the folded activation). Errors from the Network's validation keep their
        type and start with the source.
        """
        if not self.specs:
            raise UnsupportedLayerError(f"{self.source} holds no {self.unit} layer.")
        if resolve is None:
            resolve = _with_activation
        if self.softmax_at is not None:
            warnings.warn(
                f"{self.source}: the model ends with a softmax, which neurosim drops: the loaded "
                "network outputs logits (its argmax, hence its predictions, are unchanged).",
                stacklevel=stacklevel + 1,
            )
            metadata["dropped_output_softmax"] = True
        if self.folded:
            metadata["folded_batchnorm"] = self.folded
        if self.transforms and self.transforms[-1][0] == len(self.specs):
            where = self.transforms[-1][2]
            prefix = "" if where.startswith(self.source) else f"{self.source}: "
            raise UnsupportedLayerError(
                f"{prefix}{where} comes after the last {self.unit} layer; the network must end "
                f"with a {self.unit} layer.")
        try:
            layers = [resolve(spec, act) for spec, act in zip(self.specs, self.activations)]
            items = []
            for index, layer in enumerate(layers):
                items.extend(t for n, t, _ in self.transforms if n == index)
                items.append(layer)
            return Network(items, metadata=metadata, input_shape=input_shape, layout=layout)
        except NeurosimError as exc:
            if str(exc).startswith(self.source):
                raise
            raise type(exc)(f"{self.source}: {exc}") from None


def _short(value, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (a damaged file may hold anything there)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _with_activation(spec, activation: Activation) -> Layer:
    if not isinstance(spec, Layer):  # pragma: no cover - a reader's programming error
        raise TypeError(f"build needs a resolve function for {type(spec).__name__} specs")
    if activation.name == "identity" and spec.activation.name != "identity":
        return spec
    return spec.with_parameters(activation=activation)
