"""Every saved result type comes back from its file as the same object: simulation runs
(``load_result``), certificates (``Certificate.save`` / ``load``), and the neurosim 0.1 run
files (format_version 1) still load and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import neurosim as ns
from neurosim.errors import FileFormatError, NeurosimFileNotFoundError
from neurosim.results import Certificate, SimulationResult, StratifiedResult, load_result
from neurosim.theory import TheoryReport

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def small():
    net = ns.Network.random([5, 6, 3], "relu", seed=11)
    mapping = ns.map_network(net, "loihi2")
    X = np.random.default_rng(12).normal(size=(60, 5))
    y = np.random.default_rng(13).integers(0, 3, size=60)
    return net, mapping, X, y


def _same(a, b):
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


@pytest.mark.parametrize("kwargs", [
    dict(mode="transient", metric="flip"),
    dict(mode="permanent", metric="linf", eps=0.2),
    dict(estimator="stratified", metric="flip"),
], ids=["transient", "permanent", "stratified"])
def test_simulation_results_round_trip(small, tmp_path, kwargs):
    _, mapping, X, y = small
    faults = ns.NeuronCrash(0.02) + ns.CoreFailure(0.01)
    result = ns.simulate(mapping, faults, X, y, n_samples=40, seed=1, output=tmp_path / "r.h5",
                         **kwargs)
    loaded = load_result(tmp_path / "r.h5")
    assert isinstance(loaded, SimulationResult)
    _same(loaded, result)
    assert loaded.summary() == result.summary()
    if result.chip_failure_rates is not None:
        np.testing.assert_array_equal(loaded.chip_failure_rates, result.chip_failure_rates)
    _same(SimulationResult.from_dict(result.to_dict(), result.chip_failure_rates), result)
    assert ns.load_result is load_result


def test_certificates_round_trip(small, tmp_path):
    _, mapping, X, y = small
    cert = ns.certify(mapping, ns.NeuronCrash(0.01), X, y, delta=0.2, seed=0)
    assert cert.theory is not None
    cert.extra = {"model": "m.h5"}
    cert.save(tmp_path / "c.json")
    loaded = Certificate.load(tmp_path / "c.json")
    _same(loaded, cert)
    assert loaded.summary() == cert.summary()
    assert loaded.extra == {"model": "m.h5"}
    assert isinstance(loaded.empirical, StratifiedResult)
    assert isinstance(loaded.theory, TheoryReport)
    assert json.loads((tmp_path / "c.json").read_text())["format_version"] == 1
    _same(ns.load_certificate(tmp_path / "c.json"), cert)


def test_cli_certificate_loads(tmp_path, capsys):
    from neurosim.cli import main

    assert main(["certify", "--delta", "0.05", "-o", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out
    cert = Certificate.load(tmp_path / "c.json")
    assert cert.certified and cert.extra == {"model": "digits", "data": "digits"}
    assert cert.summary().splitlines()[0] in printed


def test_bad_certificate_files(tmp_path):
    with pytest.raises(NeurosimFileNotFoundError):
        Certificate.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="bad.json"):
        Certificate.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"certified": True}))
    with pytest.raises(FileFormatError, match="not a neurosim certificate"):
        Certificate.load(tmp_path / "other.json")
    (tmp_path / "future.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(FileFormatError, match="format_version 99"):
        Certificate.load(tmp_path / "future.json")


# --- neurosim 0.1's run files -----------------------------------------------------------------

def _v1_inputs():
    net = ns.load_network(DATA / "v1_net.npz")
    data = np.load(DATA / "v1_data.npz")
    return net, data["X"], data["y"]


V1_RUN = dict(metric="linf", eps=0.2, n_samples=40, seed=3, mode="permanent")


def test_a_v1_result_file_loads(tmp_path):
    loaded = load_result(DATA / "v1_complete.h5")
    assert loaded.n_failures == 6671 and loaded.failure_rate == 0.166775
    assert loaded.chip_failure_rates.shape == (40,)
    net, X, y = _v1_inputs()
    now = ns.simulate(net, ns.NeuronCrash(0.05), X, y, **V1_RUN)
    assert (now.n_pairs, now.n_failures, now.n_faulty_pairs) == (
        loaded.n_pairs, loaded.n_failures, loaded.n_faulty_pairs)
    np.testing.assert_array_equal(now.chip_failure_rates, loaded.chip_failure_rates)


def test_a_v1_checkpoint_resumes(tmp_path):
    import shutil

    path = tmp_path / "v1.h5"
    shutil.copy(DATA / "v1_interrupted.h5", path)
    with pytest.raises(FileFormatError, match="not complete"):
        load_result(path)
    net, X, y = _v1_inputs()
    resumed = ns.simulate(net, ns.NeuronCrash(0.05), X, y, output=path, resume=True, **V1_RUN)
    reference = load_result(DATA / "v1_complete.h5")
    assert (resumed.n_pairs, resumed.n_failures) == (reference.n_pairs, reference.n_failures)
    np.testing.assert_array_equal(resumed.chip_failure_rates, reference.chip_failure_rates)
    assert load_result(path).n_failures == reference.n_failures


def test_a_v1_checkpoint_with_rates_that_0_1_wrote_inexactly_resumes(tmp_path):
    """neurosim 0.1 wrote fault rates with %g (crash:p=0.00123457 for 0.001234567); resuming its
    checkpoint compares against that old text, and ends with the uninterrupted numbers."""
    import shutil

    path = tmp_path / "v1.h5"
    shutil.copy(DATA / "v1_interrupted_inexact_rates.h5", path)
    net, X, y = _v1_inputs()
    faults = ns.NeuronCrash(0.001234567) + ns.SynapseStuck(0.0123456789, 0.0)
    kw = dict(metric="linf", eps=0.2, n_samples=40, seed=3)
    resumed = ns.simulate(net, faults, X, y, output=path, resume=True, **kw)
    assert (resumed.n_pairs, resumed.n_failures) == (40000, 5368)
    assert resumed.fault_model == "crash:p=0.001234567 stuck:p0=0.0123456789,p1=0"
    with pytest.raises(ns.ValidationError, match="faults"):
        shutil.copy(DATA / "v1_interrupted_inexact_rates.h5", path)
        ns.simulate(net, ns.NeuronCrash(0.0012345), X, y, output=path, resume=True, **kw)


def test_damaged_files_are_clear_errors(small, tmp_path):
    import h5py

    net, _, X, y = small
    ns.simulate(net, ns.NeuronCrash(0.05), X, y, n_samples=20, output=tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r+") as f:
        f["state"].attrs["stats"] = "{not json"
        f.attrs["result"] = "{broken"
    with pytest.raises(FileFormatError, match="r.h5"):
        load_result(tmp_path / "r.h5")
    diag = tmp_path / "kinds.npz"
    np.savez(diag, kinds=np.array(["dense"]), layer_attrs=np.array(["{oops"]),
             activations=np.array(["identity"]), **{"L0.W": np.ones((2, 3)), "L0.b": np.zeros(2)})
    with pytest.raises(FileFormatError, match="layer_attrs"):
        ns.load_network(diag)
