"""Fault models and their sparse sampling.

Fault semantics (the documentation states them exactly like this):

* **Neuron crash**, per-layer rate ``p_l`` (input layer optional, hidden and output layers):
  ``silent`` (default, hardware: a dead neuron emits nothing) ``y_i := 0``;
  ``paper`` (Def. 3: incoming weights zeroed) ``z_i := b_i, y_i := phi(b_i)``;
  ``stuck`` ``y_i := v`` (saturated neuron).
* **Synapse / crossbar cell**: stuck-at-0 (open, ``W_ij := 0``), stuck-at-max (``|W_ij| :=``
  the layer's largest representable magnitude, sign kept: on a mapping the word's largest value
  of that sign, ``scale * q_max`` or ``scale * |q_min|``; on the float network ``max |W_l|``;
  a zero weight becomes positive), each
  with its own rate. A synapse is stuck at 0 with probability ``p_zero``, at max with
  ``p_max``, healthy otherwise.
* **Bit flip** in the profile's integer weight word (two's complement, ``weight_bits`` wide;
  Loihi's mixed-sign layers store ``Q / 2``, single-sign layers the magnitude ``|Q|``), each
  bit independently with probability ``p_bit``.
* **Core failure**: every neuron mapped to a failed core crashes (silently: the core emits
  nothing); on crossbar profiles a failed tile contributes nothing (its weight block reads 0).
  Spare cores of the profile, which fail at the same rate, replace failed cores of their chip,
  lowest core id first.
* **Transient** faults are drawn afresh for every input (paper Def. 5); **permanent** faults are
  drawn once per chip instance and shared by all inputs.

Sampling is sparse: a fault count per layer (or chip) from the binomial distribution, then
distinct positions; never one random draw per neuron or weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import ValidationError, param_error

__all__ = [
    "FaultProcess",
    "NeuronCrash",
    "SynapseStuck",
    "WeightBitFlip",
    "CoreFailure",
    "FaultModel",
    "parse_fault_spec",
    "profile_faults",
    "CRASH_SEMANTICS",
]

CRASH_SEMANTICS = ("silent", "paper", "stuck")
# Codes shared with the kernels.
SEM_SILENT, SEM_PAPER, SEM_STUCK = 0, 1, 2
# Fault record types in a FaultBatch.
F_CRASH, F_WEIGHT, F_TILE = 0, 1, 2


def _probability(owner: str, name: str, value) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise param_error(owner, name, "a float in [0, 1]", value) from None
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise param_error(owner, name, "a float in [0, 1]", value)
    return p


class FaultProcess:
    """Base class of the fault processes; ``a + b`` builds a :class:`FaultModel`."""

    kind = "fault"

    def __add__(self, other) -> "FaultModel":
        return FaultModel([self]) + other

    def __radd__(self, other):
        if other == 0:  # sum([...])
            return FaultModel([self])
        return NotImplemented

    def spec(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def is_null(self) -> bool:
        """True when the process can never produce a fault."""
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True)
class NeuronCrash(FaultProcess):
    """Neurons crash independently, each with its layer's rate.

    Parameters
    ----------
    p : float or sequence of float
        A scalar applies to every on-chip neuron (hidden and output layers 1..L). A sequence of
        L rates gives layers 1..L; a sequence of L + 1 rates gives layers 0..L (0 is the input).
    semantics : {"silent", "paper", "stuck"}
        What a crashed neuron outputs (see the module docstring).
    value : float
        The output of a stuck neuron (``semantics="stuck"``).
    layers : sequence of int, optional
        Restrict a scalar rate to these layers; the input layer (0) crashes only when named.
    """

    p: "float | tuple" = 0.0
    semantics: str = "silent"
    value: float = 0.0
    layers: "tuple | None" = None
    kind = "crash"

    def __post_init__(self):
        if np.ndim(self.p) == 0:
            object.__setattr__(self, "p", _probability("NeuronCrash", "p", self.p))
        else:
            rates = tuple(_probability("NeuronCrash", "p", v) for v in self.p)
            if not rates:
                raise param_error("NeuronCrash", "p", "a float or a non-empty list of floats", self.p)
            object.__setattr__(self, "p", rates)
            if self.layers is not None:
                raise ValidationError(
                    "NeuronCrash takes 'layers' only with a scalar 'p'; a list of rates already "
                    "gives one rate per layer."
                )
        if self.semantics not in CRASH_SEMANTICS:
            raise param_error("NeuronCrash", "semantics", f"one of {CRASH_SEMANTICS}", self.semantics)
        if not math.isfinite(float(self.value)):
            raise param_error("NeuronCrash", "value", "a finite float", self.value)
        object.__setattr__(self, "value", float(self.value))
        if self.layers is not None:
            layers = tuple(int(l) for l in self.layers)
            if any(l < 0 for l in layers) or not layers:
                raise param_error("NeuronCrash", "layers", "non-negative layer indices", self.layers)
            object.__setattr__(self, "layers", layers)

    def layer_rates(self, n_layers: int) -> np.ndarray:
        """Crash rate of layers 0..L (index 0 is the input layer)."""
        rates = np.zeros(n_layers + 1)
        if np.ndim(self.p) == 0:
            chosen = self.layers if self.layers is not None else range(1, n_layers + 1)
            for l in chosen:
                if l > n_layers:
                    raise ValidationError(
                        f"NeuronCrash names layer {l}, but the network has layers 0..{n_layers}."
                    )
                rates[l] = self.p
        elif len(self.p) == n_layers:
            rates[1:] = self.p
        elif len(self.p) == n_layers + 1:
            rates[:] = self.p
        else:
            raise ValidationError(
                f"The 'p' parameter of NeuronCrash must be a scalar, {n_layers} rates (layers "
                f"1..{n_layers}) or {n_layers + 1} rates (layers 0..{n_layers}). Got {len(self.p)} "
                "rates instead."
            )
        return rates

    def is_null(self) -> bool:
        return np.all(np.asarray(self.p) == 0)

    def spec(self) -> str:
        if np.ndim(self.p) == 0:
            s = f"crash:p={self.p:g}"
        else:
            s = "crash:p=" + "/".join(f"{v:g}" for v in self.p)
        if self.layers is not None:
            s += ",layers=" + ",".join(map(str, self.layers))
        if self.semantics != "silent":
            s += f",semantics={self.semantics}"
        if self.semantics == "stuck":
            s += f",value={self.value:g}"
        return s


@dataclass(frozen=True)
class SynapseStuck(FaultProcess):
    """Synapses (crossbar cells) stuck at 0 with ``p_zero``, at the maximum with ``p_max``."""

    p_zero: float = 0.0
    p_max: float = 0.0
    kind = "stuck"

    def __post_init__(self):
        object.__setattr__(self, "p_zero", _probability("SynapseStuck", "p_zero", self.p_zero))
        object.__setattr__(self, "p_max", _probability("SynapseStuck", "p_max", self.p_max))
        if self.p_zero + self.p_max > 1.0:
            raise ValidationError(
                "The rates of SynapseStuck must add up to at most 1 (a synapse is stuck at 0, at "
                f"max, or healthy). Got p_zero + p_max = {self.p_zero + self.p_max:g} instead."
            )

    def is_null(self) -> bool:
        return self.p_zero == 0 and self.p_max == 0

    def spec(self) -> str:
        return f"stuck:p0={self.p_zero:g},p1={self.p_max:g}"


@dataclass(frozen=True)
class WeightBitFlip(FaultProcess):
    """Each bit of every stored integer weight word flips with probability ``p_bit``."""

    p_bit: float = 0.0
    kind = "bitflip"

    def __post_init__(self):
        object.__setattr__(self, "p_bit", _probability("WeightBitFlip", "p_bit", self.p_bit))

    def is_null(self) -> bool:
        return self.p_bit == 0

    def spec(self) -> str:
        return f"bitflip:p={self.p_bit:g}"


@dataclass(frozen=True)
class CoreFailure(FaultProcess):
    """Each core (crossbar tile), spares included, fails with probability ``p_core``."""

    p_core: float = 0.0
    kind = "core"

    def __post_init__(self):
        object.__setattr__(self, "p_core", _probability("CoreFailure", "p_core", self.p_core))

    def is_null(self) -> bool:
        return self.p_core == 0

    def spec(self) -> str:
        return f"core:p={self.p_core:g}"


@dataclass
class FaultModel:
    """Several fault processes acting together (at most one of each kind)."""

    processes: list = field(default_factory=list)

    def __post_init__(self):
        seen = set()
        for proc in self.processes:
            if not isinstance(proc, FaultProcess):
                raise param_error("FaultModel", "processes", "fault processes", proc)
            if proc.kind in seen:
                raise ValidationError(
                    f"A fault model may hold one {type(proc).__name__}; give one with all its "
                    "rates instead of two."
                )
            seen.add(proc.kind)

    def __add__(self, other) -> "FaultModel":
        if isinstance(other, FaultProcess):
            return FaultModel(self.processes + [other])
        if isinstance(other, FaultModel):
            return FaultModel(self.processes + other.processes)
        return NotImplemented

    def get(self, kind: str):
        for proc in self.processes:
            if proc.kind == kind:
                return proc
        return None

    def active(self) -> list:
        return [p for p in self.processes if not p.is_null()]

    def spec(self) -> str:
        return " ".join(p.spec() for p in self.processes) or "none"

    def __str__(self) -> str:
        return self.spec()


def as_fault_model(faults) -> FaultModel:
    if isinstance(faults, FaultModel):
        return faults
    if isinstance(faults, FaultProcess):
        return FaultModel([faults])
    if isinstance(faults, (list, tuple)):
        return FaultModel(list(faults))
    raise param_error("simulate", "faults", "a fault process or FaultModel", faults)


def resolve_faults(target, faults, owner: str = "simulate") -> FaultModel:
    """``faults`` as a FaultModel; None means the profile's defaults of a Mapping ``target``."""
    from neurosim.mapping import Mapping

    if faults is None:
        if not isinstance(target, Mapping):
            raise ValidationError(
                f"{owner} needs 'faults' when given a Network; only a Mapping has default rates "
                "(from its profile)."
            )
        return profile_faults(target.profile)
    return as_fault_model(faults)


def profile_faults(profile) -> FaultModel:
    """The profile's default fault set (processes with a zero rate left out)."""
    r = profile.fault_rates
    procs = [
        NeuronCrash(r.neuron_crash),
        SynapseStuck(r.synapse_stuck_at_zero, r.synapse_stuck_at_max),
        WeightBitFlip(r.weight_bit_flip),
        CoreFailure(r.core_failure),
    ]
    return FaultModel([p for p in procs if not p.is_null()])


_SPEC_KEYS = {
    "crash": {"p", "layers", "semantics", "value"},
    "stuck": {"p0", "p1"},
    "bitflip": {"p"},
    "core": {"p"},
}


def parse_fault_spec(text: str) -> "FaultProcess | None":
    """Parse one ``--fault`` value, e.g. ``crash:p=1e-3,layers=1,2`` or ``stuck:p0=0.01,p1=0.09``.

    ``profile`` returns None (meaning: the profile's default set).

    Raises
    ------
    ValidationError
        For an unknown fault name or key, or a value that is not a number in range.
    """
    text = text.strip()
    if text == "profile":
        return None
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name not in _SPEC_KEYS:
        raise ValidationError(
            f"Unknown fault {name!r} in --fault {text!r}. Valid faults: "
            f"{', '.join(_SPEC_KEYS)} (or 'profile' for the profile's defaults)."
        )
    params: dict[str, list[str]] = {}
    key = None
    for token in filter(None, (t.strip() for t in rest.split(","))):
        if "=" in token:
            key, _, value = token.partition("=")
            key = key.strip()
            if key not in _SPEC_KEYS[name]:
                raise ValidationError(
                    f"Unknown key {key!r} for fault {name!r} in --fault {text!r}. Valid keys: "
                    f"{', '.join(sorted(_SPEC_KEYS[name]))}."
                )
            params[key] = [value.strip()]
        elif key == "layers":
            params[key].append(token)
        else:
            raise ValidationError(f"Cannot parse {token!r} in --fault {text!r}: expected key=value.")

    def number(key):
        try:
            return float(params[key][0])
        except ValueError:
            raise ValidationError(
                f"The {key!r} value of fault {name!r} must be a number. Got {params[key][0]!r} "
                f"in --fault {text!r}."
            ) from None

    if name == "crash":
        if "p" not in params:
            raise ValidationError(f"--fault {text!r}: crash needs p=RATE.")
        layers = None
        if "layers" in params:
            try:
                layers = tuple(int(v) for v in params["layers"])
            except ValueError:
                raise ValidationError(
                    f"--fault {text!r}: layers must be integers, e.g. layers=1,2."
                ) from None
        return NeuronCrash(number("p"), semantics=params.get("semantics", ["silent"])[0],
                           value=number("value") if "value" in params else 0.0, layers=layers)
    if name == "stuck":
        return SynapseStuck(number("p0") if "p0" in params else 0.0,
                            number("p1") if "p1" in params else 0.0)
    if "p" not in params:
        raise ValidationError(f"--fault {text!r}: {name} needs p=RATE.")
    return WeightBitFlip(number("p")) if name == "bitflip" else CoreFailure(number("p"))
