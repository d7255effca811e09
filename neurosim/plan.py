"""The builder: lower a target (Network or Mapping) and a fault model to a :class:`Plan`.

A plan is everything the sampler, the backends and the estimators need, as arrays: the
network the chip computes, each layer's matrix and bias, activation codes, the largest stored
weight of each sign, and the fault groups of every active fault type. Nothing here draws a
random number or runs a network.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from neurosim.activations import ACTIVATION_CODES
from neurosim.errors import NeurosimWarning, ValidationError
from neurosim.faults import FaultModel, as_fault_model, profile_faults
from neurosim.mapping import Mapping, network_label, target_network
from neurosim.network import Network
from neurosim.sampler import SITE_ORDER
from neurosim.sites import synapse_sites

#: The largest matrix (entries) a conv layer is unfolded into, on demand: the NumPy reference,
#: Lava and the integer model multiply with each layer's matrix ``A`` (1 GiB in float64); the
#: numba backend computes conv layers from their kernels and never unfolds them.
MAX_MATRIX_ENTRIES = 1 << 27

__all__ = ["Plan", "build_plan", "resolve_faults", "LayerMatrices"]


class LayerMatrices:
    """Each layer's matrix ``A_l`` as a list, a conv layer's unfolded when first asked for.

    A dense layer's is its ``W``; a conv layer's unfolded kernel is built on first access and
    kept, and one over :data:`MAX_MATRIX_ENTRIES` entries is an error that says so (the numba
    backend, which does not need it, runs such layers).
    """

    def __init__(self, layers):
        self._layers = list(layers)
        self._cache = {}

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> np.ndarray:
        i = range(len(self._layers))[i]
        if i not in self._cache:
            layer = self._layers[i]
            if layer.n_out * layer.n_in > MAX_MATRIX_ENTRIES:
                raise ValidationError(
                    f"Layer {i + 1} ({layer.kind}) of the network is a {layer.n_out} x "
                    f"{layer.n_in} matrix when unfolded ({layer.n_out * layer.n_in:,} entries); "
                    f"this computation multiplies with unfolded matrices of at most "
                    f"{MAX_MATRIX_ENTRIES:,} entries. The numba backend simulates and certifies "
                    "it from its kernel (backend='numba').")
            self._cache[i] = np.ascontiguousarray(layer.dense_matrix())
        return self._cache[i]

    def __getstate__(self):  # unfolded matrices are rebuilt where needed, not pickled
        return {"_layers": self._layers, "_cache": {}}


@dataclass
class Plan:
    """Everything the sampler and the kernels need, as arrays.

    Attributes
    ----------
    network : Network
        What the chip computes (the quantized network of a mapping, unless ``use_float``).
    W : LayerMatrices
        Each layer's matrix ``A_l`` (dense, ``(n_l, n_in)``; a conv layer unfolded on first
        access).
    b : list of ndarray
        Each layer's per-neuron bias.
    pre : list of tuple
        The pooling / flattening steps before each layer (what its ``A`` multiplies is
        ``T(y_{l-1})``).
    sites : list of SynapseSites
        Each layer's stored weights as fault sites (:mod:`neurosim.sites`).
    max_weight_pos, max_weight_neg : list of float
        Per layer 1..L (index l - 1): the largest stored weight of each sign (a stuck-at-max
        cell's value): the word's extremes ``scale * q_max`` and ``scale * |q_min|`` on a
        mapping, ``max |W_l|`` for both on the float network.
    fault_types : list
        The fault model's processes, in registration order (the order of records).
    groups : list of FaultGroup
        Their fault sites, in sampling order.
    fields : list of StuckField
        Faults drawn as fields instead of groups (:mod:`neurosim.fields`).
    modes : dict
        Each active process's mode by kind (transient or permanent).
    analog : AnalogCrossbar or None
        The crossbar's analog non-idealities, when the fault model has them (the estimator
        then runs chips through :mod:`neurosim.crossbar`).
    """

    network: Network
    mapping: "Mapping | None"
    use_float: bool
    faults: FaultModel
    dtype: np.dtype
    widths: list
    W: LayerMatrices
    b: list
    act_codes: list
    alphas: list
    betas: list
    pre: list
    sites: list
    max_weight_pos: list
    max_weight_neg: list
    fault_types: list
    groups: list
    fields: list = dataclasses.field(default_factory=list)
    modes: dict = dataclasses.field(default_factory=dict)
    allow_fields: bool = True
    analog: object = None
    #: The SpikingNetwork when the target runs as spiking neurons (its ``network`` is
    #: ``network``): the backends then run :mod:`neurosim.backends.spiking`.
    spiking: object = None

    @property
    def n_layers(self) -> int:
        return len(self.W)

    @property
    def target(self):
        """What this plan was built from, to build another from: the SpikingNetwork, the
        Mapping or the Network."""
        if self.mapping is not None:  # (a spiking mapping carries its spiking execution)
            return self.mapping
        return self.spiking if self.spiking is not None else self.network

    @property
    def simulated_network(self) -> str:
        return network_label(self.mapping, self.use_float)

    @property
    def expected_faults(self) -> float:
        """Mean number of faulty sites per draw (fields included)."""
        return float(sum(g.n * g.rate for g in self.groups)
                     + sum(self.sites[f.layer - 1].n * f.rate for f in self.fields))

    @property
    def expected_records(self) -> float:
        """Mean number of fault records per draw: what sampling a draw costs in memory (a
        synapse site sets every entry of ``A`` that reads it; a core, its neurons or tiles)."""
        total = 0.0
        cores = self.mapping.cores if self.mapping is not None else []
        per_core = (sum(c.out_stop - c.out_start for c in cores) / len(cores)) if cores else 1.0
        for g in self.groups:
            if g.site == "synapse":
                total += g.n * g.rate * self.sites[g.layer - 1].mean_entries
            elif g.site == "core":
                total += g.n * g.rate * per_core
            else:
                total += g.n * g.rate
        return float(total)

    @property
    def run_mode(self) -> str:
        """``transient``, ``permanent`` or ``mixed`` (see :meth:`FaultModel.run_mode`)."""
        return self.faults.run_mode()

    def kinds_in(self, mode: str) -> set:
        """The fault kinds in ``mode``."""
        return {kind for kind, m in self.modes.items() if m == mode}

    def fields_in(self, mode: str) -> list:
        return [f for f in self.fields if f.mode == mode]

    def with_weights(self, weights: dict, fields: list) -> "Plan":
        """This plan with layer ``l``'s matrix replaced by ``weights[l]`` (a chip's faulty
        weights) and only ``fields`` left as fields."""
        W = [weights.get(l, self.W[l - 1]) for l in range(1, self.n_layers + 1)]
        return dataclasses.replace(self, W=W, fields=list(fields))


def resolve_faults(target, faults, owner: str = "simulate", use_float: bool = False) -> FaultModel:
    """``faults`` as a FaultModel; None means the profile's defaults of a Mapping ``target``.

    With ``use_float`` the profile's bit-flip default is dropped, with a note: the float
    network has no integer words to flip (an explicit bit-flip fault is an error instead).
    """
    if faults is None:
        if not isinstance(target, Mapping):
            raise ValidationError(
                f"{owner} needs 'faults' when given a Network; only a Mapping has default rates "
                "(from its profile)."
            )
        model = profile_faults(target.profile)
        # (a graded network has no thresholds, an IF network no leaks: such defaults go)
        model = FaultModel([p for p in model.processes if p.applies_to(target.spiking)])
        flip = model.get("bitflip")
        if use_float and flip is not None:
            warnings.warn(
                f"Simulating the float network (use_float / --float): the profile's default "
                f"{flip.spec()} is left out, because the float network has no integer weight "
                "words to flip. Give --fault explicitly to choose the faults.",
                NeurosimWarning, stacklevel=3)
            model = model.without("bitflip")
        return model
    return _profile_analog(target, as_fault_model(faults, owner), owner)


def _profile_analog(target, model: FaultModel, owner: str) -> FaultModel:
    """``analog`` without keys (``AnalogCrossbar(device="profile")``) becomes the process of the
    target profile's ``[analog]`` table."""
    proc = model.get("analog")
    if proc is None or proc.device != "profile":
        return model
    if not isinstance(target, Mapping) or not getattr(target.profile, "analog", None):
        raise ValidationError(
            f"{owner}: the 'analog' fault without keys takes the chip profile's [analog] table, "
            "and this target has none; give analog:device=pcm|reram,... explicitly.")
    from dataclasses import replace

    from neurosim.faults.analog import AnalogCrossbar

    resolved = replace(AnalogCrossbar.from_chip(target.profile), mode=proc.mode)
    return FaultModel([resolved if p is proc else p for p in model.processes])


def build_plan(target, faults, use_float: bool = False, owner: str = "simulate",
               fields: bool = True) -> Plan:
    """Lower ``target`` (a Mapping or a Network) and ``faults`` to a :class:`Plan`.

    On a mapping the quantized network is simulated unless ``use_float``; bit flips and core
    failures need a mapping. Every fault process checks that it can act on the target first.
    ``fields``: dense stuck cells are drawn as fields (:mod:`neurosim.fields`) where the
    measured costs favour it; False draws every fault as records (the record path's tests).
    """
    from neurosim.spiking.snn import SpikingNetwork

    spiking = target if isinstance(target, SpikingNetwork) else None
    network, mapping = target_network(target if spiking is None else spiking.network, use_float,
                                      owner)
    if mapping is not None and mapping.spiking is not None:
        spiking = mapping.chip_spiking(use_float)  # (spiking on the chip's weights)
    faults = as_fault_model(faults, owner)
    if mapping is not None and not use_float:
        # The largest value the word holds on each side (two's complement: 2^(b-1) - 1 up,
        # 2^(b-1) down).
        max_pos = [q.scale * q.q_max for q in mapping.quantization]
        max_neg = [q.scale * -q.q_min for q in mapping.quantization]
    else:
        max_pos = max_neg = [float(np.abs(layer.synapse_weights).max()) for layer in network.layers]
    plan = Plan(
        network=network, mapping=mapping, use_float=bool(use_float), faults=faults,
        dtype=network.dtype, widths=network.widths,
        W=LayerMatrices(network.layers),
        b=[np.ascontiguousarray(layer.bias) for layer in network.layers],
        act_codes=[ACTIVATION_CODES[a.name] for a in network.activations],
        alphas=[float(a.alpha) for a in network.activations],
        betas=[float(a.beta) for a in network.activations],
        pre=list(network.pre),
        sites=[synapse_sites(layer, l, mapping)
               for l, layer in enumerate(network.layers, start=1)],
        max_weight_pos=max_pos, max_weight_neg=max_neg, fault_types=[], groups=[],
        allow_fields=bool(fields), spiking=spiking,
    )
    types = faults.in_registry_order()
    for proc in types:
        proc.check(plan)
    plan.fault_types = types
    plan.modes = faults.modes()
    plan.fields = [f for proc in types if not proc.is_null() for f in proc.fields(plan)]
    analog = faults.get("analog")
    plan.analog = analog if analog is not None and not analog.is_null() else None
    rank = {kind: i for i, kind in enumerate(p.kind for p in types)}
    groups = [g for proc in types for g in proc.groups(plan)]
    # Sampling order: neurons, then synapses, then cores; by layer (chip); by type.
    plan.groups = sorted(groups, key=lambda g: (SITE_ORDER.index(g.site),
                                                g.chip if g.site == "core" else g.layer,
                                                rank[g.kind]))
    return plan
