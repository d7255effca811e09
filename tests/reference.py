"""Slow, obviously-correct NumPy references of the Numba kernels (see ``tests/test_kernels.py``).

Nothing here shares code with the backends or ``neurosim.kernels``: the faulty network of
every row is built explicitly and run with a plain forward pass in float64.
"""

from __future__ import annotations

import numpy as np

from neurosim.faults import (CRASH_PAPER, CRASH_SILENT, CRASH_STUCK, REC_CRASH, REC_TILE,
                             REC_WEIGHT)


def records_by_layer_draw(batch) -> dict:
    """``{(layer, draw): [record, ...]}`` from one scan of every record (``ptr`` is not used)."""
    index: dict = {}
    for k in range(batch.kind.size):
        key = (int(batch.layer[k]), int(batch.draw[k]))
        index.setdefault(key, []).append({
            "kind": int(batch.kind[k]), "out_start": int(batch.out_start[k]),
            "out_stop": int(batch.out_stop[k]), "in_start": int(batch.in_start[k]),
            "in_stop": int(batch.in_stop[k]), "value": float(batch.value[k]),
            "crash_mode": int(batch.crash_mode[k]), "core": int(batch.core[k])})
    return index


def faulty_weights(plan, index: dict, draw: int) -> list[np.ndarray]:
    """Weight matrices of layers 1..L (float64) as fault sample ``draw`` leaves them."""
    weights = []
    for l in range(1, plan.n_layers + 1):
        W = np.array(plan.W[l - 1], dtype=np.float64, copy=True)
        records = index.get((l, draw), [])
        for r in records:
            if r["kind"] == REC_WEIGHT:
                W[r["out_start"], r["in_start"]] = r["value"]
        for r in records:  # a failed tile reads 0, whatever its cells hold
            if r["kind"] == REC_TILE:
                W[r["out_start"]:r["out_stop"], r["in_start"]:r["in_stop"]] = 0.0
        weights.append(W)
    return weights


def _apply_crashes(y, records, bias, activation, input_layer: bool):
    """Each crash record's semantics; a silent crash (a core failure) wins over the others."""
    silent, other = set(), {}
    for r in records:
        if r["kind"] != REC_CRASH:
            continue
        if r["crash_mode"] == CRASH_SILENT:
            silent.add(r["out_start"])
        else:
            other[r["out_start"]] = r
    for i, r in other.items():
        if i in silent:
            continue
        if r["crash_mode"] == CRASH_PAPER:
            # Incoming weights zeroed: z_i = b_i. The input layer has no weights or bias, so
            # "paper" is "silent" there.
            y[i] = 0.0 if input_layer else float(activation(np.array([float(bias[i])]))[0])
        elif r["crash_mode"] == CRASH_STUCK:
            y[i] = r["value"]
        else:  # pragma: no cover
            raise ValueError(r["crash_mode"])
    for i in silent:
        y[i] = 0.0
    return y


def reference_row(plan, x, index: dict, draw: int) -> np.ndarray:
    """Faulty output (float64) of input ``x`` under fault sample ``draw``.

    ``index`` is :func:`records_by_layer_draw` of the batch.
    """
    weights = faulty_weights(plan, index, draw)
    acts = plan.network.activations
    y = np.array(x, dtype=np.float64, copy=True)
    y = _apply_crashes(y, index.get((0, draw), []), None, None, input_layer=True)
    for l in range(1, plan.n_layers + 1):
        bias = np.asarray(plan.b[l - 1], dtype=np.float64)
        z = weights[l - 1] @ y + bias
        y = np.asarray(acts[l - 1](z), dtype=np.float64).copy()
        y = _apply_crashes(y, index.get((l, draw), []), bias, acts[l - 1], input_layer=False)
    return y


def reference_outputs(plan, X, batch, row_draw, row_input) -> np.ndarray:
    """Faulty outputs (float64) of the rows ``(row_draw[r], row_input[r])``."""
    X = np.asarray(X, dtype=np.float64)
    row_draw = np.asarray(row_draw)
    row_input = np.asarray(row_input)
    index = records_by_layer_draw(batch)
    out = np.empty((row_draw.size, plan.widths[-1]), dtype=np.float64)
    for r, (d, x) in enumerate(zip(row_draw, row_input)):
        out[r] = reference_row(plan, X[int(x)], index, int(d))
    return out


# --- integer weight words ----------------------------------------------------------------------

def _word(value: int, bits: int, signed: bool) -> str:
    """Bit string (most significant bit first) of ``value`` in a ``bits`` wide word."""
    if signed:
        assert -(2 ** (bits - 1)) <= value < 2 ** (bits - 1), value
        if value < 0:
            value += 2 ** bits
    else:
        assert 0 <= value < 2 ** bits, value
    s = format(value, "b").rjust(bits, "0")
    assert len(s) == bits
    return s


def _unword(s: str, signed: bool) -> int:
    value = int(s, 2)
    if signed and s[0] == "1":
        value -= 2 ** len(s)
    return value


def _flip(s: str, mask: int) -> str:
    bits = len(s)
    chars = list(s)
    for k in range(bits):  # bit k (value 2**k) is character bits - 1 - k
        if (mask >> k) & 1:
            pos = bits - 1 - k
            chars[pos] = "1" if chars[pos] == "0" else "0"
    return "".join(chars)


def word_of(q: int, bits: int, step: int, magnitude_sign: int) -> str:
    """The stored word of integer weight ``q`` (see :func:`reference_word_flip`)."""
    if magnitude_sign:
        return _word(abs(int(q)), bits, signed=False)
    assert int(q) % step == 0, (q, step)
    return _word(int(q) // step, bits, signed=True)


def reference_word_flip(Q, mask, bits: int, step: int, magnitude_sign: int) -> np.ndarray:
    """Integer weights after flipping the bits set in ``mask`` of each stored word.

    Two's complement words hold ``Q / step``; with ``magnitude_sign`` = +1 / -1 the word is the
    magnitude ``|Q|`` and the result takes that sign.
    """
    Q = np.asarray(Q)
    mask = np.broadcast_to(np.asarray(mask), Q.shape)
    out = np.empty(Q.shape, dtype=np.int64)
    for idx in np.ndindex(Q.shape):
        s = _flip(word_of(int(Q[idx]), bits, step, magnitude_sign), int(mask[idx]))
        if magnitude_sign:
            out[idx] = magnitude_sign * _unword(s, signed=False)
        else:
            out[idx] = step * _unword(s, signed=True)
    return out


def reference_layer_rows(layer, Yin, batch, l: int, rows_draw) -> np.ndarray:
    """Layer ``l`` of each row in full, from its whole input ``Yin[r]``, in float64:
    ``phi(A_d y + b)`` with draw d's records written into the unfolded matrix ``A``, then the
    crashes (the reference of the cone kernels, ``kernels/cone.py``)."""
    A = layer.dense_matrix().astype(np.float64)
    b = layer.bias.astype(np.float64)
    act = layer.activation
    out = np.empty((Yin.shape[0], layer.n_out))
    for r, d in enumerate(rows_draw):
        sl = batch.records(l, int(d))
        Ad = A.copy()
        for f in range(sl.start, sl.stop):
            if batch.kind[f] == 1:
                Ad[batch.out_start[f], batch.in_start[f]] = batch.value[f]
            elif batch.kind[f] == 2:
                Ad[batch.out_start[f]:batch.out_stop[f], batch.in_start[f]:batch.in_stop[f]] = 0
        y = act(Ad @ Yin[r].astype(np.float64) + b)
        for f in range(sl.start, sl.stop):
            if batch.kind[f] == 0:
                i = batch.out_start[f]
                mode = batch.crash_mode[f]
                y[i] = 0.0 if mode == CRASH_SILENT else (
                    act(np.array([b[i]]))[0] if mode == CRASH_PAPER else batch.value[f])
        out[r] = y
    return out
