"""A spiking network: a :class:`~neurosim.network.Network` whose layers run as neurons over
``T`` time steps.

The weights, transforms and shapes are the wrapped network's; what is added is a neuron model
per weighted layer (:mod:`neurosim.spiking.neurons`; None: the layer stays graded and computes
``phi(I)`` at every step), how inputs become currents or spikes, and how the output is read.

At step ``t = 1..T`` the input layer emits ``s_0(t)``: the input itself (``encoding="current"``,
a constant current) or Bernoulli spikes with probability ``x`` (``encoding="poisson"``; inputs
must lie in [0, 1]; input ``k``'s spike train is drawn from ``SeedSequence([seed, k])``, so it
is the same for every fault draw and every runner), or the spikes of input neurons driven by
it (``encoding="neuron"``, with ``input_neuron``, a neuron model: ``x`` is their input current
at every step, e.g. the bias of lava-dl's input layer; they are not fault sites). Layer ``l``
receives
``I_l(t) = A_l T_l(s_{l-1}(t)) + b_l`` in the same step and emits ``s_l(t)`` (see the neuron
equations). A max pool after a spiking layer passes, in each window, the spike of the input
with the most spikes so far (this step included; among equals, a spiking one): Rueckauer et al.
(2017)'s gating, so that the pooled rate is the rate of the window's most active input.

Readout: ``"membrane"`` (the default) makes the output layer a non-leaky integrator without
threshold and returns the mean of its input current, ``(1/T) sum_t I_L(t)``; ``"count"`` makes
it spike with its own neuron model and returns its spike counts divided by ``T``; ``"li"``
feeds the output layer's current to a leaky integrator (``li``, an
:class:`~neurosim.spiking.neurons.LI`: NIR's ``LI``) and returns its membrane after the last
step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosim.errors import ValidationError, param_error
from neurosim.network import Network
from neurosim.spiking.neurons import LI, NeuronModel, make_neuron

__all__ = ["SpikingNetwork", "ENCODINGS", "READOUTS"]

ENCODINGS = ("current", "poisson", "neuron")
READOUTS = ("membrane", "count", "li")


@dataclass(frozen=True, eq=False)
class SpikingNetwork:
    """A network run as spiking neurons (see the module docstring).

    Parameters
    ----------
    network : Network
        Weights, biases, transforms; its activations are used by graded layers only.
    neurons : NeuronModel, str, or sequence of them
        One model for every hidden layer, or one per weighted layer (None or ``"graded"``: a
        graded layer). With ``readout="membrane"`` the output layer's entry must be None.
    T : int
        Time steps (>= 1).
    dt : float
        Euler step of the neuron equations (> 0).
    encoding : {"current", "poisson", "neuron"}
    readout : {"membrane", "count", "li"}
    seed : int
        Seed of the Poisson input spike trains.
    li : LI or dict, optional
        The output's leaky integrator (``readout="li"`` only).
    input_neuron : NeuronModel or dict, optional
        The input neurons of ``encoding="neuron"`` (only it takes one).
    """

    network: Network
    neurons: tuple
    T: int = 32
    dt: float = 1.0
    encoding: str = "current"
    readout: str = "membrane"
    seed: int = 0
    li: object = None
    input_neuron: object = None

    def __post_init__(self):
        if not isinstance(self.network, Network):
            raise param_error("SpikingNetwork", "network", "a neurosim Network", self.network)
        L = self.network.n_layers
        neurons = self.neurons
        if neurons is None or isinstance(neurons, (str, dict, NeuronModel)):
            hidden = make_neuron(neurons)
            last = hidden if self.readout == "count" else None
            neurons = [hidden] * (L - 1) + [last]
        neurons = tuple(make_neuron(n) for n in neurons)
        if len(neurons) != L:
            raise ValidationError(
                f"SpikingNetwork needs one neuron model per weighted layer ({L}); got "
                f"{len(neurons)}.")
        object.__setattr__(self, "neurons", neurons)
        if isinstance(self.T, bool) or not isinstance(self.T, (int, np.integer)) or self.T < 1:
            raise param_error("SpikingNetwork", "T", "a positive integer (time steps)", self.T)
        object.__setattr__(self, "T", int(self.T))
        try:
            dt = float(self.dt)
        except (TypeError, ValueError):
            raise param_error("SpikingNetwork", "dt", "a positive number", self.dt) from None
        if not (np.isfinite(dt) and dt > 0):
            raise param_error("SpikingNetwork", "dt", "a positive number", self.dt)
        object.__setattr__(self, "dt", dt)
        if self.encoding not in ENCODINGS:
            raise param_error("SpikingNetwork", "encoding",
                              f"one of {', '.join(map(repr, ENCODINGS))}", self.encoding)
        if self.readout not in READOUTS:
            raise param_error("SpikingNetwork", "readout",
                              f"one of {', '.join(map(repr, READOUTS))}", self.readout)
        if self.readout in ("membrane", "li") and neurons[-1] is not None:
            raise ValidationError(
                f"readout={self.readout!r} integrates the output layer's current: its neuron "
                "model must be None (graded); use readout='count' to read spike counts.")
        if self.readout == "count" and neurons[-1] is None:
            raise ValidationError("readout='count' needs a neuron model on the output layer.")
        if self.network.activations[-1].name != "identity" and self.readout != "count":
            raise ValidationError(f"readout={self.readout!r} needs a linear output layer.")
        li = self.li
        if isinstance(li, dict):
            d = dict(li)
            d.pop("kind", None)
            li = LI(**d)
        if (li is None) != (self.readout != "li") or not (li is None or isinstance(li, LI)):
            raise ValidationError("readout='li' needs li=LI(tau, r, v_leak), and only it takes "
                                  f"one (readout={self.readout!r}, li={self.li!r}).")
        object.__setattr__(self, "li", li)
        if li is not None:
            li.factors(self.network.widths[-1], dt)  # (sizes, dt / tau <= 1)
        for l, model in enumerate(neurons, start=1):
            if model is not None:
                model.params(self.network.widths[l], dt)  # (checks sizes and dt / tau)
        object.__setattr__(self, "seed", int(self.seed))
        inp = make_neuron(self.input_neuron) if self.input_neuron is not None else None
        if (inp is None) != (self.encoding != "neuron"):
            raise ValidationError("encoding='neuron' needs input_neuron (a neuron model), and "
                                  f"only it takes one (encoding={self.encoding!r}, "
                                  f"input_neuron={self.input_neuron!r}).")
        if inp is not None:
            inp.params(self.network.n_inputs, dt)  # (sizes, dt / tau <= 1)
        object.__setattr__(self, "input_neuron", inp)

    # --- convenience ------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.network.n_layers

    @property
    def spiking_layers(self) -> list[int]:
        """1-based indices of the layers with a neuron model."""
        return [l for l, m in enumerate(self.neurons, start=1) if m is not None]

    def spec(self) -> dict:
        """What a run file's config records of the spiking execution (JSON-able)."""
        return {"neurons": [None if m is None else m.to_dict() for m in self.neurons],
                "T": self.T, "dt": self.dt, "encoding": self.encoding, "readout": self.readout,
                "seed": self.seed, **({"li": self.li.to_dict()} if self.li is not None else {}),
                **({"input_neuron": self.input_neuron.to_dict()}
                   if self.input_neuron is not None else {})}

    def with_T(self, T: int) -> "SpikingNetwork":
        return SpikingNetwork(self.network, self.neurons, T, self.dt, self.encoding,
                              self.readout, self.seed, self.li, self.input_neuron)

    def with_network(self, network: Network) -> "SpikingNetwork":
        """The same execution on another network of the same shapes (a chip's quantized one)."""
        if network.widths != self.network.widths:
            raise ValidationError(f"SpikingNetwork.with_network needs widths {self.network.widths}; "
                                  f"got {network.widths}.")
        return SpikingNetwork(network, self.neurons, self.T, self.dt, self.encoding,
                              self.readout, self.seed, self.li, self.input_neuron)

    def readout_factors(self, dtype) -> tuple:
        """How the output integrates its current ``I_t``: ``r <- keep r + leak + gain I_t``
        from ``r = 0``, then ``r / divide`` (membrane: 1, 0, 1 and ``T``: the mean; li: the LI
        factors and 1), in ``dtype``."""
        m = self.network.widths[-1]
        if self.li is None:
            keep, leak, gain, divide = np.ones(m), np.zeros(m), np.ones(m), self.T
        else:
            (keep, leak, gain), divide = self.li.factors(m, self.dt), 1
        return (keep.astype(dtype), leak.astype(dtype), gain.astype(dtype), dtype.type(divide))

    def input_spikes(self, X: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """The input spike trains ``(T, n_rows, n_0)`` of rows ``X``, in the network's dtype:
        Poisson (``inputs``: the rows' input indices, which key their streams) or the input
        neurons' (``encoding="neuron"``: ``X`` their current at every step)."""
        X = np.asarray(X)
        if self.encoding == "neuron":
            from neurosim.spiking.reference import neuron_loop

            m = self.input_neuron
            p = {k: v.astype(np.float64) for k, v in m.params(X.shape[1], self.dt).items()}
            I = np.broadcast_to(X.astype(np.float64), (self.T,) + X.shape)
            return neuron_loop(I, p, m.reset == "subtract").astype(self.network.dtype)
        if np.any(X < 0) or np.any(X > 1):
            raise ValidationError(
                "encoding='poisson' reads inputs as spike probabilities per step: they must "
                f"lie in [0, 1]; got values in [{float(X.min()):g}, {float(X.max()):g}].")
        out = np.empty((self.T,) + X.shape, dtype=self.network.dtype)
        for r, k in enumerate(np.asarray(inputs, dtype=np.int64)):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(k)]))
            out[:, r] = rng.random((self.T,) + X.shape[1:]) < X[r]
        return out

    def run(self, X, inputs=None, record: bool = False):
        """The readout of ``X`` (:func:`neurosim.spiking.fast.run_fast`)."""
        from neurosim.spiking.fast import run_fast

        return run_fast(self, X, inputs=inputs, record=record)

    def predict(self, X) -> np.ndarray:
        """Class predictions: the argmax of the readout."""
        return np.argmax(self.run(X), axis=1)

    def __repr__(self) -> str:
        kinds = ",".join("graded" if m is None else m.kind for m in self.neurons)
        if self.input_neuron is not None:
            kinds = f"{self.input_neuron.kind} input | " + kinds
        return (f"<SpikingNetwork {self.network.widths} [{kinds}] T={self.T} dt={self.dt:g} "
                f"{self.encoding} input, {self.readout} readout>")
