"""The grokking transformer (notebook 06): a one-layer transformer that reads "a b =" and predicts the
answer at the last position (Nanda et al. 2023: d=128, 4 heads, d_mlp 512, ReLU, no LayerNorm)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError, ModelConfig
from ..data.batches import Examples
from ..data.modular import ModularDataConfig
from ..models.transformer import TransformerLM
from ..align.spec import PermutationSpec
from .. import rng
from .base import Family, FamilyExample, Features
from .lm import transformer_activations, transformer_hidden_units, transformer_residual_maps, transformer_spec


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

    def example(self) -> FamilyExample:
        """A one-layer LayerNorm-free classifier on "a b =" sequences mod 7."""
        cfg = SeqClassConfig(vocab_size=8, d_model=16, n_heads=2, d_ff=24, n_out=7)
        g = rng.generator(0, 0xE7C)
        a, b = torch.randint(0, 7, (32,), generator=g), torch.randint(0, 7, (32,), generator=g)
        tokens = torch.stack([a, b, torch.full_like(a, 7)], 1)
        return FamilyExample(cfg, ModularDataConfig(p=7), Examples(tokens=tokens, labels=(a + b) % 7), tokens)

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

    def loss(self, model: TransformerLM, batch, drop=None, budget_mb: float | None = None,
             fused: bool = False) -> torch.Tensor:
        """Mean cross-entropy per copy [K] with a float64 log-softmax (Nanda et al., and study 5: in float32 the
        loss of a memorised training set rounds to exactly 0 and its gradient vanishes)."""
        self.check_fused(fused)
        logits, targets = self.outputs(model, batch, drop)
        k, n, c = logits.shape
        ce = torch.nn.functional.cross_entropy(logits.double().reshape(-1, c), targets.expand(k, n).reshape(-1),
                                               reduction="none")
        return ce.view(k, n).mean(1).to(logits.dtype)

    def head_keys(self, cfg: SeqClassConfig, state) -> set[str]:
        """The unembedding."""
        return {k for k in state if k.startswith("head.")}

    def perm_spec(self, cfg: SeqClassConfig) -> PermutationSpec:
        """Residual stream, heads and MLP units (no LayerNorm to permute)."""
        return transformer_spec(cfg)

    def residual_maps(self, cfg: SeqClassConfig, state):
        """No LayerNorm: every invertible map of the residual stream keeps the function (the state as it is)."""
        return transformer_residual_maps(cfg, state)

    def activations(self, cfg: SeqClassConfig, state, inputs: torch.Tensor, device="cpu") -> Features:
        """Activations of a K=1 state on token sequences [N, T] (as the LM family collects them)."""
        return transformer_activations(self.model_from_state(cfg, state, device), inputs.to(device))

    def hidden_units(self, cfg: SeqClassConfig, state, inputs: torch.Tensor, device="cpu") -> list[torch.Tensor]:
        """MLP units after the activation, one [K, N*T, d_ff] per block, on token sequences [N, T]."""
        return transformer_hidden_units(self.model_from_state(cfg, state, device), inputs.to(device))
