"""The paper's experiments as functions: error decay with width, the regularizer trade-off, and
chip mapping with per-core failure impact.

Every experiment returns a result dataclass with ``save(path)`` (HDF5, written atomically; root
attributes ``neurosim_format = "experiment"``, ``format_version = 1`` and ``experiment``) and a
matching ``load_*`` function. ``small=True`` gives a version that runs in seconds (tests and
notebooks' smoke runs); the numbers are then noisy and only the qualitative shape is meaningful.

Notation: ``Delta(x) = y_L(x; faulty) - y_L(x; clean)`` is the output error, and "Var Delta" is
``E_x [ sum_k Var(Delta_k(x)) ]``: the variance over fault draws of each output component,
summed over components and averaged over the test inputs. Crashes are silent (a crashed neuron
outputs 0) and hit the hidden layers only.

``python -m neurosim.experiments --run-notebooks`` executes the notebooks in ``notebooks/``
(full size, figures to ``notebooks/figures/``; nothing is written into the notebooks).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import FileFormatError, MappingError, NeurosimFileNotFoundError, ValidationError, param_error

__all__ = [
    "ErrorDecayResult",
    "TradeoffResult",
    "ChipMappingResult",
    "error_decay",
    "regularizer_tradeoff",
    "chip_mapping",
    "load_error_decay",
    "load_tradeoff",
    "load_chip_mapping",
    "mc_output_variance",
    "fit_loglog_slope",
    "run_notebooks",
    "execute_notebook",
    "small_core_profile",
    "theory_variances",
]

EXPERIMENT_FORMAT_VERSION = 1
DEFAULT_PROFILES = ("loihi2", "loihi1", "truenorth", "spinnaker2", "rram_crossbar")


# --- saving -------------------------------------------------------------------------------------

class _Saved:
    """Save / load for the result dataclasses: ndarray fields become datasets, the rest JSON."""

    _KIND = ""

    def save(self, path: "str | os.PathLike") -> None:
        """Write the result to an HDF5 file (atomically: a reader never sees half a file)."""
        import h5py

        from neurosim.io.atomic import atomic_path

        arrays, meta = {}, {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                meta[f.name] = value
        with atomic_path(path, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.attrs["neurosim_format"] = "experiment"
                h5.attrs["format_version"] = EXPERIMENT_FORMAT_VERSION
                h5.attrs["experiment"] = self._KIND
                h5.attrs["meta"] = json.dumps(meta, sort_keys=True, default=_json_default)
                for name, value in arrays.items():
                    h5.create_dataset(name, data=value)

    @classmethod
    def _load(cls, path):
        import h5py

        from neurosim.io.hdf5 import check_header

        source = os.fspath(path)
        if not os.path.exists(source):
            raise NeurosimFileNotFoundError(f"Experiment file {source!r} does not exist.")
        try:
            with h5py.File(source, "r") as h5:
                check_header(h5, source, "experiment", (EXPERIMENT_FORMAT_VERSION,))
                kind = h5.attrs.get("experiment")
                if kind != cls._KIND:
                    raise FileFormatError(
                        f"{source}: holds the {kind!r} experiment, not {cls._KIND!r}.")
                kwargs = json.loads(h5.attrs["meta"])
                for name in h5:
                    kwargs[name] = np.asarray(h5[name])
        except OSError as exc:
            raise FileFormatError(f"{source}: not a readable HDF5 file ({exc}).") from None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names})


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {value!r}")


# --- shared pieces ------------------------------------------------------------------------------

def _train(data, hidden, epochs, seed, lam=0.0, mu=0.0, nu=0.0, **extra):
    import torch

    from neurosim.train import train

    threads = torch.get_num_threads()
    # Small layers gain nothing from intra-op threads, and on a busy machine OpenMP threads
    # that wait for a core make each tiny step 10-50x slower. Same numbers either way.
    if max(int(h) for h in hidden) <= 256:
        torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            # neurosim.train converts graph-attached loss terms with float(); harmless here.
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
            return train(data.X_train, data.y_train, hidden=tuple(hidden), epochs=int(epochs),
                         seed=int(seed), lam=float(lam), mu=float(mu), nu=float(nu),
                         X_val=data.X_test, y_val=data.y_test, **extra)
    finally:
        torch.set_num_threads(threads)


def _clean_score(network, X, y) -> float:
    """Test accuracy (integer labels) or mean squared error (regression targets)."""
    out = network.forward(X).astype(np.float64)
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        return float(np.mean(out.argmax(axis=1) == y))
    return float(np.mean((out - y.reshape(out.shape[0], -1)) ** 2))


def _hidden_rates(network, p: float) -> np.ndarray:
    """Crash rate of layers 0..L: ``p`` on the hidden layers 1..L-1, 0 on input and output."""
    rates = np.zeros(network.n_layers + 1)
    rates[1:network.n_layers] = p
    return rates


def theory_variances(network, X, rates) -> tuple[float, float]:
    """Var Delta by Prop. 4 (first order) and by the exact single-fault terms ("b4").

    ``Var = sum_l p_l (1 - p_l) sum_i t_i(x)^2`` summed over output components and averaged
    over the inputs, with ``t`` the crash derivatives ``d_i^l`` (Prop. 4) or the exact
    single-fault errors ``D_i^l`` (:func:`neurosim.theory.single_fault_terms`).
    """
    from neurosim.theory import crash_derivatives, single_fault_terms, taylor_moments

    rates = np.asarray(rates, dtype=np.float64)
    active = [l for l in range(rates.size) if rates[l] > 0]
    _, var_first = taylor_moments(crash_derivatives(network, X), rates)
    _, var_exact = taylor_moments(single_fault_terms(network, X, layers=active), rates)
    return float(var_first.sum(axis=1).mean()), float(var_exact.sum(axis=1).mean())


def mc_output_variance(target, X, rates, n_samples: int = 1000, n_batches: int = 10,
                       seed: int = 0, max_rows: int = 8192) -> np.ndarray:
    """Monte Carlo Var Delta, one independent estimate per batch (batch means).

    Each batch draws ``n_samples // n_batches`` transient crash sets per input (silent crashes,
    layer ``l`` at rate ``rates[l]``), estimates each input's per-component variance of
    ``Delta`` (unbiased, ddof = 1), sums over components and averages over inputs. The batches
    use independent random streams (``SeedSequence([seed, batch, chunk])``), so their estimates
    are i.i.d. and a t interval over them is a confidence interval for Var Delta.

    Returns
    -------
    ndarray of shape (n_batches,)
    """
    from neurosim.engine import build_plan, clean_cache, one_blas_thread, propagate, sample_faults
    from neurosim.faults import FaultModel, NeuronCrash

    if n_batches < 2:
        raise param_error("mc_output_variance", "n_batches", "an integer >= 2", n_batches)
    per_batch = int(n_samples) // int(n_batches)
    if per_batch < 2:
        raise param_error("mc_output_variance", "n_samples", f"at least 2 x n_batches = {2 * n_batches}",
                          n_samples)
    plan = build_plan(target, FaultModel([NeuronCrash(tuple(float(r) for r in rates))]))
    X = plan.network.check_input(X)
    cache = clean_cache(plan, X)
    m, k = X.shape[0], plan.widths[-1]
    clean = cache.output.astype(np.float64)
    rounds_per_chunk = max(1, max_rows // m)
    estimates = np.empty(int(n_batches))
    with one_blas_thread():
        for b in range(int(n_batches)):
            s1 = np.zeros((m, k))
            s2 = np.zeros((m, k))
            for chunk, start in enumerate(range(0, per_batch, rounds_per_chunk)):
                rounds = min(rounds_per_chunk, per_batch - start)
                rng = np.random.default_rng(np.random.SeedSequence([int(seed), b, chunk]))
                batch = sample_faults(plan, rng, rounds * m)
                rows = np.flatnonzero(batch.draw_has_fault)
                if rows.size == 0:
                    continue
                row_input = rows % m  # draw d hits input d mod m: every input gets `rounds` draws
                delta = propagate(plan, cache, batch, rows, row_input).astype(np.float64) - clean[row_input]
                for j in range(k):
                    s1[:, j] += np.bincount(row_input, weights=delta[:, j], minlength=m)
                    s2[:, j] += np.bincount(row_input, weights=delta[:, j] ** 2, minlength=m)
            var = (s2 - s1 ** 2 / per_batch) / (per_batch - 1)
            estimates[b] = float(np.maximum(var, 0.0).sum(axis=1).mean())
    return estimates


def _t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * se
    return mean, mean - half, mean + half


def fit_loglog_slope(x, y, confidence: float = 0.95) -> dict:
    """Least-squares slope of ``log y`` against ``log x`` with a t-based confidence interval.

    ``slope +- t_{(1+c)/2, n-2} * stderr`` with the standard error of
    :func:`scipy.stats.linregress`. Needs at least 3 points (one degree of freedom).

    Returns
    -------
    dict with ``slope, stderr, low, high, intercept, rvalue, n_points, confidence``.
    """
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 3:
        nan = float("nan")
        return {"slope": nan, "stderr": nan, "low": nan, "high": nan, "intercept": nan,
                "rvalue": nan, "n_points": int(ok.sum()), "confidence": confidence}
    fit = stats.linregress(np.log(x[ok]), np.log(y[ok]))
    t = float(stats.t.ppf(0.5 + confidence / 2, int(ok.sum()) - 2))
    return {"slope": float(fit.slope), "stderr": float(fit.stderr),
            "low": float(fit.slope - t * fit.stderr), "high": float(fit.slope + t * fit.stderr),
            "intercept": float(fit.intercept), "rvalue": float(fit.rvalue),
            "n_points": int(ok.sum()), "confidence": confidence}


# --- error decay with width -----------------------------------------------------------------------

@dataclass
class ErrorDecayResult(_Saved):
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

    @property
    def slope_mc(self) -> float:
        return self.fits["mc"]["slope"]

    @property
    def slope_taylor(self) -> float:
        return self.fits["taylor"]["slope"]

    def summary(self) -> str:
        s = self.settings
        lines = [f"Var Delta vs width ({s.get('data')}, depth {s.get('depth')}, p = {s.get('p'):g} "
                 f"in the hidden layers, silent crashes; {s.get('n_inputs')} test inputs)",
                 f"{'width':>6} {'MC':>11} {'MC 95 % CI':>25} {'Prop. 4':>11} {'exact 1-fault':>13} "
                 f"{s.get('score_name', 'score'):>9}"]
        for i, w in enumerate(self.widths):
            lines.append(f"{int(w):>6} {self.var_mc[i]:>11.4g} [{self.var_mc_low[i]:>10.4g}, "
                         f"{self.var_mc_high[i]:>10.4g}] {self.var_taylor[i]:>11.4g} "
                         f"{self.var_exact[i]:>13.4g} {self.clean_score[i]:>9.4f}")
        for name, label in (("mc", "Monte Carlo"), ("taylor", "Prop. 4"), ("exact", "exact single-fault")):
            f = self.fits[name]
            lines.append(f"log-log slope, {label}: {f['slope']:.3f} "
                         f"[{f['low']:.3f}, {f['high']:.3f}] ({100 * f['confidence']:g} % CI)")
        return "\n".join(lines)


def error_decay(widths=(16, 32, 64, 128, 256, 512, 1024), depth: int = 2, data: str = "digits",
                p: float = 1e-3, n_samples: "int | None" = None, epochs: "int | None" = None,
                seed: int = 0, small: bool = False, lam: float = 0.0, mu: float = 0.0,
                nu: float = 0.0, n_batches: int = 10, max_inputs: "int | None" = None,
                confidence: float = 0.95, progress: bool = False) -> ErrorDecayResult:
    """Var Delta against the hidden width: Monte Carlo, Prop. 4 and exact single faults.

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
    from neurosim.train import load_training_data

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
    X, y = td.X_test, td.y_test
    if max_inputs is not None:
        X, y = X[:int(max_inputs)], y[:int(max_inputs)]
    n_w = len(widths)
    var_mc_batches = np.empty((n_w, int(n_batches)))
    var_taylor, var_exact, score = np.empty(n_w), np.empty(n_w), np.empty(n_w)
    for i, width in enumerate(widths):
        net = _train(td, (width,) * int(depth), epochs, seed, lam, mu, nu)
        rates = _hidden_rates(net, float(p))
        var_taylor[i], var_exact[i] = theory_variances(net, X, rates)
        var_mc_batches[i] = mc_output_variance(net, X, rates, n_samples, n_batches, seed=seed + i)
        score[i] = _clean_score(net, X, y)
        if progress:
            print(f"width {width}: MC {var_mc_batches[i].mean():.4g}, Prop. 4 {var_taylor[i]:.4g}, "
                  f"exact {var_exact[i]:.4g} ({time.perf_counter() - started:.0f} s)", flush=True)
    intervals = np.array([_t_interval(row, confidence) for row in var_mc_batches])
    w = np.asarray(widths, dtype=np.float64)
    fits = {"mc": fit_loglog_slope(w, intervals[:, 0], confidence),
            "taylor": fit_loglog_slope(w, var_taylor, confidence),
            "exact": fit_loglog_slope(w, var_exact, confidence)}
    settings = {
        "depth": int(depth), "data": data, "p": float(p), "n_samples": n_samples,
        "n_batches": int(n_batches), "epochs": epochs, "seed": int(seed), "small": bool(small),
        "lam": float(lam), "mu": float(mu), "nu": float(nu), "n_inputs": int(X.shape[0]),
        "crash": "silent, hidden layers only",
        "score_name": "accuracy" if td.task == "classification" else "mse",
        "interval_method": (f"t interval over {int(n_batches)} independent batches of "
                            f"{n_samples // int(n_batches)} draws per input (batch means)"),
        "slope_method": "least squares on log-log, t-based CI from scipy.stats.linregress stderr",
        "paper_slope": -1.0,
        "elapsed_s": time.perf_counter() - started,
    }
    return ErrorDecayResult(
        widths=np.asarray(widths, dtype=np.int64), var_mc=intervals[:, 0],
        var_mc_low=intervals[:, 1], var_mc_high=intervals[:, 2], var_mc_batches=var_mc_batches,
        var_taylor=var_taylor, var_exact=var_exact, clean_score=score, fits=fits,
        settings=settings)


def load_error_decay(path) -> ErrorDecayResult:
    """Read an :class:`ErrorDecayResult` written by ``save``."""
    return ErrorDecayResult._load(path)


# --- regularizer trade-off ------------------------------------------------------------------------

@dataclass
class TradeoffResult(_Saved):
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
                         progress: bool = False) -> TradeoffResult:
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

    Returns
    -------
    TradeoffResult
    """
    import neurosim
    from neurosim.theory import q_balance
    from neurosim.train import load_training_data

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
    rows = {k: [] for k in ("clean_accuracy", "quantized_accuracy", "var_taylor", "var_exact",
                            "failure_rate", "failure_low", "failure_high", "q_min")}
    profile_name = None
    for lam, mu in settings_grid:
        net = _train(td, (int(width),) * int(depth), epochs, seed, lam, mu)
        var_t, var_e = theory_variances(net, X, _hidden_rates(net, float(p)))
        mapping = neurosim.map_network(net, profile)
        profile_name = mapping.profile.name
        sim = neurosim.simulate(mapping, None, X, y, metric="flip", estimator="auto",
                                n_samples=n_samples, seed=seed)
        rows["clean_accuracy"].append(_clean_score(net, X, y))
        rows["quantized_accuracy"].append(_clean_score(mapping.quantized_network(), X, y))
        rows["var_taylor"].append(var_t)
        rows["var_exact"].append(var_e)
        rows["failure_rate"].append(sim.failure_rate)
        rows["failure_low"].append(sim.ci_low)
        rows["failure_high"].append(sim.ci_high)
        rows["q_min"].append(float(q_balance(net)[:-1].min()))
        if progress:
            print(f"lambda {lam:g}, mu {mu:g}: accuracy {rows['clean_accuracy'][-1]:.4f}, "
                  f"Var {var_e:.4g}, flip {sim.failure_rate:.3g} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
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


def load_tradeoff(path) -> TradeoffResult:
    """Read a :class:`TradeoffResult` written by ``save``."""
    return TradeoffResult._load(path)


# --- chip mapping ---------------------------------------------------------------------------------

@dataclass
class ChipMappingResult(_Saved):
    """Cores per profile and per-core failure impact (see :func:`chip_mapping`).

    ``profiles[i]`` used ``cores_used[i]`` cores (-1: the model does not map, reason in
    ``errors``); ``layer_cores[name]`` and ``utilization[name]`` list the cores per layer and
    each core's utilization. For the ``impact_profile`` mapping, core ``c`` (layer
    ``core_layer[c]``, ``core_neurons[c]`` neurons) failing alone flips the argmax of a
    fraction ``core_flip_rate[c]`` of the test inputs, changes the accuracy to
    ``core_accuracy[c]`` and moves the output by ``core_error_l2[c]`` on average (L2).
    """

    _KIND = "chip_mapping"

    profiles: list
    cores_used: np.ndarray
    chips_needed: np.ndarray
    layer_cores: dict
    utilization: dict
    errors: dict
    impact_profile: str
    core_layer: np.ndarray
    core_neurons: np.ndarray
    core_utilization: np.ndarray
    core_flip_rate: np.ndarray
    core_accuracy: np.ndarray
    core_error_l2: np.ndarray
    clean_accuracy: float
    settings: dict = field(default_factory=dict)

    def worst_cores(self, k: int = 5) -> np.ndarray:
        """Core ids by decreasing flip rate."""
        return np.argsort(-self.core_flip_rate, kind="stable")[:k]

    def summary(self) -> str:
        lines = ["cores used per profile:"]
        for i, name in enumerate(self.profiles):
            if self.cores_used[i] < 0:
                lines.append(f"  {name:<14} does not map: {self.errors[name]}")
            else:
                util = self.utilization[name]
                lines.append(f"  {name:<14} {int(self.cores_used[i]):>4} cores on "
                             f"{int(self.chips_needed[i])} chip(s), per layer {self.layer_cores[name]}, "
                             f"utilization {min(util):.3f}..{max(util):.3f}")
        lines.append(f"single-core failures on {self.impact_profile} ({self.core_flip_rate.size} cores; "
                     f"clean accuracy {self.clean_accuracy:.4f}):")
        for c in self.worst_cores(min(5, self.core_flip_rate.size)):
            lines.append(f"  core {int(c):>3} (layer {int(self.core_layer[c])}, "
                         f"{int(self.core_neurons[c])} neurons): flip rate {self.core_flip_rate[c]:.4f}, "
                         f"accuracy {self.core_accuracy[c]:.4f}")
        return "\n".join(lines)


def small_core_profile(base="loihi2", neurons_per_core: int = 32):
    """``base`` with at most ``neurons_per_core`` neurons per core (a what-if layout).

    The built-in profiles put each layer of a small network on one core; this one spreads every
    layer over several cores so that single-core failures can be compared.
    """
    from neurosim.hardware import load_profile

    profile = load_profile(base)
    return dataclasses.replace(
        profile, name=f"{profile.name}-{int(neurons_per_core)}n",
        description=f"{profile.description} (what-if: {int(neurons_per_core)} neurons per core)",
        neurons_per_core=int(neurons_per_core), path="")


def core_failure_outputs(mapping, X) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the quantized network on ``X`` with each used core failed alone.

    Core-based profiles: the core's neurons crash silently; crossbar profiles: the tile
    contributes nothing (as :class:`neurosim.CoreFailure`).

    Returns
    -------
    faulty : ndarray (n_cores, n_inputs, n_L)
    clean : ndarray (n_inputs, n_L)
    """
    from neurosim.engine import batch_from_records, build_plan, clean_cache, one_blas_thread, propagate
    from neurosim.faults import F_CRASH, F_TILE, FaultModel

    plan = build_plan(mapping, FaultModel([]))
    X = plan.network.check_input(X)
    cache = clean_cache(plan, X)
    m = X.shape[0]
    records = []  # per core: layer, draw (= core id), kind, a, b, c, d
    for core in mapping.cores:
        if mapping.profile.architecture == "crossbar":  # one tile record: the block reads 0
            records.append(([core.layer], [core.core_id], [F_TILE], [core.out_start],
                            [core.out_stop], [core.in_start], [core.in_stop]))
        else:  # every neuron of the core crashes; b = 1 forces the silent semantics
            n = core.n_neurons
            records.append((np.full(n, core.layer), np.full(n, core.core_id), np.full(n, F_CRASH),
                            np.arange(core.out_start, core.out_stop), np.ones(n, np.int64),
                            np.zeros(n, np.int64), np.zeros(n, np.int64)))
    columns = [np.concatenate([np.asarray(r[i], dtype=np.int64) for r in records]) for i in range(7)]
    n_cores = mapping.cores_used
    batch = batch_from_records(n_cores, plan.n_layers, *columns)
    row_draw = np.repeat(np.arange(n_cores, dtype=np.int64), m)
    row_input = np.tile(np.arange(m, dtype=np.int64), n_cores)
    with one_blas_thread():
        out = propagate(plan, cache, batch, row_draw, row_input)
    return out.reshape(n_cores, m, -1), cache.output


def chip_mapping(profiles=DEFAULT_PROFILES, model=None, impact_profile=None, X=None, y=None,
                 small: bool = False) -> ChipMappingResult:
    """Map a model on several chip profiles, and measure what each core's failure costs.

    Parameters
    ----------
    profiles : sequence of str or HardwareProfile
        Profiles to map on (a model that does not fit a profile's per-core limits is recorded
        with ``cores_used = -1`` and the reason).
    model : Network, optional
        Default: the bundled digits model (:func:`neurosim.load_digits_model`).
    impact_profile : str or HardwareProfile, optional
        The mapping whose cores are failed one at a time. Default: Loihi 2 with 32 neurons per
        core (:func:`small_core_profile`; the real Loihi 2 holds each layer of the bundled
        model on a single core).
    X, y : arrays, optional
        Inputs and labels (default: the bundled digits test split; 100 inputs with ``small``).

    Returns
    -------
    ChipMappingResult
    """
    import neurosim
    from neurosim.mapping import map_network

    started = time.perf_counter()
    model = model if model is not None else neurosim.load_digits_model()
    if X is None:
        X, y = neurosim.load_digits_test()
    if small:
        X = X[:100]
        y = None if y is None else y[:100]
    if impact_profile is None:
        impact_profile = small_core_profile("loihi2", 32)
    names, cores_used, chips, layer_cores, utilization, errors = [], [], [], {}, {}, {}
    for profile in profiles:
        try:
            mapping = map_network(model, profile)
        except MappingError as exc:
            name = profile if isinstance(profile, str) else profile.name
            names.append(name)
            cores_used.append(-1)
            chips.append(0)
            errors[name] = str(exc)
            layer_cores[name], utilization[name] = [], []
            continue
        name = mapping.profile.name
        names.append(name)
        cores_used.append(mapping.cores_used)
        chips.append(mapping.chips_needed)
        layer_cores[name] = [len(mapping.layer_cores(l)) for l in range(1, model.n_layers + 1)]
        utilization[name] = [float(c.utilization) for c in mapping.cores]
    mapping = map_network(model, impact_profile)
    faulty, clean = core_failure_outputs(mapping, X)
    clean_pred = clean.argmax(axis=1)
    flip = (faulty.argmax(axis=2) != clean_pred[None, :]).mean(axis=1)
    err = np.linalg.norm(faulty.astype(np.float64) - clean.astype(np.float64)[None], axis=2).mean(axis=1)
    if y is not None:
        y = np.asarray(y)
        accuracy = (faulty.argmax(axis=2) == y[None, :]).mean(axis=1)
        clean_acc = float(np.mean(clean_pred == y))
    else:
        accuracy = np.full(flip.shape, np.nan)
        clean_acc = float("nan")
    return ChipMappingResult(
        profiles=names, cores_used=np.asarray(cores_used, dtype=np.int64),
        chips_needed=np.asarray(chips, dtype=np.int64), layer_cores=layer_cores,
        utilization=utilization, errors=errors, impact_profile=mapping.profile.name,
        core_layer=np.array([c.layer for c in mapping.cores], dtype=np.int64),
        core_neurons=np.array([c.n_neurons for c in mapping.cores], dtype=np.int64),
        core_utilization=np.array([c.utilization for c in mapping.cores], dtype=np.float64),
        core_flip_rate=flip.astype(np.float64), core_accuracy=accuracy.astype(np.float64),
        core_error_l2=err, clean_accuracy=clean_acc,
        settings={"model": str(model), "n_inputs": int(X.shape[0]), "small": bool(small),
                  "impact_network": f"quantized for {mapping.profile.name}",
                  "impact_fault": ("tile reads 0" if mapping.profile.architecture == "crossbar"
                                   else "all neurons of the core crash silently"),
                  "spares": "not used: the impact of a failure that no spare core replaces",
                  "elapsed_s": time.perf_counter() - started})


def load_chip_mapping(path) -> ChipMappingResult:
    """Read a :class:`ChipMappingResult` written by ``save``."""
    return ChipMappingResult._load(path)


# --- running the notebooks ------------------------------------------------------------------------

def notebook_kernel_manager(folder):
    """A Jupyter kernel manager whose ``python3`` kernel runs this interpreter.

    The kernel spec is written into ``folder`` (a scratch directory) and only that directory is
    searched, so a stale user-level ``python3`` spec pointing at another Python cannot be picked
    up and nothing is installed into the environment.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = os.path.join(os.fspath(folder), "kernels")
    write_kernel_spec(os.path.join(kernels, "python3"))
    specs = KernelSpecManager(kernel_dirs=[kernels], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def execute_notebook(path, cwd, small: bool = False, timeout: int = 3600):
    """Execute one notebook with ``cwd`` as working directory and return the executed copy.

    ``NEUROSIM_NOTEBOOK_SMALL`` is set to ``1`` (``small``) or ``0`` for the kernel; the file at
    ``path`` is not modified. Raises ``nbclient.exceptions.CellExecutionError`` on a failing cell.
    """
    import tempfile

    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        from neurosim.errors import MissingExtraError

        raise MissingExtraError("Running the notebooks needs nbclient, nbformat and ipykernel: "
                                "pip install nbclient nbformat ipykernel") from None
    nb = nbformat.read(os.fspath(path), as_version=4)
    previous = {k: os.environ.get(k) for k in ("NEUROSIM_NOTEBOOK_SMALL", "MPLBACKEND")}
    os.environ["NEUROSIM_NOTEBOOK_SMALL"] = "1" if small else "0"
    os.environ["MPLBACKEND"] = "Agg"  # the kernel inherits it: no display needed
    try:
        with tempfile.TemporaryDirectory(prefix="neurosim-kernel-") as scratch:
            client = NotebookClient(nb, timeout=int(timeout), km=notebook_kernel_manager(scratch),
                                    resources={"metadata": {"path": os.fspath(cwd)}})
            client.execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def run_notebooks(folder="notebooks", small: bool = False, timeout: int = 3600,
                  names=None) -> list[str]:
    """Execute every notebook of ``folder`` with ``folder`` as working directory (at full size
    the notebooks write figures and results to ``folder/figures``). The notebook files are not
    modified: they stay without outputs.

    Needs ``nbclient``, ``nbformat`` and ``ipykernel`` (extra ``dev``). Returns the names run.
    """
    import pathlib

    folder = pathlib.Path(folder)
    paths = sorted(folder.glob("*.ipynb"))
    if names:
        wanted = set(names)
        paths = [q for q in paths if q.stem in wanted or q.name in wanted]
    if not paths:
        raise NeurosimFileNotFoundError(f"No notebooks to run in {str(folder)!r}.")
    done = []
    for path in paths:
        started = time.perf_counter()
        execute_notebook(path, folder, small=small, timeout=timeout)
        print(f"{path.name}: ok ({time.perf_counter() - started:.0f} s)", flush=True)
        done.append(path.name)
    return done


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m neurosim.experiments",
                                     description="Run the neurosim notebooks / experiments.")
    parser.add_argument("--run-notebooks", action="store_true",
                        help="execute every notebook in --folder (figures to FOLDER/figures)")
    parser.add_argument("--folder", default="notebooks")
    parser.add_argument("--small", action="store_true", help="small mode (NEUROSIM_NOTEBOOK_SMALL=1)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    args = parser.parse_args(argv)
    if not args.run_notebooks:
        parser.print_help()
        return 2
    run_notebooks(args.folder, small=args.small, timeout=args.timeout, names=args.names or None)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
