"""Runners and mergeable statistics: the same numbers whatever computes the blocks, in
whatever order, and a checkpoint that only ever holds whole blocks."""

from __future__ import annotations

import json
import math
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import neurosim as ns
from neurosim.errors import ValidationError
from neurosim.estimators.exact import ExactSum
from neurosim.estimators.montecarlo import MonteCarlo, MonteCarloStats
from neurosim.plan import build_plan
from neurosim.results import load_result
from neurosim.runner_choice import get_runner
from neurosim.runners import MapRunner


def _setup():
    net = ns.Network.random([6, 9, 7, 4], "tanh", seed=3)
    X = np.random.default_rng(0).normal(size=(900, 6))
    y = np.random.default_rng(1).integers(0, 4, size=900)
    return net, X, y


def _comparable(result) -> str:
    d = result.to_dict()
    d.pop("elapsed_s")
    return json.dumps(d, sort_keys=True)


def _runs(runner):
    net, X, y = _setup()
    faults = ns.NeuronCrash(0.02, layers=(0, 1, 2, 3)) + ns.SynapseStuck(0.01, 0.01)
    out = []
    for mode, metric in (("transient", "flip"), ("permanent", "linf")):
        r = ns.simulate(net, faults, X, y, metric=metric, eps=None if metric == "flip" else 0.05,
                        n_samples=30, seed=8, mode=mode, runner=runner)
        assert r.n_faulty_pairs > 0
        out.append(_comparable(r))
    strat = ns.stratified_estimate(net, ns.NeuronCrash(0.004), X[:40], metric="linf", eps=0.3,
                                   seed=2, work_budget=200, n_samples=20, runner=runner)
    assert any(s.method == "sampled" for s in strat.strata)
    d = strat.to_dict()
    d.pop("elapsed_s")
    out.append(json.dumps(d, sort_keys=True))
    return out


def _reversed_map(function, blocks):
    """A map that computes and returns the blocks in reverse order."""
    return [function(b) for b in reversed(list(blocks))]


def test_any_map_and_any_order_give_the_serial_numbers():
    serial = _runs("serial")
    assert _runs(map) == serial
    assert _runs(_reversed_map) == serial
    assert _runs(MapRunner(_reversed_map)) == serial


def test_a_process_pool_gives_the_serial_numbers():
    """concurrent.futures' ProcessPoolExecutor().map is a map-like runner (spawned workers:
    the work object, with its plan and clean cache, is pickled to them)."""
    serial = _runs("serial")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert _runs(pool.map) == serial


def test_a_thread_pool_gives_the_serial_numbers_and_leaves_blas_alone():
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    serial = _runs("serial")
    with ThreadPoolExecutor(4) as pool:
        assert _runs(pool.map) == serial
    assert blas_threads() == before


def test_a_forked_pool_is_a_clear_error(tmp_path):
    """With Numba's OpenMP threading layer, workers forked after this process ran the kernels
    die: the error says to spawn, and the checkpoint keeps what was merged (then resumes to
    the serial numbers). Other threading layers fork fine and give the serial numbers."""
    import numba

    net, X, y = _setup()
    serial = ns.simulate(net, ns.NeuronCrash(0.02), X, y, n_samples=40)  # kernels' threads exist
    out = tmp_path / "r.h5"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        if numba.threading_layer() != "omp":
            forked = ns.simulate(net, ns.NeuronCrash(0.02), X, y, n_samples=40, runner=pool.map)
            assert _comparable(forked) == _comparable(serial)
            return
        with pytest.raises(ns.NeurosimError, match="spawn"):
            ns.simulate(net, ns.NeuronCrash(0.02), X, y, n_samples=40, runner=pool.map, output=out)
    resumed = ns.simulate(net, ns.NeuronCrash(0.02), X, y, n_samples=40, output=out, resume=True)
    assert _comparable(resumed) == _comparable(serial)


def test_bad_runner():
    with pytest.raises(ValidationError, match="'runner' parameter of simulate"):
        ns.simulate(ns.Network.random([3, 2], seed=0), ns.NeuronCrash(0.1), np.zeros((1, 3)),
                    n_samples=1, runner="parallel")
    with pytest.raises(ValidationError, match="map-like"):
        get_runner(42)


# --- statistics that merge exactly ---------------------------------------------------------------

def test_exact_sums_merge_in_any_order():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=500) * 10.0 ** rng.integers(-300, 300, size=500),
                             [1e308, -1e308, 5e-324, 0.1, 0.2, 0.3]])
    exact = math.fsum(values.tolist())  # correctly rounded
    for seed in range(20):
        order = random.Random(seed).sample(range(values.size), values.size)
        total = ExactSum.zeros()
        for i in order:
            total = total + ExactSum.of(values[i])
        assert total.value() == exact
    huge = ExactSum.of(1.7e308) + ExactSum.of(1.7e308)  # beyond the largest float: inf, as in floats
    assert huge.value() == math.inf and (ExactSum.of(-1.7e308) + ExactSum.of(-1.7e308)).value() == -math.inf
    vec = ExactSum.zeros(2) + ExactSum.of(np.array([0.1, np.inf])) + ExactSum.of(np.array([0.2, 1.0]))
    assert vec.value().tolist() == [math.fsum([0.1, 0.2]), np.inf]
    assert ExactSum.from_state(json.loads(json.dumps(vec.to_state()))) == vec


def _blocks():
    net, X, y = _setup()
    plan = build_plan(net, ns.NeuronCrash(0.02) + ns.SynapseStuck(0.01, 0.01))
    backend = ns.get_backend("numba")
    cache = backend.clean_cache(plan, plan.network.check_input(X))
    work = MonteCarlo(plan, backend, cache, y, metric="linf", eps=0.05, n_samples=60, seed=1,
                      mode="permanent")
    return work, [work(b) for b in range(work.n_blocks)]


def test_block_statistics_merge_in_any_order_and_never_twice():
    work, blocks = _blocks()
    assert len(blocks) >= 6
    reference = None
    for seed in range(10):
        order = random.Random(seed).sample(blocks, len(blocks))
        if seed % 2:  # as a tree: pairs, then pairs of pairs
            while len(order) > 1:
                order = [order[i].merge(order[i + 1]) if i + 1 < len(order) else order[i]
                         for i in range(0, len(order), 2)]
            total = order[0]
        else:
            total = work.empty()
            for b in order:
                total = total.merge(b)
        state = json.dumps(total.to_state(), sort_keys=True)
        reference = reference or state
        assert state == reference
        assert len(total.blocks) == work.n_blocks
    assert MonteCarloStats.from_state(json.loads(reference)).to_state() == json.loads(reference)
    with pytest.raises(ValueError, match="counted twice"):
        total.merge(blocks[2])


# --- checkpoints hold whole blocks: interrupt at every point of the block loop ---------------------

@pytest.mark.parametrize("where", ["block", "progress"])
def test_interrupt_anywhere_then_resume_gives_the_same_numbers(where, tmp_path, monkeypatch):
    net, X, y = _setup()
    faults = ns.NeuronCrash(0.02) + ns.SynapseStuck(0.01, 0.01)
    kw = dict(metric="linf", eps=0.05, n_samples=50, seed=4, checkpoint_every_s=0.0)
    full = ns.simulate(net, faults, X, y, **kw)
    rounds = 8192 // X.shape[0]  # draws per input in a block
    n_blocks = math.ceil(50 / rounds)
    assert n_blocks >= 5
    real_block = MonteCarlo._block
    for stop_at in range(n_blocks):
        calls = {"n": 0}
        out = tmp_path / f"{where}{stop_at}.h5"

        def interrupt(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == stop_at + 1:
                raise KeyboardInterrupt
            return real_block(*args, **kwargs) if where == "block" else None

        if where == "block":
            monkeypatch.setattr(MonteCarlo, "_block", interrupt)
            with pytest.raises(KeyboardInterrupt):
                ns.simulate(net, faults, X, y, output=out, **kw)
        else:
            monkeypatch.setattr("neurosim.simulation._Progress.__init__",
                                lambda self, *a: setattr(self, "bar", None))
            monkeypatch.setattr("neurosim.simulation._Progress.__call__",
                                lambda self, stats: interrupt())
            monkeypatch.setattr("neurosim.simulation._Progress.close", lambda self: None)
            with pytest.raises(KeyboardInterrupt):
                ns.simulate(net, faults, X, y, output=out, progress=True, **kw)
        monkeypatch.undo()
        import h5py

        with h5py.File(out, "r") as f:
            state = json.loads(f["state"].attrs["stats"])
        # The file holds exactly the blocks whose statistics it counts.
        committed = stop_at if where == "block" else stop_at + 1
        assert state["blocks"] == ([[0, committed]] if committed else [])
        assert state["n_pairs"] == sum(min(rounds, 50 - rounds * b) * X.shape[0]
                                       for b in range(committed))
        resumed = ns.simulate(net, faults, X, y, output=out, resume=True, **kw)
        assert _comparable(resumed) == _comparable(full)
        assert _comparable(load_result(out)) == _comparable(full)
