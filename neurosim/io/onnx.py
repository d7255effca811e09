"""Reading ONNX models (extra ``onnx``; onnx is imported lazily).

:func:`load_onnx` reads a ``.onnx`` file with ``onnx.load``, checks it with
``onnx.checker.check_model`` and reads the weights (initializers, ``Constant`` nodes) with
``onnx.numpy_helper``. The graph must be a *chain*: one graph input, one graph output, and
every other node takes exactly one non-constant input, the output of the node before it (a
tensor that feeds two nodes, or a node with two non-constant inputs such as a residual
``Add``, is an error naming the node). Nodes whose inputs are all constants (``Constant``,
``Identity`` of an initializer, ...) are evaluated when the file is read.

==========================  ===================================================================
ONNX op                     neurosim
==========================  ===================================================================
Conv                        :class:`~neurosim.layers.Conv2d` (2-D: ``group``, ``strides``,
                            ``pads``, ``dilations``, ``auto_pad`` NOTSET / VALID / SAME_UPPER /
                            SAME_LOWER, optional bias)
Gemm                        :class:`~neurosim.layers.Dense` (``alpha``, ``beta``, ``transB``;
                            ``transA`` must be 0; optional bias ``C``)
MatMul                      Dense with a constant right operand (bias 0)
Add of a constant           added to the bias of the Conv / Gemm / MatMul right before it
BatchNormalization          folded into the Conv / Gemm / MatMul right before it (inference
                            statistics, ``epsilon``)
Relu, LeakyRelu, Elu,       the activation of the layer before (``alpha`` read; ``Clip`` is
Sigmoid, Tanh, Softplus,    ``hardtanh(min, max)``, ``relu6`` for 0..6, ``relu`` for 0..inf;
Clip, Gelu, HardSigmoid,    ``Gelu`` is ``gelu`` or ``gelu_tanh``)
HardSwish
a small elementwise         recognised by its values: GELU (erf or tanh form) and SiLU as
subgraph                    older exporters write them (``x * sigmoid(x)``, ...)
MaxPool                     :class:`~neurosim.layers.MaxPool2d` (``kernel_shape``, ``strides``,
                            ``pads``, ``auto_pad``; ``ceil_mode``, ``dilations`` and
                            ``storage_order`` must be the defaults)
AveragePool                 :class:`~neurosim.layers.AvgPool2d` (``count_include_pad`` read,
                            ONNX's default 0; ``ceil_mode`` must be 0)
GlobalAveragePool           :class:`~neurosim.layers.GlobalAvgPool2d` (``keepdims=True``)
ReduceMean over H and W     GlobalAvgPool2d (``keepdims`` read)
GlobalMaxPool               MaxPool2d over the whole image
Flatten (axis 1)            :class:`~neurosim.layers.Flatten` (``"chw"``)
Reshape to ``[N, -1]``      Flatten; the shape is a constant ``[0 | -1 | N, -1 | C*H*W]``
Dropout, Identity           ignored (inference)
Softmax, LogSoftmax         only as the output; dropped (the network outputs logits) with a
                            warning and ``metadata["dropped_output_softmax"] = True``
==========================  ===================================================================

Any other op is an :class:`~neurosim.errors.UnsupportedLayerError` naming the node (its name
and op type) and listing the supported ops.

Exporters at opsets below 20 write GELU and SiLU out element-wise (``x * sigmoid(x)``,
``0.5 x (1 + erf(x / sqrt 2))``, the tanh form), so the tensor before them feeds two nodes.
Such a branch is accepted when it is a small subgraph of element-wise ops (Add, Sub, Mul, Div,
Pow, Erf, Tanh, Sigmoid, ...) with scalar constants that rejoins into one tensor: it is
evaluated in float64 at 325 points of ``[-8, 8]`` and taken as the activation it matches
(gelu, gelu_tanh, silu, hardswish, relu, sigmoid, tanh, softplus) to ``1e-6``; otherwise the
branch is an error.

Shapes and layout: the input shape is read from the graph input, ``(N, C, H, W)`` for images
or ``(N, n)`` for vectors; the batch dimension ``N`` may be symbolic, ``C``, ``H``, ``W`` and
``n`` must be fixed. Graph inputs that are also initializers are weights, not inputs. Images
are channels-first (ONNX's convention): the network's layout is ``"NCHW"`` and it takes data
of shape ``(n, C, H, W)`` (or flat rows in that order). Weights keep their floating type
(float16 and bfloat16 become float32).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

import numpy as np
from scipy.special import erf

from neurosim.activations import Activation, make_activation
from neurosim.errors import (
    FileFormatError,
    MissingExtraError,
    NeurosimError,
    NeurosimFileNotFoundError,
    UnsupportedLayerError,
)
from neurosim.io import guard
from neurosim.io.builder import NetworkBuilder
from neurosim.layers import (
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    MaxPool2d,
)
from neurosim.layers.conv import same_padding
from neurosim.network import Network

__all__ = ["load_onnx", "SUPPORTED_OPS"]

#: The ops :func:`load_onnx` understands (for error messages).
SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "Add (of a constant, as a bias)", "BatchNormalization", "Relu",
    "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Softplus", "Clip", "Gelu", "HardSigmoid",
    "HardSwish", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "ReduceMean (over H, W)", "Flatten", "Reshape (to [N, -1])", "Dropout", "Identity",
    "Softmax/LogSoftmax (last only)", "Constant",
)

_INSTALL_HINT = "pip install 'neurosim-faults[onnx]'"

_SIMPLE_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                       "Softplus": "softplus", "HardSwish": "hardswish"}
_IGNORED = {"Dropout", "Identity"}
_SOFTMAX = {"Softmax", "LogSoftmax"}
#: Ops that are never folded as constants (their output changes from run to run).
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
           "Multinomial", "Bernoulli"}
_FLOATS = (np.float32, np.float64)
#: Ops never evaluated as constants when a file is read: their cost is not bounded by the
#: size of the file (a Loop's trip count, an image resized by any factor, ...).
_FOLD_REFUSED = {"Loop", "Scan", "If", "SequenceMap", "Resize", "Upsample", "Einsum", "DFT",
                 "STFT", "HannWindow", "HammingWindow", "BlackmanWindow", "MelWeightMatrix",
                 "Col2Im", "CenterCropPad", "ConvTranspose", "ImageDecoder"}
#: Ops whose output is the broadcast of their inputs.
_BROADCASTING = {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Where",
                 "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor",
                 "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu"}

# Element-wise ops of a decomposed activation (x * sigmoid(x), the erf form of GELU, ...),
# evaluated in float64 to recognise the function; constants must be scalars.
_MAX_PATTERN_NODES = 24


def _sig(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


_ELEMENTWISE = {
    "Add": lambda a, b, at: a + b,
    "Sub": lambda a, b, at: a - b,
    "Mul": lambda a, b, at: a * b,
    "Div": lambda a, b, at: a / b,
    "Pow": lambda a, b, at: np.power(a, b),
    "Neg": lambda a, at: -a,
    "Abs": lambda a, at: np.abs(a),
    "Reciprocal": lambda a, at: 1.0 / a,
    "Sqrt": lambda a, at: np.sqrt(a),
    "Exp": lambda a, at: np.exp(a),
    "Log": lambda a, at: np.log(a),
    "Erf": lambda a, at: erf(a),
    "Tanh": lambda a, at: np.tanh(a),
    "Sigmoid": lambda a, at: _sig(a),
    "Relu": lambda a, at: np.maximum(a, 0.0),
    "Softplus": lambda a, at: np.logaddexp(0.0, a),
    "HardSigmoid": lambda a, at: np.clip(at.get("alpha", 0.2) * a + at.get("beta", 0.5), 0, 1),
}
_PATTERN_CANDIDATES = ("gelu", "gelu_tanh", "silu", "hardswish", "relu", "sigmoid", "tanh",
                       "softplus")


def _brief(exc: BaseException) -> str:
    """An exception from another library as one short line (its messages can run to pages)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _import_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.numpy_helper
    except ImportError:
        raise MissingExtraError(
            f"Reading ONNX models needs onnx, which is not installed: {_INSTALL_HINT}"
        ) from None
    return onnx


def _supported_text() -> str:
    return f"Supported ops: {', '.join(SUPPORTED_OPS)}."


def load_onnx(path: "str | os.PathLike") -> Network:
    """Load a network from an ONNX file (a chain of the ops in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.onnx`` model file.

    Returns
    -------
    Network
        Layout ``"NCHW"`` for image inputs; ``metadata`` holds ``source_format`` (``"onnx"``),
        ``onnx_opset``, ``producer`` and ``name`` (the graph's name) where the file has them.

    Raises
    ------
    MissingExtraError
        If onnx is not installed.
    NeurosimFileNotFoundError
        If the file does not exist.
    FileFormatError
        If the file is not a valid ONNX model, or its input shape is not fixed.
    UnsupportedLayerError
        If the graph is not a chain or holds an op neurosim cannot represent; the message
        names the node.

    Warns
    -----
    UserWarning
        When a final Softmax / LogSoftmax is dropped.
    """
    onnx = _import_onnx()
    path = os.fspath(path)
    source = repr(path)
    if not os.path.exists(path):
        raise NeurosimFileNotFoundError(f"Model file {source} does not exist.")
    with guard.reading(source, "ONNX model file"):
        # onnx.load reads the whole file into memory, then the external data it names.
        guard.check_nbytes(os.path.getsize(path), source, "the ONNX file")
        try:
            model = onnx.load(path, load_external_data=False)
            _load_external_data(onnx, model, path, source)
        except NeurosimError:
            raise
        except Exception as exc:  # protobuf's DecodeError, a missing external-data file, ...
            raise FileFormatError(
                f"{source} is not a readable ONNX file: {_brief(exc)}") from None
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # onnx.checker.ValidationError, or protobuf errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FileFormatError(
                f"{source} is not a valid ONNX model (onnx.checker: {first[:300]})") from None
        return _Reader(onnx, model, source).read()


def _load_external_data(onnx, model, path: str, source: str) -> None:
    """Load the tensors a model keeps in other files, once their declared lengths (and the
    files' sizes) are within the read limit; onnx itself refuses a location outside the
    model's folder."""
    from onnx import external_data_helper as helper

    tensors = [t for t in _tensors(model.graph) if helper.uses_external_data(t)]
    if not tensors:
        return
    folder = os.path.dirname(os.path.abspath(path))
    total = 0
    for tensor in tensors:
        info = {entry.key: entry.value for entry in tensor.external_data}
        what = f"the external data of tensor {tensor.name!r} ({info.get('location', '?')!r})"
        try:
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise FileFormatError(f"{source}: {what} declares a length that is not an "
                                  f"integer: {info['length']!r}.") from None
        if length is None:
            where = os.path.join(folder, info.get("location", ""))
            length = os.path.getsize(where) if os.path.isfile(where) else 0
        total += max(length, 0)
        guard.check_nbytes(length, source, what)
        guard.check_nbytes(total, source, "the model's external data together")
    helper.load_external_data_for_model(model, folder)


def _tensors(graph):
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included
    (protobuf bounds the nesting)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _node_label(node, index: int) -> str:
    if node.name:
        return f"node {node.name!r} ({node.op_type})"
    out = next((o for o in node.output if o), "")
    return f"node #{index} ({node.op_type}, output {out!r})"


class _Reader:
    """Walks one ONNX graph's chain and feeds a :class:`NetworkBuilder`."""

    def __init__(self, onnx, model, source: str):
        self.onnx = onnx
        self.model = model
        self.graph = model.graph
        self.source = source
        self.opset = next((int(o.version) for o in model.opset_import
                           if o.domain in ("", "ai.onnx")), 1)
        self.builder = NetworkBuilder(source, unit="Conv/Gemm")
        self.consts: dict[str, np.ndarray] = {}
        self.shape: tuple = ()
        self.batch: "int | None" = None
        #: True while an Add of a constant may still go into the last layer's bias.
        self.bias_ok = False

    # --- setup ----------------------------------------------------------------------------
    def read(self) -> Network:
        graph, nh = self.graph, self.onnx.numpy_helper
        if len(graph.sparse_initializer):
            raise UnsupportedLayerError(
                f"{self.source} holds sparse initializers, which neurosim does not read.")
        for init in graph.initializer:
            try:
                self.consts[init.name] = nh.to_array(init)
            except Exception as exc:
                raise FileFormatError(
                    f"{self.source}: cannot read the initializer {init.name!r}: {_brief(exc)}") from None
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs) or "none"
            raise UnsupportedLayerError(
                f"{self.source} has {len(inputs)} graph inputs that are not initializers "
                f"({names}); neurosim reads a chain with exactly one input.")
        if len(graph.output) != 1:
            raise UnsupportedLayerError(
                f"{self.source} has {len(graph.output)} graph outputs; neurosim reads a chain "
                "with exactly one output.")
        self.input_name = inputs[0].name
        self.output_name = graph.output[0].name
        self.shape = self._input_shape(inputs[0])
        input_shape = self.shape
        self._split_nodes()
        self._walk()
        producer = " ".join(s for s in (self.model.producer_name, self.model.producer_version) if s)
        metadata = {"source_format": "onnx", "onnx_opset": self.opset}
        if producer:
            metadata["producer"] = producer
        if graph.name:
            metadata["name"] = graph.name
        return self.builder.build(metadata, stacklevel=3, input_shape=input_shape,
                                  layout="NCHW" if len(input_shape) == 3 else None)

    def _input_shape(self, value_info) -> tuple:
        name = value_info.name
        what = f"{self.source}: the graph input {name!r}"
        if not value_info.type.HasField("tensor_type"):
            raise FileFormatError(f"{what} is not a tensor.")
        tt = value_info.type.tensor_type
        if tt.elem_type not in (1, 10, 11, 16):  # float, float16, double, bfloat16
            raise UnsupportedLayerError(
                f"{what} has element type "
                f"{self.onnx.TensorProto.DataType.Name(tt.elem_type)}; expected a float type.")
        if not tt.HasField("shape"):
            raise FileFormatError(
                f"{what} has no shape; neurosim needs (N, C, H, W) or (N, n) with fixed C, H, "
                "W or n.")
        dims = list(tt.shape.dim)
        if len(dims) not in (2, 4):
            raise UnsupportedLayerError(
                f"{what} has rank {len(dims)}; neurosim reads images (N, C, H, W) or vectors "
                "(N, n).")
        labels = ("N", "C", "H", "W") if len(dims) == 4 else ("N", "n")
        shape = []
        for axis, (dim, label) in enumerate(zip(dims, labels)):
            value = int(dim.dim_value) if dim.HasField("dim_value") else None
            if axis == 0:
                self.batch = value if value and value > 0 else None
                continue
            if value is None or value < 1:
                sym = f"symbolic ({dim.dim_param!r})" if dim.dim_param else "unknown"
                raise FileFormatError(
                    f"{what} has a {sym} {label} (axis {axis}); neurosim needs a fixed "
                    f"{', '.join(labels[1:])}: only the batch dimension may be symbolic.")
            shape.append(value)
        return tuple(shape)

    def _split_nodes(self) -> None:
        """Fold the constant nodes; index the others and their consumers."""
        self.nodes = []  # (index, node) of non-constant nodes, in graph order
        self.consumers: dict[str, list[int]] = defaultdict(list)  # tensor -> positions
        self.labels: dict[int, str] = {}  # position -> "<source>: node 'name' (Op)"
        self.short: dict[int, str] = {}  # position -> "node 'name' (Op)"
        for index, node in enumerate(self.graph.node):
            label = f"{self.source}: {_node_label(node, index)}"
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedLayerError(
                    f"{label} is an op of the domain {node.domain!r}; neurosim reads the "
                    f"standard ONNX ops only. {_supported_text()}")
            inputs = [x for x in node.input if x]
            if node.op_type not in _RANDOM and all(x in self.consts for x in inputs):
                self._fold(node, inputs, label)
                continue
            pos = len(self.nodes)
            self.nodes.append((index, node))
            self.labels[pos] = label
            self.short[pos] = _node_label(node, index)
            for x in dict.fromkeys(inputs):
                if x not in self.consts:
                    self.consumers[x].append(pos)

    def _fold(self, node, inputs, label) -> None:
        """Evaluate a node whose inputs are all constants (its output's size checked first)."""
        nh = self.onnx.numpy_helper
        self._check_fold(node, label)
        try:
            if node.op_type == "Constant" and len(node.attribute) == 1 \
                    and node.attribute[0].name == "value":
                values = [nh.to_array(node.attribute[0].t)]
            elif node.op_type == "Identity":
                values = [self.consts[inputs[0]]]
            else:
                from onnx.reference import ReferenceEvaluator

                evaluator = ReferenceEvaluator(node, opsets={"": self.opset})
                feeds = {name: self.consts[name] for name in inputs}
                values = evaluator.run(None, feeds)
        except Exception as exc:
            raise UnsupportedLayerError(
                f"{label} has constant inputs but could not be evaluated: "
                f"{_brief(exc)}") from None
        for name, value in zip(node.output, values):
            if name:
                self.consts[name] = np.asarray(value)

    def _check_fold(self, node, label) -> None:
        """Refuse a constant node before it runs when it could take unbounded time or memory:
        a subgraph (a Loop's trip count is whatever the file says), or an output larger than
        the read limit (ConstantOfShape of [10**6, 10**6], a broadcast of two long vectors)."""
        op = node.op_type
        graphs = [a.name for a in node.attribute if a.HasField("g") or len(a.graphs)]
        if op in _FOLD_REFUSED or graphs:
            raise UnsupportedLayerError(
                f"{label} has constant inputs, but neurosim does not evaluate "
                f"{'subgraphs' if graphs else f'{op} nodes'} when it reads a file (their cost "
                "is not bounded by the file's size).")
        try:
            count = self._fold_count(node)
        except (ValueError, TypeError, OverflowError, IndexError, ZeroDivisionError) as exc:
            raise UnsupportedLayerError(
                f"{label} has constant inputs but could not be evaluated: they do not fit "
                f"({_brief(exc)}).") from None
        if count is not None:
            guard.check_nbytes(count * 8, self.source,
                               f"{_node_label(node, -1)}, a constant it computes,")

    def _fold_count(self, node) -> "int | None":
        """The number of elements of the output of a constant node, from its inputs' shapes
        and values, for the ops whose output can be much larger than their inputs (None for
        the others)."""
        op = node.op_type
        values = [np.asarray(self.consts[x]) if x and x in self.consts else None
                  for x in node.input]

        def value(i):
            if i >= len(values) or values[i] is None:
                return None
            return values[i]

        def ints(i):
            return [int(v) for v in value(i).reshape(-1)]

        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "ConstantOfShape":
            return math.prod(ints(0)) if value(0) is not None else 1
        if op == "Expand":
            return math.prod(np.broadcast_shapes(value(0).shape, tuple(ints(1))))
        if op == "Tile":
            return value(0).size * math.prod(ints(1))
        if op == "Range":
            start, limit, delta = (float(value(i).reshape(-1)[0]) for i in range(3))
            if delta == 0:
                raise ValueError("a Range with delta 0 never ends")
            return max(math.ceil((limit - start) / delta), 0)
        if op == "Pad":
            pads = ints(1) if value(1) is not None else [int(p) for p in attrs.get("pads", ())]
            grow = sum(p for p in pads if p > 0)
            return math.prod(d + grow for d in value(0).shape)
        if op == "OneHot":
            return value(0).size * max(int(value(1).reshape(-1)[0]), 0)
        if op == "Gather":
            data, index = value(0), value(1)
            axis = int(attrs.get("axis", 0)) % max(data.ndim, 1)
            return math.prod(data.shape[:axis] + index.shape + data.shape[axis + 1:])
        if op in ("MatMul", "MatMulInteger"):
            a, b = value(0).shape, value(1).shape
            a2, b2 = (a if len(a) >= 2 else (1,) + a), (b if len(b) >= 2 else b + (1,))
            return math.prod(np.broadcast_shapes(a2[:-2], b2[:-2])) * a2[-2] * b2[-1]
        if op == "Gemm":
            a, b = value(0).shape, value(1).shape
            rows = a[1] if int(attrs.get("transA", 0)) else a[0]
            cols = b[0] if int(attrs.get("transB", 0)) else b[1]
            return rows * cols
        if op in _BROADCASTING:
            return math.prod(np.broadcast_shapes(*(v.shape for v in values if v is not None)))
        return None

    # --- the chain --------------------------------------------------------------------------
    def _where_from(self, tensor: str) -> str:
        for pos, (_, node) in enumerate(self.nodes):
            if tensor in node.output:
                return f"the output {tensor!r} of {self.short[pos]}"
        return f"the graph input {tensor!r}"

    def _walk(self) -> None:
        tensor, visited = self.input_name, set()
        while True:
            users = self.consumers.get(tensor, [])
            if not users:
                break
            if tensor == self.output_name:
                raise UnsupportedLayerError(
                    f"{self.source}: the graph output {tensor!r} also feeds "
                    f"{self.short[users[0]]}; neurosim reads a chain.")
            if len(users) > 1:
                region = self._pattern(tensor, users)
                visited.update(region)
                tensor = self.nodes[region[-1]][1].output[0]
                continue
            pos = users[0]
            if pos in visited:  # a node that feeds itself: the walk would never end
                raise UnsupportedLayerError(
                    f"{self.labels[pos]} is reached twice: the graph has a cycle; neurosim "
                    "reads a chain of layers.")
            _, node = self.nodes[pos]
            where = self.labels[pos]
            dynamic = list(dict.fromkeys(x for x in node.input if x and x not in self.consts))
            if dynamic != [tensor]:
                others = [x for x in dynamic if x != tensor]
                raise UnsupportedLayerError(
                    f"{where} has {len(dynamic)} non-constant inputs ({tensor!r} and "
                    f"{', '.join(repr(x) for x in others)}): the graph is not a chain (a "
                    "residual or other branch); neurosim reads chains of layers where each "
                    "node takes the previous node's output and constants.")
            for extra in node.output[1:]:
                if extra and (self.consumers.get(extra) or extra == self.output_name):
                    raise UnsupportedLayerError(
                        f"{where}: its output {extra!r} is used; neurosim reads only the first "
                        f"output of a {node.op_type}.")
            try:
                self._handle(node, where)
            except NeurosimError as exc:
                if str(exc).startswith(self.source):
                    raise
                text = str(exc)
                # The node's own messages continue the sentence ("is not supported ...").
                sep = " " if text[:1].islower() else ": "
                raise type(exc)(f"{where}{sep}{text}") from None
            visited.add(pos)
            tensor = node.output[0]
        if tensor != self.output_name:
            raise UnsupportedLayerError(
                f"{self.source}: {self._where_from(tensor)} is used by no node, but it is not "
                f"the graph output {self.output_name!r}; neurosim reads a chain from the input "
                "to the output.")
        left = [self.labels[p] for p in range(len(self.nodes)) if p not in visited]
        if left:
            raise UnsupportedLayerError(
                f"{left[0]} is not on the chain from the graph input {self.input_name!r} to "
                f"the output {self.output_name!r}; neurosim reads a chain of layers.")

    def _pattern(self, tensor: str, users: list[int]) -> list[int]:
        """A small element-wise subgraph from ``tensor`` to one output that computes a known
        activation (GELU or SiLU written out by an exporter); its node positions, in order."""
        names = ", ".join(self.short[p] for p in users)
        fail = UnsupportedLayerError(
            f"{self.source}: {self._where_from(tensor)} feeds {len(users)} nodes ({names}): the "
            "graph is not a chain (a residual or other branch), nor an activation written out "
            "element-wise (GELU, SiLU); neurosim reads chains of layers.")
        inside, region = {tensor}, []
        for pos in range(min(users), len(self.nodes)):
            _, node = self.nodes[pos]
            dynamic = {x for x in node.input if x and x not in self.consts}
            if not dynamic & inside:
                continue
            if not dynamic <= inside or node.op_type not in _ELEMENTWISE \
                    or len(region) >= _MAX_PATTERN_NODES:
                raise fail
            region.append(pos)
            inside.update(o for o in node.output if o)
            open_ = {t for t in inside
                     if t == self.output_name
                     or any(c not in region for c in self.consumers.get(t, []))}
            if open_ == {node.output[0]}:
                # A closed subgraph: done if it is a known activation; else it may be part
                # of one (x (1 + erf(x / sqrt 2)) before the product with 0.5).
                activation = self._identify(tensor, region)
                if activation is not None:
                    break
        else:
            raise fail
        where = (f"{self.source}: nodes {self.short[region[0]]} to "
                 f"{self.short[region[-1]]} (an element-wise {activation})")
        self.builder.activation(activation, where)
        self.bias_ok = False
        return region

    def _identify(self, tensor: str, region: list[int]) -> "Activation | None":
        z = np.concatenate([np.linspace(-8.0, 8.0, 321), [-0.01, 0.01, 1e-3, -1e-3]])
        values = {tensor: z}
        with np.errstate(all="ignore"):
            for pos in region:
                node = self.nodes[pos][1]
                args = []
                for x in node.input:
                    if x in values:
                        args.append(values[x])
                    elif x in self.consts and self.consts[x].size == 1 \
                            and self.consts[x].dtype.kind in "fiu":
                        args.append(float(self.consts[x].reshape(())))
                    else:
                        return None
                attrs = self._attrs(node)
                try:
                    out = _ELEMENTWISE[node.op_type](*args, attrs)
                except TypeError:  # wrong number of inputs
                    return None
                values[node.output[0]] = np.broadcast_to(np.asarray(out, np.float64), z.shape)
        f = values[self.nodes[region[-1]][1].output[0]]
        if not np.all(np.isfinite(f)):
            return None
        for name in _PATTERN_CANDIDATES:
            act = make_activation(name)
            g = act(z)
            if np.all(np.abs(f - g) <= 1e-6 * (1.0 + np.abs(g))):
                return act
        return None

    # --- nodes ------------------------------------------------------------------------------
    def _attrs(self, node) -> dict:
        out = {}
        for attr in node.attribute:
            value = self.onnx.helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            out[attr.name] = value
        return out

    def _const(self, node, index: int, what: str, required: bool = True):
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if required:
                raise UnsupportedLayerError(f"has no {what} (input {index}).")
            return None
        if name not in self.consts:
            raise UnsupportedLayerError(
                f"its {what} (input {index}, {name!r}) is not a constant; neurosim needs "
                "weights stored in the file (initializers or Constant nodes).")
        return self.consts[name]

    @staticmethod
    def _float(array, what: str) -> np.ndarray:
        array = np.asarray(array)
        if array.dtype.kind == "V" and str(array.dtype) == "bfloat16":  # ml_dtypes' bfloat16
            return array.astype(np.float32)
        if array.dtype.kind != "f":
            raise UnsupportedLayerError(
                f"its {what} has dtype {array.dtype}; expected floating-point weights.")
        return array if array.dtype in _FLOATS else array.astype(np.float32)

    def _need_image(self, op: str) -> tuple:
        if len(self.shape) != 3:
            raise UnsupportedLayerError(
                f"needs an image input (C, H, W); its input has shape {self.shape} per "
                "sample.")
        return self.shape

    def _need_first(self, node, op: str) -> None:
        if not node.input[0] or node.input[0] in self.consts:
            raise UnsupportedLayerError(
                f"has its non-constant operand second; neurosim reads a {op} x @ W with the "
                "data x first and constant weights W.")

    def _transform(self, transform, where: str) -> None:
        bound = transform.bind(self.shape)
        self.builder.transform(transform, where)
        self.shape = tuple(bound.out_shape)
        self.bias_ok = False

    def _handle(self, node, where: str) -> None:
        op = node.op_type
        attrs = self._attrs(node)
        b = self.builder
        if op == "Conv":
            self._conv(node, attrs, where)
        elif op == "Gemm":
            self._gemm(node, attrs, where)
        elif op == "MatMul":
            self._need_first(node, "MatMul")
            B = self._float(self._const(node, 1, "weight matrix"), "weight matrix")
            if B.ndim != 2:
                raise UnsupportedLayerError(
                    f"has a weight matrix of shape {B.shape}; neurosim reads x @ W with a "
                    "2-D W (n_in, n_out).")
            self._dense(B.T, None, node, where)
        elif op == "Add":
            self._add_bias(node, where)
        elif op == "BatchNormalization":
            self._batchnorm(node, attrs, where)
        elif op in _SIMPLE_ACTIVATIONS or op in ("LeakyRelu", "Elu", "Clip", "Gelu",
                                                 "HardSigmoid"):
            b.activation(self._activation(node, attrs), where)
            self.bias_ok = False
        elif op in _IGNORED:
            if op == "Dropout" and self.opset >= 12:
                mode = self._const(node, 2, "training_mode", required=False)
                if mode is not None and bool(np.asarray(mode).reshape(-1)[0]):
                    raise UnsupportedLayerError(
                        "is a Dropout in training mode (training_mode=True); neurosim reads "
                        "inference graphs.")
        elif op in _SOFTMAX:
            axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1))
            if len(self.shape) != 1 or axis not in (1, -1):
                raise UnsupportedLayerError(
                    f"has axis {axis} on a per-sample shape {self.shape}; a {op} is only "
                    "supported over the features of a vector output (axis 1 of (N, n)).")
            b.softmax(where)
        elif op in ("MaxPool", "AveragePool"):
            self._pool(node, attrs, where)
        elif op == "GlobalAveragePool":
            self._need_image(op)
            self._transform(GlobalAvgPool2d(keepdims=True), where)
        elif op == "GlobalMaxPool":
            _, H, W = self._need_image(op)
            self._transform(MaxPool2d((H, W)), where)
        elif op == "ReduceMean":
            self._reduce_mean(node, attrs, where)
        elif op == "Flatten":
            axis = int(attrs.get("axis", 1))
            rank = len(self.shape) + 1
            if axis not in (1, 1 - rank):
                raise UnsupportedLayerError(
                    f"is a Flatten with axis={axis}; only axis=1 (flatten each sample) is "
                    "supported.")
            if len(self.shape) == 3:
                self._transform(Flatten("chw"), where)
        elif op == "Reshape":
            self._reshape(node, attrs, where)
        else:
            raise UnsupportedLayerError(f"is not supported. {_supported_text()}")

    def _layer_name(self, node) -> str:
        return node.name or node.output[0]

    def _conv(self, node, attrs, where) -> None:
        C, H, W = self._need_image("Conv")
        K = self._float(self._const(node, 1, "kernel"), "kernel")
        bias = self._const(node, 2, "bias", required=False)
        bias = None if bias is None else self._float(bias, "bias").reshape(-1)
        if K.ndim != 4:
            raise UnsupportedLayerError(
                f"has a {K.ndim}-D kernel of shape {K.shape}; only 2-D convolutions (kernel "
                "(C_out, C_in/group, kh, kw)) are supported.")
        groups = int(attrs.get("group", 1))
        kh, kw = int(K.shape[2]), int(K.shape[3])
        if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != (kh, kw):
            raise FileFormatError(
                f"has kernel_shape {list(attrs['kernel_shape'])} but its kernel has shape "
                f"{K.shape}.")
        if groups < 1 or C % groups or K.shape[0] % groups or K.shape[1] * groups != C:
            raise UnsupportedLayerError(
                f"has a kernel of shape {K.shape} with group={groups}, which does not fit its "
                f"input of {C} channels (expected C_in/group = {C // max(groups, 1)}).")
        if bias is not None and bias.size != K.shape[0]:
            raise FileFormatError(
                f"has {bias.size} biases for {K.shape[0]} output channels.")
        stride = tuple(int(s) for s in attrs.get("strides", (1, 1)))
        dilation = tuple(int(d) for d in attrs.get("dilations", (1, 1)))
        padding = self._padding(attrs, (H, W), (kh, kw), stride, dilation, "Conv")
        layer = Conv2d.build(K, bias, in_shape=(C, H, W), stride=stride, padding=padding,
                             dilation=dilation, groups=groups)
        if min(layer.out_hw) < 1:
            raise UnsupportedLayerError(
                f"gives an empty output: kernel {(kh, kw)} does not fit its input of shape "
                f"{self.shape} with padding {padding}.")
        self.builder.add(layer, where, name=self._layer_name(node))
        self.shape = tuple(layer.out_shape)
        self.bias_ok = True

    def _padding(self, attrs, hw, kernel, stride, dilation, op) -> tuple:
        mode = str(attrs.get("auto_pad", "NOTSET")).upper()
        if len(stride) != 2 or len(dilation) != 2:
            raise UnsupportedLayerError(
                f"has strides {list(stride)} and dilations {list(dilation)}; a 2-D {op} has "
                "two of each.")
        if mode == "NOTSET":
            pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4 or min(pads) < 0:
                raise FileFormatError(
                    f"has pads {list(pads)}; expected 4 non-negative values "
                    "[top, left, bottom, right].")
            return (pads[0], pads[2], pads[1], pads[3])
        if mode == "VALID":
            return (0, 0, 0, 0)
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            end = mode == "SAME_UPPER"
            return (same_padding(hw[0], kernel[0], stride[0], dilation[0], end)
                    + same_padding(hw[1], kernel[1], stride[1], dilation[1], end))
        raise FileFormatError(
            f"has auto_pad={mode!r}; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER.")

    def _gemm(self, node, attrs, where) -> None:
        self._need_first(node, "Gemm")
        if int(attrs.get("transA", 0)):
            raise UnsupportedLayerError(
                "has transA=1; neurosim reads Gemm with the data as A (transA=0).")
        B = self._float(self._const(node, 1, "weight matrix B"), "weight matrix B")
        if B.ndim != 2:
            raise FileFormatError(f"has a weight matrix B of shape {B.shape}; expected 2-D.")
        W = B if int(attrs.get("transB", 0)) else B.T
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        if alpha != 1.0:
            W = (W * alpha).astype(W.dtype)
        C = self._const(node, 2, "bias C", required=False)
        bias = None
        if C is not None:
            C = self._float(C, "bias C")
            bias = self._per_output(C * np.asarray(beta, C.dtype), (W.shape[0],), "bias C")
        self._dense(W, bias, node, where)

    def _dense(self, W, bias, node, where) -> None:
        if len(self.shape) != 1:
            raise UnsupportedLayerError(
                f"takes a per-sample input of shape {self.shape}; a {node.op_type} needs a "
                "vector (N, n): add a Flatten before it.")
        if W.ndim != 2 or W.shape[1] != self.shape[0]:
            raise UnsupportedLayerError(
                f"has weights for {W.shape[1] if W.ndim == 2 else W.shape} inputs "
                f"(matrix {W.shape} as (n_out, n_in)) but its input has {self.shape[0]} "
                "features.")
        W = np.ascontiguousarray(W)
        b = np.zeros(W.shape[0], dtype=W.dtype) if bias is None else bias.astype(W.dtype)
        self.builder.add(Dense(W, b), where, name=self._layer_name(node))
        self.shape = (int(W.shape[0]),)
        self.bias_ok = True

    @staticmethod
    def _per_output(c, out_shape, what) -> np.ndarray:
        """``c`` broadcast to one sample's output ``out_shape`` (a leading batch axis of 1 is
        allowed)."""
        c = np.asarray(c)
        try:
            full = np.broadcast_to(c, (1,) + tuple(out_shape))
        except ValueError:
            raise UnsupportedLayerError(
                f"its {what} of shape {c.shape} does not broadcast to one output of shape "
                f"{tuple(out_shape)}.") from None
        if c.ndim > len(out_shape) + 1 or (c.ndim == len(out_shape) + 1 and c.shape[0] != 1):
            raise UnsupportedLayerError(
                f"its {what} of shape {c.shape} differs across the batch; expected one value "
                "per output.")
        return np.array(full[0])

    def _add_bias(self, node, where) -> None:
        const = [x for x in node.input if x in self.consts]
        b = self.builder
        if len(const) != 1 or not self.bias_ok or not b.specs:
            raise UnsupportedLayerError(
                "is an Add; neurosim reads an Add of a constant right after a Conv, Gemm or "
                "MatMul (as its bias), with nothing in between.")
        layer = b.specs[-1]
        c = self._float(self.consts[const[0]], "added constant")
        full = self._per_output(c, self.shape, "added constant")
        if isinstance(layer, Conv2d):
            per = full.reshape(layer.c_out, -1)
            if not np.all(per == per[:, :1]):
                raise UnsupportedLayerError(
                    f"adds a constant of shape {c.shape} that differs across positions; a "
                    "Conv bias is one value per channel.")
            extra = per[:, 0]
        else:
            extra = full.reshape(-1)
        bias = (np.asarray(layer.b, np.float64) + extra).astype(np.asarray(layer.b).dtype)
        b.specs[-1] = layer.with_parameters(bias=bias)

    def _batchnorm(self, node, attrs, where) -> None:
        if int(attrs.get("training_mode", 0)):
            raise UnsupportedLayerError(
                "is a BatchNormalization in training mode; neurosim folds inference "
                "statistics only.")
        if int(attrs.get("spatial", 1)) != 1:
            raise UnsupportedLayerError("has spatial=0, which neurosim does not support.")
        parts = [self._float(self._const(node, i, what), what)
                 for i, what in enumerate(("scale", "bias B", "input_mean", "input_var"), 1)]
        eps = float(attrs.get("epsilon", 1e-5))
        self.builder.batchnorm(*parts, eps, where)

    def _activation(self, node, attrs) -> Activation:
        op = node.op_type
        if op in _SIMPLE_ACTIVATIONS:
            return make_activation(_SIMPLE_ACTIVATIONS[op])
        if op == "LeakyRelu":
            return make_activation("leaky_relu", alpha=float(attrs.get("alpha", 0.01)))
        if op == "Elu":
            return make_activation("elu", alpha=float(attrs.get("alpha", 1.0)))
        if op == "HardSigmoid":
            return make_activation("hardsigmoid", alpha=float(attrs.get("alpha", 0.2)),
                                   beta=float(attrs.get("beta", 0.5)))
        if op == "Gelu":
            approx = str(attrs.get("approximate", "none")).lower()
            if approx not in ("none", "tanh"):
                raise UnsupportedLayerError(
                    f"has approximate={approx!r}; expected 'none' or 'tanh'.")
            return make_activation("gelu" if approx == "none" else "gelu_tanh")
        # Clip: bounds from inputs (opset >= 11) or attributes.
        if self.opset >= 11:
            lo = self._const(node, 1, "min", required=False)
            hi = self._const(node, 2, "max", required=False)
            lo = -math.inf if lo is None else float(np.asarray(lo).reshape(-1)[0])
            hi = math.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])
        else:
            lo = float(attrs.get("min", -math.inf))
            hi = float(attrs.get("max", math.inf))
        # Older files write float32's extremes for "no bound".
        lo = -math.inf if lo <= -3.0e38 else lo
        hi = math.inf if hi >= 3.0e38 else hi
        if lo == 0.0 and hi == math.inf:
            return make_activation("relu")
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise UnsupportedLayerError(
                f"is a Clip to [{lo:g}, {hi:g}]; neurosim supports finite bounds min < max "
                "(hardtanh, relu6 for [0, 6]) or [0, inf) (relu).")
        return make_activation("hardtanh", alpha=lo, beta=hi)

    def _pool(self, node, attrs, where) -> None:
        op = node.op_type
        _, H, W = self._need_image(op)
        if int(attrs.get("ceil_mode", 0)):
            raise UnsupportedLayerError(
                "has ceil_mode=1; neurosim's pooling rounds the output size down "
                "(ceil_mode=0).")
        if any(int(d) != 1 for d in attrs.get("dilations", (1, 1))):
            raise UnsupportedLayerError(
                f"has dilations {list(attrs['dilations'])}; neurosim's pooling supports "
                "dilation 1 only.")
        if int(attrs.get("storage_order", 0)):
            raise UnsupportedLayerError(
                "has storage_order=1; only the default row-major order (0) is supported.")
        kernel = tuple(int(k) for k in attrs.get("kernel_shape", ()))
        if len(kernel) != 2:
            raise UnsupportedLayerError(
                f"has kernel_shape {list(kernel)}; only 2-D pooling is supported.")
        stride = tuple(int(s) for s in attrs.get("strides", (1, 1)))
        padding = self._padding(attrs, (H, W), kernel, stride, (1, 1), op)
        if op == "MaxPool":
            pool = MaxPool2d(kernel, stride, padding)
        else:
            pool = AvgPool2d(kernel, stride, padding,
                             count_include_pad=bool(int(attrs.get("count_include_pad", 0))))
        self._transform(pool, where)

    def _reduce_mean(self, node, attrs, where) -> None:
        self._need_image("ReduceMean")
        if self.opset >= 18:
            axes = self._const(node, 1, "axes", required=False)
        else:
            axes = attrs.get("axes")
        axes = sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) if axes is not None \
            else None
        if axes != [2, 3]:
            raise UnsupportedLayerError(
                f"is a ReduceMean over axes {axes if axes is not None else 'all'}; neurosim "
                "supports the mean over H and W (axes [2, 3]), a global average pooling.")
        self._transform(GlobalAvgPool2d(keepdims=bool(int(attrs.get("keepdims", 1)))), where)

    def _reshape(self, node, attrs, where) -> None:
        target = self._const(node, 1, "shape")
        target = [int(v) for v in np.asarray(target).reshape(-1)]
        allowzero = bool(int(attrs.get("allowzero", 0)))
        size = int(np.prod(self.shape))
        first_ok = (target[:1] == [-1] or (target[:1] == [0] and not allowzero)
                    or (self.batch is not None and target[:1] == [self.batch]))
        second_ok = len(target) == 2 and (
            target[1] == size or (target[1] == -1 and target[0] != -1)
            or (target[1] == 0 and not allowzero and len(self.shape) == 1))
        if not (first_ok and second_ok):
            raise UnsupportedLayerError(
                f"reshapes a per-sample shape {self.shape} to {target}; neurosim supports "
                f"flattening each sample: [0, -1], [-1, {size}] or [N, -1] with N the fixed "
                "batch size.")
        if len(self.shape) == 3:
            self._transform(Flatten("chw"), where)
