"""Twin-Merging (Lu et al., NeurIPS 2024): a shared merged model plus each task's compressed exclusive knowledge,
mixed per input by a router trained to tell the tasks apart.

1. Shared knowledge: θ* = θ0 + λ Σ_t τ_t (task arithmetic, λ = `shared_scaling`), every parameter.
2. Exclusive knowledge of task t, per parameter tensor: E_t = θ_t − θ*, a matrix truncated by SVD to its top
   ⌊rank_fraction × min(rows, columns)⌋ singular triplets, a vector kept whole.
3. A router reads the shared model's last hidden states averaged over tokens and is trained with cross-entropy to
   name the task of validation inputs (labelled by the task they come from, nothing else).
4. Each input x runs through θ* + Σ_t w_t(x) E_t, w(x) = softmax of the router's logits. A linear map's routed
   low-rank parts are applied to its input (U_t (S_t V_tᵀ x)), which equals the per-input merged weights exactly.
Static: the router reads no test input, so one merge serves every scenario merging the same experts.

Defaults from the authors' code (LZY-the-boys/Twin-Merging, discriminative/):
- shared expert: task arithmetic at λ = 0.29 (scripts.sh `run_task_arith`, config/twin_merge.yml; run.sh step 1);
- compression: `mask_strategy=svd`, `mask_rate=0.9` (scripts.sh `twin_merge`): sparsify.svd keeps int(0.1 × len(S))
  singular triplets of each matrix and returns 1-D tensors unchanged;
- router (router.py): input the mean over tokens of the shared model's last hidden states; SimpleMLP: Linear(d, 2d),
  BatchNorm, LeakyReLU, Dropout(0.5), Linear(2d, 2d), BatchNorm, LeakyReLU, Dropout(0.5), Linear(2d, T); trained
  with cross-entropy by HF's Trainer at learning rate 5e-4, batch 1024, 50 epochs, its defaults otherwise (AdamW
  without weight decay, the learning rate decaying linearly to 0, gradient norm clipped at 1); up to 5500 inputs
  per task (`generate_router_datasets('train', 5500, ...)`);
- mixing: softmax of the router's logits, θ* + Σ_t w_t E_t with no further scale (twin_merge.py).
Where this differs, and why:
- the router learns from the validation split (the code reads the training split; the paper a small validation
  set) and keeps its last epoch: the code keeps the epoch of best accuracy on the test inputs it is then scored on
  (`load_best_model_at_end` with the test split as eval set), which a benchmark may not;
- biases: the code leaves them out (`--exclude-param ".*bias.*"`), so each input runs with its own task's
  fine-tuned biases (functional_call on that task's model), which needs the task at inference; here they are
  merged and routed as the other vectors are;
- the attention's packed in-projection is compressed as its q, k and v matrices, as RoBERTa and HF's CLIP hold
  them; the patch convolution's kernel as one matrix (out, in x k x k); last hidden states: the transformer's
  output before ln_post (HF CLIP's `last_hidden_state`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.models import VisionTransformer
from core.pool import ModelPool
from methods.averaging import TaskArithmetic
from methods.base import Merged, MergeMethod, setting
from methods.lowrank import truncated_svd
from methods.scaled import scaled

# Inputs per forward when the router's training inputs are encoded.
FEATURE_BATCH = 256


class ExclusiveMatrix(nn.Module):
    """Each task's exclusive part of one matrix, truncated to rank r: `up` (out, T·r) holds the U_t side by side,
    `down` (T·r, in) the S_t V_tᵀ stacked."""

    def __init__(self, exclusive: torch.Tensor, rank_fraction: float) -> None:
        """`exclusive` (tasks, out, in): each task's expert minus the shared model."""
        super().__init__()
        self.rank = int(rank_fraction * min(exclusive.shape[1:]))
        factors = [truncated_svd(matrix, self.rank) for matrix in exclusive]
        self.register_buffer("up", torch.cat([u for u, _, _ in factors], dim=1))
        self.register_buffer("down", torch.cat([s[:, None] * vh for _, s, vh in factors]))

    def _per_rank(self, weights: torch.Tensor) -> torch.Tensor:
        """(batch, tasks) -> (batch, tasks·rank): each task's weight over its rank's columns."""
        return weights.repeat_interleave(self.rank, dim=1)

    def routed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Σ_t w_t U_t S_t V_tᵀ applied to x (batch, tokens, in), with the weights (batch, tasks) of each input."""
        return F.linear(F.linear(x, self.down) * self._per_rank(weights)[:, None, :], self.up)

    def mixed(self, weights: torch.Tensor) -> torch.Tensor:
        """Σ_t w_t U_t S_t V_tᵀ for each input: (batch, out, in)."""
        return (self.up * self._per_rank(weights)[:, None, :]) @ self.down


class ExclusiveVector(nn.Module):
    """Each task's exclusive part of one vector (a bias, a norm's scale, the class embedding), kept whole."""

    def __init__(self, exclusive: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("parts", exclusive)  # (tasks, size)

    def mixed(self, weights: torch.Tensor) -> torch.Tensor:
        """Σ_t w_t E_t for each input: (batch, size)."""
        return weights @ self.parts


class TaskRouter(nn.Sequential):
    """The authors' SimpleMLP: input features (batch, width) to one logit per task."""

    def __init__(self, width: int, n_tasks: int) -> None:
        hidden = 2 * width
        super().__init__(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(), nn.Dropout(0.5),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(), nn.Dropout(0.5),
                         nn.Linear(hidden, n_tasks))


def module_key(parameter: str) -> str:
    """A parameter's name as a ModuleDict key (which may hold no dot)."""
    return parameter.replace(".", "/")


class TwinEncoder(nn.Module):
    """The shared encoder's weights plus each task's exclusive parts, mixed per input by the router's softmax.

    The forward is the encoder's (core.models.VisionTransformer) written out so that every parameter can take a
    value of its own for each input; without routing weights (None) it is the shared encoder's."""

    def __init__(self, shared: VisionTransformer, exclusive: dict[str, nn.Module], router: TaskRouter) -> None:
        super().__init__()
        self.shared = shared
        self.exclusive = nn.ModuleDict({module_key(name): part for name, part in exclusive.items()})
        self.router = router

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(images, self.routing_weights(images))

    def routing_weights(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, tasks): the softmax of the router's logits on the shared encoder's features."""
        return self.router(self.features(images)).softmax(dim=-1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What the router reads: the shared encoder's last hidden states averaged over tokens (batch, width)."""
        return self.hidden_states(images, None).mean(dim=1)

    def embedding(self, images: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The encoder's output (batch, embed_dim) under each input's routing weights (batch, tasks)."""
        pooled = self._layer_norm(self.hidden_states(images, weights)[:, :1], "ln_post", weights)
        return self._linear(pooled, self.shared.proj.T, None, self._part("proj"), weights).squeeze(1)

    def hidden_states(self, images: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The transformer's output (batch, tokens, width) under each input's routing weights."""
        conv = self.shared.conv1
        x = F.conv2d(images, conv.weight, stride=conv.stride).flatten(2).transpose(1, 2)  # (batch, patches, width)
        if weights is not None:
            patches = F.unfold(images, conv.kernel_size, stride=conv.stride).transpose(1, 2)
            x = x + self._part("conv1.weight").routed(patches, weights)
        cls = self._vector("class_embedding", weights).unsqueeze(1).expand(len(x), 1, -1)
        positions = self.shared.positional_embedding
        if weights is not None:
            positions = positions + self._part("positional_embedding").mixed(weights)
        x = self._layer_norm(torch.cat([cls.to(x.dtype), x], dim=1) + positions, "ln_pre", weights)
        for index, block in enumerate(self.shared.transformer.resblocks):
            prefix = f"transformer.resblocks.{index}."
            attended = self._attention(self._layer_norm(x, prefix + "ln_1", weights), prefix + "attn.",
                                       block.attn.num_heads, weights)
            x = x + attended
            hidden = self._mapped(self._layer_norm(x, prefix + "ln_2", weights), prefix + "mlp.c_fc", weights)
            x = x + self._mapped(block.mlp.gelu(hidden), prefix + "mlp.c_proj", weights)
        return x

    def _part(self, name: str) -> nn.Module:
        return self.exclusive[module_key(name)]

    def _vector(self, name: str, weights: torch.Tensor | None) -> torch.Tensor:
        """A vector parameter for each input (batch, size), or the shared one (1, size) without routing."""
        shared = self.shared.get_parameter(name).unsqueeze(0)
        return shared if weights is None else shared + self._part(name).mixed(weights)

    def _layer_norm(self, x: torch.Tensor, name: str, weights: torch.Tensor | None) -> torch.Tensor:
        norm = self.shared.get_submodule(name)
        scale, shift = self._vector(name + ".weight", weights), self._vector(name + ".bias", weights)
        normed = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
        return (normed * scale.unsqueeze(1) + shift.unsqueeze(1)).to(x.dtype)

    @staticmethod
    def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, part: ExclusiveMatrix,
                weights: torch.Tensor | None) -> torch.Tensor:
        """x (batch, tokens, in) through a linear map, `bias` (batch or 1, out), with its routed exclusive parts."""
        output = F.linear(x, weight)
        if bias is not None:
            output = output + bias.unsqueeze(1)
        return output if weights is None else output + part.routed(x, weights)

    def _mapped(self, x: torch.Tensor, name: str, weights: torch.Tensor | None) -> torch.Tensor:
        """Through the nn.Linear `name` of the shared encoder, routed."""
        return self._linear(x, self.shared.get_parameter(name + ".weight"), self._vector(name + ".bias", weights),
                            self._part(name + ".weight"), weights)

    def _attention(self, x: torch.Tensor, prefix: str, heads: int, weights: torch.Tensor | None) -> torch.Tensor:
        """Self-attention as nn.MultiheadAttention computes it, its q, k, v and output maps routed."""
        batch, tokens, width = x.shape
        packed = self.shared.get_parameter(prefix + "in_proj_weight")
        biases = self._vector(prefix + "in_proj_bias", weights)
        parts = self._part(prefix + "in_proj_weight")
        q, k, v = (self._linear(x, packed[i * width:(i + 1) * width], biases[:, i * width:(i + 1) * width], parts[i],
                                weights).view(batch, tokens, heads, width // heads).transpose(1, 2) for i in range(3))
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, width)
        return self._mapped(attended, prefix + "out_proj", weights)


def exclusive_part(name: str, exclusive: torch.Tensor, rank_fraction: float) -> nn.Module:
    """Each task's exclusive part of the parameter `name` (tasks, *shape), compressed as its kind asks: the packed
    in-projection as its q, k and v matrices, the output projection (stored in x out) as the map out x in, the
    patch kernel as a matrix over its flattened patches, any other matrix as it is, a vector whole."""
    if name.endswith("attn.in_proj_weight"):
        return nn.ModuleList(ExclusiveMatrix(block, rank_fraction) for block in exclusive.chunk(3, dim=1))
    if name == "proj":
        return ExclusiveMatrix(exclusive.transpose(1, 2), rank_fraction)
    if exclusive.ndim > 2:
        return ExclusiveMatrix(exclusive.flatten(2), rank_fraction)
    return ExclusiveVector(exclusive)


def train_router(router: TaskRouter, features: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float,
                 batch_size: int) -> None:
    """Cross-entropy on (features, task labels), as HF's Trainer runs it with the authors' arguments: AdamW without
    weight decay, learning rate decaying linearly to 0 over the steps, gradient norm clipped at 1, inputs
    reshuffled every epoch. A last batch of one input is left out: BatchNorm cannot train on it."""
    steps_per_epoch = math.ceil(len(features) / batch_size)
    optimizer = torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=0.0)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (total - step) / total)
    router.train()
    for _ in range(epochs):
        order = torch.randperm(len(features), device=features.device)
        for start in range(0, len(features), batch_size):
            batch = order[start:start + batch_size]
            if len(batch) < 2:
                continue
            loss = F.cross_entropy(router(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(router.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    router.eval()


class TwinMerging(MergeMethod):
    """Twin-Merging: task arithmetic shared, each task's rank-compressed rest mixed per input by a trained router."""

    name = "twin_merging"
    title = "Twin-Merging"
    reference = "https://arxiv.org/abs/2406.15479"
    shared_scaling: float = setting(0.29, low=0)  # λ of the shared task arithmetic model
    rank_fraction: float = setting(0.1, low=0, high=1)  # of each matrix's singular values kept: 1 - mask_rate
    router_inputs: int = setting(5500, low=1)  # validation inputs per task the router learns from (at most)
    epochs: int = setting(50, low=1)
    lr: float = setting(5e-4, above=0)
    batch_size: int = setting(1024, low=2)
    seed: int = 0

    def merge(self, pool: ModelPool) -> Merged:
        shared_state = scaled(TaskArithmetic().update(pool), self.shared_scaling, pool, in_place=True)
        exclusive = {}
        for name in pool.parameter_names:
            experts = torch.stack([pool.expert_tensor(task, name) for task in pool.tasks])
            exclusive[name] = exclusive_part(name, experts - shared_state[name], self.rank_fraction)
        shared = pool.encoder(shared_state)
        with torch.random.fork_rng():  # the router's initial weights, dropout and batches, by `seed`
            torch.manual_seed(self.seed)
            router = TaskRouter(shared.class_embedding.numel(), len(pool.tasks))
            encoder = TwinEncoder(shared, exclusive, router).to(pool.device)
            features, labels = self._router_data(encoder, pool)
            train_router(encoder.router, features, labels, self.epochs, self.lr, self.batch_size)
        return encoder.eval()

    def _router_data(self, encoder: TwinEncoder, pool: ModelPool) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared encoder's features of each task's validation inputs, labelled by task index."""
        features, labels = [], []
        with torch.no_grad():
            for index, task in enumerate(pool.tasks):
                inputs = pool.sample_inputs(task, "validation", self.router_inputs, self.seed)
                features += [encoder.features(batch.to(pool.device)) for batch in inputs.split(FEATURE_BATCH)]
                labels.append(torch.full((len(inputs),), index, device=pool.device))
        return torch.cat(features), torch.cat(labels)
