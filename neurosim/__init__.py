"""neurosim: fault simulation and fault-tolerance certification of neural networks on
neuromorphic hardware.

The pipeline (see docs/architecture.md): a :class:`Network` of registered layers is mapped onto
a chip profile (:func:`map_network`), lowered with a fault model to a plan, and run by a backend
(numba, numpy, lava) under an estimator (Monte Carlo, stratified) that a runner drives;
:func:`simulate` and :func:`certify` are the front doors.
"""

__version__ = "0.2.0"

from neurosim.errors import (
    BackendUnsupportedError,
    FileFormatError,
    MappingError,
    MissingExtraError,
    NeurosimError,
    NeurosimWarning,
    ProfileError,
    ReadLimitError,
    ResultNotSavedError,
    ShapeError,
    UnsupportedLayerError,
    UntrustedPickleError,
    ValidationError,
)
from neurosim.activations import ACTIVATIONS, Activation
from neurosim.layers import LAYERS, Dense, Layer, register_layer
from neurosim.network import Network
from neurosim.io import load_network, save_network
from neurosim.io.nir import load_nir, save_nir  # (imports nir only when called)
from neurosim.io.netx import load_netx, read_netx
from neurosim.io.guard import read_limit, set_read_limit
from neurosim.faults import (AnalogCrossbar, CoreFailure, FaultModel, FaultType, LeakPerturbation,
                             NeuronCrash, SynapseStuck, ThresholdPerturbation,
                             WeightBitFlip, parse_fault_model, parse_fault_spec, register_fault)
from neurosim.hardware import FaultRates, HardwareProfile, list_profiles, load_profile
from neurosim.mapping import Mapping, load_mapping, map_network
from neurosim.datasets import load_data, load_digits_conv_model, load_digits_model, load_digits_test
from neurosim.backends import Backend, get_backend
from neurosim.runners import MapRunner, Runner, SerialRunner
from neurosim.dask_runner import DaskRunner  # (imports Dask only when one is made)
from neurosim.results import Certificate, SimulationResult, load_certificate, load_result
from neurosim.simulation import simulate
from neurosim.certify import certify, stratified_estimate
from neurosim.backends.numba import warmup

__all__ = [
    "__version__", "NeurosimError", "ValidationError", "ShapeError", "FileFormatError",
    "UnsupportedLayerError", "ProfileError", "MappingError", "MissingExtraError",
    "UntrustedPickleError", "BackendUnsupportedError", "NeurosimWarning", "ReadLimitError", "ResultNotSavedError",
    "read_limit", "set_read_limit",
    "Activation", "ACTIVATIONS", "Layer", "Dense", "LAYERS", "register_layer", "Network",
    "load_network", "save_network", "load_nir", "save_nir", "load_netx", "read_netx", "FaultType", "FaultModel", "NeuronCrash", "SynapseStuck",
    "WeightBitFlip", "CoreFailure", "AnalogCrossbar", "ThresholdPerturbation", "LeakPerturbation",
    "register_fault", "parse_fault_spec", "parse_fault_model",
    "FaultRates", "HardwareProfile", "list_profiles", "load_profile", "Mapping", "map_network",
    "load_mapping", "load_data", "load_digits_model", "load_digits_conv_model", "load_digits_test",
    "Backend",
    "get_backend", "Runner", "SerialRunner", "MapRunner", "DaskRunner", "SimulationResult", "Certificate",
    "load_result", "load_certificate", "simulate", "certify", "stratified_estimate", "warmup",
]
