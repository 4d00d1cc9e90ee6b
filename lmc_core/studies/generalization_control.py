"""Notebook 05's control: many fine-tunes of the pretrained character LM of notebook 03 on held-out plays (the
setting of the notebook's first version), where one cluster is expected.

Why one cluster: the fine-tuning task is the pretraining task (next-character prediction) and "out of
distribution" is more text by the same author, so there is no second solution that fits the fine-tuning data
as well and differs elsewhere: Juneja et al.'s precondition (two strategies) is absent by construction. The
control shows what the pipeline reports then: barriers a small share of the endpoints' loss, and an eigengap that
a permutation null does not reject.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis.cluster import eigengap_null
from ..analysis.interpolate import alpha_grid
from ..analysis.landscape import barrier_matrix, matrix_key
from ..config import DataConfig, Seeds, config_hash
from ..data import load_corpus
from ..ensemble import stack_states
from ..families import family_of
from ..runs.dispatch import Job, Recipe, dispatch
from ..runs.store import RunStore
from ..runs.strategies import control_splits
from . import finetuning

PRETRAIN_KEYS = ("lm_model", "lm_overrides", "batch_size", "pretrain_steps", "pretrain_lr", "warmup")


def lm_specs(params: dict, vocab: int, steps: int = 2, lr: float = 1e-3):
    """Notebook 03's (pretraining, fine-tuning) specs of its LM part with notebook 03's `params` (PRETRAIN_KEYS)."""
    return finetuning.lm_specs({**params, "lm_pairs": 1, "finetune_steps": steps, "finetune_lr": lr}, vocab)[:2]


def pretrained_state(store_root: str, cache_dir: str, params: dict):
    """The pretrained LM's weights (K=1; trained and stored on first use, as notebook 03 does)."""
    corpus = load_corpus("shakespeare", level="char", cache_dir=cache_dir)
    pre = lm_specs(params, len(corpus.vocab))[0]
    return RunStore(store_root).get(pre, corpus.train, "auto", False).state


def control_jobs(p, store_root: str, cache_dir: str, vocab: int):
    """(the fine-tuning spec, one job per control fine-tune), each from notebook 03's pretrained LM of the same
    profile with its own data-order and dropout seed."""
    prof = finetuning.PROFILES[p.profile]
    pre_params = {k: prof[k] if isinstance(prof, dict) else getattr(prof, k) for k in PRETRAIN_KEYS}
    pretrained_state(store_root, cache_dir, pre_params)
    pre_spec, fine = lm_specs(pre_params, vocab, p.control_steps, p.control_lr)
    spec0 = replace(fine, data=DataConfig(level="char", part=f"valid:first {1 - p.control_id_fraction:g}"),
                    train=replace(fine.train, checkpoints=(), store_optimizer=False),
                    init_from=f"{config_hash(pre_spec)}@{pre_params['pretrain_steps']}")
    return fine, [Job(replace(spec0, seeds=(Seeds(init=0, data=1000 + i, dropout=1000 + i),)),
                      Recipe.of("lmc_core.runs.strategies:control_tokens", cache_dir=cache_dir,
                                id_fraction=p.control_id_fraction),
                      Recipe.of("lmc_core.studies.generalization_control:pretrained_state", store_root=store_root,
                                cache_dir=cache_dir, params=pre_params))
                  for i in range(p.control_models)]


def control(p, store: RunStore, cache_dir, device) -> dict:
    """Fine-tune p.control_models copies of the pretrained LM (submitit jobs packed into one ensemble), compute
    their barrier matrix on in-distribution text and its eigengap null. Returns the numbers and tables."""
    data = control_splits(str(cache_dir), p.control_id_fraction)
    fine, jobs = control_jobs(p, str(store.root), str(cache_dir), data["vocab"])
    done = dispatch(jobs, store.root, p.executor, device, p.progress, slurm=p.slurm)
    cfg, alphas, state = fine.model, alpha_grid(p.alphas), stack_states([r.state for r in done])
    fam = family_of(cfg)
    ev = fam.eval_examples(cfg, data["id"], p.control_eval_tokens)
    key = matrix_key([r.path.name for r in done], p.control_steps, p.control_eval_tokens, alphas, p.definition, "loss")
    mat = barrier_matrix(cfg, state, ev, alphas, p.definition, "loss", device, cache=store.layout.matrix(key))
    ends = fam.evaluate(cfg, state, ev, batch_size=64, device=device).loss
    iu = np.triu_indices(len(mat), 1)
    rel = 100 * mat[iu] / (0.5 * (ends[iu[0]] + ends[iu[1]]))
    test = eigengap_null(mat, min(p.kmax, len(mat) - 1), None, p.null_resamples, seed=2)
    pairs = pd.DataFrame({"model_i": iu[0], "model_j": iu[1], "barrier": mat[iu], "relative_pct": rel})
    return {"matrix": mat, "pairs": pairs, "test": test, "models": len(mat), "relative": rel,
            "runs": [{"run": f"control fine-tune {i}", "copies": 1, "trained_now": r.trained_now, "store": r.path}
                     for i, r in enumerate(done)]}
