"""The paper's bounds on conv networks: operator norms, pooling constants, backpropagated crash
derivatives, exact single-fault terms and the single-crash bound through pooling."""

from __future__ import annotations

import numpy as np
import pytest

from neurosim import NeuronCrash
from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.network import Network
from neurosim.plan import build_plan
from neurosim.theory import crash_derivatives, single_fault_terms
from neurosim.theory.bounds import assumptions_report


def _net(act="tanh", seed=0):
    """Conv -> overlapping max pool -> conv (stride 2, groups) -> avg pool -> flatten (hwc) ->
    dense -> dense: every transform between weighted layers."""
    rng = np.random.default_rng(seed)
    return Network([
        Conv2d.build(rng.normal(0, 0.5, (4, 2, 3, 3)), rng.normal(0, 0.1, 4), (2, 7, 7),
                     padding=1, activation=act),
        MaxPool2d(3, 2, 1),
        Conv2d.build(rng.normal(0, 0.4, (6, 2, 2, 2)), rng.normal(0, 0.1, 6), (4, 4, 4),
                     stride=1, padding="same", groups=2, activation=act),
        AvgPool2d(2), Flatten("hwc"),
        Dense(rng.normal(0, 0.5, (5, 24)), rng.normal(0, 0.1, 5), act),
        Dense(rng.normal(0, 0.5, (3, 5)), rng.normal(0, 0.1, 3)),
    ])


def _forward_scaled(net, X, l, i, factor):
    """Output with neuron i of layer l multiplied by ``factor`` (neurosim's layer maps)."""
    y = net.check_input(X).astype(np.float64)
    if l == 0:
        y = y.copy()
        y[:, i] *= factor
    for k, layer in enumerate(net.layers, start=1):
        y = layer.activation(layer.linear(net.layer_input(k, y)))
        if k == l:
            y = y.copy()
            y[:, i] *= factor
    return y


@pytest.mark.parametrize("act", ["tanh", "gelu", "silu"])
def test_crash_derivatives_match_finite_differences(act):
    net = _net(act)
    X = np.random.default_rng(1).normal(size=(3, 2, 7, 7))
    d = crash_derivatives(net, X, "silent")
    rng = np.random.default_rng(2)
    h = 1e-6
    for l in range(net.n_layers + 1):
        for i in rng.choice(net.widths[l], size=min(6, net.widths[l]), replace=False):
            # xi moves y_i to (1 - xi) y_i: central difference in xi at 0.
            fd = (_forward_scaled(net, X, l, i, 1 - h) - _forward_scaled(net, X, l, i, 1 + h)) / (2 * h)
            np.testing.assert_allclose(d[l][:, i, :], fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_single_fault_terms_match_explicit_crashes(backend):
    net = _net("relu", seed=3)
    X = np.random.default_rng(4).normal(size=(3, 2, 7, 7))
    terms = single_fault_terms(net, X, "silent", backend=backend)
    clean = net.forward(X)
    for l in range(net.n_layers + 1):
        for i in range(0, net.widths[l], max(1, net.widths[l] // 7)):
            explicit = _forward_scaled(net, X, l, i, 0.0) - clean
            np.testing.assert_allclose(terms[l][:, i, :], explicit, rtol=1e-9, atol=1e-12)


def test_single_crash_bound_through_pooling_is_sound():
    """|D| <= Prop. 2 bound for every (input, neuron): pooling enters via its influence."""
    net = _net("relu", seed=5)
    X = np.random.default_rng(6).normal(size=(6, 2, 7, 7)) * 2
    crash = NeuronCrash(0.1, layers=(1, 2, 3))
    plan = build_plan(net, crash)
    terms = single_fault_terms(net, X, "silent", backend="numpy")
    ys = net.forward(X, return_all=True)
    tight = 0.0
    for group in plan.groups:
        bound = crash.single_fault_bound(plan, group, ys)
        err = np.linalg.norm(terms[group.layer], axis=2)
        assert np.all(err <= bound), group
        tight = max(tight, float((err / np.maximum(bound, 1e-300)).max()))
    assert tight > 0.05  # the bound is not vacuous


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding="same"),
                                    dict(dilation=2, groups=2), dict(groups=4, padding=(1, 0))])
def test_conv_operator_norm(kwargs):
    rng = np.random.default_rng(7)
    groups = kwargs.get("groups", 1)
    conv = Conv2d.build(rng.normal(size=(4, 4 // groups, 3, 3)), None, (4, 9, 8), **kwargs)
    exact = np.linalg.norm(conv.dense_matrix(), 2)
    assert conv.operator_norm() == pytest.approx(exact, rel=1e-12)
    assert conv.iterative_norm() == pytest.approx(exact, rel=1e-8)


def test_pooling_lipschitz_constants():
    rng = np.random.default_rng(8)
    shape = (2, 9, 9)
    n = int(np.prod(shape))
    # Overlapping max pooling is not 1-Lipschitz in l2; the constant bounds every pair.
    mp = MaxPool2d(3, 2).bind(shape)
    assert mp.lipschitz == pytest.approx(2.0)
    a = rng.normal(size=(4000, n))
    b = a + rng.normal(scale=0.3, size=a.shape) * (rng.random(size=a.shape) < 0.05)
    moved = np.linalg.norm(a - b, axis=1) > 0
    ratio = (np.linalg.norm(mp.apply(a[moved]) - mp.apply(b[moved]), axis=1)
             / np.linalg.norm(a[moved] - b[moved], axis=1))
    assert ratio.max() <= mp.lipschitz
    # One input in four windows (the corner shared by 2 x 2 windows) moves four outputs.
    x = np.zeros((1, n))
    e = x.copy()
    e[0, 2 * 9 + 2] = 1.0
    assert np.linalg.norm(mp.apply(e) - mp.apply(x)) == pytest.approx(2.0)
    # Average pooling: the Schur bound is an upper bound on ||P||_2, exact without overlap.
    for pool, exact_norm in ((AvgPool2d(3, 2, 1).bind(shape), None),
                             (AvgPool2d(3).bind(shape), 1 / 3)):
        P = pool.apply(np.eye(n)).T  # (n_out, n_in)
        norm = np.linalg.norm(P, 2)
        assert pool.lipschitz >= norm - 1e-12
        if exact_norm is not None:
            assert pool.lipschitz == pytest.approx(exact_norm) and norm == pytest.approx(exact_norm)
    gap = GlobalAvgPool2d().bind(shape)
    assert gap.lipschitz == pytest.approx(np.linalg.norm(gap.apply(np.eye(n)).T, 2))


def test_lipschitz_chain_includes_pooling():
    net = _net("relu")
    chain = 1.0
    for k, layer in enumerate(net.layers, start=1):
        chain *= np.linalg.norm(layer.dense_matrix(), 2)
        for t in net.pre[k - 1]:
            chain *= t.lipschitz
    assert net.lipschitz_chain(0) == pytest.approx(chain, rel=1e-9)


def test_assumptions_report_flags_non_1_lipschitz_parts():
    report = {r["assumption"]: r for r in assumptions_report(_net("gelu"), [0, 1e-4, 1e-4, 1e-4, 1e-4])}
    act = report["Def. 1: activations 1-Lipschitz"]
    assert act["holds"] is False and act["value"] == pytest.approx(1.1289, abs=1e-4)
    assert "gelu" in act["note"]
    assert report["Def. 1: pooling 1-Lipschitz (l2)"]["value"] == pytest.approx(2.0)
    relu = {r["assumption"]: r for r in assumptions_report(
        Network([Conv2d.build(np.ones((1, 1, 2, 2)), None, (1, 3, 3), activation="relu"),
                 Flatten(), Dense(np.ones((1, 4)), np.zeros(1))]), [0, 1e-4, 1e-4])}
    assert relu["Def. 1: activations 1-Lipschitz"]["holds"] is True
    assert "Def. 1: pooling 1-Lipschitz (l2)" not in relu


def test_channels_last_inputs_are_converted_once():
    """A 3-channel NHWC network: data checked once and passed on (theory_report, certify,
    simulate's quantization report) is not transposed a second time."""
    import neurosim as ns
    from neurosim.theory import theory_report

    rng = np.random.default_rng(9)
    net = Network([Conv2d.build(rng.normal(size=(4, 3, 3, 3)), None, (3, 5, 5), padding=1,
                                activation="relu"),
                   Flatten("hwc"), Dense(rng.normal(size=(3, 100)), np.zeros(3))], layout="NHWC")
    X = rng.normal(size=(4, 5, 5, 3))
    np.testing.assert_array_equal(net.forward(net.check_input(X)), net.forward(X))
    out = np.sort(net.forward(X), axis=1)
    report = theory_report(net, NeuronCrash(1e-3), X, metric="flip")
    np.testing.assert_allclose(report.per_input["thresholds"], (out[:, -1] - out[:, -2]) / 2)
    mapping = ns.map_network(net, "loihi2")
    result = ns.simulate(mapping, NeuronCrash(1e-3), X, metric="linf", eps=0.5, n_samples=10)
    assert result.quantization == mapping.quantization_report(X)
    # The same network in channels-first order gives the same numbers.
    X_chw = X.transpose(0, 3, 1, 2)
    net_chw = Network(net.items, input_shape=(3, 5, 5), layout="NCHW")
    np.testing.assert_array_equal(net_chw.forward(X_chw), net.forward(X))


def test_width_advice_counts_channels_for_conv_layers():
    import neurosim as ns

    net = _net("relu", seed=11)
    X = np.random.default_rng(12).normal(size=(20, 2, 7, 7))
    cert = ns.certify(net, NeuronCrash(0.02), X, metric="linf", eps=0.05, delta=1e-3,
                      n_samples=20, seed=0)
    assert not cert.certified
    advice = cert.to_dict()["advice"]["widths"]
    assert advice.startswith("hidden widths (channels for conv layers) [4, 6, 5] -> ")
