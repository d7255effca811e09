"""Numba kernels of the faulty pass through conv layers and poolings: receptive cones.

A fault in a conv layer changes only what lies downstream of it in its receptive cone. These
kernels carry, for each (fault sample, input) row, only the activations that differ from the
input's cached clean ones, as a sparse list ``(index, value)`` (``ptr[r]:ptr[r] + cnt[r]`` of
``idx, val``; flat channels-first indices), and compute a layer's outputs only where that list
reaches:

* :func:`conv_sparse`: a conv layer for rows with a sparse input: each changed input is
  scattered into the pre-activations it feeds (``z = z_clean + sum W[:, j] (y_j - y_j(clean))``
  over the changed ``j``), the layer's own faults are added, and only the touched outputs go
  through the activation and the crashes; those that differ from the clean outputs are listed;
* :func:`conv_dense` and :func:`conv_finish_dense`: the dense fallback for rows whose changes
  cover much of the map: im2col of whole rows and a matrix product (BLAS) per row, then the
  faults, the activation and the crashes; :func:`dense_rows` is a fully connected layer row
  by row;
* :func:`pool_sparse`: max and average pooling (a global average pooling is an average over
  the whole map) of a sparse list: only the windows that contain a changed input are
  recomputed, in the same order of taps as :class:`neurosim.layers.MaxPool2d` and
  :class:`~neurosim.layers.AvgPool2d` (so an untouched window is bit-identical to the clean one);
* :func:`sparsify` and :func:`densify`: between the two representations.

The records are the backend's (``kernels.propagate``): per draw in CSR form ``ptr[d]:ptr[d+1]``
of ``kind, out_start, out_stop, in_start, in_stop, value, crash_mode``; a weight record
addresses an entry ``A[i, j]`` of the unfolded layer, which these kernels read from the
kernel (:func:`_kernel_index`) without unfolding it.

Layer shapes travel as int64 arrays: a conv layer's ``geo`` is ``[C, H, W, Co, Ho, Wo, kh, kw,
sh, sw, pt, pl, dh, dw, groups]``; a pooling's is ``[C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl,
mode]`` (``mode`` one of POOL_MAX, POOL_AVG (divide by the window size), POOL_AVG_VALID (by
the taps inside the image)). Every kernel parallelizes over independent rows only (per-thread
scratch arrays are reset after each row), takes every threshold as an argument and keeps no
global state, and computes each row on its own (BLAS, called per row from the parallel rows,
must run on one thread: the numba backend's session sees to it), so a row's numbers do not
depend on the thread count, on how rows are chunked or on the other rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neurosim.errors import ValidationError
from neurosim.kernels.codes import REC_CRASH, REC_TILE, REC_WEIGHT
from neurosim.kernels.activation import act as _act
from neurosim.kernels.activation import crashed_output

__all__ = ["POOL_MAX", "POOL_AVG", "POOL_AVG_VALID", "conv_sparse", "conv_dense",
           "dense_rows", "conv_kernel_hwc",
           "conv_finish_dense", "pool_sparse", "sparsify", "densify", "axis_taps", "coords",
           "pool_windows",
           "pool_fanout"]

POOL_MAX, POOL_AVG, POOL_AVG_VALID = 0, 1, 2


@njit(cache=True, inline="always")
def _kernel_index(i, j, geo):
    """Flat index into the kernel ``K`` of entry ``A[i, j]`` of the unfolded conv, or -1."""
    C, H, W, Co, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    kh, kw, sh, sw, pt, pl, dh, dw, g = (geo[6], geo[7], geo[8], geo[9], geo[10], geo[11],
                                         geo[12], geo[13], geo[14])
    cig, cog = C // g, Co // g
    o = i // (Ho * Wo)
    rest = i - o * Ho * Wo
    oy = rest // Wo
    ox = rest - oy * Wo
    c = j // (H * W)
    rest = j - c * H * W
    iy = rest // W
    ix = rest - iy * W
    cl = c - (o // cog) * cig
    if cl < 0 or cl >= cig:
        return -1
    ty = iy - oy * sh + pt
    tx = ix - ox * sw + pl
    if ty < 0 or tx < 0 or ty % dh != 0 or tx % dw != 0:
        return -1
    ky, kx = ty // dh, tx // dw
    if ky >= kh or kx >= kw:
        return -1
    return ((o * cig + cl) * kh + ky) * kw + kx


@njit(cache=True, inline="always")
def _tile_sum(i, in_start, in_stop, Kf, geo, r, x, inpos, in_val, Yin, Yc, dense_in):
    """``sum_{j in [in_start, in_stop)} A[i, j] y_j``: what a failed tile takes from z_i."""
    C, H, W, Co, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    kh, kw, sh, sw, pt, pl, dh, dw, g = (geo[6], geo[7], geo[8], geo[9], geo[10], geo[11],
                                         geo[12], geo[13], geo[14])
    cig, cog = C // g, Co // g
    o = i // (Ho * Wo)
    rest = i - o * Ho * Wo
    oy = rest // Wo
    ox = rest - oy * Wo
    s = Kf[0] * 0
    for cl in range(cig):
        c = (o // cog) * cig + cl
        for ky in range(kh):
            iy = oy * sh - pt + ky * dh
            if iy < 0 or iy >= H:
                continue
            for kx in range(kw):
                ix = ox * sw - pl + kx * dw
                if ix < 0 or ix >= W:
                    continue
                j = (c * H + iy) * W + ix
                if j < in_start or j >= in_stop:
                    continue
                if dense_in:
                    yj = Yin[r, j]
                elif inpos[j] >= 0:
                    yj = in_val[inpos[j]]
                else:
                    yj = Yc[x, j]
                s += Kf[((o * cig + cl) * kh + ky) * kw + kx] * yj
    return s


def axis_taps(size: int, out: int, kernel: int, stride: int, pad: int, dilation: int):
    """For each input coordinate ``i < size``: the kernel taps ``k`` and outputs ``o`` with
    ``o * stride - pad + k * dilation == i`` (``(size, kernel, 2)`` and the count of each), so
    that the scatter needs no division."""
    taps = np.zeros((size, kernel, 2), dtype=np.int64)
    n = np.zeros(size, dtype=np.int64)
    for i in range(size):
        for k in range(kernel):
            t = i + pad - k * dilation
            if t >= 0 and t % stride == 0 and t // stride < out:
                taps[i, n[i]] = (k, t // stride)
                n[i] += 1
    return taps, n


def coords(shape) -> np.ndarray:
    """``(C * H * W, 3)``: the (channel, row, column) of each flat channels-first index."""
    C, H, W = (int(v) for v in shape)
    c, y, x = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    return np.ascontiguousarray(np.stack([c.ravel(), y.ravel(), x.ravel()], axis=1),
                                dtype=np.int64)


def pool_windows(size: int, out: int, kernel: int, stride: int, pad: int) -> np.ndarray:
    """``(size, 2)``: the first and last window (output row) that holds each input row."""
    i = np.arange(size)
    lo = np.maximum(0, -((kernel - 1 - i - pad) // stride))
    hi = np.minimum(out - 1, (i + pad) // stride)
    return np.ascontiguousarray(np.stack([lo, hi], axis=1), dtype=np.int64)


def pool_fanout(geo) -> int:
    """The most outputs one input of a pooling feeds."""
    C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, mode = (int(v) for v in geo)
    return min(Ho, -(-kh // sh)) * min(Wo, -(-kw // sw))


@njit(cache=True, inline="always")
def _touch(m, ppos, tlist, nt):
    """Mark ``m`` (a conv's (group, position), a pooling's output) touched: its slot in
    ``tlist`` goes to ``ppos[m]``; return the new count of touched ones."""
    if ppos[m] < 0:
        ppos[m] = nt
        tlist[nt] = m
        return nt + 1
    return nt


@njit(cache=True, parallel=True)
def _conv_sparse(rows, in_ptr, in_cnt, in_idx, in_val, Yc, Zc, Yc_out, Kf, KT, bias, geo,
                cin, tap_y, ny, tap_x, nx, act_code, alpha, beta, row_draw, row_input, ptr, kind,
                out_start, out_stop, in_start, in_stop, value, crash_mode, out_ptr, out_room,
                out_idx, out_val, out_cnt, n_chunks):
    """One conv layer for ``rows`` whose input is a sparse list (possibly empty).

    Parameters
    ----------
    rows : rows to compute; row r's input changes are ``in_idx/in_val[in_ptr[r]:in_ptr[r] +
        in_cnt[r]]`` (faulty values at distinct flat indices).
    Yc, Zc, Yc_out : clean input activations, pre-activations and output activations, by input.
    Kf, KT, bias, geo : the flattened kernel ``(C_out, C_in/g, kh, kw)``, the same as
        ``(C_in/g, kh, kw, C_out)`` (contiguous over output channels), the per-channel bias
        and the layer's shape array.
    cin : (n_in, 3) the channel, row and column of each input (:func:`coords`).
    tap_y, ny, tap_x, nx : the taps of each input row (column): ``tap_y[iy, a] = (ky, oy)``
        for ``a < ny[iy]``, the kernel rows that read input row ``iy`` and the output rows they
        give (:func:`axis_taps`); the same for columns.
    row_draw, row_input : each row's fault sample and input.
    ptr, kind, ... crash_mode : this layer's records (CSR by draw).
    out_ptr, out_room : (n_rows,) where row r's output list starts in ``out_idx/out_val``, and
        how many entries it may hold.
    out_cnt : (n_rows,) written: how many outputs of row r differ from the clean ones, or -1
        when they are more than its room (the caller recomputes such a row whole: a list that
        long would go whole into the next layer anyway).
    n_chunks : the rows are processed in this many contiguous chunks (one scratch each).

    A changed input feeds, at each output position its taps reach, every output channel of
    its group: the scratch ``dz`` is laid out position-major (``p * C_out + o``) so that this
    inner loop over channels is contiguous, and positions (per group) are what is marked.
    """
    C, H, W, Co, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    kh, kw, g = geo[6], geo[7], geo[14]
    cig, cog = C // g, Co // g
    P = Ho * Wo
    n_in = C * H * W
    n_rows = rows.size
    per = (n_rows + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        dz = np.zeros(P * Co, dtype=Zc.dtype)
        yv = np.empty(P * Co, dtype=Zc.dtype)
        ppos = np.full(g * P, -1, dtype=np.int64)    # (group, position) -> slot in tlist
        tlist = np.empty(g * P, dtype=np.int64)
        inpos = np.full(n_in, -1, dtype=np.int64)    # input j -> its entry in the input list
        dummy = np.empty((1, 1), dtype=Yc.dtype)
        for k in range(ch * per, min(n_rows, (ch + 1) * per)):
            r = rows[k]
            x = row_input[r]
            d = row_draw[r]
            nt = 0
            e0, e1 = in_ptr[r], in_ptr[r] + in_cnt[r]
            for e in range(e0, e1):
                inpos[in_idx[e]] = e
            # The cone: every changed input times the kernel weights of its taps, into every
            # output channel of its group.
            for e in range(e0, e1):
                j = in_idx[e]
                delta = in_val[e] - Yc[x, j]
                c, iy, ix = cin[j, 0], cin[j, 1], cin[j, 2]
                grp = 0 if g == 1 else c // cig
                cl = c - grp * cig
                o0 = grp * cog
                for a in range(ny[iy]):
                    ky = tap_y[iy, a, 0]
                    prow = tap_y[iy, a, 1] * Wo
                    for b_ in range(nx[ix]):
                        kx = tap_x[ix, b_, 0]
                        p = prow + tap_x[ix, b_, 1]
                        nt = _touch(grp * P + p, ppos, tlist, nt)
                        kb = ((cl * kh + ky) * kw + kx) * Co + o0
                        zb = p * Co + o0
                        # On 1-d views: Numba vectorizes this loop (indexing dz and KT with
                        # offsets directly ran 2x slower here).
                        dzv = dz[zb:zb + cog]
                        kv = KT[kb:kb + cog]
                        for o in range(cog):
                            dzv[o] += kv[o] * delta
            # This layer's synapse and tile faults, and which outputs crash.
            for f in range(ptr[d], ptr[d + 1]):
                if kind[f] == REC_WEIGHT:
                    i = out_start[f]
                    j = in_start[f]
                    o = i // P
                    p = i - o * P
                    q = _kernel_index(i, j, geo)
                    w = Kf[q] if q >= 0 else Kf[0] * 0
                    yj = in_val[inpos[j]] if inpos[j] >= 0 else Yc[x, j]
                    nt = _touch((o // cog) * P + p, ppos, tlist, nt)
                    dz[p * Co + o] += (value[f] - w) * yj
                elif kind[f] == REC_TILE:
                    for i in range(out_start[f], out_stop[f]):
                        o = i // P
                        p = i - o * P
                        s = _tile_sum(i, in_start[f], in_stop[f], Kf, geo, r, x, inpos, in_val,
                                      dummy, Yc, False)
                        nt = _touch((o // cog) * P + p, ppos, tlist, nt)
                        dz[p * Co + o] -= s
                elif kind[f] == REC_CRASH:
                    i = out_start[f]
                    o = i // P
                    nt = _touch((o // cog) * P + (i - o * P), ppos, tlist, nt)
            for t in range(nt):
                m = tlist[t]
                grp = 0 if g == 1 else m // P
                p = m - grp * P
                for o in range(grp * cog, (grp + 1) * cog):
                    yv[p * Co + o] = _act(Zc[x, o * P + p] + dz[p * Co + o], act_code, alpha,
                                          beta)
            # Crashes override the neuron's output.
            for f in range(ptr[d], ptr[d + 1]):
                if kind[f] == REC_CRASH:
                    i = out_start[f]
                    o = i // P
                    yv[(i - o * P) * Co + o] = crashed_output(crash_mode[f], value[f], bias[o],
                                                              act_code, alpha, beta)
            base = out_ptr[r]
            room = out_room[r]
            cnt = 0
            for t in range(nt):
                m = tlist[t]
                grp = 0 if g == 1 else m // P
                p = m - grp * P
                for o in range(grp * cog, (grp + 1) * cog):
                    q = p * Co + o
                    i = o * P + p
                    if yv[q] != Yc_out[x, i]:
                        if cnt < room:
                            out_idx[base + cnt] = i
                            out_val[base + cnt] = yv[q]
                        cnt += 1
                    dz[q] = 0.0
                ppos[m] = -1
            out_cnt[r] = cnt if cnt <= room else -1
            for e in range(e0, e1):
                inpos[in_idx[e]] = -1


@njit(cache=True, inline="always")
def _im2col(Y, r, cols, c0, geo, lo, hi):
    """The patches of row ``r``'s channels ``c0 : c0 + C/g`` into ``cols`` ``(C/g * kh * kw,
    Ho * Wo)``: contiguous runs along each output row, zeros on the padding."""
    C, H, W, Ho, Wo = geo[0], geo[1], geo[2], geo[4], geo[5]
    kh, kw, sh, sw, pt, pl, dh, dw, g = (geo[6], geo[7], geo[8], geo[9], geo[10], geo[11],
                                         geo[12], geo[13], geo[14])
    for cl in range(C // g):
        c = c0 + cl
        for ky in range(kh):
            for kx in range(kw):
                row = (cl * kh + ky) * kw + kx
                off = kx * dw - pl
                a0, a1 = lo[kx], hi[kx]
                for oy in range(Ho):
                    iy = oy * sh - pt + ky * dh
                    cb = oy * Wo
                    if iy < 0 or iy >= H:
                        for ox in range(Wo):
                            cols[row, cb + ox] = 0
                        continue
                    yb = (c * H + iy) * W + off
                    for ox in range(a0):
                        cols[row, cb + ox] = 0
                    for ox in range(a0, a1):
                        cols[row, cb + ox] = Y[r, yb + ox * sw]
                    for ox in range(a1, Wo):
                        cols[row, cb + ox] = 0


@njit(cache=True, inline="always")
def _im2col_hwc(Y, r, Yh, cols, c0, geo):
    """The patches of row ``r``'s channels ``c0 : c0 + C/g`` as ``cols`` ``(Ho * Wo, kh * kw
    * C/g)`` (tap-major, channels innermost), through the row in channels-last order ``Yh``
    (runs of C/g contiguous values instead of runs of Wo: faster from 8 channels up)."""
    C, H, W, Ho, Wo = geo[0], geo[1], geo[2], geo[4], geo[5]
    kh, kw, sh, sw, pt, pl, dh, dw, g = (geo[6], geo[7], geo[8], geo[9], geo[10], geo[11],
                                         geo[12], geo[13], geo[14])
    cig = C // g
    for oy in range(Ho):
        for ox in range(Wo):
            crow = cols[oy * Wo + ox]
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                for kx in range(kw):
                    ix = ox * sw - pl + kx * dw
                    base = (ky * kw + kx) * cig
                    if iy < 0 or iy >= H or ix < 0 or ix >= W:
                        for cl in range(cig):
                            crow[base + cl] = 0
                    else:
                        src = (iy * W + ix) * C + c0
                        for cl in range(cig):
                            crow[base + cl] = Yh[src + cl]


@njit(cache=True, inline="always")
def _conv_rows(Y, Z, Km, K2, bias, geo, lo, hi, r0, r1, cols, zg, Yh, hwc):
    """Rows ``r0:r1`` of :func:`conv_dense` with the given buffers."""
    C, H, W, Co, Ho, Wo, g = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[14]
    cig, cog = C // g, Co // g
    P = Ho * Wo
    for r in range(r0, r1):
        if hwc:
            for c in range(C):
                for q in range(H * W):
                    Yh[q * C + c] = Y[r, c * H * W + q]
        for grp in range(g):
            if hwc:
                _im2col_hwc(Y, r, Yh, cols, grp * cig, geo)
                np.dot(cols, K2[grp], zg)  # (P, cog)
                for t in range(P):
                    for o in range(cog):
                        oo = grp * cog + o
                        Z[r, oo * P + t] = zg[t, o] + bias[oo]
            else:
                _im2col(Y, r, cols, grp * cig, geo, lo, hi)
                np.dot(Km[grp * cog:(grp + 1) * cog], cols, zg)  # (cog, P)
                for o in range(cog):
                    oo = grp * cog + o
                    for t in range(P):
                        Z[r, oo * P + t] = zg[o, t] + bias[oo]


@njit(cache=True, inline="always")
def _conv_setup(Y, Kf, geo):
    C, W, Co, Ho, Wo = geo[0], geo[2], geo[3], geo[4], geo[5]
    kh, kw, sw, pl, dw, g = geo[6], geo[7], geo[9], geo[11], geo[13], geo[14]
    KK = (C // g) * kh * kw
    Z = np.empty((Y.shape[0], Co * Ho * Wo), dtype=Y.dtype)
    # The output columns each kernel column kx reads inside the image: [lo, hi).
    lo = np.empty(kw, dtype=np.int64)
    hi = np.empty(kw, dtype=np.int64)
    for kx in range(kw):
        a = pl - kx * dw  # ix = ox * sw - a >= 0  <=>  ox >= ceil(a / sw)
        lo[kx] = min(Wo, max(0, -((-a) // sw)))
        hi[kx] = max(lo[kx], min(Wo, (W - 1 + a) // sw + 1))
    return Z, Kf.reshape(Co, KK), lo, hi, KK


@njit(cache=True, inline="always")
def _conv_buffers(Y, geo, KK, hwc):
    C, H, W, Co, Ho, Wo, g = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[14]
    P = Ho * Wo
    if hwc:
        return (np.empty((P, KK), dtype=Y.dtype), np.empty((P, Co // g), dtype=Y.dtype),
                np.empty(C * H * W, dtype=Y.dtype))
    return (np.empty((KK, P), dtype=Y.dtype), np.empty((Co // g, P), dtype=Y.dtype),
            np.empty(1, dtype=Y.dtype))


def conv_kernel_hwc(K: np.ndarray, groups: int) -> np.ndarray:
    """The kernel as :func:`conv_dense` multiplies channels-last patches: ``(g, kh * kw *
    C_in/g, C_out/g)``."""
    Co = K.shape[0]
    Kh = np.transpose(K, (0, 2, 3, 1)).reshape(groups, Co // groups, -1)
    return np.ascontiguousarray(np.transpose(Kh, (0, 2, 1)))


@njit(cache=True, parallel=True)
def _conv_dense(Y, Kf, K2, bias, geo, hwc):
    """Pre-activations of whole rows: ``Z = conv(Y) + b``, by im2col and a matrix product.

    Row by row (in parallel over chunks of rows): the row's patches are gathered (``hwc``:
    through the row in channels-last order, with the kernel ``K2`` of
    :func:`conv_kernel_hwc`; else channels first, with ``Kf``), multiplied by the kernel (BLAS
    through ``np.dot``) group by group, and the bias is added. Each row is its own product
    of fixed shape, so its numbers depend on that row alone (not on the other rows, the
    chunks or the threads); a layer always takes the same ``hwc``. This measured 3-8x faster
    than a direct convolution here, channels-last patches another 1.3x from 8 channels up.

    BLAS is called from the parallel rows, so it must run single-threaded (the numba
    backend's session, ``one_blas_thread``, sees to it).
    """
    Z, Km, lo, hi, KK = _conv_setup(Y, Kf, geo)
    n_rows = Y.shape[0]
    n_chunks = max(1, min(n_rows, 64))
    per = (n_rows + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        # Buffers per chunk of rows: one per row costs an mmap and its page faults each time
        # (3x slower here).
        cols, zg, Yh = _conv_buffers(Y, geo, KK, hwc)
        _conv_rows(Y, Z, Km, K2, bias, geo, lo, hi, ch * per, min(n_rows, (ch + 1) * per),
                   cols, zg, Yh, hwc)
    return Z


@njit(cache=True, parallel=True)
def _dense_rows(Y, W, b):
    """``Z[r] = W Y[r] + b`` row by row (a matrix-vector product each, in parallel over rows):
    each row's numbers depend on that row alone, unlike a matrix product over all rows,
    whose rounding moves with the number of rows (BLAS blocks them). Call it with BLAS on one
    thread, as :func:`conv_dense`."""
    Z = np.empty((Y.shape[0], W.shape[0]), dtype=Y.dtype)
    n_chunks = max(1, min(Y.shape[0], 64))
    per = (Y.shape[0] + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        z = np.empty(W.shape[0], dtype=Y.dtype)
        for r in range(ch * per, min(Y.shape[0], (ch + 1) * per)):
            np.dot(W, Y[r], z)
            for i in range(W.shape[0]):
                Z[r, i] = z[i] + b[i]
    return Z


@njit(cache=True, parallel=True)
def _conv_finish_dense(Z, Y, Yin, Kf, bias, geo, act_code, alpha, beta, row_draw, ptr, kind,
                      out_start, out_stop, in_start, in_stop, value, crash_mode):
    """Faults, activation and crashes of whole rows: ``Y[k] = phi(Z[k] + faults)`` (in place
    on ``Z``) for compact rows k whose inputs ``Yin[k]`` are whole too; ``row_draw[k]`` is the
    row's fault sample."""
    n_rows, n_out = Z.shape
    Ho, Wo = geo[4], geo[5]
    inpos = np.empty(0, dtype=np.int64)
    empty_val = np.empty(0, dtype=Yin.dtype)
    for k in prange(n_rows):
        d = row_draw[k]
        for f in range(ptr[d], ptr[d + 1]):
            if kind[f] == REC_WEIGHT:
                i = out_start[f]
                j = in_start[f]
                q = _kernel_index(i, j, geo)
                w = Kf[q] if q >= 0 else Kf[0] * 0
                Z[k, i] += (value[f] - w) * Yin[k, j]
            elif kind[f] == REC_TILE:
                for i in range(out_start[f], out_stop[f]):
                    Z[k, i] -= _tile_sum(i, in_start[f], in_stop[f], Kf, geo, k, 0, inpos,
                                         empty_val, Yin, Yin, True)
        for i in range(n_out):
            Y[k, i] = _act(Z[k, i], act_code, alpha, beta)
        for f in range(ptr[d], ptr[d + 1]):
            if kind[f] == REC_CRASH:
                i = out_start[f]
                Y[k, i] = crashed_output(crash_mode[f], value[f], bias[i // (Ho * Wo)],
                                         act_code, alpha, beta)


@njit(cache=True, inline="always")
def _pool_value(i, c, oy, ox, geo, div, count, src, r, x, inpos, in_val, sparse):
    """Output ``i`` of a pooling of row ``r``, with the arithmetic of
    :meth:`neurosim.layers.transforms._Pool._reduce`: the taps in the order (ky, kx) in the
    array's dtype, the padding left out (it is -inf for a max and adds 0 to a sum: the same
    value), then the division (by ``div[0]`` in the dtype, or by the window's ``count[i]``
    taps in float64). ``src`` holds the whole input rows (``sparse`` False) or the clean ones
    by input, with the changed entries at ``in_val[inpos[j]]`` (``sparse`` True)."""
    H, W = geo[1], geo[2]
    kh, kw, sh, sw, pt, pl, mode = geo[5], geo[6], geo[7], geo[8], geo[9], geo[10], geo[11]
    acc = div[0] - div[0]  # zero in the dtype (an int literal would make it float64)
    first = True
    for ky in range(kh):
        iy = oy * sh - pt + ky
        if iy < 0 or iy >= H:
            continue
        for kx in range(kw):
            ix = ox * sw - pl + kx
            if ix < 0 or ix >= W:
                continue
            j = (c * H + iy) * W + ix
            if sparse:
                v = in_val[inpos[j]] if inpos[j] >= 0 else src[x, j]
            else:
                v = src[r, j]
            if first:
                acc = v
                first = False
            elif mode == POOL_MAX:
                if v > acc:
                    acc = v
            else:
                acc = acc + v
    if mode == POOL_AVG:
        return acc / div[0]
    if mode == POOL_AVG_VALID:
        return np.float64(acc) / count[i]
    return acc


@njit(cache=True, parallel=True)
def _pool_dense(Y, geo, div, count):
    """A max or average pooling of whole rows (the numba backend's clean and dense path)."""
    C, Ho, Wo = geo[0], geo[3], geo[4]
    n_rows = Y.shape[0]
    n_out = C * Ho * Wo
    U = np.empty((n_rows, n_out), dtype=Y.dtype)
    inpos = np.empty(0, dtype=np.int64)
    for r in prange(n_rows):
        for i in range(n_out):
            U[r, i] = _pool_value(i, i // (Ho * Wo), (i // Wo) % Ho, i % Wo, geo, div, count,
                                  Y, r, 0, inpos, Y[0], False)
    return U


@njit(cache=True, parallel=True)
def _pool_sparse(rows, in_ptr, in_cnt, in_idx, in_val, Yc, Uc, geo, div, count, cin, cout, wy,
                wx, row_input, out_ptr, out_room, out_idx, out_val, out_cnt, n_chunks):
    """A max or average pooling of sparse rows: the windows that hold a changed input are
    recomputed (:func:`_pool_value`, as :func:`pool_dense` computes them, so a window whose
    value did not change is bit-identical to the clean one); the outputs that differ from the
    clean pooled ``Uc`` are listed, at most ``out_room[r]`` (-1: more; as
    :func:`conv_sparse` lists its outputs). ``cin`` and ``cout`` are the (channel, row,
    column) of each input and output (:func:`coords`), ``wy[iy]`` / ``wx[ix]`` the first and
    last window row / column holding input row ``iy`` / column ``ix`` (:func:`pool_windows`):
    tables instead of integer divisions, which cost more than the rest here."""
    C, H, W, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4]
    n_in, n_out = C * H * W, C * Ho * Wo
    n_rows = rows.size
    per = (n_rows + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        pos = np.full(n_out, -1, dtype=np.int64)
        touched = np.empty(n_out, dtype=np.int64)
        inpos = np.full(n_in, -1, dtype=np.int64)
        tmp = np.empty(1, dtype=Uc.dtype)  # a value rounded to the dtype before it is compared
        for k in range(ch * per, min(n_rows, (ch + 1) * per)):
            r = rows[k]
            x = row_input[r]
            nt = 0
            e0, e1 = in_ptr[r], in_ptr[r] + in_cnt[r]
            for e in range(e0, e1):
                inpos[in_idx[e]] = e
            for e in range(e0, e1):
                j = in_idx[e]
                c, iy, ix = cin[j, 0], cin[j, 1], cin[j, 2]
                for oy in range(wy[iy, 0], wy[iy, 1] + 1):
                    for ox in range(wx[ix, 0], wx[ix, 1] + 1):
                        nt = _touch((c * Ho + oy) * Wo + ox, pos, touched, nt)
            base = out_ptr[r]
            room = out_room[r]
            cnt = 0
            over = False
            for t in range(nt):
                i = touched[t]
                if not over:
                    tmp[0] = _pool_value(i, cout[i, 0], cout[i, 1], cout[i, 2], geo, div, count,
                                         Yc, r, x, inpos, in_val, True)
                    if tmp[0] != Uc[x, i]:
                        if cnt < room:
                            out_idx[base + cnt] = i
                            out_val[base + cnt] = tmp[0]
                            cnt += 1
                        else:
                            over = True
                pos[i] = -1
            out_cnt[r] = -1 if over else cnt
            for e in range(e0, e1):
                inpos[in_idx[e]] = -1


@njit(cache=True, parallel=True)
def _sparsify(rows, Y, Yc, row_input, limit, out_ptr, out_idx, out_val, out_cnt):
    """The entries of whole rows ``Y[k]`` (of rows ``rows[k]``) that differ from their clean
    ones, as sparse lists (room for ``limit`` each at ``out_ptr``); a row with more than
    ``limit`` changes gets ``out_cnt = -1`` (it stays whole)."""
    n = Y.shape[1]
    for k in prange(rows.size):
        r = rows[k]
        x = row_input[r]
        base = out_ptr[r]
        cnt = 0
        for j in range(n):
            if Y[k, j] != Yc[x, j]:
                if cnt >= limit:
                    cnt = -1
                    break
                out_idx[base + cnt] = j
                out_val[base + cnt] = Y[k, j]
                cnt += 1
        out_cnt[r] = cnt


@njit(cache=True, parallel=True)
def _densify(rows, in_ptr, in_cnt, in_idx, in_val, Yc, row_input, Y):
    """Whole rows ``Y[k]`` of sparse rows ``rows[k]``: the clean row with the changes."""
    n = Y.shape[1]
    for k in prange(rows.size):
        r = rows[k]
        x = row_input[r]
        for j in range(n):
            Y[k, j] = Yc[x, j]
        for e in range(in_ptr[r], in_ptr[r] + in_cnt[r]):
            Y[k, in_idx[e]] = in_val[e]


# --- the public wrappers: check the arrays, allocate the outputs, call the kernels ------------

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_I64 = np.dtype(np.int64)


def _check(owner: str, name: str, a, dtype=None, ndim=None, shape=None) -> None:
    """Raise ValidationError unless ``a`` is a C-contiguous array as described (the message
    is built only on failure: this runs on every kernel call)."""
    ok = isinstance(a, np.ndarray) and a.flags.c_contiguous
    if ok and dtype is not None:
        ok = a.dtype == dtype
    if ok and ndim is not None:
        ok = a.ndim == ndim
    if ok and shape is not None:
        ok = a.ndim == len(shape) and all(v is None or v == d for v, d in zip(shape, a.shape))
    if ok:
        return
    want = []
    if dtype is not None:
        want.append(str(np.dtype(dtype)))
    if ndim is not None:
        want.append(f"{ndim}-d")
    if shape is not None:
        want.append("of shape (" + ", ".join("n" if v is None else str(v) for v in shape) + ")")
    got = (f"a {a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray)
           else type(a).__name__)
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        got += " (not C-contiguous)"
    raise ValidationError(f"The '{name}' parameter of {owner} must be a C-contiguous "
                          f"{' '.join(want) or 'array'}. Got {got} instead.")


@njit(cache=True)
def _list_bounds(rows, in_ptr, in_cnt, n_idx):
    """-1 if a row's list runs outside ``[0, n_idx)``, else the smallest and largest index
    position used (0, -1 when the lists are empty)."""
    lo, hi = n_idx, -1
    for k in range(rows.size):
        r = rows[k]
        a, c = in_ptr[r], in_cnt[r]
        if a < 0 or c < 0 or a + c > n_idx:
            return -1, -1
        if c:
            lo = min(lo, a)
            hi = max(hi, a + c - 1)
    return lo, hi


@njit(cache=True)
def _index_range(rows, in_ptr, in_cnt, in_idx):
    """The smallest and largest index in the rows' lists (0, -1 when empty)."""
    lo, hi = 0, -1
    first = True
    for k in range(rows.size):
        r = rows[k]
        for e in range(in_ptr[r], in_ptr[r] + in_cnt[r]):
            v = in_idx[e]
            if first:
                lo, hi, first = v, v, False
            else:
                lo, hi = min(lo, v), max(hi, v)
    return lo, hi


def _float_of(owner: str, name: str, a) -> np.dtype:
    if not isinstance(a, np.ndarray) or a.dtype not in _FLOATS:
        raise ValidationError(f"The '{name}' parameter of {owner} must be a float32 or float64 "
                              f"array. Got {getattr(a, 'dtype', type(a).__name__)} instead.")
    return a.dtype


def _check_rows(owner, rows, n_rows):
    _check(owner, "rows", rows, _I64, 1)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValidationError(f"The 'rows' parameter of {owner} must hold row indices in "
                              f"[0, {n_rows - 1}]. Got values in [{rows.min()}, {rows.max()}].")


def _check_lists(owner, rows, in_ptr, in_cnt, in_idx, in_val, dtype, n_in):
    n_rows = in_ptr.shape[0] if isinstance(in_ptr, np.ndarray) else 0
    _check(owner, "in_ptr", in_ptr, _I64, 1)
    _check(owner, "in_cnt", in_cnt, _I64, 1, (n_rows,))
    _check_rows(owner, rows, n_rows)
    _check(owner, "in_idx", in_idx, _I64, 1)
    _check(owner, "in_val", in_val, dtype, 1, (in_idx.shape[0],))
    if rows.size:
        lo, _ = _list_bounds(rows, in_ptr, in_cnt, in_idx.size)
        if lo < 0:
            raise ValidationError(f"The lists of {owner} (in_ptr, in_cnt) run outside in_idx "
                                  f"({in_idx.size} entries).")
        a, b = _index_range(rows, in_ptr, in_cnt, in_idx)
        if a < 0 or b >= n_in:
            raise ValidationError(f"The 'in_idx' parameter of {owner} must hold indices in "
                                  f"[0, {n_in - 1}] in the rows' lists. Got [{a}, {b}].")
    return n_rows


def _records(owner, ptr, kind, out_start, out_stop, in_start, in_stop, value, crash_mode,
             row_draw, n_out, n_in):
    _check(owner, "ptr", ptr, _I64, 1)
    n = kind.shape[0] if isinstance(kind, np.ndarray) else 0
    for name, a in (("kind", kind), ("out_start", out_start), ("out_stop", out_stop),
                    ("in_start", in_start), ("in_stop", in_stop), ("crash_mode", crash_mode)):
        _check(owner, name, a, _I64, 1, (n,))
    _check(owner, "value", value, None, 1, (n,))
    _check(owner, "row_draw", row_draw, _I64, 1)
    if row_draw.size and (row_draw.min() < 0 or row_draw.max() >= ptr.size - 1):
        raise ValidationError(f"The 'row_draw' parameter of {owner} must hold draws in "
                              f"[0, {ptr.size - 2}].")
    if ptr.size and (ptr[0] < 0 or ptr[-1] > n or (np.diff(ptr) < 0).any()):
        raise ValidationError(f"The 'ptr' parameter of {owner} must be non-decreasing offsets "
                              f"into the {n} records.")
    sl = slice(int(ptr[0]), int(ptr[-1])) if ptr.size else slice(0, 0)
    for name, a, hi in (("out_start", out_start, n_out - 1), ("out_stop", out_stop, n_out),
                        ("in_start", in_start, n_in - 1), ("in_stop", in_stop, n_in)):
        part = a[sl]
        if part.size and (part.min() < 0 or part.max() > hi):
            raise ValidationError(f"The '{name}' parameter of {owner} must hold values in "
                                  f"[0, {hi}] for this layer's records. Got values in "
                                  f"[{part.min()}, {part.max()}].")


def _reserve(rows, room, n_rows):
    out_ptr = np.zeros(n_rows, dtype=np.int64)
    r = room[rows]
    out_ptr[rows] = np.cumsum(r) - r
    total = int(r.sum())
    return out_ptr, total


def conv_sparse(rows, in_ptr, in_cnt, in_idx, in_val, Yc, Zc, Yc_out, Kf, KT, bias, geo, cin,
                tap_y, ny, tap_x, nx, act_code, alpha, beta, row_draw, row_input, ptr, kind,
                out_start, out_stop, in_start, in_stop, value, crash_mode, out_room,
                n_chunks):
    """Checks the arrays, allocates each row's room (``out_room[r]`` entries) and runs
    :func:`_conv_sparse` (see there). Returns ``(out_ptr, out_idx, out_val, out_cnt)``."""
    owner = "conv_sparse"
    dtype = _float_of(owner, "Yc", Yc)
    _check(owner, "geo", geo, _I64, 1, (15,))
    C_, H, W, Co, Ho, Wo, kh, kw = (int(v) for v in geo[:8])
    g = int(geo[14])
    n_in, n_out = C_ * H * W, Co * Ho * Wo
    n_rows = _check_lists(owner, rows, in_ptr, in_cnt, in_idx, in_val, dtype, n_in)
    _check(owner, "Yc", Yc, dtype, 2, (None, n_in))
    m = Yc.shape[0]
    _check(owner, "Zc", Zc, dtype, 2, (m, n_out))
    _check(owner, "Yc_out", Yc_out, dtype, 2, (m, n_out))
    _check(owner, "Kf", Kf, dtype, 1, (Co * (C_ // g) * kh * kw,))
    _check(owner, "KT", KT, dtype, 1, (Kf.size,))
    _check(owner, "bias", bias, dtype, 1, (Co,))
    _check(owner, "cin", cin, _I64, 2, (n_in, 3))
    _check(owner, "tap_y", tap_y, _I64, 3, (H, kh, 2))
    _check(owner, "ny", ny, _I64, 1, (H,))
    _check(owner, "tap_x", tap_x, _I64, 3, (W, kw, 2))
    _check(owner, "nx", nx, _I64, 1, (W,))
    _records(owner, ptr, kind, out_start, out_stop, in_start, in_stop, value, crash_mode,
             row_draw, n_out, n_in)
    _check(owner, "row_draw", row_draw, _I64, 1, (n_rows,))
    _check(owner, "row_input", row_input, _I64, 1, (n_rows,))
    if row_input.size and (row_input.min() < 0 or row_input.max() >= m):
        raise ValidationError(f"The 'row_input' parameter of {owner} must hold inputs in "
                              f"[0, {m - 1}].")
    _check(owner, "out_room", out_room, _I64, 1, (n_rows,))
    out_ptr, total = _reserve(rows, out_room, n_rows)
    out_idx = np.empty(total, dtype=np.int64)
    out_val = np.empty(total, dtype=dtype)
    out_cnt = np.zeros(n_rows, dtype=np.int64)
    if rows.size:
        _conv_sparse(rows, in_ptr, in_cnt, in_idx, in_val, Yc, Zc, Yc_out, Kf, KT, bias, geo,
                     cin, tap_y, ny, tap_x, nx, act_code, float(alpha), float(beta), row_draw,
                     row_input, ptr, kind, out_start, out_stop, in_start, in_stop, value,
                     crash_mode, out_ptr, out_room, out_idx, out_val, out_cnt,
                     max(1, int(n_chunks)))
    return out_ptr, out_idx, out_val, out_cnt


def _check_conv(owner, Y, Kf, K2, bias, geo):
    dtype = _float_of(owner, "Y", Y)
    _check(owner, "geo", geo, _I64, 1, (15,))
    C_, H, W, Co, Ho, Wo, kh, kw = (int(v) for v in geo[:8])
    g = int(geo[14])
    _check(owner, "Y", Y, dtype, 2, (None, C_ * H * W))
    _check(owner, "Kf", Kf, dtype, 1, (Co * (C_ // g) * kh * kw,))
    _check(owner, "K2", K2, dtype, 3, (g, kh * kw * (C_ // g), Co // g))
    _check(owner, "bias", bias, dtype, 1, (Co,))
    return dtype, Co * Ho * Wo


def conv_dense(Y, Kf, K2, bias, geo, hwc):
    """Checks the arrays and runs :func:`_conv_dense` (see there): ``Z = conv(Y) + b``."""
    _check_conv("conv_dense", Y, Kf, K2, bias, geo)
    return _conv_dense(Y, Kf, K2, bias, geo, bool(hwc))


def dense_rows(Y, W, b):
    """Checks the arrays and runs :func:`_dense_rows`: ``Z[r] = W Y[r] + b`` row by row."""
    dtype = _float_of("dense_rows", "Y", Y)
    _check("dense_rows", "Y", Y, dtype, 2)
    _check("dense_rows", "W", W, dtype, 2, (None, Y.shape[1]))
    _check("dense_rows", "b", b, dtype, 1, (W.shape[0],))
    return _dense_rows(Y, W, b)


def conv_finish_dense(Z, Y, Yin, Kf, bias, geo, act_code, alpha, beta, row_draw, ptr, kind,
                      out_start, out_stop, in_start, in_stop, value, crash_mode):
    """Checks the arrays and runs :func:`_conv_finish_dense` (writes ``Z`` and ``Y``)."""
    owner = "conv_finish_dense"
    dtype = _float_of(owner, "Z", Z)
    _check(owner, "geo", geo, _I64, 1, (15,))
    C_, H, W, Co, Ho, Wo = (int(v) for v in geo[:6])
    n = Z.shape[0]
    _check(owner, "Z", Z, dtype, 2, (n, Co * Ho * Wo))
    _check(owner, "Y", Y, dtype, 2, (n, Co * Ho * Wo))
    _check(owner, "Yin", Yin, dtype, 2, (n, C_ * H * W))
    _check(owner, "Kf", Kf, dtype, 1, (Co * (C_ // int(geo[14])) * int(geo[6]) * int(geo[7]),))
    _check(owner, "bias", bias, dtype, 1, (Co,))
    _records(owner, ptr, kind, out_start, out_stop, in_start, in_stop, value, crash_mode,
             row_draw, Co * Ho * Wo, C_ * H * W)
    _check(owner, "row_draw", row_draw, _I64, 1, (n,))
    _conv_finish_dense(Z, Y, Yin, Kf, bias, geo, act_code, float(alpha), float(beta), row_draw,
                       ptr, kind, out_start, out_stop, in_start, in_stop, value, crash_mode)


def _check_pool(owner, name, Y, geo, div, count):
    dtype = _float_of(owner, name, Y)
    _check(owner, "geo", geo, _I64, 1, (12,))
    C_, H, W, Ho, Wo = (int(v) for v in geo[:5])
    _check(owner, name, Y, dtype, 2, (None, C_ * H * W))
    _check(owner, "div", div, dtype, 1, (1,))
    _check(owner, "count", count, np.float64, 1)
    if int(geo[11]) == POOL_AVG_VALID and count.size != C_ * Ho * Wo:
        raise ValidationError(f"The 'count' parameter of {owner} must hold one divisor per "
                              f"output ({C_ * Ho * Wo}). Got {count.size}.")
    return dtype, C_ * H * W, C_ * Ho * Wo


def pool_dense(Y, geo, div, count):
    """Checks the arrays and runs :func:`_pool_dense`: the pooling of whole rows."""
    _check_pool("pool_dense", "Y", Y, geo, div, count)
    return _pool_dense(Y, geo, div, count)


def pool_sparse(rows, in_ptr, in_cnt, in_idx, in_val, Yc, Uc, geo, div, count, cin, cout, wy,
                wx, row_input, out_room, n_chunks):
    """Checks the arrays, allocates each row's room and runs :func:`_pool_sparse` (see
    there). Returns ``(out_ptr, out_idx, out_val, out_cnt)``."""
    owner = "pool_sparse"
    dtype, n_in, n_out = _check_pool(owner, "Yc", Yc, geo, div, count)
    n_rows = _check_lists(owner, rows, in_ptr, in_cnt, in_idx, in_val, dtype, n_in)
    _check(owner, "Uc", Uc, dtype, 2, (Yc.shape[0], n_out))
    H, W = int(geo[1]), int(geo[2])
    _check(owner, "cin", cin, _I64, 2, (n_in, 3))
    _check(owner, "cout", cout, _I64, 2, (n_out, 3))
    _check(owner, "wy", wy, _I64, 2, (H, 2))
    _check(owner, "wx", wx, _I64, 2, (W, 2))
    _check(owner, "row_input", row_input, _I64, 1, (n_rows,))
    if row_input.size and (row_input.min() < 0 or row_input.max() >= Yc.shape[0]):
        raise ValidationError(f"The 'row_input' parameter of {owner} must hold inputs in "
                              f"[0, {Yc.shape[0] - 1}].")
    _check(owner, "out_room", out_room, _I64, 1, (n_rows,))
    out_ptr, total = _reserve(rows, out_room, n_rows)
    out_idx = np.empty(total, dtype=np.int64)
    out_val = np.empty(total, dtype=dtype)
    out_cnt = np.zeros(n_rows, dtype=np.int64)
    if rows.size:
        _pool_sparse(rows, in_ptr, in_cnt, in_idx, in_val, Yc, Uc, geo, div, count, cin, cout,
                     wy, wx, row_input, out_ptr, out_room, out_idx, out_val, out_cnt,
                     max(1, int(n_chunks)))
    return out_ptr, out_idx, out_val, out_cnt


def sparsify(rows, Y, Yc, row_input, limit):
    """Checks the arrays and runs :func:`_sparsify` on whole rows ``Y[k]`` (of rows
    ``rows[k]``): returns ``(out_ptr, out_idx, out_val, out_cnt)`` with room ``limit`` per
    row (``out_cnt`` -1: more changes than that)."""
    owner = "sparsify"
    dtype = _float_of(owner, "Y", Y)
    n = Yc.shape[1] if isinstance(Yc, np.ndarray) and Yc.ndim == 2 else -1
    _check(owner, "Y", Y, dtype, 2, (None, n))
    _check(owner, "Yc", Yc, dtype, 2, (None, n))
    _check(owner, "row_input", row_input, _I64, 1)
    _check_rows(owner, rows, row_input.size)
    if rows.size != Y.shape[0]:
        raise ValidationError(f"The 'Y' parameter of {owner} must have one row per entry of "
                              f"'rows' ({rows.size}). Got {Y.shape[0]}.")
    limit = int(limit)
    out_ptr = np.zeros(row_input.size, dtype=np.int64)
    out_ptr[rows] = np.arange(rows.size, dtype=np.int64) * limit
    out_idx = np.empty(rows.size * limit, dtype=np.int64)
    out_val = np.empty(rows.size * limit, dtype=dtype)
    out_cnt = np.zeros(row_input.size, dtype=np.int64)
    if rows.size:
        _sparsify(rows, Y, Yc, row_input, limit, out_ptr, out_idx, out_val, out_cnt)
    return out_ptr, out_idx, out_val, out_cnt


def densify(rows, in_ptr, in_cnt, in_idx, in_val, Yc, row_input):
    """Checks the arrays and runs :func:`_densify`: whole rows of the sparse rows ``rows``."""
    owner = "densify"
    dtype = _float_of(owner, "Yc", Yc)
    _check(owner, "Yc", Yc, dtype, 2)
    n_rows = _check_lists(owner, rows, in_ptr, in_cnt, in_idx, in_val, dtype, Yc.shape[1])
    _check(owner, "row_input", row_input, _I64, 1, (n_rows,))
    Y = np.empty((rows.size, Yc.shape[1]), dtype=dtype)
    if rows.size:
        _densify(rows, in_ptr, in_cnt, in_idx, in_val, Yc, row_input, Y)
    return Y
