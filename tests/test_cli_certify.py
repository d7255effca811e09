"""neurosim certify, simulate --estimator, and the demo's certificate, on the command line."""

import json

import numpy as np
import pytest

import neurosim as ns
from neurosim.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    X, y = ns.load_digits_test()
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, X=X[:60], y=y[:60])
    return str(path)


def test_certify_exit_codes_and_json(capsys, tmp_path, small_data):
    cert_path = tmp_path / "cert.json"
    code, out, _ = run_cli(capsys, "certify", "--data", small_data, "--delta", "0.5",
                           "--fault", "crash:p=1e-3", "-o", str(cert_path))
    assert code == 0 and "CERTIFIED" in out
    d = json.loads(cert_path.read_text())
    for key in ("certified", "delta", "eps", "confidence", "delta_upper", "delta_lower",
                "delta_estimate", "delta0", "fault_model", "seed", "model_sha256", "data_sha256"):
        assert key in d, key
    assert set(d["taylor"]) >= {"mean", "var", "delta_chebyshev"}
    assert d["certified"] is True and d["delta_upper"] <= d["delta"] == 0.5
    assert d["delta_lower"] <= d["delta_estimate"] <= d["delta_upper"]
    assert len(d["model_sha256"]) == 64 and len(d["data_sha256"]) == 64
    assert d["fault_model"] == "crash:p=0.001"

    code, out, _ = run_cli(capsys, "certify", "--data", small_data, "--delta", "1e-4",
                           "--fault", "crash:p=1e-3", "--json")
    assert code == 1
    d = json.loads(out)
    assert d["certified"] is False and d["delta_upper"] > 1e-4
    assert "replicas" in d["advice"] and "widths" in d["advice"]


def test_certify_same_seed_same_certificate(capsys, small_data):
    argv = ["certify", "--data", small_data, "--delta", "0.5", "--fault", "crash:p=2e-3",
            "--seed", "3", "--json"]
    _, a, _ = run_cli(capsys, *argv)
    _, b, _ = run_cli(capsys, *argv)
    a, b = json.loads(a), json.loads(b)
    for d in (a, b):
        d.pop("elapsed_s")
        d["stratification"].pop("elapsed_s")
    assert a == b


def test_certify_population_flag(capsys, small_data):
    """--population picks the bound and the JSON records it; the betting default is the
    tighter of the two on the same run."""
    base = ["certify", "--data", small_data, "--delta", "0.5", "--fault", "crash:p=2e-3",
            "--json"]
    runs = {}
    for flag in ("auto", "betting", "kl"):
        code, out, _ = run_cli(capsys, *base, "--population", flag)
        assert code == 0
        runs[flag] = json.loads(out)
    assert runs["auto"]["population"] == runs["betting"]["population"] == "betting"
    assert runs["kl"]["population"] == "kl" and "asked for" in runs["kl"]["population_reason"]
    assert runs["auto"]["delta_upper"] == runs["betting"]["delta_upper"]
    assert runs["betting"]["delta_upper"] < runs["kl"]["delta_upper"]
    with pytest.raises(SystemExit) as exc:  # argparse's own choice check
        main(base + ["--population", "hoeffding"])
    assert exc.value.code == 2 and "--population" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--delta", "0"], "delta"),
    (["--delta", "1.5"], "delta"),
    (["--delta", "0.1", "--eps", "-1"], "eps"),
    (["--delta", "0.1", "--fault", "crash:p=7"], "[0, 1]"),
    (["--delta", "0.1", "--confidence", "1.2"], "confidence"),
])
def test_certify_bad_input(capsys, argv, needle):
    code, _, err = run_cli(capsys, "certify", *argv)
    assert code == 2 and needle in err


def test_certify_plot(capsys, tmp_path, small_data):
    png = tmp_path / "d.png"
    code, out, _ = run_cli(capsys, "certify", "--data", small_data, "--delta", "0.5",
                           "--metric", "linf", "--eps", "1.0", "--fault", "crash:p=1e-3",
                           "--plot", str(png))
    assert code in (0, 1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_estimators_agree(capsys, small_data):
    argv = ["simulate", "--data", small_data, "--fault", "crash:p=1e-3", "--json"]
    _, strat, _ = run_cli(capsys, *argv, "--estimator", "stratified", "--samples", "100")
    _, mc, _ = run_cli(capsys, *argv, "--samples", "4000")
    strat, mc = json.loads(strat), json.loads(mc)
    assert strat["estimator"] == "stratified" and mc["estimator"] == "mc"
    assert strat["ci_low"] <= strat["failure_rate"] <= strat["ci_high"]
    # Two independent 95 % intervals for the same quantity overlap unless something is wrong.
    assert strat["ci_low"] <= mc["ci_high"] and mc["ci_low"] <= strat["ci_high"]
    # auto: stratified when the expected number of faults per draw is <= 0.1 (522 neurons).
    _, auto, _ = run_cli(capsys, *argv, "--estimator", "auto", "--samples", "100")
    assert json.loads(auto)["estimator"] == "mc"  # 522 x 1e-3 = 0.52 faults per draw
    argv[4] = "crash:p=1e-4"
    _, auto, _ = run_cli(capsys, *argv, "--estimator", "auto", "--samples", "100")
    assert json.loads(auto)["estimator"] == "stratified"  # 0.052 faults per draw
