"""Loading Keras files (.keras, .weights.h5, legacy .h5) written by the real Keras 3."""

import os

os.environ["KERAS_BACKEND"] = "torch"

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from neurosim import load_network  # noqa: E402
from neurosim.errors import FileFormatError, UnsupportedLayerError  # noqa: E402
from neurosim.network import make_activation  # noqa: E402

layers = keras.layers

# Keras' torch backend trips a NumPy 2 deprecation inside keras itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _x(n_in, n=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, n_in)).astype(np.float32)


def _keras_out(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _mlp(seed=0):
    """Dense layers with every supported activation, standalone activation layers, dropout."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(8, activation="relu", name="first"),
            layers.Dropout(0.5),
            layers.Dense(7),
            layers.LeakyReLU(negative_slope=0.15),
            layers.Dense(7, activation="tanh"),
            layers.Flatten(),
            layers.Dense(6),
            layers.Activation("sigmoid"),
            layers.Dense(5, activation="softplus", use_bias=False),
            layers.Dense(5, activation="leaky_relu"),
            layers.Dense(4),
            layers.ReLU(),
            layers.Dense(3, activation="linear"),
        ],
        name="mlp",
    )
    # Non-zero biases so that a bias mix-up would show.
    for layer in model.layers:
        if isinstance(layer, layers.Dense) and layer.use_bias:
            layer.bias.assign(np.linspace(-0.5, 0.5, layer.units).astype(np.float32))
    return model


EXPECTED_ACTS = [
    "relu", "leaky_relu(alpha=0.15)", "tanh", "sigmoid", "softplus", "leaky_relu(alpha=0.2)",
    "relu", "identity",
]
WEIGHTS_ACTS = [
    "relu", make_activation("leaky_relu", 0.15), "tanh", "sigmoid", "softplus",
    make_activation("leaky_relu", 0.2), "relu", "identity",
]


@pytest.fixture(scope="module")
def mlp():
    return _mlp()


@pytest.mark.parametrize("fmt", ["keras", "h5", "weights.h5"])
def test_mlp_matches_keras(mlp, tmp_path, fmt):
    path = tmp_path / f"model.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that .h5 is legacy
        if fmt == "weights.h5":
            mlp.save_weights(path)
        else:
            mlp.save(path)
    kwargs = {"activations": WEIGHTS_ACTS} if fmt == "weights.h5" else {}
    net = load_network(path, **kwargs)
    assert [str(a) for a in net.activations] == EXPECTED_ACTS
    assert net.widths == [6, 8, 7, 7, 6, 5, 5, 4, 3]
    assert net.dtype == np.float32
    assert net.metadata["source_format"] == ("keras2-h5" if fmt == "h5" else "keras3")
    assert net.metadata["name"] == "mlp"
    assert "dropped_output_softmax" not in net.metadata
    x = _x(6)
    np.testing.assert_allclose(net.forward(x), _keras_out(mlp, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.forward(x), mlp.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def _softmax_model(standalone):
    keras.utils.set_random_seed(1)
    out = [layers.Dense(3), layers.Softmax()] if standalone else [layers.Dense(3, activation="softmax")]
    return keras.Sequential([keras.Input((4,)), layers.Dense(5, activation="relu"), *out], name="clf")


@pytest.mark.parametrize("standalone", [False, True])
@pytest.mark.parametrize("fmt", ["keras", "h5", "weights.h5"])
def test_final_softmax_dropped(tmp_path, fmt, standalone):
    model = _softmax_model(standalone)
    path = tmp_path / f"clf.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "weights.h5":
            model.save_weights(path)
        else:
            model.save(path)
    # A weights-only file names its softmax in the activation list.
    kwargs = {"activations": ["relu", "softmax"]} if fmt == "weights.h5" else {}
    with pytest.warns(UserWarning, match="softmax") as record:
        net = load_network(path, **kwargs)
    assert len([w for w in record if "softmax" in str(w.message)]) == 1
    assert net.metadata["dropped_output_softmax"] is True
    assert net.activations[-1].name == "identity"
    x = _x(4)
    probs = _keras_out(model, x)
    logits = net.forward(x)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(axis=1, keepdims=True), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.predict(x), probs.argmax(axis=1))


def test_functional_chain(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5,))
    h = layers.Dense(4, activation="leaky_relu")(inputs)
    h = layers.Dropout(0.1)(h)
    outputs = layers.Dense(2)(h)
    model = keras.Model(inputs, outputs, name="func")
    model.save(tmp_path / "func.keras")
    net = load_network(tmp_path / "func.keras")
    assert net.metadata["name"] == "func"
    x = _x(5)
    np.testing.assert_allclose(net.forward(x), _keras_out(model, x), rtol=1e-5, atol=1e-6)


def test_functional_branch_rejected(tmp_path):
    inputs = keras.Input((5,))
    a = layers.Dense(4, name="left")(inputs)
    b = layers.Dense(4, name="right")(inputs)
    outputs = layers.Dense(2)(layers.Add()([a, b]))
    keras.Model(inputs, outputs).save(tmp_path / "branch.keras")
    with pytest.raises(UnsupportedLayerError, match="single chain"):
        load_network(tmp_path / "branch.keras")


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("bad", ["conv", "norm"])
def test_unsupported_layer(tmp_path, fmt, bad):
    if bad == "conv":
        model = keras.Sequential([keras.Input((8, 2)), layers.Conv1D(3, 3, name="my_conv"),
                                  layers.Flatten(), layers.Dense(2)])
        name = "my_conv"
    else:
        # (BatchNormalization after a Dense is folded now; LayerNormalization is not supported.)
        model = keras.Sequential([keras.Input((4,)), layers.Dense(3),
                                  layers.LayerNormalization(name="my_norm"), layers.Dense(2)])
        name = "my_norm"
    path = tmp_path / f"bad.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    with pytest.raises(UnsupportedLayerError) as info:
        load_network(path)
    message = str(info.value)
    assert name in message and "bad." in message and "Supported layers" in message


def test_flatten_of_2d_input_rejected(tmp_path):
    model = keras.Sequential([keras.Input((2, 3)), layers.Flatten(name="flat"), layers.Dense(2)])
    model.save(tmp_path / "flat.keras")
    with pytest.raises(UnsupportedLayerError, match="flat"):
        load_network(tmp_path / "flat.keras")


def test_unsupported_activation(tmp_path):
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="mish", name="hid"),
                              layers.Dense(2)])
    model.save(tmp_path / "mish.keras")
    with pytest.raises(UnsupportedLayerError, match="hid.*mish"):
        load_network(tmp_path / "mish.keras")


def test_weights_only_needs_activations(tmp_path, mlp):
    path = tmp_path / "w.weights.h5"
    mlp.save_weights(path)
    with pytest.raises(FileFormatError, match=r"activations=\[") as info:
        load_network(path)
    assert "--activations relu,relu,identity" in str(info.value)
    with pytest.raises(FileFormatError, match="8 Dense layers but 2 activations"):
        load_network(path, activations=["relu", "identity"])


def test_malformed_files(tmp_path, mlp):
    good = tmp_path / "good.keras"
    mlp.save(good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated.keras"):
        load_network(truncated)

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(FileFormatError, match="garbage.keras"):
        load_network(garbage)

    garbage_h5 = tmp_path / "garbage.h5"
    garbage_h5.write_bytes(b"\x00" * 100)
    with pytest.raises(FileFormatError, match="garbage.h5"):
        load_network(garbage_h5)

    garbage_w = tmp_path / "garbage.weights.h5"
    garbage_w.write_bytes(b"junk" * 30)
    with pytest.raises(FileFormatError, match="garbage.weights.h5"):
        load_network(garbage_w, activations=["relu", "identity"])

    import zipfile

    for missing in ("config.json", "model.weights.h5"):
        path = tmp_path / f"no_{missing.split('.')[0]}.keras"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for item in src.namelist():
                if item != missing:
                    dst.writestr(item, src.read(item))
        with pytest.raises(FileFormatError, match=f"{path.name}.*{missing}"):
            load_network(path)
