"""Parametric faults of spiking neurons: a neuron's threshold or leak scaled by a factor.

SpikeFI's parametric neuron faults (Spyrou et al. 2024), and the mismatch of analog neurons
(DYNAP-SE2: about 10 % sigma, docs/HARDWARE.md): each neuron of a spiking layer is perturbed
independently with rate ``p``, and a perturbed neuron's parameter is multiplied by a factor
``f`` drawn from a stated distribution, independently per neuron:

* ``factor=F`` (one value) or ``factor=F1/F2/...`` (each equally likely);
* ``lognormal=S``: ``f = exp(S Z)``, ``Z`` standard normal (median 1, always positive);
* ``uniform=LO/HI``: ``f`` uniform on ``[LO, HI]`` (``0 < LO < HI``).

What the factor scales, in the Euler step of :mod:`neurosim.spiking.neurons`
(``v <- keep v + leak + gain i``, spike at ``v >= threshold``):

* **threshold** (:class:`ThresholdPerturbation`, ``threshold:``): ``threshold := f threshold``
  (the reset by subtraction takes the new threshold too);
* **leak** (:class:`LeakPerturbation`, ``leak:``): the membrane's decay rate ``1 - keep`` and its
  pull to ``v_leak`` scale together, the input gain does not (Loihi's CUBA neuron keeps the
  decay and the input in separate registers): ``keep := 1 - min(1, f (1 - keep))``,
  ``leak := f leak`` for ``f (1 - keep) <= 1`` (else ``leak / (1 - keep)``: the membrane then
  forgets its past every step). An IF neuron has no leak (``keep = 1``): by default the fault
  acts on the layers with a leak, and naming a layer without one is an error.

Both act on layers with a neuron model only (``layers=`` names them; default: every spiking
layer). The continuous distributions have no finite outcome set, so certify samples them
(its stratified estimator enumerates outcomes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neurosim.errors import ValidationError, param_error
from neurosim.faults.base import (FaultType, ProfileField, format_number, probability,
                                  register_fault)
from neurosim.kernels.codes import NEURON_LEAK, NEURON_THRESHOLD
from neurosim.sampler import FaultGroup
from neurosim.spiking.neurons import scaled_parameters

__all__ = ["ThresholdPerturbation", "LeakPerturbation", "NeuronParameterFault",
           "scaled_parameters"]  # (scaled_parameters: neurosim.spiking.neurons)

#: The factor distributions and what their spec value holds.
DISTRIBUTIONS = ("factor", "lognormal", "uniform")


@dataclass(frozen=True)
class NeuronParameterFault(FaultType):
    """Base of the parametric neuron faults (see the module docstring).

    Parameters
    ----------
    p : float
        Probability that a neuron is perturbed.
    factor : float or sequence of float, optional
        The factor, or equally likely factors (all > 0).
    lognormal : float, optional
        ``S > 0``: the factor is ``exp(S Z)``.
    uniform : (float, float), optional
        ``(LO, HI)``: the factor is uniform on ``[LO, HI]``.
    layers : sequence of int, optional
        Spiking layers (1-based) to perturb; default every layer with a neuron model.

    Exactly one of ``factor``, ``lognormal`` and ``uniform`` is given.
    """

    p: float = 0.0
    factor: "float | tuple | None" = None
    lognormal: "float | None" = None
    uniform: "tuple | None" = None
    layers: "tuple | None" = None

    spec_keys = {"p": "probability that a neuron is perturbed",
                 "factor": "the factor, or equally likely factors separated by /",
                 "lognormal": "S: factor exp(S Z), Z standard normal",
                 "uniform": "LO/HI: factor uniform on [LO, HI]",
                 "layers": "spiking layer indices (default: every spiking layer)"}
    list_keys = ("layers",)
    #: The ``crash_mode`` code of its records (which parameter the factor scales).
    parameter: ClassVar[int] = -1
    #: What the factor scales, for messages.
    what: ClassVar[str] = ""

    def __post_init__(self):
        owner = type(self).__name__
        object.__setattr__(self, "p", probability(owner, "p", self.p))
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValidationError(
                f"{owner} needs exactly one factor distribution: factor=F (or F1/F2/...), "
                f"lognormal=S or uniform=LO/HI. Got {', '.join(given) or 'none'}.")
        if self.factor is not None:
            values = (self.factor,) if np.ndim(self.factor) == 0 else tuple(self.factor)
            factors = tuple(_positive(owner, "factor", v) for v in values)
            if not factors:
                raise param_error(owner, "factor", "one or more positive numbers", self.factor)
            object.__setattr__(self, "factor", factors)
        if self.lognormal is not None:
            object.__setattr__(self, "lognormal", _positive(owner, "lognormal", self.lognormal))
        if self.uniform is not None:
            try:
                lo, hi = (float(v) for v in self.uniform)
            except (TypeError, ValueError):
                raise param_error(owner, "uniform", "two numbers (LO, HI)", self.uniform) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
                raise param_error(owner, "uniform", "(LO, HI) with 0 < LO < HI", self.uniform)
            object.__setattr__(self, "uniform", (lo, hi))
        if self.layers is not None:
            try:
                layers = tuple(int(v) for v in self.layers)
            except (TypeError, ValueError):
                raise param_error(owner, "layers", "layer indices >= 1", self.layers) from None
            if not layers or min(layers) < 1 or len(set(layers)) != len(layers):
                raise param_error(owner, "layers", "distinct layer indices >= 1", self.layers)
            object.__setattr__(self, "layers", layers)

    # --- what a faulty neuron gets ---------------------------------------------------------
    @property
    def enumerable(self) -> bool:
        """Whether the factor has finitely many values (what exact enumeration needs)."""
        return self.factor is not None

    def is_null(self) -> bool:
        return self.p == 0.0

    def applies_to(self, spiking) -> bool:
        """Spiking targets only (a graded network has no thresholds or leaks)."""
        return spiking is not None

    def draw_factors(self, rng, n: int) -> np.ndarray:
        """``n`` factors of the continuous distributions."""
        if self.lognormal is not None:
            return np.exp(self.lognormal * rng.standard_normal(n))
        lo, hi = self.uniform
        return lo + (hi - lo) * rng.random(n)

    # --- text -----------------------------------------------------------------------------
    def spec(self, legacy: bool = False) -> str:
        s = f"{self.kind}:p={format_number(self.p)}"
        if self.factor is not None:
            s += ",factor=" + "/".join(format_number(v) for v in self.factor)
        elif self.lognormal is not None:
            s += f",lognormal={format_number(self.lognormal)}"
        else:
            s += f",uniform={format_number(self.uniform[0])}/{format_number(self.uniform[1])}"
        if self.layers is not None:
            s += ",layers=" + ",".join(map(str, self.layers))
        return s

    @classmethod
    def from_params(cls, params: dict, text: str) -> "NeuronParameterFault":
        def numbers(key):
            try:
                return tuple(float(v) for v in params[key][0].split("/"))
            except ValueError:
                raise ValidationError(
                    f"The {key!r} value of fault {cls.kind!r} must be a number or numbers "
                    f"separated by '/'. Got {params[key][0]!r} in --fault {text!r}.") from None

        layers = cls.layer_list(params, text)
        kw = {}
        if "factor" in params:
            kw["factor"] = numbers("factor")
        if "lognormal" in params:
            kw["lognormal"] = cls.number(params, "lognormal", text)
        if "uniform" in params:
            kw["uniform"] = numbers("uniform")
        return cls(cls.number(params, "p", text), layers=layers, **kw)

    @classmethod
    def from_profile(cls, rates) -> "NeuronParameterFault":
        """A profile's mismatch ``S`` (``[fault_rates]``): every neuron's factor
        ``exp(S Z)``, fixed per chip instance (permanent); 0: the null process."""
        sigma = float(getattr(rates, cls.profile_fields[0].name, 0.0))
        if sigma <= 0:
            return cls(0.0, factor=1.0)
        return cls(1.0, lognormal=sigma, mode="permanent")

    # --- lowering -------------------------------------------------------------------------
    def target_layers(self, plan) -> list:
        """The spiking layers this process perturbs (checked against the plan)."""
        snn = getattr(plan, "spiking", None)
        if snn is None:
            raise ValidationError(
                f"The {self.kind} fault scales a spiking neuron's {self.what}; this network runs "
                "graded neurons. Give a SpikingNetwork (neurosim.spiking).")
        spiking = snn.spiking_layers
        if self.layers is None:
            return spiking
        for l in self.layers:
            if l not in spiking:
                raise ValidationError(
                    f"The {self.kind} fault names layer {l}, which has no neuron model (spiking "
                    f"layers: {', '.join(map(str, spiking)) or 'none'}).")
        return list(self.layers)

    def check(self, plan) -> None:
        if not self.is_null():
            self.target_layers(plan)

    def groups(self, plan) -> list:
        if self.is_null():
            return []
        k = len(self.factor) if self.factor is not None else 1
        return [FaultGroup(self.kind, l, -1, plan.widths[l], self.p, (1.0 / k,) * k, "neuron")
                for l in self.target_layers(plan)]

    def draw_outcomes(self, plan, rng, positions) -> dict:
        """Discrete factors: each faulty neuron's factor index. Continuous ones: the factors
        themselves (floats; nothing enumerates them)."""
        out = {}
        for key, (_, pos) in positions.items():
            if key[0] != self.kind:
                continue
            if self.factor is None:
                out[key] = self.draw_factors(rng, pos.size)
            elif len(self.factor) > 1:
                out[key] = rng.integers(0, len(self.factor), size=pos.size, dtype=np.int64)
        return out

    def add_records(self, plan, positions, outcomes, builder) -> None:
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        for l in self.target_layers(plan) if not self.is_null() else []:
            draws, pos = positions.get((self.kind, l), empty)
            if not draws.size:
                continue
            drawn = outcomes.get((self.kind, l))
            if self.factor is not None:
                index = np.zeros(pos.size, np.int64) if drawn is None else drawn
                factor = np.asarray(self.factor)[index]
            elif drawn is None:
                raise ValidationError(
                    f"The {self.kind} fault's {'lognormal' if self.lognormal else 'uniform'} "
                    "factors have no finite set of outcomes to enumerate; use certify with "
                    "method='sampled', or give factor=F1/F2/... .")
            else:
                factor = drawn
            builder.add_neuron(l, draws, pos, self.parameter, factor)


def _positive(owner, name, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise param_error(owner, name, "a positive number", value) from None
    if not (math.isfinite(v) and v > 0):
        raise param_error(owner, name, "a positive number", value)
    return v


def _mismatch_field(name: str, what: str, label: str) -> ProfileField:
    """The ``[fault_rates]`` key of a parameter's mismatch."""
    return ProfileField(
        f"neuron_{name}_mismatch",
        f"Mismatch of spiking neurons' {name}s: sigma S of the lognormal factor exp(S Z) on "
        f"every neuron's {what}, fixed per chip (analog chips; 0: none).",
        "sigma (log scale)", label, required=False, default=0.0)


def _leaky_layers(snn, layers) -> list:
    """Those of ``layers`` (spiking, 1-based) whose neurons leak (``keep < 1``)."""
    return [l for l in layers
            if np.any(snn.neurons[l - 1].params(snn.network.widths[l], snn.dt)["keep"] < 1)]


@register_fault
@dataclass(frozen=True)
class ThresholdPerturbation(NeuronParameterFault):
    """A perturbed neuron's threshold is multiplied by the factor (see the module docstring).
    Spec: ``threshold:p=0.01,factor=0.5``, ``threshold:p=1,lognormal=0.1,mode=permanent``."""

    kind = "threshold"
    parameter = NEURON_THRESHOLD
    what = "threshold"
    profile_fields = (_mismatch_field("threshold", "threshold", "vth mism."),)


@register_fault
@dataclass(frozen=True)
class LeakPerturbation(NeuronParameterFault):
    """A perturbed neuron's decay rate (and pull to ``v_leak``) is multiplied by the factor
    (see the module docstring). Spec: ``leak:p=0.01,factor=2``."""

    kind = "leak"
    parameter = NEURON_LEAK
    what = "leak"
    profile_fields = (_mismatch_field("leak", "decay rate", "leak mism."),)

    def applies_to(self, spiking) -> bool:
        """Spiking targets with a layer that leaks."""
        return spiking is not None and bool(_leaky_layers(spiking, spiking.spiking_layers))

    def target_layers(self, plan) -> list:
        """The spiking layers with a leak (default), or those named (each must have one)."""
        layers = super().target_layers(plan)
        leaky = _leaky_layers(plan.spiking, layers)
        if self.layers is not None and leaky != layers:
            bad = sorted(set(layers) - set(leaky))
            raise ValidationError(
                f"The leak fault names layer {bad[0]}, whose neurons have no leak (IF neurons).")
        if not leaky:
            raise ValidationError(
                "The leak fault scales the membrane's leak, and no spiking layer of this network "
                "has one (IF neurons only).")
        return leaky
