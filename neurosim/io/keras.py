"""Reading Keras models without Keras.

Keras itself is not imported: the files are parsed with :mod:`zipfile`, :mod:`json` and
:mod:`h5py`. Three layouts are understood:

``.keras`` (Keras 3 archive)
    A zip file holding ``config.json`` (the architecture) and ``model.weights.h5``. In the
    weights file every layer that owns state has a group ``layers/<group>/vars`` whose datasets
    ``0``, ``1``, ... are the layer's variables in creation order (Dense: ``0`` = kernel of
    shape ``(n_in, n_out)``, ``1`` = bias). ``<group>`` is *not* the layer's name but the
    snake-cased class name made unique by a counter in model order (``dense``, ``dense_1``,
    ...); recent Keras versions store the layer's real name in the ``name`` attribute of the
    ``vars`` group, which is used when present.
``.weights.h5`` (Keras 3 weights only)
    The same HDF5 layout without an architecture; the caller gives one activation per Dense
    layer (weights-only files are read for Dense-only models).
legacy ``.h5`` (Keras 2, also written by Keras 3's ``model.save("x.h5")``)
    Root attribute ``model_config`` (JSON architecture); weights under
    ``model_weights/<layer name>``, whose attribute ``weight_names`` gives the dataset paths.

Models: ``Sequential`` models, and ``Functional`` models that are a single chain (one input,
one output, each layer fed by exactly one layer); any other graph (``Add``, ``Concatenate``,
a layer with several inbound layers) is an error naming the layer. Images are channels last:
the input ``(H, W, C)`` of the ``InputLayer`` becomes the network's ``input_shape (C, H, W)``
with ``layout="NHWC"`` (data is given ``N x H x W x C``); ``data_format="channels_first"``
is an error.

Supported layers:

* ``InputLayer``; ``Dropout``, ``SpatialDropout1D/2D/3D``, ``GaussianDropout``,
  ``GaussianNoise``, ``AlphaDropout`` (identities at inference, ignored).
* ``Dense`` (on a 1-D input; its ``activation`` is folded in).
* ``Conv2D`` (``strides``, ``padding`` "same"/"valid", ``dilation_rate``, ``groups``,
  ``use_bias``, ``activation``): the kernel ``(kh, kw, C_in/groups, C_out)`` becomes
  :class:`~neurosim.layers.Conv2d`'s ``(C_out, C_in/groups, kh, kw)``.
* ``DepthwiseConv2D`` (``depth_multiplier`` m): the kernel ``(kh, kw, C_in, m)`` becomes
  ``(C_in m, 1, kh, kw)`` with ``groups = C_in``, output channel ``c m + j``.
* ``SeparableConv2D``: two Conv2d layers, the depthwise one (no bias, no activation) and a
  1x1 pointwise one with the bias and the activation.
* ``ZeroPadding2D``: folded into the padding of the Conv2D / DepthwiseConv2D /
  SeparableConv2D right after it (MobileNet's ``ZeroPadding2D(((0, 1), (0, 1)))`` before a
  strided "valid" depthwise conv); anything else after it is an error.
* ``BatchNormalization`` (channel axis -1; ``center``, ``scale``, ``epsilon``, the moving
  mean and variance): folded into the Conv2d or Dense right before it (no activation or
  pooling in between, else an error).
* ``MaxPooling2D``, ``AveragePooling2D`` (``pool_size``, ``strides`` (None = pool size),
  ``padding``; Keras' "same" pads ``ceil(n / s)`` outputs with the odd pixel at the end, the
  padding never wins a max and an average divides by the taps inside the image,
  ``count_include_pad=False``, as TensorFlow and JAX compute it; Keras 3.15's torch backend
  instead replicates the edge when the padding is unequal, keras-team/keras#19721),
  ``GlobalAveragePooling2D`` and ``GlobalMaxPooling2D`` (``keepdims`` True or False).
* ``Flatten`` (of an image: :class:`~neurosim.layers.Flatten` in ``"hwc"`` order, as Keras
  flattens channels last; of a vector: nothing; of a 2-D input such as ``(28, 28)``: an
  error) and ``Reshape`` to a vector (the same as a
  Flatten) or to ``(1, 1, C)`` of a ``(C,)`` global pooling (its ``keepdims``); other
  reshapes are errors. A flatten of a ``1 x 1`` image at the very end (MobileNet's
  ``Reshape((classes,))``) is dropped, as it changes nothing.
* Activations, as layers (``Activation``, ``ReLU`` with ``max_value`` -> hardtanh(0, max) and
  ``negative_slope`` -> leaky_relu (not both; ``threshold`` must be 0), ``LeakyReLU``,
  ``ELU``, a final ``Softmax``) or as the ``activation`` of a Dense/conv layer: ``relu``,
  ``relu6``, ``leaky_relu`` (Keras' slope 0.2), ``elu``, ``tanh``, ``sigmoid``, ``softplus``,
  ``gelu`` (exact; ``approximate=True`` is the tanh form), ``silu``/``swish``,
  ``hard_silu``/``hard_swish``, ``hard_sigmoid`` (Keras 3: ``relu6(x + 3) / 6``; files written
  by Keras 2: ``clip(0.2 x + 0.5, 0, 1)``), ``hard_tanh``, ``linear``, and ``softmax`` /
  ``log_softmax`` on the output only. A final softmax is dropped (the network then outputs
  logits; the argmax is unchanged), with a warning and
  ``metadata["dropped_output_softmax"] = True``.

The network must end with a Dense or conv layer whose output is a vector (or a ``1 x 1``
image); an activation after a pooling is folded as :class:`~neurosim.io.builder.NetworkBuilder`
allows (before a max pooling when it is non-decreasing).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from typing import Any, Iterable

import h5py
import numpy as np

from neurosim.activations import Activation, make_activation
from neurosim.errors import FileFormatError, NeurosimError, ShapeError, UnsupportedLayerError
from neurosim.io import guard
from neurosim.io.builder import SOFTMAX, NetworkBuilder
from neurosim.io.hdf5 import check_global_heaps, check_hdf5_file, read_array, read_attr
from neurosim.layers import (AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d,
                             same_padding)
from neurosim.network import Network

__all__ = ["load_keras"]

#: Keras layer classes neurosim understands (for error messages).
SUPPORTED_LAYERS = (
    "InputLayer", "Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "ZeroPadding2D "
    "(before a conv)", "BatchNormalization (after a Dense or conv)", "MaxPooling2D",
    "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten",
    "Reshape (to a vector)", "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout (and the "
    "other dropout/noise layers, ignored)", "Softmax (last layer only)",
)
#: Keras activation names neurosim understands (for error messages).
SUPPORTED_ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "elu", "tanh", "sigmoid", "softplus", "gelu", "silu",
    "swish", "hard_silu", "hard_swish", "hard_sigmoid", "hard_tanh", "linear",
    "softmax (output layer only)",
)

_NOOP_LAYERS = {"Dropout", "InputLayer", "SpatialDropout1D", "SpatialDropout2D",
                "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout"}
_CONV_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
# Keras 3's default slope of the ``leaky_relu`` activation function.
_KERAS_LEAKY_RELU_DEFAULT = 0.2
# Default slope of the LeakyReLU layer (Keras 2 ``alpha`` and Keras 3 ``negative_slope``).
_KERAS_LEAKY_LAYER_DEFAULT = 0.3
# Keras activation names -> neurosim names (parameters are set in _activation_from_keras).
_KERAS_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu", "leakyrelu": "leaky_relu",
    "elu": "elu", "tanh": "tanh", "sigmoid": "sigmoid", "softplus": "softplus",
    "gelu": "gelu", "silu": "silu", "swish": "silu", "hard_silu": "hardswish",
    "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid", "hard_tanh": "hardtanh",
    "linear": "identity",
}


def _brief(exc: BaseException) -> str:
    """An exception from another library as one short line (its messages can run to pages)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _supported_layers_text() -> str:
    return (
        f"Supported layers: {', '.join(SUPPORTED_LAYERS)}; supported activations: "
        f"{', '.join(SUPPORTED_ACTIVATIONS)}."
    )


# --- activations ---------------------------------------------------------------------------
def _activation_from_keras(spec: Any, source: str, layer: str,
                           keras2: bool = False) -> "Activation | str":
    """Map a Keras activation spec (name or serialized object) onto neurosim.

    Returns an :class:`Activation`, or the string ``"softmax"`` for a softmax / log-softmax.
    ``keras2``: the file was written by Keras 2 (whose ``hard_sigmoid`` has slope 0.2).
    """
    name = spec
    options: dict = {}
    if spec is None:
        name = "linear"
    elif isinstance(spec, dict):
        # Keras 3 may serialize an activation as {"class_name": "function", "config": "relu"}
        # or, for a layer used as activation, {"class_name": "LeakyReLU", "config": {...}}.
        cls = spec.get("class_name")
        cfg = spec.get("config")
        if isinstance(cfg, str):
            name = cfg
        elif cls in ("LeakyReLU", "ReLU", "ELU", "Activation", "Softmax"):
            return _layer_activation(cls, cfg or {}, source, layer, keras2)
        else:
            name = cls
            if isinstance(cfg, dict):
                options = cfg
    if not isinstance(name, str):
        raise UnsupportedLayerError(
            f"{source}: layer {layer!r} has an activation neurosim cannot read: {spec!r}. "
            f"{_supported_layers_text()}"
        )
    key = name.strip().lower()
    if key in ("softmax", "log_softmax"):
        return SOFTMAX
    if key not in _KERAS_ACTIVATIONS:
        raise UnsupportedLayerError(
            f"{source}: layer {layer!r} uses the activation {name!r}, which neurosim does not "
            f"support. {_supported_layers_text()}"
        )
    target = _KERAS_ACTIVATIONS[key]
    if target == "leaky_relu":
        return make_activation("leaky_relu", float(options.get(
            "negative_slope", options.get("alpha", _KERAS_LEAKY_RELU_DEFAULT))))
    if target == "elu":
        return make_activation("elu", float(options.get("alpha", 1.0)))
    if target == "gelu" and options.get("approximate"):
        return make_activation("gelu_tanh")
    if target == "hardsigmoid":
        # Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1); Keras 2: clip(0.2 x + 0.5, 0, 1).
        return make_activation("hardsigmoid", 0.2 if keras2 else 1.0 / 6.0, 0.5)
    if target == "hardtanh":
        return make_activation("hardtanh", -1.0, 1.0)
    return make_activation(target)


def _layer_activation(cls: str, cfg: dict, source: str, layer: str,
                      keras2: bool = False) -> "Activation | str":
    """The activation computed by an activation *layer* (Activation, ReLU, LeakyReLU, ELU,
    Softmax)."""
    if cls == "Activation":
        return _activation_from_keras(cfg.get("activation"), source, layer, keras2)
    if cls == "Softmax":
        return SOFTMAX
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", _KERAS_LEAKY_LAYER_DEFAULT))
        return make_activation("leaky_relu", float(slope))
    if cls == "ELU":
        return make_activation("elu", float(cfg.get("alpha", 1.0)))
    if cls == "ReLU":
        max_value = cfg.get("max_value")
        threshold = float(cfg.get("threshold") or 0.0)
        slope = float(cfg.get("negative_slope") or 0.0)
        if threshold != 0.0 or (max_value is not None and (slope != 0.0 or float(max_value) <= 0)):
            raise UnsupportedLayerError(
                f"{source}: layer {layer!r} is a ReLU with max_value={max_value!r}, "
                f"negative_slope={slope!r} and threshold={threshold!r}; neurosim supports "
                "threshold=0 with either a max_value > 0 (hardtanh(0, max_value)) or a "
                f"negative_slope (leaky_relu), not both. {_supported_layers_text()}"
            )
        if max_value is not None:
            return make_activation("hardtanh", 0.0, float(max_value))
        return make_activation("leaky_relu", slope) if slope else make_activation("relu")
    raise AssertionError(cls)  # pragma: no cover


# --- architecture --------------------------------------------------------------------------
def _to_snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case`` (the group names of a Keras 3 weights file)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _shape_tail(shape: Any) -> "tuple | None":
    """A Keras batch shape ``[None, d1, ...]`` without its batch axis, or None if unknown."""
    if isinstance(shape, dict) and "shape" in shape:  # rare serialized TensorShape
        shape = shape["shape"]
    if isinstance(shape, (list, tuple)) and len(shape) >= 2 and not isinstance(shape[0], (list, tuple)):
        return tuple(shape[1:])
    return None


def _inbound_names(layer: dict) -> list[str]:
    """Names of the layers feeding ``layer`` in a Functional config (Keras 2 or 3 syntax)."""
    names: list[str] = []

    def visit(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                history = obj.get("config", {}).get("keras_history")
                if history:
                    names.append(history[0])
                return
            for value in obj.values():
                visit(value)
        elif isinstance(obj, (list, tuple)):
            # Keras 2: [[["dense", 0, 0, {}]]]
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                names.append(obj[0])
                return
            for value in obj:
                visit(value)

    visit(layer.get("inbound_nodes", []))
    return names


def _endpoint_names(spec: Any) -> list[str]:
    """``input_layers`` / ``output_layers`` of a Functional config as a list of names."""
    if isinstance(spec, list) and spec and isinstance(spec[0], str):
        return [spec[0]]
    if isinstance(spec, list):
        return [item[0] for item in spec if isinstance(item, list) and item]
    return []


def _layer_name(layer: dict) -> "str | None":
    return (layer.get("config") or {}).get("name") or layer.get("name")


def _ordered_layers(model_config: dict, source: str) -> tuple[str, list[dict], "tuple | None"]:
    """The model's name, its layers in forward order, and its input shape (if known).

    Raises UnsupportedLayerError for a model class other than Sequential / Functional, or
    for a Functional graph that is not a single chain (naming the layer where it branches).
    """
    if not isinstance(model_config, dict) or "class_name" not in model_config:
        raise FileFormatError(f"{source}: the model configuration has no 'class_name'.")
    cls = model_config["class_name"]
    cfg = model_config.get("config")
    if isinstance(cfg, list):  # very old Keras 2 Sequential: config is the layer list
        cfg = {"layers": cfg}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise UnsupportedLayerError(
            f"{source}: the model is a {cls!r} whose configuration lists no layers; only "
            "Sequential models and Functional models that form a single chain are supported."
        )
    name = cfg.get("name") or cls
    layers = cfg["layers"]
    input_shape = _shape_tail(cfg.get("build_input_shape"))
    if input_shape is None:
        input_shape = _shape_tail((model_config.get("build_config") or {}).get("input_shape"))
    if cls == "Sequential":
        return name, layers, input_shape
    if cls not in ("Functional", "Model"):
        raise UnsupportedLayerError(
            f"{source}: the model is of class {cls!r}; only Sequential models and Functional "
            "models that form a single chain of layers are supported."
        )
    by_name = {_layer_name(layer): layer for layer in layers}
    inputs = _endpoint_names(cfg.get("input_layers"))
    outputs = _endpoint_names(cfg.get("output_layers"))

    def not_chain(why: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(
            f"{source}: the Functional model {name!r} is not a single chain of layers: {why}. "
            "Only models with one input and one output, each layer fed by exactly one layer, "
            "are supported."
        )

    if len(inputs) != 1 or len(outputs) != 1:
        raise not_chain(f"it has {len(inputs)} inputs ({', '.join(map(repr, inputs))}) and "
                        f"{len(outputs)} outputs ({', '.join(map(repr, outputs))})")
    chain = [outputs[0]]
    while chain[-1] != inputs[0]:
        layer = by_name.get(chain[-1])
        if layer is None:
            raise FileFormatError(f"{source}: the model refers to an unknown layer {chain[-1]!r}.")
        parents = _inbound_names(layer)
        if len(parents) != 1:
            raise not_chain(
                f"layer {chain[-1]!r} ({layer.get('class_name')}) has {len(parents)} inbound "
                f"layers ({', '.join(map(repr, parents)) or 'none'})")
        if parents[0] in chain:
            raise not_chain(f"layer {chain[-1]!r} is fed by {parents[0]!r}, which comes after it")
        chain.append(parents[0])
    if len(chain) != len(layers):
        off = [n for n in by_name if n not in chain]
        label = (f"layer {off[0]!r} ({by_name[off[0]].get('class_name')}) is not on the path "
                 "from the input to the output") if off else "some layers are not on the path"
        raise not_chain(label)
    return name, [by_name[n] for n in reversed(chain)], input_shape


def _pair(value, what: str, where: str) -> tuple[int, int]:
    """An int or a pair of ints from a Keras config."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise FileFormatError(f"{where}: the {what} {value!r} is not an int or a pair of ints.")


def _zero_padding(value, where: str) -> tuple[int, int, int, int]:
    """ZeroPadding2D's ``padding`` (int, (ph, pw) or ((top, bottom), (left, right)))."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (list, tuple)) for v in value):
        (t, b), (left, right) = (_pair(v, "padding", where) for v in value)
        return t, b, left, right
    ph, pw = _pair(value, "padding", where)
    return ph, ph, pw, pw


def _is_quantized(cfg: dict) -> bool:
    dtype = cfg.get("dtype")
    name = (dtype.get("config", {}).get("name", "") if isinstance(dtype, dict) else dtype) or ""
    return bool(cfg.get("quantization_config")) or str(name).startswith(("int", "float8"))


def _padding_mode(cfg: dict, where: str) -> str:
    mode = str(cfg.get("padding", "valid")).strip().lower()
    if mode not in ("same", "valid"):
        raise UnsupportedLayerError(
            f"{where} has padding={cfg.get('padding')!r}; only 'same' and 'valid' are supported.")
    return mode


# --- weights -------------------------------------------------------------------------------
def _vars_groups_keras3(f: h5py.File, source: str) -> dict[str, h5py.Group]:
    """Map group name -> ``vars`` group for the layers of a Keras 3 weights file."""
    if "layers" not in f or not isinstance(f["layers"], h5py.Group):
        raise FileFormatError(
            f"{source}: no 'layers' group; this is not a Keras 3 weights file."
        )
    groups = {}
    for gname, group in f["layers"].items():
        if isinstance(group, h5py.Group) and "vars" in group:
            groups[gname] = group["vars"]
    return groups


def _read_vars(vars_group: h5py.Group, source: str) -> list[np.ndarray]:
    """The variables ``0``, ``1``, ... of a ``vars`` group, each read within the size limit."""
    keys = sorted(vars_group, key=lambda k: int(k) if k.isascii() and k.isdigit() else 1 << 30)
    return [read_array(vars_group[k], source, f"weight {vars_group.name}/{k}") for k in keys]


def _text(value) -> "str | None":
    """An HDF5 attribute that should hold text, as a str (None if it holds something else)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _names_attr(obj, key: str, source: str) -> list[str]:
    """An attribute listing names (``weight_names``, ``layer_names``) as a list of str."""
    value = read_attr(obj, key, source, f"the {key!r} attribute of {obj.name!r}", None)
    if value is None:
        return []
    array = np.atleast_1d(np.asarray(value))
    names = [_text(v) for v in array.reshape(-1).tolist()] if array.dtype.kind in "USO" else []
    if array.dtype.kind not in "USO" or any(n is None for n in names):
        raise FileFormatError(f"{source}: the {key!r} attribute of {obj.name!r} must list names "
                              f"(text); got {array.dtype} data.")
    return names


def _json(text, source: str, what: str, expect=dict):
    """JSON text (bytes or str) that must decode to ``expect``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{source}: {what} is not UTF-8 text ({exc}).") from None
    try:
        return guard.json_text(text, source, what, expect)
    except RecursionError:
        raise FileFormatError(f"{source}: {what} nests too deeply to be read.") from None


class _Keras3Store:
    """The variables of each layer of a Keras 3 weights file, by layer name (in creation
    order, without names)."""

    def __init__(self, f: h5py.File, layers: list[dict], source: str):
        self.source = source
        self.groups = _vars_groups_keras3(f, source)
        self.by_attr: dict[str, str] = {}
        for gname, vg in self.groups.items():
            attr = _text(read_attr(vg, "name", source, f"the 'name' attribute of {vg.name!r}",
                                   None))
            if attr is not None:
                self.by_attr[attr] = gname
        # Fallback for files without the 'name' attribute: Keras' own naming of the groups.
        counters: dict[str, int] = {}
        self.by_position: dict[str, str] = {}
        for layer in layers:
            base = _to_snake_case(str(layer.get("class_name", "")))
            if base in counters:
                counters[base] += 1
                self.by_position[_layer_name(layer)] = f"{base}_{counters[base]}"
            else:
                counters[base] = 0
                self.by_position[_layer_name(layer)] = base

    def arrays(self, lname: str, where: str) -> list[tuple["str | None", np.ndarray]]:
        gname = self.by_attr.get(lname) if self.by_attr else self.by_position.get(lname)
        if gname is None or gname not in self.groups:
            raise FileFormatError(f"{where}: no weights for this layer in the weights file.")
        return [(None, a) for a in _read_vars(self.groups[gname], self.source)]


class _LegacyStore:
    """The variables of each layer of a Keras 2 ``model_weights`` group, with their names."""

    def __init__(self, group: h5py.Group, source: str):
        self.group = group
        self.source = source

    def arrays(self, lname: str, where: str) -> list[tuple["str | None", np.ndarray]]:
        if lname not in self.group:
            raise FileFormatError(f"{where}: no weights for this layer under {self.group.name!r}.")
        g = self.group[lname]
        if not isinstance(g, h5py.Group):
            raise FileFormatError(f"{where}: {g.name!r} must be a group of weights.")
        out = []
        for wname in _names_attr(g, "weight_names", self.source):
            if wname not in g:
                raise FileFormatError(f"{where}: weight {wname!r} is missing.")
            out.append((wname.split("/")[-1].split(":")[0],
                        read_array(g[wname], self.source, f"weight {wname!r}")))
        return out


def _legacy_weights(group: h5py.Group, names: Iterable[str], source: str) -> list[list[np.ndarray]]:
    """Kernel and bias of the named layers from a Keras 2 weights group (``weight_names``)."""
    result = []
    for lname in names:
        if lname not in group:
            raise FileFormatError(f"{source}: no weights for layer {lname!r} under {group.name!r}.")
        g = group[lname]
        if not isinstance(g, h5py.Group):
            raise FileFormatError(f"{source}: {g.name!r} must be a group of weights.")
        wnames = _names_attr(g, "weight_names", source)
        if not wnames:
            raise FileFormatError(f"{source}: layer {lname!r} has no weights in the file.")
        arrays = {}
        for wname in wnames:
            if wname not in g:
                raise FileFormatError(f"{source}: weight {wname!r} of layer {lname!r} is missing.")
            arrays[wname] = read_array(g[wname], source, f"weight {wname!r} of layer {lname!r}")
        kernel = [a for n, a in arrays.items() if n.split("/")[-1].split(":")[0] == "kernel"]
        bias = [a for n, a in arrays.items() if n.split("/")[-1].split(":")[0] == "bias"]
        if len(kernel) == 1 and len(bias) <= 1 and len(arrays) == len(kernel) + len(bias):
            result.append(kernel + bias)
        else:
            result.append(list(arrays.values()))
    return result


# --- layers ----------------------------------------------------------------------------------
class _Walk:
    """Turns the Keras layers, in order, into builder calls with their weights.

    ``shape`` is the current activation shape in neurosim's order: ``(C, H, W)`` for an
    image (Keras ``(H, W, C)``), else the Keras shape; None while unknown. A ZeroPadding2D
    waits in ``pad`` for the conv after it; a Flatten waits in ``flatten`` for the next layer
    (it commutes with activations, and a flatten of a 1 x 1 image at the end is dropped).
    """

    def __init__(self, source: str, store, keras2: bool = False):
        self.source = source
        self.store = store
        self.keras2 = keras2
        self.builder = NetworkBuilder(source, unit="weighted")
        self.shape: "tuple | None" = None
        self.input_shape: "tuple | None" = None
        self.pad: "tuple | None" = None
        self.pad_where = ""
        self.flatten: "tuple | None" = None  # (shape before it, where)
        self.last_kind = ""

    # --- helpers ------------------------------------------------------------------------
    def set_input(self, keras_shape: tuple) -> None:
        shape = tuple(keras_shape)
        if len(shape) == 3:
            shape = (shape[2], shape[0], shape[1])
        self.shape = shape
        if all(isinstance(v, int) and v > 0 for v in shape) and len(shape) in (1, 3):
            self.input_shape = shape

    def image(self, where: str) -> tuple[int, int, int]:
        if self.shape is None or len(self.shape) != 3:
            got = ("an input of unknown shape" if self.shape is None else
                   f"an input of shape {self._keras(self.shape)}")
            raise UnsupportedLayerError(
                f"{where} gets {got}; it needs an image (H, W, C) of known size (give the model "
                "an Input with its shape).")
        if not all(isinstance(v, int) and v > 0 for v in self.shape):
            raise UnsupportedLayerError(
                f"{where} gets an image of shape {self._keras(self.shape)}; neurosim needs its "
                "size fixed (an Input with every dimension given).")
        return self.shape

    @staticmethod
    def _keras(shape: tuple) -> tuple:
        """A neurosim shape shown in Keras order (H, W, C)."""
        return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)

    def variables(self, lname: str, roles: list[str], where: str) -> dict[str, np.ndarray]:
        """The layer's variables by role (creation order; names when the file has them)."""
        items = self.store.arrays(lname, where)
        if len(items) != len(roles):
            raise FileFormatError(
                f"{where} should have {len(roles)} weight arrays ({', '.join(roles)}); the file "
                f"holds {len(items)}.")
        for (name, array), role in zip(items, roles):
            if not np.issubdtype(array.dtype, np.floating):
                raise UnsupportedLayerError(
                    f"{where}: the weight {name or role!r} has dtype {array.dtype}; only float "
                    "weights are supported (quantized layers are not).")
        names = [name for name, _ in items]
        if all(names):
            mapped = [("kernel" if n == "depthwise_kernel" and "depthwise_kernel" not in roles
                       else n) for n in names]
            if sorted(mapped) == sorted(roles):
                return {n: a for n, (_, a) in zip(mapped, items)}
        return {role: a for role, (_, a) in zip(roles, items)}

    def check_shape(self, array: np.ndarray, expected: tuple, what: str, where: str) -> None:
        if tuple(array.shape) != tuple(expected):
            raise FileFormatError(
                f"{where}: the {what} has shape {tuple(array.shape)}; the layer's configuration "
                f"expects {tuple(expected)}.")

    def emit_flatten(self) -> None:
        if self.flatten is not None:
            self.builder.transform(Flatten("hwc"), self.flatten[1])
            self.flatten = None

    def add(self, layer, where: str, lname: str, activation=None) -> None:
        self.emit_flatten()
        self.builder.add(layer, where, name=repr(lname), activation=activation)
        self.shape = tuple(layer.out_shape) if isinstance(layer, Conv2d) else (layer.n_out,)

    def transform(self, t, where: str) -> None:
        self.emit_flatten()
        try:
            bound = t.bind(self.shape)
        except ShapeError as exc:
            raise UnsupportedLayerError(f"{where}: {exc}") from None
        self.builder.transform(t, where)
        self.shape = tuple(bound.out_shape)

    def conv_padding(self, cfg: dict, where: str, kernel, stride, dilation) -> tuple:
        """Conv padding (top, bottom, left, right), with a waiting ZeroPadding2D's added."""
        _, H, W = self.image(where)
        zt, zb, zl, zr = self.pad or (0, 0, 0, 0)
        self.pad = None
        if _padding_mode(cfg, where) == "valid":
            own = (0, 0, 0, 0)
        else:
            own = (same_padding(H + zt + zb, kernel[0], stride[0], dilation[0])
                   + same_padding(W + zl + zr, kernel[1], stride[1], dilation[1]))
        return (zt + own[0], zb + own[1], zl + own[2], zr + own[3])

    def activation_of(self, cfg: dict, lname: str):
        return _activation_from_keras(cfg.get("activation", "linear"), self.source, lname,
                                      self.keras2)

    # --- one layer ----------------------------------------------------------------------
    def layer(self, layer: dict, index: int) -> None:
        cls = layer.get("class_name")
        cfg = layer.get("config") or {}
        lname = _layer_name(layer) or f"#{index}"
        where = f"{self.source}: layer {lname!r} ({cls})"
        self.builder.check_open(where)
        if self.shape is None:
            shape = _shape_tail(cfg.get("batch_shape") or cfg.get("batch_input_shape"))
            if shape is None:
                shape = _shape_tail((layer.get("build_config") or {}).get("input_shape"))
            if shape is not None:
                self.set_input(shape)
        if cls in _NOOP_LAYERS:
            return
        if str(cfg.get("data_format") or "channels_last") != "channels_last":
            raise UnsupportedLayerError(
                f"{where} has data_format={cfg.get('data_format')!r}; only 'channels_last' "
                "(Keras' default) is supported.")
        if self.pad is not None and cls not in _CONV_LAYERS and cls != "ZeroPadding2D":
            raise UnsupportedLayerError(
                f"{self.pad_where} is followed by {where}; neurosim folds a ZeroPadding2D into "
                "the padding of the Conv2D, DepthwiseConv2D or SeparableConv2D right after it, "
                "and supports it nowhere else.")
        if cls in _CONV_LAYERS + ("Dense",) and _is_quantized(cfg):
            raise UnsupportedLayerError(
                f"{where} is quantized; only float layers are supported.")
        method = getattr(self, f"_{cls}", None)
        if method is None:
            raise UnsupportedLayerError(
                f"{self.source}: layer {lname!r} is a {cls}, which neurosim does not support. "
                f"{_supported_layers_text()}"
            )
        method(cfg, lname, where)
        self.last_kind = cls

    def finish(self, metadata: dict, stacklevel: int) -> Network:
        if self.pad is not None:
            raise UnsupportedLayerError(
                f"{self.pad_where} ends the model; a ZeroPadding2D must come right before a "
                "Conv2D, DepthwiseConv2D or SeparableConv2D.")
        if self.flatten is not None:
            before, where = self.flatten
            if before[1] * before[2] != 1:
                raise UnsupportedLayerError(
                    f"{where} flattens the {self._keras(before)} output of the model's last "
                    "layer; neurosim networks end with a Dense or conv layer, and a flatten "
                    "there is only dropped when the image is 1 x 1.")
            self.flatten = None  # (C, 1, 1) flattened is the same vector
        else:
            trailing = bool(self.builder.transforms) and \
                self.builder.transforms[-1][0] == len(self.builder)  # the builder reports it
            if not trailing and self.shape is not None and len(self.shape) == 3 and \
                    self.shape[1] * self.shape[2] != 1:
                raise UnsupportedLayerError(
                    f"{self.source}: the model's output is an image of shape "
                    f"{self._keras(self.shape)}; neurosim networks output vectors (in "
                    "channels-first order): end the model with a Flatten and a Dense, or a "
                    "global pooling and a Dense.")
        if not len(self.builder):
            raise UnsupportedLayerError(
                f"{self.source}: the model has no Dense or convolution layer. "
                f"{_supported_layers_text()}")
        layout = "NHWC" if self.input_shape is not None and len(self.input_shape) == 3 else None
        return self.builder.build(metadata, stacklevel=stacklevel + 1,
                                  input_shape=self.input_shape if layout else None,
                                  layout=layout)

    # --- the layer types (methods named after the Keras classes) --------------------------
    def _Dense(self, cfg, lname, where):
        if self.shape is not None and len(self.shape) != 1:
            raise UnsupportedLayerError(
                f"{where} gets an input of shape {self._keras(self.shape)}; only 1-D inputs are "
                "supported (add a Flatten before it).")
        units = int(cfg["units"])
        use_bias = bool(cfg.get("use_bias", True))
        activation = self.activation_of(cfg, lname)
        arrays = self.variables(lname, ["kernel"] + (["bias"] if use_bias else []), where)
        kernel = arrays["kernel"]
        if kernel.ndim != 2 or kernel.shape[1] != units:
            raise FileFormatError(
                f"{where}: the kernel has shape {kernel.shape}, which does not match "
                f"units={units}.")
        bias = arrays.get("bias")
        if bias is None:
            bias = np.zeros(units, dtype=kernel.dtype)
        self.check_shape(bias, (units,), "bias", where)
        self.add(Dense(np.ascontiguousarray(kernel.T), bias, make_activation("identity")),
                 where, lname, activation)

    def _conv_settings(self, cfg, where):
        kernel = _pair(cfg["kernel_size"], "kernel_size", where)
        stride = _pair(cfg.get("strides", 1), "strides", where)
        dilation = _pair(cfg.get("dilation_rate", 1), "dilation_rate", where)
        return kernel, stride, dilation

    def _Conv2D(self, cfg, lname, where):
        C, H, W = self.image(where)
        (kh, kw), stride, dilation = self._conv_settings(cfg, where)
        filters = int(cfg["filters"])
        groups = int(cfg.get("groups") or 1)
        if C % groups or filters % groups:
            raise FileFormatError(
                f"{where}: groups={groups} does not divide the {C} input channels and the "
                f"{filters} filters.")
        use_bias = bool(cfg.get("use_bias", True))
        activation = self.activation_of(cfg, lname)
        padding = self.conv_padding(cfg, where, (kh, kw), stride, dilation)
        arrays = self.variables(lname, ["kernel"] + (["bias"] if use_bias else []), where)
        self.check_shape(arrays["kernel"], (kh, kw, C // groups, filters), "kernel", where)
        if use_bias:
            self.check_shape(arrays["bias"], (filters,), "bias", where)
        K = np.ascontiguousarray(arrays["kernel"].transpose(3, 2, 0, 1))
        layer = self._conv(K, arrays.get("bias"), (C, H, W), stride, padding, dilation,
                           groups, where)
        self.add(layer, where, lname, activation)

    def _conv(self, K, b, in_shape, stride, padding, dilation, groups, where) -> Conv2d:
        layer = Conv2d.build(K, b, in_shape, stride, padding, dilation, groups)
        if min(layer.out_hw) < 1:
            raise UnsupportedLayerError(
                f"{where}: its kernel does not fit its input of shape {self._keras(in_shape)}.")
        return layer

    def _depthwise(self, kernel, bias, cfg, where, C, H, W, kh, kw, stride, dilation):
        """The depthwise Conv2d of a DepthwiseConv2D / SeparableConv2D."""
        mult = int(cfg.get("depth_multiplier") or 1)
        self.check_shape(kernel, (kh, kw, C, mult), "depthwise kernel", where)
        # Output channel c * mult + m is kernel[:, :, c, m].
        K = np.ascontiguousarray(kernel.reshape(kh, kw, C * mult).transpose(2, 0, 1)[:, None])
        if bias is not None:
            self.check_shape(bias, (C * mult,), "bias", where)
        padding = self.conv_padding(cfg, where, (kh, kw), stride, dilation)
        return self._conv(K, bias, (C, H, W), stride, padding, dilation, C, where)

    def _DepthwiseConv2D(self, cfg, lname, where):
        C, H, W = self.image(where)
        (kh, kw), stride, dilation = self._conv_settings(cfg, where)
        use_bias = bool(cfg.get("use_bias", True))
        activation = self.activation_of(cfg, lname)
        arrays = self.variables(lname, ["kernel"] + (["bias"] if use_bias else []), where)
        layer = self._depthwise(arrays["kernel"], arrays.get("bias"), cfg, where, C, H, W,
                                kh, kw, stride, dilation)
        self.add(layer, where, lname, activation)

    def _SeparableConv2D(self, cfg, lname, where):
        C, H, W = self.image(where)
        (kh, kw), stride, dilation = self._conv_settings(cfg, where)
        filters = int(cfg["filters"])
        mult = int(cfg.get("depth_multiplier") or 1)
        use_bias = bool(cfg.get("use_bias", True))
        activation = self.activation_of(cfg, lname)
        arrays = self.variables(lname, ["depthwise_kernel", "pointwise_kernel"]
                                + (["bias"] if use_bias else []), where)
        depthwise = self._depthwise(arrays["depthwise_kernel"], None, cfg, where, C, H, W,
                                    kh, kw, stride, dilation)
        self.add(depthwise, f"{where} (depthwise part)", f"{lname} (depthwise part)")
        pointwise = arrays["pointwise_kernel"]
        self.check_shape(pointwise, (1, 1, C * mult, filters), "pointwise kernel", where)
        if use_bias:
            self.check_shape(arrays["bias"], (filters,), "bias", where)
        K = np.ascontiguousarray(pointwise.transpose(3, 2, 0, 1))
        layer = self._conv(K, arrays.get("bias"), depthwise.out_shape, 1, 0, 1, 1, where)
        self.add(layer, f"{where} (pointwise part)", f"{lname} (pointwise part)", activation)

    def _ZeroPadding2D(self, cfg, lname, where):
        self.image(where)
        pad = _zero_padding(cfg.get("padding", 1), where)
        if min(pad) < 0:
            raise FileFormatError(f"{where}: negative padding {pad}.")
        old = self.pad or (0, 0, 0, 0)
        self.pad = tuple(a + b for a, b in zip(old, pad))
        self.pad_where = where

    def _BatchNormalization(self, cfg, lname, where):
        axis = cfg.get("axis", -1)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        rank = None if self.shape is None else len(self.shape) + 1
        if not isinstance(axis, int) or (axis != -1 and axis != (rank or 0) - 1):
            raise UnsupportedLayerError(
                f"{where} normalizes axis {axis!r}; only the last (channel) axis, -1, is "
                "supported.")
        center, scale = bool(cfg.get("center", True)), bool(cfg.get("scale", True))
        roles = (["gamma"] if scale else []) + (["beta"] if center else []) + [
            "moving_mean", "moving_variance"]
        arrays = self.variables(lname, roles, where)
        n = arrays["moving_mean"].size
        gamma = arrays.get("gamma", np.ones(n))
        beta = arrays.get("beta", np.zeros(n))
        eps = float(cfg.get("epsilon", 1e-3))
        self.builder.batchnorm(gamma, beta, arrays["moving_mean"], arrays["moving_variance"],
                               eps, where)

    def _pool(self, cfg, where, kind):
        C, H, W = self.image(where)
        kernel = _pair(cfg.get("pool_size", 2), "pool_size", where)
        strides = cfg.get("strides")
        stride = kernel if strides is None else _pair(strides, "strides", where)
        if _padding_mode(cfg, where) == "same":
            padding = same_padding(H, kernel[0], stride[0]) + same_padding(W, kernel[1], stride[1])
        else:
            padding = (0, 0, 0, 0)
        if kind == "max":
            return MaxPool2d(kernel, stride, padding)
        return AvgPool2d(kernel, stride, padding, count_include_pad=False)

    def _MaxPooling2D(self, cfg, lname, where):
        self.transform(self._pool(cfg, where, "max"), where)

    def _AveragePooling2D(self, cfg, lname, where):
        self.transform(self._pool(cfg, where, "avg"), where)

    def _GlobalAveragePooling2D(self, cfg, lname, where):
        self.image(where)
        self.transform(GlobalAvgPool2d(keepdims=bool(cfg.get("keepdims", False))), where)

    def _GlobalMaxPooling2D(self, cfg, lname, where):
        C, H, W = self.image(where)
        self.transform(MaxPool2d((H, W), (H, W)), where)
        if not cfg.get("keepdims", False):
            self.flatten, self.shape = ((C, 1, 1), where), (C,)

    def _flatten_to_vector(self, where):
        """Flatten the current shape (an image in Keras' hwc order; a vector stays)."""
        if self.shape is None or len(self.shape) == 1:
            return
        if len(self.shape) != 3:
            raise UnsupportedLayerError(
                f"{where} flattens an input of shape {self.shape}; Flatten is only supported "
                "on an image (H, W, C) or an input that is already 1-D. "
                f"{_supported_layers_text()}")
        self.image(where)
        self.flatten = (self.shape, where)
        self.shape = (int(np.prod(self.shape)),)

    def _Flatten(self, cfg, lname, where):
        self._flatten_to_vector(where)

    def _Reshape(self, cfg, lname, where):
        target = tuple(cfg.get("target_shape") or ())
        size = None if self.shape is None else int(np.prod(self.shape))
        if len(target) == 1 and target[0] in (-1, size):
            self._flatten_to_vector(where)
            return
        if len(target) == 3 and target[:2] == (1, 1) and target[2] in (-1, size):
            if self.shape is not None and len(self.shape) == 3 and self.shape[1:] == (1, 1):
                return  # (1, 1, C) -> (1, 1, C)
            if self.flatten is not None and self.flatten[0][1:] == (1, 1):
                self.shape, self.flatten = self.flatten[0], None  # a flatten undone
                return
            last = self.builder.transforms[-1] if self.builder.transforms else None
            if self.last_kind == "GlobalAveragePooling2D" and last is not None and \
                    isinstance(last[1], GlobalAvgPool2d) and not last[1].keepdims:
                # GlobalAveragePooling2D() + Reshape((1, 1, C)): the pooling with keepdims.
                self.builder.transforms[-1] = (last[0], GlobalAvgPool2d(keepdims=True), last[2])
                self.shape = self.shape + (1, 1)
                return
        raise UnsupportedLayerError(
            f"{where} reshapes an input of shape "
            f"{'unknown' if self.shape is None else self._keras(self.shape)} to {target}; only "
            "reshapes to a vector (a flatten in Keras' order), or to (1, 1, C) right after a "
            "global pooling, are supported.")

    def _activation_layer(self, cfg, lname, where, cls):
        self.builder.activation(_layer_activation(cls, cfg, self.source, lname, self.keras2),
                                where)

    def _Activation(self, cfg, lname, where):
        self._activation_layer(cfg, lname, where, "Activation")

    def _ReLU(self, cfg, lname, where):
        self._activation_layer(cfg, lname, where, "ReLU")

    def _LeakyReLU(self, cfg, lname, where):
        self._activation_layer(cfg, lname, where, "LeakyReLU")

    def _ELU(self, cfg, lname, where):
        self._activation_layer(cfg, lname, where, "ELU")

    def _Softmax(self, cfg, lname, where):
        self._activation_layer(cfg, lname, where, "Softmax")


def _build_network(layers: list[dict], input_shape, source: str, store, metadata: dict,
                   keras2: bool = False) -> Network:
    """Walk the Keras layer configs (in forward order) into a Network."""
    walk = _Walk(source, store, keras2)
    if input_shape is not None:
        walk.set_input(input_shape)
    for index, layer in enumerate(layers):
        walk.layer(layer, index)
    return walk.finish(metadata, stacklevel=3)


def _dense_layer(entry: dict, activation: Activation, source: str) -> Dense:
    """Check a Dense entry's variables (``entry["arrays"]``) against its config; build it."""
    arrays = entry["arrays"]
    expected = 2 if entry["use_bias"] else 1
    if len(arrays) != expected:
        raise FileFormatError(
            f"{source}: Dense layer {entry['name']!r} should have {expected} weight "
            f"arrays (kernel{', bias' if expected == 2 else ''}); the file holds "
            f"{len(arrays)}."
        )
    kernel = arrays[0]
    if kernel.ndim != 2 or not np.issubdtype(kernel.dtype, np.floating):
        raise UnsupportedLayerError(
            f"{source}: the kernel of Dense layer {entry['name']!r} has shape {kernel.shape} "
            f"and dtype {kernel.dtype}; expected a 2-D float array (quantized layers are "
            "not supported)."
        )
    units = entry.get("units")
    if units is not None and kernel.shape[1] != units:
        raise FileFormatError(
            f"{source}: the kernel of Dense layer {entry['name']!r} has shape {kernel.shape}, "
            f"which does not match units={units}."
        )
    bias = arrays[1] if expected == 2 else np.zeros(kernel.shape[1], dtype=kernel.dtype)
    return Dense(kernel.T, bias, activation)


def _finish(builder: NetworkBuilder, variables: list[list[np.ndarray]], metadata: dict) -> Network:
    """Attach each Dense entry's variables, then build the network."""
    for entry, arrays in zip(builder.specs, variables):
        entry["arrays"] = arrays
    source = builder.source
    return builder.build(metadata, stacklevel=3,
                         resolve=lambda entry, act: _dense_layer(entry, act, source))


# --- the three formats ---------------------------------------------------------------------
def _keras2_version(version) -> bool:
    """Whether a ``keras_version`` attribute names Keras 2 (whose hard_sigmoid differs)."""
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return isinstance(version, str) and version.strip().startswith("2.")


def _load_keras_archive(path: str) -> Network:
    """A ``.keras`` zip archive: members are read in memory within the size limit (their
    declared sizes are checked before anything is decompressed) and never extracted."""
    source = repr(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise FileFormatError(
            f"{source}: not a valid .keras archive (a zip file with config.json and "
            f"model.weights.h5): {_brief(exc)}."
        ) from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise FileFormatError(
                f"{source}: the archive has no config.json; this is not a Keras 3 model file."
            )
        if "model.weights.h5" not in names:
            extra = " (sharded or .npz weights are not supported)" if any(
                n.startswith("model.weights") for n in names) else ""
            raise FileFormatError(
                f"{source}: the archive has no model.weights.h5{extra}."
            )
        members = ["config.json", "model.weights.h5"] + (
            ["metadata.json"] if "metadata.json" in names else [])
        guard.check_nbytes(sum(zf.getinfo(n).file_size for n in members), source,
                           "the archive's config.json, metadata.json and model.weights.h5 "
                           "together")
        try:
            config_text = guard.read_member(zf, "config.json", source)
            weights_bytes = guard.read_member(zf, "model.weights.h5", source)
            meta_text = (guard.read_member(zf, "metadata.json", source)
                         if "metadata.json" in names else b"{}")
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError,
                RuntimeError) as exc:
            if isinstance(exc, NeurosimError):
                raise
            raise FileFormatError(
                f"{source}: not a valid .keras archive (a zip file with config.json and "
                f"model.weights.h5): {_brief(exc)}."
            ) from None
    config = _json(config_text, source, "config.json")
    metadata = _json(meta_text, source, "metadata.json")
    keras2 = _keras2_version(metadata.get("keras_version"))
    try:
        name, layers, input_shape = _ordered_layers(config, source)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, NeurosimError):
            raise
        raise FileFormatError(f"{source}: malformed config.json: {_brief(exc)}.") from None
    check_global_heaps(weights_bytes, f"{source} (its model.weights.h5)")
    try:
        f = h5py.File(io.BytesIO(weights_bytes), "r")
    except OSError as exc:
        raise FileFormatError(f"{source}: model.weights.h5 is not a readable HDF5 file: {_brief(exc)}.") from None
    with f:
        try:
            store = _Keras3Store(f, config["config"]["layers"], source)
            return _build_network(layers, input_shape, source, store,
                                  {"source_format": "keras3", "name": name}, keras2)
        except (KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
            if isinstance(exc, NeurosimError):
                raise
            raise FileFormatError(
                f"{source}: malformed config.json or model.weights.h5: {_brief(exc)}.") from None


def _plan_from_activations(names: list[str], activations, source: str) -> NetworkBuilder:
    """A builder for a weights-only file: one Dense entry per name, activations as given."""
    n_layers = len(names)
    if activations is None:
        raise FileFormatError(
            f"{source} holds weights only ({n_layers} Dense layers) and no architecture: pass "
            "the activation of each layer, e.g. activations=['relu', 'relu', 'identity'] in "
            "Python (CLI: --activations relu,relu,identity)."
        )
    if isinstance(activations, str):
        activations = [a for a in activations.split(",") if a.strip()]
    activations = list(activations)
    if len(activations) != n_layers:
        raise FileFormatError(
            f"{source} holds {n_layers} Dense layers but {len(activations)} activations were "
            "given; give exactly one per Dense layer."
        )
    builder = NetworkBuilder(source, unit="Dense")
    for index, (name, act) in enumerate(zip(names, builder.activation_list(
            activations, [str(i) for i in range(n_layers)]))):
        builder.add({"name": name, "units": None, "use_bias": None}, f"{source}: layer {index}",
                    name=repr(name), activation=act)
    return builder


def _load_keras3_weights(path: str, f: h5py.File, activations) -> Network:
    source = repr(path)
    groups = _vars_groups_keras3(f, source)
    dense_names = []
    for gname, vg in groups.items():
        base = re.sub(r"_\d+$", "", gname)
        if base == "dense":
            dense_names.append(gname)
        elif len(vg):
            raise UnsupportedLayerError(
                f"{source}: the weights file holds a layer {gname!r} with weights that is not "
                f"a Dense layer. {_supported_layers_text()}"
            )
    if not dense_names:
        raise FileFormatError(f"{source}: the weights file holds no Dense layer.")
    # Keras numbers same-class groups in model order: dense, dense_1, dense_2, ...
    dense_names.sort(key=lambda g: int(g.rsplit("_", 1)[1]) if re.search(r"_\d+$", g) else 0)
    builder = _plan_from_activations(dense_names, activations, source)
    variables = []
    for entry, gname in zip(builder.specs, dense_names):
        arrays = _read_vars(groups[gname], source)
        entry["use_bias"] = len(arrays) == 2
        variables.append(arrays)
    name = (_text(read_attr(f["vars"], "name", source, "the 'name' attribute of '/vars'", None))
            if "vars" in f else None)
    metadata = {"source_format": "keras3"}
    if name is not None:
        metadata["name"] = name
    return _finish(builder, variables, metadata)


def _load_legacy_h5(path: str, f: h5py.File) -> Network:
    source = repr(path)
    text = read_attr(f, "model_config", source, "the model_config attribute")
    if isinstance(text, np.ndarray) and text.size == 1:
        text = text.reshape(()).item()
    config = _json(text, source, "the model_config attribute")
    name, layers, input_shape = _ordered_layers(config, source)
    if "model_weights" not in f:
        raise FileFormatError(f"{source}: the file has no 'model_weights' group (no weights saved).")
    if not isinstance(f["model_weights"], h5py.Group):
        raise FileFormatError(f"{source}: 'model_weights' must be a group of layers.")
    store = _LegacyStore(f["model_weights"], source)
    version = _text(read_attr(f, "keras_version", source, "the keras_version attribute", None))
    return _build_network(layers, input_shape, source, store,
                          {"source_format": "keras2-h5", "name": name},
                          _keras2_version(version))


def _load_legacy_weights(path: str, f: h5py.File, activations) -> Network:
    source = repr(path)
    names = _names_attr(f, "layer_names", source)
    for n in names:
        if n not in f or not isinstance(f[n], h5py.Group):
            raise FileFormatError(f"{source}: layer {n!r} of 'layer_names' has no group of "
                                  "weights in the file.")
    weighted = [n for n in names if _names_attr(f[n], "weight_names", source)]
    builder = _plan_from_activations(weighted, activations, source)
    variables = _legacy_weights(f, weighted, source)
    for entry, arrays in zip(builder.specs, variables):
        entry["use_bias"] = len(arrays) == 2
    return _finish(builder, variables, {"source_format": "keras2-h5"})


def load_keras(path: "str | os.PathLike", activations=None) -> Network:
    """Load a Keras model file without importing Keras.

    Parameters
    ----------
    path : str or os.PathLike
        A Keras 3 ``.keras`` archive, a Keras 3 ``.weights.h5`` weights file, or a legacy
        Keras 2 ``.h5`` model (as written by ``model.save("x.h5")``).
    activations : list of str or Activation, optional
        One activation per Dense layer, for files that hold weights only (``.weights.h5``,
        legacy weights-only ``.h5``). Ignored for files that store the architecture.

    Returns
    -------
    Network
        The network; ``metadata`` holds ``source_format`` (``"keras3"`` or ``"keras2-h5"``),
        the model's ``name`` and, if a final softmax was dropped,
        ``dropped_output_softmax = True``.

    Raises
    ------
    FileFormatError
        If the file is malformed (not a zip or HDF5 file, no configuration, missing weights),
        or holds weights only and ``activations`` is not given.
    UnsupportedLayerError
        If the model holds a layer or activation neurosim cannot represent.

    Warns
    -----
    UserWarning
        When a final softmax is dropped.
    """
    path = os.fspath(path)
    with guard.reading(repr(path), "Keras model file (.keras, .weights.h5 or Keras 2 .h5)"):
        return _load_keras(path, activations)


def _load_keras(path: str, activations) -> Network:
    if zipfile.is_zipfile(path):
        return _load_keras_archive(path)
    if path.lower().endswith(".keras"):
        raise FileFormatError(
            f"{path!r} is not a valid .keras archive (a zip file with config.json and "
            "model.weights.h5); it may be truncated or corrupt."
        )
    check_hdf5_file(path, repr(path))
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise FileFormatError(f"{path!r} is neither a .keras archive nor a readable HDF5 file.") from None
    with f:
        try:
            if "model_config" in f.attrs:
                return _load_legacy_h5(path, f)
            if "layers" in f and "vars" in f:
                return _load_keras3_weights(path, f, activations)
            if "layer_names" in f.attrs:
                return _load_legacy_weights(path, f, activations)
        except (KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
            if isinstance(exc, NeurosimError):
                raise
            raise FileFormatError(f"{path!r}: malformed Keras file: {_brief(exc)}.") from None
    raise FileFormatError(
        f"{path!r} is an HDF5 file but neither a neurosim network nor a Keras model or weights "
        "file (no 'model_config' attribute, no 'layers' group)."
    )
