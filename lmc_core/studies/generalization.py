"""Notebook 05: generalisation strategies (Juneja et al. 2023, "Linear Connectivity Reveals Generalization
Strategies") on a task that has two of them.

Juneja et al.'s clusters need (1) a task with two solutions that fit the training data equally well but differ
off distribution, (2) many fine-tunes of one pretrained model that differ only in SGD noise (data order,
dropout, classifier-head seed), and (3) an out-of-distribution set that separates the solutions. Here:

1. the task (lmc_core.data.strategies, "phrase"): does a Shakespeare passage contain the phrase "my lord"?
   The rule needs word order; the bag-of-words heuristic ("both words occur") fits all but a share epsilon of
   the training passages; a HANS-like out-of-distribution set scores it 50 % and the rule 100 %;
2. the pretrained model: a small BERT encoder pretrained by masked-token prediction on the plays (a stored
   run, reused by every fine-tune) — or the shipped MiniLM (`encoder="minilm"`, the paper profile);
3. the precondition: is the fine-tunes' out-of-distribution accuracy bimodal (dip test; two Gaussian
   components vs one by BIC)? Its modes are the strategy groups;
4. then Juneja's claims: the all-pairs barrier matrix (mod_BH = `subchord`, in-distribution test loss),
   spectral clusters with k by the eigengap and with k = 2, a permutation null for the eigengap, stability
   for every k >= 2, the agreement (adjusted Rand index, with a bootstrap interval over models) between
   clusters and strategy modes, barriers within vs across modes, a plane through models of both modes,
   epsilon-sharpness per mode (projected ascent run towards convergence), and the clusters during fine-tuning;
5. a control: the LM-continuation setting of the notebook's first version (one cluster expected).
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.cluster import eigengap_null, match_labels, spectral_clusters, stability_by_k
from ..analysis.interpolate import alpha_grid
from ..analysis.landscape import barrier_matrix, matrix_key, pair_curves, plane, sharpness
from ..analysis.modes import bimodality
from ..config import ConfigError, RunSpec, Seeds, TrainConfig, config_hash
from ..data.strategies import PlaysTaskConfig, dataset_card, plays_task
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..families.encoder import encoder_config
from ..models.mlm import MaskedLMConfig, backbone
from ..runs.dispatch import Job, Recipe, check_executor, dispatch
from ..runs.store import RunStore
from . import generalization_stats as S
from .common import StudyResult, check_alphas, check_positive, prepare, tensorboard_logs, without_store

PREFIX = "05"
ENCODERS = ("pretrained", "minilm")

STUDY_DEFAULTS = dict(
    # the task
    words=10, vocab_size=512, phrase=["my", "lord"], epsilon=0.05, train_size=20000, eval_size=2000,
    # the pretrained encoder (ours: masked-token prediction on the plays) or MiniLM
    encoder="pretrained", d_model=32, n_layers=2, n_heads=4, d_ff=128, dropout=0.1, pretrain_steps=800,
    pretrain_lr=2e-3, pretrain_batch=64, minilm_layers=6,
    # the fine-tunes
    models=32, finetune_steps=800, finetune_lr=2e-3, batch_size=32, weight_decay=0.01,
    # the analysis
    eval_examples=1400, alphas=10, definition="subchord", kmax=6, delta=None, resamples=20, null_resamples=999,
    bootstrap=999, plane_points=11, plane_range=[-0.5, 1.5], sharpness_eps=5e-4, sharpness_lr=1e-2,
    sharpness_batches=8, sharpness_passes=10, dynamics=[0.5], dynamics_examples=160,
    # the control (the LM-continuation setting, one cluster expected)
    control=True, control_models=8, control_steps=300, control_lr=1e-2, control_id_fraction=0.1,
    control_eval_tokens=2048,
    executor="inprocess", slurm={},
)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "models": 6, "train_size": 512, "eval_size": 64, "pretrain_steps": 10,
              "finetune_steps": 12, "batch_size": 8, "pretrain_batch": 8, "d_model": 16, "d_ff": 32, "n_heads": 2,
              "n_layers": 1, "eval_examples": 48, "alphas": 4, "resamples": 3, "null_resamples": 19,
              "bootstrap": 49, "plane_points": 3, "sharpness_batches": 2, "sharpness_passes": 2,
              "dynamics": [0.5], "dynamics_examples": 16, "control_models": 3, "control_steps": 4,
              "control_eval_tokens": 128},
    "quick": dict(STUDY_DEFAULTS),
    "paper": {**STUDY_DEFAULTS, "encoder": "minilm", "vocab_size": 0, "models": 100, "finetune_steps": 1500,
              "finetune_lr": 2e-5, "eval_examples": 2000, "eval_size": 4000, "train_size": 60000,
              "plane_points": 21, "sharpness_batches": 16, "dynamics": [0.25, 0.5, 0.75], "dynamics_examples": 2000,
              "control_models": 16, "control_steps": 600},
}


def check_params(p: dict) -> None:
    """Every check that needs no data or training (ConfigError naming the parameter)."""
    check_positive(p, "models", "finetune_steps", "eval_examples", "kmax", "resamples", "null_resamples",
                   "bootstrap", "plane_points", "sharpness_batches", "sharpness_passes", "batch_size",
                   "pretrain_steps", "pretrain_batch", "dynamics_examples", "control_models", "control_steps",
                   "control_eval_tokens")
    check_alphas(p)
    if p["models"] < 4:
        raise ConfigError(f"models={p['models']}: the bimodality test and clustering need at least 4 fine-tunes")
    if p["control"] and p["control_models"] < 3:
        raise ConfigError(f"control_models={p['control_models']}: the control's eigengap test needs at least 3")
    if p["encoder"] not in ENCODERS:
        raise ConfigError(f"encoder={p['encoder']!r}; choose one of {list(ENCODERS)}")
    if p["encoder"] == "minilm" and p["vocab_size"] != 0:
        raise ConfigError("encoder='minilm' reads MiniLM's WordPiece ids: set vocab_size=0")
    if p["encoder"] == "pretrained" and p["vocab_size"] == 0:
        raise ConfigError("encoder='pretrained' needs a compact vocabulary: set vocab_size (e.g. 512)")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if any(not 0 < f < 1 for f in p["dynamics"]):
        raise ConfigError(f"dynamics={p['dynamics']!r}: fractions of fine-tuning in (0, 1)")
    if not p["eval_examples"] <= p["eval_size"]:
        raise ConfigError(f"eval_examples={p['eval_examples']} exceeds eval_size={p['eval_size']}")
    eval_config(p).validate()
    check_executor(p["executor"], p["slurm"])  # before the encoder's pretraining, not at the fine-tunes


def task_config(p: dict, task: str = "phrase") -> PlaysTaskConfig:
    """The data config of the task (or of the pretraining windows, task="mlm": only the window length and the
    vocabulary matter there). The evaluation size is left at its default, so that it does not enter the runs'
    identity; `eval_config` sets it."""
    if task == "mlm":
        return PlaysTaskConfig(task=task, words=p["words"], vocab_size=p["vocab_size"])
    return PlaysTaskConfig(task=task, words=p["words"], vocab_size=p["vocab_size"], phrase=tuple(p["phrase"]),
                           epsilon=p["epsilon"], train_size=p["train_size"])


def eval_config(p: dict) -> PlaysTaskConfig:
    """The task with the profile's evaluation size."""
    return replace(task_config(p), eval_size=p["eval_size"])


def task_split(config: dict, split: str):
    """One split of a task's Examples (a Recipe for dispatched jobs)."""
    return plays_task(PlaysTaskConfig(**{**config, "phrase": tuple(config["phrase"])}))[split]


def pretrain_spec(p: dict) -> RunSpec:
    """The masked-LM pretraining run of our encoder (K=1)."""
    model = MaskedLMConfig(vocab_size=p["vocab_size"], d_model=p["d_model"], n_layers=p["n_layers"],
                           n_heads=p["n_heads"], d_ff=p["d_ff"], max_positions=p["words"] + 2, dropout=p["dropout"],
                           attention_dropout=p["dropout"]).validate()
    train = TrainConfig(steps=p["pretrain_steps"], batch_size=p["pretrain_batch"], optimizer="adamw",
                        lr=p["pretrain_lr"], betas=(0.9, 0.999), weight_decay=0.01, schedule="cosine",
                        warmup_steps=max(1, p["pretrain_steps"] // 10), clip_norm=1.0)
    return RunSpec(model=model, data=task_config(p, "mlm"), train=train, seeds=(Seeds(0, 0, 0),))


def pretrained_backbone(store_root: str, params: dict):
    """The pretrained encoder's backbone (K=1, no classifier: each fine-tune draws it from its init seed);
    trained and stored on first use."""
    spec = pretrain_spec(params)
    run = RunStore(store_root).get(spec, plays_task(spec.data)["train"], "auto", False)
    return backbone(run.state)


def finetune_spec(p: dict) -> RunSpec:
    """One fine-tune (K=1, seeds set per job) of the chosen encoder on the task."""
    F = p["finetune_steps"]
    ckpts = tuple(sorted({max(1, int(round(f * F))) for f in p["dynamics"]}))
    train = TrainConfig(steps=F, batch_size=p["batch_size"], optimizer="adamw", lr=p["finetune_lr"], betas=(0.9, 0.999),
                        weight_decay=p["weight_decay"], schedule="cosine", warmup_steps=max(1, F // 10), clip_norm=1.0,
                        checkpoints=ckpts, store_optimizer=False)
    if p["encoder"] == "minilm":
        model = encoder_config("minilm", "full", vocab="shakespeare", n_classes=2, n_layers=p["minilm_layers"],
                               max_positions=p["words"] + 2)
        return RunSpec(model=model, data=task_config(p), train=train)
    pre = pretrain_spec(p)
    return RunSpec(model=pre.model.encoder(2), data=task_config(p), train=train,
                   init_from=f"{config_hash(pre)}@{pre.train.steps}")


def seeds_of(i: int) -> Seeds:
    """Fine-tune i's seeds: its own classifier-head (init), data-order and dropout seeds."""
    return Seeds(init=100 + i, data=1000 + i, dropout=2000 + i)


def jobs(p: dict, store_root: str) -> list[Job]:
    """One submitit job per fine-tune (packed into one ensemble by dispatch)."""
    spec0 = finetune_spec(p)
    data = Recipe.of("lmc_core.studies.generalization:task_split", config=asdict(spec0.data), split="train")
    init = None
    if p["encoder"] == "pretrained":
        keys = ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "words", "dropout", "pretrain_steps",
                "pretrain_batch", "pretrain_lr")
        init = Recipe.of("lmc_core.studies.generalization:pretrained_backbone", store_root=store_root,
                         params={k: p[k] for k in keys})
    return [Job(replace(spec0, seeds=(seeds_of(i),)), data, init) for i in range(p["models"])]


def run(params: dict | None = None) -> StudyResult:
    """Pretrain, fine-tune, test the precondition, compute the barrier matrix and everything read off it, and
    write figures, CSVs and the summary."""
    from . import generalization_figures as figs
    from .generalization_report import describe

    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    runs = []
    if p["encoder"] == "pretrained":
        spec = pretrain_spec(p)
        pre = store.get(spec, plays_task(spec.data)["train"], device, p["progress"])
        runs.append({"run": "masked-LM pretraining", "copies": 1, "trained_now": pre.trained_now, "store": pre.path})
    done = dispatch(jobs(p, str(store.root)), store.root, p["executor"], device, p["progress"], slurm=p["slurm"])
    runs += [{"run": f"fine-tune {i}", "copies": 1, "trained_now": r.trained_now, "store": r.path}
             for i, r in enumerate(done)]
    spec = done[0].spec
    cfg, fam = spec.model, family_of(spec.model)
    state = stack_states([r.state for r in done])
    task = plays_task(eval_config(p))
    ev = {"id": fam.eval_examples(cfg, task["id"], p["eval_examples"]), "ood": fam.eval_examples(cfg, task["ood"])}
    models = S.model_table(fam, cfg, state, ev, task["ood"]["category"], device)
    modes = bimodality(models["ood_accuracy"].to_numpy(), seed=0)
    models["mode"] = modes.labels
    alphas = alpha_grid(p["alphas"])
    ids = [r.path.name for r in done]
    key = matrix_key(ids, p["finetune_steps"], p["eval_examples"], alphas, p["definition"], "loss")
    mat = barrier_matrix(cfg, state, ev["id"], alphas, p["definition"], "loss", device, cache=store.layout.matrix(key))
    kmax = min(p["kmax"], p["models"] - 1)
    cl = spectral_clusters(mat, None, p["delta"], kmax, seed=0)
    cl2 = spectral_clusters(mat, 2, cl.delta, seed=0)
    null = eigengap_null(mat, kmax, cl.delta, p["null_resamples"], seed=2)
    stab = stability_by_k(mat, range(2, kmax + 1), cl.delta, p["resamples"], seed=1)
    models["cluster"], models["cluster_k2"] = cl.labels, cl2.labels
    agree = {"k2": S.agreement(mat, cl2, modes.labels, p["bootstrap"])}
    if cl.k > 1:
        agree["eigengap"] = S.agreement(mat, cl, modes.labels, p["bootstrap"])
    groups = S.group_barriers(mat, modes.labels, p["bootstrap"])
    three = S.plane_models(modes.labels, models["ood_accuracy"].to_numpy())
    ab = [copy_state(state, i) for i in three]
    planes = {s: plane(cfg, *ab, ev[s], *p["plane_range"], p["plane_points"], device) for s in ("id", "ood")}
    batches = S.sharpness_batches(fam, spec, task["train"], p["sharpness_batches"])
    models["sharpness"] = sharpness(cfg, state, batches, p["sharpness_eps"], p["sharpness_lr"], device,
                                    passes=p["sharpness_passes"])
    dyn = pd.concat([S.dynamics(p, fam, cfg, store, done, ev, alphas, cl2, ids, device),
                     S.final_rows(models, mat, p["finetune_steps"])], ignore_index=True)
    curves = pair_curves(cfg, state, S.explorer_pairs(mat, modes.labels),
                         {"in-distribution": ev["id"], "out-of-distribution": ev["ood"]}, alphas, device)
    ctrl = None
    if p["control"]:
        from .generalization_control import control

        ctrl = control(p, store, cache_dir, device)
        runs += ctrl["runs"]
    card = pd.DataFrame(dataset_card(eval_config(p)))
    res = StudyResult(params=p, tables={"card": card, "models": models, "matrix": pd.DataFrame(mat), "dynamics": dyn,
                                        "curves": curves, "groups": groups.table, "runs": without_store(runs),
                                        "stability": S.stability_table(stab)})
    if ctrl is not None:
        res.tables["control"] = ctrl["pairs"]
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    made = [("precondition", figs.precondition_figure(models, modes, p)),
            ("barrier_matrix", figs.matrix_figure(mat, cl2, modes.labels, p)),
            ("clusters", figs.cluster_figure(cl, null, stab, p)),
            ("agreement", figs.agreement_figure(models, groups, agree, p)),
            ("plane", figs.plane_figure(planes, three, modes.labels, p)),
            ("sharpness", figs.sharpness_figure(models, p)),
            ("cluster_dynamics", figs.dynamics_figure(dyn, p))]
    if ctrl is not None:
        made.append(("control", figs.control_figure(ctrl, p)))
    for name, (fig, d) in made:
        res.add_figure(f"{PREFIX}_{name}", fig, d)
    res.add_csv(f"{PREFIX}_models", models)
    res.add_csv(f"{PREFIX}_dataset_card", card)
    res.add_csv(f"{PREFIX}_pair_curves", curves)
    res.add_csv(f"{PREFIX}_barrier_matrix_values", pd.DataFrame(mat, columns=[f"m{i}" for i in range(len(mat))]))
    res.publish(fig_dir, PREFIX, describe(models, modes, mat, cl, cl2, null, stab, agree, groups, planes, dyn, ctrl,
                                          card, p))
    return res
