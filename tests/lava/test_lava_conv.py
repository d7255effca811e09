"""Conv layers on the Lava backend, and how neurosim's Conv2d relates to Lava's Conv process."""

from __future__ import annotations

import numpy as np
import pytest

import neurosim
from neurosim.backends import get_backend
from neurosim.faults import CoreFailure, FaultModel, NeuronCrash, SynapseStuck, WeightBitFlip
from neurosim.layers import Conv2d, Dense, Flatten, MaxPool2d
from neurosim.network import Network
from neurosim.plan import build_plan
from neurosim.quantization import integer_forward
from neurosim.sampler import sample_faults

lava_backend = pytest.importorskip("neurosim.backends.lava")
pytest.importorskip("lava.magma")
from neurosim.backends.lava import LavaBackend, LavaUnsupportedError, run_lava  # noqa: E402


def _net(seed=0):
    rng = np.random.default_rng(seed)
    return Network([
        Conv2d.build(rng.normal(0, 0.5, (3, 1, 3, 3)), rng.normal(0, 0.1, 3), (1, 6, 6),
                     padding=1, activation="relu"),
        Conv2d.build(rng.normal(0, 0.4, (4, 3, 3, 3)), rng.normal(0, 0.1, 4), (3, 6, 6),
                     stride=2, padding="same", activation="relu"),
        Flatten(), Dense(rng.normal(0, 0.4, (3, 36)), rng.normal(0, 0.1, 3)),
    ])


def test_floating_pt_conv_net_matches_numpy_backend():
    net = _net()
    X = np.random.default_rng(1).normal(size=(4, 1, 6, 6))
    np.testing.assert_allclose(run_lava(net, X), net.forward(X), rtol=1e-9, atol=1e-9)
    plan = build_plan(net, FaultModel([NeuronCrash(0.05, layers=(0, 1, 2)),
                                       SynapseStuck(0.02, 0.02)]))
    batch = sample_faults(plan, np.random.default_rng(2), 12)
    rows = np.flatnonzero(batch.draw_has_fault)[:6]
    outs = []
    for backend in (get_backend("numpy"), LavaBackend()):
        cache = backend.clean_cache(plan, plan.network.check_input(X))
        outs.append(backend.propagate(plan, cache, batch, rows, rows % 4))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-9, atol=1e-9)


def test_fixed_pt_conv_net_matches_the_integer_model():
    net = _net(3)
    mapping = neurosim.map_network(net, "loihi2")
    X = np.random.default_rng(4).uniform(0, 1, size=(3, 1, 6, 6))
    np.testing.assert_array_equal(run_lava(mapping, X, mode="fixed_pt", return_integers=True),
                                  integer_forward(mapping, X, return_integers=True))
    plan = build_plan(mapping, FaultModel([NeuronCrash(0.05), WeightBitFlip(0.01),
                                           CoreFailure(0.2)]))
    batch = sample_faults(plan, np.random.default_rng(5), 3)
    assert batch.kind.size > 0
    np.testing.assert_array_equal(
        run_lava(mapping, X, mode="fixed_pt", faults=batch, return_integers=True),
        integer_forward(mapping, X, faults=batch, return_integers=True))


def test_pooling_is_refused():
    rng = np.random.default_rng(0)
    net = Network([Conv2d.build(rng.normal(size=(2, 1, 3, 3)), None, (1, 4, 4), padding=1,
                                activation="relu"), MaxPool2d(2), Flatten(),
                   Dense(rng.normal(size=(2, 8)), np.zeros(2))])
    with pytest.raises(LavaUnsupportedError, match="pooling.*maxpool2d"):
        LavaBackend().check(build_plan(net, NeuronCrash(0.1)))


def _lava_conv(K_lava, x_whc, mode, padding, stride, groups, weight_exp=0):
    """One Lava Conv process on one input (W, H, C): its output (W', H', C_out)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    dtype = np.int32 if mode == "fixed_pt" else float
    conv = Conv(weight=K_lava.astype(dtype), input_shape=x_whc.shape, padding=padding,
                stride=stride, groups=groups, num_message_bits=24, weight_exp=weight_exp)
    src = Source(data=np.repeat(x_whc[..., None], 2, axis=-1).astype(dtype))
    sink = Sink(shape=conv.output_shape, buffer=2)
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    sink.run(condition=RunSteps(num_steps=2), run_cfg=Loihi2SimCfg(select_tag=mode))
    out = np.array(sink.data.get())[..., 1]  # the Conv sends with one step of delay
    sink.stop()
    return out


@pytest.mark.parametrize("padding, stride, groups", [(1, 1, 1), (0, 2, 1), (1, 1, 2)])
def test_neurosim_conv_equals_lavas_conv_process(padding, stride, groups):
    """Lava's Conv is a true convolution on (W, H, C) data with kernels (C_out, W, H, C_in):
    neurosim's (PyTorch's) cross-correlation kernel K[co, ci, ky, kx] is Lava's
    K_lava[co, kw-1-kx, kh-1-ky, ci]."""
    rng = np.random.default_rng(6)
    C_in, C_out, H, W = 2, 4, 5, 6
    K = rng.normal(size=(C_out, C_in // groups, 3, 3))
    x = rng.normal(size=(C_in, H, W))
    conv = Conv2d.build(K, None, (C_in, H, W), stride=stride, padding=padding, groups=groups)
    ours = conv.linear(x.reshape(1, -1)).reshape(conv.out_shape)  # (C, H, W)
    K_lava = K[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    theirs = _lava_conv(K_lava, x.transpose(2, 1, 0), "floating_pt", padding, stride, groups)
    np.testing.assert_allclose(theirs.transpose(2, 1, 0), ours, rtol=1e-6, atol=1e-6)


def test_lavas_fixed_pt_conv_ignores_the_weight_exponent():
    """Why conv layers run as a bit-accurate Dense in fixed_pt: Lava's fixed_pt Conv model
    does not apply weight_exp (a Dense does)."""
    rng = np.random.default_rng(7)
    K = rng.integers(-20, 20, size=(2, 1, 3, 3))
    x = rng.integers(0, 50, size=(1, 4, 4))
    K_lava = K[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    plain = _lava_conv(K_lava, x.transpose(2, 1, 0), "fixed_pt", 1, 1, 1, weight_exp=0)
    scaled = _lava_conv(K_lava, x.transpose(2, 1, 0), "fixed_pt", 1, 1, 1, weight_exp=-2)
    exact = Conv2d.build(K.astype(float), None, (1, 4, 4), padding=1).linear(
        x.reshape(1, -1).astype(float)).reshape(2, 4, 4)
    np.testing.assert_array_equal(plain.transpose(2, 1, 0), exact)
    np.testing.assert_array_equal(scaled, plain)  # the exponent changed nothing
