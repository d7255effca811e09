"""The dense kernels against plain NumPy (the faulty-pass kernels: tests/test_kernels.py)."""

import numpy as np
import pytest

from neurosim.kernels import propagate as K
from neurosim.network import ACTIVATION_CODES, make_activation


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_dense_forward_matches_numpy(dtype, rtol):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 23)).astype(dtype)
    W = rng.normal(size=(11, 23)).astype(dtype)
    b = rng.normal(size=11).astype(dtype)
    got = K.dense_forward(X, W, b)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, X.astype(np.float64) @ W.T.astype(np.float64) + b, rtol=rtol,
                               atol=rtol)


@pytest.mark.parametrize("name", list(ACTIVATION_CODES))
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_activate_matches_numpy(name, dtype, rtol):
    rng = np.random.default_rng(1)
    Z = (rng.normal(size=(19, 13)) * 5).astype(dtype)
    Z[0, :4] = [0.0, -0.0, 60.0, -60.0]
    act = make_activation(name, 0.2 if name == "leaky_relu" else None)
    got = K.activate(Z, ACTIVATION_CODES[name], act.alpha, act.beta)
    np.testing.assert_allclose(got, act(Z.astype(np.float64)), rtol=rtol, atol=rtol)
    # The one-thread, in-place version (chips' passes) computes the same numbers exactly.
    inplace = K.activate_inplace(Z.copy(), ACTIVATION_CODES[name], act.alpha, act.beta)
    np.testing.assert_array_equal(inplace, got)


def test_warmup_runs_every_kernel_path():
    """ns.warmup() compiles the kernels explicitly (nothing is compiled at import)."""
    import neurosim as ns

    ns.warmup()
    for name in ("z_from_clean", "finish_layer", "input_layer", "dense_forward", "activate"):
        kernel = getattr(K, name)
        assert len(kernel.signatures) >= 2, name  # float32 and float64 specialisations
