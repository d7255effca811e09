"""Parameter-free steps between layers: pooling and flattening.

A transform has no neurons and no synapses of its own: it reshapes or pools the activations
that the next weighted layer receives (on a chip the cores that receive them compute it, see
``docs/architecture.md``). In a :class:`~neurosim.network.Network` each weighted layer carries
the transforms before it; they are *bound* to their input shape when the network is built.

Each transform states its Lipschitz constant in the l2 norm, which Prop. 2 multiplies in:

* :class:`Flatten` is a permutation (1);
* :class:`AvgPool2d` is linear; its constant is ``sqrt(||P||_1 ||P||_inf)`` (Schur's test,
  an upper bound on ``||P||_2``, exact for non-overlapping windows: ``1/k``), and so is
  :class:`SumPool2d` (the same windows without the division: ``1`` for non-overlapping ones);
* :class:`GlobalAvgPool2d` is the mean of ``H W`` values: ``1 / sqrt(H W)``;
* :class:`MaxPool2d` is ``sqrt(ceil(kh / sh) ceil(kw / sw))``, *not* 1 when windows overlap.
  Proof: for one window ``|max a - max b| <= max |a - b| <= ||a_w - b_w||_2``; summing the
  squares over windows counts each input once per window that contains it, and along an axis
  an input lies in at most ``ceil(k / s)`` windows (window ``o`` covers ``[o s, o s + k)``),
  so ``||M(a) - M(b)||_2^2 <= ceil(kh/sh) ceil(kw/sw) ||a - b||_2^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from neurosim.errors import ShapeError, UnsupportedLayerError, ValidationError

__all__ = ["Transform", "TRANSFORMS", "register_transform", "transform_type", "Flatten",
           "MaxPool2d", "AvgPool2d", "SumPool2d", "GlobalAvgPool2d"]

#: Registered transform types, by ``kind`` (the name written into files).
TRANSFORMS: dict[str, type] = {}


def register_transform(cls: type) -> type:
    """Class decorator: make a :class:`Transform` subclass known under its ``kind``."""
    if not (isinstance(cls, type) and issubclass(cls, Transform)) or not getattr(cls, "kind", ""):
        raise TypeError(f"register_transform needs a Transform subclass with a kind; got {cls!r}")
    TRANSFORMS[cls.kind] = cls
    return cls


def transform_type(kind: str) -> type:
    try:
        return TRANSFORMS[kind]
    except (KeyError, TypeError):
        raise UnsupportedLayerError(
            f"Unknown transform kind {kind!r}. Registered transforms: {', '.join(sorted(TRANSFORMS))}."
        ) from None


def _pair(value, name, owner, lo=1):
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 2 or min(out) < lo:
        raise ValidationError(f"The {name} of {owner} must be an int >= {lo} or a pair of them. "
                              f"Got {value!r} instead.")
    return out


class Transform:
    """Base class: a parameter-free map from flat ``in_shape`` batches to flat ``out_shape`` ones."""

    kind: ClassVar[str] = ""
    in_shape: "tuple | None" = None

    def bind(self, shape: tuple) -> "Transform":
        """This transform fitted to an input of ``shape`` (raises ShapeError if it cannot be)."""
        return replace(self, in_shape=tuple(int(s) for s in shape))

    @property
    def out_shape(self) -> tuple:
        raise NotImplementedError

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    def apply(self, Y: np.ndarray) -> np.ndarray:
        """The transform of a batch ``Y`` (n, n_in) -> (n, n_out)."""
        raise NotImplementedError

    def vjp(self, G: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``G`` (m, ..., n_out) pulled back to (m, ..., n_in) at inputs ``Y`` (m, n_in)."""
        raise NotImplementedError

    @property
    def lipschitz(self) -> float:
        raise NotImplementedError

    def influence(self, v: np.ndarray) -> np.ndarray:
        """``v G`` for non-negative ``v`` (n_out,), where ``G[w, j]`` bounds how much output w
        moves per unit change of input j alone: ``|T(y + d e_j)_w - T(y)_w| <= G[w, j] |d|``.
        Used for the single-crash bound (Prop. 2 through pooling)."""
        return self.vjp(np.asarray(v, dtype=np.float64)[None, :], None)[0]

    def sources(self, idx) -> np.ndarray:
        """The inputs (flat indices, sorted, unique) that outputs ``idx`` are computed from:
        what a core that computes those outputs must receive."""
        raise NotImplementedError

    def params(self) -> dict:
        """Settings saved in files (``in_shape`` excluded: the network binds it)."""
        return {}

    @classmethod
    def from_params(cls, params: dict) -> "Transform":
        return cls(**params)

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.kind}({inner})"

    def _need_image(self):
        if self.in_shape is None or len(self.in_shape) != 3:
            raise ShapeError(f"{self.describe()} needs an image input (C, H, W). Got an input "
                             f"of shape {self.in_shape} instead.")


@register_transform
@dataclass(frozen=True)
class Flatten(Transform):
    """Flatten an image to a vector in the framework's order: ``chw`` (PyTorch, ONNX) or
    ``hwc`` (Keras, channels last). Activations are stored ``(C, H, W)``, so ``hwc`` permutes."""

    order: str = "chw"
    in_shape: "tuple | None" = None
    kind = "flatten"

    def __post_init__(self):
        if self.order not in ("chw", "hwc"):
            raise ValidationError(f"The order of Flatten must be 'chw' or 'hwc'. Got {self.order!r}.")

    @property
    def out_shape(self):
        return (self.n_in,)

    @property
    def _perm(self):
        if self.order == "chw" or len(self.in_shape) != 3:
            return None
        C, H, W = self.in_shape
        return np.arange(C * H * W).reshape(C, H, W).transpose(1, 2, 0).ravel()

    def apply(self, Y):
        perm = self._perm
        return Y if perm is None else np.ascontiguousarray(Y[:, perm])

    def vjp(self, G, Y):
        perm = self._perm
        if perm is None:
            return G
        out = np.empty_like(G)
        out[..., perm] = G
        return out

    @property
    def lipschitz(self):
        return 1.0

    def sources(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        perm = self._perm
        return np.unique(idx if perm is None else perm[idx])

    def params(self):
        return {"order": self.order}


def _window_view(X, kh, kw, sh, sw):
    """(n, C, Ho, Wo, kh, kw) strided windows of the padded images X (n, C, Hp, Wp)."""
    win = np.lib.stride_tricks.sliding_window_view(X, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


@dataclass(frozen=True)
class _Pool(Transform):
    kernel: tuple = (2, 2)
    stride: "tuple | None" = None
    padding: tuple = (0, 0, 0, 0)
    in_shape: "tuple | None" = None

    def __post_init__(self):
        owner = type(self).__name__
        object.__setattr__(self, "kernel", _pair(self.kernel, "kernel size", owner))
        object.__setattr__(self, "stride", self.kernel if self.stride is None
                           else _pair(self.stride, "stride", owner))
        pad = self.padding
        if isinstance(pad, (int, np.integer)):
            pad = (int(pad),) * 4
        pad = tuple(int(p) for p in pad)
        if len(pad) == 2:
            pad = (pad[0], pad[0], pad[1], pad[1])
        if len(pad) != 4 or min(pad) < 0:
            raise ValidationError(f"The padding of {owner} must be non-negative ints. "
                                  f"Got {self.padding!r} instead.")
        object.__setattr__(self, "padding", pad)

    def bind(self, shape):
        out = replace(self, in_shape=tuple(int(s) for s in shape))
        out._need_image()
        ho, wo = out.out_shape[1:]
        if ho < 1 or wo < 1:
            raise ShapeError(f"{self.describe()} does not fit its input of shape {shape}.")
        if out._some_window_in_padding():
            raise ShapeError(
                f"{self.describe()} on an input of shape {shape} has windows that lie wholly in "
                "the padding (they would output -inf or nan): the padding must be smaller than "
                "the kernel.")
        return out

    @property
    def out_shape(self):
        C, H, W = self.in_shape
        (kh, kw), (sh, sw) = self.kernel, self.stride
        pt, pb, pl, pr = self.padding
        return (C, (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1)

    def _pad(self, Y, fill):
        """Flat rows ``Y`` as images ``(n, C, H + pads, W + pads)`` padded with ``fill``."""
        C, H, W = self.in_shape
        pt, pb, pl, pr = self.padding
        n = Y.shape[0]
        X = np.full((n, C, H + pt + pb, W + pl + pr), fill, dtype=Y.dtype)
        X[:, :, pt:pt + H, pl:pl + W] = Y.reshape(n, C, H, W)
        return X

    def _padded(self, Y, fill):
        """The ``(n, C, Ho, Wo, kh, kw)`` windows of the padded rows (a strided view)."""
        ho, wo = self.out_shape[1:]
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return _window_view(self._pad(Y, fill), kh, kw, sh, sw)[:, :, :ho, :wo]

    def _reduce(self, Y, fill, op):
        """``op`` (np.maximum or np.add) over the window taps: one strided slice per tap
        (fast; a sliding-window view reduced over its small trailing axes is not)."""
        n = Y.shape[0]
        X = self._pad(Y, fill)
        ho, wo = self.out_shape[1:]
        (kh, kw), (sh, sw) = self.kernel, self.stride
        out = None
        for ky in range(kh):
            for kx in range(kw):
                tap = X[:, :, ky:ky + sh * (ho - 1) + 1:sh, kx:kx + sw * (wo - 1) + 1:sw]
                out = tap.copy() if out is None else op(out, tap, out=out)
        return out.reshape(n, -1)

    def _some_window_in_padding(self) -> bool:
        """Whether a window reads nothing but padding, from the shapes alone (nothing the
        size of the input is allocated, whatever shape a file declares).

        A window is the product of a row range and a column range; it misses the image when
        one of them misses the image's rows (columns). Along an axis the windows are ranges
        of the same length with increasing starts and the image is one interval, so only the
        first window (ending before the image) and the last one (starting after it) can."""
        _, H, W = self.in_shape
        _, ho, wo = self.out_shape
        for size, out, k, s, pad in ((H, ho, self.kernel[0], self.stride[0], self.padding[0]),
                                     (W, wo, self.kernel[1], self.stride[1], self.padding[2])):
            if k <= pad or (out - 1) * s > pad + size - 1:
                return True
        return False

    def _window_inputs(self):
        """(n_out, kh*kw) flat input index of every window tap, -1 on the padding."""
        C, H, W = self.in_shape
        idx = np.arange(C * H * W, dtype=np.int64).reshape(1, C, H, W).astype(np.float64)
        win = self._padded(idx, -1.0)[0]  # (C, Ho, Wo, kh, kw)
        return win.reshape(self.n_out, -1).astype(np.int64)

    def sources(self, idx):
        taps = self._window_inputs()[np.asarray(idx, dtype=np.int64)]
        return np.unique(taps[taps >= 0])

    def params(self):
        return {"kernel": list(self.kernel), "stride": list(self.stride),
                "padding": list(self.padding)}


@register_transform
@dataclass(frozen=True)
class MaxPool2d(_Pool):
    """Max over ``kernel`` windows with ``stride`` (default: the kernel) and ``padding`` (the
    padding never wins: it reads -inf, as in PyTorch)."""

    kind = "maxpool2d"

    def apply(self, Y):
        return self._reduce(Y, -np.inf, np.maximum)

    def _argmax_inputs(self, Y):
        win = self._padded(Y, -np.inf)
        n = Y.shape[0]
        flat = win.reshape(n, self.n_out, -1)
        arg = flat.argmax(axis=-1)  # first maximum, as PyTorch
        taps = self._window_inputs()
        return taps[np.arange(self.n_out)[None, :], arg]  # (n, n_out)

    def vjp(self, G, Y):
        G = np.asarray(G, dtype=np.float64)
        src = self._argmax_inputs(Y)  # (m, n_out)
        m = G.shape[0]
        G3 = G.reshape(m, -1, self.n_out)
        out = np.zeros((m, G3.shape[1], self.n_in))
        rows = np.arange(m)[:, None, None]
        mids = np.arange(G3.shape[1])[None, :, None]
        np.add.at(out, (rows, mids, src[:, None, :]), G3)
        return out.reshape(G.shape[:-1] + (self.n_in,))

    @property
    def lipschitz(self):
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return math.sqrt(math.ceil(kh / sh) * math.ceil(kw / sw))

    def influence(self, v):
        """A max moves by at most the change of one of its inputs: ``G`` is window membership."""
        taps = self._window_inputs()
        out = np.zeros(self.n_in)
        v = np.asarray(v, dtype=np.float64)
        for t in range(taps.shape[1]):
            ok = taps[:, t] >= 0
            np.add.at(out, taps[ok, t], v[ok])
        return out


@register_transform
@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """Mean over ``kernel`` windows. ``count_include_pad`` (PyTorch's default) divides by the
    window size; otherwise by the taps inside the image (Keras, ONNX's default)."""

    count_include_pad: bool = True
    kind = "avgpool2d"

    def _divisor(self):
        """Each window's divisor: its size, or (without ``count_include_pad``) its taps inside
        the image, counted by the same reduction as the sums (no tap table on the hot path)."""
        if self.count_include_pad:
            return float(self.kernel[0] * self.kernel[1])
        return self._reduce(np.ones((1, self.n_in)), 0.0, np.add)[0]

    def _matrix_parts(self):
        taps = self._window_inputs()
        return taps, taps >= 0, np.broadcast_to(self._divisor(), (self.n_out,))

    def apply(self, Y):
        s = self._reduce(Y, 0.0, np.add)
        div = self._divisor()
        return np.ascontiguousarray((s / div).astype(Y.dtype, copy=False))

    def vjp(self, G, Y=None):
        G = np.asarray(G, dtype=np.float64)
        taps, valid, div = self._matrix_parts()
        lead = G.shape[:-1]
        G2 = (G.reshape(-1, self.n_out) / div)
        out = np.zeros((G2.shape[0], self.n_in))
        for t in range(taps.shape[1]):
            ok = valid[:, t]
            np.add.at(out, (slice(None), taps[ok, t]), G2[:, ok])
        return out.reshape(lead + (self.n_in,))

    @property
    def lipschitz(self):
        row = self.apply(np.ones((1, self.n_in)))[0].max()  # ||P||_inf (entries >= 0)
        col = self.vjp(np.ones((1, self.n_out)))[0].max()  # ||P||_1
        return float(math.sqrt(row * col))

    def params(self):
        return {**super().params(), "count_include_pad": bool(self.count_include_pad)}


@register_transform
@dataclass(frozen=True)
class SumPool2d(AvgPool2d):
    """Sum over ``kernel`` windows (zero padding): NIR's ``SumPool2d``, Sinabs' and Speck's
    pooling (an average pooling without the division)."""

    count_include_pad: bool = True
    kind = "sumpool2d"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "count_include_pad", True)  # (no divisor at all)

    def _divisor(self):
        return 1.0

    def params(self):
        out = super().params()
        out.pop("count_include_pad")
        return out


@register_transform
@dataclass(frozen=True)
class GlobalAvgPool2d(Transform):
    """The mean of each channel (``AdaptiveAvgPool2d(1)``, Keras' and ONNX's global average
    pooling): ``(C, H, W) -> (C, 1, 1)`` (``keepdims``) or ``(C,)``."""

    keepdims: bool = True
    in_shape: "tuple | None" = None
    kind = "global_avgpool2d"

    def bind(self, shape):
        out = replace(self, in_shape=tuple(int(s) for s in shape))
        out._need_image()
        return out

    @property
    def out_shape(self):
        return (self.in_shape[0], 1, 1) if self.keepdims else (self.in_shape[0],)

    def apply(self, Y):
        C, H, W = self.in_shape
        return np.ascontiguousarray(Y.reshape(Y.shape[0], C, H * W).mean(axis=2))

    def vjp(self, G, Y=None):
        C, H, W = self.in_shape
        G = np.asarray(G, dtype=np.float64)
        return np.repeat(G / (H * W), H * W, axis=-1)

    @property
    def lipschitz(self):
        return 1.0 / math.sqrt(self.in_shape[1] * self.in_shape[2])

    def sources(self, idx):
        C, H, W = self.in_shape
        channels = np.unique(np.asarray(idx, dtype=np.int64))
        return (channels[:, None] * (H * W) + np.arange(H * W)[None, :]).ravel()

    def params(self):
        return {"keepdims": bool(self.keepdims)}
