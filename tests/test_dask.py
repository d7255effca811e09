"""The Dask runner: a LocalCluster of 2 worker processes gives the serial runner's numbers for
simulate, certify and the experiments, also when a worker is killed mid-run, or the client is
killed and the run resumed; an unreachable scheduler is a clear error within its timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import neurosim as ns
from neurosim.io.runfile import read_run_file
from neurosim.runners import RunnerError

distributed = pytest.importorskip("distributed")


def _setup():
    net = ns.Network.random([6, 9, 7, 4], "tanh", seed=3)
    X = np.random.default_rng(0).normal(size=(900, 6))
    y = np.random.default_rng(1).integers(0, 4, size=900)
    return net, X, y


def _timeless(d):
    if isinstance(d, dict):
        return {k: _timeless(v) for k, v in d.items() if k != "elapsed_s"}
    if isinstance(d, list):
        return [_timeless(v) for v in d]
    return d


def _same(a) -> str:
    """Everything a result says but how long it took."""
    return json.dumps(_timeless(a.to_dict()), sort_keys=True, default=str)


@pytest.fixture(scope="module")
def runner():
    with ns.DaskRunner(workers=2) as r:
        assert r.threads() == 2
        yield r


FAULTS = [ns.NeuronCrash(0.02, layers=(0, 1, 2, 3)) + ns.SynapseStuck(0.01, 0.01),
          ns.NeuronCrash(0.01, semantics="stuck", value=0.5) + ns.SynapseStuck(0.02, 0.0),
          ns.SynapseStuck(0.2, 0.1, mode="permanent") + ns.NeuronCrash(0.01)]  # mixed, fields


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_simulate_gives_the_serial_numbers(runner, seed):
    net, X, y = _setup()
    for faults in FAULTS:
        for mode in (None, "transient", "permanent"):
            kw = dict(n_samples=40, seed=seed, mode=mode, metric="linf", eps=0.05)
            serial = ns.simulate(net, faults, X, y, **kw)
            dask = ns.simulate(net, faults, X, y, runner=runner, **kw)
            assert serial.n_faulty_pairs > 0
            assert _same(dask) == _same(serial), (faults.spec(), mode)


def test_simulate_on_a_mapping_and_a_conv_model(runner):
    mlp = ns.map_network(ns.load_digits_model(), "loihi2")
    X, y = ns.load_digits_test()
    kw = dict(n_samples=30, seed=4)
    assert _same(ns.simulate(mlp, None, X, y, runner=runner, **kw)) == \
        _same(ns.simulate(mlp, None, X, y, **kw))
    conv = ns.map_network(ns.load_digits_conv_model(), "loihi2")
    faults = ns.NeuronCrash(0.01)
    assert _same(ns.simulate(conv, faults, X[:100], y[:100], runner=runner, **kw)) == \
        _same(ns.simulate(conv, faults, X[:100], y[:100], **kw))


def test_a_spiking_network_gives_the_serial_numbers(runner):
    from neurosim import spiking

    X, y = ns.load_digits_test()
    snn = spiking.convert(ns.load_digits_model(), X[:198], T=16)
    faults = ns.NeuronCrash(0.002) + ns.SynapseStuck(0.0005, 0.0005)
    kw = dict(n_samples=12, seed=4)
    serial = ns.simulate(snn, faults, X, y, **kw)
    assert serial.n_faulty_pairs > 0
    assert _same(ns.simulate(snn, faults, X, y, runner=runner, **kw)) == _same(serial)


@pytest.mark.parametrize("seed", [1, 2])
def test_certify_gives_the_serial_numbers(runner, seed):
    net, X, y = _setup()
    for faults, method in ((ns.NeuronCrash(0.004), "stratified"),
                           (ns.SynapseStuck(0.003, 0.003), "stratified"),
                           (ns.NeuronCrash(0.05), "sampled")):
        kw = dict(eps=0.3, delta=0.05, metric="linf", seed=seed, n_samples=20, method=method,
                  work_budget=2000, X=X[:60], y=y[:60])
        serial = ns.certify(net, faults, **kw)
        dask = ns.certify(net, faults, runner=runner, **kw)
        assert serial.empirical.rows > 0
        assert _same(dask) == _same(serial), (faults.spec(), method)


def test_experiment_grid_points_are_tasks(runner):
    pytest.importorskip("torch")
    from neurosim import experiments

    kw = dict(widths=(4, 8, 12), depth=1, epochs=2, n_samples=60, n_batches=3, max_inputs=40,
              seed=3)
    serial = experiments.error_decay(**kw)
    dask = experiments.error_decay(runner=runner, **kw)
    for name in ("var_mc_batches", "var_taylor", "var_exact", "clean_score"):
        np.testing.assert_array_equal(getattr(dask, name), getattr(serial, name))


def _running_blocks(client, worker):
    return [k for k in client.processing().get(worker, ()) if "neurosim-blocks" in str(k)]


@pytest.mark.parametrize("when", ["while its blocks run", "as the run starts"])
def test_a_killed_worker_changes_nothing(when):
    """SIGKILL one of two workers: its blocks rerun elsewhere (Dask reschedules them; the
    scattered network has a replica on the other worker, and a scatter that the death breaks is
    tried again), and the numbers are the serial runner's."""
    net, X, y = _setup()
    kw = dict(n_samples=2000, seed=11, metric="linf", eps=0.05)
    faults = FAULTS[0]
    serial = ns.simulate(net, faults, X, y, **kw)
    with ns.DaskRunner(workers=2) as r:
        pids = r.client.run(os.getpid)
        victim = sorted(pids)[0]
        out = {}

        def run():
            try:
                out["result"] = ns.simulate(net, faults, X, y, runner=r, **kw)
            except BaseException as exc:  # (reported by the assertion below)
                out["error"] = exc

        thread = threading.Thread(target=run)
        if when == "as the run starts":
            os.kill(pids[victim], signal.SIGKILL)
            thread.start()
        else:
            thread.start()
            deadline = time.time() + 120
            while time.time() < deadline and not _running_blocks(r.client, victim):
                assert thread.is_alive(), f"the campaign ended before a worker was killed: {out}"
                time.sleep(0.01)
            assert _running_blocks(r.client, victim), "no block ever ran on the worker"
            os.kill(pids[victim], signal.SIGKILL)
        thread.join(300)
        assert not thread.is_alive()
    assert "error" not in out, repr(out.get("error"))
    assert _same(out["result"]) == _same(serial)


_CLIENT = textwrap.dedent("""
    import sys
    import numpy as np
    import neurosim as ns
    if __name__ == "__main__":
        net = ns.Network.random([6, 9, 7, 4], "tanh", seed=3)
        X = np.random.default_rng(0).normal(size=(900, 6))
        y = np.random.default_rng(1).integers(0, 4, size=900)
        faults = ns.NeuronCrash(0.02, layers=(0, 1, 2, 3)) + ns.SynapseStuck(0.01, 0.01)
        with ns.DaskRunner(address=sys.argv[3]) as runner:  # (the test's cluster outlives it)
            ns.simulate(net, faults, X, y, n_samples=int(sys.argv[2]), seed=5, output=sys.argv[1],
                        checkpoint_every_s=0.2, runner=runner)
""")


def test_a_killed_client_resumes_to_the_same_numbers(tmp_path, runner):
    net, X, y = _setup()
    faults = FAULTS[0]
    n = 2000
    out = tmp_path / "run.h5"
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(n), runner.address],
                            start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if out.exists():
                try:
                    if read_run_file(out).state.get("blocks"):
                        break
                except ns.NeurosimError:
                    pass  # (being written)
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client, mid-run
        proc.wait()
    saved = read_run_file(out)
    assert not saved.complete
    resumed = ns.simulate(net, faults, X, y, n_samples=n, seed=5, output=out, resume=True,
                          runner=runner)
    serial = ns.simulate(net, faults, X, y, n_samples=n, seed=5)
    assert _same(resumed) == _same(serial)


def test_an_unreachable_scheduler_is_a_clear_error_within_its_timeout():
    started = time.perf_counter()
    with pytest.raises(RunnerError, match=r"tcp://127\.0\.0\.1:9.*within 2 s"):
        ns.DaskRunner(address="tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - started < 30


def test_cli_workers_and_bad_runner_arguments(tmp_path):
    from neurosim.errors import ValidationError

    with pytest.raises(ValidationError, match="one of client, address and workers"):
        ns.DaskRunner(address="tcp://127.0.0.1:9", workers=2)
    with pytest.raises(ValidationError, match="positive integer"):
        ns.DaskRunner(workers=0)
    with pytest.raises(ValidationError, match="scheduler address"):
        ns.simulate(ns.Network.random([3, 2], seed=0), ns.NeuronCrash(0.1), np.zeros((1, 3)),
                    n_samples=1, runner="tcpp://x")
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": ""}
    run = subprocess.run([sys.executable, "-m", "neurosim", "simulate", "--samples", "20",
                          "--workers", "2", "--json", "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    serial = subprocess.run([sys.executable, "-m", "neurosim", "simulate", "--samples", "20",
                             "--json", "--no-progress"], capture_output=True, text=True,
                            timeout=300)
    a, b = json.loads(run.stdout), json.loads(serial.stdout)
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b
