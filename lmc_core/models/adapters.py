"""Parameter-efficient tuning with a leading copy axis K: Houlsby adapters, LoRA, tuning modes.

* :class:`Adapter` (Houlsby et al. 2019): ``x + up(act(down(x)))`` with down [K, d, m] and up
  [K, m, d]. The encoder inserts one after the attention output projection and one after the
  FFN output projection of every layer, after their dropout and before the residual LayerNorm
  (the placement of the authors' adapter-bert code). Both projections start from a truncated
  normal with a small std (1e-3, as adapter-bert), so an adapter starts as (nearly) the identity;
  ``init_std=0`` makes the up-projection exactly zero.
* :class:`LoRALinear` (Hu et al. 2021): a :class:`StackedLinear` plus ``scale * (x @ A) @ B`` with
  A [K, in, r] drawn U(±1/sqrt(in)) (peft's kaiming-uniform), B [K, r, out] zero, scale = alpha/r,
  so a LoRA model starts as its backbone. The frozen base weight keeps its ordinary name, so
  backbone state keys are the same with and without LoRA.
* :func:`tuning_plan` names which parameters are trained, frozen, interpolated and kept per
  endpoint for each tuning mode ("full", "adapter", "lora").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..nn import StackedLinear

TUNING_MODES: tuple[str, ...] = ("full", "adapter", "lora")
ADAPTER_ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "swish")


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The adapter nonlinearity called `name` (exact GELU, ReLU or swish/SiLU)."""
    return {"gelu": F.gelu, "relu": F.relu, "swish": F.silu}[name]


class Adapter(nn.Module):
    """K Houlsby bottleneck adapters: x + up(act(down(x))) on activations [K, N, d]."""

    def __init__(self, k: int, d: int, bottleneck: int, act: str = "gelu"):
        super().__init__()
        self.down = StackedLinear(k, d, bottleneck)
        self.up = StackedLinear(k, bottleneck, d)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [K, N, d]
        return x + self.up(self.act(self.down(x)))


class LoRALinear(StackedLinear):
    """K linear maps W x + b plus a low-rank update (alpha/r) * (x A) B; A [K, in, r], B [K, r, out]."""

    def __init__(self, k: int, d_in: int, d_out: int, rank: int, alpha: float, bias: bool = True):
        super().__init__(k, d_in, d_out, bias)
        if rank <= 0:
            raise ConfigError(f"LoRA rank={rank} must be a positive integer")
        self.rank, self.scale = rank, alpha / rank
        self.lora_a = nn.Parameter(torch.zeros(k, d_in, rank))
        self.lora_b = nn.Parameter(torch.zeros(k, rank, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [K, N, in] -> [K, N, out]
        return torch.baddbmm(super().forward(x), torch.bmm(x, self.lora_a), self.lora_b, alpha=self.scale)

    def merged_weight(self) -> torch.Tensor:
        """The effective weight [K, in, out] = W + scale * A B."""
        return torch.baddbmm(self.weight, self.lora_a, self.lora_b, alpha=self.scale)


@torch.no_grad()
def init_adapter_param(name: str, p: torch.Tensor, g: torch.Generator, init_std: float) -> None:
    """Fill one copy's slice of an adapter parameter (truncated normal ±2 std; biases zero)."""
    if name.endswith("bias") or init_std == 0:
        p.zero_()
        return
    val = torch.empty(p.shape)
    nn.init.trunc_normal_(val, 0.0, init_std, -2 * init_std, 2 * init_std, generator=g)
    p.copy_(val)


@torch.no_grad()
def init_lora_param(name: str, p: torch.Tensor, g: torch.Generator) -> None:
    """Fill one copy's slice of a LoRA matrix: A ~ U(±1/sqrt(in)) [in, r], B = 0."""
    if name.endswith("lora_b"):
        p.zero_()
        return
    bound = 1.0 / math.sqrt(p.shape[0])
    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)


# --------------------------------------------------------------------------- tuning modes


def is_adapter(name: str) -> bool:
    """Whether a parameter name belongs to a bottleneck adapter."""
    return ".adapter_" in name or name.startswith("adapter_")


def is_lora(name: str) -> bool:
    """Whether a parameter name is a LoRA matrix."""
    return name.endswith((".lora_a", ".lora_b"))


def is_layer_norm(name: str) -> bool:
    """Whether a parameter name belongs to a LayerNorm (emb_ln, ln1, ln2)."""
    parts = name.split(".")
    return len(parts) >= 2 and (parts[-2] in ("ln1", "ln2", "emb_ln"))


def is_head(name: str, pooler: bool = True) -> bool:
    """Whether a parameter is part of the task head: the classifier (and the pooler if `pooler`)."""
    return name.startswith("head.") or (pooler and name.startswith("pooler."))


@dataclass(frozen=True)
class TuningPlan:
    """Which parameters a tuning mode trains, freezes, interpolates and keeps per endpoint."""

    mode: str
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    interpolated: tuple[str, ...]  # the trainable ones: frozen ones are equal in every copy
    per_endpoint: tuple[str, ...]  # the classifier: kept per endpoint across a task boundary


def tuning_plan(names: Iterable[str] | nn.Module, mode: str, train_pooler: bool = True) -> TuningPlan:
    """The TuningPlan of `mode` over parameter names (or a model's named parameters).

    "full": everything; "adapter": adapters + LayerNorms + head, backbone frozen (Houlsby);
    "lora": LoRA matrices + head. The head is the classifier and, with `train_pooler` (default),
    the pooler: MiniLM's pooler was not trained by its sentence-embedding objective (mean pooling),
    and RoBERTa's equivalent dense+tanh is part of its trained classification head.
    """
    if isinstance(names, nn.Module):
        names = [n for n, _ in names.named_parameters()]
    names = list(names)
    if mode not in TUNING_MODES:
        raise ConfigError(f"tuning mode {mode!r} is not valid; choose one of {list(TUNING_MODES)}")
    if mode == "full":
        keep = set(names)
    elif mode == "adapter":
        if not any(is_adapter(n) for n in names):
            raise ConfigError("tuning mode 'adapter' needs adapters: set EncoderConfig(adapter=<bottleneck size>)")
        keep = {n for n in names if is_adapter(n) or is_layer_norm(n) or is_head(n, train_pooler)}
    else:
        if not any(is_lora(n) for n in names):
            raise ConfigError("tuning mode 'lora' needs LoRA matrices: set EncoderConfig(lora_rank=<rank>)")
        keep = {n for n in names if is_lora(n) or is_head(n, train_pooler)}
    trainable = tuple(n for n in names if n in keep)
    return TuningPlan(mode=mode, trainable=trainable, frozen=tuple(n for n in names if n not in keep),
                      interpolated=trainable, per_endpoint=tuple(n for n in names if is_head(n, pooler=False)))


def apply_tuning(model: nn.Module, mode: str, train_pooler: bool = True) -> TuningPlan:
    """Set requires_grad on `model`'s parameters for `mode`; returns the plan."""
    plan = tuning_plan(model, mode, train_pooler)
    keep = set(plan.trainable)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return plan
