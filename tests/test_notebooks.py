"""The notebooks in notebooks/ run (small mode) and are committed without outputs."""

import json
import os
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = {"error_decay", "certify_vs_simulate", "regularizer", "chip_mapping", "conv_error_decay",
            "crossbar_analog"}


def test_expected_notebooks_present():
    assert EXPECTED <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}: cell {i} has outputs; clear them"
        assert cell.get("execution_count") is None, f"{path.name}: cell {i} has an execution count"
    assert "SMALL = os.environ.get(\"NEUROSIM_NOTEBOOK_SMALL\") == \"1\"" in "".join(
        "".join(c["source"]) for c in nb["cells"]), f"{path.name}: no SMALL switch cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    pytest.importorskip("nbclient", reason="executing the notebooks needs nbclient (extra 'dev')")
    pytest.importorskip("nbformat", reason="executing the notebooks needs nbformat (extra 'dev')")
    pytest.importorskip("ipykernel", reason="executing the notebooks needs ipykernel (extra 'dev')")
    pytest.importorskip("torch", reason="the training notebooks need PyTorch (extra 'torch')")
    pytest.importorskip("sklearn", reason="the training data come with scikit-learn (extra 'dev')")
    from neurosim.experiments import execute_notebook

    # execute_notebook raises CellExecutionError on the first failing cell (fail on any error).
    nb = execute_notebook(path, tmp_path, small=True, timeout=120)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # small mode writes no figures or results
    assert not (tmp_path / "figures").exists()
    assert os.environ.get("NEUROSIM_NOTEBOOK_SMALL") != "1"  # restored after the run
