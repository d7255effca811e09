"""MNIST IDX files: read_idx, load_mnist, load_training_data("mnist:DIR") and the CLI on them."""

import gzip
import os

import numpy as np
import pytest

from neurosim.datasets import load_mnist, read_idx
from neurosim.errors import FileFormatError, NeurosimFileNotFoundError

N_TRAIN, N_TEST, ROWS, COLS = 12, 7, 4, 5
DASH = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
DOT = {"train_images": "train-images.idx3-ubyte", "train_labels": "train-labels.idx1-ubyte",
       "test_images": "t10k-images.idx3-ubyte", "test_labels": "t10k-labels.idx1-ubyte"}


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    big_endian = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    return header + big_endian.tobytes()


def write(path, data: bytes, compress: bool = False):
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        with open(path, "wb") as fh:
            fh.write(data)
    return str(path)


def make_arrays(seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, ROWS, COLS), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 9], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, ROWS, COLS), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, 0], arrays["train_images"][0, 0, 1] = 0, 255
    return arrays


def make_mnist(folder, layout="dash", compress=False, seed=0):
    """Write the four IDX files into ``folder`` and return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = make_arrays(seed)
    for i, (key, array) in enumerate(arrays.items()):
        if layout == "dash":
            name = DASH[key]
        elif layout == "dot":
            name = DOT[key]
        else:  # mixed: alternate spellings, and compress every other file
            name = (DASH, DOT)[i % 2][key]
            compress = i % 2 == 1
        write(folder / (name + (".gz" if compress else "")), idx_bytes(array), compress)
    return arrays


# --- read_idx -------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8(tmp_path, compress):
    images = make_arrays()["train_images"]
    path = write(tmp_path / ("x.idx" + (".gz" if compress else "")), idx_bytes(images), compress)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (N_TRAIN, ROWS, COLS)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("dtype, code", [(np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
                                         (np.float32, 0x0D), (np.float64, 0x0E)])
def test_read_idx_other_types_are_big_endian(tmp_path, dtype, code):
    values = (np.arange(-6, 6).reshape(3, 4) * 3).astype(dtype)
    path = write(tmp_path / "x.idx", idx_bytes(values, code))
    out = read_idx(path)
    assert out.shape == (3, 4) and out.dtype.kind == np.dtype(dtype).kind
    assert out.dtype.itemsize == np.dtype(dtype).itemsize
    np.testing.assert_array_equal(out, values)


def _malformed(raw: bytes) -> dict:
    return {
        "bad magic": b"\x01" + raw[1:],
        "unknown type": raw[:2] + b"\x07" + raw[3:],
        "empty": b"",
        "truncated header": raw[:9],
        "truncated data": raw[:-1],
        "extra data": raw + b"\x00",
        "wrong shape": raw[:4] + (N_TRAIN + 1).to_bytes(4, "big") + raw[8:],
    }


@pytest.mark.parametrize("case", list(_malformed(b"0" * 20)))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_malformed(tmp_path, case, compress):
    raw = idx_bytes(make_arrays()["train_images"])
    path = write(tmp_path / ("bad.idx" + (".gz" if compress else "")), _malformed(raw)[case],
                 compress)
    with pytest.raises(FileFormatError, match="bad.idx"):
        read_idx(path)


@pytest.mark.parametrize("case", ["truncated", "corrupt", "not gzip"])
def test_read_idx_broken_gzip(tmp_path, case):
    raw = gzip.compress(idx_bytes(make_arrays()["train_images"]))
    data = {"truncated": raw[:-12],
            "corrupt": raw[:15] + bytes(b ^ 0xFF for b in raw[15:40]) + raw[40:],
            "not gzip": idx_bytes(make_arrays()["train_labels"])}[case]
    path = write(tmp_path / "broken.idx.gz", data)
    with pytest.raises(FileFormatError, match="broken.idx.gz"):
        read_idx(path)


def test_read_idx_missing(tmp_path):
    with pytest.raises(NeurosimFileNotFoundError, match="absent.idx"):
        read_idx(tmp_path / "absent.idx")


# --- load_mnist -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout, compress", [("dash", False), ("dash", True), ("dot", False),
                                              ("dot", True), ("mixed", None)])
def test_load_mnist(tmp_path, layout, compress):
    arrays = make_mnist(tmp_path / "mnist", layout, compress)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path / "mnist")
    assert X_train.shape == (N_TRAIN, ROWS * COLS) and X_test.shape == (N_TEST, ROWS * COLS)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    assert 0.0 <= X_test.min() and X_test.max() <= 1.0
    # Row-major flattening, divided by 255.
    np.testing.assert_allclose(X_train, arrays["train_images"].reshape(N_TRAIN, -1) / 255.0,
                               rtol=1e-6)
    np.testing.assert_allclose(X_test[3].reshape(ROWS, COLS), arrays["test_images"][3] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(y_train, arrays["train_labels"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    assert set(y_train.tolist()) == set(range(10))


def test_load_training_data_mnist(tmp_path):
    from neurosim.train import load_training_data

    arrays = make_mnist(tmp_path / "m", "dot", True)
    data = load_training_data(f"mnist:{tmp_path / 'm'}")
    assert data.name == "mnist" and data.task == "classification"
    assert data.X_train.shape == (N_TRAIN, ROWS * COLS) and data.X_test.shape == (N_TEST, 20)
    np.testing.assert_array_equal(data.y_test, arrays["test_labels"])
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0


def test_load_mnist_missing_folder(tmp_path):
    with pytest.raises(NeurosimFileNotFoundError, match="no_such_dir"):
        load_mnist(tmp_path / "no_such_dir")


@pytest.mark.parametrize("key", list(DASH))
def test_load_mnist_missing_file(tmp_path, key):
    make_mnist(tmp_path, "dash")
    os.remove(tmp_path / DASH[key])
    with pytest.raises(NeurosimFileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert DASH[key] in message and DOT[key] in message and str(tmp_path) in message


def test_load_mnist_malformed_file(tmp_path):
    make_mnist(tmp_path, "dash")
    raw = (tmp_path / DASH["test_labels"]).read_bytes()
    (tmp_path / DASH["test_labels"]).write_bytes(raw[:-2])
    with pytest.raises(FileFormatError, match=DASH["test_labels"]):
        load_mnist(tmp_path)


@pytest.mark.parametrize("what", ["count", "ndim"])
def test_load_mnist_inconsistent_files(tmp_path, what):
    arrays = make_mnist(tmp_path, "dash")
    if what == "count":  # one label too few
        bad = idx_bytes(arrays["train_labels"][:-1])
        name = DASH["train_labels"]
    else:  # images stored flat
        bad = idx_bytes(arrays["train_images"].reshape(N_TRAIN, -1))
        name = DASH["train_images"]
    (tmp_path / name).write_bytes(bad)
    with pytest.raises(FileFormatError, match=DASH["train_images"]):
        load_mnist(tmp_path)


# --- neurosim train on MNIST files ----------------------------------------------------------------

def test_cli_train_mnist(tmp_path, capsys):
    pytest.importorskip("torch")
    import neurosim as ns
    from neurosim.cli import main

    make_mnist(tmp_path / "mnist", "mixed")
    out_path = tmp_path / "mnist.h5"
    code = main(["train", "--data", f"mnist:{tmp_path / 'mnist'}", "--epochs", "1",
                 "--hidden", "8", "-o", str(out_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"({N_TRAIN} train / {N_TEST} test samples)" in out
    assert f"model saved to {out_path}" in out
    network = ns.load_network(out_path)
    assert network.widths == [ROWS * COLS, 8, 10]
    assert network.metadata["training_data"]["name"] == "mnist"

    (tmp_path / "mnist" / DASH["train_images"]).write_bytes(b"\x00\x00\x08")
    code = main(["train", "--data", f"mnist:{tmp_path / 'mnist'}", "--epochs", "1",
                 "--hidden", "8", "-o", str(tmp_path / "again.h5")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and DASH["train_images"] in err
    assert not (tmp_path / "again.h5").exists()
