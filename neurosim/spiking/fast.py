"""Spiking execution, fast: layer by layer over all ``T`` steps at once.

In a feed-forward network layer ``l``'s currents at every step depend only on layer ``l - 1``'s
output at the same step, so a layer's ``T x n`` rows of currents are one call of the layer's
linear map (one matrix product for a dense layer; with constant-current input, layer 1's
current is the same at every step and is computed once), and the Numba kernel
:func:`neurosim.kernels.spiking.neuron_scan` runs each neuron's time loop. The result is the
reference's (:func:`neurosim.spiking.reference.run`) with the same arithmetic per neuron;
only the matrix products see more rows at once.
"""

from __future__ import annotations

import numpy as np

from neurosim.layers.transforms import MaxPool2d

__all__ = ["run_fast", "transforms_over_time"]


def run_fast(snn, X, inputs=None, record: bool = False):
    """As :func:`neurosim.spiking.reference.run` (without per-row weights)."""
    from neurosim.kernels.spiking import neuron_scan

    net = snn.network
    X = net.check_input(X)
    n = X.shape[0]
    inputs = np.arange(n) if inputs is None else np.asarray(inputs, dtype=np.int64)
    dtype = net.dtype
    T, L = snn.T, net.n_layers
    constant = snn.encoding == "current"
    s = X[None] if constant else snn.input_spikes(X, inputs)  # (1 or T, n, n0)
    counts = [s.sum(axis=0) * (T if constant else 1)] if record else None
    readout = None
    for l, layer in enumerate(net.layers, start=1):
        spiking_in = (snn.neurons[l - 2] is not None) if l > 1 else not constant
        steps = s.shape[0]
        u = transforms_over_time(net.pre[l - 1], s, spiking_in)
        I = np.asarray(layer.linear(u.reshape((steps * n,) + u.shape[2:])), dtype=dtype)
        I = I.reshape(steps, n, -1)
        model = snn.neurons[l - 1]
        if model is None:
            if l == L and snn.readout != "count":
                readout = np.zeros((n, I.shape[2]), dtype=dtype)
                keep, leak, gain, divide = snn.readout_factors(np.dtype(dtype))
                for t in range(T):  # (the reference's order of operations)
                    readout = keep * readout + leak + gain * I[0 if steps == 1 else t]
                readout /= divide
                s = I
                break
            s = layer.activation(I).astype(dtype)
        else:
            if steps == 1:
                I = np.broadcast_to(I, (T,) + I.shape[1:])
            p = {k: v.astype(dtype) for k, v in model.params(I.shape[2], snn.dt).items()}
            out = np.empty(I.shape, dtype=dtype)
            none = np.zeros((0, I.shape[2]), dtype=dtype)  # (no row has factors of its own)
            neuron_scan(np.ascontiguousarray(I), p["syn_keep"], p["syn_gain"], p["keep"],
                        p["leak"], p["gain"], p["threshold"], p["v_reset"],
                        model.reset == "subtract", out, np.full(n, -1, dtype=np.int64), none,
                        none, none)
            s = out
            if l == L:
                readout = np.zeros((n, I.shape[2]), dtype=dtype)
                for t in range(T):
                    readout += s[t]
                readout /= dtype.type(T)
        if record:
            counts.append(s.sum(axis=0) * (T if s.shape[0] == 1 else 1))
    return (readout, counts) if record else readout


def transforms_over_time(pre, s: np.ndarray, spiking: bool) -> np.ndarray:
    """Transforms ``pre`` (a layer's pooling and flattening) on outputs ``s (steps, n, ...)``
    of every step; after spikes (``spiking``) a max pool is gated by the spike counts so far
    (the reference's rule). Used by :func:`run_fast` and the backends' spiking path."""
    steps, n = s.shape[:2]
    flat = s.reshape(steps * n, -1)
    for tr in pre:
        if spiking and isinstance(tr, MaxPool2d):
            x = flat.reshape(steps, n, -1)
            cum = np.cumsum(x, axis=0, dtype=x.dtype)
            src = tr._argmax_inputs(cum.reshape(steps * n, -1))
            flat = np.take_along_axis(flat, src, axis=1)
        else:
            flat = tr.apply(flat)
    return flat.reshape(steps, n, -1)
