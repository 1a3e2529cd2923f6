"""The zoo's manifest: recipe, hash of every file, accuracies and timings; and the check that guards loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.errors import BenchError
from bench.zoo.recipe import ZooRecipe

MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(zoo_dir: Path, recipe: ZooRecipe, accuracies: dict[str, dict[str, float]], pretrain_loss: float,
                   timings: dict[str, float], machine: dict, pretrained_from: str | None = None) -> dict:
    """Write and return the manifest; `pretrained_from` is the recipe hash of the zoo whose pretrained model
    and heads were reused, if any."""
    files = sorted(p for p in zoo_dir.rglob("*.safetensors"))
    manifest = {
        "format": 1,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.digest(),
        "data_fingerprint": recipe.data.fingerprint(),
        "files": {str(p.relative_to(zoo_dir)): sha256(p) for p in files},
        "accuracy": {kind: {task: round(acc, 4) for task, acc in per_task.items()} | {"mean": round(sum(per_task.values()) / len(per_task), 4)}
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
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}: not valid JSON ({error})") from None


def verify_zoo(zoo_dir: Path) -> dict:
    """The manifest, once every file it lists matches its sha256; a missing or edited file is named."""
    manifest = read_manifest(zoo_dir)
    for name, expected in manifest["files"].items():
        path = zoo_dir / name
        if not path.is_file():
            raise BenchError(f"{path}: listed in {MANIFEST} but missing")
        if sha256(path) != expected:
            raise BenchError(f"{path}: sha256 does not match {MANIFEST}; the file was edited or corrupted")
    return manifest
