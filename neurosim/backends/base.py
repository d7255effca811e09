"""The backend protocol and the backend registry.

A backend does two things for the estimators (Monte Carlo, stratified), the theory and the
experiments, and nothing else:

* :meth:`Backend.clean_cache`: run the inputs once without faults (a :class:`CleanCache`);
* :meth:`Backend.propagate`: the faulty outputs of (fault sample, input) rows for a
  :class:`~neurosim.sampler.FaultBatch`.

``numpy`` (the reference), ``numba`` (the default, fast) and ``lava`` (optional, Python 3.10)
are registered; :func:`neurosim.backends.get_backend` resolves a name (``auto``: numba, else
numpy, said once) or passes a :class:`Backend` instance through. Every backend returns the same result types,
and for one seed the same fault draws (sampling is not the backend's business).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from neurosim.fields import stuck_matrix

from neurosim.sampler import RecordBuilder

__all__ = ["Backend", "CleanCache", "BACKENDS", "register_backend", "single_fault_outputs",
           "apply_transforms", "transient_fields"]

#: Registered backend classes by name (filled as their modules are imported).
BACKENDS: dict[str, type] = {}


@dataclass
class CleanCache:
    """Fault-free results of every input: ``output`` always; per-layer pre-activations ``Z``
    and activations ``Y`` (index 0 the input) when the backend has them (Lava does not), and
    each layer's input after its transforms ``U``."""

    X: np.ndarray
    output: np.ndarray
    Y: "list | None" = None
    Z: "list | None" = None
    #: ``U[l - 1]``: what layer l's matrix multiplies, ``T_l(Y[l - 1])`` (``Y[l - 1]`` itself
    #: when the layer has no pooling or flattening before it).
    U: "list | None" = None
    #: What a backend keeps beside (the numba backend's cone kernels: their layer view and the
    #: clean output of every pooling step).
    extra: dict = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return int(self.X.shape[0])


class Backend:
    """Base class of the backends (see the module docstring)."""

    name: ClassVar[str] = ""
    #: What this backend cannot do, and why: key -> reason (each raises
    #: BackendUnsupportedError from :meth:`check`).
    unsupported: ClassVar[dict] = {}

    #: Whether this backend runs spiking networks (:mod:`neurosim.backends.spiking`).
    spiking: ClassVar[bool] = False

    def check(self, plan) -> None:
        """Raise BackendUnsupportedError (naming the reason) if ``plan`` cannot run here."""
        self.check_spiking(plan)

    def check_spiking(self, plan) -> None:
        if getattr(plan, "spiking", None) is None:
            return
        from neurosim.errors import BackendUnsupportedError

        if not self.spiking:
            raise BackendUnsupportedError(
                f"The {self.name} backend does not run spiking networks; use backend='numba' "
                "or 'numpy'.")
        if plan.analog is not None:
            raise BackendUnsupportedError(
                "Analog crossbar non-idealities are not simulated for spiking networks yet.")

    def clean_cache(self, plan, X) -> CleanCache:  # pragma: no cover - overridden
        raise NotImplementedError

    def propagate(self, plan, cache, batch, row_draw, row_input) -> np.ndarray:  # pragma: no cover
        """Faulty outputs ``(n_rows, n_L)`` of rows ``(row_draw[r], row_input[r])``."""
        raise NotImplementedError

    def session(self):
        """Context manager around a run (the numba backend limits BLAS threads)."""
        return contextlib.nullcontext()

    def chip_plan(self, plan, key: int):
        """The plan of the chip whose permanent fields draw with ``key``: those fields written
        into its weights (:func:`neurosim.fields.stuck_matrix`; a backend may compute the same
        cells faster), its transient fields left as fields."""
        weights = {}
        for f in plan.fields_in("permanent"):
            W = weights.get(f.layer, plan.W[f.layer - 1])
            weights[f.layer] = self.stuck_matrix(W, f, int(key))
        return plan.with_weights(weights, plan.fields_in("transient"))

    def stuck_matrix(self, W, field, key: int) -> np.ndarray:
        return stuck_matrix(W, field, key)

    def chip_outputs(self, plan, keys, X) -> np.ndarray:
        """Outputs ``(n_chips, n_inputs, n_L)`` of chips whose only faults are the plan's
        permanent fields, one chip per key: each chip's weights, then every input."""
        return np.stack([self.clean_cache(self.chip_plan(plan, key), X).output for key in keys])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def transient_fields(plan, batch) -> list:
    """The plan's transient fields, whose keys the batch carries (permanent fields are in a
    chip's weights already, :meth:`Backend.chip_plan`)."""
    fields = plan.fields_in("transient")
    if fields and batch.keys is None:
        raise ValueError("the plan has transient fields but the batch carries no draw keys")
    return fields


def apply_transforms(plan, l: int, Y: np.ndarray) -> np.ndarray:
    """``T_l(Y)``: activations ``Y`` of layer ``l - 1`` through the pooling and flattening
    steps before layer ``l`` (``Y`` itself when there are none)."""
    for t in plan.pre[l - 1]:
        Y = t.apply(Y)
    return Y


def register_backend(cls: type) -> type:
    """Class decorator: make a :class:`Backend` subclass known under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Backend)) or not cls.name:
        raise TypeError(f"register_backend needs a Backend subclass with a name; got {cls!r}")
    BACKENDS[cls.name] = cls
    return cls


def single_fault_outputs(backend: Backend, plan, cache: CleanCache, layer: int, mode: int,
                         value: float = 0.0, max_rows: int = 1 << 16) -> np.ndarray:
    """Outputs with exactly one neuron of ``layer`` crashed, for every input and neuron.

    Returns an array (n_inputs, n_layer, n_L): one batched pass of the backend (split into
    chunks of ``max_rows`` rows to bound memory). ``mode`` is the crash's kernel code.
    """
    m = cache.n_inputs
    n = plan.widths[layer]
    out = np.empty((m, n, plan.widths[-1]), dtype=plan.dtype)
    flat = out.reshape(m * n, -1)
    neurons = np.arange(n, dtype=np.int64)
    rec = RecordBuilder()
    rec.add_crash(layer, neurons, neurons, mode, value)
    batch = rec.build(n, plan.n_layers)
    inputs_per_chunk = max(1, max_rows // n)
    for start in range(0, m, inputs_per_chunk):
        stop = min(m, start + inputs_per_chunk)
        row_draw = np.tile(neurons, stop - start)
        row_input = np.repeat(np.arange(start, stop, dtype=np.int64), n)
        flat[start * n:stop * n] = backend.propagate(plan, cache, batch, row_draw, row_input)
    return out
