"""Networks as ``.npz`` archives.

A network of Dense layers is stored as arrays ``W0, b0, W1, b1, ...`` and ``activations``:
``W_l`` has shape ``(n_l, n_{l-1})`` (rows are neurons); ``activations`` holds one name per
layer, the last ``identity``. An optional ``alphas`` array gives leaky_relu slopes.

Networks with other registered layer kinds add a ``kinds`` array (one kind per layer), store
layer ``l``'s arrays as ``L<l>.<name>`` and its settings as JSON text in ``layer_attrs``.
Networks with pooling or flattening steps, or image inputs, add ``structure``: JSON text with
the input shape, the layout and the transforms before each layer. ``betas`` holds the second
activation parameter (hardtanh's upper bound, hardsigmoid's offset).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from neurosim.activations import make_activation
from neurosim.errors import FileFormatError, NeurosimError, UnsupportedLayerError
from neurosim.io import guard
from neurosim.io.atomic import atomic_path
from neurosim.io.builder import NetworkBuilder, structure_of
from neurosim.layers import Dense, layer_type
from neurosim.network import Network

__all__ = ["load_network_npz", "save_network_npz"]

#: Arrays of a network archive that hold numbers (the others hold text).
_NUMBERS = re.compile(r"[Wb]\d+|L\d+\..+|alphas|betas")


def _texts(arrays: dict, name: str, source: str) -> list:
    """Array ``name`` as a list of strings (an array of text, one entry or several)."""
    array = np.atleast_1d(arrays[name])
    if array.dtype.kind not in "US":
        raise FileFormatError(f"{source}: '{name}' must be an array of text; got "
                              f"{array.dtype} data.")
    if array.ndim != 1:
        raise FileFormatError(f"{source}: '{name}' must be a 1-D array of text; got shape "
                              f"{array.shape}.")
    if array.dtype.kind == "S":
        try:
            return [a.decode("utf-8") for a in array.tolist()]
        except UnicodeDecodeError:
            raise FileFormatError(f"{source}: '{name}' is not UTF-8 text.") from None
    return [str(a) for a in array]


def _parameters(arrays: dict, name: str, n_layers: int, source: str) -> list:
    if name not in arrays:
        return [None] * n_layers
    values = np.atleast_1d(arrays[name])
    if values.ndim != 1 or len(values) != n_layers:
        raise FileFormatError(f"{source}: 'alphas' / 'betas' must have one value per layer "
                              f"({n_layers}); '{name}' has shape {values.shape}.")
    return [float(v) for v in values]


def _activations(arrays: dict, n_layers: int, source: str) -> list:
    if "activations" not in arrays:
        raise FileFormatError(
            f"{source}: missing the 'activations' array (one name per layer, the last 'identity')."
        )
    names = _texts(arrays, "activations", source)
    if len(names) != n_layers:
        raise FileFormatError(
            f"{source}: 'activations' has {len(names)} names but there are {n_layers} layers."
        )
    alphas = _parameters(arrays, "alphas", n_layers, source)
    betas = _parameters(arrays, "betas", n_layers, source)
    try:
        return [make_activation(n, a, b) for n, a, b in zip(names, alphas, betas)]
    except NeurosimError as exc:
        raise type(exc)(f"{source}: {exc}") from None


def _json(arrays: dict, name: str, source: str, expect):
    try:
        return guard.json_text(arrays[name], source, f"'{name}'", expect)
    except RecursionError:
        raise FileFormatError(f"{source}: '{name}' nests too deeply to be read.") from None


def _structure(arrays: dict, source: str) -> tuple:
    """The transforms before each layer (or None) and the input shape and layout."""
    if "structure" not in arrays:
        return None, {"input_shape": None, "layout": None}
    if np.asarray(arrays["structure"]).dtype.kind not in "US":
        raise FileFormatError(f"{source}: 'structure' must be JSON text; got "
                              f"{np.asarray(arrays['structure']).dtype} data.")
    structure = _json(arrays, "structure", source, dict)
    pre = structure.get("pre")
    if pre is not None and not isinstance(pre, list):
        raise FileFormatError(f"{source}: 'structure' must list the transforms before each "
                              f"layer ('pre', a JSON list); got {type(pre).__name__}.")
    shape = structure.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and shape and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise FileFormatError(f"{source}: the input_shape of 'structure' must be a JSON list of "
                              f"positive integers; got {shape!r:.80}.")
    layout = structure.get("layout")
    if layout is not None and not isinstance(layout, str):
        raise FileFormatError(f"{source}: the layout of 'structure' must be text or null; got "
                              f"{type(layout).__name__}.")
    return pre, {"input_shape": tuple(shape) if shape else None, "layout": layout or None}


def load_network_npz(path: "str | os.PathLike") -> Network:
    """Load a network saved by :func:`save_network_npz` (or written by hand as arrays
    ``W0, b0, ...`` and ``activations``).

    The archive is read safely (:func:`neurosim.io.guard.read_npz`): no pickles, every array's
    declared size checked before it is read, CRCs checked; weights must be real numbers.
    """
    source = os.fspath(path)
    with guard.reading(source, "neurosim .npz network archive"):
        arrays = guard.read_npz(source, source)
        for name, array in arrays.items():
            if _NUMBERS.fullmatch(name):
                guard.numeric(array, source, f"array {name!r}", "biuf")
            elif array.dtype.kind == "U":
                _check_text(array, source, name)
        return _network(arrays, source)


def _check_text(array: np.ndarray, source: str, name: str) -> None:
    """Refuse a text array holding code points that are not characters: NumPy makes Python
    strings of whatever 32-bit values a damaged file holds (beyond U+10FFFF, or surrogates),
    and such a string cannot even be printed in an error message."""
    if array.size == 0 or array.dtype.itemsize == 0:
        return
    codes = np.ascontiguousarray(array).view(array.dtype.byteorder.replace("|", "=") + "u4")
    bad = (codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))
    if bad.any():
        raise FileFormatError(f"{source}: array {name!r} is not valid text (it holds the code "
                              f"point {int(codes[bad].reshape(-1)[0]):#x}).")


def _network(arrays: dict, source: str) -> Network:
    keys = set(arrays)
    builder = NetworkBuilder(source, unit="weighted")
    pre, shape = _structure(arrays, source)
    if "kinds" in keys:
        kinds = _texts(arrays, "kinds", source)
        acts = _activations(arrays, len(kinds), source)
        if "layer_attrs" in keys:
            texts = np.atleast_1d(arrays["layer_attrs"])
            if texts.dtype.kind not in "US" or texts.ndim != 1:
                raise FileFormatError(f"{source}: 'layer_attrs' must be a 1-D array of JSON "
                                      f"texts; got {texts.dtype} data of shape {texts.shape}.")
            attrs = [_json({"layer_attrs": t}, "layer_attrs", source, dict) for t in texts]
        else:
            attrs = [{}] * len(kinds)
        if len(attrs) != len(kinds):
            raise FileFormatError(
                f"{source}: 'layer_attrs' has {len(attrs)} entries but there are "
                f"{len(kinds)} layers.")
        if pre is not None and len(pre) != len(kinds):
            raise FileFormatError(f"{source}: 'structure' lists transforms for {len(pre)} "
                                  f"layers but there are {len(kinds)}.")
        for l, (kind, act) in enumerate(zip(kinds, acts)):
            where = f"{source}: layer {l}"
            if pre:
                builder.transform_specs(pre[l], where)
            try:
                cls = layer_type(kind)
            except UnsupportedLayerError as exc:
                raise UnsupportedLayerError(f"{where}: {exc}") from None
            prefix = f"L{l}."
            layer_arrays = {k[len(prefix):]: arrays[k] for k in sorted(keys)
                            if k.startswith(prefix)}
            try:
                builder.add(cls.from_arrays(layer_arrays, attrs[l], act), where)
            except KeyError as exc:
                raise FileFormatError(f"{where} has no array {prefix}{exc.args[0]}.") from None
            except NeurosimError as exc:
                raise type(exc)(f"{where}: {exc}") from None
        return builder.build({}, **shape)
    n_layers = 0
    while f"W{n_layers}" in keys:
        n_layers += 1
    if n_layers == 0:
        raise FileFormatError(
            f"{source}: expected arrays W0, b0, W1, b1, ... and 'activations'; "
            f"found {sorted(keys)[:20]}."
        )
    unexpected = sorted(
        k for k in keys
        if re.fullmatch(r"[Wb]\d+", k) and int(k[1:]) >= n_layers
    )
    if unexpected:
        raise FileFormatError(
            f"{source}: arrays {unexpected[:10]} do not follow W0..W{n_layers - 1} without a gap."
        )
    missing = [f"b{l}" for l in range(n_layers) if f"b{l}" not in keys]
    if missing:
        raise FileFormatError(f"{source}: missing bias arrays {missing}.")
    acts = _activations(arrays, n_layers, source)
    if pre is not None and len(pre) != n_layers:
        raise FileFormatError(f"{source}: 'structure' lists transforms for {len(pre)} "
                              f"layers but there are {n_layers}.")
    for l, act in enumerate(acts):
        if pre:
            builder.transform_specs(pre[l], f"{source}: layer {l}")
        builder.add(Dense(arrays[f"W{l}"], arrays[f"b{l}"], act), f"{source}: layer {l}")
    return builder.build({}, **shape)


def save_network_npz(network: Network, path: "str | os.PathLike") -> None:
    arrays = {}
    if all(kind == "dense" for kind in network.layer_kinds):
        for l, layer in enumerate(network.layers):
            arrays[f"W{l}"] = layer.W
            arrays[f"b{l}"] = layer.b
    else:
        arrays["kinds"] = np.array(network.layer_kinds)
        arrays["layer_attrs"] = np.array([json.dumps(layer.attrs(), sort_keys=True)
                                          for layer in network.layers])
        for l, layer in enumerate(network.layers):
            for name, array in layer.arrays().items():
                arrays[f"L{l}.{name}"] = array
    arrays["activations"] = np.array([a.name for a in network.activations])
    arrays["alphas"] = np.array([a.alpha for a in network.activations])
    arrays["betas"] = np.array([a.beta for a in network.activations])
    if network.has_transforms or len(network.input_shape) != 1:
        arrays["structure"] = np.array(json.dumps(structure_of(network), sort_keys=True))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
