"""Notebook 00: your own models. Two kinds of models trained by plain PyTorch / Hugging Face code (not lmc_core's
trainer) — MLPs on MNIST-1D and GPT-2-style character LMs saved as local checkpoints — and the barrier between
independently initialised pairs before and after weight matching (Git Re-Basin, Ainsworth et al. 2023), with
lmc_core.linear_path, lmc_core.align_models and lmc_core.load_hf.

The notebook holds the user's code (the models, the training loops, the calls); this module gives it its
settings per profile, the data as plain tensors, where the checkpoints go, and turns the paths into figures and
the summary (`report`). The claim tested is Git Re-Basin's: independently initialised MLPs are separated by a
loss barrier that weight matching removes (most of it, at this width). Its precondition, shown first: matching
recovers a planted permutation of a trained model exactly.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..analysis import barrier as B
from ..analysis.path_result import judge_paths
from ..analysis.verdict import interval
from ..config import ConfigError
from ..data import load_corpus
from ..data.vectors import VectorDataConfig, load_vectors
from .common import (StudyResult, check_alphas, check_positive, check_threads, out_dirs, resolve_params,
                     set_threads)

PREFIX = "00"
STUDY_DEFAULTS = dict(pairs=4, width=512, steps=3000, lr=0.05, batch_size=128, alphas=25, definition=B.DEFAULT,
                      lm_pairs=2, lm_d=128, lm_layers=4, lm_heads=4, lm_context=64, lm_steps=2000, lm_batch=32,
                      lm_lr=1e-3, lm_eval_tokens=16384, align_tokens=4096)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "pairs": 2, "width": 32, "steps": 30, "alphas": 5, "lm_pairs": 1, "lm_d": 16,
              "lm_layers": 1, "lm_heads": 2, "lm_context": 16, "lm_steps": 5, "lm_batch": 4, "lm_eval_tokens": 512,
              "align_tokens": 256},
    # 4 MLP pairs 40-128-128-10 and 2 GPT-2 pairs (2 layers, d=64, 600 steps): minutes on a 2-core CPU
    "quick": {**STUDY_DEFAULTS, "width": 128, "steps": 2000, "lm_d": 64, "lm_layers": 2, "lm_heads": 4,
              "lm_steps": 600, "lm_batch": 16, "lm_eval_tokens": 8192, "align_tokens": 2048},
    "paper": dict(STUDY_DEFAULTS),  # Git Re-Basin's MLP width 512; 4-layer d=128 GPT-2s (one GPU)
}


def check_params(p: dict) -> None:
    """Every check that needs no training."""
    check_positive(p, "pairs", "width", "steps", "batch_size", "lm_pairs", "lm_d", "lm_layers", "lm_heads",
                   "lm_context", "lm_steps", "lm_batch", "lm_eval_tokens", "align_tokens")
    check_alphas(p)
    for name in ("lr", "lm_lr"):
        if not isinstance(p[name], (int, float)) or not p[name] > 0:
            raise ConfigError(f"{name}={p[name]!r} must be a positive number")
    if p["lm_d"] % p["lm_heads"]:
        raise ConfigError(f"lm_d={p['lm_d']} must be divisible by lm_heads={p['lm_heads']}")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")


def settings(params: dict | None = None) -> dict:
    """The profile's settings with the notebook's parameters and overrides, checked (before any data is loaded);
    folders resolved; torch's CPU threads set (`threads`, 1 by default)."""
    p = resolve_params(PROFILES, params)
    check_threads(p)
    check_params(p)
    fig_dir, store_dir, cache_dir = out_dirs(p)
    set_threads(p["threads"])  # torch's CPU threads for the notebook's own loops too (1 by default, see common)
    return {**p, "figures_dir": fig_dir, "store_dir": store_dir, "cache_dir": cache_dir}


def mnist1d(p: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST-1D (generated offline): x_train [4000, 40], y_train [4000], x_test [1000, 40], y_test [1000]."""
    d = load_vectors(VectorDataConfig(), p["cache_dir"])
    return d["train"]["x"], d["train"]["y"], d["test"]["x"], d["test"]["y"]


def shakespeare_chars(p: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Character-level Shakespeare (shipped offline): train and test token streams (1-D int64) and the vocabulary
    size."""
    c = load_corpus("shakespeare", level="char", cache_dir=str(p["cache_dir"]))
    return c.train, c.test, len(c.vocab)


def checkpoint_folder(p: dict, seed: int) -> Path:
    """Where the GPT-2 checkpoint of `seed` is saved (under the run store, keyed by the settings that shape it), so
    a rerun reloads it instead of training it again."""
    keys = ("lm_d", "lm_layers", "lm_heads", "lm_context", "lm_steps", "lm_batch", "lm_lr")
    h = hashlib.sha256(json.dumps({k: p[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:12]
    return Path(p["store_dir"]) / "your_models" / h / f"gpt2-seed{seed}"


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


def _curves(paths: list, kind: str) -> pd.DataFrame:
    return pd.concat([r.curve.assign(pair=i, kind=kind) for i, r in enumerate(paths)], ignore_index=True)


def _barriers(paths: list, kind: str, model: str) -> pd.DataFrame:
    return pd.concat([r.barriers.assign(pair=i, kind=kind, model=model) for i, r in enumerate(paths)],
                     ignore_index=True)


def _figure(curves: pd.DataFrame, title: str, metrics: tuple[str, ...], definition: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.4), squeeze=False)
    test = curves[curves.split == "test"]
    rows = []
    for ax, metric in zip(axes[0], metrics):
        for kind, color in (("unaligned", "C3"), ("weight matching", "C0")):
            g = test[test.kind == kind].groupby("alpha")[metric]
            m, se = g.mean(), g.sem().fillna(0.0)
            ax.plot(m.index, m.values, "-o", ms=2.5, color=color, label=f"{kind} (mean of {test.pair.nunique()} pairs)")
            ax.fill_between(m.index, m - se, m + se, color=color, alpha=0.2)
            rows += [{"metric": metric, "kind": kind, "alpha": a, "mean": v, "se": s}
                     for a, v, s in zip(m.index, m.values, se.values)]
        ax.set_xlabel(r"interpolation weight $\alpha$ (0 = model A, 1 = model B)")
        ax.set_ylabel({"loss": "test loss (nats)", "error": "test error (fraction)"}[metric])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title} — band: ± 1 s.e. over pairs; barrier `{definition}` in the summary", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def _delta(before: list, after: list, metric: str, definition: str):
    """Per-pair reduction of the test barrier by weight matching, with its interval over pairs."""
    def inst(r):
        b = r.barriers
        return float(b[(b.split == "test") & (b.metric == metric) & (b.definition == definition)].instability.iloc[0])
    return interval([inst(x) - inst(y) for x, y in zip(before, after)])


def report(p: dict, mlp_before: list, mlp_after: list, mlp_alignments: list, planted, lm_before: list,
           lm_after: list, lm_alignments: list, endpoint_acc: list) -> StudyResult:
    """Figures, tables and the summary of the notebook's paths (lists of PathResult, one per pair) and alignments
    (lists of Alignment); planted: planted_permutation's result (the precondition); endpoint_acc: the MLPs' test
    accuracies."""
    d = p["definition"]
    res = StudyResult(params={k: (str(v) if isinstance(v, Path) else v) for k, v in p.items()})
    curves = pd.concat([_curves(mlp_before, "unaligned").assign(model="MLP"),
                        _curves(mlp_after, "weight matching").assign(model="MLP"),
                        _curves(lm_before, "unaligned").assign(model="GPT-2"),
                        _curves(lm_after, "weight matching").assign(model="GPT-2")], ignore_index=True)
    barriers = pd.concat([_barriers(mlp_before, "unaligned", "MLP"), _barriers(mlp_after, "weight matching", "MLP"),
                          _barriers(lm_before, "unaligned", "GPT-2"), _barriers(lm_after, "weight matching", "GPT-2")],
                         ignore_index=True)
    fig, data = _figure(curves[curves.model == "MLP"], f"MLPs 40-{p['width']}-{p['width']}-10 on MNIST-1D",
                        ("loss", "error"), d)
    res.add_figure(f"{PREFIX}_mlp_loss_vs_alpha", fig, data)
    fig, data = _figure(curves[curves.model == "GPT-2"], f"GPT-2 checkpoints (d={p['lm_d']}, {p['lm_layers']} layers)"
                        " on Shakespeare characters", ("loss", "error"), d)
    res.add_figure(f"{PREFIX}_gpt2_loss_vs_alpha", fig, data)
    res.tables.update(barriers=barriers, paths=curves)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.add_csv(f"{PREFIX}_paths", curves)
    res.publish(p["figures_dir"], PREFIX, describe(p, mlp_before, mlp_after, mlp_alignments, planted, lm_before,
                                                   lm_after, lm_alignments, endpoint_acc))
    return res


def describe(p, mlp_before, mlp_after, mlp_alignments, planted, lm_before, lm_after, lm_alignments, endpoint_acc
             ) -> tuple[str, dict]:
    """The findings in words from this run's numbers, and the numbers as data."""
    d = p["definition"]
    acc = np.asarray(endpoint_acc, dtype=float)
    lines = [f"**Profile `{p['profile']}`: {len(mlp_before)} pairs of independently initialised MLPs 40-{p['width']}-"
             f"{p['width']}-10 (MNIST-1D, {p['steps']} SGD steps each, trained by plain PyTorch code) and "
             f"{len(lm_before)} pair(s) of GPT-2 checkpoints (d={p['lm_d']}, {p['lm_layers']} layers, {p['lm_steps']} "
             f"AdamW steps each, saved and reloaded from local folders); barrier `{d}` on the test split, "
             f"{p['alphas']} α points.**", "",
             f"- Precondition: weight matching recovers a planted permutation of a trained MLP "
             f"{'exactly' if planted['exact'] else 'NOT exactly (largest weight difference %.1e)' % planted['max_weight_diff']}"
             f"; every spec check "
             f"passed (largest output change under a random permutation "
             f"{max(a.check.max_diff for a in [*mlp_alignments, *lm_alignments]):.1e}).",
             f"- The MLPs reach {100 * acc.mean():.1f} % test accuracy on average (min {100 * acc.min():.1f} %).", ""]
    numbers: dict = {"mlp_test_accuracy": float(acc.mean()), "planted_recovered": bool(planted["exact"])}
    verdicts = {}
    for model, before, after in (("MLP", mlp_before, mlp_after), ("GPT-2", lm_before, lm_after)):
        for metric in ("loss", "error"):
            for kind, paths in (("unaligned", before), ("after weight matching", after)):
                v = judge_paths(paths, split="test", metric=metric, definition=d)
                verdicts[(model, metric, kind)] = v
                lines.append(f"- {model}, {kind}: {v.text()}")
                numbers[f"{model}_{metric}_{kind}".replace(" ", "_").replace("-", "")] = v.estimate
        dl = _delta(before, after, "loss", d)
        lines.append(f"- {model}: weight matching lowers the test-loss barrier by {dl.text(2, '% of endpoints mean')}.")
        numbers[f"{model}_loss_reduction".replace("-", "")] = dl.estimate
    mlp_red = _delta(mlp_before, mlp_after, "loss", d)
    un = verdicts[("MLP", "loss", "unaligned")].estimate
    left = verdicts[("MLP", "loss", "after weight matching")].estimate
    share = f" After matching, {100 * left / un:.0f} % of the unaligned loss barrier remains." if un > 0 else ""
    lines += ["", "Git Re-Basin's claim for MLPs — weight matching lowers the loss barrier between independent "
              "initialisations — " + ("holds in this run (the interval of the per-pair reduction lies above 0)."
                                      if mlp_red.bounded and mlp_red.low > 0 else "is inconclusive in this run (the "
                                      "interval of the per-pair reduction reaches 0, or there are too few pairs).")
              + share]
    numbers["headline"] = (f"MLP test-loss barrier {verdicts[('MLP', 'loss', 'unaligned')].estimate:.1f} → "
                           f"{verdicts[('MLP', 'loss', 'after weight matching')].estimate:.1f} % after weight "
                           "matching")
    return "\n".join(lines), numbers
