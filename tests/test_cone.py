"""The cone kernels (``neurosim.kernels.cone``) against plain NumPy references, and the cone
driver's promises: the same numbers whatever the threads, the chunk size or the thread that
calls it; rows that return to clean stop exactly; memory bounded by the chunk, not the rows;
conv layers too large to unfold run on the numba backend.

Each kernel is tested on random conv layers with every padding / stride / dilation / groups
setting of ``test_conv_backends.CONV_SETTINGS`` and every record kind (crashes in the three
semantics, weight records on real and on non-synapse entries, failed tiles).
"""

from __future__ import annotations

import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import neurosim as ns
from neurosim.activations import ACTIVATION_CODES
from neurosim.backends import cone, get_backend
from neurosim.backends.numba import one_blas_thread
from neurosim.errors import ValidationError
from neurosim.faults import FaultModel, NeuronCrash, SynapseStuck
from neurosim.kernels import cone as C
from neurosim.kernels.codes import CRASH_PAPER, CRASH_SILENT, CRASH_STUCK
from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.network import Network
from neurosim.plan import build_plan
from neurosim.sampler import RecordBuilder, sample_faults

from reference import reference_layer_rows
from test_conv_backends import CONV_SETTINGS

ACTS = ["relu", "tanh", "leaky_relu", "gelu", "hardswish", "elu"]


def _layer(case: int, dtype=np.float64) -> Conv2d:
    rng = np.random.default_rng(200 + case)
    settings = CONV_SETTINGS[case % len(CONV_SETTINGS)]
    g = settings.get("groups", 1)
    k = (3, 2) if case % 3 == 0 else (3, 3)
    act = ACTS[case % len(ACTS)]
    return Conv2d.build(rng.normal(0, 0.5, (8, 4 // g) + k).astype(dtype),
                        rng.normal(0, 0.2, 8).astype(dtype), (4, 9, 8), activation=act,
                        **settings)


def _spec(layer: Conv2d, dtype):
    net = Network([layer, Flatten(), Dense(np.ones((2, layer.n_out)), np.zeros(2))],
                  dtype=dtype)
    plan = build_plan(net, NeuronCrash(0.1))
    return plan, cone.cone_spec(plan)


def _records(layer: Conv2d, n_draws: int, rng) -> "object":
    """Every record kind on layer 1 (draw d gets a mix), built as the sampler builds them."""
    rec = RecordBuilder()
    A = layer.dense_matrix()
    i, j = np.nonzero(A)
    for d in range(n_draws):
        kind = d % 4
        if kind == 0:
            n = rng.choice(layer.n_out, 3, replace=False)
            for mode, nn in zip((CRASH_SILENT, CRASH_PAPER, CRASH_STUCK), n):
                rec.add_crash(1, [d], [nn], mode, 0.7)
        elif kind == 1:
            pick = rng.choice(i.size, 4, replace=False)
            rec.add_weight(1, np.full(4, d), i[pick], j[pick], rng.normal(size=4))
            # An entry that is no synapse (a connection table's zero becomes a weight).
            zi, zj = np.nonzero(A == 0)
            if zi.size:
                q = rng.integers(zi.size)
                rec.add_weight(1, [d], [zi[q]], [zj[q]], [0.9])
        elif kind == 2:
            a = int(rng.integers(0, layer.n_out - 10))
            b = int(rng.integers(0, layer.n_in - 20))
            rec.add_tile(1, [d], [a], [a + 7], [b], [b + 15])
        # kind 3: no records (only the input changes)
    return rec.build(n_draws, 1)


@pytest.mark.parametrize("case", range(len(CONV_SETTINGS)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_dense_matches_numpy(case, dtype):
    layer = _layer(case, dtype)
    plan, spec = _spec(layer, dtype)
    X = np.random.default_rng(case).normal(size=(7, layer.n_in)).astype(dtype)
    ref = layer.linear(X.astype(np.float64))
    tol = 1e-10 if dtype == np.float64 else 2e-5
    args = (spec.kernel[0], spec.kernel_hwc[0], spec.channel_bias[0], spec.geo[0])
    with one_blas_thread():
        for hwc in (False, True):
            Z = C.conv_dense(X, *args, hwc)
            np.testing.assert_allclose(Z, ref, rtol=tol, atol=tol)
            # A row computed alone, or with other rows, gives the same numbers.
            for k in (0, 3, 6):
                np.testing.assert_array_equal(C.conv_dense(X[k:k + 1], *args, hwc)[0], Z[k])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_rows_matches_numpy_row_by_row(dtype):
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(70, 433)).astype(dtype)
    W = rng.normal(size=(17, 433)).astype(dtype)
    b = rng.normal(size=17).astype(dtype)
    with one_blas_thread():
        Z = C.dense_rows(Y, W, b)
        for n in (1, 7, 65):  # any number of rows: the same numbers per row
            np.testing.assert_array_equal(C.dense_rows(Y[:n].copy(), W, b), Z[:n])
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(Z, Y.astype(np.float64) @ W.T.astype(np.float64) + b,
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("case", range(len(CONV_SETTINGS)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_sparse_matches_full_recomputation(case, dtype):
    """Sparse input changes and every record kind: the listed outputs, written into the clean
    ones, are the reference's faulty outputs, and nothing outside the list changed."""
    rng = np.random.default_rng(case)
    layer = _layer(case, dtype)
    plan, spec = _spec(layer, dtype)
    m, n_draws = 3, 12
    Yc = rng.normal(size=(m, layer.n_in)).astype(dtype)
    with one_blas_thread():
        Zc = C.conv_dense(Yc, spec.kernel[0], spec.kernel_hwc[0], spec.channel_bias[0],
                          spec.geo[0], spec.hwc[0])
    code = ACTIVATION_CODES[layer.activation.name]
    a, bta = float(layer.activation.alpha), float(layer.activation.beta)
    from neurosim.kernels.propagate import activate
    Yc_out = activate(Zc, code, a, bta)
    batch = _records(layer, n_draws, rng)
    n_rows = 2 * n_draws
    row_draw = np.arange(n_rows, dtype=np.int64) % n_draws
    row_input = np.arange(n_rows, dtype=np.int64) % m
    # Input changes: none, one entry, a few, a fifth of the map (row 15: no change and no
    # record, so it stays clean).
    counts = np.resize(np.array([0, 1, 5, layer.n_in // 5, 2], dtype=np.int64), n_rows)
    ptr = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    idx = np.concatenate([rng.choice(layer.n_in, c, replace=False) for c in counts]).astype(np.int64)
    val = rng.normal(size=idx.size).astype(dtype)
    Yin = Yc[row_input].copy()
    for r in range(n_rows):
        Yin[r, idx[ptr[r]:ptr[r] + counts[r]]] = val[ptr[r]:ptr[r] + counts[r]]
    room = np.full(n_rows, layer.n_out, dtype=np.int64)
    rows = np.arange(n_rows, dtype=np.int64)
    cols = (batch.kind, batch.out_start, batch.out_stop, batch.in_start, batch.in_stop,
            batch.value, batch.crash_mode)
    layer_args = (Yc, Zc, Yc_out, spec.kernel[0], spec.kernel_t[0], spec.channel_bias[0],
                  spec.geo[0], *spec.taps[0], code, a, bta)
    out_ptr, out_idx, out_val, out_cnt = C.conv_sparse(
        rows, ptr, counts, idx, val, *layer_args, row_draw, row_input, batch.ptr[1], *cols,
        room, 3)
    assert np.array_equal(out_ptr, rows * layer.n_out)
    ref = reference_layer_rows(layer, Yin, batch, 1, row_draw)
    tol = 1e-9 if dtype == np.float64 else 3e-5
    for r in range(n_rows):
        got = Yc_out[row_input[r]].astype(np.float64).copy()
        sl = slice(out_ptr[r], out_ptr[r] + out_cnt[r])
        assert len(set(out_idx[sl].tolist())) == out_cnt[r]  # distinct outputs
        got[out_idx[sl]] = out_val[sl]
        np.testing.assert_allclose(got, ref[r], rtol=tol, atol=tol)
        # Every listed output did change (bit-wise), and every output that changed by more
        # than rounding is listed.
        assert np.all(out_val[sl] != Yc_out[row_input[r], out_idx[sl]])
        moved = np.flatnonzero(np.abs(ref[r] - Yc_out[row_input[r]]) > 10 * tol)
        assert set(moved.tolist()) <= set(out_idx[sl].tolist())
    assert out_cnt.max() > 0 and (out_cnt == 0).any()  # both cases happened
    # With too little room a row says so (-1) instead of writing past it: the rows that fit
    # get the same lists.
    small = np.full(n_rows, 2, dtype=np.int64)
    ptr2, idx2, val2, cnt2 = C.conv_sparse(
        rows, ptr, counts, idx, val, *layer_args, row_draw, row_input, batch.ptr[1], *cols,
        small, 2)
    assert idx2.size == 2 * n_rows and np.array_equal(ptr2, rows * 2)
    assert np.array_equal(cnt2 == -1, out_cnt > 2)
    for r in np.flatnonzero(cnt2 >= 0):
        np.testing.assert_array_equal(idx2[ptr2[r]:ptr2[r] + cnt2[r]],
                                      out_idx[out_ptr[r]:out_ptr[r] + out_cnt[r]])


POOLS = [lambda: MaxPool2d(2), lambda: MaxPool2d(3, 2, 1), lambda: MaxPool2d((3, 2), (1, 2)),
         lambda: AvgPool2d(2), lambda: AvgPool2d(3, 1, 1),
         lambda: AvgPool2d(3, 2, 1, count_include_pad=False), lambda: GlobalAvgPool2d()]


@pytest.mark.parametrize("k", range(len(POOLS)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pooling_kernels_match_the_transforms(k, dtype):
    rng = np.random.default_rng(k)
    t = POOLS[k]().bind((3, 9, 8))
    stage = cone._pool_stage(t, np.dtype(dtype))
    m, n_rows = 3, 16
    Yc = rng.normal(size=(m, t.n_in)).astype(dtype)
    Uc = C.pool_dense(Yc, stage.geo, stage.div, stage.count)
    ref_clean = t.apply(Yc)
    if isinstance(t, GlobalAvgPool2d):  # NumPy's mean sums pairwise: equal to rounding
        np.testing.assert_allclose(Uc, ref_clean, rtol=1e-6, atol=1e-6)
    else:  # the same taps in the same order: bit-identical
        np.testing.assert_array_equal(Uc, ref_clean)
    counts = np.array([0, 1, 4, t.n_in // 3] * (n_rows // 4), dtype=np.int64)
    ptr = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    idx = np.concatenate([rng.choice(t.n_in, c, replace=False) for c in counts]).astype(np.int64)
    val = rng.normal(size=idx.size).astype(dtype)
    row_input = np.arange(n_rows, dtype=np.int64) % m
    Yin = Yc[row_input].copy()
    for r in range(n_rows):
        Yin[r, idx[ptr[r]:ptr[r] + counts[r]]] = val[ptr[r]:ptr[r] + counts[r]]
    whole = C.pool_dense(Yin, stage.geo, stage.div, stage.count)
    room = np.full(n_rows, t.n_out, dtype=np.int64)
    out_ptr, out_idx, out_val, out_cnt = C.pool_sparse(
        np.arange(n_rows, dtype=np.int64), ptr, counts, idx, val, Yc, Uc, stage.geo, stage.div,
        stage.count, *stage.tables, row_input, room, 3)
    for r in range(n_rows):
        got = Uc[row_input[r]].copy()
        sl = slice(out_ptr[r], out_ptr[r] + out_cnt[r])
        got[out_idx[sl]] = out_val[sl]
        # The windows recomputed from the lists are the whole-row pooling, bit for bit.
        np.testing.assert_array_equal(got, whole[r])
        np.testing.assert_array_equal(np.flatnonzero(whole[r] != Uc[row_input[r]]),
                                      np.sort(out_idx[sl]))
    ref = t.apply(Yin.astype(np.float64))
    np.testing.assert_allclose(whole, ref, rtol=2e-6, atol=2e-6)


def test_sparsify_and_densify_round_trip():
    rng = np.random.default_rng(0)
    Yc = rng.normal(size=(3, 40))
    row_input = np.array([0, 1, 2, 0], dtype=np.int64)
    Y = Yc[row_input].copy()
    Y[0, [3, 7]] = 1.5
    Y[1, :] += 1.0  # every entry changed
    Y[3, 39] = -2.0  # row 2 unchanged
    rows = np.arange(4, dtype=np.int64)
    ptr, idx, val, cnt = C.sparsify(rows, Y, Yc, row_input, 10)
    assert cnt.tolist() == [2, -1, 0, 1]
    keep = np.array([0, 2, 3], dtype=np.int64)
    np.testing.assert_array_equal(C.densify(keep, ptr, cnt, idx, val, Yc, row_input), Y[keep])


def test_the_kernel_wrappers_refuse_bad_arrays():
    """Each public wrapper names the parameter and says what it expected (the private
    kernels would read out of bounds)."""
    layer = _layer(1)
    plan, spec = _spec(layer, np.float64)
    args = (spec.kernel[0], spec.kernel_hwc[0], spec.channel_bias[0], spec.geo[0], False)
    X = np.zeros((2, layer.n_in))
    with pytest.raises(ValidationError, match="'Y' parameter of conv_dense .* shape \\(n, 288\\)"):
        C.conv_dense(X[:, :-1].copy(), *args)
    with pytest.raises(ValidationError, match="'Kf' parameter of conv_dense .* float64"):
        C.conv_dense(X, spec.kernel[0].astype(np.float32), *args[1:])
    with pytest.raises(ValidationError, match="C-contiguous"):
        C.conv_dense(np.asfortranarray(np.zeros((3, layer.n_in))), *args)
    Yc = np.zeros((2, 40))
    with pytest.raises(ValidationError, match="'rows' parameter of sparsify .* \\[0, 1\\]"):
        C.sparsify(np.array([0, 5]), Yc, Yc, np.zeros(2, np.int64), 4)
    with pytest.raises(ValidationError, match="in_idx"):
        C.densify(np.array([0]), np.zeros(1, np.int64), np.array([1]), np.array([40]),
                  np.zeros(1), Yc, np.zeros(1, np.int64))
    # A record that addresses an output the layer does not have.
    batch = _records(layer, 4, np.random.default_rng(0))
    bad = batch.out_start.copy()
    bad[batch.ptr[1][0]] = layer.n_out + 5
    Z = C.conv_dense(X, *args)
    with pytest.raises(ValidationError, match="'out_start' parameter of conv_finish_dense"):
        C.conv_finish_dense(Z, np.empty_like(Z), X, spec.kernel[0], spec.channel_bias[0],
                            spec.geo[0], 0, 0.0, 0.0, np.zeros(2, np.int64), batch.ptr[1],
                            batch.kind, bad, batch.out_stop, batch.in_start, batch.in_stop,
                            batch.value, batch.crash_mode)
    with pytest.raises(ValidationError, match="run outside in_idx"):
        C.densify(np.array([0]), np.zeros(1, np.int64), np.array([3]), np.array([1]),
                  np.zeros(1), Yc, np.zeros(1, np.int64))


@pytest.mark.parametrize("size,out,kernel,stride,pad,dil", [
    (9, 9, 3, 1, 1, 1), (9, 5, 3, 2, 1, 1), (8, 4, 3, 1, 2, 2), (7, 3, 2, 3, 0, 1),
    (8, 8, 1, 1, 0, 1)])
def test_tap_and_window_tables_match_brute_force(size, out, kernel, stride, pad, dil):
    taps, n = C.axis_taps(size, out, kernel, stride, pad, dil)
    for i in range(size):
        brute = {(k, o) for k in range(kernel) for o in range(out)
                 if o * stride - pad + k * dil == i}
        assert {tuple(taps[i, a]) for a in range(n[i])} == brute
    win = C.pool_windows(size, out, kernel, stride, pad)
    for i in range(size):
        brute = [o for o in range(out) if o * stride - pad <= i < o * stride - pad + kernel]
        if brute:
            assert (win[i, 0], win[i, 1]) == (brute[0], brute[-1])
        else:
            assert win[i, 0] > win[i, 1]
    c = C.coords((2, 3, 4))
    assert c.shape == (24, 3) and tuple(c[17]) == (1, 1, 1)


# --- the driver --------------------------------------------------------------------------------

def _vgg(dtype=np.float32, size=12):
    rng = np.random.default_rng(5)

    def conv(ci, co, hw, **kw):
        return Conv2d.build(rng.normal(0, np.sqrt(2 / (9 * ci)), (co, ci, 3, 3)).astype(dtype),
                            rng.normal(0, 0.1, co).astype(dtype), (ci, hw, hw), padding=1,
                            activation="relu", **kw)
    h = size // 2
    return Network([conv(2, 8, size), conv(8, 8, size), MaxPool2d(2), conv(8, 12, h),
                    AvgPool2d(2), Flatten("hwc"),
                    Dense(rng.normal(0, 0.2, (16, 12 * (h // 2) ** 2)).astype(dtype),
                          np.zeros(16, dtype), "relu"),
                    Dense(rng.normal(0, 0.3, (5, 16)).astype(dtype), np.zeros(5, dtype))],
                   dtype=dtype)


def _rows(plan, n_draws=120, seed=3, m=6):
    batch = sample_faults(plan, np.random.default_rng(seed), n_draws)
    rows = np.flatnonzero(batch.draw_has_fault)
    return batch, np.repeat(rows, m), np.tile(np.arange(m, dtype=np.int64), rows.size)


def test_same_numbers_whatever_the_chunk_size_the_thread_and_the_calling_thread(monkeypatch):
    import numba

    net = _vgg()
    X = np.random.default_rng(0).random((6, 2, 12, 12)).astype(np.float32)
    plan = build_plan(net, FaultModel([NeuronCrash(0.004, layers=(0, 1, 2, 3, 4)),
                                       SynapseStuck(0.002, 0.002)]))
    backend = get_backend("numba")
    cache = backend.clean_cache(plan, net.check_input(X))
    batch, rd, ri = _rows(plan)
    base = backend.propagate(plan, cache, batch, rd, ri)
    assert np.abs(base - cache.output[ri]).max() > 1e-3
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = backend.propagate(plan, cache, batch, rd, ri)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(one, base)
    monkeypatch.setattr(cone, "CHUNK_BYTES", 1 << 12)  # chunks of 64 rows
    assert cone.chunk_rows(plan) == 64 < rd.size
    np.testing.assert_array_equal(backend.propagate(plan, cache, batch, rd, ri), base)
    # From a worker thread (its session limits BLAS as the main thread does): the same.
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(backend.propagate, plan, cache, batch, rd, ri).result()
        cache2 = pool.submit(backend.clean_cache, plan, net.check_input(X)).result()
    np.testing.assert_array_equal(other, base)
    for a, b in zip(cache2.Y, cache.Y):
        np.testing.assert_array_equal(a, b)
    # Rows are independent: a row computed with others equals the row alone.
    for k in (0, 17, rd.size - 1):
        np.testing.assert_array_equal(
            backend.propagate(plan, cache, batch, rd[k:k + 1], ri[k:k + 1])[0], base[k])


@pytest.mark.parametrize("fraction", [0.0, 0.05, 1.0])
def test_sparse_and_dense_paths_agree(monkeypatch, fraction):
    """All rows dense from the first change (0), sparse until they fill the map (1), and
    between: the same outputs to rounding, and the NumPy reference's."""
    net = _vgg(np.float64)
    X = np.random.default_rng(1).random((6, 2 * 12 * 12))
    plan = build_plan(net, FaultModel([NeuronCrash(0.004, semantics="paper",
                                                   layers=(0, 1, 2, 3, 4)),
                                       SynapseStuck(0.003, 0.003)]))
    batch, rd, ri = _rows(plan)
    ref_backend = get_backend("numpy")
    ref = ref_backend.propagate(plan, ref_backend.clean_cache(plan, X), batch, rd, ri)
    monkeypatch.setattr(cone, "DENSE_FRACTION", fraction)
    backend = get_backend("numba")
    got = backend.propagate(plan, backend.clean_cache(plan, X), batch, rd, ri)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_a_change_that_vanishes_leaves_the_output_exactly_clean():
    """A crash of a neuron whose clean output is 0 (ReLU), and a change that is not the max
    of its pooling window, change nothing: the output is the clean one bit for bit."""
    net = _vgg()
    X = np.random.default_rng(2).random((4, 2, 12, 12)).astype(np.float32)
    plan = build_plan(net, NeuronCrash(0.01))
    backend = get_backend("numba")
    cache = backend.clean_cache(plan, net.check_input(X))
    y1 = cache.Y[1]
    dead = np.flatnonzero(y1[0] == 0)[:5]
    # Layer 2 feeds a 2x2 max pooling: a neuron below its window's max, lowered a little.
    y2 = cache.Y[2][0].reshape(8, 12, 12)
    win = y2.reshape(8, 6, 2, 6, 2)
    c, wy, wx = np.unravel_index(np.argmax(win.max(axis=(2, 4)) - win.min(axis=(2, 4))),
                                 (8, 6, 6))
    block = win[c, wy, :, wx, :]
    small = np.unravel_index(np.argmin(block), (2, 2))
    neuron = (c * 12 + 2 * wy + small[0]) * 12 + 2 * wx + small[1]
    assert y2.ravel()[neuron] < block.max()
    rec = RecordBuilder()
    for d, i in enumerate(dead):
        rec.add_crash(1, [d], [int(i)], CRASH_SILENT)
    rec.add_crash(2, [dead.size], [int(neuron)], CRASH_STUCK, float(block.min()) - 1e-3
                  if block.min() > 1e-3 else 0.0)
    batch = rec.build(dead.size + 1, plan.n_layers)
    rd = np.arange(dead.size + 1, dtype=np.int64)
    out = backend.propagate(plan, cache, batch, rd, np.zeros_like(rd))
    np.testing.assert_array_equal(out, np.repeat(cache.output[:1], rd.size, axis=0))


def test_memory_is_bounded_by_the_chunk_not_the_rows(monkeypatch):
    """Peak memory of a pass grows with its output (n_rows x n_L), not with the rows' maps:
    8x the rows, about the same peak besides the output."""
    net = _vgg(size=16)
    X = np.random.default_rng(3).random((8, 2, 16, 16)).astype(np.float32)
    plan = build_plan(net, NeuronCrash(0.01))
    backend = get_backend("numba")
    cache = backend.clean_cache(plan, net.check_input(X))
    monkeypatch.setattr(cone, "CHUNK_BYTES", 1 << 20)
    peaks = []
    for n_draws in (100, 800):
        batch, rd, ri = _rows(plan, n_draws=n_draws, m=8)
        backend.propagate(plan, cache, batch, rd[:64], ri[:64])  # compiled, warm
        tracemalloc.start()
        backend.propagate(plan, cache, batch, rd, ri)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peaks.append(peak - rd.size * (5 * 4 + 3 * 8 * 4))  # the output and row arrays
        per_map = rd.size * max(plan.widths) * 4
        assert peak < per_map / 4  # far below one whole map per row
    assert peaks[1] < 2.5 * peaks[0] + (1 << 21)


def test_a_conv_layer_too_large_to_unfold_runs_on_the_numba_backend():
    rng = np.random.default_rng(0)
    conv = Conv2d.build(rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32),
                        np.zeros(8, np.float32), (1, 72, 72), padding=1, activation="relu")
    assert conv.n_out * conv.n_in > 1 << 27
    net = Network([conv, MaxPool2d(4), Flatten(),
                   Dense(rng.normal(0, 0.05, (10, 8 * 18 * 18)).astype(np.float32),
                         np.zeros(10, np.float32))])
    X = rng.random((3, 1, 72, 72)).astype(np.float32)
    result = ns.simulate(net, NeuronCrash(1e-4), X, n_samples=20, seed=0)
    assert result.n_pairs == 60 and result.n_faulty_pairs > 0
    with pytest.raises(ValidationError, match="numba backend"):
        ns.simulate(net, NeuronCrash(1e-4), X, n_samples=2, seed=0, backend="numpy")


def test_stratified_estimate_on_conv_agrees_across_backends_and_skips_soundly():
    """The exact single-fault stratum (every neuron on every input, through the cones) gives
    the NumPy backend's counts; the Prop. 2 skip (conv operator norms) drops no failure."""
    from neurosim.estimators.stratified import StratifiedEstimator
    from neurosim.runners import SerialRunner

    net = _vgg(np.float64)
    X = np.random.default_rng(4).random((5, 2 * 12 * 12))
    plan = build_plan(net, NeuronCrash(1e-4))
    fails = {}
    for name in ("numba", "numpy"):
        backend = get_backend(name)
        cache = backend.clean_cache(plan, X)
        for skip in (True, False):
            est = StratifiedEstimator(plan, backend, cache, None, metric="flip", eps=0.5,
                                      n_samples=50, seed=1)
            if not skip:
                est._skip_masks = lambda: None
            with backend.session():
                res = est.run(SerialRunner())
            ones = [s for s in res.strata if s.k == 1]
            fails[name, skip] = [s.fail_fraction for s in ones]
            if skip:
                assert sum(m.sum() for m in est.tasks.skip.values()) > 0
    assert fails["numba", True] == fails["numba", False] == fails["numpy", True]
    assert max(fails["numba", True]) > 0


def test_sampled_single_crash_strata_skip_only_rows_that_cannot_fail(monkeypatch):
    """With the single faults sampled (a work budget of 1 row), rows whose crash the Prop. 2
    mask says cannot fail are not propagated: the counts are those of propagating them all,
    and fewer rows are evaluated."""
    from neurosim.estimators import stratified
    from neurosim.estimators.stratified import StratifiedEstimator
    from neurosim.runners import SerialRunner

    net = _vgg(np.float64)
    X = np.random.default_rng(6).random((5, 2 * 12 * 12))
    plan = build_plan(net, NeuronCrash(3e-4))
    backend = get_backend("numba")
    cache = backend.clean_cache(plan, X)
    out = {}
    for skip in (True, False):
        if not skip:
            monkeypatch.setattr(stratified._Tasks, "_provably_harmless",
                                lambda self, spec, batch, row_input:
                                np.zeros(batch.n_draws, dtype=bool))
        est = StratifiedEstimator(plan, backend, cache, None, metric="flip", eps=0.5,
                                  n_samples=40, seed=2, work_budget=1)
        with backend.session():
            res = est.run(SerialRunner())
        singles = [s for s in res.strata if s.k == 1]
        assert singles and all(s.method == "sampled" for s in singles)
        out[skip] = ([(s.fail_fraction, s.lower, s.upper) for s in singles], res.rows)
    assert out[True][0] == out[False][0]
    assert max(f for f, _, _ in out[True][0]) > 0
    assert out[True][1] < out[False][1]
