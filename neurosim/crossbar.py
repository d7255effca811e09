"""The analog crossbar pass: one chip instance's programmed tiles, run with DAC and ADC.

Used by the Monte Carlo estimator when the fault model holds an
:class:`~neurosim.faults.AnalogCrossbar` process. Per chip instance:

1. its weights: each layer's stored (quantized) weights programmed as conductance pairs with
   programming noise, drift to time ``t`` and PCM read noise (:func:`neurosim.analog.program`,
   one standard normal per device from the chip's own stream), then the chip's stuck cells
   (permanent fields or records) written over them: a stuck cell holds 0 or the layer's largest
   magnitude (sign of its stored weight) whatever the device noise;
2. every input through the layers: a layer's input is split by the mapping's tiles (each tile
   has its own DAC and ADC, :func:`neurosim.analog.tile_matvec`: abs-max scaling per input
   slice, DAC, the tile's product, output noise, ADC with aihwkit's iterative bound
   management, scaled back), the tiles' outputs are
   summed digitally, then the bias and the activation.

Weights are normalized per layer by the largest stored magnitude (the word's ``scale * q_max``
on the mapping; the conductance ``g_max``). The chip's random numbers come from
``SeedSequence([seed, block, chip])``: the numbers do not depend on chunking, threads or runner.
"""

from __future__ import annotations

import numpy as np

from neurosim import analog as A
from neurosim.fields import stuck_matrix

__all__ = ["chip_weights", "analog_outputs", "layer_tiles"]


def layer_tiles(plan, layer: int) -> list:
    """``(out_start, out_stop, in_start, in_stop)`` of the mapping's tiles of ``layer``."""
    tiles = [(c.out_start, c.out_stop, c.in_start, c.in_stop)
             for c in plan.mapping.cores if c.layer == layer]
    if not tiles:  # pragma: no cover - every mapped layer has tiles
        raise ValueError(f"layer {layer} has no crossbar tiles in the mapping")
    return tiles


def _w_max(plan, l: int) -> float:
    return float(max(plan.max_weight_pos[l - 1], plan.max_weight_neg[l - 1]))


def chip_weights(plan, process, chips, c: int, rng: np.random.Generator) -> list:
    """Chip ``c``'s effective weights per layer (float64): programmed, drifted, stuck."""
    model = process.device_model()
    weights = []
    for l in range(1, plan.n_layers + 1):
        W = np.asarray(plan.W[l - 1], dtype=np.float64)
        normals = rng.standard_normal(A.normals_shape(W.shape))
        Wc = A.program(W, _w_max(plan, l), model, process.t, normals,
                       compensate=process.compensate)
        for f in plan.fields_in("permanent"):
            if f.layer == l:
                Wc = stuck_matrix(W, f, int(chips.keys[c]), onto=Wc)
        sl = chips.records(l, c)  # stuck cells drawn as records (sparse rates)
        if sl.stop > sl.start:
            Wc[chips.out_start[sl], chips.in_start[sl]] = chips.value[sl]
        weights.append(Wc)
    return weights


def analog_outputs(plan, process, weights: list, X: np.ndarray, rng: np.random.Generator):
    """The network's outputs ``(n_inputs, n_L)`` on the chip with ``weights``, every tile
    through its DAC and ADC, with fresh output noise for every input (from ``rng``)."""
    y = np.asarray(X, dtype=np.float64)
    dac = process.dac_bits or None
    adc = process.adc_bits or None
    for l, layer in enumerate(plan.network.layers, start=1):
        W = weights[l - 1]
        z = np.zeros((y.shape[0], W.shape[0]))
        w_max = _w_max(plan, l)
        for o0, o1, i0, i1 in layer_tiles(plan, l):
            normals = (rng.standard_normal((y.shape[0], o1 - o0)) if process.out_noise > 0
                       else None)
            z[:, o0:o1] += A.tile_matvec(
                W[o0:o1, i0:i1], y[:, i0:i1], dac, adc, process.inp_bound, process.out_bound,
                w_max, out_noise=process.out_noise, normals=normals, bound_management=True)
        z += np.asarray(plan.b[l - 1], dtype=np.float64)
        y = np.asarray(layer.activation(z.astype(plan.dtype)), dtype=np.float64)
    return y.astype(plan.dtype)
