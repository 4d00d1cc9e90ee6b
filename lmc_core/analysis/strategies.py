"""Models grouped by their generalisation strategy (Juneja et al. 2023): per-model evaluation in and out of
distribution, the pairs within each strategy mode and across the modes of an all-pairs barrier matrix, the
across-minus-within statistic that a label-permutation null judges, and the models and pairs a figure shows.

Modes are labels 0 (lower out-of-distribution accuracy) and 1 (higher) per model (analysis.modes.bimodality);
a barrier matrix is symmetric [M, M] with its pairs i < j above the diagonal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.strategies import CATEGORIES
from .landscape import ece

GROUPS = ("within mode 0", "within mode 1", "across modes")


def evaluate_models(fam, cfg, state, ev: dict, ood_category, device) -> pd.DataFrame:
    """Per model (rows) of a stacked state: loss, accuracy and ECE on every split of `ev` ("id", "ood"), and
    out-of-distribution accuracy on the entailed and on the order (non-entailed) passages."""
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


def group_pairs(labels) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group name (GROUPS) -> (model_a, model_b) [pairs]: the pairs i < j within mode 0, within mode 1, across."""
    lab = np.asarray(labels)
    i, j = np.triu_indices(len(lab), 1)
    keep = ((lab[i] == 0) & (lab[j] == 0), (lab[i] == 1) & (lab[j] == 1), lab[i] != lab[j])
    return {g: (i[s], j[s]) for g, s in zip(GROUPS, keep)}


def group_means(mat: np.ndarray, labels) -> dict[str, float]:
    """Mean barrier of each group's pairs (NaN for a group without pairs)."""
    mat = np.asarray(mat, dtype=float)
    return {g: float(mat[a, b].mean()) if a.size else float("nan") for g, (a, b) in group_pairs(labels).items()}


def across_minus_within(mat: np.ndarray, labels) -> float:
    """Mean barrier across the modes minus the mean of the two within-mode means (the one with pairs, when one
    mode has a single model); NaN without pairs across or within. Relabelling the models (rows and columns of
    the matrix permuted together) gives its null distribution."""
    g = group_means(mat, labels)
    within = [g[GROUPS[0]], g[GROUPS[1]]]
    within = [w for w in within if np.isfinite(w)]
    if not within or not np.isfinite(g[GROUPS[2]]):
        return float("nan")
    return g[GROUPS[2]] - float(np.mean(within))


def typical_models(labels, score) -> list[int]:
    """Three models for a plane through both modes: the two most typical of the larger mode and the most typical
    of the other (closest to their mode's median score); the first three when a mode has too few models."""
    labels, score = np.asarray(labels), np.asarray(score, dtype=float)
    groups = sorted((np.flatnonzero(labels == c) for c in (0, 1)), key=len, reverse=True)
    big, small = groups
    if len(small) == 0 or len(big) < 2:
        return [0, 1, 2]

    def typical(g):
        return g[np.argsort(np.abs(score[g] - np.median(score[g])), kind="stable")]

    a, b = typical(big)[:2]
    return [int(a), int(b), int(typical(small)[0])]


def top_pairs(mat: np.ndarray, labels, per_group: int = 2) -> list[tuple[int, int]]:
    """The `per_group` highest-barrier pairs within each mode and across the modes."""
    out = []
    for a, b in group_pairs(labels).values():
        top = np.argsort(-np.asarray(mat)[a, b], kind="stable")[:per_group]
        out += [(int(a[q]), int(b[q])) for q in top]
    return out


def first_batches(fam, spec, examples, n: int) -> list[dict]:
    """The first n training batches of a run's data ([1, B, ...] tensors), e.g. for sharpness."""
    ex = fam.train_examples(spec, examples)
    bs = spec.train.batch_size
    return [{k: t[i * bs : (i + 1) * bs][None] for k, t in ex.tensors.items()} for i in range(n)]


def clusters_over_steps(fam, cfg, steps, state_at, ev: dict, examples: int, alphas, definition: str, reference,
                        cache_at, device) -> pd.DataFrame:
    """At each training step of `steps` (state_at(step): the models' stacked state then): every model's
    out-of-distribution accuracy, its mode (two-component mixture of that step), its mean barrier and its cluster
    (k = 2 on the loss-barrier matrix of that step, on the first `examples` of ev["id"], cached at cache_at(step);
    labels matched to `reference`, e.g. the final clusters)."""
    from .cluster import match_labels, spectral_clusters
    from .landscape import barrier_matrix
    from .modes import bimodality

    rows, small = [], ev["id"].head(examples)
    for step in steps:
        st = state_at(step)
        acc = fam.evaluate(cfg, st, ev["ood"], batch_size=256, device=device).accuracy
        mat = barrier_matrix(cfg, st, small, alphas, definition, "loss", device, cache=cache_at(step))
        lab = match_labels(reference, spectral_clusters(mat, 2, seed=0).labels)
        rows += [{"step": int(step), "model": i, "ood_accuracy": float(a), "mode": int(md), "cluster": int(c),
                  "mean_barrier": float(mat[i].sum() / (len(mat) - 1))}
                 for i, (a, md, c) in enumerate(zip(acc, bimodality(acc).labels, lab))]
    return pd.DataFrame(rows)
