"""neurosim: fault simulation and fault-tolerance certification of neural networks on
neuromorphic hardware."""

from neurosim.errors import (
    FileFormatError,
    MappingError,
    MissingExtraError,
    NeurosimError,
    ProfileError,
    ShapeError,
    UnsupportedLayerError,
    UntrustedPickleError,
    ValidationError,
)
from neurosim.network import ACTIVATIONS, Activation, Dense, Network
from neurosim.io import load_network, save_network
from neurosim.hardware import FaultRates, HardwareProfile, list_profiles, load_profile
from neurosim.mapping import Mapping, load_mapping, map_network
from neurosim.datasets import load_data, load_digits_model, load_digits_test
from neurosim.faults import CoreFailure, FaultModel, NeuronCrash, SynapseStuck, WeightBitFlip
from neurosim.simulation import SimulationResult, simulate
from neurosim.engine import warmup
from neurosim.certify import Certificate, certify, stratified_estimate

__version__ = "0.1.0"
