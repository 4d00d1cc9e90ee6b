"""A model family that exists only in the test suite: a bag-of-embeddings classifier.

It shows what adding a family takes: this one file (config, data config, K-copy model, Family
subclass) and one registry line (`register(ToyFamily())` in tests/conftest.py). The contract tests
then check it like every family of the package, without anyone editing a test.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmc_core import rng
from lmc_core.align import Axis, PermutationSpec, UnitGroup
from lmc_core.config import ConfigError
from lmc_core.data.batches import Examples
from lmc_core.families import Family, FamilyExample, Features
from lmc_core.nn import StackedLinear


@dataclass(frozen=True)
class ToyBagConfig:
    """Embedding table -> mean over the sequence -> hidden ReLU layer -> class logits."""

    vocab_size: int = 12
    d_embed: int = 6
    hidden: int = 10
    n_classes: int = 3

    def validate(self) -> "ToyBagConfig":
        """Raise ConfigError if a width is not positive."""
        for name in ("vocab_size", "d_embed", "hidden", "n_classes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ToyBagConfig.{name} must be positive")
        return self


@dataclass(frozen=True)
class ToyBagData:
    """Identity of the toy data (the examples come from ToyFamily.example)."""

    seed: int = 0

    def validate(self) -> "ToyBagData":
        """Nothing to check."""
        return self


class StackedBag(nn.Module):
    """K copies: emb [K, V, e], fc1 [K, e, h], fc2 [K, h, C]; forward(tokens [K or 1, B, T]) -> [K, B, C]."""

    def __init__(self, cfg: ToyBagConfig, k: int = 1):
        super().__init__()
        self.cfg, self.k = cfg.validate(), k
        self.emb = nn.Parameter(torch.empty(k, cfg.vocab_size, cfg.d_embed))
        self.fc1 = StackedLinear(k, cfg.d_embed, cfg.hidden)
        self.fc2 = StackedLinear(k, cfg.hidden, cfg.n_classes)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean embedding [K, B, e] of each sequence."""
        tokens = tokens.expand(self.k, -1, -1)
        return torch.stack([self.emb[c][tokens[c]] for c in range(self.k)]).mean(2)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden units after the ReLU [K, B, h]."""
        return F.relu(self.fc1(self.pooled(tokens)))

    def forward(self, tokens: torch.Tensor, drop=None) -> torch.Tensor:
        """Logits [K, B, C]."""
        return self.fc2(self.hidden(tokens))

    @torch.no_grad()
    def init_weights(self, seeds: list[int]) -> "StackedBag":
        """Copy k from seed seeds[k] (N(0, 0.5) everywhere)."""
        for c, s in enumerate(seeds):
            g = rng.generator(s, 0x70F)
            for p in self.parameters():
                p[c].copy_(torch.randn(p[c].shape, generator=g) * 0.5)
        return self


class ToyFamily(Family):
    """StackedBag on Examples(tokens [N, T], labels [N])."""

    name = "toy-bag"
    config_type = ToyBagConfig
    data_type = ToyBagData

    def build(self, cfg: ToyBagConfig, k: int) -> StackedBag:
        """K-copy model."""
        return StackedBag(cfg, k)

    def example(self) -> FamilyExample:
        """The default config on 20 random sequences of 5 tokens."""
        g = rng.generator(1, 0x70F)
        tokens, labels = torch.randint(0, 12, (20, 5), generator=g), torch.randint(0, 3, (20,), generator=g)
        return FamilyExample(ToyBagConfig(), ToyBagData(), Examples(tokens=tokens, labels=labels), tokens)

    def n_classes(self, cfg: ToyBagConfig) -> int:
        """Classes."""
        return cfg.n_classes

    def train_examples(self, spec, source: Examples) -> Examples:
        """The given Examples."""
        return source

    def eval_examples(self, cfg, source: Examples, limit: int | None = None) -> Examples:
        """The first `limit` examples."""
        return source.head(limit)

    def outputs(self, model: StackedBag, batch, drop=None):
        """Logits [K, B, C] and labels [K or 1, B]."""
        return model(batch["tokens"], drop), batch["labels"]

    def perm_spec(self, cfg: ToyBagConfig) -> PermutationSpec:
        """The embedding dimension (mean pooling commutes with permuting it) and the hidden units."""
        return PermutationSpec((
            UnitGroup("embed", cfg.d_embed, (Axis("emb", 2), Axis("fc1.weight", 1))),
            UnitGroup("hidden", cfg.hidden, (Axis("fc1.weight", 2), Axis("fc1.bias", 2), Axis("fc2.weight", 1))),
        ))

    def activations(self, cfg, state, inputs: torch.Tensor, device="cpu") -> Features:
        """Pooled embeddings and hidden units of a K=1 state on tokens [N, T]."""
        model = self.model_from_state(cfg, state, device).eval()
        with torch.no_grad():
            x = inputs[None].to(device)
            return {"embed": [model.pooled(x)[0]], "hidden": [model.hidden(x)[0]]}

    def hidden_units(self, cfg, state, inputs: torch.Tensor, device="cpu") -> list[torch.Tensor]:
        """The hidden layer [K, N, h]."""
        model = self.model_from_state(cfg, state, device).eval()
        with torch.no_grad():
            return [model.hidden(inputs[None].to(device)).cpu()]
