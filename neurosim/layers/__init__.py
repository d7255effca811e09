"""Layer types behind one protocol, and their registry.

:class:`Layer` is the protocol (what the kernels, the mapping, quantization, the fault sites,
the theory and the files need of a layer); :class:`Dense` is the first registered type. A new
layer type is a :class:`Layer` subclass decorated with :func:`register_layer`.
"""

from neurosim.layers.base import LAYERS, Layer, layer_type, register_layer
from neurosim.layers.dense import Dense

__all__ = ["Layer", "Dense", "LAYERS", "register_layer", "layer_type"]
