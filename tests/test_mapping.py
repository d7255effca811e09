"""Tests of :mod:`neurosim.mapping`: placing networks on cores / tiles and quantizing weights."""

from __future__ import annotations

import math
import re

import h5py
import numpy as np
import pytest

from neurosim import Network
from neurosim.datasets import load_digits_model, load_digits_test
from neurosim.errors import MappingError, NeurosimFileNotFoundError, FileFormatError
from neurosim.hardware import load_profile, profile_from_dict
from neurosim.mapping import Mapping, load_mapping, map_network, quantize_layer

RATES = {"neuron_crash": 1e-4, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
         "weight_bit_flip": 0.0, "core_failure": 0.0}


def _profile(**overrides):
    data = {
        "name": "synthetic", "description": "a synthetic test chip", "architecture": "cores",
        "cores_per_chip": 1000, "neurons_per_core": 100, "max_fan_in": 1000,
        "synapses_per_core": 10**6, "weight_bits": 8, "fault_rates": dict(RATES),
    }
    data.update(overrides)
    return profile_from_dict(data, source="synthetic")


def _net(widths, activation="relu", seed=0, dtype=np.float64) -> Network:
    return Network.random(widths, activation=activation, seed=seed, dtype=dtype)


def _check_cores(mapping: Mapping) -> None:
    """Every core respects the three limits; each layer's cores cover its neurons exactly once."""
    p = mapping.profile
    net = mapping.network
    assert [c.core_id for c in mapping.cores] == list(range(len(mapping.cores)))
    for core in mapping.cores:
        fan_in = net.widths[core.layer - 1]
        assert 1 <= core.n_neurons <= p.neurons_per_core
        assert (core.in_start, core.in_stop) == (0, fan_in)
        assert core.axons_in <= p.max_fan_in
        assert core.synapses == core.n_neurons * fan_in <= p.synapses_per_core
    assert len(mapping.neuron_core) == net.n_layers
    for l in range(1, net.n_layers + 1):
        count = np.zeros(net.widths[l], dtype=int)
        for core in mapping.layer_cores(l):
            count[core.out_start:core.out_stop] += 1
            np.testing.assert_array_equal(mapping.neuron_core[l - 1][core.out_start:core.out_stop],
                                          core.core_id)
        np.testing.assert_array_equal(count, 1)
        assert mapping.neuron_core[l - 1].shape == (net.widths[l],)
        assert (mapping.neuron_core[l - 1] >= 0).all()
    # Cores are numbered in layer order.
    assert [c.layer for c in mapping.cores] == sorted(c.layer for c in mapping.cores)


# --- core placement -------------------------------------------------------------------------


def test_neuron_limit_fewest_cores_even_split():
    mapping = map_network(_net([10, 250, 3]), _profile(neurons_per_core=100))
    layer1 = mapping.layer_cores(1)
    assert [c.n_neurons for c in layer1] == [84, 83, 83]
    assert [(c.out_start, c.out_stop) for c in layer1] == [(0, 84), (84, 167), (167, 250)]
    assert [c.n_neurons for c in mapping.layer_cores(2)] == [3]
    assert mapping.cores_used == 4
    _check_cores(mapping)
    np.testing.assert_array_equal(np.bincount(mapping.neuron_core[0]), [84, 83, 83])


def test_exactly_full_cores():
    mapping = map_network(_net([10, 200, 3]), _profile(neurons_per_core=100))
    assert [c.n_neurons for c in mapping.layer_cores(1)] == [100, 100]
    assert mapping.layer_cores(1)[0].utilization == pytest.approx(1.0, abs=1e-12)
    _check_cores(mapping)


def test_synapse_limit_binds():
    mapping = map_network(_net([64, 100, 5]), _profile(synapses_per_core=1000, neurons_per_core=100))
    layer1 = mapping.layer_cores(1)
    # 1000 // 64 = 15 neurons per core -> ceil(100 / 15) = 7 cores.
    assert len(layer1) == 7
    assert max(c.n_neurons for c in layer1) <= 15
    assert [c.n_neurons for c in layer1] == [15, 15, 14, 14, 14, 14, 14]
    assert all(c.synapses <= 1000 for c in layer1)
    # Layer 2 has fan-in 100: 10 neurons per core, 5 neurons fit in one core.
    assert [c.n_neurons for c in mapping.layer_cores(2)] == [5]
    _check_cores(mapping)


@pytest.mark.parametrize("widths, kwargs", [
    ([37, 301, 129, 7], dict(neurons_per_core=50, synapses_per_core=4000, max_fan_in=400)),
    ([5, 1000, 1000, 2], dict(neurons_per_core=333, synapses_per_core=200000)),
    ([300, 17, 3], dict(neurons_per_core=1, synapses_per_core=300, max_fan_in=300)),
])
def test_limits_hold_and_core_count_is_minimal(widths, kwargs):
    profile = _profile(**kwargs)
    mapping = map_network(_net(widths), profile)
    _check_cores(mapping)
    for l in range(1, len(widths)):
        per_core = min(profile.neurons_per_core, profile.synapses_per_core // widths[l - 1])
        assert len(mapping.layer_cores(l)) == math.ceil(widths[l] / per_core)
        sizes = [c.n_neurons for c in mapping.layer_cores(l)]
        assert max(sizes) - min(sizes) <= 1


def test_fan_in_above_max_fan_in():
    with pytest.raises(MappingError) as info:
        map_network(_net([10, 80, 4]), _profile(max_fan_in=64))
    msg = str(info.value)
    assert "Layer 2" in msg and "max_fan_in" in msg
    assert "80" in msg and "64" in msg
    assert "'synthetic'" in msg


def test_fan_in_above_synapses_per_core():
    with pytest.raises(MappingError) as info:
        map_network(_net([10, 80, 4]), _profile(max_fan_in=1000, synapses_per_core=50))
    msg = str(info.value)
    assert "Layer 2" in msg and "synapses_per_core" in msg
    assert "80" in msg and "50" in msg


def test_fan_in_equal_to_limits_maps():
    mapping = map_network(_net([64, 64, 4]), _profile(max_fan_in=64, synapses_per_core=64))
    assert [c.n_neurons for c in mapping.layer_cores(1)] == [1] * 64
    _check_cores(mapping)


def test_more_cores_than_one_chip():
    profile = _profile(cores_per_chip=5, spare_cores_per_chip=1, neurons_per_core=2)
    mapping = map_network(_net([4, 10, 3]), profile)
    assert profile.usable_cores_per_chip == 4
    assert mapping.cores_used == 5 + 2
    assert mapping.chips_needed == 2
    assert mapping.fits is False
    assert [c.chip for c in mapping.cores] == [0, 0, 0, 0, 1, 1, 1]
    for c in mapping.cores:
        assert c.chip == c.core_id // 4
    _check_cores(mapping)
    d = mapping.to_dict()
    assert d["fits"] is False and d["chips_needed"] == 2 and d["usable_cores_per_chip"] == 4
    assert "does NOT fit on one chip: 7 cores need 2 chips (4 usable cores per chip)" in mapping.table()


def test_many_chips():
    profile = _profile(cores_per_chip=3, neurons_per_core=1)
    mapping = map_network(_net([2, 20, 1]), profile)
    assert mapping.cores_used == 21
    assert mapping.chips_needed == 7
    assert [c.chip for c in mapping.cores] == [i // 3 for i in range(21)]


def test_fits_on_one_chip():
    mapping = map_network(_net([4, 10, 3]), _profile(cores_per_chip=7, neurons_per_core=2))
    assert mapping.cores_used == 7 and mapping.chips_needed == 1 and mapping.fits is True
    assert {c.chip for c in mapping.cores} == {0}


# --- crossbar tiling -------------------------------------------------------------------------


def _crossbar(rows=128, cols=128, **overrides):
    return _profile(architecture="crossbar", crossbar_rows=rows, crossbar_cols=cols,
                    neurons_per_core=cols, max_fan_in=rows, synapses_per_core=rows * cols,
                    **overrides)


def test_crossbar_tiles_cover_every_weight_once():
    net = Network.from_arrays([np.random.default_rng(0).normal(size=(300, 200)),
                               np.ones((2, 300))],
                              [np.zeros(300), np.zeros(2)], ["relu", "identity"])
    mapping = map_network(net, _crossbar())
    tiles = mapping.layer_cores(1)
    assert len(tiles) == math.ceil(200 / 128) * math.ceil(300 / 128) == 6
    cover = np.zeros((300, 200), dtype=int)
    for t in tiles:
        assert 1 <= t.n_neurons <= 128 and 1 <= t.axons_in <= 128
        cover[t.out_start:t.out_stop, t.in_start:t.in_stop] += 1
        assert t.utilization == pytest.approx(t.synapses / (128 * 128), abs=1e-12)
    np.testing.assert_array_equal(cover, 1)
    # Layer 2: 2 x 300 -> ceil(300/128) = 3 input blocks, 1 output block.
    assert len(mapping.layer_cores(2)) == 3
    assert mapping.neuron_core is None
    assert mapping.cores_used == 9
    assert [c.core_id for c in mapping.cores] == list(range(9))


def test_crossbar_has_no_fan_in_limit_and_counts_chips():
    net = _net([1000, 50, 2])
    mapping = map_network(net, _crossbar(rows=100, cols=10, cores_per_chip=8))
    # Layer 1: 10 x 5 tiles; layer 2: 1 x 1.
    assert mapping.cores_used == 51
    assert mapping.chips_needed == math.ceil(51 / 8)
    assert [c.chip for c in mapping.cores] == [i // 8 for i in range(51)]


def test_builtin_rram_crossbar():
    mapping = map_network(load_digits_model(), "rram_crossbar")
    # 64->256: 1 x 2 tiles; 256->256: 2 x 2; 256->10: 2 x 1.
    assert [len(mapping.layer_cores(l)) for l in (1, 2, 3)] == [2, 4, 2]
    assert mapping.fits


# --- quantization ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 9, 16])
@pytest.mark.parametrize("p2", [False, True])
@pytest.mark.parametrize("sign", ["mixed", "excitatory", "inhibitory"])
def test_quantize_two_complement(bits, p2, sign):
    rng = np.random.default_rng(bits)
    W = rng.normal(0.0, 0.3, size=(40, 30))
    if sign == "excitatory":
        W = np.abs(W)
    elif sign == "inhibitory":
        W = -np.abs(W)
    profile = _profile(weight_bits=bits, power_of_two_scale=p2)
    q = quantize_layer(W, profile)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert q.Q.dtype == np.int32 and q.Q.shape == W.shape
    assert (q.q_min, q.q_max, q.step) == (lo, hi, 1)
    assert q.sign_mode == sign
    assert q.Q.min() >= lo and q.Q.max() <= hi
    # Round to nearest; the 1e-9 relative slack covers float64 rounding of W / scale.
    assert np.all(np.abs(W - q.scale * q.Q) <= q.scale / 2 * (1 + 1e-9))
    if p2:
        assert math.log2(q.scale) == round(math.log2(q.scale))
        # Smallest power of two: half of it would not hold the range.
        assert W.max() > q.scale / 2 * hi or W.min() < q.scale / 2 * lo
    else:
        # Smallest scale: one end of the range is used.
        assert q.Q.max() == hi or q.Q.min() == lo
    assert q.max_magnitude == 2 ** (bits - 1)


def test_quantize_all_zero_layer():
    q = quantize_layer(np.zeros((3, 4)), _profile())
    assert q.scale == 1.0 and q.sign_mode == "excitatory"
    np.testing.assert_array_equal(q.Q, 0)


def test_loihi2_mixed_sign_layer():
    profile = load_profile("loihi2")
    W = np.random.default_rng(5).normal(0.0, 0.1, size=(50, 40))
    q = quantize_layer(W, profile)
    assert q.sign_mode == "mixed" and q.step == 2
    assert (q.q_min, q.q_max) == (-256, 254)
    assert np.all(q.Q % 2 == 0)
    assert q.Q.min() >= -256 and q.Q.max() <= 254
    assert math.log2(q.scale) == round(math.log2(q.scale))
    # Range check: both ends of W fit in scale * [q_min, q_max] ...
    assert W.max() <= q.scale * 254 and W.min() >= q.scale * -256
    # ... and the power of two is the smallest that does.
    assert W.max() > q.scale / 2 * 254 or W.min() < q.scale / 2 * -256
    # Step 2: the error is at most one scale unit (1e-9 relative slack for rounding).
    assert np.all(np.abs(W - q.scale * q.Q) <= q.scale * (1 + 1e-9))
    assert q.max_magnitude == 256


def test_loihi2_mixed_sign_uses_most_negative_word():
    q = quantize_layer(np.array([[-1.0, 0.5], [0.25, 0.0]]), load_profile("loihi2"))
    # -1 / -256 = 2^-8 is already a power of two; -1 maps to the most negative word.
    assert q.scale == 2.0 ** -8
    np.testing.assert_array_equal(q.Q, [[-256, 128], [64, 0]])


def test_loihi2_single_sign_layers():
    profile = load_profile("loihi2")
    W = np.abs(np.random.default_rng(6).normal(0.0, 0.1, size=(50, 40)))
    q = quantize_layer(W, profile)
    assert q.sign_mode == "excitatory" and q.step == 1
    assert q.Q.min() >= 0 and q.Q.max() <= 255
    assert np.any(q.Q % 2 == 1)  # odd values: step 1, no dropped bit
    assert math.log2(q.scale) == round(math.log2(q.scale))
    assert W.max() <= q.scale * 255
    assert np.all(np.abs(W - q.scale * q.Q) <= q.scale / 2 * (1 + 1e-9))

    qi = quantize_layer(-W, profile)
    assert qi.sign_mode == "inhibitory" and qi.step == 1
    assert qi.Q.min() >= -255 and qi.Q.max() <= 0
    np.testing.assert_array_equal(qi.Q, -q.Q)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantized_network(dtype):
    net = _net([6, 9, 7, 3], activation="tanh", seed=3, dtype=dtype)
    net.metadata["name"] = "small"
    mapping = map_network(net, "loihi2")
    qnet = mapping.quantized_network()
    assert qnet.widths == net.widths
    assert qnet.dtype == net.dtype
    assert qnet.activations == net.activations
    assert qnet.metadata["quantized_for"] == "loihi2" and qnet.metadata["name"] == "small"
    assert "quantized_for" not in net.metadata
    for W, b, q, layer in zip(qnet.weights, qnet.biases, mapping.quantization, net.layers):
        np.testing.assert_array_equal(W, (q.scale * q.Q.astype(np.float64)).astype(dtype))
        np.testing.assert_array_equal(b, layer.b)
        assert not np.array_equal(W, layer.W)  # really quantized
    assert mapping.integer_weights[0] is mapping.quantization[0].Q
    assert mapping.scales == [q.scale for q in mapping.quantization]


def test_quantization_report_on_digits():
    net = load_digits_model()
    X, y = load_digits_test()
    mapping = map_network(net, "loihi2")
    report = mapping.quantization_report(X, y)
    assert report["n_inputs"] == len(X)
    assert abs(report["accuracy_change"]) <= 0.02
    assert report["accuracy_change"] == pytest.approx(
        report["quantized_accuracy"] - report["float_accuracy"], abs=1e-12)
    assert report["float_accuracy"] == pytest.approx(np.mean(net.predict(X) == y), abs=1e-12)
    assert 0.0 < report["relative_error"] < 0.05
    assert 0.0 < report["mean_abs_error"] <= report["max_abs_error"]
    assert report["argmax_agreement"] >= 0.98
    # Without labels: no accuracy keys.
    assert "float_accuracy" not in mapping.quantization_report(X[:10])


def test_dynapse2_rejects_digits_model():
    with pytest.raises(MappingError) as info:
        map_network(load_digits_model(), "dynapse2")
    msg = str(info.value)
    assert "Layer 2" in msg and "'dynapse2'" in msg
    assert "256" in msg and "64" in msg and "max_fan_in" in msg


# --- files and presentation ----------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    net = load_digits_model()
    mapping = map_network(net, _profile(neurons_per_core=100, cores_per_chip=4,
                                        mixed_sign_drop_lsb=True, power_of_two_scale=True))
    path = tmp_path / "mapping.h5"
    mapping.save(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 3
        assert f.attrs["neurosim_format"] == "mapping"
    loaded = load_mapping(path)
    assert loaded.profile == mapping.profile
    assert loaded.profile.name == "synthetic"
    assert loaded.cores == mapping.cores
    assert loaded.chips_needed == mapping.chips_needed == 2
    assert loaded.network.equals(mapping.network)
    assert loaded.network.metadata == net.metadata
    for a, b in zip(loaded.quantization, mapping.quantization):
        np.testing.assert_array_equal(a.Q, b.Q)
        assert (a.scale, a.sign_mode, a.step, a.q_min, a.q_max) == \
               (b.scale, b.sign_mode, b.step, b.q_min, b.q_max)
    for a, b in zip(loaded.neuron_core, mapping.neuron_core):
        np.testing.assert_array_equal(a, b)
    assert loaded.to_dict() == mapping.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["mapping.h5"]


def test_save_and_load_builtin_and_crossbar(tmp_path):
    for name in ("loihi2", "rram_crossbar"):
        mapping = map_network(load_digits_model(), name)
        path = tmp_path / f"{name}.h5"
        mapping.save(path)
        loaded = load_mapping(path)
        assert loaded.profile.name == name and loaded.profile == load_profile(name)
        assert loaded.cores == mapping.cores
        assert loaded.scales == mapping.scales
        if name == "rram_crossbar":
            assert loaded.neuron_core is None


def test_load_mapping_errors(tmp_path):
    missing = tmp_path / "absent.h5"
    with pytest.raises(NeurosimFileNotFoundError, match=re.escape(str(missing))):
        load_mapping(missing)
    network_file = tmp_path / "net.h5"
    from neurosim import save_network
    save_network(_net([3, 2, 1]), network_file)
    with pytest.raises(FileFormatError) as info:
        load_mapping(network_file)
    assert str(network_file) in str(info.value) and "not a neurosim mapping" in str(info.value)


def test_to_dict():
    mapping = map_network(_net([10, 250, 3]), _profile(neurons_per_core=100))
    d = mapping.to_dict()
    assert {"fits", "cores_used", "chips_needed", "layers", "cores"} <= set(d)
    assert d["fits"] is True and d["cores_used"] == 4 and d["chips_needed"] == 1
    assert [(L["index"], L["n_neurons"], L["fan_in"], L["cores"]) for L in d["layers"]] == \
           [(1, 250, 10, 3), (2, 3, 250, 1)]
    assert [c["core_id"] for c in d["cores"]] == [0, 1, 2, 3]
    assert [c["neurons"] for c in d["cores"]] == [84, 83, 83, 3]
    assert d["cores"][3]["synapses"] == 3 * 250
    assert d["totals"]["neurons"] == 253
    assert d["totals"]["synapses"] == 250 * 10 + 3 * 250


def test_table_lists_every_core_and_verdict():
    mapping = map_network(_net([10, 250, 30, 3]), _profile(neurons_per_core=20))
    text = mapping.table(max_rows=100)
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            rows[int(parts[0])] = parts
    assert sorted(rows) == [c.core_id for c in mapping.cores]
    for c in mapping.cores:
        assert rows[c.core_id][:5] == [str(c.core_id), str(c.chip), str(c.layer),
                                       str(c.n_neurons), str(c.axons_in)]
    assert text.splitlines()[-1] == f"fits on one chip: {mapping.cores_used} of 1000 usable cores"


def test_table_truncates_long_listings():
    mapping = map_network(_net([2, 50, 1]), _profile(neurons_per_core=1))
    text = mapping.table(max_rows=10)
    assert "(42 more cores; --json lists all)" in text
    assert text.splitlines()[-1].startswith("fits on one chip: 51 of 1000")


def test_profile_from_user_toml_file(tmp_path):
    path = tmp_path / "tiny_chip.toml"
    path.write_text(
        'name = "tiny"\n'
        'description = "tiny chip written as TOML"\n'
        'architecture = "cores"\n'
        "cores_per_chip = 3\n"
        "spare_cores_per_chip = 1\n"
        "neurons_per_core = 100\n"
        "max_fan_in = 64\n"
        "synapses_per_core = 1000\n"
        "weight_bits = 4\n"
        "[fault_rates]\n"
        "neuron_crash = 0.001\n"
        "synapse_stuck_at_zero = 0.0\n"
        "synapse_stuck_at_max = 0.0\n"
        "weight_bit_flip = 0.0\n"
        "core_failure = 0.0\n",
        encoding="utf-8",
    )
    mapping = map_network(_net([64, 40, 2]), path)
    assert mapping.profile.name == "tiny"
    # Synapse memory binds: 1000 // 64 = 15 neurons per core -> 3 cores of 14/13/13.
    assert [c.n_neurons for c in mapping.layer_cores(1)] == [14, 13, 13]
    assert [c.n_neurons for c in mapping.layer_cores(2)] == [2]
    assert mapping.chips_needed == 2 and not mapping.fits  # 4 cores, 2 usable per chip
    assert [c.chip for c in mapping.cores] == [0, 0, 1, 1]
    for q in mapping.quantization:
        assert q.Q.min() >= -8 and q.Q.max() <= 7
    _check_cores(mapping)
