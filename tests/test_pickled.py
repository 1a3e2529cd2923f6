"""Weights out of modules pickled whole, without running the code the pickle names."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.pickled import load_module_state

MODULE = '''
import torch

class Encoder(torch.nn.Module):
    """Stands in for task-vectors' ImageEncoder: a module tree, a non-persistent buffer, a plain attribute."""
    def __init__(self):
        super().__init__()
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
        self.register_buffer("counts", torch.arange(3.0))
        self.register_buffer("scratch", torch.ones(2), persistent=False)
        self.preprocess = {"size": 224, "mean": (0.48, 0.46, 0.41)}
'''


@pytest.fixture
def pickled_encoder(tmp_path, monkeypatch) -> tuple[Path, dict[str, torch.Tensor]]:
    """A module pickled whole by a class whose code is gone by the time it is read."""
    (tmp_path / "gone_package.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_package

    torch.manual_seed(0)
    encoder = gone_package.Encoder()
    torch.save(encoder, tmp_path / "finetuned.pt")
    (tmp_path / "gone_package.py").unlink()
    del sys.modules["gone_package"]
    return tmp_path / "finetuned.pt", encoder.state_dict()


def test_a_module_pickled_whole_gives_its_state_dict_without_its_code(pickled_encoder):
    path, expected = pickled_encoder
    with pytest.raises(pickle.UnpicklingError):  # neither the safe loader nor plain unpickling can read it
        torch.load(path, weights_only=True)
    with pytest.raises(ModuleNotFoundError):
        torch.load(path, weights_only=False)
    state = load_module_state(path)
    assert list(state) == list(expected) == ["counts", "model.0.weight", "model.0.bias", "model.1.weight", "model.1.bias"]
    assert all(torch.equal(state[name], expected[name]) for name in expected)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_a_pickle_names_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"weights": torch.ones(2), "hook": Payload(marker)}, tmp_path / "evil.pt")
    pickle.loads(pickle.dumps(Payload(marker)))  # the check can fail: plain unpickling does run it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(BenchError, match="evil.pt: holds no module weights"):
        load_module_state(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(BenchError, match="notes.pt: not a readable torch checkpoint"):
        load_module_state(tmp_path / "notes.pt")
