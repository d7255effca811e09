"""What neurosim promises about its files and runs (docs/reliability.md), each promise tried as
a user or an attacker would: one writer at a time, temporaries of killed writers removed, an
earlier result protected, nothing corrupt or foreign resumed, nothing computed lost, bad
labels / seeds / sample counts / fault specs refused in one line, a closed pipe ending quietly,
and memory that does not grow with the number of samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import neurosim as ns
from neurosim.cli import main
from neurosim.errors import FileFormatError, ResultNotSavedError, ValidationError
from neurosim.estimators.montecarlo import MonteCarlo
from neurosim.io import digest
from neurosim.io.lock import OutputLockedError, lock_path, output_lock
from neurosim.results import load_result

from fuzz_kinds import resume_setup

FAULTS = ns.NeuronCrash(0.02) + ns.SynapseStuck(0.01, 0.01)
KW = dict(metric="linf", eps=0.05, n_samples=40, seed=4, checkpoint_every_s=0.0)


@pytest.fixture(scope="module")
def run_setup():
    net, _, X, y, _ = resume_setup()  # the fuzzed checkpoints' run (tests/fuzz_kinds.py)
    return net, X, y


def _comparable(result) -> str:
    d = result.to_dict()
    d.pop("elapsed_s")
    return json.dumps(d, sort_keys=True)


def _interrupted(monkeypatch, after_blocks: int):
    """Make the next simulate stop with Ctrl-C after ``after_blocks`` blocks."""
    real, calls = MonteCarlo._block, {"n": 0}

    def block(self, b):
        calls["n"] += 1
        if calls["n"] > after_blocks:
            raise KeyboardInterrupt
        return real(self, b)

    monkeypatch.setattr(MonteCarlo, "_block", block)


# --- one writer at a time -------------------------------------------------------------------

def test_a_second_writer_is_refused_and_a_killed_holder_frees_the_path(run_setup, tmp_path):
    net, X, y = run_setup
    out = tmp_path / "run.h5"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from neurosim.io.lock import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}") as err:
            ns.simulate(net, FAULTS, X, y, output=out, **KW)
        assert str(out) in str(err.value) and not out.exists()
        assert main(["simulate", "--samples", "5", "-o", str(out), "--no-progress"]) == 2
    finally:
        holder.kill()  # as a crash would: the operating system releases the lock
        holder.wait()
    full = ns.simulate(net, FAULTS, X, y, output=out, **KW)
    assert _comparable(load_result(out)) == _comparable(full)
    assert not lock_path(out).exists()  # removed on exit


def test_the_lock_is_exclusive_within_a_process_too(run_setup, tmp_path):
    net, X, y = run_setup
    out = tmp_path / "run.h5"
    with output_lock(out):
        with pytest.raises(OutputLockedError):
            ns.simulate(net, FAULTS, X, y, output=out, **KW)
    ns.simulate(net, FAULTS, X, y, output=out, **KW)


def test_temporaries_of_killed_writers_are_removed_by_the_next_run(run_setup, tmp_path):
    net, X, y = run_setup
    out = tmp_path / "run.h5"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f".run.h5.{gone.pid}.k3j2h1g0.h5"  # a writer that was SIGKILLed
    legacy = tmp_path / ".run.h5.x8c7v6b5.h5"  # neurosim 0.2 named them without a pid
    alive = tmp_path / f".run.h5.{os.getppid()}.a1b2c3d4.h5"  # a live writer's: kept
    other = tmp_path / ".other.h5.x8c7v6b5.h5"  # another path's: not ours to remove
    for p in (dead, legacy, alive, other):
        p.write_bytes(b"half-written")
    ns.simulate(net, FAULTS, X, y, output=out, **KW)
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and other.exists()


def test_a_writer_killed_mid_checkpoint_leaves_a_resumable_file_and_nothing_else(run_setup,
                                                                                 tmp_path):
    """SIGKILL at random moments of a run that checkpoints after every block: what is left
    is either nothing or a valid checkpoint, and a resume removes the temporary files."""
    net, X, y = run_setup
    kw = dict(KW, n_samples=400)
    full = ns.simulate(net, FAULTS, X, y, **kw)
    script = textwrap.dedent(f"""
        import numpy as np, neurosim as ns
        net = ns.Network.random([6, 9, 7, 4], "tanh", seed=3)
        X = np.random.default_rng(0).normal(size=(900, 6))
        y = np.random.default_rng(1).integers(0, 4, size=900)
        print("start", flush=True)
        ns.simulate(net, ns.NeuronCrash(0.02) + ns.SynapseStuck(0.01, 0.01), X, y,
                    output={{out!r}}, **{kw!r})
        """)
    rng = np.random.default_rng(0)
    for trial in range(3):
        out = tmp_path / f"run{trial}.h5"
        proc = subprocess.Popen([sys.executable, "-c", script.replace("{out!r}", repr(str(out)))],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "start"
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline:  # its first checkpoint
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        resumed = ns.simulate(net, FAULTS, X, y, output=out, resume=True, **kw)
        assert _comparable(resumed) == _comparable(full)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")) == []


# --- an earlier result is protected ---------------------------------------------------------

def test_ctrl_c_in_a_rerun_keeps_the_earlier_complete_result(run_setup, tmp_path, monkeypatch):
    net, X, y = run_setup
    out = tmp_path / "run.h5"
    first = ns.simulate(net, FAULTS, X, y, output=out, **KW)
    _interrupted(monkeypatch, after_blocks=2)
    with pytest.raises(KeyboardInterrupt):
        ns.simulate(net, FAULTS, X, y, output=out, **dict(KW, seed=9))
    monkeypatch.undo()
    assert _comparable(load_result(out)) == _comparable(first)
    # ... and a complete rerun replaces it with its own complete result
    second = ns.simulate(net, FAULTS, X, y, output=out, **dict(KW, seed=9))
    assert _comparable(load_result(out)) == _comparable(second) != _comparable(first)


def test_an_interrupted_run_is_not_replaced_without_overwrite(run_setup, tmp_path, monkeypatch):
    net, X, y = run_setup
    out = tmp_path / "run.h5"
    _interrupted(monkeypatch, after_blocks=2)
    with pytest.raises(KeyboardInterrupt):
        ns.simulate(net, FAULTS, X, y, output=out, **KW)
    monkeypatch.undo()
    before = out.read_bytes()
    with pytest.raises(ValidationError, match="holds an interrupted run.*resume.*overwrite"):
        ns.simulate(net, FAULTS, X, y, output=out, **dict(KW, seed=5))
    assert out.read_bytes() == before
    fresh = ns.simulate(net, FAULTS, X, y, output=out, overwrite=True, **dict(KW, seed=5))
    assert _comparable(load_result(out)) == _comparable(fresh)
    with pytest.raises(ValidationError, match="give one of them"):
        ns.simulate(net, FAULTS, X, y, output=out, overwrite=True, resume=True, **KW)


def test_a_file_that_is_not_a_run_file_is_not_replaced(run_setup, tmp_path):
    net, X, y = run_setup
    out = tmp_path / "precious.h5"
    out.write_bytes(b"someone's thesis data")
    with pytest.raises(ValidationError, match="not a readable neurosim run file.*overwrite"):
        ns.simulate(net, FAULTS, X, y, output=out, **KW)
    assert out.read_bytes() == b"someone's thesis data"
    assert main(["simulate", "--samples", "3", "-o", str(out), "--no-progress"]) == 2
    assert main(["simulate", "--samples", "3", "-o", str(out), "--no-progress",
                 "--overwrite"]) == 0
    assert load_result(out).n_samples == 3


# --- nothing corrupt or foreign is resumed ---------------------------------------------------

@pytest.fixture()
def checkpoint(run_setup, tmp_path, monkeypatch):
    net, X, y = run_setup
    out = tmp_path / "run.h5"
    _interrupted(monkeypatch, after_blocks=2)
    with pytest.raises(KeyboardInterrupt):
        ns.simulate(net, FAULTS, X, y, output=out, **KW)
    monkeypatch.undo()
    return out


@pytest.mark.parametrize("change, named", [
    (dict(seed=5), "another seed"),
    (dict(faults=ns.NeuronCrash(0.03)), "another fault model"),
    (dict(net=ns.Network.random([6, 9, 7, 4], "tanh", seed=4)), "another network"),
    (dict(X_shift=1e-3), "another data"),
    (dict(n_samples=41), "another number of samples"),
    (dict(metric="l2"), "another metric"),
])
def test_resume_refuses_another_run_naming_what_differs(run_setup, checkpoint, change, named):
    net, X, y = run_setup
    kw = dict(KW)
    net = change.pop("net", net)
    faults = change.pop("faults", FAULTS)
    X = X + change.pop("X_shift", 0.0)
    kw.update(change)
    before = checkpoint.read_bytes()
    with pytest.raises(ValidationError, match=f"Cannot resume .*{named}"):
        ns.simulate(net, faults, X, y, output=checkpoint, resume=True, **kw)
    assert checkpoint.read_bytes() == before


def _flip_in_state(path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    at = raw.find(old)
    assert at >= 0
    path.write_bytes(raw[:at] + new + raw[at + len(old):])


def test_resume_refuses_a_flipped_byte(run_setup, checkpoint):
    net, X, y = run_setup
    with h5py.File(checkpoint, "r") as f:
        n_pairs = json.loads(f["state"].attrs["stats"])["n_pairs"]
    text = f'"n_pairs": {n_pairs}'.encode()
    _flip_in_state(checkpoint, text, text[:-1] + bytes([text[-1] ^ 0x01]))
    with pytest.raises(FileFormatError, match="bytes do not match the file's checksum"):
        ns.simulate(net, FAULTS, X, y, output=checkpoint, resume=True, **KW)
    assert main(["simulate", "--samples", "3", "-o", str(checkpoint), "--resume",
                 "--no-progress"]) == 2


@pytest.mark.parametrize("edit, why", [
    (lambda s: s.update(n_pairs=s["n_pairs"] + 900), "n_pairs"),  # a block counted twice
    (lambda s: s.update(blocks=[[0, 99]]), "block range"),
    (lambda s: s.update(n_failures=-1), "n_failures"),
    (lambda s: s.update(layer_failures=s["layer_failures"][:-1]), "wrong length"),
    (lambda s: s.update(blocks="all"), "blocks"),
    (lambda s: s.pop("n_correct"), "n_correct"),
])
def test_a_checkpoint_whose_state_does_not_add_up_is_refused(run_setup, checkpoint, edit, why):
    """A state written with a valid checksum (a bug, or a file made by hand) is still checked
    against this run's blocks before it is resumed."""
    net, X, y = run_setup
    with h5py.File(checkpoint, "r+") as f:
        state = json.loads(f["state"].attrs["stats"])
        edit(state)
        f["state"].attrs["stats"] = json.dumps(state)
        digest.sign(f)
    digest.seal(checkpoint)
    with pytest.raises(FileFormatError, match=f"does not add up.*{why}"):
        ns.simulate(net, FAULTS, X, y, output=checkpoint, resume=True, **KW)


def test_a_checkpoint_without_its_checksums_is_refused(run_setup, checkpoint, tmp_path):
    net, X, y = run_setup
    with h5py.File(checkpoint, "r+") as f:
        del f.attrs[digest.DIGEST_ATTR]
    digest.seal(checkpoint)
    with pytest.raises(FileFormatError, match="has no checksum"):
        ns.simulate(net, FAULTS, X, y, output=checkpoint, resume=True, **KW)
    # The same file without its user block (the seal): h5py copies it into a plain file.
    plain = tmp_path / "plain.h5"
    with h5py.File(checkpoint, "r") as src, h5py.File(plain, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy("state", dst)
    with pytest.raises(FileFormatError, match="carries a seal.*has none"):
        ns.simulate(net, FAULTS, X, y, output=plain, resume=True, **KW)


def test_a_damaged_seal_is_refused_before_hdf5_reads_the_file(checkpoint, monkeypatch):
    raw = bytearray(checkpoint.read_bytes())
    raw[3] ^= 0x20  # inside the seal's marker
    checkpoint.write_bytes(bytes(raw))
    monkeypatch.setattr(h5py, "File", lambda *a, **k: pytest.fail("HDF5 opened a damaged file"))
    with pytest.raises(FileFormatError, match="seal.*is damaged"):
        load_result(checkpoint)


@pytest.mark.parametrize("stop_at", range(1, 6))
def test_ctrl_c_while_a_checkpoint_is_written_then_resume(run_setup, tmp_path, monkeypatch,
                                                          stop_at):
    """The interrupt lands inside a checkpoint write (between the data and the checksum):
    the file holds the previous checkpoint or the next one, and resumes to the same numbers."""
    net, X, y = run_setup
    full = ns.simulate(net, FAULTS, X, y, **KW)
    out = tmp_path / "run.h5"
    real, calls = digest.sign, {"n": 0}

    def sign(f):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        real(f)

    monkeypatch.setattr(digest, "sign", sign)
    with pytest.raises(KeyboardInterrupt):
        ns.simulate(net, FAULTS, X, y, output=out, **KW)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if p.name != "run.h5"] == []
    resumed = ns.simulate(net, FAULTS, X, y, output=out, resume=True, **KW)
    assert _comparable(resumed) == _comparable(full)


# --- nothing computed is lost ----------------------------------------------------------------

def test_outputs_are_checked_before_any_work(run_setup, tmp_path, monkeypatch):
    net, X, y = run_setup
    monkeypatch.setattr("neurosim.backends.numba.NumbaBackend.clean_cache",
                        lambda *a: pytest.fail("work started before the output was checked"))
    (tmp_path / "folder.h5").mkdir()
    for bad, why in ((tmp_path / "folder.h5", "is a folder"),
                     (tmp_path / "missing" / "run.h5", "does not exist"),
                     ("/proc/run.h5", "does not take new files")):
        with pytest.raises(ValidationError, match=why):
            ns.simulate(net, FAULTS, X, y, output=bad, **KW)
    for argv in (["simulate", "-o", str(tmp_path / "folder.h5")],
                 ["certify", "--delta", "0.05", "-o", "/proc/cert.json"],
                 ["certify", "--delta", "0.05", "--plot", str(tmp_path / "no" / "p.png")],
                 ["map", "-o", str(tmp_path / "folder.h5")]):
        monkeypatch.setattr("neurosim.cli.load_model_arg",
                            lambda args: pytest.fail("the model was loaded before -o was checked"))
        assert main(argv) == 2


def test_a_result_that_cannot_be_written_is_still_returned_and_printed(run_setup, tmp_path,
                                                                        monkeypatch, capsys):
    net, X, y = run_setup
    full = ns.simulate(net, FAULTS, X, y, **KW)
    real = ns.simulation.write_run_file

    def disk_full(path, config, state, result=None, chips=None):
        if result is not None:
            raise OSError(28, "No space left on device")
        real(path, config, state, result, chips)

    monkeypatch.setattr("neurosim.simulation.write_run_file", disk_full)
    with pytest.raises(ResultNotSavedError, match="could not be written.*No space left") as err:
        ns.simulate(net, FAULTS, X, y, output=tmp_path / "run.h5", overwrite=True, **KW)
    assert _comparable(err.value.result) == _comparable(full)
    code = main(["simulate", "--samples", "5", "-o", str(tmp_path / "cli.h5"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert "failure rate" in captured.out and "results saved" not in captured.out
    assert "could not be written" in captured.err and len(captured.err.strip().splitlines()) == 1


# --- labels, seeds, sample counts and fault specs --------------------------------------------

@pytest.mark.parametrize("label", [10, -1])
def test_labels_outside_the_outputs_are_refused_everywhere(tmp_path, label, capsys):
    X, y = ns.load_digits_test()
    y = y[:60].copy()
    y[7] = label
    data = tmp_path / "labels.npz"
    np.savez(data, X=X[:60], y=y)
    net = ns.load_digits_model()
    for call in (lambda: ns.certify(net, ns.NeuronCrash(1e-3), X[:60], y, delta=0.05),
                 lambda: ns.certify(net, ns.NeuronCrash(1e-3), X[:60], y, delta=0.05,
                                    metric="loss", eps=0.1),
                 lambda: ns.simulate(net, ns.NeuronCrash(1e-3), X[:60], y, n_samples=2)):
        with pytest.raises(ValidationError, match=rf"class indices in \[0, 9\].*y\[7\] = {label}"):
            call()
    for argv in (["map", "--data", str(data)], ["certify", "--delta", "0.05", "--data", str(data)],
                 ["certify", "--delta", "0.05", "--metric", "loss", "--eps", "0.1", "--data",
                  str(data)]):
        capsys.readouterr()
        assert main(argv) == 2
        assert "class indices" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["simulate", "--seed", "-1"], "--seed"),
    (["certify", "--delta", "0.05", "--seed", "-1"], "--seed"),
    (["simulate", "--seed", str(2 ** 64)], "below 2\\*\\*63"),
    (["simulate", "--samples", "1000000000000"], "at most 1e9"),
    (["simulate", "--fault", "crash:p=1e-3,layers=0,0"], "twice"),
    (["simulate", "--fault", "crash:p=1e-3,,,"], "empty field"),
    (["simulate", "--fault", "crash:p=1e-3,semantics=stuck,value=1e300"], r"\|value\| <= 1e\+06"),
    (["simulate", "--fault", "crash:p=1e-3,p=2e-3"], "twice"),
    (["simulate", "--fault", "crash:p=nan"], "'p'"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("neurosim.backends.numba.NumbaBackend.clean_cache",
                        lambda *a: pytest.fail("work started before the flags were checked"))
    assert main(argv + ["--no-progress"] if argv[0] == "simulate" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(message, err), err


# --- signals and pipes -----------------------------------------------------------------------

def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "neurosim", "profiles"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 141), err
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    # A reader that goes away before the first line, as `| true` does.
    done = subprocess.run(f"{sys.executable} -m neurosim profiles --json | true", shell=True,
                          capture_output=True, timeout=60)
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("neurosim.cli.cmd_profiles", interrupted)
    import neurosim.cli as cli

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["profiles"].set_defaults(func=interrupted)
    assert main(["profiles"]) == 130
    assert capsys.readouterr().err.strip() == "neurosim profiles: interrupted"


# --- memory does not grow with the number of samples -----------------------------------------

_PEAK = textwrap.dedent("""
    import resource, sys
    import numpy as np, neurosim as ns
    X, y = ns.load_digits_test()
    mapping = ns.map_network(ns.load_digits_model(), "loihi2")
    n, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "certify":  # n conditional draws per input in each sampled stratum
        ns.certify(mapping, ns.NeuronCrash(2e-3), X, y, delta=0.05, n_samples=n,
                   work_budget=100 * n * len(X), seed=1)
    else:
        ns.simulate(mapping, ns.NeuronCrash(2e-3) + ns.SynapseStuck(1e-3, 1e-3), X, y,
                    n_samples=n, mode=mode, seed=1)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)
    print(next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:")))
    """)


@pytest.mark.parametrize("mode, sizes", [("transient", (100, 1000)), ("permanent", (100, 1000)),
                                         ("certify", (20, 200))])
def test_peak_memory_does_not_grow_with_the_samples(mode, sizes):
    """Resident memory at 10x the samples stays within 10 % (+ 20 MiB) of the smaller run:
    blocks are computed and merged one at a time, and only counts are kept."""
    peaks = []
    for n in sizes:
        done = subprocess.run([sys.executable, "-c", _PEAK, str(n), mode], capture_output=True,
                              text=True, timeout=600, check=True)
        peaks.append(int(done.stdout.split()[-1]) * 1024)  # ru_maxrss is in KiB on Linux
    print(f"peak resident memory ({mode}): {peaks[0] / 2**20:.0f} MiB at {sizes[0]} draws per "
          f"input, {peaks[1] / 2**20:.0f} MiB at {sizes[1]}")
    assert peaks[1] <= 1.10 * peaks[0] + 20 * 2 ** 20, peaks


def test_train_refuses_negative_and_out_of_range_labels():
    pytest.importorskip("torch")
    from neurosim.train import train

    X, y = ns.load_digits_test()
    bad = y.copy()
    bad[3] = -1
    with pytest.raises(ValidationError, match="integers >= 0.*smallest -1"):
        train(X, bad, hidden=(8,), epochs=1)
    with pytest.raises(ValidationError, match=r"y_val must be class indices in \[0, 9\]"):
        train(X, y, hidden=(8,), epochs=1, X_val=X, y_val=np.r_[y[:-1], 12])
