"""The notebooks in notebooks/ run (small mode), show their figures inline and are committed
without outputs; ``run_notebooks`` keeps them so and writes the executed copies and timings."""

import base64
import json
import os
import pathlib
import re
import struct

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = {"paper_mnist", "error_decay", "certify_vs_simulate", "regularizer", "chip_mapping", "conv_error_decay",
            "crossbar_analog"}
# A figure shown inline at full size: the narrowest plot is 6.4 in at 120 dpi (768 px, a bit
# less after the inline backend's tight crop); matplotlib-inline's old 72 dpi would give 460 px.
MIN_INLINE_WIDTH_PX = 640


def _needs_kernel():
    for module, why in (("nbclient", "executing the notebooks needs nbclient (extra 'dev')"),
                        ("nbformat", "executing the notebooks needs nbformat (extra 'dev')"),
                        ("ipykernel", "executing the notebooks needs ipykernel (extra 'dev')"),
                        ("matplotlib", "the notebooks plot with matplotlib (extra 'viz')")):
        pytest.importorskip(module, reason=why)


def _source(nb) -> str:
    return "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _figures_shown(source: str) -> int:
    """How many figures the notebook shows: its ``show_figure(fig, "<file>.png")`` calls."""
    return len(re.findall(r"show_figure\(\w+, \"[^\"]+\.png\"\)", source))


def _inline_pngs(nb) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"])
            for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=lambda p: p.stem)
def executed(request, tmp_path_factory):
    """Each notebook executed once in small mode (shared by the tests that read its outputs)."""
    _needs_kernel()
    pytest.importorskip("torch", reason="the training notebooks need PyTorch (extra 'torch')")
    pytest.importorskip("sklearn", reason="the training data come with scikit-learn (extra 'dev')")
    from neurosim.experiments import execute_notebook

    path = request.param
    cwd = tmp_path_factory.mktemp(path.stem)
    # execute_notebook raises CellExecutionError on the first failing cell (fail on any error).
    nb = execute_notebook(path, cwd, small=True, timeout=120)
    return path, nb, cwd


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
    source = _source(nb)
    assert "SMALL = os.environ.get(\"NEUROSIM_NOTEBOOK_SMALL\") == \"1\"" in source, \
        f"{path.name}: no SMALL switch cell"
    assert "%matplotlib inline" in source, f"{path.name}: no %matplotlib inline"
    # viz's path= saves, switches to Agg and closes the figure: nothing would show inline.
    assert not re.search(r"viz\.plot_\w+\([^)]*path=", source), \
        f"{path.name}: pass the figure to show_figure instead of path= to viz"


def test_notebook_runs(executed):
    path, nb, cwd = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # small mode writes no figures or results
    assert not (cwd / "figures").exists()
    assert os.environ.get("NEUROSIM_NOTEBOOK_SMALL") != "1"  # restored after the run


def test_notebook_shows_figures_inline(executed):
    path, nb, _ = executed
    expected = _figures_shown(_source(nb))
    assert expected >= 1, f"{path.name}: shows no figure"
    pngs = _inline_pngs(nb)
    assert len(pngs) == expected, \
        f"{path.name}: {len(pngs)} inline image/png outputs for {expected} figures shown"
    widths = [_png_size(png)[0] for png in pngs]
    assert min(widths) >= MIN_INLINE_WIDTH_PX, f"{path.name}: inline figures shrunk: {widths} px"


def test_run_notebooks_writes_executed_copy_and_timings(tmp_path, capsys):
    _needs_kernel()
    import nbformat

    from neurosim.experiments.notebooks import machine_cores, run_notebooks

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)\nax.plot([0, 1], [1, 0])\n"
        "plt.show()\nimport os\nprint('kernel pid', os.getpid())")]
    committed = tmp_path / "tiny.ipynb"
    nbformat.write(nb, os.fspath(committed))
    before = committed.read_bytes()
    assert run_notebooks(tmp_path, timeout=60) == ["tiny.ipynb"]
    assert committed.read_bytes() == before  # the notebook itself stays without outputs
    copy = nbformat.read(os.fspath(tmp_path / "figures" / "tiny.ipynb"), as_version=4)
    pngs = _inline_pngs(copy)
    assert len(pngs) == 1 and _png_size(pngs[0])[0] >= MIN_INLINE_WIDTH_PX
    assert re.search(r"tiny\.ipynb: ok \(\d+ s\)", capsys.readouterr().out)
    # the kernel was shut down after the notebook, not left idle until this process exits
    text = "".join(o.get("text", "") for c in copy.cells for o in c.outputs)
    pid = int(re.search(r"kernel pid (\d+)", text).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    table = (tmp_path / "figures" / "timings.md").read_text(encoding="utf-8")
    assert "| notebook | seconds | cores | date |" in table
    row = re.search(r"^\| tiny\.ipynb \| (\d+) \| (\d+) \| \d{4}-\d\d-\d\d \|$", table, re.M)
    assert row and int(row.group(2)) == machine_cores()


def test_timings_table_keeps_other_rows(tmp_path):
    from neurosim.experiments.notebooks import write_timings

    table = tmp_path / "timings.md"
    write_timings(table, {"a.ipynb": 12.4, "b.ipynb": 30.0}, cores=2)
    write_timings(table, {"b.ipynb": 41.6}, cores=4)
    rows = [line for line in table.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and ".ipynb" in line]
    assert [r.split(" | ")[:3] for r in rows] == [["| a.ipynb", "12", "2"],
                                                   ["| b.ipynb", "42", "4"]]
