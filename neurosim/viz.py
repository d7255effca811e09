"""Plots (matplotlib, PNG/PDF). The notebooks call these and stay thin."""

from __future__ import annotations

import os

import numpy as np

from neurosim.certify import certify
from neurosim.errors import ValidationError
from neurosim.mapping import target_network
from neurosim.plan import resolve_faults
from neurosim.simulation import simulate
from neurosim.theory.bounds import chebyshev_certificate, theory_report

__all__ = ["delta_vs_eps", "plot_delta_vs_eps", "plot_error_decay", "plot_tradeoff",
           "plot_chip_mapping", "plot_analog_sweep", "PLOT_METRICS", "check_plot_metric"]

#: The metrics :func:`delta_vs_eps` can plot (output errors with a threshold eps).
PLOT_METRICS = ("linf", "l2")


def check_plot_metric(metric: str, owner: str = "delta_vs_eps") -> None:
    """Raise ValidationError unless ``metric`` can be plotted against eps."""
    if metric not in PLOT_METRICS:
        raise ValidationError(
            f"{owner} plots delta against eps for the output metrics 'linf' and 'l2'. Got "
            f"{metric!r}; choose --metric linf or l2 (the default 'flip' has no eps to vary)."
        )


def delta_vs_eps(target, faults, X, y=None, *, metric="linf", eps_values=None, confidence=0.95,
                 seed=0, use_float=False, n_samples=300, certify_samples=100, delta_for_tail=None,
                 backend="auto") -> dict:
    """Failure probability against eps three ways: simulated (Monte Carlo with its interval),
    the paper's Chebyshev certificate (Props. 3-5, first-order), and neurosim's sound upper
    bound over the input distribution.

    Returns a dict of arrays: ``eps, simulated, sim_low, sim_high, chebyshev, sound_upper,
    sound_lower, inputs_upper``.
    """
    check_plot_metric(metric)
    faults = resolve_faults(target, faults, "delta_vs_eps", use_float)
    eps_values = np.geomspace(0.1, 5.0, 6) if eps_values is None else np.asarray(eps_values, float)
    out = {k: [] for k in ("simulated", "sim_low", "sim_high", "chebyshev", "sound_upper",
                           "sound_lower", "inputs_upper")}
    crash = faults.get("crash")
    report = None
    if crash is not None and not crash.is_null():
        network, _ = target_network(target, use_float, "delta_vs_eps")
        report = theory_report(network, crash, X, y, metric=metric, eps=float(eps_values[0]),
                               backend=backend)
    for eps in eps_values:
        sim = simulate(target, faults, X, y, metric=metric, eps=float(eps), n_samples=n_samples,
                       seed=seed, confidence=confidence, use_float=use_float, backend=backend)
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
                       use_float=use_float, n_samples=certify_samples, theory=False, advice=False,
                       backend=backend)
        out["sound_upper"].append(cert.delta_upper)
        out["sound_lower"].append(cert.delta_lower)
        out["inputs_upper"].append(cert.empirical.upper)
    result = {k: np.asarray(v) for k, v in out.items()}
    result["eps"] = eps_values
    return result


def plot_delta_vs_eps(target, faults, X, y=None, *, metric="linf", eps_values=None, delta=None,
                      confidence=0.95, seed=0, use_float=False, path=None, data=None, ax=None,
                      backend="auto"):
    """Plot :func:`delta_vs_eps` (computed unless ``data`` is given); save to ``path`` if given.

    Returns the matplotlib figure.
    """
    if data is None:
        check_plot_metric(metric, "plot_delta_vs_eps")
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    d = data if data is not None else delta_vs_eps(
        target, faults, X, y, metric=metric, eps_values=eps_values, confidence=confidence,
        seed=seed, use_float=use_float, delta_for_tail=delta, backend=backend)
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


# --- experiments (neurosim.experiments) ---------------------------------------------------------

def _figure(path, ax, ncols=1, figsize=(6.4, 4.4)):
    """A figure with ``ncols`` axes (or ``ax``'s figure); Agg backend when saving to a file."""
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is not None:
        axes = list(np.atleast_1d(ax))
        return axes[0].figure, axes
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    return fig, list(np.atleast_1d(axes))


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        import matplotlib.pyplot as plt

        fig.savefig(os.fspath(path), dpi=120)
        plt.close(fig)
    return fig


def _slope_label(fit) -> str:
    return (f"slope {fit['slope']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}]"
            if np.isfinite(fit["slope"]) else "slope n/a")


def plot_error_decay(result, path=None, ax=None):
    """Log-log Var Delta against hidden width (:func:`neurosim.experiments.error_decay`).

    Monte Carlo with its interval as error bars, Prop. 4 and the exact single-fault terms as
    lines, a fitted power law per method; the legend gives each slope with its confidence
    interval, and a dotted line shows the paper's slope -1 through the first Prop. 4 point.
    Returns the figure.
    """
    fig, (ax,) = _figure(path, ax)
    w = np.asarray(result.widths, dtype=np.float64)
    fits = result.fits
    conf = 100 * fits["mc"].get("confidence", 0.95)
    yerr = np.vstack([result.var_mc - result.var_mc_low, result.var_mc_high - result.var_mc])
    ax.errorbar(w, result.var_mc, yerr=np.maximum(yerr, 0), fmt="o", color="C0", capsize=3,
                label=f"Monte Carlo ({conf:g} % CI); {_slope_label(fits['mc'])}")
    ax.plot(w, result.var_taylor, "s--", color="C1", mfc="none",
            label=f"Prop. 4 (first order); {_slope_label(fits['taylor'])}")
    ax.plot(w, result.var_exact, "^:", color="C2", mfc="none",
            label=f"exact single-fault; {_slope_label(fits['exact'])}")
    grid = np.geomspace(w.min(), w.max(), 50)
    for key, color in (("mc", "C0"), ("taylor", "C1")):
        f = fits[key]
        if np.isfinite(f["slope"]):
            ax.plot(grid, np.exp(f["intercept"]) * grid ** f["slope"], "-", color=color, lw=0.8, alpha=0.6)
    ax.plot(grid, result.var_taylor[0] * (grid / w[0]) ** -1.0, "k:", lw=0.8, label="paper: slope -1")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    s = result.settings
    paper = s.get("setup") == "paper"
    ax.set_xlabel("channels c" if s.get("conv") else
                  "first hidden width n" if paper else "hidden width n")
    ax.set_ylabel("Var Delta (per output, mean over inputs)" if paper else
                  "Var Delta (sum over outputs, mean over inputs)")
    if paper:
        ax.set_title(f"{s.get('data', '')}, paper's set-up, p = {s.get('p', float('nan')):g} "
                     f"(first hidden layer), {s.get('repeats')} seeds", fontsize=9)
    else:
        ax.set_title(f"{s.get('data', '')}, depth {s.get('depth', '')}, p = "
                     f"{s.get('p', float('nan')):g} (silent hidden crashes)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_tradeoff(result, path=None, ax=None):
    """Clean accuracy against Var Delta and against the failure rate
    (:func:`neurosim.experiments.regularizer_tradeoff`); ``ax`` may be a pair of axes.

    Each point is one (lambda, mu) setting; the plain-training point is black, the best
    setting circled. Returns the figure.
    """
    fig, axes = _figure(path, ax, ncols=2, figsize=(11, 4.4))
    if len(axes) < 2:
        raise ValueError("plot_tradeoff needs two axes (accuracy vs Var Delta, vs failure rate).")
    base, best = result.baseline_index, int(result.best["index"])
    labels = [f"λ={a:g}, μ={b:g}" for a, b in zip(result.lam, result.mu)]
    s = result.settings
    for ax, x, lo, hi, xlabel in (
            (axes[0], result.var_exact, None, None,
             f"Var Delta, exact single-fault (p = {s.get('p', float('nan')):g}, hidden)"),
            (axes[1], result.failure_rate, result.failure_low, result.failure_high,
             f"failure rate P(argmax flips) on {s.get('profile', '')} (default rates)")):
        colors = np.log10(1 + result.lam)
        sc = ax.scatter(x, result.clean_accuracy, c=colors, cmap="viridis",
                        s=30 + 400 * np.asarray(result.mu), zorder=3, edgecolors="k", linewidths=0.3)
        if lo is not None:
            ax.errorbar(x, result.clean_accuracy, xerr=np.maximum([x - lo, hi - x], 0), fmt="none",
                        ecolor="0.6", zorder=2)
        ax.scatter([x[base]], [result.clean_accuracy[base]], marker="s", s=80, facecolors="none",
                   edgecolors="k", zorder=4, label="plain training")
        ax.scatter([x[best]], [result.clean_accuracy[best]], marker="o", s=220, facecolors="none",
                   edgecolors="C3", lw=1.5, zorder=4, label=f"best: {labels[best]}")
        for i, text in enumerate(labels):
            ax.annotate(text, (x[i], result.clean_accuracy[i]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(result.clean_accuracy[base] - result.best["max_accuracy_drop"], color="C3",
                   lw=0.8, ls=":", label=f"{100 * result.best['max_accuracy_drop']:g} point accuracy lost")
        if np.all(x > 0) and x.max() > 10 * x.min():  # log only where it spans a decade
            ax.set_xscale("log")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("clean test accuracy")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.colorbar(sc, ax=axes[1], label="log10(1 + λ)  (size: μ)")
    b = result.best
    axes[0].set_title(f"best: Var Delta {b['var_reduction']:.2f}x lower, accuracy "
                      f"{100 * b['accuracy_change']:+.1f} points", fontsize=9)
    return _finish(fig, path)


def plot_chip_mapping(result, path=None, ax=None):
    """Cores used per profile, per-core utilization and per-core failure impact
    (:func:`neurosim.experiments.chip_mapping`); ``ax`` may be three axes. Returns the figure.
    """
    fig, axes = _figure(path, ax, ncols=3, figsize=(15, 4.4))
    if len(axes) < 3:
        raise ValueError("plot_chip_mapping needs three axes.")
    names = list(result.profiles)
    used = np.asarray(result.cores_used)
    ax = axes[0]
    bars = ax.bar(range(len(names)), np.maximum(used, 0), color=["C0" if u > 0 else "0.7" for u in used])
    for i, (bar, u) in enumerate(zip(bars, used)):
        ax.annotate("n/a" if u < 0 else f"{int(u)}", (bar.get_x() + bar.get_width() / 2, max(u, 0)),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("cores (tiles) used")
    ax.set_title("cores per profile", fontsize=9)
    # utilization: one row per profile, one cell per core
    ax = axes[1]
    n_max = max([len(result.utilization[n]) for n in names] + [1])
    grid = np.full((len(names), n_max), np.nan)
    for i, n in enumerate(names):
        u = result.utilization[n]
        grid[i, :len(u)] = u
    im = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("core id")
    ax.set_title("per-core utilization", fontsize=9)
    fig.colorbar(im, ax=ax, label="utilization")
    # impact: flip rate when one core of the impact mapping fails
    ax = axes[2]
    layers = np.asarray(result.core_layer)
    colors = [f"C{(int(l) - 1) % 10}" for l in layers]
    # log scale: an output core dwarfs the hidden ones; a rate of 0 is drawn at the floor
    floor = 0.5 / max(int(result.settings.get("n_inputs", 1) or 1), 1)
    ax.bar(np.arange(layers.size), np.maximum(result.core_flip_rate, floor), color=colors,
           bottom=0)
    for l in np.unique(layers):
        ax.bar([0], [0], color=f"C{(int(l) - 1) % 10}", label=f"layer {int(l)}")
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, 1.5)
    ax.axhline(floor, color="0.5", lw=0.6, ls=":", label="no flip (floor)")
    ax.set_xticks(np.arange(layers.size))
    ax.tick_params(axis="x", labelsize=6)
    ax.set_xlabel(f"core id ({result.impact_profile})")
    ax.set_ylabel("P(argmax flips | this core failed)")
    ax.set_title(f"single-core failure impact ({result.settings.get('n_inputs', '')} inputs)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return _finish(fig, path)


_ANALOG_STYLE = {("pcm", "analog"): ("C0", "o", "PCM"),
                 ("pcm", "compensated"): ("C0", "s", "PCM, drift compensated"),
                 ("rram", "analog"): ("C3", "^", "ReRAM"),
                 ("rram", "analog+stuck"): ("C1", "v", "ReRAM + stuck cells")}


def plot_analog_sweep(result, path=None, ax=None):
    """Accuracy and failure rate against the time since programming (log x) and against the
    ADC bits (:func:`neurosim.experiments.analog_sweep`), both profiles; ``ax`` may be a 2 x 2
    grid of axes (rows: accuracy, failure rate; columns: time, ADC bits).

    Failure-rate error bars are the result's intervals over chips; the shaded band is the
    5 %..95 % spread of the per-chip failure rates. Returns the figure.
    """
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex="col")
    else:
        axes = np.asarray(ax, dtype=object)
        if axes.size < 4:
            raise ValueError("plot_analog_sweep needs a 2 x 2 grid of axes.")
        axes = axes.reshape(2, 2)
        fig = axes[0, 0].figure
    day = 86400.0
    for col, sweep in enumerate(("time", "adc_bits")):
        acc_ax, fail_ax = axes[0, col], axes[1, col]
        for profile, variant in result.curves(sweep):
            idx = result.curve(profile, variant, sweep)
            color, marker, label = _ANALOG_STYLE.get(
                (profile, variant), (None, "o", f"{profile} ({variant})"))
            x = np.asarray(result.value)[idx]
            ls = "--" if variant != "analog" else "-"
            acc_ax.plot(x, result.accuracy[idx], ls=ls, marker=marker, color=color, label=label)
            f = result.failure_rate[idx]
            yerr = np.maximum(np.vstack([f - result.ci_low[idx], result.ci_high[idx] - f]), 0)
            fail_ax.errorbar(x, f, yerr=yerr, ls=ls, marker=marker, color=color, capsize=3,
                             label=label)
            if np.all(np.isfinite(result.chip_q05[idx])):
                fail_ax.fill_between(x, result.chip_q05[idx], result.chip_q95[idx], color=color,
                                     alpha=0.15, lw=0)
        for a in (acc_ax, fail_ax):
            a.grid(True, alpha=0.3)
        if sweep == "time":
            for a in (acc_ax, fail_ax):
                a.set_xscale("log")
            ticks = [(1, "1 s"), (60, "1 min"), (3600, "1 h"), (day, "1 d"), (7 * day, "1 w"),
                     (30 * day, "1 mo"), (365.25 * day, "1 y")]
            fail_ax.set_xticks([t for t, _ in ticks])
            fail_ax.set_xticklabels([s for _, s in ticks])
            fail_ax.set_xlabel("time since programming (log)")
            acc_ax.set_title("against drift time (ADC at the profile's bits)", fontsize=9)
        else:
            adc_time = result.settings.get("adc_time", {})
            where = ", ".join(f"{p} at t = {_analog_time(t)}" for p, t in adc_time.items())
            fail_ax.set_xlabel("ADC bits")
            fail_ax.set_yscale("log")  # a few bits fail most inputs, more bits < 1 %
            acc_ax.set_title(f"against ADC resolution ({where})", fontsize=9)
        acc_ax.set_ylabel("test accuracy (mean over chips)")
        fail_ax.set_ylabel("failure rate P(argmax flips)")
        if result.curves(sweep):
            acc_ax.legend(fontsize=7)
        else:
            acc_ax.text(0.5, 0.5, "not swept", transform=acc_ax.transAxes, ha="center")
    conf = result.settings.get("confidence", 0.95)
    fig.suptitle(f"{result.n_chips} chips per point, {result.settings.get('n_inputs', '')} inputs; "
                 f"error bars: {100 * conf:g} % interval over chips, band: per-chip 5-95 %",
                 fontsize=9)
    return _finish(fig, path)


def _analog_time(seconds) -> str:
    for unit, size in (("y", 365.25 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
