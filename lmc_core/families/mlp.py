"""The MLP classifier (notebook 04, Git Re-Basin): vectors in, class logits out."""
from __future__ import annotations

import torch

from ..align.spec import Axis, PermutationSpec, UnitGroup
from ..config import ConfigError
from ..data.batches import Examples
from ..data.vectors import VectorDataConfig
from ..models.mlp import MLPConfig, StackedMLP
from .. import rng
from .base import Family, FamilyExample, Features


class MLPFamily(Family):
    """StackedMLP on Examples(x [N, d_in], y [N])."""

    name = "mlp"
    config_type = MLPConfig
    data_type = VectorDataConfig
    metrics = ("loss", "error")

    def build(self, cfg: MLPConfig, k: int) -> StackedMLP:
        """K-copy MLP."""
        return StackedMLP(cfg, k)

    def example(self) -> FamilyExample:
        """A 10-16-12-3 MLP on random vectors."""
        g = rng.generator(0, 0xE7B)
        x, y = torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g)
        return FamilyExample(MLPConfig(d_in=10, hidden=(16, 12), n_classes=3), VectorDataConfig(num_samples=100),
                             Examples(x=x, y=y), x)

    def n_classes(self, cfg: MLPConfig) -> int:
        """Output classes."""
        return cfg.n_classes

    def _check(self, cfg: MLPConfig, ex, what: str) -> Examples:
        if isinstance(ex, (tuple, list)) and len(ex) == 2 and all(isinstance(t, torch.Tensor) for t in ex):
            ex = Examples(x=ex[0], y=ex[1])  # (x, y) tensors
        if not isinstance(ex, Examples):
            raise ConfigError(f"the {what} must be (x, y) tensors or Examples(x=..., y=...); got {type(ex).__name__}")
        x, y = ex["x"], ex["y"]
        if x.dim() != 2 or x.shape[1] != cfg.d_in:
            raise ConfigError(f"the {what} have {tuple(x.shape[1:])} features per example, the MLP expects d_in="
                              f"{cfg.d_in}; set MLPConfig(d_in={x.shape[-1]})")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= cfg.n_classes):
            raise ConfigError(f"the {what} hold labels in [{int(y.min())}, {int(y.max())}] but n_classes is "
                              f"{cfg.n_classes}")
        return ex

    def train_examples(self, spec, source: Examples) -> Examples:
        """The training Examples (x, y), checked against the model."""
        return self._check(spec.model, source, "training examples")

    def eval_examples(self, cfg: MLPConfig, source: Examples, limit: int | None = None) -> Examples:
        """The first `limit` examples of a split."""
        return self._check(cfg, source, "evaluation examples").head(limit)

    def outputs(self, model: StackedMLP, batch, drop=None):
        """Logits [K, B, C] and labels [K or 1, B]."""
        return model(batch["x"]), batch["y"]

    def head_keys(self, cfg: MLPConfig, state) -> set[str]:
        """The output layer."""
        last = len(cfg.hidden)
        return {f"layers.{last}.weight", f"layers.{last}.bias"}

    def perm_spec(self, cfg: MLPConfig) -> PermutationSpec:
        """Hidden units of every hidden layer."""
        return mlp_spec(cfg)

    @torch.no_grad()
    def hidden_units(self, cfg: MLPConfig, state, inputs: torch.Tensor, device="cpu") -> list[torch.Tensor]:
        """Post-activation hidden activations [K, N, h] per hidden layer on inputs [N, d_in]."""
        model = self.model_from_state(cfg, state, device).eval()
        return [h.cpu() for h in model.hidden(inputs[None].to(device))]

    def activations(self, cfg: MLPConfig, state, inputs: torch.Tensor, device="cpu") -> Features:
        """The post-activation hidden layers ('hidden.{i}', [N, h]) of a K=1 state on inputs [N, d_in]."""
        if next(iter(state.values())).shape[0] != 1:
            raise ValueError("activations take a single-copy (K=1) state; use ensemble.copy_state")
        return {f"hidden.{i}": [h[0]] for i, h in enumerate(self.hidden_units(cfg, state, inputs, device))}


def mlp_spec(cfg: MLPConfig) -> PermutationSpec:
    """Hidden units of each hidden layer ('hidden.{i}'); input and output units stay in place."""
    cfg.validate()
    groups = []
    for i, h in enumerate(cfg.hidden):
        axes = (Axis(f"layers.{i}.weight", 2), Axis(f"layers.{i}.bias", 2), Axis(f"layers.{i + 1}.weight", 1))
        groups.append(UnitGroup(f"hidden.{i}", h, axes))
    return PermutationSpec(tuple(groups))
