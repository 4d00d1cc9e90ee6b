"""The runs of the generalisation-strategies setting (notebook 05, Juneja et al. 2023): the phrase task's data
configs, the masked-LM pretraining of our small BERT encoder on the plays, and the fine-tunes of it (or of the
shipped MiniLM) as dispatch Jobs, one per model, each with its own classifier-head, data-order and dropout seed;
and the text of its control (LM continuation on held-out plays).

`p` is the study's parameters (lmc_core.studies.generalization.Params) or any object with the same fields.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from types import SimpleNamespace

from ..config import RunSpec, Seeds, TrainConfig, config_hash
from ..data import load_corpus
from ..data.strategies import PlaysTaskConfig, plays_task
from ..families.encoder import encoder_config
from ..models.mlm import MaskedLMConfig, backbone
from .dispatch import Job, Recipe
from .store import RunStore

BACKBONE_KEYS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "words", "dropout", "pretrain_steps",
                 "pretrain_batch", "pretrain_lr")


def task_config(p, task: str = "phrase") -> PlaysTaskConfig:
    """The data config of the task (or of the pretraining windows, task="mlm": only the window length and the
    vocabulary matter there). The evaluation size is left at its default, so that it does not enter the runs'
    identity; `eval_config` sets it."""
    if task == "mlm":
        return PlaysTaskConfig(task=task, words=p.words, vocab_size=p.vocab_size)
    return PlaysTaskConfig(task=task, words=p.words, vocab_size=p.vocab_size, phrase=tuple(p.phrase),
                           epsilon=p.epsilon, train_size=p.train_size)


def eval_config(p) -> PlaysTaskConfig:
    """The task with the profile's evaluation size."""
    return replace(task_config(p), eval_size=p.eval_size)


def task_split(config: dict, split: str):
    """One split of a task's Examples (a Recipe for dispatched jobs)."""
    return plays_task(PlaysTaskConfig(**{**config, "phrase": tuple(config["phrase"])}))[split]


def pretrain_spec(p) -> RunSpec:
    """The masked-LM pretraining run of our encoder (K=1)."""
    model = MaskedLMConfig(vocab_size=p.vocab_size, d_model=p.d_model, n_layers=p.n_layers, n_heads=p.n_heads,
                           d_ff=p.d_ff, max_positions=p.words + 2, dropout=p.dropout,
                           attention_dropout=p.dropout).validate()
    train = TrainConfig(steps=p.pretrain_steps, batch_size=p.pretrain_batch, optimizer="adamw", lr=p.pretrain_lr,
                        betas=(0.9, 0.999), weight_decay=0.01, schedule="cosine",
                        warmup_steps=max(1, p.pretrain_steps // 10), clip_norm=1.0)
    return RunSpec(model=model, data=task_config(p, "mlm"), train=train, seeds=(Seeds(0, 0, 0),))


def pretrained_backbone(store_root: str, params: dict):
    """The pretrained encoder's backbone (K=1, no classifier: each fine-tune draws it from its init seed);
    trained and stored on first use. params: the BACKBONE_KEYS fields (a Recipe for dispatched jobs)."""
    spec = pretrain_spec(SimpleNamespace(**params))
    run = RunStore(store_root).get(spec, plays_task(spec.data)["train"], "auto", False)
    return backbone(run.state)


def finetune_spec(p) -> RunSpec:
    """One fine-tune (K=1, seeds set per job) of the chosen encoder on the task."""
    n = p.finetune_steps
    ckpts = tuple(sorted({max(1, int(round(f * n))) for f in p.dynamics}))
    train = TrainConfig(steps=n, batch_size=p.batch_size, optimizer="adamw", lr=p.finetune_lr, betas=(0.9, 0.999),
                        weight_decay=p.weight_decay, schedule="cosine", warmup_steps=max(1, n // 10), clip_norm=1.0,
                        checkpoints=ckpts, store_optimizer=False)
    if p.encoder == "minilm":
        model = encoder_config("minilm", "full", vocab="shakespeare", n_classes=2, n_layers=p.minilm_layers,
                               max_positions=p.words + 2)
        return RunSpec(model=model, data=task_config(p), train=train)
    pre = pretrain_spec(p)
    return RunSpec(model=pre.model.encoder(2), data=task_config(p), train=train,
                   init_from=f"{config_hash(pre)}@{pre.train.steps}")


def jobs(p, store_root: str) -> list[Job]:
    """One submitit job per fine-tune (packed into one ensemble by dispatch); fine-tune i has its own
    classifier-head (init 100 + i), data-order (1000 + i) and dropout (2000 + i) seeds."""
    spec0 = finetune_spec(p)
    data = Recipe.of("lmc_core.runs.strategies:task_split", config=asdict(spec0.data), split="train")
    init = None
    if p.encoder == "pretrained":
        init = Recipe.of("lmc_core.runs.strategies:pretrained_backbone", store_root=store_root,
                         params={k: getattr(p, k) for k in BACKBONE_KEYS})
    return [Job(replace(spec0, seeds=(Seeds(init=100 + i, data=1000 + i, dropout=2000 + i),)), data, init)
            for i in range(p.models)]


def control_splits(cache_dir: str, id_fraction: float) -> dict:
    """The control's text (LM continuation of the character plays): the fine-tuning stream (the held-out plays
    minus their last id_fraction), the in-distribution test stream (that last part) and the out-of-distribution
    test stream (other unseen plays)."""
    corpus = load_corpus("shakespeare", level="char", cache_dir=cache_dir)
    cut = int(len(corpus.valid) * (1 - id_fraction))
    return {"train": corpus.valid[:cut], "id": corpus.valid[cut:], "ood": corpus.test, "vocab": len(corpus.vocab)}


def control_tokens(cache_dir: str, id_fraction: float):
    """The control's fine-tuning token stream (a Recipe for dispatched jobs)."""
    return control_splits(cache_dir, id_fraction)["train"]
