"""Fault-tolerant training (neurosim.train) and the ``neurosim train`` command."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import neurosim as ns  # noqa: E402
from neurosim.cli import main  # noqa: E402
from neurosim.errors import NeurosimFileNotFoundError, ValidationError  # noqa: E402
from neurosim.theory import q_balance  # noqa: E402
from neurosim.theory.bounds import incoming_masses  # noqa: E402
from neurosim.train import (  # noqa: E402
    TrainConfig,
    _forward,
    _linear_layers,
    build_model,
    load_training_data,
    regularizer_terms,
    train,
)
from training_fixtures import diabetes, digits, one_thread  # noqa: E402,F401 (fixtures)


def _small_model(task="classification", activation="tanh", seed=0):
    """A float64 6-5-4-3 model, random (generic) weights, and a batch of data."""
    torch.manual_seed(seed)
    model = build_model(6, 3, TrainConfig(hidden=(5, 4), activation=activation)).double()
    gen = torch.Generator().manual_seed(seed + 100)
    X = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    if task == "classification":
        y = torch.randint(0, 3, (20,), generator=gen)
    else:
        y = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    return model, X, y


def _probe_indices(model):
    """(parameter, index) pairs: per layer, weights in the rows of largest and smallest incoming
    L1 mass (where the balance term's gradient lives), one in another row, and two biases."""
    picks = []
    rng = np.random.default_rng(1)
    for layer in _linear_layers(model):
        w = layer.weight.detach().numpy()
        mass = np.abs(w).sum(1)
        top, bottom = int(mass.argmax()), int(mass.argmin())
        other = next(i for i in range(w.shape[0]) if i not in (top, bottom))
        for row in (top, bottom, other):
            picks.append((layer.weight, (row, int(rng.integers(w.shape[1])))))
        picks.append((layer.bias, (top,)))
        picks.append((layer.bias, (other,)))
    return picks


def _central_difference(value, param, index, h):
    # The weight is set without recording; the term itself needs autograd (double backprop).
    original = param[index].item()
    values = []
    for shifted in (original + h, original - h):
        with torch.no_grad():
            param[index] = shifted
        values.append(value().item())
    with torch.no_grad():
        param[index] = original
    return (values[0] - values[1]) / (2 * h)


def _check_gradient(model, value, rtol, atol, h=1e-6):
    params = [p for layer in _linear_layers(model) for p in (layer.weight, layer.bias)]
    term = value()
    assert term.requires_grad
    grads = torch.autograd.grad(term, params, allow_unused=True)
    by_id = {id(p): (torch.zeros_like(p) if g is None else g) for p, g in zip(params, grads)}
    checked = 0
    for param, index in _probe_indices(model):
        analytic = by_id[id(param)][index].item()
        numeric = _central_difference(value, param, index, h)
        assert analytic == pytest.approx(numeric, rel=rtol, abs=atol), (param.shape, index)
        checked += analytic != 0
    return checked


# --- the regularizer terms ----------------------------------------------------------------------

@pytest.mark.parametrize("task", ["classification", "regression"])
def test_sensitivity_gradient_matches_finite_differences(task):
    model, X, y = _small_model(task)

    def value():
        return regularizer_terms(model, X, y, task, lam=0.7, mu=0.0, nu=0.0)["sensitivity"]

    # Double backprop: the term's gradient reaches weights and biases (through dL/dw).
    nonzero = _check_gradient(model, value, rtol=1e-5, atol=1e-10)
    assert nonzero >= 12


def test_balance_gradient_matches_finite_differences():
    model, X, y = _small_model()
    for layer in _linear_layers(model):
        mass = np.sort(np.abs(layer.weight.detach().numpy()).sum(1))
        assert mass[-1] - mass[-2] > 1e-3 and mass[1] - mass[0] > 1e-3  # unique max and min

    def value():
        return regularizer_terms(model, X, y, lam=0.0, mu=0.3, nu=0.0)["balance"]

    _check_gradient(model, value, rtol=1e-6, atol=1e-9)
    # The gradient lives in the rows of largest and smallest mass only; biases play no part.
    term = value()
    for layer in _linear_layers(model):
        gw, gb = torch.autograd.grad(term, [layer.weight, layer.bias], retain_graph=True,
                                     allow_unused=True)
        mass = layer.weight.detach().abs().sum(1)
        rows = {int(mass.argmax()), int(mass.argmin())}
        assert gb is None or not gb.any()
        for row in range(gw.shape[0]):
            assert bool(gw[row].any()) == (row in rows)


def test_decay_gradient_matches_finite_differences():
    model, X, y = _small_model()

    def value():
        return regularizer_terms(model, X, y, lam=0.0, mu=0.0, nu=0.05)["decay"]

    _check_gradient(model, value, rtol=1e-6, atol=1e-10)
    term = value()
    layer = _linear_layers(model)[0]
    gw, gb = torch.autograd.grad(term, [layer.weight, layer.bias], allow_unused=True)
    assert torch.allclose(gw, 2 * 0.05 * layer.weight, rtol=1e-12, atol=0)
    assert gb is None or not gb.any()


def test_sensitivity_equals_its_definition_and_is_differentiable():
    model, X, y = _small_model(activation="relu")
    weights = [layer.weight for layer in _linear_layers(model)]
    loss = torch.nn.functional.cross_entropy(model(X), y)
    grads = torch.autograd.grad(loss, weights)
    expected = 0.25 * sum(float(((g * w.detach()) ** 2).sum()) for g, w in zip(grads, weights))
    terms = regularizer_terms(model, X, y, lam=0.25, mu=0.0, nu=0.0)
    assert float(terms["sensitivity"].detach()) == pytest.approx(expected, rel=1e-12)
    assert float(terms["loss"].detach()) == pytest.approx(float(loss.detach()), rel=1e-15)
    assert float(terms["balance"].detach()) == 0.0 and float(terms["decay"].detach()) == 0.0
    # Built with create_graph: it has a graph, and its gradient differs from zero.
    assert terms["sensitivity"].grad_fn is not None
    g = torch.autograd.grad(terms["sensitivity"], weights[0])[0]
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_balance_and_decay_equal_their_formulas():
    model, X, y = _small_model(activation="relu")
    terms = regularizer_terms(model, X, y, lam=0.0, mu=0.4, nu=0.03)
    weights = [layer.weight.detach().numpy() for layer in _linear_layers(model)]
    masses = [np.abs(w).sum(axis=1) for w in weights]  # torch stores (out, in): incoming mass
    balance = 0.4 * sum((m.max() / m.min()) ** 2 for m in masses)
    assert float(terms["balance"].detach()) == pytest.approx(balance, rel=1e-12)
    # The same masses as neurosim.theory's, so balance = mu * sum_l 1 / q_l^2.
    network = ns.load_network(model)
    for mine, theirs in zip(masses, incoming_masses(network)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12)
    assert float(terms["balance"].detach()) == pytest.approx(0.4 * np.sum(1 / q_balance(network) ** 2),
                                                    rel=1e-10)
    decay = 0.03 * sum(float((w ** 2).sum()) for w in weights)
    assert float(terms["decay"].detach()) == pytest.approx(decay, rel=1e-12)
    assert float(terms["sensitivity"].detach()) == 0.0


# --- train ----------------------------------------------------------------------------------------

def _plain_adam(X, y, hidden, epochs, lr, batch_size, seed, regression=False):
    """An ordinary Adam loop, written out by hand."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    layers, width = [], X.shape[1]
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    n_out = 1 if regression else int(y.max()) + 1
    layers.append(torch.nn.Linear(width, n_out))
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    yt = (torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(-1, 1)) if regression
          else torch.as_tensor(np.asarray(y, dtype=np.int64)))
    for _ in range(epochs):
        order = torch.randperm(X.shape[0], generator=generator)
        for start in range(0, X.shape[0], batch_size):
            idx = order[start:start + batch_size]
            out = model(Xt[idx])
            if regression:
                loss = torch.nn.functional.mse_loss(out, yt[idx])
            else:
                loss = torch.nn.functional.cross_entropy(out, yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return [(m.weight.detach().numpy(), m.bias.detach().numpy())
            for m in model if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("data_name", ["digits", "diabetes"])
def test_unregularized_train_is_plain_adam(data_name, digits, diabetes):
    data = digits if data_name == "digits" else diabetes
    regression = data_name == "diabetes"
    X, y = data.X_train[:300], data.y_train[:300]
    settings = dict(hidden=(24, 12), epochs=3, lr=3e-3, batch_size=50, seed=7)
    expected = _plain_adam(X, y, regression=regression, **settings)
    network = train(X, y, lam=0.0, mu=0.0, nu=0.0, crash_p=0.0, **settings)
    assert len(network.layers) == len(expected)
    for layer, (W, b) in zip(network.layers, expected):
        assert np.array_equal(layer.W, W) and np.array_equal(layer.b, b)
    # The comparison is sharp enough to see a small regularizer, or another seed.
    other = train(X, y, nu=1e-4, **settings)
    assert not np.array_equal(other.layers[0].W, expected[0][0])
    other = train(X, y, **{**settings, "seed": 8})
    assert not np.array_equal(other.layers[0].W, expected[0][0])


def test_train_reaches_accuracy_on_digits(digits):
    network = train(digits.X_train, digits.y_train, hidden=(64,), epochs=15, seed=0,
                    X_val=digits.X_test, y_val=digits.y_test)
    assert network.widths == [64, 64, 10]
    assert network.dtype == np.float32
    accuracy = float(np.mean(network.forward(digits.X_test).argmax(1) == digits.y_test))
    assert accuracy >= 0.9
    info = network.metadata["training"]
    assert info["task"] == "classification"
    assert info["val_accuracy"] == pytest.approx(accuracy)
    assert info["train_accuracy"] >= 0.9


def test_train_regression_on_diabetes(diabetes):
    assert diabetes.task == "regression"
    assert np.var(diabetes.y_train) == pytest.approx(1.0)  # standardized on the training split
    network = train(diabetes.X_train, diabetes.y_train, hidden=(32,), epochs=30, seed=0,
                    X_val=diabetes.X_test, y_val=diabetes.y_test)
    assert network.n_outputs == 1
    info = network.metadata["training"]
    assert info["task"] == "regression"
    mse = float(np.mean((network.forward(diabetes.X_test)[:, 0] - diabetes.y_test) ** 2))
    assert info["val_mse"] == pytest.approx(mse, rel=1e-6)
    assert mse < 0.8  # the constant predictor scores about 1
    assert info["train_mse"] < 0.8


def test_balance_term_raises_q_balance(digits):
    X, y = digits.X_train, digits.y_train
    for seed in (0, 1, 2):
        settings = dict(hidden=(32,), epochs=5, seed=seed)
        q0 = q_balance(train(X, y, **settings))
        q1 = q_balance(train(X, y, mu=1e-3, **settings))
        assert np.all(q1 > q0), (seed, q0, q1)
        assert q1.min() > q0.min() + 0.05, (seed, q0, q1)


def _training_sensitivity(network, X, y):
    """sum_i (dL/dw_i)^2 w_i^2 of ``network`` on the whole of (X, y)."""
    hidden = tuple(layer.W.shape[0] for layer in network.layers[:-1])
    model = build_model(network.n_inputs, network.n_outputs, TrainConfig(hidden=hidden)).double()
    with torch.no_grad():
        for linear, layer in zip(_linear_layers(model), network.layers):
            linear.weight.copy_(torch.as_tensor(layer.W, dtype=torch.float64))
            linear.bias.copy_(torch.as_tensor(layer.b, dtype=torch.float64))
    terms = regularizer_terms(model, torch.as_tensor(X, dtype=torch.float64),
                              torch.as_tensor(y), lam=1.0, mu=0.0, nu=0.0)
    return float(terms["sensitivity"].detach())


def test_sensitivity_term_lowers_sensitivity(digits):
    X, y = digits.X_train, digits.y_train
    ratios = []
    for seed in (0, 1, 2):
        settings = dict(hidden=(32,), epochs=5, seed=seed)
        s0 = _training_sensitivity(train(X, y, **settings), X, y)
        s1 = _training_sensitivity(train(X, y, lam=10.0, **settings), X, y)
        assert s1 < s0, (seed, s0, s1)
        ratios.append(s1 / s0)
    assert np.mean(ratios) < 0.97, ratios


def _crash_recorder(model, records):
    """Hooks that store (activation output, what the next layer got) for each hidden layer."""
    modules = list(model)
    handles = []
    for index, module in enumerate(modules[:-1]):
        if isinstance(module, torch.nn.Linear):
            continue
        slot = {}
        records.append(slot)

        def keep_output(mod, inputs, output, slot=slot):
            slot.setdefault("clean", []).append(output.detach().clone())

        def keep_input(mod, inputs, slot=slot):
            slot.setdefault("crashed", []).append(inputs[0].detach().clone())

        handles.append(module.register_forward_hook(keep_output))
        handles.append(modules[index + 1].register_forward_pre_hook(keep_input))
    return handles


def _crash_statistics(records):
    zeros = total = 0
    for slot in records:
        assert len(slot["clean"]) == len(slot["crashed"]) > 0
        for clean, crashed in zip(slot["clean"], slot["crashed"]):
            assert (clean > 0).all()  # sigmoid: a zero can only come from a crash
            kept = crashed != 0
            # Kept units pass through unchanged (no 1/(1-p) rescaling), crashed ones are 0.
            assert torch.equal(crashed, clean * kept)
            zeros += int((~kept).sum())
            total += kept.numel()
    return zeros, total


def test_crash_forward_zeroes_hidden_units_without_rescaling():
    torch.manual_seed(0)
    model = build_model(10, 4, TrainConfig(hidden=(40, 30), activation="sigmoid")).double()
    X = torch.rand(500, 10, dtype=torch.float64)
    records = []
    handles = _crash_recorder(model, records)
    last_input = []
    handles.append(list(model)[-1].register_forward_hook(
        lambda mod, inputs, output: last_input.append((inputs[0].detach(), output.detach()))))
    generator = torch.Generator().manual_seed(3)
    out = _forward(model, X, 0.3, generator)
    for handle in handles:
        handle.remove()
    zeros, total = _crash_statistics(records)
    assert total == 500 * 70
    # Binomial(35000, 0.3): standard deviation of the fraction 0.0024; margin about 6 of them.
    assert abs(zeros / total - 0.3) < 0.015
    # Each layer on its own crashes at the rate too, and the output layer is never crashed.
    for slot in records:
        crashed = torch.cat(slot["crashed"])
        assert abs(float((crashed == 0).double().mean()) - 0.3) < 0.03
    assert torch.equal(out, last_input[0][1])
    # crash_p = 0 is the plain forward pass.
    assert torch.equal(_forward(model, X, 0.0, generator), model(X))


def test_training_uses_the_crash_forward(monkeypatch, digits):
    import neurosim.train as train_module

    real_forward = train_module._forward
    records, calls = [], []

    def recording_forward(model, X, crash_p, generator=None, crash_layers=None):
        calls.append((crash_p, generator is not None))
        assert crash_layers is None  # the default: every hidden layer
        if not records:
            handles = _crash_recorder(model, records)
        else:
            handles = []
        try:
            return real_forward(model, X, crash_p, generator, crash_layers)
        finally:
            for handle in handles:
                handle.remove()

    monkeypatch.setattr(train_module, "_forward", recording_forward)
    X, y = digits.X_train[:400], digits.y_train[:400]
    train(X, y, hidden=(40, 30), activation="sigmoid", epochs=1, batch_size=50, crash_p=0.25,
          seed=0)
    assert calls == [(0.25, True)] * 8
    zeros, total = _crash_statistics(records)
    assert total == 50 * 70  # the first training step
    # Binomial(3500, 0.25): standard deviation of the fraction 0.0073; margin 6 of them.
    assert abs(zeros / total - 0.25) < 0.045
    monkeypatch.setattr(train_module, "_forward", real_forward)
    plain = train(X, y, hidden=(16,), epochs=1, seed=0)
    crashed = train(X, y, hidden=(16,), epochs=1, seed=0, crash_p=0.25)
    assert not np.array_equal(plain.layers[0].W, crashed.layers[0].W)


def test_training_metadata_round_trip(tmp_path, digits):
    config = TrainConfig(hidden=(16, 8), epochs=2, lam=1e-3, mu=1e-4, nu=1e-5, crash_p=0.1,
                         seed=3, lr=2e-3, batch_size=32, psi_d=1e-4, psi_s=1e-3,
                         crash_layers=(1, 2))
    network = train(digits.X_train, digits.y_train, config, X_val=digits.X_test,
                    y_val=digits.y_test, metadata={"name": "tiny"}, epochs=3)
    assert config.epochs == 2  # the caller's config is not changed by the override
    info = network.metadata["training"]
    expected = {"hidden": [16, 8], "activation": "relu", "epochs": 3, "lr": 2e-3,
                "batch_size": 32, "seed": 3, "lam": 1e-3, "mu": 1e-4, "nu": 1e-5,
                "crash_p": 0.1, "crash_layers": [1, 2], "psi_d": 1e-4, "psi_s": 1e-3,
                "loss": "auto", "task": "auto"}
    assert info["config"] == expected
    assert info["task"] == "classification"
    assert set(info["final"]) == {"loss", "sensitivity", "balance", "decay", "continuity"}
    assert all(v > 0 for v in info["final"].values())
    assert info["n_train"] == digits.X_train.shape[0]
    assert network.metadata["name"] == "tiny"
    for suffix in ("h5", "npz"):
        path = tmp_path / f"model.{suffix}"
        ns.save_network(network, path)
        loaded = ns.load_network(path)
        if suffix == "h5":
            assert loaded.metadata["training"]["config"] == expected
            assert loaded.metadata["training"]["val_accuracy"] == info["val_accuracy"]
            assert loaded.metadata["name"] == "tiny"
        for a, b in zip(loaded.layers, network.layers):
            np.testing.assert_array_equal(a.W, b.W)
            np.testing.assert_array_equal(a.b, b.b)
        np.testing.assert_array_equal(loaded.forward(digits.X_test), network.forward(digits.X_test))


@pytest.mark.parametrize("overrides, name", [
    ({"lam": -0.1}, "lam"),
    ({"mu": float("nan")}, "mu"),
    ({"nu": -1}, "nu"),
    ({"crash_p": 1.0}, "crash_p"),
    ({"crash_p": -0.1}, "crash_p"),
    ({"hidden": ()}, "hidden"),
    ({"hidden": (16, 0)}, "hidden"),
    ({"hidden": ("a",)}, "hidden"),
    ({"epochs": 0}, "epochs"),
    ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"task": "ranking"}, "task"),
    ({"lamda": 0.1}, "lamda"),
    ({"validate": None}, "validate"),
])
def test_bad_settings_name_the_parameter(overrides, name):
    X = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    with pytest.raises(ValidationError, match=f"'{name}'"):
        train(X, y, **{"epochs": 1, **overrides})


def test_bad_data_is_rejected():
    X = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(ValidationError, match="one target per sample"):
        train(X, np.zeros(9, dtype=np.int64), epochs=1)
    X[0, 0] = np.nan
    with pytest.raises(ValidationError, match="finite"):
        train(X, np.zeros(10, dtype=np.int64), epochs=1)
    with pytest.raises(NeurosimFileNotFoundError, match="nope.npz"):
        load_training_data("nope.npz")


# --- neurosim train -------------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_digits(capsys, tmp_path):
    path = tmp_path / "model.h5"
    code, out, err = run_cli(capsys, "train", "--data", "digits", "--epochs", "2", "--hidden",
                             "16", "--lambda", "1e-3", "--mu", "1e-4", "--nu", "1e-5",
                             "--crash-p", "0.05", "--lr", "3e-3", "--batch-size", "32",
                             "--seed", "2", "-o", str(path))
    assert code == 0, err
    assert "accuracy: train" in out and "test" in out
    assert f"model saved to {path}" in out
    network = ns.load_network(path)
    assert network.widths == [64, 16, 10]
    config = network.metadata["training"]["config"]
    assert config["hidden"] == [16] and config["epochs"] == 2 and config["lam"] == 1e-3
    assert config["mu"] == 1e-4 and config["nu"] == 1e-5 and config["crash_p"] == 0.05
    assert config["lr"] == 3e-3 and config["batch_size"] == 32 and config["seed"] == 2
    assert network.metadata["training_data"]["name"] == "digits"
    assert not list(tmp_path.glob(".model.h5.*"))  # no temporary file left behind
    # The printed test accuracy is the saved model's on load_training_data's test split.
    data = load_training_data("digits", seed=2)
    accuracy = float(np.mean(network.forward(data.X_test).argmax(1) == data.y_test))
    assert f"test {accuracy:.2%}" in out


def test_cli_train_json_regression(capsys, tmp_path):
    path = tmp_path / "model.npz"
    code, out, err = run_cli(capsys, "train", "--data", "diabetes", "--epochs", "2", "--hidden",
                             "16,8", "--activation", "tanh", "--json", "-o", str(path))
    assert code == 0, err
    data = json.loads(out)
    assert data["output"] == str(path)
    assert data["training"]["task"] == "regression"
    assert data["training"]["config"]["hidden"] == [16, 8]
    assert data["training"]["config"]["activation"] == "tanh"
    assert "val_mse" in data["training"] and "train_mse" in data["training"]
    assert data["training_data"]["target_std"] > 0
    assert ns.load_network(path).widths == [10, 16, 8, 1]


def test_cli_train_data_file(capsys, tmp_path, digits):
    data_path = tmp_path / "data.npz"
    np.savez(data_path, X=digits.X_test, y=digits.y_test)
    path = tmp_path / "model.h5"
    code, out, err = run_cli(capsys, "train", "--data", str(data_path), "--epochs", "2",
                             "--hidden", "16", "-o", str(path))
    assert code == 0, err
    assert "(288 train / 72 test samples)" in out
    assert ns.load_network(path).widths == [64, 16, 10]


@pytest.mark.parametrize("argv, words", [
    (["--hidden", "a,b"], "--hidden"),
    (["--hidden", "16,0"], "--hidden"),
    (["--hidden", ""], "--hidden"),
    (["--lambda", "-1"], "--lambda"),
    (["--mu", "nan"], "--mu"),
    (["--nu", "-0.5"], "--nu"),
    (["--crash-p", "1"], "--crash-p"),
    (["--lr", "0"], "--lr"),
    (["--data", "missing.npz"], "missing.npz"),
    (["--data", "mnist:no_such_folder"], "no_such_folder"),
    (["--activation", "mish"], "mish"),
])
def test_cli_train_bad_input(capsys, tmp_path, argv, words):
    path = tmp_path / "model.h5"
    code, out, err = run_cli(capsys, "train", "--epochs", "1", "--hidden", "8", *argv,
                             "-o", str(path))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurosim train: error:")
    assert words in lines[0]
    assert not path.exists()


def test_cli_train_bad_output(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--hidden", "8",
                           "-o", str(tmp_path / "model.pt"))
    assert code == 2 and "-o" in err and "model.pt" in err
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--hidden", "8",
                           "-o", str(tmp_path / "absent" / "model.h5"))
    assert code == 2 and "absent" in err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "0", "-o", str(tmp_path / "m.h5")])
    assert exc.value.code == 2


@pytest.mark.parametrize("key, value", [("epochs", 1.5), ("epochs", 0), ("batch_size", 2.0),
                                        ("epochs", True)])
def test_integer_settings_must_be_integers(key, value):
    from neurosim.train import TrainConfig

    config = TrainConfig(**{key: value})
    with pytest.raises(ValidationError, match=key):
        config.validate()
