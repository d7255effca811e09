"""Analog crossbar non-idealities as one fault process: device noise, drift and the periphery.

A crossbar tile stores each weight as the conductance of a device pair and computes its
matrix-vector product in the analog domain between a DAC and an ADC. What that does to the
weights and outputs is the model of :mod:`neurosim.analog` (a NumPy reference of IBM aihwkit's
inference noise models; docs/analog_sources.md cites every number):

* **programming noise** (per device, at write time) and **conductance drift**
  ``G(t) = G(t0) ((t + t0) / t0)^(-nu)`` with a per-device ``nu``, plus PCM's 1/f read noise at
  the time of use: permanent, drawn once per chip instance (:func:`neurosim.analog.program`);
  ``t`` is the time since programming (``--time 1s``, ``1h``, ``1d``, ``1y``);
* **DAC and ADC quantization** of each tile's inputs and outputs (bits, ranges), with aihwkit's
  abs-max noise management, and the **output read noise** of every analog product (``out_noise``,
  fresh for every inference: transient).

The mapping's tiling decides which tile (so which DAC / ADC) each weight uses. Stuck cells
(:class:`neurosim.faults.SynapseStuck`, permanent on crossbars) hold their stuck value whatever
the device noise. Spec: ``analog:device=pcm,t=3600,dac=7,adc=9``; ``analog`` alone takes the
profile's ``[analog]`` table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurosim.errors import ValidationError
from neurosim.faults.base import FaultType, format_number, register_fault

__all__ = ["AnalogCrossbar", "parse_time", "ANALOG_KEYS"]

#: ``[analog]`` profile keys and spec keys, with what each holds.
ANALOG_KEYS = {
    "device": "device model: pcm or reram (neurosim.analog presets)",
    "t": "seconds since programming (t_inference), or 1s, 1h, 1d, 1y",
    "dac": "DAC bits (0: no input quantization, clipping only)",
    "adc": "ADC bits (0: no output quantization, clipping only)",
    "inp_bound": "DAC range: inputs scaled into [-inp_bound, inp_bound]",
    "out_bound": "ADC range, in normalized output units",
    "out_noise": "std of each analog output's read noise, normalized units (per inference)",
    "compensate": "1: global drift compensation (aihwkit's GlobalDriftCompensation), 0: none",
    "noise": "factor on the device's programming and read noise (1: the preset, 0: none)",
    "drift": "factor on the drift exponents nu (1: the preset, 0: no drift)",
}
_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "y": 365.25 * 86400.0}


def parse_time(text) -> float:
    """Seconds from ``3600``, ``1s``, ``10min``, ``1h``, ``1d`` or ``1y`` (a year: 365.25 days)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip().lower()
        unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if raw.endswith(u)), "")
        try:
            value = float(raw[:len(raw) - len(unit)]) * _UNITS.get(unit, 1.0)
        except ValueError:
            raise ValidationError(
                f"A time since programming must be a number of seconds or a number with a unit "
                f"(s, min, h, d, y), e.g. 1h or 1y. Got {text!r} instead.") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"A time since programming must be >= 0 seconds. Got {text!r}.")
    return value


@register_fault
@dataclass(frozen=True)
class AnalogCrossbar(FaultType):
    """A crossbar's analog non-idealities (see the module docstring).

    ``device`` is a :func:`neurosim.analog.device_model` name (``""``: none, the null
    process); ``t`` seconds since programming; ``dac_bits`` / ``adc_bits`` (0: no quantization)
    with ranges ``inp_bound`` / ``out_bound``; ``out_noise`` the per-inference output noise;
    ``compensate`` global drift compensation; ``noise`` and ``drift`` scale the device's noise
    and drift exponents (0 switches them off). Defaults: aihwkit's ``IOParameters`` and the
    device presets as they are.
    """

    device: str = ""
    t: float = 0.0
    dac_bits: int = 7
    adc_bits: int = 9
    inp_bound: float = 1.0
    out_bound: float = 12.0
    out_noise: float = 0.06
    compensate: bool = False
    noise: float = 1.0
    drift: float = 1.0

    kind = "analog"
    spec_keys = ANALOG_KEYS
    default_mode = "permanent"
    needs_mapping = True

    def __post_init__(self):
        from neurosim.analog import device_model

        object.__setattr__(self, "t", parse_time(self.t))
        if self.device not in ("", "profile"):
            model = device_model(self.device)  # a clear error naming the presets
            times = model.relaxation_times
            if times and self.t != 0 and self.t not in times:
                raise ValidationError(
                    f"The {self.device} device model has conductance relaxation fits only at t = "
                    f"{', '.join(format_number(v) for v in times)} s after programming (aihwkit's "
                    f"ReRamWan2022NoiseModel; no drift law between them). Got t = "
                    f"{format_number(self.t)} s.")
        for name in ("dac_bits", "adc_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not float(v).is_integer() or not 0 <= v <= 24 or v == 1:
                raise ValidationError(f"The {name} of AnalogCrossbar must be 0 (no quantization) "
                                      f"or an integer in [2, 24]. Got {v!r} instead.")
            object.__setattr__(self, name, int(v))
        for name in ("inp_bound", "out_bound"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ValidationError(f"The {name} of AnalogCrossbar must be a number > 0. Got "
                                      f"{getattr(self, name)!r} instead.")
            object.__setattr__(self, name, v)
        for name in ("out_noise", "noise", "drift"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= 0):
                raise ValidationError(f"The {name} of AnalogCrossbar must be a number >= 0. Got "
                                      f"{getattr(self, name)!r} instead.")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "compensate", bool(self.compensate))
        if self.mode == "transient":
            raise ValidationError(
                "AnalogCrossbar is programmed once per chip (programming noise, drift): it has "
                "no transient mode; its per-inference part is the output read noise (out_noise).")

    # --- text -------------------------------------------------------------------------------
    def is_null(self) -> bool:
        return self.device == ""

    def spec(self, legacy: bool = False) -> str:
        if self.device == "profile":
            return "analog"
        return (f"analog:device={self.device},t={format_number(self.t)},dac={self.dac_bits},"
                f"adc={self.adc_bits},inp_bound={format_number(self.inp_bound)},"
                f"out_bound={format_number(self.out_bound)},"
                f"out_noise={format_number(self.out_noise)},compensate={int(self.compensate)},"
                f"noise={format_number(self.noise)},drift={format_number(self.drift)}")

    def device_model(self):
        """The device preset with this process's noise and drift factors."""
        from dataclasses import replace

        from neurosim.analog import device_model

        model = device_model(self.device)
        return replace(model, prog_noise_scale=model.prog_noise_scale * self.noise,
                       read_noise_scale=model.read_noise_scale * self.noise,
                       drift_scale=model.drift_scale * self.drift)

    @classmethod
    def from_params(cls, params: dict, text: str) -> "AnalogCrossbar":
        if not params:
            return cls(device="profile")
        if "device" not in params:
            raise ValidationError(f"--fault {text!r}: analog needs device=pcm or device=reram "
                                  "(or no keys at all: the profile's [analog] table).")
        return cls(**cls._values({k: v[0] for k, v in params.items()}, f"--fault {text!r}"))

    @classmethod
    def _values(cls, raw: dict, where: str) -> dict:
        out = {}
        for key, value in raw.items():
            if key not in ANALOG_KEYS:
                raise ValidationError(f"{where}: unknown analog key {key!r}. Valid keys: "
                                      f"{', '.join(ANALOG_KEYS)}.")
            if key == "device":
                out["device"] = str(value).strip().lower()
            elif key == "t":
                out["t"] = parse_time(value)
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ValidationError(f"{where}: analog {key} must be a number. Got "
                                          f"{value!r} instead.") from None
                name = {"dac": "dac_bits", "adc": "adc_bits"}.get(key, key)
                out[name] = number
        return out

    @classmethod
    def from_profile(cls, rates) -> "AnalogCrossbar":
        return cls()  # the null process: a profile's analog part is its [analog] table

    @classmethod
    def from_chip(cls, profile) -> "AnalogCrossbar":
        """The process a profile's ``[analog]`` table describes (null without one)."""
        table = dict(getattr(profile, "analog", {}) or {})
        table.pop("in_defaults", None)
        if not table:
            return cls()
        return cls(**cls._values(table, f"profile {profile.name!r} [analog]"))

    @classmethod
    def profile_default(cls, profile) -> "AnalogCrossbar":
        """In the profile's default fault set when its ``[analog]`` table exists and does not
        say ``in_defaults = false``."""
        table = getattr(profile, "analog", {}) or {}
        if table and table.get("in_defaults", True):
            return cls.from_chip(profile)
        return cls()

    # --- lowering ---------------------------------------------------------------------------
    def check(self, plan) -> None:
        super().check(plan)
        if self.is_null():
            return
        if self.device == "profile":
            raise ValidationError("The 'analog' fault without keys takes the profile's [analog] "
                                  "table; resolve it with AnalogCrossbar.from_chip(profile).")
        if plan.mapping.profile.architecture != "crossbar":
            raise ValidationError(
                f"The analog fault model needs a crossbar profile (tiles with a DAC and an "
                f"ADC); {plan.mapping.profile.name!r} has architecture "
                f"{plan.mapping.profile.architecture!r}.")
        if any(layer.kind != "dense" for layer in plan.network.layers) or any(plan.pre):
            raise ValidationError("The analog fault model supports networks of dense layers "
                                  "only so far (no conv layers or poolings).")
        for proc in plan.faults.active():
            if proc.kind not in ("analog", "stuck"):
                raise ValidationError(
                    f"The analog fault model combines with stuck cells only so far; remove the "
                    f"{proc.kind!r} faults or the analog model.")
            if proc.kind == "stuck" and (proc.mode or "transient") != "permanent":
                raise ValidationError(
                    "With the analog fault model, stuck cells must be permanent (as crossbar "
                    "defects are): give stuck:...,mode=permanent, or leave the profile's modes.")

