"""Implementation of the paper's bounds and estimates (see :mod:`neurosim.theory`).

Notation: layers 0..L (0 the input), ``n_l`` neurons in layer l, ``p_l`` its crash rate,
``y_l`` activations, ``z_l`` pre-activations, ``D_i^l(x) = y_L(x; neuron i of layer l crashed)
- y_L(x)`` the exact single-fault error and ``d_i^l(x) = dy_L / dxi_i^l`` its first-order
version (a crash variable ``xi`` that moves the neuron from healthy, 0, to crashed, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurosim.backends import get_backend, single_fault_outputs
from neurosim.errors import ValidationError, param_error
from neurosim.faults import CRASH_MODES, FaultModel, NeuronCrash
from neurosim.mapping import target_network
from neurosim.metrics import METRICS, flip_margin, loss
from neurosim.network import Network
from neurosim.plan import build_plan
from neurosim.stats import kl_bernoulli
from neurosim.validation import Interval, check_param


# --- Prop. 2 ------------------------------------------------------------------------------------

def lipschitz_chain(network: Network, from_layer: int = 0) -> float:
    """``C`` with ``||y_L(a) - y_L(b)||_2 <= C ||y_l(a) - y_l(b)||_2`` for activations of layer l.

    ``C = prod_{k > l} ||A_k||_2 Lip(T_k) * prod_{l < k < L} Lip(phi_k)`` (the last layer is
    linear; ``T_k`` the pooling before layer k; a conv layer's ``||A_k||_2`` is its operator
    norm, from the SVD when small, else by Lanczos iteration); see
    :meth:`neurosim.Network.lipschitz_chain`.
    """
    return network.lipschitz_chain(from_layer)


def spectral_bound(network: Network, perturbation_norm: float, layer: int = 0) -> float:
    """Prop. 2: ``||y_L(x2) - y_L(x1)||_2 <= ||y_l(x2) - y_l(x1)||_2 prod ||W_k||_2 Lip(phi_k)``.

    Parameters
    ----------
    perturbation_norm : float
        L2 norm of the change of layer ``layer``'s activations (the input for ``layer = 0``).
    """
    return float(perturbation_norm) * lipschitz_chain(network, layer)


# --- Prop. 3 ------------------------------------------------------------------------------------

def incoming_masses(network: Network) -> list[np.ndarray]:
    """``W_l^i = sum_j |W_l^{ij}|``, the incoming L1 mass of each neuron, for layers 1..L."""
    return [layer.incoming_mass() for layer in network.layers]


def q_balance(network: Network) -> np.ndarray:
    """``q_l = min_i W_l^i / max_i W_l^i`` for layers 1..L (Assumption 3: q-balanced masses)."""
    out = []
    for mass in incoming_masses(network):
        out.append(float(mass.min() / mass.max()) if mass.max() > 0 else 0.0)
    return np.array(out)


def delta0_bound(network: Network, crash_rates, alpha: float = 0.1) -> tuple[np.ndarray, float]:
    """Prop. 3: ``P{crashed mass of layer l >= alpha x its total mass} <= exp(-n_l q_l d_KL(alpha || p_l))``.

    The crashed mass of layer l is ``sum_i xi_i W_l^i`` (neuron i crashes with ``p_l``, its
    incoming weights are lost). The bound holds for ``alpha > p_l``: with ``a_i = W_l^i / max W_l^i``
    in ``[q_l, 1]`` and ``g(s) = log(1 - p + p e^s) - alpha s`` convex with ``g(0) = 0``,
    Chernoff's bound at ``t = s*`` gives ``sum_i g(s* a_i) <= sum_i a_i g(s*) <= -n_l q_l d_KL``.

    Parameters
    ----------
    crash_rates : array_like
        Crash rate of layers 0..L (as ``NeuronCrash.layer_rates``) or 1..L.
    alpha : float
        Fraction of the layer's incoming mass, in (0, 1).

    Returns
    -------
    per_layer : ndarray
        The bound for layers 1..L (1.0 where ``alpha <= p_l``: no bound; 0 where ``p_l = 0``).
    union : float
        ``min(1, sum_l per_layer)``: any layer's crashed mass reaches alpha (union bound).
    """
    rates = np.asarray(crash_rates, dtype=np.float64)
    L = network.n_layers
    if rates.size == L + 1:
        rates = rates[1:]
    if rates.size != L:
        raise ValidationError(f"delta0_bound needs {L} or {L + 1} crash rates. Got {rates.size} instead.")
    if not 0.0 < alpha < 1.0:
        raise param_error("delta0_bound", "alpha", "a float in (0, 1)", alpha)
    q = q_balance(network)
    per_layer = np.ones(L)
    for l in range(L):
        p = rates[l]
        if p == 0:
            per_layer[l] = 0.0
        elif alpha > p:
            per_layer[l] = math.exp(-network.widths[l + 1] * q[l] * kl_bernoulli(alpha, p))
    return per_layer, float(min(1.0, per_layer.sum()))


# --- Prop. 4 ------------------------------------------------------------------------------------

def output_jacobians(network: Network, X) -> tuple[list[np.ndarray], list, list]:
    """``J_l = dy_L / dy_l`` for l = 0..L, each of shape (n_inputs, n_L, n_l), by backpropagation.

    Returns the Jacobians and the forward pass (pre-activations ``zs`` and activations ``ys``).
    """
    zs, ys = network.trace(X)
    zs = [z.astype(np.float64) for z in zs]
    ys = [y.astype(np.float64) for y in ys]
    m, L = ys[0].shape[0], network.n_layers
    J = [None] * (L + 1)
    J[L] = np.broadcast_to(np.eye(network.n_outputs), (m, network.n_outputs, network.n_outputs)).copy()
    for l in range(L, 0, -1):
        layer = network.layers[l - 1]
        slope = layer.activation.derivative(zs[l])  # (m, n_l); identity for the last layer
        # Through A_l and the pooling / flattening before it (at the clean activations).
        J[l - 1] = network.pullback(l, J[l] * slope[:, None, :], ys[l - 1])
    return J, zs, ys


def crash_derivatives(network: Network, X, semantics: str = "silent", value: float = 0.0) -> list[np.ndarray]:
    """``d_i^l(x) = dy_L / dxi_i^l`` for layers 0..L, each (n_inputs, n_l, n_L).

    The crash variable moves neuron i from healthy (0) to crashed (1): ``silent`` ``y_i (1 - xi)``,
    ``paper`` ``z_i = b_i + (1 - xi)(z_i - b_i)`` (for the input layer, as silent), ``stuck``
    ``y_i + xi (v - y_i)``. Derivatives come from backpropagation, not finite differences.
    """
    J, zs, ys = output_jacobians(network, X)
    out = []
    for l in range(network.n_layers + 1):
        Jl = J[l]  # (m, n_L, n_l)
        if semantics == "silent" or (semantics == "paper" and l == 0):
            factor = -ys[l]
            d = Jl * factor[:, None, :]
        elif semantics == "paper":
            layer = network.layers[l - 1]
            slope = layer.activation.derivative(zs[l])
            factor = -(zs[l] - layer.bias.astype(np.float64)) * slope
            d = Jl * factor[:, None, :]
        elif semantics == "stuck":
            factor = value - ys[l]
            d = Jl * factor[:, None, :]
        else:
            raise param_error("crash_derivatives", "semantics", "silent, paper or stuck", semantics)
        out.append(np.ascontiguousarray(np.swapaxes(d, 1, 2)))  # (m, n_l, n_L)
    return out


def taylor_moments(terms: list[np.ndarray], crash_rates, exact_variance: bool = True):
    """Prop. 4 from per-neuron terms: ``E = sum_l p_l sum_i t_i``, ``Var = sum_l p_l(1-p_l) sum_i t_i^2``.

    ``terms[l]`` has shape (n_inputs, n_l, k) for layers 0..L (first-order derivatives or
    exact single-fault errors). ``exact_variance=False`` uses ``p_l`` instead of ``p_l(1 - p_l)``
    (as the paper's code did). Returns mean and variance of shape (n_inputs, k).
    """
    rates = np.asarray(crash_rates, dtype=np.float64)
    mean = 0.0
    var = 0.0
    for l, t in enumerate(terms):
        p = rates[l]
        if p == 0:
            continue
        mean = mean + p * t.sum(axis=1)
        var = var + (p * (1 - p) if exact_variance else p) * (t ** 2).sum(axis=1)
    if np.isscalar(mean):
        shape = (terms[0].shape[0], terms[0].shape[2])
        return np.zeros(shape), np.zeros(shape)
    return mean, var


def single_fault_terms(target, X, semantics: str = "silent", value: float = 0.0,
                       layers=None, backend="auto") -> list[np.ndarray]:
    """Exact single-fault errors ``D_i^l(x) = y_L(x; i crashed) - y_L(x)`` ("b4"), layers 0..L.

    Computed by one batched pass of the backend: every (input, neuron) pair is a row with
    exactly one crash (on the numba backend starting from the cached clean activations); no
    network copies.

    Parameters
    ----------
    target : Network or Mapping
        A mapping runs its quantized network.
    layers : iterable of int, optional
        Layers to compute (default 0..L); others get empty arrays.
    backend : str or Backend
        As for :func:`neurosim.simulate`.
    """
    crash = NeuronCrash(0.0, semantics=semantics, value=value)
    plan = build_plan(target, FaultModel([crash]), owner="single_fault_terms")
    backend = get_backend(backend, "single_fault_terms")
    backend.check(plan)
    Xc = plan.network.check_input(X)
    cache = backend.clean_cache(plan, Xc)
    L = plan.n_layers
    wanted = range(L + 1) if layers is None else layers
    out = []
    for l in range(L + 1):
        if l not in wanted:
            out.append(np.zeros((Xc.shape[0], 0, plan.widths[-1])))
            continue
        with backend.session():
            faulty = single_fault_outputs(backend, plan, cache, l, CRASH_MODES[semantics],
                                          crash.value)  # (m, n_l, n_L)
        out.append(faulty.astype(np.float64) - cache.output.astype(np.float64)[:, None, :])
    return out


# --- Prop. 5 ------------------------------------------------------------------------------------

def chebyshev_certificate(mean, var, eps, delta0: float = 0.0) -> np.ndarray:
    """Prop. 5: ``delta = delta0 + Var / t^2`` with ``t = eps - E`` (1 where ``t <= 0``), capped at 1.

    For vectors (one row per input) ``E`` is read as ``||E||_2`` and ``Var`` as the summed
    component variances: ``P(||D||_2 >= eps) <= sum_k Var_k / (eps - ||E||_2)^2``; ``eps`` may be
    one value per input.
    """
    mean = np.atleast_2d(np.asarray(mean, dtype=np.float64))
    var = np.atleast_2d(np.asarray(var, dtype=np.float64))
    eps = np.broadcast_to(np.asarray(eps, dtype=np.float64), (mean.shape[0],))
    t = eps - np.linalg.norm(mean, axis=1)
    total_var = var.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cheb = np.where(t > 0, total_var / np.where(t > 0, t, 1.0) ** 2, 1.0)
    return np.minimum(1.0, delta0 + cheb)


# --- reports ------------------------------------------------------------------------------------

def assumptions_report(network: Network, crash_rates, q_min: float = 0.01) -> list[dict]:
    """Which of the paper's assumptions hold for this network and these crash rates."""
    rates = np.asarray(crash_rates, dtype=np.float64)
    q = q_balance(network)
    hidden_widths = network.widths[1:-1] or network.widths[1:]
    p_max = float(rates.max()) if rates.size else 0.0
    hidden = network.layers[:-1]
    lip = max((layer.activation.lipschitz for layer in hidden), default=1.0)
    worst = max(hidden, key=lambda layer: layer.activation.lipschitz, default=None)
    pool_lip = max((t.lipschitz for pre in network.pre for t in pre), default=1.0)
    report = [
        {"assumption": "Def. 1: activations 1-Lipschitz", "value": lip, "holds": lip <= 1.0,
         **({"note": f"{worst.activation} has Lipschitz constant {lip:.4g}; the bounds use it"}
            if lip > 1.0 else {})},
    ]
    if pool_lip > 1.0:
        report.append({"assumption": "Def. 1: pooling 1-Lipschitz (l2)", "value": pool_lip,
                       "holds": False, "note": "overlapping max pooling: sqrt(ceil(k/s)^2); the "
                       "bounds use it"})
    return report + [
        {"assumption": "1: p small (1e-4 to 1e-3)", "value": p_max, "holds": p_max <= 1e-3},
        {"assumption": "2: layers wide (n ~ 100)", "value": min(hidden_widths),
         "holds": min(hidden_widths) >= 100},
        {"assumption": f"3: incoming L1 masses q-balanced (q > {q_min})", "value": float(q.min()),
         "holds": bool(q.min() > q_min)},
        {"assumption": "4-5: bounded Hessian, derivatives ~ 1/n", "value": None, "holds": None,
         "note": "not checked; Props. 4-5 are first-order approximations, not guarantees"},
    ]


@dataclass
class TheoryReport:
    """The paper's bounds for one network, fault rates and metric (all per-input means)."""

    metric: str
    eps: float
    crash_rates: np.ndarray
    alpha: float
    delta0_per_layer: np.ndarray
    delta0: float
    taylor_mean: float
    taylor_var: float
    taylor_delta: float
    b4_mean: float
    b4_var: float
    b4_delta: float
    lipschitz: list
    q_balance: np.ndarray
    assumptions: list
    per_input: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "eps": self.eps,
            "crash_rates": self.crash_rates.tolist(),
            "alpha": self.alpha,
            "delta0": self.delta0,
            "delta0_per_layer": self.delta0_per_layer.tolist(),
            "taylor": {"mean": self.taylor_mean, "var": self.taylor_var,
                       "delta_chebyshev": self.taylor_delta,
                       "note": "Props. 4-5: first-order approximation, not a guarantee"},
            "single_fault": {"mean": self.b4_mean, "var": self.b4_var,
                             "delta_chebyshev": self.b4_delta},
            "lipschitz_chain": self.lipschitz,
            "q_balance": self.q_balance.tolist(),
            "assumptions": self.assumptions,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TheoryReport":
        """Rebuild a report from :meth:`to_dict` (the per-input arrays are not saved)."""
        return cls(
            metric=d["metric"], eps=d["eps"], crash_rates=np.asarray(d["crash_rates"], float),
            alpha=d["alpha"], delta0_per_layer=np.asarray(d["delta0_per_layer"], float),
            delta0=d["delta0"], taylor_mean=d["taylor"]["mean"], taylor_var=d["taylor"]["var"],
            taylor_delta=d["taylor"]["delta_chebyshev"], b4_mean=d["single_fault"]["mean"],
            b4_var=d["single_fault"]["var"], b4_delta=d["single_fault"]["delta_chebyshev"],
            lipschitz=list(d["lipschitz_chain"]), q_balance=np.asarray(d["q_balance"], float),
            assumptions=list(d["assumptions"]),
        )


def _metric_projection(metric, network, X, y, eps):
    """How the output error enters the metric: a per-input threshold and a projection."""
    out = network.forward(X).astype(np.float64)
    m = out.shape[0]
    if metric in ("linf", "l2"):
        return None, np.full(m, float(eps))
    if metric == "flip":
        return None, flip_margin(out)  # flip needs ||D||_inf >= margin / 2
    if y is None:
        raise ValidationError("The 'loss' metric needs labels or targets y.")
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        shift = out.max(axis=1, keepdims=True)
        prob = np.exp(out - shift)
        prob /= prob.sum(axis=1, keepdims=True)
        grad = prob
        grad[np.arange(m), y] -= 1.0
    else:
        grad = 2.0 * (out - y.reshape(m, -1)) / out.shape[1]
    return grad, np.full(m, float(eps))


def theory_report(target, crash, X, y=None, metric: str = "linf", eps: float = 0.5,
                  alpha: float = 0.1, backend="auto") -> TheoryReport:
    """The paper's delta0 (Prop. 3), first-order moments (Prop. 4) with their Chebyshev
    certificate (Prop. 5), and the same certificate from the exact single-fault terms.

    Moments are computed per input (for the loss: of the loss difference; otherwise of the
    output error vector) and the certificate is averaged over the inputs. For ``flip`` the
    per-input threshold is half the gap between the two largest outputs (a smaller change
    cannot move the argmax). The exact single-fault terms run on ``backend``.
    """
    if not isinstance(crash, NeuronCrash):
        raise param_error("theory_report", "crash", "a NeuronCrash (the paper's theory covers "
                          "neuron crashes)", crash)
    if metric not in METRICS:
        raise param_error("theory_report", "metric", f"one of {', '.join(METRICS)}", metric)
    check_param("theory_report", "eps", eps, Interval(0.0, None, "left", kind="a number"))
    check_param("theory_report", "alpha", alpha, Interval(0.0, 1.0, "neither"))
    network, _ = target_network(target, use_float=False, owner="theory_report")
    X = network.check_input(X)
    rates = crash.layer_rates(network.n_layers)
    per_layer, delta0 = delta0_bound(network, rates, alpha)
    grad, thresholds = _metric_projection(metric, network, X, y, eps)
    active = [l for l in range(network.n_layers + 1) if rates[l] > 0]
    first = crash_derivatives(network, X, crash.semantics, crash.value)
    exact = single_fault_terms(target, X, crash.semantics, crash.value, layers=active,
                               backend=backend)
    if grad is not None:  # project onto the loss: a scalar per input
        first = [np.einsum("mik,mk->mi", t, grad)[:, :, None] for t in first]
        exact_proj = []
        out = network.forward(X).astype(np.float64)
        base = loss(out, np.asarray(y))
        for l, t in enumerate(exact):
            if t.shape[1] == 0:
                exact_proj.append(t[:, :, :1])
                continue
            m, n, k = t.shape
            faulty = (out[:, None, :] + t).reshape(m * n, k)
            lab = np.repeat(np.asarray(y), n, axis=0)
            exact_proj.append((loss(faulty, lab).reshape(m, n) - base[:, None])[:, :, None])
        exact = exact_proj
    first = [t if l in active else np.zeros_like(t[:, :0]) for l, t in enumerate(first)]
    t_mean, t_var = taylor_moments(first, rates)
    e_mean, e_var = taylor_moments(exact, rates)
    if grad is not None:  # signed scalar: t = eps - E (not a norm)
        t_delta = _scalar_chebyshev(t_mean[:, 0], t_var[:, 0], thresholds, delta0)
        e_delta = _scalar_chebyshev(e_mean[:, 0], e_var[:, 0], thresholds, delta0)
        t_mean_s, e_mean_s = float(t_mean.mean()), float(e_mean.mean())
    else:
        t_delta = chebyshev_certificate(t_mean, t_var, thresholds, delta0)
        e_delta = chebyshev_certificate(e_mean, e_var, thresholds, delta0)
        t_mean_s = float(np.linalg.norm(t_mean, axis=1).mean())
        e_mean_s = float(np.linalg.norm(e_mean, axis=1).mean())
    return TheoryReport(
        metric=metric, eps=float(eps), crash_rates=rates, alpha=alpha,
        delta0_per_layer=per_layer, delta0=delta0,
        taylor_mean=t_mean_s, taylor_var=float(t_var.sum(axis=1).mean()),
        taylor_delta=float(min(1.0, t_delta.mean())),
        b4_mean=e_mean_s, b4_var=float(e_var.sum(axis=1).mean()),
        b4_delta=float(min(1.0, e_delta.mean())),
        lipschitz=[lipschitz_chain(network, l) for l in range(network.n_layers + 1)],
        q_balance=q_balance(network), assumptions=assumptions_report(network, rates),
        per_input={"taylor_mean": t_mean, "taylor_var": t_var, "b4_mean": e_mean, "b4_var": e_var,
                   "thresholds": thresholds},
    )


def _scalar_chebyshev(mean, var, eps, delta0):
    t = eps - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        cheb = np.where(t > 0, var / np.where(t > 0, t, 1.0) ** 2, 1.0)
    return np.minimum(1.0, delta0 + cheb)
