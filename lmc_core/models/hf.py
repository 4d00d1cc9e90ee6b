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
bf16 values are exact in float32); its `checkpoint_dtype` keeps the checkpoint's, and linear_path's notes say it was
evaluated in float32. The parity check runs transformers' model in float32 too (a float32 copy of an fp16/bf16
model). To compare a pair in its own precision, pass the transformers objects (loaded in their dtype): linear_path
evaluates them in it, each interpolated weight rounded once to that dtype.

A folder is checked before transformers reads it: config.json must parse, a weights file must exist, and every
*.safetensors file must be complete (its header's tensors must fit the file); a truncated or unreadable file is
refused naming it (ConversionError), never with the reader's bare error.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, ModelConfig, check_int
from ..domains import MAX_SEED, MAX_VOCAB, MAX_WIDTH, check_choice
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


# what load_hf reads, per model_type: the classes without a task head, and those whose head it carries over
BASES = {"gpt2": ("GPT2LMHeadModel", "GPT2Model"), "opt": ("OPTForCausalLM", "OPTModel"),
         "bert": ("BertModel",), "roberta": ("RobertaModel",)}
SEQUENCE_HEADS = {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification"}
HEADS = ("auto", "fresh")
# a RoBERTa classification head is dense -> tanh -> out_proj on the <s> position: our pooler and head
ROBERTA_HEAD = {"classifier.dense.": "pooler.dense.", "classifier.out_proj.": "classifier."}


def _head_tensors(sd: dict) -> list[str]:
    """The names of a state dict outside the encoder body (a task head: cls.*, qa_outputs.*, classifier.*)."""
    body = ("bert.", "roberta.", "embeddings.", "encoder.", "pooler.")
    return sorted(n for n in sd if not n.startswith(body))


def _sequence_head(model, n_classes: int | None) -> int:
    """The number of classes of a transformers sequence classifier whose head we carry over; ConversionError for a
    head lmc_core's classifier (a softmax over >= 2 classes, cross-entropy loss) cannot reproduce, ConfigError when
    `n_classes` contradicts the checkpoint."""
    hf = model.config
    labels, problem = int(hf.num_labels), getattr(hf, "problem_type", None)
    if labels < 2 or problem in ("regression", "multi_label_classification"):
        raise ConversionError(f"{type(model).__name__} with num_labels={labels}, problem_type={problem!r}: lmc_core's "
                              "classifier is a softmax over >= 2 classes with a cross-entropy loss; pass head='fresh' "
                              "to load the encoder with a new classifier instead")
    if n_classes is not None and n_classes != labels:
        raise ConfigError(f"n_classes={n_classes} but the checkpoint's classifier has num_labels={labels}: leave "
                          "n_classes unset (the checkpoint's), or pass head='fresh' for a new classifier")
    return labels


@torch.no_grad()
def encoder_from_hf(model, n_classes: int | None = None, head_seed: int = 0, check: bool = True, head: str = "auto",
                    fresh: tuple[str, ...] = ()):
    """A K=1 EncoderClassifier (encoder family) from a transformers BERT / RoBERTa model, checked against it.

    head="auto": a BertForSequenceClassification / RobertaForSequenceClassification keeps its classifier
    (n_classes = its num_labels; RoBERTa's dense -> tanh -> out_proj head becomes our pooler and head, the same
    function at evaluation) and its logits are checked; a BertModel / RobertaModel (no head) gets a fresh
    n_classes head (default 2) from head_seed and its last hidden states are checked. Any other head (masked LM,
    token classification, ...) is a ConversionError naming its tensors: nothing is dropped silently.
    head="fresh": a new head whatever the checkpoint holds (its own head's tensors named in a warning).
    fresh: tensors transformers initialised itself (missing from the checkpoint); only a pooler is allowed, and only
    under a fresh head (it is then drawn from a fixed seed, as the notebooks' MiniLM), else ConversionError.
    n_classes: None or an integer >= 2; head_seed: an integer (ConfigError otherwise)."""
    if n_classes is not None:
        n_classes = check_int("n_classes", n_classes, 2, MAX_VOCAB)
    head_seed = check_int("head_seed", head_seed, 0, MAX_SEED)
    check_choice("head", head, HEADS)
    from .encoder import EncoderClassifier
    from .pretrained import bert_from_hf, hf_encoder_config, position_offset, stack_pretrained

    hf = model.config.to_dict()
    kind, arch = hf.get("model_type"), type(model).__name__
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        raise ConversionError(f"hidden_act={act!r}: the encoder implements exact (erf) GELU only")
    sd = dict(model.state_dict())
    carry = head == "auto" and arch == SEQUENCE_HEADS.get(kind)
    extra = _head_tensors(sd)
    if carry:
        n_classes = _sequence_head(model, n_classes)
        if kind == "roberta":
            sd = {next((n.replace(a, b, 1) for a, b in ROBERTA_HEAD.items() if n.startswith(a)), n): t
                  for n, t in sd.items()}
    elif extra and head == "auto":
        raise ConversionError(f"{arch} has a task head load_hf cannot carry over ({', '.join(extra[:4])}"
                              f"{', ...' if len(extra) > 4 else ''}): it reads sequence classifiers "
                              f"({', '.join(SEQUENCE_HEADS.values())}) and heads-free encoders; pass head='fresh' to "
                              "load the encoder with a new classifier (that head is then dropped)")
    else:
        if extra:
            warnings.warn(f"head='fresh': {arch}'s own head ({', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''})"
                          f" is dropped; the classifier is new, drawn from head_seed={head_seed}", stacklevel=4)
        sd = {n: t for n, t in sd.items() if n not in extra}
    bad = [n for n in fresh if carry or "pooler." not in n]
    if bad:
        raise ConversionError(f"the checkpoint lacks {', '.join(bad[:4])}: transformers would initialise "
                              f"{'them' if len(bad) > 1 else 'it'} at random; save the model again with its "
                              "save_pretrained()")
    sd = {n: t for n, t in sd.items() if n not in fresh}
    cfg = hf_encoder_config(hf, n_classes=n_classes or 2)
    body = bert_from_hf(sd, cfg, position_offset(hf))
    state = stack_pretrained(cfg, 1, body, None if carry else [head_seed])
    ours = EncoderClassifier(cfg, 1)
    ours.load_state_dict(state)
    ours.eval()
    if check:
        tok = _tokens(min(cfg.vocab_size, 1000), cfg.max_positions)
        tok[tok == cfg.pad_token_id] = (cfg.pad_token_id + 1) % cfg.vocab_size  # no padding in the check
        mask = torch.ones_like(tok)
        full = _float32(model).eval()
        if carry:
            _compare(ours(tok[None], mask[None])[0], full(input_ids=tok, attention_mask=mask).logits,
                     "classifier's logits")
        else:
            body = getattr(full, "base_model", full)
            theirs = body(input_ids=tok, attention_mask=mask).last_hidden_state
            _compare(ours.features(tok[None], mask[None])[0][0], theirs, "encoder's last hidden states")
    return ours


def _model_class(tf, kind: str, arch: str | None, head: str):
    """The transformers class load_hf reads a folder with: its saved architecture when load_hf reads it (a base model
    or a sequence classifier), the base model for head='fresh'; ConversionError naming any other head."""
    names = BASES[kind] + ((SEQUENCE_HEADS[kind],) if kind in SEQUENCE_HEADS else ())
    if arch is None or arch in names:
        return getattr(tf, arch or BASES[kind][0])
    if kind in SEQUENCE_HEADS and head == "fresh":
        return getattr(tf, BASES[kind][0])
    fix = "; pass head='fresh' to load its encoder with a new classifier" if kind in SEQUENCE_HEADS else ""
    raise ConversionError(f"{arch} has a head load_hf would lose: of {kind} models it reads {' and '.join(names)}"
                          f"{fix}")


def _loaded(tf, cls, folder: Path, weights: list[str], head: str):
    """(model, the tensors transformers initialised itself) from a folder; a tensor of the file that the class does
    not read is a ConversionError naming it (it would be lost), unless it belongs to a head dropped on request."""
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()  # a bar per loaded checkpoint says nothing here
    verbosity = tf.utils.logging.get_verbosity()
    tf.utils.logging.set_verbosity_error()  # its report of unused / new tensors: checked below, by name
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure: name the files it read
        raise ConversionError(f"transformers could not read the checkpoint in {str(folder)!r} (weights "
                              f"{weights}; {_first_line(exc)}): save the model again with save_pretrained() or "
                              "copy the folder completely") from None
    finally:
        tf.utils.logging.set_verbosity(verbosity)
        if bars:
            tf.utils.logging.enable_progress_bar()
    unused = sorted(info.get("unexpected_keys") or ())
    encoders = (*BASES["bert"], *BASES["roberta"], *SEQUENCE_HEADS.values())  # the models a head='fresh' drops from
    if unused and (head != "fresh" or cls.__name__ not in encoders):
        raise ConversionError(f"{cls.__name__} does not read {', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''}"
                              f" of {str(folder)!r}: load_hf would lose {'them' if len(unused) > 1 else 'it'}")
    if unused:
        warnings.warn(f"head='fresh': {', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''} of {str(folder)!r} "
                      "dropped", stacklevel=3)
    return model, tuple(sorted(info.get("missing_keys") or ()))


ADAPTER_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes beside the adapter's weights


def _from_folder(tf, folder: Path, head: str):
    """(transformers model, tensors it initialised itself) of a save_pretrained folder, checked (see load_hf)."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no config.json: give a folder written by a transformers "
                                "model's save_pretrained() (or a peft adapter folder)")
    weights = _check_folder(folder)
    try:
        config = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a config transformers cannot read: name the file
        raise ConversionError(f"{str(folder / 'config.json')!r} cannot be read by transformers "
                              f"({_first_line(exc)}): save the model again with save_pretrained()") from None
    kind = config.model_type
    if kind not in BASES:
        raise ConversionError(f"model_type {kind!r} is not supported; load_hf reads {', '.join(BASES)}")
    cls = _model_class(tf, kind, (getattr(config, "architectures", None) or [None])[0], head)
    return _loaded(tf, cls, folder, weights, head)


def _adapter(tf, folder: Path, base: str | Path | None, head: str):
    """(the base model with the peft adapter of `folder` merged into its weights, tensors the base lacked): the base
    from `base`, else the adapter's base_model_name_or_path, a local save_pretrained folder either way."""
    if importlib.util.find_spec("peft") is None:
        raise ConversionError(f"{str(folder)!r} is a peft adapter: reading it needs peft (`pip install peft`)")
    import peft

    try:
        named = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{str(folder / ADAPTER_CONFIG)!r} cannot be read ({_first_line(exc)})") from None
    where = Path(base) if base is not None else Path(named) if named else None
    if where is None or not (where / "config.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} is a peft adapter of base model {named!r}, which is not a local "
                                "folder here: pass base=<the base model's save_pretrained folder>")
    model, fresh = _from_folder(tf, where, head)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            merged = peft.PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except Exception as exc:  # noqa: BLE001 - an adapter that does not fit its base: name both
        raise ConversionError(f"the peft adapter in {str(folder)!r} does not fit the base model in {str(where)!r} "
                              f"({_first_line(exc)})") from None
    lost = [str(w.message) for w in said if "missing adapter keys" in str(w.message).lower()]
    if lost:  # peft only warns: the adapter's tensors found no layer, and the model would be the bare base
        raise ConversionError(f"the peft adapter in {str(folder)!r} does not fit the base model in {str(where)!r}: "
                              f"{lost[0][:300]}; give the base model it was trained on (base=...)")
    for w in said:  # anything else peft said, said again
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return merged.eval(), fresh


def load_hf(source: Any, context: int | None = None, n_classes: int | None = None, head_seed: int = 0,
            check: bool = True, head: str = "auto", base: str | Path | None = None):
    """A K=1 lmc_core model from a Hugging Face checkpoint folder (offline) or a transformers model object.

    GPT-2 and OPT (`GPT2LMHeadModel`/`GPT2Model`, `OPTForCausalLM`/`OPTModel`) -> TransformerLM (lm family;
    `context`: the positions used, default all); BERT / RoBERTa -> EncoderClassifier (encoder family): a sequence
    classifier (`BertForSequenceClassification`, `RobertaForSequenceClassification`) keeps its trained head and
    num_labels, a base model (`BertModel`, `RobertaModel`) gets a fresh n_classes head from head_seed (head='fresh':
    always a fresh head; see encoder_from_hf). Nothing is lost silently: a checkpoint with another head, a tensor of
    the file the model does not read, or one transformers would initialise at random is a ConversionError naming
    it. check: compare outputs with transformers' on a fixed token batch (logits, or the encoder's last hidden
    states under a fresh head; ConversionError beyond fp32 rounding; both models run in float32). The model
    returned is float32 whatever the checkpoint's dtype (fp16 / bf16 values are exact in float32).
    context: None or an integer >= 1; n_classes: None (the checkpoint's head, else 2) or an integer >= 2;
    head_seed: an integer; check: a bool; head: 'auto' or 'fresh' (ConfigError otherwise, before anything is read).
    A peft adapter folder (adapter_config.json, no config.json) is read onto its base model — `base`, else the
    folder its adapter_config names, a local save_pretrained folder either way — and merged into the base's weights
    (W + scaling * B A: the model the adapter fine-tuned, as one lmc_core model; needs peft).
    Raises FileNotFoundError for a folder without config.json or without a weights file, and ConversionError for
    an unreadable config.json, a truncated or corrupt weights file (named), another model type or head, or a
    setting we cannot reproduce.
    """
    if context is not None:
        context = check_int("context", context, 1, MAX_WIDTH)
    if n_classes is not None:
        n_classes = check_int("n_classes", n_classes, 2, MAX_VOCAB)
    head_seed = check_int("head_seed", head_seed, 0, MAX_SEED)
    check_choice("head", head, HEADS)
    if not isinstance(check, bool):
        raise ConversionError(f"check={check!r} must be True or False")
    tf = _transformers()
    fresh: tuple[str, ...] = ()
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
            model, fresh = _adapter(tf, folder, base, head)
        else:
            model, fresh = _from_folder(tf, folder, head)
    else:
        model = source
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in BASES:
        raise ConversionError(f"model_type {kind!r} is not supported; load_hf reads {', '.join(BASES)}")
    _model_class(tf, kind, type(model).__name__, head)  # another head: refused by name
    if kind in ("gpt2", "opt") and fresh:
        raise ConversionError(f"the checkpoint lacks {', '.join(fresh[:4])}: transformers would initialise "
                              "it at random; save the model again with its save_pretrained()")
    out = ((gpt2_from_hf if kind == "gpt2" else opt_from_hf)(model, context, check) if kind in ("gpt2", "opt")
           else encoder_from_hf(model, n_classes, head_seed, check, head, fresh))
    said = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)  # transformers 5 / 4
    out.checkpoint_dtype = getattr(torch, said) if isinstance(said, str) and hasattr(torch, said) else said if \
        isinstance(said, torch.dtype) else next((t.dtype for t in model.parameters() if t.is_floating_point()),
                                                torch.float32)
    return out
