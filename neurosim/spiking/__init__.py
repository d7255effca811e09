"""Spiking execution: neuron models, spiking networks, the NumPy reference of their time loop
and ANN-to-SNN conversion (see docs/spiking.md)."""

from neurosim.spiking.conversion import convert, layer_scales
from neurosim.spiking.neurons import IF, LI, LIF, NEURONS, CubaLIF, NeuronModel, make_neuron
from neurosim.spiking.reference import neuron_loop, run
from neurosim.spiking.snn import ENCODINGS, READOUTS, SpikingNetwork

__all__ = ["NeuronModel", "IF", "LIF", "CubaLIF", "LI", "NEURONS", "make_neuron", "SpikingNetwork",
           "ENCODINGS", "READOUTS", "run", "neuron_loop", "convert", "layer_scales"]
