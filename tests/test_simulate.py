"""The simulator's results, files, resume and command line (statistics: test_simulate_exact)."""

import json

import h5py
import numpy as np
import pytest

import neurosim as ns
from neurosim.cli import main
from neurosim.errors import NeurosimError, ValidationError
from neurosim.faults import FaultModel, parse_fault_spec, profile_faults
from neurosim.results import load_result
from neurosim.stats import clopper_pearson


@pytest.fixture(scope="module")
def digits():
    net = ns.load_digits_model()
    X, y = ns.load_digits_test()
    return net, ns.map_network(net, "loihi2"), X[:60], y[:60]


def comparable(result):
    d = result.to_dict()
    d.pop("elapsed_s")
    return d


def test_result_fields_and_consistency(digits):
    _, mapping, X, y = digits
    r = ns.simulate(mapping, ns.NeuronCrash(3e-3), X, y, n_samples=300, seed=3)
    assert r.n_pairs == 300 * 60 and r.n_inputs == 60 and r.n_samples == 300
    assert 0 < r.n_failures < r.n_faulty_pairs < r.n_pairs
    assert r.failure_rate == r.n_failures / r.n_pairs
    assert (r.ci_low, r.ci_high) == clopper_pearson(r.n_failures, r.n_pairs, 0.95)
    assert r.ci_low < r.failure_rate < r.ci_high
    # flip is 0/1, so its mean is the failure rate and its variance r(1 - r).
    assert r.error_mean == pytest.approx(r.failure_rate, rel=1e-12)
    assert r.error_std == pytest.approx(np.sqrt(r.failure_rate * (1 - r.failure_rate)), rel=1e-9)
    assert r.output_error_mean.shape == (10,) and np.all(r.output_error_std > 0)
    assert r.clean_accuracy == pytest.approx(
        np.mean(mapping.quantized_network().predict(X) == y))
    assert abs(r.faulty_accuracy - r.clean_accuracy) <= r.failure_rate + 1e-12
    # Every failure has at least one fault, in some layer; crashes are in layers 1..3 only.
    assert r.layer_failures[0] == 0
    assert r.layer_failures.sum() >= r.n_failures
    assert r.core_failures.sum() == r.layer_failures.sum()  # one core per layer on loihi2
    assert r.quantization["quantized_accuracy"] == pytest.approx(r.clean_accuracy)
    d = r.to_dict()
    for key in ("failure_rate", "ci_low", "ci_high", "confidence", "n_samples", "n_inputs",
                "metric", "eps", "error_mean", "error_std", "clean_accuracy", "faulty_accuracy",
                "seed"):
        assert key in d


def test_confidence_widens_interval(digits):
    _, mapping, X, y = digits
    r95 = ns.simulate(mapping, ns.NeuronCrash(3e-3), X, y, n_samples=100, seed=1)
    r99 = ns.simulate(mapping, ns.NeuronCrash(3e-3), X, y, n_samples=100, seed=1, confidence=0.99)
    assert r99.n_failures == r95.n_failures
    assert r99.ci_low < r95.ci_low and r99.ci_high > r95.ci_high


def test_float_and_quantized_differ_only_in_network(digits):
    net, mapping, X, y = digits
    rq = ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y, n_samples=50, seed=0)
    rf = ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y, n_samples=50, seed=0, use_float=True)
    rn = ns.simulate(net, ns.NeuronCrash(1e-3), X, y, n_samples=50, seed=0)
    assert rq.simulated_network.startswith("quantized") and rf.simulated_network == "float"
    # The float run on a mapping is the plain network's run: same draws, same numbers.
    for key in ("n_failures", "error_mean", "error_std", "faulty_accuracy", "n_faulty_pairs"):
        assert getattr(rf, key) == getattr(rn, key)
    # Same faults drawn; the clean accuracy is that of each network.
    assert rq.n_faulty_pairs == rf.n_faulty_pairs == rn.n_faulty_pairs
    assert rf.clean_accuracy == pytest.approx(np.mean(net.predict(X) == y))


@pytest.mark.parametrize("metric, eps", [("linf", 0.5), ("l2", 0.5), ("loss", 0.1), ("flip", 0.5)])
def test_metrics(digits, metric, eps):
    _, mapping, X, y = digits
    r = ns.simulate(mapping, ns.NeuronCrash(5e-3), X, y, metric=metric, eps=eps, n_samples=50,
                    seed=2)
    assert r.metric == metric and r.n_failures >= 0
    assert 0 <= r.failure_rate <= 1


def test_l2_dominates_linf(digits):
    _, mapping, X, y = digits
    kw = dict(n_samples=100, seed=4, eps=0.3)
    linf = ns.simulate(mapping, ns.NeuronCrash(5e-3), X, y, metric="linf", **kw)
    l2 = ns.simulate(mapping, ns.NeuronCrash(5e-3), X, y, metric="l2", **kw)
    assert l2.n_failures >= linf.n_failures  # ||d||_2 >= ||d||_inf on the same draws
    assert l2.error_mean >= linf.error_mean


def test_permanent_mode_reports_chip_distribution(digits):
    _, mapping, X, y = digits
    r = ns.simulate(mapping, ns.NeuronCrash(3e-3), X, y, n_samples=80, seed=5, mode="permanent")
    assert r.chip_failure_rates.shape == (80,)
    assert r.failure_rate == pytest.approx(r.chip_failure_rates.mean())
    q = r.chip_failure_quantiles
    assert q["q00"] <= q["q50"] <= q["q100"]
    assert r.ci_low <= r.failure_rate <= r.ci_high
    assert "chip_failure_quantiles" in r.to_dict()


def test_eps_zero_counts_every_pair(digits):
    _, mapping, X, y = digits
    r = ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y, metric="linf", eps=0.0, n_samples=10)
    assert r.failure_rate == 1.0


def test_no_faults_never_fail(digits):
    _, mapping, X, y = digits
    r = ns.simulate(mapping, ns.NeuronCrash(0.0), X, y, n_samples=20)
    assert r.n_failures == 0 and r.n_faulty_pairs == 0 and r.ci_low == 0.0
    assert r.faulty_accuracy == r.clean_accuracy


def test_resume_gives_same_numbers(digits, tmp_path, monkeypatch):
    _, mapping, X, y = digits
    faults = ns.NeuronCrash(2e-3) + ns.WeightBitFlip(1e-4)
    kw = dict(n_samples=2000, seed=7, metric="linf", eps=0.3)
    full = ns.simulate(mapping, faults, X, y, **kw)

    from neurosim.estimators.montecarlo import MonteCarlo

    calls = {"n": 0}
    real = MonteCarlo._block

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "run.h5"
    monkeypatch.setattr(MonteCarlo, "_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ns.simulate(mapping, faults, X, y, output=out, **kw)
    monkeypatch.setattr(MonteCarlo, "_block", real)
    with h5py.File(out, "r") as f:  # a valid, resumable file holding the 4 completed blocks
        assert f.attrs["format_version"] == 3 and not f.attrs["complete"]
        assert json.loads(f["state"].attrs["stats"])["blocks"] == [[0, 4]]  # blocks 0..3
    with pytest.raises(NeurosimError, match="resume"):
        load_result(out)
    resumed = ns.simulate(mapping, faults, X, y, output=out, resume=True, **kw)
    assert comparable(resumed) == comparable(full)
    assert load_result(out).failure_rate == full.failure_rate


def test_resume_refuses_other_settings(digits, tmp_path):
    _, mapping, X, y = digits
    out = tmp_path / "r.h5"
    ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y, n_samples=20, seed=1, output=out)
    with pytest.raises(ValidationError, match="seed"):
        ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y, n_samples=20, seed=2, output=out,
                    resume=True)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(eps=-0.1), "eps"),
        (dict(metric="hamming"), "metric"),
        (dict(n_samples=0), "n_samples"),
        (dict(mode="sometimes"), "mode"),
        (dict(confidence=1.5), "confidence"),
        (dict(metric="linf"), "eps"),  # no default eps for linf
    ],
)
def test_bad_arguments(digits, kwargs, needle):
    _, mapping, X, y = digits
    with pytest.raises(ValidationError, match=needle):
        ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y, **kwargs)


def test_bad_data_and_fault_arguments(digits):
    net, mapping, X, y = digits
    with pytest.raises(ValidationError, match="64"):
        ns.simulate(mapping, ns.NeuronCrash(1e-3), X[:, :10], y)
    with pytest.raises(ValidationError, match="mapping"):
        ns.simulate(net, ns.CoreFailure(1e-3), X, y)
    with pytest.raises(ValidationError, match="float"):
        ns.simulate(mapping, ns.WeightBitFlip(1e-3), X, y, use_float=True)
    with pytest.raises(ValidationError, match="class indices"):
        ns.simulate(mapping, ns.NeuronCrash(1e-3), X, y + 20)


@pytest.mark.parametrize("bad", [
    lambda: ns.NeuronCrash(1.5), lambda: ns.NeuronCrash(-0.1), lambda: ns.NeuronCrash(float("nan")),
    lambda: ns.SynapseStuck(0.7, 0.5), lambda: ns.WeightBitFlip(2), lambda: ns.CoreFailure("x"),
    lambda: ns.NeuronCrash(0.1, semantics="dead"), lambda: ns.NeuronCrash(0.1) + ns.NeuronCrash(0.2),
])
def test_fault_validation(bad):
    with pytest.raises(ValidationError):
        bad()


def test_fault_probability_message():
    with pytest.raises(ValidationError) as info:
        ns.NeuronCrash(1.5)
    assert str(info.value) == ("The 'p' parameter of NeuronCrash must be a float in [0, 1]. "
                               "Got 1.5 instead.")


def test_parse_fault_spec():
    crash = parse_fault_spec("crash:p=1e-3,layers=1,2")
    assert crash == ns.NeuronCrash(1e-3, layers=(1, 2))
    assert parse_fault_spec("stuck:p0=0.0175,p1=0.0904") == ns.SynapseStuck(0.0175, 0.0904)
    assert parse_fault_spec("bitflip:p=1e-6") == ns.WeightBitFlip(1e-6)
    assert parse_fault_spec("core:p=1e-3") == ns.CoreFailure(1e-3)
    assert parse_fault_spec("crash:p=0.1,semantics=stuck,value=2") == ns.NeuronCrash(
        0.1, semantics="stuck", value=2.0)
    assert parse_fault_spec("profile") is None
    for bad, needle in [("crush:p=1", "Valid faults"), ("crash:q=1", "Valid keys"),
                        ("crash:p=abc", "number"), ("crash:p=2", "[0, 1]"),
                        ("crash:p=0.1,layers=a", "integers")]:
        with pytest.raises(ValidationError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            parse_fault_spec(bad)


def test_crash_layer_rates():
    assert ns.NeuronCrash(0.1).layer_rates(3).tolist() == [0, 0.1, 0.1, 0.1]
    assert ns.NeuronCrash(0.1, layers=(0, 2)).layer_rates(3).tolist() == [0.1, 0, 0.1, 0]
    assert ns.NeuronCrash([0.1, 0.2, 0.3]).layer_rates(3).tolist() == [0, 0.1, 0.2, 0.3]
    assert ns.NeuronCrash([0.4, 0.1, 0.2, 0.3]).layer_rates(3).tolist() == [0.4, 0.1, 0.2, 0.3]
    with pytest.raises(ValidationError, match="3 rates"):
        ns.NeuronCrash([0.1, 0.2]).layer_rates(3)
    with pytest.raises(ValidationError, match="layer 5"):
        ns.NeuronCrash(0.1, layers=(5,)).layer_rates(3)


def test_profile_faults_drop_zero_rates():
    model = profile_faults(ns.load_profile("loihi2"))
    assert {p.kind for p in model.processes} == {"crash", "bitflip", "core"}
    rram = profile_faults(ns.load_profile("rram_crossbar"))
    assert rram.processes == [ns.SynapseStuck(0.0175, 0.0904, mode="permanent")]
    assert isinstance(ns.NeuronCrash(0.1) + ns.CoreFailure(0.1), FaultModel)


# --- command line -------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_simulate_json(capsys, tmp_path):
    data = tmp_path / "d.npz"
    X, y = ns.load_digits_test()
    np.savez(data, X=X[:40], y=y[:40])
    code, out, _ = run_cli(capsys, "simulate", "--data", str(data), "--samples", "100",
                           "--fault", "crash:p=2e-3", "--fault", "bitflip:p=1e-5", "--seed", "4",
                           "--json")
    assert code == 0
    d = json.loads(out)
    for key in ("failure_rate", "ci_low", "ci_high", "confidence", "n_samples", "n_inputs",
                "metric", "eps", "error_mean", "error_std", "clean_accuracy", "faulty_accuracy",
                "seed"):
        assert key in d
    assert d["n_samples"] == 100 and d["n_inputs"] == 40 and d["seed"] == 4
    assert d["fault_model"] == "crash:p=0.002 bitflip:p=1e-05"


def test_cli_profile_faults_and_override(capsys):
    code, out, _ = run_cli(capsys, "simulate", "--samples", "5", "--json")
    assert json.loads(out)["fault_model"] == "crash:p=0.0001 bitflip:p=1e-08 core:p=1e-05"
    code, out, _ = run_cli(capsys, "simulate", "--samples", "5", "--json", "--fault", "profile",
                           "--fault", "crash:p=1e-3")
    assert json.loads(out)["fault_model"] == "crash:p=0.001 bitflip:p=1e-08 core:p=1e-05"


def test_cli_simulate_resume(capsys, tmp_path):
    out_file = tmp_path / "run.h5"
    argv = ["simulate", "--samples", "60", "--fault", "crash:p=1e-3", "-o", str(out_file), "--json"]
    code, first, _ = run_cli(capsys, *argv)
    assert code == 0 and out_file.exists()
    code, again, _ = run_cli(capsys, *argv, "--resume")
    a, b = json.loads(first), json.loads(again)
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b


@pytest.mark.parametrize("argv, needle", [
    (["--fault", "crash:p=1.5"], "[0, 1]"),
    (["--fault", "melt:p=0.1"], "Unknown fault 'melt'"),
    (["--eps", "-1"], "eps"),
    (["--metric", "linf"], "eps"),
    (["--resume"], "-o"),
])
def test_cli_simulate_bad_input(capsys, argv, needle):
    code, _, err = run_cli(capsys, "simulate", "--samples", "5", *argv)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_simulate_data_width(capsys, tmp_path):
    data = tmp_path / "narrow.npz"
    np.savez(data, X=np.ones((3, 5)), y=np.zeros(3, dtype=int))
    code, _, err = run_cli(capsys, "simulate", "--data", str(data), "--samples", "5")
    assert code == 2 and "narrow.npz" in err and "64" in err


def test_cli_demo(capsys, tmp_path):
    """The demo maps, simulates and certifies the bundled model and writes its outputs."""
    code, out, _ = run_cli(capsys, "demo", "--samples", "200", "--out", str(tmp_path))
    assert code == 0
    assert "loihi2" in out and "fits on one chip" in out
    assert "failure rate" in out and "Clopper-Pearson" in out
    assert "CERTIFIED" in out  # the bundled model certifies delta = 0.05 at loihi2's rates
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["quantization"]["float_accuracy"] >= 0.95
    assert summary["simulation"]["n_samples"] == 200
    assert summary["certificate"]["certified"] is True
    assert (tmp_path / "mapping.h5").exists()
    assert (tmp_path / "delta_vs_eps.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_demo_conv(capsys):
    """The demo on the bundled CNN: conv layers mapped, simulated and certified."""
    code, out, _ = run_cli(capsys, "demo", "--model", "conv", "--samples", "100")
    assert code == 0
    assert "conv2d8x8x8 maxpool2d conv2d16x4x4" in out and "fits on one chip" in out
    assert "accuracy: float 98.74%" in out
    assert "failure rate" in out and ("CERTIFIED" in out or "NOT certified" in out)


def test_bundled_conv_model():
    net = ns.load_digits_conv_model()
    X, y = ns.load_digits_test()
    assert net.input_shape == (1, 8, 8) and net.layout == "NCHW"
    assert [m["batchnorm"].split(": ")[-1] for m in net.metadata["folded_batchnorm"]] == [
        "layer 1 (BatchNorm2d)", "layer 5 (BatchNorm2d)"]
    acc = float((net.predict(X.reshape(-1, 1, 8, 8)) == y).mean())
    assert acc == pytest.approx(net.metadata["test_accuracy"]) and acc >= 0.97
    np.testing.assert_array_equal(net.forward(X), net.forward(X.reshape(-1, 1, 8, 8)))


def test_cli_lava_backend_without_lava(capsys):
    """Without lava-nc (this Python), --backend lava is a clear error naming what to install."""
    import importlib.util

    try:
        has_lava = importlib.util.find_spec("lava.magma") is not None
    except ModuleNotFoundError:
        has_lava = False
    if has_lava:
        pytest.skip("lava-nc is installed here; tests/lava covers --backend lava")
    code, _, err = run_cli(capsys, "simulate", "--backend", "lava", "--samples", "1")
    assert code == 2
    assert "Python 3.10" in err and "neurosim-faults[lava]" in err
