"""neurosim.experiments: the paper's experiments in small mode, their statistics, and files."""

import math
import os

import numpy as np
import pytest

pytest.importorskip("torch", reason="the experiments train networks (extra 'torch')")
pytest.importorskip("sklearn", reason="the training data come with scikit-learn (extra 'dev')")

import neurosim as ns  # noqa: E402
from neurosim import experiments as E  # noqa: E402
from neurosim.errors import FileFormatError, NeurosimFileNotFoundError, ValidationError  # noqa: E402
from neurosim.train import load_training_data, train  # noqa: E402


@pytest.fixture(scope="module")
def decay():
    return E.error_decay(small=True)


@pytest.fixture(scope="module")
def tradeoff():
    return E.regularizer_tradeoff(small=True)


@pytest.fixture(scope="module")
def chips():
    return E.chip_mapping(small=True)


# --- error decay ----------------------------------------------------------------------------

def test_error_decay_slope_negative_with_ci(decay):
    assert list(decay.widths) == [16, 32, 64, 128]
    for key in ("mc", "taylor", "exact"):
        fit = decay.fits[key]
        assert fit["low"] <= fit["slope"] <= fit["high"]
        assert fit["n_points"] == 4
    # the 95 % intervals of the slope exclude 0 (Var Delta decays with width)
    assert decay.fits["mc"]["high"] < 0
    assert decay.fits["taylor"]["high"] < 0
    assert decay.settings["small"] is True


def test_error_decay_theory_agrees_with_mc_at_smallest_width(decay):
    batches = decay.var_mc_batches[0]
    se = batches.std(ddof=1) / math.sqrt(batches.size)
    # 4 standard errors of the batch mean, plus 3 % for what the single-fault and first-order
    # formulas drop (two or more crashes: O(p n) relative; the ReLU remainder for Prop. 4)
    margin = 4 * se + 0.03 * decay.var_mc[0]
    assert abs(decay.var_exact[0] - decay.var_mc[0]) <= margin
    assert abs(decay.var_taylor[0] - decay.var_mc[0]) <= margin
    assert np.all(decay.var_mc_low <= decay.var_mc) and np.all(decay.var_mc <= decay.var_mc_high)


def test_mc_variance_matches_exact_single_fault_over_seeds():
    data = load_training_data("digits")
    net = E.train_network(data, (16, 16), 10, 0)
    X = data.X_test[:100]
    rates = E.hidden_rates(net, 1e-3)
    _, exact = E.theory_variances(net, X, rates)
    estimates = np.concatenate([E.mc_output_variance(net, X, rates, 1000, 10, seed=s)
                                for s in range(20)])
    se = estimates.std(ddof=1) / math.sqrt(estimates.size)
    assert abs(estimates.mean() - exact) <= 4 * se + 0.03 * exact
    covered = sum(lo <= exact <= hi for lo, hi in
                  (E.t_interval(estimates[10 * s:10 * s + 10])[1:] for s in range(20)))
    assert covered >= 14  # 95 % intervals: P(fewer than 14 of 20) < 1e-4 at the nominal level


def test_mc_variance_matches_brute_force_reference():
    """Batch estimates against a plain NumPy simulation of independent silent crashes."""
    rng = np.random.default_rng(3)
    net = ns.Network.from_arrays([rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.normal(size=(3, 5))],
                                 [rng.normal(size=6), rng.normal(size=5), rng.normal(size=3)],
                                 ["relu", "tanh", "identity"], dtype=np.float64)
    X = rng.normal(size=(4, 4))
    rates = np.array([0.0, 0.2, 0.2, 0.0])
    est = E.mc_output_variance(net, X, rates, n_samples=20000, n_batches=10, seed=1)
    # reference: float64 forward with Bernoulli masks
    draws = 20000
    var = 0.0
    for i in range(X.shape[0]):
        y = np.repeat(X[i:i + 1], draws, axis=0)
        for l, layer in enumerate(net.layers, start=1):
            y = np.asarray(layer.activation(y @ layer.W.T + layer.b), dtype=np.float64)
            if rates[l] > 0:
                y = y * (rng.random(y.shape) >= rates[l])
        var += y.var(axis=0, ddof=1).sum() / X.shape[0]
    assert est.mean() == pytest.approx(var, rel=0.05)


def test_fit_loglog_slope_recovers_power_law():
    x = np.array([16, 32, 64, 128, 256.0])
    fit = E.fit_loglog_slope(x, 3.0 * x ** -1.0 * np.exp([0.01, -0.01, 0.02, 0.0, -0.02]))
    assert fit["low"] < -1.0 < fit["high"]
    assert fit["high"] - fit["low"] < 0.2
    assert math.isnan(E.fit_loglog_slope([1, 2], [1, 2])["slope"])


def test_error_decay_validation():
    with pytest.raises(ValidationError, match="widths"):
        E.error_decay(widths=(16, 32))
    with pytest.raises(ValidationError, match="'p' parameter"):
        E.error_decay(widths=(16, 32, 64), p=0.0)
    net = ns.load_digits_model()
    with pytest.raises(ValidationError, match="n_batches"):
        E.mc_output_variance(net, np.zeros((2, 64)), np.zeros(4), n_batches=1)


# --- regularizer trade-off -------------------------------------------------------------------

def test_tradeoff_fields_consistent(tradeoff):
    n = tradeoff.lam.size
    assert n == 2 and set(zip(tradeoff.lam, tradeoff.mu)) == {(0.0, 0.0), (10.0, 0.0)}
    for name in ("mu", "clean_accuracy", "quantized_accuracy", "var_taylor", "var_exact",
                 "failure_rate", "failure_low", "failure_high", "q_min"):
        assert getattr(tradeoff, name).shape == (n,), name
    assert np.all(tradeoff.failure_low <= tradeoff.failure_rate)
    assert np.all(tradeoff.failure_rate <= tradeoff.failure_high)
    assert np.all((tradeoff.clean_accuracy >= 0) & (tradeoff.clean_accuracy <= 1))
    best, base = tradeoff.best, tradeoff.baseline_index
    assert tradeoff.clean_accuracy[best["index"]] >= tradeoff.clean_accuracy[base] - 0.01 - 1e-12
    assert best["var_reduction"] == pytest.approx(tradeoff.var_exact[base] / tradeoff.var_exact[best["index"]])
    assert best["target_met"] == (best["var_reduction"] >= 2.0)
    assert "best within" in tradeoff.summary()


def test_tradeoff_baseline_row_is_plain_training(tradeoff):
    s = tradeoff.settings
    data = load_training_data(s["data"])
    plain = train(data.X_train, data.y_train, hidden=(s["width"],) * s["depth"], epochs=s["epochs"],
                  seed=s["seed"])
    X, y = data.X_test[:s["n_inputs"]], data.y_test[:s["n_inputs"]]
    base = tradeoff.baseline_index
    assert tradeoff.clean_accuracy[base] == pytest.approx(np.mean(plain.forward(X).argmax(1) == y), abs=1e-12)
    var_t, var_e = E.theory_variances(plain, X, E.hidden_rates(plain, s["p"]))
    assert tradeoff.var_exact[base] == pytest.approx(var_e, rel=1e-5)
    assert tradeoff.var_taylor[base] == pytest.approx(var_t, rel=1e-5)


# --- chip mapping ----------------------------------------------------------------------------

def test_chip_mapping_cores_per_profile(chips):
    model = ns.load_digits_model()
    assert chips.profiles == list(E.DEFAULT_PROFILES)
    for i, name in enumerate(chips.profiles):
        mapping = ns.map_network(model, name)
        assert chips.cores_used[i] == mapping.cores_used
        assert len(chips.utilization[name]) == mapping.cores_used
        assert sum(chips.layer_cores[name]) == mapping.cores_used


def test_chip_mapping_per_core_impact(chips):
    model = ns.load_digits_model()
    mapping = ns.map_network(model, E.small_core_profile("loihi2", 32))
    assert chips.impact_profile == mapping.profile.name
    n = mapping.cores_used
    assert n == 17  # 8 + 8 cores of 32 neurons for the hidden layers, 1 for the outputs
    for name in ("core_layer", "core_neurons", "core_utilization", "core_flip_rate",
                 "core_accuracy", "core_error_l2"):
        assert getattr(chips, name).shape == (n,), name
    assert np.all((chips.core_flip_rate >= 0) & (chips.core_flip_rate <= 1))
    # reference: the quantized network in NumPy with the core's neurons zeroed
    X, y = ns.load_digits_test()
    X = X[:chips.settings["n_inputs"]]
    qnet = mapping.quantized_network()
    clean = _forward_zeroed(qnet, X, None)
    for core in (mapping.cores[0], mapping.cores[9], mapping.cores[-1]):
        faulty = _forward_zeroed(qnet, X, core)
        expected = np.mean(faulty.argmax(1) != clean.argmax(1))
        assert chips.core_flip_rate[core.core_id] == pytest.approx(expected, abs=1e-12)
    # every output silent: outputs all 0, argmax 0, so every input not predicted 0 flips
    assert chips.core_flip_rate[-1] == pytest.approx(np.mean(clean.argmax(1) != 0))
    assert "single-core failures" in chips.summary()


def test_chip_mapping_crossbar_tiles():
    result = E.chip_mapping(profiles=("rram_crossbar", "dynapse2"), impact_profile="rram_crossbar",
                            small=True)
    assert result.cores_used[1] == -1 and "fan-in" in result.errors["dynapse2"]
    model = ns.load_digits_model()
    mapping = ns.map_network(model, "rram_crossbar")
    assert result.core_flip_rate.shape == (mapping.cores_used,)
    X = ns.load_digits_test()[0][:100]
    qnet = mapping.quantized_network()
    tile = mapping.cores[1]
    weights = [layer.W.astype(np.float64).copy() for layer in qnet.layers]
    weights[tile.layer - 1][tile.out_start:tile.out_stop, tile.in_start:tile.in_stop] = 0
    faulty = qnet.with_weights(weights).forward(X)
    expected = np.linalg.norm(faulty.astype(np.float64) - qnet.forward(X).astype(np.float64), axis=1).mean()
    assert result.core_error_l2[1] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def _forward_zeroed(net, X, core):
    y = np.asarray(X, dtype=np.float64)
    for l, layer in enumerate(net.layers, start=1):
        y = np.asarray(layer.activation(y @ layer.W.astype(np.float64).T + layer.b), dtype=np.float64)
        if core is not None and core.layer == l:
            y = y.copy()
            y[:, core.out_start:core.out_stop] = 0.0
    return y


# --- files -----------------------------------------------------------------------------------

def _assert_same(a, b):
    import dataclasses

    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
            assert x.dtype == y.dtype, f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("name,loader", [("decay", E.load_error_decay), ("tradeoff", E.load_tradeoff),
                                         ("chips", E.load_chip_mapping)])
def test_results_round_trip(name, loader, request, tmp_path):
    import h5py

    result = request.getfixturevalue(name)
    path = tmp_path / f"{name}.h5"
    result.save(path)
    assert sorted(os.listdir(tmp_path)) == [f"{name}.h5"]  # atomic write: no temporary left
    with h5py.File(path, "r") as f:
        assert f.attrs["neurosim_format"] == "experiment"
        assert int(f.attrs["format_version"]) == 1
    back = loader(path)
    assert type(back) is type(result)
    _assert_same(result, back)
    assert back.summary() == result.summary()


def test_load_errors(decay, tmp_path):
    path = tmp_path / "decay.h5"
    decay.save(path)
    with pytest.raises(FileFormatError, match="error_decay"):
        E.load_tradeoff(path)
    with pytest.raises(NeurosimFileNotFoundError):
        E.load_chip_mapping(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(FileFormatError):
        E.load_error_decay(bad)


def test_plots(decay, tradeoff, chips, tmp_path):
    from neurosim import viz

    for plot, result, name in ((viz.plot_error_decay, decay, "decay"),
                               (viz.plot_tradeoff, tradeoff, "tradeoff"),
                               (viz.plot_chip_mapping, chips, "chips")):
        fig = plot(result, path=tmp_path / f"{name}.png")
        assert fig is not None
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


# --- analog crossbars: accuracy against drift time and ADC bits ------------------------------

def test_crossbar_analog_small_rows():
    r = E.analog_sweep(small=True)
    rows = r.rows()
    assert {(row["profile"], row["sweep"]) for row in rows} == {
        ("pcm", "time"), ("pcm", "adc_bits"), ("rram", "time"), ("rram", "adc_bits")}
    assert {row["variant"] for row in rows} == {"analog", "compensated", "analog+stuck"}
    for row in rows:
        assert 0 <= row["ci_low"] <= row["failure_rate"] <= row["ci_high"] <= 1, row
        assert 0 <= row["accuracy"] <= 1, row
    assert r.n_chips == 3 and r.settings["small"]
    assert r.summary()


def test_crossbar_analog_pcm_drift_lowers_accuracy(tmp_path):
    # Full-size inputs (all 397), 10 PCM chips per point. Measured on 40 single chips each:
    # accuracy 0.9734 (sd 0.0035) at 1 s, 0.9614 (sd 0.0047) at 1 year; the difference of
    # two 10-chip means has sd 0.0019, so the 0.012 gap is 6.5 sd: no chance failure.
    r = E.analog_sweep(times=("1s", "1y"), adc_bits=(), n_chips=10, profiles=("pcm",),
                       compensated=False)
    (i1s, i1y) = r.curve("pcm", "analog", "time")
    assert r.value[i1s] == 1.0 and r.value[i1y] == 365.25 * 86400
    assert r.accuracy[i1y] < r.accuracy[i1s]
    assert r.accuracy[i1s] - r.accuracy[i1y] > 0.005  # half the measured gap; 3.7 sd from it
    # the result round-trips and plots
    r.save(tmp_path / "analog.h5")
    back = E.load_analog_sweep(tmp_path / "analog.h5")
    assert back.summary() == r.summary()
    from neurosim import viz

    viz.plot_analog_sweep(r, path=tmp_path / "analog.png")
    assert (tmp_path / "analog.png").stat().st_size > 1000
