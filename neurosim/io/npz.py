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
import zipfile

import numpy as np

from neurosim.activations import make_activation
from neurosim.errors import FileFormatError, NeurosimError, UnsupportedLayerError
from neurosim.io.atomic import atomic_path
from neurosim.io.builder import NetworkBuilder, structure_of
from neurosim.layers import Dense, layer_type
from neurosim.network import Network

__all__ = ["load_network_npz", "save_network_npz"]


def _activations(archive, keys, n_layers: int, source: str) -> list:
    if "activations" not in keys:
        raise FileFormatError(
            f"{source}: missing the 'activations' array (one name per layer, the last 'identity')."
        )
    names = [str(a) for a in np.atleast_1d(archive["activations"])]
    if len(names) != n_layers:
        raise FileFormatError(
            f"{source}: 'activations' has {len(names)} names but there are {n_layers} layers."
        )
    alphas = np.atleast_1d(archive["alphas"]) if "alphas" in keys else [None] * n_layers
    betas = np.atleast_1d(archive["betas"]) if "betas" in keys else [None] * n_layers
    if len(alphas) != n_layers or len(betas) != n_layers:
        raise FileFormatError(f"{source}: 'alphas' / 'betas' must have one value per layer "
                              f"({n_layers}).")
    try:
        return [make_activation(n, a, b) for n, a, b in zip(names, alphas, betas)]
    except NeurosimError as exc:
        raise type(exc)(f"{source}: {exc}") from None


def load_network_npz(path: "str | os.PathLike") -> Network:
    source = os.fspath(path)
    try:
        archive = np.load(source, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FileFormatError(f"{source}: not a readable .npz archive ({exc}).") from None
    with archive:
        keys = set(archive.files)
        builder = NetworkBuilder(source, unit="weighted")
        structure = {}
        if "structure" in keys:
            try:
                structure = json.loads(str(archive["structure"]))
                assert isinstance(structure, dict)
            except (ValueError, AssertionError):
                raise FileFormatError(f"{source}: 'structure' is not a JSON object.") from None
        pre = structure.get("pre")
        shape = {"input_shape": tuple(structure["input_shape"]) if structure.get("input_shape")
                 else None, "layout": structure.get("layout")}
        if "kinds" in keys:
            kinds = [str(k) for k in np.atleast_1d(archive["kinds"])]
            acts = _activations(archive, keys, len(kinds), source)
            try:
                attrs = ([json.loads(str(t)) for t in np.atleast_1d(archive["layer_attrs"])]
                         if "layer_attrs" in keys else [{}] * len(kinds))
            except ValueError as exc:
                raise FileFormatError(f"{source}: 'layer_attrs' is not JSON text ({exc}).") from None
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
                arrays = {k[len(prefix):]: archive[k] for k in sorted(keys) if k.startswith(prefix)}
                try:
                    builder.add(cls.from_arrays(arrays, attrs[l], act), where)
                except KeyError as exc:
                    raise FileFormatError(f"{where} has no array {prefix}{exc.args[0]}.") from None
            return builder.build({}, **shape)
        n_layers = 0
        while f"W{n_layers}" in keys:
            n_layers += 1
        if n_layers == 0:
            raise FileFormatError(
                f"{source}: expected arrays W0, b0, W1, b1, ... and 'activations'; "
                f"found {sorted(keys)}."
            )
        unexpected = sorted(
            k for k in keys
            if re.fullmatch(r"[Wb]\d+", k) and int(k[1:]) >= n_layers
        )
        if unexpected:
            raise FileFormatError(
                f"{source}: arrays {unexpected} do not follow W0..W{n_layers - 1} without a gap."
            )
        missing = [f"b{l}" for l in range(n_layers) if f"b{l}" not in keys]
        if missing:
            raise FileFormatError(f"{source}: missing bias arrays {missing}.")
        acts = _activations(archive, keys, n_layers, source)
        if pre is not None and len(pre) != n_layers:
            raise FileFormatError(f"{source}: 'structure' lists transforms for {len(pre)} "
                                  f"layers but there are {n_layers}.")
        for l, act in enumerate(acts):
            if pre:
                builder.transform_specs(pre[l], f"{source}: layer {l}")
            builder.add(Dense(archive[f"W{l}"], archive[f"b{l}"], act), f"{source}: layer {l}")
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
