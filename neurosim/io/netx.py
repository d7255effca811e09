"""lava-dl netx network files (``.net``, HDF5): read, run exactly as Lava runs them, and hand
to neurosim as a SpikingNetwork.

lava-dl (``lava.lib.dl.netx``) exports a trained SLAYER network as an HDF5 file with groups
``layer/0``, ``layer/1``, ... whose ``type`` is ``input``, ``conv``, ``dense``, ``flatten``
(and others neurosim refuses, naming the layer: ``pool``, ``convT``, ``unpool``, ``average``,
``concat``, ``dense_rec``, ``dense_comp``, and neurons other than ``LOIHI`` / ``CUBA``: sigma
delta, resonate and fire). :func:`read_netx` reads one into a :class:`NetxNetwork`, which

* :meth:`NetxNetwork.run` runs in Loihi's fixed point exactly as Lava's ``fixed_pt`` process
  models run the ``netx.hdf5.Network`` of the same file (the tests compare it with lava-dl's
  own ``tiny.net`` and its stored ground truth, spike for spike);
* :meth:`NetxNetwork.to_spiking` turns into a :class:`~neurosim.spiking.snn.SpikingNetwork`
  (floating point: the same equations without Loihi's rounding), which every neurosim runner,
  the certificate and the mapping take. :func:`load_netx` does both steps.

What the file says and what Lava makes of it (``netx.hdf5.Network`` with its defaults):

* ``input`` layer: ``C x H x W`` (or ``n``) neurons without synapses; a sample enters as their
  bias mantissas (``bias_mant``, what lava-dl's own test sets) or as a per-step input current.
  Its ``weight`` and ``bias`` are the exporter's input transform (``weight x + bias``, kept in
  :attr:`NetxNetwork.input_transform`; Lava does not apply it).
* ``conv``: a Lava ``Conv`` synapse: the kernel ``(out, in, kh, kw)`` in the file's order
  (torch's cross-correlation; netx flips it for Lava's convolution), stride, padding, dilation,
  groups; its sums are clamped to 24 signed bits. ``dense``: a Lava ``Dense`` synapse with
  netx's ``optimize_weight_bits`` (the words shifted up by ``s`` bits, ``weight_exp = -s``),
  Lava's clipping and truncation of the words, and the sums shifted by ``weight_exp`` (an
  arithmetic shift). A ``dense`` after a ``conv`` reads the image flattened channels first.
  Weights and biases are cast to integers as netx casts them (toward zero).
* neurons (``LOIHI`` or ``CUBA``): Lava's ``LIF`` with ``du = iDecay - 1``, ``dv = vDecay``,
  ``vth = vThMant``, ``bias_exp = 6``: at every step ``u <- u (4096 - du - 1) >> 12`` (toward
  zero) ``+ (a << 6)`` wrapped to 24 bits, ``v <- v (4096 - dv) >> 12 + u + (bias << 6)``
  clipped to 24 bits, a spike where ``v > vth << 6``, then ``v <- 0``. A dense layer without a
  ``neuron`` group is netx's non-leaky integrator (``iDecay 0``, ``vDecay 4096``, ``vThMant
  1 << 17``): ``v`` is the running sum of its input and it never spikes.
* time: every synapse sends at step ``t`` what it received at step ``t - 1``, so layer ``i``
  (the input layer is 0) first sees a sample's input at step ``i + 1``. With
  ``reset_interval=P`` (netx's ``Network(reset_interval=P)``, or lava-dl's test's ``Reset``
  processes) layer ``i``'s ``u`` and ``v`` are zeroed at the start of the steps
  ``t = i + 1 (mod P)`` (``t`` from 1): each sample gets ``P`` steps and every layer starts it
  from rest just as the sample's first spikes reach it.

The floating-point network (:meth:`NetxNetwork.to_spiking`) divides every membrane quantity by
``2^6``: the weights are the integer words (dense: ``2^weight_exp`` times the words Lava
multiplies), a layer's bias is its bias mantissa, its threshold ``vThMant``; ``dv`` becomes
``LIF(tau = 4096 / dv, r = tau)`` (``IF`` for ``dv = 0``: ``v <- (1 - dv/4096) v + I``), a
current decay (``du + 1 < 4096``) a ``CubaLIF`` whose bias enters the membrane directly (its
``v_leak``); the input layer's neurons become the network's input neurons (``encoding=
"neuron"``: the sample is their bias). Because Lava's reset staggering makes every layer start
a sample when its input arrives, the floating-point network needs no delays: its step ``t`` is
Lava's step ``t + i`` at layer ``i``. It differs from the fixed-point run by the rounding of the
decays (and Lava fires at ``v > vth``, neurosim at ``v >= threshold``); how much is measured in
the tests and docs/spiking.md.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurosim.errors import (FileFormatError, NeurosimFileNotFoundError, NeurosimWarning,
                             UnsupportedLayerError, ValidationError)
from neurosim.io.guard import check_nbytes, read_dataset, reading
from neurosim.layers import Conv2d, Dense, Flatten
from neurosim.network import Network
from neurosim.spiking.neurons import IF, LIF, CubaLIF
from neurosim.spiking.snn import SpikingNetwork

__all__ = ["read_netx", "load_netx", "NetxNetwork", "NetxLayer", "NetxRun", "NETX_READ"]

#: The layer types the reader takes.
NETX_READ = ("input", "conv", "dense", "flatten")
_REFUSED = ("pool", "convT", "unpool", "average", "concat", "dense_rec", "dense_comp")
_NEURONS = ("LOIHI", "CUBA")
#: netx's neuron of a dense layer without a ``neuron`` group: a non-leaky integrator.
_INTEGRATOR = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17}
_BIAS_EXP = 6          # netx's bias_exp
_MAX_UV = 2 ** 23      # Lava's 24-bit u and v


@dataclass(frozen=True)
class NetxLayer:
    """One layer of a netx file, as Lava runs it (integers).

    ``kind`` is ``"input"``, ``"conv"`` or ``"dense"``; ``shape`` the layer's neurons in
    neurosim's order (``(C, H, W)`` or ``(n,)``); ``synapse`` the neurosim layer (Conv2d or
    Dense, zero bias) whose weights are the integer words Lava multiplies (None for the
    input); ``weight_exp`` the shift of a dense layer's sums; ``bias`` the per-neuron bias
    mantissa (int64, ``prod(shape)``); ``du``, ``dv``, ``vth`` Lava's LIF parameters;
    ``integrator`` True for a dense layer without a neuron group (netx's default integrator).
    """

    name: str
    kind: str
    shape: tuple
    synapse: object
    weight_exp: int
    bias: np.ndarray
    du: int
    dv: int
    vth: int
    integrator: bool = False

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class NetxRun:
    """What :meth:`NetxNetwork.run` returns: per layer (the input layer first), the spikes
    ``(steps, n_samples, n)`` (bool) and, for the layers asked for, ``u`` and ``v`` after each
    step (int64, Lava's units)."""

    spikes: list
    u: dict = field(default_factory=dict)
    v: dict = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        """The output layer's spikes ``(steps, n_samples, n_out)``."""
        return self.spikes[-1]


class NetxNetwork:
    """A lava-dl netx network (see the module docstring); made by :func:`read_netx`."""

    def __init__(self, layers, input_transform, source: str, t_sample=None):
        self.layers = list(layers)
        self.input_transform = dict(input_transform)
        self.source = source
        self.t_sample = t_sample

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        parts = ", ".join(f"{l.kind}{list(l.shape)}" for l in self.layers)
        return f"<NetxNetwork {self.source}: {parts}>"

    @property
    def input_shape(self) -> tuple:
        return self.layers[0].shape

    # --- the fixed-point run -----------------------------------------------------------------
    def run(self, bias=None, current=None, steps: int = None, reset_interval: int = None,
            record_state: "tuple | str" = ()) -> NetxRun:
        """Run ``n`` samples in Lava's fixed point (see the module docstring).

        Parameters
        ----------
        bias : array (n, *input_shape) or input_shape, optional
            The input layer's bias mantissas (Lava's ``in_layer.neuron.bias_mant``, which
            Lava orders ``(W, H, C)``: ``bias_mant.transpose(2, 1, 0)`` is this order);
            integers, |bias| < 2^12. Held for every step.
        current : array (steps, n, *input_shape), optional
            A per-step input to the input layer's neurons (Lava's ``in_layer.inp``), integers.
        steps : int
            Time steps (needed with ``bias`` alone).
        reset_interval : int, optional
            netx's ``reset_interval`` (None: no resets).
        record_state : "all" or layer indices
            Layers whose ``u`` and ``v`` to return after every step.
        """
        shape = self.input_shape
        if bias is None and current is None:
            raise ValidationError("NetxNetwork.run needs the input: bias (the input layer's "
                                  "bias mantissas) or current (per step).")
        b0 = None
        if bias is not None:
            b0 = _integers(bias, "NetxNetwork.run: bias")
            if b0.shape == shape:
                b0 = b0[None]
            if b0.shape[1:] != shape:
                raise ValidationError(f"NetxNetwork.run: bias must have shape (n, *{shape}) or "
                                      f"{shape}; got {b0.shape}.")
            if np.abs(b0).max(initial=0) > 4095:
                raise ValidationError("NetxNetwork.run: bias mantissas are 13-bit on Loihi "
                                      f"(|bias| <= 4095); got up to {int(np.abs(b0).max())}.")
            b0 = b0.reshape(b0.shape[0], -1)
        c0 = None
        if current is not None:
            c0 = _integers(current, "NetxNetwork.run: current")
            if c0.ndim < 2 or c0.shape[2:] != shape:
                raise ValidationError(f"NetxNetwork.run: current must have shape "
                                      f"(steps, n, *{shape}); got {c0.shape}.")
            if steps is not None and steps != c0.shape[0]:
                raise ValidationError(f"NetxNetwork.run: steps={steps} but current has "
                                      f"{c0.shape[0]} steps.")
            steps = c0.shape[0]
            c0 = c0.reshape(c0.shape[0], c0.shape[1], -1)
            if b0 is not None and b0.shape[0] != c0.shape[1]:
                raise ValidationError("NetxNetwork.run: bias and current hold different "
                                      f"numbers of samples ({b0.shape[0]}, {c0.shape[1]}).")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValidationError(f"NetxNetwork.run: steps must be a positive integer; got "
                                  f"{steps!r}.")
        if reset_interval is not None and (isinstance(reset_interval, bool) or not isinstance(
                reset_interval, (int, np.integer)) or reset_interval < 1):
            raise ValidationError("NetxNetwork.run: reset_interval must be a positive integer "
                                  f"or None; got {reset_interval!r}.")
        n = (b0 if b0 is not None else c0[0]).shape[0]
        record = (range(len(self.layers)) if record_state == "all"
                  else [int(i) for i in record_state])
        u = [np.zeros((n, lay.n), np.int64) for lay in self.layers]
        v = [np.zeros((n, lay.n), np.int64) for lay in self.layers]
        buf = [np.zeros((n, lay.n), np.int64) for lay in self.layers]  # synapse outputs
        eff = []
        for i, lay in enumerate(self.layers):
            base = np.left_shift(lay.bias, _BIAS_EXP)
            eff.append(np.left_shift(b0, _BIAS_EXP) + base if i == 0 and b0 is not None
                       else np.broadcast_to(base, (n, lay.n)))
        spikes = [np.zeros((steps, n, lay.n), bool) for lay in self.layers]
        out_u = {i: np.zeros((steps, n, self.layers[i].n), np.int64) for i in record}
        out_v = {i: np.zeros((steps, n, self.layers[i].n), np.int64) for i in record}
        for t in range(1, steps + 1):
            for i, lay in enumerate(self.layers):
                if i == 0:
                    a = c0[t - 1] if c0 is not None else 0
                else:
                    a = buf[i]  # what the synapse received at step t - 1
                    buf[i] = _synapse(lay, spikes[i - 1][t - 1])
                if reset_interval is not None and t % reset_interval == (i + 1) % reset_interval:
                    u[i][:] = 0
                    v[i][:] = 0
                u[i] = _wrap(_decay(u[i], lay.du + 1) + np.left_shift(np.asarray(a, np.int64), 6))
                v[i] = np.clip(_decay(v[i], lay.dv) + u[i] + eff[i], -_MAX_UV + 1, _MAX_UV - 1)
                s = v[i] > np.left_shift(np.int64(lay.vth), 6)
                v[i] = np.where(s, 0, v[i])
                spikes[i][t - 1] = s
                if i in out_u:
                    out_u[i][t - 1] = u[i]
                    out_v[i][t - 1] = v[i]
        return NetxRun(spikes, out_u, out_v)

    # --- the floating-point network ------------------------------------------------------------
    def to_spiking(self, T: int = None, dtype=np.float64):
        """A :class:`~neurosim.spiking.snn.SpikingNetwork` of the same network in floating
        point (see the module docstring); ``T`` defaults to the file's ``simulation/tSample``
        (else 32). Its input ``X`` is the input layer's bias mantissas, flattened (C, H, W)."""
        T = T if T is not None else (self.t_sample or 32)
        dtype = np.dtype(dtype)

        def model(lay):
            """(neuron model, float bias for the layer's current)."""
            b = lay.bias.astype(np.float64)
            keep_u = 4096 - (lay.du + 1)
            if not 0 <= lay.dv <= 4096 or not 0 <= keep_u <= 4096:
                raise UnsupportedLayerError(
                    f"{self.source} {lay.name}: du={lay.du}, dv={lay.dv} outside Loihi's "
                    "decays (0..4095, 0..4096).")
            vth = float(lay.vth)
            if keep_u == 0:  # a memoryless current
                if lay.dv == 0:
                    return IF(threshold=vth, reset="value", r=1.0), b
                tau = 4096.0 / lay.dv
                return LIF(threshold=vth, reset="value", tau=tau, r=tau), b
            if lay.dv == 0:
                raise UnsupportedLayerError(
                    f"{self.source} {lay.name}: a current decay (du={lay.du}) with dv=0 has no "
                    "floating-point CubaLIF (its membrane must leak); run it with "
                    "NetxNetwork.run.")
            km, ks = lay.dv / 4096.0, (lay.du + 1) / 4096.0
            return CubaLIF(threshold=vth, reset="value", tau_syn=1 / ks, tau_mem=1 / km,
                           r=1 / km, w_in=1 / ks, v_leak=b / km), np.zeros_like(b)

        items, neurons = [], []
        shape = self.input_shape
        for lay in self.layers[1:]:
            syn = lay.synapse
            if isinstance(syn, Dense) and len(shape) == 3:
                items.append(Flatten().bind(shape))
            if lay.integrator:
                if lay is not self.layers[-1]:
                    raise UnsupportedLayerError(f"{self.source} {lay.name}: an integrator layer "
                                                "(no neuron group) inside the network.")
                neurons.append(None)
                bias = lay.bias.astype(np.float64)
            else:
                m, bias = model(lay)
                neurons.append(m)
            scale = 2.0 ** lay.weight_exp
            items.append(syn.with_parameters(
                synapse_weights=(np.asarray(syn.synapse_weights, np.float64) * scale).astype(dtype),
                bias=bias.reshape(np.asarray(syn.bias).shape).astype(dtype)))
            shape = lay.shape
        if not items:
            raise UnsupportedLayerError(f"{self.source} holds no conv or dense layer.")
        input_neuron, _ = model(self.layers[0])
        if isinstance(input_neuron, CubaLIF):
            raise UnsupportedLayerError(
                f"{self.source} {self.layers[0].name}: input neurons with a current decay "
                f"(du={self.layers[0].du}): the sample enters as their bias, which the "
                "floating-point input neurons (IF, LIF) take; run it with NetxNetwork.run.")
        network = Network(items, input_shape=self.input_shape,
                          metadata={"source": self.source, "format": "netx"})
        readout = "membrane" if neurons[-1] is None else "count"
        return SpikingNetwork(network, neurons, T=int(T), dt=1.0, encoding="neuron",
                              readout=readout, input_neuron=input_neuron)


def _integers(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and np.all(np.isfinite(arr))
                                             and np.all(arr == np.rint(arr))):
        raise ValidationError(f"{name} must hold integers (Loihi's fixed point); got "
                              f"{arr.dtype} values" + (" that are not whole numbers."
                                                       if arr.dtype.kind == "f" else "."))
    return arr.astype(np.int64)


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    """Lava's decay ``x (4096 - d) >> 12``, toward zero."""
    y = x * (4096 - d)
    return np.sign(y) * np.right_shift(np.abs(y), 12)


def _wrap(x: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of the current ``u``."""
    x = np.where(x > _MAX_UV, x - 2 * _MAX_UV, x)
    return np.where(x <= -_MAX_UV, x + 2 * _MAX_UV, x)


def _synapse(lay: NetxLayer, s: np.ndarray) -> np.ndarray:
    """A synapse's integer output for binary input spikes ``s`` (n, n_in)."""
    acc = np.rint(lay.synapse.linear(s.astype(np.float64))).astype(np.int64)
    if lay.kind == "conv":
        return np.clip(acc, -(2 ** 23), 2 ** 23 - 1)  # Lava's signed_clamp(bits=24)
    e = lay.weight_exp
    return np.left_shift(acc, e) if e > 0 else np.right_shift(acc, -e)


# --- reading -------------------------------------------------------------------------------

def load_netx(path, *, T: int = None, dtype=np.float64):
    """Read a netx file as a floating-point SpikingNetwork (``read_netx(path).to_spiking(T)``)."""
    return read_netx(path).to_spiking(T, dtype=dtype)


def read_netx(path) -> NetxNetwork:
    """Read a lava-dl netx HDF5 file (``.net``) into a :class:`NetxNetwork`."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise NeurosimFileNotFoundError(f"netx file {str(path)!r} does not exist.")
    if path.is_dir():
        raise FileFormatError(f"{str(path)!r} is a folder; expected a lava-dl netx file (.net).")
    source = str(path)
    with reading(source, "lava-dl netx network file (HDF5)"):
        check_nbytes(path.stat().st_size, source, "the netx file")
        with h5py.File(source, "r") as f:
            return _Reader(f, source).build()


class _Reader:
    def __init__(self, f, source):
        self.f, self.source = f, source

    def where(self, key: str) -> str:
        return f"layer/{key}"

    def _get(self, group, key, where, required=True, kinds="biuf"):
        if key not in group:
            if required:
                raise FileFormatError(f"{where} has no {key!r}.")
            return None
        return read_dataset(group[key], self.source, f"{where}/{key}", kinds=kinds)

    def _text(self, group, key, where) -> str:
        value = np.asarray(self._get(group, key, where, kinds="SUO"))
        if value.size != 1:
            raise FileFormatError(f"{where}/{key} must be one text value; got {value.size}.")
        value = value.reshape(-1)[0]
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            raise FileFormatError(f"{where}/{key} must be text; got {value!r}.")
        return value

    def _int(self, group, key, where, default=None) -> int:
        value = self._get(group, key, where, required=default is None)
        if value is None:
            return int(default)
        arr = np.asarray(value).reshape(-1)
        if arr.size != 1 or not np.isfinite(arr[0]) or arr[0] != np.rint(arr[0]):
            raise FileFormatError(f"{where}/{key} must be one integer; got {value!r}.")
        return int(arr[0])

    def _pair(self, group, key, where, default) -> tuple:
        value = self._get(group, key, where, required=False)
        if value is None:
            return (default, default)
        arr = np.asarray(value).reshape(-1)
        if arr.size == 1:
            arr = np.repeat(arr, 2)
        if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)) \
                or np.any(arr < 0):
            raise FileFormatError(f"{where}/{key} must be one or two non-negative integers; got "
                                  f"{value!r}.")
        return tuple(int(a) for a in arr)

    def _array(self, group, key, where) -> np.ndarray:
        """An integer array as netx reads it: ``astype(int)`` (toward zero)."""
        arr = np.asarray(self._get(group, key, where), dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise FileFormatError(f"{where}/{key} holds NaN or infinite values.")
        if np.abs(arr).max(initial=0) >= 2 ** 31:
            raise FileFormatError(f"{where}/{key} holds values beyond int32 "
                                  f"(up to {float(np.abs(arr).max()):g}).")
        if np.any(arr != np.trunc(arr)):
            warnings.warn(f"{where}/{key} holds non-integer values; netx (and neurosim) "
                          "truncate them toward zero.", NeurosimWarning, stacklevel=4)
        return np.trunc(arr).astype(np.int64)

    def _shape(self, group, where) -> tuple:
        value = np.asarray(self._get(group, "shape", where)).reshape(-1)
        if value.size not in (1, 3) or np.any(value != np.rint(value)) or np.any(value < 1):
            raise FileFormatError(f"{where}/shape must be (C, H, W) or (n,) of positive "
                                  f"integers; got {value!r}.")
        return tuple(int(v) for v in value)

    def _neuron(self, group, where, default=None) -> dict:
        if "neuron" not in group:
            if default is None:
                raise FileFormatError(f"{where} has no neuron group.")
            return dict(default)
        ng = group["neuron"]
        w = f"{where}/neuron"
        kind = self._text(ng, "type", w)
        if kind not in _NEURONS:
            raise UnsupportedLayerError(
                f"{w}: {kind} neurons are not supported; neurosim reads "
                f"{' and '.join(_NEURONS)} (Lava's LIF) neurons.")
        out = {"iDecay": self._int(ng, "iDecay", w), "vDecay": self._int(ng, "vDecay", w),
               "vThMant": self._int(ng, "vThMant", w)}
        if not 0 <= out["iDecay"] <= 4096 or not 0 <= out["vDecay"] <= 4096:
            raise FileFormatError(f"{w}: iDecay {out['iDecay']} and vDecay {out['vDecay']} "
                                  "must lie in 0..4096.")
        if not 0 < out["vThMant"] < 2 ** 17 + 1:
            raise FileFormatError(f"{w}: vThMant {out['vThMant']} must lie in 1..2^17.")
        return out

    def _bias(self, group, where, shape) -> np.ndarray:
        n = int(np.prod(shape))
        if "bias" not in group:
            return np.zeros(n, np.int64)
        b = self._array(group, "bias", where).reshape(-1)
        if b.size == n:
            out = b
        elif len(shape) == 3 and b.size == shape[0]:
            out = np.repeat(b, shape[1] * shape[2])  # per channel
        elif b.size == 1:
            out = np.repeat(b, n)
        else:
            raise FileFormatError(f"{where}/bias has {b.size} values; the layer has {n} neurons "
                                  f"(shape {shape}): give one, one per channel or one per neuron.")
        if np.abs(out).max(initial=0) > 4095:
            raise FileFormatError(f"{where}/bias: Loihi's bias mantissa is 13-bit (|bias| <= "
                                  f"4095); got up to {int(np.abs(out).max())}.")
        return out

    def build(self) -> NetxNetwork:
        f = self.f
        if "layer" not in f:
            raise FileFormatError(f"{self.source} has no 'layer' group; not a netx network file.")
        group = f["layer"]
        keys = sorted(group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0))
        if any(not k.isdigit() for k in keys) or [int(k) for k in keys] != list(range(len(keys))):
            raise FileFormatError(f"{self.source}: the layers must be layer/0, layer/1, ...; got "
                                  f"{', '.join(keys[:8])}.")
        t_sample = None
        if "simulation" in f and "tSample" in f["simulation"]:
            t_sample = self._int(f["simulation"], "tSample", "simulation")
            t_sample = t_sample if t_sample > 0 else None
        layers, transform, shape = [], {"weight": 64, "bias": 0}, None
        for k in keys:
            g = group[k]
            where = self.where(k)
            kind = self._text(g, "type", where)
            if kind in _REFUSED or kind not in NETX_READ:
                raise UnsupportedLayerError(
                    f"{where} is a {kind!r} layer, which neurosim does not read (nor does netx "
                    f"run pool, convT, unpool, average or concat); neurosim reads "
                    f"{', '.join(NETX_READ)}.")
            if kind == "flatten":
                continue
            if kind == "input":
                if layers:
                    raise UnsupportedLayerError(f"{where}: an input layer after the first.")
                shape = self._shape(g, where)
                if "neuron" not in g:
                    raise UnsupportedLayerError(
                        f"{where}: an input layer without neurons (netx then reads the input "
                        "shape only); neurosim reads a first layer of input neurons.")
                nr = self._neuron(g, where)
                if "weight" in g:
                    transform["weight"] = int(self._array(g, "weight", where).reshape(-1)[0])
                if "bias" in g:
                    transform["bias"] = int(self._array(g, "bias", where).reshape(-1)[0])
                layers.append(NetxLayer(f"layer/{k}", "input", shape, None, 0,
                                        np.zeros(int(np.prod(shape)), np.int64),
                                        nr["iDecay"] - 1, nr["vDecay"], nr["vThMant"]))
                continue
            if not layers:
                raise UnsupportedLayerError(f"{where}: the file must start with an input layer "
                                            "of neurons.")
            for extra in ("delay", "weight_rec"):
                if extra in g:
                    raise UnsupportedLayerError(
                        f"{where} has {extra!r} (synaptic delays / recurrence), which neurosim "
                        "does not model.")
            if kind == "conv":
                layers.append(self._conv(g, where, k, shape))
            else:
                layers.append(self._dense(g, where, k, shape))
            shape = layers[-1].shape
        if len(layers) < 2:
            raise UnsupportedLayerError(f"{self.source} holds no conv or dense layer after its "
                                        "input layer.")
        for lay in layers[:-1]:
            if lay.integrator:
                raise UnsupportedLayerError(f"{self.source} {lay.name}: a dense layer without "
                                            "neurons before the last layer.")
        return NetxNetwork(layers, transform, self.source, t_sample)

    def _conv(self, g, where, k, in_shape) -> NetxLayer:
        if len(in_shape) != 3:
            raise UnsupportedLayerError(f"{where}: a conv layer after a flat layer "
                                        f"(input shape {in_shape}).")
        K = self._array(g, "weight", where)
        if K.ndim == 5 and K.shape[-1] == 1:
            K = K[..., 0]
        if K.ndim != 4:
            raise FileFormatError(f"{where}/weight must be (out, in, kh, kw[, 1]); got shape "
                                  f"{K.shape}.")
        groups = self._int(g, "groups", where, default=1)
        if groups < 1 or in_shape[0] % groups or K.shape[0] % groups or \
                K.shape[1] * groups != in_shape[0]:
            raise FileFormatError(f"{where}: weight {K.shape} with groups={groups} does not fit "
                                  f"an input of {in_shape[0]} channels.")
        stride = self._pair(g, "stride", where, 1)
        pad = self._pair(g, "padding", where, 0)
        dil = self._pair(g, "dilation", where, 1)
        if min(stride) < 1 or min(dil) < 1:
            raise FileFormatError(f"{where}: stride and dilation must be positive.")
        try:
            syn = Conv2d.build(K.astype(np.float64), np.zeros(K.shape[0]), in_shape=in_shape,
                               stride=stride, padding=pad, dilation=dil, groups=groups)
        except ValidationError as exc:
            raise FileFormatError(f"{where}: {exc}") from None
        shape = self._shape(g, where)
        if tuple(syn.out_shape) != shape:
            raise FileFormatError(f"{where}: its shape {shape} is not what its convolution makes "
                                  f"of {in_shape} ({tuple(syn.out_shape)}).")
        nr = self._neuron(g, where)
        return NetxLayer(f"layer/{k}", "conv", shape, syn, 0, self._bias(g, where, shape),
                         nr["iDecay"] - 1, nr["vDecay"], nr["vThMant"])

    def _dense(self, g, where, k, in_shape) -> NetxLayer:
        shape = self._shape(g, where)
        n = int(np.prod(shape))
        n_in = int(np.prod(in_shape))
        W = self._array(g, "weight", where)
        if W.ndim == 1 and W.size == n * n_in:
            W = W.reshape(n, n_in)
        if W.shape != (n, n_in):
            raise FileFormatError(f"{where}/weight has shape {W.shape}; the layer maps {n_in} "
                                  f"inputs to {n} neurons ({n}, {n_in}).")
        words, exp = _dense_words(W)
        integrator = "neuron" not in g
        nr = self._neuron(g, where, default=_INTEGRATOR)
        syn = Dense(words.astype(np.float64), np.zeros(n))
        return NetxLayer(f"layer/{k}", "dense", (n,), syn, exp, self._bias(g, where, (n,)),
                         nr["iDecay"] - 1, nr["vDecay"], nr["vThMant"], integrator)


def _dense_words(W: np.ndarray) -> tuple:
    """What Lava's Dense multiplies and its ``weight_exp``: netx's ``optimize_weight_bits``
    (clip to [-256, 254] where it must, scale up by ``2^s``, ``weight_exp = -s``), then Lava's
    ``clip_weights`` (8 bits) and ``truncate_weights`` (``num_weight_bits``)."""
    W = np.asarray(W, np.int64)
    hi, lo = int(W.max()), int(W.min())
    if hi > 254 and lo < 0 or lo < -256 and hi > 0:
        W = np.clip(W, -256, 254)
        hi, lo = int(W.max()), int(W.min())
    if hi == 0 and lo == 0:
        return W, 0
    if hi < 0:
        signed, scale = 0, -256 / lo
    elif lo >= 0:
        signed, scale = 0, 255 / hi
    else:
        signed, scale = 1, min(127 / hi, -128 / lo)
    scale_bits = int(math.floor(math.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(W % (2 ** n) != 0):
        n -= 1
    n -= signed
    num_bits = 8 - scale_bits - n
    words = np.left_shift(W, scale_bits) if scale_bits >= 0 else np.right_shift(W, -scale_bits)
    # Lava's PyDenseModelBitAcc: determine_sign_mode, clip_weights(8), truncate_weights.
    lava_mode = ("excitatory" if words.min() >= 0 else "inhibitory" if words.max() <= 0
                 else "mixed")
    mixed = int(lava_mode == "mixed")
    x = -words if lava_mode == "inhibitory" else words
    x = np.clip(x, -(2 ** 8) * mixed, 2 ** 8 - 1)
    cut = 8 - num_bits + mixed
    if cut > 0:
        x = np.left_shift(np.right_shift(x, cut), cut)
    words = -x if lava_mode == "inhibitory" else x
    return words, -scale_bits
