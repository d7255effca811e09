"""Monte Carlo fault simulation with confidence intervals.

The work is split into *blocks* of fault draws whose size depends only on the number of inputs;
block ``k`` draws its faults from ``numpy.random.default_rng(SeedSequence([seed, k]))`` and its
statistics are added to the totals in block order. The same seed therefore gives the same
numbers whatever the thread count, the checkpoint interval, or an interruption and ``resume``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from neurosim.engine import (
    build_plan, clean_cache, fault_groups, one_blas_thread, propagate, sample_faults,
)
from neurosim.errors import FileFormatError, NeurosimFileNotFoundError, ValidationError, param_error
from neurosim.faults import resolve_faults

__all__ = ["simulate", "SimulationResult", "clopper_pearson", "METRICS", "load_result"]

METRICS = ("linf", "l2", "loss", "flip")
ESTIMATORS = ("mc", "stratified", "auto")
#: ``estimator="auto"`` picks the stratified estimator at most this many faults per draw on average.
AUTO_STRATIFIED_MAX_FAULTS = 0.1
MODES = ("transient", "permanent")
RESULT_FORMAT_VERSION = 1
BLOCK_PAIRS = 8192  # (draw, input) pairs per block, before rounding to whole rounds
CHIP_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion ``k / n``."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def bernstein_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Empirical Bernstein interval (Maurer & Pontil 2009) for the mean of i.i.d. values in [0, 1].

    With probability >= ``confidence``: ``|mean - E| <= sqrt(2 V ln(4/a) / n) + 7 ln(4/a) /
    (3 (n - 1))``, ``V`` the unbiased sample variance and ``a = 1 - confidence`` split over
    both sides.
    """
    n = values.size
    if n < 2:
        return 0.0, 1.0
    a = 1.0 - confidence
    log_term = math.log(4.0 / a)
    mean = float(values.mean())
    var = float(values.var(ddof=1))
    half = math.sqrt(2.0 * var * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))
    return max(0.0, mean - half), min(1.0, mean + half)


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
    extra: dict = field(default_factory=dict)

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
            "estimator": "mc",
            "error_mean": _none_if_nan(self.error_mean),
            "error_std": _none_if_nan(self.error_std),
            "output_error_mean": [_none_if_nan(v) for v in self.output_error_mean.tolist()],
            "output_error_std": [_none_if_nan(v) for v in self.output_error_std.tolist()],
            "clean_accuracy": self.clean_accuracy,
            "faulty_accuracy": self.faulty_accuracy,
            "failures_by_layer": {str(l): int(v) for l, v in enumerate(self.layer_failures)},
            "failures_by_core": {str(c): int(v) for c, v in enumerate(self.core_failures) if v},
            "elapsed_s": self.elapsed_s,
        }
        if self.chip_failure_rates is not None:
            out["chip_failure_quantiles"] = self.chip_failure_quantiles
        if self.quantization is not None:
            out["quantization"] = self.quantization
        out.update(self.extra)
        return out

    def summary(self) -> str:
        pct = 100 * self.confidence
        if self.extra.get("estimator") == "stratified":
            strat = self.extra["stratification"]
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
            f"{self.n_pairs} (fault draw, input) pairs: {self.n_samples} {'chips' if self.mode == 'permanent' else 'draws'} "
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


def _none_if_nan(value):
    return None if isinstance(value, float) and math.isnan(value) else value


# --- metrics ----------------------------------------------------------------------------------

def _loss(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row loss: cross-entropy for integer labels, mean squared error for float targets."""
    out = out.astype(np.float64)
    if np.issubdtype(y.dtype, np.integer):
        shift = out.max(axis=1, keepdims=True)
        lse = shift[:, 0] + np.log(np.exp(out - shift).sum(axis=1))
        return lse - out[np.arange(out.shape[0]), y]
    target = y.reshape(out.shape[0], -1)
    return ((out - target) ** 2).mean(axis=1)


def _metric(name: str, faulty: np.ndarray, clean: np.ndarray, y_rows) -> np.ndarray:
    delta = faulty.astype(np.float64) - clean.astype(np.float64)
    if name == "linf":
        return np.abs(delta).max(axis=1)
    if name == "l2":
        return np.sqrt((delta ** 2).sum(axis=1))
    if name == "flip":
        return (faulty.argmax(axis=1) != clean.argmax(axis=1)).astype(np.float64)
    return _loss(faulty, y_rows) - _loss(clean, y_rows)


# --- accumulation -----------------------------------------------------------------------------

class _Totals:
    """Running sums, added block by block in block order."""

    NAMES = ("n_pairs", "n_failures", "n_faulty_pairs", "n_correct", "sum_metric", "sum_metric_sq",
             "sum_delta", "sum_delta_sq", "layer_failures", "core_failures")

    def __init__(self, n_out: int, n_layers: int, n_cores: int):
        self.n_pairs = 0
        self.n_failures = 0
        self.n_faulty_pairs = 0
        self.n_correct = 0
        self.sum_metric = 0.0
        self.sum_metric_sq = 0.0
        self.sum_delta = np.zeros(n_out)
        self.sum_delta_sq = np.zeros(n_out)
        self.layer_failures = np.zeros(n_layers + 1, dtype=np.int64)
        self.core_failures = np.zeros(max(n_cores, 0), dtype=np.int64)
        self.chip_failures: list[np.ndarray] = []
        self.next_block = 0

    def state(self) -> dict:
        out = {name: getattr(self, name) for name in self.NAMES}
        out["chip_failures"] = (np.concatenate(self.chip_failures) if self.chip_failures
                                else np.zeros(0, dtype=np.int64))
        out["next_block"] = self.next_block
        return out

    def load(self, state: dict) -> None:
        for name in self.NAMES:
            value = state[name]
            setattr(self, name, value if isinstance(value, np.ndarray) else type(getattr(self, name))(value))
        chips = np.asarray(state["chip_failures"], dtype=np.int64)
        self.chip_failures = [chips] if chips.size else []
        self.next_block = int(state["next_block"])


def _data_sha256(X, y) -> str:
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    if y is not None:
        h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def _network_sha256(network) -> str:
    h = hashlib.sha256()
    for layer in network.layers:
        h.update(np.ascontiguousarray(layer.W, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(layer.b, dtype=np.float64).tobytes())
        h.update(str(layer.activation).encode())
    return h.hexdigest()


# --- the driver -------------------------------------------------------------------------------

def _validate(metric, eps, n_samples, mode, confidence, y, owner="simulate"):
    if metric not in METRICS:
        raise param_error(owner, "metric", f"one of {', '.join(METRICS)}", metric)
    if eps is None:
        if metric != "flip":
            raise ValidationError(
                f"The 'eps' parameter of {owner} is required for metric {metric!r} (failure "
                "means metric >= eps); only 'flip' has a default (0.5)."
            )
        eps = 0.5
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise param_error(owner, "eps", "a number >= 0", eps) from None
    if not math.isfinite(eps) or eps < 0:
        raise param_error(owner, "eps", "a finite number >= 0", eps)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise param_error(owner, "n_samples", "a positive integer", n_samples)
    if mode not in MODES:
        raise param_error(owner, "mode", f"one of {', '.join(MODES)}", mode)
    if not (0.0 < float(confidence) < 1.0):
        raise param_error(owner, "confidence", "a float in (0, 1)", confidence)
    if metric == "loss" and y is None:
        raise ValidationError("The 'loss' metric needs labels or targets y.")
    return eps


def simulate(
    target,
    faults=None,
    X=None,
    y=None,
    *,
    metric: str = "flip",
    eps: "float | None" = None,
    n_samples: int = 1000,
    seed: int = 0,
    mode: str = "transient",
    confidence: float = 0.95,
    use_float: bool = False,
    output: "str | os.PathLike | None" = None,
    resume: bool = False,
    checkpoint_every_s: float = 10.0,
    progress: bool = False,
    estimator: str = "mc",
) -> SimulationResult:
    """Inject faults and measure how often the output goes wrong.

    Parameters
    ----------
    target : Mapping or Network
        A mapping (the chip computes with its quantized weights; ``use_float`` runs the float
        network instead) or a plain network (crashes and stuck synapses only).
    faults : FaultProcess or FaultModel, optional
        Default: the mapping profile's default fault rates.
    X, y : array_like
        Inputs ``(n_inputs, n_0)`` and optional labels (integers) or regression targets.
    metric : {"linf", "l2", "loss", "flip"}
        Error metric; failure means ``metric >= eps``. ``loss`` is the loss difference
        Delta_{L+1} (cross-entropy for integer labels, mean squared error for targets);
        ``flip`` is 1 when the argmax changes.
    eps : float
        Failure threshold (>= 0); defaults to 0.5 for ``flip``.
    n_samples : int
        Fault draws per input (transient) or chip instances (permanent).
    seed : int
        The same seed gives the same numbers whatever the thread count or checkpointing.
    mode : {"transient", "permanent"}
        Fresh faults for every input (paper Def. 5), or one fault set per chip instance shared
        by all inputs.
    confidence : float
        Confidence level of the interval (default 0.95).
    output : path, optional
        HDF5 file for the results, checkpointed every ``checkpoint_every_s`` seconds.
    resume : bool
        Continue the run checkpointed in ``output``; ends with the same numbers as an
        uninterrupted run.
    progress : bool
        Show a progress bar with the current interval (on stderr).
    estimator : {"mc", "stratified", "auto"}
        ``mc``: plain Monte Carlo. ``stratified``: the rare-event estimator of
        :func:`neurosim.certify.stratified_estimate` (exact single faults, conditional sampling
        of larger fault counts; transient mode; ``n_samples`` is then the number of conditional
        draws per input in each sampled stratum, and the error moments are not computed).
        ``auto``: stratified when the expected number of faults per draw is at most
        ``AUTO_STRATIFIED_MAX_FAULTS`` (transient mode, no resume), else mc.

    Returns
    -------
    SimulationResult

    Notes
    -----
    The error is measured against the fault-free run of the same (quantized or float)
    network; the quantization error itself is reported separately (``result.quantization``).
    Fault-free draws are never computed (their error is exactly 0), and a faulty draw starts
    from the cached clean activations of the layer before its first fault.
    """
    from neurosim.mapping import Mapping

    started = time.perf_counter()
    if X is None:
        raise ValidationError("simulate needs inputs X (n_inputs, n_features).")
    eps = _validate(metric, eps, n_samples, mode, confidence, y)
    mapping = target if isinstance(target, Mapping) else None
    faults = resolve_faults(target, faults, "simulate")
    plan = build_plan(target, faults, use_float=use_float)
    if estimator not in ESTIMATORS:
        raise param_error("simulate", "estimator", f"one of {', '.join(ESTIMATORS)}", estimator)
    if estimator == "auto":
        expected = sum(g.n * g.rate for g in fault_groups(plan))
        estimator = ("stratified" if mode == "transient" and not resume
                     and expected <= AUTO_STRATIFIED_MAX_FAULTS else "mc")
    if estimator == "stratified":
        return _simulate_stratified(target, faults, X, y, metric, eps, n_samples, seed, mode,
                                    confidence, use_float, output, resume, started, mapping)
    network = plan.network
    X = network.check_input(X, owner="input data X")
    m = X.shape[0]
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != m:
            raise ValidationError(
                f"The labels y must have one entry per input: {m}. Got {y.shape[0]} instead."
            )
        if np.issubdtype(y.dtype, np.integer) and y.ndim == 1 and (
                y.min(initial=0) < 0 or y.max(initial=0) >= network.n_outputs):
            raise ValidationError(
                f"The labels y must be class indices in [0, {network.n_outputs - 1}]. Got values "
                f"in [{y.min()}, {y.max()}] instead."
            )
    cache = clean_cache(plan, X)
    clean_out = cache.output
    classification = y is not None and np.issubdtype(y.dtype, np.integer) and y.ndim == 1
    clean_correct = (clean_out.argmax(axis=1) == y) if classification else None
    n_cores = mapping.cores_used if mapping is not None else 0
    totals = _Totals(network.n_outputs, network.n_layers, n_cores)

    rounds_per_block = max(1, BLOCK_PAIRS // m)
    n_blocks = math.ceil(n_samples / rounds_per_block)
    config = {
        "metric": metric, "eps": eps, "n_samples": int(n_samples), "seed": int(seed), "mode": mode,
        "confidence": float(confidence), "use_float": bool(use_float), "faults": faults.spec(),
        "profile": mapping.profile.name if mapping is not None else None,
        "network_sha256": _network_sha256(network), "data_sha256": _data_sha256(X, y),
        "n_inputs": m, "rounds_per_block": rounds_per_block,
    }
    if output is not None and resume:
        _resume_from(output, config, totals)
    elif resume:
        raise ValidationError("resume=True needs the output file of the interrupted run.")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_samples, unit="chip" if mode == "permanent" else "draw",
                   desc="simulate", initial=min(n_samples, totals.next_block * rounds_per_block),
                   leave=False)
    last_checkpoint = time.perf_counter()
    limits = one_blas_thread()
    try:
        for block in range(totals.next_block, n_blocks):
            rounds = min(rounds_per_block, n_samples - block * rounds_per_block)
            _run_block(plan, cache, seed, block, rounds, m, mode, metric, eps, y, classification,
                       clean_correct, totals)
            totals.next_block = block + 1
            if bar is not None:
                bar.update(rounds)
                lo, hi = clopper_pearson(totals.n_failures, totals.n_pairs, confidence)
                bar.set_postfix_str(f"rate {totals.n_failures / totals.n_pairs:.3g} [{lo:.3g}, {hi:.3g}]")
            if output is not None and time.perf_counter() - last_checkpoint > checkpoint_every_s:
                _write_file(output, config, totals, None)
                last_checkpoint = time.perf_counter()
    except KeyboardInterrupt:
        if output is not None:
            _write_file(output, config, totals, None)
        raise
    finally:
        limits.restore_original_limits()
        if bar is not None:
            bar.close()

    result = _make_result(totals, config, network, clean_correct, mode, confidence, faults,
                          use_float, mapping)
    if mapping is not None and not use_float:
        result.quantization = mapping.quantization_report(X, y if classification else None)
    result.elapsed_s = time.perf_counter() - started
    if output is not None:
        _write_file(output, config, totals, result)
    return result


def _simulate_stratified(target, faults, X, y, metric, eps, n_samples, seed, mode, confidence,
                         use_float, output, resume, started, mapping) -> SimulationResult:
    from neurosim.certify import stratified_estimate

    if mode != "transient":
        raise ValidationError("The stratified estimator supports transient faults only; use "
                              "estimator='mc' for permanent mode.")
    if resume:
        raise ValidationError("The stratified estimator does not checkpoint; resume needs "
                              "estimator='mc'.")
    strat = stratified_estimate(target, faults, X, y, metric=metric, eps=eps, seed=seed,
                                confidence=confidence, use_float=use_float, n_samples=n_samples)
    network = strat.network
    L = network.n_layers
    result = SimulationResult(
        failure_rate=strat.estimate, ci_low=strat.lower, ci_high=strat.upper,
        confidence=float(confidence), n_samples=int(n_samples), n_inputs=strat.n_inputs,
        n_pairs=strat.rows, n_failures=None, n_faulty_pairs=None, metric=metric, eps=eps,
        mode=mode, seed=int(seed), error_mean=math.nan, error_std=math.nan,
        output_error_mean=np.full(network.n_outputs, math.nan),
        output_error_std=np.full(network.n_outputs, math.nan),
        clean_accuracy=strat.clean_accuracy, faulty_accuracy=None,
        layer_failures=np.zeros(L + 1, dtype=np.int64),
        core_failures=np.zeros(mapping.cores_used if mapping is not None else 0, dtype=np.int64),
        fault_model=faults.spec(),
        simulated_network="float" if (use_float or mapping is None) else f"quantized for {mapping.profile.name}",
        interval_method="stratified by fault count (exact strata, Clopper-Pearson per sampled stratum)",
        extra={"estimator": "stratified", "stratification": strat.to_dict()},
    )
    result.elapsed_s = time.perf_counter() - started
    if output is not None:
        import h5py

        from neurosim.io.atomic import atomic_path

        with atomic_path(output, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["neurosim_format"] = "simulation"
                f.attrs["format_version"] = RESULT_FORMAT_VERSION
                f.attrs["config"] = json.dumps({"estimator": "stratified", "seed": int(seed)})
                f.attrs["complete"] = True
                f.attrs["result"] = json.dumps(result.to_dict(), sort_keys=True, default=_json_default)
                f.create_group("state")
    return result


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serializable: {value!r}")


def sample_block(plan, seed: int, block: int, rounds: int, m: int, mode: str):
    """Block ``block``'s fault draws and the (draw, input) rows that need computing.

    The unit of reproducibility: the draws come from ``SeedSequence([seed, block])`` whatever
    the thread count or checkpointing. Transient: ``rounds x m`` draws, draw ``d`` for input
    ``d % m``; permanent: ``rounds`` chips, each faulty one paired with every input.

    Returns ``batch, n_draws, faulty_draws, row_draw, row_input``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), block]))
    n_draws = rounds * m if mode == "transient" else rounds
    batch = sample_faults(plan, rng, n_draws)
    faulty = np.flatnonzero(batch.draw_has_fault)
    if mode == "transient":
        row_draw, row_input = faulty, faulty % m
    else:
        row_draw = np.repeat(faulty, m)
        row_input = np.tile(np.arange(m), faulty.size)
    return batch, n_draws, faulty, row_draw, row_input


def _run_block(plan, cache, seed, block, rounds, m, mode, metric, eps, y, classification,
               clean_correct, totals: _Totals) -> None:
    clean_out = cache.output
    batch, n_draws, faulty, row_draw, row_input = sample_block(plan, seed, block, rounds, m, mode)
    n_pairs = rounds * m
    zero_fails = 0.0 >= eps  # a fault-free pair has metric 0
    if row_draw.size:
        out = propagate(plan, cache, batch, row_draw, row_input)
        y_rows = y[row_input] if y is not None else None
        values = _metric(metric, out, clean_out[row_input], y_rows)
        failed = values >= eps
        delta = out.astype(np.float64) - clean_out[row_input].astype(np.float64)
    else:
        values = np.zeros(0)
        failed = np.zeros(0, dtype=bool)
        delta = np.zeros((0, clean_out.shape[1]))
    n_fail_rows = int(failed.sum())
    totals.n_pairs += n_pairs
    totals.n_faulty_pairs += int(row_draw.size)
    totals.n_failures += n_fail_rows + (n_pairs - row_draw.size) * int(zero_fails)
    totals.sum_metric += float(values.sum())
    totals.sum_metric_sq += float((values ** 2).sum())
    totals.sum_delta = totals.sum_delta + delta.sum(axis=0)
    totals.sum_delta_sq = totals.sum_delta_sq + (delta ** 2).sum(axis=0)
    if classification:
        changed = 0
        if row_draw.size:
            changed = int((out.argmax(axis=1) == y[row_input]).sum() - clean_correct[row_input].sum())
        totals.n_correct += rounds * int(clean_correct.sum()) + changed
    # Attribution: each failing pair counts once for every layer and core its draw touched.
    fail_weight = np.bincount(row_draw[failed], minlength=n_draws) if n_fail_rows else None
    if fail_weight is not None:
        keys = np.unique(batch.draw * (plan.n_layers + 1) + batch.layer)
        d, l = keys // (plan.n_layers + 1), keys % (plan.n_layers + 1)
        totals.layer_failures += np.bincount(l, weights=fail_weight[d],
                                             minlength=plan.n_layers + 1).astype(np.int64)
        has_core = batch.core >= 0
        if has_core.any() and totals.core_failures.size:
            n_c = totals.core_failures.size
            keys = np.unique(batch.draw[has_core] * n_c + batch.core[has_core])
            d, c = keys // n_c, keys % n_c
            totals.core_failures += np.bincount(c, weights=fail_weight[d], minlength=n_c).astype(np.int64)
    if mode == "permanent":
        per_chip = np.full(rounds, m * int(zero_fails), dtype=np.int64)
        if row_draw.size:
            per_chip[faulty] = np.bincount(np.repeat(np.arange(faulty.size), m)[failed],
                                           minlength=faulty.size)
        totals.chip_failures.append(per_chip)


def _make_result(totals: _Totals, config, network, clean_correct, mode, confidence, faults,
                 use_float, mapping) -> SimulationResult:
    n = totals.n_pairs
    m = config["n_inputs"]
    mean = totals.sum_metric / n
    var = max(totals.sum_metric_sq / n - mean ** 2, 0.0)
    dmean = totals.sum_delta / n
    dvar = np.maximum(totals.sum_delta_sq / n - dmean ** 2, 0.0)
    chip_rates = None
    if mode == "permanent":
        chip_rates = np.concatenate(totals.chip_failures) / m
        if m == 1:
            lo, hi = clopper_pearson(totals.n_failures, n, confidence)
            method = "Clopper-Pearson over chips"
        else:
            lo, hi = bernstein_interval(chip_rates, confidence)
            method = "empirical Bernstein over chips"
    else:
        lo, hi = clopper_pearson(totals.n_failures, n, confidence)
        method = "Clopper-Pearson"
    classification = clean_correct is not None
    return SimulationResult(
        failure_rate=totals.n_failures / n,
        ci_low=lo, ci_high=hi, confidence=float(confidence),
        n_samples=config["n_samples"], n_inputs=m, n_pairs=n, n_failures=int(totals.n_failures),
        n_faulty_pairs=int(totals.n_faulty_pairs), metric=config["metric"], eps=config["eps"],
        mode=mode, seed=config["seed"], error_mean=mean, error_std=math.sqrt(var),
        output_error_mean=dmean, output_error_std=np.sqrt(dvar),
        clean_accuracy=float(clean_correct.mean()) if classification else None,
        faulty_accuracy=totals.n_correct / n if classification else None,
        layer_failures=totals.layer_failures.copy(), core_failures=totals.core_failures.copy(),
        fault_model=faults.spec(),
        simulated_network="float" if (use_float or mapping is None) else f"quantized for {mapping.profile.name}",
        interval_method=method, chip_failure_rates=chip_rates,
    )


# --- files ------------------------------------------------------------------------------------

def _write_file(path, config: dict, totals: _Totals, result: "SimulationResult | None") -> None:
    import h5py

    from neurosim.io.atomic import atomic_path

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["neurosim_format"] = "simulation"
            f.attrs["format_version"] = RESULT_FORMAT_VERSION
            f.attrs["config"] = json.dumps(config, sort_keys=True)
            f.attrs["complete"] = result is not None
            g = f.create_group("state")
            for name, value in totals.state().items():
                g.create_dataset(name, data=value)
            if result is not None:
                f.attrs["result"] = json.dumps(result.to_dict(), sort_keys=True)
                if result.chip_failure_rates is not None:
                    f.create_dataset("chip_failure_rates", data=result.chip_failure_rates)


def _read_state(path) -> tuple[dict, dict, bool, "dict | None"]:
    import h5py

    from neurosim.io.hdf5 import check_header

    source = os.fspath(path)
    if not os.path.exists(source):
        raise NeurosimFileNotFoundError(f"Result file {source!r} does not exist; nothing to resume.")
    try:
        with h5py.File(source, "r") as f:
            check_header(f, source, "simulation", (RESULT_FORMAT_VERSION,))
            config = json.loads(f.attrs["config"])
            state = {name: np.asarray(f["state"][name]) for name in f["state"]}
            state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
            result = json.loads(f.attrs["result"]) if "result" in f.attrs else None
            return config, state, bool(f.attrs["complete"]), result
    except OSError as exc:
        raise FileFormatError(f"{source}: not a readable HDF5 file ({exc}).") from None


def _resume_from(path, config: dict, totals: _Totals) -> None:
    saved, state, _complete, _ = _read_state(path)
    for key, value in config.items():
        if saved.get(key) != value:
            raise ValidationError(
                f"Cannot resume {os.fspath(path)!r}: its run used {key} = {saved.get(key)!r}, "
                f"this one {value!r}. Resume with the same model, data and options."
            )
    totals.load(state)


def load_result(path) -> dict:
    """The result dict saved by a completed :func:`simulate` run (``to_dict()``)."""
    _, _, complete, result = _read_state(path)
    if not complete:
        raise FileFormatError(
            f"{os.fspath(path)}: the run is not complete; continue it with resume=True (--resume)."
        )
    return result
