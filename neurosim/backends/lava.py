"""The Lava backend: run the mapped network as Loihi-style Lava processes.

Nothing Lava-specific is imported at module import time; the backend imports ``lava``
(``pip install 'neurosim-faults[lava]'`` in a Python 3.10 environment) when it is created.

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
    :func:`neurosim.quantization.integer_forward`'s, and the two agree exactly.

Conv layers run as a ``Dense`` process on the layer's unfolded kernel (``Conv2d.dense_matrix``;
integer words in fixed_pt), which is exact for every fault (a fault is an entry of that
matrix). Lava's own ``Conv`` process computes a true convolution (it flips the kernel; its
kernel order is ``(C_out, W, H, C_in)`` on ``(W, H, C)`` inputs) and its fixed_pt model ignores
``weight_exp``; ``tests/lava`` checks that neurosim's Conv2d equals Lava's floating_pt Conv
with the kernel converted, and that the fixed_pt Conv differs by the missing exponent, which
is why the bit-accurate Dense is used. Pooling has no Lava process: networks with pooling are
refused (:data:`LAVA_UNSUPPORTED`).

Faults (a :class:`neurosim.sampler.FaultBatch`) are written into the Lava weights and biases by
:func:`neurosim.backends.numpy.faults_as_parameters`: a stuck synapse or weight word sets
``W_l[i, j]``; a crash of neuron ``i`` zeroes row ``i`` of ``W_l`` and, when silent (core
failures too), ``b_l[i]``, so ``z_i = 0`` and ``y_i = phi(0) = 0`` for ReLU and identity
(exactly ``y_i := 0``), or, for the paper's semantics, ``z_i = b_i``; a crash of input ``j``
zeroes column ``j`` of ``W_1``; a failed crossbar tile (floating_pt only) zeroes its block.

:class:`LavaBackend` (``backend="lava"``, or ``LavaBackend(mode="fixed_pt")``) runs the same
estimators as every backend; see :data:`LAVA_UNSUPPORTED` for what it does not do, and
``docs/lava.md``.
"""

from __future__ import annotations

import numpy as np

from neurosim.backends.base import Backend, CleanCache, register_backend
from neurosim.backends.numpy import faults_as_parameters
from neurosim.errors import (BackendUnsupportedError, MissingExtraError, NeurosimError,
                             ValidationError, param_error)
from neurosim.kernels.codes import CRASH_STUCK, REC_CRASH
from neurosim.mapping import Mapping, map_network
from neurosim.network import Network
from neurosim.quantization import (DEFAULT_FRAC_BITS, IntegerLayers, IntegerModelError,
                                   draw_of_input, integer_fault_values, integer_forward,
                                   integer_layers, quantize_input)

__all__ = [
    "LAVA_UNSUPPORTED",
    "LavaBackend",
    "LavaUnsupportedError",
    "MODES",
    "require_lava",
    "run_lava",
]

MODES = ("floating_pt", "fixed_pt")

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
    "fixed_tile": "failed crossbar tiles in fixed_pt: crossbar profiles have no Lava "
                  "fixed-point equivalent (floating_pt zeroes the tile's weight block)",
    "fixed_weight_value": "fixed_pt weight faults whose value is not an integer weight word of "
                          "the layer (scale * Q with Q in [q_min, q_max]), e.g. faults sampled "
                          "on the float network",
    "int32_overflow": "fixed_pt inputs whose integer pre-activations leave int32: Lava's Dense "
                      "accumulates in int32 and would wrap around",
    "analog": "analog crossbar non-idealities (device noise, drift, DAC / ADC): they run in "
              "neurosim's crossbar pass; use the numba or numpy backend",
    "fields": "stuck cells at dense rates (drawn as fields, neurosim.fields: the chip's "
              "weights change per chip or per input, and Lava builds its processes once per "
              "run); use the numba or numpy backend",
    "pooling": "pooling layers and channels-last flattening (max, average and global average "
               "pooling): lava-nc has no pooling process (a conv layer itself runs as a Dense "
               "process on the unfolded kernel)",
    "spiking_mode": "spiking networks other than a loihi2 mapping in fixed_pt: they run as "
                    "Lava's bit-accurate LIF processes, which neurosim's integer model "
                    "(neurosim.spiking.integer) follows exactly; map the network "
                    "(map_network(snn, 'loihi2')) and use LavaBackend(mode='fixed_pt')",
    "spiking_model": "spiking layers Lava's LIF cannot represent (see "
                     "neurosim.spiking.integer: IF or LIF resetting to 0, one threshold and tau "
                     "per layer, constant-current input, membrane or count readout)",
}


class LavaUnsupportedError(BackendUnsupportedError):
    """The Lava backend cannot represent this network, mode or fault (see LAVA_UNSUPPORTED)."""


def _unsupported(key: str, detail: str = "") -> LavaUnsupportedError:
    extra = f" ({detail})" if detail else ""
    return LavaUnsupportedError(f"The Lava backend does not support {LAVA_UNSUPPORTED[key]}{extra}.")


def _from_integer_model(exc: IntegerModelError) -> LavaUnsupportedError:
    """The integer model's refusal, as the Lava backend's (fixed_pt runs that model)."""
    return LavaUnsupportedError(f"The Lava backend (fixed_pt) does not support {exc}.")


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
        from lava.proc.lif.process import LIF
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
                ActivationMode=ActivationMode, SigmaDelta=SigmaDelta, SignMode=SignMode, LIF=LIF)


# --- targets and checks --------------------------------------------------------------------

def _check_network(network) -> None:
    for l, act in enumerate(network.activations[:-1], start=1):
        if act.name != "relu":
            raise _unsupported("activation", f"layer {l} uses {act}")
    for l, pre in enumerate(network.pre, start=1):
        for t in pre:
            if not (t.kind == "flatten" and t.order == "chw"):
                raise _unsupported("pooling", f"{t.describe()} before layer {l}")


def _check_fixed_profile(mapping) -> None:
    p = mapping.profile
    if (p.architecture != "cores" or p.weight_bits != 8 or not p.power_of_two_scale
            or not p.mixed_sign_drop_lsb):
        raise _unsupported("fixed_profile", f"profile {p.name!r}")


def _split_target(target, mode: str):
    """(network whose weights Lava runs, mapping or None)."""
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
    network = target if mapping is None else mapping.quantized_network()
    _check_network(network)
    if mode == "fixed_pt":
        _check_fixed_profile(mapping)
    return network, mapping


def _check_crashes(batch) -> None:
    if batch is not None and np.any((batch.kind == REC_CRASH) & (batch.crash_mode == CRASH_STUCK)):
        raise _unsupported("crash_stuck")


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
             frac_bits: int = DEFAULT_FRAC_BITS, return_integers: bool = False) -> np.ndarray:
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
        values are the batch's float values (``scale * word`` on a mapping); crash records
        carry their semantics (silent or paper).
    progress : bool
        A progress bar over inputs (per-input fault runs only).
    frac_bits : int
        fixed_pt: fractional bits of the integer activations (see
        :func:`neurosim.quantization.integer_forward`).
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
    return _run(network, mapping, X, mode, faults, progress, frac_bits, return_integers)


def _run(network, mapping, X, mode, faults, progress, frac_bits, return_integers):
    """:func:`run_lava` on inputs ``X`` already checked (flat, channels first)."""
    m = X.shape[0]
    L = network.n_layers
    _check_crashes(faults)
    if mode == "fixed_pt":
        try:
            integer = integer_layers(mapping, frac_bits)
            batch = integer_fault_values(mapping, faults)
            # Lava's int32 Dense would silently wrap: check with the integer model first.
            integer_forward(mapping, X, faults, frac_bits, return_integers=True,
                            channels_first=True)
        except IntegerModelError as exc:
            raise _from_integer_model(exc) from None
        weights, biases = integer.Q, integer.bias
        Xs = quantize_input(X, frac_bits)
    else:
        integer = None
        weights = [layer.dense_matrix().astype(np.float64) for layer in network.layers]
        biases = [layer.bias.astype(np.float64) for layer in network.layers]
        batch = faults
        Xs = X
    draws = draw_of_input(batch, m, "run_lava")
    if draws is not None:
        for d in np.unique(draws):  # validate every fault set before starting Lava
            faults_as_parameters(weights, biases, batch, int(d))
    shared = batch is None or batch.n_draws == 1
    n_steps = m + L + 1 if shared else L + 2
    if shared and batch is not None:
        weights, biases = faults_as_parameters(weights, biases, batch, 0)
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
                W, b = faults_as_parameters(weights, biases, batch, int(draws[k]))
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


# --- spiking networks: LIF processes ----------------------------------------------------------

class _LavaSpikingGraph:
    """Source -> bit-accurate Dense -> LIF -> ... -> Dense (-> LIF) -> sink, in fixed_pt, for
    the parameters of :func:`neurosim.spiking.integer.integer_spiking`. One input per episode
    of ``T + L`` steps; between episodes the LIF states and the Dense buffers are zeroed."""

    def __init__(self, p, Q, bias):
        from neurosim.spiking.integer import DU_MEMORYLESS, bias_parts

        lv = require_lava()
        self.lv, self.p = lv, p
        self.L = len(Q)
        self.n_steps = p.T + self.L
        self.cfg = lv["Loihi2SimCfg"](select_tag="fixed_pt")
        self.started = False
        sign = {"mixed": lv["SignMode"].MIXED, "excitatory": lv["SignMode"].EXCITATORY,
                "inhibitory": lv["SignMode"].INHIBITORY}
        self.source = lv["Source"](data=np.zeros((Q[0].shape[1], self.n_steps), np.int32))
        prev = self.source.s_out
        self.dense, self.lifs = [], []
        for l in range(self.L):
            dense = lv["Dense"](weights=np.asarray(Q[l], np.int32),
                                num_message_bits=24 if l == 0 else 0, num_weight_bits=8,
                                weight_exp=int(p.weight_exp[l]), sign_mode=sign[p.sign_modes[l]])
            prev.connect(dense.s_in)
            self.dense.append(dense)
            if p.dv[l] is None:  # the membrane readout: the output Dense's a_out
                prev = dense.a_out
                break
            mant, exp = bias_parts(bias[l])
            lif = lv["LIF"](shape=(Q[l].shape[0],), du=DU_MEMORYLESS, dv=int(p.dv[l]),
                            vth=int(p.vth[l]), bias_mant=mant.astype(np.int32),
                            bias_exp=exp.astype(np.int32))
            dense.a_out.connect(lif.a_in)
            self.lifs.append(lif)
            prev = lif.s_out
        self.sink = lv["Sink"](shape=(Q[-1].shape[0],), buffer=self.n_steps)
        prev.connect(self.sink.a_in)
        self.current = ([np.array(q, copy=True) for q in Q], [np.array(b, copy=True) for b in bias])

    def _set(self, var, value) -> None:
        if self.started:
            var.set(value)
        else:
            var.init = value

    def load(self, Q, bias) -> None:
        """Change weights and biases (the layers that differ)."""
        from neurosim.spiking.integer import bias_parts

        for l in range(self.L):
            if not np.array_equal(Q[l], self.current[0][l]):
                self._set(self.dense[l].weights, np.asarray(Q[l], np.int32))
            if l < len(self.lifs) and not np.array_equal(bias[l], self.current[1][l]):
                mant, exp = bias_parts(bias[l])
                self._set(self.lifs[l].bias_mant, mant.astype(np.int32))
                self._set(self.lifs[l].bias_exp, exp.astype(np.int32))
        self.current = ([np.array(q, copy=True) for q in Q], [np.array(b, copy=True) for b in bias])

    def run(self, x_int: np.ndarray) -> np.ndarray:
        """The sink's record ``(n_out, T + L)`` for one input, from a zero state."""
        if self.started:
            for lif in self.lifs:
                lif.u.set(np.zeros(lif.u.shape, np.int32))
                lif.v.set(np.zeros(lif.v.shape, np.int32))
            for dense in self.dense:
                dense.a_buff.set(np.zeros(dense.a_buff.shape, np.int32))
        data = np.repeat(np.asarray(x_int, np.int32).reshape(-1, 1), self.n_steps, axis=1)
        self._set(self.source.data, data)
        self.sink.run(condition=self.lv["RunSteps"](num_steps=self.n_steps), run_cfg=self.cfg)
        self.started = True
        return np.array(self.sink.data.get())

    def stop(self) -> None:
        if self.started:
            self.sink.stop()


def run_lava_spiking(mapping, X, faults=None, frac_bits: int = DEFAULT_FRAC_BITS,
                     return_integers: bool = False, progress: bool = False) -> np.ndarray:
    """The readout of a spiking loihi2 mapping on inputs ``X``, as Lava's bit-accurate LIF and
    Dense processes compute it (one episode of ``T + L`` steps per input): what
    :func:`neurosim.spiking.integer.integer_spiking_run` computes, and exactly equal to it.
    ``faults``: a FaultBatch of one draw, or one per input (crashes silent or paper)."""
    from neurosim.spiking.integer import integer_spiking, integer_spiking_run

    _check_crashes(faults)
    try:
        p = integer_spiking(mapping, frac_bits)
        batch = integer_fault_values(mapping, faults)
        integer_spiking_run(mapping, X, faults, frac_bits)  # (its checks: int32 sums)
    except IntegerModelError as exc:
        raise _from_integer_model(exc) from None
    network = mapping.quantized_network()
    X = network.check_input(X, owner="input data X")
    x_int = quantize_input(X, frac_bits)
    draws = draw_of_input(batch, X.shape[0], "run_lava")
    graph = _LavaSpikingGraph(p, p.Q, p.bias)
    out = np.empty((X.shape[0], network.n_outputs), dtype=np.int64)
    rows = range(X.shape[0])
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="lava", unit="input", leave=False)
    try:
        for k in rows:
            if batch is not None:
                graph.load(*faults_as_parameters(p.Q, p.bias, batch, int(draws[k])))
            record = graph.run(x_int[k]).astype(np.int64)[:, graph.L:graph.L + p.T]
            if p.readout == "membrane":
                bias = graph.current[1][-1]
                out[k] = record.sum(axis=1) + p.T * np.asarray(bias, np.int64)
            else:
                out[k] = record.sum(axis=1)
    finally:
        graph.stop()
    if return_integers:
        return out
    return out * (2.0 ** -frac_bits if p.readout == "membrane" else 1.0) / p.T


# --- the backend -----------------------------------------------------------------------------

@register_backend
class LavaBackend(Backend):
    """Every faulty (fault sample, input) row run as Lava processes (slow: for validation).

    Rows of one fault sample (permanent mode) are pipelined through one run; rows of distinct
    samples run one episode each on a shared graph. The clean cache holds Lava's own fault-free
    outputs and no per-layer activations, so the stratified estimator skips no single fault.
    """

    name = "lava"
    unsupported = LAVA_UNSUPPORTED
    spiking = True  # (fixed_pt on a loihi2 mapping: Lava's LIF processes)

    def __init__(self, mode: str = "floating_pt"):
        if mode not in MODES:
            raise param_error("LavaBackend", "mode", f"one of {', '.join(MODES)}", mode)
        self.mode = mode

    def _target(self, plan):
        return plan.mapping if self.mode == "fixed_pt" else plan.network

    def check(self, plan) -> None:
        self.check_spiking(plan)
        if plan.spiking is not None:
            self._check_spiking_plan(plan)
            return
        _check_network(plan.network)
        if plan.fields:
            raise _unsupported("fields")
        if plan.analog is not None:
            raise _unsupported("analog")
        crash = plan.faults.get("crash")
        if crash is not None and not crash.is_null() and crash.semantics == "stuck":
            raise _unsupported("crash_stuck")
        if self.mode == "fixed_pt":
            if plan.mapping is None or plan.use_float:
                raise ValidationError("The Lava backend's fixed_pt mode needs a Mapping and "
                                      "use_float=False (the chip's integer weights).")
            _check_fixed_profile(plan.mapping)
        require_lava()  # what it cannot do is said first, a missing lava-nc then

    def _check_spiking_plan(self, plan) -> None:
        from neurosim.spiking.integer import integer_spiking

        if self.mode != "fixed_pt" or plan.mapping is None or plan.use_float:
            raise _unsupported("spiking_mode")
        _check_fixed_profile(plan.mapping)
        if plan.fields:
            raise _unsupported("fields")
        for proc in plan.faults.active():
            if proc.kind not in ("crash", "stuck", "bitflip", "core"):
                raise _unsupported("spiking_model", f"the {proc.kind} fault")
            if proc.kind == "crash" and proc.semantics == "stuck":
                raise _unsupported("crash_stuck")
            if proc.kind == "crash" and proc.steps is not None:
                raise _unsupported("spiking_model", "a crash of a few steps")
        try:
            integer_spiking(plan.mapping)
        except IntegerModelError as exc:
            raise _from_integer_model(exc) from None
        require_lava()

    def _lava(self, plan, X, faults=None):
        """Lava's outputs on checked inputs ``X`` (flat rows, channels first)."""
        if plan.spiking is not None:
            return run_lava_spiking(plan.mapping, np.asarray(X, np.float64), faults)
        network, mapping = _split_target(self._target(plan), self.mode)
        return _run(network, mapping, np.asarray(X, np.float64), self.mode, faults, False,
                    DEFAULT_FRAC_BITS, False)

    def clean_cache(self, plan, X) -> CleanCache:
        X = np.ascontiguousarray(X, dtype=plan.dtype)
        return CleanCache(X=X, output=self._lava(plan, X))

    def propagate(self, plan, cache, batch, row_draw, row_input) -> np.ndarray:
        row_draw = np.asarray(row_draw, dtype=np.int64)
        row_input = np.asarray(row_input, dtype=np.int64)
        out = np.empty((row_draw.size, plan.widths[-1]))
        if row_draw.size == 0:
            return out
        if plan.spiking is not None:  # one episode per row in any case
            return self._lava(plan, cache.X[row_input], batch.select(row_draw))
        draws = np.unique(row_draw)
        if draws.size == row_draw.size:  # one row per sample: one episode each, one graph
            return self._lava(plan, cache.X[row_input], batch.select(row_draw))
        for d in draws:  # rows sharing a sample: pipelined in one run
            rows = np.flatnonzero(row_draw == d)
            out[rows] = self._lava(plan, cache.X[row_input[rows]], batch.select([d]))
        return out

    def __repr__(self) -> str:
        return f"<LavaBackend {self.mode}>"
