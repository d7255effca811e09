"""Spiking execution: the neuron equations as documented, the Numba time loop against its
NumPy reference, the fast layer-by-layer run against the step-by-step reference, ANN-to-SNN
conversion, and the errors."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import neurosim as ns
from neurosim import spiking as sp
from neurosim.errors import ValidationError
from neurosim.kernels.spiking import neuron_scan
from neurosim.spiking.fast import run_fast


def _one_neuron(model, T, current, dtype=np.float64):
    """A 1-input, 1-neuron network read by spike count: the neuron receives ``current``."""
    net = ns.Network.from_arrays([np.ones((1, 1))], [np.zeros(1)], ["identity"], dtype=dtype)
    snn = sp.SpikingNetwork(net, [model], T=T, readout="count")
    return snn, np.full((1, 1), current)


@pytest.mark.parametrize("T,expected", [(2, 0), (3, 1), (5, 1), (6, 2), (7, 2), (8, 3),
                                        (10, 3), (11, 4)])
def test_if_with_reset_by_subtraction_counts_by_hand(T, expected):
    # I = 3/8 per step, threshold 1: v = 3/8, 6/8, 9/8 -> spike (1/8), 4/8, 7/8, 10/8 -> spike
    # (2/8), 5/8, 8/8 -> spike (0), 3/8, 6/8, 9/8 -> spike: steps 3, 6, 8, 11 (v >= threshold
    # fires: step 8 reaches the threshold exactly).
    snn, x = _one_neuron(sp.IF(threshold=1.0), T, 0.375)
    for run in (sp.run, run_fast):
        out, counts = run(snn, x, record=True)
        assert counts[1][0, 0] == expected
        assert out[0, 0] == expected / T


def test_reset_to_a_value_starts_there_and_returns_there():
    # v starts at v_reset = -1/2; I = 1/2: v = 0, 1/2, 1 -> spike (-1/2), 0, 1/2, 1 -> spike.
    snn, x = _one_neuron(sp.IF(threshold=1.0, reset="value", v_reset=-0.5), 6, 0.5)
    for run in (sp.run, run_fast):
        assert run(snn, x, record=True)[1][1][0, 0] == 2
    snn, x = _one_neuron(sp.IF(threshold=1.0, reset="value", v_reset=-0.5), 5, 0.5)
    assert sp.run(snn, x, record=True)[1][1][0, 0] == 1


def _continuous_form(kind, params, current, T, dt):
    """Spike steps of the documented continuous-time equations, stepped by forward Euler as
    written there (not through NeuronModel.params), in float64."""
    v, i, spikes = params.get("v_reset", 0.0), 0.0, []
    for t in range(1, T + 1):
        if kind == "if":
            v = v + dt * params["r"] * current
        elif kind == "lif":
            v = v + dt / params["tau"] * (params["v_leak"] - v + params["r"] * current)
        else:
            i = i + dt / params["tau_syn"] * (params["w_in"] * current - i)
            v = v + dt / params["tau_mem"] * (params["v_leak"] - v + params["r"] * i)
        if v >= params["threshold"]:
            spikes.append(t)
            v = v - params["threshold"] if params["reset"] == "subtract" else params["v_reset"]
    return spikes


@pytest.mark.parametrize("kind,params", [
    ("if", dict(r=0.7, threshold=0.9, reset="subtract")),
    ("lif", dict(tau=5.0, v_leak=0.2, r=1.3, threshold=0.8, reset="subtract")),
    ("lif", dict(tau=3.0, v_leak=0.0, r=2.0, threshold=0.5, reset="value", v_reset=-0.2)),
    ("cuba_lif", dict(tau_syn=4.0, tau_mem=6.0, v_leak=0.1, r=1.5, w_in=2.0, threshold=0.6,
                      reset="subtract")),
    ("cuba_lif", dict(tau_syn=2.0, tau_mem=2.5, v_leak=0.0, r=1.0, w_in=1.0, threshold=0.4,
                      reset="value", v_reset=0.05)),
])
@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_the_documented_equations_give_the_same_spikes(kind, params, dt):
    rng = np.random.default_rng(abs(hash((kind, dt))) % 2**32)
    model = sp.make_neuron({"kind": kind, **params})
    for current in rng.uniform(0.2, 1.5, size=5):
        T = 40
        want = _continuous_form(kind, {"v_reset": 0.0, **params}, current, T, dt)
        net = ns.Network.from_arrays([np.ones((1, 1))], [np.zeros(1)], ["identity"])
        snn = sp.SpikingNetwork(net, [model], T=T, dt=dt, readout="count")
        for t_end in sorted(set(want) | {T}):  # the count up to each spike step
            got = sp.run(snn.with_T(t_end), np.full((1, 1), current), record=True)[1][1][0, 0]
            assert got == sum(1 for s in want if s <= t_end), (current, t_end)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_the_numba_time_loop_equals_its_numpy_reference_exactly(dtype, seed):
    rng = np.random.default_rng(seed)
    m = 17
    models = [sp.IF(threshold=rng.uniform(0.3, 1.0, m), r=rng.uniform(0.5, 2, m)),
              sp.LIF(tau=rng.uniform(1.0, 9.0, m), v_leak=rng.normal(0, 0.1, m),
                     threshold=0.7, reset="value", v_reset=rng.normal(0, 0.1, m)),
              sp.CubaLIF(tau_syn=rng.uniform(1, 5, m), tau_mem=rng.uniform(1, 9, m),
                         w_in=rng.uniform(0.5, 2, m), threshold=0.4)]
    for model in models:
        I = rng.normal(0.3, 0.6, size=(50, 13, m)).astype(dtype)
        p = {k: v.astype(dtype) for k, v in model.params(m, 0.75).items()}
        want = sp.neuron_loop(I, p, model.reset == "subtract")
        got = np.empty_like(I)
        none = np.zeros((0, m), dtype=dtype)
        neuron_scan(I, p["syn_keep"], p["syn_gain"], p["keep"], p["leak"], p["gain"],
                    p["threshold"], p["v_reset"], model.reset == "subtract", got,
                    np.full(13, -1), none, none, none)
        assert 0 < want.sum() < want.size
        np.testing.assert_array_equal(got, want)
        # rows with factors of their own (threshold and leak faults): a table row each
        prow = np.array([-1, 0, -1, 2, 1, -1, -1, 0, -1, -1, 2, -1, -1])
        tables = {"keep": rng.uniform(0.5, 1.0, (3, m)), "leak": rng.normal(0, 0.05, (3, m)),
                  "threshold": rng.uniform(0.2, 1.2, (3, m))}
        tables = {k: v.astype(dtype) for k, v in tables.items()}
        per_row = dict(p)
        for name, table in tables.items():
            per_row[name] = np.stack([p[name] if k < 0 else table[k] for k in prow])
        want = sp.neuron_loop(I, per_row, model.reset == "subtract")
        neuron_scan(I, p["syn_keep"], p["syn_gain"], p["keep"], p["leak"], p["gain"],
                    p["threshold"], p["v_reset"], model.reset == "subtract", got, prow,
                    tables["keep"], tables["leak"], tables["threshold"])
        np.testing.assert_array_equal(got, want)


def _dyadic_network(seed):
    """Weights, biases and inputs on a 1/64 grid: every sum is exact in float32, in any order."""
    rng = np.random.default_rng(seed)
    W = [rng.integers(-40, 41, size=s) / 64 for s in ((12, 8), (9, 12), (4, 9))]
    b = [rng.integers(-8, 9, size=s[0]) / 64 for s in ((12,), (9,), (4,))]
    net = ns.Network.from_arrays(W, b, ["relu", "relu", "identity"], dtype=np.float32)
    X = rng.integers(0, 65, size=(30, 8)) / 64
    return net, X


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("encoding", ["current", "poisson"])
def test_the_fast_run_equals_the_reference_exactly_when_sums_are_exact(seed, encoding):
    net, X = _dyadic_network(seed)
    # thresholds and tau on the grid too: dt / tau = 1/2, 1/4 are exact factors
    for neurons in ([sp.IF(threshold=0.5), sp.IF(threshold=1.0, reset="value"), None],
                    [sp.LIF(tau=2.0, threshold=0.25), sp.CubaLIF(tau_syn=2.0, tau_mem=4.0,
                                                                 threshold=0.125), None]):
        snn = sp.SpikingNetwork(net, neurons, T=24, encoding=encoding, seed=seed)
        a, ca = sp.run(snn, X, record=True)
        b, cb = run_fast(snn, X, record=True)
        assert ca[1].sum() > 0 and ca[2].sum() > 0
        np.testing.assert_array_equal(b, a)
        for l in (1, 2):
            np.testing.assert_array_equal(cb[l], ca[l])


@pytest.mark.parametrize("encoding", ["current", "poisson"])
def test_the_fast_run_matches_the_reference_on_the_bundled_models(encoding):
    X, _ = ns.load_digits_test()
    for net in (ns.load_digits_model(), ns.load_digits_conv_model()):  # conv: max pools gated
        snn = sp.convert(net, X[:100], T=16, encoding=encoding)
        a, ca = sp.run(snn, X[100:160], record=True)
        b, cb = run_fast(snn, X[100:160], record=True)
        # the same spikes everywhere (the currents differ at most in the last bit, from
        # matrix products of T x n rows instead of n), readouts to float32 rounding
        for l in range(1, net.n_layers):
            assert ca[l].sum() > 0
            np.testing.assert_array_equal(cb[l], ca[l])
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_the_result_does_not_depend_on_numba_threads():
    X, _ = ns.load_digits_test()
    snn = sp.convert(ns.load_digits_model(), X[:100], T=16, neuron=sp.LIF(tau=8.0, threshold=0.9))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_fast(snn, X[:80])
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        every = run_fast(snn, X[:80])
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, every)


@pytest.mark.parametrize("loader", [ns.load_digits_model, ns.load_digits_conv_model])
def test_a_converted_bundled_model_is_within_one_point_of_its_ann_at_some_T_up_to_64(loader):
    X, y = ns.load_digits_test()
    cal, ev = slice(0, 198), slice(198, None)  # calibrate on one half, score the other
    net = loader()
    ann = float(np.mean(net.predict(X[ev]) == y[ev]))
    snn = sp.convert(net, X[cal])
    accs = {T: float(np.mean(np.argmax(run_fast(snn.with_T(T), X[ev]), 1) == y[ev]))
            for T in (8, 16, 32, 64)}
    assert max(accs.values()) >= ann - 0.01, (ann, accs)


def test_the_converted_readout_approaches_the_ann_output_as_T_grows():
    X, _ = ns.load_digits_test()
    net = ns.load_digits_model()
    snn = sp.convert(net, X[:198])
    z = net.forward(X[198:])
    err = [float(np.mean(np.abs(run_fast(snn.with_T(T), X[198:]) - z))) for T in (8, 32, 128)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.05 * float(np.mean(np.abs(z)))


def test_conversion_scales_are_the_activation_percentiles():
    X, _ = ns.load_digits_test()
    net = ns.load_digits_model()
    ys = net.forward(X, return_all=True)
    scales = sp.layer_scales(net, X, 99.0)
    assert scales == pytest.approx([np.percentile(ys[1], 99.0), np.percentile(ys[2], 99.0)])
    snn = sp.convert(net, X, percentile=99.0)
    np.testing.assert_allclose(snn.network.weights[1], net.weights[1] * scales[0] / scales[1],
                               rtol=1e-6)
    np.testing.assert_allclose(snn.network.weights[2], net.weights[2] * scales[1], rtol=1e-6)
    assert snn.network.metadata["snn_conversion"]["scales"] == scales


def test_poisson_spike_trains_are_keyed_by_seed_and_input():
    X, _ = ns.load_digits_test()
    snn = sp.convert(ns.load_digits_model(), X[:50], T=12, encoding="poisson", seed=3)
    a = snn.input_spikes(X[:5], np.arange(5))
    b = snn.input_spikes(X[[3]], np.array([3]))
    np.testing.assert_array_equal(a[:, 3], b[:, 0])  # a row's train: its input index alone
    other = sp.SpikingNetwork(snn.network, snn.neurons, T=12, encoding="poisson", seed=4)
    assert not np.array_equal(other.input_spikes(X[:5], np.arange(5)), a)
    rate = snn.with_T(4000).input_spikes(X[:2], np.arange(2)).mean(axis=0)
    assert np.max(np.abs(rate - X[:2])) < 4 * np.sqrt(0.25 / 4000)


def test_bad_spiking_arguments_are_clear_errors():
    net = ns.Network.random([3, 4, 2], seed=0)
    with pytest.raises(ValidationError, match="T"):
        sp.SpikingNetwork(net, "if", T=0)
    with pytest.raises(ValidationError, match="dt / tau"):
        sp.SpikingNetwork(net, sp.LIF(tau=0.5), dt=1.0)
    with pytest.raises(ValidationError, match="Unknown neuron model 'lfi'"):
        sp.SpikingNetwork(net, "lfi")
    with pytest.raises(ValidationError, match="has 3 values; the layer has 4"):
        sp.SpikingNetwork(net, sp.IF(threshold=[1.0, 1.0, 1.0]))
    with pytest.raises(ValidationError, match="no parameter 'tua'"):
        sp.make_neuron({"kind": "lif", "tua": 3.0})
    with pytest.raises(ValidationError, match="threshold"):
        sp.IF(threshold=-1.0)
    with pytest.raises(ValidationError, match="reset"):
        sp.IF(reset="zero")
    with pytest.raises(ValidationError, match="membrane"):
        sp.SpikingNetwork(net, ["if", "if"])
    with pytest.raises(ValidationError, match="count"):
        sp.SpikingNetwork(net, ["if", None], readout="count")
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        sp.run(sp.SpikingNetwork(net, "if", encoding="poisson"), np.full((1, 3), 2.0))
    with pytest.raises(ValidationError, match="layer 1 is tanh"):
        sp.convert(ns.Network.random([3, 4, 2], "tanh", seed=0), np.zeros((2, 3)))


# --- under faults ---------------------------------------------------------------------------

def _reference_rows(plan, snn, X, batch, row_draw, row_input):
    """Every faulty row through the step-by-step reference with its draw's faults written out
    literally: its own weight matrices, crashed outputs forced at their steps, its neurons'
    threshold and leak factors."""
    from neurosim.backends.records import apply_weight_records
    from neurosim.kernels.codes import (CRASH_PAPER, CRASH_STUCK, NEURON_LEAK, REC_CRASH,
                                        REC_NEURON)

    n, L, T = row_draw.size, plan.n_layers, snn.T
    weights = [np.stack([apply_weight_records(plan.W[l - 1], batch, l, int(d)) for d in row_draw])
               for l in range(1, L + 1)]
    forced = [np.full((T, n, w), np.nan) for w in plan.widths]
    bias_only = [np.zeros((n, w), dtype=bool) for w in plan.widths[1:]]
    factors = [{"threshold": np.full((n, w), np.nan), "leak": np.full((n, w), np.nan)}
               for w in plan.widths[1:]]
    for r, d in enumerate(row_draw):
        for l in range(L + 1):
            sl = batch.records(l, int(d))
            for f in range(sl.start, sl.stop):
                i, mode, value = batch.out_start[f], batch.crash_mode[f], batch.value[f]
                if batch.kind[f] == REC_NEURON:
                    name = "leak" if mode == NEURON_LEAK else "threshold"
                    factors[l - 1][name][r, i] = value
                elif batch.kind[f] != REC_CRASH:
                    continue
                elif mode == CRASH_PAPER and l > 0:
                    bias_only[l - 1][r, i] = True
                else:
                    steps = (slice(None) if batch.in_stop[f] == 0 else
                             slice(batch.in_start[f], batch.in_stop[f]))
                    forced[l][steps, r, i] = value if mode == CRASH_STUCK else 0.0
    return sp.run(snn, X[row_input], inputs=row_input, weights=weights, forced=forced,
                  bias_only=bias_only, factors=factors)


FAULTY = [ns.NeuronCrash(0.05, layers=(0, 1, 2)) + ns.SynapseStuck(0.01, 0.01),
          ns.NeuronCrash(0.04, semantics="stuck", value=1.0, layers=(1, 2)),  # saturated
          ns.NeuronCrash(0.05, semantics="paper", layers=(1, 2, 3)) + ns.SynapseStuck(0.02, 0.0),
          ns.NeuronCrash(0.08, layers=(0, 1, 2, 3), steps=1),  # one lost spike
          ns.NeuronCrash(0.06, semantics="stuck", value=1.0, layers=(0, 1, 2), steps=3)
          + ns.SynapseStuck(0.01, 0.0),
          ns.ThresholdPerturbation(0.1, factor=(0.5, 1.5)) + ns.SynapseStuck(0.005, 0.005),
          ns.LeakPerturbation(0.2, lognormal=0.5) + ns.ThresholdPerturbation(0.1, uniform=(0.3, 2))
          + ns.NeuronCrash(0.03, steps=2, layers=(1, 2, 3))]
FAULTY += [ns.ThresholdPerturbation(0.1, factor=(0.5, 1.5)), ns.LeakPerturbation(0.3, factor=3.0)]
FAULTY_IDS = ["dead+stuck", "saturated", "paper", "one-step", "saturated-3-steps+stuck",
              "threshold+stuck", "leak+threshold+steps", "threshold", "leak"]


@pytest.mark.parametrize("faults", FAULTY, ids=FAULTY_IDS)
@pytest.mark.parametrize("encoding", ["current", "poisson", "li"])
def test_faulty_rows_equal_the_reference_with_the_faults_written_out(faults, encoding):
    """(``li``: constant-current input read by a leaky integrator, its factors dyadic.)"""
    from neurosim.backends import get_backend
    from neurosim.plan import build_plan
    from neurosim.sampler import sample_block

    for seed in range(3):
        net, X = _dyadic_network(seed)
        li = dict(readout="li", li=sp.LI(tau=2.0, r=0.5, v_leak=0.25)) if encoding == "li" \
            else {}
        snn = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.LIF(tau=2.0, threshold=0.25),
                                      None], T=16, encoding="poisson" if encoding == "poisson"
                                else "current", seed=seed, **li)
        plan = build_plan(snn, faults, fields=False)
        m = X.shape[0]
        batch, _, _, row_draw, row_input = sample_block(plan, seed, 0, 4, m, "transient")
        assert row_draw.size > 10
        want = _reference_rows(plan, snn, X, batch, row_draw, row_input)
        for name in ("numpy", "numba"):
            backend = get_backend(name)
            cache = backend.clean_cache(plan, X)
            np.testing.assert_array_equal(cache.output, sp.run(snn, X))
            got = backend.propagate(plan, cache, batch, row_draw, row_input)
            np.testing.assert_array_equal(got, want)
        assert np.any(got != cache.output[row_input])


def test_simulate_and_certify_take_a_spiking_network():
    X, y = ns.load_digits_test()
    snn = sp.convert(ns.load_digits_conv_model(), X[:198], T=16)
    faults = ns.NeuronCrash(0.01) + ns.SynapseStuck(0.001, 0.001)
    kw = dict(n_samples=6, seed=2, progress=False)
    a = ns.simulate(snn, faults, X[198:260], y[198:260], backend="numpy", **kw)
    b = ns.simulate(snn, faults, X[198:260], y[198:260], backend="numba", **kw)
    assert a.n_faulty_pairs > 0 and a.n_failures > 0
    assert (a.n_failures, a.n_faulty_pairs) == (b.n_failures, b.n_faulty_pairs)
    assert a.clean_accuracy == pytest.approx(np.mean(snn.predict(X[198:260]) == y[198:260]))
    net, Xs = _dyadic_network(2)  # certify: strata and the exact single-fault enumeration
    small = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.IF(threshold=0.5), None], T=8)
    ys = small.predict(Xs)
    cert = ns.certify(small, ns.NeuronCrash(0.002), X=Xs, y=ys, eps=0.5, delta=0.2,
                      metric="flip", n_samples=20, seed=0, progress=False)
    assert cert.empirical.rows > 0


def test_a_backend_without_spiking_says_so():
    from neurosim.backends.base import Backend
    from neurosim.errors import BackendUnsupportedError
    from neurosim.plan import build_plan

    class Graded(Backend):
        name = "graded-only"

    net, _ = _dyadic_network(0)
    plan = build_plan(sp.SpikingNetwork(net, "if"), ns.NeuronCrash(0.1))
    with pytest.raises(BackendUnsupportedError, match="graded-only backend does not run spiking"):
        Graded().check(plan)


def test_a_run_file_records_the_spiking_execution_and_resume_checks_it(tmp_path):
    net, X = _dyadic_network(1)
    y = np.zeros(X.shape[0], dtype=np.int64)
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.LIF(tau=2.0), None], T=8)
    out = tmp_path / "run.h5"
    kw = dict(n_samples=10, seed=0, progress=False, metric="linf", eps=0.1)
    first = ns.simulate(snn, ns.NeuronCrash(0.05), X, y, output=out, **kw)
    again = ns.simulate(snn, ns.NeuronCrash(0.05), X, y, output=out, resume=True, **kw)
    assert again.n_failures == first.n_failures
    with pytest.raises(ns.NeurosimError, match="spiking"):
        ns.simulate(snn.with_T(9), ns.NeuronCrash(0.05), X, y, output=out, resume=True, **kw)


def test_a_chip_with_dense_stuck_cells_runs_its_own_weights():
    """Permanent fields: each chip's stuck cells are written into its weights
    (Backend.chip_plan) and every input runs through them, as the reference does with those
    weights."""
    from neurosim.backends import get_backend
    from neurosim.fields import stuck_matrix
    from neurosim.plan import build_plan

    net, X = _dyadic_network(4)
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.LIF(tau=2.0, threshold=0.25), None],
                            T=12)
    plan = build_plan(snn, ns.SynapseStuck(0.2, 0.1, mode="permanent"))
    assert len(plan.fields) == 3
    keys = [11, 12345]
    for name in ("numpy", "numba"):
        got = get_backend(name).chip_outputs(plan, keys, X)
        for c, key in enumerate(keys):
            weights = list(plan.W)
            for f in plan.fields:
                weights[f.layer - 1] = stuck_matrix(weights[f.layer - 1], f, key)
            want = sp.run(snn, X, weights=weights)
            np.testing.assert_array_equal(got[c], want)
            assert not np.array_equal(want, sp.run(snn, X))


def _tiny_spiking(seed):
    rng = np.random.default_rng(100 + seed)
    net = ns.Network.from_arrays([rng.normal(0, 1, (4, 3)), rng.normal(0, 1, (3, 4))],
                                 [rng.normal(0.3, 0.2, 4), np.zeros(3)], ["relu", "identity"])
    X = rng.uniform(0, 1, size=(6, 3))
    return sp.SpikingNetwork(net, [sp.LIF(tau=3.0, threshold=0.4), None], T=10), X


def _exact_flip_rate(snn, X, p, stuck=None):
    """P(the predicted class changes) over inputs and every subset of crashed hidden neurons."""
    import itertools

    clean = np.argmax(sp.run(snn, X), axis=1)
    n, m = 4, X.shape[0]
    total = 0.0
    for crashed in itertools.product((0, 1), repeat=n):
        k = sum(crashed)
        forced = [None, np.where(np.array(crashed, dtype=bool)[None, :].repeat(m, 0),
                                 0.0 if stuck is None else stuck, np.nan), None]
        out = np.argmax(sp.run(snn, X, forced=forced), axis=1)
        total += p ** k * (1 - p) ** (n - k) * float(np.mean(out != clean))
    return total


@pytest.mark.parametrize("stuck", [None, 1.0], ids=["dead", "saturated"])
def test_the_interval_covers_the_exactly_enumerated_failure_rate(stuck):
    """Dead (silent) and saturated (stuck at 1) hidden neurons of a tiny spiking network:
    the exact failure rate by enumerating all 16 crash sets, against the 95 % Clopper-Pearson
    interval of 100 seeds. An exact 95 % interval misses in about 5 of 100; fewer than 90
    covered has probability 0.011 (binomial, n = 100, p = 0.95). Only networks whose exact
    rate lies in [0.02, 0.5] are used (a rate of 0 would be covered whatever the interval)."""
    p = 0.15
    nets = []
    for net_seed in range(40):
        snn, X = _tiny_spiking(net_seed)
        exact = _exact_flip_rate(snn, X, p, stuck)
        if 0.02 <= exact <= 0.5:
            nets.append((snn, X, exact))
        if len(nets) == 5:
            break
    assert len(nets) == 5
    covered = 0
    for seed in range(100):
        snn, X, exact = nets[seed % 5]
        faults = (ns.NeuronCrash(p, layers=(1,)) if stuck is None else
                  ns.NeuronCrash(p, layers=(1,), semantics="stuck", value=stuck))
        y = snn.predict(X)
        r = ns.simulate(snn, faults, X, y, n_samples=150, seed=seed, metric="flip",
                        progress=False)
        covered += r.ci_low <= exact <= r.ci_high
    assert covered >= 90, covered


def _exact_state_rate(snn, X, p, kind, values):
    """P(the predicted class changes) over inputs and every assignment of states to the 4
    hidden neurons: healthy (1 - p), or faulty (p) in one of the equally likely ``values``
    (threshold or leak factors; for ``step``, the one step at which the neuron is silent)."""
    import itertools

    clean = np.argmax(sp.run(snn, X), axis=1)
    m, T = X.shape[0], snn.T
    combos = list(itertools.product(range(len(values) + 1), repeat=4))  # 0: healthy
    rows = len(combos) * m
    forced = [None, np.full((T, rows, 4), np.nan), None]
    factors = [{"threshold": np.full((rows, 4), np.nan), "leak": np.full((rows, 4), np.nan)},
               None]
    weight = np.empty(len(combos))
    for c, states in enumerate(combos):
        sl = slice(c * m, (c + 1) * m)
        k = sum(s > 0 for s in states)
        weight[c] = (p / len(values)) ** k * (1 - p) ** (4 - k)
        for i, state in enumerate(states):
            if state == 0:
                continue
            if kind == "step":
                forced[1][values[state - 1], sl, i] = 0.0
            else:
                factors[0][kind][sl, i] = values[state - 1]
    out = np.argmax(sp.run(snn, np.tile(X, (len(combos), 1)),
                           inputs=np.tile(np.arange(m), len(combos)), forced=forced,
                           factors=factors), axis=1)
    flips = (out != np.tile(clean, len(combos))).reshape(len(combos), m).mean(axis=1)
    return float(np.sum(weight * flips))


@pytest.mark.parametrize("kind", ["threshold", "leak", "step"])
def test_the_interval_covers_the_exact_failure_rate_of_the_spiking_faults(kind):
    """Threshold and leak factors, and a crash of one time step, on the 4 hidden neurons of a
    tiny spiking network: the exact failure rate by enumerating every assignment of states,
    against the 95 % Clopper-Pearson interval of 100 seeds (floor 90, as above)."""
    p = 0.15 if kind != "step" else 0.4  # (one lost spike of a few is a smaller fault)
    values = {"threshold": (0.4, 2.5), "leak": (0.25, 3.0)}.get(kind)
    nets = []
    for net_seed in range(40):
        snn, X = _tiny_spiking(net_seed)
        snn = snn if kind != "step" else snn.with_T(4)
        vals = values if values is not None else tuple(range(snn.T))
        exact = _exact_state_rate(snn, X, p, kind, vals)
        if 0.02 <= exact <= 0.5:
            nets.append((snn, X, exact))
        if len(nets) == 5:
            break
    assert len(nets) == 5
    if kind == "step":
        faults = ns.NeuronCrash(p, layers=(1,), steps=1)
    else:
        cls = ns.ThresholdPerturbation if kind == "threshold" else ns.LeakPerturbation
        faults = cls(p, factor=values, layers=(1,))
    covered = 0
    for seed in range(100):
        snn, X, exact = nets[seed % 5]
        r = ns.simulate(snn, faults, X, snn.predict(X), n_samples=150, seed=seed, metric="flip",
                        progress=False)
        covered += r.ci_low <= exact <= r.ci_high
    assert covered >= 90, covered


@pytest.mark.parametrize("method,mode", [("sampled", "permanent"), ("stratified", "transient")])
def test_certify_keeps_the_network_spiking_when_it_rebuilds_its_plan(method, mode):
    """certify rebuilds its plan (a fresh chip per pair; records instead of fields): a hidden
    layer that never spikes (threshold out of reach) makes hidden crashes harmless when spiking,
    and harmful when graded, so a rebuilt graded plan would show failures."""
    net, X = _dyadic_network(0)
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=1e9), sp.IF(threshold=0.5), None], T=6)
    faults = ns.NeuronCrash(0.3, layers=(1,), mode=mode)
    y = snn.predict(X)
    graded = ns.certify(net, faults, X=X, y=net.predict(X), eps=0.5, delta=0.5, metric="flip",
                        n_samples=30, seed=0, method=method, progress=False)
    assert graded.empirical.estimate > 0
    cert = ns.certify(snn, faults, X=X, y=y, eps=0.5, delta=0.5, metric="flip", n_samples=30,
                      seed=0, method=method, progress=False)
    assert cert.empirical.rows > 0 and cert.empirical.estimate == 0


def test_the_spiking_faults_say_what_they_need():
    from neurosim.plan import build_plan

    net, X = _dyadic_network(0)
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.LIF(tau=2.0), None], T=8)
    for fault in (ns.ThresholdPerturbation(0.1, factor=2.0), ns.LeakPerturbation(0.1, factor=2.0),
                  ns.NeuronCrash(0.1, steps=1)):
        with pytest.raises(ValidationError, match="graded"):
            build_plan(net, fault)
    with pytest.raises(ValidationError, match="layer 3, which has no neuron model"):
        build_plan(snn, ns.ThresholdPerturbation(0.1, factor=2.0, layers=(3,)))
    with pytest.raises(ValidationError, match="layer 1, whose neurons have no leak"):
        build_plan(snn, ns.LeakPerturbation(0.1, factor=2.0, layers=(1,)))
    with pytest.raises(ValidationError, match="no spiking layer of this network has one"):
        build_plan(sp.SpikingNetwork(net, "if"), ns.LeakPerturbation(0.1, factor=2.0))
    with pytest.raises(ValidationError, match="longer than the run"):
        build_plan(snn, ns.NeuronCrash(0.1, steps=9))
    # by default: every spiking layer (threshold), every leaky one (leak)
    plan = build_plan(snn, ns.ThresholdPerturbation(0.1, factor=2.0)
                      + ns.LeakPerturbation(0.1, factor=2.0))
    assert [(g.kind, g.layer) for g in plan.groups] == [("threshold", 1), ("threshold", 2),
                                                        ("leak", 2)]


def test_a_leak_factor_scales_the_decay_rate_and_caps_it():
    from neurosim.spiking.neurons import scaled_parameters
    from neurosim.kernels.codes import NEURON_LEAK, NEURON_THRESHOLD

    lif = sp.LIF(tau=4.0, v_leak=0.2, threshold=0.5)
    p = lif.params(3, 1.0)  # keep 0.75, leak 0.05
    entry = {k: p[k].copy() for k in ("threshold", "keep", "leak")}
    scaled_parameters(entry, NEURON_LEAK, np.array([2.0, 0.5, 8.0]))
    np.testing.assert_allclose(entry["keep"], [0.5, 0.875, 0.0])  # 1 - min(1, f / 4)
    np.testing.assert_allclose(entry["leak"], [0.1, 0.025, 0.2])  # min(1, f / 4) * v_leak
    np.testing.assert_array_equal(entry["threshold"], p["threshold"])
    scaled_parameters(entry, NEURON_THRESHOLD, np.array([2.0, 0.5, 1.0]))
    np.testing.assert_allclose(entry["threshold"], [1.0, 0.25, 0.5])
    # a leak factor f on LIF(tau) is the decay of LIF(tau / f) (same input gain)
    fast = sp.LIF(tau=2.0, v_leak=0.2).params(3, 1.0)
    np.testing.assert_allclose(entry["keep"][0], fast["keep"][0])
    np.testing.assert_allclose(entry["leak"][0], fast["leak"][0])


def test_certify_samples_continuous_factors_and_enumerates_discrete_ones():
    net, X = _dyadic_network(1)
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.LIF(tau=2.0, threshold=0.25), None],
                            T=8)
    y = snn.predict(X)
    kw = dict(X=X, y=y, eps=0.5, delta=0.2, metric="flip", n_samples=20, seed=0, progress=False)
    cert = ns.certify(snn, ns.ThresholdPerturbation(0.002, lognormal=0.3), **kw)
    assert cert.method == "sampled" and "continuous" in cert.method_reason
    with pytest.raises(ValidationError, match="continuous"):
        ns.stratified_estimate(snn, ns.ThresholdPerturbation(0.002, lognormal=0.3), X, y,
                               metric="flip", eps=0.5, progress=False)
    faults = ns.ThresholdPerturbation(0.002, factor=(0.25, 4.0)) + ns.NeuronCrash(0.002, steps=2)
    cert = ns.certify(snn, faults, **kw)
    assert cert.method == "stratified" and cert.empirical.rows > 0


def test_a_mapped_spiking_network_runs_on_the_chips_weights_under_chip_faults(tmp_path):
    """map_network(snn, profile): the chip runs the spiking execution on the quantized weights;
    bit flips and core failures (which need a mapping) act on it; both backends agree; the
    mapping file keeps the spiking execution."""
    X, y = ns.load_digits_test()
    snn = sp.convert(ns.load_digits_model(), X[:198], T=16)
    mapping = ns.map_network(snn, "loihi2")
    chip = mapping.chip_spiking()
    assert chip.neurons == snn.neurons and chip.network is mapping.quantized_network()
    Xt, yt = X[198:280], y[198:280]
    faults = ns.WeightBitFlip(2e-3) + ns.CoreFailure(0.2) + ns.NeuronCrash(1e-3, steps=1)
    kw = dict(n_samples=6, seed=4, progress=False)
    a = ns.simulate(mapping, faults, Xt, yt, backend="numpy", **kw)
    b = ns.simulate(mapping, faults, Xt, yt, backend="numba", **kw)
    assert a.simulated_network == "quantized for loihi2"
    assert a.clean_accuracy == pytest.approx(np.mean(chip.predict(Xt) == yt))
    assert a.n_failures > 0 and (a.n_failures, a.n_faulty_pairs) == (b.n_failures,
                                                                      b.n_faulty_pairs)
    path = tmp_path / "snn_map.h5"
    mapping.save(path)
    back = ns.load_mapping(path)
    assert back.spiking.neurons == snn.neurons and back.spiking.T == 16
    import h5py

    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 4  # (a reader of version 3 refuses it)
    c = ns.simulate(back, faults, Xt, yt, backend="numba", **kw)
    assert (c.n_failures, c.n_faulty_pairs) == (b.n_failures, b.n_faulty_pairs)


def test_mapped_faulty_rows_equal_the_reference_with_the_chip_faults_written_out():
    from neurosim.backends import get_backend
    from neurosim.plan import build_plan
    from neurosim.sampler import sample_block

    for seed, profile in [(s, p) for s in (3, 4, 5) for p in ("loihi2", "rram_crossbar")]:
        net, X = _dyadic_network(seed)
        snn = sp.SpikingNetwork(net, [sp.IF(threshold=0.5), sp.LIF(tau=2.0, threshold=0.25),
                                      None], T=12)
        mapping = ns.map_network(snn, profile)
        plan = build_plan(mapping, ns.CoreFailure(0.3) + ns.SynapseStuck(0.02, 0.02)
                          + ns.NeuronCrash(0.05), fields=False)
        chip = plan.spiking
        batch, _, _, row_draw, row_input = sample_block(plan, seed, 0, 4, X.shape[0],
                                                        "transient")
        want = _reference_rows(plan, chip, X, batch, row_draw, row_input)
        for name in ("numpy", "numba"):
            backend = get_backend(name)
            cache = backend.clean_cache(plan, X)
            # Quantized weights are off the dyadic grid, so sums round differently in a full
            # product and in the reference's per-row one: equal to float32 rounding, which
            # also says every spike is the same (one spike more or less moves a readout by at
            # least one weight step / T, about 4e-4 here, far above the tolerance).
            np.testing.assert_allclose(cache.output, sp.run(chip, X), rtol=1e-5, atol=1e-6)
            got = backend.propagate(plan, cache, batch, row_draw, row_input)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert np.any(np.abs(got - cache.output[row_input]) > 1e-3)


def test_dynapse2s_mismatch_is_the_default_of_spiking_networks_only():
    """DYNAP-SE2's ~10 % analog mismatch (docs/HARDWARE.md) is its profile's default threshold
    and leak mismatch: every neuron's factor exp(0.1 Z), fixed per chip. A graded network has
    no thresholds, an IF network no leaks: those defaults are left out."""
    from neurosim.plan import resolve_faults

    net = ns.Network.random([8, 16, 4], "relu", seed=0)
    graded = ns.map_network(net, "dynapse2")
    assert {p.kind for p in resolve_faults(graded, None).processes} == {"crash", "core"}
    lif = ns.map_network(sp.SpikingNetwork(net, sp.LIF(tau=4.0)), "dynapse2")
    model = resolve_faults(lif, None)
    assert model.get("threshold") == ns.ThresholdPerturbation(1.0, lognormal=0.1,
                                                              mode="permanent")
    assert model.get("leak") == ns.LeakPerturbation(1.0, lognormal=0.1, mode="permanent")
    assert resolve_faults(ns.map_network(sp.SpikingNetwork(net, "if"), "dynapse2"),
                          None).get("leak") is None
    X = np.random.default_rng(0).uniform(0, 1, (10, 8))
    r = ns.simulate(lif, None, X, None, n_samples=30, seed=0, metric="linf", eps=0.01,
                    progress=False)
    assert r.n_faulty_pairs == 300 and r.n_failures > 0  # (every chip is perturbed)


def test_the_integer_model_tracks_the_float_chip_and_refuses_what_lavas_lif_cannot_run():
    """neurosim.spiking.integer (what Lava's bit-accurate LIF computes; tests/lava checks the
    equality): on the digits MLP it agrees with the float model of the same chip on almost
    every prediction (they differ by Loihi's fixed point, its one-step delay per layer and
    ``>`` against ``>=``), and it refuses what Lava's LIF cannot represent."""
    from neurosim.quantization import IntegerModelError
    from neurosim.spiking.integer import bias_parts, integer_spiking_run

    X, y = ns.load_digits_test()
    net = sp.convert(ns.load_digits_model(), X[:198], T=32).network
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=1.0, reset="value"),
                                  sp.LIF(tau=8.0, threshold=0.5, reset="value"), None], T=32)
    mapping = ns.map_network(snn, "loihi2")
    chip = mapping.chip_spiking().run(X[198:])
    integer = integer_spiking_run(mapping, X[198:])
    assert np.mean(chip.argmax(1) == integer.argmax(1)) >= 0.95
    acc = [np.mean(out.argmax(1) == y[198:]) for out in (chip, integer)]
    assert abs(acc[0] - acc[1]) <= 0.02 and acc[1] > 0.85, acc
    mant, exp = bias_parts(np.array([5, -4095, 4096, 70000, -1]))
    np.testing.assert_array_equal(np.left_shift(mant, exp)[[0, 1, 4]], [5, -4095, -1])
    assert np.all(np.abs(mant) <= 4095) and abs((int(mant[3]) << int(exp[3])) - 70000) <= 2 ** 4
    for bad, match in [
            (sp.SpikingNetwork(net, "if", T=8), "resets its membrane to 0"),
            (sp.SpikingNetwork(net, sp.IF(threshold=np.linspace(0.5, 1, 256), reset="value"),
                               T=8), "threshold per neuron"),
            (sp.SpikingNetwork(net, sp.CubaLIF(reset="value"), T=8), "cuba_lif"),
            (sp.SpikingNetwork(net, sp.IF(reset="value"), T=8, encoding="poisson"), "Poisson")]:
        with pytest.raises(IntegerModelError, match=match):
            integer_spiking_run(ns.map_network(bad, "loihi2"), X[:2])
