"""The fault-type protocol, its registry, fault models and their text form.

A fault type is one class (one file) that carries all of its behaviour:

* its text form: :meth:`FaultType.spec` prints it and :meth:`FaultType.from_params` reads it
  back (``crash:p=1e-3,layers=1,2``); ``parse_fault_spec(f.spec()) == f`` for every process;
* its profile fields (:attr:`FaultType.profile_fields`): the ``[fault_rates]`` keys of a chip
  profile and how a profile's rates become a process (:meth:`FaultType.from_profile`);
* what it needs of the target (:meth:`FaultType.check`, e.g. a chip mapping);
* its fault sites and rates, for the sampler and the stratified estimator
  (:meth:`FaultType.groups`), the outcome of each faulty site (:meth:`FaultType.draw_outcomes`),
  and the records the kernels read (:meth:`FaultType.add_records`).

Register a new type with :func:`register_fault`; the sampler, the certificate, the profile
schema, the command line and every backend then know it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from neurosim.errors import ValidationError, param_error

__all__ = [
    "FaultType",
    "FaultProcess",
    "FaultModel",
    "ProfileField",
    "FAULT_TYPES",
    "register_fault",
    "parse_fault_spec",
    "parse_fault_model",
    "profile_faults",
    "as_fault_model",
    "format_number",
    "probability",
    "process_spec",
    "FAULT_MODES",
]

#: What a fault process's ``mode`` may be.
FAULT_MODES = ("transient", "permanent")

#: Registered fault types by spec name, in registration order (the order of their records).
FAULT_TYPES: dict[str, type] = {}


def register_fault(cls: type) -> type:
    """Class decorator: make a :class:`FaultType` subclass known under its ``kind``."""
    if not (isinstance(cls, type) and issubclass(cls, FaultType)) or not cls.kind:
        raise TypeError(f"register_fault needs a FaultType subclass with a 'kind'; got {cls!r}")
    FAULT_TYPES[cls.kind] = cls
    return cls


def probability(owner: str, name: str, value) -> float:
    """``value`` as a float in [0, 1], or the house ValidationError."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise param_error(owner, name, "a float in [0, 1]", value) from None
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise param_error(owner, name, "a float in [0, 1]", value)
    return p


def format_number(x: float, legacy: bool = False) -> str:
    """Shortest text that reads back as exactly ``x`` (``%g`` when that is exact); ``legacy``:
    always ``%g``, as neurosim 0.1 did."""
    short = f"{x:g}"
    return short if legacy or float(short) == x else repr(float(x))


@dataclass(frozen=True)
class ProfileField:
    """One ``[fault_rates]`` key of a chip profile, owned by a fault type."""

    name: str
    doc: str
    unit: str
    label: str  # column title in ``neurosim profiles``
    required: bool = True
    default: float = 0.0


@dataclass(frozen=True)
class FaultType:
    """Base class of the fault types (see the module docstring for the protocol).

    ``mode`` (keyword only, every type has it): ``"transient"`` (fresh faults for every input,
    paper Def. 5), ``"permanent"`` (fixed when the chip instance is made, shared by all its
    inputs), or None: the type's ``default_mode`` (transient, but for analog programming).
    ``simulate(mode=...)`` puts every process in one mode. A profile states each type's mode in
    its ``[fault_modes]`` table; the spec text writes it as ``mode=permanent``.
    """

    mode: "str | None" = field(default=None, kw_only=True)

    #: Spec name (``crash``), registry key, and ``kind`` of the type's fault groups.
    kind: ClassVar[str] = ""
    #: The spec keys and what each holds (for messages and ``--help``).
    spec_keys: ClassVar[dict] = {}
    #: Keys whose value may continue over commas (``layers=1,2``).
    list_keys: ClassVar[tuple] = ()
    #: The profile's ``[fault_rates]`` keys this type owns.
    profile_fields: ClassVar[tuple] = ()
    #: Whether the type needs a chip mapping (integer words, cores).
    needs_mapping: ClassVar[bool] = False
    #: The mode of a process that states none (analog programming is permanent by nature).
    default_mode: ClassVar[str] = "transient"

    def __add__(self, other) -> "FaultModel":
        return FaultModel([self]) + other

    def __radd__(self, other):
        if other == 0:  # sum([...])
            return FaultModel([self])
        return NotImplemented

    # --- text -----------------------------------------------------------------------------
    def spec(self, legacy: bool = False) -> str:  # pragma: no cover - overridden
        """The process as ``--fault`` text that parses back to it. ``legacy``: as neurosim 0.1
        wrote it (numbers with ``%g``), to match the config of its run files."""
        raise NotImplementedError

    @classmethod
    def from_params(cls, params: dict, text: str) -> "FaultType":  # pragma: no cover
        """Build from parsed spec ``params`` (key -> list of value strings)."""
        raise NotImplementedError

    @classmethod
    def number(cls, params: dict, key: str, text: str, default=None) -> float:
        """Spec value ``key`` as a float (``default`` when absent)."""
        if key not in params:
            if default is None:
                raise ValidationError(f"--fault {text!r}: {cls.kind} needs {key}=RATE.")
            return default
        try:
            return float(params[key][0])
        except ValueError:
            raise ValidationError(
                f"The {key!r} value of fault {cls.kind!r} must be a number. Got "
                f"{params[key][0]!r} in --fault {text!r}."
            ) from None

    @classmethod
    def layer_list(cls, params: dict, text: str) -> "tuple | None":
        """Spec value ``layers`` as a tuple of ints (None when absent)."""
        if "layers" not in params:
            return None
        try:
            return tuple(int(v) for v in params["layers"])
        except ValueError:
            raise ValidationError(
                f"--fault {text!r}: layers must be integers, e.g. layers=1,2.") from None

    # --- profiles -------------------------------------------------------------------------
    @classmethod
    def profile_default(cls, profile) -> "FaultType":
        """The process in the profile's default fault set (may be null): by default the one
        its ``[fault_rates]`` give."""
        return cls.from_profile(profile.fault_rates)

    @classmethod
    def from_profile(cls, rates) -> "FaultType":  # pragma: no cover - overridden
        """The process a profile's ``fault_rates`` give (may be null)."""
        raise NotImplementedError

    def is_null(self) -> bool:
        """True when the process can never produce a fault."""
        raise NotImplementedError  # pragma: no cover

    def applies_to(self, spiking) -> bool:
        """Whether a profile's default of this type means anything for a target that runs as
        ``spiking`` (a SpikingNetwork, or None: graded); a default that does not is left out of
        the target's default set."""
        return True

    # --- lowering -------------------------------------------------------------------------
    def check(self, plan) -> None:
        """Raise ValidationError if the process cannot act on ``plan``'s target."""
        if self.needs_mapping and not self.is_null() and plan.mapping is None:
            raise ValidationError(
                f"The {self.kind} fault model needs a chip mapping (the integer weight words, "
                "the cores); pass a Mapping from neurosim.map_network."
            )

    def groups(self, plan) -> list:
        """The process's fault sites with a non-zero rate (:class:`~neurosim.sampler.FaultGroup`)."""
        return []

    def fields(self, plan) -> list:
        """The process's faults drawn as fields (:mod:`neurosim.fields`) instead of groups:
        dense rates, where records would cost more than the pass. Default: none."""
        return []

    def draw_outcomes(self, plan, rng, positions: dict) -> dict:
        """Per group key of this type, the outcome index of every faulty site (after all
        positions are drawn). Types whose groups have one outcome draw nothing."""
        return {}

    def add_records(self, plan, positions: dict, outcomes: dict, builder) -> None:
        """Turn this type's faulty sites into records on ``builder``."""

    def single_fault_bound(self, plan, group, clean_activations) -> "np.ndarray | None":
        """An upper bound on ``||Delta y_L||_2`` for each (input, site) of ``group`` when that
        site alone is faulty, or None. The stratified estimator skips single faults whose
        bound is below the input's failure threshold."""
        return None


#: The base class under its old name.
FaultProcess = FaultType


@dataclass
class FaultModel:
    """Several fault processes acting together (at most one of each kind)."""

    processes: list = field(default_factory=list)

    def __post_init__(self):
        seen = set()
        self.processes = list(self.processes)
        for proc in self.processes:
            if not isinstance(proc, FaultType):
                raise param_error("FaultModel", "processes", "fault processes", proc)
            if proc.kind in seen:
                raise ValidationError(
                    f"A fault model may hold one {type(proc).__name__}; give one with all its "
                    "rates instead of two."
                )
            seen.add(proc.kind)
            if proc.mode is not None and proc.mode not in FAULT_MODES:
                raise ValidationError(
                    f"The mode of fault {proc.kind!r} must be one of {', '.join(FAULT_MODES)} "
                    f"(or None: the run's mode). Got {proc.mode!r} instead.")

    def __add__(self, other) -> "FaultModel":
        if isinstance(other, FaultType):
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

    def in_registry_order(self) -> list:
        """The processes in registration order: the order of groups and records."""
        order = {kind: i for i, kind in enumerate(FAULT_TYPES)}
        return sorted(self.processes, key=lambda p: order.get(p.kind, len(order)))

    def without(self, kind: str) -> "FaultModel":
        return FaultModel([p for p in self.processes if p.kind != kind])

    def spec(self, legacy: bool = False) -> str:
        """The model as text (each process's spec, with ``,mode=...`` when it states one);
        :func:`parse_fault_model` reads it back (``legacy``: neurosim
        0.1's text, which run files of format_version 1 hold)."""
        return " ".join(process_spec(p, legacy) for p in self.processes) or "none"

    def modes(self) -> dict:
        """Each active process's mode by kind: its own, else its type's default mode."""
        return {p.kind: p.mode or p.default_mode for p in self.active()}

    def run_mode(self) -> str:
        """``transient`` (no permanent process), ``permanent`` (only permanent ones) or
        ``mixed``: the chip instance fixes the permanent faults, each input draws the
        transient ones afresh."""
        modes = set(self.modes().values())
        if modes == {"permanent"}:
            return "permanent"
        return "mixed" if "permanent" in modes else "transient"

    def with_modes(self, mode: str) -> "FaultModel":
        """Every process in ``mode`` (what ``simulate(mode="transient")`` asks for)."""
        return FaultModel([replace(p, mode=mode) for p in self.processes])

    def __str__(self) -> str:
        return self.spec()


def process_spec(proc: "FaultType", legacy: bool = False) -> str:
    """One process as ``--fault`` text, its mode included when it states one."""
    text = proc.spec(legacy=True) if legacy else proc.spec()
    return f"{text},mode={proc.mode}" if proc.mode is not None else text


def as_fault_model(faults, owner: str = "simulate") -> FaultModel:
    """A FaultModel from a model, one process or a list of processes."""
    if isinstance(faults, FaultModel):
        return faults
    if isinstance(faults, FaultType):
        return FaultModel([faults])
    if isinstance(faults, (list, tuple)):
        return FaultModel(list(faults))
    raise param_error(owner, "faults", "a fault process or FaultModel", faults)


def profile_faults(profile) -> FaultModel:
    """The profile's default fault set (processes with a zero rate left out), each in the
    mode the profile's ``[fault_modes]`` states."""
    procs = [cls.profile_default(profile) for cls in FAULT_TYPES.values()]
    modes = getattr(profile, "fault_modes", {})
    return FaultModel([replace(p, mode=modes[p.kind]) if p.kind in modes else p
                       for p in procs if not p.is_null()])


def parse_fault_spec(text: str) -> "FaultType | None":
    """Parse one ``--fault`` value, e.g. ``crash:p=1e-3,layers=1,2``, ``crash:p=1e-3/0/2e-3``
    (one rate per layer) or ``stuck:p0=0.01,p1=0.09``.

    ``profile`` returns None (meaning: the profile's default set).

    Raises
    ------
    ValidationError
        For an unknown fault name or key, or a value that is not a number in range.
    """
    if not isinstance(text, str):
        raise param_error("parse_fault_spec", "text", "a fault spec such as 'crash:p=1e-3'", text)
    text = text.strip()
    if text == "profile":
        return None
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name not in FAULT_TYPES:
        raise ValidationError(
            f"Unknown fault {name!r} in --fault {text!r}. Valid faults: "
            f"{', '.join(FAULT_TYPES)} (or 'profile' for the profile's defaults)."
        )
    cls = FAULT_TYPES[name]
    params: dict[str, list[str]] = {}
    mode = None
    key = None
    tokens = [t.strip() for t in rest.split(",")] if rest.strip() else []
    if "" in tokens:
        raise ValidationError(f"--fault {text!r} has an empty field (two commas in a row, or a "
                              "comma at an end); write key=value pairs separated by single commas.")
    for token in tokens:
        if "=" in token:
            key, _, value = token.partition("=")
            key = key.strip()
            if key == "mode":
                if mode is not None:
                    raise ValidationError(f"--fault {text!r} gives 'mode' twice; give it once.")
                mode = value.strip()
                if mode not in FAULT_MODES:
                    raise ValidationError(
                        f"The mode in --fault {text!r} must be one of {', '.join(FAULT_MODES)}. "
                        f"Got {mode!r} instead.")
                key = None
                continue
            if key not in cls.spec_keys:
                raise ValidationError(
                    f"Unknown key {key!r} for fault {name!r} in --fault {text!r}. Valid keys: "
                    f"{', '.join(sorted(cls.spec_keys))}, mode."
                )
            if key in params:
                raise ValidationError(f"--fault {text!r} gives {key!r} twice; give it once.")
            params[key] = [value.strip()]
        elif key in cls.list_keys:
            if token in params[key]:
                raise ValidationError(f"--fault {text!r} lists {token!r} twice in {key!r}; give "
                                      "each once.")
            params[key].append(token)
        else:
            raise ValidationError(f"Cannot parse {token!r} in --fault {text!r}: expected key=value.")
    proc = cls.from_params(params, text)
    return replace(proc, mode=mode) if mode is not None else proc


def parse_fault_model(text: str) -> FaultModel:
    """Parse what :meth:`FaultModel.spec` prints: specs separated by spaces (``none``: empty)."""
    if not isinstance(text, str):
        raise param_error("parse_fault_model", "text", "a fault model's text", text)
    text = text.strip()
    if text in ("", "none"):
        return FaultModel([])
    procs = [parse_fault_spec(part) for part in text.split()]
    if any(p is None for p in procs):
        raise ValidationError(
            f"A fault model text cannot say 'profile' ({text!r}); name the processes.")
    return FaultModel(procs)
