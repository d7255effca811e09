"""Spiking networks under faults: the clean cache and the faulty rows that the numpy and numba
backends hand to the estimators for a plan built from a
:class:`~neurosim.spiking.snn.SpikingNetwork` (``plan.spiking``).

The clean run keeps every layer's output over time (``(steps, n_inputs, n_l)``; ``steps`` is 1
while the signal is still constant in time: the input under constant-current encoding, and
graded layers fed by it). A faulty row starts from its input's clean outputs of the layer
before its draw's first faulty layer and runs the layers from there, layer by layer over all
``T`` steps (:mod:`neurosim.spiking.fast`):

* every row's currents go through the layer's linear map at once; the rows of a draw with weight
  faults (stuck synapses, bit flips, failed tiles, transient stuck fields) in this layer are
  computed again with that draw's matrix (its records written in, record order), as the NumPy
  backend does;
* a neuron crash acts on the neuron's output at every step: ``silent`` (a dead neuron: it never
  spikes, a graded one outputs 0), ``stuck`` at ``v`` (it emits ``v`` at every step: ``v = 1``
  is a saturated neuron that spikes at every step), ``paper`` (its input current is its bias
  alone: it keeps integrating ``b_i``);
* the neuron loop is the Numba kernel (``engine="numba"``) or the NumPy step loop
  (``engine="numpy"``): the same operations, so both backends give the same spikes.

Fault-free rows never get here (the estimators give them the clean output).
"""

from __future__ import annotations

import numpy as np

from neurosim.backends.base import CleanCache, transient_fields
from neurosim.backends.records import (apply_weight_records, crash_records, fault_layer_span,
                                       has_weight_records)
from neurosim.fields import stuck_matrix
from neurosim.kernels.codes import CRASH_PAPER, CRASH_STUCK
from neurosim.kernels.spiking import neuron_scan
from neurosim.layers.transforms import MaxPool2d

__all__ = ["clean_cache", "propagate"]


def _scan(I, model, dt, dtype, engine):
    """Spikes of a layer's neurons for currents ``I (T, n, m)``."""
    p = {k: v.astype(dtype) for k, v in model.params(I.shape[2], dt).items()}
    subtract = model.reset == "subtract"
    if engine == "numba":
        out = np.empty(I.shape, dtype=dtype)
        neuron_scan(np.ascontiguousarray(I), p["syn_keep"], p["syn_gain"], p["keep"], p["leak"],
                    p["gain"], p["threshold"], p["v_reset"], subtract, out)
        return out
    i = np.zeros(I.shape[1:], dtype=dtype)
    v = np.broadcast_to(p["v_reset"], I.shape[1:]).astype(dtype)
    out = np.empty(I.shape, dtype=dtype)
    for t in range(I.shape[0]):
        i = p["syn_keep"] * i + p["syn_gain"] * I[t]
        v = p["keep"] * v + p["leak"] + p["gain"] * i
        fired = v >= p["threshold"]
        v = np.where(fired, v - p["threshold"], v) if subtract else np.where(fired, p["v_reset"], v)
        out[t] = fired
    return out


def _transforms(plan, l, s, spiking):
    steps, n = s.shape[:2]
    flat = s.reshape(steps * n, -1)
    for tr in plan.pre[l - 1]:
        if spiking and isinstance(tr, MaxPool2d):
            cum = np.cumsum(flat.reshape(steps, n, -1), axis=0, dtype=flat.dtype)
            src = tr._argmax_inputs(cum.reshape(steps * n, -1))
            flat = np.take_along_axis(flat, src, axis=1)
        else:
            flat = tr.apply(flat)
    return flat.reshape(steps, n, -1)


def _is_spiking(snn, l: int) -> bool:
    """Whether layer ``l``'s output (0: the input) is spikes."""
    return snn.encoding == "poisson" if l == 0 else snn.neurons[l - 1] is not None


def _layers(plan, s, first, inputs, groups=None, batch=None, fields=(), engine="numba",
            keep=False):
    """Run layers ``first..L`` from ``s`` (layer ``first - 1``'s outputs, ``(steps, n, w)``).

    ``groups``: ``[(draw, rows)]`` of the rows' fault draws in ``batch``. Returns the readout
    and, with ``keep``, every layer's outputs from ``first - 1`` on."""
    snn = plan.spiking
    T, L, dtype = snn.T, plan.n_layers, plan.dtype
    kept = [s] if keep else None
    n = s.shape[1]
    readout = None
    for l in range(first, L + 1):
        layer = plan.network.layers[l - 1]
        u = _transforms(plan, l, s, _is_spiking(snn, l - 1))
        steps = u.shape[0]
        if isinstance(plan.W, list):  # a chip's weights (Plan.with_weights): its matrices
            I = (u @ plan.W[l - 1].T + plan.b[l - 1]).astype(dtype)
        else:  # the network's own (LayerMatrices): its layers' linear maps
            I = np.asarray(layer.linear(u.reshape((steps * n,) + u.shape[2:])), dtype=dtype)
            I = I.reshape(steps, n, -1)
        crashes = []
        if groups is not None:
            W = None
            for d, rows in groups:
                W_d = None
                if has_weight_records(batch, l, d):
                    W = plan.W[l - 1] if W is None else W
                    W_d = apply_weight_records(W, batch, l, d)
                for f in fields:
                    if f.layer == l:
                        W = plan.W[l - 1] if W is None else W
                        W_d = stuck_matrix(W if W_d is None else W_d, f, int(batch.keys[d]))
                if W_d is not None:
                    I[:, rows] = (u[:, rows] @ W_d.T + plan.b[l - 1]).astype(dtype)
                for i, mode, value in crash_records(batch, l, d):
                    crashes.append((rows, i, mode, value))
                    if mode == CRASH_PAPER:
                        I[:, rows, i] = plan.b[l - 1][i]
        model = snn.neurons[l - 1]
        if model is None and l == L and snn.readout == "membrane":
            out = _override(I, crashes)
            readout = np.zeros((n, out.shape[2]), dtype=dtype)
            for t in range(T):
                readout += out[0 if out.shape[0] == 1 else t]
            s = out
        elif model is None:
            s = _override(layer.activation(I).astype(dtype), crashes)
        else:
            s = _scan(np.broadcast_to(I, (T,) + I.shape[1:]), model, snn.dt, dtype, engine)
            s = _override(s, crashes)
            if l == L:
                readout = np.zeros((n, s.shape[2]), dtype=dtype)
                for t in range(T):
                    readout += s[t]
        if keep:
            kept.append(s)
    readout /= dtype.type(T)
    return readout, kept


def _override(s, crashes):
    """Crashed neurons' outputs at every step (see the module docstring; a ``paper`` crash
    acted on the current already)."""
    if not any(mode != CRASH_PAPER for _, _, mode, _ in crashes):
        return s
    s = np.array(s, copy=True)
    for rows, i, mode, value in crashes:
        if mode == CRASH_STUCK:
            s[:, rows, i] = value
        elif mode != CRASH_PAPER:
            s[:, rows, i] = 0
    return s


def clean_cache(plan, X, engine: str):
    """The clean readout and every layer's outputs over time."""
    snn = plan.spiking
    X = np.ascontiguousarray(X, dtype=plan.dtype)
    n = X.shape[0]
    s0 = X[None] if snn.encoding == "current" else snn.input_spikes(X, np.arange(n))
    readout, kept = _layers(plan, s0, 1, np.arange(n), engine=engine, keep=True)
    return CleanCache(X=X, output=readout, extra={"spikes": kept})


def propagate(plan, cache, batch, row_draw, row_input, engine: str):
    """Faulty readouts ``(n_rows, n_L)`` of rows ``(row_draw[r], row_input[r])``."""
    row_draw = np.asarray(row_draw, dtype=np.int64)
    row_input = np.asarray(row_input, dtype=np.int64)
    L = plan.n_layers
    fields = transient_fields(plan, batch)
    first_draw, _ = fault_layer_span(batch, L, [f.layer for f in fields])
    out = np.array(cache.output[row_input], copy=True)
    trains = cache.extra["spikes"]
    first_rows = first_draw[row_draw]
    for f in np.unique(first_rows):
        if f > L:
            continue
        sel = np.flatnonzero(first_rows == f)
        start = max(int(f), 1)
        s = np.array(trains[start - 1][:, row_input[sel]], copy=True)
        draws, inverse = np.unique(row_draw[sel], return_inverse=True)
        groups = [(int(d), np.flatnonzero(inverse == k)) for k, d in enumerate(draws)]
        if f == 0:  # crashed inputs, at every step (an input has no bias: paper is silent)
            s = _override(s, [(rows, i, CRASH_STUCK if mode == CRASH_STUCK else -1, value)
                              for d, rows in groups
                              for i, mode, value in crash_records(batch, 0, d)])
        readout, _ = _layers(plan, s, start, row_input[sel], groups, batch, fields, engine)
        out[sel] = readout
    return out
