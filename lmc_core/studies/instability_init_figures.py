"""Notebook 01's tables, figures and words (what the run shows, with its intervals and criteria)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import findings as F
from ..analysis.criteria import FRANKLE, REPRODUCED_FACTOR
from ..analysis.eval_noise import noise_words
from ..analysis.metrics import LABELS, judge_barriers, unit_of
from ..publish.plotting import COLORS, plt, points_and_means, threshold_line
from .base import Summary
from .lm_setup import DEFINITION_WORDS, pairs_of
from .reference import PTB_STUDY_PPL_INSTABILITY_PCT

EXTRA_LABELS = {"loss_word": "cross-entropy per word-equivalent (nats)",
                "ppl_word": "perplexity per word-equivalent"}


def label(metric: str) -> str:
    """Axis label of a metric."""
    return EXTRA_LABELS.get(metric, LABELS.get(metric, metric))


def summary_table(barriers: pd.DataFrame, noise: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Per panel, split and metric: the instability's interval over initialisations then pairs, its verdict, the
    barrier in the metric's units (nats for the loss) with its interval, the chord and the convex paths, the
    evaluation noise (median over pairs of the window-bootstrap standard error; error and loss), and for
    perplexities the PTB study's normalisation."""
    rows = []
    d = barriers[barriers.definition == definition]
    for (panel, split, metric), g in d.groupby(["panel", "split", "metric"], sort=False):
        sub = barriers[barriers.panel == panel]
        v = judge_barriers(sub, split, metric, definition, "init", "initialisation")
        raw = _iv(g.barrier, g.init)
        se = noise[(noise.panel == panel) & (noise.split == split) & (noise.metric == metric)]
        row = {"panel": panel, "split": split, "metric": metric, "definition": definition,
               "inits": g.init.nunique(), "pairs": len(g), "instability": v.estimate,
               "instability_low": v.low, "instability_high": v.high, "interval": v.interval, "unit": unit_of(metric),
               "verdict": v.verdict, "barrier": raw.estimate, "barrier_low": raw.low, "barrier_high": raw.high,
               "chord_instability": g.chord_instability.mean(), "convex_pairs": int(g.convex.sum()),
               "eval_se_median": float(se.se.median()) if len(se) else float("nan")}
        if metric in ("ppl", "ppl_word"):
            ptb = _iv(100 * g.barrier / g.max_on_path, g.init)
            row.update(ptb_normalisation=ptb.estimate, ptb_normalisation_low=ptb.low, ptb_normalisation_high=ptb.high)
        rows.append(row)
    return pd.DataFrame(rows)


def _iv(values, units) -> F.Finding:
    return F.estimate(values, units, question="", metric="", unit="", unit_name="initialisation")


def training_figure(history: pd.DataFrame, runs: pd.DataFrame, profile: str):
    """Training loss of every copy (colour: its initialisation) against the step, per panel, with the start of
    the rate's decay to 0 (the endpoints at the bottom of the annealing, not at a loss that has stopped falling)."""
    panels = list(dict.fromkeys(history.panel))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 3.6), squeeze=False)
    rows = []
    for ax, panel in zip(axes[0], panels):
        h = history[(history.panel == panel) & (history.diverged == 0)]
        r = runs[runs.panel == panel].iloc[0]
        for (i, c), g in h.groupby(["init", "copy"]):
            s = g.sort_values("step")
            smooth = s.loss.rolling(max(len(s) // 50, 1), min_periods=1).mean()
            ax.plot(s.step, smooth, color=COLORS[int(i) % len(COLORS)], lw=0.8, alpha=0.8,
                    label=f"init {i}" if c % int(r.copies // r.inits) == 0 else None)
            rows += [{"panel": panel, "init": int(i), "copy": int(c), "step": int(st), "loss_smoothed": float(v)}
                     for st, v in zip(s.step[:: max(len(s) // 200, 1)], smooth[:: max(len(s) // 200, 1)])]
        if "cosine" in r.schedule:
            hold = int(r.schedule.split("to step ")[1].split(",")[0])
            ax.axvline(hold, color="k", ls=":", lw=1, label="rate decays from here to 0")
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (nats/token, running mean)")
        ax.set_title(f"{panel}: {r.copies} copies,\n{r.schedule}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Training loss of every copy, the rate annealed to 0 at the end ({profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def interpolation_figure(curves: pd.DataFrame, profile: str):
    """Loss and error along the linear path for every pair (colour: the initialisation), per panel."""
    panels = list(dict.fromkeys(curves.panel))
    cols = (("train", "loss"), ("test", "loss"), ("test", "error"))
    fig, axes = plt.subplots(len(panels), len(cols), figsize=(4.4 * len(cols), 3.2 * len(panels)), squeeze=False)
    for r, panel in enumerate(panels):
        for c, (split, metric) in enumerate(cols):
            ax = axes[r][c]
            d = curves[(curves.panel == panel) & (curves.split == split)]
            for (i, pair), g in d.groupby(["init", "pair"]):
                g = g.sort_values("alpha")
                ax.plot(g.alpha, g[metric] * (100 if metric == "error" else 1), color=COLORS[int(i) % len(COLORS)],
                        lw=0.8, alpha=0.8)
            ax.set_title(f"{panel}, {split}", fontsize=9)
            ax.set_ylabel("next-token error (%)" if metric == "error" else label(metric))
            ax.grid(alpha=0.3)
            if r == len(panels) - 1:
                ax.set_xlabel(r"interpolation weight $\alpha$")
    for i in sorted(curves.init.unique()):
        axes[0][0].plot([], [], color=COLORS[int(i) % len(COLORS)], label=f"pairs of init {i}")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Linear paths between copies of one initialisation ({profile} profile; every pair, "
                 "evaluation windows spread over every play)", fontsize=10)
    fig.tight_layout()
    return fig, curves[["panel", "init", "pair", "split", "alpha", "loss", "error"]]


def instability_figure(barriers: pd.DataFrame, noise: pd.DataFrame, definition: str, profile: str):
    """Per panel: the error barrier in points (Frankle et al.'s criterion), the loss instability in % and the
    perplexity under the PTB study's normalisation (per word-equivalent for characters) with the study's
    reported values on that scale. Bars: estimate; error bars: the 95 % interval over initialisations (pairs
    averaged within each) from stats.MIN_UNITS of them on, else their range; dots: pairs; grey band: ± the
    evaluation noise (the median over pairs of the window-bootstrap standard error) around the estimate."""
    panels = list(dict.fromkeys(noise.panel)) or list(dict.fromkeys(barriers.panel))  # the runs' order
    fig, axes = plt.subplots(len(panels), 3, figsize=(13, 3.6 * len(panels)), squeeze=False)
    rows = []
    for r, panel in enumerate(panels):
        b = barriers[(barriers.panel == panel) & (barriers.definition == definition)]
        f = noise[noise.panel == panel]
        ppl = "ppl_word" if "ppl_word" in set(b.metric) else "ppl"
        for ax, metric, what in zip(axes[r], ("error", "loss", ppl), ("instability", "instability", "ptb")):
            for j, split in enumerate(("train", "test")):
                g = b[(b.split == split) & (b.metric == metric)]
                vals = 100 * g.barrier / g.max_on_path if what == "ptb" else g.instability
                iv = _iv(vals, g.init)
                x = j
                ax.bar(x, iv.estimate, 0.6, color=COLORS[j], alpha=0.5)
                ax.errorbar(x, iv.estimate, yerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], color="k",
                            capsize=4)
                for i, gi in g.assign(v=vals.to_numpy()).groupby("init"):
                    ax.plot([x + 0.12 * (int(i) - 1)] * len(gi), gi.v, ".", color=COLORS[(int(i) + 2) % len(COLORS)],
                            ms=4)
                fv = f[(f.split == split) & (f.metric == metric)]
                se = float(fv.se.median()) if what != "ptb" and len(fv) else float("nan")
                if se == se:
                    ax.fill_between([x - 0.3, x + 0.3], iv.estimate - se, iv.estimate + se, color="grey", alpha=0.4,
                                    label="± evaluation noise (window bootstrap)" if j == 0 else None)
                if what == "ptb" and (ppl == "ppl_word" or "word" in panel):
                    ax.plot(x, PTB_STUDY_PPL_INSTABILITY_PCT[split], "*", color="crimson", ms=12,
                            label="PTB study (word-level PTB, d = 200, one pair, reported)" if j == 0 else None)
                rows.append({"panel": panel, "metric": metric, "split": split, "scale": what,
                             "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                             "eval_se_median": se, "pairs": len(g), "inits": g.init.nunique()})
            ax.set_xticks([0, 1], ["train", "test"])
            if what == "ptb":
                ax.set_ylabel(f"{label(metric)}\n(max − endpoints' mean) / max, %")
                ax.set_title("the PTB study's normalisation" + (" (word-equivalent)" if ppl == "ppl_word" else ""),
                             fontsize=9)
            else:
                ax.set_ylabel(f"{label(metric)}\ninstability ({unit_of(metric)})")
                threshold_line(ax, unit="points" if metric == "error" else "%")
                ax.set_title(("Frankle et al.'s criterion: error barrier" if metric == "error" else
                              "loss barrier, relative") + f" — {panel}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"Instability at initialisation, barrier `{definition}` ({profile} profile; bars and error bars: "
                 f"estimate and {F.interval_words('initialisations')}; dots: pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def run_row(q, spec, run, label: str, corpus, steps: int, device, eval_tokens: int, cpw) -> dict:
    """One panel's line of the run table."""
    return {"panel": label, "run": run.path.name, "copies": spec.k, "inits": q.inits,
            "pairs": q.inits * len(pairs_of(q.copies)), "steps": steps, "schedule": schedule_words(spec.train),
            "trained_now": run.trained_now, "device": str(device), "train_tokens": corpus.train.numel(),
            "vocab": len(corpus.vocab), "eval_tokens": eval_tokens, "chars_per_word": cpw, "store": run.path}


def schedule_words(tc) -> str:
    """The learning-rate schedule in words."""
    if tc.schedule == "cosine":
        return f"SGD lr {tc.lr:g} constant to step {tc.hold_steps}, cosine to 0 at {tc.steps}"
    return f"SGD lr {tc.lr:g}, StepLR x{tc.gamma:g} per epoch"


def setting_words(p) -> str:
    """The main panel's setting in a few words (the README's findings table)."""
    d = p.model_overrides.get("d_model", "200")
    length = f"{p.epochs} epochs" if p.epochs else f"T = {p.steps} steps"
    return f"{p.level} level, d = {d}, {length}, {p.inits} initialisations × {p.copies} copies"


def panel_findings(b: pd.DataFrame, noise: pd.DataFrame, r, p) -> tuple[list, F.Finding]:
    """One panel's findings (Frankle's criterion first), its evaluation noise and its headline."""
    d = p.definition
    pick = lambda frame, metric, split="test": frame[(frame.split == split) & (frame.metric == metric)  # noqa: E731
                                                  & (frame.definition == d)]
    err = judge_barriers(b, "test", "error", d, "init", "initialisation", f"Instability at initialisation, {r.panel}"
                         + ("" if f"T = {r.steps}" in r.panel else f", T = {r.steps} steps"))
    out = [err, judge_barriers(b, "train", "error", d, "init", "initialisation", "The same on the training plays"),
           F.estimate(pick(b, "loss").barrier, pick(b, "loss").init, question="Loss barrier", metric=f"test, `{d}`",
                      unit="nats/token", unit_name="initialisation", digits=3),
           judge_barriers(b, "test", "loss", d, "init", "initialisation", "Loss barrier, relative")]
    if "loss_word" in set(b.metric):
        w, pw = pick(b, "loss_word"), pick(b, "ppl_word")
        out += [F.estimate(w.barrier, w.init, question=f"Per word-equivalent ({r.chars_per_word:.2f} characters per "
                           "word)", metric="test loss barrier", unit="nats", unit_name="initialisation", digits=3),
                F.estimate(100 * (np.exp(w.barrier) - 1), w.init, question="Perplexity barrier per word-equivalent",
                           metric="exp(Δ) − 1, of the endpoints'", unit="%", unit_name="initialisation", digits=1),
                _ptb(pw)]
    elif "word" in r.panel:
        out.append(_ptb(pick(b, "ppl")))
    se = noise[(noise.split == "test") & (noise.metric == "error")]
    out.append(noise_words(se, pick(b, "error").groupby("init").instability.mean(), "a pair's test error barrier",
                           FRANKLE))
    return out, err


def _ptb(rows: pd.DataFrame) -> F.Finding:
    return F.estimate(100 * rows.barrier / rows.max_on_path, rows.init, question="Under the PTB study's normalisation "
                      "(barrier / maximum perplexity)", metric="test", unit="%", unit_name="initialisation", digits=1,
                      reference=f"the PTB study reported {PTB_STUDY_PPL_INSTABILITY_PCT['test']:g} % on test for its "
                      "word-level PTB model (d = 200, 8 epochs)")


def ptb_line(barriers: pd.DataFrame, runs: pd.DataFrame, d: str) -> str | None:
    """The PTB study's number against every panel (a character panel per word-equivalent; of the main level's lengths
    the longest) on its own scale: reproduced when every panel lies within REPRODUCED_FACTOR of it."""
    vals = {}
    for r in runs.itertuples():
        metric = "ppl_word" if r.chars_per_word == r.chars_per_word and r.chars_per_word else "ppl"
        g = barriers[(barriers.panel == r.panel) & (barriers.split == "test") & (barriers.metric == metric)
                     & (barriers.definition == d)]
        if len(g) and r.role != "length":  # of the main level's lengths, the main (longest) one
            vals[r.panel] = float((100 * g.barrier / g.max_on_path).groupby(g.init).mean().mean())
    if not vals:
        return None
    ref = PTB_STUDY_PPL_INSTABILITY_PCT["test"]
    lo, hi = min(vals.values()), max(vals.values())
    within = [ref / REPRODUCED_FACTOR <= v <= ref * REPRODUCED_FACTOR for v in vals.values()]
    near = all(within)
    return (f"- The PTB study's number is **{'reproduced' if near else 'not reproduced'}**: on its own scale (barrier / "
            f"maximum perplexity, test) it reported {ref:g} % for its word-level PTB model (d = 200, 8 epochs); here "
            + ", ".join(f"{k} {v:.1f} %" for k, v in vals.items())
            + f" ({'every' if near else 'no' if not any(within) else 'not every'} panel within a factor "
            f"{REPRODUCED_FACTOR:g} of it)"
            + (f"; the panels disagree {hi / lo:.1f}-fold with each other on the scale meant to compare them" if
               lo > 0 and len(vals) > 1 else "") + ". The study's setting (word-level PTB, d = 200) is the `paper` "
            "profile's, not this run's.")


def length_rows(barriers: pd.DataFrame, runs: pd.DataFrame, d: str) -> pd.DataFrame:
    """Per initialisation and training length of the main level's panels: the barrier (instability) per split and
    metric, pairs averaged within their initialisation."""
    b = barriers[(barriers.definition == d) & barriers.metric.isin(("error", "loss"))]
    t = b.merge(runs.loc[runs.role != "variant", ["panel", "steps"]], on="panel")
    return t.groupby(["steps", "init", "split", "metric"], as_index=False).instability.mean()


def length_figure(barriers: pd.DataFrame, runs: pd.DataFrame, definition: str, profile: str):
    """The barrier against the training length T of the same setting: every initialisation a dot, the mean a line."""
    t = length_rows(barriers, runs, definition)
    fig, data = points_and_means(t, "steps", "instability", "split", ("train", "test"), "metric", {
        "error": "error barrier (percentage points)", "loss": "loss barrier (% of the endpoints' mean)"},
        "training length T (steps; the rate decays over the last quarter)", unit="initialisation")
    threshold_line(fig.axes[0], unit="points")
    threshold_line(fig.axes[1], unit="%")
    n = t.steps.nunique()
    for ax in fig.axes:  # a line between the lengths run is no measured curve: dotted, it only joins them
        for line in ax.get_lines():
            if line.get_marker() == "o" and line.get_linestyle() == "-":  # the means, not the reference lines
                line.set_linestyle(":")
    fig.suptitle(f"The barrier grows with training length? (same model and schedule shape; barrier `{definition}`, "
                 f"{profile} profile; {n} lengths run, dotted lines only join them)", fontsize=10)
    fig.tight_layout()
    return fig, data


def length_findings(barriers: pd.DataFrame, runs: pd.DataFrame, d: str) -> list:
    """The test error barrier of each training length against the next shorter one, paired by initialisation (the
    same initialisations at every length), claimed higher; and the trend when there are several."""
    t = length_rows(barriers, runs, d)
    t = t[(t.split == "test") & (t.metric == "error")].pivot(index="init", columns="steps", values="instability")
    steps = sorted(t.columns)
    out = [F.paired((t[hi] - t[lo]).dropna().to_numpy(), question=f"The error barrier at T = {hi} minus at T = {lo}",
                    metric="test, per initialisation", unit="points", expected=F.HIGHER, unit_name="initialisation")
           for lo, hi in zip(steps, steps[1:])]
    if len(out) > 1:
        out.append(F.trend(out, question="The error barrier grows with the training length", claimed=F.HIGHER))
    return out


def describe(barriers: pd.DataFrame, noise: pd.DataFrame, runs: pd.DataFrame, p) -> Summary:
    """The run's findings (findings layer), panel by panel; the headline is the main panel's Frankle criterion."""
    d = p.definition
    body = []
    for r in runs.itertuples():
        body.append(f"- {r.panel}: {r.inits} initialisations × {r.copies // r.inits} copies ({r.pairs} pairs), "
                    f"{r.steps} steps, {r.schedule}; {r.eval_tokens} evaluation tokens per split"
                    + (f"; {r.chars_per_word:.2f} characters per word-level token of the same plays"
                       if r.chars_per_word == r.chars_per_word and r.chars_per_word else "") + ".")
    heads = []
    for r in runs.itertuples():
        found, head = panel_findings(barriers[barriers.panel == r.panel], noise[noise.panel == r.panel], r, p)
        body += ["", f"**{r.panel}.**", *found]
        heads.append(head)
    if p.lengths:
        body += ["", "**Training length.**", *length_findings(barriers, runs, d)]
    line = ptb_line(barriers, runs, d)
    if line:
        body += ["", "**The PTB study.**", line]
    setting = (f"Profile `{p.profile}`; barrier `{d}` ({DEFINITION_WORDS[d]}); pairs are averaged within their "
               "initialisation (the independent unit); evaluation windows are spread over every play of each split.")
    return Summary(setting, body, heads[0], {"definition": d, "verdict": heads[0].verdict})
