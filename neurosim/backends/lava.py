"""A Lava backend: run a neurosim network (or chip mapping) through Intel's Lava framework.

Nothing Lava-specific is imported at module import time; each function imports ``lava``
(``pip install 'neurosim-faults[lava]'`` in a Python 3.10 environment) when called.

Two Lava process graphs are used (one process per layer and a ``Dense`` per weight matrix):

``floating_pt``
    ``RingBuffer`` source -> ``Dense`` -> ``SigmaDelta`` (ReLU, ``vth = 0``, ``bias = b_l``) ->
    ... -> ``Dense`` -> ``SigmaDelta`` (``UNIT`` activation: identity) -> ``RingBuffer`` sink.
    Sigma-delta neurons integrate their input (sigma) and send the *change* of their
    activation, so the source sends ``x_k - x_{k-1}`` and the output is the running sum of what
    the sink receives. Inputs are pipelined: input ``k`` enters at step ``k + 1``, each
    ``Dense`` adds one step of delay, and its output leaves the last layer at step ``k + L + 1``
    (sink column ``k + L``).

``fixed_pt`` (a loihi2-like :class:`~neurosim.mapping.Mapping`)
    ``RingBuffer`` source -> bit-accurate ``Dense`` (weights ``Q_l``, ``num_weight_bits = 8``,
    ``weight_exp = log2(scale_l)``) -> ``GradedReluVec`` (``vth = 0``: ReLU) -> ... ->
    ``GradedVec`` (``vth = -1``: identity) -> sink, with a constant ``RingBuffer`` per layer
    feeding the integer bias into the neurons. Graded neurons are memoryless (they send their
    full value every step), so pipelining is exact in integer arithmetic. The arithmetic is
    :func:`integer_forward`'s, and the two agree exactly.

Faults (a :class:`neurosim.engine.FaultBatch`, e.g. from ``batch_from_records`` or
``sample_faults``) are applied to the Lava weights and biases:

* stuck synapse / weight word (``F_WEIGHT``): ``W_l[i, j] := value`` in the ``Dense``;
* crash of neuron ``i`` of layer ``l >= 1``: row ``i`` of ``W_l`` zeroed and, for ``silent``
  semantics (and core failures), ``b_l[i] := 0``, so ``z_i = 0`` and ``y_i = phi(0) = 0`` for
  ReLU and identity -- exactly ``y_i := 0``, a neuron that never sends; for ``paper``
  semantics the bias is kept, so ``z_i = b_i`` and ``y_i = phi(b_i)`` (paper Def. 3);
* crash of input ``j`` (layer 0): column ``j`` of ``W_1`` zeroed (``x_j := 0``);
* failed crossbar tile (``F_TILE``, floating_pt only): the weight block zeroed.

See :data:`LAVA_UNSUPPORTED` for what this backend does not do, and ``docs/lava.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurosim.errors import MissingExtraError, NeurosimError, ValidationError, param_error

__all__ = [
    "LAVA_UNSUPPORTED",
    "LavaUnsupportedError",
    "MODES",
    "apply_faults",
    "integer_forward",
    "lava_simulate",
    "require_lava",
    "run_lava",
]

MODES = ("floating_pt", "fixed_pt")
#: Fractional bits of the integer activations in fixed_pt (value = integer * 2**-frac_bits).
DEFAULT_FRAC_BITS = 8

#: What the Lava backend does not support, and why (each raises LavaUnsupportedError).
LAVA_UNSUPPORTED: dict[str, str] = {
    "activation": "hidden activations other than ReLU (tanh, sigmoid, softplus, leaky_relu): "
                  "Lava's SigmaDelta neuron has only UNIT and RELU activations and the graded "
                  "neurons only ReLU / identity",
    "crash_stuck": "crash semantics 'stuck' (y_i := v): a neuron that keeps emitting a constant "
                   "is not modelled (only 'silent' and 'paper')",
    "fixed_profile": "fixed_pt on a profile other than Loihi's integer weights (8-bit words, "
                     "power-of-two scale, mixed-sign layers dropping the lowest bit): Lava's "
                     "bit-accurate Dense stores 8-bit weights with a power-of-two weight_exp",
    "fixed_tile": "failed crossbar tiles (F_TILE) in fixed_pt: crossbar profiles have no Lava "
                  "fixed-point equivalent (floating_pt zeroes the tile's weight block)",
    "fixed_weight_value": "fixed_pt weight faults whose value is not an integer weight word of "
                          "the layer (scale * Q with Q in [q_min, q_max]), e.g. faults sampled "
                          "on the float network",
    "int32_overflow": "fixed_pt inputs whose integer pre-activations leave int32: Lava's Dense "
                      "accumulates in int32 and would wrap around",
}


class LavaUnsupportedError(NeurosimError, NotImplementedError):
    """The Lava backend cannot represent this network, mode or fault (see LAVA_UNSUPPORTED)."""


def _unsupported(key: str, detail: str = "") -> LavaUnsupportedError:
    extra = f" ({detail})" if detail else ""
    return LavaUnsupportedError(f"The Lava backend does not support {LAVA_UNSUPPORTED[key]}{extra}.")


def _allow_lava_fork() -> None:
    """Lava's runtime calls ``multiprocessing.set_start_method('fork')`` when first imported,
    which fails once anything (Numba's threading layer does) has fixed the start method. If
    that method already is 'fork', let Lava set it again; otherwise say what is wrong."""
    import multiprocessing as mp
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    method = mp.get_start_method(allow_none=True)
    if method is None:
        return
    if method != "fork":
        raise NeurosimError(
            f"Lava needs the 'fork' multiprocessing start method, but this process already uses "
            f"{method!r}; import neurosim.backends.lava (and call require_lava()) first."
        )
    mp.context._default_context._actual_context = None  # Lava sets 'fork' again


def require_lava():
    """Import Lava's pieces this backend uses, or raise MissingExtraError."""
    _allow_lava_fork()
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense
        from lava.proc.graded.process import GradedReluVec, GradedVec
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.sdn.process import ActivationMode, SigmaDelta
        from lava.utils.weightutils import SignMode
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            "The Lava backend needs lava-nc, which supports Python 3.10 only (with numpy < 2). "
            "Install it with: pip install 'neurosim-faults[lava]' in a Python 3.10 environment. "
            f"(Import failed: {exc})"
        ) from exc
    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense,
                GradedReluVec=GradedReluVec, GradedVec=GradedVec, Sink=Sink, Source=Source,
                ActivationMode=ActivationMode, SigmaDelta=SigmaDelta, SignMode=SignMode)


# --- targets, checks and faults ------------------------------------------------------------

def _split_target(target, mode: str):
    """(network whose weights Lava runs, mapping or None)."""
    from neurosim.mapping import Mapping, map_network
    from neurosim.network import Network

    if mode not in MODES:
        raise param_error("run_lava", "mode", f"one of {', '.join(MODES)}", mode)
    if isinstance(target, Mapping):
        mapping = target
    elif isinstance(target, Network):
        mapping = map_network(target, "loihi2") if mode == "fixed_pt" else None
    else:
        raise ValidationError(
            "The first argument of run_lava must be a Mapping (neurosim.map_network) or a "
            f"Network. Got {type(target).__name__} instead."
        )
    if mapping is None:
        network = target
    else:
        network = mapping.quantized_network()
    for l, act in enumerate(network.activations[:-1], start=1):
        if act.name != "relu":
            raise _unsupported("activation", f"layer {l} uses {act}")
    if mode == "fixed_pt":
        p = mapping.profile
        if (p.architecture != "cores" or p.weight_bits != 8 or not p.power_of_two_scale
                or not p.mixed_sign_drop_lsb):
            raise _unsupported("fixed_profile", f"profile {p.name!r}")
    return network, mapping


def _crash_semantics(semantics: str) -> int:
    from neurosim.faults import CRASH_SEMANTICS, SEM_PAPER, SEM_SILENT

    if semantics not in CRASH_SEMANTICS:
        raise param_error("run_lava", "crash_semantics", f"one of {CRASH_SEMANTICS}", semantics)
    if semantics == "stuck":
        raise _unsupported("crash_stuck")
    return SEM_PAPER if semantics == "paper" else SEM_SILENT


def apply_faults(weights, biases, batch, draw: int, crash_semantics: str = "silent"):
    """Weights and biases with draw ``draw`` of ``batch`` applied (see the module docstring).

    ``weights`` / ``biases`` are per-layer arrays (float, or the integer words Q in fixed_pt:
    then pass integer weight values in the batch). Returns new lists; inputs are not changed.
    Records are applied in batch order, crashes last (a crash overrides synapse faults on the
    crashed neuron's row, as in the numba kernels). The sampler never gives two records for
    one synapse; if a hand-made batch does, the last wins.
    """
    from neurosim.faults import F_CRASH, F_TILE, F_WEIGHT, SEM_SILENT

    sem = _crash_semantics(crash_semantics)
    W = [np.array(w, copy=True) for w in weights]
    b = [np.array(v, copy=True) for v in biases]
    if batch is None:
        return W, b
    L = len(W)
    crashes = []
    for l in range(L + 1):
        lo, hi = batch.ptr[l][draw], batch.ptr[l][draw + 1]
        for f in range(lo, hi):
            kind = int(batch.kind[f])
            if kind == F_CRASH:
                crashes.append((l, int(batch.a[f]), int(batch.b[f])))
            elif kind == F_WEIGHT:
                W[l - 1][batch.a[f], batch.b[f]] = batch.value[f]
            elif kind == F_TILE:
                W[l - 1][batch.a[f]:batch.b[f], batch.c[f]:batch.d[f]] = 0
            else:  # pragma: no cover
                raise ValidationError(f"Unknown fault record kind {kind}.")
    for l, i, core in crashes:
        if l == 0:
            W[0][:, i] = 0
        else:
            W[l - 1][i, :] = 0
            if core == 1 or sem == SEM_SILENT:
                b[l - 1][i] = 0
    return W, b


def _draw_of_input(batch, n_inputs: int):
    """Fault draw used by each input: one shared draw, or draw k for input k."""
    if batch is None:
        return None
    if batch.n_draws == 1:
        return np.zeros(n_inputs, dtype=np.int64)
    if batch.n_draws == n_inputs:
        return np.arange(n_inputs, dtype=np.int64)
    raise ValidationError(
        "The 'faults' batch of run_lava must have 1 draw (shared by all inputs) or one draw per "
        f"input ({n_inputs}). Got {batch.n_draws} draws instead."
    )


def _has_tile(batch) -> bool:
    from neurosim.faults import F_TILE

    return batch is not None and bool(np.any(batch.kind == F_TILE))


# --- the integer model ---------------------------------------------------------------------

@dataclass(frozen=True)
class IntegerLayers:
    """The fixed-point parameters of a mapping: integer weights, shifts and biases."""

    Q: list            # int64 (n_l, n_{l-1}) weight words as multiplied (Lava's weights)
    weight_exp: list   # int, log2 of each layer's scale
    bias: list         # int64 biases in units of 2**-frac_bits
    sign_modes: list   # neurosim sign modes ("mixed", "excitatory", "inhibitory")
    frac_bits: int


def integer_layers(mapping, frac_bits: int = DEFAULT_FRAC_BITS) -> IntegerLayers:
    """Integer weights, weight exponents and integer biases of a loihi2-like mapping."""
    Q, exps, bias, modes = [], [], [], []
    for q, layer in zip(mapping.quantization, mapping.network.layers):
        e = math.log2(q.scale)
        if e != int(e):
            raise _unsupported("fixed_profile", f"scale {q.scale} is not a power of two")
        Q.append(q.Q.astype(np.int64))
        exps.append(int(e))
        bias.append(np.rint(np.asarray(layer.b, np.float64) * 2.0 ** frac_bits).astype(np.int64))
        modes.append(q.sign_mode)
    return IntegerLayers(Q, exps, bias, modes, int(frac_bits))


def _shift(a: np.ndarray, e: int) -> np.ndarray:
    """Lava Dense's weight_exp: left shift, or arithmetic right shift (floor) for e < 0."""
    return np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)


def _integer_fault_values(mapping, batch):
    """The batch with weight values turned into integer words (fixed_pt), checked."""
    from dataclasses import replace

    from neurosim.faults import F_WEIGHT

    if batch is None:
        return None
    if _has_tile(batch):
        raise _unsupported("fixed_tile")
    value = batch.value.copy()
    for f in np.flatnonzero(batch.kind == F_WEIGHT):
        q = mapping.quantization[int(batch.layer[f]) - 1]
        word = batch.value[f] / q.scale
        if word != np.rint(word) or not (q.q_min <= word <= q.q_max):
            raise _unsupported("fixed_weight_value",
                               f"layer {int(batch.layer[f])} value {batch.value[f]!r}")
        value[f] = word
    return replace(batch, value=value)


def _quantize_input(X: np.ndarray, frac_bits: int) -> np.ndarray:
    return np.rint(np.asarray(X, np.float64) * 2.0 ** frac_bits).astype(np.int64)


def integer_forward(mapping, X, faults=None, crash_semantics: str = "silent",
                    frac_bits: int = DEFAULT_FRAC_BITS, return_integers: bool = False):
    """neurosim's integer model of a loihi2 mapping: the arithmetic Lava's fixed_pt runs.

    With ``f = frac_bits`` and ``e_l = log2(scale_l)`` (loihi2 scales are powers of two):

    * ``x_int = rint(x * 2**f)`` (round half to even);
    * ``a_l = (Q_l @ y_{l-1}) >> -e_l`` (an arithmetic shift, i.e. floor division by
      ``2**-e_l``; a left shift when ``e_l > 0``), in int32 as Lava's ``Dense``;
    * ``b_int = rint(b_l * 2**f)``; ``y_l = max(a_l + b_int, 0)`` for hidden layers,
      ``a_L + b_int`` for the output;
    * the float value of an integer is ``integer * 2**-f``.

    Faults (a FaultBatch with one draw, or one per input) are applied to ``Q`` and ``b_int`` as
    in :func:`apply_faults`; weight values must be words of the layer (``scale * Q``).

    Returns floats ``y_L * 2**-f`` (n_inputs, n_L), or the integers with ``return_integers``.

    Raises
    ------
    LavaUnsupportedError
        If a pre-activation leaves int32 (Lava's int32 accumulator would wrap).
    """
    network, mapping = _split_target(mapping, "fixed_pt")
    X = network.check_input(X, owner="input data X")
    layers = integer_layers(mapping, frac_bits)
    Y0 = _quantize_input(X, frac_bits)
    batch = _integer_fault_values(mapping, faults)
    draws = _draw_of_input(batch, X.shape[0])
    out = np.empty((X.shape[0], network.n_outputs), dtype=np.int64)
    groups = [(None, np.arange(X.shape[0]))] if batch is None else [
        (d, np.flatnonzero(draws == d)) for d in np.unique(draws)]
    L = network.n_layers
    for d, rows in groups:
        Q, bias = apply_faults(layers.Q, layers.bias, batch, int(d) if d is not None else 0,
                               crash_semantics) if batch is not None else (layers.Q, layers.bias)
        y = Y0[rows]
        for l in range(L):
            acc = y @ Q[l].T
            if np.abs(acc).max(initial=0) >= 2 ** 31:
                raise _unsupported("int32_overflow", f"layer {l + 1}: |Q y| reaches "
                                   f"{int(np.abs(acc).max())}")
            z = _shift(acc, layers.weight_exp[l]) + bias[l]
            y = np.maximum(z, 0) if l < L - 1 else z
        out[rows] = y
    return out if return_integers else out * 2.0 ** -frac_bits


# --- the Lava graph --------------------------------------------------------------------------

class _LavaGraph:
    """One Lava process graph for a network; runs pipelined batches or single-input episodes."""

    def __init__(self, weights, biases, mode: str, n_steps: int, integer: "IntegerLayers | None"):
        lv = require_lava()
        self.lv = lv
        self.mode = mode
        self.n_steps = n_steps
        self.L = len(weights)
        self.cfg = lv["Loihi2SimCfg"](select_tag=mode)
        self.started = False
        self.current_W = [np.array(w, copy=True) for w in weights]
        self.current_b = [np.array(v, copy=True) for v in biases]
        n_in = weights[0].shape[1]
        fixed = mode == "fixed_pt"
        self.source = lv["Source"](data=np.zeros((n_in, n_steps), dtype=np.int32 if fixed else float))
        prev = self.source.s_out
        self.dense, self.neurons, self.bias_sources = [], [], []
        sign = {"mixed": lv["SignMode"].MIXED, "excitatory": lv["SignMode"].EXCITATORY,
                "inhibitory": lv["SignMode"].INHIBITORY}
        for l, (W, b) in enumerate(zip(weights, biases)):
            n = W.shape[0]
            hidden = l < self.L - 1
            if fixed:
                dense = lv["Dense"](weights=np.asarray(W, np.int32), num_message_bits=24,
                                    num_weight_bits=8, weight_exp=integer.weight_exp[l],
                                    sign_mode=sign[integer.sign_modes[l]])
                neuron = (lv["GradedReluVec"](shape=(n,), vth=0) if hidden
                          else lv["GradedVec"](shape=(n,), vth=-1))
                bias_src = lv["Source"](data=np.asarray(b, np.int32).reshape(n, 1))
                bias_src.s_out.connect(neuron.a_in)
                self.bias_sources.append(bias_src)
            else:
                dense = lv["Dense"](weights=np.asarray(W, float), num_message_bits=24)
                act = lv["ActivationMode"].RELU if hidden else lv["ActivationMode"].UNIT
                neuron = lv["SigmaDelta"](shape=(n,), vth=0.0, bias=np.asarray(b, float),
                                          act_mode=act)
            prev.connect(dense.s_in)
            dense.a_out.connect(neuron.a_in)
            prev = neuron.s_out
            self.dense.append(dense)
            self.neurons.append(neuron)
        self.sink = lv["Sink"](shape=(weights[-1].shape[0],), buffer=n_steps)
        prev.connect(self.sink.a_in)

    def _set(self, var, value) -> None:
        if self.started:
            var.set(value)
        else:
            var.init = value

    def load(self, weights, biases) -> None:
        """Change the weights and biases (only the layers that differ)."""
        fixed = self.mode == "fixed_pt"
        for l in range(self.L):
            if not np.array_equal(weights[l], self.current_W[l]):
                self._set(self.dense[l].weights,
                          np.asarray(weights[l], np.int32 if fixed else float))
                self.current_W[l] = np.array(weights[l], copy=True)
            if not np.array_equal(biases[l], self.current_b[l]):
                if fixed:
                    self._set(self.bias_sources[l].data,
                              np.asarray(biases[l], np.int32).reshape(-1, 1))
                else:
                    self._set(self.neurons[l].bias, np.asarray(biases[l], float))
                self.current_b[l] = np.array(biases[l], copy=True)

    def run(self, data: np.ndarray) -> np.ndarray:
        """Send ``data`` (n_in, n_steps) from the source; the sink's record (n_out, n_steps)."""
        self._set(self.source.data, data)
        self.sink.run(condition=self.lv["RunSteps"](num_steps=self.n_steps), run_cfg=self.cfg)
        self.started = True
        return np.array(self.sink.data.get())

    def reset_state(self) -> None:
        """Zero the sigma-delta neurons' state (floating_pt episodes)."""
        if self.mode == "floating_pt" and self.started:
            for neuron in self.neurons:
                zeros = np.zeros(neuron.shape)
                neuron.sigma.set(zeros)
                neuron.act.set(zeros)

    def stop(self) -> None:
        if self.started:
            self.sink.stop()


def _pipeline_data(Xs: np.ndarray, mode: str, n_steps: int) -> np.ndarray:
    """Source data: input k at column k (its change from input k-1 for sigma-delta)."""
    n, n_in = Xs.shape
    data = np.zeros((n_in, n_steps), dtype=np.int32 if mode == "fixed_pt" else float)
    if mode == "fixed_pt":
        data[:, :n] = Xs.T
    else:
        data[:, :n] = np.diff(Xs, axis=0, prepend=0.0).T
    return data


def _outputs(record: np.ndarray, mode: str, L: int, n: int) -> np.ndarray:
    """Outputs of the n pipelined inputs from the sink's record."""
    if mode == "floating_pt":  # sigma-delta: the sink receives changes
        record = np.cumsum(record, axis=1)
    return record[:, L:L + n].T


def run_lava(target, X, mode: str = "floating_pt", faults=None, progress: bool = False,
             crash_semantics: str = "silent", frac_bits: int = DEFAULT_FRAC_BITS,
             return_integers: bool = False) -> np.ndarray:
    """Outputs of ``target`` on inputs ``X``, computed by Lava's CPU simulator.

    Parameters
    ----------
    target : Mapping or Network
        A Network runs its float weights (floating_pt). A Mapping runs the weights the chip
        holds: ``scale * Q`` in floating_pt (what ``neurosim.simulate`` simulates by default),
        the words ``Q`` in fixed_pt. A Network in fixed_pt is mapped to ``loihi2`` first.
    X : array_like (n_inputs, n_0)
    mode : {"floating_pt", "fixed_pt"}
        The Lava process models (``Loihi2SimCfg(select_tag=mode)``).
    faults : FaultBatch, optional
        One draw (applied to every input) or one draw per input (transient faults). Weight
        values are the batch's float values (``scale * word`` on a mapping).
    progress : bool
        A progress bar over inputs (per-input fault runs only).
    crash_semantics : {"silent", "paper"}
        How crash records act (core failures are always silent).
    frac_bits : int
        fixed_pt: fractional bits of the integer activations (see :func:`integer_forward`).
    return_integers : bool
        fixed_pt: return the integer outputs instead of ``integers * 2**-frac_bits``.

    Returns
    -------
    ndarray (n_inputs, n_L), float64 (int64 with ``return_integers``)

    Notes
    -----
    Without faults, or with one shared fault set, all inputs are pipelined through one run of
    ``n_inputs + L + 1`` steps. Per-input faults run one input per episode of ``L + 2`` steps
    on the same graph, changing the ``Dense`` weights (and biases) between episodes with
    ``Var.set`` and, in floating_pt, zeroing the sigma-delta state.
    """
    network, mapping = _split_target(target, mode)
    X = network.check_input(X, owner="input data X").astype(np.float64)
    m = X.shape[0]
    L = network.n_layers
    _crash_semantics(crash_semantics)
    if mode == "fixed_pt":
        integer = integer_layers(mapping, frac_bits)
        weights, biases = integer.Q, integer.bias
        batch = _integer_fault_values(mapping, faults)
        Xs = _quantize_input(X, frac_bits)
        # Lava's int32 Dense would silently wrap: check with the integer model first.
        integer_forward(mapping, X, faults, crash_semantics, frac_bits, return_integers=True)
    else:
        integer = None
        weights = [layer.W.astype(np.float64) for layer in network.layers]
        biases = [layer.b.astype(np.float64) for layer in network.layers]
        batch = faults
        Xs = X
    draws = _draw_of_input(batch, m)
    if draws is not None:
        for d in np.unique(draws):  # validate every fault set before starting Lava
            apply_faults(weights, biases, batch, int(d), crash_semantics)
    shared = batch is None or batch.n_draws == 1
    n_steps = m + L + 1 if shared else L + 2
    if shared and batch is not None:
        weights, biases = apply_faults(weights, biases, batch, 0, crash_semantics)
    graph = _LavaGraph(weights, biases, mode, n_steps, integer)
    try:
        if shared:
            out = _outputs(graph.run(_pipeline_data(Xs, mode, n_steps)), mode, L, m)
        else:
            out = np.empty((m, network.n_outputs))
            rows = range(m)
            if progress:
                from tqdm.auto import tqdm

                rows = tqdm(rows, desc="lava", unit="input", leave=False)
            for k in rows:
                W, b = apply_faults(weights, biases, batch, int(draws[k]), crash_semantics)
                graph.load(W, b)
                graph.reset_state()
                out[k] = _outputs(graph.run(_pipeline_data(Xs[k:k + 1], mode, n_steps)),
                                  mode, L, 1)[0]
    finally:
        graph.stop()
    if mode == "fixed_pt":
        out = np.rint(out).astype(np.int64)
        return out if return_integers else out * 2.0 ** -frac_bits
    return out


# --- a small Monte Carlo driver ------------------------------------------------------------------

def lava_simulate(mapping, faults, X, y=None, metric: str = "flip", eps: "float | None" = None,
                  n_samples: int = 10, seed: int = 0, mode: str = "transient",
                  use_float: bool = False, lava_mode: str = "floating_pt",
                  progress: bool = False) -> dict:
    """Monte Carlo fault simulation with every faulty (draw, input) pair run through Lava.

    Fault sets are drawn exactly as :func:`neurosim.simulate` (estimator ``mc``) draws them:
    the same plan (``neurosim.engine.build_plan``), the same blocks and per-block generators
    ``default_rng(SeedSequence([seed, block]))`` and ``sample_faults``, so for one seed the
    faulty pairs are identical to the numba path's. The error of a pair is measured against
    Lava's own fault-free output of that input. Slow (one Lava episode per faulty pair).

    Returns
    -------
    dict with ``n_pairs``, ``n_faulty_pairs``, ``n_failures``, ``failure_rate``, the per-pair
    ``row_draw``/``row_input``/``failed`` of the faulty pairs (concatenated over blocks, draws
    numbered within their block) and ``lava_mode``.
    """
    from neurosim.engine import build_plan
    from neurosim.faults import resolve_faults
    from neurosim.mapping import Mapping
    from neurosim.simulation import BLOCK_PAIRS, _metric, _validate, sample_block

    faults = resolve_faults(mapping, faults, "lava_simulate")
    eps = _validate(metric, eps, n_samples, mode, 0.95, y, owner="lava_simulate")
    plan = build_plan(mapping, faults, use_float=use_float)
    crash = faults.get("crash")
    semantics = crash.semantics if crash is not None else "silent"
    _crash_semantics(semantics)
    if lava_mode == "fixed_pt" and (use_float or not isinstance(mapping, Mapping)):
        raise ValidationError("lava_simulate with lava_mode='fixed_pt' needs a Mapping and "
                              "use_float=False (the chip's integer weights).")
    target = plan.network if lava_mode == "floating_pt" else mapping
    X = plan.network.check_input(X, owner="input data X")
    m = X.shape[0]
    y_arr = None if y is None else np.asarray(y)
    clean = run_lava(target, X, mode=lava_mode, crash_semantics=semantics)
    rounds_per_block = max(1, BLOCK_PAIRS // m)
    n_blocks = math.ceil(n_samples / rounds_per_block)
    totals = dict(n_pairs=0, n_faulty_pairs=0, n_failures=0)
    all_draw, all_input, all_failed = [], [], []
    zero_fails = 0.0 >= eps
    for block in range(n_blocks):
        rounds = min(rounds_per_block, n_samples - block * rounds_per_block)
        batch, n_draws, faulty, row_draw, row_input = sample_block(plan, seed, block, rounds, m,
                                                                   mode)
        failed = np.zeros(0, dtype=bool)
        if row_draw.size:
            sub = _select_draws(batch, row_draw, plan.n_layers)
            out = run_lava(target, X[row_input], mode=lava_mode, faults=sub,
                           crash_semantics=semantics, progress=progress)
            values = _metric(metric, out, clean[row_input],
                             y_arr[row_input] if y_arr is not None else None)
            failed = values >= eps
        n_pairs = rounds * m
        totals["n_pairs"] += n_pairs
        totals["n_faulty_pairs"] += int(row_draw.size)
        totals["n_failures"] += int(failed.sum()) + (n_pairs - row_draw.size) * int(zero_fails)
        all_draw.append(row_draw)
        all_input.append(row_input)
        all_failed.append(failed)
    totals["failure_rate"] = totals["n_failures"] / totals["n_pairs"]
    totals.update(row_draw=np.concatenate(all_draw), row_input=np.concatenate(all_input),
                  failed=np.concatenate(all_failed), lava_mode=lava_mode)
    return totals


def _select_draws(batch, draws: np.ndarray, n_layers: int):
    """A FaultBatch whose draw k is draw ``draws[k]`` of ``batch``."""
    from neurosim.engine import batch_from_records

    parts = {name: [] for name in ("layer", "draw", "kind", "a", "b", "c", "d", "value", "core")}
    for k, d in enumerate(draws):
        for l in range(n_layers + 1):
            lo, hi = batch.ptr[l][d], batch.ptr[l][d + 1]
            if hi > lo:
                for name in parts:
                    col = np.full(hi - lo, k) if name == "draw" else getattr(batch, name)[lo:hi]
                    parts[name].append(col)
    cols = {name: (np.concatenate(v) if v else np.zeros(0)) for name, v in parts.items()}
    return batch_from_records(len(draws), n_layers, cols["layer"], cols["draw"], cols["kind"],
                              cols["a"], cols["b"], cols["c"], cols["d"], cols["value"],
                              cols["core"])
