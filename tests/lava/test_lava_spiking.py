"""Spiking networks on Lava: a loihi2 mapping of a SpikingNetwork runs as bit-accurate Dense
and LIF processes (fixed_pt), and equals neurosim's integer model
(neurosim.spiking.integer) exactly, clean and under faults."""

from __future__ import annotations

import numpy as np
import pytest

import neurosim as ns
from neurosim import spiking as sp
from neurosim.spiking.integer import integer_spiking_run

try:
    import lava.magma  # noqa: F401  (tests/lava itself can shadow a missing "lava")

    HAVE_LAVA = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_LAVA = False

pytestmark = pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed (Python 3.10)")


def _digits_snn(readout="membrane"):
    X, y = ns.load_digits_test()
    net = sp.convert(ns.load_digits_model(), X[:198], T=16).network
    last = None if readout == "membrane" else sp.IF(threshold=0.5, reset="value")
    snn = sp.SpikingNetwork(net, [sp.IF(threshold=1.0, reset="value"),
                                  sp.LIF(tau=8.0, threshold=0.5, reset="value"), last],
                            T=16, readout=readout)
    return ns.map_network(snn, "loihi2"), X[198:], y[198:]


@pytest.mark.parametrize("readout", ["membrane", "count"])
def test_lava_lif_processes_equal_the_integer_model(readout):
    from neurosim.backends.lava import run_lava_spiking

    mapping, X, _ = _digits_snn(readout)
    want = integer_spiking_run(mapping, X[:8], return_integers=True)
    assert np.any(want != 0)
    np.testing.assert_array_equal(run_lava_spiking(mapping, X[:8], return_integers=True), want)


def test_lava_lif_processes_equal_the_integer_model_under_faults():
    from neurosim.backends.lava import run_lava_spiking
    from neurosim.plan import build_plan
    from neurosim.sampler import sample_block

    mapping, X, _ = _digits_snn()
    plan = build_plan(mapping, ns.NeuronCrash(0.02, semantics="paper") + ns.WeightBitFlip(1e-3)
                      + ns.SynapseStuck(1e-3, 1e-3) + ns.CoreFailure(0.2), fields=False)
    batch, _, _, _, _ = sample_block(plan, 0, 0, 1, 8, "transient")
    batch = batch.select(np.arange(8))
    want = integer_spiking_run(mapping, X[:8], batch, return_integers=True)
    assert np.any(want != integer_spiking_run(mapping, X[:8], return_integers=True))
    np.testing.assert_array_equal(run_lava_spiking(mapping, X[:8], batch, return_integers=True),
                                  want)


def test_the_lava_backend_simulates_a_spiking_mapping_as_the_integer_model():
    """simulate(backend=LavaBackend('fixed_pt')) on a spiking mapping: its clean readout is the
    integer model's, and it refuses what Lava's LIF cannot run."""
    from neurosim.backends.lava import LavaBackend, LavaUnsupportedError

    mapping, X, y = _digits_snn()
    backend = LavaBackend(mode="fixed_pt")
    r = ns.simulate(mapping, ns.NeuronCrash(0.01), X[:6], y[:6], n_samples=1, seed=0,
                    backend=backend, progress=False)
    assert r.clean_accuracy == pytest.approx(
        np.mean(integer_spiking_run(mapping, X[:6]).argmax(1) == y[:6]))
    assert r.n_faulty_pairs > 0
    with pytest.raises(LavaUnsupportedError, match="fixed_pt"):
        ns.simulate(mapping, ns.NeuronCrash(0.01), X[:6], y[:6], n_samples=1,
                    backend=LavaBackend(mode="floating_pt"), progress=False)
    converted = ns.map_network(sp.convert(ns.load_digits_model(), X[:50], T=8), "loihi2")
    with pytest.raises(LavaUnsupportedError, match="resets its membrane to 0"):
        ns.simulate(converted, ns.NeuronCrash(0.01), X[:6], y[:6], n_samples=1,
                    backend=backend, progress=False)
