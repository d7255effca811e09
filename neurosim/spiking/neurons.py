"""Neuron models of spiking layers, and the one time step each takes.

Every model is advanced by the forward Euler step of its differential equation with step
``dt``; ``I`` is the layer's input current at this step (``A_l T_l(s_{l-1}) + b_l``, where
``s_{l-1}`` are the previous layer's spikes of the *same* step), ``s`` the spikes it emits:

=========  ===================================================================================
``if``     ``v <- v + dt r I``
``lif``    ``v <- v + (dt / tau) (v_leak - v + r I)``
``cuba``   ``i <- i + (dt / tau_syn) (w_in I - i)``, then
           ``v <- v + (dt / tau_mem) (v_leak - v + r i)``  (NIR's ``CubaLIF``)
=========  ===================================================================================

then, for all three, ``s = 1`` where ``v >= threshold`` (else 0) and, where ``s = 1``, the
reset: ``v <- v - threshold`` (``reset="subtract"``, the default: what keeps a converted
network's rates proportional to its activations) or ``v <- v_reset`` (``reset="value"``: NIR's
IF and LIF). The state starts at ``v = v_reset`` (0 unless given; ``i = 0``).

As computed (the reference, :mod:`neurosim.spiking.reference`, and the Numba kernels, in this
order, in the network's floating type), with per-neuron factors from :meth:`NeuronModel.params`:
``i <- syn_keep i + syn_gain I``, ``v <- keep v + leak + gain i``, where for ``if``
``syn_keep = 0, syn_gain = 1, keep = 1, leak = 0, gain = dt r``; for ``lif`` (``k = dt / tau``)
``syn_keep = 0, syn_gain = 1, keep = 1 - k, leak = k v_leak, gain = k r``; for ``cuba_lif``
(``ks = dt / tau_syn, km = dt / tau_mem``) ``syn_keep = 1 - ks, syn_gain = ks w_in,
keep = 1 - km, leak = km v_leak, gain = km r``.

NIR states its neurons in continuous time (``tau dv/dt = (v_leak - v) + r I``); the NIR
reader turns them into these models with the graph's ``dt``; ``dt / tau`` must lie in (0, 1]
(a larger step overshoots ``v_leak`` and is no longer a leak).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from neurosim.errors import ValidationError, param_error
from neurosim.kernels.codes import NEURON_LEAK, NEURON_THRESHOLD

__all__ = ["NeuronModel", "IF", "LIF", "CubaLIF", "LI", "NEURONS", "make_neuron", "RESETS",
           "scaled_parameters"]

RESETS = ("subtract", "value")

#: Neuron models by name (``graded`` is not a model: a layer without one computes
#: ``phi(I)`` at every step).
NEURONS: dict[str, type] = {}


def _register(cls):
    NEURONS[cls.kind] = cls
    return cls


def _names(obj) -> list:
    """The parameters of a model (its dataclass fields, without the class constants)."""
    return [f.name for f in fields(obj)]


def _parameter(owner: str, name: str, value, positive: bool = False) -> "float | np.ndarray":
    """A finite scalar or 1-D array (one value per neuron), as float64."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(owner, name, "a finite number or one per neuron", value) from None
    if arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise param_error(owner, name, "a finite number or a 1-D array of them", value)
    if positive and np.any(arr <= 0):
        raise param_error(owner, name, "positive", value)
    return float(arr) if arr.ndim == 0 else arr


@dataclass(frozen=True, eq=False)
class NeuronModel:
    """Base class: a spiking neuron model (see the module docstring for the equations)."""

    kind: ClassVar[str] = ""
    #: names of the state variables, the membrane ``v`` last
    state_names: ClassVar[tuple] = ("v",)

    threshold: "float | np.ndarray" = 1.0
    reset: str = "subtract"
    v_reset: "float | np.ndarray" = 0.0

    def __post_init__(self):
        owner = type(self).__name__
        object.__setattr__(self, "threshold", _parameter(owner, "threshold", self.threshold,
                                                         positive=True))
        object.__setattr__(self, "v_reset", _parameter(owner, "v_reset", self.v_reset))
        if self.reset not in RESETS:
            raise param_error(owner, "reset", f"one of {', '.join(map(repr, RESETS))}", self.reset)

    # --- what the kernels read ------------------------------------------------------------
    def params(self, n: int, dt: float) -> dict:
        """Every parameter as an array of ``n`` (per neuron), and the Euler factors for ``dt``."""
        out = {"threshold": self._full("threshold", n), "v_reset": self._full("v_reset", n)}
        out.update(self._dynamics(n, dt))
        return out

    def _full(self, name: str, n: int) -> np.ndarray:
        value = getattr(self, name)
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) \
            if np.ndim(value) == 0 else np.asarray(value, dtype=np.float64)
        if arr.shape != (n,):
            raise ValidationError(
                f"{type(self).__name__}'s {name} has {arr.size} values; the layer has {n} "
                "neurons (give one value or one per neuron).")
        return np.array(arr)

    def _dynamics(self, n: int, dt: float) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _ratio(self, name: str, n: int, dt: float) -> np.ndarray:
        ratio = dt / self._full(name, n)
        if np.any(ratio > 1.0):
            raise ValidationError(
                f"{type(self).__name__}: dt / {name} = {float(np.max(ratio)):g} > 1 (dt {dt:g}); "
                f"the Euler step would overshoot. Use a smaller dt or a larger {name}.")
        return ratio

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        for name in _names(self):
            value = getattr(self, name)
            d[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return d

    def __eq__(self, other):
        return type(other) is type(self) and all(
            np.array_equal(np.asarray(getattr(self, n)), np.asarray(getattr(other, n)))
            for n in _names(self))

    def __hash__(self):
        return hash((self.kind, self.reset))

    def __repr__(self):
        parts = []
        for name in _names(self):
            value = getattr(self, name)
            parts.append(f"{name}=<{value.size} values>" if isinstance(value, np.ndarray)
                         else f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@_register
@dataclass(frozen=True, eq=False, repr=False)
class IF(NeuronModel):
    """Integrate and fire: ``v <- v + dt r I``; spike at ``v >= threshold``."""

    kind: ClassVar[str] = "if"
    r: "float | np.ndarray" = 1.0

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "r", _parameter("IF", "r", self.r))

    def _dynamics(self, n, dt):
        return {"keep": np.ones(n), "gain": dt * self._full("r", n), "leak": np.zeros(n),
                "syn_keep": np.zeros(n), "syn_gain": np.ones(n)}


@_register
@dataclass(frozen=True, eq=False, repr=False)
class LIF(NeuronModel):
    """Leaky integrate and fire: ``v <- v + (dt / tau) (v_leak - v + r I)``."""

    kind: ClassVar[str] = "lif"
    tau: "float | np.ndarray" = 10.0
    v_leak: "float | np.ndarray" = 0.0
    r: "float | np.ndarray" = 1.0

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "tau", _parameter("LIF", "tau", self.tau, positive=True))
        object.__setattr__(self, "v_leak", _parameter("LIF", "v_leak", self.v_leak))
        object.__setattr__(self, "r", _parameter("LIF", "r", self.r))

    def _dynamics(self, n, dt):
        k = self._ratio("tau", n, dt)
        return {"keep": 1.0 - k, "gain": k * self._full("r", n),
                "leak": k * self._full("v_leak", n), "syn_keep": np.zeros(n),
                "syn_gain": np.ones(n)}


@_register
@dataclass(frozen=True, eq=False, repr=False)
class CubaLIF(NeuronModel):
    """Current-based LIF (NIR's ``CubaLIF``): a synaptic current ``i`` low-pass filters the
    input, the membrane integrates ``i`` as :class:`LIF` integrates ``I``."""

    kind: ClassVar[str] = "cuba_lif"
    state_names: ClassVar[tuple] = ("i", "v")
    tau_syn: "float | np.ndarray" = 5.0
    tau_mem: "float | np.ndarray" = 10.0
    v_leak: "float | np.ndarray" = 0.0
    r: "float | np.ndarray" = 1.0
    w_in: "float | np.ndarray" = 1.0

    def __post_init__(self):
        super().__post_init__()
        for name, positive in (("tau_syn", True), ("tau_mem", True), ("v_leak", False),
                               ("r", False), ("w_in", False)):
            object.__setattr__(self, name, _parameter("CubaLIF", name, getattr(self, name),
                                                      positive=positive))

    def _dynamics(self, n, dt):
        ks = self._ratio("tau_syn", n, dt)
        km = self._ratio("tau_mem", n, dt)
        return {"keep": 1.0 - km, "gain": km * self._full("r", n),
                "leak": km * self._full("v_leak", n), "syn_keep": 1.0 - ks,
                "syn_gain": ks * self._full("w_in", n)}


@dataclass(frozen=True, eq=False)
class LI:
    """A leaky integrator without threshold (NIR's ``LI``): the ``readout="li"`` of a
    SpikingNetwork. ``tau dv/dt = (v_leak - v) + r I``, stepped as the neurons are
    (``k = dt / tau``): ``v <- (1 - k) v + k v_leak + k r I``, from ``v = 0``; the readout is
    ``v`` after the last step."""

    tau: "float | np.ndarray" = 10.0
    r: "float | np.ndarray" = 1.0
    v_leak: "float | np.ndarray" = 0.0

    kind: ClassVar[str] = "li"
    _full = NeuronModel._full
    _ratio = NeuronModel._ratio

    def __post_init__(self):
        object.__setattr__(self, "tau", _parameter("LI", "tau", self.tau, positive=True))
        object.__setattr__(self, "r", _parameter("LI", "r", self.r))
        object.__setattr__(self, "v_leak", _parameter("LI", "v_leak", self.v_leak))

    def factors(self, n: int, dt: float) -> tuple:
        """``(keep, leak, gain)`` per neuron (float64): ``v <- keep v + leak + gain I``."""
        k = self._ratio("tau", n, dt)
        return 1.0 - k, k * self._full("v_leak", n), k * self._full("r", n)

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        for name in ("tau", "r", "v_leak"):
            value = getattr(self, name)
            d[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return d

    def __eq__(self, other):
        return type(other) is LI and all(
            np.array_equal(np.asarray(getattr(self, n)), np.asarray(getattr(other, n)))
            for n in ("tau", "r", "v_leak"))

    def __hash__(self):
        return hash(self.kind)


def make_neuron(spec) -> "NeuronModel | None":
    """A neuron model from a model, a name (``"if"``, ``"lif"``, ``"cuba_lif"``; ``"graded"``
    and None: no model), or a dict ``{"kind": ..., parameters}`` (what :meth:`to_dict` wrote)."""
    if spec is None or isinstance(spec, NeuronModel):
        return spec
    if isinstance(spec, str):
        if spec == "graded":
            return None
        if spec not in NEURONS:
            raise ValidationError(
                f"Unknown neuron model {spec!r}; expected 'graded' or one of "
                f"{', '.join(map(repr, NEURONS))}.")
        return NEURONS[spec]()
    if isinstance(spec, dict):
        d = dict(spec)
        kind = d.pop("kind", None)
        if kind == "graded":
            return None
        if kind not in NEURONS:
            raise ValidationError(
                f"Unknown neuron model {kind!r} in {spec!r}; expected 'graded' or one of "
                f"{', '.join(map(repr, NEURONS))}.")
        cls = NEURONS[kind]
        unknown = set(d) - set(_names(cls))
        if unknown:
            raise ValidationError(
                f"{cls.__name__} has no parameter {', '.join(sorted(map(repr, unknown)))}; its "
                f"parameters are {', '.join(_names(cls))}.")
        return cls(**d)
    raise ValidationError(f"A neuron model must be a NeuronModel, a name or a dict; got {spec!r}.")


def scaled_parameters(p: dict, parameter: int, factor) -> None:
    """Scale a neuron's factors ``p`` (``threshold``, ``keep``, ``leak``: arrays or scalars
    of one neuron, modified in place) as a ``parameter`` fault with ``factor`` says."""
    if parameter == NEURON_THRESHOLD:
        p["threshold"] = p["threshold"] * factor
    elif parameter == NEURON_LEAK:
        rate = 1 - p["keep"]
        scaled = np.minimum(1, factor * rate)
        p["leak"] = np.where(rate > 0, p["leak"] * (scaled / np.where(rate > 0, rate, 1)),
                             p["leak"])
        p["keep"] = 1 - scaled
    else:  # pragma: no cover - codes are ours
        raise ValueError(f"unknown neuron parameter code {parameter}")
