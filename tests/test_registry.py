"""Registration by subclassing, typed hyper-parameters and their ranges, presets and labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from helpers import built_in_methods, is_built_in, registry_restored

from bench.cli import main
from bench.plugins import load_plugin
from core.errors import BenchError
from methods.adamerging import LayerwiseAdaMerging, TaskwiseAdaMergingPlus
from methods.averaging import TaskArithmetic
from methods.base import REGISTRY, MergeMethod, get_method, setting
from methods.ties import TiesMerging
from methods.wemoe import WEMoE

ROOT = Path(__file__).resolve().parents[1]


class ScaledAverage(MergeMethod):
    """A test method with typed parameters."""

    name = "test_scaled_average"
    title = "Scaled Average"
    presets = {"half": {"scale": 0.5}, "broken": {"steps": 0}}
    scale: float = 1.0
    steps: int = setting(3, low=1)
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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_a_float_setting_must_be_finite_without_a_declared_range(value):
    with pytest.raises(BenchError, match=r"^test_scaled_average: scale=-?(nan|inf) is not a finite number$"):
        ScaledAverage.configure(overrides={"scale": value})


@pytest.mark.parametrize("method, overrides, message", [
    (TiesMerging, {"keep": "2"}, "ties_merging: keep=2.0 is out of range [0, 1]"),
    (TiesMerging, {"keep": "-0.5"}, "ties_merging: keep=-0.5 is out of range [0, 1]"),
    (TaskwiseAdaMergingPlus, {"keep": "1.5"}, "adamerging_plus_taskwise: keep=1.5 is out of range [0, 1]"),
    (LayerwiseAdaMerging, {"steps": "-3"}, "adamerging_layerwise: steps=-3 is out of range [0, inf)"),
    (LayerwiseAdaMerging, {"batches_per_step": "0"},
     "adamerging_layerwise: batches_per_step=0 is out of range [1, inf)"),
    (WEMoE, {"lr": "0"}, "wemoe: lr=0.0 is out of range (0, inf)"),
    (WEMoE, {"batch_size": "0"}, "wemoe: batch_size=0 is out of range [1, inf)"),
    (get_method("fisher_merging"), {"examples": "0"}, "fisher_merging: examples=0 is out of range [1, inf)"),
    (get_method("fisher_merging"), {"floor": "0"}, "fisher_merging: floor=0.0 is out of range (0, inf)"),
])
def test_settings_outside_their_declared_range_are_refused_naming_method_key_and_range(method, overrides, message):
    with pytest.raises(BenchError) as error:
        method.configure(overrides=overrides)
    assert str(error.value) == message


def test_ranges_hold_for_direct_construction_and_for_subclasses_that_change_the_default():
    with pytest.raises(BenchError, match=r"ties_merging: keep=2.0 is out of range \[0, 1\]"):
        TiesMerging(keep=2.0)
    with pytest.raises(BenchError, match=r"wemoe: lr=-0.1 is out of range \(0, inf\)"):  # WEMoE re-declares lr
        WEMoE(lr=-0.1)
    with pytest.raises(BenchError, match=r"task_arithmetic: scaling=nan is not a finite number"):
        TaskArithmetic(scaling=float("nan"))
    with pytest.raises(BenchError, match=r"ties_merging: disjoint='meen' is not one of sum, mean"):
        TiesMerging(disjoint="meen")
    with pytest.raises(BenchError, match=r"test_scaled_average: steps=2.5 is not a valid int"):
        ScaledAverage(steps=2.5)


def test_every_built_in_method_s_defaults_and_presets_lie_in_their_ranges():
    for cls in built_in_methods().values():
        for preset in ["default", *cls.presets]:
            cls.configure(preset)


def test_presets_apply_and_unknown_presets_are_refused():
    assert ScaledAverage.configure("half").scale == 0.5
    with pytest.raises(BenchError, match="unknown preset 'full'; valid: default, half, broken"):
        ScaledAverage.configure("full")


def test_a_preset_with_a_value_out_of_range_is_refused():
    with pytest.raises(BenchError, match=r"test_scaled_average: steps=0 is out of range \[1, inf\)"):
        ScaledAverage.configure("broken")


def test_label_names_preset_and_changed_settings_only():
    assert ScaledAverage().label() == "Scaled Average"
    assert ScaledAverage.configure("half").label() == "Scaled Average (half)"
    assert ScaledAverage.configure("half", {"steps": "5"}).label() == "Scaled Average (half, steps=5)"


def test_a_second_class_under_a_taken_name_is_refused():
    with pytest.raises(BenchError, match="registered twice"):
        type("Impostor", (MergeMethod,), {"name": "task_arithmetic", "__module__": "somewhere"})


def test_a_class_of_a_built_in_s_class_name_from_another_module_is_refused_naming_both_modules():
    with pytest.raises(BenchError, match=r"^method name 'task_arithmetic' is registered twice \(TaskArithmetic in "
                       r".*methods/averaging\.py and somewhere\.TaskArithmetic\)$"):
        type("TaskArithmetic", (MergeMethod,), {"name": "task_arithmetic", "__module__": "somewhere"})
    assert REGISTRY["task_arithmetic"] is TaskArithmetic


def test_a_plugin_file_loaded_twice_registers_its_method_again():
    for _ in range(2):
        load_plugin(ROOT / "examples" / "median_merging.py")
    assert REGISTRY["median"].__module__.startswith("mergebench_plugin_median_merging_")


def test_a_plugin_file_of_the_same_name_in_another_folder_cannot_take_a_registered_method_name(tmp_path):
    load_plugin(ROOT / "examples" / "median_merging.py")
    (tmp_path / "median_merging.py").write_text((ROOT / "examples" / "median_merging.py").read_text())
    with pytest.raises(BenchError) as refused:
        load_plugin(tmp_path / "median_merging.py")
    assert str(refused.value) == (f"method name 'median' is registered twice (MedianMerging in "
                                  f"{ROOT / 'examples' / 'median_merging.py'} and MedianMerging in "
                                  f"{tmp_path / 'median_merging.py'})")


def test_installed_packages_register_methods_through_entry_points(monkeypatch):
    import bench.plugins

    class FakeEntryPoint:
        name, value = "fake", "fake_package.methods"

        def load(self):
            return type("EntryPointMethod", (MergeMethod,), {"name": "test_from_entry_point", "__module__": "fake"})

    monkeypatch.setattr(bench.plugins, "entry_points",
                        lambda group: [FakeEntryPoint()] if group == "mergebench.methods" else [])
    bench.plugins.load_entry_points()
    assert "test_from_entry_point" in REGISTRY


UNANNOTATED = '''
from methods import MergeMethod


class HalfArithmetic(MergeMethod):
    name = "test_half_arithmetic"
    title = "Half Arithmetic"
    scaling = 0.5

    def merge(self, pool):
        return pool.encoder(pool.pretrained_state())
'''


def test_a_plugin_setting_without_a_type_annotation_is_refused_naming_file_class_and_attribute(tmp_path, capsys):
    plugin = tmp_path / "half.py"
    plugin.write_text(UNANNOTATED)
    assert main(["list", "methods", "--plugin", str(plugin)]) == 2
    assert capsys.readouterr().err.splitlines() == [(
        f"error: HalfArithmetic in {plugin}: `scaling = 0.5` has no type annotation, so it is not a setting and not "
        f"in the result key; write `scaling: float = 0.5` for a setting, or `scaling: ClassVar[float] = 0.5` for a "
        f"constant")]
    assert "test_half_arithmetic" not in REGISTRY


def test_an_unannotated_new_default_of_an_inherited_setting_is_refused():
    with pytest.raises(BenchError, match=r"^somewhere\.Stronger: `scaling = 0\.5` has no type annotation"):
        type("Stronger", (TaskArithmetic,), {"scaling": 0.5, "__module__": "somewhere"})


def test_class_constants_methods_and_private_names_need_no_annotation():
    class Constants(MergeMethod):
        name = "test_constants"  # name, title, reference and presets: ClassVars of MergeMethod
        title = "Constants"
        reference = "https://example.org"
        presets = {"strong": {"scaling": 2.0}}
        limit: ClassVar[int] = 3
        scaling: float = 1.0
        _cache = {}

        def merge(self, pool):
            return pool.encoder(pool.pretrained_state())

        @property
        def doubled(self) -> float:
            return 2 * self.scaling

    class Stricter(Constants):
        limit = 2  # a ClassVar of a base: a new value, no annotation needed
        name = "test_stricter"

    assert [f.name for f in dataclasses.fields(Stricter)] == ["preset", "scaling"]
    assert Stricter.configure("strong").scaling == 2.0 and Stricter.limit == 2


def test_methods_registered_within_registry_restored_are_unknown_after_it():
    before = dict(REGISTRY)
    with registry_restored():
        type("Temporary", (MergeMethod,), {"name": "test_temporary", "__module__": "somewhere"})
        assert "test_temporary" in REGISTRY
    assert REGISTRY == before


def test_each_test_sees_the_built_in_methods_and_its_own_module_s_only():
    assert "median" not in REGISTRY  # loaded by earlier tests of this module, dropped after each
    assert REGISTRY["test_scaled_average"] is ScaledAverage
    assert all(is_built_in(method) or method.__module__ == __name__
               for method in REGISTRY.values())
