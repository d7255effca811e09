"""The scripts in examples/ run as they are (small mode) and write their plots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDS = {"pytorch_cnn.py": ["torch"], "keras_cnn.py": ["keras", "torch"],
         "onnx_cnn.py": ["onnx", "torch"], "custom_profile.py": []}


def test_every_example_is_listed():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(NEEDS)
    readme = (EXAMPLES / "README.md").read_text()
    assert all(name in readme for name in NEEDS)


@pytest.mark.parametrize("script", sorted(NEEDS))
def test_example_runs(script, tmp_path):
    for module in NEEDS[script]:
        pytest.importorskip(module)
    env = {**os.environ, "NEUROSIM_EXAMPLE_SMALL": "1", "KERAS_BACKEND": "torch",
           "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = script.split("_")[0]
    assert (tmp_path / f"{name}_delta_vs_eps.png").stat().st_size > 1000
    assert "CERTIFIED" in proc.stdout or "NOT certified" in proc.stdout
    assert "failure rate" in proc.stdout
