"""A non-editable install runs the benchmark from any folder with the zoo it ships (pyproject.toml's data-files)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a source distribution of the project holds: the packages, the zoo and the files pyproject.toml names.
SHIPPED_FILES = ["pyproject.toml", "README.md"]
SHIPPED_FOLDERS = ["bench", "core", "methods", "tasks", "zoo/mini-v1", "zoo/mini-v2"]


def installs_of_mergebench() -> list[str]:
    return [str(dist.locate_file("")) for dist in importlib.metadata.distributions(name="mergebench")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """`pip install .` of a copy of the source (so the checkout gets no build folder) into a fresh prefix; the
    dependencies are this interpreter's, so it installs offline and in seconds. --ignore-installed: without it pip
    uninstalls this environment's own mergebench (an editable install, say) before installing into the prefix."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building without isolation needs setuptools in this environment")
    base = tmp_path_factory.mktemp("install")
    source, prefix = base / "source", base / "prefix"
    for folder in SHIPPED_FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in SHIPPED_FILES:
        shutil.copy(ROOT / file, source / file)
    own_installs = installs_of_mergebench()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--ignore-installed", "--prefix", str(prefix), str(source)], check=True)
    assert installs_of_mergebench() == own_installs, "pip removed this environment's own mergebench"
    site_packages = sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})["purelib"]
    shutil.rmtree(source)  # nothing may come from the source tree
    return prefix, {**os.environ, "PYTHONPATH": site_packages}


def test_installed_package_finds_the_zoo_the_install_recorded_not_a_source_tree(installed, tmp_path):
    prefix, env = installed
    script = "import bench, tasks.suites; print(bench.__file__); print(tasks.suites.SHIPPED_ZOO)"
    found = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert [Path(path).is_relative_to(prefix) for path in found] == [True, True]
    assert (Path(found[1]) / "manifest.json").is_file()


def test_installed_package_runs_task_arithmetic_on_the_shipped_zoo_from_another_folder(installed, tmp_path):
    _, env = installed
    subprocess.run([sys.executable, "-m", "bench", "run", "--method", "task_arithmetic", "--scenario", "multitask",
                    "--results", "results", "--reports", "reports"], cwd=tmp_path, env=env, capture_output=True,
                   check=True)
    assert (tmp_path / "reports" / "index.md").is_file()
    assert list((tmp_path / "results").rglob("*.parquet"))
