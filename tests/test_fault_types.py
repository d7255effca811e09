"""Fault types carry their behaviour: their text form round-trips, the profile schema's fault
rates come from the registry, and a fault type defined here, outside the package, works in
the sampler, both backends, simulate and the stratified estimator by registering it alone."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neurosim as ns
from neurosim.cli import main
from neurosim.errors import ValidationError
from neurosim.faults import (CRASH_STUCK, FAULT_TYPES, FaultModel, FaultType, ProfileField,
                             profile_faults,
                             parse_fault_model, parse_fault_spec)
from neurosim.hardware import FaultRates, fault_rates_class, load_profile, profile_from_dict
from neurosim.sampler import FaultGroup

# --- text form ---------------------------------------------------------------------------------

rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
small = st.floats(min_value=0.0, max_value=0.5, allow_nan=False)
crashes = st.one_of(
    st.builds(ns.NeuronCrash, p=rates),
    st.builds(ns.NeuronCrash, p=st.lists(rates, min_size=1, max_size=6).map(tuple)),
    st.builds(ns.NeuronCrash, p=rates, layers=st.lists(st.integers(0, 9), min_size=1, unique=True,
                                                       max_size=4).map(tuple)),
    st.builds(ns.NeuronCrash, p=rates, semantics=st.sampled_from(["silent", "paper", "stuck"]),
              value=st.floats(-1e6, 1e6, allow_nan=False)),
    st.builds(ns.NeuronCrash, p=rates, semantics=st.sampled_from(["silent", "stuck"]),
              steps=st.integers(1, 64)),
)
factors = st.floats(1e-6, 1e6, allow_nan=False)
layer_lists = st.none() | st.lists(st.integers(1, 9), min_size=1, unique=True,
                                   max_size=4).map(tuple)
neuron_params = st.one_of(*[
    st.one_of(st.builds(cls, p=rates, factor=st.lists(factors, min_size=1, max_size=4).map(tuple),
                        layers=layer_lists),
              st.builds(cls, p=rates, lognormal=factors, layers=layer_lists),
              st.builds(cls, p=rates, uniform=st.tuples(factors, factors).filter(
                  lambda t: t[0] < t[1]), layers=layer_lists))
    for cls in (ns.ThresholdPerturbation, ns.LeakPerturbation)])
processes = st.one_of(crashes, st.builds(ns.SynapseStuck, small, small),
                      st.builds(ns.WeightBitFlip, rates), st.builds(ns.CoreFailure, rates),
                      neuron_params)


@settings(max_examples=300, deadline=None)
@given(processes)
def test_every_spec_parses_back_to_the_same_process(proc):
    assert parse_fault_spec(proc.spec()) == proc


@settings(max_examples=100, deadline=None)
@given(st.lists(processes, max_size=4, unique_by=lambda p: p.kind))
def test_every_model_spec_parses_back_to_the_same_model(procs):
    model = FaultModel(procs)
    assert parse_fault_model(model.spec()) == model


def test_spec_examples():
    assert ns.NeuronCrash((1e-3, 0.0, 2e-3)).spec() == "crash:p=0.001/0/0.002"
    assert parse_fault_spec("crash:p=1e-3/0/2e-3") == ns.NeuronCrash((1e-3, 0.0, 2e-3))
    assert ns.NeuronCrash(1.2345678901e-4).spec() == "crash:p=0.00012345678901"  # all digits
    assert parse_fault_spec("crash:p=1e-3,layers=1,2,semantics=stuck,value=1.5") == \
        ns.NeuronCrash(1e-3, semantics="stuck", value=1.5, layers=(1, 2))
    assert parse_fault_model("none") == FaultModel([])
    with pytest.raises(ValidationError, match="'/'"):
        parse_fault_spec("crash:p=1e-3/x")
    with pytest.raises(ValidationError, match="Unknown key 'q'"):
        parse_fault_spec("stuck:q=1")
    assert parse_fault_spec("crash:p=0.01,steps=1") == ns.NeuronCrash(0.01, steps=1)
    assert parse_fault_spec("threshold:p=1,lognormal=0.1,mode=permanent") == \
        ns.ThresholdPerturbation(1.0, lognormal=0.1, mode="permanent")
    assert parse_fault_spec("leak:p=0.1,uniform=0.5/2,layers=2") == \
        ns.LeakPerturbation(0.1, uniform=(0.5, 2.0), layers=(2,))
    assert ns.ThresholdPerturbation(0.01, factor=0.5).spec() == "threshold:p=0.01,factor=0.5"
    for bad, match in [("threshold:p=0.1", "exactly one factor distribution"),
                       ("threshold:p=0.1,factor=2,lognormal=0.1", "exactly one"),
                       ("leak:p=0.1,factor=0", "positive"),
                       ("leak:p=0.1,uniform=2/1", "LO < HI"),
                       ("threshold:p=1.5,factor=2", r"\[0, 1\]"),
                       ("crash:p=0.1,steps=0", "positive integer"),
                       ("crash:p=0.1,steps=x", "positive integer"),
                       ("crash:p=0.1,semantics=paper,steps=2", "paper")]:
        with pytest.raises(ValidationError, match=match):
            parse_fault_spec(bad)


def test_cli_takes_per_layer_rates(capsys):
    code = main(["simulate", "--fault", "crash:p=1e-3/0/2e-3", "--samples", "5", "--json",
                 "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert parse_fault_model(out["fault_model"]) == FaultModel([ns.NeuronCrash((1e-3, 0.0, 2e-3))])
    # Layer 2's rate is 0: no failure is attributed to it.
    assert out["failures_by_layer"]["2"] == 0 and out["n_faulty_pairs"] > 0


# --- the profile schema -----------------------------------------------------------------------

def test_profile_fault_rates_are_the_registered_fields():
    declared = [pf.name for cls in FAULT_TYPES.values() for pf in cls.profile_fields]
    assert [f.name for f in dataclasses.fields(FaultRates)] == declared
    assert declared == ["neuron_crash", "synapse_stuck_at_zero", "synapse_stuck_at_max",
                        "weight_bit_flip", "core_failure", "neuron_threshold_mismatch",
                        "neuron_leak_mismatch"]
    docs = load_profile("loihi2").field_docs()
    for cls in FAULT_TYPES.values():
        for pf in cls.profile_fields:
            assert docs[f"fault_rates.{pf.name}"]["doc"] == pf.doc


# --- a fault type from outside the package -----------------------------------------------------

@dataclass(frozen=True)
class OutputStuck(FaultType):
    """Each output neuron is stuck at ``value`` with probability ``p`` (a test fault type)."""

    p: float = 0.0
    value: float = 3.0

    kind = "test_outstuck"
    spec_keys = {"p": "rate", "v": "value"}
    profile_fields = (ProfileField("test_output_stuck", "Output neurons stuck (test).",
                                   "probability per neuron", "outstuck", required=False),)

    def spec(self):
        return f"test_outstuck:p={self.p!r},v={self.value!r}"

    @classmethod
    def from_params(cls, params, text):
        return cls(cls.number(params, "p", text), cls.number(params, "v", text, default=3.0))

    @classmethod
    def from_profile(cls, rates):
        return cls(getattr(rates, "test_output_stuck", 0.0))

    def is_null(self):
        return self.p == 0

    def groups(self, plan):
        L = plan.n_layers
        return [FaultGroup(self.kind, L, -1, plan.widths[L], self.p)] if self.p > 0 else []

    def add_records(self, plan, positions, outcomes, builder):
        draws, pos = positions.get((self.kind, plan.n_layers), (np.zeros(0, np.int64),) * 2)
        if draws.size:
            builder.add_crash(plan.n_layers, draws, pos, CRASH_STUCK, self.value)


@pytest.fixture
def out_stuck():
    ns.register_fault(OutputStuck)
    yield OutputStuck
    FAULT_TYPES.pop(OutputStuck.kind, None)


def test_a_registered_fault_type_runs_everywhere(out_stuck):
    net = ns.Network.random([5, 7, 3], seed=2)
    X = np.random.default_rng(0).normal(size=(20, 5))
    fault = OutputStuck(0.05, value=3.0)
    assert parse_fault_spec(fault.spec()) == fault
    # Exact: each output neuron is independently at 3.0 with probability p; enumerate.
    clean = net.forward(X)
    p_fail = 0.0
    for pattern in np.ndindex(2, 2, 2):
        out = np.where(np.array(pattern, bool), 3.0, clean)
        prob = np.prod([0.05 if b else 0.95 for b in pattern])
        p_fail += prob * np.mean(out.argmax(axis=1) != clean.argmax(axis=1))
    assert p_fail > 0.01
    results = {}
    for backend in ("numba", "numpy"):
        r = ns.simulate(net, fault, X, n_samples=3000, seed=3, backend=backend)
        assert r.ci_low <= p_fail <= r.ci_high
        results[backend] = (r.n_pairs, r.n_faulty_pairs, r.n_failures)
    assert results["numba"] == results["numpy"]  # the same draws, the same failures
    strat = ns.stratified_estimate(net, fault, X, k_cap=3, tail_target=1e-12)
    assert all(s.method == "exact" for s in strat.strata)
    assert strat.estimate == pytest.approx(p_fail, rel=1e-9, abs=strat.tail)


def test_a_registered_fault_types_profile_field(out_stuck):
    assert "test_output_stuck" in [f.name for f in dataclasses.fields(fault_rates_class())]
    data = {"name": "t", "description": "t", "architecture": "cores", "cores_per_chip": 4,
            "neurons_per_core": 64, "max_fan_in": 64, "synapses_per_core": 10**5,
            "weight_bits": 8, "fault_rates": {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0,
                                              "synapse_stuck_at_max": 0.0, "weight_bit_flip": 0.0,
                                              "core_failure": 0.0}}
    assert profile_from_dict(data).fault_rates.test_output_stuck == 0.0  # optional: default 0
    data["fault_rates"]["test_output_stuck"] = 0.2
    profile = profile_from_dict(data)
    assert profile_faults(profile) == FaultModel([OutputStuck(0.2)])
