"""A sound (eps, delta) certificate, and the stratified estimator's front door.

:func:`stratified_estimate` bounds the failure probability averaged over the given inputs
(:class:`neurosim.estimators.StratifiedEstimator`: exact strata by fault count, conditional
sampling where needed, ``P(K > k_max)`` counted as failure). :func:`certify` treats the inputs
as an i.i.d. sample of the data distribution and bounds the population failure probability
``delta = E_x f(x)``, ``f(x) = P_U{metric(x, U) >= eps}``, so that ``delta_upper >= delta`` and
``delta_lower <= delta`` hold together with probability at least ``confidence`` over the fault
sampling and the choice of inputs (``alpha_side = (1 - confidence) / 2`` for each side).

The population bound (``population=``, recorded in the certificate):

* ``"betting"`` (the default, ``"auto"``, from 3 inputs on): one step. Every input gets its own
  estimate of ``f(x_i)`` from its own fault draws: on the sampled path ``Y_i`` = its failure
  fraction over its ``n_samples`` draws (``E Y_i = f(x_i)``); on the stratified path the same
  strata weighted the same way on its rows alone, with the tail ``P(K > k_max)`` counted as
  failure for the upper values (``E >= f(x_i)``) and as success for the lower ones
  (``E <= f(x_i)``). Over an i.i.d. sample of inputs these values are i.i.d. in [0, 1] with
  mean ``>= delta`` (upper) or ``<= delta`` (lower), so a bound on their mean at
  ``alpha_side`` covers the fault sampling and the inputs together, with no split of alpha.
  That bound is the betting confidence bound of Waudby-Smith & Ramdas (2023, "Estimating
  means of bounded random variables by betting", JRSS-B 86(1)):
  :func:`neurosim.stats.betting_upper` with predictable plug-in bets
  ``lambda_i = min(sqrt(2 ln(1/alpha) / (n sigma2_{i-1})), 0.9 / (1 - m))`` and Ville's
  inequality over the running capital, the values seen in an order drawn from the seed (so it
  is valid whatever order the inputs come in), never below the estimate. It adapts to the
  variance of ``f`` over the inputs, where the KL bound pays for a Bernoulli one.
* ``"kl"`` (the bound before; kept, and used for analog crossbars, whose chips run every input
  so that no input has an i.i.d. estimate of its own, and below 3 inputs): two steps. The bound
  over the given inputs at ``alpha_side / 2`` (the estimator's), then the Chernoff-Hoeffding
  (KL) bound for means of [0, 1] variables (Hoeffding 1963) over the ``m`` inputs at the other
  ``alpha_side / 2``: ``kl_upper(empirical.upper, m, alpha_side / 2)``.

Measured (``benchmarks/bench_population_bound.py``: a 4-6-5-2 network, crashes at p = 0.02,
``linf >= 0.6``, 2,000 inputs whose ``f`` are enumerated exactly, delta = 0.0358, 200 seeds,
confidence 0.95): mean ``delta_upper`` 0.160 (betting) against 0.227 (KL) with 30 inputs
(ratio 0.70) and 0.051 against 0.079 with 300 (0.65), on the sampled path 0.66 and 0.62; both
cover in 200 of 200 seeds. On values that are Bernoulli (every input fails always or never)
betting is 0.89 to 0.96 of the old bound, on all-zero values 0.94.

When many faults are expected per draw, stratifying by the fault count buys nothing (the
strata it can compute exactly hold almost none of the probability) and certify samples
instead (``method = "sampled"``, :func:`choose_method` says when and why): ``n_samples`` plain
Monte Carlo fault draws per input, drawn afresh for every (draw, input) pair. Their failure
count is a sum of independent Bernoulli variables whose mean is the failure probability
averaged over the given inputs, so the one-sided Clopper-Pearson bounds hold for it (the tails
of a Poisson-binomial sum are no heavier than the binomial's of the same mean, Hoeffding 1956):
at ``alpha_side / 2``, where the stratified path spends that share, for the KL bound; at
``alpha_side``, reported only, for the betting one. The certified quantity
``P_{x, U}{metric >= eps}`` is a probability over one input and one fault draw, the same
whether a process is permanent (one draw per chip) or transient, so the sampled path draws
every process per pair (``mode="transient"``). Analog crossbars are programmed once per chip
and have no per-pair draw: there the sampled path runs ``n_samples`` chips on every input and
bounds the mean of their i.i.d. failure rates in [0, 1] with the same Chernoff-Hoeffding (KL)
bound, the chips being the independent units, before the KL step over the inputs.
"""

from __future__ import annotations

import time

import numpy as np

from neurosim.advice import advise
from neurosim.backends import get_backend
from neurosim.errors import ValidationError
from neurosim.estimators.montecarlo import MonteCarlo
from neurosim.estimators.stratified import (InputValues, StratifiedEstimator,
                                            composition_weights, count_distribution,
                                            exact_mass, n_patterns, row_cost,
                                            sample_counts_given_k)
from neurosim.metrics import METRICS, is_classification
from neurosim.plan import build_plan, resolve_faults
from neurosim.provenance import data_sha256, network_sha256
from neurosim.results import Certificate, StratifiedResult, Stratum
from neurosim.runner_choice import runner_scope
from neurosim.simulation import BACKEND, EPS, RUNNER, resolve_eps
from neurosim.stats import (betting_lower, betting_upper, cp_lower, cp_upper, kl_bernoulli,
                            kl_lower, kl_upper)
from neurosim.theory import theory_report
from neurosim.validation import (BOOLEAN, OPEN_UNIT, SAMPLES, SEED, Integer, Interval,
                                 Options, check_inputs, validate_params)

__all__ = ["certify", "Certificate", "stratified_estimate", "StratifiedResult", "Stratum",
           "choose_method", "METHODS", "MAX_SAMPLED_MASS", "POPULATION_BOUNDS",
           "MIN_BETTING_INPUTS",
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
#: ``certify(population=...)``: how the bound reaches the input distribution. "betting": one
#: step, a betting bound (Waudby-Smith & Ramdas 2023) on the mean of each input's estimated
#: failure probability; "kl": two steps, the bound over the given inputs and then the
#: Chernoff-Hoeffding (KL) bound over them; "auto": betting wherever each input has its own
#: i.i.d. estimate (everything but analog crossbars, whose chips run every input) and there are
#: at least :data:`MIN_BETTING_INPUTS` inputs.
POPULATION_BOUNDS = ("auto", "betting", "kl")
#: "auto" bets from this many inputs on: with 1 or 2 the betting bound is 1 (its first bet is
#: made knowing nothing), the KL one 0.99 or 0.89 at 95 % confidence; from 3 on betting is
#: tighter on inputs that never fail (0.73 against 0.77 at 3), the common case of a small
#: certificate, and at most about 1 % looser elsewhere at 3 (three values of 0.5: 1 against
#: 0.99; at 4 inputs 0.87 against 0.97).
MIN_BETTING_INPUTS = 3
#: Tag of the seed of the order in which the betting bound sees the inputs.
ORDER_SEED_TAG = 0xB377


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
    values = None
    if not chips and plan.run_mode != "transient":  # a fresh chip per pair
        plan = build_plan(plan.target,
                          plan.faults.with_modes("transient"), use_float=plan.use_float,
                          owner="certify")
        backend.check(plan)
    cache = backend.clean_cache(plan, X)
    work = MonteCarlo(plan, backend, cache, y, metric=metric, eps=eps, n_samples=n_samples,
                      seed=seed, mode=plan.run_mode if chips else "transient",
                      per_input=not chips)
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
        # Input i's failure fraction over its own n_samples draws: i.i.d. over the inputs,
        # with mean exactly the population failure probability.
        rate = np.asarray(stats.input_failures, dtype=np.float64) / n_samples
        values = InputValues(lower=rate, upper=rate)
    part = Stratum(0, label, 1.0, "sampled", estimate, lower, upper, rows=int(stats.n_pairs),
                   patterns=0.0)
    clean_accuracy = None
    if is_classification(y):
        clean_accuracy = float(np.mean(cache.output.argmax(axis=1) == y))
    return StratifiedResult(
        estimate=estimate, lower=lower, upper=upper, tail=0.0, k_max=-1, strata=[part],
        confidence=confidence, n_inputs=work.m, rows=int(stats.n_faulty_pairs),
        elapsed_s=time.perf_counter() - started, clean_accuracy=clean_accuracy), values


def _run_estimator(plan, backend, X, y, runner, progress, desc, **kwargs):
    """The stratified estimator's result and, with ``per_input=True``, its InputValues."""
    cache = backend.clean_cache(plan, X)
    bar = _TaskProgress(desc) if progress else None
    try:
        estimator = StratifiedEstimator(plan, backend, cache, y, **kwargs)
        return estimator.run(runner, progress=bar), estimator.input_values
    finally:
        if bar is not None:
            bar.close()


def _population_bound(asked: str, plan, n_inputs: int) -> tuple[str, str]:
    """``(bound, reason)``: the population bound certify uses (chosen before any fault is
    drawn, from the plan and the number of inputs alone)."""
    if plan.analog is not None:
        if asked == "betting":
            raise ValidationError(
                "The 'population' parameter of certify must be 'kl' or 'auto' for analog "
                "crossbars. Got 'betting' instead: every chip runs every input, so the inputs "
                "have no independent estimates of their own to bet on.")
        return "kl", ("analog crossbars: every chip runs every input, so the inputs have no "
                      "i.i.d. estimates of their own; two steps, KL over the inputs")
    if asked == "kl":
        return "kl", "population='kl' asked for (two steps, KL over the inputs)"
    if asked == "auto" and n_inputs < MIN_BETTING_INPUTS:
        return "kl", (f"{n_inputs} input(s): fewer than {MIN_BETTING_INPUTS}, where the betting "
                      "bound is 1; two steps, KL over the inputs")
    return "betting", ("one step: a betting bound on the mean of the inputs' own estimates, "
                       "which are i.i.d. with mean the population failure probability")


def _betting_bounds(values: InputValues, estimate: float, seed: int,
                    alpha: float) -> tuple[float, float]:
    """Betting bounds, each at ``alpha``, on the population mean of the inputs' estimates
    (``upper`` values for the upper bound, ``lower`` ones for the lower), seen in an order
    drawn from the seed: the inputs are an i.i.d. sample, so a permutation independent of them
    makes the sequence i.i.d. whatever order they were given in (sorted by class, say)."""
    order = np.random.default_rng(np.random.SeedSequence(
        [int(seed), ORDER_SEED_TAG])).permutation(values.upper.size)
    upper = max(betting_upper(values.upper[order], alpha), estimate)
    lower = min(betting_lower(values.lower[order], alpha), estimate)
    return lower, upper


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
            alpha_split=alpha_split)[0]


@validate_params({**_COMMON, "delta": Interval(0.0, 1.0, "neither") | None, "theory": BOOLEAN,
                  "alpha": Interval(0.0, 1.0, "neither"), "advice": BOOLEAN,
                  "method": Options(METHODS), "population": Options(POPULATION_BOUNDS)})
def certify(
    target, faults=None, X=None, y=None, *, eps=None, delta=None, metric="flip", confidence=0.95,
    seed=0, use_float=False, n_samples=200, work_budget=4_000_000, tail_fraction=0.01,
    theory=True, alpha=0.1, advice=True, backend="auto", runner="serial", progress=False,
    method="auto", population="auto",
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
    population : {"auto", "betting", "kl"}
        How the bound over the given inputs reaches the input distribution (module
        docstring): "betting", one step on the inputs' own estimates (tighter; the default
        wherever it applies), or "kl", the Chernoff-Hoeffding two steps; "auto" (default)
        is "betting" except on analog crossbars. The certificate records the choice and why
        (``population``, ``population_reason``).

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
    bound, bound_reason = _population_bound(population, plan, Xc.shape[0])
    one_step = bound == "betting"
    # Betting: one step with each side's whole alpha_side (the bound over the given inputs is
    # only reported); KL: half of it for the inputs' bound, half for the population step.
    inputs_alpha = alpha_side if one_step else alpha_side / 2
    chosen, reason = choose_method(plan, Xc.shape[0], work_budget)
    if method != "auto" and method != chosen:
        reason = f"method={method!r} asked for (auto would choose {chosen}: {reason})"
        chosen = method
    if chosen != "sampled":
        plan = _stratifiable(plan, "certify")
    with runner_scope(runner, "certify") as run:
        if chosen == "sampled":
            empirical, values = _run_sampled(plan, backend, Xc, yc, run, progress,
                                             metric=metric, eps=eps, seed=seed,
                                             n_samples=n_samples, confidence=confidence,
                                             alpha=inputs_alpha)
        else:
            empirical, values = _run_estimator(
                plan, backend, Xc, yc, run, progress, "certify",
                metric=metric, eps=eps, seed=seed, confidence=confidence, n_samples=n_samples,
                work_budget=work_budget, tail_target=delta, tail_fraction=tail_fraction,
                alpha_split=1.0 if one_step else 0.5, per_input=True)
    m = empirical.n_inputs
    if one_step:
        lower, upper = _betting_bounds(values, empirical.estimate, seed, alpha_side)
    else:
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
        method=chosen, method_reason=reason, population=bound,
        population_reason=bound_reason, input_values=values,
    )
    if advice and not cert.certified:
        cert.advice = advise(cert, network, faults)
    cert.elapsed_s = time.perf_counter() - started
    return cert
