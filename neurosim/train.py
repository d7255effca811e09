"""Fault-tolerant training (extra ``torch``): the paper's regularizer (eq. 1) and crash injection.

The training loss is

    L_hat(W) = L(W) + lambda * sum_i (dL/dw_i)^2 w_i^2          (sensitivity, double backprop)
                    + mu * sum_l (W_max^l / W_min^l)^2            (balance, Assumption 3)
                    + nu * sum_l ||W_l||_F^2                      (weight decay)

where ``w_i`` runs over every weight (not the biases), ``W^l_i = sum_j |W_l^{ij}|`` is the
incoming L1 mass of neuron i of layer l and ``W_max^l``, ``W_min^l`` its largest and smallest
value over the layer's neurons. The first term is the first-order change of the loss when weight
i is lost, squared (the paper's Prop. 4 variance with crash variables on weights); the second
pushes the masses towards q-balance (Prop. 3 needs q > 0). With ``crash_p > 0`` every hidden
neuron's output is zeroed with that probability at each training step, without rescaling: the
silent-crash semantics of the simulator, used as dropout. ``lambda = mu = nu = 0`` and
``crash_p = 0`` is plain training.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from neurosim.errors import (MissingExtraError, NeurosimFileNotFoundError, ValidationError,
                             param_error)
from neurosim.network import Network

__all__ = ["TrainConfig", "train", "regularizer_terms", "load_training_data", "TRAIN_DATASETS"]

TRAIN_DATASETS = ("digits", "diabetes")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised without the extra
        raise MissingExtraError(
            "Training needs PyTorch: pip install 'neurosim-faults[torch]' (torch==2.13.0 gives "
            "the CPU build)."
        ) from None
    return torch


@dataclass
class TrainConfig:
    """Settings of :func:`train` (saved in the model's metadata)."""

    hidden: tuple = (256, 256)
    activation: str = "relu"
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    lam: float = 0.0
    mu: float = 0.0
    nu: float = 0.0
    crash_p: float = 0.0
    task: str = "auto"  # "classification" | "regression" | "auto" (integer labels: classification)

    def validate(self) -> None:
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise param_error("train", "hidden", "one or more positive widths", self.hidden)
        for name in ("lam", "mu", "nu"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise param_error("train", name, "a finite number >= 0", value)
        if not 0.0 <= self.crash_p < 1.0:
            raise param_error("train", "crash_p", "a float in [0, 1)", self.crash_p)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise param_error("train", name, "a positive integer", value)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise param_error("train", "lr", "a positive number", self.lr)
        if self.task not in ("auto", "classification", "regression"):
            raise param_error("train", "task", "auto, classification or regression", self.task)


def _activation_module(name):
    torch = _torch()
    from neurosim.network import make_activation

    act = make_activation(name)
    return {
        "relu": lambda: torch.nn.ReLU(),
        "leaky_relu": lambda: torch.nn.LeakyReLU(act.alpha),
        "tanh": lambda: torch.nn.Tanh(),
        "sigmoid": lambda: torch.nn.Sigmoid(),
        "softplus": lambda: torch.nn.Softplus(),
        "identity": lambda: torch.nn.Identity(),
        "elu": lambda: torch.nn.ELU(act.alpha),
        "hardtanh": lambda: torch.nn.Hardtanh(act.alpha, act.beta),
        "gelu": lambda: torch.nn.GELU(),
        "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"),
        "silu": lambda: torch.nn.SiLU(),
        "hardswish": lambda: torch.nn.Hardswish(),
        "hardsigmoid": lambda: torch.nn.Hardsigmoid(),
    }[act.name]()


def build_model(n_inputs: int, n_outputs: int, config: TrainConfig):
    """An ``nn.Sequential`` of Linear layers with the activation between them."""
    torch = _torch()
    layers, width = [], n_inputs
    for h in config.hidden:
        layers += [torch.nn.Linear(width, int(h)), _activation_module(config.activation)]
        width = int(h)
    layers.append(torch.nn.Linear(width, n_outputs))
    return torch.nn.Sequential(*layers)


def _linear_layers(model):
    torch = _torch()
    return [m for m in model if isinstance(m, torch.nn.Linear)]


def _forward(model, X, crash_p: float, generator=None):
    """Forward pass; hidden outputs silently crashed with probability crash_p (training only)."""
    torch = _torch()
    out = X
    modules = list(model)
    for index, module in enumerate(modules):
        out = module(out)
        is_hidden_activation = not isinstance(module, torch.nn.Linear) and index < len(modules) - 1
        if crash_p > 0 and is_hidden_activation:
            keep = torch.rand(out.shape, generator=generator, dtype=out.dtype) >= crash_p
            out = out * keep
    return out


def _data_loss(output, target, task):
    torch = _torch()
    if task == "classification":
        return torch.nn.functional.cross_entropy(output, target)
    return torch.nn.functional.mse_loss(output, target.reshape(output.shape))


def regularizer_terms(model, X, y, task: str = "classification", lam: float = 1.0,
                      mu: float = 1.0, nu: float = 1.0, data_loss=None) -> dict:
    """The terms of eq. (1) as differentiable tensors: ``loss, sensitivity, balance, decay``.

    ``sensitivity = lam * sum_i (dL/dw_i)^2 w_i^2`` (double backpropagation: the gradient is
    built with ``create_graph=True`` so that the term itself can be differentiated),
    ``balance = mu * sum_l (max_i W^l_i / min_i W^l_i)^2`` with ``W^l_i`` the incoming L1 mass of
    neuron i of layer l, ``decay = nu * sum_l ||W_l||_F^2``. Terms with a zero coefficient are 0.
    """
    torch = _torch()
    weights = [layer.weight for layer in _linear_layers(model)]
    loss = data_loss if data_loss is not None else _data_loss(model(X), y, task)
    zero = torch.zeros((), dtype=weights[0].dtype)
    sensitivity = balance = decay = zero
    if lam:
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        sensitivity = lam * sum(((g * w) ** 2).sum() for g, w in zip(grads, weights))
    if mu:
        terms = []
        for w in weights:
            mass = w.abs().sum(dim=1)
            terms.append((mass.max() / mass.min().clamp_min(1e-12)) ** 2)
        balance = mu * sum(terms)
    if nu:
        decay = nu * sum((w ** 2).sum() for w in weights)
    return {"loss": loss, "sensitivity": sensitivity, "balance": balance, "decay": decay}


def train(X, y, config: "TrainConfig | None" = None, *, X_val=None, y_val=None,
          progress: bool = False, metadata: "dict | None" = None, **overrides) -> Network:
    """Train a Dense network with the paper's regularizer and return it as a neurosim Network.

    Parameters
    ----------
    X, y : arrays
        Training inputs and integer labels (classification) or float targets (regression).
    config : TrainConfig, optional
        Settings; keyword arguments override its fields (``hidden=(64, 64), lam=1e-3``, ...).
    X_val, y_val : arrays, optional
        Held-out data for the accuracy / loss recorded in the metadata.
    progress : bool
        A progress bar per epoch (stderr).

    Returns
    -------
    Network
        float32, with the settings, final losses and accuracies in ``metadata["training"]``.
    """
    torch = _torch()
    # Work on a copy: the caller's TrainConfig is not modified by the overrides.
    config = dataclasses.replace(config) if config is not None else TrainConfig()
    for key, value in overrides.items():
        if key not in TrainConfig.__dataclass_fields__:
            raise ValidationError(
                f"train got an unknown setting {key!r}; the settings are "
                f"{', '.join(TrainConfig.__dataclass_fields__)}.")
        setattr(config, key, value)
    try:
        config.hidden = tuple(int(h) for h in config.hidden)
    except (TypeError, ValueError):
        raise param_error("train", "hidden", "a sequence of positive integer widths",
                          config.hidden) from None
    config.validate()
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape[0] != X.shape[0]:
        raise ValidationError(
            f"train needs X of shape (n_samples, n_features) and one target per sample. Got X "
            f"{X.shape} and y {y.shape} instead.")
    if not np.isfinite(X).all():
        raise ValidationError("The training inputs X must be finite.")
    task = config.task
    if task == "auto":
        task = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    if task == "classification":
        n_outputs = int(y.max()) + 1
        target = torch.as_tensor(y.astype(np.int64))
    else:
        yr = y.astype(np.float32).reshape(y.shape[0], -1)
        n_outputs = yr.shape[1]
        target = torch.as_tensor(yr)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(X.shape[1], n_outputs, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    Xt = torch.as_tensor(X)
    n = X.shape[0]
    history = []
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", desc="train", leave=False)
    try:
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            totals = {"loss": 0.0, "sensitivity": 0.0, "balance": 0.0, "decay": 0.0}
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                xb, yb = Xt[idx], target[idx]
                out = _forward(model, xb, config.crash_p, generator)
                loss = _data_loss(out, yb, task)
                terms = regularizer_terms(model, xb, yb, task, config.lam, config.mu, config.nu,
                                          data_loss=loss)
                total = terms["loss"] + terms["sensitivity"] + terms["balance"] + terms["decay"]
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
                for key in totals:
                    totals[key] += float(terms[key].detach()) * len(idx) / n
            history.append(totals)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {totals['loss']:.4f}")
    finally:
        if bar is not None:
            bar.close()
    weights = [layer.weight.detach().numpy().astype(np.float32) for layer in _linear_layers(model)]
    biases = [layer.bias.detach().numpy().astype(np.float32) for layer in _linear_layers(model)]
    acts = [config.activation] * len(config.hidden) + ["identity"]
    network = Network.from_arrays(weights, biases, acts, dtype=np.float32)
    info = {
        "trained_by": "neurosim.train",
        "task": task,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
        "regularizer": "eq. (1): lambda * sum (dL/dw)^2 w^2 + mu * sum_l (W_max/W_min)^2 + nu * ||W||^2",
        "final": history[-1],
        "seconds": time.perf_counter() - started,
        "torch_version": torch.__version__,
        "n_train": int(n),
    }
    out = network.forward(X)
    if task == "classification":
        info["train_accuracy"] = float(np.mean(out.argmax(1) == y))
    else:
        info["train_mse"] = float(np.mean((out - y.reshape(out.shape)) ** 2))
    if X_val is not None and y_val is not None:
        out = network.forward(np.asarray(X_val, dtype=np.float32))
        y_val = np.asarray(y_val)
        if task == "classification":
            info["val_accuracy"] = float(np.mean(out.argmax(1) == y_val))
        else:
            info["val_mse"] = float(np.mean((out - y_val.reshape(out.shape)) ** 2))
    network.metadata = {**(metadata or {}), "training": info}
    return network


@dataclass
class TrainingData:
    """A train / test split."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    task: str
    notes: dict = field(default_factory=dict)


def load_training_data(spec: str, test_size: float = 0.2, seed: int = 0) -> TrainingData:
    """Training data: ``digits`` or ``diabetes`` (shipped with scikit-learn, nothing is
    downloaded), ``mnist:FOLDER`` (the standard IDX files a user already has), or a ``.npz`` /
    ``.h5`` file with ``X`` and ``y`` (split here with ``test_size``).

    Features: digits are divided by 16; diabetes features and target are standardized with the
    training split's mean and deviation; MNIST images are flattened and divided by 255.
    """
    from neurosim.datasets import load_data, load_mnist

    if spec in TRAIN_DATASETS:
        try:
            from sklearn import datasets as skd
            from sklearn.model_selection import train_test_split
        except ImportError:
            raise MissingExtraError(
                f"The {spec!r} data set comes with scikit-learn: pip install scikit-learn."
            ) from None
        if spec == "digits":
            data = skd.load_digits()
            X = (data.data / 16.0).astype(np.float32)
            y = data.target.astype(np.int64)
            Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed,
                                                  stratify=y)
            return TrainingData(Xtr, ytr, Xte, yte, "digits", "classification")
        data = skd.load_diabetes()
        X, y = data.data.astype(np.float64), data.target.astype(np.float64)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed)
        mx, sx = Xtr.mean(0), Xtr.std(0)
        my, sy = ytr.mean(), ytr.std()
        return TrainingData(((Xtr - mx) / sx).astype(np.float32), ((ytr - my) / sy),
                            ((Xte - mx) / sx).astype(np.float32), ((yte - my) / sy),
                            "diabetes", "regression",
                            {"target_mean": float(my), "target_std": float(sy)})
    if spec.startswith("mnist:"):
        Xtr, ytr, Xte, yte = load_mnist(spec[len("mnist:"):])
        return TrainingData(Xtr, ytr, Xte, yte, "mnist", "classification")
    if not os.path.exists(os.fspath(spec)):
        raise NeurosimFileNotFoundError(
            f"Training data {spec!r} is neither a file nor one of {', '.join(TRAIN_DATASETS)}, "
            f"mnist:FOLDER.")
    X, y = load_data(spec)
    if y is None:
        raise ValidationError(f"Training data {spec!r} has no 'y' (labels or targets).")
    rng = np.random.default_rng(seed)
    order = rng.permutation(X.shape[0])
    n_test = int(round(test_size * X.shape[0]))
    test, tr = order[:n_test], order[n_test:]
    task = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    return TrainingData(X[tr], y[tr], X[test], y[test], str(spec), task)
