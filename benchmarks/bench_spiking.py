"""Benchmark: spiking simulate against a PyTorch time loop, pairs per second at T = 32.

Workload: the bundled digits MLP (64-256-256-10) converted to IF neurons
(``neurosim.spiking.convert``, percentiles from the first 198 test digits), T = 32,
constant-current input, membrane readout; silent neuron crashes (dead neurons) with
probability ``p`` in both hidden layers, transient mode (each (fault draw, input) pair draws
its own crashed neurons), metric ``flip``, on the 397 bundled test digits.

(a) ``ns.simulate(snn, NeuronCrash(p, layers=(1, 2)), X, y)`` with the numba backend;
(b) PyTorch, written the way a user would: a Bernoulli mask per pair and neuron, a batched
    time loop (``I = s @ W.T + b; v += I; s = (v >= 1); v -= s; s *= mask``) over chunks of
    pairs, every pair computed;
(c) the same PyTorch loop on only the pairs that have a crash (a user at their best skips the
    fault-free ones, whose output is the clean one);
(d), (e) the same two campaigns with snnTorch (when it is installed) as its tutorials write a
    network: ``nn.Linear`` layers and ``snn.Leaky(beta=1, threshold=1,
    reset_mechanism="subtract")`` neurons (an IF neuron), ``spk, mem = lif(fc(x), mem)`` per
    step, the crash mask on the spikes.

Throughput counts every (fault draw, input) pair of the campaign, faulty or not, for all
three. Run: ``python benchmarks/bench_spiking.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import neurosim as ns
from neurosim import spiking


def torch_campaign(snn, X, n_samples, p, seed, faulty_only, chunk=4096, run=None):
    """The campaign with masks drawn per pair and neuron; ``run(x, masks)`` is the forward
    (default: the plain PyTorch time loop)."""
    import torch

    torch.manual_seed(seed)
    net = snn.network
    W = [torch.tensor(np.asarray(w, dtype=np.float32)) for w in net.weights]
    b = [torch.tensor(np.asarray(v, dtype=np.float32)) for v in net.biases]
    Xt = torch.tensor(np.asarray(X, dtype=np.float32))
    m = Xt.shape[0]
    n_pairs = n_samples * m
    widths = net.widths
    hidden = widths[1:-1]
    if run is None:
        def run(x, masks):
            return _torch_run(W, b, x, masks, snn.T)
    # the clean run, for the flip metric
    clean = run(Xt, [torch.ones(m, w) for w in hidden]).argmax(1)
    flips = 0
    with torch.no_grad():
        for start in range(0, n_pairs, chunk):
            k = min(chunk, n_pairs - start)
            inputs = torch.arange(start, start + k) % m
            masks = [(torch.rand(k, w) >= p).float() for w in hidden]
            if faulty_only:
                keep = torch.zeros(k, dtype=torch.bool)
                for mask in masks:
                    keep |= (mask == 0).any(dim=1)
                inputs = inputs[keep]
                masks = [mask[keep] for mask in masks]
                if inputs.numel() == 0:
                    continue
            out = run(Xt[inputs], masks)
            flips += int((out.argmax(1) != clean[inputs]).sum())
    return flips / n_pairs


def _torch_run(W, b, x, masks, T):
    import torch

    with torch.no_grad():
        L = len(W)
        I1 = x @ W[0].T + b[0]  # constant input: layer 1's current is the same every step
        v = [torch.zeros_like(mask) for mask in masks]
        readout = torch.zeros(x.shape[0], W[-1].shape[0])
        for _ in range(T):
            s = None
            for l in range(L - 1):
                I = I1 if l == 0 else s @ W[l].T + b[l]
                v[l] += I
                s = (v[l] >= 1.0).float()
                v[l] -= s
                s = s * masks[l]
            readout += s @ W[-1].T + b[-1]
        return readout / T


def snntorch_runner(snn):
    """snnTorch's forward of the converted network: Linear layers, IF neurons as
    ``snn.Leaky(beta=1, threshold=1, reset_mechanism="subtract")``, the output current summed."""
    import snntorch
    import torch

    net = snn.network
    fcs = []
    for w, bias in zip(net.weights, net.biases):
        fc = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            fc.weight.copy_(torch.tensor(np.asarray(w, dtype=np.float32)))
            fc.bias.copy_(torch.tensor(np.asarray(bias, dtype=np.float32)))
        fcs.append(fc)
    lifs = [snntorch.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract")
            for _ in fcs[:-1]]

    def run(x, masks):
        with torch.no_grad():
            mems = [lif.init_leaky() for lif in lifs]
            readout = 0
            for _ in range(snn.T):
                s = x
                for l, (fc, lif) in enumerate(zip(fcs[:-1], lifs)):
                    s, mems[l] = lif(fc(s), mems[l])
                    s = s * masks[l]
                readout = readout + fcs[-1](s)
            return readout / snn.T

    return run


def _time(fn, repeats):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--p", type=float, default=1e-3)
    args = parser.parse_args()
    import numba
    import torch

    X, y = ns.load_digits_test()
    snn = spiking.convert(ns.load_digits_model(), X[:198], T=32)
    n_samples = 20 if args.quick else 200
    repeats = 1 if args.quick else 3
    pairs = n_samples * len(X)
    faults = ns.NeuronCrash(args.p, layers=(1, 2))
    print(f"machine: {platform.machine()}, numpy {np.__version__}, numba {numba.__version__} "
          f"({numba.get_num_threads()} threads), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"workload: converted digits MLP, IF neurons, T = {snn.T}, dead neurons p = {args.p} "
          f"in both hidden layers, transient, {n_samples} draws x {len(X)} inputs = "
          f"{pairs:,} pairs; best of {repeats}\n")
    ns.simulate(snn, faults, X, y, n_samples=2, seed=0, progress=False)  # JIT warm-up
    t_ns, result = _time(lambda: ns.simulate(snn, faults, X, y, n_samples=n_samples, seed=1,
                                             progress=False), repeats)
    torch_campaign(snn, X, 2, args.p, 0, False)  # warm-up
    t_all, rate_all = _time(lambda: torch_campaign(snn, X, n_samples, args.p, 1, False), repeats)
    t_faulty, rate_faulty = _time(lambda: torch_campaign(snn, X, n_samples, args.p, 1, True),
                                  repeats)
    rows = [("neurosim simulate (numba)", t_ns, result.failure_rate),
            ("PyTorch time loop, every pair", t_all, rate_all),
            ("PyTorch time loop, faulty pairs only", t_faulty, rate_faulty)]
    try:
        import snntorch
    except ImportError:
        print("snnTorch is not installed: its rows are left out (pip install snntorch).\n")
    else:
        run = snntorch_runner(snn)
        torch_campaign(snn, X, 2, args.p, 0, False, run=run)  # warm-up
        for label, faulty in (("every pair", False), ("faulty pairs only", True)):
            t, rate = _time(lambda: torch_campaign(snn, X, n_samples, args.p, 1, faulty,
                                                   run=run), repeats)
            rows.append((f"snnTorch {snntorch.__version__}, {label}", t, rate))
    header = f"{'method':38} {'seconds':>8} {'pairs/s':>12} {'flip rate':>10} {'neurosim x':>10}"
    print(header)
    print("-" * len(header))
    for name, t, rate in rows:
        print(f"{name:38} {t:8.2f} {pairs / t:12,.0f} {rate:10.5f} {t / t_ns:10.2f}")
    print(f"\n(neurosim's interval: [{result.ci_low:.5f}, {result.ci_high:.5f}]; the PyTorch rates "
          "use their own random draws. neurosim x: how many times faster neurosim is.)")


if __name__ == "__main__":
    main()
