"""Var Delta against the hidden width: Monte Carlo, Prop. 4 and exact single faults."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import param_error
from neurosim.experiments.common import (clean_score, fit_loglog_slope, hidden_rates,
                                         mc_output_variance, run_grid, t_interval,
                                         theory_variances, train_network)
from neurosim.experiments.files import SavedResult
from neurosim.train import load_training_data

__all__ = ["ErrorDecayResult", "error_decay", "load_error_decay"]


@dataclass
class ErrorDecayResult(SavedResult):
    """Var Delta against hidden width (see :func:`error_decay`).

    ``var_mc`` is the mean of the batch estimates ``var_mc_batches`` (one row per width), with
    the t interval ``var_mc_low, var_mc_high``; ``var_taylor`` is Prop. 4 (first order),
    ``var_exact`` the exact single-fault terms. ``fits`` maps ``mc``, ``taylor``, ``exact`` to
    :func:`fit_loglog_slope` dicts.
    """

    _KIND = "error_decay"

    widths: np.ndarray
    var_mc: np.ndarray
    var_mc_low: np.ndarray
    var_mc_high: np.ndarray
    var_mc_batches: np.ndarray
    var_taylor: np.ndarray
    var_exact: np.ndarray
    clean_score: np.ndarray
    fits: dict
    settings: dict = field(default_factory=dict)
    #: Per (width, repeat) values when ``repeats > 1`` (the per-width fields are their means):
    #: Prop. 4, exact single-fault, Monte Carlo and the mean squared clean output norm.
    repeat_taylor: "np.ndarray | None" = None
    repeat_exact: "np.ndarray | None" = None
    repeat_mc: "np.ndarray | None" = None
    repeat_norm: "np.ndarray | None" = None

    @property
    def slope_mc(self) -> float:
        return self.fits["mc"]["slope"]

    @property
    def slope_taylor(self) -> float:
        return self.fits["taylor"]["slope"]

    def summary(self) -> str:
        s = self.settings
        if s.get("setup") == "paper":
            head = (f"Var Delta per output vs first hidden width (paper's set-up: {s.get('data')}, "
                    f"hidden {s.get('architecture')}, {s.get('activation')}, {s.get('loss')}, "
                    f"p = {s.get('p'):g} in the first hidden layer only, silent crashes; "
                    f"{s.get('repeats')} seeds per width; {s.get('n_inputs')} test inputs)")
        else:
            head = (f"Var Delta vs width ({s.get('data')}, depth {s.get('depth')}, p = "
                    f"{s.get('p'):g} in the hidden layers, silent crashes; {s.get('n_inputs')} "
                    f"test inputs)")
        lines = [head,
                 f"{'width':>6} {'MC':>11} {'MC 95 % CI':>25} {'Prop. 4':>11} {'exact 1-fault':>13} "
                 f"{s.get('score_name', 'score'):>9}"]
        for i, w in enumerate(self.widths):
            lines.append(f"{int(w):>6} {self.var_mc[i]:>11.4g} [{self.var_mc_low[i]:>10.4g}, "
                         f"{self.var_mc_high[i]:>10.4g}] {self.var_taylor[i]:>11.4g} "
                         f"{self.var_exact[i]:>13.4g} {self.clean_score[i]:>9.4f}")
        labels = [("mc", "Monte Carlo"), ("taylor", "Prop. 4"), ("exact", "exact single-fault")]
        if "exact_normalized" in self.fits:
            labels.append(("exact_normalized", "exact single-fault / mean ||y||^2"))
        for name, label in labels:
            f = self.fits[name]
            lines.append(f"log-log slope, {label}: {f['slope']:.3f} "
                         f"[{f['low']:.3f}, {f['high']:.3f}] ({100 * f['confidence']:g} % CI)")
        return "\n".join(lines)


def error_decay(widths=(16, 32, 64, 128, 256, 512, 1024), depth: int = 2, data: str = "digits",
                p: float = 1e-3, n_samples: "int | None" = None, epochs: "int | None" = None,
                seed: int = 0, small: bool = False, lam: float = 0.0, mu: float = 0.0,
                nu: float = 0.0, n_batches: int = 10, max_inputs: "int | None" = None,
                confidence: float = 0.95, progress: bool = False,
                conv: bool = False, runner="serial", setup: str = "neurosim",
                repeats: "int | None" = None, rest=(), activation: "str | None" = None,
                loss: "str | None" = None, psi_d: float = 0.0,
                psi_s: float = 0.0, lr: float = 1e-3, batch_size: int = 64) -> ErrorDecayResult:
    """Var Delta against the hidden width: Monte Carlo, Prop. 4 and exact single faults.

    Two set-ups (``setup``):

    * ``"neurosim"`` (default): every one of the ``depth`` hidden layers has width ``n`` and
      crashes; Var Delta is summed over the output components (raw logits), ReLU,
      cross-entropy, one seed per width.
    * ``"paper"``: the paper's MNIST experiment. Only the first hidden width ``n`` varies
      (hidden layers ``(n, *rest)``, ``rest`` fixed, default none), only the first hidden layer
      crashes, sigmoid hidden units, linear outputs trained by MSE on the one-hot labels (the
      paper's loss; ``loss="cross_entropy"`` for the other), ``repeats`` seeds per width (default
      3), and Var Delta is per output component (the mean over components, not the sum). The
      slope is fitted to every (width, seed) point; ``fits["exact_normalized"]`` also divides
      by the mean squared clean output norm ``E_x ||y(x)||^2`` of each network. ``psi_d,
      psi_s`` are the continuity regularizer's weights (:func:`neurosim.train.continuity_terms`).

    ``lr`` and ``batch_size`` are Adam's learning rate and the batch size of the training.

    With ``conv`` the width is the number of channels of a CNN (the paper's convnet
    experiment): ``depth`` blocks ``conv<c> (3x3 same) - relu - maxpool2`` on the digits as
    1 x 8 x 8 images, then a global average pooling and the linear output layer; the hidden
    neurons are every (channel, row, column) of the conv layers.

    For each width ``n`` a network with ``depth`` hidden layers of ``n`` neurons is trained on
    the same data (:func:`neurosim.train.train`, same seed and settings), its hidden neurons
    crash silently with probability ``p``, and Var Delta is measured three ways on the test
    split. The log-log slope of Var Delta against ``n`` is fitted by least squares with a
    t-based interval; the paper (Props. 4 and 6: derivatives ~ 1/n) predicts about -1.

    Parameters
    ----------
    widths : sequence of int
        Hidden widths (at least 3 for a slope with an interval).
    depth : int
        Number of hidden layers.
    data : str
        ``digits`` or ``diabetes`` (:func:`neurosim.train.load_training_data`).
    p : float
        Crash rate of every hidden neuron.
    n_samples : int, optional
        Monte Carlo fault draws per input, split into ``n_batches`` batches (default 4000, or
        2000 with ``small``).
    epochs : int, optional
        Training epochs (default 40, or 20 with ``small``).
    lam, mu, nu : float
        Regularizer weights of eq. (1) (0: plain training).
    n_batches : int
        Independent batches of the Monte Carlo estimate; the interval is a t interval over
        their estimates (batch means).
    max_inputs : int, optional
        Use the first ``max_inputs`` test inputs (default all; 150 with ``small``).
    small : bool
        Widths limited to the first four (at most 128), fewer epochs, draws and inputs.
    runner : "serial", "dask", scheduler address or Runner
        What runs the widths, one task each (a :class:`neurosim.DaskRunner` trains and
        measures them on a cluster; docs/distributed.md); the numbers do not depend on it.

    Returns
    -------
    ErrorDecayResult

    Notes
    -----
    Prop. 4: ``Var Delta ~= sum_l p_l (1 - p_l) sum_i ||d_i^l(x)||^2`` with ``d_i^l`` the
    derivative of the output with respect to neuron i's crash variable; the exact single-fault
    version replaces ``d_i^l`` by ``D_i^l``, the output change when neuron i alone crashes. Both
    drop the ``O(p^2)`` terms of two or more crashes, which the Monte Carlo estimate includes.
    """
    if setup not in ("neurosim", "paper"):
        raise param_error("error_decay", "setup", "'neurosim' or 'paper'", setup)
    paper = setup == "paper"
    repeats = int(repeats if repeats is not None else (3 if paper else 1))
    if repeats < 1:
        raise param_error("error_decay", "repeats", "a positive integer", repeats)
    rest = tuple(int(r) for r in rest)
    if any(r < 1 for r in rest):
        raise param_error("error_decay", "rest", "positive widths", rest)
    if paper and conv:
        raise param_error("error_decay", "conv", "False with setup='paper' (an MLP on MNIST)", conv)
    activation = activation or ("sigmoid" if paper else "relu")
    loss = loss or ("mse" if paper else "auto")
    widths = [int(w) for w in widths]
    if small:
        widths = [w for w in widths if w <= 128][:4] or [16, 32, 64]
    if len(widths) < 3 or any(w < 1 for w in widths):
        raise param_error("error_decay", "widths", "at least 3 positive widths", widths)
    if int(depth) < 1:
        raise param_error("error_decay", "depth", "a positive integer", depth)
    if not 0.0 < float(p) < 1.0:
        raise param_error("error_decay", "p", "a float in (0, 1)", p)
    n_samples = int(n_samples if n_samples is not None else (2000 if small else 4000))
    epochs = int(epochs if epochs is not None else (20 if small else 40))
    if max_inputs is None and small:
        max_inputs = 150
    started = time.perf_counter()
    td = load_training_data(data)
    if conv and td.X_train.shape[1] != 64:
        raise param_error("error_decay", "data", "'digits' (8 x 8 images) for conv=True", data)
    X, y = td.X_test, td.y_test
    if max_inputs is not None:
        X, y = X[:int(max_inputs)], y[:int(max_inputs)]
    point = functools.partial(_width_point, td=td, X=X, y=y, depth=int(depth), epochs=epochs,
                              seed=int(seed), lam=lam, mu=mu, nu=nu, p=float(p),
                              n_samples=n_samples, n_batches=int(n_batches), conv=bool(conv),
                              paper=paper, rest=rest, activation=activation, loss=loss,
                              psi_d=float(psi_d), psi_s=float(psi_s),
                              train_options={"lr": float(lr), "batch_size": int(batch_size)})
    items = [(i * repeats + r, w, r) for i, w in enumerate(widths) for r in range(repeats)]

    def report(k, value):
        if progress:
            _, w, r = items[k]
            print(f"width {w}{f' seed {r}' if repeats > 1 else ''}: MC {value[0].mean():.4g}, "
                  f"Prop. 4 {value[1]:.4g}, exact {value[2]:.4g} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)

    points = run_grid(runner, point, items, "error_decay", report)
    shape = (len(widths), repeats)
    mc_all = np.array([v[0] for v in points]).reshape(len(widths), repeats, int(n_batches))
    taylor_all = np.array([v[1] for v in points], dtype=np.float64).reshape(shape)
    exact_all = np.array([v[2] for v in points], dtype=np.float64).reshape(shape)
    score = np.array([v[3] for v in points], dtype=np.float64).reshape(shape).mean(axis=1)
    norm_all = np.array([v[4] for v in points], dtype=np.float64).reshape(shape)
    # Per width: the mean over seeds; the MC batches of all seeds pooled (i.i.d. given the
    # width only when repeats = 1; with seeds the interval is over batches and networks).
    var_mc_batches = mc_all.reshape(len(widths), repeats * int(n_batches))
    var_taylor, var_exact = taylor_all.mean(axis=1), exact_all.mean(axis=1)
    intervals = np.array([t_interval(row, confidence) for row in var_mc_batches])
    w_all = np.repeat(np.asarray(widths, dtype=np.float64), repeats)
    mc_points = mc_all.mean(axis=2).ravel()
    fits = {"mc": fit_loglog_slope(w_all, mc_points, confidence),
            "taylor": fit_loglog_slope(w_all, taylor_all.ravel(), confidence),
            "exact": fit_loglog_slope(w_all, exact_all.ravel(), confidence)}
    if paper:
        fits["exact_normalized"] = fit_loglog_slope(w_all, (exact_all / norm_all).ravel(),
                                                    confidence)
    settings = {
        "setup": setup, "repeats": repeats, "activation": activation,
        "loss": ("mse on one-hot labels, linear outputs" if loss == "mse" else
                 "cross-entropy" if td.task == "classification" else "mse"),
        "architecture": (["n", *rest] if paper else ["n"] * int(depth)),
        "psi_d": float(psi_d), "psi_s": float(psi_s), "lr": float(lr),
        "batch_size": int(batch_size),
        "var_delta": ("per output component (mean over components)" if paper else
                      "summed over output components"),
        "depth": int(depth), "data": data, "p": float(p), "n_samples": n_samples,
        "conv": bool(conv), "width_means": "channels" if conv else "neurons per hidden layer",
        "n_batches": int(n_batches), "epochs": epochs, "seed": int(seed), "small": bool(small),
        "lam": float(lam), "mu": float(mu), "nu": float(nu), "n_inputs": int(X.shape[0]),
        "crash": "silent, first hidden layer only" if paper else "silent, hidden layers only",
        "score_name": "accuracy" if td.task == "classification" else "mse",
        "interval_method": (f"t interval over {int(n_batches)} independent batches of "
                            f"{n_samples // int(n_batches)} draws per input (batch means)"),
        "slope_method": ("least squares on log-log over every (width, seed) point, t-based CI "
                         "from scipy.stats.linregress stderr"),
        "paper_slope": -1.0,
        "elapsed_s": time.perf_counter() - started,
    }
    return ErrorDecayResult(
        widths=np.asarray(widths, dtype=np.int64), var_mc=intervals[:, 0],
        var_mc_low=intervals[:, 1], var_mc_high=intervals[:, 2], var_mc_batches=var_mc_batches,
        var_taylor=var_taylor, var_exact=var_exact, clean_score=score, fits=fits,
        settings=settings,
        **({"repeat_taylor": taylor_all, "repeat_exact": exact_all,
            "repeat_mc": mc_all.mean(axis=2), "repeat_norm": norm_all} if repeats > 1 else {}))


def _width_point(item, *, td, X, y, depth, epochs, seed, lam, mu, nu, p, n_samples, n_batches,
                 conv, paper=False, rest=(), activation="relu", loss="auto", psi_d=0.0,
                 psi_s=0.0, train_options=None):
    """One (width, seed) of :func:`error_decay`: train, then (MC batches, Prop. 4, exact,
    score, mean squared clean output norm)."""
    i, width, repeat = item
    net_seed = seed + 1000 * repeat
    extra = {"psi_d": psi_d, "psi_s": psi_s} if (psi_d or psi_s) else {}
    if train_options and train_options != {"lr": 1e-3, "batch_size": 64}:
        extra.update(train_options)
    if conv:
        blocks = ",".join([f"conv{width},relu,maxpool2"] * min(depth, 3))
        net = train_network(td, (width,), epochs, net_seed, lam, mu, nu,
                            arch=f"{blocks},gap", input_shape=(1, 8, 8), **extra)
    elif paper:
        net = train_network(td, (width, *rest), epochs, net_seed, lam, mu, nu,
                            activation=activation, loss=loss, **extra)
    else:
        net = train_network(td, (width,) * depth, epochs, net_seed, lam, mu, nu, **extra)
    if paper:
        rates = np.zeros(net.n_layers + 1)
        rates[1] = p  # the first hidden layer only
    else:
        rates = hidden_rates(net, p)
    var_taylor, var_exact = theory_variances(net, X, rates)
    var_mc = np.asarray(mc_output_variance(net, X, rates, n_samples, n_batches, seed=seed + i),
                        dtype=np.float64)
    out = net.forward(X).astype(np.float64)
    norm = float((out ** 2).sum(axis=1).mean())
    if paper:  # per output component
        k = out.shape[1]
        var_mc, var_taylor, var_exact, norm = var_mc / k, var_taylor / k, var_exact / k, norm / k
    return var_mc, var_taylor, var_exact, clean_score(net, X, y), norm


def load_error_decay(path) -> ErrorDecayResult:
    """Read an :class:`ErrorDecayResult` written by ``save``."""
    return ErrorDecayResult.load(path)
