"""Notebook 00: your own models. Two kinds of models trained by plain PyTorch / Hugging Face code (not lmc_core's
trainer) — MLPs on MNIST-1D and GPT-2-style character LMs saved as local checkpoints — and the barrier between
independently initialised pairs before and after weight matching (Git Re-Basin, Ainsworth et al. 2023), with
lmc_core.linear_path, lmc_core.align_models and lmc_core.load_hf.

The notebook holds the user's code (the models, the training loops, the calls); this module gives it its
settings per profile, the data as plain tensors, where the checkpoints go, and turns the paths into figures and
the summary (`report`). The claim tested is Git Re-Basin's: independently initialised MLPs are separated by a
loss barrier that weight matching removes, the more completely the wider they are (width is its variable: pairs
at several widths, the aligned barrier of each width against the next). Its precondition, shown first: matching
recovers a planted permutation of a trained model exactly.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..align.methods import UNALIGNED, WEIGHT
from ..analysis import barrier as B
from ..analysis import findings as F
from ..analysis.criteria import CONVEX_TOL
from ..analysis.path_result import judge_paths
from ..config import ConfigError
from ..data import load_corpus
from ..data.vectors import VectorDataConfig, load_vectors
from ..publish.plotting import curves_with_band, points_and_means
from ..publish import costs
from .base import Study, Summary, folders, set_threads
from .params import ALPHAS, BATCH, DEFINITION, EXAMPLES, RATE, STEPS, UNITS, WIDTH, ListOf, StudyParams, param


@dataclass(frozen=True)
class Params(StudyParams):
    """Notebook 00's settings: the MLP pairs (Git Re-Basin's setting on MNIST-1D) and the GPT-2 checkpoints."""

    pairs: int = param(5, "pairs of independently initialised MLPs per width", UNITS)
    widths: list = param([128, 256, 512, 1024, 2048], "hidden units of each of the MLP's two hidden layers: one set "
                         "of pairs per width (Git Re-Basin's variable)", ListOf(WIDTH))
    steps: int = param(3000, "SGD steps per MLP", STEPS)
    lr: float = param(0.05, "SGD learning rate of the MLPs (momentum 0.9)", RATE)
    batch_size: int = param(128, "MLP batch size", BATCH)
    alphas: int = param(25, "points on each path, endpoints included", ALPHAS)
    definition: str = param(B.DEFAULT, "the barrier definition of the findings", DEFINITION)
    lm_pairs: int = param(5, "pairs of GPT-2 checkpoints", UNITS)
    lm_d: int = param(128, "GPT-2 width (n_embd)", WIDTH)
    lm_layers: int = param(4, "GPT-2 layers", WIDTH)
    lm_heads: int = param(4, "GPT-2 attention heads", WIDTH)
    lm_context: int = param(64, "GPT-2 context (characters)", WIDTH)
    lm_steps: int = param(2000, "AdamW steps per GPT-2", STEPS)
    lm_batch: int = param(32, "GPT-2 batch size (windows)", BATCH)
    lm_lr: float = param(1e-3, "GPT-2 AdamW learning rate", RATE)
    lm_eval_tokens: int = param(16384, "test characters the GPT-2 paths are evaluated on", EXAMPLES)
    align_tokens: int = param(4096, "training characters the GPT-2 spec is checked on", EXAMPLES)

    def check(self) -> None:
        if sorted(set(self.widths)) != list(self.widths):
            raise ConfigError(f"widths={self.widths} must be distinct and increasing (the trend is read from "
                              "neighbouring widths)")
        if self.lm_d % self.lm_heads:
            raise ConfigError(f"lm_d={self.lm_d} must be divisible by lm_heads={self.lm_heads}")


PAPER = Params(profile="paper")  # widths 128 to 2048 around Git Re-Basin's 512; 4-layer d=128 GPT-2s (one GPU)


class YourModels(Study):
    """Your own models: the notebook trains them with plain PyTorch and calls `report`."""

    prefix, notebook = "00", "00_your_models"
    question = "Does weight matching remove the barrier between independently initialised models of your own?"
    claim = ("Git Re-Basin (Ainsworth et al. 2023): weight matching lowers the loss barrier between independently "
             "initialised MLPs to near zero at large width (MNIST, 3 x 512)")
    in_notebook = True
    capped = {"lm_eval_tokens": 2048, "align_tokens": 1024}
    profiles = {
        "smoke": PAPER.replace(profile="smoke", pairs=2, widths=[16, 32], steps=30, alphas=5, lm_pairs=1, lm_d=16,
                               lm_layers=1, lm_heads=2, lm_context=16, lm_steps=5, lm_batch=4, lm_eval_tokens=512,
                               align_tokens=256),
        # 5 MLP pairs at each of 3 widths 40-w-w-10 and 5 GPT-2 pairs (2 layers, d=64, 600 steps): minutes on a
        # 2-core CPU
        "quick": PAPER.replace(profile="quick", widths=[32, 128, 512], steps=2000, lm_d=64, lm_layers=2, lm_heads=4, lm_steps=600,
                               lm_batch=16, lm_eval_tokens=8192, align_tokens=2048),
        "paper": PAPER,
    }

    def params(self, params: dict | None = None) -> Params:
        p = super().params(params)  # a capped run: the notebook's own loops make cap_steps updates, stored apart
        return p if p.cap_steps is None else p.replace(steps=min(p.steps, p.cap_steps),
                                                       lm_steps=min(p.lm_steps, p.cap_steps),
                                                       store_dir=p.store_dir or str(Path("runs") / "capped" / "00"))

    def compute(self, p: Params, ctx) -> dict:
        raise ConfigError("notebook 00 trains your models with your own code: run notebooks/00_your_models.ipynb "
                          "(it calls settings() first and report() last)")

    def figures(self, p: Params, data: dict):
        c, w = data["paths"], max(p.widths)
        yield "mlp_loss_vs_alpha", *_figure(c[(c.model == "MLP") & (c.width == w)],
                                            f"MLPs 40-{w}-{w}-10 on MNIST-1D (the widest)", p.definition)
        yield "mlp_barrier_vs_width", *_width_figure(data["barriers"], p.definition)
        yield "gpt2_loss_vs_alpha", *_figure(c[c.model == "GPT-2"], f"GPT-2 checkpoints (d={p.lm_d}, {p.lm_layers} "
                                             "layers) on Shakespeare characters", p.definition)

    def csvs(self, p: Params, data: dict) -> dict:
        return {"barriers": data["barriers"], "paths": data["paths"]}

    def findings(self, p: Params, data: dict) -> Summary:
        return describe(p, data)

    def setting(self, p: Params) -> str:
        return (f"MLPs 40-w-w-10 at w = {', '.join(map(str, p.widths))}, {p.pairs} pairs each; GPT-2 d = {p.lm_d}, "
                f"{p.lm_pairs} pairs")


STUDY = YourModels()
PROFILES = STUDY.profiles


def settings(params: dict | None = None) -> Params:
    """The profile's settings with the notebook's parameters and overrides, checked before any data is loaded; the
    folders resolved (figures_dir, store_dir, cache_dir as absolute paths); torch's CPU threads set (`threads`)."""
    p = STUDY.params(params)
    fig, store, cache = folders(p)
    set_threads(p.threads)  # torch's CPU threads for the notebook's own loops too (1 by default)
    return p.replace(figures_dir=str(fig), store_dir=str(store), cache_dir=str(cache))


def mnist1d(p: Params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST-1D (generated offline): x_train [4000, 40], y_train [4000], x_test [1000, 40], y_test [1000]."""
    d = load_vectors(VectorDataConfig(), p.cache_dir)
    return d["train"]["x"], d["train"]["y"], d["test"]["x"], d["test"]["y"]


def shakespeare_chars(p: Params) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Character-level Shakespeare (shipped offline): train and test token streams (1-D int64) and the vocabulary
    size."""
    c = load_corpus("shakespeare", level="char", cache_dir=str(p.cache_dir))
    return c.train, c.test, len(c.vocab)


def checkpoint_folder(p: Params, seed: int) -> Path:
    """Where the GPT-2 checkpoint of `seed` is saved (under the run store, keyed by the settings that shape it), so
    a rerun reloads it instead of training it again."""
    keys = ("lm_d", "lm_layers", "lm_heads", "lm_context", "lm_steps", "lm_batch", "lm_lr")
    h = hashlib.sha256(json.dumps({k: getattr(p, k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12]
    return Path(p.store_dir) / "your_models" / h / f"gpt2-seed{seed}"


def planted_permutation(model: torch.nn.Module, sample: torch.Tensor, seed: int = 0) -> dict:
    """The precondition: a copy of `model` with its hidden units randomly permuted (its automatic spec) is aligned
    back by weight matching. Returns {"exact": every weight equal to the model's, "max_weight_diff", "alignment"}."""
    import copy

    from ..align import apply_permutation, random_permutation
    from ..align.auto import auto_spec
    from ..analysis.align_models import align_models

    ms = auto_spec(model, sample)
    sd = model.state_dict()
    perms = random_permutation(ms.spec, torch.Generator().manual_seed(seed))
    other = copy.deepcopy(model)
    other.load_state_dict(ms.unstacked(apply_permutation(ms.stacked(sd), ms.spec, perms), sd))
    al = align_models(model, other, sample)
    diff = max(float((al.model.state_dict()[n].double() - t.double()).abs().max()) for n, t in sd.items())
    return {"exact": diff == 0.0, "max_weight_diff": diff, "alignment": al}


def _figure(curves: pd.DataFrame, title: str, definition: str):
    test = curves[curves.split == "test"]
    fig, data = curves_with_band(test, "kind", (UNALIGNED, WEIGHT), ("loss", "error"),
                                 {"loss": "test loss (nats)", "error": "test error (fraction)"})
    fig.suptitle(f"{title} — band: ± 1 s.e. over pairs; barrier `{definition}` in the summary", fontsize=10)
    fig.tight_layout()
    return fig, data


def _width_figure(barriers: pd.DataFrame, definition: str):
    """The MLPs' test barriers against width, unaligned and after weight matching: every pair and the mean."""
    b = barriers[(barriers.model == "MLP") & (barriers.split == "test") & (barriers.definition == definition)]
    fig, data = points_and_means(b, "width", "instability", "kind", (UNALIGNED, WEIGHT), "metric", {
        "loss": "test-loss barrier (% of the endpoints' mean)", "error": "test-error barrier (percentage points)"},
        "hidden units per layer (MLP 40-w-w-10)", log_base=2, unit="pair")
    fig.suptitle(f"Git Re-Basin's variable: the barrier against width (MNIST-1D; barrier `{definition}`)",
                 fontsize=10)
    fig.tight_layout()
    return fig, data


def _instabilities(paths: list, metric: str, definition: str) -> np.ndarray:
    def one(r):
        b = r.barriers
        return float(b[(b.split == "test") & (b.metric == metric) & (b.definition == definition)].instability.iloc[0])
    return np.array([one(r) for r in paths])


def report(p: Params, mlp: dict, planted, lm_before: list, lm_after: list, lm_alignments: list):
    """Figures, tables and the summary of the notebook's paths (lists of PathResult, one per pair) and alignments
    (lists of Alignment). mlp: {width: {"before": [...], "after": [...], "aligned": [...], "accuracy": [test
    accuracy of each model]}} for every width of p.widths; planted: planted_permutation's result (the
    precondition). Returns the StudyResult. ConfigError when a width of p.widths has no entry."""
    missing = [w for w in p.widths if w not in mlp]
    if missing:
        raise ConfigError(f"report(mlp=...) has no paths for width(s) {missing} of widths={p.widths}: run the "
                          "notebook's MLP cells for every width")
    parts = [("MLP", w, mlp[w]["before"], mlp[w]["after"]) for w in p.widths]
    parts.append(("GPT-2", p.lm_d, lm_before, lm_after))

    def table(attr: str) -> pd.DataFrame:
        return pd.concat([getattr(r, attr).assign(pair=i, kind=kind, model=model, width=width, setting=f"{model} " + (
                          f"40-{width}-{width}-10" if model == "MLP" else f"d={width}"))
                          for model, width, before, after in parts
                          for kind, runs in ((UNALIGNED, before), (WEIGHT, after)) for i, r in enumerate(runs)],
                         ignore_index=True)
    alignments = [a for w in p.widths for a in mlp[w]["aligned"]] + list(lm_alignments)
    data = {"barriers": table("barriers"), "paths": table("curve"), "parts": parts, "planted": planted,
            "endpoint_acc": {w: list(mlp[w]["accuracy"]) for w in p.widths},
            "spec_change": max(a.check.max_diff for a in alignments)}
    cost = None if p.cap_steps is None else costs.own_loops(STUDY, p, loops(p))
    return STUDY.publish(p, Path(p.figures_dir), data, cost)


def mlp_model(width: int) -> torch.nn.Sequential:
    """The notebook's MLP, 40-width-width-10 with ReLUs (the cost projection times the same module)."""
    return torch.nn.Sequential(torch.nn.Linear(40, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, 10))


def loops(p: Params) -> list[dict]:
    """The notebook's own training loops at the full profile's sizes, each timed for a few updates here: ledger
    entries (lmc_core.capped) for a capped run's projection."""
    import transformers

    full, out = STUDY.profiles[p.profile], []
    gpt = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=65, n_positions=p.lm_context, n_embd=p.lm_d,
                                                               n_layer=p.lm_layers, n_head=p.lm_heads))
    todo = [(f"MLP w={w}", mlp_model(w), torch.randn(p.batch_size, 40), 2 * full.pairs, full.steps, 0, 0)
            for w in full.widths]
    todo.append(("GPT-2", gpt, torch.randint(0, 65, (p.lm_batch, p.lm_context)), 2 * full.lm_pairs, full.lm_steps,
                 p.lm_layers, p.lm_d))
    for name, model, x, copies, steps, layers, d in todo:
        out.append(costs.time_updates(name, model, x, copies * steps, p.cap_steps, layers, d))
    return out


def model_findings(model: str, before: list, after: list, d: str, metrics=("loss", "error")) -> list:
    """The barriers of one model kind before and after weight matching (each metric), the paired reduction (Git
    Re-Basin's claim: lower) and the share of the unaligned barrier that remains."""
    out = [judge_paths(paths, split="test", metric=metric, definition=d)
           for metric in metrics for paths in (before, after)]
    out = [replace(f, question=f"{model}, {kind}: {f.question}") for f, kind in
           zip(out, (UNALIGNED, f"after {WEIGHT}") * len(metrics))]
    un, wm = _instabilities(before, "loss", d), _instabilities(after, "loss", d)
    out.append(F.paired(wm - un, question=f"{model}: weight matching changes the test-loss barrier", metric="after "
                        "minus before, per pair, in points of the barrier's % of the endpoints' mean", unit="points",
                        expected=F.LOWER, digits=1))
    out.append(F.estimate(100 * wm / un, question=f"{model}: share of the unaligned test-loss barrier that remains "
                          "after weight matching", metric="per pair", unit="%", digits=0))
    return out


def width_trend(p: Params, data: dict) -> tuple[list, F.Finding]:
    """Git Re-Basin's variable: the aligned test-loss barrier (`chord`, a convex path 0) of each width against the next
    narrower one (independent pairs, exact permutation test, claimed lower) and the trend over these comparisons."""
    by_width = {w: _instabilities(after, "loss", "chord") for m, w, _, after in data["parts"] if m == "MLP"}
    comparisons = [F.arms(by_width[w], by_width[v], question=f"MLP: the test-loss barrier after weight matching, "
                          f"width {w} against {v}", metric=f"barrier `chord` in % of the endpoints' mean, 0 on a "
                          f"convex path (chord ≤ {CONVEX_TOL:g})", unit="points", names=(f"w={w}", f"w={v}"),
                          expected=F.LOWER, unit_name="pair", digits=1, convex_tol=CONVEX_TOL)
                   for v, w in zip(p.widths, p.widths[1:])]
    trend = F.trend(comparisons, question="MLP: the test-loss barrier after weight matching falls as the width grows "
                    f"(widths {', '.join(map(str, p.widths))})", claimed=F.LOWER)
    return comparisons, trend


def widest_line(p: Params, barriers: pd.DataFrame) -> str:
    """The widest MLPs after weight matching in the metrics' own units on both splits, beside their training fit."""
    w, b = max(p.widths), barriers[(barriers.model == "MLP") & (barriers.definition == p.definition)]
    mean = b[(b.width == w) & (b.kind == WEIGHT)].groupby(["split", "metric"])[["barrier", "endpoint_mean"]].mean()
    return (f"- The widest MLPs (w = {w}) after weight matching, mean over pairs: loss barrier "
            f"{mean.barrier['test', 'loss']:.3f} nats on test and {mean.barrier['train', 'loss']:.3f} on train, "
            f"error barrier {100 * mean.barrier['test', 'error']:.2f} points on test and "
            f"{100 * mean.barrier['train', 'error']:.2f} on train; their endpoints' training loss is "
            f"{mean.endpoint_mean['train', 'loss']:.4f} nats against {mean.endpoint_mean['test', 'loss']:.3f} on test "
            "(they fit their training set far better than the test set). Whether this is Git Re-Basin's \"near zero\" "
            "is read here, not decided: the trend above says only that the barrier falls with width.")


def describe(p: Params, data: dict) -> Summary:
    """The findings (findings layer) from this run's numbers."""
    acc = {w: np.asarray(a, dtype=float) for w, a in data["endpoint_acc"].items()}
    planted = data["planted"]
    body = [f"- Precondition: weight matching recovers a planted permutation of a trained MLP "
            f"{'exactly' if planted['exact'] else 'NOT exactly (largest weight difference %.1e)' % planted['max_weight_diff']}"
            f"; every spec check passed (largest output change under a random permutation {data['spec_change']:.1e}).",
            "- The MLPs' test accuracy, mean (min) per width: " + "; ".join(
                f"w={w}: {100 * a.mean():.1f} % ({100 * a.min():.1f} %)" for w, a in acc.items()) + ".", ""]
    mlp = [model_findings(f"MLP w={w}", before, after, p.definition, metrics=("loss",) if w != max(p.widths) else
                          ("loss", "error")) for m, w, before, after in data["parts"] if m == "MLP"]
    comparisons, trend = width_trend(p, data)
    (_, _, lb, la), = [part for part in data["parts"] if part[0] == "GPT-2"]
    body += [f for fs in mlp for f in fs] + comparisons + [trend, widest_line(p, data["barriers"]), ""]
    body += model_findings("GPT-2", lb, la, p.definition)
    n_lm = len(lb)
    setting = (f"Profile `{p.profile}`: {p.pairs} pairs of independently initialised MLPs 40-w-w-10 at each width w = "
               f"{', '.join(map(str, p.widths))} (MNIST-1D, {p.steps} SGD steps each, trained by plain PyTorch code) "
               f"and {n_lm} pair{'s' * (n_lm != 1)} of GPT-2 checkpoints (d={p.lm_d}, {p.lm_layers} "
               f"layer{'s' * (p.lm_layers != 1)}, {p.lm_steps} AdamW steps each, saved and reloaded from local "
               f"folders); barrier `{p.definition}` on the test split, {p.alphas} α points; every pair is its own pair "
               "of initialisations (the independent unit). Git Re-Basin's MLPs have 3 hidden layers on MNIST; these "
               "have 2 on MNIST-1D.")
    widest = max(p.widths)
    return Summary(setting, body, trend, {"mlp_test_accuracy": {str(w): float(a.mean()) for w, a in acc.items()},
                                          "widest": widest, "planted_recovered": bool(planted["exact"])})
