"""Mapping a model on several chip profiles, and what each core's failure costs."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from neurosim.backends import get_backend
from neurosim.datasets import load_digits_model, load_digits_test
from neurosim.errors import MappingError
from neurosim.experiments.files import SavedResult
from neurosim.faults import FaultModel, failed_core_records
from neurosim.hardware import load_profile
from neurosim.mapping import map_network
from neurosim.plan import build_plan
from neurosim.sampler import RecordBuilder

__all__ = ["ChipMappingResult", "chip_mapping", "load_chip_mapping", "small_core_profile",
           "core_failure_outputs", "DEFAULT_PROFILES"]

DEFAULT_PROFILES = ("loihi2", "loihi1", "truenorth", "spinnaker2", "rram_crossbar")


@dataclass
class ChipMappingResult(SavedResult):
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
    profile = load_profile(base)
    return dataclasses.replace(
        profile, name=f"{profile.name}-{int(neurons_per_core)}n",
        description=f"{profile.description} (what-if: {int(neurons_per_core)} neurons per core)",
        neurons_per_core=int(neurons_per_core), path="")


def core_failure_outputs(mapping, X, backend="auto") -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the quantized network on ``X`` with each used core failed alone.

    Core-based profiles: the core's neurons crash silently; crossbar profiles: the tile
    contributes nothing (the records of :class:`neurosim.CoreFailure`).

    Returns
    -------
    faulty : ndarray (n_cores, n_inputs, n_L)
    clean : ndarray (n_inputs, n_L)
    """
    plan = build_plan(mapping, FaultModel([]), owner="core_failure_outputs")
    backend = get_backend(backend, "core_failure_outputs")
    X = plan.network.check_input(X)
    cache = backend.clean_cache(plan, X)
    m = X.shape[0]
    rec = RecordBuilder()
    for core in mapping.cores:  # draw = core id
        failed_core_records(mapping, core, [core.core_id], rec)
    n_cores = mapping.cores_used
    batch = rec.build(n_cores, plan.n_layers)
    row_draw = np.repeat(np.arange(n_cores, dtype=np.int64), m)
    row_input = np.tile(np.arange(m, dtype=np.int64), n_cores)
    with backend.session():
        out = backend.propagate(plan, cache, batch, row_draw, row_input)
    return out.reshape(n_cores, m, -1), cache.output


def chip_mapping(profiles=DEFAULT_PROFILES, model=None, impact_profile=None, X=None, y=None,
                 small: bool = False, backend="auto") -> ChipMappingResult:
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
    started = time.perf_counter()
    model = model if model is not None else load_digits_model()
    if X is None:
        X, y = load_digits_test()
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
    faulty, clean = core_failure_outputs(mapping, X, backend)
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
    return ChipMappingResult.load(path)
