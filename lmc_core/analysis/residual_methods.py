"""B aligned to A by every method of align/methods.py that a model without LayerNorm admits (Nanda et al.'s
grokking transformer): weight matching (with the restart policy), an orthogonal residual map, an invertible
residual map and a learned one (`align_every_way`); the paths A <-> T(B) of every method (`method_paths`) and their
barriers, one column per quantity and method, read off metrics.barrier_table (`barriers_by_method`). The family
supplies the specs, the residual form and the loss; the methods' names are align.methods'.
"""
from __future__ import annotations

import itertools

import pandas as pd
import torch

from ..align import apply_permutation, match_weights
from ..align.learned import learned_from_best
from ..align.methods import INVERTIBLE, LEARNED, ORTHOGONAL_WEIGHTS, UNALIGNED, WEIGHT
from ..align.orthogonal import residual_alignment, residual_features
from .interpolate import interpolate_states
from .metrics import barrier_table

METHODS = (UNALIGNED, WEIGHT, ORTHOGONAL_WEIGHTS, INVERTIBLE, LEARNED)
IN_RESIDUAL_FORM = (ORTHOGONAL_WEIGHTS, INVERTIBLE, LEARNED)  # endpoints live in the family's residual form
# column -> (metric, definition (None: the one asked for), barrier_table column): the error in points, the chord of
# the loss in % of the endpoints' mean
QUANTITIES = {"loss_barrier": ("loss", None, "barrier"), "chord_pct": ("loss", "chord", "instability"),
              "error_barrier_pp": ("error", None, "instability"), "error_chord_pp": ("error", "chord", "instability")}


def align_every_way(fam, cfg, a, b, x_train: torch.Tensor, train: dict, seed: int, learn_steps: int,
                    learn_lr: float, learn_units: bool = False) -> tuple[dict, dict, tuple]:
    """({method: T(B)}, diagnostics, (residual-form config, A in the residual form)) for one pair of K=1 states.

    - weight matching: permutations of the residual stream, heads and MLP units (Git Re-Basin), best of
      align.methods.RESTARTS runs (match_weights);
    - orthogonal residual map: Procrustes on the weights alternated with weight matching of heads and MLP units;
    - invertible residual map: without LayerNorm every invertible map M of the residual stream keeps the function;
      M = the least-squares map of B's residual activations onto A's on `x_train`, then weight matching given it;
    - learned: from the closed-form map with the lower full-batch training loss at the midpoint, an invertible map
      (and, with learn_units, the MLP permutation) learnt to minimise that loss (align.learned).
    train: the training tensors (one full batch, as the models trained)."""
    pspec = fam.perm_spec(cfg)
    perms, _ = match_weights(pspec, a, b, seed=seed)
    out = {UNALIGNED: b, WEIGHT: apply_permutation(b, pspec, perms)}
    rcfg, af, rspec = fam.residual_maps(cfg, a)
    _, bf, _ = fam.residual_maps(cfg, b)
    rperm = fam.perm_spec(rcfg)
    out[ORTHOGONAL_WEIGHTS], _ = residual_alignment(rperm, rspec, af, bf, seed=seed, group="orthogonal")
    collect = lambda s: fam.activations(rcfg, s, x_train)  # noqa: E731
    out[INVERTIBLE], inv = residual_alignment(
        rperm, rspec, af, bf, features=(residual_features(collect, af), residual_features(collect, bf)), seed=seed)
    sv = torch.linalg.svdvals(inv.map)
    batch = {n: t[None] for n, t in train.items()}  # full batch, as the models trained
    out[LEARNED], info, start = learned_from_best(af, {k: out[k] for k in (ORTHOGONAL_WEIGHTS, INVERTIBLE)},
                                                  fam.state_loss_fn(rcfg), itertools.repeat(batch), [batch],
                                                  pspec=rperm if learn_units else None, rspec=rspec,
                                                  steps=learn_steps, lr=learn_lr)
    diag = {"learned_start": start, "learned_kept_start": info.kept_start,
            "learned_train_mid_start": info.heldout_start, "learned_train_mid_end": info.heldout_end,
            "invertible_map_condition": float(sv.max() / sv.min())}
    return out, diag, (rcfg, af)


def path_of(fam, cfg, a, b, alphas, examples, device, **labels) -> pd.DataFrame:
    """Loss and error on `examples` (the test split) along the linear path a -> b (K=1 states), one row per α, with
    `labels` as columns."""
    r = fam.evaluate(cfg, interpolate_states(a, b, alphas), examples, batch_size=4096, device=device)
    return pd.DataFrame({**labels, "split": "test", "alpha": alphas, "loss": r.loss, "error": r.error})


def method_paths(fam, cfg, a, b, alphas, examples, device, align: dict, **labels) -> tuple[pd.DataFrame, dict]:
    """Every METHODS path of one pair (column `kind`: the method; path_of) and align_every_way's diagnostics;
    align: align_every_way's keyword arguments (x_train, train, seed, learn_steps, learn_lr, learn_units)."""
    ends, diag, (rcfg, af) = align_every_way(fam, cfg, a, b, **align)
    paths = [path_of(fam, *((rcfg, af) if m in IN_RESIDUAL_FORM else (cfg, a)), ends[m], alphas, examples, device,
                     **labels, kind=m) for m in METHODS]
    return pd.concat(paths, ignore_index=True), diag


def barrier_columns(paths: pd.DataFrame, by: tuple[str, ...], definition: str) -> pd.DataFrame:
    """One row per path (`by`) with the QUANTITIES under `definition`, read off metrics.barrier_table."""
    bt = barrier_table(paths, by, ("loss", "error"))
    cols = [bt[(bt.metric == m) & (bt.definition == (d or definition))].set_index(list(by))[c].rename(name)
            for name, (m, d, c) in QUANTITIES.items()]
    return pd.concat(cols, axis=1).reset_index()


def barriers_by_method(paths: pd.DataFrame, index: tuple[str, ...], definition: str) -> pd.DataFrame:
    """One row per `index` (e.g. a pair) with a `<quantity>:<method>` column for every QUANTITIES and METHODS
    (paths' column `kind`: the method), in METHODS order."""
    wide = barrier_columns(paths, (*index, "kind"), definition).pivot(index=list(index), columns="kind")
    wide.columns = [f"{q}:{m}" for q, m in wide.columns]
    return wide[[f"{q}:{m}" for m in METHODS for q in QUANTITIES]]
