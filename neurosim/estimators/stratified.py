"""The stratified rare-event estimator: exact strata by fault count, sampled where needed.

Stratify by the number K of faulty sites (neurons, synapses, weight bits, core slots, each
independent with its own rate):

    P(fail) = sum_k P(K = k) P(fail | K = k),

* ``P(K = k)`` exactly (Poisson-binomial: a convolution of one binomial per group of sites
  sharing a rate);
* ``k = 0`` never fails (the error is exactly 0);
* ``k = 1`` exactly, by evaluating every single fault on every input (neurons and cores always;
  synapse and bit sites when they fit the work budget, otherwise sampled); a single fault whose
  bound on the output change (the fault type's ``single_fault_bound``: Prop. 2 for a silent
  crash) is below the input's failure threshold is skipped (it cannot fail);
* ``k = 2 .. k_max`` exactly when all their patterns fit the work budget, otherwise by sampling
  conditional on ``K = k`` with one-sided Clopper-Pearson bounds (confidence split over the
  sampled strata);
* ``P(K > k_max)`` counts as failure in the upper bound; ``k_max`` is the smallest with this tail
  below ``tail_fraction`` of the target.

This bounds the failure probability averaged over the given inputs. Asked for them
(``per_input=True``), the estimator also gives each input's share of it (:class:`InputValues`):
the same strata weighted the same way, on that input's rows alone. Those are unbiased for the
input's failure probability except for the tail, counted as failure in ``upper`` (biased up)
and as success in ``lower`` (biased down); with the inputs an i.i.d. sample, they are i.i.d.
(each input's conditional draws are its own rows, drawn independently of the inputs), which is
what certify's population bound needs. The work is split into
tasks (single faults and exact strata by input chunks; conditional draws by round and chunk,
each chunk's random numbers from ``SeedSequence([seed, 0x5EED, stratum, round, chunk])``)
whose counts merge exactly, so a runner may compute them anywhere and in any order.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import gammaln

from neurosim.kernels.codes import REC_CRASH
from neurosim.metrics import flip_margin, is_classification
from neurosim.metrics import metric as metric_values
from neurosim.results import StratifiedResult, Stratum
from neurosim.sampler import FaultGroup, records_from_positions, sample_faults
from neurosim.stats import cp_lower, cp_upper

__all__ = ["StratifiedEstimator", "StrataCounts", "InputValues", "count_distribution", "count_tails",
           "log_count_distribution", "composition_weights", "n_patterns", "log_n_patterns",
           "sample_counts_given_k", "exact_mass", "SEED_TAG", "ROW_MACS", "row_cost"]

#: Tag in the seed of the conditional draws (so they never share a stream with simulate's blocks).
SEED_TAG = 0x5EED
#: Rows (pattern, input) per task.
TASK_ROWS = 1 << 16
#: A row of a network with at most this many multiply-adds counts once in ``work_budget``
#: (the bundled dense and conv digits models are below it); larger ones count in proportion.
ROW_MACS = 100_000


def row_cost(network) -> float:
    """How many budget rows one row of ``network`` counts (:data:`ROW_MACS`)."""
    macs = sum(int(layer.n_connections) for layer in network.layers)
    return max(1.0, macs / ROW_MACS)


# --- exact K distribution (in logs) ---------------------------------------------------------------
#
# Every count distribution is kept as logarithms: a binomial's ``logpmf``, convolutions of two
# log-distributions as a convolution of ``exp(log - max)`` (every factor in [0, 1], the maxima
# added back in logs), so nothing overflows at any density; a probability below ``e^-700``
# of the largest one of its distribution underflows to 0 (``-inf`` in logs), silently.

def _log_convolve(la: np.ndarray, lb: np.ndarray, size: int) -> np.ndarray:
    """``log`` of the first ``size`` terms of the convolution of ``exp(la)`` and ``exp(lb)``."""
    ma, mb = float(np.max(la, initial=-np.inf)), float(np.max(lb, initial=-np.inf))
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return np.full(size, -np.inf)
    c = np.convolve(np.exp(la - ma), np.exp(lb - mb))[:size]
    with np.errstate(divide="ignore"):
        out = np.log(c) + (ma + mb)
    if out.size < size:
        out = np.concatenate([out, np.full(size - out.size, -np.inf)])
    return out


def _log_binom(g: FaultGroup, k_hi: int) -> np.ndarray:
    """``log P(K_g = j)`` for j = 0..k_hi (``-inf`` beyond the group's ``n``)."""
    j = np.arange(k_hi + 1)
    with np.errstate(divide="ignore"):
        out = stats.binom.logpmf(j, g.n, g.rate)
    return np.where(j <= g.n, out, -np.inf)


def log_count_distribution(groups: list[FaultGroup], k_hi: int) -> np.ndarray:
    """``log P(K = k)`` for k = 0..k_hi, K the total number of faulty sites (Poisson-binomial:
    one binomial per group, convolved in logs; finite at any expected count)."""
    logp = np.full(k_hi + 1, -np.inf)
    logp[0] = 0.0
    for g in groups:
        logp = _log_convolve(logp, _log_binom(g, k_hi), k_hi + 1)
    return logp


def _tail_bound(groups: list[FaultGroup], a: int) -> float:
    """A bound on ``P(K > a)`` (Bernstein: ``P(K - mu >= t) <= exp(-t^2 / (2 (var + t / 3)))``
    for a sum of independent Bernoulli variables), 0 when ``a`` is every site."""
    if a >= sum(g.n for g in groups):
        return 0.0
    mean = sum(g.n * g.rate for g in groups)
    var = sum(g.n * g.rate * (1.0 - g.rate) for g in groups)
    t = a + 1 - mean
    if t <= 0:
        return 1.0
    return min(1.0, math.exp(-t * t / (2.0 * (var + t / 3.0))))


def count_tails(groups: list[FaultGroup], k_cap: int) -> tuple[np.ndarray, np.ndarray]:
    """``P(K = k)`` and ``P(K > k)`` for k = 0..k_cap, both accurate in absolute terms and
    relative ones down to ``1e-300`` or so (the tails summed directly, from the far end: never
    ``1 - sum``, which would lose a small tail)."""
    n_sites = sum(g.n for g in groups)
    mean = sum(g.n * g.rate for g in groups)
    big = int(min(n_sites, k_cap + 60 + 10 * math.sqrt(mean + 1)))
    big = max(big, k_cap)
    full = np.exp(log_count_distribution(groups, big))
    # suffix[k] = sum_{j >= k} full[j], summed from the small end of the tail
    suffix = np.cumsum(full[::-1])[::-1]
    rest = _tail_bound(groups, big)  # P(K > big) (a bound: conservative)
    tails = np.empty(k_cap + 1)
    tails[:k_cap] = suffix[1:k_cap + 1] + rest
    tails[k_cap] = (suffix[k_cap + 1] if big > k_cap else 0.0) + rest
    return full[:k_cap + 1], np.minimum(tails, 1.0)


def count_distribution(groups: list[FaultGroup], k_cap: int) -> tuple[np.ndarray, float]:
    """``P(K = k)`` for k = 0..k_cap, and ``P(K > k_cap)``, K the total number of faulty sites."""
    pmf, tails = count_tails(groups, k_cap)
    return pmf, float(tails[k_cap])


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
            with np.errstate(divide="ignore"):
                lw += float(stats.binom.logpmf(c, g.n, g.rate))
        comps.append(comp)
        logw.append(lw)
    logw = np.array(logw)
    top = float(np.max(logw, initial=-np.inf))
    if not np.isfinite(top):  # (no composition has a positive probability)
        return np.array(comps, dtype=np.int64), np.zeros(len(comps))
    w = np.exp(logw - top)
    return np.array(comps, dtype=np.int64), w / w.sum()


def _log_comb(n, k):
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def log_n_patterns(groups: list[FaultGroup], k_hi: int) -> np.ndarray:
    """``log`` of :func:`n_patterns` for k = 0..k_hi at once (finite however many there are)."""
    logp = np.full(k_hi + 1, -np.inf)
    logp[0] = 0.0
    for g in groups:
        j = np.arange(min(g.n, k_hi) + 1)
        logp = _log_convolve(logp, _log_comb(g.n, j) + j * math.log(float(g.n_outcomes)), k_hi + 1)
    return logp


def n_patterns(groups: list[FaultGroup], k: int) -> float:
    """Number of fault patterns with exactly k faulty sites (stuck sites count twice: 0 / max).

    The coefficient of ``t^k`` in ``prod_g (1 + w_g t)^{n_g}`` (``w_g`` = 2 for stuck sites);
    ``inf`` when it is beyond the float range (such a stratum is sampled, never enumerated).
    """
    if k > sum(g.n for g in groups):
        return 0.0
    if log_n_patterns(groups, k)[k] > 700.0:
        return math.inf
    poly = np.zeros(k + 1)
    poly[0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # (cannot happen below e^700)
        for g in groups:
            j = np.arange(min(g.n, k) + 1)
            w = float(g.n_outcomes)
            coef = np.exp(_log_comb(g.n, j) + j * math.log(w))
            poly = np.convolve(poly, coef)[: k + 1]
    return float(poly[k]) if np.isfinite(poly[k]) else math.inf


#: Most entries of one (draws x counts) weight matrix of :func:`sample_counts_given_k`.
_PICK_ENTRIES = 1 << 22


def sample_counts_given_k(groups: list[FaultGroup], ks: np.ndarray, rng) -> np.ndarray:
    """Per-group fault counts of draws conditioned on their total ``ks`` (exact).

    Group g gets ``j`` with probability ``Bin(j; n_g, p_g) P(K_{>g} = k - j) / P(K_{>=g} = k)``,
    ``K_{>g}`` the count of the later groups, from suffix distributions (in logs). The draws
    are computed in slices of bounded memory; the random numbers do not depend on them.
    """
    ks = np.asarray(ks, dtype=np.int64)
    k_top = int(ks.max(initial=0))
    G = len(groups)
    logpmfs = [_log_binom(g, k_top) for g in groups]
    suffix = [None] * (G + 1)
    suffix[G] = np.full(k_top + 1, -np.inf)
    suffix[G][0] = 0.0
    for g in range(G - 1, -1, -1):
        suffix[g] = _log_convolve(logpmfs[g], suffix[g + 1], k_top + 1)
    counts = np.zeros((ks.size, G), dtype=np.int64)
    remaining = ks.copy()
    j = np.arange(k_top + 1)
    step = max(1, _PICK_ENTRIES // (k_top + 1))
    for g in range(G):
        if g == G - 1:
            counts[:, g] = remaining
            break
        u_all = rng.random(ks.size)
        pick = np.empty(ks.size, dtype=np.int64)
        for lo in range(0, ks.size, step):
            hi = min(ks.size, lo + step)
            rem = remaining[lo:hi]
            # logw[d, j] = log pmf_g(j) + log P(K_{>g} = remaining_d - j)
            rest = rem[:, None] - j[None, :]
            logw = np.where(rest >= 0, logpmfs[g][None, :] + suffix[g + 1][np.clip(rest, 0, k_top)],
                            -np.inf)
            top = logw.max(axis=1, keepdims=True)
            top = np.where(np.isfinite(top), top, 0.0)
            weights = np.exp(logw - top)
            total = weights.sum(axis=1, keepdims=True)
            weights = weights / np.where(total > 0, total, 1.0)
            u = u_all[lo:hi, None]
            pick[lo:hi] = np.minimum((np.cumsum(weights, axis=1) < u).sum(axis=1), rem)
        counts[:, g] = pick
        remaining = remaining - pick
    return counts


def exact_mass(groups: list[FaultGroup], n_inputs: int, work_budget: float, cost: float = 1.0,
               k_cap: "int | None" = None) -> float:
    """``P(K = 0)`` plus the probability of every stratum the estimator computes exactly
    within ``work_budget`` (the k = 1 parts whose single faults fit, and the k >= 2 strata whose
    patterns all fit): the mass stratification covers without sampling."""
    n_sites = sum(g.n for g in groups)
    if n_sites == 0:
        return 1.0
    if k_cap is None:
        mean_k = sum(g.n * g.rate for g in groups)
        k_cap = int(math.ceil(mean_k + 12 * math.sqrt(mean_k) + 12))
    k_cap = max(1, min(k_cap, n_sites))
    logp = log_count_distribution(groups, k_cap)
    covered = math.exp(logp[0])
    if k_cap >= 1 and np.isfinite(logp[1]):
        comps, weights = composition_weights(groups, 1)
        for comp, w in zip(comps, weights):
            g = groups[int(np.flatnonzero(comp)[0])]
            if g.n * g.n_outcomes * n_inputs * cost <= work_budget:
                covered += math.exp(logp[1]) * w
    log_np = log_n_patterns(groups, k_cap)
    limit = math.log(work_budget / (n_inputs * cost))
    for k in range(2, k_cap + 1):
        if log_np[k] <= limit + 1e-9:
            covered += math.exp(logp[k])
    return min(1.0, covered)

# --- evaluating fault patterns ----------------------------------------------------------------------

def _positions_for_patterns(groups, patterns):
    """patterns: list of tuples of (group index, position, outcome) -> positions, outcomes."""
    draws = {g.key: [] for g in groups}
    pos = {g.key: [] for g in groups}
    outcome = {g.key: [] for g in groups if g.n_outcomes > 1}
    for d, pattern in enumerate(patterns):
        for gi, p, o in pattern:
            key = groups[gi].key
            draws[key].append(d)
            pos[key].append(p)
            if key in outcome:
                outcome[key].append(o)
    positions = {k: (np.asarray(draws[k], np.int64), np.asarray(pos[k], np.int64)) for k in draws}
    return positions, {k: np.asarray(v, np.int64) for k, v in outcome.items()}


@dataclass(frozen=True)
class StrataCounts:
    """Failure counts of the tasks in ``blocks``, by stratum part; merges exactly.

    ``fails[key]`` is an int (a single-fault part ``("single", gi, outcome)`` or a sampled
    stratum ``("sampled", s)``) or an int array (an exact stratum ``("exact", k)``: one count
    per pattern); ``rows[key]`` the (pattern, input) rows a sampled stratum drew;
    ``evaluated`` the rows the backend ran. ``by_input[key]`` (only when the estimator was
    asked for per-input values) holds the same failures by input, one entry per input (an
    exact stratum's weighted by its patterns' probabilities); a task's inputs are its own, so
    adding arrays is exact.
    """

    blocks: frozenset
    fails: dict
    rows: dict
    evaluated: int
    by_input: dict = field(default_factory=dict)

    @classmethod
    def empty(cls) -> "StrataCounts":
        return cls(frozenset(), {}, {}, 0)

    def merge(self, other: "StrataCounts") -> "StrataCounts":
        twice = self.blocks & other.blocks
        if twice:
            raise ValueError(f"StrataCounts.merge: tasks {sorted(twice)[:3]} counted twice")
        fails = dict(self.fails)
        for key, value in other.fails.items():
            fails[key] = fails[key] + value if key in fails else value
        rows = dict(self.rows)
        for key, value in other.rows.items():
            rows[key] = rows.get(key, 0) + value
        by_input = dict(self.by_input)
        for key, value in other.by_input.items():
            by_input[key] = by_input[key] + value if key in by_input else value
        return StrataCounts(self.blocks | other.blocks, fails, rows,
                            self.evaluated + other.evaluated, by_input)


@dataclass(frozen=True)
class InputValues:
    """Each given input's estimated failure probability, as two bounds on it in expectation.

    ``lower[i]`` counts ``P(K > k_max)`` as success, ``upper[i]`` as failure; both are in
    [0, 1]. Over random faults ``E lower[i] <= f(x_i) <= E upper[i]``, where ``f(x)`` is the
    failure probability of input ``x`` (exactly ``E lower[i] = E upper[i] = f(x_i)`` on the
    sampled path, which has no tail).
    """

    lower: np.ndarray
    upper: np.ndarray


class _Tasks:
    """The stratified estimator's tasks as picklable work: ``self(task)`` -> StrataCounts.

    Between phases (single faults, exact strata, sampled rounds) only the light parts change
    (the strata's patterns and specs); ``shared`` ones are shipped to a cluster once."""

    shared = ("plan", "backend", "cache", "y")

    def __init__(self, plan, backend, cache, y, metric, eps, seed, per_input=False):
        self.plan = plan
        self.backend = backend
        self.cache = cache
        self.y = y
        self.metric = metric
        self.eps = eps
        self.seed = seed
        self.m = cache.n_inputs
        self.groups = plan.groups
        self.skip = {}          # group index -> (n_inputs, n) mask of single faults that cannot fail
        self.exact = {}         # k -> (batch, n_patterns)
        self.per_input = per_input  # also count failures by input (StrataCounts.by_input)
        self.exact_weights = {}  # k -> the patterns' probabilities given K = k (per_input)
        self.sampled = []       # specs of the sampled strata
        self.round_draws = {}   # round -> conditional draws per input

    def empty(self) -> StrataCounts:
        return StrataCounts.empty()

    def session(self):
        return self.backend.session()

    def __call__(self, task) -> StrataCounts:
        with self.backend.session():
            kind = task[0]
            if kind == "single":
                return self._single(task)
            if kind == "exact":
                return self._exact(task)
            return self._sampled(task)

    def _fail(self, batch, row_draw, row_input) -> np.ndarray:
        """Failure indicator of each row (backend passes of at most TASK_ROWS rows)."""
        out = np.empty(row_draw.size, dtype=bool)
        for lo in range(0, row_draw.size, TASK_ROWS):
            hi = min(row_draw.size, lo + TASK_ROWS)
            rd, ri = row_draw[lo:hi], row_input[lo:hi]
            faulty = self.backend.propagate(self.plan, self.cache, batch, rd, ri)
            y_rows = self.y[ri] if self.y is not None else None
            values = metric_values(self.metric, faulty, self.cache.output[ri], y_rows)
            out[lo:hi] = values >= self.eps
        return out

    def inputs_per_task(self, n_patterns: int) -> int:
        return max(1, TASK_ROWS // max(int(n_patterns), 1))

    def _single(self, task) -> StrataCounts:
        _, gi, outcome, start = task
        group = self.groups[gi]
        n = group.n
        stop = min(self.m, start + self.inputs_per_task(n))
        sites = np.arange(n, dtype=np.int64)
        outcomes = {group.key: np.full(n, outcome, np.int64)} if group.n_outcomes > 1 else {}
        batch = records_from_positions(self.plan, {group.key: (sites, sites)}, n, outcomes)
        row_draw = np.tile(sites, stop - start)
        row_input = np.repeat(np.arange(start, stop, dtype=np.int64), n)
        keep = batch.draw_has_fault[row_draw]
        skip = self.skip.get(gi)
        if skip is not None:
            keep &= ~skip[row_input, row_draw]
        fail = np.zeros(row_draw.size, dtype=bool)
        if keep.any():
            fail[keep] = self._fail(batch, row_draw[keep], row_input[keep])
        # Rows without a record (a spare core failing alone) and skipped rows cannot fail,
        # unless eps <= 0 makes every row a failure.
        if self.eps <= 0:
            fail[~keep] = True
        key = ("single", gi, outcome)
        by_input = ({key: np.bincount(row_input[fail], minlength=self.m)}
                    if self.per_input else {})
        return StrataCounts(frozenset((task,)), {key: int(fail.sum())}, {}, int(keep.sum()),
                            by_input)

    def _exact(self, task) -> StrataCounts:
        _, k, start = task
        batch, n_pat = self.exact[k]
        stop = min(self.m, start + self.inputs_per_task(n_pat))
        row_draw = np.tile(np.arange(n_pat, dtype=np.int64), stop - start)
        row_input = np.repeat(np.arange(start, stop, dtype=np.int64), n_pat)
        has = batch.draw_has_fault[row_draw]
        fail = np.zeros(row_draw.size, dtype=bool)
        if has.any():
            fail[has] = self._fail(batch, row_draw[has], row_input[has])
        if self.eps <= 0:
            fail[~has] = True
        counts = np.bincount(row_draw[fail], minlength=n_pat).astype(np.int64)
        by_input = {}
        if self.per_input:
            weights = self.exact_weights[k]
            by_input[("exact", k)] = np.bincount(row_input[fail], weights=weights[row_draw[fail]],
                                                 minlength=self.m)
        return StrataCounts(frozenset((task,)), {("exact", k): counts}, {}, int(has.sum()),
                            by_input)

    def _provably_harmless(self, spec, batch, row_input) -> np.ndarray:
        """Draws of a sampled single-crash stratum whose crash the Prop. 2 skip mask says
        cannot fail (as the exact stratum skips them): no need to propagate them. With
        ``eps <= 0`` every row fails, so none is skipped."""
        out = np.zeros(batch.n_draws, dtype=bool)
        fixed = spec.get("fixed")
        if fixed is None or self.eps <= 0:
            return out
        nz = np.flatnonzero(fixed)
        if nz.size != 1 or fixed[nz[0]] != 1 or int(nz[0]) not in self.skip:
            return out
        group = self.groups[int(nz[0])]
        sel = (batch.kind == REC_CRASH) & (batch.layer == group.layer)
        site = np.full(batch.n_draws, -1, dtype=np.int64)
        site[batch.draw[sel]] = batch.out_start[sel]
        ok = site >= 0
        out[ok] = self.skip[int(nz[0])][row_input[ok], site[ok]]
        return out

    def rounds_per_chunk(self) -> int:
        return max(1, TASK_ROWS // self.m)  # bounded memory however many draws are asked for

    def _sampled(self, task) -> StrataCounts:
        _, s, round_, chunk = task
        spec = self.sampled[s]
        m, groups = self.m, self.groups
        start = chunk * self.rounds_per_chunk()
        n_draws = min(self.rounds_per_chunk(), self.round_draws[round_] - start) * m
        rng = np.random.default_rng(np.random.SeedSequence(
            [int(self.seed), SEED_TAG, int(s), int(round_), int(chunk)]))
        if "fixed" in spec:
            comps = np.broadcast_to(spec["fixed"], (n_draws, len(groups)))
        else:
            ks = spec["ks"][rng.choice(spec["ks"].size, size=n_draws, p=spec["k_weights"])]
            comps = sample_counts_given_k(groups, ks, rng)  # (n_draws, n_groups)
        counts = {g.key: comps[:, gi] for gi, g in enumerate(groups)}
        batch = sample_faults(self.plan, rng, n_draws, counts=counts)
        row_draw = np.arange(n_draws, dtype=np.int64)
        row_input = row_draw % m
        has = batch.draw_has_fault
        run = has & ~self._provably_harmless(spec, batch, row_input)
        fail = np.zeros(n_draws, dtype=bool)
        if run.any():
            fail[run] = self._fail(batch, row_draw[run], row_input[run])
        if self.eps <= 0:
            fail[~has] = True
        key = ("sampled", s)
        by_input = {key: np.bincount(row_input[fail], minlength=m)} if self.per_input else {}
        return StrataCounts(frozenset((task,)), {key: int(fail.sum())}, {key: n_draws},
                            int(run.sum()), by_input)


def _enumerate_patterns(groups, k):
    """Every pattern of k faulty sites (and outcomes) with its probability given K = k."""
    sites = [(gi, p) for gi, g in enumerate(groups) for p in range(g.n)]
    rates = np.array([groups[gi].rate for gi, _ in sites])
    odds = rates / (1.0 - np.minimum(rates, 1 - 1e-300))
    patterns, weights = [], []
    for combo in itertools.combinations(range(len(sites)), k):
        base = float(np.prod(odds[list(combo)]))
        multi = [c for c in combo if groups[sites[c][0]].n_outcomes > 1]
        for picks in itertools.product(*[range(groups[sites[c][0]].n_outcomes) for c in multi]):
            w = base
            outcome_of = dict(zip(multi, picks))
            for c, o in outcome_of.items():
                w *= groups[sites[c][0]].outcomes[o]
            if w == 0:
                continue
            patterns.append(tuple((sites[c][0], sites[c][1], outcome_of.get(c, 0)) for c in combo))
            weights.append(w)
    weights = np.array(weights)
    return patterns, weights / weights.sum()


class StratifiedEstimator:
    """Stratified (by fault count) bounds on the failure probability over the given inputs.

    Parameters
    ----------
    plan, backend, cache, y
        The lowered target and fault model, the backend, its clean cache of the inputs, and
        the labels (or None).
    n_samples : int
        Conditional fault draws per input in each sampled stratum (first round).
    work_budget : int
        Most (pattern, input) rows evaluated exactly per stratum; larger strata are sampled.
        A row of a network with more than :data:`ROW_MACS` multiply-adds per forward pass
        counts as that many times more rows (a 3 x 32 x 32 VGG-style row as about 90): the
        budget is work, the same for every network, and its choice depends on nothing but
        the network (never on timings), so results stay reproducible.
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
    per_input : bool
        Also estimate each input's failure probability (:attr:`input_values`, an
        :class:`InputValues`, after :meth:`run`). They are i.i.d. over an i.i.d. sample of
        inputs when the strata do not depend on the inputs' results: with a ``tail_target``
        and without ``rel_halfwidth`` (which stops on all inputs' results), as certify runs it.
    """

    def __init__(self, plan, backend, cache, y, *, metric, eps, seed=0, confidence=0.95,
                 n_samples=200, work_budget=4_000_000, tail_target=None, tail_fraction=0.01,
                 k_cap=None, rel_halfwidth=None, max_seconds=600.0, alpha_split=1.0,
                 per_input=False):
        self.tasks = _Tasks(plan, backend, cache, y, metric, float(eps), int(seed),
                            per_input=bool(per_input))
        #: Each input's estimate (an :class:`InputValues`) after :meth:`run` with ``per_input``.
        self.input_values = None
        self.confidence = float(confidence)
        self.n_samples = int(n_samples)
        self.work_budget = work_budget
        self.tail_target = tail_target
        self.tail_fraction = tail_fraction
        self.k_cap = k_cap
        self.rel_halfwidth = rel_halfwidth
        self.max_seconds = max_seconds
        self.alpha_split = alpha_split

    def _skip_masks(self) -> None:
        """Single faults that provably cannot fail (their bound is below the threshold)."""
        tasks = self.tasks
        plan, cache = tasks.plan, tasks.cache
        if tasks.metric == "loss" or cache.Y is None:
            return  # the loss has no threshold on the output; Lava keeps no activations
        if tasks.metric == "flip":
            threshold = flip_margin(cache.output)  # ||D||_inf >= margin/2 is needed to flip
        else:
            threshold = np.full(cache.n_inputs, tasks.eps)  # ||D||_inf <= ||D||_2 < eps
        fault_of = {f.kind: f for f in plan.fault_types}
        for gi, group in enumerate(plan.groups):
            bound = fault_of[group.kind].single_fault_bound(plan, group, cache.Y)
            if bound is not None:
                tasks.skip[gi] = bound < threshold[:, None]

    def _input_values(self, counts, singles, exact_strata, sampled, tail) -> InputValues:
        """Each input's ``sum_s P(s) P(fail | s, x_i)`` over the strata, from its own rows:
        exact parts exactly, sampled ones as the input's failure fraction over its draws."""
        tasks = self.tasks
        m, groups = tasks.m, tasks.groups
        values = np.zeros(m)
        for st, gi in singles:
            group = groups[gi]
            for o, w in enumerate(group.outcomes):
                if w != 0:
                    values += (st.probability * w / group.n) * counts.by_input[("single", gi, o)]
        for st, _ in exact_strata:
            values += st.probability * counts.by_input[("exact", st.k)]
        for s, (st, _) in enumerate(sampled):
            draws = counts.rows[("sampled", s)] // m  # every input has as many
            values += (st.probability / draws) * counts.by_input[("sampled", s)]
        lower = np.clip(values, 0.0, 1.0)
        return InputValues(lower=lower, upper=np.clip(values + tail, 0.0, 1.0))

    def run(self, runner, progress=None) -> StratifiedResult:
        started = time.perf_counter()
        tasks = self.tasks
        plan, groups, m = tasks.plan, tasks.groups, tasks.m
        n_sites = sum(g.n for g in groups)
        k_cap = self.k_cap
        if k_cap is None:  # far enough into the tail of K for any target
            mean_k = sum(g.n * g.rate for g in groups)
            k_cap = int(math.ceil(mean_k + 12 * math.sqrt(mean_k) + 12))
        k_cap = min(k_cap, n_sites)
        # P(K = k) and P(K > k) once, in logs (finite at any density), and the pattern counts'
        # logs: each stratum k below costs O(1) until one is small enough to enumerate.
        pmf, tails = count_tails(groups, max(k_cap, 1))
        log_np = log_n_patterns(groups, max(k_cap, 1))
        cost = row_cost(plan.network)
        log_limit = math.log(self.work_budget / (m * cost))
        strata: list[Stratum] = []
        sampled: list[tuple[Stratum, dict]] = []
        counts = StrataCounts.empty()

        def run_tasks(task_list):
            if not task_list:
                return counts
            return counts.merge(runner.run(tasks, blocks=task_list, progress=progress))

        # k = 1, group by group.
        singles = []
        if n_sites and pmf.size > 1 and pmf[1] > 0:
            self._skip_masks()
            comps, weights = composition_weights(groups, 1)
            for comp, w in zip(comps, weights):
                gi = int(np.flatnonzero(comp)[0])
                group = groups[gi]
                prob = float(pmf[1] * w)
                n_pat = group.n * group.n_outcomes
                label = f"{group.kind} {group.key[1]}"
                if n_pat * m * cost <= self.work_budget:
                    st = Stratum(1, label, prob, "exact", 0.0, 0.0, 0.0, rows=n_pat * m,
                                 patterns=n_pat)
                    singles.append((st, gi))
                else:
                    st = Stratum(1, label, prob, "sampled", 0, 0, 1, patterns=n_pat)
                    sampled.append((st, {"fixed": comp}))
                strata.append(st)
        task_list = [("single", gi, o, start) for _, gi in singles
                     for o, w in enumerate(groups[gi].outcomes) if w != 0
                     for start in range(0, m, tasks.inputs_per_task(groups[gi].n))]
        counts = run_tasks(task_list)
        for st, gi in singles:
            group = groups[gi]
            total = 0.0
            for o, w in enumerate(group.outcomes):
                if w != 0:
                    total += w * counts.fails[("single", gi, o)] / (group.n * m)
            st.fail_fraction = st.lower = st.upper = total
        # k >= 2 until the tail is small next to the target.
        exact_part = sum(s.probability * s.fail_fraction for s in strata if s.method == "exact")
        target_tail = self.tail_fraction * (self.tail_target if self.tail_target is not None
                                            else exact_part)
        k = 1
        pending, exact_strata = [], []
        tail = float(tails[1]) if n_sites else 0.0
        while k < k_cap and tail > max(target_tail, 1e-15):
            k += 1
            prob = float(pmf[k])
            # (a stratum far over the budget is not counted exactly: its count is only compared)
            n_pat = (n_patterns(groups, k) if log_np[k] <= log_limit + 1.0
                     else (math.exp(log_np[k]) if log_np[k] < 700.0 else math.inf))
            if n_pat * m * cost <= self.work_budget:
                patterns, weights = _enumerate_patterns(groups, k)
                positions, outcomes = _positions_for_patterns(groups, patterns)
                tasks.exact[k] = (records_from_positions(plan, positions, len(patterns),
                                                         outcomes), len(patterns))
                if tasks.per_input:
                    tasks.exact_weights[k] = weights
                st = Stratum(k, f"K={k}", prob, "exact", 0.0, 0.0, 0.0, rows=int(n_pat * m),
                             patterns=n_pat)
                exact_strata.append((st, weights))
                strata.append(st)
            else:
                pending.append((k, prob, n_pat))
            tail = float(tails[k])
        k_max = k
        counts = run_tasks([("exact", st.k, start) for st, _ in exact_strata
                            for start in range(0, m, tasks.inputs_per_task(tasks.exact[st.k][1]))])
        for st, weights in exact_strata:
            frac = float(np.dot(weights, counts.fails[("exact", st.k)] / m))
            st.fail_fraction = st.lower = st.upper = frac
        if pending:
            # The strata too large to enumerate are sampled together, conditional on K being one
            # of them (K drawn with its conditional probability, then the groups' counts, then
            # the sites): one interval instead of one per stratum.
            pending = [item for item in pending if item[1] > 0]  # (an underflowed stratum: 0)
        if pending:
            total = sum(prob for _, prob, _ in pending)
            ks = [k_s for k_s, _, _ in pending]
            label = f"K={ks[0]}" if len(ks) == 1 else f"K={ks[0]}..{ks[-1]}"
            st = Stratum(ks[0], label, total, "sampled", 0, 0, 1,
                         patterns=sum(n for _, _, n in pending))
            sampled.append((st, {"ks": np.array(ks),
                                 "k_weights": np.array([prob for _, prob, _ in pending]) / total}))
            strata.append(st)

        tasks.sampled = [spec for _, spec in sampled]
        alpha_side = (1.0 - self.confidence) / 2.0 * self.alpha_split
        n_sampled = max(1, len(sampled))
        # Aiming at a precision: start small and double (the first round rarely needs much).
        draws_per_input = self.n_samples if self.rel_halfwidth is None else max(1, 4096 // m)
        round_ = 0
        while True:
            tasks.round_draws[round_] = draws_per_input
            n_chunks = math.ceil(draws_per_input / tasks.rounds_per_chunk())
            counts = run_tasks([("sampled", s, round_, c) for s in range(len(sampled))
                                for c in range(n_chunks)])
            for s, (st, _) in enumerate(sampled):
                fails, rows = counts.fails[("sampled", s)], counts.rows[("sampled", s)]
                st.rows = rows
                st.fail_fraction = fails / rows
                st.lower = cp_lower(fails, rows, alpha_side / n_sampled)
                st.upper = cp_upper(fails, rows, alpha_side / n_sampled)
            estimate = sum(s.probability * s.fail_fraction for s in strata)
            lower = sum(s.probability * s.lower for s in strata)
            upper = min(1.0, sum(s.probability * s.upper for s in strata) + tail)
            if (self.rel_halfwidth is None or not sampled
                    or (upper - lower) / 2 <= self.rel_halfwidth * estimate
                    or time.perf_counter() - started > self.max_seconds):
                break
            draws_per_input *= 2
            round_ += 1
        if tasks.per_input:
            self.input_values = self._input_values(counts, singles, exact_strata, sampled, tail)
        clean_accuracy = None
        if is_classification(tasks.y):
            clean_accuracy = float(np.mean(tasks.cache.output.argmax(axis=1) == tasks.y))
        return StratifiedResult(
            estimate=estimate, lower=lower, upper=upper, tail=tail, k_max=k_max, strata=strata,
            confidence=self.confidence, n_inputs=m, rows=counts.evaluated,
            elapsed_s=time.perf_counter() - started, clean_accuracy=clean_accuracy,
        )
