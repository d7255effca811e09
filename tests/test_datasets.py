"""Tests of the bundled digits model and data, and of :func:`neurosim.datasets.load_data`."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from neurosim import Network
from neurosim.datasets import DATASETS, load_data, load_digits_model, load_digits_test
from neurosim.errors import (
    FileFormatError,
    NeurosimError,
    NeurosimFileNotFoundError,
    ShapeError,
    ValidationError,
)
from neurosim.io.hdf5 import save_network_h5


# --- the bundled model and test split ------------------------------------------------------


def test_bundled_model_shape_and_dtype():
    net = load_digits_model()
    assert isinstance(net, Network)
    assert net.widths == [64, 256, 256, 10]
    assert net.dtype == np.float32
    assert all(W.dtype == np.float32 for W in net.weights)
    assert [a.name for a in net.activations] == ["relu", "relu", "identity"]
    assert net.metadata["name"] == "digits-mlp"
    assert net.metadata["trained_by"] == "scripts/train_digits.py"


def test_bundled_test_split():
    X, y = load_digits_test()
    assert X.shape == (397, 64) and X.dtype == np.float32
    assert y.shape == (397,) and y.dtype == np.int64
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert set(np.unique(y).tolist()) == set(range(10))


def test_bundled_model_accuracy():
    net = load_digits_model()
    X, y = load_digits_test()
    accuracy = float(np.mean(net.predict(X) == y))
    assert accuracy >= 0.95
    # The metadata records the accuracy measured by the training script on the same split.
    assert accuracy == pytest.approx(net.metadata["test_accuracy"], abs=1e-4)


def test_bundled_loaders_return_fresh_arrays():
    X1, y1 = load_digits_test()
    X1[:] = -1.0
    X2, _ = load_digits_test()
    assert X2.min() >= 0.0


# --- load_data ----------------------------------------------------------------------------


def test_registry_lists_digits():
    assert "digits" in DATASETS


def test_load_data_digits():
    X, y = load_data("digits")
    X0, y0 = load_digits_test()
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    X, y = load_data("digits", network=load_digits_model())
    assert X.shape == (397, 64)


def test_load_data_npz(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((7, 5)).astype(np.float32)
    y = np.arange(7) % 3
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    Xl, yl = load_data(path, network=Network.random([5, 4, 3]))
    np.testing.assert_array_equal(Xl, X)
    assert Xl.dtype == np.float32
    np.testing.assert_array_equal(yl, y)
    assert yl.dtype == np.int64
    # str paths work too
    Xs, _ = load_data(str(path))
    np.testing.assert_array_equal(Xs, X)


def test_load_data_npz_without_y(tmp_path):
    path = tmp_path / "noy.npz"
    np.savez(path, X=np.ones((3, 2)))
    X, y = load_data(path)
    assert X.shape == (3, 2) and y is None


def test_load_data_h5(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.random((6, 4))
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    for suffix in (".h5", ".hdf5"):
        path = tmp_path / f"data{suffix}"
        with h5py.File(path, "w") as f:
            f.create_dataset("X", data=X)
            f.create_dataset("y", data=y)
        Xl, yl = load_data(path)
        np.testing.assert_array_equal(Xl, X)
        np.testing.assert_array_equal(yl, y)
        assert yl.dtype == np.int64


def test_load_data_h5_without_y(tmp_path):
    path = tmp_path / "noy.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.zeros((2, 3)))
    X, y = load_data(path)
    assert X.shape == (2, 3) and y is None


def test_integer_X_becomes_float(tmp_path):
    path = tmp_path / "ints.npz"
    np.savez(path, X=np.arange(6).reshape(2, 3), y=np.array([0.0, 1.0]))
    X, y = load_data(path)
    assert X.dtype == np.float64
    assert y.dtype == np.int64


# --- errors -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(NeurosimFileNotFoundError, match="absent.npz") as info:
        load_data(path)
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_name_lists_valid_names():
    with pytest.raises(NeurosimFileNotFoundError) as info:
        load_data("mnist-not-bundled")
    message = str(info.value)
    assert "mnist-not-bundled" in message
    assert "'digits'" in message


def test_folder_is_rejected(tmp_path):
    with pytest.raises(FileFormatError, match="folder"):
        load_data(tmp_path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(FileFormatError, match="data.csv"):
        load_data(path)


def test_npz_missing_X(tmp_path):
    path = tmp_path / "noX.npz"
    np.savez(path, features=np.ones((2, 2)), labels=np.zeros(2))
    with pytest.raises(FileFormatError) as info:
        load_data(path)
    message = str(info.value)
    assert "noX.npz" in message and "'X'" in message
    assert "'features'" in message and "'labels'" in message


def test_h5_missing_X(tmp_path):
    path = tmp_path / "noX.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("inputs", data=np.ones((2, 2)))
    with pytest.raises(FileFormatError) as info:
        load_data(path)
    message = str(info.value)
    assert "noX.h5" in message and "'X'" in message and "'inputs'" in message


def test_h5_network_file_is_not_data(tmp_path):
    path = tmp_path / "model.h5"
    save_network_h5(Network.random([3, 2]), path)
    with pytest.raises(FileFormatError, match="network file") as info:
        load_data(path)
    assert "model.h5" in str(info.value)


def test_corrupt_files(tmp_path):
    for name in ("bad.npz", "bad.h5"):
        path = tmp_path / name
        path.write_bytes(b"this is not a real file")
        with pytest.raises(FileFormatError, match=name):
            load_data(path)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_X_not_2d(tmp_path, shape):
    path = tmp_path / "wrongdim.npz"
    np.savez(path, X=np.ones(shape))
    with pytest.raises(ShapeError) as info:
        load_data(path)
    message = str(info.value)
    assert "wrongdim.npz" in message and "'X'" in message and str(shape) in message


def test_X_not_2d_h5(tmp_path):
    path = tmp_path / "wrongdim.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.ones(4))
    with pytest.raises(ShapeError, match="wrongdim.h5"):
        load_data(path)


def test_y_length_mismatch(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, X=np.ones((4, 3)), y=np.zeros(5, dtype=int))
    with pytest.raises(ShapeError) as info:
        load_data(path)
    message = str(info.value)
    assert "mismatch.npz" in message and "'y'" in message and "(5,)" in message


def test_y_length_mismatch_h5(tmp_path):
    path = tmp_path / "mismatch.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.ones((4, 3)))
        f.create_dataset("y", data=np.zeros(3, dtype=int))
    with pytest.raises(ShapeError, match="mismatch.h5"):
        load_data(path)


def test_fractional_y_is_a_regression_target(tmp_path):
    path = tmp_path / "fracy.npz"
    np.savez(path, X=np.ones((2, 3)), y=np.array([0.5, 1.0]))
    _, y = load_data(path)
    assert y.dtype == np.float64 and y.tolist() == [0.5, 1.0]


def test_non_finite_y(tmp_path):
    path = tmp_path / "nany.npz"
    np.savez(path, X=np.ones((2, 3)), y=np.array([0.5, np.nan]))
    with pytest.raises(ValidationError, match="nany.npz"):
        load_data(path)


def test_string_y(tmp_path):
    path = tmp_path / "stry.npz"
    np.savez(path, X=np.ones((2, 3)), y=np.array(["a", "b"]))
    with pytest.raises(ValidationError, match="stry.npz"):
        load_data(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X(tmp_path, bad):
    X = np.ones((3, 4))
    X[1, 2] = bad
    path = tmp_path / "nonfinite.npz"
    np.savez(path, X=X)
    with pytest.raises(ValidationError) as info:
        load_data(path)
    message = str(info.value)
    assert "nonfinite.npz" in message and "finite" in message and "(1, 2)" in message


def test_non_numeric_X(tmp_path):
    path = tmp_path / "strings.npz"
    np.savez(path, X=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValidationError, match="strings.npz"):
        load_data(path)


def test_width_mismatch_with_network(tmp_path):
    path = tmp_path / "narrow.npz"
    np.savez(path, X=np.ones((3, 10)), y=np.zeros(3, dtype=int))
    with pytest.raises(ShapeError) as info:
        load_data(path, network=load_digits_model())
    message = str(info.value)
    assert "narrow.npz" in message and "10" in message and "64" in message


def test_errors_are_neurosim_errors(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, X=np.ones(3))
    with pytest.raises(NeurosimError):
        load_data(path)
    with pytest.raises(ValueError):  # builtin compatibility
        load_data(path)


def test_the_training_script_runs(tmp_path):
    """scripts/train_digits.py (which rebuilds the bundled model) still runs: one epoch."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("torch")
    script = Path(__file__).resolve().parent.parent / "scripts" / "train_digits.py"
    done = subprocess.run([sys.executable, str(script), "--out-dir", str(tmp_path), "--epochs", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from neurosim import load_network

    net = load_network(tmp_path / "digits_mlp.h5")
    assert net.widths == [64, 256, 256, 10]
    assert np.load(tmp_path / "digits_test.npz")["X"].shape == (397, 64)
