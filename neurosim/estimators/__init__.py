"""Estimators: they turn blocks of work into statistics that merge exactly and in any order.

* :mod:`neurosim.estimators.montecarlo`: plain Monte Carlo over (fault draw, input) pairs;
* :mod:`neurosim.estimators.stratified`: the stratified rare-event estimator (exact strata by
  fault count, conditional sampling where a stratum is too large).

A runner (:mod:`neurosim.runners`) computes the blocks; ``simulate`` and ``certify`` are the
front doors.
"""

from neurosim.estimators.exact import ExactSum
from neurosim.estimators.montecarlo import BLOCK_PAIRS, MonteCarlo, MonteCarloStats
from neurosim.estimators.stratified import StrataCounts, StratifiedEstimator

__all__ = ["ExactSum", "MonteCarlo", "MonteCarloStats", "BLOCK_PAIRS", "StratifiedEstimator",
           "StrataCounts"]
