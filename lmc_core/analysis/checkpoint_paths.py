"""Linear paths between copies of one stored run at every kept checkpoint: how the barrier between two copies
changes as they train (e.g. before and after they grok)."""
from __future__ import annotations

import pandas as pd

from ..align import apply_permutation, match_weights
from ..align.methods import UNALIGNED, WEIGHT
from ..ensemble import copy_state
from ..families import family_of
from .residual_methods import path_of


def paths_over_training(spec, store, run, pairs, alphas, examples, device) -> pd.DataFrame:
    """Loss and error on `examples` along the unaligned and the weight-matched path (column `kind`, align.methods'
    names; match_weights from the first copy's seed) between each pair ((copy, seed), (copy, seed)) of a stored
    run's copies, at every kept checkpoint and at the end (column `step`; column `pair`: "seed-seed")."""
    fam = family_of(spec.model)
    pspec = fam.perm_spec(spec.model)
    states = {s: store.checkpoint(spec, s) for s in spec.train.checkpoints} | {spec.train.steps: run.state}
    paths = []
    for step, st in sorted(states.items()):
        for (ca, sa), (cb, sb) in pairs:
            a, b = copy_state(st, int(ca)), copy_state(st, int(cb))
            perms, _ = match_weights(pspec, a, b, seed=int(sa))
            paths += [path_of(fam, spec.model, a, bb, alphas, examples, device, step=step, pair=f"{int(sa)}-{int(sb)}",
                              kind=kind) for kind, bb in ((UNALIGNED, b), (WEIGHT, apply_permutation(b, pspec, perms)))]
    return pd.concat(paths, ignore_index=True) if paths else pd.DataFrame(
        columns=["step", "pair", "kind", "split", "alpha", "loss", "error"])
