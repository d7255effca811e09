"""Crash-aware training: dropout without rescaling at the first hidden layer against the
accuracy under crashes there (the paper's MNIST [100, 50] sigmoid experiment)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import param_error
from neurosim.experiments.common import (clean_score, mc_crashed_accuracy, run_grid, t_interval,
                                         train_network)
from neurosim.experiments.files import SavedResult
from neurosim.stats import clopper_pearson
from neurosim.train import load_training_data

__all__ = ["CrashAwareResult", "crash_aware_training", "load_crash_aware"]


@dataclass
class CrashAwareResult(SavedResult):
    """Clean and crashed test accuracy against the training crash rate (see
    :func:`crash_aware_training`). ``clean`` and ``crashed`` are ``(rates, seeds)``; the
    ``*_low, *_high`` fields are t intervals over the seeds of the mean, and ``gain_*`` the
    paired change of the crashed accuracy against training rate 0 (same seeds)."""

    _KIND = "crash_aware"

    train_rates: np.ndarray
    clean: np.ndarray
    crashed: np.ndarray
    crashed_pairs: np.ndarray
    clean_mean: np.ndarray
    clean_low: np.ndarray
    clean_high: np.ndarray
    crashed_mean: np.ndarray
    crashed_low: np.ndarray
    crashed_high: np.ndarray
    gain_mean: np.ndarray
    gain_low: np.ndarray
    gain_high: np.ndarray
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        s = self.settings
        lines = [f"Crash-aware training ({s.get('data')}, hidden {s.get('hidden')} "
                 f"{s.get('activation')}, {s.get('loss')}; crashes at the first hidden layer: "
                 f"p = {s.get('p_test'):g} at test, the training rate below; {s.get('seeds')} "
                 f"seeds, {s.get('n_samples')} crash draws per test input, "
                 f"{s.get('n_inputs')} test inputs; 95 % t intervals over the seeds)",
                 f"{'train p':>8} {'clean acc':>10} {'95 % CI':>17} {'crashed acc':>12} "
                 f"{'95 % CI':>17} {'gain vs 0':>10} {'95 % CI':>19}"]
        for i, q in enumerate(self.train_rates):
            lines.append(
                f"{q:>8.3g} {self.clean_mean[i]:>10.4f} [{self.clean_low[i]:.4f}, "
                f"{self.clean_high[i]:.4f}] {self.crashed_mean[i]:>12.4f} "
                f"[{self.crashed_low[i]:.4f}, {self.crashed_high[i]:.4f}] "
                f"{self.gain_mean[i]:>+10.4f} [{self.gain_low[i]:+.4f}, {self.gain_high[i]:+.4f}]")
        lines.append(f"the paper: crashed accuracy 0.944 at training rate 0, 0.954 at 0.02, "
                     f"no loss of clean accuracy")
        return "\n".join(lines)


def crash_aware_training(train_rates=(0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06),
                         p_test: float = 0.05, hidden=(100, 50), activation: str = "sigmoid",
                         loss: str = "auto", data: str = "mnist5k", epochs: "int | None" = None,
                         seeds: "int | None" = None, n_samples: "int | None" = None,
                         max_inputs: "int | None" = None, seed: int = 0, small: bool = False,
                         lr: float = 1e-3, confidence: float = 0.95, progress: bool = False,
                         runner="serial") -> CrashAwareResult:
    """Train with silent crashes at the first hidden layer (dropout without rescaling) at each
    rate of ``train_rates`` and measure the test accuracy clean and under crashes at rate
    ``p_test`` there.

    Every rate is trained with the same ``seeds`` seeds (network initialization and batch
    order), so the change of crashed accuracy against rate 0 is paired: its interval is a t
    interval over the seeds of the per-seed differences. The crashed accuracy of one network
    is measured on ``n_samples`` transient crash draws per test input (Monte Carlo; its
    Clopper-Pearson interval given the test inputs is in ``crashed_pairs``).

    Defaults: the paper's MNIST [100, 50] sigmoid network, cross-entropy (``loss="mse"`` for the
    MSE on one-hot labels), 30 epochs, 5 seeds, 100 draws per input, all 1,000 test images of
    ``mnist5k``; ``small``: 3 rates, 2 seeds, 15 epochs, 20 draws on 100 test inputs.
    """
    rates = [float(q) for q in train_rates]
    if small:
        rates = rates[:3] if len(rates) >= 3 else rates
    if not rates or any(not 0.0 <= q < 1.0 for q in rates):
        raise param_error("crash_aware_training", "train_rates", "rates in [0, 1)", train_rates)
    if 0.0 not in rates:
        rates = [0.0] + rates  # the paired gain needs the baseline
    if not 0.0 < float(p_test) < 1.0:
        raise param_error("crash_aware_training", "p_test", "a probability in (0, 1)", p_test)
    epochs = int(epochs if epochs is not None else (15 if small else 30))
    seeds = int(seeds if seeds is not None else (2 if small else 5))
    n_samples = int(n_samples if n_samples is not None else (20 if small else 100))
    if seeds < 2:
        raise param_error("crash_aware_training", "seeds", "an integer >= 2 (for an interval)",
                          seeds)
    if max_inputs is None and small:
        max_inputs = 100
    started = time.perf_counter()
    td = load_training_data(data)
    X, y = td.X_test, td.y_test
    if max_inputs is not None:
        X, y = X[:int(max_inputs)], y[:int(max_inputs)]
    hidden = tuple(int(h) for h in hidden)
    point = functools.partial(_point, td=td, X=X, y=y, hidden=hidden, activation=activation,
                              loss=loss, epochs=epochs, seed=int(seed), p_test=float(p_test),
                              n_samples=n_samples, lr=float(lr))
    items = [(q, s) for q in rates for s in range(seeds)]

    def report(k, value):
        if progress:
            q, s = items[k]
            print(f"train p {q:g} seed {s}: clean {value[0]:.4f}, crashed "
                  f"{value[1] / value[2]:.4f} ({time.perf_counter() - started:.0f} s)",
                  flush=True)

    points = run_grid(runner, point, items, "crash_aware_training", report)
    shape = (len(rates), seeds)
    clean = np.array([v[0] for v in points]).reshape(shape)
    pairs = np.array([[v[1], v[2]] for v in points], dtype=np.int64).reshape(shape + (2,))
    crashed = pairs[..., 0] / pairs[..., 1]
    base = crashed[rates.index(0.0)]
    ci = lambda rows: np.array([t_interval(r, confidence) for r in rows])  # noqa: E731
    c, k, g = ci(clean), ci(crashed), ci(crashed - base)
    g[rates.index(0.0)] = 0.0
    settings = {"data": data, "hidden": list(hidden), "activation": activation,
                "loss": "cross-entropy" if loss in ("auto", "cross_entropy") else
                        "mse on one-hot labels", "p_test": float(p_test),
                "crash": "silent, first hidden layer only, no rescaling (train and test)",
                "epochs": epochs, "seeds": seeds, "seed": int(seed), "n_samples": n_samples,
                "n_inputs": int(X.shape[0]), "lr": float(lr), "small": bool(small),
                "interval_method": f"t interval over {seeds} seeds (paired for the gain)",
                "crashed_pairs_ci": [[list(clopper_pearson(int(a), int(b), confidence))
                                      for a, b in row] for row in pairs],
                "paper": {"crashed_at_0": 0.944, "crashed_at_0.02": 0.954},
                "elapsed_s": time.perf_counter() - started}
    return CrashAwareResult(
        train_rates=np.asarray(rates), clean=clean, crashed=crashed, crashed_pairs=pairs,
        clean_mean=c[:, 0], clean_low=c[:, 1], clean_high=c[:, 2], crashed_mean=k[:, 0],
        crashed_low=k[:, 1], crashed_high=k[:, 2], gain_mean=g[:, 0], gain_low=g[:, 1],
        gain_high=g[:, 2], settings=settings)


def _point(item, *, td, X, y, hidden, activation, loss, epochs, seed, p_test, n_samples, lr):
    """One (training rate, seed): train, then (clean accuracy, crashed correct, total)."""
    q, s = item
    extra = {"crash_p": q, "crash_layers": (1,)} if q > 0 else {}
    net = train_network(td, hidden, epochs, seed + 1000 * s, activation=activation, loss=loss,
                        lr=lr, **extra)
    rates = np.zeros(net.n_layers + 1)
    rates[1] = p_test
    correct, total = mc_crashed_accuracy(net, X, y, rates, n_samples, seed=seed + 7919 * s)
    return clean_score(net, X, y), correct, total


def load_crash_aware(path) -> CrashAwareResult:
    """Read a :class:`CrashAwareResult` written by ``save``."""
    return CrashAwareResult.load(path)
