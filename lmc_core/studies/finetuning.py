"""Notebook 03: fine-tuning and mode connectivity (the GPT-2 Shakespeare study; Qin et al. 2022).

Language-model part (our own pretrained LM): a pre-norm character-level GPT is pretrained on the
training plays (checkpoints at two pretraining steps) and fine-tuned on held-out plays. Pairs that
start from the pretrained weights and differ only in SGD noise are compared with pairs trained from a
shared random initialisation with the same architecture and budget; also fine-tunes from two
pretraining steps, two steps of one run, and the two halves of the fine-tuning data.
Encoder part (the shipped MiniLM, BERT family): classification of Shakespeare passages by genre, with
full fine-tuning, Houlsby adapters and LoRA (only the tuned parameters are interpolated); endpoints
from different seeds, from the two halves of the data and from two tasks (genre vs verse/prose, each
endpoint keeping its own classifier); which test examples are forgotten along the path and how they
relate to their training dynamics; L2 and cosine distances beside every barrier.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, config_hash, model_preset
from ..data import load_corpus
from ..analysis.diagnostics import weight_distance
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..families.encoder import TextDataConfig, encoder_config, text_examples
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..analysis.metrics import METRIC_SCALE, UNITS
from ..runs.store import RunStore
from .common import (StudyResult, check_alphas, check_positive, prepare, tensorboard_logs,
                     without_store)

PREFIX = "03"
MODES = ("full", "adapter", "lora")
MODE_NAMES = {"full": "full", "adapter": "adapter", "lora": "LoRA"}

STUDY_DEFAULTS = dict(
    # language-model part
    lm_model="tinygpt", lm_overrides={"context": 64, "n_layers": 2}, batch_size=16,
    pretrain_steps=1500, pretrain_lr=3e-3, warmup=100, finetune_steps=600, finetune_lr=1e-3, scratch_lr=3e-3,
    lm_pairs=2, lm_eval_tokens=16384, alphas=11,
    # encoder part
    run_encoder=True, enc_task="verse_prose", enc_task2="genre", enc_layers=4, max_length=24, enc_steps=80,
    enc_batch=16, enc_lr={"full": 2e-4, "adapter": 2e-3, "lora": 2e-3}, enc_warmup=8, enc_pairs=2, half_pairs=1,
    enc_eval=256, enc_alphas=9, modes=list(MODES), adapter=24, lora_rank=8, definition=B.DEFAULT,
)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "lm_overrides": {"context": 16, "n_layers": 1, "d_model": 32, "d_ff": 64},
              "pretrain_steps": 40, "finetune_steps": 20, "warmup": 5, "lm_pairs": 2, "lm_eval_tokens": 1024,
              "alphas": 5, "enc_layers": 1, "max_length": 16, "enc_steps": 4, "enc_batch": 4, "enc_warmup": 1,
              "enc_pairs": 1, "enc_eval": 32, "enc_alphas": 3},
    "quick": dict(STUDY_DEFAULTS),
    # longer pretraining and fine-tuning, more pairs, the whole test split (one GPU)
    "paper": {**STUDY_DEFAULTS, "lm_overrides": {"context": 128, "n_layers": 4, "d_model": 128, "d_ff": 512},
              "pretrain_steps": 10000, "finetune_steps": 2000, "batch_size": 32, "lm_pairs": 4,
              "lm_eval_tokens": 200000, "alphas": 21, "enc_layers": 6, "enc_steps": 1000, "enc_batch": 32,
              "max_length": 64, "enc_warmup": 60, "enc_pairs": 4, "half_pairs": 4, "enc_eval": 4000, "enc_alphas": 11},
}


def check_params(p: dict) -> None:
    """Every check that needs no data or training."""
    check_positive(p, "batch_size", "pretrain_steps", "finetune_steps", "warmup", "lm_pairs", "lm_eval_tokens",
                   "enc_layers", "max_length", "enc_steps", "enc_batch", "enc_pairs", "half_pairs", "enc_eval")
    from ..families.encoder import TASKS

    if p["enc_task"] not in TASKS or p["enc_task2"] not in TASKS or p["enc_task"] == p["enc_task2"]:
        raise ConfigError(f"enc_task and enc_task2 must be two different tasks of {list(TASKS)}")
    check_alphas(p)
    check_alphas({"alphas": p["enc_alphas"]})
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if p["pretrain_steps"] < 2:
        raise ConfigError("pretrain_steps must be at least 2 (checkpoints at half and at the end)")
    bad = [m for m in p["modes"] if m not in MODES]
    if bad or "full" not in p["modes"]:
        raise ConfigError(f"modes={p['modes']!r} must include 'full' and come from {list(MODES)}")
    lm = model_preset(p["lm_model"], vocab_size=2, **p["lm_overrides"])
    if lm.arch != "prenorm":
        raise ConfigError("the LM part fine-tunes a GPT-style pre-norm model: lm_model='tinygpt'")
    if p["run_encoder"] and p["enc_layers"] > 6:
        raise ConfigError(f"enc_layers={p['enc_layers']}: MiniLM has 6 layers")


def run(params: dict | None = None) -> StudyResult:
    """Pretrain, fine-tune, interpolate, write figures, CSVs and the summary."""
    from . import finetuning_figures as figs

    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    rows, curves, runs = lm_part(p, store, cache_dir, device)
    forgetting = None
    if p["run_encoder"]:
        r2, c2, runs2, forgetting = encoder_part(p, store, device)
        rows, curves, runs = rows + r2, curves + c2, runs + runs2
    table = pd.DataFrame(rows)
    curves = pd.concat(curves, ignore_index=True)
    res = StudyResult(params=p, tables={"comparisons": table, "curves": curves, "runs": without_store(runs)})
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    fig, d = figs.paths_figure(curves, "lm", p["profile"])
    res.add_figure(f"{PREFIX}_lm_loss_vs_alpha", fig, d)
    fig, d = figs.barrier_figure(table, p["definition"], p["profile"])
    res.add_figure(f"{PREFIX}_barriers", fig, d)
    if p["run_encoder"]:
        fig, d = figs.paths_figure(curves, "encoder", p["profile"])
        res.add_figure(f"{PREFIX}_encoder_loss_vs_alpha", fig, d)
        fig, d = figs.forgetting_figure(forgetting, p["profile"])
        res.add_figure(f"{PREFIX}_forgetting", fig, d)
        res.tables["forgetting"] = forgetting
        res.add_csv(f"{PREFIX}_forgetting_examples", forgetting)
    fig, d = figs.distance_figure(table, p["definition"], p["profile"])
    res.add_figure(f"{PREFIX}_distance_vs_barrier", fig, d)
    res.add_csv(f"{PREFIX}_comparisons", table)
    res.add_csv(f"{PREFIX}_curves", curves)
    res.publish(fig_dir, PREFIX, figs.describe(table, forgetting, p))
    return res


# ------------------------------------------------------------------------- shared


def pair_rows(model_kind: str, comparison: str, pair: int, cfg, a, b, curve: pd.DataFrame, metrics, keys=None,
              extra: dict | None = None) -> list[dict]:
    """One row per (split, metric, definition) of a pair's curve, with the distance between the endpoints."""
    dist = weight_distance(a, b, keys if keys is not None else None)
    out = []
    for split, g in curve.groupby("split"):
        g = g.sort_values("alpha")
        for metric in metrics:
            scale = METRIC_SCALE[metric]
            for d in B.DEFINITIONS:
                inst = B.instability(g.alpha, g[metric], d, scale)
                out.append({"model": model_kind, "comparison": comparison, "pair": pair, "split": split,
                            "metric": metric, "definition": d, "barrier": B.barrier(g.alpha, g[metric], d),
                            "instability": inst, "unit": UNITS[scale], "stable": B.is_stable(inst),
                            "endpoint_mean": 0.5 * (g[metric].iloc[0] + g[metric].iloc[-1]),
                            "l2": dist["l2"], "cosine": dist["cosine"], "params_compared": dist["params"],
                            **(extra or {})})
    return out


def curve_frame(model_kind: str, comparison: str, pair: int, split: str, alphas, res, fam) -> pd.DataFrame:
    """Rows (alpha, loss[, ppl], error) of one evaluated path."""
    d = {"model": model_kind, "comparison": comparison, "pair": pair, "split": split, "alpha": alphas,
         "loss": res.loss, "error": res.error}
    if "ppl" in fam.metrics:
        d["ppl"] = res.ppl
    return pd.DataFrame(d)


# ------------------------------------------------------------------------- language-model part


def lm_specs(p: dict, vocab: int):
    """(pretraining spec, fine-tuning spec from a pretraining step, scratch spec, half-data spec)."""
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
    P, F = p["pretrain_steps"], p["finetune_steps"]
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
    runs.append({"model": "lm", "run": "from scratch", "copies": k, "trained_now": sc.trained_now, "store": sc.path})
    runs.insert(0, {"model": "lm", "run": "pretraining", "copies": 1, "trained_now": pretrained.trained_now,
                    "store": pretrained.path})
    half = len(corpus.valid) // 2
    halves = {}
    for h, stream in ((1, corpus.valid[:half]), (2, corpus.valid[half:])):
        spec = replace(fine, data=DataConfig(level="char", part=f"valid:{h}/2"), init_from=starts["end"][0],
                       seeds=fine.seeds[: p["lm_pairs"]], train=replace(fine.train, checkpoints=()))
        halves[h] = store.get(spec, stream, device, p["progress"],
                              init_state=stack_states([pretrained.state] * spec.k))
        runs.append({"model": "lm", "run": f"fine-tune on half {h} of the data", "copies": spec.k,
                     "trained_now": halves[h].trained_now, "store": halves[h].path})
    step_mid = store.checkpoint(replace(fine, init_from=starts["end"][0]), F // 2)

    fam = family_of(fine.model)
    alphas = alpha_grid(p["alphas"])
    test = fam.eval_examples(fine.model, corpus.test, p["lm_eval_tokens"])
    pairs = []
    for i in range(p["lm_pairs"]):
        e = ft["end"].state
        pairs += [("pretrained, SGD noise", i, copy_state(e, 2 * i), copy_state(e, 2 * i + 1)),
                  ("from scratch, SGD noise", i, copy_state(sc.state, 2 * i), copy_state(sc.state, 2 * i + 1)),
                  ("pretrained at half the steps, SGD noise", i, copy_state(ft["mid"].state, 2 * i),
                   copy_state(ft["mid"].state, 2 * i + 1)),
                  ("two pretraining steps", i, copy_state(ft["mid"].state, 2 * i), copy_state(e, 2 * i)),
                  ("two steps of one run", i, copy_state(step_mid, 2 * i), copy_state(e, 2 * i)),
                  ("two halves of the data", i, copy_state(halves[1].state, i), copy_state(halves[2].state, i))]
    rows, curves = [], []
    for comparison, i, a, b in pairs:
        r = fam.evaluate(fine.model, interpolate_states(a, b, alphas), test, batch_size=32, device=device)
        c = curve_frame("lm", comparison, i, "test", alphas, r, fam)
        curves.append(c)
        rows += pair_rows("lm", comparison, i, fine.model, a, b, c, fam.metrics)
    return rows, curves, runs


# ------------------------------------------------------------------------- encoder part


def enc_spec(p: dict, mode: str, task: str, half: int = 0, seeds=None) -> RunSpec:
    """A MiniLM fine-tuning run: pairs share their classifier seed and differ in data order and dropout."""
    n_classes = 3 if task == "genre" else 2
    extra = {"adapter": p["adapter"]} if mode == "adapter" else {"lora_rank": p["lora_rank"]} if mode == "lora" else {}
    cfg = encoder_config(tune=mode, n_layers=p["enc_layers"], n_classes=n_classes, **extra)
    S = p["enc_steps"]
    train = TrainConfig(steps=S, batch_size=p["enc_batch"], optimizer="adamw", lr=p["enc_lr"][mode],
                        weight_decay=0.01, schedule="cosine", warmup_steps=p["enc_warmup"], clip_norm=1.0,
                        betas=(0.9, 0.999), eval_every=max(S // 5, 1), store_optimizer=False, save_every=0)
    if seeds is None:
        seeds = tuple(Seeds(init=1 + c // 2, data=20 + c, dropout=20 + c) for c in range(2 * p["enc_pairs"]))
    return RunSpec(model=cfg, data=TextDataConfig(task=task, max_length=p["max_length"], half=half), train=train,
                   seeds=tuple(seeds))


def encoder_part(p: dict, store: RunStore, device):
    """The encoder comparisons and the forgetting analysis (main task enc_task, second task enc_task2)."""
    t1, t2 = p["enc_task"], p["enc_task2"]
    data = {t: text_examples(TextDataConfig(task=t, max_length=p["max_length"])) for t in (t1, t2)}
    tests = {t: d["test"].head(p["enc_eval"]) for t, d in data.items()}
    runs, trained = [], {}

    def get(name, spec, train_data, dynamics=False):
        r = store.get(spec, train_data, device, p["progress"], monitor={"test": tests[spec.data.task]},
                      dynamics="test" if dynamics else None)
        runs.append({"model": "encoder", "run": f"MiniLM {name}", "copies": spec.k, "trained_now": r.trained_now,
                     "store": r.path})
        trained[name] = (spec, r)
        return r

    for mode in p["modes"]:
        get(mode, enc_spec(p, mode, t1), data[t1]["train"], dynamics=(mode == "full"))
    full_spec, full = trained["full"]
    own = tuple(full_spec.seeds[2 * i] for i in range(p["enc_pairs"]))  # the main-task copies' own seeds
    get(t2, enc_spec(p, "full", t2, seeds=own), data[t2]["train"])
    for h in (1, 2):
        get(f"half {h}", enc_spec(p, "full", t1, half=h, seeds=own[: p["half_pairs"]]),
            text_examples(TextDataConfig(task=t1, max_length=p["max_length"], half=h))["train"])

    alphas = alpha_grid(p["enc_alphas"])
    rows, curves, forget = [], [], []

    def add(comparison, i, spec, a, b, keys=None, keep=()):
        fam = family_of(spec.model)
        res = _eval_path(fam, spec.model, a, b, keys, alphas, tests[t1], device, keep)
        c = curve_frame("encoder", comparison, i, "test", alphas, res, fam)
        curves.append(c)
        rows.extend(pair_rows("encoder", comparison, i, spec.model, a, b, c, fam.metrics, keys))
        return res

    for mode in p["modes"]:
        spec, r = trained[mode]
        keys = family_of(spec.model).interp_keys(spec.model, r.state)
        for i in range(p["enc_pairs"]):
            res = add(f"{MODE_NAMES[mode]} fine-tuning, SGD noise", i, spec, copy_state(r.state, 2 * i),
                      copy_state(r.state, 2 * i + 1), keys, keep=("examples",) if mode == "full" else ())
            if mode == "full":
                forget.append(forgetting_rows(res, alphas, r.dynamics, 2 * i, i))
    spec, r = trained["full"]
    fam = family_of(spec.model)
    for i in range(p["enc_pairs"] - 1):  # different seeds: another classifier init and other noise
        add("different seeds", i, spec, copy_state(r.state, 2 * i), copy_state(r.state, 2 * i + 2))
    for i in range(p["half_pairs"]):
        add("two halves of the data", i, spec, copy_state(trained["half 1"][1].state, i),
            copy_state(trained["half 2"][1].state, i))
    for i in range(p["enc_pairs"]):  # two tasks: the backbone is interpolated, each task read with its own classifier
        g, v = copy_state(r.state, 2 * i), copy_state(trained[t2][1].state, i)
        spec2 = trained[t2][0]
        backbone = set(g) - fam.head_keys(spec.model, g)
        part = []
        for task, cfg, own_state in ((t1, spec.model, g), (t2, spec2.model, v)):
            path = {**interpolate_states({n: g[n] for n in backbone}, {n: v[n] for n in backbone}, alphas),
                    **{n: own_state[n].expand(len(alphas), *own_state[n].shape[1:]).clone()
                       for n in fam.head_keys(cfg, own_state)}}
            res = fam.evaluate(cfg, path, fam.eval_examples(cfg, tests[task]), batch_size=64, device=device)
            part.append(curve_frame("encoder", "two tasks (own heads)", i, "test" if task == t1 else task, alphas,
                                    res, fam))
        c = pd.concat(part)
        curves.append(c)
        rows += pair_rows("encoder", "two tasks (own heads)", i, spec.model, {n: g[n] for n in backbone},
                          {n: v[n] for n in backbone}, c, fam.metrics)
    return rows, curves, runs, pd.concat(forget, ignore_index=True)


def _eval_path(fam, cfg, a, b, keys, alphas, test, device, keep=()):
    path = interpolate_states(a, b, alphas, keys)
    return fam.evaluate(cfg, path, fam.eval_examples(cfg, test), batch_size=64, device=device, keep=keep)


def forgetting_rows(res, alphas, dynamics: dict, copy: int, pair: int) -> pd.DataFrame:
    """Per test example: correct at each endpoint, the first alpha at which it flips from right to wrong
    (NaN: never), how many times it flips along the path, and its training dynamics (dataset cartography)
    under endpoint A: mean (confidence) and standard deviation (variability) of the probability of its
    true label over the monitored training steps."""
    corr = res.per_example_correct  # [n_alpha, N]
    newly_wrong = corr[:-1] & ~corr[1:]  # right at alpha_{i-1}, wrong at alpha_i
    flips = (corr[:-1] != corr[1:]).sum(0)
    first = np.where(newly_wrong.any(0), alphas[1:][newly_wrong.argmax(0)], np.nan)
    out = pd.DataFrame({"pair": pair, "example": np.arange(corr.shape[1]), "correct_a": corr[0],
                        "correct_b": corr[-1], "forgotten": newly_wrong.any(0), "first_forgotten_alpha": first,
                        "flips": flips})
    if dynamics:
        prob = dynamics["dyn.prob"][:, copy].numpy()  # [E, N]
        out["confidence"] = prob.mean(0)
        out["variability"] = prob.std(0)
    return out
