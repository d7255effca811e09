"""Reading PyTorch models (extra ``torch``; torch is imported lazily).

:func:`network_from_torch` converts an ``nn.Sequential`` (nested Sequentials are flattened)
of ``nn.Linear`` layers and element-wise activations, or the TorchScript version of one.
:func:`load_torch` reads a file:

* TorchScript (``torch.jit.save``): loaded with ``torch.jit.load``; no code from the file is
  run by Python's unpickler, so no flag is needed.
* a state_dict (``torch.save(model.state_dict())``): loaded with ``weights_only=True``; needs
  ``architecture=`` (a module to load it into) or ``activations=`` (one per Linear layer).
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

import numpy as np

from neurosim.errors import (
    FileFormatError,
    MissingExtraError,
    UnsupportedLayerError,
    UntrustedPickleError,
)
from neurosim.activations import Activation, make_activation
from neurosim.io.builder import NetworkBuilder
from neurosim.layers import Dense
from neurosim.network import Network

__all__ = ["network_from_torch", "load_torch"]

#: Module classes neurosim understands (for error messages).
SUPPORTED_MODULES = (
    "Sequential", "Linear", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus (beta=1)",
    "Identity", "Dropout (ignored)", "Flatten (ignored)", "Softmax/LogSoftmax (last only)",
)
_SIMPLE_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Identity": "identity"}
_IGNORED = {"Dropout", "Flatten"}
_SOFTMAX = {"Softmax", "LogSoftmax"}

_INSTALL_HINT = "pip install 'neurosim-faults[torch]'"


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
    return tensor.detach().cpu().numpy().copy()


# --- module conversion ---------------------------------------------------------------------
def _class_name(module, scripted: bool) -> str:
    if scripted:
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


def _flatten(module, scripted: bool, torch, prefix: str = ""):
    """Yield ``(index path, class name, module)`` for the leaves of nested Sequentials."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        cls = _class_name(child, scripted)
        is_seq = cls == "Sequential" if scripted else isinstance(child, torch.nn.Sequential)
        if is_seq:
            yield from _flatten(child, scripted, torch, prefix=f"{path}.")
        else:
            yield path, cls, child


def _graph_constant(module, op: str, index: int):
    """Constant input ``index`` of the first ``op`` node in a TorchScript module's graph."""
    try:
        nodes = list(module.graph.nodes())
    except Exception:
        return None
    for node in nodes:
        inputs = list(node.inputs())
        if node.kind() == op and len(inputs) > index:
            source = inputs[index].node()
            if source.kind() == "prim::Constant":
                return inputs[index].toIValue()
    return None


def _scripted_param(module, attr: str, op: str, index: int, where: str):
    """A constant of a scripted/traced activation: the attribute, else the graph constant."""
    value = getattr(module, attr, None)
    if value is None:
        value = _graph_constant(module, op, index)
    if value is None:
        raise UnsupportedLayerError(
            f"{where}: cannot read the {attr!r} of this TorchScript module (neither an attribute "
            "nor a constant in its graph). Convert the eager nn.Sequential with "
            "network_from_torch, or save a state_dict instead."
        )
    return float(value)


def _activation_of(cls: str, module, scripted: bool, where: str) -> "Activation | None":
    """The neurosim activation of an activation module (None for an ignored module)."""
    if cls in _SIMPLE_ACTIVATIONS:
        return make_activation(_SIMPLE_ACTIVATIONS[cls])
    if cls == "LeakyReLU":
        if scripted:
            slope = _scripted_param(module, "negative_slope", "aten::leaky_relu", 1, where)
        else:
            slope = float(module.negative_slope)
        return make_activation("leaky_relu", slope)
    if cls == "Softplus":
        if scripted:
            beta = _scripted_param(module, "beta", "aten::softplus", 1, where)
        else:
            beta = float(module.beta)
        if beta != 1.0:
            raise UnsupportedLayerError(
                f"{where} is a Softplus with beta={beta:g}; only beta=1 is supported. "
                f"{_supported_text()}"
            )
        return make_activation("softplus")
    return None


def _convert(module, source: str, torch) -> Network:
    """Convert ``module``; ``source`` names it in messages (a file name or 'the module')."""
    scripted = isinstance(module, torch.jit.ScriptModule)
    top = _class_name(module, scripted)
    is_sequential = top == "Sequential" if scripted else isinstance(module, torch.nn.Sequential)
    if not is_sequential:
        raise UnsupportedLayerError(
            f"{source} is a {top}; only an nn.Sequential (possibly nested) of Linear layers and "
            f"activations is supported. {_supported_text()}"
        )
    builder = NetworkBuilder(source, unit="Linear")
    for path, cls, child in _flatten(module, scripted, torch):
        where = f"{source}: layer {path} ({cls})"
        if cls in _IGNORED:
            continue
        if cls == "Linear":
            params = dict(child.named_parameters(recurse=False))
            if "weight" not in params:
                raise FileFormatError(f"{where} has no weight.")
            W = _to_numpy(params["weight"])
            b = _to_numpy(params["bias"]) if params.get("bias") is not None else np.zeros(
                W.shape[0], dtype=W.dtype)
            builder.add(Dense(W, b), where, name=path)
            continue
        if cls in _SOFTMAX:
            builder.softmax(where)
            continue
        activation = _activation_of(cls, child, scripted, where)
        if activation is None:
            raise UnsupportedLayerError(
                f"{where} is not supported. {_supported_text()}"
            )
        builder.activation(activation, where)
    if not len(builder):
        raise UnsupportedLayerError(f"{source} holds no Linear layer. {_supported_text()}")
    metadata = {"source_format": "torchscript" if scripted else "torch-module"}
    return builder.build(metadata, stacklevel=3)


def network_from_torch(module) -> Network:
    """Convert a PyTorch ``nn.Sequential`` (or its TorchScript version) to a :class:`Network`.

    Parameters
    ----------
    module : torch.nn.Sequential or torch.jit.ScriptModule
        Linear layers and element-wise activations (ReLU, LeakyReLU, Tanh, Sigmoid, Softplus
        with beta=1, Identity); Dropout and Flatten are ignored, nested Sequentials flattened.

    Returns
    -------
    Network
        ``metadata["source_format"]`` is ``"torch-module"`` or ``"torchscript"``.

    Raises
    ------
    UnsupportedLayerError
        For any other module; the message names the layer (index and class).
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
    return _convert(module, f"the {_class_name(module, isinstance(module, torch.jit.ScriptModule))} module", torch)


# --- files ---------------------------------------------------------------------------------
def _is_torchscript(path: str) -> bool:
    """A TorchScript archive is a zip file with a ``<archive>/code/`` folder."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in f"/{name}" for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _jit_load(torch, path: str):
    """``torch.jit.load`` on the CPU, without its deprecation warning (recent torch)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit")
        return torch.jit.load(path, map_location="cpu")


def _state_dict_of(obj, torch):
    """``obj`` if it is a state_dict (name -> tensor), the one inside a checkpoint, or None."""
    if not isinstance(obj, dict):
        return None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in ("state_dict", "model_state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    return None


def _network_from_state_dict(sd: dict, activations, source: str, torch) -> Network:
    """Build a network from the ``*.weight``/``*.bias`` pairs of ``sd``, in order."""
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
                f"{source}: the state_dict entry {key!r} has shape {tuple(tensor.shape)}; only "
                "Linear layers (2-D weights) are supported."
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
    builder = NetworkBuilder(source, unit="Linear")
    for W, b, name, act in zip(weights, biases, names, builder.activation_list(activations, names)):
        builder.add(Dense(W, b), f"{source}: layer {name}", name=name, activation=act)
    return builder.build({"source_format": "torch-state_dict"}, stacklevel=3)


def load_torch(
    path: "str | os.PathLike",
    trust_pickle: bool = False,
    activations=None,
    architecture=None,
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
    """
    torch = _import_torch()
    path = os.fspath(path)
    source = repr(path)
    if _is_torchscript(path):
        try:
            module = _jit_load(torch, path)
        except Exception as exc:
            raise FileFormatError(f"{source}: cannot load this TorchScript file: {exc}") from None
        return _wrap(lambda: _convert(module, source, torch), source, "torchscript")
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
            raise FileFormatError(f"{source}: cannot unpickle this PyTorch file: {exc2}") from None
    except Exception as exc:
        # torch.jit.load handles TorchScript archives that were not recognised above.
        try:
            module = _jit_load(torch, path)
        except Exception:
            raise FileFormatError(
                f"{source} is not a readable PyTorch file (TorchScript, state_dict or pickled "
                f"module): {type(exc).__name__}: {exc}"
            ) from None
        return _wrap(lambda: _convert(module, source, torch), source, "torchscript")
    if isinstance(obj, torch.nn.Module):
        return _wrap(lambda: _convert(obj, source, torch), source, None)
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
                f"{source}: the state_dict does not fit the given architecture: {exc}"
            ) from None
        return _wrap(lambda: _convert(architecture, source, torch), source, "torch-state_dict")
    if activations is None:
        raise FileFormatError(
            f"{source} holds a state_dict (weights only, no architecture): pass "
            "architecture=<an nn.Sequential to load it into> or the activation of each layer, "
            "e.g. activations=['relu', 'relu', 'identity'] (CLI: --activations relu,relu,identity)."
        )
    return _network_from_state_dict(sd, activations, source, torch)


def _wrap(convert, source: str, source_format: "str | None") -> Network:
    """Run ``convert`` and set ``source_format`` (errors already name ``source``)."""
    network = convert()
    if source_format is not None:
        network.metadata["source_format"] = source_format
    return network
