"""Tests of neurosim's own network files (.h5 and .npz): round trips, atomic writes, bad input."""

from __future__ import annotations

import os
import stat

import h5py
import json

import numpy as np
import pytest

import neurosim
from neurosim.io import digest
import neurosim.io.hdf5
import neurosim.io.npz
from neurosim import ACTIVATIONS, Network
from neurosim.errors import (
    FileFormatError,
    NeurosimFileNotFoundError,
    UnsupportedLayerError,
    ValidationError,
)
from neurosim.network import make_activation

DTYPES = [np.float32, np.float64]
SUFFIXES = [".h5", ".npz"]


def _net(name: str, dtype, metadata=None) -> Network:
    rng = np.random.default_rng(0)
    widths = [4, 6, 5, 3]
    weights = [rng.normal(size=(widths[i + 1], widths[i])) for i in range(3)]
    biases = [rng.normal(size=widths[i + 1]) for i in range(3)]
    act = make_activation(name, 0.2 if name == "leaky_relu" else None)
    return Network.from_arrays(weights, biases, [act, act, "identity"], dtype=dtype,
                               metadata=metadata)


def _assert_same_network(a: Network, b: Network) -> None:
    assert a.dtype == b.dtype
    assert a.widths == b.widths
    assert a.activations == b.activations
    for la, lb in zip(a.layers, b.layers):
        assert la.W.dtype == lb.W.dtype and la.b.dtype == lb.b.dtype
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_round_trip(tmp_path, name, dtype, suffix):
    net = _net(name, dtype)
    path = tmp_path / f"net{suffix}"
    neurosim.save_network(net, path)
    loaded = neurosim.load_network(path)
    _assert_same_network(net, loaded)
    X = np.random.default_rng(1).normal(size=(7, 4))
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_keeps_leaky_relu_alpha(tmp_path, suffix):
    act = make_activation("leaky_relu", 0.37)
    net = Network.from_arrays([np.ones((2, 2)), np.ones((1, 2))], [np.zeros(2), np.zeros(1)],
                              [act, "identity"])
    path = tmp_path / f"leaky{suffix}"
    neurosim.save_network(net, str(path))  # a str path works too
    loaded = neurosim.load_network(str(path))
    assert loaded.activations[0].name == "leaky_relu"
    assert loaded.activations[0].alpha == 0.37


@pytest.mark.parametrize("dtype", DTYPES)
def test_h5_keeps_metadata(tmp_path, dtype):
    metadata = {"name": "tiny", "epochs": 3, "accuracy": 0.875, "tags": ["a", "b"],
                "nested": {"lr": 0.01}}
    net = _net("tanh", dtype, metadata=metadata)
    path = tmp_path / "net.h5"
    neurosim.save_network(net, path)
    loaded = neurosim.load_network(path)
    assert loaded.metadata == metadata


def test_h5_root_attributes_and_layout(tmp_path):
    net = _net("relu", np.float64)
    path = tmp_path / "net.h5"
    neurosim.save_network(net, path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 3
        assert f.attrs["neurosim_format"] == "network"
        assert json.loads(f.attrs["input_shape"]) == [net.n_inputs] and f.attrs["layout"] == ""
        assert sorted(f["layers"]) == ["0", "1", "2"]
        assert "pre" not in f["layers/0"].attrs
        assert f["layers/0"].attrs["activation"] == "relu"
        assert f["layers/2"].attrs["activation"] == "identity"
        assert f["layers/1/W"].shape == (5, 6)
    assert neurosim.io.FORMAT_VERSION == 3


def test_hdf5_suffix_is_neurosim_format(tmp_path):
    net = _net("sigmoid", np.float32)
    path = tmp_path / "net.hdf5"
    neurosim.save_network(net, path)
    _assert_same_network(net, neurosim.load_network(path))


# --- atomic writes -----------------------------------------------------------------------


def _boom(*args, **kwargs):
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_h5_write_leaves_target_unchanged(tmp_path, monkeypatch, error):
    path = tmp_path / "net.h5"
    old = _net("relu", np.float64)
    neurosim.save_network(old, path)
    before = path.read_bytes()

    def fail(group, network):
        group.attrs["half"] = "written"  # something already went into the temporary file
        raise error("disk on fire")

    monkeypatch.setattr(neurosim.io.hdf5, "write_network_group", fail)
    with pytest.raises(error, match="disk on fire"):
        neurosim.save_network(_net("tanh", np.float32), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.h5"]
    monkeypatch.undo()
    _assert_same_network(old, neurosim.load_network(path))


def test_failed_h5_write_of_new_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(neurosim.io.hdf5, "write_network_group", _boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        neurosim.save_network(_net("relu", np.float64), tmp_path / "new.h5")
    assert list(tmp_path.iterdir()) == []


def test_failed_npz_write_leaves_target_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    neurosim.save_network(_net("relu", np.float64), path)
    before = path.read_bytes()
    monkeypatch.setattr(neurosim.io.npz.np, "savez", _boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        neurosim.save_network(_net("tanh", np.float64), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.npz"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_successful_write_leaves_no_temporary_file(tmp_path, suffix):
    path = tmp_path / f"net{suffix}"
    neurosim.save_network(_net("relu", np.float64), path)
    neurosim.save_network(_net("tanh", np.float64), path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert neurosim.load_network(path).activations[0].name == "tanh"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_written_files_have_normal_permissions(tmp_path, suffix):
    reference = tmp_path / "plain.txt"
    with open(reference, "w") as fh:
        fh.write("x")
    path = tmp_path / f"net{suffix}"
    neurosim.save_network(_net("relu", np.float64), path)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == stat.S_IMODE(reference.stat().st_mode)
    assert mode != 0o600


def test_save_into_missing_folder(tmp_path):
    target = tmp_path / "nope" / "net.h5"
    with pytest.raises(NeurosimFileNotFoundError, match=r"folder .*nope.* does not exist"):
        neurosim.save_network(_net("relu", np.float64), target)


def test_save_with_unknown_suffix(tmp_path):
    with pytest.raises(FileFormatError, match=r"net\.txt.*\.h5.*\.npz"):
        neurosim.save_network(_net("relu", np.float64), tmp_path / "net.txt")
    assert list(tmp_path.iterdir()) == []


# --- malformed inputs ----------------------------------------------------------------------


def test_garbage_h5(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"this is not an HDF5 file at all\x00\x01\x02" * 10)
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    assert str(path) in str(info.value)
    assert "HDF5" in str(info.value)


def test_garbage_npz(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK not really a zip archive")
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    assert str(path) in str(info.value)
    assert ".npz" in str(info.value)


def _arrays(n_layers: int = 2) -> dict:
    rng = np.random.default_rng(3)
    widths = [3, 4, 2, 2][: n_layers + 1]
    out = {}
    for l in range(n_layers):
        out[f"W{l}"] = rng.normal(size=(widths[l + 1], widths[l]))
        out[f"b{l}"] = rng.normal(size=widths[l + 1])
    return out


def test_npz_without_activations(tmp_path):
    path = tmp_path / "noact.npz"
    np.savez(path, **_arrays())
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg and "'activations'" in msg


def test_npz_with_gap_in_layers(tmp_path):
    arrays = _arrays(3)
    del arrays["W1"], arrays["b1"]
    path = tmp_path / "gap.npz"
    np.savez(path, activations=np.array(["relu", "relu", "identity"]), **arrays)
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg and "W2" in msg and "gap" in msg


def test_npz_without_any_weights(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, activations=np.array(["identity"]))
    with pytest.raises(FileFormatError, match=r"expected arrays W0, b0"):
        neurosim.load_network(path)


def test_npz_missing_bias(tmp_path):
    arrays = _arrays()
    del arrays["b1"]
    path = tmp_path / "nobias.npz"
    np.savez(path, activations=np.array(["relu", "identity"]), **arrays)
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    assert str(path) in str(info.value) and "b1" in str(info.value)


def test_npz_activation_count_mismatch(tmp_path):
    path = tmp_path / "count.npz"
    np.savez(path, activations=np.array(["identity"]), **_arrays())
    with pytest.raises(FileFormatError, match=r"1 names but there are 2 layers"):
        neurosim.load_network(path)


def test_npz_unknown_activation(tmp_path):
    path = tmp_path / "mish.npz"  # (swish is supported now: it means silu)
    np.savez(path, activations=np.array(["mish", "identity"]), **_arrays())
    with pytest.raises(UnsupportedLayerError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg and "'mish'" in msg and "relu" in msg


def test_npz_with_nan_weights(tmp_path):
    arrays = _arrays()
    arrays["W1"][0, 2] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, activations=np.array(["relu", "identity"]), **arrays)
    with pytest.raises(ValidationError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "weights of layer 2" in msg and "finite" in msg


def test_h5_layer_with_unknown_activation(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net("relu", np.float64), path)
    with h5py.File(path, "r+") as f:
        f["layers/1"].attrs["activation"] = "mish"
    digest.seal(path)  # a file written with the damage (its bytes sealed): the checks behind the seal
    with pytest.raises(UnsupportedLayerError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg and "layer 1" in msg and "'mish'" in msg
    assert "Supported activations" in msg


def test_h5_layers_with_gap(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net("relu", np.float64), path)
    with h5py.File(path, "r+") as f:
        f.move("layers/1", "layers/5")
    digest.seal(path)  # a file written with the damage (its bytes sealed): the checks behind the seal
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    assert str(path) in str(info.value) and "without gaps" in str(info.value)


def test_h5_unsupported_version(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net("relu", np.float64), path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    digest.seal(path)  # a file written with the damage (its bytes sealed): the checks behind the seal
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    assert str(path) in str(info.value) and "format_version 99" in str(info.value)


def test_h5_with_nan_weights_names_file(tmp_path):
    path = tmp_path / "net.h5"
    neurosim.save_network(_net("relu", np.float64), path)
    with h5py.File(path, "r+") as f:
        f["layers/0/b"][1] = np.inf
    digest.seal(path)  # a file written with the damage (its bytes sealed): the checks behind the seal
    with pytest.raises(ValidationError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg and "bias of layer 1" in msg


def test_missing_file(tmp_path):
    path = tmp_path / "absent.h5"
    with pytest.raises(NeurosimFileNotFoundError) as info:
        neurosim.load_network(path)
    assert isinstance(info.value, FileNotFoundError)
    assert str(path) in str(info.value)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("weights")
    with pytest.raises(FileFormatError) as info:
        neurosim.load_network(path)
    msg = str(info.value)
    assert str(path) in msg and ".npz" in msg and ".h5" in msg


def test_folder_is_not_a_model(tmp_path):
    folder = tmp_path / "dir.h5"
    folder.mkdir()
    with pytest.raises(FileFormatError, match=r"is a folder"):
        neurosim.load_network(folder)
