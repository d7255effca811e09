"""Benchmark: certify's population bound, old (two-step KL) against new (one-step betting).

An exactly known population: a 4-6-5-2 ReLU network (``Network.random(..., seed=1)``), neuron
crashes at p = 0.02 in its 13 neurons, metric ``linf`` >= 0.6, and a finite population
of 2,000 Gaussian inputs. Every input's failure probability f(x) is computed exactly by
enumerating all 2^13 crash patterns with a plain float64 forward pass (independent of
neurosim's engine), so delta_true = mean f over the population (0.0358) is known exactly. Each
seed draws m inputs uniformly with replacement from the population (an i.i.d. sample of it)
and certifies them at the default confidence 0.95 through ``ns.certify``, once with
``population="kl"`` (the old bound) and once with ``population="betting"`` (the new one), on
three paths: the stratified estimator with every stratum exact, with sampled strata
(``work_budget=300``), and plain Monte Carlo (``method="sampled"``, 100 draws per input).

Printed per path and m: the mean delta_upper of each bound, their ratio (new / old), the mean
of the one-step KL bound on the same per-input values (``kl_upper`` of their mean at the full
``alpha_side``: how much of the gain is the single step and how much the betting), the mean
delta_lower of each, and the coverage: how often delta_upper >= delta_true (one side, nominal >= 0.975) and how often
[delta_lower, delta_upper] holds it (nominal >= 0.95). The floor printed is the smallest count
of covering seeds an exact bound at the nominal level reaches with probability 0.999.

A second table does the same at the level of the stats functions on stated synthetic
distributions of f (no network), for the bound alone (at alpha = 0.025).

Run: ``python benchmarks/bench_population_bound.py [--seeds 200]`` (about a minute).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from scipy import stats

import neurosim as ns
from neurosim.stats import betting_upper, kl_upper

WIDTHS, NET_SEED, P_CRASH, METRIC, EPS, N_POPULATION = [4, 6, 5, 2], 1, 0.02, "linf", 0.6, 2000
CONFIDENCE = 0.95
PATHS = {
    "stratified, exact strata": dict(method="stratified"),
    "stratified, sampled strata": dict(method="stratified", work_budget=300, n_samples=100),
    "sampled (100 draws/input)": dict(method="sampled", n_samples=100),
}


def exact_failure(net, X, p, metric, eps) -> np.ndarray:
    """f(x) for every row of X: all crash patterns of the hidden neurons, weighted by their
    probability, through a plain float64 forward pass (1 = the neuron outputs 0)."""
    n_neurons = sum(net.widths[1:])  # NeuronCrash: every neuron of layers 1..L+1
    masks = np.array(list(itertools.product([0.0, 1.0], repeat=n_neurons)))
    k = masks.sum(axis=1)
    prob = p ** k * (1 - p) ** (n_neurons - k)
    out = np.asarray(X, dtype=np.float64)[None]
    offset = 0
    for layer in net.layers:
        W, b = np.asarray(layer.W, np.float64), np.asarray(layer.b, np.float64)
        out = np.asarray(layer.activation(out @ W.T + b), dtype=np.float64)
        n = W.shape[0]
        out = out * (1.0 - masks[:, None, offset:offset + n])
        offset += n
    err = out - out[0]  # pattern 0 has no crash
    value = np.abs(err).max(axis=-1) if metric == "linf" else np.sqrt((err ** 2).sum(axis=-1))
    return prob @ (value >= eps)


def coverage_floor(n_seeds: int, level: float) -> int:
    """Smallest k with P(Binomial(n_seeds, level) < k) <= 0.001."""
    return int(stats.binom.ppf(0.001, n_seeds, level))


def network_table(n_seeds: int) -> None:
    net = ns.Network.random(WIDTHS, "relu", seed=NET_SEED)
    X_pop = np.random.default_rng(1234).normal(size=(N_POPULATION, WIDTHS[0]))
    f = exact_failure(net, X_pop, P_CRASH, METRIC, EPS)
    truth = float(f.mean())
    faults = ns.NeuronCrash(P_CRASH)
    alpha_side = (1 - CONFIDENCE) / 2
    print(f"population: {N_POPULATION} inputs, delta_true = {truth:.4f} (exact), f(x) > 0 for "
          f"{np.mean(f > 0):.0%} of them, sd {f.std():.4f}; {n_seeds} seeds, confidence "
          f"{CONFIDENCE}; coverage floors {coverage_floor(n_seeds, 1 - alpha_side)} (one side) "
          f"and {coverage_floor(n_seeds, CONFIDENCE)} (both)")
    print(f"{'path':28s} {'m':>4s} | {'upper old':>9s} {'upper new':>9s} {'new/old':>7s} "
          f"{'KL 1-step':>9s} | {'lower old':>9s} {'lower new':>9s} | {'cover old':>9s} "
          f"{'cover new':>9s} | {'both old':>8s} {'both new':>8s}")
    for name, kwargs in PATHS.items():
        for m in (30, 300):
            up = {"kl": [], "betting": []}
            low = {"kl": [], "betting": []}
            both = {"kl": 0, "betting": 0}
            one_step_kl = []
            for seed in range(n_seeds):
                idx = np.random.default_rng([7, m, seed]).integers(0, N_POPULATION, size=m)
                for bound in up:
                    cert = ns.certify(net, faults, X_pop[idx], metric=METRIC, eps=EPS,
                                      delta=0.5, confidence=CONFIDENCE, seed=seed,
                                      theory=False, advice=False, population=bound, **kwargs)
                    up[bound].append(cert.delta_upper)
                    low[bound].append(cert.delta_lower)
                    both[bound] += cert.delta_lower <= truth <= cert.delta_upper
                one_step_kl.append(kl_upper(float(cert.input_values.upper.mean()), m,
                                            alpha_side))
            old, new = np.array(up["kl"]), np.array(up["betting"])
            print(f"{name:28s} {m:4d} | {old.mean():9.4f} {new.mean():9.4f} "
                  f"{new.mean() / old.mean():7.3f} {np.mean(one_step_kl):9.4f} | "
                  f"{np.mean(low['kl']):9.4f} {np.mean(low['betting']):9.4f} | "
                  f"{np.sum(old >= truth):5d}/{n_seeds} {np.sum(new >= truth):5d}/{n_seeds} | "
                  f"{both['kl']:4d}/{n_seeds} {both['betting']:4d}/{n_seeds}", flush=True)


SYNTHETIC = {  # name: (draw(rng, n), exact mean)
    "Bernoulli(0.039)": (lambda r, n: (r.random(n) < 0.039).astype(float), 0.039),
    "Beta(0.2, 4.93)": (lambda r, n: r.beta(0.2, 4.93, n), 0.2 / 5.13),
    "70 % zeros, else 0.91 Beta(.5, 3)": (
        lambda r, n: np.where(r.random(n) < 0.3, 0.91 * r.beta(0.5, 3, n), 0.0), 0.039),
    "all zeros": (lambda r, n: np.zeros(n), 0.0),
}


def synthetic_table(n_seeds: int, alpha: float = 0.025) -> None:
    """The bound alone: betting_upper against kl_upper at alpha, and at alpha / 2 (what the
    old two-step spends on the population step)."""
    print(f"\nstats functions alone, alpha = {alpha} (one side), {n_seeds} seeds; floor "
          f"{coverage_floor(n_seeds, 1 - alpha)}")
    print(f"{'values':34s} {'m':>4s} | {'KL a/2':>7s} {'KL a':>7s} {'betting':>7s} "
          f"{'bet/KL a/2':>10s} | {'cover KL a':>10s} {'cover bet':>9s}")
    for name, (draw, mu) in SYNTHETIC.items():
        for m in (30, 300):
            kl_half, kl_full, bet = [], [], []
            for seed in range(n_seeds):
                x = draw(np.random.default_rng([11, m, seed]), m)
                kl_half.append(kl_upper(float(x.mean()), m, alpha / 2))
                kl_full.append(kl_upper(float(x.mean()), m, alpha))
                bet.append(betting_upper(x, alpha))
            kl_half, kl_full, bet = map(np.array, (kl_half, kl_full, bet))
            print(f"{name:34s} {m:4d} | {kl_half.mean():7.4f} {kl_full.mean():7.4f} "
                  f"{bet.mean():7.4f} {bet.mean() / kl_half.mean():10.3f} | "
                  f"{np.sum(kl_full >= mu):6d}/{n_seeds} {np.sum(bet >= mu):5d}/{n_seeds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    started = time.perf_counter()
    network_table(args.seeds)
    synthetic_table(args.seeds)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
