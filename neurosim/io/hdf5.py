"""neurosim's own HDF5 network format.

Layout (``format_version`` 3)::

    /                      attrs: neurosim_format = "network", format_version = 3,
                                  neurosim_sha256 = the digest of everything else
                                  (:mod:`neurosim.io.digest`),
                                  metadata = JSON text (free-form: name, training, ...),
                                  input_shape = JSON list ((n,) or (C, H, W)),
                                  layout = "NCHW" | "NHWC" | "" (vector inputs)
    /layers/0, /layers/1   one group per weighted layer, in order; attrs: kind = "dense",
                           "conv2d" (or another registered kind), activation = "relu" | ...,
                           alpha, beta (the activation's parameters), layer_attrs (JSON, for
                           kinds with settings besides their arrays: a conv's in_shape,
                           stride, padding, dilation, groups), pre (JSON list of the pooling
                           and flattening steps before the layer: {"kind": ..., settings})
        W, b               a Dense layer's (n_out, n_in) weights and (n_out,) biases; a Conv2d
        K, b               writes its kernel (C_out, C_in/groups, kh, kw) and channel biases

Every dataset carries HDF5's Fletcher-32 checksum and the root the SHA-256 digest of the whole
content (version 3): a damaged file, or one changed after neurosim wrote it, is refused. Version
2 files (the same layout without checksums) and version 1 files (dense layers only, no
input_shape / layout / pre / beta) still read, unchecked.

Reading follows the reader contract (:mod:`neurosim.io.guard`): every attribute and dataset is
checked for its type and declared size before it is read, JSON attributes must parse to the
right JSON type, and any failure is a :class:`~neurosim.errors.NeurosimError` naming the file.
:func:`write_network_group` and :func:`read_network_group` also serve files that embed a
network (mappings, run files); those files sign their root themselves.

Writes are atomic: a temporary file in the same folder, then a rename.
"""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np

from neurosim.activations import make_activation
from neurosim.errors import FileFormatError, NeurosimError, ReadLimitError, UnsupportedLayerError
from neurosim.io import digest, guard
from neurosim.io.atomic import atomic_path
from neurosim.io.builder import NetworkBuilder, structure_of
from neurosim.layers import LAYERS, layer_type
from neurosim.network import Network

__all__ = ["FORMAT_VERSION", "SUPPORTED_VERSIONS", "is_neurosim_h5", "check_header",
           "header_version", "write_network_group", "read_network_group", "save_network_h5",
           "load_network_h5", "read_attr", "text_attr", "number_attr", "json_attr",
           "read_array", "check_global_heaps", "check_hdf5_file", "check_attributes",
           "check_storage"]

#: Version of the network file layout written by :func:`save_network_h5`.
FORMAT_VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)
#: The first version whose files carry checksums (:mod:`neurosim.io.digest`).
FIRST_SIGNED_VERSION = 3

_MISSING = object()


# --- attributes and datasets, read under the reader contract ---------------------------------
def read_attr(obj, key: str, source: str, what: str, default=_MISSING):
    """Attribute ``key`` of ``obj`` after checking its declared size (``default`` if absent;
    without a default a missing attribute is a FileFormatError naming ``what``)."""
    if key not in obj.attrs:
        if default is _MISSING:
            raise FileFormatError(f"{source}: {what} is missing.")
        return default
    _check_attr(obj, key, source, what)
    return obj.attrs[key]


#: The HDF5 type classes an attribute of a file neurosim reads may have (text, numbers, and
#: enums, as h5py writes booleans); HDF5 itself can crash converting damaged others (a
#: variable-length sequence whose heap references are garbage).
_ATTR_CLASSES = {h5py.h5t.STRING: "text", h5py.h5t.INTEGER: "integers",
                 h5py.h5t.FLOAT: "floats", h5py.h5t.ENUM: "enums"}
_CLASS_NAMES = {h5py.h5t.VLEN: "variable-length sequences", h5py.h5t.COMPOUND: "records",
                h5py.h5t.REFERENCE: "references", h5py.h5t.OPAQUE: "opaque bytes",
                h5py.h5t.ARRAY: "fixed-size arrays", h5py.h5t.BITFIELD: "bit fields",
                h5py.h5t.TIME: "times"}


def _check_attr(obj, key: str, source: str, what: str) -> None:
    """Refuse attribute ``key`` before it is read unless it holds text or numbers of a size
    within the read limit."""
    aid = obj.attrs.get_id(key)
    type_class = aid.get_type().get_class()
    if type_class not in _ATTR_CLASSES:
        raise FileFormatError(
            f"{source}: {what} holds {_CLASS_NAMES.get(type_class, f'HDF5 type class {type_class}')}"
            "; expected text or numbers.")
    shape = aid.shape if aid.shape is not None else ()
    guard.check_nbytes(math.prod(shape) * aid.dtype.itemsize, source,
                       f"{what} (shape {shape}, {aid.dtype})")


def check_storage(dataset: h5py.Dataset, source: str, name: str) -> None:
    """Refuse a chunked dataset whose chunk index is damaged in a way HDF5 does not survive,
    before any of its data is read: a filtered chunk stored in fewer than 4 bytes makes
    HDF5's Fletcher-32 filter read far past its buffer (a segfault in HDF5 2.0.0, found by
    fuzzing), and a chunk must lie inside the file."""
    if dataset.chunks is None:
        return
    filtered = dataset.id.get_create_plist().get_nfilters() > 0
    file_size = dataset.file.id.get_filesize()
    bad = []

    def visit(info) -> None:
        if not bad and ((filtered and info.size < 4) or info.byte_offset is None
                        or info.byte_offset + info.size > file_size):
            bad.append(info)

    dataset.id.chunk_iter(visit)
    if bad:
        info = bad[0]
        raise FileFormatError(
            f"{source}: {name} is damaged: its chunk at {tuple(info.chunk_offset)} is stored in "
            f"{info.size} bytes at byte {info.byte_offset} of a {file_size}-byte file. It is not "
            "read.")


def check_attributes(f: h5py.File, source: str) -> None:
    """Check every attribute (its type and declared size) and the storage of every dataset
    in the open file ``f``, without reading any, before anything reads them all (a digest
    does)."""
    def check(obj, path: str) -> None:
        for key in obj.attrs:
            _check_attr(obj, key, source, f"the attribute {key!r} of {path!r}")
        if isinstance(obj, h5py.Dataset):
            check_storage(obj, source, f"dataset {path!r}")

    check(f, "/")
    f.visititems(lambda name, obj: check(obj, name))


def _scalar(value):
    """A 0-d (or one-element) array as its item; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def text_attr(obj, key: str, source: str, what: str, default=_MISSING) -> str:
    """A text attribute (str or UTF-8 bytes)."""
    value = _scalar(read_attr(obj, key, source, what, default))
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FileFormatError(f"{source}: {what} is not UTF-8 text.") from None
    if not isinstance(value, str):
        raise FileFormatError(f"{source}: {what} must be text; got {_describe(value)}.")
    return value


def number_attr(obj, key: str, source: str, what: str, default=_MISSING):
    """A real scalar attribute (an integer or a float) as a float."""
    value = _scalar(read_attr(obj, key, source, what, default))
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FileFormatError(f"{source}: {what} must be a real number; got {_describe(value)}.")
    return float(value)


def json_attr(obj, key: str, source: str, what: str, expect, default=_MISSING):
    """An attribute holding JSON text that must decode to ``expect`` (dict, list)."""
    value = read_attr(obj, key, source, what, default)
    if value is default and default is not _MISSING:
        return value
    try:
        return guard.json_text(value, source, what, expect)
    except FileFormatError as exc:
        if isinstance(exc.__context__, json.JSONDecodeError):  # say which text is broken
            raise FileFormatError(f"{source}: {what} is not JSON text "
                                  f"({exc.__context__}).") from None
        raise


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def read_array(obj, source: str, name: str, kinds: str = "fiu") -> np.ndarray:
    """An HDF5 dataset of numbers (``kinds``), refusing text, variable-length and complex data
    with a message that says which, and checking the declared size before reading."""
    if isinstance(obj, h5py.Dataset):
        dtype = obj.dtype
        if h5py.check_string_dtype(dtype) is not None:
            raise FileFormatError(f"{source}: {name} holds text; expected numbers.")
        if h5py.check_vlen_dtype(dtype) is not None:
            raise FileFormatError(f"{source}: {name} holds variable-length sequences; expected "
                                  "an array of numbers.")
        if dtype.kind == "b" and "b" not in kinds:
            raise FileFormatError(f"{source}: {name} holds booleans; expected numbers.")
        check_storage(obj, source, name)
    return guard.read_dataset(obj, source, name, kinds)


# --- damage HDF5 itself does not survive ------------------------------------------------------
_SUPERBLOCK = b"\x89HDF\r\n\x1a\n"


def _length_size(data) -> int:
    """The superblock's "size of lengths" (8 unless the file says otherwise)."""
    for base in (0, 512, 1024, 2048, 4096, 8192):
        if data[base:base + 8] == _SUPERBLOCK:
            version = data[base + 8]
            size = data[base + 14] if version in (0, 1) else data[base + 10]
            return size if size in (2, 4, 8, 16) else 8
    return 8


def check_global_heaps(data, source: str) -> None:
    """Refuse an HDF5 file (its bytes, or an ``mmap`` of them) whose global heap collections
    are damaged in a way the HDF5 library does not survive.

    Variable-length data (every text attribute h5py writes) lives in global heap collections
    (signature ``GCOL``). HDF5 walks a collection's objects by their declared sizes, and an
    object declaring size 0 makes that walk loop forever inside the C library, where no
    signal or time limit reaches it (HDF5 2.0.0); an object running past its collection can
    send the walk anywhere. Every ``GCOL`` in the file is walked here first, as HDF5 would.
    """
    length = _length_size(data)
    header = 8 + length
    object_header = 8 + length
    n_bytes = len(data)
    at = data.find(b"GCOL")
    while at >= 0:
        if at + header <= n_bytes and data[at + 4] == 1:  # HDF5 refuses other versions itself
            size = int.from_bytes(data[at + 8:at + 8 + length], "little")
            end = min(at + size, n_bytes)  # HDF5 reads no further than the file's end
            p = at + header
            while p < end and p + object_header <= end:
                index = int.from_bytes(data[p:p + 2], "little")
                declared = int.from_bytes(data[p + 8:p + 8 + length], "little")
                need = object_header + -(-declared // 8) * 8 if index else declared
                if need == 0 or need > end - p:
                    raise FileFormatError(
                        f"{source}: the HDF5 file is damaged: object {index} of the global heap "
                        f"at byte {at} declares {declared} bytes, which "
                        f"{'makes no progress' if need == 0 else 'runs past its collection'} "
                        "(text and variable-length data live there). It is not read.")
                p += need
        at = data.find(b"GCOL", at + 1)


def check_hdf5_file(path, source: str) -> None:
    """:func:`check_global_heaps` on the file at ``path`` (mapped, not read into memory)."""
    import mmap

    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            check_global_heaps(data, source)


# --- header ------------------------------------------------------------------------------------
def require_seal(f: h5py.File, source: str, sealed: bool, first_version: int) -> None:
    """Refuse a file of ``format_version >= first_version`` that has no seal
    (:func:`neurosim.io.digest.check_seal` found no user block): every such file has one."""
    version = header_version(f, source)
    if version >= first_version and not sealed:
        raise FileFormatError(
            f"{source}: a file of format_version {version} carries a seal (the checksum of its "
            "bytes), and this one has none: it is damaged or was not written by neurosim.")


def is_neurosim_h5(path) -> bool:
    """True if ``path`` is an HDF5 file written by neurosim (any kind)."""
    try:
        with h5py.File(path, "r") as f:
            return "neurosim_format" in f.attrs
    except Exception:  # noqa: BLE001 - a damaged file is not one; its reader says why
        return False


def header_version(f: h5py.File, source: str) -> int:
    """The ``format_version`` attribute of a neurosim file (-1 if absent)."""
    value = _scalar(read_attr(f, "format_version", source, "the format_version attribute", -1))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or \
            (isinstance(value, float) and not value.is_integer()):
        raise FileFormatError(
            f"{source}: the format_version attribute must be an integer; got {_describe(value)}.")
    return int(value)


def check_header(f: h5py.File, source: str, kind: str, supported_versions) -> None:
    """Raise FileFormatError unless ``f`` is a neurosim ``kind`` file of a supported version.

    Every neurosim HDF5 file (network, mapping, simulation, experiment) carries the root
    attributes ``neurosim_format`` (its kind) and ``format_version``.
    """
    found = _scalar(read_attr(f, "neurosim_format", source, "the neurosim_format attribute",
                              None))
    if isinstance(found, bytes):
        found = found.decode("utf-8", "replace")
    if found != kind:
        holds = (f"it holds a neurosim {found!r} file" if isinstance(found, str) else
                 "no neurosim_format" if found is None else
                 f"its neurosim_format is {_describe(found)}")
        raise FileFormatError(f"{source}: not a neurosim {kind} file ({holds}).")
    version = header_version(f, source)
    if version not in tuple(supported_versions):
        raise FileFormatError(
            f"{source}: {kind} format_version {version} is not supported by this neurosim "
            f"(supported: {tuple(supported_versions)}); upgrade neurosim."
        )


# --- the network group -------------------------------------------------------------------------
def write_network_group(group: h5py.Group, network: Network) -> None:
    """Write ``network`` into an open HDF5 group (also used inside mapping and result files).

    Datasets carry the Fletcher-32 checksum; the file's digest is the caller's to sign
    (:func:`neurosim.io.digest.sign`, after everything is written).
    """
    group.attrs["metadata"] = json.dumps(network.metadata, sort_keys=True, default=str)
    structure = structure_of(network)
    group.attrs["input_shape"] = json.dumps(structure["input_shape"])
    group.attrs["layout"] = structure["layout"] or ""
    layers = group.create_group("layers")
    for index, layer in enumerate(network.layers):
        g = layers.create_group(str(index))
        g.attrs["kind"] = layer.kind
        g.attrs["activation"] = layer.activation.name
        g.attrs["alpha"] = float(layer.activation.alpha)
        g.attrs["beta"] = float(layer.activation.beta)
        if structure["pre"][index]:
            g.attrs["pre"] = json.dumps(structure["pre"][index], sort_keys=True)
        if layer.attrs():
            g.attrs["layer_attrs"] = json.dumps(layer.attrs(), sort_keys=True)
        for name, array in layer.arrays().items():
            digest.create_dataset(g, name, array)


def _input_shape(group, source: str):
    shape = json_attr(group, "input_shape", source, "the 'input_shape' attribute", list, None)
    if shape is None:
        return None
    if not shape or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                            for v in shape):
        raise FileFormatError(f"{source}: 'input_shape' must be a JSON list of positive "
                              f"integers ((n,) or (C, H, W)); got {shape!r:.80}.")
    return tuple(shape)


def read_network_group(group: h5py.Group, source: str) -> Network:
    """Read a network written by :func:`write_network_group`; ``source`` names it in errors."""
    if "layers" not in group:
        raise FileFormatError(f"{source}: no 'layers' group; this is not a neurosim network.")
    layers_group = group["layers"]
    if not isinstance(layers_group, h5py.Group):
        raise FileFormatError(f"{source}: 'layers' must be a group (one subgroup per layer); "
                              f"got a {type(layers_group).__name__}.")
    names = list(layers_group)
    try:
        order = sorted(names, key=int)
    except ValueError:
        raise FileFormatError(
            f"{source}: layer groups must be named 0, 1, 2, ...; got {sorted(names)[:10]}."
        ) from None
    if order != [str(i) for i in range(len(order))]:
        raise FileFormatError(f"{source}: layer groups must be numbered 0..L-1 without gaps; "
                              f"got {order[:10]}{' ...' if len(order) > 10 else ''}.")
    builder = NetworkBuilder(source, unit="weighted")
    for name in order:
        g = layers_group[name]
        where = f"{source}: layer {name}"
        if not isinstance(g, h5py.Group):
            raise FileFormatError(f"{where} must be a group of datasets; got a "
                                  f"{type(g).__name__}.")
        kind = text_attr(g, "kind", source, f"the 'kind' attribute of layer {name}", "dense")
        try:
            cls = layer_type(kind)
        except UnsupportedLayerError:
            raise UnsupportedLayerError(
                f"{where} is of kind {kind!r}; supported layer kinds: {', '.join(sorted(LAYERS))}."
            ) from None
        if "activation" not in g.attrs:
            raise FileFormatError(f"{where} has no 'activation' attribute.")
        act_name = text_attr(g, "activation", source, f"the 'activation' attribute of layer {name}")
        alpha = number_attr(g, "alpha", source, f"the 'alpha' attribute of layer {name}", 0.01)
        beta = number_attr(g, "beta", source, f"the 'beta' attribute of layer {name}", None)
        try:
            activation = make_activation(act_name, alpha, beta)
        except NeurosimError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        pre = json_attr(g, "pre", source, f"the 'pre' attribute of layer {name}", list, [])
        attrs = json_attr(g, "layer_attrs", source, f"the 'layer_attrs' attribute of layer {name}",
                          dict, {})
        builder.transform_specs(pre, where)
        arrays = {key: read_array(g[key], source, f"layer {name}: dataset {key!r}")
                  for key in g}
        try:
            layer = cls.from_arrays(arrays, attrs, activation)
        except KeyError as exc:
            raise FileFormatError(f"{where} has no dataset {exc.args[0]!r}.") from None
        except NeurosimError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise FileFormatError(f"{where}: malformed {kind} layer ({exc}).") from None
        builder.add(layer, where)
    metadata = json_attr(group, "metadata", source, "the 'metadata' attribute", dict, {})
    input_shape = _input_shape(group, source)
    layout = text_attr(group, "layout", source, "the 'layout' attribute", "") or None
    return builder.build(metadata, input_shape=input_shape, layout=layout)


# --- files -------------------------------------------------------------------------------------
def save_network_h5(network: Network, path: "str | os.PathLike") -> None:
    """Save ``network`` in neurosim's HDF5 format (version 3, with checksums), atomically."""
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", userblock_size=digest.USERBLOCK) as f:
            f.attrs["neurosim_format"] = "network"
            f.attrs["format_version"] = FORMAT_VERSION
            write_network_group(f, network)
            digest.sign(f)
        digest.seal(tmp)


def _checksum_problem(f: h5py.File, source: str, version: int) -> "FileFormatError | None":
    """Why ``f`` fails its checksums (None if it passes, or predates them)."""
    try:
        digest.verify(f, source, required=version >= FIRST_SIGNED_VERSION)
    except FileFormatError as exc:
        return exc
    except OSError as exc:  # HDF5 refuses a chunk whose Fletcher-32 checksum fails
        return FileFormatError(
            f"{source}: a dataset cannot be read back as it was written: it fails its "
            f"checksum (Fletcher-32) or the file's structure is damaged (HDF5: "
            f"{str(exc).strip()[:200]}). It is not used.")
    return None


def load_network_h5(path: "str | os.PathLike") -> Network:
    """Load a network saved by :func:`save_network_h5` (format versions 1 to 3).

    The checksums of a version 3 file are checked first. A file that fails them is refused;
    when its layers are also malformed the error says what is wrong with them (naming the
    layer and the field), which is the more useful message, and that it fails its checksum.
    """
    source = os.fspath(path)
    with guard.reading(source, "neurosim network file (HDF5)"):
        sealed = digest.check_seal(path, source)  # before HDF5 parses a byte of it
        check_hdf5_file(path, source)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise FileFormatError(f"{source}: not a readable HDF5 file ({exc}).") from None
        with f:
            check_header(f, source, "network", SUPPORTED_VERSIONS)
            require_seal(f, source, sealed, FIRST_SIGNED_VERSION)
            check_attributes(f, source)
            problem = _checksum_problem(f, source, header_version(f, source))
            if problem is None:
                return read_network_group(f, source)
            if isinstance(problem, ReadLimitError):
                raise problem
            try:
                read_network_group(f, source)
            except NeurosimError as exc:
                raise type(exc)(
                    f"{exc} (The file also fails its checksum: it is damaged, or was changed "
                    "after neurosim wrote it.)") from problem
            except Exception:  # noqa: BLE001 - the checksum's error says it best
                pass
            raise problem
