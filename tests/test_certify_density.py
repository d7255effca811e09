"""certify at any fault density: log-space count tails, the choice between stratifying and
plain sampling (``Certificate.method``), and the sampled path's soundness."""

import importlib
import math
import warnings

import numpy as np
import pytest
from scipy import stats

import neurosim as ns
from neurosim.results import Certificate
from neurosim.sampler import FaultGroup

C = importlib.import_module("neurosim.certify")
S = importlib.import_module("neurosim.estimators.stratified")

NET = ns.Network.random([8, 16, 4], seed=0)
X = np.random.default_rng(1).normal(size=(40, 8))
DENSE = ns.SynapseStuck(0.05, 0.1)  # about 29 faulty cells per draw of NET: drawn as fields


def _quick(**kw):
    return dict(theory=False, advice=False, **kw)


# --- (a) dense fault models: a verdict, sampled, no warning -------------------------------------

def test_dense_certify_samples_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = ns.certify(NET, DENSE, X, delta=0.2, seed=3, n_samples=50, **_quick())
    assert cert.method == "sampled"
    assert "faults per draw" in cert.method_reason
    assert isinstance(cert.certified, bool)
    assert 0.0 <= cert.delta_lower <= cert.delta_estimate <= cert.delta_upper <= 1.0
    assert cert.delta_upper > 0.2  # ~30 % of the draws flip: the faults are really simulated
    assert "plain Monte Carlo" in cert.summary() and "method: sampled" in cert.summary()


@pytest.mark.parametrize("faults", [DENSE, ns.NeuronCrash(0.6)])
def test_dense_stratified_estimate_warns_nothing_and_counts_every_fault(faults):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ns.stratified_estimate(NET, faults, X, seed=1, n_samples=20)
        mc = ns.simulate(NET, faults, X, n_samples=400, seed=2, mode="transient")
    assert 0.0 <= res.lower <= res.estimate <= res.upper <= 1.0
    assert all(np.isfinite([res.lower, res.upper, res.tail]))
    # The stratified estimate sees the same faults as plain sampling (fields included).
    assert res.lower - 0.03 <= mc.failure_rate <= res.upper + 0.03


def test_forced_stratified_on_a_dense_model_matches_sampled():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strat = ns.certify(NET, DENSE, X, delta=0.2, seed=3, method="stratified", **_quick())
    assert strat.method == "stratified" and "asked for" in strat.method_reason
    mc = ns.simulate(NET, DENSE, X, n_samples=1000, seed=5, mode="transient")
    assert strat.empirical.lower <= mc.failure_rate <= strat.empirical.upper


def test_permanent_profile_faults_are_sampled_per_pair():
    """A permanent process has the same P_{x,U}: the sampled path draws it per pair (a plan in
    permanent mode would otherwise apply no transient fault at all)."""
    faults = ns.SynapseStuck(0.05, 0.1, mode="permanent")
    cert = ns.certify(NET, faults, X, delta=0.2, seed=3, n_samples=100, **_quick())
    mc = ns.simulate(NET, DENSE, X, n_samples=1000, seed=5, mode="transient")
    assert cert.method == "sampled"
    assert cert.empirical.lower <= mc.failure_rate <= cert.empirical.upper


def test_choose_method_by_exact_mass():
    from neurosim.plan import build_plan

    sparse = build_plan(NET, ns.SynapseStuck(0.001, 0.002))
    assert C.choose_method(sparse, 40, 4_000_000)[0] == "stratified"
    # Records only (no fields), ~9.6 faults per draw: the exact strata cover P(K <= 2) ~ 0.003.
    dense = build_plan(NET, ns.SynapseStuck(0.0167, 0.0333), fields=False)
    assert not dense.fields
    method, reason = C.choose_method(dense, 40, 4_000_000)
    assert method == "sampled" and "cover" in reason
    assert S.exact_mass(dense.groups, 40, 4_000_000) < 1.0 - C.MAX_SAMPLED_MASS


# --- (b) the sampled certificate brackets a long Monte Carlo run ------------------------------------

def test_sampled_bounds_bracket_a_long_monte_carlo_run_over_seeds():
    """60 seeds, each a sampled certificate from 40 inputs x 20 draws. The reference is a long
    plain Monte Carlo run over the same inputs (40 x 20000 draws: standard error ~5e-4, against
    bounds ~0.05 wide). Each side of the inputs' interval misses with probability at most
    alpha_side / 2 = 0.0125 (confidence 0.95), so a miss of either side has probability <= 0.025
    and the misses over 60 seeds are at most Binomial(60, 0.025): P(misses >= 6) = 0.0039.
    ``delta_lower <= lower`` and ``upper <= delta_upper``, so the population interval misses
    only where the inputs' interval does."""
    faults = ns.SynapseStuck(0.03, 0.06)
    ref = ns.simulate(NET, faults, X, n_samples=20000, seed=12345, mode="transient").failure_rate
    assert 0.05 < ref < 0.5
    misses = 0
    for seed in range(60):
        cert = ns.certify(NET, faults, X, delta=0.5, seed=seed, n_samples=20, **_quick())
        assert cert.method == "sampled"
        emp = cert.empirical
        assert cert.delta_lower <= emp.lower <= emp.upper <= cert.delta_upper
        misses += not (emp.lower <= ref <= emp.upper)
    assert misses <= 5, misses


# --- (c) sparse fault models: stratified, numbers unchanged ------------------------------------------

# delta_upper of these cases computed before the log-space change and the method choice
# (the two-step KL population bound, the only one then: population="kl").
PINNED = {
    "crash": (ns.NeuronCrash(0.01), 0.14997000403062674, 0.015440664241186943),
    "stuck": (ns.SynapseStuck(0.001, 0.002), 0.16667062170627006, 0.023138825671004257),
    "mixed": ([ns.NeuronCrash(0.005), ns.SynapseStuck(0.0005, 0.001)], 0.15845219551127115,
              0.019249791293702734),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_sparse_certificate_is_stratified_and_unchanged(name):
    faults, delta_upper, inputs_upper = PINNED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = ns.certify(NET, faults, X, delta=0.2, seed=3, population="kl", **_quick())
    assert cert.method == "stratified" and cert.population == "kl"
    assert cert.delta_upper == pytest.approx(delta_upper, rel=1e-12)
    assert cert.empirical.upper == pytest.approx(inputs_upper, rel=1e-12)
    # The default (one-step betting) bound on the same run is tighter.
    default = ns.certify(NET, faults, X, delta=0.2, seed=3, **_quick())
    assert default.population == "betting" and default.delta_upper < delta_upper


# --- (d) count distributions at huge expected counts -------------------------------------------------

def test_count_tails_at_huge_expected_counts_are_the_binomial():
    # Two groups of one rate: K ~ Bin(20000, 0.45) (mean 9000, as the RRAM profile's ~9,100).
    groups = [FaultGroup("crash", 1, -1, 12000, 0.45), FaultGroup("crash", 2, -1, 8000, 0.45)]
    k_cap = 9300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pmf, tails = S.count_tails(groups, k_cap)
        logp = S.log_count_distribution(groups, k_cap)
        _, tail = S.count_distribution(groups, k_cap)
        n_pat = S.n_patterns(groups, 9000)
        draws = S.sample_counts_given_k(groups, np.full(4000, 9000), np.random.default_rng(0))
    k = np.arange(k_cap + 1)
    ref_pmf = stats.binom.pmf(k, 20000, 0.45)
    ref_sf = stats.binom.sf(k, 20000, 0.45)
    ok = ref_pmf > 1e-250
    np.testing.assert_allclose(pmf[ok], ref_pmf[ok], rtol=1e-9)
    assert (pmf[~ok] < 1e-240).all()
    ok = ref_sf > 1e-250
    np.testing.assert_allclose(tails[ok], ref_sf[ok], rtol=1e-9)
    assert tail == pytest.approx(stats.binom.sf(k_cap, 20000, 0.45), rel=1e-9)
    ref_log = stats.binom.logpmf(k, 20000, 0.45)
    near = ref_log > ref_log.max() - 600
    assert near.sum() > 2500  # (the log pmf checked over 2,705 counts, far below pmf underflow)
    np.testing.assert_allclose(logp[near], ref_log[near], rtol=1e-10, atol=1e-8)
    assert n_pat == math.inf
    # Given K = 9000 the first group's count is hypergeometric (equal rates).
    assert (draws.sum(axis=1) == 9000).all()
    hyper = stats.hypergeom(20000, 12000, 9000)
    se = hyper.std() / math.sqrt(draws.shape[0])
    assert abs(draws[:, 0].mean() - hyper.mean()) < 5 * se


def test_count_tails_tiny_tail_and_small_cases():
    groups = [FaultGroup("crash", 1, -1, 7, 1e-3), FaultGroup("stuck", 2, -1, 5, 2e-3, (0.5, 0.5))]
    pmf, tails = S.count_tails(groups, 3)
    # Brute force: K is Poisson-binomial over 12 sites.
    rates = [1e-3] * 7 + [2e-3] * 5
    full = np.array([1.0])
    for r in rates:
        full = np.convolve(full, [1 - r, r])
    np.testing.assert_allclose(pmf, full[:4], rtol=1e-12)
    for k in range(4):
        assert tails[k] == pytest.approx(full[k + 1:].sum(), rel=1e-9)


def test_exact_mass_is_p0_plus_the_enumerable_strata():
    groups = [FaultGroup("crash", 1, -1, 20, 0.05)]
    pmf = stats.binom.pmf(np.arange(21), 20, 0.05)
    # 20 patterns x 10 inputs fit 1000 rows; C(20, 2) = 190 x 10 too; C(20, 3) = 1140 x 10 not.
    assert S.exact_mass(groups, 10, 2000) == pytest.approx(pmf[:3].sum(), rel=1e-12)
    assert S.exact_mass(groups, 10, 100) == pytest.approx(pmf[0], rel=1e-12)


# --- (e) the certificate's new fields in files ---------------------------------------------------------

def test_certificate_method_round_trips_and_old_files_load(tmp_path):
    cert = ns.certify(NET, DENSE, X, delta=0.2, seed=3, n_samples=20, **_quick())
    path = tmp_path / "cert.json"
    cert.save(path)
    back = Certificate.load(path)
    assert back.method == "sampled" and back.method_reason == cert.method_reason
    assert back.delta_upper == cert.delta_upper and back.extra == {}
    old = cert.to_dict()
    del old["method"], old["method_reason"]
    legacy = Certificate.from_dict(old)
    assert legacy.method == "stratified" and legacy.method_reason == ""
    assert legacy.extra == {} and legacy.delta_upper == cert.delta_upper
    assert "method:" not in legacy.summary()


def test_progress_bar_on_the_sampled_path(capsys):
    cert = ns.certify(NET, DENSE, X, delta=0.2, seed=3, n_samples=20, progress=True, **_quick())
    quiet = ns.certify(NET, DENSE, X, delta=0.2, seed=3, n_samples=20, **_quick())
    assert cert.delta_upper == quiet.delta_upper
    err = capsys.readouterr().err
    assert "certify (sampling)" in err


def test_bad_method_names_the_parameter():
    with pytest.raises(ns.errors.ValidationError, match="method"):
        ns.certify(NET, DENSE, X, delta=0.2, method="exact", **_quick())
