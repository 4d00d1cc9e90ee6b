"""Causal transformer LM whose every weight carries a leading copy axis K.

One class builds the instability study's post-norm encoder-as-LM and the GPT-2 style
pre-norm models. A linear map is a [K, in, out] weight applied with baddbmm to
activations [K, tokens, in]; K=1 is an ordinary model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .. import rng
from ..nn import DropoutSource, StackedLayerNorm, StackedLinear, StackedRMSNorm, dropout, sinusoidal
from ..nn.activations import activation
from ..nn.linear_ce import linear_cross_entropy


def norm_layer(cfg: ModelConfig, k: int) -> nn.Module:
    """The normalisation of cfg.norm: LayerNorm with gain and bias per copy, RMSNorm without a gain, or none."""
    if cfg.norm == "layer":
        return StackedLayerNorm(k, cfg.d_model)
    return StackedRMSNorm() if cfg.norm == "rms" else nn.Identity()


class Block(nn.Module):
    """One transformer layer (post-norm encoder layer or pre-norm GPT block)."""

    def __init__(self, cfg: ModelConfig, k: int):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.attn_in = StackedLinear(k, d, 3 * d)
        self.attn_out = StackedLinear(k, d, d)
        self.ln1 = norm_layer(cfg, k)
        self.ff1 = StackedLinear(k, d, cfg.d_ff)
        self.ff2 = StackedLinear(k, cfg.d_ff, d)
        self.ln2 = norm_layer(cfg, k)

    def attention(self, x: torch.Tensor, b: int, t: int, drop: DropoutSource | None, site: int) -> torch.Tensor:
        """Causal multi-head self-attention; x [K, B*T, d]."""
        k, _, d = x.shape
        h = self.cfg.n_heads
        qkv = self.attn_in(x).view(k * b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # 3 x [K*B, H, T, hd]
        q, kk, v = qkv[0], qkv[1], qkv[2]
        p = self.cfg.dropout
        if drop is not None and p > 0:
            # explicit attention so the attention-weight dropout uses our per-copy masks
            scores = (q @ kk.transpose(-2, -1)) / math.sqrt(d // h)
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            w = scores.masked_fill(causal, float("-inf")).softmax(-1)
            keep = drop.keep(site, (b, h, t, t), p).view(k * b, h, t, t).to(w.dtype)
            out = (w * keep / (1 - p)) @ v
        else:
            out = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
        out = out.permute(0, 2, 1, 3).reshape(k, b * t, d)
        return self.attn_out(out)

    def forward(self, x: torch.Tensor, b: int, t: int, drop: DropoutSource | None, site: int) -> torch.Tensor:
        act = activation(self.cfg.activation)
        dp = dropout(drop, self.cfg.dropout)
        if self.cfg.arch == "postnorm":
            x = self.ln1(x + dp(self.attention(x, b, t, drop, site), site + 1))
            x = self.ln2(x + dp(self.ff2(dp(act(self.ff1(x)), site + 2)), site + 3))
        else:
            # GPT-2: dropout on the attention weights, after each residual branch and on the embeddings,
            # none inside the MLP (nn.TransformerEncoderLayer, the post-norm branch, has one there)
            x = x + dp(self.attention(self.ln1(x), b, t, drop, site), site + 1)
            x = x + dp(self.ff2(act(self.ff1(self.ln2(x)))), site + 3)
        return x


SITES_PER_LAYER = 4


class TransformerLM(nn.Module):
    """K copies of a causal LM held as one module; forward takes tokens [K or 1, B, T]."""

    def __init__(self, cfg: ModelConfig, k: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg, self.k = cfg, k
        d = cfg.d_model
        self.tok_emb = nn.Parameter(torch.empty(k, cfg.vocab_size, d))
        if cfg.positions == "learned":
            self.pos_emb = nn.Parameter(torch.empty(k, cfg.context, d))
        else:
            self.register_buffer("pos_table", sinusoidal(cfg.context, d), persistent=False)
        self.layers = nn.ModuleList(Block(cfg, k) for _ in range(cfg.n_layers))
        self.ln_f = norm_layer(cfg, k) if cfg.arch == "prenorm" and cfg.norm != "none" else None
        self.n_out = cfg.vocab_size if cfg.tie_embeddings else (cfg.n_out or cfg.vocab_size)
        self.head = None if cfg.tie_embeddings else StackedLinear(k, d, self.n_out)
        self.register_buffer("_copy_index", torch.arange(k).view(k, 1, 1), persistent=False)

    def forward(self, tokens: torch.Tensor, drop: DropoutSource | None = None) -> torch.Tensor:
        """Logits [K, B*T, V] for tokens [K, B, T] (or [1, B, T], shared by all copies)."""
        return self.logits(self.features(tokens, drop))

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output layer's weight [K, d, V] (a tied embedding's transposed view) and bias [K, 1, V] (None if tied)."""
        if self.head is None:
            return self.tok_emb.transpose(1, 2), None
        return self.head.weight, self.head.bias

    def logits(self, h: torch.Tensor, k0: int = 0, k1: int | None = None) -> torch.Tensor:
        """Output logits [k1-k0, N, V] of copies k0..k1 from their final features h [k1-k0, N, d]."""
        k1 = self.k if k1 is None else k1
        w, b = self.output_layer()
        return torch.bmm(h, w[k0:k1]) if b is None else torch.baddbmm(b[k0:k1], h, w[k0:k1])

    def features(self, tokens: torch.Tensor, drop: DropoutSource | None = None) -> torch.Tensor:
        """Final hidden states [K, B*T, d] (after the last layer / final LayerNorm)."""
        cfg = self.cfg
        _, b, t = tokens.shape
        if t > cfg.context:
            raise ValueError(f"sequence length {t} exceeds the model context {cfg.context}")
        # one embedding lookup into the [K*V, d] table (its CPU backward is deterministic, unlike
        # the index_put of advanced indexing)
        flat = tokens + self._copy_index * cfg.vocab_size  # [K, B, T] rows of the flattened table
        x = F.embedding(flat, self.tok_emb.reshape(-1, cfg.d_model))  # [K, B, T, d]
        if cfg.embed_scale:
            x = x * math.sqrt(cfg.d_model)
        x = x + (self.pos_emb[:, None, :t] if cfg.positions == "learned" else self.pos_table[:t])
        x = x.reshape(self.k, b * t, cfg.d_model)
        x = dropout(drop, cfg.dropout)(x, 0)
        for i, layer in enumerate(self.layers):
            x = layer(x, b, t, drop, 1 + SITES_PER_LAYER * i)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return x

    def copy_losses(self, h: torch.Tensor, targets: torch.Tensor, budget_mb: float | None = None,
                    fused: bool = False) -> torch.Tensor:
        """Mean next-token cross-entropy of each copy [K] from features h [K, N, d], targets [K, N].

        With budget_mb, the logits are formed in pieces of at most that size (copies x tokens), so
        no huge temporary is allocated (on CPU, allocations above 32 MB are fresh page-faulting
        mmaps every step); the result is the same. fused: the output layer and cross-entropy as one
        operation (`nn.linear_ce.linear_cross_entropy`; one backward only; budget_mb is then unused).
        """
        w, b = self.output_layer()
        if fused:
            return linear_cross_entropy(h, w, b, targets)
        k, n, _ = h.shape
        v = self.n_out
        if budget_mb is None:
            kc, nc = k, n
        else:
            per_token = v * 4
            nc = max(1, min(n, int(budget_mb * 2**20 // per_token)))
            kc = max(1, min(k, int(budget_mb * 2**20 // (per_token * nc))))
        # split (not slice): the backward of a split concatenates once instead of zero-filling a
        # full-size gradient per piece
        weights = zip(w.split(kc), [None] * k if b is None else b.split(kc))
        parts = []
        for hg, tg, (wg, bg) in zip(h.split(kc), targets.split(kc), weights):
            row = 0
            for hp, tp in zip(hg.split(nc, 1), tg.split(nc, 1)):
                z = torch.bmm(hp, wg) if bg is None else torch.baddbmm(bg, hp, wg)  # [kc, nc, V]
                ce = F.cross_entropy(z.reshape(-1, v).float(), tp.reshape(-1), reduction="none")
                row = row + ce.view(hg.shape[0], -1).sum(1)
            parts.append(row)
        return torch.cat(parts) / n

    @torch.no_grad()
    def init_weights(self, seeds: list[int]) -> "TransformerLM":
        """Initialise copy k from init seed seeds[k] (copies with equal seeds are identical)."""
        if len(seeds) != self.k:
            raise ValueError(f"need {self.k} init seeds, got {len(seeds)}")
        for k, s in enumerate(seeds):
            g = rng.generator(s, 0x1A17)
            for name, p in self.named_parameters():
                _init_param(self.cfg, name, p[k], g)
        return self


def _init_param(cfg: ModelConfig, name: str, p: torch.Tensor, g: torch.Generator) -> None:
    """Fill one copy's slice of a parameter; drawn on CPU so results do not depend on device."""
    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(p.shape, generator=g) * 2 - 1) * bound

    def normal(std: float) -> torch.Tensor:
        return torch.randn(p.shape, generator=g) * std

    leaf = name.rsplit(".", 1)[-1]
    if ".ln" in name or name.startswith("ln_f"):
        val = torch.ones(p.shape) if leaf == "weight" else torch.zeros(p.shape)
    elif cfg.init == "nanda":  # Nanda et al.'s grokking transformer: N(0, 1/d_model), unembedding N(0, 1/n_out)
        if leaf == "bias":
            val = torch.zeros(p.shape)
        elif name == "head.weight":
            val = normal(1.0 / math.sqrt(p.shape[-1]))
        else:
            val = normal(1.0 / math.sqrt(cfg.d_model))
    elif cfg.init == "gpt2":
        if name == "pos_emb":
            val = normal(0.01)
        elif leaf == "bias":
            val = torch.zeros(p.shape)
        else:
            val = normal(0.02)
    else:  # PyTorch word-LM tutorial: U(+-0.1) embedding/decoder, PyTorch defaults inside layers
        fan_in = p.shape[0]
        if name in ("tok_emb", "head.weight", "pos_emb"):
            val = uniform(0.1)
        elif name == "head.bias" or name.endswith(("attn_in.bias", "attn_out.bias")):
            val = torch.zeros(p.shape)
        elif name.endswith("attn_in.weight"):  # xavier_uniform on the [3d, d] in_proj
            val = uniform(math.sqrt(6.0 / (p.shape[0] + p.shape[1])))
        elif leaf == "weight":  # nn.Linear default: kaiming_uniform(a=sqrt 5) = U(+-1/sqrt(fan_in))
            val = uniform(1.0 / math.sqrt(fan_in))
        else:  # nn.Linear bias default U(+-1/sqrt(fan_in)); fan_in from the matching weight
            val = uniform(1.0 / math.sqrt(_fan_in(cfg, name)))
    p.copy_(val.to(p.dtype))


def _fan_in(cfg: ModelConfig, name: str) -> int:
    return cfg.d_ff if name.endswith("ff2.bias") else cfg.d_model
