"""Notebook 01's tables, figures and words (what the run shows, with its intervals and criteria)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.metrics import LABELS, unit_of, verdict
from ..analysis.verdict import CONVEX_TOL, interval
from ..publish.plotting import COLORS, plt, threshold_line
from .lm_setup import DEFINITION_WORDS
from .reference import PTB_STUDY_PPL_INSTABILITY_PCT

EXTRA_LABELS = {"loss_word": "cross-entropy per word-equivalent (nats)",
                "ppl_word": "perplexity per word-equivalent"}


def label(metric: str) -> str:
    """Axis label of a metric."""
    return EXTRA_LABELS.get(metric, LABELS.get(metric, metric))


def summary_table(barriers: pd.DataFrame, floors: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Per panel, split and metric: the instability's interval over initialisations then pairs, its verdict, the
    barrier in the metric's units (nats for the loss) with its interval, the chord and the convex paths, the
    noise floor, and for perplexities the PTB study's normalisation."""
    rows = []
    d = barriers[barriers.definition == definition]
    for (panel, split, metric), g in d.groupby(["panel", "split", "metric"], sort=False):
        sub = barriers[barriers.panel == panel]
        v = verdict(sub, split, metric, definition, "init", "initialisation")
        raw = interval(g.barrier, g.init, "initialisation")
        fl = floors[(floors.panel == panel) & (floors.split == split) & (floors.metric == metric)
                    & (floors.definition == definition)]
        row = {"panel": panel, "split": split, "metric": metric, "definition": definition,
               "inits": g.init.nunique(), "pairs": len(g), "instability": v.interval.estimate,
               "instability_low": v.interval.low, "instability_high": v.interval.high, "unit": unit_of(metric),
               "verdict": v.status, "barrier": raw.estimate, "barrier_low": raw.low, "barrier_high": raw.high,
               "chord_instability": g.chord_instability.mean(), "convex_pairs": int(g.convex.sum()),
               "noise_floor_instability": fl.instability.mean()}
        if metric in ("ppl", "ppl_word"):
            ptb = interval(100 * g.barrier / g.max_on_path, g.init, "initialisation")
            row.update(ptb_normalisation=ptb.estimate, ptb_normalisation_low=ptb.low, ptb_normalisation_high=ptb.high)
        rows.append(row)
    return pd.DataFrame(rows)


def training_figure(history: pd.DataFrame, runs: pd.DataFrame, profile: str):
    """Training loss of every copy (colour: its initialisation) against the step, per panel, with the start of
    the rate's decay: the precondition that the endpoints have reached their basin floor."""
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
        ax.set_title(f"{panel}: {r.copies} copies, {r.schedule}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Precondition: every copy trained to the floor of its basin ({profile} profile)", fontsize=10)
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


def instability_figure(barriers: pd.DataFrame, floors: pd.DataFrame, definition: str, profile: str):
    """Per panel: the error barrier in points (Frankle et al.'s criterion), the loss instability in % and the
    perplexity under the PTB study's normalisation (per word-equivalent for characters) with the study's
    reported values on that scale. Bars: estimate; error bars: 95 % interval over initialisations then pairs;
    dots: pairs; grey ticks: the noise floor (a copy against itself shortly before the end)."""
    panels = list(dict.fromkeys(barriers.panel))
    fig, axes = plt.subplots(len(panels), 3, figsize=(13, 3.6 * len(panels)), squeeze=False)
    rows = []
    for r, panel in enumerate(panels):
        b = barriers[(barriers.panel == panel) & (barriers.definition == definition)]
        f = floors[(floors.panel == panel) & (floors.definition == definition)]
        ppl = "ppl_word" if "ppl_word" in set(b.metric) else "ppl"
        for ax, metric, what in zip(axes[r], ("error", "loss", ppl), ("instability", "instability", "ptb")):
            for j, split in enumerate(("train", "test")):
                g = b[(b.split == split) & (b.metric == metric)]
                vals = 100 * g.barrier / g.max_on_path if what == "ptb" else g.instability
                iv = interval(vals, g.init, "initialisation")
                x = j
                ax.bar(x, iv.estimate, 0.6, color=COLORS[j], alpha=0.5)
                ax.errorbar(x, iv.estimate, yerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], color="k",
                            capsize=4)
                for i, gi in g.assign(v=vals.to_numpy()).groupby("init"):
                    ax.plot([x + 0.12 * (int(i) - 1)] * len(gi), gi.v, ".", color=COLORS[(int(i) + 2) % len(COLORS)],
                            ms=4)
                fv = f[(f.split == split) & (f.metric == metric)]
                fvals = 100 * fv.barrier / fv.max_on_path if what == "ptb" else fv.instability
                ax.plot([x - 0.3, x + 0.3], [fvals.mean()] * 2, color="grey", lw=3, alpha=0.8,
                        label="noise floor" if j == 0 else None)
                if what == "ptb" and (ppl == "ppl_word" or "word" in panel):
                    ax.plot(x, PTB_STUDY_PPL_INSTABILITY_PCT[split], "*", color="crimson", ms=12,
                            label="PTB study (word level, reported)" if j == 0 else None)
                rows.append({"panel": panel, "metric": metric, "split": split, "scale": what,
                             "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                             "noise_floor": float(fvals.mean()), "pairs": len(g), "inits": g.init.nunique()})
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
                 "estimate and 95 % interval over initialisations, then pairs; dots: pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def describe(barriers: pd.DataFrame, floors: pd.DataFrame, runs: pd.DataFrame, p: dict) -> tuple[str, dict]:
    """The finding in words (Markdown), from this run's numbers, and the numbers as data."""
    d = p["definition"]
    main = runs.iloc[0].panel
    lines = [f"**Profile `{p['profile']}`; barrier `{d}` ({DEFINITION_WORDS[d]}); every interval is a 95 % "
             f"bootstrap interval over initialisations, then pairs; evaluation windows are spread over every "
             f"play of each split.**", ""]
    for r in runs.itertuples():
        lines.append(f"- {r.panel}: {r.inits} initialisations × {r.copies // r.inits} copies ({r.pairs} pairs), "
                     f"{r.steps} steps, {r.schedule}; {r.eval_tokens} evaluation tokens per split"
                     + (f"; {r.chars_per_word:.2f} characters per word-level token of the same plays"
                        if r.chars_per_word == r.chars_per_word and r.chars_per_word else "") + ".")
    numbers: dict = {"definition": d, "panels": {}}
    for r in runs.itertuples():
        b = barriers[barriers.panel == r.panel]
        fl = floors[floors.panel == r.panel]
        err = verdict(b, "test", "error", d, "init", "initialisation")
        err_train = verdict(b, "train", "error", d, "init", "initialisation")
        loss = verdict(b, "test", "loss", d, "init", "initialisation")
        raw = b[(b.split == "test") & (b.metric == "loss") & (b.definition == d)]
        nats = interval(raw.barrier, raw.init, "initialisation")
        floor_err = fl[(fl.split == "test") & (fl.metric == "error") & (fl.definition == d)].instability.mean()
        floor_loss = fl[(fl.split == "test") & (fl.metric == "loss") & (fl.definition == d)].barrier.mean()
        lines += ["", f"**{r.panel}.**",
                  f"- Frankle et al.'s criterion — {err.text()}",
                  f"- The same on the training plays — {err_train.text()}",
                  f"- Loss barrier: {nats.text(3, 'nats/token')}; relative, {loss.text()}"]
        entry = {"error": _v(err), "error_train": _v(err_train), "loss_relative": _v(loss),
                 "loss_nats_per_token": _iv(nats), "noise_floor_error_points": floor_err,
                 "noise_floor_loss_nats": floor_loss}
        if "loss_word" in set(b.metric):
            wraw = b[(b.split == "test") & (b.metric == "loss_word") & (b.definition == d)]
            wn = interval(wraw.barrier, wraw.init, "initialisation")
            wp = b[(b.split == "test") & (b.metric == "ppl_word") & (b.definition == d)]
            pn = interval(100 * wp.barrier / wp.max_on_path, wp.init, "initialisation")
            rel = interval(100 * (np.exp(wraw.barrier) - 1), wraw.init, "initialisation")
            lines.append(f"- Per word-equivalent ({r.chars_per_word:.2f} characters per word): loss barrier "
                         f"{wn.text(3, 'nats')}, i.e. a perplexity barrier of exp(Δ) − 1 = {rel.text(1, '%')} of the "
                         f"endpoints'; under the PTB study's normalisation (barrier / maximum perplexity) "
                         f"{pn.text(1, '%')}, against the {PTB_STUDY_PPL_INSTABILITY_PCT['test']:g} % it reported on "
                         "test for its word-level PTB model (the one scale on which the two compare).")
            entry.update(loss_nats_per_word=_iv(wn), ppl_word_ptb_normalisation=_iv(pn))
        elif r.panel != main or "word" in r.panel:
            wp = b[(b.split == "test") & (b.metric == "ppl") & (b.definition == d)]
            pn = interval(100 * wp.barrier / wp.max_on_path, wp.init, "initialisation")
            lines.append(f"- Under the PTB study's normalisation (barrier / maximum perplexity): {pn.text(1, '%')}, "
                         f"against its reported {PTB_STUDY_PPL_INSTABILITY_PCT['test']:g} % (test, word level, PTB).")
            entry["ppl_ptb_normalisation"] = _iv(pn)
        lines.append(f"- Noise floor (a copy against itself {p['floor_steps']} steps before the end): test error "
                     f"barrier {floor_err:.2f} points, loss barrier {floor_loss:.4f} nats — "
                     + ("far below the pairs' barriers, so those are not evaluation noise."
                        if nats.low > 3 * max(floor_loss, 1e-9) else
                        "of the size of the pairs' barriers: they cannot be told from evaluation noise."))
        convex = int(b[(b.definition == d) & (b.split == "test")].groupby("metric").convex.sum().get("loss", 0))
        if convex:
            lines.append(f"- {convex} of {r.pairs} test-loss paths are convex (chord ≤ {CONVEX_TOL:g} %): no barrier.")
        numbers["panels"][r.panel] = entry
    head = numbers["panels"][main]["error"]
    word = {"stable": "stable to SGD noise at initialisation", "unstable": "unstable to SGD noise at initialisation",
            "inconclusive": "inconclusive", "convex": "no barrier (convex paths)", "too few": "too few pairs",
            "not finite": "no finding (non-finite barriers)"}[head["status"]]
    lines += ["", f"Verdict ({main}, Frankle et al.'s error criterion on the test plays): **{word}** — test-error "
                  f"barrier {head['estimate']:.2f} [{head['low']:.2f}, {head['high']:.2f}] points against the 2-point "
                  "threshold. The loss and perplexity rows above report the same paths on their own scales."]
    numbers["verdict"] = head["status"]
    numbers["headline"] = (f"{main}: {word} — test-error barrier {head['estimate']:.2f} "
                           f"[{head['low']:.2f}, {head['high']:.2f}] points (Frankle's 2-point criterion, "
                           f"`{d}`, {runs.iloc[0].pairs} pairs over {runs.iloc[0].inits} initialisations)")
    return "\n".join(lines), numbers


def _v(v) -> dict:
    return {"status": v.status, "estimate": v.interval.estimate, "low": v.interval.low, "high": v.interval.high,
            "pairs": v.interval.n_pairs, "units": v.interval.n_units, "unit": v.unit}


def _iv(iv) -> dict:
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "pairs": iv.n_pairs, "units": iv.n_units}

