"""Notebook 01: instability at initialisation (Frankle et al. 2020 on a small transformer LM).

From one initialisation, pairs of copies are trained with different SGD noise (data order
and dropout masks); each pair is interpolated linearly and the loss, perplexity and error
barriers are measured on train and test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, config_hash, model_preset
from ..data import CORPORA, LEVELS, load_corpus
from ..ensemble import copy_state
from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..publish.paths import resolve, shown
from ..publish.tb import command as tb_command
from ..publish.tb import write_history
from ..runs.layout import tensorboard_dir
from ..analysis.metrics import LABELS, METRICS, UNITS, barrier_table, fmt_spread, mean_se, unit_of, verdict
from ..publish.plotting import COLORS, curves_figure, plt, threshold_line
from .reference import PTB_STUDY_PPL_INSTABILITY_PCT
from .common import (StudyResult, check_alphas, check_model_overrides, check_optional_positive, check_positive,
                     prepare)

PREFIX = "01"

# Study 1 trains with SGD lr 2.5, StepLR(0.95 per epoch), clipping 0.5, batch 16 x bptt 35, dropout 0.2.
STUDY_DEFAULTS = dict(model="ptb-transformer", model_overrides={}, corpus="shakespeare", level="word",
                      vocab_cap=10000, data_path=None, optimizer="sgd", lr=2.5, gamma=0.95, clip_norm=0.5,
                      batch_size=16, init_seed=0, first_seed=1, definition=B.DEFAULT, eval_batch=32, epochs=0)

PROFILES = {
    # seconds: a narrow model, a small vocabulary, a few dozen steps
    "smoke": {**STUDY_DEFAULTS, "model_overrides": {"d_model": 32, "d_ff": 32}, "vocab_cap": 2000, "steps": 40,
              "pairs": 2, "alphas": 5, "eval_tokens": 3000},
    # minutes on a 2-core CPU. Character level: short word-level runs (what a CPU trains in minutes)
    # stay below 2 % (see the notebook), while this narrow character model, trained for the same
    # number of minutes, already sits in separate basins. Four pairs give a spread across pairs.
    "quick": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 64, "d_ff": 64}, "steps": 4000,
              "pairs": 4, "alphas": 25, "eval_tokens": 20000},
    # the PTB study's setting on the full word-level corpus: 3 pairs, 4 epochs, full splits (GPU)
    "paper": {**STUDY_DEFAULTS, "steps": 0, "epochs": 4, "pairs": 3, "alphas": 31, "eval_tokens": None},
}


def check_params(p: dict) -> None:
    """Every check that needs no data: bad input stops here, before loading or training anything."""
    check_positive(p, "pairs", "batch_size", "eval_batch")
    check_alphas(p)
    check_optional_positive(p, "eval_tokens")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if p["corpus"] not in CORPORA:
        raise ConfigError(f"corpus={p['corpus']!r} is unknown; choose one of {list(CORPORA)} "
                          "(shakespeare works offline)")
    if p["level"] not in LEVELS:
        raise ConfigError(f"level={p['level']!r}; choose one of {list(LEVELS)}")
    if p["data_path"] is not None and p["corpus"] != "ptb":
        raise ConfigError(f"data_path is only read by corpus='ptb' (a folder with ptb.train.txt, ...), "
                          f"not by corpus={p['corpus']!r}")
    if p["epochs"]:
        check_positive(p, "epochs")
    else:
        check_positive(p, "steps")
    check_model_overrides(p["model_overrides"])
    build_spec(p, vocab_size=2, steps=max(p["steps"] or 1, 1)).validate()  # model and optimiser values


def build_spec(p: dict, vocab_size: int, steps: int, seeds: tuple[Seeds, ...] | None = None) -> RunSpec:
    """The RunSpec of the 2*pairs copies sharing one initialisation (or of the given seeds)."""
    model = model_preset(p["model"], vocab_size=vocab_size, **p["model_overrides"])
    train = TrainConfig(steps=steps, batch_size=p["batch_size"], optimizer=p["optimizer"], lr=p["lr"],
                        schedule="step", gamma=p["gamma"], clip_norm=p["clip_norm"],
                        save_every=max(steps // 10, 1))
    data = DataConfig(corpus=p["corpus"], level=p["level"], vocab_cap=p["vocab_cap"], path=p["data_path"])
    if seeds is None:
        seeds = pair_seeds(p)
    return RunSpec(model=model, data=data, train=train, seeds=seeds)


def pair_seeds(p: dict) -> tuple[Seeds, ...]:
    """Seeds of 2*pairs copies: one init seed, distinct data and dropout seeds."""
    s0 = p["first_seed"]
    return tuple(Seeds(init=p["init_seed"], data=s0 + c, dropout=s0 + c) for c in range(2 * p["pairs"]))


def load_study_corpus(p: dict, cache_dir) -> tuple:
    """(corpus, total steps T) for a study's parameters; T from `epochs` when set. A relative data_path
    is taken from the project's home (lmc_core.publish.paths), as the other folders are."""
    path = p["data_path"]
    if path is not None and not Path(path).expanduser().exists() and resolve(path, path).exists():
        path = str(resolve(path, path))  # relative to the project's home, not to where the kernel started
    corpus = load_corpus(p["corpus"], level=p["level"], vocab_cap=p["vocab_cap"], path=path,
                         cache_dir=str(cache_dir))
    if p["epochs"]:
        context = model_preset(p["model"], **p["model_overrides"]).context
        steps = p["epochs"] * ((corpus.train.numel() - 1) // context // p["batch_size"])
    else:
        steps = p["steps"]
    return corpus, steps


def run(params: dict | None = None) -> StudyResult:
    """Train the pairs, interpolate, measure barriers, write figures, CSVs and the summary."""
    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    corpus, steps = load_study_corpus(p, cache_dir)
    spec = build_spec(p, len(corpus.vocab), steps)
    run_ = store.get(spec, corpus.train, device=device, progress=p["progress"])

    alphas = alpha_grid(p["alphas"])
    splits = {"train": corpus.train, "test": corpus.test}
    curves = []
    for pair in range(p["pairs"]):
        a, b = copy_state(run_.state, 2 * pair), copy_state(run_.state, 2 * pair + 1)
        c = interpolation_curve(spec.model, a, b, splits, alphas, p["eval_tokens"], p["eval_batch"], device,
                                progress=p["progress"])
        c.insert(0, "pair", pair)
        curves.append(c)
    curves = pd.concat(curves, ignore_index=True)
    barriers = barrier_table(curves, ("pair",), METRICS)
    summary = summary_table(barriers, p["definition"])

    res = StudyResult(params=p, tables={"curves": curves, "barriers": barriers, "summary": summary})
    res.tables["run"] = pd.DataFrame([{"run": config_hash(spec), "copies": spec.k, "pairs": p["pairs"],
                                       "steps": steps, "trained_now": run_.trained_now, "device": str(device),
                                       "train_tokens": corpus.train.numel(), "vocab": len(corpus.vocab),
                                       "eval_tokens": curves.tokens.iloc[0]}])
    if p["tensorboard"]:  # from the stored loss log: works for runs trained now and for cached ones
        tb_dir = write_history(tensorboard_dir(store.path(spec)), run_.history)
        res.tables["run"]["tensorboard"] = shown(tb_dir)
        res.tensorboard = tb_command(tb_dir)
    title_def = f"barrier: {p['definition']} ({DEFINITION_WORDS[p['definition']]})"
    fig1 = curves_figure(curves, METRICS, ("train", "test"), "pair", ylabels=LABELS,
                         title=f"Linear interpolation between copies trained from one initialisation "
                               f"({p['profile']} profile, {p['pairs']} pairs)\n{title_def}")
    res.add_figure(f"{PREFIX}_interpolation", fig1, curves)
    fig2, data2 = instability_figure(barriers, p["definition"], p["profile"])
    res.add_figure(f"{PREFIX}_instability", fig2, data2)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.publish(fig_dir, PREFIX, describe(barriers, summary, p["definition"], p["profile"], steps))
    return res


DEFINITION_WORDS = {"mean": "max over α minus the endpoints' mean",
                    "chord": "max height above the chord between the endpoints",
                    "subchord": "max height above any chord between two points of the path",
                    "midpoint": "value at α = ½ minus the endpoints' mean"}


def summary_table(barriers: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Mean, standard error and verdict over pairs under `definition`, with the PTB study's numbers."""
    d = barriers[barriers.definition == definition]
    rows = []
    for (split, metric), g in d.groupby(["split", "metric"]):
        m, se, n = mean_se(g.instability)
        v = verdict(barriers, split, metric, definition)
        row = {"split": split, "metric": metric, "definition": definition, "pairs": len(g),
               "barrier_mean": g.barrier.mean(), "instability_mean": m, "instability_se": se,
               "unit": unit_of(metric), "verdict": v.status}
        if metric == "ppl":
            # the PTB study divides by the path's maximum PPL instead of the endpoints' mean
            row["ptb_normalisation_pct"] = float((100 * g.barrier / g.max_on_path).mean())
            row["ptb_study_reported_pct"] = PTB_STUDY_PPL_INSTABILITY_PCT.get(split, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def instability_figure(barriers: pd.DataFrame, definition: str, profile: str):
    """Instability per metric and split (bars: mean over pairs, error bars: standard error, dots: pairs):
    cross-entropy and perplexity in % of the endpoints' mean, error in points; the 2 thresholds and the
    PTB study's reported perplexity instability."""
    d = barriers[barriers.definition == definition]
    groups = (("relative", ("loss", "ppl")), ("absolute", ("error",)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.38
    rows = []
    for ax, (scale, metrics) in zip(axes, groups):
        for j, split in enumerate(("train", "test")):
            for i, metric in enumerate(metrics):
                g = d[(d.split == split) & (d.metric == metric)]
                x = i + (j - 0.5) * width
                mean, se, _ = mean_se(g.instability)
                ax.bar(x, mean, width, yerr=0 if np.isnan(se) else se, capsize=3, color=COLORS[j], alpha=0.75,
                       label=split if i == 0 else None)
                ax.plot([x] * len(g), g.instability, "k.", ms=4)
                rows += [{"split": split, "metric": metric, "pair": r.pair, "instability": r.instability,
                          "unit": r.unit} for r in g.itertuples()]
        if "ppl" in metrics:
            i_ppl = metrics.index("ppl")
            for j, split in enumerate(("train", "test")):
                ax.plot(i_ppl + (j - 0.5) * width, PTB_STUDY_PPL_INSTABILITY_PCT[split], marker="*", ms=12,
                        color="crimson", ls="", label="PTB study (reported, its normalisation)" if j == 0 else None)
        threshold_line(ax, unit="%" if scale == "relative" else "points")
        ax.set_xticks(range(len(metrics)), [LABELS[m] for m in metrics], fontsize=8)
        ax.set_ylabel(f"instability ({UNITS[scale]})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Instability at initialisation, barrier '{definition}' ({profile} profile; bars: mean over "
                 "pairs ± s.e., dots: pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def describe(barriers: pd.DataFrame, summary: pd.DataFrame, definition: str, profile: str,
             steps: int) -> tuple[str, dict]:
    """The finding in words (Markdown), from this run's numbers, and the numbers as data."""
    lines, numbers = [], {"definition": definition, "steps": steps, "verdicts": []}
    n_pairs = int(summary.pairs.max())
    lines.append(f"**Profile `{profile}`, {n_pairs} pairs, {steps} training steps; barrier `{definition}` "
                 f"({DEFINITION_WORDS[definition]}); mean ± standard error over pairs.**")
    lines.append("")
    for split in ("train", "test"):
        for metric in ("ppl", "error", "loss"):
            v = verdict(barriers, split, metric, definition)
            lines.append(f"- {v.text()}")
            numbers["verdicts"].append({"split": split, "metric": metric, "status": v.status, "mean": v.mean,
                                        "se": v.se, "pairs": v.n, "unit": v.unit})
    lines.append("")
    others = []
    for d in B.DEFINITIONS:
        if d == definition:
            continue
        v = verdict(barriers, "test", "ppl", d)
        others.append(f"`{d}` {v.value} ({'no barrier, convex path' if v.status == 'convex' else v.status})")
    lines.append("Test perplexity under the other definitions: " + "; ".join(others) + ".")
    ptb = summary[summary.metric == "ppl"].set_index("split")
    if "ptb_normalisation_pct" in ptb:
        lines.append("")
        lines.append("Under the PTB study's normalisation (barrier / maximum perplexity on the path), this run "
                     "gives " + " and ".join(f"{ptb.loc[s, 'ptb_normalisation_pct']:.1f} % ({s})"
                                             for s in ("train", "test") if s in ptb.index)
                     + f"; the PTB study reported {PTB_STUDY_PPL_INSTABILITY_PCT['train']:g} % / "
                       f"{PTB_STUDY_PPL_INSTABILITY_PCT['test']:g} % for its longer word-level runs.")
    main = verdict(barriers, "test", "ppl", definition)
    lines.append("")
    conclusion = {
        "unstable": "copies that differ only in SGD noise from initialisation end in different, linearly "
                    "separated basins: the network is **unstable to SGD noise at initialisation**.",
        "stable": "copies that differ only in SGD noise from initialisation stay linearly connected: the "
                  "network is **stable** at initialisation in this setting.",
        "convex": "the path between the copies is convex: **no barrier** separates them.",
        "not finite": "**no finding**: some barriers are not finite.",
    }[main.status]
    lines.append(f"Verdict (test perplexity, `{definition}`, {fmt_spread(main.mean, main.se)} {main.unit}): "
                 + conclusion)
    err = verdict(barriers, "test", "error", definition)
    if err.status != main.status:
        lines.append(f"By Frankle et al.'s error criterion the picture differs: the test-error barrier is "
                     f"{err.value}, so under it the copies are {'no barrier (convex path)' if err.status == 'convex' else err.status}"
                     " — the barrier shows in the confidence of the predictions (cross-entropy, perplexity) more "
                     "than in which token is predicted.")
    numbers["verdict"] = main.status
    numbers["verdict_error"] = err.status
    words = {"unstable": "unstable to SGD noise at initialisation", "stable": "stable to SGD noise at initialisation",
             "convex": "no barrier at initialisation (convex path)", "not finite": "no finding (non-finite barriers)"}
    numbers["headline"] = (f"{words[main.status]} — test perplexity "
                           f"instability {fmt_spread(main.mean, main.se)} {main.unit} (`{definition}`, "
                           f"{main.n} pairs)")
    return "\n".join(lines), numbers
