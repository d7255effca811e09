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

__version__ = "0.1.0"
