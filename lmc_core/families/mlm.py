"""The masked-language-model family (notebook 05's pretraining): a small BERT encoder trained by masked-token
prediction on windows of the plays (lmc_core.data.strategies, task "mlm").

Examples hold input_ids [N, T], attention_mask [N, T], and a fixed number m of predicted positions per window:
mlm_positions [N, m] and mlm_labels [N, m] (static masking), so every copy's batch has the same number of
predictions and the outputs stack to [K, B*m, V]. The data config type of this family, PlaysTaskConfig, also
describes the fine-tuning tasks built from the same words (their runs are encoder-family runs).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .. import rng
from ..config import ConfigError
from ..data.batches import Examples
from ..data.strategies import PlaysTaskConfig
from ..models.mlm import MaskedLM, MaskedLMConfig
from .base import Family, FamilyExample


class MaskedLMFamily(Family):
    """MaskedLM on Examples(input_ids, attention_mask, mlm_positions, mlm_labels); one example per window, its
    loss the mean over its predicted positions (cross-entropy over the vocabulary)."""

    name = "mlm"
    config_type = MaskedLMConfig
    data_type = PlaysTaskConfig
    metrics = ("loss", "error")

    def build(self, cfg: MaskedLMConfig, k: int) -> MaskedLM:
        """K-copy masked LM."""
        return MaskedLM(cfg, k)

    def example(self) -> FamilyExample:
        """A one-layer masked LM (vocabulary 40) on 16 windows of 8 tokens with 2 predicted positions each."""
        cfg = MaskedLMConfig(vocab_size=40, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_positions=8).validate()
        g = rng.generator(0, 0x3E4)
        ids = torch.randint(5, 40, (16, 8), generator=g)
        ids[:, 0], ids[:, -1] = 2, 3
        pos = torch.stack([torch.randperm(6, generator=g)[:2].sort().values + 1 for _ in range(16)])
        labels = ids.gather(1, pos)
        ids = ids.scatter(1, pos, torch.full_like(pos, 4))
        return FamilyExample(cfg, PlaysTaskConfig(task="mlm", words=6, vocab_size=64),
                             Examples(input_ids=ids, attention_mask=torch.ones_like(ids), mlm_positions=pos,
                                      mlm_labels=labels))

    def n_classes(self, cfg: MaskedLMConfig) -> int:
        """The vocabulary."""
        return cfg.vocab_size

    def _check(self, cfg: MaskedLMConfig, ex: Examples, what: str) -> Examples:
        need = {"input_ids", "attention_mask", "mlm_positions", "mlm_labels"}
        if not need <= set(ex.tensors):
            raise ConfigError(f"the {what} need tensors {sorted(need)} (lmc_core.data.strategies, task 'mlm'); got "
                              f"{sorted(ex.tensors)}")
        ids = ex["input_ids"]
        if int(ids.max()) >= cfg.vocab_size or ids.shape[1] > cfg.max_positions:
            raise ConfigError(f"the {what} (token ids < {int(ids.max()) + 1}, {ids.shape[1]} tokens) do not fit the "
                              f"model (vocab_size {cfg.vocab_size}, max_positions {cfg.max_positions}); build the "
                              "data with the model's vocab_size")
        return Examples(**{n: ex[n] for n in sorted(need)})

    def train_examples(self, spec, source: Examples) -> Examples:
        """The training windows, checked against the model."""
        return self._check(spec.model, source, "training examples")

    def eval_examples(self, cfg: MaskedLMConfig, source: Examples, limit: int | None = None) -> Examples:
        """The first `limit` windows."""
        return self._check(cfg, source, "evaluation examples").head(limit)

    def outputs(self, model: MaskedLM, batch, drop=None):
        """Logits [K, B*m, V] at the predicted positions and their labels [K or 1, B*m]."""
        logits = model.predict(batch["input_ids"], batch["mlm_positions"], batch["attention_mask"], drop)
        labels = batch["mlm_labels"]
        return logits, labels.reshape(labels.shape[0], -1)

    def eval_bytes_per_example(self, cfg: MaskedLMConfig) -> int:
        """Logits of a window's predicted positions (at most a quarter of the window) and their temporaries."""
        return max(1, cfg.max_positions // 4) * cfg.vocab_size * 4 * 3


def masked_lm_config(**overrides) -> MaskedLMConfig:
    """A MaskedLMConfig with overrides, validated."""
    try:
        return replace(MaskedLMConfig(), **overrides).validate()
    except TypeError as e:
        raise ConfigError(f"bad masked-LM field: {e}") from None
