"""The neuron time loop of spiking layers (neurosim.spiking.neurons states the equations).

A feed-forward spiking layer's input currents for all ``T`` steps are known before its
neurons run (they depend only on the layer below at the same steps), so the currents of
``T x rows`` are one matrix product and this kernel scans each neuron's ``T`` steps in turn:
the time loop inside, ``prange`` over rows (each row's result is independent of the thread
count). The arithmetic is the reference's, operation for operation, in the arrays' dtype.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["neuron_scan", "changed_scan", "changed_readout"]


@njit(cache=True, parallel=True)
def neuron_scan(I, syn_keep, syn_gain, keep, leak, gain, threshold, v_reset, subtract, spikes,
                prow, t_keep, t_leak, t_thr):
    """Spikes ``(T, n, m)`` (0/1, written into ``spikes``) of ``m`` neurons over ``T`` steps for
    currents ``I (T, n, m)``; per-neuron factors ``(m,)`` as NeuronModel.params gives them,
    except that row ``r`` takes ``keep``, ``leak`` and ``threshold`` from row ``prow[r]`` of
    the tables ``t_keep``, ``t_leak``, ``t_thr (P, m)`` where ``prow[r] >= 0`` (its threshold
    and leak faults)."""
    T, n, m = I.shape
    one = I.dtype.type(1)
    zero = I.dtype.type(0)
    for r in prange(n):
        k = prow[r]
        kp = keep if k < 0 else t_keep[k]
        lk = leak if k < 0 else t_leak[k]
        th = threshold if k < 0 else t_thr[k]
        for j in range(m):
            i = zero
            v = v_reset[j]
            for t in range(T):
                i = syn_keep[j] * i + syn_gain[j] * I[t, r, j]
                v = kp[j] * v + lk[j] + gain[j] * i
                if v >= th[j]:
                    spikes[t, r, j] = one
                    if subtract:
                        v = v - th[j]
                    else:
                        v = v_reset[j]
                else:
                    spikes[t, r, j] = zero


@njit(cache=True, inline="always")
def _changed_currents(cur, ts, r, x, s_in, U_c, I_c, Wt, patch):
    """Row ``r``'s currents at step ``ts``: input ``x``'s clean ones plus ``(s_in - U_c) Wt``
    over the inputs that differ, then the row's own faults on this layer (``patch``, see
    :func:`changed_scan`). The clean signals may be constant in time (one step) where the
    row's are not (a crashed input of a few steps)."""
    w_ptr, w_i, w_j, w_delta, b_ptr, b_i, bias = patch
    tc = ts if U_c.shape[0] > 1 else 0
    for o in range(cur.size):
        cur[o] = I_c[tc, x, o]
    for j in range(s_in.shape[2]):
        d = s_in[ts, r, j] - U_c[tc, x, j]
        if d != 0:
            for o in range(cur.size):
                cur[o] += Wt[j, o] * d
    for q in range(w_ptr[r], w_ptr[r + 1]):
        cur[w_i[q]] += w_delta[q] * s_in[ts, r, w_j[q]]
    for q in range(b_ptr[r], b_ptr[r + 1]):
        cur[b_i[q]] = bias[b_i[q]]


@njit(cache=True, parallel=True)
def changed_scan(rows, inputs, s_in, U_c, I_c, Wt, patch, T, syn_keep, syn_gain, keep, leak,
                 gain, threshold, v_reset, subtract, spikes, prow, t_keep, t_leak, t_thr):
    """The neuron loop of faulty rows ``rows``: each step's currents are the input's clean ones
    ``I_c[t, inputs[r]]`` plus ``(s_in - U_c) Wt`` over the inputs that differ plus the row's
    own faults, then :func:`neuron_scan`'s update.
    ``patch = (w_ptr, w_i, w_j, w_delta, b_ptr, b_i, bias)``: row ``r``'s changed weights on
    this layer (``w_ptr[r]:w_ptr[r + 1]``: entry ``(w_i, w_j)`` of the matrix changed by
    ``w_delta``) and its paper-crashed neurons (``b_i``: current ``bias[b_i]``).
    ``s_in (steps, n, k)``: the rows' inputs (after transforms); ``U_c``, ``I_c``: the clean
    inputs and currents of every input (``steps`` 1: constant in time). ``prow`` and the
    tables: the rows' own factors, as in :func:`neuron_scan` (``prow`` indexed by row)."""
    steps = s_in.shape[0]
    m = I_c.shape[2]
    one = I_c.dtype.type(1)
    zero = I_c.dtype.type(0)
    for q in prange(rows.size):
        r = rows[q]
        x = inputs[r]
        k = prow[r]
        kp = keep if k < 0 else t_keep[k]
        lk = leak if k < 0 else t_leak[k]
        th = threshold if k < 0 else t_thr[k]
        cur = np.empty(m, dtype=I_c.dtype)
        i = np.zeros(m, dtype=I_c.dtype)
        v = v_reset.copy()
        for t in range(T):
            if t == 0 or steps > 1:
                _changed_currents(cur, t if steps > 1 else 0, r, x, s_in, U_c, I_c, Wt, patch)
            for o in range(m):
                i[o] = syn_keep[o] * i[o] + syn_gain[o] * cur[o]
                v[o] = kp[o] * v[o] + lk[o] + gain[o] * i[o]
                if v[o] >= th[o]:
                    spikes[t, r, o] = one
                    if subtract:
                        v[o] = v[o] - th[o]
                    else:
                        v[o] = v_reset[o]
                else:
                    spikes[t, r, o] = zero


@njit(cache=True, parallel=True)
def changed_readout(rows, inputs, s_in, U_c, I_c, Wt, patch, T, keep, leak, gain, readout):
    """The integrated readout of faulty rows, ``r <- keep r + leak + gain I_t`` over the ``T``
    steps from 0 (the membrane readout's sum: 1, 0, 1), their currents as in
    :func:`changed_scan`."""
    steps = s_in.shape[0]
    m = I_c.shape[2]
    for q in prange(rows.size):
        r = rows[q]
        x = inputs[r]
        cur = np.empty(m, dtype=I_c.dtype)
        for o in range(m):
            readout[r, o] = 0
        for t in range(T):
            if t == 0 or steps > 1:
                _changed_currents(cur, t if steps > 1 else 0, r, x, s_in, U_c, I_c, Wt, patch)
            for o in range(m):
                readout[r, o] = keep[o] * readout[r, o] + leak[o] + gain[o] * cur[o]
