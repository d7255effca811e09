"""Coverage of the simulator's interval against exact failure probabilities on tiny conv nets.

As in ``test_simulate_exact.py``: every fault pattern is enumerated and the exact failure
probability is computed with plain NumPy from an explicit faulty network per pattern. Here the
conv layers are unfolded into matrices by loops written in this file (not neurosim's
``Conv2d.connections``), pooling is hand-written, and which matrix entries a faulty stored
weight changes follows the documented storage rules: one kernel copy on a plain network and on
crossbars (every position), one copy per core with ``conv_weight_sharing``, one synapse per
connection without. Only the weights, the integer words and the core layout are read from
neurosim.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurosim import CoreFailure, NeuronCrash, SynapseStuck, WeightBitFlip
from neurosim.layers import Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d
from neurosim.mapping import map_network
from neurosim.network import Network
from test_simulate_exact import (  # noqa: F401  (the fixture makes Numba single-threaded here)
    _bernoulli_weights, _bits, _check_coverage, _choose_eps, _core_patterns, _exact,
    _metric_values, _one_numba_thread, _profile, _word_after_flip)


# --- an independent conv net ----------------------------------------------------------------

def _unfold(K, in_shape, stride=(1, 1), pad=(0, 0), groups=1):
    """``A`` (n_out, n_in) of a conv and ``idx`` (n_out, n_in): the flat kernel index of each
    entry (-1: no synapse), by explicit loops."""
    C_out, cig, kh, kw = K.shape
    C, H, W = in_shape
    Ho = (H + 2 * pad[0] - kh) // stride[0] + 1
    Wo = (W + 2 * pad[1] - kw) // stride[1] + 1
    cog = C_out // groups
    idx = -np.ones((C_out * Ho * Wo, C * H * W), dtype=np.int64)
    for co in range(C_out):
        for oy in range(Ho):
            for ox in range(Wo):
                i = (co * Ho + oy) * Wo + ox
                for c in range(cig):
                    ci = (co // cog) * cig + c
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * stride[0] - pad[0] + ky, ox * stride[1] - pad[1] + kx
                            if 0 <= iy < H and 0 <= ix < W:
                                idx[i, (ci * H + iy) * W + ix] = ((co * cig + c) * kh + ky) * kw + kx
    A = np.where(idx >= 0, K.ravel()[np.maximum(idx, 0)], 0.0)
    return A, idx


def _maxpool2(y, C, H, W):
    """2x2 max pooling with stride 2 of flat (P, C*H*W) activations."""
    P = y.shape[0]
    return y.reshape(P, C, H // 2, 2, W // 2, 2).max(axis=(3, 5)).reshape(P, -1)


def _gap(y, C, H, W):
    return y.reshape(y.shape[0], C, H * W).mean(axis=2)


def _forward(As, bs, acts, pools, x, P, crash=None, dead=None, sem="silent", value=0.0):
    """Outputs (P, n_L) of P variants; ``As[l-1]`` (n_l, n_in) or (P, n_l, n_in), ``pools[l-1]``
    the hand-written pooling before layer l (or None)."""
    y = np.repeat(np.asarray(x, dtype=np.float64)[None, :], P, axis=0)
    if crash is not None and crash[0] is not None:
        y = np.where(crash[0], value if sem == "stuck" else 0.0, y)
    for l in range(1, len(As) + 1):
        if pools[l - 1] is not None:
            y = pools[l - 1](y)
        A, b = As[l - 1], bs[l - 1]
        z = (np.einsum("pij,pj->pi", A, y) if A.ndim == 3 else y @ A.T) + b
        relu = acts[l - 1] == "relu"
        y = np.maximum(z, 0.0) if relu else z
        if crash is not None and crash[l] is not None:
            if sem == "silent":
                y = np.where(crash[l], 0.0, y)
            elif sem == "paper":
                y = np.where(crash[l], (np.maximum(b, 0.0) if relu else b)[None, :], y)
            else:
                y = np.where(crash[l], value, y)
        if dead is not None and dead[l] is not None:
            y = np.where(dead[l], 0.0, y)
    return y


def _exact_prob(ref, X, w, metric, faulty=None, target=0.25, **variant):
    P = w.size
    outs = [_forward(faulty or ref["A"], ref["b"], ref["acts"], ref["pools"], x, P, **variant)
            for x in X]
    cleans = [_forward(ref["A"], ref["b"], ref["acts"], ref["pools"], x, 1)[0] for x in X]
    M = _metric_values(outs, cleans, metric)
    eps = 0.5 if metric == "flip" else _choose_eps(M, w, target)
    return _exact(M, w, eps), eps


def _reference(net, kernels=None):
    """Independent arrays of ``net`` (conv-relu[-pool]-flatten-dense); ``kernels`` replaces the
    stored weights (a mapping's ``scale * Q``)."""
    As, idxs, bs, acts, pools = [], [], [], [], []
    for l, layer in enumerate(net.layers):
        K = np.asarray(layer.synapse_weights if kernels is None else kernels[l], np.float64)
        kinds = [t.kind for t in net.pre[l]]
        shape = net.shapes[l]
        if "maxpool2d" in kinds:
            pools.append(lambda y, s=shape: _maxpool2(y, *s))
        elif "global_avgpool2d" in kinds:
            pools.append(lambda y, s=shape: _gap(y, *s))
        else:
            pools.append(None)
        if layer.kind == "conv2d":
            pad = (layer.padding[0], layer.padding[2])
            A, idx = _unfold(K, layer.in_shape, layer.stride, pad, layer.groups)
        else:
            A, idx = K, np.arange(K.size).reshape(K.shape)
        As.append(A)
        idxs.append(idx)
        bs.append(np.asarray(layer.bias, np.float64))
        acts.append(layer.activation.name)
    return {"A": As, "idx": idxs, "b": bs, "acts": acts, "pools": pools}


@pytest.fixture(scope="module")
def conv_net():
    """1x3x3 -> conv 2ch 2x2 (8 neurons, relu) -> flatten -> dense 2."""
    rng = np.random.default_rng(21)
    net = Network([Conv2d.build(rng.normal(0, 0.8, (2, 1, 2, 2)), rng.normal(0, 0.2, 2),
                                (1, 3, 3), activation="relu"),
                   Flatten(), Dense(rng.normal(0, 0.6, (2, 8)), rng.normal(0, 0.1, 2))])
    return net, rng.normal(size=(4, 1, 3, 3))


@pytest.fixture(scope="module")
def pool_net():
    """1x4x4 -> conv 1ch 3x3 same (16 neurons) -> maxpool 2 -> flatten -> dense 2."""
    rng = np.random.default_rng(22)
    net = Network([Conv2d.build(rng.normal(0, 0.6, (1, 1, 3, 3)), rng.normal(0, 0.2, 1),
                                (1, 4, 4), padding=1, activation="relu"),
                   MaxPool2d(2), Flatten(),
                   Dense(rng.normal(0, 0.6, (2, 4)), rng.normal(0, 0.1, 2))])
    return net, rng.normal(size=(4, 1, 4, 4))


@pytest.fixture(scope="module")
def gap_net():
    """1x3x3 -> conv 1ch 2x2 (4 neurons, relu) -> global average pool -> dense 1."""
    rng = np.random.default_rng(23)
    net = Network([Conv2d.build(np.array([[[[0.9, -0.5], [0.4, 0.7]]]]), np.array([0.05]),
                                (1, 3, 3), activation="relu"),
                   GlobalAvgPool2d(), Flatten(), Dense(np.array([[1.3]]), np.array([0.1]))])
    return net, rng.normal(size=(4, 1, 3, 3))


def _flat(X):
    return X.reshape(X.shape[0], -1)


# --- neuron crashes ---------------------------------------------------------------------------

def _crash_patterns(widths, rates):
    slots = [(l, i) for l, n in enumerate(widths) for i in range(n) if rates[l] > 0]
    assert 1 <= len(slots) <= 16
    pats = _bits(len(slots))
    w = _bernoulli_weights(pats, np.array([rates[l] for l, _ in slots]))
    crash = [np.zeros((pats.shape[0], n), dtype=bool) for n in widths]
    for k, (l, i) in enumerate(slots):
        crash[l][:, i] = pats[:, k]
    return w, crash


CRASH_CASES = [
    ("silent-linf", dict(p=0.08), [0, 0.08, 0.08], "linf"),
    ("silent-flip", dict(p=0.12), [0, 0.12, 0.12], "flip"),
    ("paper-linf", dict(p=0.08, semantics="paper"), [0, 0.08, 0.08], "linf"),
    ("stuck-linf", dict(p=0.07, semantics="stuck", value=0.6), [0, 0.07, 0.07], "linf"),
    ("input-stuck", dict(p=[0.1, 0, 0], semantics="stuck", value=-0.5), [0.1, 0, 0], "linf"),
]


@pytest.mark.parametrize("case", CRASH_CASES, ids=[c[0] for c in CRASH_CASES])
def test_conv_crash_coverage(conv_net, case):
    name, kwargs, rates, metric = case
    net, X = conv_net
    ref = _reference(net)
    fault = NeuronCrash(**kwargs)
    w, crash = _crash_patterns(net.widths, rates)
    exact, eps = _exact_prob(ref, _flat(X), w, metric, crash=crash, sem=fault.semantics,
                             value=fault.value)
    _check_coverage(f"conv crash {name}", net, fault, X, exact, metric, eps, n_samples=300)


def test_conv_maxpool_crash_coverage(pool_net):
    """Crashes before a max pooling: a crashed neuron matters only where it was the maximum."""
    net, X = pool_net
    ref = _reference(net)
    rates = [0, 0.1, 0]
    w, crash = _crash_patterns(net.widths, rates)
    exact, eps = _exact_prob(ref, _flat(X), w, "linf", crash=crash)
    _check_coverage("conv+maxpool crash", net, NeuronCrash(rates), X, exact, "linf", eps,
                    n_samples=300)


# --- stuck synapses ----------------------------------------------------------------------------

def _weight_sites(ref, mapping=None, net=None):
    """The stored weights as fault sites: a list of (layer, entries) with ``entries`` the
    (rows, cols) of ``A`` that the site sets, and its kernel index."""
    sites = []
    for l, idx in enumerate(ref["idx"], start=1):
        n_k = int(idx.max()) + 1
        is_conv = net.layers[l - 1].kind == "conv2d"
        if not is_conv:
            for k in range(idx.size):
                sites.append((l, (np.array([k // idx.shape[1]]), np.array([k % idx.shape[1]])), k))
            continue
        if mapping is None or mapping.profile.architecture == "crossbar" or \
                mapping.profile.conv_weight_sharing:
            groups = [np.arange(idx.shape[0])] if mapping is None or \
                mapping.profile.architecture == "crossbar" else [
                    mapping.core_neurons(c) for c in mapping.layer_cores(l)]
            for neurons in groups:
                for k in range(n_k):
                    r, c = np.nonzero(idx[neurons] == k)
                    if r.size:
                        sites.append((l, (neurons[r], c), k))
        else:
            r, c = np.nonzero(idx >= 0)
            for a, b in zip(r, c):
                sites.append((l, (np.array([a]), np.array([b])), int(idx[a, b])))
    return sites


def _stuck_faulty(ref, sites, states, at_max):
    """Per pattern matrices: site s in state 1 -> entries 0, state 2 -> ``at_max`` of its layer
    with the weight's sign."""
    P = states.shape[0]
    faulty = [np.repeat(A[None], P, axis=0) for A in ref["A"]]
    for s, (l, (r, c), k) in enumerate(sites):
        A = faulty[l - 1]
        base = ref["A"][l - 1][r, c]
        vpos, vneg = at_max[l - 1]
        top = np.where(base < 0, -vneg, vpos)
        for state, val in ((1, np.zeros_like(base)), (2, top)):
            rows = np.flatnonzero(states[:, s] == state)
            if rows.size:
                A[rows[:, None], r[None, :], c[None, :]] = val[None, :]
    return faulty


def _stuck_weights(n_sites, p0, p1):
    if p1 == 0 or p0 == 0:  # binary states: 2^n patterns
        pats = _bits(n_sites).astype(np.int64)
        states = pats * (1 if p1 == 0 else 2)
        w = _bernoulli_weights(pats.astype(bool), np.full(n_sites, p0 + p1))
    else:
        assert n_sites <= 10
        idx = np.arange(3 ** n_sites, dtype=np.int64)
        states = (idx[:, None] // 3 ** np.arange(n_sites)) % 3
        w = np.prod(np.choose(states, [1.0 - p0 - p1, p0, p1]), axis=1)
    return w, states


def test_conv_stuck_one_copy_coverage(gap_net):
    """A plain network stores each kernel weight once: a stuck one changes every position."""
    net, X = gap_net
    ref = _reference(net)
    sites = _weight_sites(ref, net=net)
    assert len(sites) == 5 and all(s[1][0].size == 4 for s in sites[:4])
    w, states = _stuck_weights(len(sites), 0.1, 0.08)
    at_max = [(np.abs(A).max(),) * 2 for A in (net.layers[0].K, net.layers[1].W)]
    faulty = _stuck_faulty(ref, sites, states, at_max)
    exact, eps = _exact_prob(ref, _flat(X), w, "linf", faulty=faulty)
    _check_coverage("conv stuck one copy", net, SynapseStuck(0.1, 0.08), X, exact, "linf", eps,
                    n_samples=300)


@pytest.mark.parametrize("share, p0, p1", [(True, 0.1, 0.07), (False, 0.06, 0.0),
                                           (False, 0.0, 0.05)],
                         ids=["per-core-copy", "per-connection-at-0", "per-connection-at-max"])
def test_conv_stuck_mapping_coverage(gap_net, share, p0, p1):
    net, X = gap_net
    bits = 4
    mapping = map_network(net, _profile(weight_bits=bits, neurons_per_core=2,
                                        conv_weight_sharing=share))
    assert len(mapping.layer_cores(1)) == 2
    kernels = [q.scale * q.Q.astype(np.float64) for q in mapping.quantization]
    ref = _reference(net, kernels)
    sites = _weight_sites(ref, mapping, net)
    assert len(sites) == (2 * 4 + 1 if share else 16 + 1)
    at_max = [(q.scale * (2 ** (bits - 1) - 1), q.scale * 2 ** (bits - 1))
              for q in mapping.quantization]
    w, states = _stuck_weights(len(sites), p0, p1)
    faulty = _stuck_faulty(ref, sites, states, at_max)
    exact, eps = _exact_prob(ref, _flat(X), w, "linf", faulty=faulty)
    _check_coverage(f"conv stuck mapping share={share} p0={p0} p1={p1}", mapping,
                    SynapseStuck(p0, p1), X, exact, "linf", eps, n_samples=300)


# --- bit flips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("share", [True, False], ids=["per-core-copy", "per-connection"])
def test_conv_bitflip_coverage(share):
    """The conv layer on one core: one copy of its 2 kernel words (conv_weight_sharing), or one
    word per connection (4, no sharing); the dense word on its own core."""
    net = Network([Conv2d.build(np.array([[[[0.8, -0.45]]]]), np.array([0.05]), (1, 1, 3),
                                activation="relu"),
                   GlobalAvgPool2d(), Flatten(), Dense(np.array([[0.9]]), np.array([-0.02]))])
    X = np.random.default_rng(5).normal(size=(4, 1, 1, 3))
    bits = 3
    mapping = map_network(net, _profile(weight_bits=bits, neurons_per_core=2,
                                        conv_weight_sharing=share))
    assert len(mapping.layer_cores(1)) == 1
    Qs = [q.Q.astype(np.int64) for q in mapping.quantization]
    kernels = [q.scale * Q for q, Q in zip(mapping.quantization, Qs)]
    ref = _reference(net, kernels)
    sites = _weight_sites(ref, mapping, net)
    assert len(sites) == (3 if share else 5)
    pats = _bits(len(sites) * bits)
    w = _bernoulli_weights(pats, np.full(pats.shape[1], 0.05))
    masks = (pats.reshape(-1, len(sites), bits) * (1 << np.arange(bits))).sum(axis=2)
    faulty = [np.repeat(A[None], pats.shape[0], axis=0) for A in ref["A"]]
    for s, (l, (r, c), k) in enumerate(sites):
        q = mapping.quantization[l - 1]
        word = _word_after_flip(Qs[l - 1].ravel()[k], masks[:, s], bits, "twos")
        faulty[l - 1][:, r, c] = (q.scale * word.astype(np.float64))[:, None]
    exact, eps = _exact_prob(ref, _flat(X), w, "linf", faulty=faulty)
    _check_coverage(f"conv bitflip share={share}", mapping, WeightBitFlip(0.05), X, exact,
                    "linf", eps, n_samples=300)


# --- core and tile failures ----------------------------------------------------------------------

def test_conv_core_failure_coverage(conv_net):
    """A failed core silences its channel x row x column block."""
    net, X = conv_net
    mapping = map_network(net, _profile(neurons_per_core=4, cores_per_chip=8,
                                        spare_cores_per_chip=1))
    conv_cores = mapping.layer_cores(1)
    assert len(conv_cores) == 2
    blocks = [set(mapping.core_neurons(c).tolist()) for c in conv_cores]
    assert blocks[0].isdisjoint(blocks[1]) and blocks[0] | blocks[1] == set(range(8))
    ref = _reference(net, [q.scale * q.Q.astype(np.float64) for q in mapping.quantization])
    w, dead = _core_patterns(mapping, 0.15)
    masks = [None] + [np.zeros((dead.shape[0], n), dtype=bool) for n in net.widths[1:]]
    for c in mapping.cores:
        masks[c.layer][:, mapping.core_neurons(c)] |= dead[:, [c.core_id]]
    exact, eps = _exact_prob(ref, _flat(X), w, "linf", dead=masks)
    _check_coverage("conv core failure", mapping, CoreFailure(0.15), X, exact, "linf", eps,
                    n_samples=300)


def test_conv_crossbar_tiles_with_stuck_cells(gap_net):
    """Crossbar tiles of the unfolded kernel (rows ci kh kw + ky kw + kx, columns = output
    channels) are reused at every position; a failed tile zeroes its kernel weights everywhere,
    stuck cells inside it included."""
    net, X = gap_net
    bits = 4
    profile = _profile(architecture="crossbar", cores_per_chip=16, neurons_per_core=1,
                       max_fan_in=2, synapses_per_core=2, crossbar_rows=2, crossbar_cols=1,
                       weight_bits=bits)
    mapping = map_network(net, profile)
    conv_tiles = [(c.out_start, c.out_stop, c.in_start, c.in_stop) for c in mapping.layer_cores(1)]
    assert conv_tiles == [(0, 1, 0, 2), (0, 1, 2, 4)] and len(mapping.cores) == 3
    kernels = [q.scale * q.Q.astype(np.float64) for q in mapping.quantization]
    ref = _reference(net, kernels)
    sites = _weight_sites(ref, mapping, net)
    assert len(sites) == 5
    at_max = [(q.scale * (2 ** (bits - 1) - 1), q.scale * 2 ** (bits - 1))
              for q in mapping.quantization]
    ws, states = _stuck_weights(len(sites), 0.1, 0.1)
    stuck = _stuck_faulty(ref, sites, states, at_max)
    wc, dead = _core_patterns(mapping, 0.15)
    Ps, Pc = ws.size, wc.size
    w = np.repeat(ws, Pc) * np.tile(wc, Ps)
    dead = np.tile(dead, (Ps, 1))
    faulty = [np.repeat(A, Pc, axis=0) for A in stuck]
    idx = ref["idx"][0]
    for c in mapping.cores:
        d = dead[:, c.core_id]
        if c.layer == 1:  # kernel rows in_start:in_stop of 1 input channel, 2x2 taps
            r, col = np.nonzero((idx >= c.in_start) & (idx < c.in_stop))
            sel = np.flatnonzero(d)
            faulty[0][sel[:, None], r[None, :], col[None, :]] = 0.0
        else:
            faulty[1][d, c.out_start:c.out_stop, c.in_start:c.in_stop] = 0.0
    exact, eps = _exact_prob(ref, _flat(X), w, "linf", faulty=faulty)
    _check_coverage("conv crossbar tiles + stuck", mapping,
                    SynapseStuck(0.1, 0.1) + CoreFailure(0.15), X, exact, "linf", eps,
                    n_samples=300)


# --- the certificate and the stratified estimator on conv nets --------------------------------------

def _per_input_failure(ref, X, w, metric, eps, **variant):
    P = w.size
    outs = [_forward(ref["A"], ref["b"], ref["acts"], ref["pools"], x, P, **variant) for x in X]
    cleans = [_forward(ref["A"], ref["b"], ref["acts"], ref["pools"], x, 1)[0] for x in X]
    M = _metric_values(outs, cleans, metric)  # (P, m)
    return (w[:, None] * (M >= eps)).sum(axis=0)


@pytest.mark.parametrize("budget, n_samples", [(4_000_000, 100), (60, 60)],
                         ids=["exact-strata", "sampled-strata"])
def test_conv_certificate_covers_the_exact_failure_probability(conv_net, budget, n_samples):
    from neurosim import certify

    net, _ = conv_net
    ref = _reference(net)
    p, eps = 0.12, 0.35
    w, crash = _crash_patterns(net.widths, [0, p, p])
    X_pop = np.random.default_rng(1234).normal(size=(40, 1, 3, 3))
    per_input = _per_input_failure(ref, _flat(X_pop), w, "linf", eps, crash=crash)
    population = per_input.mean()
    assert 0.05 < population < 0.5
    upper_ok = lower_ok = inputs_ok = sampled = 0
    for s in range(100):
        idx = np.random.default_rng([7, s]).integers(0, 40, size=15 + s % 11)
        cert = certify(net, NeuronCrash(p), X_pop[idx], metric="linf", eps=eps, delta=0.5,
                       confidence=0.9, seed=s, n_samples=n_samples, work_budget=budget,
                       theory=False, advice=False)
        upper_ok += cert.delta_upper >= population
        lower_ok += cert.delta_lower <= population
        inputs_ok += cert.empirical.lower <= per_input[idx].mean() <= cert.empirical.upper
        sampled += any(st.method == "sampled" for st in cert.empirical.strata)
    print(f"conv certificate {budget}: population {population:.4f}, upper {upper_ok}/100, "
          f"lower {lower_ok}/100, over the inputs {inputs_ok}/100, sampled {sampled}/100")
    assert upper_ok >= 90 and lower_ok >= 90 and inputs_ok >= 80
    assert (sampled == 100) if budget < 1000 else True


def test_conv_stratified_estimate_equals_the_enumeration(pool_net):
    from neurosim.certify import stratified_estimate

    net, X = pool_net
    ref = _reference(net)
    p, eps = 0.1, 0.3
    w, crash = _crash_patterns(net.widths, [0, p, 0])
    exact = _per_input_failure(ref, _flat(X), w, "linf", eps, crash=crash).mean()
    res = stratified_estimate(net, NeuronCrash([0, p, 0]), X, metric="linf", eps=eps, k_cap=16,
                              tail_target=1e-12)
    assert all(st.method == "exact" for st in res.strata)
    assert res.estimate == pytest.approx(exact, rel=1e-9, abs=res.tail)
    # 1e-12: the reference adds 2^16 pattern weights (rounding ~1e-14); the bounds are tight.
    assert res.lower - 1e-12 <= exact <= res.upper + 1e-12
