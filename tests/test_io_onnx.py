"""Reading ONNX files: models exported from PyTorch and graphs built with onnx.helper, each
compared with onnxruntime's output."""

import contextlib
import io
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from neurosim import load_network  # noqa: E402
from neurosim.errors import (  # noqa: E402
    FileFormatError,
    MissingExtraError,
    NeurosimFileNotFoundError,
    UnsupportedLayerError,
)
from neurosim.io.onnx import load_onnx  # noqa: E402

OPSET = 17


# --- helpers ---------------------------------------------------------------------------------
def _export(model, shape, path, opset=OPSET, **kw):
    """The legacy (TorchScript) exporter: fast, and it keeps a symbolic batch dimension."""
    torch.manual_seed(0)
    kw.setdefault("input_names", ["x"])
    kw.setdefault("dynamic_axes", {"x": {0: "batch"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(*shape),), str(path), dynamo=False,
                          opset_version=opset, **kw)
    return path


def _ops(path):
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def _ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _x(shape, n=6, seed=0, scale=1.0, dtype=np.float32):
    return (scale * np.random.default_rng(seed).normal(size=(n,) + tuple(shape))).astype(dtype)


def _check(path, x, net=None, ref=None):
    """neurosim's forward equals onnxruntime's, or ``ref`` (float32: 1e-5 of the output's
    size)."""
    if net is None:
        net = load_network(path)
    if ref is None:
        ref = _ort(path, x)
    assert ref.shape == (x.shape[0], net.n_outputs)
    assert np.std(ref) > 1e-3, "the reference output is constant: the test checks nothing"
    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-5, atol=tol)
    return net


def _save(tmp_path, nodes, inits, in_shape, out_shape, name="model.onnx", opset=OPSET,
          elem=TensorProto.FLOAT, extra_inputs=()):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", elem, in_shape), *extra_inputs],
        [helper.make_tensor_value_info("y", elem, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _rand(*shape, seed=1, scale=0.5):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


# --- models exported from PyTorch ------------------------------------------------------------
def test_lenet_cnn(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(24, 10), nn.ReLU(), nn.Dropout(0.2), nn.Linear(10, 3))
    path = _export(model, (1, 1, 8, 8), tmp_path / "lenet.onnx")
    x = _x((1, 8, 8))
    net = _check(path, x, load_onnx(path))
    assert net.input_shape == (1, 8, 8) and net.layout == "NCHW"
    assert [layer.kind for layer in net.layers] == ["conv2d", "conv2d", "dense", "dense"]
    assert [str(a) for a in net.activations] == ["relu", "relu", "relu", "identity"]
    assert net.metadata["source_format"] == "onnx" and net.metadata["onnx_opset"] == OPSET
    assert load_network(path).equals(net)
    # Flat rows in NCHW order are accepted too.
    np.testing.assert_allclose(net.forward(x.reshape(len(x), -1)), net.forward(x))


def _bn_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2))
    with torch.no_grad():  # statistics far from (0, 1) so that a missed fold shows
        for bn in (model[1], model[5]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.3, 3.0)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1, 1)
    return model.eval()


def test_batchnorm_folded_by_exporter_and_by_neurosim(tmp_path):
    x = _x((2, 6, 6))
    # By default the exporter folds an eval-mode BatchNorm2d into the Conv before it; the
    # BatchNorm1d after a Linear stays a BatchNormalization node.
    folded = _export(_bn_model(), (1, 2, 6, 6), tmp_path / "folded.onnx")
    assert _ops(folded).count("BatchNormalization") == 1
    net = _check(folded, x)
    assert len(net.metadata["folded_batchnorm"]) == 1
    # Without constant folding both stay, and neurosim folds both.
    kept = _export(_bn_model(), (1, 2, 6, 6), tmp_path / "kept.onnx", do_constant_folding=False)
    assert _ops(kept).count("BatchNormalization") == 2
    net = _check(kept, x)
    assert [entry["into"] for entry in net.metadata["folded_batchnorm"]] == ["/0/Conv", "/4/Gemm"]


def test_mlp_gemm_matmul_and_dropped_softmax(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 7),
                          nn.LeakyReLU(0.15), nn.Linear(7, 4, bias=False), nn.LogSoftmax(dim=1))
    path = _export(model, (2, 6), tmp_path / "mlp.onnx")
    assert {"Gemm", "MatMul", "LogSoftmax"} <= set(_ops(path))
    with pytest.warns(UserWarning, match="softmax"):
        net = load_network(path)
    assert net.metadata["dropped_output_softmax"] is True
    assert net.input_shape == (6,) and net.layout is None
    assert [str(a) for a in net.activations] == ["relu", "leaky_relu(alpha=0.15)", "identity"]
    x = _x((6,), n=9)
    logits = model[:-1](torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(net.forward(x), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(net.predict(x), _ort(path, x).argmax(axis=1))


def test_initializers_listed_as_graph_inputs(tmp_path):
    """Graph inputs that are also initializers are weights (keep_initializers_as_inputs)."""
    path = _export(_bn_model(), (1, 2, 6, 6), tmp_path / "kept.onnx",
                   do_constant_folding=False, keep_initializers_as_inputs=True)
    assert len(onnx.load(str(path)).graph.input) > 1
    _check(path, _x((2, 6, 6)))


CONVS = {
    "depthwise": nn.Conv2d(4, 4, 3, padding=1, groups=4),
    "grouped_dilated": nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
    "strided_rect": nn.Conv2d(4, 5, (3, 2), stride=(2, 1), padding=(1, 0)),
    "strided_no_bias": nn.Conv2d(4, 3, 3, stride=2, bias=False),
    "same_even_kernel": nn.Conv2d(4, 3, 4, padding="same"),  # exported as auto_pad SAME_UPPER
    "same_dilated": nn.Conv2d(4, 3, 3, padding="same", dilation=2),
}


@pytest.mark.parametrize("kind", list(CONVS))
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_conv_variants(tmp_path, kind):
    torch.manual_seed(0)
    conv = CONVS[kind]
    with torch.no_grad():
        out = conv(torch.zeros(1, 4, 7, 7))
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(out.numel(), 3))
    path = _export(model, (1, 4, 7, 7), tmp_path / f"{kind}.onnx")
    x = _x((4, 7, 7))
    ref = None
    if kind == "same_dilated":  # onnxruntime refuses dilations with auto_pad SAME_*
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
    net = _check(path, x, ref=ref)
    assert net.layers[0].groups == conv.groups
    assert net.layers[0].out_shape == tuple(out.shape[1:])


ACTIVATIONS = [
    # (module, expected neurosim activation, opset)
    (nn.ReLU(), "relu", OPSET),
    (nn.ReLU6(), "hardtanh(0, 6)", OPSET),
    (nn.ReLU6(), "hardtanh(0, 6)", 10),  # Clip bounds as attributes
    (nn.Hardtanh(-0.5, 0.7), "hardtanh(-0.5, 0.7)", OPSET),
    (nn.LeakyReLU(0.2), "leaky_relu(alpha=0.2)", OPSET),
    (nn.Sigmoid(), "sigmoid", OPSET),
    (nn.Tanh(), "tanh", OPSET),
    (nn.ELU(0.5), "elu(alpha=0.5)", OPSET),
    (nn.Softplus(), "softplus", OPSET),
    (nn.Hardsigmoid(), "hardsigmoid(alpha=0.166667, beta=0.5)", OPSET),
    (nn.Hardswish(), "hardswish", OPSET),
    (nn.GELU(), "gelu", OPSET),  # written out: Div, Erf, Add, Mul, Mul
    (nn.GELU(approximate="tanh"), "gelu_tanh", OPSET),  # written out with Tanh
    (nn.GELU(), "gelu", 20),  # the Gelu op
    (nn.GELU(approximate="tanh"), "gelu_tanh", 20),
    (nn.SiLU(), "silu", OPSET),  # x * Sigmoid(x)
]


@pytest.mark.parametrize("module, expected, opset", ACTIVATIONS,
                         ids=[f"{type(m).__name__}-{e}-{o}" for m, e, o in ACTIVATIONS])
def test_activations(tmp_path, module, expected, opset):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), module, nn.Flatten(), nn.Linear(3 * 4 * 4, 6),
                          module, nn.Linear(6, 3))
    path = _export(model, (1, 1, 6, 6), tmp_path / "act.onnx", opset=opset)
    net = _check(path, _x((1, 6, 6), scale=4.0))
    assert [str(a) for a in net.activations] == [expected, expected, "identity"]


POOLS = {
    "max2": nn.MaxPool2d(2),
    "max_overlap_pad": nn.MaxPool2d(3, stride=2, padding=1),
    "avg_include_pad": nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True),
    "avg_exclude_pad": nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    "global_avg": nn.AdaptiveAvgPool2d(1),  # GlobalAveragePool
    "global_max": nn.AdaptiveMaxPool2d(1),  # MaxPool over the image
}


@pytest.mark.parametrize("kind", list(POOLS))
def test_pooling(tmp_path, kind):
    torch.manual_seed(0)
    pool = POOLS[kind]
    features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), pool)
    with torch.no_grad():
        n = features(torch.zeros(1, 2, 7, 7)).numel()
    model = nn.Sequential(*features, nn.Flatten(), nn.Linear(n, 4))
    path = _export(model, (1, 2, 7, 7), tmp_path / f"{kind}.onnx")
    if kind == "global_avg":
        assert "GlobalAveragePool" in _ops(path)
    _check(path, _x((2, 7, 7)))


def test_dynamo_export(tmp_path):
    """The torch.export-based exporter writes Flatten as Reshape [-1, n], an output-less
    Linear as a 2-input Gemm, AdaptiveAvgPool2d as ReduceMean and GELU written out."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.GELU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, 5), nn.Hardswish(), nn.Linear(5, 3, bias=False)).eval()
    path = tmp_path / "dynamo.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 1, 8, 8),), str(path), dynamo=True,
                          opset_version=18,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    net = _check(path, _x((1, 8, 8), n=5, scale=2.0))
    assert [str(a) for a in net.activations] == ["gelu", "silu", "hardswish", "identity"]


# --- graphs built by hand --------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(tmp_path, mode):
    nodes = [
        helper.make_node("Conv", ["x", "K", "b"], ["c"], auto_pad=mode, strides=[2, 2],
                         name="conv"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[1, 1],
                         auto_pad=mode),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], auto_pad=mode),
        helper.make_node("Flatten", ["a"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "c_bias"], ["y"], transB=1),
    ]
    # 8 x 8 -> conv (k 3, s 2) -> max (k 2, s 1) -> avg (k 2, s 1): SAME 4, 4, 4; VALID 3, 2, 1
    n = 3 * (4 * 4 if mode.startswith("SAME") else 1)
    inits = {"K": _rand(3, 2, 3, 3), "b": _rand(3, seed=2), "W": _rand(4, n, seed=3),
             "c_bias": _rand(4, seed=4)}
    path = _save(tmp_path, nodes, inits, ["N", 2, 8, 8], ["N", 4])
    net = _check(path, _x((2, 8, 8)))
    if mode != "VALID":
        top, bottom, left, right = net.layers[0].padding
        assert (top, bottom) == ((0, 1) if mode == "SAME_UPPER" else (1, 0))


def test_batchnorm_gemm_attributes_by_hand(tmp_path):
    """Conv without bias, BatchNormalization folded, GlobalAveragePool, Gemm with alpha,
    beta, transB=0 and a (1, n) bias."""
    nodes = [
        helper.make_node("Conv", ["x", "K"], ["c"], pads=[1, 0, 1, 2], name="conv"),
        helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"],
                         epsilon=1e-3, name="bn"),
        helper.make_node("LeakyRelu", ["bn"], ["r"], alpha=0.3),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "B", "C"], ["y"], alpha=0.5, beta=2.0, name="fc"),
    ]
    inits = {"K": _rand(4, 2, 3, 3), "g": np.float32([1.5, 0.5, 2.0, 1.0]),
             "be": np.float32([0.1, -0.2, 0.3, 0.0]), "mu": np.float32([0.5, -0.5, 0.2, 0.0]),
             "var": np.float32([0.5, 2.0, 1.0, 3.0]), "B": _rand(4, 3, seed=5),
             "C": _rand(1, 3, seed=6)}
    path = _save(tmp_path, nodes, inits, [None, 2, 5, 5], [None, 3])
    net = _check(path, _x((2, 5, 5), scale=2.0))
    assert net.metadata["folded_batchnorm"][0]["into"] == "conv"
    assert net.layers[0].padding == (1, 1, 0, 2)


def test_matmul_add_reshape_constants_by_hand(tmp_path):
    """MatMul + Add with constants from Constant nodes, Reshape to [0, -1], Identity."""
    b1 = _rand(5, seed=7)
    nodes = [
        helper.make_node("Constant", [], ["shape"],
                         value=numpy_helper.from_array(np.int64([0, -1]))),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W1"], ["m1"], name="mm1"),
        helper.make_node("Constant", [], ["b1"], value=numpy_helper.from_array(b1)),
        helper.make_node("Add", ["b1", "m1"], ["a1"], name="bias1"),  # constant first
        helper.make_node("Identity", ["a1"], ["i1"]),
        helper.make_node("Tanh", ["i1"], ["t1"]),
        helper.make_node("MatMul", ["t1", "W2"], ["m2"], name="mm2"),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="bias2"),
    ]
    inits = {"W1": _rand(12, 5), "W2": _rand(5, 3, seed=8), "b2": _rand(1, 3, seed=9)}
    path = _save(tmp_path, nodes, inits, ["N", 3, 2, 2], ["N", 3])
    net = _check(path, _x((3, 2, 2), scale=2.0))
    assert net.input_shape == (3, 2, 2) and [layer.kind for layer in net.layers] == ["dense"] * 2
    np.testing.assert_array_equal(net.layers[0].b, b1)
    np.testing.assert_array_equal(net.layers[1].b, inits["b2"].ravel())
    np.testing.assert_array_equal(net.layers[0].W, inits["W1"].T)


def test_conv_bias_from_add_and_float64_gemm(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "K"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "cb"], ["a"], name="conv_bias"),
        helper.make_node("Elu", ["a"], ["e"], alpha=0.7),
        helper.make_node("Flatten", ["e"], ["f"]),
        helper.make_node("Gemm", ["f", "W"], ["y"], transB=1),
    ]
    inits = {"K": _rand(2, 1, 2, 2), "cb": _rand(1, 2, 1, 1, seed=3), "W": _rand(3, 2 * 3 * 3)}
    path = _save(tmp_path, nodes, inits, [1, 1, 4, 4], [1, 3])
    net = _check(path, _x((1, 4, 4), n=1))
    np.testing.assert_allclose(net.layers[0].b, inits["cb"].ravel())
    # A float64 MLP is read in float64 and matches to float64 precision.
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
             helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("Gemm", ["s", "W2", "b2"], ["y"], transB=1)]
    rng = np.random.default_rng(3)
    inits = {"W1": rng.normal(size=(5, 4)), "b1": rng.normal(size=5),
             "W2": rng.normal(size=(2, 5)), "b2": rng.normal(size=2)}
    path = _save(tmp_path, nodes, inits, ["N", 4], ["N", 2], name="f64.onnx",
                 elem=TensorProto.DOUBLE)
    net = load_network(path)
    assert net.dtype == np.float64
    x = _x((4,), dtype=np.float64)
    np.testing.assert_allclose(net.forward(x), _ort(path, x), rtol=1e-12, atol=1e-12)


HAND_ACTIVATIONS = [
    # (op, attributes, constant inputs, expected, opset)
    ("HardSigmoid", {}, [], "hardsigmoid(alpha=0.2, beta=0.5)", OPSET),  # ONNX's defaults
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [], "hardsigmoid(alpha=0.3, beta=0.4)", OPSET),
    ("LeakyRelu", {}, [], "leaky_relu(alpha=0.01)", OPSET),
    ("Elu", {}, [], "elu(alpha=1)", OPSET),
    ("Softplus", {}, [], "softplus", OPSET),
    ("Clip", {}, [np.float32(0.0)], "relu", OPSET),  # min only
    ("Clip", {}, [np.float32(-1.0), np.float32(0.5)], "hardtanh(-1, 0.5)", OPSET),
    ("Clip", {"min": -0.5, "max": 1.5}, [], "hardtanh(-0.5, 1.5)", 10),  # attributes
    ("Gelu", {}, [], "gelu", 20),
    ("Gelu", {"approximate": "tanh"}, [], "gelu_tanh", 20),
]


@pytest.mark.parametrize("op, attrs, consts, expected, opset", HAND_ACTIVATIONS,
                         ids=[e for _, _, _, e, _ in HAND_ACTIVATIONS])
def test_activation_attributes_by_hand(tmp_path, op, attrs, consts, expected, opset):
    names = [f"k{i}" for i in range(len(consts))]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
             helper.make_node(op, ["h", *names], ["a"], name="act", **attrs),
             helper.make_node("Gemm", ["a", "W2", "b2"], ["y"], transB=1)]
    inits = {"W1": _rand(5, 4, scale=1.5), "b1": _rand(5, seed=2), "W2": _rand(3, 5, seed=3),
             "b2": _rand(3, seed=4), **dict(zip(names, consts))}
    path = _save(tmp_path, nodes, inits, ["N", 4], ["N", 3], opset=opset)
    net = _check(path, _x((4,), n=20, scale=2.0))
    assert [str(a) for a in net.activations] == [expected, "identity"]


@pytest.mark.parametrize("opset", [13, 18])  # ReduceMean's axes: attribute, then input
def test_global_max_pool_and_reduce_mean_by_hand(tmp_path, opset):
    axes = {"axes": [2, 3]} if opset < 18 else {}
    nodes = [helper.make_node("Conv", ["x", "K1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("GlobalMaxPool", ["r1"], ["g"], name="gmax"),
             helper.make_node("Conv", ["g", "K2"], ["c2"]),
             helper.make_node("ReduceMean", ["c2", *(["axes"] if opset >= 18 else [])], ["m"],
                              keepdims=0, name="mean", **axes),
             helper.make_node("Gemm", ["m", "W"], ["y"], transB=1)]
    inits = {"K1": _rand(3, 2, 3, 3), "b1": _rand(3, seed=2), "K2": _rand(4, 3, 1, 1, seed=3),
             "W": _rand(2, 4, seed=4)}
    if opset >= 18:
        inits["axes"] = np.int64([-1, -2])
    path = _save(tmp_path, nodes, inits, ["N", 2, 5, 5], ["N", 2], opset=opset)
    net = _check(path, _x((2, 5, 5)))
    assert [t.kind for t in net.pre[1]] == ["maxpool2d"]
    assert [t.kind for t in net.pre[2]] == ["global_avgpool2d"] and net.shapes[2] == (4, 1, 1)


# --- errors ----------------------------------------------------------------------------------
def _residual(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "K1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "K2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["r1", "c2"], ["s"], name="residual_add"),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("Gemm", ["f", "W"], ["y"], transB=1),
    ]
    inits = {"K1": _rand(2, 1, 3, 3), "K2": _rand(2, 2, 3, 3), "W": _rand(3, 32)}
    return _save(tmp_path, nodes, inits, ["N", 1, 4, 4], ["N", 3])


def test_residual_add_is_not_a_chain(tmp_path):
    path = _residual(tmp_path)
    with pytest.raises(UnsupportedLayerError) as info:
        load_network(path)
    message = str(info.value)
    assert "'relu1' (Relu)" in message and "'residual_add' (Add)" in message
    assert "not a chain" in message and str(path) in message


def test_second_input_rejected(tmp_path):
    """A second graph input, or a non-constant tensor from outside the chain (random noise)."""
    inits = {"W": _rand(3, 4), "W2": _rand(2, 3)}
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1, name="fc1"),
             helper.make_node("Mul", ["h", "z"], ["m"], name="gate"),
             helper.make_node("Gemm", ["m", "W2"], ["y"], transB=1, name="fc2")]
    extra = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])]
    path = _save(tmp_path, nodes, inits, ["N", 4], ["N", 2], extra_inputs=extra)
    with pytest.raises(UnsupportedLayerError, match="2 graph inputs.*'x', 'z'"):
        load_network(path)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1, name="fc1"),
             helper.make_node("RandomNormal", [], ["z"], shape=[1, 3], name="noise"),
             helper.make_node("Add", ["h", "z"], ["m"], name="add_noise"),
             helper.make_node("Gemm", ["m", "W2"], ["y"], transB=1, name="fc2")]
    path = _save(tmp_path, nodes, inits, ["N", 4], ["N", 2], name="noise.onnx")
    with pytest.raises(UnsupportedLayerError,
                       match="'add_noise' \\(Add\\) has 2 non-constant inputs.*not a chain"):
        load_network(path)


def test_unsupported_op_named(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], name="conv"),
             helper.make_node("LRN", ["c"], ["l"], size=3, name="norm1"),
             helper.make_node("Flatten", ["l"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    path = _save(tmp_path, nodes, {"K": _rand(2, 1, 3, 3), "W": _rand(3, 8)}, ["N", 1, 4, 4],
                 ["N", 3])
    with pytest.raises(UnsupportedLayerError) as info:
        load_network(path)
    message = str(info.value)
    assert "node 'norm1' (LRN) is not supported" in message and "Supported ops" in message


@pytest.mark.parametrize("attrs, match", [
    ({"ceil_mode": 1}, "ceil_mode=1"),
    ({"dilations": [2, 2]}, "dilations"),
    ({"storage_order": 1}, "storage_order"),
])
def test_maxpool_options_rejected(tmp_path, attrs, match):
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], name="conv"),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], name="pool", **attrs),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    path = _save(tmp_path, nodes, {"K": _rand(2, 1, 3, 3), "W": _rand(3, 8)}, ["N", 1, 5, 5],
                 ["N", 3])
    with pytest.raises(UnsupportedLayerError, match=f"node 'pool' \\(MaxPool\\).*{match}"):
        load_network(path)


def test_avgpool_ceil_mode_rejected(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(),
                          nn.Linear(18, 2))
    path = _export(model, (1, 1, 7, 7), tmp_path / "ceil.onnx")
    with pytest.raises(UnsupportedLayerError, match=r"\(AveragePool\).*ceil_mode=1"):
        load_network(path)


def test_other_unsupported_graphs(tmp_path):
    # transA=1
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], transA=1, name="fc")]
    path = _save(tmp_path, nodes, {"W": _rand(4, 3)}, [4, 2], [2, 3], name="ta.onnx")
    with pytest.raises(UnsupportedLayerError, match="'fc' \\(Gemm\\).*transA=1"):
        load_network(path)
    # a softmax in the middle
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1),
             helper.make_node("Softmax", ["h"], ["s"], axis=1, name="sm"),
             helper.make_node("Gemm", ["s", "W2"], ["y"], transB=1, name="fc2")]
    path = _save(tmp_path, nodes, {"W": _rand(3, 4), "W2": _rand(2, 3)}, ["N", 4], ["N", 2],
                 name="sm.onnx")
    with pytest.raises(UnsupportedLayerError, match="'fc2'.*follows the softmax"):
        load_network(path)
    # Flatten with axis 2; Dropout in training mode
    for node, match in ((helper.make_node("Flatten", ["x"], ["f"], axis=2, name="fl"),
                         "'fl' \\(Flatten\\) is a Flatten with axis=2"),
                        (helper.make_node("Dropout", ["x", "", "tm"], ["f"], name="drop"),
                         "'drop' \\(Dropout\\) is a Dropout in training mode")):
        nodes = [node, helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
        inits = {"W": _rand(3, 8), "tm": np.bool_(True)}
        path = _save(tmp_path, nodes, inits, ["N", 2, 2, 2], ["N", 3], name="fl.onnx")
        with pytest.raises(UnsupportedLayerError, match=match):
            load_network(path)
    # a reshape that is not a flattening
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], name="rs"),
             helper.make_node("Gemm", ["r", "W"], ["y"], transB=1)]
    path = _save(tmp_path, nodes, {"s": np.int64([-1, 4]), "W": _rand(3, 4)}, ["N", 2, 2, 2],
                 ["N", 3], name="rs.onnx")
    with pytest.raises(UnsupportedLayerError, match="'rs' \\(Reshape\\).*flattening"):
        load_network(path)


def test_symbolic_channel_dim(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    path = _save(tmp_path, nodes, {"K": _rand(2, 1, 3, 3), "W": _rand(3, 8)},
                 ["N", "C", 4, 4], ["N", 3])
    with pytest.raises(FileFormatError, match=r"symbolic \('C'\) C \(axis 1\)"):
        load_network(path)


def test_garbage_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(FileFormatError, match="garbage.onnx"):
        load_network(garbage)
    good = _residual(tmp_path)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated.onnx"):
        load_network(truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="not a valid ONNX model"):
        load_network(empty)
    with pytest.raises(NeurosimFileNotFoundError):
        load_onnx(tmp_path / "missing.onnx")


def test_missing_onnx_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'neurosim-faults\[onnx\]'"):
        load_onnx(tmp_path / "model.onnx")
