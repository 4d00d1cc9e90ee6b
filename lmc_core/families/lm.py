"""The causal transformer language model (notebooks 01, 02, 04): next-token prediction on a token stream."""
from __future__ import annotations

from dataclasses import replace

import torch

from ..align.orthogonal import ResidualSpec
from ..align.spec import RESIDUAL, Axis, Group, HeadGroup, PermutationSpec, UnitGroup
from ..config import ConfigError, DataConfig, ModelConfig
from ..data.batches import Examples
from ..data.loader import windows
from ..models.transformer import TransformerLM
from ..nn.linear_ce import FUSED_EVAL_MIN_CLASSES, token_losses
from ..nn.activations import activation
from .. import rng
from .base import Family, FamilyExample, Features


def check_tokens(tokens: torch.Tensor, vocab_size: int, what: str = "training tokens") -> None:
    """Raise ConfigError unless every token id lies in [0, vocab_size)."""
    if tokens.numel() == 0:
        raise ConfigError(f"the {what} are empty")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ConfigError(f"the {what} hold ids in [{lo}, {hi}] but the model's vocab_size is {vocab_size}; "
                          "build the model with vocab_size = the corpus vocabulary (len(corpus.vocab))")


def next_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Targets [K or 1, B*T] of a batch: the next tokens, or its `targets` (Hugging Face batches, data.hf_batches:
    IGNORE_INDEX where the next token is padding or a -100 label)."""
    tokens = batch["tokens"]
    return (batch["targets"] if "targets" in batch else tokens[..., 1:]).reshape(tokens.shape[0], -1)


class LMFamily(Family):
    """TransformerLM (post-norm PTB model or GPT-2 style pre-norm) on windows of a token stream."""

    name = "lm"
    config_type = ModelConfig
    data_type = DataConfig
    metrics = ("loss", "ppl", "error")

    def build(self, cfg: ModelConfig, k: int) -> TransformerLM:
        """K-copy TransformerLM."""
        return TransformerLM(cfg, k)

    def example(self) -> FamilyExample:
        """A 2-layer pre-norm LM (learned positions, so the residual stream is permuted) with dropout."""
        cfg = ModelConfig(arch="prenorm", vocab_size=20, d_model=16, n_layers=2, n_heads=2, d_ff=24, context=6,
                          dropout=0.1, positions="learned", activation="gelu", embed_scale=False, init="gpt2")
        tokens = torch.randint(0, 20, (24, 7), generator=rng.generator(0, 0xE7A))
        return FamilyExample(cfg, DataConfig(level="char"), Examples(tokens=tokens), tokens[:, :-1])

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
        """Next-token logits [K, B*T, V] and targets [K or 1, B*T]: the next tokens, or the batch's `targets` (Hugging
        Face batches, data.hf_batches: IGNORE_INDEX where the next token is padding or a -100 label)."""
        tokens = batch["tokens"]
        return model(tokens[..., :-1], drop), next_tokens(batch)

    fused_cross_entropy = True

    def loss(self, model: TransformerLM, batch, drop=None, budget_mb: float | None = None,
             fused: bool = False) -> torch.Tensor:
        """Mean next-token cross-entropy of each copy [K]; the logits are formed in pieces under budget_mb, or by
        the fused output layer and cross-entropy (`fused`, lmc_core.nn.linear_ce)."""
        tokens = batch["tokens"]
        k = model.k
        h = model.features(tokens[..., :-1], drop)  # [K, B*T, d]
        return model.copy_losses(h, tokens[..., 1:].reshape(tokens.shape[0], -1).expand(k, -1), budget_mb,
                                 fused)

    def example_losses(self, model: TransformerLM, batch):
        """Per-token loss and top-1 correctness from the fused output layer (nn.linear_ce.token_losses) where the
        vocabulary has FUSED_EVAL_MIN_CLASSES entries or more; None below (the logits route is as fast there)."""
        if model.n_out < FUSED_EVAL_MIN_CLASSES:
            return None
        targets = next_tokens(batch)
        ce, hit = token_losses(model.features(batch["tokens"][..., :-1]), *model.output_layer(), targets)
        return ce, hit, targets

    def eval_bytes_per_example(self, cfg: ModelConfig) -> int:
        """Logits and softmax temporaries of one window."""
        return cfg.context * cfg.vocab_size * 4 * 3

    def head_keys(self, cfg: ModelConfig, state) -> set[str]:
        """The untied output layer."""
        return {k for k in state if k.startswith("head.")}

    def perm_spec(self, cfg: ModelConfig) -> PermutationSpec:
        """Residual stream (learned positions only), attention heads and MLP units per block."""
        return transformer_spec(cfg)

    def residual_maps(self, cfg: ModelConfig, state) -> tuple[ModelConfig, dict, ResidualSpec]:
        """Pre-norm models with learned positions: LayerNorm folded into a gain-free RMSNorm (orthogonal maps);
        without normalisation, invertible maps (see transformer_residual_maps)."""
        return transformer_residual_maps(cfg, state)

    def activations(self, cfg: ModelConfig, state, inputs: torch.Tensor, device="cpu") -> Features:
        """Activations of a K=1 state on tokens [B, T] (see transformer_activations)."""
        return transformer_activations(self.model_from_state(cfg, state, device), inputs.to(device))

    def hidden_units(self, cfg: ModelConfig, state, inputs: torch.Tensor, device="cpu") -> list[torch.Tensor]:
        """MLP units after the activation, one [K, B*T, d_ff] per block, on tokens [B, T]."""
        return transformer_hidden_units(self.model_from_state(cfg, state, device), inputs.to(device))


def transformer_spec(cfg: ModelConfig) -> PermutationSpec:
    """MLP units ('layers.{i}.ff'), heads ('layers.{i}.heads') and the residual stream ('residual').

    The residual permutation is one permutation of the d_model axis shared by tok_emb, pos_emb,
    every block's reads (attn_in, ff1 rows) and writes (attn_out, ff2 columns and biases), every
    LayerNorm's weight and bias (LayerNorm is equivariant to permuting its axis), ln_f and the
    unembedding (head.weight rows; with tied embeddings the unembedding is tok_emb itself, one
    tensor permuted once, so the weights stay tied). With positions="sinusoidal" the fixed position
    table cannot be permuted, so the spec has no residual permutation (the residual stream stays
    in place; `notes` says so).
    """
    cfg.validate()
    d, h = cfg.d_model, cfg.n_heads
    groups: list[Group] = []
    residual = [Axis("tok_emb", 2)] + ([Axis("pos_emb", 2)] if cfg.positions == "learned" else [])
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        groups.append(HeadGroup(p + "heads", h, d // h,
                                qk=(Axis(p + "attn_in.weight", 2, 0), Axis(p + "attn_in.weight", 2, d),
                                    Axis(p + "attn_in.bias", 2, 0), Axis(p + "attn_in.bias", 2, d)),
                                vo=(Axis(p + "attn_in.weight", 2, 2 * d), Axis(p + "attn_in.bias", 2, 2 * d),
                                    Axis(p + "attn_out.weight", 1))))
        groups.append(UnitGroup(p + "ff", cfg.d_ff, (Axis(p + "ff1.weight", 2), Axis(p + "ff1.bias", 2),
                                                     Axis(p + "ff2.weight", 1))))
        residual += [Axis(p + "attn_in.weight", 1), Axis(p + "attn_out.weight", 2), Axis(p + "attn_out.bias", 2),
                     Axis(p + "ff1.weight", 1), Axis(p + "ff2.weight", 2), Axis(p + "ff2.bias", 2)]
        if cfg.norm == "layer":
            residual += [Axis(p + f"{ln}.{w}", 2) for ln in ("ln1", "ln2") for w in ("weight", "bias")]
    if cfg.arch == "prenorm" and cfg.norm == "layer":
        residual += [Axis("ln_f.weight", 2), Axis("ln_f.bias", 2)]
    if not cfg.tie_embeddings:
        residual.append(Axis("head.weight", 1))
    if cfg.positions == "learned":
        return PermutationSpec((UnitGroup(RESIDUAL, d, tuple(residual)), *groups))
    return PermutationSpec(tuple(groups), notes=("residual stream not permuted: the sinusoidal position table "
                                                 "is fixed, so only the identity keeps the function",))


def residual_places(cfg: ModelConfig) -> tuple[list[Axis], list[Axis]]:
    """(writes, reads) of the residual stream: the embeddings and every block's output projections (and biases)
    write it, every block's input projections and an untied unembedding read it (copy axis counted). With tied
    embeddings the table is listed once, as a write (it is read as its own transpose)."""
    writes = [Axis("tok_emb", 2)] + ([Axis("pos_emb", 2)] if cfg.positions == "learned" else [])
    reads: list[Axis] = []
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        writes += [Axis(p + "attn_out.weight", 2), Axis(p + "attn_out.bias", 2), Axis(p + "ff2.weight", 2),
                   Axis(p + "ff2.bias", 2)]
        reads += [Axis(p + "attn_in.weight", 1), Axis(p + "ff1.weight", 1)]
    if not cfg.tie_embeddings:
        reads.append(Axis("head.weight", 1))
    return writes, reads


@torch.no_grad()
def fold_layernorm(cfg: ModelConfig, state: dict) -> tuple[ModelConfig, dict]:
    """The same function with every LayerNorm a gain-free RMSNorm (SliceGPT, Ashkboos et al. 2024, Sec. 3).

    Pre-norm only. (1) Untie the unembedding (head.weight = tok_embᵀ, head.bias = 0). (2) Centre every write into
    the residual stream (embeddings, attn_out and ff2 weights and biases, x -> x - mean(x)): every LayerNorm
    subtracts the mean of its input anyway and nothing else reads the stream, so the function is unchanged, and
    the stream is now mean-zero, where LayerNorm(x) = gain * x / rms(x) + bias. (3) Fold each LayerNorm's gain and
    bias into the linear map that reads it: W -> diag(gain) W, b -> b + bias W (ln1 -> attn_in, ln2 -> ff1,
    ln_f -> head). The result has cfg.norm = "rms" and no norm parameters. State [K, ...] in, [K, ...] out.
    """
    if cfg.arch != "prenorm" or cfg.norm != "layer":
        raise ValueError(f"fold_layernorm takes a pre-norm LayerNorm model, got arch={cfg.arch!r}, norm={cfg.norm!r}")
    s = {n: t.clone() for n, t in state.items()}
    if cfg.tie_embeddings:
        s["head.weight"] = s["tok_emb"].transpose(1, 2).clone()  # [K, d, V]
        s["head.bias"] = torch.zeros(s["tok_emb"].shape[0], 1, s["tok_emb"].shape[1], dtype=s["tok_emb"].dtype,
                                     device=s["tok_emb"].device)
    writes, _ = residual_places(cfg)
    for ax in writes:  # every write has the residual axis last
        s[ax.param] = s[ax.param] - s[ax.param].mean(-1, keepdim=True)

    def fold(ln: str, lin: str) -> None:
        g, b = s.pop(ln + ".weight"), s.pop(ln + ".bias")  # [K, 1, d]
        w = s[lin + ".weight"]  # [K, d, out]
        s[lin + ".bias"] = s[lin + ".bias"] + torch.bmm(b.double(), w.double()).to(w.dtype)
        s[lin + ".weight"] = g.transpose(1, 2) * w

    for i in range(cfg.n_layers):
        fold(f"layers.{i}.ln1", f"layers.{i}.attn_in")
        fold(f"layers.{i}.ln2", f"layers.{i}.ff1")
    fold("ln_f", "head")
    return replace(cfg, norm="rms", tie_embeddings=False), s


def transformer_residual_maps(cfg: ModelConfig, state: dict) -> tuple[ModelConfig, dict, ResidualSpec]:
    """(cfg', state', spec) in which residual-stream maps keep the function (Family.residual_maps).

    norm="layer" (pre-norm): LayerNorm folded into a gain-free RMSNorm (fold_layernorm), orthogonal maps;
    norm="rms": orthogonal maps as is; norm="none": every invertible map, the embeddings untied if tied (the table
    cannot be both E M and (M⁻¹ Eᵀ)ᵀ). A fixed sinusoidal position table and a post-norm LayerNorm (which sits on
    the stream itself) admit no such map: ConfigError, naming what to change.
    """
    cfg.validate()
    if cfg.positions != "learned":
        raise ConfigError("residual maps need positions='learned': the fixed sinusoidal table is added to the stream "
                          "and cannot be mapped with it")
    if cfg.arch == "postnorm" and cfg.norm != "none":
        raise ConfigError("residual maps need arch='prenorm' (or norm='none'): a post-norm LayerNorm acts on the "
                          "residual stream itself, coordinate by coordinate")
    if cfg.norm == "layer":
        cfg, state = fold_layernorm(cfg, state)
    elif cfg.norm == "none" and cfg.tie_embeddings:
        state = {**state, "head.weight": state["tok_emb"].transpose(1, 2).clone(),
                 "head.bias": torch.zeros(state["tok_emb"].shape[0], 1, cfg.vocab_size, dtype=state["tok_emb"].dtype,
                                          device=state["tok_emb"].device)}
        cfg = replace(cfg, tie_embeddings=False)
    writes, reads = residual_places(cfg)
    group = "invertible" if cfg.norm == "none" else "orthogonal"
    note = ("no normalisation: every invertible map of the stream keeps the function" if group == "invertible" else
            "RMSNorm without gain between writes and reads: orthogonal maps keep the function")
    return cfg, state, ResidualSpec(cfg.d_model, tuple(writes), tuple(reads), group, (note,))


@torch.no_grad()
def transformer_activations(model: TransformerLM, tokens: torch.Tensor) -> Features:
    """Unit activations of a K=1 TransformerLM on tokens [B, T] (eval mode, no dropout), keyed like
    transformer_spec(cfg).flat_groups(): MLP hidden units after the activation ('layers.{i}.ff'); per head
    the queries and keys ('#qk') and the values and the attention output that attn_out reads ('#vo'); the
    residual stream ('residual') at the embeddings (input of block 0), at every block output and after ln_f.
    """
    if model.k != 1:
        raise ValueError(f"activations take a single-copy (K=1) model, got K={model.k}")
    was_training = model.training
    model.eval()
    try:
        return _collect(model, tokens)
    finally:
        model.train(was_training)


def _collect(model: TransformerLM, tokens: torch.Tensor) -> Features:
    cfg, d = model.cfg, model.cfg.d_model
    feats: Features = {}
    act = activation(cfg.activation)

    def add(name: str, x: torch.Tensor) -> None:
        feats.setdefault(name, []).append(x[0].detach())  # [N, units] of the only copy

    def qkv(p: str, out: torch.Tensor) -> None:  # [1, N, 3d] = [q | k | v]
        add(p + "heads#qk", out[..., :d])
        add(p + "heads#qk", out[..., d : 2 * d])
        add(p + "heads#vo", out[..., 2 * d :])

    hooks = [model.layers[0].register_forward_pre_hook(lambda m, args: add(RESIDUAL, args[0]))]
    for i, layer in enumerate(model.layers):
        p = f"layers.{i}."
        hooks += [
            layer.register_forward_hook(lambda m, args, out: add(RESIDUAL, out)),
            layer.ff1.register_forward_hook(lambda m, args, out, p=p: add(p + "ff", act(out))),
            layer.attn_in.register_forward_hook(lambda m, args, out, p=p: qkv(p, out)),
            layer.attn_out.register_forward_pre_hook(lambda m, args, p=p: add(p + "heads#vo", args[0])),
        ]
    if model.ln_f is not None:
        hooks.append(model.ln_f.register_forward_hook(lambda m, args, out: add(RESIDUAL, out)))
    try:
        model(tokens if tokens.dim() == 3 else tokens[None])
    finally:
        for h in hooks:
            h.remove()
    return feats


@torch.no_grad()
def transformer_hidden_units(model: TransformerLM, tokens: torch.Tensor) -> list[torch.Tensor]:
    """MLP units after the activation, one [K, B*T, d_ff] per block (eval mode)."""
    cfg = model.cfg
    act = activation(cfg.activation)
    out: list[torch.Tensor] = []
    hooks = [layer.ff1.register_forward_hook(lambda m, args, o: out.append(act(o).detach().cpu()))
             for layer in model.layers]
    was_training = model.training
    model.eval()
    try:
        model(tokens if tokens.dim() == 3 else tokens[None])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out
