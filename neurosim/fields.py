"""Dense weight faults as *fields*: every cell's fault drawn from a counter-based stream.

At crossbar defect rates (the ``rram_crossbar`` profile's 10.8 % of cells stuck) a draw of the
bundled model has about 9,000 stuck cells. Sampling them as records (a count, distinct
positions, one record each) costs far more than the faulty pass itself and memory in
proportion to the fault count. A field instead decides each cell from a random 64-bit word
that is a pure function of the draw's key and the cell's index:

    r(key, l, i, j) = mix64(key + c * GAMMA),   c = l * 2^40 + j * n_out + i + 1,

``mix64`` the output function of SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014; the generator Java's ``SplittableRandom`` uses),
``GAMMA`` its golden-ratio increment. Cell ``(i, j)`` of layer ``l`` is stuck at 0 when
``r < T0`` and at max when ``T0 <= r < T01``, with ``T0 = floor(p0 2^64)`` and ``T01 =
floor((p0 + p1) 2^64)``: integer comparisons, so the NumPy reference and the Numba kernel
decide every cell identically, and the rates are exact up to 2^-64. Because a cell's word does
not depend on which other cells were looked at, the kernel skips the columns whose input is 0
in a row (a stuck cell there changes nothing) without changing any other cell's fault, and the
numbers do not depend on the chunking, the thread count or the backend.

Draw keys come from the block's generator (``SeedSequence([seed, block])``), one 64-bit word
per draw (a transient row) or per chip (permanent faults).

Which layers use a field is decided per layer by :func:`use_field` from measured costs (see
``RECORD_NS`` and ``CELL_NS``); the choice is fixed before anything is drawn, since the two
ways draw different random streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["StuckField", "GAMMA", "RECORD_NS", "CELL_NS", "MAX_FAULT_FREE", "threshold", "use_field",
           "cell_words", "stuck_matrix", "draw_keys"]

GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1
#: Bits of the cell counter given to the cell index within a layer (the layer above them).
LAYER_SHIFT = 40

#: Measured costs, wall-clock per draw on the 2-core CI machine (benchmarks/bench_crossbar.py,
#: its "costs" table, on the bundled model): drawing and applying one stuck cell as a record
#: (binomial count, distinct positions, outcome, record, kernel update: 560-790 ns per fault
#: at rates 1e-3 to 3e-3), and one cell of a field (its word and comparison, zero-input
#: columns skipped: 0.17-0.21 ns per cell at rates 1e-4 to 0.1, whatever the rate).
RECORD_NS = 650.0
CELL_NS = 0.18
#: Records let the simulator skip a draw with no fault in a layer; a field computes every
#: draw. A field is used only where at most this fraction of draws would be fault-free there.
MAX_FAULT_FREE = 0.01


def threshold(p: float) -> int:
    """``floor(p * 2^64)``, exactly (capped at 2^64 - 1)."""
    return min(int(Fraction(float(p)) * (1 << 64)), _MASK)


def use_field(n_cells: int, rate: float) -> bool:
    """Whether a layer's stuck cells are cheaper as a field than as records, from the measured
    costs: expected faults x ``RECORD_NS`` above cells x ``CELL_NS`` (a rate above about
    3e-4), and few draws fault-free in the layer (``(1 - rate)^n_cells <= MAX_FAULT_FREE``)."""
    if not 0 < rate < 1:
        return rate >= 1
    return (rate * RECORD_NS > CELL_NS
            and n_cells * math.log1p(-rate) <= math.log(MAX_FAULT_FREE))


@dataclass(frozen=True)
class StuckField:
    """Stuck cells of layer ``layer`` drawn as a field (see the module docstring).

    ``t0`` and ``t01`` are the thresholds of stuck-at-0 and of any stuck cell; a stuck-at-max
    cell holds ``v_pos`` when its stored weight is >= 0, else ``-v_neg``; ``mode`` says whether
    the key is a row's (transient) or a chip's (permanent).
    """

    layer: int
    t0: int
    t01: int
    v_pos: float
    v_neg: float
    mode: str
    kind: str = "stuck"

    @property
    def rate(self) -> float:
        return self.t01 / 2.0 ** 64


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def cell_words(key: int, layer: int, n_out: int, n_in: int) -> np.ndarray:
    """The random word of every cell ``(i, j)`` of ``layer`` for ``key``: ``(n_out, n_in)``
    uint64 (the NumPy reference of the kernels in :mod:`neurosim.kernels.field`)."""
    i = np.arange(n_out, dtype=np.uint64)[:, None]
    j = np.arange(n_in, dtype=np.uint64)[None, :]
    c = (np.uint64(layer) << np.uint64(LAYER_SHIFT)) + j * np.uint64(n_out) + i + np.uint64(1)
    with np.errstate(over="ignore"):
        return _mix(np.uint64(key) + c * np.uint64(GAMMA))


def stuck_matrix(W: np.ndarray, field: StuckField, key: int, onto=None) -> np.ndarray:
    """``W`` with the field's stuck cells for ``key`` written in (a new array); with ``onto``,
    those cells written over ``onto`` instead (a chip's programmed conductances), a
    stuck-at-max cell's sign still that of its stored weight in ``W``."""
    words = cell_words(key, field.layer, W.shape[0], W.shape[1])
    out = np.array(W if onto is None else onto, copy=True)
    at_max = np.where(W < 0, -field.v_neg, field.v_pos).astype(out.dtype)
    zero = words < np.uint64(field.t0)
    stuck_max = ~zero & (words < np.uint64(field.t01))
    out[zero] = 0
    out[stuck_max] = at_max[stuck_max]
    return out


def draw_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` draw keys from the block's generator."""
    return rng.integers(0, 1 << 64, size=n, dtype=np.uint64, endpoint=False)
