"""Runners: they map blocks of work to statistics, merge them, and own checkpoint and resume.

An estimator (:mod:`neurosim.estimators`) hands a runner a *work* object:

* ``work.n_blocks`` blocks, numbered 0..n_blocks-1;
* ``work(block)`` computes one block and returns its statistics: a value with ``blocks``
  (the set of blocks it holds) and ``merge(other)``, which adds exactly and in any order
  (counts and exact sums) and refuses to count a block twice;
* ``work.empty()``, the statistics of no block, and ``work.stats_from_state(state)``.

A block's random numbers come from the seed and the block's index alone, so the merged result
is the same whatever runs the blocks, in whatever order.

:class:`SerialRunner` computes the blocks in order in this process. :class:`MapRunner` takes
any map-like callable, scipy's ``workers=`` convention: ``concurrent.futures``'
``ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")).map``,
``multiprocessing.get_context("spawn").Pool().imap``, or a cluster's map; the work object is
pickled to the workers. (Start process pools with "spawn": workers forked from a process that
already ran Numba's OpenMP kernels die.) :class:`neurosim.DaskRunner` (optional extra ``dask``;
:mod:`neurosim.dask_runner`) runs them as tasks on a Dask cluster; ``runner="dask"`` or a
scheduler address (``"tcp://HOST:8786"``) makes one for the run
(:func:`neurosim.runner_choice.get_runner`). All checkpoint into the run
file (:class:`Checkpoint`): a checkpoint only ever holds whole, committed blocks, and
``resume`` continues from it.

A work object may name its heavy, unchanging attributes in ``work.shared`` (the plan, backend,
clean cache, labels): a distributed runner ships them to each worker once, not with every task.
"""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable

from neurosim.errors import FileFormatError, NeurosimError, NeurosimWarning, ValidationError
from neurosim.io.guard import reading
from neurosim.io.runfile import read_run_file, write_run_file

__all__ = ["Runner", "SerialRunner", "MapRunner", "Checkpoint", "RunnerError",
           "SCHEDULER_SCHEMES"]

#: Address schemes of a Dask scheduler that ``runner=`` accepts as a string.
SCHEDULER_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


class RunnerError(NeurosimError, RuntimeError):
    """The runner could not compute the blocks (a process pool lost a worker, ...)."""


#: How a resume refusal names a config entry.
_CONFIG_NAMES = {"seed": "seed", "faults": "fault model", "network_sha256": "network",
                 "data_sha256": "data", "n_samples": "number of samples", "metric": "metric",
                 "eps": "threshold eps", "mode": "mode", "profile": "chip profile",
                 "use_float": "use_float setting", "confidence": "confidence",
                 "n_inputs": "number of inputs", "rounds_per_block": "block size",
                 "fields": "way of drawing dense stuck cells",
                 "sub_block_draws": "sub-block size"}


class Checkpoint:
    """Where a run saves its committed blocks, and how often.

    ``config`` is what the run was asked to do; :meth:`load` refuses a file whose config
    differs (another seed, model, data, fault model, ...), naming the first difference.
    ``legacy`` overrides config entries that neurosim 0.1 wrote differently (run files of
    format_version 1: the fault model's old text form).
    """

    def __init__(self, path, config: dict, every_s: float = 10.0, legacy: "dict | None" = None,
                 hold: bool = False):
        self.path = path
        self.config = config
        #: True while ``path`` holds a complete result that checkpoints must not replace
        self.hold = bool(hold)
        self.legacy = dict(legacy or {})
        self.every_s = float(every_s)
        self._last = time.perf_counter()
        self._warned = False

    def load(self, work):
        """The statistics saved in the file (resume), after checking its config."""
        source = os.fspath(self.path)
        saved = read_run_file(self.path)
        expected = {**self.config, **self.legacy} if saved.version == 1 else self.config
        for key, value in expected.items():
            if saved.config.get(key) != value:
                what = _CONFIG_NAMES.get(key, key)
                raise ValidationError(
                    f"Cannot resume {source!r}: its run used another {what} ({key} = "
                    f"{saved.config.get(key)!r}, this one {value!r}). Resume with the same model, "
                    "data and options."
                )
        with reading(source, "checkpoint"):
            try:
                return work.stats_from_state(saved.state, saved.version)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise FileFormatError(
                    f"{source}: the checkpoint's state does not add up ({exc}); it is not "
                    "resumed.") from None

    def due(self) -> bool:
        return time.perf_counter() - self._last > self.every_s

    def save(self, stats) -> None:
        """Write the committed blocks (unless ``hold``). A write that fails (a full disk) is
        said once as a warning and the run goes on: its end result is what matters."""
        self._last = time.perf_counter()
        if self.hold:
            return
        try:
            write_run_file(self.path, self.config, stats.to_state())
        except OSError as exc:
            if not self._warned:
                warnings.warn(f"The checkpoint could not be written to "
                              f"{os.fspath(self.path)!r} ({exc.strerror or exc}); the run goes "
                              "on without it.", NeurosimWarning, stacklevel=2)
                self._warned = True


class Runner:
    """Base class: :meth:`run` is shared; subclasses say how to :meth:`map` blocks."""

    name = ""

    def map(self, function: Callable, blocks: Iterable[int]) -> Iterable:
        """The results of ``function(block)`` for every block (any order)."""
        raise NotImplementedError  # pragma: no cover

    def run(self, work, checkpoint: "Checkpoint | None" = None, resume: bool = False,
            progress: "Callable | None" = None, blocks: "Iterable[int] | None" = None):
        """Compute the blocks of ``work`` that are not yet done; return the merged statistics.

        ``blocks`` (default: all of ``work``'s) are the blocks to compute. With ``resume`` the
        statistics start from ``checkpoint``'s file and its blocks are skipped. The
        checkpoint is written when due, and on any exception (Ctrl-C, a dead worker; then
        re-raised); the merged
        value is replaced in one assignment, so a checkpoint never holds part of a block.
        ``progress(stats)`` is called after each merged block.
        """
        stats = checkpoint.load(work) if resume else work.empty()
        wanted = range(work.n_blocks) if blocks is None else blocks
        pending = [b for b in wanted if b not in stats.blocks]
        try:
            for block_stats in self.map_blocks(work, pending):
                stats = stats.merge(block_stats)
                if progress is not None:
                    progress(stats)
                if checkpoint is not None and checkpoint.due():
                    checkpoint.save(stats)
        except BaseException:  # Ctrl-C, a dead worker, ...: keep the committed blocks
            if checkpoint is not None:
                checkpoint.save(stats)
            raise
        return stats

    def close(self) -> None:
        """Release what the runner holds (a cluster connection); nothing for local runners."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def map_blocks(self, work, blocks):
        """:meth:`map` of the blocks (a subclass may wrap it, as the serial runner does)."""
        return self.map(work, blocks)


class SerialRunner(Runner):
    """Every block in this process, in block order (inside one backend session)."""

    name = "serial"

    def map(self, function, blocks):
        return map(function, blocks)

    def map_blocks(self, work, blocks):
        session = getattr(work, "session", None)
        if session is None:
            yield from self.map(work, blocks)
            return
        with session():  # once for the run; each block's own session is then free
            yield from self.map(work, blocks)


class MapRunner(Runner):
    """Blocks through a map-like callable: ``map_like(function, blocks)`` must return the
    results (in any order; each names its blocks). ``function`` is picklable."""

    name = "map"

    def __init__(self, map_like: Callable):
        if not callable(map_like):
            raise ValidationError(
                "The 'runner' parameter must be 'serial', a neurosim Runner or a map-like "
                f"callable such as ProcessPoolExecutor().map. Got {map_like!r} instead.")
        self.map_like = map_like

    def map(self, function, blocks):
        try:
            yield from self.map_like(function, list(blocks))
        except BrokenProcessPool as exc:
            raise RunnerError(
                f"A worker of the process pool died ({exc}). A pool whose workers are forked "
                "from a process that already ran Numba's parallel kernels cannot run them "
                "again (GNU OpenMP is not fork-safe): create it with "
                "ProcessPoolExecutor(n, mp_context=multiprocessing.get_context('spawn'))."
            ) from exc

    def __repr__(self) -> str:
        return f"<MapRunner {self.map_like!r}>"
