"""The reader contract (issue 12) for data files, IDX files, chip profiles and mapping files.

Each reader gets valid files of its kind (the session-scoped makers below), damaged by the fuzz
harness (tests/fuzzing.py: byte-level damage, HDF5 / npz structure damage, and TOML text
damage defined here), and must answer with a valid object or one NeurosimError naming the
file. Targeted tests pin the cases issue 12 names: pickles and bad CRCs in npz archives,
headers declaring 298 GiB or 29 TiB, text and complex data, binary / unreadable / folder
profiles, non-JSON attributes and the checksums of mapping files.

A failing payload is kept in tests/data/fuzz/<kind>/ (``NEUROSIM_FUZZ_KEEP=1``) and replayed by
tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import os
import re
import shutil
import tracemalloc
import zipfile
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzing
from fuzzing import raises_naming as _raises_naming
import neurosim as ns
from neurosim.datasets import read_idx
from neurosim.errors import (
    FileFormatError,
    NeurosimError,
    ProfileError,
    ReadLimitError,
    ShapeError,
    ValidationError,
)
from neurosim.io.digest import DIGEST_ATTR, seal
from neurosim.mapping import DIGEST_VERSION, MAPPING_FORMAT_VERSION, Mapping

N_SAMPLES, N_FEATURES = 50, 64




# --- makers of valid files -------------------------------------------------------------------

def _npz_bytes(compressed: bool = False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _h5_bytes(tmp_path_factory, name: str, fill) -> bytes:
    path = tmp_path_factory.mktemp("makers") / name
    with h5py.File(path, "w") as f:
        fill(f)
    return path.read_bytes()


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    big = array.astype(array.dtype.newbyteorder(">"))
    head = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return head + big.tobytes()


def _samples():
    rng = np.random.default_rng(12)
    X = rng.random((N_SAMPLES, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, 10, N_SAMPLES).astype(np.int64)
    return X, y


@pytest.fixture(scope="session")
def data_npz_files() -> dict:
    X, y = _samples()
    return {"stored": _npz_bytes(X=X, y=y), "compressed": _npz_bytes(True, X=X, y=y),
            "float_targets": _npz_bytes(X=X.astype(np.float64), y=X[:, :2].astype(np.float64))}


@pytest.fixture(scope="session")
def data_h5_files(tmp_path_factory) -> dict:
    X, y = _samples()

    def plain(f):
        f.create_dataset("X", data=X)
        f.create_dataset("y", data=y)

    def chunked(f):
        f.create_dataset("X", data=X.reshape(N_SAMPLES, 1, 8, 8), chunks=(10, 1, 8, 8),
                         compression="gzip", fletcher32=True)
        f.create_dataset("y", data=y.astype(np.float64))
    return {"plain": _h5_bytes(tmp_path_factory, "plain.h5", plain),
            "chunked": _h5_bytes(tmp_path_factory, "chunked.h5", chunked)}


@pytest.fixture(scope="session")
def idx_files() -> dict:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (20, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 10, 20, dtype=np.uint8)
    return {"images.idx": _idx_bytes(images), "labels.idx": _idx_bytes(labels),
            "floats.idx": _idx_bytes(rng.random((6, 5)).astype(np.float32), 0x0D),
            "images.idx.gz": gzip.compress(_idx_bytes(images), mtime=0),
            "labels.idx.gz": gzip.compress(_idx_bytes(labels), mtime=0)}


def _builtin_profile_text(name: str) -> str:
    return (resources.files("neurosim.hw_profiles") / f"{name}.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def profile_texts() -> dict:
    return {name: _builtin_profile_text(name) for name in ("loihi2", "rram_crossbar")}


def _downgrade(path: Path, version: int = 2) -> None:
    """Make ``path`` look like a mapping file of an older version: no seal (no user block), no
    digest (its datasets keep their Fletcher-32 sums, which older versions did not forbid)."""
    plain = path.with_name(path.name + ".plain")
    with h5py.File(path, "r") as src, h5py.File(plain, "w") as dst:
        for key, value in src.attrs.items():
            if key != DIGEST_ATTR:
                dst.attrs[key] = value
        dst.attrs["format_version"] = version
        for name in src:
            src.copy(name, dst)
    plain.replace(path)


@pytest.fixture(scope="session")
def mapping_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mappings")
    out = {}
    cases = {"mlp_loihi2": (ns.load_digits_model(), "loihi2"),
             "cnn_loihi2": (ns.load_digits_conv_model(), "loihi2"),
             "cnn_crossbar": (ns.load_digits_conv_model(), "rram_crossbar"),
             "small_loihi2": (ns.Network.random([8, 6, 3]), "loihi2")}
    for name, (net, profile) in cases.items():
        path = folder / f"{name}.h5"
        ns.map_network(net, profile).save(path)
        out[name] = path.read_bytes()
    # Old-version files carry no digest, so damage reaches the checks behind it.
    for name in ("cnn_loihi2", "cnn_crossbar", "small_loihi2"):
        path = folder / f"{name}_v2.h5"
        path.write_bytes(out[name])
        _downgrade(path)
        out[f"{name}_v2"] = path.read_bytes()
    return out


# --- what a valid answer is -----------------------------------------------------------------

def check_data(obj) -> None:
    X, y = obj
    assert isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.ndim in (2, 4)
    assert X.shape[0] > 0 and X.size > 0 and np.isfinite(X).all()
    if y is not None:
        assert isinstance(y, np.ndarray) and y.ndim in (1, 2) and y.shape[0] == X.shape[0]
        assert y.dtype in (np.int64, np.float64)
        assert np.isfinite(y).all()


def check_idx(obj) -> None:
    assert isinstance(obj, np.ndarray) and obj.dtype.kind in "iuf"
    assert obj.dtype.isnative and obj.size == math.prod(obj.shape)


_TINY_NET = ns.Network.random([5, 4, 3], seed=1)


def check_profile(obj) -> None:
    assert isinstance(obj, ns.HardwareProfile)
    assert obj.usable_cores_per_chip >= 1
    json.dumps(obj.summary())
    try:
        mapping = ns.map_network(_TINY_NET, obj)
    except ns.errors.MappingError:
        return
    mapping.to_dict()


def check_mapping(obj) -> None:
    assert isinstance(obj, Mapping)
    obj.to_dict()
    obj.table()
    net = obj.quantized_network()
    out = net.forward(np.zeros((2, net.n_inputs), dtype=np.float32))
    assert out.shape == (2, net.widths[-1])


# --- TOML text damage --------------------------------------------------------------------------

_VALUE_LINE = re.compile(r'^(\s*"?[\w.]+"?\s*=\s*)(.+)$')
_JUNK_VALUES = ['"text"', '""', "99999999999999999999999", "-9223372036854775809", "1e999",
                "-5", "-1.0", "0", "nan", "inf", "-inf", "true", "[1, 2]", "{a = 1}", "1.5",
                "2.5e-3", "[" * 500 + "]" * 500, '"""multi\nline"""', "1979-05-27"]


@st.composite
def toml_mutations(draw, text: str, max_ops: int = 3) -> bytes:
    """``text`` after 1..max_ops structure-aware damages: a line deleted, duplicated (a key
    given twice), moved to another table, or a value replaced by the wrong type, a huge or
    negative number, nan or a deeply nested array."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, max_ops))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "move", "value", "value", "value",
                                   "table"]))
        if op == "delete":
            del lines[at]
        elif op == "duplicate":
            lines.insert(at, lines[at])
        elif op == "move":
            lines.insert(draw(st.integers(0, len(lines))), lines.pop(at))
        elif op == "table":
            lines.insert(at, draw(st.sampled_from(["[fault_rates]", "[sources]", "[x]",
                                                   "[[fault_rates]]", "[confidence.y]"])))
        else:
            match = _VALUE_LINE.match(lines[at])
            if match:
                lines[at] = match.group(1) + draw(st.sampled_from(_JUNK_VALUES))
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- fuzz tests -------------------------------------------------------------------------------

def _pick(data, files: dict) -> "tuple[str, bytes]":
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    return name, files[name]


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_data_npz(data_npz_files, data):
    _, valid = _pick(data, data_npz_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.npz_mutations(valid)),
                        label="payload")
    fuzzing.fuzz_case("data_npz", ns.load_data, payload, ".npz", check_data)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_data_h5(data_h5_files, data):
    _, valid = _pick(data, data_h5_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.h5_mutations(valid)),
                        label="payload")
    fuzzing.fuzz_case("data_h5", ns.load_data, payload, ".h5", check_data)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_idx(idx_files, data):
    name, valid = _pick(data, idx_files)
    payload = data.draw(fuzzing.byte_mutations(valid), label="payload")
    if name.endswith(".gz") and data.draw(st.booleans(), label="damage inside the gzip"):
        # Damage the IDX content itself and compress it again: the header, not gzip, is wrong.
        payload = gzip.compress(data.draw(fuzzing.byte_mutations(gzip.decompress(valid))),
                                mtime=0)
    fuzzing.fuzz_case("idx", read_idx, payload, ".idx.gz" if name.endswith(".gz") else ".idx",
                      check_idx)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_profile(profile_texts, data):
    _, text = _pick(data, profile_texts)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(text.encode("utf-8")),
                                  toml_mutations(text)), label="payload")
    fuzzing.fuzz_case("profile", ns.load_profile, payload, ".toml", check_profile)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_mapping(mapping_files, data):
    _, valid = _pick(data, mapping_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.h5_mutations(valid)),
                        label="payload")
    fuzzing.fuzz_case("mapping", ns.load_mapping, payload, ".h5", check_mapping)


# --- the valid files read -------------------------------------------------------------------

def test_the_valid_files_read(tmp_path, data_npz_files, data_h5_files, idx_files, profile_texts,
                              mapping_files):
    """The makers' files are valid: the fuzz tests start from files the readers accept."""
    for files, suffix, read, check in [
            (data_npz_files, ".npz", ns.load_data, check_data),
            (data_h5_files, ".h5", ns.load_data, check_data),
            (mapping_files, ".h5", ns.load_mapping, check_mapping)]:
        for name, payload in files.items():
            assert not isinstance(fuzzing.run_reader(read, payload, suffix, check), str), name
    for name, payload in idx_files.items():
        suffix = ".idx.gz" if name.endswith(".gz") else ".idx"
        assert not isinstance(fuzzing.run_reader(read_idx, payload, suffix, check_idx), str), name
    for name, text in profile_texts.items():
        profile = fuzzing.run_reader(ns.load_profile, text.encode(), ".toml", check_profile)
        assert profile == ns.load_profile(name)


# --- data files: targeted -----------------------------------------------------------------------

def _write(tmp_path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def test_object_array_in_a_data_npz_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, dtype=int))
    with _raises_naming(path, FileFormatError, match="Python objects"):
        ns.load_data(path)


def test_object_labels_in_a_data_npz_are_refused(tmp_path):
    path = tmp_path / "objects_y.npz"
    np.savez(path, X=np.ones((2, 3)), y=np.array([1, "a"], dtype=object))
    with _raises_naming(path, FileFormatError, match="'y'.*Python objects"):
        ns.load_data(path)


def test_bad_crc_in_a_data_npz_is_refused(tmp_path):
    X, y = _samples()
    raw = bytearray(_npz_bytes(X=X, y=y))
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.getinfo("X.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x01  # in the data, past the .npy header
    path = _write(tmp_path, "badcrc.npz", bytes(raw))
    with _raises_naming(path, FileFormatError, match="'X'.*CRC"):
        ns.load_data(path)


def test_a_298_gib_header_in_a_data_npz_is_refused_before_reading(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("X.npy", fuzzing._npy_bytes(
            header="{'descr': '<f8', 'fortran_order': False, 'shape': (4000000000, 10), }"))
    path = _write(tmp_path, "huge.npz", buf.getvalue())
    with _raises_naming(path, ReadLimitError, match="298 GiB"):
        ns.load_data(path)


@pytest.mark.parametrize("name", ["X", "y"])
def test_a_29_tib_hdf5_dataset_is_refused_before_reading(tmp_path, name):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        shape = {"X": (4_000_000, 1_000_000), "y": (4_000_000_000_000,)}[name]
        f.create_dataset(name, shape=shape, dtype="f8", chunks=(1, 1024)[-len(shape):])
        if name == "y":
            f.create_dataset("X", data=np.ones((3, 2)))
    assert path.stat().st_size < 100_000
    with _raises_naming(path, ReadLimitError, match=r"'%s'.*29\.1 TiB" % name):
        ns.load_data(path)


def test_an_uncompressed_hdf5_dataset_larger_than_its_file_is_refused(tmp_path):
    """800 MB declared (under the read limit) in a file of a few KB: refused, not allocated."""
    path = tmp_path / "unwritten.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", shape=(100_000, 1000), dtype="f8", chunks=(100, 1000))
    with _raises_naming(path, FileFormatError, match="more than the file's"):
        ns.load_data(path)
    with h5py.File(path, "w") as f:  # compressed data may expand: read within the limit
        f.create_dataset("X", data=np.zeros((20_000, 100)), compression="gzip", shuffle=True,
                         fletcher32=True)
    assert path.stat().st_size < 20_000 * 100 * 8
    assert ns.load_data(path)[0].shape == (20_000, 100)


def test_a_damaged_chunk_index_is_refused_before_hdf5_crashes(tmp_path):
    """A chunk recorded as 0 bytes at an offset already taken: HDF5 2.0 reads it through the
    Fletcher-32 filter and crashes the process (found by fuzzing). Run in a child process, so
    a regression fails this test instead of ending the test run."""
    import subprocess
    import sys

    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.arange(50 * 64, dtype=np.float32).reshape(50, 64),
                         chunks=(10, 64), fletcher32=True)
        sizes = [f["X"].id.get_chunk_info(i).size for i in range(5)]
    raw = bytearray(path.read_bytes())
    # The B-tree key of chunk 1: its size, filter mask, then its position (10, 0, 0).
    key = sizes[1].to_bytes(4, "little") + bytes(4) + (10).to_bytes(8, "little")
    at = raw.find(key)
    assert at > 0 and raw.find(key, at + 1) < 0
    raw[at:at + len(key)] = bytes(len(key))  # 0 bytes, at position (0, 0): chunk 0's
    path.write_bytes(bytes(raw))
    child = subprocess.run(
        [sys.executable, "-c", "import sys, neurosim\n"
         "try:\n    neurosim.load_data(sys.argv[1])\n"
         "except neurosim.NeurosimError as exc:\n    print(exc)\n", str(path)],
        capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, f"the reader crashed ({child.returncode}): {child.stderr[-500:]}"
    assert str(path) in child.stdout and "chunk at" in child.stdout, child.stdout


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("bad", ["text", "complex", "bytes"])
@pytest.mark.parametrize("name", ["X", "y"])
def test_text_or_complex_samples_and_labels_are_refused(tmp_path, suffix, bad, name):
    value = {"text": np.array(["a", "b"]), "complex": np.array([1 + 2j, 3j]),
             "bytes": np.array([b"a", b"b"])}[bad]
    arrays = {"X": np.ones((2, 3)), "y": np.zeros(2, dtype=int), name: value}
    if name == "X":
        arrays["X"] = np.stack([value, value, value], axis=1)
    path = tmp_path / f"bad{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for key, array in arrays.items():
                if array.dtype.kind == "U":  # HDF5 stores text as variable-length strings
                    array = array.astype(object)
                    f.create_dataset(key, data=array, dtype=h5py.string_dtype())
                else:
                    f.create_dataset(key, data=array)
    with _raises_naming(path, ValidationError, match=f"'{name}'.*(real numbers|numeric)"):
        ns.load_data(path)


def test_variable_length_text_in_hdf5_is_refused(tmp_path):
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.array(["a", "bb"], dtype=object),
                         dtype=h5py.string_dtype())
    with _raises_naming(path, ValidationError, match="'X'.*real numbers"):
        ns.load_data(path)


def test_an_empty_hdf5_dataset_is_refused(tmp_path):
    path = tmp_path / "null.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=h5py.Empty("f8"))
    with _raises_naming(path, ShapeError, match="empty"):
        ns.load_data(path)


def test_samples_without_features_are_refused(tmp_path):
    path = tmp_path / "nofeatures.npz"
    np.savez(path, X=np.ones((4, 0)))
    with _raises_naming(path, ShapeError, match="no features"):
        ns.load_data(path)


def test_nan_samples_stay_a_clear_error(tmp_path):
    path = tmp_path / "nan.h5"
    X = np.ones((3, 2))
    X[2, 1] = np.nan
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)
    with _raises_naming(path, ValidationError, match=r"finite.*\(2, 1\)"):
        ns.load_data(path)


def test_labels_keep_their_meaning(tmp_path):
    """Integers are class labels, whole 1-D floats too; fractional floats are targets."""
    for y, dtype in [(np.array([0, 3], dtype=np.uint8), np.int64),
                     (np.array([1.0, 2.0]), np.int64),
                     (np.array([0.5, 2.0]), np.float64),
                     (np.array([[0.0], [1.0]]), np.float64),
                     (np.array([1e300, 0.0]), np.float64)]:
        path = tmp_path / "labels.npz"
        np.savez(path, X=np.ones((2, 3)), y=y)
        assert ns.load_data(path)[1].dtype == dtype


def test_a_data_file_that_cannot_be_opened_names_itself(tmp_path):
    path = _write(tmp_path, "garbage.h5", b"\x89HDF\r\n\x1a\n" + bytes(200))
    with _raises_naming(path, FileFormatError):
        ns.load_data(path)


# --- IDX files: targeted ---------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_an_idx_header_declaring_huge_dims_is_refused_before_allocating(tmp_path, compress):
    raw = bytes([0, 0, 0x0E, 3]) + b"".join(d.to_bytes(4, "big") for d in
                                            (60_000, 60_000, 60_000)) + bytes(64)
    name = "huge.idx" + (".gz" if compress else "")
    path = _write(tmp_path, name, gzip.compress(raw) if compress else raw)
    with _raises_naming(path, ReadLimitError, match="declares 1.53 PiB"):
        read_idx(path)


def test_an_idx_header_larger_than_the_file_is_refused_before_reading(tmp_path):
    raw = bytes([0, 0, 0x08, 2]) + (1 << 30).to_bytes(4, "big") + (2).to_bytes(4, "big")
    path = _write(tmp_path, "short.idx", raw + bytes(10))
    with _raises_naming(path, FileFormatError, match="holds 10 bytes"):
        read_idx(path)


def test_a_gzip_bomb_is_read_only_up_to_what_the_header_announces(tmp_path):
    """A .gz of 256 MiB of zeros behind a header announcing 100 bytes: refused, and memory
    stays near what the header announced."""
    path = tmp_path / "bomb.idx.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(bytes([0, 0, 0x08, 1]) + (100).to_bytes(4, "big"))
        chunk = bytes(1 << 20)
        for _ in range(256):
            fh.write(chunk)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with _raises_naming(path, FileFormatError, match="more"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read_idx held {peak} bytes"


def test_an_idx_folder_is_refused(tmp_path):
    folder = tmp_path / "images.idx"
    folder.mkdir()
    with _raises_naming(folder, FileFormatError, match="folder"):
        read_idx(folder)


# --- profiles: targeted -----------------------------------------------------------------------------

def test_a_binary_toml_is_one_profile_error(tmp_path):
    path = _write(tmp_path, "binary.toml", bytes(range(256)) * 4)
    with _raises_naming(path, ProfileError, match="not UTF-8"):
        ns.load_profile(path)


def test_a_toml_with_nul_bytes_is_one_profile_error(tmp_path):
    path = _write(tmp_path, "nul.toml", b'name = "x"\x00\x00\n')
    with _raises_naming(path, ProfileError, match="not valid TOML"):
        ns.load_profile(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_an_unreadable_toml_is_one_profile_error(tmp_path):
    path = _write(tmp_path, "secret.toml", _builtin_profile_text("loihi2").encode())
    path.chmod(0)
    try:
        with _raises_naming(path, ProfileError, match="cannot be read"):
            ns.load_profile(path)
    finally:
        path.chmod(0o600)


def test_a_toml_that_cannot_be_opened_is_one_profile_error(tmp_path, monkeypatch):
    """The permission error of the test above, for runs as root (who reads any file)."""
    import neurosim.hardware

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    path = _write(tmp_path, "denied.toml", _builtin_profile_text("loihi2").encode())
    monkeypatch.setattr(neurosim.hardware, "open", denied, raising=False)
    with _raises_naming(path, ProfileError, match=r"cannot be read \(Permission denied\)"):
        ns.load_profile(path)


@pytest.mark.parametrize("name", ["chip.toml", "chip"])
def test_a_folder_given_as_profile_is_one_profile_error(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    with _raises_naming(folder, ProfileError, match="folder"):
        ns.load_profile(folder)


def test_an_oversized_toml_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(_builtin_profile_text("loihi2") + "#" * (2 << 20))
    with _raises_naming(path, ProfileError, match="larger than"):
        ns.load_profile(path)


@pytest.mark.parametrize("line, match", [
    ('cores_per_chip = "many"', "cores_per_chip must be an integer"),
    ("cores_per_chip = 99999999999999999999999", "cores_per_chip must be a 64-bit integer"),
    ("neurons_per_core = -5", r"neurons_per_core must be >= 1"),
    ("weight_bits = nan", "weight_bits must be an integer"),
    ("max_fan_in = 1e999", "max_fan_in must be an integer"),
    ("neurons_per_core = [1, 2]", "neurons_per_core must be an integer"),
    ("a = " + "[" * 5000 + "]" * 5000, "not valid TOML"),
])
def test_wrong_value_types_are_one_profile_error(tmp_path, line, match):
    text = _builtin_profile_text("loihi2")
    key = line.split(" = ")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(key + " =")]
    lines.insert(2, line)
    path = _write(tmp_path, "typed.toml", "\n".join(lines).encode())
    with _raises_naming(path, ProfileError, match=match):
        ns.load_profile(path)


def test_a_source_that_is_not_text_is_one_profile_error(tmp_path):
    text = re.sub(r'^weight_bits = "Lava Dense.*$', "weight_bits = 8",
                  _builtin_profile_text("loihi2"), flags=re.MULTILINE)
    path = _write(tmp_path, "sources.toml", text.encode())
    with _raises_naming(path, ProfileError, match=r"\[sources\] weight_bits must be a string"):
        ns.load_profile(path)


# --- mapping files: checksums and targeted ------------------------------------------------------

@pytest.fixture
def mapping_path(tmp_path, mapping_files):
    return _write(tmp_path, "mapping.h5", mapping_files["cnn_loihi2"])


def test_mapping_files_carry_checksums(mapping_path):
    with h5py.File(mapping_path, "r") as f:
        assert f.attrs["format_version"] == MAPPING_FORMAT_VERSION == DIGEST_VERSION == 3
        assert isinstance(f.attrs[DIGEST_ATTR], str)
        assert f["cores"].fletcher32 and f["quantization/1/Q"].fletcher32
        assert f["core_utilization"].fletcher32 and f["core_blocks"].fletcher32


def test_a_flipped_byte_in_the_data_is_refused_naming_the_checksum(mapping_path):
    with h5py.File(mapping_path, "r") as f:
        offset = f["quantization/1/Q"].id.get_chunk_info(0).byte_offset
    raw = bytearray(mapping_path.read_bytes())
    raw[offset + 3] ^= 0x10
    mapping_path.write_bytes(bytes(raw))
    with _raises_naming(mapping_path, FileFormatError, match="checksum"):
        ns.load_mapping(mapping_path)


@pytest.mark.parametrize("change", ["root", "group", "dataset"])
def test_an_attribute_changed_after_saving_is_refused(mapping_path, change):
    with h5py.File(mapping_path, "r+") as f:
        if change == "root":
            profile = json.loads(f.attrs["profile"])
            profile["weight_bits"] = 16
            f.attrs["profile"] = json.dumps(profile)
        elif change == "group":
            f["quantization/1"].attrs["scale"] = 2.0 * f["quantization/1"].attrs["scale"]
        else:
            f["cores"][0, 1] = 1  # rewritten in place, with a fresh Fletcher-32 sum
    with _raises_naming(mapping_path, FileFormatError, match="bytes do not match"):
        ns.load_mapping(mapping_path)  # the seal
    seal(mapping_path)  # as if written so: the content digest still refuses it
    with _raises_naming(mapping_path, FileFormatError, match="does not match its checksum"):
        ns.load_mapping(mapping_path)


@pytest.mark.parametrize("attribute", [b"neurosim_format", b"profile"])
def test_a_damaged_attribute_type_is_refused_before_hdf5_crashes(tmp_path, mapping_files,
                                                                 attribute):
    """Text turned into a variable-length sequence by three damaged bytes (found by fuzzing):
    HDF5 crashes converting it, so every attribute's type is checked before the header or the
    digest reads it. In a child process, so a regression fails this test only."""
    import subprocess
    import sys

    plain = _write(tmp_path, "plain.h5", mapping_files["small_loihi2"])
    _downgrade(plain)  # unsealed: a sealed file is refused before HDF5 sees the damage
    raw = bytearray(plain.read_bytes())
    key = attribute + b"\x00"
    at = raw.find(key)
    vlen = raw.find(b"\x19\x01\x01\x00", at, at + 24)  # vlen text, UTF-8
    assert at > 0 and vlen > 0
    raw[vlen + 1:vlen + 4] = b"\x43\x54\x7c"
    path = _write(tmp_path, "vlen.h5", bytes(raw))
    child = subprocess.run(
        [sys.executable, "-c", "import sys, neurosim\n"
         "try:\n    neurosim.load_mapping(sys.argv[1])\n"
         "except neurosim.NeurosimError as exc:\n    print(exc)\n", str(path)],
        capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, f"the reader crashed ({child.returncode}): {child.stderr[-500:]}"
    assert str(path) in child.stdout and "variable-length" in child.stdout, child.stdout


def test_a_current_mapping_without_its_digest_is_refused(mapping_path):
    with h5py.File(mapping_path, "r+") as f:
        del f.attrs[DIGEST_ATTR]
    seal(mapping_path)
    with _raises_naming(mapping_path, FileFormatError, match="no checksum"):
        ns.load_mapping(mapping_path)


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_version_mapping_still_loads(tmp_path, version):
    net = ns.load_digits_conv_model() if version == 2 else ns.Network.random([8, 6, 3])
    mapping = ns.map_network(net, "loihi2")
    path = tmp_path / "old.h5"
    mapping.save(path)
    _downgrade(path, version)
    if version == 1:  # version 1 had no core counts or blocks
        with h5py.File(path, "r+") as f:
            del f["core_counts"], f["core_blocks"]
    loaded = ns.load_mapping(path)
    assert loaded.cores == mapping.cores
    assert loaded.network.equals(mapping.network)
    for a, b in zip(loaded.quantization, mapping.quantization):
        np.testing.assert_array_equal(a.Q, b.Q)


def test_an_old_version_mapping_written_without_checksums_loads(tmp_path):
    """A version 2 file as neurosim 0.2 wrote it: no Fletcher-32, no digest."""
    mapping = ns.map_network(ns.Network.random([8, 6, 3]), "rram_crossbar")
    path = tmp_path / "new.h5"
    mapping.save(path)
    old = tmp_path / "old.h5"
    with h5py.File(path, "r") as src, h5py.File(old, "w") as dst:
        for key, value in src.attrs.items():
            if key != DIGEST_ATTR:
                dst.attrs[key] = value
        dst.attrs["format_version"] = 2

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(obj.attrs)
            else:
                dst.create_dataset(name, data=obj[()]).attrs.update(obj.attrs)
        src.visititems(copy)
    with h5py.File(old, "r") as f:
        assert not f["cores"].fletcher32
    assert ns.load_mapping(old).cores == mapping.cores


@pytest.mark.parametrize("value, match", [
    ("{not json", "'profile' is not (valid )?JSON"),
    ("[1, 2]", "'profile' must be a JSON object"),
    (np.arange(3), "'profile' must be one JSON text"),
])
def test_a_non_json_attribute_in_a_mapping_is_refused(mapping_path, value, match):
    with h5py.File(mapping_path, "r+") as f:
        f.attrs["profile"] = value
    # A current file: the checksum refuses it first.
    with _raises_naming(mapping_path, FileFormatError, match="checksum"):
        ns.load_mapping(mapping_path)
    # An old-version file has no checksum: the attribute itself is refused.
    _downgrade(mapping_path)
    with _raises_naming(mapping_path, FileFormatError, match=match):
        ns.load_mapping(mapping_path)


@pytest.mark.parametrize("damage, match", [
    (lambda f: f["cores"].__setitem__((0, 4), 10 ** 6), "core 0 holds outputs"),
    (lambda f: f["cores"].__setitem__((1, 2), 9), "core 1 is on layer 9"),
    (lambda f: f["cores"].__setitem__((1, 0), 7), "core 1 has core_id 7"),
    (lambda f: f["core_blocks"].__setitem__((0, 1), 10 ** 6), "core 0 holds the block"),
    (lambda f: f["core_utilization"].__setitem__(0, np.nan), "NaN"),
    (lambda f: f["quantization/1/Q"].__setitem__((0, 0, 0, 0), 10 ** 6), "outside its range"),
    (lambda f: f["quantization/2"].attrs.__setitem__("sign_mode", "sideways"), "sign mode"),
    (lambda f: f["quantization/2"].attrs.__setitem__("scale", "1.5"), "'scale' must be a finite"),
    (lambda f: f["quantization"].__delitem__("3"), "no group 'quantization/3'"),
    (lambda f: f.__delitem__("cores"), "no dataset 'cores'"),
])
def test_inconsistent_old_version_mappings_are_refused(mapping_path, damage, match):
    _downgrade(mapping_path)
    with h5py.File(mapping_path, "r+") as f:
        damage(f)
    with _raises_naming(mapping_path, FileFormatError, match=match):
        ns.load_mapping(mapping_path)


def test_cores_that_leave_neurons_without_a_core_are_refused(tmp_path, mapping_files):
    path = _write(tmp_path, "gap.h5", mapping_files["small_loihi2"])
    _downgrade(path)
    with h5py.File(path, "r+") as f:
        rows = f["cores"][()]
        rows[0, 4] -= 1  # the first core of layer 1 drops its last neuron
        f["cores"][...] = rows
    with _raises_naming(path, FileFormatError, match="exactly once"):
        ns.load_mapping(path)


def test_a_mapping_folder_is_refused(tmp_path):
    folder = tmp_path / "mapping.h5"
    folder.mkdir()
    with _raises_naming(folder, FileFormatError, match="folder"):
        ns.load_mapping(folder)
