"""The file kinds the fuzz tests cover: each kind's file suffix and the public reader a user
calls on it. The fuzz tests (tests/test_fuzz_*.py) make valid files of each kind and mutate
them; tests/test_fuzz_regressions.py reads the files kept in tests/data/fuzz/<kind>/ with the
same readers. A new reader (NIR, netx, ...) joins by adding its kind here and a maker in a
tests/test_fuzz_*.py file."""

from __future__ import annotations

import neurosim as ns
from neurosim.datasets import read_idx

#: activations given with a PyTorch state_dict (it stores weights only)
TORCH_ACTIVATIONS = ["relu", "identity"]


def _resume(path):
    from neurosim.results import load_result

    return load_result(path)


KINDS = {
    # kind: (suffix, reader)
    "network_npz": (".npz", lambda p: ns.load_network(p)),
    "network_h5": (".h5", lambda p: ns.load_network(p)),
    "keras_h5": (".h5", lambda p: ns.load_network(p)),
    "keras": (".keras", lambda p: ns.load_network(p)),
    "torch_state": (".pt", lambda p: ns.load_network(p, activations=TORCH_ACTIVATIONS)),
    "torchscript": (".pt", lambda p: ns.load_network(p)),
    "onnx": (".onnx", lambda p: ns.load_network(p)),
    "data_npz": (".npz", lambda p: ns.load_data(p)),
    "data_h5": (".h5", lambda p: ns.load_data(p)),
    "idx": (".idx", read_idx),
    "profile": (".toml", lambda p: ns.load_profile(p)),
    "mapping": (".h5", lambda p: ns.load_mapping(p)),
    "result": (".h5", _resume),
}
