"""simulate, the stratified estimator, certify and the theory on every backend, against the
numba backend, with an explicit list of unsupported cases and the reason (Nengo's
``pytest_nengo`` is the model).

The backends under test come from ``NEUROSIM_TEST_BACKENDS`` (default ``numpy,numba``); the
Lava environment runs this file with ``NEUROSIM_TEST_BACKENDS=lava`` (``make test-lava``).
Every backend sees the same fault draws for a seed, so counts must be equal and float
results equal to round-off; the networks are tiny so that Lava, which runs one episode per
faulty row, finishes in a minute.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import neurosim as ns
from neurosim.errors import BackendUnsupportedError
from neurosim.theory import single_fault_terms

BACKENDS = [b for b in os.environ.get("NEUROSIM_TEST_BACKENDS", "numpy,numba").split(",") if b]

#: (backend, case) -> why that backend cannot run the case (each is tested to raise).
UNSUPPORTED = {
    ("lava", "crash_stuck"): "'stuck'",        # a neuron that keeps emitting a constant
    ("lava", "tanh"): "ReLU",                  # SigmaDelta / graded neurons: ReLU or identity
}


def _relu_net():
    return ns.Network.random([4, 5, 3], "relu", seed=3)


def _mapping():
    return ns.map_network(_relu_net(), "loihi1")


CASES = {
    # name: (target, faults, simulate keyword arguments)
    "crash_silent": (_relu_net, lambda: ns.NeuronCrash(0.1), dict(metric="linf", eps=0.3)),
    "crash_paper_input": (_relu_net, lambda: ns.NeuronCrash(0.1, semantics="paper",
                                                            layers=(0, 1, 2)),
                          dict(metric="flip")),
    "stuck_bitflip_core": (_mapping, lambda: ns.SynapseStuck(0.02, 0.02) + ns.WeightBitFlip(0.01)
                           + ns.CoreFailure(0.1), dict(metric="l2", eps=0.2)),
    "permanent": (_relu_net, lambda: ns.NeuronCrash(0.1), dict(metric="linf", eps=0.3,
                                                               mode="permanent")),
    "crash_stuck": (_relu_net, lambda: ns.NeuronCrash(0.1, semantics="stuck", value=2.0),
                    dict(metric="linf", eps=0.3)),
    "tanh": (lambda: ns.Network.random([4, 5, 3], "tanh", seed=3), lambda: ns.NeuronCrash(0.1),
             dict(metric="linf", eps=0.3)),
}
X = np.random.default_rng(0).normal(size=(2, 4))
Y = np.array([0, 2])


def _supported(backend, case):
    return (backend, case) not in UNSUPPORTED


def _runs(backend):
    return [pytest.param(case, id=case) for case in CASES if _supported(backend, case)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "lava":
        pytest.importorskip("lava.magma", reason="lava-nc is not installed (Python 3.10 env)")
    return request.param


@pytest.mark.parametrize("case", list(CASES))
def test_simulate_matches_numba(backend, case):
    if not _supported(backend, case):
        pytest.skip(f"unsupported on {backend}: tested in test_unsupported_cases_raise")
    target, faults, kwargs = CASES[case]
    target, faults = target(), faults()
    got = ns.simulate(target, faults, X, Y, n_samples=3, seed=5, backend=backend, **kwargs)
    ref = ns.simulate(target, faults, X, Y, n_samples=3, seed=5, backend="numba", **kwargs)
    assert got.backend == backend
    assert set(got.to_dict()) == set(ref.to_dict())  # the same result, whatever the backend
    assert ref.n_faulty_pairs > 0
    for key in ("n_pairs", "n_faulty_pairs", "n_failures", "faulty_accuracy", "fault_model"):
        assert getattr(got, key) == getattr(ref, key), key
    np.testing.assert_array_equal(got.layer_failures, ref.layer_failures)
    np.testing.assert_allclose(got.output_error_mean, ref.output_error_mean, rtol=1e-7, atol=1e-9)
    assert got.error_mean == pytest.approx(ref.error_mean, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("case", ["crash_silent", "stuck_bitflip_core"])
def test_stratified_and_certify_match_numba(backend, case):
    target, faults, kwargs = CASES[case]
    target, faults = target(), faults()
    kwargs = {k: v for k, v in kwargs.items() if k != "mode"}
    # A work budget of 1 row samples every stratum: few rows, every code path (Lava is slow).
    common = dict(seed=2, n_samples=2, work_budget=1, **kwargs)
    got = ns.stratified_estimate(target, faults, X, Y, backend=backend, **common)
    ref = ns.stratified_estimate(target, faults, X, Y, backend="numba", **common)
    assert all(s.method == "sampled" for s in ref.strata) and ref.rows > 0
    assert got.estimate == pytest.approx(ref.estimate, rel=1e-12, abs=1e-15)
    assert (got.lower, got.upper) == pytest.approx((ref.lower, ref.upper), rel=1e-12)
    cert = ns.certify(target, faults, X, Y, delta=0.5, theory=False, backend=backend, **common)
    cert_ref = ns.certify(target, faults, X, Y, delta=0.5, theory=False, backend="numba", **common)
    assert cert.backend == backend and set(cert.to_dict()) == set(cert_ref.to_dict())
    assert cert.delta_upper == pytest.approx(cert_ref.delta_upper, rel=1e-12)
    assert cert.certified == cert_ref.certified


def test_simulate_stratified_matches_numba(backend):
    """The stratified estimator through simulate: exact strata by enumeration."""
    net = ns.Network.random([3, 2, 2], "relu", seed=1)
    x = np.random.default_rng(2).normal(size=(1, 3))
    kwargs = dict(metric="linf", eps=0.05, estimator="stratified", n_samples=2, seed=1)
    got = ns.simulate(net, ns.NeuronCrash(0.05), x, backend=backend, **kwargs)
    ref = ns.simulate(net, ns.NeuronCrash(0.05), x, backend="numba", **kwargs)
    assert set(got.to_dict()) == set(ref.to_dict()) and got.estimator == "stratified"
    assert any(s["method"] == "exact" for s in ref.stratification["strata"])
    assert got.failure_rate == pytest.approx(ref.failure_rate, rel=1e-12, abs=1e-15)
    assert got.failure_rate > 0


def test_exact_single_faults_match_numba(backend):
    net = ns.Network.random([3, 2, 2], "relu", seed=1)
    x = np.random.default_rng(1).normal(size=(1, 3))
    got = single_fault_terms(net, x, layers=[1, 2], backend=backend)
    ref = single_fault_terms(net, x, layers=[1, 2], backend="numba")
    for l in (1, 2):
        np.testing.assert_allclose(got[l], ref[l], rtol=1e-9, atol=1e-12)
    assert np.abs(ref[1]).max() > 0


@pytest.mark.parametrize("backend_case", [pytest.param(k, id="-".join(k)) for k in UNSUPPORTED])
def test_unsupported_cases_raise(backend_case):
    backend, case = backend_case
    if backend not in BACKENDS:
        pytest.skip(f"backend {backend} not under test here")
    target, faults, kwargs = CASES[case]
    with pytest.raises(BackendUnsupportedError, match=UNSUPPORTED[backend_case]):
        ns.simulate(target(), faults(), X, Y, n_samples=1, backend=backend, **kwargs)


def test_backend_names_and_errors():
    assert ns.get_backend("auto").name == "numba"
    assert ns.get_backend("numpy").name == "numpy"
    with pytest.raises(ns.ValidationError, match="'backend' parameter of simulate"):
        ns.simulate(_relu_net(), ns.NeuronCrash(0.1), X, n_samples=1, backend="cuda")


def test_a_registered_backend_is_known_by_name(monkeypatch):
    import neurosim.backends as B
    from neurosim.backends.numpy import NumpyBackend

    class Mine(NumpyBackend):
        name = "test_mine"

    monkeypatch.setitem(B.BACKENDS, "test_mine", Mine)
    r = ns.simulate(_relu_net(), ns.NeuronCrash(0.1), X, n_samples=2, backend="test_mine")
    assert r.backend == "test_mine"


def test_auto_falls_back_to_numpy_and_says_so_once(monkeypatch):
    import neurosim.backends as B

    monkeypatch.delitem(B.BACKENDS, "numba")
    monkeypatch.setitem(B.BUILTIN_BACKENDS, "numba", "neurosim.no_such_module")
    monkeypatch.setattr(B, "_AUTO_NOTE_GIVEN", [])
    with pytest.warns(ns.NeurosimWarning, match="numba is not available.*NumPy reference"):
        assert ns.get_backend("auto").name == "numpy"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = ns.simulate(_relu_net(), ns.NeuronCrash(0.1), X, n_samples=2)  # no second note
    assert r.backend == "numpy"
