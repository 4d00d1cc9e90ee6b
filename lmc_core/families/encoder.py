"""The BERT-family encoder classifier (notebook 03): a pretrained backbone (the shipped MiniLM) or a
random one, fully fine-tuned or with adapters / LoRA, on a text-classification task.

The word-embedding table may be cut down to the WordPiece ids that occur anywhere in Shakespeare's
plays (`vocab="shakespeare"`): the model then computes exactly what the full model computes on
those texts, with a third of the parameters (a classifier never reads the rows of other tokens).
Frozen parameters (the backbone under adapters or LoRA) equal their initial values, so the run
store keeps only the trained ones and rebuilds the rest from the initialisation.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

from ..config import ConfigError
from ..data.batches import Examples
from ..models.adapters import tuning_plan
from ..models.encoder import EncoderClassifier, EncoderConfig
from ..nn import TrimmedDropout
from .. import rng
from .base import Family, FamilyExample

TASKS = ("genre", "verse_prose")


@dataclass(frozen=True)
class TextDataConfig:
    """An offline Shakespeare text-classification task (lmc_core.data.tasks); `half` 1 or 2 keeps only that
    half of the training passages (in a seeded order), 0 all of them."""

    task: str = "genre"
    max_length: int = 32
    seed: int = 0
    half: int = 0

    def validate(self) -> "TextDataConfig":
        """Raise ConfigError if a field is out of range."""
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r}; choose one of {list(TASKS)}")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"max_length={self.max_length} must lie in [8, 512]")
        if self.half not in (0, 1, 2):
            raise ConfigError(f"half={self.half}; choose 0 (all training data), 1 or 2")
        return self


@functools.lru_cache(maxsize=1)
def shakespeare_vocab() -> torch.Tensor:
    """Sorted WordPiece ids (full MiniLM vocabulary) that occur in the plays' dialogue, plus the specials."""
    from ..data.shakespeare import shakespeare_plays
    from ..data.tasks import line_token_ids, wordpiece_tokenizer

    ids = {i for _, lines in shakespeare_plays().values() for row in line_token_ids(lines) for i in row}
    tok = wordpiece_tokenizer()
    ids |= {tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    return torch.tensor(sorted(ids), dtype=torch.int64)


def encoder_config(pretrained: str = "minilm", tune: str = "full", vocab: str = "shakespeare", n_classes: int = 3,
                   **overrides) -> EncoderConfig:
    """An EncoderConfig with MiniLM's architecture (its vocabulary cut to Shakespeare's when asked)."""
    base = EncoderConfig()
    if tune == "adapter":
        overrides.setdefault("adapter", 24)
    if tune == "lora":
        overrides.setdefault("lora_rank", 8)
    cfg = replace(base, pretrained=pretrained, tune=tune, vocab=vocab, n_classes=n_classes, **overrides)
    if vocab == "shakespeare":
        cfg = replace(cfg, vocab_size=int(shakespeare_vocab().numel()))
    return cfg.validate()


def text_examples(cfg: TextDataConfig) -> dict[str, Examples]:
    """{"train", "valid", "test"} Examples(input_ids, attention_mask, labels) of the task."""
    from .. import rng
    from ..data.tasks import genre_task, verse_prose_task

    cfg.validate()
    task = (genre_task if cfg.task == "genre" else verse_prose_task)(max_length=cfg.max_length, seed=cfg.seed)
    out = {}
    for i, (s, t) in enumerate(task.splits.items()):  # a seeded shuffle: the first N of a split are a fair sample
        order = torch.randperm(len(t["labels"]), generator=rng.generator(cfg.seed, i, 0x5EED))
        out[s] = Examples(input_ids=t["input_ids"][order], attention_mask=t["attention_mask"][order],
                          labels=t["labels"][order])
    if cfg.half:
        n = len(out["train"])
        order = torch.randperm(n, generator=rng.generator(cfg.seed, 0x4A1F))
        part = order[: n // 2] if cfg.half == 1 else order[n // 2 :]
        out["train"] = Examples(**{k: v[part] for k, v in out["train"].tensors.items()})
    return out


class EncoderFamily(Family):
    """EncoderClassifier on Examples(input_ids [N, T], attention_mask [N, T], labels [N])."""

    name = "encoder"
    config_type = EncoderConfig
    data_type = TextDataConfig
    metrics = ("loss", "error")

    def _check_cfg(self, cfg: EncoderConfig) -> None:
        if cfg.vocab == "shakespeare" and cfg.vocab_size != int(shakespeare_vocab().numel()):
            raise ConfigError(f"vocab='shakespeare' needs vocab_size={int(shakespeare_vocab().numel())}; build the "
                              "config with lmc_core.families.encoder.encoder_config(...)")

    def build(self, cfg: EncoderConfig, k: int) -> EncoderClassifier:
        """K-copy encoder with the parameters of its tuning mode trainable and the rest frozen."""
        self._check_cfg(cfg)
        model = EncoderClassifier(cfg, k)
        keep = set(tuning_plan(model, cfg.tune).trainable)
        for n, p in model.named_parameters():
            p.requires_grad_(n in keep)
        return model

    def init(self, cfg: EncoderConfig, seeds: list[int]) -> dict[str, torch.Tensor]:
        """Random init from the seeds; with pretrained="minilm" the backbone and pooler are MiniLM's (the
        same in every copy) and the classifier, adapters and LoRA come from each copy's seed."""
        model = self.build(cfg, len(seeds)).init_weights(list(seeds))
        state = model.state_dict()
        if cfg.pretrained == "minilm":
            with torch.no_grad():
                for n, t in pretrained_backbone(cfg).items():
                    state[n].copy_(t.expand_as(state[n]))
        return state

    def frozen_keys(self, cfg: EncoderConfig) -> set[str]:
        """Parameters that never change in training (rebuilt from the initialisation when loaded)."""
        return set(tuning_plan(EncoderClassifier(replace(cfg, vocab_size=8, n_layers=cfg.n_layers), 1),
                               cfg.tune).frozen) if cfg.tune != "full" else set()

    def example(self) -> FamilyExample:
        """A one-layer random encoder (small vocabulary) with LoRA on a 3-class task of padded sequences."""
        cfg = EncoderConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_positions=16,
                            n_classes=3, tune="lora", lora_rank=2).validate()
        g = rng.generator(0, 0xE7D)
        ids = torch.randint(5, 50, (24, 8), generator=g)
        lengths = torch.randint(3, 9, (24,), generator=g)
        mask = (torch.arange(8)[None] < lengths[:, None]).long()
        ids = ids * mask
        return FamilyExample(cfg, TextDataConfig(max_length=8), Examples(input_ids=ids, attention_mask=mask,
                                                                           labels=torch.randint(0, 3, (24,), generator=g)))

    def n_classes(self, cfg: EncoderConfig) -> int:
        """Labels."""
        return cfg.n_classes

    def _map(self, cfg: EncoderConfig, ex: Examples, what: str) -> Examples:
        ids = ex["input_ids"]
        if cfg.vocab == "shakespeare":
            vocab = shakespeare_vocab()
            pos = torch.searchsorted(vocab, ids)
            if bool((pos >= len(vocab)).any()) or not torch.equal(vocab[pos.clamp(max=len(vocab) - 1)], ids):
                raise ConfigError(f"the {what} hold WordPiece ids outside the Shakespeare vocabulary; use vocab='full'")
            ids = pos
        if int(ids.max()) >= cfg.vocab_size or int(ex["labels"].max()) >= cfg.n_classes:
            raise ConfigError(f"the {what} do not fit the encoder (token ids < {cfg.vocab_size}, labels < "
                              f"{cfg.n_classes} expected)")
        return Examples(input_ids=ids, attention_mask=ex["attention_mask"], labels=ex["labels"])

    def train_examples(self, spec, source: Examples) -> Examples:
        """Training Examples with token ids in the model's vocabulary."""
        return self._map(spec.model, source, "training examples")

    def eval_examples(self, cfg: EncoderConfig, source: Examples, limit: int | None = None) -> Examples:
        """The first `limit` examples of a split."""
        return self._map(cfg, source.head(limit), "evaluation examples")

    def outputs(self, model: EncoderClassifier, batch, drop=None):
        """Logits [K, B, C] and labels [K or 1, B]."""
        mask = batch["attention_mask"]
        full = mask.shape[-1]
        t = int(mask.sum(-1).max())  # trim padding every example of the batch has
        if drop is not None:  # each example's masks as if nothing were trimmed (independent of the other copies)
            drop = TrimmedDropout(drop, mask.shape[-2], t, full)
        return model(batch["input_ids"][..., :t], mask[..., :t], None, drop), batch["labels"]

    def eval_bytes_per_example(self, cfg: EncoderConfig) -> int:
        """Activations dominate: a rough per-example budget."""
        return 64 * cfg.d_model * 16

    def interp_keys(self, cfg: EncoderConfig, state, mode: str | None = None) -> set[str] | None:
        """The tuned parameters (all for full fine-tuning; adapters/LoRA + head otherwise)."""
        if cfg.tune == "full":
            return None
        return set(state) - self.frozen_keys(cfg)

    def head_keys(self, cfg: EncoderConfig, state) -> set[str]:
        """The classifier (kept per endpoint across a task boundary)."""
        return {k for k in state if k.startswith("head.")}

    def perm_spec(self, cfg: EncoderConfig):
        """Residual stream, heads, MLP units and pooler units (families.encoder_spec)."""
        from .encoder_spec import encoder_spec

        return encoder_spec(cfg)


@functools.lru_cache(maxsize=4)
def _minilm_full() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from ..models.pretrained import bert_from_hf, minilm_config, minilm_dir

    base = minilm_config()
    return bert_from_hf(load_file(str(minilm_dir() / "model.safetensors")), base)


def pretrained_backbone(cfg: EncoderConfig) -> dict[str, torch.Tensor]:
    """MiniLM's backbone and pooler (K=1) shaped for cfg: its first cfg.n_layers layers, and the word
    embedding rows of the Shakespeare vocabulary when cfg.vocab says so."""
    full = _minilm_full()
    if cfg.d_model != 384 or cfg.n_heads != 12 or cfg.d_ff != 1536 or cfg.n_layers > 6:
        raise ConfigError("pretrained='minilm' needs MiniLM's shape (d_model 384, 12 heads, d_ff 1536, <= 6 layers)")
    out = {}
    for n, t in full.items():
        if n.startswith("layers."):
            if int(n.split(".")[1]) >= cfg.n_layers:
                continue
        elif not (n.startswith(("word_emb", "pos_emb", "type_emb", "emb_ln.", "pooler."))):
            continue
        if n == "word_emb" and cfg.vocab == "shakespeare":
            t = t[:, shakespeare_vocab()]
        if n == "pos_emb":
            t = t[:, : cfg.max_positions]
        out[n] = t
    return out
