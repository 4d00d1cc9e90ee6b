"""Hugging Face checkpoints from local folders (offline) as lmc_core models, checked against transformers.

`load_hf(folder)` reads a checkpoint folder written by `save_pretrained` (config.json plus model.safetensors or
pytorch_model.bin; a transformers model object is accepted too) and returns a single-copy (K=1) lmc_core model
whose family then interpolates, aligns and evaluates it like the notebooks' models:

- GPT-2 (`GPT2LMHeadModel` / `GPT2Model`, model_type "gpt2") -> the pre-norm TransformerLM (lm family), every
  activation_function transformers offers for GPT-2 honoured except those with learned parameters (prelu, xielu);
  settings the converter cannot reproduce (another LayerNorm epsilon, unscaled or layer-scaled attention, cross
  attention) are refused with the setting named;
- OPT (`OPTForCausalLM`, model_type "opt") -> the TransformerLM, pre-norm (do_layer_norm_before, most sizes) or
  post-norm (OPT-350m's layout), learned positions read from their offset of 2; a projection between a narrower
  word embedding and the hidden size (word_embed_proj_dim) is refused;
- BERT and RoBERTa encoders (model_type "bert" / "roberta": the MiniLM path generalised) -> EncoderClassifier
  (encoder family) with a fresh classifier head from `head_seed`.

At import, the converted model's outputs are compared with transformers' own on a fixed token batch (next-token
logits for GPT-2, last hidden states for the encoders); a difference beyond fp32 rounding is refused
(ConversionError with the max |difference|). Nothing is downloaded: transformers is called with
local_files_only=True.

Precision: the returned model is float32, as every lmc_core family model, whatever the checkpoint's dtype (fp16 and
bf16 values are exact in float32). The parity check therefore runs transformers' model in float32 too (a float32
copy of an fp16/bf16 model): comparing an fp16 forward with our float32 one would measure fp16 rounding, not the
converter.

A folder is checked before transformers reads it: config.json must parse, a weights file must exist, and every
*.safetensors file must be complete (its header's tensors must fit the file); a truncated or unreadable file is
refused naming it (ConversionError), never with the reader's bare error.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, check_int
from ..domains import MAX_SEED, MAX_VOCAB, MAX_WIDTH
from ..nn.activations import HF_ACTIVATIONS
from .convert import ConversionError, from_gpt2, gpt2_config
from .transformer import TransformerLM

PARITY_RTOL, PARITY_ATOL = 1e-4, 1e-4  # |ours - theirs| <= atol + rtol * max|theirs| (fp32, summed differently)
PARITY_TOKENS = (2, 12)  # batch and length of the parity check's token batch


def _transformers():
    if importlib.util.find_spec("transformers") is None:
        raise ConversionError("reading Hugging Face checkpoints (and checking the conversion) needs transformers: "
                              "`pip install transformers`")
    import transformers

    return transformers


def _float32(model):
    """`model` itself if its floating parameters and buffers are float32, else a float32 copy (for the parity check:
    ours is float32, so theirs runs in float32 too; an fp16/bf16 checkpoint's values are exact in float32)."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    if all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()):
        return model
    return copy.deepcopy(model).float()


def gpt2_from_hf(model, context: int | None = None, check: bool = True) -> TransformerLM:
    """A K=1 float32 TransformerLM from a transformers GPT2LMHeadModel (or GPT2Model: tied unembedding), checked
    (in float32, see the module docstring)."""
    cfg = gpt2_config(model.config, context)
    sd = dict(model.state_dict())
    if not cfg.tie_embeddings:
        head = sd.get("lm_head.weight")
        if head is None:
            raise ConversionError("tie_word_embeddings=False but the checkpoint has no lm_head.weight")
        sd = {**sd, "head.weight": head.T, "head.bias": torch.zeros(head.shape[0])}
    flat = from_gpt2_untied(sd, cfg)
    ours = TransformerLM(cfg, 1)
    ours.load_state_dict(flat)
    ours.eval()
    if check:
        _parity_gpt2(model, ours)
    return ours


def from_gpt2_untied(sd: dict, cfg: ModelConfig) -> dict:
    """from_gpt2 plus the untied head (lm_head, as [1, d, V] with a zero bias)."""
    if cfg.tie_embeddings:
        return from_gpt2(sd, cfg)
    tied = from_gpt2(sd, replace(cfg, tie_embeddings=True))
    return {**tied, "head.weight": sd["head.weight"].detach().float()[None].clone(),
            "head.bias": sd["head.bias"].float().view(1, 1, -1).clone()}


def _tokens(vocab: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    b, t = PARITY_TOKENS
    return torch.randint(0, vocab, (b, min(t, length)), generator=g)


def _compare(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> float:
    diff = float((ours.double() - theirs.double()).abs().max())
    tol = PARITY_ATOL + PARITY_RTOL * float(theirs.abs().max())
    if not diff <= tol:
        raise ConversionError(f"the converted {what} differs from transformers' by up to {diff:.3g} (tolerance "
                              f"{tol:.1e}): the converter does not reproduce this checkpoint")
    return diff


@torch.no_grad()
def _parity_gpt2(model, ours: TransformerLM) -> float:
    tok = _tokens(ours.cfg.vocab_size, ours.cfg.context)
    model = _float32(model)
    was = model.training
    model.eval()
    try:
        out = model(tok)
    finally:
        model.train(was)
    theirs = out.logits if hasattr(out, "logits") else out.last_hidden_state @ model.wte.weight.T
    return _compare(ours(tok[None])[0].view(*theirs.shape), theirs, "GPT-2's next-token logits")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _check_safetensors(path: Path) -> None:
    """Raise ConversionError naming `path` unless it is a complete safetensors file: an 8-byte header length, a JSON
    header of that length, and every tensor's data_offsets within the file (a truncated copy fails here)."""
    size = path.stat().st_size

    def bad(why: str):
        raise ConversionError(f"{str(path)!r} is truncated or corrupt ({why}): the checkpoint cannot be read; save "
                              "the model again with save_pretrained() or copy the file completely")

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            bad(f"{size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            bad(f"its header claims {n} bytes, the file has {size - 8} after the length")
        try:
            header = json.loads(f.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            bad("its header is not a safetensors header")
    need = 8 + n + max(ends, default=0)
    if need > size:
        bad(f"its tensors need {need} bytes, the file has {size}")


def _check_folder(folder: Path) -> list[str]:
    """The weights files of a save_pretrained folder (FileNotFoundError when there are none); every safetensors
    file among them checked complete (ConversionError naming it)."""
    present = [n for n in WEIGHT_FILES if (folder / n).is_file()]
    if not present:
        raise FileNotFoundError(f"{str(folder)!r} holds no weights ({' or '.join(WEIGHT_FILES)}): give a folder "
                                "written by a transformers model's save_pretrained()")
    for f in sorted(folder.glob("*.safetensors")):
        _check_safetensors(f)
    return present


OPT_POSITION_OFFSET = 2  # OPT's learned position table starts at row 2 (its padding convention)


def opt_config(hf_config, context: int | None = None) -> ModelConfig:
    """Our ModelConfig for a transformers OPTConfig; ConversionError naming any setting we cannot reproduce."""
    act = hf_config.activation_function
    bad = [] if act in HF_ACTIVATIONS else [f"activation_function={act!r}"]
    if hf_config.word_embed_proj_dim != hf_config.hidden_size:
        bad.append(f"word_embed_proj_dim={hf_config.word_embed_proj_dim} != hidden_size={hf_config.hidden_size} "
                   "(projected embeddings)")
    if not getattr(hf_config, "enable_bias", True):
        bad.append("enable_bias=False")
    if not getattr(hf_config, "layer_norm_elementwise_affine", True):
        bad.append("layer_norm_elementwise_affine=False")
    prenorm = bool(hf_config.do_layer_norm_before)
    if prenorm and getattr(hf_config, "_remove_final_layer_norm", False):
        bad.append("_remove_final_layer_norm=True")
    if not getattr(hf_config, "tie_word_embeddings", True):
        bad.append("tie_word_embeddings=False")
    if bad:
        raise ConversionError(f"this OPT checkpoint cannot be reproduced: {'; '.join(bad)}")
    n = hf_config.max_position_embeddings
    if context is not None and not 1 <= context <= n:
        raise ConversionError(f"context={context} must lie in [1, max_position_embeddings={n}]")
    return ModelConfig(arch="prenorm" if prenorm else "postnorm", vocab_size=hf_config.vocab_size,
                       d_model=hf_config.hidden_size, n_layers=hf_config.num_hidden_layers,
                       n_heads=hf_config.num_attention_heads, d_ff=hf_config.ffn_dim, context=context or n,
                       dropout=float(hf_config.dropout), positions="learned", tie_embeddings=True,
                       activation=HF_ACTIVATIONS[act], embed_scale=False, init="gpt2").validate()


@torch.no_grad()
def opt_from_hf(model, context: int | None = None, check: bool = True) -> TransformerLM:
    """A K=1 TransformerLM from a transformers OPTForCausalLM (or OPTModel), its logits checked."""
    cfg = opt_config(model.config, context)
    sd = {k.removeprefix("model.").removeprefix("decoder."): v for k, v in model.state_dict().items()}
    pos = sd["embed_positions.weight"][OPT_POSITION_OFFSET: OPT_POSITION_OFFSET + cfg.context]
    flat = {"tok_emb": sd["embed_tokens.weight"], "pos_emb": pos}
    for i in range(cfg.n_layers):
        h, o = f"layers.{i}.", f"layers.{i}."
        q, k, v = (sd[f"{h}self_attn.{n}_proj.weight"] for n in "qkv")
        flat[o + "attn_in.weight"] = torch.cat([q, k, v]).T
        flat[o + "attn_in.bias"] = torch.cat([sd[f"{h}self_attn.{n}_proj.bias"] for n in "qkv"])
        flat[o + "attn_out.weight"], flat[o + "attn_out.bias"] = sd[h + "self_attn.out_proj.weight"].T, \
            sd[h + "self_attn.out_proj.bias"]
        flat[o + "ff1.weight"], flat[o + "ff1.bias"] = sd[h + "fc1.weight"].T, sd[h + "fc1.bias"]
        flat[o + "ff2.weight"], flat[o + "ff2.bias"] = sd[h + "fc2.weight"].T, sd[h + "fc2.bias"]
        for ours, theirs in (("ln1", "self_attn_layer_norm"), ("ln2", "final_layer_norm")):
            flat[f"{o}{ours}.weight"], flat[f"{o}{ours}.bias"] = sd[f"{h}{theirs}.weight"], sd[f"{h}{theirs}.bias"]
    if cfg.arch == "prenorm":
        flat["ln_f.weight"], flat["ln_f.bias"] = sd["final_layer_norm.weight"], sd["final_layer_norm.bias"]
    ours = TransformerLM(cfg, 1)
    shapes = {n: t.shape for n, t in ours.state_dict().items()}
    missing = sorted(set(shapes) - set(flat))
    if missing:
        raise ConversionError(f"the converted OPT state lacks {missing[:5]}")
    ours.load_state_dict({n: flat[n].detach().float().reshape(shapes[n]) for n in shapes})
    ours.eval()
    if check:
        tok = _tokens(cfg.vocab_size, cfg.context)
        model = _float32(model)
        sd = {k: v.float() for k, v in sd.items()}
        was = model.training
        model.eval()
        try:
            out = model(input_ids=tok)
        finally:
            model.train(was)
        theirs = out.logits if hasattr(out, "logits") else out.last_hidden_state @ sd["embed_tokens.weight"].T
        _compare(ours(tok[None])[0].view(*theirs.shape), theirs, "OPT's next-token logits")
    return ours


@torch.no_grad()
def encoder_from_hf(model, n_classes: int = 2, head_seed: int = 0, check: bool = True):
    """A K=1 EncoderClassifier (encoder family) from a transformers BertModel / RobertaModel (a fresh classifier
    head with n_classes outputs from head_seed), its last hidden states checked against transformers' (in float32).
    n_classes: an integer >= 2; head_seed: an integer (ConfigError otherwise)."""
    n_classes = check_int("n_classes", n_classes, 2, MAX_VOCAB)
    head_seed = check_int("head_seed", head_seed, 0, MAX_SEED)
    from .encoder import EncoderClassifier
    from .pretrained import bert_from_hf, hf_encoder_config, position_offset, stack_pretrained

    hf = model.config.to_dict()
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        raise ConversionError(f"hidden_act={act!r}: the encoder implements exact (erf) GELU only")
    cfg = hf_encoder_config(hf, n_classes=n_classes)
    sd = model.state_dict()
    state = stack_pretrained(cfg, 1, bert_from_hf(sd, cfg, position_offset(hf)), [head_seed])
    ours = EncoderClassifier(cfg, 1)
    ours.load_state_dict(state)
    ours.eval()
    if check:
        tok = _tokens(min(cfg.vocab_size, 1000), cfg.max_positions)
        tok[tok == cfg.pad_token_id] = (cfg.pad_token_id + 1) % cfg.vocab_size  # no padding in the check
        mask = torch.ones_like(tok)
        full = _float32(model)
        body = getattr(full, "base_model", full).eval()
        theirs = body(input_ids=tok, attention_mask=mask).last_hidden_state
        _compare(ours.features(tok[None], mask[None])[0][0], theirs, "encoder's last hidden states")
    return ours


def load_hf(source: Any, context: int | None = None, n_classes: int = 2, head_seed: int = 0, check: bool = True):
    """A K=1 lmc_core model from a Hugging Face checkpoint folder (offline) or a transformers model object.

    GPT-2 and OPT -> TransformerLM (lm family; `context`: the positions used, default all); BERT / RoBERTa ->
    EncoderClassifier (encoder family; a fresh n_classes head from head_seed). check: compare outputs with
    transformers' on a fixed token batch (ConversionError beyond fp32 rounding; both models run in float32). The
    model returned is float32 whatever the checkpoint's dtype (fp16 / bf16 checkpoints load exactly).
    context: None or an integer >= 1; n_classes: an integer >= 2; head_seed: an integer; check: a bool
    (ConfigError otherwise, before anything is read). Raises FileNotFoundError for a folder without config.json or
    without a weights file, and ConversionError for an unreadable config.json, a truncated or corrupt weights file
    (named), another model type or a setting we cannot reproduce.
    """
    if context is not None:
        context = check_int("context", context, 1, MAX_WIDTH)
    n_classes = check_int("n_classes", n_classes, 2, MAX_VOCAB)
    head_seed = check_int("head_seed", head_seed, 0, MAX_SEED)
    if not isinstance(check, bool):
        raise ConversionError(f"check={check!r} must be True or False")
    tf = _transformers()
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{str(source)!r} holds no config.json: give a folder written by a transformers "
                                    "model's save_pretrained()")
        weights = _check_folder(folder)
        try:
            kind = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True).model_type
        except Exception as exc:  # noqa: BLE001 - a config transformers cannot read: name the file
            raise ConversionError(f"{str(folder / 'config.json')!r} cannot be read by transformers "
                                  f"({_first_line(exc)}): save the model again with save_pretrained()") from None
        cls = {"gpt2": tf.GPT2LMHeadModel, "opt": tf.OPTForCausalLM, "bert": tf.BertModel,
               "roberta": tf.RobertaModel}.get(kind)
        if cls is None:
            raise ConversionError(f"model_type {kind!r} is not supported; load_hf reads gpt2, opt, bert and roberta")
        bars = tf.utils.logging.is_progress_bar_enabled()
        tf.utils.logging.disable_progress_bar()  # a bar per loaded checkpoint says nothing here
        try:
            model = cls.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any reader failure: name the files it read
            raise ConversionError(f"transformers could not read the checkpoint in {str(folder)!r} (weights "
                                  f"{weights}; {_first_line(exc)}): save the model again with save_pretrained() or "
                                  "copy the folder completely") from None
        finally:
            if bars:
                tf.utils.logging.enable_progress_bar()
    else:
        model = source
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind == "gpt2":
        return gpt2_from_hf(model, context, check)
    if kind == "opt":
        return opt_from_hf(model, context, check)
    if kind in ("bert", "roberta"):
        return encoder_from_hf(model, n_classes, head_seed, check)
    raise ConversionError(f"model_type {kind!r} is not supported; load_hf reads gpt2, opt, bert and roberta")
