"""Findings, figures and the summary of notebook 07. The loss barrier is judged by the study's criterion (its "Err"
is the cross-entropy; criteria.RELATIVE_LOSS), the error barrier by Frankle et al.'s (criteria.FRANKLE). Ladder
pairs each have their own initialisation (independent units); fine-tuned pairs share one pretrained model, so their
interval is conditional on it (the unit says so). A size whose endpoints learned no more than token frequencies is
not judged (findings.NOT_TESTABLE, "not judged" in every table and figure). The over-parameterisation pattern
(train loss unstable, eval loss stable or no barrier) needs models that overfit (criteria.OVERFIT on the per-pair
eval − train gap; the eval plays are other plays, so a smaller gap can be distribution shift)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis import findings as F
from ..analysis.criteria import FRANKLE, LEARNED_MARGIN, OVERFIT, RELATIVE_LOSS
from ..analysis.lm_endpoints import endpoint_losses, learned_beyond_unigram
from ..analysis.metrics import LABELS, judge_barriers, unit_of
from ..publish.plotting import COLORS, plt, threshold_line
from ..publish.run_plots import interval_bars, paths_by_group, training_panels
from .base import Summary
from .reference import STUDY2_FIG1_LOSS, STUDY2_PARAMS

SPLIT_COLOR = {"train": COLORS[0], "eval": COLORS[3]}  # the study's figures: train blue, eval red
NAMES = {"tinygpt": "TinyGPT", "toygpt": "ToyGPT", "compactgpt": "CompactGPT", "mingpt": "MinGPT", "gpt2": "GPT-2"}
KEYS = (("train", "loss"), ("eval", "loss"), ("train", "error"), ("eval", "error"))
FT_UNIT = "pairs from one pretrained model's weights"  # the interval is conditional on that model
NOT_JUDGED = "not judged"
PRECONDITION = ("the endpoints learned little beyond token frequencies: training loss not below the unigram entropy "
                f"of the training text, or held-out loss not {100 * LEARNED_MARGIN:g} % below it")
APPEARS, ABSENT, UNDECIDED = "appears", "does not appear", "undecided"
NO_OVERFIT = f"not asked (not {OVERFIT.above})"  # the pattern is about sizes that overfit
# the study's bumps drawn beside ours: TinyGPT (characters, as ours) and ToyGPT (GPT-2's BPE: another scale), read
# off its Fig. 1 at full length; CompactGPT's is off the scale (567 %) and MinGPT's has no eval point
STUDY_POINTS = {"tinygpt": ("D", "characters as ours, full length"),  # marker, setting (read off its Fig. 1)
                "toygpt": ("s", "GPT-2's BPE: per token, not our scale")}


def rung(size: str) -> tuple[str, int | None]:
    """A ladder rung's (study size, width): 'tinygpt' is the study's TinyGPT; 'tinygpt@32' is TinyGPT's architecture
    (layers, heads, context, tokenizer, recipe) at d_model = 32, its MLP scaled with it (d_ff / d_model kept)."""
    base, at, width = size.partition("@")
    return base, int(width) if at and width.isdigit() else None


def name(size: str) -> str:
    """Display name of a size ('TinyGPT at d = 32' for a rung at another width; the fine-tuned model's label as
    it is)."""
    base, width = rung(size)
    return f"{NAMES.get(base, base)} at d = {width}" if width is not None else NAMES.get(size, size)


def short(r) -> str:
    """A size's label in crowded figures: 'd = 32' for a rung at another width, else its name; marked when it is
    not judged."""
    base, width = rung(r["size"])
    return (f"d = {width}" if width is not None else name(base)) + ("" if r["trained"] else f" ({NOT_JUDGED})")


def tag(r) -> str:
    """A size's name, marked when it is not judged (precondition not met)."""
    return name(r["size"]) + ("" if r["trained"] else f" ({NOT_JUDGED})")


def study_bump(end: float, peak: float) -> float:
    """Study 2's loss bump in % of the endpoints' loss, from (endpoint loss, peak near α = ½) of its Fig. 1."""
    return 100 * (peak - end) / end


def reference(size: str, split: str, metric: str) -> str:
    """Study 2's loss bump of `size` on `split`, read off its Fig. 1, on our scale (% of the endpoints' loss)."""
    end, peak = STUDY2_FIG1_LOSS.get(size, {}).get(split, (0, 0)) if metric == "loss" else (0, 0)
    return (f"study 2's full-length run, read off its Fig. 1: ≈ {study_bump(end, peak):.0f} % ({end:g} nats at "
            f"the endpoints, {peak:g} near α = ½)") if end else ""


def size_findings(barriers: pd.DataFrame, curves: pd.DataFrame, sizes: pd.DataFrame, definition: str) -> dict:
    """Per size (and the fine-tuned model): the precondition, the endpoints' losses and the Findings (loss and error
    barriers on train and eval, overfitting), NOT_TESTABLE in all when the precondition is not met."""
    out = {}
    for s in sizes.itertuples():
        unit = FT_UNIT if s.start == "pretrained" else "pair"
        ends = endpoint_losses(curves[curves["size"] == s.size])
        b = barriers[barriers["size"] == s.size]
        q = f"{name(s.size)}, " + ("pairs fine-tuned from it" if unit == FT_UNIT else "instability at initialisation")
        f = {f"{sp}_{m}": judge_barriers(b, sp, m, definition, "pair", unit, q, reference(s.size, sp, m))
             for sp, m in KEYS}
        f["overfit"] = F.threshold(100 * (ends.eval_loss - ends.train_loss) / ends.train_loss, criterion=OVERFIT,
                                   question=f"{name(s.size)}, overfitting", metric="eval − train loss at the "
                                   "endpoints", unit_name=unit, digits=1)
        trained = learned_beyond_unigram(ends, s.unigram_entropy)
        if not trained:
            f = {k: replace(v, verdict=F.NOT_TESTABLE, reason=PRECONDITION) for k, v in f.items()}
        out[s.size] = {"findings": f, "trained": trained, "unigram_entropy": s.unigram_entropy,
                       "train_loss_endpoints": float(ends.train_loss.mean()),
                       "eval_loss_endpoints": float(ends.eval_loss.mean())}
    return out


def pattern(found: dict) -> str:
    """The over-parameterisation pattern from a size's verdicts, asked only of a size that overfits (OVERFIT.above;
    else NO_OVERFIT): train loss UNSTABLE with eval loss STABLE or NO_BARRIER (appears); train loss STABLE/NO_BARRIER
    or eval loss UNSTABLE (does not); else undecided."""
    if not found["trained"]:
        return NOT_JUDGED
    if found["findings"]["overfit"].verdict != OVERFIT.above:
        return NO_OVERFIT
    tr, ev = found["findings"]["train_loss"].verdict, found["findings"]["eval_loss"].verdict
    if tr == F.UNSTABLE and ev in (F.STABLE, F.NO_BARRIER):
        return APPEARS
    return ABSENT if tr in (F.STABLE, F.NO_BARRIER) or ev == F.UNSTABLE else UNDECIDED


def summary_table(found: dict, sizes: pd.DataFrame, definition: str) -> pd.DataFrame:
    """One row per size: the endpoints, the precondition, the pattern and every Finding's numbers and sentence."""
    rows = []
    for s in sizes.itertuples():
        x = found[s.size]
        row = {"size": s.size, "params": s.params, "start": s.start, "pairs": s.pairs, "definition": definition,
               **{k: v for k, v in x.items() if k != "findings"}, "pattern": pattern(x)}
        for key, f in x["findings"].items():
            row.update({f"{key}_{c}": getattr(f, c) for c in ("estimate", "low", "high", "interval", "verdict",
                                                               "convex_pairs", "unit")} | {f"{key}_text": f.text()})
        rows.append(row)
    return pd.DataFrame(rows)


def barrier_vs_params(s: pd.DataFrame, p):
    """Loss and error instability against parameters (log axis), train and eval, with their intervals (ranges below
    MIN_UNITS pairs); the fine-tuned model as a star; open markers: not judged."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    s, rows = s.sort_values("params"), []
    for ax, metric in zip(axes, ("loss", "error")):
        for j, split in enumerate(("train", "eval")):
            key, c = f"{split}_{metric}", SPLIT_COLOR[split]
            for (fine, judged), g in s.groupby([s.start == "pretrained", "trained"]):
                ax.errorbar(g.params * (1.04 if j else 1 / 1.04), g[f"{key}_estimate"], interval_bars(g, key),
                            fmt="*" if fine else "o", ms=12 if fine else 5, capsize=3, color=c,
                            mfc=c if judged else "none",
                            label=f"{split}{', fine-tuned' if fine else ''}{'' if judged else ', ' + NOT_JUDGED}")
            rows += [{"size": r["size"], "start": r.start, "params": r.params, "split": split, "metric": metric,
                      **{c: r[f"{key}_{c}"] for c in ("estimate", "low", "high", "interval", "verdict", "unit")}}
                     for _, r in s.iterrows()]
        for i, (_, r) in enumerate(s.iterrows()):  # short labels above each size, staggered so they do not collide
            top = np.nanmax([r[f"{sp}_{metric}_{c}"] for sp in ("train", "eval") for c in ("estimate", "high")])
            if r.start == "pretrained":  # beside its star, clear of the rungs' bars
                ax.annotate("fine-tuned", (r.params / 1.04, r[f"train_{metric}_estimate"]), ha="right", va="center",
                            xytext=(-9, 0), textcoords="offset points", fontsize=7)
            else:
                ax.annotate(short(r), (r.params, top), ha="center", xytext=(0, 4 + 10 * (i % 2)),
                            textcoords="offset points", fontsize=7)
        if metric == "loss":  # the study's own bumps (Fig. 1), at its sizes' parameter counts
            for size, by_split in STUDY2_FIG1_LOSS.items():
                for j, (split, (end, peak)) in enumerate(by_split.items()):
                    if size in STUDY_POINTS:
                        ax.plot(STUDY2_PARAMS[size] * (1.04 if j else 1 / 1.04), study_bump(end, peak),
                                STUDY_POINTS[size][0], ms=7, mfc="none", color=SPLIT_COLOR[split],
                                label=f"study 2, {name(size)}, {split} ({STUDY_POINTS[size][1]})")
                if size in STUDY_POINTS:
                    ax.annotate(f"study 2: {name(size)}", (STUDY2_PARAMS[size], max(
                        study_bump(*v) for v in by_split.values())), xytext=(0, 6), textcoords="offset points",
                        fontsize=7, ha="center", color="0.3")
        threshold_line(ax, unit="%" if metric == "loss" else "points")
        ax.set(xscale="log", xlabel="parameters per model (log scale)",
               ylabel=f"{LABELS[metric]} instability ({unit_of(metric)})")
        ax.grid(alpha=0.3)
        # room above the data for the legend (the loss panel's is long: the study's points have their own entries)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=ax.get_ylim()[1] * (1.75 if metric == "loss" else 1.3))
        ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    shown = [STUDY2_PARAMS[z] for z in STUDY_POINTS]  # both panels: every size and the study's points, with margins
    axes[0].set_xlim(min(s.params.min(), *shown) / 1.6, max(s.params.max(), *shown) * 1.6)
    widths = ("; d = …: TinyGPT's architecture at that width" if any("@" in z for z in s["size"]) else "")
    fig.suptitle(f"Instability at initialisation across model sizes, barrier `{p.definition}` ({p.profile} profile)\n"
                 f"{F.interval_words('pairs')}{widths}", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def loss_vs_alpha(curves: pd.DataFrame, s: pd.DataFrame, p):
    """One column per size (and the fine-tuned model): loss (top) and error (bottom) vs alpha, train blue and eval
    red as in the study's figures; thin lines are pairs, thick lines their mean."""
    return paths_by_group(curves, "size", [(r["size"], tag(r)) for _, r in s.iterrows()], SPLIT_COLOR, LABELS,
                          f"Loss and error along the linear path between the two copies of each pair ({p.profile} "
                          "profile; thin: pairs, thick: mean)")


def gap_figure(s: pd.DataFrame, p):
    """The preconditions: the endpoints' losses against the unigram entropy (and LEARNED_MARGIN below it, which the
    held-out loss must pass); the eval − train gap in % of the train loss with its interval against OVERFIT."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    x, (a, b) = np.arange(len(s)), axes
    a.bar(x - 0.2, s.train_loss_endpoints, 0.4, color=SPLIT_COLOR["train"], label="train")
    a.bar(x + 0.2, s.eval_loss_endpoints, 0.4, color=SPLIT_COLOR["eval"], label="eval")
    a.hlines(s.unigram_entropy, x - 0.42, x + 0.42, colors="k", lw=2, label="unigram entropy of the training text")
    a.hlines((1 - LEARNED_MARGIN) * s.unigram_entropy, x - 0.42, x + 0.42, colors="k", lw=1, ls=":",
             label=f"{100 * LEARNED_MARGIN:g} % below it: the held-out loss must be lower")
    a.set(ylabel="cross-entropy at the endpoints (nats/token)",
          ylim=(0, 1.3 * float(np.nanmax(np.r_[s.eval_loss_endpoints, s.unigram_entropy]))))
    a.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.9)
    b.bar(x, s.overfit_estimate, 0.6, yerr=interval_bars(s, "overfit"), capsize=4, color="gray")
    threshold_line(b, OVERFIT.threshold, f"{OVERFIT.words()}: {OVERFIT.above} above it")
    b.set_ylabel(f"eval − train loss ({OVERFIT.unit})")
    b.legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, [tag(r) for _, r in s.iterrows()], fontsize=7, rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Preconditions: did the models learn, and do they overfit? ({p.profile} profile; "
                 f"{F.interval_words('pairs')})", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig, s[["size", "params", "train_loss_endpoints", "eval_loss_endpoints", "unigram_entropy", "trained",
                   "overfit_estimate", "overfit_low", "overfit_high", "overfit_interval", "overfit_verdict"]].copy()


def training_figure(training: pd.DataFrame, s: pd.DataFrame, profile: str):
    """Training loss vs step of each size (mean over copies), each with the unigram entropy of its training text
    (dashed): the precondition that the endpoints learned more than token frequencies."""
    return training_panels(training, [(r["size"], tag(r), r.unigram_entropy) for _, r in s.iterrows()],
                           "unigram entropy", f"Training of each size ({profile} profile)"), training


def table_lines(s: pd.DataFrame, found: dict, sizes: pd.DataFrame) -> list[str]:
    """The summary's table: per size its parameters and steps beside the study's, the endpoints, and its findings."""
    cell = lambda f: f"{f.short()} ({NOT_JUDGED if f.verdict == F.NOT_TESTABLE else f.verdict})"  # noqa: E731
    lines = ["| model | parameters (study) | steps (study) | train / eval loss at the endpoints (unigram entropy) | "
             f"eval − train gap ({OVERFIT.unit}) | train-loss barrier ({RELATIVE_LOSS.unit}) | eval-loss barrier | "
             f"eval-error barrier ({FRANKLE.unit}) |", "|---|---|---|---|---|---|---|---|"]
    for (_, r), z in zip(s.iterrows(), sizes.itertuples()):
        f = found[r["size"]]["findings"]
        study = f"{z.study_params / 1e6:.2f}M" if np.isfinite(z.study_params) else "–"
        steps = f"{z.study_steps:g}" if np.isfinite(z.study_steps) else "–"
        lines.append(f"| {tag(r)} | {r.params / 1e6:.3f}M ({study}) | {z.steps} ({steps}) | "
                     f"{r.train_loss_endpoints:.2f} / {r.eval_loss_endpoints:.2f} ({r.unigram_entropy:.2f}) | "
                     + " | ".join(cell(f[k]) for k in ("overfit", "train_loss", "eval_loss", "eval_error")) + " |")
    return lines


def tokens_words(s: pd.DataFrame, p, tok: str) -> str:
    """What the ladder's rungs read: one tokenizer for all (their losses on one scale), or TinyGPT characters and
    the others subwords (the study's ladder: per character for one, per BPE token for the others)."""
    words = {"char": "characters", "bpe": f"a byte-level BPE of {p.bpe_vocab:,} entries trained on the training plays",
             "gpt2": "GPT-2's own BPE"}
    levels = list(dict.fromkeys(s.loc[s.start != "pretrained", "tokenizer"]))
    if len(levels) == 1:
        return f"every rung reads {words[levels[0]]} (one tokenizer: every rung's loss on one scale)"
    return (f"TinyGPT reads characters, the others {words[tok]} (as in the study: TinyGPT's loss is per character, the "
            "others' per BPE token, so their % are not on one scale)")


def ladder_lines(s: pd.DataFrame, found: dict) -> tuple[list[str], dict]:
    """Study 2's claim (a loss bump at every size) over the judged rungs, and the over-parameterisation pattern
    (train loss unstable, eval loss stable or no barrier), which needs a rung that overfits (criteria.OVERFIT)."""
    ladder = s[s.start != "pretrained"]
    judged = ladder[ladder.trained]
    by = {v: [name(z) for z, w in zip(judged["size"], judged.train_loss_verdict) if w == v]
          for v in dict.fromkeys(judged.train_loss_verdict)}
    out = [f"- Study 2's claim, a loss bump from initialisation at every size (train loss, {RELATIVE_LOSS.words()}), "
           f"over the {len(judged)} judged rungs: " + "; ".join(f"{v} at {', '.join(z)}" for v, z in by.items()) + "."]
    groups = {w: [name(z) for z, v in zip(ladder["size"], ladder.pattern) if v == w]
              for w in (APPEARS, ABSENT, UNDECIDED, NO_OVERFIT, NOT_JUDGED)}
    if not (judged.overfit_verdict == OVERFIT.above).any():
        out.append(f"- The over-parameterisation pattern (train loss {F.UNSTABLE}, eval loss {F.STABLE} or "
                   f"{F.NO_BARRIER}) needs a rung that overfits; none does here (every eval − train gap is judged "
                   f"against {OVERFIT.words()}, and none is {OVERFIT.above}), so this run cannot test it. The study's "
                   "over-parameterised sizes (CompactGPT, MinGPT) are in the `paper` profile.")
    else:
        out.append(f"- The study's over-parameterisation pattern (train loss {F.UNSTABLE}, eval loss {F.STABLE} or "
                   f"{F.NO_BARRIER}), read off the verdicts above: " + "; ".join(f"{w} at {', '.join(v)}" for w, v in
                                                                               groups.items() if v) + ".")
    return out, groups


def describe(found: dict, s: pd.DataFrame, sizes: pd.DataFrame, p, tok: str, ft: str) -> Summary:
    """The run's findings: per size the study's criterion on train and eval loss, Frankle's on the eval error and
    overfitting; the study's claim over the ladder and the over-parameterisation pattern from those verdicts.
    Headline: the train-loss finding of the smallest judged size on the study's ladder (TinyGPT when judged: the
    one trained nearest the study's recipe)."""
    ladder = s[s.start != "pretrained"].sort_values("params")
    setting = (f"Profile `{p.profile}`: {len(p.sizes)} rungs ({', '.join(name(z) for z in ladder['size'])}: "
               f"{ladder.params.min() / 1e3:,.0f}k to {ladder.params.max() / 1e3:,.0f}k parameters), {p.pairs} pairs "
               f"per rung (each pair from its own initialisation, the two copies differing only in data order); "
               f"{tokens_words(sizes, p, tok)}; barrier `{p.definition}`; the loss barrier against the study's criterion "
               f"({RELATIVE_LOSS.words()}), the eval error against Frankle et al.'s ({FRANKLE.words()}).")
    body, skipped = table_lines(s, found, sizes) + [""], [name(z) for z in s[~s.trained]["size"]]
    if skipped:
        body += [f"- Precondition not met at {', '.join(skipped)} ({PRECONDITION}): {NOT_JUDGED}.", ""]
    for r in s.itertuples():
        f = found[r.size]["findings"]
        body += [f"**{name(r.size)}**" + (f" ({r.pairs} pairs from the one pretrained model: every interval is "
                                          "conditional on it)" if r.start == "pretrained" else "") + ".",
                 f["train_loss"], f["eval_loss"], f["eval_error"], f["overfit"], ""]
    lines, groups = ladder_lines(s, found)
    body += lines + ["", "Under the other barrier definitions and for perplexity, see `07_barriers.csv`; every "
                     "finding's sentence and numbers are in `07_sizes.csv`."]
    order = list(sizes[sizes.start != "pretrained"].sort_values("study_params", kind="mergesort")["size"])
    head = found[([z for z in order if found[z]["trained"]] or order)[0]]["findings"]["train_loss"]
    return Summary(setting, body, head, {"definition": p.definition, "tokenizer": tok, "finetuned": ft,
                                         "pattern": groups, "not_judged": skipped})
