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


def _result(path):
    from neurosim.results import load_result

    return load_result(path)


def resume_setup():
    """The run that the fuzzed checkpoints belong to: network, faults, data and options."""
    import numpy as np

    net = ns.Network.random([6, 9, 7, 4], "tanh", seed=3)
    X = np.random.default_rng(0).normal(size=(900, 6))
    y = np.random.default_rng(1).integers(0, 4, size=900)
    faults = ns.NeuronCrash(0.02) + ns.SynapseStuck(0.01, 0.01)
    kw = dict(metric="linf", eps=0.05, n_samples=40, seed=4, checkpoint_every_s=0.0,
              mode="permanent")
    return net, faults, X, y, kw


def _resume(path):
    """``simulate(..., resume=True)`` from the checkpoint at ``path``."""
    net, faults, X, y, kw = resume_setup()
    return ns.simulate(net, faults, X, y, output=path, resume=True, **kw)


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
    "result": (".h5", _result),
    "checkpoint": (".h5", _resume),
    "certificate": (".json", lambda p: ns.load_certificate(p)),
}
