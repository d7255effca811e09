"""lava-dl netx files: the fixed-point run against lava-dl's own ground truth, the
floating-point SpikingNetwork, and the reader's errors."""

from pathlib import Path

import h5py
import numpy as np
import pytest

import neurosim as ns
from neurosim.errors import FileFormatError, UnsupportedLayerError, ValidationError
from neurosim.io.netx import _dense_words, read_netx
from neurosim.spiking import reference

DATA = Path(__file__).parent / "data" / "netx"
TINY = DATA / "tiny.net"


def _gt(name, c):
    return np.load(DATA / f"{name}.npy")[0].reshape(c, -1, 16)  # (C, H*W, steps)


def _bias():
    return np.load(DATA / "input_bias.npy").transpose(2, 1, 0)  # (W, H, C) -> (C, H, W)


def test_reads_tiny_net_as_lava_does():
    net = read_netx(TINY)
    assert [l.kind for l in net.layers] == ["input", "conv", "conv"]
    assert [l.shape for l in net.layers] == [(3, 16, 16), (24, 6, 6), (36, 1, 1)]
    assert net.input_transform == {"weight": 36, "bias": 34}  # (lava-dl's test_input_transform)
    assert [(l.du, l.dv, l.vth) for l in net.layers] == [(4095, 1024, 25)] * 3
    assert net.t_sample == 64


def test_tiny_net_equals_lava_dl_ground_truth_exactly():
    """lava-dl's test_tinynet: 17 steps per sample with staggered resets; Lava's output steps
    2..16 equal the ground truth's 1..15. Every layer is checked, not only the output."""
    net = read_netx(TINY)
    run = net.run(bias=_bias(), steps=17 + 3, reset_interval=17)
    out = run.output[:, 0].T  # (36, steps)
    gt = _gt("output", 36).reshape(36, 16)
    assert gt.sum() > 50
    assert np.array_equal(out[:, 2:17], gt[:, 1:])
    # layer i sees a sample from step i + 1 on: its step i + k is the ground truth's k
    for i, (name, c) in enumerate([("input", 3), ("layer1", 24)]):
        ours = run.spikes[i][:, 0].T
        want = _gt(name, c).reshape(ours.shape[0], 16)
        assert np.array_equal(ours[:, i:i + 15], want[:, 1:16]), name


def test_without_resets_the_state_carries_over():
    net = read_netx(TINY)
    a = net.run(bias=_bias(), steps=20, reset_interval=17).output
    b = net.run(bias=_bias(), steps=20).output
    assert not np.array_equal(a, b)  # (the first-step reset of layers 1, 2 matters)


def test_dense_words_are_exact_for_8_bit_weights():
    rng = np.random.default_rng(0)
    for _ in range(50):
        W = rng.integers(-128, 128, size=(7, 11))
        words, exp = _dense_words(W)
        s = rng.random((5, 11)) < 0.5
        acc = s.astype(np.int64) @ words.T
        got = np.right_shift(acc, -exp) if exp <= 0 else np.left_shift(acc, exp)
        assert np.array_equal(got, s.astype(np.int64) @ W.T)
    words, exp = _dense_words(np.array([[300, -5]]))  # netx clips to [-256, 254]
    assert np.array_equal(np.right_shift(words, -exp) if exp <= 0 else words, [[254, -5]])


def _write(path, layers, simulation=None):
    with h5py.File(path, "w") as f:
        for i, layer in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            for key, value in layer.items():
                if key == "neuron":
                    ng = g.create_group("neuron")
                    for k, v in value.items():
                        ng[k] = np.bytes_(v) if isinstance(v, str) else v
                elif key == "type":
                    g[key] = np.array([value.encode()], dtype="S10")
                else:
                    g[key] = value
    return path


def _neuron(**kw):
    return {"type": "CUBA", "iDecay": 4096, "vDecay": 0, "vThMant": 40, **kw}


def _dense_net(tmp_path, rng, **neuron):
    return _write(tmp_path / "d.net", [
        {"type": "input", "shape": np.array([6]), "neuron": _neuron(vDecay=512)},
        {"type": "dense", "shape": np.array([5]), "weight": rng.integers(-60, 60, (5, 6)),
         "bias": rng.integers(-5, 5, 5), "neuron": _neuron(**neuron)},
        {"type": "dense", "shape": np.array([3]), "weight": rng.integers(-60, 60, (3, 5))},
    ])


def test_dense_network_by_hand(tmp_path):
    """A dense net checked against the LIF equations written out for one neuron."""
    rng = np.random.default_rng(1)
    net = read_netx(_dense_net(tmp_path, rng, vDecay=1024, iDecay=1024))
    bias = rng.integers(0, 200, (4, 6))
    run = net.run(bias=bias, steps=12, record_state="all")
    W1 = net.layers[1].synapse.W.astype(np.int64) * 2 ** net.layers[1].weight_exp
    s0 = run.spikes[0].astype(np.int64)
    u = v = 0
    for t in range(12):
        a = s0[t - 1, 2] @ W1[3] if t >= 1 else 0
        y = u * (4096 - 1024)
        u = int(np.sign(y) * (abs(y) >> 12)) + (int(a) << 6)
        y = v * (4096 - 1024)
        v = int(np.sign(y) * (abs(y) >> 12)) + u + (int(net.layers[1].bias[3]) << 6)
        fired = v > 40 << 6
        v = 0 if fired else v
        assert run.spikes[1][t, 2, 3] == fired and run.v[1][t, 2, 3] == v and run.u[1][t, 2, 3] == u
    assert net.layers[2].integrator
    # the integrator output: v is the running sum of its input and it never spikes
    assert not run.spikes[2].any() and np.abs(run.v[2]).max() > 0


def test_to_spiking_is_close_to_fixed_point_and_runs_everywhere():
    net = read_netx(TINY)
    P = 17
    run = net.run(bias=_bias(), steps=P + 3, reset_interval=P)
    snn = net.to_spiking(T=P - 1)
    assert snn.encoding == "neuron" and snn.readout == "count"
    X = _bias().reshape(1, -1).astype(np.float64)
    out, counts = snn.run(X, record=True)
    ref, ref_counts = reference.run(snn, X, record=True)
    assert np.array_equal(out, ref)
    for c, rc in zip(counts, ref_counts):
        assert np.array_equal(c, rc)
    # the float network's step t is Lava's step t + i at layer i; the two differ by the
    # rounding of the decays only (measured: 1.4 %, 0.2 %, 4 % of the spikes per layer)
    for i in range(3):
        lava = run.spikes[i][i:i + P - 1, 0].sum()
        assert abs(counts[i].sum() - lava) <= 0.1 * lava, i
    clean = ns.simulate(snn, ns.NeuronCrash(0.0), X, n_samples=10, seed=0)
    crashed = ns.simulate(snn, ns.NeuronCrash(0.5), X, n_samples=20, seed=0)
    assert clean.failure_rate == 0 and crashed.failure_rate > 0.5


def test_load_netx_and_the_command_line(tmp_path):
    from neurosim.cli import main

    snn = ns.load_netx(TINY, T=8)
    assert snn.T == 8 and snn.network.widths == [768, 864, 36]
    with pytest.raises(FileFormatError, match="load_netx"):
        ns.load_network(TINY)
    assert main(["map", str(TINY), "--profile", "loihi2", "--steps", "8"]) == 0
    mapping = ns.map_network(snn, "loihi2")
    mapping.save(tmp_path / "m.h5")
    back = ns.load_mapping(tmp_path / "m.h5").spiking
    assert back.encoding == "neuron" and back.input_neuron == snn.input_neuron


def test_neuron_encoding_needs_its_neuron():
    snn = ns.load_netx(TINY, T=4)
    with pytest.raises(ValidationError, match="input_neuron"):
        ns.spiking.SpikingNetwork(snn.network, snn.neurons, T=4, encoding="neuron",
                                  readout="count")
    with pytest.raises(ValidationError, match="input_neuron"):
        ns.spiking.SpikingNetwork(snn.network, snn.neurons, T=4, readout="count",
                                  input_neuron=snn.input_neuron)


@pytest.mark.parametrize("change, error, match", [
    (lambda L: L[1].update(type="pool"), UnsupportedLayerError, "'pool'"),
    (lambda L: L[1]["neuron"].update(type="SDNN"), UnsupportedLayerError, "SDNN"),
    (lambda L: L[1].update(delay=np.ones(5)), UnsupportedLayerError, "delay"),
    (lambda L: L[1].update(weight=np.full((5, 6), np.nan)), FileFormatError, "NaN"),
    (lambda L: L[1].update(weight=np.ones((5, 7))), FileFormatError, "weight"),
    (lambda L: L[1].update(bias=np.full(5, 5000)), FileFormatError, "13-bit"),
    (lambda L: L[1]["neuron"].update(vDecay=5000), FileFormatError, "vDecay"),
    (lambda L: L[1]["neuron"].pop("vThMant"), FileFormatError, "vThMant"),
    (lambda L: L.pop(0), UnsupportedLayerError, "input layer"),
])
def test_bad_files_are_refused_by_name(tmp_path, change, error, match):
    rng = np.random.default_rng(2)
    layers = [
        {"type": "input", "shape": np.array([6]), "neuron": _neuron()},
        {"type": "dense", "shape": np.array([5]), "weight": rng.integers(-9, 9, (5, 6)),
         "neuron": _neuron()},
    ]
    change(layers)
    path = _write(tmp_path / "bad.net", layers)
    with pytest.raises(error, match=match) as info:
        read_netx(path)
    assert "bad.net" in str(info.value)


def test_not_a_netx_file(tmp_path):
    with pytest.raises(ns.NeurosimError, match="does not exist"):
        read_netx(tmp_path / "none.net")
    junk = tmp_path / "junk.net"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(FileFormatError, match="junk.net"):
        read_netx(junk)
    with h5py.File(tmp_path / "empty.net", "w"):
        pass
    with pytest.raises(FileFormatError, match="'layer'"):
        read_netx(tmp_path / "empty.net")


def test_run_checks_its_input():
    net = read_netx(TINY)
    with pytest.raises(ValidationError, match="shape"):
        net.run(bias=np.zeros((2, 3, 4, 4)), steps=3)
    with pytest.raises(ValidationError, match="13-bit"):
        net.run(bias=np.full((3, 16, 16), 5000), steps=3)
    with pytest.raises(ValidationError, match="integers"):
        net.run(bias=np.full((3, 16, 16), 0.5), steps=3)
    with pytest.raises(ValidationError, match="steps"):
        net.run(bias=np.zeros((3, 16, 16)), steps=0)
