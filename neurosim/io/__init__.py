"""Reading and writing networks.

:func:`load_network` picks the reader from the file (or object) it is given:

============================  ============================================================
``.h5`` written by neurosim   neurosim's own format (:mod:`neurosim.io.hdf5`)
``.keras``                    Keras 3 model archive
``.weights.h5``               Keras 3 weights; needs ``activations=[...]``
``.h5`` with ``model_config`` legacy Keras 2 Sequential model
``.npz``                      arrays ``W0, b0, ...`` and ``activations``
``.pt`` / ``.pth`` / ``.ts``  PyTorch: TorchScript, a state_dict (needs ``activations`` or
                              ``architecture``), or a pickled module (needs
                              ``trust_pickle=True``); extra ``torch``
``.onnx``                     ONNX: a chain of Conv, Gemm/MatMul, pooling, activations
                              (:mod:`neurosim.io.onnx`); extra ``onnx``
``torch.nn.Module``           an ``nn.Sequential`` (:mod:`neurosim.io.torch`; image input
                              needs ``input_shape=(C, H, W)``)
============================  ============================================================

A NIR graph (``.nir``) is a spiking network: :func:`neurosim.io.nir.load_nir` reads it as a
:class:`~neurosim.spiking.snn.SpikingNetwork` (extra ``nir``).
"""

from __future__ import annotations

import os
from pathlib import Path

from neurosim.errors import FileFormatError, NeurosimFileNotFoundError, ShapeError
from neurosim.io.guard import reading
from neurosim.io.hdf5 import FORMAT_VERSION, load_network_h5, save_network_h5
from neurosim.io.npz import load_network_npz, save_network_npz
from neurosim.network import Network

__all__ = ["load_network", "save_network", "FORMAT_VERSION"]

_TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


def load_network(
    source,
    *,
    trust_pickle: bool = False,
    activations=None,
    architecture=None,
    input_shape=None,
) -> Network:
    """Load a network from a file or a PyTorch module.

    Parameters
    ----------
    source : str, os.PathLike or torch.nn.Module
        A model file (see the module docstring for the formats) or an ``nn.Sequential``.
    trust_pickle : bool
        Allow loading a pickled PyTorch module. Unpickling runs code from the file: only
        set this for files you trust.
    activations : list of str, optional
        Activation of each layer, for formats that store weights only (a PyTorch
        state_dict, Keras ``.weights.h5``).
    architecture : torch.nn.Module, optional
        A module whose ``load_state_dict`` accepts a state_dict file.
    input_shape : tuple, optional
        PyTorch only: the shape of one input without the batch axis, ``(C, H, W)`` or
        ``(n,)``; needed when the network starts with a Conv2d or a pooling (PyTorch modules
        do not record it).

    Raises
    ------
    NeurosimFileNotFoundError
        If the file does not exist.
    FileFormatError, UnsupportedLayerError
        If the file is malformed or holds layers neurosim cannot represent.
    UntrustedPickleError
        For a pickled module without ``trust_pickle=True``.
    MissingExtraError
        If the reader's library (torch, onnx) is not installed.
    """
    if not isinstance(source, (str, os.PathLike)):
        from neurosim.io.torch import network_from_torch

        return network_from_torch(source, input_shape=input_shape)
    network = _load_file(source, trust_pickle, activations, architecture, input_shape)
    if input_shape is not None and tuple(int(v) for v in input_shape) != network.input_shape:
        # Only PyTorch files need the shape; the other formats record it: it must agree.
        raise ShapeError(
            f"{os.fspath(source)!r} records input shape {network.input_shape}, but "
            f"input_shape={tuple(input_shape)} was given.")
    return network


def _load_file(source, trust_pickle, activations, architecture, input_shape) -> Network:
    path = Path(source)
    if not path.exists():
        raise NeurosimFileNotFoundError(f"Model file {str(path)!r} does not exist.")
    if path.is_dir():
        raise FileFormatError(f"{str(path)!r} is a folder; expected a model file.")
    name = path.name.lower()
    # The reader contract (neurosim.io.guard): whatever goes wrong inside a reader is one
    # NeurosimError naming the file. Each reader says more precisely what it expected.
    with reading(str(path), _what(name)):
        return _read(path, name, trust_pickle, activations, architecture, input_shape)


def _what(name: str) -> str:
    """What a model file of this name should be (for the reader contract's messages)."""
    if name.endswith(".npz"):
        return "neurosim .npz network archive"
    if name.endswith(".keras"):
        return "Keras 3 .keras archive"
    if name.endswith((".h5", ".hdf5")):
        return "HDF5 model file (neurosim or Keras)"
    if name.endswith(".onnx"):
        return "ONNX model file"
    return "PyTorch model file" if name.endswith(_TORCH_SUFFIXES) else "model file"


def _read(path: Path, name: str, trust_pickle, activations, architecture, input_shape):
    if name.endswith(".npz"):
        return load_network_npz(path)
    if name.endswith(".keras") or name.endswith(".weights.h5"):
        from neurosim.io.keras import load_keras

        return load_keras(path, activations=activations)
    if name.endswith((".h5", ".hdf5")):
        import h5py

        from neurosim.io.digest import check_seal
        from neurosim.io.hdf5 import check_hdf5_file

        check_seal(path, str(path))  # a damaged neurosim file: refused before HDF5 parses it
        check_hdf5_file(path, str(path))
        try:
            with h5py.File(path, "r") as f:
                neurosim_file = "neurosim_format" in f.attrs
        except OSError as exc:
            raise FileFormatError(f"{str(path)!r} is not a readable HDF5 file "
                                  f"({str(exc).strip()[:200]}).") from None
        if neurosim_file:
            return load_network_h5(path)
        from neurosim.io.keras import load_keras

        return load_keras(path, activations=activations)
    if name.endswith(".onnx"):
        from neurosim.io.onnx import load_onnx

        return load_onnx(path)
    if name.endswith(".nir"):
        raise FileFormatError(
            f"{str(path)!r} is a NIR graph: a spiking network, which load_network (graded "
            "networks) does not return. Read it with neurosim.load_nir(path, dt=...), which "
            "gives a SpikingNetwork.")
    if name.endswith(".net"):
        raise FileFormatError(
            f"{str(path)!r} is a lava-dl netx file: a spiking network, which load_network "
            "(graded networks) does not return. Read it with neurosim.load_netx(path, T=...), "
            "which gives a SpikingNetwork, or neurosim.read_netx(path) to run it in Loihi's "
            "fixed point.")
    if name.endswith(_TORCH_SUFFIXES):
        from neurosim.io.torch import load_torch

        return load_torch(path, trust_pickle=trust_pickle, activations=activations,
                          architecture=architecture, input_shape=input_shape)
    raise FileFormatError(
        f"Cannot tell the format of {str(path)!r} from its name. Supported: .h5 (neurosim or "
        "Keras 2), .keras, .weights.h5, .npz, .pt/.pth/.ts (PyTorch), .onnx; NIR graphs (.nir) "
        "with neurosim.load_nir; lava-dl netx files (.net) with neurosim.load_netx."
    )


def save_network(network: Network, path: "str | os.PathLike") -> None:
    """Save ``network`` atomically: neurosim's HDF5 format, or ``.npz`` by the file's suffix."""
    if str(path).lower().endswith(".npz"):
        save_network_npz(network, path)
    elif str(path).lower().endswith((".h5", ".hdf5")):
        save_network_h5(network, path)
    else:
        raise FileFormatError(
            f"Cannot save a network to {os.fspath(path)!r}: use a .h5 (neurosim's format) or .npz name."
        )
