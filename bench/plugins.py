"""User methods from outside the package: a Python file (`--plugin`) or an installed entry point."""

from __future__ import annotations

import hashlib
import logging
import sys
import types
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from core.errors import BenchError

ENTRY_POINT_GROUP = "mergebench.methods"
log = logging.getLogger(__name__)


def load_plugin(path: Path) -> None:
    """Execute a Python file; the `MergeMethod` subclasses it defines register themselves."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--plugin {path}: no such file")
    load_plugin_source(PluginSource.of(path))


@dataclass(frozen=True)
class PluginSource:
    """A plugin file's text and the module name it is loaded as, so that a process without the file (a Ray worker
    on another node) defines the same classes under the same module: the methods pickled here unpickle there."""

    path: str  # as given, for messages and tracebacks
    module: str
    source: bytes

    @classmethod
    def of(cls, path: Path) -> PluginSource:
        # Named after the file's stem and its full path: loading one file again replaces its own classes, while a
        # file of the same name elsewhere defining a method name already taken is refused as a second definition.
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return cls(str(path), f"mergebench_plugin_{path.stem}_{digest}", path.read_bytes())


def load_plugin_source(plugin: PluginSource) -> None:
    """Execute a plugin's text as its module (see `PluginSource`)."""
    module = types.ModuleType(plugin.module)
    module.__file__ = plugin.path
    sys.modules[plugin.module] = module  # before executing it: dataclasses look their module up
    try:
        exec(compile(plugin.source, plugin.path, "exec"), module.__dict__)  # noqa: S102  (running the plugin is its loading)
    except BenchError:
        raise
    except Exception as error:  # noqa: BLE001  (whatever a plugin raises becomes one line naming its file)
        raise BenchError(f"--plugin {plugin.path}: {type(error).__name__}: {error}") from None


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
