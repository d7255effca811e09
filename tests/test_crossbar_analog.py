"""Analog crossbar non-idealities in the simulator (neurosim.faults.analog, neurosim.crossbar).

The device and periphery formulas themselves are tested in tests/test_analog.py; here: the
composition (a chip's weights, the tiling, each tile's DAC and ADC, bias and activation)
against a reference built from those functions, exact deterministic cases, reproducibility,
and the errors.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import neurosim as ns
from neurosim import analog as A
from neurosim.crossbar import analog_outputs, chip_weights, layer_tiles
from neurosim.errors import ProfileError, ValidationError
from neurosim.hardware import profile_from_dict
import neurosim.fields
from neurosim.plan import build_plan
from neurosim.sampler import sample_faults

RATES = {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
         "weight_bit_flip": 0.0, "core_failure": 0.0}
IDEAL = dict(noise=0.0, drift=0.0, dac_bits=0, adc_bits=0, out_noise=0.0)


def _profile(rows=4, cols=3, **extra):
    data = {"name": "tiles", "description": "small tiles", "architecture": "crossbar",
            "cores_per_chip": 256, "neurons_per_core": cols, "max_fan_in": rows,
            "synapses_per_core": rows * cols, "weight_bits": 8, "crossbar_rows": rows,
            "crossbar_cols": cols, "fault_rates": dict(RATES)}
    data.update(extra)
    return profile_from_dict(data, source="tiles.toml")


@pytest.fixture(scope="module")
def small():
    net = ns.Network.random([7, 6, 3], "relu", seed=4)
    X = np.random.default_rng(0).normal(size=(50, 7))
    mapping = ns.map_network(net, _profile())
    return net, X, mapping


def _reference(plan, process, weights, X, normals):
    """The composition written out: every tile of every layer through tile_matvec."""
    y = np.asarray(X, float)
    k = 0
    for l, layer in enumerate(plan.network.layers, start=1):
        W = weights[l - 1]
        w_max = max(plan.max_weight_pos[l - 1], plan.max_weight_neg[l - 1])
        z = np.zeros((y.shape[0], W.shape[0]))
        for c in plan.mapping.cores:
            if c.layer != l:
                continue
            n = normals[k] if normals is not None else None
            k += 1
            z[:, c.out_start:c.out_stop] += A.tile_matvec(
                W[c.out_start:c.out_stop, c.in_start:c.in_stop], y[:, c.in_start:c.in_stop],
                process.dac_bits or None, process.adc_bits or None, process.inp_bound,
                process.out_bound, w_max, out_noise=process.out_noise, normals=n,
                bound_management=True)
        y = np.asarray(layer.activation((z + plan.b[l - 1]).astype(plan.dtype)), float)
    return y


def test_the_mapping_tiles_each_layer(small):
    net, X, mapping = small
    plan = build_plan(mapping, ns.AnalogCrossbar(device="pcm"))
    # 7 inputs in tiles of at most 4 rows, 6 outputs in tiles of 3 columns: 2 x 2 tiles; layer
    # 2's 6 inputs split evenly (3 + 3) into 2 tiles of its 3 outputs.
    assert sorted(layer_tiles(plan, 1)) == [(0, 3, 0, 4), (0, 3, 4, 7), (3, 6, 0, 4), (3, 6, 4, 7)]
    assert sorted(layer_tiles(plan, 2)) == [(0, 3, 0, 3), (0, 3, 3, 6)]


@pytest.mark.parametrize("device,t", [("pcm", 3600.0), ("reram", 86400.0)])
def test_chip_weights_and_outputs_match_the_reference(small, device, t):
    net, X, mapping = small
    proc = ns.AnalogCrossbar(device=device, t=t, dac_bits=6, adc_bits=7, out_noise=0.05)
    faults = proc + ns.SynapseStuck(0.1, 0.2, mode="permanent")
    plan = build_plan(mapping, faults)
    assert plan.analog == proc
    chips = sample_faults(plan, np.random.default_rng(3), 2, mode="permanent")
    rng = np.random.default_rng(9)
    weights = chip_weights(plan, proc, chips, 1, rng)
    out = analog_outputs(plan, proc, weights, X, rng)
    # The same random numbers, in the same order, through the reference functions.
    rng = np.random.default_rng(9)
    model = A.device_model(device)
    stuck_any = False
    for l, Wc in enumerate(weights, start=1):
        W = np.asarray(plan.W[l - 1], float)
        w_max = max(plan.max_weight_pos[l - 1], plan.max_weight_neg[l - 1])
        programmed = A.program(W, w_max, model, t, rng.standard_normal(A.normals_shape(W.shape)))
        f = plan.fields[l - 1]
        stuck = ns.fields.stuck_matrix(W, f, int(chips.keys[1]))
        hit = ns.fields.cell_words(int(chips.keys[1]), l, *W.shape) < np.uint64(f.t01)
        stuck_any |= hit.any()
        np.testing.assert_array_equal(Wc[~hit], programmed[~hit])
        np.testing.assert_array_equal(Wc[hit], stuck[hit])
    assert stuck_any
    normals = [rng.standard_normal((X.shape[0], c.out_stop - c.out_start))
               for c in mapping.cores]
    ref = _reference(plan, proc, weights, X, normals)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_ideal_devices_and_converters_compute_the_clean_network(small):
    net, X, mapping = small
    r = ns.simulate(mapping, ns.AnalogCrossbar(device="pcm", **IDEAL), X, metric="linf",
                    eps=1e-4, n_samples=5)
    assert r.n_failures == 0 and r.error_mean < 1e-5


def test_converters_alone_are_deterministic_and_exact(small):
    """No device noise, no output noise: every chip is the same, and the failure count is that
    of the reference composition on each input, times the number of chips."""
    net, X, mapping = small
    proc = ns.AnalogCrossbar(device="pcm", noise=0.0, drift=0.0, dac_bits=3, adc_bits=4,
                             out_noise=0.0)
    plan = build_plan(mapping, proc)
    clean = ns.get_backend("numpy").clean_cache(plan, X).output
    ref = _reference(plan, proc, [np.asarray(W, float) for W in plan.W], X, None)
    linf = np.abs(ref - clean).max(axis=1)
    eps = float(np.median(linf))
    assert 0 < (linf >= eps).sum() < X.shape[0]
    r = ns.simulate(mapping, proc, X, metric="linf", eps=eps, n_samples=7)
    assert r.n_failures == 7 * int((linf >= eps).sum())
    np.testing.assert_array_equal(r.chip_failure_rates, np.full(7, (linf >= eps).mean()))


def test_same_numbers_for_any_runner_and_backend_and_drift_hurts():
    net = ns.load_digits_model()
    X, y = ns.load_digits_test()
    X, y = X[:120], y[:120]
    mapping = ns.map_network(net, ns.load_profile("pcm_crossbar"))
    kw = dict(metric="flip", n_samples=40, seed=3)
    a = ns.simulate(mapping, X=X, y=y, **kw)
    b = ns.simulate(mapping, X=X, y=y,
                    runner=lambda f, blocks: [f(k) for k in reversed(list(blocks))], **kw)
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("elapsed_s")
    assert json.dumps(da, sort_keys=True) == json.dumps(db, sort_keys=True)
    assert 0 < a.failure_rate < 1
    # The crossbar pass is the same on every backend; only the clean reference's rounding
    # differs (float32 BLAS against NumPy).
    c = ns.simulate(mapping, X=X, y=y, backend="numpy", **kw)
    assert c.n_failures == a.n_failures
    assert abs(c.error_mean - a.error_mean) < 1e-5 * a.error_mean
    assert a.mode == "permanent" and "analog:device=pcm" in a.fault_model
    year = replace(ns.AnalogCrossbar.from_chip(mapping.profile), t=ns.faults.parse_time("1y"))
    later = ns.simulate(mapping, year, X, y, **kw)
    assert later.error_mean > 1.5 * a.error_mean  # a year of drift, uncompensated


def test_errors_name_what_is_wrong(small):
    net, X, mapping = small
    with pytest.raises(ValidationError, match="relaxation fits only at t = 1, 86400, 172800"):
        ns.AnalogCrossbar(device="reram", t="1h")
    with pytest.raises(ValidationError, match="no transient mode"):
        ns.AnalogCrossbar(device="pcm", mode="transient")
    with pytest.raises(ValidationError, match="no transient mode"):
        ns.simulate(mapping, ns.AnalogCrossbar(device="pcm"), X, metric="linf", eps=0.1,
                    mode="transient")
    with pytest.raises(ValidationError, match="must be one of \\['pcm', 'reram'\\]"):
        ns.AnalogCrossbar(device="flash")
    with pytest.raises(ValidationError, match="adc_bits"):
        ns.AnalogCrossbar(device="pcm", adc_bits=1)
    with pytest.raises(ValidationError, match="stuck cells only"):
        ns.simulate(mapping, ns.AnalogCrossbar(device="pcm") + ns.NeuronCrash(0.01), X,
                    metric="linf", eps=0.1)
    with pytest.raises(ValidationError, match="stuck cells must be permanent"):
        ns.simulate(mapping, ns.AnalogCrossbar(device="pcm") + ns.SynapseStuck(0.01, 0.01), X,
                    metric="linf", eps=0.1)
    cores = ns.map_network(net, ns.load_profile("loihi2"))
    with pytest.raises(ValidationError, match="needs a crossbar profile"):
        ns.simulate(cores, ns.AnalogCrossbar(device="pcm"), X, metric="linf", eps=0.1)
    with pytest.raises(ValidationError, match="profile's \\[analog\\] table"):
        ns.simulate(mapping, ns.parse_fault_spec("analog"), X, metric="linf", eps=0.1)
    with pytest.raises(ValidationError, match="A time since programming"):
        ns.faults.parse_time("an hour")
    with pytest.raises(ProfileError, match="unknown key in \\[analog\\] 'devise'"):
        _profile(analog={"devise": "pcm"})
    with pytest.raises(ProfileError, match="\\[analog\\]: The adc_bits"):
        _profile(analog={"device": "pcm", "t": "1h", "adc": 1})
    from neurosim.backends.lava import LavaBackend

    with pytest.raises(ns.BackendUnsupportedError, match="analog crossbar"):
        LavaBackend().check(build_plan(mapping, ns.AnalogCrossbar(device="pcm")))


def test_profiles_and_the_command_line(capsys):
    from neurosim.cli import main

    pcm = ns.load_profile("pcm_crossbar")
    assert ns.faults.profile_faults(pcm).get("analog") == ns.AnalogCrossbar.from_chip(pcm)
    rram = ns.load_profile("rram_crossbar")
    assert ns.faults.profile_faults(rram).get("analog") is None  # in_defaults = false
    assert ns.AnalogCrossbar.from_chip(rram).device == "reram"
    assert main(["simulate", "--profile", "pcm_crossbar", "--time", "1d", "--samples", "2",
                 "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "analog:device=pcm,t=86400" in out["fault_model"]
    assert main(["simulate", "--profile", "rram_crossbar", "--fault", "profile", "--fault",
                 "analog", "--samples", "2", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "analog:device=reram,t=1" in out["fault_model"] and "stuck:" in out["fault_model"]
    assert main(["simulate", "--profile", "loihi2", "--time", "1h", "--samples", "2"]) == 2
    assert "no analog process" in capsys.readouterr().err


def test_certify_samples_analog_chips_and_its_bounds_cover(small):
    """Analog crossbars have no per-pair draw: certify runs chips and bounds the mean of their
    failure rates (KL, chips as units). Over 40 seeds the bounds over the given inputs contain
    the long-run rate in at least 36: each side misses with probability <= alpha_side / 2 =
    0.0125, so an exact method misses 5 or more times with probability 0.007."""
    net, X, mapping = small
    proc = ns.AnalogCrossbar(device="pcm", t="1d")
    eps = 0.6
    long = ns.simulate(mapping, proc, X, metric="linf", eps=eps, n_samples=3000, seed=999)
    assert 0.05 < long.failure_rate < 0.95
    covered = 0
    for seed in range(40):
        cert = ns.certify(mapping, proc, X, metric="linf", eps=eps, delta=0.5, seed=seed,
                          n_samples=40, theory=False, advice=False)
        assert cert.method == "sampled" and "analog" in cert.method_reason
        assert cert.empirical.strata[0].rows == 40 * X.shape[0]
        covered += cert.empirical.lower <= long.failure_rate <= cert.empirical.upper
        assert cert.delta_lower <= cert.empirical.lower and cert.empirical.upper <= cert.delta_upper
    assert covered >= 36, covered


def test_sparse_stuck_records_hold_their_values_over_the_device_noise(small):
    net, X, mapping = small
    proc = ns.AnalogCrossbar(device="pcm", t="1h")
    plan = build_plan(mapping, proc + ns.SynapseStuck(0.004, 0.004, mode="permanent"))
    assert plan.fields == []  # rare: records
    chips = sample_faults(plan, np.random.default_rng(1), 400, mode="permanent")
    c = int(np.flatnonzero(np.diff(chips.ptr[1]) > 0)[0])  # a chip with stuck cells in layer 1
    weights = chip_weights(plan, proc, chips, c, np.random.default_rng(2))
    sl = chips.records(1, c)
    rows, cols = chips.out_start[sl], chips.in_start[sl]
    np.testing.assert_array_equal(weights[0][rows, cols], chips.value[sl])
    W = np.asarray(plan.W[0], float)
    programmed = A.program(W, max(plan.max_weight_pos[0], plan.max_weight_neg[0]),
                           A.device_model("pcm"), 3600.0,
                           np.random.default_rng(2).standard_normal(A.normals_shape(W.shape)))
    keep = np.ones(W.shape, bool)
    keep[rows, cols] = False
    np.testing.assert_array_equal(weights[0][keep], programmed[keep])
