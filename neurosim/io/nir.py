"""NIR graphs (the Neuromorphic Intermediate Representation, https://neuroir.org) in and out.

:func:`load_nir` / :func:`from_nir` read a NIR graph into a
:class:`~neurosim.spiking.snn.SpikingNetwork`; :func:`save_nir` / :func:`to_nir` write one.
The optional extra ``nir`` (``nir >= 1.0.8``) provides the file format.

Reading. The graph must be a chain ``Input -> ... -> Output`` (no branches, skips, recurrence
or subgraphs: anything else is an error naming the node). Nodes map as follows:

===========================  ==================================================================
``Affine``, ``Linear``       a :class:`~neurosim.layers.Dense` layer (``Linear``: zero bias)
``Conv2d``                   a :class:`~neurosim.layers.Conv2d` layer
``Conv1d``                   a Conv2d on a ``(C, 1, L)`` image (kernel ``(out, in, 1, k)``)
``SumPool2d``, ``AvgPool2d`` :class:`~neurosim.layers.SumPool2d`, ``AvgPool2d`` (zero padding
                             counted) before the next weighted layer
``Flatten``                  :class:`~neurosim.layers.Flatten` (of the whole ``(C, H, W)``)
``Scale``                    folded into the weighted layer before it (rows of ``W`` and ``b``)
``IF``, ``LIF``, ``CubaLIF`` that layer's neuron model, ``reset="value"`` at ``v_reset`` (as NIR
                             states them; a node whose metadata says
                             ``neurosim_reset = "subtract"``, which :func:`to_nir` writes,
                             resets by subtraction)
``Threshold``                a memoryless neuron: ``LIF(tau=dt)`` (``v = I`` at every step)
``I`` (output only)          the membrane readout, the layer's weights scaled by ``r dt T``
                             (``v_T = sum_t dt r I_t`` is ``T dt r`` times the mean current)
``LI`` (output only)         ``readout="li"``: the output current through a leaky integrator
                             (:class:`~neurosim.spiking.neurons.LI`), read after the last step
===========================  ==================================================================

A graph that ends in a weighted node is read with ``readout="membrane"`` (the mean of its output
over the ``T`` steps); one that ends in a spiking node with ``readout="count"``. NIR states its
neurons in continuous time, so ``dt`` (the step, in the graph's time unit) must be given. The
shapes are computed here from the ``Input`` node's shape and each node's settings (nir 1.0.8's
own shape inference is wrong for non-square kernels, ``groups > 1`` and strided "same"
padding); a node whose stored input shape disagrees is an error naming it. neurosim's neurons
fire at ``v >= threshold``, NIR's at ``v > threshold``: the same but where ``v`` lands exactly
on the threshold.

Writing. Dense and Conv2d layers (symmetric padding), SumPool2d, AvgPool2d (zero padding
counted) and Flatten (channels first), IF, LIF and CubaLIF neurons; a membrane readout ends
with the output layer's weighted node, an ``li`` readout with an ``LI`` node. NIR's neurons reset to ``v_reset``: a layer that resets
by subtraction (every converted network) is written with ``neurosim_reset = "subtract"`` in
the node's metadata, which :func:`from_nir` honours and other tools ignore (a warning says so).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from neurosim.errors import (FileFormatError, MissingExtraError, NeurosimFileNotFoundError,
                             NeurosimWarning, UnsupportedLayerError, ValidationError)
from neurosim.io.atomic import atomic_path
from neurosim.io.guard import check_nbytes, reading
from neurosim.layers import AvgPool2d, Conv2d, Dense, Flatten, SumPool2d
from neurosim.network import Network
from neurosim.spiking.neurons import IF, LI, LIF, CubaLIF
from neurosim.spiking.snn import SpikingNetwork

__all__ = ["load_nir", "save_nir", "from_nir", "to_nir", "NIR_READ", "NIR_WRITE"]

_INSTALL_HINT = "pip install 'neurosim-faults[nir]'"
#: The node types the reader takes and the writer emits.
NIR_READ = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
            "Flatten", "Scale", "IF", "LIF", "CubaLIF", "Threshold", "I", "LI")
NIR_WRITE = ("Input", "Output", "Affine", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "IF",
             "LIF", "CubaLIF", "LI")
_NEURONS = ("IF", "LIF", "CubaLIF", "Threshold")


def import_nir():
    """The ``nir`` package, or a MissingExtraError naming the extra."""
    try:
        import nir
    except ImportError:
        raise MissingExtraError(
            f"Reading and writing NIR graphs needs nir (>= 1.0.8), which is not installed: "
            f"{_INSTALL_HINT}") from None
    return nir


# --- reading -----------------------------------------------------------------------------------

def load_nir(path, *, dt=None, T: int = 32, encoding: str = "current", seed: int = 0,
             dtype=None) -> SpikingNetwork:
    """Read a NIR file (``nir.write``'s HDF5) as a SpikingNetwork; see :func:`from_nir`."""
    nir = import_nir()
    path = Path(path)
    if not path.exists():
        raise NeurosimFileNotFoundError(f"NIR file {str(path)!r} does not exist.")
    if path.is_dir():
        raise FileFormatError(f"{str(path)!r} is a folder; expected a NIR file.")
    with reading(str(path), "NIR graph file (HDF5, as nir.write writes it)"):
        check_nbytes(path.stat().st_size, str(path), "the NIR file")
        graph = nir.read(str(path), type_check=False)  # (shapes are computed here)
        return from_nir(graph, dt=dt, T=T, encoding=encoding, seed=seed, dtype=dtype,
                        source=str(path))


def from_nir(graph, *, dt=None, T: int = 32, encoding: str = "current", seed: int = 0,
             dtype=None, source: str = "NIR graph") -> SpikingNetwork:
    """A :class:`~neurosim.spiking.snn.SpikingNetwork` from a ``nir.NIRGraph`` (see the
    module docstring for the nodes it takes).

    Parameters
    ----------
    graph : nir.NIRGraph
    dt : float
        The time step, in the graph's time unit (NIR's neurons are continuous in time); a
        graph that neurosim wrote records its own (``metadata["dt"]``).
    T, encoding, seed
        As for :class:`SpikingNetwork`.
    dtype : numpy dtype, optional
        The network's floating type; default float64 when every weight in the graph is
        float64, else float32.
    """
    nir = import_nir()
    if dt is None and isinstance(getattr(graph, "metadata", None), dict):
        dt = graph.metadata.get("dt")  # (what to_nir records)
    if dt is None:
        raise ValidationError(
            f"{source}: reading a NIR graph needs dt (--dt on the command line), the time step "
            "in the graph's time unit (NIR states neurons in continuous time: e.g. dt=1e-4 for "
            "a graph whose tau are in seconds, dt=1 for one exported with one step per time "
            "unit).")
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise ValidationError(f"{source}: dt must be a positive number. Got {dt!r}.") from None
    if not (np.isfinite(dt) and dt > 0):
        raise ValidationError(f"{source}: dt must be a positive number. Got {dt!r}.")
    if not isinstance(graph, nir.NIRGraph):
        raise ValidationError(f"{source}: expected a nir.NIRGraph. Got {type(graph).__name__}.")
    chain = _chain(graph, source)
    return _Reader(nir, chain, dt, int(T), encoding, seed, dtype, source).build()


def _chain(graph, source: str) -> list:
    """The graph's nodes from Input to Output, as ``(name, node)``; an error naming the node
    where it is not a chain."""
    nodes, edges = dict(graph.nodes), list(graph.edges)
    succ: dict = {name: [] for name in nodes}
    pred: dict = {name: [] for name in nodes}
    for edge in edges:
        if not (isinstance(edge, (tuple, list)) and len(edge) == 2):
            raise FileFormatError(f"{source}: an edge must be a pair of node names. Got {edge!r}.")
        a, b = (str(e) for e in edge)
        for end in (a, b):
            if end not in nodes:
                raise FileFormatError(f"{source}: an edge names node {end!r}, which the graph "
                                      "does not have.")
        succ[a].append(b)
        pred[b].append(a)
    kinds = {name: type(node).__name__ for name, node in nodes.items()}
    inputs = [n for n, k in kinds.items() if k == "Input"]
    outputs = [n for n, k in kinds.items() if k == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedLayerError(
            f"{source}: neurosim reads graphs with one Input and one Output node; this one has "
            f"{len(inputs)} Input ({', '.join(map(repr, inputs)) or 'none'}) and {len(outputs)} "
            f"Output ({', '.join(map(repr, outputs)) or 'none'}).")
    order, name, seen = [], inputs[0], set()
    while True:
        if name in seen:
            raise UnsupportedLayerError(
                f"{source}: node {name!r} is reached twice (a recurrent loop); neurosim reads "
                "feed-forward chains only.")
        seen.add(name)
        if kinds[name] == "NIRGraph":
            raise UnsupportedLayerError(
                f"{source}: node {name!r} is a subgraph; neurosim reads flat chains only "
                "(flatten the graph first).")
        if len(pred[name]) > 1:
            raise UnsupportedLayerError(
                f"{source}: node {name!r} ({kinds[name]}) has {len(pred[name])} inputs "
                f"({', '.join(map(repr, pred[name]))}); neurosim reads chains only (no "
                "branches, skip connections or recurrence).")
        order.append((name, nodes[name]))
        if name == outputs[0]:
            break
        if len(succ[name]) != 1:
            raise UnsupportedLayerError(
                f"{source}: node {name!r} ({kinds[name]}) has {len(succ[name])} outgoing edges"
                f"{' (' + ', '.join(map(repr, succ[name])) + ')' if succ[name] else ''}; "
                "neurosim reads chains from the Input to the Output only.")
        name = succ[name][0]
    left = sorted(set(nodes) - seen)
    if left:
        raise UnsupportedLayerError(
            f"{source}: node {left[0]!r} ({kinds[left[0]]}) is not on the chain from the Input "
            "to the Output; neurosim reads chains only.")
    return order


def _array(value, where: str, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise FileFormatError(f"{where}: {name} must be numbers. Got {arr.dtype} values.")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise FileFormatError(f"{where}: {name} holds NaN or infinite values.")
    return arr


def _ints(value, n: int, where: str, name: str) -> tuple:
    arr = _array(value, where, name).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n or np.any(arr != np.round(arr)):
        raise FileFormatError(f"{where}: {name} must be {n} integers. Got {value!r}.")
    return tuple(int(v) for v in arr)


class _Reader:
    """Walks a chain, keeping the shape of the signal and the layers so far."""

    def __init__(self, nir, chain, dt, T, encoding, seed, dtype, source):
        self.nir, self.chain, self.dt = nir, chain, dt
        self.T, self.encoding, self.seed, self.source = T, encoding, seed, source
        self.items: list = []       # transforms and layers, in order
        self.neurons: list = []     # per weighted layer: its neuron model (None: graded)
        self.scale_next = None      # a SumPool-free factor for the next weighted layer
        self.readout_scale = 1.0    # an output I node's r dt T
        self.one_d = False          # the signal is (C, L), kept as (C, 1, L)
        self.li = None              # an output LI node
        weights = [np.asarray(node.weight) for _, node in chain if hasattr(node, "weight")]
        if dtype is None:
            dtype = (np.float64 if weights and all(w.dtype == np.float64 for w in weights)
                     else np.float32)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValidationError(f"{source}: dtype must be float32 or float64. Got {dtype!r}.")

    def where(self, name, node) -> str:
        return f"{self.source}: node {name!r} ({type(node).__name__})"

    def build(self) -> SpikingNetwork:
        name, first = self.chain[0]
        shape = getattr(first, "input_type", {}).get("input")
        if shape is None:
            raise FileFormatError(f"{self.where(name, first)} has no shape; neurosim needs the "
                                  "Input node's shape to compute every layer's.")
        self.shape = _ints(shape, np.asarray(shape).size, self.where(name, first), "the shape")
        if len(self.shape) not in (1, 2, 3):
            raise UnsupportedLayerError(f"{self.where(name, first)}: inputs of shape "
                                        f"{self.shape} are not supported (1-D, (C, L) or "
                                        "(C, H, W) only).")
        self.one_d = len(self.shape) == 2
        if self.one_d:  # (C, L): a one-row image for Conv1d
            self.shape = (self.shape[0], 1, self.shape[1])
        self.input_shape = self.shape
        body = self.chain[1:-1]
        if not body:
            raise UnsupportedLayerError(f"{self.source}: the graph holds no node between its "
                                        "Input and Output.")
        for index, (name, node) in enumerate(body):
            kind = type(node).__name__
            handler = getattr(self, "_" + kind.lower(), None)
            if handler is None:
                raise UnsupportedLayerError(
                    f"{self.where(name, node)} is not supported. neurosim reads "
                    f"{', '.join(NIR_READ)}.")
            if kind in ("I", "LI") and index != len(body) - 1:
                raise UnsupportedLayerError(f"{self.where(name, node)}: an integrator is read "
                                            "only as the graph's output (the readout).")
            handler(name, node)
        if not self.neurons:
            raise UnsupportedLayerError(f"{self.source} holds no weighted node (Affine, Linear, "
                                        "Conv1d, Conv2d).")
        if self.items and not isinstance(self.items[-1], (Dense, Conv2d)):
            raise UnsupportedLayerError(f"{self.source}: the graph ends with a pooling or "
                                        "flattening; it must end with a weighted or neuron node.")
        if self.readout_scale != 1.0:
            last = self.items[-1]
            self.items[-1] = last.with_parameters(
                synapse_weights=(np.asarray(last.synapse_weights, np.float64)
                                 * self.readout_scale).astype(self.dtype),
                bias=(np.asarray(last.b, np.float64) * self.readout_scale).astype(self.dtype))
        network = Network(self.items, input_shape=self.input_shape,
                          metadata={"source": self.source, "format": "nir"})
        readout = ("li" if self.li is not None else
                   "membrane" if self.neurons[-1] is None else "count")
        return SpikingNetwork(network, self.neurons, T=self.T, dt=self.dt,
                              encoding=self.encoding, readout=readout, seed=self.seed,
                              li=self.li)

    # --- weighted nodes -----------------------------------------------------------------
    def _weighted(self, layer, name, node):
        if self.neurons and self.neurons[-1] is None and len(self.neurons) > 0 and \
                isinstance(self.items[-1], (Dense, Conv2d)):
            raise UnsupportedLayerError(
                f"{self.where(name, node)} follows weighted node {self.last_name!r} with no "
                "neuron between them; neurosim reads a neuron node (IF, LIF, CubaLIF, "
                "Threshold) after every weighted node but the last.")
        if self.scale_next is not None:
            layer = layer.with_parameters(synapse_weights=(
                np.asarray(layer.synapse_weights, np.float64) * self.scale_next
            ).astype(self.dtype))
            self.scale_next = None
        self.items.append(layer)
        self.neurons.append(None)
        self.last_name = name
        self.shape = tuple(layer.out_shape) if hasattr(layer, "out_shape") else (layer.n_out,)

    def _vector_in(self, name, node, n_in):
        if len(self.shape) != 1:
            raise UnsupportedLayerError(
                f"{self.where(name, node)} takes a vector, and its input has shape {self.shape}; "
                "put a Flatten node before it.")
        if self.shape[0] != n_in:
            raise UnsupportedLayerError(
                f"{self.where(name, node)} has {n_in} inputs; the node before it gives "
                f"{self.shape[0]}.")

    def _affine(self, name, node):
        where = self.where(name, node)
        W = _array(node.weight, where, "weight")
        b = _array(node.bias, where, "bias").reshape(-1)
        if W.ndim != 2 or b.size != W.shape[0]:
            raise FileFormatError(f"{where}: weight must be (out, in) and bias (out,). Got "
                                  f"{W.shape} and {b.shape}.")
        self._vector_in(name, node, W.shape[1])
        self._weighted(Dense(W.astype(self.dtype), b.astype(self.dtype)), name, node)

    def _linear(self, name, node):
        where = self.where(name, node)
        W = _array(node.weight, where, "weight")
        if W.ndim != 2:
            raise FileFormatError(f"{where}: weight must be (out, in). Got {W.shape}.")
        self._vector_in(name, node, W.shape[1])
        self._weighted(Dense(W.astype(self.dtype), np.zeros(W.shape[0], self.dtype)), name,
                       node)

    def _check_stored_shape(self, name, node, stored, ours):
        if stored is None:
            return
        if self.one_d and len(ours) == 3 and ours[1] == 1:
            ours = (ours[0], ours[2])  # (the graph's (C, L) of our one-row image)
        stored = np.asarray(stored).reshape(-1)
        if stored.size and tuple(int(v) for v in stored) != tuple(ours):
            raise UnsupportedLayerError(
                f"{self.where(name, node)} says its input is {tuple(int(v) for v in stored)}, "
                f"but the nodes before it give {tuple(ours)}.")

    def _conv2d(self, name, node):
        where = self.where(name, node)
        if len(self.shape) != 3:
            raise UnsupportedLayerError(f"{where} needs an image input (C, H, W); its input has "
                                        f"shape {self.shape}.")
        K = _array(node.weight, where, "weight")
        if K.ndim != 4:
            raise FileFormatError(f"{where}: weight must be (out, in / groups, kh, kw). Got "
                                  f"{K.shape}.")
        self._check_stored_shape(name, node, node.input_shape, self.shape[1:])
        self._conv(name, node, K, _ints(node.stride, 2, where, "stride"),
                   _ints(node.dilation, 2, where, "dilation"), self._padding(node.padding, 2,
                                                                             where))

    def _conv1d(self, name, node):
        where = self.where(name, node)
        if len(self.shape) != 3 or self.shape[1] != 1:
            raise UnsupportedLayerError(f"{where} needs an input (C, L); its input has shape "
                                        f"{self.shape}.")
        K = _array(node.weight, where, "weight")
        if K.ndim != 3:
            raise FileFormatError(f"{where}: weight must be (out, in / groups, k). Got {K.shape}.")
        self._check_stored_shape(name, node, node.input_shape, self.shape[2:])
        pad = self._padding(node.padding, 1, where)
        pad = pad if isinstance(pad, str) else (0, 0) + pad
        self._conv(name, node, K[:, :, None, :], (1,) + _ints(node.stride, 1, where, "stride"),
                   (1,) + _ints(node.dilation, 1, where, "dilation"), pad)

    @staticmethod
    def _padding(value, n, where):
        if isinstance(value, (str, bytes)):
            text = value.decode() if isinstance(value, bytes) else value
            if text.lower() not in ("same", "valid"):
                raise FileFormatError(f"{where}: padding must be 'same', 'valid' or integers. "
                                      f"Got {text!r}.")
            return text.lower()
        pads = _ints(value, n, where, "padding")
        return tuple(p for p in pads for _ in (0, 1))  # symmetric: (top, bottom, left, right)

    def _conv(self, name, node, K, stride, dilation, padding):
        where = self.where(name, node)
        bias = getattr(node, "bias", None)
        b = (np.zeros(K.shape[0]) if bias is None or np.asarray(bias).size == 0
             else _array(bias, where, "bias").reshape(-1))
        groups = int(np.asarray(node.groups).reshape(-1)[0]) if node.groups is not None else 1
        layer = Conv2d.build(K.astype(self.dtype), b.astype(self.dtype), in_shape=self.shape,
                             stride=stride, padding=padding, dilation=dilation, groups=groups)
        self._weighted(layer, name, node)

    # --- transforms -----------------------------------------------------------------------
    def _pool(self, cls, name, node, **kw):
        where = self.where(name, node)
        if len(self.shape) != 3:
            raise UnsupportedLayerError(f"{where} needs an image input (C, H, W); its input has "
                                        f"shape {self.shape}.")
        pad = _ints(node.padding, 2, where, "padding")
        t = cls(kernel=_ints(node.kernel_size, 2, where, "kernel_size"),
                stride=_ints(node.stride, 2, where, "stride"),
                padding=(pad[0], pad[0], pad[1], pad[1]), **kw).bind(self.shape)
        self._transform(t, name, node)

    def _transform(self, t, name, node):
        if self.neurons and self.neurons[-1] is None and isinstance(self.items[-1],
                                                                    (Dense, Conv2d)):
            raise UnsupportedLayerError(
                f"{self.where(name, node)} follows weighted node {self.last_name!r} with no "
                "neuron between them; neurosim places poolings and flattenings after a neuron "
                "node (or at the input).")
        self.items.append(t)
        self.shape = tuple(t.out_shape)

    def _sumpool2d(self, name, node):
        self._pool(SumPool2d, name, node)

    def _avgpool2d(self, name, node):
        self._pool(AvgPool2d, name, node, count_include_pad=True)

    def _flatten(self, name, node):
        where = self.where(name, node)
        start = int(np.asarray(node.start_dim).reshape(-1)[0])
        end = int(np.asarray(node.end_dim).reshape(-1)[0])
        nd = len(self.shape)
        if nd == 1:
            return  # flattening a vector is nothing
        if start % nd != 0 or end % nd != nd - 1:
            raise UnsupportedLayerError(
                f"{where} flattens dimensions {start}..{end} of an input of shape {self.shape} "
                "(no batch axis); neurosim flattens whole images only (start_dim 0, end_dim -1).")
        self._check_stored_shape(name, node, (node.input_type or {}).get("input"), self.shape)
        self._transform(Flatten().bind(self.shape), name, node)

    def _scale(self, name, node):
        where = self.where(name, node)
        if not (self.neurons and self.neurons[-1] is None
                and isinstance(self.items[-1], (Dense, Conv2d))):
            raise UnsupportedLayerError(
                f"{where}: neurosim folds a Scale into the weighted node right before it (no "
                "neuron, pooling or flattening in between).")
        layer = self.items[-1]
        s = _array(node.scale, where, "scale").astype(np.float64).reshape(-1)
        n = layer.c_out if isinstance(layer, Conv2d) else layer.n_out
        if s.size == 1:
            s = np.repeat(s, n)
        elif isinstance(layer, Conv2d) and s.size == layer.n_out:
            per = s.reshape(layer.c_out, -1)
            if np.any(per != per[:, :1]):
                raise UnsupportedLayerError(f"{where}: a Scale after a Conv2d must be one value "
                                            "per channel.")
            s = per[:, 0]
        if s.size != n:
            raise FileFormatError(f"{where}: scale has {s.size} values; the layer before it has "
                                  f"{n} {'channels' if isinstance(layer, Conv2d) else 'outputs'}.")
        W = np.asarray(layer.synapse_weights, np.float64)
        self.items[-1] = layer.with_parameters(
            synapse_weights=(W * s.reshape((-1,) + (1,) * (W.ndim - 1))).astype(self.dtype),
            bias=(np.asarray(layer.b, np.float64) * s).astype(self.dtype))

    # --- neurons --------------------------------------------------------------------------
    def _neuron_slot(self, name, node) -> int:
        if not (self.neurons and self.neurons[-1] is None
                and isinstance(self.items[-1], (Dense, Conv2d))):
            raise UnsupportedLayerError(
                f"{self.where(name, node)}: neurosim reads a neuron node right after a weighted "
                "node (Affine, Linear, Conv1d, Conv2d, with an optional Scale between).")
        return int(np.prod(self.shape))

    def _params(self, name, node, names: dict, n: int) -> dict:
        """The node's parameters (NIR name -> ours), each a scalar or one per neuron."""
        where = self.where(name, node)
        out = {}
        for nir_name, ours in names.items():
            value = getattr(node, nir_name, None)
            if value is None:
                continue
            arr = _array(value, where, nir_name).astype(np.float64).reshape(-1)
            if arr.size not in (1, n):
                raise FileFormatError(f"{where}: {nir_name} has {arr.size} values; the layer has "
                                      f"{n} neurons.")
            out[ours] = float(arr[0]) if np.all(arr == arr[0]) else arr
        return out

    def _reset(self, node) -> dict:
        meta = getattr(node, "metadata", None) or {}
        reset = meta.get("neurosim_reset", "value")
        reset = reset.decode() if isinstance(reset, bytes) else str(reset)
        return {"reset": "subtract" if reset == "subtract" else "value"}

    def _set_neuron(self, model, name, node):
        try:
            model.params(int(np.prod(self.shape)), self.dt)  # (sizes, dt / tau <= 1)
        except ValidationError as exc:
            raise type(exc)(f"{self.where(name, node)}: {exc}") from None
        self.neurons[-1] = model

    def _if(self, name, node):
        n = self._neuron_slot(name, node)
        p = self._params(name, node, {"r": "r", "v_threshold": "threshold",
                                      "v_reset": "v_reset"}, n)
        self._set_neuron(IF(**p, **self._reset(node)), name, node)

    def _lif(self, name, node):
        n = self._neuron_slot(name, node)
        p = self._params(name, node, {"tau": "tau", "r": "r", "v_leak": "v_leak",
                                      "v_threshold": "threshold", "v_reset": "v_reset"}, n)
        self._set_neuron(LIF(**p, **self._reset(node)), name, node)

    def _cubalif(self, name, node):
        n = self._neuron_slot(name, node)
        p = self._params(name, node, {"tau_syn": "tau_syn", "tau_mem": "tau_mem", "r": "r",
                                      "v_leak": "v_leak", "v_threshold": "threshold",
                                      "v_reset": "v_reset", "w_in": "w_in"}, n)
        self._set_neuron(CubaLIF(**p, **self._reset(node)), name, node)

    def _threshold(self, name, node):
        n = self._neuron_slot(name, node)
        p = self._params(name, node, {"threshold": "threshold"}, n)
        # memoryless: dt / tau = 1 forgets the membrane every step, so v = r I = I
        self._set_neuron(LIF(tau=self.dt, r=1.0, v_leak=0.0, **p), name, node)

    def _i(self, name, node):
        self._neuron_slot(name, node)
        r = _array(node.r, self.where(name, node), "r").astype(np.float64).reshape(-1)
        if r.size > 1 and np.any(r != r[0]):
            raise UnsupportedLayerError(f"{self.where(name, node)}: an output integrator with one "
                                        "r per neuron is not supported.")
        self.readout_scale = float(r[0]) * self.dt * self.T

    def _li(self, name, node):
        n = self._neuron_slot(name, node)
        p = self._params(name, node, {"tau": "tau", "r": "r", "v_leak": "v_leak"}, n)
        try:
            li = LI(**p)
            li.factors(n, self.dt)
        except ValidationError as exc:
            raise type(exc)(f"{self.where(name, node)}: {exc}") from None
        self.li = li


# --- writing -----------------------------------------------------------------------------------

def to_nir(target):
    """A ``nir.NIRGraph`` of a SpikingNetwork (see the module docstring for what it writes)."""
    graph, subtract = _graph(target)
    _warn_subtract(subtract)
    return graph


def save_nir(target, path) -> None:
    """Write a SpikingNetwork as a NIR file, atomically (``nir.write``'s HDF5)."""
    nir = import_nir()
    graph, subtract = _graph(target)
    _warn_subtract(subtract)
    with atomic_path(path) as tmp:
        nir.write(os.fspath(tmp), graph)


def _warn_subtract(layers) -> None:
    if layers:
        warnings.warn(
            f"to_nir: layers {', '.join(map(str, layers))} reset by subtraction, which NIR's "
            "neurons do not state (they reset to v_reset). The nodes carry neurosim_reset = "
            "'subtract' in their metadata: neurosim reads it back; other tools reset to v_reset.",
            NeurosimWarning, stacklevel=3)


def _graph(target):
    """The graph of ``target`` and the layers that reset by subtraction."""
    nir = import_nir()
    if not isinstance(target, SpikingNetwork):
        raise ValidationError("to_nir writes a SpikingNetwork (neurosim.spiking: build one, or "
                              f"convert a ReLU network with spiking.convert). Got "
                              f"{type(target).__name__}.")
    net = target.network
    nodes = {"input": nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges = []
    last = "input"
    subtract = []

    def add(node):
        nonlocal last
        name = str(len(nodes) - 1)
        nodes[name] = node
        edges.append((last, name))
        last = name

    for l, layer in enumerate(net.layers, start=1):
        for t in net.pre[l - 1]:
            add(_transform_node(nir, t, l))
        add(_layer_node(nir, layer, l))
        model = target.neurons[l - 1]
        if model is None and l == net.n_layers and target.li is not None:
            li = target.li
            n = layer.n_out
            add(nir.LI(**{k: np.broadcast_to(np.asarray(getattr(li, k), np.float64), (n,)).copy()
                          for k in ("tau", "r", "v_leak")}))
            continue
        if model is None:
            if l < net.n_layers:
                raise UnsupportedLayerError(
                    f"to_nir: layer {l} is graded ({layer.activation}); NIR has no graded "
                    "activations. Give every hidden layer a neuron model.")
            continue
        add(_neuron_node(nir, model, layer.n_out, target.dt))
        if model.reset == "subtract":
            subtract.append(l)
    out_shape = np.array(net.shapes[-1])
    nodes["output"] = nir.Output(output_type={"output": out_shape})
    edges.append((last, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"writer": "neurosim-faults",
                                                              "dt": target.dt},
                         type_check=False)
    return graph, subtract


def _transform_node(nir, t, l):
    kind = type(t).__name__
    if isinstance(t, Flatten):
        if t.order != "chw":
            raise UnsupportedLayerError(f"to_nir: the Flatten before layer {l} is channels-last "
                                        "(hwc); NIR flattens channels first.")
        return nir.Flatten(input_type={"input": np.array(t.in_shape)}, start_dim=0, end_dim=-1)
    if isinstance(t, (SumPool2d, AvgPool2d)):
        pt, pb, pl, pr = t.padding
        if pt != pb or pl != pr:
            raise UnsupportedLayerError(f"to_nir: the {kind} before layer {l} pads unevenly "
                                        f"{t.padding}; NIR pads both sides alike.")
        if not isinstance(t, SumPool2d) and not t.count_include_pad and (pt or pl):
            raise UnsupportedLayerError(f"to_nir: the AvgPool2d before layer {l} leaves the "
                                        "padding out of its divisor; NIR's counts it.")
        cls = nir.SumPool2d if isinstance(t, SumPool2d) else nir.AvgPool2d
        return cls(kernel_size=np.array(t.kernel), stride=np.array(t.stride),
                   padding=np.array([pt, pl]))
    raise UnsupportedLayerError(f"to_nir: NIR has no node for the {t.describe()} before layer "
                                f"{l}. neurosim writes {', '.join(NIR_WRITE)}.")


def _layer_node(nir, layer, l):
    if isinstance(layer, Dense):
        return nir.Affine(weight=np.asarray(layer.W), bias=np.asarray(layer.b))
    if isinstance(layer, Conv2d):
        pt, pb, pl, pr = layer.padding
        if pt != pb or pl != pr:
            raise UnsupportedLayerError(f"to_nir: layer {l} (Conv2d) pads unevenly "
                                        f"{layer.padding}; NIR pads both sides alike.")
        return nir.Conv2d(input_shape=tuple(layer.in_shape[1:]), weight=np.asarray(layer.K),
                          stride=np.array(layer.stride), padding=np.array([pt, pl]),
                          dilation=np.array(layer.dilation), groups=int(layer.groups),
                          bias=np.asarray(layer.b))
    raise UnsupportedLayerError(f"to_nir: layer {l} is a {type(layer).__name__}; neurosim "
                                f"writes {', '.join(NIR_WRITE)}.")


def _neuron_node(nir, model, n, dt):
    def full(name):
        value = getattr(model, name)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()

    meta = {"neurosim_reset": "subtract"} if model.reset == "subtract" else {}
    if isinstance(model, CubaLIF):
        return nir.CubaLIF(tau_syn=full("tau_syn"), tau_mem=full("tau_mem"), r=full("r"),
                           v_leak=full("v_leak"), v_threshold=full("threshold"),
                           v_reset=full("v_reset"), w_in=full("w_in"), metadata=meta)
    if isinstance(model, LIF):
        return nir.LIF(tau=full("tau"), r=full("r"), v_leak=full("v_leak"),
                       v_threshold=full("threshold"), v_reset=full("v_reset"), metadata=meta)
    if isinstance(model, IF):
        return nir.IF(r=full("r"), v_threshold=full("threshold"), v_reset=full("v_reset"),
                      metadata=meta)
    raise UnsupportedLayerError(f"to_nir: NIR has no node for the {model.kind} neuron model.")
