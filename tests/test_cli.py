"""The command line: output, JSON fields, exit codes and error messages."""

import json
import subprocess
import sys

import numpy as np
import pytest

import neurosim as ns
from neurosim.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profiles_lines(capsys):
    code, out, _ = run_cli(capsys, "profiles")
    assert code == 0
    for name in ("loihi2", "loihi1", "truenorth", "spinnaker2", "dynapse2", "rram_crossbar"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name


def test_profiles_json(capsys):
    code, out, _ = run_cli(capsys, "profiles", "--json")
    assert code == 0
    profiles = json.loads(out)
    assert [p["name"] for p in profiles][0] == "loihi2"
    for p in profiles:
        for key in ("name", "cores_per_chip", "neurons_per_core", "max_fan_in", "weight_bits"):
            assert key in p
        assert set(p["fault_rates"]) == {
            "neuron_crash", "synapse_stuck_at_zero", "synapse_stuck_at_max",
            "weight_bit_flip", "core_failure", "neuron_threshold_mismatch",
            "neuron_leak_mismatch"}
    dynapse = next(p for p in profiles if p["name"] == "dynapse2")
    assert dynapse["fault_rates"]["neuron_threshold_mismatch"] == pytest.approx(0.1)
    rram = next(p for p in profiles if p["name"] == "rram_crossbar")
    assert rram["fault_rates"]["synapse_stuck_at_zero"] == pytest.approx(0.0175)
    assert rram["fault_rates"]["synapse_stuck_at_max"] == pytest.approx(0.0904)


def test_map_bundled_table(capsys):
    code, out, _ = run_cli(capsys, "map", "--profile", "loihi2", "--data", "digits")
    assert code == 0
    assert "fits on one chip" in out
    assert "accuracy: float" in out


def test_map_json_and_output(capsys, tmp_path):
    target = tmp_path / "m.h5"
    code, out, _ = run_cli(capsys, "map", "--profile", "spinnaker2", "--json", "-o", str(target))
    assert code == 0
    data = json.loads(out)
    assert data["fits"] is True and data["chips_needed"] == 1
    assert data["cores_used"] == len(data["cores"]) == 5
    assert [layer["index"] for layer in data["layers"]] == [1, 2, 3]
    assert [layer["fan_in"] for layer in data["layers"]] == [64, 256, 256]
    assert sum(layer["cores"] for layer in data["layers"]) == data["cores_used"]
    from neurosim.mapping import load_mapping

    assert load_mapping(target).cores_used == 5


def test_map_user_model_file(capsys, tmp_path):
    net = ns.Network.random([5, 7, 3], seed=1)
    path = tmp_path / "net.npz"
    ns.save_network(net, path)
    code, out, _ = run_cli(capsys, "map", str(path), "--profile", "truenorth", "--json")
    assert code == 0
    assert json.loads(out)["layers"][0]["n_neurons"] == 7


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["map", "missing.h5"], "missing.h5"),
        (["map", "--profile", "loihi3"], "Did you mean 'loihi2'"),
        (["map", "--profile", "dynapse2"], "max_fan_in"),
        (["map", "--data", "nowhere.npz"], "nowhere.npz"),
    ],
)
def test_bad_input_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


def test_nan_weights_exit_2(capsys, tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, W0=np.array([[np.nan, 1.0]]), b0=np.zeros(1), activations=np.array(["identity"]))
    code, _, err = run_cli(capsys, "map", str(path))
    assert code == 2 and "nan.npz" in err and "finite" in err


def test_shape_mismatch_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, W0=np.ones((3, 2)), b0=np.zeros(3), W1=np.ones((1, 4)), b1=np.zeros(1),
             activations=np.array(["relu", "identity"]))
    code, _, err = run_cli(capsys, "map", str(path))
    assert code == 2 and "bad.npz" in err and "chain" in err


def test_unknown_activation_exit_2(capsys, tmp_path):
    path = tmp_path / "act.npz"
    np.savez(path, W0=np.ones((1, 2)), b0=np.zeros(1), activations=np.array(["mish"]))
    code, _, err = run_cli(capsys, "map", str(path))
    assert code == 2 and "mish" in err and "relu" in err


def test_data_width_mismatch_exit_2(capsys, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((4, 3)), y=np.zeros(4, dtype=int))
    code, _, err = run_cli(capsys, "map", "--data", str(path))
    assert code == 2 and "d.npz" in err and "64" in err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "neurosim", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for cmd in ("profiles", "map", "demo"):
        assert cmd in result.stdout


def test_argparse_error_exit_2():
    result = subprocess.run([sys.executable, "-m", "neurosim", "map", "--bogus"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "--bogus" in result.stderr


def test_readme_python_example(capsys):
    """The README's Python example runs as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "fits on one chip" in out and "quantized_accuracy" in out
