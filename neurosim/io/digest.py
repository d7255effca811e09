"""Checksums of neurosim's own HDF5 files (networks, mappings, run files and checkpoints).

Nothing corrupt is trusted: every file neurosim writes carries

* HDF5's Fletcher-32 checksum filter on each of its datasets (:func:`create_dataset`), which
  HDF5 checks on every read of a chunk, and
* a SHA-256 digest of the whole content, :data:`DIGEST_ATTR` on the root: every group,
  dataset (dtype, shape and bytes) and attribute (the JSON state of a checkpoint, a run's
  configuration and result, a network's settings), in sorted order (:func:`sign`), and
* a *seal*: the SHA-256 of the file's bytes, written in its HDF5 user block (the first
  :data:`USERBLOCK` bytes, which HDF5 leaves to the application) after the file is closed
  (:func:`seal`).

:func:`check_seal` runs before HDF5 opens the file: a damaged file is refused before the HDF5
library parses a byte of it (the library can loop for ever on some damaged files, and no
signal interrupts it). :func:`verify` then recomputes the content digest. Both refuse a file
whose content differs, naming the file. Files of the format versions before the digest (neurosim 0.2 and older) have none; they
still read, and the docs say so (docs/reliability.md).
"""

from __future__ import annotations

import hashlib

import numpy as np

from neurosim.errors import FileFormatError

__all__ = ["DIGEST_ATTR", "USERBLOCK", "content_digest", "sign", "verify", "create_dataset",
           "seal", "check_seal"]

DIGEST_ATTR = "neurosim_sha256"
#: Size of the user block of neurosim's HDF5 files (pass it as ``h5py.File(...,
#: userblock_size=USERBLOCK)`` when writing), which holds the seal.
USERBLOCK = 512
_SEAL = b"neurosim-sha256 "
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _file_sha256(fh, start: int) -> str:
    h = hashlib.sha256()
    fh.seek(start)
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def seal(path) -> None:
    """Write the SHA-256 of the closed HDF5 file's bytes (after its user block) into the
    user block; the file must have been created with ``userblock_size=USERBLOCK``."""
    with open(path, "r+b") as fh:
        head = fh.read(USERBLOCK)
        if len(head) < USERBLOCK or head.startswith(_HDF5_SIGNATURE):
            raise ValueError(f"{path}: written without a {USERBLOCK}-byte user block")
        digest = _file_sha256(fh, USERBLOCK)
        fh.seek(0)
        fh.write((_SEAL + digest.encode() + b"\n").ljust(USERBLOCK, b"\0"))


def check_seal(path, source: str) -> bool:
    """Check a file's seal before HDF5 reads it.

    Returns True for a sealed file whose bytes match, False for a file without a user block
    (an HDF5 file of an older neurosim, or of another program: the caller decides whether it
    may be unsealed). Raises FileFormatError for a damaged seal or bytes that do not match.
    """
    with open(path, "rb") as fh:
        head = fh.read(USERBLOCK)
        if head.startswith(_HDF5_SIGNATURE):
            return False
        fh.seek(USERBLOCK)
        if fh.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE and not head.startswith(_SEAL):
            return False  # not an HDF5 file of ours at all: the caller's reader says what it is
        stored = head[len(_SEAL):len(_SEAL) + 64]
        if not head.startswith(_SEAL) or len(stored) != 64:
            raise FileFormatError(f"{source}: the file's seal (the checksum of its bytes in its "
                                  "first 512 bytes) is damaged: the file is not used.")
        if _file_sha256(fh, USERBLOCK).encode() != stored:
            raise FileFormatError(
                f"{source}: the bytes do not match the file's checksum (its seal): the file is "
                "damaged, or was changed after neurosim wrote it. It is not used.")
    return True


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
