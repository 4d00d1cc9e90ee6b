"""The numbers of notebook 05 read off the fine-tunes and their barrier matrix: per-model evaluation, the
agreement of clusters with strategy modes, barriers within and across modes, and clusters during
fine-tuning. Intervals resample the independent unit, the fine-tuned model (pairs share models)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.cluster import adjusted_rand, match_labels, spectral_clusters
from ..analysis.landscape import barrier_matrix, ece, matrix_key
from ..analysis.modes import bimodality
from ..analysis.verdict import CONFIDENCE, Interval
from ..data.strategies import CATEGORIES
from ..ensemble import stack_states

GROUPS = ("within mode 0", "within mode 1", "across modes")


def model_table(fam, cfg, state, ev: dict, ood_category, device) -> pd.DataFrame:
    """Per model: in- and out-of-distribution loss, accuracy and ECE, and out-of-distribution accuracy on the
    entailed and the order (non-entailed) passages."""
    rows: dict = {"model": np.arange(next(iter(state.values())).shape[0])}
    for split, ex in ev.items():
        r = fam.evaluate(cfg, state, ex, batch_size=256, device=device, keep=("examples", "confidence"))
        rows[f"{split}_loss"] = r.loss
        rows[f"{split}_accuracy"] = r.accuracy
        rows[f"{split}_ece"] = [ece(r.confidence[q], r.per_example_correct[q]) for q in range(len(r.loss))]
        if split == "ood":
            cat = np.asarray(ood_category)[: r.per_example_correct.shape[1]]
            for c in (0, 2):
                rows[f"ood_accuracy_{CATEGORIES[c]}"] = r.per_example_correct[:, cat == c].mean(1)
    return pd.DataFrame(rows)


def _interval(est: float, dist: np.ndarray, n: int, unit: str = "model") -> Interval:
    d = np.asarray(dist, dtype=float)
    d = d[np.isfinite(d)]
    if not np.isfinite(est) or d.size < 10:
        return Interval(est, float("nan"), float("nan"), n, n, unit)
    lo, hi = np.quantile(d, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return Interval(float(est), float(lo), float(hi), n, n * (n - 1) // 2, unit)


def agreement(mat: np.ndarray, clustering, modes: np.ndarray, n_boot: int = 999, seed: int = 0) -> Interval:
    """Adjusted Rand index between the clusters of the barrier matrix and the strategy modes, with a bootstrap
    interval: models resampled with replacement, their sub-matrix clustered again (same k and affinity scale)."""
    est = adjusted_rand(clustering.labels, modes)
    rng = np.random.default_rng(seed)
    m = len(mat)
    dist = np.empty(n_boot)
    for r in range(n_boot):
        idx = rng.integers(0, m, m)
        if len(set(modes[idx].tolist())) < 2 or len(set(idx.tolist())) <= clustering.k:
            dist[r] = np.nan
            continue
        sub = spectral_clusters(mat[np.ix_(idx, idx)], clustering.k, clustering.delta, seed=seed + r + 1)
        dist[r] = adjusted_rand(sub.labels, modes[idx])
    return _interval(est, dist, m)


@dataclass
class GroupBarriers:
    """Mean barrier of the pairs within each strategy mode and across them, and across minus within, each with
    a bootstrap interval over models (resampled within their mode)."""

    table: pd.DataFrame
    across_minus_within: Interval


def _group_means(mat: np.ndarray, modes: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    i, j = np.triu_indices(len(idx), 1)
    a, b = idx[i], idx[j]
    keep = a != b  # a model drawn twice is not a pair
    a, b = a[keep], b[keep]
    vals = mat[a, b]
    ma, mb = modes[a], modes[b]
    out = {GROUPS[0]: vals[(ma == 0) & (mb == 0)], GROUPS[1]: vals[(ma == 1) & (mb == 1)], GROUPS[2]: vals[ma != mb]}
    return {k: float(v.mean()) if v.size else float("nan") for k, v in out.items()}


def group_barriers(mat: np.ndarray, modes: np.ndarray, n_boot: int = 999, seed: int = 0) -> GroupBarriers:
    """Barriers within and across the strategy modes (module docstring)."""
    m = len(mat)
    modes = np.asarray(modes)
    full = _group_means(mat, modes, np.arange(m))
    within = np.nanmean([full[GROUPS[0]], full[GROUPS[1]]])
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(modes == c) for c in (0, 1)]
    boots = {g: np.empty(n_boot) for g in GROUPS}
    diff = np.empty(n_boot)
    for r in range(n_boot):
        idx = np.concatenate([rng.choice(g, len(g)) for g in members if len(g)])
        gm = _group_means(mat, modes, idx)
        for g in GROUPS:
            boots[g][r] = gm[g]
        diff[r] = gm[GROUPS[2]] - np.nanmean([gm[GROUPS[0]], gm[GROUPS[1]]]) if np.isfinite(gm[GROUPS[2]]) else np.nan
    counts = {GROUPS[0]: len(members[0]) * (len(members[0]) - 1) // 2,
              GROUPS[1]: len(members[1]) * (len(members[1]) - 1) // 2, GROUPS[2]: len(members[0]) * len(members[1])}
    rows = []
    for g in GROUPS:
        iv = _interval(full[g], boots[g], m)
        rows.append({"group": g, "pairs": counts[g], "mean_barrier": iv.estimate, "low": iv.low, "high": iv.high})
    est = full[GROUPS[2]] - within if np.isfinite(full[GROUPS[2]]) and np.isfinite(within) else float("nan")
    return GroupBarriers(pd.DataFrame(rows), _interval(est, diff, m))


def plane_models(modes: np.ndarray, ood_accuracy: np.ndarray) -> list[int]:
    """Three models for the plane: with two modes, the two most typical of the larger mode and the most typical
    of the other (closest to their mode's median out-of-distribution accuracy); else the first three."""
    groups = [np.flatnonzero(modes == c) for c in (0, 1)]
    if min(len(g) for g in groups) == 0:
        return [0, 1, 2]
    big, small = sorted(groups, key=len, reverse=True)
    if len(big) < 2:
        return [0, 1, 2]
    typical = lambda g: g[np.argsort(np.abs(ood_accuracy[g] - np.median(ood_accuracy[g])), kind="stable")]  # noqa: E731
    a, b = typical(big)[:2]
    return [int(a), int(b), int(typical(small)[0])]


def sharpness_batches(fam, spec, examples, n: int) -> list[dict]:
    """The first n training batches of the fine-tuning data ([1, B, ...] tensors)."""
    ex = fam.train_examples(spec, examples)
    bs = spec.train.batch_size
    return [{k: t[i * bs : (i + 1) * bs][None] for k, t in ex.tensors.items()} for i in range(n)]


def explorer_pairs(mat: np.ndarray, modes: np.ndarray, per_group: int = 2) -> list[tuple[int, int]]:
    """Pairs for the explorer: the highest-barrier pairs within each mode and across modes."""
    i, j = np.triu_indices(len(mat), 1)
    out = []
    for same in (lambda a, b: (modes[a] == 0) & (modes[b] == 0), lambda a, b: (modes[a] == 1) & (modes[b] == 1),
                 lambda a, b: modes[a] != modes[b]):
        sel = np.flatnonzero(same(i, j))
        top = sel[np.argsort(-mat[i[sel], j[sel]], kind="stable")[:per_group]]
        out += [(int(i[q]), int(j[q])) for q in top]
    return out


def stability_table(stab: dict[int, np.ndarray]) -> pd.DataFrame:
    """Adjusted Rand index per k and resample."""
    return pd.DataFrame([{"k": k, "resample": r, "ari": float(v)} for k, a in stab.items() for r, v in enumerate(a)])


def dynamics(p: dict, fam, cfg, store, done, ev: dict, alphas, final, ids, device) -> pd.DataFrame:
    """At each kept fine-tuning checkpoint: every model's out-of-distribution accuracy, its mode (two-component
    mixture of that step) and its cluster (k = 2 on the barrier matrix of that step, from the first
    `dynamics_examples` in-distribution examples; labels matched to the final clusters). `final_rows` adds
    the end."""
    rows = []
    n = p["dynamics_examples"]
    small = ev["id"].head(n)
    for step in done[0].spec.train.checkpoints:
        st = stack_states([store.checkpoint(r.spec, step) for r in done])
        acc = fam.evaluate(cfg, st, ev["ood"], batch_size=256, device=device).accuracy
        key = matrix_key(ids, step, n, alphas, p["definition"], "loss")
        mat = barrier_matrix(cfg, st, small, alphas, p["definition"], "loss", device, cache=store.layout.matrix(key))
        lab = match_labels(final.labels, spectral_clusters(mat, 2, seed=0).labels)
        rows += [{"step": int(step), "model": i, "ood_accuracy": float(a), "mode": int(md), "cluster": int(c),
                  "mean_barrier": float(mat[i].sum() / (len(mat) - 1))}
                 for i, (a, md, c) in enumerate(zip(acc, bimodality(acc).labels, lab))]
    return pd.DataFrame(rows)


def final_rows(models: pd.DataFrame, mat: np.ndarray, step: int) -> pd.DataFrame:
    """The end of fine-tuning in the dynamics table: the final modes and k = 2 clusters (main matrix)."""
    return pd.DataFrame({"step": step, "model": models.model, "ood_accuracy": models.ood_accuracy,
                         "mode": models["mode"], "cluster": models.cluster_k2,
                         "mean_barrier": mat.sum(1) / (len(mat) - 1)})
