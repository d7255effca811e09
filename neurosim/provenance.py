"""Hashes that tie a result to the network and data it was computed on.

A result file and a certificate record both; ``--resume`` refuses a checkpoint whose hashes
differ from the run's.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["data_sha256", "network_sha256"]


def data_sha256(X, y=None) -> str:
    """SHA-256 of the inputs' bytes (and the labels', when given)."""
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    if y is not None:
        h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def network_sha256(network) -> str:
    """SHA-256 of every layer's parameters (as float64) and activation, in order.

    Dense layers hash ``W`` then ``b`` (the same digest as neurosim 0.1); other layer kinds
    hash their kind name and settings first, then their arrays in
    :meth:`~neurosim.layers.Layer.arrays` order; the pooling and flattening before a layer,
    and an image input's shape and layout, are hashed too.
    """
    import json

    h = hashlib.sha256()
    if len(network.input_shape) != 1:
        h.update(json.dumps([list(network.input_shape), network.layout]).encode())
    for layer, pre in zip(network.layers, network.pre):
        if pre:
            h.update(json.dumps([[t.kind, t.params()] for t in pre], sort_keys=True).encode())
        if layer.kind != "dense":
            h.update(layer.kind.encode())
            h.update(json.dumps(layer.attrs(), sort_keys=True).encode())
        for array in layer.arrays().values():
            h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        h.update(str(layer.activation).encode())
    return h.hexdigest()
