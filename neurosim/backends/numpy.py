"""The NumPy backend: the reference faulty forward pass, and fault application to arrays.

Every row is computed in full from its input with the faults applied literally: a weight
record overwrites ``A[i, j]``, a failed tile zeroes its block, and a crash overrides the
neuron's output after the activation (``y := 0``; ``z := b, y := phi(b)``; ``y := v``). Rows
that share a fault sample (permanent mode) share its faulty matrices; rows whose sample has no
weight fault in a layer go through one matrix product. No restart from cached activations, no
incremental updates: slower than the numba backend and independent of its arithmetic, which is
what a reference is for.

:func:`apply_weight_records` and :func:`faults_as_parameters` are the fault application that
the Lava backend and the integer model (:mod:`neurosim.quantization`) use too.
"""

from __future__ import annotations

import contextlib

import numpy as np

from neurosim.backends import spiking
from neurosim.backends.base import (Backend, CleanCache, apply_transforms, register_backend,
                                    transient_fields)
from neurosim.errors import BackendUnsupportedError
from neurosim.fields import stuck_matrix
from neurosim.backends.records import apply_weight_records, crash_records
from neurosim.kernels.codes import CRASH_PAPER, CRASH_STUCK

__all__ = ["NumpyBackend", "apply_weight_records", "crash_records", "faults_as_parameters"]


def faults_as_parameters(weights, biases, batch, draw: int):
    """Weights and biases with draw ``draw`` of ``batch`` written into them.

    Weight and tile records are applied as in :func:`apply_weight_records`. A crash of neuron
    ``i`` of layer ``l >= 1`` zeroes row ``i`` of ``W_l`` and, when silent, ``b_l[i]``: then
    ``z_i = 0`` (silent) or ``b_i`` (paper), which is the crash exactly when ``phi(0) = 0``
    (ReLU, identity); a crash of input ``j`` zeroes column ``j`` of ``W_1``. Crashes come after
    the weight records (a crash overrides synapse faults on its row). Returns new lists.

    Raises
    ------
    BackendUnsupportedError
        For a ``stuck`` crash (``y_i := v`` cannot be written as weights and biases).
    """
    W = [np.array(w, copy=True) for w in weights]
    b = [np.array(v, copy=True) for v in biases]
    if batch is None:
        return W, b
    L = len(W)
    for l in range(1, L + 1):
        W[l - 1] = apply_weight_records(W[l - 1], batch, l, draw)
    for l in range(L + 1):
        for i, mode, _ in crash_records(batch, l, draw):
            if mode == CRASH_STUCK:
                raise BackendUnsupportedError(
                    "The 'stuck' crash semantics (y_i := v) cannot be written as weights and "
                    "biases; this backend supports silent and paper crashes.")
            if l == 0:
                W[0][:, i] = 0
            else:
                W[l - 1][i, :] = 0
                if mode != CRASH_PAPER:
                    b[l - 1][i] = 0
    return W, b


@register_backend
class NumpyBackend(Backend):
    """Reference backend: full NumPy forward passes with the faults applied literally."""

    name = "numpy"
    spiking = True

    def clean_cache(self, plan, X) -> CleanCache:
        if plan.spiking is not None:
            return spiking.clean_cache(plan, X, engine="numpy")
        X = np.ascontiguousarray(X, dtype=plan.dtype)
        Z, Y, U = [X], [X], []
        for l, layer in enumerate(plan.network.layers):
            U.append(apply_transforms(plan, l + 1, Y[-1]))
            z = U[-1] @ plan.W[l].T + plan.b[l]
            Z.append(z)
            Y.append(layer.activation(z))
        return CleanCache(X=X, output=Y[-1], Y=Y, Z=Z, U=U)

    def propagate(self, plan, cache, batch, row_draw, row_input) -> np.ndarray:
        if plan.spiking is not None:
            return spiking.propagate(plan, cache, batch, row_draw, row_input, engine="numpy")
        row_draw = np.asarray(row_draw, dtype=np.int64)
        row_input = np.asarray(row_input, dtype=np.int64)
        draws, inverse = np.unique(row_draw, return_inverse=True)
        rows_of = [np.flatnonzero(inverse == k) for k in range(draws.size)]
        y = np.array(cache.X[row_input], copy=True)
        self._crash(y, batch, 0, draws, rows_of, None, None)
        fields = transient_fields(plan, batch)
        for l, layer in enumerate(plan.network.layers, start=1):
            W, b = plan.W[l - 1], plan.b[l - 1]
            y = apply_transforms(plan, l, y)
            z = y @ W.T + b
            for d, rows in zip(draws, rows_of):
                W_d = apply_weight_records(W, batch, l, int(d))
                for f in fields:
                    if f.layer == l:
                        W_d = stuck_matrix(W_d, f, int(batch.keys[d]))
                if W_d is not W:
                    z[rows] = y[rows] @ W_d.T + b
            y = layer.activation(z)
            self._crash(y, batch, l, draws, rows_of, layer, b)
        return y

    @staticmethod
    def _crash(y, batch, layer, draws, rows_of, net_layer, bias) -> None:
        for d, rows in zip(draws, rows_of):
            for i, mode, value in crash_records(batch, layer, int(d)):
                if mode == CRASH_STUCK:
                    y[rows, i] = value
                elif mode == CRASH_PAPER and net_layer is not None:
                    y[rows, i] = net_layer.activation(np.full(1, bias[i], dtype=y.dtype))[0]
                else:  # silent (and paper on the input layer)
                    y[rows, i] = 0.0

    def session(self):
        return contextlib.nullcontext()
