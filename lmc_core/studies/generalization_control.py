"""Notebook 05's control: many fine-tunes of the pretrained character LM of notebook 03 on held-out plays (the
setting of the notebook's first version), where one cluster is expected.

Why one cluster: the fine-tuning task is the pretraining task (next-character prediction) and "out of
distribution" is more text by the same author, so there is no second solution that fits the fine-tuning data
as well and differs elsewhere: Juneja et al.'s precondition (two strategies) is absent by construction. The
control shows what the pipeline reports then: barriers well under the 2 % threshold, and an eigengap that a
permutation null does not reject (k = 1).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.cluster import eigengap_null, spectral_clusters
from ..analysis.interpolate import alpha_grid
from ..analysis.landscape import barrier_matrix, matrix_key
from ..config import DataConfig, Seeds, config_hash
from ..data import load_corpus
from ..ensemble import stack_states
from ..families import family_of
from ..runs.dispatch import Job, Recipe, dispatch
from ..runs.store import RunStore
from . import finetuning

PRETRAIN_KEYS = ("lm_model", "lm_overrides", "batch_size", "pretrain_steps", "pretrain_lr", "warmup")


def splits(cache_dir: str, id_fraction: float) -> dict:
    """Fine-tuning stream (the held-out plays minus their last id_fraction), the in-distribution test stream
    (that last part) and the out-of-distribution test stream (other unseen plays)."""
    corpus = load_corpus("shakespeare", level="char", cache_dir=cache_dir)
    cut = int(len(corpus.valid) * (1 - id_fraction))
    return {"train": corpus.valid[:cut], "id": corpus.valid[cut:], "ood": corpus.test, "vocab": len(corpus.vocab)}


def finetune_tokens(cache_dir: str, id_fraction: float):
    """The fine-tuning token stream (a Recipe for dispatched jobs)."""
    return splits(cache_dir, id_fraction)["train"]


def pretrained_state(store_root: str, cache_dir: str, params: dict):
    """The pretrained LM's weights (K=1; trained and stored on first use, as notebook 03 does)."""
    corpus = load_corpus("shakespeare", level="char", cache_dir=cache_dir)
    pre = finetuning.lm_specs({**params, "lm_pairs": 1, "finetune_steps": 2, "finetune_lr": 1e-3,
                               "scratch_lr": 1e-3}, len(corpus.vocab))[0]
    return RunStore(store_root).get(pre, corpus.train, "auto", False).state


def control(p: dict, store: RunStore, cache_dir, device) -> dict:
    """Fine-tune p["control_models"] copies of the pretrained LM (submitit jobs packed into one ensemble),
    compute their barrier matrix on in-distribution text, and test its eigengap. Returns the numbers and
    tables of the control."""
    pre_params = {k: finetuning.PROFILES[p["profile"]][k] for k in PRETRAIN_KEYS}
    data = splits(str(cache_dir), p["control_id_fraction"])
    pretrained_state(str(store.root), str(cache_dir), pre_params)
    pre_spec, fine, _ = finetuning.lm_specs({**pre_params, "lm_pairs": 1, "finetune_steps": p["control_steps"],
                                             "finetune_lr": p["control_lr"], "scratch_lr": 1e-3}, data["vocab"])
    spec0 = replace(fine, data=DataConfig(level="char", part=f"valid:first {1 - p['control_id_fraction']:g}"),
                    train=replace(fine.train, checkpoints=(), store_optimizer=False),
                    init_from=f"{config_hash(pre_spec)}@{pre_params['pretrain_steps']}")
    jobs = [Job(replace(spec0, seeds=(Seeds(init=0, data=1000 + i, dropout=1000 + i),)),
                Recipe.of("lmc_core.studies.generalization_control:finetune_tokens", cache_dir=str(cache_dir),
                          id_fraction=p["control_id_fraction"]),
                Recipe.of("lmc_core.studies.generalization_control:pretrained_state", store_root=str(store.root),
                          cache_dir=str(cache_dir), params=pre_params))
            for i in range(p["control_models"])]
    done = dispatch(jobs, store.root, p["executor"], device, p["progress"], slurm=p["slurm"])
    cfg = fine.model
    fam = family_of(cfg)
    state = stack_states([r.state for r in done])
    alphas = alpha_grid(p["alphas"])
    ev = fam.eval_examples(cfg, data["id"], p["control_eval_tokens"])
    ids = [r.path.name for r in done]
    key = matrix_key(ids, p["control_steps"], p["control_eval_tokens"], alphas, p["definition"], "loss")
    mat = barrier_matrix(cfg, state, ev, alphas, p["definition"], "loss", device, cache=store.layout.matrix(key))
    ends = fam.evaluate(cfg, state, ev, batch_size=64, device=device).loss
    iu = np.triu_indices(len(mat), 1)
    rel = 100 * mat[iu] / (0.5 * (ends[iu[0]] + ends[iu[1]]))
    test = eigengap_null(mat, min(p["kmax"], len(mat) - 1), None, p["null_resamples"], seed=2)
    cl = spectral_clusters(mat, None, None, min(p["kmax"], len(mat) - 1), seed=0)
    rows = [{"model_i": int(i), "model_j": int(j), "barrier": float(mat[i, j]), "relative_pct": float(r)}
            for i, j, r in zip(*iu, rel)]
    return {"matrix": mat, "pairs": pd.DataFrame(rows), "test": test, "clustering": cl, "models": len(mat),
            "relative": rel, "above": int((rel >= B.STABILITY_THRESHOLD_PCT).sum()),
            "runs": [{"run": f"control fine-tune {i}", "copies": 1, "trained_now": r.trained_now, "store": r.path}
                     for i, r in enumerate(done)]}
