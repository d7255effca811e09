"""Fuzzing neurosim's run files: complete results (``load_result``), checkpoints
(``simulate(..., resume=True)``) and certificates (``load_certificate``).

Beyond the reader contract (a valid object or one NeurosimError naming the file), a checkpoint
that is resumed must give exactly the uninterrupted run's numbers: damage that slips past the
checks would show as different numbers. Mutations that re-sign the file's checksum (as a bug or
a hand-made file would) exercise the checks behind the checksum: the state must add up to this
run's blocks."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import neurosim as ns
from neurosim.estimators.montecarlo import MonteCarlo
from neurosim.io import digest

import fuzzing
from fuzz_kinds import KINDS, resume_setup


def _comparable(result) -> str:
    d = result.to_dict()
    d.pop("elapsed_s")
    return json.dumps(d, sort_keys=True)


@pytest.fixture(scope="module")
def files():
    """Valid files of each run kind (bytes), and the uninterrupted run's result."""
    net, faults, X, y, kw = resume_setup()
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        full = ns.simulate(net, faults, X, y, output=folder / "full.h5", **kw)
        out["result_permanent"] = (folder / "full.h5").read_bytes()
        ns.simulate(net, faults, X, y, output=folder / "t.h5", **dict(kw, mode="transient"))
        out["result_transient"] = (folder / "t.h5").read_bytes()
        ns.simulate(net, ns.NeuronCrash(1e-3), X[:50], y[:50], metric="linf", eps=0.05,
                    n_samples=20, estimator="stratified", output=folder / "s.h5")
        out["result_stratified"] = (folder / "s.h5").read_bytes()
        real, calls = MonteCarlo._block, {"n": 0}

        def interrupted(self, b):
            calls["n"] += 1
            if calls["n"] > 2:
                raise KeyboardInterrupt
            return real(self, b)

        MonteCarlo._block = interrupted
        try:
            with pytest.raises(KeyboardInterrupt):
                ns.simulate(net, faults, X, y, output=folder / "cp.h5", **kw)
        finally:
            MonteCarlo._block = real
        out["checkpoint"] = (folder / "cp.h5").read_bytes()
        cert = ns.certify(ns.load_digits_model(), ns.NeuronCrash(1e-3), *ns.load_digits_test(),
                          delta=0.05, n_samples=20, work_budget=20_000)
        cert.save(folder / "c.json")
        out["certificate"] = (folder / "c.json").read_bytes()
    out["full"] = _comparable(full)
    return out


def _same_as_full(full):
    def check(result):
        assert _comparable(result) == full, "a damaged checkpoint resumed to other numbers"
    return check


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzzed_results_are_read_or_refused(files, data):
    kind = data.draw(st.sampled_from(["result_permanent", "result_transient",
                                      "result_stratified"]))
    valid = files[kind]
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.h5_mutations(valid)))
    suffix, read = KINDS["result"]
    fuzzing.fuzz_case("result", read, payload, suffix)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzzed_checkpoints_resume_to_the_same_numbers_or_are_refused(files, data):
    valid = files["checkpoint"]
    payload = data.draw(st.one_of(fuzzing.byte_mutations(valid), fuzzing.h5_mutations(valid)))
    suffix, read = KINDS["checkpoint"]
    fuzzing.fuzz_case("checkpoint", read, payload, suffix, check=_same_as_full(files["full"]))


def _junk_json():
    return st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                     st.lists(st.integers(-3, 200), max_size=4),
                     st.lists(st.lists(st.integers(-3, 200), max_size=3), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def resigned_state(draw, valid: bytes) -> bytes:
    """The checkpoint with entries of its JSON state (or config) replaced, re-signed."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cp.h5"
        path.write_bytes(valid)
        with h5py.File(path, "r+") as f:
            where = draw(st.sampled_from(["state", "state", "state", "config"]))
            holder, key = (f["state"], "stats") if where == "state" else (f, "config")
            state = json.loads(holder.attrs[key])
            for _ in range(draw(st.integers(1, 3))):
                name = draw(st.sampled_from(sorted(state)))
                if draw(st.booleans()) and isinstance(state[name], (int, list)):
                    value = state[name]
                    state[name] = (value + draw(st.integers(-2000, 2000)) if isinstance(value, int)
                                   else value[:-1] if value and draw(st.booleans()) else value + [0])
                elif draw(st.integers(0, 9)) == 0:
                    del state[name]
                else:
                    state[name] = draw(_junk_json())
            holder.attrs[key] = json.dumps(state)
            digest.sign(f)
        digest.seal(path)
        return path.read_bytes()


@fuzzing.FUZZ
@given(data=st.data())
def test_resigned_checkpoints_are_resumed_only_when_they_add_up(files, data):
    payload = data.draw(resigned_state(files["checkpoint"]))
    suffix, read = KINDS["checkpoint"]
    fuzzing.fuzz_case("checkpoint", read, payload, suffix)


@fuzzing.FUZZ
@given(data=st.data())
def test_fuzzed_certificates_are_read_or_refused(files, data):
    valid = files["certificate"]
    text = json.loads(valid)
    mutation = st.one_of(
        fuzzing.byte_mutations(valid),
        st.builds(lambda k, v: json.dumps({**text, k: v}).encode(),
                  st.sampled_from(sorted(text)), _junk_json()))
    suffix, read = KINDS["certificate"]
    fuzzing.fuzz_case("certificate", read, data.draw(mutation), suffix)


def test_a_certificate_with_a_changed_verdict_is_refused(files, tmp_path):
    d = json.loads(files["certificate"])
    d["certified"] = not d["certified"]
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(ns.FileFormatError, match="does not match its checksum"):
        ns.load_certificate(tmp_path / "c.json")
    d.pop("content_sha256")  # a certificate of neurosim 0.2 (no checksum) still reads
    d["certified"] = not d["certified"]
    (tmp_path / "old.json").write_text(json.dumps(d))
    original = json.loads(files["certificate"])
    assert ns.load_certificate(tmp_path / "old.json").certified is original["certified"]
    assert ns.load_certificate(tmp_path / "old.json").delta_upper == original["delta_upper"]


def test_the_valid_files_read(files, tmp_path):
    for kind, name in (("result", "result_permanent"), ("checkpoint", "checkpoint"),
                       ("certificate", "certificate")):
        suffix, read = KINDS[kind]
        obj = fuzzing.run_reader(read, files[name], suffix)
        assert obj != "refused"
    resumed = fuzzing.run_reader(KINDS["checkpoint"][1], files["checkpoint"], ".h5")
    assert _comparable(resumed) == files["full"]
