"""Dense stuck cells drawn as fields (neurosim.fields, kernels/field.py) and per-process modes.

The kernels are checked against the NumPy reference cell by cell; the faulty pass against a
literal forward pass with each row's faulty matrix; the simulator's intervals against exact
failure probabilities on tiny networks (every cell state enumerated) in transient, permanent
and mixed runs; and the numbers against thread counts, runners and resume.
"""

from __future__ import annotations

import json
import math

import numba
import numpy as np
import pytest

import neurosim as ns
from neurosim.backends.numba import NumbaBackend
from neurosim.backends.numpy import NumpyBackend
from neurosim.errors import ProfileError, ValidationError
from neurosim.faults import parse_fault_model, parse_fault_spec, profile_faults
from neurosim.fields import (MAX_FAULT_FREE, StuckField, cell_words, stuck_matrix, threshold,
                             use_field)
from neurosim.hardware import profile_from_dict
from neurosim.kernels import field as KF
from neurosim.kernels.codes import CLEAN, DENSE, SPARSE
from neurosim.plan import build_plan
from neurosim.sampler import sample_faults

RATES = {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
         "weight_bit_flip": 0.0, "core_failure": 0.0}


# --- the counter-based words and thresholds ---------------------------------------------------

def test_threshold_is_exact():
    assert threshold(0.0) == 0
    assert threshold(0.5) == 1 << 63
    assert threshold(1.0) == (1 << 64) - 1
    p = 0.0904
    t = threshold(p)
    # floor(p 2^64) exactly: t / 2^64 <= p < (t + 1) / 2^64 in exact rational arithmetic
    from fractions import Fraction
    assert Fraction(t, 1 << 64) <= Fraction(p) < Fraction(t + 1, 1 << 64)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (256, 64), (10, 256)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matrix_equals_the_numpy_reference(shape, dtype):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    W = rng.normal(size=shape).astype(dtype)
    W[0, 0] = 0.0  # a zero weight stuck at max becomes positive
    for layer in (1, 2, 5):
        f = StuckField(layer, threshold(0.2), threshold(0.9), 1.25, 1.5, "transient")
        for key in rng.integers(0, 2 ** 63, size=4, dtype=np.uint64):
            ref = stuck_matrix(W, f, int(key))
            out = KF.stuck_field_matrix(W, np.uint64(key), layer, np.uint64(f.t0),
                                          np.uint64(f.t01), f.v_pos, f.v_neg)
            np.testing.assert_array_equal(out, ref)
            assert out.dtype == W.dtype
            words = cell_words(int(key), layer, *shape)
            zero = words < np.uint64(f.t0)
            at_max = (words >= np.uint64(f.t0)) & (words < np.uint64(f.t01))
            np.testing.assert_array_equal(ref[zero], 0)
            np.testing.assert_array_equal(ref[at_max], np.where(W[at_max] < 0, -1.5, 1.25))
            np.testing.assert_array_equal(ref[~zero & ~at_max], W[~zero & ~at_max])


def test_cell_rates_and_independence_across_keys_layers_and_cells():
    """Stuck fractions match p0 and p1 within 5 standard errors; cells of different keys,
    layers and neighbouring positions are uncorrelated."""
    n_out, n_in, n_keys = 64, 50, 200
    p0, p1 = 0.0175, 0.0904
    t0, t01 = np.uint64(threshold(p0)), np.uint64(threshold(p0 + p1))
    keys = np.random.default_rng(0).integers(0, 2 ** 63, size=n_keys)
    w1 = np.stack([cell_words(int(k), 1, n_out, n_in) for k in keys])
    w2 = np.stack([cell_words(int(k), 2, n_out, n_in) for k in keys])
    n = w1.size
    for p, frac in ((p0, (w1 < t0).mean()), (p1, ((w1 >= t0) & (w1 < t01)).mean())):
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)
    a = (w1 < t01).astype(float).ravel()
    for b in ((w2 < t01), np.roll(w1 < t01, 1, axis=1), np.roll(w1 < t01, 1, axis=2),
              np.roll(w1 < t01, 1, axis=0)):
        b = b.astype(float).ravel()
        corr = np.corrcoef(a, b)[0, 1]
        assert abs(corr) < 5 / math.sqrt(n)


def test_use_field_follows_the_measured_costs():
    assert not use_field(84480, 1e-4)  # records are cheaper than looking at every cell
    assert use_field(84480, 0.108)
    assert use_field(84480, 1e-3)
    # A layer where many draws would have no fault keeps records (fault-free draws are skipped).
    assert not use_field(8, 0.2)
    assert (1 - 0.7) ** 8 <= MAX_FAULT_FREE and use_field(8, 0.7)
    assert not use_field(100, 0.0)


# --- the kernel that adds a row's stuck cells -------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_stuck_field_equals_each_rows_faulty_matrix(dtype):
    rng = np.random.default_rng(4)
    n_in, n_out, m, n_rows = 30, 20, 5, 40
    W = rng.normal(size=(n_out, n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    Y_clean = np.maximum(rng.normal(size=(m, n_in)), 0).astype(dtype)  # zeros: skipped columns
    Y_clean[:, 3] = 0
    row_input = rng.integers(0, m, size=n_rows)
    row_draw = np.arange(n_rows)
    keys = rng.integers(0, 2 ** 63, size=n_rows, dtype=np.uint64)
    status = np.array([CLEAN, SPARSE, DENSE, DENSE] * (n_rows // 4), dtype=np.int8)
    Y = Y_clean[row_input].copy()
    Y[status != CLEAN, 5] += 1.0  # rows whose inputs differ from the clean ones
    Y[status == DENSE, 3] = 2.0  # and a column that is 0 for clean rows only
    f = StuckField(2, threshold(0.1), threshold(0.3), 2.5, 2.0, "transient")
    Z = np.where((status == CLEAN)[:, None], Y_clean[row_input] @ W.T, Y @ W.T) + b
    KF.apply_stuck_field(Z, np.arange(n_rows), status, Y, Y_clean, np.ascontiguousarray(W.T),
                         row_draw, row_input, keys, 2, np.uint64(f.t0), np.uint64(f.t01),
                         f.v_pos, f.v_neg)
    for r in range(n_rows):
        y = Y_clean[row_input[r]] if status[r] == CLEAN else Y[r]
        ref = stuck_matrix(W.astype(np.float64), f, int(keys[r])) @ y.astype(np.float64) + b
        np.testing.assert_allclose(Z[r], ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=1e-4 if dtype == np.float32 else 1e-12)


def _dense_plan(widths, faults, seed=0, mapping_profile=None):
    net = ns.Network.random(widths, "relu", seed=seed)
    target = net if mapping_profile is None else ns.map_network(net, mapping_profile)
    return net, target, build_plan(target, faults)


@pytest.mark.parametrize("with_crash", [False, True])
def test_numba_propagate_with_fields_matches_the_numpy_reference(with_crash):
    faults = ns.SynapseStuck(0.05, 0.1)
    if with_crash:
        faults = faults + ns.NeuronCrash(0.05, layers=(0, 1, 2))
    net, target, plan = _dense_plan([40, 60, 50, 6], faults, seed=2)
    assert [f.layer for f in plan.fields] == [1, 2, 3]
    assert {g.kind for g in plan.groups} == ({"crash"} if with_crash else set())
    X = np.random.default_rng(1).normal(size=(9, 40))
    nb, npb = NumbaBackend(), NumpyBackend()
    batch = sample_faults(plan, np.random.default_rng(5), 90)
    assert batch.keys is not None and batch.draw_has_fault.all()
    rows = np.arange(90)
    with nb.session():
        out = nb.propagate(plan, nb.clean_cache(plan, X), batch, rows, rows % 9)
    ref = npb.propagate(plan, npb.clean_cache(plan, X), batch, rows, rows % 9)
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9)
    clean = npb.clean_cache(plan, X).output[rows % 9]
    assert np.all(np.abs(out - clean).max(axis=1) > 0)  # every row is hit at these rates


def test_transient_fields_refuse_lava_and_give_way_to_other_weight_writers():
    net = ns.Network.random([30, 40, 5], "relu", seed=0)
    profile = ns.load_profile("rram_crossbar")
    mapping = ns.map_network(net, profile)
    plan = build_plan(mapping, ns.SynapseStuck(0.05, 0.05) + ns.CoreFailure(0.01))
    assert plan.fields == []  # failed tiles also write weights: stuck cells become records
    assert any(g.kind == "stuck" for g in plan.groups)
    plan = build_plan(mapping, ns.SynapseStuck(0.05, 0.05, mode="permanent") + ns.CoreFailure(0.01))
    assert [f.mode for f in plan.fields] == ["permanent", "permanent"]
    from neurosim.backends.lava import LavaBackend

    with pytest.raises(ns.BackendUnsupportedError, match="dense rates"):
        LavaBackend().check(plan)


# --- exact failure probabilities: transient, permanent and mixed ----------------------------

N_SEEDS = 60
#: With 95 % intervals, covering in fewer than 50 of 60 seeds has probability
#: P(Binomial(60, 0.95) < 50) = 0.0005 for an exact-coverage method; the Bernstein interval
#: of permanent runs is conservative.
MIN_COVERED = 50


@pytest.fixture(scope="module")
def tiny():
    """A 2-3-1 ReLU network (9 cells, each healthy, stuck at 0 or at max: 3^9 states)."""
    net = ns.Network.random([2, 3, 1], "relu", seed=6)
    X = np.random.default_rng(10).normal(size=(4, 2))
    return net, X


def _states(Ws, vmaxes, p0, p1):
    sizes = [W.size for W in Ws]
    n = sum(sizes)
    idx = np.arange(3 ** n)
    states = (idx[:, None] // 3 ** np.arange(n)) % 3
    w = np.prod(np.choose(states, [1 - p0 - p1, p0, p1]), axis=1)
    faulty, start = [], 0
    for W, size, vmax in zip(Ws, sizes, vmaxes):
        s = states[:, start:start + size].reshape(-1, *W.shape)
        at_max = np.where(W < 0, -vmax, vmax)
        faulty.append(np.where(s == 0, W, np.where(s == 1, 0.0, at_max)))
        start += size
    return w, faulty


def _exact_linf(net, X, p0, p1, crash=0.0):
    """P(linf error >= eps) over cell states (and hidden-neuron crashes), averaged over X,
    and an eps in a gap of the metric's values."""
    Ws = [np.asarray(layer.W, float) for layer in net.layers]
    bs = [np.asarray(layer.b, float) for layer in net.layers]
    # On the float network a stuck-at-max cell holds max |W_l| (sign of its weight).
    w, faulty = _states(Ws, [np.abs(W).max() for W in Ws], p0, p1)
    h = Ws[0].shape[0]
    crash_masks = [np.zeros((1, h), bool)]
    cw = np.array([1.0])
    if crash:
        crash_masks = [((np.arange(2 ** h)[:, None] >> np.arange(h)) & 1).astype(bool)]
        cw = np.prod(np.where(crash_masks[0], crash, 1 - crash), axis=1)
    M = []
    for x in X:
        clean = np.maximum(Ws[0] @ x + bs[0], 0)
        clean = Ws[1] @ clean + bs[1]
        a = np.maximum(np.einsum("pij,j->pi", faulty[0], x) + bs[0], 0)  # (P, h)
        a = a[:, None, :] * ~crash_masks[0][None, :, :]  # (P, C, h)
        out = np.einsum("pij,pcj->pci", faulty[1], a) + bs[1]
        M.append(np.abs(out - clean).max(axis=2).ravel())
    M = np.stack(M, axis=1)
    weights = (w[:, None] * cw[None, :]).ravel()
    vals = np.sort(np.unique(np.round(M, 9)))
    tails = [(weights[:, None] * (M >= v)).sum() / M.shape[1] for v in vals]
    k = int(np.argmin([abs(t - 0.3) if v > 0 else 9 for v, t in zip(vals, tails)]))
    eps = 0.5 * (vals[k - 1] + vals[k])
    return float((weights[:, None] * (M >= eps)).sum() / M.shape[1]), eps


@pytest.mark.parametrize("mode", ["transient", "permanent", "mixed"])
def test_field_runs_cover_the_exact_failure_probability(tiny, mode):
    net, X = tiny
    p0, p1 = 0.35, 0.45  # (1 - 0.8)^n <= 1 % in both layers (6 and 3 cells): fields
    crash = 0.2 if mode == "mixed" else 0.0
    faults = ns.SynapseStuck(p0, p1, mode="permanent" if mode != "transient" else None)
    if crash:
        faults = faults + ns.NeuronCrash(crash, layers=(1,))
    plan = build_plan(net, faults)
    assert [f.layer for f in plan.fields] == [1, 2]
    exact, eps = _exact_linf(net, X, p0, p1, crash)
    assert 0.05 < exact < 0.95
    covered, failures, pairs = 0, 0, 0
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for seed in range(N_SEEDS):
            r = ns.simulate(net, faults, X, metric="linf", eps=eps, n_samples=400, seed=seed)
            assert r.mode == mode
            covered += r.ci_low <= exact <= r.ci_high
            failures += r.n_failures
            pairs += r.n_pairs
    finally:
        numba.set_num_threads(before)
    assert covered >= MIN_COVERED, (mode, exact, covered)
    units = pairs if mode == "transient" else pairs / X.shape[0]  # chips are the units
    assert abs(failures / pairs - exact) < 4 * math.sqrt(exact * (1 - exact) / units)


# --- modes: specs, profiles, runs -------------------------------------------------------------

def test_modes_in_specs_and_models():
    f = parse_fault_spec("stuck:p0=0.01,p1=0.02,mode=permanent")
    assert f == ns.SynapseStuck(0.01, 0.02, mode="permanent")
    model = parse_fault_model("stuck:p0=0.01,p1=0.02,mode=permanent crash:p=0.001")
    assert parse_fault_model(model.spec()) == model
    assert model.run_mode() == "mixed"
    assert model.modes() == {"stuck": "permanent", "crash": "transient"}
    assert model.with_modes("transient").run_mode() == "transient"
    assert ns.FaultModel([ns.NeuronCrash(0.01, mode="permanent")]).run_mode() == "permanent"
    for bad, what in (("stuck:p0=0.1,mode=sometimes", "mode"), ("stuck:p0=0.1,mode=permanent,"
                      "mode=transient", "twice"), ("crash:p=0.1,mod=permanent", "Valid keys")):
        with pytest.raises(ValidationError, match=what):
            parse_fault_spec(bad)
    with pytest.raises(ValidationError, match="mode of fault 'crash'"):
        ns.FaultModel([ns.NeuronCrash(0.1, mode="forever")])


def _profile(**extra):
    data = {"name": "tiny", "description": "t", "architecture": "crossbar", "cores_per_chip": 64,
            "neurons_per_core": 8, "max_fan_in": 8, "synapses_per_core": 64, "weight_bits": 8,
            "crossbar_rows": 8, "crossbar_cols": 8,
            "fault_rates": dict(RATES, synapse_stuck_at_zero=0.1, neuron_crash=0.01)}
    data.update(extra)
    return profile_from_dict(data, source="tiny.toml")


def test_profile_fault_modes():
    p = _profile(fault_modes={"stuck": "permanent"},
                 sources={"fault_modes.stuck": "fabrication defects"})
    model = profile_faults(p)
    assert model.get("stuck").mode == "permanent" and model.get("crash").mode is None
    assert model.run_mode() == "mixed"
    assert ns.load_profile("rram_crossbar").fault_modes == {"stuck": "permanent"}
    assert "fault_modes.stuck" in ns.load_profile("rram_crossbar").sources
    with pytest.raises(ProfileError, match="unknown key in \\[fault_modes\\] 'stuk'.*'stuck'"):
        _profile(fault_modes={"stuk": "permanent"})
    with pytest.raises(ProfileError, match="fault_modes\\] stuck must be one of"):
        _profile(fault_modes={"stuck": "always"})
    with pytest.raises(ProfileError, match="unknown key in \\[sources\\] 'fault_modes.crash'"):
        _profile(fault_modes={"stuck": "permanent"}, sources={"fault_modes.crash": "x"})


def _comparable(result) -> str:
    d = result.to_dict()
    d.pop("elapsed_s")
    return json.dumps(d, sort_keys=True)


@pytest.fixture(scope="module")
def mixed_case():
    net = ns.Network.random([20, 30, 25, 4], "relu", seed=1)
    X = np.random.default_rng(2).normal(size=(300, 20))
    y = np.random.default_rng(3).integers(0, 4, size=300)
    faults = ns.SynapseStuck(0.02, 0.06, mode="permanent") + ns.NeuronCrash(0.01, layers=(1, 2))
    return net, X, y, faults


def test_the_same_numbers_for_any_thread_count_runner_or_mode_override(mixed_case):
    net, X, y, faults = mixed_case
    kw = dict(metric="flip", n_samples=60, seed=5)
    before = numba.get_num_threads()
    runs = {}
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            runs[threads] = ns.simulate(net, faults, X, y, **kw)
    finally:
        numba.set_num_threads(before)
    first = runs[1]
    runs = {k: _comparable(v) for k, v in runs.items()}
    assert runs[1] == runs[2]
    reverse = ns.simulate(net, faults, X, y, runner=lambda f, b: [f(k) for k in reversed(list(b))],
                          **kw)
    assert _comparable(reverse) == runs[1]
    r = json.loads(runs[1])
    assert r["mode"] == "mixed" and r["interval_method"] == "empirical Bernstein over chips"
    assert r["n_pairs"] == 60 * 300 and first.chip_failure_rates.shape == (60,)
    numpy = ns.simulate(net, faults, X, y, backend="numpy", **kw)
    assert abs(numpy.n_failures - r["n_failures"]) <= 2  # rounding may move a tie, rarely
    # Forcing one mode overrides the processes' own.
    forced = ns.simulate(net, faults, X, y, mode="transient", **kw)
    assert forced.mode == "transient" and forced.chip_failure_rates is None


def test_mixed_run_resumes_to_the_same_numbers(mixed_case, tmp_path, monkeypatch):
    from neurosim.estimators.montecarlo import MonteCarlo

    net, X, y, faults = mixed_case
    kw = dict(metric="flip", n_samples=120, seed=7, checkpoint_every_s=0.0)
    full = ns.simulate(net, faults, X, y, **kw)
    real = MonteCarlo._block
    calls = {"n": 0}

    def interrupt(self, block):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, block)

    out = tmp_path / "mixed.h5"
    monkeypatch.setattr(MonteCarlo, "_block", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ns.simulate(net, faults, X, y, output=out, **kw)
    monkeypatch.undo()
    resumed = ns.simulate(net, faults, X, y, output=out, resume=True, **kw)
    assert _comparable(resumed).replace('"mixed"', "") == _comparable(full).replace('"mixed"', "")
    np.testing.assert_array_equal(resumed.chip_failure_rates, full.chip_failure_rates)
    loaded = ns.load_result(out)
    assert loaded.mode == "mixed" and "120 chips x 300 inputs" in loaded.summary()
    np.testing.assert_array_equal(loaded.chip_failure_rates, full.chip_failure_rates)


def test_stratified_refuses_fields_and_auto_picks_mc():
    net = ns.Network.random([30, 40, 5], "relu", seed=0)
    X = np.random.default_rng(0).normal(size=(20, 30))
    with pytest.raises(ValidationError, match="dense rate"):
        ns.simulate(net, ns.SynapseStuck(0.05, 0.05), X, metric="linf", eps=0.1,
                    estimator="stratified")
    with pytest.raises(ValidationError, match="transient faults only.*permanent"):
        ns.simulate(net, ns.SynapseStuck(0.05, 0.05, mode="permanent"), X, metric="linf",
                    eps=0.1, estimator="stratified")
    r = ns.simulate(net, ns.SynapseStuck(0.05, 0.05), X, metric="linf", eps=0.1,
                    estimator="auto", n_samples=5)
    assert r.estimator == "mc"


def test_rram_defaults_are_permanent_and_fast_enough_to_run_here():
    """The profile's defaults on the bundled model: permanent stuck cells drawn as fields."""
    net = ns.load_digits_model()
    X, y = ns.load_digits_test()
    mapping = ns.map_network(net, ns.load_profile("rram_crossbar"))
    r = ns.simulate(mapping, X=X, y=y, n_samples=30, seed=0)
    assert r.mode == "permanent" and r.n_pairs == 30 * X.shape[0]
    assert 0.02 < r.failure_rate < 0.2  # 10.8 % of the cells stuck: a few % of flips
    assert r.layer_failures[1:].min() == r.n_failures  # every layer of every chip is hit


# --- dense faults in bounded memory -------------------------------------------------------------

_PEAK = """
import resource, sys
import neurosim as ns
X, y = ns.load_digits_test()
model = ns.load_digits_conv_model() if sys.argv[1] == "conv" else ns.load_digits_model()
mapping = ns.map_network(model, "rram_crossbar")
if sys.argv[2] == "mixed":  # the chip's crashes, and fresh stuck cells for every input
    faults = ns.SynapseStuck(0.0175, 0.0904) + ns.NeuronCrash(1e-3, mode="permanent")
    ns.simulate(mapping, faults, X, y, n_samples=int(sys.argv[3]), seed=1)
else:
    ns.simulate(mapping, X=X, y=y, n_samples=int(sys.argv[3]), mode=sys.argv[2], seed=1)
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)
print(next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:")))
"""


@pytest.mark.parametrize("model, mode, sizes", [("mlp", "transient", (21, 105)),
                                                ("mlp", "permanent", (21, 420)),
                                                ("conv", "transient", (21, 63)),
                                                ("conv", "mixed", (21, 63))])
def test_dense_faults_run_in_bounded_memory(model, mode, sizes):
    """The rram_crossbar defaults (10.8 % of cells stuck): peak memory under 1 GiB, and no
    growth with the number of samples (several blocks: 21 draws per input fill one)."""
    import subprocess
    import sys

    peaks = []
    for n in sizes:
        done = subprocess.run([sys.executable, "-c", _PEAK, model, mode, str(n)],
                              capture_output=True, text=True, timeout=600, check=True)
        peaks.append(int(done.stdout.split()[-1]) * 1024)
    print(f"peak memory {model} {mode}: {[p / 2 ** 20 for p in peaks]} MiB at {sizes} samples")
    assert max(peaks) < 2 ** 30
    assert peaks[1] <= 1.10 * peaks[0] + 20 * 2 ** 20, peaks


def test_dense_conv_records_go_in_sub_blocks_with_the_same_numbers_for_any_chunk(monkeypatch):
    from neurosim.backends import cone
    from neurosim.estimators.montecarlo import MonteCarlo

    net = ns.load_digits_conv_model()
    X, y = ns.load_digits_test()
    X, y = X[:60], y[:60]
    mapping = ns.map_network(net, "rram_crossbar")
    faults = ns.SynapseStuck(0.0175, 0.0904)
    plan = build_plan(mapping, faults)
    assert not plan.fields and plan.expected_records > 1000  # conv layers: records
    cache = NumbaBackend().clean_cache(plan, X)
    work = MonteCarlo(plan, NumbaBackend(), cache, y, metric="flip", eps=0.5, n_samples=150,
                      seed=0, mode="transient")
    assert work.sub_block_draws is not None and work.sub_block_draws < 150 * 60
    kw = dict(n_samples=150, seed=2, mode="transient")
    base = _comparable(ns.simulate(mapping, faults, X, y, **kw))
    monkeypatch.setattr(cone, "CHUNK_BYTES", 1 << 18)  # rows computed in much smaller chunks
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert _comparable(ns.simulate(mapping, faults, X, y, **kw)) == base
    finally:
        numba.set_num_threads(before)


def test_permanent_field_chips_match_the_generic_chip_path_and_the_numpy_backend():
    """The fast path of chips with fields only (their outputs in one go) against each chip's
    plan through the clean pass, and against the NumPy backend."""
    net, X, y = ns.Network.random([30, 40, 20, 5], "relu", seed=3), None, None
    X = np.random.default_rng(4).normal(size=(60, 30))
    plan = build_plan(net, ns.SynapseStuck(0.05, 0.1, mode="permanent"))
    assert [f.mode for f in plan.fields] == ["permanent"] * 3
    keys = np.random.default_rng(5).integers(0, 2 ** 63, size=6, dtype=np.uint64)
    nb, npb = NumbaBackend(), NumpyBackend()
    fast = nb.chip_outputs(plan, keys, X)
    generic = super(NumbaBackend, nb).chip_outputs(plan, keys, X)
    reference = npb.chip_outputs(plan, keys, X)
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast, reference, rtol=1e-12, atol=1e-12)
    for c, key in enumerate(keys):  # each chip: its own faulty matrices, literally
        y = X
        for l, layer in enumerate(net.layers, start=1):
            y = layer.activation(y @ stuck_matrix(plan.W[l - 1], plan.fields[l - 1], int(key)).T
                                 + plan.b[l - 1])
        np.testing.assert_allclose(fast[c], y, rtol=1e-12, atol=1e-12)
