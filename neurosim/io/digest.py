"""Checksums of neurosim's own HDF5 files (networks, mappings, run files and checkpoints).

Nothing corrupt is trusted: every file neurosim writes carries

* HDF5's Fletcher-32 checksum filter on each of its datasets (:func:`create_dataset`), which
  HDF5 checks on every read of a chunk, and
* a SHA-256 digest of the whole content, :data:`DIGEST_ATTR` on the root: every group,
  dataset (dtype, shape and bytes) and attribute (the JSON state of a checkpoint, a run's
  configuration and result, a network's settings), in sorted order (:func:`sign`).

:func:`verify` recomputes the digest on read and refuses a file whose content differs, naming
the file. Files of the format versions before the digest (neurosim 0.2 and older) have none; they
still read, and the docs say so (docs/reliability.md).
"""

from __future__ import annotations

import hashlib

import numpy as np

from neurosim.errors import FileFormatError

__all__ = ["DIGEST_ATTR", "content_digest", "sign", "verify", "create_dataset"]

DIGEST_ATTR = "neurosim_sha256"


def create_dataset(group, name: str, data):
    """``group.create_dataset(name, data=data)`` with the Fletcher-32 checksum filter where
    HDF5 allows one (arrays with at least one element and one axis)."""
    array = np.asarray(data)
    if array.ndim >= 1 and array.size > 0 and array.dtype.kind in "biuf":
        return group.create_dataset(name, data=array, fletcher32=True)
    return group.create_dataset(name, data=array)


def _value_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    array = np.asarray(value)
    if array.dtype.kind == "O":
        return b"o" + repr(array.tolist()).encode("utf-8", "surrogatepass")
    return (f"a{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())


def content_digest(f, source: str = "") -> str:
    """SHA-256 of everything in the open HDF5 file ``f`` except the digest attribute itself."""
    import h5py

    from neurosim.io.guard import check_nbytes

    h = hashlib.sha256()

    def attrs(obj, path):
        for key in sorted(obj.attrs):
            if path == "/" and key == DIGEST_ATTR:
                continue
            h.update(f"@{path}:{key}=".encode("utf-8", "surrogatepass"))
            h.update(_value_bytes(obj.attrs[key]))

    attrs(f, "/")
    names = []
    f.visit(names.append)
    for name in sorted(names):
        obj = f[name]
        if isinstance(obj, h5py.Dataset):
            check_nbytes(obj.size * obj.dtype.itemsize, source, f"dataset {name!r}")
            h.update(f"D{name}".encode("utf-8", "surrogatepass"))
            h.update(_value_bytes(obj[()]))
        else:
            h.update(f"G{name}".encode("utf-8", "surrogatepass"))
        attrs(obj, name)
    return h.hexdigest()


def sign(f) -> None:
    """Store the digest of the open (writable) file ``f``; call it last, after every write."""
    f.attrs[DIGEST_ATTR] = content_digest(f)


def verify(f, source: str, required: bool = True) -> None:
    """Refuse ``f`` unless its content matches its digest.

    ``required=False`` (files of a format version from before the digest) accepts a file
    without one.
    """
    stored = f.attrs.get(DIGEST_ATTR)
    if stored is None:
        if required:
            raise FileFormatError(
                f"{source}: the file has no checksum ({DIGEST_ATTR}), which every file of its "
                "format version carries: it is damaged or was not written by neurosim.")
        return
    if isinstance(stored, bytes):
        stored = stored.decode("ascii", "replace")
    if not isinstance(stored, str) or stored != content_digest(f, source):
        raise FileFormatError(
            f"{source}: the content does not match its checksum ({DIGEST_ATTR}): the file is "
            "damaged, or was changed after neurosim wrote it. It is not used.")
