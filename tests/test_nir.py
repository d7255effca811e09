"""NIR graphs in and out (neurosim.io.nir), against files that real tools wrote (tests/data/nir,
vendored from the NIR repository with its licence) and against round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neurosim as ns
from neurosim import spiking as sp
from neurosim.errors import (FileFormatError, MissingExtraError, UnsupportedLayerError,
                             ValidationError)

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")

DATA = Path(__file__).parent / "data" / "nir"


# --- files that real tools wrote ---------------------------------------------------------------

def test_the_sinabs_cnn_reads_with_the_shapes_and_weights_of_the_file():
    snn = ns.load_nir(DATA / "cnn_sinabs.nir", dt=1.0, T=10)
    net = snn.network
    # the model sinabs.py defines (NIR repository, paper/02_cnn/README.md)
    assert net.shapes == [(2, 34, 34), (16, 16, 16), (16, 16, 16), (8, 8, 8), (256,), (10,)]
    assert [type(t).__name__ for pre in net.pre for t in pre] == ["SumPool2d", "SumPool2d",
                                                                  "Flatten"]
    assert snn.readout == "count" and all(isinstance(m, sp.IF) for m in snn.neurons)
    assert snn.neurons[0].reset == "value" and snn.neurons[0].threshold == 1.0
    graph = nir.read(str(DATA / "cnn_sinabs.nir"))
    for layer, key in zip(net.layers, ["0", "2", "5", "9", "11"]):
        np.testing.assert_array_equal(layer.synapse_weights, graph.nodes[key].weight)
        np.testing.assert_array_equal(layer.b, graph.nodes[key].bias)


def _torch_time_loop(graph, X, T):
    """The Sinabs graph run from its raw nodes with torch, written independently of neurosim:
    conv / linear, IF neurons ``v += r I`` (dt 1), spike at ``v >= v_threshold``, reset to
    ``v_reset``, sum pools, flatten; the output neurons' spike counts / T."""
    import torch.nn.functional as F

    n = graph.nodes
    x = torch.tensor(X.reshape(-1, 2, 34, 34), dtype=torch.float64)
    state, counts = {}, 0
    for t in range(T):
        s = x
        for key in [str(k) for k in range(13)]:
            node = n[key]
            kind = type(node).__name__
            if kind == "Conv2d":
                s = F.conv2d(s, torch.tensor(node.weight, dtype=torch.float64),
                             torch.tensor(node.bias, dtype=torch.float64),
                             stride=tuple(node.stride), padding=tuple(node.padding))
            elif kind == "Affine":
                s = s @ torch.tensor(node.weight, dtype=torch.float64).T + torch.tensor(
                    node.bias, dtype=torch.float64)
            elif kind == "SumPool2d":
                s = F.avg_pool2d(s, tuple(node.kernel_size), tuple(node.stride),
                                 divisor_override=1)
            elif kind == "Flatten":
                s = s.flatten(1)
            elif kind == "IF":
                r, thr, reset = (torch.tensor(a, dtype=torch.float64)
                                 for a in (node.r, node.v_threshold, node.v_reset))
                v = state.get(key, torch.zeros_like(s)) + r * s
                spike = (v >= thr).double()
                state[key] = torch.where(spike > 0, reset.expand_as(v), v)
                s = spike
        counts = counts + s
    return (counts / T).numpy()


def test_the_sinabs_cnn_runs_as_a_torch_time_loop_of_its_raw_nodes():
    snn = ns.load_nir(DATA / "cnn_sinabs.nir", dt=1.0, T=12, dtype=np.float64)
    X = (np.random.default_rng(0).random((6, 2 * 34 * 34)) < 0.3).astype(np.float64)
    want = _torch_time_loop(nir.read(str(DATA / "cnn_sinabs.nir")), X, 12)
    got = snn.run(X)
    assert want.sum() > 0
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sp.run(snn, X), want)  # and the step-by-step reference


def test_the_norse_lif_neuron_spikes_where_norse_spiked():
    """Norse's own run of its exported LIF neuron (dt = 1e-4, 1000 steps, lif_norse.csv):
    neurosim's neuron on the same input spikes spikes at exactly the same steps."""
    from neurosim.kernels.spiking import neuron_scan

    trace = np.loadtxt(DATA / "lif_norse.csv", delimiter=",", dtype=np.float32)
    snn = ns.load_nir(DATA / "lif_norse.nir", dt=1e-4, T=trace.shape[0])
    model = snn.neurons[0]
    assert isinstance(model, sp.LIF) and model.reset == "value"
    I = snn.network.layers[0].linear(trace[:, :1]).astype(np.float32)[:, None, :]
    p = {k: v.astype(np.float32) for k, v in model.params(1, snn.dt).items()}
    want = np.flatnonzero(trace[:, 2])
    assert want.size == 4
    np.testing.assert_array_equal(np.flatnonzero(sp.neuron_loop(I, p, False)[:, 0, 0]), want)
    out = np.empty_like(I)
    none = np.zeros((0, 1), np.float32)
    neuron_scan(I, p["syn_keep"], p["syn_gain"], p["keep"], p["leak"], p["gain"], p["threshold"],
                p["v_reset"], False, out, np.full(1, -1), none, none, none)
    np.testing.assert_array_equal(np.flatnonzero(out[:, 0, 0]), want)


def test_the_sinabs_cnn_under_faults_gives_the_same_numbers_on_both_backends():
    snn = ns.load_nir(DATA / "cnn_sinabs.nir", dt=1.0, T=8)
    X = (np.random.default_rng(1).random((12, 2 * 34 * 34)) < 0.3).astype(np.float32)
    y = snn.predict(X)
    faults = (ns.NeuronCrash(2e-4) + ns.ThresholdPerturbation(2e-4, factor=(0.5, 2.0))
              + ns.SynapseStuck(1e-4, 0.0))
    kw = dict(n_samples=4, seed=3, metric="linf", eps=0.05, progress=False)
    a = ns.simulate(snn, faults, X, y, backend="numpy", **kw)
    b = ns.simulate(snn, faults, X, y, backend="numba", **kw)
    assert a.n_faulty_pairs > 0
    assert (a.n_failures, a.n_faulty_pairs) == (b.n_failures, b.n_faulty_pairs)


# --- round trips --------------------------------------------------------------------------------

def test_a_converted_network_round_trips_with_its_subtraction_reset(tmp_path):
    X, _ = ns.load_digits_test()
    snn = sp.convert(ns.load_digits_model(), X[:100], T=16)
    path = tmp_path / "mlp.nir"
    with pytest.warns(ns.NeurosimWarning, match="subtract"):
        ns.save_nir(snn, path)
    back = ns.load_nir(path, T=16)  # (dt: the graph records its own)
    assert back.neurons == snn.neurons and back.readout == "membrane"
    np.testing.assert_array_equal(back.run(X[100:160]), snn.run(X[100:160]))
    graph = nir.read(str(path))  # what another tool reads (nir's own type check passes)
    assert [type(graph.nodes[str(k)]).__name__ for k in range(5)] == [
        "Affine", "IF", "Affine", "IF", "Affine"]
    assert graph.nodes["1"].metadata["neurosim_reset"] == "subtract"


def _mixed_network(seed=0):
    """A spiking conv net with what nir 1.0.8's shape inference gets wrong: a non-square
    kernel, groups > 1, stride 2, and every neuron model with per-neuron parameters."""
    from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, SumPool2d

    rng = np.random.default_rng(seed)
    c1 = Conv2d.build(rng.normal(0, 0.4, (4, 1, 3, 5)), rng.normal(0, 0.1, 4), in_shape=(2, 9, 11),
                      stride=(2, 1), padding=(1, 2), groups=2)  # -> (4, 5, 11)
    c2 = Conv2d.build(rng.normal(0, 0.4, (6, 4, 2, 3)), None, in_shape=(4, 5, 11), padding=(1, 1))
    c2_out = c2.out_shape  # (6, 6, 11)
    pool = SumPool2d(kernel=(2, 3), stride=(2, 3)).bind(c2_out)  # (6, 3, 3)
    avg = AvgPool2d(kernel=(1, 1), stride=(1, 1)).bind(pool.out_shape)
    flat = Flatten().bind(avg.out_shape)
    d1 = Dense(rng.normal(0, 0.3, (7, flat.n_out)), rng.normal(0, 0.1, 7))
    d2 = Dense(rng.normal(0, 0.5, (3, 7)), np.zeros(3))
    net = ns.Network([c1, c2, pool, avg, flat, d1, d2], input_shape=(2, 9, 11))
    n1, n2, n3 = (int(np.prod(s)) for s in net.shapes[1:4])
    neurons = [sp.IF(threshold=rng.uniform(0.3, 1.0, n1), reset="value", v_reset=-0.1),
               sp.LIF(tau=rng.uniform(2, 6, n2), v_leak=0.05, threshold=0.4),
               sp.CubaLIF(tau_syn=2.0, tau_mem=rng.uniform(2, 5, n3), threshold=0.3,
                          reset="value"),
               sp.IF(threshold=0.5)]
    return sp.SpikingNetwork(net, neurons, T=10, readout="count")


def test_a_conv_network_with_every_neuron_model_round_trips_exactly(tmp_path):
    snn = _mixed_network()
    X = np.random.default_rng(5).uniform(0, 1, (8, 2 * 9 * 11))
    path = tmp_path / "mixed.nir"
    with pytest.warns(ns.NeurosimWarning):
        ns.save_nir(snn, path)
    back = ns.load_nir(path, T=10)
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(str(path))  # nir 1.0.8's own shape inference gets groups > 1 wrong
    assert back.network.shapes == snn.network.shapes
    assert back.neurons == snn.neurons
    for a, b in zip(back.network.layers, snn.network.layers):
        np.testing.assert_array_equal(a.synapse_weights, b.synapse_weights)
        np.testing.assert_array_equal(a.bias, b.bias)
    assert back.network.layers[0].groups == 2 and back.network.layers[0].stride == (2, 1)
    want = snn.run(X)
    assert 0 < want.sum()
    np.testing.assert_array_equal(back.run(X), want)


def test_conv1d_scale_threshold_and_an_output_integrator_read_as_nir_states_them():
    """A hand-built graph: Conv1d -> Scale -> Threshold -> Flatten -> Linear -> I, checked
    against the NIR equations written out in NumPy (dt = 0.5, T = 6)."""
    rng = np.random.default_rng(2)
    K = rng.normal(0, 0.5, (3, 2, 3))
    b = rng.normal(0, 0.1, 3)
    scale = np.array([0.5, 2.0, 1.5])
    thr = 0.2
    W = rng.normal(0, 0.5, (4, 3 * 5))
    r = 0.25
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([2, 7])}),
               "c": nir.Conv1d(input_shape=7, weight=K, stride=1, padding=0, dilation=1,
                               groups=1, bias=b),
               "s": nir.Scale(scale=np.repeat(scale, 5)),
               "t": nir.Threshold(threshold=np.full(15, thr)),
               "f": nir.Flatten(input_type={"input": np.array([3, 5])}, start_dim=0, end_dim=-1),
               "l": nir.Linear(weight=W),
               "i": nir.I(r=np.full(4, r)),
               "out": nir.Output(output_type={"output": np.array([4])})},
        edges=[("in", "c"), ("c", "s"), ("s", "t"), ("t", "f"), ("f", "l"), ("l", "i"),
               ("i", "out")], type_check=False)
    dt, T = 0.5, 6
    from neurosim.io.nir import from_nir

    snn = from_nir(graph, dt=dt, T=T, dtype=np.float64)
    X = rng.uniform(-1, 1, (5, 14))
    # NIR: conv, scale, a threshold spike (memoryless), a linear map, v_T = sum_t dt r I_t
    x = X.reshape(5, 2, 7)
    z = np.stack([np.stack([sum(np.correlate(x[n, c], K[o, c], "valid") for c in range(2)) + b[o]
                            for o in range(3)]) for n in range(5)])
    spikes = (z * scale[None, :, None] >= thr).astype(float).reshape(5, -1)
    want = T * dt * r * (spikes @ W.T)  # constant input: the same spikes at every step
    np.testing.assert_allclose(snn.run(X), want, rtol=1e-12, atol=1e-12)
    assert snn.network.input_shape == (2, 1, 7) and snn.readout == "membrane"


def test_an_output_leaky_integrator_is_the_li_readout_and_round_trips(tmp_path):
    """Input -> Affine -> IF -> Affine -> LI: the readout is the LI's membrane after the last
    step, ``v <- (1 - k) v + k v_leak + k r I`` (k = dt / tau), as NIR states it."""
    rng = np.random.default_rng(4)
    W1, b1, W2 = rng.normal(0, 1, (5, 3)), rng.normal(0.2, 0.1, 5), rng.normal(0, 1, (2, 5))
    tau, r, v_leak, dt, T = np.array([4.0, 2.0]), np.array([1.0, 0.5]), np.array([0.1, -0.2]), \
        1.0, 7
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([3])}),
               "a": nir.Affine(weight=W1, bias=b1),
               "n": nir.IF(r=np.ones(5), v_threshold=np.full(5, 0.6), v_reset=np.zeros(5)),
               "b": nir.Affine(weight=W2, bias=np.zeros(2)),
               "li": nir.LI(tau=tau, r=r, v_leak=v_leak),
               "out": nir.Output(output_type={"output": np.array([2])})},
        edges=[("in", "a"), ("a", "n"), ("n", "b"), ("b", "li"), ("li", "out")],
        type_check=False)
    from neurosim.io.nir import from_nir

    snn = from_nir(graph, dt=dt, T=T, dtype=np.float64)
    assert snn.readout == "li" and snn.li == sp.LI(tau=tau, r=r, v_leak=v_leak)
    X = rng.uniform(-1, 1, (4, 3))
    v_if, v_li = np.zeros((4, 5)), np.zeros((4, 2))
    k = dt / tau
    for _ in range(T):  # the NIR equations, written out
        v_if = v_if + (X @ W1.T + b1)
        spikes = (v_if >= 0.6).astype(float)
        v_if = np.where(spikes > 0, 0.0, v_if)
        v_li = v_li + k * (v_leak - v_li + r * (spikes @ W2.T))
    np.testing.assert_allclose(snn.run(X), v_li, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sp.run(snn, X), snn.run(X))
    path = tmp_path / "li.nir"
    ns.save_nir(snn, path)
    back = ns.load_nir(path, T=T, dtype=np.float64)
    assert back.li == snn.li
    np.testing.assert_array_equal(back.run(X), snn.run(X))


def test_the_command_line_simulates_and_maps_a_nir_model(tmp_path, capsys):
    import json

    from neurosim.cli import main

    X, _ = ns.load_digits_test()
    path = tmp_path / "mlp.nir"
    with pytest.warns(ns.NeurosimWarning):
        ns.save_nir(sp.convert(ns.load_digits_model(), X[:198], T=8), path)
    code = main(["simulate", str(path), "--steps", "8", "--fault", "crash:p=1e-3,steps=1",
                 "--fault", "threshold:p=0.01,factor=0.5", "--samples", "4", "--json",
                 "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["simulated_network"] == "quantized for loihi2" and out["n_faulty_pairs"] > 0
    assert "threshold:p=0.01,factor=0.5" in out["fault_model"]
    assert main(["map", str(path), "--data", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fits"] and 0.9 < report["quantization"]["argmax_agreement"] <= 1.0
    assert main(["simulate", str(DATA / "lif_norse.nir"), "--samples", "2"]) != 0
    assert "--dt" in capsys.readouterr().err


# --- what it refuses --------------------------------------------------------------------------

def _chain_graph(extra_edges=(), extra_nodes=None):
    nodes = {"in": nir.Input(input_type={"input": np.array([3])}),
             "a": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
             "n": nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
             "b": nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2)),
             "out": nir.Output(output_type={"output": np.array([2])})}
    nodes.update(extra_nodes or {})
    edges = [("in", "a"), ("a", "n"), ("n", "b"), ("b", "out"), *extra_edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_graphs_that_are_not_chains_are_errors_naming_the_node():
    from neurosim.io.nir import from_nir

    assert from_nir(_chain_graph(), dt=1.0).network.widths == [3, 2, 2]
    with pytest.raises(UnsupportedLayerError, match="node 'n' \\(IF\\) has 2 outgoing"):
        from_nir(_chain_graph([("n", "x")], {"x": nir.Affine(weight=np.ones((1, 2)),
                                                              bias=np.zeros(1))}), dt=1.0)
    with pytest.raises(UnsupportedLayerError, match="node 'a' \\(Affine\\) has 2 inputs"):
        from_nir(_chain_graph([("n", "a")]), dt=1.0)
    with pytest.raises(UnsupportedLayerError, match="node 'x' .* not on the chain"):
        from_nir(_chain_graph(extra_nodes={"x": nir.Affine(weight=np.ones((1, 2)),
                                                           bias=np.zeros(1))}), dt=1.0)
    li = _chain_graph(extra_nodes={"n": nir.LI(tau=np.ones(2), r=np.ones(2),
                                               v_leak=np.zeros(2))})
    with pytest.raises(UnsupportedLayerError, match="node 'n' \\(LI\\).*only as the graph's "
                       "output"):
        from_nir(li, dt=1.0)
    with pytest.raises(ValidationError, match="needs dt"):
        from_nir(_chain_graph())
    two = _chain_graph(extra_nodes={"n": nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2))})
    with pytest.raises(UnsupportedLayerError, match="no neuron between them"):
        from_nir(two, dt=1.0)
    fast = _chain_graph(extra_nodes={"n": nir.LIF(tau=np.full(2, 0.5), r=np.ones(2),
                                                  v_leak=np.zeros(2), v_threshold=np.ones(2),
                                                  v_reset=np.zeros(2))})
    with pytest.raises(ValidationError, match="node 'n' \\(LIF\\).*dt / tau"):
        from_nir(fast, dt=1.0)


def test_bad_files_and_unwritable_networks_are_clear_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not an HDF5 file at all")
    with pytest.raises(FileFormatError, match="bad.nir: not a valid NIR graph file"):
        ns.load_nir(bad, dt=1.0)
    with pytest.raises(ns.NeurosimError, match="does not exist"):
        ns.load_nir(tmp_path / "missing.nir", dt=1.0)
    with pytest.raises(FileFormatError, match="load_nir"):
        ns.load_network(DATA / "lif_norse.nir")
    X, _ = ns.load_digits_test()
    conv = sp.convert(ns.load_digits_conv_model(), X[:50], T=8)
    with pytest.raises(UnsupportedLayerError, match="NIR has no node for the maxpool2d"):
        ns.save_nir(conv, tmp_path / "conv.nir")
    assert not (tmp_path / "conv.nir").exists()
    graded = sp.SpikingNetwork(ns.Network.random([3, 4, 2], "relu", seed=0), [None, None])
    with pytest.raises(UnsupportedLayerError, match="layer 1 is graded"):
        ns.save_nir(graded, tmp_path / "graded.nir")
    with pytest.raises(ValidationError, match="writes a SpikingNetwork"):
        ns.save_nir(ns.load_digits_model(), tmp_path / "ann.nir")
    import builtins

    real = builtins.__import__

    def no_nir(name, *args, **kw):
        if name == "nir":
            raise ImportError("no nir here")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_nir)
    with pytest.raises(MissingExtraError, match=r"neurosim-faults\[nir\]"):
        ns.load_nir(DATA / "lif_norse.nir", dt=1.0)


def test_a_sum_pooling_gives_the_same_numbers_on_both_backends_of_a_graded_network():
    from neurosim.layers import Conv2d, Dense, Flatten, SumPool2d

    rng = np.random.default_rng(0)
    conv = Conv2d.build(rng.normal(0, 0.5, (3, 1, 3, 3)), rng.normal(0, 0.1, 3),
                        in_shape=(1, 8, 8), activation="relu")
    pool = SumPool2d(kernel=(2, 2)).bind(conv.out_shape)
    flat = Flatten().bind(pool.out_shape)
    net = ns.Network([conv, pool, flat, Dense(rng.normal(0, 0.3, (4, flat.n_out)), np.zeros(4))])
    X = rng.uniform(0, 1, (20, 64))
    windows = X.reshape(20, 1, 8, 8)
    z = np.maximum(0, np.stack([
        sum(conv.K[o, 0, i, j] * windows[:, 0, i:i + 6, j:j + 6] for i in range(3)
            for j in range(3)) + conv.b[o] for o in range(3)], axis=1))
    pooled = z.reshape(20, 3, 3, 2, 3, 2).sum(axis=(3, 5)).reshape(20, -1)
    np.testing.assert_allclose(net.forward(X), pooled @ net.layers[1].W.T, rtol=1e-5, atol=1e-6)
    kw = dict(n_samples=30, seed=1, progress=False, metric="linf", eps=0.05)
    faults = ns.NeuronCrash(0.05) + ns.SynapseStuck(0.01, 0.01)
    a = ns.simulate(net, faults, X, None, backend="numpy", **kw)
    b = ns.simulate(net, faults, X, None, backend="numba", **kw)
    assert a.n_faulty_pairs > 0 and a.n_failures > 0
    assert (a.n_failures, a.n_faulty_pairs) == (b.n_failures, b.n_faulty_pairs)
