"""neurosim's run files: the checkpoints and results of :func:`neurosim.simulate`.

Layout (``format_version`` 3)::

    /                     attrs: neurosim_format = "simulation", format_version = 3,
                                 config = JSON (what the run was asked to do; resume checks it),
                                 complete = bool, result = JSON (complete runs only)
    /state                attrs: stats = JSON (the merged statistics of the committed blocks,
                                 which name their blocks)
    /chip_failure_rates   (n_samples,) per-chip failure rates (permanent mode, complete only)
                          attrs (root): neurosim_sha256, the digest of all of the above

Every file carries checksums (:mod:`neurosim.io.digest`): the SHA-256 of its bytes in its
512-byte HDF5 user block (checked before HDF5 opens it), a SHA-256 of its content on the root
and Fletcher-32 on its dataset; a file whose content does not match is refused, so a damaged
checkpoint is never resumed. Version 2 files (neurosim 0.2) have no checksum and still read.

Version 1 files (neurosim 0.1) stored the running totals as datasets of ``/state`` and the
number of finished blocks as ``next_block``; they still load, and resume. Reading follows the
reader contract (:mod:`neurosim.io.guard`): any damage is one FileFormatError naming the file. Writes are atomic
(a temporary file, then a rename): a reader sees the previous file or the new one.
"""

from __future__ import annotations

import json
import os

import numpy as np

from neurosim.errors import FileFormatError, NeurosimFileNotFoundError
from neurosim.io import digest
from neurosim.io.atomic import atomic_path
from neurosim.io.encoding import json_default
from neurosim.io.guard import json_text, read_dataset, reading
from neurosim.io.hdf5 import check_header

__all__ = ["RUN_FORMAT_VERSION", "SUPPORTED_RUN_VERSIONS", "RunFile", "write_run_file",
           "read_run_file"]

RUN_FORMAT_VERSION = 3
SUPPORTED_RUN_VERSIONS = (1, 2, 3)
#: The first version whose files carry a checksum.
CHECKSUM_VERSION = 3
KIND = "simulation"


class RunFile:
    """What a run file holds: ``config``, ``state`` (a dict), ``complete``, ``result``
    (a dict or None), ``chip_failure_rates`` (or None), ``version``."""

    def __init__(self, config, state, complete, result, chip_failure_rates, version):
        self.config = config
        self.state = state
        self.complete = complete
        self.result = result
        self.chip_failure_rates = chip_failure_rates
        self.version = version


def write_run_file(path, config: dict, state: dict, result: "dict | None" = None,
                   chip_failure_rates: "np.ndarray | None" = None) -> None:
    """Write a checkpoint (``result`` None) or a complete run, atomically."""
    import h5py

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", userblock_size=digest.USERBLOCK) as f:
            f.attrs["neurosim_format"] = KIND
            f.attrs["format_version"] = RUN_FORMAT_VERSION
            f.attrs["config"] = json.dumps(config, sort_keys=True, default=json_default)
            f.attrs["complete"] = result is not None
            g = f.create_group("state")
            g.attrs["stats"] = json.dumps(state, sort_keys=True, default=json_default)
            if result is not None:
                f.attrs["result"] = json.dumps(result, sort_keys=True, default=json_default)
                if chip_failure_rates is not None:
                    digest.create_dataset(f, "chip_failure_rates",
                                          np.asarray(chip_failure_rates, dtype=np.float64))
            digest.sign(f)
        digest.seal(tmp)


def read_run_file(path) -> RunFile:
    """Read a run file (version 1 or 2).

    Raises
    ------
    NeurosimFileNotFoundError
        If the file does not exist.
    FileFormatError
        If it is not a readable neurosim run file.
    """
    import h5py

    source = os.fspath(path)
    if not os.path.exists(source):
        raise NeurosimFileNotFoundError(f"Result file {source!r} does not exist; nothing to resume.")
    from neurosim.io.hdf5 import check_hdf5_file

    with reading(source, "neurosim run file"):
        sealed = digest.check_seal(source, source)  # before HDF5 parses a byte of it
        if not sealed:  # an older run file: damage HDF5 would loop or crash on
            check_hdf5_file(source, source)
        return _read_run_file(source, sealed)


def _read_run_file(source: str, sealed: bool) -> RunFile:
    import h5py

    with h5py.File(source, "r") as f:
        check_header(f, source, KIND, SUPPORTED_RUN_VERSIONS)
        version = int(f.attrs["format_version"])
        if version >= CHECKSUM_VERSION and not sealed:
            raise FileFormatError(f"{source}: a run file of format_version {version} carries a "
                                  "seal (the checksum of its bytes), and this one has none: it is "
                                  "damaged or was not written by neurosim.")
        digest.verify(f, source, required=version >= CHECKSUM_VERSION)
        config = json_text(f.attrs.get("config"), source, "attribute 'config'", dict)
        if "state" not in f:
            raise ValueError("no 'state' group")
        if version == 1:
            state = {name: read_dataset(f["state"][name], source, f"state/{name}")
                     for name in f["state"]}
            state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
        else:
            state = json_text(f["state"].attrs.get("stats"), source,
                              "attribute 'state/stats'", dict)
        result = (json_text(f.attrs["result"], source, "attribute 'result'", dict)
                  if "result" in f.attrs else None)
        chips = (read_dataset(f["chip_failure_rates"], source, "dataset 'chip_failure_rates'",
                              "f") if "chip_failure_rates" in f else None)
        complete = f.attrs.get("complete")
        if not isinstance(complete, (bool, np.bool_)):
            raise ValueError(f"attribute 'complete' is {complete!r}, not True or False")
        if bool(complete) != (result is not None):
            raise ValueError("attribute 'complete' disagrees with the presence of a result")
        return RunFile(config, state, bool(complete), result, chips, version)
