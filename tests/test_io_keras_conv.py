"""Loading convolutional Keras models (.keras and legacy .h5) written by the real Keras 3.

Every model is built with Keras, saved, loaded with neurosim (which does not import Keras)
and its forward pass compared with Keras' own on data given N x H x W x C.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from neurosim import load_network  # noqa: E402
from neurosim.errors import UnsupportedLayerError  # noqa: E402
from neurosim.network import Network  # noqa: E402
from neurosim.layers import (AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d,  # noqa: E402
                             MaxPool2d)

layers = keras.layers

# Keras' torch backend trips a NumPy 2 deprecation inside keras itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _images(shape, n=3, seed=0, scale=1.0):
    """n images (H, W, C) in Keras' layout."""
    return (scale * np.random.default_rng(seed).normal(size=(n,) + tuple(shape))).astype(np.float32)


def _save_load(model, tmp_path, fmt="keras", **kwargs):
    path = tmp_path / f"{model.name}.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that .h5 is legacy
        model.save(path)
    return load_network(path, **kwargs)


def _assert_matches(net, model, x):
    """neurosim's forward equals Keras' predict to float32 rounding (outputs flattened)."""
    want = model.predict(x, verbose=0).reshape(len(x), -1)
    got = net.forward(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _randomize_batchnorm(model, seed=0):
    """Non-trivial gamma, beta, moving mean and variance on every BatchNormalization."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            values = []
            for (name, shape) in zip([w.path.split("/")[-1] for w in layer.weights], shapes):
                if name == "moving_variance":
                    values.append(rng.uniform(0.5, 2.0, shape))
                elif name == "gamma":
                    values.append(rng.uniform(0.5, 1.5, shape))
                else:  # beta, moving_mean
                    values.append(rng.normal(0.0, 0.5, shape))
            layer.set_weights([v.astype(np.float32) for v in values])


def _randomize_biases(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias.assign(rng.normal(0.0, 0.3, tuple(bias.shape)).astype(np.float32))


# --- whole models ------------------------------------------------------------------------
def _small_cnn(relu_inside=False):
    """Conv2D, BatchNormalization (with non-trivial statistics), pooling, Flatten, Dense.

    ``relu_inside``: c2 applies its relu itself, so the BatchNormalization after it cannot be
    folded (an error)."""
    keras.utils.set_random_seed(0)
    c2 = ([layers.Conv2D(5, (3, 2), activation="relu", name="c2"),
           layers.BatchNormalization(center=False, epsilon=0.01, name="bn_nocenter")]
          if relu_inside else
          [layers.Conv2D(5, (3, 2), name="c2"),
           layers.BatchNormalization(center=False, epsilon=0.01, name="bn_nocenter"),
           layers.Activation("relu")])
    model = keras.Sequential([
        keras.Input((12, 10, 3)),
        layers.Conv2D(6, 3, padding="same", name="c1"),
        layers.BatchNormalization(name="bn1"),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        *c2,
        layers.AveragePooling2D(2, strides=1, padding="same"),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(7, activation="tanh"),
        layers.Dense(6, name="d2"),
        layers.BatchNormalization(scale=False, name="bn_dense"),
        layers.Dense(3),
    ], name="small_cnn")
    _randomize_biases(model)
    _randomize_batchnorm(model)
    return model


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_small_cnn(tmp_path, fmt):
    model = _small_cnn()
    net = _save_load(model, tmp_path, fmt)
    assert net.layout == "NHWC" and net.input_shape == (3, 12, 10)
    assert [type(layer) for layer in net.layers] == [Conv2d, Conv2d, Dense, Dense, Dense]
    assert [str(a) for a in net.activations] == ["relu", "relu", "tanh", "identity", "identity"]
    kinds = [type(t) for pre in net.pre for t in pre]
    assert kinds == [MaxPool2d, AvgPool2d, Flatten]
    assert [f["into"] for f in net.metadata["folded_batchnorm"]] == ["'c1'", "'c2'", "'d2'"]
    assert net.metadata["source_format"] == ("keras3" if fmt == "keras" else "keras2-h5")
    x = _images((12, 10, 3))
    _assert_matches(net, model, x)
    # Flat rows in Keras' (H, W, C) order are the same data.
    np.testing.assert_array_equal(net.forward(x.reshape(len(x), -1)), net.forward(x))


def test_batchnorm_after_activation_rejected(tmp_path):
    with pytest.raises(UnsupportedLayerError, match="bn_nocenter.*relu"):
        _save_load(_small_cnn(relu_inside=True), tmp_path)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_depthwise_multiplier(tmp_path, fmt):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((9, 8, 3)),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu",
                               name="dw"),
        layers.Conv2D(4, 1, name="pw"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2),
    ], name="depthwise")
    _randomize_biases(model)
    net = _save_load(model, tmp_path, fmt)
    dw = net.layers[0]
    assert dw.groups == 3 and dw.K.shape == (6, 1, 3, 3)
    kernel = model.get_layer("dw").get_weights()[0]  # (kh, kw, C_in, multiplier)
    np.testing.assert_array_equal(dw.K[2 * 1 + 1, 0], kernel[:, :, 1, 1])  # channel c*m + j
    assert isinstance(net.pre[2][0], GlobalAvgPool2d)
    _assert_matches(net, model, _images((9, 8, 3)))


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_separable(tmp_path, fmt):
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((10, 9, 4)),
        layers.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, padding="same",
                               activation="elu", name="sep"),
        layers.BatchNormalization(),
        layers.SeparableConv2D(3, (2, 3), use_bias=False, name="sep_nobias"),
        layers.Flatten(),
        layers.Dense(3),
    ], name="separable")
    _randomize_biases(model)
    _randomize_batchnorm(model)
    with pytest.raises(UnsupportedLayerError, match="elu"):
        _save_load(model, tmp_path, fmt)  # the BN follows the elu inside 'sep'
    model = keras.Sequential([
        keras.Input((10, 9, 4)),
        layers.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, padding="same", name="sep"),
        layers.BatchNormalization(),
        layers.ELU(alpha=0.7),
        layers.SeparableConv2D(3, (2, 3), use_bias=False, activation="relu", name="sep_nobias"),
        layers.Flatten(),
        layers.Dense(3),
    ], name="separable")
    _randomize_biases(model)
    _randomize_batchnorm(model)
    net = _save_load(model, tmp_path, fmt)
    convs = net.layers[:4]
    assert all(isinstance(c, Conv2d) for c in convs)
    assert [c.groups for c in convs] == [4, 1, 5, 1]
    assert [c.kernel_size for c in convs] == [(3, 3), (1, 1), (2, 3), (1, 1)]
    assert [str(a) for a in net.activations[:4]] == ["identity", "elu(alpha=0.7)", "identity",
                                                    "relu"]
    assert not np.any(convs[0].b) and not np.any(convs[2].b) and not np.any(convs[3].b)
    assert np.any(convs[1].b)  # the bias, with the BatchNorm folded in
    _assert_matches(net, model, _images((10, 9, 4)))


@pytest.mark.parametrize("case", [
    dict(filters=4, kernel_size=3, strides=2, padding="same"),  # 11 -> 6: odd pad at the end
    dict(filters=4, kernel_size=4, strides=2, padding="same"),
    dict(filters=3, kernel_size=(2, 4), strides=(2, 1), padding="same"),
    dict(filters=3, kernel_size=3, dilation_rate=2, padding="same"),
    dict(filters=3, kernel_size=(3, 2), dilation_rate=(2, 3), padding="valid"),
    dict(filters=4, kernel_size=3, groups=2, use_bias=False),
    dict(filters=3, kernel_size=3, strides=3, padding="valid"),
])
def test_conv_settings(tmp_path, case):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((11, 10, 4)), layers.Conv2D(**case, name="conv"),
                              layers.Flatten(), layers.Dense(3)], name="conv_settings")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    keras_shape = model.get_layer("conv").output.shape[1:]
    assert net.layers[0].out_shape == (keras_shape[2], keras_shape[0], keras_shape[1])
    _assert_matches(net, model, _images((11, 10, 4)))


@pytest.mark.parametrize("pad, conv", [
    (((0, 1), (0, 1)), dict(kind="depthwise", kernel_size=3, strides=2, padding="valid")),
    (((1, 2), (0, 3)), dict(kind="conv", filters=3, kernel_size=3, strides=2, padding="same")),
    ((2, 1), dict(kind="separable", filters=3, kernel_size=3, padding="valid")),
])
def test_zero_padding_folded(tmp_path, pad, conv):
    keras.utils.set_random_seed(6)
    kind = conv.pop("kind")
    layer = {"depthwise": layers.DepthwiseConv2D, "conv": layers.Conv2D,
             "separable": layers.SeparableConv2D}[kind](**conv)
    model = keras.Sequential([keras.Input((8, 7, 3)), layers.ZeroPadding2D(pad), layer,
                              layers.Flatten(), layers.Dense(2)], name="zero_padding")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    assert net.input_shape == (3, 8, 7)
    _assert_matches(net, model, _images((8, 7, 3)))


@pytest.mark.parametrize("pool, shape", [
    (layers.MaxPooling2D(3, strides=2, padding="same"), (7, 8, 3)),  # pads (1, 1), (0, 1)
    (layers.MaxPooling2D((2, 3), strides=(1, 2), padding="same"), (7, 8, 3)),
    (layers.MaxPooling2D(2), (7, 8, 3)),
    (layers.AveragePooling2D(3, strides=2, padding="same"), (7, 9, 3)),  # pads (1, 1), (1, 1)
    (layers.AveragePooling2D(3, strides=1, padding="same"), (5, 6, 3)),
    (layers.AveragePooling2D(2, strides=(2, 1)), (7, 8, 3)),
    (layers.GlobalAveragePooling2D(keepdims=True), (7, 8, 3)),
    (layers.GlobalMaxPooling2D(), (7, 8, 3)),
    (layers.GlobalMaxPooling2D(keepdims=True), (7, 8, 3)),
], ids=lambda p: f"{type(p).__name__}-{p.get_config().get('padding', '')}"
   if isinstance(p, layers.Layer) else "x".join(map(str, p)))
def test_pooling(tmp_path, pool, shape):
    # Data with negative values: a max over the padding must never pick a zero.
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input(shape), type(pool).from_config(pool.get_config()),
                              layers.Flatten(), layers.Dense(3)], name="pooling")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    _assert_matches(net, model, _images(shape) - 1.0)


def _average_pool_same(x, k, s):
    """Keras' documented "same" average pooling (TensorFlow, JAX): ceil(n / s) outputs, the
    odd padding pixel at the end, each window's mean over its taps inside the image."""
    n, H, W, C = x.shape
    ho, wo = -(-H // s[0]), -(-W // s[1])
    top = max((ho - 1) * s[0] + k[0] - H, 0) // 2
    left = max((wo - 1) * s[1] + k[1] - W, 0) // 2
    out = np.empty((n, ho, wo, C), dtype=np.float64)
    for i in range(ho):
        r = slice(max(i * s[0] - top, 0), min(i * s[0] - top + k[0], H))
        for j in range(wo):
            c = slice(max(j * s[1] - left, 0), min(j * s[1] - left + k[1], W))
            out[:, i, j] = x[:, r, c].mean(axis=(1, 2))
    return out.astype(np.float32)


@pytest.mark.parametrize("k, s, shape", [((3, 3), (2, 2), (7, 8, 3)),
                                         ((2, 3), (1, 2), (7, 8, 3))])
def test_average_pooling_same_asymmetric(tmp_path, k, s, shape):
    """With unequal padding on the two sides, Keras 3.15's torch backend pads by replicating
    the edge and counts it (keras-team/keras#19721, fixed by PR #23233), unlike TensorFlow,
    JAX and Keras' documentation; neurosim follows the documented semantics. Keras computes
    everything here but that one pooling."""
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input(shape),
                              layers.AveragePooling2D(k, strides=s, padding="same"),
                              layers.Flatten(), layers.Dense(3)], name="avg_same")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    x = _images(shape) - 1.0
    pooled = _average_pool_same(x, k, s)
    assert pooled.shape[1:] == tuple(model.layers[0].output.shape[1:])
    rest = keras.Sequential([keras.Input(pooled.shape[1:]), *model.layers[1:]])
    want = rest.predict(pooled, verbose=0)
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_head(tmp_path, keepdims):
    """GlobalAveragePooling2D then Reshape((1, 1, C)) and a 1x1 conv head, as in Keras 2's
    MobileNet (keepdims False) or Keras 3's (keepdims True), ending in Reshape((classes,))."""
    keras.utils.set_random_seed(8)
    model = keras.Sequential([
        keras.Input((6, 6, 3)), layers.Conv2D(4, 3, activation="relu"),
        layers.GlobalAveragePooling2D(keepdims=keepdims),
        *([] if keepdims else [layers.Reshape((1, 1, 4))]),
        layers.Dropout(0.2), layers.Conv2D(5, 1), layers.Reshape((5,)),
    ], name="head")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    assert net.layers[-1].out_shape == (5, 1, 1)
    _assert_matches(net, model, _images((6, 6, 3)))


@pytest.mark.parametrize("relu, expected", [
    (layers.ReLU(max_value=6.0), "hardtanh(0, 6)"),
    (layers.ReLU(max_value=2.5), "hardtanh(0, 2.5)"),
    (layers.ReLU(negative_slope=0.1), "leaky_relu(alpha=0.1)"),
], ids=["relu6", "relu_max2.5", "relu_slope"])
def test_relu_layer(tmp_path, relu, expected):
    keras.utils.set_random_seed(9)
    model = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(4, 3), relu,
                              layers.Flatten(), layers.Dense(2)], name="relu_layer")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    assert str(net.activations[0]) == expected
    _assert_matches(net, model, _images((5, 5, 2), scale=10.0))  # beyond max_value


ACTIVATIONS = [
    ("relu", "relu"), ("relu6", "hardtanh(0, 6)"), ("elu", "elu(alpha=1)"), ("gelu", "gelu"),
    ("silu", "silu"), ("swish", "silu"), ("hard_silu", "hardswish"), ("hard_swish", "hardswish"),
    ("hard_sigmoid", "hardsigmoid(alpha=0.166667, beta=0.5)"), ("hard_tanh", "hardtanh(-1, 1)"),
    ("tanh", "tanh"), ("sigmoid", "sigmoid"), ("softplus", "softplus"),
    ("leaky_relu", "leaky_relu(alpha=0.2)"), ("linear", "identity"),
]


@pytest.mark.parametrize("standalone", [False, True], ids=["in_layer", "Activation"])
@pytest.mark.parametrize("name, expected", ACTIVATIONS, ids=[a for a, _ in ACTIVATIONS])
def test_activations(tmp_path, name, expected, standalone):
    keras.utils.set_random_seed(10)
    conv = [layers.Conv2D(3, 2, name="conv"), layers.Activation(name)] if standalone else [
        layers.Conv2D(3, 2, activation=name, name="conv")]
    model = keras.Sequential([keras.Input((4, 4, 2)), *conv, layers.Flatten(),
                              layers.Dense(2)], name="acts")
    _randomize_biases(model)
    net = _save_load(model, tmp_path)
    assert str(net.activations[0]) == expected
    _assert_matches(net, model, _images((4, 4, 2), n=4, scale=4.0))  # both sides of every kink


@pytest.mark.parametrize("layer, expected", [
    (layers.LeakyReLU(negative_slope=0.15), "leaky_relu(alpha=0.15)"),
    (layers.ELU(alpha=0.5), "elu(alpha=0.5)"),
], ids=["LeakyReLU", "ELU"])
def test_activation_layers(tmp_path, layer, expected):
    keras.utils.set_random_seed(11)
    model = keras.Sequential([keras.Input((4, 4, 2)), layers.Conv2D(3, 2), layer,
                              layers.MaxPooling2D(), layers.Flatten(), layers.Dense(2)],
                             name="act_layers")
    net = _save_load(model, tmp_path)
    assert str(net.activations[0]) == expected
    _assert_matches(net, model, _images((4, 4, 2), scale=4.0))


def test_hard_sigmoid_of_keras2_files(tmp_path):
    """Keras 2's hard_sigmoid is clip(0.2 x + 0.5, 0, 1), Keras 3's relu6(x + 3) / 6: the
    file's keras_version decides."""
    import h5py

    model = keras.Sequential([keras.Input((4, 4, 1)),
                              layers.Conv2D(2, 3, activation="hard_sigmoid"),
                              layers.Flatten(), layers.Dense(2)], name="hs")
    net = _save_load(model, tmp_path, "h5")
    assert (net.activations[0].alpha, net.activations[0].beta) == (1 / 6, 0.5)
    with h5py.File(tmp_path / "hs.h5", "r+") as f:
        f.attrs["keras_version"] = "2.15.0"
    net = load_network(tmp_path / "hs.h5")
    assert (net.activations[0].alpha, net.activations[0].beta) == (0.2, 0.5)


def test_softmax_output(tmp_path):
    keras.utils.set_random_seed(12)
    model = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(3, 3, activation="relu"),
                              layers.Flatten(), layers.Dense(4, activation="softmax")],
                             name="clf")
    with pytest.warns(UserWarning, match="softmax"):
        net = _save_load(model, tmp_path)
    assert net.metadata["dropped_output_softmax"] is True
    x = _images((5, 5, 2))
    logits = net.forward(x)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["Flatten", "Reshape", "Reshape(-1)", "input"])
def test_flatten_order(tmp_path, how):
    """Keras flattens (H, W, C); with C, H, W all different a wrong order could not match."""
    keras.utils.set_random_seed(13)
    flat = {"Flatten": layers.Flatten(), "Reshape": layers.Reshape((3 * 5 * 2,)),
            "Reshape(-1)": layers.Reshape((-1,)), "input": layers.Flatten()}[how]
    conv = [] if how == "input" else [layers.Conv2D(2, (2, 1))]
    model = keras.Sequential([keras.Input((4, 5, 3) if conv else (3, 5, 2)), *conv, flat,
                              layers.Dense(4)], name="flatten_order")
    net = _save_load(model, tmp_path)
    flatten = net.pre[-1][0]
    assert isinstance(flatten, Flatten) and flatten.order == "hwc"
    assert flatten.in_shape == (2, 3, 5)  # (C, H, W)
    x = _images((4, 5, 3) if conv else (3, 5, 2))
    _assert_matches(net, model, x)
    # The same network flattening channels first (PyTorch's order) does not match.
    items = [Flatten("chw") if isinstance(t, Flatten) else t for t in net.items]
    chw = Network(items, input_shape=net.input_shape, layout="NHWC")
    assert not np.allclose(chw.forward(x), net.forward(x), rtol=1e-3)


def test_functional_chain(tmp_path):
    keras.utils.set_random_seed(14)
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU(6.0)(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(3)(h)
    model = keras.Model(inputs, outputs, name="func_cnn")
    _randomize_batchnorm(model)
    net = _save_load(model, tmp_path)
    assert net.metadata["name"] == "func_cnn"
    _assert_matches(net, model, _images((8, 8, 2)))


# --- an architecture -----------------------------------------------------------------------
def test_mobilenet(tmp_path):
    keras.utils.set_random_seed(15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 32 x 32 is not an ImageNet size
        model = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), alpha=0.25)
    _randomize_batchnorm(model, seed=15)
    _randomize_biases(model, seed=16)
    with pytest.warns(UserWarning, match="softmax"):
        net = _save_load(model, tmp_path)
    assert net.layout == "NHWC" and net.input_shape == (3, 32, 32)
    assert len(net.layers) == 28  # conv1, 13 depthwise + 13 pointwise, conv_preds
    assert len(net.metadata["folded_batchnorm"]) == 27
    assert sum(c.groups > 1 for c in net.layers) == 13
    assert net.layers[-1].out_shape == (1000, 1, 1)
    x = _images((32, 32, 3), n=2, seed=15)
    # Keras' logits: the model up to its final Reshape, before the softmax Activation.
    logits_model = keras.Model(model.inputs, model.layers[-2].output)
    assert isinstance(model.layers[-1], layers.Activation)
    _assert_matches(net, logits_model, x)
    logits = net.forward(x)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-7)


# --- errors --------------------------------------------------------------------------------
def test_non_chain_rejected(tmp_path):
    inputs = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, padding="same")(inputs)
    b = layers.Conv2D(3, 1)(inputs)
    h = layers.Add(name="my_add")([a, b])
    outputs = layers.Dense(2)(layers.Flatten()(h))
    model = keras.Model(inputs, outputs, name="residual")
    with pytest.raises(UnsupportedLayerError,
                       match=r"single chain.*'my_add' \(Add\) has 2 inbound"):
        _save_load(model, tmp_path)


def _error_models():
    return {
        "channels_first": ([keras.Input((3, 6, 6)),
                            layers.Conv2D(2, 3, data_format="channels_first", name="cf"),
                            layers.Flatten(), layers.Dense(2)], r"'cf'.*channels_first"),
        "bn_first": ([keras.Input((6, 6, 3)), layers.BatchNormalization(name="bn0"),
                      layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)],
                     r"'bn0'.*nothing before it"),
        "reshape_2d": ([keras.Input((4, 4, 2)), layers.Conv2D(2, 1),
                        layers.Reshape((8, 4), name="resh"), layers.Flatten(), layers.Dense(2)],
                       r"'resh'.*reshapes.*\(4, 4, 2\) to \(8, 4\)"),
        "pad_then_pool": ([keras.Input((6, 6, 2)), layers.ZeroPadding2D(1, name="zp"),
                           layers.MaxPooling2D(), layers.Flatten(), layers.Dense(2)],
                          r"'zp'.*followed by.*MaxPooling2D"),
        "relu_threshold": ([keras.Input((4, 4, 1)), layers.Conv2D(2, 1),
                            layers.ReLU(threshold=0.5, name="thr"), layers.Flatten(),
                            layers.Dense(2)], r"'thr'.*threshold"),
        "image_output": ([keras.Input((4, 4, 1)), layers.Conv2D(2, 1)],
                         r"output is an image of shape \(4, 4, 2\)"),
        "bn_other_axis": ([keras.Input((4, 4, 3)), layers.Conv2D(3, 1),
                           layers.BatchNormalization(axis=1, name="bn1"), layers.Flatten(),
                           layers.Dense(2)], r"'bn1'.*axis 1"),
    }


@pytest.mark.parametrize("case", list(_error_models()))
def test_errors(tmp_path, case):
    items, match = _error_models()[case]
    model = keras.Sequential(items, name=f"bad_{case}")
    with pytest.raises(UnsupportedLayerError, match=match) as info:
        _save_load(model, tmp_path)
    assert f"bad_{case}.keras" in str(info.value)
