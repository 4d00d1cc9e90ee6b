"""Notebook 03: fine-tuning and mode connectivity (the GPT-2 Shakespeare study; Qin et al. 2022).

Language-model part (our own pretrained LM): a pre-norm character-level GPT is pretrained on the training
plays (checkpoints at two pretraining steps) and fine-tuned on held-out plays. Pairs that start from the
pretrained weights and differ only in SGD noise are compared with pairs trained from a shared random
initialisation with the same architecture and the same recipe (pretraining, then fine-tuning), split into copies at
step 0 instead of after pretraining, so its endpoints reach the same quality; also fine-tunes from two pretraining
steps, two steps of one run, and the two halves of the fine-tuning data — at least two pairs each. The pretrained
arms' pairs all descend from one pretraining run (their findings are conditional on it); each scratch pair has its
own initialisation. Encoder part (the shipped MiniLM, BERT family; finetuning_encoder.py): classification of
Shakespeare passages with full fine-tuning, Houlsby adapters and LoRA, endpoints from different seeds, data halves
and two tasks; forgetting along the path against a random direction of the same length; distances per parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..analysis import barrier as B
from ..analysis.pair_paths import PairPaths
from ..analysis.interpolate import alpha_grid
from ..config import MODEL_PRESETS, ConfigError, RunSpec, model_preset
from ..data import load_corpus
from ..data.batches import Examples
from ..data.loader import spread_windows
from ..ensemble import copy_state
from ..families import family_of
from ..runs.finetune import lm_specs, train_lm
from . import finetuning_encoder as enc
from . import finetuning_figures as figs
from .base import Study
from ..publish.paths import runs_table
from ..publish.tb import tensorboard_logs
from .lm_setup import check_model_overrides
from .params import (ALPHAS, BATCH, DEFINITION, EXAMPLES, MAX_SEED, MAX_STEPS, MAX_UNITS, RATE, STEPS, Choice, Int,
                     Mapping, param)


@dataclass(frozen=True)
class Params(enc.EncoderParams):
    """Notebook 03's parameters: the encoder part's (EncoderParams) and the LM part's; the scratch arm is pretrained
    and fine-tuned by the same recipe as the pretrained model. Defaults: the quick profile's."""

    lm_model: str = param("tinygpt", "the LM's preset (a pre-norm GPT)", Choice(tuple(MODEL_PRESETS)))
    lm_overrides: dict = param({"context": 64, "n_layers": 2}, "the LM's fields to change", Mapping())
    batch_size: int = param(16, "LM sequences per step", BATCH)
    pretrain_steps: int = param(1500, "pretraining steps (a checkpoint at half)", Int(2, MAX_STEPS))
    pretrain_lr: float = param(3e-3, "pretraining's peak learning rate", RATE)
    warmup: int = param(100, "pretraining's warm-up steps (fine-tuning: at most a fifth of its steps)", STEPS)
    finetune_steps: int = param(300, "fine-tuning steps (a checkpoint at half)", Int(2, MAX_STEPS))
    finetune_lr: float = param(1e-3, "fine-tuning's peak learning rate", RATE)
    lm_pairs: int = param(5, "LM pairs per comparison (5: the findings layer's minimum for a verdict)", Int(2, MAX_UNITS))
    lm_eval_tokens: int = param(16384, "test tokens (windows from every unseen play)", EXAMPLES)
    alphas: int = param(11, "points on each LM path, endpoints included", ALPHAS)
    eval_seed: int = param(0, "seed of the LM's evaluation windows", Int(0, MAX_SEED))
    definition: str = param(B.DEFAULT, "the barrier definition of the figures and the threshold findings",
                            DEFINITION)

    def check(self) -> None:
        check_model_overrides(self.lm_overrides)
        if model_preset(self.lm_model, vocab_size=2, **self.lm_overrides).arch != "prenorm":
            raise ConfigError("the LM part fine-tunes a GPT-style pre-norm model: lm_model='tinygpt'")
        for spec in lm_specs(self, 2):
            spec.validate()
        super().check()


QUICK = Params()


def lm_pairs(p: Params, st: dict, scratch: RunSpec):
    """(comparison, pair, A, B, the endpoints' common start or None) of every LM pair, pair by pair."""
    e, m, one = st["end"], st["mid"], copy_state(st["pretrained"], 0)
    fam = family_of(scratch.model)
    for i in range(p.lm_pairs):
        init_i = fam.init(scratch.model, [scratch.seeds[2 * i].init])
        yield from (
            (figs.PRETRAINED, i, copy_state(e, 2 * i), copy_state(e, 2 * i + 1), one),
            (figs.SCRATCH, i, copy_state(st["scratch"], 2 * i), copy_state(st["scratch"], 2 * i + 1),
             init_i),
            ("pretrained at half the steps, SGD noise", i, copy_state(m, 2 * i), copy_state(m, 2 * i + 1),
             copy_state(st["pretrained_mid"], 0)),
            ("two pretraining steps", i, copy_state(m, 2 * i), copy_state(e, 2 * i), None),
            ("two steps of one run", i, copy_state(st["step_mid"], 2 * i), copy_state(e, 2 * i), one),
            ("two halves of the data", i, copy_state(st["half1"], i), copy_state(st["half2"], i), one))


def lm_part(p: Params, ctx) -> tuple:
    """The LM comparisons: (barrier rows, curves, runs)."""
    corpus = load_corpus("shakespeare", level="char", cache_dir=str(ctx.cache_dir))
    _, fine, scratch = lm_specs(p, len(corpus.vocab))
    st, runs = train_lm(p, ctx.store, ctx.device, corpus)
    test = Examples(tokens=spread_windows(corpus.test, fine.model.context, p.lm_eval_tokens, p.eval_seed))
    paths = PairPaths("lm", alpha_grid(p.alphas), ctx.device)
    for comparison, i, a, b, start in lm_pairs(p, st, scratch):
        paths.add(comparison, i, fine.model, a, b, test, 32, start=start)
    return (*paths.tables(), runs)


class Finetuning(Study):
    """Fine-tuned copies of a pretrained model against copies trained from scratch, and what else may differ."""

    prefix, notebook = "03", "03_finetuning"
    question = ("Do copies of a pretrained model fine-tuned with different SGD noise have a lower loss barrier than "
                "copies trained from scratch?")
    claim = ("The GPT-2 Shakespeare study (read off its figures): eval-loss instability about 10 % for TinyGPT from "
             "one initialisation (1.855 to 2.045 nats) and no bump for GPT-2 fine-tuned with two SGD-noise draws; "
             "Qin et al. 2022 find fine-tuned copies of pretrained T5/RoBERTa linearly connected")
    capped = {"lm_pairs": 2, "lm_eval_tokens": 1024, "enc_pairs": 2, "half_pairs": 1, "enc_eval": 16,
              "enc_train_sample": 16}
    capped_units, capped_eval = {"lm_pairs": "lm", "enc_pairs": "encoder"}, {"enc_pairs": 1, "enc_eval": 1}
    profiles = {
        "smoke": QUICK.replace(profile="smoke", lm_overrides={"context": 16, "n_layers": 1, "d_model": 32, "d_ff": 64},
                               pretrain_steps=40, finetune_steps=20, warmup=5, lm_pairs=2, lm_eval_tokens=1024,
                               alphas=5, modes=list(enc.MODES), enc_controls=True, enc_layers=1, max_length=16,
                               enc_steps=4, enc_batch=4, enc_warmup=1, enc_eval=32, enc_train_sample=32, enc_alphas=3,
                               run_encoder=True),
        # about 10 minutes on 2 cores: the LM part, 5 pairs per comparison (the findings layer's minimum for a
        # verdict; with them 400 fine-tuning steps took 10 min 56 s, so 300), the scratch arm through the whole
        # pretraining recipe (about half the time; this pre-norm model trains no faster compiled or in bf16:
        # docs/benchmarks.md); MiniLM (+4 min, a demonstration at 60 steps, LoRA at chance) is left to
        # paper; run_encoder=True adds it with EncoderParams' defaults (full + LoRA, 60 steps, 128 passages)
        "quick": QUICK.replace(run_encoder=False),
        # longer pretraining and fine-tuning, more pairs, a large test sample; MiniLM trained to its plateau (GPU)
        "paper": QUICK.replace(profile="paper", lm_overrides={"context": 128, "n_layers": 4, "d_model": 128,
                               "d_ff": 512}, pretrain_steps=10000, finetune_steps=2000, batch_size=32, lm_pairs=6,
                               lm_eval_tokens=200000, alphas=21, modes=list(enc.MODES), enc_controls=True,
                               run_encoder=True, enc_layers=6, enc_steps=1000, enc_batch=32, max_length=64,
                               enc_warmup=60, enc_pairs=4,
                               half_pairs=4, enc_eval=4000, enc_train_sample=2000, enc_alphas=11),
    }

    def compute(self, p: Params, ctx) -> dict:
        """Pretrain, fine-tune, interpolate (the LM part, then the encoder part)."""
        rows, curves, runs = lm_part(p, ctx)
        data = {"comparisons": rows, "curves": curves}
        if p.run_encoder:
            e = enc.encoder_part(p, ctx.store, ctx.device)
            runs += e["runs"]
            data.update(comparisons=pd.concat([rows, e["rows"]], ignore_index=True),
                        curves=pd.concat([curves, e["curves"]], ignore_index=True),
                        forgetting=e["forgetting"], encoder_endpoints=e["endpoints"])
        data["runs"] = runs_table(runs)
        if p.tensorboard:
            data["tensorboard"] = tensorboard_logs(runs, ctx.store.root, self.prefix)
        return data

    def figures(self, p: Params, data: dict):
        ends = data.get("encoder_endpoints")
        yield "lm_loss_vs_alpha", *figs.paths_figure(data["curves"], "lm", p.profile)
        yield "barriers", *figs.barrier_figure(data["comparisons"], p.definition, p.profile, ends)
        if p.run_encoder:
            yield "encoder_loss_vs_alpha", *figs.paths_figure(data["curves"], "encoder", p.profile, ends)
            yield "forgetting", *figs.forgetting_figure(data["forgetting"], p.profile, ends)
        yield "distance_vs_barrier", *figs.distance_figure(data["comparisons"], p.definition, p.profile)

    def omitted(self, p: Params) -> dict:
        parts = ("encoder_loss_vs_alpha", "forgetting", "encoder_endpoints")
        return {} if p.run_encoder else dict.fromkeys(parts, "run_encoder = False turns the MiniLM part off")

    def csvs(self, p: Params, data: dict) -> dict:
        out = {"comparisons": data["comparisons"], "curves": data["curves"]}
        return {**out, "forgetting_examples": data["forgetting"]} if p.run_encoder else out

    def findings(self, p: Params, data: dict):
        return figs.describe(data["comparisons"], data.get("forgetting"), data.get("encoder_endpoints"), p)

    def setting(self, p: Params) -> str:
        return (f"pre-norm char LM, {p.pretrain_steps} + {p.finetune_steps} steps, {p.lm_pairs} pairs per "
                "comparison" + (f"; MiniLM {p.enc_steps} steps" if p.run_encoder else ""))


STUDY = Finetuning()
run = STUDY.run
PROFILES = STUDY.profiles
