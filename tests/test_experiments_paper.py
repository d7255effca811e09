"""The paper's MNIST experiments: the width sweep as the paper ran it (setup="paper") and
crash-aware training; small mode on the digits (seconds)."""

import itertools
import math

import numpy as np
import pytest

pytest.importorskip("torch", reason="the experiments train networks (extra 'torch')")
pytest.importorskip("sklearn", reason="the training data come with scikit-learn (extra 'dev')")

import neurosim as ns  # noqa: E402
from neurosim import experiments as E  # noqa: E402
from neurosim.errors import ValidationError  # noqa: E402


@pytest.fixture(scope="module")
def paper_decay():
    return E.error_decay(setup="paper", widths=(16, 32, 64), data="digits", epochs=8,
                         n_samples=400, max_inputs=60, repeats=2, p=1e-2, lr=2e-3,
                         batch_size=32)


def test_paper_setup_varies_and_crashes_only_the_first_layer(paper_decay):
    r = paper_decay
    assert r.settings["setup"] == "paper" and r.settings["architecture"] == ["n"]
    assert r.settings["crash"] == "silent, first hidden layer only"
    assert r.settings["lr"] == 2e-3 and r.settings["batch_size"] == 32
    assert r.repeat_exact.shape == (3, 2) and r.repeat_norm.shape == (3, 2)
    np.testing.assert_allclose(r.var_exact, r.repeat_exact.mean(axis=1))
    for key in ("mc", "taylor", "exact", "exact_normalized"):
        assert r.fits[key]["n_points"] == 6  # every (width, seed) point
    # Monte Carlo (two or more crashes included) against the exact single-fault terms, which
    # drop only O(p n) of it: 4 standard errors of the pooled batch means plus 10 %.
    for i in range(3):
        b = r.var_mc_batches[i]
        se = b.std(ddof=1) / math.sqrt(b.size)
        assert abs(r.var_mc[i] - r.var_exact[i]) <= 4 * se + 0.1 * r.var_exact[i]
    # Seeds train different networks: their values differ.
    assert not np.allclose(r.repeat_exact[:, 0], r.repeat_exact[:, 1])
    assert "first hidden width" in r.summary() and "/ mean ||y||^2" in r.summary()


def test_paper_setup_per_output_and_first_layer_match_a_direct_computation(paper_decay):
    """Retrain the first (width, seed) point and compute its exact single-fault Var Delta per
    output with the first hidden layer's rate only, directly from the network."""
    from neurosim.experiments.common import theory_variances, train_network
    from neurosim.train import load_training_data

    td = load_training_data("digits")
    net = train_network(td, (16,), 8, 0, activation="sigmoid", loss="mse", lr=2e-3,
                        batch_size=32)
    X = td.X_test[:60]
    out = net.forward(X).astype(np.float64)
    # Single crash of hidden neuron i: the output loses W2[:, i] * h_i.
    h = 1.0 / (1.0 + np.exp(-(X @ net.layers[0].W.T.astype(np.float64) + net.layers[0].b)))
    W2 = net.layers[1].W.astype(np.float64)
    terms = (h[:, None, :] * W2[None, :, :]) ** 2  # (input, output, neuron)
    direct = 1e-2 * (1 - 1e-2) * terms.sum(axis=2).mean(axis=0).mean()
    assert paper_decay.repeat_exact[0, 0] == pytest.approx(direct, rel=1e-4)
    assert paper_decay.repeat_norm[0, 0] == pytest.approx((out ** 2).mean(axis=0).sum() / 10,
                                                          rel=1e-5)
    rates = np.zeros(net.n_layers + 1)
    rates[1] = 1e-2
    assert theory_variances(net, X, rates)[1] / 10 == pytest.approx(direct, rel=1e-4)


def test_paper_result_round_trip(tmp_path, paper_decay):
    path = tmp_path / "paper.h5"
    paper_decay.save(path)
    back = E.load_error_decay(path)
    np.testing.assert_array_equal(back.repeat_exact, paper_decay.repeat_exact)
    assert back.fits == paper_decay.fits and back.settings["setup"] == "paper"


@pytest.mark.parametrize("kwargs,name", [({"setup": "keras"}, "setup"),
                                         ({"setup": "paper", "repeats": 0}, "repeats"),
                                         ({"setup": "paper", "rest": (0,)}, "rest"),
                                         ({"setup": "paper", "conv": True}, "conv")])
def test_error_decay_setup_validation(kwargs, name):
    with pytest.raises(ValidationError, match=f"'{name}'"):
        E.error_decay(widths=(16, 32, 64), **kwargs)


def test_mc_crashed_accuracy_against_exact_enumeration():
    """A 3-4-3 network, crashes at its 4 hidden neurons: the exact crashed accuracy sums the
    16 crash patterns; the Monte Carlo count must cover it (99.9 % binomial interval) for
    at least 18 of 20 seeds."""
    net = ns.Network.random([3, 4, 3], "relu", seed=5)
    X = np.random.default_rng(0).normal(size=(12, 3))
    y = np.random.default_rng(1).integers(0, 3, 12)
    p = 0.3
    W1, b1, W2, b2 = (net.layers[0].W.astype(float), net.layers[0].b.astype(float),
                      net.layers[1].W.astype(float), net.layers[1].b.astype(float))
    exact = 0.0
    for pattern in itertools.product((0, 1), repeat=4):
        keep = 1 - np.array(pattern)
        prob = np.prod(np.where(keep == 0, p, 1 - p))
        out = (np.maximum(X @ W1.T + b1, 0) * keep) @ W2.T + b2
        exact += prob * np.mean(out.argmax(1) == y)
    rates = np.array([0.0, p, 0.0])
    covered = 0
    from neurosim.stats import clopper_pearson

    for seed in range(20):
        correct, total = E.mc_crashed_accuracy(net, X, y, rates, n_samples=500, seed=seed)
        assert total == 500 * 12
        lo, hi = clopper_pearson(correct, total, 0.999)
        covered += lo <= exact <= hi
    assert covered >= 18
    # Same seed, same count; another chunking of the rows, same count.
    assert (E.mc_crashed_accuracy(net, X, y, rates, 300, seed=3)
            == E.mc_crashed_accuracy(net, X, y, rates, 300, seed=3))


def test_crash_aware_small():
    r = E.crash_aware_training(small=True, data="digits", hidden=(24, 12), lr=1e-2)
    assert list(r.train_rates) == [0.0, 0.01, 0.02]
    assert r.clean.shape == (3, 2) and r.crashed.shape == (3, 2)
    assert r.gain_mean[0] == 0.0
    np.testing.assert_allclose(r.gain_mean[1:], (r.crashed[1:] - r.crashed[0]).mean(axis=1))
    assert np.all(r.crashed_pairs[..., 1] == 20 * 100)
    # The crashed network is worse than the clean one, and both beat chance.
    assert np.all(r.crashed_mean <= r.clean_mean + 0.01) and np.all(r.clean_mean > 0.5)
    assert "Crash-aware training" in r.summary()
    with pytest.raises(ValidationError, match="'train_rates'"):
        E.crash_aware_training(train_rates=(1.5,), small=True, data="digits")
    with pytest.raises(ValidationError, match="'seeds'"):
        E.crash_aware_training(seeds=1, small=True, data="digits")
