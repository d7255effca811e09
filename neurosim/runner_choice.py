"""The runner a call uses: :func:`get_runner` turns the ``runner=`` parameter (``"serial"``,
``"dask"``, a scheduler address, a :class:`~neurosim.runners.Runner` or a map-like callable)
into a runner, and :func:`runner_scope` closes the ones it made.

It lives apart from :mod:`neurosim.runners` because it knows every runner, the optional
:class:`~neurosim.dask_runner.DaskRunner` too, while each runner knows only the base class.
"""

from __future__ import annotations

import contextlib

from neurosim.errors import ValidationError
from neurosim.runners import SCHEDULER_SCHEMES, MapRunner, Runner, SerialRunner

__all__ = ["get_runner", "is_scheduler_address", "runner_scope"]


def get_runner(runner="serial", owner: str = "simulate") -> Runner:
    """A :class:`Runner` from ``"serial"``, ``"dask"`` (the scheduler in Dask's configuration),
    a scheduler address (``"tcp://HOST:8786"``), a Runner, or a map-like callable. A runner
    made here from a string is closed by :func:`runner_scope`; one passed in is left open."""
    if isinstance(runner, Runner):
        return runner
    if runner is None or runner == "serial":
        return SerialRunner()
    if runner == "dask" or is_scheduler_address(runner):
        from neurosim.dask_runner import DaskRunner

        made = DaskRunner(address=None if runner == "dask" else runner)
        made._made_by_get_runner = True
        return made
    if callable(runner) and not isinstance(runner, str):
        return MapRunner(runner)
    raise ValidationError(
        f"The 'runner' parameter of {owner} must be 'serial', 'dask', a Dask scheduler address "
        "('tcp://HOST:8786'), a neurosim.runners.Runner or a map-like callable (e.g. "
        f"ProcessPoolExecutor().map). Got {runner!r} instead."
    )


def is_scheduler_address(value) -> bool:
    """Whether ``value`` is a string that names a Dask scheduler (``tcp://...``, ...)."""
    return isinstance(value, str) and value.startswith(SCHEDULER_SCHEMES)


@contextlib.contextmanager
def runner_scope(runner, owner: str = "simulate"):
    """``get_runner(runner)`` for the duration of a call; closed after it when made here."""
    made = get_runner(runner, owner)
    try:
        yield made
    finally:
        if getattr(made, "_made_by_get_runner", False):
            made.close()
