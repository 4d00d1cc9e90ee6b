"""The summary of notebook 05 in words, from the run's numbers (every line computed; nothing stated for a
statistic that does not exist, such as the stability of a single cluster)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.metrics import fmt_spread, mean_se
from ..analysis.verdict import Interval, difference

CONVEX_NATS = 1e-4  # a subchord barrier at most this (nats) is no bump above any chord: no barrier


def _sign_words(iv: Interval, what: str, higher: str, lower: str) -> str:
    if not iv.bounded:
        return f"{what}: {iv.text(4)} — no interval, so no verdict."
    if iv.low > 0:
        return f"{what}: {iv.text(4, 'nats')} — {higher}."
    if iv.high < 0:
        return f"{what}: {iv.text(4, 'nats')} — {lower}."
    return f"{what}: {iv.text(4, 'nats')} — inconclusive (the interval contains 0)."


def describe(models: pd.DataFrame, modes, mat: np.ndarray, cl, cl2, null, stab: dict, agree: dict, groups,
             planes: dict, dyn: pd.DataFrame, ctrl: dict | None, card: pd.DataFrame, p: dict) -> tuple[str, dict]:
    """(Markdown summary, numbers) of a run of notebook 05."""
    m = len(models)
    enc = "our masked-LM-pretrained encoder" if p["encoder"] == "pretrained" else "MiniLM"
    tokens = int(p["eval_examples"] * (p["words"] + 2))
    lines = [f"**Profile `{p['profile']}`: {m} fine-tunes of {enc} on the phrase task ('{' '.join(p['phrase'])}', "
             f"ε = {p['epsilon']:g}) for {p['finetune_steps']} steps, differing in data order, dropout and "
             f"classifier seed; barrier `{p['definition']}` (Juneja's mod_BH) of the in-distribution test loss on "
             f"{p['eval_examples']} passages ({tokens} tokens), {p['alphas']} α points.**", ""]
    numbers: dict = {"models": m, "epsilon": p["epsilon"]}
    card = card.set_index("split")
    if "accuracy of bag of words" in card:
        lines.append(f"- The task: the bag-of-words heuristic scores {100 * card.loc['id', 'accuracy of bag of words']:.1f} % "
                     f"in distribution and {100 * card.loc['ood', 'accuracy of bag of words']:.1f} % on the HANS-like "
                     "set; the rule scores 100 % on both.")
    lines.append(f"- In-distribution accuracy {fmt_spread(*mean_se(models.id_accuracy)[:2], 3)} (mean ± s.e.); "
                 f"out of distribution from {models.ood_accuracy.min():.3f} to {models.ood_accuracy.max():.3f}.")
    lines.append(f"- **Precondition** — {modes.text()}")
    numbers.update(dip=modes.dip, dip_p=modes.dip_p, delta_bic=modes.delta_bic, bimodality=modes.verdict)
    if modes.bimodal:
        n1 = int((modes.labels == 1).sum())
        lines.append(f"  Two strategies: {m - n1} models in the lower mode (mean {modes.means[0]:.3f}) and {n1} in "
                     f"the higher (mean {modes.means[1]:.3f}); these modes are the strategy groups below.")
    else:
        lines.append("  The precondition is **not met** in this run: the out-of-distribution accuracies do not show "
                     "two strategies, so "
                     + ("the modes below are only the two components of a mixture fitted to them"
                        if modes.verdict != "constant" else "every model is in one mode below")
                     + " and no verdict about strategies is drawn from them.")
    iu = np.triu_indices(m, 1)
    off = mat[iu]
    ends = 0.5 * (models.id_loss.to_numpy()[iu[0]] + models.id_loss.to_numpy()[iu[1]])
    rel = 100 * off / ends
    flat = int((off <= CONVEX_NATS).sum())
    lines.append(f"- Barriers between the {len(off)} pairs: mean {off.mean():.4f} nats (sd {off.std():.4f}, from "
                 f"{off.min():.4f} to {off.max():.4f}); the endpoints' loss is {np.median(ends):.4f} nats (median), so "
                 f"a barrier is {np.median(rel):.0f} % of it (median); {flat} of {len(off)} paths have no bump above "
                 f"any chord (≤ {CONVEX_NATS:g} nats). (Frankle et al.'s 2-point criterion is on the error and is not "
                 "what the clusters use; the matrix is Juneja's loss barrier.)")
    numbers.update(barrier_mean=float(off.mean()), barrier_rel_median=float(np.median(rel)), flat_paths=flat)
    k_t = null.k_tested()
    lines.append(f"- Clusters: the eigengap picks k = {cl.k}; against {len(null.null)} matrices with the same barriers "
                 f"at random places, the largest eigengap for k ≥ 2 (at k = {null.k}) has p = {null.p:.3f}, so "
                 + (f"**k = {k_t}** (cluster structure beyond chance)." if k_t > 1 else
                    "**k = 1** (no more cluster structure than chance)."))
    numbers.update(k_eigengap=cl.k, k_tested=k_t, eigengap_p=null.p)
    stab_txt = ", ".join(f"k = {k}: {fmt_spread(*mean_se(v)[:2], 2)}" for k, v in sorted(stab.items()))
    lines.append(f"- Stability (adjusted Rand index, 80 % of the models clustered again, {p['resamples']} resamples): "
                 f"{stab_txt}" + ("; with one cluster (k = 1) there is no stability to measure." if cl.k == 1 else "."))
    numbers["stability"] = {int(k): float(np.mean(v)) for k, v in stab.items()}
    a2 = agree["k2"]
    lines.append(f"- **Clusters vs strategies** (the central number): adjusted Rand index between the k = 2 clusters "
                 f"and the modes {a2.text(2)}"
                 + (f"; with the eigengap's k = {cl.k}: {agree['eigengap'].text(2)}" if "eigengap" in agree else "")
                 + (". " if modes.bimodal else " (not a finding: the precondition failed). ")
                 + ("The clusters recover the strategies (the interval lies above 0.5)."
                    if modes.bimodal and a2.bounded and a2.low > 0.5 else
                    "The clusters do not recover the strategies (the interval lies below 0.2)."
                    if modes.bimodal and a2.bounded and a2.high < 0.2 else
                    "Inconclusive: the interval lies neither above 0.5 (clusters recover the strategies) nor below "
                    "0.2 (they do not); at most a weak agreement." if modes.bimodal else ""))
    numbers.update(ari_k2=a2.estimate, ari_k2_low=a2.low, ari_k2_high=a2.high)
    t = groups.table.set_index("group")
    lines.append("- Barriers within vs across modes: " + "; ".join(
        (f"{g} {r.mean_barrier:.4f} [{r.low:.4f}, {r.high:.4f}] ({int(r.pairs)} pairs)" if r.pairs else f"{g}: no pairs")
        for g, r in t.iterrows()) + ".")
    if t.loc["across modes", "pairs"] and (t.loc["within mode 0", "pairs"] or t.loc["within mode 1", "pairs"]):
        lines.append("  " + _sign_words(groups.across_minus_within, "Across minus within (95 % interval over models)",
                                        "higher across the strategies, as Juneja et al. found",
                                        "lower across the strategies than within"))
        numbers.update(across_minus_within=groups.across_minus_within.estimate)
    else:
        lines.append("  With a single mode there are no pairs to compare within and across, so no difference.")
    pid, pood = planes["id"], planes["ood"]
    lines.append(f"- Plane through models of both modes: in-distribution ECE from {np.nanmin(pid['ece']):.3f} to "
                 f"{np.nanmax(pid['ece']):.3f}; out-of-distribution accuracy from {np.nanmin(pood['accuracy']):.3f} "
                 f"to {np.nanmax(pood['accuracy']):.3f}.")
    s0, s1 = (models[models["mode"] == c].sharpness.to_numpy() for c in (0, 1))
    what = f"- ε-sharpness (projected ascent, up to {p['sharpness_passes']} passes)"
    if len(s0) and len(s1):
        sd = difference(s1, s0)
        diff = (f"{sd.estimate:.3f} [{sd.low:.3f}, {sd.high:.3f}] (95 % bootstrap interval, models resampled within "
                "each mode)" if sd.bounded else f"{sd.estimate:.3f} (too few models for an interval)")
        lines.append(f"{what}: mode 0 {fmt_spread(*mean_se(s0)[:2], 3)}, mode 1 {fmt_spread(*mean_se(s1)[:2], 3)}; "
                     f"mode 1 minus mode 0 {diff}"
                     + (" — inconclusive." if not sd.bounded or sd.low <= 0 <= sd.high else
                        " — the modes differ in sharpness."))
        numbers["sharpness_difference"] = sd.estimate
    else:
        lines.append(f"{what}: {fmt_spread(*mean_se(models.sharpness)[:2], 3)} (mean ± s.e. over all models; one "
                     "mode only, so no comparison).")
    steps = sorted(dyn.step.unique())
    if len(steps) > 1:
        piv = dyn.pivot_table(index="model", columns="step", values="cluster")
        pm = dyn.pivot_table(index="model", columns="step", values="mode")
        ch = [float((piv[a] != piv[b]).mean()) for a, b in zip(steps, steps[1:])]
        mo = [float((pm[a] != pm[b]).mean()) for a, b in zip(steps, steps[1:])]
        lines.append("- During fine-tuning (share of models that change between consecutive steps): "
                     + ", ".join(f"{a}→{b}: cluster {100 * c:.0f} %, mode {100 * d:.0f} %"
                                 for a, b, c, d in zip(steps, steps[1:], ch, mo)) + ".")
        numbers["cluster_changes"] = ch
    if ctrl is not None:
        tc = ctrl["test"]
        cb = ctrl["pairs"].barrier.to_numpy()
        cflat = int((cb <= CONVEX_NATS).sum())
        lines.append(f"- Control (LM continuation, {ctrl['models']} fine-tunes of notebook 03's character LM on more "
                     f"Shakespeare, one cluster expected): barriers from {cb.min():.4f} to {cb.max():.4f} nats "
                     f"({np.median(ctrl['relative']):.2f} % of the endpoints' loss, median); {cflat} of {len(cb)} paths "
                     f"have no bump above any chord; eigengap test p = {tc.p:.3f}, so k = {tc.k_tested()}"
                     + (" — as expected." if tc.k_tested() == 1 else " — not what the setting predicts."))
        numbers.update(control_k=tc.k_tested(), control_p=tc.p)
    numbers["headline"] = (f"OOD accuracy {modes.verdict}; clusters vs strategies ARI {a2.estimate:.2f}"
                           + (f" [{a2.low:.2f}, {a2.high:.2f}]" if a2.bounded else "") + f"; k = {k_t} (tested)")
    return "\n".join(lines), numbers
