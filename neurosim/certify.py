"""A sound (eps, delta) certificate and the stratified rare-event estimator.

Stratify by the number K of faulty sites (neurons, synapses, weight bits, core slots, each
independent with its own rate):

    P(fail) = sum_k P(K = k) P(fail | K = k),

* ``P(K = k)`` exactly (Poisson-binomial: a convolution of one binomial per group of sites
  sharing a rate);
* ``k = 0`` never fails (the error is exactly 0);
* ``k = 1`` exactly, by evaluating every single fault on every input (neurons and cores always;
  synapse and bit sites when they fit the work budget, otherwise sampled); a single crash whose
  Prop. 2 bound on the output change is below the input's margin is skipped (it cannot fail);
* ``k = 2 .. k_max`` exactly when all their patterns fit the work budget, otherwise by sampling
  conditional on ``K = k`` with one-sided Clopper-Pearson bounds (confidence split over the
  sampled strata);
* ``P(K > k_max)`` counts as failure in the upper bound; ``k_max`` is the smallest with this tail
  below ``tail_fraction`` of the target.

This bounds the failure probability averaged over the given inputs (what :func:`simulate`
estimates). The certificate then treats the inputs as an i.i.d. sample of the data distribution
and bounds the population failure probability with the Chernoff-Hoeffding (KL) bound for means
of [0, 1]-valued variables (Hoeffding 1963), so ``delta_upper`` holds with probability at least
``confidence`` over the fault sampling and the choice of inputs (half of ``1 - confidence`` for
each side, split again between the strata and the inputs).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import gammaln

from neurosim.engine import (
    FaultGroup, build_plan, clean_cache, fault_groups, one_blas_thread, propagate,
    records_from_positions,
)
from neurosim.errors import ValidationError, param_error
from neurosim.faults import resolve_faults

__all__ = ["certify", "Certificate", "stratified_estimate", "StratifiedResult", "kl_upper", "kl_lower"]


# --- exact K distribution -------------------------------------------------------------------------

def count_distribution(groups: list[FaultGroup], k_cap: int) -> tuple[np.ndarray, float]:
    """``P(K = k)`` for k = 0..k_cap, and ``P(K > k_cap)``, K the total number of faulty sites."""
    pmf = np.zeros(k_cap + 1)
    pmf[0] = 1.0
    for g in groups:
        g_pmf = stats.binom.pmf(np.arange(min(g.n, k_cap) + 1), g.n, g.rate)
        pmf = np.convolve(pmf, g_pmf)[: k_cap + 1]
    tail = max(0.0, 1.0 - math.fsum(pmf))
    mean = sum(g.n * g.rate for g in groups)
    # Direct tail sum where the subtraction would lose precision.
    if tail < 1e-6:
        big = int(min(sum(g.n for g in groups), k_cap + 60 + 10 * math.sqrt(mean + 1)))
        full = np.zeros(big + 1)
        full[0] = 1.0
        for g in groups:
            full = np.convolve(full, stats.binom.pmf(np.arange(min(g.n, big) + 1), g.n, g.rate))[: big + 1]
        rest = max(0.0, 1.0 - math.fsum(full))  # mass beyond `big` (rounding-level; kept: conservative)
        tail = math.fsum(full[k_cap + 1:]) + rest
    return pmf, tail


def _compositions(k: int, n_groups: int):
    """All ways to write k as an ordered sum of n_groups non-negative integers."""
    if n_groups == 1:
        yield (k,)
        return
    for first in range(k + 1):
        for rest in _compositions(k - first, n_groups - 1):
            yield (first,) + rest


def composition_weights(groups: list[FaultGroup], k: int):
    """Compositions of k over the groups and their probabilities given K = k."""
    comps, logw = [], []
    for comp in _compositions(k, len(groups)):
        if any(c > g.n for c, g in zip(comp, groups)):
            continue
        lw = 0.0
        for c, g in zip(comp, groups):
            lw += float(stats.binom.logpmf(c, g.n, g.rate))
        comps.append(comp)
        logw.append(lw)
    logw = np.array(logw)
    w = np.exp(logw - logw.max())
    return np.array(comps, dtype=np.int64), w / w.sum()


def _log_comb(n, k):
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def n_patterns(groups: list[FaultGroup], k: int) -> float:
    """Number of fault patterns with exactly k faulty sites (stuck sites count twice: 0 / max).

    The coefficient of ``t^k`` in ``prod_g (1 + w_g t)^{n_g}`` (``w_g`` = 2 for stuck sites).
    """
    poly = np.zeros(k + 1)
    poly[0] = 1.0
    for g in groups:
        j = np.arange(min(g.n, k) + 1)
        w = 2.0 if g.kind == "stuck" else 1.0
        coef = np.exp(_log_comb(g.n, j) + j * math.log(w))
        poly = np.convolve(poly, coef)[: k + 1]
    return float(poly[k]) if k < poly.size else 0.0


def sample_counts_given_k(groups: list[FaultGroup], ks: np.ndarray, rng) -> np.ndarray:
    """Per-group fault counts of draws conditioned on their total ``ks`` (exact).

    Group g gets ``j`` with probability ``Bin(j; n_g, p_g) P(K_{>g} = k - j) / P(K_{>=g} = k)``,
    ``K_{>g}`` the count of the later groups, from suffix distributions.
    """
    ks = np.asarray(ks, dtype=np.int64)
    k_top = int(ks.max(initial=0))
    G = len(groups)
    pmfs = [stats.binom.pmf(np.arange(k_top + 1), g.n, g.rate) for g in groups]
    suffix = [None] * (G + 1)
    suffix[G] = np.zeros(k_top + 1)
    suffix[G][0] = 1.0
    for g in range(G - 1, -1, -1):
        suffix[g] = np.convolve(pmfs[g], suffix[g + 1])[: k_top + 1]
    counts = np.zeros((ks.size, G), dtype=np.int64)
    remaining = ks.copy()
    for g in range(G):
        if g == G - 1:
            counts[:, g] = remaining
            break
        j = np.arange(k_top + 1)
        # weights[d, j] = pmf_g(j) * suffix_{g+1}(remaining_d - j)
        rest = remaining[:, None] - j[None, :]
        valid = rest >= 0
        weights = np.where(valid, pmfs[g][None, :] * suffix[g + 1][np.clip(rest, 0, k_top)], 0.0)
        weights /= weights.sum(axis=1, keepdims=True)
        u = rng.random(ks.size)[:, None]
        pick = (np.cumsum(weights, axis=1) < u).sum(axis=1)
        pick = np.minimum(pick, remaining)
        counts[:, g] = pick
        remaining = remaining - pick
    return counts


# --- bounds ---------------------------------------------------------------------------------------

def cp_upper(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound at level 1 - alpha."""
    return 1.0 if k >= n else float(stats.beta.ppf(1 - alpha, k + 1, n - k))


def cp_lower(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound at level 1 - alpha."""
    return 0.0 if k <= 0 else float(stats.beta.ppf(alpha, k, n - k + 1))


def _kl(a, b):
    a = min(max(a, 0.0), 1.0)
    b = min(max(b, 1e-300), 1 - 1e-16)
    out = 0.0
    if a > 0:
        out += a * math.log(a / b)
    if a < 1:
        out += (1 - a) * math.log((1 - a) / (1 - b))
    return out


def _kl_bound(mean: float, m: int, alpha: float, upper: bool) -> float:
    """The mu on the ``upper`` (or lower) side of ``mean`` where ``m d_KL(mean || mu)`` reaches
    ``log(1/alpha)``, by bisection (d_KL grows monotonically away from ``mean``)."""
    mean = min(max(mean, 0.0), 1.0)
    edge = 1.0 if upper else 0.0
    if mean == edge:
        return edge
    target = math.log(1.0 / alpha) / m
    if _kl(mean, (1.0 - 1e-16) if upper else 1e-300) <= target:
        return edge
    inside, outside = mean, edge  # d_KL <= target at `inside`, > target at `outside`
    for _ in range(200):
        mid = 0.5 * (inside + outside)
        if _kl(mean, mid) > target:
            outside = mid
        else:
            inside = mid
    return outside


def kl_upper(mean: float, m: int, alpha: float) -> float:
    """Largest mu with ``m d_KL(mean || mu) <= log(1/alpha)``: an upper confidence bound on the
    mean of m i.i.d. [0, 1] variables (Chernoff-Hoeffding), holding with probability >= 1 - alpha."""
    return _kl_bound(mean, m, alpha, upper=True)


def kl_lower(mean: float, m: int, alpha: float) -> float:
    """Smallest mu with ``m d_KL(mean || mu) <= log(1/alpha)`` (lower confidence bound)."""
    return _kl_bound(mean, m, alpha, upper=False)


# --- evaluating fault patterns ----------------------------------------------------------------------

class _Evaluator:
    """Runs explicit fault patterns on every input and reports failure fractions."""

    def __init__(self, plan, X, y, metric, eps, chunk_rows: int = 1 << 16):
        from neurosim.simulation import _metric

        self.plan = plan
        self.cache = clean_cache(plan, X)
        self.y = y
        self.metric = metric
        self.eps = eps
        self.m = X.shape[0]
        self.chunk_rows = chunk_rows
        self._metric = _metric
        self.rows_evaluated = 0

    def fail_counts(self, batch, row_draw, row_input) -> np.ndarray:
        """Failure indicator of each row."""
        out = np.empty(row_draw.size, dtype=bool)
        for lo in range(0, row_draw.size, self.chunk_rows):
            hi = min(row_draw.size, lo + self.chunk_rows)
            rd, ri = row_draw[lo:hi], row_input[lo:hi]
            faulty = propagate(self.plan, self.cache, batch, rd, ri)
            y_rows = self.y[ri] if self.y is not None else None
            values = self._metric(self.metric, faulty, self.cache.output[ri], y_rows)
            out[lo:hi] = values >= self.eps
        self.rows_evaluated += row_draw.size
        return out


def _positions_for_patterns(groups, patterns):
    """patterns: list of tuples of (group index, position, to_max flag) -> positions dict."""
    draws = {g.key: [] for g in groups}
    pos = {g.key: [] for g in groups}
    to_max = {g.key: [] for g in groups if g.kind == "stuck"}
    for d, pattern in enumerate(patterns):
        for gi, p, flag in pattern:
            key = groups[gi].key
            draws[key].append(d)
            pos[key].append(p)
            if key in to_max:
                to_max[key].append(flag)
    positions = {k: (np.asarray(draws[k], np.int64), np.asarray(pos[k], np.int64)) for k in draws}
    return positions, {k: np.asarray(v, bool) for k, v in to_max.items()}


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
    network: object = None
    clean_accuracy: "float | None" = None

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate, "lower": self.lower, "upper": self.upper,
            "tail_probability": self.tail, "k_max": self.k_max, "confidence": self.confidence,
            "n_inputs": self.n_inputs, "rows_evaluated": self.rows, "elapsed_s": self.elapsed_s,
            "strata": [s.as_dict() for s in self.strata],
        }


def _skippable_single_crashes(plan, evaluator, layer, metric, eps, semantics_silent):
    """Mask (n_inputs, n_layer) of single crashes that provably cannot fail (Prop. 2 bound)."""
    from neurosim.theory.bounds import lipschitz_chain

    if metric == "loss" or not semantics_silent:
        return None
    network = plan.network
    y_l = evaluator.cache.Y[layer].astype(np.float64)
    if layer == network.n_layers:
        gain = np.ones(y_l.shape[1])  # an output neuron: D = -y_i e_i
    else:
        # D z_{l+1} = -W_{l+1}[:, i] y_i, then Prop. 2 from layer l+1 on.
        nxt = network.layers[layer]
        gain = np.linalg.norm(nxt.W.astype(np.float64), axis=0) * lipschitz_chain(network, layer + 1)
        if layer + 1 < network.n_layers:
            gain = gain * nxt.activation.lipschitz
    change = np.abs(y_l) * gain[None, :] * (1 + 1e-9) + 1e-12  # bound on ||D||_2 (silent crash)
    if metric == "flip":
        out = evaluator.cache.output.astype(np.float64)
        top2 = np.sort(out, axis=1)[:, -2:]
        threshold = (top2[:, 1] - top2[:, 0]) / 2.0  # ||D||_inf >= margin/2 is needed to flip
    else:
        threshold = np.full(y_l.shape[0], eps)  # ||D||_inf <= ||D||_2 < eps: no failure
    return change < threshold[:, None]


def stratified_estimate(
    target, faults=None, X=None, y=None, *, metric="flip", eps=None, seed=0, confidence=0.95,
    use_float=False, n_samples=200, work_budget=4_000_000, tail_target=None,
    tail_fraction=0.01, k_cap=None, rel_halfwidth=None, max_seconds=600.0, alpha_split=1.0,
) -> StratifiedResult:
    """Stratified (by fault count) bounds on the failure probability over the given inputs.

    Parameters
    ----------
    n_samples : int
        Conditional fault draws per input in each sampled stratum (first round).
    work_budget : int
        Most (pattern, input) rows evaluated exactly per stratum; larger strata are sampled.
    tail_target : float, optional
        ``k_max`` is the smallest k with ``P(K > k) <= tail_fraction * tail_target``; by default
        the target is the exactly computed part of the estimate (the k = 1 stratum).
    rel_halfwidth : float, optional
        Keep doubling the samples of the sampled strata until ``(upper - lower) / 2 <=
        rel_halfwidth * estimate``, or ``max_seconds`` have passed (a failure rate of 0 never
        reaches a relative precision).
    alpha_split : float
        Fraction of each side's ``(1 - confidence) / 2`` given to the strata (the certificate
        keeps the rest for the population bound over inputs).
    """
    from neurosim.simulation import _validate

    started = time.perf_counter()
    eps = _validate(metric, eps, 1, "transient", confidence, y, owner="certify")
    faults = resolve_faults(target, faults, "certify")
    plan = build_plan(target, faults, use_float=use_float)
    X = plan.network.check_input(X, owner="input data X")
    if y is not None:
        y = np.asarray(y)
    groups = fault_groups(plan)
    evaluator = _Evaluator(plan, X, y, metric, eps)
    m = X.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    n_sites = sum(g.n for g in groups)
    if k_cap is None:  # far enough into the tail of K for any target
        mean_k = sum(g.n * g.rate for g in groups)
        k_cap = int(math.ceil(mean_k + 12 * math.sqrt(mean_k) + 12))
    k_cap = min(k_cap, n_sites)
    pmf, _ = count_distribution(groups, max(k_cap, 1))
    strata: list[Stratum] = []
    sampled: list[tuple[Stratum, dict]] = []

    with one_blas_thread():
        # k = 1, group by group.
        if n_sites and pmf.size > 1 and pmf[1] > 0:
            comps, weights = composition_weights(groups, 1)
            for comp, w in zip(comps, weights):
                gi = int(np.flatnonzero(comp)[0])
                group = groups[gi]
                prob = float(pmf[1] * w)
                n_pat = group.n * (2 if group.kind == "stuck" else 1)
                if n_pat * m <= work_budget:
                    frac = _exact_single(plan, evaluator, groups, gi, metric, eps)
                    strata.append(Stratum(1, f"{group.kind} {group.key[1]}", prob, "exact", frac,
                                          frac, frac, rows=n_pat * m, patterns=n_pat))
                else:
                    st = Stratum(1, f"{group.kind} {group.key[1]}", prob, "sampled", 0, 0, 1,
                                 patterns=n_pat)
                    sampled.append((st, {"fixed": comp}))
                    strata.append(st)
        # k >= 2 until the tail is small next to the target.
        exact_part = sum(s.probability * s.fail_fraction for s in strata if s.method == "exact")
        target_tail = tail_fraction * (tail_target if tail_target is not None else exact_part)
        k = 1
        pending = []
        tail = count_distribution(groups, 1)[1] if n_sites else 0.0
        while k < k_cap and tail > max(target_tail, 1e-15):
            k += 1
            if k >= pmf.size:
                pmf, _ = count_distribution(groups, k)
            prob = float(pmf[k])
            n_pat = n_patterns(groups, k)
            if n_pat * m <= work_budget:
                frac = _exact_stratum(plan, evaluator, groups, k)
                strata.append(Stratum(k, f"K={k}", prob, "exact", frac, frac, frac,
                                      rows=int(n_pat * m), patterns=n_pat))
            else:
                pending.append((k, prob, n_pat))
            tail = count_distribution(groups, k)[1]
        k_max = k
        if pending:
            # The strata too large to enumerate are sampled together, conditional on K being one
            # of them (K drawn with its conditional probability, then the groups' counts, then
            # the sites): one interval instead of one per stratum.
            total = sum(prob for _, prob, _ in pending)
            ks = [k_s for k_s, _, _ in pending]
            label = f"K={ks[0]}" if len(ks) == 1 else f"K={ks[0]}..{ks[-1]}"
            st = Stratum(ks[0], label, total, "sampled", 0, 0, 1,
                         patterns=sum(n for _, _, n in pending))
            sampled.append((st, {"ks": np.array(ks),
                                 "k_weights": np.array([prob for _, prob, _ in pending]) / total}))
            strata.append(st)

        alpha_side = (1.0 - confidence) / 2.0 * alpha_split
        n_sampled = max(1, len(sampled))
        counts = {id(st): [0, 0] for st, _ in sampled}  # failures, rows
        # Aiming at a precision: start small and double (the first round rarely needs much).
        draws_per_input = n_samples if rel_halfwidth is None else max(1, 4096 // m)
        while True:
            for st, spec in sampled:
                fails, rows = _sample_stratum(plan, evaluator, groups, spec, draws_per_input, rng)
                c = counts[id(st)]
                c[0] += fails
                c[1] += rows
                st.rows = c[1]
                st.fail_fraction = c[0] / c[1]
                st.lower = cp_lower(c[0], c[1], alpha_side / n_sampled)
                st.upper = cp_upper(c[0], c[1], alpha_side / n_sampled)
            estimate = sum(s.probability * s.fail_fraction for s in strata)
            lower = sum(s.probability * s.lower for s in strata)
            upper = min(1.0, sum(s.probability * s.upper for s in strata) + tail)
            if (rel_halfwidth is None or not sampled
                    or (upper - lower) / 2 <= rel_halfwidth * estimate
                    or time.perf_counter() - started > max_seconds):
                break
            draws_per_input *= 2
    clean_accuracy = None
    if y is not None and np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
        clean_accuracy = float(np.mean(evaluator.cache.output.argmax(axis=1) == y))
    return StratifiedResult(
        estimate=estimate, lower=lower, upper=upper, tail=tail, k_max=k_max, strata=strata,
        confidence=confidence, n_inputs=m, rows=evaluator.rows_evaluated,
        elapsed_s=time.perf_counter() - started, network=plan.network,
        clean_accuracy=clean_accuracy,
    )


def _exact_single(plan, evaluator, groups, gi, metric, eps) -> float:
    """P(fail | the single fault is in group gi), averaged over inputs, by enumeration."""
    group = groups[gi]
    m = evaluator.m
    outcomes = [True, False] if group.kind == "stuck" else [False]
    total = 0.0
    for flag in outcomes:
        weight = 1.0
        if group.kind == "stuck":
            p = plan.stuck_p0 + plan.stuck_p1
            weight = (plan.stuck_p1 if flag else plan.stuck_p0) / p
            if weight == 0:
                continue
        skip = None
        if group.kind == "crash" and group.layer >= 1:
            skip = _skippable_single_crashes(plan, evaluator, group.layer, metric, eps,
                                             plan.crash_sem == 0)
        positions = {group.key: (np.arange(group.n, dtype=np.int64), np.arange(group.n, dtype=np.int64))}
        to_max = {group.key: np.full(group.n, flag)} if group.kind == "stuck" else None
        batch = records_from_positions(plan, positions, group.n, to_max)
        row_draw = np.tile(np.arange(group.n, dtype=np.int64), m)
        row_input = np.repeat(np.arange(m, dtype=np.int64), group.n)
        has_fault = batch.draw_has_fault[row_draw]
        keep = has_fault.copy()
        if skip is not None:
            keep &= ~skip[row_input, row_draw]
        fails = 0
        if keep.any():
            fails = int(evaluator.fail_counts(batch, row_draw[keep], row_input[keep]).sum())
        # Rows without a record (a spare core failing alone) and skipped rows cannot fail,
        # unless eps <= 0 makes every row a failure.
        if evaluator.eps <= 0:
            fails += int((~keep).sum())
        total += weight * fails / (group.n * m)
    return total


def _exact_stratum(plan, evaluator, groups, k) -> float:
    """P(fail | K = k) averaged over inputs, by enumerating every pattern of k faulty sites."""
    sites = [(gi, p) for gi, g in enumerate(groups) for p in range(g.n)]
    rates = np.array([groups[gi].rate for gi, _ in sites])
    odds = rates / (1.0 - np.minimum(rates, 1 - 1e-300))
    patterns, weights = [], []
    p_stuck = plan.stuck_p0 + plan.stuck_p1
    for combo in itertools.combinations(range(len(sites)), k):
        base = float(np.prod(odds[list(combo)]))
        stuck_idx = [c for c in combo if groups[sites[c][0]].kind == "stuck"]
        for flags in itertools.product([False, True], repeat=len(stuck_idx)):
            w = base
            flag_of = dict(zip(stuck_idx, flags))
            for c, f in flag_of.items():
                w *= (plan.stuck_p1 if f else plan.stuck_p0) / p_stuck
            if w == 0:
                continue
            patterns.append(tuple((sites[c][0], sites[c][1], flag_of.get(c, False)) for c in combo))
            weights.append(w)
    weights = np.array(weights)
    weights /= weights.sum()
    positions, to_max = _positions_for_patterns(groups, patterns)
    batch = records_from_positions(plan, positions, len(patterns), to_max)
    m = evaluator.m
    row_draw = np.tile(np.arange(len(patterns), dtype=np.int64), m)
    row_input = np.repeat(np.arange(m, dtype=np.int64), len(patterns))
    has = batch.draw_has_fault[row_draw]
    fail = np.zeros(row_draw.size, dtype=bool)
    if has.any():
        fail[has] = evaluator.fail_counts(batch, row_draw[has], row_input[has])
    if evaluator.eps <= 0:
        fail[~has] = True
    per_pattern = np.bincount(row_draw[fail], minlength=len(patterns)) / m
    return float(np.dot(weights, per_pattern))


def _sample_stratum(plan, evaluator, groups, spec, draws_per_input, rng) -> tuple[int, int]:
    """Failures among draws_per_input x n_inputs rows, each with its own conditional fault set."""
    from neurosim.engine import sample_faults

    m = evaluator.m
    fails = 0
    rounds_per_chunk = max(1, (1 << 16) // m)  # bounded memory however many draws are asked for
    for start in range(0, draws_per_input, rounds_per_chunk):
        n_draws = min(rounds_per_chunk, draws_per_input - start) * m
        if "fixed" in spec:
            comps = np.broadcast_to(spec["fixed"], (n_draws, len(groups)))
        else:
            ks = spec["ks"][rng.choice(spec["ks"].size, size=n_draws, p=spec["k_weights"])]
            comps = sample_counts_given_k(groups, ks, rng)  # (n_draws, n_groups)
        counts = {g.key: comps[:, gi] for gi, g in enumerate(groups)}
        batch = sample_faults(plan, rng, n_draws, counts=counts)
        row_draw = np.arange(n_draws, dtype=np.int64)
        row_input = row_draw % m
        has = batch.draw_has_fault
        if has.any():
            fails += int(evaluator.fail_counts(batch, row_draw[has], row_input[has]).sum())
        if evaluator.eps <= 0:
            fails += int((~has).sum())
    return fails, draws_per_input * m


# --- the certificate --------------------------------------------------------------------------------

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

    def to_dict(self) -> dict:
        theory = self.theory.to_dict() if self.theory is not None else None
        return {
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
                "note": "failure probability averaged over the given inputs; delta_upper/lower "
                        "extend it to the input distribution (Chernoff-Hoeffding over inputs)",
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
            "advice": self.advice,
            "elapsed_s": self.elapsed_s,
        }

    def summary(self) -> str:
        pct = 100 * self.confidence
        verdict = "CERTIFIED" if self.certified else "NOT certified"
        lines = [
            f"{verdict}: P({self.metric} >= {self.eps:g}) <= {self.delta_upper:.4g} "
            f"(target delta {self.delta:g}) at {pct:g} % confidence",
            f"  sound bounds over the input distribution: [{self.delta_lower:.4g}, {self.delta_upper:.4g}], "
            f"estimate {self.delta_estimate:.4g}",
            f"  over the {self.n_inputs} given inputs: [{self.empirical.lower:.4g}, {self.empirical.upper:.4g}] "
            f"(k_max {self.empirical.k_max}, P(K > k_max) = {self.empirical.tail:.3g})",
        ]
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


def certify(
    target, faults=None, X=None, y=None, *, eps=None, delta=None, metric="flip", confidence=0.95,
    seed=0, use_float=False, n_samples=200, work_budget=4_000_000, tail_fraction=0.01,
    theory=True, alpha=0.1, advice=True,
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

    Returns
    -------
    Certificate
        ``certified`` iff ``delta_upper <= delta``.
    """
    from neurosim.mapping import Mapping

    started = time.perf_counter()
    if delta is None:
        raise ValidationError("certify needs the target 'delta' (a probability in (0, 1)).")
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        raise param_error("certify", "delta", "a float in (0, 1)", delta) from None
    if not 0.0 < delta < 1.0:
        raise param_error("certify", "delta", "a float in (0, 1)", delta)
    mapping = target if isinstance(target, Mapping) else None
    faults = resolve_faults(target, faults, "certify")
    alpha_side = (1.0 - confidence) / 2.0
    empirical = stratified_estimate(
        target, faults, X, y, metric=metric, eps=eps, seed=seed, confidence=confidence,
        use_float=use_float, n_samples=n_samples, work_budget=work_budget, tail_target=delta,
        tail_fraction=tail_fraction, alpha_split=0.5,
    )
    from neurosim.simulation import _data_sha256, _network_sha256, _validate

    eps = _validate(metric, eps, 1, "transient", confidence, y, owner="certify")
    m = empirical.n_inputs
    upper = kl_upper(empirical.upper, m, alpha_side / 2)
    lower = kl_lower(empirical.lower, m, alpha_side / 2)
    network = (mapping.network if use_float else mapping.quantized_network()) if mapping else target
    report = None
    crash = faults.get("crash")
    if theory and crash is not None and not crash.is_null():
        from neurosim.theory import theory_report

        report = theory_report(network, crash, X, y, metric=metric, eps=eps, alpha=alpha)
    cert = Certificate(
        certified=bool(upper <= delta), delta=delta, eps=eps, metric=metric,
        confidence=confidence, delta_upper=upper, delta_lower=lower,
        delta_estimate=empirical.estimate, empirical=empirical, theory=report,
        fault_model=faults.spec(), seed=int(seed),
        model_sha256=_network_sha256(network),
        data_sha256=_data_sha256(np.asarray(X), None if y is None else np.asarray(y)),
        n_inputs=m, profile=mapping.profile.name if mapping else None,
        simulated_network="float" if (use_float or mapping is None) else f"quantized for {mapping.profile.name}",
    )
    if advice and not cert.certified:
        from neurosim.advice import advise

        cert.advice = advise(cert, network, faults)
    cert.elapsed_s = time.perf_counter() - started
    return cert
