"""Fault-tolerant training of conv architectures (``TrainConfig.arch``), fine-tuning a neurosim
Network (``init=``, ``--init``) and :func:`neurosim.train.network_to_torch`."""

import dataclasses
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    # The test calls the trained model itself; train() silences this note of PyTorch's.
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
]

import neurosim as ns  # noqa: E402
from neurosim.activations import make_activation  # noqa: E402
from neurosim.cli import main  # noqa: E402
from neurosim.errors import ShapeError, UnsupportedLayerError, ValidationError  # noqa: E402
from neurosim.io.torch import network_from_torch  # noqa: E402
from neurosim.layers import (LAYERS, AvgPool2d, Conv2d, Dense, Flatten,  # noqa: E402
                             GlobalAvgPool2d, MaxPool2d)
import neurosim.train as train_module  # noqa: E402
from neurosim.train import (  # noqa: E402
    _crash_points,
    _forward,
    _weighted_layers,
    build_arch_model,
    network_to_torch,
    parse_arch,
    regularizer_terms,
    train,
)
from training_fixtures import diabetes, digits, one_thread  # noqa: E402,F401 (fixtures)

CNN = "conv8,bn,relu,maxpool2,conv16,bn,relu,maxpool2,fc32,relu"
SMALL = "conv4,bn,relu,maxpool2,fc16,relu"


def _capture_models(monkeypatch):
    """Record every model build_arch_model makes inside train."""
    models = []
    real = train_module.build_arch_model

    def recording(*args, **kwargs):
        models.append(real(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(train_module, "build_arch_model", recording)
    return models


def _accuracy(network, X, y):
    return float(np.mean(network.forward(X).argmax(1) == y))


# --- training conv architectures ---------------------------------------------------------------

def test_conv_arch_reaches_accuracy_on_digits(digits):
    network = train(digits.X_train, digits.y_train, arch=CNN, input_shape=(1, 8, 8), epochs=4,
                    lr=3e-3, batch_size=32, seed=0, X_val=digits.X_test, y_val=digits.y_test)
    assert network.dtype == np.float32
    assert network.kinds == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "flatten", "dense",
                             "dense"]
    assert network.input_shape == (1, 8, 8) and network.layout == "NCHW"
    assert [str(a) for a in network.activations] == ["relu", "relu", "relu", "identity"]
    accuracy = _accuracy(network, digits.X_test, digits.y_test)
    # Four epochs give 0.96-0.975 over seeds 0-3; 0.9 leaves a wide margin.
    assert accuracy > 0.9
    info = network.metadata["training"]
    assert info["val_accuracy"] == accuracy  # computed by neurosim's forward
    assert info["train_accuracy"] == _accuracy(network, digits.X_train, digits.y_train)
    config = info["config"]
    assert config["arch"] == CNN and config["input_shape"] == [1, 8, 8]
    assert config["hidden"] is None and config["activation"] is None
    assert len(network.metadata["folded_batchnorm"]) == 2
    # Images given as (n, C, H, W) give the shape themselves: the same training.
    images = train(digits.X_train[:200].reshape(-1, 1, 8, 8), digits.y_train[:200], arch=SMALL,
                   epochs=1, seed=0)
    flat = train(digits.X_train[:200], digits.y_train[:200], arch=SMALL, input_shape=(1, 8, 8),
                 epochs=1, seed=0)
    for a, b in zip(images.layers, flat.layers):
        np.testing.assert_array_equal(a.synapse_weights, b.synapse_weights)
        np.testing.assert_array_equal(a.b, b.b)


# Every token of the grammar, BatchNorm after convs and an fc, even kernel (asymmetric "same").
EVERYTHING = ("conv6,bn,relu6,conv6dw,bn,silu,conv4k2,tanh,avgpool2,conv8k1valid,gelu,"
              "conv8k3s2g2,bn,elu,dropout0.1,conv4k2valid,hardswish,gap,flatten,fc12,bn,"
              "leaky_relu,dropout0.2,fc10,sigmoid")


def test_batchnorm_folded_forward_equals_torch_eval(monkeypatch, digits):
    models = _capture_models(monkeypatch)
    X, y = digits.X_train[:300], digits.y_train[:300]
    network = train(X, y, arch=EVERYTHING, input_shape=(1, 8, 8), epochs=2, lr=3e-3,
                    batch_size=32, seed=1, crash_p=0.05, lam=1e-3, mu=1e-4, nu=1e-5)
    (model,) = models
    assert not model.training
    norms = [m for m in model if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert len(norms) == 4
    # The running statistics moved away from their start: the folding has work to do.
    assert all(float((m.running_var - 1).abs().max()) > 1e-3 for m in norms)
    assert [f["into"] for f in network.metadata["folded_batchnorm"]] == ["0", "3", "11", "19"]
    assert network.kinds == ["conv2d", "conv2d", "conv2d", "avgpool2d", "conv2d", "conv2d",
                             "conv2d", "global_avgpool2d", "flatten", "dense", "dense",
                             "dense"]
    assert [str(a) for a in network.activations] == [
        "hardtanh(0, 6)", "silu", "tanh", "gelu", "elu(alpha=1)", "hardswish",
        "leaky_relu(alpha=0.01)", "sigmoid", "identity"]
    conv = network.layers[1]
    assert conv.groups == 6 and conv.padding == (1, 1, 1, 1)
    assert network.layers[2].padding == (0, 1, 0, 1)  # k2 "same": the odd pixel at the end
    assert network.layers[3].kernel_size == (1, 1) and network.layers[3].padding == (0, 0, 0, 0)
    assert network.layers[4].stride == (2, 2) and network.layers[4].groups == 2
    assert network.layers[5].out_shape == (4, 1, 1)
    with torch.no_grad():
        expected = model(torch.as_tensor(X.reshape(-1, 1, 8, 8))).numpy()
        in_training_mode = model.train()(torch.as_tensor(X.reshape(-1, 1, 8, 8))).numpy()
    got = network.forward(X)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(in_training_mode - expected).max() > 1e-2  # batch statistics would differ


def test_crashes_run_and_are_reproducible(digits):
    X, y = digits.X_train[:400], digits.y_train[:400]
    settings = dict(arch=SMALL, input_shape=(1, 8, 8), epochs=2, batch_size=50, crash_p=0.2)
    first = train(X, y, seed=3, **settings)
    again = train(X, y, seed=3, **settings)
    other_seed = train(X, y, seed=4, **settings)
    no_crash = train(X, y, seed=3, **{**settings, "crash_p": 0.0})
    for a, b in zip(first.layers, again.layers):
        np.testing.assert_array_equal(a.synapse_weights, b.synapse_weights)
        np.testing.assert_array_equal(a.b, b.b)
    assert not np.array_equal(first.layers[0].K, other_seed.layers[0].K)
    assert not np.array_equal(first.layers[0].K, no_crash.layers[0].K)
    assert first.metadata["training"]["config"]["crash_p"] == 0.2


def test_crash_forward_zeroes_every_conv_neuron_before_pooling():
    torch.manual_seed(0)
    model = build_arch_model("conv5,bn,sigmoid,maxpool2,conv3valid,softplus,fc7,sigmoid,dropout0.0",
                             (2, 8, 8), 4).double()
    modules = list(model)
    # The neurons: after conv+bn+sigmoid (before the pooling), the softplus, the fc's sigmoid.
    assert _crash_points(modules) == {2, 5, 8}
    records = {}

    def keep(index):
        def hook(module, inputs, output):
            records.setdefault(index, {})["clean"] = output.detach().clone()
        return hook

    def seen_by_next(index):
        def hook(module, inputs):
            records[index]["crashed"] = inputs[0].detach().clone()
        return hook

    handles = []
    for index in (2, 5, 8):
        handles.append(modules[index].register_forward_hook(keep(index)))
        handles.append(modules[index + 1].register_forward_pre_hook(seen_by_next(index)))
    X = torch.rand(300, 2, 8, 8, dtype=torch.float64)
    out = _forward(model, X, 0.3, torch.Generator().manual_seed(5))
    for handle in handles:
        handle.remove()
    for index, shape in ((2, (300, 5, 8, 8)), (5, (300, 3, 2, 2)), (8, (300, 7))):
        clean, crashed = records[index]["clean"], records[index]["crashed"]
        assert tuple(clean.shape) == shape
        assert (clean > 0).all()  # sigmoid and softplus: a zero can only be a crash
        kept = crashed != 0
        assert torch.equal(crashed, clean * kept)  # no rescaling
        rate = float((~kept).double().mean())
        # Binomial over >= 2100 elements: standard deviation of the rate <= 0.01.
        assert abs(rate - 0.3) < 0.05, (index, rate)
    # Every element is its own neuron: crashes differ across channels, rows and columns.
    kept0 = records[2]["crashed"] != 0
    assert not torch.equal(kept0[:, 0], kept0[:, 1])
    assert not torch.equal(kept0[:, :, 0], kept0[:, :, 1])
    assert not torch.equal(kept0[..., 0], kept0[..., 1])
    assert out.shape == (300, 4)
    model.eval()
    assert torch.equal(_forward(model, X, 0.0), model(X))


# --- the regularizer terms with conv layers -------------------------------------------------------

def _tiny_conv_model(seed=0):
    torch.manual_seed(seed)
    model = build_arch_model("conv3,tanh,maxpool2,conv2k2valid,tanh,fc4,tanh", (2, 6, 6),
                             3).double()
    gen = torch.Generator().manual_seed(seed + 100)
    X = torch.randn(12, 2, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=gen)
    return model, X, y


def _loss(model, X, y):
    return torch.nn.functional.cross_entropy(model(X), y)


def test_regularizer_terms_with_conv_layers_equal_a_hand_computation():
    model, X, y = _tiny_conv_model()
    weights = [m.weight for m in _weighted_layers(model)]
    assert [tuple(w.shape) for w in weights] == [(3, 2, 3, 3), (2, 3, 2, 2), (4, 8), (3, 4)]
    # dL/dw by central differences, weight by weight.
    h = 1e-6
    sensitivity = 0.0
    with torch.no_grad():
        for w in weights:
            flat = w.view(-1)
            for k in range(flat.numel()):
                original = flat[k].item()
                flat[k] = original + h
                up = _loss(model, X, y).item()
                flat[k] = original - h
                down = _loss(model, X, y).item()
                flat[k] = original
                sensitivity += ((up - down) / (2 * h) * original) ** 2
    arrays = [w.detach().numpy() for w in weights]
    masses = [np.abs(a).reshape(a.shape[0], -1).sum(axis=1) for a in arrays]
    balance = sum((m.max() / m.min()) ** 2 for m in masses)
    decay = sum(float((a ** 2).sum()) for a in arrays)
    terms = regularizer_terms(model, X, y, lam=0.3, mu=0.2, nu=0.05)
    assert float(terms["sensitivity"].detach()) == pytest.approx(0.3 * sensitivity, rel=1e-6)
    assert float(terms["balance"].detach()) == pytest.approx(0.2 * balance, rel=1e-12)
    assert float(terms["decay"].detach()) == pytest.approx(0.05 * decay, rel=1e-12)
    assert float(terms["loss"].detach()) == pytest.approx(_loss(model, X, y).item(), rel=1e-15)
    # A conv channel's mass is that of its interior neurons in neurosim (the largest, since
    # border neurons' windows reach into the padding).
    network = network_from_torch(model, input_shape=(2, 6, 6))
    per_neuron = network.layers[0].incoming_mass().reshape(3, 6, 6)
    np.testing.assert_allclose(per_neuron[:, 1:-1, 1:-1], masses[0][:, None, None] *
                               np.ones((3, 4, 4)), rtol=1e-12)
    np.testing.assert_allclose(per_neuron.max(axis=(1, 2)), masses[0], rtol=1e-12)
    assert (per_neuron[:, 0, 0] < masses[0]).all()


def test_sensitivity_gradient_through_conv_layers():
    model, X, y = _tiny_conv_model(seed=1)

    def value():
        return regularizer_terms(model, X, y, lam=0.7, mu=0.0, nu=0.0)["sensitivity"]

    term = value()
    params = [p for m in _weighted_layers(model) for p in (m.weight, m.bias)]
    grads = torch.autograd.grad(term, params)
    rng = np.random.default_rng(0)
    h = 1e-6
    for param, grad in zip(params, grads):
        for _ in range(3):
            k = int(rng.integers(param.numel()))
            flat = param.data.view(-1)
            original = flat[k].item()
            flat[k] = original + h
            up = value().item()
            flat[k] = original - h
            down = value().item()
            flat[k] = original
            numeric = (up - down) / (2 * h)
            assert grad.reshape(-1)[k].item() == pytest.approx(numeric, rel=1e-5, abs=1e-10)


# --- network_to_torch ---------------------------------------------------------------------------

def _conv_net(dtype):
    """Every transform and conv setting: asymmetric padding, dilation, groups, strides."""
    rng = np.random.default_rng(0)

    def K(c_out, c_in, k):
        return rng.normal(0, 0.4, size=(c_out, c_in) + k)

    items = [
        Conv2d.build(K(4, 2, (3, 2)), rng.normal(0, 0.1, 4), in_shape=(2, 9, 8),
                     padding=(1, 0, 0, 1), activation=make_activation("leaky_relu", 0.2)),
        MaxPool2d(kernel=2, stride=1, padding=(0, 1, 1, 0)),
        Conv2d.build(K(4, 1, (3, 3)), rng.normal(0, 0.1, 4), in_shape=(4, 8, 8), stride=(1, 2),
                     padding="same", dilation=2, groups=4, activation="gelu_tanh"),
        AvgPool2d(kernel=3, stride=1, padding=1, count_include_pad=False),
        AvgPool2d(kernel=2, stride=2, padding=(1, 0, 0, 1), count_include_pad=False),
        Conv2d.build(K(6, 2, (2, 2)), None, in_shape=(4, 4, 2), padding=(0, 1, 1, 1), groups=2,
                     activation=make_activation("hardsigmoid", 0.3, 0.4)),
        AvgPool2d(kernel=2, stride=1, padding=(1, 0, 1, 0), count_include_pad=True),
        MaxPool2d(kernel=3, stride=2, padding=1),
        Flatten("hwc"),
        Dense(rng.normal(0, 0.3, (7, 6 * 2 * 2)), rng.normal(0, 0.1, 7),
              make_activation("elu", 0.5)),
        Dense(rng.normal(0, 0.3, (3, 7)), rng.normal(0, 0.1, 3)),
    ]
    return ns.Network(items, dtype=dtype)


def _gap_net(dtype, layout="NCHW"):
    rng = np.random.default_rng(1)
    acts = ["silu", "hardswish", "softplus", "tanh", "sigmoid", "relu", "relu6",
            make_activation("hardtanh", -0.5, 2.0), "hardsigmoid", "gelu"]
    items = [Conv2d.build(rng.normal(0, 0.5, (3, 3, 3, 3)), rng.normal(0, 0.1, 3),
                          in_shape=(3, 6, 5), padding=1, activation=acts[0])]
    for act in acts[1:4]:
        items.append(Conv2d.build(rng.normal(0, 0.5, (3, 3, 3, 3)), rng.normal(0, 0.1, 3),
                                  in_shape=(3, 6, 5), padding="same", activation=act))
    items += [MaxPool2d(kernel=2), Conv2d.build(rng.normal(0, 0.5, (4, 3, 1, 1)), None,
                                                in_shape=(3, 3, 2), activation=acts[4]),
              GlobalAvgPool2d(keepdims=True), Flatten("chw")]
    width = 4
    for act in acts[5:]:
        items.append(Dense(rng.normal(0, 0.6, (5, width)), rng.normal(0, 0.1, 5),
                           make_activation(act)))
        width = 5
    items.append(Dense(rng.normal(0, 0.6, (4, width)), rng.normal(0, 0.1, 4)))
    head = ns.Network(items, dtype=dtype, layout=layout)
    no_keepdims = ns.Network(
        [Conv2d.build(rng.normal(0, 0.5, (2, 3, 3, 3)), rng.normal(0, 0.1, 2), in_shape=(3, 6, 5),
                      padding=(2, 0, 1, 1), activation="relu"),
         GlobalAvgPool2d(keepdims=False), Dense(rng.normal(0, 0.6, (3, 2)), np.zeros(3))],
        dtype=dtype, layout=layout)
    return head, no_keepdims


def _torch_outputs(network, X, model=None):
    model = model if model is not None else network_to_torch(network)
    flat = network.check_input(X)
    inputs = torch.as_tensor(flat.reshape((flat.shape[0],) + tuple(network.input_shape)))
    with torch.no_grad():
        return model(inputs).numpy()


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-12),
                                               (np.float32, 1e-5, 1e-6)])
def test_network_to_torch_round_trip(dtype, rtol, atol):
    rng = np.random.default_rng(2)
    net = _conv_net(dtype)
    model = network_to_torch(net)
    names = [type(m).__name__ for m in model]
    assert names == ["ZeroPad2d", "Conv2d", "LeakyReLU", "ConstantPad2d", "MaxPool2d",
                     "ZeroPad2d", "Conv2d", "GELU", "AvgPool2d", "AvgPoolValid", "ZeroPad2d",
                     "Conv2d", "HardSigmoid", "ZeroPad2d", "AvgPool2d", "MaxPool2d", "FlattenHWC",
                     "Linear", "ELU", "Linear"]
    assert all(p.dtype == (torch.float64 if dtype == np.float64 else torch.float32)
               for p in model.parameters())
    X = rng.normal(size=(16, 2, 9, 8)).astype(dtype)
    np.testing.assert_allclose(_torch_outputs(net, X, model), net.forward(X), rtol=rtol, atol=atol)
    for layout in ("NCHW", "NHWC"):
        for other in _gap_net(dtype, layout):
            X = rng.normal(size=(16,) + other.data_shape).astype(dtype)
            np.testing.assert_allclose(_torch_outputs(other, X), other.forward(X), rtol=rtol,
                                       atol=atol)
    mlp = ns.Network.random([6, 5, 4], activation="tanh", dtype=dtype)
    X = rng.normal(size=(10, 6)).astype(dtype)
    np.testing.assert_allclose(_torch_outputs(mlp, X), mlp.forward(X), rtol=rtol, atol=atol)
    # The bundled CNN (read from PyTorch with folded BatchNorms) and the MLP.
    from neurosim.datasets import load_digits_conv_model, load_digits_model, load_digits_test

    X, _ = load_digits_test()
    for bundled in (load_digits_conv_model(), load_digits_model()):
        np.testing.assert_allclose(_torch_outputs(bundled, X), bundled.forward(X), rtol=1e-5,
                                   atol=1e-5)


@dataclasses.dataclass
class _Scaled(Dense):
    """A registered layer type of its own (a Dense subclass neurosim cannot assume the form of)."""

    kind = "test_train_conv_scaled"

    def cast(self, dtype, index):
        d = super().cast(dtype, index)
        return _Scaled(d.W, d.b, d.activation)


def test_network_to_torch_refuses_what_has_no_torch_form():
    ns.register_layer(_Scaled)
    try:
        rng = np.random.default_rng(0)
        net = ns.Network([_Scaled(rng.normal(size=(3, 4)), np.zeros(3), make_activation("relu")),
                          Dense(rng.normal(size=(2, 3)), np.zeros(2))])
        with pytest.raises(UnsupportedLayerError, match=r"layer 1 is a _Scaled.*Dense and Conv2d"):
            network_to_torch(net)
    finally:
        LAYERS.pop(_Scaled.kind, None)
    with pytest.raises(ValidationError, match="network"):
        network_to_torch("digits")


# --- fine-tuning ----------------------------------------------------------------------------------

def test_fine_tuning_is_adam_on_network_to_torch(digits):
    from neurosim.datasets import load_digits_conv_model

    init = load_digits_conv_model()
    X, y = digits.X_train[:256], digits.y_train[:256]
    net = train(X, y, init=init, epochs=2, lr=1e-3, batch_size=64, seed=5, crash_p=0.0)
    # The same steps written out by hand from network_to_torch(init).
    torch.manual_seed(5)
    generator = torch.Generator().manual_seed(5)
    model = network_to_torch(init, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt = torch.as_tensor(X.reshape(-1, 1, 8, 8))
    yt = torch.as_tensor(y)
    for _ in range(2):
        order = torch.randperm(256, generator=generator)
        for start in range(0, 256, 64):
            idx = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    weighted = _weighted_layers(model)
    assert len(weighted) == len(net.layers)
    for layer, module in zip(net.layers, weighted):
        np.testing.assert_array_equal(layer.synapse_weights, module.weight.detach().numpy())
        np.testing.assert_array_equal(layer.b, module.bias.detach().numpy())
    assert net.kinds == init.kinds and net.input_shape == init.input_shape
    assert not np.array_equal(net.layers[0].K, init.layers[0].K)
    info = net.metadata["training"]
    assert info["config"]["arch"] is None and info["config"]["input_shape"] == [1, 8, 8]
    assert info["init"]["n_params"] == init.n_params


def test_fine_tuning_keeps_a_channels_last_network(digits):
    rng = np.random.default_rng(3)
    init = ns.Network([
        Conv2d.build(rng.normal(0, 0.5, (4, 1, 3, 3)), np.zeros(4), in_shape=(1, 8, 8),
                     padding="same", activation="relu"),
        MaxPool2d(kernel=2), Flatten("hwc"),
        Dense(rng.normal(0, 0.2, (10, 64)), np.zeros(10))], dtype=np.float64, layout="NHWC")
    X_nhwc = digits.X_train.reshape(-1, 8, 8, 1)
    net = train(X_nhwc, digits.y_train, init=init, epochs=3, lr=3e-3, batch_size=32,
                crash_p=0.1, mu=1e-4, seed=0, X_val=digits.X_test.reshape(-1, 8, 8, 1),
                y_val=digits.y_test)
    assert net.layout == "NHWC" and net.dtype == np.float32
    assert [t.order for pre in net.pre for t in pre if isinstance(t, Flatten)] == ["hwc"]
    before = _accuracy(init, digits.X_test.reshape(-1, 8, 8, 1), digits.y_test)
    after = _accuracy(net, digits.X_test.reshape(-1, 8, 8, 1), digits.y_test)
    assert net.metadata["training"]["val_accuracy"] == after
    assert after > max(before + 0.3, 0.8)  # random start near 0.1


def test_fine_tuning_checks_its_inputs(digits):
    from neurosim.datasets import load_digits_conv_model

    init = load_digits_conv_model()
    with pytest.raises(ShapeError, match="shape"):
        train(np.zeros((10, 63), np.float32), np.zeros(10, np.int64), init=init, epochs=1)
    with pytest.raises(ShapeError, match="10 outputs"):
        train(digits.X_train[:20], np.arange(20), init=init, epochs=1)
    with pytest.raises(ValidationError, match="not both"):
        train(digits.X_train[:20], digits.y_train[:20], init=init, arch=SMALL, epochs=1)
    with pytest.raises(ShapeError, match="input_shape"):
        train(digits.X_train[:20], digits.y_train[:20], init=init, input_shape=(1, 4, 16),
              epochs=1)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_conv_and_fine_tune(capsys, tmp_path, digits):
    first = tmp_path / "cnn.h5"
    code, out, err = run_cli(capsys, "train", "--arch", SMALL, "--epochs", "2", "--lr", "3e-3",
                             "--batch-size", "32", "-o", first)
    assert code == 0, err
    assert "'CNN trained on digits' 1x8x8 -> conv2d4x8x8 maxpool2d flatten dense16" in out
    cnn = ns.load_network(first)
    assert cnn.metadata["name"] == "CNN trained on digits"
    assert cnn.metadata["training"]["config"]["input_shape"] == [1, 8, 8]  # the digits' default
    assert cnn.metadata["folded_batchnorm"]
    accuracy = _accuracy(cnn, digits.X_test, digits.y_test)
    assert f"test {accuracy:.2%}" in out
    tuned = tmp_path / "tuned.h5"
    code, out, err = run_cli(capsys, "train", "--init", first, "--epochs", "1", "--lr", "1e-3",
                             "--crash-p", "0.1", "--lambda", "1e-4", "--json", "-o", tuned)
    assert code == 0, err
    meta = json.loads(out)
    assert meta["name"] == "CNN fine-tuned on digits"
    assert meta["fine_tuned_from"] == str(first)
    assert meta["training"]["init"]["name"] == "CNN trained on digits"
    assert meta["training"]["config"]["crash_p"] == 0.1
    net = ns.load_network(tuned)
    assert net.kinds == cnn.kinds
    assert meta["training"]["val_accuracy"] == _accuracy(net, digits.X_test, digits.y_test)
    # One epoch with a small rate moves the weights a little from where --init put them.
    change = np.abs(net.layers[0].K - cnn.layers[0].K).max()
    assert 0 < change < 0.05 * np.abs(cnn.layers[0].K).max() + 0.02


def test_cli_fine_tunes_a_torchscript_conv_model(capsys, tmp_path, digits):
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(48, 10)).eval()
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    out_path = tmp_path / "tuned.h5"
    # A PyTorch file does not record the image shape: --input-shape gives it.
    code, out, err = run_cli(capsys, "train", "--init", path, "--epochs", "1", "-o", out_path)
    assert code == 2 and out == "" and "input_shape" in err and len(err.splitlines()) == 1
    code, out, err = run_cli(capsys, "train", "--init", path, "--input-shape", "1,8,8",
                             "--epochs", "3", "--lr", "3e-3", "--batch-size", "32",
                             "-o", out_path)
    assert code == 0, err
    assert "'MLP" not in out and "'CNN fine-tuned on digits'" in out
    net = ns.load_network(out_path)
    assert net.kinds == ["conv2d", "maxpool2d", "flatten", "dense"]
    assert net.metadata["fine_tuned_from"] == str(path)
    assert _accuracy(net, digits.X_test, digits.y_test) > 0.7  # from a random start


def test_cli_train_fc_arch_regression(capsys, tmp_path, diabetes):
    path = tmp_path / "reg.npz"
    code, out, err = run_cli(capsys, "train", "--data", "diabetes", "--arch",
                             "fc32,bn,relu,dropout0.1,fc16,tanh", "--epochs", "30", "--json",
                             "-o", path)
    assert code == 0, err
    meta = json.loads(out)
    assert meta["name"] == "MLP trained on diabetes"
    assert meta["training"]["task"] == "regression"
    assert meta["training"]["config"]["input_shape"] == [10]
    net = ns.load_network(path)
    assert net.widths == [10, 32, 16, 1] and net.kinds == ["dense", "dense", "dense"]
    mse = float(np.mean((net.forward(diabetes.X_test)[:, 0] - diabetes.y_test) ** 2))
    assert meta["training"]["val_mse"] == pytest.approx(mse, rel=1e-6)
    assert mse < 0.8  # the constant predictor scores about 1


def test_batchnorm_skips_a_last_batch_of_one(digits):
    # 33 samples in batches of 32: a BatchNorm1d cannot train on the last one alone.
    net = train(digits.X_train[:33], digits.y_train[:33], arch="fc8,bn,relu", batch_size=32,
                epochs=2, seed=0)
    assert net.widths == [64, 8, 10] and len(net.metadata["folded_batchnorm"]) == 1
    assert math.isfinite(net.metadata["training"]["final"]["loss"])


# --- bad specs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, token", [
    ("conv", "conv"), ("conv8x", "conv8x"), ("conv8k3k5", "conv8k3k5"), ("conv8g2dw", "conv8g2dw"),
    ("conv0", "conv0"), ("fc0", "fc0"), ("maxpool", "maxpool"), ("dropout1.5", "dropout1.5"),
    ("dropout", "dropout"), ("bn,relu", "bn"), ("conv8,maxpool2,relu", "relu"),
    ("conv8,relu,relu", "relu"), ("conv8,relu,bn", "bn"), ("fc8,softmax", "softmax"),
    ("conv8,,relu", "token 2"), ("mish", "mish"),
])
def test_bad_arch_tokens(spec, token):
    with pytest.raises(ValidationError, match="grammar") as info:
        parse_arch(spec)
    assert token in str(info.value) and "conv<C>" in str(info.value)
    X = np.zeros((8, 64), np.float32)
    with pytest.raises(ValidationError, match="grammar"):
        train(X, np.arange(8) % 2, arch=spec, input_shape=(1, 8, 8), epochs=1)


@pytest.mark.parametrize("spec, shape, words", [
    ("conv8g3", (1, 8, 8), "token 1 'conv8g3' has 3 groups"),
    ("conv6dw,conv4dw", (2, 8, 8), "token 2 'conv4dw'"),
    ("maxpool16", (1, 8, 8), "larger than its input"),
    ("fc8,conv8", (1, 8, 8), "token 2 'conv8' needs an image"),
    ("conv8k9valid", (1, 8, 8), "does not fit"),
    ("gap", (64,), "needs an image"),
])
def test_arch_shape_errors_name_the_token(spec, shape, words):
    with pytest.raises(ShapeError, match="Architecture") as info:
        build_arch_model(spec, shape, 3)
    assert words in str(info.value)


def test_image_architecture_needs_an_input_shape(digits):
    X, y = digits.X_train[:20], digits.y_train[:20]
    with pytest.raises(ShapeError, match=r"input_shape=\(C, H, W\).*--input-shape"):
        train(X, y, arch=SMALL, epochs=1)
    with pytest.raises(ShapeError, match="holds 48 values"):
        train(X, y, arch=SMALL, input_shape=(3, 4, 4), epochs=1)
    with pytest.raises(ShapeError, match="input_shape"):
        train(X.reshape(-1, 1, 8, 8), y, arch=SMALL, input_shape=(1, 4, 16), epochs=1)
    with pytest.raises(ValidationError, match="input_shape"):
        train(X, y, hidden=(8,), input_shape=(1, 8, 8), epochs=1)
    with pytest.raises(ValidationError, match="'input_shape'"):
        train(X, y, arch=SMALL, input_shape=(1, 0, 8), epochs=1)


@pytest.mark.parametrize("argv, words", [
    (["--arch", "conv8,bn,relu,foo"], "'foo'"),
    (["--arch", "conv8", "--hidden", "8"], "--arch"),
    (["--init", "digits-conv", "--arch", "conv8"], "--init"),
    (["--init", "digits-conv", "--hidden", "8"], "--hidden"),
    (["--arch", "conv8", "--input-shape", "1,8"], "--input-shape"),
    (["--arch", "conv8", "--input-shape", "2,8,8"], "input_shape"),
    (["--arch", "conv8", "--data", "diabetes"], "--input-shape"),
    (["--arch", "maxpool16"], "maxpool16"),
    (["--init", "missing.h5"], "missing.h5"),
    (["--hidden", "8", "--input-shape", "1,8,8"], "--input-shape"),
])
def test_cli_train_conv_bad_input(capsys, tmp_path, argv, words):
    path = tmp_path / "model.h5"
    code, out, err = run_cli(capsys, "train", "--epochs", "1", *argv, "-o", path)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurosim train: error:")
    assert words in lines[0]
    assert not path.exists()
