"""One-way layers (docs/layout.md): a module imports from its own package and the packages below it, never from one
above it or beside it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each package's layer, lowest first: methods and tasks share one, so neither imports the other.
LAYERS = {"core": 0, "methods": 1, "tasks": 1, "bench": 2}


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the tree, in functions and `if TYPE_CHECKING:` blocks too; relative
    imports resolved against the module's `package`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[:len(parts) + 1 - node.level] if node.level else []
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module])))
            else:  # `from . import name`: the names are modules of the base package
                found += [(node.lineno, ".".join([*base, alias.name])) for alias in node.names]
    return found


def upward_imports(module: str, source: str) -> list[str]:
    """`module`'s imports of a package in a layer above its own or beside it, each as `module:line imports name`."""
    own = module.split(".")[0]
    package = module.removesuffix(".__init__") if module.endswith(".__init__") else module.rpartition(".")[0]
    wrong = []
    for line, name in imported_modules(ast.parse(source), package):
        top = name.split(".")[0]
        if top in LAYERS and top != own and LAYERS[top] >= LAYERS[own]:
            wrong.append(f"{module}:{line} imports {name}")
    return wrong


def package_modules() -> dict[str, Path]:
    return {".".join(path.relative_to(ROOT).with_suffix("").parts): path
            for package in LAYERS for path in sorted((ROOT / package).rglob("*.py"))}


def test_no_module_imports_from_a_layer_above_its_own_or_beside_it():
    modules = package_modules()
    assert {"core.pool", "methods.base", "tasks.suites", "bench.cli"} <= modules.keys()
    wrong = [found for module, path in modules.items() for found in upward_imports(module, path.read_text())]
    assert not wrong, "imports from a layer above or beside:\n" + "\n".join(wrong)


def test_every_top_level_package_has_a_layer():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == set(LAYERS)


def test_the_check_finds_imports_in_functions_and_type_checking_blocks_and_relative_ones():
    source = ("from typing import TYPE_CHECKING\nimport torch\nfrom core.pool import ModelPool\n"
              "from methods.base import MergeMethod\n\n"
              "if TYPE_CHECKING:\n    from tasks.base import Suite\n\n"
              "def run():\n    import bench.cli\n    from .. import tasks\n")
    assert upward_imports("methods.ties", source) == [
        "methods.ties:7 imports tasks.base", "methods.ties:10 imports bench.cli", "methods.ties:11 imports tasks"]
    assert upward_imports("core.pool", "def f():\n    from methods import base\n") == [
        "core.pool:2 imports methods"]
    assert upward_imports("bench.zoo.build", "from ...methods import base\nfrom core import errors\n") == []
