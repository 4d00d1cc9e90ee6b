"""Notebook 04: alignment beyond permutations — Git Re-Basin across learning rates, optimizers, a Fisher penalty and
widths (MLP), and transformers aligned by permutations, an orthogonal map of the residual stream and learned maps.

MLP part (study 5, FlatMinimaInterpretability, on MNIST-1D; alignment_mlp): for each optimizer a learning-rate x
Fisher-weight grid of pairs of independently initialised MLPs (per-copy lr and lambda, packed into ensembles);
barriers before and after weight and activation matching, cells whose endpoints did not train flagged, and a width
sweep at each optimizer's lr with the lowest aligned barrier. Pair i has the same seeds in every cell and width, so
the pair is the independent unit. Transformer part (alignment_lm): Shakespeare LMs aligned every way
(analysis.pair_alignment), next to Theus et al.'s GPT-2 row. Figures: alignment_figures; findings: alignment_summary.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..analysis.interpolate import alpha_grid
from ..analysis.lr_grid import budget_steps, mark_trained
from ..config import ConfigError, model_preset
from ..data.vectors import VECTOR_DATASETS, VectorDataConfig, load_vectors
from ..publish import lr_grid_plots as grid_plots
from ..publish.paths import shown
from ..runs.dispatch import EXECUTORS, Recipe, check_executor
from . import alignment_figures as figs
from . import alignment_lm as lm_part
from . import alignment_mlp as mlp
from .alignment_summary import describe
from .base import Study
from .reference import THEUS_LM
from ..publish.tb import tensorboard_logs
from .params import (ALPHAS, BATCH, DEFINITION, EXAMPLES, MAX_BATCH, MAX_STEPS, MAX_UNITS, RATE, STEPS, UNITS, WIDTH,
                     Bool, Choice, DictOf, Int, ListOf, Mapping, Real, StudyParams, Text, param)

OPTIMIZERS = ("sgd", "adam", "adamw")
# the grid jobs' training data; a recipe is no part of a run's hash (runs.dispatch), so stored jobs load under it
RECIPE = "lmc_core.data.vectors:train_examples"


def _slurm(name: str, v) -> None:
    """a dict of submitit options (or the same as a YAML/JSON string)"""
    if not isinstance(v, (dict, str)):
        raise ConfigError(f"{name}={v!r} must be a mapping of submitit options (or the same as a YAML/JSON string)")


def lr_range_ok(g) -> bool:
    """True for [lowest lr, highest lr, number of log-spaced values] with 0 < lowest <= highest < inf and
    1 <= number <= MAX_UNITS."""
    try:
        lo, hi, n = g
        return isinstance(n, int) and not isinstance(n, bool) and 0 < lo <= hi < float("inf") and 1 <= n <= MAX_UNITS
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Params(StudyParams):
    """Notebook 04's parameters: the MLP grid (study 5's setting on MNIST-1D), the width sweep, the LM pairs."""

    dataset: str = param("mnist1d", "vector dataset of the MLP part (mnist1d works offline)", Choice(VECTOR_DATASETS))
    hidden: list = param([128, 128, 128], "hidden units per layer of the MLP", ListOf(WIDTH))
    batch_size: int = param(100, "examples per step (per copy)", BATCH)
    steps: int = param(800, "training steps of every MLP", STEPS)
    warmup_steps: int = param(10, "SGD's linear warm-up before its cosine decay (study 5: 10)", Int(0, MAX_STEPS))
    lr_grid: dict = param({"sgd": [0.005, 1.0, 5], "adam": [5e-5, 1e-1, 6], "adamw": [5e-5, 1e-1, 6]},
                          "per optimizer [lowest lr, highest lr, number of log-spaced values]", Mapping())
    lr_budget: dict = param({}, "per optimizer, the least lr x steps of a cell: a cell whose lr x steps falls short "
                            "trains ceil(budget / lr) steps (rounded up to 50), so low rates are trained too "
                            "(absent or 0: every cell `steps`)",
                            DictOf(Choice(OPTIMIZERS), Real(0)))
    optimizers: list = param(list(OPTIMIZERS), "optimizers of the grid", ListOf(Choice(OPTIMIZERS)))
    fisher: list = param([0.0, 0.5, 1.0], "Fisher-penalty weights λ (must include 0, the plain optimizer)",
                         ListOf(Real(0)))
    fisher_optimizers: list = param(list(OPTIMIZERS), "optimizers whose grids have the λ > 0 cells",
                                    ListOf(Choice(OPTIMIZERS), 0))
    fisher_lrs: int = param(0, "the λ > 0 cells train at this many learning rates nearest the middle of each "
                            "optimizer's grid (0: at every learning rate)", Int(0, MAX_UNITS))
    fisher_mode: str = param("empirical", "the penalty's labels: true (empirical, study 5's MNIST form) or sampled",
                             Choice(("empirical", "sampled")))
    fisher_batch: int = param(0, "the penalty on the first n examples of each batch (0: all)", Int(0, MAX_BATCH))
    fisher_every: int = param(1, "the penalty on every n-th step", STEPS)
    sgd_momentum: float = param(0.9, "SGD's momentum (study 5: 0.9)", Real(0, 1, hi_open=True))
    adamw_weight_decay: float = param(0.25, "AdamW's decoupled weight decay (study 5: 0.25)", Real(0))
    pairs: int = param(3, "pairs of independently initialised models per cell (the independent units)", Int(2, MAX_UNITS))
    alphas: int = param(11, "points on every path, endpoints included", ALPHAS)
    match_examples: int = param(1000, "training examples activation matching correlates", EXAMPLES)
    wm_restarts: int = param(4, "runs of weight matching, half from its anchored start and half from the identity "
                                "(the best objective is kept)", UNITS)
    definition: str = param("chord", "barrier definition of the tables and figures (findings read `chord`)", DEFINITION)
    trained_margin_pp: float = param(10.0, "a cell is trained when its endpoints' mean test error is within this "
                                     "many points of its optimizer's best cell", Real(0, 100))
    widths: list = param([128, 256, 512], "hidden units per layer of the width sweep", ListOf(WIDTH))
    width_optimizers: list = param(["sgd"], "optimizers of the width sweep", ListOf(Choice(OPTIMIZERS), 0))
    width_pairs: int = param(3, "pairs per width", UNITS)
    executor: str = param("inprocess", "where the grids train: inprocess, local (processes) or slurm",
                          Choice(EXECUTORS))
    slurm: dict | str = param({}, "submitit options for executor='slurm', e.g. {'partition': 'gpu'}", _slurm)
    run_lm: bool = param(True, "run the transformer part", Bool())
    lm_model: str = param("tinygpt", "model preset of the LMs (pre-norm, learned positions)", Text())
    lm_overrides: dict = param({"context": 64, "n_layers": 2}, "model fields changed from the preset", Mapping())
    lm_level: str = param("char", "tokenisation of the Shakespeare corpus", Choice(("char", "word", "bpe", "gpt2")))
    lm_steps: int = param(1500, "training steps of the LMs (cosine-decaying rate)", STEPS)
    lm_batch: int = param(16, "windows per LM step", BATCH)
    lm_lr: float = param(5e-3, "AdamW's peak learning rate of the LMs", RATE)
    lm_weight_decay: float = param(0.0, "AdamW's decoupled weight decay of the LMs (Theus et al.: 0.01)", Real(0))
    lm_warmup: int = param(100, "LM warm-up steps (at most half the run)", Int(0, MAX_STEPS))
    lm_pairs: int = param(4, "pairs of independently initialised LMs (the independent units)", Int(2, MAX_UNITS))
    lm_evals: int = param(12, "test-loss evaluations during LM training", UNITS)
    lm_eval_tokens: int = param(8192, "test tokens every LM path is evaluated on", EXAMPLES)
    lm_match_tokens: int = param(4096, "training tokens activation matching correlates", EXAMPLES)
    lm_floor_fractions: list = param([0.5], "shorter runs (fractions of lm_steps) that show where the loss flattens",
                                     ListOf(Real(0, 1, lo_open=True, hi_open=True)))
    lm_floor_tol: float = param(0.02, "nats: a full-length run whose test loss is less than this below the longest "
                                "shorter run's has its endpoints at their floor (ours)", Real(0))
    lm_learn_steps: int = param(100, "steps of the learned residual map", STEPS)
    lm_learn_lr: float = param(1e-2, "Adam's step of the learned residual map", RATE)
    lm_learn_units: bool = param(False, "learn the MLP permutations too (Sinkhorn, straight-through)", Bool())
    lm_learn_batch: int = param(16, "windows per learning step", BATCH)
    lm_heldout_batches: int = param(4, "held-out training batches that judge the learned map", UNITS)

    def check(self) -> None:
        for o in self.optimizers:
            if not lr_range_ok(self.lr_grid.get(o)):
                raise ConfigError(f"lr_grid[{o!r}]={self.lr_grid.get(o)!r} must be [lowest lr, highest lr, number of "
                                  "log-spaced values]")
        for o in self.optimizers:
            longest = budget_steps(min(mlp.lrs(self, o)), self.steps, self.lr_budget.get(o, 0))
            if longest > MAX_STEPS:
                raise ConfigError(f"lr_budget[{o!r}]={self.lr_budget.get(o)!r} asks {longest} steps of the lowest "
                                  f"learning rate, more than {MAX_STEPS}: lower the budget or raise the lowest lr")
        if 0 not in self.fisher:
            raise ConfigError(f"fisher={self.fisher!r} must include 0 (the plain optimizer)")
        if any(o not in self.optimizers for o in self.width_optimizers):
            raise ConfigError(f"width_optimizers={self.width_optimizers!r} must be among optimizers={self.optimizers!r}")
        mlp.mlp_spec_of(self, VectorDataConfig(dataset=self.dataset).validate(), self.optimizers[0])[0].validate()
        if self.run_lm:
            model_preset(self.lm_model, **self.lm_overrides)
        check_executor(self.executor, self.slurm)


QUICK = Params(fisher=[0.0, 1.0], fisher_every=4, fisher_lrs=1, fisher_optimizers=["adam", "adamw"], lm_pairs=5,
               pairs=5, optimizers=["sgd", "adam"],
               lr_grid={"sgd": [0.04, 0.25, 6], "adam": [5e-4, 0.02, 6], "adamw": [5e-4, 0.02, 6]},
               lr_budget={"sgd": 80.0, "adam": 1.0, "adamw": 1.0})


class Alignment(Study):
    """Independently trained models aligned by permutations (MLP grid) and by residual maps (LMs)."""

    prefix, notebook = "04", "04_alignment_and_fisher"
    question = "Does aligning independently trained models lower the barrier between them, and what remains of it?"
    claim = ("Study 5: weight matching lowers the raw midpoint test loss of 3x512 MLPs on MNIST from about 1.3-1.6 to "
             "0.065 nats (SGD) in a sweet spot of learning rates, lower still with a Fisher penalty (Adam 0.0645 -> "
             "0.0545); Theus et al. 2025 (a 6-layer GPT-2-style LM on Tiny Shakespeare): 2.02 nats unaligned, 0.34 after "
             "weight matching, 0.02 after learned permutations with an orthogonal residual map")
    capped = {"lr_grid": {"sgd": [0.005, 1.0, 2], "adam": [5e-5, 0.1, 2], "adamw": [5e-5, 0.1, 2]}, "pairs": 2,
              "width_pairs": 2, "match_examples": 256, "lm_pairs": 2, "lm_eval_tokens": 1024, "lm_learn_steps": 5}
    capped_units = {"lr_grid": "mlp", "pairs": "mlp", "lm_pairs": "lm"}
    capped_eval = {"lr_grid": 1, "pairs": 1}  # the grid's alignments and paths
    profiles = {
        # seconds: narrow MLPs, two optimizers, a few steps; a one-layer LM
        "smoke": Params(profile="smoke", hidden=[32, 32], steps=30, lr_budget={"sgd": 0.6}, fisher_lrs=2, lr_grid={"sgd": [0.01, 0.5, 3], "adam": [1e-3, 1e-2, 3],
                        "adamw": [1e-3, 1e-2, 2]}, optimizers=["sgd", "adam"], fisher=[0.0, 1.0], pairs=2, alphas=5,
                        widths=[32, 64], width_optimizers=["sgd"], width_pairs=2,
                        lm_overrides={"context": 16, "n_layers": 1, "d_model": 32, "d_ff": 64}, lm_steps=30, lm_pairs=2,
                        lm_eval_tokens=1024, lm_match_tokens=512, match_examples=256, lm_learn_steps=5, lm_learn_batch=4,
                        lm_heldout_batches=1, lm_evals=3),
        # 6 rates per optimizer, 5 pairs, every cell trained: low rates train budget / lr steps (in a trial SGD 0.05 x
        # 1600 steps and Adam 3.7e-4 x 3200 came within 10 points of the best); the ranges stop below the rates where
        # pairs diverged (SGD 0.5, Adam 0.1). Within 10 minutes: the Fisher penalty (double backward) every 4th step at
        # Adam's middle rate only (SGD's lambda = 1 cells did not train), and no AdamW (in `paper`)
        "quick": QUICK,
        # the seed study's sweep size on MNIST-1D with the 3x512 MLP (GPU): 20 learning rates per optimizer, the low
        # ones trained longer to quick's budget per step (study 5 trains every cell equally long: its low rates stay
        # untrained; lr_budget={} is its design); the
        # LMs in Theus et al.'s setting (6 layers, 4 heads, d 256, MLP 1024, context 256, batch 32, AdamW 3e-4 with
        # weight decay 0.01, 100 epochs: 12,250 steps of 32 x 256 characters are 100 passes over a corpus of Tiny
        # Shakespeare's 1.0M training characters), on our plays at character level
        "paper": Params(profile="paper", hidden=[512, 512, 512], steps=2000,
                        lr_grid={"sgd": [0.005, 1.0, 20], "adam": [5e-5, 1e-1, 20], "adamw": [5e-5, 1e-1, 20]},
                        lr_budget={"sgd": 200.0, "adam": 2.0, "adamw": 2.0},
                        pairs=5, alphas=21, widths=[128, 256, 512, 1024], width_optimizers=list(OPTIMIZERS),
                        width_pairs=5, lm_overrides=dict(THEUS_LM), lm_steps=12250, lm_batch=32, lm_lr=3e-4,
                        lm_weight_decay=0.01, lm_pairs=6, lm_eval_tokens=65536, lm_learn_steps=500),
    }

    def compute(self, p: Params, ctx) -> dict:
        """Train the grids, the width sweep and the LM pairs (through the store), align, interpolate."""
        data_cfg = VectorDataConfig(dataset=p.dataset)
        data = load_vectors(data_cfg, ctx.cache_dir)
        shape = (data["train"]["x"].shape[1], int(data["train"]["y"].max()) + 1)
        alphas = alpha_grid(p.alphas)
        recipe = Recipe.of(RECIPE, dataset=p.dataset, cache_dir=str(ctx.cache_dir))
        grids = {opt: mlp.mlp_spec_of(p, data_cfg, opt, *shape) for opt in p.optimizers}
        rows, curves, runs = mlp.train_and_align(grids, recipe, data, alphas, p, ctx)
        table = mark_trained(pd.DataFrame(rows), p.trained_margin_pp)
        width, w_runs = mlp.width_sweep(table, recipe, data, alphas, p, ctx, data_cfg, shape)
        out = {"mlp": table, "mlp_curves": pd.concat(curves, ignore_index=True), "width": width}
        runs += w_runs
        if p.run_lm:
            lm, lm_curves, floor, lm_runs = lm_part.lm_part(p, ctx, alphas)
            out.update(lm=lm, lm_curves=lm_curves, lm_floor=floor)
            runs += lm_runs
        if p.tensorboard:  # every grid's and the LM pairs' loss logs, from the store
            out["tensorboard"] = tensorboard_logs([{"run": f"{r['optimizer']}-{n}", "store": path} for r in runs
                                                   for n, path in enumerate(r.get("runs", [r["store"]]))],
                                                  ctx.store.root, self.prefix)
        out["runs"] = pd.DataFrame([{k: v for k, v in r.items() if k != "runs"} for r in runs]).assign(
            store=lambda t: t.store.map(shown))
        return out

    def figures(self, p: Params, data: dict):
        yield "barrier_vs_lr", *grid_plots.barrier_vs_lr_figure(data["mlp"], p.definition, p.trained_margin_pp,
                                                                 p.profile)
        yield "sparsity_vs_lr", *grid_plots.sparsity_figure(data["mlp"], p.profile)
        yield "mlp_loss_vs_alpha", *figs.median_pair_figure(data["mlp"], data["mlp_curves"], p.profile)
        yield "width", *grid_plots.width_figure(data["width"], p.definition, p.profile)
        if p.run_lm:
            yield "lm_floor", *figs.lm_floor_figure(data["lm_floor"], p.profile)
            yield "lm_loss_vs_alpha", *figs.lm_curves_figure(data["lm_curves"], p.profile)
            yield "lm_vs_theus", *figs.lm_barrier_figure(data["lm"], p.profile)

    def omitted(self, p: Params) -> dict:
        parts = ("lm_floor", "lm_loss_vs_alpha", "lm_vs_theus", "lm", "lm_curves")
        return {} if p.run_lm else dict.fromkeys(parts, "run_lm = False turns the transformer part off")

    def csvs(self, p: Params, data: dict) -> dict:
        out = {"mlp_barriers": data["mlp"], "mlp_curves": data["mlp_curves"], "width_barriers": data["width"]}
        if p.run_lm:
            out.update(lm_barriers=data["lm"], lm_curves=data["lm_curves"])
        return out

    def findings(self, p: Params, data: dict):
        return describe(p, data)

    def setting(self, p: Params) -> str:
        return (f"MLP {'-'.join(map(str, p.hidden))}, {p.pairs} pairs per cell"
                + (f"; {p.lm_pairs} LM pairs, {p.lm_steps} steps" if p.run_lm else ""))


STUDY = Alignment()
run = STUDY.run
PROFILES = STUDY.profiles
