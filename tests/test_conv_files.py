"""Conv networks in neurosim's own files (HDF5 and npz, format_version 2) and mapping files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import neurosim
from neurosim.io import digest
from importlib.resources import files
from neurosim.errors import FileFormatError, UnsupportedLayerError
from neurosim.hardware import load_profile
from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.mapping import load_mapping, map_network
from neurosim.network import Network


def _net(layout="NCHW"):
    rng = np.random.default_rng(0)
    return Network([
        Conv2d.build(rng.normal(size=(4, 2, 3, 3)), None, (2, 8, 8), padding=1,
                     activation="relu6"),
        MaxPool2d(3, 2, 1),
        Conv2d.build(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), (4, 4, 4), groups=4,
                     stride=2, padding="same", dilation=1, activation="hardsigmoid"),
        AvgPool2d(2, count_include_pad=False), GlobalAvgPool2d(), Flatten("hwc"),
        Dense(rng.normal(size=(3, 4)), np.zeros(3)),
    ], layout=layout, metadata={"name": "conv"})


@pytest.mark.parametrize("suffix", ["h5", "npz"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_round_trip(tmp_path, suffix, layout):
    net = _net(layout)
    path = tmp_path / f"net.{suffix}"
    neurosim.save_network(net, path)
    back = neurosim.load_network(path)
    assert back.equals(net) and back.layout == layout and back.input_shape == (2, 8, 8)
    assert [t.describe() for p in back.pre for t in p] == [t.describe() for p in net.pre for t in p]
    X = np.random.default_rng(1).normal(size=(5,) + net.data_shape)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    assert neurosim.provenance.network_sha256(back) == neurosim.provenance.network_sha256(net)


def test_hash_sees_transforms_and_settings():
    base = _net()
    other = Network([Conv2d.build(base.layers[0].K, base.layers[0].b, (2, 8, 8), padding=1,
                                  activation="relu6"), MaxPool2d(2)] + base.items[2:])
    assert neurosim.provenance.network_sha256(other) != neurosim.provenance.network_sha256(base)


def test_version_1_file_still_reads():
    path = str(files("neurosim.bundled") / "digits_mlp.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1 and "input_shape" not in f.attrs
    net = neurosim.load_network(path)
    assert net.input_shape == (64,) and net.layout is None and not net.has_transforms


def test_damaged_transform_settings(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net(), path)
    with h5py.File(path, "r+") as f:
        f["layers/1"].attrs["pre"] = "[{not json"
    digest.seal(path)  # written with the damage: reach the checks behind the seal
    with pytest.raises(FileFormatError, match=r"layer 1.*not JSON"):
        neurosim.load_network(path)
    with h5py.File(path, "r+") as f:
        f["layers/1"].attrs["pre"] = json.dumps([{"kind": "lppool2d"}])
    digest.seal(path)  # written with the damage: reach the checks behind the seal
    with pytest.raises(UnsupportedLayerError, match=r"layer 1.*lppool2d.*maxpool2d"):
        neurosim.load_network(path)
    with h5py.File(path, "r+") as f:
        f["layers/1"].attrs["pre"] = json.dumps([{"kind": "maxpool2d", "kernel": [0, 2]}])
    digest.seal(path)  # written with the damage: reach the checks behind the seal
    with pytest.raises(neurosim.errors.NeurosimError, match=r"layer 1.*kernel size"):
        neurosim.load_network(path)


def test_conv_settings_that_do_not_chain(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net(), path)
    with h5py.File(path, "r+") as f:
        attrs = json.loads(f["layers/1"].attrs["layer_attrs"])
        attrs["in_shape"] = [4, 5, 5]
        f["layers/1"].attrs["layer_attrs"] = json.dumps(attrs)
    digest.seal(path)  # written with the damage: reach the checks behind the seal
    with pytest.raises(neurosim.errors.ShapeError, match=r"shape \(4, 5, 5\).*\(4, 4, 4\)"):
        neurosim.load_network(path)


@pytest.mark.parametrize("profile", ["loihi1", "loihi2", "rram_crossbar"])
def test_mapping_round_trip(tmp_path, profile):
    net = _net()
    mapping = map_network(net, profile)
    path = tmp_path / "mapping.h5"
    mapping.save(path)
    back = load_mapping(path)
    assert back.cores == mapping.cores
    assert back.network.equals(net)
    if mapping.neuron_core is not None:
        for a, b in zip(back.neuron_core, mapping.neuron_core):
            np.testing.assert_array_equal(a, b)


def test_mapping_version_1_file_reads(tmp_path):
    """A dense mapping written before conv blocks existed (no core_counts / core_blocks)."""
    net = neurosim.load_network(str(files("neurosim.bundled") / "digits_mlp.h5"))
    mapping = map_network(net, load_profile("loihi2"))
    path = tmp_path / "mapping.h5"
    mapping.save(path)
    with h5py.File(path, "r+") as f:
        del f["core_counts"], f["core_blocks"]
        f.attrs["format_version"] = 1
    digest.seal(path)  # written with the damage: reach the checks behind the seal
    assert load_mapping(path).cores == mapping.cores


def test_damaged_conv_settings_name_the_layer_and_the_field(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net(), path)
    cases = [({"stride": [1, 1]}, neurosim.errors.ShapeError, r"layer 0: .*must give its 'in_shape'"),
             ({"in_shape": [2, 8, 8], "stride": [0, 1]}, neurosim.errors.ValidationError,
              r"stride of layer 1 \(conv2d\) must be an int >= 1"),
             ({"in_shape": [2, 8, 8], "groups": 3}, neurosim.errors.ShapeError,
              r"groups of layer 1 \(conv2d\) must divide C_in = 2")]
    for attrs, error, pattern in cases:
        with h5py.File(path, "r+") as f:
            f["layers/0"].attrs["layer_attrs"] = json.dumps(attrs)
        digest.seal(path)  # written with the damage: reach the checks behind the seal
        with pytest.raises(error, match=pattern) as info:
            neurosim.load_network(path)
        assert str(path) in str(info.value)
    with h5py.File(path, "r+") as f:
        f["layers/0"].attrs["layer_attrs"] = json.dumps(_net().layers[0].attrs())
        del f["layers/0/K"]
        f["layers/0"].create_dataset("K", data=np.full((4, 2, 3, 3), np.nan))
    digest.seal(path)  # written with the damage: reach the checks behind the seal
    with pytest.raises(neurosim.errors.ValidationError, match=r"kernel of layer 1 must be finite"):
        neurosim.load_network(path)
