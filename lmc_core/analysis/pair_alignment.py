"""A pair of models aligned every way: the endpoints (A, T(B)) of each path, named by lmc_core.align.methods.

`permutation_ends`: unaligned, weight matching (align.methods.match_weights: the best objective of several sweep
orders), activation matching, and the control A <-> pi(A) (A against a random permutation of itself, weight-matched
back: its barrier must be 0) — for any family with a permutation spec and activations (MLP, transformers).

`residual_ends`: for a family with residual maps (pre-norm transformers with learned positions), every path in the
RMSNorm form (LayerNorm folded into a gain-free RMSNorm in both endpoints, SliceGPT): the weight-matching
permutations in that form (the control that separates the rewriting from the map), the orthogonal residual map fitted
to weights (Procrustes alternating with weight matching) or to residual activations (Theus et al. 2025), and the
learned map (align.learned) started from the closed form whose midpoint loss on held-out training batches is lower.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..align import RESIDUAL, activation_matching, apply_permutation, match_weights, random_permutation
from ..align.learned import learned_from_best
from ..align.methods import (ACTIVATION, CONTROL, LEARNED, ORTHOGONAL_ACTIVATIONS, ORTHOGONAL_WEIGHTS, RESTARTS,
                             UNALIGNED, WEIGHT, WEIGHT_RMS)
from ..align.orthogonal import permutation_matrix, residual_alignment, residual_features
from ..config import ConfigError, check_choice, check_int, check_real
from ..domains import MAX_BATCH, MAX_SEED, MAX_STEPS, MAX_UNITS
from ..ensemble import copy_state, stack_states
from ..rng import generator
from . import barrier as B
from .criteria import LEARNED_FRACTION
from .diagnostics import weight_distance
from .interpolate import interpolate_states


def _check_alphas(alphas, ends: bool = False) -> None:
    """ConfigError unless alphas is a non-empty sequence of finite numbers (barrier.alpha_values; from 0 to 1 with
    ends=True)."""
    values = B.alpha_values(alphas, 2 if ends else 1)
    if ends and (values[0] != 0.0 or values[-1] != 1.0):
        raise ConfigError(f"alphas must run from 0 to 1 (the endpoints' numbers are read at the first and last); got "
                          f"{values[0]} ... {values[-1]}")


PERMUTATION_METHODS = (UNALIGNED, WEIGHT, ACTIVATION, CONTROL)
SHORT = {UNALIGNED: "unaligned", WEIGHT: "wm", ACTIVATION: "am", CONTROL: "control"}  # classifier_pair's columns
RESIDUAL_METHODS = (WEIGHT_RMS, ORTHOGONAL_WEIGHTS, ORTHOGONAL_ACTIVATIONS, LEARNED)


def permutation_ends(fam, cfg, a, b, x_match, seed: int, restarts: int = RESTARTS) -> tuple[dict, dict]:
    """{method: (A, T(B))} for PERMUTATION_METHODS of two K=1 states, and what matching found: the permutations
    ("perms_wm", "perms_am"), weight matching's sweeps and seconds (of the kept restart). x_match: the inputs
    activation matching correlates; seed: weight matching's first sweep order and the control's permutation (an
    integer); restarts: an integer >= 1 (ConfigError otherwise, before any matching)."""
    seed = check_int("seed", seed, 0, MAX_SEED)
    restarts = check_int("restarts", restarts, 1, MAX_UNITS)
    pspec = fam.perm_spec(cfg)
    perms_wm, wm = match_weights(pspec, a, b, seed=seed, restarts=restarts)
    perms_am, _ = activation_matching(pspec, fam.activations(cfg, a, x_match), fam.activations(cfg, b, x_match))
    shuffled = apply_permutation(a, pspec, random_permutation(pspec, generator(seed, 0xC0)))
    back, _ = match_weights(pspec, a, shuffled, seed=seed, restarts=1)
    ends = {UNALIGNED: (a, b), WEIGHT: (a, apply_permutation(b, pspec, perms_wm)),
            ACTIVATION: (a, apply_permutation(b, pspec, perms_am)),
            CONTROL: (a, apply_permutation(shuffled, pspec, back))}
    return ends, {"perms_wm": perms_wm, "perms_am": perms_am, "wm_sweeps": wm.sweeps, "wm_seconds": wm.seconds}


def path_curves(fam, cfg, ends: dict, kinds, examples, alphas, batch_size: int, device, **ident
                ) -> tuple[pd.DataFrame, dict]:
    """The curves (ident..., kind, split "test", alpha, loss, error) of the straight paths A -> T(B) of `kinds`
    (ends: {kind: (A, T(B))}) on `examples`, evaluated as one stacked state of len(kinds) x len(alphas) models, which
    is returned too (kind j's point q is its copy j * len(alphas) + q). alphas: a non-empty sequence of finite
    numbers; batch_size: an integer >= 1 (ConfigError otherwise, before any evaluation)."""
    _check_alphas(alphas)
    batch_size = check_int("batch_size", batch_size, 1, MAX_BATCH)
    path = stack_states([interpolate_states(*ends[k], alphas) for k in kinds])
    r = fam.evaluate(cfg, path, examples, batch_size=batch_size, device=device)
    n = len(alphas)
    return pd.DataFrame([{**ident, "kind": kind, "split": "test", "alpha": float(al), "loss": float(r.loss[j * n + q]),
                          "error": float(r.error[j * n + q])} for j, kind in enumerate(kinds)
                         for q, al in enumerate(alphas)]), path


def classifier_pair(fam, cfg, a, b, x_match, test, alphas, seed: int, restarts: int, definition: str, device
                    ) -> tuple[dict, pd.DataFrame, torch.Tensor]:
    """A classifier pair (K=1 states) aligned by permutations (permutation_ends) and its PERMUTATION_METHODS paths
    evaluated on `test` (examples with inputs "x"): the pair's numbers — "collapsed" (an endpoint's test loss at least
    criteria.LEARNED_FRACTION of a uniform guess's: it did not learn), the endpoints' loss and error, every path's
    `definition` barrier and the chord barrier of the three non-control paths (short names unaligned, wm, am,
    control), barriers relative to the endpoints' loss (%), midpoint losses, the error at the aligned path's
    midpoint, cosine similarity before and after weight matching, matching's sweeps and seconds — the curves, and
    the predictions [N] of the weight-matched path's midpoint as a model. alphas: finite numbers from 0 to 1 (the
    endpoints' numbers are read at the first and last); seed an integer; restarts an integer >= 1; definition one of
    barrier.DEFINITIONS (ConfigError otherwise, before any matching)."""
    _check_alphas(alphas, ends=True)
    seed = check_int("seed", seed, 0, MAX_SEED)
    restarts = check_int("restarts", restarts, 1, MAX_UNITS)
    check_choice("definition", definition, B.DEFINITIONS)
    ends, info = permutation_ends(fam, cfg, a, b, x_match, seed, restarts)
    cd, path = path_curves(fam, cfg, ends, PERMUTATION_METHODS, test, alphas, 1024, device)
    n, mid = len(alphas), int(np.argmin(np.abs(np.asarray(alphas) - 0.5)))
    by = {SHORT[k]: g for k, g in cd.groupby("kind")}
    bar, chord = ({k: B.barrier(g.alpha, g.loss, d) for k, g in by.items()} for d in (definition, "chord"))
    ends_loss = cd.loss.iloc[[0, n - 1]].to_numpy()
    endpoint = 0.5 * float(ends_loss.sum())
    with torch.no_grad():
        mid_pred = fam.model_from_state(cfg, copy_state(path, n + mid)).eval()(test["x"][None]).argmax(-1)[0]
    row = {"collapsed": bool(ends_loss.max() >= LEARNED_FRACTION * fam.chance_loss(cfg)), "loss_a": ends_loss[0],
           "loss_b": ends_loss[1], "endpoint_loss": endpoint,
           "endpoint_error": 0.5 * float(cd.error.iloc[0] + cd.error.iloc[n - 1]),
           **{f"barrier_{k}": bar[k] for k in ("unaligned", "wm", "am", "control")},
           **{f"chord_{k}": chord[k] for k in ("unaligned", "wm", "am")},
           "rel_barrier_wm_pct": 100 * bar["wm"] / endpoint,
           "rel_barrier_unaligned_pct": 100 * bar["unaligned"] / endpoint,
           **{f"midpoint_{k}": float(np.interp(0.5, by[k].alpha, by[k].loss)) for k in ("unaligned", "wm")},
           "midpoint_error_wm": float(cd.error.iloc[n + mid]), "cos_before": weight_distance(a, b)["cosine"],
           "cos_after_wm": weight_distance(*ends[WEIGHT])["cosine"], "wm_sweeps": info["wm_sweeps"],
           "wm_seconds": info["wm_seconds"]}
    return row, cd, mid_pred


@dataclass(frozen=True)
class Learning:
    """How the learned residual map is trained: steps, Adam's rate, windows per batch, held-out batches, and
    whether the MLP permutations are learned too."""

    steps: int = 100
    lr: float = 1e-2
    batch: int = 16
    heldout: int = 4
    units: bool = False

    def __post_init__(self):
        check_int("steps", self.steps, 1, MAX_STEPS)
        check_real("lr", self.lr, 0.0, lo_open=True)
        check_int("batch", self.batch, 1, MAX_BATCH)
        check_int("heldout", self.heldout, 1, MAX_UNITS)
        if not isinstance(self.units, (bool, np.bool_)):
            raise ConfigError(f"units={self.units!r} must be True or False")


def residual_ends(fam, cfg, a, b, perms: dict, x_match, train_windows, seed: int, learn: Learning
                  ) -> tuple[dict, Any, dict]:
    """{method: (A, T(B))} for RESIDUAL_METHODS, all in the RMSNorm form, the config of that form, and the pair's
    numbers: seconds of each fit, and how much of A's residual stream B's explains (1 - |X_B M - X_A|^2 / |X_A|^2 on
    the matching windows) with no map (the identity), after the residual permutation of weight / activation matching
    and after the Procrustes rotation. perms: permutation_ends' info (its weight- and activation-matching permutations). seed: an integer;
    learn: a Learning (ConfigError / TypeError otherwise, before any work)."""
    seed = check_int("seed", seed, 0, MAX_SEED)
    if not isinstance(learn, Learning):
        raise TypeError(f"learn must be a pair_alignment.Learning, got {type(learn).__name__}")
    if len(train_windows) < 1:
        raise ValueError("train_windows is empty: the learned map trains on windows drawn from it")
    pspec = fam.perm_spec(cfg)
    folded, af, rspec = fam.residual_maps(cfg, a)
    bf = fam.residual_maps(cfg, b)[1]
    b_wmf = fam.residual_maps(cfg, apply_permutation(b, pspec, perms["perms_wm"]))[1]
    fspec = fam.perm_spec(folded)
    b_ow, ow = residual_alignment(fspec, rspec, af, bf, seed=seed)
    xa, xb = (residual_features(lambda s: fam.activations(folded, s, x_match), s) for s in (af, bf))
    b_oa, oa = residual_alignment(fspec, rspec, af, bf, features=(xa, xb), seed=seed)
    fit = lambda m: float(1 - (xb @ m - xa).pow(2).sum() / xa.pow(2).sum())  # noqa: E731
    info = {"orth_weights_seconds": ow.seconds, "orth_rounds": len(ow.objective) - 1,
            "orth_activations_seconds": oa.seconds,
            **{f"residual_fit_{k}": fit(permutation_matrix(np.asarray(perms[f"perms_{k}"][RESIDUAL])))
               for k in ("wm", "am")}, "residual_fit_orthogonal": fit(oa.map),
            "residual_fit_identity": fit(torch.eye(xa.shape[-1], dtype=xa.dtype))}
    g = generator(seed, 0x1EA)  # held-out windows first, then the training stream, from one generator

    def draw() -> dict:
        return {"tokens": train_windows[torch.randint(0, len(train_windows), (learn.batch,), generator=g)][None]}

    heldout = [draw() for _ in range(learn.heldout)]

    def batches():
        while True:
            yield draw()

    b_l, li, start = learned_from_best(af, {"weights": b_ow, "activations": b_oa}, fam.state_loss_fn(folded),
                                       batches(), heldout, pspec=fspec if learn.units else None, rspec=rspec,
                                       steps=learn.steps, lr=learn.lr)
    info.update(learned_seconds=li.seconds, learned_start=start, learned_kept_start=li.kept_start,
                learned_heldout_start=li.heldout_start, learned_heldout_end=li.heldout_end,
                learned_units_moved=int(sum(li.moved.values())))
    ends = {WEIGHT_RMS: (af, b_wmf), ORTHOGONAL_WEIGHTS: (af, b_ow), ORTHOGONAL_ACTIVATIONS: (af, b_oa),
            LEARNED: (af, b_l)}
    return ends, folded, info
