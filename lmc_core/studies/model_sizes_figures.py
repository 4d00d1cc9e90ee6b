"""Verdicts, figures and the summary of notebook 07 (lmc_core.studies.model_sizes).

Criteria: the study's own is the loss barrier (its "Err" is the cross-entropy) against 2 % of the endpoints'
mean; Frankle et al.'s is the error barrier in absolute points (2 points); both are judged per size by the verdict
layer (lmc_core.analysis.verdict): a 95 % bootstrap interval over pairs, "unstable" only when the whole interval
is at or above the threshold, "stable" only when it is below, "inconclusive" otherwise, and no barrier read off a
convex path. Ladder pairs each have their own initialisation (independent units); fine-tuned pairs all start
from one pretrained model, so their interval is conditional on it.

Preconditions: a size's endpoints must have learned more than token frequencies (training loss below the
unigram entropy of the training text) before any claim is made about it; the over-parameterisation pattern
(eval loss flat, train loss bumpy) needs the model to overfit, shown by the eval − train gap at the endpoints.
The eval plays are other plays than the training text, so some gap is distribution shift: a size *overfits* when
the interval of its gap lies above OVERFIT_PCT % of its train loss (the study's TinyGPT and ToyGPT, which it did
not call over-parameterised, had gaps of about a tenth of their train loss; CompactGPT and MinGPT many times it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.metrics import LABELS, UNITS, METRIC_SCALE
from ..analysis.verdict import FRANKLE, interval, judge
from ..publish.plotting import COLORS, plt, threshold_line

SPLIT_COLOR = {"train": COLORS[0], "eval": COLORS[3]}  # the study's figures: train blue, eval red
STUDY_CRITERION = "the study's criterion: loss barrier relative to the endpoints' mean"
OVERFIT_PCT = 25.0  # an eval - train gap above this % of the train loss at the endpoints is overfitting
NAMES = {"tinygpt": "TinyGPT", "toygpt": "ToyGPT", "compactgpt": "CompactGPT", "mingpt": "MinGPT", "gpt2": "GPT-2"}


LEARNED_MARGIN = 0.05  # the held-out loss must lie this fraction below the unigram entropy (precondition)

def name(size: str) -> str:
    """Display name of a size (the fine-tuned model's label as it is)."""
    return NAMES.get(size, size)


def size_summary(barriers: pd.DataFrame, curves: pd.DataFrame, sizes: pd.DataFrame, definition: str) -> pd.DataFrame:
    """One row per size (and the fine-tuned model): verdicts with intervals for the loss and error barriers on
    train and eval, the endpoints' losses, the eval − train gap, and the preconditions."""
    rows = []
    for s in sizes.itertuples():
        b = barriers[barriers["size"] == s.size]
        fine = s.start == "pretrained"
        units = ["pretrained"] * int(s.pairs) if fine else None
        unit_name = "pretrained model" if fine else "pair"
        row = {"size": s.size, "params": s.params, "start": s.start, "pairs": s.pairs, "definition": definition}
        verdicts = {}
        for split in ("train", "eval"):
            for metric in ("loss", "error"):
                sel = b[(b.split == split) & (b.metric == metric)].sort_values("pair")
                val = sel[sel.definition == definition].instability.to_numpy(float)
                chord = sel[sel.definition == "chord"].instability.to_numpy(float)
                unit = UNITS[METRIC_SCALE[metric]]
                crit = STUDY_CRITERION if metric == "loss" else FRANKLE
                v = judge(val, chord, f"{name(s.size)}, {split} {LABELS[metric]}, barrier `{definition}`", unit,
                          units, unit_name, criterion=crit)
                verdicts[(split, metric)] = v
                key = f"{split}_{metric}"
                row.update({f"{key}_instability": v.interval.estimate, f"{key}_low": v.interval.low,
                            f"{key}_high": v.interval.high, f"{key}_verdict": v.status,
                            f"{key}_convex_pairs": v.convex_pairs, f"{key}_unit": unit,
                            f"{key}_barrier": float(sel[sel.definition == definition].barrier.mean())})
        ends = endpoint_losses(curves[curves["size"] == s.size])
        gap = interval(ends.eval_loss - ends.train_loss, units, unit_name)
        row.update({"train_loss_endpoints": float(ends.train_loss.mean()),
                    "eval_loss_endpoints": float(ends.eval_loss.mean()),
                    "gap": gap.estimate, "gap_low": gap.low, "gap_high": gap.high,
                    "unigram_entropy": s.unigram_entropy,
                    # learned more than token frequencies: the training loss below the unigram entropy, and the
                    # held-out loss at least LEARNED_MARGIN below it (CompactGPT's quick eval loss sat at it)
                    "trained": bool(ends.train_max.max() < s.unigram_entropy
                                    and ends.eval_max.max() < (1 - LEARNED_MARGIN) * s.unigram_entropy),
                    "overfits": bool(gap.bounded and gap.low > OVERFIT_PCT / 100 * ends.train_loss.mean())})
        diff = interval(_paired(b, definition, "train") - _paired(b, definition, "eval"), units, unit_name)
        row.update({"train_minus_eval_loss_instability": diff.estimate, "train_minus_eval_low": diff.low,
                    "train_minus_eval_high": diff.high})
        row["eval_flat_train_bumpy"] = bool(row["trained"] and verdicts[("train", "loss")].status == "unstable"
                                            and verdicts[("eval", "loss")].status in ("stable", "convex"))
        row.update({f"{k[0]}_{k[1]}_text": v.text() for k, v in verdicts.items()})  # the verdicts in words
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(b: pd.DataFrame, definition: str, split: str) -> np.ndarray:
    sel = b[(b.split == split) & (b.metric == "loss") & (b.definition == definition)].sort_values("pair")
    return sel.instability.to_numpy(float)


def endpoint_losses(c: pd.DataFrame) -> pd.DataFrame:
    """Per pair: mean train and eval loss of its two endpoints, and the larger endpoint train loss."""
    ends = c[c.alpha.isin([0.0, 1.0])]
    g = ends.pivot_table(index=["pair", "alpha"], columns="split", values="loss").reset_index()
    out = g.groupby("pair").agg(train_loss=("train", "mean"), eval_loss=("eval", "mean"), train_max=("train", "max"),
                                eval_max=("eval", "max"))
    return out.reset_index()


def figures(curves, barriers, summary, sizes, p: dict, tok: str) -> dict:
    """{name: (figure, plotted numbers)} of the study's figures."""
    return {"barrier_vs_params": barrier_vs_params(summary, p),
            "loss_vs_alpha": loss_vs_alpha(curves, sizes, p),
            "train_eval_gap": gap_figure(summary, p)}


def barrier_vs_params(summary: pd.DataFrame, p: dict):
    """Loss and error instability vs parameter count (log axis), train and eval, with the intervals over pairs; the
    fine-tuned model as a star at its own parameter count."""
    d = p["definition"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = []
    for ax, metric in zip(axes, ("loss", "error")):
        for j, split in enumerate(("train", "eval")):
            key = f"{split}_{metric}"
            for fine, marker in ((False, "o"), (True, "*")):
                g = summary[(summary.start == "pretrained") == fine].sort_values("params")
                if g.empty:
                    continue
                x = g.params.to_numpy(float) * (1.04 if j else 1 / 1.04)  # train and eval side by side
                y = g[f"{key}_instability"].to_numpy(float)
                err = np.abs(np.vstack([y - g[f"{key}_low"].to_numpy(float), g[f"{key}_high"].to_numpy(float) - y]))
                ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt=marker, ms=12 if fine else 5, capsize=3,
                            color=SPLIT_COLOR[split], label=f"{split}{', fine-tuned' if fine else ''}")
                rows += [{"size": r["size"], "start": r.start, "params": r.params, "split": split, "metric": metric,
                          "instability": r[f"{key}_instability"], "low": r[f"{key}_low"], "high": r[f"{key}_high"],
                          "verdict": r[f"{key}_verdict"], "unit": r[f"{key}_unit"]} for _, r in g.iterrows()]
        for i, (_, r) in enumerate(summary[summary.start != "pretrained"].sort_values("params").iterrows()):
            top = np.nanmax([r[f"{s}_{metric}_high"] if np.isfinite(r[f"{s}_{metric}_high"]) else
                             r[f"{s}_{metric}_instability"] for s in ("train", "eval")])
            ax.annotate(name(r["size"]), (r.params, top), xytext=(8 if i % 2 else -8, 6), textcoords="offset points",
                        fontsize=7, ha="left" if i % 2 else "right")
        threshold_line(ax, unit="%" if metric == "loss" else "points")
        ax.set_xscale("log")
        ax.set_xlabel("parameters per model (log scale)")
        ax.set_ylabel(f"{LABELS[metric]} instability ({UNITS[METRIC_SCALE[metric]]})")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=ax.get_ylim()[1] * 1.12)
        ax.legend(fontsize=7, loc="best", framealpha=0.9)
    fig.suptitle(f"Instability at initialisation across model sizes, barrier `{d}` ({p['profile']} profile; "
                 "95 % intervals over pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def loss_vs_alpha(curves: pd.DataFrame, sizes: pd.DataFrame, p: dict):
    """One column per size (and the fine-tuned model): loss (top) and error (bottom) vs alpha, train blue and eval
    red as in the study's figures; thin lines are pairs, thick lines their mean."""
    order = list(sizes["size"])
    fig, axes = plt.subplots(2, len(order), figsize=(3.3 * len(order), 5.6), squeeze=False)
    rows = []
    for col, size in enumerate(order):
        c = curves[curves["size"] == size]
        for row, metric in enumerate(("loss", "error")):
            ax = axes[row, col]
            for split in ("train", "eval"):
                g = c[c.split == split]
                for _, pair in g.groupby("pair"):
                    ax.plot(pair.alpha, pair[metric], color=SPLIT_COLOR[split], lw=0.7, alpha=0.45)
                m = g.groupby("alpha")[metric].mean()
                ax.plot(m.index, m.values, color=SPLIT_COLOR[split], lw=2, label=split)
                rows += [{"size": size, "split": split, "metric": metric, "alpha": a, "mean_over_pairs": v}
                         for a, v in m.items()]
            ax.set_xlabel("α")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(LABELS[metric])
            if row == 0:
                ax.set_title(name(size), fontsize=9)
                ax.legend(fontsize=7)
    fig.suptitle(f"Loss and error along the linear path between the two copies of each pair ({p['profile']} "
                 "profile; thin: pairs, thick: mean)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def gap_figure(summary: pd.DataFrame, p: dict):
    """The endpoints' train and eval loss per size, the eval − train gap with its interval, and the unigram
    entropy (a model at that loss knows only token frequencies): the precondition of the over-parameterisation
    finding."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(summary))
    labels = [name(s) for s in summary["size"]]
    axes[0].bar(x - 0.2, summary.train_loss_endpoints, 0.4, color=SPLIT_COLOR["train"], label="train")
    axes[0].bar(x + 0.2, summary.eval_loss_endpoints, 0.4, color=SPLIT_COLOR["eval"], label="eval")
    axes[0].hlines(summary.unigram_entropy, x - 0.42, x + 0.42, colors="k", lw=2,
                   label="unigram entropy of the training text")
    axes[0].set_ylabel("cross-entropy at the endpoints (nats/token)")
    gap = summary.gap.to_numpy(float)
    err = np.abs(np.vstack([gap - summary.gap_low.to_numpy(float), summary.gap_high.to_numpy(float) - gap]))
    axes[1].bar(x, gap, 0.6, yerr=np.nan_to_num(err), capsize=4, color="gray")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_ylabel("eval − train loss (nats/token)")
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=7, rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.3 * float(np.nanmax(np.r_[summary.eval_loss_endpoints, summary.unigram_entropy])))
    axes[0].legend(fontsize=7, loc="upper left", ncol=3, framealpha=0.9)
    fig.suptitle(f"Do the models overfit? Endpoint losses and the train/eval gap ({p['profile']} profile; 95 % "
                 "intervals over pairs)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    data = summary[["size", "params", "train_loss_endpoints", "eval_loss_endpoints", "gap", "gap_low", "gap_high",
                    "unigram_entropy", "trained", "overfits"]].copy()
    return fig, data


def training_table(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Training loss per logged step, mean over copies, for every run."""
    out = []
    for run, h in histories.items():
        if h is None or h.empty:
            continue
        m = h.groupby("step").loss.mean().reset_index()
        m.insert(0, "run", run)
        out.append(m)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["run", "step", "loss"])


def training_figure(training: pd.DataFrame, sizes: pd.DataFrame, profile: str):
    """Training loss vs step of each size (mean over copies), each with the unigram entropy of its training text
    (dashed): the precondition that the endpoints learned more than token frequencies."""
    runs = list(dict.fromkeys(training.run))
    fig, axes = plt.subplots(1, len(runs), figsize=(3.3 * max(len(runs), 1), 3.4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        g = training[training.run == run]
        ax.plot(g.step, g.loss, color=COLORS[0], lw=1)
        s = sizes[sizes["size"] == run]
        if not s.empty:
            ax.axhline(float(s.unigram_entropy.iloc[0]), color="k", ls="--", lw=1, label="unigram entropy")
            ax.legend(fontsize=7)
        ax.set_title(name(run), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("training loss (nats/token, mean over copies)")
    fig.suptitle(f"Training of each size ({profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, training


# ------------------------------------------------------------------------- the summary


def _fmt(r, key: str) -> str:
    est, lo, hi = r[f"{key}_instability"], r[f"{key}_low"], r[f"{key}_high"]
    if not np.isfinite(est):
        return "not finite"
    unit = "%" if key.endswith("loss") else " pts"
    iv = f" [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else ""
    return f"{est:.1f}{iv}{unit} ({r[f'{key}_verdict']})"


def _list(xs: list[str]) -> str:
    return ", ".join(xs) if xs else "none"


def describe(summary: pd.DataFrame, sizes: pd.DataFrame, p: dict, tok: str, ft: str) -> tuple[str, dict]:
    """The findings in words (Markdown), from this run's numbers, and the numbers as data."""
    d = p["definition"]
    ladder = summary[summary.start != "pretrained"]
    fine = summary[summary.start == "pretrained"]
    tok_words = {"bpe": f"a byte-level BPE of {p['bpe_vocab']:,} entries trained on the training plays",
                 "gpt2": "GPT-2's own BPE"}[tok]
    lines = [f"**Profile `{p['profile']}`: {len(ladder)} sizes, {p['pairs']} pairs per size (each pair from its own "
             f"initialisation, the two copies differing only in data order); TinyGPT at character level, the others "
             f"with {tok_words}; barrier `{d}`; 95 % bootstrap intervals over pairs.**", "",
             "| model | parameters (study) | steps (study) | train / eval loss at the endpoints (unigram entropy) "
             "| eval − train gap "
             "| train-loss instability | eval-loss instability | eval-error barrier |",
             "|---|---|---|---|---|---|---|---|"]
    srow = sizes.set_index("size")
    for _, r in summary.iterrows():
        s = srow.loc[r["size"]]
        study_p = f"{s.study_params / 1e6:.2f}M" if np.isfinite(s.study_params) else "–"
        gap = f"{r.gap:.2f} [{r.gap_low:.2f}, {r.gap_high:.2f}]" if np.isfinite(r.gap_low) else f"{r.gap:.2f}"
        lines.append(f"| {name(r['size'])} | {r.params / 1e6:.3f}M ({study_p}) | {s.steps} ({s.study_steps:g}) | "
                     f"{r.train_loss_endpoints:.2f} / {r.eval_loss_endpoints:.2f} ({r.unigram_entropy:.2f}) | {gap} | "
                     + " | ".join(_fmt(r, k) + ("" if r.trained else " — not judged: precondition not met")
                                  for k in ("train_loss", "eval_loss", "eval_error")) + " |")
    lines.append("")
    untrained = [name(s) for s in ladder[~ladder.trained]["size"]]
    judged = ladder[ladder.trained]
    numbers = {"definition": d, "tokenizer": tok, "finetuned": ft, "sizes": []}
    for _, r in summary.iterrows():
        numbers["sizes"].append({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
    if untrained:
        lines.append(f"- Precondition not met for {_list(untrained)}: the endpoints' training loss is not below the "
                     f"unigram entropy of the training text, or their held-out loss is not {100 * LEARNED_MARGIN:g} % below "
                     "it (they learned little more than token frequencies), so no claim is made about them.")
    holds = {}
    for split in ("train", "eval"):
        st = {name(r["size"]): r[f"{split}_loss_verdict"] for _, r in judged.iterrows()}
        unstable = [k for k, v in st.items() if v == "unstable"]
        other = [f"{k} ({v})" for k, v in st.items() if v != "unstable"]
        every = bool(len(judged)) and len(unstable) == len(ladder)
        holds[split] = every
        lines.append(f"- Instability at initialisation on the **{split}** loss ({STUDY_CRITERION}): "
                     + ("holds at every size." if every else
                        f"unstable at {_list(unstable)}" + (f"; not at {_list(other)}" if other else "")
                        + (f"; not judged at {_list(untrained)} (precondition not met)" if untrained else "") + "."))
    err = {name(r["size"]): r["eval_error_verdict"] for _, r in judged.iterrows()}
    if err:
        lines.append("- Frankle et al.'s criterion (eval error barrier ≥ 2 points): "
                     + "; ".join(f"{k} {v}" for k, v in err.items()) + ".")
    pattern = [name(r["size"]) for _, r in judged.iterrows() if r.eval_flat_train_bumpy]
    overfit = [name(r["size"]) for _, r in judged.iterrows() if r.overfits]
    lines.append(f"- Overfitting (the interval of the eval − train loss gap at the endpoints above {OVERFIT_PCT:g} % of "
                 f"the train loss; the eval plays are other plays, so a smaller gap can be distribution shift): "
                 f"{_list(overfit)}.")
    if pattern:
        lines.append(f"- The study's over-parameterisation pattern (train loss unstable, eval loss stable or flat) "
                     f"**appears** at {_list(pattern)}.")
    else:
        lines.append("- The study's over-parameterisation pattern (train loss unstable, eval loss stable or flat) "
                     "**does not appear** at any size in this run"
                     + ("." if overfit else " — and no size overfits here, the pattern's precondition: "
                        "this run cannot test it."))
    for _, r in fine.iterrows():
        lines.append(f"- Fine-tuned from {r['size']} for {int(srow.loc[r['size']].steps)} steps "
                     f"({int(r.pairs)} pairs from the one pretrained model, so the intervals are conditional on it): "
                     f"train loss {_fmt(r, 'train_loss')}, eval loss {_fmt(r, 'eval_loss')}, eval error "
                     f"{_fmt(r, 'eval_error')}.")
    lines += ["", "Under the other barrier definitions and for perplexity, see `07_barriers.csv`; every per-size "
              "verdict sentence is in `07_sizes.csv`."]
    numbers.update({"instability_every_size_train": holds["train"], "instability_every_size_eval": holds["eval"],
                    "eval_flat_train_bumpy": pattern, "overfits": overfit, "untrained": untrained})
    ft_word = ""
    if len(fine):
        fs = fine.iloc[0]["train_loss_verdict"]
        ft_word = f"; fine-tuned: train loss {fs}"
    numbers["headline"] = (f"instability at initialisation (train loss): "
                           + ("every size" if holds["train"] else f"{len([v for v in judged.train_loss_verdict if v == 'unstable'])} of {len(ladder)} sizes")
                           + f"; eval-flat/train-bumpy: {_list(pattern) if pattern else 'not seen'}{ft_word}")
    return "\n".join(lines), numbers
