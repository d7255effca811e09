"""Result types: what simulate, the stratified estimator and certify return.

Every result is an object with ``summary()`` (text) and ``to_dict()`` (the JSON the command
line prints), and comes back from its file: :func:`load_result` reads a run file written by
``simulate(..., output=...)`` into a :class:`SimulationResult`, :meth:`Certificate.load`
reads the JSON a certificate was saved to. ``from_dict(to_dict())`` rebuilds each type.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import FileFormatError, NeurosimFileNotFoundError
from neurosim.io.atomic import atomic_path
from neurosim.io.encoding import json_default
from neurosim.io.runfile import read_run_file

__all__ = ["SimulationResult", "StratifiedResult", "Stratum", "Certificate", "load_result",
           "load_certificate", "CHIP_QUANTILES", "CERTIFICATE_FORMAT_VERSION"]

CHIP_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
#: Version of the certificate JSON layout (the ``format_version`` key).
CERTIFICATE_FORMAT_VERSION = 1


def _none_if_nan(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _nan_if_none(value):
    return math.nan if value is None else value


@dataclass
class SimulationResult:
    """What :func:`simulate` measured.

    Attributes
    ----------
    failure_rate : float
        Fraction of (fault draw, input) pairs whose error metric is >= eps.
    ci_low, ci_high : float
        Confidence interval of the failure probability for these inputs (Clopper-Pearson in
        transient mode; in permanent mode an empirical Bernstein interval over chip instances,
        exact Clopper-Pearson when there is one input).
    error_mean, error_std : float
        Mean and standard deviation of the error metric over all pairs (0 for fault-free ones).
    output_error_mean, output_error_std : ndarray
        Per output component, of ``y_L(faulty) - y_L(clean)``.
    clean_accuracy, faulty_accuracy : float or None
        Accuracy of the simulated network without and with faults (classification labels).
    layer_failures, core_failures : ndarray
        Number of failing pairs whose fault set touched layer l (0..L) / core c.
    chip_failure_rates : ndarray or None
        Permanent mode: failure rate of each chip instance over the inputs.
    estimator : {"mc", "stratified"}
        Which estimator measured it; ``stratification`` holds the stratified estimator's strata.
    backend : str
        The backend that ran the faulty network (numba, numpy, lava).
    """

    failure_rate: float
    ci_low: float
    ci_high: float
    confidence: float
    n_samples: int
    n_inputs: int
    n_pairs: int
    n_failures: int
    n_faulty_pairs: int
    metric: str
    eps: float
    mode: str
    seed: int
    error_mean: float
    error_std: float
    output_error_mean: np.ndarray
    output_error_std: np.ndarray
    clean_accuracy: "float | None"
    faulty_accuracy: "float | None"
    layer_failures: np.ndarray
    core_failures: np.ndarray
    fault_model: str
    simulated_network: str
    interval_method: str
    chip_failure_rates: "np.ndarray | None" = None
    quantization: "dict | None" = None
    elapsed_s: float = 0.0
    estimator: str = "mc"
    backend: str = "numba"
    stratification: "dict | None" = None

    @property
    def chip_failure_quantiles(self) -> "dict | None":
        if self.chip_failure_rates is None:
            return None
        q = np.quantile(self.chip_failure_rates, CHIP_QUANTILES)
        return {f"q{int(round(100 * k)):02d}": float(v) for k, v in zip(CHIP_QUANTILES, q)}

    def to_dict(self) -> dict:
        out = {
            "failure_rate": self.failure_rate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "interval_method": self.interval_method,
            "n_samples": self.n_samples,
            "n_inputs": self.n_inputs,
            "n_pairs": self.n_pairs,
            "n_failures": self.n_failures,  # None for the stratified estimator
            "n_faulty_pairs": self.n_faulty_pairs,
            "metric": self.metric,
            "eps": self.eps,
            "mode": self.mode,
            "seed": self.seed,
            "fault_model": self.fault_model,
            "simulated_network": self.simulated_network,
            "estimator": self.estimator,
            "backend": self.backend,
            "error_mean": _none_if_nan(self.error_mean),
            "error_std": _none_if_nan(self.error_std),
            "output_error_mean": [_none_if_nan(v) for v in self.output_error_mean.tolist()],
            "output_error_std": [_none_if_nan(v) for v in self.output_error_std.tolist()],
            "clean_accuracy": self.clean_accuracy,
            "faulty_accuracy": self.faulty_accuracy,
            "failures_by_layer": {str(l): int(v) for l, v in enumerate(self.layer_failures)},
            "failures_by_core": {str(c): int(v) for c, v in enumerate(self.core_failures) if v},
            "n_cores": int(self.core_failures.size),
            "elapsed_s": self.elapsed_s,
        }
        if self.chip_failure_rates is not None:
            out["chip_failure_quantiles"] = self.chip_failure_quantiles
        if self.quantization is not None:
            out["quantization"] = self.quantization
        if self.stratification is not None:
            out["stratification"] = self.stratification
        return out

    @classmethod
    def from_dict(cls, d: dict, chip_failure_rates=None) -> "SimulationResult":
        """Rebuild a result from :meth:`to_dict` (and, in permanent mode, the per-chip rates
        that the run file stores beside it)."""
        by_layer = d["failures_by_layer"]
        layer_failures = np.array([int(by_layer[str(l)]) for l in range(len(by_layer))],
                                  dtype=np.int64)
        by_core = d.get("failures_by_core", {})
        n_cores = int(d.get("n_cores", 1 + max((int(c) for c in by_core), default=-1)))
        core_failures = np.zeros(n_cores, dtype=np.int64)
        for c, v in by_core.items():
            core_failures[int(c)] = int(v)
        return cls(
            failure_rate=d["failure_rate"], ci_low=d["ci_low"], ci_high=d["ci_high"],
            confidence=d["confidence"], n_samples=d["n_samples"], n_inputs=d["n_inputs"],
            n_pairs=d["n_pairs"], n_failures=d["n_failures"], n_faulty_pairs=d["n_faulty_pairs"],
            metric=d["metric"], eps=d["eps"], mode=d["mode"], seed=d["seed"],
            error_mean=_nan_if_none(d["error_mean"]), error_std=_nan_if_none(d["error_std"]),
            output_error_mean=np.array([_nan_if_none(v) for v in d["output_error_mean"]], float),
            output_error_std=np.array([_nan_if_none(v) for v in d["output_error_std"]], float),
            clean_accuracy=d["clean_accuracy"], faulty_accuracy=d["faulty_accuracy"],
            layer_failures=layer_failures, core_failures=core_failures,
            fault_model=d["fault_model"], simulated_network=d["simulated_network"],
            interval_method=d["interval_method"],
            chip_failure_rates=None if chip_failure_rates is None else np.asarray(chip_failure_rates),
            quantization=d.get("quantization"), elapsed_s=d.get("elapsed_s", 0.0),
            estimator=d.get("estimator", "mc"), backend=d.get("backend", "numba"),
            stratification=d.get("stratification"),
        )

    def summary(self) -> str:
        pct = 100 * self.confidence
        if self.estimator == "stratified":
            strat = self.stratification
            return "\n".join([
                f"failure rate P({self.metric} >= {self.eps:g}) = {self.failure_rate:.4g}  "
                f"[{self.ci_low:.4g}, {self.ci_high:.4g}] ({pct:g} % {self.interval_method})",
                f"{self.n_inputs} inputs, {strat['rows_evaluated']} (fault set, input) rows "
                f"evaluated, strata k = 1..{strat['k_max']}, P(K > k_max) = "
                f"{strat['tail_probability']:.3g} counted as failure in the upper bound",
            ] + ([f"accuracy: clean {self.clean_accuracy:.2%}"] if self.clean_accuracy is not None else []))
        lines = [
            f"failure rate P({self.metric} >= {self.eps:g}) = {self.failure_rate:.4g}  "
            f"[{self.ci_low:.4g}, {self.ci_high:.4g}] ({pct:g} % {self.interval_method})",
            f"{self.n_pairs} (fault draw, input) pairs: {self.n_samples} {'draws' if self.mode == 'transient' else 'chips'} "
            f"x {self.n_inputs} inputs, {self.n_faulty_pairs} with a fault, {self.n_failures} failures",
            f"error {self.metric}: mean {self.error_mean:.4g}, std {self.error_std:.4g}",
        ]
        if self.clean_accuracy is not None:
            lines.append(f"accuracy: clean {self.clean_accuracy:.2%}, with faults {self.faulty_accuracy:.2%}")
        if self.n_failures:
            share = self.layer_failures / self.n_failures
            lines.append("failures with a fault in layer: " + ", ".join(
                f"{l}: {s:.0%}" for l, s in enumerate(share) if self.layer_failures[l]))
        if self.chip_failure_rates is not None:
            q = self.chip_failure_quantiles
            lines.append("per-chip failure rate quantiles: " + ", ".join(f"{k} {v:.3g}" for k, v in q.items()))
        return "\n".join(lines)


@dataclass
class Stratum:
    """One stratum (or, for k = 1, one group's share of it) of the fault-count decomposition."""

    k: int
    label: str
    probability: float       # P(K = k) x P(this part | K = k)
    method: str              # "exact" | "sampled" | "skipped"
    fail_fraction: float     # estimate of P(fail | this part), averaged over the inputs
    lower: float
    upper: float
    rows: int = 0
    patterns: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("k", "label", "probability", "method",
                                              "fail_fraction", "lower", "upper", "rows", "patterns")}


@dataclass
class StratifiedResult:
    """Bounds on the failure probability averaged over the given inputs."""

    estimate: float
    lower: float
    upper: float
    tail: float
    k_max: int
    strata: list
    confidence: float
    n_inputs: int
    rows: int
    elapsed_s: float = 0.0
    clean_accuracy: "float | None" = None

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate, "lower": self.lower, "upper": self.upper,
            "tail_probability": self.tail, "k_max": self.k_max, "confidence": self.confidence,
            "n_inputs": self.n_inputs, "rows_evaluated": self.rows, "elapsed_s": self.elapsed_s,
            "strata": [s.as_dict() for s in self.strata],
        }

    @classmethod
    def from_dict(cls, d: dict, clean_accuracy: "float | None" = None) -> "StratifiedResult":
        return cls(estimate=d["estimate"], lower=d["lower"], upper=d["upper"],
                   tail=d["tail_probability"], k_max=d["k_max"],
                   strata=[Stratum(**s) for s in d["strata"]], confidence=d["confidence"],
                   n_inputs=d["n_inputs"], rows=d["rows_evaluated"],
                   elapsed_s=d.get("elapsed_s", 0.0), clean_accuracy=clean_accuracy)


#: The certificate file's checksum: SHA-256 of its JSON without this key (sorted keys).
CERTIFICATE_DIGEST = "content_sha256"


def _json_digest(d: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":"),
                                     allow_nan=True).encode()).hexdigest()


@dataclass
class Certificate:
    """The verdict and everything behind it (``to_dict`` is the JSON written by the CLI)."""

    certified: bool
    delta: float
    eps: float
    metric: str
    confidence: float
    delta_upper: float
    delta_lower: float
    delta_estimate: float
    empirical: StratifiedResult
    theory: "object | None"
    fault_model: str
    seed: int
    model_sha256: str
    data_sha256: str
    n_inputs: int
    profile: "str | None"
    simulated_network: str
    advice: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    backend: str = "numba"
    extra: dict = field(default_factory=dict)  # e.g. the CLI's "model" and "data" names
    #: How the failure probability over the given inputs was bounded: "stratified" (by fault
    #: count) or "sampled" (plain Monte Carlo, when many faults are expected per draw); files
    #: written before the choice existed load as "stratified" with no reason.
    method: str = "stratified"
    method_reason: str = ""
    #: How ``delta_upper`` / ``delta_lower`` reach the input distribution: "betting" (one step:
    #: a betting bound on the mean of the inputs' own estimates) or "kl" (two steps: the bound
    #: over the given inputs, then Chernoff-Hoeffding over them); files written before the
    #: choice existed load as "kl", the only bound there was.
    population: str = "kl"
    population_reason: str = ""
    #: Each given input's estimated failure probability (``InputValues``: ``lower``, ``upper``)
    #: in the order given; in memory only (not in the JSON), None for a loaded certificate.
    input_values: "object | None" = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        theory = self.theory.to_dict() if self.theory is not None else None
        out = {
            "format_version": CERTIFICATE_FORMAT_VERSION,
            "certified": self.certified,
            "delta": self.delta,
            "eps": self.eps,
            "metric": self.metric,
            "confidence": self.confidence,
            "delta_upper": self.delta_upper,
            "delta_lower": self.delta_lower,
            "delta_estimate": self.delta_estimate,
            "inputs_bound": {
                "upper": self.empirical.upper, "lower": self.empirical.lower,
                "note": "failure probability averaged over the given inputs; " + (
                    "delta_upper/lower bound the input distribution's in one step (betting "
                    "bound on the inputs' own estimates), not from these"
                    if self.population == "betting" else
                    "delta_upper/lower extend it to the input distribution "
                    "(Chernoff-Hoeffding over inputs)"),
            },
            "delta0": theory["delta0"] if theory else None,
            "taylor": theory["taylor"] if theory else None,
            "theory": theory,
            "stratification": self.empirical.to_dict(),
            "fault_model": self.fault_model,
            "seed": self.seed,
            "model_sha256": self.model_sha256,
            "data_sha256": self.data_sha256,
            "n_inputs": self.n_inputs,
            "profile": self.profile,
            "simulated_network": self.simulated_network,
            "backend": self.backend,
            "method": self.method,
            "method_reason": self.method_reason,
            "population": self.population,
            "population_reason": self.population_reason,
            "advice": self.advice,
            "elapsed_s": self.elapsed_s,
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Certificate":
        """Rebuild a certificate from :meth:`to_dict` (keys it does not know go to ``extra``)."""
        from neurosim.theory import TheoryReport

        known = {"format_version", "certified", "delta", "eps", "metric", "confidence",
                 "delta_upper", "delta_lower", "delta_estimate", "inputs_bound", "delta0",
                 "taylor", "theory", "stratification", "fault_model", "seed", "model_sha256",
                 "data_sha256", "n_inputs", "profile", "simulated_network", "backend", "advice",
                 "elapsed_s", "method", "method_reason", "population", "population_reason"}
        version = d.get("format_version", CERTIFICATE_FORMAT_VERSION)
        if version != CERTIFICATE_FORMAT_VERSION:
            raise FileFormatError(
                f"certificate format_version {version!r} is not supported by this neurosim "
                f"(supported: {CERTIFICATE_FORMAT_VERSION}); upgrade neurosim.")
        return cls(
            certified=bool(d["certified"]), delta=d["delta"], eps=d["eps"], metric=d["metric"],
            confidence=d["confidence"], delta_upper=d["delta_upper"],
            delta_lower=d["delta_lower"], delta_estimate=d["delta_estimate"],
            empirical=StratifiedResult.from_dict(d["stratification"]),
            theory=TheoryReport.from_dict(d["theory"]) if d.get("theory") else None,
            fault_model=d["fault_model"], seed=d["seed"], model_sha256=d["model_sha256"],
            data_sha256=d["data_sha256"], n_inputs=d["n_inputs"], profile=d["profile"],
            simulated_network=d["simulated_network"], advice=d.get("advice", {}),
            elapsed_s=d.get("elapsed_s", 0.0), backend=d.get("backend", "numba"),
            method=d.get("method", "stratified"), method_reason=d.get("method_reason", ""),
            population=d.get("population", "kl"),
            population_reason=d.get("population_reason", ""),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def save(self, path) -> None:
        """Write the certificate's JSON (``to_dict``) to ``path``, atomically."""
        d = json.loads(json.dumps(self.to_dict(), default=json_default))
        d[CERTIFICATE_DIGEST] = _json_digest(d)
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(d, indent=2))

    @classmethod
    def load(cls, path) -> "Certificate":
        """Read a certificate written by :meth:`save` (or ``neurosim certify -o``)."""
        source = os.fspath(path)
        if not os.path.exists(source):
            raise NeurosimFileNotFoundError(f"Certificate file {source!r} does not exist.")
        from neurosim.io.guard import check_nbytes, reading

        with reading(source, "neurosim certificate"):
            check_nbytes(os.path.getsize(source), source, "the certificate")
            try:
                with open(source, encoding="utf-8") as fh:
                    data = json.load(fh)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise FileFormatError(f"{source}: not a certificate JSON file ({exc}).") from None
            if not isinstance(data, dict):
                raise FileFormatError(f"{source}: not a neurosim certificate (a JSON "
                                      f"{type(data).__name__}, not an object).")
            stored = data.pop(CERTIFICATE_DIGEST, None)
            if stored is not None and stored != _json_digest(data):
                raise FileFormatError(
                    f"{source}: the content does not match its checksum ({CERTIFICATE_DIGEST}): "
                    "the file is damaged, or was changed after neurosim wrote it.")
            try:
                return cls.from_dict(data)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise FileFormatError(f"{source}: not a neurosim certificate (missing or "
                                      f"malformed entry: {exc!r}).") from None

    def summary(self) -> str:
        pct = 100 * self.confidence
        verdict = "CERTIFIED" if self.certified else "NOT certified"
        lines = [
            f"{verdict}: P({self.metric} >= {self.eps:g}) <= {self.delta_upper:.4g} "
            f"(target delta {self.delta:g}) at {pct:g} % confidence",
            f"  sound bounds over the input distribution: [{self.delta_lower:.4g}, {self.delta_upper:.4g}], "
            f"estimate {self.delta_estimate:.4g}",
        ]
        if self.method == "sampled":
            part = self.empirical.strata[0] if self.empirical.strata else None
            pairs = f", {part.rows} (draw, input) pairs" if part is not None else ""
            lines.append(
                f"  over the {self.n_inputs} given inputs: [{self.empirical.lower:.4g}, "
                f"{self.empirical.upper:.4g}] (plain Monte Carlo{pairs}: "
                f"{'KL bound over chips' if 'chip' in (part.label if part else '') else 'Clopper-Pearson'})")
        else:
            lines.append(
                f"  over the {self.n_inputs} given inputs: [{self.empirical.lower:.4g}, {self.empirical.upper:.4g}] "
                f"(k_max {self.empirical.k_max}, P(K > k_max) = {self.empirical.tail:.3g})")
        if self.method_reason:
            lines.append(f"  method: {self.method} ({self.method_reason})")
        if self.population_reason:
            lines.append(f"  population bound: {self.population} ({self.population_reason})")
        if self.theory is not None:
            t = self.theory
            lines.append(
                f"  paper (first-order, not a guarantee): delta0 {t.delta0:.3g}, Taylor mean "
                f"{t.taylor_mean:.3g}, var {t.taylor_var:.3g}, Chebyshev delta {t.taylor_delta:.3g}"
                f" (exact single faults: {t.b4_delta:.3g})")
            failing = [a["assumption"] for a in t.assumptions if a["holds"] is False]
            if failing:
                lines.append("  paper's assumptions that do not hold here: " + "; ".join(failing))
        for key, text in self.advice.items():
            lines.append(f"  prediction ({key}): {text}")
        return "\n".join(lines)


def load_certificate(path) -> Certificate:
    """The :class:`Certificate` saved at ``path`` (see :meth:`Certificate.load`)."""
    return Certificate.load(path)


def load_result(path) -> SimulationResult:
    """The :class:`SimulationResult` of a completed ``simulate(..., output=path)`` run."""
    from neurosim.io.guard import reading

    run = read_run_file(path)
    if not run.complete or run.result is None:
        raise FileFormatError(
            f"{os.fspath(path)}: the run is not complete; continue it with resume=True (--resume)."
        )
    with reading(os.fspath(path), "neurosim result"):
        return SimulationResult.from_dict(run.result, run.chip_failure_rates)
