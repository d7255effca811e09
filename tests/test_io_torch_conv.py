"""Reading convolutional PyTorch networks: Conv2d, BatchNorm (folded), pooling, Flatten, the
activations, TorchScript (script and trace) and state_dicts. Every conversion is checked
against torch's own forward pass (float64, eval mode, unless the test is about float32)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

# torch >= 2.9 deprecates torch.jit.*; the tests still use it to write TorchScript files.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    # torch's own note on padding="same" with even kernels (it pads a copy of the input).
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
]

from neurosim import load_network  # noqa: E402
from neurosim.errors import FileFormatError, ShapeError, UnsupportedLayerError  # noqa: E402
from neurosim.io.torch import SUPPORTED_MODULES, load_torch, network_from_torch  # noqa: E402
from neurosim.layers import Conv2d, Flatten  # noqa: E402
from neurosim.network import Network  # noqa: E402

RTOL64, ATOL64 = 1e-9, 1e-11


def _x(shape, n=5, seed=0, scale=1.0, dtype=np.float64):
    return (scale * np.random.default_rng(seed).normal(size=(n,) + tuple(shape))).astype(dtype)


def _torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _randomize_batchnorms(model, seed=0):
    """Non-trivial inference statistics and affine parameters for every BatchNorm."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(n, generator=gen))
                module.running_var.copy_(0.3 + 2 * torch.rand(n, generator=gen))
                if module.affine:
                    module.weight.copy_(torch.randn(n, generator=gen))
                    module.bias.copy_(torch.randn(n, generator=gen))
    return model


def _head(features, input_shape, n_out=3):
    """``features`` + Flatten + Linear(..., n_out): the Linear's size from a torch forward."""
    with torch.no_grad():
        n = features(torch.zeros((1,) + tuple(input_shape), dtype=torch.float64)).numel()
    return nn.Sequential(features, nn.Flatten(), nn.Linear(n, n_out).double())


def _check(model, input_shape, seed=0, scale=1.0, n=5):
    """Convert the float64 ``model`` and compare with torch on random inputs; returns the net."""
    torch.manual_seed(seed)
    model = model.double().eval()
    net = network_from_torch(model, input_shape=input_shape)
    x = _x(input_shape, n=n, seed=seed, scale=scale)
    ref = _torch_out(model, x)
    assert net.dtype == np.float64
    np.testing.assert_allclose(net.forward(x), ref, rtol=RTOL64, atol=ATOL64)
    # Flat rows in C, H, W order are the same data.
    np.testing.assert_allclose(net.forward(x.reshape(n, -1)), ref, rtol=RTOL64, atol=ATOL64)
    return net


def _lenet():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 4 x 4 x 4
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AvgPool2d(2),              # 6 x 1 x 1
        nn.Flatten(), nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3),
    )


# --- whole networks ----------------------------------------------------------------------------
def test_lenet():
    torch.manual_seed(0)
    net = _check(_lenet(), (1, 8, 8))
    assert net.input_shape == (1, 8, 8) and net.layout == "NCHW"
    assert [type(layer).__name__ for layer in net.layers] == ["Conv2d", "Conv2d", "Dense", "Dense"]
    assert [a.name for a in net.activations] == ["relu", "relu", "relu", "identity"]
    assert net.metadata["source_format"] == "torch-module"
    assert "folded_batchnorm" not in net.metadata


def test_lenet_float32_and_load_network():
    torch.manual_seed(1)
    model = _lenet().eval()
    net = load_network(model, input_shape=(1, 8, 8))
    assert net.dtype == np.float32
    x = _x((1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


def test_mlp_with_batchnorm1d():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(),
        nn.Linear(7, 6), nn.BatchNorm1d(6, affine=False, eps=1e-3), nn.Tanh(),
        nn.Linear(6, 3),
    )
    # A few training steps give real running statistics (and moved affine parameters).
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        x = torch.randn(32, 5) * 2 + 1
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.allclose(model[1].running_mean, torch.zeros(7))
    net = _check(model, (5,))
    assert net.widths == [5, 7, 6, 3]
    assert [a.name for a in net.activations] == ["relu", "tanh", "identity"]
    folded = net.metadata["folded_batchnorm"]
    assert [(f["batchnorm"].split(": ")[-1], f["into"], f["eps"]) for f in folded] == [
        ("layer 1 (BatchNorm1d)", "0", 1e-5), ("layer 4 (BatchNorm1d)", "3", 1e-3)]
    # Without input_shape an MLP converts as before.
    assert network_from_torch(model).equals(net)


def test_conv_with_batchnorm2d():
    torch.manual_seed(3)
    features = nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3, eps=1e-3, affine=False),
    )
    model = _randomize_batchnorms(_head(features.double(), (2, 7, 6)))
    net = _check(model, (2, 7, 6))
    folded = net.metadata["folded_batchnorm"]
    assert [f["into"] for f in folded] == ["0.0", "0.3"]
    assert [f["eps"] for f in folded] == [1e-5, 1e-3]
    assert "layer 0.1 (BatchNorm2d)" in folded[0]["batchnorm"]


@pytest.mark.parametrize("conv, input_shape", [
    (nn.Conv2d(2, 3, 2, padding="same"), (2, 5, 6)),                    # even kernel
    (nn.Conv2d(2, 3, 4, padding="same"), (2, 6, 5)),
    (nn.Conv2d(2, 3, (2, 3), padding="same", dilation=(2, 1)), (2, 6, 7)),
    (nn.Conv2d(2, 3, 3, padding="valid", bias=False), (2, 6, 7)),
    (nn.Conv2d(2, 4, 3, stride=2, padding=1), (2, 7, 8)),
    (nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2)), (2, 7, 6)),
    (nn.Conv2d(3, 4, 3, dilation=2, padding=2), (3, 7, 7)),
    (nn.Conv2d(4, 6, 3, groups=2), (4, 6, 6)),
    (nn.Conv2d(3, 3, 3, groups=3, padding=1), (3, 6, 5)),                # depthwise
    (nn.Conv2d(3, 6, 3, groups=3, stride=(1, 2), bias=False), (3, 6, 7)),  # depthwise x 2
], ids=["same2", "same4", "same2x3-dil", "valid-nobias", "stride2", "stride-pad-tuples",
        "dilation2", "groups2", "depthwise", "depthwise-multiplier"])
def test_conv_settings(conv, input_shape):
    torch.manual_seed(4)
    net = _check(_head(nn.Sequential(conv.double(), nn.ReLU()), input_shape), input_shape)
    layer = net.layers[0]
    assert isinstance(layer, Conv2d) and layer.groups == conv.groups
    assert layer.stride == conv.stride and layer.dilation == conv.dilation
    if conv.bias is None:
        np.testing.assert_array_equal(layer.b, 0.0)


ACTIVATIONS = [
    (nn.ReLU(), "relu"), (nn.ReLU6(), "hardtanh(0, 6)"),
    (nn.Hardtanh(-0.5, 1.5), "hardtanh(-0.5, 1.5)"),
    (nn.LeakyReLU(0.2), "leaky_relu(alpha=0.2)"), (nn.ELU(0.7), "elu(alpha=0.7)"),
    (nn.GELU(), "gelu"), (nn.GELU(approximate="tanh"), "gelu_tanh"), (nn.SiLU(), "silu"),
    (nn.Hardswish(), "hardswish"), (nn.Hardsigmoid(), None), (nn.Tanh(), "tanh"),
    (nn.Sigmoid(), "sigmoid"), (nn.Softplus(), "softplus"),
]


@pytest.mark.parametrize("act, name", ACTIVATIONS, ids=[type(a).__name__ + (
    "_tanh" if getattr(a, "approximate", "none") == "tanh" else "") for a, _ in ACTIVATIONS])
def test_every_activation(act, name):
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), act, nn.Flatten(), nn.Linear(3 * 4 * 4, 6), act,
        nn.Linear(6, 2),
    )
    # The same activation object twice (forward runs it twice; named_children() lists it
    # once). Inputs scaled so that every piece of the activation (clips, negative side) is used.
    net = _check(model, (2, 4, 4), scale=4.0)
    if name is not None:
        assert [str(a) for a in net.activations[:2]] == [name, name]
    else:
        assert net.activations[0].name == "hardsigmoid"


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_activations(how):
    """Scripted modules keep the activations' settings as attributes; traced ones only in
    their graphs."""
    torch.manual_seed(14)
    layers = []
    for act, _ in ACTIVATIONS:
        layers += [nn.Linear(4, 4), act]
    model = nn.Sequential(*layers, nn.Linear(4, 2)).double().eval()
    x = _x((4,), scale=4.0)
    ts = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.from_numpy(x))
    net = network_from_torch(ts)
    assert net.equals(network_from_torch(model))
    assert [str(a) for a in net.activations[:5]] == [name for _, name in ACTIVATIONS[:5]]
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=RTOL64, atol=ATOL64)


def test_maxpool_with_padding_reads_minus_infinity():
    torch.manual_seed(6)
    # No activation before the pooling: the conv outputs negative values, so a padding read
    # as 0 instead of -inf would change the result.
    features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                             nn.Conv2d(3, 4, 2),
                             nn.MaxPool2d((2, 3), stride=(1, 2), padding=(1, 1)),
                             # a monotone activation after a max pooling is moved before it
                             nn.Tanh())
    net = _check(_head(features.double(), (2, 7, 8)), (2, 7, 8))
    assert [a.name for a in net.activations] == ["identity", "tanh", "identity"]


@pytest.mark.parametrize("include", [True, False])
def test_avgpool_count_include_pad(include):
    torch.manual_seed(7)
    features = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(),
                             nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=include))
    net = _check(_head(features.double(), (2, 8, 9)), (2, 8, 9))
    assert net.pre[1][0].count_include_pad is include


@pytest.mark.parametrize("size", [1, (1, 1), (1, None)])
def test_adaptive_avgpool_1_is_global_average(size):
    torch.manual_seed(8)
    input_shape = (2, 6, 1) if size == (1, None) else (2, 6, 5)
    model = nn.Sequential(nn.Conv2d(2, 4, (3, 1), padding=(1, 0)), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(size), nn.Flatten(), nn.Linear(4, 3))
    net = _check(model, input_shape)
    assert net.pre[1][0].kind == "global_avgpool2d"


def test_vgg16_float32():
    """The 13-conv VGG16 with BatchNorm at 3 x 32 x 32, float32, on 2 inputs."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    torch.manual_seed(9)
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    model = nn.Sequential(nn.Sequential(*layers), nn.Flatten(), nn.Linear(512, 10))
    # Real running statistics: a few forward passes in training mode (cumulative average).
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32))
    model.eval()
    net = network_from_torch(model, input_shape=(3, 32, 32))
    assert net.dtype == np.float32 and net.n_layers == 14
    assert len(net.metadata["folded_batchnorm"]) == 13
    x = _x((3, 32, 32), n=2, seed=9, dtype=np.float32)
    out = net.forward(x)
    ref = _torch_out(model, x)
    exact = _torch_out(model.double(), x.astype(np.float64))  # the same weights in float64
    scale = np.abs(exact).max()
    # neurosim's float32 forward is within float32 accuracy of the exact result ...
    np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-5 * scale)
    # ... and torch's float32 one is off by its own rounding (about 1e-5 of the scale after 13
    # layers here), so the two float32 results differ by at most the sum of both errors.
    torch_error = np.abs(ref - exact).max()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * scale + torch_error)


def test_flatten_order_is_torch_chw():
    """Flatten after a conv whose C, H, W all differ, into a Linear with generic weights."""
    torch.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(2, 3, (2, 3), padding=(1, 1)), nn.ReLU(),  # 3 x 4 x 5
                          nn.Flatten(), nn.Linear(60, 4))
    net = _check(model, (2, 3, 5))
    assert net.shapes[1] == (3, 4, 5)
    assert net.pre[1][0] == Flatten("chw", in_shape=(3, 4, 5))
    # The comparison has teeth: the channels-last order gives other outputs.
    items = [Flatten("hwc") if isinstance(item, Flatten) else item for item in net.items]
    wrong = Network(items, input_shape=net.input_shape)
    x = _x((2, 3, 5))
    assert not np.allclose(wrong.forward(x), _torch_out(model, x), rtol=1e-3)


def test_flatten_of_a_vector_and_of_an_image_input():
    torch.manual_seed(11)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Flatten(), nn.Linear(5, 2))
    _check(mlp, (6,))
    # An MLP on images: with input_shape the network takes N x C x H x W data.
    net = _check(nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)),
                 (1, 2, 3))
    assert net.input_shape == (1, 2, 3) and net.layout == "NCHW"


# --- TorchScript and state_dicts -------------------------------------------------------------
def _rich_conv_net():
    """Every conv-side setting a TorchScript module has to carry."""
    torch.manual_seed(12)
    model = nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2), groups=2, bias=False),
        nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2, stride=1, padding=1),
        nn.Sequential(nn.Conv2d(4, 4, 2, padding="same", dilation=2),
                      nn.BatchNorm2d(4, affine=False, eps=1e-3)),
        nn.Hardtanh(-1.0, 2.0),
        nn.AvgPool2d(2, padding=1, count_include_pad=False),
        nn.Conv2d(4, 3, 3, padding="valid"), nn.ELU(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 5), nn.GELU(approximate="tanh"), nn.Dropout(0.2),
        nn.Linear(5, 4), nn.LeakyReLU(0.1), nn.Identity(),
        nn.Linear(4, 2),
    )
    return _randomize_batchnorms(model.double()).eval()


INPUT = (2, 9, 8)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_conv_net(tmp_path, how):
    model = _rich_conv_net()
    eager = _check(model, INPUT)
    x = _x(INPUT, n=3, seed=1)
    scripted = torch.jit.script(model) if how == "script" else torch.jit.trace(
        model, torch.from_numpy(x))
    net = network_from_torch(scripted, input_shape=INPUT)
    assert net.metadata["source_format"] == "torchscript"
    assert net.equals(eager) and net.layout == "NCHW"
    path = tmp_path / f"conv_{how}.pt"
    torch.jit.save(scripted, str(path))
    loaded = load_network(path, input_shape=INPUT)
    assert loaded.equals(eager)
    assert [f["into"] for f in loaded.metadata["folded_batchnorm"]] == ["0", "4.0"]
    np.testing.assert_allclose(loaded.forward(x), _torch_out(model, x), rtol=RTOL64, atol=ATOL64)
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2d\).*input_shape=\(C, H, W\)"):
        load_network(path)


def test_state_dict_with_architecture_conv_net(tmp_path):
    model = _rich_conv_net()
    path = tmp_path / "conv_sd.pt"
    torch.save(model.state_dict(), path)
    fresh = _rich_conv_net()  # same architecture; other weights and statistics
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    for module in fresh.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    net = load_torch(path, architecture=fresh.eval(), input_shape=INPUT)
    assert net.metadata["source_format"] == "torch-state_dict"
    assert net.equals(network_from_torch(model, input_shape=INPUT))
    x = _x(INPUT)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=RTOL64, atol=ATOL64)
    # Without an architecture the conv kernels cannot be placed.
    with pytest.raises(UnsupportedLayerError, match=r"conv_sd.pt.*'0.weight'.*architecture="):
        load_network(path, activations=["relu"] * 6)


def test_state_dict_mlp_on_images(tmp_path):
    torch.manual_seed(13)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    path = tmp_path / "mlp.pt"
    torch.save(model.state_dict(), path)
    net = load_torch(path, activations=["relu", "identity"], input_shape=(3, 2, 2))
    assert net.input_shape == (3, 2, 2) and net.layout == "NCHW"
    x = _x((3, 2, 2))
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=RTOL64, atol=ATOL64)
    with pytest.raises(ShapeError, match=r"input_shape \(3, 2, 3\) holds 18 values.*12 inputs"):
        load_torch(path, activations=["relu", "identity"], input_shape=(3, 2, 3))


# --- errors ------------------------------------------------------------------------------------
def test_batchnorm_with_nothing_to_fold_into():
    with pytest.raises(UnsupportedLayerError, match=r"layer 0 \(BatchNorm2d\).*nothing before it"):
        network_from_torch(nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.Flatten(),
                                         nn.Linear(72, 2)), input_shape=(1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match=r"layer 0 \(BatchNorm1d\).*nothing before it"):
        network_from_torch(nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)))
    with pytest.raises(UnsupportedLayerError,
                       match=r"layer 2 \(BatchNorm2d\) is a BatchNorm with the relu of 0 "
                             r"before it"):
        network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2),
                                         nn.Flatten(), nn.Linear(72, 2)), input_shape=(1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match=r"layer 2 \(BatchNorm2d\).*maxpool2d"):
        network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.BatchNorm2d(2),
                                         nn.Flatten(), nn.Linear(18, 2)), input_shape=(1, 8, 8))


def _conv_net_with(module, n_flat):
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), module, nn.Flatten(),
                         nn.Linear(n_flat, 2))


@pytest.mark.parametrize("module, match", [
    (nn.AdaptiveAvgPool2d(2),
     r"\(AdaptiveAvgPool2d\) has output size \(2, 2\); only output size 1"),
    (nn.MaxPool2d(2, ceil_mode=True), r"\(MaxPool2d\) has ceil_mode=True"),
    (nn.MaxPool2d(2, dilation=2), r"\(MaxPool2d\) has dilation=2"),
    (nn.MaxPool2d(2, return_indices=True), r"\(MaxPool2d\) returns indices"),
    (nn.AvgPool2d(2, ceil_mode=True), r"\(AvgPool2d\) has ceil_mode=True"),
    (nn.AvgPool2d(2, divisor_override=3), r"\(AvgPool2d\) has divisor_override=3"),
    (nn.BatchNorm2d(2, track_running_stats=False),
     r"\(BatchNorm2d\) has track_running_stats=False"),
    (nn.Flatten(start_dim=2), r"\(Flatten\) has start_dim=2"),
    (nn.Softplus(threshold=5.0), r"\(Softplus\) is a Softplus with threshold=5"),
    (nn.Upsample(scale_factor=2), r"\(Upsample\) is not supported\. Supported modules"),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_unsupported_settings(module, match):
    model = _conv_net_with(module, 18)
    with pytest.raises(UnsupportedLayerError, match=r"the Sequential module: layer 2 " + match):
        network_from_torch(model, input_shape=(1, 8, 8))


@pytest.mark.parametrize("how", ["eager", "script", "trace"])
def test_padding_mode_must_be_zeros(how):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                          nn.Linear(128, 2)).eval()
    if how == "script":
        model = torch.jit.script(model)
    elif how == "trace":
        model = torch.jit.trace(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match=r"layer 0 \(Conv2d\).*padding_mode"):
        network_from_torch(model, input_shape=(1, 8, 8))


def test_traced_settings_that_cannot_be_read():
    class Flatten(nn.Module):  # named like nn.Flatten, traces to other ops
        def forward(self, x):
            return x.reshape(x.shape[0], -1)

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), Flatten(), nn.Linear(72, 2)).eval()
    traced = torch.jit.trace(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(UnsupportedLayerError,
                       match=r"layer 2 \(Flatten\): cannot read the start_dim and end_dim of this "
                             r"traced TorchScript module: its graph computes .*aten::reshape.*"
                             r"torch.jit.script"):
        network_from_torch(traced, input_shape=(1, 8, 8))


def test_missing_input_shape():
    with pytest.raises(ShapeError) as info:
        network_from_torch(_lenet())
    message = str(info.value)
    assert "layer 0 (Conv2d)" in message and "pass input_shape=(C, H, W)" in message
    with pytest.raises(ShapeError, match=r"layer 0 \(MaxPool2d\).*input_shape=\(C, H, W\)"):
        network_from_torch(nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 2)))


def test_shapes_that_do_not_fit():
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2d\) takes 1 input channels.*\(3, 8, 8\)"):
        network_from_torch(_lenet(), input_shape=(3, 8, 8))
    with pytest.raises(ShapeError, match=r"layer 2 \(Linear\) receives an image of shape "
                                         r"\(2, 6, 6\).*add an nn.Flatten"):
        network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(6, 2)),
                           input_shape=(1, 8, 8))
    with pytest.raises(ShapeError, match=r"layer 3 \(Linear\) takes 50 inputs.*receives 72"):
        network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(50, 2)), input_shape=(1, 8, 8))
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2d\): a Conv2d needs an image"):
        network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)),
                           input_shape=(64,))
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2d\).*5x5 kernel.*does not fit"):
        network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 5), nn.Flatten(), nn.Linear(2, 2)),
                           input_shape=(1, 4, 4))
    with pytest.raises(ShapeError, match="input_shape must be"):
        network_from_torch(_lenet(), input_shape=(8, 8))


def test_forward_with_wrong_data_shape():
    net = network_from_torch(_lenet(), input_shape=(1, 8, 8))
    with pytest.raises(ShapeError) as info:
        net.forward(np.zeros((2, 1, 7, 8), dtype=np.float32))
    message = str(info.value)
    assert "(n_samples, 1, 8, 8)" in message and "(2, 1, 7, 8)" in message
    with pytest.raises(ShapeError, match=r"\(n_samples, 64\) flat.*\(2, 63\)"):
        net.forward(np.zeros((2, 63), dtype=np.float32))


def test_supported_modules_listed():
    text = " ".join(SUPPORTED_MODULES)
    for name in ("Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                 "Flatten", "GELU", "Hardswish", "ReLU6", "ELU", "Dropout2d"):
        assert name in text
    with pytest.raises(FileFormatError, match="Supported modules: .*Conv2d"):
        network_from_torch(nn.Sequential(nn.Conv1d(1, 1, 1)))
