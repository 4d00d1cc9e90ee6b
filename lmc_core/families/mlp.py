"""The MLP classifier (notebook 04, Git Re-Basin): vectors in, class logits out."""
from __future__ import annotations

import torch

from ..config import ConfigError, register_config
from ..data.batches import Examples
from ..data.vectors import VectorDataConfig
from ..models.mlp import MLPConfig, StackedMLP
from .base import Family

register_config(MLPConfig)


class MLPFamily(Family):
    """StackedMLP on Examples(x [N, d_in], y [N])."""

    name = "mlp"
    config_type = MLPConfig
    data_type = VectorDataConfig
    metrics = ("loss", "error")

    def build(self, cfg: MLPConfig, k: int) -> StackedMLP:
        """K-copy MLP."""
        return StackedMLP(cfg, k)

    def n_classes(self, cfg: MLPConfig) -> int:
        """Output classes."""
        return cfg.n_classes

    def _check(self, cfg: MLPConfig, ex: Examples, what: str) -> Examples:
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

    def perm_spec(self, cfg: MLPConfig):
        """Hidden units of every hidden layer."""
        from ..align import mlp_spec

        return mlp_spec(cfg)

    @torch.no_grad()
    def hidden(self, cfg: MLPConfig, state, x: torch.Tensor, device="cpu") -> list[torch.Tensor]:
        """Post-activation hidden activations [K, N, h] per hidden layer (for sparsity and entropy)."""
        model = self.model_from_state(cfg, state, device).eval()
        return [h.cpu() for h in model.hidden(x[None].to(device))]
