"""The Lava backend against neurosim's float forward pass, the numba path and the integer model."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import neurosim
from neurosim.backends.numba import NumbaBackend
from neurosim.errors import BackendUnsupportedError, MissingExtraError, NeurosimError
from neurosim.faults import CoreFailure, FaultModel, NeuronCrash, SynapseStuck, WeightBitFlip
from neurosim.plan import build_plan
from neurosim.quantization import IntegerModelError, integer_forward, integer_layers
from neurosim.sampler import sample_faults

try:
    import lava.magma  # noqa: F401  (tests/lava itself can shadow a missing "lava")

    needs_lava = pytest.mark.skipif(False, reason="")
except ImportError:  # pragma: no cover
    needs_lava = pytest.mark.skip(reason="lava-nc is not installed (Python 3.10 env)")

lava_backend = pytest.importorskip("neurosim.backends.lava")
from neurosim.backends.lava import (  # noqa: E402
    LAVA_UNSUPPORTED, LavaUnsupportedError, require_lava, run_lava,
)

#: How many digits test inputs the floating_pt equality check uses (all of the split).
N_DIGITS_FLOAT = 397
#: How many inputs the fixed_pt exactness check uses.
N_DIGITS_FIXED = 100


# --- the same forward and fault tests on every backend ----------------------------------------

def test_clean_forward(backend, small_net, h):
    X = np.random.default_rng(0).normal(size=(5, 12))
    np.testing.assert_allclose(backend(small_net, X), small_net.forward(X), rtol=h.RTOL, atol=h.ATOL)


CRASHES = [(0, 3), (1, 2), (2, 5), (3, 1)]           # input, hidden, hidden, output neurons
WEIGHTS = [(1, 4, 7, 0.0), (2, 0, 3, 2.5), (3, 2, 6, -1.75), (2, 2, 0, 0.9)]


@pytest.mark.parametrize("semantics", ["silent", "paper"])
def test_shared_faults(backend, small_net, semantics, h):
    X = np.random.default_rng(1).normal(size=(4, 12))
    # a stuck synapse on a crashed neuron's row: the crash wins
    weights = WEIGHTS + [(2, 5, 1, 3.0)]
    batch = h.make_batch(small_net, CRASHES, weights, semantics=semantics)
    expected = h.reference(small_net, X, CRASHES, weights, semantics)
    got = backend(small_net, X, batch)
    np.testing.assert_allclose(got, expected, rtol=h.RTOL, atol=h.ATOL)


def test_per_input_faults(backend, small_net, h):
    """Transient faults: draw k acts on input k only."""
    X = np.random.default_rng(2).normal(size=(3, 12))
    per_input = [([(1, 0), (3, 2)], []), ([], [(1, 1, 1, 0.0), (3, 0, 0, 4.0)]), ([(2, 3)], [(2, 3, 4, -2.0)])]
    crashes = [(l, i) for k, (c, _) in enumerate(per_input) for l, i in c]
    weights = [w for _, w in per_input for w in w]
    draws = [k for k, (c, _) in enumerate(per_input) for _ in c] + [
        k for k, (_, w) in enumerate(per_input) for _ in w]
    batch = h.make_batch(small_net, crashes, weights, n_draws=3, draw=draws)
    expected = np.vstack([h.reference(small_net, X[k:k + 1], c, w)
                          for k, (c, w) in enumerate(per_input)])
    np.testing.assert_allclose(backend(small_net, X, batch), expected, rtol=h.RTOL, atol=h.ATOL)


def test_sampled_faults_on_mapping(backend, digits, h):
    """Faults drawn by neurosim's sampler on a loihi1 mapping (crashes, stuck synapses, bit
    flips, core failures) give the same outputs on every backend as the numba path."""
    net, X, _ = digits
    mapping = neurosim.map_network(net, "loihi1")
    faults = FaultModel([NeuronCrash(0.01), SynapseStuck(1e-4, 1e-4), WeightBitFlip(1e-4),
                         CoreFailure(0.2)])
    plan = build_plan(mapping, faults)
    m = 4
    batch = sample_faults(plan, np.random.default_rng(5), m)
    assert batch.kind.size > 0
    Xs = X[:m]
    numba = NumbaBackend()
    cache = numba.clean_cache(plan, plan.network.check_input(Xs))
    ref = numba.propagate(plan, cache, batch, np.arange(m), np.arange(m)).astype(np.float64)
    np.testing.assert_allclose(backend(mapping, Xs, batch), ref, rtol=h.RTOL, atol=h.ATOL)


# --- Lava floating_pt and fixed_pt ------------------------------------------------------------

@needs_lava
def test_floating_pt_matches_forward_on_digits(digits, h):
    net, X, _ = digits
    Xs = X[:N_DIGITS_FLOAT]
    ref = net.forward(Xs).astype(np.float64)
    out = run_lava(net, Xs, mode="floating_pt")
    scale = np.abs(ref).max(axis=1, keepdims=True)
    assert (np.abs(out - ref) / scale).max() <= 1e-5
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # against the float64 forward pass it is float64 round-off only
    ref64 = net.astype(np.float64).forward(Xs)
    np.testing.assert_allclose(out, ref64, rtol=1e-10, atol=1e-10)


@needs_lava
def test_fixed_pt_equals_integer_model(digits, h):
    net, X, _ = digits
    mapping = neurosim.map_network(net, "loihi2")
    Xs = X[:N_DIGITS_FIXED]
    lava_int = run_lava(mapping, Xs, mode="fixed_pt", return_integers=True)
    np.testing.assert_array_equal(lava_int, integer_forward(mapping, Xs, return_integers=True))


@needs_lava
def test_fixed_pt_faults_equal_integer_model(digits, h):
    net, X, _ = digits
    mapping = neurosim.map_network(net, "loihi2")
    q = mapping.quantization
    Xs = X[:3]
    crashes = [(0, 20), (1, 7), (2, 100), (3, 4)]
    weights = [(1, 3, 30, q[0].scale * q[0].q_max), (2, 8, 8, 0.0),
               (3, 1, 17, q[2].scale * q[2].q_min), (2, 9, 10, q[1].scale * 2 * 37)]
    for n_draws, draws in ((1, None), (3, [0, 1, 2, 0, 1, 2, 0, 1])):
        for semantics in ("silent", "paper"):
            batch = h.make_batch(net, crashes, weights, n_draws=n_draws, draw=draws,
                                 semantics=semantics)
            got = run_lava(mapping, Xs, mode="fixed_pt", faults=batch, return_integers=True)
            want = integer_forward(mapping, Xs, faults=batch, return_integers=True)
            np.testing.assert_array_equal(got, want)


def test_integer_model_bound(digits, h):
    """integer_forward vs the quantized float network: the documented error bound holds.

    Per layer: e_0 = 2^-(f+1) (input rounding), e_l = max_i sum_j |s_l Q_l[i, j]| e_{l-1}
    + 2^-f (floor of the shift) + 2^-(f+1) (bias rounding); ReLU is 1-Lipschitz.
    """
    net, X, _ = digits
    mapping = neurosim.map_network(net, "loihi2")
    f = 8
    bound = 2.0 ** -(f + 1)
    for q in mapping.quantization:
        bound = np.abs(q.scale * q.Q.astype(np.float64)).sum(axis=1).max() * bound
        bound += 2.0 ** -f + 2.0 ** -(f + 1)
    err = np.abs(integer_forward(mapping, X) - mapping.quantized_network().astype(np.float64).forward(X))
    assert err.max() <= bound
    layers = integer_layers(mapping, f)
    assert [int(e) for e in layers.weight_exp] == [-9, -9, -9]


# --- unsupported features raise clear errors -------------------------------------------------

def test_unsupported_list_is_explicit(h):
    assert set(LAVA_UNSUPPORTED) == {"activation", "crash_stuck", "fixed_profile", "fixed_tile",
                                      "fixed_weight_value", "int32_overflow", "pooling",
                                      "fields", "analog", "spiking_mode", "spiking_model"}


def test_non_relu_activation_raises(small_net, h):
    tanh = neurosim.Network.random([6, 5, 3], activation="tanh", seed=0)
    with pytest.raises(LavaUnsupportedError, match="SigmaDelta"):
        run_lava(tanh, np.zeros((1, 6)))
    assert issubclass(LavaUnsupportedError, NeurosimError)


def test_stuck_crash_semantics_raise(small_net, h):
    batch = h.make_batch(small_net, [(1, 0)], semantics="stuck")
    with pytest.raises(LavaUnsupportedError, match="stuck"):
        run_lava(small_net, np.zeros((1, 12)), faults=batch)
    with pytest.raises(LavaUnsupportedError, match="stuck"):
        neurosim.simulate(small_net, NeuronCrash(0.1, semantics="stuck"), np.zeros((1, 12)),
                          n_samples=1, backend="lava")
    assert issubclass(LavaUnsupportedError, BackendUnsupportedError)


@pytest.mark.parametrize("profile", ["rram_crossbar", "spinnaker2", "truenorth"])
def test_fixed_pt_on_non_loihi_profile_raises(small_net, profile, h):
    mapping = neurosim.map_network(small_net, profile)
    with pytest.raises(LavaUnsupportedError, match="8-bit"):
        run_lava(mapping, np.zeros((1, 12)), mode="fixed_pt")


def test_fixed_pt_non_word_weight_raises(small_net, h):
    mapping = neurosim.map_network(small_net, "loihi2")
    batch = h.make_batch(small_net, weights=[(1, 0, 0, 0.123456789)])
    with pytest.raises(LavaUnsupportedError, match="integer weight word"):
        run_lava(mapping, np.zeros((1, 12)), mode="fixed_pt", faults=batch)


def test_fixed_pt_tile_raises(small_net, h):
    from neurosim.faults import REC_TILE
    from neurosim.sampler import batch_from_records

    mapping = neurosim.map_network(small_net, "loihi2")
    batch = batch_from_records(1, 3, [1], [0], REC_TILE, [0], [2], [0], [3])
    with pytest.raises(LavaUnsupportedError, match="crossbar"):
        run_lava(mapping, np.zeros((1, 12)), mode="fixed_pt", faults=batch)


def test_int32_overflow_raises(h):
    big = neurosim.Network.from_arrays([np.full((2, 4), 100.0), np.ones((1, 2))],
                                       [np.zeros(2), np.zeros(1)], ["relu", "identity"])
    mapping = neurosim.map_network(big, "loihi2")
    with pytest.raises(IntegerModelError, match="int32"):
        integer_forward(mapping, np.full((1, 4), 1e6))


def test_missing_lava_raises(monkeypatch, h):
    monkeypatch.setitem(sys.modules, "lava.proc.dense.process", None)
    with pytest.raises(MissingExtraError, match=r"Python 3\.10.*neurosim-faults\[lava\]"):
        require_lava()


# --- the Monte Carlo driver ------------------------------------------------------------------

@needs_lava
def test_lava_simulate_matches_numba_simulate(digits, h):
    net, X, y = digits
    mapping = neurosim.map_network(net, "loihi2")
    faults = NeuronCrash(0.02)
    Xs, ys = X[:3], y[:3]
    kwargs = dict(metric="linf", eps=0.5, n_samples=4, seed=11)
    res = neurosim.simulate(mapping, faults, Xs, ys, backend="lava", **kwargs)
    ref = neurosim.simulate(mapping, faults, Xs, ys, backend="numba", **kwargs)
    assert res.n_pairs == ref.n_pairs
    assert res.n_faulty_pairs == ref.n_faulty_pairs
    assert res.n_failures == ref.n_failures
    assert res.backend == "lava" and ref.backend == "numba"
    np.testing.assert_allclose(res.output_error_mean, ref.output_error_mean, atol=1e-4)


@needs_lava
def test_cli_simulate_backend_lava(tmp_path, capsys):
    """neurosim simulate --backend lava on a few inputs: same fault draws as the numba path."""
    import json

    import neurosim as ns
    from neurosim.cli import main

    X, y = ns.load_digits_test()
    data = tmp_path / "few.npz"
    np.savez(data, X=X[:3], y=y[:3])
    argv = ["simulate", "--data", str(data), "--samples", "2", "--fault", "crash:p=0.01",
            "--seed", "5", "--json", "--no-progress"]
    assert main(argv + ["--backend", "lava"]) == 0
    lava = json.loads(capsys.readouterr().out)
    assert main(argv + ["--backend", "numba"]) == 0
    numba = json.loads(capsys.readouterr().out)
    assert lava["backend"] == "lava" and numba["backend"] == "numba"
    assert set(lava) == set(numba)  # the same result, the same JSON keys
    for key in ("n_pairs", "n_faulty_pairs", "n_failures", "clean_accuracy", "failures_by_layer"):
        assert lava[key] == numba[key], key
