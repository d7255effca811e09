"""Accuracy and failure rate of the bundled model on analog crossbars, against the time since
programming (conductance drift) and the ADC resolution.

Two profiles: ``pcm_crossbar`` with the PCM model (aihwkit's ``PCMLikeNoiseModel``, any
``t >= 0``), without and with global drift compensation; ``rram_crossbar`` with its ``[analog]``
table, the ReRAM model (aihwkit's ``ReRamWan2022NoiseModel``, fitted at t = 1 s, 1 day and 2
days only), alone and together with the profile's stuck cells (permanent). Every point is a
permanent run (:func:`neurosim.simulate`, metric ``flip``): ``n_chips`` chip instances, each
programmed once and read on the whole digits test split.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from neurosim.datasets import load_digits_model, load_digits_test
from neurosim.experiments.files import SavedResult
from neurosim.faults import AnalogCrossbar, SynapseStuck
from neurosim.faults.analog import parse_time
from neurosim.hardware import load_profile
from neurosim.mapping import map_network
from neurosim.simulation import simulate

__all__ = ["AnalogSweepResult", "analog_sweep", "load_analog_sweep", "PCM_TIMES", "RRAM_TIMES",
           "ADC_BITS", "ANALOG_PROFILES"]

#: Times since programming swept for PCM: 1 s, 1 min, 1 h, 1 day, 1 week, 1 month (30 days), 1 year.
PCM_TIMES = ("1s", "1min", "1h", "1d", "7d", "30d", "1y")
#: ReRAM: the times of aihwkit's relaxation fits (t = 0 is the programming noise alone).
RRAM_TIMES = ("1s", "1d", "2d")
#: ADC resolutions swept (at t = 1 h for PCM, 1 s for ReRAM).
ADC_BITS = (3, 4, 5, 6, 7, 8, 9, 10)
#: Profile name per short name.
ANALOG_PROFILES = {"pcm": "pcm_crossbar", "rram": "rram_crossbar"}
#: The time at which the ADC bits are swept, per profile.
ADC_TIME = {"pcm": "1h", "rram": "1s"}


@dataclass
class AnalogSweepResult(SavedResult):
    """One row per (profile, variant, sweep, value) point (see :func:`analog_sweep`).

    Row ``i``: profile ``profile[i]`` (``pcm`` / ``rram``), variant ``variant[i]``
    (``analog``; ``compensated``: PCM with global drift compensation; ``analog+stuck``: ReRAM
    with the profile's stuck cells), sweep ``sweep[i]`` (``time``: ``value`` in seconds since
    programming; ``adc_bits``: ``value`` ADC bits). ``accuracy[i]`` is the test accuracy
    averaged over the chips, ``failure_rate[i]`` the fraction of (chip, input) pairs whose
    argmax differs from the clean quantized network, with its interval ``[ci_low, ci_high]``
    (neurosim's interval over chips: empirical Bernstein, distribution-free and conservative at
    a few hundred chips); ``chip_q05`` / ``chip_q95`` are the 5 % and 95 % quantiles of the
    per-chip failure rates (the chip-to-chip spread).
    """

    _KIND = "crossbar_analog"

    profile: list
    variant: list
    sweep: list
    value: np.ndarray
    accuracy: np.ndarray
    failure_rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    chip_q05: np.ndarray
    chip_q95: np.ndarray
    clean_accuracy: dict
    n_chips: int
    settings: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """The rows as plain dicts."""
        return [{"profile": self.profile[i], "variant": self.variant[i], "sweep": self.sweep[i],
                 "value": float(self.value[i]), "accuracy": float(self.accuracy[i]),
                 "failure_rate": float(self.failure_rate[i]), "ci_low": float(self.ci_low[i]),
                 "ci_high": float(self.ci_high[i]), "chip_q05": float(self.chip_q05[i]),
                 "chip_q95": float(self.chip_q95[i])}
                for i in range(len(self.profile))]

    def curves(self, sweep: str) -> list[tuple[str, str]]:
        """The (profile, variant) pairs that have points in ``sweep``, in row order."""
        seen = []
        for p, v, s in zip(self.profile, self.variant, self.sweep):
            if s == sweep and (p, v) not in seen:
                seen.append((p, v))
        return seen

    def curve(self, profile: str, variant: str, sweep: str) -> np.ndarray:
        """Row indices of one curve, by increasing value."""
        idx = np.array([i for i in range(len(self.profile)) if self.profile[i] == profile
                        and self.variant[i] == variant and self.sweep[i] == sweep], dtype=np.int64)
        return idx[np.argsort(self.value[idx], kind="stable")] if idx.size else idx

    def summary(self) -> str:
        lines = [f"{self.n_chips} chips per point, {self.settings.get('n_inputs', '')} inputs; clean "
                 "accuracy " + ", ".join(f"{k} {v:.4f}" for k, v in self.clean_accuracy.items())]
        for sweep, unit in (("time", "t"), ("adc_bits", "ADC bits")):
            for p, v in self.curves(sweep):
                lines.append(f"{p} ({v}), {unit}:")
                for i in self.curve(p, v, sweep):
                    x = (_time_label(self.value[i]) if sweep == "time" else f"{int(self.value[i])}")
                    lines.append(f"  {x:>8}  accuracy {self.accuracy[i]:.4f}  failure rate "
                                 f"{self.failure_rate[i]:.4f} [{self.ci_low[i]:.4f}, "
                                 f"{self.ci_high[i]:.4f}]  chips q05..q95 {self.chip_q05[i]:.4f}.."
                                 f"{self.chip_q95[i]:.4f}")
        return "\n".join(lines)


def _time_label(seconds: float) -> str:
    for unit, size in (("y", 365.25 * 86400), ("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def analog_sweep(times=None, adc_bits=ADC_BITS, n_chips: int = 150, seed: int = 0,
                 small: bool = False, progress: bool = False, profiles=("pcm", "rram"),
                 compensated: bool = True, stuck: bool = True, model=None, X=None, y=None,
                 backend="auto") -> AnalogSweepResult:
    """Accuracy and failure rate against the time since programming and the ADC bits.

    Parameters
    ----------
    times : dict or sequence, optional
        Times since programming (seconds or ``1s``, ``1h``, ``30d``, ``1y``); a sequence is
        used for every profile (ReRAM keeps only its fitted times), a dict maps ``pcm`` /
        ``rram`` to its own. Default: :data:`PCM_TIMES` and :data:`RRAM_TIMES`.
    adc_bits : sequence of int
        ADC resolutions, swept at t = 1 h (PCM) and 1 s (ReRAM), all else the profile's.
        Empty: no ADC sweep.
    n_chips : int
        Chip instances per point (permanent runs).
    small : bool
        Two points per sweep, 3 chips, 100 inputs: seconds, noisy numbers.
    profiles : sequence of {"pcm", "rram"}
    compensated : bool
        Add PCM with global drift compensation to the time sweep.
    stuck : bool
        Add ReRAM together with the profile's stuck cells (permanent) to the time sweep.
    progress : bool
        Print one line per point.

    Returns
    -------
    AnalogSweepResult
    """
    started = time.perf_counter()
    model = model if model is not None else load_digits_model()
    if X is None:
        X, y = load_digits_test()
    if times is None:
        times = {"pcm": PCM_TIMES, "rram": RRAM_TIMES}
    elif not isinstance(times, dict):
        times = {"pcm": tuple(times), "rram": tuple(times)}
    times = {k: [parse_time(t) for t in v] for k, v in times.items()}
    allowed = set(parse_time(t) for t in RRAM_TIMES) | {0.0}
    times["rram"] = [t for t in times.get("rram", ()) if t in allowed]
    adc_bits = [int(b) for b in adc_bits]
    if small:
        times = {k: [v[0], v[-1]] if len(v) > 1 else list(v) for k, v in times.items()}
        adc_bits = sorted({adc_bits[0], adc_bits[-1]}) if adc_bits else []
        n_chips = min(int(n_chips), 3)
        X = X[:100]
        y = None if y is None else y[:100]
    rows = {k: [] for k in ("profile", "variant", "sweep", "value", "accuracy", "failure_rate",
                            "ci_low", "ci_high", "chip_q05", "chip_q95")}
    clean = {}
    runs = 0
    for short in profiles:
        if short not in ANALOG_PROFILES:
            raise ValueError(f"analog_sweep: unknown profile {short!r}; use 'pcm' or 'rram'.")
        profile = load_profile(ANALOG_PROFILES[short])
        mapping = map_network(model, profile)
        base = AnalogCrossbar.from_chip(profile)
        rates = profile.fault_rates  # the profile's stuck cells, permanent as on the chip
        stuck_proc = SynapseStuck(float(rates.synapse_stuck_at_zero),
                                  float(rates.synapse_stuck_at_max), mode="permanent")
        variants = [("analog", lambda p: p)]
        if short == "pcm" and compensated:
            variants.append(("compensated", lambda p: dataclasses.replace(p, compensate=True)))
        if short == "rram" and stuck:
            variants.append(("analog+stuck", lambda p: p + stuck_proc))
        points = [(name, make, "time", t) for name, make in variants for t in times.get(short, ())]
        points += [("analog", variants[0][1], "adc_bits", b) for b in adc_bits]
        for name, make, sweep, value in points:
            proc = (dataclasses.replace(base, t=value) if sweep == "time" else
                    dataclasses.replace(base, t=parse_time(ADC_TIME[short]), adc_bits=value))
            r = simulate(mapping, make(proc), X, y, n_samples=int(n_chips), seed=seed,
                         backend=backend)
            runs += 1
            clean[short] = float(r.clean_accuracy)
            q = r.chip_failure_quantiles or {}
            for key, v in (("profile", short), ("variant", name), ("sweep", sweep),
                           ("value", float(value)), ("accuracy", float(r.faulty_accuracy)),
                           ("failure_rate", float(r.failure_rate)), ("ci_low", float(r.ci_low)),
                           ("ci_high", float(r.ci_high)),
                           ("chip_q05", float(q.get("q05", np.nan))),
                           ("chip_q95", float(q.get("q95", np.nan)))):
                rows[key].append(v)
            if progress:
                print(f"{short} {name} {sweep}={value:g}: accuracy {r.faulty_accuracy:.4f}, "
                      f"failure rate {r.failure_rate:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]",
                      flush=True)
    arr = {k: np.asarray(rows[k], dtype=np.float64) for k in
           ("value", "accuracy", "failure_rate", "ci_low", "ci_high", "chip_q05", "chip_q95")}
    return AnalogSweepResult(
        profile=rows["profile"], variant=rows["variant"], sweep=rows["sweep"], **arr,
        clean_accuracy=clean, n_chips=int(n_chips),
        settings={"model": str(model), "n_inputs": int(X.shape[0]), "small": bool(small),
                  "seed": int(seed), "metric": "flip", "confidence": 0.95, "runs": runs,
                  "adc_time": {k: parse_time(v) for k, v in ADC_TIME.items()},
                  "profiles": {k: ANALOG_PROFILES[k] for k in profiles},
                  "elapsed_s": time.perf_counter() - started})


def load_analog_sweep(path) -> AnalogSweepResult:
    """Read an :class:`AnalogSweepResult` written by ``save``."""
    return AnalogSweepResult.load(path)
