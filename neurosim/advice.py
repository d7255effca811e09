"""Predictions of what would make a network certify: more inputs, wider layers or replicas.

All are *predictions*, not certificates: re-run ``certify`` on the changed network (or with
the extra inputs) to know.
"""

from __future__ import annotations

import math

import numpy as np

from neurosim.errors import param_error
from neurosim.stats import betting_rejects, kl_bernoulli

__all__ = ["replicas_needed", "vote_failure", "paper_replicas", "inputs_needed",
           "inputs_needed_betting", "MAX_INPUTS", "width_factor", "advise"]

#: :func:`inputs_needed_betting` looks no further than this many inputs.
MAX_INPUTS = 1 << 24


def vote_failure(R: int, p: float) -> float:
    """Probability that the median vote of ``R`` (odd) independent replicas fails when each
    fails with probability ``p``: ``P(Binomial(R, p) >= (R + 1) / 2)``, exactly."""
    from scipy.stats import binom

    R = int(R)
    if R < 1 or R % 2 == 0:
        raise param_error("vote_failure", "R", "an odd number of replicas >= 1", R)
    return float(binom.sf((R + 1) // 2 - 1, R, float(p)))


def paper_replicas(delta: float) -> int:
    """The paper's code's replica count ``R = 2 ln(1/delta) / ln 3``, kept for comparison: it is
    *wrong* (``vote_failure(21, 1/3) = 0.056``, not the 1e-5 it is meant to give); use
    :func:`replicas_needed`."""
    return max(1, math.ceil(2.0 * math.log(1.0 / delta) / math.log(3.0)))


def replicas_needed(delta: float, p: float = 1.0 / 3.0) -> int:
    """The smallest odd ``R`` whose median vote fails with probability ``<= delta`` when each of
    the ``R`` independent replicas fails with probability ``p < 1/2``, from the exact binomial
    tail :func:`vote_failure`.

    At ``p = 1/3``: 155 replicas for ``delta = 1e-5`` (the paper's ``2 ln(1/delta) / ln 3``
    gives 21, whose vote fails with probability 0.056), 81 for 1e-3, 47 for 1e-2, 15 for 0.1.
    The count assumes the replicas fail independently (separate chips or cores, independent
    faults); a shared cause of failure defeats any vote.
    """
    delta, p = float(delta), float(p)
    if not 0.0 < delta < 1.0:
        raise param_error("replicas_needed", "delta", "a probability in (0, 1)", delta)
    if not 0.0 <= p < 0.5:
        raise param_error("replicas_needed", "p", "a per-replica failure probability in [0, 1/2)"
                          " (a median vote cannot help at 1/2 or more)", p)
    if p <= delta:
        return 1
    # The tail of the odd-R vote falls with R (p < 1/2): double, then bisect over odd R.
    high = 1
    while vote_failure(high, p) > delta:
        high = 2 * high + 1
    low = (high - 1) // 2  # odd, and its vote fails with probability > delta (or it is 0)
    while high - low > 2:
        mid = (low + high) // 2
        mid += 1 - mid % 2  # odd
        if mid >= high:
            mid = high - 2
        if vote_failure(mid, p) > delta:
            low = mid
        else:
            high = mid
    return high


def inputs_needed(estimate: float, delta: float, alpha: float) -> "int | None":
    """How many inputs the KL population bound of :func:`neurosim.certify.certify`
    (``population="kl"``) needs to reach ``delta`` if the failure rate over them stays at
    ``estimate``: the smallest ``m`` with ``m d_KL(estimate || delta) >= ln(1/alpha)`` (the
    Chernoff-Hoeffding step at ``alpha``). None when ``estimate >= delta`` (no number of
    inputs helps)."""
    estimate = max(0.0, float(estimate))
    if estimate >= delta:
        return None
    return max(1, math.ceil(math.log(1.0 / alpha) / kl_bernoulli(estimate, delta)))


def inputs_needed_betting(values, delta: float, alpha: float) -> "int | None":
    """How many inputs the betting population bound of :func:`neurosim.certify.certify`
    (``population="betting"``) needs to reach ``delta`` if the further inputs' estimates
    repeat those given: the smallest ``n`` with ``betting_upper(np.resize(values, n), alpha)
    <= delta`` (delta rejected by :func:`neurosim.stats.betting_rejects`; found by doubling,
    then bisection, on that one test). None when the values'
    mean is at least ``delta`` (no number of inputs helps) or more than :data:`MAX_INPUTS`
    would be needed.

    All zeros (inputs that never fail) is exact: every further input adds a zero."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise param_error("inputs_needed_betting", "values", "a non-empty 1-D array",
                          f"an array of shape {values.shape}")
    if float(values.mean()) >= delta:
        return None
    high = 1
    while not betting_rejects(np.resize(values, high), delta, alpha):
        if high >= MAX_INPUTS:
            return None
        high = min(2 * high, MAX_INPUTS)
    low = high // 2  # 0, or a count that does not reach delta
    while high - low > 1:
        mid = (low + high) // 2
        if betting_rejects(np.resize(values, mid), delta, alpha):
            high = mid
        else:
            low = mid
    return high


def width_factor(current: float, target: float) -> float:
    """How much wider every faulty layer must be if ``delta ~ Var(Delta) ~ sum_l C_l p_l / n_l``."""
    if current <= target:
        return 1.0
    return current / target


def advise(cert, network, faults) -> dict:
    """What would make a certificate that did not certify reach its ``delta``.

    When the failure rate measured on the given inputs is already below ``delta``, the
    certificate failed for want of inputs (or fault draws), not of fault tolerance: the advice
    says so and how many inputs are needed, and proposes no change to the network. Otherwise
    it predicts wider layers (the paper's law) and replicas (the exact binomial tail).
    """
    out = {}
    estimate = max(cert.delta_estimate, cert.empirical.lower)
    values = getattr(cert.input_values, "upper", None)
    if cert.population == "betting" and values is not None:
        alpha = (1.0 - cert.confidence) / 2.0  # one step: each side's whole share (certify)
        below = float(np.mean(values)) < cert.delta
        need = inputs_needed_betting(values, cert.delta, alpha) if below else None
        rate = "if the further inputs fail as these do"
    else:
        alpha = (1.0 - cert.confidence) / 4.0  # the KL population step's share (certify)
        below = estimate < cert.delta
        need = inputs_needed(estimate, cert.delta, alpha)
        rate = "at the same failure rate"
    if below:
        needed = (f"about {need} inputs ({rate}) are needed" if need is not None else
                  f"more than {MAX_INPUTS} inputs ({rate}) would be needed")
        out["inputs"] = (
            f"the failure rate measured on these {cert.n_inputs} inputs ({estimate:.3g}) is "
            f"already below delta = {cert.delta:g}: the certificate is limited by the number of "
            f"inputs, not by the network. With {cert.n_inputs} inputs the population bound "
            f"stays at {cert.delta_upper:.3g}; {needed} to certify delta = {cert.delta:g}")
        if cert.empirical.upper > cert.delta:
            out["inputs"] += (
                f"; the fault sampling's own bound over these inputs is "
                f"{cert.empirical.upper:.3g} > delta, so more fault draws per input "
                f"(n_samples, or work_budget) are needed too")
        out["inputs"] += "; the network needs no change for it"
        return out
    factor = width_factor(estimate, cert.delta)
    # A conv layer's width is its number of channels (the paper's law for CNNs).
    hidden = network.layers[:-1]
    now = [getattr(layer, "c_out", layer.n_out) for layer in hidden]
    widths = [math.ceil(n * factor) for n in now]
    what = ("hidden widths (channels for conv layers)"
            if any(layer.kind == "conv2d" for layer in hidden) else "hidden widths")
    out["widths"] = (
        f"{what} {now} -> {widths} (x{factor:.3g}), from the paper's law "
        f"Var(Delta) ~ sum_l C_l p_l / n_l with delta ~ Var(Delta); retrain and re-certify"
        + ("; measured on the digits CNN, Var(Delta) did not fall with the channels "
           "(README, experiments)" if what != "hidden widths" else ""))
    # One replica's failure probability: its sound upper bound where that is below 1/2, else
    # the estimate (then the count is a prediction, like the widths).
    p_one, sound = (cert.delta_upper, True) if cert.delta_upper < 0.5 else (estimate, False)
    if p_one < 0.5:
        R = replicas_needed(cert.delta, p_one)
        out["replicas"] = (
            f"{R} independent replicas with a median vote: each fails with probability "
            f"<= {p_one:.3g} ({'the certified bound' if sound else 'estimated'}), and the vote "
            f"of {R} then fails with probability {vote_failure(R, p_one):.3g} <= "
            f"{cert.delta:g} (exact binomial tail; the paper's 2 ln(1/delta) / ln 3 = "
            f"{paper_replicas(cert.delta)} is too few)")
    else:
        out["replicas"] = (
            f"replicas do not help: each replica fails with probability ~{estimate:.3g} >= 1/2, "
            f"and a median vote then fails at least as often")
    return out
