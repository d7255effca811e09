"""The paper's experiments as functions: error decay with width, the regularizer trade-off, and
chip mapping with per-core failure impact. One module per experiment:

* :mod:`~neurosim.experiments.error_decay`: Var Delta against the hidden width (today's
  set-up, or ``setup="paper"``: the first hidden width only, MNIST, seeds);
* :mod:`~neurosim.experiments.crash_aware`: crash-aware training (dropout without rescaling at
  the first hidden layer) against the accuracy under crashes;
* :mod:`~neurosim.experiments.tradeoff`: clean accuracy against fault tolerance for eq. (1);
* :mod:`~neurosim.experiments.chip_mapping`: cores per profile and per-core failure impact;
* :mod:`~neurosim.experiments.crossbar_analog`: accuracy and failure rate on analog crossbars
  against drift time and ADC bits;
* :mod:`~neurosim.experiments.common`: training, Var Delta estimates, scores, crash rates;
* :mod:`~neurosim.experiments.files`: saving and loading the results;
* :mod:`~neurosim.experiments.notebooks`: running the notebooks.

Every experiment returns a result dataclass with ``save(path)`` (HDF5, written atomically; root
attributes ``neurosim_format = "experiment"``, ``format_version = 1`` and ``experiment``) and a
matching ``load_*`` function. ``small=True`` gives a version that runs in seconds (tests and
notebooks' smoke runs); the numbers are then noisy and only the qualitative shape is meaningful.

Notation: ``Delta(x) = y_L(x; faulty) - y_L(x; clean)`` is the output error, and "Var Delta" is
``E_x [ sum_k Var(Delta_k(x)) ]``: the variance over fault draws of each output component,
summed over components and averaged over the test inputs (per component, the mean, in the
paper's set-up). Crashes are silent (a crashed neuron
outputs 0) and hit the hidden layers only.

``python -m neurosim.experiments --run-notebooks`` executes the notebooks in ``notebooks/``
(full size, figures to ``notebooks/figures/``; nothing is written into the notebooks).
"""

from neurosim.experiments.chip_mapping import (DEFAULT_PROFILES, ChipMappingResult, chip_mapping,
                                               core_failure_outputs, load_chip_mapping,
                                               small_core_profile)
from neurosim.experiments.common import (clean_score, fit_loglog_slope, hidden_rates,
                                         mc_crashed_accuracy, mc_output_variance, t_interval,
                                         theory_variances, train_network)
from neurosim.experiments.crash_aware import (CrashAwareResult, crash_aware_training,
                                              load_crash_aware)
from neurosim.experiments.crossbar_analog import AnalogSweepResult, analog_sweep, load_analog_sweep
from neurosim.experiments.error_decay import ErrorDecayResult, error_decay, load_error_decay
from neurosim.experiments.files import EXPERIMENT_FORMAT_VERSION, SavedResult
from neurosim.experiments.notebooks import execute_notebook, main, notebook_kernel_manager, run_notebooks
from neurosim.experiments.tradeoff import TradeoffResult, load_tradeoff, regularizer_tradeoff

__all__ = [
    "ErrorDecayResult", "TradeoffResult", "ChipMappingResult", "error_decay",
    "regularizer_tradeoff", "chip_mapping", "load_error_decay", "load_tradeoff",
    "load_chip_mapping", "mc_output_variance", "fit_loglog_slope", "run_notebooks",
    "execute_notebook", "notebook_kernel_manager", "small_core_profile", "theory_variances",
    "core_failure_outputs", "train_network", "clean_score", "hidden_rates", "t_interval",
    "SavedResult", "EXPERIMENT_FORMAT_VERSION", "DEFAULT_PROFILES", "main",
    "AnalogSweepResult", "analog_sweep", "load_analog_sweep", "CrashAwareResult",
    "crash_aware_training", "load_crash_aware", "mc_crashed_accuracy",
]
