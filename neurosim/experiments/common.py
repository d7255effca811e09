"""Pieces the experiments share: training, the Var Delta estimates, scores and crash rates.

Notation: ``Delta(x) = y_L(x; faulty) - y_L(x; clean)`` is the output error, and "Var Delta" is
``E_x [ sum_k Var(Delta_k(x)) ]``: the variance over fault draws of each output component,
summed over components and averaged over the test inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from neurosim.backends import get_backend
from neurosim.errors import param_error
from neurosim.faults import FaultModel, NeuronCrash
from neurosim.plan import build_plan
from neurosim.runner_choice import runner_scope
from neurosim.sampler import sample_faults
from neurosim.stats import fit_loglog_slope, t_interval
from neurosim.theory import crash_derivatives, single_fault_terms, taylor_moments
from neurosim.train import train

__all__ = ["train_network", "clean_score", "hidden_rates", "theory_variances",
           "mc_output_variance", "mc_crashed_accuracy", "fit_loglog_slope", "t_interval",
           "run_grid"]


@dataclass(frozen=True)
class _GridPoint:
    """``self(i)`` is ``(i, function(items[i]))``: a picklable task of an experiment's grid."""

    function: object
    items: tuple

    def __call__(self, i: int):
        return int(i), self.function(self.items[int(i)])


def run_grid(runner, function, items, owner: str, on_done=None) -> list:
    """``[function(item) for item in items]``, each item a task of ``runner`` (``"serial"``, a
    :class:`neurosim.DaskRunner`, ...; :mod:`neurosim.runners`), in the items' order whatever
    order they finish in. ``on_done(i, value)`` is called as each one finishes. A point's
    numbers do not depend on where it runs (each trains with its own seed)."""
    items = tuple(items)
    out = [None] * len(items)
    with runner_scope(runner, owner) as run:
        for i, value in run.map(_GridPoint(function, items), range(len(items))):
            out[i] = value
            if on_done is not None:
                on_done(i, value)
    return out


def train_network(data, hidden, epochs, seed, lam=0.0, mu=0.0, nu=0.0, **extra):
    """Train an MLP on ``data`` (a ``TrainingData``) with the regularizer weights given."""
    import torch

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


def clean_score(network, X, y) -> float:
    """Test accuracy (integer labels) or mean squared error (regression targets)."""
    out = network.forward(X).astype(np.float64)
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        return float(np.mean(out.argmax(axis=1) == y))
    return float(np.mean((out - y.reshape(out.shape[0], -1)) ** 2))


def hidden_rates(network, p: float) -> np.ndarray:
    """Crash rate of layers 0..L: ``p`` on the hidden layers 1..L-1, 0 on input and output."""
    rates = np.zeros(network.n_layers + 1)
    rates[1:network.n_layers] = p
    return rates


def theory_variances(network, X, rates, backend="auto") -> tuple[float, float]:
    """Var Delta by Prop. 4 (first order) and by the exact single-fault terms ("b4").

    ``Var = sum_l p_l (1 - p_l) sum_i t_i(x)^2`` summed over output components and averaged
    over the inputs, with ``t`` the crash derivatives ``d_i^l`` (Prop. 4) or the exact
    single-fault errors ``D_i^l`` (:func:`neurosim.theory.single_fault_terms`).
    """
    rates = np.asarray(rates, dtype=np.float64)
    active = [l for l in range(rates.size) if rates[l] > 0]
    _, var_first = taylor_moments(crash_derivatives(network, X), rates)
    _, var_exact = taylor_moments(single_fault_terms(network, X, layers=active, backend=backend), rates)
    return float(var_first.sum(axis=1).mean()), float(var_exact.sum(axis=1).mean())


def mc_output_variance(target, X, rates, n_samples: int = 1000, n_batches: int = 10,
                       seed: int = 0, max_rows: int = 8192, backend="auto") -> np.ndarray:
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
    if n_batches < 2:
        raise param_error("mc_output_variance", "n_batches", "an integer >= 2", n_batches)
    per_batch = int(n_samples) // int(n_batches)
    if per_batch < 2:
        raise param_error("mc_output_variance", "n_samples", f"at least 2 x n_batches = {2 * n_batches}",
                          n_samples)
    plan = build_plan(target, FaultModel([NeuronCrash(tuple(float(r) for r in rates))]),
                      owner="mc_output_variance")
    backend = get_backend(backend, "mc_output_variance")
    backend.check(plan)
    X = plan.network.check_input(X)
    cache = backend.clean_cache(plan, X)
    m, k = X.shape[0], plan.widths[-1]
    clean = cache.output.astype(np.float64)
    rounds_per_chunk = max(1, max_rows // m)
    estimates = np.empty(int(n_batches))
    with backend.session():
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
                delta = (backend.propagate(plan, cache, batch, rows, row_input).astype(np.float64)
                         - clean[row_input])
                for j in range(k):
                    s1[:, j] += np.bincount(row_input, weights=delta[:, j], minlength=m)
                    s2[:, j] += np.bincount(row_input, weights=delta[:, j] ** 2, minlength=m)
            var = (s2 - s1 ** 2 / per_batch) / (per_batch - 1)
            estimates[b] = float(np.maximum(var, 0.0).sum(axis=1).mean())
    return estimates


def mc_crashed_accuracy(target, X, y, rates, n_samples: int = 100, seed: int = 0,
                        max_rows: int = 8192, backend="auto") -> tuple[int, int]:
    """Accuracy under silent crashes: ``(correct, total)`` over ``n_samples`` transient crash
    draws per input (layer ``l`` at rate ``rates[l]``), counting a (draw, input) pair correct
    when the faulty network's argmax is the label ``y``. Draws come from
    ``SeedSequence([seed, chunk])``."""
    plan = build_plan(target, FaultModel([NeuronCrash(tuple(float(r) for r in rates))]),
                      owner="mc_crashed_accuracy")
    backend = get_backend(backend, "mc_crashed_accuracy")
    backend.check(plan)
    X = plan.network.check_input(X)
    y = np.asarray(y)
    cache = backend.clean_cache(plan, X)
    m = X.shape[0]
    clean_right = cache.output.argmax(axis=1) == y
    rounds_per_chunk = max(1, max_rows // m)
    correct = total = 0
    with backend.session():
        for chunk, start in enumerate(range(0, int(n_samples), rounds_per_chunk)):
            rounds = min(rounds_per_chunk, int(n_samples) - start)
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), chunk]))
            batch = sample_faults(plan, rng, rounds * m)
            right = np.tile(clean_right, rounds)  # draws without a fault keep the clean answer
            rows = np.flatnonzero(batch.draw_has_fault)
            if rows.size:
                row_input = rows % m
                out = backend.propagate(plan, cache, batch, rows, row_input)
                right[rows] = out.argmax(axis=1) == y[row_input]
            correct += int(right.sum())
            total += rounds * m
    return correct, total
