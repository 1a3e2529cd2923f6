"""Bad input through the command line: one line naming the option, file or method at fault, exit status 2,
and nothing already stored touched."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Methods that return what evaluation cannot run faithfully, or raise; each is named in its refusal.
BAD_METHODS = '''
import torch

from methods import MergeMethod


class NaNWeights(MergeMethod):
    name = "test_nan_weights"

    def merge(self, pool):
        return pool.merge_parameters(lambda key, pretrained, experts: pretrained * float("nan"))


class Float64Weights(MergeMethod):
    name = "test_float64_weights"

    def merge(self, pool):
        return pool.merge_parameters(lambda key, pretrained, experts: pretrained.double())


class WrongShape(MergeMethod):
    name = "test_wrong_shape"

    def merge(self, pool):
        merged = pool.encoder(pool.pretrained_state())
        merged.proj = torch.nn.Parameter(torch.zeros(2, 2))
        return merged


class FlatWeights(MergeMethod):
    name = "test_flat_weights"

    def merge(self, pool):
        return pool.merge_parameters(lambda key, pretrained, experts: pretrained.flatten())


class NotAnEncoder(MergeMethod):
    name = "test_not_an_encoder"

    def merge(self, pool):
        return torch.nn.Identity()


class ReturnsNone(MergeMethod):
    name = "test_returns_none"

    def merge(self, pool):
        return None


class MissingTask(MergeMethod):
    name = "test_missing_task"

    def merge(self, pool):
        return {task: pool.encoder(pool.expert_state(task)) for task in pool.tasks[1:]}


class Raises(MergeMethod):
    name = "test_raises"

    def merge(self, pool):
        raise ValueError("no experts\\nat all")
'''

IMPOSTOR = '''
from methods import MergeMethod


class TaskArithmetic(MergeMethod):
    name = "task_arithmetic"

    def merge(self, pool):
        return pool.encoder(pool.pretrained_state())
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "bad_methods.py").write_text(BAD_METHODS)
    (folder / "impostor.py").write_text(IMPOSTOR)
    return folder


@pytest.fixture(scope="module")
def stored(tiny_zoo, tmp_path_factory) -> Path:
    """A results folder holding the multitask units of pretrained and task arithmetic."""
    results = tmp_path_factory.mktemp("stored") / "results"
    assert main(["run", "--method", "pretrained", "--method", "task_arithmetic", "--scenario", "multitask",
                 "--zoo", str(tiny_zoo), "--results", str(results), "--reports", str(results.parent / "reports")]) == 0
    return results


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def refused(arguments: list[str], stored: Path, tiny_zoo: Path, tmp_path: Path, capsys) -> str:
    """Run `arguments` on the stored results; check exit status 2, one line of error, the store unchanged."""
    before = files(stored)
    assert main(["run", *arguments, "--scenario", "multitask", "--zoo", str(tiny_zoo), "--results", str(stored),
                 "--reports", str(tmp_path / "reports")]) == 2
    assert files(stored) == before
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ")
    return error.removeprefix("error: ")


@pytest.mark.parametrize("method, param, message", [
    ("task_arithmetic", "scaling=nan", "task_arithmetic: scaling=nan is not a finite number"),
    ("task_arithmetic", "scaling=inf", "task_arithmetic: scaling=inf is not a finite number"),
    ("task_arithmetic", "scaling=1e400", "task_arithmetic: scaling=inf is not a finite number"),
    ("fisher_merging", "examples=0", "fisher_merging: examples=0 is out of range [1, inf)"),
    ("ties_merging", "keep=2", "ties_merging: keep=2.0 is out of range [0, 1]"),
    ("ties_merging", "keep=-0.5", "ties_merging: keep=-0.5 is out of range [0, 1]"),
    ("ties_merging", "keep=nan", "ties_merging: keep=nan is not a finite number"),
    ("adamerging_taskwise", "steps=-3", "adamerging_taskwise: steps=-3 is out of range [0, inf)"),
    ("adamerging_taskwise", "lr=nan", "adamerging_taskwise: lr=nan is not a finite number"),
    ("wemoe", "batch_size=0", "wemoe: batch_size=0 is out of range [1, inf)"),
])
def test_a_setting_out_of_range_or_not_finite_exits_2_naming_method_key_and_range(
        method, param, message, stored, tiny_zoo, tmp_path, capsys):
    assert refused(["--method", method, "--param", f"{method}.{param}"], stored, tiny_zoo, tmp_path, capsys) == message


@pytest.mark.parametrize("method, message", [
    ("test_nan_weights", r"its merged model: tensor class_embedding holds NaN or inf"),
    ("test_float64_weights", (r"its merged model: tensor class_embedding is torch.float64; the harness evaluates "
                              r"torch.float32 models")),
    ("test_wrong_shape", r"its merged model: tensor proj has shape \(2, 2\), the pretrained model's \(\d+, \d+\)"),
    ("test_flat_weights", (r"merge raised RuntimeError: Error\(s\) in loading state_dict for VisionTransformer: "
                           r"size mismatch .*\.\.\. \(\S*core/pool\.py:\d+\)")),
    ("test_not_an_encoder", (r"its merged model maps inputs of shape \(1, 3, \d+, \d+\) to \(1, 3, \d+, \d+\), not to "
                             r"the \(1, \d+\) features the task heads take")),
    ("test_returns_none", r"merge returned NoneType, not an nn.Module \(or a mapping from task to nn.Module\)"),
    ("test_missing_task", r"its merged models \(one per task\) hold nothing for task scenes, not an nn.Module"),
    ("test_raises", r"merge raised ValueError: no experts at all \(\S*bad_methods\.py:\d+\)"),
])
def test_a_method_whose_merge_cannot_be_evaluated_or_raises_is_refused_by_name(
        method, message, plugins, stored, tiny_zoo, tmp_path, capsys):
    error = refused(["--plugin", str(plugins / "bad_methods.py"), "--method", "pretrained", "--method", method],
                    stored, tiny_zoo, tmp_path, capsys)
    assert re.fullmatch(f"{method}: {message}", error), error


def test_a_refused_method_leaves_the_units_run_before_it_stored(plugins, tiny_zoo, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--plugin", str(plugins / "bad_methods.py"), "--method", "task_arithmetic", "--method",
                 "test_nan_weights", "--scenario", "multitask", "--zoo", str(tiny_zoo), "--results", str(results),
                 "--reports", str(tmp_path / "reports")]) == 2
    assert "test_nan_weights: its merged model" in capsys.readouterr().err
    assert [path.name.split("-")[0] for path in results.rglob("*.parquet")] == ["task_arithmetic"]


def test_a_plugin_class_named_like_a_built_in_one_is_refused_naming_both_modules(
        plugins, stored, tiny_zoo, tmp_path, capsys):
    error = refused(["--plugin", str(plugins / "impostor.py"), "--method", "task_arithmetic"], stored, tiny_zoo,
                    tmp_path, capsys)
    assert error == (f"method name 'task_arithmetic' is registered twice (TaskArithmetic in "
                     f"{ROOT / 'methods' / 'averaging.py'} and TaskArithmetic in {plugins / 'impostor.py'})")


def test_a_param_for_a_method_not_in_the_run_exits_2_naming_the_option(stored, tiny_zoo, tmp_path, capsys):
    error = refused(["--method", "task_arithmetic", "--param", "ties_merging.keep=0.3"], stored, tiny_zoo, tmp_path,
                    capsys)
    assert error == ("--param 'ties_merging.keep=0.3': method ties_merging is not in this run "
                     "(add --method ties_merging)")


def test_repeated_methods_scenarios_and_seeds_run_each_unit_once(tiny_zoo, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    results = tmp_path / "results"
    methods = ["--method", "task_arithmetic", "--method", "task_arithmetic", "--method", "ties_merging",
               "--method", "ties_merging:default"]  # its defaults, implied and named
    assert main(["run", *methods, "--scenario", "multitask", "--scenario", "multitask", "--seeds", "0", "0",
                 "--zoo", str(tiny_zoo), "--results", str(results), "--reports", str(tmp_path / "reports")]) == 0
    assert len(list(results.rglob("*.parquet"))) == 2
    assert "14 unit(s) asked for more than once: each runs once" in caplog.messages
    assert any(message.startswith("2 unit(s) run") for message in caplog.messages)


@pytest.mark.parametrize("arguments, message", [
    (["--ray-address", "10.0.0.1:6379"], "--ray-address needs --executor ray"),
    (["--gpus-per-part", "1"], "--gpus-per-part needs --executor ray"),
    (["--executor", "ray", "--jobs", "2"], ("--jobs counts processes of this machine: with --executor ray, give "
                                            "--cpus-per-part")),
    (["--executor", "ray", "--cpus-per-part", "0"], "--cpus-per-part 0: expected a positive number"),
    (["--executor", "ray", "--gpus-per-part", "1"], ("--gpus-per-part 1 with --device cpu: the GPUs would idle "
                                                     "(add --device cuda)")),
])
def test_ray_options_that_do_not_fit_the_executor_exit_2_naming_the_option(
        arguments, message, stored, tiny_zoo, tmp_path, capsys):
    assert refused(["--method", "task_arithmetic", *arguments], stored, tiny_zoo, tmp_path, capsys) == message
