"""Plots (matplotlib, PNG/PDF). The notebooks call these and stay thin."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["delta_vs_eps", "plot_delta_vs_eps"]


def delta_vs_eps(target, faults, X, y=None, *, metric="linf", eps_values=None, confidence=0.95,
                 seed=0, use_float=False, n_samples=300, certify_samples=100, delta_for_tail=None) -> dict:
    """Failure probability against eps three ways: simulated (Monte Carlo with its interval),
    the paper's Chebyshev certificate (Props. 3-5, first-order), and neurosim's sound upper
    bound over the input distribution.

    Returns a dict of arrays: ``eps, simulated, sim_low, sim_high, chebyshev, sound_upper,
    sound_lower, inputs_upper``.
    """
    from neurosim.certify import certify
    from neurosim.faults import as_fault_model, profile_faults
    from neurosim.mapping import Mapping
    from neurosim.simulation import simulate
    from neurosim.theory.bounds import chebyshev_certificate, theory_report

    if metric not in ("linf", "l2"):
        from neurosim.errors import ValidationError

        raise ValidationError(f"delta_vs_eps plots the output metrics 'linf' and 'l2'. Got {metric!r}.")
    if faults is None:
        faults = profile_faults(target.profile)
    faults = as_fault_model(faults)
    eps_values = np.geomspace(0.1, 5.0, 6) if eps_values is None else np.asarray(eps_values, float)
    out = {k: [] for k in ("simulated", "sim_low", "sim_high", "chebyshev", "sound_upper",
                           "sound_lower", "inputs_upper")}
    crash = faults.get("crash")
    report = None
    if crash is not None and not crash.is_null():
        network = target.quantized_network() if isinstance(target, Mapping) and not use_float else (
            target.network if isinstance(target, Mapping) else target)
        report = theory_report(network, crash, X, y, metric=metric, eps=float(eps_values[0]))
    for eps in eps_values:
        sim = simulate(target, faults, X, y, metric=metric, eps=float(eps), n_samples=n_samples,
                       seed=seed, confidence=confidence, use_float=use_float)
        out["simulated"].append(sim.failure_rate)
        out["sim_low"].append(sim.ci_low)
        out["sim_high"].append(sim.ci_high)
        if report is not None:
            pi = report.per_input
            cheb = chebyshev_certificate(pi["taylor_mean"], pi["taylor_var"], float(eps), report.delta0)
            out["chebyshev"].append(float(min(1.0, cheb.mean())))
        else:
            out["chebyshev"].append(np.nan)
        cert = certify(target, faults, X, y, metric=metric, eps=float(eps),
                       delta=delta_for_tail or 0.5, confidence=confidence, seed=seed,
                       use_float=use_float, n_samples=certify_samples, theory=False, advice=False)
        out["sound_upper"].append(cert.delta_upper)
        out["sound_lower"].append(cert.delta_lower)
        out["inputs_upper"].append(cert.empirical.upper)
    result = {k: np.asarray(v) for k, v in out.items()}
    result["eps"] = eps_values
    return result


def plot_delta_vs_eps(target, faults, X, y=None, *, metric="linf", eps_values=None, delta=None,
                      confidence=0.95, seed=0, use_float=False, path=None, data=None, ax=None):
    """Plot :func:`delta_vs_eps` (computed unless ``data`` is given); save to ``path`` if given.

    Returns the matplotlib figure.
    """
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    d = data if data is not None else delta_vs_eps(
        target, faults, X, y, metric=metric, eps_values=eps_values, confidence=confidence,
        seed=seed, use_float=use_float, delta_for_tail=delta)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
    else:
        fig = ax.figure
    eps = d["eps"]
    floor = 1e-9
    sim = np.maximum(d["simulated"], floor)
    ax.fill_between(eps, np.maximum(d["sim_low"], floor), np.maximum(d["sim_high"], floor),
                    color="C0", alpha=0.2, label=f"simulated, {100 * confidence:g} % interval")
    ax.plot(eps, sim, "o-", color="C0", label="simulated (Monte Carlo)")
    if np.isfinite(d["chebyshev"]).any():
        ax.plot(eps, np.maximum(d["chebyshev"], floor), "s--", color="C1",
                label="paper: Chebyshev (Props. 3-5, first-order)")
    ax.plot(eps, np.maximum(d["sound_upper"], floor), "^-", color="C3",
            label="neurosim: sound upper bound (population)")
    ax.plot(eps, np.maximum(d["inputs_upper"], floor), "v:", color="C3",
            label="sound upper bound (given inputs)")
    if delta is not None:
        ax.axhline(delta, color="k", lw=0.8, ls=":", label=f"target delta = {delta:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"eps ({metric} error threshold)")
    ax.set_ylabel("P(error >= eps)")
    shown = np.concatenate([d[k] for k in ("simulated", "sim_low", "sound_upper", "chebyshev")])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    ax.set_ylim(max(floor, 0.3 * shown.min()) if shown.size else floor, 1.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=120)
        plt.close(fig)
    return fig
