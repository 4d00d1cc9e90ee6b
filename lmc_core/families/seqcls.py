"""The grokking transformer (notebook 06): a one-layer transformer that reads "a b =" and predicts the
answer at the last position (Nanda et al. 2023: d=128, 4 heads, d_mlp 512, ReLU, no LayerNorm)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError, ModelConfig, register_config
from ..data.batches import Examples
from ..data.modular import ModularDataConfig
from ..models.transformer import TransformerLM
from .base import Family


@register_config
@dataclass(frozen=True)
class SeqClassConfig(ModelConfig):
    """A transformer that classifies a token sequence from its last position (defaults: Nanda et al.'s
    grokking model for p = 113: vocabulary p + 1 with "=", p answers)."""

    arch: str = "prenorm"
    vocab_size: int = 114
    d_model: int = 128
    n_layers: int = 1
    n_heads: int = 4
    d_ff: int = 512
    context: int = 3
    dropout: float = 0.0
    positions: str = "learned"
    tie_embeddings: bool = False
    activation: str = "relu"
    embed_scale: bool = False
    init: str = "nanda"
    norm: str = "none"
    n_out: int = 113


class SeqClassFamily(Family):
    """TransformerLM features at the last position -> class logits; Examples(tokens [N, T], labels [N])."""

    name = "seqcls"
    config_type = SeqClassConfig
    data_type = ModularDataConfig
    metrics = ("loss", "error")

    def build(self, cfg: SeqClassConfig, k: int) -> TransformerLM:
        """K-copy transformer."""
        return TransformerLM(cfg, k)

    def n_classes(self, cfg: SeqClassConfig) -> int:
        """Answers."""
        return cfg.n_out or cfg.vocab_size

    def _check(self, cfg: SeqClassConfig, ex: Examples, what: str) -> Examples:
        t, y = ex["tokens"], ex["labels"]
        if t.shape[1] > cfg.context or int(t.max()) >= cfg.vocab_size or int(y.max()) >= self.n_classes(cfg):
            raise ConfigError(f"the {what} (sequences of {t.shape[1]} tokens < {int(t.max()) + 1}, labels < "
                              f"{int(y.max()) + 1}) do not fit the model (context {cfg.context}, vocab_size "
                              f"{cfg.vocab_size}, n_out {self.n_classes(cfg)}); for modulus p use vocab_size=p+1, n_out=p")
        return ex

    def train_examples(self, spec, source: Examples) -> Examples:
        """The training Examples, checked against the model."""
        return self._check(spec.model, source, "training examples")

    def eval_examples(self, cfg: SeqClassConfig, source: Examples, limit: int | None = None) -> Examples:
        """The first `limit` examples of a split."""
        return self._check(cfg, source, "evaluation examples").head(limit)

    def outputs(self, model: TransformerLM, batch, drop=None):
        """Logits [K, B, n_out] at the last position and labels [K or 1, B]."""
        tokens = batch["tokens"]
        b, t = tokens.shape[1], tokens.shape[2]
        h = model.features(tokens, drop).view(model.k, b, t, -1)[:, :, -1]  # [K, B, d]
        return model.logits(h), batch["labels"]

    def loss(self, model: TransformerLM, batch, drop=None, budget_mb: float | None = None) -> torch.Tensor:
        """Mean cross-entropy per copy [K] with a float64 log-softmax (Nanda et al., and study 5: in float32 the
        loss of a memorised training set rounds to exactly 0 and its gradient vanishes)."""
        logits, targets = self.outputs(model, batch, drop)
        k, n, c = logits.shape
        ce = torch.nn.functional.cross_entropy(logits.double().reshape(-1, c), targets.expand(k, n).reshape(-1),
                                               reduction="none")
        return ce.view(k, n).mean(1).to(logits.dtype)

    def head_keys(self, cfg: SeqClassConfig, state) -> set[str]:
        """The unembedding."""
        return {k for k in state if k.startswith("head.")}

    def perm_spec(self, cfg: SeqClassConfig):
        """Residual stream, heads and MLP units (no LayerNorm to permute)."""
        from ..align import transformer_spec

        return transformer_spec(cfg)
