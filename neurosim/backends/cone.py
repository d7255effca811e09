"""The numba backend's pass through networks with conv layers: receptive cones.

A fault in a conv layer changes only what lies in its receptive cone downstream. Here each
(fault sample, input) row carries, layer by layer, only the activations that differ from its
input's cached clean ones: a *sparse* row is a list of ``(index, value)`` (the region its faults
reach, exactly), a *dense* row (its changes cover more than :data:`DENSE_FRACTION` of the map)
is a whole activation vector, and a *clean* row is nothing at all. A conv layer scatters each
changed input of a sparse row into the outputs it feeds (``kernels.cone.conv_sparse``); dense
rows (and rows whose list outgrows the limit) go through im2col and BLAS (``conv_dense``);
poolings recompute only the windows that hold a change (``pool_sparse``); ``Flatten("chw")``
is free and ``Flatten("hwc")`` renames the indices; any other transform runs on whole rows. A
row whose changes all vanish (under a ReLU, a max pooling) is clean again, and when no fault
lies ahead it stops: its output is the clean one, exactly. Dense (fully connected) layers run
as in the rest of the numba backend (whole rows, sparse column updates), with the whole rows'
products row by row (``dense_rows``).

Memory is bounded by the chunk of rows (:data:`CHUNK_BYTES`), never by a per-row copy of
every layer's map: a sparse row holds its region only (at most :data:`DENSE_FRACTION` of the
map). Every row's numbers depend on that row alone (its own path through sparse and dense
steps, each row its own matrix product with BLAS on one thread), so they do not depend on the
thread count, the chunk size, the calling thread or the other rows of a batch (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from neurosim.kernels import cone as C
from neurosim.kernels import propagate as K
from neurosim.kernels.codes import REC_TILE

__all__ = ["DENSE_FRACTION", "CHUNK_BYTES", "ConeSpec", "cone_spec", "clean_pass", "propagate",
           "uses_cones", "row_status", "sparse_limit"]

#: A row whose changed activations exceed this fraction of a map goes whole (dense) into the
#: next layer (im2col + BLAS) instead of through the cone's scatter. Measured on the benchmark
#: models (``benchmarks/bench_conv.py --parts 4``): small maps do best with the scatter all the
#: way (1.0), 32 x 32 maps at p = 1e-3 with 0.05 (15 % faster than 0.5); 0.5 is within 8 % of
#: the best everywhere else.
DENSE_FRACTION = 0.5
#: Whole rows of a conv layer with at least this many input channels per group are gathered
#: into patches channels-last (1.3x faster from 8 channels up; slower for 1-3 channels).
HWC_CHANNELS = 8
#: Rows per chunk are chosen so that a chunk's buffers stay near this many bytes.
CHUNK_BYTES = 1 << 27
SPARSE_, DENSE_, CLEAN_ = K.SPARSE, K.DENSE, K.CLEAN


def _conv_dense(Y, spec, l):
    """Whole rows through conv layer ``l`` (rows in parallel, each calling BLAS: the numba
    backend runs this inside its one-BLAS-thread session)."""
    return C.conv_dense(np.ascontiguousarray(Y), spec.kernel[l - 1], spec.kernel_hwc[l - 1],
                        spec.channel_bias[l - 1], spec.geo[l - 1], spec.hwc[l - 1])


def uses_cones(network) -> bool:
    """Whether the network has a conv layer (then the numba backend follows cones)."""
    return any(layer.kind == "conv2d" for layer in network.layers)


@dataclass
class _Stage:
    """One pooling / flattening step before a layer, as the kernels take it."""

    kind: str              # "pool", "perm" (flatten hwc), "same" (flatten chw), "generic"
    transform: object
    geo: "np.ndarray | None" = None
    div: "np.ndarray | None" = None
    count: "np.ndarray | None" = None
    inverse: "np.ndarray | None" = None
    fanout: int = 1
    tables: tuple = ()     # pooling: (cin, cout, wy, wx), see kernels.cone.pool_sparse


@dataclass
class ConeSpec:
    """A plan's layers as the cone kernels take them (built once per clean cache)."""

    kinds: list            # "conv" or "dense" per layer
    geo: list              # conv shape arrays (None for dense)
    kernel: list           # flattened conv kernels (None for dense)
    kernel_t: list         # the same as (C_in/g, kh, kw, C_out), flattened
    kernel_hwc: list       # the same for channels-last patches (kernels.cone.conv_kernel_hwc)
    hwc: list              # whether whole rows go through channels-last patches
    channel_bias: list     # conv per-channel bias (None for dense)
    fanout: list           # conv: the most outputs one input feeds
    taps: list             # conv: (cin, tap_y, ny, tap_x, nx), see kernels.cone.conv_sparse
    stages: list           # per layer: list of _Stage


def _pool_stage(t, dtype) -> _Stage:
    from neurosim.layers import AvgPool2d, GlobalAvgPool2d, MaxPool2d, SumPool2d

    C_, H, W = t.in_shape
    if isinstance(t, GlobalAvgPool2d):
        geo = [C_, H, W, 1, 1, H, W, 1, 1, 0, 0, C.POOL_AVG]
        div = np.array([H * W], dtype=dtype)
        count = np.ones(1)
    else:
        (kh, kw), (sh, sw) = t.kernel, t.stride
        pt, _, pl, _ = t.padding
        _, ho, wo = t.out_shape
        mode = C.POOL_MAX
        div, count = np.ones(1, dtype=dtype), np.ones(1)
        if isinstance(t, SumPool2d):
            mode, div = C.POOL_AVG, np.ones(1, dtype=dtype)  # (a mean with divisor 1)
        elif isinstance(t, AvgPool2d):
            if t.count_include_pad:
                mode, div = C.POOL_AVG, np.array([kh * kw], dtype=dtype)
            else:
                mode, count = C.POOL_AVG_VALID, np.asarray(t._divisor(), dtype=np.float64)
        elif not isinstance(t, MaxPool2d):  # pragma: no cover - guarded by the caller
            raise TypeError(t)
        geo = [C_, H, W, ho, wo, kh, kw, sh, sw, pt, pl, mode]
    geo = np.asarray(geo, dtype=np.int64)
    _, _, _, ho, wo, kh, kw, sh, sw, pt, pl, _ = (int(v) for v in geo)
    tables = (C.coords((C_, H, W)), C.coords((C_, ho, wo)), C.pool_windows(H, ho, kh, sh, pt),
              C.pool_windows(W, wo, kw, sw, pl))
    return _Stage("pool", t, geo, div, np.ascontiguousarray(count), fanout=C.pool_fanout(geo),
                  tables=tables)


def cone_spec(plan) -> ConeSpec:
    """The kernels' view of ``plan``'s layers and transforms."""
    from neurosim.layers import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d

    kinds, geos, kernels, kernels_t, biases, fanouts, taps, stages = [], [], [], [], [], [], [], []
    kernels_hwc, hwc = [], []
    for l, layer in enumerate(plan.network.layers, start=1):
        if layer.kind == "conv2d":
            Cin, H, W = layer.in_shape
            Co, ho, wo = layer.out_shape
            (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
            pt, _, pl, _ = layer.padding
            geo = np.array([Cin, H, W, Co, ho, wo, kh, kw, sh, sw, pt, pl, dh, dw, layer.groups],
                           dtype=np.int64)
            kinds.append("conv")
            geos.append(geo)
            kernels.append(np.ascontiguousarray(layer.K, dtype=plan.dtype).ravel())
            kernels_t.append(np.ascontiguousarray(
                np.transpose(layer.K, (1, 2, 3, 0)), dtype=plan.dtype).ravel())
            kernels_hwc.append(C.conv_kernel_hwc(layer.K.astype(plan.dtype), layer.groups))
            hwc.append(Cin // layer.groups >= HWC_CHANNELS)
            biases.append(np.ascontiguousarray(plan.b[l - 1].reshape(Co, ho * wo)[:, 0]))
            taps.append((C.coords(layer.in_shape),) + C.axis_taps(H, ho, kh, sh, pt, dh)
                        + C.axis_taps(W, wo, kw, sw, pl, dw))
            fanouts.append((Co // layer.groups) * int(taps[-1][2].max(initial=0))
                           * int(taps[-1][4].max(initial=0)))
        else:
            kinds.append("dense")
            geos.append(None)
            kernels.append(None)
            kernels_t.append(None)
            kernels_hwc.append(None)
            hwc.append(False)
            biases.append(None)
            fanouts.append(None)
            taps.append(None)
        steps = []
        for t in plan.pre[l - 1]:
            if isinstance(t, (MaxPool2d, AvgPool2d, GlobalAvgPool2d)):
                steps.append(_pool_stage(t, plan.dtype))
            elif isinstance(t, Flatten):
                perm = t._perm
                if perm is None:
                    steps.append(_Stage("same", t))
                else:
                    inverse = np.empty_like(perm)
                    inverse[perm] = np.arange(perm.size)
                    steps.append(_Stage("perm", t, inverse=inverse.astype(np.int64)))
            else:
                steps.append(_Stage("generic", t))
        stages.append(steps)
    return ConeSpec(kinds, geos, kernels, kernels_t, kernels_hwc, hwc, biases, fanouts, taps,
                    stages)


def _apply_stage(stage: _Stage, Y: np.ndarray) -> np.ndarray:
    """A stage on whole rows, with the kernels' arithmetic for poolings."""
    if stage.kind == "pool":
        return C.pool_dense(np.ascontiguousarray(Y), stage.geo, stage.div, stage.count)
    return np.ascontiguousarray(stage.transform.apply(Y))


def _layer_forward(plan, spec: ConeSpec, l: int, U: np.ndarray) -> np.ndarray:
    """Pre-activations of layer l for whole rows ``U`` (after its transforms)."""
    if spec.kinds[l - 1] == "conv":
        return _conv_dense(U, spec, l)
    return C.dense_rows(np.ascontiguousarray(U), plan.W[l - 1], plan.b[l - 1])


def clean_pass(plan, X, spec: ConeSpec):
    """The clean cache's arrays: ``Z, Y, U`` per layer and every stage's clean output."""
    Z, Y, U, stage_out = [X], [X], [], []
    for l in range(1, plan.n_layers + 1):
        cur, outs = Y[-1], []
        for stage in spec.stages[l - 1]:
            cur = _apply_stage(stage, cur)
            outs.append(cur)
        stage_out.append(outs)
        U.append(np.ascontiguousarray(cur))
        z = _layer_forward(plan, spec, l, U[-1])
        Z.append(z)
        Y.append(K.activate(z, plan.act_codes[l - 1], plan.alphas[l - 1], plan.betas[l - 1]))
    return Z, Y, U, stage_out


# --- the row state between steps ---------------------------------------------------------------

class _Rows:
    """The rows of a chunk at one point of the network.

    ``status[r]``: CLEAN (no change), SPARSE (``idx/val[ptr[r]:ptr[r] + cnt[r]]``) or DENSE
    (``D[slot[r]]``), in *split* form; or, in *full* form (before dense layers), ``Y[r]`` for
    every non-clean row with the backend's usual status (SPARSE: few changes).
    """

    def __init__(self, n_rows, width, dtype):
        self.n = n_rows
        self.width = width
        self.dtype = dtype
        self.status = np.zeros(n_rows, dtype=np.int8)
        self.ptr = np.zeros(n_rows, dtype=np.int64)
        self.cnt = np.zeros(n_rows, dtype=np.int64)
        self.idx = np.zeros(0, dtype=np.int64)
        self.val = np.zeros(0, dtype=dtype)
        self.slot = np.full(n_rows, -1, dtype=np.int64)
        self.D = np.zeros((0, width), dtype=dtype)
        self.full = False
        self.Y = None


def sparse_limit(width: int) -> int:
    """The most changed entries of a whole row that the dense layers' kernels still update
    column by column (SPARSE); more go through a matrix product (DENSE)."""
    return max(1, width // 8)


def row_status(U: np.ndarray, U_clean: np.ndarray, limit: int) -> np.ndarray:
    """CLEAN, SPARSE or DENSE for whole rows ``U`` against their clean values (as the
    kernels' ``_row_status`` decides)."""
    changed = (U != U_clean).sum(axis=1)
    return np.where(changed == 0, CLEAN_,
                    np.where(changed <= limit, SPARSE_, DENSE_)).astype(np.int8)


def _limit(width: int) -> int:
    return max(1, int(DENSE_FRACTION * width))


def _n_chunks(n_rows: int) -> int:
    return max(1, min(n_rows, 4 * numba.get_num_threads()))


def _from_lists(rows: np.ndarray, st: _Rows, width: int, limit: int, out_ptr, out_idx, out_val,
                out_cnt, Yc, row_input, dense_rows=None, dense_Y=None) -> _Rows:
    """The split state after a step: the sparse lists of ``rows`` (each at most ``limit``
    long; empty: the row is clean again), and whole rows ``dense_rows`` / ``dense_Y`` (made
    sparse when at most ``limit`` entries differ from the clean ``Yc``)."""
    new = _Rows(st.n, width, st.dtype)
    if rows.size:
        _set_lists(new, rows[out_cnt[rows] > 0], out_ptr, out_cnt, out_idx, out_val)
    if dense_rows is not None and dense_rows.size:
        ptr, idx, val, cnt = C.sparsify(dense_rows, dense_Y, Yc, row_input, limit)
        c = cnt[dense_rows]
        stay = c < 0
        if stay.any():
            drows = dense_rows[stay]
            new.D = dense_Y if stay.all() else np.ascontiguousarray(dense_Y[stay])
            new.slot[drows] = np.arange(drows.size, dtype=np.int64)
            new.status[drows] = DENSE_
        small = dense_rows[c > 0]
        if small.size:
            _append_lists(new, small, ptr, cnt, idx, val)
    return new


def _whole_inputs(st: _Rows, rows: np.ndarray, Yc, row_input) -> np.ndarray:
    """Whole input rows for ``rows`` (ascending; dense ones copied, sparse and clean ones
    filled in). When ``rows`` are exactly the dense rows, their block is returned as is."""
    dense = st.status[rows] == DENSE_
    if dense.all() and rows.size == st.D.shape[0] and np.array_equal(
            st.slot[rows], np.arange(rows.size)):
        return st.D
    out = np.empty((rows.size, st.width), dtype=st.dtype)
    if dense.any():
        out[dense] = st.D[st.slot[rows[dense]]]
    if (~dense).any():
        out[~dense] = C.densify(rows[~dense], st.ptr, st.cnt, st.idx, st.val, Yc, row_input)
    return out


def _gather(rows, ptr, cnt, idx, val):
    """The lists of ``rows`` packed one after another: (ptr, cnt, idx, val) of the rows."""
    c = cnt[rows]
    starts = np.cumsum(c) - c
    total = int(c.sum())
    src = np.repeat(ptr[rows] - starts, c) + np.arange(total, dtype=np.int64)
    return starts, c, idx[src], val[src]


def _set_lists(new: _Rows, rows, ptr, cnt, idx, val) -> None:
    if not rows.size:
        return
    starts, c, new.idx, new.val = _gather(rows, ptr, cnt, idx, val)
    new.ptr[rows] = starts
    new.cnt[rows] = c
    new.status[rows] = SPARSE_


def _append_lists(new: _Rows, rows, ptr, cnt, idx, val) -> None:
    starts, c, i2, v2 = _gather(rows, ptr, cnt, idx, val)
    new.ptr[rows] = starts + new.idx.size
    new.cnt[rows] = c
    new.idx = np.concatenate([new.idx, i2])
    new.val = np.concatenate([new.val, v2])
    new.status[rows] = SPARSE_


def _touches(batch, l: int) -> np.ndarray:
    """Per draw: how many outputs layer l's records address (a tile record its rows)."""
    sl = slice(int(batch.ptr[l][0]), int(batch.ptr[l][-1]))
    t = np.where(batch.kind[sl] == REC_TILE, batch.out_stop[sl] - batch.out_start[sl], 1)
    cs = np.concatenate(([0], np.cumsum(t)))
    p = batch.ptr[l] - batch.ptr[l][0]
    return cs[p[1:]] - cs[p[:-1]]


def _to_full(st: _Rows, Yc, row_input) -> _Rows:
    """Split form -> full form (whole rows for every changed row)."""
    if st.full:
        return st
    Y = np.empty((st.n, st.width), dtype=st.dtype)
    sparse = np.flatnonzero(st.status == SPARSE_)
    if sparse.size:
        Y[sparse] = C.densify(sparse, st.ptr, st.cnt, st.idx, st.val, Yc, row_input)
    dense = np.flatnonzero(st.status == DENSE_)
    if dense.size:
        Y[dense] = st.D[st.slot[dense]]
    status = st.status.copy()
    status[sparse[st.cnt[sparse] > sparse_limit(st.width)]] = DENSE_
    out = _Rows(st.n, st.width, st.dtype)
    out.full, out.Y, out.status = True, Y, status
    return out


def _to_split(st: _Rows, Yc, row_input) -> _Rows:
    """Full form -> split form."""
    if not st.full:
        return st
    rows = np.flatnonzero(st.status != CLEAN_)
    base = _Rows(st.n, st.width, st.dtype)
    return _from_lists(np.zeros(0, np.int64), base, st.width, _limit(st.width), None, None,
                       None, None, Yc, row_input, rows, np.ascontiguousarray(st.Y[rows]))


def _stage_step(stage: _Stage, st: _Rows, Yc, Uc, row_input) -> _Rows:
    """One pooling / flattening step (``Yc``, ``Uc``: clean input and output, by input)."""
    if stage.kind == "same":
        st.width = Uc.shape[1]
        return st
    if stage.kind == "perm" and not st.full:
        new = _Rows(st.n, Uc.shape[1], st.dtype)
        new.status, new.ptr, new.cnt, new.slot = st.status, st.ptr, st.cnt, st.slot
        new.idx = stage.inverse[st.idx] if st.idx.size else st.idx
        new.val = st.val
        new.D = np.ascontiguousarray(st.D[:, stage.transform._perm]) if st.D.shape[0] else (
            np.zeros((0, Uc.shape[1]), st.dtype))
        return new
    if stage.kind in ("generic", "perm") or st.full:
        full = _to_full(st, Yc, row_input)
        rows = np.flatnonzero(full.status != CLEAN_)
        out = _Rows(st.n, Uc.shape[1], st.dtype)
        out.full = True
        out.Y = np.empty((st.n, Uc.shape[1]), dtype=st.dtype)
        out.status = full.status.copy()
        if rows.size:
            out.Y[rows] = _apply_stage(stage, full.Y[rows])
            out.status[rows] = row_status(out.Y[rows], Uc[row_input[rows]],
                                          sparse_limit(Uc.shape[1]))
        return out
    # A pooling of split rows.
    width = Uc.shape[1]
    limit = _limit(width)
    sparse = np.flatnonzero(st.status == SPARSE_)
    room = np.minimum(np.minimum(st.cnt * stage.fanout, width), limit)
    out_ptr, out_idx, out_val, out_cnt = C.pool_sparse(
        sparse, st.ptr, st.cnt, st.idx, st.val, Yc, Uc, stage.geo, stage.div, stage.count,
        *stage.tables, row_input, room, _n_chunks(sparse.size))
    # Rows already whole, and rows whose changes outgrew a list: the dense path.
    redo = np.sort(np.concatenate([np.flatnonzero(st.status == DENSE_),
                                   sparse[out_cnt[sparse] < 0]]))
    dense_Y = _apply_stage(stage, _whole_inputs(st, redo, Yc, row_input)) if redo.size else None
    return _from_lists(sparse[out_cnt[sparse] >= 0], st, width, limit, out_ptr, out_idx,
                       out_val, out_cnt, Uc, row_input, redo, dense_Y)


def _conv_step(plan, spec, cache, batch, l, st: _Rows, row_draw, row_input, has_l, touches_l):
    """Conv layer l for the split rows (inputs after the layer's transforms)."""
    Uc, Zc, Yc_out = cache.U[l - 1], cache.Z[l], cache.Y[l]
    width = plan.widths[l]
    limit = _limit(width)
    geo, Kf, KT = spec.geo[l - 1], spec.kernel[l - 1], spec.kernel_t[l - 1]
    bc = spec.channel_bias[l - 1]
    act = (plan.act_codes[l - 1], plan.alphas[l - 1], plan.betas[l - 1])
    p = batch.ptr[l]
    cols = (batch.kind, batch.out_start, batch.out_stop, batch.in_start, batch.in_stop,
            batch.value, batch.crash_mode)
    sparse = np.flatnonzero((st.status == SPARSE_) | ((st.status == CLEAN_) & has_l[row_draw]))
    room = np.minimum(np.minimum(st.cnt * spec.fanout[l - 1] + touches_l[row_draw], width),
                      limit)
    out_ptr, out_idx, out_val, out_cnt = C.conv_sparse(
        sparse, st.ptr, st.cnt, st.idx, st.val, Uc, Zc, Yc_out, Kf, KT, bc, geo,
        *spec.taps[l - 1], *act, row_draw, row_input, p, *cols, room, _n_chunks(sparse.size))
    # Rows already whole, and rows whose changes outgrew a list: the dense path.
    redo = np.sort(np.concatenate([np.flatnonzero(st.status == DENSE_),
                                   sparse[out_cnt[sparse] < 0]]))
    dense_Y = None
    if redo.size:
        Yin = _whole_inputs(st, redo, Uc, row_input)
        Z = _conv_dense(Yin, spec, l)
        dense_Y = np.empty_like(Z)
        C.conv_finish_dense(Z, dense_Y, Yin, Kf, bc, geo, *act, row_draw[redo], p, *cols)
    return _from_lists(sparse[out_cnt[sparse] >= 0], st, width, limit, out_ptr, out_idx,
                       out_val, out_cnt, Yc_out, row_input, redo, dense_Y)


def _dense_step(plan, cache, batch, l, st: _Rows, row_draw, row_input, has_l) -> _Rows:
    """A dense layer for full rows: the numba backend's usual kernels."""
    W, b = plan.W[l - 1], plan.b[l - 1]
    U_clean = cache.U[l - 1]
    rows = np.flatnonzero((st.status != CLEAN_) | has_l[row_draw])
    out = _Rows(st.n, plan.widths[l], plan.dtype)
    out.full = True
    out.Y = np.empty((st.n, plan.widths[l]), dtype=plan.dtype)
    if not rows.size:
        return out
    Z = np.empty((st.n, plan.widths[l]), dtype=plan.dtype)
    dense = rows[st.status[rows] == DENSE_]
    if dense.size:
        Z[dense] = C.dense_rows(st.Y[dense], W, b)
    Yprev = st.Y if st.Y is not None else np.empty((st.n, U_clean.shape[1]), plan.dtype)
    K.z_from_clean(Z, rows, st.status, Yprev, U_clean, cache.Z[l], W, row_input)
    K.finish_layer(Z, out.Y, rows, st.status, Yprev, U_clean, W, b, row_draw, row_input,
                   batch.ptr[l], batch.kind, batch.out_start, batch.out_stop, batch.in_start,
                   batch.in_stop, batch.value, batch.crash_mode, plan.act_codes[l - 1],
                   plan.alphas[l - 1], plan.betas[l - 1], cache.Y[l],
                   sparse_limit(plan.widths[l]), out.status)
    return out


def chunk_rows(plan) -> int:
    """Rows per chunk: about :data:`CHUNK_BYTES` of buffers at the widest map."""
    widest = max(plan.widths)
    return int(max(64, CHUNK_BYTES // (24 * widest)))


def propagate(plan, cache, batch, row_draw, row_input) -> np.ndarray:
    """Faulty outputs of rows ``(row_draw[r], row_input[r])`` (see the module docstring)."""
    spec = cache.extra["cone"]
    out = cache.output[row_input].copy()
    L = plan.n_layers
    has = [np.diff(batch.ptr[l]) > 0 for l in range(L + 1)]
    touches = [None] + [_touches(batch, l) for l in range(1, L + 1)]
    step = chunk_rows(plan)
    for lo in range(0, row_draw.size, step):
        hi = min(row_draw.size, lo + step)
        y = _chunk(plan, spec, cache, batch, row_draw[lo:hi], row_input[lo:hi], has, touches)
        if y is not None:
            rows, values = y
            out[lo + rows] = values
    return out


def _chunk(plan, spec, cache, batch, row_draw, row_input, has, touches):
    n = row_draw.size
    L = plan.n_layers
    st = _Rows(n, plan.widths[0], plan.dtype)
    first = np.flatnonzero(has[0][row_draw])
    if first.size:  # input-layer faults: whole input rows, then their changes
        Y0 = np.empty((n, plan.widths[0]), dtype=plan.dtype)
        status = np.zeros(n, dtype=np.int8)
        K.input_layer(Y0, first, cache.Y[0], row_draw, row_input, batch.ptr[0], batch.kind,
                      batch.out_start, batch.value, batch.crash_mode,
                      sparse_limit(plan.widths[0]), status)
        st.full, st.Y, st.status = True, Y0, status
    for l in range(1, L + 1):
        stage_clean = [cache.Y[l - 1]] + cache.extra["stages"][l - 1]
        for s, stage in enumerate(spec.stages[l - 1]):
            if np.any(st.status != CLEAN_):
                st = _stage_step(stage, st, stage_clean[s], stage_clean[s + 1], row_input)
            else:
                st = _Rows(n, stage_clean[s + 1].shape[1], plan.dtype)
        if spec.kinds[l - 1] == "conv":
            st = _to_split(st, cache.U[l - 1], row_input)
            st = _conv_step(plan, spec, cache, batch, l, st, row_draw, row_input, has[l],
                            touches[l])
        else:
            if not st.full:
                st = _to_full(st, cache.U[l - 1], row_input)
            st = _dense_step(plan, cache, batch, l, st, row_draw, row_input, has[l])
    rows = np.flatnonzero(st.status != CLEAN_)
    if not rows.size:
        return None
    if st.full:
        return rows, st.Y[rows]
    values = np.empty((rows.size, plan.widths[-1]), dtype=plan.dtype)
    sparse = rows[st.status[rows] == SPARSE_]
    dense = rows[st.status[rows] == DENSE_]
    pos = np.searchsorted(rows, sparse)
    if sparse.size:
        values[pos] = C.densify(sparse, st.ptr, st.cnt, st.idx, st.val, cache.Y[L], row_input)
    if dense.size:
        values[np.searchsorted(rows, dense)] = st.D[st.slot[dense]]
    return rows, values
