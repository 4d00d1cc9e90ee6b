"""Permutation specs of Hugging Face transformer objects, read from their module structure (issue 28, item 1).

torch.fx cannot follow attention, so `align_models` builds the spec of a transformers object from its config and
parameter names instead, and then checks it on the sample like any spec (a random element of the group must leave
the outputs unchanged: lmc_core.align.check), so a rule that does not fit a checkpoint is refused, never used.

- GPT-2 (`GPT2LMHeadModel`, `GPT2Model`; model_type "gpt2"): the layout of lmc_core's own transformer
  (families.lm.transformer_spec) on Hugging Face's names: per block a HeadGroup (whole heads, and units within a
  head for Q/K and for V/O: learned positions allow both), the MLP units, and the residual stream (embeddings,
  every block's reads and writes, LayerNorm weights and biases, the tied unembedding).
- Transformers with separate q/k/v/o projections and learned positions (a `Layout` each): OPT
  (`OPTForCausalLM`, pre-norm, and the post-norm order when the embeddings are not projected — OPT-350m's are,
  and is refused), BERT and RoBERTa
  sequence classifiers (the pooler's or RoBERTa's classifier.dense units permuted with the classifier's inputs),
  ViT image classifiers (`ViTForImageClassification`: the patch projection's output channels, class token and
  position table carry the residual stream): whole heads and units within heads, MLP units, the residual stream
  with every LayerNorm. A task head or a version whose names differ is not laid out: align_models says what to do.
- Llama-family decoders (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM` and their base models;
  model_type "llama", "mistral", "qwen2"): per block a HeadGroup over the key-value heads of grouped-query
  attention, each moved whole with the query heads that read it (q_proj rows and o_proj columns laid out
  [KV, heads per group, head_dim]: a repeated place), with the value units inside each head permuted (v_proj
  rows, and o_proj columns alike in every query head of the group); the SwiGLU units (gate_proj and up_proj rows
  with down_proj columns); and the residual stream, with every RMSNorm gain moved by the same permutation
  (RMSNorm is equivariant to permuting its axis when its gain moves along). Query and key units inside a head stay
  in place (qk_units=False): rotary positions rotate fixed pairs of them, so only the identity is safe there;
  query heads sharing a key-value head stay in their order (notes say both).

The residual stream of both admits orthogonal maps only where the norm allows (lmc_core.align.orthogonal for
lmc_core's own models); here only permutations are used. Specs use the copy axis lmc_core adds (axis 1 is a
parameter's first axis), as every ModuleSpec.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .auto import ModuleSpec, tied_names
from .spec import RESIDUAL, Axis, HeadGroup, PermutationSpec, UnitGroup

LLAMA_LIKE = ("llama", "mistral", "qwen2")


def _prefix(names, *options: str) -> str:
    return next((p for p in options if any(n.startswith(p) for n in names)), "")


def gpt2_spec(model: nn.Module) -> ModuleSpec:
    """The spec of a transformers GPT-2 object (Conv1D weights are [in, out])."""
    c, names = model.config, set(model.state_dict())
    d, h = c.n_embd, c.n_head
    t = _prefix(names, "transformer.")
    res = [Axis(t + "wte.weight", 2), Axis(t + "wpe.weight", 2)]
    groups = []
    for i in range(c.n_layer):
        p = f"{t}h.{i}."
        qkv, qkv_b = p + "attn.c_attn.weight", p + "attn.c_attn.bias"
        groups.append(HeadGroup(p + "heads", h, d // h,
                                qk=(Axis(qkv, 2, 0), Axis(qkv, 2, d), Axis(qkv_b, 1, 0), Axis(qkv_b, 1, d)),
                                vo=(Axis(qkv, 2, 2 * d), Axis(qkv_b, 1, 2 * d), Axis(p + "attn.c_proj.weight", 1))))
        groups.append(UnitGroup(p + "mlp", c.n_inner or 4 * d, (Axis(p + "mlp.c_fc.weight", 2),
                                                                 Axis(p + "mlp.c_fc.bias", 1),
                                                                 Axis(p + "mlp.c_proj.weight", 1))))
        res += [Axis(qkv, 1), Axis(p + "attn.c_proj.weight", 2), Axis(p + "attn.c_proj.bias", 1),
                Axis(p + "mlp.c_fc.weight", 1), Axis(p + "mlp.c_proj.weight", 2), Axis(p + "mlp.c_proj.bias", 1)]
        res += [Axis(f"{p}{ln}.{w}", 1) for ln in ("ln_1", "ln_2") for w in ("weight", "bias")]
    res += [Axis(t + "ln_f.weight", 1), Axis(t + "ln_f.bias", 1)]
    if "lm_head.weight" in names:
        res.append(Axis("lm_head.weight", 2))
    spec = PermutationSpec((UnitGroup(RESIDUAL, d, tuple(res)), *groups),
                           notes=("GPT-2 (Hugging Face object): whole heads and units within heads, MLP units and "
                                  "the residual stream permuted",))
    return ModuleSpec(spec)


def llama_spec(model: nn.Module) -> ModuleSpec:
    """The spec of a transformers Llama / Mistral / Qwen2 object (Linear weights are [out, in])."""
    c, sd = model.config, model.state_dict()
    d, n_heads = c.hidden_size, c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or n_heads
    hd = getattr(c, "head_dim", None) or d // n_heads
    rep = n_heads // kv
    t = _prefix(sd, "model.")
    res, groups = [Axis(t + "embed_tokens.weight", 2)], []
    for i in range(c.num_hidden_layers):
        p = f"{t}layers.{i}."
        a, m = p + "self_attn.", p + "mlp."
        lin = lambda n, **kw: [Axis(f"{a}{n}_proj.{w}", 1, **kw)  # noqa: E731 - the output rows (and bias)
                               for w in ("weight", "bias") if f"{a}{n}_proj.{w}" in sd]
        # query heads h = g * rep + r read key-value head g (transformers' repeat_kv): [kv, rep, hd] rows of q_proj
        # and columns of o_proj move with group g; the value units within a head move alike in o_proj's repeats
        groups.append(HeadGroup(p + "kv_heads", kv, hd, qk=(*lin("q", repeat=rep, block=hd), *lin("k")),
                                vo=(*lin("v"), Axis(a + "o_proj.weight", 2, repeat=rep, block=hd)), qk_units=False))
        units = [Axis(m + "gate_proj.weight", 1), Axis(m + "up_proj.weight", 1), Axis(m + "down_proj.weight", 2)]
        units += [Axis(f"{m}{n}_proj.bias", 1) for n in ("gate", "up") if f"{m}{n}_proj.bias" in sd]
        groups.append(UnitGroup(p + "mlp", c.intermediate_size, tuple(units)))
        res += [Axis(f"{a}{n}_proj.weight", 2) for n in "qkv"] + [Axis(a + "o_proj.weight", 1)]
        res += [Axis(m + "gate_proj.weight", 2), Axis(m + "up_proj.weight", 2), Axis(m + "down_proj.weight", 1),
                Axis(p + "input_layernorm.weight", 1), Axis(p + "post_attention_layernorm.weight", 1)]
        res += [Axis(n, 1) for n in (a + "o_proj.bias", m + "down_proj.bias") if n in sd]
    res.append(Axis(t + "norm.weight", 1))
    if "lm_head.weight" in sd:
        res.append(Axis("lm_head.weight", 2))
    notes = [f"{c.model_type} (Hugging Face object): key-value groups moved whole with their query heads, the value "
             "and output units within each head, SwiGLU units and the residual stream (RMSNorm gains with it) "
             "permuted",
             "query and key units inside a head stay in place: rotary positions rotate fixed pairs of them"]
    if rep > 1:
        notes.append(f"the {rep} query heads that share a key-value head keep their order")
    return ModuleSpec(PermutationSpec((UnitGroup(RESIDUAL, d, tuple(res)), *groups), notes=tuple(notes)))


@dataclass(frozen=True)
class Layout:
    """Where a transformer with separate q/k/v/o projections (nn.Linear, [out, in]) keeps its parts: `{i}` is the
    layer; embeddings are (name, axis of the residual units, copy axis counted)."""

    layer: str
    q: str
    k: str
    v: str
    o: str
    norms: tuple[str, ...]
    fc1: str
    fc2: str
    embeddings: tuple[tuple[str, int], ...]
    final: tuple[str, ...] = ()  # norms after the last block
    heads: tuple[tuple[str, str], ...] = ()  # (hidden Linear, output Linear) pairs of a task head on the residual
    out: tuple[str, ...] = ()  # Linears reading the residual stream into the outputs (an unembedding)


LAYOUTS = {
    "opt": Layout("model.decoder.layers.{i}.", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                  "self_attn.out_proj", ("self_attn_layer_norm", "final_layer_norm"), "fc1", "fc2",
                  (("model.decoder.embed_tokens.weight", 2), ("model.decoder.embed_positions.weight", 2)),
                  ("model.decoder.final_layer_norm",), out=("lm_head",)),
    "bert": Layout("bert.encoder.layer.{i}.", "attention.self.query", "attention.self.key", "attention.self.value",
                   "attention.output.dense", ("attention.output.LayerNorm", "output.LayerNorm"), "intermediate.dense",
                   "output.dense", (("bert.embeddings.word_embeddings.weight", 2),
                                    ("bert.embeddings.position_embeddings.weight", 2),
                                    ("bert.embeddings.token_type_embeddings.weight", 2)),
                   ("bert.embeddings.LayerNorm",), heads=(("bert.pooler.dense", "classifier"),)),
    "roberta": Layout("roberta.encoder.layer.{i}.", "attention.self.query", "attention.self.key",
                      "attention.self.value", "attention.output.dense",
                      ("attention.output.LayerNorm", "output.LayerNorm"), "intermediate.dense", "output.dense",
                      (("roberta.embeddings.word_embeddings.weight", 2),
                       ("roberta.embeddings.position_embeddings.weight", 2),
                       ("roberta.embeddings.token_type_embeddings.weight", 2)),
                      ("roberta.embeddings.LayerNorm",), heads=(("classifier.dense", "classifier.out_proj"),)),
    "vit": Layout("vit.layers.{i}.", "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj",
                  ("layernorm_before", "layernorm_after"), "mlp.fc1", "mlp.fc2",
                  (("vit.embeddings.cls_token", 3), ("vit.embeddings.position_embeddings", 3),
                   ("vit.embeddings.patch_embeddings.projection.weight", 1),
                   ("vit.embeddings.patch_embeddings.projection.bias", 1)),
                  ("vit.layernorm",), out=("classifier",)),
}


def layout_spec(model: nn.Module, lay: Layout, n_layers: int, d: int, n_heads: int, d_ff: int) -> ModuleSpec | None:
    """The spec of a transformer laid out as `lay` (heads whole and within: no rotary positions), or None when a
    parameter it names is absent (another version's names, another head: the caller says what to do)."""
    names = set(model.state_dict())
    lin = lambda m, axis: [Axis(m + ".weight", axis)] + ([Axis(m + ".bias", 1)] if m + ".bias" in names and  # noqa
                                                          axis == 1 else [])
    res = [Axis(n, axis) for n, axis in lay.embeddings]
    groups = []
    for i in range(n_layers):
        p = lay.layer.format(i=i)
        q, k, v, o, f1, f2 = (p + x for x in (lay.q, lay.k, lay.v, lay.o, lay.fc1, lay.fc2))
        groups.append(HeadGroup(p + "heads", n_heads, d // n_heads, qk=(*lin(q, 1), *lin(k, 1)),
                                vo=(*lin(v, 1), Axis(o + ".weight", 2))))
        groups.append(UnitGroup(p + "mlp", d_ff, (*lin(f1, 1), Axis(f2 + ".weight", 2))))
        res += [Axis(x + ".weight", 2) for x in (q, k, v, f1)] + lin(o, 1) + lin(f2, 1)
        res += [Axis(f"{p}{n}.{w}", 1) for n in lay.norms for w in ("weight", "bias")]
    res += [Axis(f"{n}.{w}", 1) for n in lay.final for w in ("weight", "bias") if f"{n}.{w}" in names]
    for hidden, out in lay.heads:
        res.append(Axis(hidden + ".weight", 2))
        groups.append(UnitGroup(hidden, d, (*lin(hidden, 1), Axis(out + ".weight", 2))))
    res += [Axis(n + ".weight", 2) for n in lay.out if n + ".weight" in names]
    groups.insert(0, UnitGroup(RESIDUAL, d, tuple(res)))
    if any(ax.param not in names for g in groups for ax in (g.axes if isinstance(g, UnitGroup) else g.qk + g.vo)):
        return None
    return ModuleSpec(PermutationSpec(tuple(groups), notes=(
        f"{model.config.model_type} (Hugging Face object): whole heads and units within heads, MLP units, the task "
        "head's hidden units and the residual stream (LayerNorm weights and biases with it) permuted",)))


CLASSES = ("GPT2LMHeadModel", "OPTForCausalLM", "BertForSequenceClassification", "RobertaForSequenceClassification",
           "ViTForImageClassification", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


def _covers(model: nn.Module, ms: ModuleSpec | None) -> ModuleSpec | None:
    """`ms` if its groups place every weight matrix of the model (a tied alias by its first name; a vector may stay
    in place, as the classes' output biases do), else None: a weight the rules do not know (another head, another
    version's layout) would make the check fail for a reason the user could not read."""
    if ms is None:
        return None
    placed = {ax.param for g in ms.spec.groups for ax in (g.axes if isinstance(g, UnitGroup) else g.qk + g.vo)}
    ties = tied_names(model)
    return ms if all(ties.get(n, n) in placed for n, t in model.named_parameters() if t.dim() > 1) else None


def hf_module_spec(model: nn.Module) -> ModuleSpec | None:
    """The spec of a transformers object of the classes lmc_core follows (CLASSES), else None."""
    c, name = getattr(model, "config", None), type(model).__name__
    kind = getattr(c, "model_type", None)
    if name not in CLASSES:
        return None
    if kind == "gpt2":
        return _covers(model, gpt2_spec(model))
    if kind in LLAMA_LIKE:
        return _covers(model, llama_spec(model))
    if kind == "opt" and c.word_embed_proj_dim == c.hidden_size:
        return _covers(model, layout_spec(model, LAYOUTS[kind], c.num_hidden_layers, c.hidden_size,
                                          c.num_attention_heads, c.ffn_dim))
    if kind in ("bert", "roberta", "vit"):
        return _covers(model, layout_spec(model, LAYOUTS[kind], c.num_hidden_layers, c.hidden_size,
                                          c.num_attention_heads, c.intermediate_size))
    return None
