"""Every interval and bound neurosim reports, in one place.

* Clopper-Pearson (exact binomial) intervals, two-sided and one-sided;
* the Bernoulli KL divergence and the Chernoff-Hoeffding (KL) bounds on the mean of i.i.d.
  [0, 1] variables;
* the betting bounds on the mean of i.i.d. [0, 1] variables (Waudby-Smith & Ramdas 2023),
  which adapt to their variance;
* the empirical Bernstein interval (Maurer & Pontil 2009);
* t intervals (batch means) and a log-log slope with its t interval.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _scipy_stats

from neurosim.errors import param_error

__all__ = [
    "clopper_pearson",
    "cp_upper",
    "cp_lower",
    "kl_bernoulli",
    "kl_upper",
    "kl_lower",
    "betting_upper",
    "betting_lower",
    "betting_rejects",
    "BETTING_TRUNCATION",
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


# --- betting (Waudby-Smith & Ramdas) -------------------------------------------------------------

#: Most of its capital a bet may risk, ``c`` in ``lambda_i(m) <= c / (1 - m)``. Waudby-Smith &
#: Ramdas suggest 1/2 or 3/4 for means near 1/2; for the small means a certificate bounds, 0.9
#: gave the narrowest bounds over the distributions measured in tests/test_population_bound.py
#: (all zeros, Bernoulli, Beta and mixtures, 30 and 300 values), within 5 % of the KL bound
#: on Bernoulli values and 20 to 30 % below it on spread ones.
BETTING_TRUNCATION = 0.9


def _unit_values(values, owner: str) -> np.ndarray:
    """``values`` as a float64 1-D array of at least one number in [0, 1] (or the error)."""
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(owner, "values", "a 1-D array of numbers in [0, 1]", values) from None
    if out.ndim != 1 or out.size == 0:
        raise param_error(owner, "values", "a non-empty 1-D array of numbers in [0, 1]",
                          f"an array of shape {out.shape}")
    bad = ~((out >= 0.0) & (out <= 1.0))  # (NaN fails both)
    if bad.any():
        raise param_error(owner, "values", "a 1-D array of numbers in [0, 1]",
                          float(out[np.flatnonzero(bad)[0]]))
    return out


def _check_open_unit(value, name: str, owner: str) -> float:
    """``value`` as a float in (0, 1), or the error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0.0 < float(value) < 1.0:
        raise param_error(owner, name, "a float in (0, 1)", value)
    return float(value)


def _betting_bets(values: np.ndarray, alpha: float) -> np.ndarray:
    """The predictable plug-in bets for a fixed sample size ``n`` (Waudby-Smith & Ramdas 2023,
    eqs. 26-27 with the fixed-n rate of their section 5.1), before truncation:
    ``lambda_i = sqrt(2 ln(1/alpha) / (n sigma2_{i-1}))``, with ``mu_i = (1/2 + sum_{j<=i}
    x_j) / (i + 1)`` and ``sigma2_i = (1/4 + sum_{j<=i} (x_j - mu_j)^2) / (i + 1)``,
    ``sigma2_0 = 1/4``: ``lambda_i`` depends on ``x_1 .. x_{i-1}`` only."""
    n = values.size
    i = np.arange(1, n + 1, dtype=np.float64)
    mu = (0.5 + np.cumsum(values)) / (i + 1.0)
    sigma2 = (0.25 + np.cumsum((values - mu) ** 2)) / (i + 1.0)
    previous = np.concatenate(([0.25], sigma2[:-1]))
    return np.sqrt(2.0 * math.log(1.0 / alpha) / (n * previous))


def _log_capital(values: np.ndarray, bets: np.ndarray, m: float, truncation: float) -> float:
    """``max_t log K_t(m)``, ``K_t(m) = prod_{i<=t} (1 + lambda_i(m) (m - x_i))`` with
    ``lambda_i(m) = min(bets_i, truncation / (1 - m))``: the capital of betting that the mean
    is below ``m``. Each factor is at least ``1 - truncation > 0`` and non-decreasing in
    ``m`` (``(x - m) / (1 - m)`` falls as ``m`` grows), so the capital is too."""
    bet = np.minimum(bets, truncation / (1.0 - m)) if m < 1.0 else bets
    return float(np.max(np.cumsum(np.log1p(bet * (m - values)))))


def betting_upper(values, alpha: float, truncation: float = BETTING_TRUNCATION) -> float:
    """Upper confidence bound, at level ``1 - alpha``, on the mean of i.i.d. values in [0, 1]
    by betting (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by
    betting", JRSS-B 86(1), sections 4-5).

    Parameters
    ----------
    values : array-like
        ``x_1 .. x_n`` in [0, 1], in a random order (i.i.d. as a sequence: the bets are
        predictable, so an order chosen after seeing the values, such as sorted, is not valid;
        permute a sample with an independent random permutation first).
    alpha : float
        In (0, 1): the bound is below the true mean with probability at most ``alpha``.
    truncation : float
        ``c`` in (0, 1), :data:`BETTING_TRUNCATION` by default.

    Returns
    -------
    float
        The smallest ``m`` whose capital ``K_t(m)`` (:func:`_log_capital`) reaches ``1 / alpha``
        at some ``t <= n``, or 1; and never below the sample mean (a valid widening).

    Notes
    -----
    For the true mean ``mu`` the capital ``K_t(mu)`` is a nonnegative martingale with
    ``K_0 = 1`` (the bets are predictable and keep every factor positive), so by Ville's
    inequality ``P(exists t <= n: K_t(mu) >= 1/alpha) <= alpha``; since ``K_t(m)`` grows with
    ``m``, every ``m`` at or above the returned bound is rejected, and ``mu`` lies below it
    with probability at least ``1 - alpha``. One-sided: for two sides give each its ``alpha``.
    Variance-adaptive: about ``mean + sqrt(2 sigma^2 ln(1/alpha) / n)`` for large ``n``,
    where the Chernoff-Hoeffding (KL) bound :func:`kl_upper` pays for the Bernoulli variance.
    """
    values = _unit_values(values, "betting_upper")
    alpha = _check_open_unit(alpha, "alpha", "betting_upper")
    truncation = _check_open_unit(truncation, "truncation", "betting_upper")
    target = math.log(1.0 / alpha)
    bets = _betting_bets(values, alpha)
    mean = float(values.mean())
    if _log_capital(values, bets, 1.0, truncation) < target:
        return 1.0
    # K(0) <= 1 < 1/alpha: 0 is never rejected; bisect between it and 1 (rejected).
    inside, outside = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (inside + outside)
        if mid <= inside or mid >= outside:  # float resolution reached
            break
        if _log_capital(values, bets, mid, truncation) >= target:
            outside = mid
        else:
            inside = mid
    return max(outside, min(mean, 1.0))


def betting_rejects(values, mean: float, alpha: float,
                    truncation: float = BETTING_TRUNCATION) -> bool:
    """Whether the betting test at level ``alpha`` rejects a population mean of ``mean`` or
    more (its capital reaches ``1 / alpha``): then ``betting_upper(values, alpha) <= mean``
    unless the sample mean is above ``mean``. One pass over the values."""
    values = _unit_values(values, "betting_rejects")
    alpha = _check_open_unit(alpha, "alpha", "betting_rejects")
    truncation = _check_open_unit(truncation, "truncation", "betting_rejects")
    mean = float(mean)
    if not 0.0 <= mean <= 1.0:
        raise param_error("betting_rejects", "mean", "a float in [0, 1]", mean)
    return (_log_capital(values, _betting_bets(values, alpha), mean, truncation)
            >= math.log(1.0 / alpha))


def betting_lower(values, alpha: float, truncation: float = BETTING_TRUNCATION) -> float:
    """Lower confidence bound at level ``1 - alpha``: ``1 - betting_upper(1 - values)``
    (the same bets on the mirrored values), never above the sample mean."""
    values = _unit_values(values, "betting_lower")
    alpha = _check_open_unit(alpha, "alpha", "betting_lower")
    truncation = _check_open_unit(truncation, "truncation", "betting_lower")
    return max(0.0, min(1.0 - betting_upper(1.0 - values, alpha, truncation),
                        float(values.mean())))


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
