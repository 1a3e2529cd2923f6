"""Weights out of modules pickled whole, without running the code the pickle names."""

from __future__ import annotations

import os
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from core.errors import BenchError
from tasks import pickled
from tasks.pickled import load_module_state

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
    assert list(state) == list(expected) == ["counts", "model.0.weight", "model.0.bias", "model.1.weight",
                                             "model.1.bias"]
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


class Node:
    """A module as a pickle shows it (its class's code is never run on reading): the three dicts of module state."""

    def __init__(self, parameters: dict | None = None, buffers: dict | None = None, modules: dict | None = None):
        self._parameters, self._buffers, self._modules = parameters or {}, buffers or {}, modules or {}


class Reduce:
    """Pickles as a call of `function` on `arguments`: how a crafted file feeds junk to whatever it names."""

    def __init__(self, function, *arguments) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def saved(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def archive(path: Path, data_pickle: bytes) -> Path:
    """A torch zip checkpoint around a hand-assembled pickle (opcodes no object's pickling would write)."""
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("archive/data.pkl", data_pickle)
        zipped.writestr("archive/version", "3\n")
        zipped.writestr("archive/byteorder", "little")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(BenchError) as refused:
        load_module_state(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def repeated_tree(levels: int, leaf: Node) -> Node:
    """One module reused under two names at every level: a few KB of pickle, 2**levels paths to the leaf."""
    for _ in range(levels):
        leaf = Node(modules={"a": leaf, "b": leaf})
    return leaf


@pytest.mark.parametrize("leaf, bound", [
    (Node(), f"more than {pickled.MAX_TREE_SIZE} modules and tensors"),
    (Node({"weight": torch.ones(2)}), f"total over {pickled.MAX_STATE_BYTES_PER_FILE_BYTE}x the file's"),
], ids=["modules-only", "with-a-tensor"])
def test_a_module_reused_at_each_of_40_levels_is_refused_by_a_bound_on_its_unfolding(tmp_path, leaf, bound):
    path = saved(tmp_path / "repeated.pt", repeated_tree(40, leaf))
    assert path.stat().st_size < 4096
    assert bound in refusal(path)


def test_a_submodule_shared_under_two_names_is_listed_under_both_as_state_dict_does(tmp_path):
    shared = torch.nn.Linear(3, 2)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    state = load_module_state(saved(tmp_path / "shared.pt", model))
    assert list(state) == list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert torch.equal(state["0.weight"], shared.weight) and torch.equal(state["2.weight"], shared.weight)


def test_a_module_tree_that_contains_itself_is_refused_as_a_cycle(tmp_path):
    top = Node({"weight": torch.ones(1)})
    top._modules["self"] = top
    assert refusal(saved(tmp_path / "self.pt", top)).endswith("a cycle: module self is the top module")
    inner = Node({"weight": torch.ones(1)})
    inner._modules["outer"] = outer = Node(modules={"inner": inner})
    path = saved(tmp_path / "pair.pt", Node(modules={"outer": outer}))
    assert refusal(path).endswith("cycle: module outer.inner.outer is the one at outer")


def chain(levels: int) -> Node:
    module = Node({"weight": torch.ones(1)})
    for _ in range(levels):
        module = Node(modules={"m": module})
    return module


def test_modules_nested_deeper_than_the_bound_are_refused(tmp_path):
    assert list(load_module_state(saved(tmp_path / "deep.pt", chain(pickled.MAX_DEPTH)))) == ["m." * 64 + "weight"]
    assert f"modules nest deeper than {pickled.MAX_DEPTH} levels" in refusal(saved(tmp_path / "deeper.pt",
                                                                                 chain(pickled.MAX_DEPTH + 1)))


@pytest.mark.parametrize("inner, reason", [
    (Node({"weight": Reduce(os.system, "true")}),
     "_parameters entry inner.weight is a pickled posix.system, not a tensor"),
    (Node({"weight": 5}), "_parameters entry inner.weight is a pickled int, not a tensor"),
    (Node(buffers={"counts": "many"}), "_buffers entry inner.counts is a pickled str, not a tensor"),
    (Node(modules={"child": 5}), "_modules entry inner.child is a pickled int, not a module"),
    (Node(modules={"child": Reduce(os.system, "true")}),
     "_modules entry inner.child is a pickled posix.system, not a module"),
    (Node({1: torch.ones(1)}), "_parameters of inner has an entry named 1, not a non-empty string without '.'"),
    (Node(modules={"a.b": Node()}), "_modules of inner has an entry named 'a.b', not a non-empty string without '.'"),
    (Node(parameters=[torch.ones(1)]), "inner._parameters is a pickled list, not a dict"),
    (Node({"weight": torch.ones(1)}, {"weight": torch.ones(1)}), "two entries are named inner.weight"),
])
def test_what_no_module_holds_is_refused_naming_the_entry(tmp_path, inner, reason):
    path = saved(tmp_path / "payload.pt", Node({"bias": torch.ones(1)}, modules={"inner": inner}))
    assert refusal(path) == f"{path}: {reason}"


def test_a_plain_state_dict_keyed_by_other_than_strings_is_refused(tmp_path):
    assert refusal(saved(tmp_path / "keys.pt", {1: torch.ones(1)})).endswith("a state dict keyed by a pickled int: 1")


@pytest.mark.parametrize("top, what", [([torch.ones(1)], "list"), (Reduce(os.system, "true"), "posix.system"),
                                       (torch.ones(1), "Tensor")])
def test_a_file_whose_top_object_is_no_module_is_named(tmp_path, top, what):
    assert refusal(saved(tmp_path / "top.pt", top)).endswith(f"holds no module weights (a pickled {what})")


def test_a_tensor_listed_beyond_the_bytes_its_file_holds_is_refused(tmp_path):
    """An expanded view pickles as its small storage; the merge would copy it out whole."""
    path = saved(tmp_path / "expanded.pt", Node({"weight": torch.ones(1).expand(10**6)}))
    assert f"total over {pickled.MAX_STATE_BYTES_PER_FILE_BYTE}x the file's" in refusal(path)


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_truncated_checkpoint_is_named(tmp_path, zip_format):
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(30, 20), whole, _use_new_zipfile_serialization=zip_format)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    assert ": not a readable torch checkpoint (" in refusal(truncated)


@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # the legacy format's check of module sources
def test_a_checkpoint_in_torchs_legacy_format_still_loads(tmp_path):
    linear = torch.nn.Linear(3, 2)
    torch.save(linear, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    state = load_module_state(tmp_path / "legacy.pt")
    assert list(state) == ["weight", "bias"] and torch.equal(state["weight"], linear.weight)


GLOBAL_NAMED_WITH_A_NULL = (pickle.PROTO + b"\x04" + pickle.SHORT_BINUNICODE + b"\x04gone" + pickle.SHORT_BINUNICODE
                            + b"\x03a\x00b" + pickle.STACK_GLOBAL + pickle.STOP)
ODD_STATE = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"gone\nModule\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ
             + pickle.NONE + pickle.BININT1 + b"\x05" + pickle.TUPLE2 + pickle.BUILD + pickle.STOP)
STORAGE_ID_NOT_A_TUPLE = pickle.PROTO + b"\x02" + pickle.BININT1 + b"\x05" + pickle.BINPERSID + pickle.STOP


@pytest.mark.parametrize("junk, error", [
    (Reduce(torch._utils._rebuild_tensor_v2, "junk", 0, (1,), (1,), False, None), "AttributeError"),
    (Reduce(torch._utils._rebuild_parameter_with_state, None, False, None, {"data": 5}), "TypeError"),
    (Reduce(set, [[1]]), "TypeError: unhashable type: 'list'"),
    (ODD_STATE, "TypeError: 'int' object is not a mapping"),
    (STORAGE_ID_NOT_A_TUPLE, "AssertionError: saved_id must be a tuple"),
    (GLOBAL_NAMED_WITH_A_NULL, "ValueError: type name must not contain null characters"),
    (b"\x80\x02\xff", "UnpicklingError: invalid load key"),
], ids=["rebuild-tensor", "rebuild-parameter", "set", "odd-state", "storage-id", "class-name", "opcode"])
def test_junk_that_breaks_unpickling_is_named_in_one_line(tmp_path, junk, error):
    path = archive(tmp_path / "junk.pt", junk) if isinstance(junk, bytes) else saved(tmp_path / "junk.pt", junk)
    assert refusal(path).startswith(f"{path}: not a readable torch checkpoint ({error}")


class Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return self.weight, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("TorchScript code ran")
        self.weight, self.training = state


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, but torch.load still runs it
def test_a_torchscript_archive_is_refused_before_its_code_runs(tmp_path, capfd):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(Scripted()), path)
    with pytest.warns(UserWarning, match="TorchScript"):  # the check can fail: torch.load hands it to torch.jit.load
        torch.load(path, weights_only=False, pickle_module=pickled)
    assert "TorchScript code ran" in capfd.readouterr().out
    assert "a TorchScript archive, whose code loading would run" in refusal(path)
    assert "TorchScript code ran" not in capfd.readouterr().out


def test_a_zip_with_compressed_records_is_refused(pickled_encoder, tmp_path):
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(pickled_encoder[0]) as stored, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as deflated:
        for info in stored.infolist():
            deflated.writestr(info.filename, stored.read(info))
    assert refusal(path).endswith("is compressed, which torch.save never does")


def test_a_tar_archive_is_refused_before_anything_is_extracted(tmp_path):
    path = tmp_path / "old.pt"
    with tarfile.open(path, "w") as tar:
        tar.add(__file__, arcname="storages")
    assert "a tar archive" in refusal(path)
