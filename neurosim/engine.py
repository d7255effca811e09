"""The builder and the fast path: lower a network and a fault model to arrays, sample sparse
fault sets, and run the faulty forward pass with the kernels of ``neurosim.kernels``.

Nothing here is public API; :func:`neurosim.simulate` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from threadpoolctl import ThreadpoolController

from neurosim.errors import ValidationError
from neurosim.faults import (
    F_CRASH, F_TILE, F_WEIGHT, SEM_PAPER, SEM_SILENT, SEM_STUCK, FaultModel,
)
from neurosim.kernels import propagate as K
from neurosim.network import ACTIVATION_CODES, Network

_SEMANTICS = {"silent": SEM_SILENT, "paper": SEM_PAPER, "stuck": SEM_STUCK}


@dataclass
class Plan:
    """Everything the sampler and the kernels need, as arrays."""

    network: Network
    dtype: np.dtype
    widths: list
    W: list
    b: list
    act_codes: list
    alphas: list
    crash_rates: np.ndarray          # layers 0..L
    crash_sem: int
    crash_value: float
    stuck_p0: float
    stuck_p1: float
    stuck_max_pos: list              # per layer 1..L (index l-1): W of a positive stuck-at-max synapse
    stuck_max_neg: list              # per layer 1..L: |W| of a negative stuck-at-max synapse
    bitflip_p: float
    core_p: float
    mapping: object = None           # neurosim.mapping.Mapping or None

    @property
    def n_layers(self) -> int:
        return len(self.W)


def build_plan(target, faults: FaultModel, use_float: bool = False) -> Plan:
    """Lower ``target`` (a Mapping or a Network) and ``faults`` to a :class:`Plan`.

    On a mapping the quantized network is simulated unless ``use_float``; bit flips and core
    failures need a mapping.
    """
    from neurosim.mapping import Mapping

    mapping = target if isinstance(target, Mapping) else None
    if mapping is None and not isinstance(target, Network):
        raise ValidationError(
            "The first argument of simulate must be a Mapping (neurosim.map_network) or a "
            f"Network. Got {type(target).__name__} instead."
        )
    network = target if mapping is None else (
        mapping.network if use_float else mapping.quantized_network())
    L = network.n_layers
    crash = faults.get("crash")
    stuck = faults.get("stuck")
    flip = faults.get("bitflip")
    core = faults.get("core")
    needs_mapping = [p.kind for p in (flip, core) if p is not None and not p.is_null()]
    if needs_mapping and mapping is None:
        raise ValidationError(
            f"The {' and '.join(needs_mapping)} fault models need a chip mapping (the integer "
            "weight words, the cores); pass a Mapping from neurosim.map_network."
        )
    if flip is not None and not flip.is_null() and use_float:
        raise ValidationError(
            "Bit flips act on the chip's integer weight words; they cannot be simulated on the "
            "float network (drop --float / use_float, or the bitflip fault)."
        )
    if mapping is not None and not use_float:
        # The largest value the word holds on each side (two's complement: 2^(b-1) - 1 up,
        # 2^(b-1) down).
        stuck_pos = [q.scale * q.q_max for q in mapping.quantization]
        stuck_neg = [q.scale * -q.q_min for q in mapping.quantization]
    else:
        stuck_pos = stuck_neg = [float(np.abs(layer.W).max()) for layer in network.layers]
    return Plan(
        network=network,
        dtype=network.dtype,
        widths=network.widths,
        W=[np.ascontiguousarray(layer.W) for layer in network.layers],
        b=[np.ascontiguousarray(layer.b) for layer in network.layers],
        act_codes=[ACTIVATION_CODES[a.name] for a in network.activations],
        alphas=[float(a.alpha) for a in network.activations],
        crash_rates=crash.layer_rates(L) if crash is not None else np.zeros(L + 1),
        crash_sem=_SEMANTICS[crash.semantics] if crash is not None else SEM_SILENT,
        crash_value=crash.value if crash is not None else 0.0,
        stuck_p0=stuck.p_zero if stuck is not None else 0.0,
        stuck_p1=stuck.p_max if stuck is not None else 0.0,
        stuck_max_pos=stuck_pos,
        stuck_max_neg=stuck_neg,
        bitflip_p=flip.p_bit if flip is not None else 0.0,
        core_p=core.p_core if core is not None else 0.0,
        mapping=mapping,
    )


# --- the clean cache --------------------------------------------------------------------------

@dataclass
class CleanCache:
    """Clean pre-activations ``Z[l]`` and activations ``Y[l]`` of every input, l = 0..L."""

    Z: list
    Y: list

    @property
    def output(self) -> np.ndarray:
        return self.Y[-1]


def clean_cache(plan: Plan, X: np.ndarray) -> CleanCache:
    """Run the inputs once without faults, with the kernels' own activation arithmetic."""
    X = np.ascontiguousarray(X, dtype=plan.dtype)
    Z, Y = [X], [X]
    for W, b, code, alpha in zip(plan.W, plan.b, plan.act_codes, plan.alphas):
        z = K.dense_forward(Y[-1], W, b)
        Z.append(z)
        Y.append(K.activate(z, code, alpha))
    return CleanCache(Z, Y)


# --- sampling ---------------------------------------------------------------------------------

@dataclass
class FaultBatch:
    """Sparse fault sets of ``n_draws`` fault samples, sorted by (layer, draw).

    ``ptr[l]`` (length n_draws + 1) gives the records of layer l for each draw; ``core`` is
    the core (tile) each record belongs to, or -1 (input layer, no mapping).
    """

    n_draws: int
    layer: np.ndarray
    draw: np.ndarray
    kind: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    value: np.ndarray
    core: np.ndarray
    ptr: list

    @property
    def draw_has_fault(self) -> np.ndarray:
        has = np.zeros(self.n_draws, dtype=bool)
        has[self.draw] = True
        return has


def _distinct_positions(rng: np.random.Generator, counts: np.ndarray, n: int):
    """For draw d, ``counts[d]`` distinct positions in ``range(n)``, uniformly at random.

    Returns (draw index, position) arrays. Positions are drawn with replacement and the draws
    that got a repeat are drawn again (rejection), which gives exactly the uniform law over
    distinct subsets; draws with many faults use a permutation instead.
    """
    counts = np.asarray(counts, dtype=np.int64)
    draws = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    if draws.size == 0:
        return draws, draws.copy()
    crowded = counts * counts > n  # a repeat is likely: sample without replacement directly
    pos = rng.integers(0, n, size=draws.size, dtype=np.int64)
    if crowded.any():
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        for d in np.flatnonzero(crowded):
            pos[starts[d]:starts[d] + counts[d]] = rng.choice(n, size=counts[d], replace=False)
    while True:
        key = draws * n + pos
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        dup = sorted_key[1:] == sorted_key[:-1]
        if not dup.any():
            return draws, pos
        redo = np.isin(draws, np.unique(draws[order[1:][dup]]))
        pos[redo] = rng.integers(0, n, size=int(redo.sum()), dtype=np.int64)


class _Records:
    def __init__(self):
        self.parts = []

    def add(self, layer, draw, kind, a, b=None, c=None, d=None, value=None, core=None):
        n = len(draw)
        if n == 0:
            return
        z = np.zeros(n, dtype=np.int64)
        self.parts.append((
            np.full(n, layer, dtype=np.int64), np.asarray(draw, np.int64),
            np.full(n, kind, dtype=np.int64), np.asarray(a, np.int64),
            z if b is None else np.asarray(b, np.int64), z if c is None else np.asarray(c, np.int64),
            z if d is None else np.asarray(d, np.int64),
            np.zeros(n) if value is None else np.asarray(value, np.float64),
            np.full(n, -1, dtype=np.int64) if core is None else np.asarray(core, np.int64),
        ))

    def build(self, n_draws: int, n_layers: int) -> FaultBatch:
        if self.parts:
            cols = [np.concatenate(col) for col in zip(*self.parts)]
        else:
            cols = [np.zeros(0, np.int64)] * 7 + [np.zeros(0)] + [np.zeros(0, np.int64)]
        layer, draw = cols[0], cols[1]
        order = np.lexsort((draw, layer))  # stable: later records of a draw stay later
        cols = [col[order] for col in cols]
        layer, draw = cols[0], cols[1]
        ptr = []
        for l in range(n_layers + 1):
            lo, hi = np.searchsorted(layer, [l, l + 1])
            ptr.append(lo + np.searchsorted(draw[lo:hi], np.arange(n_draws + 1)).astype(np.int64))
        return FaultBatch(n_draws, *cols, ptr=ptr)


def flip_words(Q: np.ndarray, masks: np.ndarray, bits: int, step: int, magnitude_sign: int) -> np.ndarray:
    """Integer weights after XOR-ing ``masks`` into their stored words.

    Two's complement words of ``bits`` bits hold ``Q / step`` (step 2 for Loihi mixed-sign
    layers, whose lowest bit is dropped). With ``magnitude_sign`` = +1 or -1 (Loihi single-sign
    layers: excitatory, inhibitory) the word is the unsigned magnitude ``|Q|`` and the layer's
    sign is kept; 0 means two's complement.
    """
    Q = np.asarray(Q).astype(np.int64)
    masks = np.asarray(masks, dtype=np.int64)
    if magnitude_sign:
        return magnitude_sign * ((np.abs(Q) ^ masks) & ((1 << bits) - 1))
    unsigned = ((Q // step) & ((1 << bits) - 1)) ^ masks
    signed = np.where(unsigned >= (1 << (bits - 1)), unsigned - (1 << bits), unsigned)
    return signed * step


@dataclass(frozen=True)
class FaultGroup:
    """Independent fault sites that share one rate: the unit of sampling and stratification.

    ``kind`` is ``crash`` (the neurons of ``layer``), ``stuck`` (the synapses of ``layer``; a
    faulty one is stuck at max with probability ``p_max / rate``, else at 0), ``bitflip`` (the
    bits of ``layer``'s weight words) or ``core`` (the core slots of ``chip``, spares last).
    """

    kind: str
    layer: int
    chip: int
    n: int
    rate: float

    @property
    def key(self) -> tuple:
        return (self.kind, self.layer if self.kind != "core" else self.chip)


def fault_groups(plan: Plan) -> list[FaultGroup]:
    """The plan's fault sites with a non-zero rate, in sampling order."""
    groups = []
    for l in range(plan.n_layers + 1):
        if plan.crash_rates[l] > 0:
            groups.append(FaultGroup("crash", l, -1, plan.widths[l], float(plan.crash_rates[l])))
    p_stuck = plan.stuck_p0 + plan.stuck_p1
    for l in range(1, plan.n_layers + 1):
        n_syn = plan.widths[l] * plan.widths[l - 1]
        if p_stuck > 0:
            groups.append(FaultGroup("stuck", l, -1, n_syn, p_stuck))
        if plan.bitflip_p > 0:
            bits = plan.mapping.profile.weight_bits
            groups.append(FaultGroup("bitflip", l, -1, n_syn * bits, plan.bitflip_p))
    if plan.core_p > 0:
        spares = plan.mapping.profile.spare_cores_per_chip
        for chip in sorted({c.chip for c in plan.mapping.cores}):
            used = sum(1 for c in plan.mapping.cores if c.chip == chip)
            groups.append(FaultGroup("core", -1, chip, used + spares, plan.core_p))
    return groups


def sample_faults(plan: Plan, rng: np.random.Generator, n_draws: int, counts=None) -> FaultBatch:
    """Draw ``n_draws`` independent fault sets (sparse: a count per group, then positions).

    ``counts`` (a dict from group key to an array of per-draw counts) fixes the number of
    faults of each group, for sampling conditional on the number of faults; by default the
    counts are binomial.
    """
    positions = {}
    for group in fault_groups(plan):
        if counts is None:
            c = rng.binomial(group.n, group.rate, size=n_draws)
        else:
            c = counts.get(group.key, np.zeros(n_draws, dtype=np.int64))
        positions[group.key] = _distinct_positions(rng, c, group.n)
    to_max = None
    if plan.stuck_p0 + plan.stuck_p1 > 0:
        p_stuck = plan.stuck_p0 + plan.stuck_p1
        to_max = {key: rng.random(pos.size) * p_stuck < plan.stuck_p1
                  for key, (_, pos) in positions.items() if key[0] == "stuck"}
    return records_from_positions(plan, positions, n_draws, to_max)


def records_from_positions(plan: Plan, positions: dict, n_draws: int, to_max: "dict | None" = None) -> FaultBatch:
    """Turn faulty sites (per group: draw and position arrays) into a :class:`FaultBatch`.

    ``to_max[key]`` says, for each faulty synapse of a ``stuck`` group, whether it is stuck at
    max (else at 0). Bit flips of one word combine; a stuck synapse ignores bit flips; failed
    cores follow the spare rule; on crossbars, synapse faults inside a failed tile are dropped.
    """
    L = plan.n_layers
    mapping = plan.mapping
    neuron_core = mapping.neuron_core if mapping is not None else None
    rec = _Records()
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    for l in range(L + 1):
        draws, pos = positions.get(("crash", l), empty)
        core = neuron_core[l - 1][pos] if (neuron_core is not None and l >= 1) else None
        rec.add(l, draws, F_CRASH, pos, core=core)
    for l in range(1, L + 1):
        W = plan.W[l - 1]
        n_out, n_in = W.shape
        n_syn = n_out * n_in
        draws, pos = positions.get(("stuck", l), empty)
        stuck_keys = draws * n_syn + pos
        if draws.size:
            i, j = pos // n_in, pos % n_in
            at_max = np.where(W[i, j] < 0, -plan.stuck_max_neg[l - 1], plan.stuck_max_pos[l - 1])
            value = np.where(to_max[("stuck", l)], at_max, 0.0)
            rec.add(l, draws, F_WEIGHT, i, j, value=value, core=_weight_core(mapping, l, i, j))
        draws, pos = positions.get(("bitflip", l), empty)
        if draws.size:
            q = mapping.quantization[l - 1]
            bits = mapping.profile.weight_bits
            weight, bit = pos // bits, pos % bits
            key = draws * n_syn + weight
            order = np.argsort(key, kind="stable")
            key, bit = key[order], bit[order]
            # Several flipped bits of one word combine into one mask (positions are distinct).
            starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            masks = np.bitwise_or.reduceat(np.left_shift(1, bit).astype(np.int64), starts)
            key = key[starts]
            keep = ~np.isin(key, stuck_keys)  # a stuck cell holds its value
            key, masks = key[keep], masks[keep]
            draws, weight = key // n_syn, key % n_syn
            i, j = weight // n_in, weight % n_in
            magnitude_sign = 0
            if mapping.profile.mixed_sign_drop_lsb and q.sign_mode != "mixed":
                magnitude_sign = -1 if q.sign_mode == "inhibitory" else 1
            Q_new = flip_words(q.Q[i, j], masks, bits, q.step, magnitude_sign)
            rec.add(l, draws, F_WEIGHT, i, j, value=q.scale * Q_new.astype(np.float64),
                    core=_weight_core(mapping, l, i, j))
    any_core = False
    if mapping is not None:
        for chip in sorted({c.chip for c in mapping.cores}):
            draws, pos = positions.get(("core", chip), empty)
            if draws.size:
                any_core = True
                _core_failure_records(plan, chip, draws, pos, rec)
    batch = rec.build(n_draws, L)
    if any_core and mapping.profile.architecture == "crossbar":
        batch = _drop_weights_in_failed_tiles(batch, n_draws, L)
    return batch


def _weight_core(mapping, l, i, j):
    if mapping is None:
        return None
    cores = [c for c in mapping.cores if c.layer == l]
    owner = np.full(i.shape, -1, dtype=np.int64)
    for c in cores:
        inside = (i >= c.out_start) & (i < c.out_stop) & (j >= c.in_start) & (j < c.in_stop)
        owner[inside] = c.core_id
    return owner


def _core_failure_records(plan: Plan, chip: int, draws, pos, rec: _Records) -> None:
    """Failed core slots of one chip -> records: spares replace failed cores, lowest id first."""
    mapping = plan.mapping
    spares = mapping.profile.spare_cores_per_chip
    crossbar = mapping.profile.architecture == "crossbar"
    used = [c for c in mapping.cores if c.chip == chip]  # in core-id order
    order = np.lexsort((pos, draws))
    draws, pos = draws[order], pos[order]
    bounds = np.flatnonzero(np.concatenate(([True], draws[1:] != draws[:-1], [True])))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        d, failed = draws[lo], pos[lo:hi]
        failed_used = failed[failed < len(used)]
        working_spares = spares - int(np.sum(failed >= len(used)))
        for slot in failed_used[max(working_spares, 0):]:
            core = used[slot]
            if crossbar:
                rec.add(core.layer, [d], F_TILE, [core.out_start], [core.out_stop],
                        [core.in_start], [core.in_stop], core=[core.core_id])
            else:
                n = core.n_neurons
                rec.add(core.layer, np.full(n, d), F_CRASH,
                        np.arange(core.out_start, core.out_stop), np.ones(n, np.int64),
                        core=np.full(n, core.core_id))


def _drop_weights_in_failed_tiles(batch: FaultBatch, n_draws: int, L: int) -> FaultBatch:
    tiles = np.flatnonzero(batch.kind == F_TILE)
    if tiles.size == 0:
        return batch
    drop = np.zeros(batch.kind.size, dtype=bool)
    for t in tiles:
        same = (batch.draw == batch.draw[t]) & (batch.layer == batch.layer[t]) & (batch.kind == F_WEIGHT)
        inside = (batch.a >= batch.a[t]) & (batch.a < batch.b[t]) & (batch.b >= batch.c[t]) & (batch.b < batch.d[t])
        drop |= same & inside
    if not drop.any():
        return batch
    rec = _Records()
    keep = ~drop
    rec.parts.append(tuple(col[keep] for col in (
        batch.layer, batch.draw, batch.kind, batch.a, batch.b, batch.c, batch.d, batch.value, batch.core)))
    return rec.build(n_draws, L)


# --- the faulty forward pass -----------------------------------------------------------------

def fault_layer_span(batch: FaultBatch, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last layer with a fault, per draw (n_layers + 1 and -1 for a fault-free draw)."""
    has = np.stack([np.diff(batch.ptr[l]) > 0 for l in range(n_layers + 1)])
    any_fault = has.any(axis=0)
    first = np.where(any_fault, has.argmax(axis=0), n_layers + 1)
    last = np.where(any_fault, n_layers - has[::-1].argmax(axis=0), -1)
    return first, last


def propagate(plan: Plan, cache: CleanCache, batch: FaultBatch, row_draw: np.ndarray,
              row_input: np.ndarray) -> np.ndarray:
    """Faulty outputs of the rows (pairs of fault sample ``row_draw`` and input ``row_input``).

    A row is computed only from its first faulty layer on, starting from its input's cached
    clean activations; a row whose activations are back to clean after its last faulty layer
    stops there (its output is the clean one, exactly). A few changed entries update ``z``
    column by column; many changed entries go through one matrix product for all such rows.
    """
    row_draw = np.ascontiguousarray(row_draw, dtype=np.int64)
    row_input = np.ascontiguousarray(row_input, dtype=np.int64)
    n_rows = row_draw.size
    L = plan.n_layers
    first_draw, last_draw = fault_layer_span(batch, L)
    first, last = first_draw[row_draw], last_draw[row_draw]
    alive = np.ones(n_rows, dtype=bool)
    status = np.zeros(n_rows, dtype=np.int8)  # CLEAN: activations are the cached ones
    Y = np.empty((n_rows, plan.widths[0]), dtype=plan.dtype)
    rows = np.flatnonzero(first == 0)
    if rows.size:
        K.input_layer(Y, rows, cache.Y[0], row_draw, row_input, batch.ptr[0], batch.kind, batch.a,
                      batch.b, plan.crash_sem, plan.crash_value, max(1, plan.widths[0] // 8), status)
    for l in range(1, L + 1):
        W, b = plan.W[l - 1], plan.b[l - 1]
        rows = np.flatnonzero(alive & (first <= l))
        if rows.size == 0:
            continue
        Z = np.empty((n_rows, plan.widths[l]), dtype=plan.dtype)
        dense = rows[status[rows] == K.DENSE]
        if dense.size:
            Z[dense] = K.dense_forward(Y[dense], W, b)
        K.z_from_clean(Z, rows, status, Y, cache.Y[l - 1], cache.Z[l], W, row_input)
        Y_next = np.empty_like(Z)
        status_next = np.zeros(n_rows, dtype=np.int8)
        K.finish_layer(Z, Y_next, rows, status, Y, cache.Y[l - 1], W, b, row_draw, row_input,
                       batch.ptr[l], batch.kind, batch.a, batch.b, batch.c, batch.d, batch.value,
                       plan.act_codes[l - 1], plan.alphas[l - 1], plan.crash_sem,
                       plan.crash_value, cache.Y[l], max(1, plan.widths[l] // 8), status_next)
        finished = rows[(status_next[rows] == K.CLEAN) & (last[rows] <= l)]
        alive[finished] = False
        Y, status = Y_next, status_next
    out = cache.output[row_input]
    live = np.flatnonzero(alive & (first <= L))
    if live.size:  # else Y may be an earlier layer's (every row stopped early or is fault-free)
        out[live] = Y[live]
    return out


def batch_from_records(n_draws: int, n_layers: int, layer, draw, kind, a, b=None, c=None, d=None,
                       value=None, core=None) -> FaultBatch:
    """A :class:`FaultBatch` from explicit fault records (one entry per record)."""
    rec = _Records()
    layer = np.asarray(layer, dtype=np.int64)
    draw = np.asarray(draw, dtype=np.int64)
    n = draw.size
    z = np.zeros(n, dtype=np.int64)
    rec.parts.append((
        layer, draw, np.broadcast_to(np.asarray(kind, np.int64), (n,)).copy(),
        np.asarray(a, np.int64), z if b is None else np.asarray(b, np.int64),
        z if c is None else np.asarray(c, np.int64), z if d is None else np.asarray(d, np.int64),
        np.zeros(n) if value is None else np.asarray(value, np.float64),
        np.full(n, -1, np.int64) if core is None else np.asarray(core, np.int64),
    ))
    return rec.build(n_draws, n_layers)


_CONTROLLER = None


def one_blas_thread():
    """Context manager: BLAS on one thread while the Numba kernels run.

    The kernels parallelize over rows with Numba's threads; OpenBLAS threads that spin after
    each small matrix product would compete with them for the cores (3x slower here). The
    library scan is done once (it reads the process's memory map, milliseconds per call).
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS that Numba's np.dot calls)

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def single_crash_outputs(plan: Plan, cache: CleanCache, layer: int,
                         max_rows: int = 1 << 16) -> np.ndarray:
    """Outputs with exactly one neuron of ``layer`` crashed, for every input and neuron.

    Returns an array (n_inputs, n_layer, n_L). One batched pass of the fault kernels (split
    into chunks of ``max_rows`` rows to bound memory); crash semantics from ``plan``.
    """
    m = cache.Y[0].shape[0]
    n = plan.widths[layer]
    out = np.empty((m, n, plan.widths[-1]), dtype=plan.dtype)
    flat = out.reshape(m * n, -1)
    neurons = np.arange(n, dtype=np.int64)
    inputs_per_chunk = max(1, max_rows // n)
    for start in range(0, m, inputs_per_chunk):
        stop = min(m, start + inputs_per_chunk)
        k = (stop - start) * n
        batch = batch_from_records(n, plan.n_layers, np.full(n, layer), neurons, F_CRASH, neurons)
        row_draw = np.tile(neurons, stop - start)
        row_input = np.repeat(np.arange(start, stop, dtype=np.int64), n)
        flat[start * n:start * n + k] = propagate(plan, cache, batch, row_draw, row_input)
    return out


def warmup() -> None:
    """Compile (or load from Numba's cache) every kernel once, on a tiny network.

    Nothing is compiled at import; call this before timing, or to pay the first-call cost up
    front. The kernels are specialised per dtype, so both float32 and float64 are warmed.
    """
    from neurosim.faults import FaultModel, NeuronCrash, SynapseStuck

    for dtype in (np.float32, np.float64):
        network = Network.random([3, 4, 2], seed=0, dtype=dtype)
        plan = build_plan(network, FaultModel([NeuronCrash(0.5, layers=(0, 1, 2)),
                                               SynapseStuck(0.2, 0.2)]))
        X = np.zeros((2, 3), dtype=dtype)
        cache = clean_cache(plan, X)
        batch = sample_faults(plan, np.random.default_rng(0), 8)
        rows = np.flatnonzero(batch.draw_has_fault)
        with one_blas_thread():
            propagate(plan, cache, batch, rows, rows % 2)
