"""A runner on a Dask cluster (optional extra ``dask``: ``pip install neurosim-faults[dask]``).

:class:`DaskRunner` computes an estimator's blocks as Dask tasks. Nothing here imports Dask
until a runner is created, so the core never needs it.

* **Same numbers.** A block's random numbers come from the seed and the block's index alone
  (``SeedSequence([seed, block])``: a key, never a stateful ``spawn()``), and block statistics
  merge exactly in any order, so the result is the serial runner's whatever the number of
  workers, the order in which tasks finish, or a task rerun after its worker died.
* **Shipped once.** The work's heavy, unchanging parts (its ``shared`` attributes: the plan
  with the network and mapping, the backend, the clean cache, the labels) are scattered to the
  cluster once per runner and fetched by each worker once; what differs between runs (seed,
  metric, a stratum's patterns) is scattered once per run. Tasks carry only their block list.
* **Task size.** A task computes consecutive blocks and returns their merged statistics with
  the seconds each block took. The first wave is two blocks per worker thread; from then on a
  task holds as many blocks as fill :data:`TASK_SECONDS` at the fastest block time seen (the
  first block on a worker includes loading the compiled kernels), at most an even share of what
  is left, so workers finish together. Dask's own cost is about 1 ms per task
  (``benchmarks/bench_dask.py`` measures it), so tasks of 0.5 s lose about 0.2 % to it.
  A few tasks per worker thread are in flight at a time: a campaign of millions of blocks
  never holds millions of futures, and the client merges (and checkpoints) as tasks end.
* **Failures.** A worker that dies mid-task: the scheduler reruns its tasks elsewhere (Dask's
  ``allowed-failures``); the numbers do not change. A task that keeps killing workers, or an
  error inside a task, stops the run with the blocks merged so far checkpointed.
"""

from __future__ import annotations

import copy
import math
import os
import time
import uuid

from neurosim.errors import MissingExtraError, ValidationError
from neurosim.runners import SCHEDULER_SCHEMES, Runner, RunnerError

__all__ = ["DaskRunner", "TASK_SECONDS", "import_distributed"]

#: Seconds of work a task aims at (well above Dask's ~1 ms per task).
TASK_SECONDS = 0.5
#: Tasks per worker thread kept submitted at once.
IN_FLIGHT_PER_THREAD = 3
#: At most this many blocks in one task (a bound on what a lost worker costs).
MAX_TASK_BLOCKS = 4096
#: Tries of a scatter that a dying worker breaks.
SCATTER_TRIES = 4


def import_distributed():
    """``dask.distributed``, or an error naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(
            "The Dask runner needs dask.distributed, which is not installed: "
            "pip install 'neurosim-faults[dask]' (or pip install 'dask[distributed]').") from None
    return distributed


def _blocks_task(light, shared: dict, blocks: list):
    """One task on a worker: the blocks' merged statistics and each block's seconds."""
    work = copy.copy(light)
    work.__dict__.update(shared)
    seconds = []
    stats = None
    with work.session():
        for b in blocks:
            t0 = time.perf_counter()
            s = work(b)
            seconds.append(time.perf_counter() - t0)
            stats = s if stats is None else stats.merge(s)
    return stats, seconds


def _map_task(function, item):
    return function(item)


class DaskRunner(Runner):
    """Blocks as tasks on a Dask cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        An existing client (its cluster is used as it is; :meth:`close` leaves it open).
    address : str, optional
        A scheduler's address (``tcp://HOST:8786``): this runner connects to it and
        disconnects on :meth:`close`.
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes (one thread each, Numba's
        threads shared out among them); closed with the runner.
    timeout : float
        Seconds to wait for the scheduler before a clear error (default 10).

    With none of them, the scheduler named by Dask's configuration (``DASK_SCHEDULER_ADDRESS``
    or ``scheduler-address``) is used. Use it as a context manager, or call :meth:`close`.
    """

    name = "dask"

    def __init__(self, client=None, *, address: "str | None" = None,
                 workers: "int | None" = None, timeout: float = 10.0):
        given = [n for n, v in (("client", client), ("address", address), ("workers", workers))
                 if v is not None]
        if len(given) > 1:
            raise ValidationError(f"DaskRunner takes one of client, address and workers; got "
                                  f"{' and '.join(given)}.")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ValidationError(f"The 'workers' parameter of DaskRunner must be a positive "
                                  f"integer. Got {workers!r} instead.")
        if address is not None and not isinstance(address, str):
            raise ValidationError(f"The 'address' parameter of DaskRunner must be a scheduler "
                                  f"address such as 'tcp://HOST:8786'. Got {address!r} instead.")
        if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                and math.isfinite(timeout) and timeout > 0):
            raise ValidationError(f"The 'timeout' parameter of DaskRunner must be a positive "
                                  f"number of seconds. Got {timeout!r} instead.")
        distributed = import_distributed()
        self.timeout = float(timeout)
        self._cluster = None
        self._own_client = client is None
        self._shared = {}  # id(obj) -> (obj, future): what this runner has scattered
        if client is not None:
            if not isinstance(client, distributed.Client):
                raise ValidationError(f"The 'client' parameter of DaskRunner must be a "
                                      f"distributed.Client. Got {client!r} instead.")
            self.client = client
            self.address = client.scheduler.address
        elif workers is not None:
            self._cluster = _local_cluster(distributed, workers)
            self.client = distributed.Client(self._cluster, timeout=self.timeout)
            self.address = self._cluster.scheduler_address
        else:
            if address is None:
                import dask

                address = dask.config.get("scheduler-address", None)
                if not address:
                    raise ValidationError(
                        "runner='dask' needs a scheduler: give its address (runner="
                        "'tcp://HOST:8786', --scheduler), set DASK_SCHEDULER_ADDRESS, or start "
                        "local workers (DaskRunner(workers=N), --workers N).")
            self.address = address
            self.client = _connect(distributed, address, self.timeout)

    # --- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release what this runner scattered; close the client and cluster it started."""
        for _, future in self._shared.values():
            future.release()
        self._shared.clear()
        if self._own_client and self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    def __repr__(self) -> str:
        return f"<DaskRunner {self.address}>"

    def __reduce__(self):
        raise TypeError("A DaskRunner holds a live client; it is not sent to workers.")

    # --- the work ---------------------------------------------------------------------------
    def threads(self) -> int:
        """Worker threads in the cluster now (at least 1: tasks wait for workers to join)."""
        info = self._client().scheduler_info()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))

    def _client(self):
        if self.client is None:
            raise RunnerError("This DaskRunner is closed.")
        return self.client

    def _scatter(self, obj):
        client = self._client()
        held = self._shared.get(id(obj))
        if held is not None and held[0] is obj:
            return held[1]
        future = self._scatter_now(obj)
        self._shared[id(obj)] = (obj, future)
        return future

    def _scatter_now(self, obj):
        """``obj`` on every worker now (replicas: a worker that dies later loses nothing). A
        worker that dies during the scatter fails it; the scatter is tried again, on the
        workers alive then, up to SCATTER_TRIES times."""
        client = self._client()
        for attempt in range(1, SCATTER_TRIES + 1):
            try:
                return client.scatter([obj], hash=False, broadcast=True,
                                      timeout=self.timeout)[0]
            except (OSError, TimeoutError, KeyError) as exc:
                # CommClosedError is an OSError; a KeyError naming a worker is the scheduler's
                # race between listing the workers and replicating onto them when one of them
                # has just died (distributed's Scheduler.replicate).
                if attempt == SCATTER_TRIES:
                    raise RunnerError(
                        f"Cannot send this run's network and data to the Dask workers of "
                        f"{self.address}: {SCATTER_TRIES} tries failed, the last with "
                        f"{type(exc).__name__}: {exc}. Are the workers alive?") from exc
                time.sleep(0.5 * attempt)  # (the scheduler notices the dead worker meanwhile)

    def map(self, function, blocks):
        """``function(block)`` for every block as its own task (``function`` scattered once);
        results in the order they finish. For experiments' grid points and other small maps."""
        client = self._client()
        distributed = import_distributed()
        fn = self._scatter_now(function)
        futures = [client.submit(_map_task, fn, b, pure=False) for b in blocks]
        try:
            for future in distributed.as_completed(futures):
                yield _result(future, self.address)
        finally:
            client.cancel([f for f in futures if not f.done()])
            fn.release()

    def map_blocks(self, work, blocks):
        client = self._client()
        distributed = import_distributed()
        pending = list(blocks)
        if not pending:
            return
        names = tuple(n for n in getattr(work, "shared", ()) if getattr(work, n, None) is not None)
        shared = {n: self._scatter(getattr(work, n)) for n in names}
        light = copy.copy(work)
        for n in names:
            setattr(light, n, None)
        light_f = self._scatter_now(light)
        threads = self.threads()
        run_id = uuid.uuid4().hex[:8]
        fastest = math.inf
        submitted = []

        def submit(n_blocks):
            chunk = pending[:n_blocks]
            del pending[:n_blocks]
            future = client.submit(_blocks_task, light_f, shared, chunk, pure=False,
                                   key=f"neurosim-blocks-{run_id}-{len(submitted)}")
            submitted.append(future)
            return future

        first = [submit(min(2, len(pending))) for _ in range(threads) if pending]
        done = distributed.as_completed(first)
        try:
            for future in done:
                stats, seconds = _result(future, self.address)
                fastest = min([fastest, *seconds])
                in_flight = sum(1 for f in submitted if not f.done())
                while pending and in_flight < IN_FLIGHT_PER_THREAD * threads:
                    per_task = TASK_SECONDS / fastest if fastest > 0 else MAX_TASK_BLOCKS
                    share = math.ceil(len(pending) / threads)
                    n = int(max(1, min(per_task, share, MAX_TASK_BLOCKS)))
                    done.add(submit(n))
                    in_flight += 1
                yield stats
        finally:
            client.cancel([f for f in submitted if not f.done()])
            light_f.release()


def _result(future, address):
    """A task's result; a task that killed its workers is a RunnerError."""
    distributed = import_distributed()
    try:
        return future.result()
    except distributed.KilledWorker as exc:
        raise RunnerError(
            f"A task of this run killed every Dask worker that ran it ({exc}); the cluster at "
            f"{address} gave up on it (Dask's 'distributed.scheduler.allowed-failures'). The "
            "blocks merged so far are checkpointed.") from exc


def _connect(distributed, address: str, timeout: float):
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise RunnerError(
            f"Cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({exc}). Is "
            "it running (dask scheduler; dask worker ADDRESS), and is the address right?"
        ) from None
    except ValueError as exc:  # an address Dask cannot parse
        raise ValidationError(f"{address!r} is not a Dask scheduler address ({exc}); expected "
                              "e.g. 'tcp://HOST:8786'.") from None


def _local_cluster(distributed, workers: int):
    """A LocalCluster of ``workers`` processes with one thread each; Numba's threads are shared
    out so that workers do not oversubscribe the cores."""
    cores = os.cpu_count() or 1
    numba_threads = max(1, cores // workers)
    env = {"NUMBA_NUM_THREADS": str(numba_threads), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", env=env)
