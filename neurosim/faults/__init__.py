"""Fault types, fault models and their sparse sampling.

Fault semantics (the documentation states them exactly like this):

* **Neuron crash**, per-layer rate ``p_l`` (input layer optional, hidden and output layers):
  ``silent`` (default, hardware: a dead neuron emits nothing) ``y_i := 0``;
  ``paper`` (Def. 3: incoming weights zeroed) ``z_i := b_i, y_i := phi(b_i)``;
  ``stuck`` ``y_i := v`` (saturated neuron).
* **Synapse / crossbar cell**: stuck-at-0 (open, ``W_ij := 0``), stuck-at-max (``|W_ij| :=``
  the layer's largest representable magnitude, sign kept: on a mapping the word's largest value
  of that sign, ``scale * q_max`` or ``scale * |q_min|``; on the float network ``max |W_l|``;
  a zero weight becomes positive), each with its own rate. A synapse is stuck at 0 with
  probability ``p_zero``, at max with ``p_max``, healthy otherwise.
* **Bit flip** in the profile's integer weight word (two's complement, ``weight_bits`` wide;
  Loihi's mixed-sign layers store ``Q / 2``, single-sign layers the magnitude ``|Q|``), each
  bit independently with probability ``p_bit``.
* **Core failure**: every neuron mapped to a failed core crashes (silently: the core emits
  nothing); on crossbar profiles a failed tile contributes nothing (its weight block reads 0).
  Spare cores of the profile, which fail at the same rate, replace failed cores of their chip,
  lowest core id first.
* **Spiking neurons** (:mod:`neurosim.faults.neuron_param`): a crash may last ``steps`` time
  steps only (1: a transient that hits one step); a neuron's threshold or leak is scaled by a
  factor (``factor=F``, ``lognormal=S``, ``uniform=LO/HI``), each neuron with rate ``p``.
* **Transient** faults are drawn afresh for every input (paper Def. 5); **permanent** faults are
  drawn once per chip instance and shared by all inputs.

Each fault type is one class in its own module, registered by name (:func:`register_fault`):
:class:`NeuronCrash` (``crash``), :class:`SynapseStuck` (``stuck``), :class:`WeightBitFlip`
(``bitflip``), :class:`CoreFailure` (``core``), :class:`AnalogCrossbar` (``analog``: device
noise, drift, DAC and ADC of crossbar tiles), and for spiking networks
:class:`ThresholdPerturbation` (``threshold``) and :class:`LeakPerturbation` (``leak``): a
neuron's threshold or leak scaled by a factor from a stated distribution. See :mod:`neurosim.faults.base` for the
protocol.
"""

from neurosim.faults.base import (
    FAULT_TYPES,
    FaultModel,
    FaultProcess,
    FaultType,
    ProfileField,
    as_fault_model,
    format_number,
    parse_fault_model,
    parse_fault_spec,
    profile_faults,
    register_fault,
)
from neurosim.faults.crash import CRASH_MODES, CRASH_SEMANTICS, NeuronCrash
from neurosim.faults.stuck import SynapseStuck
from neurosim.faults.bitflip import WeightBitFlip
from neurosim.faults.core import CoreFailure, failed_core_records
from neurosim.faults.analog import AnalogCrossbar, parse_time
from neurosim.faults.neuron_param import LeakPerturbation, ThresholdPerturbation
from neurosim.kernels.codes import (CRASH_PAPER, CRASH_SILENT, CRASH_STUCK, REC_CRASH, REC_TILE,
                                    REC_WEIGHT)

__all__ = [
    "FaultType",
    "FaultProcess",
    "FaultModel",
    "ProfileField",
    "FAULT_TYPES",
    "register_fault",
    "NeuronCrash",
    "SynapseStuck",
    "WeightBitFlip",
    "CoreFailure",
    "AnalogCrossbar",
    "ThresholdPerturbation",
    "LeakPerturbation",
    "parse_time",
    "failed_core_records",
    "parse_fault_spec",
    "parse_fault_model",
    "profile_faults",
    "as_fault_model",
    "format_number",
    "CRASH_SEMANTICS",
    "CRASH_MODES",
    "REC_CRASH",
    "REC_WEIGHT",
    "REC_TILE",
    "CRASH_SILENT",
    "CRASH_PAPER",
    "CRASH_STUCK",
]
