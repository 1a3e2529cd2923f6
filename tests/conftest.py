import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated task data goes to a per-session folder, never the user's cache."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["MERGEBENCH_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory, data_cache: Path) -> Path:
    """A zoo from the tests' tiny recipe: the real build code, seconds on a CPU."""
    from bench.zoo.build import build_zoo
    from bench.zoo.recipe import ZooRecipe

    zoo = tmp_path_factory.mktemp("zoo") / "tiny"
    build_zoo(ZooRecipe().tiny(), zoo)
    return zoo


def _shipped_files() -> dict[str, tuple[int, int]]:
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns)
            for folder in ("results", "reports", "zoo") for path in (ROOT / folder).rglob("*") if path.is_file()}


@pytest.fixture(scope="session", autouse=True)
def shipped_run_untouched():
    """No test may write into the shipped reference run or zoo (a `run` without --results/--reports would)."""
    before = _shipped_files()
    yield
    changed = sorted(set(before.items()) ^ set(_shipped_files().items()))
    assert not changed, f"tests changed shipped files: {sorted({name for name, _ in changed})[:5]}"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tests run single-threaded, so `run --jobs auto` (the default) stays in the test's own process: spawning
    workers would cost more than the tiny models' work. Tests of worker processes ask for them (--jobs 2)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def method_registry(request: pytest.FixtureRequest):
    """Each test sees the built-in methods and those its own module defines; the methods it registers (plugins,
    classes defined in the test) are dropped after it."""
    from helpers import is_built_in, registry_restored

    own_module = request.module.__name__
    with registry_restored(lambda method: is_built_in(method) or method.__module__ == own_module):
        yield
