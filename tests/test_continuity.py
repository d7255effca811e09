"""The paper's continuity regularizer (``--continuity PSI_D,PSI_S``), training crashes limited
to some hidden layers (``--crash-layers``) and the MSE loss on one-hot labels (``--loss mse``)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurosim.errors import ValidationError  # noqa: E402
from neurosim.train import (CONTINUITY_BLUR, CONTINUITY_ORDERS, _forward,  # noqa: E402
                            continuity_terms, derivative_stencil, gaussian_kernel,
                            regularizer_terms, train)


# --- plain NumPy reference ------------------------------------------------------------------

def _correlate_same(column, kernel):
    """Zero-padded cross-correlation of one column, (k - 1) // 2 zeros before, written with
    explicit loops."""
    k, n = len(kernel), len(column)
    before = (k - 1) // 2
    out = np.zeros(n)
    for i in range(n):
        for t in range(k):
            j = i + t - before
            if 0 <= j < n:
                out[i] += kernel[t] * column[j]
    return out


def _reference(W):
    W = W.reshape(W.shape[0], -1)
    n = W.shape[0]
    d = []
    for order in CONTINUITY_ORDERS:
        st = derivative_stencil(order)
        d.append(0.0 if len(st) > n else
                 sum(np.abs(_correlate_same(W[:, j], st)).sum() for j in range(W.shape[1])))
    s = []
    for fraction in CONTINUITY_BLUR:
        size = n // fraction
        if size < 2:
            s.append(0.0)
            continue
        g = gaussian_kernel(size)
        s.append(sum(np.abs(_correlate_same(W[:, j], g) - W[:, j]).mean()
                     for j in range(W.shape[1])))
    return np.mean(d), np.mean(s)


def test_stencils_are_exact_on_polynomials_of_their_order():
    np.testing.assert_allclose(derivative_stencil(4), [1 / 12, -2 / 3, 0, 2 / 3, -1 / 12],
                               atol=1e-12)
    np.testing.assert_allclose(derivative_stencil(10)[:5],
                               [-1 / 1260, 5 / 504, -5 / 84, 5 / 21, -5 / 6], atol=1e-12)
    rng = np.random.default_rng(0)
    for order in (2, 4, 10, 14):
        st = derivative_stencil(order)
        half = order // 2
        coeffs = rng.normal(size=order + 1)  # a polynomial of degree `order`
        poly = np.polynomial.Polynomial(coeffs)
        x0 = 0.3
        values = poly(x0 + np.arange(-half, half + 1))
        assert st @ values == pytest.approx(poly.deriv()(x0), rel=1e-7, abs=1e-7)
    with pytest.raises(ValidationError, match="'order'"):
        derivative_stencil(3)


def test_gaussian_kernel():
    g = gaussian_kernel(9)
    assert g.sum() == pytest.approx(1.0) and np.allclose(g, g[::-1]) and g.argmax() == 4
    np.testing.assert_allclose(gaussian_kernel(2), [0.5, 0.5])


@pytest.mark.parametrize("shape", [(100, 7), (45, 3), (12, 5), (30, 2, 3, 3), (3, 4)])
def test_terms_equal_the_numpy_reference(shape):
    W = np.random.default_rng(1).normal(size=shape)
    t = continuity_terms(torch.as_tensor(W))
    d, s = _reference(W)
    assert float(t["derivative"]) == pytest.approx(d, rel=1e-10)
    assert float(t["smoothness"]) == pytest.approx(s, rel=1e-10, abs=1e-12)
    if shape[0] < 20:
        assert s == 0.0  # no blur of 2 taps or more


def test_smooth_columns_cost_less_than_rough_ones():
    i = np.arange(200)[:, None] / 200.0
    smooth = np.sin(2 * np.pi * i * np.arange(1, 6)[None, :]) * 0.1
    rough = np.random.default_rng(2).permutation(smooth)  # the same values, shuffled along i
    ts, tr = continuity_terms(torch.as_tensor(smooth)), continuity_terms(torch.as_tensor(rough))
    assert float(ts["derivative"]) < 0.2 * float(tr["derivative"])
    assert float(ts["smoothness"]) < 0.2 * float(tr["smoothness"])


def test_gradient_matches_finite_differences():
    """The gradient of the continuity term of regularizer_terms (what training descends)
    against central differences of its value, weight by weight, in float64."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 40), torch.nn.Tanh(), torch.nn.Linear(40, 25),
                                torch.nn.Tanh(), torch.nn.Linear(25, 3)).double()
    X = torch.randn(8, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))

    def value():
        return regularizer_terms(model, X, y, lam=0.0, mu=0.0, nu=0.0, psi_d=0.7,
                                 psi_s=3.0)["continuity"]

    total = value()
    params = [model[0].weight, model[2].weight, model[0].bias, model[2].bias, model[4].weight,
              model[4].bias]
    grads = torch.autograd.grad(total, params, allow_unused=True)
    assert grads[4] is None and grads[5] is None  # the output layer is not penalized
    # The value is the reference's terms of every hidden weight matrix and bias.
    expect = 0.0
    for p in params[:4]:
        d, s = _reference(p.detach().numpy().reshape(p.shape[0], -1))
        expect += 0.7 * d + 3.0 * s
    assert total.item() == pytest.approx(expect, rel=1e-10)
    rng = np.random.default_rng(3)
    h = 1e-6
    for w, g in zip(params[:4], grads[:4]):
        for _ in range(25):
            idx = tuple(int(rng.integers(0, n)) for n in w.shape)
            with torch.no_grad():
                old = w[idx].item()
                w[idx] = old + h
                up = value().item()
                w[idx] = old - h
                down = value().item()
                w[idx] = old
            assert g[idx].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)
    # And torch's own numerical check on the terms of one matrix.
    W = torch.randn(41, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m: (continuity_terms(m)["derivative"], continuity_terms(m)["smoothness"]), (W,))


def test_training_with_the_regularizer_makes_the_first_layer_smoother():
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = (d.data / 16.0).astype(np.float32)[:600], d.target[:600]
    kw = dict(hidden=(100,), epochs=8, seed=0)
    plain = train(X, y, **kw)
    smooth = train(X, y, psi_d=2e-3, psi_s=2e-2, **kw)

    def rough(net):  # W is (n_out, n_in): along the first hidden layer's neuron index
        return float(continuity_terms(torch.as_tensor(np.asarray(net.layers[0].W)))[
            "derivative"])

    assert rough(smooth) < 0.5 * rough(plain)
    assert smooth.metadata["training"]["config"]["psi_d"] == 2e-3
    assert smooth.metadata["training"]["final"]["continuity"] > 0
    assert plain.metadata["training"]["final"]["continuity"] == 0
    assert (smooth.predict(X) == y).mean() > 0.85


def test_crash_layers_crash_only_those_layers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5),
                                torch.nn.ReLU(), torch.nn.Linear(5, 2))
    X = torch.randn(10, 4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # Every neuron of hidden layer 2 crashed (p close to 1): the output is the last bias.
        out2 = _forward(model, X, 1 - 1e-9, g, crash_layers=(2,))
        np.testing.assert_allclose(out2.numpy(), model[4].bias.expand(10, 2).numpy(), atol=1e-6)
        # Only layer 1 crashed: layer 2 sees zeros, so it outputs relu(bias).
        out1 = _forward(model, X, 1 - 1e-9, g, crash_layers=(1,))
        expect = model[4](torch.relu(model[2].bias).expand(10, 5))
        np.testing.assert_allclose(out1.numpy(), expect.numpy(), atol=1e-6)
        assert not np.allclose(out1.numpy(), out2.numpy())
    with pytest.raises(ValidationError, match="'crash_layers'"):
        _forward(model, X, 0.5, g, crash_layers=(3,))
    for bad in ((), (0,), ("a",), (True,)):
        with pytest.raises(ValidationError, match="'crash_layers'"):
            train(np.zeros((4, 4)), np.array([0, 1, 0, 1]), hidden=(3,), crash_layers=bad)


def test_mse_loss_on_one_hot_labels():
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = (d.data / 16.0).astype(np.float32)[:600], d.target[:600]
    net = train(X, y, hidden=(64,), activation="sigmoid", epochs=15, seed=0, loss="mse",
                lr=3e-3)
    assert net.metadata["training"]["data_loss"] == "mse on one-hot labels"
    out = net.forward(X)
    assert (out.argmax(1) == y).mean() > 0.8
    # Trained towards one-hot targets, the winning output is near 1, the others near 0.
    assert 0.5 < np.median(out.max(1)) < 1.5 and abs(np.median(out)) < 0.2
    with pytest.raises(ValidationError, match="'loss'"):
        train(X, y, hidden=(4,), loss="hinge")


@pytest.mark.parametrize("flag,value", [("--continuity", "1e-3"), ("--continuity", "a,b"),
                                        ("--continuity=-1,0", None), ("--continuity", "nan,0"),
                                        ("--crash-layers", "0"), ("--crash-layers", "x")])
def test_cli_flags_refuse_bad_values(tmp_path, capsys, flag, value):
    from neurosim.cli import main

    given = [flag] if value is None else [flag, value]
    code = main(["train", "--data", "digits", "--hidden", "8", "--epochs", "1", *given,
                 "-o", str(tmp_path / "m.h5")])
    assert code != 0
    assert flag.split("=")[0] in capsys.readouterr().err
