"""Loss landscapes of many models: the all-pairs barrier matrix, 2-D planes, calibration, sharpness.

- `barrier_matrix`: every pair's interpolation curve, all pairs' alpha points evaluated as batched
  models (a chunk of pairs at a time), and its barrier (Juneja et al.'s mod_BH is `subchord`).
- `plane`: the plane through three models: basis u = theta2 - theta1 and the part of
  theta3 - theta1 orthogonal to it (Gram-Schmidt), both in units of |u| (equal scales on the two
  axes); loss, accuracy and ECE on a grid of points.
- `ece`: expected calibration error with 10 (at most MAX_ECE_BINS) equal-width bins of the top-1 probability,
  sum_b n_b / N * |accuracy_b - confidence_b|.
- `sharpness`: epsilon-sharpness after Keskar et al. 2017 as Juneja et al. implement it: starting
  from theta0, one pass of projected gradient *ascent* over `batches` fixed training batches
  (step lr), after every step each weight clamped to [theta0 - eps(|theta0| + 1), theta0 + eps(|theta0| + 1)];
  sharpness = 100 (L_max - L_0) / (1 + L_0), L the mean loss over those batches before and after. One pass
  (the default, Juneja et al.'s variant) gives a lower bound of Keskar et al.'s maximum over the box; with
  `passes` > 1 the passes repeat until a pass raises no copy's loss by more than `tol` (relative to 1 + L_0)
  or `passes` are done (the ascent run towards convergence; L_max is the largest loss seen).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import barrier as B
from ..ensemble import State, copy_state, stack_states
from ..families import family_of
from .interpolate import interpolate_states
from ..config import ConfigError, check_choice, check_int, check_real
from ..domains import MAX_BATCH, MAX_PLANE_POINTS, MAX_STEPS
from ..files import CorruptFileError, load_tensors, quarantine, save_tensors


MAX_ECE_BINS = 1_000_000  # ece's bins: bins 10**-6 wide, far finer than any calibration plot (Guo et al. use 15)


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of top-1 confidences [N] in [0, 1] and correctness [N] (0/1), with `bins`
    equal-width bins, an integer from 1 to MAX_ECE_BINS (10**6) (Guo et al. 2017, eq. 3; Naeini et al. 2015):
    sum over the non-empty bins b of n_b / N * |accuracy_b - confidence_b|; confidence c lies in bin
    min(floor(c * bins), bins - 1) (so 1 in the last). Time O(N log N) whatever `bins`: empty bins cost nothing,
    each bin of 3 or more examples one step (its means). Raises ConfigError (a ValueError) naming bins out of
    range, ValueError on empty, mismatched, non-finite or out-of-range input."""
    check_int("bins", bins, 1, MAX_ECE_BINS)
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    if conf.ndim != 1 or conf.shape != corr.shape or conf.size == 0:
        raise ValueError(f"ece needs confidence and correct of the same length >= 1, got shapes {conf.shape} and "
                         f"{corr.shape}")
    if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1:
        raise ValueError(f"confidence must be probabilities in [0, 1]; got values in [{np.nanmin(conf):.3g}, "
                         f"{np.nanmax(conf):.3g}]{' and NaN' if np.isnan(conf).any() else ''}")
    if not np.all(np.isin(corr, (0.0, 1.0))):
        raise ValueError("correct must hold 0/1 (or booleans): whether each top-1 prediction is right")
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    # the examples grouped by bin (a stable sort keeps their order within a bin), so that each bin's means are
    # those of its examples in their order (numpy's pairwise sums, bit for bit the per-bin masks' means), and only
    # the non-empty bins are visited
    order = np.argsort(idx.astype(np.uint16) if bins <= 1 << 16 else idx, kind="stable")  # 16 bits: a radix sort
    sorted_idx, conf, corr = idx[order], conf[order], corr[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
    counts = np.diff(np.append(starts, conf.size))
    gap = np.empty(starts.size)
    small = counts <= 2  # the mean of one or two numbers does not depend on the order of summation: vectorised
    one, two = starts[small], np.where(counts[small] == 2, starts[small] + 1, starts[small])
    gap[small] = np.abs((corr[one] + corr[two]) / 2 - (conf[one] + conf[two]) / 2)  # (x + x) / 2 is x exactly
    for q in np.flatnonzero(~small):
        lo, hi = starts[q], starts[q] + counts[q]
        gap[q] = abs(corr[lo:hi].mean() - conf[lo:hi].mean())
    terms = counts / conf.size * gap
    return float(np.cumsum(terms)[-1])  # summed in bin order, as a loop over the bins adds them


def _evaluate(cfg, states: State, examples, device, keep=("examples",)):
    return family_of(cfg).evaluate(cfg, states, examples, batch_size=64, device=device, keep=keep)


def barrier_matrix(cfg, state: State, examples, alphas, definition: str = "subchord", metric: str = "loss",
                   device="cpu", pairs_per_batch: int | None = None, cache: Path | None = None) -> np.ndarray:
    """Symmetric [M, M] barrier matrix of the M copies in `state` (diagonal 0), computed in batches of pairs;
    cached in `cache` (a .safetensors file) when given.

    Each pair's alphas are always one batched model; with alpha 0 and 1 on the grid, the endpoints are the models
    themselves and are evaluated once per model. `pairs_per_batch` pairs' paths are evaluated together;
    None picks 1 on a CPU (measured: batching more pairs is slower there, bench/barrier_matrix.py) and 16
    on a GPU. `alphas`: as linear_path's, a number of points (an integer from 2 to MAX_ALPHAS) or a grid of 2 to
    MAX_ALPHAS finite numbers increasing strictly from exactly 0 to exactly 1; ValueError / ConfigError naming
    `alphas` otherwise, before any evaluation."""
    from .interpolate import path_alphas  # the check of linear_path's alphas

    check_choice("definition", definition, B.DEFINITIONS)
    check_choice("metric", metric, ("loss", "error"))
    alphas = path_alphas(alphas)
    if pairs_per_batch is None:
        pairs_per_batch = 16 if torch.device(device).type == "cuda" else 1
    check_int("pairs_per_batch", pairs_per_batch, 1, MAX_BATCH)
    m = next(iter(state.values())).shape[0]
    if m < 2:
        raise ValueError(f"a barrier matrix needs at least 2 models; the state holds {m}")
    if cache is not None and Path(cache).exists():
        try:
            return load_tensors(cache)[0]["matrix"].numpy()
        except CorruptFileError:
            quarantine(Path(cache))  # kept aside (never overwritten), recomputed below
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    alphas = np.asarray(alphas, dtype=float)
    # the endpoints (alpha 0 and 1) are the models themselves: evaluated once per model, not once per pair
    shared = len(alphas) > 2 and alphas[0] == 0.0 and alphas[-1] == 1.0
    inner = alphas[1:-1] if shared else alphas
    if shared:
        r = _evaluate(cfg, state, examples, device, keep=())
        ends = r.loss if metric == "loss" else r.error
    n = len(inner)
    out = np.zeros((m, m))
    for c0 in range(0, len(pairs), pairs_per_batch):
        chunk = pairs[c0 : c0 + pairs_per_batch]
        path = stack_states([interpolate_states(copy_state(state, i), copy_state(state, j), inner) for i, j in chunk])
        r = _evaluate(cfg, path, examples, device, keep=())
        vals = r.loss if metric == "loss" else r.error
        for q, (i, j) in enumerate(chunk):
            curve = vals[q * n : (q + 1) * n]
            if shared:
                curve = np.concatenate([[ends[i]], curve, [ends[j]]])
            out[i, j] = out[j, i] = B.barrier(alphas, curve, definition)
    if cache is not None:
        save_tensors(cache, {"matrix": torch.from_numpy(out)})
    return out


def pair_curves(cfg, state: State, pairs: list[tuple[int, int]], examples: dict, alphas, device="cpu") -> pd.DataFrame:
    """Loss and error along the linear path of each of `pairs` (indices into the copies of `state`), on each of
    `examples` ({split name: eval examples}); one row per pair, split and alpha (the explorer's table)."""
    if not pairs:
        return pd.DataFrame(columns=["pair", "split", "alpha", "loss", "error"])
    alphas = np.asarray(alphas, dtype=float)
    path = stack_states([interpolate_states(copy_state(state, i), copy_state(state, j), alphas) for i, j in pairs])
    rows = []
    n = len(alphas)
    for split, ex in examples.items():
        r = _evaluate(cfg, path, ex, device, keep=())
        for q, (i, j) in enumerate(pairs):
            for t, a in enumerate(alphas):
                rows.append({"pair": f"{i}-{j}", "split": split, "alpha": float(a),
                             "loss": float(r.loss[q * n + t]), "error": float(r.error[q * n + t])})
    return pd.DataFrame(rows)


def matrix_key(run_ids: list[str], step: int, examples: int, alphas, definition: str, metric: str) -> str:
    """A cache key of a barrier matrix."""
    payload = json.dumps([run_ids, step, examples, [float(a) for a in alphas], definition, metric])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


PLANE_CHUNK = 32  # plane's grid points built and evaluated as one batched model


def plane(cfg, a: State, b: State, c: State, examples, lo: float = -0.5, hi: float = 1.5, points: int = 15,
          device="cpu", keys: set[str] | None = None) -> dict:
    """Loss, accuracy and ECE [points, points] on the plane through three K=1 states (see module docstring),
    the grid coordinates, and where the three models lie on it. The points**2 models are built and evaluated
    PLANE_CHUNK (32) at a time, so memory holds at most 32 model copies (plus their stacked copy) whatever
    `points` (an integer from 2 to MAX_PLANE_POINTS, 201). ConfigError naming points, lo or hi out of their
    domain; ValueError when a, b and c do not span a plane."""
    check_int("points", points, 2, MAX_PLANE_POINTS)
    check_real("lo", lo)
    check_real("hi", hi)
    if not lo < hi:
        raise ConfigError(f"lo={lo} must be below hi={hi}: give the grid's ends in increasing order")
    names = sorted(keys if keys is not None else a)
    flat = lambda s: torch.cat([s[n].double().reshape(-1) for n in names])  # noqa: E731
    va, vb, vc = flat(a), flat(b), flat(c)
    u, v = vb - va, vc - va
    unit = float(u.norm())
    if not unit > 0:
        raise ValueError("models a and b are identical: a plane needs three models with a, b and c not on one line")
    e1 = u / unit
    v_perp = v - (v @ e1) * e1
    if not float(v_perp.norm()) > 1e-6 * unit:
        raise ValueError("model c lies on the line through a and b (its distance from the line is below 1e-6 of "
                         "|b - a|): the plane's second axis would be noise; choose a c off that line")
    e2 = v_perp / float(v_perp.norm())
    xs = np.linspace(lo, hi, points)
    grid = [(x, y) for y in xs for x in xs]

    def state_at(x: float, y: float) -> State:
        vec = va + unit * (x * e1 + y * e2)
        st, off = {}, 0
        for n in names:
            size = a[n].numel()
            st[n] = vec[off : off + size].view(a[n].shape).to(a[n].dtype)
            off += size
        for n in a:
            if n not in st:
                st[n] = a[n]
        return st

    loss, acc, cal = [], [], []
    for c0 in range(0, len(grid), PLANE_CHUNK):  # PLANE_CHUNK models built and evaluated at a time, then dropped
        chunk = stack_states([state_at(x, y) for x, y in grid[c0 : c0 + PLANE_CHUNK]])
        r = _evaluate(cfg, chunk, examples, device, keep=("examples", "confidence"))
        del chunk
        loss += list(r.loss)
        acc += list(r.accuracy)
        cal += [ece(r.confidence[q], r.per_example_correct[q]) for q in range(len(r.loss))]
    shape = (points, points)
    where = {"A": (0.0, 0.0), "B": (1.0, 0.0), "C": (float(v @ e1) / unit, float(v_perp.norm()) / unit)}
    return {"x": xs, "y": xs, "loss": np.reshape(loss, shape), "accuracy": np.reshape(acc, shape),
            "ece": np.reshape(cal, shape), "models": where, "unit": unit}


def sharpness(cfg, state: State, batches: list[dict], eps: float = 5e-4, lr: float = 1e-2, device="cpu", *,
              passes: int = 1, tol: float = 1e-3) -> np.ndarray:
    """epsilon-sharpness [K] of every copy of `state` on fixed training batches by projected gradient ascent
    (Keskar et al. 2017 as Juneja et al. implement it; module docstring): one pass by default, up to `passes`
    until a pass gains less than `tol`."""
    check_real("eps", eps, 0, None, lo_open=True)
    check_real("lr", lr, 0, None, lo_open=True)
    if not batches:
        raise ValueError("sharpness needs at least one training batch (batches is empty)")
    check_int("passes", passes, 1, MAX_STEPS)
    check_real("tol", tol, 0, None)
    fam = family_of(cfg)
    model = fam.model_from_state(cfg, state, device)
    model.eval()  # no dropout: the loss is a function of the weights alone
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    box = {n: eps * (t.abs() + 1) for n, t in start.items()}

    def mean_loss() -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([fam.loss(model, {k: v.to(device) for k, v in b.items()}) for b in batches]).mean(0)

    l0 = mean_loss()
    best = l0
    for _ in range(max(1, int(passes))):
        for b in batches:
            model.zero_grad(set_to_none=True)
            fam.loss(model, {k: v.to(device) for k, v in b.items()}).sum().backward()
            with torch.no_grad():
                for n, p in params.items():
                    if p.grad is not None:
                        p.add_(p.grad, alpha=lr)  # ascent
                        p.copy_(torch.maximum(torch.minimum(p, start[n] + box[n]), start[n] - box[n]))
        l1 = mean_loss()
        gain = (l1 - best) / (1 + l0)
        best = l1 if passes <= 1 else torch.maximum(best, l1)  # one pass: exactly Juneja et al.'s L_1 - L_0
        if bool((gain < tol).all()):
            break
    return (100 * (best - l0) / (1 + l0)).cpu().numpy()
