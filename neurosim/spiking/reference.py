"""The NumPy reference of spiking execution: the time loop of :mod:`neurosim.spiking.snn`
written out step by step, every row in full, with the neuron equations exactly as
:mod:`neurosim.spiking.neurons` states them. Slow and plain; the Numba kernels are tested
against it."""

from __future__ import annotations

import numpy as np

from neurosim.kernels.codes import NEURON_LEAK, NEURON_THRESHOLD
from neurosim.layers.transforms import MaxPool2d
from neurosim.spiking.neurons import scaled_parameters

__all__ = ["run", "neuron_loop"]


def run(snn, X, inputs=None, weights=None, record: bool = False, forced=None,
        bias_only=None, factors=None):
    """The readout ``(n, n_L)`` of rows ``X``.

    Parameters
    ----------
    snn : SpikingNetwork
    X : array_like
        Inputs, as :meth:`Network.check_input` takes them.
    inputs : array_like of int, optional
        The input index of each row (keys its Poisson spike train); default ``0..n-1``.
    weights : list of ndarray, optional
        Per layer, dense matrices ``(n, n_l, n_{l-1})`` (one per row) or ``(n_l, n_{l-1})``
        to use instead of the network's (faulty weights); default the layers' own.
    record : bool
        Also return each layer's spike counts ``(n, n_l)`` (graded layers: the sum of their
        outputs).
    forced : list of ndarray, optional
        Per layer 0..L, ``(n, n_l)``: an output held at this value at every step (a crash:
        0 for a dead neuron, ``v`` when stuck), NaN where the neuron is not forced; or
        ``(T, n, n_l)``: the same per step (a crash of a few steps).
    bias_only : list of ndarray, optional
        Per layer 1..L (index ``l - 1``), ``(n, n_l)`` bool: the neuron's current is its bias
        alone (the ``paper`` crash).
    factors : list of dict, optional
        Per layer 1..L (index ``l - 1``), None or ``{"threshold": F, "leak": F}`` with ``F``
        ``(n, n_l)``: each row's factor on the neuron's threshold or leak
        (:mod:`neurosim.faults.neuron_param`), NaN where the neuron is not perturbed.
    """
    net = snn.network
    X = net.check_input(X)
    n = X.shape[0]
    inputs = np.arange(n) if inputs is None else np.asarray(inputs, dtype=np.int64)
    dtype = net.dtype
    dt = snn.dt
    L = net.n_layers
    widths = net.widths
    params = [None if m is None else _row_factors(m.params(widths[l], dt), n, dtype,
                                                  None if factors is None else factors[l - 1])
              for l, m in enumerate(snn.neurons, start=1)]
    v = [None if p is None else np.broadcast_to(p["v_reset"], (n, widths[l])).copy()
         for l, p in enumerate(params, start=1)]
    i = [None if p is None else np.zeros((n, widths[l]), dtype=dtype)
         for l, p in enumerate(params, start=1)]
    counts = [np.zeros((n, widths[l]), dtype=dtype) for l in range(L + 1)]
    pool_counts: dict = {}
    readout = np.zeros((n, widths[-1]), dtype=dtype)
    r_keep, r_leak, r_gain, divide = snn.readout_factors(np.dtype(dtype))
    spikes_in = snn.input_spikes(X, inputs) if snn.encoding != "current" else None
    for t in range(snn.T):
        s = X if spikes_in is None else spikes_in[t]
        s = _force(s, forced, 0, t)
        counts[0] += s
        for l, layer in enumerate(net.layers, start=1):
            u = _transforms(net, l, s, snn.neurons[l - 2] is not None if l > 1 else
                            snn.encoding != "current", pool_counts, t)
            if weights is None or weights[l - 1] is None:
                I = np.asarray(layer.linear(u), dtype=dtype)
            else:
                W = weights[l - 1]
                I = (np.einsum("rij,rj->ri", W, u) if W.ndim == 3 else u @ W.T)
                I = (I + layer.bias).astype(dtype)
            if bias_only is not None and bias_only[l - 1] is not None:
                I = np.where(bias_only[l - 1], layer.bias.astype(dtype), I).astype(dtype)
            p = params[l - 1]
            if p is None:
                if l == L and snn.readout != "count":  # (membrane: 1 r + 0 + 1 I, the sum)
                    s = _force(I, forced, l, t)
                    readout = r_keep * readout + r_leak + r_gain * s
                    continue
                s = _force(layer.activation(I).astype(dtype), forced, l, t)
            else:
                i[l - 1] = p["syn_keep"] * i[l - 1] + p["syn_gain"] * I
                v[l - 1] = p["keep"] * v[l - 1] + p["leak"] + p["gain"] * i[l - 1]
                fired = v[l - 1] >= p["threshold"]
                if snn.neurons[l - 1].reset == "subtract":
                    v[l - 1] = np.where(fired, v[l - 1] - p["threshold"], v[l - 1])
                else:
                    v[l - 1] = np.where(fired, p["v_reset"], v[l - 1])
                s = _force(fired.astype(dtype), forced, l, t)
                if l == L:
                    readout += s
            counts[l] += s
    readout /= dtype.type(snn.T) if snn.readout == "count" else divide
    return (readout, counts) if record else readout


def neuron_loop(I, p, subtract: bool) -> np.ndarray:
    """Spikes ``(T, n, m)`` of neurons with factors ``p`` (NeuronModel.params, in ``I``'s
    dtype) for currents ``I (T, n, m)``: the step loop of :func:`run` for one layer, what the
    numpy backend runs and the Numba kernels are tested against."""
    i = np.zeros(I.shape[1:], dtype=I.dtype)
    v = np.broadcast_to(p["v_reset"], I.shape[1:]).astype(I.dtype)
    out = np.empty(I.shape, dtype=I.dtype)
    for t in range(I.shape[0]):
        i = p["syn_keep"] * i + p["syn_gain"] * I[t]
        v = p["keep"] * v + p["leak"] + p["gain"] * i
        fired = v >= p["threshold"]
        v = np.where(fired, v - p["threshold"], v) if subtract else np.where(fired, p["v_reset"], v)
        out[t] = fired
    return out


def _force(s, forced, l, t):
    if forced is None or forced[l] is None:
        return s
    f = forced[l] if forced[l].ndim == 2 else forced[l][t]
    return np.where(np.isnan(f), s, f).astype(s.dtype)


def _row_factors(base: dict, n: int, dtype, factors) -> dict:
    """A layer's factors in ``dtype``; with threshold or leak ``factors`` ``(n, m)`` (NaN: not
    perturbed), per row ``(n, m)``, each perturbed neuron's scaled in float64."""
    if factors is None:
        return {k: v.astype(dtype) for k, v in base.items()}
    p = {k: np.array(np.broadcast_to(v, (n, v.size)), dtype=np.float64) for k, v in base.items()}
    for name, code in (("threshold", NEURON_THRESHOLD), ("leak", NEURON_LEAK)):
        f = factors.get(name)
        if f is None:
            continue
        hit = ~np.isnan(f)
        entry = {k: p[k][hit] for k in ("threshold", "keep", "leak")}
        scaled_parameters(entry, code, f[hit])
        for k, v in entry.items():
            p[k][hit] = v
    return {k: v.astype(dtype) for k, v in p.items()}


def _transforms(net, l: int, s: np.ndarray, spiking: bool, pool_counts: dict, t: int):
    """Layer ``l``'s transforms on this step's spikes ``s``; a max pool after spikes gates."""
    for k, tr in enumerate(net.pre[l - 1]):
        if spiking and isinstance(tr, MaxPool2d):
            key = (l, k)
            if t == 0:
                pool_counts[key] = np.zeros_like(s)
            pool_counts[key] += s
            src = tr._argmax_inputs(pool_counts[key])
            s = np.take_along_axis(s.reshape(s.shape[0], -1), src, axis=1)
        else:
            s = tr.apply(s)
    return s
