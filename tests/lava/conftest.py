"""Fixtures of the Lava backend tests: the same forward/fault checks on three backends.

Run with the Lava environment: ``.venv-lava/bin/python -m pytest tests/lava -q``. Without
lava-nc (e.g. the main Python 3.11 environment) the "lava" cases are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

import neurosim
from neurosim.engine import batch_from_records, build_plan, clean_cache, propagate
from neurosim.faults import F_CRASH, F_WEIGHT, FaultModel, NeuronCrash

try:
    import lava.magma  # noqa: F401  (tests/lava itself can shadow a missing "lava")

    HAVE_LAVA = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_LAVA = False

needs_lava = pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed (Python 3.10 env)")

#: Float tolerance between backends: numba's float32 kernels update z incrementally.
RTOL, ATOL = 1e-4, 1e-4


def _simulated_network(target):
    return target.quantized_network() if isinstance(target, neurosim.Mapping) else target


def _numpy_forward(target, X, batch=None, crash_semantics="silent"):
    """A plain NumPy forward pass with the faults applied to copies of the weights."""
    from neurosim.backends.lava import apply_faults

    net = _simulated_network(target)
    X = net.check_input(X).astype(np.float64)
    W0 = [layer.W.astype(np.float64) for layer in net.layers]
    b0 = [layer.b.astype(np.float64) for layer in net.layers]
    out = np.empty((X.shape[0], net.n_outputs))
    for k in range(X.shape[0]):
        d = 0 if batch is None or batch.n_draws == 1 else k
        W, b = apply_faults(W0, b0, batch, d, crash_semantics) if batch is not None else (W0, b0)
        y = X[k]
        for l, layer in enumerate(net.layers):
            y = layer.activation(W[l] @ y + b[l])
        out[k] = y
    return out


def _numba_forward(target, X, batch=None, crash_semantics="silent"):
    """neurosim.engine.propagate (the numba fast path)."""
    faults = FaultModel([NeuronCrash(0.0, semantics=crash_semantics)])
    plan = build_plan(target, faults)
    X = plan.network.check_input(X)
    cache = clean_cache(plan, X)
    if batch is None:
        return cache.output.astype(np.float64)
    m = X.shape[0]
    row_draw = np.zeros(m, np.int64) if batch.n_draws == 1 else np.arange(m, dtype=np.int64)
    return propagate(plan, cache, batch, row_draw, np.arange(m, dtype=np.int64)).astype(np.float64)


def _lava_forward(target, X, batch=None, crash_semantics="silent"):
    from neurosim.backends.lava import run_lava

    return run_lava(target, X, mode="floating_pt", faults=batch, crash_semantics=crash_semantics)


BACKENDS = {"numpy": _numpy_forward, "numba": _numba_forward, "lava": _lava_forward}


@pytest.fixture(params=[
    "numpy", "numba", pytest.param("lava", marks=needs_lava)])
def backend(request):
    """``forward(target, X, batch=None, crash_semantics="silent") -> (n, n_L)`` of a backend."""
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


def make_batch(net, crashes=(), weights=(), n_draws=1, draw=None):
    """A FaultBatch with the given crashes (layer, i) and weight overrides (layer, i, j, v)."""
    records = [(l, F_CRASH, i, 0, 0.0) for l, i in crashes]
    records += [(l, F_WEIGHT, i, j, v) for l, i, j, v in weights]
    draws = np.zeros(len(records), np.int64) if draw is None else np.asarray(draw, np.int64)
    return batch_from_records(
        n_draws, net.n_layers, [r[0] for r in records], draws, [r[1] for r in records],
        [r[2] for r in records], [r[3] for r in records], value=[r[4] for r in records])


class Helpers:
    """The helpers above, for the test module (tests/ is not a package)."""

    RTOL, ATOL = RTOL, ATOL
    make_batch = staticmethod(make_batch)
    reference = staticmethod(reference_faulty_forward)


@pytest.fixture(scope="session")
def h():
    return Helpers
