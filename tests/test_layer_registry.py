"""The proof of the layer seam: a layer type defined here, outside the package, registered and
nothing else, goes through mapping, files, simulate (numba and numpy backends), the theory and
certify, and every one of them gives what a hand-written computation gives."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pytest

import neurosim as ns
from neurosim.activations import Activation, make_activation
from neurosim.errors import ShapeError, UnsupportedLayerError
from neurosim.faults import REC_WEIGHT
from neurosim.hardware import profile_from_dict
from neurosim.layers import LAYERS
from neurosim.plan import build_plan
from neurosim.sampler import sample_faults
from neurosim.theory import single_fault_terms

from reference import reference_outputs


@dataclass
class Diagonal(ns.Layer):
    """``y = phi(s * x + b)``: a fixed per-neuron scaling; neuron i reads input i through its
    one synapse ``s_i``."""

    s: np.ndarray
    b: np.ndarray
    activation: Activation = field(default_factory=lambda: make_activation("identity"))

    kind = "test_diagonal"

    @property
    def n_in(self):
        return int(self.s.size)

    @property
    def n_out(self):
        return int(self.s.size)

    @property
    def bias(self):
        return self.b

    def linear(self, Y):
        return Y * self.s + self.b

    def vjp(self, G):
        return G * self.s.astype(np.float64)

    def dense_matrix(self):
        return np.ascontiguousarray(np.diag(self.s))

    @property
    def synapse_weights(self):
        return self.s

    def synapse_coords(self, pos):
        pos = np.asarray(pos)
        return pos, pos

    def with_parameters(self, synapse_weights=None, bias=None, activation=None):
        return Diagonal(self.s if synapse_weights is None else np.asarray(synapse_weights),
                        self.b if bias is None else np.asarray(bias),
                        self.activation if activation is None else make_activation(activation))

    @property
    def fan_in(self):
        return 1

    def input_span(self, out_start, out_stop):
        return out_start, out_stop

    def block_synapses(self, out_start, out_stop, in_start, in_stop):
        return max(0, min(out_stop, in_stop) - max(out_start, in_start))

    def arrays(self):
        return {"s": self.s, "b": self.b}

    @classmethod
    def from_arrays(cls, arrays, attrs, activation):
        return cls(np.asarray(arrays["s"]), np.asarray(arrays["b"]), activation)

    def cast(self, dtype, index):
        s = np.array(self.s, dtype=dtype).reshape(-1)
        b = np.array(self.b, dtype=dtype).reshape(-1)
        if b.shape != s.shape:
            raise ShapeError(f"layer {index}: s and b differ in shape")
        return Diagonal(s, b, make_activation(self.activation))


@pytest.fixture
def registered():
    ns.register_layer(Diagonal)
    yield Diagonal
    LAYERS.pop(Diagonal.kind, None)


def _net(seed=0, n_in=3, width=4, n_out=2, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return ns.Network([
        ns.Dense(rng.normal(size=(width, n_in)), rng.normal(0, 0.3, width), make_activation("relu")),
        Diagonal(rng.uniform(0.5, 2.0, width) * rng.choice([-1, 1], width), rng.normal(0, 0.3, width),
                 make_activation("tanh")),
        ns.Dense(rng.normal(size=(n_out, width)), rng.normal(0, 0.3, n_out)),
    ], dtype=dtype)


def _by_hand(net, X):
    W1, b1 = net.layers[0].W, net.layers[0].b
    s, b2 = net.layers[1].s, net.layers[1].b
    W3, b3 = net.layers[2].W, net.layers[2].b
    return np.tanh(np.maximum(X @ W1.T + b1, 0) * s + b2) @ W3.T + b3


RATES = {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
         "weight_bit_flip": 0.0, "core_failure": 0.0}
# Two neurons per core, 4-bit words, a spare per chip.
TINY = profile_from_dict({
    "name": "tiny", "description": "tiny test chip", "architecture": "cores", "cores_per_chip": 8,
    "spare_cores_per_chip": 1, "neurons_per_core": 2, "max_fan_in": 1000,
    "synapses_per_core": 10**6, "weight_bits": 4, "fault_rates": RATES}, source="test")
XBAR = profile_from_dict({
    "name": "xbar", "description": "tiny crossbar", "architecture": "crossbar",
    "cores_per_chip": 64, "neurons_per_core": 2, "max_fan_in": 2, "synapses_per_core": 4,
    "weight_bits": 8, "crossbar_rows": 2, "crossbar_cols": 2, "fault_rates": RATES}, source="test")


def test_an_unregistered_layer_is_refused():
    LAYERS.pop(Diagonal.kind, None)
    with pytest.raises(UnsupportedLayerError, match="registered"):
        _net()


def test_forward_and_files(registered, tmp_path):
    net = _net()
    X = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(net.forward(X), _by_hand(net, X), rtol=1e-12)
    for name in ("net.h5", "net.npz"):
        ns.save_network(net, tmp_path / name)
        back = ns.load_network(tmp_path / name)
        assert back.layer_kinds == ["dense", "test_diagonal", "dense"] and back.equals(net)
        np.testing.assert_array_equal(back.forward(X), net.forward(X))


def test_mapping_on_cores_and_crossbar_tiles(registered):
    net = _net(width=6)
    cores = ns.map_network(net, TINY).layer_cores(2)
    assert [(c.out_start, c.out_stop, c.in_start, c.in_stop, c.synapses) for c in cores] == [
        (0, 2, 0, 2, 2), (2, 4, 2, 4, 2), (4, 6, 4, 6, 2)]  # a core reads its own neurons' inputs
    tiles = ns.map_network(net, XBAR).layer_cores(2)
    # 2x2 tiles: only the three on the diagonal hold a weight.
    assert [(c.out_start, c.in_start, c.synapses) for c in tiles] == [(0, 0, 2), (2, 2, 2), (4, 4, 2)]
    mapping = ns.map_network(net, "loihi2")
    q = mapping.quantization[1]
    assert q.Q.shape == (6,)
    np.testing.assert_allclose(mapping.quantized_network().layers[1].s, q.scale * q.Q)


def _compare_backends(target, faults, X, seed):
    plan = build_plan(target, faults)
    batch = sample_faults(plan, np.random.default_rng(seed), 400)
    rows = np.flatnonzero(batch.draw_has_fault)
    inputs = rows % X.shape[0]
    assert rows.size > 50
    ref = reference_outputs(plan, plan.network.check_input(X), batch, rows, inputs)
    for name in ("numba", "numpy"):
        backend = ns.get_backend(name)
        cache = backend.clean_cache(plan, plan.network.check_input(X))
        with backend.session():
            out = backend.propagate(plan, cache, batch, rows, inputs)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    return plan, batch


def test_faults_act_on_the_layers_own_synapses(registered):
    net = _net(seed=2)
    X = np.random.default_rng(3).normal(size=(4, 3))
    mapping = ns.map_network(net, TINY)
    faults = (ns.NeuronCrash(0.1, layers=(0, 1, 2, 3)) + ns.SynapseStuck(0.05, 0.1)
              + ns.WeightBitFlip(0.02) + ns.CoreFailure(0.1))
    plan, batch = _compare_backends(mapping, faults, X, seed=4)
    on_diag = (batch.layer == 2) & (batch.kind == REC_WEIGHT)
    assert on_diag.sum() > 10
    np.testing.assert_array_equal(batch.out_start[on_diag], batch.in_start[on_diag])
    # The diagonal layer's synapse groups hold its 4 synapses (4 x 4 bits for flips).
    sizes = {(g.kind, g.layer): g.n for g in plan.groups}
    assert sizes[("stuck", 2)] == 4 and sizes[("bitflip", 2)] == 16 and sizes[("stuck", 1)] == 12


def _exact_failure(net, X, p, eps):
    """P(||Delta||_inf >= eps) averaged over X, by enumerating every crash pattern of the
    10 on-chip neurons (silent crashes, written by hand)."""
    W1, b1 = net.layers[0].W, net.layers[0].b
    s, b2 = net.layers[1].s, net.layers[1].b
    W3, b3 = net.layers[2].W, net.layers[2].b
    clean = _by_hand(net, X)
    total = 0.0
    for pattern in itertools.product([0, 1], repeat=10):
        m1, m2, m3 = (1 - np.array(pattern[:4])), (1 - np.array(pattern[4:8])), (1 - np.array(pattern[8:]))
        y1 = np.maximum(X @ W1.T + b1, 0) * m1
        y2 = np.tanh(y1 * s + b2) * m2
        out = (y2 @ W3.T + b3) * m3
        prob = p ** sum(pattern) * (1 - p) ** (10 - sum(pattern))
        total += prob * np.mean(np.abs(out - clean).max(axis=1) >= eps)
    return total


def test_simulate_and_certify_on_the_registered_layer(registered):
    net = _net(seed=5)
    X = np.random.default_rng(6).normal(size=(12, 3))
    p, eps = 0.05, 0.4
    exact = _exact_failure(net, X, p, eps)
    assert 0.02 < exact < 0.5
    crash = ns.NeuronCrash(p)
    strat = ns.stratified_estimate(net, crash, X, metric="linf", eps=eps, k_cap=10,
                                   tail_target=1e-9)
    assert all(st.method == "exact" for st in strat.strata)
    assert strat.estimate == pytest.approx(exact, rel=1e-9, abs=strat.tail)
    mc = ns.simulate(net, crash, X, metric="linf", eps=eps, n_samples=4000, seed=1)
    assert mc.ci_low <= exact <= mc.ci_high
    cert = ns.certify(net, crash, X, metric="linf", eps=eps, delta=0.6, seed=0)
    assert cert.empirical.lower <= exact <= cert.empirical.upper
    assert cert.theory is not None and cert.theory.lipschitz[1] == pytest.approx(
        np.abs(net.layers[1].s).max() * np.linalg.norm(net.layers[2].W, 2), rel=1e-12)


def test_exact_single_faults_of_the_registered_layer(registered):
    net = _net(seed=7)
    X = np.random.default_rng(8).normal(size=(3, 3))
    terms = single_fault_terms(net, X, layers=[2])[2]  # (m, n_2, n_L)
    clean = _by_hand(net, X)
    for i in range(4):
        mask = np.ones(4)
        mask[i] = 0
        W1, b1, s, b2 = net.layers[0].W, net.layers[0].b, net.layers[1].s, net.layers[1].b
        y2 = np.tanh(np.maximum(X @ W1.T + b1, 0) * s + b2) * mask
        out = y2 @ net.layers[2].W.T + net.layers[2].b
        np.testing.assert_allclose(terms[:, i, :], out - clean, rtol=1e-12, atol=1e-12)
