"""Numba kernels of the faulty forward pass.

Each kernel works on one layer for a batch of (fault sample, input) pairs ("rows"). A row keeps
a status that says how its previous-layer activations differ from the cached clean ones:

* ``CLEAN``: not at all, so ``z_l`` is the cached clean ``z_l`` of its input;
* ``SPARSE``: in a few entries, so ``z_l = z_l(clean) + sum_j W[:, j] (y_j - y_j(clean))``,
  one column per changed entry;
* ``DENSE``: in many entries; the caller computes ``z_l = W y + b`` as one matrix product for
  all dense rows (BLAS), which is why that step is not in this module.

Faults of a layer are given per fault sample ("draw") in CSR form: the faults of draw ``d``
are ``ptr[d]:ptr[d + 1]`` of the arrays ``kind, a, b, c, d, value``:

* ``kind == 0`` crash of neuron ``a``; ``b == 1`` forces the silent semantics (core failure);
* ``kind == 1`` weight ``W[a, b]`` becomes ``value`` (stuck synapse, bit flip);
* ``kind == 2`` tile failure: ``W[a:b, c:d]`` reads zero.

Kernels take every threshold and code as an argument and use no global state, so results do
not depend on the thread count; ``parallel=True`` only on the drivers, with ``prange`` over
independent rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


from neurosim.kernels.activation import act as _act
from neurosim.kernels.activation import crashed_output
from neurosim.kernels.codes import (
    ACT_IDENTITY, ACT_RELU, CLEAN, CRASH_PAPER, CRASH_SILENT, DENSE, REC_CRASH, REC_TILE,
    REC_WEIGHT, SPARSE,
)

__all__ = ["CLEAN", "SPARSE", "DENSE", "ACT_IDENTITY", "z_from_clean", "finish_layer",
           "input_layer", "dense_forward", "activate", "activate_inplace"]


@njit(cache=True, inline="always")
def _row_status(Y, r, Y_clean, x, sparse_limit):
    """CLEAN, SPARSE or DENSE: how many entries of row r differ from input x's clean ones."""
    changed = 0
    for i in range(Y.shape[1]):
        if Y[r, i] != Y_clean[x, i]:
            changed += 1
    if changed == 0:
        return CLEAN
    if changed <= sparse_limit:
        return SPARSE
    return DENSE


@njit(cache=True, parallel=True)
def z_from_clean(Z, rows, status, Yprev, Yprev_clean, Z_clean, W, row_input):
    """Fill ``Z[r]`` for the CLEAN and SPARSE rows ``r`` in ``rows`` from the clean cache.

    ``Yprev_clean`` and ``Z_clean`` are indexed by input; ``row_input[r]`` is row r's input.
    DENSE rows are left untouched (the caller fills them with one matrix product).
    """
    n_out = Z.shape[1]
    n_in = Yprev.shape[1]
    for k in prange(rows.size):
        r = rows[k]
        st = status[r]
        if st == DENSE:
            continue
        x = row_input[r]
        for i in range(n_out):
            Z[r, i] = Z_clean[x, i]
        if st == SPARSE:
            for j in range(n_in):
                dy = Yprev[r, j] - Yprev_clean[x, j]
                if dy != 0:
                    for i in range(n_out):
                        Z[r, i] += W[i, j] * dy


@njit(cache=True, parallel=True)
def finish_layer(Z, Y, rows, status_prev, Yprev, Yprev_clean, W, bias, row_draw, row_input, ptr,
                 kind, out_start, out_stop, in_start, in_stop, value, crash_mode, act_code, alpha,
                 beta, Y_clean, sparse_limit, status_out):
    """Apply a layer's faults to ``Z``, then the activation and the crashes, for ``rows``.

    Parameters
    ----------
    Z : (n_rows, n_out) pre-activations without this layer's faults (modified in place).
    Y : (n_rows, n_out) output activations (written for ``rows``).
    rows : indices of the rows to process.
    status_prev : status of each row's previous-layer activations; a CLEAN row's are read from
        ``Yprev_clean`` (by input) instead of ``Yprev``.
    W, bias : the layer's matrix and bias.
    row_draw : (n_rows,) fault sample of each row; its records are ``ptr[d]:ptr[d+1]`` of the
        record columns ``kind, out_start, out_stop, in_start, in_stop, value, crash_mode``.
    Y_clean : (n_inputs, n_out) clean activations of this layer.
    sparse_limit : rows with at most this many changed entries become SPARSE.
    status_out : (n_rows,) new status (written for ``rows``).
    """
    n_out = Z.shape[1]
    for k in prange(rows.size):
        r = rows[k]
        d = row_draw[r]
        x = row_input[r]
        clean_in = status_prev[r] == CLEAN
        # Synapse faults and failed tiles change z before the activation.
        for f in range(ptr[d], ptr[d + 1]):
            if kind[f] == REC_WEIGHT:
                i = out_start[f]
                j = in_start[f]
                yj = Yprev_clean[x, j] if clean_in else Yprev[r, j]
                Z[r, i] += (value[f] - W[i, j]) * yj
            elif kind[f] == REC_TILE:
                for i in range(out_start[f], out_stop[f]):
                    s = 0.0
                    for j in range(in_start[f], in_stop[f]):
                        yj = Yprev_clean[x, j] if clean_in else Yprev[r, j]
                        s += W[i, j] * yj
                    Z[r, i] -= s
        for i in range(n_out):
            Y[r, i] = _act(Z[r, i], act_code, alpha, beta)
        # Crashes override the neuron's output.
        for f in range(ptr[d], ptr[d + 1]):
            if kind[f] == REC_CRASH:
                i = out_start[f]
                if crash_mode[f] == CRASH_PAPER:
                    Z[r, i] = bias[i]
                Y[r, i] = crashed_output(crash_mode[f], value[f], bias[i], act_code, alpha, beta)
        status_out[r] = _row_status(Y, r, Y_clean, x, sparse_limit)


@njit(cache=True, parallel=True)
def input_layer(Y0, rows, X, row_draw, row_input, ptr, kind, out_start, value, crash_mode,
                sparse_limit, status_out):
    """Input activations of ``rows``: ``x`` with input-layer crashes (paper = silent there)."""
    n_in = Y0.shape[1]
    for k in prange(rows.size):
        r = rows[k]
        x = row_input[r]
        for j in range(n_in):
            Y0[r, j] = X[x, j]
        d = row_draw[r]
        for f in range(ptr[d], ptr[d + 1]):
            if kind[f] == REC_CRASH:
                if crash_mode[f] == CRASH_SILENT or crash_mode[f] == CRASH_PAPER:
                    Y0[r, out_start[f]] = 0.0
                else:
                    Y0[r, out_start[f]] = value[f]
        status_out[r] = _row_status(Y0, r, X, x, sparse_limit)


@njit(cache=True)
def dense_forward(X, W, b):
    """Dense batched pre-activations ``X W^T + b``: the matrix product through BLAS (np.dot).

    This is the simulator's dense path (the clean cache, and rows whose activations differ
    from the clean ones in many entries). The bias pass is serial: parallel threads would
    compete with BLAS's own.
    """
    Z = np.dot(X, W.T)
    n_rows, n_out = Z.shape
    for r in range(n_rows):
        for i in range(n_out):
            Z[r, i] += b[i]
    return Z


@njit(cache=True, parallel=True)
def activate(Z, act_code, alpha, beta):
    """``phi(Z)`` element-wise with the same arithmetic as the faulty-pass kernels."""
    Y = np.empty_like(Z)
    n_rows, n_out = Z.shape
    for r in prange(n_rows):
        for i in range(n_out):
            Y[r, i] = _act(Z[r, i], act_code, alpha, beta)
    return Y


@njit(cache=True)
def activate_inplace(Z, act_code, alpha, beta):
    """:func:`activate` in place and on one thread (for many small matrices, where starting
    the parallel threads would cost more than the work)."""
    n_rows, n_out = Z.shape
    if act_code == ACT_IDENTITY:
        return Z
    if act_code == ACT_RELU:  # the common case, in a loop the compiler vectorizes
        for r in range(n_rows):
            for i in range(n_out):
                z = Z[r, i]
                Z[r, i] = z if z > 0 else 0.0
        return Z
    for r in range(n_rows):
        for i in range(n_out):
            Z[r, i] = _act(Z[r, i], act_code, alpha, beta)
    return Z
