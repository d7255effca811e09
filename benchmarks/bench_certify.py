"""Benchmark: time to a 95 % interval with relative half-width <= 10 % on the failure rate.

Bundled digits model (quantized for loihi2) on its 397-image test split, neuron crashes in both
hidden layers (as bench_simulate) at p = 1e-3, 1e-4, 1e-5, 1e-6, metric ``flip``:

(a) the stratified estimator (``neurosim.stratified_estimate(..., rel_halfwidth=0.1)``);
(b) neurosim's plain Monte Carlo (``neurosim.simulate``), run in doubling rounds until its
    Clopper-Pearson interval is narrow enough;
(c) the vectorized masked NumPy forward pass of bench_simulate (no skipping of fault-free
    pairs: what PyTorchFI-style tools do), run in batches until the interval is narrow enough.

Where (b) or (c) would take longer than ``--max-seconds`` (default 600), the time is
extrapolated from its measured throughput and failure rate (the number of pairs a 10 %
half-width needs, ``n ~ (1.96 / 0.1)^2 (1 - r) / r``), and the table says so.
Run: ``python benchmarks/bench_certify.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import neurosim as ns
from neurosim.stats import clopper_pearson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_simulate import bench_numpy_masked, hidden_crash  # noqa: E402

REL = 0.10


def halfwidth_ok(k, n):
    lo, hi = clopper_pearson(k, n, 0.95)
    return k > 0 and (hi - lo) / 2 <= REL * (k / n)


def pairs_needed(rate):
    return (1.96 / REL) ** 2 * (1 - rate) / rate


def time_stratified(mapping, X, y, p):
    start = time.perf_counter()
    r = ns.stratified_estimate(mapping, hidden_crash(mapping.network, p), X, y, metric="flip",
                               rel_halfwidth=REL, seed=1)
    return time.perf_counter() - start, r.estimate, (r.upper - r.lower) / 2 / r.estimate


def time_mc(mapping, X, y, p, max_seconds, calibrate_seconds=5.0):
    faults = hidden_crash(mapping.network, p)
    m = X.shape[0]
    start = time.perf_counter()
    n_samples, failures, pairs, seed = 8, 0, 0, 1
    while True:
        r = ns.simulate(mapping, faults, X, y, metric="flip", n_samples=n_samples, seed=seed)
        seed += 1
        failures += r.n_failures
        pairs += r.n_pairs
        elapsed = time.perf_counter() - start
        if halfwidth_ok(failures, pairs):
            return elapsed, failures / pairs, False
        if elapsed > calibrate_seconds and failures > 0:
            predicted = elapsed * pairs_needed(failures / pairs) / pairs
            if predicted > max_seconds:
                return predicted, failures / pairs, True
        n_samples = min(n_samples * 2, 4_000_000 // m + 1)


def time_numpy(network, X, p, max_seconds, calibrate_seconds=5.0):
    start = time.perf_counter()
    failures, pairs = 0, 0
    seconds = 1.0
    while True:
        rate_pairs, fail_rate = bench_numpy_masked(network, X, p, seconds, seed=pairs)
        elapsed_chunk = seconds  # bench_numpy_masked runs for at least `seconds`
        chunk_pairs = int(rate_pairs * elapsed_chunk)
        pairs += chunk_pairs
        failures += int(round(fail_rate * chunk_pairs))
        elapsed = time.perf_counter() - start
        if halfwidth_ok(failures, pairs):
            return elapsed, failures / pairs, False
        if elapsed > calibrate_seconds:
            rate = max(failures, 1) / pairs
            predicted = pairs_needed(rate) / (pairs / elapsed)
            if predicted > max_seconds:
                return predicted, failures / pairs, True
        seconds = min(seconds * 2, 60.0)


def fmt(seconds, extrapolated):
    text = f"{seconds:,.1f} s" if seconds < 1e4 else f"{seconds:,.0f} s"
    return text + (" (extrap.)" if extrapolated else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="1e-3,1e-4,1e-5,1e-6")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="extrapolate (b) and (c) beyond this many seconds")
    parser.add_argument("--skip-numpy", action="store_true")
    args = parser.parse_args()
    network = ns.load_digits_model()
    X, y = ns.load_digits_test()
    mapping = ns.map_network(network, "loihi2")
    qnet = mapping.quantized_network()
    time_stratified(mapping, X[:50], y[:50], 1e-2)  # JIT warm-up (a rate that fails often)
    ns.simulate(mapping, ns.NeuronCrash(1e-3), X[:20], y[:20], n_samples=5)
    print(f"model: {qnet!r} (loihi2), {X.shape[0]} inputs, crashes in hidden layers, flip; "
          f"target: 95 % interval half-width <= {REL:.0%} of the rate\n")
    print(f"{'p':>7} {'rate':>10} {'(a) stratified':>16} {'(b) neurosim MC':>22} "
          f"{'(c) NumPy masked':>22} {'(b)/(a)':>9} {'(c)/(a)':>9}")
    for p in map(float, args.rates.split(",")):
        ta, rate_a, rel_a = time_stratified(mapping, X, y, p)
        tb, rate_b, extra_b = time_mc(mapping, X, y, p, args.max_seconds)
        if args.skip_numpy:
            tc, extra_c = math.nan, False
        else:
            tc, _, extra_c = time_numpy(qnet, X, p, args.max_seconds)
        print(f"{p:>7.0e} {rate_a:>10.3g} {fmt(ta, False):>16} {fmt(tb, extra_b):>22} "
              f"{fmt(tc, extra_c):>22} {tb / ta:>9.1f} {tc / ta:>9.1f}")


if __name__ == "__main__":
    main()
