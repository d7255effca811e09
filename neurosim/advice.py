"""Predictions of what would make a network certify: wider layers or replicas.

Both are *predictions* from the paper's scaling law, not certificates: re-run ``certify`` on
the changed network to know.
"""

from __future__ import annotations

import math


def replicas_needed(delta: float) -> int:
    """The paper's algorithm: ``R = 2 ln(1/delta) / ln 3`` replicas with a median vote.

    It needs each replica to fail with probability at most 1/3 (then the median fails only if
    half of them do: ``P <= exp(-R ln(3) / 2)`` by a Chernoff bound).
    """
    return max(1, math.ceil(2.0 * math.log(1.0 / delta) / math.log(3.0)))


def width_factor(current: float, target: float) -> float:
    """How much wider every faulty layer must be if ``delta ~ Var(Delta) ~ sum_l C_l p_l / n_l``."""
    if current <= target:
        return 1.0
    return current / target


def advise(cert, network, faults) -> dict:
    """Width and replica predictions for a certificate that did not certify."""
    out = {}
    estimate = max(cert.delta_estimate, cert.empirical.lower)
    if estimate > 0:
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
    if estimate < 1.0 / 3.0:
        R = replicas_needed(cert.delta)
        out["replicas"] = (
            f"{R} replicas with a median vote (R = 2 ln(1/delta) / ln 3, paper's algorithm; needs "
            f"each replica's failure probability <= 1/3, estimated {estimate:.3g})")
    else:
        out["replicas"] = (
            f"replicas do not help yet: each replica fails with probability ~{estimate:.3g} > 1/3")
    if cert.n_inputs < math.log(1.0 / ((1 - cert.confidence) / 4)) / cert.delta:
        need = math.ceil(math.log(1.0 / ((1 - cert.confidence) / 4)) / cert.delta)
        out["inputs"] = (
            f"with {cert.n_inputs} inputs the population bound cannot go below "
            f"~{math.log(1.0 / ((1 - cert.confidence) / 4)) / cert.n_inputs:.3g} even with no "
            f"failure; about {need} inputs are needed to certify delta = {cert.delta:g}")
    return out
