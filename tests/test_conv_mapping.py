"""Mapping conv layers: channel x row x column blocks on cores, unfolded-kernel crossbar tiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurosim.errors import MappingError
from neurosim.hardware import profile_from_dict
from neurosim.layers import Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.mapping import map_network
from neurosim.network import Network


def _profile(**kw):
    data = {"name": "t", "description": "t", "architecture": "cores", "cores_per_chip": 4096,
            "neurons_per_core": 100, "max_fan_in": 200, "synapses_per_core": 5000,
            "weight_bits": 8,
            "fault_rates": {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0,
                            "synapse_stuck_at_max": 0.0, "weight_bit_flip": 0.0,
                            "core_failure": 0.0}}
    data.update(kw)
    return profile_from_dict(data, source="test")


def _net(c_in=3, c_out=16, hw=12, k=3, groups=1, stride=1):
    rng = np.random.default_rng(0)
    conv = Conv2d.build(rng.normal(size=(c_out, c_in // groups, k, k)), None, (c_in, hw, hw),
                        stride=stride, padding="same", groups=groups, activation="relu")
    # A 1x1 conv as the linear output layer: its cores read 16 axons per position.
    head = Conv2d.build(rng.normal(size=(10, c_out, 1, 1)), None, conv.out_shape)
    return Network([conv, head])


def _check_core_limits(mapping, share):
    p = mapping.profile
    layer = mapping.network.layers[0]
    owned = np.zeros(layer.n_out, dtype=int)
    for core in mapping.layer_cores(1):
        neurons = mapping.core_neurons(core)
        owned[neurons] += 1
        i, j, k = layer.connections(neurons)
        assert core.n_neurons == neurons.size <= p.neurons_per_core
        assert core.axons_in == np.unique(j).size <= p.max_fan_in
        stored = (np.unique(k).size if share else i.size)
        # Shared: the kernel slice of the core's channels (taps on padding included).
        if share:
            channels = np.unique(neurons // (layer.out_hw[0] * layer.out_hw[1]))
            stored = channels.size * layer.fan_in
        assert core.synapses == stored <= p.synapses_per_core
    assert np.all(owned == 1)  # every neuron on exactly one core


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("kwargs", [dict(), dict(groups=3, c_out=12), dict(stride=2),
                                    dict(c_in=8, c_out=8, groups=8)])
def test_core_blocks_respect_every_limit(share, kwargs):
    net = _net(**kwargs)
    mapping = map_network(net, _profile(conv_weight_sharing=share))
    _check_core_limits(mapping, share)
    assert mapping.layer_summaries()[0]["binding_limit"] in ("neurons", "axons", "synapses")


def test_binding_limit_and_block_shape():
    net = _net(c_in=3, c_out=16, hw=12)
    # Plenty of axons and synapses: the neuron limit binds; 16 x 12 x 12 = 2304 neurons.
    m = map_network(net, _profile(neurons_per_core=144, max_fan_in=10_000,
                                  synapses_per_core=10 ** 6))
    assert len(m.layer_cores(1)) == 16 and m.binding_limit(1) == "neurons"
    # Whole channels fit: split by channels first (no halo), one channel per core.
    assert all(c.block[2:] == (0, 12, 0, 12) for c in m.layer_cores(1))
    # Few axons: spatial tiles are needed and the axon limit binds.
    m = map_network(net, _profile(neurons_per_core=10_000, max_fan_in=60,
                                  synapses_per_core=10 ** 6))
    assert m.binding_limit(1) == "axons"
    assert max(c.axons_in for c in m.layer_cores(1)) <= 60
    # Weight sharing changes the synapse count, hence the number of cores.
    tight = dict(neurons_per_core=10_000, max_fan_in=10_000, synapses_per_core=2000)
    shared = map_network(net, _profile(conv_weight_sharing=True, **tight))
    unshared = map_network(net, _profile(conv_weight_sharing=False, **tight))
    assert len(shared.layer_cores(1)) == 1  # 16 x 27 = 432 stored weights
    assert len(unshared.layer_cores(1)) >= math.ceil(net.layers[0].n_connections / 2000)
    assert unshared.binding_limit(1) == "synapses"


def test_a_neuron_that_cannot_fit_names_the_limit():
    net = _net(c_in=3, c_out=4, k=5)
    with pytest.raises(MappingError) as info:
        map_network(net, _profile(max_fan_in=50))
    msg = str(info.value)
    assert "Layer 1" in msg and "75" in msg and "50" in msg and "max_fan_in" in msg
    with pytest.raises(MappingError, match=r"75 synapses.*60 \(synapses_per_core\)"):
        map_network(net, _profile(synapses_per_core=60, conv_weight_sharing=True))


@pytest.mark.parametrize("c_in, c_out, k, groups, rows, cols",
                         [(3, 16, 3, 1, 32, 8), (16, 32, 3, 1, 64, 16), (8, 8, 3, 8, 32, 4),
                          (4, 6, 5, 2, 16, 4)])
def test_crossbar_tiles_follow_the_aihwkit_rule(c_in, c_out, k, groups, rows, cols):
    net = _net(c_in=c_in, c_out=c_out, k=k, groups=groups)
    mapping = map_network(net, _profile(architecture="crossbar", crossbar_rows=rows,
                                        crossbar_cols=cols, neurons_per_core=cols,
                                        max_fan_in=rows, synapses_per_core=rows * cols))
    tiles = mapping.layer_cores(1)
    per_tile = rows // (k * k)
    if per_tile >= 1 and groups == 1:
        assert len(tiles) == math.ceil(c_in / per_tile) * math.ceil(c_out / cols)
    # Every kernel weight is in exactly one tile; tiles hold only real weights.
    layer = net.layers[0]
    owner = mapping.kernel_cores(1, np.arange(layer.K.size))
    assert np.all(owner >= 0)
    counts = np.bincount(owner - tiles[0].core_id, minlength=len(tiles))
    assert [c.synapses for c in tiles] == counts.tolist()
    assert all(c.in_stop - c.in_start <= rows and c.out_stop - c.out_start <= cols for c in tiles)


def test_cores_after_a_pooling_receive_the_unpooled_inputs():
    """The receiving cores compute the pooling: their axons are the activations that their
    pooled inputs come from (counted here by hand from the windows)."""
    rng = np.random.default_rng(1)
    conv1 = Conv2d.build(rng.normal(size=(4, 1, 3, 3)), None, (1, 8, 8), padding=1, activation="relu")
    conv2 = Conv2d.build(rng.normal(size=(6, 4, 3, 3)), None, (4, 4, 4), padding=1, activation="relu")
    net = Network([conv1, MaxPool2d(2), conv2, MaxPool2d(2), Flatten(),
                   Dense(rng.normal(size=(3, 24)), np.zeros(3))])
    mapping = map_network(net, _profile(neurons_per_core=24, max_fan_in=10_000))
    for core in mapping.layer_cores(2):
        _, cols, _ = net.layers[1].connections(mapping.core_neurons(core))
        c, rest = np.divmod(np.unique(cols), 16)
        py, px = np.divmod(rest, 4)  # pooled position -> its 2x2 window in the 8x8 map
        unpooled = {(int(ci), 2 * int(y) + dy, 2 * int(x) + dx) for ci, y, x in zip(c, py, px)
                    for dy in (0, 1) for dx in (0, 1)}
        assert core.axons_in == len(unpooled)
    dense_core = mapping.layer_cores(3)[0]
    assert dense_core.axons_in == 6 * 4 * 4 and net.layers[2].fan_in == 24
    # Pooled, a neuron of layer 2 reads 4 x 3 x 3 = 36 inputs, which fit 60 axons; un-pooled
    # it receives 4 x 6 x 6 = 144, which do not.
    from neurosim.errors import MappingError

    with pytest.raises(MappingError, match=r"Layer 2.*144 un-pooled inputs.*at most 60"):
        map_network(net, _profile(max_fan_in=60, neurons_per_core=1000))
    head = Network([conv1, MaxPool2d(2), Flatten(), Dense(rng.normal(size=(3, 64)), np.zeros(3))])
    with pytest.raises(MappingError, match=r"Layer 2.*256 un-pooled inputs.*its 64 inputs"):
        map_network(head, _profile(max_fan_in=100, neurons_per_core=1000))
    # A tight axon limit on the conv after a pooling: blocks shrink until their real axons fit.
    tight = map_network(net, _profile(neurons_per_core=1000, max_fan_in=150))
    assert max(c.axons_in for c in tight.layer_cores(2)) <= 150
    assert len(tight.layer_cores(2)) > 1


def test_pooling_has_no_neurons_of_its_own():
    rng = np.random.default_rng(0)
    net = Network([Conv2d.build(rng.normal(size=(16, 3, 3, 3)), None, (3, 12, 12), padding=1,
                                activation="relu"), MaxPool2d(2), GlobalAvgPool2d(), Flatten(),
                   Dense(rng.normal(size=(10, 16)), np.zeros(10))])
    mapping = map_network(net, _profile(max_fan_in=10_000))
    assert sum(c.n_neurons for c in mapping.cores) == sum(net.widths[1:])
    summary = mapping.layer_summaries()
    assert summary[1]["transforms_before"] == [
        "maxpool2d(kernel=[2, 2], stride=[2, 2], padding=[0, 0, 0, 0])",
        "global_avgpool2d(keepdims=True)", "flatten(order=chw)"]
    assert mapping.to_dict()["cores"][0]["block"]["channels"][0] == 0


@pytest.mark.parametrize("profile", ["loihi2", "loihi1", "truenorth", "spinnaker2"])
@pytest.mark.parametrize("sign", ["mixed", "positive"])
def test_conv_quantization_equals_its_unfolded_dense_layer(profile, sign):
    """A kernel is quantized as the matrix it unfolds to (Loihi's mixed-sign rule included):
    the words of the kernel, unfolded, are the words of the equivalent dense layer."""
    rng = np.random.default_rng(3)
    K = rng.normal(size=(4, 2, 3, 3))
    if sign == "positive":
        K = np.abs(K)
    conv = Conv2d.build(K, rng.normal(size=4), (2, 5, 5), padding=1, activation="relu")
    head = Dense(rng.normal(size=(3, 100)), np.zeros(3))
    net_conv = Network([conv, Flatten(), head])
    net_dense = Network([Dense(conv.dense_matrix(), conv.bias, "relu"), head])
    qc = map_network(net_conv, profile).quantized_network()
    qd = map_network(net_dense, profile).quantized_network()
    np.testing.assert_array_equal(qc.layers[0].dense_matrix(), qd.layers[0].W)
    X = rng.normal(size=(3, 2, 5, 5))
    np.testing.assert_allclose(qc.forward(X), qd.forward(X.reshape(3, -1)), rtol=1e-12, atol=1e-12)
