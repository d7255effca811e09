"""Tests of :mod:`neurosim.network`: forward pass, activations, Lipschitz constants, validation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from neurosim import ACTIVATIONS, Activation, Dense, Network
from neurosim.errors import ShapeError, UnsupportedLayerError, ValidationError
from neurosim.network import make_activation

DTYPES = [np.float32, np.float64]

# Hand-written references, evaluated in float64 (inputs are moderate, so the naive formulas are
# exact enough).
REFERENCE = {
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "tanh": lambda z: np.tanh(z),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "identity": lambda z: z,
    "elu": lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0.0)) - 1.0),
    "hardtanh": lambda z: np.minimum(np.maximum(z, -1.0), 1.0),
    "gelu": lambda z: 0.5 * z * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0))),
    "gelu_tanh": lambda z: 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi)
                                                    * (z + 0.044715 * z ** 3))),
    "silu": lambda z: z / (1.0 + np.exp(-z)),
    "hardswish": lambda z: z * np.minimum(np.maximum(z + 3.0, 0.0), 6.0) / 6.0,
    "hardsigmoid": lambda z: np.minimum(np.maximum(z / 6.0 + 0.5, 0.0), 1.0),
}

EXPECTED_LIPSCHITZ = {
    "relu": 1.0,
    "tanh": 1.0,
    "sigmoid": 0.25,
    "softplus": 1.0,
    "identity": 1.0,
    "elu": 1.0,
    "hardtanh": 1.0,
    # GELU: phi'' = pdf(z) (2 - z^2) vanishes at sqrt(2): Phi(sqrt 2) + sqrt(2) pdf(sqrt 2).
    "gelu": 0.5 * (1 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(2 * math.pi),
    # Published maxima of the slopes (to the digits given).
    "gelu_tanh": pytest.approx(1.12899, abs=1e-5),
    "silu": pytest.approx(1.09984, abs=1e-5),
    "hardswish": 1.5,
    "hardsigmoid": pytest.approx(1.0 / 6.0, rel=1e-12),
}


def _act(name: str, alpha: float = 0.2) -> Activation:
    return make_activation(name, alpha if name == "leaky_relu" else None)


def _net(name: str, dtype, widths=(5, 7, 6, 3), seed: int = 1) -> Network:
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 1.0, size=(widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    biases = [rng.normal(0.0, 0.5, size=widths[i + 1]) for i in range(len(widths) - 1)]
    acts = [_act(name)] * (len(widths) - 2) + ["identity"]
    return Network.from_arrays(weights, biases, acts, dtype=dtype)


def _tol(dtype) -> dict:
    # float32 accumulates ~1e-7 relative error per operation over three small layers.
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def test_activation_registry_is_complete():
    assert set(ACTIVATIONS) == set(REFERENCE)


# --- forward pass ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_forward_matches_numpy(name, dtype):
    net = _net(name, dtype)
    assert net.dtype == np.dtype(dtype)
    assert all(W.dtype == dtype for W in net.weights)
    X = np.random.default_rng(2).normal(size=(11, 5))
    out = net.forward(X)
    assert out.dtype == dtype
    assert out.shape == (11, 3)

    y = X.astype(np.float64)
    ref_ys = [y]
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = y @ W.astype(np.float64).T + b.astype(np.float64)
        y = z if l == net.n_layers - 1 else REFERENCE[name](z)
        ref_ys.append(y)
    np.testing.assert_allclose(out, ref_ys[-1], **_tol(dtype))

    ys = net.forward(X, return_all=True)
    assert len(ys) == net.n_layers + 1
    np.testing.assert_array_equal(ys[0], X.astype(dtype))
    for got, ref in zip(ys, ref_ys):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, **_tol(dtype))
    np.testing.assert_array_equal(ys[-1], out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_hidden_layer_really_uses_activation(dtype):
    # relu and identity hidden layers give different outputs: the activation is applied.
    X = np.random.default_rng(3).normal(size=(20, 5))
    assert not np.allclose(_net("relu", dtype).forward(X), _net("identity", dtype).forward(X),
                           atol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_accepts_one_sample_as_1d(dtype):
    net = _net("tanh", dtype)
    x = np.random.default_rng(4).normal(size=5)
    np.testing.assert_allclose(net.forward(x), net.forward(x[None, :]), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace_returns_preactivations_and_activations(dtype):
    net = _net("sigmoid", dtype)
    X = np.random.default_rng(5).normal(size=(6, 5))
    zs, ys = net.trace(X)
    assert len(zs) == len(ys) == net.n_layers + 1
    np.testing.assert_array_equal(zs[0], X.astype(dtype))
    np.testing.assert_array_equal(ys[0], X.astype(dtype))
    for l, layer in enumerate(net.layers, start=1):
        assert zs[l].dtype == ys[l].dtype == dtype
        np.testing.assert_allclose(zs[l], ys[l - 1] @ layer.W.T + layer.b, **_tol(dtype))
        np.testing.assert_allclose(ys[l], layer.activation(zs[l]), **_tol(dtype))
    np.testing.assert_allclose(ys[-1], net.forward(X), **_tol(dtype))
    # Hidden layers: sigmoid output is not the pre-activation.
    assert not np.allclose(zs[1], ys[1], atol=1e-3)


# --- activations ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_activation_elementwise_and_dtype(name, dtype):
    z = np.linspace(-6.0, 6.0, 101).astype(dtype)
    act = _act(name)
    out = act(z)
    assert out.dtype == dtype
    assert out.shape == z.shape
    np.testing.assert_allclose(out, REFERENCE[name](z.astype(np.float64)), **_tol(dtype))
    d = act.derivative(z)
    assert d.dtype == dtype and d.shape == z.shape


def test_identity_returns_a_copy():
    z = np.arange(4.0)
    out = _act("identity")(z)
    out[0] = 99.0
    assert z[0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_large_inputs_without_overflow(dtype):
    z = np.array([-1e4, -1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0, 1e4], dtype=dtype)
    act = _act("sigmoid")
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = act(z)
        d = act.derivative(z)
    assert out.dtype == dtype
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(d))
    assert out[0] == 0.0 and out[1] == 0.0
    assert out[-1] == 1.0 and out[-2] == 1.0
    assert out[4] == 0.5
    assert np.all(np.diff(out) >= 0)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(d[[0, 1, -2, -1]], 0.0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_with_sigmoid_and_huge_preactivations_has_no_overflow(dtype):
    net = Network.from_arrays(
        [np.array([[1e3], [-1e3]]), np.array([[1.0, 1.0]])],
        [np.zeros(2), np.zeros(1)],
        ["sigmoid", "identity"],
        dtype=dtype,
    )
    X = np.array([[-50.0], [50.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = net.forward(X)
    # sigmoid(-5e4) + sigmoid(5e4) = 0 + 1 and the converse.
    np.testing.assert_allclose(out, [[1.0], [1.0]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_large_inputs(dtype):
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise"):
        out = _act("softplus")(z)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1000.0],
                               rtol=1e-6, atol=1e-30)


def test_make_activation_aliases_and_default_alpha():
    assert make_activation("linear") == Activation("identity")
    assert make_activation("None") == Activation("identity")
    assert make_activation(" ReLU ") == Activation("relu")
    assert make_activation("LeakyReLU").alpha == pytest.approx(0.01, abs=0)
    assert make_activation("leaky_relu", 0.2) == Activation("leaky_relu", 0.2)
    act = Activation("tanh")
    assert make_activation(act) is act
    assert str(make_activation("leaky_relu", 0.2)) == "leaky_relu(alpha=0.2)"


def test_make_activation_rejects_non_finite_alpha():
    with pytest.raises(ValidationError, match=r"'alpha'.*leaky_relu.*finite"):
        make_activation("leaky_relu", float("nan"))


# --- Lipschitz constants ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_LIPSCHITZ))
def test_lipschitz_constants(name):
    expected = EXPECTED_LIPSCHITZ[name]
    assert _act(name).lipschitz == (pytest.approx(expected, rel=1e-9)
                                    if isinstance(expected, float) else expected)


@pytest.mark.parametrize("alpha, expected", [(0.2, 1.0), (0.0, 1.0), (2.5, 2.5), (-1.5, 1.5),
                                             (-0.3, 1.0)])
def test_leaky_relu_lipschitz_is_max_of_one_and_abs_alpha(alpha, expected):
    assert Activation("leaky_relu", alpha).lipschitz == expected


LIPSCHITZ_CASES = [make_activation(n) for n in sorted(EXPECTED_LIPSCHITZ)] + [
    Activation("leaky_relu", a) for a in (0.2, 2.5, -1.5)
] + [make_activation("elu", 2.5), make_activation("relu6"),
     make_activation("hardsigmoid", 0.2, 0.5)]


@pytest.mark.parametrize("act", LIPSCHITZ_CASES, ids=str)
def test_lipschitz_bound_holds_and_is_tight(act):
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, 3.0, size=20000)
    b = np.concatenate([a[:10000] + rng.normal(0.0, 1e-3, size=10000),
                        rng.normal(0.0, 3.0, size=10000)])
    L = act.lipschitz
    lhs = np.abs(act(a) - act(b))
    rhs = L * np.abs(a - b)
    # 1e-12: float64 rounding of phi(a) - phi(b) for values of order 10.
    assert np.all(lhs <= rhs + 1e-12)
    # The constant is the smallest one: |phi'| gets within 0.1 % of L somewhere.
    grid = np.linspace(-40.0, 40.0, 80001)
    assert np.abs(act.derivative(grid)).max() == pytest.approx(L, rel=1e-3)


# --- derivatives ----------------------------------------------------------------------------


@pytest.mark.parametrize("act", LIPSCHITZ_CASES + [Activation("leaky_relu", 0.0)], ids=str)
def test_derivative_matches_finite_differences(act):
    z = np.random.default_rng(8).uniform(-6.0, 6.0, size=2000)
    z = z[np.abs(z) > 1e-3]  # away from the kink of relu / leaky_relu at 0
    h = 1e-6
    numeric = (act(z + h) - act(z - h)) / (2 * h)
    # Central difference: truncation O(h^2) plus rounding ~1e-16 / 1e-6 = 1e-10.
    np.testing.assert_allclose(act.derivative(z), numeric, rtol=0, atol=1e-7)


def test_relu_derivative_at_kink_is_zero_and_leaky_slopes():
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(Activation("relu").derivative(z), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(Activation("leaky_relu", 0.2).derivative(z[[0, 2]]), [0.2, 1.0])


# --- validation -----------------------------------------------------------------------------


def test_shapes_that_do_not_chain():
    with pytest.raises(ShapeError) as info:
        Network.from_arrays([np.ones((4, 3)), np.ones((2, 5))], [np.zeros(4), np.zeros(2)],
                            ["relu", "identity"])
    msg = str(info.value)
    assert re.search(r"\blayer 2\b", msg, re.I) and re.search(r"\blayer 1\b", msg, re.I)
    assert "5 inputs" in msg and "4 neurons" in msg


def test_shapes_that_do_not_chain_deeper():
    with pytest.raises(ShapeError, match=r"Layer 3 expects 7 inputs but layer 2 has 6 neurons"):
        Network.from_arrays([np.ones((4, 3)), np.ones((6, 4)), np.ones((2, 7))],
                            [np.zeros(4), np.zeros(6), np.zeros(2)],
                            ["relu", "relu", "identity"])


def test_bias_of_wrong_length():
    with pytest.raises(ShapeError) as info:
        Network.from_arrays([np.ones((4, 3)), np.ones((2, 4))], [np.zeros(4), np.zeros(3)],
                            ["relu", "identity"])
    msg = str(info.value)
    assert "bias of layer 2" in msg
    assert "(2,)" in msg and "(3,)" in msg


def test_weights_must_be_2d():
    with pytest.raises(ShapeError, match=r"weights of layer 1 must be a 2-D array"):
        Network([Dense(np.ones(3), np.zeros(3))])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad):
    W2 = np.ones((2, 4))
    W2[1, 3] = bad
    with pytest.raises(ValidationError) as info:
        Network.from_arrays([np.ones((4, 3)), W2], [np.zeros(4), np.zeros(2)], ["relu", "identity"])
    msg = str(info.value)
    assert "weights of layer 2" in msg and "finite" in msg
    assert "(1, 3)" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_bias(bad):
    b1 = np.zeros(4)
    b1[2] = bad
    with pytest.raises(ValidationError) as info:
        Network.from_arrays([np.ones((4, 3)), np.ones((2, 4))], [b1, np.zeros(2)], ["relu", "identity"])
    msg = str(info.value)
    assert "bias of layer 1" in msg and "finite" in msg
    assert "(2,)" in msg


def test_unknown_activation_lists_supported_names():
    with pytest.raises(UnsupportedLayerError) as info:
        Network.from_arrays([np.ones((4, 3)), np.ones((2, 4))], [np.zeros(4), np.zeros(2)],
                            ["mish", "identity"])
    msg = str(info.value)
    assert "'mish'" in msg
    for name in ACTIVATIONS:
        assert name in msg


def test_last_layer_must_be_linear():
    with pytest.raises(ValidationError) as info:
        Network.from_arrays([np.ones((4, 3)), np.ones((2, 4))], [np.zeros(4), np.zeros(2)],
                            ["relu", "tanh"])
    msg = str(info.value)
    assert "last layer must be linear" in msg and "identity" in msg and "tanh" in msg


def test_from_arrays_needs_equal_counts():
    with pytest.raises(ShapeError, match=r"2 weights, 1 biases and 2 activations"):
        Network.from_arrays([np.ones((4, 3)), np.ones((2, 4))], [np.zeros(4)], ["relu", "identity"])


def test_unsupported_dtype():
    with pytest.raises(ValidationError, match=r"'dtype'.*float32 or float64.*float16"):
        Network.random([3, 2], dtype=np.float16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_wrong_input_width(dtype):
    net = _net("relu", dtype)
    with pytest.raises(ShapeError) as info:
        net.forward(np.zeros((4, 6)))
    msg = str(info.value)
    assert "(n_samples, 5)" in msg and "(4, 6)" in msg
    with pytest.raises(ShapeError, match=r"\(n_samples, 5\)"):
        net.trace(np.zeros((2, 3, 5)))


def test_forward_rejects_non_finite_input():
    net = _net("relu", np.float64)
    X = np.zeros((2, 5))
    X[1, 1] = np.nan
    with pytest.raises(ValidationError, match=r"must be finite"):
        net.forward(X)


def test_dtype_inference_and_astype():
    W32 = [np.ones((2, 3), np.float32), np.ones((1, 2), np.float32)]
    b = [np.zeros(2), np.zeros(1)]
    assert Network.from_arrays(W32, b, ["relu", "identity"]).dtype == np.float32
    mixed = [W32[0], np.ones((1, 2))]
    assert Network.from_arrays(mixed, b, ["relu", "identity"]).dtype == np.float64
    net = Network.from_arrays(W32, b, ["relu", "identity"])
    net64 = net.astype(np.float64)
    assert net64.dtype == np.float64 and all(W.dtype == np.float64 for W in net64.weights)
    assert net64.equals(net)


def test_network_copies_its_inputs():
    W = np.ones((2, 3))
    net = Network.from_arrays([W, np.ones((1, 2))], [np.zeros(2), np.zeros(1)], ["relu", "identity"])
    W[0, 0] = 5.0
    assert net.weights[0][0, 0] == 1.0
    assert net.widths == [3, 2, 1]
    assert net.lipschitz_constants == [1.0, 1.0]
