"""Fixtures of the Lava backend tests: the same forward/fault checks on three backends.

Run with the Lava environment: ``.venv-lava/bin/python -m pytest tests/lava -q``. Without
lava-nc (e.g. the main Python 3.11 environment) the "lava" cases are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

import neurosim
from neurosim.backends.numba import NumbaBackend
from neurosim.backends.numpy import NumpyBackend
from neurosim.faults import CRASH_MODES, REC_CRASH, REC_WEIGHT, FaultModel, NeuronCrash
from neurosim.plan import build_plan
from neurosim.sampler import batch_from_records

try:
    import lava.magma  # noqa: F401  (tests/lava itself can shadow a missing "lava")

    HAVE_LAVA = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_LAVA = False

needs_lava = pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed (Python 3.10 env)")

#: Float tolerance between backends: numba's float32 kernels update z incrementally.
RTOL, ATOL = 1e-4, 1e-4


def _forward(backend, target, X, batch=None):
    """A backend's outputs: clean, with one shared fault set, or one per input."""
    plan = build_plan(target, FaultModel([NeuronCrash(0.0)]))
    X = plan.network.check_input(X)
    cache = backend.clean_cache(plan, X)
    if batch is None:
        return np.asarray(cache.output, dtype=np.float64)
    m = X.shape[0]
    row_draw = np.zeros(m, np.int64) if batch.n_draws == 1 else np.arange(m, dtype=np.int64)
    with backend.session():
        out = backend.propagate(plan, cache, batch, row_draw, np.arange(m, dtype=np.int64))
    return np.asarray(out, dtype=np.float64)


def _numpy_forward(target, X, batch=None):
    """The NumPy reference backend: full forward passes with the faults applied literally."""
    return _forward(NumpyBackend(), target, X, batch)


def _numba_forward(target, X, batch=None):
    """The numba backend (the fast path)."""
    return _forward(NumbaBackend(), target, X, batch)


def _lava_forward(target, X, batch=None):
    from neurosim.backends.lava import run_lava

    return run_lava(target, X, mode="floating_pt", faults=batch)


BACKENDS = {"numpy": _numpy_forward, "numba": _numba_forward, "lava": _lava_forward}


@pytest.fixture(params=[
    "numpy", "numba", pytest.param("lava", marks=needs_lava)])
def backend(request):
    """``forward(target, X, batch=None) -> (n, n_L)`` of a backend."""
    return BACKENDS[request.param]


@pytest.fixture(scope="session")
def digits():
    net = neurosim.load_digits_model()
    X, y = neurosim.load_digits_test()
    return net, X, y


@pytest.fixture(scope="session")
def small_net():
    return neurosim.Network.random([12, 9, 7, 4], seed=3)


def reference_faulty_forward(net, X, crashes=(), weights=(), semantics="silent"):
    """faults.py semantics written out literally: ``W_ij := v``; a crash sets ``y_i := 0``
    (silent) or ``z_i := b_i`` (paper) after the layer is computed."""
    W = [layer.W.astype(np.float64).copy() for layer in net.layers]
    for l, i, j, v in weights:
        W[l - 1][i, j] = v
    y = net.check_input(X).astype(np.float64).copy()
    for l0, i in crashes:
        if l0 == 0:
            y[:, i] = 0.0
    for l, layer in enumerate(net.layers, start=1):
        z = y @ W[l - 1].T + layer.b
        y = layer.activation(z)
        for lc, i in crashes:
            if lc == l:
                if semantics == "silent":
                    y[:, i] = 0.0
                else:
                    y[:, i] = layer.activation(np.full(1, float(layer.b[i])))[0]
    return y


def make_batch(net, crashes=(), weights=(), n_draws=1, draw=None, semantics="silent"):
    """A FaultBatch with the given crashes (layer, i) of ``semantics`` and weight overrides
    (layer, i, j, v)."""
    records = [(l, REC_CRASH, i, 0, 0.0) for l, i in crashes]
    records += [(l, REC_WEIGHT, i, j, v) for l, i, j, v in weights]
    draws = np.zeros(len(records), np.int64) if draw is None else np.asarray(draw, np.int64)
    return batch_from_records(
        n_draws, net.n_layers, [r[0] for r in records], draws, [r[1] for r in records],
        [r[2] for r in records], in_start=[r[3] for r in records], value=[r[4] for r in records],
        crash_mode=CRASH_MODES[semantics])


class Helpers:
    """The helpers above, for the test module (tests/ is not a package)."""

    RTOL, ATOL = RTOL, ATOL
    make_batch = staticmethod(make_batch)
    reference = staticmethod(reference_faulty_forward)


@pytest.fixture(scope="session")
def h():
    return Helpers
