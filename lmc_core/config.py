"""Typed, frozen configuration; a run's identity is the hash of its non-default fields.

This module imports only lmc_core.domains (the parameter checks, re-exported here): every other module may import
it. Rebuilding a RunSpec from
its stored JSON needs the registered families (`lmc_core.families.registry.spec_from_dict`)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .capped import cap_steps
from .domains import (MAX_BATCH, MAX_STEPS, MAX_VOCAB, MAX_WIDTH, ConfigError, check_choice, check_int,  # noqa: F401
                      check_real)

# Bump when a change to the code alters trained weights, so old runs are not reused.
STORE_FORMAT = 2  # 2: pre-norm blocks lost the dropout inside the MLP (GPT-2 has none)


# the MLP activations of the transformer (lmc_core.nn.activations.ACTIVATIONS; "gelu" is the tanh approximation)
LM_ACTIVATIONS = ("relu", "gelu", "gelu_erf", "gelu_clip10", "quick_gelu", "silu", "mish", "tanh", "sigmoid", "identity",
                  "relu6", "relu2", "leaky_relu", "hardswish", "laplace", "sqrtsoftplus")


@dataclass(frozen=True)
class ModelConfig:
    """Causal transformer LM (the LM family's model config); `arch` picks post-norm (PTB study) or pre-norm
    (GPT-2 style).

    The name is generic for a historical reason: it was the only model config when the run store was
    designed, RunSpec defaults to it, and class names enter every stored run's hash, so it keeps its name.
    """

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
    activation: str = "relu"  # "relu" | "gelu" (tanh approximation) | ... (LM_ACTIVATIONS)
    embed_scale: bool = True  # multiply token embeddings by sqrt(d_model) (PyTorch LM tutorial)
    init: str = "ptb"  # "ptb" (tutorial/PyTorch defaults) | "gpt2" (N(0, 0.02)) | "nanda" (N(0, 1/d_model))
    norm: str = "layer"  # "layer" | "rms" (RMSNorm without gain: a folded LayerNorm) | "none" (the grokking transformer)
    n_out: int = 0  # output classes of the (untied) head; 0: vocab_size

    def validate(self) -> "ModelConfig":
        """Raise ConfigError if a field is out of range."""
        _choice("arch", self.arch, ("postnorm", "prenorm"))
        _choice("positions", self.positions, ("sinusoidal", "learned"))
        _choice("activation", self.activation, LM_ACTIVATIONS)
        _choice("init", self.init, ("ptb", "gpt2", "nanda"))
        _choice("norm", self.norm, ("layer", "rms", "none"))
        if self.n_out < 0 or (self.n_out and self.tie_embeddings):
            raise ConfigError(f"n_out={self.n_out} must be >= 0, and 0 with tied embeddings (the output is the "
                              "embedding table)")
        check_int("vocab_size", self.vocab_size, 1, MAX_VOCAB)
        check_int("n_out", self.n_out, 0, MAX_VOCAB)
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "context"):
            check_int(name, getattr(self, name), 1, MAX_WIDTH)
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
    """Which corpus and how it is tokenised and batched (the LM family's data config; generic name kept for
    the stored hashes, like ModelConfig)."""

    corpus: str = "shakespeare"  # see lmc_core.data.load_corpus
    level: str = "word"  # "word" | "char" | "bpe" (byte-level BPE trained on the train split) | "gpt2" (GPT-2's BPE)
    vocab_cap: int = 10000  # word level: the vocabulary's cap; "bpe": the BPE's vocabulary size
    path: str | None = None  # local folder for corpus="ptb"
    # which part of the corpus the run trains on, as the study that passes the tokens names it
    # ("" = the training split; e.g. "valid", "valid:1/2" for the first half of the valid split)
    part: str = ""

    def validate(self) -> "DataConfig":
        """Raise ConfigError if a field is out of range."""
        _choice("level", self.level, ("word", "char", "bpe", "gpt2"))
        check_int("vocab_cap", self.vocab_cap, 2, MAX_VOCAB)
        if self.level == "bpe" and self.vocab_cap < 257:
            raise ConfigError(f"vocab_cap={self.vocab_cap} is too small for a byte-level BPE (256 bytes and "
                              "<|endoftext|>); 4096 is a small vocabulary, 50257 GPT-2's")
        return self


# TrainConfig fields whose training supports one backward pass, so no Fisher penalty (a double backward): why
ONE_BACKWARD = {"compile": "its double backward does not compile",
                "fused_cross_entropy": "the fused loss's gradient supports one backward, the penalty needs two"}


def one_backward_only(train: "TrainConfig") -> str:
    """'' if `train` can take the Fisher penalty's double backward; else what to change and why (the first field of
    ONE_BACKWARD that is on)."""
    for field, why in ONE_BACKWARD.items():
        if getattr(train, field):
            return f"{field}=True cannot train with the Fisher penalty: {why}; set {field}=False"
    return ""


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and length of training (identical for every copy)."""

    steps: int = 1000
    batch_size: int = 20  # sequences per optimizer step (per copy)
    accum: int = 1  # gradient accumulation: the batch is split into `accum` distinct micro-batches
    optimizer: str = "sgd"  # "sgd" | "adam" (L2 weight decay, torch.optim.Adam) | "adamw" (decoupled)
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
    hold_steps: int = 0  # cosine: hold lr until this step, then decay (a decay over the last part of training)
    clip_norm: float | None = 0.5  # per-copy gradient-norm clipping
    precision: str = "fp32"  # "fp32" | "bf16" (autocast: on a GPU, or on a CPU with bf16 instructions)
    # how each copy's dropout masks are drawn (both are pure functions of (dropout seed, copy's step, site)):
    # "device": a torch.Generator per copy on a CPU, the counter-based hash on a GPU (every run stored before this
    # field existed); "hash": the counter-based hash on every device (the same masks on a CPU and a GPU; it fuses
    # into a compiled step, which the generators cannot)
    dropout_masks: str = "device"
    # run each copy's forward and backward through torch.compile (inductor): faster on long runs of small models
    # (bench/compile.py measures the break-even), but its kernels round differently from eager mode, so a compiled
    # run is a different run (the field enters the run's hash); with dropout it needs dropout_masks="hash"
    compile: bool = False
    # a language model's output layer and cross-entropy as one fused operation (lmc_core.nn.linear_ce): the logits
    # are formed a piece at a time and never held in full (their gradient is, in the compute dtype, until the
    # backward), which pays where the vocabulary is large (the PTB
    # study's 10,000 words: bench/ensemble.py --paths ...+fused); it rounds differently (the float32 sums run over
    # pieces), so it enters the run's hash; transformer LMs only, one backward (no Fisher penalty)
    fused_cross_entropy: bool = False
    checkpoints: tuple[int, ...] = ()  # steps at which to keep model checkpoints
    save_every: int = 0  # resume-checkpoint period in steps (0: only at `checkpoints` and the end)
    # a copy whose mean training loss over a logging window exceeds diverge_factor x the loss of a
    # uniform guess (ln V) after warm-up has diverged (also any NaN/inf loss)
    diverge_factor: float = 2.0
    on_divergence: str = "stop"  # "stop": raise TrainingDiverged | "freeze": freeze that copy, finish the others
    # Fisher penalty lambda * ||grad of the mean batch loss||^2 (double backward; Jastrzebski et al. 2021):
    # "sampled" labels drawn from the model's own prediction (trace of the Fisher), "empirical" true labels;
    # with accum > 1, the mean over micro-batches of ||grad of the micro-batch loss||^2
    fisher: float = 0.0
    fisher_mode: str = "sampled"
    fisher_every: int = 1  # apply the penalty every n steps
    fisher_batch: int = 0  # on the first n examples of each (micro-)batch; 0: all of it
    eval_every: int = 0  # log each copy's loss and accuracy on the monitored splits every n steps (0: never)
    store_optimizer: bool = True  # keep optimizer buffers in the final weights and kept checkpoints (resume
    # points always have them); False halves what a fine-tuned large model takes on disk

    def validate(self) -> "TrainConfig":
        """Raise ConfigError if a field is out of range."""
        _choice("optimizer", self.optimizer, ("sgd", "adam", "adamw"))
        _choice("on_divergence", self.on_divergence, ("stop", "freeze"))
        _choice("fisher_mode", self.fisher_mode, ("sampled", "empirical"))
        if self.eval_every < 0:
            raise ConfigError(f"eval_every={self.eval_every} must be >= 0")
        check_real("fisher", self.fisher, 0, None)
        check_real("weight_decay", self.weight_decay, 0, None)
        check_real("momentum", self.momentum, 0, 1, hi_open=True)
        if self.fisher_batch < 0 or self.fisher_every < 1:
            raise ConfigError(f"fisher={self.fisher} and fisher_batch={self.fisher_batch} must be >= 0, "
                              f"fisher_every={self.fisher_every} >= 1")
        _choice("schedule", self.schedule, ("constant", "step", "cosine"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        _choice("dropout_masks", self.dropout_masks, ("device", "hash"))
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile={self.compile!r} must be True or False")
        if not isinstance(self.fused_cross_entropy, bool):
            raise ConfigError(f"fused_cross_entropy={self.fused_cross_entropy!r} must be True or False")
        if self.fisher > 0 and (why := one_backward_only(self)):
            raise ConfigError(f"{why} (fisher={self.fisher}); or set fisher=0")
        check_int("steps", self.steps, 1, MAX_STEPS)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        check_int("accum", self.accum, 1, MAX_BATCH)
        if self.batch_size % self.accum:
            raise ConfigError(f"batch_size={self.batch_size} must be divisible by accum={self.accum}")
        check_real("lr", self.lr, 0, None, lo_open=True)
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ConfigError(f"clip_norm={self.clip_norm} must be positive or None")
        for s in self.checkpoints:
            if not 0 <= s <= self.steps:
                raise ConfigError(f"checkpoint step {s} is outside [0, steps={self.steps}]")
        if self.save_every < 0 or self.step_size < 0 or self.warmup_steps < 0:
            raise ConfigError("save_every, step_size and warmup_steps must be >= 0")
        if self.hold_steps:
            if self.schedule != "cosine":
                raise ConfigError(f"hold_steps={self.hold_steps} only applies to schedule='cosine' (a constant rate "
                                  "until hold_steps, then a cosine decay); set schedule='cosine' or hold_steps=0")
            check_int("hold_steps", self.hold_steps, 0, (self.decay_steps or self.steps) - 1)
        if not self.diverge_factor > 1:
            raise ConfigError(f"diverge_factor={self.diverge_factor} must be > 1 (a multiple of the loss of a "
                              "uniform guess)")
        return self


@dataclass(frozen=True)
class Seeds:
    """The three independent seeds of one copy."""

    init: int = 0
    data: int = 0
    dropout: int = 0


@dataclass(frozen=True)
class CopySettings:
    """Settings of one copy that differ from the run's TrainConfig (None: the run's value).

    A per-copy learning rate scales that copy's whole schedule (warm-up and min_lr included).
    """

    lr: float | None = None
    weight_decay: float | None = None
    fisher: float | None = None

    def validate(self) -> "CopySettings":
        """Raise ConfigError if a value is out of range."""
        if self.lr is not None:
            check_real("per-copy lr", self.lr, 0, None, lo_open=True)
        for name in ("weight_decay", "fisher"):
            v = getattr(self, name)
            if v is not None:
                check_real(f"per-copy {name}", v, 0, None)
        return self


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a set of K trained copies (of any model family).

    `model` and `data` are the family's config dataclasses (the LM's ModelConfig and DataConfig by
    default); `per_copy` (empty, or one entry per copy) holds each copy's own learning rate, weight
    decay and Fisher weight, so a grid over them trains as one ensemble.
    """

    model: Any = field(default_factory=ModelConfig)
    data: Any = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[Seeds, ...] = (Seeds(),)
    per_copy: tuple[CopySettings, ...] = ()
    # where the initial weights come from when they are not the family's initialisation from the init
    # seeds: an identity such as "<run hash>@<step>" of a stored pretraining run (the caller passes them)
    init_from: str = ""

    def validate(self) -> "RunSpec":
        """Validate every part; raise ConfigError with what to change."""
        self.model.validate()
        self.data.validate()
        self.train.validate()
        if not self.seeds:
            raise ConfigError("a run needs at least one copy (seeds is empty)")
        if self.per_copy and len(self.per_copy) != len(self.seeds):
            raise ConfigError(f"per_copy has {len(self.per_copy)} entries for {len(self.seeds)} copies; give one per "
                              "copy or none")
        for c in self.per_copy:
            c.validate()
        return self

    def copy_values(self, name: str) -> list[float]:
        """The value of a TrainConfig field `name` (lr, weight_decay, fisher) for each copy."""
        base = getattr(self.train, name)
        if not self.per_copy:
            return [float(base)] * self.k
        return [float(base if getattr(c, name) is None else getattr(c, name)) for c in self.per_copy]

    @property
    def k(self) -> int:
        """Number of copies."""
        return len(self.seeds)


def _choice(name: str, value: Any, allowed: tuple) -> None:
    check_choice(name, value, allowed)


def non_default(cfg: Any) -> Any:
    """The fields of a (nested) config that differ from their defaults, as plain JSON data (a field holding
    another config type than its default also names that type, so different families never collide)."""
    if dataclasses.is_dataclass(cfg):
        default = type(cfg)()
        out = {}
        for f in fields(cfg):
            v, d = getattr(cfg, f.name), getattr(default, f.name)
            if v != d:
                out[f.name] = non_default(v)
                if dataclasses.is_dataclass(v) and type(v) is not type(d):
                    out[f.name] = {"__type__": type(v).__name__, **out[f.name]}
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
    """Stable hash of a config's non-default fields (plus the store format; plus the cap of a capped run,
    lmc_core.capped, so that a capped run never answers for a real one)."""
    body = {"format": STORE_FORMAT, "cfg": non_default(cfg)}
    cap = cap_steps()
    if cap is not None:
        body["capped"] = cap
    payload = json.dumps(body, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def to_dict(cfg: Any) -> Any:
    """Full config as JSON-able data; config dataclasses inside a RunSpec carry their type name."""
    if isinstance(cfg, RunSpec):
        out = {f.name: _plain(getattr(cfg, f.name)) for f in fields(cfg)}
        for name in ("model", "data"):
            out[name] = {"__type__": type(getattr(cfg, name)).__name__, **out[name]}
        return out
    return _plain(cfg)


def from_dict(cls: type, d: dict) -> Any:
    """A config dataclass from plain data (lists become tuples where the field's default is a tuple)."""
    d = dict(d)
    d.pop("__type__", None)
    default = cls()
    kw = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if isinstance(v, list) and isinstance(getattr(default, f.name), tuple):
            v = _tuples(v)
        kw[f.name] = v
    return cls(**kw)


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v
