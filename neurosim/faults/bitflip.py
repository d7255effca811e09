"""Bit flips in the chip's stored integer weight words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosim.errors import ValidationError
from neurosim.faults.base import (FaultType, ProfileField, format_number, probability,
                                  register_fault)
from neurosim.quantization import flip_words
from neurosim.sampler import FaultGroup

__all__ = ["WeightBitFlip"]


@register_fault
@dataclass(frozen=True)
class WeightBitFlip(FaultType):
    """Each bit of every stored integer weight word flips with probability ``p_bit``.

    The word is the profile's ``weight_bits`` wide two's complement word (Loihi's mixed-sign
    layers store ``Q / 2``, single-sign layers the magnitude ``|Q|``). Several flips of one
    word combine; a stuck cell holds its value (a flip there does nothing).

    Spec: ``bitflip:p=1e-6``.
    """

    p_bit: float = 0.0

    kind = "bitflip"
    spec_keys = {"p": "rate per bit"}
    profile_fields = (ProfileField(
        "weight_bit_flip", "Probability that one bit of a stored integer weight word is flipped.",
        "probability per bit", "bitflip"),)
    needs_mapping = True

    def __post_init__(self):
        object.__setattr__(self, "p_bit", probability("WeightBitFlip", "p_bit", self.p_bit))

    def is_null(self) -> bool:
        return self.p_bit == 0

    def spec(self, legacy: bool = False) -> str:
        return f"bitflip:p={format_number(self.p_bit, legacy)}"

    @classmethod
    def from_params(cls, params: dict, text: str) -> "WeightBitFlip":
        return cls(cls.number(params, "p", text))

    @classmethod
    def from_profile(cls, rates) -> "WeightBitFlip":
        return cls(rates.weight_bit_flip)

    def check(self, plan) -> None:
        super().check(plan)
        if not self.is_null() and plan.use_float:
            raise ValidationError(
                "Bit flips act on the chip's integer weight words; they cannot be simulated on "
                "the float network (drop --float / use_float, or the bitflip fault)."
            )

    def groups(self, plan) -> list:
        if self.p_bit <= 0:
            return []
        bits = plan.mapping.profile.weight_bits
        return [FaultGroup("bitflip", l, -1, sites.n * bits, self.p_bit, site="synapse")
                for l, sites in enumerate(plan.sites, start=1)]

    def add_records(self, plan, positions, outcomes, builder) -> None:
        mapping = plan.mapping
        for l, layer in enumerate(plan.network.layers, start=1):
            draws, pos = positions.get(("bitflip", l), (np.zeros(0, np.int64),) * 2)
            if not draws.size:
                continue
            q = mapping.quantization[l - 1]
            bits = mapping.profile.weight_bits
            n_syn = plan.sites[l - 1].n
            weight, bit = pos // bits, pos % bits
            key = draws * n_syn + weight
            order = np.argsort(key, kind="stable")
            key, bit = key[order], bit[order]
            # Several flipped bits of one word combine into one mask (positions are distinct).
            starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            masks = np.bitwise_or.reduceat(np.left_shift(1, bit).astype(np.int64), starts)
            key = key[starts]
            draws, site = key // n_syn, key % n_syn
            # A stored word may be read by many entries (a shared conv kernel weight).
            owner, i, j, weight, core = plan.sites[l - 1].expand(site)
            draws, masks = draws[owner], masks[owner]
            # A stuck cell holds its value: drop flips of words already overridden (a stuck
            # site's entries are exactly the entries of its word).
            n_entries = layer.n_out * layer.n_in
            entry = draws * n_entries + i * layer.n_in + j
            sd, si, sj = builder.weight_entries(l)
            keep = ~np.isin(entry, sd * n_entries + si * layer.n_in + sj)
            draws, weight, i, j, masks, core = (draws[keep], weight[keep], i[keep], j[keep],
                                                masks[keep], core[keep])
            magnitude_sign = 0
            if mapping.profile.mixed_sign_drop_lsb and q.sign_mode != "mixed":
                magnitude_sign = -1 if q.sign_mode == "inhibitory" else 1
            Q_new = flip_words(q.Q.ravel()[weight], masks, bits, q.step, magnitude_sign)
            builder.add_weight(l, draws, i, j, q.scale * Q_new.astype(np.float64), core=core)
