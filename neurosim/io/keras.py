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
    layer.
legacy ``.h5`` (Keras 2, also written by Keras 3's ``model.save("x.h5")``)
    Root attribute ``model_config`` (JSON architecture); weights under
    ``model_weights/<layer name>``, whose attribute ``weight_names`` gives the dataset paths.

Supported layers: ``InputLayer``, ``Dense``, ``Activation``, ``ReLU`` (plain or with a
negative slope), ``LeakyReLU``, ``Dropout`` (ignored), ``Flatten`` (only on 1-D input) and a
final ``Softmax``. A final softmax is dropped (the network then outputs logits; the argmax is
unchanged), with a warning and ``metadata["dropped_output_softmax"] = True``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any, Iterable

import h5py
import numpy as np

from neurosim.activations import Activation, make_activation
from neurosim.errors import FileFormatError, NeurosimError, UnsupportedLayerError
from neurosim.io.builder import SOFTMAX, NetworkBuilder
from neurosim.layers import Dense
from neurosim.network import Network

__all__ = ["load_keras"]

#: Keras layer classes neurosim understands (for error messages).
SUPPORTED_LAYERS = (
    "InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "Dropout",
    "Flatten (on 1-D input)", "Softmax (last layer only)",
)
#: Keras activation names neurosim understands (for error messages).
SUPPORTED_ACTIVATIONS = (
    "relu", "leaky_relu", "tanh", "sigmoid", "softplus", "linear",
    "softmax (output layer only)",
)

_NOOP_LAYERS = {"Dropout", "InputLayer"}
# Keras 3's default slope of the ``leaky_relu`` activation function.
_KERAS_LEAKY_RELU_DEFAULT = 0.2
# Default slope of the LeakyReLU layer (Keras 2 ``alpha`` and Keras 3 ``negative_slope``).
_KERAS_LEAKY_LAYER_DEFAULT = 0.3


def _supported_layers_text() -> str:
    return (
        f"Supported layers: {', '.join(SUPPORTED_LAYERS)}; supported activations: "
        f"{', '.join(SUPPORTED_ACTIVATIONS)}."
    )


# --- activations ---------------------------------------------------------------------------
def _activation_from_keras(spec: Any, source: str, layer: str) -> "Activation | str":
    """Map a Keras activation spec (name or serialized object) onto neurosim.

    Returns an :class:`Activation`, or the string ``"softmax"`` for a softmax / log-softmax.
    """
    alpha = None
    name = spec
    if spec is None:
        name = "linear"
    elif isinstance(spec, dict):
        # Keras 3 may serialize an activation as {"class_name": "function", "config": "relu"}
        # or, for a layer used as activation, {"class_name": "LeakyReLU", "config": {...}}.
        cls = spec.get("class_name")
        cfg = spec.get("config")
        if isinstance(cfg, str):
            name = cfg
        elif cls in ("LeakyReLU", "ReLU", "Activation", "Softmax"):
            return _layer_activation(cls, cfg or {}, source, layer)
        else:
            name = cls
    if not isinstance(name, str):
        raise UnsupportedLayerError(
            f"{source}: layer {layer!r} has an activation neurosim cannot read: {spec!r}. "
            f"{_supported_layers_text()}"
        )
    key = name.strip().lower()
    if key in ("softmax", "log_softmax"):
        return SOFTMAX
    if key in ("leaky_relu", "leakyrelu"):
        alpha = _KERAS_LEAKY_RELU_DEFAULT
    if key not in ("relu", "leaky_relu", "leakyrelu", "tanh", "sigmoid", "softplus", "linear"):
        raise UnsupportedLayerError(
            f"{source}: layer {layer!r} uses the activation {name!r}, which neurosim does not "
            f"support. {_supported_layers_text()}"
        )
    return make_activation(key, alpha)


def _layer_activation(cls: str, cfg: dict, source: str, layer: str) -> "Activation | str":
    """The activation computed by an activation *layer* (Activation, ReLU, LeakyReLU, Softmax)."""
    if cls == "Activation":
        return _activation_from_keras(cfg.get("activation"), source, layer)
    if cls == "Softmax":
        return SOFTMAX
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", _KERAS_LEAKY_LAYER_DEFAULT))
        return make_activation("leaky_relu", float(slope))
    if cls == "ReLU":
        max_value = cfg.get("max_value")
        threshold = float(cfg.get("threshold") or 0.0)
        slope = float(cfg.get("negative_slope") or 0.0)
        if max_value is not None or threshold != 0.0:
            raise UnsupportedLayerError(
                f"{source}: layer {layer!r} is a ReLU with max_value={max_value!r} and "
                f"threshold={threshold!r}; only max_value=None and threshold=0 are supported. "
                f"{_supported_layers_text()}"
            )
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


def _ordered_layers(model_config: dict, source: str) -> tuple[str, list[dict], "tuple | None"]:
    """The model's name, its layers in forward order, and its input shape (if known).

    Raises UnsupportedLayerError for a model class other than Sequential / Functional, or
    for a Functional graph that is not a single chain.
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
    by_name = {layer.get("name") or layer.get("config", {}).get("name"): layer for layer in layers}
    inputs = _endpoint_names(cfg.get("input_layers"))
    outputs = _endpoint_names(cfg.get("output_layers"))
    not_chain = UnsupportedLayerError(
        f"{source}: the Functional model {name!r} is not a single chain of layers (one input, "
        "one output, each layer feeding the next); only such models are supported."
    )
    if len(inputs) != 1 or len(outputs) != 1:
        raise not_chain
    chain = [outputs[0]]
    while chain[-1] != inputs[0]:
        layer = by_name.get(chain[-1])
        if layer is None:
            raise FileFormatError(f"{source}: the model refers to an unknown layer {chain[-1]!r}.")
        parents = _inbound_names(layer)
        if len(parents) != 1 or parents[0] in chain:
            raise not_chain
        chain.append(parents[0])
    if len(chain) != len(layers):
        raise not_chain
    return name, [by_name[n] for n in reversed(chain)], input_shape


def _build_plan(layers: list[dict], input_shape, source: str) -> NetworkBuilder:
    """Walk the Keras layer configs into a builder whose specs are the Dense entries.

    Each spec is a dict with keys ``name``, ``class_name``, ``units`` and ``use_bias``; the
    builder folds activation layers into the Dense before them and records a final softmax.
    """
    builder = NetworkBuilder(source, unit="Dense")
    shape = input_shape
    for index, layer in enumerate(layers):
        cls = layer.get("class_name")
        cfg = layer.get("config") or {}
        lname = cfg.get("name") or layer.get("name") or f"#{index}"
        where = f"{source}: layer {lname!r} ({cls})"
        builder.check_open(where)
        if shape is None:
            shape = _shape_tail(cfg.get("batch_shape") or cfg.get("batch_input_shape"))
            if shape is None:
                shape = _shape_tail((layer.get("build_config") or {}).get("input_shape"))
        if cls in _NOOP_LAYERS:
            continue
        if cls == "Flatten":
            if shape is not None and len(shape) != 1:
                raise UnsupportedLayerError(
                    f"{source}: layer {lname!r} (Flatten) flattens an input of shape {shape}; "
                    "Flatten is only supported when its input is already 1-D. "
                    f"{_supported_layers_text()}"
                )
            continue
        if cls == "Dense":
            if shape is not None and len(shape) != 1:
                raise UnsupportedLayerError(
                    f"{source}: layer {lname!r} (Dense) gets an input of shape {shape}; only "
                    "1-D inputs are supported."
                )
            if cfg.get("quantization_config") or str(
                (cfg.get("dtype") or {}).get("config", {}).get("name", "")
                if isinstance(cfg.get("dtype"), dict) else cfg.get("dtype") or ""
            ).startswith(("int", "float8")):
                raise UnsupportedLayerError(
                    f"{source}: layer {lname!r} (Dense) is quantized; only float Dense layers "
                    "are supported."
                )
            activation = _activation_from_keras(cfg.get("activation", "linear"), source, lname)
            builder.add({"name": lname, "class_name": cls, "units": int(cfg["units"]),
                         "use_bias": bool(cfg.get("use_bias", True))},
                        where, name=repr(lname), activation=activation)
            shape = (int(cfg["units"]),)
            continue
        if cls in ("Activation", "ReLU", "LeakyReLU", "Softmax"):
            builder.activation(_layer_activation(cls, cfg, source, lname), where)
            continue
        raise UnsupportedLayerError(
            f"{source}: layer {lname!r} is a {cls}, which neurosim does not support. "
            f"{_supported_layers_text()}"
        )
    if not len(builder):
        raise UnsupportedLayerError(f"{source}: the model has no Dense layer. {_supported_layers_text()}")
    return builder


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


def _read_vars(vars_group: h5py.Group) -> list[np.ndarray]:
    keys = sorted(vars_group, key=lambda k: int(k) if k.isdigit() else 1 << 30)
    return [np.asarray(vars_group[k]) for k in keys]


def _keras3_weights(f: h5py.File, plan: list[dict], layers: list[dict], source: str) -> list[list[np.ndarray]]:
    """The variables of each Dense of ``plan``, found in a Keras 3 weights file."""
    groups = _vars_groups_keras3(f, source)
    by_attr = {}
    for gname, vg in groups.items():
        attr = vg.attrs.get("name")
        if attr is not None:
            by_attr[attr.decode() if isinstance(attr, bytes) else str(attr)] = gname
    # Fallback for files without the 'name' attribute: Keras' own naming of the groups.
    counters: dict[str, int] = {}
    by_position = {}
    for layer in layers:
        cls = layer.get("class_name", "")
        lname = (layer.get("config") or {}).get("name") or layer.get("name")
        base = _to_snake_case(cls)
        if base in counters:
            counters[base] += 1
            by_position[lname] = f"{base}_{counters[base]}"
        else:
            counters[base] = 0
            by_position[lname] = base
    result = []
    for entry in plan:
        gname = by_attr.get(entry["name"]) if by_attr else by_position.get(entry["name"])
        if gname is None or gname not in groups:
            raise FileFormatError(
                f"{source}: no weights for Dense layer {entry['name']!r} in the weights file."
            )
        result.append(_read_vars(groups[gname]))
    return result


def _legacy_weights(group: h5py.Group, names: Iterable[str], source: str) -> list[list[np.ndarray]]:
    """Kernel and bias of the named layers from a Keras 2 weights group (``weight_names``)."""
    result = []
    for lname in names:
        if lname not in group:
            raise FileFormatError(f"{source}: no weights for layer {lname!r} under {group.name!r}.")
        g = group[lname]
        wnames = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
        if not wnames:
            raise FileFormatError(f"{source}: layer {lname!r} has no weights in the file.")
        arrays = {}
        for wname in wnames:
            if wname not in g:
                raise FileFormatError(f"{source}: weight {wname!r} of layer {lname!r} is missing.")
            arrays[wname] = np.asarray(g[wname])
        kernel = [a for n, a in arrays.items() if n.split("/")[-1].split(":")[0] == "kernel"]
        bias = [a for n, a in arrays.items() if n.split("/")[-1].split(":")[0] == "bias"]
        if len(kernel) == 1 and len(bias) <= 1 and len(arrays) == len(kernel) + len(bias):
            result.append(kernel + bias)
        else:
            result.append(list(arrays.values()))
    return result


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
def _load_keras_archive(path: str) -> Network:
    source = repr(path)
    try:
        with zipfile.ZipFile(path) as zf:
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
            config_text = zf.read("config.json")
            weights_bytes = zf.read("model.weights.h5")
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise FileFormatError(
            f"{source}: not a valid .keras archive (a zip file with config.json and "
            f"model.weights.h5): {exc}."
        ) from None
    try:
        config = json.loads(config_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{source}: config.json is not valid JSON: {exc}.") from None
    try:
        name, layers, input_shape = _ordered_layers(config, source)
        builder = _build_plan(layers, input_shape, source)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, NeurosimError):
            raise
        raise FileFormatError(f"{source}: malformed config.json: {exc!r}.") from None
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as f:
            variables = _keras3_weights(f, builder.specs, layers, source)
    except OSError as exc:
        raise FileFormatError(f"{source}: model.weights.h5 is not a readable HDF5 file: {exc}.") from None
    return _finish(builder, variables, {"source_format": "keras3", "name": name})


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
        arrays = _read_vars(groups[gname])
        entry["use_bias"] = len(arrays) == 2
        variables.append(arrays)
    name = f["vars"].attrs.get("name") if "vars" in f else None
    metadata = {"source_format": "keras3"}
    if name is not None:
        metadata["name"] = name.decode() if isinstance(name, bytes) else str(name)
    return _finish(builder, variables, metadata)


def _load_legacy_h5(path: str, f: h5py.File) -> Network:
    source = repr(path)
    text = f.attrs["model_config"]
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise FileFormatError(f"{source}: the model_config attribute is not valid JSON: {exc}.") from None
    name, layers, input_shape = _ordered_layers(config, source)
    builder = _build_plan(layers, input_shape, source)
    if "model_weights" not in f:
        raise FileFormatError(f"{source}: the file has no 'model_weights' group (no weights saved).")
    variables = _legacy_weights(f["model_weights"], [entry["name"] for entry in builder.specs], source)
    return _finish(builder, variables, {"source_format": "keras2-h5", "name": name})


def _load_legacy_weights(path: str, f: h5py.File, activations) -> Network:
    source = repr(path)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["layer_names"]]
    weighted = [n for n in names if len(f[n].attrs.get("weight_names", [])) > 0]
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
    if zipfile.is_zipfile(path):
        return _load_keras_archive(path)
    if path.lower().endswith(".keras"):
        raise FileFormatError(
            f"{path!r} is not a valid .keras archive (a zip file with config.json and "
            "model.weights.h5); it may be truncated or corrupt."
        )
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
            raise FileFormatError(f"{path!r}: malformed Keras file: {exc!r}.") from None
    raise FileFormatError(
        f"{path!r} is an HDF5 file but neither a neurosim network nor a Keras model or weights "
        "file (no 'model_config' attribute, no 'layers' group)."
    )
