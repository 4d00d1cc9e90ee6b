"""A BERT encoder with BERT's masked-token prediction head, K copies with a leading copy axis: the small
encoder notebook 05 pretrains on Shakespeare's plays before fine-tuning many copies of it.

The backbone is `EncoderClassifier`'s (same state keys: ``word_emb``, ``pos_emb``, ``type_emb``, ``emb_ln.*``,
``layers.*``), so a pretrained state loads into an encoder classifier as is; the classifier's pooler and head
are not part of this model (a fine-tune draws them from its own seed). The prediction head is BERT's
(Devlin et al. 2019; transformers' BertLMPredictionHead): dense d -> d, exact GELU, LayerNorm, then the
decoder tied to the word embeddings plus a bias: logits = LN(gelu(h W + b)) E^T + c.

State keys of the head: ``mlm_dense.{weight,bias}`` ([K, d, d], [K, 1, d]), ``mlm_ln.{weight,bias}``
([K, 1, d]) and ``mlm_bias`` ([K, 1, V]).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import DropoutSource, StackedLayerNorm, StackedLinear
from .encoder import EncoderClassifier, EncoderConfig


@dataclass(frozen=True)
class MaskedLMConfig(EncoderConfig):
    """A small BERT encoder for masked-token pretraining (defaults: 2 layers, d=32, the plays' 512-token
    compact vocabulary of lmc_core.data.strategies). n_classes is unused (the output is the vocabulary)."""

    vocab_size: int = 512
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    max_positions: int = 64
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def encoder(self, n_classes: int = 2, **overrides) -> EncoderConfig:
        """The encoder-classifier config with this backbone (what the fine-tunes are)."""
        fields = {f: getattr(self, f) for f in EncoderConfig.__dataclass_fields__}
        fields.update(n_classes=n_classes, **overrides)
        return EncoderConfig(**fields).validate()


class MaskedLM(EncoderClassifier):
    """K copies of a BERT encoder with the masked-token prediction head (module docstring)."""

    def __init__(self, cfg: MaskedLMConfig, k: int = 1):
        super().__init__(cfg, k)
        del self.pooler, self.head  # a classifier's parts, not pretrained here
        d = cfg.d_model
        self.mlm_dense = StackedLinear(k, d, d)
        self.mlm_ln = StackedLayerNorm(k, d, cfg.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(k, 1, cfg.vocab_size))

    @torch.no_grad()
    def init_weights(self, seeds: list[int], only=None) -> "MaskedLM":
        """BERT init of copy k from seeds[k] (lmc_core.models.encoder); the head's LayerNorm starts as identity."""
        super().init_weights(seeds, only)
        self.mlm_ln.weight.fill_(1.0)
        self.mlm_ln.bias.zero_()
        return self

    def predict(self, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None = None,
                drop: DropoutSource | None = None) -> torch.Tensor:
        """Vocabulary logits [K, B*m, V] at `positions` [K or 1, B, m] of input_ids [K or 1, B, T]."""
        h = self.hidden_states(input_ids, attention_mask, None, drop)  # [K, B, T, d]
        k, b, t, d = h.shape
        pos = positions.expand(k, *positions.shape[1:])  # [K, B, m]
        m = pos.shape[-1]
        x = h.gather(2, pos[..., None].expand(k, b, m, d)).reshape(k, b * m, d)
        x = self.mlm_ln(F.gelu(self.mlm_dense(x)))
        return torch.baddbmm(self.mlm_bias, x, self.word_emb.transpose(1, 2))  # [K, B*m, V]

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None = None,
                drop: DropoutSource | None = None) -> torch.Tensor:
        """Same as `predict`."""
        return self.predict(input_ids, positions, attention_mask, drop)


def backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder backbone of a masked-LM state (everything but the prediction head): what a fine-tune starts
    from."""
    return {n: t for n, t in state.items() if not n.startswith("mlm_")}
