"""How a chip stores weights as integers: per-layer quantization, weight words, and the
integer model of a Loihi-like chip.

Quantization (per layer): ``W_l ~= scale_l * Q_l`` with ``Q_l`` integer. With a ``weight_bits``
wide two's complement word, ``Q_l`` lies in ``[-2^(b-1), 2^(b-1) - 1]``. Profiles with
``mixed_sign_drop_lsb`` (Loihi) follow Lava: a layer whose weights have both signs stores the
word shifted left by one (the lowest bit dropped), ``Q_l in {-2^b, ..., 2^b - 2}`` in steps of 2,
while a single-sign layer stores a ``b``-bit magnitude, ``|Q_l| <= 2^b - 1``. With
``power_of_two_scale`` the scale is a power of two (Loihi's weight exponent). Biases are not
quantized. ``Q_l`` has the shape of the layer's stored weights (``W`` for Dense layers).

The integer model (:func:`integer_forward`) is the fixed-point arithmetic Lava's ``fixed_pt``
runs on a loihi2-like mapping; the Lava backend is tested to equal it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurosim.backends.numpy import faults_as_parameters
from neurosim.errors import BackendUnsupportedError, ValidationError
from neurosim.kernels.codes import REC_TILE, REC_WEIGHT

__all__ = ["LayerQuantization", "quantize_layer", "flip_words", "IntegerLayers",
           "integer_layers", "integer_forward", "integer_fault_values", "quantize_input",
           "draw_of_input", "DEFAULT_FRAC_BITS", "IntegerModelError"]

#: Fractional bits of the integer activations (value = integer * 2**-frac_bits).
DEFAULT_FRAC_BITS = 8


class IntegerModelError(BackendUnsupportedError):
    """The integer model cannot run this mapping, fault or input (a scale that is not a
    power of two, a weight value that is no word of its layer, a failed crossbar tile, an
    int32 overflow); the message says which."""


@dataclass(frozen=True)
class LayerQuantization:
    """How one layer's weights are stored as integers.

    Attributes
    ----------
    Q : ndarray of int32, the shape of the layer's stored weights ((n_out, n_in) for Dense)
        Integer weights as the chip multiplies with them.
    scale : float
        Float value of one integer unit: ``W ~= scale * Q``.
    sign_mode : str
        ``mixed``, ``excitatory`` or ``inhibitory``.
    step : int
        Spacing of representable integers (2 for Loihi mixed-sign layers).
    q_min, q_max : int
        Representable range of ``Q``.
    """

    Q: np.ndarray
    scale: float
    sign_mode: str
    step: int
    q_min: int
    q_max: int

    @property
    def max_magnitude(self) -> int:
        """Largest representable ``|Q|`` (either sign)."""
        return max(abs(self.q_min), abs(self.q_max))


def quantize_layer(W: np.ndarray, profile) -> LayerQuantization:
    """Quantize one layer's stored weights to the profile's integer weights (see the module
    docstring); ``profile`` is a :class:`~neurosim.hardware.HardwareProfile`."""
    W = np.asarray(W, dtype=np.float64)
    w_max, w_min = float(W.max(initial=0.0)), float(W.min(initial=0.0))
    if w_min < 0 < w_max:
        sign_mode = "mixed"
    elif w_min < 0:
        sign_mode = "inhibitory"
    else:
        sign_mode = "excitatory"
    b = profile.weight_bits
    if profile.mixed_sign_drop_lsb:
        if sign_mode == "mixed":
            step, q_min, q_max = 2, -(2**b), 2**b - 2
        else:
            step, q_min, q_max = 1, -(2**b - 1), 2**b - 1
    else:
        step, q_min, q_max = 1, -(2 ** (b - 1)), 2 ** (b - 1) - 1
    # Smallest scale that keeps both ends of W inside [q_min, q_max].
    candidates = [w_max / q_max if w_max > 0 else 0.0, w_min / q_min if w_min < 0 else 0.0]
    scale = max(candidates)
    if scale == 0.0:
        scale = 1.0
    elif profile.power_of_two_scale:
        scale = 2.0 ** math.ceil(math.log2(scale))
    Q = np.rint(W / (scale * step)) * step
    Q = np.clip(Q, q_min, q_max).astype(np.int32)
    return LayerQuantization(Q, float(scale), sign_mode, step, q_min, q_max)


def flip_words(Q: np.ndarray, masks: np.ndarray, bits: int, step: int, magnitude_sign: int) -> np.ndarray:
    """Integer weights after XOR-ing ``masks`` into their stored words.

    Two's complement words of ``bits`` bits hold ``Q / step`` (step 2 for Loihi mixed-sign
    layers, whose lowest bit is dropped). With ``magnitude_sign`` = +1 or -1 (Loihi single-sign
    layers: excitatory, inhibitory) the word is the unsigned magnitude ``|Q|`` and the layer's
    sign is kept; 0 means two's complement.
    """
    Q = np.asarray(Q).astype(np.int64)
    masks = np.asarray(masks, dtype=np.int64)
    if magnitude_sign:
        return magnitude_sign * ((np.abs(Q) ^ masks) & ((1 << bits) - 1))
    unsigned = ((Q // step) & ((1 << bits) - 1)) ^ masks
    signed = np.where(unsigned >= (1 << (bits - 1)), unsigned - (1 << bits), unsigned)
    return signed * step


@dataclass(frozen=True)
class IntegerLayers:
    """The fixed-point parameters of a mapping: integer weights, shifts and biases."""

    Q: list            # int64 (n_l, n_in) weight words as multiplied (Lava's weights; a conv
                       # layer's kernel unfolded)
    weight_exp: list   # int, log2 of each layer's scale
    bias: list         # int64 biases in units of 2**-frac_bits
    sign_modes: list   # neurosim sign modes ("mixed", "excitatory", "inhibitory")
    frac_bits: int


def integer_layers(mapping, frac_bits: int = DEFAULT_FRAC_BITS) -> IntegerLayers:
    """Integer weights, weight exponents and integer biases of a loihi2-like mapping.

    Raises
    ------
    IntegerModelError
        If a layer's scale is not a power of two (no weight exponent represents it).
    """
    Q, exps, bias, modes = [], [], [], []
    network = mapping.network
    for l, pre in enumerate(network.pre, start=1):
        for t in pre:
            if not (t.kind == "flatten" and t.order == "chw"):
                raise IntegerModelError(
                    f"pooling or a channels-last flatten ({t.describe()} before layer {l}): "
                    "Lava has no pooling process, and the integer model follows Lava")
    for l, (q, layer) in enumerate(zip(mapping.quantization, network.layers), start=1):
        e = math.log2(q.scale)
        if e != int(e):
            raise IntegerModelError(
                f"profiles whose weight scale is not a power of two (Loihi's weight exponent): "
                f"layer {l}'s scale {q.scale} is not one")
        # A conv layer runs as its unfolded matrix of integer words (entries 0 off the kernel).
        Q.append(np.asarray(layer.with_parameters(synapse_weights=q.Q).dense_matrix()
                            if layer.kind != "dense" else q.Q).astype(np.int64))
        exps.append(int(e))
        bias.append(np.rint(np.asarray(layer.bias, np.float64) * 2.0 ** frac_bits).astype(np.int64))
        modes.append(q.sign_mode)
    return IntegerLayers(Q, exps, bias, modes, int(frac_bits))


def _shift(a: np.ndarray, e: int) -> np.ndarray:
    """Lava Dense's weight_exp: left shift, or arithmetic right shift (floor) for e < 0."""
    return np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)


def integer_fault_values(mapping, batch):
    """``batch`` with its weight values turned into integer words of their layers, checked.

    Raises
    ------
    IntegerModelError
        For a failed crossbar tile, or a weight value that is not ``scale * Q`` with ``Q`` in
        the layer's word range (e.g. faults sampled on the float network).
    """
    if batch is None:
        return None
    if np.any(batch.kind == REC_TILE):
        raise IntegerModelError(
            "failed crossbar tiles: crossbar profiles have no Loihi fixed-point equivalent "
            "(floating_pt zeroes the tile's weight block)")
    value = batch.value.copy()
    for f in np.flatnonzero(batch.kind == REC_WEIGHT):
        q = mapping.quantization[int(batch.layer[f]) - 1]
        word = batch.value[f] / q.scale
        if word != np.rint(word) or not (q.q_min <= word <= q.q_max):
            raise IntegerModelError(
                "weight faults whose value is not an integer weight word of the layer (scale * "
                "Q with Q in [q_min, q_max]), e.g. faults sampled on the float network "
                f"(layer {int(batch.layer[f])} value {batch.value[f]!r})")
        value[f] = word
    return batch.with_values(value)


def quantize_input(X: np.ndarray, frac_bits: int) -> np.ndarray:
    """Inputs as integers in units of ``2**-frac_bits`` (round half to even)."""
    return np.rint(np.asarray(X, np.float64) * 2.0 ** frac_bits).astype(np.int64)


def draw_of_input(batch, n_inputs: int, owner: str = "integer_forward"):
    """Fault draw used by each input: one shared draw, or draw k for input k (None: no faults)."""
    if batch is None:
        return None
    if batch.n_draws == 1:
        return np.zeros(n_inputs, dtype=np.int64)
    if batch.n_draws == n_inputs:
        return np.arange(n_inputs, dtype=np.int64)
    raise ValidationError(
        f"The 'faults' batch of {owner} must have 1 draw (shared by all inputs) or one draw per "
        f"input ({n_inputs}). Got {batch.n_draws} draws instead."
    )


def integer_forward(mapping, X, faults=None, frac_bits: int = DEFAULT_FRAC_BITS,
                    return_integers: bool = False, channels_first: bool = False):
    """neurosim's integer model of a loihi2 mapping: the arithmetic Lava's fixed_pt runs.

    With ``f = frac_bits`` and ``e_l = log2(scale_l)`` (loihi2 scales are powers of two):

    * ``x_int = rint(x * 2**f)`` (round half to even);
    * ``a_l = (Q_l @ y_{l-1}) >> -e_l`` (an arithmetic shift, i.e. floor division by
      ``2**-e_l``; a left shift when ``e_l > 0``), in int32 as Lava's ``Dense``;
    * ``b_int = rint(b_l * 2**f)``; ``y_l = max(a_l + b_int, 0)`` for hidden layers,
      ``a_L + b_int`` for the output;
    * the float value of an integer is ``integer * 2**-f``.

    Faults (a FaultBatch with one draw, or one per input) are applied to ``Q`` and ``b_int`` by
    :func:`neurosim.backends.numpy.faults_as_parameters` (silent and paper crashes); weight
    values must be words of the layer (``scale * Q``).

    Returns floats ``y_L * 2**-f`` (n_inputs, n_L), or the integers with ``return_integers``.
    ``channels_first``: the rows of ``X`` are already flat in ``(C, H, W)`` order (what the
    backends hold), whatever the network's layout.

    Raises
    ------
    IntegerModelError
        If a pre-activation leaves int32 (Lava's int32 accumulator would wrap), a hidden layer
        is not ReLU, a scale is not a power of two, or a fault has no integer form.
    """
    if not hasattr(mapping, "quantization"):
        raise ValidationError("integer_forward needs a Mapping (neurosim.map_network); got a "
                              f"{type(mapping).__name__}.")
    network = mapping.quantized_network()
    for l, act in enumerate(network.activations[:-1], start=1):
        if act.name != "relu":
            raise IntegerModelError(
                f"hidden activations other than ReLU (Loihi's graded ReLU neurons): layer {l} "
                f"uses {act}")
    if channels_first and network.layout == "NHWC":  # rows already in (C, H, W) order
        C, H, W = network.input_shape
        X = np.asarray(X).reshape(-1, C, H, W).transpose(0, 2, 3, 1)
    X = network.check_input(X, owner="input data X")
    layers = integer_layers(mapping, frac_bits)
    Y0 = quantize_input(X, frac_bits)
    batch = integer_fault_values(mapping, faults)
    draws = draw_of_input(batch, X.shape[0])
    out = np.empty((X.shape[0], network.n_outputs), dtype=np.int64)
    groups = [(None, np.arange(X.shape[0]))] if batch is None else [
        (d, np.flatnonzero(draws == d)) for d in np.unique(draws)]
    L = network.n_layers
    for d, rows in groups:
        Q, bias = (faults_as_parameters(layers.Q, layers.bias, batch, int(d))
                   if batch is not None else (layers.Q, layers.bias))
        y = Y0[rows]
        for l in range(L):
            acc = y @ Q[l].T
            if np.abs(acc).max(initial=0) >= 2 ** 31:
                raise IntegerModelError(
                    "inputs whose integer pre-activations leave int32: Lava's Dense accumulates "
                    f"in int32 and would wrap around (layer {l + 1}: |Q y| reaches "
                    f"{int(np.abs(acc).max())})")
            z = _shift(acc, layers.weight_exp[l]) + bias[l]
            y = np.maximum(z, 0) if l < L - 1 else z
        out[rows] = y
    return out if return_integers else out * 2.0 ** -frac_bits
