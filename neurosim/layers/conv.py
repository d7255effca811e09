"""2-D convolutions: ``y = phi(conv(x, K) + b)`` on images stored channels-first.

A :class:`Conv2d` has ``C_out x H_out x W_out`` neurons; neuron ``i = (co, oy, ox)`` (flat C
order) reads the ``(C_in / groups) x kh x kw`` inputs of its window: input channel
``ci = g * C_in/groups + c`` for its group ``g = co // (C_out/groups)``, row
``oy * sh - pad_top + ky * dh`` and column ``ox * sw - pad_left + kx * dw`` (taps that fall in
the zero padding read nothing and are not synapses). Activations between layers are flat
vectors in ``(C, H, W)`` order whatever the framework's layout (see
:class:`~neurosim.network.Network` for how data in ``N x H x W x C`` comes in).

The stored weights are the kernel ``K`` of shape ``(C_out, C_in / groups, kh, kw)`` (PyTorch's
and ONNX's order) and one bias per output channel. As a matrix the layer is ``A`` of shape
``(n_out, n_in)`` with ``A[i, j] = K[k]`` for each connection: one kernel weight is shared by
every output position. :meth:`Conv2d.connections` lists the connections ``(i, j, k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurosim.activations import Activation, make_activation
from neurosim.errors import ShapeError, ValidationError
from neurosim.layers.base import Layer, real_array, register_layer

__all__ = ["Conv2d", "conv_output_size", "same_padding", "split_evenly"]


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                     dilation: int = 1) -> int:
    """Output length along one axis: ``floor((n + p0 + p1 - d (k - 1) - 1) / s) + 1``."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1,
                 extra_at_end: bool = True) -> tuple[int, int]:
    """``(before, after)`` padding of ``"same"``: output ``ceil(n / s)``, the odd pixel at the
    end (PyTorch, Keras, ONNX ``SAME_UPPER``) or at the start (ONNX ``SAME_LOWER``)."""
    for name, value in (("kernel size", kernel), ("stride", stride), ("dilation", dilation)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValidationError(f"The {name} of a 'same' padding must be an int >= 1. Got "
                                  f"{value!r} instead.")
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if extra_at_end else (big, small)


def _pair(value, name: str, owner: str = "Conv2d", lo: int = 1) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValidationError(f"The {name} of {owner} must be an int or a pair of ints. "
                              f"Got {value!r} instead.") from None
    if len(out) != 2 or any(v < lo for v in out) or any(float(v) != float(w) for v, w in zip(out, value)):
        raise ValidationError(f"The {name} of {owner} must be an int >= {lo} or a pair of them. "
                              f"Got {value!r} instead.")
    return out


def _taps(size: int, out: int, kernel: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """``(out, kernel)`` input index of each output position and tap along one axis, -1 where
    the tap reads the padding."""
    idx = np.arange(out)[:, None] * stride - pad + np.arange(kernel)[None, :] * dilation
    return np.where((idx >= 0) & (idx < size), idx, -1)


@register_layer
@dataclass
class Conv2d(Layer):
    """One 2-D convolution layer ``y = phi(conv(x, K) + b)`` on a ``(C_in, H, W)`` image.

    Attributes
    ----------
    K : ndarray, shape (C_out, C_in / groups, kh, kw)
        Kernel (PyTorch / ONNX order).
    b : ndarray, shape (C_out,)
        One bias per output channel.
    in_shape : tuple (C_in, H, W)
        The input image (channels first).
    stride, dilation : pair of int
    padding : tuple (top, bottom, left, right)
        Zero padding; give ``"same"`` or ``"valid"`` to :meth:`build`.
    groups : int
        ``C_in`` and ``C_out`` split into this many groups (``groups = C_in``: depthwise).
    activation : Activation
    """

    K: np.ndarray
    b: np.ndarray
    in_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    activation: Activation = field(default_factory=lambda: Activation("identity"))

    kind = "conv2d"

    @classmethod
    def build(cls, K, b=None, in_shape=None, stride=1, padding=0, dilation=1, groups=1,
              activation="identity") -> "Conv2d":
        """A Conv2d from framework-style settings.

        ``padding`` is an int, a pair ``(ph, pw)`` (both sides), a 4-tuple
        ``(top, bottom, left, right)``, ``"valid"`` or ``"same"`` (output ``ceil(H / s)``, the
        odd pixel at the bottom/right as in PyTorch and Keras). ``b`` None means no bias.
        ``in_shape`` is ``(C_in, H, W)``.
        """
        K = np.asarray(K)
        if K.ndim != 4:
            raise ShapeError(f"A Conv2d kernel must be 4-D (C_out, C_in/groups, kh, kw). "
                             f"Got shape {K.shape} instead.")
        if in_shape is None or len(tuple(in_shape)) != 3:
            raise ShapeError(f"Conv2d needs in_shape (C_in, H, W). Got {in_shape!r} instead.")
        C, H, W = (int(v) for v in in_shape)
        stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
        kh, kw = int(K.shape[2]), int(K.shape[3])
        if isinstance(padding, str):
            mode = padding.strip().lower()
            if mode == "valid":
                padding = (0, 0, 0, 0)
            elif mode == "same":
                padding = (same_padding(H, kh, stride[0], dilation[0])
                           + same_padding(W, kw, stride[1], dilation[1]))
            else:
                raise ValidationError(f"The padding of Conv2d must be 'same', 'valid' or ints. "
                                      f"Got {padding!r} instead.")
        elif isinstance(padding, (int, np.integer)):
            padding = (int(padding),) * 4
        else:
            padding = tuple(int(p) for p in padding)
            if len(padding) == 2:
                padding = (padding[0], padding[0], padding[1], padding[1])
        if b is None:
            b = np.zeros(K.shape[0], dtype=K.dtype if K.dtype.kind == "f" else np.float64)
        return cls(K, np.asarray(b), (C, H, W), stride, tuple(padding), dilation, int(groups),
                   make_activation(activation))

    # --- shapes ---------------------------------------------------------------------------
    @property
    def c_in(self) -> int:
        return int(self.in_shape[0])

    @property
    def c_out(self) -> int:
        return int(self.K.shape[0])

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.K.shape[2]), int(self.K.shape[3])

    @property
    def out_hw(self) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        pt, pb, pl, pr = self.padding
        return (conv_output_size(self.in_shape[1], kh, sh, pt, pb, dh),
                conv_output_size(self.in_shape[2], kw, sw, pl, pr, dw))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.c_out,) + self.out_hw

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def bias(self) -> np.ndarray:
        """Per-neuron bias ``(n_out,)``: the channel's bias at every position."""
        ho, wo = self.out_hw
        return np.repeat(self.b, ho * wo)

    @property
    def n_params(self) -> int:
        return int(self.K.size + self.b.size)

    # --- computation ----------------------------------------------------------------------
    def _windows(self):
        """For each tap (ky, kx): the strided slices of the padded input it reads."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ho, wo = self.out_hw
        for ky in range(kh):
            for kx in range(kw):
                yield ky, kx, (slice(ky * dh, ky * dh + sh * (ho - 1) + 1, sh),
                               slice(kx * dw, kx * dw + sw * (wo - 1) + 1, sw))

    def _padded_shape(self):
        pt, pb, pl, pr = self.padding
        return (self.c_in, self.in_shape[1] + pt + pb, self.in_shape[2] + pl + pr)

    def linear(self, Y: np.ndarray) -> np.ndarray:
        Y = np.asarray(Y)
        n = Y.shape[0]
        pt, pb, pl, pr = self.padding
        C, H, W = self.in_shape
        X = np.zeros((n,) + self._padded_shape(), dtype=np.result_type(Y.dtype, self.K.dtype))
        X[:, :, pt:pt + H, pl:pl + W] = Y.reshape(n, C, H, W)
        ho, wo = self.out_hw
        Z = np.zeros((n, self.c_out, ho, wo), dtype=X.dtype)
        g, cig, cog = self.groups, C // self.groups, self.c_out // self.groups
        for ky, kx, (sy, sx) in self._windows():
            win = X[:, :, sy, sx]  # (n, C_in, ho, wo)
            for gi in range(g):
                part = win[:, gi * cig:(gi + 1) * cig]
                k = self.K[gi * cog:(gi + 1) * cog, :, ky, kx]  # (cog, cig)
                Z[:, gi * cog:(gi + 1) * cog] += np.einsum("nchw,oc->nohw", part, k, optimize=True)
        Z += self.b.astype(Z.dtype)[None, :, None, None]
        return Z.reshape(n, -1)

    def vjp(self, G: np.ndarray) -> np.ndarray:
        G = np.asarray(G, dtype=np.float64)
        lead = G.shape[:-1]
        ho, wo = self.out_hw
        Gr = G.reshape((-1, self.c_out, ho, wo))
        n = Gr.shape[0]
        pt, pb, pl, pr = self.padding
        C, H, W = self.in_shape
        X = np.zeros((n,) + self._padded_shape())
        g, cig, cog = self.groups, C // self.groups, self.c_out // self.groups
        K = self.K.astype(np.float64)
        for ky, kx, (sy, sx) in self._windows():
            for gi in range(g):
                k = K[gi * cog:(gi + 1) * cog, :, ky, kx]
                X[:, gi * cig:(gi + 1) * cig, sy, sx] += np.einsum(
                    "nohw,oc->nchw", Gr[:, gi * cog:(gi + 1) * cog], k, optimize=True)
        return X[:, :, pt:pt + H, pl:pl + W].reshape(lead + (self.n_in,))

    # --- connections ----------------------------------------------------------------------
    def _axis_taps(self):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ho, wo = self.out_hw
        pt, _, pl, _ = self.padding
        return (_taps(self.in_shape[1], ho, kh, sh, pt, dh),
                _taps(self.in_shape[2], wo, kw, sw, pl, dw))

    def connections(self, out_neurons: "np.ndarray | None" = None):
        """The synapses as ``(i, j, k)``: neuron ``i`` reads input ``j`` through kernel weight
        ``k`` (flat index into ``K``), for all neurons or those in ``out_neurons``; sorted by
        ``i`` then ``k``."""
        ho, wo = self.out_hw
        ty, tx = self._axis_taps()
        C, H, W = self.in_shape
        cig, cog = C // self.groups, self.c_out // self.groups
        kh, kw = self.kernel_size
        neurons = (np.arange(self.n_out, dtype=np.int64) if out_neurons is None
                   else np.asarray(out_neurons, dtype=np.int64))
        co, rest = np.divmod(neurons, ho * wo)
        oy, ox = np.divmod(rest, wo)
        c = np.arange(cig)
        ky, kx = np.arange(kh), np.arange(kw)
        # (n, c, ky, kx) grids
        iy = ty[oy][:, None, :, None]
        ix = tx[ox][:, None, None, :]
        valid = (iy >= 0) & (ix >= 0)
        ci = (co // cog * cig)[:, None, None, None] + c[None, :, None, None]
        j = (ci * H + iy) * W + ix
        k = ((co[:, None, None, None] * cig + c[None, :, None, None]) * kh
             + ky[None, None, :, None]) * kw + kx[None, None, None, :]
        shape = (neurons.size, cig, kh, kw)
        valid = np.broadcast_to(valid, shape)
        i = np.broadcast_to(neurons[:, None, None, None], shape)[valid]
        return i, np.broadcast_to(j, shape)[valid], np.broadcast_to(k, shape)[valid]

    def dense_matrix(self) -> np.ndarray:
        i, j, k = self.connections()
        A = np.zeros((self.n_out, self.n_in), dtype=self.K.dtype)
        A[i, j] = self.K.ravel()[k]
        return A

    def entry_values(self, rows, cols) -> np.ndarray:
        """``A[rows, cols]`` without building ``A`` (0 where no synapse)."""
        k = self.entry_kernel_index(rows, cols)
        out = np.zeros(k.shape, dtype=self.K.dtype)
        out[k >= 0] = self.K.ravel()[k[k >= 0]]
        return out

    def entry_kernel_index(self, rows, cols) -> np.ndarray:
        """The flat kernel index that entry ``A[rows, cols]`` reads, -1 where no synapse."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        out = np.full(rows.shape, -1, dtype=np.int64)
        ho, wo = self.out_hw
        C, H, W = self.in_shape
        cig, cog = C // self.groups, self.c_out // self.groups
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        pt, _, pl, _ = self.padding
        co, rest = np.divmod(rows, ho * wo)
        oy, ox = np.divmod(rest, wo)
        ci, rest = np.divmod(cols, H * W)
        iy, ix = np.divmod(rest, W)
        c = ci - co // cog * cig
        dy, dx = iy - oy * sh + pt, ix - ox * sw + pl
        ky, kx = dy // dh, dx // dw
        ok = ((c >= 0) & (c < cig) & (dy % dh == 0) & (dx % dw == 0) & (ky >= 0) & (ky < kh)
              & (kx >= 0) & (kx < kw))
        out[ok] = ((co[ok] * cig + c[ok]) * kh + ky[ok]) * kw + kx[ok]
        return out

    # --- synapses -------------------------------------------------------------------------
    @property
    def synapse_weights(self) -> np.ndarray:
        return self.K

    def synapse_coords(self, pos):
        raise NotImplementedError(
            "A Conv2d kernel weight is shared by many matrix entries; use weight_uses().")

    def weight_uses(self, pos):
        """For stored weights ``pos`` (flat kernel indices): every connection that reads them,
        as ``(owner, i, j)`` with ``owner`` indexing ``pos``."""
        pos = np.asarray(pos, dtype=np.int64)
        cache = self.__dict__.setdefault("_uses_cache", {})
        key = self._settings_key()  # the table depends on the shapes and settings only
        if key not in cache:  # connections sorted by kernel weight
            i, j, k = self.connections()
            order = np.argsort(k, kind="stable")
            cache.clear()
            cache[key] = (i[order], j[order], k[order])
        i, j, k_sorted = cache[key]
        lo = np.searchsorted(k_sorted, pos, side="left")
        hi = np.searchsorted(k_sorted, pos, side="right")
        counts = hi - lo
        owner = np.repeat(np.arange(pos.size, dtype=np.int64), counts)
        first = np.cumsum(counts) - counts
        idx = np.repeat(lo - first, counts) + np.arange(owner.size, dtype=np.int64)
        return owner, i[idx], j[idx]

    @property
    def n_connections(self) -> int:
        """Number of (neuron, input) pairs with a synapse (taps on the padding excluded)."""
        ty, tx = self._axis_taps()
        per_pos = (ty >= 0).sum(1)[:, None] * (tx >= 0).sum(1)[None, :]
        return int(per_pos.sum()) * self.c_out * (self.c_in // self.groups)

    def with_parameters(self, synapse_weights=None, bias=None, activation=None) -> "Conv2d":
        b = self.b
        if bias is not None:
            bias = np.asarray(bias)
            if bias.size == self.n_out and bias.size != self.c_out:
                per = bias.reshape(self.c_out, -1)
                if not np.all(per == per[:, :1]):
                    raise ValidationError("A Conv2d bias is one value per output channel; the "
                                          "per-neuron bias given differs across positions.")
                bias = per[:, 0]
            b = bias
        return Conv2d(self.K if synapse_weights is None else np.asarray(synapse_weights),
                      b, self.in_shape, self.stride, self.padding, self.dilation, self.groups,
                      self.activation if activation is None else make_activation(activation))

    # --- mapping --------------------------------------------------------------------------
    @property
    def fan_in(self) -> int:
        kh, kw = self.kernel_size
        return (self.c_in // self.groups) * kh * kw

    def input_span(self, out_start: int, out_stop: int) -> tuple[int, int]:
        i, j, _ = self.connections(np.arange(out_start, out_stop))
        return (int(j.min()), int(j.max()) + 1) if j.size else (0, 0)

    def block_synapses(self, out_start, out_stop, in_start, in_stop) -> int:
        _, j, _ = self.connections(np.arange(out_start, out_stop))
        return int(np.count_nonzero((j >= in_start) & (j < in_stop)))

    # --- theory ---------------------------------------------------------------------------
    def operator_norm(self) -> float:
        """``||A||_2``: from the SVD of :meth:`dense_matrix` when ``A`` has at most 2^22
        entries, otherwise by Lanczos iteration on ``A^T A`` (ARPACK's ``svds``, the Krylov
        form of power iteration) with :meth:`linear` and :meth:`vjp`, never forming ``A``
        (tests compare the two)."""
        # Cached per kernel and settings (a kernel changed in place gets a new norm).
        key = ("norm", self._settings_key(), hash(np.ascontiguousarray(self.K).tobytes()))
        cache = self.__dict__.setdefault("_norm_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = (super().operator_norm() if self.n_in * self.n_out <= 1 << 22
                          else self.iterative_norm())
        return cache[key]

    def _settings_key(self) -> tuple:
        return (tuple(self.in_shape), tuple(self.K.shape), tuple(self.stride),
                tuple(self.padding), tuple(self.dilation), int(self.groups))

    def iterative_norm(self, tol: float = 1e-10) -> float:
        """``||A||_2`` by ARPACK Lanczos iteration (``scipy.sparse.linalg.svds``) on the
        convolution and its transpose; converges to the largest singular value to ``tol``."""
        from scipy.sparse.linalg import LinearOperator, svds

        zero = Conv2d(self.K.astype(np.float64), np.zeros(self.c_out), self.in_shape,
                      self.stride, self.padding, self.dilation, self.groups)
        op = LinearOperator(
            (self.n_out, self.n_in), dtype=np.float64,
            matvec=lambda v: zero.linear(np.asarray(v, np.float64).reshape(1, -1))[0],
            rmatvec=lambda u: zero.vjp(np.asarray(u, np.float64).reshape(1, -1))[0])
        s = svds(op, k=1, tol=tol, return_singular_vectors=False, random_state=0)
        return float(s.max())

    def column_norms(self) -> np.ndarray:
        sq = self.with_parameters(synapse_weights=self.K.astype(np.float64) ** 2,
                                  bias=np.zeros(self.c_out))
        return np.sqrt(np.maximum(sq.vjp(np.ones((1, self.n_out)))[0], 0.0))

    def incoming_mass(self) -> np.ndarray:
        ab = self.with_parameters(synapse_weights=np.abs(self.K.astype(np.float64)),
                                  bias=np.zeros(self.c_out))
        return ab.linear(np.ones((1, self.n_in)))[0]

    # --- files ----------------------------------------------------------------------------
    def arrays(self) -> dict:
        return {"K": self.K, "b": self.b}

    def attrs(self) -> dict:
        return {"in_shape": list(map(int, self.in_shape)), "stride": list(self.stride),
                "padding": list(self.padding), "dilation": list(self.dilation),
                "groups": int(self.groups)}

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict, activation: Activation) -> "Conv2d":
        if not isinstance(attrs, dict) or "in_shape" not in attrs:
            raise ShapeError(f"The settings of a conv2d layer must give its 'in_shape' "
                             f"(C_in, H, W). Got {attrs!r} instead.")
        try:
            return cls(np.asarray(arrays["K"]), np.asarray(arrays["b"]),
                       tuple(int(v) for v in attrs["in_shape"]),
                       tuple(int(v) for v in attrs.get("stride", (1, 1))),
                       tuple(int(v) for v in attrs.get("padding", (0, 0, 0, 0))),
                       tuple(int(v) for v in attrs.get("dilation", (1, 1))),
                       int(attrs.get("groups", 1)), activation)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ShapeError(f"Malformed conv2d settings {attrs!r:.200}: {exc}") from None

    def cast(self, dtype, index: int) -> "Conv2d":
        where = f"layer {index} (conv2d)"
        K = np.array(real_array(self.K, f"kernel of {where}"), dtype=dtype, copy=True, order="C")
        b = np.array(real_array(self.b, f"bias of {where}"), dtype=dtype, copy=True).reshape(-1)
        if K.ndim != 4:
            raise ShapeError(f"The kernel of {where} must be 4-D (C_out, C_in/groups, kh, kw). "
                             f"Got shape {K.shape} instead.")
        stride = _pair(self.stride, "stride", where)
        dilation = _pair(self.dilation, "dilation", where)
        try:
            in_shape = tuple(int(v) for v in self.in_shape)
            padding = tuple(int(v) for v in self.padding)
            groups = int(self.groups)
        except (TypeError, ValueError):
            raise ShapeError(f"Malformed settings of {where}: in_shape {self.in_shape!r}, "
                             f"padding {self.padding!r}, groups {self.groups!r}.") from None
        if len(in_shape) != 3 or min(in_shape) < 1:
            raise ShapeError(f"The in_shape of {where} must be (C_in, H, W) of positive ints. "
                             f"Got {self.in_shape!r} instead.")
        if len(padding) != 4 or min(padding) < 0:
            raise ShapeError(f"The padding of {where} must be 4 non-negative ints (top, bottom, "
                             f"left, right). Got {self.padding!r} instead.")
        if groups < 1 or in_shape[0] % groups or K.shape[0] % groups:
            raise ShapeError(f"The groups of {where} must divide C_in = {in_shape[0]} and C_out "
                             f"= {K.shape[0]}. Got groups = {self.groups!r} instead.")
        if K.shape[1] != in_shape[0] // groups:
            raise ShapeError(
                f"The kernel of {where} has shape {K.shape}: it expects {K.shape[1] * groups} "
                f"input channels ({K.shape[1]} per group, {groups} groups) but its input has "
                f"{in_shape[0]} (in_shape {in_shape}).")
        if b.shape != (K.shape[0],):
            raise ShapeError(f"The bias of {where} must have shape ({K.shape[0]},), one per "
                             f"output channel. Got shape {b.shape} instead.")
        out = Conv2d(K, b, in_shape, stride, padding, dilation, groups,
                     make_activation(self.activation))
        ho, wo = out.out_hw
        if ho < 1 or wo < 1:
            raise ShapeError(
                f"The kernel of {where} ({K.shape[2]}x{K.shape[3]}, dilation {dilation}) does not "
                f"fit its padded input {in_shape[1] + padding[0] + padding[1]}x"
                f"{in_shape[2] + padding[2] + padding[3]}.")
        return out


# --- mapping onto cores (NengoLoihi's BlockShape: channel x row x column blocks) ---------------

def split_evenly(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into ``parts`` consecutive ranges whose sizes differ by at most one
    (the mapping's split of neurons, inputs and block axes)."""
    base, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _axis_costs(taps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every number of parts P (index P - 1) of one output axis split evenly: the largest
    part, the most distinct inputs a part reads, and the most valid taps a part sums."""
    n = taps.shape[0]
    size, inputs, taps_sum = (np.zeros(n, np.int64) for _ in range(3))
    valid = (taps >= 0).sum(1)
    for P in range(1, n + 1):
        for a, b in split_evenly(n, P):
            size[P - 1] = max(size[P - 1], b - a)
            t = taps[a:b]
            inputs[P - 1] = max(inputs[P - 1], np.unique(t[t >= 0]).size)
            taps_sum[P - 1] = max(taps_sum[P - 1], int(valid[a:b].sum()))
    return size, inputs, taps_sum


def conv_core_blocks(layer: Conv2d, neurons_per_core: int, max_fan_in: int,
                     synapses_per_core: int, share_weights: bool):
    """Split a Conv2d into the fewest channel x row x column blocks that fit a core.

    A block of ``cb`` output channels and a ``hb x wb`` spatial tile has ``cb hb wb`` neurons,
    reads ``(input channels of its groups) x (distinct input rows) x (distinct input columns)``
    axons, and stores ``cb (C_in/groups) kh kw`` synapses when the core keeps one copy of the
    kernel (``share_weights``), or one synapse per connection otherwise. Each axis is split
    evenly (sizes differ by at most one); the worst block of a split is the product of each
    axis' worst part, so every split is checked exactly. Among the splits with the fewest
    blocks, the one with the fewest spatial tiles wins (channels split first: no halo).

    Returns ``(blocks, binding)``: each block a dict (``block`` = (c0, c1, y0, y1, x0, x1),
    ``neurons``, ``axons``, ``synapses``); ``binding`` names the limit closest to full.

    Raises
    ------
    ValueError
        With the limit and both numbers when even one neuron does not fit.
    """
    ty, tx = layer._axis_taps()
    C_out = layer.c_out
    cig, cog = layer.c_in // layer.groups, C_out // layer.groups
    kh, kw = layer.kernel_size
    sy, iy, vy = _axis_costs(ty)
    sx, ix, vx = _axis_costs(tx)
    # Channels: for P parts, the largest part and the most input channels a part reads.
    sc = np.zeros(C_out, np.int64)
    ic = np.zeros(C_out, np.int64)
    for P in range(1, C_out + 1):
        for a, b in split_evenly(C_out, P):
            sc[P - 1] = max(sc[P - 1], b - a)
            ic[P - 1] = max(ic[P - 1], ((b - 1) // cog - a // cog + 1) * cig)
    # One neuron alone: the limits that no split can meet.
    one = {"neurons": 1, "axons": int(ic[-1] * iy[-1] * ix[-1]),
           "synapses": int(cig * kh * kw) if share_weights else int(cig * vy[-1] * vx[-1])}
    limits = {"neurons": neurons_per_core, "axons": max_fan_in, "synapses": synapses_per_core}
    for key, name in (("axons", "max_fan_in"), ("synapses", "synapses_per_core")):
        if one[key] > limits[key]:
            raise ValueError(f"one neuron needs {one[key]} {key} but a core holds at most "
                             f"{limits[key]} ({name})")
    best = None
    Py = np.arange(1, sy.size + 1)[:, None]
    Px = np.arange(1, sx.size + 1)[None, :]
    for Pc in range(1, C_out + 1):
        neurons = sc[Pc - 1] * sy[:, None] * sx[None, :]
        axons = ic[Pc - 1] * iy[:, None] * ix[None, :]
        syn = (np.full(neurons.shape, sc[Pc - 1] * cig * kh * kw) if share_weights
               else sc[Pc - 1] * cig * vy[:, None] * vx[None, :])
        ok = (neurons <= neurons_per_core) & (axons <= max_fan_in) & (syn <= synapses_per_core)
        if not ok.any():
            continue
        total = np.where(ok, Pc * Py * Px, np.iinfo(np.int64).max)
        # Ties: the fewest spatial tiles.
        cand = np.argwhere(total == total.min())
        k = min(cand, key=lambda t: (t[0] + 1) * (t[1] + 1))
        key = (int(total.min()), int((k[0] + 1) * (k[1] + 1)))
        if best is None or key < best[0]:
            best = (key, Pc, int(k[0]) + 1, int(k[1]) + 1)
        if Pc >= best[0][0]:  # more channel parts cannot give fewer blocks
            break
    _, Pc, PY, PX = best
    blocks = []
    ho, wo = layer.out_hw
    C, H, W = layer.in_shape
    for c0, c1 in split_evenly(C_out, Pc):
        n_ch = ((c1 - 1) // cog - c0 // cog + 1) * cig
        for y0, y1 in split_evenly(ho, PY):
            t = ty[y0:y1]
            rows = np.unique(t[t >= 0]).size
            taps_y = int((t >= 0).sum())
            for x0, x1 in split_evenly(wo, PX):
                u = tx[x0:x1]
                cols = np.unique(u[u >= 0]).size
                taps_x = int((u >= 0).sum())
                syn = ((c1 - c0) * cig * kh * kw if share_weights
                       else (c1 - c0) * cig * taps_y * taps_x)
                blocks.append({"block": (c0, c1, y0, y1, x0, x1),
                               "neurons": (c1 - c0) * (y1 - y0) * (x1 - x0),
                               "axons": n_ch * rows * cols, "synapses": int(syn)})
    worst = {key: max(b[key] for b in blocks) / limits[key] for key in limits}
    binding = max(worst, key=worst.get)
    return blocks, binding


def block_neurons(layer: Conv2d, block) -> np.ndarray:
    """Flat indices of the neurons of a channel x row x column block, in C order."""
    c0, c1, y0, y1, x0, x1 = block
    ho, wo = layer.out_hw
    co, oy, ox = np.meshgrid(np.arange(c0, c1), np.arange(y0, y1), np.arange(x0, x1),
                             indexing="ij")
    return ((co * ho + oy) * wo + ox).ravel().astype(np.int64)


def unfolded_coords(layer: Conv2d, k) -> tuple[np.ndarray, np.ndarray]:
    """Column (output channel) and row ``(ci kh kw + ky kw + kx)`` of kernel weights ``k`` in the
    layer's unfolded ``C_in kh kw x C_out`` crossbar matrix (block diagonal over groups)."""
    k = np.asarray(k, np.int64)
    kh, kw = layer.kernel_size
    cig, cog = layer.c_in // layer.groups, layer.c_out // layer.groups
    co, rest = np.divmod(k, cig * kh * kw)
    c, tap = np.divmod(rest, kh * kw)
    return co, ((co // cog) * cig + c) * kh * kw + tap


def conv_crossbar_tiles(layer: Conv2d, rows: int, cols: int):
    """Tiles of the unfolded kernel: ``ceil(C_in / floor(rows / (kh kw))) x ceil(C_out / cols)``
    (aihwkit's rule; a channel's taps never split), each reused over all output positions.
    Kernels with more than ``rows`` taps split the rows evenly instead. Tiles of a grouped
    conv that hold no weight are skipped. Returns ``(co0, co1, r0, r1, used cells)``."""
    kh, kw = layer.kernel_size
    taps = kh * kw
    C_in, C_out = layer.c_in, layer.c_out
    cig, cog = C_in // layer.groups, C_out // layer.groups
    per_tile = rows // taps
    if per_tile >= 1:
        row_parts = [(a * taps, b * taps) for a, b in split_evenly(C_in, math.ceil(C_in / per_tile))]
    else:
        n_rows = C_in * taps
        row_parts = split_evenly(n_rows, math.ceil(n_rows / rows))
    out = []
    for r0, r1 in row_parts:
        for co0, co1 in split_evenly(C_out, math.ceil(C_out / cols)):
            used = 0
            for co in range(co0, co1):
                g = co // cog
                lo, hi = max(r0, g * cig * taps), min(r1, (g + 1) * cig * taps)
                used += max(0, hi - lo)
            if used:
                out.append((co0, co1, r0, r1, used))
    return out
