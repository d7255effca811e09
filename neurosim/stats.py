"""Every interval and bound neurosim reports, in one place.

* Clopper-Pearson (exact binomial) intervals, two-sided and one-sided;
* the Bernoulli KL divergence and the Chernoff-Hoeffding (KL) bounds on the mean of i.i.d.
  [0, 1] variables;
* the empirical Bernstein interval (Maurer & Pontil 2009);
* t intervals (batch means) and a log-log slope with its t interval.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "clopper_pearson",
    "cp_upper",
    "cp_lower",
    "kl_bernoulli",
    "kl_upper",
    "kl_lower",
    "bernstein_interval",
    "t_interval",
    "fit_loglog_slope",
]


# --- Clopper-Pearson -------------------------------------------------------------------------

def cp_upper(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound at level ``1 - alpha`` for ``k`` successes in ``n``."""
    return 1.0 if k >= n else float(_scipy_stats.beta.ppf(1 - alpha, k + 1, n - k))


def cp_lower(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound at level ``1 - alpha``."""
    return 0.0 if k <= 0 else float(_scipy_stats.beta.ppf(alpha, k, n - k + 1))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion ``k / n``.

    Each side gets ``(1 - confidence) / 2``; ``n <= 0`` gives ``(0, 1)``.
    """
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    return cp_lower(k, n, alpha / 2), cp_upper(k, n, alpha / 2)


# --- Chernoff-Hoeffding ------------------------------------------------------------------------

def kl_bernoulli(a: float, b: float) -> float:
    """``d_KL(a || b) = a log(a/b) + (1-a) log((1-a)/(1-b))`` for numbers in [0, 1].

    ``0 log(0/v) = 0``; a positive mass against ``v = 0`` gives infinity.
    """
    def term(u, v):
        if u == 0:
            return 0.0
        if v == 0:
            return math.inf
        return u * math.log(u / v)
    return term(a, b) + term(1.0 - a, 1.0 - b)


def _kl_bound(mean: float, m: int, alpha: float, upper: bool) -> float:
    """The mu on the ``upper`` (or lower) side of ``mean`` where ``m d_KL(mean || mu)`` reaches
    ``log(1/alpha)``, by bisection (d_KL grows monotonically away from ``mean``)."""
    mean = min(max(mean, 0.0), 1.0)
    edge = 1.0 if upper else 0.0
    if mean == edge:
        return edge
    target = math.log(1.0 / alpha) / m
    if kl_bernoulli(mean, (1.0 - 1e-16) if upper else 1e-300) <= target:
        return edge
    inside, outside = mean, edge  # d_KL <= target at `inside`, > target at `outside`
    for _ in range(200):
        mid = 0.5 * (inside + outside)
        if kl_bernoulli(mean, mid) > target:
            outside = mid
        else:
            inside = mid
    return outside


def kl_upper(mean: float, m: int, alpha: float) -> float:
    """Largest mu with ``m d_KL(mean || mu) <= log(1/alpha)``: an upper confidence bound on the
    mean of m i.i.d. [0, 1] variables (Chernoff-Hoeffding, Hoeffding 1963), holding with
    probability >= 1 - alpha."""
    return _kl_bound(mean, m, alpha, upper=True)


def kl_lower(mean: float, m: int, alpha: float) -> float:
    """Smallest mu with ``m d_KL(mean || mu) <= log(1/alpha)`` (lower confidence bound)."""
    return _kl_bound(mean, m, alpha, upper=False)


# --- Bernstein ---------------------------------------------------------------------------------

def bernstein_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Empirical Bernstein interval (Maurer & Pontil 2009) for the mean of i.i.d. values in [0, 1].

    With probability >= ``confidence``: ``|mean - E| <= sqrt(2 V ln(4/a) / n) + 7 ln(4/a) /
    (3 (n - 1))``, ``V`` the unbiased sample variance and ``a = 1 - confidence`` split over
    both sides.
    """
    values = np.asarray(values)
    n = values.size
    if n < 2:
        return 0.0, 1.0
    a = 1.0 - confidence
    log_term = math.log(4.0 / a)
    mean = float(values.mean())
    var = float(values.var(ddof=1))
    half = math.sqrt(2.0 * var * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))
    return max(0.0, mean - half), min(1.0, mean + half)


# --- t intervals -------------------------------------------------------------------------------

def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of i.i.d. estimates (batch means) and its t interval: ``(mean, low, high)``."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * se
    return mean, mean - half, mean + half


def fit_loglog_slope(x, y, confidence: float = 0.95) -> dict:
    """Least-squares slope of ``log y`` against ``log x`` with a t-based confidence interval.

    ``slope +- t_{(1+c)/2, n-2} * stderr`` with the standard error of
    :func:`scipy.stats.linregress`. Needs at least 3 points (one degree of freedom).

    Returns
    -------
    dict with ``slope, stderr, low, high, intercept, rvalue, n_points, confidence``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 3:
        nan = float("nan")
        return {"slope": nan, "stderr": nan, "low": nan, "high": nan, "intercept": nan,
                "rvalue": nan, "n_points": int(ok.sum()), "confidence": confidence}
    fit = _scipy_stats.linregress(np.log(x[ok]), np.log(y[ok]))
    t = float(_scipy_stats.t.ppf(0.5 + confidence / 2, int(ok.sum()) - 2))
    return {"slope": float(fit.slope), "stderr": float(fit.stderr),
            "low": float(fit.slope - t * fit.stderr), "high": float(fit.slope + t * fit.stderr),
            "intercept": float(fit.intercept), "rvalue": float(fit.rvalue),
            "n_points": int(ok.sum()), "confidence": confidence}
