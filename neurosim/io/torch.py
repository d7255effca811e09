"""Reading PyTorch models (extra ``torch``; torch is imported lazily).

:func:`network_from_torch` converts an ``nn.Sequential`` (nested Sequentials are flattened),
or the TorchScript version of one (``torch.jit.script`` or ``torch.jit.trace``), made of:

* weighted layers: ``nn.Linear``; ``nn.Conv2d`` (stride, padding as ints, pairs, ``"same"``
  or ``"valid"``, dilation, groups including depthwise, with or without bias;
  ``padding_mode="zeros"`` only);
* ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` right after a Linear / Conv2d: folded into it with
  the inference statistics (``running_mean``, ``running_var``, ``weight``, ``bias``, ``eps``;
  ``affine=False`` means weight 1 and bias 0; ``track_running_stats=False`` is refused), and
  recorded in ``metadata["folded_batchnorm"]``;
* pooling and flattening: ``nn.MaxPool2d`` (kernel, stride, padding; no dilation, ceil_mode
  or return_indices), ``nn.AvgPool2d`` (kernel, stride, padding, ``count_include_pad``; no
  ceil_mode or divisor_override), ``nn.AdaptiveAvgPool2d(1)`` (a global average pooling),
  ``nn.Flatten()`` (``start_dim=1, end_dim=-1``; PyTorch's ``(C, H, W)`` order; a no-op on a
  vector);
* activations: ``ReLU``, ``ReLU6``, ``Hardtanh(min_val, max_val)``, ``LeakyReLU``,
  ``ELU(alpha)``, ``GELU`` (``approximate="none"`` or ``"tanh"``), ``SiLU``, ``Hardswish``,
  ``Hardsigmoid``, ``Tanh``, ``Sigmoid``, ``Softplus`` (beta=1, threshold >= 20);
* ``Identity``, ``Dropout``, ``Dropout1d``, ``Dropout2d`` (ignored).

PyTorch modules do not record the shape of their input: a network that starts with a Conv2d
or a pooling needs ``input_shape=(C, H, W)``. Networks read from PyTorch take image data in
the ``"NCHW"`` layout. A TorchScript module made by ``torch.jit.script`` keeps the settings of
its layers (stride, padding, eps, ...) as attributes; a traced one (``torch.jit.trace``) only
has them as constants in its graph, from which they are read (a layer whose graph is not the
one plain PyTorch traces is refused).

:func:`load_torch` reads a file:

* TorchScript (``torch.jit.save``): loaded with ``torch.jit.load``; no code from the file is
  run by Python's unpickler, so no flag is needed.
* a state_dict (``torch.save(model.state_dict())``): loaded with ``weights_only=True``; needs
  ``architecture=`` (a module to load it into) or ``activations=`` (one per Linear layer;
  Linear layers only).
* a pickled module (``torch.save(model)``): unpickling runs code from the file, so it is
  refused unless ``trust_pickle=True``.

A final ``nn.Softmax`` / ``nn.LogSoftmax`` is dropped (the network then outputs logits; the
argmax is unchanged), with a warning and ``metadata["dropped_output_softmax"] = True``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
import zlib

import numpy as np

from neurosim.errors import (
    FileFormatError,
    MissingExtraError,
    NeurosimError,
    ShapeError,
    UnsupportedLayerError,
    UntrustedPickleError,
)
from neurosim.activations import Activation, make_activation
from neurosim.io import guard
from neurosim.io.builder import NetworkBuilder
from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.network import Network

__all__ = ["network_from_torch", "load_torch"]

#: Module classes neurosim understands (for error messages).
SUPPORTED_MODULES = (
    "Sequential", "Linear", "Conv2d (padding_mode='zeros')",
    "BatchNorm1d/BatchNorm2d (folded into the layer before)",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d (output size 1)", "Flatten",
    "ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Hardswish",
    "Hardsigmoid", "Tanh", "Sigmoid", "Softplus (beta=1)",
    "Identity", "Dropout/Dropout1d/Dropout2d (ignored)", "Softmax/LogSoftmax (last only)",
)
_SIMPLE_ACTIVATIONS = {
    "ReLU": "relu", "ReLU6": "relu6", "Tanh": "tanh", "Sigmoid": "sigmoid",
    "Identity": "identity", "SiLU": "silu", "Hardswish": "hardswish",
    "Hardsigmoid": "hardsigmoid",
}
_IGNORED = {"Dropout", "Dropout1d", "Dropout2d"}
_SOFTMAX = {"Softmax", "LogSoftmax"}
_BATCHNORM = {"BatchNorm1d": 1, "BatchNorm2d": 3}
#: Softplus thresholds below this change the output by more than 2e-9 (neurosim's softplus
#: is exact; PyTorch's returns x where beta x > threshold).
_MIN_SOFTPLUS_THRESHOLD = 20.0

_INSTALL_HINT = "pip install 'neurosim-faults[torch]'"
#: "Not found" for values read from a TorchScript graph (None is a real value there).
_MISSING = object()


def _brief(exc: BaseException) -> str:
    """An exception from another library as one short line (its messages can run to pages)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _import_torch():
    try:
        import torch
    except ImportError:
        raise MissingExtraError(
            f"Reading PyTorch models needs torch, which is not installed: {_INSTALL_HINT}"
        ) from None
    return torch


def _supported_text() -> str:
    return f"Supported modules: {', '.join(SUPPORTED_MODULES)}."


def _to_numpy(tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy().copy()


# --- module conversion ---------------------------------------------------------------------
def _class_name(module, scripted: bool) -> str:
    if scripted:
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


def _flatten(module, scripted: bool, torch, prefix: str = ""):
    """Yield ``(index path, class name, module)`` for the leaves of nested Sequentials.

    ``_modules`` rather than ``named_children()``, which skips a module instance that the
    Sequential holds twice (an activation object reused) although ``forward`` runs it twice.
    """
    for name, child in module._modules.items():
        if child is None:
            continue
        path = f"{prefix}{name}"
        cls = _class_name(child, scripted)
        is_seq = cls == "Sequential" if scripted else isinstance(child, torch.nn.Sequential)
        if is_seq:
            yield from _flatten(child, scripted, torch, prefix=f"{path}.")
        else:
            yield path, cls, child


# --- settings of a layer: attributes, or constants of a traced graph -------------------------
#: ATen ops of a traced Conv2d -> indices of (stride, padding, dilation, groups).
_CONV_OPS = {"aten::_convolution": (3, 4, 5, 8), "aten::conv2d": (3, 4, 5, 6),
             "aten::_convolution_mode": (3, 4, 5, 6)}
_TRACED_HINT = ("Script the eager module with torch.jit.script (which keeps the settings as "
                "attributes), convert the eager nn.Sequential with network_from_torch, or save a "
                "state_dict and load it with architecture=.")


def _aten_nodes(module) -> list:
    """The ATen nodes of a TorchScript module's ``forward`` graph (empty if it has none)."""
    try:
        nodes = list(module.graph.nodes())
    except Exception:
        return []
    return [node for node in nodes if node.kind().startswith("aten::")]


def _base_op(kind: str) -> str:
    """``aten::relu_`` -> ``aten::relu`` (in-place variants take the same arguments)."""
    return kind[:-1] if kind.endswith("_") and not kind.endswith("__") else kind


def _constant(value):
    """The value of a graph input that is a constant (or a list of constants), else _MISSING."""
    node = value.node()
    kind = node.kind()
    if kind == "prim::Constant":
        try:
            out = value.toIValue()
        except Exception:
            return _MISSING
        return tuple(out) if isinstance(out, list) else out
    if kind == "prim::ListConstruct":
        items = tuple(_constant(v) for v in node.inputs())
        return _MISSING if any(item is _MISSING for item in items) else items
    return _MISSING


def _traced_args(module, where: str, ops: dict, what: str) -> list:
    """The constant arguments of the one ATen op of a traced module's graph.

    ``ops`` maps the op names the layer may trace to (e.g. ``aten::max_pool2d``) to the
    indices of the arguments wanted.
    """
    nodes = _aten_nodes(module)
    kinds = [node.kind() for node in nodes]
    if len(nodes) != 1 or _base_op(kinds[0]) not in ops:
        raise UnsupportedLayerError(
            f"{where}: cannot read the {what} of this traced TorchScript module: its graph "
            f"computes {', '.join(kinds) or 'no ATen op'}, not one {' or '.join(ops)}. "
            f"{_TRACED_HINT}"
        )
    inputs = list(nodes[0].inputs())
    values = [_constant(inputs[i]) if i < len(inputs) else _MISSING
              for i in ops[_base_op(kinds[0])]]
    if any(v is _MISSING for v in values):
        raise UnsupportedLayerError(
            f"{where}: cannot read the {what} of this traced TorchScript module: they are not "
            f"constants of its {kinds[0]} node. {_TRACED_HINT}"
        )
    return values


def _is_traced(module, scripted: bool, attr: str) -> bool:
    """A TorchScript module without the attribute ``attr`` (made by ``torch.jit.trace``)."""
    return scripted and not hasattr(module, attr)


def _settings(module, scripted: bool, attrs: tuple, where: str, ops: dict, what: str) -> list:
    """The settings ``attrs`` of a layer: its attributes (eager and scripted modules), else
    the constants of its traced graph (``ops``: op -> argument indices in ``attrs``' order)."""
    if not _is_traced(module, scripted, attrs[0]):
        try:
            return [getattr(module, a) for a in attrs]
        except AttributeError as exc:
            raise UnsupportedLayerError(f"{where}: cannot read its {what}: {exc}") from None
    return _traced_args(module, where, ops, what)


def _pair(value, name: str, where: str) -> tuple:
    """An int or a pair of ints (PyTorch's ``_size_2_t``) as a pair."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) == 1:
        out = out * 2
    if len(out) != 2:
        raise UnsupportedLayerError(f"{where}: its {name} must be an int or a pair of ints. "
                                    f"Got {value!r} instead.")
    return out


def _activation_of(cls: str, module, scripted: bool, where: str) -> "Activation | None":
    """The neurosim activation of an activation module (None if ``cls`` is not one)."""
    if cls in _SIMPLE_ACTIVATIONS:
        return make_activation(_SIMPLE_ACTIVATIONS[cls])
    if cls == "LeakyReLU":
        (slope,) = _settings(module, scripted, ("negative_slope",), where,
                             {"aten::leaky_relu": (1,)}, "negative slope")
        return make_activation("leaky_relu", float(slope))
    if cls == "ELU":
        (alpha,) = _settings(module, scripted, ("alpha",), where, {"aten::elu": (1,)}, "alpha")
        return make_activation("elu", float(alpha))
    if cls == "Hardtanh":
        low, high = _settings(module, scripted, ("min_val", "max_val"), where,
                              {"aten::hardtanh": (1, 2)}, "bounds")
        return make_activation("hardtanh", float(low), float(high))
    if cls == "GELU":
        (approximate,) = _settings(module, scripted, ("approximate",), where,
                                   {"aten::gelu": (1,)}, "approximation")
        if approximate not in ("none", "tanh"):
            raise UnsupportedLayerError(
                f"{where} is a GELU with approximate={approximate!r}; expected 'none' or 'tanh'.")
        return make_activation("gelu" if approximate == "none" else "gelu_tanh")
    if cls == "Softplus":
        beta, threshold = _settings(module, scripted, ("beta", "threshold"), where,
                                    {"aten::softplus": (1, 2)}, "beta and threshold")
        beta, threshold = float(beta), float(threshold)
        if beta != 1.0:
            raise UnsupportedLayerError(
                f"{where} is a Softplus with beta={beta:g}; only beta=1 is supported. "
                f"{_supported_text()}"
            )
        if threshold < _MIN_SOFTPLUS_THRESHOLD:
            raise UnsupportedLayerError(
                f"{where} is a Softplus with threshold={threshold:g}: above it PyTorch returns "
                f"its input instead of the softplus; only thresholds >= "
                f"{_MIN_SOFTPLUS_THRESHOLD:g} (PyTorch's default is 20) are supported.")
        return make_activation("softplus")
    return None


def _input_shape(input_shape, source: str) -> "tuple | None":
    if input_shape is None:
        return None
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(v) for v in input_shape)
        exact = all(float(v) == float(w) for v, w in zip(shape, input_shape))
    except (TypeError, ValueError):
        shape, exact = (), False
    if len(shape) not in (1, 3) or not exact or min(shape) < 1:
        raise ShapeError(
            f"{source}: input_shape must be (C, H, W) for image inputs or (n,) for vectors, "
            f"positive ints without the batch axis. Got {input_shape!r} instead.")
    return shape


class _Reader:
    """Walks the leaves of a Sequential into a NetworkBuilder, tracking the shape of the
    activations (None until known: a network that starts with a Linear layer)."""

    def __init__(self, source: str, scripted: bool, shape, unit: str):
        self.source = source
        self.scripted = scripted
        self.shape = shape
        self.builder = NetworkBuilder(source, unit=unit)

    def read(self, path: str, cls: str, child) -> None:
        where = f"{self.source}: layer {path} ({cls})"
        if cls in _IGNORED:
            return
        handler = {
            "Linear": self.linear, "Conv2d": self.conv2d, "MaxPool2d": self.maxpool,
            "AvgPool2d": self.avgpool, "AdaptiveAvgPool2d": self.adaptive_avgpool,
            "Flatten": self.flatten,
        }.get(cls)
        if handler is not None:
            handler(child, where, path)
            return
        if cls in _BATCHNORM:
            self.batchnorm(cls, child, where)
            return
        if cls in _SOFTMAX:
            self.builder.softmax(where)
            return
        activation = _activation_of(cls, child, self.scripted, where)
        if activation is None:
            raise UnsupportedLayerError(f"{where} is not supported. {_supported_text()}")
        self.builder.activation(activation, where)

    # --- shapes -----------------------------------------------------------------------------
    def need_image(self, where: str, what: str) -> tuple:
        if self.shape is None:
            raise ShapeError(
                f"{where}: a network that starts with a {what} needs the shape of its input "
                "images, which a PyTorch module does not record: pass input_shape=(C, H, W) "
                "(channels first, without the batch axis).")
        if len(self.shape) != 3:
            raise ShapeError(
                f"{where}: a {what} needs an image (C, H, W) but receives a vector of shape "
                f"{self.shape}.")
        return self.shape

    def transform(self, transform, where: str) -> None:
        try:
            bound = transform.bind(self.shape)
        except NeurosimError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        self.builder.transform(transform, where)
        self.shape = tuple(bound.out_shape)

    # --- weighted layers ----------------------------------------------------------------------
    def linear(self, child, where: str, path: str) -> None:
        params = dict(child.named_parameters(recurse=False))
        if "weight" not in params:
            raise FileFormatError(f"{where} has no weight.")
        W = _to_numpy(params["weight"])
        b = _to_numpy(params["bias"]) if params.get("bias") is not None else np.zeros(
            W.shape[0], dtype=W.dtype)
        if self.shape is not None:
            if len(self.shape) != 1:
                raise ShapeError(
                    f"{where} receives an image of shape {self.shape}, on whose last axis "
                    "PyTorch's Linear would act; neurosim needs a vector: add an nn.Flatten() "
                    "before it.")
            if self.shape[0] != W.shape[1]:
                raise ShapeError(
                    f"{where} takes {W.shape[1]} inputs (in_features) but receives "
                    f"{self.shape[0]} values.")
        self.builder.add(Dense(W, b), where, name=path)
        self.shape = (int(W.shape[0]),)

    def conv2d(self, child, where: str, path: str) -> None:
        shape = self.need_image(where, "Conv2d")
        if _is_traced(child, self.scripted, "padding_mode"):
            pads = [n.kind() for n in _aten_nodes(child) if "pad" in n.kind()]
            if pads:
                raise UnsupportedLayerError(
                    f"{where}: its traced graph pads the input ({', '.join(pads)}) before the "
                    "convolution, as a Conv2d with a padding_mode other than 'zeros' does; only "
                    "padding_mode='zeros' is supported.")
            mode = "zeros"
        else:
            mode = getattr(child, "padding_mode", "zeros")
        if mode != "zeros":
            raise UnsupportedLayerError(
                f"{where} has padding_mode={mode!r}; only padding_mode='zeros' is supported.")
        stride, padding, dilation, groups = _settings(
            child, self.scripted, ("stride", "padding", "dilation", "groups"), where, _CONV_OPS,
            "stride, padding, dilation and groups")
        params = dict(child.named_parameters(recurse=False))
        if "weight" not in params or params["weight"].ndim != 4:
            raise FileFormatError(f"{where} has no 4-D weight (C_out, C_in/groups, kh, kw).")
        K = _to_numpy(params["weight"])
        b = _to_numpy(params["bias"]) if params.get("bias") is not None else None
        groups = int(groups)
        if K.shape[1] * groups != shape[0]:
            raise ShapeError(
                f"{where} takes {K.shape[1] * groups} input channels (in_channels) but receives "
                f"an image of shape {shape} ({shape[0]} channels).")
        if isinstance(padding, str):
            padding = padding.lower()
            if padding not in ("same", "valid"):
                raise UnsupportedLayerError(
                    f"{where} has padding={padding!r}; expected 'same', 'valid' or ints.")
        else:
            padding = _pair(padding, "padding", where)
        try:
            layer = Conv2d.build(K, b, in_shape=shape, stride=_pair(stride, "stride", where),
                                 padding=padding, dilation=_pair(dilation, "dilation", where),
                                 groups=groups)
        except NeurosimError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        if min(layer.out_hw) < 1:
            raise ShapeError(
                f"{where}: its {K.shape[2]}x{K.shape[3]} kernel (dilation {layer.dilation}, "
                f"padding {layer.padding}) does not fit its input of shape {shape}.")
        self.builder.add(layer, where, name=path)
        self.shape = tuple(layer.out_shape)

    def batchnorm(self, cls: str, child, where: str) -> None:
        dims = _BATCHNORM[cls]
        if len(self.builder) and self.shape is not None and len(self.shape) != dims:
            raise ShapeError(
                f"{where} normalizes {'vectors (N, C)' if dims == 1 else 'images (N, C, H, W)'} "
                f"but receives shape {self.shape}.")
        if _is_traced(child, self.scripted, "eps"):
            (eps,) = _traced_args(child, where, {"aten::batch_norm": (7,)}, "eps")
        else:
            eps = child.eps
            if getattr(child, "track_running_stats", True) is False:
                raise UnsupportedLayerError(
                    f"{where} has track_running_stats=False: it normalizes each batch with that "
                    "batch's statistics, which a fixed network cannot do; only BatchNorms with "
                    "running statistics are supported.")
        params = dict(child.named_parameters(recurse=False))
        buffers = dict(child.named_buffers(recurse=False))
        if "running_mean" not in buffers or "running_var" not in buffers:
            raise UnsupportedLayerError(
                f"{where} has no running statistics (track_running_stats=False): it normalizes "
                "each batch with that batch's statistics, which a fixed network cannot do; only "
                "BatchNorms with running statistics are supported.")
        mean, var = _to_numpy(buffers["running_mean"]), _to_numpy(buffers["running_var"])
        # affine=False: no weight and bias (gamma = 1, beta = 0).
        gamma = _to_numpy(params["weight"]) if "weight" in params else np.ones_like(mean)
        beta = _to_numpy(params["bias"]) if "bias" in params else np.zeros_like(mean)
        self.builder.batchnorm(gamma, beta, mean, var, float(eps), where)

    # --- transforms -----------------------------------------------------------------------------
    def maxpool(self, child, where: str, path: str) -> None:
        self.need_image(where, "MaxPool2d")
        if _is_traced(child, self.scripted, "kernel_size"):
            if any(n.kind() == "aten::max_pool2d_with_indices" for n in _aten_nodes(child)):
                raise UnsupportedLayerError(
                    f"{where} returns indices (return_indices=True); only plain max pooling "
                    "is supported.")
            kernel, stride, padding, dilation, ceil_mode = _traced_args(
                child, where, {"aten::max_pool2d": (1, 2, 3, 4, 5)}, "pooling settings")
            return_indices = False
        else:
            kernel, stride, padding, dilation, ceil_mode, return_indices = _settings(
                child, self.scripted, ("kernel_size", "stride", "padding", "dilation",
                                       "ceil_mode", "return_indices"), where, {}, "settings")
        if _pair(dilation, "dilation", where) != (1, 1):
            raise UnsupportedLayerError(
                f"{where} has dilation={dilation}; only dilation=1 is supported.")
        if ceil_mode:
            raise UnsupportedLayerError(
                f"{where} has ceil_mode=True; only ceil_mode=False (PyTorch's default) is "
                "supported.")
        if return_indices:
            raise UnsupportedLayerError(
                f"{where} returns indices (return_indices=True); only plain max pooling is "
                "supported.")
        self.transform(self._pool(MaxPool2d, kernel, stride, padding, where), where)

    def avgpool(self, child, where: str, path: str) -> None:
        self.need_image(where, "AvgPool2d")
        kernel, stride, padding, ceil_mode, count_include_pad, divisor = _settings(
            child, self.scripted, ("kernel_size", "stride", "padding", "ceil_mode",
                                   "count_include_pad", "divisor_override"), where,
            {"aten::avg_pool2d": (1, 2, 3, 4, 5, 6)}, "pooling settings")
        if ceil_mode:
            raise UnsupportedLayerError(
                f"{where} has ceil_mode=True; only ceil_mode=False (PyTorch's default) is "
                "supported.")
        if divisor is not None:
            raise UnsupportedLayerError(
                f"{where} has divisor_override={divisor}; only the mean over each window "
                "(divisor_override=None) is supported.")
        self.transform(self._pool(AvgPool2d, kernel, stride, padding, where,
                                  count_include_pad=bool(count_include_pad)), where)

    @staticmethod
    def _pool(cls, kernel, stride, padding, where, **extra):
        kernel = _pair(kernel, "kernel size", where)
        stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) \
            else _pair(stride, "stride", where)
        try:
            return cls(kernel=kernel, stride=stride, padding=_pair(padding, "padding", where),
                       **extra)
        except NeurosimError as exc:
            raise type(exc)(f"{where}: {exc}") from None

    def adaptive_avgpool(self, child, where: str, path: str) -> None:
        shape = self.need_image(where, "AdaptiveAvgPool2d")
        (size,) = _settings(child, self.scripted, ("output_size",), where,
                            {"aten::adaptive_avg_pool2d": (1,)}, "output size")
        if isinstance(size, (int, np.integer)) or size is None:
            size = (size, size)
        size = tuple(shape[1 + axis] if s is None else int(s) for axis, s in enumerate(size))
        if size != (1, 1):
            raise UnsupportedLayerError(
                f"{where} has output size {size}; only output size 1 (a global average "
                "pooling) is supported.")
        self.transform(GlobalAvgPool2d(keepdims=True), where)

    def flatten(self, child, where: str, path: str) -> None:
        start, end = _settings(child, self.scripted, ("start_dim", "end_dim"), where,
                               {"aten::flatten": (1, 2)}, "start_dim and end_dim")
        if (int(start), int(end)) != (1, -1):
            raise UnsupportedLayerError(
                f"{where} has start_dim={start}, end_dim={end}; only nn.Flatten() (start_dim=1, "
                "end_dim=-1: everything but the batch axis) is supported.")
        if self.shape is None or len(self.shape) == 1:
            return  # a vector is already flat
        self.transform(Flatten("chw"), where)


def _convert(module, source: str, torch, input_shape=None) -> Network:
    """Convert ``module``; ``source`` names it in messages (a file name or 'the module')."""
    scripted = isinstance(module, torch.jit.ScriptModule)
    top = _class_name(module, scripted)
    is_sequential = top == "Sequential" if scripted else isinstance(module, torch.nn.Sequential)
    if not is_sequential:
        raise UnsupportedLayerError(
            f"{source} is a {top}; only an nn.Sequential (possibly nested) of the supported "
            f"modules is supported. {_supported_text()}"
        )
    shape = _input_shape(input_shape, source)
    leaves = list(_flatten(module, scripted, torch))
    unit = "Conv2d/Linear" if any(cls == "Conv2d" for _, cls, _ in leaves) else "Linear"
    reader = _Reader(source, scripted, shape, unit)
    for path, cls, child in leaves:
        reader.read(path, cls, child)
    if not len(reader.builder):
        raise UnsupportedLayerError(
            f"{source} holds no Linear or Conv2d layer. {_supported_text()}")
    metadata = {"source_format": "torchscript" if scripted else "torch-module"}
    layout = "NCHW" if shape is not None and len(shape) == 3 else None
    return reader.builder.build(metadata, stacklevel=3, input_shape=shape, layout=layout)


def network_from_torch(module, input_shape=None) -> Network:
    """Convert a PyTorch ``nn.Sequential`` (or its TorchScript version) to a :class:`Network`.

    Parameters
    ----------
    module : torch.nn.Sequential or torch.jit.ScriptModule
        The supported modules (see the module docstring): Linear, Conv2d, BatchNorm1d/2d
        (folded), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, element-wise
        activations; Dropout and Identity are ignored, nested Sequentials flattened.
        TorchScript modules made by ``torch.jit.script`` or ``torch.jit.trace`` work.
    input_shape : tuple, optional
        The shape of one input without the batch axis: ``(C, H, W)`` (channels first) or
        ``(n,)``. Needed when the network starts with a Conv2d or a pooling.

    Returns
    -------
    Network
        ``metadata["source_format"]`` is ``"torch-module"`` or ``"torchscript"``; image
        networks have layout ``"NCHW"``.

    Raises
    ------
    UnsupportedLayerError
        For any other module or setting; the message names the layer (index and class).
    ShapeError
        If a Conv2d or pooling comes first without ``input_shape``, or the layers' shapes do
        not fit (the message names the layer).
    MissingExtraError
        If torch is not installed.

    Warns
    -----
    UserWarning
        When a final Softmax / LogSoftmax is dropped.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedLayerError(
            f"Cannot convert a {type(module).__name__} to a network; expected a torch.nn.Sequential."
        )
    name = _class_name(module, isinstance(module, torch.jit.ScriptModule))
    return _convert(module, f"the {name} module", torch, input_shape)


# --- files ---------------------------------------------------------------------------------
def _is_torchscript(path: str) -> bool:
    """A TorchScript archive is a zip file with a ``<archive>/code/`` folder."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in f"/{name}" for name in zf.namelist())
    except Exception:  # noqa: BLE001 - not a readable zip (e.g. a member name that is not
        return False   # UTF-8): torch.load decides, and says what is wrong


def _check_archive(path: str, source: str) -> None:
    """A ``.pt`` written by ``torch.save`` or ``torch.jit.save`` is a zip archive, whose
    members torch reads whole into memory: their declared sizes must be within the read
    limit before torch allocates them. torch does not check the members' CRCs, and its C++
    reader can abort the process on damaged TorchScript code or debug information (found by
    fuzzing), so every member's CRC is checked first, streamed in small pieces (a file that
    is no zip is left to torch.load)."""
    try:
        zf = zipfile.ZipFile(path)
    except Exception:  # noqa: BLE001 - not a readable zip: torch.load says why
        return
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            guard.check_nbytes(info.file_size, source, f"archive member {info.filename!r}")
            total += info.file_size
        guard.check_nbytes(total, source, "the archive's members together")
        for info in infos:
            try:
                with zf.open(info) as fh:
                    read = 0
                    while True:
                        chunk = fh.read(1 << 20)
                        if not chunk:
                            break
                        read += len(chunk)
                        if read > info.file_size:
                            raise FileFormatError(
                                f"{source}: archive member {info.filename!r} holds more than "
                                f"the {info.file_size} bytes it declares.")
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                    NotImplementedError, RuntimeError) as exc:
                if isinstance(exc, NeurosimError):
                    raise
                raise FileFormatError(f"{source}: archive member {info.filename!r} is damaged "
                                      f"({_brief(exc)}).") from None


def _jit_load(torch, path: str):
    """``torch.jit.load`` on the CPU, without its deprecation warning (recent torch)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit")
        return torch.jit.load(path, map_location="cpu")


def _state_dict_of(obj, torch):
    """``obj`` if it is a state_dict (name -> tensor), the one inside a checkpoint, or None."""
    def is_state_dict(d) -> bool:
        return isinstance(d, dict) and bool(d) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())

    if not isinstance(obj, dict):
        return None
    if is_state_dict(obj):
        return obj
    for key in ("state_dict", "model_state_dict", "model"):
        inner = obj.get(key)
        if is_state_dict(inner):
            return inner
    return None


def _network_from_state_dict(sd: dict, activations, source: str, torch,
                             input_shape=None) -> Network:
    """Build a network from the ``*.weight``/``*.bias`` pairs of ``sd``, in order (Linear
    layers; an image ``input_shape`` is flattened first, as ``nn.Flatten`` does)."""
    if isinstance(activations, str):
        activations = [a for a in activations.split(",") if a.strip()]
    activations = list(activations)
    weights, biases, names = [], [], []
    used = set()
    for key, tensor in sd.items():
        if not key.endswith(".weight") and key != "weight":
            continue
        prefix = key[: -len("weight")]
        if tensor.ndim != 2:
            raise UnsupportedLayerError(
                f"{source}: the state_dict entry {key!r} has shape {tuple(tensor.shape)}; with "
                "activations= only Linear layers (2-D weights) are supported. For a network "
                "with other layers (Conv2d, BatchNorm, ...) pass architecture=<the module to "
                "load it into>."
            )
        W = _to_numpy(tensor)
        bias = sd.get(f"{prefix}bias")
        b = _to_numpy(bias) if bias is not None else np.zeros(W.shape[0], dtype=W.dtype)
        weights.append(W)
        biases.append(b)
        names.append(prefix.rstrip(".") or "<root>")
        used.update({key, f"{prefix}bias"})
    extra = [k for k in sd if k not in used]
    if extra:
        raise UnsupportedLayerError(
            f"{source}: the state_dict holds entries that are not Linear weights or biases: "
            f"{extra[:5]}{' ...' if len(extra) > 5 else ''}. Only Linear layers are supported; "
            "pass architecture= to load it into a module instead."
        )
    if not weights:
        raise FileFormatError(f"{source}: the state_dict holds no '*.weight' entries.")
    if len(activations) != len(weights):
        raise FileFormatError(
            f"{source}: the state_dict holds {len(weights)} Linear layers ({', '.join(names)}) "
            f"but {len(activations)} activations were given; give exactly one per layer."
        )
    shape = _input_shape(input_shape, source)
    if shape is not None and int(np.prod(shape)) != weights[0].shape[1]:
        raise ShapeError(
            f"{source}: input_shape {shape} holds {int(np.prod(shape))} values but the first "
            f"Linear layer ({names[0]}) takes {weights[0].shape[1]} inputs.")
    builder = NetworkBuilder(source, unit="Linear")
    if shape is not None and len(shape) == 3:
        builder.transform(Flatten("chw"), f"{source}: input")
    for W, b, name, act in zip(weights, biases, names, builder.activation_list(activations, names)):
        builder.add(Dense(W, b), f"{source}: layer {name}", name=name, activation=act)
    layout = "NCHW" if shape is not None and len(shape) == 3 else None
    return builder.build({"source_format": "torch-state_dict"}, stacklevel=3,
                         input_shape=shape, layout=layout)


def load_torch(
    path: "str | os.PathLike",
    trust_pickle: bool = False,
    activations=None,
    architecture=None,
    input_shape=None,
) -> Network:
    """Load a network from a PyTorch file.

    Parameters
    ----------
    path : str or os.PathLike
        A TorchScript file, a state_dict saved with ``torch.save``, or a pickled module.
    trust_pickle : bool
        Allow unpickling a module saved with ``torch.save(model)``. Unpickling runs code from
        the file: only set this for files you trust.
    activations : list of str or Activation, optional
        For a state_dict: the activation of each Linear layer, in order.
    architecture : torch.nn.Module, optional
        For a state_dict: a module (an ``nn.Sequential``) to load it into with
        ``load_state_dict``; used in preference to ``activations``.
    input_shape : tuple, optional
        The shape of one input without the batch axis, ``(C, H, W)`` or ``(n,)``; needed when
        the network starts with a Conv2d or a pooling (see :func:`network_from_torch`).

    Returns
    -------
    Network
        ``metadata["source_format"]`` is ``"torchscript"``, ``"torch-state_dict"`` or
        ``"torch-module"``.

    Raises
    ------
    MissingExtraError
        If torch is not installed.
    UntrustedPickleError
        If the file holds a pickled module and ``trust_pickle`` is False.
    FileFormatError
        If the file cannot be read, or is a state_dict without ``architecture`` or
        ``activations``.
    UnsupportedLayerError
        If the model holds a layer neurosim cannot represent.
    ShapeError
        If a Conv2d or pooling comes first without ``input_shape``, or shapes do not fit.
    """
    torch = _import_torch()
    path = os.fspath(path)
    source = repr(path)
    with guard.reading(source, "PyTorch model file (TorchScript, state_dict or pickled module)"):
        _check_archive(path, source)
        return _load_torch(torch, path, source, trust_pickle, activations, architecture,
                           input_shape)


def _load_torch(torch, path: str, source: str, trust_pickle, activations, architecture,
                input_shape) -> Network:
    if _is_torchscript(path):
        try:
            module = _jit_load(torch, path)
        except Exception as exc:
            raise FileFormatError(f"{source}: cannot load this TorchScript file: {_brief(exc)}") from None
        return _wrap(lambda: _convert(module, source, torch, input_shape), source, "torchscript")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch refuses a pickled object with "GLOBAL x.y was not an allowed global" (or "whose
        # module ... is blocked"); other unpickling errors mean a corrupt or foreign file.
        if not re.search(r"GLOBAL|allowed global|is blocked", str(exc)):
            raise FileFormatError(
                f"{source} is not a readable PyTorch file (TorchScript, state_dict or pickled "
                "module): it could not be unpickled; it may be corrupt or of another format."
            ) from None
        if not trust_pickle:
            raise UntrustedPickleError(
                f"{source} holds a pickled Python object (such as a whole module saved with "
                "torch.save(model)), and loading it would run code from the file. If you trust "
                "the file, pass trust_pickle=True (Python) or --trust-pickle (command line). "
                "Safer alternatives: save a TorchScript file (torch.jit.save(torch.jit.script("
                "model), ...)) or a state_dict (torch.save(model.state_dict(), ...)) and load it "
                "with activations=[...] or architecture=..."
            ) from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise FileFormatError(f"{source}: cannot unpickle this PyTorch file: {_brief(exc2)}") from None
    except Exception as exc:
        # torch.jit.load handles TorchScript archives that were not recognised above.
        try:
            module = _jit_load(torch, path)
        except Exception:
            raise FileFormatError(
                f"{source} is not a readable PyTorch file (TorchScript, state_dict or pickled "
                f"module): {_brief(exc)}"
            ) from None
        return _wrap(lambda: _convert(module, source, torch, input_shape), source, "torchscript")
    if isinstance(obj, torch.nn.Module):
        return _wrap(lambda: _convert(obj, source, torch, input_shape), source, None)
    sd = _state_dict_of(obj, torch)
    if sd is None:
        raise FileFormatError(
            f"{source} holds a {type(obj).__name__}, not a module, TorchScript or state_dict."
        )
    if architecture is not None:
        if not isinstance(architecture, torch.nn.Module):
            raise FileFormatError(
                f"{source}: architecture= must be a torch.nn.Module; got a "
                f"{type(architecture).__name__}."
            )
        try:
            architecture.load_state_dict(sd)
        except Exception as exc:
            raise FileFormatError(
                f"{source}: the state_dict does not fit the given architecture: {_brief(exc)}"
            ) from None
        return _wrap(lambda: _convert(architecture, source, torch, input_shape), source, "torch-state_dict")
    if activations is None:
        raise FileFormatError(
            f"{source} holds a state_dict (weights only, no architecture): pass "
            "architecture=<an nn.Sequential to load it into> or the activation of each layer, "
            "e.g. activations=['relu', 'relu', 'identity'] (CLI: --activations relu,relu,identity)."
        )
    return _network_from_state_dict(sd, activations, source, torch, input_shape)


def _wrap(convert, source: str, source_format: "str | None") -> Network:
    """Run ``convert`` and set ``source_format`` (errors already name ``source``)."""
    network = convert()
    if source_format is not None:
        network.metadata["source_format"] = source_format
    return network
