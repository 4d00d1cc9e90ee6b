"""BERT-style encoder classifier whose every weight carries a leading copy axis K.

Post-norm BERT (Devlin et al.; the layout of transformers' BertModel): word + learned position +
token-type embeddings, embedding LayerNorm, L layers of [self-attention -> dropout -> (adapter)
-> LayerNorm(x + .)] and [dense -> exact GELU -> dense -> dropout -> (adapter) -> LayerNorm(x + .)],
a tanh pooler on the [CLS] position and a classification head [K, d, C] after dropout. Padded keys
are masked in attention. Defaults are the 6-layer MiniLM (all-MiniLM-L6-v2).

State keys (each tensor [K, ...]): ``word_emb`` [K, V, d], ``pos_emb`` [K, P, d], ``type_emb``
[K, 2, d], ``emb_ln.{weight,bias}``, ``layers.{i}.{query,key,value,attn_out,ff1,ff2}.{weight,bias}``
(weights [K, in, out]), ``layers.{i}.{ln1,ln2}.{weight,bias}``, ``pooler.{weight,bias}``,
``head.{weight,bias}`` ([K, d, C], [K, 1, C]); with adapters
``layers.{i}.adapter_{attn,ff}.{down,up}.{weight,bias}``; with LoRA ``layers.{i}.<target>.lora_{a,b}``.

Dropout sites (per-copy masks from :class:`DropoutSource`, independent of K): 0 embeddings,
1 + 3i attention weights, 2 + 3i attention output, 3 + 3i FFN output of layer i, 1 + 3L the
pooled features before the classifier.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..config import ConfigError
from .adapters import (ADAPTER_ACTIVATIONS, Adapter, LoRALinear, init_adapter_param, init_lora_param, is_adapter,
                       is_layer_norm, is_lora)
from ..nn import DropoutSource, StackedLayerNorm, StackedLinear, dropout

LORA_TARGETS: tuple[str, ...] = ("query", "key", "value", "attn_out", "ff1", "ff2")
SITES_PER_LAYER = 3
State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class EncoderConfig:
    """A BERT-family encoder classifier (defaults: the 6-layer MiniLM, d=384) and its tuning modules."""

    vocab_size: int = 30522
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 12
    d_ff: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1  # hidden dropout (embeddings, sublayer outputs, before the classifier)
    attention_dropout: float = 0.1
    n_classes: int = 2
    pad_token_id: int = 0
    init_std: float = 0.02  # BERT's initializer_range
    adapter: int | None = None  # Houlsby bottleneck size; None = no adapters
    adapter_activation: str = "gelu"
    adapter_init_std: float = 1e-3
    lora_rank: int = 0  # 0 = no LoRA
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("query", "value")
    # run-level choices (lmc_core.families.encoder): where the backbone comes from, what is tuned,
    # and whether the word-embedding table is cut down to the WordPiece ids that occur in Shakespeare
    pretrained: str = "none"  # "none" (random init, "from scratch") | "minilm" (the shipped MiniLM)
    tune: str = "full"  # "full" | "adapter" | "lora" (lmc_core.models.adapters.tuning_plan)
    vocab: str = "full"  # "full" | "shakespeare"

    def validate(self) -> "EncoderConfig":
        """Raise ConfigError saying what to change if a field is out of range."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_positions", "type_vocab"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name}={v!r} must be a positive integer")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ConfigError(f"n_classes={self.n_classes!r} must be an integer >= 2")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"layer_norm_eps={self.layer_norm_eps} must be positive")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id={self.pad_token_id} must be a token id below vocab_size={self.vocab_size}")
        if self.adapter is not None and (not isinstance(self.adapter, int) or self.adapter <= 0):
            raise ConfigError(f"adapter={self.adapter!r} must be None (no adapters) or a positive bottleneck size")
        if self.adapter_activation not in ADAPTER_ACTIVATIONS:
            raise ConfigError(f"adapter_activation={self.adapter_activation!r} is not valid; choose one of "
                              f"{list(ADAPTER_ACTIVATIONS)}")
        if self.adapter_init_std < 0 or self.init_std <= 0:
            raise ConfigError("init_std must be positive and adapter_init_std non-negative")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ConfigError(f"lora_rank={self.lora_rank!r} must be 0 (no LoRA) or a positive integer")
        if self.lora_rank and not self.lora_alpha > 0:
            raise ConfigError(f"lora_alpha={self.lora_alpha} must be positive")
        if self.pretrained not in ("none", "minilm"):
            raise ConfigError(f"pretrained={self.pretrained!r}; choose 'minilm' (offline) or 'none' (from scratch)")
        if self.tune not in ("full", "adapter", "lora"):
            raise ConfigError(f"tune={self.tune!r}; choose one of ['full', 'adapter', 'lora']")
        if self.tune == "adapter" and not self.adapter:
            raise ConfigError("tune='adapter' needs adapters: set adapter=<bottleneck size>, e.g. 24")
        if self.tune == "lora" and not self.lora_rank:
            raise ConfigError("tune='lora' needs LoRA: set lora_rank=<rank>, e.g. 8")
        if self.vocab not in ("full", "shakespeare"):
            raise ConfigError(f"vocab={self.vocab!r}; choose 'full' or 'shakespeare'")
        bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if bad or (self.lora_rank and not self.lora_targets):
            raise ConfigError(f"lora_targets={list(self.lora_targets)} must be a non-empty subset of "
                              f"{list(LORA_TARGETS)}")
        return self


class EncoderLayer(nn.Module):
    """One post-norm BERT layer for K copies (optional adapters / LoRA)."""

    def __init__(self, cfg: EncoderConfig, k: int):
        super().__init__()
        d, eps = cfg.d_model, cfg.layer_norm_eps
        targets = cfg.lora_targets if cfg.lora_rank else ()

        def linear(name: str, d_in: int, d_out: int) -> StackedLinear:
            if name in targets:
                return LoRALinear(k, d_in, d_out, cfg.lora_rank, cfg.lora_alpha)
            return StackedLinear(k, d_in, d_out)

        self.cfg = cfg
        self.query, self.key, self.value = (linear(n, d, d) for n in ("query", "key", "value"))
        self.attn_out = linear("attn_out", d, d)
        self.ln1 = StackedLayerNorm(k, d, eps)
        self.ff1 = linear("ff1", d, cfg.d_ff)
        self.ff2 = linear("ff2", cfg.d_ff, d)
        self.ln2 = StackedLayerNorm(k, d, eps)
        a = cfg.adapter
        self.adapter_attn = Adapter(k, d, a, cfg.adapter_activation) if a else None
        self.adapter_ff = Adapter(k, d, a, cfg.adapter_activation) if a else None

    def attention(self, x: torch.Tensor, b: int, t: int, keys: torch.Tensor | None, drop: DropoutSource | None,
                  site: int) -> torch.Tensor:
        """Bidirectional multi-head self-attention; x [K, B*T, d], keys [K*B, 1, 1, T] (True = attend)."""
        k, _, d = x.shape
        h = self.cfg.n_heads

        def heads(z: torch.Tensor) -> torch.Tensor:  # [K, B*T, d] -> [K*B, H, T, hd]
            return z.view(k * b, t, h, d // h).transpose(1, 2)

        q, kk, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        p = self.cfg.attention_dropout
        if drop is not None and p > 0:
            # explicit attention so the attention-weight dropout uses our per-copy masks
            scores = (q @ kk.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))
            if keys is not None:
                scores = scores.masked_fill(~keys, float("-inf"))
            keep = drop.keep(site, (b, h, t, t), p).view(k * b, h, t, t)
            out = (scores.softmax(-1) * keep * (1.0 / (1 - p))) @ v
        else:
            out = F.scaled_dot_product_attention(q, kk, v, attn_mask=keys)
        return self.attn_out(out.transpose(1, 2).reshape(k, b * t, d))

    def forward(self, x: torch.Tensor, b: int, t: int, keys: torch.Tensor | None, drop: DropoutSource | None,
                site: int) -> torch.Tensor:
        dp = dropout(drop, self.cfg.dropout)
        a = dp(self.attention(x, b, t, keys, drop, site), site + 1)
        if self.adapter_attn is not None:
            a = self.adapter_attn(a)
        x = self.ln1(x + a)
        f = dp(self.ff2(F.gelu(self.ff1(x))), site + 2)
        if self.adapter_ff is not None:
            f = self.adapter_ff(f)
        return self.ln2(x + f)


class EncoderClassifier(nn.Module):
    """K copies of a BERT encoder + pooler + classifier; forward(ids [K or 1, B, T]) -> logits [K, B, C]."""

    def __init__(self, cfg: EncoderConfig, k: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg, self.k = cfg, k
        d = cfg.d_model
        self.word_emb = nn.Parameter(torch.zeros(k, cfg.vocab_size, d))
        self.pos_emb = nn.Parameter(torch.zeros(k, cfg.max_positions, d))
        self.type_emb = nn.Parameter(torch.zeros(k, cfg.type_vocab, d))
        self.emb_ln = StackedLayerNorm(k, d, cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg, k) for _ in range(cfg.n_layers))
        self.pooler = StackedLinear(k, d, d)
        self.head = StackedLinear(k, d, cfg.n_classes)
        self.register_buffer("_copy_index", torch.arange(k).view(k, 1, 1), persistent=False)

    @classmethod
    def from_state(cls, cfg: EncoderConfig, state: State, device: str | torch.device = "cpu") -> "EncoderClassifier":
        """A model with K = copies in `state`, holding exactly these weights."""
        model = cls(cfg, next(iter(state.values())).shape[0]).to(device)
        model.load_state_dict(state)
        return model

    # ------------------------------------------------------------------ forward

    def _inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                token_type_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Bring ids/masks to [K or 1, B, T] and check them."""
        def lift(z: torch.Tensor | None) -> torch.Tensor | None:
            if z is None:
                return None
            z = z[None] if z.dim() == 2 else z
            if z.dim() != 3 or z.shape[0] not in (1, self.k):
                raise ValueError(f"expected [B, T], [1, B, T] or [K={self.k}, B, T], got {tuple(z.shape)}")
            return z

        ids, mask, types = lift(input_ids), lift(attention_mask), lift(token_type_ids)
        if ids.shape[-1] > self.cfg.max_positions:
            raise ValueError(f"sequence length {ids.shape[-1]} exceeds max_positions={self.cfg.max_positions}")
        return ids, mask, types

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None, drop: DropoutSource | None = None,
                      all_layers: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Last hidden states [K, B, T, d] (or, with all_layers, the embedding output and every layer's)."""
        cfg, k = self.cfg, self.k
        ids, mask, types = self._inputs(input_ids, attention_mask, token_type_ids)
        _, b, t = ids.shape
        d = cfg.d_model
        # one lookup into the [K*V, d] table (deterministic CPU backward, unlike advanced indexing)
        x = F.embedding(ids + self._copy_index * cfg.vocab_size, self.word_emb.reshape(-1, d))  # [K, B, T, d]
        x = x + self.pos_emb[:, None, :t]
        if types is None:
            x = x + self.type_emb[:, None, None, 0]
        else:
            x = x + F.embedding(types + self._copy_index * cfg.type_vocab, self.type_emb.reshape(-1, d))
        x = dropout(drop, cfg.dropout)(self.emb_ln(x.reshape(k, b * t, d)), 0)
        keys = None
        # a batch without padding skips the mask; a compiled step always applies it (the check would break the graph)
        if mask is not None and (torch.compiler.is_compiling() or not bool(mask.all())):
            keys = mask.bool().expand(k, b, t).reshape(k * b, 1, 1, t)
        out = [x] if all_layers else None
        for i, layer in enumerate(self.layers):
            x = layer(x, b, t, keys, drop, 1 + SITES_PER_LAYER * i)
            if out is not None:
                out.append(x)
        if out is not None:
            return [z.view(k, b, t, d) for z in out]
        return x.view(k, b, t, d)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """Pooled features [K, B, d] = tanh(dense(hidden[:, :, 0])) from hidden states [K, B, T, d]."""
        return torch.tanh(self.pooler(hidden[:, :, 0]))

    def classify(self, pooled: torch.Tensor, drop: DropoutSource | None = None) -> torch.Tensor:
        """Logits [K, B, C] from pooled features [K, B, d] (dropout before the classifier)."""
        x = dropout(drop, self.cfg.dropout)(pooled, 1 + SITES_PER_LAYER * self.cfg.n_layers)
        return self.head(x)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None,
                 drop: DropoutSource | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states [K, B, T, d], pooled features [K, B, d])."""
        h = self.hidden_states(input_ids, attention_mask, token_type_ids, drop)
        return h, self.pool(h)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, drop: DropoutSource | None = None) -> torch.Tensor:
        """Logits [K, B, C] for token ids [K or 1, B, T] (1 = shared by all copies)."""
        return self.classify(self.features(input_ids, attention_mask, token_type_ids, drop)[1], drop)

    @staticmethod
    def copy_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each copy [K] from logits [K, B, C] and labels [B] or [K, B]."""
        k, b, c = logits.shape
        labels = labels.expand(k, b) if labels.dim() == 1 else labels
        return F.cross_entropy(logits.reshape(-1, c).float(), labels.reshape(-1), reduction="none").view(k, b).mean(1)

    # ------------------------------------------------------------------ initialisation

    @torch.no_grad()
    def init_weights(self, seeds: list[int], only: Callable[[str], bool] | None = None) -> "EncoderClassifier":
        """Initialise copy k from seed seeds[k]; each tensor is a pure function of (seed, its name).

        BERT init: N(0, init_std) weights and embeddings (pad row zero), zero biases, unit LayerNorms;
        adapters and LoRA as in lmc_core.models.adapters. `only` restricts which names are filled.
        """
        if len(seeds) != self.k:
            raise ValueError(f"need {self.k} seeds, got {len(seeds)}")
        for name, p in self.named_parameters():
            if only is not None and not only(name):
                continue
            for k, s in enumerate(seeds):
                g = rng.generator(s, 0xE2C0, name_key(name))
                _init_param(self.cfg, name, p[k], g)
        return self


def name_key(name: str) -> int:
    """A stable 63-bit integer for a parameter name (a site for rng.generator)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") >> 1


def _init_param(cfg: EncoderConfig, name: str, p: torch.Tensor, g: torch.Generator) -> None:
    """Fill one copy's slice of a parameter; drawn on CPU so results do not depend on device."""
    if is_adapter(name):
        init_adapter_param(name, p, g, cfg.adapter_init_std)
        return
    if is_lora(name):
        init_lora_param(name, p, g)
        return
    if is_layer_norm(name):
        val = torch.ones(p.shape) if name.endswith("weight") else torch.zeros(p.shape)
    elif name.endswith("bias"):
        val = torch.zeros(p.shape)
    else:
        val = torch.randn(p.shape, generator=g) * cfg.init_std
        if name == "word_emb":
            val[cfg.pad_token_id] = 0.0
    p.copy_(val.to(p.dtype))
