"""Saving and loading experiment results (HDF5, ``format_version`` 1).

Root attributes ``neurosim_format = "experiment"``, ``format_version = 1`` and ``experiment``
(the result's kind); ndarray fields become datasets, everything else JSON in ``meta``.
Written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from neurosim.errors import FileFormatError, NeurosimFileNotFoundError
from neurosim.io.atomic import atomic_path
from neurosim.io.encoding import json_default
from neurosim.io.hdf5 import check_header

__all__ = ["SavedResult", "EXPERIMENT_FORMAT_VERSION"]

EXPERIMENT_FORMAT_VERSION = 1


class SavedResult:
    """Save / load for the result dataclasses: ndarray fields become datasets, the rest JSON."""

    _KIND = ""

    def save(self, path: "str | os.PathLike") -> None:
        """Write the result to an HDF5 file (atomically: a reader never sees half a file)."""
        import h5py

        arrays, meta = {}, {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                meta[f.name] = value
        with atomic_path(path, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.attrs["neurosim_format"] = "experiment"
                h5.attrs["format_version"] = EXPERIMENT_FORMAT_VERSION
                h5.attrs["experiment"] = self._KIND
                h5.attrs["meta"] = json.dumps(meta, sort_keys=True, default=json_default)
                for name, value in arrays.items():
                    h5.create_dataset(name, data=value)

    @classmethod
    def load(cls, path):
        """Read a result of this class written by :meth:`save`."""
        import h5py

        source = os.fspath(path)
        if not os.path.exists(source):
            raise NeurosimFileNotFoundError(f"Experiment file {source!r} does not exist.")
        try:
            with h5py.File(source, "r") as h5:
                check_header(h5, source, "experiment", (EXPERIMENT_FORMAT_VERSION,))
                kind = h5.attrs.get("experiment")
                if kind != cls._KIND:
                    raise FileFormatError(
                        f"{source}: holds the {kind!r} experiment, not {cls._KIND!r}.")
                kwargs = json.loads(h5.attrs["meta"])
                for name in h5:
                    kwargs[name] = np.asarray(h5[name])
        except OSError as exc:
            raise FileFormatError(f"{source}: not a readable HDF5 file ({exc}).") from None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names})
