"""Layer types behind one protocol, and their registry.

:class:`Layer` is the protocol (what the kernels, the mapping, quantization, the fault sites,
the theory and the files need of a layer); :class:`Dense` and :class:`Conv2d` are the
registered weighted types. A new layer type is a :class:`Layer` subclass decorated with
:func:`register_layer`. Pooling and flattening are parameter-free :class:`Transform` steps
that a network places before a weighted layer (:mod:`neurosim.layers.transforms`).
"""

from neurosim.layers.base import LAYERS, Layer, layer_type, register_layer
from neurosim.layers.conv import Conv2d, conv_output_size, same_padding
from neurosim.layers.dense import Dense
from neurosim.layers.transforms import (TRANSFORMS, AvgPool2d, Flatten, GlobalAvgPool2d,
                                        MaxPool2d, SumPool2d, Transform, register_transform,
                                        transform_type)

__all__ = ["Layer", "Dense", "Conv2d", "LAYERS", "register_layer", "layer_type", "Transform",
           "TRANSFORMS", "register_transform", "transform_type", "Flatten", "MaxPool2d",
           "AvgPool2d", "SumPool2d", "GlobalAvgPool2d", "conv_output_size", "same_padding"]
