"""User methods from outside the package: a Python file (`--plugin`) or an installed entry point."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from bench.errors import BenchError

ENTRY_POINT_GROUP = "mergebench.methods"
log = logging.getLogger(__name__)


def load_plugin(path: Path) -> None:
    """Execute a Python file; the `MergeMethod` subclasses it defines register themselves."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--plugin {path}: no such file")
    # Named after the file's stem and its full path: loading one file again replaces its own classes, while a
    # file of the same name elsewhere defining a method name already taken is refused as a second definition.
    module_name = f"mergebench_plugin_{path.stem}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"--plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BenchError:
        raise
    except Exception as error:  # noqa: BLE001  (whatever a plugin raises becomes one line naming its file)
        raise BenchError(f"--plugin {path}: {type(error).__name__}: {error}") from None


def load_entry_points() -> None:
    """Import every module registered under the `mergebench.methods` entry-point group of installed packages."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # noqa: BLE001  (whatever a plugin raises becomes one line naming it)
            raise BenchError(f"entry point {entry_point.name} ({entry_point.value}): {type(error).__name__}: "
                             f"{error}") from None
        log.debug("loaded methods from entry point %s", entry_point.name)


def load_methods(plugins: list[Path]) -> None:
    """Register the built-in methods, those of installed entry points and those of the `--plugin` files."""
    import methods  # noqa: F401  (registers the built-in methods)

    load_entry_points()
    for plugin in plugins:
        load_plugin(plugin)
