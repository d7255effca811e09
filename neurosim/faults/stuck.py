"""Synapses (crossbar cells) stuck at zero or at the largest stored magnitude."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosim.errors import ValidationError
from neurosim.faults.base import (FaultType, ProfileField, format_number, probability,
                                  register_fault)
from neurosim.fields import StuckField, threshold, use_field
from neurosim.sampler import FaultGroup

__all__ = ["SynapseStuck"]

#: Outcomes of a stuck synapse (``FaultGroup.outcomes`` order).
AT_ZERO, AT_MAX = 0, 1


def _other_weight_writers(stuck, plan) -> bool:
    """Whether another active process writes weights (synapse sites, or tiles of a crossbar)."""
    crossbar = plan.mapping is not None and plan.mapping.profile.architecture == "crossbar"
    for proc in plan.faults.active():
        if proc.kind == stuck.kind:
            continue
        for g in proc.groups(plan):
            if g.site == "synapse" or (g.site == "core" and crossbar):
                return True
    return False


@register_fault
@dataclass(frozen=True)
class SynapseStuck(FaultType):
    """Synapses (crossbar cells) stuck at 0 with ``p_zero``, at the maximum with ``p_max``.

    Stuck-at-0: ``W_ij := 0`` (an open cell). Stuck-at-max: ``|W_ij| :=`` the layer's largest
    stored magnitude, sign kept (on a mapping the word's largest value of that sign,
    ``scale * q_max`` or ``scale * |q_min|``; on the float network ``max |W_l|``; a zero
    weight becomes positive). A synapse is stuck at 0 with probability ``p_zero``, at max with
    ``p_max``, healthy otherwise.

    Spec: ``stuck:p0=0.0175,p1=0.0904``.
    """

    p_zero: float = 0.0
    p_max: float = 0.0

    kind = "stuck"
    spec_keys = {"p0": "stuck-at-0 rate", "p1": "stuck-at-max rate"}
    profile_fields = (
        ProfileField("synapse_stuck_at_zero",
                     "Probability that a synapse / crossbar cell is stuck at 0 (open).",
                     "probability per synapse", "stuck0"),
        ProfileField("synapse_stuck_at_max",
                     "Probability that a synapse / crossbar cell is stuck at the layer's largest "
                     "representable magnitude (sign kept).", "probability per synapse", "stuck1"),
    )

    def __post_init__(self):
        object.__setattr__(self, "p_zero", probability("SynapseStuck", "p_zero", self.p_zero))
        object.__setattr__(self, "p_max", probability("SynapseStuck", "p_max", self.p_max))
        if self.p_zero + self.p_max > 1.0:
            raise ValidationError(
                "The rates of SynapseStuck must add up to at most 1 (a synapse is stuck at 0, at "
                f"max, or healthy). Got p_zero + p_max = {self.p_zero + self.p_max:g} instead."
            )

    @property
    def rate(self) -> float:
        return self.p_zero + self.p_max

    def is_null(self) -> bool:
        return self.p_zero == 0 and self.p_max == 0

    def spec(self, legacy: bool = False) -> str:
        return (f"stuck:p0={format_number(self.p_zero, legacy)},"
                f"p1={format_number(self.p_max, legacy)}")

    @classmethod
    def from_params(cls, params: dict, text: str) -> "SynapseStuck":
        return cls(cls.number(params, "p0", text, default=0.0),
                   cls.number(params, "p1", text, default=0.0))

    @classmethod
    def from_profile(cls, rates) -> "SynapseStuck":
        return cls(rates.synapse_stuck_at_zero, rates.synapse_stuck_at_max)

    def field_layers(self, plan) -> set:
        """The layers whose stuck cells are drawn as a field (:mod:`neurosim.fields`): dense
        layers of an all-dense network where the measured costs favour it (dense rates).

        A transient field adds its cells' changes to the layer's clean weights, so it is not
        used when another process also writes weights (bit flips, failed crossbar tiles):
        then the stuck cells are records, applied in order with the others. Permanent fields
        are written into the chip's weights, under any other process's records.
        """
        if (self.rate <= 0 or not getattr(plan, "allow_fields", True)
                or any(layer.kind != "dense" for layer in plan.network.layers)):
            return set()
        if (self.mode or "transient") == "transient" and (
                _other_weight_writers(self, plan) or getattr(plan, "spiking", None) is not None):
            # (a spiking network's rows take their stuck cells as records inside the fused
            # kernels; a transient field would cost a matrix per draw there)
            return set()
        return {l for l, sites in enumerate(plan.sites, start=1) if use_field(sites.n, self.rate)}

    def fields(self, plan) -> list:
        return [StuckField(l, threshold(self.p_zero), threshold(self.rate),
                           float(plan.max_weight_pos[l - 1]), float(plan.max_weight_neg[l - 1]),
                           self.mode or "transient")
                for l in sorted(self.field_layers(plan))]

    def groups(self, plan) -> list:
        if self.rate <= 0:
            return []
        outcomes = (self.p_zero / self.rate, self.p_max / self.rate)
        fields = self.field_layers(plan)
        return [FaultGroup("stuck", l, -1, sites.n, self.rate, outcomes, "synapse")
                for l, sites in enumerate(plan.sites, start=1) if l not in fields]

    def draw_outcomes(self, plan, rng, positions) -> dict:
        if self.rate <= 0:
            return {}
        return {key: (rng.random(pos.size) * self.rate < self.p_max).astype(np.int64)
                for key, (_, pos) in positions.items() if key[0] == "stuck"}

    def add_records(self, plan, positions, outcomes, builder) -> None:
        for l, layer in enumerate(plan.network.layers, start=1):
            draws, pos = positions.get(("stuck", l), (np.zeros(0, np.int64),) * 2)
            if not draws.size:
                continue
            # A stored weight may be read by many entries (a shared conv kernel weight).
            owner, i, j, k, core = plan.sites[l - 1].expand(pos)
            weight = np.asarray(layer.synapse_weights).ravel()[k]
            at_max = np.where(weight < 0, -plan.max_weight_neg[l - 1], plan.max_weight_pos[l - 1])
            value = np.where(outcomes[("stuck", l)][owner] == AT_MAX, at_max, 0.0)
            builder.add_weight(l, draws[owner], i, j, value,
                               core=core if plan.mapping is not None else None)
