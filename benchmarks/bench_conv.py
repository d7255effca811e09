"""Benchmark: fault simulation of conv networks, neurosim's receptive cones against a masked
PyTorch pass and PyTorchFI.

Every hidden and output neuron crashes silently at rate p, transient mode, metric ``flip``.
Models: the bundled digits CNN (1 x 8 x 8) and VGG-style nets (``conv_models.vgg``: blocks of
two 3x3 conv + BatchNorm (folded) + ReLU and a 2x2 max pooling, then fc64, fc10; random He
weights) at 1 x 16 x 16 (widths 16-32) and 3 x 32 x 32 (16-32-64), on random images.

1. Plain Monte Carlo, pairs per second:
   (a) ``neurosim.simulate`` (numba backend: the cone kernels),
   (b) a masked PyTorch forward pass (torch's CPU conv, all threads) in batches of 2048
       pairs: one Bernoulli mask per neuron and pair, every layer recomputed for every pair:
       what a user writes, at its best,
   (c) PyTorchFI 0.6.0 (one random neuron per batch element: its best case), if installed.
2. Rare events at p = 1e-5: seconds to a 95 % interval with half-width <= 10 % of the rate:
   (a) ``neurosim.stratified_estimate(..., rel_halfwidth=0.1)``, (b) run in batches until
   its Clopper-Pearson interval is that narrow (extrapolated from its throughput and rate
   past ``--max-seconds``, and marked so).
3. Scaling at p = 1e-4 with image size (8, 16, 32 px), depth (1-3 blocks) and channels, and
   where the dense fallback takes over: per conv layer, the share of computed rows that went
   through the whole-row (im2col + BLAS) path instead of the cone.
4. (``--parts 4``) the calibration of ``cone.DENSE_FRACTION``: pairs per second for 0.05-1.

Everything runs on this machine in one run; ratios are (a) / baseline.
Run: ``python benchmarks/bench_conv.py [--seconds S] [--max-seconds S] [--parts 1,2,3,4]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import neurosim as ns  # noqa: E402
from conv_models import images, vgg  # noqa: E402
from neurosim.backends import cone  # noqa: E402
from neurosim.stats import clopper_pearson  # noqa: E402

REL = 0.10


def to_torch(network):
    import torch

    from neurosim.train import network_to_torch

    return network_to_torch(network, dtype=torch.float32).eval()


def bench_neurosim(network, X, p, min_seconds):
    faults = ns.NeuronCrash(p)
    # JIT warm-up of every path (sparse, overflowing, whole rows), so that no compilation
    # (cached on disk after the first time) falls into a timed run.
    ns.simulate(network, ns.NeuronCrash(min(1.0, 30 * p)), X, n_samples=4, seed=123)
    ns.simulate(network, faults, X, n_samples=20, seed=123)
    n_samples = 4
    while True:
        start = time.perf_counter()
        result = ns.simulate(network, faults, X, n_samples=n_samples, seed=1)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return result.n_pairs / elapsed, result.failure_rate
        n_samples = int(n_samples * max(2.0, 1.2 * min_seconds / max(elapsed, 1e-3)))


class MaskedTorch:
    """The masked PyTorch pass of (b), in batches of ``batch`` pairs."""

    def __init__(self, network, X, p, batch=2048, seed=0):
        import torch

        torch.set_grad_enabled(False)
        self.torch = torch
        self.model = to_torch(network)
        self.X = torch.from_numpy(network.check_input(X).astype(np.float32)).reshape(
            -1, *network.input_shape)
        self.clean = self.model(self.X).argmax(1)
        self.gen = torch.Generator().manual_seed(seed)
        layers = list(self.model)
        self.layers = layers
        self.masked = {i for i, m in enumerate(layers) if not isinstance(
            m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d, torch.nn.AvgPool2d,
                torch.nn.Flatten))} | {len(layers) - 1}
        self.p, self.batch, self.pairs = p, batch, 0

    def step(self):
        """One batch: (pairs, failures)."""
        torch = self.torch
        idx = torch.arange(self.pairs, self.pairs + self.batch) % self.X.shape[0]
        y = self.X[idx]
        for i, module in enumerate(self.layers):
            y = module(y)
            if i in self.masked:  # after each activation, and the output
                y = y * (torch.rand(y.shape, generator=self.gen) >= self.p)
        self.pairs += self.batch
        return self.batch, int((y.argmax(1) != self.clean[idx]).sum())


def bench_torch_masked(network, X, p, min_seconds):
    run = MaskedTorch(network, X, p)
    run.step()  # warm-up
    pairs = failures = 0
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        n, f = run.step()
        pairs, failures = pairs + n, failures + f
    return pairs / (time.perf_counter() - start), failures / pairs


def bench_pytorchfi(network, X, min_seconds, batch=256):
    try:
        import torch
        from pytorchfi import neuron_error_models as nem
        from pytorchfi.core import fault_injection
    except ImportError:
        return None
    torch.set_grad_enabled(False)
    model = to_torch(network)
    Xt = torch.from_numpy(network.check_input(X).astype(np.float32)).reshape(
        -1, *network.input_shape)[:batch]
    batch = Xt.shape[0]
    pfi = fault_injection(model, batch, input_shape=list(network.input_shape),
                          layer_types=[torch.nn.Conv2d, torch.nn.Linear], use_cuda=False)
    nem.random_neuron_inj_batched(pfi, min_val=0, max_val=0)(Xt)  # warm-up
    pairs, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        nem.random_neuron_inj_batched(pfi, min_val=0, max_val=0)(Xt)
        pairs += batch
    return pairs / (time.perf_counter() - start)


def halfwidth_ok(k, n):
    lo, hi = clopper_pearson(k, n, 0.95)
    return k > 0 and (hi - lo) / 2 <= REL * (k / n)


def time_stratified(network, X, p):
    start = time.perf_counter()
    r = ns.stratified_estimate(network, ns.NeuronCrash(p), X, metric="flip",
                               rel_halfwidth=REL, seed=1)
    return time.perf_counter() - start, r.estimate, (r.upper - r.lower) / 2 / r.estimate


def time_torch_to_precision(network, X, p, max_seconds, calibrate_seconds=10.0):
    run = MaskedTorch(network, X, p, seed=7)
    run.step()
    pairs = failures = 0
    start = time.perf_counter()
    while True:
        n, f = run.step()
        pairs, failures = pairs + n, failures + f
        elapsed = time.perf_counter() - start
        if halfwidth_ok(failures, pairs):
            return elapsed, failures / pairs, False
        if elapsed > calibrate_seconds and failures > 0:
            rate = failures / pairs
            needed = (1.96 / REL) ** 2 * (1 - rate) / rate
            predicted = needed / (pairs / elapsed)
            if predicted > max_seconds:
                return predicted, rate, True


class DenseShare:
    """Counts, per conv layer, rows computed by the cone kernel and rows computed whole."""

    def __init__(self):
        self.sparse, self.dense = {}, {}
        self._sparse, self._dense = cone.C.conv_sparse, cone._conv_dense

    def __enter__(self):
        counter = self

        def sparse(rows, *args):
            key = tuple(int(v) for v in args[10][:6])
            counter.sparse[key] = counter.sparse.get(key, 0) + rows.size
            return counter._sparse(rows, *args)

        def dense(Y, spec, l):
            key = tuple(int(v) for v in spec.geo[l - 1][:6])
            counter.dense[key] = counter.dense.get(key, 0) + Y.shape[0]
            return counter._dense(Y, spec, l)
        cone.C.conv_sparse, cone._conv_dense = sparse, dense
        return self

    def __exit__(self, *exc):
        cone.C.conv_sparse, cone._conv_dense = self._sparse, self._dense

    def shares(self):
        keys = sorted(set(self.sparse) | set(self.dense), key=lambda k: (-k[1], k[0]))
        return [(k, self.dense.get(k, 0) / max(1, self.sparse.get(k, 0) + self.dense.get(k, 0)))
                for k in keys]


def part1(models, rates, seconds):
    print("1. Plain Monte Carlo: (fault sample, input) pairs per second\n")
    print(f"| {'model':<30} | {'p':>5} | {'(a) neurosim':>12} | {'(b) masked PyTorch':>18} | "
          f"{'(c) PyTorchFI':>13} | {'(a)/(b)':>7} | {'(a)/(c)':>7} |")
    print(f"|{'-' * 32}|{'-' * 7}|{'-' * 14}|{'-' * 20}|{'-' * 15}|{'-' * 9}|{'-' * 9}|")
    for label, network, X in models:
        c = bench_pytorchfi(network, X, seconds)
        for p in rates:
            a, rate_a = bench_neurosim(network, X, p, seconds)
            b, rate_b = bench_torch_masked(network, X, p, seconds)
            ctext = f"{c:>13,.0f}" if c else f"{'n/a':>13}"
            cratio = f"{a / c:>7.1f}" if c else f"{'n/a':>7}"
            print(f"| {label:<30} | {p:>5.0e} | {a:>12,.0f} | {b:>18,.0f} | {ctext} | "
                  f"{a / b:>7.1f} | {cratio} |", flush=True)
            print(f"|   failure rate seen: (a) {rate_a:.3g}, (b) {rate_b:.3g}", flush=True)
    print()


def part2(models, p, max_seconds):
    print(f"2. Rare events, p = {p:g}: seconds to a 95 % interval with half-width <= "
          f"{REL:.0%} of the rate\n")
    print(f"| {'model':<30} | {'rate':>9} | {'(a) stratified':>14} | {'(b) masked PyTorch':>24} | "
          f"{'(b)/(a)':>8} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 16}|{'-' * 26}|{'-' * 10}|")
    for label, network, X in models:
        time_stratified(network, X[:8], 1e-3)  # warm-up
        ta, rate, rel = time_stratified(network, X, p)
        tb, rate_b, extra = time_torch_to_precision(network, X, p, max_seconds)
        btext = f"{tb:,.1f} s" + (" (extrap.)" if extra else "")
        print(f"| {label:<30} | {rate:>9.3g} | {ta:>12.1f} s | {btext:>24} | {tb / ta:>8.0f} |",
              flush=True)
        print(f"|   (a) half-width {rel:.1%} of its estimate; (b) rate {rate_b:.3g}", flush=True)
    print()


def part3(seconds, p=1e-4):
    print(f"3. Scaling at p = {p:g}: pairs per second, and the share of rows each conv layer "
          "computed whole (the dense fallback)\n")
    configs = [("size", 8, 1, (16, 32)), ("size", 16, 1, (16, 32)), ("size", 32, 1, (16, 32)),
               ("depth", 16, 1, (16,)), ("depth", 16, 1, (16, 32)), ("depth", 16, 1, (16, 32, 64)),
               ("channels", 16, 1, (8, 16)), ("channels", 16, 1, (32, 64))]
    print(f"| {'varies':<8} | {'net':<28} | {'neurons':>8} | {'(a) neurosim':>12} | "
          f"{'(b) masked':>10} | {'(a)/(b)':>7} | dense share per conv layer (input order) |")
    print(f"|{'-' * 10}|{'-' * 30}|{'-' * 10}|{'-' * 14}|{'-' * 12}|{'-' * 9}|{'-' * 42}|")
    for what, size, ch, widths in configs:
        network = vgg(size, ch, widths)
        X = images(network)
        with DenseShare() as share:
            a, _ = bench_neurosim(network, X, p, seconds)
        b, _ = bench_torch_masked(network, X, p, seconds)
        text = " ".join(f"{k[3]}x{k[4]}:{s:.0%}" for k, s in share.shares())
        print(f"| {what:<8} | {network.metadata['name']:<28} | {sum(network.widths[1:]):>8,} | "
              f"{a:>12,.0f} | {b:>10,.0f} | {a / b:>7.1f} | {text} |", flush=True)
    print()


def part4(models, rates, seconds, fractions=(0.05, 0.1, 0.25, 0.5, 1.0)):
    """How DENSE_FRACTION (when a row goes whole into the next layer) was chosen."""
    print("4. Calibration of cone.DENSE_FRACTION: neurosim pairs per second\n")
    print(f"| {'model':<30} | {'p':>5} | " + " | ".join(f"{f:>7g}" for f in fractions) + " |")
    print(f"|{'-' * 32}|{'-' * 7}|" + "|".join("-" * 9 for _ in fractions) + "|")
    saved = cone.DENSE_FRACTION
    try:
        for label, network, X in models:
            for p in rates:
                row = []
                for f in fractions:
                    cone.DENSE_FRACTION = f
                    row.append(bench_neurosim(network, X, p, seconds)[0])
                print(f"| {label:<30} | {p:>5.0e} | " + " | ".join(f"{v:>7,.0f}" for v in row)
                      + " |", flush=True)
    finally:
        cone.DENSE_FRACTION = saved
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum time per measurement")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="extrapolate the rare-event baseline beyond this many seconds")
    parser.add_argument("--rates", default="1e-3,1e-4")
    parser.add_argument("--parts", default="1,2,3")
    args = parser.parse_args()
    import torch

    X8, _ = ns.load_digits_test()
    models = [("bundled digits CNN, 1x8x8", ns.load_digits_conv_model(), X8.reshape(-1, 1, 8, 8))]
    for size, ch, widths in [(16, 1, (16, 32)), (32, 3, (16, 32, 64))]:
        net = vgg(size, ch, widths)
        models.append((f"VGG-style {ch}x{size}x{size} ({len(widths) * 2} convs)", net,
                       images(net)))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); DENSE_FRACTION "
          f"{cone.DENSE_FRACTION}")
    print("every hidden and output neuron crashes silently, transient, metric flip\n")
    parts = set(args.parts.split(","))
    if "1" in parts:
        part1(models, [float(r) for r in args.rates.split(",")], args.seconds)
    if "2" in parts:
        part2(models, 1e-5, args.max_seconds)
    if "3" in parts:
        part3(args.seconds)
    if "4" in parts:
        part4(models, [float(r) for r in args.rates.split(",")], args.seconds)


if __name__ == "__main__":
    main()
