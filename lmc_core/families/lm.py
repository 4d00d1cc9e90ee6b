"""The causal transformer language model (notebooks 01, 02, 04): next-token prediction on a token stream."""
from __future__ import annotations

import torch

from ..config import ConfigError, DataConfig, ModelConfig
from ..data.batches import Examples
from ..data.loader import windows
from ..models.transformer import TransformerLM
from .base import Family


def check_tokens(tokens: torch.Tensor, vocab_size: int, what: str = "training tokens") -> None:
    """Raise ConfigError unless every token id lies in [0, vocab_size)."""
    if tokens.numel() == 0:
        raise ConfigError(f"the {what} are empty")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ConfigError(f"the {what} hold ids in [{lo}, {hi}] but the model's vocab_size is {vocab_size}; "
                          "build the model with vocab_size = the corpus vocabulary (len(corpus.vocab))")


class LMFamily(Family):
    """TransformerLM (post-norm PTB model or GPT-2 style pre-norm) on windows of a token stream."""

    name = "lm"
    config_type = ModelConfig
    data_type = DataConfig
    metrics = ("loss", "ppl", "error")

    def build(self, cfg: ModelConfig, k: int) -> TransformerLM:
        """K-copy TransformerLM."""
        return TransformerLM(cfg, k)

    def n_classes(self, cfg: ModelConfig) -> int:
        """The vocabulary."""
        return cfg.vocab_size

    def train_examples(self, spec, source) -> Examples:
        """Windows [N, T+1] of the training token stream (a 1-D tensor) or given Examples."""
        if isinstance(source, Examples):
            check_tokens(source["tokens"], spec.model.vocab_size)
            return source
        check_tokens(source, spec.model.vocab_size)
        return Examples(tokens=windows(source, spec.model.context))

    def eval_examples(self, cfg: ModelConfig, source, limit: int | None = None) -> Examples:
        """The first `limit` tokens of a split as windows (every copy and every alpha sees the same ones)."""
        if isinstance(source, Examples):
            return source.head(None if limit is None else max(1, limit // cfg.context))
        check_tokens(source, cfg.vocab_size, "evaluation tokens")
        return Examples(tokens=windows(source, cfg.context, limit))

    def outputs(self, model: TransformerLM, batch, drop=None):
        """Next-token logits [K, B*T, V] and targets [K or 1, B*T]."""
        tokens = batch["tokens"]
        logits = model(tokens[..., :-1], drop)
        return logits, tokens[..., 1:].reshape(tokens.shape[0], -1)

    def loss(self, model: TransformerLM, batch, drop=None, budget_mb: float | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy of each copy [K]; the logits are formed in pieces under budget_mb."""
        tokens = batch["tokens"]
        k = model.k
        h = model.features(tokens[..., :-1], drop)  # [K, B*T, d]
        return model.copy_losses(h, tokens[..., 1:].reshape(tokens.shape[0], -1).expand(k, -1), budget_mb)

    def eval_bytes_per_example(self, cfg: ModelConfig) -> int:
        """Logits and softmax temporaries of one window."""
        return cfg.context * cfg.vocab_size * 4 * 3

    def head_keys(self, cfg: ModelConfig, state) -> set[str]:
        """The untied output layer."""
        return {k for k in state if k.startswith("head.")}

    def perm_spec(self, cfg: ModelConfig):
        """Residual stream (learned positions only), attention heads and MLP units per block."""
        from ..align import transformer_spec

        return transformer_spec(cfg)
