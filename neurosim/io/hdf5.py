"""neurosim's own HDF5 network format.

Layout (``format_version`` 2)::

    /                      attrs: neurosim_format = "network", format_version = 2,
                                  metadata = JSON text (free-form: name, training, ...),
                                  input_shape = JSON list ((n,) or (C, H, W)),
                                  layout = "NCHW" | "NHWC" | "" (vector inputs)
    /layers/0, /layers/1   one group per weighted layer, in order; attrs: kind = "dense",
                           "conv2d" (or another registered kind), activation = "relu" | ...,
                           alpha, beta (the activation's parameters), layer_attrs (JSON, for
                           kinds with settings besides their arrays: a conv's in_shape,
                           stride, padding, dilation, groups), pre (JSON list of the pooling
                           and flattening steps before the layer: {"kind": ..., settings})
        W, b               a Dense layer's (n_out, n_in) weights and (n_out,) biases; a Conv2d
        K, b               writes its kernel (C_out, C_in/groups, kh, kw) and channel biases

Version 1 files (dense layers only, no input_shape / layout / pre / beta) still read.

Writes are atomic: a temporary file in the same folder, then a rename.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from neurosim.activations import make_activation
from neurosim.errors import FileFormatError, NeurosimError, UnsupportedLayerError
from neurosim.io.atomic import atomic_path
from neurosim.io.builder import NetworkBuilder, structure_of
from neurosim.layers import LAYERS, layer_type
from neurosim.network import Network

#: Version of the network file layout written by :func:`save_network_h5`.
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)


def is_neurosim_h5(path) -> bool:
    """True if ``path`` is an HDF5 file written by neurosim (any kind)."""
    try:
        with h5py.File(path, "r") as f:
            return "neurosim_format" in f.attrs
    except OSError:
        return False


def check_header(f: h5py.File, source: str, kind: str, supported_versions) -> None:
    """Raise FileFormatError unless ``f`` is a neurosim ``kind`` file of a supported version.

    Every neurosim HDF5 file (network, mapping, simulation, experiment) carries the root
    attributes ``neurosim_format`` (its kind) and ``format_version``.
    """
    found = f.attrs.get("neurosim_format")
    if found != kind:
        holds = f"it holds a neurosim {found!r} file" if found is not None else "no neurosim_format"
        raise FileFormatError(f"{source}: not a neurosim {kind} file ({holds}).")
    version = int(f.attrs.get("format_version", -1))
    if version not in tuple(supported_versions):
        raise FileFormatError(
            f"{source}: {kind} format_version {version} is not supported by this neurosim "
            f"(supported: {tuple(supported_versions)}); upgrade neurosim."
        )


def write_network_group(group: h5py.Group, network: Network) -> None:
    """Write ``network`` into an open HDF5 group (also used inside mapping and result files)."""
    group.attrs["metadata"] = json.dumps(network.metadata, sort_keys=True, default=str)
    structure = structure_of(network)
    group.attrs["input_shape"] = json.dumps(structure["input_shape"])
    group.attrs["layout"] = structure["layout"] or ""
    layers = group.create_group("layers")
    for index, layer in enumerate(network.layers):
        g = layers.create_group(str(index))
        g.attrs["kind"] = layer.kind
        g.attrs["activation"] = layer.activation.name
        g.attrs["alpha"] = float(layer.activation.alpha)
        g.attrs["beta"] = float(layer.activation.beta)
        if structure["pre"][index]:
            g.attrs["pre"] = json.dumps(structure["pre"][index], sort_keys=True)
        if layer.attrs():
            g.attrs["layer_attrs"] = json.dumps(layer.attrs(), sort_keys=True)
        for name, array in layer.arrays().items():
            g.create_dataset(name, data=array)


def read_network_group(group: h5py.Group, source: str) -> Network:
    """Read a network written by :func:`write_network_group`; ``source`` names it in errors."""
    if "layers" not in group:
        raise FileFormatError(f"{source}: no 'layers' group; this is not a neurosim network.")
    layers_group = group["layers"]
    try:
        order = sorted(layers_group, key=int)
    except ValueError:
        raise FileFormatError(
            f"{source}: layer groups must be named 0, 1, 2, ...; got {sorted(layers_group)}."
        ) from None
    if order != [str(i) for i in range(len(order))]:
        raise FileFormatError(f"{source}: layer groups must be numbered 0..L-1 without gaps; got {order}.")
    builder = NetworkBuilder(source, unit="weighted")
    for name in order:
        g = layers_group[name]
        where = f"{source}: layer {name}"
        kind = g.attrs.get("kind", "dense")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        try:
            cls = layer_type(kind)
        except UnsupportedLayerError:
            raise UnsupportedLayerError(
                f"{where} is of kind {kind!r}; supported layer kinds: {', '.join(sorted(LAYERS))}."
            ) from None
        if "activation" not in g.attrs:
            raise FileFormatError(f"{where} has no 'activation' attribute.")
        try:
            beta = float(g.attrs["beta"]) if "beta" in g.attrs else None
            activation = make_activation(str(g.attrs["activation"]),
                                         float(g.attrs.get("alpha", 0.01)), beta)
        except UnsupportedLayerError as exc:
            raise UnsupportedLayerError(f"{where}: {exc}") from None
        try:
            pre = json.loads(g.attrs["pre"]) if "pre" in g.attrs else []
            attrs = json.loads(g.attrs.get("layer_attrs", "{}"))
        except ValueError as exc:
            raise FileFormatError(f"{where}: its 'pre' or 'layer_attrs' is not JSON text "
                                  f"({exc}).") from None
        builder.transform_specs(pre, where)
        try:
            arrays = {key: np.asarray(g[key]) for key in g}
            layer = cls.from_arrays(arrays, attrs, activation)
        except KeyError as exc:
            raise FileFormatError(f"{where} has no dataset {exc.args[0]!r}.") from None
        except NeurosimError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        builder.add(layer, where)
    metadata = json.loads(group.attrs.get("metadata", "{}"))
    try:
        input_shape = (tuple(json.loads(group.attrs["input_shape"]))
                       if "input_shape" in group.attrs else None)
    except (ValueError, TypeError) as exc:
        raise FileFormatError(f"{source}: 'input_shape' is not a JSON list ({exc}).") from None
    layout = str(group.attrs.get("layout", "")) or None
    return builder.build(metadata, input_shape=input_shape, layout=layout)


def save_network_h5(network: Network, path: "str | os.PathLike") -> None:
    """Save ``network`` in neurosim's HDF5 format, atomically."""
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["neurosim_format"] = "network"
            f.attrs["format_version"] = FORMAT_VERSION
            write_network_group(f, network)


def load_network_h5(path: "str | os.PathLike") -> Network:
    """Load a network saved by :func:`save_network_h5`."""
    with h5py.File(path, "r") as f:
        check_header(f, os.fspath(path), "network", SUPPORTED_VERSIONS)
        return read_network_group(f, os.fspath(path))
