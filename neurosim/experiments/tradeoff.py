"""Clean accuracy against fault tolerance for the regularizer of eq. (1)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import ValidationError, param_error
from neurosim.experiments.common import (clean_score, hidden_rates, run_grid, theory_variances,
                                         train_network)
from neurosim.experiments.files import SavedResult
from neurosim.mapping import map_network
from neurosim.simulation import simulate
from neurosim.theory import q_balance
from neurosim.train import load_training_data

__all__ = ["TradeoffResult", "regularizer_tradeoff", "load_tradeoff"]


@dataclass
class TradeoffResult(SavedResult):
    """One row per (lambda, mu) setting (see :func:`regularizer_tradeoff`).

    ``failure_rate`` (with ``failure_low, failure_high``) is the argmax-flip rate of the mapped
    network at the profile's default fault rates; ``var_taylor`` and ``var_exact`` are Var Delta
    for silent hidden crashes at rate ``p``; ``best`` describes the chosen setting.
    """

    _KIND = "regularizer_tradeoff"

    lam: np.ndarray
    mu: np.ndarray
    clean_accuracy: np.ndarray
    quantized_accuracy: np.ndarray
    var_taylor: np.ndarray
    var_exact: np.ndarray
    failure_rate: np.ndarray
    failure_low: np.ndarray
    failure_high: np.ndarray
    q_min: np.ndarray
    best: dict
    settings: dict = field(default_factory=dict)

    @property
    def baseline_index(self) -> int:
        return int(np.flatnonzero((self.lam == 0) & (self.mu == 0))[0])

    def summary(self) -> str:
        s = self.settings
        lines = [f"regularizer trade-off: width {s.get('width')}, {s.get('data')}, Var Delta at p = "
                 f"{s.get('p'):g} (hidden, silent), failure rate = P(argmax flips) on "
                 f"{s.get('profile')} at its default rates",
                 f"{'lambda':>8} {'mu':>8} {'accuracy':>9} {'Var(Prop.4)':>12} {'Var(exact)':>11} "
                 f"{'reduction':>9} {'flip rate':>10} {'95 % CI':>23}"]
        base = self.var_exact[self.baseline_index]
        for i in range(self.lam.size):
            lines.append(f"{self.lam[i]:>8g} {self.mu[i]:>8g} {self.clean_accuracy[i]:>9.4f} "
                         f"{self.var_taylor[i]:>12.4g} {self.var_exact[i]:>11.4g} "
                         f"{base / self.var_exact[i]:>8.2f}x {self.failure_rate[i]:>10.3g} "
                         f"[{self.failure_low[i]:.3g}, {self.failure_high[i]:.3g}]")
        b = self.best
        lines.append(f"best within {b['max_accuracy_drop']:g} accuracy lost: lambda = {b['lam']:g}, "
                     f"mu = {b['mu']:g}: Var Delta {b['var_reduction']:.2f}x lower, accuracy "
                     f"{b['accuracy_change']:+.4f}; target (>= {b['target_reduction']:g}x) "
                     f"{'met' if b['target_met'] else 'NOT met'}")
        return "\n".join(lines)


def regularizer_tradeoff(width: int = 128, lambdas=(0.0, 1.0, 10.0, 100.0), mus=(0.0, 1e-2, 1e-1),
                         data: str = "digits", p: float = 1e-3, profile="loihi2",
                         epochs: "int | None" = None, seed: int = 0, depth: int = 2,
                         n_samples: "int | None" = None, max_accuracy_drop: float = 0.01,
                         target_reduction: float = 2.0, small: bool = False,
                         progress: bool = False, runner="serial") -> TradeoffResult:
    """Clean accuracy against fault tolerance for the regularizer of eq. (1).

    For every pair (lambda, mu) of ``lambdas x mus`` a network of ``depth`` hidden layers of
    ``width`` neurons is trained (same data, seed and epochs; the pair (0, 0) is plain training
    and is always included) and measured on the test split: clean accuracy, Var Delta (Prop. 4
    and exact single-fault, silent hidden crashes at rate ``p``), and the argmax-flip failure
    rate on ``profile`` at its default fault rates (``neurosim.simulate`` with
    ``estimator="auto"``: the stratified rare-event estimator at these small rates).

    The best setting is the one with the largest Var Delta reduction (exact single-fault, over
    the (0, 0) row) among those losing at most ``max_accuracy_drop`` clean accuracy (a
    fraction: 0.01 is one point). ``best["target_met"]`` says whether it reaches
    ``target_reduction``; nothing is tuned to reach it.

    Parameters
    ----------
    small : bool
        Width 32, lambdas (0, 10), mus (0,), 20 epochs, 200 inputs: seconds.
    runner : "serial", "dask", scheduler address or Runner
        What runs the settings, one task each (a :class:`neurosim.DaskRunner` trains and
        measures them on a cluster; docs/distributed.md); the numbers do not depend on it.

    Returns
    -------
    TradeoffResult
    """
    if small:
        width, lambdas, mus = min(int(width), 32), (0.0, 10.0), (0.0,)
    epochs = int(epochs if epochs is not None else (20 if small else 40))
    n_samples = int(n_samples if n_samples is not None else (100 if small else 1000))
    if int(width) < 1:
        raise param_error("regularizer_tradeoff", "width", "a positive integer", width)
    settings_grid = [(float(a), float(b)) for a in lambdas for b in mus]
    if any(a < 0 or b < 0 for a, b in settings_grid):
        raise param_error("regularizer_tradeoff", "lambdas/mus", "numbers >= 0", (lambdas, mus))
    if (0.0, 0.0) not in settings_grid:
        settings_grid.insert(0, (0.0, 0.0))
    started = time.perf_counter()
    td = load_training_data(data)
    if td.task != "classification":
        raise ValidationError("regularizer_tradeoff measures accuracy and argmax flips; it needs a "
                              f"classification data set. Got {data!r} ({td.task}) instead.")
    X, y = td.X_test, td.y_test
    if small:
        X, y = X[:200], y[:200]
    names = ("clean_accuracy", "quantized_accuracy", "var_taylor", "var_exact",
             "failure_rate", "failure_low", "failure_high", "q_min")
    point = functools.partial(_setting_point, td=td, X=X, y=y, width=int(width),
                              depth=int(depth), epochs=epochs, seed=int(seed), p=float(p),
                              profile=profile, n_samples=n_samples)

    def report(i, value):
        if progress:
            lam, mu = settings_grid[i]
            print(f"lambda {lam:g}, mu {mu:g}: accuracy {value['clean_accuracy']:.4f}, "
                  f"Var {value['var_exact']:.4g}, flip {value['failure_rate']:.3g} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)

    points = run_grid(runner, point, settings_grid, "regularizer_tradeoff", report)
    rows = {k: [v[k] for v in points] for k in names}
    profile_name = points[0]["profile"]
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    lam_arr = np.array([a for a, _ in settings_grid])
    mu_arr = np.array([b for _, b in settings_grid])
    base = int(np.flatnonzero((lam_arr == 0) & (mu_arr == 0))[0])
    acc, var = arrays["clean_accuracy"], arrays["var_exact"]
    allowed = np.flatnonzero(acc >= acc[base] - max_accuracy_drop - 1e-12)
    best_i = int(allowed[np.argmin(var[allowed])])
    reduction = float(var[base] / var[best_i]) if var[best_i] > 0 else float("inf")
    best = {
        "index": best_i, "lam": float(lam_arr[best_i]), "mu": float(mu_arr[best_i]),
        "var_reduction": reduction, "accuracy_change": float(acc[best_i] - acc[base]),
        "failure_rate_ratio": (float(arrays["failure_rate"][base] / arrays["failure_rate"][best_i])
                               if arrays["failure_rate"][best_i] > 0 else None),
        "max_accuracy_drop": float(max_accuracy_drop), "target_reduction": float(target_reduction),
        "target_met": bool(reduction >= target_reduction),
        "criterion": "largest exact single-fault Var Delta reduction with at most "
                     "max_accuracy_drop clean accuracy lost",
    }
    settings = {"width": int(width), "depth": int(depth), "data": data, "p": float(p),
                "profile": profile_name, "epochs": epochs, "seed": int(seed),
                "n_samples": n_samples, "n_inputs": int(X.shape[0]), "small": bool(small),
                "failure_metric": "flip (argmax change), profile default rates, estimator auto",
                "elapsed_s": time.perf_counter() - started}
    return TradeoffResult(lam=lam_arr, mu=mu_arr, best=best, settings=settings, **arrays)


def _setting_point(setting, *, td, X, y, width, depth, epochs, seed, p, profile, n_samples):
    """One (lambda, mu) setting of :func:`regularizer_tradeoff`: train, then measure."""
    lam, mu = setting
    net = train_network(td, (width,) * depth, epochs, seed, lam, mu)
    var_t, var_e = theory_variances(net, X, hidden_rates(net, p))
    mapping = map_network(net, profile)
    sim = simulate(mapping, None, X, y, metric="flip", estimator="auto", n_samples=n_samples,
                   seed=seed)
    return {"clean_accuracy": clean_score(net, X, y),
            "quantized_accuracy": clean_score(mapping.quantized_network(), X, y),
            "var_taylor": var_t, "var_exact": var_e, "failure_rate": sim.failure_rate,
            "failure_low": sim.ci_low, "failure_high": sim.ci_high,
            "q_min": float(q_balance(net)[:-1].min()), "profile": mapping.profile.name}


def load_tradeoff(path) -> TradeoffResult:
    """Read a :class:`TradeoffResult` written by ``save``."""
    return TradeoffResult.load(path)
