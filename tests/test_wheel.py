"""Build the wheel, install it in a fresh virtual environment outside the checkout and run it.

The editable install used for development can hide package data missing from the wheel (the
TOML profiles, the bundled model); this test cannot.
"""

import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = out.glob("neurosim_faults-*.whl")
    return path


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "neurosim/__init__.py",
        "neurosim/kernels/__init__.py",
        "neurosim/kernels/propagate.py",
        "neurosim/theory/__init__.py",
        "neurosim/theory/bounds.py",
        "neurosim/hw_profiles/__init__.py",
        "neurosim/hw_profiles/loihi2.toml",
        "neurosim/hw_profiles/rram_crossbar.toml",
        "neurosim/bundled/digits_mlp.h5",
        "neurosim/bundled/digits_test.npz",
    ):
        assert required in names, required
    assert not any(n.startswith(("kernels/", "hw_profiles/", "tests/")) for n in names)


def test_wheel_runs_outside_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    purelib = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # Install the wheel itself without its dependencies (no download), and make the
    # dependencies of the running environment importable through a .pth line. A plain path
    # line does not run the .pth files of that folder, so the editable neurosim stays hidden.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
         str(purelib), str(wheel)],
        check=True, capture_output=True,
    )
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]]
    (purelib / "_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    # The console script: pip --target does not write one, so call the entry point as
    # the generated script would.
    script = bindir / "neurosim"
    script.write_text(f"#!{python}\nimport sys\nfrom neurosim.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([str(python), "-c", "import neurosim; print(neurosim.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, env=env, check=True)
    assert str(purelib) in where.stdout, where.stdout

    result = subprocess.run([str(script), "profiles", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    # every built-in profile file made it into the wheel
    from neurosim.hardware import list_profiles

    assert sorted(p["name"] for p in json.loads(result.stdout)) == sorted(list_profiles())
    assert len(list_profiles()) == 7

    result = subprocess.run([str(script), "map", "--profile", "truenorth", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cores_used"] == 3
