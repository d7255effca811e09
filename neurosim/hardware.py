"""Chip profiles: a typed schema and the TOML files that fill it.

A profile is data with provenance: every number in a built-in profile file cites where it
came from and how sure we are of it (``confidence``: ``vendor``, ``code``, ``derived`` or
``unverified``; fault rates may also be ``illustrative``). No vendor publishes per-core or
per-neuron failure rates for digital neuromorphic chips: their default fault rates are
user-set parameters with documented defaults, not measurements.

A profile file looks like::

    name = "loihi2"
    description = "Intel Loihi 2 neurocores"
    architecture = "cores"             # or "crossbar"
    cores_per_chip = 128
    neurons_per_core = 8192
    ...
    [fault_rates]
    neuron_crash = 1e-4
    ...
    [confidence]                       # one entry per number above
    cores_per_chip = "vendor"
    [sources]                          # one entry per number above (free text)
    cores_per_chip = "Intel Loihi 2 brief; wikichip"
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from neurosim.errors import NeurosimFileNotFoundError, ProfileError, ValidationError
from neurosim.faults import FAULT_TYPES
from neurosim.faults.base import FAULT_MODES

__all__ = [
    "FaultRates",
    "fault_rate_fields",
    "fault_rates_class",
    "HardwareProfile",
    "load_profile",
    "list_profiles",
    "DEFAULT_PROFILE",
    "CONFIDENCE_LEVELS",
]

DEFAULT_PROFILE = "loihi2"
CONFIDENCE_LEVELS = ("vendor", "code", "derived", "unverified", "illustrative")


def _spec(doc: str, unit: str = "", required: bool = True, lo: float | None = None,
          hi: float | None = None, choices: tuple | None = None):
    """Field metadata: documentation, unit and allowed range, used by validation and --help."""
    return {"doc": doc, "unit": unit, "required": required, "lo": lo, "hi": hi, "choices": choices}


def _fault_rates_class(profile_fields: tuple) -> type:
    """The FaultRates dataclass for the given fault-type profile fields (one float each)."""
    fields = []
    for pf in profile_fields:
        meta = _spec(pf.doc, pf.unit, required=pf.required, lo=0, hi=1)
        fields.append((pf.name, "float", field(default=pf.default, metadata=meta)
                       if not pf.required else field(metadata=meta)))
    # Required fields first (a dataclass cannot put a defaulted field before one without).
    fields.sort(key=lambda f: not f[2].metadata["required"])
    return dataclasses.make_dataclass(
        "FaultRates", fields, frozen=True,
        namespace={
            "__module__": __name__,
            "__doc__": "Default fault rates of a chip (probabilities, per element and per "
                       "inference or deployment).\n\nEvery rate is a probability in [0, 1]; "
                       "``simulate`` and ``certify`` use them when the user gives no "
                       "``--fault``. The fields are the ``profile_fields`` of the registered "
                       "fault types (neurosim.faults).",
            "as_dict": lambda self: dataclasses.asdict(self),
        })


def fault_rate_fields() -> tuple:
    """The ``[fault_rates]`` fields the registered fault types declare, in registry order."""
    return tuple(pf for cls in FAULT_TYPES.values() for pf in cls.profile_fields)


_RATE_CLASSES: dict = {}


def fault_rates_class() -> type:
    """The FaultRates class for the fault types registered now (a new type adds its fields)."""
    key = fault_rate_fields()
    if key not in _RATE_CLASSES:
        _RATE_CLASSES[key] = _fault_rates_class(key)
    return _RATE_CLASSES[key]


#: Default fault rates of a chip: one field per ``profile_fields`` entry of the fault types.
FaultRates = fault_rates_class()


@dataclass(frozen=True)
class HardwareProfile:
    """A neuromorphic chip as neurosim maps networks onto it.

    Core-based chips (``architecture = "cores"``) hold whole neurons in cores: a core holds
    neurons of one layer only and is limited by ``neurons_per_core``, ``max_fan_in`` (axons
    in) and ``synapses_per_core``. Crossbar chips (``architecture = "crossbar"``) tile each
    weight matrix into ``crossbar_rows x crossbar_cols`` blocks, one tile per crossbar; there
    ``cores_per_chip`` counts crossbar tiles.
    """

    name: str = field(metadata=_spec("Short name, used on the command line.", "text"))
    description: str = field(metadata=_spec("One-line description of the chip.", "text"))
    architecture: str = field(metadata=_spec(
        "How weights are laid out: 'cores' (neurons in cores) or 'crossbar' (weight tiles).",
        "text", choices=("cores", "crossbar")))
    cores_per_chip: int = field(metadata=_spec(
        "Cores (or crossbar tiles) on one chip that can hold network layers.", "cores", lo=1))
    neurons_per_core: int = field(metadata=_spec(
        "Most neurons one core can hold (crossbar: output columns per tile).", "neurons", lo=1))
    max_fan_in: int = field(metadata=_spec(
        "Most distinct inputs (axons in) a core accepts; a neuron's fan-in cannot be split "
        "across cores (crossbar: input rows per tile).", "axons", lo=1))
    synapses_per_core: int = field(metadata=_spec(
        "Synapse memory of one core: neurons in the core x fan-in must not exceed it.",
        "synapses", lo=1))
    weight_bits: int = field(metadata=_spec(
        "Width of the stored integer weight word, sign included (two's complement).",
        "bits", lo=2, hi=32))
    fault_rates: "FaultRates" = field(metadata=_spec("Default fault rates (see FaultRates).", "table"))
    spare_cores_per_chip: int = field(default=0, metadata=_spec(
        "Cores per chip held in reserve to replace failed cores (not used by the mapping).",
        "cores", required=False, lo=0))
    mixed_sign_drop_lsb: bool = field(default=False, metadata=_spec(
        "Loihi rule: a layer with weights of both signs stores word values shifted left by one "
        "(the lowest bit dropped), so integer weights step by 2 (Lava's truncate_weights: "
        "num_truncate_bits = 8 - num_weight_bits + is_mixed).", "flag", required=False))
    power_of_two_scale: bool = field(default=False, metadata=_spec(
        "The per-layer weight scale is a power of two (Loihi's weight exponent) instead of "
        "max|W| / largest integer.", "flag", required=False))
    conv_weight_sharing: bool = field(default=False, metadata=_spec(
        "A core stores a conv kernel once for all the output positions it computes (synapse "
        "memory grows with the kernel, and a faulty kernel weight affects every position of "
        "the core) instead of one synapse per connection. Crossbars always reuse a tile's "
        "kernel over positions.", "flag", required=False))
    crossbar_rows: int = field(default=0, metadata=_spec(
        "Crossbar tile rows (inputs); crossbar profiles only.", "rows", required=False, lo=0))
    crossbar_cols: int = field(default=0, metadata=_spec(
        "Crossbar tile columns (outputs); crossbar profiles only.", "columns", required=False, lo=0))
    fault_modes: dict = field(default_factory=dict, metadata=_spec(
        "The mode of each fault type's process, by its spec name: 'permanent' (fixed when the "
        "chip is made, e.g. stuck crossbar cells) or 'transient' (fresh for every input, the "
        "default). Sources as 'fault_modes.stuck'.", "table", required=False))
    analog: dict = field(default_factory=dict, metadata=_spec(
        "Analog crossbar non-idealities (neurosim.faults.AnalogCrossbar): device ('pcm' or "
        "'reram'), t (seconds since programming, or '1h'...), dac and adc (bits), inp_bound, "
        "out_bound, out_noise, compensate; in_defaults = false keeps them out of the default "
        "fault set ('--fault analog' adds them). Sources as 'analog.device'.", "table",
        required=False))
    confidence: dict = field(default_factory=dict, metadata=_spec(
        "How sure each number is: vendor, code, derived, unverified (or illustrative for fault "
        "rates). Keys are field names; fault rates as 'fault_rates.neuron_crash'.", "table",
        required=False))
    sources: dict = field(default_factory=dict, metadata=_spec(
        "Where each number came from (free text), keyed like 'confidence'.", "table", required=False))
    notes: str = field(default="", metadata=_spec("Free-text remarks.", "text", required=False))
    path: str = field(default="", compare=False, metadata=_spec(
        "File the profile was read from (set by the loader).", "path", required=False))

    # --- derived quantities ---------------------------------------------------------------
    @property
    def usable_cores_per_chip(self) -> int:
        """Cores per chip that the mapping may fill (spares excluded)."""
        return self.cores_per_chip - self.spare_cores_per_chip

    @property
    def word_min(self) -> int:
        """Smallest stored weight word (two's complement)."""
        return -(2 ** (self.weight_bits - 1))

    @property
    def word_max(self) -> int:
        """Largest stored weight word (two's complement)."""
        return 2 ** (self.weight_bits - 1) - 1

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-friendly description (what ``neurosim profiles --json`` prints)."""
        out = {
            "name": self.name,
            "description": self.description,
            "architecture": self.architecture,
            "cores_per_chip": self.cores_per_chip,
            "spare_cores_per_chip": self.spare_cores_per_chip,
            "neurons_per_core": self.neurons_per_core,
            "max_fan_in": self.max_fan_in,
            "synapses_per_core": self.synapses_per_core,
            "weight_bits": self.weight_bits,
            "mixed_sign_drop_lsb": self.mixed_sign_drop_lsb,
            "power_of_two_scale": self.power_of_two_scale,
            "conv_weight_sharing": self.conv_weight_sharing,
        }
        if self.architecture == "crossbar":
            out["crossbar_rows"] = self.crossbar_rows
            out["crossbar_cols"] = self.crossbar_cols
        out["fault_rates"] = self.fault_rates.as_dict()
        out["fault_modes"] = dict(self.fault_modes)
        if self.analog:
            out["analog"] = dict(self.analog)
        out["confidence"] = dict(self.confidence)
        out["sources"] = dict(self.sources)
        return out

    @classmethod
    def field_docs(cls) -> dict[str, dict]:
        """Documentation, unit and range of every field (profile and fault rates)."""
        docs = {f.name: dict(f.metadata) for f in dataclasses.fields(cls)}
        for f in dataclasses.fields(fault_rates_class()):
            docs[f"fault_rates.{f.name}"] = dict(f.metadata)
        return docs


# --- loading and validation ---------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_PROFILE_FIELDS = {f.name: f for f in dataclasses.fields(HardwareProfile) if f.name != "path"}


def _unknown_key(source: str, key: str, valid, where: str = "") -> ProfileError:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ProfileError(
        f"{source}: unknown key {where}{key!r}.{hint} Valid keys: {', '.join(sorted(valid))}."
    )


def _check_value(source: str, key: str, f: dataclasses.Field, value):
    spec = f.metadata
    kind = f.type
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(f"{source}: {key} must be an integer. Got {value!r} instead.")
        if not _INT64_MIN <= value <= _INT64_MAX:  # TOML integers are 64-bit
            raise ProfileError(f"{source}: {key} must be a 64-bit integer. Got {value!r} instead.")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ProfileError(f"{source}: {key} must be a finite number. Got {value!r} instead.")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ProfileError(f"{source}: {key} must be true or false. Got {value!r} instead.")
    elif kind == "str":
        if not isinstance(value, str):
            raise ProfileError(f"{source}: {key} must be a string. Got {value!r} instead.")
    elif kind == "dict":
        if not isinstance(value, dict):
            raise ProfileError(f"{source}: [{key}] must be a table. Got {value!r} instead.")
    lo, hi, choices = spec.get("lo"), spec.get("hi"), spec.get("choices")
    if choices is not None and value not in choices:
        raise ProfileError(
            f"{source}: {key} must be one of {', '.join(map(repr, choices))}. Got {value!r} instead."
        )
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ProfileError(f"{source}: {key} must be {rng}. Got {value!r} instead.")
    return value


def profile_from_dict(data: dict, source: str = "<profile>") -> HardwareProfile:
    """Validate a parsed TOML table and build a :class:`HardwareProfile`.

    Raises
    ------
    ProfileError
        For an unknown key (with the closest valid key suggested), a missing required key, a
        value of the wrong type or out of range, or a crossbar profile without tile sizes.
    """
    for key in data:
        if key not in _PROFILE_FIELDS:
            raise _unknown_key(source, key, _PROFILE_FIELDS)
    kwargs: dict[str, Any] = {}
    for name, f in _PROFILE_FIELDS.items():
        if name not in data:
            if f.metadata["required"]:
                raise ProfileError(
                    f"{source}: missing required key {name!r} ({f.metadata['doc']})."
                )
            continue
        if name == "fault_rates":
            continue
        kwargs[name] = _check_value(source, name, f, data[name])
    rates_table = data["fault_rates"]
    if not isinstance(rates_table, dict):
        raise ProfileError(f"{source}: [fault_rates] must be a table. Got {rates_table!r} instead.")
    rates_class = fault_rates_class()
    rate_fields = {f.name: f for f in dataclasses.fields(rates_class)}
    for key in rates_table:
        if key not in rate_fields:
            raise _unknown_key(source, key, rate_fields, where="in [fault_rates] ")
    rates = {}
    for name, f in rate_fields.items():
        if name not in rates_table:
            if not f.metadata["required"]:
                continue
            raise ProfileError(
                f"{source}: missing required key 'fault_rates.{name}' ({f.metadata['doc']})."
            )
        rates[name] = _check_value(source, f"fault_rates.{name}", f, rates_table[name])
    kwargs["fault_rates"] = rates_class(**rates)

    for kind, mode in kwargs.get("fault_modes", {}).items():
        if kind not in FAULT_TYPES:
            raise _unknown_key(source, kind, FAULT_TYPES, where="in [fault_modes] ")
        if mode not in FAULT_MODES:
            raise ProfileError(f"{source}: [fault_modes] {kind} must be one of "
                               f"{', '.join(map(repr, FAULT_MODES))}. Got {mode!r} instead.")
    analog = kwargs.get("analog", {})
    if analog:
        from neurosim.faults.analog import ANALOG_KEYS, AnalogCrossbar

        for key in analog:
            if key not in ANALOG_KEYS and key != "in_defaults":
                raise _unknown_key(source, key, list(ANALOG_KEYS) + ["in_defaults"],
                                   where="in [analog] ")
        if not isinstance(analog.get("in_defaults", True), bool):
            raise ProfileError(f"{source}: [analog] in_defaults must be true or false.")
        if "device" not in analog:
            raise ProfileError(f"{source}: [analog] needs device = 'pcm' or 'reram'.")
        try:
            AnalogCrossbar(**AnalogCrossbar._values(
                {k: v for k, v in analog.items() if k != "in_defaults"}, f"{source} [analog]"))
        except ValidationError as exc:
            raise ProfileError(f"{source}: [analog]: {exc}") from None
    documented = (set(_PROFILE_FIELDS) | {f"fault_rates.{n}" for n in rate_fields}
                  | {f"fault_modes.{k}" for k in kwargs.get("fault_modes", {})}
                  | {f"analog.{k}" for k in analog})
    for table in ("confidence", "sources"):
        for key, value in kwargs.get(table, {}).items():
            if key not in documented:
                raise _unknown_key(source, key, documented, where=f"in [{table}] ")
            if not isinstance(value, str):
                raise ProfileError(
                    f"{source}: [{table}] {key} must be a string. Got {value!r} instead.")
            if table == "confidence" and value not in CONFIDENCE_LEVELS:
                raise ProfileError(
                    f"{source}: confidence of {key!r} must be one of "
                    f"{', '.join(CONFIDENCE_LEVELS)}. Got {value!r} instead."
                )
    profile = HardwareProfile(**kwargs, path=source)
    if profile.architecture == "crossbar" and (profile.crossbar_rows < 1 or profile.crossbar_cols < 1):
        raise ProfileError(
            f"{source}: a crossbar profile needs crossbar_rows and crossbar_cols >= 1. Got "
            f"{profile.crossbar_rows} x {profile.crossbar_cols} instead."
        )
    if profile.spare_cores_per_chip >= profile.cores_per_chip:
        raise ProfileError(
            f"{source}: spare_cores_per_chip ({profile.spare_cores_per_chip}) must be smaller "
            f"than cores_per_chip ({profile.cores_per_chip})."
        )
    return profile


def _builtin_files() -> dict[str, Any]:
    root = resources.files("neurosim.hw_profiles")
    return {
        entry.name[: -len(".toml")]: entry
        for entry in root.iterdir()
        if entry.name.endswith(".toml")
    }


def list_profiles() -> list[str]:
    """Names of the built-in profiles, default first, then alphabetical."""
    names = sorted(_builtin_files())
    if DEFAULT_PROFILE in names:
        names.remove(DEFAULT_PROFILE)
        names.insert(0, DEFAULT_PROFILE)
    return names


def _parse(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML ({exc}).") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise ProfileError(f"{source}: not valid TOML (nested too deeply to be a profile).") from None


#: A profile is a page of TOML (the built-in ones are 2-3 KB); a larger file is not one, and is
#: not read into memory.
MAX_PROFILE_BYTES = 1 << 20


def _read_text(path: Path, source: str) -> str:
    """The text of a profile file: a regular file of UTF-8 text of at most
    :data:`MAX_PROFILE_BYTES`, or a ProfileError naming it."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ProfileError(f"{source}: is a folder, not a profile (.toml) file.")
        if not stat.S_ISREG(mode):
            raise ProfileError(f"{source}: is not a regular file; a profile is a .toml text file.")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ProfileError(f"{source}: cannot be read ({reason}).") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(
            f"{source}: larger than {MAX_PROFILE_BYTES // 1024} KiB; a profile is a short TOML "
            "text file.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); a "
            "profile is a TOML text file.") from None


def load_profile(name_or_path: "str | os.PathLike | HardwareProfile" = DEFAULT_PROFILE) -> HardwareProfile:
    """Load a built-in profile by name, or a user's profile from a TOML file.

    Parameters
    ----------
    name_or_path : str or path-like
        A built-in name (see :func:`list_profiles`) or a path to a ``.toml`` file.

    Raises
    ------
    ProfileError
        For an unknown name (with the closest built-in suggested), or a file that is not a
        valid profile: a folder, a file that cannot be read (permissions), is larger than
        :data:`MAX_PROFILE_BYTES`, is not UTF-8 text or not valid TOML, or holds a value of
        the wrong type or out of range. The message is one line naming the file.
    NeurosimFileNotFoundError
        For a ``.toml`` path that does not exist.
    """
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ProfileError(
            f"A profile must be a built-in name ({', '.join(list_profiles())}), the path of a "
            f".toml file, or a HardwareProfile. Got {name_or_path!r} instead."
        )
    text = os.fspath(name_or_path)
    builtins = _builtin_files()
    if text in builtins:
        data = _parse(builtins[text].read_text(encoding="utf-8"), f"profile {text!r}")
        return profile_from_dict(data, source=f"profile {text!r}")
    path = Path(text)
    if path.suffix.lower() == ".toml" or path.exists():
        if not path.exists():
            raise NeurosimFileNotFoundError(f"Profile file {text!r} does not exist.")
        return profile_from_dict(_parse(_read_text(path, text), text), source=text)
    close = difflib.get_close_matches(text, list(builtins), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ProfileError(
        f"Unknown profile {text!r}.{hint} Built-in profiles: {', '.join(list_profiles())}; "
        "or give the path of a .toml file."
    )
