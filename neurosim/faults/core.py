"""Whole cores (crossbar tiles) failing, with spare cores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosim.faults.base import (FaultType, ProfileField, format_number, probability,
                                  register_fault)
from neurosim.kernels.codes import CRASH_SILENT
from neurosim.sampler import FaultGroup

__all__ = ["CoreFailure", "failed_core_records"]


def failed_core_records(mapping, core, draws, builder) -> None:
    """Records of ``core`` failing in ``draws``: every neuron it holds crashes silently (the
    core emits nothing); on crossbars the tile's weight block reads zero."""
    draws = np.asarray(draws, np.int64)
    layer = mapping.network.layers[core.layer - 1]
    if mapping.profile.architecture == "crossbar":
        if layer.kind == "dense":
            builder.add_tile(core.layer, draws, core.out_start, core.out_stop, core.in_start,
                             core.in_stop, core=core.core_id)
            return
        # A conv tile holds kernel weights reused at every position: every entry they set
        # reads zero (these records come after the cells' own faults and override them).
        k = np.flatnonzero(mapping.kernel_cores(core.layer, np.arange(layer.synapse_weights.size))
                           == core.core_id)
        _, i, j = layer.weight_uses(k)
        builder.add_weight(core.layer, np.repeat(draws, i.size), np.tile(i, draws.size),
                           np.tile(j, draws.size), 0.0, core=core.core_id)
        return
    neurons = mapping.core_neurons(core)
    n = neurons.size
    builder.add_crash(core.layer, np.repeat(draws, n), np.tile(neurons, draws.size),
                      CRASH_SILENT, core=core.core_id)


@register_fault
@dataclass(frozen=True)
class CoreFailure(FaultType):
    """Each core (crossbar tile), spares included, fails with probability ``p_core``.

    Every neuron mapped to a failed core crashes silently (correlated faults); on crossbar
    profiles a failed tile contributes nothing (its weight block reads 0) and stuck cells or
    bit flips inside it do not matter. Spare cores of the profile, which fail at the same rate,
    replace failed cores of their chip, lowest core id first.

    Spec: ``core:p=1e-3``.
    """

    p_core: float = 0.0

    kind = "core"
    spec_keys = {"p": "rate per core"}
    profile_fields = (ProfileField(
        "core_failure", "Probability that a whole core (or crossbar tile) fails: all its neurons "
        "crash.", "probability per core", "core"),)
    needs_mapping = True

    def __post_init__(self):
        object.__setattr__(self, "p_core", probability("CoreFailure", "p_core", self.p_core))

    def is_null(self) -> bool:
        return self.p_core == 0

    def spec(self, legacy: bool = False) -> str:
        return f"core:p={format_number(self.p_core, legacy)}"

    @classmethod
    def from_params(cls, params: dict, text: str) -> "CoreFailure":
        return cls(cls.number(params, "p", text))

    @classmethod
    def from_profile(cls, rates) -> "CoreFailure":
        return cls(rates.core_failure)

    def groups(self, plan) -> list:
        if self.p_core <= 0:
            return []
        mapping = plan.mapping
        spares = mapping.profile.spare_cores_per_chip
        out = []
        for chip in sorted({c.chip for c in mapping.cores}):
            used = sum(1 for c in mapping.cores if c.chip == chip)
            out.append(FaultGroup("core", -1, chip, used + spares, self.p_core, site="core"))
        return out

    def add_records(self, plan, positions, outcomes, builder) -> None:
        mapping = plan.mapping
        if mapping is None:
            return
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        spares = mapping.profile.spare_cores_per_chip
        any_core = False
        for chip in sorted({c.chip for c in mapping.cores}):
            draws, pos = positions.get(("core", chip), empty)
            if not draws.size:
                continue
            any_core = True
            used = [c for c in mapping.cores if c.chip == chip]  # in core-id order
            order = np.lexsort((pos, draws))
            draws, pos = draws[order], pos[order]
            bounds = np.flatnonzero(np.concatenate(([True], draws[1:] != draws[:-1], [True])))
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                d, failed = draws[lo], pos[lo:hi]
                failed_used = failed[failed < len(used)]
                working_spares = spares - int(np.sum(failed >= len(used)))
                for slot in failed_used[max(working_spares, 0):]:
                    failed_core_records(mapping, used[slot], [d], builder)
        if any_core and mapping.profile.architecture == "crossbar":
            builder.drop_weights_inside_tiles()
