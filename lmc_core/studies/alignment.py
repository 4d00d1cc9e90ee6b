"""Notebook 04: alignment beyond permutations — Git Re-Basin across learning rates, optimizers, a Fisher penalty and
widths (MLP), and transformers aligned by permutations, an orthogonal map of the residual stream and learned maps.

MLP part (study 5, FlatMinimaInterpretability, on MNIST-1D; lmc_core.studies.alignment_mlp): for each optimizer a
learning-rate x Fisher-weight grid of pairs of independently initialised MLPs (per-copy lr and lambda, packed into
ensembles); barriers before and after weight and activation matching, flagged cells whose endpoints did not train,
the argmin learning rate bootstrapped over pairs, and a width sweep at each optimizer's best trained lr.
Transformer part (lmc_core.studies.alignment_lm): Shakespeare LMs trained until their test loss flattens, aligned
every way, next to Theus et al.'s GPT-2 row. Figures: alignment_figures; summary: alignment_summary.
"""
from __future__ import annotations

import pandas as pd

from ..analysis import barrier as B
from ..analysis.interpolate import alpha_grid
from ..config import ConfigError, model_preset
from ..data.vectors import VectorDataConfig, load_vectors
from ..runs.dispatch import Recipe, check_executor
from . import alignment_figures as figs
from . import alignment_lm, alignment_mlp
from .alignment_mlp import lrs, mlp_spec_of, train_data  # noqa: F401  (train_data: the grid's data recipe)
from .alignment_summary import describe
from .common import StudyResult, check_alphas, check_positive, prepare, tensorboard_logs, without_store

PREFIX = "04"
OPTIMIZERS = ("sgd", "adam", "adamw")

STUDY_DEFAULTS = dict(
    # MLP part (the seed study: 784-512-512-512-10 on MNIST, 50 epochs at batch 500; SGD momentum 0.9 with
    # warm-up + cosine, Adam, AdamW wd 0.25; lambda in {0, 0.5, 1}; true-label gradient-norm penalty)
    dataset="mnist1d", hidden=[128, 128, 128], batch_size=100, steps=800, warmup_steps=10,
    lr_grid={"sgd": [0.005, 1.0, 5], "adam": [5e-5, 1e-1, 6], "adamw": [5e-5, 1e-1, 6]},
    optimizers=list(OPTIMIZERS), fisher=[0.0, 0.5, 1.0], fisher_mode="empirical", fisher_batch=0, fisher_every=1,
    sgd_momentum=0.9, adamw_weight_decay=0.25, pairs=3, alphas=11, match_examples=1000, wm_restarts=4,
    definition=B.DEFAULT,
    trained_margin_pp=10.0, widths=[128, 256, 512], width_optimizers=["sgd"], width_pairs=3,
    executor="inprocess", slurm={},
    # transformer part
    run_lm=True, lm_model="tinygpt", lm_overrides={"context": 64, "n_layers": 2}, lm_level="char",
    lm_steps=1500, lm_batch=16, lm_lr=5e-3, lm_warmup=100, lm_pairs=4, lm_evals=12, lm_eval_tokens=8192,
    lm_match_tokens=4096, lm_floor_fractions=[0.5], lm_floor_tol=0.02, lm_learn_steps=100, lm_learn_lr=1e-2,
    lm_learn_units=False, lm_learn_batch=16, lm_heldout_batches=4, lm_target_pct=20.0,
)

PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "hidden": [32, 32], "steps": 30, "lr_grid": {"sgd": [0.01, 0.5, 3], "adam": [1e-3, 1e-2, 3],
              "adamw": [1e-3, 1e-2, 2]}, "optimizers": ["sgd", "adam"], "fisher": [0.0, 1.0], "pairs": 2,
              "alphas": 5, "widths": [32, 64], "width_optimizers": ["sgd"], "width_pairs": 2,
              "lm_overrides": {"context": 16, "n_layers": 1, "d_model": 32, "d_ff": 64},
              "lm_steps": 30, "lm_pairs": 2, "lm_eval_tokens": 1024, "lm_match_tokens": 512, "match_examples": 256,
              "lm_learn_steps": 5, "lm_learn_batch": 4, "lm_heldout_batches": 1, "lm_evals": 3},
    # the penalty's double backward is most of the grid's cost: two Fisher weights instead of study 5's three, the
    # penalty on every 4th step (as notebook 06's quick profile), and no top learning rate at which every copy
    # diverged in the full grids (SGD 1, Adam and AdamW 0.1: the same log-spaced points below them)
    "quick": {**STUDY_DEFAULTS, "fisher": [0.0, 1.0], "fisher_every": 4,
              "lr_grid": {"sgd": [0.005, 0.2659147948472494, 4], "adam": [5e-5, 0.02186724147886555, 5],
                          "adamw": [5e-5, 0.02186724147886555, 5]}},
    # the seed study's sweep size on MNIST-1D with the 3x512 MLP (GPU): 20 learning rates per optimizer; a
    # GPT-2-small-sized LM of Theus et al.'s shape would need the subword corpus of the model-size work
    "paper": {**STUDY_DEFAULTS, "hidden": [512, 512, 512], "steps": 2000,
              "lr_grid": {"sgd": [0.005, 1.0, 20], "adam": [5e-5, 1e-1, 20], "adamw": [5e-5, 1e-1, 20]},
              "pairs": 4, "alphas": 21, "widths": [128, 256, 512, 1024], "width_optimizers": list(OPTIMIZERS),
              "width_pairs": 4, "lm_overrides": {"context": 128, "n_layers": 4, "d_model": 128, "d_ff": 512},
              "lm_steps": 10000, "lm_batch": 32, "lm_pairs": 6, "lm_eval_tokens": 65536, "lm_learn_steps": 500},
}


def check_params(p: dict) -> None:
    """Every check that needs no data or training."""
    check_positive(p, "batch_size", "steps", "pairs", "fisher_every", "match_examples", "wm_restarts", "lm_steps",
                   "lm_batch", "lm_pairs",
                   "lm_eval_tokens", "lm_match_tokens", "width_pairs", "lm_learn_steps", "lm_learn_batch",
                   "lm_heldout_batches", "lm_evals")
    check_alphas(p)
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    bad = [o for o in p["optimizers"] if o not in OPTIMIZERS]
    if bad or not p["optimizers"]:
        raise ConfigError(f"optimizers={p['optimizers']!r}; choose from {list(OPTIMIZERS)}")
    for o in p["optimizers"]:
        g = p["lr_grid"].get(o)
        if not (isinstance(g, (list, tuple)) and len(g) == 3 and 0 < g[0] <= g[1] and isinstance(g[2], int) and g[2] > 0):
            raise ConfigError(f"lr_grid[{o!r}]={g!r} must be [lowest lr, highest lr, number of log-spaced values]")
    if not p["fisher"] or any(not isinstance(f, (int, float)) or f < 0 for f in p["fisher"]) or 0 not in p["fisher"]:
        raise ConfigError(f"fisher={p['fisher']!r} must be a list of weights >= 0 that includes 0 (the plain optimizer)")
    if p["pairs"] < 2 or p["lm_pairs"] < 2:
        raise ConfigError(f"pairs={p['pairs']} and lm_pairs={p['lm_pairs']} must be >= 2: an interval over pairs "
                          "needs two")
    if any(o not in p["optimizers"] for o in p["width_optimizers"]):
        raise ConfigError(f"width_optimizers={p['width_optimizers']!r} must be among optimizers={p['optimizers']!r}")
    if any(not isinstance(w, int) or w < 1 for w in p["widths"]):
        raise ConfigError(f"widths={p['widths']!r} must be positive integers (hidden units per layer)")
    if not 0 <= p["trained_margin_pp"] <= 100:
        raise ConfigError(f"trained_margin_pp={p['trained_margin_pp']} must be in [0, 100] percentage points")
    if any(not 0 < f < 1 for f in p["lm_floor_fractions"]):
        raise ConfigError(f"lm_floor_fractions={p['lm_floor_fractions']!r} must lie in (0, 1) (fractions of lm_steps)")
    mlp_spec_of(p, VectorDataConfig(dataset=p["dataset"]).validate(), "sgd")[0].validate()
    if p["run_lm"]:
        model_preset(p["lm_model"], **p["lm_overrides"])
    check_executor(p["executor"], p["slurm"])


def run(params: dict | None = None) -> StudyResult:
    """Train the grids, the width sweep and the LM pairs, align, interpolate, write figures, CSVs and the summary."""
    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    data_cfg = VectorDataConfig(dataset=p["dataset"])
    data = load_vectors(data_cfg, cache_dir)
    d_in, n_classes = data["train"]["x"].shape[1], int(data["train"]["y"].max()) + 1
    alphas = alpha_grid(p["alphas"])
    recipe = Recipe.of("lmc_core.studies.alignment:train_data", dataset=p["dataset"], cache_dir=str(cache_dir))
    grids = {opt: mlp_spec_of(p, data_cfg, opt, d_in, n_classes) for opt in p["optimizers"]}
    rows, curves, runs = alignment_mlp.train_and_align(grids, recipe, data, alphas, p, store.root, device)
    table = alignment_mlp.mark_trained(pd.DataFrame(rows), p["trained_margin_pp"])
    curves = pd.concat(curves, ignore_index=True)
    # the width sweep, at each optimizer's best trained lr (lambda = 0); its narrowest width repeats grid jobs
    sweeps = {}
    for opt in p["width_optimizers"]:
        lr = alignment_mlp.width_settings(table, opt)
        for w in p["widths"] if lr is not None else []:
            sweeps[f"{opt} width {w}"] = mlp_spec_of(p, data_cfg, opt, d_in, n_classes, settings=[(lr, 0.0)],
                                                     hidden=(w,) * len(p["hidden"]), pairs=p["width_pairs"])
    width = pd.DataFrame()
    if sweeps:
        w_rows, _, w_runs = alignment_mlp.train_and_align(sweeps, recipe, data, alphas, p, store.root, device)
        width = pd.DataFrame(w_rows)
        runs += [r for r in w_runs if r["trained_now"]]
    res = StudyResult(params=p, tables={"mlp": table, "mlp_curves": curves, "width": width})
    fig, d = figs.barrier_vs_lr_figure(table, p["definition"], p["trained_margin_pp"], p["profile"])
    res.add_figure(f"{PREFIX}_barrier_vs_lr", fig, d)
    fig, d = figs.sparsity_figure(table, p["profile"])
    res.add_figure(f"{PREFIX}_sparsity_vs_lr", fig, d)
    med = alignment_mlp.median_pair(table)
    if med is not None:
        sel = curves[(curves.optimizer == med.optimizer) & (curves.lr == med.lr) & (curves.fisher == med.fisher)
                     & (curves.pair == med.pair)]
        fig, d = figs.pair_curves_figure(sel, f"MLP, {med.optimizer} lr {med.lr:.3g}, λ = {med.fisher:g}, pair "
                                              f"{int(med.pair)}: the median of the trained pairs' barriers after weight "
                                              "matching", p["profile"])
    else:
        fig, d = figs.empty_figure("MLP: one pair before and after alignment", "no cell trained in this run")
    res.add_figure(f"{PREFIX}_mlp_loss_vs_alpha", fig, d)
    fig, d = (figs.width_figure(width, p["definition"], p["profile"]) if len(width) else
              figs.empty_figure("Width sweep", "no width sweep: no λ = 0 cell of the width optimizers trained"))
    res.add_figure(f"{PREFIX}_width", fig, d)
    res.add_csv(f"{PREFIX}_mlp_barriers", table)
    res.add_csv(f"{PREFIX}_mlp_curves", curves)
    res.add_csv(f"{PREFIX}_width_barriers", width)
    lm = floor = None
    if p["run_lm"]:
        lm, lm_curves, floor, lm_runs = alignment_lm.lm_part(p, store, cache_dir, device, alphas)
        res.tables.update({"lm": lm, "lm_curves": lm_curves, "lm_floor": floor})
        runs += lm_runs
        fig, d = figs.lm_floor_figure(floor, p["profile"])
        res.add_figure(f"{PREFIX}_lm_floor", fig, d)
        fig, d = figs.lm_curves_figure(lm_curves, p["profile"])
        res.add_figure(f"{PREFIX}_lm_loss_vs_alpha", fig, d)
        fig, d = figs.lm_barrier_figure(lm, p["definition"], p["profile"])
        res.add_figure(f"{PREFIX}_lm_vs_theus", fig, d)
        res.add_csv(f"{PREFIX}_lm_barriers", lm)
        res.add_csv(f"{PREFIX}_lm_curves", lm_curves)
    if p["tensorboard"]:  # every grid's and the LM pairs' loss logs, from the store
        logs = [{"run": f"{r['optimizer']}-{n}", "store": path} for r in runs for n, path in
                enumerate(r.get("runs", [r["store"]]))]
        res.tensorboard = tensorboard_logs(logs, store.root, PREFIX)
    res.tables["runs"] = without_store([{k: v for k, v in r.items() if k != "runs"} for r in runs])
    res.publish(fig_dir, PREFIX, describe(table, width, lm, floor, p))
    return res
