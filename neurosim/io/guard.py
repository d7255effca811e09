"""The reader contract: what every reader of a file promises, and the tools it uses to keep it.

Every reader neurosim has (networks in every format, data, profiles, mappings, run files and
checkpoints) reads inside :func:`reading`, and so:

* any failure inside it becomes a :class:`~neurosim.errors.NeurosimError` that names the file
  and what was wrong (a malformed archive, a missing entry, text that is not JSON, ...); the
  original exception is kept as its ``__cause__`` for debugging;
* declared sizes are checked against :func:`read_limit` *before* anything is allocated
  (:func:`check_nbytes`; :func:`read_dataset` for HDF5 datasets, :func:`read_npz` for ``.npz``
  archives, :func:`read_member` for members of other zip archives), so a header that declares a
  298 GiB array is one clear error and never a ``MemoryError``;
* archive members are read into memory with a size limit and never extracted to disk;
* data of the wrong type (text, complex numbers, pickled objects where numbers belong) is
  refused by :func:`numeric` with a message that says what was expected.

The limit is a quarter of the machine's memory unless the environment variable
``NEUROSIM_MAX_READ_BYTES`` (a number of bytes, or ``8G``, ``500M``) or :func:`set_read_limit`
says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tokenize
import zipfile
from typing import Iterator

import numpy as np

from neurosim.errors import FileFormatError, NeurosimError, ReadLimitError

__all__ = ["READ_LIMIT_ENV", "read_limit", "set_read_limit", "check_nbytes", "reading",
           "numeric", "read_npz", "read_member", "read_dataset", "json_text", "format_bytes"]

READ_LIMIT_ENV = "NEUROSIM_MAX_READ_BYTES"
#: Share of the machine's memory one file may ask for when no limit is set.
MEMORY_SHARE = 0.25
#: The limit when the machine's memory cannot be read.
FALLBACK_LIMIT = 4 << 30

_override: "int | None" = None
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _machine_memory() -> "int | None":
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise FileFormatError(
            f"The environment variable {READ_LIMIT_ENV} must be a number of bytes (e.g. "
            f"8000000000, 8G or 500M). Got {text!r} instead.")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def read_limit() -> int:
    """The most bytes one array, dataset or archive member of a file may declare."""
    if _override is not None:
        return _override
    env = os.environ.get(READ_LIMIT_ENV)
    if env:
        return _parse_bytes(env)
    memory = _machine_memory()
    return int(memory * MEMORY_SHARE) if memory else FALLBACK_LIMIT


def _where_limit() -> str:
    if _override is not None:
        return "set by neurosim.set_read_limit"
    if os.environ.get(READ_LIMIT_ENV):
        return f"set by {READ_LIMIT_ENV}"
    return f"{MEMORY_SHARE:.0%} of this machine's memory"


def set_read_limit(nbytes: "int | None") -> None:
    """Set the most bytes one array of a file may declare (``None``: back to the default)."""
    global _override
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer))
                               or nbytes <= 0):
        from neurosim.errors import param_error

        raise param_error("set_read_limit", "nbytes", "a positive integer or None", nbytes)
    _override = None if nbytes is None else int(nbytes)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def check_nbytes(nbytes: float, source: str, what: str) -> None:
    """Refuse ``what`` in ``source`` if it declares more than :func:`read_limit` bytes."""
    limit = read_limit()
    if nbytes > limit:
        raise ReadLimitError(
            f"{source}: {what} declares {format_bytes(nbytes)}, more than neurosim reads from a "
            f"file ({format_bytes(limit)}, {_where_limit()}). If the file is trusted and the "
            f"machine has the memory, raise the limit: {READ_LIMIT_ENV}=<bytes> (e.g. 64G) or "
            "neurosim.set_read_limit(nbytes)."
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def reading(source: str, what: str = "file") -> Iterator[None]:
    """Run a reader: any failure becomes a NeurosimError naming ``source``.

    neurosim's own errors pass through (given the file's name if they lack it); anything else
    (a ``BadZipFile``, an ``OSError`` from HDF5, a ``KeyError``, a ``MemoryError``, a
    ``RecursionError``) becomes a :class:`~neurosim.errors.FileFormatError` saying the file is
    not a valid ``what``. KeyboardInterrupt and SystemExit are not touched.
    """
    try:
        yield
    except NeurosimError as exc:
        if source and source not in str(exc):
            try:
                renamed = type(exc)(f"{source}: {exc}")
            except TypeError:  # pragma: no cover - an error class with another signature
                raise exc
            raise renamed.with_traceback(exc.__traceback__) from exc.__cause__
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: nothing else escapes a reader
        raise FileFormatError(f"{source}: not a valid {what} ({_describe(exc)}).") from exc


def numeric(array, source: str, name: str, kinds: str = "biuf") -> np.ndarray:
    """``array`` as a NumPy array of numbers (kinds: b bool, i/u integers, f floats), or a
    FileFormatError naming ``name`` in ``source``."""
    array = np.asarray(array)
    if array.dtype.kind not in kinds:
        expected = {"biuf": "numbers", "iu": "integers", "f": "floating-point numbers",
                    "biu": "integers", "fiu": "numbers"}.get(kinds, f"dtype kinds {kinds}")
        raise FileFormatError(
            f"{source}: {name} holds {array.dtype} data ({_kind_name(array.dtype)}); expected "
            f"{expected}.")
    return array


def _kind_name(dtype: np.dtype) -> str:
    return {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers",
            "V": "raw records", "M": "dates", "m": "time spans", "T": "text"}.get(
        dtype.kind, dtype.kind)


def json_text(value, source: str, name: str, expect: "type | tuple" = (dict, list)):
    """Parse an attribute or array holding JSON text; it must decode to ``expect``."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise FileFormatError(f"{source}: {name} must be one JSON text; got an array of "
                                  f"shape {value.shape}.")
        value = value.item()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FileFormatError(f"{source}: {name} is not UTF-8 text.") from None
    if not isinstance(value, str):
        raise FileFormatError(f"{source}: {name} must be JSON text; got {type(value).__name__}.")
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(f"{source}: {name} is not valid JSON "
                              f"({_describe(exc)}).") from None
    if not isinstance(parsed, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise FileFormatError(f"{source}: {name} must be a JSON {names.replace('dict', 'object')}"
                              f"; got {type(parsed).__name__}.")
    return parsed


def read_member(archive: zipfile.ZipFile, info: "zipfile.ZipInfo | str", source: str) -> bytes:
    """The bytes of one archive member, read in memory within the size limit (the CRC is
    checked by :mod:`zipfile`); a member larger than it declares is refused."""
    if isinstance(info, str):
        info = archive.getinfo(info)
    check_nbytes(info.file_size, source, f"archive member {info.filename!r}")
    with archive.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise FileFormatError(f"{source}: archive member {info.filename!r} holds {len(data)} "
                              f"bytes, not the {info.file_size} it declares.")
    return data


def _npy_header(fh, source: str, name: str):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, fortran, dtype


def read_npz(path, source: str, numbers_only: "set | None" = None) -> dict:
    """Every array of an ``.npz`` archive, read safely into a dict.

    Headers are read first: arrays of Python objects (pickles) are refused, and each array's
    declared size is checked against the read limit and against the member's size before its
    data is read. A bad CRC, a truncated member or a member that is not an ``.npy`` array is a
    FileFormatError naming the member.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise FileFormatError(f"{source}: not a readable .npz archive ({_describe(exc)}).") from None
    arrays = {}
    with archive:
        total = 0
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in arrays:
                raise FileFormatError(f"{source}: the archive holds array {name!r} twice.")
            total += info.file_size
            check_nbytes(total, source, "the archive's arrays together")
            check_nbytes(info.file_size, source, f"array {name!r}")
            try:
                with archive.open(info) as fh:
                    shape, fortran, dtype = _npy_header(fh, source, name)
                    if dtype.hasobject:
                        raise FileFormatError(
                            f"{source}: array {name!r} holds Python objects (a pickle); neurosim "
                            "reads arrays of numbers and text only.")
                    count = math.prod(shape)
                    nbytes = count * dtype.itemsize
                    check_nbytes(nbytes, source, f"array {name!r} (shape {shape}, {dtype})")
                    if nbytes > info.file_size:
                        raise FileFormatError(
                            f"{source}: array {name!r} declares shape {shape} of {dtype} "
                            f"({nbytes} bytes), more than its {info.file_size}-byte member holds.")
                    data = fh.read(nbytes)
                    if len(data) != nbytes:
                        raise FileFormatError(f"{source}: array {name!r} is truncated.")
                    fh.read()  # to the member's end: zipfile checks the CRC there
            except FileFormatError:
                raise
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, SyntaxError,
                    NotImplementedError, RuntimeError, tokenize.TokenError,
                    RecursionError) as exc:
                raise FileFormatError(
                    f"{source}: array {name!r} cannot be read ({_describe(exc)}).") from None
            array = np.frombuffer(data, dtype=dtype, count=count)
            array = array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)
            arrays[name] = array.copy()
    if numbers_only:
        for name in numbers_only & set(arrays):
            numeric(arrays[name], source, f"array {name!r}")
    return arrays


def read_dataset(obj, source: str, name: str, kinds: str = "biuf") -> np.ndarray:
    """An HDF5 dataset's values, after checking that it is a dataset of ``kinds`` whose
    declared size is within the read limit."""
    import h5py

    if not isinstance(obj, h5py.Dataset):
        raise FileFormatError(f"{source}: {name} must be a dataset; got {type(obj).__name__}.")
    dtype = obj.dtype
    if dtype.kind not in kinds:
        numeric(np.empty(0, dtype=dtype if dtype.kind != "O" else object), source, name, kinds)
    shape = obj.shape if obj.shape is not None else ()
    check_nbytes(math.prod(shape) * dtype.itemsize, source, f"{name} (shape {shape}, {dtype})")
    return np.asarray(obj[()])
