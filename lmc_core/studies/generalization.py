"""Notebook 05: generalisation strategies (Juneja et al. 2023, "Linear Connectivity Reveals Generalization
Strategies") on a task that has two of them.

Juneja et al.'s clusters need (1) a task with two solutions that fit the training data equally well but differ
off distribution, (2) many fine-tunes of one pretrained model that differ only in SGD noise (data order,
dropout, classifier-head seed), and (3) an out-of-distribution set that separates the solutions. Here:

1. the task (lmc_core.data.strategies, "phrase"): does a passage contain the phrase "my lord"? The rule needs
   word order; the bag-of-words heuristic fits all but a share epsilon of the training passages; a HANS-like
   out-of-distribution set scores it 50 % and the rule 100 %;
2. the pretrained model: a small BERT encoder pretrained by masked-token prediction on the plays (a stored
   run, reused by every fine-tune) — or the shipped MiniLM (`encoder="minilm"`, the paper profile);
3. the precondition: is out-of-distribution accuracy bimodal (dip test; two Gaussians vs one by BIC)? Its modes
   are the strategy groups;
4. then Juneja's claims: the all-pairs barrier matrix (mod_BH = `subchord`, in-distribution test loss),
   spectral clusters (k by the eigengap, and k = 2) with two eigengap nulls and their stability; the agreement
   (adjusted Rand index) of clusters and modes and across-minus-within barriers, each against the mode labels
   permuted among the models; barriers within and across modes (intervals over models, which pairs share); a
   plane through both modes; epsilon-sharpness per mode (two arms of models); the clusters during fine-tuning;
5. a control: the LM-continuation setting of the notebook's first version (one cluster expected).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..analysis.cluster import adjusted_rand, eigengap_null, row_effect_null, spectral_clusters, stability_by_k
from ..analysis.interpolate import alpha_grid
from ..analysis.landscape import barrier_matrix, matrix_key, pair_curves, plane, sharpness
from ..analysis.modes import bimodality
from ..analysis.stats import label_permutation_null
from ..analysis.strategies import (across_minus_within, clusters_over_steps, evaluate_models, first_batches,
                                   top_pairs, typical_models)
from ..config import ConfigError
from ..data.strategies import dataset_card, plays_task
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..publish.paths import shown
from ..runs.dispatch import EXECUTORS, check_executor, dispatch
from ..runs.strategies import eval_config, jobs, pretrain_spec
from . import generalization_figures as figs
from .base import Study
from ..publish.tb import tensorboard_logs
from .generalization_report import describe, group_findings
from .params import (ALPHAS, BATCH, DEFINITION, EXAMPLES, MAX_EXAMPLES, MAX_PLANE_POINTS, MAX_UNITS, MAX_VOCAB, RATE,
                     RESAMPLES, STEPS, UNITS, WIDTH, Bool, Choice, Int, ListOf, Maybe, Real, StudyParams, Text, param)


def _slurm(name: str, v) -> None:
    """a dict of submitit options (or the same as a YAML/JSON string)"""
    if not isinstance(v, (dict, str)):
        raise ConfigError(f"{name}={v!r} must be a dict of submitit options (or the same as a YAML/JSON string)")


@dataclass(frozen=True)
class Params(StudyParams):
    """Notebook 05's parameters: the task, the encoder, the fine-tunes, the analysis and the control."""

    words: int = param(10, "words per passage (tokens: words + 2)", Int(4, 126))
    vocab_size: int = param(512, "our encoder's compact vocabulary (0: MiniLM's WordPiece ids)", Int(0, MAX_VOCAB))
    phrase: list = param(["my", "lord"], "the two words of the phrase the rule looks for", ListOf(Text(), 2, 2))
    epsilon: float = param(0.05, "share of training passages only the rule fits (both words out of order)", Real(0, 1))
    train_size: int = param(20000, "training passages", Int(2, MAX_EXAMPLES))
    eval_size: int = param(2000, "passages of each evaluation split", Int(2, MAX_EXAMPLES))
    encoder: str = param("pretrained", "our masked-LM-pretrained encoder or the shipped MiniLM", Choice(("pretrained", "minilm")))
    d_model: int = param(32, "our encoder's width", WIDTH)
    n_layers: int = param(2, "our encoder's layers", WIDTH)
    n_heads: int = param(4, "our encoder's attention heads", WIDTH)
    d_ff: int = param(128, "our encoder's MLP width", WIDTH)
    dropout: float = param(0.1, "our encoder's dropout (and attention dropout)", Real(0, 1, hi_open=True))
    pretrain_steps: int = param(800, "masked-LM pretraining steps", STEPS)
    pretrain_lr: float = param(2e-3, "pretraining learning rate (AdamW, cosine)", RATE)
    pretrain_batch: int = param(64, "pretraining batch size", BATCH)
    minilm_layers: int = param(6, "MiniLM's layers kept (encoder='minilm')", WIDTH)
    models: int = param(32, "fine-tunes (the independent units: each its own head, data-order and dropout seed)",
                        Int(4, MAX_UNITS))
    finetune_steps: int = param(800, "fine-tuning steps", STEPS)
    finetune_lr: float = param(2e-3, "fine-tuning learning rate (AdamW, cosine)", RATE)
    batch_size: int = param(32, "fine-tuning batch size", BATCH)
    weight_decay: float = param(0.01, "fine-tuning weight decay", Real(0))
    eval_examples: int = param(1400, "in-distribution test passages of every barrier", EXAMPLES)
    alphas: int = param(10, "points on each path, endpoints included (Juneja et al.: 10)", ALPHAS)
    definition: str = param("subchord", "barrier definition of the matrix (subchord: Juneja's mod_BH)", DEFINITION)
    kmax: int = param(6, "largest k of the eigengap and of the stability", Int(2, MAX_UNITS))
    delta: float | None = param(None, "affinity scale in nats (None: the median barrier)", Maybe(Real(0, lo_open=True)))
    resamples: int = param(20, "subsamples (80 % of the models) per k of the stability", RESAMPLES)
    null_resamples: int = param(999, "permuted matrices of each eigengap null", RESAMPLES)
    permutations: int = param(999, "mode-label permutations of the agreement and across-minus-within nulls", RESAMPLES)
    plane_points: int = param(11, "grid points per axis of the plane", Int(2, MAX_PLANE_POINTS))
    plane_range: list = param([-0.5, 1.5], "the plane's extent along each axis (units of |B - A|)", ListOf(Real(), 2, 2))
    sharpness_eps: float = param(1e-5, "epsilon of the sharpness box (Juneja et al.'s measure_flatness: 1e-5)", RATE)
    sharpness_lr: float = param(1e-2, "step of the projected gradient ascent", RATE)
    sharpness_batches: int = param(8, "training batches of the sharpness", UNITS)
    sharpness_passes: int = param(10, "at most this many ascent passes", UNITS)
    dynamics: list = param([0.5], "fractions of fine-tuning at which the clusters are computed again",
                           ListOf(Real(0, 1, lo_open=True, hi_open=True), 0))
    dynamics_examples: int = param(160, "in-distribution passages of the barriers during fine-tuning (every step, "
                                   "the end included, on the same passages)", EXAMPLES)
    control: bool = param(True, "run the control (LM continuation, one cluster expected)", Bool())
    control_models: int = param(8, "fine-tunes of the control", UNITS)
    control_steps: int = param(300, "the control's fine-tuning steps", STEPS)
    control_lr: float = param(1e-2, "the control's fine-tuning learning rate", RATE)
    control_id_fraction: float = param(0.1, "share of the held-out plays kept as the control's test text",
                                       Real(0, 1, lo_open=True, hi_open=True))
    control_eval_tokens: int = param(2048, "test tokens of the control's barriers", EXAMPLES)
    executor: str = param("inprocess", "where the fine-tunes train: inprocess, local (processes) or slurm",
                          Choice(EXECUTORS))
    slurm: dict = param({}, "submitit options for executor='slurm', e.g. {'partition': 'gpu'}", _slurm)

    def check(self) -> None:
        if self.control:
            Int(3)("control_models", self.control_models)  # the control's eigengap test needs 3 models
        if self.encoder == "minilm" and self.vocab_size != 0:
            raise ConfigError("encoder='minilm' reads MiniLM's WordPiece ids: set vocab_size=0")
        if self.encoder == "pretrained" and self.vocab_size == 0:
            raise ConfigError("encoder='pretrained' needs a compact vocabulary: set vocab_size (e.g. 512)")
        if self.plane_range[2:] or not self.plane_range[0] < self.plane_range[1]:
            raise ConfigError(f"plane_range={self.plane_range!r} must be [low, high] with low < high")
        if not self.eval_examples <= self.eval_size:
            raise ConfigError(f"eval_examples={self.eval_examples} exceeds eval_size={self.eval_size}")
        eval_config(self).validate()
        check_executor(self.executor, self.slurm)  # before the encoder's pretraining, not at the fine-tunes


QUICK = Params()


def fine_tunes(p: Params, ctx) -> dict:
    """Pretrain (our encoder), fine-tune every model and evaluate them in and out of distribution."""
    runs = []
    if p.encoder == "pretrained":
        spec = pretrain_spec(p)
        pre = ctx.store.get(spec, plays_task(spec.data)["train"], ctx.device, p.progress)
        runs.append({"run": "masked-LM pretraining", "copies": 1, "trained_now": pre.trained_now, "store": pre.path})
    done = dispatch(jobs(p, str(ctx.store.root)), ctx.store.root, p.executor, ctx.device, p.progress, slurm=p.slurm)
    runs += [{"run": f"fine-tune {i}", "copies": 1, "trained_now": r.trained_now, "store": r.path}
             for i, r in enumerate(done)]
    cfg = done[0].spec.model
    fam, state, task = family_of(cfg), stack_states([r.state for r in done]), plays_task(eval_config(p))
    ev = {"id": fam.eval_examples(cfg, task["id"], p.eval_examples), "ood": fam.eval_examples(cfg, task["ood"])}
    models = evaluate_models(fam, cfg, state, ev, task["ood"]["category"], ctx.device)
    return {"done": done, "run_list": runs, "cfg": cfg, "fam": fam, "state": state, "task": task, "ev": ev,
            "models": models, "ids": [r.path.name for r in done], "card": pd.DataFrame(dataset_card(eval_config(p)))}


def clusters(p: Params, ctx, d: dict) -> dict:
    """The barrier matrix, the strategy modes, the clusters, both eigengap nulls, the stability per k, and the
    mode-label nulls of the agreement and of across-minus-within."""
    models = d["models"]
    modes = bimodality(models["ood_accuracy"].to_numpy(), seed=0)
    alphas = alpha_grid(p.alphas)
    key = matrix_key(d["ids"], p.finetune_steps, p.eval_examples, alphas, p.definition, "loss")
    mat = barrier_matrix(d["cfg"], d["state"], d["ev"]["id"], alphas, p.definition, "loss", ctx.device,
                         cache=ctx.store.layout.matrix(key))
    kmax = min(p.kmax, p.models - 1)
    cl = spectral_clusters(mat, None, p.delta, kmax, seed=0)
    cl2 = spectral_clusters(mat, 2, cl.delta, seed=0)
    models["mode"], models["cluster"], models["cluster_k2"] = modes.labels, cl.labels, cl2.labels
    stab = stability_by_k(mat, range(2, kmax + 1), cl.delta, p.resamples, seed=1)
    ari = {name: (adjusted_rand(c.labels, modes.labels), label_permutation_null(
        lambda lab, c=c: adjusted_rand(c.labels, lab), modes.labels, p.permutations, seed=3))
        for name, c in (("k2", cl2), ("eigengap", cl)) if c.k > 1}
    amw = (across_minus_within(mat, modes.labels),
           label_permutation_null(lambda lab: across_minus_within(mat, lab), modes.labels, p.permutations, seed=4))
    groups = group_findings(p, mat, modes.labels)
    return {"modes": modes, "mat": mat, "alphas": alphas, "cl": cl, "cl2": cl2, "stab": stab, "ari": ari,
            "amw": amw, "eigengap": eigengap_null(mat, kmax, cl.delta, p.null_resamples, seed=2),
            "row_null": row_effect_null(mat, kmax, cl.delta, p.null_resamples, seed=5), "group_findings": groups,
            "matrix": pd.DataFrame(mat), "stability": pd.DataFrame([{"k": k, "resample": r, "ari": float(v)}
                                                                    for k, a in stab.items() for r, v in enumerate(a)]),
            "groups": pd.DataFrame([{"group": g, "pairs": f.n_pairs, "models": f.n_units, "mean_barrier": f.estimate,
                                     "low": f.low, "high": f.high, "interval": f.interval} for g, f in groups.items()])}


def landscape(p: Params, ctx, d: dict) -> dict:
    """The plane through models of both modes, epsilon-sharpness, the clusters during fine-tuning and the pair
    curves of the explorer."""
    cfg, state, ev, models, dev = d["cfg"], d["state"], d["ev"], d["models"], ctx.device
    three = typical_models(d["modes"].labels, models["ood_accuracy"].to_numpy())
    ab = [copy_state(state, i) for i in three]
    planes = {s: plane(cfg, *ab, ev[s], *p.plane_range, p.plane_points, dev) for s in ("id", "ood")}
    batches = first_batches(d["fam"], d["done"][0].spec, d["task"]["train"], p.sharpness_batches)
    models["sharpness"] = sharpness(cfg, state, batches, p.sharpness_eps, p.sharpness_lr, dev,
                                    passes=p.sharpness_passes)
    curves = pair_curves(cfg, state, top_pairs(d["mat"], d["modes"].labels),
                         {"in-distribution": ev["id"], "out-of-distribution": ev["ood"]}, d["alphas"], dev)
    # every step's clusters on the same first `dynamics_examples` passages, the final models' too (a change between
    # steps is then a change of the models, not of the passages); the final clusters of the main matrix are the
    # reference the labels are matched to
    done, n, end = d["done"], p.dynamics_examples, p.finetune_steps
    dyn = clusters_over_steps(d["fam"], cfg, [*done[0].spec.train.checkpoints, end], lambda step: state if step == end
                              else stack_states([ctx.store.checkpoint(r.spec, step) for r in done]), ev, n, d["alphas"],
                              p.definition, d["cl2"].labels, lambda step: ctx.store.layout.matrix(
                                  matrix_key(d["ids"], step, n, d["alphas"], p.definition, "loss")), dev)
    return {"planes": planes, "three": three, "curves": curves, "dynamics": dyn}


class GeneralisationStrategies(Study):
    """Fine-tunes of one pretrained encoder on a task with two strategies: do barrier clusters follow them?"""

    prefix, notebook = "05", "05_generalization_strategies"
    question = ("Do the clusters of fine-tunes by their pairwise barriers follow the fine-tunes' generalisation "
                "strategies?")
    claim = ("Juneja et al. 2023: 100 BERT fine-tunes on QQP (and MNLI) fall into clusters of the mod_BH barrier "
             "matrix that separate their generalisation on PAWS (HANS); no agreement index reported, our headline "
             "is the adjusted Rand index between clusters and strategy modes")
    capped = {"models": 6, "eval_examples": 8, "eval_size": 128, "dynamics_examples": 8, "control_models": 3,
              "plane_points": 3, "sharpness_batches": 1, "null_resamples": 19, "permutations": 49, "resamples": 3}
    capped_units = {"models": "encoder", "control_models": "lm"}
    capped_eval = {"models": 2, "eval_examples": 1}  # the barrier matrix
    profiles = {
        # seconds: a tiny encoder, 6 fine-tunes, 12 steps
        "smoke": QUICK.replace(profile="smoke", models=6, train_size=512, eval_size=64, pretrain_steps=10,
                               finetune_steps=12, batch_size=8, pretrain_batch=8, d_model=16, d_ff=32, n_heads=2,
                               n_layers=1, eval_examples=48, alphas=4, resamples=3, null_resamples=19,
                               permutations=49, plane_points=3, sharpness_batches=2, sharpness_passes=2,
                               dynamics=[0.5], dynamics_examples=16, control_models=3, control_steps=4,
                               control_eval_tokens=128),
        # minutes on a 2-core CPU: our 2-layer d=32 encoder, 32 fine-tunes of 800 steps
        "quick": QUICK,
        # MiniLM, 100 fine-tunes (Juneja et al.'s count) on a larger task (GPU)
        "paper": QUICK.replace(profile="paper", encoder="minilm", vocab_size=0, models=100, finetune_steps=1500,
                               finetune_lr=2e-5, eval_examples=2000, eval_size=4000, train_size=60000,
                               plane_points=21, sharpness_batches=16, dynamics=[0.25, 0.5, 0.75],
                               dynamics_examples=2000, control_models=16, control_steps=600),
    }

    def compute(self, p: Params, ctx) -> dict:
        """Pretrain, fine-tune, compute the barrier matrix and everything read off it, and the control."""
        d = fine_tunes(p, ctx)
        d.update(clusters(p, ctx, d))
        d.update(landscape(p, ctx, d))
        runs = d.pop("run_list")
        if p.control:
            from .generalization_control import control  # notebook 03's pretrained LM: imported when asked for

            d["ctrl"] = control(p, ctx.store, ctx.cache_dir, ctx.device)
            d["control"] = d["ctrl"]["pairs"]
            runs += d["ctrl"]["runs"]
        d["runs"] = pd.DataFrame(runs).assign(store=lambda t: t.store.map(shown))
        if p.tensorboard:
            d["tensorboard"] = tensorboard_logs(runs, ctx.store.root, self.prefix)
        return d

    def figures(self, p: Params, data: dict):
        yield from figs.figures(p, data)

    def csvs(self, p: Params, data: dict) -> dict:
        return {"models": data["models"], "dataset_card": data["card"], "pair_curves": data["curves"],
                "barrier_matrix_values": data["matrix"].rename(columns=lambda i: f"m{i}")}

    def findings(self, p: Params, data: dict):
        return describe(p, data)

    def setting(self, p: Params) -> str:
        enc = "our pretrained encoder" if p.encoder == "pretrained" else "MiniLM"
        return f"{p.models} fine-tunes of {enc}, ε = {p.epsilon:g}, {p.finetune_steps} steps"


STUDY = GeneralisationStrategies()
run = STUDY.run
PROFILES = STUDY.profiles
