"""Registration by subclassing, typed hyper-parameters, presets and labels."""

from __future__ import annotations

from typing import Literal

import pytest

from bench.errors import BenchError
from methods.base import REGISTRY, MergeMethod, get_method


class ScaledAverage(MergeMethod):
    """A test method with typed parameters."""

    name = "test_scaled_average"
    title = "Scaled Average"
    presets = {"half": {"scale": 0.5}}
    scale: float = 1.0
    steps: int = 3
    mode: Literal["a", "b"] = "a"
    flag: bool = False


def test_a_subclass_with_a_name_registers_itself():
    assert REGISTRY["test_scaled_average"] is ScaledAverage
    assert get_method("test_scaled_average") is ScaledAverage


def test_unknown_method_error_lists_the_valid_names():
    with pytest.raises(BenchError, match="unknown method 'nope'; valid: .*task_arithmetic"):
        get_method("nope")


def test_overrides_are_parsed_by_field_type():
    method = ScaledAverage.configure(overrides={"scale": "0.25", "steps": "7", "mode": "b", "flag": "true"})
    assert (method.scale, method.steps, method.mode, method.flag) == (0.25, 7, "b", True)


@pytest.mark.parametrize("key, value, message", [
    ("scale", "abc", "scale='abc' is not a valid float"),
    ("mode", "c", "mode='c' is not one of a, b"),
    ("flag", "maybe", "flag='maybe' is not a valid bool"),
    ("missing", "1", "unknown parameter 'missing'; valid: scale, steps, mode, flag"),
])
def test_bad_overrides_name_the_parameter(key, value, message):
    with pytest.raises(BenchError, match=message):
        ScaledAverage.configure(overrides={key: value})


def test_presets_apply_and_unknown_presets_are_refused():
    assert ScaledAverage.configure("half").scale == 0.5
    with pytest.raises(BenchError, match="unknown preset 'full'; valid: default, half"):
        ScaledAverage.configure("full")


def test_label_names_preset_and_changed_settings_only():
    assert ScaledAverage().label() == "Scaled Average"
    assert ScaledAverage.configure("half").label() == "Scaled Average (half)"
    assert ScaledAverage.configure("half", {"steps": "5"}).label() == "Scaled Average (half, steps=5)"


def test_a_second_class_under_a_taken_name_is_refused():
    with pytest.raises(BenchError, match="registered twice"):
        type("Impostor", (MergeMethod,), {"name": "task_arithmetic", "__module__": "somewhere"})


def test_installed_packages_register_methods_through_entry_points(monkeypatch):
    import bench.plugins

    class FakeEntryPoint:
        name, value = "fake", "fake_package.methods"

        def load(self):
            return type("EntryPointMethod", (MergeMethod,), {"name": "test_from_entry_point", "__module__": "fake"})

    monkeypatch.setattr(bench.plugins, "entry_points", lambda group: [FakeEntryPoint()] if group == "mergebench.methods" else [])
    bench.plugins.load_entry_points()
    assert "test_from_entry_point" in REGISTRY
