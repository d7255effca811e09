"""A sound (eps, delta) certificate, and the stratified estimator's front door.

:func:`stratified_estimate` bounds the failure probability averaged over the given inputs
(:class:`neurosim.estimators.StratifiedEstimator`: exact strata by fault count, conditional
sampling where needed, ``P(K > k_max)`` counted as failure). :func:`certify` then treats the
inputs as an i.i.d. sample of the data distribution and bounds the population failure
probability with the Chernoff-Hoeffding (KL) bound for means of [0, 1]-valued variables
(Hoeffding 1963), so ``delta_upper`` holds with probability at least ``confidence`` over the
fault sampling and the choice of inputs (half of ``1 - confidence`` for each side, split again
between the strata and the inputs).
"""

from __future__ import annotations

import time

import numpy as np

from neurosim.advice import advise
from neurosim.backends import get_backend
from neurosim.errors import ValidationError
from neurosim.estimators.stratified import (StratifiedEstimator, composition_weights,
                                            count_distribution, n_patterns,
                                            sample_counts_given_k)
from neurosim.metrics import METRICS
from neurosim.plan import build_plan, resolve_faults
from neurosim.provenance import data_sha256, network_sha256
from neurosim.results import Certificate, StratifiedResult, Stratum
from neurosim.runners import get_runner
from neurosim.simulation import BACKEND, EPS, RUNNER, resolve_eps
from neurosim.stats import cp_lower, cp_upper, kl_bernoulli, kl_lower, kl_upper
from neurosim.theory import theory_report
from neurosim.validation import (BOOLEAN, OPEN_UNIT, SAMPLES, SEED, Integer, Interval,
                                 Options, check_inputs, validate_params)

__all__ = ["certify", "Certificate", "stratified_estimate", "StratifiedResult", "Stratum",
           "kl_upper", "kl_lower", "cp_upper", "cp_lower", "kl_bernoulli", "count_distribution",
           "composition_weights", "n_patterns", "sample_counts_given_k"]

_COMMON = {"metric": Options(METRICS), "eps": EPS, "seed": SEED, "confidence": OPEN_UNIT,
           "use_float": BOOLEAN, "n_samples": SAMPLES,
           "work_budget": Integer(1, integral_floats=True),
           "tail_fraction": Interval(0.0, 1.0, "right"), "backend": BACKEND, "runner": RUNNER,
           "progress": BOOLEAN}


class _TaskProgress:
    """A tqdm bar counting the estimator's tasks."""

    def __init__(self, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(desc=desc, unit="task", leave=False)
        self.done = 0

    def __call__(self, stats) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _lowered(owner, target, faults, X, y, metric, eps, use_float, backend):
    """Everything the estimator needs, validated once: eps, plan, inputs, backend, cache."""
    eps = resolve_eps(metric, eps, owner)
    if metric == "loss" and y is None:
        raise ValidationError("The 'loss' metric needs labels or targets y.")
    backend = get_backend(backend, owner)
    faults = resolve_faults(target, faults, owner, use_float)
    plan = build_plan(target, faults, use_float=use_float, owner=owner)
    X, y = check_inputs(plan.network, X, y, owner)
    backend.check(plan)
    return eps, plan, X, y, backend


def _run_estimator(plan, backend, X, y, runner, progress, desc, **kwargs) -> StratifiedResult:
    cache = backend.clean_cache(plan, X)
    bar = _TaskProgress(desc) if progress else None
    try:
        return StratifiedEstimator(plan, backend, cache, y, **kwargs).run(runner, progress=bar)
    finally:
        if bar is not None:
            bar.close()


@validate_params({**_COMMON, "rel_halfwidth": Interval(0.0, None, "neither") | None,
                  "max_seconds": Interval(0.0, None, "neither", kind="a number", allow_inf=True),
                  "alpha_split": Interval(0.0, 1.0, "right"), "k_cap": Integer(0) | None,
                  "tail_target": Interval(0.0, 1.0, "right") | None}, owner="stratified_estimate")
def stratified_estimate(
    target, faults=None, X=None, y=None, *, metric="flip", eps=None, seed=0, confidence=0.95,
    use_float=False, n_samples=200, work_budget=4_000_000, tail_target=None,
    tail_fraction=0.01, k_cap=None, rel_halfwidth=None, max_seconds=600.0, alpha_split=1.0,
    backend="auto", runner="serial", progress=False,
) -> StratifiedResult:
    """Stratified (by fault count) bounds on the failure probability over the given inputs.

    The parameters after the data are those of
    :class:`neurosim.estimators.StratifiedEstimator` (``n_samples``, ``work_budget``,
    ``tail_target``, ``tail_fraction``, ``k_cap``, ``rel_halfwidth``, ``max_seconds``,
    ``alpha_split``), then ``backend`` and ``runner`` as for :func:`neurosim.simulate`, and
    ``progress`` (a bar over the estimator's tasks).

    Returns
    -------
    StratifiedResult
    """
    eps, plan, X, y, backend = _lowered("stratified_estimate", target, faults, X, y, metric,
                                        eps, use_float, backend)
    return _run_estimator(
        plan, backend, X, y, get_runner(runner, "stratified_estimate"), progress, "stratified",
        metric=metric, eps=eps, seed=seed, confidence=confidence, n_samples=n_samples,
        work_budget=work_budget, tail_target=tail_target, tail_fraction=tail_fraction,
        k_cap=k_cap, rel_halfwidth=rel_halfwidth, max_seconds=max_seconds,
        alpha_split=alpha_split)


@validate_params({**_COMMON, "delta": Interval(0.0, 1.0, "neither") | None, "theory": BOOLEAN,
                  "alpha": Interval(0.0, 1.0, "neither"), "advice": BOOLEAN})
def certify(
    target, faults=None, X=None, y=None, *, eps=None, delta=None, metric="flip", confidence=0.95,
    seed=0, use_float=False, n_samples=200, work_budget=4_000_000, tail_fraction=0.01,
    theory=True, alpha=0.1, advice=True, backend="auto", runner="serial", progress=False,
) -> Certificate:
    """Certify ``P_{x, U}{metric >= eps} <= delta`` at the given confidence.

    Parameters
    ----------
    target : Mapping or Network
    faults : FaultModel, optional
        Transient faults (paper Def. 5); default: the mapping profile's rates.
    X, y : the inputs (an i.i.d. sample of the data distribution) and labels.
    eps, delta : the (eps, delta) target; ``delta`` in (0, 1).
    confidence : float
        ``delta_upper >= delta_true`` and ``delta_lower <= delta_true`` hold together with at
        least this probability.
    theory : bool
        Also compute the paper's bounds (crash faults only) for comparison.
    backend, runner
        As for :func:`neurosim.simulate`.
    progress : bool
        A progress bar over the estimator's tasks.

    Returns
    -------
    Certificate
        ``certified`` iff ``delta_upper <= delta``.
    """
    started = time.perf_counter()
    if delta is None:
        raise ValidationError("certify needs the target 'delta' (a probability in (0, 1)).")
    delta = float(delta)
    eps, plan, Xc, yc, backend = _lowered("certify", target, faults, X, y, metric, eps,
                                          use_float, backend)
    faults = plan.faults
    alpha_side = (1.0 - confidence) / 2.0
    empirical = _run_estimator(
        plan, backend, Xc, yc, get_runner(runner, "certify"), progress, "certify",
        metric=metric, eps=eps, seed=seed, confidence=confidence, n_samples=n_samples,
        work_budget=work_budget, tail_target=delta, tail_fraction=tail_fraction, alpha_split=0.5)
    m = empirical.n_inputs
    upper = kl_upper(empirical.upper, m, alpha_side / 2)
    lower = kl_lower(empirical.lower, m, alpha_side / 2)
    network, mapping = plan.network, plan.mapping
    report = None
    crash = faults.get("crash")
    if theory and crash is not None and not crash.is_null():
        report = theory_report(network, crash, X, y, metric=metric, eps=eps, alpha=alpha,
                               backend=backend)
    cert = Certificate(
        certified=bool(upper <= delta), delta=delta, eps=eps, metric=metric,
        confidence=confidence, delta_upper=upper, delta_lower=lower,
        delta_estimate=empirical.estimate, empirical=empirical, theory=report,
        fault_model=faults.spec(), seed=int(seed),
        model_sha256=network_sha256(network),
        data_sha256=data_sha256(np.asarray(X), None if y is None else np.asarray(y)),
        n_inputs=m, profile=mapping.profile.name if mapping else None,
        simulated_network=plan.simulated_network, backend=backend.name,
    )
    if advice and not cert.certified:
        cert.advice = advise(cert, network, faults)
    cert.elapsed_s = time.perf_counter() - started
    return cert
