"""Loading PyTorch modules and files (TorchScript, state_dict, pickled module)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

# torch >= 2.9 deprecates torch.jit.*; the tests still use it to write TorchScript files.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

from neurosim import load_network  # noqa: E402
from neurosim.errors import FileFormatError, UnsupportedLayerError, UntrustedPickleError  # noqa: E402
from neurosim.io.torch import load_torch, network_from_torch  # noqa: E402


def _mlp(seed=0):
    """Every supported module: activations, Identity, Dropout, Flatten, nested Sequential."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, 8),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(8, 7),
        nn.LeakyReLU(negative_slope=0.15),
        nn.Sequential(nn.Linear(7, 7), nn.Tanh()),
        nn.Linear(7, 6),
        nn.Sigmoid(),
        nn.Linear(6, 5, bias=False),
        nn.Softplus(),
        nn.Linear(5, 4),
        nn.Identity(),
        nn.Linear(4, 3),
    )
    return model.eval()


EXPECTED_ACTS = ["relu", "leaky_relu(alpha=0.15)", "tanh", "sigmoid", "softplus", "identity",
                 "identity"]
ACTS = ["relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity", "identity"]


def _x(n_in, n=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, n_in)).astype(np.float32)


def _torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_module_conversion_matches_torch():
    model = _mlp()
    net = network_from_torch(model)
    assert [str(a) for a in net.activations] == EXPECTED_ACTS
    assert net.widths == [6, 8, 7, 7, 6, 5, 4, 3]
    assert net.dtype == np.float32
    assert net.metadata["source_format"] == "torch-module"
    np.testing.assert_array_equal(net.layers[4].b, 0.0)  # Linear(bias=False)
    x = _x(6)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)
    # load_network accepts a module too.
    assert load_network(model).equals(net)


def test_float64_module():
    model = _mlp().double()
    net = network_from_torch(model)
    assert net.dtype == np.float64
    x = _x(6).astype(np.float64)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("softmax", [nn.Softmax(dim=1), nn.LogSoftmax(dim=1)])
def test_final_softmax_dropped(softmax):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), softmax).eval()
    with pytest.warns(UserWarning, match="softmax") as record:
        net = network_from_torch(model)
    assert len(record) == 1
    assert net.metadata["dropped_output_softmax"] is True
    x = _x(4)
    logits = _torch_out(model[:-1], x)
    np.testing.assert_allclose(net.forward(x), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.predict(x), _torch_out(model, x).argmax(axis=1))


@pytest.mark.parametrize(
    "bad, cls",
    [(nn.Conv1d(1, 1, 1), "Conv1d"), (nn.PReLU(), "PReLU"), (nn.Mish(), "Mish")],
)
def test_unsupported_module(bad, cls):
    model = nn.Sequential(nn.Linear(4, 5), bad, nn.Linear(5, 2))
    with pytest.raises(UnsupportedLayerError) as info:
        network_from_torch(model)
    message = str(info.value)
    assert f"layer 1 ({cls})" in message and "Supported modules" in message


def test_softplus_beta_rejected():
    model = nn.Sequential(nn.Linear(4, 5), nn.Softplus(beta=2.0), nn.Linear(5, 2))
    with pytest.raises(UnsupportedLayerError, match="beta=2"):
        network_from_torch(model)


def test_softmax_in_the_middle_rejected():
    model = nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=1), nn.Linear(5, 2))
    with pytest.raises(UnsupportedLayerError, match="softmax"):
        network_from_torch(model)


def test_pickled_module_needs_trust(tmp_path):
    model = _mlp()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(UntrustedPickleError) as info:
        load_network(path)
    message = str(info.value)
    assert "trust_pickle=True" in message and "--trust-pickle" in message
    assert "run code" in message and "model.pt" in message
    net = load_network(path, trust_pickle=True)
    assert net.metadata["source_format"] == "torch-module"
    x = _x(6)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path, how):
    model = _mlp()
    scripted = torch.jit.script(model) if how == "script" else torch.jit.trace(
        model, torch.from_numpy(_x(6, n=2)))
    path = tmp_path / f"model_{how}.pt"
    torch.jit.save(scripted, str(path))
    net = load_network(path)
    assert net.metadata["source_format"] == "torchscript"
    assert [str(a) for a in net.activations] == EXPECTED_ACTS
    x = _x(6)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)
    # An in-memory ScriptModule converts too.
    assert network_from_torch(scripted).equals(net)


def test_state_dict_with_activations(tmp_path):
    model = _mlp()
    path = tmp_path / "sd.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(FileFormatError, match=r"architecture=.*activations=.*--activations"):
        load_network(path)
    leaky = ACTS.copy()
    from neurosim.network import make_activation

    leaky[1] = make_activation("leaky_relu", 0.15)
    net = load_network(path, activations=leaky)
    assert net.metadata["source_format"] == "torch-state_dict"
    assert [str(a) for a in net.activations] == EXPECTED_ACTS
    x = _x(6)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(FileFormatError, match=r"7 Linear layers \(.*\) but 2 activations"):
        load_network(path, activations=["relu", "identity"])


def test_state_dict_with_a_final_softmax_in_the_activation_list(tmp_path):
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    path = tmp_path / "clf.pt"
    torch.save(model.state_dict(), path)
    with pytest.warns(UserWarning, match="softmax") as record:
        net = load_network(path, activations=["relu", "softmax"])
    assert len(record) == 1 and net.metadata["dropped_output_softmax"] is True
    x = _x(4)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(UnsupportedLayerError, match="softmax is only supported"):
        load_network(path, activations=["softmax", "identity"])


def test_state_dict_with_architecture(tmp_path):
    model = _mlp(seed=0)
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    fresh = _mlp(seed=123)  # same architecture, other weights
    net = load_torch(path, architecture=fresh)
    assert net.metadata["source_format"] == "torch-state_dict"
    x = _x(6)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(FileFormatError, match="does not fit"):
        load_torch(path, architecture=nn.Sequential(nn.Linear(2, 2)))


def test_state_dict_with_unsupported_entries(tmp_path):
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    path = tmp_path / "bn.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(UnsupportedLayerError, match="bn.pt"):
        load_network(path, activations=["relu", "identity"])
    # With the architecture the BatchNorm is folded into the Linear layer before it.
    net = load_network(path, architecture=model.eval())
    assert net.metadata["folded_batchnorm"][0]["into"] == "0"
    x = _x(4)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"definitely not a torch file" * 5)
    with pytest.raises(FileFormatError, match="garbage.pt"):
        load_network(path)


def test_validation_error_names_file(tmp_path):
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU())  # last layer not linear
    path = tmp_path / "relu_out.ts"
    torch.jit.save(torch.jit.script(model), str(path))
    with pytest.raises(ValueError, match=r"^'.*relu_out.ts': .*last layer must be linear"):
        load_network(path)
