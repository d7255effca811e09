"""certify's population bound: the betting bound (Waudby-Smith & Ramdas 2023) on the mean of
the inputs' own failure estimates, against the old two-step Chernoff-Hoeffding (KL) bound.

Coverage is checked across many seeds against exactly known means (stated synthetic
distributions, and a tiny network whose crash patterns are all enumerated), with the floor an
exact bound at the nominal level reaches with probability 0.999 (``binom.ppf(0.001, n, 1 - a)``).
"""

import importlib
import math

import numpy as np
import pytest
from scipy import stats

import neurosim as ns
from neurosim.errors import ValidationError
from neurosim.estimators.stratified import StratifiedEstimator
from neurosim.results import Certificate
from neurosim.runners import SerialRunner
from neurosim.stats import (BETTING_TRUNCATION, betting_lower, betting_rejects, betting_upper,
                            kl_upper)
from test_certify import crash_patterns, exact_failure  # the enumeration reference

C = importlib.import_module("neurosim.certify")


def floor(n_seeds: int, level: float) -> int:
    """Fewest covering seeds an exact bound at ``level`` gives with probability >= 0.999."""
    return int(stats.binom.ppf(0.001, n_seeds, level))


# --- a plain reference of the bound ------------------------------------------------------------------

def reference_upper(values, alpha, c=BETTING_TRUNCATION):
    """The betting upper bound written as a loop over the values, from the paper's formulas:
    bets ``sqrt(2 ln(1/a) / (n s2_{i-1}))`` with the shrunk mean and variance, truncated at
    ``c / (1 - m)``; capital ``prod (1 + bet (m - x_i))``; the bound is the smallest m whose
    capital reaches 1/a at some i (bisection), never below the mean."""
    n = len(values)

    def reaches(m):
        mu_sum, s2_sum, s2_prev, capital = 0.0, 0.0, 0.25, 1.0
        for i, x in enumerate(values, start=1):
            bet = math.sqrt(2 * math.log(1 / alpha) / (n * s2_prev))
            if m < 1:
                bet = min(bet, c / (1 - m))
            capital *= 1 + bet * (m - x)
            if capital >= 1 / alpha:
                return True
            mu_sum += x
            mu = (0.5 + mu_sum) / (i + 1)
            s2_sum += (x - mu) ** 2
            s2_prev = (0.25 + s2_sum) / (i + 1)
        return False

    if not reaches(1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return max(hi, sum(values) / n)


def test_betting_upper_matches_the_plain_reference():
    rng = np.random.default_rng(0)
    cases = [np.zeros(7), np.ones(4), np.full(30, 0.039), rng.random(25), rng.beta(0.2, 5, 120),
             (rng.random(60) < 0.1).astype(float), np.array([0.0, 1.0, 0.0, 0.0, 0.5])]
    for values in cases:
        for alpha in (0.1, 0.025):
            assert betting_upper(values, alpha) == pytest.approx(
                reference_upper(list(values), alpha), abs=1e-12)
            assert betting_lower(values, alpha) == pytest.approx(
                1 - reference_upper(list(1 - values), alpha), abs=1e-12)


# --- coverage against known means ------------------------------------------------------------------

DISTRIBUTIONS = {  # name: (draw(rng, n), exact mean)
    "Bernoulli(0.3)": (lambda r, n: (r.random(n) < 0.3).astype(float), 0.3),
    "Bernoulli(0.05)": (lambda r, n: (r.random(n) < 0.05).astype(float), 0.05),
    "three points": (lambda r, n: r.choice([0.0, 0.5, 1.0], size=n, p=[0.8, 0.15, 0.05]),
                     0.125),
    "Beta(0.3, 2)": (lambda r, n: r.beta(0.3, 2.0, n), 0.3 / 2.3),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_betting_bounds_cover_a_known_mean_across_seeds(name):
    """At alpha = 0.1 (where a bound that is slightly too narrow shows) each side covers at
    least at the nominal level up to the binomial margin, for 5, 30 and 300 values."""
    draw, mu = DISTRIBUTIONS[name]
    n_seeds, alpha = 300, 0.1
    for n in (5, 30, 300):
        up = low = 0
        for seed in range(n_seeds):
            x = draw(np.random.default_rng([seed, n, 5]), n)
            up += betting_upper(x, alpha) >= mu
            low += betting_lower(x, alpha) <= mu
        print(f"{name} n={n}: upper covers {up}/{n_seeds}, lower {low}/{n_seeds}")
        assert up >= floor(n_seeds, 1 - alpha) and low >= floor(n_seeds, 1 - alpha), (n, up, low)


def test_the_coverage_check_catches_a_bound_fed_sorted_values():
    """The bets are predictable: values sorted before betting (small ones first) are not an
    i.i.d. sequence, and the coverage check above fails for them. (certify permutes the
    inputs with its seed for this reason.)"""
    draw, mu = DISTRIBUTIONS["Beta(0.3, 2)"]
    n_seeds, alpha = 300, 0.1
    covered = sum(betting_upper(np.sort(draw(np.random.default_rng([s, 30, 5]), 30)), alpha)
                  >= mu for s in range(n_seeds))
    assert covered < floor(n_seeds, 1 - alpha), covered


# --- width against the KL bound ------------------------------------------------------------------------

WIDTH_CASES = {  # name: (draw, exact mean)
    "Bernoulli(0.039)": (lambda r, n: (r.random(n) < 0.039).astype(float), 0.039),
    "Beta(0.2, 4.93)": (lambda r, n: r.beta(0.2, 4.93, n), 0.2 / 5.13),
    "all zeros": (lambda r, n: np.zeros(n), 0.0),
}


def test_betting_is_narrower_than_the_old_population_step():
    """Mean upper bound over 100 seeds at alpha = 0.025, against ``kl_upper`` at alpha / 2
    (what the two-step bound spends on the inputs): measured ratios 0.89 / 0.96 on Bernoulli
    values (m = 30 / 300), 0.71 / 0.67 on Beta ones, 0.94 / 0.95 on zeros."""
    alpha, n_seeds = 0.025, 100
    limits = {"Bernoulli(0.039)": (0.95, 1.0), "Beta(0.2, 4.93)": (0.8, 0.75),
              "all zeros": (0.96, 0.96)}
    for name, (draw, mu) in WIDTH_CASES.items():
        for n, limit in zip((30, 300), limits[name]):
            bet, kl = [], []
            for seed in range(n_seeds):
                x = draw(np.random.default_rng([11, n, seed]), n)
                bet.append(betting_upper(x, alpha))
                kl.append(kl_upper(float(x.mean()), n, alpha / 2))
            ratio = np.mean(bet) / np.mean(kl)
            print(f"{name} n={n}: betting {np.mean(bet):.4f}, KL(alpha/2) {np.mean(kl):.4f}, "
                  f"ratio {ratio:.3f}")
            assert ratio < limit, (name, n, ratio)


# --- edge cases and monotonicity ---------------------------------------------------------------------

def test_edge_cases():
    for n in (3, 30, 300):  # all zeros: upper > 0, lower 0; all ones: mirrored
        up = betting_upper(np.zeros(n), 0.025)
        assert 0 < up < 1 and betting_lower(np.zeros(n), 0.025) == 0.0
        assert betting_upper(np.ones(n), 0.025) == 1.0
        assert betting_lower(np.ones(n), 0.025) == pytest.approx(1 - up, abs=1e-12)
    # One or two values: the first bet knows nothing, and the bound is 1 (0 below).
    for values in ([0.0], [0.5], [1.0], [0.0, 0.0]):
        assert betting_upper(values, 0.025) == 1.0
    assert betting_lower([1.0], 0.025) == 0.0
    # A constant sample: the bounds hold it between them.
    x = np.full(40, 0.2)
    assert betting_lower(x, 0.05) < 0.2 < betting_upper(x, 0.05)
    # Same input, same number.
    v = np.random.default_rng(3).random(50)
    assert betting_upper(v, 0.05) == betting_upper(v.copy(), 0.05)


def test_monotonicity():
    rng = np.random.default_rng(1)
    for seed in range(40):
        n = int(rng.integers(3, 80))
        x = rng.beta(0.3, 3, n) * (rng.random(n) < 0.5)
        # The capital grows with m (the soundness of the bisection rests on it).
        grid = np.linspace(0, 1, 41)
        rejected = [betting_rejects(x, m, 0.05) for m in grid]
        assert rejected == sorted(rejected)
        up = betting_upper(x, 0.05)
        assert all(r == (m >= up) for m, r in zip(grid, rejected) if abs(m - up) > 1e-9)
        assert betting_lower(x, 0.05) <= x.mean() <= up
        # Higher confidence, wider bounds (measured, not a theorem: the bets depend on alpha).
        ups = [betting_upper(x, a) for a in (0.2, 0.1, 0.05, 0.01)]
        assert ups == sorted(ups)
    # More inputs that never fail: a smaller bound.
    zeros = [betting_upper(np.zeros(n), 0.025) for n in (3, 5, 10, 30, 100, 1000)]
    assert zeros == sorted(zeros, reverse=True) and zeros[-1] < 0.005


@pytest.mark.parametrize("call, name", [
    (lambda: betting_upper([], 0.1), "values"),
    (lambda: betting_upper([[0.1, 0.2]], 0.1), "values"),
    (lambda: betting_upper([0.1, 1.5], 0.1), "values"),
    (lambda: betting_upper([0.1, np.nan], 0.1), "values"),
    (lambda: betting_lower([-0.1], 0.1), "values"),
    (lambda: betting_upper([0.1], 0.0), "alpha"),
    (lambda: betting_upper([0.1], 1.0), "alpha"),
    (lambda: betting_lower([0.1], "0.1"), "alpha"),
    (lambda: betting_upper([0.1], 0.1, truncation=1.0), "truncation"),
    (lambda: betting_rejects([0.1], 1.5, 0.1), "mean"),
])
def test_bad_arguments_name_the_parameter(call, name):
    with pytest.raises(ValidationError, match=f"'{name}'"):
        call()


# --- the per-input values the bound needs ----------------------------------------------------------

NET = ns.Network.random([4, 6, 5, 2], "relu", seed=1)
X_POP = np.random.default_rng(1234).normal(size=(400, 4))
P, METRIC, EPS = 0.02, "linf", 0.6
F_POP = exact_failure(NET, X_POP, *crash_patterns(NET, P), METRIC, EPS)


def _estimator(X, **kw):
    eps, plan, Xc, yc, backend = C._lowered("test", NET, ns.NeuronCrash(P), X, None, METRIC,
                                            EPS, False, "auto", fields=False)
    return StratifiedEstimator(plan, backend, backend.clean_cache(plan, Xc), None,
                               metric=METRIC, eps=EPS, tail_target=0.05, **kw)


def test_per_input_values_are_the_exact_ones_and_leave_the_result_unchanged():
    X = X_POP[:25]
    with_values = _estimator(X, per_input=True)
    result = with_values.run(SerialRunner())
    plain = _estimator(X).run(SerialRunner())
    assert plain.to_dict() | {"elapsed_s": 0} == result.to_dict() | {"elapsed_s": 0}
    assert all(st.method == "exact" for st in result.strata)
    values = with_values.input_values
    # Exact strata: lower is f(x) without the tail, upper adds the whole tail.
    np.testing.assert_allclose(values.lower, F_POP[:25], atol=result.tail + 1e-12)
    assert np.all(values.lower <= F_POP[:25] + 1e-12)
    np.testing.assert_allclose(values.upper - values.lower, result.tail, rtol=1e-9)
    assert values.lower.mean() == pytest.approx(result.estimate, rel=1e-12)


def test_sampled_per_input_values_are_unbiased_across_seeds():
    """With every stratum sampled (work_budget=40), each input's value averages to its exact
    f(x) over seeds: per input, a z-test of the mean over 200 seeds (the values' own
    standard error), all 10 inputs within 4.5 standard errors."""
    X = X_POP[:10]
    runs = []
    for seed in range(200):
        est = _estimator(X, per_input=True, work_budget=40, n_samples=20, seed=seed)
        result = est.run(SerialRunner())
        assert any(st.method == "sampled" for st in result.strata)
        runs.append(est.input_values.lower)
    runs = np.array(runs)
    se = runs.std(axis=0, ddof=1) / math.sqrt(runs.shape[0])
    # (the lower values leave out the tail, below 1e-3 here: part of the allowed difference)
    z = (runs.mean(axis=0) - F_POP[:10]) / np.maximum(se, 1e-6)
    assert np.all(np.abs(z) < 4.5), z


def test_monte_carlo_counts_each_inputs_failures():
    cert = C.certify(NET, ns.NeuronCrash(P), X_POP[:50], metric=METRIC, eps=EPS, delta=0.5,
                     method="sampled", n_samples=60, seed=2, theory=False, advice=False)
    values = cert.input_values
    assert np.array_equal(values.lower, values.upper)
    part = cert.empirical.strata[0]
    assert values.upper.sum() * 60 == pytest.approx(part.fail_fraction * part.rows, abs=1e-9)
    assert np.all(values.upper * 60 == np.round(values.upper * 60))


# --- certify ----------------------------------------------------------------------------------------

KW = dict(metric=METRIC, eps=EPS, delta=0.5, theory=False, advice=False)


def test_certificate_records_the_bound_and_round_trips(tmp_path):
    X = X_POP[:40]
    new = C.certify(NET, ns.NeuronCrash(P), X, seed=1, **KW)
    old = C.certify(NET, ns.NeuronCrash(P), X, seed=1, population="kl", **KW)
    assert new.population == "betting" and old.population == "kl"
    assert "one step" in new.population_reason and "asked for" in old.population_reason
    assert new.delta_upper < old.delta_upper
    assert new.delta_lower <= new.delta_estimate <= new.delta_upper
    # The old bound is the old formula on the same estimator run's bounds.
    assert old.delta_upper == pytest.approx(
        kl_upper(old.empirical.upper, 40, 0.0125), rel=1e-12)
    # One step: the new bound is the betting bound at the whole alpha_side, seed-ordered.
    order = np.random.default_rng(np.random.SeedSequence([1, C.ORDER_SEED_TAG])).permutation(40)
    assert new.delta_upper == max(betting_upper(new.input_values.upper[order], 0.025),
                                  new.delta_estimate)
    assert C.certify(NET, ns.NeuronCrash(P), X, seed=1, population="betting",
                     **KW).delta_upper == new.delta_upper
    for cert in (new, old):
        path = tmp_path / f"{cert.population}.json"
        cert.save(path)
        back = Certificate.load(path)
        assert back.population == cert.population
        assert back.population_reason == cert.population_reason
        assert back.delta_upper == cert.delta_upper and back.extra == {}
        assert back.input_values is None  # (not in the file)
        assert f"population bound: {cert.population}" in back.summary()
    legacy = new.to_dict()
    del legacy["population"], legacy["population_reason"]
    assert Certificate.from_dict(legacy).population == "kl"  # the only bound there was


def test_auto_uses_kl_where_betting_cannot_help():
    two = C.certify(NET, ns.NeuronCrash(P), X_POP[:2], seed=0, **KW)
    assert two.population == "kl" and "fewer than 3" in two.population_reason
    assert C.certify(NET, ns.NeuronCrash(P), X_POP[:3], seed=0, **KW).population == "betting"
    one = C.certify(NET, ns.NeuronCrash(P), X_POP[:1], seed=0, population="betting", **KW)
    assert one.population == "betting" and one.delta_upper == 1.0


def test_bad_population_names_the_parameter():
    with pytest.raises(ValidationError, match="'population'"):
        C.certify(NET, ns.NeuronCrash(P), X_POP[:5], population="hoeffding", **KW)


def test_analog_crossbars_keep_the_kl_bound():
    """Every analog chip runs every input: no per-input i.i.d. values, so KL over chips and
    inputs as before; asking for betting there is an error naming the parameter."""
    from neurosim.hardware import profile_from_dict

    rates = {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
             "weight_bit_flip": 0.0, "core_failure": 0.0}
    profile = profile_from_dict({
        "name": "tiles", "description": "small tiles", "architecture": "crossbar",
        "cores_per_chip": 256, "neurons_per_core": 3, "max_fan_in": 4, "synapses_per_core": 12,
        "weight_bits": 8, "crossbar_rows": 4, "crossbar_cols": 3, "fault_rates": rates},
        source="tiles.toml")
    mapping = ns.map_network(ns.Network.random([7, 6, 3], "relu", seed=4), profile)
    X = np.random.default_rng(0).normal(size=(10, 7))
    kw = dict(metric="linf", eps=0.6, delta=0.5, n_samples=8, theory=False, advice=False)
    proc = ns.AnalogCrossbar(device="pcm", t="1d")
    cert = C.certify(mapping, proc, X, **kw)
    assert cert.method == "sampled" and cert.population == "kl"
    assert "analog" in cert.population_reason and cert.input_values is None
    with pytest.raises(ValidationError, match="'population'"):
        C.certify(mapping, proc, X, population="betting", **kw)


@pytest.mark.parametrize("method", ["stratified", "sampled"])
def test_betting_certificate_covers_the_exact_population_failure_probability(method):
    """60 seeds, 30 inputs drawn from the 400-input population whose f(x) are enumerated
    exactly, given to certify sorted by f(x) (the worst order for a betting bound that did
    not permute them), confidence 0.9: delta_upper >= delta_true and delta_lower <= it, each
    at least the nominal 0.95 up to the binomial margin; the bound narrower than the old."""
    truth = F_POP.mean()
    n_seeds = 60
    up = low = 0
    widths = []
    for seed in range(n_seeds):
        idx = np.random.default_rng([3, seed]).integers(0, X_POP.shape[0], size=30)
        idx = idx[np.argsort(F_POP[idx])]
        kw = dict(confidence=0.9, seed=seed, method=method, n_samples=40, **KW)
        cert = C.certify(NET, ns.NeuronCrash(P), X_POP[idx], **kw)
        old = C.certify(NET, ns.NeuronCrash(P), X_POP[idx], population="kl", **kw)
        up += cert.delta_upper >= truth
        low += cert.delta_lower <= truth
        widths.append(cert.delta_upper / old.delta_upper)
        assert cert.delta_lower <= cert.delta_estimate <= cert.delta_upper
    print(f"{method}: delta_true {truth:.4f}; upper covers {up}/{n_seeds}, lower {low}/{n_seeds};"
          f" mean width ratio new/old {np.mean(widths):.3f}")
    assert up >= floor(n_seeds, 0.95) and low >= floor(n_seeds, 0.95)
    assert np.mean(widths) < 0.8
