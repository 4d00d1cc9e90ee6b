"""Figures and findings of notebook 03 (lmc_core.studies.finetuning)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis import findings as F
from ..analysis.criteria import (CONVEX_TOL, ENDPOINT_MATCH_NATS, FRANKLE, LEARNED_FRACTION, PERCENT, POINTS,
                                 RELATIVE_LOSS)
from ..analysis.pair_paths import not_converged
from ..analysis.forgetting import confidence_gaps, forgetting_summary
from ..analysis.metrics import LABELS, bounds_of, criterion_of, unit_of
from ..analysis.stats import MIN_UNITS
from ..publish import pair_plots as P
from .base import Summary
from .finetuning_encoder import CHAINED
from .lm_setup import DEFINITION_WORDS

DEMO = "pipeline demonstration: endpoints not converged"
SCRATCH, PRETRAINED = "from scratch, SGD noise", "pretrained, SGD noise"
ONE_RUN = "pairs of one pretraining run's fine-tunes"  # the pretrained arms: conditional on that one run


def metric_label(model: str, metric: str) -> str:
    """Axis words for a metric: the LM's are per token; the encoder classifies passages."""
    if model == "lm":
        return LABELS.get(metric, metric)
    return {"loss": "cross-entropy (nats per passage)", "error": "classification error"}.get(metric, metric)


def units_of(model: str, comparison: str, n: int) -> tuple[np.ndarray | None, str]:
    """(unit labels of a comparison's n pairs or None: every pair its own unit, the units' name)."""
    if model == "lm":
        return None, "initialisation" if comparison == SCRATCH else ONE_RUN
    return (np.zeros(n), "chain of pairs sharing copies") if comparison == CHAINED else (None, "pair")


def demo_note(endpoints: pd.DataFrame | None) -> str:
    """'' when every encoder run reached its plateau, else the label and what was measured."""
    if not not_converged(endpoints):
        return ""
    main = endpoints.iloc[0]
    how = (f"not learned: test loss within {100 * (1 - LEARNED_FRACTION):g} % of a uniform guess's"
           if not main.get("learned", True) else
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
    note = demo_note(endpoints) if model == "encoder" else ""
    what = ("character-level pre-norm LM, windows from every held-out play" if model == "lm" else
            "MiniLM on Shakespeare passages" + (" (dashed: the second task of the task pair)"
                                                 if (c.split != "test").any() else ""))
    return P.mean_paths_figure(c, {m: metric_label(model, m) for m in ("loss", "error")}, f"Loss along the path, "
                               f"{what} ({profile} profile; mean over pairs)" + (f"\n{note}" if note else ""))


def barrier_figure(table: pd.DataFrame, definition: str, profile: str, endpoints: pd.DataFrame | None = None):
    """Instability per comparison against the thresholds: the error in points (Frankle et al.'s criterion) and
    the loss in % of the endpoints' mean, for the LM and the encoder (publish.pair_plots.barrier_panels_figure)."""
    demo = "\n" + DEMO if demo_note(endpoints) else ""
    panels = [(m, k, ("our pretrained LM" if m == "lm" else "MiniLM") + (", Frankle's criterion" if k == "error" else
               "") + (demo if m == "encoder" else ""), f"instability, test {metric_label(m, k)} ({unit_of(k)})")
              for m in ("lm", "encoder") for k in ("error", "loss") if ((table.model == m) & (table.metric == k)).any()]
    return P.barrier_panels_figure(table, definition, panels, units_of, f"Barrier `{definition}` between fine-tuned "
                                   f"endpoints ({profile} profile; bars: estimate and {F.interval_words('units')}; "
                                   "dots: pairs, hollow = convex path; hatched bar: every path convex, so the value is "
                                   "half the endpoints' gap, not a barrier)")


def distance_figure(table: pd.DataFrame, definition: str, profile: str):
    """RMS distance per compared parameter (comparable across tuning modes and models) against the loss barrier; a
    panel per model that ran."""
    panels = [(m, "our pretrained LM" if m == "lm" else "MiniLM (tuned parameters only)",
               f"instability, test {metric_label(m, 'loss')}") for m in ("lm", "encoder") if (table.model == m).any()]
    lora = " — for adapters and LoRA over their own factors, not the change of the weights they adapt" if \
        (table.model == "encoder").any() else ""
    return P.distance_figure(table, definition, panels, f"Distance between the endpoints vs barrier `{definition}` "
                             f"({profile} profile; RMS per compared parameter{lora})")


def forgetting_figure(f: pd.DataFrame, profile: str, endpoints: pd.DataFrame | None = None):
    """Per pair, passages forgotten along the path vs a random direction; their confidence during training (labelled
    a pipeline demonstration where the encoder's endpoints did not converge)."""
    demo = f" — {DEMO}" if demo_note(endpoints) else ""
    return P.forgetting_figure(f, f"Forgetting along the path, training passages (MiniLM, full fine-tuning; "
                               f"{profile} profile){demo}")


def _select(table, model, comp, metric, d):
    return table[(table.model == model) & (table.comparison == comp) & (table.metric == metric)
                 & (table.definition == d) & (table.split == "test")]


def judged(table: pd.DataFrame, model: str, comp: str, metric: str, d: str) -> F.Finding:
    """A comparison's threshold finding: its pairs' instability under `d` summarised per unit (units_of), convex
    paths tagged by their `chord`, judged by criterion_of(metric)."""
    g = _select(table, model, comp, metric, d)
    units, name = units_of(model, comp, len(g))
    what = "cross-entropy" if metric == "loss" else metric_label(model, metric)
    return F.threshold(g.instability, g.chord_instability, units, criterion=criterion_of(metric), question=comp,
                       metric=f"test {what}, barrier `{d}`", unit_name=name, bounds=bounds_of(metric, d))


def lm_findings(table: pd.DataFrame, p) -> tuple[list, F.Finding]:
    """Every LM comparison by its two criteria, and the scratch-minus-pretrained contrast (the headline)."""
    d, lm = p.definition, table[table.model == "lm"]
    body = [f"Our pretrained LM ({p.pretrain_steps} pretraining steps on the training plays, {p.finetune_steps} "
            f"fine-tuning steps on held-out plays at lr {p.finetune_lr:g}; the scratch arm runs the same two stages "
            "as copies split at initialisation; test windows from every unseen play). The pretrained arms' pairs all "
            "descend from one pretraining run, so their findings are conditional on it; each scratch pair has its own "
            "initialisation."]
    for comp in dict.fromkeys(lm.comparison):
        body += [judged(table, "lm", comp, "error", d), judged(table, "lm", comp, "loss", d)]
    sc, pre = (_select(table, "lm", c, "loss", "chord") for c in (SCRATCH, PRETRAINED))
    head = F.arms(sc.instability, pre.instability, question="LM loss barrier of copies trained from scratch against "
                  "copies fine-tuned from one pretraining run", metric="test cross-entropy, barrier `chord`, 0 on a "
                  f"convex path (chord ≤ {CONVEX_TOL:g})", unit=PERCENT, convex_tol=CONVEX_TOL,
                  names=("scratch", "pretrained"), expected=F.HIGHER,
                  unit_name=f"pair ({len(sc)} of scratch initialisations, {len(pre)} fine-tuned from one pretraining run)",
                  reference="Qin et al. and the GPT-2 Shakespeare study expect fine-tuned copies of a pretrained model "
                  "to stay connected while copies trained from scratch do not")
    n_arm = min(len(sc), len(pre))
    if n_arm < MIN_UNITS:  # an exact test exists at 4 vs 4, but the findings layer judges from 5 units per arm on
        head = replace(head, verdict=F.TOO_FEW, n_units=n_arm, unit_name="pairs (per arm)")
    gap = float(sc.endpoint_mean.mean() - pre.endpoint_mean.mean())
    body.insert(1, f"- Precondition: the scratch arm's endpoints reach a test loss of {sc.endpoint_mean.mean():.3f} "
                f"nats, the pretrained fine-tunes' {pre.endpoint_mean.mean():.3f} ({gap:+.3f}); "
                + (f"within {ENDPOINT_MATCH_NATS:g} nats, so the arms compare endpoints of the same quality."
                   if abs(gap) <= ENDPOINT_MATCH_NATS else f"more than {ENDPOINT_MATCH_NATS:g} nats apart, so the "
                   "contrast below is confounded with endpoint quality."))
    body.append(head)
    return body, head


def encoder_findings(table: pd.DataFrame, endpoints: pd.DataFrame | None, p) -> list:
    """Every MiniLM comparison by its two criteria, labelled a pipeline demonstration where the endpoints did not
    converge."""
    enc, note = table[table.model == "encoder"], demo_note(endpoints)
    data = (f"the task pair adds {p.enc_task2.replace('_', '/')})" if p.enc_controls else
            "no data-halves or two-task runs in this profile)")
    body = ["", f"MiniLM (its first {p.enc_layers} layers, {p.enc_steps} fine-tuning steps on the "
            f"{p.enc_task.replace('_', '/')} task; test loss and error on {p.enc_eval} passages of unseen plays; {data}"
            + (f" — **{note}**: these comparisons show that the pipeline works, not Qin et al.'s effects." if note
               else ":")]
    for comp in dict.fromkeys(enc.comparison):
        body += [judged(table, "encoder", comp, "error", p.definition),
                 judged(table, "encoder", comp, "loss", p.definition)]
    return body


def forgetting_findings(f: pd.DataFrame, p, endpoints: pd.DataFrame | None = None) -> list:
    """Forgetting along the path against the random direction, paired by pair, and the cartography gap."""
    s = forgetting_summary(f)
    demo = f"; {DEMO} (above): the measurement, not Qin et al.'s effect" if demo_note(endpoints) else ""
    body = ["", f"Forgetting ({len(s)} full fine-tuning pairs, {p.enc_train_sample} *training* passages, where the "
            f"cartography is measured{demo}): "
            f"of the passages right at both endpoints ({s.passages_right_at_both.mean():.0f} per pair), "
            f"{s.forgotten_count.mean():.1f} per pair ({100 * s.forgotten_path.mean():.1f} %) turn wrong somewhere "
            f"inside the path A → B and {100 * s.forgotten_random.mean():.1f} % inside a path of the same length in a "
            f"random direction from A; a further {s.wrong_at_b.mean():.1f} per pair are right at A but wrong at B "
            "(the endpoint's own error, not forgetting along the path).",
            F.paired(100 * (s.forgotten_path - s.forgotten_random), question="Passages forgotten along the path minus "
                     "along the random direction", metric="of those right at both endpoints, per pair", unit=POINTS,
                     expected=F.HIGHER, digits=1)]
    if "forgotten_path_low_margin" in s:
        body.append(F.paired(100 * (s.forgotten_path_low_margin - s.forgotten_random_low_margin), question="The same "
                             "among the passages nearest the decision boundary (the half with the smallest margin at "
                             "either endpoint)", metric="per pair", unit=POINTS, expected=F.HIGHER, digits=1))
    gaps = confidence_gaps(f)
    if len(gaps):
        body.append(F.paired(gaps.gap, question="Dataset cartography: confidence during training of the forgotten "
                             "minus the kept passages", metric="mean probability of the true label, per pair",
                             unit="", expected=F.LOWER, digits=3, reference="Qin et al. 2022 found the least "
                             "confident passages forgotten first"))
    return body


def describe(table: pd.DataFrame, forgetting: pd.DataFrame | None, endpoints: pd.DataFrame | None, p) -> Summary:
    """The run's findings (findings layer); the headline is the scratch-minus-pretrained contrast."""
    body, head = lm_findings(table, p)
    numbers = {"definition": p.definition, "encoder_converged": None}
    if (table.model == "encoder").any():
        body += encoder_findings(table, endpoints, p)
        numbers["encoder_converged"] = not not_converged(endpoints)
    if forgetting is not None and len(forgetting):
        body += forgetting_findings(forgetting, p, endpoints)
    setting = (f"Profile `{p.profile}`; barrier `{p.definition}` ({DEFINITION_WORDS[p.definition]}), each path's "
               f"`chord` tags it convex (no barrier); error barriers in {POINTS} against {FRANKLE.words()} (Frankle "
               f"et al.), loss barriers in {PERCENT} against {RELATIVE_LOSS.words()}; intervals over the independent "
               f"units, their range (and no verdict) below {MIN_UNITS} units.")
    return Summary(setting, body, head, numbers)
