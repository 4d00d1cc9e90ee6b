"""Figures and the summary of notebook 03 (lmc_core.studies.finetuning)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.metrics import LABELS, fmt_spread, mean_se, threshold_words
from ..publish.plotting import COLORS, plt, threshold_line

HEADLINE_METRIC = {"lm": "ppl", "encoder": "loss"}



def metric_label(model: str, metric: str) -> str:
    """Axis words for a metric: the LM's are per token; the encoder classifies passages."""
    if model == "lm":
        return LABELS.get(metric, metric)
    return {"loss": "cross-entropy (nats/passage)", "error": "classification error"}.get(metric, metric)

def paths_figure(curves: pd.DataFrame, model: str, profile: str):
    """Loss (and error) vs alpha per comparison, mean over pairs (one colour per comparison)."""
    c = curves[curves.model == model]
    comps = list(dict.fromkeys(c.comparison))
    metrics = ("loss", "error")
    splits = list(dict.fromkeys(c.split))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(7.5, 3.2 * len(metrics)), squeeze=False, sharex=True)
    rows = []
    for ax, metric in zip(axes[:, 0], metrics):
        for j, comp in enumerate(comps):
            for s_i, split in enumerate(splits):
                g = c[(c.comparison == comp) & (c.split == split)]
                if g.empty:
                    continue
                m = g.groupby("alpha")[metric].mean()
                label = comp + ("" if split == "test" else f" ({split}, its own classifier)")
                ax.plot(m.index, m.values, "-o" if s_i == 0 else "--s", ms=3, color=COLORS[j % len(COLORS)],
                        label=label)
                rows += [{"comparison": comp, "split": split, "metric": metric, "alpha": a, "mean_over_pairs": v}
                         for a, v in m.items()]
        ax.set_ylabel(f"test {metric_label(model, metric)}")
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel(r"interpolation weight $\alpha$ (0 = endpoint A, 1 = endpoint B)")
    axes[0][0].legend(fontsize=7)
    what = ("character-level pre-norm LM, held-out plays" if model == "lm" else
            "MiniLM on Shakespeare passages (dashed: the second task of the task pair)")
    fig.suptitle(f"Loss along the path, {what} ({profile} profile; mean over pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def barrier_figure(table: pd.DataFrame, definition: str, profile: str):
    """Instability per comparison (mean ± s.e. over pairs, dots: pairs) against the 2 threshold: the LM by
    its test perplexity, the encoder by its test loss (both relative) and error (points)."""
    panels = [("lm", "ppl"), ("encoder", "loss"), ("encoder", "error")]
    panels = [(m, k) for m, k in panels if ((table.model == m) & (table.metric == k)).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    rows = []
    for ax, (model, metric) in zip(axes[0], panels):
        d = table[(table.model == model) & (table.metric == metric) & (table.definition == definition)
                  & (table.split == "test")]
        comps = list(dict.fromkeys(d.comparison))
        for i, comp in enumerate(comps):
            g = d[d.comparison == comp]
            m, se, n = mean_se(g.instability)
            ax.barh(i, m, xerr=0 if np.isnan(se) else se, color=COLORS[i % len(COLORS)], alpha=0.75, capsize=3)
            ax.plot(g.instability, [i] * len(g), "k.", ms=4)
            rows.append({"model": model, "metric": metric, "comparison": comp, "instability_mean": m,
                         "instability_se": se, "pairs": n, "unit": g.unit.iloc[0]})
        unit = d.unit.iloc[0]
        ax.axvline(B.STABILITY_THRESHOLD_PCT, color="k", ls="--", lw=1, label=threshold_words(unit))
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(comps)), comps, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"instability, test {metric_label(model, metric)} ({unit})", fontsize=8)
        ax.set_title("our pretrained LM" if model == "lm" else f"MiniLM, {metric}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Barrier '{definition}' between fine-tuned endpoints ({profile} profile; bars: mean ± s.e. over pairs, "
                 "dots: pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def distance_figure(table: pd.DataFrame, definition: str, profile: str):
    """L2 distance between the endpoints (over the compared parameters) against their barrier."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for ax, model, metric in ((axes[0], "lm", "ppl"), (axes[1], "encoder", "loss")):
        d = table[(table.model == model) & (table.metric == metric) & (table.definition == definition)]
        d = d[d.split == "test"]
        for i, comp in enumerate(dict.fromkeys(d.comparison)):
            g = d[d.comparison == comp]
            ax.plot(g.l2, g.instability, "o", color=COLORS[i % len(COLORS)], label=comp)
            rows += [{"model": model, "comparison": comp, "pair": r.pair, "l2": r.l2, "cosine": r.cosine,
                      "instability": r.instability, "unit": r.unit} for r in g.itertuples()]
        if not d.empty:
            threshold_line(ax, unit="%")
            ax.set_xscale("log")
            ax.set_ylabel(f"instability, test {metric_label(model, metric)} ({d.unit.iloc[0]})", fontsize=8)
        ax.set_xlabel("L2 distance between the endpoints (tuned parameters; log axis)")
        ax.set_title("our pretrained LM" if model == "lm" else "MiniLM", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"Distance vs barrier '{definition}' ({profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def forgetting_figure(f: pd.DataFrame, profile: str):
    """Left: test examples newly forgotten at each alpha step (right before, wrong after), all pairs.
    Right: confidence during training (mean probability of the true label) of the examples forgotten
    somewhere along the path vs the others."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    counts = f.dropna(subset=["first_forgotten_alpha"]).groupby("first_forgotten_alpha").size()
    axes[0].bar(counts.index, counts.values, width=0.8 * (counts.index[1] - counts.index[0]) if len(counts) > 1 else 0.05,
                color=COLORS[3])
    axes[0].set_xlabel(r"$\alpha$ at which an example is first forgotten")
    axes[0].set_ylabel("test examples (all pairs)")
    axes[0].grid(alpha=0.3)
    rows = [{"first_forgotten_alpha": a, "examples": int(n)} for a, n in counts.items()]
    if "confidence" in f:
        bins = np.linspace(0, 1, 21)
        for flag, col, label in ((True, COLORS[3], "forgotten along the path"), (False, COLORS[0], "never forgotten")):
            v = f[f.forgotten == flag].confidence
            if v.empty:
                continue
            axes[1].hist(v, bins=bins, alpha=0.6, color=col, density=True, label=f"{label} (n = {len(v)})")
        axes[1].set_xlabel("confidence during training (mean probability of the true label)")
        axes[1].set_ylabel("density")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    fig.suptitle(f"Which test passages are forgotten along the path (MiniLM, full fine-tuning; {profile} profile)",
                 fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def describe(table: pd.DataFrame, forgetting: pd.DataFrame | None, p: dict) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    d = p["definition"]
    numbers: dict = {"definition": d, "comparisons": []}
    lines = [f"**Profile `{p['profile']}`; barrier `{d}`, mean ± standard error over pairs; instability relative (% of "
             "the endpoints' mean) for loss and perplexity, in percentage points for the error.**", ""]

    def stat(model, comp, metric, split=("test",)):
        g = table[(table.model == model) & (table.comparison == comp) & (table.metric == metric)
                  & (table.definition == d) & table.split.isin(split)]
        m, se, n = mean_se(g.instability)
        return m, se, n, (g.unit.iloc[0] if len(g) else ""), (g.l2.mean() if len(g) else float("nan"))

    lm = table[table.model == "lm"]
    if len(lm):
        lines.append(f"Our pretrained LM ({p['pretrain_steps']} pretraining steps on the training plays, "
                     f"{p['finetune_steps']} fine-tuning steps on held-out plays; test perplexity on other unseen plays):")
        for comp in dict.fromkeys(lm.comparison):
            m, se, n, unit, l2 = stat("lm", comp, "ppl")
            word = "below" if m < B.STABILITY_THRESHOLD_PCT else "above"
            lines.append(f"- {comp}: {fmt_spread(m, se)} {unit} ({n} pairs; {word} 2 %; L2 distance {l2:.3g})")
            numbers["comparisons"].append({"model": "lm", "comparison": comp, "metric": "ppl", "mean": m, "se": se,
                                           "pairs": n})
        pre, sc = stat("lm", "pretrained, SGD noise", "ppl"), stat("lm", "from scratch, SGD noise", "ppl")
        ok_pre, ok_sc = pre[0] < B.STABILITY_THRESHOLD_PCT, sc[0] >= B.STABILITY_THRESHOLD_PCT
        verdict = ("as the GPT-2 Shakespeare study and Qin et al. found: fine-tuned copies of a pretrained model stay "
                   "linearly connected, copies trained from scratch do not" if ok_pre and ok_sc else
                   "which does not reproduce the expected contrast in this run" + (
                       "" if ok_pre else ": the pretrained pairs are not below 2 %") + (
                       "" if ok_sc else ": the scratch pairs are not above 2 % (too short a run for a barrier to form)"))
        lines.append(f"\nPretrained pairs {fmt_spread(pre[0], pre[1])} % vs scratch pairs {fmt_spread(sc[0], sc[1])} % "
                     f"of the endpoints' mean perplexity — {verdict}.")
        numbers["pretrained_vs_scratch"] = {"pretrained": pre[0], "pretrained_se": pre[1], "scratch": sc[0],
                                            "scratch_se": sc[1], "expected_contrast": bool(ok_pre and ok_sc)}
    enc = table[table.model == "encoder"]
    if len(enc):
        lines.append("")
        lines.append(f"MiniLM (its first {p['enc_layers']} layers, {p['enc_steps']} fine-tuning steps on the "
                     f"{p['enc_task'].replace('_', '/')} task, passages of ≤ {p['max_length']} WordPiece tokens; test loss "
                     f"and error on {p['enc_eval']} passages of unseen plays; the task pair adds "
                     f"{p['enc_task2'].replace('_', '/')}):")
        for comp in dict.fromkeys(enc.comparison):
            ml, sel, n, ul, l2 = stat("encoder", comp, "loss")
            me, see, _, ue, _ = stat("encoder", comp, "error")
            lines.append(f"- {comp}: loss {fmt_spread(ml, sel)} {ul}, error {fmt_spread(me, see)} {ue} ({n} pairs; "
                         f"L2 distance {l2:.3g})")
            numbers["comparisons"].append({"model": "encoder", "comparison": comp, "metric": "loss", "mean": ml,
                                           "se": sel, "error_mean": me, "error_se": see, "pairs": n})
    if forgetting is not None and len(forgetting):
        f = forgetting
        lines.append("")
        frac = f.forgotten.mean()
        line = (f"Forgetting (full fine-tuning pairs): {100 * frac:.1f} % of the test passages are right at one point "
                f"and wrong at the next somewhere along the path")
        if "confidence" in f and f.forgotten.any() and (~f.forgotten).any():
            cf, cn = f[f.forgotten].confidence.mean(), f[~f.forgotten].confidence.mean()
            vf, vn = f[f.forgotten].variability.mean(), f[~f.forgotten].variability.mean()
            from scipy.stats import mannwhitneyu

            pval = float(mannwhitneyu(f[f.forgotten].confidence, f[~f.forgotten].confidence,
                                      alternative="less").pvalue)
            line += (f"; their mean confidence during training was {cf:.2f} (variability {vf:.3f}) against {cn:.2f} "
                     f"({vn:.3f}) for the others (one-sided Mann-Whitney U test that forgotten passages were less "
                     f"confident: p = {pval:.2g}) — "
                     + ("the passages the models were least sure of during training are the ones the path forgets, as "
                        "Qin et al. found with dataset cartography." if pval < 0.05 else
                        "no clear link between forgetting along the path and confidence during training in this run."))
            numbers["forgetting"] = {"fraction": frac, "confidence_forgotten": cf, "confidence_others": cn,
                                     "variability_forgotten": vf, "variability_others": vn, "p_value": pval}
        lines.append(line)
    pv = numbers.get("pretrained_vs_scratch")
    numbers["headline"] = (f"pretrained pairs {fmt_spread(pv['pretrained'], pv['pretrained_se'])} % vs scratch pairs "
                           f"{fmt_spread(pv['scratch'], pv['scratch_se'])} % (test perplexity, `{d}`)"
                           if pv else "no LM comparison in this run")
    return "\n".join(lines), numbers
