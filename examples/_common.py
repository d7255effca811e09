"""What every example does once it has a neurosim Network: map it on two chips, simulate each
chip's own fault rates, certify the failure probability, and plot delta against eps.

Set NEUROSIM_EXAMPLE_SMALL=1 for a quick run (the test suite does).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import neurosim
from neurosim.faults import profile_faults
from neurosim.viz import plot_delta_vs_eps

SMALL = os.environ.get("NEUROSIM_EXAMPLE_SMALL") == "1"


def digits_images(layout="NCHW"):
    """The bundled digits test split as images: (n, 1, 8, 8), or (n, 8, 8, 1) for Keras."""
    X, y = neurosim.load_digits_test()
    X = X.reshape(-1, 1, 8, 8)
    if layout == "NHWC":
        X = X.transpose(0, 2, 3, 1)
    if SMALL:
        X, y = X[:20], y[:20]
    return np.ascontiguousarray(X), y


def map_simulate_certify(network, X, y, profiles, name, out="."):
    """Map ``network`` on each profile, simulate and certify its default faults, plot the last."""
    print(network)
    print(f"accuracy on {len(y)} test images: {np.mean(network.predict(X) == y):.2%}")
    for profile in profiles:
        mapping = neurosim.map_network(network, profile)
        print()
        print(mapping.table(max_rows=12))
        faults = profile_faults(mapping.profile)
        result = neurosim.simulate(mapping, faults, X, y, metric="flip",
                                   n_samples=50 if SMALL else 1000, seed=0)
        print(result.summary())
        cert = neurosim.certify(mapping, faults, X, y, metric="flip", delta=0.05, seed=0,
                                n_samples=20 if SMALL else 200)
        print(cert.summary())
    path = Path(out) / f"{name}_delta_vs_eps.png"
    plot_delta_vs_eps(mapping, faults, X, y, metric="linf", delta=0.05, seed=0, path=path,
                      eps_values=[0.5, 2.0] if SMALL else None)
    print(f"wrote {path}")
    return mapping
