"""Weights of ordinary (single-copy) PyTorch / Hugging Face models as stacked K=1 states of our models.

`from_gpt2` maps a GPT2LMHeadModel state dict (Conv1D weights are [in, out], like ours) onto the
pre-norm TransformerLM; `from_torch_encoder` maps the PyTorch word-LM tutorial's model
(nn.Embedding, nn.TransformerEncoder, nn.Linear decoder; Linear weights [out, in]) onto the
post-norm one. Both are checked against the originals in tests/unit/test_models.py.
"""
from __future__ import annotations

import torch

from ..config import ConfigError, ModelConfig
from ..nn.activations import HF_ACTIVATIONS

State = dict[str, torch.Tensor]


class ConversionError(ConfigError):
    """A checkpoint cannot be reproduced by lmc_core's model (the message names the setting or the difference)."""


def gpt2_config(hf_config, context: int | None = None) -> ModelConfig:
    """Our ModelConfig (pre-norm, learned positions) for a transformers GPT2Config: its activation_function mapped
    by nn.activations.HF_ACTIVATIONS; ConversionError naming any setting we cannot reproduce."""
    act = hf_config.activation_function
    if act not in HF_ACTIVATIONS:
        raise ConversionError(f"GPT2Config.activation_function={act!r} cannot be reproduced (it has learned "
                              f"parameters or is unknown); supported: {sorted(HF_ACTIVATIONS)}")
    bad = []
    if abs(float(hf_config.layer_norm_epsilon) - 1e-5) > 1e-12:
        bad.append(f"layer_norm_epsilon={hf_config.layer_norm_epsilon} (ours is 1e-5)")
    if not getattr(hf_config, "scale_attn_weights", True):
        bad.append("scale_attn_weights=False (ours scales by 1/sqrt(head_dim))")
    if getattr(hf_config, "scale_attn_by_inverse_layer_idx", False):
        bad.append("scale_attn_by_inverse_layer_idx=True")
    if getattr(hf_config, "add_cross_attention", False):
        bad.append("add_cross_attention=True")
    if bad:
        raise ConversionError(f"this GPT-2 checkpoint cannot be reproduced: {'; '.join(bad)}")
    n = hf_config.n_positions
    if context is not None and not 1 <= context <= n:
        raise ConversionError(f"context={context} must lie in [1, n_positions={n}]")
    return ModelConfig(arch="prenorm", vocab_size=hf_config.vocab_size, d_model=hf_config.n_embd,
                       n_layers=hf_config.n_layer, n_heads=hf_config.n_head,
                       d_ff=hf_config.n_inner or 4 * hf_config.n_embd, context=context or n,
                       dropout=float(hf_config.resid_pdrop), positions="learned",
                       tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", True)),
                       activation=HF_ACTIVATIONS[act], embed_scale=False, init="gpt2").validate()


def from_gpt2(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> State:
    """K=1 state of TransformerLM(cfg) from a GPT2LMHeadModel / GPT2Model state dict."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {"tok_emb": sd["wte.weight"], "pos_emb": sd["wpe.weight"][: cfg.context]}
    for i in range(cfg.n_layers):
        h = f"h.{i}."
        pairs = {"attn_in": "attn.c_attn", "attn_out": "attn.c_proj", "ff1": "mlp.c_fc", "ff2": "mlp.c_proj",
                 "ln1": "ln_1", "ln2": "ln_2"}
        for ours, theirs in pairs.items():
            w, b = sd[h + theirs + ".weight"], sd[h + theirs + ".bias"]
            out[f"layers.{i}.{ours}.weight"] = w  # Conv1D weights are [in, out], as ours
            out[f"layers.{i}.{ours}.bias"] = b
    out["ln_f.weight"], out["ln_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
    return _stack1(out, cfg)


def from_torch_encoder(emb: torch.Tensor, layers: list[dict[str, torch.Tensor]], dec_w: torch.Tensor,
                       dec_b: torch.Tensor, cfg: ModelConfig) -> State:
    """K=1 state of the post-norm TransformerLM from nn.Embedding weight [V, d], the state dicts of
    nn.TransformerEncoderLayer's and an nn.Linear decoder ([V, d], [V])."""
    out = {"tok_emb": emb, "head.weight": dec_w.T, "head.bias": dec_b}
    for i, sd in enumerate(layers):
        p = f"layers.{i}."
        out[p + "attn_in.weight"] = sd["self_attn.in_proj_weight"].T
        out[p + "attn_in.bias"] = sd["self_attn.in_proj_bias"]
        out[p + "attn_out.weight"] = sd["self_attn.out_proj.weight"].T
        out[p + "attn_out.bias"] = sd["self_attn.out_proj.bias"]
        out[p + "ff1.weight"], out[p + "ff1.bias"] = sd["linear1.weight"].T, sd["linear1.bias"]
        out[p + "ff2.weight"], out[p + "ff2.bias"] = sd["linear2.weight"].T, sd["linear2.bias"]
        out[p + "ln1.weight"], out[p + "ln1.bias"] = sd["norm1.weight"], sd["norm1.bias"]
        out[p + "ln2.weight"], out[p + "ln2.bias"] = sd["norm2.weight"], sd["norm2.bias"]
    return _stack1(out, cfg)


def _stack1(flat: dict[str, torch.Tensor], cfg: ModelConfig) -> State:
    """Add the leading copy axis (and the [1, 1, out] shape of biases and norms) to every tensor."""
    from .transformer import TransformerLM

    shapes = {n: t.shape for n, t in TransformerLM(cfg, 1).state_dict().items()}
    missing = sorted(set(shapes) - set(flat))
    if missing:
        raise KeyError(f"the converted state lacks {missing[:5]}")
    return {n: flat[n].detach().clone().float().reshape(shapes[n]) for n in shapes}
