"""Typed, frozen configuration; a run's identity is the hash of its non-default fields."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Bump when a change to the code alters trained weights, so old runs are not reused.
STORE_FORMAT = 1


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to change."""


@dataclass(frozen=True)
class ModelConfig:
    """Causal transformer LM; `arch` picks post-norm (PTB study) or pre-norm (GPT-2 style)."""

    arch: str = "postnorm"  # "postnorm" (nn.TransformerEncoder + causal mask) | "prenorm" (GPT-2)
    vocab_size: int = 10000
    d_model: int = 200
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 200
    context: int = 35
    dropout: float = 0.2
    positions: str = "sinusoidal"  # "sinusoidal" | "learned"
    tie_embeddings: bool = False
    activation: str = "relu"  # "relu" | "gelu"
    embed_scale: bool = True  # multiply token embeddings by sqrt(d_model) (PyTorch LM tutorial)
    init: str = "ptb"  # "ptb" (tutorial/PyTorch defaults) | "gpt2" (N(0, 0.02))

    def validate(self) -> "ModelConfig":
        """Raise ConfigError if a field is out of range."""
        _choice("arch", self.arch, ("postnorm", "prenorm"))
        _choice("positions", self.positions, ("sinusoidal", "learned"))
        _choice("activation", self.activation, ("relu", "gelu"))
        _choice("init", self.init, ("ptb", "gpt2"))
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "context"):
            _positive(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        return self


MODEL_PRESETS: dict[str, ModelConfig] = {
    # The instability study's PTB transformer (2 layers, d=200, 2 heads, d_ff=200, dropout 0.2, bptt 35).
    "ptb-transformer": ModelConfig(),
    # GPT-2 style configs of the Shakespeare study (pre-norm, learned positions, tied, GELU, no dropout).
    "tinygpt": ModelConfig(arch="prenorm", vocab_size=65, d_model=64, n_layers=4, n_heads=4, d_ff=256,
                           context=8, dropout=0.0, positions="learned", tie_embeddings=True,
                           activation="gelu", embed_scale=False, init="gpt2"),
    "toygpt": ModelConfig(arch="prenorm", vocab_size=50257, d_model=32, n_layers=4, n_heads=4, d_ff=128,
                          context=8, dropout=0.0, positions="learned", tie_embeddings=True,
                          activation="gelu", embed_scale=False, init="gpt2"),
    "compactgpt": ModelConfig(arch="prenorm", vocab_size=50257, d_model=192, n_layers=6, n_heads=6,
                              d_ff=768, context=64, dropout=0.0, positions="learned",
                              tie_embeddings=True, activation="gelu", embed_scale=False, init="gpt2"),
    "mingpt": ModelConfig(arch="prenorm", vocab_size=50257, d_model=384, n_layers=6, n_heads=6, d_ff=1536,
                          context=256, dropout=0.0, positions="learned", tie_embeddings=True,
                          activation="gelu", embed_scale=False, init="gpt2"),
    "gpt2": ModelConfig(arch="prenorm", vocab_size=50257, d_model=768, n_layers=12, n_heads=12, d_ff=3072,
                        context=1024, dropout=0.0, positions="learned", tie_embeddings=True,
                        activation="gelu", embed_scale=False, init="gpt2"),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """A named model configuration with optional field overrides."""
    if name not in MODEL_PRESETS:
        raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODEL_PRESETS)}")
    try:
        return replace(MODEL_PRESETS[name], **overrides).validate()
    except TypeError as e:
        raise ConfigError(f"bad override for model {name!r}: {e}") from None


@dataclass(frozen=True)
class DataConfig:
    """Which corpus and how it is tokenised and batched."""

    corpus: str = "shakespeare"  # see lmc_core.data.load_corpus
    level: str = "word"  # "word" | "char"
    vocab_cap: int = 10000
    path: str | None = None  # local folder for corpus="ptb"

    def validate(self) -> "DataConfig":
        """Raise ConfigError if a field is out of range."""
        _choice("level", self.level, ("word", "char"))
        if self.vocab_cap < 2:
            raise ConfigError(f"vocab_cap={self.vocab_cap} must be at least 2")
        return self


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and length of training (identical for every copy)."""

    steps: int = 1000
    batch_size: int = 20  # sequences per optimizer step (per copy)
    accum: int = 1  # gradient accumulation: the batch is split into `accum` distinct micro-batches
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 2.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    schedule: str = "step"  # "constant" | "step" | "cosine"
    step_size: int = 0  # StepLR period in steps (0: one epoch)
    gamma: float = 0.95
    warmup_steps: int = 0
    min_lr: float = 0.0
    warmup_from_min: bool = False  # the Shakespeare study warms up from min_lr, not from 0
    decay_steps: int = 0  # end of the cosine decay (0: `steps`)
    clip_norm: float | None = 0.5  # per-copy gradient-norm clipping
    precision: str = "fp32"  # "fp32" | "bf16" (autocast, GPU only)
    checkpoints: tuple[int, ...] = ()  # steps at which to keep model checkpoints
    save_every: int = 0  # resume-checkpoint period in steps (0: only at `checkpoints` and the end)

    def validate(self) -> "TrainConfig":
        """Raise ConfigError if a field is out of range."""
        _choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _choice("schedule", self.schedule, ("constant", "step", "cosine"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        _positive("steps", self.steps)
        _positive("batch_size", self.batch_size)
        _positive("accum", self.accum)
        if self.batch_size % self.accum:
            raise ConfigError(f"batch_size={self.batch_size} must be divisible by accum={self.accum}")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} must be positive")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ConfigError(f"clip_norm={self.clip_norm} must be positive or None")
        for s in self.checkpoints:
            if not 0 <= s <= self.steps:
                raise ConfigError(f"checkpoint step {s} is outside [0, steps={self.steps}]")
        if self.save_every < 0 or self.step_size < 0 or self.warmup_steps < 0:
            raise ConfigError("save_every, step_size and warmup_steps must be >= 0")
        return self


@dataclass(frozen=True)
class Seeds:
    """The three independent seeds of one copy."""

    init: int = 0
    data: int = 0
    dropout: int = 0


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a set of K trained copies."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[Seeds, ...] = (Seeds(),)

    def validate(self) -> "RunSpec":
        """Validate every part; raise ConfigError with what to change."""
        self.model.validate()
        self.data.validate()
        self.train.validate()
        if not self.seeds:
            raise ConfigError("a run needs at least one copy (seeds is empty)")
        return self

    @property
    def k(self) -> int:
        """Number of copies."""
        return len(self.seeds)


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(allowed)}")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive integer")


def non_default(cfg: Any) -> Any:
    """The fields of a (nested) config that differ from their defaults, as plain JSON data."""
    if dataclasses.is_dataclass(cfg):
        default = type(cfg)()
        out = {}
        for f in fields(cfg):
            v, d = getattr(cfg, f.name), getattr(default, f.name)
            if v != d:
                out[f.name] = non_default(v)
        return out
    if isinstance(cfg, (list, tuple)):
        return [non_default(v) if dataclasses.is_dataclass(v) else _plain(v) for v in cfg]
    return _plain(cfg)


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def config_hash(cfg: Any, length: int = 16) -> str:
    """Stable hash of a config's non-default fields (plus the store format)."""
    payload = json.dumps({"format": STORE_FORMAT, "cfg": non_default(cfg)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def to_dict(cfg: Any) -> Any:
    """Full config as JSON-able data."""
    return _plain(cfg)


def spec_from_dict(d: dict) -> RunSpec:
    """Inverse of to_dict for a RunSpec."""
    t = dict(d["train"])
    t["betas"] = tuple(t["betas"])
    t["checkpoints"] = tuple(t["checkpoints"])
    return RunSpec(model=ModelConfig(**d["model"]), data=DataConfig(**d["data"]), train=TrainConfig(**t),
                   seeds=tuple(Seeds(**s) for s in d["seeds"]))
