"""Networks as ``.npz`` archives: arrays ``W0, b0, W1, b1, ...`` and ``activations``.

``W_l`` has shape ``(n_l, n_{l-1})`` (rows are neurons); ``activations`` holds one name per
layer, the last ``identity``. An optional ``alphas`` array gives leaky_relu slopes.
"""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from neurosim.errors import FileFormatError, NeurosimError
from neurosim.io._atomic import atomic_path
from neurosim.network import Network, make_activation


def load_network_npz(path: "str | os.PathLike") -> Network:
    source = os.fspath(path)
    try:
        archive = np.load(source, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FileFormatError(f"{source}: not a readable .npz archive ({exc}).") from None
    with archive:
        keys = set(archive.files)
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
        try:
            acts = [make_activation(n, a) for n, a in zip(names, alphas)]
            return Network.from_arrays(
                [archive[f"W{l}"] for l in range(n_layers)],
                [archive[f"b{l}"] for l in range(n_layers)],
                acts,
            )
        except NeurosimError as exc:
            raise type(exc)(f"{source}: {exc}") from None


def save_network_npz(network: Network, path: "str | os.PathLike") -> None:
    arrays = {}
    for l, layer in enumerate(network.layers):
        arrays[f"W{l}"] = layer.W
        arrays[f"b{l}"] = layer.b
    arrays["activations"] = np.array([a.name for a in network.activations])
    arrays["alphas"] = np.array([a.alpha for a in network.activations])
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
