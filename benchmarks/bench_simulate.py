"""Benchmark: (fault sample, input) pairs per second for neuron crashes on the bundled model.

Compares, on the bundled digits model (quantized for loihi2) and its 397-image test split,
neuron crashes in all hidden layers, transient mode, metric ``flip``:

(a) neurosim.simulate;
(b) a vectorized masked forward pass in NumPy (the strongest naive approach: one Bernoulli
    draw per neuron and pair, the whole network recomputed for every pair, in batches);
(c) PyTorchFI 0.6.0 (random neuron injection per batch element), when it is installed.

It also times the dense batched forward kernel (neurosim.kernels.propagate.dense_forward, the
simulator's dense path: ``X W^T + b``) against NumPy's matrix product on the same shapes, with
the default BLAS threads and with one BLAS thread (what the simulator uses, see simulate()). Run: ``python benchmarks/bench_simulate.py``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import neurosim as ns
from neurosim.kernels import propagate as K


def hidden_crash(network, p):
    L = network.n_layers
    return ns.NeuronCrash(p, layers=tuple(range(1, L)))


def bench_neurosim(mapping, X, y, p, min_seconds):
    faults = hidden_crash(mapping.network, p)
    ns.simulate(mapping, faults, X, y, n_samples=5, seed=123)  # JIT warm-up
    n_samples, elapsed = 50, 0.0
    while True:
        start = time.perf_counter()
        result = ns.simulate(mapping, faults, X, y, n_samples=n_samples, seed=1)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return result.n_pairs / elapsed, result.failure_rate
        n_samples *= max(2, int(min_seconds / max(elapsed, 1e-3)))


def bench_numpy_masked(network, X, p, min_seconds, batch=4096, seed=0):
    """Naive baseline: a fresh Bernoulli mask per hidden neuron and pair, full recomputation."""
    rng = np.random.default_rng(seed)
    Ws = [layer.W.T.copy() for layer in network.layers]
    bs = [layer.b for layer in network.layers]
    dtype = network.dtype
    X = X.astype(dtype)
    clean = network.forward(X).argmax(axis=1)
    m = X.shape[0]
    pairs, failures, start = 0, 0, time.perf_counter()
    while True:
        idx = np.arange(pairs, pairs + batch) % m
        y = X[idx]
        for l, (W, b) in enumerate(zip(Ws, bs)):
            y = y @ W + b
            if l < len(Ws) - 1:
                np.maximum(y, 0, out=y)
                y *= rng.random(y.shape, dtype=np.float32) >= p
        failures += int((y.argmax(axis=1) != clean[idx]).sum())
        pairs += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return pairs / elapsed, failures / pairs


def bench_pytorchfi(network, X, p, min_seconds, batch=397):
    try:
        import torch
        from pytorchfi.core import fault_injection
        from pytorchfi import neuron_error_models as nem
    except ImportError:
        return None
    torch.set_grad_enabled(False)
    layers = []
    for l, layer in enumerate(network.layers):
        lin = torch.nn.Linear(layer.n_in, layer.n_out)
        lin.weight.copy_(torch.from_numpy(layer.W.astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(layer.b.astype(np.float32)))
        layers.append(lin)
        if l < network.n_layers - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).eval()
    Xt = torch.from_numpy(X.astype(np.float32))
    pfi = fault_injection(model, batch, input_shape=[X.shape[1]], layer_types=[torch.nn.Linear],
                          use_cuda=False)
    pairs, start = 0, time.perf_counter()
    while True:
        # PyTorchFI injects one random neuron per batch element; it has no per-layer rate, so we
        # count each call as `batch` pairs (its best case).
        corrupt = nem.random_neuron_inj_batched(pfi, min_val=0, max_val=0)
        corrupt(Xt[:batch])
        pairs += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return pairs / elapsed


def bench_dense_kernel(network, X, repeats=50):
    Xb = np.ascontiguousarray(np.tile(X, (8, 1)).astype(network.dtype))
    layer = network.layers[1]
    W, b = np.ascontiguousarray(layer.W), layer.b
    Y0 = np.ascontiguousarray(np.maximum(Xb @ network.layers[0].W.T + network.layers[0].b, 0))
    K.dense_forward(Y0, W, b)

    def time_it(fn):
        best = np.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            best = min(best, (time.perf_counter() - start) / repeats)
        return best

    t_kernel = time_it(lambda: K.dense_forward(Y0, W, b))
    t_numpy = time_it(lambda: Y0 @ W.T)
    flops = 2.0 * Y0.shape[0] * W.shape[0] * W.shape[1]
    return flops / t_kernel / 1e9, flops / t_numpy / 1e9, Y0.shape, W.shape


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    parser.add_argument("--rates", default="1e-3,1e-4")
    args = parser.parse_args()
    network = ns.load_digits_model()
    X, y = ns.load_digits_test()
    mapping = ns.map_network(network, "loihi2")
    qnet = mapping.quantized_network()
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"model: {qnet!r} (quantized for loihi2), {X.shape[0]} inputs, crashes in hidden layers, "
          "transient, metric flip\n")
    print(f"{'p':>8} {'method':<34} {'pairs/s':>12} {'ratio (a)/x':>12}")
    for p in map(float, args.rates.split(",")):
        a, rate_a = bench_neurosim(mapping, X, y, p, args.seconds)
        b, rate_b = bench_numpy_masked(qnet, X, p, args.seconds)
        print(f"{p:>8.0e} {'(a) neurosim.simulate':<34} {a:>12,.0f} {'1.0':>12}")
        print(f"{p:>8.0e} {'(b) NumPy masked forward':<34} {b:>12,.0f} {a / b:>12.1f}")
        c = bench_pytorchfi(qnet, X, p, args.seconds)
        if c is None:
            print(f"{p:>8.0e} {'(c) PyTorchFI 0.6.0':<34} {'not installed':>12}")
        else:
            print(f"{p:>8.0e} {'(c) PyTorchFI 0.6.0':<34} {c:>12,.0f} {a / c:>12.1f}")
        print(f"{'':>8} failure rates seen: (a) {rate_a:.3g}, (b) {rate_b:.3g}")
    from threadpoolctl import threadpool_limits

    print()
    for label, limit in (("default BLAS threads", None), ("1 BLAS thread", 1)):
        with threadpool_limits(limits=limit, user_api="blas"):
            g_kernel, g_numpy, xs, ws = bench_dense_kernel(qnet, X)
        print(f"dense batched forward kernel, X {xs} x W^T {ws[::-1]}, {label}: "
              f"{g_kernel:.1f} GFLOP/s, NumPy matmul {g_numpy:.1f} GFLOP/s, "
              f"ratio {g_kernel / g_numpy:.2f}")


if __name__ == "__main__":
    main()
