"""Placing a network onto a chip profile: cores, crossbar tiles and integer weights.

Core-based chips (``architecture = "cores"``): a core holds neurons of one layer only, and each
layer is split into the fewest cores such that every core respects

* the neurons-per-core limit: ``neurons <= neurons_per_core``;
* the fan-in limit: ``n_{l-1} <= max_fan_in`` (axons in; a neuron's inputs cannot be split);
* the synapse memory: ``neurons x n_{l-1} <= synapses_per_core``.

Neurons are spread evenly over a layer's cores (sizes differ by at most one).

Crossbar chips (``architecture = "crossbar"``) tile each weight matrix ``W_l`` (``n_l x
n_{l-1}``) into blocks of ``crossbar_rows`` inputs x ``crossbar_cols`` outputs, one tile per
crossbar.

Cores are numbered in layer order; a chip holds ``cores_per_chip - spare_cores_per_chip``
of them, and a network that needs more cores needs more chips.

Each layer's stored weights are quantized to the profile's integer words
(:mod:`neurosim.quantization`). Layers reach the mapping through the layer protocol
(``fan_in``, ``input_span``, ``block_synapses``), so every registered layer type maps.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from neurosim.errors import (FileFormatError, MappingError, NeurosimFileNotFoundError,
                             ValidationError)
from neurosim.hardware import HardwareProfile, load_profile, profile_from_dict
from neurosim.layers.conv import split_evenly
from neurosim.network import Network
from neurosim.quantization import LayerQuantization, quantize_layer
from neurosim.spiking.snn import SpikingNetwork

__all__ = ["Core", "LayerQuantization", "Mapping", "map_network", "quantize_layer", "load_mapping",
           "target_network", "network_label"]

#: Version 3 adds checksums (Fletcher-32 on every dataset, a SHA-256 of the whole content:
#: neurosim.io.digest); version 2 added conv layers' core blocks and neuron / axon counts.
#: Version 1 and 2 files still read.
MAPPING_FORMAT_VERSION = 3
#: The version of a mapping of a spiking network: version 3 with the spiking execution in the
#: root attribute ``spiking`` (a reader that knows only version 3 refuses it instead of
#: reading it as a graded network).
SPIKING_MAPPING_VERSION = 4
#: The first mapping format version whose files carry the content digest.
DIGEST_VERSION = 3
SUPPORTED_MAPPING_VERSIONS = (1, 2, 3, 4)
_CORE_COLUMNS = ("core_id", "chip", "layer", "out_start", "out_stop", "in_start", "in_stop")
_SIGN_MODES = ("mixed", "excitatory", "inhibitory")


@dataclass(frozen=True)
class Core:
    """One used core (or crossbar tile) and what it holds.

    ``layer`` counts from 1 (the first weight layer, paper notation). The core holds output
    neurons ``out_start:out_stop`` of that layer and reads inputs ``in_start:in_stop``.
    """

    core_id: int
    chip: int
    layer: int
    out_start: int
    out_stop: int
    in_start: int
    in_stop: int
    utilization: float
    n_synapses: int = -1  # -1: every (neuron, axon) pair is a synapse (a dense block)
    neurons: int = -1  # -1: out_stop - out_start
    axons: int = -1  # -1: in_stop - in_start
    #: A conv layer's channel x row x column block ``(c0, c1, y0, y1, x0, x1)`` on a core
    #: (then ``out_start:out_stop`` is the span of its flat neuron indices); empty otherwise.
    #: On crossbars a conv tile's ``out`` range is output channels and its ``in`` range rows
    #: ``ci kh kw + ky kw + kx`` of the unfolded kernel.
    block: tuple = ()

    @property
    def n_neurons(self) -> int:
        return self.neurons if self.neurons >= 0 else self.out_stop - self.out_start

    @property
    def axons_in(self) -> int:
        return self.axons if self.axons >= 0 else self.in_stop - self.in_start

    @property
    def synapses(self) -> int:
        return self.n_synapses if self.n_synapses >= 0 else self.n_neurons * self.axons_in

    def as_dict(self) -> dict:
        return {
            "core_id": self.core_id,
            "chip": self.chip,
            "layer": self.layer,
            "neurons": self.n_neurons,
            "axons_in": self.axons_in,
            "synapses": self.synapses,
            "utilization": round(self.utilization, 6),
            "out_range": [self.out_start, self.out_stop],
            "in_range": [self.in_start, self.in_stop],
            **({"block": {"channels": list(self.block[0:2]), "rows": list(self.block[2:4]),
                          "cols": list(self.block[4:6])}} if self.block else {}),
        }


class Mapping:
    """A network placed on a chip profile: cores, integer weights and scales.

    Build it with :func:`map_network`. Layers are numbered from 1 (paper notation).

    Attributes
    ----------
    network : Network
        The float network that was mapped.
    profile : HardwareProfile
    cores : list of Core
        Every used core (or tile), numbered in layer order.
    quantization : list of LayerQuantization
        One entry per layer 1..L.
    neuron_core : list of ndarray or None
        For core-based profiles, ``neuron_core[l-1][i]`` is the core id holding neuron ``i`` of
        layer ``l``; None for crossbar profiles (a neuron spans several tiles).
    spiking : SpikingNetwork or None
        The spiking execution of a mapped :class:`~neurosim.spiking.snn.SpikingNetwork` (its
        ``network`` is ``network``); the chip then runs it on the quantized weights
        (:meth:`chip_spiking`).
    """

    def __init__(self, network: Network, profile: HardwareProfile, cores: list[Core],
                 quantization: list[LayerQuantization], spiking=None) -> None:
        self.network = network
        self.spiking = spiking
        self.profile = profile
        self.cores = cores
        self.quantization = quantization
        self._quantized = None
        if profile.architecture == "cores":
            self.neuron_core = []
            for l in range(1, network.n_layers + 1):
                owner = np.full(network.widths[l], -1, dtype=np.int64)
                for core in cores:
                    if core.layer == l:
                        owner[self.core_neurons(core)] = core.core_id
                self.neuron_core.append(owner)
        else:
            self.neuron_core = None

    # --- where things are -----------------------------------------------------------------
    def core_neurons(self, core: Core) -> np.ndarray:
        """Flat indices of the neurons a core holds (core-based profiles)."""
        if core.block:
            from neurosim.layers.conv import block_neurons

            return block_neurons(self.network.layers[core.layer - 1], core.block)
        return np.arange(core.out_start, core.out_stop, dtype=np.int64)

    @property
    def shares_weights(self) -> bool:
        """True if a core keeps one copy of a conv kernel for all the positions it computes
        (the profile's ``conv_weight_sharing``; crossbars always reuse a tile's kernel)."""
        return self.profile.architecture == "crossbar" or bool(self.profile.conv_weight_sharing)

    def kernel_cores(self, layer: int, k) -> np.ndarray:
        """Crossbar tile holding each conv kernel weight ``k`` (flat index) of ``layer``."""
        from neurosim.layers.conv import unfolded_coords

        col, row = unfolded_coords(self.network.layers[layer - 1], k)
        owner = np.full(col.shape, -1, dtype=np.int64)
        for c in self.layer_cores(layer):
            inside = ((col >= c.out_start) & (col < c.out_stop)
                      & (row >= c.in_start) & (row < c.in_stop))
            owner[inside] = c.core_id
        return owner

    def neuron_cores(self, layer: int, neurons) -> "np.ndarray | None":
        """Core id of each of ``neurons`` of ``layer`` (1-based); None on crossbar profiles,
        where a neuron spans several tiles."""
        if self.neuron_core is None:
            return None
        return self.neuron_core[layer - 1][np.asarray(neurons, dtype=np.int64)]

    def weight_cores(self, layer: int, rows, cols) -> np.ndarray:
        """Core (tile) id holding each matrix entry ``(rows[k], cols[k])`` of ``layer``.

        On core-based profiles the core of the neuron; a conv layer's entries on a crossbar
        belong to the tile of their kernel weight (:meth:`kernel_cores`)."""
        rows, cols = np.asarray(rows), np.asarray(cols)
        net_layer = self.network.layers[layer - 1]
        if self.neuron_core is not None and net_layer.kind != "dense":
            return self.neuron_core[layer - 1][rows.astype(np.int64)]
        if net_layer.kind == "conv2d":  # crossbar: the tile of the entry's kernel weight
            k = net_layer.entry_kernel_index(rows, cols)
            owner = np.full(k.shape, -1, dtype=np.int64)
            owner[k >= 0] = self.kernel_cores(layer, k[k >= 0])
            return owner
        owner = np.full(rows.shape, -1, dtype=np.int64)
        for c in self.layer_cores(layer):
            inside = ((rows >= c.out_start) & (rows < c.out_stop)
                      & (cols >= c.in_start) & (cols < c.in_stop))
            owner[inside] = c.core_id
        return owner

    # --- summary numbers ------------------------------------------------------------------
    @property
    def cores_used(self) -> int:
        return len(self.cores)

    @property
    def chips_needed(self) -> int:
        return max(1, math.ceil(self.cores_used / self.profile.usable_cores_per_chip))

    @property
    def fits(self) -> bool:
        """True if the network fits on one chip."""
        return self.chips_needed == 1

    def layer_cores(self, layer: int) -> list[Core]:
        """The cores holding layer ``layer`` (1-based)."""
        return [c for c in self.cores if c.layer == layer]

    @property
    def integer_weights(self) -> list[np.ndarray]:
        return [q.Q for q in self.quantization]

    @property
    def scales(self) -> list[float]:
        return [q.scale for q in self.quantization]

    def quantized_network(self) -> Network:
        """The network the chip computes: weights ``scale_l * Q_l``, biases unchanged."""
        if self._quantized is None:
            weights = [q.scale * q.Q.astype(np.float64) for q in self.quantization]
            meta = dict(self.network.metadata)
            meta["quantized_for"] = self.profile.name
            self._quantized = self.network.with_weights(weights, metadata=meta)
        return self._quantized

    def chip_network(self, use_float: bool = False) -> Network:
        """What a simulation of this mapping computes: the quantized network, or the float one
        with ``use_float``."""
        return self.network if use_float else self.quantized_network()

    def chip_spiking(self, use_float: bool = False) -> "SpikingNetwork | None":
        """The spiking execution on :meth:`chip_network` (None for a graded mapping)."""
        if self.spiking is None:
            return None
        return self.spiking.with_network(self.chip_network(use_float))

    def quantization_report(self, X, y=None) -> dict:
        """How much quantization alone changes the output on data ``X`` (and labels ``y``).

        Returns a dict with ``max_abs_error``, ``mean_abs_error``, ``relative_error`` (mean
        L2 norm of the output difference over mean L2 norm of the float output) and, given
        ``y``, ``float_accuracy``, ``quantized_accuracy`` and ``accuracy_change``; also
        ``argmax_agreement``, the fraction of inputs whose predicted class is unchanged. A
        spiking mapping compares the spiking readouts (float and chip weights).
        """
        if self.spiking is not None:
            out_float = self.spiking.run(X).astype(np.float64)
            out_quant = self.chip_spiking().run(X).astype(np.float64)
        else:
            out_float = self.network.forward(X).astype(np.float64)
            out_quant = self.quantized_network().forward(X).astype(np.float64)
        diff = out_quant - out_float
        norm = float(np.linalg.norm(out_float, axis=1).mean())
        report = {
            "n_inputs": int(out_float.shape[0]),
            "max_abs_error": float(np.abs(diff).max()),
            "mean_abs_error": float(np.abs(diff).mean()),
            "relative_error": float(np.linalg.norm(diff, axis=1).mean() / norm) if norm > 0 else 0.0,
            "argmax_agreement": float(np.mean(out_float.argmax(1) == out_quant.argmax(1))),
        }
        if y is not None:
            y = np.asarray(y).reshape(-1)
            acc_f = float(np.mean(out_float.argmax(1) == y))
            acc_q = float(np.mean(out_quant.argmax(1) == y))
            report.update(float_accuracy=acc_f, quantized_accuracy=acc_q,
                          accuracy_change=acc_q - acc_f)
        return report

    # --- presentation ---------------------------------------------------------------------
    def layer_summaries(self) -> list[dict]:
        out = []
        for l, q in enumerate(self.quantization, start=1):
            layer = self.network.layers[l - 1]
            out.append({
                "index": l,
                "n_neurons": self.network.widths[l],
                "kind": layer.kind,
                "shape": list(self.network.shapes[l]),
                "fan_in": layer.fan_in,
                "cores": len(self.layer_cores(l)),
                "binding_limit": self.binding_limit(l),
                **({"transforms_before": [t.describe() for t in self.network.pre[l - 1]]}
                   if self.network.pre[l - 1] else {}),
                **({"weight_sharing": self.shares_weights} if layer.kind == "conv2d" else {}),
                "activation": str(self.network.activations[l - 1]),
                "scale": q.scale,
                "sign_mode": q.sign_mode,
                "weight_step": q.step,
                "weight_range": [q.q_min, q.q_max],
            })
        return out

    def binding_limit(self, layer: int) -> str:
        """The per-core limit closest to full on ``layer``'s busiest core: ``neurons``,
        ``axons`` or ``synapses`` (crossbars: ``rows`` or ``columns``)."""
        p = self.profile
        cores = self.layer_cores(layer)
        if p.architecture == "crossbar":
            rows = max(c.in_stop - c.in_start for c in cores) / p.crossbar_rows
            cols = max(c.out_stop - c.out_start for c in cores) / p.crossbar_cols
            return "rows" if rows >= cols else "columns"
        use = {"neurons": max(c.n_neurons for c in cores) / p.neurons_per_core,
               "axons": max(c.axons_in for c in cores) / p.max_fan_in,
               "synapses": max(c.synapses for c in cores) / p.synapses_per_core}
        return max(use, key=use.get)

    def to_dict(self) -> dict:
        """JSON-friendly summary (what ``neurosim map --json`` prints)."""
        return {
            "profile": self.profile.name,
            "architecture": self.profile.architecture,
            "fits": self.fits,
            "cores_used": self.cores_used,
            "chips_needed": self.chips_needed,
            "usable_cores_per_chip": self.profile.usable_cores_per_chip,
            "layers": self.layer_summaries(),
            "cores": [c.as_dict() for c in self.cores],
            "totals": {
                "neurons": int(sum(self.network.widths[1:])),
                "synapses": int(sum(c.synapses for c in self.cores)),
                "mean_utilization": float(np.mean([c.utilization for c in self.cores])),
            },
        }

    def table(self, max_rows: int = 40) -> str:
        """The per-core table as text (core, chip, layer, neurons, axons in, synapses, use)."""
        unit = "tile" if self.profile.architecture == "crossbar" else "core"
        head = f"{unit:>6} {'chip':>5} {'layer':>5} {'neurons':>8} {'axons_in':>9} {'synapses':>10} {'util':>7}"
        lines = [
            f"{self.network!r} on profile '{self.profile.name}' ({self.profile.description})",
            head,
            "-" * len(head),
        ]
        shown = self.cores if len(self.cores) <= max_rows else self.cores[: max_rows - 1]
        for c in shown:
            lines.append(
                f"{c.core_id:>6} {c.chip:>5} {c.layer:>5} {c.n_neurons:>8} {c.axons_in:>9} "
                f"{c.synapses:>10} {100 * c.utilization:>6.1f}%"
            )
        if len(shown) < len(self.cores):
            lines.append(f"{'...':>6} ({len(self.cores) - len(shown)} more {unit}s; --json lists all)")
        lines.append("-" * len(head))
        total_syn = sum(c.synapses for c in self.cores)
        mean_util = 100 * float(np.mean([c.utilization for c in self.cores]))
        lines.append(
            f"{'total':>6} {self.chips_needed:>5} {self.network.n_layers:>5} "
            f"{sum(self.network.widths[1:]):>8} {sum(c.axons_in for c in self.cores):>9} "
            f"{total_syn:>10} {mean_util:>6.1f}%"
        )
        verdict = (
            f"fits on one chip: {self.cores_used} of {self.profile.usable_cores_per_chip} usable {unit}s"
            if self.fits else
            f"does NOT fit on one chip: {self.cores_used} {unit}s need {self.chips_needed} chips "
            f"({self.profile.usable_cores_per_chip} usable {unit}s per chip)"
        )
        lines.append(verdict)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Mapping of {self.network!r} on '{self.profile.name}': {self.cores_used} cores, "
                f"{self.chips_needed} chip(s)>")

    # --- files ----------------------------------------------------------------------------
    def save(self, path: "str | os.PathLike") -> None:
        """Save the mapping (network, profile, neuron -> core, integer weights, scales) to HDF5.

        Every dataset carries HDF5's Fletcher-32 checksum and the root a SHA-256 digest of the
        whole content (:mod:`neurosim.io.digest`), which :func:`load_mapping` checks.
        """
        import h5py

        from neurosim.io.atomic import atomic_path
        from neurosim.io.digest import USERBLOCK, create_dataset, seal, sign
        from neurosim.io.hdf5 import write_network_group

        profile_dict = {k: v for k, v in asdict(self.profile).items() if k != "path"}
        with atomic_path(path, suffix=".h5") as tmp:
            with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
                f.attrs["neurosim_format"] = "mapping"
                f.attrs["format_version"] = (MAPPING_FORMAT_VERSION if self.spiking is None
                                             else SPIKING_MAPPING_VERSION)
                f.attrs["profile"] = json.dumps(profile_dict)
                if self.spiking is not None:
                    f.attrs["spiking"] = json.dumps(self.spiking.spec())
                write_network_group(f.create_group("network"), self.network)
                cores = np.array(
                    [[c.core_id, c.chip, c.layer, c.out_start, c.out_stop, c.in_start, c.in_stop]
                     for c in self.cores], dtype=np.int64).reshape(-1, len(_CORE_COLUMNS))
                create_dataset(f, "cores", cores)
                f["cores"].attrs["columns"] = ",".join(_CORE_COLUMNS)
                create_dataset(f, "core_utilization",
                               np.array([c.utilization for c in self.cores], dtype=np.float64))
                create_dataset(f, "core_counts", np.array(
                    [[c.neurons, c.axons] for c in self.cores], dtype=np.int64).reshape(-1, 2))
                create_dataset(f, "core_blocks", np.array(
                    [list(c.block) if c.block else [-1] * 6 for c in self.cores],
                    dtype=np.int64).reshape(-1, 6))
                create_dataset(f, "core_synapses",
                               np.array([c.synapses for c in self.cores], dtype=np.int64))
                qg = f.create_group("quantization")
                for l, q in enumerate(self.quantization, start=1):
                    g = qg.create_group(str(l))
                    create_dataset(g, "Q", q.Q)
                    g.attrs.update(scale=q.scale, sign_mode=q.sign_mode, step=q.step,
                                   q_min=q.q_min, q_max=q.q_max)
                    if self.neuron_core is not None:
                        create_dataset(g, "neuron_core", self.neuron_core[l - 1])
                sign(f)  # last: the digest covers everything written above
            seal(tmp)  # the checksum of the bytes, in the user block


def load_mapping(path: "str | os.PathLike") -> Mapping:
    """Read a mapping written by :meth:`Mapping.save`.

    The file is checked before it is used: its checksum (format version 3 and later), the
    profile, the network, and that every core addresses neurons and inputs its layer has, and
    covers each neuron of a core-based profile once, and that the integer weights have their
    layer's shape and lie in their representable range.

    Raises
    ------
    NeurosimFileNotFoundError
        If the file does not exist.
    FileFormatError
        If the file is not a neurosim mapping of a supported version, does not match its
        checksum, or holds anything damaged or inconsistent; the message names the file and
        what was wrong (the reader contract, :mod:`neurosim.io.guard`).
    ProfileError
        If the profile stored in the file is invalid.
    """
    import h5py

    from neurosim.io import digest
    from neurosim.io.guard import reading
    from neurosim.io.hdf5 import (check_attributes, check_hdf5_file, check_header,
                                  header_version, require_seal)

    source = os.fspath(path)
    if not os.path.exists(source):
        raise NeurosimFileNotFoundError(f"Mapping file {source!r} does not exist.")
    if os.path.isdir(source):
        raise FileFormatError(f"{source}: is a folder; expected a mapping (.h5) file.")
    with reading(source, "neurosim mapping file"):
        sealed = digest.check_seal(source, source)  # before HDF5 parses a byte of it
        check_hdf5_file(source, source)  # damage the HDF5 library would loop forever on
        try:
            f = h5py.File(source, "r")
        except OSError as exc:
            raise FileFormatError(f"{source}: not a readable HDF5 file ({exc}).") from None
        with f:
            check_header(f, source, "mapping", SUPPORTED_MAPPING_VERSIONS)
            require_seal(f, source, sealed, DIGEST_VERSION)
            version = header_version(f, source)
            # Types and sizes of everything before the digest reads it all: HDF5 can crash
            # on damaged types.
            check_attributes(f, source)
            _check_datasets(f, source)
            if version >= DIGEST_VERSION:
                try:
                    digest.verify(f, source, required=True)
                except OSError as exc:  # HDF5 refused a chunk: its Fletcher-32 sum is wrong
                    raise FileFormatError(
                        f"{source}: a dataset fails its checksum (Fletcher-32) or cannot be "
                        f"read ({exc}): the file is damaged. It is not used.") from exc
            # Files of older versions predate the digest: they are read without one (a digest
            # on such a file was not written for its content, e.g. a file rewritten to an old
            # version by hand, and is not used).
            return _read_mapping(f, source)


def _check_datasets(f, source: str) -> None:
    """Every dataset of the file checked before any is read (the digest reads them all):
    numbers only (neurosim writes no others), sizes, chunk index."""
    import h5py

    from neurosim.datasets import check_hdf5_dataset

    names: list = []
    f.visit(names.append)
    for name in names:
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset):
            if obj.dtype.kind not in "biuf":
                raise FileFormatError(f"{source}: dataset {name!r} holds {obj.dtype} data; "
                                      "a mapping file holds numbers only.")
            check_hdf5_dataset(obj, source, name)


def _read_mapping(f, source: str) -> Mapping:
    """The checked content of an open mapping file."""
    import h5py

    from neurosim.io.hdf5 import json_attr, read_network_group

    profile = profile_from_dict(json_attr(f, "profile", source, "the attribute 'profile'", dict),
                                source=f"{source} (profile)")
    network_group = f.get("network")
    if not isinstance(network_group, h5py.Group):
        raise FileFormatError(f"{source}: has no group 'network' (the mapped network).")
    network = read_network_group(network_group, source)
    rows = _table(f, "cores", source, "iu", len(_CORE_COLUMNS))
    n = rows.shape[0]
    utilization = _table(f, "core_utilization", source, "biuf", None, n).astype(np.float64)
    synapses = (_table(f, "core_synapses", source, "iu", None, n) if "core_synapses" in f
                else (rows[:, 4] - rows[:, 3]) * (rows[:, 6] - rows[:, 5]))
    counts = (_table(f, "core_counts", source, "iu", 2, n) if "core_counts" in f
              else np.full((n, 2), -1, np.int64))
    blocks = (_table(f, "core_blocks", source, "iu", 6, n) if "core_blocks" in f
              else np.full((n, 6), -1, np.int64))
    cores = [Core(*map(int, row), utilization=float(u), n_synapses=int(syn),
                  neurons=int(cnt[0]), axons=int(cnt[1]),
                  block=tuple(int(v) for v in blk) if blk[0] >= 0 else ())
             for row, u, syn, cnt, blk in zip(rows, utilization, synapses, counts, blocks)]
    _check_cores(cores, network, profile, source)
    qg = f.get("quantization")
    if not isinstance(qg, h5py.Group):
        raise FileFormatError(f"{source}: has no group 'quantization' (the integer weights).")
    quantization = [_read_layer_quantization(qg, l, network, profile, source)
                    for l in range(1, network.n_layers + 1)]
    spiking = None
    if "spiking" in f.attrs:
        spec = json_attr(f, "spiking", source, "the attribute 'spiking'", dict)
        try:
            spiking = SpikingNetwork(network, spec["neurons"], T=spec["T"], dt=spec["dt"],
                                     encoding=spec["encoding"], readout=spec["readout"],
                                     seed=spec["seed"], li=spec.get("li"),
                                     input_neuron=spec.get("input_neuron"))
        except (KeyError, TypeError) as exc:
            raise FileFormatError(f"{source}: the attribute 'spiking' is not a spiking "
                                  f"execution ({exc!r}).") from None
    mapping = Mapping(network, profile, cores, quantization, spiking=spiking)
    if mapping.neuron_core is not None:
        for l, owner in enumerate(mapping.neuron_core, start=1):
            held = sum(mapping.core_neurons(c).size for c in mapping.layer_cores(l))
            if held != owner.size or (owner < 0).any():
                raise FileFormatError(
                    f"{source}: the cores of layer {l} do not hold each of its {owner.size} "
                    f"neurons exactly once (they hold {held} neurons, "
                    f"{int((owner < 0).sum())} neurons have no core).")
    return mapping


def _table(f, name: str, source: str, kinds: str, columns: "int | None",
           n_rows: "int | None" = None) -> np.ndarray:
    """Dataset ``name`` of a mapping file: numbers of ``kinds``, one row per core (and
    ``columns`` columns), read after its type and size are checked."""
    from neurosim.io.guard import read_dataset

    if name not in f:
        raise FileFormatError(f"{source}: has no dataset {name!r}.")
    array = read_dataset(f[name], source, f"dataset {name!r}", kinds)
    expected = ((n_rows if n_rows is not None else "n_cores",)
                + ((columns,) if columns is not None else ()))
    if array.ndim != len(expected) or any(isinstance(want, int) and got != want
                                          for got, want in zip(array.shape, expected)):
        shape = "(" + ", ".join(map(str, expected)) + ("," if len(expected) == 1 else "") + ")"
        raise FileFormatError(f"{source}: dataset {name!r} must have shape {shape} (one row "
                              f"per core); got {array.shape}.")
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise FileFormatError(f"{source}: dataset {name!r} holds values beyond 64-bit integers.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise FileFormatError(f"{source}: dataset {name!r} holds NaN or infinite values.")
    return array.astype(np.int64) if array.dtype.kind in "iu" else array


def _check_cores(cores: list, network: Network, profile: HardwareProfile, source: str) -> None:
    """Every core of a loaded mapping addresses neurons and inputs its layer has."""
    crossbar = profile.architecture == "crossbar"
    for index, c in enumerate(cores):
        where = f"{source}: core {index}"
        if c.core_id != index:
            raise FileFormatError(f"{where} has core_id {c.core_id}; cores are numbered 0, 1, ...")
        if c.chip < 0:
            raise FileFormatError(f"{where} is on chip {c.chip}; chips are numbered from 0.")
        if not 1 <= c.layer <= network.n_layers:
            raise FileFormatError(f"{where} is on layer {c.layer}; the network has layers 1.."
                                  f"{network.n_layers}.")
        layer = network.layers[c.layer - 1]
        conv = layer.kind == "conv2d"
        if conv and crossbar:  # a tile of the unfolded kernel: output channels x kernel rows
            kh, kw = layer.kernel_size
            out_size, in_size = layer.c_out, layer.c_in * kh * kw
        else:
            out_size, in_size = layer.n_out, layer.n_in
        if not (0 <= c.out_start <= c.out_stop <= out_size
                and 0 <= c.in_start <= c.in_stop <= in_size):
            raise FileFormatError(
                f"{where} holds outputs {c.out_start}:{c.out_stop} and inputs "
                f"{c.in_start}:{c.in_stop}, outside layer {c.layer}'s {out_size} outputs and "
                f"{in_size} inputs.")
        if min(c.neurons, c.axons) < -1 or c.n_synapses < -1 or c.synapses < 0:
            raise FileFormatError(f"{where} has negative neuron, axon or synapse counts.")
        if not (math.isfinite(c.utilization) and c.utilization >= 0):
            raise FileFormatError(f"{where} has utilization {c.utilization}; expected a "
                                  "number >= 0.")
        if c.block:
            if not conv or crossbar:
                raise FileFormatError(f"{where} has a conv block but layer {c.layer} is not a "
                                      "conv layer on cores.")
            ho, wo = layer.out_hw
            c0, c1, y0, y1, x0, x1 = c.block
            if not (0 <= c0 < c1 <= layer.c_out and 0 <= y0 < y1 <= ho and 0 <= x0 < x1 <= wo):
                raise FileFormatError(
                    f"{where} holds the block channels {c0}:{c1}, rows {y0}:{y1}, columns "
                    f"{x0}:{x1}, outside layer {c.layer}'s {layer.c_out} x {ho} x {wo} outputs.")
    for l in range(1, network.n_layers + 1):
        if not any(c.layer == l for c in cores):
            raise FileFormatError(f"{source}: layer {l} has no core.")


def _attr_value(group, key: str, where: str, source: str, kind: str):
    """Attribute ``key`` of ``group``: an integer (``kind`` "int"), a finite float ("float")
    or text ("str")."""
    from neurosim.io.hdf5 import read_attr

    value = read_attr(group, key, source, f"{where} attribute {key!r}")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if kind == "str":
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            return value
    elif isinstance(value, (bool, np.bool_)):
        pass
    elif kind == "int" and isinstance(value, (int, np.integer)):
        return int(value)
    elif kind == "float" and isinstance(value, (int, float, np.integer, np.floating)) \
            and math.isfinite(float(value)):
        return float(value)
    expected = {"int": "an integer", "float": "a finite number", "str": "text"}[kind]
    raise FileFormatError(f"{source}: {where} attribute {key!r} must be {expected}; got "
                          f"{value!r:.80}.")


def _read_layer_quantization(qg, l: int, network: Network, profile: HardwareProfile,
                             source: str) -> LayerQuantization:
    """The integer weights of layer ``l`` in group ``quantization/<l>``, checked against the
    layer and the profile's word width."""
    import h5py

    from neurosim.io.guard import read_dataset

    where = f"quantization/{l}"
    g = qg.get(str(l))
    if not isinstance(g, h5py.Group):
        raise FileFormatError(f"{source}: has no group {where!r} (layer {l}'s integer weights).")
    if "Q" not in g:
        raise FileFormatError(f"{source}: {where} has no dataset 'Q'.")
    Q = read_dataset(g["Q"], source, f"dataset '{where}/Q'", "iu")
    expected = network.layers[l - 1].synapse_weights.shape
    if Q.shape != expected:
        raise FileFormatError(f"{source}: dataset '{where}/Q' has shape {Q.shape}; layer {l} "
                              f"stores weights of shape {expected}.")
    scale = _attr_value(g, "scale", where, source, "float")
    sign_mode = _attr_value(g, "sign_mode", where, source, "str")
    step, q_min, q_max = (_attr_value(g, key, where, source, "int")
                          for key in ("step", "q_min", "q_max"))
    reach = 2 ** profile.weight_bits  # the widest word range of the profile (drop-LSB words)
    if not (scale > 0 and sign_mode in _SIGN_MODES and step >= 1
            and -reach <= q_min <= 0 <= q_max <= reach):
        raise FileFormatError(
            f"{source}: {where} has scale {scale}, sign_mode {sign_mode!r:.40}, step {step} and "
            f"range [{q_min}, {q_max}]; expected a scale > 0, a sign mode of "
            f"{', '.join(_SIGN_MODES)}, a step >= 1 and a range around 0 within "
            f"{profile.weight_bits}-bit words.")
    if Q.size and (int(Q.min()) < q_min or int(Q.max()) > q_max):
        raise FileFormatError(f"{source}: dataset '{where}/Q' holds integers outside its range "
                              f"[{q_min}, {q_max}].")
    if Q.dtype != np.int32 and q_min >= np.iinfo(np.int32).min and q_max <= np.iinfo(np.int32).max:
        Q = Q.astype(np.int32)
    return LayerQuantization(Q, scale, sign_mode, step, q_min, q_max)


def map_network(network: Network, profile: "HardwareProfile | str" = "loihi2") -> Mapping:
    """Place ``network`` on ``profile``'s cores (or crossbar tiles) and quantize its weights.

    Parameters
    ----------
    network : Network or SpikingNetwork
        A SpikingNetwork is mapped as its network; the mapping keeps its spiking execution
        (``Mapping.spiking``), which the chip runs on the quantized weights.
    profile : HardwareProfile or str
        A profile object, a built-in name or a TOML path.

    Returns
    -------
    Mapping

    Raises
    ------
    MappingError
        If a single neuron's fan-in exceeds a per-core limit that cannot be split (core-based
        profiles): the message names the layer, the limit and both numbers.
    """
    spiking = network if isinstance(network, SpikingNetwork) else None
    if spiking is not None:
        network = spiking.network
    if not isinstance(network, Network):
        raise ValidationError(
            f"map_network maps a Network or a SpikingNetwork; got a {type(network).__name__} "
            "instead.")
    profile = load_profile(profile)
    usable = profile.usable_cores_per_chip
    cores: list[Core] = []
    for l, layer in enumerate(network.layers, start=1):
        n_out, n_in = layer.n_out, layer.n_in
        if layer.kind == "conv2d":
            cores.extend(_conv_cores(network, l, profile, len(cores)))
            continue
        if profile.architecture == "crossbar":
            rows, cols = profile.crossbar_rows, profile.crossbar_cols
            for in_start, in_stop in split_evenly(n_in, math.ceil(n_in / rows)):
                for out_start, out_stop in split_evenly(n_out, math.ceil(n_out / cols)):
                    used = layer.block_synapses(out_start, out_stop, in_start, in_stop)
                    if used == 0:  # no cell of this block holds a weight: no tile
                        continue
                    cid = len(cores)
                    cores.append(Core(cid, cid // usable, l, out_start, out_stop, in_start, in_stop,
                                      used / (rows * cols), used))
            continue
        fan_in = layer.fan_in
        # With pooling before the layer, its cores compute the pooling: they receive the
        # un-pooled activations (their axons), and their synapses weigh the pooled values.
        pooled_axons = (network.receives(l, np.arange(n_in)).size if network.pre[l - 1]
                        else None)
        axons_needed = pooled_axons if pooled_axons is not None else fan_in
        if axons_needed > profile.max_fan_in:
            what = (f"receives {pooled_axons} un-pooled inputs (its {fan_in} inputs come from "
                    "a pooling that its cores compute)" if pooled_axons is not None
                    else f"has fan-in {fan_in}")
            raise MappingError(
                f"Layer {l} of the network cannot be mapped on profile '{profile.name}': each "
                f"neuron {what}, but a core accepts at most {profile.max_fan_in} axons "
                f"in (max_fan_in), and a neuron's inputs cannot be split across cores."
            )
        if fan_in > profile.synapses_per_core:
            raise MappingError(
                f"Layer {l} of the network cannot be mapped on profile '{profile.name}': one "
                f"neuron needs {fan_in} synapses (its fan-in), but a core holds at most "
                f"{profile.synapses_per_core} (synapses_per_core)."
            )
        per_core = min(profile.neurons_per_core, profile.synapses_per_core // max(fan_in, 1))
        for n_cores in range(math.ceil(n_out / per_core), n_out + 1):
            blocks = []
            for out_start, out_stop in split_evenly(n_out, n_cores):
                in_start, in_stop = layer.input_span(out_start, out_stop)
                blocks.append((out_start, out_stop, in_start, in_stop,
                               layer.block_synapses(out_start, out_stop, in_start, in_stop)))
            # A core must also hold all the axons and synapses of its neurons.
            if all((axons_needed if pooled_axons is not None else b[3] - b[2])
                   <= profile.max_fan_in and b[4] <= profile.synapses_per_core for b in blocks):
                break
        for out_start, out_stop, in_start, in_stop, synapses in blocks:
            k = out_stop - out_start
            axons = (network.receives(l, np.arange(in_start, in_stop)).size
                     if pooled_axons is not None else in_stop - in_start)
            utilization = max(k / profile.neurons_per_core, axons / profile.max_fan_in,
                              synapses / profile.synapses_per_core)
            cid = len(cores)
            cores.append(Core(cid, cid // usable, l, out_start, out_stop, in_start, in_stop,
                              utilization, synapses,
                              axons=axons if pooled_axons is not None else -1))
    quantization = [quantize_layer(layer.synapse_weights, profile) for layer in network.layers]
    return Mapping(network, profile, cores, quantization, spiking=spiking)


def _conv_cores(network, l: int, profile: HardwareProfile, first_id: int) -> list[Core]:
    """The cores (crossbar tiles) of a Conv2d layer ``l``; ids start at ``first_id``.

    With pooling before the layer its cores compute the pooling, so a core's axons are the
    un-pooled activations its block's inputs come from (``Network.receives``): the blocks are
    searched with a lowered axon limit until every block's real axon count fits.
    """
    from neurosim.layers.conv import block_neurons, conv_core_blocks, conv_crossbar_tiles

    layer = network.layers[l - 1]
    usable = profile.usable_cores_per_chip
    out = []
    if profile.architecture == "crossbar":
        rows, cols = profile.crossbar_rows, profile.crossbar_cols
        for co0, co1, r0, r1, used in conv_crossbar_tiles(layer, rows, cols):
            cid = first_id + len(out)
            out.append(Core(cid, cid // usable, l, co0, co1, r0, r1, used / (rows * cols), used))
        return out
    where = (f"Layer {l} of the network (conv2d {layer.kernel_size[0]}x{layer.kernel_size[1]}, "
             f"{layer.c_in} -> {layer.c_out} channels) cannot be mapped on profile "
             f"'{profile.name}'")
    share = bool(profile.conv_weight_sharing)
    limit = profile.max_fan_in
    while True:
        try:
            blocks, _ = conv_core_blocks(layer, profile.neurons_per_core, limit,
                                         profile.synapses_per_core, share)
        except ValueError as exc:
            if limit == profile.max_fan_in:
                raise MappingError(f"{where}: {exc}.") from None
            # Lowering the limit went below one neuron's pooled inputs: one neuron per core,
            # if a neuron's un-pooled inputs fit at all.
            ho, wo = layer.out_hw
            single = max(network.receives(l, layer.connections(np.array([i]))[1]).size
                         for i in range(ho * wo))
            if single > profile.max_fan_in:
                raise MappingError(
                    f"{where}: one neuron receives {single} un-pooled inputs (its inputs come "
                    f"from a pooling that its cores compute), but a core accepts at most "
                    f"{profile.max_fan_in} (max_fan_in).") from None
            blocks, _ = conv_core_blocks(layer, 1, profile.max_fan_in,
                                         profile.synapses_per_core, share)
            limit = 0
        if not network.pre[l - 1]:
            break
        for b in blocks:  # the real axons: un-pooled inputs of the block's pooled inputs
            _, cols, _ = layer.connections(block_neurons(layer, b["block"]))
            b["axons"] = int(network.receives(l, cols).size)
        worst = max(b["axons"] for b in blocks)
        if worst <= profile.max_fan_in or limit == 0:
            break
        limit = max(1, int(limit * profile.max_fan_in / worst) - 1)
    for b in blocks:
        neurons = block_neurons(layer, b["block"])
        lo, hi = int(neurons.min()), int(neurons.max()) + 1
        _, cols, _ = layer.connections(neurons)
        in_lo, in_hi = (int(cols.min()), int(cols.max()) + 1) if cols.size else (0, 0)
        utilization = max(b["neurons"] / profile.neurons_per_core, b["axons"] / profile.max_fan_in,
                          b["synapses"] / profile.synapses_per_core)
        cid = first_id + len(out)
        out.append(Core(cid, cid // usable, l, lo, hi, in_lo, in_hi, utilization, b["synapses"],
                        neurons=b["neurons"], axons=b["axons"], block=tuple(b["block"])))
    return out


def target_network(target, use_float: bool = False, owner: str = "simulate"):
    """``(network, mapping)``: the network a simulation of ``target`` computes, and its mapping.

    A Mapping computes its quantized network (``use_float``: its float network); a Network is
    itself (mapping None). The one place that says which network the chip computes.
    """
    if isinstance(target, Mapping):
        return target.chip_network(use_float), target
    if isinstance(target, Network):
        return target, None
    raise ValidationError(
        f"The first argument of {owner} must be a Mapping (neurosim.map_network) or a "
        f"Network. Got {type(target).__name__} instead."
    )


def network_label(mapping, use_float: bool = False) -> str:
    """``float`` or ``quantized for PROFILE``: what the results say they simulated."""
    return "float" if (use_float or mapping is None) else f"quantized for {mapping.profile.name}"
