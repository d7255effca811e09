"""Benchmark: dense stuck crossbar cells (the rram_crossbar defaults) on the bundled model.

The workload of issue 13: the ``rram_crossbar`` profile's default faults (stuck-at-0 1.75 %,
stuck-at-max 9.04 % of cells, about 9,100 stuck cells per draw of the 64-256-256-10 model) on
the bundled digits model, quantized for that profile, and its 397-image test split, metric
``flip``, in both modes (``mode="transient"``: fresh cells for every pair; ``"permanent"``:
one draw per chip instance, shared by all its inputs). It compares

(a) ``neurosim.simulate`` (default settings, after a warm-up run so that Numba's compile time
    is left out);
(b) a per-pair NumPy loop: for each (draw, input) pair, every layer's cell states drawn with
    ``rng.random``, the faulty weights built with ``np.where``, one input forwarded; in
    permanent mode the faulty weights once per chip, then a loop forwarding one input at a time;
(c) batched NumPy: transient, chunks of draws with the faulty weights as a
    ``(chunk, n_out, n_in)`` array and one batched matrix product (einsum) (one input per draw; the
    fastest of a few chunk sizes is reported); permanent, each chip's faulty weights, then one
    matrix product over all inputs.

The baselines compute in float32 with the mapping's quantized network (what neurosim
simulates) and the same fault model: each cell independently stuck at 0 with ``p0``, at max
with ``p1`` (``plan.max_weight_pos[l]`` for a stored weight >= 0, ``-plan.max_weight_neg[l]``
for a negative one). Their failure rates must agree with neurosim's within 5 standard errors
(chips as the units in permanent mode), so that the comparison is of the same computation.

Peak memory of each implementation is measured in a fresh child process (this script run with
``--child``; its ``VmHWM``, see :func:`peak_mib`), neurosim's at its default settings with enough samples to run
several blocks.

The second table ("costs") measures what :data:`neurosim.fields.RECORD_NS` and
:data:`neurosim.fields.CELL_NS` quote: the cost per stuck cell of the record path (sampling
plus the kernel) and per cell of the field path, at several stuck rates.

Run: ``python benchmarks/bench_crossbar.py`` (``--quick`` for a smoke test under a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

import neurosim as ns
import neurosim.fields

MODES = ("transient", "permanent")
IMPLS = ("neurosim", "loop", "batched")
LABELS = {"neurosim": "neurosim.simulate", "loop": "per-pair NumPy loop",
          "batched": "batched NumPy"}
CHUNKS = (8, 32, 128, 512)


# --------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------

def workload():
    net = ns.load_digits_model()
    X, y = ns.load_digits_test()
    mapping = ns.map_network(net, ns.load_profile("rram_crossbar"))
    return mapping, X, y


class Crossbar:
    """What the NumPy baselines need: float32 weights, biases, stuck-at-max values, rates."""

    def __init__(self, mapping, X):
        from neurosim.plan import build_plan, resolve_faults

        faults = resolve_faults(mapping, None)
        stuck = faults.get("stuck")
        self.p0, self.p1 = float(stuck.p_zero), float(stuck.p_max)
        self.p01 = self.p0 + self.p1
        self.t0, self.t01 = np.float32(self.p0), np.float32(self.p01)
        plan = build_plan(mapping, faults)
        qnet = mapping.quantized_network()
        assert [a.name for a in qnet.activations] == ["relu", "relu", "identity"]
        self.W = [np.ascontiguousarray(w, dtype=np.float32) for w in plan.W]
        self.b = [np.asarray(b, dtype=np.float32) for b in plan.b]
        for w, layer in zip(self.W, qnet.layers):
            assert np.array_equal(w, layer.W.astype(np.float32))
        # A stuck-at-max cell keeps its stored weight's sign.
        self.Wmax = [np.where(w >= 0, np.float32(vp), np.float32(-vn)).astype(np.float32)
                     for w, vp, vn in zip(self.W, plan.max_weight_pos, plan.max_weight_neg)]
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.m = self.X.shape[0]
        self.clean = self.forward_all(self.W).argmax(axis=1)
        self.n_cells = sum(w.size for w in self.W)

    def faulty(self, rng, l, shape=None):
        """Layer ``l``'s faulty weights: one matrix, or ``shape`` = (chunk,) + W.shape."""
        W = self.W[l]
        u = rng.random(W.shape if shape is None else shape, dtype=np.float32)
        # (One np.where and a masked store: 1.5-3x faster than two nested np.where here.)
        out = np.where(u < self.t01, self.Wmax[l], W)
        out[u < self.t0] = 0
        return out

    def forward_all(self, Ws):
        y = self.X
        for l, (W, b) in enumerate(zip(Ws, self.b)):
            y = y @ W.T + b
            if l < len(Ws) - 1:
                np.maximum(y, 0, out=y)
        return y


# --------------------------------------------------------------------------------------------
# The implementations; each returns (pairs, seconds, failures, per-chip failure rates or None)
# --------------------------------------------------------------------------------------------

def run_neurosim(mapping, X, y, mode, n_samples, seed=0):
    start = time.perf_counter()
    result = ns.simulate(mapping, X=X, y=y, n_samples=n_samples, seed=seed, mode=mode)
    elapsed = time.perf_counter() - start
    chips = result.chip_failure_rates if mode == "permanent" else None
    return result.n_pairs, elapsed, result.n_failures, chips


def run_loop(cb, mode, min_seconds=None, n_units=None, seed=1):
    """Per-pair loop for ``min_seconds`` (or ``n_units`` pairs / chips)."""
    rng = np.random.default_rng(seed)
    L = len(cb.W)
    pairs = failures = 0
    chips = []
    start = time.perf_counter()
    if mode == "transient":
        while True:
            x = cb.X[pairs % cb.m]
            for l in range(L):
                x = cb.faulty(rng, l) @ x + cb.b[l]
                if l < L - 1:
                    np.maximum(x, 0, out=x)
            failures += int(x.argmax() != cb.clean[pairs % cb.m])
            pairs += 1
            if (pairs % 64 == 0 and (n_units is None and
                                     time.perf_counter() - start >= min_seconds)
                    or pairs == n_units):
                break
    else:
        while True:
            Ws = [cb.faulty(rng, l) for l in range(L)]
            chip_failures = 0
            for i in range(cb.m):
                x = cb.X[i]
                for l in range(L):
                    x = Ws[l] @ x + cb.b[l]
                    if l < L - 1:
                        np.maximum(x, 0, out=x)
                chip_failures += int(x.argmax() != cb.clean[i])
            chips.append(chip_failures / cb.m)
            failures += chip_failures
            pairs += cb.m
            if (len(chips) == n_units if n_units is not None
                    else time.perf_counter() - start >= min_seconds):
                break
    return pairs, time.perf_counter() - start, failures, (np.array(chips) if chips else None)


def run_batched(cb, mode, chunk, min_seconds=None, n_units=None, seed=2):
    """Batched NumPy for ``min_seconds`` (or ``n_units`` chunks / chips)."""
    rng = np.random.default_rng(seed)
    L = len(cb.W)
    pairs = failures = 0
    chips = []
    units = 0
    start = time.perf_counter()
    if mode == "transient":
        while True:
            idx = np.arange(pairs, pairs + chunk) % cb.m
            x = cb.X[idx]                                   # (chunk, n_in)
            for l in range(L):
                W = cb.faulty(rng, l, (chunk,) + cb.W[l].shape)
                # einsum: faster than np.matmul(W, x[:, :, None]) at these shapes
                x = np.einsum("coi,ci->co", W, x) + cb.b[l]  # (chunk, n_out)
                if l < L - 1:
                    np.maximum(x, 0, out=x)
            failures += int((x.argmax(axis=1) != cb.clean[idx]).sum())
            pairs += chunk
            units += 1
            if (units == n_units if n_units is not None
                    else time.perf_counter() - start >= min_seconds):
                break
    else:
        while True:
            out = cb.forward_all([cb.faulty(rng, l) for l in range(L)])
            chip_failures = int((out.argmax(axis=1) != cb.clean).sum())
            chips.append(chip_failures / cb.m)
            failures += chip_failures
            pairs += cb.m
            if (len(chips) == n_units if n_units is not None
                    else time.perf_counter() - start >= min_seconds):
                break
    return pairs, time.perf_counter() - start, failures, (np.array(chips) if chips else None)


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

def time_neurosim(mapping, X, y, mode, min_seconds):
    run_neurosim(mapping, X, y, mode, 40, seed=123)  # JIT warm-up (several blocks)
    n_samples = 20
    while True:
        pairs, elapsed, failures, chips = run_neurosim(mapping, X, y, mode, n_samples)
        if elapsed >= min_seconds:
            return pairs, elapsed, failures, chips
        n_samples = int(n_samples * max(1.5, 1.2 * min_seconds / max(elapsed, 1e-3)))


def best_chunk(cb, seconds):
    """The fastest transient chunk of the batched baseline (short trial of each)."""
    rates = {}
    for chunk in CHUNKS:
        run_batched(cb, "transient", chunk, n_units=1)
        pairs, elapsed, _, _ = run_batched(cb, "transient", chunk, min_seconds=seconds)
        rates[chunk] = pairs / elapsed
    return max(rates, key=rates.get), rates


def std_error(pairs, failures, chips):
    """Standard error of a failure rate: binomial over pairs, or over chips."""
    if chips is not None:
        return float(np.std(chips, ddof=1) / np.sqrt(len(chips)))
    p = failures / pairs
    return float(np.sqrt(max(p * (1 - p), 1e-12) / pairs))


def child_peak(mode, impl, n, chunk):
    """Peak resident memory (MiB) of a fresh child process running one implementation."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, impl, str(n), str(chunk)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child_main(mode, impl, n, chunk):
    if impl != "import":
        mapping, X, y = workload()
        if impl == "neurosim":
            run_neurosim(mapping, X, y, mode, n)
        else:
            cb = Crossbar(mapping, X)
            if impl == "loop":
                run_loop(cb, mode, n_units=n)
            else:
                run_batched(cb, mode, chunk, n_units=n)
    print(json.dumps({"peak_mib": peak_mib()}))


def peak_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux carries ``ru_maxrss`` over ``execve`` from the parent's address space (a child
    started by a 700 MiB parent reports at least 700 MiB whatever it does), so the address
    space's own high-water mark ``VmHWM`` is read where /proc has it.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Costs of the record and the field path
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def forced_fields():
    """A field at every rate (``use_field`` patched where SynapseStuck looks it up)."""
    import neurosim.faults.stuck as stuck

    saved = stuck.use_field
    stuck.use_field = lambda n, r: r > 0
    try:
        yield
    finally:
        stuck.use_field = saved


def time_path(mapping, X, p, fields, n_draws, reps):
    from neurosim.backends import get_backend
    from neurosim.plan import build_plan
    from neurosim.sampler import sample_faults

    backend = get_backend("numba")
    faults = ns.SynapseStuck(p / 2, p / 2, mode="transient")
    with forced_fields() if fields else contextlib.nullcontext():
        plan = build_plan(mapping, faults, fields=fields)
    assert bool(plan.fields) == fields, (p, fields, plan.fields)
    cache = backend.clean_cache(plan, X)
    m = X.shape[0]
    best, n_faults = np.inf, 0
    with backend.session():
        for rep in range(-1, reps):  # rep -1: warm-up (compile), a few draws
            rng = np.random.default_rng(rep + 1)
            n = 20 if rep < 0 else n_draws
            start = time.perf_counter()
            batch = sample_faults(plan, rng, n)
            rows = np.flatnonzero(batch.draw_has_fault)
            backend.propagate(plan, cache, batch, rows, rows % m)
            elapsed = time.perf_counter() - start
            if rep >= 0 and elapsed < best:
                best, n_faults = elapsed, int(batch.layer.size)
    return best, n_faults, plan


def costs_table(mapping, X, rates, n_draws, max_record_faults, reps):
    cb = Crossbar(mapping, X)
    n_cells = cb.n_cells
    print(f"costs: neurosim.sampler.sample_faults(plan, rng, draws) + backend.propagate(...), "
          f"numba backend, transient SynapseStuck(p/2, p/2), {n_cells:,} cells per draw, "
          f"best of {reps}")
    print(f"(neurosim.fields quotes RECORD_NS = {neurosim.fields.RECORD_NS:g} ns per fault, CELL_NS = "
          f"{neurosim.fields.CELL_NS:g} ns per cell; records are capped at ~{max_record_faults:,} "
          "faults per measurement, i.e. fewer draws at high rates)")
    head = (f"{'stuck rate':>10} {'faults/draw':>11} {'rec draws':>9} {'ns/fault':>9} "
            f"{'rec us/draw':>11} {'fld draws':>9} {'ns/cell':>8} {'fld us/draw':>11} "
            f"{'faster':>7} {'use_field':>9}")
    print(head)
    print("-" * len(head))
    rows = []
    for p in rates:
        expected = n_cells * p
        rec_draws = int(max(50, min(n_draws, max_record_faults / expected)))
        t_rec, n_rec, _ = time_path(mapping, X, p, False, rec_draws, reps)
        t_fld, _, _ = time_path(mapping, X, p, True, n_draws, reps)
        ns_fault = t_rec / max(n_rec, 1) * 1e9
        us_rec = t_rec / rec_draws * 1e6
        ns_cell = t_fld / (n_draws * n_cells) * 1e9
        us_fld = t_fld / n_draws * 1e6
        faster = "field" if us_fld < us_rec else "records"
        uses = ",".join("F" if neurosim.fields.use_field(w.size, p) else "R" for w in cb.W)
        rows.append((p, ns_fault, ns_cell))
        print(f"{p:>10.0e} {n_rec / rec_draws:>11,.1f} {rec_draws:>9,} {ns_fault:>9,.0f} "
              f"{us_rec:>11,.1f} {n_draws:>9,} {ns_cell:>8.3f} {us_fld:>11,.1f} {faster:>7} "
              f"{uses:>9}")
    print("(use_field: what neurosim.fields.use_field picks for layers 1, 2, 3 ("
          + ", ".join(f"{w.size:,}" for w in cb.W) + " cells) at that rate: F field, R records)")
    return rows


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def main_table(mapping, X, y, cb, seconds, mem_sizes, chunk_seconds, do_memory):
    results = {}
    chunk, chunk_rates = best_chunk(cb, chunk_seconds)
    print("batched NumPy, transient, chunk of draws -> pairs/s: "
          + ", ".join(f"{c}: {r:,.0f}" for c, r in chunk_rates.items()) + f" (best {chunk})\n")
    for mode in MODES:
        for impl in IMPLS:
            if impl == "neurosim":
                r = time_neurosim(mapping, X, y, mode, seconds)
            elif impl == "loop":
                run_loop(cb, mode, n_units=2)
                r = run_loop(cb, mode, min_seconds=seconds)
            else:
                run_batched(cb, mode, chunk, n_units=1)
                r = run_batched(cb, mode, chunk, min_seconds=seconds)
            pairs, elapsed, failures, chips = r
            peak = None
            if do_memory:
                n = mem_sizes[mode][impl]
                peak = child_peak(mode, impl, n, chunk)["peak_mib"]
            results[mode, impl] = dict(pairs=pairs, seconds=elapsed, rate=pairs / elapsed,
                                       failure=failures / pairs,
                                       se=std_error(pairs, failures, chips),
                                       units=len(chips) if chips is not None else pairs,
                                       peak=peak)
    return results, chunk


def print_main(results, chunk, markdown=False):
    def row(mode, impl):
        r = results[mode, impl]
        loop = results[mode, "loop"]["rate"]
        batched = results[mode, "batched"]["rate"]
        label = LABELS[impl] + (f" (chunk {chunk})" if impl == "batched" and mode == "transient"
                                else "")
        peak = "-" if r["peak"] is None else f"{r['peak']:,.0f}"
        return (mode, label, f"{r['rate']:,.0f}", f"{r['rate'] / loop:.1f}",
                f"{r['rate'] / batched:.2f}", peak)

    head = ("mode", "implementation", "pairs/s", "x loop", "x batched", "peak MiB")
    rows = [row(mode, impl) for mode in MODES for impl in IMPLS]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(["---", "---", "---:", "---:", "---:", "---:"]) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    fmt = "{:<10} {:<30} {:>10} {:>8} {:>10} {:>9}"
    print(fmt.format(*head))
    print("-" * 82)
    for r in rows:
        print(fmt.format(*r))


def check_rates(results):
    print("\nfailure rates (standard error; chips as units in permanent mode):")
    ok = True
    for mode in MODES:
        ref = results[mode, "neurosim"]
        parts = []
        for impl in IMPLS:
            r = results[mode, impl]
            unit = "chips" if mode == "permanent" else "pairs"
            parts.append(f"{LABELS[impl]} {r['failure']:.4f} ({r['se']:.4f}, "
                         f"{r['units']:,} {unit})")
            if impl != "neurosim":
                z = abs(r["failure"] - ref["failure"]) / np.hypot(r["se"], ref["se"])
                parts[-1] += f" z={z:.1f}"
                ok &= z < 5
        print(f"  {mode:<10} " + "; ".join(parts))
    assert ok, "a baseline's failure rate is more than 5 standard errors from neurosim's"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a much smaller run (smoke test)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="minimum time per throughput measurement (default 5, quick 0.5)")
    parser.add_argument("--no-costs", action="store_true", help="skip the costs table")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "IMPL", "N", "CHUNK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, impl, n, chunk = args.child
        return child_main(mode, impl, int(n), int(chunk))

    quick = args.quick
    seconds = args.seconds or (0.5 if quick else 5.0)
    # Memory children: neurosim at its defaults with several blocks; the baselines at sizes
    # that reach their steady state (a loop's memory does not grow with the number of pairs).
    mem_sizes = {
        "transient": {"neurosim": 20 if quick else 200, "loop": 200 if quick else 2000,
                      "batched": 2 if quick else 20},
        "permanent": {"neurosim": 20 if quick else 1000, "loop": 2 if quick else 20,
                      "batched": 20 if quick else 200},
    }
    mapping, X, y = workload()
    cb = Crossbar(mapping, X)
    import numba
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads"
                     for i in threadpool_info() if i["user_api"] == "blas")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__} ({blas}), numba {numba.__version__} "
          f"({numba.get_num_threads()} threads), neurosim {ns.__version__}")
    print(f"model: {mapping.quantized_network()!r} (quantized for rram_crossbar), {cb.m} inputs, "
          f"{cb.n_cells:,} cells; faults: stuck-at-0 {cb.p0:g}, stuck-at-max {cb.p1:g} "
          f"(~{cb.n_cells * cb.p01:,.0f} stuck cells per draw), metric flip")
    print(f"throughput: >= {seconds:g} s per measurement, after a warm-up; peak memory: "
          "VmHWM of a fresh child process per row"
          + (" (quick sizes)" if quick else "") + "\n")

    results, chunk = main_table(mapping, X, y, cb, seconds, mem_sizes,
                                chunk_seconds=0.3 if quick else 1.5, do_memory=True)
    print_main(results, chunk)
    print("\nmemory children: neurosim n_samples "
          f"{mem_sizes['transient']['neurosim']} (transient) / "
          f"{mem_sizes['permanent']['neurosim']} (permanent); loop "
          f"{mem_sizes['transient']['loop']} pairs / {mem_sizes['permanent']['loop']} chips; "
          f"batched {mem_sizes['transient']['batched']} chunks / "
          f"{mem_sizes['permanent']['batched']} chips; a child that only imports: "
          f"{child_peak('transient', 'import', 0, 0)['peak_mib']:,.0f} MiB")
    check_rates(results)

    if not args.no_costs:
        print()
        costs_table(mapping, X, rates=(1e-4, 1e-3, 3e-3, 1e-2, 0.108),
                    n_draws=200 if quick else 4000,
                    max_record_faults=200_000 if quick else 4_000_000, reps=2)

    print("\nMarkdown (README):\n")
    print_main(results, chunk, markdown=True)


if __name__ == "__main__":
    main()
