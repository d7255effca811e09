"""The numba backend against the NumPy reference on random conv nets.

Every padding, stride, dilation and group setting, every transform, every activation and
every fault family (crashes in three semantics, stuck cells and bit flips with one kernel
copy, a copy per core and one per connection, core blocks, crossbar tiles of the unfolded
kernel): the faulty outputs of the two backends agree to rounding, and both clean outputs
equal the network's own (conv-native) forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurosim.backends import get_backend
from neurosim.faults import (CoreFailure, FaultModel, NeuronCrash, SynapseStuck,
                             WeightBitFlip)
from neurosim.hardware import profile_from_dict
from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.mapping import map_network
from neurosim.network import Network
from neurosim.plan import build_plan
from neurosim.sampler import sample_faults

CONV_SETTINGS = [
    dict(padding=0),
    dict(padding=1),
    dict(padding="same"),
    dict(padding=(1, 0)),
    dict(padding=(0, 1, 2, 0)),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding="same"),
    dict(dilation=2, padding=2),
    dict(dilation=(1, 2), padding="same"),
    dict(groups=2, padding=1),
    dict(groups=4, padding=1),  # depthwise
    dict(groups=2, stride=2, dilation=2, padding=(2, 1)),
]
TRANSFORMS = [
    lambda: [MaxPool2d(2)],
    lambda: [MaxPool2d(3, 2, 1)],
    lambda: [AvgPool2d(2)],
    lambda: [AvgPool2d(3, 1, 1, count_include_pad=False)],
    lambda: [GlobalAvgPool2d()],
    lambda: [],
]
ACTIVATIONS = ["relu", "leaky_relu", "tanh", "elu", "relu6", "gelu", "silu", "hardswish",
               "hardsigmoid", "sigmoid", "softplus", "gelu_tanh"]


def _net(case: int, dtype=np.float64) -> Network:
    rng = np.random.default_rng(100 + case)
    settings = CONV_SETTINGS[case % len(CONV_SETTINGS)]
    act = ACTIVATIONS[case % len(ACTIVATIONS)]
    groups = settings.get("groups", 1)
    k = (3, 2) if case % 3 == 0 else (3, 3)
    conv1 = Conv2d.build(rng.normal(0, 0.6, (4, 2, 3, 3)), rng.normal(0, 0.1, 4), (2, 9, 8),
                         padding=1, activation=act)
    conv2 = Conv2d.build(rng.normal(0, 0.5, (4, 4 // groups) + k),
                         rng.normal(0, 0.1, 4) if case % 2 else None, (4, 9, 8),
                         activation=act, **settings)
    items = [conv1, conv2] + TRANSFORMS[case % len(TRANSFORMS)]() + [Flatten("hwc" if case % 2 else "chw")]
    # The dense layer's width follows the shapes.
    shape = conv2.out_shape
    for t in items[2:-1]:
        shape = t.bind(shape).out_shape
    n = int(np.prod(shape))
    items += [Dense(rng.normal(0, 0.4, (6, n)), rng.normal(0, 0.1, 6), act),
              Dense(rng.normal(0, 0.4, (3, 6)), rng.normal(0, 0.1, 3))]
    return Network(items, dtype=dtype)


def _profile(**kw):
    data = {"name": "t", "description": "t", "architecture": "cores", "cores_per_chip": 256,
            "neurons_per_core": 40, "max_fan_in": 512, "synapses_per_core": 4096,
            "weight_bits": 6, "spare_cores_per_chip": 1,
            "fault_rates": {"neuron_crash": 0.01, "synapse_stuck_at_zero": 0.005,
                            "synapse_stuck_at_max": 0.005, "weight_bit_flip": 0.002,
                            "core_failure": 0.05}}
    data.update(kw)
    return profile_from_dict(data, source="test")


def _compare(target, faults, X, seed, rtol):
    plan = build_plan(target, faults)
    batch = sample_faults(plan, np.random.default_rng(seed), 60)
    rows = np.flatnonzero(batch.draw_has_fault)
    assert rows.size > 10
    row_input = rows % X.shape[0]
    outs = []
    for name in ("numpy", "numba"):
        backend = get_backend(name)
        Xc = plan.network.check_input(X)
        cache = backend.clean_cache(plan, Xc)
        np.testing.assert_allclose(cache.output, plan.network.forward(X), rtol=rtol, atol=rtol)
        with backend.session():
            outs.append(backend.propagate(plan, cache, batch, rows, row_input))
    np.testing.assert_allclose(outs[1], outs[0], rtol=rtol, atol=rtol)
    # The faults did something: some rows differ from the clean output.
    clean = plan.network.forward(X)[row_input]
    assert np.abs(outs[0] - clean).max() > 1e-6


@pytest.mark.parametrize("case", range(len(CONV_SETTINGS)))
def test_network_faults(case):
    net = _net(case)
    X = np.random.default_rng(case).normal(size=(5, 2, 9, 8))
    semantics = ["silent", "paper", "stuck"][case % 3]
    faults = FaultModel([NeuronCrash(0.03, semantics=semantics, value=0.4, layers=(0, 1, 2, 3)),
                         SynapseStuck(0.01, 0.01)])
    _compare(net, faults, X, case, 1e-10)


@pytest.mark.parametrize("case", range(0, len(CONV_SETTINGS), 2))
@pytest.mark.parametrize("share", [True, False])
def test_core_mapping_faults(case, share):
    net = _net(case)
    X = np.random.default_rng(case).normal(size=(4, 2, 9, 8))
    mapping = map_network(net, _profile(conv_weight_sharing=share))
    assert any(c.block for c in mapping.cores)
    faults = FaultModel([NeuronCrash(0.01), SynapseStuck(0.004, 0.004), WeightBitFlip(0.002),
                         CoreFailure(0.05)])
    _compare(mapping, faults, X, case + 7, 1e-10)


@pytest.mark.parametrize("case", [1, 4, 10])
def test_crossbar_faults(case):
    net = _net(case)
    X = np.random.default_rng(case).normal(size=(4, 2, 9, 8))
    mapping = map_network(net, _profile(architecture="crossbar", crossbar_rows=16,
                                        crossbar_cols=8, neurons_per_core=8, max_fan_in=16,
                                        synapses_per_core=128))
    faults = FaultModel([SynapseStuck(0.01, 0.01), CoreFailure(0.08)])
    _compare(mapping, faults, X, case + 3, 1e-10)


@pytest.mark.parametrize("case", [0, 5, 9])
def test_float32(case):
    net = _net(case, np.float32)
    X = np.random.default_rng(case).normal(size=(4, 2, 9, 8)).astype(np.float32)
    faults = FaultModel([NeuronCrash(0.03, semantics="paper"), SynapseStuck(0.01, 0.01)])
    _compare(net, faults, X, case, 2e-4)


def test_last_weight_record_of_an_entry_wins():
    """Records add up their changes in the kernels, so of several records on one entry of one
    draw only the last added stays (a failed tile's zero after a stuck cell's value)."""
    from neurosim.sampler import RecordBuilder

    rec = RecordBuilder()
    rec.add_weight(1, [0, 0, 1], [2, 3, 2], [5, 5, 5], [1.5, 2.5, 3.5])
    rec.add_crash(1, [0], [4], 0)
    rec.add_weight(1, [0, 1], [2, 2], [5, 6], [0.0, 0.0])
    batch = rec.build(2, 1)
    got = sorted(zip(batch.draw[batch.kind == 1].tolist(), batch.out_start[batch.kind == 1].tolist(),
                     batch.in_start[batch.kind == 1].tolist(), batch.value[batch.kind == 1].tolist()))
    assert got == [(0, 2, 5, 0.0), (0, 3, 5, 2.5), (1, 2, 5, 3.5), (1, 2, 6, 0.0)]
    assert int((batch.kind == 0).sum()) == 1
