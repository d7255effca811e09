"""The numba backend (the default): the driver of the kernels in ``neurosim.kernels``.

A row is computed only from its first faulty layer on, starting from its input's cached
clean activations; a row whose activations are back to clean after its last faulty layer
stops there (its output is the clean one, exactly). While few activations of a row differ from
the clean ones, a layer's ``z`` is updated column by column (a stuck synapse or a bit flip is
one column times one activation); once many differ, all such rows go through one matrix
product (BLAS). The kernels parallelize over rows only, with no global state, so the numbers
do not depend on the thread count.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
from threadpoolctl import ThreadpoolController

from neurosim.backends import cone
from neurosim.backends.records import fault_layer_span
from neurosim.backends import spiking
from neurosim.backends.base import (Backend, CleanCache, apply_transforms, register_backend,
                                    transient_fields)
from neurosim.kernels import field as KF
from neurosim.kernels import propagate as K

__all__ = ["NumbaBackend", "fault_layer_span", "one_blas_thread", "warmup"]


_CONTROLLER = []
_SESSION = {"depth": 0, "limiter": None}
_SESSION_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread():
    """Context manager: BLAS on one thread while the Numba kernels run.

    The kernels parallelize over rows with Numba's threads, and the conv kernels call BLAS
    from those threads; OpenBLAS threads that spin after each small matrix product would
    compete with them for the cores (3x slower here), and OpenBLAS's own threads inside a
    parallel region may hang. The limit is process-wide: the first session to start (on any
    thread) sets it and the last to end restores it, counted under a lock, so sessions that
    overlap on several threads (a thread-pool runner) nest as on one; nested sessions cost
    nothing. One thread also makes every matrix product's rounding independent of the
    thread count. The library scan is done once (it reads the process's memory map).
    """
    with _SESSION_LOCK:
        if _SESSION["depth"] == 0:
            if not _CONTROLLER:
                import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls)

                _CONTROLLER.append(ThreadpoolController())
            _SESSION["limiter"] = _CONTROLLER[0].limit(limits=1, user_api="blas")
        _SESSION["depth"] += 1
    try:
        yield
    finally:
        with _SESSION_LOCK:
            _SESSION["depth"] -= 1
            if _SESSION["depth"] == 0:
                _SESSION["limiter"].restore_original_limits()
                _SESSION["limiter"] = None


@register_backend
class NumbaBackend(Backend):
    """The fast path: Numba kernels restarting from cached clean activations."""

    name = "numba"
    spiking = True

    def clean_cache(self, plan, X) -> CleanCache:
        """Run the inputs once without faults, with the kernels' own activation arithmetic."""
        if plan.spiking is not None:
            return spiking.clean_cache(plan, X, engine="numba")
        X = np.ascontiguousarray(X, dtype=plan.dtype)
        if cone.uses_cones(plan.network):
            spec = cone.cone_spec(plan)
            with one_blas_thread():  # BLAS inside the parallel rows: one thread each
                Z, Y, U, stages = cone.clean_pass(plan, X, spec)
            return CleanCache(X=X, output=Y[-1], Y=Y, Z=Z, U=U,
                              extra={"cone": spec, "stages": stages})
        Z, Y, U = [X], [X], []
        for l, (W, b) in enumerate(zip(plan.W, plan.b), start=1):
            U.append(np.ascontiguousarray(apply_transforms(plan, l, Y[-1])))
            z = K.dense_forward(U[-1], W, b)
            Z.append(z)
            Y.append(K.activate(z, plan.act_codes[l - 1], plan.alphas[l - 1], plan.betas[l - 1]))
        return CleanCache(X=X, output=Y[-1], Y=Y, Z=Z, U=U)

    def propagate(self, plan, cache, batch, row_draw, row_input) -> np.ndarray:
        row_draw = np.ascontiguousarray(row_draw, dtype=np.int64)
        row_input = np.ascontiguousarray(row_input, dtype=np.int64)
        if plan.spiking is not None:
            return spiking.propagate(plan, cache, batch, row_draw, row_input, engine="numba")
        if "cone" in cache.extra:
            with one_blas_thread():  # the conv rows call BLAS in parallel (see cone)
                return cone.propagate(plan, cache, batch, row_draw, row_input)
        n_rows = row_draw.size
        L = plan.n_layers
        fields = transient_fields(plan, batch)
        first_draw, last_draw = fault_layer_span(batch, L, [f.layer for f in fields])
        first, last = first_draw[row_draw], last_draw[row_draw]
        alive = np.ones(n_rows, dtype=bool)
        status = np.zeros(n_rows, dtype=np.int8)  # CLEAN: activations are the cached ones
        Y = np.empty((n_rows, plan.widths[0]), dtype=plan.dtype)
        rows = np.flatnonzero(first == 0)
        if rows.size:
            K.input_layer(Y, rows, cache.Y[0], row_draw, row_input, batch.ptr[0], batch.kind,
                          batch.out_start, batch.value, batch.crash_mode,
                          cone.sparse_limit(plan.widths[0]), status)
        for l in range(1, L + 1):
            W, b = plan.W[l - 1], plan.b[l - 1]
            rows = np.flatnonzero(alive & (first <= l))
            if rows.size == 0:
                continue
            U_clean = cache.U[l - 1]
            if plan.pre[l - 1]:
                # Pooling / flattening before the layer: the changed rows go through it, and
                # their status is taken again on what the layer's matrix multiplies (a change
                # can vanish under a max pooling).
                U = np.empty((n_rows, U_clean.shape[1]), dtype=plan.dtype)
                changed = rows[status[rows] != K.CLEAN]
                if changed.size:
                    U[changed] = apply_transforms(plan, l, Y[changed])
                    status = status.copy()
                    status[changed] = cone.row_status(U[changed], U_clean[row_input[changed]],
                                                      cone.sparse_limit(U.shape[1]))
                Y = U
            Z = np.empty((n_rows, plan.widths[l]), dtype=plan.dtype)
            dense = rows[status[rows] == K.DENSE]
            if dense.size:
                Z[dense] = K.dense_forward(Y[dense], W, b)
            K.z_from_clean(Z, rows, status, Y, U_clean, cache.Z[l], W, row_input)
            for f in fields:
                if f.layer == l:
                    KF.apply_stuck_field(Z, rows, status, Y, U_clean, np.ascontiguousarray(W.T),
                                         row_draw, row_input, batch.keys, l, np.uint64(f.t0),
                                         np.uint64(f.t01), f.v_pos, f.v_neg)
            Y_next = np.empty_like(Z)
            status_next = np.zeros(n_rows, dtype=np.int8)
            K.finish_layer(Z, Y_next, rows, status, Y, U_clean, W, b, row_draw, row_input,
                           batch.ptr[l], batch.kind, batch.out_start, batch.out_stop,
                           batch.in_start, batch.in_stop, batch.value, batch.crash_mode,
                           plan.act_codes[l - 1], plan.alphas[l - 1], plan.betas[l - 1],
                           cache.Y[l],
                           cone.sparse_limit(plan.widths[l]), status_next)
            finished = rows[(status_next[rows] == K.CLEAN) & (last[rows] <= l)]
            alive[finished] = False
            Y, status = Y_next, status_next
        out = cache.output[row_input]
        live = np.flatnonzero(alive & (first <= L))
        if live.size:  # else Y may be an earlier layer's (every row stopped early or is fault-free)
            out[live] = Y[live]
        return out

    def session(self):
        return one_blas_thread()

    def chip_outputs(self, plan, keys, X) -> np.ndarray:
        """As the base class, without building a clean cache per chip: each chip's faulty
        matrices, then its layers one matrix product each (BLAS on one thread: on this
        project's 2-core machine concurrent products are no faster, measured), activations
        kept transposed (inputs as columns) so that nothing is copied between layers. Layer 1
        reads the same inputs on every chip: its pre-activations are the clean ones plus the
        chip's stuck columns (a tenth of that product at crossbar rates)."""
        if cone.uses_cones(plan.network) or any(plan.pre) or plan.spiking is not None:
            return super().chip_outputs(plan, keys, X)
        fields = {f.layer: f for f in plan.fields_in("permanent")}
        XT = np.ascontiguousarray(np.asarray(X, dtype=plan.dtype).T)
        out = np.empty((len(keys), XT.shape[1], plan.widths[-1]), dtype=plan.dtype)
        with one_blas_thread():
            f1 = fields.get(1)
            if f1 is not None:
                W1 = np.ascontiguousarray(plan.W[0])
                Z1T = W1 @ XT + plan.b[0][:, None]
            for c, key in enumerate(keys):
                yT = XT
                for l in range(1, plan.n_layers + 1):
                    if l == 1 and f1 is not None:
                        zT = KF.add_stuck_columns(Z1T, XT, W1, np.uint64(key), 1,
                                                  np.uint64(f1.t0), np.uint64(f1.t01),
                                                  f1.v_pos, f1.v_neg)
                    else:
                        W = plan.W[l - 1]
                        if l in fields:
                            W = self.stuck_matrix(W, fields[l], int(key))
                        zT = W @ yT  # NumPy's BLAS: faster here than Numba's np.dot (measured)
                        zT += plan.b[l - 1][:, None]
                    yT = K.activate_inplace(zT, plan.act_codes[l - 1], plan.alphas[l - 1],
                                            plan.betas[l - 1])
                out[c] = yT.T
        return out

    def stuck_matrix(self, W, field, key: int) -> np.ndarray:
        W = np.ascontiguousarray(W)
        return KF.stuck_field_matrix(W, np.uint64(key), field.layer, np.uint64(field.t0),
                                     np.uint64(field.t01),
                                     field.v_pos, field.v_neg)


def warmup() -> None:
    """Compile (or load from Numba's cache) every kernel once, on a tiny network.

    Nothing is compiled at import; call this before timing, or to pay the first-call cost up
    front. The kernels are specialised per dtype, so both float32 and float64 are warmed.
    """
    from neurosim.faults import FaultModel, NeuronCrash, SynapseStuck
    from neurosim.network import Network
    from neurosim.plan import build_plan
    from neurosim.sampler import sample_faults

    backend = NumbaBackend()
    for dtype in (np.float32, np.float64):
        network = Network.random([3, 4, 2], seed=0, dtype=dtype)
        plan = build_plan(network, FaultModel([NeuronCrash(0.5, layers=(0, 1, 2)),
                                               SynapseStuck(0.2, 0.2)]))
        X = np.zeros((2, 3), dtype=dtype)
        cache = backend.clean_cache(plan, X)
        batch = sample_faults(plan, np.random.default_rng(0), 8)
        rows = np.flatnonzero(batch.draw_has_fault)
        with one_blas_thread():
            backend.propagate(plan, cache, batch, rows, rows % 2)
