"""The fuzz harness shared by the reader tests (tests/test_fuzz_*.py).

Every file kind neurosim reads has here a *maker* (valid files of that kind, as bytes) and a
*reader* (the public function a user calls). A test mutates a valid file the way a damaged disk,
a truncated download or an attacker would, hands it to the reader, and accepts exactly two
outcomes (the reader contract, docs/reliability.md): a valid object, or a
:class:`neurosim.NeurosimError` that names the file, within a time limit. Anything else (a
traceback of another type, a hang, a crash) fails the test.

Mutations:

* byte level (:func:`byte_mutations`): bit flips, truncation, a range duplicated or moved, a
  range overwritten with random bytes, zeros or 0xFF;
* structure level (:func:`h5_mutations`, :func:`npz_mutations`): a dataset or attribute of an
  HDF5 file replaced by text, complex numbers, a huge declared shape, junk JSON or the wrong
  dimensions; an ``.npz`` member replaced by a pickle, text, a header declaring TiBs, or a bad
  CRC.

Settings: ``NEUROSIM_FUZZ_EXAMPLES`` examples per test (default 150, ``make fuzz`` runs 3000),
derandomized unless ``NEUROSIM_FUZZ_RANDOM=1`` (so ``make test`` is reproducible). A failing
file is saved to ``tests/data/fuzz/<kind>/`` by :func:`keep_failure` and then runs as a
regression case in every ``make test`` (tests/test_fuzz_regressions.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import neurosim as ns

EXAMPLES = int(os.environ.get("NEUROSIM_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("NEUROSIM_FUZZ_RANDOM", "") == "1"
#: A reader must answer within this many seconds, whatever the file.
TIME_LIMIT_S = float(os.environ.get("NEUROSIM_FUZZ_TIME_LIMIT", "20"))
CORPUS = Path(__file__).parent / "data" / "fuzz"

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM,
                suppress_health_check=list(HealthCheck), database=None if not RANDOM else
                settings.default.database, print_blob=True)


class Hang(BaseException):
    """The reader did not answer within the time limit. A BaseException, so that no reader's
    ``except Exception`` (the reader contract's own, in :func:`neurosim.io.guard.reading`)
    turns a hang into an ordinary refusal."""


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT_S):
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (main thread, POSIX)."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover
        yield
        return

    def expire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- byte-level mutations -------------------------------------------------------------------

@st.composite
def byte_mutations(draw, data: bytes, max_ops: int = 4) -> bytes:
    """``data`` after 1..max_ops random byte-level damages."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(buf)
        op = draw(st.sampled_from(["flip", "flip", "truncate", "duplicate", "move",
                                   "random", "zeros", "ones"]))
        if n == 0:
            break
        at = draw(st.integers(0, n - 1))
        length = draw(st.integers(1, max(1, min(n - at, draw(st.sampled_from([1, 8, 64, 512,
                                                                              4096]))))))
        if op == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del buf[at:]
        elif op == "duplicate":
            buf[at:at] = buf[at:at + length]
        elif op == "move":
            dest = draw(st.integers(0, n - 1))
            chunk = bytes(buf[at:at + length])
            buf[dest:dest + len(chunk)] = chunk
        elif op == "random":
            buf[at:at + length] = draw(st.binary(min_size=length, max_size=length))
        elif op == "zeros":
            buf[at:at + length] = bytes(length)
        else:
            buf[at:at + length] = b"\xff" * length
    return bytes(buf)


# --- structure-level mutations ---------------------------------------------------------------

def _junk_values():
    """Values a damaged or hostile file may hold where neurosim expects something else."""
    return st.sampled_from([
        "text", "complex", "huge", "scalar", "empty", "nan", "inf", "wrong_dims", "bytes",
        "not_json", "json_number", "json_list", "json_deep", "negative", "bool", "vlen",
    ])


def _h5_value(kind: str, like: "np.ndarray | None"):
    """What to write for a junk ``kind`` (``None``: a special dataset made by the caller)."""
    shape = like.shape if like is not None else (3,)
    return {
        "text": np.array("not a number", dtype=object),
        "complex": np.ones(shape, dtype=np.complex128),
        "scalar": np.float64(1.5),
        "empty": np.zeros((0,), dtype=np.float64),
        "nan": np.full(shape, np.nan),
        "inf": np.full(shape, np.inf),
        "wrong_dims": np.ones(shape + (2,)),
        "bytes": np.frombuffer(b"\x00\xff" * 8, dtype=np.uint8),
        "not_json": "{not json",
        "json_number": "12",
        "json_list": "[1, 2, 3]",
        "json_deep": "[" * 100000 + "]" * 100000,
        "negative": np.full(shape, -(2 ** 62), dtype=np.int64),
        "bool": np.ones(shape, dtype=bool),
    }.get(kind)


@st.composite
def h5_mutations(draw, data: bytes, max_ops: int = 2) -> bytes:
    """``data`` (an HDF5 file) with datasets or attributes replaced by junk."""
    import h5py

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.h5"
        path.write_bytes(data)
        with h5py.File(path, "r+") as f:
            objects = []
            f.visititems(lambda name, obj: objects.append(name))
            targets = [("attr", "/", key) for key in f.attrs]
            for name in objects:
                obj = f[name]
                targets += [("attr", name, key) for key in obj.attrs]
                if isinstance(obj, h5py.Dataset):
                    targets.append(("dataset", name, None))
                if isinstance(obj, h5py.Group):
                    targets.append(("group", name, None))
            for _ in range(draw(st.integers(1, max_ops))):
                if not targets:
                    break
                what, name, key = draw(st.sampled_from(targets))
                junk = draw(_junk_values())
                if what == "group":
                    if draw(st.booleans()) and name in f:
                        del f[name]
                    continue
                if what == "attr":
                    if name not in f and name != "/":
                        continue
                    obj = f[name]
                    if key not in obj.attrs:
                        continue
                    if junk == "huge" or junk == "vlen":
                        del obj.attrs[key]  # a missing attribute
                        continue
                    value = _h5_value(junk, None)
                    obj.attrs[key] = value
                    continue
                if name not in f:
                    continue
                old = f[name]
                like = old[()] if old.size < 10_000 else None
                del f[name]
                if junk == "huge":  # declared, never written: the file stays small
                    f.create_dataset(name, shape=(1 << 20, 1 << 20), dtype="f8",
                                     chunks=(1, 1 << 10))
                elif junk == "vlen":
                    f.create_dataset(name, data=np.array([np.arange(3.0), np.arange(2.0)],
                                                          dtype=object),
                                     dtype=h5py.vlen_dtype(np.float64))
                else:
                    value = _h5_value(junk, np.asarray(like) if like is not None else None)
                    f.create_dataset(name, data=value)
        return path.read_bytes()


def _npy_bytes(array=None, header: "str | None" = None) -> bytes:
    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, array, allow_pickle=True)
        return buf.getvalue()
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + b"\x00" * 64


@st.composite
def npz_mutations(draw, data: bytes, max_ops: int = 2) -> bytes:
    """``data`` (an ``.npz`` archive) with members replaced by hostile arrays."""
    src = zipfile.ZipFile(io.BytesIO(data))
    members = {info.filename: src.read(info) for info in src.infolist()}
    names = sorted(members)
    bad_crc = set()
    for _ in range(draw(st.integers(1, max_ops))):
        name = draw(st.sampled_from(names))
        kind = draw(st.sampled_from(["pickle", "text", "huge", "huge_fortran", "complex", "scalar",
                                     "bad_crc", "not_npy", "drop", "empty", "nan", "wrong_dims"]))
        if kind == "pickle":
            members[name] = _npy_bytes(np.array([{"a": 1}, None], dtype=object))
        elif kind == "text":
            members[name] = _npy_bytes(np.array(["x" * 10]))
        elif kind == "huge":
            members[name] = _npy_bytes(header="{'descr': '<f8', 'fortran_order': False, "
                                              "'shape': (4000000000, 10000), }")
        elif kind == "huge_fortran":
            members[name] = _npy_bytes(header="{'descr': '<f8', 'fortran_order': True, "
                                              "'shape': (10000000000000,), }")
        elif kind == "complex":
            members[name] = _npy_bytes(np.ones(4, dtype=np.complex64))
        elif kind == "scalar":
            members[name] = _npy_bytes(np.float64(2.0))
        elif kind == "bad_crc":
            bad_crc.add(name)
        elif kind == "not_npy":
            members[name] = b"this is not an npy array"
        elif kind == "drop" and len(members) > 1:
            members.pop(name)
            names = sorted(members)
        elif kind == "empty":
            members[name] = _npy_bytes(np.zeros((0,)))
        elif kind == "nan":
            members[name] = _npy_bytes(np.full((2, 2), np.nan))
        elif kind == "wrong_dims":
            members[name] = _npy_bytes(np.ones((2, 2, 2)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, payload in members.items():
            dst.writestr(name, payload)
    raw = bytearray(out.getvalue())
    for name in bad_crc & set(members):
        # Flip one byte of the member's compressed data; the CRC then does not match.
        with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
            info = z.getinfo(name)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        if info.compress_size:
            raw[start + info.compress_size // 2] ^= 0x01
    return bytes(raw)


# --- running a reader under the contract ------------------------------------------------------

def run_reader(read, payload: bytes, suffix: str, check=None):
    """Write ``payload`` to a file named ``*suffix``, read it with ``read(path)`` within the
    time limit, and return ``"refused"`` or the object read (after ``check(obj)``).

    A NeurosimError must name the file. Any other exception propagates and fails the test.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(payload)
        try:
            with time_limit():
                obj = read(path)
        except ns.NeurosimError as exc:
            assert str(path) in str(exc) or path.name in str(exc), (
                f"the error does not name the file: {exc}")
            assert "\n" not in str(exc).strip() or len(str(exc)) < 2000, "not one clear message"
            return "refused"
        if check is not None:
            check(obj)
        return obj


def raises_naming(path, error=ns.NeurosimError, match: "str | None" = None):
    """``pytest.raises`` that also checks the message names ``path`` and is one line."""
    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(error, match=match)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._ctx.__exit__(*exc)
            message = str(self.info.value)
            assert str(path) in message, message
            assert "\n" not in message.strip(), message
            return handled
    return _Check()


def keep_failure(kind: str, payload: bytes, suffix: str) -> Path:
    """Save a payload that broke a reader as a regression case of ``kind``."""
    folder = CORPUS / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(payload).hexdigest()[:16] + suffix)
    path.write_bytes(payload)
    return path


def fuzz_case(kind: str, read, payload: bytes, suffix: str, check=None):
    """:func:`run_reader`, saving the payload as a regression case when it fails."""
    try:
        return run_reader(read, payload, suffix, check)
    except BaseException:
        if os.environ.get("NEUROSIM_FUZZ_KEEP", "") == "1":
            keep_failure(kind, payload, suffix)
        raise
