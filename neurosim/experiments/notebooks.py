"""Running the notebooks: ``python -m neurosim.experiments --run-notebooks`` (``make notebooks``)."""

from __future__ import annotations

import os
import time

from neurosim.errors import MissingExtraError, NeurosimFileNotFoundError

__all__ = ["notebook_kernel_manager", "execute_notebook", "run_notebooks", "machine_cores",
           "write_timings", "main"]

#: The backend the kernel gets: figures become ``image/png`` outputs and no display is needed.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

TIMINGS_FILE = "timings.md"


def notebook_kernel_manager(folder):
    """A Jupyter kernel manager whose ``python3`` kernel runs this interpreter.

    The kernel spec is written into ``folder`` (a scratch directory) and only that directory is
    searched, so a stale user-level ``python3`` spec pointing at another Python cannot be picked
    up and nothing is installed into the environment.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = os.path.join(os.fspath(folder), "kernels")
    write_kernel_spec(os.path.join(kernels, "python3"))
    specs = KernelSpecManager(kernel_dirs=[kernels], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _imports():
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        raise MissingExtraError("Running the notebooks needs nbclient, nbformat and ipykernel: "
                                "pip install nbclient nbformat ipykernel") from None
    return nbformat, NotebookClient


def _execute(nb, cwd, small: bool, timeout: int):
    """Execute ``nb`` in place (outputs added), ``cwd`` as the kernel's working directory."""
    import tempfile

    _, NotebookClient = _imports()
    previous = {k: os.environ.get(k) for k in ("NEUROSIM_NOTEBOOK_SMALL", "MPLBACKEND")}
    os.environ["NEUROSIM_NOTEBOOK_SMALL"] = "1" if small else "0"
    # The kernel inherits the environment: the inline backend (also ipykernel's own default)
    # rather than whatever MPLBACKEND the caller has (Agg would leave no figure in the outputs).
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        with tempfile.TemporaryDirectory(prefix="neurosim-kernel-") as scratch:
            client = NotebookClient(nb, timeout=int(timeout), km=notebook_kernel_manager(scratch),
                                    resources={"metadata": {"path": os.fspath(cwd)}})
            # cleanup_kc: nbclient leaves a kernel it was handed running (until this process
            # exits), so one idle kernel per notebook would pile up.
            client.execute(cleanup_kc=True)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def execute_notebook(path, cwd, small: bool = False, timeout: int = 3600):
    """Execute one notebook with ``cwd`` as working directory and return the executed copy
    (with its outputs: printed text and the figures inline as ``image/png`` display data).

    ``NEUROSIM_NOTEBOOK_SMALL`` is set to ``1`` (``small``) or ``0`` for the kernel and matplotlib
    uses the inline backend (no display needed); the file at ``path`` is not modified. Raises
    ``nbclient.exceptions.CellExecutionError`` on a failing cell.
    """
    nbformat, _ = _imports()
    nb = nbformat.read(os.fspath(path), as_version=4)
    return _execute(nb, cwd, small, timeout)


def machine_cores() -> int:
    """The CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read_timings(path) -> dict:
    rows = {}
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and cells[0].endswith(".ipynb"):
                rows[cells[0]] = cells[1:]
    return rows


def write_timings(path, timings: dict, cores: int | None = None) -> None:
    """Write (or update) the markdown table ``path``: notebook, seconds, cores, date.

    ``timings`` maps notebook file names to wall seconds; rows of notebooks not in ``timings``
    (from an earlier run of other notebooks) are kept.
    """
    cores = machine_cores() if cores is None else int(cores)
    today = time.strftime("%Y-%m-%d")
    rows = _read_timings(path)
    for name, seconds in timings.items():
        rows[name] = [f"{seconds:.0f}", str(cores), today]
    lines = ["# Notebook running times",
             "",
             "Wall time of each notebook at full size, as measured by `make notebooks`",
             "(`python -m neurosim.experiments --run-notebooks`); cores: the CPU cores the run "
             "could use.",
             "",
             "| notebook | seconds | cores | date |",
             "|---|---:|---:|---|"]
    lines += [f"| {name} | {' | '.join(rest)} |" for name, rest in sorted(rows.items())]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def run_notebooks(folder="notebooks", small: bool = False, timeout: int = 3600,
                  names=None, out=None) -> list[str]:
    """Execute every notebook of ``folder`` with ``folder`` as working directory (at full size
    the notebooks write figures and results to ``folder/figures``). The notebook files are not
    modified: they stay without outputs.

    Each notebook's wall time is printed. At full size (or wherever ``out`` says) the executed
    copy, with its outputs and inline figures, is written to ``out/<name>.ipynb`` (also the
    partial copy of a notebook that fails) and the times to ``out/timings.md``; ``out`` defaults
    to ``folder/figures`` at full size and to nothing in small mode (which writes no files).

    Needs ``nbclient``, ``nbformat`` and ``ipykernel`` (extra ``dev``). Returns the names run.
    """
    import pathlib

    nbformat, _ = _imports()
    folder = pathlib.Path(folder)
    paths = sorted(folder.glob("*.ipynb"))
    if names:
        wanted = set(names)
        paths = [q for q in paths if q.stem in wanted or q.name in wanted]
    if not paths:
        raise NeurosimFileNotFoundError(f"No notebooks to run in {str(folder)!r}.")
    if out is None and not small:
        out = folder / "figures"
    if out is not None:
        out = pathlib.Path(out)
        out.mkdir(parents=True, exist_ok=True)
    cores = machine_cores()
    done, timings = [], {}
    for path in paths:
        nb = nbformat.read(os.fspath(path), as_version=4)
        started = time.perf_counter()
        try:
            _execute(nb, folder, small, timeout)
        except BaseException:
            seconds = time.perf_counter() - started
            if out is not None:
                nbformat.write(nb, os.fspath(out / path.name))
                print(f"{path.name}: FAILED after {seconds:.0f} s; the executed copy up to the "
                      f"failing cell is {out / path.name}", flush=True)
            else:
                print(f"{path.name}: FAILED after {seconds:.0f} s", flush=True)
            raise
        seconds = time.perf_counter() - started
        timings[path.name] = seconds
        if out is not None:
            nbformat.write(nb, os.fspath(out / path.name))
            write_timings(out / TIMINGS_FILE, {path.name: seconds}, cores)
        print(f"{path.name}: ok ({seconds:.0f} s)", flush=True)
        done.append(path.name)
    total = sum(timings.values())
    where = f"; executed copies and {TIMINGS_FILE} in {out}" if out is not None else ""
    print(f"{len(done)} notebooks in {total:.0f} s ({total / 60:.1f} min) on {cores} cores{where}",
          flush=True)
    return done


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m neurosim.experiments",
                                     description="Run the neurosim notebooks / experiments.")
    parser.add_argument("--run-notebooks", action="store_true",
                        help="execute every notebook in --folder (figures, executed copies and "
                             "timings.md to FOLDER/figures)")
    parser.add_argument("--folder", default="notebooks")
    parser.add_argument("--small", action="store_true", help="small mode (NEUROSIM_NOTEBOOK_SMALL=1)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--out", default=None,
                        help="folder for the executed copies and timings.md (default: "
                             "FOLDER/figures at full size, none in small mode)")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    args = parser.parse_args(argv)
    if not args.run_notebooks:
        parser.print_help()
        return 2
    run_notebooks(args.folder, small=args.small, timeout=args.timeout, names=args.names or None,
                  out=args.out)
    return 0
