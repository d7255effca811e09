"""Faults as the records of a :class:`~neurosim.sampler.FaultBatch` say them, applied to
arrays: what the NumPy reference, the spiking path, the Lava backend and the integer model
share (record order is application order)."""

from __future__ import annotations

import numpy as np

from neurosim.kernels.codes import REC_CRASH, REC_TILE, REC_WEIGHT

__all__ = ["apply_weight_records", "crash_records", "has_weight_records", "fault_layer_span"]


def apply_weight_records(W: np.ndarray, batch, layer: int, draw: int) -> np.ndarray:
    """``W`` (not modified) with draw ``draw``'s weight and tile records of ``layer`` applied,
    in record order; ``W`` itself when there are none."""
    sl = batch.records(layer, draw)
    kinds = batch.kind[sl]
    if not np.any((kinds == REC_WEIGHT) | (kinds == REC_TILE)):
        return W
    W = np.array(W, copy=True)
    for f in range(sl.start, sl.stop):
        if batch.kind[f] == REC_WEIGHT:
            W[batch.out_start[f], batch.in_start[f]] = batch.value[f]
        elif batch.kind[f] == REC_TILE:
            W[batch.out_start[f]:batch.out_stop[f], batch.in_start[f]:batch.in_stop[f]] = 0
    return W


def crash_records(batch, layer: int, draw: int) -> list[tuple[int, int, float]]:
    """``(neuron, crash_mode, value)`` of draw ``draw``'s crashes on ``layer``, in record order."""
    sl = batch.records(layer, draw)
    return [(int(batch.out_start[f]), int(batch.crash_mode[f]), float(batch.value[f]))
            for f in range(sl.start, sl.stop) if batch.kind[f] == REC_CRASH]


def has_weight_records(batch, layer: int, draw: int) -> bool:
    """Whether draw ``draw`` has weight or tile records on ``layer``."""
    kinds = batch.kind[batch.records(layer, draw)]
    return bool(np.any((kinds == REC_WEIGHT) | (kinds == REC_TILE)))


def fault_layer_span(batch, n_layers: int, field_layers=()) -> tuple[np.ndarray, np.ndarray]:
    """First and last layer with a fault, per draw (n_layers + 1 and -1 for a fault-free draw);
    a layer in ``field_layers`` counts as faulty in every draw."""
    has = np.stack([np.diff(batch.ptr[l]) > 0 for l in range(n_layers + 1)])
    for l in field_layers:
        has[l] = True
    any_fault = has.any(axis=0)
    first = np.where(any_fault, has.argmax(axis=0), n_layers + 1)
    last = np.where(any_fault, n_layers - has[::-1].argmax(axis=0), -1)
    return first, last
