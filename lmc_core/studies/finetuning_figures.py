"""Figures and the summary of notebook 03 (lmc_core.studies.finetuning)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.metrics import LABELS, threshold_words
from ..analysis.verdict import FRANKLE, compare, difference, interval, judge
from ..publish.plotting import COLORS, plt

DEMO = "pipeline demonstration: endpoints not converged"


def metric_label(model: str, metric: str) -> str:
    """Axis words for a metric: the LM's are per token; the encoder classifies passages."""
    if model == "lm":
        return LABELS.get(metric, metric)
    return {"loss": "cross-entropy (nats per passage)", "error": "classification error"}.get(metric, metric)


def demo_note(endpoints: pd.DataFrame | None) -> str:
    """'' when every encoder run reached its plateau, else the label and what was measured."""
    if endpoints is None or endpoints.empty or bool(endpoints.converged.all()):
        return ""
    main = endpoints.iloc[0]
    how = ("not learned: test loss within 10 % of a uniform guess's" if not main.get("learned", True) else
           f"still falling by {100 * main.loss_drop_last_40pct:.0f} % over the last 40 % of its steps")
    stalled = [] if "learned" not in endpoints or "run" not in endpoints else \
        [f"{r.run} (test error {100 * r.test_error:.0f} %, loss {r.test_loss:.3f})"
         for r in endpoints.iloc[1:].itertuples() if not r.learned]
    return (f"{DEMO} (full fine-tuning: test error {100 * main.test_error:.0f} %, test loss {main.test_loss:.3f} vs a "
            f"uniform guess's {main.chance_loss:.3f} nats; {how}"
            + (f"; at chance, not learned: {', '.join(stalled)}" if stalled else "") + ")")


def paths_figure(curves: pd.DataFrame, model: str, profile: str, endpoints: pd.DataFrame | None = None):
    """Loss and error vs alpha per comparison, mean over pairs (one colour per comparison)."""
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
    note = demo_note(endpoints) if model == "encoder" else ""
    what = ("character-level pre-norm LM, windows from every held-out play" if model == "lm" else
            "MiniLM on Shakespeare passages" + (" (dashed: the second task of the task pair)"
                                                 if (c.split != "test").any() else ""))
    fig.suptitle(f"Loss along the path, {what} ({profile} profile; mean over pairs)"
                 + (f"\n{note}" if note else ""), fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def barrier_figure(table: pd.DataFrame, definition: str, profile: str, endpoints: pd.DataFrame | None = None):
    """Instability per comparison against the thresholds: the error in points (Frankle et al.'s criterion) and
    the loss in % of the endpoints' mean, for the LM and the encoder. Bars and error bars: estimate and 95 %
    interval over pairs; dots: pairs (hollow: a convex path, no barrier)."""
    panels = [("lm", "error"), ("lm", "loss"), ("encoder", "error"), ("encoder", "loss")]
    panels = [(m, k) for m, k in panels if ((table.model == m) & (table.metric == k)).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.8), squeeze=False)
    rows = []
    note = demo_note(endpoints)
    for ax, (model, metric) in zip(axes[0], panels):
        d = table[(table.model == model) & (table.metric == metric) & (table.definition == definition)
                  & (table.split == "test")]
        comps = list(dict.fromkeys(d.comparison))
        for i, comp in enumerate(comps):
            g = d[d.comparison == comp]
            iv = interval(g.instability)
            err = [[iv.estimate - iv.low], [iv.high - iv.estimate]] if iv.bounded else None
            flat = bool(g.convex.all())  # every path convex: the value is half the endpoints' gap, not a barrier
            ax.barh(i, iv.estimate, xerr=err, color="none" if flat else COLORS[i % len(COLORS)], alpha=0.6,
                    edgecolor=COLORS[i % len(COLORS)], hatch="//" if flat else None, capsize=3)
            ax.scatter(g.instability, [i] * len(g), s=14, edgecolors="k",
                       facecolors=["none" if c else "k" for c in g.convex])
            rows.append({"model": model, "metric": metric, "comparison": comp, "estimate": iv.estimate,
                         "low": iv.low, "high": iv.high, "pairs": len(g), "convex_pairs": int(g.convex.sum()),
                         "unit": g.unit.iloc[0]})
        unit = d.unit.iloc[0]
        ax.axvline(B.STABILITY_THRESHOLD_PCT, color="k", ls="--", lw=1, label=threshold_words(unit))
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(comps)), comps, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"instability, test {metric_label(model, metric)} ({unit})", fontsize=8)
        title = ("our pretrained LM" if model == "lm" else "MiniLM") + (", Frankle's criterion" if metric == "error" else "")
        ax.set_title(title + ("\n" + DEMO if model == "encoder" and note else ""), fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Barrier `{definition}` between fine-tuned endpoints ({profile} profile; bars: estimate and 95 % "
                 "interval over pairs; dots: pairs, hollow = convex path; hatched bar: every path convex, so the value is half "
                 "the endpoints' gap, not a barrier)", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def distance_figure(table: pd.DataFrame, definition: str, profile: str):
    """RMS distance per compared parameter (comparable across tuning modes and models) against the loss barrier."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for ax, model in zip(axes, ("lm", "encoder")):
        d = table[(table.model == model) & (table.metric == "loss") & (table.definition == definition)
                  & (table.split == "test")]
        for i, comp in enumerate(dict.fromkeys(d.comparison)):
            g = d[d.comparison == comp]
            ax.plot(g.rms, g.instability, "o", color=COLORS[i % len(COLORS)], label=comp)
            rows += [{"model": model, "comparison": comp, "pair": r.pair, "rms": r.rms, "l2": r.l2,
                      "relative_to_travel": r.relative_to_travel, "params_compared": r.params_compared,
                      "instability": r.instability, "unit": r.unit} for r in g.itertuples()]
        if not d.empty:
            ax.axhline(B.STABILITY_THRESHOLD_PCT, color="k", ls="--", lw=1)
            ax.set_xscale("log")
            ax.set_ylabel(f"instability, test {metric_label(model, 'loss')} ({d.unit.iloc[0]})", fontsize=8)
        ax.set_xlabel("RMS distance per compared parameter (log axis)")
        ax.set_title("our pretrained LM" if model == "lm" else "MiniLM (tuned parameters only)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"Distance between the endpoints vs barrier `{definition}` ({profile} profile; RMS per tuned "
                 "parameter — for adapters and LoRA over their own factors, not the change of the weights they adapt)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig, pd.DataFrame(rows)


def forgetting_summary(f: pd.DataFrame) -> pd.DataFrame:
    """Per pair: of the sample's passages right at A, the fraction forgotten inside the path and inside the
    random-direction control of the same length."""
    rows = []
    for pair, g in f.groupby("pair"):
        right = g[g.correct_a]
        rows.append({"pair": pair, "passages_right_at_a": len(right), "forgotten_path": right.forgotten.mean(),
                     "forgotten_random": right.forgotten_random.mean()})
    return pd.DataFrame(rows)


def forgetting_figure(f: pd.DataFrame, profile: str):
    """Left: per pair, the fraction of passages right at A that the path forgets vs the random-direction control.
    Right: their confidence during training (mean probability of the true label), forgotten vs kept."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    s = forgetting_summary(f)
    x = np.arange(len(s))
    axes[0].bar(x - 0.18, 100 * s.forgotten_path, 0.36, color=COLORS[3], label="along the path A → B")
    axes[0].bar(x + 0.18, 100 * s.forgotten_random, 0.36, color=COLORS[7], label="A → A + r, random r, |r| = |B − A|")
    axes[0].set_xticks(x, [f"pair {p}" for p in s.pair])
    axes[0].set_ylabel("passages right at A, wrong inside the path (%)")
    axes[0].legend(fontsize=7)
    axes[0].grid(axis="y", alpha=0.3)
    if "confidence" in f:
        bins = np.linspace(0, 1, 21)
        right = f[f.correct_a]
        for flag, col, label in ((True, COLORS[3], "forgotten along the path"), (False, COLORS[0], "kept")):
            v = right[right.forgotten == flag].confidence
            if len(v):
                axes[1].hist(v, bins=bins, alpha=0.6, color=col, density=True, label=f"{label} (n = {len(v)})")
        axes[1].set_xlabel("confidence during training (mean probability of the true label)")
        axes[1].set_ylabel("density")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    fig.suptitle(f"Forgetting along the path, training passages (MiniLM, full fine-tuning; {profile} profile)",
                 fontsize=10)
    fig.tight_layout()
    return fig, s


def _select(table, model, comp, metric, d):
    return table[(table.model == model) & (table.comparison == comp) & (table.metric == metric)
                 & (table.definition == d) & (table.split == "test")]


def describe(table: pd.DataFrame, forgetting: pd.DataFrame | None, endpoints: pd.DataFrame | None,
             p: dict) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    d = p["definition"]
    numbers: dict = {"definition": d, "comparisons": []}
    lines = [f"**Profile `{p['profile']}`; barrier `{d}`; 95 % bootstrap intervals over pairs; error barriers in "
             "percentage points (Frankle et al.'s 2-point criterion), loss barriers in % of the endpoints' mean.**", ""]
    lm = table[table.model == "lm"]
    if len(lm):
        lines.append(f"Our pretrained LM ({p['pretrain_steps']} pretraining steps on the training plays, "
                     f"{p['finetune_steps']} fine-tuning steps on held-out plays at lr {p['finetune_lr']:g}; the "
                     f"scratch arm at lr {p['scratch_lr']:g}; test windows from every unseen play). The pretrained "
                     "arms share one pretraining run, so their intervals cover SGD noise, not pretraining:")
        for comp in dict.fromkeys(lm.comparison):
            e, lo = _select(table, "lm", comp, "error", d), _select(table, "lm", comp, "loss", d)
            ve = judge(e.instability, e.chord_instability, "error", "percentage points", criterion=FRANKLE)
            vl = judge(lo.instability, lo.chord_instability, "loss", "% of endpoints' mean")
            lines.append(f"- {comp} ({len(e)} pairs): error {ve.interval.text(2, 'points')} — {ve.status}; loss "
                         f"{vl.interval.text(2, '%')} — {vl.status}; RMS distance {lo.rms.mean():.3g} per parameter.")
            numbers["comparisons"].append({"model": "lm", "comparison": comp, "pairs": len(e), "error": ve.status,
                                           "error_estimate": ve.interval.estimate, "error_low": ve.interval.low,
                                           "error_high": ve.interval.high, "loss": vl.status,
                                           "loss_estimate": vl.interval.estimate})
        pre = _select(table, "lm", "pretrained, SGD noise", "loss", d).instability
        sc = _select(table, "lm", "from scratch, SGD noise", "loss", d).instability
        diff = difference(sc, pre)
        words = ("the loss barrier: inconclusive (the difference's interval contains 0)"
                 if diff.bounded and diff.low <= 0 <= diff.high else
                 compare(interval(sc), interval(pre), "scratch pairs", "pretrained pairs", "the loss barrier"))
        ep = {c: _select(table, "lm", c, "loss", d).endpoint_mean.mean()
              for c in ("pretrained, SGD noise", "from scratch, SGD noise")}
        lines.append(f"\nScratch minus pretrained loss instability (a difference of two % values): "
                     f"{diff.text(2, '%')} — {words}. "
                     + ("The GPT-2 Shakespeare study and Qin et al. expect fine-tuned copies of a pretrained model to "
                        "stay connected while copies trained from scratch do not. The arms also differ in how far they "
                        f"trained: endpoints' test loss {ep['from scratch, SGD noise']:.2f} (scratch) vs "
                        f"{ep['pretrained, SGD noise']:.2f} nats (pretrained), so the contrast is confounded with "
                        "endpoint quality."))
        numbers["pretrained_vs_scratch"] = {"difference": diff.estimate, "low": diff.low, "high": diff.high,
                                            "words": words}
    enc = table[table.model == "encoder"]
    if len(enc):
        note = demo_note(endpoints)
        lines += ["", f"MiniLM (its first {p['enc_layers']} layers, {p['enc_steps']} fine-tuning steps on the "
                      f"{p['enc_task'].replace('_', '/')} task; test loss and error on {p['enc_eval']} passages of "
                      + (f"unseen plays; the task pair adds {p['enc_task2'].replace('_', '/')})" if p["enc_controls"] else
                         "unseen plays; no data-halves or two-task runs in this profile)")
                      + (f" — **{note}**: these comparisons show that the pipeline works, not Qin et al.'s effects." if note
                         else ":")]
        for comp in dict.fromkeys(enc.comparison):
            e, lo = _select(table, "encoder", comp, "error", d), _select(table, "encoder", comp, "loss", d)
            ie, il = interval(e.instability), interval(lo.instability)
            lines.append(f"- {comp} ({len(e)} pairs): error {ie.text(2, 'points')}, loss {il.text(2, '%')}, "
                         f"{int(lo.convex.sum())} convex; RMS distance {lo.rms.mean():.3g} per tuned parameter.")
            numbers["comparisons"].append({"model": "encoder", "comparison": comp, "pairs": len(e),
                                           "error_estimate": ie.estimate, "loss_estimate": il.estimate})
        numbers["encoder_converged"] = bool(endpoints.converged.all()) if endpoints is not None else None
    if forgetting is not None and len(forgetting):
        s = forgetting_summary(forgetting)
        gap = interval(s.forgotten_path.to_numpy(float) - s.forgotten_random.to_numpy(float))  # paired by pair
        lines += ["", f"Forgetting ({len(s)} full fine-tuning pairs, {p['enc_train_sample']} *training* passages, where "
                      f"the cartography is measured): of the passages right at endpoint A, "
                      f"{100 * s.forgotten_path.mean():.1f} % turn wrong somewhere inside the path A → B and "
                      f"{100 * s.forgotten_random.mean():.1f} % inside a path of the same length in a random direction "
                      f"(per-pair difference {100 * gap.estimate:.1f} points, 95 % interval "
                      f"[{100 * gap.low:.1f}, {100 * gap.high:.1f}])."]
        numbers["forgetting"] = {"path": float(s.forgotten_path.mean()), "random": float(s.forgotten_random.mean()),
                                 "difference_low": gap.low, "difference_high": gap.high}
        if "confidence" in forgetting:
            from scipy.stats import mannwhitneyu

            per_pair = []
            for pair, g in forgetting[forgetting.correct_a].groupby("pair"):
                a, b = g[g.forgotten].confidence, g[~g.forgotten].confidence
                if len(a) and len(b):
                    per_pair.append((pair, float(a.mean() - b.mean()),
                                     float(mannwhitneyu(a, b, alternative="less").pvalue)))
            if per_pair:
                lines.append("Dataset cartography per pair (mean confidence during training of forgotten minus kept "
                             "passages; one-sided Mann-Whitney p that forgotten ones were less confident): "
                             + "; ".join(f"pair {q}: {dm:+.3f} (p = {pv:.2g})" for q, dm, pv in per_pair)
                             + (" — Qin et al. found the least confident passages forgotten first; "
                                + ("every pair agrees here." if all(pv < 0.05 for *_, pv in per_pair) else
                                   "not every pair shows it here, so it is not established in this run.")))
                numbers["cartography"] = [{"pair": q, "confidence_gap": dm, "p_value": pv} for q, dm, pv in per_pair]
    pv = numbers.get("pretrained_vs_scratch")
    numbers["headline"] = (f"LM loss instability, scratch minus pretrained: {pv['difference']:.2f} "
                           f"[{pv['low']:.2f}, {pv['high']:.2f}] % — {pv['words']}" if pv else
                           "no LM comparison in this run")
    return "\n".join(lines), numbers
