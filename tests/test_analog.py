"""Tests of neurosim.analog: hand-computed cases and the aihwkit formulas written out.

aihwkit commit read: 4545f11b5214c5e3c6b9d293053bbf8baf74e110 (see docs/analog_sources.md).
"""

import dataclasses
import math

import numpy as np
import pytest

from neurosim import analog as A
from neurosim.errors import ValidationError


# ----------------------------------------------------------------------------- presets

def test_presets_and_lookup():
    assert A.device_model("pcm") is A.PCM
    assert A.device_model("ReRAM") is A.RERAM
    with pytest.raises(ValidationError, match=r"'name'.*\['pcm', 'reram'\].*'sram'"):
        A.device_model("sram")
    assert A.PCM.g_max == 25.0 and A.PCM.t0 == 20.0 and A.PCM.t_read == 250e-9
    assert A.PCM.prog_coeff == (0.26348, 1.9650, -1.1731)
    assert A.RERAM.relaxation_times == (1.0, 86400.0, 172800.0)
    for model in (A.PCM, A.RERAM):
        assert all(A.AIHWKIT_COMMIT[:12] in v or v.startswith("none") for v in model.sources.values()
                   if "aihwkit" in v or v.startswith("none"))
        assert {"g_max", "prog_coeff", "t0", "t_read"} <= set(model.sources)
    hash(A.PCM)  # frozen, hashable despite the sources mapping
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.PCM.g_max = 1.0
    assert A.periphery_model("io_parameters").out_bound == 12.0
    with pytest.raises(ValidationError, match="'name'"):
        A.periphery_model("nope")


def test_bad_device_model_fields():
    with pytest.raises(ValidationError, match="'g_max'"):
        dataclasses.replace(A.PCM, g_max=-1.0)
    with pytest.raises(ValidationError, match="'t0'"):
        dataclasses.replace(A.PCM, t0=None)


# ----------------------------------------------------------------------------- mapping

def test_differential_mapping_round_trip():
    W = np.array([[0.5, -1.0], [0.0, 0.25]])
    gp, gm = A.to_conductances(W, 1.0, 25.0)
    np.testing.assert_array_equal(gp, [[12.5, 0.0], [0.0, 6.25]])
    np.testing.assert_array_equal(gm, [[0.0, 25.0], [0.0, 0.0]])
    np.testing.assert_allclose(A.to_weights(gp, gm, 1.0, 25.0), W, rtol=0, atol=1e-15)
    # w_max=None: aihwkit's abs max; weights beyond w_max clip at g_max
    gp2, _ = A.to_conductances(W, None, 25.0)
    np.testing.assert_array_equal(gp2, gp)
    gp3, gm3 = A.to_conductances(np.array([2.0, -3.0]), 1.0, 25.0)
    np.testing.assert_array_equal(gp3, [25.0, 0.0])
    np.testing.assert_array_equal(gm3, [0.0, 25.0])
    # g_min offset: both devices sit at g_min for a zero weight, difference unchanged
    gp4, gm4 = A.to_conductances(W, 1.0, 25.0, g_min=5.0)
    np.testing.assert_allclose(gp4, [[15.0, 5.0], [5.0, 10.0]])
    np.testing.assert_allclose(A.to_weights(gp4, gm4, 1.0, 25.0, g_min=5.0), W, atol=1e-15)


# ----------------------------------------------------------------------------- PCM formulas

def test_pcm_programming_noise_polynomial():
    # aihwkit pcm.py: sig = (0.26348 + 1.9650 x - 1.1731 x^2) * g_max / 25, x = g / g_max
    np.testing.assert_allclose(A.programming_noise_std([0.0, 12.5, 25.0], A.PCM),
                               [0.26348, 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.25,
                                0.26348 + 1.9650 - 1.1731], rtol=1e-14)
    np.testing.assert_allclose(A.programming_noise_std([12.5], A.PCM), [0.952705], rtol=1e-12)
    pcm50 = dataclasses.replace(A.PCM, g_max=50.0)  # reference stays 25 uS: scale 50 / 25
    np.testing.assert_allclose(A.programming_noise_std([25.0], pcm50), [2 * 0.952705],
                               rtol=1e-12)
    # programmed value: max(g + sig * n, 0)
    g = np.array([0.0, 12.5])
    np.testing.assert_allclose(A.program_conductances(g, A.PCM, [-1.0, 1.0]),
                               [0.0, 12.5 + 0.952705])


def _nu_by_hand(g, n, g_max=25.0):
    # aihwkit pcm.py generate_drift_coefficients:
    # g_rel = clamp(|g / g_max|, min=1e-7)
    # mu = clamp(-0.0155 log(g_rel) + 0.0244, 0.049, 0.1)
    # sig = clamp(-0.0125 log(g_rel) - 0.0059, 0.008, 0.045)
    # nu = |mu + sig * n|
    g_rel = max(abs(g / g_max), 1e-7)
    mu = min(max(-0.0155 * math.log(g_rel) + 0.0244, 0.049), 0.1)
    sig = min(max(-0.0125 * math.log(g_rel) - 0.0059, 0.008), 0.045)
    return abs(mu + sig * n)


def test_pcm_drift_nu_and_clipping():
    g = np.array([0.0, 0.0025, 2.5, 25.0, 2.5, 25.0])
    n = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -10.0])
    nu = A.drift_nu(g, A.PCM, n)
    np.testing.assert_allclose(nu, [_nu_by_hand(gi, ni) for gi, ni in zip(g, n)], rtol=1e-13)
    # the numbers: mean clipped at 0.1 (small g) and 0.049 (g_max); 0.0155 ln 10 + 0.0244 at 0.1
    np.testing.assert_allclose(nu[:4], [0.1, 0.1, 0.0155 * math.log(10) + 0.0244, 0.049],
                               rtol=1e-13)
    # g = 2.5: sigma = 0.0125 ln 10 - 0.0059; g = 25: sigma clipped at 0.008, |0.049 - 0.08|
    np.testing.assert_allclose(nu[4], 0.0155 * math.log(10) + 0.0244
                               + 0.0125 * math.log(10) - 0.0059, rtol=1e-13)
    np.testing.assert_allclose(nu[5], 0.031, rtol=1e-12)
    assert np.all(A.drift_nu(g, A.RERAM, n) == 0.0)


def test_drift_closed_form():
    g = np.array([[10.0, 25.0]])
    nu = np.array([[0.05, 0.1]])
    # t = t0 (t_inference = 0): no drift
    np.testing.assert_array_equal(A.drift(g, nu, 0.0, A.PCM), g)
    # t = 10 t0 (t_inference = 9 t0): G(t0) * 10^-nu
    np.testing.assert_allclose(A.drift(g, nu, 9 * A.PCM.t0, A.PCM), g * 10.0 ** (-nu),
                               rtol=1e-14)
    with pytest.raises(ValidationError, match="'t_inference'"):
        A.drift(g, nu, -1.0, A.PCM)
    np.testing.assert_array_equal(A.drift(g, nu, 100.0, A.RERAM), g)


def test_pcm_read_noise():
    # aihwkit pcm.py: t = t_inference + t0;
    # q_s = clamp(0.0088 / clamp((|g| / g_max)^0.65, min=1e-3), max=0.2)
    # sig = |g_drift| * q_s * sqrt(log((t + t_read) / (2 t_read)))
    t_inf, t0, t_read = 3600.0, 20.0, 250e-9
    root = math.sqrt(math.log((t_inf + t0 + t_read) / (2 * t_read)))
    g = np.array([25.0, 6.25, 25e-6, 0.0])
    q = [0.0088, 0.0088 / 0.25 ** 0.65, 0.2, 0.2]
    np.testing.assert_allclose(A.read_noise_std(g, t_inf, A.PCM),
                               [gi * qi * root for gi, qi in zip(g, q)], rtol=1e-13)
    # relative to the drifted value, Q_s from the programmed one
    g_now = np.array([20.0, 5.0, 2e-5, 0.0])
    np.testing.assert_allclose(A.read_noise_std(g, t_inf, A.PCM, g_now=g_now),
                               [gi * qi * root for gi, qi in zip(g_now, q)], rtol=1e-13)
    assert np.all(A.read_noise_std(g, t_inf, A.RERAM) == 0.0)


def test_reram_polynomials():
    # aihwkit reram.py coeff_dic[1.0] = [-16.815, 45.393, -43.853, 16.030, 0.348][::-1]
    x = 0.5
    p1 = 0.348 + 16.030 * x - 43.853 * x**2 + 45.393 * x**3 - 16.815 * x**4
    np.testing.assert_allclose(A.programming_noise_std([20.0], A.RERAM), [p1], rtol=1e-13)
    # coeff_dic[86400] at g = g_max: sum of the coefficients
    np.testing.assert_allclose(A.relaxation_std([40.0], 86400.0, A.RERAM),
                               [-16.458 + 47.095 - 50.773 + 22.086 + 0.701], rtol=1e-12)
    with pytest.raises(ValidationError, match=r"'t_inference'.*86400"):
        A.relaxation_std([40.0], 3600.0, A.RERAM)


# ----------------------------------------------------------------------------- program

def test_program_zero_normals_and_compensation():
    W = np.array([[0.5, -1.0], [0.25, 0.0]])
    zeros = np.zeros(A.normals_shape(W.shape))
    assert zeros.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(A.program(W, 1.0, A.PCM, 0.0, zeros), W, atol=1e-15)
    t = 9 * A.PCM.t0  # factor 10^-nu per device, nu from the target
    expected = np.array([[0.5 * 10 ** -_nu_by_hand(12.5, 0.0), -(10 ** -_nu_by_hand(25.0, 0.0))],
                         [0.25 * 10 ** -_nu_by_hand(6.25, 0.0), 0.0]])
    np.testing.assert_allclose(A.program(W, 1.0, A.PCM, t, zeros), expected, rtol=1e-13)
    # all devices at g_max drift alike: global compensation undoes it exactly
    W1 = np.array([[1.0, -1.0], [-1.0, 1.0]])
    Wc = A.program(W1, 1.0, A.PCM, t, np.zeros((3, 2, 2, 2)), compensate=True)
    np.testing.assert_allclose(Wc, W1, rtol=1e-13)
    assert A.global_drift_compensation(W1, 0.5 * W1) == pytest.approx(2.0)


def test_program_noise_paths():
    rng = np.random.default_rng(1)
    W = rng.uniform(-1, 1, size=(4, 3))
    n = rng.standard_normal(A.normals_shape(W.shape))
    gp, gm = A.to_conductances(W, 1.0, A.PCM.g_max)
    # by hand, device by device
    out = []
    for d, g_t in enumerate((gp, gm)):
        g_prog = np.maximum(g_t + A.programming_noise_std(g_t, A.PCM) * n[0, d], 0)
        g_d = g_prog * ((100.0 + 20.0) / 20.0) ** -A.drift_nu(g_t, A.PCM, n[1, d])
        out.append(np.maximum(g_d + A.read_noise_std(g_prog, 100.0, A.PCM, g_d) * n[2, d], 0))
    np.testing.assert_allclose(A.program(W, 1.0, A.PCM, 100.0, n),
                               (out[0] - out[1]) / 25.0, rtol=1e-13)
    # ReRAM at a fitted time: fresh sample around the target (normals[2])
    gp, gm = A.to_conductances(W, 1.0, A.RERAM.g_max)
    want = [np.maximum(g + A.relaxation_std(g, 86400.0, A.RERAM) * n[2, d], 0)
            for d, g in enumerate((gp, gm))]
    np.testing.assert_allclose(A.program(W, 1.0, A.RERAM, 86400.0, n),
                               (want[0] - want[1]) / 40.0, rtol=1e-13)
    with pytest.raises(ValidationError, match="'t_inference'"):
        A.program(W, 1.0, A.RERAM, 10.0, n)
    with pytest.raises(ValidationError, match="'normals'"):
        A.program(W, 1.0, A.PCM, 10.0, n[:, :, :2])


# ----------------------------------------------------------------------------- DAC / ADC

def test_quantization_levels_and_clipping():
    assert A.n_levels(7) == 127 and A.n_levels(9) == 511
    assert A.quantization_step(7, 1.0) == 2.0 / 126
    # bits 3, bound 3: step 2 * 3 / (2**3 - 2) = 1; round half to even; clip at +-3
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.49, 3.7, -7.0])
    np.testing.assert_array_equal(A.dac(x, 3, 3.0), [0.0, 2.0, 2.0, -0.0, -1.0, 3.0, -3.0])
    levels = np.unique(A.adc(np.linspace(-5, 5, 10001), 3, 3.0))
    np.testing.assert_array_equal(levels, [-3, -2, -1, 0, 1, 2, 3])  # 2**3 - 1 levels
    assert np.unique(A.dac(np.linspace(-1, 1, 100001), 7, 1.0)).size == 127
    np.testing.assert_array_equal(A.dac([0.3, -4.0], None, 1.0), [0.3, -1.0])  # clip only


def test_abs_max_scale():
    x = np.array([[2.0, -4.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(A.abs_max_scale(x), [[4.0], [1.0]])
    np.testing.assert_array_equal(A.abs_max_scale(x, nm_thres=3.0), [[3.0], [1.0]])
    assert A.abs_max_scale(np.array([-0.5, 0.25])).shape == (1,)


def test_tile_matvec_2x2():
    W = np.array([[0.5, -1.0], [0.25, 0.75]])
    x = np.array([1.0, -0.5])
    # ideal periphery: exact product
    np.testing.assert_allclose(A.tile_matvec(W, x, None, None), W @ x, rtol=1e-15)
    # 7-bit DAC (step 1/63): -0.5 -> -32/63 (half to even); y = [63.5/63, 0.25 - 24/63]
    # 9-bit ADC, bound 12 (step 24/510 = 4/85): 21.42 -> 21, -2.78 -> -3
    np.testing.assert_allclose(A.tile_matvec(W, x, 7, 9, 1.0, 12.0), [84 / 85, -12 / 85],
                               rtol=1e-14)
    # noise management: x scaled by its abs max 2, output scaled back
    np.testing.assert_allclose(A.tile_matvec(W, 2 * x, 7, 9, 1.0, 12.0),
                               [2 * 84 / 85, -2 * 12 / 85], rtol=1e-14)
    # w_max: weights in units of 2 -> the same product, times 2
    np.testing.assert_allclose(A.tile_matvec(2 * W, x, None, None), 2 * W @ x, rtol=1e-15)
    # output noise from given normals (normalized units)
    n = np.array([1.0, -2.0])
    np.testing.assert_allclose(A.tile_matvec(W, x, None, None, out_noise=0.1, normals=n),
                               W @ x + 0.1 * n, rtol=1e-14)
    # batch: shape x.shape[:-1] + (out,)
    X = np.stack([x, 2 * x, np.zeros(2)])
    Y = A.tile_matvec(W, X, 7, 9)
    assert Y.shape == (3, 2) and Y.dtype == np.float64
    np.testing.assert_array_equal(Y[2], [0.0, 0.0])


def test_tile_matvec_bound_management():
    W = np.array([[1.0, 1.0]])
    x = np.array([1.0, 1.0])
    assert A.tile_matvec(W, x, None, None, out_bound=1.5)[0] == 1.5  # clipped
    # ITERATIVE: halve the input until the output fits, scale back
    assert A.tile_matvec(W, x, None, None, out_bound=1.5, bound_management=True)[0] == 2.0
    # per vector: the second vector does not clip and is left alone
    X = np.array([[1.0, 1.0], [0.25, 0.25]])
    np.testing.assert_allclose(
        A.tile_matvec(W, X, None, None, out_bound=1.5, bound_management=True), [[2.0], [0.5]])


# ----------------------------------------------------------------------------- shapes, errors

@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)])
def test_shapes_preserved(shape):
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, size=shape)
    g = np.abs(W) * 25.0
    for out in (A.programming_noise_std(g, A.PCM), A.drift_nu(g, A.PCM, np.zeros(shape)),
                A.drift(g, np.zeros(shape), 5.0, A.PCM), A.read_noise_std(g, 5.0, A.PCM),
                *A.to_conductances(W, 1.0), A.dac(W, 7, 1.0), A.adc(W, 9, 12.0),
                A.program(W, 1.0, A.PCM, 5.0, np.zeros(A.normals_shape(shape)))):
        assert out.shape == shape and out.dtype == np.float64


@pytest.mark.parametrize("bits", [-1, 0, 1, 2.5, True])
def test_bad_bits(bits):
    with pytest.raises(ValidationError, match="'bits'"):
        A.dac([0.1], bits, 1.0)
    with pytest.raises(ValidationError, match="'adc_bits'"):
        A.tile_matvec(np.eye(2), np.ones(2), 7, bits)


def test_bad_inputs():
    with pytest.raises(ValidationError, match="'t_inference'"):
        A.read_noise_std([1.0], -5.0, A.PCM)
    with pytest.raises(ValidationError, match="'t_inference'"):
        A.program([0.5], 1.0, A.PCM, float("nan"), np.zeros((3, 2, 1)))
    with pytest.raises(ValidationError, match="'W'.*NaN"):
        A.to_conductances([0.1, float("nan")], 1.0)
    with pytest.raises(ValidationError, match="'W'"):
        A.program([np.nan], 1.0, A.PCM, 0.0, np.zeros((3, 2, 1)))
    with pytest.raises(ValidationError, match="'w_max'"):
        A.to_conductances([0.1], 0.0)
    with pytest.raises(ValidationError, match="'bound'"):
        A.adc([0.1], 8, -1.0)
    with pytest.raises(ValidationError, match="'normal'"):
        A.drift_nu([1.0, 2.0], A.PCM, [0.0])
    with pytest.raises(ValidationError, match="'x'"):
        A.tile_matvec(np.eye(2), np.ones(3))
    with pytest.raises(ValidationError, match="'normals'"):
        A.tile_matvec(np.eye(2), np.ones(2), out_noise=0.1)
    with pytest.raises(ValueError):  # ValidationError is a ValueError
        A.device_model("unknown")
