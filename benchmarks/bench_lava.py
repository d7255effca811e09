"""Inputs per second through Lava (floating_pt, fixed_pt) against neurosim's own paths.

Run in the Lava environment: ``.venv-lava/bin/python benchmarks/bench_lava.py [--n-lava 50]``.
Same network for all rows: the bundled digits MLP 64-256-256-10 (on ``loihi2`` where a mapping
is needed). Lava times include building and compiling the process graph (one graph per call).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import neurosim
from neurosim.backends.lava import require_lava, run_lava
from neurosim.backends.numba import NumbaBackend
from neurosim.faults import NeuronCrash
from neurosim.plan import build_plan
from neurosim.quantization import integer_forward
from neurosim.sampler import sample_faults


def rate(fn, n_inputs: int, repeat: int = 1) -> float:
    fn()  # warm-up (Numba compilation, Lava imports)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_inputs / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-lava", type=int, default=50, help="inputs for pipelined Lava runs")
    parser.add_argument("--n-episodes", type=int, default=10, help="inputs for per-input faulty Lava runs")
    args = parser.parse_args()
    require_lava()
    net = neurosim.load_digits_model()
    X, _ = neurosim.load_digits_test()
    mapping = neurosim.map_network(net, "loihi2")
    m = X.shape[0]

    plan = build_plan(mapping, neurosim.FaultModel([NeuronCrash(0.01)]))
    numba = NumbaBackend()
    cache = numba.clean_cache(plan, plan.network.check_input(X))
    batch = sample_faults(plan, np.random.default_rng(0), m)  # one transient draw per input

    def faulty_numba():
        with numba.session():
            numba.propagate(plan, cache, batch, np.arange(m), np.arange(m))

    n, k = args.n_lava, args.n_episodes
    sub = batch.select(np.arange(k))
    rows = [
        ("numpy/BLAS network.forward (float32)", m, rate(lambda: net.forward(X), m, 20)),
        ("numba backend, transient crash p=0.01", m, rate(faulty_numba, m, 5)),
        ("integer_forward (NumPy int64)", m, rate(lambda: integer_forward(mapping, X), m, 5)),
        ("lava floating_pt, pipelined", n, rate(lambda: run_lava(net, X[:n]), n)),
        ("lava fixed_pt, pipelined", n, rate(lambda: run_lava(mapping, X[:n], mode="fixed_pt"), n)),
        ("lava floating_pt, per-input faults", k,
         rate(lambda: run_lava(mapping, X[:k], faults=sub), k)),
    ]
    base = rows[0][2]
    print(f"{'path':<42} {'inputs':>6} {'inputs/s':>12} {'vs forward':>11}")
    for name, count, r in rows:
        print(f"{name:<42} {count:>6} {r:>12.1f} {r / base:>11.2e}")


if __name__ == "__main__":
    main()
