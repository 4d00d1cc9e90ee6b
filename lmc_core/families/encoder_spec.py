"""The permutation symmetries of the BERT-family encoder (EncoderClassifier): residual stream, heads, MLP units,
pooler units. Adapters and LoRA factors are permuted with the axes they read and write (their bottleneck and rank
units stay in place)."""
from __future__ import annotations

from ..align.spec import RESIDUAL, Axis, Group, HeadGroup, PermutationSpec, UnitGroup
from ..models.encoder import EncoderConfig


def encoder_spec(cfg: EncoderConfig) -> PermutationSpec:
    """Residual stream ('residual': every embedding table, LayerNorm, every read and write of a layer, the pooler's
    input), heads per layer ('layers.{i}.heads': Q/K and V/O units inside each head), MLP units ('layers.{i}.ff')
    and pooler units ('pooler': its outputs and the classifier's input). Post-norm LayerNorm is equivariant to
    permuting its axis, so the residual permutation keeps the function (the family contract test checks it)."""
    cfg.validate()
    d, h = cfg.d_model, cfg.n_heads
    lora = set(cfg.lora_targets) if cfg.lora_rank else set()

    def reads(p: str, name: str) -> list[Axis]:  # input axis of a (LoRA) linear map
        return [Axis(f"{p}{name}.weight", 1)] + ([Axis(f"{p}{name}.lora_a", 1)] if name in lora else [])

    def writes(p: str, name: str) -> list[Axis]:  # output axis of a (LoRA) linear map and its bias
        return [Axis(f"{p}{name}.weight", 2), Axis(f"{p}{name}.bias", 2)] + (
            [Axis(f"{p}{name}.lora_b", 2)] if name in lora else [])

    residual = [Axis("word_emb", 2), Axis("pos_emb", 2), Axis("type_emb", 2), Axis("emb_ln.weight", 2),
                Axis("emb_ln.bias", 2), Axis("pooler.weight", 1)]
    groups: list[Group] = []
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        groups.append(HeadGroup(p + "heads", h, d // h, qk=tuple(writes(p, "query") + writes(p, "key")),
                                vo=tuple(writes(p, "value") + reads(p, "attn_out"))))
        groups.append(UnitGroup(p + "ff", cfg.d_ff, tuple(writes(p, "ff1") + reads(p, "ff2"))))
        residual += reads(p, "query") + reads(p, "key") + reads(p, "value") + writes(p, "attn_out")
        residual += reads(p, "ff1") + writes(p, "ff2")
        residual += [Axis(f"{p}{ln}.{w}", 2) for ln in ("ln1", "ln2") for w in ("weight", "bias")]
        if cfg.adapter:
            for ad in ("adapter_attn", "adapter_ff"):
                residual += [Axis(f"{p}{ad}.down.weight", 1), Axis(f"{p}{ad}.up.weight", 2),
                             Axis(f"{p}{ad}.up.bias", 2)]
    groups.append(UnitGroup("pooler", d, (Axis("pooler.weight", 2), Axis("pooler.bias", 2), Axis("head.weight", 1))))
    return PermutationSpec((UnitGroup(RESIDUAL, d, tuple(residual)), *groups))
