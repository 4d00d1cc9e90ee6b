"""The runs of notebook 03 (fine-tuning): our character LM's pretraining, its fine-tunes (from two pretraining
steps, on two halves of the data) and the from-scratch arm (pretrained and fine-tuned by the same recipe, split into
copies at initialisation instead of after pretraining) — the same pretraining run is notebook 05's
and 07's pretrained LM — and the shipped MiniLM's fine-tunes (full, Houlsby adapters, LoRA; a second task; data
halves).

`p` is the study's parameters (lmc_core.studies.finetuning.Params) or any object with the same fields; lm_specs
also takes a mapping of them.
"""
from __future__ import annotations

from dataclasses import replace

from ..config import DataConfig, RunSpec, Seeds, TrainConfig, config_hash, model_preset
from ..ensemble import stack_states
from ..families.encoder import TextDataConfig, encoder_config, text_examples
from .store import RunStore


def lm_specs(p, vocab: int) -> tuple[RunSpec, RunSpec, RunSpec]:
    """(pretraining spec, fine-tuning spec from a pretraining step, the scratch arm's pretraining spec). Fine-tuning
    copy c has data/dropout seed 10 + c. The scratch arm is the pretraining recipe run as 2 x lm_pairs copies: pair i
    (copies 2i, 2i + 1) shares its own initialisation 100 + i and differs in data order and dropout (seeds 300 + c)
    from step 0 on; scratch_finetune then fine-tunes each copy as the pretrained model is fine-tuned."""
    q = p if isinstance(p, dict) else {k: getattr(p, k) for k in ("lm_model", "lm_overrides", "pretrain_steps",
                                                                   "finetune_steps", "batch_size", "pretrain_lr",
                                                                   "warmup", "finetune_lr", "lm_pairs")}
    model = model_preset(q["lm_model"], vocab_size=vocab, **q["lm_overrides"])
    P, F = q["pretrain_steps"], q["finetune_steps"]
    base = TrainConfig(steps=P, batch_size=q["batch_size"], optimizer="adamw", lr=q["pretrain_lr"], schedule="cosine",
                       warmup_steps=q["warmup"], clip_norm=1.0, betas=(0.9, 0.95), checkpoints=(P // 2,),
                       save_every=max(P // 5, 1))
    pre = RunSpec(model=model, data=DataConfig(level="char"), train=base, seeds=(Seeds(0, 0, 0),))
    ft_train = replace(base, steps=F, lr=q["finetune_lr"], warmup_steps=min(q["warmup"], F // 5),
                       checkpoints=(F // 2,), save_every=max(F // 5, 1))
    noise = tuple(Seeds(init=0, data=10 + c, dropout=10 + c) for c in range(2 * q["lm_pairs"]))
    fine = RunSpec(model=model, data=DataConfig(level="char", part="valid"), train=ft_train, seeds=noise)
    scratch_seeds = tuple(Seeds(init=100 + c // 2, data=300 + c, dropout=300 + c) for c in range(2 * q["lm_pairs"]))
    scratch = replace(pre, train=replace(base, checkpoints=()), seeds=scratch_seeds)
    return pre, fine, scratch


def scratch_finetune(fine: RunSpec, scratch: RunSpec) -> RunSpec:
    """The scratch arm's fine-tuning: copy c of the scratch pretraining run fine-tuned by the fine-tuning recipe with
    the fine-tunes' data/dropout seeds (10 + c), from its own pretrained weights."""
    seeds = tuple(replace(s, data=10 + c, dropout=10 + c) for c, s in enumerate(scratch.seeds))
    return replace(fine, seeds=seeds, train=replace(fine.train, checkpoints=()),
                   init_from=f"{config_hash(scratch)}@{scratch.train.steps}")


def train_lm(p, store: RunStore, device, corpus) -> tuple[dict, list[dict]]:
    """Pretrain, fine-tune from both pretraining steps and on both data halves, train the scratch arm (or load each
    run from the store): ({name: K-copy state}, one row per run for the runs table). Names: pretrained,
    pretrained_mid (its checkpoint at half), end / mid (fine-tuned from them), scratch, half1, half2, step_mid
    (the fine-tune from the end at half its steps)."""
    pre, fine, scratch = lm_specs(p, len(corpus.vocab))
    P = p.pretrain_steps
    pretrained = store.get(pre, corpus.train, device, p.progress)
    st = {"pretrained": pretrained.state, "pretrained_mid": store.checkpoint(pre, P // 2)}
    runs = [{"model": "lm", "run": "pretraining", "copies": 1, "trained_now": pretrained.trained_now,
             "store": pretrained.path}]

    def get(name, label, spec, stream, init=None, stacked=None):
        kw = {"init_state": stacked} if stacked is not None else {} if init is None else {
            "init_state": stack_states([init] * spec.k)}
        r = store.get(spec, stream, device, p.progress, **kw)
        runs.append({"model": "lm", "run": label, "copies": spec.k, "trained_now": r.trained_now, "store": r.path})
        st[name] = r.state

    end = f"{config_hash(pre)}@{P}"
    for name, step, state in (("end", P, st["pretrained"]), ("mid", P // 2, st["pretrained_mid"])):
        get(name, f"fine-tune from pretraining step {step}", replace(fine, init_from=f"{config_hash(pre)}@{step}"),
            corpus.valid, state)
    get("scratch_pretrained", "from scratch: pretraining recipe, copies from step 0", scratch, corpus.train)
    get("scratch", "from scratch: fine-tuned", scratch_finetune(fine, scratch), corpus.valid,
        stacked=st["scratch_pretrained"])
    half = len(corpus.valid) // 2
    for h, stream in ((1, corpus.valid[:half]), (2, corpus.valid[half:])):
        spec = replace(fine, data=DataConfig(level="char", part=f"valid:{h}/2"), init_from=end,
                       seeds=fine.seeds[: p.lm_pairs], train=replace(fine.train, checkpoints=()))
        get(f"half{h}", f"fine-tune on half {h} of the data", spec, stream, st["pretrained"])
    ft = replace(fine, init_from=end)  # a damaged kept checkpoint is retrained from the same start and data
    st["step_mid"] = store.checkpoint(ft, p.finetune_steps // 2, corpus.valid, device, p.progress,
                                      init_state=stack_states([st["pretrained"]] * ft.k))
    return st, runs


def enc_spec(p, mode: str, task: str, half: int = 0, seeds=None) -> RunSpec:
    """A MiniLM fine-tuning run: pairs share their classifier seed and differ in data order and dropout."""
    n_classes = 3 if task == "genre" else 2
    extra = {"adapter": p.adapter} if mode == "adapter" else {"lora_rank": p.lora_rank} if mode == "lora" else {}
    cfg = encoder_config(tune=mode, n_layers=p.enc_layers, n_classes=n_classes, **extra)
    S = p.enc_steps
    train = TrainConfig(steps=S, batch_size=p.enc_batch, optimizer="adamw", lr=p.enc_lr[mode],
                        weight_decay=0.01, schedule="cosine", warmup_steps=p.enc_warmup, clip_norm=1.0,
                        betas=(0.9, 0.999), eval_every=max(S // 5, 1), store_optimizer=False, save_every=0)
    if seeds is None:
        seeds = tuple(Seeds(init=1 + c // 2, data=20 + c, dropout=20 + c) for c in range(2 * p.enc_pairs))
    return RunSpec(model=cfg, data=TextDataConfig(task=task, max_length=p.max_length, half=half), train=train,
                   seeds=tuple(seeds))


def train_encoder(p, store: RunStore, device, data: dict, tests: dict, sample) -> tuple[dict, list[dict]]:
    """Train (or load) every MiniLM run — each tuning mode on the main task (full fine-tuning recording the training
    dynamics of `sample`), and with enc_controls the second task and the data halves from the main-task copies'
    own seeds: ({name: (spec, run)}, one row per run for the runs table)."""
    runs, trained = [], {}

    def get(name, spec, train_data, dynamics=False):
        monitor = {"test": tests[spec.data.task], **({"train_sample": sample} if dynamics else {})}
        r = store.get(spec, train_data, device, p.progress, monitor=monitor,
                      dynamics="train_sample" if dynamics else None)
        runs.append({"model": "encoder", "run": f"MiniLM {name}", "copies": spec.k, "trained_now": r.trained_now,
                     "store": r.path})
        trained[name] = (spec, r)

    t1 = p.enc_task
    for mode in p.modes:
        get(mode, enc_spec(p, mode, t1), data[t1]["train"], dynamics=(mode == "full"))
    own = tuple(trained["full"][0].seeds[2 * i] for i in range(p.enc_pairs))  # the main-task copies' own seeds
    if p.enc_controls:
        get(p.enc_task2, enc_spec(p, "full", p.enc_task2, seeds=own), data[p.enc_task2]["train"])
        for h in (1, 2):
            get(f"half {h}", enc_spec(p, "full", t1, half=h, seeds=own[: p.half_pairs]),
                text_examples(TextDataConfig(task=t1, max_length=p.max_length, half=h))["train"])
    return trained, runs
