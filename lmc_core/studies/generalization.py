"""Notebook 05: generalisation strategies (Juneja et al. 2023, "Linear Connectivity Reveals Generalization
Strategies") — many fine-tuned copies, the barrier matrix, clusters, planes, calibration, sharpness.

Many copies of one pretrained model — our Shakespeare LM, pretrained exactly as in notebook 03 (the
run store reuses that run) — are fine-tuned on held-out plays, differing only in SGD noise, as jobs
dispatched through submitit (in-process, local processes or SLURM) and packed into one ensemble. Then:
the all-pairs barrier matrix (Juneja's mod_BH = `subchord`, on the first N evaluation tokens, a
10-point alpha grid, batched over pairs and cached); spectral clustering (k by eigengap or given) and
its stability under resampling; generalisation per cluster in distribution (unseen text of the
fine-tuning plays) and out of distribution (other plays); 2-D loss/accuracy/ECE planes through three
models; epsilon-sharpness per model; cluster membership at several fine-tuning steps.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.cluster import match_labels, spectral_clusters, stability
from ..config import ConfigError, DataConfig, Seeds, config_hash
from ..data import load_corpus
from ..runs.dispatch import Job, Recipe, dispatch
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..analysis.interpolate import alpha_grid
from ..analysis.landscape import barrier_matrix, ece, matrix_key, pair_curves, plane, sharpness
from ..runs.store import RunStore
from . import finetuning
from .common import (StudyResult, check_alphas, check_positive, prepare, tensorboard_logs,
                     without_store)

PREFIX = "05"

STUDY_DEFAULTS = dict(
    models=16, finetune_steps=600, finetune_lr=1e-2, id_fraction=0.1, eval_tokens=2048, alphas=10,
    definition="subchord", clusters=None, delta=None, kmax=6, resamples=20, plane_points=13, plane_range=[-0.5, 1.5],
    sharpness_eps=5e-4, sharpness_lr=1e-2, sharpness_batches=8, dynamics=[0.25, 0.5, 0.75],
    executor="inprocess", slurm={},
)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "models": 5, "finetune_steps": 20, "eval_tokens": 256, "alphas": 5, "resamples": 4,
              "plane_points": 5, "sharpness_batches": 2, "dynamics": [0.5]},
    "quick": dict(STUDY_DEFAULTS),
    "paper": {**STUDY_DEFAULTS, "models": 100, "finetune_steps": 2000, "eval_tokens": 16384, "plane_points": 25,
              "sharpness_batches": 16},
}
for _name in PROFILES:  # the pretrained start: exactly notebook 03's pretraining run of the same profile
    for _k in ("lm_model", "lm_overrides", "batch_size", "pretrain_steps", "pretrain_lr", "warmup"):
        PROFILES[_name].setdefault(_k, finetuning.PROFILES[_name][_k])


def check_params(p: dict) -> None:
    """Every check that needs no data or training."""
    check_positive(p, "models", "finetune_steps", "eval_tokens", "kmax", "resamples", "plane_points",
                   "sharpness_batches", "batch_size", "pretrain_steps", "warmup")
    check_alphas(p)
    if p["models"] < 3:
        raise ConfigError(f"models={p['models']}: clustering needs at least 3 fine-tuned models")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if p["clusters"] is not None and (not isinstance(p["clusters"], int) or not 1 <= p["clusters"] < p["models"]):
        raise ConfigError(f"clusters={p['clusters']!r}: None (eigengap) or an integer in [1, models)")
    if not 0 < p["id_fraction"] < 0.5:
        raise ConfigError(f"id_fraction={p['id_fraction']} must lie in (0, 0.5)")
    if any(not 0 < f < 1 for f in p["dynamics"]):
        raise ConfigError(f"dynamics={p['dynamics']!r}: fractions of fine-tuning in (0, 1)")


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


def run(params: dict | None = None) -> StudyResult:
    """Fine-tune the models, compute the barrier matrices, cluster, and write figures, CSVs and the summary."""
    from . import generalization_figures as figs

    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    data = splits(str(cache_dir), p["id_fraction"])
    pre_params = {k: p[k] for k in ("lm_model", "lm_overrides", "batch_size", "pretrain_steps", "pretrain_lr", "warmup")}
    pretrained_state(str(store.root), str(cache_dir), pre_params)  # store the start once, before any job asks for it
    pre_spec, fine, _ = finetuning.lm_specs({**pre_params, "lm_pairs": 1, "finetune_steps": p["finetune_steps"],
                                             "finetune_lr": p["finetune_lr"], "scratch_lr": 1e-3}, data["vocab"])
    F = p["finetune_steps"]
    ckpts = tuple(sorted({max(1, int(round(f * F))) for f in p["dynamics"]}))
    spec0 = replace(fine, data=DataConfig(level="char", part=f"valid:first {1 - p['id_fraction']:g}"),
                    train=replace(fine.train, checkpoints=ckpts, store_optimizer=False),
                    init_from=f"{config_hash(pre_spec)}@{p['pretrain_steps']}")
    jobs = [Job(replace(spec0, seeds=(Seeds(init=0, data=1000 + i, dropout=1000 + i),)),
                Recipe.of("lmc_core.studies.generalization:finetune_tokens", cache_dir=str(cache_dir),
                          id_fraction=p["id_fraction"]),
                Recipe.of("lmc_core.studies.generalization:pretrained_state", store_root=str(store.root),
                          cache_dir=str(cache_dir), params=pre_params))
            for i in range(p["models"])]
    done = dispatch(jobs, store.root, p["executor"], device, p["progress"], slurm=p["slurm"])
    cfg = fine.model
    fam = family_of(cfg)
    state = stack_states([r.state for r in done])
    ids = [r.path.name for r in done]
    alphas = alpha_grid(p["alphas"])
    ev = {k: fam.eval_examples(cfg, data[k], p["eval_tokens"]) for k in ("id", "ood")}
    mat = barrier_matrix(cfg, state, ev["id"], alphas, p["definition"], "loss", device,
                         cache=store.layout.matrix(matrix_key(ids, F, p["eval_tokens"], alphas, p["definition"], "loss")))
    cl = spectral_clusters(mat, p["clusters"], p["delta"], p["kmax"], seed=0)
    stab = stability(mat, cl, p["resamples"], seed=1) if cl.k > 1 else np.ones(p["resamples"])
    models = model_table(fam, cfg, state, ev, cl, device)
    batches = _sharpness_batches(fam, fine, data["train"], p)
    models["sharpness"] = sharpness(cfg, state, batches, p["sharpness_eps"], p["sharpness_lr"], device)
    dyn = dynamics(p, fam, cfg, store, done, ev["id"], alphas, cl, ckpts, ids, device)
    three = plane_models(cl.labels)
    pl = plane(cfg, copy_state(state, three[0]), copy_state(state, three[1]), copy_state(state, three[2]), ev["id"],
               *p["plane_range"], p["plane_points"], device)
    curves = pair_curves(cfg, state, explorer_pairs(mat), {"in-distribution": ev["id"], "out-of-distribution": ev["ood"]},
                         alphas, device)
    runs = [{"run": f"fine-tune {i}", "copies": 1, "trained_now": r.trained_now, "store": r.path}
            for i, r in enumerate(done)]
    res = StudyResult(params=p, tables={"models": models, "matrix": pd.DataFrame(mat), "dynamics": dyn,
                                        "curves": curves,
                                        "stability": pd.DataFrame({"ari": stab}),
                                        "runs": without_store(runs)})
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    for name, (fig, d) in (("barrier_matrix", figs.matrix_figure(mat, cl, p)),
                           ("clusters", figs.cluster_figure(cl, stab, p)),
                           ("generalization", figs.generalization_figure(models, p)),
                           ("plane", figs.plane_figure(pl, three, cl.labels, p)),
                           ("sharpness", figs.sharpness_figure(models, p)),
                           ("cluster_dynamics", figs.dynamics_figure(dyn, p))):
        res.add_figure(f"{PREFIX}_{name}", fig, d)
    res.add_csv(f"{PREFIX}_models", models)
    res.add_csv(f"{PREFIX}_pair_curves", curves)
    res.add_csv(f"{PREFIX}_barrier_matrix_values", pd.DataFrame(mat, columns=[f"m{i}" for i in range(len(mat))]))
    res.publish(fig_dir, PREFIX, figs.describe(models, cl, stab, dyn, pl, p, mat))
    return res


def model_table(fam, cfg, state, ev: dict, cl, device) -> pd.DataFrame:
    """Per model: cluster, in- and out-of-distribution loss, accuracy and ECE, and its embedding coordinate."""
    rows = {"model": np.arange(len(cl.labels)), "cluster": cl.labels}
    for k, ex in ev.items():
        r = fam.evaluate(cfg, state, ex, batch_size=64, device=device, keep=("examples", "confidence"))
        rows[f"{k}_loss"] = r.loss
        rows[f"{k}_accuracy"] = r.accuracy
        rows[f"{k}_ece"] = [ece(r.confidence[q], r.per_example_correct[q]) for q in range(len(r.loss))]
    t = pd.DataFrame(rows)
    if cl.k > 1:  # Juneja et al.'s centroid-distance coordinate: distance to centroid 1 minus distance to centroid 0
        cent = np.stack([cl.embedding[cl.labels == c].mean(0) for c in range(2)])
        d = np.linalg.norm(cl.embedding[:, None] - cent[None], axis=-1)
        t["centroid_coordinate"] = d[:, 1] - d[:, 0]
    return t


def _sharpness_batches(fam, spec, stream, p: dict) -> list[dict]:
    """Fixed training batches for sharpness (the first windows of the fine-tuning stream)."""
    ex = fam.train_examples(spec, stream)
    bs = spec.train.batch_size
    return [{n: t[i * bs : (i + 1) * bs][None] for n, t in ex.tensors.items()} for i in range(p["sharpness_batches"])]


def explorer_pairs(mat: np.ndarray, high: int = 4, low: int = 2) -> list[tuple[int, int]]:
    """The pairs whose paths the notebook's explorer shows: the `high` highest and `low` lowest barriers."""
    i, j = np.triu_indices(len(mat), 1)
    order = np.argsort(-mat[i, j], kind="stable")
    pick = list(order[:high]) + [q for q in order[::-1][:low] if q not in order[:high]]
    return [(int(i[q]), int(j[q])) for q in pick]


def plane_models(labels: np.ndarray) -> list[int]:
    """Three models for the plane: with two clusters or more, two from the largest and one from the next."""
    big = np.flatnonzero(labels == 0)
    other = np.flatnonzero(labels != 0)
    if len(other) and len(big) >= 2:
        return [int(big[0]), int(big[1]), int(other[0])]
    return [0, 1, 2]


def dynamics(p, fam, cfg, store, done, examples, alphas, final, ckpts, ids, device) -> pd.DataFrame:
    """Cluster membership of every model at each fine-tuning checkpoint (same k; labels matched to the end)."""
    rows = []
    for step in ckpts:
        st = stack_states([store.checkpoint(r.spec, step) for r in done])
        key = matrix_key(ids, step, p["eval_tokens"], alphas, p["definition"], "loss")
        mat = barrier_matrix(cfg, st, examples, alphas, p["definition"], "loss", device,
                             cache=store.layout.matrix(key))
        lab = spectral_clusters(mat, final.k, final.delta, seed=0).labels
        lab = match_labels(final.labels, lab)
        rows += [{"step": step, "model": i, "cluster": int(c), "mean_barrier": float(mat[i].sum() / (len(mat) - 1))}
                 for i, c in enumerate(lab)]
    rows += [{"step": p["finetune_steps"], "model": i, "cluster": int(c), "mean_barrier": np.nan}
             for i, c in enumerate(final.labels)]
    return pd.DataFrame(rows)
