"""Spectral clustering of models by their pairwise barriers (Juneja et al. 2023), from first principles.

affinity A_ij = exp(-d_ij^2 / (2 delta^2)) of a symmetric barrier matrix d; the normalised Laplacian
L = I - D^(-1/2) A D^(-1/2); the number of clusters k is given or chosen by the largest gap among
L's smallest eigenvalues (eigengap heuristic); the rows of L's k smallest eigenvectors, normalised to
unit length (Ng, Jordan & Weiss 2001), are clustered by k-means (seeded, best of several starts).
Stability: the clustering of random subsets of the models compared with the full clustering on the
same models by the adjusted Rand index (1: identical, about 0: chance; scikit-learn's adjusted_rand_score),
for any k >= 2 (`stability_by_k`); with one cluster there is nothing to compare, so no stability exists.
Null model of the eigengap (`eigengap_null`): matrices with the same off-diagonal barriers placed at random
(a symmetric permutation of the pairs' values) have no cluster structure; the largest eigengap for k >= 2 of
the observed matrix is compared with its distribution over such matrices (a permutation test), so "k = 1"
(not rejected) and "k = 2" (rejected, k from the eigengap) are tested statements. A model whose barriers are all
high (a row effect, e.g. one worse-trained model) is structure that null also rejects; `row_effect_null` keeps
each model's row effect (least squares b_ij = r_i + r_j + e_ij) and permutes only the residuals e among the
pairs, so it asks for structure beyond the models' own levels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.linalg import eigh

from ..config import check_int, check_real
from ..domains import MAX_RESAMPLES, MAX_UNITS


@dataclass
class Clustering:
    """Labels [M] (0 = the largest cluster), k, the Laplacian's eigenvalues, the affinity scale and the
    spectral embedding [M, k]."""

    labels: np.ndarray
    k: int
    eigenvalues: np.ndarray
    delta: float
    embedding: np.ndarray


def affinity(d: np.ndarray, delta: float) -> np.ndarray:
    """exp(-d^2 / (2 delta^2)); negative barriers count as 0 (no barrier)."""
    d = np.clip(np.asarray(d, dtype=float), 0, None)
    return np.exp(-(d ** 2) / (2 * delta ** 2))


def default_delta(d: np.ndarray) -> float:
    """The median off-diagonal barrier (scale-free; Juneja et al. used delta = 1 on BERT's barriers in nats)."""
    off = np.asarray(d, dtype=float)[~np.eye(len(d), dtype=bool)]
    off = off[off > 0]
    return float(np.median(off)) if off.size else 1.0


def laplacian_spectrum(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the normalised Laplacian of affinity a."""
    deg = a.sum(1)
    inv = 1.0 / np.sqrt(np.maximum(deg, 1e-300))
    lap = np.eye(len(a)) - inv[:, None] * a * inv[None, :]
    return eigh((lap + lap.T) / 2)


def eigengap(eigenvalues: np.ndarray, kmax: int) -> int:
    """k in 1..kmax with the largest gap between the k-th and (k+1)-th smallest eigenvalue."""
    ev = np.sort(eigenvalues)[: kmax + 1]
    if len(ev) < 2:
        return 1
    return int(np.argmax(np.diff(ev)) + 1)


def kmeans(x: np.ndarray, k: int, seed: int = 0, starts: int = 10) -> np.ndarray:
    """Labels of seeded k-means (the start with the least within-cluster sum of squares)."""
    if k <= 1:
        return np.zeros(len(x), dtype=int)
    best, best_cost = None, np.inf
    for s in range(starts):
        cent, lab = kmeans2(x, k, minit="++", seed=np.random.default_rng([seed, s]))
        cost = float(((x - cent[lab]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = lab, cost
    return best


def spectral_clusters(d: np.ndarray, k: int | None = None, delta: float | None = None, kmax: int = 6,
                      seed: int = 0) -> Clustering:
    """Cluster M models from their symmetric barrier matrix d [M, M] (see the module docstring)."""
    d = np.asarray(d, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or len(d) < 2:
        raise ValueError(f"need a square barrier matrix of at least 2 models, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        bad = np.argwhere(~np.isfinite(d))[0]
        raise ValueError(f"the barrier matrix has a non-finite entry at ({bad[0]}, {bad[1]}) (a diverged model or an "
                         "overflowing loss): drop that model or fix the evaluation before clustering")
    if k is not None:
        check_int("k", k, 1, len(d))
    check_int("kmax", kmax, 1, MAX_UNITS)
    delta = default_delta(d) if delta is None else check_real("delta", delta, 0, None, lo_open=True)
    a = affinity((d + d.T) / 2, delta)
    ev, vec = laplacian_spectrum(a)
    k = eigengap(ev, min(kmax, len(d) - 1)) if k is None else int(k)
    emb = vec[:, :k]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    lab = kmeans(emb, k, seed)
    order = np.argsort(-np.bincount(lab, minlength=k), kind="stable")  # 0 = largest cluster
    lab = np.argsort(order)[lab]
    return Clustering(lab, k, ev, delta, emb)


def adjusted_rand(a, b) -> float:
    """Adjusted Rand index of two labelings (Hubert & Arabie 1985; scikit-learn's adjusted_rand_score)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(a), np.asarray(b)))


def stability(d: np.ndarray, clustering: Clustering, resamples: int = 20, frac: float = 0.8, seed: int = 0) -> np.ndarray:
    """Adjusted Rand index between the clustering of random subsets (frac of the models, same k and delta) and
    the full clustering restricted to the same models, for each resample."""
    check_int("resamples", resamples, 1, MAX_RESAMPLES)
    check_real("frac", frac, 0, 1, lo_open=True)
    rng = np.random.default_rng(seed)
    m = len(d)
    out = []
    for r in range(resamples):
        idx = np.sort(rng.choice(m, size=max(3, int(round(frac * m))), replace=False))
        sub = spectral_clusters(np.asarray(d)[np.ix_(idx, idx)], clustering.k, clustering.delta, seed=seed + r + 1)
        out.append(adjusted_rand(clustering.labels[idx], sub.labels))
    return np.asarray(out)


def match_labels(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`labels` renamed to agree as much as possible with `reference` (Hungarian matching on the overlap)."""
    from scipy.optimize import linear_sum_assignment

    k = int(max(reference.max(), labels.max())) + 1
    overlap = np.zeros((k, k))
    np.add.at(overlap, (labels, reference), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = dict(zip(rows, cols))
    return np.array([mapping[x] for x in labels])


def stability_by_k(d: np.ndarray, ks, delta: float | None = None, resamples: int = 20, frac: float = 0.8,
                   seed: int = 0) -> dict[int, np.ndarray]:
    """Stability (`stability`, adjusted Rand index per resample) of the clustering with each k in `ks` (k >= 2:
    one cluster has no stability to measure)."""
    d = np.asarray(d, dtype=float)
    delta = default_delta(d) if delta is None else float(delta)
    out = {}
    for k in ks:
        if not 2 <= int(k) < len(d):
            raise ValueError(f"stability needs 2 <= k < {len(d)} models, got k={k}")
        out[int(k)] = stability(d, spectral_clusters(d, int(k), delta, seed=seed), resamples, frac, seed)
    return out


@dataclass
class EigengapTest:
    """Permutation test of the largest eigengap for k >= 2 (module docstring)."""

    k: int  # argmax over 2..kmax of the observed eigengap
    gap: float  # that eigengap, lambda_{k+1} - lambda_k
    null: np.ndarray  # the same statistic on each permuted matrix [resamples]
    p: float  # (1 + #null >= gap) / (1 + resamples)

    def k_tested(self, alpha: float = 0.05) -> int:
        """k when the null is rejected at level alpha, else 1."""
        return self.k if self.p < alpha else 1


def _max_gap(d: np.ndarray, delta: float, kmax: int) -> tuple[int, float]:
    ev = np.sort(laplacian_spectrum(affinity(d, delta))[0])[: kmax + 1]
    gaps = np.diff(ev)[1:]  # gaps after k = 2, 3, ..., kmax
    i = int(np.argmax(gaps))
    return i + 2, float(gaps[i])


def row_effects(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of the pairs' barriers b_ij = r_i + r_j + e_ij (i < j) of a symmetric matrix d [M, M]
    (M >= 3): each model's row effect r [M] and the pairs' residuals e [M (M - 1) / 2] (np.triu_indices order)."""
    d = np.asarray(d, dtype=float)
    i, j = np.triu_indices(len(d), 1)
    x = np.zeros((i.size, len(d)))
    x[np.arange(i.size), i] = 1.0
    x[np.arange(i.size), j] = 1.0
    r = np.linalg.lstsq(x, d[i, j], rcond=None)[0]
    return r, d[i, j] - r[i] - r[j]


def row_effect_null(d: np.ndarray, kmax: int = 6, delta: float | None = None, resamples: int = 999,
                    seed: int = 0) -> EigengapTest:
    """Is there more cluster structure in d [M, M] than each model's own level of barriers explains? The largest
    eigengap for k in 2..kmax against matrices r_i + r_j + e*_ij, e* the residuals of `row_effects` permuted."""
    return eigengap_null(d, kmax, delta, resamples, seed, keep_rows=True)


def eigengap_null(d: np.ndarray, kmax: int = 6, delta: float | None = None, resamples: int = 999,
                  seed: int = 0, keep_rows: bool = False) -> EigengapTest:
    """Is there more cluster structure in the barrier matrix d [M, M] than in matrices with the same barriers at
    random places? The largest eigengap over k in 2..kmax against its permutation distribution (keep_rows: only
    the residuals of each model's row effect permuted, `row_effect_null`)."""
    d = np.asarray(d, dtype=float)
    d = (d + d.T) / 2
    m = len(d)
    kmax = min(kmax, m - 1)
    if kmax < 2:
        raise ValueError(f"an eigengap test for k >= 2 needs at least 3 models, got {m}")
    delta = default_delta(d) if delta is None else float(delta)
    k, gap = _max_gap(d, delta, kmax)
    iu = np.triu_indices(m, 1)
    base, vals = 0.0, d[iu]
    if keep_rows:
        rows, vals = row_effects(d)
        base = rows[iu[0]] + rows[iu[1]]
    rng = np.random.default_rng(seed)
    null = np.empty(resamples)
    for r in range(resamples):
        p = np.zeros_like(d)
        p[iu] = base + rng.permutation(vals)
        null[r] = _max_gap(p + p.T, delta, kmax)[1]
    return EigengapTest(k, gap, null, float((1 + np.sum(null >= gap)) / (1 + resamples)))
