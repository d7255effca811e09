"""``simulate``: inject faults and measure how often the output goes wrong.

A thin front door: it validates every parameter first, lowers the target and the fault model
to a plan (:mod:`neurosim.plan`), picks the backend (:mod:`neurosim.backends`) and the
estimator (:mod:`neurosim.estimators`: Monte Carlo or stratified), and lets the runner
(:mod:`neurosim.runners`) compute the blocks, checkpointing into ``output``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from neurosim.backends import BACKEND_NAMES, Backend, get_backend
from neurosim.errors import NeurosimError, ResultNotSavedError, ValidationError
from neurosim.estimators.montecarlo import MonteCarlo
from neurosim.estimators.stratified import StratifiedEstimator
from neurosim.io.lock import check_writable, output_lock
from neurosim.io.runfile import read_run_file, write_run_file
from neurosim.metrics import DEFAULT_FLIP_EPS, METRICS
from neurosim.plan import build_plan, resolve_faults
from neurosim.provenance import data_sha256, network_sha256
from neurosim.results import SimulationResult, load_result
from neurosim.runner_choice import is_scheduler_address, runner_scope
from neurosim.runners import Checkpoint, Runner
from neurosim.stats import clopper_pearson
from neurosim.validation import (BOOLEAN, OPEN_UNIT, SAMPLES, SECONDS, SEED, InstanceOf,
                                 Interval, Options, Satisfies, check_inputs, validate_params)

__all__ = ["simulate", "SimulationResult", "load_result", "METRICS", "ESTIMATORS", "MODES",
           "EPS", "BACKEND", "RUNNER", "resolve_eps", "AUTO_STRATIFIED_MAX_FAULTS"]

ESTIMATORS = ("mc", "stratified", "auto")
#: ``estimator="auto"`` picks the stratified estimator at most this many faults per draw on average.
AUTO_STRATIFIED_MAX_FAULTS = 0.1
MODES = ("transient", "permanent")

#: Constraints shared by the front doors (and the command line's flags).
EPS = Interval(0.0, None, "left", kind="a number") | None
#: (get_backend then checks the name: a registered backend's name is one too)
BACKEND = InstanceOf(str, Backend, description=f"a backend name ({', '.join(BACKEND_NAMES)}, or "
                     "a registered one) or a neurosim Backend")
RUNNER = (Options(("serial", "dask"))
          | Satisfies(is_scheduler_address, "a Dask scheduler address ('tcp://HOST:8786')")
          | InstanceOf(Runner, description="a neurosim Runner")
          | Satisfies(lambda r: callable(r) and not isinstance(r, str),
                      "a map-like callable (e.g. ProcessPoolExecutor().map)"))
PATH = InstanceOf(str, os.PathLike, description="a file path") | None


def resolve_eps(metric: str, eps, owner: str) -> float:
    """The failure threshold: ``eps``, or the flip metric's default 0.5."""
    if eps is None:
        if metric != "flip":
            raise ValidationError(
                f"The 'eps' parameter of {owner} is required for metric {metric!r} (failure "
                f"means metric >= eps); only 'flip' has a default ({DEFAULT_FLIP_EPS})."
            )
        return DEFAULT_FLIP_EPS
    return float(eps)


class _Progress:
    """A tqdm bar over draws (chips) with the current interval."""

    def __init__(self, n_samples, mode, m, confidence):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n_samples, unit="draw" if mode == "transient" else "chip",
                        desc="simulate", leave=False)
        self.n_samples, self.m, self.confidence = n_samples, m, confidence

    def __call__(self, stats) -> None:
        self.bar.n = min(self.n_samples, stats.n_pairs // self.m)
        lo, hi = clopper_pearson(stats.n_failures, stats.n_pairs, self.confidence)
        self.bar.set_postfix_str(f"rate {stats.n_failures / stats.n_pairs:.3g} [{lo:.3g}, {hi:.3g}]")

    def close(self) -> None:
        self.bar.close()


@validate_params({
    "metric": Options(METRICS), "eps": EPS, "n_samples": SAMPLES, "seed": SEED,
    "mode": Options(MODES) | None, "confidence": OPEN_UNIT, "use_float": BOOLEAN, "output": PATH,
    "resume": BOOLEAN, "checkpoint_every_s": SECONDS, "progress": BOOLEAN,
    "estimator": Options(ESTIMATORS), "backend": BACKEND, "runner": RUNNER, "overwrite": BOOLEAN,
})
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
    mode: "str | None" = None,
    confidence: float = 0.95,
    use_float: bool = False,
    output: "str | os.PathLike | None" = None,
    resume: bool = False,
    checkpoint_every_s: float = 10.0,
    progress: bool = False,
    estimator: str = "mc",
    backend="auto",
    runner="serial",
    overwrite: bool = False,
) -> SimulationResult:
    """Inject faults and measure how often the output goes wrong.

    Parameters
    ----------
    target : Mapping or Network
        A mapping (the chip computes with its quantized weights; ``use_float`` runs the float
        network instead) or a plain network (crashes and stuck synapses only).
    faults : FaultType or FaultModel, optional
        Default: the mapping profile's default fault rates (with ``use_float``, without the
        profile's bit flips, which the float network cannot have; a warning says so).
    X, y : array_like
        Inputs ``(n_inputs, n_0)`` and optional labels (integers) or regression targets.
    metric : {"linf", "l2", "loss", "flip"}
        Error metric; failure means ``metric >= eps``. ``loss`` is the loss difference
        Delta_{L+1} (cross-entropy for integer labels, mean squared error for targets);
        ``flip`` is 1 when the argmax changes.
    eps : float
        Failure threshold (>= 0); defaults to 0.5 for ``flip``.
    n_samples : int
        Fault draws per input (transient) or chip instances (permanent or mixed).
    seed : int
        The same seed gives the same numbers whatever the thread count, checkpointing,
        backend or runner.
    mode : {None, "transient", "permanent"}
        None (default): each fault process in its own mode (``FaultType.mode``; a profile's
        ``[fault_modes]`` states them, e.g. stuck crossbar cells are permanent), transient
        where none is stated. ``"transient"``: every process fresh for every input (paper
        Def. 5); ``"permanent"``: every process fixed per chip instance, shared by all inputs.
        A run with both kinds is *mixed*: each chip instance fixes its permanent faults and
        each of its inputs draws the transient ones afresh.
    confidence : float
        Confidence level of the interval (default 0.95).
    output : path, optional
        HDF5 file for the results, checkpointed every ``checkpoint_every_s`` seconds. It is
        checked before any work starts (its folder takes new files; it is not a folder), and
        locked for the run: a second run on the same file is refused. An existing file is
        protected (docs/reliability.md): a complete result is only replaced by another complete
        one (the rerun's checkpoints are held back), and an interrupted run or a file that is
        not a neurosim run file is not replaced unless ``overwrite``.
    resume : bool
        Continue the run checkpointed in ``output``; ends with the same numbers as an
        uninterrupted run. The checkpoint must be intact (its checksum) and of this run (seed,
        fault model, network, data, options), or it is refused, naming what differs.
    progress : bool
        Show a progress bar with the current interval (on stderr).
    estimator : {"mc", "stratified", "auto"}
        ``mc``: plain Monte Carlo. ``stratified``: the rare-event estimator
        (:class:`neurosim.estimators.StratifiedEstimator`: exact single faults, conditional
        sampling of larger fault counts; transient mode; ``n_samples`` is then the number of
        conditional draws per input in each sampled stratum, and the error moments are not
        computed). ``auto``: stratified when the expected number of faults per draw is at most
        ``AUTO_STRATIFIED_MAX_FAULTS`` (transient mode, no resume), else mc.
    backend : {"auto", "numba", "numpy", "lava"} or Backend
        What runs the faulty network (:mod:`neurosim.backends`); ``auto`` is numba, or the NumPy
        reference when numba is missing.
    runner : "serial", "dask", scheduler address, Runner or map-like callable
        What computes the blocks (:mod:`neurosim.runners`): ``serial``; a
        :class:`neurosim.DaskRunner`, ``"dask"`` (the scheduler of Dask's configuration) or an
        address ``"tcp://HOST:8786"`` (docs/distributed.md); or e.g. the ``map`` of a
        ``concurrent.futures.ProcessPoolExecutor`` started with the "spawn" method; the numbers
        do not depend on it.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ResultNotSavedError
        If the finished result cannot be written to ``output``; the exception's ``result``
        holds it, so nothing computed is lost.
    OutputLockedError
        If another process is writing ``output``.

    Notes
    -----
    The error is measured against the fault-free run of the same (quantized or float)
    network; the quantization error itself is reported separately (``result.quantization``).
    Fault-free draws are never computed (their error is exactly 0), and a faulty draw starts
    from the cached clean activations of the layer before its first fault.
    """
    started = time.perf_counter()
    eps = resolve_eps(metric, eps, "simulate")
    if metric == "loss" and y is None:
        raise ValidationError("The 'loss' metric needs labels or targets y.")
    if resume and output is None:
        raise ValidationError("resume=True needs the output file of the interrupted run.")
    if resume and overwrite:
        raise ValidationError("resume=True continues the run in 'output'; overwrite=True would "
                              "replace it: give one of them.")
    if output is None:
        return _simulate(target, faults, X, y, metric, eps, n_samples, seed, mode, confidence,
                         use_float, None, resume, checkpoint_every_s, progress, estimator,
                         backend, runner, False, started)
    check_writable(output, "simulate")
    with output_lock(output, "simulate"):
        hold = _existing_output(output, resume, overwrite)
        return _simulate(target, faults, X, y, metric, eps, n_samples, seed, mode, confidence,
                         use_float, output, resume, checkpoint_every_s, progress, estimator,
                         backend, runner, hold, started)


def _existing_output(output, resume: bool, overwrite: bool) -> bool:
    """What an existing ``output`` allows; True when it holds a complete result that this
    run's checkpoints must not replace (only its complete result will)."""
    if resume or overwrite or not os.path.exists(output):
        return False
    source = os.fspath(output)
    try:
        saved = read_run_file(output)
    except NeurosimError as exc:
        raise ValidationError(
            f"The output {source!r} exists and is not a readable neurosim run file ({exc}); it "
            "is not replaced. Choose another output file, or pass overwrite=True (--overwrite)."
        ) from None
    if saved.complete:
        return True
    raise ValidationError(
        f"The output {source!r} holds an interrupted run. Continue it with resume=True "
        "(--resume), or start again with overwrite=True (--overwrite).")


def _simulate(target, faults, X, y, metric, eps, n_samples, seed, mode, confidence, use_float,
              output, resume, checkpoint_every_s, progress, estimator, backend, runner, hold,
              started) -> SimulationResult:
    backend = get_backend(backend, "simulate")
    with runner_scope(runner, "simulate") as run:  # (a runner made from a string is closed)
        return _run(target, faults, X, y, metric, eps, n_samples, seed, mode, confidence,
                    use_float, output, resume, checkpoint_every_s, progress, estimator, backend,
                    run, hold, started)


def _run(target, faults, X, y, metric, eps, n_samples, seed, mode, confidence, use_float,
         output, resume, checkpoint_every_s, progress, estimator, backend, runner, hold,
         started) -> SimulationResult:
    faults = resolve_faults(target, faults, "simulate", use_float)
    if mode is not None:
        faults = faults.with_modes(mode)
    mode = faults.run_mode()
    saved = _resumed_config(output, resume)
    plan = build_plan(target, faults, use_float=use_float,
                      fields=saved is None or "fields" in saved)
    X, y = check_inputs(plan.network, X, y, "simulate")
    backend.check(plan)
    if estimator == "auto":
        estimator = ("stratified" if mode == "transient" and not resume and not plan.fields
                     and plan.expected_faults <= AUTO_STRATIFIED_MAX_FAULTS else "mc")
    if estimator == "stratified":
        if mode != "transient":
            raise ValidationError(f"The stratified estimator supports transient faults only; "
                                  f"this run is {mode} ({faults.spec()}); use estimator='mc'.")
        if plan.fields:
            raise ValidationError(
                "The stratified estimator enumerates sparse faults; stuck cells at a dense rate "
                f"(about {plan.expected_faults:.0f} faults per draw) are sampled: use "
                "estimator='mc'.")
        if resume:
            raise ValidationError("The stratified estimator does not checkpoint; resume needs "
                                  "estimator='mc'.")
        return _simulate_stratified(plan, backend, runner, X, y, metric, eps, n_samples, seed,
                                    confidence, output, started)

    cache = backend.clean_cache(plan, X)
    work = MonteCarlo(plan, backend, cache, y, metric=metric, eps=eps, n_samples=n_samples,
                      seed=seed, mode=mode, sub_blocks=saved is None or "sub_block_draws" in saved)
    mapping = plan.mapping
    # A run in one mode writes its processes without modes (the config's 'mode' says it, as
    # in files before per-process modes); a mixed run writes each process's mode.
    written = faults if mode == "mixed" else faults.with_modes(None)
    config = {
        "metric": metric, "eps": eps, "n_samples": int(n_samples), "seed": int(seed), "mode": mode,
        "confidence": float(confidence), "use_float": bool(use_float), "faults": written.spec(),
        "profile": mapping.profile.name if mapping is not None else None,
        "network_sha256": network_sha256(plan.network), "data_sha256": data_sha256(X, y),
        "n_inputs": work.m, "rounds_per_block": work.rounds_per_block,
    }
    if plan.spiking is not None:  # (absent for graded runs, as in earlier files)
        config["spiking"] = plan.spiking.spec()
    if plan.fields:  # (absent otherwise, as in files written before fields existed)
        config["fields"] = [[f.layer, f.mode] for f in plan.fields]
    if work.sub_block_draws is not None:  # (likewise)
        config["sub_block_draws"] = work.sub_block_draws
    checkpoint = (Checkpoint(output, config, checkpoint_every_s, hold=hold,
                             legacy={"faults": written.spec(legacy=True)})
                  if output is not None else None)
    bar = _Progress(n_samples, mode, work.m, confidence) if progress else None
    try:
        stats = runner.run(work, checkpoint, resume=resume, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    result = work.result(stats, confidence, faults.spec(), backend.name)
    if mapping is not None and not use_float:
        result.quantization = mapping.quantization_report(X, y if work.classification else None)
    result.elapsed_s = time.perf_counter() - started
    if output is not None:
        _save(result, output, config, stats.to_state(), result.chip_failure_rates)
    return result


def _resumed_config(output, resume: bool) -> "dict | None":
    """The config of the run being resumed (None when not resuming). A checkpoint written
    before fields and sub-blocks existed has no 'fields' / 'sub_block_draws' entry: it resumes
    drawing as it started (records, whole blocks), so it ends with the numbers it started
    with."""
    if not resume:
        return None
    try:
        config = read_run_file(output).config
    except NeurosimError:
        return None  # the checkpoint's own check reports the problem
    return config if isinstance(config, dict) else None


def _save(result, output, config, state, chips=None) -> None:
    try:
        write_run_file(output, config, state, result.to_dict(), chips)
    except OSError as exc:
        raise ResultNotSavedError(
            f"The result could not be written to {os.fspath(output)!r} "
            f"({exc.strerror or exc}); it is in this error's 'result'.", result) from exc


def _simulate_stratified(plan, backend, runner, X, y, metric, eps, n_samples, seed, confidence,
                         output, started) -> SimulationResult:
    cache = backend.clean_cache(plan, X)
    strat = StratifiedEstimator(plan, backend, cache, y, metric=metric, eps=eps, seed=seed,
                                confidence=confidence, n_samples=n_samples).run(runner)
    network, mapping = plan.network, plan.mapping
    L = network.n_layers
    result = SimulationResult(
        failure_rate=strat.estimate, ci_low=strat.lower, ci_high=strat.upper,
        confidence=float(confidence), n_samples=int(n_samples), n_inputs=strat.n_inputs,
        n_pairs=strat.rows, n_failures=None, n_faulty_pairs=None, metric=metric, eps=eps,
        mode="transient", seed=int(seed), error_mean=np.nan, error_std=np.nan,
        output_error_mean=np.full(network.n_outputs, np.nan),
        output_error_std=np.full(network.n_outputs, np.nan),
        clean_accuracy=strat.clean_accuracy, faulty_accuracy=None,
        layer_failures=np.zeros(L + 1, dtype=np.int64),
        core_failures=np.zeros(mapping.cores_used if mapping is not None else 0, dtype=np.int64),
        fault_model=plan.faults.spec(), simulated_network=plan.simulated_network,
        interval_method="stratified by fault count (exact strata, Clopper-Pearson per sampled stratum)",
        estimator="stratified", backend=backend.name, stratification=strat.to_dict(),
    )
    result.elapsed_s = time.perf_counter() - started
    if output is not None:
        _save(result, output, {"estimator": "stratified", "seed": int(seed)}, {})
    return result
