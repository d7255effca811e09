"""Backends: what runs the faulty network, behind one protocol (:mod:`neurosim.backends.base`).

========  ==========================================================================
numpy     the reference: full NumPy forward passes with the faults applied literally
numba     the default and fast path: Numba kernels from cached clean activations
lava      optional (``lava-nc``, Python 3.10): Loihi-style Lava processes, slow
========  ==========================================================================

Pass ``backend=`` (a name or a :class:`Backend`) to ``simulate``, ``certify``, the theory and
the experiments; ``auto`` is numba, falling back to numpy with a note. Backend modules are
imported when first asked for, so Lava is only imported for ``backend="lava"``.
"""

import importlib
import warnings

from neurosim.backends.base import BACKENDS, Backend, CleanCache, register_backend, single_fault_outputs
from neurosim.errors import NeurosimWarning, ValidationError

__all__ = ["Backend", "CleanCache", "BACKENDS", "BACKEND_NAMES", "get_backend",
           "register_backend", "single_fault_outputs"]

#: Where each built-in backend lives; imported on first use (Lava only then).
BUILTIN_BACKENDS = {"numba": "neurosim.backends.numba", "numpy": "neurosim.backends.numpy",
                    "lava": "neurosim.backends.lava"}
#: Names ``get_backend`` accepts.
BACKEND_NAMES = ("auto", "numba", "numpy", "lava")
_AUTO_NOTE_GIVEN = []


def _load(name: str) -> type:
    if name not in BACKENDS and name in BUILTIN_BACKENDS:
        importlib.import_module(BUILTIN_BACKENDS[name])
    return BACKENDS[name]


def get_backend(backend="auto", owner: str = "simulate") -> Backend:
    """A :class:`Backend` from a name or an instance.

    ``auto`` picks numba and falls back to numpy when numba cannot be imported, saying so once
    (a :class:`~neurosim.errors.NeurosimWarning`).
    """
    if isinstance(backend, Backend):
        return backend
    if backend == "auto":
        try:
            return _load("numba")()
        except ImportError as exc:
            if not _AUTO_NOTE_GIVEN:
                warnings.warn(f"backend='auto': numba is not available ({exc}); using the NumPy "
                              "reference backend (slow).", NeurosimWarning, stacklevel=3)
                _AUTO_NOTE_GIVEN.append(True)
            return _load("numpy")()
    if isinstance(backend, str) and (backend in BACKENDS or backend in BUILTIN_BACKENDS):
        return _load(backend)()
    names = sorted(set(BACKEND_NAMES) | set(BACKENDS))
    raise ValidationError(
        f"The 'backend' parameter of {owner} must be one of {', '.join(names)} or a "
        f"neurosim.backends.Backend. Got {backend!r} instead."
    )
