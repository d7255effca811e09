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

__all__ = ["neuron_scan"]


@njit(cache=True, parallel=True)
def neuron_scan(I, syn_keep, syn_gain, keep, leak, gain, threshold, v_reset, subtract, spikes):
    """Spikes ``(T, n, m)`` (0/1, written into ``spikes``) of ``m`` neurons over ``T`` steps for
    currents ``I (T, n, m)``; per-neuron factors ``(m,)`` as NeuronModel.params gives them."""
    T, n, m = I.shape
    one = I.dtype.type(1)
    zero = I.dtype.type(0)
    for r in prange(n):
        for j in range(m):
            i = zero
            v = v_reset[j]
            for t in range(T):
                i = syn_keep[j] * i + syn_gain[j] * I[t, r, j]
                v = keep[j] * v + leak[j] + gain[j] * i
                if v >= threshold[j]:
                    spikes[t, r, j] = one
                    if subtract:
                        v = v - threshold[j]
                    else:
                        v = v_reset[j]
                else:
                    spikes[t, r, j] = zero
