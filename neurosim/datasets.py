"""Bundled demo data and loading of user data sets.

neurosim ships a small demo: an MLP 64-256-256-10 trained on scikit-learn's 8x8 digits
(``neurosim/bundled/digits_mlp.h5``) and the held-out test split it was evaluated on
(``neurosim/bundled/digits_test.npz``, 397 samples). Both are produced by
``scripts/train_digits.py`` and read with :mod:`importlib.resources`, so they work from a
wheel, a zip or an editable install alike.

:func:`load_data` turns a data specification -- a bundled data set's name or the path of an
``.npz`` / ``.h5`` file holding an array ``X`` and optionally labels ``y`` -- into checked
arrays.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from neurosim.errors import (
    FileFormatError,
    NeurosimFileNotFoundError,
    ShapeError,
    ValidationError,
)
from neurosim.network import Network

__all__ = ["DATASETS", "load_data", "load_digits_model", "load_digits_conv_model", "load_digits_test"]

_BUNDLE_PACKAGE = "neurosim.bundled"
_DIGITS_MODEL = "digits_mlp.h5"
_DIGITS_CNN = "digits_cnn.h5"
_DIGITS_TEST = "digits_test.npz"
_NPZ_SUFFIXES = (".npz",)
_H5_SUFFIXES = (".h5", ".hdf5")


def _bundled(name: str):
    """The :class:`importlib.resources` traversable of a bundled file, or raise if absent."""
    resource = resources.files(_BUNDLE_PACKAGE) / name
    if not resource.is_file():
        raise NeurosimFileNotFoundError(
            f"The bundled file {name!r} is missing from the {_BUNDLE_PACKAGE} package; "
            "reinstall neurosim, or regenerate it with scripts/train_digits.py."
        )
    return resource


def load_digits_model() -> Network:
    """Load the bundled demo classifier for scikit-learn's 8x8 digits.

    Returns
    -------
    Network
        A float32 MLP of widths ``[64, 256, 256, 10]`` (ReLU hidden layers, linear output),
        trained by ``scripts/train_digits.py``. Its ``metadata`` records how it was trained
        and its train and test accuracy. Inputs are the 64 pixel intensities divided by 16
        (values in [0, 1]); outputs are the 10 class logits.

    Raises
    ------
    NeurosimFileNotFoundError
        If the bundled model file is missing from the installation.

    See Also
    --------
    load_digits_test : the held-out split the model was evaluated on.

    Examples
    --------
    >>> from neurosim.datasets import load_digits_model, load_digits_test
    >>> net = load_digits_model()
    >>> X, y = load_digits_test()
    >>> float((net.predict(X) == y).mean()) >= 0.95
    True
    """
    from neurosim.io.hdf5 import load_network_h5

    with resources.as_file(_bundled(_DIGITS_MODEL)) as path:
        return load_network_h5(path)


def load_digits_conv_model() -> Network:
    """Load the bundled conv classifier for the 8x8 digits as 1 x 8 x 8 images.

    Returns
    -------
    Network
        A float32 CNN ``conv8-maxpool-conv16-maxpool-flatten-fc32-fc10`` (ReLU, 3x3 "same"
        convolutions whose BatchNorms were folded in when it was read from PyTorch), trained
        by ``scripts/train_digits_conv.py`` on the same split as :func:`load_digits_model`.
        It takes the images as ``(n, 1, 8, 8)`` or as the flat 64 pixels of
        :func:`load_digits_test`.

    Examples
    --------
    >>> from neurosim.datasets import load_digits_conv_model, load_digits_test
    >>> net = load_digits_conv_model()
    >>> X, y = load_digits_test()
    >>> float((net.predict(X.reshape(-1, 1, 8, 8)) == y).mean()) >= 0.95
    True
    """
    from neurosim.io.hdf5 import load_network_h5

    with resources.as_file(_bundled(_DIGITS_CNN)) as path:
        return load_network_h5(path)


def load_digits_test() -> tuple[np.ndarray, np.ndarray]:
    """Load the bundled held-out split of scikit-learn's 8x8 digits.

    These are the 397 samples (stratified ``train_test_split`` with ``random_state=0``) that
    :func:`load_digits_model` was not trained on.

    Returns
    -------
    X : ndarray of float32, shape (397, 64)
        Pixel intensities scaled to [0, 1].
    y : ndarray of int64, shape (397,)
        Class labels 0..9.

    Raises
    ------
    NeurosimFileNotFoundError
        If the bundled data file is missing from the installation.
    """
    with resources.as_file(_bundled(_DIGITS_TEST)) as path:
        with np.load(path, allow_pickle=False) as data:
            X = np.array(data["X"], dtype=np.float32)
            y = np.array(data["y"], dtype=np.int64)
    return X, y


#: Bundled data sets by name: each value is a function returning ``(X, y)``.
DATASETS: dict[str, Callable[[], tuple[np.ndarray, "np.ndarray | None"]]] = {
    "digits": load_digits_test,
}


def _valid_names() -> str:
    return ", ".join(repr(name) for name in sorted(DATASETS))


def _sentence(text: str) -> str:
    """``text`` with its first letter upper-cased (``str.capitalize`` would lower the rest)."""
    return text[:1].upper() + text[1:]


def _read_npz(path: Path, source: str) -> tuple[np.ndarray, "np.ndarray | None"]:
    import zipfile

    if not zipfile.is_zipfile(path):
        # np.load would otherwise try to unpickle it and complain about pickled data.
        raise FileFormatError(f"{_sentence(source)} is not a .npz (zip) archive.")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            if "X" not in keys:
                raise FileFormatError(
                    f"{_sentence(source)} has no array 'X' (the samples); it holds: "
                    f"{', '.join(map(repr, keys)) or 'no arrays'}."
                )
            X = np.asarray(data["X"])
            y = np.asarray(data["y"]) if "y" in keys else None
    except FileFormatError:
        raise
    except ValueError as exc:  # object arrays (would need pickle), or not an npz at all
        raise FileFormatError(f"{_sentence(source)} cannot be read as .npz arrays: {exc}") from None
    except (OSError, EOFError) as exc:
        raise FileFormatError(f"{_sentence(source)} is not a readable .npz file: {exc}") from None
    return X, y


def _read_h5(path: Path, source: str) -> tuple[np.ndarray, "np.ndarray | None"]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError:
        raise FileFormatError(f"{_sentence(source)} is not a readable HDF5 file.") from None
    with f:
        keys = list(f.keys())
        if not isinstance(f.get("X"), h5py.Dataset):
            hint = ""
            if f.attrs.get("neurosim_format") == "network":
                hint = " It is a neurosim network file, not a data file."
            what = "is a group, not a dataset" if "X" in f else "is missing"
            raise FileFormatError(
                f"{_sentence(source)} has no dataset 'X' (the samples): 'X' {what}; the "
                f"file's top level holds: {', '.join(map(repr, keys)) or 'nothing'}.{hint}"
            )
        X = np.asarray(f["X"][()])
        y = None
        if "y" in f:
            if not isinstance(f["y"], h5py.Dataset):
                raise FileFormatError(
                    f"{_sentence(source)}: 'y' (the labels) is a group, not a dataset."
                )
            y = np.asarray(f["y"][()])
    return X, y


def _check_arrays(
    X: np.ndarray, y: "np.ndarray | None", source: str, network: "Network | None"
) -> tuple[np.ndarray, "np.ndarray | None"]:
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
        raise ValidationError(
            f"The samples 'X' in {source} must be real numbers. Got dtype {X.dtype} instead."
        )
    if X.ndim not in (2, 4):
        raise ShapeError(
            f"The samples 'X' in {source} must be a 2-D array (n_samples, n_features) or a 4-D "
            f"array of images (n_samples, C, H, W) / (n_samples, H, W, C). Got shape {X.shape} "
            "instead."
        )
    if X.shape[0] == 0:
        raise ShapeError(f"The samples 'X' in {source} hold no samples (shape {X.shape}).")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValidationError(
            f"The samples 'X' in {source} must be finite. Got {X[where]} at index {where} "
            f"({int(bad.sum())} non-finite values in all)."
        )
    if network is not None and X.ndim == 4 and (
            len(network.input_shape) != 3 or tuple(X.shape[1:]) != network.data_shape):
        axes = {"NHWC": " (N x H x W x C)", "NCHW": " (N x C x H x W)"}.get(network.layout, "")
        raise ShapeError(
            f"The samples 'X' in {source} are images of shape {X.shape}, but the network takes "
            + (f"images of shape (n_samples, {', '.join(map(str, network.data_shape))}){axes}."
               if len(network.input_shape) == 3 else f"vectors of {network.n_inputs} inputs.")
        )
    if network is not None and X.ndim == 2 and X.shape[1] != network.n_inputs:
        raise ShapeError(
            f"The samples 'X' in {source} have {X.shape[1]} features, but the network takes "
            f"{network.n_inputs} inputs (X has shape {X.shape})."
        )
    if y is not None:
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ShapeError(
                f"The labels 'y' in {source} must have shape ({X.shape[0]},) (class labels) or "
                f"({X.shape[0]}, n_outputs) (regression targets), one row per sample of 'X' "
                f"{X.shape}. Got shape {y.shape} instead."
            )
        if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
            y = y.astype(np.int64)
        elif np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)):
                raise ValidationError(
                    f"The targets 'y' in {source} must be finite. Got NaN or infinite values."
                )
            # Whole-number 1-D floats are class labels; anything else is a regression target.
            if y.ndim == 1 and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            else:
                y = y.astype(np.float64)
        else:
            raise ValidationError(
                f"The labels 'y' in {source} must be numeric (integer class labels or float "
                f"regression targets). Got an array of dtype {y.dtype} instead."
            )
    return X, y


def load_data(
    spec: "str | os.PathLike", network: "Network | None" = None
) -> tuple[np.ndarray, "np.ndarray | None"]:
    """Load a data set from a bundled name or a file.

    Parameters
    ----------
    spec : str or os.PathLike
        A name from :data:`DATASETS` (``"digits"``: the bundled 8x8 digits test split), or
        the path of an ``.npz`` file or an HDF5 file (``.h5`` / ``.hdf5``) holding an array
        (dataset) ``X`` of shape ``(n_samples, n_features)`` and optionally ``y`` of shape
        ``(n_samples,)`` with integer class labels (or float regression targets). A registered name wins over a file of the
        same name in the working folder; write ``./digits`` to mean the file.
    network : Network, optional
        If given, ``X`` must have ``network.n_inputs`` columns.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features) or (n_samples, *image shape)
        The samples, as a floating array (integer data is converted to float64). Images keep
        their shape (in the network's layout: ``network.data_shape``).
    y : ndarray of int64, shape (n_samples,), or None
        The labels, or None if the file holds no ``y``.

    Raises
    ------
    NeurosimFileNotFoundError
        If ``spec`` is neither a bundled name nor an existing file; the message lists the
        bundled names.
    FileFormatError
        If the file is a folder, has an unsupported suffix, cannot be read, or holds no
        ``X``; the message names the file and what it holds.
    ShapeError
        If ``X`` is not 2-D or empty, ``y`` is not one label per sample, or ``X``'s width
        differs from ``network.n_inputs``.
    ValidationError
        If ``X`` is not numeric or holds NaN or infinity, or ``y`` is not integer labels.

    Examples
    --------
    >>> from neurosim.datasets import load_data, load_digits_model
    >>> X, y = load_data("digits", network=load_digits_model())
    >>> X.shape, y.shape
    ((397, 64), (397,))
    """
    if isinstance(spec, str) and spec in DATASETS:
        X, y = DATASETS[spec]()
        source = f"the bundled data set {spec!r}"
        return _check_arrays(np.asarray(X), None if y is None else np.asarray(y), source, network)
    if not isinstance(spec, (str, os.PathLike)):
        raise ValidationError(
            f"The data specification must be a bundled data set name ({_valid_names()}) or a "
            f"file path. Got {spec!r} instead."
        )
    path = Path(spec)
    source = f"the data file {str(path)!r}"
    if not path.exists():
        raise NeurosimFileNotFoundError(
            f"The data file {str(path)!r} does not exist, and {os.fspath(spec)!r} is not a "
            f"bundled data set (valid names: {_valid_names()})."
        )
    if path.is_dir():
        raise FileFormatError(f"{str(path)!r} is a folder; expected a .npz or .h5 data file.")
    suffix = path.suffix.lower()
    if suffix in _NPZ_SUFFIXES:
        X, y = _read_npz(path, source)
    elif suffix in _H5_SUFFIXES:
        X, y = _read_h5(path, source)
    else:
        raise FileFormatError(
            f"Cannot tell the format of {source} from its name. Supported: .npz, .h5, .hdf5 "
            f"files with an array 'X' (and optionally 'y'), or a bundled data set "
            f"({_valid_names()})."
        )
    return _check_arrays(X, y, source, network)


# --- MNIST IDX files --------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path: "str | os.PathLike") -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed (``.gz``).

    Layout: two zero bytes, a type byte (0x08 unsigned byte, ...), the number of dimensions,
    then each dimension as a big-endian 32-bit integer, then the data.

    Raises
    ------
    NeurosimFileNotFoundError, FileFormatError
        For a missing file, a bad magic number, or data of the wrong length.
    """
    import gzip
    import zlib

    source = os.fspath(path)
    if not os.path.isfile(source):
        raise NeurosimFileNotFoundError(f"IDX file {source!r} does not exist.")
    opener = gzip.open if source.endswith(".gz") else open
    try:
        with opener(source, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated .gz raises EOFError and corrupt compressed data zlib.error, not OSError.
        raise FileFormatError(f"{source}: cannot read it ({exc}).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise FileFormatError(
            f"{source}: not an IDX file (expected the magic bytes 00 00 TYPE NDIM with TYPE one of "
            f"{', '.join(hex(t) for t in _IDX_TYPES)}).")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FileFormatError(f"{source}: truncated header ({ndim} dimensions announced).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise FileFormatError(
            f"{source}: the header announces shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header} bytes.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist(folder: "str | os.PathLike"):
    """MNIST from the standard IDX files in ``folder`` (plain or ``.gz``; both the
    ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte`` spellings).

    Returns ``X_train, y_train, X_test, y_test`` with images flattened to 784 floats in [0, 1].
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise NeurosimFileNotFoundError(f"MNIST folder {folder!r} does not exist.")
    found = {}
    for key, names in MNIST_FILES.items():
        for name in names:
            for candidate in (name, name + ".gz"):
                path = os.path.join(folder, candidate)
                if os.path.isfile(path):
                    found[key] = path
                    break
            if key in found:
                break
        if key not in found:
            raise NeurosimFileNotFoundError(
                f"MNIST folder {folder!r} has no {names[0]} (or {names[1]}, optionally .gz).")
    arrays = {key: read_idx(path) for key, path in found.items()}
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise FileFormatError(
                f"{found[split + '_images']}: expected images (n, rows, cols) and n labels; got "
                f"{images.shape} and {labels.shape}.")
        out += [(images.reshape(images.shape[0], -1) / 255.0).astype(np.float32),
                labels.astype(np.int64)]
    return tuple(out)
