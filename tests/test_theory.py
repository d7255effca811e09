"""The paper's theory (neurosim.theory): Props. 2-5 against brute force, finite differences and
Monte Carlo.

Every reference here is plain NumPy in float64 (``forward_xi``), independent of the kernels.
"""

import itertools

import numpy as np
import pytest

import neurosim as ns
from neurosim.backends.numba import NumbaBackend
from neurosim.plan import build_plan
from neurosim.sampler import sample_faults
from neurosim.network import make_activation
from neurosim.theory import (
    chebyshev_certificate,
    crash_derivatives,
    delta0_bound,
    kl_bernoulli,
    lipschitz_chain,
    q_balance,
    single_fault_terms,
    spectral_bound,
    taylor_moments,
)

ACTIVATIONS = ["relu", "tanh", "sigmoid", make_activation("leaky_relu", 0.2)]


def forward_xi(net, X, layer=None, neuron=None, semantics="silent", xi=0.0, value=0.0):
    """Output (float64) with the crash variable ``xi`` of one neuron set (0 healthy, 1 crashed).

    silent: ``y_i (1 - xi)``; paper: ``z_i = b_i + (1 - xi)(z_i - b_i)`` (the input layer has no
    bias: as silent); stuck: ``y_i + xi (v - y_i)``.
    """
    y = np.array(X, dtype=np.float64, copy=True)
    if y.ndim == 1:
        y = y[None, :]

    def hit_y(y):
        if semantics in ("silent", "paper"):
            y[:, neuron] *= 1.0 - xi
        else:
            y[:, neuron] += xi * (value - y[:, neuron])

    if layer == 0:
        hit_y(y)
    for k, lay in enumerate(net.layers, start=1):
        W = np.asarray(lay.W, dtype=np.float64)
        b = np.asarray(lay.b, dtype=np.float64)
        z = y @ W.T + b
        if k == layer and semantics == "paper":
            z[:, neuron] = b[neuron] + (1.0 - xi) * (z[:, neuron] - b[neuron])
        y = np.asarray(lay.activation(z), dtype=np.float64).copy()
        if k == layer and semantics != "paper":
            hit_y(y)
    return y


def forward_from(net, y, layer):
    """Output of the layers after ``layer`` applied to activations ``y`` of layer ``layer``."""
    for lay in net.layers[layer:]:
        y = np.asarray(lay.activation(y @ lay.W.T + lay.b), dtype=np.float64)
    return y


# --- Prop. 2 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
def test_spectral_bound_holds_from_the_input(act):
    for seed in range(4):
        net = ns.Network.random([6, 20, 15, 3], act, seed=seed)
        rng = np.random.default_rng(seed)
        X1 = rng.normal(size=(300, 6))
        # Pairs at every distance: tiny steps (where the local slope matters) to far points.
        X2 = X1 + rng.normal(size=X1.shape) * rng.choice([1e-3, 0.1, 1.0, 5.0], size=(300, 1))
        change = np.linalg.norm(net.forward(X2) - net.forward(X1), axis=1)
        bound = np.array([spectral_bound(net, d, 0) for d in np.linalg.norm(X2 - X1, axis=1)])
        assert np.all(change <= bound * (1 + 1e-12))
        assert np.max(change / bound) > 0.05  # not vacuous by a huge factor


@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
def test_spectral_bound_holds_from_an_inner_layer(act):
    for seed in range(3):
        net = ns.Network.random([5, 12, 12, 10, 2], act, seed=10 + seed)
        rng = np.random.default_rng(seed)
        ys = net.forward(rng.normal(size=(200, 5)), return_all=True)
        for layer in (1, 2, 3):
            y1 = ys[layer]
            y2 = y1 + rng.normal(size=y1.shape) * rng.choice([1e-3, 0.3, 3.0], size=(200, 1))
            change = np.linalg.norm(forward_from(net, y2, layer) - forward_from(net, y1, layer), axis=1)
            bound = spectral_bound(net, 1.0, layer) * np.linalg.norm(y2 - y1, axis=1)
            assert np.all(change <= bound * (1 + 1e-12))
        # The chain is the product of the later layers' spectral norms and Lipschitz constants.
        expected = np.linalg.norm(net.layers[2].W, 2) * np.linalg.norm(net.layers[3].W, 2)
        expected *= net.layers[2].activation.lipschitz
        assert lipschitz_chain(net, 2) == pytest.approx(expected, rel=1e-12)
        assert lipschitz_chain(net, net.n_layers) == 1.0


@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
def test_single_silent_crash_change_is_below_the_lipschitz_bound(act):
    net = ns.Network.random([6, 14, 10, 3], act, seed=3)
    X = np.random.default_rng(3).normal(size=(50, 6))
    ys = net.forward(X, return_all=True)
    clean = net.forward(X)
    for layer in range(net.n_layers + 1):
        chain = lipschitz_chain(net, layer)
        for i in range(net.widths[layer]):
            change = np.linalg.norm(forward_xi(net, X, layer, i, "silent", 1.0) - clean, axis=1)
            assert np.all(change <= np.abs(ys[layer][:, i]) * chain * (1 + 1e-12) + 1e-15)


# --- Prop. 3 ------------------------------------------------------------------------------------

def _patterns(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)


def exact_layer_tails(net, rates, alpha):
    """P{sum_i xi_i W_l^i >= alpha sum_i W_l^i} for layers 1..L, over all 2^n_l crash patterns."""
    out = []
    for lay, p in zip(net.layers, rates):
        mass = np.abs(np.asarray(lay.W, dtype=np.float64)).sum(axis=1)
        pats = _patterns(mass.size)
        k = pats.sum(axis=1)
        prob = p ** k * (1 - p) ** (mass.size - k)
        crashed = pats @ mass
        # A tie within rounding counts as exceeding: the exact tail is never underestimated.
        out.append(prob[crashed >= alpha * mass.sum() * (1 - 1e-12)].sum())
    return np.array(out)


def unbalanced_network(seed, widths):
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        # Rows with very different L1 masses, so q_l ranges from well balanced to poor.
        scale = rng.lognormal(0.0, rng.choice([0.1, 0.5, 1.0]), size=(n_out, 1))
        weights.append(rng.normal(size=(n_out, n_in)) * scale)
        biases.append(rng.normal(size=n_out))
    return ns.Network.from_arrays(weights, biases, ["tanh"] * (len(widths) - 2) + ["identity"])


def test_delta0_bound_is_never_below_the_exact_tail():
    informative = 0
    for seed in range(6):
        net = unbalanced_network(seed, [4, 12, 10, 11, 8])
        for p in (0.01, 0.05, 0.1, 0.2):
            for alpha in (p + 0.02, 0.25, 0.4, 0.6):
                if alpha <= p:
                    continue
                per_layer, union = delta0_bound(net, [p] * 4, alpha)
                exact = exact_layer_tails(net, [p] * 4, alpha)
                assert np.all(per_layer >= exact), (seed, p, alpha, per_layer, exact)
                informative += int(np.sum(per_layer < 0.5))
                # The layers crash independently: P(any layer reaches alpha) exactly.
                any_exact = 1.0 - np.prod(1.0 - exact)
                assert union >= any_exact
                assert union == pytest.approx(min(1.0, per_layer.sum()), rel=1e-15)
    assert informative > 50  # the checks above are not all against the trivial bound 1


def test_delta0_bound_with_per_layer_rates_and_its_formula():
    net = unbalanced_network(7, [3, 12, 9, 6])
    rates = [0.02, 0.15, 0.05]
    alpha = 0.3
    per_layer, union = delta0_bound(net, rates, alpha)
    assert np.all(per_layer >= exact_layer_tails(net, rates, alpha))
    q = q_balance(net)
    for l, n in enumerate(net.widths[1:]):
        assert per_layer[l] == pytest.approx(np.exp(-n * q[l] * kl_bernoulli(alpha, rates[l])), rel=1e-12)
    # L + 1 rates (input layer first) give the same bound for layers 1..L.
    same, same_union = delta0_bound(net, [0.5] + rates, alpha)
    np.testing.assert_array_equal(same, per_layer)
    assert same_union == union


def test_delta0_bound_edge_cases():
    net = unbalanced_network(1, [3, 8, 6, 4])
    per_layer, union = delta0_bound(net, [0.2, 0.3, 0.05], alpha=0.2)
    assert per_layer[0] == 1.0 and per_layer[1] == 1.0  # alpha <= p: no bound
    assert per_layer[2] < 1.0
    assert union == 1.0
    per_layer, union = delta0_bound(net, [0.0, 0.0, 0.0], alpha=0.1)
    np.testing.assert_array_equal(per_layer, 0.0)
    assert union == 0.0
    with pytest.raises(ns.ValidationError, match="alpha"):
        delta0_bound(net, [0.01] * 3, alpha=1.0)
    with pytest.raises(ns.ValidationError):
        delta0_bound(net, [0.01] * 2, alpha=0.1)


def test_kl_bernoulli_hand_values():
    assert kl_bernoulli(0.3, 0.3) == 0.0
    assert kl_bernoulli(0.0, 0.2) == pytest.approx(np.log(1 / 0.8), rel=1e-14)
    assert kl_bernoulli(0.5, 0.1) == pytest.approx(0.5 * np.log(5) + 0.5 * np.log(0.5 / 0.9), rel=1e-14)
    assert kl_bernoulli(0.1, 0.0) == np.inf


# --- Prop. 4: derivatives and exact single faults ---------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "softplus"])
@pytest.mark.parametrize("semantics,value", [("silent", 0.0), ("paper", 0.0), ("stuck", 0.7)])
def test_crash_derivatives_match_finite_differences(act, semantics, value):
    net = ns.Network.random([5, 9, 7, 3], act, seed=4)
    X = np.random.default_rng(4).normal(size=(6, 5))
    d = crash_derivatives(net, X, semantics, value)
    assert [t.shape for t in d] == [(6, n, 3) for n in net.widths]
    h = 1e-5
    for layer in range(net.n_layers + 1):
        fd = np.stack([
            (forward_xi(net, X, layer, i, semantics, h, value)
             - forward_xi(net, X, layer, i, semantics, -h, value)) / (2 * h)
            for i in range(net.widths[layer])], axis=1)
        # Central differences: truncation ~ h^2 |f'''| ~ 1e-10, rounding ~ 1e-16 / h ~ 1e-11.
        np.testing.assert_allclose(d[layer], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("semantics,value", [("silent", 0.0), ("paper", 0.0), ("stuck", -0.4)])
def test_single_fault_terms_equal_a_plain_loop(act, semantics, value):
    net = ns.Network.random([6, 11, 9, 4], act, seed=5)
    X = np.random.default_rng(5).normal(size=(7, 6))
    terms = single_fault_terms(net, X, semantics, value)
    clean = forward_xi(net, X)
    for layer in range(net.n_layers + 1):
        ref = np.stack([forward_xi(net, X, layer, i, semantics, 1.0, value) - clean
                        for i in range(net.widths[layer])], axis=1)
        assert terms[layer].shape == ref.shape
        # atol: a difference of two outputs of size ~1 carries their rounding (~1e-16).
        np.testing.assert_allclose(terms[layer], ref, rtol=1e-9, atol=1e-13)
    part = single_fault_terms(net, X, semantics, value, layers=[2])
    assert part[0].shape == (7, 0, 4) and part[1].shape == (7, 0, 4)
    np.testing.assert_array_equal(part[2], terms[2])


def test_taylor_moments_formula():
    rng = np.random.default_rng(0)
    terms = [rng.normal(size=(3, n, 2)) for n in (4, 5, 6)]
    rates = [0.0, 0.01, 0.2]
    mean, var = taylor_moments(terms, rates)
    exp_mean = 0.01 * terms[1].sum(axis=1) + 0.2 * terms[2].sum(axis=1)
    exp_var = 0.01 * 0.99 * (terms[1] ** 2).sum(axis=1) + 0.2 * 0.8 * (terms[2] ** 2).sum(axis=1)
    np.testing.assert_allclose(mean, exp_mean, rtol=1e-14)
    np.testing.assert_allclose(var, exp_var, rtol=1e-14)
    _, var_paper = taylor_moments(terms, rates, exact_variance=False)
    np.testing.assert_allclose(var_paper, 0.01 * (terms[1] ** 2).sum(axis=1)
                               + 0.2 * (terms[2] ** 2).sum(axis=1), rtol=1e-14)
    zero_mean, zero_var = taylor_moments(terms, [0.0, 0.0, 0.0])
    assert zero_mean.shape == (3, 2) and not zero_mean.any() and not zero_var.any()


@pytest.mark.parametrize("act,seed,p", [("tanh", 0, 5e-3), ("relu", 1, 5e-3), ("tanh", 2, 3e-3)])
def test_single_fault_moments_match_monte_carlo(act, seed, p):
    """Paper's b4: with small p the exact single-fault mean and std are those of the error."""
    net = ns.Network.random([8, 30, 30, 4], act, seed=seed)
    X = np.random.default_rng(100 + seed).normal(size=(2, 8))
    crash = ns.NeuronCrash(p)  # hidden and output layers
    mean, var = taylor_moments(single_fault_terms(net, X), crash.layer_rates(net.n_layers))
    std = np.sqrt(var)

    plan = build_plan(net, ns.FaultModel([crash]))
    backend = NumbaBackend()
    cache = backend.clean_cache(plan, plan.network.check_input(X))
    rng = np.random.default_rng(seed)
    n_draws = 1_500_000 if p < 5e-3 else 1_000_000
    with backend.session():
        batch = sample_faults(plan, rng, n_draws)  # fault-free draws have error exactly 0
        faulty = np.flatnonzero(batch.draw_has_fault)
        for i in range(X.shape[0]):
            err = (backend.propagate(plan, cache, batch, faulty, np.full(faulty.size, i))
                   - cache.output[i])
            mc_mean = err.sum(axis=0) / n_draws
            mc_std = np.sqrt((err ** 2).sum(axis=0) / n_draws - mc_mean ** 2)
            # The MC error must be well below the 5 % tolerance for the comparison to mean much.
            se_mean = np.linalg.norm(mc_std) / np.sqrt(n_draws)
            assert se_mean < 0.015 * np.linalg.norm(mc_mean)
            # Mean as a vector (a component can be near 0), std per component.
            assert np.linalg.norm(mean[i] - mc_mean) <= 0.05 * np.linalg.norm(mc_mean)
            np.testing.assert_allclose(std[i], mc_std, rtol=0.05)


@pytest.mark.parametrize("seed", [0, 6])
def test_first_order_mean_correlates_with_exact_single_faults(seed):
    # Smooth (tanh) network, silent crashes. Where the first order is knowingly cruder (relu
    # kinks, the larger "paper" jump z -> b) the correlation is lower (0.96-0.99 observed).
    net = ns.Network.random([8, 30, 30, 4], "tanh", seed=seed)
    X = np.random.default_rng(seed).normal(size=(300, 8))
    rates = ns.NeuronCrash(1e-3).layer_rates(net.n_layers)
    exact, _ = taylor_moments(single_fault_terms(net, X), rates)
    first, _ = taylor_moments(crash_derivatives(net, X), rates)
    for k in range(net.n_outputs):
        assert np.corrcoef(exact[:, k], first[:, k])[0, 1] >= 0.99


# --- Prop. 5 ------------------------------------------------------------------------------------

def test_chebyshev_certificate_hand_values():
    # ||E|| = 0.5, t = 1 - 0.5, Var = 0.03: 0.03 / 0.25 = 0.12, plus delta0.
    assert chebyshev_certificate([[0.3, 0.4]], [[0.01, 0.02]], 1.0)[0] == pytest.approx(0.12, rel=1e-14)
    assert chebyshev_certificate([[0.3, 0.4]], [[0.01, 0.02]], 1.0, delta0=0.05)[0] == pytest.approx(0.17, rel=1e-14)
    assert chebyshev_certificate(0.2, 0.01, 0.7)[0] == pytest.approx(0.04, rel=1e-14)
    # t <= 0 (the mean error already reaches eps) gives 1; so does a huge variance (capped).
    out = chebyshev_certificate([[0.3, 0.4], [0.6, 0.8], [0.0, 0.1]], [[0.0, 0.0], [0.1, 0.1], [5.0, 5.0]],
                                [0.5, 0.9, 1.0])
    np.testing.assert_array_equal(out, [1.0, 1.0, 1.0])
    # One eps per input.
    out = chebyshev_certificate([[0.0], [0.1]], [[0.01], [0.01]], [0.2, 0.6])
    np.testing.assert_allclose(out, [0.01 / 0.04, 0.01 / 0.25], rtol=1e-14)
