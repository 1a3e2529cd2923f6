"""The zoo build writes a verifiable manifest; edited or missing files are refused by name."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.zoo.recipe import ZooRecipe
from core.errors import BenchError
from tasks.zoo_manifest import verify_zoo


def test_manifest_lists_every_file_with_its_hash_and_the_recipe(tiny_zoo):
    manifest = verify_zoo(tiny_zoo)
    assert manifest["recipe_hash"] == ZooRecipe().tiny().digest()
    assert set(manifest["files"]) == {"pretrained.safetensors", "heads.safetensors"} | {
        f"experts/{task}.safetensors" for task in ZooRecipe().tiny().tasks}
    assert set(manifest["accuracy"]) == {"pretrained", "expert"}
    assert manifest["timings_s"]["total_s"] > 0


def test_an_edited_zoo_file_is_refused_by_name(tiny_zoo, tmp_path):
    zoo = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    with open(zoo / "experts" / "signs.safetensors", "r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x01")
    with pytest.raises(BenchError, match=r"experts/signs\.safetensors: sha256 does not match manifest\.json"):
        verify_zoo(zoo)


def test_a_missing_zoo_file_is_refused_by_name(tiny_zoo, tmp_path):
    zoo = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    (zoo / "heads.safetensors").unlink()
    with pytest.raises(BenchError, match=r"heads\.safetensors: listed in manifest\.json but missing"):
        verify_zoo(zoo)


def test_a_weight_file_the_manifest_does_not_list_is_refused_by_name(tiny_zoo, tmp_path):
    zoo = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    manifest = json.loads((zoo / "manifest.json").read_text())
    del manifest["files"]["experts/signs.safetensors"]  # taken off the list, then edited: no longer verified
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BenchError, match=r"experts/signs\.safetensors: not listed in manifest\.json"):
        verify_zoo(zoo)


def test_a_recipe_edited_after_the_build_is_refused(tiny_zoo, tmp_path):
    zoo = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["recipe"]["logit_scale"] = 50.0
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BenchError, match="manifest.json: the recipe does not match its recipe_hash"):
        verify_zoo(zoo)


@pytest.mark.parametrize("key", ["files", "recipe", "recipe_hash", "data_fingerprint"])
def test_a_manifest_without_a_required_key_is_refused_naming_the_key(tiny_zoo, tmp_path, key):
    zoo = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    manifest = json.loads((zoo / "manifest.json").read_text())
    del manifest[key]
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BenchError, match=f"manifest.json: key '{key}' is missing"):
        verify_zoo(zoo)


def test_zoos_share_a_family_only_when_they_hold_the_same_bytes(tiny_zoo, tmp_path):
    from safetensors.torch import load_file, save_file

    from core.digest import sha256_file
    from tasks.zoo_manifest import zoo_family

    same = shutil.copytree(tiny_zoo, tmp_path / "same")
    assert zoo_family(verify_zoo(same)) == zoo_family(verify_zoo(tiny_zoo))
    other = shutil.copytree(tiny_zoo, tmp_path / "other")  # a rebuild of the same recipe whose weights came out other
    expert = other / "experts" / "signs.safetensors"
    save_file({name: tensor * 1.001 for name, tensor in load_file(str(expert)).items()}, str(expert))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["files"]["experts/signs.safetensors"] = sha256_file(expert)
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert verify_zoo(other)["recipe_hash"] == verify_zoo(tiny_zoo)["recipe_hash"]
    assert zoo_family(verify_zoo(other)) != zoo_family(verify_zoo(tiny_zoo))


def test_a_folder_without_manifest_says_how_to_build_one(tmp_path):
    with pytest.raises(BenchError, match="no zoo manifest here; build one with `python -m bench zoo build`"):
        verify_zoo(tmp_path)


def test_rebuilding_from_the_recipe_gives_the_same_weights(tiny_zoo, tmp_path):
    from bench.zoo.build import build_zoo

    rebuilt = build_zoo(ZooRecipe().tiny(), tmp_path / "again")
    original = json.loads((tiny_zoo / "manifest.json").read_text())
    assert rebuilt["files"] == original["files"]
    assert rebuilt["accuracy"] == original["accuracy"]


def test_reusing_a_zoos_pretrained_model_trains_the_same_experts_as_a_full_build(tiny_zoo, tmp_path):
    from bench.zoo.build import build_zoo

    reused = build_zoo(ZooRecipe().tiny(), tmp_path / "reused", pretrained_from=tiny_zoo)
    original = verify_zoo(tiny_zoo)
    assert reused["files"] == original["files"]
    assert reused["pretrained_from"] == original["recipe_hash"] and "pretrained_from" not in original
    assert "pretrain_s" not in reused["timings_s"]


def test_another_fine_tuning_schedule_on_a_reused_pretrained_model_changes_only_the_experts(tiny_zoo, tmp_path):
    from bench.cli import main

    assert main(["zoo", "build", "--tiny", "--recipe", "mini-v1", "--out", str(tmp_path / "longer"),
                 "--pretrained-from", str(tiny_zoo),
                 "--finetune", "steps=30", "--finetune", "lr=1e-4"]) == 0
    longer, original = verify_zoo(tmp_path / "longer"), verify_zoo(tiny_zoo)
    assert longer["recipe"]["finetune"] | {"steps": 15, "lr": 3e-4} == original["recipe"]["finetune"]
    assert longer["recipe_hash"] != original["recipe_hash"]
    changed = {name for name, digest in longer["files"].items() if original["files"][name] != digest}
    assert changed == {f"experts/{task}.safetensors" for task in ZooRecipe().tiny().tasks}


def test_a_pretrained_model_of_another_recipe_is_refused_naming_the_difference(tiny_zoo, tmp_path, capsys):
    from bench.cli import main

    assert main(["zoo", "build", "--tiny", "--recipe", "mini-v1", "--seed", "1", "--out", str(tmp_path / "z"),
                 "--pretrained-from", str(tiny_zoo)]) == 2
    assert "manifest.json: recipe seed is 0, this build's is 1" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("argument, message", [
    ("stepz=3", "--finetune stepz=3: unknown key; valid: steps, batch_size, lr, weight_decay, warmup_fraction"),
    ("lr=fast", "--finetune lr=fast: not a valid float"),
    ("steps=0", "--finetune steps=0: must be > 0"),
    ("steps", "--finetune 'steps': expected KEY=VALUE"),
])
def test_a_bad_fine_tuning_override_exits_2_naming_it(tmp_path, capsys, argument, message):
    from bench.cli import main

    assert main(["zoo", "build", "--tiny", "--recipe", "mini-v1", "--out", str(tmp_path / "z"),
                 "--finetune", argument]) == 2
    assert message in capsys.readouterr().err


def test_a_changed_recipe_is_not_written_over_the_shipped_zoo(capsys, monkeypatch):
    import bench.zoo.build
    from bench.cli import main

    def build_over_the_shipped_zoo(*args, **kwargs):
        raise AssertionError("the build was started")

    monkeypatch.setattr(bench.zoo.build, "build_zoo", build_over_the_shipped_zoo)
    assert main(["zoo", "build", "--finetune", "steps=1000"]) == 2
    assert "--finetune changes the recipe: give --out" in capsys.readouterr().err


def test_a_zoo_built_before_the_class_embeddings_field_reuses_as_the_per_task_scheme_it_was_built_with(
        tiny_zoo, tmp_path, capsys):
    from bench.cli import main
    from tasks.zoo_manifest import recipe_digest

    older = shutil.copytree(tiny_zoo, tmp_path / "older")
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["recipe"]["class_embeddings"]
    manifest["recipe_hash"] = recipe_digest(manifest["recipe"])
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert main(["zoo", "build", "--tiny", "--recipe", "mini-v1", "--out", str(tmp_path / "same"),
                 "--pretrained-from", str(older)]) == 0
    assert main(["zoo", "build", "--tiny", "--recipe", "mini-v2", "--out", str(tmp_path / "v2"),
                 "--pretrained-from", str(older)]) == 2
    assert "recipe class_embeddings is 'per-task', this build's is 'by-name'" in capsys.readouterr().err
