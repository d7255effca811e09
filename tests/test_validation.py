"""Bad parameters of the front doors and bad command-line flags give one clear line naming the
parameter (or flag) and what was expected, before any work starts."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import neurosim as ns
from neurosim.cli import main
from neurosim.errors import NeurosimError, NeurosimWarning, ValidationError

NET = ns.Network.random([3, 4, 2], seed=0)
X = np.zeros((2, 3))


@pytest.fixture
def no_work(monkeypatch):
    """Fail loudly if a front door gets as far as lowering the target (work would start)."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the parameters were checked")

    for module in ("neurosim.simulation", "neurosim.certify"):  # (ns.certify is the function)
        monkeypatch.setattr(sys.modules[module], "build_plan", boom)


@pytest.mark.parametrize("kwargs, name, expected", [
    (dict(confidence="abc"), "confidence", "a float in (0, 1)"),
    (dict(confidence=1.0), "confidence", "a float in (0, 1)"),
    (dict(seed="x"), "seed", "a non-negative integer"),
    (dict(seed=-1), "seed", "a non-negative integer"),
    (dict(n_samples=2.5), "n_samples", "a positive integer"),
    (dict(eps=float("nan")), "eps", "a finite number >= 0"),
    (dict(metric="hamming"), "metric", "one of linf, l2, loss, flip"),
    (dict(mode="sometimes"), "mode", "one of transient, permanent"),
    (dict(estimator="fast"), "estimator", "one of mc, stratified, auto"),
    (dict(backend="cuda"), "backend", "one of auto, lava, numba, numpy"),
    (dict(backend=3), "backend", "a backend name (auto, numba, numpy, lava, or a registered one)"),
    (dict(runner=3), "runner", "map-like callable"),
    (dict(progress="yes"), "progress", "True or False"),
    (dict(checkpoint_every_s=-1), "checkpoint_every_s", "a number >= 0 (or inf)"),
    (dict(output=3), "output", "a file path"),
])
def test_simulate_parameters(no_work, kwargs, name, expected):
    with pytest.raises(ValidationError) as info:
        ns.simulate(NET, ns.NeuronCrash(0.1), X, **kwargs)
    message = str(info.value)
    assert message.startswith(f"The '{name}' parameter of simulate must be ") and expected in message
    assert "Got " in message


@pytest.mark.parametrize("func, kwargs, name", [
    (ns.certify, dict(delta=1.5), "delta"),
    (ns.certify, dict(delta=0.1, alpha=2), "alpha"),
    (ns.certify, dict(delta=0.1, work_budget=0), "work_budget"),
    (ns.certify, dict(delta=0.1, theory="no"), "theory"),
    (ns.stratified_estimate, dict(rel_halfwidth=-0.1), "rel_halfwidth"),
    (ns.stratified_estimate, dict(alpha_split=0.0), "alpha_split"),
    (ns.stratified_estimate, dict(seed=1.5), "seed"),
])
def test_certify_parameters(no_work, func, kwargs, name):
    with pytest.raises(ValidationError, match=f"^The '{name}' parameter of {func.__name__} must be"):
        func(NET, ns.NeuronCrash(0.1), X, **kwargs)


@pytest.mark.parametrize("argv, flag, expected", [
    (["simulate", "--confidence", "1.5"], "--confidence", "a float in (0, 1)"),
    (["simulate", "--seed", "-3"], "--seed", "a non-negative integer below 2**63"),
    (["simulate", "--eps", "nan"], "--eps", "a finite number >= 0"),
    (["certify", "--delta", "2"], "--delta", "a float in (0, 1)"),
    (["certify", "--delta", "0.1", "--eps", "-1", "--metric", "linf"], "--eps",
     "a finite number >= 0"),
])
def test_cli_flags(capsys, monkeypatch, argv, flag, expected):
    monkeypatch.setattr("neurosim.cli.load_model_arg",
                        lambda args: pytest.fail("the model was loaded before the flags were checked"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"The '{flag}' flag of neurosim {argv[0]} must be {expected}. Got" in err
    assert "None" not in err  # a flag that is given is never None


def test_certify_plot_checks_its_metric_first(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("neurosim.cli.load_model_arg",
                        lambda args: pytest.fail("work started before --plot's metric was checked"))
    assert main(["certify", "--delta", "0.05", "--plot", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "'linf' and 'l2'" in err and "'flip'" in err
    assert not (tmp_path / "p.png").exists()


def test_float_with_the_profiles_bit_flip_default(capsys):
    """loihi2's defaults include bit flips, which the float network cannot have: they are left
    out with a note (an explicit bit flip with --float stays an error that says what to do)."""
    assert main(["simulate", "--float", "--samples", "3", "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    assert "bitflip" not in json.loads(captured.out)["fault_model"]
    assert "left out" in captured.err and "bitflip" in captured.err
    assert main(["simulate", "--float", "--fault", "bitflip:p=1e-6", "--samples", "3"]) == 2
    assert "drop --float" in capsys.readouterr().err
    mapping = ns.map_network(ns.load_digits_model(), "loihi2")
    Xd, yd = ns.load_digits_test()
    with pytest.warns(NeurosimWarning, match="bitflip"):
        r = ns.simulate(mapping, None, Xd[:5], yd[:5], n_samples=2, use_float=True)
    assert "bitflip" not in r.fault_model and r.simulated_network == "float"


def test_values_that_mean_no_limit_and_numbers_in_other_types():
    r = ns.simulate(NET, ns.NeuronCrash(0.1), X, n_samples=2, checkpoint_every_s=float("inf"),
                    metric="linf", eps=np.array(0.5))
    assert r.eps == 0.5
    s = ns.stratified_estimate(NET, ns.NeuronCrash(0.1), X, metric="linf", eps=0.5,
                               max_seconds=float("inf"), work_budget=1e6)
    assert s.upper >= s.lower
    cert = ns.certify(NET, ns.NeuronCrash(0.1), X, delta=np.array(0.1), metric="linf", eps=0.5)
    assert cert.delta == 0.1


def test_other_public_functions_name_their_parameters():
    from neurosim.theory import theory_report

    with pytest.raises(ValidationError, match="'crash' parameter of theory_report"):
        theory_report(NET, None, X)
    with pytest.raises(ValidationError, match="'metric' parameter of theory_report"):
        theory_report(NET, ns.NeuronCrash(0.1), X, metric="bad")
    with pytest.raises(ValidationError, match="'text' parameter of parse_fault_spec"):
        ns.parse_fault_spec(None)
    with pytest.raises(ValidationError, match="'p' twice"):
        ns.parse_fault_spec("crash:p=1e-3,p=2e-3")
    with pytest.raises(ns.ProfileError, match="built-in name"):
        ns.map_network(NET, 3)
    with pytest.raises(ValidationError, match="at least one input"):
        ns.simulate(NET, ns.NeuronCrash(0.1), np.zeros((0, 3)))
    with pytest.raises(ValidationError, match="'k_cap' parameter of stratified_estimate"):
        ns.stratified_estimate(NET, ns.NeuronCrash(0.1), X, k_cap="x")


def test_messages_are_neurosim_errors_and_value_errors():
    with pytest.raises(NeurosimError):
        ns.simulate(NET, ns.NeuronCrash(0.1), X, confidence=2)
    with pytest.raises(ValueError):
        ns.simulate(NET, ns.NeuronCrash(0.1), X, confidence=2)
    with pytest.raises(ValidationError, match="'value' parameter of NeuronCrash"):
        ns.NeuronCrash(0.1, semantics="stuck", value="high")
