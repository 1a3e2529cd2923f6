"""The zoo's manifest: recipe, hash of every file, accuracies and timings; and the check that guards loading."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from core.digest import sha256_file, weights_digest
from core.errors import BenchError

MANIFEST = "manifest.json"
# What every manifest holds, with its type: checked before any key is used.
REQUIRED = {"recipe": dict, "recipe_hash": str, "data_fingerprint": str, "files": dict}


def recipe_digest(recipe: Mapping) -> str:
    """The hash of a zoo recipe (`bench.zoo.recipe.ZooRecipe.to_dict()`), or of the JSON a manifest stores of it."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def write_manifest(zoo_dir: Path, recipe: Mapping, data_fingerprint: str, accuracies: dict[str, dict[str, float]],
                   pretrain_loss: float, timings: dict[str, float], machine: dict,
                   pretrained_from: str | None = None) -> dict:
    """Write and return the manifest of the recipe (as a dict) built on the task data of `data_fingerprint`;
    `pretrained_from` is the recipe hash of the zoo whose pretrained model and heads were reused, if any."""
    files = sorted(p for p in zoo_dir.rglob("*.safetensors"))
    manifest = {
        "format": 1,
        "recipe": dict(recipe),
        "recipe_hash": recipe_digest(recipe),
        "data_fingerprint": data_fingerprint,
        "files": {str(p.relative_to(zoo_dir)): sha256_file(p) for p in files},
        "accuracy": {kind: {task: round(acc, 4) for task, acc in per_task.items()}
                     | {"mean": round(sum(per_task.values()) / len(per_task), 4)}
                     for kind, per_task in accuracies.items()},
        "pretrain_final_loss": round(pretrain_loss, 4),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "machine": machine,
    }
    if pretrained_from is not None:
        manifest["pretrained_from"] = pretrained_from
    (zoo_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(zoo_dir: Path) -> dict:
    path = zoo_dir / MANIFEST
    if not path.is_file():
        raise BenchError(f"{path}: no zoo manifest here; build one with `python -m bench zoo build`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise BenchError(f"{path}: expected a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise BenchError(f"{path}: key {key!r} is missing or not a JSON {kind.__name__}")
    return manifest


def verify_zoo(zoo_dir: Path) -> dict:
    """The manifest, once every weight file in the folder is one it lists with a matching sha256 and its recipe
    is the one its hash names; a missing, edited or unlisted file, or an edited recipe, is named."""
    manifest = read_manifest(zoo_dir)
    if recipe_digest(manifest["recipe"]) != manifest["recipe_hash"]:
        raise BenchError(f"{zoo_dir / MANIFEST}: the recipe does not match its recipe_hash (edited after the build); "
                         f"rebuild the zoo with `python -m bench zoo build --out {zoo_dir}`")
    for path in sorted(zoo_dir.rglob("*.safetensors")):
        if str(path.relative_to(zoo_dir)) not in manifest["files"]:
            raise BenchError(f"{path}: not listed in {MANIFEST}; a zoo holds only the files it was built with")
    for name, expected in manifest["files"].items():
        path = zoo_dir / name
        if not path.is_file():
            raise BenchError(f"{path}: listed in {MANIFEST} but missing")
        if sha256_file(path) != expected:
            raise BenchError(f"{path}: sha256 does not match {MANIFEST}; the file was edited or corrupted")
    return manifest


def zoo_family(manifest: dict) -> str:
    """The weights family of a verified zoo's results: a digest of its recipe, task data and every file's hash,
    so that two zoos share stored units only when they hold the same bytes."""
    return "mini-zoo:" + weights_digest(manifest["files"] | {"recipe": manifest["recipe_hash"],
                                                             "data": manifest["data_fingerprint"]})
