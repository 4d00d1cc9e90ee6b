"""The findings of notebook 05: both eigengap nulls; the agreement of clusters and modes and across-minus-within,
each against the mode labels permuted among the models (the units); barriers within and across the modes with
intervals over the models they share; sharpness of the two modes as two arms of models. A question about the
modes is not testable when the precondition (two modes of out-of-distribution accuracy) fails."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..analysis import findings as F
from ..analysis.criteria import CONVEX_NATS
from ..analysis.metrics import fmt_spread, mean_se
from ..analysis.strategies import GROUPS, group_pairs
from .base import Summary
from .reference import JUNEJA_SHARPNESS_EPS

NO_MODES = "the out-of-distribution accuracies show no two strategies (the precondition)"
WITHIN = "(mean ± s.e.)"


def _gap(t, question: str, m: int, how: str = "") -> F.Finding:
    return F.structure(t.gap, t.null, question=question, metric=f"largest eigengap for k ≥ 2, at k = {t.k}{how}",
                       n_units=m)


def structures(p, d: dict) -> dict[str, F.Finding]:
    """Every permutation-null Finding of a run: eigengap, row_null, ari_k2 (ari_eigengap), amw, control."""
    m = len(d["mat"])
    out = {"eigengap": _gap(d["eigengap"], "Cluster structure beyond the same barriers at random places", m),
           "row_null": _gap(d["row_null"], "Cluster structure beyond each model's own level of barriers", m,
                            "; row effects of b_ij = r_i + r_j + e_ij kept, residuals permuted")}
    for name, (obs, null) in d["ari"].items():
        out[f"ari_{name}"] = F.structure(obs, null, question=f"Clusters (k = {2 if name == 'k2' else d['cl'].k}) vs "
                                         "strategy modes", metric="adjusted Rand index; mode labels permuted among "
                                         "the models, clusters fixed", n_units=m)
    out["amw"] = F.structure(*d["amw"], question="Barriers across the modes above those within", metric="the mean "
                             "barrier across the modes minus the average of the two within-mode means; mode labels "
                             "permuted among the models, rows and columns together", unit="nats", n_units=m, digits=4)
    for key in ("ari_k2", "ari_eigengap", "amw"):
        if key in out and not d["modes"].bimodal:
            out[key] = replace(out[key], verdict=F.NOT_TESTABLE, reason=NO_MODES)
    if "ctrl" in d:
        out["control"] = _gap(d["ctrl"]["test"], "Control (one cluster expected): cluster structure beyond the "
                              "barriers at random places", d["ctrl"]["models"])
    return out


def group_findings(p, mat: np.ndarray, labels) -> dict[str, F.Finding]:
    """The mean barrier within each mode and across the modes, with its interval over the models (they share
    the pairs: findings.shared_pairs, no criterion)."""
    return {g: F.shared_pairs(mat[a, b], a, b, criterion=None, question=f"Mean barrier {g}", metric=f"`{p.definition}`,"
                              " in-distribution test loss", unit="nats", digits=4)
            for g, (a, b) in group_pairs(labels).items() if a.size}


def _task_lines(p, d: dict) -> list[str]:
    models, modes, card = d["models"], d["modes"], d["card"].set_index("split")
    bow = "accuracy of bag of words"
    n1 = int((modes.labels == 1).sum())
    return ([f"- The task: the bag-of-words heuristic scores {100 * card.loc['id', bow]:.1f} % in distribution and "
             f"{100 * card.loc['ood', bow]:.1f} % on the HANS-like set; the rule scores 100 % on both."] * (bow in card)
            + [f"- In-distribution accuracy {fmt_spread(*mean_se(models.id_accuracy)[:2], 3)} {WITHIN}; out of "
               f"distribution from {models.ood_accuracy.min():.3f} to {models.ood_accuracy.max():.3f}.",
               f"- **Precondition** — {modes.text()}",
               f"  Two strategies: {len(models) - n1} models in the lower mode (mean {modes.means[0]:.3f}) and {n1} "
               f"in the higher (mean {modes.means[1]:.3f}); these modes are the strategy groups below." if modes.bimodal
               else "  The precondition is **not met** in this run: the out-of-distribution accuracies do not show two"
               " strategies, so no question about the modes below can be tested."])


def _barrier_lines(p, d: dict) -> list[str]:
    mat, loss, cl = d["mat"], d["models"].id_loss.to_numpy(), d["cl"]
    iu = np.triu_indices(len(mat), 1)
    off, ends = mat[iu], 0.5 * (loss[iu[0]] + loss[iu[1]])
    stab = ", ".join(f"k = {k}: {np.mean(v):.2f} (from {np.min(v):.2f} to {np.max(v):.2f})"
                     for k, v in sorted(d["stab"].items()))
    return [f"- Barriers between the {len(off)} pairs: mean {off.mean():.4f} nats (sd {off.std(ddof=1):.4f}, from "
            f"{off.min():.4f} to {off.max():.4f}); the endpoints' loss is {np.median(ends):.4f} nats (median), so a "
            f"barrier is {np.median(100 * off / ends):.0f} % of it (median); {int((off <= CONVEX_NATS).sum())} of "
            f"{len(off)} paths have no bump above any chord (≤ {CONVEX_NATS:g} nats). (Frankle et al.'s 2-point "
            "criterion is on the error and is not what the clusters use; the matrix is Juneja's loss barrier.)",
            f"- Clusters: the eigengap picks k = {cl.k} (affinity scale δ = {cl.delta:.3g} nats); its largest gap for "
            f"k ≥ 2 against {p.null_resamples} permuted matrices of each null:",
            f"- Stability (adjusted Rand index, 80 % of the models clustered again, {p.resamples} subsamples; mean and "
            f"range): {stab}" + ("; with one cluster (k = 1) there is no stability to measure." if cl.k == 1 else ".")]


def _sharpness(p, d: dict) -> list:
    models = d["models"]
    s0, s1 = (models[models["mode"] == c].sharpness.to_numpy() for c in (0, 1))
    what = (f"ε-sharpness at ε = {p.sharpness_eps:g} (Juneja et al.'s: {JUNEJA_SHARPNESS_EPS:g}), projected ascent up to "
            f"{p.sharpness_passes} passes")
    if not (len(s0) > 1 and len(s1) > 1):  # stats.two_sample_test needs two models per arm
        return [f"- {what}: {fmt_spread(*mean_se(models.sharpness)[:2], 3)} {WITHIN} over all models; a mode with "
                "fewer than two models, so no comparison."]
    # three significant digits of the larger mode's mean (Juneja's ε gives sharpness of order 1e-3 to 1e-2)
    dig = int(min(12, max(3, 2 - np.floor(np.log10(max(np.abs(np.r_[s0, s1]).max(), 1e-12))))))
    f = F.arms(s1, s0, question=what, metric="100 (L_max − L_0)/(1 + L_0)", unit="", names=("mode 1", "mode 0"),
               unit_name="model", digits=dig)
    zero = int((np.r_[s0, s1] == 0).sum())
    if not d["modes"].bimodal:
        f = replace(f, verdict=F.NOT_TESTABLE, reason=NO_MODES)
    elif zero:  # the ascent gained nothing inside the box: below what this measurement resolves, not flat
        f = replace(f, verdict=F.NOT_TESTABLE, reason=f"{zero} of {len(s0) + len(s1)} models measure exactly 0 (the "
                    "ascent gained nothing inside the box: below this measurement's resolution at this ε), so the "
                    "modes cannot be ranked")
    return [f"- {what}: mode 0 {fmt_spread(*mean_se(s0)[:2], dig)}, mode 1 {fmt_spread(*mean_se(s1)[:2], dig)} "
            f"{WITHIN}.", f]


def _later_lines(p, d: dict) -> list[str]:
    pid, pood, dyn = d["planes"]["id"], d["planes"]["ood"], d["dynamics"]
    out = [f"- Plane through models of both modes: in-distribution ECE from {np.nanmin(pid['ece']):.3f} to "
           f"{np.nanmax(pid['ece']):.3f}; out-of-distribution accuracy from {np.nanmin(pood['accuracy']):.3f} to "
           f"{np.nanmax(pood['accuracy']):.3f}."]
    steps = sorted(dyn.step.unique())
    if len(steps) > 1:
        piv, pm = (dyn.pivot_table(index="model", columns="step", values=v) for v in ("cluster", "mode"))
        end = piv[steps[-1]]
        same = 100 * (end.to_numpy() == np.asarray(d["cl2"].labels)[end.index.to_numpy()]).mean()
        out.append(f"- During fine-tuning (share of models that change between consecutive steps; clusters of every "
                   f"step on the same first {p.dynamics_examples} of the {p.eval_examples} evaluation passages, for "
                   "cost: one matrix per step): " + ", ".join(
                       f"{a}→{b}: cluster {100 * (piv[a] != piv[b]).mean():.0f} %, mode "
                       f"{100 * (pm[a] != pm[b]).mean():.0f} %" for a, b in zip(steps, steps[1:]))
                   + f". At the end, the clusters on those {p.dynamics_examples} passages agree with the main "
                   f"matrix's for {same:.0f} % of the models.")
    if "ctrl" in d:
        c = d["ctrl"]
        cb = c["pairs"].barrier.to_numpy()
        out.append(f"- Control (LM continuation, {c['models']} fine-tunes of notebook 03's character LM on more "
                   f"Shakespeare): barriers from {cb.min():.4f} to {cb.max():.4f} nats ({np.median(c['relative']):.2f} "
                   f"% of the endpoints' loss, median); {int((cb <= CONVEX_NATS).sum())} of {len(cb)} paths have no "
                   "bump above any chord.")
    return out


def _null_lines(d: dict, s: dict) -> list[str]:
    """The within-mode barriers set against Juneja et al.'s picture (each strategy one connected basin), and the
    central result read as what it is: above chance, or a null with the smallest effect the design could see."""
    g, out = d["group_findings"], []
    if not d["modes"].bimodal:
        return out
    if GROUPS[0] in g and GROUPS[1] in g:
        w0, w1 = g[GROUPS[0]], g[GROUPS[1]]
        apart = w1.low > w0.high or w0.low > w1.high
        rule = "less" if w1.estimate > w0.estimate else "more"
        out.append(f"- Within the modes: the higher-accuracy mode's pairs have a mean barrier of {w1.short()} nats, "
                   f"the lower (heuristic) mode's {w0.short()}. " + (
                       f"Their intervals do not overlap: the mode that generalises better is the {rule} internally "
                       "connected one" + (", the opposite of Juneja et al.'s picture, in which the fine-tunes that "
                                          "generalise share one connected basin." if rule == "less" else ".")
                       if apart else "Their intervals overlap, so no mode is called the more connected one."))
    ari, amw = s["ari_k2"], s["amw"]
    if F.ABOVE_CHANCE not in (ari.verdict, amw.verdict):
        out.append(f"- So this run finds no link between barrier clusters and strategies (a null): the agreement "
                   f"ARI {ari.estimate:.3f} (p = {ari.p_value:.2g}) and across − within {amw.estimate:.4f} nats (p = "
                   f"{amw.p_value:.2g}) are within their permutation nulls. What it could have seen: with "
                   f"{ari.n_units} fine-tunes of one small encoder, an ARI above {ari.detectable:.3f} (the null's 95th "
                   f"percentile; perfect recovery: 1) or an across − within difference above {amw.detectable:.4f} "
                   f"nats would have been called {F.ABOVE_CHANCE}; a weaker link is not ruled out.")
    return out


def describe(p, d: dict) -> Summary:
    """The run's findings; the headline is the agreement of the k = 2 clusters with the strategy modes."""
    s, lines = structures(p, d), _barrier_lines(p, d)
    body = [*_task_lines(p, d), *lines[:2], s["eigengap"], s["row_null"], lines[2],
            "- **Clusters vs strategies** (the central number):", s["ari_k2"], *[s[k] for k in ("ari_eigengap",) if k
            in s], *d["group_findings"].values(), s["amw"], *_null_lines(d, s), *_sharpness(p, d), *_later_lines(p, d),
            *[s[k] for k in ("control",) if k in s]]
    modes, t = d["modes"], s["eigengap"]
    numbers = {"models": p.models, "epsilon": p.epsilon, "dip": modes.dip, "dip_p": modes.dip_p, "delta_bic":
               modes.delta_bic, "bimodality": modes.verdict, "k_eigengap": d["cl"].k, "k_tested": d["eigengap"].k if
               t.verdict == F.ABOVE_CHANCE else 1, "stability": {int(k): float(np.mean(v)) for k, v in d["stab"].items()}}
    return Summary(_setting(p), body, s["ari_k2"], numbers)


def _setting(p) -> str:
    enc = "our masked-LM-pretrained encoder" if p.encoder == "pretrained" else "MiniLM"
    return (f"Profile `{p.profile}`: {p.models} fine-tunes of {enc} on the phrase task ('{' '.join(p.phrase)}', "
            f"task ε = {p.epsilon:g}: the share of training passages drawn with both words out of order) for "
            f"{p.finetune_steps} steps, "
            "differing in data order, dropout and classifier seed; "
            f"barrier `{p.definition}` (Juneja's mod_BH) of the in-distribution test loss on {p.eval_examples} "
            f"passages ({p.eval_examples * (p.words + 2)} tokens), {p.alphas} α points.")
