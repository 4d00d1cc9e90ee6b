"""Forgetting along a path between two fine-tuned endpoints (Qin et al. 2022, "Exploring Mode Connectivity for
Pre-trained Language Models"), against a control path of the same length in a random direction, and dataset
cartography (Swayamdipta et al. 2020): how confident the model was in each passage during training.

On a sample of *training* passages: a passage right at both endpoints A and B is forgotten when it turns wrong at
some point strictly inside the path A -> B (a passage wrong at B is not forgotten by the path: the endpoint itself
gets it wrong). The control path runs from A to A + r, r a Gaussian direction over the interpolated parameters with
|r| = |B - A|; it is read on the same passages (those right at A and B), lost strictly inside A -> A + r. A passage
near the decision boundary flips more easily along any path, so the comparison is also made within the half of the
passages with the smallest margin (true-class probability minus the largest other's, the smaller of A's and B's).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import rng
from ..data.batches import Examples
from .interpolate import interpolate_states


def random_direction(a: dict, b: dict, keys, seed: int) -> dict:
    """A + r with r a Gaussian direction over the interpolated parameters (`keys`, or all), scaled so that
    |r| = |B - A|; the other entries of A unchanged."""
    names = sorted(keys if keys is not None else a)
    g = rng.generator(seed, 0xD1E)
    r = {n: torch.randn(a[n].shape, generator=g, dtype=torch.float64) for n in names}
    norm = torch.sqrt(sum((r[n] ** 2).sum() for n in names))
    target = torch.sqrt(sum(((b[n].double() - a[n].double()) ** 2).sum() for n in names))
    return {n: (a[n].double() + r[n] * (target / norm)).to(a[n].dtype) if n in r else a[n] for n in a}


def forgetting_rows(fam, cfg, a, b, alphas, sample: Examples, dynamics: dict, copy: int, pair: int, device
                    ) -> pd.DataFrame:
    """Per training passage of the sample: right at A and at B, forgotten (right at A and B, wrong somewhere strictly
    inside the path A -> B), lost inside the control path A -> A + r (seed 1000 + pair; right at A, wrong somewhere
    strictly inside), and the passage's
    training dynamics under A's copy `copy` (dataset cartography: mean and standard deviation over the monitored
    steps of the probability of its true label, `dynamics["dyn.prob"]` [E, K, N])."""
    keys = fam.interp_keys(cfg, a)
    ex = fam.eval_examples(cfg, sample)
    out = {}
    for name, end in (("path", b), ("random", random_direction(a, b, keys, 1000 + pair))):
        res = fam.evaluate(cfg, interpolate_states(a, end, alphas, keys), ex, batch_size=64, device=device,
                           keep=("examples", "probs") if name == "path" else ("examples",))
        out[name] = res.per_example_correct  # [n_alpha, N]
        if name == "path":
            ends = margins(res.probs[[0, -1]], res.labels)  # [2, N]: at A and at B
    corr, rnd = out["path"], out["random"]
    frame = pd.DataFrame({"pair": pair, "example": np.arange(corr.shape[1]), "split": "train (sample)",
                          "correct_a": corr[0], "correct_b": corr[-1],
                          "forgotten": corr[0] & corr[-1] & (~corr[1:-1]).any(0),
                          "forgotten_random": rnd[0] & (~rnd[1:-1]).any(0), "margin": ends.min(0)})
    if dynamics:
        prob = dynamics["dyn.prob"][:, copy].numpy()  # [E, N]
        frame["confidence"] = prob.mean(0)
        frame["variability"] = prob.std(0)
    return frame


def margins(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The margin of each example: the probability of its true label minus the largest other class's (positive where
    it is classified right). probs [..., N, C], labels [N] -> [..., N]."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    true = np.take_along_axis(p, np.broadcast_to(y[:, None], p.shape[:-1] + (1,)), -1)[..., 0]
    other = np.where(np.arange(p.shape[-1]) == y[:, None], -np.inf, p).max(-1)
    return true - other


def forgetting_summary(f: pd.DataFrame) -> pd.DataFrame:
    """Per pair (rows of forgetting_rows): of the passages right at both endpoints, how many, how many of them are
    forgotten inside the path, and the fraction forgotten inside the path and inside the random-direction control
    (on the same passages); also how many passages are right at A but wrong at B (lost by the endpoint itself)."""
    rows = []
    for pair, g in f.groupby("pair"):
        both = g[g.correct_a & g.correct_b]
        row = {"pair": pair, "passages_right_at_both": len(both), "forgotten_count": int(both.forgotten.sum()),
               "forgotten_path": both.forgotten.mean(), "forgotten_random": both.forgotten_random.mean(),
               "wrong_at_b": int((g.correct_a & ~g.correct_b).sum())}
        if "margin" in both and len(both):  # conditioned on the margin: the half nearest the decision boundary
            low = both[both.margin <= both.margin.median()]
            row.update(low_margin_passages=len(low), low_margin_median=float(low.margin.median()),
                       forgotten_path_low_margin=low.forgotten.mean(),
                       forgotten_random_low_margin=low.forgotten_random.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def confidence_gaps(f: pd.DataFrame) -> pd.DataFrame:
    """Per pair, of the passages right at both endpoints: the mean training confidence of the forgotten ones, of the
    kept ones,
    their difference (forgotten minus kept) and the counts; pairs that forget nothing (or everything) have no gap
    and are left out. Empty without a confidence column."""
    rows = []
    if "confidence" not in f:
        return pd.DataFrame(rows)
    for pair, g in f[f.correct_a & f.correct_b].groupby("pair"):
        lost, kept = g[g.forgotten].confidence, g[~g.forgotten].confidence
        if len(lost) and len(kept):
            rows.append({"pair": pair, "forgotten": float(lost.mean()), "kept": float(kept.mean()),
                         "gap": float(lost.mean() - kept.mean()), "n_forgotten": len(lost), "n_kept": len(kept)})
    return pd.DataFrame(rows)
