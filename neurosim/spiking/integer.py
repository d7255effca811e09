"""neurosim's integer model of a spiking network on Loihi: what Lava's bit-accurate ``LIF`` and
``Dense`` processes (``fixed_pt``) compute, step for step.

A loihi2-like mapping of a :class:`~neurosim.spiking.snn.SpikingNetwork` whose spiking layers
are ``IF`` or ``LIF`` neurons that reset to 0 (``reset="value"``, ``v_reset = 0``; Lava's LIF
resets to 0), with one threshold (and one ``tau``) per layer, constant-current input, and a
membrane or count readout. With ``f = frac_bits``:

* the input is ``x_int = rint(x 2^f)``, sent at every step; the first ``Dense`` multiplies it
  by the words ``Q_1`` and shifts by ``e_1 = log2(scale_1)``; a later ``Dense`` multiplies
  binary spikes and shifts by ``e_l + f``: ``a_l ~ (W_l s) 2^f`` in both cases (an arithmetic
  shift: floor for right shifts; int32 accumulation, which must not overflow);
* each ``Dense`` sends at step ``t`` what it received at step ``t - 1`` (0 at the first step):
  layer ``l`` sees the input of step ``t`` at step ``t + l`` (Lava's one step per ``Dense``);
* a neuron's membrane is kept in current units (the float model's ``v / gain``, ``gain`` the
  model's ``dt r`` or ``(dt / tau) r``) times ``2^(f + 6)``: ``du = 4095`` (Lava adds 1: the
  current forgets itself every step), ``dv = rint(4096 (1 - keep))`` (0 for IF),
  ``vth = rint(threshold / gain 2^f)``, and a bias ``rint((b + v_leak / r) 2^(f + 6))``
  written as a 13-bit mantissa and a 3-bit exponent;
* Lava's LIF step: ``u <- u (4096 - du - 1) >> 12`` (toward zero) ``+ (a << 6)``, wrapped to
  24 bits; ``v <- v (4096 - dv) >> 12 + u + bias``, clipped to 24 bits; a spike where
  ``v > vth << 6``, and then ``v <- 0``;
* the run has ``T + L`` steps; the readout takes the last ``T``: the output ``Dense``'s
  ``a_L`` plus the integer bias ``rint(b_L 2^f)``, summed and divided by ``T`` (membrane), or
  the output layer's spikes counted and divided by ``T`` (count).

The float model fires at ``v >= threshold``, Lava at ``v > vth``; the integer model follows
Lava. Faults act as in :func:`neurosim.quantization.integer_forward`: weight words and crashes
(silent: the row of ``Q`` and the bias zeroed, so the neuron never spikes; paper: the row
zeroed), through :func:`neurosim.backends.numpy.faults_as_parameters`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosim.backends.numpy import faults_as_parameters
from neurosim.quantization import (DEFAULT_FRAC_BITS, IntegerModelError, draw_of_input,
                                   integer_fault_values, integer_layers, quantize_input)
from neurosim.spiking.neurons import IF, LIF

__all__ = ["IntegerSpiking", "integer_spiking", "integer_spiking_run", "bias_parts",
           "DU_MEMORYLESS"]

#: Lava's ``du`` that makes the current forget itself every step (the model adds 1: 4096).
DU_MEMORYLESS = 4095


@dataclass
class IntegerSpiking:
    """The fixed-point parameters of a spiking mapping (see the module docstring)."""

    Q: list             # int64 words per layer (Lava's Dense weights)
    weight_exp: list    # each Dense's shift
    bias: list          # int64: spiking layers' effective bias (units 2^-(f+6)); the output
                        # layer of a membrane readout: rint(b 2^f)
    dv: list            # per spiking layer (None: the membrane readout's output layer)
    vth: list
    sign_modes: list
    frac_bits: int
    T: int
    readout: str


def bias_parts(bias) -> tuple:
    """Lava's ``(bias_mant, bias_exp)`` of effective biases: the smallest exponent in 0..7
    whose mantissa fits 13 bits (|mant| <= 4095), per neuron; the effective bias is
    ``mant << exp``."""
    bias = np.asarray(bias, dtype=np.int64)
    exp = np.zeros(bias.shape, dtype=np.int64)
    mant = bias.copy()
    for e in range(8):
        big = np.abs(mant) > 4095
        if not big.any():
            break
        exp[big] = e + 1
        mant[big] = np.rint(bias[big] / 2.0 ** (e + 1)).astype(np.int64)
    if np.any(np.abs(mant) > 4095):
        raise IntegerModelError("biases beyond Loihi's 13-bit mantissa and 3-bit exponent "
                                f"(|bias| up to {int(np.abs(bias).max())} in units of the "
                                "membrane)")
    return mant, exp


def _uniform(value, name: str, l: int) -> float:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if np.any(arr != arr[0]):
        raise IntegerModelError(f"a {name} per neuron (layer {l}): Lava's LIF takes one per "
                                "layer")
    return float(arr[0])


def integer_spiking(mapping, frac_bits: int = DEFAULT_FRAC_BITS) -> IntegerSpiking:
    """The integer parameters of a spiking loihi2-like mapping (raises IntegerModelError for
    what Lava's LIF cannot represent)."""
    snn = getattr(mapping, "spiking", None)
    if snn is None:
        raise IntegerModelError("a graded mapping: the integer spiking model needs a mapped "
                                "SpikingNetwork (map_network(snn, 'loihi2'))")
    if snn.encoding != "current":
        raise IntegerModelError("Poisson input: the integer model sends constant currents")
    if snn.readout not in ("membrane", "count"):
        raise IntegerModelError(f"readout={snn.readout!r} (the integer model reads the output "
                                "current or spike counts)")
    base = integer_layers(mapping, frac_bits)
    f = int(frac_bits)
    L = len(base.Q)
    chip = mapping.chip_spiking()
    exps, bias, dvs, vths = [], [], [], []
    for l, (model, layer) in enumerate(zip(chip.neurons, chip.network.layers), start=1):
        exps.append(base.weight_exp[l - 1] + (0 if l == 1 else f))
        if model is None:
            if l < L:
                raise IntegerModelError(f"graded hidden layers in a spiking network (layer {l})")
            bias.append(base.bias[l - 1])
            dvs.append(None)
            vths.append(None)
            continue
        if type(model) not in (IF, LIF):
            raise IntegerModelError(f"{model.kind} neurons (layer {l}): Lava's LIF is IF or LIF "
                                    "(a current-based neuron needs its own input scaling)")
        if model.reset != "value" or np.any(np.asarray(model.v_reset) != 0):
            raise IntegerModelError(f"a reset other than to 0 (layer {l}: reset={model.reset!r})"
                                    ": Lava's LIF resets its membrane to 0")
        p = model.params(layer.n_out, snn.dt)
        gain = _uniform(p["gain"], "gain (dt r or dt r / tau)", l)
        if gain <= 0:
            raise IntegerModelError(f"a non-positive input gain (layer {l})")
        keep = _uniform(p["keep"], "tau", l)
        dvs.append(int(np.rint(4096 * (1 - keep))))
        vths.append(int(np.rint(_uniform(p["threshold"], "threshold", l) / gain * 2.0 ** f)))
        constant = np.asarray(layer.bias, np.float64) + p["leak"] / gain
        mant, exp = bias_parts(np.rint(constant * 2.0 ** (f + 6)).astype(np.int64))
        bias.append(np.left_shift(mant, exp))  # (what Lava's LIF adds: mant << exp)
    return IntegerSpiking(base.Q, exps, bias, dvs, vths, base.sign_modes, f, snn.T,
                          snn.readout)


def _shift(a, e: int):
    return np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)


def _decay(x, d: int):
    """Lava's decay: ``x (4096 - d)`` shifted right by 12, toward zero."""
    y = x.astype(np.int64) * (4096 - d)
    return (np.sign(y) * np.right_shift(np.abs(y), 12)).astype(np.int64)


def _run_rows(p: IntegerSpiking, Q, bias, x_int):
    """The integer readout (before the division by T) of rows ``x_int``."""
    L = len(Q)
    n = x_int.shape[0]
    steps = p.T + L
    max_uv = 2 ** 23
    abuf = [np.zeros((n, q.shape[0]), dtype=np.int64) for q in Q]
    u = [np.zeros((n, q.shape[0]), dtype=np.int64) for q in Q]
    v = [np.zeros((n, q.shape[0]), dtype=np.int64) for q in Q]
    vth = [None if t is None else np.left_shift(np.int64(t), 6) for t in p.vth]
    eff = [np.asarray(b, np.int64) for b in bias]
    out = np.zeros((n, Q[-1].shape[0]), dtype=np.int64)
    for t in range(steps):
        s = x_int
        for l in range(L):
            a_in = abuf[l]
            acc = s @ Q[l].T
            if np.abs(acc).max(initial=0) >= 2 ** 31:
                raise IntegerModelError(
                    f"inputs whose integer sums leave int32 (layer {l + 1}: Lava's Dense "
                    "accumulates in int32 and would wrap around)")
            abuf[l] = _shift(acc, p.weight_exp[l])
            if p.dv[l] is None:  # the membrane readout: the output Dense's a_out
                if t >= L:
                    out += a_in + eff[l]
                break
            cur = _decay(u[l], DU_MEMORYLESS + 1) + np.left_shift(a_in, 6)
            cur = np.where(cur > max_uv, cur - 2 * max_uv, cur)
            cur = np.where(cur <= -max_uv, cur + 2 * max_uv, cur)
            u[l] = cur
            volt = _decay(v[l], p.dv[l]) + u[l] + eff[l]
            volt = np.clip(volt, -max_uv + 1, max_uv - 1)
            fired = volt > vth[l]
            v[l] = np.where(fired, 0, volt)
            s = fired.astype(np.int64)
            if l == L - 1 and t >= L:
                out += s
    return out


def integer_spiking_run(mapping, X, faults=None, frac_bits: int = DEFAULT_FRAC_BITS,
                        return_integers: bool = False) -> np.ndarray:
    """The integer model's readout ``(n_inputs, n_L)`` (see the module docstring): floats
    (``sum / T``, times ``2^-f`` for a membrane readout), or the integer sums with
    ``return_integers``. ``faults``: a FaultBatch of one draw, or one per input."""
    p = integer_spiking(mapping, frac_bits)
    network = mapping.quantized_network()
    X = network.check_input(X, owner="input data X")
    x_int = quantize_input(X, frac_bits).astype(np.int64)
    batch = integer_fault_values(mapping, faults)
    draws = draw_of_input(batch, X.shape[0])
    groups = [(None, np.arange(X.shape[0]))] if batch is None else [
        (d, np.flatnonzero(draws == d)) for d in np.unique(draws)]
    out = np.empty((X.shape[0], network.n_outputs), dtype=np.int64)
    for d, rows in groups:
        Q, bias = (faults_as_parameters(p.Q, p.bias, batch, int(d)) if batch is not None
                   else (p.Q, p.bias))
        out[rows] = _run_rows(p, [np.asarray(q, np.int64) for q in Q],
                              [np.asarray(b, np.int64) for b in bias], x_int[rows])
    if return_integers:
        return out
    scale = 2.0 ** -p.frac_bits if p.readout == "membrane" else 1.0
    return out * scale / p.T
