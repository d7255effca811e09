"""ANN-to-SNN conversion of a trained ReLU network (dense and conv).

Data-based normalisation (Diehl et al. 2015; Rueckauer et al. 2017, robust variant): with
``lambda_l`` the ``percentile``-th percentile (99.9 by default) of layer ``l``'s activations on
the given data (all neurons and inputs together; ``lambda_0 = 1``), the converted layer ``l < L``
gets ``W_l lambda_{l-1} / lambda_l`` and ``b_l / lambda_l`` and integrate-and-fire neurons with
threshold 1 and reset by subtraction, so that its rate approximates ``y_l / lambda_l`` (clipped
at 1 spike per step); the output layer gets ``W_L lambda_{L-1}`` and ``b_L`` and is read from
its membrane, so that the readout approximates the ANN's own output ``z_L``. BatchNorm is
already folded into the weights when a model is read (:mod:`neurosim.io.builder`). Max pooling
is gated by spike counts (:mod:`neurosim.spiking.snn`); average pooling and flattening are
linear and pass rates through.
"""

from __future__ import annotations

import numpy as np

from neurosim.errors import ValidationError, param_error
from neurosim.network import Network
from neurosim.spiking.neurons import IF, NeuronModel
from neurosim.spiking.snn import SpikingNetwork

__all__ = ["convert", "layer_scales"]


def layer_scales(network: Network, X, percentile: float = 99.9) -> list[float]:
    """``[lambda_1, ..., lambda_{L-1}]``: the ``percentile``-th percentile of each hidden
    layer's activations on ``X`` (a layer that is never active gets 1)."""
    if not (isinstance(percentile, (int, float)) and 0 < percentile <= 100):
        raise param_error("convert", "percentile", "a number in (0, 100]", percentile)
    ys = network.forward(X, return_all=True)
    scales = []
    for y in ys[1:-1]:
        lam = float(np.percentile(np.asarray(y, dtype=np.float64), percentile))
        scales.append(lam if lam > 0 else 1.0)
    return scales


def convert(network: Network, X, T: int = 32, percentile: float = 99.9,
            neuron: "NeuronModel | None" = None, encoding: str = "current",
            dt: float = 1.0, seed: int = 0) -> SpikingNetwork:
    """A :class:`SpikingNetwork` that approximates ``network`` (see the module docstring).

    Parameters
    ----------
    network : Network
        Hidden layers ReLU, output layer linear.
    X : array_like
        Data for the activation percentiles (training data, or a held-out part of it).
    T : int
        Time steps of the returned network (change later with :meth:`SpikingNetwork.with_T`).
    percentile : float
        Of the activations, per layer (100: the maximum, Diehl et al. 2015).
    neuron : NeuronModel, optional
        Hidden neurons; default ``IF(threshold=1.0, reset="subtract")``.
    encoding : {"current", "poisson"}
        Constant-current input (the default) or Poisson spikes (inputs in [0, 1]).
    """
    if not isinstance(network, Network):
        raise param_error("convert", "network", "a neurosim Network", network)
    for l, act in enumerate(network.activations[:-1], start=1):
        if act.name != "relu":
            raise ValidationError(
                f"convert needs ReLU hidden layers (a ReLU's rate code is what an IF neuron "
                f"reproduces); layer {l} is {act.name}.")
    if network.activations[-1].name != "identity":
        raise ValidationError(
            f"convert needs a linear output layer; the last layer is "
            f"{network.activations[-1].name}.")
    scales = layer_scales(network, X, percentile)
    lam = [1.0] + scales
    weights, biases = [], []
    L = network.n_layers
    for l, layer in enumerate(network.layers, start=1):
        out = lam[l] if l < L else 1.0
        weights.append(np.asarray(layer.synapse_weights, dtype=np.float64) * (lam[l - 1] / out))
        biases.append(np.asarray(layer.bias, dtype=np.float64) / out)
    weights = [w.astype(network.dtype) for w in weights]
    biases = [b.astype(network.dtype) for b in biases]
    meta = dict(network.metadata)
    meta["snn_conversion"] = {"method": "data-based normalisation (Rueckauer et al. 2017)",
                              "percentile": float(percentile), "scales": scales,
                              "calibration_inputs": int(np.shape(X)[0])}
    converted = network.with_weights(weights, biases, metadata=meta)
    hidden = IF(threshold=1.0, reset="subtract") if neuron is None else neuron
    return SpikingNetwork(converted, [hidden] * (L - 1) + [None], T=T, dt=dt, encoding=encoding,
                          readout="membrane", seed=seed)
