"""The model pool: a pretrained encoder and one expert per task, read lazily tensor by tensor from safetensors.

Methods see weights only through this class, so a merge can stream parameter by parameter and its peak
memory stays near one model plus the tensors in hand, whatever the number of experts.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from core.errors import BenchError
from core.models import ClassificationHead

StateDict = dict[str, torch.Tensor]
T = TypeVar("T")


class CheckpointFile:
    """One safetensors file, opened once; tensors are read on demand (memory-mapped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle = safe_open(str(path), framework="pt")
        except (OSError, SafetensorError) as error:
            raise BenchError(f"{path}: cannot read as safetensors ({error})") from None

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def get(self, key: str) -> torch.Tensor:
        return self._handle.get_tensor(key).float()

    def shape(self, key: str) -> torch.Size:
        """A tensor's shape, from the file's header: no data read."""
        return torch.Size(self._handle.get_slice(key).get_shape())


class ModelPool:
    """Pretrained weights, experts and per-task heads and data of one suite (or a subset of its tasks)."""

    def __init__(
        self,
        build_encoder: Callable[[], nn.Module],
        pretrained: Path,
        experts: Mapping[str, Path],
        heads: Mapping[str, ClassificationHead],
        sample_inputs: Callable[[str, str, int, int], torch.Tensor],
        device: str = "cpu",
        test_splits: Mapping[str, str] | None = None,
        memo: dict | None = None,
    ) -> None:
        self._build_encoder = build_encoder
        self._pretrained_path = pretrained
        self._expert_paths = dict(experts)
        self.heads = dict(heads)
        self._sample_inputs = sample_inputs
        self.device = device
        self._test_splits = {task: "test" for task in self._expert_paths} | dict(test_splits or {})
        self.test_inputs_read = False  # a merge that never read them can serve every scenario with its experts
        self._memo = {} if memo is None else memo  # shared with the pool's subsets

    @property
    def tasks(self) -> list[str]:
        """The tasks that have an expert in this pool, in suite order."""
        return list(self._expert_paths)

    def subset(self, tasks: Iterable[str], test_splits: Mapping[str, str] | None = None) -> ModelPool:
        """The same pool restricted to some experts (e.g. the seen tasks of a generalization split).

        `test_splits` names, per task, the split the scenario tests on (a corrupted copy, say): the one
        that test-time adaptive methods may draw unlabeled inputs from.
        """
        tasks = list(tasks)
        return ModelPool(self._build_encoder, self._pretrained_path, {t: self._expert_paths[t] for t in tasks},
                         self.heads, self._sample_inputs, self.device, test_splits, self._memo)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, once per `key` for this pool and every subset of it: for what one expert alone
        determines (its Fisher, say), which every scenario merging that expert would otherwise recompute.
        The key must name everything the value depends on."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @cached_property
    def _pretrained(self) -> CheckpointFile:
        return CheckpointFile(self._pretrained_path)

    @cached_property
    def _experts(self) -> dict[str, CheckpointFile]:
        return {task: CheckpointFile(path) for task, path in self._expert_paths.items()}

    @cached_property
    def parameter_names(self) -> list[str]:
        return self._pretrained.keys()

    @cached_property
    def parameter_shapes(self) -> dict[str, torch.Size]:
        return {key: self._pretrained.shape(key) for key in self.parameter_names}

    @cached_property
    def parameter_count(self) -> int:
        """Parameters of one encoder: the unit in which a merge's storage is counted."""
        return sum(shape.numel() for shape in self.parameter_shapes.values())

    def pretrained_tensor(self, key: str) -> torch.Tensor:
        return self._pretrained.get(key)

    def expert_tensor(self, task: str, key: str) -> torch.Tensor:
        return self._experts[task].get(key)

    def task_vector(self, task: str, key: str) -> torch.Tensor:
        """Expert minus pretrained for one parameter tensor."""
        return self._experts[task].get(key) - self._pretrained.get(key)

    def stacked_task_vectors(self, key: str) -> torch.Tensor:
        """The tasks' task vectors of one parameter tensor, stacked along dim 0 in the pool's task order."""
        return torch.stack([self.expert_tensor(task, key) for task in self.tasks]).sub_(self.pretrained_tensor(key))

    def pretrained_state(self) -> StateDict:
        return {key: self.pretrained_tensor(key) for key in self.parameter_names}

    def expert_state(self, task: str) -> StateDict:
        return {key: self.expert_tensor(task, key) for key in self.parameter_names}

    def encoder(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """A fresh encoder holding `state` (its tensors, not copies), in eval mode on the pool's device.

        Built on the meta device, so no random initialisation is computed only to be overwritten.
        """
        with torch.device("meta"):
            encoder = self._build_encoder()
        encoder.load_state_dict(state, assign=True)
        return encoder.eval().to(self.device)

    def merge_parameters(self, merge: Callable[[str, torch.Tensor, list[torch.Tensor]], torch.Tensor]) -> nn.Module:
        """Stream over parameters: `merge(key, pretrained, experts)` gives each merged tensor."""
        state = {}
        for key in self.parameter_names:
            state[key] = merge(key, self.pretrained_tensor(key), [self.expert_tensor(t, key) for t in self.tasks])
        return self.encoder(state)

    def sample_inputs(self, task: str, split: str, n: int, seed: int = 0) -> torch.Tensor:
        """n preprocessed inputs of a task's split, without labels (Fisher, test-time adaptation)."""
        return self._sample_inputs(task, split, n, seed)

    def test_inputs(self, task: str, n: int, seed: int) -> torch.Tensor:
        """n unlabeled inputs of the split `task` is tested on, for test-time adaptation (AdaMerging, WEMoE)."""
        self.test_inputs_read = True
        return self._sample_inputs(task, self._test_splits[task], n, seed)

    def validate(self) -> None:
        """Every expert has the pretrained tensors' names and shapes, and only finite values; else name the culprit.

        Each expert is checked once per process for this pool and its subsets (memoised): the check reads every
        tensor, gigabytes for a large pool, and the files do not change during a run."""
        for task, checkpoint in self._experts.items():
            self.memo(("validated", checkpoint.path), partial(self._validate_expert, task, checkpoint))

    def _validate_expert(self, task: str, checkpoint: CheckpointFile) -> None:
        reference = self.parameter_shapes
        keys = set(checkpoint.keys())
        missing, extra = sorted(set(reference) - keys), sorted(keys - set(reference))
        if missing or extra:
            what = f"missing tensor {missing[0]}" if missing else f"unexpected tensor {extra[0]}"
            raise BenchError(f"{checkpoint.path}: {what} (expert for {task})")
        for key, shape in reference.items():
            tensor = checkpoint.get(key)
            if tensor.shape != shape:
                raise BenchError(f"{checkpoint.path}: tensor {key} has shape {tuple(tensor.shape)}, "
                                 f"pretrained has {tuple(shape)}")
            if not torch.isfinite(tensor).all():
                raise BenchError(f"{checkpoint.path}: tensor {key} holds NaN or inf")
