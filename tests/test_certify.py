"""The sound certificate and the stratified estimator (neurosim.certify).

Soundness is checked against exact failure probabilities computed by enumerating every fault
pattern with plain NumPy (``exact_failure``), independent of neurosim's engine and kernels.
"""

import importlib
import itertools
import math

import numba
import numpy as np
import pytest

import neurosim as ns
from neurosim.advice import replicas_needed
from neurosim.sampler import FaultGroup
from neurosim.errors import ValidationError
from neurosim.hardware import profile_from_dict

# ``neurosim.certify`` is the function (re-exported by the package); this is the module.
C = importlib.import_module("neurosim.certify")


def _patterns(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)


# --- the exact K distribution -----------------------------------------------------------------------

def brute_force_counts(groups):
    """P(K = k) for k = 0..n and P(composition) by enumerating every site pattern."""
    rates = np.concatenate([np.full(g.n, g.rate) for g in groups])
    owner = np.concatenate([np.full(g.n, gi) for gi, g in enumerate(groups)])
    pats = _patterns(rates.size)
    prob = np.prod(np.where(pats == 1, rates, 1 - rates), axis=1)
    k = pats.sum(axis=1).astype(int)
    pmf = np.bincount(k, weights=prob, minlength=rates.size + 1)
    comps = {}
    for row, pr in zip(pats, prob):
        comp = tuple(int(row[owner == gi].sum()) for gi in range(len(groups)))
        comps[comp] = comps.get(comp, 0.0) + pr
    return pmf, comps


GROUP_SETS = [
    [FaultGroup("crash", 1, -1, 4, 0.1), FaultGroup("crash", 2, -1, 3, 0.3), FaultGroup("crash", 3, -1, 2, 0.05)],
    [FaultGroup("crash", 1, -1, 6, 0.02), FaultGroup("stuck", 1, -1, 5, 0.2, (0.5, 0.5))],
    [FaultGroup("core", -1, 0, 10, 0.5)],
]


@pytest.mark.parametrize("groups", GROUP_SETS)
def test_count_distribution_is_the_poisson_binomial(groups):
    pmf_bf, _ = brute_force_counts(groups)
    for k_cap in (0, 1, 3, 5):
        pmf, tail = C.count_distribution(groups, k_cap)
        np.testing.assert_allclose(pmf, pmf_bf[:k_cap + 1], rtol=1e-12, atol=1e-16)
        assert tail == pytest.approx(pmf_bf[k_cap + 1:].sum(), rel=1e-9, abs=1e-15)


def test_count_distribution_tiny_tail_is_accurate():
    # P(K > k_cap) ~ 1e-10: computed directly, not as 1 - sum (which would lose it).
    groups = [FaultGroup("crash", 1, -1, 7, 1e-3), FaultGroup("crash", 2, -1, 5, 2e-3)]
    pmf_bf, _ = brute_force_counts(groups)
    pmf, tail = C.count_distribution(groups, 3)
    exact_tail = pmf_bf[4:].sum()
    assert 1e-12 < exact_tail < 1e-8
    assert tail == pytest.approx(exact_tail, rel=1e-6)
    np.testing.assert_allclose(pmf, pmf_bf[:4], rtol=1e-12)


@pytest.mark.parametrize("groups", GROUP_SETS[:2])
def test_composition_weights_match_brute_force(groups):
    _, comps_bf = brute_force_counts(groups)
    for k in (1, 2, 4):
        comps, w = C.composition_weights(groups, k)
        assert w.sum() == pytest.approx(1.0, abs=1e-14)
        expected = {c: p for c, p in comps_bf.items() if sum(c) == k}
        total = sum(expected.values())
        assert {tuple(int(v) for v in c) for c in comps} == set(expected)
        for c, wi in zip(comps, w):
            assert wi == pytest.approx(expected[tuple(int(v) for v in c)] / total, rel=1e-10)


def test_n_patterns_counts_stuck_sites_twice():
    groups = [FaultGroup("crash", 1, -1, 4, 0.1), FaultGroup("stuck", 1, -1, 3, 0.1, (0.5, 0.5))]
    # k = 2: C(4,2) + 4*3*2 + C(3,2)*4.
    assert C.n_patterns(groups, 2) == pytest.approx(6 + 24 + 12, rel=1e-12)


def test_one_sided_bounds():
    # Clopper-Pearson: the bound's binomial tail equals alpha.
    from scipy import stats

    u = C.cp_upper(3, 50, 0.05)
    assert stats.binom.cdf(3, 50, u) == pytest.approx(0.05, rel=1e-8)
    lo = C.cp_lower(3, 50, 0.05)
    assert stats.binom.sf(2, 50, lo) == pytest.approx(0.05, rel=1e-8)
    assert C.cp_upper(50, 50, 0.05) == 1.0 and C.cp_lower(0, 50, 0.05) == 0.0
    # KL bounds: m d_KL(mean || bound) = log(1 / alpha), bound on the right side of the mean.
    for mean in (0.0, 0.1, 0.5):
        up = C.kl_upper(mean, 40, 0.05)
        assert up > mean
        assert 40 * C.kl_bernoulli(mean, up) == pytest.approx(math.log(20), rel=1e-9)
    for mean in (0.1, 0.5, 1.0):
        lo = C.kl_lower(mean, 40, 0.05)
        assert lo < mean
        assert 40 * C.kl_bernoulli(mean, lo) == pytest.approx(math.log(20), rel=1e-9)
    assert C.kl_upper(0.0, 40, 0.05) == pytest.approx(1 - 0.05 ** (1 / 40), rel=1e-9)
    assert C.kl_lower(0.0, 40, 0.05) == 0.0 and C.kl_upper(1.0, 40, 0.05) == 1.0


# --- soundness against exact enumeration --------------------------------------------------------------

def exact_failure(net, X, masks_prob, masks, metric, eps):
    """Per-input failure probability: every crash pattern (rows of ``masks``, 1 = the neuron of
    layers 1..L emits 0) run by a plain float64 forward pass, weighted by ``masks_prob``."""
    y = np.asarray(X, dtype=np.float64)[None]
    off = 0
    for lay in net.layers:
        y = np.asarray(lay.activation(y @ np.asarray(lay.W, np.float64).T + np.asarray(lay.b, np.float64)),
                       dtype=np.float64)
        n = lay.W.shape[0]
        y = y * (1.0 - masks[:, None, off:off + n])
        off += n
    assert np.all(masks[0] == 0)  # pattern 0 is fault-free: the clean output
    err = y - y[0]
    if metric == "linf":
        value = np.abs(err).max(axis=-1)
    elif metric == "l2":
        value = np.sqrt((err ** 2).sum(axis=-1))
    else:  # flip
        value = (y.argmax(axis=-1) != y[0].argmax(axis=-1)).astype(np.float64)
    return masks_prob @ (value >= eps)


def crash_patterns(net, p):
    n = sum(net.widths[1:])
    masks = _patterns(n)
    k = masks.sum(axis=1)
    return p ** k * (1 - p) ** (n - k), masks


def core_patterns(mapping, p_core):
    """Core-failure patterns of a one-chip mapping as neuron crash masks (spare rule by hand)."""
    prof = mapping.profile
    cores = sorted(mapping.cores, key=lambda c: c.core_id)
    assert len({c.chip for c in cores}) == 1
    n_slots = len(cores) + prof.spare_cores_per_chip
    offsets = np.cumsum([0] + mapping.network.widths[1:])
    slots = _patterns(n_slots)
    k = slots.sum(axis=1)
    prob = p_core ** k * (1 - p_core) ** (n_slots - k)
    masks = np.zeros((slots.shape[0], offsets[-1]))
    for r, row in enumerate(slots):
        working_spares = prof.spare_cores_per_chip - int(row[len(cores):].sum())
        failed = [c for c, f in zip(cores, row[:len(cores)]) if f]
        for c in failed[max(working_spares, 0):]:  # lowest id replaced first
            masks[r, offsets[c.layer - 1] + c.out_start:offsets[c.layer - 1] + c.out_stop] = 1.0
    return prob, masks


def tiny_core_mapping():
    profile = profile_from_dict({
        "name": "tiny", "description": "test chip", "architecture": "cores", "cores_per_chip": 9,
        "spare_cores_per_chip": 2, "neurons_per_core": 2, "max_fan_in": 64,
        "synapses_per_core": 1024, "weight_bits": 8,
        "fault_rates": {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0,
                        "synapse_stuck_at_max": 0.0, "weight_bit_flip": 0.0, "core_failure": 0.1},
    })
    net = ns.Network.random([4, 6, 5, 2], "relu", seed=2)
    return ns.map_network(net, profile)


def one_numba_thread(iterable):
    """Iterate with the kernels on one thread: thread start-up dominates on these tiny networks
    (the results do not depend on the thread count)."""
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield from iterable
    finally:
        numba.set_num_threads(saved)


# (name, widths, activation, net seed, p, metric, eps, work_budget, n_samples)
SOUNDNESS_CASES = [
    ("crash-linf-exact-strata", [4, 6, 5, 2], "relu", 1, 0.10, "linf", 0.6, 4_000_000, 100),
    ("crash-l2-all-sampled", [4, 6, 6, 2], "tanh", 1, 0.15, "l2", 0.6, 60, 60),
    ("crash-flip-sampled-k2", [3, 5, 5, 3], "relu", 0, 0.08, "flip", 0.5, 300, 60),
    ("core-linf", None, None, None, 0.20, "linf", 0.3, 100, 80),
]


@pytest.mark.parametrize("case", SOUNDNESS_CASES, ids=[c[0] for c in SOUNDNESS_CASES])
def test_certificate_bounds_cover_the_exact_failure_probability(case):
    name, widths, act, net_seed, p, metric, eps, budget, n_samples = case
    pop_rng = np.random.default_rng(1234)
    if widths is None:
        target = tiny_core_mapping()
        net = target.quantized_network()  # what the chip computes
        faults = ns.CoreFailure(p)
        prob, masks = core_patterns(target, p)
        X_pop = pop_rng.normal(size=(40, net.n_inputs))
    else:
        net = target = ns.Network.random(widths, act, seed=net_seed)
        faults = ns.NeuronCrash(p)
        prob, masks = crash_patterns(net, p)
        X_pop = pop_rng.normal(size=(40, widths[0]))
    per_input = exact_failure(net, X_pop, prob, masks, metric, eps)
    population = per_input.mean()
    assert 0.05 < population < 0.4  # several strata matter
    upper_ok = lower_ok = inputs_upper_ok = inputs_lower_ok = 0
    sampled_strata = 0
    for s in one_numba_thread(range(100)):
        idx = np.random.default_rng([7, s]).integers(0, 40, size=15 + s % 11)
        cert = C.certify(target, faults, X_pop[idx], metric=metric, eps=eps, delta=0.5,
                         confidence=0.9, seed=s, n_samples=n_samples, work_budget=budget,
                         theory=False, advice=False)
        over_inputs = per_input[idx].mean()
        upper_ok += cert.delta_upper >= population
        lower_ok += cert.delta_lower <= population
        inputs_upper_ok += cert.empirical.upper >= over_inputs
        inputs_lower_ok += cert.empirical.lower <= over_inputs
        sampled_strata += any(st.method == "sampled" for st in cert.empirical.strata)
        assert cert.delta_lower <= cert.delta_estimate <= cert.delta_upper or cert.delta_upper == 1.0
        assert cert.certified == (cert.delta_upper <= 0.5)
    print(f"{name}: population {population:.4f}; delta_upper >= exact {upper_ok}/100, "
          f"delta_lower <= exact {lower_ok}/100, over the inputs upper {inputs_upper_ok}/100, "
          f"lower {inputs_lower_ok}/100; runs with sampled strata {sampled_strata}/100")
    # confidence 0.9: each side fails with probability at most 0.1.
    assert upper_ok >= 90 and lower_ok >= 90
    assert inputs_upper_ok >= 90 and inputs_lower_ok >= 90
    if budget < 1000:
        assert sampled_strata == 100


def test_exact_strata_equal_the_enumeration_on_the_given_inputs():
    # With every stratum enumerated and a negligible tail, the estimate is the exact average.
    net = ns.Network.random([4, 6, 5, 2], "relu", seed=1)
    X = np.random.default_rng(3).normal(size=(12, 4))
    prob, masks = crash_patterns(net, 0.1)
    exact = exact_failure(net, X, prob, masks, "linf", 0.6).mean()
    res = C.stratified_estimate(net, ns.NeuronCrash(0.1), X, metric="linf", eps=0.6, k_cap=13,
                                tail_target=1e-9)
    assert all(st.method == "exact" for st in res.strata)
    assert res.estimate == pytest.approx(exact, rel=1e-9, abs=res.tail)
    assert res.lower <= exact <= res.upper
    assert res.upper - res.lower <= res.tail + 1e-12


# --- agreement with plain Monte Carlo on the bundled model --------------------------------------------

def test_stratified_estimate_agrees_with_monte_carlo_on_digits():
    net = ns.load_digits_model()
    X, y = ns.load_digits_test()
    X, y = X[:50], y[:50]
    crash = ns.NeuronCrash(1e-3)
    strat = ns.stratified_estimate(net, crash, X, y, metric="flip", seed=0, confidence=0.95)
    mc = ns.simulate(net, crash, X, y, metric="flip", n_samples=16_000, seed=11)
    assert mc.n_failures > 2000  # relative MC standard error below 2.5 %
    # Two independent estimates of the same probability: within both intervals' half-widths.
    tolerance = (mc.ci_high - mc.ci_low) / 2 + (strat.upper - strat.lower) / 2
    assert abs(strat.estimate - mc.failure_rate) <= tolerance
    assert strat.lower <= strat.estimate <= strat.upper
    assert (strat.upper - strat.lower) / strat.estimate < 0.2
    # The MC estimate (itself noisy: standard error ~0.6 of the stratified one's) lies inside
    # the stratified 95 % interval for about 94 % of the seeds; Bin(20, 0.94) < 15 has
    # probability 3e-4. The two 95 % intervals of one probability overlap for every seed.
    inside = overlap = 0
    for seed in range(20):
        s = ns.stratified_estimate(net, crash, X, y, metric="flip", seed=seed, confidence=0.95)
        inside += s.lower <= mc.failure_rate <= s.upper
        overlap += s.lower <= mc.ci_high and mc.ci_low <= s.upper
    print(f"MC estimate inside the stratified interval for {inside}/20 seeds, overlap {overlap}/20")
    assert inside >= 15 and overlap == 20


# --- the certificate object ----------------------------------------------------------------------------

def test_verdict_and_certificate_dict():
    net = ns.Network.random([4, 6, 5, 2], "relu", seed=1)
    X = np.random.default_rng(0).normal(size=(30, 4))
    kw = dict(metric="linf", eps=0.6, confidence=0.9, seed=3)
    loose = C.certify(net, ns.NeuronCrash(0.01), X, delta=0.6, **kw)
    tight = C.certify(net, ns.NeuronCrash(0.01), X, delta=0.01, **kw)
    for cert in (loose, tight):
        assert cert.certified == (cert.delta_upper <= cert.delta)
    assert loose.certified and not tight.certified
    assert "replicas" in tight.advice
    d = loose.to_dict()
    for key in ("certified", "delta", "eps", "confidence", "delta_upper", "delta_lower",
                "delta_estimate", "delta0", "taylor", "fault_model", "seed", "model_sha256",
                "data_sha256"):
        assert key in d, key
    assert set(d["taylor"]) >= {"mean", "var", "delta_chebyshev"}
    assert d["certified"] is True and d["delta"] == 0.6 and d["eps"] == 0.6
    assert d["confidence"] == 0.9 and d["seed"] == 3 and d["fault_model"] == "crash:p=0.01"
    assert d["delta_lower"] <= d["delta_estimate"] <= d["delta_upper"]
    assert len(d["model_sha256"]) == 64 and len(d["data_sha256"]) == 64
    assert d["data_sha256"] != C.certify(net, ns.NeuronCrash(0.01), X[:-1], delta=0.6,
                                         **kw).to_dict()["data_sha256"]


@pytest.mark.parametrize("kwargs,name", [
    ({"delta": 0.0, "eps": 0.5}, "delta"),
    ({"delta": 1.0, "eps": 0.5}, "delta"),
    ({"delta": -0.1, "eps": 0.5}, "delta"),
    ({"delta": "often", "eps": 0.5}, "delta"),
    ({"eps": 0.5}, "delta"),
    ({"delta": 0.1, "eps": -0.5}, "eps"),
])
def test_bad_certify_arguments_name_the_parameter(kwargs, name):
    net = ns.Network.random([3, 4, 2], "relu", seed=0)
    X = np.zeros((5, 3))
    with pytest.raises(ValidationError, match=f"'{name}'"):
        C.certify(net, ns.NeuronCrash(0.01), X, metric="linf", **kwargs)


def test_replicas_needed_is_the_smallest_odd_count_from_the_exact_binomial_tail():
    """Against scipy's binomial by a plain linear search over odd R, on a grid of (delta, p)."""
    from scipy.stats import binom

    from neurosim.advice import paper_replicas, vote_failure

    for p in (0.0, 1e-3, 0.05, 0.2, 1 / 3, 0.45):
        for delta in (0.3, 0.1, 1e-2, 1e-3, 1e-5, 1e-9):
            R = replicas_needed(delta, p)
            if p <= delta:
                assert R == 1
                continue
            assert R % 2 == 1
            assert binom.sf((R + 1) // 2 - 1, R, p) <= delta
            smaller = [r for r in range(1, R, 2) if binom.sf((r + 1) // 2 - 1, r, p) <= delta]
            assert smaller == [], (delta, p, R, smaller)
            assert vote_failure(R, p) == pytest.approx(binom.sf((R + 1) // 2 - 1, R, p))
    # The numbers: the paper's formula gives 21 for 1e-5, whose vote fails 5.6 % of
    # the time at p = 1/3; the exact tail needs 155.
    assert paper_replicas(1e-5) == 21
    assert vote_failure(21, 1 / 3) == pytest.approx(0.0557, abs=5e-4)
    assert replicas_needed(1e-5) == 155
    assert [replicas_needed(d) for d in (1e-3, 1e-2, 0.1)] == [81, 47, 15]


@pytest.mark.parametrize("kwargs,name", [({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"),
                                         ({"delta": 0.1, "p": 0.5}, "p"),
                                         ({"delta": 0.1, "p": -0.1}, "p")])
def test_replicas_needed_refuses_bad_arguments(kwargs, name):
    with pytest.raises(ValidationError, match=f"'{name}'"):
        replicas_needed(**kwargs)


def test_inputs_needed_reaches_delta_with_the_population_bound():
    from neurosim.advice import inputs_needed, inputs_needed_betting
    from neurosim.stats import betting_upper

    # population="kl": the Chernoff-Hoeffding step at alpha = (1 - confidence) / 4.
    alpha = 0.0125
    for estimate, delta in ((0.0, 0.05), (0.01, 0.05), (0.03, 0.04), (0.0, 1e-3)):
        m = inputs_needed(estimate, delta, alpha)
        assert C.kl_upper(estimate, m, alpha) <= delta + 1e-12
        assert C.kl_upper(estimate, m - 1, alpha) > delta if m > 1 else True
    assert inputs_needed(0.05, 0.05, alpha) is None and inputs_needed(0.2, 0.05, alpha) is None
    # population="betting" (the default): one step at alpha = (1 - confidence) / 2, on the
    # given per-input values repeated.
    alpha = 0.025
    spread = np.random.default_rng(0).beta(0.2, 10, 40)
    for values, delta in ((np.zeros(20), 0.05), (np.full(20, 4e-4), 0.05), (spread, 0.05),
                          (np.zeros(5), 1e-3), (np.array([0.0, 0.03]), 0.04)):
        m = inputs_needed_betting(values, delta, alpha)
        assert betting_upper(np.resize(values, m), alpha) <= delta + 1e-12
        assert betting_upper(np.resize(values, m - 1), alpha) > delta if m > 1 else True
    assert inputs_needed_betting(np.full(3, 0.05), 0.05, alpha) is None
    assert inputs_needed_betting(np.array([0.0, 0.4]), 0.05, alpha) is None


def test_advice_says_when_too_few_inputs_were_given():
    """A network that never fails on 20 inputs cannot certify delta = 0.05 with them: the
    advice asks for inputs, and proposes no new widths or replicas. The number is exactly
    what the betting bound needs (every further input adds the same value): with that many
    inputs it certifies, with one fewer it does not."""
    from neurosim.stats import betting_upper

    net = ns.Network.random([4, 6, 5, 2], "relu", seed=1)
    X = np.random.default_rng(0).normal(size=(20, 4))
    kw = dict(delta=0.05, metric="linf", eps=10.0, confidence=0.95, seed=0, theory=False)
    cert = C.certify(net, ns.NeuronCrash(1e-4), X, **kw)
    assert not cert.certified and cert.delta_estimate == 0.0 and cert.population == "betting"
    assert set(cert.advice) == {"inputs"}
    text = cert.advice["inputs"]
    assert "limited by the number of inputs" in text and "20 inputs" in text
    need = int(text.split("about ")[1].split(" inputs")[0])
    # Every input's upper value is the same: P(K > k_max), counted as failure (< 1 % of delta).
    tail = cert.input_values.upper
    assert np.all(tail == tail[0]) and 0 < tail[0] <= 0.01 * 0.05
    smallest = next(n for n in range(1, 10_000)
                    if betting_upper(np.full(n, tail[0]), 0.025) <= 0.05)
    assert need == smallest
    # With that many inputs (still never failing) it certifies; with one fewer, not.
    X_more = np.random.default_rng(1).normal(size=(need, 4))
    assert C.certify(net, ns.NeuronCrash(1e-4), X_more, **kw).certified
    assert not C.certify(net, ns.NeuronCrash(1e-4), X_more[:-1], **kw).certified
    # The two-step KL bound (population="kl") needs ln(1/alpha) / -ln(1 - delta) at
    # alpha = (1 - confidence) / 4, as before.
    old = C.certify(net, ns.NeuronCrash(1e-4), X, population="kl", **kw)
    need_kl = int(old.advice["inputs"].split("about ")[1].split(" inputs")[0])
    assert need_kl == math.ceil(math.log(1 / 0.0125) / -math.log(1 - 0.05))
    X_kl = np.random.default_rng(1).normal(size=(need_kl, 4))
    assert C.certify(net, ns.NeuronCrash(1e-4), X_kl, population="kl", **kw).certified
    assert need < need_kl  # (81 against 86)


def test_sample_counts_given_k_matches_the_conditional_law():
    """Per-group counts drawn given the total K follow P(c | sum c = K) (chi-square, 3 seeds)."""
    from scipy import stats as st

    from neurosim.certify import composition_weights, sample_counts_given_k
    from neurosim.sampler import FaultGroup

    groups = [FaultGroup("crash", 1, -1, 7, 0.05), FaultGroup("crash", 2, -1, 4, 0.2),
              FaultGroup("bitflip", 1, -1, 30, 0.01)]
    for k in (1, 3):
        comps, weights = composition_weights(groups, k)
        index = {tuple(c): i for i, c in enumerate(comps)}
        for seed in range(3):
            draws = sample_counts_given_k(groups, np.full(20000, k), np.random.default_rng(seed))
            assert (draws.sum(axis=1) == k).all()
            observed = np.bincount([index[tuple(c)] for c in draws], minlength=len(comps))
            expected = weights * draws.shape[0]
            keep = expected > 5
            chi2 = (((observed - expected) ** 2 / expected)[keep]).sum()
            assert chi2 < st.chi2.ppf(0.9999, keep.sum() - 1), (k, seed, chi2)


def test_n_patterns_counts_by_brute_force():
    import itertools

    from neurosim.certify import n_patterns
    from neurosim.sampler import FaultGroup

    groups = [FaultGroup("crash", 1, -1, 5, 0.1), FaultGroup("stuck", 1, -1, 4, 0.1, (0.5, 0.5))]
    sites = [("crash", i) for i in range(5)] + [("stuck", i) for i in range(4)]
    for k in range(0, 5):
        brute = sum(2 ** sum(1 for s in combo if s[0] == "stuck")
                    for combo in itertools.combinations(sites, k))
        assert n_patterns(groups, k) == pytest.approx(brute, rel=1e-12)
