"""Stored weights as fault sites: which matrix entries a faulty stored weight changes.

A stuck cell or a flipped bit hits one *stored* weight. On a dense layer a stored weight is
one entry ``A[i, j]``. A conv kernel weight is read at many output positions, and what a chip
stores depends on it:

* the model itself (a :class:`~neurosim.network.Network` target) and a crossbar (one
  unfolded kernel per tile, reused over positions): one copy of the kernel, so a faulty
  weight changes the entry at every position;
* a core-based profile with ``conv_weight_sharing``: each core stores the kernel slice of its
  output channels once, so a faulty weight changes every position *of that core*;
* a core-based profile without it (Loihi 1, TrueNorth): one synapse per connection.

:func:`synapse_sites` builds the table for a layer of a plan; fault types draw positions in
``range(sites.n)`` and :meth:`SynapseSites.expand` turns them into matrix entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SynapseSites", "synapse_sites", "ranges"]


def ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated ranges ``lo[k]:hi[k]`` as ``(owner, index)``: ``owner`` says which ``k``
    each index came from (vectorized; no Python loop over the ranges)."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    counts = hi - lo
    owner = np.repeat(np.arange(lo.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return owner, np.repeat(lo - first, counts) + np.arange(owner.size, dtype=np.int64)


@dataclass
class SynapseSites:
    """The ``n`` stored weights of one layer as fault sites.

    ``kind`` says what a site is: ``weight`` (one stored copy of each weight; for dense layers
    one entry each), ``core_copy`` (a core's copy of a kernel weight) or ``connection`` (one
    synapse per connection). For tables (``ptr`` not None) site ``s`` changes the entries
    ``rows[ptr[s]:ptr[s+1]], cols[...]``; ``kernel[s]`` is the stored weight it copies and
    ``core[s]`` the core (tile) that holds it (-1 without a mapping).
    """

    n: int
    kind: str
    layer: object
    layer_index: int
    mapping: object = None
    ptr: "np.ndarray | None" = None
    rows: "np.ndarray | None" = None
    cols: "np.ndarray | None" = None
    kernel: "np.ndarray | None" = None
    core: "np.ndarray | None" = None

    @property
    def mean_entries(self) -> float:
        """Entries of ``A`` one site sets, on average (1 for a dense layer): the records a
        faulty site becomes."""
        if self.n == 0:
            return 0.0
        if self.ptr is not None:
            return float(self.ptr[-1]) / self.n
        if self.layer.kind == "dense":
            return 1.0
        if "_mean_entries" not in self.__dict__:
            self.__dict__["_mean_entries"] = self.expand(np.arange(self.n))[0].size / self.n
        return self.__dict__["_mean_entries"]

    def expand(self, pos) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Entries changed by faulty sites ``pos``: ``(owner, i, j, k, core)``, where
        ``owner[r]`` indexes ``pos``, ``(i, j)`` is the entry of ``A``, ``k`` the stored weight
        (flat index into ``synapse_weights``) and ``core`` its core or -1."""
        pos = np.asarray(pos, dtype=np.int64)
        if self.ptr is None:  # one stored copy, straight from the layer
            owner, i, j = self.layer.weight_uses(pos)
            k = pos[owner]
            if self.mapping is None:
                core = np.full(owner.size, -1, np.int64)
            elif self.layer.kind == "conv2d" and self.mapping.neuron_core is None:
                core = self.mapping.kernel_cores(self.layer_index, k)
            else:
                core = self.mapping.weight_cores(self.layer_index, i, j)
            return owner, i, j, k, core
        lo, hi = self.ptr[pos], self.ptr[pos + 1]
        owner, idx = ranges(lo, hi)
        return owner, self.rows[idx], self.cols[idx], self.kernel[pos][owner], self.core[pos][owner]


def synapse_sites(layer, l: int, mapping=None) -> SynapseSites:
    """The fault sites of the stored weights of ``layer`` (index ``l``) on ``mapping``."""
    if not hasattr(layer, "connections") or mapping is None or mapping.neuron_core is None:
        return SynapseSites(int(layer.n_synapses), "weight", layer, l, mapping)
    i, j, k = layer.connections()
    core_of = mapping.neuron_core[l - 1][i]
    if not mapping.shares_weights:
        return SynapseSites(int(i.size), "connection", layer, l, mapping,
                            np.arange(i.size + 1, dtype=np.int64), i, j, k, core_of)
    # One copy per core of each kernel weight its neurons read: number the (core, k) pairs. A
    # weight a core stores but never reads (its taps all fall on the padding) is left out: its
    # faults change nothing, so the output's law is the same without it.
    key = core_of * np.int64(layer.synapse_weights.size) + k
    order = np.lexsort((i, key))
    key, i, j = key[order], i[order], j[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    ptr = np.append(starts, key.size).astype(np.int64)
    site_key = key[starts]
    size = np.int64(layer.synapse_weights.size)
    return SynapseSites(int(starts.size), "core_copy", layer, l, mapping, ptr, i, j,
                        (site_key % size).astype(np.int64), (site_key // size).astype(np.int64))
