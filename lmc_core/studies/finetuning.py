"""Notebook 03: fine-tuning and mode connectivity (the GPT-2 Shakespeare study; Qin et al. 2022).

Language-model part (our own pretrained LM): a pre-norm character-level GPT is pretrained on the training
plays (checkpoints at two pretraining steps) and fine-tuned on held-out plays. Pairs that start from the
pretrained weights and differ only in SGD noise are compared with pairs trained from a shared random
initialisation with the same architecture, budget and learning rate; also fine-tunes from two pretraining
steps, two steps of one run, and the two halves of the fine-tuning data — at least four pairs each.
Encoder part (the shipped MiniLM, BERT family; finetuning_encoder.py): classification of Shakespeare
passages with full fine-tuning, Houlsby adapters and LoRA, endpoints from different seeds, data halves and
two tasks; forgetting along the path against a random direction of the same length; distances per parameter.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..analysis import barrier as B
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, check_int, config_hash, model_preset
from ..data import load_corpus
from ..data.batches import Examples
from ..data.loader import spread_windows
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..runs.store import RunStore
from . import finetuning_encoder as enc
from .comparison_rows import curve_frame, pair_rows
from .common import StudyResult, check_alphas, check_positive, prepare, tensorboard_logs, without_store

PREFIX = "03"

STUDY_DEFAULTS = dict(
    # language-model part: the scratch arm trains with the fine-tuning learning rate (lr-matched)
    lm_model="tinygpt", lm_overrides={"context": 64, "n_layers": 2}, batch_size=16,
    pretrain_steps=1500, pretrain_lr=3e-3, warmup=100, finetune_steps=600, finetune_lr=1e-3, scratch_lr=1e-3,
    lm_pairs=4, lm_eval_tokens=16384, alphas=11, eval_seed=0,
    **enc.ENCODER_DEFAULTS, definition=B.DEFAULT,
)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "lm_overrides": {"context": 16, "n_layers": 1, "d_model": 32, "d_ff": 64},
              "pretrain_steps": 40, "finetune_steps": 20, "warmup": 5, "lm_pairs": 2, "lm_eval_tokens": 1024,
              "alphas": 5, **enc.ENCODER_SMOKE},
    # 10 minutes on 2 cores: 400 fine-tuning steps (4 pairs per comparison kept); MiniLM (a pipeline demonstration
    # in quick, the paper profile trains it out) with fewer comparisons: full fine-tuning and LoRA, 60 steps, no
    # data-halves or two-task runs (its first 2 layers alone did not learn the task in 60 steps), 128 test and 128
    # training passages, 7 alphas
    "quick": {**STUDY_DEFAULTS, "finetune_steps": 400, "enc_steps": 60, "enc_warmup": 6, "modes": ["full", "lora"],
              "enc_controls": False, "enc_eval": 128, "enc_train_sample": 128, "enc_alphas": 7},
    # longer pretraining and fine-tuning, more pairs, a large test sample; MiniLM trained to its plateau (GPU)
    "paper": {**STUDY_DEFAULTS, "lm_overrides": {"context": 128, "n_layers": 4, "d_model": 128, "d_ff": 512},
              "pretrain_steps": 10000, "finetune_steps": 2000, "batch_size": 32, "lm_pairs": 6,
              "lm_eval_tokens": 200000, "alphas": 21, **enc.ENCODER_PAPER},
}


def check_params(p: dict) -> None:
    """Every check that needs no data or training — the encoder part's too, so nothing trains before a bad
    parameter of a later part is refused."""
    check_positive(p, "batch_size", "pretrain_steps", "finetune_steps", "warmup", "lm_eval_tokens")
    check_int("lm_pairs", p["lm_pairs"], 2)
    check_alphas(p)
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if p["pretrain_steps"] < 2 or p["finetune_steps"] < 2:
        raise ConfigError("pretrain_steps and finetune_steps must be at least 2 (checkpoints at half and at the end)")
    lm = model_preset(p["lm_model"], vocab_size=2, **p["lm_overrides"])
    if lm.arch != "prenorm":
        raise ConfigError("the LM part fine-tunes a GPT-style pre-norm model: lm_model='tinygpt'")
    for spec in lm_specs(p, 2):
        spec.validate()
    enc.check_params(p)


def run(params: dict | None = None) -> StudyResult:
    """Pretrain, fine-tune, interpolate, write figures, CSVs and the summary."""
    from . import finetuning_figures as figs

    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    rows, curves, runs = lm_part(p, store, cache_dir, device)
    forgetting = endpoints = None
    if p["run_encoder"]:
        r2, c2, runs2, forgetting, endpoints = enc.encoder_part(p, store, device)
        rows, curves, runs = rows + r2, curves + c2, runs + runs2
    table = pd.DataFrame(rows)
    curves = pd.concat(curves, ignore_index=True)
    res = StudyResult(params=p, tables={"comparisons": table, "curves": curves, "runs": without_store(runs)})
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    fig, d = figs.paths_figure(curves, "lm", p["profile"])
    res.add_figure(f"{PREFIX}_lm_loss_vs_alpha", fig, d)
    fig, d = figs.barrier_figure(table, p["definition"], p["profile"], endpoints)
    res.add_figure(f"{PREFIX}_barriers", fig, d)
    if p["run_encoder"]:
        fig, d = figs.paths_figure(curves, "encoder", p["profile"], endpoints)
        res.add_figure(f"{PREFIX}_encoder_loss_vs_alpha", fig, d)
        fig, d = figs.forgetting_figure(forgetting, p["profile"])
        res.add_figure(f"{PREFIX}_forgetting", fig, d)
        res.tables["forgetting"] = forgetting
        res.tables["encoder_endpoints"] = endpoints
        res.add_csv(f"{PREFIX}_forgetting_examples", forgetting)
    fig, d = figs.distance_figure(table, p["definition"], p["profile"])
    res.add_figure(f"{PREFIX}_distance_vs_barrier", fig, d)
    res.add_csv(f"{PREFIX}_comparisons", table)
    res.add_csv(f"{PREFIX}_curves", curves)
    res.publish(fig_dir, PREFIX, figs.describe(table, forgetting, endpoints, p))
    return res


# ------------------------------------------------------------------------- language-model part


def lm_specs(p: dict, vocab: int):
    """(pretraining spec, fine-tuning spec from a pretraining step, lr-matched scratch spec)."""
    model = model_preset(p["lm_model"], vocab_size=vocab, **p["lm_overrides"])
    P, F = p["pretrain_steps"], p["finetune_steps"]
    base = TrainConfig(steps=P, batch_size=p["batch_size"], optimizer="adamw", lr=p["pretrain_lr"], schedule="cosine",
                       warmup_steps=p["warmup"], clip_norm=1.0, betas=(0.9, 0.95), checkpoints=(P // 2,),
                       save_every=max(P // 5, 1))
    pre = RunSpec(model=model, data=DataConfig(level="char"), train=base, seeds=(Seeds(0, 0, 0),))
    ft_train = replace(base, steps=F, lr=p["finetune_lr"], warmup_steps=min(p["warmup"], F // 5),
                       checkpoints=(F // 2,), save_every=max(F // 5, 1))
    noise = tuple(Seeds(init=0, data=10 + c, dropout=10 + c) for c in range(2 * p["lm_pairs"]))
    fine = RunSpec(model=model, data=DataConfig(level="char", part="valid"), train=ft_train, seeds=noise)
    scratch_seeds = tuple(Seeds(init=100 + c // 2, data=10 + c, dropout=10 + c) for c in range(2 * p["lm_pairs"]))
    scratch = replace(fine, train=replace(ft_train, lr=p["scratch_lr"], checkpoints=()), seeds=scratch_seeds)
    return pre, fine, scratch


def lm_part(p: dict, store: RunStore, cache_dir, device):
    """The LM comparisons: pretrained vs scratch, two pretraining steps, two steps of a run, data halves."""
    corpus = load_corpus("shakespeare", level="char", cache_dir=str(cache_dir))
    pre, fine, scratch = lm_specs(p, len(corpus.vocab))
    P, F, n = p["pretrain_steps"], p["finetune_steps"], p["lm_pairs"]
    pretrained = store.get(pre, corpus.train, device, p["progress"])
    mid = store.checkpoint(pre, P // 2)
    starts = {"end": (f"{config_hash(pre)}@{P}", pretrained.state), "mid": (f"{config_hash(pre)}@{P // 2}", mid)}
    k = fine.k
    runs, ft = [], {}
    for name, (ident, state) in starts.items():
        spec = replace(fine, init_from=ident)
        ft[name] = store.get(spec, corpus.valid, device, p["progress"], init_state=stack_states([state] * k))
        runs.append({"model": "lm", "run": f"fine-tune from pretraining step {ident.split('@')[1]}", "copies": k,
                     "trained_now": ft[name].trained_now, "store": ft[name].path})
    sc = store.get(scratch, corpus.valid, device, p["progress"])
    runs.append({"model": "lm", "run": f"from scratch (lr {p['scratch_lr']:g})", "copies": k,
                 "trained_now": sc.trained_now, "store": sc.path})
    runs.insert(0, {"model": "lm", "run": "pretraining", "copies": 1, "trained_now": pretrained.trained_now,
                    "store": pretrained.path})
    half = len(corpus.valid) // 2
    halves = {}
    for h, stream in ((1, corpus.valid[:half]), (2, corpus.valid[half:])):
        spec = replace(fine, data=DataConfig(level="char", part=f"valid:{h}/2"), init_from=starts["end"][0],
                       seeds=fine.seeds[:n], train=replace(fine.train, checkpoints=()))
        halves[h] = store.get(spec, stream, device, p["progress"], init_state=stack_states([pretrained.state] * spec.k))
        runs.append({"model": "lm", "run": f"fine-tune on half {h} of the data", "copies": spec.k,
                     "trained_now": halves[h].trained_now, "store": halves[h].path})
    step_mid = store.checkpoint(replace(fine, init_from=starts["end"][0]), F // 2)

    fam = family_of(fine.model)
    alphas = alpha_grid(p["alphas"])
    test = Examples(tokens=spread_windows(corpus.test, fine.model.context, p["lm_eval_tokens"], p["eval_seed"]))
    e, m, one = ft["end"].state, ft["mid"].state, copy_state(pretrained.state, 0)
    pairs = []
    for i in range(n):
        init_i = fam.init(scratch.model, [scratch.seeds[2 * i].init])
        pairs += [("pretrained, SGD noise", i, copy_state(e, 2 * i), copy_state(e, 2 * i + 1), one),
                  ("from scratch, SGD noise", i, copy_state(sc.state, 2 * i), copy_state(sc.state, 2 * i + 1), init_i),
                  ("pretrained at half the steps, SGD noise", i, copy_state(m, 2 * i), copy_state(m, 2 * i + 1),
                   copy_state(mid, 0)),
                  ("two pretraining steps", i, copy_state(m, 2 * i), copy_state(e, 2 * i), None),
                  ("two steps of one run", i, copy_state(step_mid, 2 * i), copy_state(e, 2 * i), one),
                  ("two halves of the data", i, copy_state(halves[1].state, i), copy_state(halves[2].state, i), one)]
    rows, curves = [], []
    for comparison, i, a, b, start in pairs:
        r = fam.evaluate(fine.model, interpolate_states(a, b, alphas), test, batch_size=32, device=device)
        c = curve_frame("lm", comparison, i, "test", alphas, r, fam)
        curves.append(c)
        rows += pair_rows("lm", comparison, i, a, b, c, fam.metrics, start=start)
    return rows, curves, runs
