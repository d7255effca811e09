"""The reader contract (issue 12) for every network reader: ``ns.load_network`` on neurosim's
``.npz`` and ``.h5``, Keras 2 ``.h5`` and Keras 3 ``.keras``, a PyTorch state_dict and a
TorchScript ``.pt``, and ``.onnx``.

Each reader gets valid files of its kind (the session-scoped makers below; the Keras, PyTorch
and ONNX files are written by the real libraries), damaged by the fuzz harness
(tests/fuzzing.py: byte-level damage, HDF5 and zip-member structure damage) and by the
format-aware damage defined here (a member of a zip archive damaged and the archive rebuilt
with valid CRCs, so the damage reaches the reader rather than zipfile; JSON values of a Keras
configuration replaced by junk; ONNX protobufs with wrong dims, types, attributes and
wiring). A reader must answer with a valid Network or one NeurosimError naming the file,
within the time limit. Targeted tests pin the cases issue 12 names: headers declaring 298 GiB
or 29 TiB, pickles and bad CRCs in npz archives, text and complex weights, JSON attributes
that are not JSON, decompression bombs in .keras archives, oversized members of .pt archives,
the checksums of neurosim's own .h5 files.

A failing payload is kept in tests/data/fuzz/<kind>/ (``NEUROSIM_FUZZ_KEEP=1``) and replayed by
tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"  # as tests/test_io_keras.py: keras 3 on PyTorch

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_kinds  # noqa: E402
import fuzzing  # noqa: E402
from fuzzing import raises_naming as _raises_naming  # noqa: E402
import neurosim as ns  # noqa: E402
from neurosim.errors import (  # noqa: E402
    FileFormatError,
    NeurosimError,
    ReadLimitError,
    UnsupportedLayerError,
    ValidationError,
)
from neurosim.io import digest  # noqa: E402
from neurosim.io.digest import DIGEST_ATTR  # noqa: E402
from neurosim.io.hdf5 import write_network_group  # noqa: E402
from neurosim.layers import Conv2d, Dense, GlobalAvgPool2d, MaxPool2d  # noqa: E402

# Keras' torch backend trips a NumPy 2 deprecation inside keras itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

KEEP = os.environ.get("NEUROSIM_FUZZ_KEEP", "") == "1"




# --- makers of valid files -------------------------------------------------------------------

def _saved(tmp_path_factory, name: str, save) -> bytes:
    path = tmp_path_factory.mktemp("makers") / name
    save(path)
    return path.read_bytes()


def _small_cnn() -> ns.Network:
    rng = np.random.default_rng(4)
    return ns.Network([
        Conv2d.build(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), (2, 6, 6), padding=1,
                     activation="relu"),
        MaxPool2d(2),
        Conv2d.build(rng.normal(size=(4, 3, 2, 2)), rng.normal(size=4), (3, 3, 3),
                     activation="tanh"),
        GlobalAvgPool2d(keepdims=False),
        Dense(rng.normal(size=(3, 4)), rng.normal(size=3)),
    ])


def _networks() -> dict:
    return {"mlp": ns.load_digits_model(), "cnn": ns.load_digits_conv_model(),
            "small_mlp": ns.Network.random([6, 5, 4, 3], "leaky_relu", seed=2),
            "small_cnn": _small_cnn()}


def _save_old(net: ns.Network, path: Path, version: int = 2) -> None:
    """``net`` as a network file of an older version: no seal, no digest (so that damage
    reaches the checks behind the checksums)."""
    with h5py.File(path, "w") as f:
        f.attrs["neurosim_format"] = "network"
        f.attrs["format_version"] = version
        write_network_group(f, net)


def _reseal(path: Path) -> None:
    """Seal ``path`` again after a change: a file written with the damage, as a buggy or
    hostile writer would, so that the checks behind the seal see it."""
    if path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n":
        digest.seal(path)


def _resealed(payload: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.h5"
        path.write_bytes(payload)
        try:
            _reseal(path)
        except ValueError:  # the damage took the user block: nothing to seal
            pass
        return path.read_bytes()


@pytest.fixture(scope="session")
def network_npz_files(tmp_path_factory) -> dict:
    return {name: _saved(tmp_path_factory, f"{name}.npz", lambda p, n=net: ns.save_network(n, p))
            for name, net in _networks().items()}


@pytest.fixture(scope="session")
def network_h5_files(tmp_path_factory) -> dict:
    out = {name: _saved(tmp_path_factory, f"{name}.h5", lambda p, n=net: ns.save_network(n, p))
           for name, net in _networks().items()}
    for name in ("cnn", "small_mlp", "small_cnn"):
        out[f"{name}_v2"] = _saved(tmp_path_factory, f"{name}_v2.h5",
                                   lambda p, n=_networks()[name]: _save_old(n, p))
    return out


def _keras():
    pytest.importorskip("torch")
    return pytest.importorskip("keras")


def _keras_models(keras) -> dict:
    layers = keras.layers
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((6,)), layers.Dense(5, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(4, activation="tanh"),
                              layers.Dense(3)], name="dense")
    conv = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3, padding="same"),
                             layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2),
                             layers.Conv2D(4, 2, activation="relu"), layers.Flatten(),
                             layers.Dense(3)], name="conv")
    for model in (dense, conv):  # non-zero biases and statistics, so that a mix-up shows
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(np.linspace(-0.5, 0.5, layer.bias.shape[0]).astype("float32"))
    return {"dense": dense, "conv": conv}


def _keras_files(tmp_path_factory, suffix: str) -> dict:
    keras = _keras()
    out = {}
    for name, model in _keras_models(keras).items():
        def save(path, model=model):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.save(path)
        out[name] = _saved(tmp_path_factory, f"{name}{suffix}", save)
    return out


@pytest.fixture(scope="session")
def keras_h5_files(tmp_path_factory) -> dict:
    return _keras_files(tmp_path_factory, ".h5")


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory) -> dict:
    return _keras_files(tmp_path_factory, ".keras")


def _torch_mlp():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    assert fuzz_kinds.TORCH_ACTIVATIONS == ["relu", "identity"]
    return torch, torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(),
                                      torch.nn.Linear(5, 3))


@pytest.fixture(scope="session")
def torch_state_files(tmp_path_factory) -> dict:
    torch, model = _torch_mlp()
    return {"mlp": _saved(tmp_path_factory, "mlp.pt",
                          lambda p: torch.save(model.state_dict(), p))}


@pytest.fixture(scope="session")
def torchscript_files(tmp_path_factory) -> dict:
    torch, model = _torch_mlp()
    nn = torch.nn
    torch.manual_seed(1)
    bn = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.1),
                       nn.Linear(5, 3)).eval()
    with torch.no_grad():
        bn[1].running_mean.uniform_(-0.5, 0.5)
        bn[1].running_var.uniform_(0.5, 2.0)
    return {name: _saved(tmp_path_factory, f"{name}.pt",
                         lambda p, m=m: torch.jit.save(torch.jit.script(m.eval()), str(p)))
            for name, m in (("mlp", model), ("batchnorm", bn))}


def _onnx_export(torch, model, shape, path) -> None:
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(*shape),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "batch"}})


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory) -> dict:
    torch, mlp = _torch_mlp()
    nn = torch.nn
    cnn = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 2), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(16, 3))
    return {"mlp": _saved(tmp_path_factory, "mlp.onnx",
                          lambda p: _onnx_export(torch, mlp, (1, 6), p)),
            "cnn": _saved(tmp_path_factory, "cnn.onnx",
                          lambda p: _onnx_export(torch, cnn, (1, 2, 6, 6), p))}


# --- what a valid answer is -----------------------------------------------------------------

def check_network(net) -> None:
    """A valid network: finite weights, and (when it is small enough to run here) a forward
    pass of the right shape."""
    assert isinstance(net, ns.Network)
    assert net.layers and net.activations[-1].name == "identity"
    for layer in net.layers:
        for array in layer.arrays().values():
            assert array.dtype in (np.float32, np.float64) and np.isfinite(array).all()
    if sum(net.widths) <= 200_000:
        with np.errstate(all="ignore"):
            out = net.forward(np.zeros((2, net.n_inputs), dtype=net.dtype))
        assert out.shape == (2, net.widths[-1])


def _fuzz(kind: str, payload: bytes) -> None:
    """One fuzz case of ``kind`` (its suffix and reader from tests/fuzz_kinds.py). Slow is a
    failure too: a hang that some reader turned into an error still took the time limit."""
    suffix, read = fuzz_kinds.KINDS[kind]

    def read_printable(path):
        try:
            return read(path)
        except NeurosimError as exc:  # the message must survive being printed or logged
            str(exc).encode("utf-8")
            raise

    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a dropped softmax, numerical noise: not the point
        fuzzing.fuzz_case(kind, read_printable, payload, suffix, check_network)
    elapsed = time.monotonic() - start
    if elapsed > 0.75 * fuzzing.TIME_LIMIT_S:
        if KEEP:
            fuzzing.keep_failure(kind, payload, suffix)
        pytest.fail(f"the {kind} reader took {elapsed:.1f} s on a damaged file")


# --- format-aware damage -------------------------------------------------------------------------

def _rezip(members: list, out_of: "zipfile.ZipFile") -> bytes:
    """The members ``(ZipInfo, bytes)`` as a new archive (valid CRCs, the same names and
    compression)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info, payload in members:
            new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            new.compress_type = info.compress_type
            new.external_attr = info.external_attr
            dst.writestr(new, payload)
    return out.getvalue()


@st.composite
def member_mutations(draw, data: bytes, inner=None) -> bytes:
    """``data`` (a zip archive) with one member damaged inside and the archive rebuilt, so
    that zipfile's CRC check passes and the damage reaches the reader. ``inner(name, bytes)``
    may give a format-aware strategy for a member (None: byte damage)."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
        index = draw(st.integers(0, len(members) - 1))
        info, payload = members[index]
        strategy = inner(info.filename, payload) if inner is not None else None
        if strategy is None:
            strategy = fuzzing.byte_mutations(payload)
        members[index] = (info, draw(strategy))
        return _rezip(members, src)


_JSON_JUNK = [None, "", "x", "relu", "same", "channels_first", "Functional", -1, 0, 1, 7,
              10 ** 12, 2 ** 63, 1.5, -0.5, float("inf"), True, [], {}, [1, 2, 3],
              [None, 0], [[1, 2], [3, 4]], {"a": 1}, {"class_name": "Dense"},
              [[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]


@st.composite
def json_mutations(draw, text: bytes, max_ops: int = 3) -> bytes:
    """JSON ``text`` with 1..max_ops values (anywhere in the tree) replaced by junk of
    another type or size, or removed."""
    tree = json.loads(text)
    for _ in range(draw(st.integers(1, max_ops))):
        slots = []

        def visit(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    slots.append((node, key))
                    visit(value)
            elif isinstance(node, list):
                for index, value in enumerate(node):
                    slots.append((node, index))
                    visit(value)

        visit(tree)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        if isinstance(container, dict) and draw(st.integers(0, 4)) == 0:
            del container[key]
        else:
            container[key] = copy.deepcopy(draw(st.sampled_from(_JSON_JUNK)))  # never shared
    return json.dumps(tree).encode("utf-8")


def _keras_member(name: str, payload: bytes):
    if name.endswith(".json"):
        return st.one_of(json_mutations(payload), fuzzing.byte_mutations(payload))
    if name.endswith(".h5"):
        return st.one_of(fuzzing.h5_mutations(payload), fuzzing.byte_mutations(payload))
    return None


def _npz_member(name: str, payload: bytes):
    if payload[:6] == b"\x93NUMPY":
        # Damage in the .npy header (shape, dtype, order) more often than in the data.
        header = min(len(payload), 10 + int.from_bytes(payload[8:10], "little"))
        return st.one_of(fuzzing.byte_mutations(payload),
                         fuzzing.byte_mutations(payload[:header]).map(
                             lambda h, rest=payload[header:]: h + rest))
    return None


_ONNX_OPS = ["Relu", "Gemm", "MatMul", "Conv", "MaxPool", "Flatten", "Reshape", "Add",
             "Identity", "Softmax", "Loop", "ConstantOfShape", "Range", "Tile", "Expand",
             "Concat", "If", "Unknown"]
_ONNX_INTS = [-(2 ** 62), -1, 0, 1, 2, 3, 1000, 2 ** 31, 2 ** 62]


@st.composite
def onnx_mutations(draw, data: bytes, max_ops: int = 3) -> bytes:
    """An ONNX model with 1..max_ops structural damages: an initializer's dims, type or data;
    a node's op type, attribute, inputs or outputs; the graph input's shape; a node removed,
    duplicated or moved."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    names = ([i.name for i in graph.initializer] + [i.name for i in graph.input]
             + [o for n in graph.node for o in n.output] + ["", "missing"])
    for _ in range(draw(st.integers(1, max_ops))):
        what = draw(st.sampled_from(["dims", "dtype", "data", "op", "attr", "wire", "input",
                                     "drop", "duplicate", "move"]))
        nodes, inits = graph.node, graph.initializer
        if what in ("dims", "dtype", "data") and len(inits):
            init = inits[draw(st.integers(0, len(inits) - 1))]
            if what == "dims":
                dims = list(init.dims)
                if dims and draw(st.booleans()):
                    dims[draw(st.integers(0, len(dims) - 1))] = draw(st.sampled_from(_ONNX_INTS))
                else:
                    dims.append(draw(st.sampled_from([1, 2, 10 ** 6])))
                del init.dims[:]
                init.dims.extend(dims)
            elif what == "dtype":
                init.data_type = draw(st.integers(0, 25))
            else:
                raw = init.raw_data
                init.raw_data = raw[:draw(st.integers(0, len(raw)))] if raw else b"\x00" * 7
        elif what == "op" and len(nodes):
            nodes[draw(st.integers(0, len(nodes) - 1))].op_type = draw(st.sampled_from(_ONNX_OPS))
        elif what == "attr" and len(nodes):
            node = nodes[draw(st.integers(0, len(nodes) - 1))]
            ints = [a for a in node.attribute if a.type in (onnx.AttributeProto.INT,
                                                              onnx.AttributeProto.INTS)]
            if ints:
                attr = draw(st.sampled_from(ints))
                if attr.type == onnx.AttributeProto.INT:
                    attr.i = draw(st.sampled_from(_ONNX_INTS))
                elif len(attr.ints):
                    attr.ints[draw(st.integers(0, len(attr.ints) - 1))] = draw(
                        st.sampled_from(_ONNX_INTS))
            else:
                node.attribute.append(onnx.helper.make_attribute(
                    draw(st.sampled_from(["axis", "group", "strides", "pads", "kernel_shape"])),
                    draw(st.sampled_from([0, 5, [1, 1], [0, 0, 0, 0], [2 ** 40, 1]]))))
        elif what == "wire" and len(nodes):
            node = nodes[draw(st.integers(0, len(nodes) - 1))]
            slots = list(node.input) + list(node.output)
            if slots:
                at = draw(st.integers(0, len(slots) - 1))
                target = node.input if at < len(node.input) else node.output
                target[at if at < len(node.input) else at - len(node.input)] = draw(
                    st.sampled_from(names))
        elif what == "input" and len(graph.input):
            dims = graph.input[0].type.tensor_type.shape.dim
            if len(dims):
                dim = dims[draw(st.integers(0, len(dims) - 1))]
                value = draw(st.sampled_from(_ONNX_INTS + ["N"]))
                if isinstance(value, str):
                    dim.dim_param = value
                else:
                    dim.dim_value = value
        elif what in ("drop", "duplicate", "move") and len(nodes):
            at = draw(st.integers(0, len(nodes) - 1))
            node = onnx.NodeProto()
            node.CopyFrom(nodes[at])
            if what != "duplicate":
                del nodes[at]
            if what != "drop":
                nodes.insert(draw(st.integers(0, len(nodes))), node)
    try:
        return model.SerializeToString()
    except Exception:  # noqa: BLE001 - protobuf refuses some values (out of range)
        return data


def _pick(data, files: dict) -> bytes:
    return files[data.draw(st.sampled_from(sorted(files)), label="file")]


# --- fuzz tests -------------------------------------------------------------------------------

@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_network_npz(network_npz_files, data):
    valid = _pick(data, network_npz_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.npz_mutations(valid),
                                  member_mutations(valid, _npz_member)), label="payload")
    _fuzz("network_npz", payload)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_network_h5(network_h5_files, data):
    valid = _pick(data, network_h5_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.h5_mutations(valid)),
                        label="payload")
    if data.draw(st.booleans(), label="sealed again"):
        # As if written with the damage: the checks behind the seal see it.
        payload = _resealed(payload)
    _fuzz("network_h5", payload)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_keras_h5(keras_h5_files, data):
    valid = _pick(data, keras_h5_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.h5_mutations(valid)),
                        label="payload")
    _fuzz("keras_h5", payload)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_keras(keras_files, data):
    valid = _pick(data, keras_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.npz_mutations(valid),
                                  member_mutations(valid, _keras_member),
                                  member_mutations(valid, _keras_member)), label="payload")
    _fuzz("keras", payload)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_torch_state(torch_state_files, data):
    valid = _pick(data, torch_state_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.npz_mutations(valid),
                                  member_mutations(valid)), label="payload")
    _fuzz("torch_state", payload)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_torchscript(torchscript_files, data):
    valid = _pick(data, torchscript_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.npz_mutations(valid),
                                  member_mutations(valid)), label="payload")
    _fuzz("torchscript", payload)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzz_onnx(onnx_files, data):
    valid = _pick(data, onnx_files)
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), onnx_mutations(valid)),
                        label="payload")
    _fuzz("onnx", payload)


# --- the valid files read -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["network_npz", "network_h5", "keras_h5", "keras",
                                  "torch_state", "torchscript", "onnx"])
def test_the_valid_files_read(request, kind):
    """The makers' files are valid (the fuzz tests start from files the readers accept), and
    still are once their zip archives are rebuilt (as member_mutations does)."""
    files = request.getfixturevalue(f"{kind}_files")
    suffix, read = fuzz_kinds.KINDS[kind]
    for name, payload in files.items():
        variants = [payload]
        if zipfile.is_zipfile(io.BytesIO(payload)):
            with zipfile.ZipFile(io.BytesIO(payload)) as src:
                variants.append(_rezip([(i, src.read(i)) for i in src.infolist()], src))
        for variant in variants:
            net = fuzzing.run_reader(read, variant, suffix, check_network)
            assert isinstance(net, ns.Network), (kind, name)


def test_the_bundled_networks_are_read_back_exactly(tmp_path):
    """The digits CNN is in format 3 (checksummed); both bundled networks round-trip."""
    for net in (ns.load_digits_model(), ns.load_digits_conv_model()):
        path = tmp_path / "net.h5"
        ns.save_network(net, path)
        back = ns.load_network(path)
        assert ns.provenance.network_sha256(back) == ns.provenance.network_sha256(net)
    from importlib.resources import files

    with h5py.File(files("neurosim.bundled") / "digits_cnn.h5", "r") as f:
        assert f.attrs["format_version"] == ns.io.FORMAT_VERSION == 3 and DIGEST_ATTR in f.attrs


# --- npz: targeted ---------------------------------------------------------------------------

def _write(tmp_path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=True)
    return buf.getvalue()


def _npz_net(**extra) -> dict:
    arrays = {"W0": _npy(np.ones((3, 2))), "b0": _npy(np.zeros(3)),
              "W1": _npy(np.ones((2, 3))), "b1": _npy(np.zeros(2)),
              "activations": _npy(np.array(["relu", "identity"]))}
    arrays.update(extra)
    return {f"{k}.npy": v for k, v in arrays.items()}


def test_a_298_gib_npz_header_is_refused_before_allocating(tmp_path):
    huge = fuzzing._npy_bytes(header="{'descr': '<f8', 'fortran_order': False, "
                                     "'shape': (4000000000, 10), }")
    path = _write(tmp_path, "huge.npz", _zip(_npz_net(W0=huge)))
    tracemalloc.start()
    start = time.monotonic()
    try:
        with _raises_naming(path, ReadLimitError, match="'W0'.*298 GiB"):
            ns.load_network(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 5 and peak < 16 << 20


def test_an_object_array_in_an_npz_network_is_refused(tmp_path):
    path = _write(tmp_path, "objects.npz", _zip(_npz_net(
        W1=_npy(np.array([{"a": 1}, None], dtype=object)))))
    with _raises_naming(path, FileFormatError, match="'W1'.*Python objects"):
        ns.load_network(path)


def test_a_bad_crc_in_an_npz_network_is_refused(tmp_path):
    raw = bytearray(_zip(_npz_net(W0=_npy(np.arange(600.0).reshape(3, 200)))))
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.getinfo("W0.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x01  # in the data, past the .npy header
    path = _write(tmp_path, "badcrc.npz", bytes(raw))
    with _raises_naming(path, FileFormatError, match="'W0'.*CRC"):
        ns.load_network(path)


@pytest.mark.parametrize("bad, pattern", [
    (np.ones((3, 2), dtype=np.complex128), "complex"), (np.array([["a", "b"]] * 3), "text"),
    (np.array([[b"a", b"b"]] * 3), "bytes")])
def test_text_or_complex_npz_weights_are_refused_without_a_cast(tmp_path, bad, pattern):
    path = tmp_path / "bad.npz"
    np.savez(path, W0=bad, b0=np.zeros(3), W1=np.ones((2, 3)), b1=np.zeros(2),
             activations=np.array(["relu", "identity"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: refused, not cast
        with _raises_naming(path, FileFormatError, match=f"'W0'.*{pattern}"):
            ns.load_network(path)


@pytest.mark.parametrize("structure, pattern", [
    ("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ("12", "JSON object"),
    ('{"pre": 5}', "'pre', a JSON list"), ('{"input_shape": [1, "a", 3]}', "positive integers"),
    ("[" * 100_000 + "]" * 100_000, "JSON|deeply")])
def test_npz_structure_that_is_not_the_right_json_is_refused(tmp_path, structure, pattern):
    net = _small_cnn()
    path = tmp_path / "net.npz"
    ns.save_network(net, path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["structure"] = np.array(structure)
    np.savez(path, **arrays)
    with _raises_naming(path, FileFormatError, match=pattern):
        ns.load_network(path)


@pytest.mark.parametrize("code", [0x800064, 0xD800])
def test_npz_text_of_code_points_that_are_not_characters_is_refused(tmp_path, code):
    """NumPy turns any 32-bit value of a damaged text array into a Python string, one that
    cannot be printed (found by the fuzz tests in a damaged 'structure')."""
    header = "{'descr': '<U2', 'fortran_order': False, 'shape': (), }"
    npy = fuzzing._npy_bytes(header=header)[:-64] + ord("{").to_bytes(4, "little") \
        + code.to_bytes(4, "little")
    path = _write(tmp_path, "text.npz", _zip(_npz_net(structure=npy)))
    with _raises_naming(path, FileFormatError, match=f"'structure' is not valid text.*{code:#x}"):
        ns.load_network(path)
    assert str(path) in str(pytest.raises(FileFormatError, ns.load_network, path).value)
    str(pytest.raises(FileFormatError, ns.load_network, path).value).encode("utf-8")


def test_npz_activations_that_are_numbers_are_refused(tmp_path):
    path = tmp_path / "acts.npz"
    np.savez(path, W0=np.ones((2, 2)), b0=np.zeros(2), activations=np.array([1.5]))
    with _raises_naming(path, FileFormatError, match="'activations' must be an array of text"):
        ns.load_network(path)


# --- neurosim .h5: targeted ------------------------------------------------------------------

def _saved_h5(tmp_path, net=None, version: int = 3) -> Path:
    path = tmp_path / "net.h5"
    net = net if net is not None else ns.Network.random([4, 3, 2], seed=5)
    if version < 3:
        _save_old(net, path, version)
    else:
        ns.save_network(net, path)
    return path


@pytest.mark.parametrize("version", [2, 3])
def test_a_29_tib_hdf5_weight_dataset_is_refused_before_reading(tmp_path, version):
    path = _saved_h5(tmp_path, version=version)
    with h5py.File(path, "r+") as f:
        del f["layers/0/W"]
        f["layers/0"].create_dataset("W", shape=(4_000_000, 1_000_000), dtype="f8",
                                     chunks=(1, 1024))
    _reseal(path)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with _raises_naming(path, ReadLimitError, match=r"29\.1 TiB"):
            ns.load_network(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("bad, pattern", [
    (np.array("not a number", dtype=object), "text"),
    (np.ones((3, 4), dtype=np.complex128), "complex"),
    (np.array([b"ab", b"cd"]), "bytes|text"),
    (np.ones((3, 4), dtype=bool), "booleans")])
def test_text_or_complex_h5_weights_are_refused_without_a_cast(tmp_path, bad, pattern):
    path = _saved_h5(tmp_path, version=2)
    with h5py.File(path, "r+") as f:
        del f["layers/0/W"]
        f["layers/0"].create_dataset("W", data=bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _raises_naming(path, FileFormatError, match=f"layer 0.*'W'.*{pattern}"):
            ns.load_network(path)


def test_variable_length_h5_weights_are_refused(tmp_path):
    path = _saved_h5(tmp_path, version=2)
    with h5py.File(path, "r+") as f:
        del f["layers/1/b"]
        f["layers/1"].create_dataset("b", data=np.array([np.arange(3.0), np.arange(2.0)],
                                                        dtype=object),
                                     dtype=h5py.vlen_dtype(np.float64))
    with _raises_naming(path, FileFormatError, match="'b'.*variable-length"):
        ns.load_network(path)


@pytest.mark.parametrize("key, value, pattern", [
    ("metadata", "{not json", "'metadata'.*not JSON"),
    ("metadata", "[1, 2]", "'metadata'.*JSON object"),
    ("input_shape", '{"a": 1}', "'input_shape'.*JSON list"),
    ("input_shape", "[0, 4]", "'input_shape'.*positive integers"),
    ("input_shape", "[" * 50_000 + "]" * 50_000, "'input_shape'"),
    ("layers/0:pre", "12", "'pre'.*JSON list"),
    ("layers/0:layer_attrs", "[1]", "'layer_attrs'.*JSON object"),
    ("layers/0:activation", np.arange(3.0), "'activation'.*text"),
    ("layers/0:alpha", "text", "'alpha'.*real number"),
    ("format_version", "three", "format_version.*integer")])
def test_h5_attributes_of_the_wrong_type_are_refused(tmp_path, key, value, pattern):
    path = _saved_h5(tmp_path, version=2)
    group, _, name = key.rpartition(":")
    with h5py.File(path, "r+") as f:
        (f[group] if group else f).attrs[name] = value
    with _raises_naming(path, FileFormatError, match=pattern):
        ns.load_network(path)


def test_nan_weights_name_the_file_in_every_format(tmp_path):
    net = ns.Network.random([4, 3, 2], seed=6)
    W = net.layers[1].W.copy()
    W[0, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, W0=net.layers[0].W, b0=net.layers[0].b, W1=W, b1=net.layers[1].b,
             activations=np.array(["relu", "identity"]))
    with _raises_naming(path, ValidationError, match="weights of layer 2 must be finite"):
        ns.load_network(path)
    path = _saved_h5(tmp_path, net, version=2)
    with h5py.File(path, "r+") as f:
        f["layers/1/W"][0, 1] = np.inf
    with _raises_naming(path, ValidationError, match="weights of layer 2 must be finite"):
        ns.load_network(path)


# --- neurosim .h5: checksums -------------------------------------------------------------------

def test_a_saved_network_carries_its_checksums(tmp_path):
    path = _saved_h5(tmp_path)
    assert digest.check_seal(path, str(path)) is True
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 3 and DIGEST_ATTR in f.attrs
        assert f["layers/0/W"].fletcher32 and f["layers/1/b"].fletcher32


@pytest.mark.parametrize("resealed, pattern", [(False, "seal"), (True, "Fletcher-32")])
def test_a_flipped_byte_in_a_weight_is_refused_by_the_checksum(tmp_path, resealed, pattern):
    """The seal (the bytes' SHA-256) refuses it; a file written with the flip (sealed after
    it) is refused by the dataset's Fletcher-32 checksum."""
    net = ns.Network.random([40, 30, 2], seed=7)
    path = _saved_h5(tmp_path, net)
    with h5py.File(path, "r") as f:
        chunk = f["layers/0/W"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[chunk.byte_offset + chunk.size // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    if resealed:
        _reseal(path)
    with _raises_naming(path, FileFormatError, match=f"checksum.*{pattern}|{pattern}.*checksum"):
        ns.load_network(path)


@pytest.mark.parametrize("resealed", [False, True])
@pytest.mark.parametrize("change", ["activation", "metadata", "weights", "digest", "no_digest"])
def test_a_network_changed_after_saving_is_refused(tmp_path, change, resealed):
    """Changed in place (h5py, r+): the seal refuses it; changed and sealed again, the content
    digest does."""
    path = _saved_h5(tmp_path, ns.Network.random([4, 3, 2], "relu", seed=8))
    with h5py.File(path, "r+") as f:
        if change == "activation":
            f["layers/0"].attrs["activation"] = "tanh"  # a valid network, but not the one saved
        elif change == "metadata":
            f.attrs["metadata"] = json.dumps({"name": "someone else's"})
        elif change == "weights":
            f["layers/1/b"][0] = 0.5
        elif change == "digest":
            f.attrs[DIGEST_ATTR] = "0" * 64
        else:
            del f.attrs[DIGEST_ATTR]
    if resealed:
        _reseal(path)
    with _raises_naming(path, FileFormatError,
                        match="checksum" if resealed or change != "no_digest" else "checksum|seal"):
        ns.load_network(path)


def test_a_damaged_layer_says_what_is_wrong_and_that_the_checksum_fails(tmp_path):
    path = _saved_h5(tmp_path)
    with h5py.File(path, "r+") as f:
        f["layers/1"].attrs["activation"] = "mish"
    _reseal(path)
    with _raises_naming(path, UnsupportedLayerError, match="layer 1.*'mish'.*checksum"):
        ns.load_network(path)


def test_a_v3_file_without_its_seal_is_refused(tmp_path):
    net = ns.Network.random([4, 3, 2], seed=12)
    path = tmp_path / "unsealed.h5"
    _save_old(net, path, 3)
    with h5py.File(path, "r+") as f:
        digest.sign(f)
    with _raises_naming(path, FileFormatError, match="seal"):
        ns.load_network(path)


@pytest.mark.parametrize("version", [1, 2])
def test_files_of_the_versions_before_the_checksums_still_read(tmp_path, version):
    net = ns.Network.random([4, 3, 2], seed=9)
    path = _saved_h5(tmp_path, net, version=version)
    assert ns.load_network(path).equals(net)


def _global_heap_object(raw: bytearray, index: int) -> int:
    """The offset of object ``index`` in the first global heap collection of an HDF5 file."""
    at = raw.find(b"GCOL")
    p = at + 16
    while int.from_bytes(raw[p:p + 2], "little") != index:
        size = int.from_bytes(raw[p + 8:p + 16], "little")
        p += 16 + -(-size // 8) * 8
    return p


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("declared", [0, 1 << 40])
def test_a_damaged_global_heap_is_refused_before_hdf5_loops_on_it(tmp_path, keras_files,
                                                                   suffix, declared):
    """An object of a global heap (where HDF5 keeps text attributes) declaring 0 bytes makes
    HDF5 2.0 loop forever in C, out of reach of any time limit (found by the fuzz tests)."""
    net_path = _saved_h5(tmp_path)
    raw = bytearray(net_path.read_bytes())
    p = _global_heap_object(raw, 0 if declared == 0 else 1)  # the free space, or an object
    raw[p + 8:p + 16] = declared.to_bytes(8, "little")
    if suffix == ".h5":
        path = _write(tmp_path, "heap.h5", bytes(raw))
        _reseal(path)  # as if written so: the seal would refuse it first
    else:
        with zipfile.ZipFile(io.BytesIO(keras_files["dense"])) as src:
            members = [(i, bytes(raw) if i.filename == "model.weights.h5" else src.read(i))
                       for i in src.infolist()]
            path = _write(tmp_path, "heap.keras", _rezip(members, src))
    start = time.monotonic()
    with _raises_naming(path, FileFormatError, match="global heap"):
        ns.load_network(path)
    assert time.monotonic() - start < 5


def _sequences() -> np.ndarray:
    """Two variable-length sequences of bytes, as h5py writes them."""
    out = np.empty(2, dtype=object)
    out[0], out[1] = np.arange(3, dtype=np.uint8), np.arange(2, dtype=np.uint8)
    return out


@pytest.mark.parametrize("where", ["layers/0", "/", "layers/1/W"])
def test_attributes_of_an_unexpected_hdf5_type_are_refused_before_reading(tmp_path, where):
    """A damaged type can make HDF5 crash converting an attribute (found by the fuzz tests:
    text turned into a variable-length sequence); neurosim reads text and numbers only, and
    checks every attribute's type before the digest reads them all."""
    path = _saved_h5(tmp_path)
    with h5py.File(path, "r+") as f:
        f[where].attrs.create("junk", data=_sequences(), dtype=h5py.vlen_dtype(np.uint8))
    _reseal(path)
    with _raises_naming(path, FileFormatError, match="'junk'.*variable-length sequences"):
        ns.load_network(path)


def test_keras_attributes_of_an_unexpected_hdf5_type_are_refused(tmp_path, keras_h5_files):
    path = _write(tmp_path, "model.h5", keras_h5_files["dense"])
    with h5py.File(path, "r+") as f:
        # Keras numbers its layers across the session: the first layer with weights.
        group = next(g for g in f["model_weights"].values() if len(g.attrs["weight_names"]))
        del group.attrs["weight_names"]
        group.attrs.create("weight_names", data=_sequences(), dtype=h5py.vlen_dtype(np.uint8))
    with _raises_naming(path, FileFormatError, match="'weight_names'.*variable-length"):
        ns.load_network(path)


@pytest.mark.parametrize("stored", [0, 2])
def test_a_checksummed_chunk_stored_in_under_4_bytes_is_refused_before_hdf5_reads_it(
        tmp_path, stored):
    """HDF5's Fletcher-32 filter reads far past a chunk stored in fewer than 4 bytes (a
    segfault, found by the fuzz tests): the chunk index is checked before any data is read,
    by the digest or by the reader."""
    for version in (3, 2):
        path = _saved_h5(tmp_path, ns.Network.random([40, 30, 2], seed=11), version)
        with h5py.File(path, "r") as f:
            chunk = f["layers/0/W"].id.get_chunk_info(0)
        raw = bytearray(path.read_bytes())
        # The chunk's key in the v1 B-tree: its size, filter mask and offsets, then its
        # address (relative to the HDF5 data, which starts after the user block).
        base = 0 if raw[:8] == b"\x89HDF\r\n\x1a\n" else digest.USERBLOCK
        key = (chunk.size.to_bytes(4, "little") + bytes(4) + bytes(24)
               + (chunk.byte_offset - base).to_bytes(8, "little"))
        at = raw.find(key)
        assert at > 0 and raw.find(key, at + 1) < 0
        raw[at:at + 4] = stored.to_bytes(4, "little")
        path.write_bytes(bytes(raw))
        _reseal(path)
        with _raises_naming(path, FileFormatError, match="'layers/0/W' is damaged.*chunk"):
            ns.load_network(path)


def test_a_huge_declared_image_is_read_without_allocating_it(tmp_path):
    """A conv and a pooling on a declared 1 x 40000 x 40000 image: the reader checks the
    pooling from the shapes alone (it used to allocate an index per input)."""
    rng = np.random.default_rng(10)
    net = ns.Network([Conv2d.build(rng.normal(size=(2, 1, 3, 3)), None, (1, 40_000, 40_000),
                                   padding=1, activation="relu"),
                      MaxPool2d(2), GlobalAvgPool2d(keepdims=False), Dense(rng.normal(size=(3, 2)),
                                                             np.zeros(3))])
    for suffix in (".npz", ".h5"):
        path = tmp_path / f"huge_image{suffix}"
        ns.save_network(net, path)
        tracemalloc.start()
        start = time.monotonic()
        try:
            back = ns.load_network(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert back.input_shape == (1, 40_000, 40_000)
        assert time.monotonic() - start < 5 and peak < 16 << 20


# --- Keras: targeted ------------------------------------------------------------------------------

def _bomb(path: Path, n_bytes: int, declare: "int | None" = None) -> None:
    """A .keras whose model.weights.h5 is ``n_bytes`` zeros, deflated (streamed, so that
    neither the test nor the file holds them); ``declare`` patches the size the archive
    declares for it (its zip64 records) without writing that much."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {
            "name": "bomb", "layers": []}}))
        with zf.open("model.weights.h5", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(n_bytes >> 20):
                fh.write(chunk)
    if declare is None:
        return
    raw = bytearray(path.read_bytes())
    # The member's central directory entry: zipfile's file_size is its uncompressed size
    # (offset 24), or, when that reads 0xFFFFFFFF, the first value of its zip64 extra field.
    name = b"model.weights.h5"
    at = raw.find(b"PK\x01\x02")
    while raw[at + 46:at + 46 + len(name)] != name:
        at = raw.find(b"PK\x01\x02", at + 4)
        assert at >= 0
    if declare < 0xFFFFFFFF:
        raw[at + 24:at + 28] = declare.to_bytes(4, "little")
    else:
        raw[at + 24:at + 28] = b"\xff" * 4
        extra_len = int.from_bytes(raw[at + 30:at + 32], "little")
        raw[at + 30:at + 32] = (extra_len + 12).to_bytes(2, "little")
        field = (1).to_bytes(2, "little") + (8).to_bytes(2, "little") + declare.to_bytes(8,
                                                                                      "little")
        raw[at + 46 + len(name):at + 46 + len(name)] = field
        end = raw.rfind(b"PK\x05\x06")  # the end record: the central directory grew
        size = int.from_bytes(raw[end + 12:end + 16], "little")
        raw[end + 12:end + 16] = (size + len(field)).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("model.weights.h5").file_size == declare


@pytest.fixture
def read_limit():
    yield ns.set_read_limit
    ns.set_read_limit(None)


def test_a_keras_decompression_bomb_is_refused_before_it_is_decompressed(tmp_path, read_limit):
    path = tmp_path / "bomb.keras"
    _bomb(path, 64 << 20)
    assert path.stat().st_size < 1 << 20
    read_limit(16 << 20)
    before = set(tmp_path.iterdir())
    tracemalloc.start()
    start = time.monotonic()
    try:
        with _raises_naming(path, ReadLimitError, match="model.weights.h5.*64 MiB"):
            ns.load_network(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 2 and peak < 16 << 20
    assert set(tmp_path.iterdir()) == before  # nothing extracted


@pytest.mark.parametrize("declared, shown", [(2 << 30, "2 GiB"), (8 << 30, "8 GiB")])
def test_a_keras_member_declaring_gibs_is_refused_without_reading_it(tmp_path, read_limit,
                                                                     declared, shown):
    path = tmp_path / "declared.keras"
    _bomb(path, 1 << 20, declare=declared)
    read_limit(1 << 30)
    tracemalloc.start()
    try:
        with _raises_naming(path, ReadLimitError, match=f"model.weights.h5.*{shown}"):
            ns.load_network(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("config, pattern", [
    (b"{not json", "config.json.*not valid JSON"), (b"[1, 2]", "config.json.*JSON object"),
    (b"\xff\xfe\x00", "config.json.*UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "config.json")])
def test_a_keras_config_that_is_not_a_json_object_is_refused(tmp_path, keras_files, config,
                                                              pattern):
    with zipfile.ZipFile(io.BytesIO(keras_files["dense"])) as src:
        members = [(i, config if i.filename == "config.json" else src.read(i))
                   for i in src.infolist()]
        path = _write(tmp_path, "config.keras", _rezip(members, src))
    with _raises_naming(path, FileFormatError, match=pattern):
        ns.load_network(path)


@pytest.mark.parametrize("bad, pattern", [(np.ones((6, 5), dtype=np.complex64), "complex"),
                                          (np.array("text", dtype=object), "text")])
def test_complex_or_text_keras_weights_are_refused(tmp_path, keras_h5_files, bad, pattern):
    path = _write(tmp_path, "model.h5", keras_h5_files["dense"])
    with h5py.File(path, "r+") as f:
        names = []
        f["model_weights"].visititems(
            lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        kernel = next(n for n in names if n.endswith("kernel") or "kernel" in n)
        del f["model_weights"][kernel]
        f["model_weights"].create_dataset(kernel, data=bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _raises_naming(path, FileFormatError, match=pattern):
            ns.load_network(path)


# --- PyTorch: targeted ------------------------------------------------------------------------------

def test_a_pt_member_over_the_limit_is_refused_before_torch_reads_it(tmp_path, read_limit,
                                                                   monkeypatch):
    torch = pytest.importorskip("torch")
    path = tmp_path / "big.pt"
    torch.save({"0.weight": torch.ones(300, 1000), "0.bias": torch.zeros(300)}, path)
    read_limit(1 << 20)

    def never(*args, **kwargs):
        raise AssertionError("torch.load ran before the sizes were checked")
    monkeypatch.setattr(torch, "load", never)
    monkeypatch.setattr(torch.jit, "load", never)
    with _raises_naming(path, ReadLimitError, match="archive member .*data/0.*1.14 MiB"):
        ns.load_network(path, activations=["identity"])


def test_a_pt_archive_with_a_name_that_is_not_utf8_is_one_error(tmp_path, torch_state_files):
    raw = bytearray(torch_state_files["mlp"])
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.infolist()[0]
    # Mark every name as UTF-8 (flag bit 11) and break the first one's bytes.
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at >= 0:
            raw[at + flags_at + 1] |= 0x08  # the high byte of the little-endian flags
            at = raw.find(signature, at + 4)
    cd = raw.find(b"PK\x01\x02")
    raw[cd + 46] = 0xFF
    path = _write(tmp_path, "names.pt", bytes(raw))
    assert info.filename
    from neurosim.io.torch import _is_torchscript

    assert _is_torchscript(str(path)) is False
    with _raises_naming(path, FileFormatError):
        ns.load_network(path, activations=fuzz_kinds.TORCH_ACTIVATIONS)


@pytest.mark.parametrize("dtype", ["complex64", "float16", "bfloat16", "int64"])
def test_state_dict_weight_types(tmp_path, dtype):
    """Complex weights are refused (never cast); half precision is read as float32."""
    torch = pytest.importorskip("torch")
    tensor = torch.ones(3, 4).to(getattr(torch, dtype))
    path = tmp_path / "typed.pt"
    torch.save({"0.weight": tensor, "0.bias": torch.zeros(3).to(getattr(torch, dtype))}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if dtype == "complex64":
            with _raises_naming(path, ValidationError, match="weights of layer 1.*real numbers"):
                ns.load_network(path, activations=["identity"])
        else:
            net = ns.load_network(path, activations=["identity"])
            assert net.dtype in (np.float32, np.float64)
            np.testing.assert_array_equal(net.layers[0].W, 1.0)


def test_nan_state_dict_weights_name_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "nan.pt"
    torch.save({"0.weight": torch.full((3, 4), float("nan")), "0.bias": torch.zeros(3)}, path)
    with _raises_naming(path, ValidationError, match="weights of layer 1 must be finite"):
        ns.load_network(path, activations=["identity"])


# --- ONNX: targeted ------------------------------------------------------------------------------------

def _onnx_model(tmp_path, const_nodes, inits=None, name="graph.onnx", opset=17):
    """x (1, 4) -> Gemm(W, b) -> y, with ``const_nodes`` (only constants in) beside it."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits = dict(inits or {})
    inits.setdefault("W", np.ones((2, 4), np.float32))
    inits.setdefault("b", np.zeros(2, np.float32))
    graph = helper.make_graph(
        list(const_nodes) + [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_an_onnx_constant_of_a_huge_shape_is_refused_before_it_is_computed(tmp_path):
    from onnx import helper

    path = _onnx_model(tmp_path, [helper.make_node("ConstantOfShape", ["shape"], ["junk"])],
                       {"shape": np.array([1 << 20, 1 << 20], np.int64)})
    start = time.monotonic()
    with _raises_naming(path, ReadLimitError, match="ConstantOfShape.*8 TiB"):
        ns.load_network(path)
    assert time.monotonic() - start < 5


def test_an_onnx_outer_product_of_constants_is_refused_before_it_is_computed(tmp_path):
    from onnx import helper

    path = _onnx_model(tmp_path, [helper.make_node("Mul", ["u", "v"], ["junk"])],
                       {"u": np.ones((200_000, 1), np.float32),
                        "v": np.ones((1, 200_000), np.float32)})
    with _raises_naming(path, ReadLimitError, match="Mul.*298 GiB"):
        ns.load_network(path)


def test_an_onnx_loop_is_not_run_when_the_file_is_read(tmp_path):
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])])
    loop = helper.make_node("Loop", ["trips", "cond"], [], body=body)
    path = _onnx_model(tmp_path, [loop], {"trips": np.array(1 << 62, np.int64),
                                          "cond": np.array(True)})
    start = time.monotonic()
    with _raises_naming(path, NeurosimError, match="subgraph|Loop"):
        ns.load_network(path)
    assert time.monotonic() - start < 5


def test_an_onnx_range_that_never_ends_is_refused(tmp_path):
    from onnx import helper

    path = _onnx_model(tmp_path, [helper.make_node("Range", ["start", "limit", "delta"],
                                                   ["junk"])],
                       {"start": np.array(0.0, np.float32), "limit": np.array(1e30, np.float32),
                        "delta": np.array(1.0, np.float32)})
    with _raises_naming(path, ReadLimitError, match="Range"):
        ns.load_network(path)


def test_nan_onnx_weights_name_the_file(tmp_path):
    W = np.ones((2, 4), np.float32)
    W[1, 2] = np.nan
    path = _onnx_model(tmp_path, [], {"W": W})
    with _raises_naming(path, ValidationError, match="weights of layer 1 must be finite"):
        ns.load_network(path)


def test_complex_onnx_weights_are_refused(tmp_path):
    path = _onnx_model(tmp_path, [], {"W": np.ones((2, 4), np.complex64)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _raises_naming(path, NeurosimError, match="complex|COMPLEX|floating-point"):
            ns.load_network(path)


# --- the layers themselves ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.ones((2, 3), dtype=np.complex128), np.array([["a"] * 3] * 2),
                                 np.array([[object()] * 3] * 2)])
def test_layers_refuse_weights_that_are_not_real_numbers(bad):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValidationError, match="weights of layer 1 must hold real numbers"):
            ns.Network([Dense(bad, np.zeros(2))])
        with pytest.raises(ValidationError, match="kernel of layer 1 .conv2d. must hold real"):
            ns.Network([Conv2d.build(np.zeros((1, 1, 1, 1), dtype=bad.dtype), np.zeros(1),
                                     (1, 2, 3))])
