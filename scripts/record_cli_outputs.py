"""Record the JSON of `neurosim demo` and of a set of CLI runs, or compare two recordings.

A refactoring must leave the numbers of a seed unchanged. Record before the change, record
after it, and compare:

    python scripts/record_cli_outputs.py record /tmp/before
    ... change the code ...
    python scripts/record_cli_outputs.py record /tmp/after
    python scripts/record_cli_outputs.py compare /tmp/before /tmp/after [--rtol 1e-12]

Timings (``elapsed_s``, ``seconds``) are dropped; everything else must be equal. ``compare``
lists every path that differs and exits 1 if any does; with ``--rtol`` floats that differ by
at most that relative amount (round-off) are counted apart and do not fail. Keys that only
the newer recording has are listed as new.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: name -> neurosim arguments (each prints JSON with --json).
RUNS = {
    "sim_crash_silent": "simulate --fault crash:p=1e-3 --samples 200 --json",
    "sim_crash_paper": "simulate --fault crash:p=1e-3,semantics=paper --samples 200 --json",
    "sim_crash_stuck_input": "simulate --fault crash:p=2e-3,layers=0,1,semantics=stuck,value=1.5 "
                             "--samples 100 --json",
    # (neurosim 0.1 could not parse per-layer rates on the command line)
    "sim_crash_per_layer": "simulate --fault crash:p=1e-3/0/2e-3 --samples 100 --json",
    "sim_stuck": "simulate --fault stuck:p0=1e-4,p1=1e-4 --samples 100 --json",
    "sim_bitflip": "simulate --fault bitflip:p=1e-5 --samples 100 --json",
    "sim_core": "simulate --fault core:p=1e-2 --samples 200 --json",
    "sim_permanent": "simulate --fault-mode permanent --fault crash:p=1e-3 --fault core:p=1e-3 "
                     "--samples 100 --json",
    "sim_stratified": "simulate --estimator stratified --fault crash:p=1e-4 --json",
    "sim_auto_profile": "simulate --estimator auto --samples 100 --json",
    "sim_crossbar": "simulate --profile rram_crossbar --fault stuck:p0=1e-4,p1=1e-4 "
                    "--fault core:p=1e-2 --samples 50 --json",
    "sim_linf_float": "simulate --metric linf --eps 1.0 --fault crash:p=1e-3 --float --samples 100 --json",
    "sim_loss": "simulate --metric loss --eps 0.1 --fault crash:p=1e-3 --samples 100 --json",
    "certify_default": "certify --delta 0.05 --json",
    "certify_linf": "certify --metric linf --eps 2 --delta 0.1 --fault crash:p=1e-3 --json",
    "certify_stuck": "certify --delta 0.1 --fault stuck:p0=1e-6,p1=1e-6 --fault crash:p=1e-4 --json",
}
TIMINGS = {"elapsed_s", "seconds"}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _neurosim(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurosim", *args], cwd=cwd, text=True,
                          capture_output=True)


def record(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, args in RUNS.items():
            done = _neurosim(args.split(), scratch)
            if done.returncode == 2:  # bad input: record the one-line error
                data = {"_error": done.stderr.strip().splitlines()[-1]}
            elif done.returncode not in (0, 1):
                raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr}")
            else:
                data = _strip(json.loads(done.stdout))
            data["_exit_code"] = done.returncode
            (folder / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True))
            print(f"{name}: exit {done.returncode}", flush=True)
        done = _neurosim(["simulate", "--fault", "crash:p=1e-3", "--samples", "60", "-o",
                          str(scratch / "run.h5"), "--json"], scratch)
        if done.returncode != 0:
            raise SystemExit(f"sim_file: exit {done.returncode}\n{done.stderr}")
        (folder / "sim_file.json").write_text(json.dumps(_strip(json.loads(done.stdout)), indent=1,
                                                         sort_keys=True))
        done = _neurosim(["demo", "--out", str(scratch / "demo"), "--samples", "500"], scratch)
        if done.returncode != 0:
            raise SystemExit(f"demo: exit {done.returncode}\n{done.stderr}")
        demo = json.loads((scratch / "demo" / "demo.json").read_text())
        (folder / "demo.json").write_text(json.dumps(_strip(demo), indent=1, sort_keys=True))
        print("demo: exit 0")


def _diff(a, b, path: str, out: list, rounding: list, rtol: float) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{path}.{key}: missing after the change")
            elif key not in a:
                print(f"(new key {path}.{key})")
            else:
                _diff(a[key], b[key], f"{path}.{key}", out, rounding, rtol)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (u, v) in enumerate(zip(a, b)):
            _diff(u, v, f"{path}[{i}]", out, rounding, rtol)
    elif (isinstance(a, float) and isinstance(b, float) and a != b
          and abs(a - b) <= rtol * max(abs(a), abs(b))):
        rounding.append(f"{path}: {a!r} -> {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} -> {b!r}")


def compare(before: Path, after: Path, rtol: float = 0.0) -> int:
    problems, rounding = [], []
    for file in sorted(before.glob("*.json")):
        other = after / file.name
        if not other.exists():
            problems.append(f"{file.name}: missing in {after}")
            continue
        _diff(json.loads(file.read_text()), json.loads(other.read_text()), file.stem, problems,
              rounding, rtol)
    for line in problems:
        print(line)
    if rounding:
        print(f"{len(rounding)} float(s) differ by at most rtol {rtol:g} (round-off), e.g. "
              f"{rounding[0]}")
    print(f"{len(problems)} difference(s) in {len(list(before.glob('*.json')))} files")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif len(sys.argv) in (4, 6) and sys.argv[1] == "compare":
        rtol = float(sys.argv[5]) if len(sys.argv) == 6 and sys.argv[4] == "--rtol" else 0.0
        raise SystemExit(compare(Path(sys.argv[2]), Path(sys.argv[3]), rtol))
    else:
        raise SystemExit(__doc__)
