"""Spiking networks under faults: the clean cache and the faulty rows that the numpy and numba
backends hand to the estimators for a plan built from a
:class:`~neurosim.spiking.snn.SpikingNetwork` (``plan.spiking``).

The clean run keeps every layer's output, inputs after transforms and currents over time
(``(steps, n_inputs, n_l)``; ``steps`` is 1 while the signal is still constant in time: the
input under constant-current encoding, and graded layers fed by it). A faulty row starts from
its input's clean outputs of the layer before its draw's first faulty layer and runs the layers
from there, layer by layer over all ``T`` steps:

* a row whose draw has weight faults (stuck synapses, bit flips, failed tiles, transient stuck
  fields) or a paper crash in a layer is computed there in full, with that draw's matrix (its
  records written in, record order);
* with the numba engine, every other row takes the fused kernels of
  :mod:`neurosim.kernels.spiking`: its currents are its input's clean currents plus the inputs
  that changed, and the neuron loop runs inside (at the draw's first faulty layer such a row's
  inputs are the clean ones, and so are its outputs before the crashes); the numpy engine
  computes every row in full and runs the NumPy step loop;
* a neuron crash acts on the neuron's output at every step: ``silent`` (a dead neuron: it never
  spikes, a graded one outputs 0), ``stuck`` at ``v`` (it emits ``v`` at every step: ``v = 1``
  is a saturated neuron that spikes at every step), ``paper`` (its input current is its bias
  alone: it keeps integrating ``b_i``); a crash of a few steps (``NeuronCrash(steps=K)``) sets
  the output at those steps only, after the crashes of every step;
* a threshold or leak fault (:mod:`neurosim.faults.neuron_param`) gives the row its own
  factors for that neuron (both engines, the fused kernels too: a table of the perturbed rows'
  factors, indexed per row).

The neuron updates are the same operations in both engines; the currents differ in rounding
only (a full product against clean currents plus changes), so both give the same spikes except
where a membrane lands within rounding of its threshold, and exactly the same results where the
sums are exact (tests/test_spiking.py).

Fault-free rows never get here (the estimators give them the clean output).
"""

from __future__ import annotations

import numpy as np

from neurosim.backends.base import CleanCache, transient_fields
from neurosim.backends.records import apply_weight_records, fault_layer_span
from neurosim.fields import stuck_matrix
from neurosim.kernels.codes import (CRASH_PAPER, CRASH_STUCK, REC_CRASH, REC_NEURON, REC_TILE,
                                    REC_WEIGHT)
from neurosim.kernels.spiking import changed_readout, changed_scan, neuron_scan
from neurosim.spiking.fast import transforms_over_time
from neurosim.spiking.neurons import scaled_parameters
from neurosim.spiking.reference import neuron_loop

__all__ = ["clean_cache", "propagate"]


def _scan(I, p, subtract, engine, rowp):
    """Spikes of a layer's neurons for currents ``I (T, n, m)``, factors ``p`` (in ``I``'s
    dtype) and the rows' own factors ``rowp`` (see :func:`_row_params`)."""
    prow, t_keep, t_leak, t_thr = rowp
    if engine == "numba":
        out = np.empty(I.shape, dtype=I.dtype)
        neuron_scan(np.ascontiguousarray(I), p["syn_keep"], p["syn_gain"], p["keep"], p["leak"],
                    p["gain"], p["threshold"], p["v_reset"], subtract, out, prow, t_keep,
                    t_leak, t_thr)
        return out
    if t_keep.shape[0]:  # the rows' own factors as full (n, m) arrays
        p = dict(p)
        has = prow >= 0
        for name, table in (("keep", t_keep), ("leak", t_leak), ("threshold", t_thr)):
            full = np.broadcast_to(p[name], I.shape[1:]).copy()
            full[has] = table[prow[has]]
            p[name] = full
    return neuron_loop(np.ascontiguousarray(I), p, subtract)


def _row_params(base: dict, dtype, params, n: int):
    """The rows' own neuron factors ``(prow, keep, leak, threshold)``: row ``r`` (of ``n``)
    uses row ``prow[r]`` of the tables ``(P, m)``, or the layer's factors ``base`` (float64)
    where it is -1. ``params``: the rows' parameter records ``(rows, neurons, codes,
    factors)``, each scaling its neuron's factors as
    :func:`neurosim.faults.neuron_param.scaled_parameters` says (in float64, then cast)."""
    m = base["keep"].shape[0]
    prow = np.full(n, -1, dtype=np.int64)
    if params is None or params[0].size == 0:
        empty = np.zeros((0, m), dtype=dtype)
        return prow, empty, empty, empty
    p_rows, neurons, codes, factors = params
    owners = np.unique(p_rows)
    prow[owners] = np.arange(owners.size)
    tables = {name: np.repeat(base[name][None].astype(np.float64), owners.size, axis=0)
              for name in ("keep", "leak", "threshold")}
    t = prow[p_rows]
    for code in np.unique(codes):
        sel = codes == code
        entry = {name: tables[name][t[sel], neurons[sel]] for name in tables}
        scaled_parameters(entry, int(code), factors[sel])
        for name in tables:
            tables[name][t[sel], neurons[sel]] = entry[name]
    return (prow, tables["keep"].astype(dtype), tables["leak"].astype(dtype),
            tables["threshold"].astype(dtype))


def _is_spiking(snn, l: int) -> bool:
    """Whether layer ``l``'s output (0: the input) is spikes."""
    return snn.encoding != "current" if l == 0 else snn.neurons[l - 1] is not None


def _layers(plan, s, first, draws=None, batch=None, fields=(), engine="numba", keep=False,
            clean=None):
    """Run layers ``first..L`` from ``s`` (layer ``first - 1``'s outputs, ``(steps, n, w)``).

    ``draws``: each row's fault draw in ``batch`` (None: no faults). ``clean``: ``(cache,
    inputs, inputs_clean)``: the rows' currents start from their inputs' clean currents plus
    the inputs that differ (the numba engine; ``inputs_clean``: layer ``first``'s inputs are
    the clean ones); without it they are computed in full. Returns the readout and,
    with ``keep``, every layer's outputs and ``(inputs after transforms, currents)`` from
    ``first - 1`` on."""
    snn = plan.spiking
    T, L, dtype = snn.T, plan.n_layers, plan.dtype
    kept = [s] if keep else None
    currents = [] if keep else None
    n = s.shape[1]
    readout = None
    empty = np.zeros(0, dtype=np.int64)
    for l in range(first, L + 1):
        layer = plan.network.layers[l - 1]
        u = transforms_over_time(plan.pre[l - 1], s, _is_spiking(snn, l - 1))
        model = snn.neurons[l - 1]
        membrane = model is None and l == L and snn.readout != "count"  # (membrane, li)
        rec = None
        weight_draws = empty
        fielded = False
        if draws is not None:
            rec = _layer_records(batch, l, draws)
            weight_draws = rec["weight_draws"]
            fielded = any(f.layer == l for f in fields)
            if fielded:  # (a transient field: every draw)
                weight_draws = np.unique(draws)
        crashes = None if rec is None else rec["crashes"]
        windows = None if rec is None else rec["windows"]
        params = None if rec is None else rec["params"]
        full = np.arange(n)
        fast = None
        if clean is not None and (model is not None or membrane):
            # the fused kernels take every row but those of draws with failed tiles or a
            # transient field here (computed in full), and, on a membrane readout, those with
            # crashed outputs
            special = (np.ones(n, dtype=bool) if fielded else np.isin(draws, rec["tile_draws"]))
            if membrane:
                special[crashes[0]] = True
                special[windows[0]] = True
            fast, full = np.flatnonzero(~special), np.flatnonzero(special)
            patch = _patch(plan, l, fast, n, rec["weights"], crashes)
            untouched = np.ones(n, dtype=bool)  # rows without faults of their own here
            untouched[rec["weights"][0]] = False
            untouched[crashes[0][crashes[2] == CRASH_PAPER]] = False
            untouched[params[0]] = False
        I = _currents(plan, layer, l, u, full, draws, batch, fields, weight_draws, crashes)
        sub = _subset(crashes, full, n)
        sub_windows = _subset(windows, full, n)
        if fast is not None:
            cache, inputs, _ = clean
            U_c, I_c = cache.extra["currents"][l - 1]
            Wt = _transposed(cache, plan, l)
            u = np.ascontiguousarray(u)
        if membrane:
            readout = np.empty((n, I.shape[2]), dtype=dtype)
            r_keep, r_leak, r_gain, divide = snn.readout_factors(np.dtype(dtype))
            if fast is not None and fast.size:
                changed_readout(fast, inputs, u, U_c, I_c, Wt, patch, T, r_keep, r_leak, r_gain,
                                readout)
            out = _override(I, sub, sub_windows, T=T)
            part = np.zeros((full.size, I.shape[2]), dtype=dtype)
            for t in range(T):
                part = r_keep * part + r_leak + r_gain * out[0 if out.shape[0] == 1 else t]
            readout[full] = part
            readout /= divide
            s = None
        elif model is None:
            s = _override(layer.activation(I).astype(dtype), sub, sub_windows, T=T)
        else:
            m = I.shape[2]
            base = model.params(m, snn.dt)
            p = {k: v.astype(dtype) for k, v in base.items()}
            subtract = model.reset == "subtract"
            spikes = np.empty((T, n, m), dtype=dtype)
            if fast is not None and fast.size:
                if l == first and clean[2]:
                    # the first faulty layer: the rows' inputs are their clean ones, so are
                    # the outputs of rows without faults of their own here but crashes
                    same = fast[untouched[fast]]
                    spikes[:, same] = cache.extra["spikes"][l][:, inputs[same]]
                    fast = fast[~untouched[fast]]
                prow, t_keep, t_leak, t_thr = _row_params(base, dtype, params, n)
                changed_scan(fast, inputs, u, U_c, I_c, Wt, patch, T, p["syn_keep"],
                             p["syn_gain"], p["keep"], p["leak"], p["gain"], p["threshold"],
                             p["v_reset"], subtract, spikes, prow, t_keep, t_leak, t_thr)
            if full.size:
                rowp = _row_params(base, dtype, _subset(params, full, n) if params is not None
                                   else None, full.size)
                spikes[:, full] = _scan(np.broadcast_to(I, (T,) + I.shape[1:]), p, subtract,
                                        engine, rowp)
            s = _override(spikes, crashes, windows, inplace=True, T=T)
            if l == L:
                readout = np.zeros((n, s.shape[2]), dtype=dtype)
                for t in range(T):
                    readout += s[t]
                readout /= dtype.type(T)
        if keep:
            kept.append(I if s is None else s)
            currents.append((u, I))
    return (readout, kept, currents) if keep else (readout, None)


def _currents(plan, layer, l, u, rows, draws, batch, fields, weight_draws, crashes):
    """The currents ``(steps, rows, n_l)`` of rows ``rows`` computed in full: the layer's
    linear map (a chip's matrix after Plan.with_weights), each draw's weight records and
    fields written into its matrix, paper crashes' currents set to the bias."""
    dtype = plan.dtype
    u = u[:, rows]
    steps, n = u.shape[:2]
    if n == 0:
        return np.zeros((steps, 0, plan.widths[l]), dtype=dtype)
    if isinstance(plan.W, list):  # a chip's weights (Plan.with_weights): its matrices
        I = (u @ plan.W[l - 1].T + plan.b[l - 1]).astype(dtype)
    else:  # the network's own (LayerMatrices): its layers' linear maps
        I = np.asarray(layer.linear(u.reshape((steps * n,) + u.shape[2:])), dtype=dtype)
        I = I.reshape(steps, n, plan.widths[l])
    if draws is None:
        return I
    mine = draws[rows]
    for d in weight_draws:
        local = np.flatnonzero(mine == d)
        if local.size == 0:
            continue
        W_d = apply_weight_records(plan.W[l - 1], batch, l, int(d))
        for f in fields:
            if f.layer == l:
                W_d = stuck_matrix(W_d, f, int(batch.keys[d]))
        if W_d is not plan.W[l - 1]:
            I[:, local] = (u[:, local] @ W_d.T + plan.b[l - 1]).astype(dtype)
    c_rows, neurons, modes, _ = _subset(crashes, rows, draws.size)
    paper = modes == CRASH_PAPER
    if paper.any():
        I[:, c_rows[paper], neurons[paper]] = plan.b[l - 1][neurons[paper]]
    return I


def _subset(records, rows, n):
    """``records`` (a tuple of arrays, the first their rows) of rows ``rows`` only, renumbered
    as positions in ``rows``."""
    if records is None:
        return None
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(rows.size)
    keep = pos[records[0]] >= 0
    return (pos[records[0][keep]],) + tuple(c[keep] for c in records[1:])


def _layer_records(batch, l: int, draws: np.ndarray) -> dict:
    """Layer ``l``'s records of rows with fault draws ``draws``:

    * ``weight_draws`` / ``tile_draws``: the draws with weight or tile records / tile records;
    * ``weights`` ``(rows, i, j, values)``, the last record of each (row, entry);
    * ``crashes`` ``(rows, neurons, modes, values)``: crashes of every step, the last record of
      each (row, neuron);
    * ``windows`` ``(rows, neurons, modes, values, start, stop)``: crashes of steps
      ``start:stop``, in record order (record order is application order);
    * ``params`` ``(rows, neurons, codes, factors)``: threshold and leak factors."""
    ptr = batch.ptr[l]
    start, stop = ptr[draws], ptr[draws + 1]
    counts = stop - start
    total = int(counts.sum())
    empty = np.zeros(0, dtype=np.int64)
    if total == 0:
        none = (empty, empty, empty, np.zeros(0))
        return {"weight_draws": empty, "tile_draws": empty, "weights": none, "crashes": none,
                "windows": none + (empty, empty), "params": none}
    rows = np.repeat(np.arange(draws.size), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    recs = np.repeat(start, counts) + offset
    kinds = batch.kind[recs]
    weight = kinds == REC_WEIGHT
    tile = kinds == REC_TILE
    out = {"weight_draws": np.unique(draws[rows[weight | tile]]),
           "tile_draws": np.unique(draws[rows[tile]])}
    w_rows, w_recs = _last(rows[weight], recs[weight], batch.out_start, batch.in_start)
    out["weights"] = (w_rows, batch.out_start[w_recs].astype(np.int64),
                      batch.in_start[w_recs].astype(np.int64), batch.value[w_recs])
    crash = kinds == REC_CRASH
    timed = crash & (batch.in_stop[recs] > 0)
    every = crash & ~timed
    c_rows, c_recs = _last(rows[every], recs[every], batch.out_start)
    out["crashes"] = (c_rows, batch.out_start[c_recs].astype(np.int64),
                      batch.crash_mode[c_recs].astype(np.int64), batch.value[c_recs])
    t_recs = recs[timed]
    out["windows"] = (rows[timed], batch.out_start[t_recs].astype(np.int64),
                      batch.crash_mode[t_recs].astype(np.int64), batch.value[t_recs],
                      batch.in_start[t_recs].astype(np.int64),
                      batch.in_stop[t_recs].astype(np.int64))
    neuron = kinds == REC_NEURON
    n_recs = recs[neuron]
    out["params"] = (rows[neuron], batch.out_start[n_recs].astype(np.int64),
                     batch.crash_mode[n_recs].astype(np.int64), batch.value[n_recs])
    return out


def _last(rows, recs, *columns):
    """The last record of each (row, columns...) combination, in row order."""
    if rows.size == 0:
        return rows, recs
    key = np.stack([rows] + [np.asarray(c[recs], dtype=np.int64) for c in columns])
    _, first_rev = np.unique(key[:, ::-1], axis=1, return_index=True)
    pick = np.sort(rows.size - 1 - first_rev)
    return rows[pick], recs[pick]


def _patch(plan, l, fast, n, weights, crashes):
    """The fused kernels' per-row faults of rows ``fast`` (see changed_scan)."""
    dtype = plan.dtype
    w_rows, w_i, w_j, w_val = weights
    mask = np.zeros(n, dtype=bool)
    mask[fast] = True
    keep = mask[w_rows]
    w_rows, w_i, w_j, w_val = w_rows[keep], w_i[keep], w_j[keep], w_val[keep]
    order = np.argsort(w_rows, kind="stable")
    w_rows, w_i, w_j, w_val = w_rows[order], w_i[order], w_j[order], w_val[order]
    W = plan.W[l - 1]
    delta = (w_val.astype(dtype) - W[w_i, w_j]).astype(dtype) if w_rows.size else \
        np.zeros(0, dtype=dtype)
    w_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(w_ptr, w_rows + 1, 1)
    c_rows, neurons, modes, _ = crashes
    paper = (modes == CRASH_PAPER) & mask[c_rows]
    b_rows, b_i = c_rows[paper], neurons[paper]
    order = np.argsort(b_rows, kind="stable")
    b_rows, b_i = b_rows[order], b_i[order]
    b_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(b_ptr, b_rows + 1, 1)
    return (np.cumsum(w_ptr), w_i, w_j, delta, np.cumsum(b_ptr), b_i,
            np.ascontiguousarray(plan.b[l - 1], dtype=dtype))


def _override(s, crashes, windows=None, inplace=False, T=1):
    """Crashed neurons' outputs (see the module docstring; a ``paper`` crash acted on the
    current already): ``crashes`` at every step, then ``windows`` at their steps (a signal
    still constant in time, ``s.shape[0] == 1``, becomes ``T`` steps); ``inplace``: ``s`` is
    this layer's own array."""
    timed = windows is not None and windows[0].size > 0
    held = crashes is not None and bool(np.any(crashes[2] != CRASH_PAPER))
    if not (held or timed):
        return s
    if timed and s.shape[0] != T:
        s = np.array(np.broadcast_to(s, (T,) + s.shape[1:]))
    elif not inplace:
        s = np.array(s, copy=True)
    if held:
        rows, neurons, modes, values = (c[crashes[2] != CRASH_PAPER] for c in crashes)
        s[:, rows, neurons] = np.where(modes == CRASH_STUCK, values, 0).astype(s.dtype)
    if timed:
        rows, neurons, modes, values, start, stop = windows
        length = stop - start
        k = np.repeat(np.arange(rows.size), length)
        steps = start[k] + np.arange(k.size) - np.repeat(np.cumsum(length) - length, length)
        out = np.where(modes == CRASH_STUCK, values, 0).astype(s.dtype)
        s[steps, rows[k], neurons[k]] = out[k]  # (one record per row and neuron)
    return s


def clean_cache(plan, X, engine: str):
    """The clean readout and every layer's outputs over time."""
    snn = plan.spiking
    X = np.ascontiguousarray(X, dtype=plan.dtype)
    n = X.shape[0]
    s0 = X[None] if snn.encoding == "current" else snn.input_spikes(X, np.arange(n))
    readout, kept, currents = _layers(plan, s0, 1, engine=engine, keep=True)
    return CleanCache(X=X, output=readout, extra={"spikes": kept, "currents": currents})


def _transposed(cache, plan, l: int) -> np.ndarray:
    """Layer ``l``'s matrix transposed, contiguous (kept in the cache's extras)."""
    key = ("Wt", l)
    if key not in cache.extra:
        cache.extra[key] = np.ascontiguousarray(np.asarray(plan.W[l - 1], dtype=plan.dtype).T)
    return cache.extra[key]


def propagate(plan, cache, batch, row_draw, row_input, engine: str):
    """Faulty readouts ``(n_rows, n_L)`` of rows ``(row_draw[r], row_input[r])``."""
    row_draw = np.asarray(row_draw, dtype=np.int64)
    row_input = np.asarray(row_input, dtype=np.int64)
    L = plan.n_layers
    fields = transient_fields(plan, batch)
    first_draw, _ = fault_layer_span(batch, L, [f.layer for f in fields])
    out = np.array(cache.output[row_input], copy=True)
    trains = cache.extra["spikes"]
    first_rows = first_draw[row_draw]
    for f in np.unique(first_rows):
        if f > L:
            continue
        sel = np.flatnonzero(first_rows == f)
        start = max(int(f), 1)
        s = trains[start - 1][:, row_input[sel]]  # (a copy: fancy indexing)
        draws = row_draw[sel]
        if f == 0:  # crashed inputs (an input has no bias: paper is silent)
            rec = _layer_records(batch, 0, draws)
            rows, neurons, modes, values = rec["crashes"]
            modes = np.where(modes == CRASH_STUCK, CRASH_STUCK, -1)
            s = _override(s, (rows, neurons, modes, values), rec["windows"], inplace=True,
                          T=plan.spiking.T)
        clean = ((cache, row_input[sel], f >= 1)  # (f = 0: the inputs themselves are faulty)
                 if engine == "numba" and not isinstance(plan.W, list) else None)
        readout, _ = _layers(plan, s, start, draws, batch, fields, engine, clean=clean)
        out[sel] = readout
    return out
