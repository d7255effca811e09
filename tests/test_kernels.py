"""The fast path (sampler, Numba kernels, ``propagate``) against the slow references of
``tests/reference.py``, the sampler's statistics, and reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

import neurosim
from neurosim import Network
from neurosim.backends.numba import NumbaBackend
from neurosim.faults import (
    CRASH_MODES, CRASH_SILENT, REC_CRASH, REC_TILE, REC_WEIGHT, CoreFailure, FaultModel,
    NeuronCrash, SynapseStuck, WeightBitFlip, as_fault_model,
)
from neurosim.plan import build_plan
from neurosim.quantization import flip_words
from neurosim.sampler import RecordBuilder, sample_faults
from neurosim.hardware import profile_from_dict
from neurosim.mapping import map_network
from neurosim.network import make_activation

from reference import reference_outputs, reference_word_flip, word_of

RATES = {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
         "weight_bit_flip": 0.0, "core_failure": 0.0}


def _profile(**overrides):
    data = {
        "name": "tiny", "description": "a tiny test chip", "architecture": "cores",
        "cores_per_chip": 6, "spare_cores_per_chip": 1, "neurons_per_core": 3,
        "max_fan_in": 1000, "synapses_per_core": 10**6, "weight_bits": 4,
        "fault_rates": dict(RATES),
    }
    data.update(overrides)
    return profile_from_dict(data, source="test")


# Small cores (3 neurons, 5 usable + 1 spare per chip: the networks need two chips), 4-bit
# two's complement words.
CORES = _profile()
# The same with Loihi's word layout: mixed-sign layers store Q / 2, single-sign layers |Q|.
LOIHI = _profile(name="tiny_loihi", mixed_sign_drop_lsb=True, power_of_two_scale=True)
# 4 x 4 crossbar tiles.
CROSSBAR = _profile(name="tiny_xbar", architecture="crossbar", cores_per_chip=64,
                    spare_cores_per_chip=0, neurons_per_core=4, max_fan_in=4,
                    synapses_per_core=16, crossbar_rows=4, crossbar_cols=4)
TARGETS = {"network": None, "cores": CORES, "loihi": LOIHI, "crossbar": CROSSBAR}


def _plan(target, faults):
    """Every fault as records (the record path under test; fields: tests/test_fields.py)."""
    return build_plan(target, as_fault_model(faults), fields=False)


_NUMBA = NumbaBackend()


def clean_cache(plan, X):
    return _NUMBA.clean_cache(plan, X)


def propagate(plan, cache, batch, row_draw, row_input):
    return _NUMBA.propagate(plan, cache, batch, row_draw, row_input)


def _net(widths, activation, dtype, seed=0, signs=None) -> Network:
    """A random network; ``signs[l]`` = +1 / -1 makes layer l + 1 single-signed."""
    rng = np.random.default_rng(seed)
    weights, biases, acts = [], [], []
    for l in range(1, len(widths)):
        W = rng.normal(0.0, np.sqrt(2.0 / widths[l - 1]), size=(widths[l], widths[l - 1]))
        if signs is not None and signs[l - 1]:
            W = signs[l - 1] * np.abs(W)
        weights.append(W)
        biases.append(rng.normal(0.0, 0.3, size=widths[l]))
        last = l == len(widths) - 1
        acts.append("identity" if last else make_activation(activation, alpha=0.2)
                    if activation == "leaky_relu" else activation)
    return Network.from_arrays(weights, biases, acts, dtype=dtype)


def _target(widths, activation, dtype, target, seed=0):
    if target == "loihi":
        # One excitatory, one inhibitory, then mixed layers: all three word layouts.
        signs = [1, -1] + [0] * (len(widths) - 3)
        net = _net(widths, activation, dtype, seed, signs=signs)
        mapping = map_network(net, LOIHI)
        assert [q.sign_mode for q in mapping.quantization][:3] == \
            ["excitatory", "inhibitory", "mixed"][:len(widths) - 1]
        return mapping
    net = _net(widths, activation, dtype, seed)
    return net if TARGETS[target] is None else map_network(net, TARGETS[target])


def _rows(batch, m, mode):
    """The rows the simulator passes to ``propagate`` (see sampler.sample_block)."""
    faulty = np.flatnonzero(batch.draw_has_fault)
    if mode == "transient":
        return faulty, faulty % m
    return np.repeat(faulty, m), np.tile(np.arange(m), faulty.size)


def _assert_kinds(batch, fault, target, L, faults):
    """The batch really holds records of the fault kind under test."""
    crash_process = faults.get("crash")
    # Neuron crashes carry their process's semantics; core failures crash silently.
    crash = batch.kind == REC_CRASH
    if crash_process is not None and crash_process.semantics != "silent":
        crash &= batch.crash_mode == crash_process.crash_mode
    core_crash = (batch.kind == REC_CRASH) & (batch.crash_mode == CRASH_SILENT) & (batch.layer > 0)
    weight = batch.kind == REC_WEIGHT
    if fault.startswith("crash") or fault == "all":
        assert crash.sum() > 20
        assert (crash & (batch.layer == 0)).any()  # input-layer crashes
        assert (crash & (batch.layer == L)).any()
    if fault in ("stuck", "all"):
        assert (weight & (batch.value == 0)).sum() > 10
        assert (weight & (batch.value != 0)).sum() > 10
    if fault == "bitflip":
        assert weight.sum() > 20
    if fault in ("core", "all") and target in ("cores", "loihi"):
        assert core_crash.sum() > 10
    if fault in ("core", "all") and target == "crossbar":
        assert (batch.kind == REC_TILE).sum() > 10


FAULTS = {
    "crash_silent": lambda L: NeuronCrash(0.2, layers=range(L + 1)),
    "crash_paper": lambda L: NeuronCrash(0.2, semantics="paper", layers=range(L + 1)),
    "crash_stuck": lambda L: NeuronCrash(0.2, semantics="stuck", value=0.7, layers=range(L + 1)),
    "stuck": lambda L: SynapseStuck(0.1, 0.1),
    "bitflip": lambda L: WeightBitFlip(0.05),
    "core": lambda L: CoreFailure(0.3),
    "all": lambda L: NeuronCrash(0.1, semantics="stuck", value=0.7, layers=range(L + 1))
    + SynapseStuck(0.05, 0.05) + WeightBitFlip(0.03) + CoreFailure(0.2),
}

CONFIGS = [
    ([6, 9, 7, 4], "relu", np.float64),
    ([5, 12, 3], "leaky_relu", np.float64),
    ([6, 9, 7, 4], "tanh", np.float32),
    ([5, 12, 3], "sigmoid", np.float64),
    ([6, 9, 7, 4], "softplus", np.float32),
    ([5, 12, 3], "relu", np.float32),
]


def _tolerances(dtype):
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-4}


def _compare(target_obj, faults, X, mode, n_rounds, seed, tol, fault, target):
    plan = _plan(target_obj, faults)
    m = X.shape[0]
    cache = clean_cache(plan, X)
    n_draws = n_rounds * m if mode == "transient" else n_rounds
    batch = sample_faults(plan, np.random.default_rng(seed), n_draws)
    _assert_kinds(batch, fault, target, plan.n_layers, as_fault_model(faults))
    row_draw, row_input = _rows(batch, m, mode)
    assert row_draw.size > 0
    out = propagate(plan, cache, batch, row_draw, row_input)
    assert out.dtype == plan.dtype and out.shape == (row_draw.size, plan.widths[-1])
    ref = reference_outputs(plan, cache.Y[0], batch, row_draw, row_input)
    np.testing.assert_allclose(out, ref, **tol)
    # The faults change the output of many rows (the comparison is not between clean runs).
    changed = np.any(np.abs(ref - cache.output[row_input]) > 1e-3, axis=1)
    assert changed.mean() > 0.2


# Bit flips and core failures need a mapping (a plain network has no words and no cores).
FAULT_TARGETS = [(f, t) for f in FAULTS for t in TARGETS
                 if not (t == "network" and f in ("bitflip", "core"))]


@pytest.mark.parametrize("mode", ["transient", "permanent"])
@pytest.mark.parametrize("fault,target", FAULT_TARGETS)
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_propagate_matches_reference(config, fault, target, mode):
    widths, activation, dtype = CONFIGS[config]
    if target == "network" and fault == "all":
        faults = FaultModel([FAULTS["crash_paper"](len(widths) - 1), SynapseStuck(0.05, 0.05)])
    else:
        faults = FAULTS[fault](len(widths) - 1)
    target_obj = _target(widths, activation, dtype, target, seed=config)
    X = np.random.default_rng(100 + config).normal(size=(7, widths[0]))
    X[:, 0] = 0.0  # an input that is already 0: crashing it changes nothing
    tol = _tolerances(dtype)
    _compare(target_obj, faults, X, mode, 20, seed=config, tol=tol, fault=fault, target=target)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_propagate_matches_reference_sparse_and_clean_paths(dtype):
    """Wider layers and low rates: rows go through the CLEAN, SPARSE and DENSE paths."""
    net = _net([24, 40, 32, 6], "relu", dtype, seed=7)
    mapping = map_network(net, _profile(neurons_per_core=8, cores_per_chip=20))
    faults = NeuronCrash(0.003, layers=(0, 1, 2)) + SynapseStuck(0.0001, 0.0001) + \
        WeightBitFlip(0.00003) + CoreFailure(0.02)
    plan = _plan(mapping, faults)
    X = np.random.default_rng(3).normal(size=(10, 24))
    cache = clean_cache(plan, X)
    batch = sample_faults(plan, np.random.default_rng(11), 1500)
    row_draw, row_input = _rows(batch, 10, "transient")
    assert 200 < row_draw.size < 1500  # fault-free draws exist and are left out
    out = propagate(plan, cache, batch, row_draw, row_input)
    ref = reference_outputs(plan, cache.Y[0], batch, row_draw, row_input)
    np.testing.assert_allclose(out, ref, **_tolerances(dtype))
    # Some faulty rows have exactly the clean output (a crashed neuron that was 0 anyway).
    same = np.all(out == cache.output[row_input], axis=1)
    assert 0 < same.sum() < row_draw.size


# --- fault-free rows and no-op faults -----------------------------------------------------------

def test_draw_has_fault_is_false_exactly_for_draws_without_records():
    widths = [6, 9, 7, 4]
    mapping = map_network(_net(widths, "relu", np.float64), CORES)
    # About 1.2 faults per draw: some 30 % of the draws are fault-free.
    faults = NeuronCrash(0.01, layers=(0, 1, 2, 3)) + SynapseStuck(0.002, 0.002) + \
        WeightBitFlip(0.0005) + CoreFailure(0.01)
    plan = _plan(mapping, faults)
    for seed in range(3):
        batch = sample_faults(plan, np.random.default_rng(seed), 2000)
        n_records = sum(np.diff(p) for p in batch.ptr)
        assert n_records.sum() == batch.kind.size
        expected = np.zeros(2000, dtype=bool)
        for d in batch.draw:
            expected[d] = True
        np.testing.assert_array_equal(batch.draw_has_fault, expected)
        np.testing.assert_array_equal(batch.draw_has_fault, n_records > 0)
        assert 200 < (~expected).sum() < 1800
        # Fault-free rows (never passed by the simulator) still come out clean, exactly.
        X = np.random.default_rng(seed).normal(size=(5, widths[0]))
        cache = clean_cache(plan, X)
        free = np.flatnonzero(~expected)[:50]
        out = propagate(plan, cache, batch, free, free % 5)
        np.testing.assert_array_equal(out, cache.output[free % 5])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("semantics", ["silent", "paper", "stuck"])
def test_crash_of_a_neuron_that_is_already_zero_leaves_the_output_exactly_clean(dtype, semantics):
    """One draw per (layer, neuron, core failure or not), each holding that single crash, run
    on every input. A crash that leaves the neuron at 0 gives the clean output bitwise."""
    net = _net([6, 9, 7, 4], "relu", dtype, seed=5)
    L = net.n_layers
    plan = _plan(net, NeuronCrash(0.1, semantics=semantics, value=0.0))  # stuck at 0.0
    X = np.random.default_rng(1).normal(size=(8, 6))
    X[:, 2] = 0.0
    cache = clean_cache(plan, X)
    rec, cases = RecordBuilder(), []
    for layer in range(L):  # the input and the ReLU layers
        for i in range(plan.widths[layer]):
            for core_failure in ((False,) if layer == 0 else (False, True)):
                mode = CRASH_SILENT if core_failure else CRASH_MODES[semantics]
                rec.add_crash(layer, [len(cases)], [i], mode, 0.0)
                cases.append((layer, i, core_failure))
    batch = rec.build(len(cases), L)
    m = X.shape[0]
    row_draw = np.repeat(np.arange(len(cases)), m)
    row_input = np.tile(np.arange(m), len(cases))
    out = propagate(plan, cache, batch, row_draw, row_input)
    ref = reference_outputs(plan, cache.Y[0], batch, row_draw, row_input)
    np.testing.assert_allclose(out, ref, **_tolerances(dtype))
    noop_rows = changed = 0
    for r, (d, x) in enumerate(zip(row_draw, row_input)):
        layer, i, core_failure = cases[d]
        # A core failure is silent whatever the semantics; "paper" is silent on the input
        # layer; "stuck" here sticks at 0.
        noop = cache.Y[layer][x, i] == 0 and (
            core_failure or semantics in ("silent", "stuck") or layer == 0)
        if noop:
            np.testing.assert_array_equal(out[r], cache.output[x])  # bitwise
            noop_rows += 1
        elif not np.array_equal(out[r], cache.output[x]):
            changed += 1
    assert noop_rows > 20 and changed > 20


@pytest.mark.parametrize("mode", ["transient", "permanent"])
def test_rows_that_all_stop_early_give_the_clean_output(mode):
    """Regression: when every faulty row is back to clean before the output layer, propagate
    assigned an earlier layer's (empty) activations to the output and raised ValueError
    (simulate on inputs whose crashed entries are all 0 anyway)."""
    net = _net([6, 9, 7, 4], "relu", np.float64)
    X = np.zeros((3, 6))
    plan = _plan(net, NeuronCrash(0.3, layers=(0,)))
    cache = clean_cache(plan, X)
    batch = sample_faults(plan, np.random.default_rng(0), 30)
    row_draw, row_input = _rows(batch, 3, mode)
    assert row_draw.size > 0
    out = propagate(plan, cache, batch, row_draw, row_input)
    np.testing.assert_array_equal(out, cache.output[row_input])
    result = neurosim.simulate(net, NeuronCrash(0.3, layers=(0,)), X, metric="linf", eps=1e-9,
                               n_samples=20, mode=mode)
    assert result.n_faulty_pairs > 0 and result.n_failures == 0 and result.error_mean == 0.0


# --- integer words -----------------------------------------------------------------------------

BITS = 4


@pytest.mark.parametrize("layout", ["twos_complement", "loihi_mixed", "excitatory", "inhibitory"])
def test_flip_words_matches_reference(layout):
    if layout == "twos_complement":
        q, step, sign = np.arange(-2 ** (BITS - 1), 2 ** (BITS - 1)), 1, 0
    elif layout == "loihi_mixed":
        q, step, sign = np.arange(-2 ** BITS, 2 ** BITS - 1, 2), 2, 0
    elif layout == "excitatory":
        q, step, sign = np.arange(0, 2 ** BITS), 1, 1
    else:
        q, step, sign = -np.arange(0, 2 ** BITS), 1, -1
    masks = np.arange(2 ** BITS)
    Q, M = np.meshgrid(q, masks, indexing="ij")
    Q = Q.astype(np.int32)  # as LayerQuantization stores them
    got = flip_words(Q, M, BITS, step, sign)
    want = reference_word_flip(Q, M, BITS, step, sign)
    np.testing.assert_array_equal(got, want)
    # Every mask gives a distinct word; mask 0 changes nothing; flipping twice restores Q.
    for row in want:
        assert np.unique(row).size == 2 ** BITS
    np.testing.assert_array_equal(got[:, 0], Q[:, 0])
    np.testing.assert_array_equal(flip_words(got, M, BITS, step, sign), Q)
    # The results stay representable (every representable value is reached).
    np.testing.assert_array_equal(np.unique(got), np.sort(q))


def test_reference_word_flip_by_hand():
    # 4-bit two's complement: 3 = 0011, flip bit 3 -> 1011 = -5; -8 = 1000, flip bit 0 -> -7.
    np.testing.assert_array_equal(reference_word_flip([3, -8], [8, 1], 4, 1, 0), [-5, -7])
    # Loihi mixed: Q = 6 is word 3 = 0011; flip bit 2 -> 0111 = 7 -> Q = 14.
    np.testing.assert_array_equal(reference_word_flip([6], [4], 4, 2, 0), [14])
    # Magnitude words: -5 in an inhibitory layer is 0101; flip bit 1 -> 0111 -> -7.
    np.testing.assert_array_equal(reference_word_flip([-5, 0], [2, 8], 4, 1, -1), [-7, -8])


# --- sampler statistics --------------------------------------------------------------------------

def _within(count, n, p, k=5.0):
    mean, sd = n * p, np.sqrt(n * p * (1 - p))
    assert abs(count - mean) <= k * sd + 1e-9, (count, mean, sd)


def _check_csr(batch, L):
    for l in range(L + 1):
        ptr = batch.ptr[l]
        assert ptr.size == batch.n_draws + 1
        for d in np.flatnonzero(np.diff(ptr)):
            sl = slice(ptr[d], ptr[d + 1])
            assert (batch.layer[sl] == l).all() and (batch.draw[sl] == d).all()
    assert sum(int(p[-1] - p[0]) for p in batch.ptr) == batch.kind.size


@pytest.mark.parametrize("p", [0.02, 0.3])  # the rejection path and the crowded path
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crash_counts_positions_and_uniformity(p, seed):
    widths = [30, 50, 20, 5]
    net = _net(widths, "relu", np.float64)
    plan = _plan(net, NeuronCrash(p, layers=(0, 1, 2, 3)))
    n_draws = 3000
    batch = sample_faults(plan, np.random.default_rng(seed), n_draws)
    _check_csr(batch, 3)
    assert (batch.kind == REC_CRASH).all()
    for l, n in enumerate(widths):
        in_l = batch.layer == l
        _within(int(in_l.sum()), n * n_draws, p)
        a, d = batch.out_start[in_l], batch.draw[in_l]
        assert a.min() >= 0 and a.max() < n
        # Positions within a draw are distinct.
        assert np.unique(d * n + a).size == a.size
        # Per-draw counts are Binomial(n, p): the mean and the variance.
        counts = np.bincount(d, minlength=n_draws)
        assert abs(counts.mean() - n * p) < 5 * np.sqrt(n * p * (1 - p) / n_draws)
        assert counts.var() == pytest.approx(n * p * (1 - p), rel=0.2)
        # Every neuron is hit equally often (chi-square, 1e-6 false alarm).
        hits = np.bincount(a, minlength=n)
        expected = a.size / n
        chi2 = float(((hits - expected) ** 2 / expected).sum())
        assert chi2 < stats.chi2.isf(1e-6, n - 1), (l, hits)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", ["network", "cores"])
def test_stuck_synapses_share_and_values(seed, target):
    p0, p1 = 0.01, 0.03
    net = _net([8, 12, 6], "tanh", np.float64, seed=seed)
    net.layers[0].W[0, :3] = 0.0  # zero weights become positive when stuck at max
    obj = net if target == "network" else map_network(net, CORES)
    plan = _plan(obj, SynapseStuck(p0, p1))
    n_draws = 4000
    batch = sample_faults(plan, np.random.default_rng(seed), n_draws)
    _check_csr(batch, 2)
    assert (batch.kind == REC_WEIGHT).all()
    n_syn = 8 * 12 + 12 * 6
    _within(batch.kind.size, n_syn * n_draws, p0 + p1)
    to_max = batch.value != 0
    _within(int(to_max.sum()), batch.kind.size, p1 / (p0 + p1))
    for l in (1, 2):
        W = plan.W[l - 1]
        sel = batch.layer == l
        a, b, v = batch.out_start[sel], batch.in_start[sel], batch.value[sel]
        n_in = W.shape[1]
        assert np.unique(batch.draw[sel] * W.size + a * n_in + b).size == a.size
        mx = v != 0
        negative = W[a[mx], b[mx]] < 0
        expected = np.where(negative, -plan.max_weight_neg[l - 1], plan.max_weight_pos[l - 1])
        np.testing.assert_allclose(v[mx], expected, rtol=1e-12)
        np.testing.assert_array_equal(np.sign(v[mx]), np.where(negative, -1.0, 1.0))
        if target == "network":
            assert plan.max_weight_pos[l - 1] == plan.max_weight_neg[l - 1] == np.abs(W).max()
        else:
            q = obj.quantization[l - 1]
            assert plan.max_weight_pos[l - 1] == q.scale * q.q_max
            assert plan.max_weight_neg[l - 1] == q.scale * -q.q_min
    zero_w = (batch.layer == 1) & (batch.out_start == 0) & (batch.in_start < 3) & to_max
    assert zero_w.any() and (batch.value[zero_w] > 0).all()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("profile", ["cores", "loihi"])
def test_bit_flip_positions_cover_every_bit_uniformly(seed, profile):
    p_bit = 0.01
    mapping = _target([6, 9, 7, 4], "relu", np.float64, profile, seed=seed)
    plan = _plan(mapping, WeightBitFlip(p_bit))
    n_draws = 3000
    batch = sample_faults(plan, np.random.default_rng(seed), n_draws)
    _check_csr(batch, 3)
    assert (batch.kind == REC_WEIGHT).all()
    bits = mapping.profile.weight_bits
    per_bit = np.zeros(bits, dtype=np.int64)
    n_syn = 0
    for l in range(1, 4):
        q = mapping.quantization[l - 1]
        n_syn += q.Q.size
        sign = 0
        if mapping.profile.mixed_sign_drop_lsb and q.sign_mode != "mixed":
            sign = -1 if q.sign_mode == "inhibitory" else 1
        sel = np.flatnonzero(batch.layer == l)
        assert np.unique(batch.draw[sel] * q.Q.size + batch.out_start[sel] * q.Q.shape[1]
                         + batch.in_start[sel]).size == sel.size  # one record per flipped word
        for k in sel:
            old = int(q.Q[batch.out_start[k], batch.in_start[k]])
            new_f = batch.value[k] / q.scale
            new = int(round(new_f))
            assert abs(new - new_f) < 1e-9 and q.q_min <= new <= q.q_max
            mask = int(word_of(old, bits, q.step, sign), 2) ^ int(word_of(new, bits, q.step, sign), 2)
            assert mask != 0
            assert reference_word_flip([old], [mask], bits, q.step, sign)[0] == new
            for j in range(bits):
                per_bit[j] += (mask >> j) & 1
    for j in range(bits):
        assert per_bit[j] > 0
        _within(int(per_bit[j]), n_syn * n_draws, p_bit)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_failures_with_spares(seed):
    """A used core is out when it fails and the chip's spare is down or taken by a lower core:
    P = p (1 - (1 - p)^(rank + 1)), rank = used cores before it on its chip."""
    p = 0.2
    mapping = map_network(_net([6, 9, 7, 4], "relu", np.float64), CORES)
    assert mapping.chips_needed == 2
    plan = _plan(mapping, CoreFailure(p))
    n_draws = 6000
    batch = sample_faults(plan, np.random.default_rng(seed), n_draws)
    _check_csr(batch, 3)
    assert ((batch.kind == REC_CRASH) & (batch.crash_mode == CRASH_SILENT)).all()
    out = np.zeros((n_draws, len(mapping.cores)), dtype=bool)
    for core in mapping.cores:
        sel = batch.core == core.core_id
        assert (batch.layer[sel] == core.layer).all()
        assert ((batch.out_start[sel] >= core.out_start) & (batch.out_start[sel] < core.out_stop)).all()
        per_draw = np.bincount(batch.draw[sel], minlength=n_draws)
        assert set(np.unique(per_draw)) <= {0, core.n_neurons}  # the whole core or nothing
        out[:, core.core_id] = per_draw > 0
    for core in mapping.cores:
        rank = sum(1 for c in mapping.cores if c.chip == core.chip and c.core_id < core.core_id)
        _within(int(out[:, core.core_id].sum()), n_draws, p * (1 - (1 - p) ** (rank + 1)))
    for chip in {c.chip for c in mapping.cores}:
        ids = [c.core_id for c in mapping.cores if c.chip == chip]
        lost = out[:, ids].sum(axis=1)
        # Losing k cores needs k + 1 failures (the spare works) or k failures (it does not).
        assert lost.max() <= len(ids)
        # Nothing lost: no used core failed, or one did and the spare works.
        _within(int((lost == 0).sum()), n_draws, (1 - p) ** len(ids) * (1 + len(ids) * p))


def test_crossbar_tile_failures_drop_weight_records_inside():
    mapping = map_network(_net([6, 9, 7, 4], "relu", np.float64), CROSSBAR)
    plan = _plan(mapping, SynapseStuck(0.1, 0.1) + WeightBitFlip(0.05) + CoreFailure(0.3))
    batch = sample_faults(plan, np.random.default_rng(0), 300)
    _check_csr(batch, 3)
    tiles = np.flatnonzero(batch.kind == REC_TILE)
    assert tiles.size > 50
    for t in tiles:
        same = (batch.draw == batch.draw[t]) & (batch.layer == batch.layer[t]) & \
            (batch.kind == REC_WEIGHT)
        inside = (batch.out_start >= batch.out_start[t]) & (batch.out_start < batch.out_stop[t]) & \
            (batch.in_start >= batch.in_start[t]) & (batch.in_start < batch.in_stop[t])
        assert not (same & inside).any()
    # Tiles are mapped cores, whole.
    boxes = {(c.layer, c.out_start, c.out_stop, c.in_start, c.in_stop): c.core_id
             for c in mapping.cores}
    for t in tiles:
        key = (batch.layer[t], batch.out_start[t], batch.out_stop[t], batch.in_start[t],
               batch.in_stop[t])
        assert boxes[tuple(int(v) for v in key)] == batch.core[t]


# --- reproducibility -----------------------------------------------------------------------------

def _batches_equal(b1, b2):
    assert b1.n_draws == b2.n_draws
    for name in ("layer", "draw", "kind", "out_start", "out_stop", "in_start", "in_stop", "value",
                 "crash_mode", "core"):
        np.testing.assert_array_equal(getattr(b1, name), getattr(b2, name))
    assert len(b1.ptr) == len(b2.ptr)
    for p1, p2 in zip(b1.ptr, b2.ptr):
        np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("target", ["cores", "loihi", "crossbar"])
def test_sample_faults_same_seed_same_batch(target):
    mapping = _target([6, 9, 7, 4], "relu", np.float64, target)
    plan = _plan(mapping, FAULTS["all"](3))
    b1 = sample_faults(plan, np.random.default_rng(42), 500)
    b2 = sample_faults(plan, np.random.default_rng(42), 500)
    b3 = sample_faults(plan, np.random.default_rng(43), 500)
    _batches_equal(b1, b2)
    assert b1.kind.size > 100
    with pytest.raises(AssertionError):
        _batches_equal(b1, b3)


def _without_elapsed(result) -> str:
    d = result.to_dict()
    d.pop("elapsed_s")
    return json.dumps(d, sort_keys=True)


_SIM_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_kernels import simulate_for_reproducibility
    print("RESULT" + json.dumps(simulate_for_reproducibility()))
""")


def simulate_for_reproducibility(output_dir=None, checkpoint_every_s=10.0) -> list:
    """A few simulate runs (several blocks each); their to_dict() without elapsed_s."""
    net = _net([6, 9, 7, 4], "tanh", np.float64, seed=3)
    mapping = map_network(net, CORES)
    X = np.random.default_rng(0).normal(size=(1100, 6))
    y = np.random.default_rng(1).integers(0, 4, size=1100)
    faults = NeuronCrash(0.02, layers=(0, 1, 2, 3)) + SynapseStuck(0.01, 0.01) + \
        WeightBitFlip(0.005) + CoreFailure(0.02)
    out = []
    for k, (mode, metric, n) in enumerate([("transient", "flip", 20), ("permanent", "linf", 20)]):
        path = None if output_dir is None else os.path.join(output_dir, f"run{k}.h5")
        res = neurosim.simulate(mapping, faults, X, y, metric=metric, eps=0.05 if metric == "linf"
                                else None, n_samples=n, seed=123, mode=mode, output=path,
                                checkpoint_every_s=checkpoint_every_s)
        assert res.n_faulty_pairs > 0
        d = res.to_dict()
        d.pop("elapsed_s")
        out.append(d)
    return out


def test_simulate_same_seed_same_result_whatever_the_checkpoint_interval(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    every_block = simulate_for_reproducibility(str(tmp_path / "a"), checkpoint_every_s=0.0)
    never = simulate_for_reproducibility(str(tmp_path / "b"), checkpoint_every_s=1e9)
    no_file = simulate_for_reproducibility()
    s = json.dumps(every_block, sort_keys=True)
    assert s == json.dumps(never, sort_keys=True) == json.dumps(no_file, sort_keys=True)
    # The runs span several blocks, so the checkpoint interval could have mattered.
    assert every_block[0]["n_pairs"] == 20 * 1100 and 20 * 1100 > 8192


def test_simulate_same_seed_same_result_whatever_the_thread_count():
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    script = _SIM_SCRIPT.format(tests=tests_dir)
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
        results.append(json.loads(line[len("RESULT"):]))
    assert json.dumps(results[0], sort_keys=True) == json.dumps(results[1], sort_keys=True)
    here = simulate_for_reproducibility()
    assert json.dumps(here, sort_keys=True) == json.dumps(results[0], sort_keys=True)
