"""Where the shipped zoo lives: the source tree's zoo/mini-v2, or the copy a `pip install .` put under its data
prefix (pyproject.toml's data-files), found through the files the install recorded. zoo/mini-v1, the 8-task zoo
the suite shipped first, stays beside it for `--zoo zoo/mini-v1`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

SHIPPED_NAME = "mini-v2"
SOURCE_ZOOS = Path(__file__).resolve().parents[1] / "zoo"  # one folder per recipe name (bench/zoo/recipe.py)
SOURCE_ZOO = SOURCE_ZOOS / SHIPPED_NAME
# The data-files target in pyproject.toml, relative to the install's data prefix.
INSTALLED_MANIFEST = f"share/mergebench/zoo/{SHIPPED_NAME}/manifest.json"


def installed_zoo() -> Path | None:
    """The zoo folder the installed distribution recorded, or None where it recorded none."""
    try:
        files = distribution("mergebench").files or []
    except PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix().endswith(INSTALLED_MANIFEST):
            return Path(file.locate()).resolve().parent
    return None


def shipped_zoo() -> Path:
    """The source tree's zoo where this code runs from a checkout (editable installs too), else the installed copy;
    the source path where neither exists, so that errors name the folder the docs name."""
    if (SOURCE_ZOO / "manifest.json").is_file():
        return SOURCE_ZOO
    return installed_zoo() or SOURCE_ZOO
