"""The Monte Carlo estimator: blocks of fault draws, statistics that merge exactly.

The work is split into *blocks* of fault draws whose size depends only on the number of
inputs (``BLOCK_PAIRS`` pairs, rounded to whole rounds of one draw per input); block ``k``
draws its faults from ``default_rng(SeedSequence([seed, k]))``. A block's statistics
(:class:`MonteCarloStats`: counts and exact sums) merge exactly and in any order, so the same
seed gives the same numbers whatever the runner, the thread count, the checkpoint interval, or
an interruption and ``resume``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurosim.crossbar import analog_outputs, chip_weights
from neurosim.estimators.exact import ExactSum
from neurosim.metrics import is_classification
from neurosim.metrics import metric as metric_values
from neurosim.results import SimulationResult
from neurosim.sampler import sample_block, sample_faults
from neurosim.stats import bernstein_interval, clopper_pearson

__all__ = ["MonteCarlo", "MonteCarloStats", "BlockSet", "BLOCK_PAIRS"]

BLOCK_PAIRS = 8192  # (draw, input) pairs per block, before rounding to whole rounds
#: Fault records a transient block samples at once (about 150 MB with the sort's temporaries):
#: a block whose draws would hold more is drawn in sub-blocks of whole draws, sub-block ``g``
#: from ``SeedSequence([seed, block, g])``; their size depends on the plan alone.
RECORD_BUDGET = 1 << 19


def _count_tuple(values) -> tuple:
    return tuple(int(v) for v in np.asarray(values).tolist())


def _add_counts(a: tuple, b: tuple) -> tuple:
    """Element-wise sum of two count tuples (an empty one adds nothing)."""
    if not a or not b:
        return a or b
    return tuple(x + y for x, y in zip(a, b))


class BlockSet:
    """An immutable set of block indices, kept as sorted disjoint ranges ``[start, stop)``.

    Merging blocks in order keeps one range, so a run of a million blocks merges in constant
    time per block; merging sets that share a block is an error (a block counted twice).
    """

    __slots__ = ("ranges",)

    def __init__(self, ranges=()):
        self.ranges = tuple(ranges)

    @classmethod
    def of(cls, block: int) -> "BlockSet":
        return cls(((int(block), int(block) + 1),))

    def merge(self, other: "BlockSet") -> "BlockSet":
        merged = []
        for start, stop in sorted(self.ranges + other.ranges):
            if merged and start < merged[-1][1]:
                raise ValueError(f"blocks {start}..{min(stop, merged[-1][1]) - 1} counted twice")
            if merged and start == merged[-1][1]:
                merged[-1] = (merged[-1][0], stop)
            else:
                merged.append((start, stop))
        return BlockSet(merged)

    def __contains__(self, block) -> bool:
        return any(start <= block < stop for start, stop in self.ranges)

    def __len__(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def __eq__(self, other) -> bool:
        return isinstance(other, BlockSet) and self.ranges == other.ranges

    def __repr__(self) -> str:
        return f"BlockSet({list(self.ranges)})"


class _Chips:
    """Per-chip failure counts of some blocks (permanent mode): merging is O(1) (a tree of
    parts), flattened in block order once at the end."""

    __slots__ = ("parts",)

    def __init__(self, parts=()):
        self.parts = parts  # (), a leaf ((block, counts),), or a node (left, right)

    @classmethod
    def leaf(cls, block: int, counts: tuple) -> "_Chips":
        return cls((("leaf", int(block), counts),))

    def merge(self, other: "_Chips") -> "_Chips":
        if not self.parts:
            return other
        if not other.parts:
            return self
        return _Chips((self, other))

    def items(self) -> list:
        """``(block, counts)`` of every block, in block order."""
        out, stack = [], [self]
        while stack:
            node = stack.pop()
            for part in node.parts:
                if isinstance(part, _Chips):
                    stack.append(part)
                else:
                    out.append((part[1], part[2]))
        return sorted(out)


@dataclass(frozen=True)
class MonteCarloStats:
    """Counts and exact sums over a set of committed blocks (``blocks``).

    ``merge`` adds two disjoint sets of blocks; a block counted twice is an error.
    ``chip_failures`` (permanent mode) holds each block's chips' failure counts;
    ``input_failures`` each input's failure count, when the run was asked for it
    (``MonteCarlo(per_input=True)``: certify's population bound; empty otherwise, and never
    written to a checkpoint, which only ``simulate`` keeps).
    """

    blocks: BlockSet
    n_pairs: int
    n_failures: int
    n_faulty_pairs: int
    n_correct: int
    sum_metric: ExactSum
    sum_metric_sq: ExactSum
    sum_delta: ExactSum
    sum_delta_sq: ExactSum
    layer_failures: tuple
    core_failures: tuple
    chip_failures: _Chips
    input_failures: tuple = ()

    @classmethod
    def empty(cls, n_out: int, n_layers: int, n_cores: int) -> "MonteCarloStats":
        return cls(BlockSet(), 0, 0, 0, 0, ExactSum.zeros(), ExactSum.zeros(),
                   ExactSum.zeros(n_out), ExactSum.zeros(n_out), (0,) * (n_layers + 1),
                   (0,) * max(n_cores, 0), _Chips())

    def merge(self, other: "MonteCarloStats") -> "MonteCarloStats":
        return MonteCarloStats(
            self.blocks.merge(other.blocks), self.n_pairs + other.n_pairs,
            self.n_failures + other.n_failures, self.n_faulty_pairs + other.n_faulty_pairs,
            self.n_correct + other.n_correct, self.sum_metric + other.sum_metric,
            self.sum_metric_sq + other.sum_metric_sq, self.sum_delta + other.sum_delta,
            self.sum_delta_sq + other.sum_delta_sq,
            tuple(a + b for a, b in zip(self.layer_failures, other.layer_failures)),
            tuple(a + b for a, b in zip(self.core_failures, other.core_failures)),
            self.chip_failures.merge(other.chip_failures),
            _add_counts(self.input_failures, other.input_failures),
        )

    def chip_failure_counts(self) -> np.ndarray:
        """Failures of every chip, in chip order (blocks in order)."""
        parts = [np.asarray(counts, dtype=np.int64) for _, counts in self.chip_failures.items()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    # --- files -----------------------------------------------------------------------------
    def to_state(self) -> dict:
        return {
            "blocks": [list(r) for r in self.blocks.ranges], "n_pairs": self.n_pairs,
            "n_failures": self.n_failures, "n_faulty_pairs": self.n_faulty_pairs,
            "n_correct": self.n_correct, "sum_metric": self.sum_metric.to_state(),
            "sum_metric_sq": self.sum_metric_sq.to_state(),
            "sum_delta": self.sum_delta.to_state(), "sum_delta_sq": self.sum_delta_sq.to_state(),
            "layer_failures": list(self.layer_failures), "core_failures": list(self.core_failures),
            "chip_failures": {str(b): list(v) for b, v in self.chip_failures.items()},
        }

    @classmethod
    def from_state(cls, state: dict, version: int = 2, rounds_per_block: int = 1) -> "MonteCarloStats":
        """Statistics from a run file's state (version 1: neurosim 0.1's running totals)."""
        if version == 1:
            chips = np.asarray(state["chip_failures"], dtype=np.int64).reshape(-1)
            n_blocks = int(state["next_block"])
            chip_failures = _Chips()
            if chips.size:
                for b in range(n_blocks):
                    chip_failures = chip_failures.merge(_Chips.leaf(b, _count_tuple(
                        chips[b * rounds_per_block:(b + 1) * rounds_per_block])))
            return cls(
                BlockSet(((0, n_blocks),) if n_blocks else ()), int(state["n_pairs"]),
                int(state["n_failures"]),
                int(state["n_faulty_pairs"]), int(state["n_correct"]),
                ExactSum.of(float(state["sum_metric"])), ExactSum.of(float(state["sum_metric_sq"])),
                ExactSum.of(np.asarray(state["sum_delta"], float)),
                ExactSum.of(np.asarray(state["sum_delta_sq"], float)),
                _count_tuple(state["layer_failures"]), _count_tuple(state["core_failures"]),
                chip_failures)
        chip_failures = _Chips()
        for b, v in sorted((int(b), v) for b, v in state["chip_failures"].items()):
            chip_failures = chip_failures.merge(_Chips.leaf(b, tuple(int(c) for c in v)))
        return cls(
            BlockSet(tuple(int(x) for x in r) for r in state["blocks"]), int(state["n_pairs"]),
            int(state["n_failures"]), int(state["n_faulty_pairs"]), int(state["n_correct"]),
            ExactSum.from_state(state["sum_metric"]), ExactSum.from_state(state["sum_metric_sq"]),
            ExactSum.from_state(state["sum_delta"]), ExactSum.from_state(state["sum_delta_sq"]),
            tuple(int(v) for v in state["layer_failures"]),
            tuple(int(v) for v in state["core_failures"]), chip_failures)


class MonteCarlo:
    """One Monte Carlo run as blocks of work: ``self(block)`` is that block's statistics.

    Picklable (a process pool's workers get a copy): it holds the plan, the clean cache, the
    backend and the data, and draws each block's faults from the seed and the block's index.
    """

    #: The heavy parts that stay the same through a run (a distributed runner ships them once).
    shared = ("plan", "backend", "cache", "y")

    def __init__(self, plan, backend, cache, y, *, metric: str, eps: float, n_samples: int,
                 seed: int, mode: str, sub_blocks: bool = True, per_input: bool = False):
        self.plan = plan
        self.backend = backend
        self.cache = cache
        self.y = y
        self.metric = metric
        self.eps = float(eps)
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.mode = mode
        #: Count each input's failures too (``MonteCarloStats.input_failures``).
        self.per_input = bool(per_input)
        self.m = cache.n_inputs
        self.rounds_per_block = max(1, BLOCK_PAIRS // self.m)
        self.n_blocks = math.ceil(self.n_samples / self.rounds_per_block)
        self.classification = is_classification(y)
        self.clean_correct = (cache.output.argmax(axis=1) == y) if self.classification else None
        self.n_cores = plan.mapping.cores_used if plan.mapping is not None else 0
        #: Draws per sub-block of a transient block (None: the block at once; see RECORD_BUDGET).
        self.sub_block_draws = None
        if sub_blocks and mode == "transient":
            per_draw = plan.expected_records
            g = int(RECORD_BUDGET // per_draw) if per_draw > 0 else self.rounds_per_block * self.m
            if g < self.rounds_per_block * self.m:
                self.sub_block_draws = max(1, g)

    def rounds(self, block: int) -> int:
        return min(self.rounds_per_block, self.n_samples - block * self.rounds_per_block)

    def empty(self) -> MonteCarloStats:
        return MonteCarloStats.empty(self.plan.widths[-1], self.plan.n_layers, self.n_cores)

    def pairs_in(self, blocks: BlockSet) -> int:
        """The number of (draw, input) pairs the blocks ``blocks`` hold."""
        last = self.n_blocks - 1
        full = sum(stop - start - (1 if start <= last < stop else 0) for start, stop in blocks.ranges)
        return (full * self.rounds_per_block + (self.rounds(last) if last in blocks else 0)) * self.m

    def stats_from_state(self, state: dict, version: int) -> MonteCarloStats:
        """The statistics a checkpoint holds, after checking that they are those of this run's
        blocks: a state that does not add up (blocks this run does not have, pair counts that
        are not those blocks', counts above the pairs, lists of the wrong length) is a
        ValueError, never resumed."""
        if not isinstance(state, dict):
            raise ValueError(f"the state is a {type(state).__name__}, not a JSON object")
        if version == 1:
            n_done = int(state["next_block"])
            if not 0 <= n_done <= self.n_blocks:
                raise ValueError(f"next_block {n_done} is outside this run's 0..{self.n_blocks} blocks")
        else:
            ranges = state["blocks"]
            if not isinstance(ranges, list) or len(ranges) > self.n_blocks:
                raise ValueError("'blocks' is not a list of this run's block ranges")
            previous = 0
            for r in ranges:
                if (not isinstance(r, list) or len(r) != 2
                        or not all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                        or not previous <= r[0] < r[1] <= self.n_blocks):
                    raise ValueError(f"block range {r!r} is not a sorted, disjoint range within this "
                                     f"run's {self.n_blocks} blocks")
                previous = r[1]
        stats = MonteCarloStats.from_state(state, version, self.rounds_per_block)
        expected = self.pairs_in(stats.blocks)
        if stats.n_pairs != expected:
            raise ValueError(f"n_pairs is {stats.n_pairs}, but its blocks hold {expected} pairs")
        for name in ("n_failures", "n_faulty_pairs", "n_correct"):
            value = getattr(stats, name)
            if not 0 <= value <= stats.n_pairs:
                raise ValueError(f"{name} is {value}, outside 0..n_pairs ({stats.n_pairs})")
        n_out, L = self.plan.widths[-1], self.plan.n_layers
        if len(stats.layer_failures) != L + 1 or len(stats.core_failures) != self.n_cores:
            raise ValueError("the per-layer or per-core failure counts have the wrong length")
        if any(not 0 <= v <= stats.n_pairs for v in stats.layer_failures + stats.core_failures):
            raise ValueError("a per-layer or per-core failure count is outside 0..n_pairs")
        for name in ("sum_delta", "sum_delta_sq"):
            if np.shape(getattr(stats, name).value()) != (n_out,):
                raise ValueError(f"{name} does not have one entry per output ({n_out})")
        for name in ("sum_metric", "sum_metric_sq", "sum_delta", "sum_delta_sq"):
            if not np.all(np.isfinite(getattr(stats, name).value())):
                raise ValueError(f"{name} is not finite")
        if self.mode in ("permanent", "mixed"):
            chips = stats.chip_failures.items()
            if [b for b, _ in chips] != [b for r in stats.blocks.ranges for b in range(*r)]:
                raise ValueError("the per-chip failure counts are not those of the committed blocks")
            for b, counts in chips:
                if len(counts) != self.rounds(b) or any(not 0 <= c <= self.m for c in counts):
                    raise ValueError(f"block {b}'s per-chip failure counts do not fit its chips")
        elif stats.chip_failures.items():
            raise ValueError("a transient run has no per-chip failure counts")
        return stats

    def session(self):
        return self.backend.session()

    def __call__(self, block: int) -> MonteCarloStats:
        with self.backend.session():
            return self._block(int(block))

    @property
    def chip_path(self) -> bool:
        """Whether blocks run chip by chip: a chip's permanent fields go into its weights, or
        its inputs draw transient faults on top of its permanent ones (mixed)."""
        return (self.mode == "mixed" or self.plan.analog is not None
                or (self.mode == "permanent" and bool(self.plan.fields_in("permanent"))))

    def _block(self, block: int) -> MonteCarloStats:
        if self.chip_path:
            return self._chip_block(block)
        plan, m = self.plan, self.m
        rounds = self.rounds(block)
        if self.sub_block_draws is not None:
            return self._sub_blocks(block, rounds)
        batch, n_draws, faulty, row_draw, row_input = sample_block(plan, self.seed, block, rounds,
                                                                   m, self.mode)
        out = (self.backend.propagate(plan, self.cache, batch, row_draw, row_input)
               if row_draw.size else None)
        values, failed = self._metric(out, row_input)
        L = plan.n_layers
        layer_failures = np.zeros(L + 1, dtype=np.int64)
        core_failures = np.zeros(self.n_cores, dtype=np.int64)
        self._attribute(batch, n_draws, row_draw, failed, [f.layer for f in plan.fields],
                        layer_failures, core_failures)
        per_chip = None
        if self.mode == "permanent":
            per_chip = np.full(rounds, m * int(0.0 >= self.eps), dtype=np.int64)
            if row_draw.size:
                per_chip[faulty] = np.bincount(np.repeat(np.arange(faulty.size), m)[failed],
                                               minlength=faulty.size)
        return self._stats(block, rounds, row_input, out, values, failed, layer_failures,
                           core_failures, per_chip)

    def _sub_blocks(self, block: int, rounds: int) -> MonteCarloStats:
        """A transient block drawn in sub-blocks of ``sub_block_draws`` draws (dense records:
        memory bounded by the budget, not by the fault count); draw ``d`` is for input
        ``d % m`` as in a whole block."""
        plan, m, G = self.plan, self.m, self.sub_block_draws
        n_draws = rounds * m
        L = plan.n_layers
        layer_failures = np.zeros(L + 1, dtype=np.int64)
        core_failures = np.zeros(self.n_cores, dtype=np.int64)
        parts = []
        for g, start in enumerate(range(0, n_draws, G)):
            size = min(G, n_draws - start)
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(block), g]))
            batch = sample_faults(plan, rng, size)
            row_draw = np.flatnonzero(batch.draw_has_fault)
            row_input = (start + row_draw) % m
            out = (self.backend.propagate(plan, self.cache, batch, row_draw, row_input)
                   if row_draw.size else None)
            values, failed = self._metric(out, row_input)
            self._attribute(batch, size, row_draw, failed, [f.layer for f in plan.fields],
                            layer_failures, core_failures)
            if row_draw.size:
                parts.append((row_input, out, values, failed))
        if not parts:
            return self._stats(block, rounds, np.zeros(0, np.int64), None, np.zeros(0),
                               np.zeros(0, bool), layer_failures, core_failures, None)
        return self._stats(block, rounds, *(np.concatenate(c) for c in zip(*parts)),
                           layer_failures, core_failures, None)

    def _chip_block(self, block: int) -> MonteCarloStats:
        """A block of chips: each chip's permanent faults (fields written into its weights,
        then one clean pass over every input; records shared by its inputs), and in a mixed
        run each (chip, input) row's own transient faults on top, drawn chip by chip from
        ``SeedSequence([seed, block, chip, 1])`` (memory: one chip's rows at a time)."""
        plan, m, backend = self.plan, self.m, self.backend
        rounds = self.rounds(block)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(block)]))
        chips = sample_faults(plan, rng, rounds, mode="permanent")
        mixed = self.mode == "mixed"
        permanent_fields = plan.fields_in("permanent")
        L = plan.n_layers
        if (not mixed and plan.analog is None and permanent_fields
                and chips.layer.size == 0):
            return self._field_chips(block, rounds, chips)
        layer_failures = np.zeros(L + 1, dtype=np.int64)
        core_failures = np.zeros(self.n_cores, dtype=np.int64)
        per_chip = np.zeros(rounds, dtype=np.int64)
        zero_fails = int(0.0 >= self.eps)
        inputs = np.arange(m)
        parts = []
        for c in range(rounds):
            if plan.analog is not None:
                # An analog chip: programmed tiles, every input through DAC, tiles and ADC.
                crng = np.random.default_rng(np.random.SeedSequence([self.seed, int(block), c]))
                weights = chip_weights(plan, plan.analog, chips, c, crng)
                out_c = analog_outputs(plan, plan.analog, weights, self.cache.X, crng)
                values, failed = self._metric(out_c, inputs)
                self._attribute(chips.select(np.full(m, c)), m, inputs, failed,
                                range(1, L + 1), layer_failures, core_failures)
                per_chip[c] = int(failed.sum())
                parts.append((inputs, out_c, values, failed))
                continue
            if permanent_fields:
                plan_c = backend.chip_plan(plan, int(chips.keys[c]))
                cache_c = backend.clean_cache(plan_c, self.cache.X)
            else:
                plan_c, cache_c = plan, self.cache
            batch_c = chips.select(np.full(m, c))
            if mixed:  # each of the chip's rows draws its transient faults: one stream per chip
                crng = np.random.default_rng(np.random.SeedSequence([self.seed, int(block), c, 1]))
                batch_c = batch_c.then(sample_faults(plan, crng, m, mode="transient"))
            rows = inputs if permanent_fields else np.flatnonzero(batch_c.draw_has_fault)
            out_c = np.array(cache_c.output[rows], copy=True)
            changed = np.flatnonzero(batch_c.draw_has_fault[rows])
            if changed.size:
                out_c[changed] = backend.propagate(plan_c, cache_c, batch_c, rows[changed],
                                                   rows[changed])
            values, failed = self._metric(out_c if rows.size else None, rows)
            self._attribute(batch_c, m, rows, failed, [f.layer for f in plan.fields],
                            layer_failures, core_failures)
            per_chip[c] = int(failed.sum()) + (m - rows.size) * zero_fails
            parts.append((rows, out_c, values, failed))
        row_input = np.concatenate([p[0] for p in parts])
        out = np.concatenate([p[1] for p in parts]) if row_input.size else None
        values = np.concatenate([p[2] for p in parts])
        failed = np.concatenate([p[3] for p in parts])
        return self._stats(block, rounds, row_input, out, values, failed, layer_failures,
                           core_failures, per_chip)

    def _field_chips(self, block: int, rounds: int, chips) -> MonteCarloStats:
        """Chips whose only faults are permanent fields (dense stuck cells): every chip's
        weights and its pass over all inputs at once (:meth:`Backend.chip_outputs`)."""
        m = self.m
        out = self.backend.chip_outputs(self.plan, chips.keys, self.cache.X)
        inputs = np.tile(np.arange(m), rounds)
        out = out.reshape(rounds * m, -1)
        values, failed = self._metric(out, inputs)
        L = self.plan.n_layers
        layer_failures = np.zeros(L + 1, dtype=np.int64)
        core_failures = np.zeros(self.n_cores, dtype=np.int64)
        self._attribute(chips.select(np.repeat(np.arange(rounds), m)), rounds * m,
                        np.arange(rounds * m), failed, [f.layer for f in self.plan.fields],
                        layer_failures, core_failures)
        per_chip = failed.reshape(rounds, m).sum(axis=1).astype(np.int64)
        return self._stats(block, rounds, inputs, out, values, failed, layer_failures,
                           core_failures, per_chip)

    def _metric(self, out, row_input):
        """Metric values and failures of computed rows (none when ``out`` is None)."""
        if out is None:
            return np.zeros(0), np.zeros(0, dtype=bool)
        y_rows = self.y[row_input] if self.y is not None else None
        values = metric_values(self.metric, out, self.cache.output[row_input], y_rows)
        return values, values >= self.eps

    def _attribute(self, batch, n_draws, row_draw, failed, field_layers, layer_failures,
                   core_failures) -> None:
        """Each failing row counts once for every layer and core its draw touched (a field's
        layer touches every draw; cores are counted from records only)."""
        if not failed.any():
            return
        L = self.plan.n_layers
        fail_weight = np.bincount(row_draw[failed], minlength=n_draws)
        has = np.zeros((n_draws, L + 1), dtype=bool)
        has[batch.draw, batch.layer] = True
        has[:, list(field_layers)] = True
        layer_failures += fail_weight @ has
        has_core = batch.core >= 0
        if has_core.any() and self.n_cores:
            keys = np.unique(batch.draw[has_core] * self.n_cores + batch.core[has_core])
            d, c = keys // self.n_cores, keys % self.n_cores
            core_failures += np.bincount(c, weights=fail_weight[d],
                                         minlength=self.n_cores).astype(np.int64)

    def _stats(self, block, rounds, row_input, out, values, failed, layer_failures,
               core_failures, per_chip) -> MonteCarloStats:
        m, y = self.m, self.y
        clean_out = self.cache.output
        n_pairs = rounds * m
        n_rows = row_input.size
        zero_fails = 0.0 >= self.eps  # a fault-free pair has metric 0
        if n_rows:
            delta = out.astype(np.float64) - clean_out[row_input].astype(np.float64)
        else:
            delta = np.zeros((0, clean_out.shape[1]))
        n_correct = 0
        if self.classification:
            changed = 0
            if n_rows:
                changed = int((out.argmax(axis=1) == y[row_input]).sum()
                              - self.clean_correct[row_input].sum())
            n_correct = rounds * int(self.clean_correct.sum()) + changed
        chip_failures = _Chips()
        if per_chip is not None:
            chip_failures = _Chips.leaf(block, _count_tuple(per_chip))
        input_failures = ()
        if self.per_input:  # every input has ``rounds`` pairs in the block; rows are computed ones
            per_input = np.bincount(row_input[failed], minlength=m)
            if zero_fails:
                per_input = per_input + rounds - np.bincount(row_input, minlength=m)
            input_failures = _count_tuple(per_input)
        return MonteCarloStats(
            blocks=BlockSet.of(block), n_pairs=n_pairs,
            n_failures=int(failed.sum()) + (n_pairs - n_rows) * int(zero_fails),
            n_faulty_pairs=int(n_rows), n_correct=n_correct,
            sum_metric=ExactSum.of(float(values.sum())),
            sum_metric_sq=ExactSum.of(float((values ** 2).sum())),
            sum_delta=ExactSum.of(delta.sum(axis=0)), sum_delta_sq=ExactSum.of((delta ** 2).sum(axis=0)),
            layer_failures=_count_tuple(layer_failures), core_failures=_count_tuple(core_failures),
            chip_failures=chip_failures, input_failures=input_failures,
        )

    def result(self, stats: MonteCarloStats, confidence: float, fault_model: str,
               backend_name: str) -> SimulationResult:
        """The :class:`SimulationResult` of the merged statistics of every block."""
        n = stats.n_pairs
        m = self.m
        mean = stats.sum_metric.value() / n
        var = max(stats.sum_metric_sq.value() / n - mean ** 2, 0.0)
        dmean = stats.sum_delta.value() / n
        dvar = np.maximum(stats.sum_delta_sq.value() / n - dmean ** 2, 0.0)
        chip_rates = None
        if self.mode in ("permanent", "mixed"):
            chip_rates = stats.chip_failure_counts() / m
            if m == 1:
                lo, hi = clopper_pearson(stats.n_failures, n, confidence)
                method = "Clopper-Pearson over chips"
            else:
                lo, hi = bernstein_interval(chip_rates, confidence)
                method = "empirical Bernstein over chips"
        else:
            lo, hi = clopper_pearson(stats.n_failures, n, confidence)
            method = "Clopper-Pearson"
        return SimulationResult(
            failure_rate=stats.n_failures / n,
            ci_low=lo, ci_high=hi, confidence=float(confidence),
            n_samples=self.n_samples, n_inputs=m, n_pairs=n, n_failures=int(stats.n_failures),
            n_faulty_pairs=int(stats.n_faulty_pairs), metric=self.metric, eps=self.eps,
            mode=self.mode, seed=self.seed, error_mean=mean, error_std=math.sqrt(var),
            output_error_mean=dmean, output_error_std=np.sqrt(dvar),
            clean_accuracy=float(self.clean_correct.mean()) if self.classification else None,
            faulty_accuracy=stats.n_correct / n if self.classification else None,
            layer_failures=np.asarray(stats.layer_failures, dtype=np.int64),
            core_failures=np.asarray(stats.core_failures, dtype=np.int64),
            fault_model=fault_model, simulated_network=self.plan.simulated_network,
            interval_method=method, chip_failure_rates=chip_rates, estimator="mc",
            backend=backend_name,
        )
