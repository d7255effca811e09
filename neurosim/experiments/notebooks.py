"""Running the notebooks: ``python -m neurosim.experiments --run-notebooks`` (``make notebooks``)."""

from __future__ import annotations

import os
import time

from neurosim.errors import MissingExtraError, NeurosimFileNotFoundError

__all__ = ["notebook_kernel_manager", "execute_notebook", "run_notebooks", "main"]


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


def execute_notebook(path, cwd, small: bool = False, timeout: int = 3600):
    """Execute one notebook with ``cwd`` as working directory and return the executed copy.

    ``NEUROSIM_NOTEBOOK_SMALL`` is set to ``1`` (``small``) or ``0`` for the kernel; the file at
    ``path`` is not modified. Raises ``nbclient.exceptions.CellExecutionError`` on a failing cell.
    """
    import tempfile

    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        raise MissingExtraError("Running the notebooks needs nbclient, nbformat and ipykernel: "
                                "pip install nbclient nbformat ipykernel") from None
    nb = nbformat.read(os.fspath(path), as_version=4)
    previous = {k: os.environ.get(k) for k in ("NEUROSIM_NOTEBOOK_SMALL", "MPLBACKEND")}
    os.environ["NEUROSIM_NOTEBOOK_SMALL"] = "1" if small else "0"
    os.environ["MPLBACKEND"] = "Agg"  # the kernel inherits it: no display needed
    try:
        with tempfile.TemporaryDirectory(prefix="neurosim-kernel-") as scratch:
            client = NotebookClient(nb, timeout=int(timeout), km=notebook_kernel_manager(scratch),
                                    resources={"metadata": {"path": os.fspath(cwd)}})
            client.execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def run_notebooks(folder="notebooks", small: bool = False, timeout: int = 3600,
                  names=None) -> list[str]:
    """Execute every notebook of ``folder`` with ``folder`` as working directory (at full size
    the notebooks write figures and results to ``folder/figures``). The notebook files are not
    modified: they stay without outputs.

    Needs ``nbclient``, ``nbformat`` and ``ipykernel`` (extra ``dev``). Returns the names run.
    """
    import pathlib

    folder = pathlib.Path(folder)
    paths = sorted(folder.glob("*.ipynb"))
    if names:
        wanted = set(names)
        paths = [q for q in paths if q.stem in wanted or q.name in wanted]
    if not paths:
        raise NeurosimFileNotFoundError(f"No notebooks to run in {str(folder)!r}.")
    done = []
    for path in paths:
        started = time.perf_counter()
        execute_notebook(path, folder, small=small, timeout=timeout)
        print(f"{path.name}: ok ({time.perf_counter() - started:.0f} s)", flush=True)
        done.append(path.name)
    return done


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m neurosim.experiments",
                                     description="Run the neurosim notebooks / experiments.")
    parser.add_argument("--run-notebooks", action="store_true",
                        help="execute every notebook in --folder (figures to FOLDER/figures)")
    parser.add_argument("--folder", default="notebooks")
    parser.add_argument("--small", action="store_true", help="small mode (NEUROSIM_NOTEBOOK_SMALL=1)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    args = parser.parse_args(argv)
    if not args.run_notebooks:
        parser.print_help()
        return 2
    run_notebooks(args.folder, small=args.small, timeout=args.timeout, names=args.names or None)
    return 0
