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
from ..align.spec import flatten
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

    # 10 pairs: with 5, the width comparison 128 vs 32 gave p = 0.012 on one machine's build and 0.068 on another's
    pairs: int = param(10, "pairs of independently initialised MLPs per width", UNITS)
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
    llama_pairs: int = param(5, "pairs of Llama-style models (Hugging Face objects, GPT-2's sizes and training)",
                             UNITS)
    lora_rank: int = param(8, "rank of the two LoRA fine-tunes (peft) of the first GPT-2 checkpoint", WIDTH)
    lora_steps: int = param(300, "AdamW steps of each LoRA fine-tune", STEPS)
    lora_lr: float = param(3e-3, "AdamW learning rate of the LoRA fine-tunes", RATE)

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
    claim = ("Git Re-Basin (Ainsworth et al. 2023): after weight matching the loss barrier between independently "
             "initialised MLPs falls as the width grows, to near zero at large width (MNIST, 3 x 512); tested here: "
             "that it falls with width (whether it reaches zero is read, not judged)")
    in_notebook = True
    capped = {"lm_eval_tokens": 2048, "align_tokens": 1024}
    profiles = {
        "smoke": PAPER.replace(profile="smoke", pairs=2, widths=[16, 32], steps=30, alphas=5, lm_pairs=1, lm_d=16,
                               lm_layers=1, lm_heads=2, lm_context=16, lm_steps=5, lm_batch=4, lm_eval_tokens=512,
                               align_tokens=256, llama_pairs=1, lora_rank=2, lora_steps=5),
        # 10 MLP pairs at each of 3 widths 40-w-w-10 and 5 GPT-2 pairs (2 layers, d=64, 600 steps): minutes on a
        # 2-core CPU
        "quick": PAPER.replace(profile="quick", widths=[32, 128, 512], steps=2000, lm_d=64, lm_layers=2, lm_heads=4, lm_steps=600,
                               lm_batch=16, lm_eval_tokens=8192, align_tokens=2048, lora_steps=200),
        "paper": PAPER,
    }

    def params(self, params: dict | None = None) -> Params:
        p = super().params(params)  # a capped run: the notebook's own loops make cap_steps updates, stored apart
        return p if p.cap_steps is None else p.replace(steps=min(p.steps, p.cap_steps),
                                                       lm_steps=min(p.lm_steps, p.cap_steps),
                                                       lora_steps=min(p.lora_steps, p.cap_steps),
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
        if (c.model == "Llama").any():
            yield "llama_loss_vs_alpha", *_figure(c[c.model == "Llama"], f"Llama-style models as Hugging Face objects "
                                                  f"(d={p.lm_d}, {p.lm_layers} layers, grouped-query attention)",
                                                  p.definition)
            moved = data["lora_moved"] > 0  # else the path after matching is the merged path: not drawn twice
            yield "lora_loss_vs_alpha", *_figure(c[c.model == "LoRA"], f"Two LoRA fine-tunes (peft, r={p.lora_rank}) "
                                                 "of the first GPT-2: merged weights, factors" + (
                                                     ", merged after matching" if moved else
                                                     " (matching moved no unit)"), p.definition,
                                                 LORA_KINDS if moved else LORA_KINDS[:2], LORA_SLOTS)

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


def _figure(curves: pd.DataFrame, title: str, definition: str, kinds: tuple = (UNALIGNED, WEIGHT), slots=None):
    test = curves[curves.split == "test"]
    fig, data = curves_with_band(test, "kind", kinds, ("loss", "error"),
                                 {"loss": "test loss (nats)", "error": "test error (fraction)"}, slots)
    band = "band: ± 1 s.e. over pairs" if test.pair.nunique() > 1 else "one pair, no band"
    fig.suptitle(f"{title} — {band}; barrier `{definition}` in the summary", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the legend sits below the panels
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


LORA_SLOTS = (0, 2, 1)  # colours: merged as every unaligned path, merged after matching as weight matching
LORA_KINDS = ("merged", "factors", "aligned")  # the paths between LoRA fine-tunes (linear_path's lora=; merged after
# align_models permuted B's base and adapters)


def report(p: Params, mlp: dict, planted, lm_before: list, lm_after: list, lm_alignments: list,
           transformers: dict | None = None):
    """Figures, tables and the summary of the notebook's paths (lists of PathResult, one per pair) and alignments
    (lists of Alignment). mlp: {width: {"before": [...], "after": [...], "aligned": [...], "accuracy": [test
    accuracy of each model]}} for every width of p.widths; planted: planted_permutation's result (the
    precondition); transformers: None, or the Hugging Face objects' part {"llama_before", "llama_after",
    "llama_aligned": lists per pair, "lora_merged", "lora_factors", "lora_aligned": the LoRA pair's PathResults,
    "lora_alignment": its Alignment}. Returns the
    StudyResult. ConfigError when a width of p.widths has no entry."""
    missing = [w for w in p.widths if w not in mlp]
    if missing:
        raise ConfigError(f"report(mlp=...) has no paths for width(s) {missing} of widths={p.widths}: run the "
                          "notebook's MLP cells for every width")
    parts = [("MLP", w, mlp[w]["before"], mlp[w]["after"]) for w in p.widths]
    parts.append(("GPT-2", p.lm_d, lm_before, lm_after))
    hf = transformers or {}
    if hf:
        parts.append(("Llama", p.lm_d, hf["llama_before"], hf["llama_after"]))
    runs = [(model, width, kind, rs) for model, width, before, after in parts
            for kind, rs in ((UNALIGNED, before), (WEIGHT, after))]
    runs += [("LoRA", p.lm_d, kind, [hf[f"lora_{kind}"]]) for kind in LORA_KINDS if hf]

    def table(attr: str) -> pd.DataFrame:
        return pd.concat([getattr(r, attr).assign(pair=i, kind=kind, model=model, width=width, setting=f"{model} " + (
                          f"40-{width}-{width}-10" if model == "MLP" else f"d={width}"))
                          for model, width, kind, rs in runs for i, r in enumerate(rs)], ignore_index=True)
    alignments = [a for w in p.widths for a in mlp[w]["aligned"]] + list(lm_alignments) + list(
        hf.get("llama_aligned", []))
    data = {"barriers": table("barriers"), "paths": table("curve"), "parts": parts, "planted": planted,
            "endpoint_acc": {w: list(mlp[w]["accuracy"]) for w in p.widths},
            "spec_change": max(a.check.max_diff for a in alignments),
            "lora_moved": moved_share(hf["lora_alignment"]) if hf else None}
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
    tokens = torch.randint(0, 65, (p.lm_batch, p.lm_context))
    todo.append(("GPT-2", gpt, tokens, 2 * full.lm_pairs, full.lm_steps, p.lm_layers, p.lm_d))
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=65, hidden_size=p.lm_d, intermediate_size=4 * p.lm_d, num_hidden_layers=p.lm_layers,
        num_attention_heads=p.lm_heads, num_key_value_heads=max(1, p.lm_heads // 2), max_position_embeddings=p.lm_context))
    todo.append(("Llama", llama, tokens, 2 * full.llama_pairs, full.lm_steps, p.lm_layers, p.lm_d))
    todo.append(("LoRA fine-tunes (timed as full updates)", gpt, tokens, 2, full.lora_steps, p.lm_layers, p.lm_d))
    for name, model, x, copies, steps, layers, d in todo:
        out.append(costs.time_updates(name, model, x, copies * steps, p.cap_steps, layers, d))
    return out


def moved_share(al) -> float:
    """The share of an alignment's permuted units (every group, heads' units counted) that it moved."""
    flat = flatten(al.spec.spec, al.perms)
    return sum(int((v != np.arange(len(v))).sum()) for v in flat.values()) / sum(len(v) for v in flat.values())


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
    pairs = min(len(v) for v in by_width.values()) if by_width else 0  # what each comparison rests on, for the README
    return comparisons, replace(trend, unit_name=f"comparison (each of {pairs} vs {pairs} independent pairs)")


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


def transformer_lines(p: Params, data: dict) -> list:
    """The Hugging Face objects' part: the Llama pairs' findings before and after matching (their spec from their
    module structure) and the LoRA pair's barrier on its two paths (one pair: read, not judged)."""
    llama = [part for part in data["parts"] if part[0] == "Llama"]
    if not llama:
        return []
    (_, _, before, after), = llama
    b = data["barriers"]
    lora = b[(b.model == "LoRA") & (b.split == "test") & (b.metric == "loss") & (b.definition == p.definition)]
    if lora.empty:
        return ["", *model_findings("Llama", before, after, p.definition)]
    merged, factors, aligned = (lora[lora.kind == k].iloc[0] for k in LORA_KINDS)

    def read(r) -> str:  # a convex path has no barrier to read (its value is half the endpoints' difference)
        return "no barrier: it is convex (at or below its chord)" if r.convex else \
            f"a barrier `{p.definition}` of {r.barrier:.4f} nats ({r.instability:.2f} % of the endpoints' mean)"
    return ["", *model_findings("Llama", before, after, p.definition),
            f"- LoRA (one pair of fine-tunes of the first GPT-2, r = {p.lora_rank}, {p.lora_steps} steps, each its "
            f"own adapter initialisation and batch order): the test-loss path between their merged weights has "
            f"{read(merged)}; with A and B "
            f"interpolated each, it has {read(factors)}; after weight matching of the peft models (B's base and "
            f"adapter factors permuted together; it moved {100 * data['lora_moved']:.1f} % of the units), the merged "
            f"path has {read(aligned)} (one pair: read, not judged)."]


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
    body += transformer_lines(p, data)
    n_lm = len(lb)
    llama = [part[2] for part in data["parts"] if part[0] == "Llama"]
    hf_setting = "" if not llama else (
        f"; {len(llama[0])} pairs of Llama-style models (Hugging Face objects of the GPT-2s' width, depth and "
        "training, their SwiGLU MLPs 1.5 times the GPT-2 MLPs' parameters; "
        f"grouped-query attention with half as many key-value heads, aligned as objects: whole key-value groups "
        "with their query heads, value and output units within heads, SwiGLU units and the residual stream; query "
        "and key units inside rotary heads stay in place) and "
        "one pair of LoRA "
        "fine-tunes of the first GPT-2")
    setting = (f"Profile `{p.profile}`: {p.pairs} pairs of independently initialised MLPs 40-w-w-10 at each width w = "
               f"{', '.join(map(str, p.widths))} (MNIST-1D, {p.steps} SGD steps each, trained by plain PyTorch code) "
               f"and {n_lm} pair{'s' * (n_lm != 1)} of GPT-2 checkpoints (d={p.lm_d}, {p.lm_layers} "
               f"layer{'s' * (p.lm_layers != 1)}, {p.lm_steps} AdamW steps each, saved and reloaded from local "
               f"folders){hf_setting}; barrier `{p.definition}` on the test split, {p.alphas} α points; every pair "
               "is its own pair "
               "of initialisations (the independent unit). Git Re-Basin's MLPs have 3 hidden layers on MNIST; these "
               "have 2 on MNIST-1D.")
    widest = max(p.widths)
    return Summary(setting, body, trend, {"mlp_test_accuracy": {str(w): float(a.mean()) for w, a in acc.items()},
                                          "widest": widest, "planted_recovered": bool(planted["exact"])})
