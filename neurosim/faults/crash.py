"""Neuron crashes (paper Def. 3 and the hardware's silent neurons)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurosim.errors import ValidationError, param_error
from neurosim.faults.base import (FaultType, ProfileField, format_number, probability,
                                  register_fault)
from neurosim.kernels.codes import CRASH_PAPER, CRASH_SILENT, CRASH_STUCK
from neurosim.sampler import FaultGroup

__all__ = ["NeuronCrash", "CRASH_SEMANTICS", "CRASH_MODES"]

CRASH_SEMANTICS = ("silent", "paper", "stuck")
#: Kernel code of each semantics (``FaultBatch.crash_mode``).
CRASH_MODES = {"silent": CRASH_SILENT, "paper": CRASH_PAPER, "stuck": CRASH_STUCK}
#: The largest output a stuck neuron may be given (|value|).
MAX_STUCK_VALUE = 1e6


@register_fault
@dataclass(frozen=True)
class NeuronCrash(FaultType):
    """Neurons crash independently, each with its layer's rate.

    Parameters
    ----------
    p : float or sequence of float
        A scalar applies to every on-chip neuron (hidden and output layers 1..L). A sequence of
        L rates gives layers 1..L; a sequence of L + 1 rates gives layers 0..L (0 is the input).
    semantics : {"silent", "paper", "stuck"}
        What a crashed neuron outputs: ``silent`` (default, hardware: a dead neuron emits
        nothing) ``y_i := 0``; ``paper`` (Def. 3: incoming weights zeroed) ``z_i := b_i,
        y_i := phi(b_i)``; ``stuck`` ``y_i := value`` (saturated neuron). On the input layer
        ``paper`` is ``silent`` (an input has no weights).
    value : float
        The output of a stuck neuron (``semantics="stuck"``).
    layers : sequence of int, optional
        Restrict a scalar rate to these layers; the input layer (0) crashes only when named.
    steps : int, optional
        Spiking networks only: the crash lasts ``steps`` consecutive time steps (1: a transient
        that hits one step), starting at a step drawn uniformly from ``0..T - steps``; the
        neuron's output at those steps is 0 (silent: a lost spike) or ``value`` (stuck: a
        forced spike) and its membrane runs on unchanged. None (default): every step.

    Spec: ``crash:p=1e-3[,layers=1,2][,semantics=paper|stuck,value=V][,steps=K]``, or one
    rate per layer: ``crash:p=1e-3/0/2e-3`` (a list of one rate is written ``p=1e-3/``).
    """

    p: "float | tuple" = 0.0
    semantics: str = "silent"
    value: float = 0.0
    layers: "tuple | None" = None
    steps: "int | None" = None

    kind = "crash"
    spec_keys = {"p": "rate (or rates per layer, separated by /)", "layers": "layer indices",
                 "semantics": "silent, paper or stuck", "value": "output of a stuck neuron",
                 "steps": "spiking networks: the crash lasts this many time steps"}
    list_keys = ("layers",)
    profile_fields = (ProfileField(
        "neuron_crash", "Probability that a neuron is crashed (emits nothing).",
        "probability per neuron", "crash"),)

    def __post_init__(self):
        if np.ndim(self.p) == 0:
            object.__setattr__(self, "p", probability("NeuronCrash", "p", self.p))
        else:
            rates = tuple(probability("NeuronCrash", "p", v) for v in self.p)
            if not rates:
                raise param_error("NeuronCrash", "p", "a float or a non-empty list of floats", self.p)
            object.__setattr__(self, "p", rates)
            if self.layers is not None:
                raise ValidationError(
                    "NeuronCrash takes 'layers' only with a scalar 'p'; a list of rates already "
                    "gives one rate per layer."
                )
        if self.semantics not in CRASH_SEMANTICS:
            raise param_error("NeuronCrash", "semantics", f"one of {CRASH_SEMANTICS}", self.semantics)
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise param_error("NeuronCrash", "value", "a finite float", self.value) from None
        if not math.isfinite(value) or abs(value) > MAX_STUCK_VALUE:
            raise param_error("NeuronCrash", "value", f"a finite float with |value| <= "
                              f"{MAX_STUCK_VALUE:g} (a neuron's output; larger ones overflow the "
                              "float32 arithmetic of the layers after it)", self.value)
        object.__setattr__(self, "value", value)
        if self.layers is not None:
            try:
                layers = tuple(int(l) for l in self.layers)
            except (TypeError, ValueError):
                raise param_error("NeuronCrash", "layers", "non-negative layer indices",
                                  self.layers) from None
            if any(l < 0 for l in layers) or not layers:
                raise param_error("NeuronCrash", "layers", "non-negative layer indices", self.layers)
            if len(set(layers)) != len(layers):
                raise param_error("NeuronCrash", "layers", "distinct layer indices", self.layers)
            object.__setattr__(self, "layers", layers)
        if self.steps is not None:
            steps = self.steps
            if isinstance(steps, bool) or not float(steps).is_integer() or steps < 1:
                raise param_error("NeuronCrash", "steps", "a positive integer (time steps) or "
                                  "None (every step)", steps)
            if self.semantics == "paper":
                raise ValidationError(
                    "NeuronCrash: a crash of a few steps ('steps') acts on the neuron's output; "
                    "semantics='paper' (incoming weights zeroed) has no such form. Use silent "
                    "or stuck.")
            object.__setattr__(self, "steps", int(steps))

    @property
    def crash_mode(self) -> int:
        return CRASH_MODES[self.semantics]

    def layer_rates(self, n_layers: int) -> np.ndarray:
        """Crash rate of layers 0..L (index 0 is the input layer)."""
        rates = np.zeros(n_layers + 1)
        if np.ndim(self.p) == 0:
            chosen = self.layers if self.layers is not None else range(1, n_layers + 1)
            for l in chosen:
                if l > n_layers:
                    raise ValidationError(
                        f"NeuronCrash names layer {l}, but the network has layers 0..{n_layers}."
                    )
                rates[l] = self.p
        elif len(self.p) == n_layers:
            rates[1:] = self.p
        elif len(self.p) == n_layers + 1:
            rates[:] = self.p
        else:
            raise ValidationError(
                f"The 'p' parameter of NeuronCrash must be a scalar, {n_layers} rates (layers "
                f"1..{n_layers}) or {n_layers + 1} rates (layers 0..{n_layers}). Got {len(self.p)} "
                "rates instead."
            )
        return rates

    def is_null(self) -> bool:
        return bool(np.all(np.asarray(self.p) == 0))

    # --- text -----------------------------------------------------------------------------
    def spec(self, legacy: bool = False) -> str:
        if np.ndim(self.p) == 0:
            s = f"crash:p={format_number(self.p, legacy)}"
        else:  # a list of one rate ends with "/" (else it would read back as a scalar)
            s = "crash:p=" + "/".join(format_number(v, legacy) for v in self.p)
            s += "/" if len(self.p) == 1 and not legacy else ""
        if self.layers is not None:
            s += ",layers=" + ",".join(map(str, self.layers))
        if self.semantics != "silent":
            s += f",semantics={self.semantics}"
        if self.semantics == "stuck" or (self.value != 0.0 and not legacy):
            s += f",value={format_number(self.value, legacy)}"
        if self.steps is not None:
            s += f",steps={self.steps}"
        return s

    @classmethod
    def from_params(cls, params: dict, text: str) -> "NeuronCrash":
        if "p" not in params:
            raise ValidationError(f"--fault {text!r}: crash needs p=RATE.")
        raw = params["p"][0]
        if "/" in raw:
            parts = raw.split("/")
            if len(parts) == 2 and parts[1] == "":
                parts = parts[:1]  # "p=1e-3/": a list of one rate
            try:
                p = tuple(float(v) for v in parts)
            except ValueError:
                raise ValidationError(
                    f"The 'p' value of fault 'crash' must be a number or numbers separated by "
                    f"'/'. Got {raw!r} in --fault {text!r}."
                ) from None
        else:
            p = cls.number(params, "p", text)
        layers = cls.layer_list(params, text)
        steps = None
        if "steps" in params:
            try:
                steps = int(params["steps"][0])
            except ValueError:
                raise ValidationError(
                    f"--fault {text!r}: steps must be a positive integer, e.g. steps=1.") from None
        return cls(p, semantics=params.get("semantics", ["silent"])[0],
                   value=cls.number(params, "value", text, default=0.0), layers=layers,
                   steps=steps)

    @classmethod
    def from_profile(cls, rates) -> "NeuronCrash":
        return cls(rates.neuron_crash)

    # --- lowering -------------------------------------------------------------------------
    def check(self, plan) -> None:
        self.layer_rates(plan.n_layers)  # raises for a layer the network does not have
        if self.steps is not None and not self.is_null():
            snn = getattr(plan, "spiking", None)
            if snn is None:
                raise ValidationError(
                    "NeuronCrash(steps=...) crashes a neuron for some time steps; the network "
                    "runs graded (no time steps). Give a SpikingNetwork, or leave steps out.")
            if self.steps > snn.T:
                raise ValidationError(
                    f"NeuronCrash(steps={self.steps}) lasts longer than the run (T = {snn.T} "
                    "steps).")

    def _starts(self, plan) -> int:
        """How many first steps a crash of ``steps`` steps may have (1: every step)."""
        return 1 if self.steps is None else plan.spiking.T - self.steps + 1

    def groups(self, plan) -> list:
        rates = self.layer_rates(plan.n_layers)
        starts = self._starts(plan)
        return [FaultGroup("crash", l, -1, plan.widths[l], float(rates[l]),
                           (1.0 / starts,) * starts, site="neuron")
                for l in range(plan.n_layers + 1) if rates[l] > 0]

    def draw_outcomes(self, plan, rng, positions) -> dict:
        """A crash of a few steps: each faulty neuron's first step (uniform)."""
        starts = self._starts(plan)
        if starts == 1:
            return {}
        return {key: rng.integers(0, starts, size=pos.size, dtype=np.int64)
                for key, (_, pos) in positions.items() if key[0] == "crash"}

    def add_records(self, plan, positions, outcomes, builder) -> None:
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        mapping = plan.mapping
        for l in range(plan.n_layers + 1):
            draws, pos = positions.get(("crash", l), empty)
            if not draws.size:
                continue
            core = mapping.neuron_cores(l, pos) if (mapping is not None and l >= 1) else None
            steps = None
            if self.steps is not None:
                start = outcomes.get(("crash", l), np.zeros(pos.size, dtype=np.int64))
                steps = (start, start + self.steps)
            builder.add_crash(l, draws, pos, self.crash_mode, self.value, core=core, steps=steps)

    def single_fault_bound(self, plan, group, clean_activations):
        """Prop. 2 for a silent crash of neuron i of layer l >= 1: ``D z_{l+1} = -A_{l+1}[:, i]
        y_i``, so ``||D y_L||_2 <= |y_i| ||A_{l+1}[:, i]||_2 Lip(phi_{l+1}) C_{l+1}`` (``C`` the
        Lipschitz chain from layer l + 1 on); an output neuron's crash moves the output by
        ``|y_i|``. With pooling or flattening ``T`` before layer l + 1, ``y_i`` moves output
        ``w`` of ``T`` by at most ``G[w, i] |y_i|`` (see ``Transform.influence``), so the column
        norm becomes ``sum_w G[w, i] ||A_{l+1}[:, w]||_2``. Padded by a relative 1e-9 and an
        absolute 1e-12 against round-off."""
        layer = group.layer
        if self.semantics != "silent" or layer < 1 or self.steps is not None:
            return None
        network = plan.network
        y_l = clean_activations[layer].astype(np.float64)
        if layer == network.n_layers:
            gain = np.ones(y_l.shape[1])  # an output neuron: D = -y_i e_i
        else:
            nxt = network.layers[layer]
            gain = nxt.column_norms()
            for t in reversed(network.pre[layer]):
                gain = t.influence(gain)
            gain = gain * network.lipschitz_chain(layer + 1)
            if layer + 1 < network.n_layers:
                gain = gain * nxt.activation.lipschitz
        return np.abs(y_l) * gain[None, :] * (1 + 1e-9) + 1e-12
