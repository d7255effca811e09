"""Benchmark: (fault sample, input) pairs per second for neuron crashes on conv networks.

Models: the bundled digits CNN (1 x 8 x 8) and a VGG-style net at 1 x 16 x 16 (random weights;
``conv16-conv16-maxpool-conv32-conv32-maxpool-fc64-fc10``, ReLU), every hidden and output
neuron crashing silently at rate p, transient mode, metric ``flip``:

(a) neurosim.simulate (numba backend: today conv layers run as their unfolded matrices, with
    the restart from cached clean activations and the sparse column updates of dense layers);
(b) a masked PyTorch forward pass (torch's CPU conv) in batches of 2048 pairs: one Bernoulli
    mask per neuron and pair, every layer recomputed for every pair: what a user writes;
(c) PyTorchFI 0.6.0 (one random neuron per batch element: its best case), when installed.

This is the baseline for the fast conv kernels (issue 11); it prints a table with the ratios
(a)/(b) and (a)/(c). Run: ``python benchmarks/bench_conv.py [--seconds S] [--rates ...]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import neurosim as ns
from neurosim.layers import Conv2d, Dense, Flatten, MaxPool2d


def vgg16px(seed=0):
    rng = np.random.default_rng(seed)

    def conv(c_in, c_out, hw):
        k = rng.normal(0, np.sqrt(2 / (9 * c_in)), (c_out, c_in, 3, 3)).astype(np.float32)
        return Conv2d.build(k, np.zeros(c_out, np.float32), (c_in, hw, hw), padding=1,
                            activation="relu")
    return ns.Network([
        conv(1, 16, 16), conv(16, 16, 16), MaxPool2d(2), conv(16, 32, 8), conv(32, 32, 8),
        MaxPool2d(2), Flatten(),
        Dense(rng.normal(0, np.sqrt(2 / 512), (64, 512)).astype(np.float32), np.zeros(64, np.float32), "relu"),
        Dense(rng.normal(0, np.sqrt(2 / 64), (10, 64)).astype(np.float32), np.zeros(10, np.float32))],
        metadata={"name": "vgg-style 16px"})


def to_torch(network):
    import torch

    from neurosim.train import network_to_torch

    return network_to_torch(network, dtype=torch.float32).eval()


def bench_neurosim(network, X, p, min_seconds):
    faults = ns.NeuronCrash(p)
    ns.simulate(network, faults, X, n_samples=2, seed=123)  # JIT warm-up
    n_samples = 5
    while True:
        start = time.perf_counter()
        result = ns.simulate(network, faults, X, n_samples=n_samples, seed=1)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return result.n_pairs / elapsed, result.failure_rate
        n_samples *= max(2, int(min_seconds / max(elapsed, 1e-3)))


def bench_torch_masked(network, X, p, min_seconds, batch=2048, seed=0):
    import torch

    torch.set_grad_enabled(False)
    model = to_torch(network)
    Xt = torch.from_numpy(network.check_input(X).astype(np.float32)).reshape(
        -1, *network.input_shape)
    clean = model(Xt).argmax(1)
    gen = torch.Generator().manual_seed(seed)
    layers = list(model)
    hidden = {i for i, m in enumerate(layers) if not isinstance(
        m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d, torch.nn.Flatten))}
    m = Xt.shape[0]
    pairs, failures, start = 0, 0, time.perf_counter()
    while True:
        idx = torch.arange(pairs, pairs + batch) % m
        y = Xt[idx]
        for i, module in enumerate(layers):
            y = module(y)
            if i in hidden or i == len(layers) - 1:  # after each activation, and the output
                y = y * (torch.rand(y.shape, generator=gen) >= p)
        failures += int((y.argmax(1) != clean[idx]).sum())
        pairs += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return pairs / elapsed, failures / pairs


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
    pairs, start = 0, time.perf_counter()
    while True:
        corrupt = nem.random_neuron_inj_batched(pfi, min_val=0, max_val=0)
        corrupt(Xt)
        pairs += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return pairs / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    parser.add_argument("--rates", default="1e-3,1e-4")
    args = parser.parse_args()
    X, _ = ns.load_digits_test()
    models = [(ns.load_digits_conv_model(), X.reshape(-1, 1, 8, 8)),
              (vgg16px(), np.random.default_rng(1).random((128, 1, 16, 16)).astype(np.float32))]
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print("all hidden and output neurons crash silently, transient, metric flip\n")
    print(f"{'model':<18} {'p':>7} {'method':<32} {'pairs/s':>12} {'ratio (a)/x':>12}")
    for network, data in models:
        name = network.metadata.get("name", "?")
        for p in map(float, args.rates.split(",")):
            a, rate_a = bench_neurosim(network, data, p, args.seconds)
            b, rate_b = bench_torch_masked(network, data, p, args.seconds)
            print(f"{name:<18} {p:>7.0e} {'(a) neurosim.simulate':<32} {a:>12,.0f} {'1.0':>12}")
            print(f"{'':<18} {p:>7.0e} {'(b) masked PyTorch forward':<32} {b:>12,.0f} {a / b:>12.2f}")
            c = bench_pytorchfi(network, data, args.seconds)
            if c is None:
                print(f"{'':<18} {p:>7.0e} {'(c) PyTorchFI 0.6.0':<32} {'not installed':>12}")
            else:
                print(f"{'':<18} {p:>7.0e} {'(c) PyTorchFI 0.6.0':<32} {c:>12,.0f} {a / c:>12.2f}")
            print(f"{'':<18} {'':>7} failure rates seen: (a) {rate_a:.3g}, (b) {rate_b:.3g}")


if __name__ == "__main__":
    main()
