"""Numba kernels of stuck-cell fields (see :mod:`neurosim.fields` for the definition).

Every cell's fault is decided by an integer comparison of a counter-based word, so these
kernels and the NumPy reference (:func:`neurosim.fields.cell_words`,
:func:`neurosim.fields.stuck_matrix`) agree cell by cell. ``parallel=True`` over independent
rows (or columns) only; no global state.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neurosim.kernels.codes import CLEAN

__all__ = ["cell_word", "stuck_value", "apply_stuck_field", "stuck_field_matrix", "add_stuck_columns"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_SHIFT = np.uint64(40)


@njit(cache=True, inline="always")
def cell_word(key, layer, n_out, i, j):
    """The word of cell (i, j) of ``layer`` (uint64 arithmetic throughout)."""
    c = (np.uint64(layer) << _SHIFT) + np.uint64(j) * np.uint64(n_out) + np.uint64(i) + np.uint64(1)
    z = key + c * _GAMMA
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def stuck_value(w, T0, wij, zero, v_pos, minus_v_neg):
    """What a stuck cell (its word ``w`` below ``t01``) holds: ``zero`` when stuck at 0
    (``w < T0``), else the layer's largest magnitude with its stored weight's sign; the
    result has the arguments' type (no branch the compiler cannot turn into a select)."""
    return zero if w < T0 else (minus_v_neg if wij < 0 else v_pos)


@njit(cache=True, parallel=True)
def apply_stuck_field(Z, rows, status_prev, Yprev, Yprev_clean, WT, row_draw, row_input, keys,
                      layer, t0, t01, v_pos, v_neg):
    """Add each row's stuck cells of ``layer`` to its pre-activations ``Z`` (in place).

    ``WT`` is the layer's matrix transposed (``(n_in, n_out)``, C order). Row ``r`` (draw
    ``row_draw[r]``, key ``keys[row_draw[r]]``) has its cell (i, j) stuck as the field says;
    its change of ``z_i`` is ``(v - W[i, j]) * y_j``, added column by column (j ascending;
    a healthy cell adds nothing). Columns whose input ``y_j`` is 0 are skipped: their cells
    change nothing. A CLEAN row's inputs are read from ``Yprev_clean`` (by input). The inner
    loop over a column has no branch, so it vectorizes.
    """
    n_in, n_out = WT.shape
    T0 = np.uint64(t0)
    T01 = np.uint64(t01)
    zero = WT.dtype.type(0.0)
    vp = WT.dtype.type(v_pos)
    vn = WT.dtype.type(-v_neg)
    for k in prange(rows.size):
        r = rows[k]
        x = row_input[r]
        key = keys[row_draw[r]]
        clean_in = status_prev[r] == CLEAN
        for j in range(n_in):
            yj = Yprev_clean[x, j] if clean_in else Yprev[r, j]
            if yj == 0:
                continue
            for i in range(n_out):
                w = cell_word(key, layer, n_out, i, j)
                wij = WT[j, i]
                v = stuck_value(w, T0, wij, zero, vp, vn)
                Z[r, i] += (v - wij) * yj if w < T01 else zero


@njit(cache=True, parallel=True)
def stuck_field_matrix(W, key, layer, t0, t01, v_pos, v_neg):
    """``W`` with the field's stuck cells for ``key`` written in (a new array)."""
    n_out, n_in = W.shape
    out = W.copy()
    T0 = np.uint64(t0)
    T01 = np.uint64(t01)
    k = np.uint64(key)
    for i in prange(n_out):
        for j in range(n_in):
            w = cell_word(k, layer, n_out, i, j)
            if w < T01:
                out[i, j] = stuck_value(w, T0, W[i, j], 0.0, v_pos, -v_neg)
    return out


@njit(cache=True, parallel=True)
def add_stuck_columns(ZT, XT, W, key, layer, t0, t01, v_pos, v_neg):
    """One chip's pre-activations, transposed (``(n_out, m)``), from those every chip shares:
    ``ZT`` = ``(X W^T + b)^T`` (not modified) plus the chip's stuck cells of ``layer``,
    ``(W_stuck - W) X^T`` (``XT`` the inputs transposed, ``(n_in, m)``). Rows in parallel,
    each written by one thread; for each, its stuck cells in column order, each one vector
    update over the inputs."""
    n_out, n_in = W.shape
    m = XT.shape[1]
    T0 = np.uint64(t0)
    T01 = np.uint64(t01)
    k = np.uint64(key)
    out = np.empty_like(ZT)
    for i in prange(n_out):
        z = out[i]
        z[:] = ZT[i]
        for j in range(n_in):
            w = cell_word(k, layer, n_out, i, j)
            if w < T01:
                wij = W[i, j]
                d = stuck_value(w, T0, wij, 0.0, v_pos, -v_neg) - wij
                if d != 0:
                    for r in range(m):
                        z[r] += d * XT[j, r]
    return out
