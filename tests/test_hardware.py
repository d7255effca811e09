"""Tests of :mod:`neurosim.hardware`: built-in profiles, their provenance, and user TOML files."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from importlib import resources

import pytest

from neurosim.errors import NeurosimFileNotFoundError, ProfileError, ValidationError
from neurosim.hardware import (
    CONFIDENCE_LEVELS,
    DEFAULT_PROFILE,
    FaultRates,
    HardwareProfile,
    list_profiles,
    load_profile,
    profile_from_dict,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTINS = ["loihi2", "loihi1", "truenorth", "spinnaker2", "dynapse2", "rram_crossbar", "pcm_crossbar"]
NUMBER_TYPES = ("int", "float", "bool")


def _builtin_text(name: str) -> str:
    return (resources.files("neurosim.hw_profiles") / f"{name}.toml").read_text(encoding="utf-8")


@pytest.fixture
def loihi2_text() -> str:
    return _builtin_text("loihi2")


def _write(tmp_path, text: str, name: str = "chip.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _replace_once(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# --- built-in profiles ---------------------------------------------------------------------


def test_list_profiles_default_first():
    names = list_profiles()
    assert DEFAULT_PROFILE == "loihi2"
    assert names[0] == "loihi2"
    assert sorted(names) == sorted(BUILTINS)
    assert names[1:] == sorted(names[1:])


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profile_loads(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # built-ins do not depend on the working directory
    profile = load_profile(name)
    assert isinstance(profile, HardwareProfile)
    assert profile.name == name
    assert profile.description
    assert profile.architecture in ("cores", "crossbar")
    assert 1 <= profile.usable_cores_per_chip <= profile.cores_per_chip
    assert profile.word_min == -(2 ** (profile.weight_bits - 1))
    assert profile.word_max == 2 ** (profile.weight_bits - 1) - 1
    for rate in profile.fault_rates.as_dict().values():
        assert 0.0 <= rate <= 1.0
    if profile.architecture == "crossbar":
        assert profile.crossbar_rows >= 1 and profile.crossbar_cols >= 1
    json.dumps(profile.summary())  # JSON-friendly
    assert load_profile(profile) is profile


def test_default_profile_is_loihi2():
    assert load_profile() == load_profile("loihi2")


def test_known_builtin_values():
    loihi2 = load_profile("loihi2")
    assert (loihi2.cores_per_chip, loihi2.spare_cores_per_chip, loihi2.usable_cores_per_chip) == (128, 6, 122)
    assert loihi2.weight_bits == 8 and loihi2.mixed_sign_drop_lsb and loihi2.power_of_two_scale
    rram = load_profile("rram_crossbar")
    assert rram.architecture == "crossbar"
    assert (rram.crossbar_rows, rram.crossbar_cols) == (128, 128)
    assert rram.fault_rates.synapse_stuck_at_zero == 0.0175
    assert rram.fault_rates.synapse_stuck_at_max == 0.0904
    dynapse = load_profile("dynapse2")
    assert dynapse.max_fan_in == 64 and dynapse.weight_bits == 4
    assert load_profile("truenorth").neurons_per_core == 256


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_numbers_have_confidence_and_sources(name):
    profile = load_profile(name)
    raw = tomllib.loads(_builtin_text(name))
    keys = []
    for f in dataclasses.fields(HardwareProfile):
        if f.type in NUMBER_TYPES and (f.metadata["required"] or f.name in raw):
            keys.append(f.name)
    # (optional rates, like optional numbers, need provenance where the file sets them)
    keys += [f"fault_rates.{f.name}" for f in dataclasses.fields(FaultRates)
             if f.metadata["required"] or f.name in raw.get("fault_rates", {})]
    keys += [f"fault_modes.{k}" for k in raw.get("fault_modes", {})]
    keys += [f"analog.{k}" for k in raw.get("analog", {})]
    # Sanity: the required numbers and all five rates are in the list.
    assert {"cores_per_chip", "neurons_per_core", "max_fan_in", "synapses_per_core",
            "weight_bits", "fault_rates.neuron_crash", "fault_rates.core_failure"} <= set(keys)
    for key in keys:
        assert profile.confidence.get(key) in CONFIDENCE_LEVELS, (name, key)
        source = profile.sources.get(key)
        assert isinstance(source, str) and source.strip(), (name, key)


def test_number_fields_set_in_a_file_need_provenance_example():
    # rram_crossbar sets the optional crossbar sizes, loihi2 the optional spare cores: both are
    # documented, so the check above really covers optional fields.
    assert "crossbar_rows" in load_profile("rram_crossbar").confidence
    assert "spare_cores_per_chip" in load_profile("loihi2").sources


def test_field_docs_cover_every_field():
    docs = HardwareProfile.field_docs()
    expected = {f.name for f in dataclasses.fields(HardwareProfile)}
    expected |= {f"fault_rates.{f.name}" for f in dataclasses.fields(FaultRates)}
    assert set(docs) == expected
    for key, spec in docs.items():
        assert isinstance(spec["doc"], str) and spec["doc"].strip(), key
        assert isinstance(spec["unit"], str) and spec["unit"].strip(), key
    assert docs["fault_rates.neuron_crash"]["lo"] == 0 and docs["fault_rates.neuron_crash"]["hi"] == 1
    assert docs["architecture"]["choices"] == ("cores", "crossbar")


# --- user files ----------------------------------------------------------------------------


def test_valid_user_file(tmp_path, loihi2_text):
    path = _write(tmp_path, loihi2_text, "my_loihi.toml")
    profile = load_profile(path)
    assert profile == load_profile("loihi2")  # ``path`` is not compared
    assert profile.path == str(path)
    assert load_profile(str(path)) == profile


def test_user_file_with_changed_value(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "neurons_per_core = 8192", "neurons_per_core = 100")
    profile = load_profile(_write(tmp_path, text))
    assert profile.neurons_per_core == 100


def test_typo_key_suggests_the_right_one(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "neurons_per_core = 8192", "neurons_per_cor = 8192")
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "'neurons_per_cor'" in msg
    assert "Did you mean 'neurons_per_core'?" in msg


def test_typo_in_fault_rates_suggests_the_right_one(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "core_failure = 1e-5", "core_failre = 1e-5")
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "[fault_rates]" in msg and "'core_failre'" in msg
    assert "Did you mean 'core_failure'?" in msg


def test_typo_in_confidence_table(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, 'max_fan_in = "unverified"', 'max_fanin = "unverified"')
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "[confidence]" in msg and "'max_fanin'" in msg and "'max_fan_in'" in msg


def test_unknown_confidence_level(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, 'max_fan_in = "unverified"', 'max_fan_in = "guess"')
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "'max_fan_in'" in msg and "'guess'" in msg
    for level in CONFIDENCE_LEVELS:
        assert level in msg


def test_missing_required_key(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "max_fan_in = 4096\n", "")
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    assert "missing required key 'max_fan_in'" in str(info.value)


def test_missing_fault_rate(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "weight_bit_flip = 1e-8\n", "")
    with pytest.raises(ProfileError, match=r"missing required key 'fault_rates\.weight_bit_flip'"):
        load_profile(_write(tmp_path, text))


def test_missing_fault_rates_table(tmp_path):
    data = tomllib.loads(_builtin_text("loihi2"))
    del data["fault_rates"]
    with pytest.raises(ProfileError, match=r"missing required key 'fault_rates'"):
        profile_from_dict(data, source="mine")


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_probability_out_of_range(tmp_path, loihi2_text, value):
    text = _replace_once(loihi2_text, "neuron_crash = 1e-4", f"neuron_crash = {value}")
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    msg = str(info.value)
    assert "fault_rates.neuron_crash" in msg
    assert "[0, 1]" in msg
    assert value in msg
    assert str(path) in msg


@pytest.mark.parametrize("value", ["nan", "inf", '"small"', "true"])
def test_probability_not_a_finite_number(tmp_path, loihi2_text, value):
    text = _replace_once(loihi2_text, "neuron_crash = 1e-4", f"neuron_crash = {value}")
    with pytest.raises(ProfileError, match=r"fault_rates\.neuron_crash must be a finite number"):
        load_profile(_write(tmp_path, text))


def test_probability_accepts_integer_zero(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "neuron_crash = 1e-4", "neuron_crash = 0")
    rates = load_profile(_write(tmp_path, text)).fault_rates
    assert rates.neuron_crash == 0.0 and isinstance(rates.neuron_crash, float)


def test_cores_per_chip_zero(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "cores_per_chip = 128", "cores_per_chip = 0")
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "cores_per_chip" in msg and ">= 1" in msg and "Got 0" in msg


@pytest.mark.parametrize("value", ['"128"', "128.0", "true"])
def test_cores_per_chip_not_an_integer(tmp_path, loihi2_text, value):
    text = _replace_once(loihi2_text, "cores_per_chip = 128", f"cores_per_chip = {value}")
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "cores_per_chip must be an integer" in msg


def test_weight_bits_above_32(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "weight_bits = 8", "weight_bits = 33")
    with pytest.raises(ProfileError, match=r"weight_bits must be \[2, 32\]\. Got 33"):
        load_profile(_write(tmp_path, text))


def test_weight_bits_below_2(tmp_path, loihi2_text):
    # A 1-bit two's complement word holds no positive integer: nothing to quantize onto.
    text = _replace_once(loihi2_text, "weight_bits = 8", "weight_bits = 1")
    with pytest.raises(ProfileError, match=r"weight_bits must be \[2, 32\]\. Got 1"):
        load_profile(_write(tmp_path, text))


def test_bool_flag_must_be_bool(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "mixed_sign_drop_lsb = true", "mixed_sign_drop_lsb = 1")
    with pytest.raises(ProfileError, match=r"mixed_sign_drop_lsb must be true or false"):
        load_profile(_write(tmp_path, text))


def test_unknown_architecture(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, 'architecture = "cores"', 'architecture = "mesh"')
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "architecture" in msg and "'cores'" in msg and "'crossbar'" in msg and "'mesh'" in msg


def test_crossbar_without_tile_size(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, 'architecture = "cores"', 'architecture = "crossbar"')
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    msg = str(info.value)
    assert "crossbar_rows" in msg and "crossbar_cols" in msg and "0 x 0" in msg


def test_crossbar_with_only_rows(tmp_path):
    text = _replace_once(_builtin_text("rram_crossbar"), "crossbar_cols = 128\n", "")
    with pytest.raises(ProfileError, match=r"crossbar profile needs crossbar_rows and crossbar_cols >= 1"):
        load_profile(_write(tmp_path, text))


def test_spares_must_leave_a_usable_core(tmp_path, loihi2_text):
    text = _replace_once(loihi2_text, "spare_cores_per_chip = 6", "spare_cores_per_chip = 128")
    with pytest.raises(ProfileError, match=r"spare_cores_per_chip \(128\).*cores_per_chip \(128\)"):
        load_profile(_write(tmp_path, text))


def test_invalid_toml(tmp_path):
    path = _write(tmp_path, 'name = "broken\ncores_per_chip = = 3\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    msg = str(info.value)
    assert str(path) in msg and "not valid TOML" in msg


def test_nonexistent_toml_path(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(NeurosimFileNotFoundError) as info:
        load_profile(path)
    assert isinstance(info.value, FileNotFoundError)
    assert str(path) in str(info.value)


def test_unknown_builtin_suggests_closest():
    with pytest.raises(ProfileError) as info:
        load_profile("loihi3")
    msg = str(info.value)
    assert "'loihi3'" in msg
    assert "Did you mean 'loihi2'?" in msg
    for name in BUILTINS:
        assert name in msg


def test_unknown_name_without_close_match():
    with pytest.raises(ProfileError) as info:
        load_profile("zzzz")
    assert "Did you mean" not in str(info.value)
    assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)


def test_profile_from_dict_minimal():
    profile = profile_from_dict({
        "name": "tiny", "description": "a test chip", "architecture": "cores",
        "cores_per_chip": 4, "neurons_per_core": 10, "max_fan_in": 16, "synapses_per_core": 100,
        "weight_bits": 4,
        "fault_rates": {"neuron_crash": 0.1, "synapse_stuck_at_zero": 0, "synapse_stuck_at_max": 0,
                        "weight_bit_flip": 0, "core_failure": 1},
    })
    assert profile.spare_cores_per_chip == 0 and not profile.mixed_sign_drop_lsb
    assert profile.fault_rates.core_failure == 1.0
    assert (profile.word_min, profile.word_max) == (-8, 7)
    assert profile.path == "<profile>"
