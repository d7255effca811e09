"""A sound (eps, delta) certificate, and the stratified estimator's front door.

:func:`stratified_estimate` bounds the failure probability averaged over the given inputs
(:class:`neurosim.estimators.StratifiedEstimator`: exact strata by fault count, conditional
sampling where needed, ``P(K > k_max)`` counted as failure). :func:`certify` then treats the
inputs as an i.i.d. sample of the data distribution and bounds the population failure
probability with the Chernoff-Hoeffding (KL) bound for means of [0, 1]-valued variables
(Hoeffding 1963), so ``delta_upper`` holds with probability at least ``confidence`` over the
fault sampling and the choice of inputs (half of ``1 - confidence`` for each side, split again
between the strata and the inputs).

When many faults are expected per draw, stratifying by the fault count buys nothing (the
strata it can compute exactly hold almost none of the probability) and certify samples
instead (``method = "sampled"``, :func:`choose_method` says when and why): ``n_samples`` plain
Monte Carlo fault draws per input, drawn afresh for every (draw, input) pair. Their failure
count is a sum of independent Bernoulli variables whose mean is the failure probability
averaged over the given inputs, so the one-sided Clopper-Pearson bounds at ``alpha_side / 2``
hold for it (the tails of a Poisson-binomial sum are no heavier than the binomial's of the
same mean, Hoeffding 1956), exactly where the stratified path spends that share; the
population bound over the inputs is then the same Chernoff-Hoeffding step at the other
``alpha_side / 2``. The certified quantity ``P_{x, U}{metric >= eps}`` is a probability over
one input and one fault draw, the same whether a process is permanent (one draw per chip) or
transient, so the sampled path draws every process per pair (``mode="transient"``). Analog
crossbars are programmed once per chip and have no per-pair draw: there the sampled path runs
``n_samples`` chips on every input and bounds the mean of their i.i.d. failure rates in
[0, 1] with the same Chernoff-Hoeffding (KL) bound, the chips being the independent units.
"""

from __future__ import annotations

import time

import numpy as np

from neurosim.advice import advise
from neurosim.backends import get_backend
from neurosim.errors import ValidationError
from neurosim.estimators.montecarlo import MonteCarlo
from neurosim.estimators.stratified import (StratifiedEstimator, composition_weights,
                                            count_distribution, exact_mass, n_patterns,
                                            row_cost, sample_counts_given_k)
from neurosim.metrics import METRICS, is_classification
from neurosim.plan import build_plan, resolve_faults
from neurosim.provenance import data_sha256, network_sha256
from neurosim.results import Certificate, StratifiedResult, Stratum
from neurosim.runner_choice import runner_scope
from neurosim.simulation import BACKEND, EPS, RUNNER, resolve_eps
from neurosim.stats import cp_lower, cp_upper, kl_bernoulli, kl_lower, kl_upper
from neurosim.theory import theory_report
from neurosim.validation import (BOOLEAN, OPEN_UNIT, SAMPLES, SEED, Integer, Interval,
                                 Options, check_inputs, validate_params)

__all__ = ["certify", "Certificate", "stratified_estimate", "StratifiedResult", "Stratum",
           "choose_method", "METHODS", "MAX_SAMPLED_MASS",
           "kl_upper", "kl_lower", "cp_upper", "cp_lower", "kl_bernoulli", "count_distribution",
           "composition_weights", "n_patterns", "sample_counts_given_k"]

_COMMON = {"metric": Options(METRICS), "eps": EPS, "seed": SEED, "confidence": OPEN_UNIT,
           "use_float": BOOLEAN, "n_samples": SAMPLES,
           "work_budget": Integer(1, integral_floats=True),
           "tail_fraction": Interval(0.0, 1.0, "right"), "backend": BACKEND, "runner": RUNNER,
           "progress": BOOLEAN}


#: ``certify(method=...)``: "auto" chooses by :func:`choose_method`.
METHODS = ("auto", "stratified", "sampled")
#: Auto: stratify while the fault-count strata it computes exactly (``K = 0`` and those whose
#: patterns fit the work budget) leave at most this much probability to sample; beyond it, the
#: stratified bound is no tighter than plain sampling's and costs more (tests/
#: test_certify_density.py and the README give the measurements).
MAX_SAMPLED_MASS = 0.5


def choose_method(plan, n_inputs: int, work_budget: float) -> tuple[str, str]:
    """``("stratified" | "sampled", reason)``: which estimator certify uses for ``plan``.

    Sampled when the plan draws dense stuck cells as fields or has analog non-idealities
    (neither has fault-count strata), or when the probability the exact strata leave to
    sampling, ``1 - exact_mass``, exceeds :data:`MAX_SAMPLED_MASS`; stratified otherwise.
    """
    expected = plan.expected_faults
    continuous = _continuous(plan)
    if continuous:
        return "sampled", (f"the {continuous[0]} fault's factors are continuous: no finite set "
                           "of outcomes to enumerate; plain Monte Carlo")
    if plan.analog is not None:
        return "sampled", ("the analog non-idealities perturb every cell of every draw, so there "
                           "are no fault-count strata: plain Monte Carlo")
    if plan.fields:
        return "sampled", (f"dense stuck cells (about {expected:.3g} faults per draw) are drawn "
                           "as fields, not as countable faults: plain Monte Carlo")
    groups = plan.groups
    covered = exact_mass(groups, n_inputs, work_budget, row_cost(plan.network))
    left = 1.0 - covered
    if left > MAX_SAMPLED_MASS:
        return "sampled", (f"about {expected:.3g} faults per draw: the exactly computed strata "
                           f"cover P = {covered:.3g} of the fault-count distribution, leaving "
                           f"{left:.3g} (> {MAX_SAMPLED_MASS:g}) to sampling; plain Monte Carlo")
    return "stratified", (f"about {expected:.3g} faults per draw: the exactly computed strata "
                          f"cover P = {covered:.3g} of the fault-count distribution, leaving "
                          f"{left:.3g} (<= {MAX_SAMPLED_MASS:g}) to sampling")


class _DrawProgress:
    """A tqdm bar over fault draws per input of the sampled path, with the current rate."""

    def __init__(self, n_samples: int, m: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n_samples, unit="draw", desc="certify (sampling)", leave=False)
        self.n_samples, self.m = n_samples, m

    def __call__(self, stats) -> None:
        self.bar.n = min(self.n_samples, stats.n_pairs // self.m)
        self.bar.set_postfix_str(f"failures {stats.n_failures}/{stats.n_pairs}")
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


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


def _lowered(owner, target, faults, X, y, metric, eps, use_float, backend, fields=True):
    """Everything the estimator needs, validated once: eps, plan, inputs, backend, cache.
    ``fields=False`` draws every fault as records (what the stratified estimator counts)."""
    eps = resolve_eps(metric, eps, owner)
    if metric == "loss" and y is None:
        raise ValidationError("The 'loss' metric needs labels or targets y.")
    backend = get_backend(backend, owner)
    faults = resolve_faults(target, faults, owner, use_float)
    plan = build_plan(target, faults, use_float=use_float, owner=owner, fields=fields)
    X, y = check_inputs(plan.network, X, y, owner)
    backend.check(plan)
    return eps, plan, X, y, backend


def _continuous(plan) -> list:
    """The kinds of the plan's faults whose outcomes are continuous (not enumerable)."""
    return [p.kind for p in plan.fault_types
            if not p.is_null() and not getattr(p, "enumerable", True)]


def _stratifiable(plan, owner: str):
    """The plan with every fault as records (fields have no fault count); analog
    non-idealities have no strata at all, nor continuous factors a finite set of outcomes."""
    continuous = _continuous(plan)
    if continuous:
        raise ValidationError(
            f"{owner}: the stratified estimator enumerates each fault's outcomes, and the "
            f"{continuous[0]} fault's factors are continuous. Give factor=F1/F2/... instead, or "
            "use certify (it samples them) or simulate.")
    if plan.analog is not None:
        raise ValidationError(
            f"{owner}: the stratified estimator counts discrete faults; the analog "
            "non-idealities perturb every cell of every draw. Use certify (it samples them) or "
            "simulate.")
    if plan.fields:
        plan = build_plan(plan.target,
                          plan.faults, use_float=plan.use_float, owner=owner, fields=False)
    return plan


def _run_sampled(plan, backend, X, y, runner, progress, *, metric, eps, seed, n_samples,
                 confidence, alpha):
    """Plain Monte Carlo over the given inputs, as a :class:`StratifiedResult` of one sampled
    part (no strata, nothing counted as tail), bounded at ``alpha`` on each side.

    ``n_samples`` draws per input with every fault process drawn afresh per pair, and
    one-sided Clopper-Pearson bounds over the independent pairs; analog crossbars, which are
    programmed once per chip and have no per-pair draw, run ``n_samples`` chip instances on
    every input instead: the chips' failure rates are i.i.d. in [0, 1] with mean the failure
    probability averaged over the inputs, bounded with the Chernoff-Hoeffding (KL) bound for
    means of [0, 1] variables (Hoeffding 1963; a chip's pairs are not independent, so no
    Clopper-Pearson over them)."""
    started = time.perf_counter()
    chips = plan.analog is not None
    if not chips and plan.run_mode != "transient":  # a fresh chip per pair
        plan = build_plan(plan.target,
                          plan.faults.with_modes("transient"), use_float=plan.use_float,
                          owner="certify")
        backend.check(plan)
    cache = backend.clean_cache(plan, X)
    work = MonteCarlo(plan, backend, cache, y, metric=metric, eps=eps, n_samples=n_samples,
                      seed=seed, mode=plan.run_mode if chips else "transient")
    bar = _DrawProgress(n_samples, work.m) if progress else None
    try:
        stats = runner.run(work, None, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if chips:
        rates = stats.chip_failure_counts() / work.m
        estimate, n = float(rates.mean()), rates.size
        lower, upper = kl_lower(estimate, n, alpha), kl_upper(estimate, n, alpha)
        label = f"{n} chip instances (plain Monte Carlo over chips, KL bound)"
    else:
        fails, pairs = int(stats.n_failures), int(stats.n_pairs)
        lower, upper = cp_lower(fails, pairs, alpha), cp_upper(fails, pairs, alpha)
        estimate = fails / pairs
        label = "all draws (plain Monte Carlo)"
    part = Stratum(0, label, 1.0, "sampled", estimate, lower, upper, rows=int(stats.n_pairs),
                   patterns=0.0)
    clean_accuracy = None
    if is_classification(y):
        clean_accuracy = float(np.mean(cache.output.argmax(axis=1) == y))
    return StratifiedResult(
        estimate=estimate, lower=lower, upper=upper, tail=0.0, k_max=-1, strata=[part],
        confidence=confidence, n_inputs=work.m, rows=int(stats.n_faulty_pairs),
        elapsed_s=time.perf_counter() - started, clean_accuracy=clean_accuracy)


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
                                        eps, use_float, backend, fields=False)
    plan = _stratifiable(plan, "stratified_estimate")
    with runner_scope(runner, "stratified_estimate") as run:
        return _run_estimator(
            plan, backend, X, y, run, progress, "stratified",
            metric=metric, eps=eps, seed=seed, confidence=confidence, n_samples=n_samples,
            work_budget=work_budget, tail_target=tail_target, tail_fraction=tail_fraction,
            k_cap=k_cap, rel_halfwidth=rel_halfwidth, max_seconds=max_seconds,
            alpha_split=alpha_split)


@validate_params({**_COMMON, "delta": Interval(0.0, 1.0, "neither") | None, "theory": BOOLEAN,
                  "alpha": Interval(0.0, 1.0, "neither"), "advice": BOOLEAN,
                  "method": Options(METHODS)})
def certify(
    target, faults=None, X=None, y=None, *, eps=None, delta=None, metric="flip", confidence=0.95,
    seed=0, use_float=False, n_samples=200, work_budget=4_000_000, tail_fraction=0.01,
    theory=True, alpha=0.1, advice=True, backend="auto", runner="serial", progress=False,
    method="auto",
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
    n_samples : int
        Stratified: conditional fault draws per input in each sampled stratum. Sampled: plain
        Monte Carlo fault draws per input.
    backend, runner
        As for :func:`neurosim.simulate`.
    progress : bool
        A progress bar (on stderr) over the estimator's tasks, or the sampled draws.
    method : {"auto", "stratified", "sampled"}
        How the failure probability over the given inputs is bounded: stratified by fault
        count, or plain Monte Carlo; "auto" (default) asks :func:`choose_method` (sampled when
        many faults are expected per draw). The certificate records the choice and why.

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
    chosen, reason = choose_method(plan, Xc.shape[0], work_budget)
    if method != "auto" and method != chosen:
        reason = f"method={method!r} asked for (auto would choose {chosen}: {reason})"
        chosen = method
    if chosen != "sampled":
        plan = _stratifiable(plan, "certify")
    with runner_scope(runner, "certify") as run:
        if chosen == "sampled":
            # Both sides at alpha_side / 2 (the share the strata get on the stratified path).
            empirical = _run_sampled(plan, backend, Xc, yc, run, progress, metric=metric,
                                     eps=eps, seed=seed, n_samples=n_samples,
                                     confidence=confidence, alpha=alpha_side / 2)
        else:
            empirical = _run_estimator(
                plan, backend, Xc, yc, run, progress, "certify",
                metric=metric, eps=eps, seed=seed, confidence=confidence, n_samples=n_samples,
                work_budget=work_budget, tail_target=delta, tail_fraction=tail_fraction,
                alpha_split=0.5)
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
        method=chosen, method_reason=reason,
    )
    if advice and not cert.certified:
        cert.advice = advise(cert, network, faults)
    cert.elapsed_s = time.perf_counter() - started
    return cert
