"""Coverage of the simulator's confidence interval against exact failure probabilities.

On tiny networks every fault pattern can be enumerated. The exact failure probability (averaged
over the given inputs) is computed here with plain NumPy: an explicit faulty network (weights,
crashed / dead neurons) per pattern, weighted by the pattern's probability. It uses nothing
of neurosim's engine or kernels; only the network's weights, the mapping's integer weights
and its core layout are read from neurosim.

For each case ``simulate`` runs with 100 seeds; its 95 % interval must contain the exact value
for at least 90 of them, and the point estimate pooled over all seeds must be within a few
standard errors of the exact value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurosim import CoreFailure, Network, NeuronCrash, SynapseStuck, WeightBitFlip, simulate
from neurosim.hardware import profile_from_dict
from neurosim.mapping import map_network

N_SEEDS = 100
MIN_COVERED = 90
CONFIDENCE = 0.95

RATES = {"neuron_crash": 0.0, "synapse_stuck_at_zero": 0.0, "synapse_stuck_at_max": 0.0,
         "weight_bit_flip": 0.0, "core_failure": 0.0}

@pytest.fixture(scope="module", autouse=True)
def _one_numba_thread():
    """Many tiny runs: Numba's thread start-up per kernel call would dominate (and the results
    do not depend on the thread count)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


#: What each case observed, for the summary printed at the end (pytest -s).
OBSERVED: dict[str, tuple] = {}


def _profile(**overrides):
    data = {
        "name": "tiny", "description": "a tiny test chip", "architecture": "cores",
        "cores_per_chip": 64, "neurons_per_core": 64, "max_fan_in": 64,
        "synapses_per_core": 4096, "weight_bits": 8, "fault_rates": dict(RATES),
    }
    data.update(overrides)
    return profile_from_dict(data, source="tiny")


# --- an independent forward pass -------------------------------------------------------------

def _act(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "identity":
        return z
    raise AssertionError(f"activation {name} not handled by the reference")


def _arrays(network: Network):
    Ws = [np.array(layer.W, dtype=np.float64) for layer in network.layers]
    bs = [np.array(layer.b, dtype=np.float64) for layer in network.layers]
    acts = [layer.activation.name for layer in network.layers]
    return Ws, bs, acts


def _forward(Ws, bs, acts, x, P, crash=None, dead=None, sem="silent", value=0.0):
    """Outputs (P, n_L) of P network variants on one input ``x``.

    ``Ws[l-1]`` is (n_l, n_{l-1}) or per variant (P, n_l, n_{l-1}); ``crash[l]`` (P, n_l) marks
    crashed neurons of layer l = 0..L (crash semantics ``sem``); ``dead[l]`` marks neurons of a
    failed core (always silent).
    """
    L = len(Ws)
    y = np.repeat(np.asarray(x, dtype=np.float64)[None, :], P, axis=0)
    if crash is not None and crash[0] is not None:
        # The input layer has no bias: "paper" is silent there.
        y = np.where(crash[0], value if sem == "stuck" else 0.0, y)
    for l in range(1, L + 1):
        W, b = Ws[l - 1], bs[l - 1]
        z = (np.einsum("pij,pj->pi", W, y) if W.ndim == 3 else y @ W.T) + b
        y = _act(acts[l - 1], z)
        if crash is not None and crash[l] is not None:
            c = crash[l]
            if sem == "silent":
                y = np.where(c, 0.0, y)
            elif sem == "paper":
                y = np.where(c, _act(acts[l - 1], b)[None, :], y)
            else:
                y = np.where(c, value, y)
        if dead is not None and dead[l] is not None:
            y = np.where(dead[l], 0.0, y)
    return y


def _metric_values(outs, cleans, metric):
    """(P, m) metric values; ``outs[k]`` (P, n_L) faulty, ``cleans[k]`` (n_L,) clean."""
    cols = []
    for out, clean in zip(outs, cleans):
        if metric == "linf":
            cols.append(np.abs(out - clean).max(axis=1))
        elif metric == "flip":
            # A near-tie would make the argmax depend on rounding: require clear winners.
            top2 = np.sort(out, axis=1)[:, -2:]
            gap = top2[:, 1] - top2[:, 0]
            assert np.all((gap == 0) | (gap > 1e-9)), "near-tie in a faulty output"
            cols.append((out.argmax(axis=1) != clean.argmax()).astype(np.float64))
        else:
            raise AssertionError(metric)
    return np.stack(cols, axis=1)


def _exact(M, w, eps):
    """P(metric >= eps), the pattern weights ``w`` summing to 1, averaged over the inputs."""
    assert abs(w.sum() - 1.0) < 1e-9
    if eps > 0:  # no value may sit on the threshold within rounding
        assert np.abs(M - eps).min() > 1e-7, "a metric value sits on eps"
    return float((w[:, None] * (M >= eps)).sum() / M.shape[1])


def _choose_eps(M, w, target=0.25):
    """An eps in the middle of a gap between metric values, failure probability near ``target``."""
    vals = M.ravel()
    wts = np.repeat(w / M.shape[1], M.shape[1])  # row-major: matches M.ravel()
    order = np.argsort(vals, kind="stable")
    vals, wts = vals[order], wts[order]
    tail = np.cumsum(wts[::-1])[::-1]  # tail[k] = P(metric >= vals[k])
    k = np.flatnonzero((np.diff(vals) >= 1e-5) & (vals[1:] > 0)) + 1  # first index of a new value
    assert k.size, "no usable gap between metric values"
    best = k[np.argmin(np.abs(tail[k] - target))]
    return 0.5 * (vals[best - 1] + vals[best])


def _exact_prob(network_arrays, X, w, metric, eps=None, target=0.25, **variant):
    """Exact failure probability over all patterns (``variant`` goes to :func:`_forward`)."""
    Ws, bs, acts = network_arrays["faulty_W"], network_arrays["b"], network_arrays["acts"]
    P = w.size
    outs = [_forward(Ws, bs, acts, x, P, **variant) for x in X]
    cleans = [_forward(network_arrays["W"], bs, acts, x, 1)[0] for x in X]
    M = _metric_values(outs, cleans, metric)
    if eps is None:
        eps = 0.5 if metric == "flip" else _choose_eps(M, w, target)
    return _exact(M, w, eps), eps


def _bits(n_bits: int) -> np.ndarray:
    """All 2^n patterns of n independent on/off events, (2^n, n) bool."""
    idx = np.arange(2 ** n_bits, dtype=np.int64)
    return ((idx[:, None] >> np.arange(n_bits)) & 1).astype(bool)


def _bernoulli_weights(patterns: np.ndarray, rates: np.ndarray) -> np.ndarray:
    return np.prod(np.where(patterns, rates[None, :], 1.0 - rates[None, :]), axis=1)


# --- the coverage check ----------------------------------------------------------------------

def _check_coverage(name, target, faults, X, exact, metric, eps, n_samples, mode="transient",
                    **kwargs):
    covered, failures, pairs, units = 0, 0, 0, 0
    for seed in range(N_SEEDS):
        r = simulate(target, faults, X, metric=metric, eps=eps, n_samples=n_samples, seed=seed,
                     mode=mode, confidence=CONFIDENCE, **kwargs)
        assert r.n_pairs == n_samples * X.shape[0]
        covered += r.ci_low <= exact <= r.ci_high
        failures += r.n_failures
        pairs += r.n_pairs
        units += r.n_samples if mode == "permanent" else r.n_pairs
    pooled = failures / pairs
    # Permanent mode: the chips are the independent units (pairs of a chip are correlated).
    margin = 4.0 * math.sqrt(max(exact * (1.0 - exact), 1e-12) / units)
    OBSERVED[name] = (exact, covered, pooled, margin)
    print(f"\n{name}: exact {exact:.5f}, covered {covered}/{N_SEEDS}, pooled {pooled:.5f} "
          f"(margin {margin:.5f})")
    assert 0.0 < exact < 1.0
    assert covered >= MIN_COVERED, (name, exact, covered)
    assert abs(pooled - exact) < margin, (name, exact, pooled, margin)


# --- 1-3: neuron crashes ---------------------------------------------------------------------

def _crash_patterns(widths, layer_rates):
    """All crash patterns of the neurons with a positive rate: weights and per-layer masks."""
    slots = [(l, i) for l, n in enumerate(widths) for i in range(n) if layer_rates[l] > 0]
    assert 1 <= len(slots) <= 16
    pats = _bits(len(slots))
    w = _bernoulli_weights(pats, np.array([layer_rates[l] for l, _ in slots]))
    crash = [np.zeros((pats.shape[0], n), dtype=bool) for n in widths]
    for k, (l, i) in enumerate(slots):
        crash[l][:, i] = pats[:, k]
    return w, crash


@pytest.fixture(scope="module")
def crash_net():
    net = Network.random([3, 5, 4, 2], activation="relu", seed=3)
    X = np.random.default_rng(11).normal(size=(4, 3))
    Ws, bs, acts = _arrays(net)
    return net, X, {"W": Ws, "faulty_W": Ws, "b": bs, "acts": acts}


CRASH_CASES = [
    # (id, NeuronCrash kwargs, layer rates 0..L, metric)
    ("silent-linf", dict(p=0.08), [0, 0.08, 0.08, 0.08], "linf"),
    ("silent-flip", dict(p=0.1), [0, 0.1, 0.1, 0.1], "flip"),
    ("paper-linf", dict(p=0.08, semantics="paper"), [0, 0.08, 0.08, 0.08], "linf"),
    ("paper-flip", dict(p=0.1, semantics="paper"), [0, 0.1, 0.1, 0.1], "flip"),
    ("stuck-linf", dict(p=0.06, semantics="stuck", value=0.7), [0, 0.06, 0.06, 0.06], "linf"),
    ("stuck-flip", dict(p=0.08, semantics="stuck", value=1.5), [0, 0.08, 0.08, 0.08], "flip"),
    ("rates-L", dict(p=[0.05, 0.1, 0.07]), [0, 0.05, 0.1, 0.07], "linf"),
    ("rates-L+1-stuck", dict(p=[0.06, 0.04, 0.08, 0.05], semantics="stuck", value=-0.4),
     [0.06, 0.04, 0.08, 0.05], "linf"),
    ("rates-L+1-paper", dict(p=[0.1, 0.05, 0.0, 0.1], semantics="paper"),
     [0.1, 0.05, 0.0, 0.1], "linf"),
    ("layers-0-2", dict(p=0.1, layers=(0, 2)), [0.1, 0, 0.1, 0], "linf"),
    ("layers-3-flip", dict(p=0.2, layers=(3,), semantics="stuck", value=0.3), [0, 0, 0, 0.2], "flip"),
]


@pytest.mark.parametrize("case", CRASH_CASES, ids=[c[0] for c in CRASH_CASES])
def test_crash_coverage(crash_net, case):
    name, kwargs, rates, metric = case
    net, X, arrays = crash_net
    fault = NeuronCrash(**kwargs)
    assert np.allclose(fault.layer_rates(net.n_layers), rates)
    w, crash = _crash_patterns(net.widths, rates)
    exact, eps = _exact_prob(arrays, X, w, metric, crash=crash, sem=fault.semantics,
                             value=fault.value)
    _check_coverage(f"crash {name}", net, fault, X, exact, metric, eps, n_samples=300)


def test_crash_permanent_one_input(crash_net):
    """m = 1: chips are i.i.d. and the interval is Clopper-Pearson over chips."""
    net, X, arrays = crash_net
    x = X[:1]
    rates = [0, 0.08, 0.08, 0.08]
    w, crash = _crash_patterns(net.widths, rates)
    exact, eps = _exact_prob(arrays, x, w, "linf", crash=crash)
    r = simulate(net, NeuronCrash(0.08), x, metric="linf", eps=eps, n_samples=10, mode="permanent")
    assert r.interval_method == "Clopper-Pearson over chips"
    _check_coverage("crash permanent m=1", net, NeuronCrash(0.08), x, exact, "linf", eps,
                    n_samples=400, mode="permanent")


def test_crash_permanent_several_inputs(crash_net):
    """m > 1: the empirical Bernstein interval over chips (conservative) covers too."""
    net, X, arrays = crash_net
    rates = [0, 0.08, 0.08, 0.08]
    w, crash = _crash_patterns(net.widths, rates)
    exact, eps = _exact_prob(arrays, X, w, "linf", crash=crash)
    _check_coverage("crash permanent m=4", net, NeuronCrash(0.08), X, exact, "linf", eps,
                    n_samples=400, mode="permanent")


# --- 4: stuck synapses ------------------------------------------------------------------------

def _stuck_patterns(Ws, stuck_max, p0, p1):
    """All 3^n states (healthy, stuck at 0, stuck at max) of the synapses: weights, batched W.

    ``stuck_max[l]`` is one magnitude, or a pair (positive value, negative magnitude).
    """
    shapes = [W.shape for W in Ws]
    sizes = [W.size for W in Ws]
    n = sum(sizes)
    assert n <= 8
    idx = np.arange(3 ** n, dtype=np.int64)
    states = (idx[:, None] // 3 ** np.arange(n)) % 3  # 0 healthy, 1 zero, 2 max
    w = np.prod(np.choose(states, [1.0 - p0 - p1, p0, p1]), axis=1)
    faulty, start = [], 0
    for W, shape, size, vmax in zip(Ws, shapes, sizes, stuck_max):
        s = states[:, start:start + size].reshape(-1, *shape)
        vpos, vneg = (vmax, vmax) if np.ndim(vmax) == 0 else vmax
        at_max = np.where(W < 0, -vneg, vpos)  # sign kept; a zero weight becomes positive
        faulty.append(np.where(s == 0, W, np.where(s == 1, 0.0, at_max)))
        start += size
    return w, faulty


@pytest.fixture(scope="module")
def stuck_net():
    net = Network.random([2, 2, 1], activation="relu", seed=5)
    X = np.random.default_rng(7).normal(size=(4, 2))
    return net, X


@pytest.mark.parametrize("p0,p1", [(0.1, 0.05), (0.0, 0.12), (0.2, 0.0)])
def test_stuck_float_coverage(stuck_net, p0, p1):
    net, X = stuck_net
    Ws, bs, acts = _arrays(net)
    stuck_max = [np.abs(W).max() for W in Ws]
    w, faulty = _stuck_patterns(Ws, stuck_max, p0, p1)
    arrays = {"W": Ws, "faulty_W": faulty, "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf")
    _check_coverage(f"stuck float p0={p0} p1={p1}", net, SynapseStuck(p0, p1), X, exact, "linf",
                    eps, n_samples=300)


def test_stuck_mapping_coverage(stuck_net):
    """On a mapping: the quantized weights scale * Q; stuck at max is the word's extreme value
    of the weight's sign: scale * (2^(b-1) - 1) up, -scale * 2^(b-1) down."""
    net, X = stuck_net
    bits = 4
    mapping = map_network(net, _profile(weight_bits=bits))
    Ws = [q.scale * q.Q.astype(np.float64) for q in mapping.quantization]
    assert all(np.abs(q.Q).max() <= 2 ** (bits - 1) for q in mapping.quantization)
    stuck_max = [(q.scale * (2 ** (bits - 1) - 1), q.scale * 2 ** (bits - 1))
                 for q in mapping.quantization]
    _, bs, acts = _arrays(net)
    w, faulty = _stuck_patterns(Ws, stuck_max, 0.1, 0.08)
    arrays = {"W": Ws, "faulty_W": faulty, "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf")
    _check_coverage("stuck mapping", mapping, SynapseStuck(0.1, 0.08), X, exact, "linf", eps,
                    n_samples=300)


# --- 5: weight bit flips ----------------------------------------------------------------------

def _word_after_flip(Q, mask, bits, mode):
    """Integer weight after XOR-ing ``mask`` into the stored word (independent re-implementation).

    ``mode``: "twos" (the word is Q), "twos2" (Loihi mixed sign: the word is Q / 2),
    "exc" / "inh" (Loihi single sign: the word is |Q|, the layer's sign is kept).
    """
    full = (1 << bits) - 1
    if mode in ("exc", "inh"):
        mag = (np.abs(Q) ^ mask) & full
        return mag if mode == "exc" else -mag
    step = 2 if mode == "twos2" else 1
    word = Q // step
    assert np.all(word * step == Q)
    assert np.all((word >= -(1 << (bits - 1))) & (word < (1 << (bits - 1))))
    u = (word & full) ^ mask  # two's complement bit pattern
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u) * step


def _bitflip_patterns(mapping, modes, p_bit):
    bits = mapping.profile.weight_bits
    Qs = [q.Q.astype(np.int64) for q in mapping.quantization]
    n_w = sum(Q.size for Q in Qs)
    assert n_w * bits <= 20
    pats = _bits(n_w * bits)
    w = _bernoulli_weights(pats, np.full(n_w * bits, p_bit))
    masks = (pats.reshape(-1, n_w, bits) * (1 << np.arange(bits))).sum(axis=2)  # (P, n_w)
    faulty, start = [], 0
    for q, Q, mode in zip(mapping.quantization, Qs, modes):
        m = masks[:, start:start + Q.size].reshape(-1, *Q.shape)
        faulty.append(q.scale * _word_after_flip(Q[None], m, bits, mode).astype(np.float64))
        start += Q.size
    return w, faulty


def test_word_semantics_examples():
    """The reference word semantics on hand-checked values."""
    # 3-bit two's complement: 3 = 011 -> flip bit 2 -> 111 = -1; -4 = 100 -> flip bit 0 -> -3.
    assert _word_after_flip(np.array(3), 4, 3, "twos") == -1
    assert _word_after_flip(np.array(-4), 1, 3, "twos") == -3
    # Loihi mixed sign, 3 bits: Q = -6 is word -3 = 101; flip bit 1 -> 111 = -1 -> Q = -2.
    assert _word_after_flip(np.array(-6), 2, 3, "twos2") == -2
    # Single sign: |Q| = 5 = 101, flip bit 1 -> 111 = 7, sign kept.
    assert _word_after_flip(np.array(-5), 2, 3, "inh") == -7
    assert _word_after_flip(np.array(5), 4, 3, "exc") == 1


@pytest.fixture(scope="module")
def flip_net():
    rng = np.random.default_rng(2)
    W1 = np.array([[0.9, -0.4], [-0.7, 0.5]])
    W2 = np.array([[0.8, 0.3]])  # single sign: a magnitude word on Loihi-style profiles
    net = Network.from_arrays([W1, W2], [np.array([0.1, -0.05]), np.array([0.02])],
                              ["relu", "identity"])
    return net, rng.normal(size=(4, 2))


@pytest.mark.parametrize("drop_lsb", [False, True], ids=["twos-complement", "loihi-words"])
def test_bitflip_coverage(flip_net, drop_lsb):
    net, X = flip_net
    bits = 3
    mapping = map_network(net, _profile(weight_bits=bits, mixed_sign_drop_lsb=drop_lsb))
    modes = ["twos2", "exc"] if drop_lsb else ["twos", "twos"]
    qnet = mapping.quantized_network()
    Ws, bs, acts = _arrays(qnet)
    for W, q in zip(Ws, mapping.quantization):
        assert np.array_equal(W, q.scale * q.Q)
    w, faulty = _bitflip_patterns(mapping, modes, 0.04)
    arrays = {"W": Ws, "faulty_W": faulty, "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf")
    _check_coverage(f"bitflip drop_lsb={drop_lsb}", mapping, WeightBitFlip(0.04), X, exact,
                    "linf", eps, n_samples=300)


# --- 6: core (tile) failures -----------------------------------------------------------------

def _core_patterns(mapping, p_core):
    """All failure patterns of used and spare cores; returns weights and dead cores (P, n_cores).

    Spares fail at the same rate; a chip's working spares replace its failed used cores,
    lowest core id first.
    """
    spares = mapping.profile.spare_cores_per_chip
    chips = sorted({c.chip for c in mapping.cores})
    n_slots = len(mapping.cores) + spares * len(chips)
    assert n_slots <= 14
    pats = _bits(n_slots)
    w = _bernoulli_weights(pats, np.full(n_slots, p_core))
    dead = np.zeros((pats.shape[0], len(mapping.cores)), dtype=bool)
    col = 0
    for chip in chips:
        used = sorted(c.core_id for c in mapping.cores if c.chip == chip)
        failed_used = pats[:, col:col + len(used)]
        failed_spares = pats[:, col + len(used):col + len(used) + spares].sum(axis=1)
        working = spares - failed_spares
        rank = np.cumsum(failed_used, axis=1)  # rank of each failed used core on its chip
        dead[:, used] = failed_used & (rank > working[:, None])
        col += len(used) + spares
    assert col == n_slots
    return w, dead


def _dead_neurons(mapping, dead):
    widths = mapping.network.widths
    masks = [None] + [np.zeros((dead.shape[0], n), dtype=bool) for n in widths[1:]]
    for c in mapping.cores:
        masks[c.layer][:, c.out_start:c.out_stop] |= dead[:, [c.core_id]]
    return masks


@pytest.fixture(scope="module")
def core_net():
    net = Network.random([3, 4, 4, 2], activation="relu", seed=8)
    X = np.random.default_rng(4).normal(size=(4, 3))
    return net, X


@pytest.mark.parametrize("cores_per_chip,spares,n_chips,p_core",
                         [(4, 1, 2, 0.2), (8, 2, 1, 0.25), (8, 0, 1, 0.1)])
def test_core_failure_coverage(core_net, cores_per_chip, spares, n_chips, p_core):
    net, X = core_net
    mapping = map_network(net, _profile(cores_per_chip=cores_per_chip, neurons_per_core=2,
                                        spare_cores_per_chip=spares))
    # Layout: 2 + 2 + 1 cores, numbered in layer order, `usable` per chip.
    usable = cores_per_chip - spares
    assert [(c.layer, c.out_start, c.out_stop) for c in mapping.cores] == [
        (1, 0, 2), (1, 2, 4), (2, 0, 2), (2, 2, 4), (3, 0, 2)]
    assert [c.chip for c in mapping.cores] == [k // usable for k in range(5)]
    assert len({c.chip for c in mapping.cores}) == n_chips
    qnet = mapping.quantized_network()
    Ws, bs, acts = _arrays(qnet)
    w, dead = _core_patterns(mapping, p_core)
    arrays = {"W": Ws, "faulty_W": Ws, "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf", dead=_dead_neurons(mapping, dead))
    _check_coverage(f"core cores={cores_per_chip} spares={spares} p={p_core}", mapping, CoreFailure(p_core),
                    X, exact, "linf", eps, n_samples=300)


def test_core_failure_with_stuck_crashes(core_net):
    """Crashes (stuck semantics) and core failures together: a failed core's neurons are silent."""
    net, X = core_net
    mapping = map_network(net, _profile(cores_per_chip=4, neurons_per_core=2,
                                        spare_cores_per_chip=1))
    qnet = mapping.quantized_network()
    Ws, bs, acts = _arrays(qnet)
    wc, dead = _core_patterns(mapping, 0.1)
    rates = [0, 0.0, 0.06, 0.1]  # 6 neurons: 2^6 x 2^7 patterns
    wn, crash = _crash_patterns(net.widths, rates)
    # Product of the two independent pattern sets.
    Pn, Pc = wn.size, wc.size
    w = np.repeat(wn, Pc) * np.tile(wc, Pn)
    crash = [np.repeat(c, Pc, axis=0) for c in crash]
    dead_masks = [None] + [np.tile(m, (Pn, 1)) for m in _dead_neurons(mapping, dead)[1:]]
    arrays = {"W": Ws, "faulty_W": Ws, "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf", crash=crash, dead=dead_masks, sem="stuck",
                             value=0.9)
    fault = NeuronCrash(rates, semantics="stuck", value=0.9) + CoreFailure(0.1)
    _check_coverage("core + stuck crashes", mapping, fault, X, exact, "linf", eps, n_samples=300)


def test_core_failure_permanent_one_input(core_net):
    net, X = core_net
    mapping = map_network(net, _profile(cores_per_chip=4, neurons_per_core=2,
                                        spare_cores_per_chip=1))
    Ws, bs, acts = _arrays(mapping.quantized_network())
    w, dead = _core_patterns(mapping, 0.15)
    arrays = {"W": Ws, "faulty_W": Ws, "b": bs, "acts": acts}
    x = X[1:2]
    exact, eps = _exact_prob(arrays, x, w, "linf", dead=_dead_neurons(mapping, dead))
    _check_coverage("core permanent m=1", mapping, CoreFailure(0.15), x, exact, "linf", eps,
                    n_samples=400, mode="permanent")


def _tile_weights(mapping, Ws, dead):
    """Per pattern weights with every failed tile's block read as 0."""
    out = [np.repeat(W[None], dead.shape[0], axis=0) for W in Ws]
    for c in mapping.cores:
        d = dead[:, c.core_id]
        out[c.layer - 1][d, c.out_start:c.out_stop, c.in_start:c.in_stop] = 0.0
    return out


def _crossbar_profile(spares):
    return _profile(architecture="crossbar", cores_per_chip=16, neurons_per_core=2, max_fan_in=2,
                    synapses_per_core=4, crossbar_rows=2, crossbar_cols=2,
                    spare_cores_per_chip=spares)


def test_crossbar_tile_failure_coverage():
    net = Network.random([4, 4, 2], activation="relu", seed=12)
    X = np.random.default_rng(9).normal(size=(4, 4))
    mapping = map_network(net, _crossbar_profile(spares=1))
    # 2 x 2 tiles for layer 1, 2 x 1 for layer 2.
    assert len(mapping.cores) == 6
    tiles = sorted((c.layer, c.out_start, c.out_stop, c.in_start, c.in_stop) for c in mapping.cores)
    assert tiles == sorted([(1, o, o + 2, i, i + 2) for o in (0, 2) for i in (0, 2)]
                           + [(2, 0, 2, i, i + 2) for i in (0, 2)])
    Ws, bs, acts = _arrays(mapping.quantized_network())
    w, dead = _core_patterns(mapping, 0.12)
    arrays = {"W": Ws, "faulty_W": _tile_weights(mapping, Ws, dead), "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf")
    _check_coverage("crossbar tiles spares=1", mapping, CoreFailure(0.12), X, exact, "linf", eps,
                    n_samples=300)


def test_crossbar_tiles_with_stuck_cells():
    """Stuck cells inside a failed tile read 0 like the rest of the tile."""
    net = Network.random([2, 2, 1], activation="relu", seed=6)
    X = np.random.default_rng(10).normal(size=(4, 2))
    profile = _profile(architecture="crossbar", cores_per_chip=16, neurons_per_core=1,
                       max_fan_in=2, synapses_per_core=2, crossbar_rows=2, crossbar_cols=1,
                       weight_bits=4)
    mapping = map_network(net, profile)
    assert len(mapping.cores) == 3
    Ws, bs, acts = _arrays(mapping.quantized_network())
    stuck_max = [(q.scale * (2 ** 3 - 1), q.scale * 2 ** 3) for q in mapping.quantization]
    ws, stuck_W = _stuck_patterns(Ws, stuck_max, 0.1, 0.1)
    wc, dead = _core_patterns(mapping, 0.15)
    Ps, Pc = ws.size, wc.size
    w = np.repeat(ws, Pc) * np.tile(wc, Ps)
    dead = np.tile(dead, (Ps, 1))
    faulty = [np.repeat(W, Pc, axis=0) for W in stuck_W]
    for c in mapping.cores:
        d = dead[:, c.core_id]
        faulty[c.layer - 1][d, c.out_start:c.out_stop, c.in_start:c.in_stop] = 0.0
    arrays = {"W": Ws, "faulty_W": faulty, "b": bs, "acts": acts}
    exact, eps = _exact_prob(arrays, X, w, "linf")
    _check_coverage("crossbar tiles + stuck", mapping, SynapseStuck(0.1, 0.1) + CoreFailure(0.15),
                    X, exact, "linf", eps, n_samples=300)
