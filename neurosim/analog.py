"""A NumPy reference of analog crossbar non-idealities (PCM / ReRAM inference noise, DAC / ADC).

This module is a small, functional, array-based reference of the inference noise models of
IBM's AI Hardware Kit (aihwkit). Everything is float64 and every function keeps the shape of
its array arguments. Nothing here draws random numbers: the caller passes standard normals
(the simulator owns the random streams), so every function is deterministic.

Source read: ``github.com/IBM/aihwkit`` at commit
``4545f11b5214c5e3c6b9d293053bbf8baf74e110`` (2026-06-23), files

* ``src/aihwkit/inference/noise/pcm.py`` (``PCMLikeNoiseModel``; Nandakumar et al., ICECS 2019,
  used in Joshi et al., Nat. Commun. 11, 2473, 2020),
* ``src/aihwkit/inference/noise/reram.py`` (``ReRamWan2022NoiseModel``; Wan et al., Nature 608,
  504, 2022; also ``ReRamCMONoiseModel``, not reproduced here),
* ``src/aihwkit/inference/noise/base.py`` (the order: programming noise from the target,
  drift coefficients from the target, drift + read noise on the programmed value),
* ``src/aihwkit/inference/converter/conductance.py`` (``SinglePairConductanceConverter``),
* ``src/aihwkit/inference/compensation/drift.py`` and ``.../compensation/base.py``
  (``GlobalDriftCompensation``), ``src/aihwkit/simulator/tiles/inference.py`` (when the
  compensation baseline is taken),
* ``src/aihwkit/simulator/parameters/io.py`` (``IOParameters``),
  ``src/aihwkit/simulator/tiles/analog_mvm.py`` and ``src/aihwkit/simulator/tiles/utils.py``
  (``UniformQuantize``: the DAC / ADC, noise and bound management of the torch tile),
* ``src/aihwkit/simulator/presets/utils.py`` and ``.../presets/inference.py`` (presets).

The code here is written from those formulas, not copied. docs/analog_sources.md lists every
number with its source.

Time convention (aihwkit's)
---------------------------
Every time argument is ``t_inference``: seconds since programming *finished*, ``>= 0``. The
PCM fits are written in the time ``t = t_inference + t0`` (``t0`` = 20 s, the first read of the
drift fit), so the drift clock never runs before ``t0``: at ``t_inference = 0`` (``t = t0``)
there is no drift, and ``t < t0`` cannot be expressed; a negative ``t_inference`` is an error.
To evaluate the closed form ``G(t) = G(t0) (t / t0)^(-nu)`` at an absolute ``t >= t0`` pass
``t_inference = t - t0``.

Units
-----
Conductances are in microsiemens (uS), times in seconds. Weights are in the caller's units;
``w_max`` is the weight magnitude mapped to ``g_max``.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from neurosim.errors import ValidationError, param_error

__all__ = [
    "AIHWKIT_COMMIT",
    "DeviceModel",
    "PeripheryModel",
    "PCM",
    "RERAM",
    "IO_DEFAULT",
    "IO_PRESET",
    "IO_STANDARD_HWA",
    "device_model",
    "periphery_model",
    "to_conductances",
    "to_weights",
    "programming_noise_std",
    "program_conductances",
    "drift_nu",
    "drift",
    "read_noise_std",
    "relaxation_std",
    "normals_shape",
    "program",
    "global_drift_compensation",
    "quantization_step",
    "n_levels",
    "dac",
    "adc",
    "abs_max_scale",
    "tile_matvec",
]

#: The aihwkit commit every number below was read at.
AIHWKIT_COMMIT = "4545f11b5214c5e3c6b9d293053bbf8baf74e110"

_PCM_PY = f"aihwkit@{AIHWKIT_COMMIT[:12]} src/aihwkit/inference/noise/pcm.py"
_RERAM_PY = f"aihwkit@{AIHWKIT_COMMIT[:12]} src/aihwkit/inference/noise/reram.py"
_CONV_PY = f"aihwkit@{AIHWKIT_COMMIT[:12]} src/aihwkit/inference/converter/conductance.py"
_IO_PY = f"aihwkit@{AIHWKIT_COMMIT[:12]} src/aihwkit/simulator/parameters/io.py"
_PRESET_PY = f"aihwkit@{AIHWKIT_COMMIT[:12]} src/aihwkit/simulator/presets/utils.py"
_INFER_PRESET_PY = f"aihwkit@{AIHWKIT_COMMIT[:12]} src/aihwkit/simulator/presets/inference.py"
_NANDAKUMAR = ("S. R. Nandakumar et al., 'Phase-change memory models for deep learning "
               "training and inference', ICECS 2019 (fit used in V. Joshi et al., Nat. Commun. "
               "11, 2473, 2020)")
_WAN = "W. Wan et al., 'A compute-in-memory chip based on resistive random-access memory', Nature 608, 504 (2022)"
_RASCH = "M. J. Rasch et al., 'Hardware-aware training for large-scale and diverse deep learning inference workloads using in-memory computing-based accelerators', Nat. Commun. 14, 5282 (2023) (arXiv:2302.08469)"


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_positive(owner, name, v):
    if not (_is_real(v) and math.isfinite(v) and v > 0):
        raise param_error(owner, name, "a finite float > 0", v)


def _array(owner, name, a) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(owner, name, "an array of real numbers", type(a).__name__) from None
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValidationError(
            f"The '{name}' parameter of {owner} must be an array of finite numbers. "
            f"Got {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'} instead.")
    return arr


def _normals(owner, name, a, shape) -> np.ndarray:
    arr = _array(owner, name, a)
    if arr.shape != tuple(shape):
        raise param_error(owner, name, f"an array of shape {tuple(shape)}", arr.shape)
    return arr


def _time(owner, t) -> float:
    if not (_is_real(t) and math.isfinite(t) and t >= 0):
        raise param_error(owner, "t_inference", "a finite time >= 0 (s)", t)
    return float(t)


def _bits(owner, name, bits):
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 2:
        raise param_error(owner, name, "an integer >= 2 or None (no quantization)", bits)
    return int(bits)


def _w_max(owner, w_max, W):
    if w_max is None:  # aihwkit: the absolute maximum of the weights, floored at 1e-7
        return max(float(np.max(np.abs(W))) if W.size else 0.0, 1e-7)
    _check_positive(owner, "w_max", w_max)
    return float(w_max)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceModel:
    """The inference noise model of one analog memory device kind (a frozen record).

    Attributes
    ----------
    name : str
        Preset name (``"pcm"``, ``"reram"``).
    g_max, g_min : float
        uS. ``|w| = w_max`` maps to ``g_max - g_min`` above ``g_min`` (aihwkit's
        ``SinglePairConductanceConverter``; ``g_min = 0`` there by default).
    prog_coeff : tuple of float
        Programming-noise std polynomial, ascending powers: ``sigma_prog(g) = (sum_i c_i
        (g / g_max)^i) * g_max / prog_g_max_reference`` in uS (``c_i`` in uS, fitted at
        ``g_max = prog_g_max_reference``).
    prog_g_max_reference : float
        uS, the ``g_max`` the polynomial was fitted at.
    prog_noise_scale : float
        Extra factor on ``sigma_prog`` (aihwkit ``prog_noise_scale`` / ReRAM ``noise_scale``).
    drift_nu_mean, drift_nu_std : tuple (slope, intercept) or None
        PCM drift exponent statistics as functions of ``g_rel = max(|g_target| / g_max,
        g_rel_floor)``: ``mu = clip(slope * ln(g_rel) + intercept, *drift_nu_mean_bounds)``,
        ``sigma = clip(slope * ln(g_rel) + intercept, *drift_nu_std_bounds)``. None: the device
        has no power-law drift model (``nu = 0``).
    drift_nu_mean_bounds, drift_nu_std_bounds : tuple (low, high)
    drift_scale : float
        Factor on ``nu`` (aihwkit ``drift_scale``).
    g_rel_floor : float
        Floor of ``g_rel`` before the logarithm (aihwkit ``_ZERO_CLIP = 1e-7``).
    t0 : float or None
        s, the first read time of the drift fit (aihwkit ``t_0``); None where the source has no
        such time.
    t_read : float or None
        s, the read duration of the 1/f fit (aihwkit ``t_read``); None where the source has no
        read-noise model.
    read_noise : tuple (q0, exponent, denominator floor, q max) or None
        PCM 1/f read noise: ``Q_s = min(q0 / max((|g_prog| / g_max)^exponent, floor), q_max)``.
        None: the source has no read-noise data.
    read_noise_scale : float
        Factor on the read noise (aihwkit ``read_noise_scale``).
    relaxation_coeff : tuple of (t_inference, coeffs)
        ReRAM: at each listed ``t_inference`` (s) the conductance is a fresh sample around the
        target with std ``(sum_i c_i (g / g_max)^i) * g_max / prog_g_max_reference`` (uS); only
        these times exist (aihwkit raises for any other). Empty for PCM.
    sources : mapping
        Parameter name -> citation (file + commit, paper). Not compared, not hashed.
    """

    name: str
    g_max: float
    prog_coeff: tuple
    prog_g_max_reference: float
    g_min: float = 0.0
    prog_noise_scale: float = 1.0
    drift_nu_mean: "tuple | None" = None
    drift_nu_mean_bounds: tuple = (0.0, math.inf)
    drift_nu_std: "tuple | None" = None
    drift_nu_std_bounds: tuple = (0.0, math.inf)
    drift_scale: float = 1.0
    g_rel_floor: float = 1e-7
    t0: "float | None" = None
    t_read: "float | None" = None
    read_noise: "tuple | None" = None
    read_noise_scale: float = 1.0
    relaxation_coeff: tuple = ()
    sources: Mapping = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        owner = "DeviceModel"
        _check_positive(owner, "g_max", self.g_max)
        _check_positive(owner, "prog_g_max_reference", self.prog_g_max_reference)
        if not (_is_real(self.g_min) and 0.0 <= self.g_min < self.g_max):
            raise param_error(owner, "g_min", "a float in [0, g_max)", self.g_min)
        for name in ("prog_noise_scale", "drift_scale", "read_noise_scale"):
            v = getattr(self, name)
            if not (_is_real(v) and v >= 0 and math.isfinite(v)):
                raise param_error(owner, name, "a finite float >= 0", v)
        if self.drift_nu_mean is not None and self.t0 is None:
            raise param_error(owner, "t0", "a positive time (s) when a drift model is given",
                              self.t0)
        if self.t0 is not None:
            _check_positive(owner, "t0", self.t0)
        if self.read_noise is not None and self.t_read is None:
            raise param_error(owner, "t_read",
                              "a positive time (s) when a read-noise model is given", self.t_read)
        if self.read_noise is not None and self.t0 is None:
            raise param_error(owner, "t0", "a positive time (s) when a read-noise model is given",
                              self.t0)
        if self.t_read is not None:
            _check_positive(owner, "t_read", self.t_read)
        object.__setattr__(self, "prog_coeff", tuple(float(c) for c in self.prog_coeff))
        object.__setattr__(self, "relaxation_coeff", tuple(
            (float(t), tuple(float(c) for c in cs)) for t, cs in self.relaxation_coeff))
        object.__setattr__(self, "sources", types.MappingProxyType(dict(self.sources)))

    @property
    def relaxation_times(self) -> tuple:
        """The ``t_inference`` values (s) the ReRAM relaxation fit exists at (empty for PCM)."""
        return tuple(t for t, _ in self.relaxation_coeff)


PCM = DeviceModel(
    name="pcm",
    g_max=25.0,
    prog_coeff=(0.26348, 1.9650, -1.1731),
    prog_g_max_reference=25.0,
    drift_nu_mean=(-0.0155, 0.0244),
    drift_nu_mean_bounds=(0.049, 0.1),
    drift_nu_std=(-0.0125, -0.0059),
    drift_nu_std_bounds=(0.008, 0.045),
    g_rel_floor=1e-7,
    t0=20.0,
    t_read=250.0e-9,
    read_noise=(0.0088, 0.65, 1e-3, 0.2),
    sources={
        "g_max": f"25.0 uS: {_CONV_PY} (SinglePairConductanceConverter default g_max; "
                 f"PCMLikeNoiseModel(g_max=None) takes it)",
        "g_min": f"0.0 uS: {_CONV_PY} (SinglePairConductanceConverter default g_min)",
        "prog_coeff": f"[0.26348, 1.9650, -1.1731] uS at g_max 25 uS: {_PCM_PY} "
                      f"(PCMLikeNoiseModel default prog_coeff); {_NANDAKUMAR}",
        "prog_g_max_reference": f"25.0 uS: {_PCM_PY} (prog_coeff_g_max_reference default)",
        "drift_nu_mean": f"mu = -0.0155 ln(g_rel) + 0.0244, clipped to [0.049, 0.1]: {_PCM_PY} "
                         f"(generate_drift_coefficients); {_NANDAKUMAR}",
        "drift_nu_std": f"sigma = -0.0125 ln(g_rel) - 0.0059, clipped to [0.008, 0.045]: "
                        f"{_PCM_PY} (generate_drift_coefficients); {_NANDAKUMAR}",
        "g_rel_floor": f"1e-7: {_PCM_PY} (_ZERO_CLIP)",
        "t0": f"20.0 s: {_PCM_PY} (t_0 default); {_NANDAKUMAR}",
        "t_read": f"250e-9 s: {_PCM_PY} (t_read default); {_NANDAKUMAR}",
        "read_noise": f"Q_s = min(0.0088 / max((|g|/g_max)^0.65, 1e-3), 0.2), sigma = |G(t)| Q_s "
                      f"sqrt(ln((t + t_read) / (2 t_read))): {_PCM_PY} "
                      f"(apply_drift_noise_to_conductance); {_NANDAKUMAR}",
        "scales": f"prog_noise_scale = read_noise_scale = drift_scale = 1.0: {_PCM_PY}",
    },
)
"""aihwkit's ``PCMLikeNoiseModel()`` defaults (with its default single-pair converter)."""


RERAM = DeviceModel(
    name="reram",
    g_max=40.0,
    # aihwkit lists each fit highest power first and reverses it ([::-1]); stored here lowest first.
    prog_coeff=(0.348, 16.030, -43.853, 45.393, -16.815),
    prog_g_max_reference=40.0,
    relaxation_coeff=(
        (1.0, (0.348, 16.030, -43.853, 45.393, -16.815)),
        (86400.0, (0.701, 22.086, -50.773, 47.095, -16.458)),
        (172800.0, (0.782, 20.274, -43.507, 37.062, -11.934)),
    ),
    sources={
        "g_max": f"40.0 uS: {_RERAM_PY} (comment 'standard g_max are defined in respect to 40.0 "
                 f"uS'); NOTE aihwkit's ReRamWan2022NoiseModel(g_max=None) itself maps to the "
                 f"converter default 25.0 uS ({_CONV_PY}); {_WAN}",
        "prog_coeff": f"coefficients of the 1 s fit (the smallest time key, used for programming), "
                      f"uS, ascending powers of g/g_max: {_RERAM_PY} (coeff_dic[1.0]); {_WAN} "
                      f"(read off the published figures by the aihwkit authors, 4th-order fit)",
        "prog_g_max_reference": f"40.0 uS: {_RERAM_PY}; NOTE aihwkit assigns 40.0 to an unused "
                                f"attribute (prog_coeff_g_max_reference) while the polynomial "
                                f"uses coeff_g_max_reference = g_max, so aihwkit applies scale 1",
        "relaxation_coeff": f"coeff_dic at t_inference = 1 s, 86400 s (1 day), 172800 s (2 days), "
                            f"uS: {_RERAM_PY}; {_WAN}",
        "t0": f"none: {_RERAM_PY} has no power-law drift for ReRAM",
        "t_read": f"none: {_RERAM_PY} says 'No separate data is available for read noise (1/f)' "
                  f"and suggests forward.w_noise ~ 0.01 (additive constant) instead; not modelled",
        "scales": f"noise_scale = 1.0: {_RERAM_PY}",
    },
)
"""aihwkit's ``ReRamWan2022NoiseModel()`` fits, at the fits' reference ``g_max = 40 uS``.

Two differences from ``ReRamWan2022NoiseModel()`` with no arguments, both deliberate and both
from aihwkit's code as read: (1) that constructor uses the converter default ``g_max = 25 uS``,
not 40; (2) its polynomial is scaled by ``g_max / coeff_g_max_reference`` with
``coeff_g_max_reference = g_max`` (the 40.0 is stored under another attribute name), i.e. by 1.
Exactly aihwkit's default is ``dataclasses.replace(RERAM, g_max=25.0, prog_g_max_reference=25.0)``.
"""

_DEVICES = {"pcm": PCM, "reram": RERAM}


def _preset(presets: dict, name, owner: str):
    """``presets[name]`` (case-insensitive), or an error naming the valid names."""
    key = name.lower() if isinstance(name, str) else name
    if key not in presets:
        raise ValidationError(
            f"The 'name' parameter of {owner} must be one of {sorted(presets)}. "
            f"Got {name!r} instead.")
    return presets[key]


def device_model(name: str) -> DeviceModel:
    """The device preset called ``name`` (``"pcm"`` or ``"reram"``, case-insensitive)."""
    return _preset(_DEVICES, name, "device_model")


@dataclass(frozen=True)
class PeripheryModel:
    """DAC / ADC / output-noise settings of aihwkit's ``IOParameters`` family.

    ``dac_bits`` / ``adc_bits`` give aihwkit's ``inp_res = 1 / (2**bits - 2)`` and
    ``out_res = 1 / (2**bits - 2)``; ``out_noise`` is the std of the additive Gaussian noise on
    each analog output, in units where the weights are normalized to ``[-1, 1]`` and inputs to
    ``[-inp_bound, inp_bound]``.
    """

    name: str
    dac_bits: int
    adc_bits: int
    inp_bound: float
    out_bound: float
    out_noise: float
    noise_management: str
    bound_management: bool
    sources: Mapping = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "sources", types.MappingProxyType(dict(self.sources)))


IO_DEFAULT = PeripheryModel(
    "io_parameters", dac_bits=7, adc_bits=9, inp_bound=1.0, out_bound=12.0, out_noise=0.06,
    noise_management="abs_max", bound_management=True,
    sources={"all": f"{_IO_PY} (IOParameters defaults: inp_res = 1/(2**7-2), out_res = "
                    f"1/(2**9-2), inp_bound 1.0, out_bound 12.0, out_noise 0.06, ABS_MAX noise "
                    f"management, ITERATIVE bound management)"})
IO_PRESET = PeripheryModel(
    "preset_io", dac_bits=7, adc_bits=9, inp_bound=1.0, out_bound=20.0, out_noise=0.1,
    noise_management="abs_max", bound_management=True,
    sources={"all": f"{_PRESET_PY} (PresetIOParameters: 7-bit DAC, 9-bit ADC, out_bound 20.0, "
                    f"out_noise 0.1, ABS_MAX, ITERATIVE)"})
IO_STANDARD_HWA = PeripheryModel(
    "standard_hwa", dac_bits=8, adc_bits=8, inp_bound=1.0, out_bound=10.0, out_noise=0.04,
    noise_management="constant", bound_management=False,
    sources={"all": f"{_INFER_PRESET_PY} (StandardHWATrainingPreset forward: inp_res = out_res "
                    f"= 254 states, out_bound 10.0, out_noise 0.04, CONSTANT noise management "
                    f"with nm_thres 1.0, no bound management; it also sets w_noise 0.0175 "
                    f"PCM_READ and ir_drop 1.0, not modelled here); {_RASCH}"})

_PERIPHERIES = {p.name: p for p in (IO_DEFAULT, IO_PRESET, IO_STANDARD_HWA)}


def periphery_model(name: str) -> PeripheryModel:
    """The periphery preset ``name``: ``"io_parameters"``, ``"preset_io"`` or ``"standard_hwa"``."""
    return _preset(_PERIPHERIES, name, "periphery_model")


# --------------------------------------------------------------------------------------------
# Weights <-> conductances
# --------------------------------------------------------------------------------------------

def to_conductances(W, w_max=None, g_max: float = PCM.g_max, g_min: float = 0.0):
    """Differential-pair targets ``(g_plus, g_minus)`` in uS, shaped like ``W``.

    aihwkit's ``SinglePairConductanceConverter``: with ``s = (g_max - g_min) / w_max``,

        g_plus  = clip( s W, 0, g_max) + g_min
        g_minus = clip(-s W, 0, g_max) + g_min

    so a positive weight sits on G+, a negative one on G-, and the other device is at ``g_min``
    (0 by default). (aihwkit clips at ``g_max`` after scaling by ``g_max - g_min``; with
    ``g_min = 0`` that is the same as clipping ``|W|`` at ``w_max``.) ``w_max=None`` takes
    ``max |W|`` (floored at 1e-7) as aihwkit does.
    """
    owner = "to_conductances"
    W = _array(owner, "W", W)
    w_max = _w_max(owner, w_max, W)
    _check_positive(owner, "g_max", g_max)
    if not (_is_real(g_min) and 0 <= g_min < g_max):
        raise param_error(owner, "g_min", "a float in [0, g_max)", g_min)
    s = (g_max - g_min) / w_max
    return np.clip(s * W, 0.0, g_max) + g_min, np.clip(-s * W, 0.0, g_max) + g_min


def to_weights(g_plus, g_minus, w_max, g_max: float = PCM.g_max, g_min: float = 0.0):
    """Weights from a differential pair: ``W = ((g_plus - g_min) - (g_minus - g_min)) w_max /
    (g_max - g_min)`` (aihwkit ``convert_back_to_weights``). ``w_max`` is required (the scale
    used on the way in)."""
    owner = "to_weights"
    gp = _array(owner, "g_plus", g_plus)
    gm = _array(owner, "g_minus", g_minus)
    if gp.shape != gm.shape:
        raise param_error(owner, "g_minus", f"an array of shape {gp.shape} (that of g_plus)",
                          gm.shape)
    _check_positive(owner, "w_max", w_max)
    _check_positive(owner, "g_max", g_max)
    if not (_is_real(g_min) and 0 <= g_min < g_max):
        raise param_error(owner, "g_min", "a float in [0, g_max)", g_min)
    return ((gp - g_min) - (gm - g_min)) * (float(w_max) / (g_max - g_min))


# --------------------------------------------------------------------------------------------
# Device noise
# --------------------------------------------------------------------------------------------

def _poly(g, coeff, model: DeviceModel) -> np.ndarray:
    x = g / model.g_max
    out = np.full_like(g, coeff[0])
    power = np.ones_like(g)
    for c in coeff[1:]:
        power = power * x
        out = out + c * power
    return out * (model.g_max / model.prog_g_max_reference)


def programming_noise_std(g_target, model: DeviceModel = PCM) -> np.ndarray:
    """Per-device programming-noise std (uS) at write time.

        sigma_prog = prog_noise_scale * (sum_i c_i (g_target / g_max)^i) * g_max / g_ref

    with ``c = model.prog_coeff`` and ``g_ref = model.prog_g_max_reference`` (aihwkit
    ``apply_programming_noise_to_conductance``; PCM: ``c = (0.26348, 1.9650, -1.1731)``, a
    2nd-degree fit; ReRAM: the 4th-degree 1 s fit). The programmed value is
    ``max(g_target + sigma_prog * n, 0)`` (:func:`program_conductances`). aihwkit uses the
    polynomial value as it is (it multiplies a normal, so its sign does not matter there); the
    preset polynomials are positive on ``[0, g_max]`` (PCM: >= 0.26 uS, ReRAM: >= 0.348 uS).
    """
    g = _array("programming_noise_std", "g_target", g_target)
    return model.prog_noise_scale * _poly(g, model.prog_coeff, model)


def program_conductances(g_target, model: DeviceModel, normal) -> np.ndarray:
    """Programmed conductances ``max(g_target + sigma_prog(g_target) * normal, 0)`` (uS)."""
    owner = "program_conductances"
    g = _array(owner, "g_target", g_target)
    n = _normals(owner, "normal", normal, g.shape)
    return np.maximum(g + programming_noise_std(g, model) * n, 0.0)


def drift_nu(g_target, model: DeviceModel, normal) -> np.ndarray:
    """Per-device drift exponent ``nu`` from standard normals ``normal`` (shape of ``g_target``).

    aihwkit ``PCMLikeNoiseModel.generate_drift_coefficients`` (from the *target*, not the
    programmed, conductance):

        g_rel = max(|g_target| / g_max, 1e-7)
        mu    = clip(-0.0155 ln(g_rel) + 0.0244, 0.049, 0.1)
        sigma = clip(-0.0125 ln(g_rel) - 0.0059, 0.008, 0.045)
        nu    = drift_scale * |mu + sigma * normal|

    (the absolute value, then aihwkit's redundant clamp at 0, so ``nu >= 0``). A model without a
    drift fit (ReRAM) gives ``nu = 0``.
    """
    owner = "drift_nu"
    g = _array(owner, "g_target", g_target)
    n = _normals(owner, "normal", normal, g.shape)
    if model.drift_nu_mean is None:
        return np.zeros_like(g)
    log_g = np.log(np.maximum(np.abs(g) / model.g_max, model.g_rel_floor))
    a, b = model.drift_nu_mean
    mu = np.clip(a * log_g + b, *model.drift_nu_mean_bounds)
    a, b = model.drift_nu_std
    sigma = np.clip(a * log_g + b, *model.drift_nu_std_bounds)
    return model.drift_scale * np.abs(mu + sigma * n)


def drift(g, nu, t_inference: float, model: DeviceModel = PCM) -> np.ndarray:
    """Power-law drift: ``G = G_prog * ((t_inference + t0) / t0)^(-nu)``.

    In the fit's clock ``t = t_inference + t0`` this is ``G(t) = G(t0) (t / t0)^(-nu)``; at
    ``t_inference = 0`` (``t = t0``) ``G = G_prog``. Times before ``t0`` do not exist in this
    convention (aihwkit adds ``t0`` to ``t_inference``); ``t_inference < 0`` is an error. A
    model without a drift fit (ReRAM, ``t0 = None``) returns ``g`` unchanged.
    """
    owner = "drift"
    g = _array(owner, "g", g)
    nu = _normals(owner, "nu", nu, g.shape)
    t = _time(owner, t_inference)
    if model.t0 is None or model.drift_nu_mean is None or t == 0.0:
        return g.copy()
    return g * ((t + model.t0) / model.t0) ** (-nu)


def read_noise_std(g, t_inference: float, model: DeviceModel = PCM, g_now=None) -> np.ndarray:
    """Per-device std (uS) of the accumulated 1/f read noise at ``t_inference``.

    aihwkit ``PCMLikeNoiseModel.apply_drift_noise_to_conductance``, with ``t = t_inference +
    t0``:

        Q_s   = min(0.0088 / max((|g| / g_max)^0.65, 1e-3), 0.2)     (g: programmed value)
        sigma = read_noise_scale * |g_now| * Q_s * sqrt(ln((t + t_read) / (2 t_read)))

    ``g`` is the programmed (pre-drift) conductance, which sets ``Q_s``; ``g_now`` the drifted
    one the noise is relative to (default ``g``: no drift). aihwkit never evaluates ``t <
    t_read`` (``t >= t0 = 20 s``); here the logarithm is floored at 0 there (no noise) rather
    than giving NaN. A model without read-noise data (ReRAM) gives 0: aihwkit has none (its
    docstring suggests an additive ``forward.w_noise`` of about 0.01 instead).
    """
    owner = "read_noise_std"
    g = _array(owner, "g", g)
    t = _time(owner, t_inference)
    g_now = g if g_now is None else _normals(owner, "g_now", g_now, g.shape)
    if model.read_noise is None:
        return np.zeros_like(g)
    q0, expo, floor, q_max = model.read_noise
    q_s = np.minimum(q0 / np.maximum((np.abs(g) / model.g_max) ** expo, floor), q_max)
    tt = t + model.t0
    log_term = max(math.log((tt + model.t_read) / (2.0 * model.t_read)), 0.0)
    return model.read_noise_scale * np.abs(g_now) * q_s * math.sqrt(log_term)


def relaxation_std(g_target, t_inference: float, model: DeviceModel = RERAM) -> np.ndarray:
    """ReRAM: the std (uS) of the conductance around its target at ``t_inference``.

    aihwkit ``ReRamWan2022NoiseModel.apply_drift_noise_to_conductance``: at ``t_inference`` in
    ``model.relaxation_times`` (1 s, 1 day, 2 days) the conductance is a fresh sample
    ``max(g_target + sigma_t(g_target) * n, 0)`` with the fit of that time (same polynomial form
    as :func:`programming_noise_std`); other times are an error, as in aihwkit (there is no
    interpolation in the source and none is invented here).
    """
    owner = "relaxation_std"
    g = _array(owner, "g_target", g_target)
    t = _time(owner, t_inference)
    table = dict(model.relaxation_coeff)
    if t not in table:
        raise param_error(owner, "t_inference",
                          f"one of the fitted times {sorted(table)} s for model {model.name!r}", t)
    return model.prog_noise_scale * _poly(g, table[t], model)


# --------------------------------------------------------------------------------------------
# One chip's programmed weights
# --------------------------------------------------------------------------------------------

def normals_shape(weight_shape) -> tuple:
    """Shape of the ``normals`` :func:`program` takes: ``(3, 2) + weight_shape``.

    Index 0: programming noise, 1: drift exponent, 2: read noise (PCM) or relaxation (ReRAM);
    second index 0: G+, 1: G-.
    """
    return (3, 2) + tuple(weight_shape)


def global_drift_compensation(W_programmed, W_now) -> float:
    """The deterministic global drift-compensation factor ``alpha`` (a float).

    aihwkit ``GlobalDriftCompensation``: right after programming it reads the tile with the
    one-hot inputs (the identity), baseline ``b = max(mean |y|, 1e-4)``; at inference it reads
    again, ``c = max(mean |y|, 1e-4)``, and multiplies every later output by ``alpha = b / c``.
    With the identity as input the outputs are the weights themselves, so with an ideal
    read-out (no DAC / ADC / output noise, as aihwkit's ``...WithExactReference`` for the
    reference side) this is

        alpha = max(mean |W_programmed|, 1e-4) / max(mean |W_now|, 1e-4).

    aihwkit reads both through the (noisy, quantized) tile; that read-out noise is left out here
    so the factor is deterministic.
    """
    wp = _array("global_drift_compensation", "W_programmed", W_programmed)
    wn = _normals("global_drift_compensation", "W_now", W_now, wp.shape)
    return max(float(np.mean(np.abs(wp))), 1e-4) / max(float(np.mean(np.abs(wn))), 1e-4)


def program(W, w_max, model: DeviceModel, t_inference: float, normals,
            compensate: bool = False) -> np.ndarray:
    """One chip's effective weights at ``t_inference`` seconds after programming.

    For each device d in (G+, G-), with ``n = normals`` (shape :func:`normals_shape`):

        g_t        = to_conductances(W, w_max, g_max, g_min)[d]
        g_prog     = max(g_t + sigma_prog(g_t) * n[0, d], 0)
      PCM:
        nu         = drift_nu(g_t, n[1, d])
        g_drift    = g_prog * ((t_inference + t0) / t0)^(-nu)
        g(t)       = max(g_drift + read_noise_std(g_prog, t_inference, g_now=g_drift) * n[2, d], 0)
      ReRAM (t_inference > 0, one of the fitted times):
        g(t)       = max(g_t + relaxation_std(g_t, t_inference) * n[2, d], 0)   (fresh sample,
                     as aihwkit; ``g_prog`` is not used; n[1] is unused)
      ReRAM, t_inference = 0:  g(t) = g_prog
        W(t)       = to_weights(g+(t), g-(t), w_max)

    This follows aihwkit's tile flow (``program_weights`` then ``drift_weights(t_inference)``),
    which applies PCM read noise even at ``t_inference = 0``. Two deliberate differences:
    conductances stay in physical units (aihwkit converts the programmed *weights* back to
    conductances, re-normalizing by their new absolute maximum, before drifting), and all
    randomness comes from ``normals``.

    ``compensate=True`` multiplies by :func:`global_drift_compensation` ``(W_prog, W(t))`` with
    ``W_prog = to_weights(g+_prog, g-_prog)`` (aihwkit takes the baseline right after
    programming). aihwkit applies the factor to the tile's digital output; for a linear
    read-out that is the same as scaling the weights, but with an ADC in between it is not:
    to mimic aihwkit exactly, use ``compensate=False`` and multiply the output of
    :func:`tile_matvec` by the factor.
    """
    owner = "program"
    W = _array(owner, "W", W)
    t = _time(owner, t_inference)
    if not isinstance(model, DeviceModel):
        raise param_error(owner, "model", "a DeviceModel (see device_model)", type(model).__name__)
    n = _normals(owner, "normals", normals, normals_shape(W.shape))
    w_max = _w_max(owner, w_max, W)
    targets = to_conductances(W, w_max, model.g_max, model.g_min)
    g_prog, g_now = [], []
    for d, g_t in enumerate(targets):
        gp = np.maximum(g_t + programming_noise_std(g_t, model) * n[0, d], 0.0)
        g_prog.append(gp)
        if model.relaxation_coeff:
            if t == 0.0:
                g_now.append(gp)
            else:
                g_now.append(np.maximum(g_t + relaxation_std(g_t, t, model) * n[2, d], 0.0))
            continue
        nu = drift_nu(g_t, model, n[1, d])
        gd = drift(gp, nu, t, model)
        g_now.append(np.maximum(gd + read_noise_std(gp, t, model, g_now=gd) * n[2, d], 0.0))
    W_now = to_weights(g_now[0], g_now[1], w_max, model.g_max, model.g_min)
    if compensate:
        W_prog = to_weights(g_prog[0], g_prog[1], w_max, model.g_max, model.g_min)
        W_now = W_now * global_drift_compensation(W_prog, W_now)
    return W_now


# --------------------------------------------------------------------------------------------
# DAC / ADC and one tile's matrix-vector product
# --------------------------------------------------------------------------------------------

def quantization_step(bits: int, bound: float) -> float:
    """aihwkit's step ``2 bound / (2**bits - 2)`` (``inp_res`` / ``out_res = 1 / (2**bits - 2)``
    scaled by the range ``2 bound``, ``UniformQuantize``)."""
    bits = _bits("quantization_step", "bits", bits)
    _check_positive("quantization_step", "bound", bound)
    return 2.0 * float(bound) / (2 ** bits - 2)


def n_levels(bits: int) -> int:
    """Number of output levels of a ``bits`` converter: ``2**bits - 1``.

    aihwkit's grid is ``k * step`` for integer ``k``, clipped at ``+-bound = +-(2**(bits-1) - 1)
    step``: ``2**bits - 2`` steps, ``2**bits - 1`` levels, symmetric, with an exact zero (e.g. a
    7-bit DAC: ``k = -63..63``, 127 levels).
    """
    return 2 ** _bits("n_levels", "bits", bits) - 1


def _quantize(owner, v, bits, bound, vname):
    v = _array(owner, vname, v)
    bits = _bits(owner, "bits", bits)
    _check_positive(owner, "bound", bound)
    if bits is not None:
        step = 2.0 * float(bound) / (2 ** bits - 2)
        v = np.round(v / step) * step  # round half to even, as torch.round
    return np.clip(v, -float(bound), float(bound))


def dac(x, bits: "int | None" = 7, bound: float = 1.0) -> np.ndarray:
    """Input (DAC) quantization: ``clip(round(x / step) * step, -bound, bound)``, ``step = 2 bound
    / (2**bits - 2)`` (aihwkit ``_prepare_input``: ``UniformQuantize`` then clamp at
    ``inp_bound``; rounding is half-to-even). ``bits=None``: clipping only (aihwkit ``inp_res <=
    0``). Defaults: aihwkit ``IOParameters`` (7 bits, bound 1)."""
    return _quantize("dac", x, bits, bound, "x")


def adc(z, bits: "int | None" = 9, bound: float = 12.0) -> np.ndarray:
    """Output (ADC) quantization: the same rule as :func:`dac` with ``out_res`` / ``out_bound``
    (aihwkit ``_finalize_output``). Defaults: aihwkit ``IOParameters`` (9 bits, bound 12)."""
    return _quantize("adc", z, bits, bound, "z")


def abs_max_scale(x, nm_thres: float = 0.0) -> np.ndarray:
    """aihwkit's ``ABS_MAX`` noise management: one scale per input vector (the last axis).

        alpha = max_i |x_i|   (keepdims; ``min(alpha, nm_thres)`` if ``nm_thres > 0``)
        alpha = 1 where alpha == 0

    The tile sees ``x / alpha`` (so the largest entry hits ``+-1``, the default ``inp_bound``)
    and the output is multiplied back by ``alpha`` after the ADC. Shape: ``x.shape[:-1] +
    (1,)`` (a 1-d ``x`` gives shape ``(1,)``).
    """
    x = _array("abs_max_scale", "x", x)
    if x.ndim == 0:
        raise param_error("abs_max_scale", "x", "an array with at least one axis", x.shape)
    if not (_is_real(nm_thres) and math.isfinite(nm_thres) and nm_thres >= 0):
        raise param_error("abs_max_scale", "nm_thres", "a finite float >= 0", nm_thres)
    alpha = np.max(np.abs(x), axis=-1, keepdims=True) if x.shape[-1] else np.zeros(
        x.shape[:-1] + (1,))
    if nm_thres > 0:
        alpha = np.minimum(alpha, nm_thres)
    return np.where(alpha > 0, alpha, 1.0)


def tile_matvec(W_tile, x, dac_bits: "int | None" = 7, adc_bits: "int | None" = 9,
                inp_bound: float = 1.0, out_bound: float = 12.0, w_max=None, *,
                out_noise: float = 0.0, normals=None, noise_management: bool = True,
                bound_management: bool = False, max_bm_factor: float = 1000.0,
                max_bm_res: float = 0.25) -> np.ndarray:
    """One tile's analog ``y = W_tile @ x`` with aihwkit's periphery (torch tile, ONE_PASS).

    ``W_tile`` is ``(out, in)`` (as aihwkit and neurosim store weights), ``x`` is ``(in,)`` or
    ``(..., in)``; the result has shape ``x.shape[:-1] + (out,)`` in weight x input units.

        W_n   = W_tile / w_max                         (weights normalized to [-1, 1];
                                                        w_max=None: max |W_tile|)
        a     = abs_max_scale(x) if noise_management else 1
        r     = 1                                      (bound management factor)
        x_q   = dac(x / (a r), dac_bits, inp_bound)
        y_a   = x_q @ W_n.T + out_noise * normals      (analog output + output noise)
        y_q   = adc(y_a, adc_bits, out_bound)
        y     = y_q * a * r * w_max

    ``bound_management=True`` is aihwkit's ``ITERATIVE`` scheme: while some quantized output of a
    vector lies beyond ``+-out_bound`` (before the clamp), double ``r`` and redo, stopping once ``r >
    max_bm_factor`` or ``r > max_bm_res / (2 inp_bound / (2**dac_bits - 2))`` (aihwkit
    ``analog_mvm.py``). Differences from aihwkit, stated: the test is per input vector here
    (aihwkit's torch tile tests the whole batch at once), and the same ``normals`` are reused
    in each round (aihwkit draws new noise). ``out_noise`` is in normalized output units
    (aihwkit ``out_noise``: 0.06 in ``IOParameters``, 0.1 in ``PresetIOParameters``); it needs
    ``normals`` of the output's shape. Not modelled: input noise, IR drop, output
    non-linearity, asymmetries, stochastic rounding, short-term weight noise (``w_noise``).
    """
    owner = "tile_matvec"
    W = _array(owner, "W_tile", W_tile)
    if W.ndim != 2:
        raise param_error(owner, "W_tile", "a 2-d array (out, in)", W.shape)
    x = _array(owner, "x", x)
    if x.ndim == 0 or x.shape[-1] != W.shape[1]:
        raise param_error(owner, "x", f"an array whose last axis has length {W.shape[1]}",
                          x.shape)
    dac_bits = _bits(owner, "dac_bits", dac_bits)
    adc_bits = _bits(owner, "adc_bits", adc_bits)
    _check_positive(owner, "inp_bound", inp_bound)
    _check_positive(owner, "out_bound", out_bound)
    w_max = _w_max(owner, w_max, W)
    if not (_is_real(out_noise) and math.isfinite(out_noise) and out_noise >= 0):
        raise param_error(owner, "out_noise", "a finite float >= 0", out_noise)
    out_shape = x.shape[:-1] + (W.shape[0],)
    noise = 0.0
    if out_noise > 0:
        if normals is None:
            raise param_error(owner, "normals", f"an array of shape {out_shape} when out_noise > 0",
                              None)
        noise = out_noise * _normals(owner, "normals", normals, out_shape)
    Wn = W / w_max
    a = abs_max_scale(x) if noise_management else np.ones(x.shape[:-1] + (1,))

    def once(r):
        """ADC output and, per vector, whether an output was clipped (aihwkit tests the
        quantized value before the clamp: clipped iff some |y| > out_bound)."""
        xq = dac(x / (a * r), dac_bits, inp_bound)
        y_a = xq @ Wn.T + noise
        if adc_bits is not None:
            step = 2.0 * out_bound / (2 ** adc_bits - 2)
            y_a = np.round(y_a / step) * step
        clipped = np.any(np.abs(y_a) > out_bound, axis=-1, keepdims=True)
        return np.clip(y_a, -out_bound, out_bound), clipped

    r = np.ones(x.shape[:-1] + (1,))
    y, clipped = once(r)
    if bound_management:
        inp_step = 2.0 * inp_bound / (2 ** dac_bits - 2) if dac_bits is not None else 0.0
        limit = max_bm_factor if inp_step == 0 else min(max_bm_factor, max_bm_res / inp_step)
        while True:
            again = clipped & (r <= limit)
            if not np.any(again):
                break
            r = np.where(again, 2.0 * r, r)
            y_new, clipped_new = once(r)
            y = np.where(again, y_new, y)
            clipped = np.where(again, clipped_new, False)
    return y * a * r * w_max
