"""The zoo build writes a verifiable manifest; edited or missing files are refused by name."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.errors import BenchError
from bench.zoo.manifest import verify_zoo
from bench.zoo.recipe import ZooRecipe


def test_manifest_lists_every_file_with_its_hash_and_the_recipe(tiny_zoo):
    manifest = verify_zoo(tiny_zoo)
    assert manifest["recipe_hash"] == ZooRecipe.tiny().digest()
    assert set(manifest["files"]) == {"pretrained.safetensors", "heads.safetensors"} | {
        f"experts/{task}.safetensors" for task in ZooRecipe.tiny().tasks}
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


def test_a_folder_without_manifest_says_how_to_build_one(tmp_path):
    with pytest.raises(BenchError, match="no zoo manifest here; build one with `python -m bench zoo build`"):
        verify_zoo(tmp_path)


def test_rebuilding_from_the_recipe_gives_the_same_weights(tiny_zoo, tmp_path):
    from bench.zoo.build import build_zoo

    rebuilt = build_zoo(ZooRecipe.tiny(), tmp_path / "again")
    original = json.loads((tiny_zoo / "manifest.json").read_text())
    assert rebuilt["files"] == original["files"]
    assert rebuilt["accuracy"] == original["accuracy"]
