"""Sparse fault sets: fault groups, the sampler, and the records the kernels read.

Sampling is sparse: for every :class:`FaultGroup` (independent sites sharing one rate) a
binomial count per draw, then that many distinct positions; never one random number per
neuron or weight. Each fault type of the plan then turns its groups' positions into records
of a :class:`FaultBatch` (see :mod:`neurosim.faults`).

Reproducibility: block ``k`` of a run draws from ``default_rng(SeedSequence([seed, k]))``
(:func:`sample_block`), so a block's faults depend on the seed and the block's index alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from neurosim.errors import ValidationError
from neurosim.fields import draw_keys
from neurosim.sites import ranges
from neurosim.kernels.codes import CRASH_SILENT, REC_CRASH, REC_NEURON, REC_TILE, REC_WEIGHT

__all__ = [
    "FaultBatch",
    "FaultGroup",
    "RecordBuilder",
    "batch_from_records",
    "distinct_positions",
    "records_from_positions",
    "sample_block",
    "sample_faults",
    "SITE_ORDER",
]

#: Groups are sampled in this order of their sites, then by layer (or chip), then by the
#: fault type's registration order.
SITE_ORDER = ("neuron", "synapse", "core")

_COLUMNS = ("layer", "draw", "kind", "out_start", "out_stop", "in_start", "in_stop", "value",
            "crash_mode", "core")
_INT_COLUMNS = ("layer", "draw", "kind", "out_start", "out_stop", "in_start", "in_stop",
                "crash_mode", "core")


@dataclass
class FaultBatch:
    """Fault records of ``n_draws`` fault samples, sorted by (layer, draw).

    Every record acts on layer ``layer`` of draw ``draw`` and addresses a block of that
    layer's matrix ``A``: output neurons ``out_start:out_stop`` and inputs ``in_start:in_stop``.

    * ``kind == REC_CRASH``: neuron ``out_start`` (layer 0: the input) crashes as
      ``crash_mode`` says (``CRASH_SILENT``, ``CRASH_PAPER``, or ``CRASH_STUCK`` at ``value``),
      at every time step when ``in_stop == 0``, else at steps ``in_start:in_stop`` only (a
      spiking network's transient crash of a few steps);
    * ``kind == REC_NEURON``: spiking neuron ``out_start``'s parameter ``crash_mode``
      (``NEURON_THRESHOLD``, ``NEURON_LEAK``) is multiplied by ``value``;
    * ``kind == REC_WEIGHT``: entry ``A[out_start, in_start]`` becomes ``value``;
    * ``kind == REC_TILE``: the block reads zero (a failed crossbar tile).

    ``core`` is the core (tile) the record belongs to, or -1 (input layer, no mapping).
    ``ptr[l]`` (length n_draws + 1) gives each draw's records of layer l.
    """

    n_draws: int
    layer: np.ndarray
    draw: np.ndarray
    kind: np.ndarray
    out_start: np.ndarray
    out_stop: np.ndarray
    in_start: np.ndarray
    in_stop: np.ndarray
    value: np.ndarray
    crash_mode: np.ndarray
    core: np.ndarray
    ptr: list = field(repr=False)
    #: Each draw's 64-bit key of the plan's fields of this batch's mode (None: no field).
    keys: "np.ndarray | None" = field(default=None, repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.ptr) - 1

    @property
    def draw_has_fault(self) -> np.ndarray:
        """Draws with a record, or every draw when the batch carries field keys (a field
        may hit any draw; one that happens to hit nothing computes the clean output)."""
        if self.keys is not None:
            return np.ones(self.n_draws, dtype=bool)
        has = np.zeros(self.n_draws, dtype=bool)
        has[self.draw] = True
        return has

    def records(self, layer: int, draw: int) -> slice:
        """The records of ``draw`` on ``layer`` (a slice of the columns)."""
        return slice(int(self.ptr[layer][draw]), int(self.ptr[layer][draw + 1]))

    def select(self, draws) -> "FaultBatch":
        """A batch whose draw ``k`` is draw ``draws[k]`` of this one."""
        draws = np.asarray(draws, dtype=np.int64).reshape(-1)
        if draws.size and (draws.min() < 0 or draws.max() >= self.n_draws):
            raise ValidationError(
                f"FaultBatch.select: draws must be in [0, {self.n_draws - 1}]. Got values in "
                f"[{draws.min()}, {draws.max()}] instead.")
        rec = RecordBuilder()
        n = draws.size
        if n and self.layer.size:
            # Every (layer, new draw)'s records, as ranges of this batch's (vectorized).
            lo = np.concatenate([self.ptr[l][draws] for l in range(self.n_layers + 1)])
            hi = np.concatenate([self.ptr[l][draws + 1] for l in range(self.n_layers + 1)])
            owner, idx = ranges(lo, hi)
            if idx.size:
                cols = {name: getattr(self, name)[idx] for name in _COLUMNS}
                cols["draw"] = owner % n
                rec.parts.append(cols)
        out = rec.build(draws.size, self.n_layers)
        out.keys = None if self.keys is None else self.keys[draws]
        return out

    def then(self, other: "FaultBatch") -> "FaultBatch":
        """A batch whose draw ``d`` holds this batch's records of draw ``d`` followed by
        ``other``'s (a chip's permanent faults, then a row's transient ones), and ``other``'s
        field keys."""
        if other.n_draws != self.n_draws:
            raise ValueError("FaultBatch.then needs batches of as many draws")
        rec = RecordBuilder()
        for b in (self, other):
            if b.layer.size:
                rec.parts.append({name: getattr(b, name) for name in _COLUMNS})
        out = rec.build(self.n_draws, self.n_layers)
        out.keys = other.keys
        return out

    def with_values(self, value: np.ndarray) -> "FaultBatch":
        """The same records with other ``value`` entries (e.g. integer weight words)."""
        return replace(self, value=np.asarray(value, dtype=np.float64))


class RecordBuilder:
    """Collects fault records (column arrays) and sorts them into a :class:`FaultBatch`.

    Records of one (layer, draw) keep the order in which they were added: the kernels apply
    them in that order.
    """

    def __init__(self):
        self.parts: list[dict] = []

    def _add(self, layer, draw, kind, out_start, out_stop, in_start, in_stop, value=None,
             crash_mode=None, core=None) -> None:
        draw = np.asarray(draw, np.int64)
        n = draw.size
        if n == 0:
            return

        def col(v, fill, dtype=np.int64):
            if v is None:
                return np.full(n, fill, dtype=dtype)
            a = np.asarray(v, dtype)
            return np.full(n, a, dtype=dtype) if a.ndim == 0 else a

        self.parts.append({
            "layer": col(layer, 0), "draw": draw, "kind": col(kind, 0),
            "out_start": col(out_start, 0), "out_stop": col(out_stop, 0),
            "in_start": col(in_start, 0), "in_stop": col(in_stop, 0),
            "value": col(value, 0.0, np.float64), "crash_mode": col(crash_mode, CRASH_SILENT),
            "core": col(core, -1),
        })

    def add_crash(self, layer: int, draw, neuron, mode, value=0.0, core=None, steps=None) -> None:
        """Neurons ``neuron`` of ``layer`` crash (mode ``CRASH_*``, stuck ``value``), at every
        step, or at steps ``steps = (start, stop)`` (arrays, one per record) only."""
        neuron = np.asarray(neuron, np.int64)
        start, stop = (0, 0) if steps is None else steps
        self._add(layer, draw, REC_CRASH, neuron, neuron + 1, start, stop, value, mode, core)

    def add_neuron(self, layer: int, draw, neuron, parameter, factor, core=None) -> None:
        """Parameter ``parameter`` (``NEURON_*``) of spiking neurons ``neuron`` of ``layer`` is
        multiplied by ``factor``."""
        neuron = np.asarray(neuron, np.int64)
        self._add(layer, draw, REC_NEURON, neuron, neuron + 1, 0, 0, factor, parameter, core)

    def add_weight(self, layer: int, draw, row, col, value, core=None) -> None:
        """Entries ``A[row, col]`` of ``layer`` become ``value``."""
        row, col = np.asarray(row, np.int64), np.asarray(col, np.int64)
        self._add(layer, draw, REC_WEIGHT, row, row + 1, col, col + 1, value, None, core)

    def add_tile(self, layer: int, draw, out_start, out_stop, in_start, in_stop, core=None) -> None:
        """Blocks ``A[out_start:out_stop, in_start:in_stop]`` of ``layer`` read zero."""
        self._add(layer, draw, REC_TILE, out_start, out_stop, in_start, in_stop, None, None, core)

    def weight_entries(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(draw, row, col) of the weight records added so far on ``layer``."""
        if not self.parts:
            e = np.zeros(0, np.int64)
            return e, e, e
        cols = {k: np.concatenate([p[k] for p in self.parts])
                for k in ("layer", "kind", "draw", "out_start", "in_start")}
        sel = (cols["kind"] == REC_WEIGHT) & (cols["layer"] == layer)
        return cols["draw"][sel], cols["out_start"][sel], cols["in_start"][sel]

    def drop_weights_inside_tiles(self) -> None:
        """Remove weight records that fall inside a failed tile of their (layer, draw): a failed
        tile reads zero whatever its cells hold."""
        if not self.parts:
            return
        cols = {name: np.concatenate([p[name] for p in self.parts]) for name in _COLUMNS}
        tiles = np.flatnonzero(cols["kind"] == REC_TILE)
        if tiles.size == 0:
            return
        drop = np.zeros(cols["kind"].size, dtype=bool)
        weight = cols["kind"] == REC_WEIGHT
        for t in tiles:
            same = weight & (cols["draw"] == cols["draw"][t]) & (cols["layer"] == cols["layer"][t])
            inside = ((cols["out_start"] >= cols["out_start"][t]) & (cols["out_start"] < cols["out_stop"][t])
                      & (cols["in_start"] >= cols["in_start"][t]) & (cols["in_start"] < cols["in_stop"][t]))
            drop |= same & inside
        if drop.any():
            self.parts = [{name: col[~drop] for name, col in cols.items()}]

    def build(self, n_draws: int, n_layers: int) -> FaultBatch:
        """The batch. Of several weight records on one entry of one (layer, draw), only the
        last added stays (it is what the entry holds in the end), so that kernels may add up
        each record's change."""
        if self.parts:
            cols = {name: np.concatenate([p[name] for p in self.parts]) for name in _COLUMNS}
            weight = np.flatnonzero(cols["kind"] == REC_WEIGHT)
            if weight.size > 1:
                # Sort the weight records by entry, later records after earlier ones (stable);
                # an entry's last record is the one before the next entry starts.
                key = [cols[c][weight] for c in ("in_start", "out_start", "draw", "layer")]
                order = np.lexsort(key)
                same = np.ones(weight.size - 1, dtype=bool)
                for k in key:
                    same &= k[order][1:] == k[order][:-1]
                if same.any():
                    keep = np.ones(cols["kind"].size, dtype=bool)
                    keep[weight[order[:-1][same]]] = False
                    cols = {name: col[keep] for name, col in cols.items()}
        else:
            cols = {name: np.zeros(0, np.int64 if name in _INT_COLUMNS else np.float64)
                    for name in _COLUMNS}
        order = np.lexsort((cols["draw"], cols["layer"]))  # stable: later records stay later
        cols = {name: np.ascontiguousarray(col[order]) for name, col in cols.items()}
        layer, draw = cols["layer"], cols["draw"]
        ptr = []
        for l in range(n_layers + 1):
            lo, hi = np.searchsorted(layer, [l, l + 1])
            ptr.append(lo + np.searchsorted(draw[lo:hi], np.arange(n_draws + 1)).astype(np.int64))
        return FaultBatch(int(n_draws), **cols, ptr=ptr)


def batch_from_records(n_draws: int, n_layers: int, layer, draw, kind, out_start, out_stop=None,
                       in_start=None, in_stop=None, value=None, crash_mode=None,
                       core=None) -> FaultBatch:
    """A :class:`FaultBatch` from explicit records (one entry per record).

    ``out_stop`` defaults to ``out_start + 1``; ``in_start`` to 0 and ``in_stop`` to
    ``in_start + 1``; ``crash_mode`` to ``CRASH_SILENT``; ``value`` to 0; ``core`` to -1.
    """
    draw = np.asarray(draw, dtype=np.int64)
    n = draw.size
    out_start = np.broadcast_to(np.asarray(out_start, np.int64), (n,))
    in_start = np.zeros(n, np.int64) if in_start is None else np.broadcast_to(
        np.asarray(in_start, np.int64), (n,))
    rec = RecordBuilder()
    rec._add(layer, draw, kind, out_start, out_start + 1 if out_stop is None else out_stop,
             in_start, in_start + 1 if in_stop is None else in_stop, value, crash_mode, core)
    return rec.build(n_draws, n_layers)


@dataclass(frozen=True)
class FaultGroup:
    """Independent fault sites that share one rate: the unit of sampling and stratification.

    ``kind`` names the fault type that owns the group; ``layer`` (or ``chip``, for core slots)
    says where the ``n`` sites are. A faulty site takes outcome ``o`` with probability
    ``outcomes[o]`` (one outcome for most types; a stuck synapse is stuck at 0 or at max).
    ``site`` is what the sites are (``neuron``, ``synapse``, ``core``: the sampling order).
    """

    kind: str
    layer: int
    chip: int
    n: int
    rate: float
    outcomes: tuple = (1.0,)
    site: str = "neuron"

    @property
    def key(self) -> tuple:
        return (self.kind, self.layer if self.site != "core" else self.chip)

    @property
    def n_outcomes(self) -> int:
        return len(self.outcomes)


def distinct_positions(rng: np.random.Generator, counts: np.ndarray, n: int):
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


def sample_faults(plan, rng: np.random.Generator, n_draws: int, counts=None,
                  mode: "str | None" = None) -> FaultBatch:
    """Draw ``n_draws`` independent fault sets (sparse: a count per group, then positions).

    ``counts`` (a dict from group key to an array of per-draw counts) fixes the number of
    faults of each group, for sampling conditional on the number of faults; by default the
    counts are binomial. After every group's positions, each fault type draws its sites'
    outcomes (in registration order). ``mode`` keeps the processes of that mode only (a
    chip's permanent faults, a row's transient ones). When the plan has fields of those
    processes, one key per draw is drawn last (:mod:`neurosim.fields`).
    """
    kinds = plan.kinds_in(mode) if mode is not None else None
    positions = {}
    for group in plan.groups:
        if kinds is not None and group.kind not in kinds:
            continue
        if counts is None:
            c = rng.binomial(group.n, group.rate, size=n_draws)
        else:
            c = counts.get(group.key, np.zeros(n_draws, dtype=np.int64))
        positions[group.key] = distinct_positions(rng, c, group.n)
    outcomes = {}
    for fault in plan.fault_types:
        outcomes.update(fault.draw_outcomes(plan, rng, positions))
    batch = records_from_positions(plan, positions, n_draws, outcomes)
    fields = plan.fields if mode is None else plan.fields_in(mode)
    if fields:
        batch.keys = draw_keys(rng, n_draws)
    return batch


def records_from_positions(plan, positions: dict, n_draws: int, outcomes: "dict | None" = None) -> FaultBatch:
    """Turn faulty sites (per group key: draw and position arrays) into a :class:`FaultBatch`.

    ``outcomes[key]`` gives each faulty site's outcome index (groups with one outcome need
    none). Each fault type adds its records in registration order (see its ``add_records``).
    """
    rec = RecordBuilder()
    outcomes = outcomes or {}
    for fault in plan.fault_types:
        fault.add_records(plan, positions, outcomes, rec)
    return rec.build(n_draws, plan.n_layers)


def sample_block(plan, seed: int, block: int, rounds: int, m: int, mode: str):
    """Block ``block``'s fault draws and the (draw, input) rows that need computing.

    The unit of reproducibility: the draws come from ``SeedSequence([seed, block])`` whatever
    the thread count, checkpointing or runner. Transient: ``rounds x m`` draws, draw ``d`` for
    input ``d % m``; permanent: ``rounds`` chips, each faulty one paired with every input.

    Returns ``batch, n_draws, faulty_draws, row_draw, row_input``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(block)]))
    n_draws = rounds * m if mode == "transient" else rounds
    batch = sample_faults(plan, rng, n_draws)
    faulty = np.flatnonzero(batch.draw_has_fault)
    if mode == "transient":
        row_draw, row_input = faulty, faulty % m
    else:
        row_draw = np.repeat(faulty, m)
        row_input = np.tile(np.arange(m), faulty.size)
    return batch, n_draws, faulty, row_draw, row_input
