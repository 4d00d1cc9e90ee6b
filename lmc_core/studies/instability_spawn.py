"""Notebook 02: instability during training, spawning at step k (Frankle et al. 2020).

Several parents (each its own initialisation and data order) are trained to the spawn points; at every
spawn step k, copies of each parent continue to T with their own SGD noise (the parent's optimizer state and
learning rate carry over). Every pair of copies of one parent at one k is interpolated. k* — the onset of
stability — is read off the `chord` barrier (a convex path is no barrier) as the first k from which the whole
interval stays below the threshold, and its own interval comes from resampling parents, then pairs.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import METRICS, barrier_table
from ..config import ConfigError, Seeds, check_int, config_hash
from ..ensemble import copy_state
from ..publish.paths import shown
from ..publish.tb import command as tb_command
from ..publish.tb import write_history
from ..runs.layout import parent_identity, tensorboard_dir
from ..runs.spawn import child_history, parent_checkpoint, parent_dir, spawn_children
from . import instability_spawn_figures as figs
from .common import StudyResult, prepare
from .lm_setup import STUDY_DEFAULTS, check_lm_params, eval_splits, lm_spec, load_study_corpus, pairs_of

PREFIX = "02"

PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 32, "d_ff": 32}, "vocab_cap": 2000,
              "steps": 40, "spawn": [0, 4, 10], "parents": 2, "children": 2, "alphas": 5, "eval_tokens": 2000,
              "decay_frac": 0.25, "parent_seed": 100},
    # notebook 01's quick character model; spawn points where the transition happens (a few dozen steps),
    # 2 parents x 3 copies per spawn point = 6 pairs per k; the rate decays to 0 over the last quarter
    "quick": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 64, "d_ff": 64}, "steps": 1500,
              "spawn": [0, 5, 10, 25, 50, 100, 250], "parents": 2, "children": 3, "alphas": 21,
              "eval_tokens": 10000, "decay_frac": 0.25, "parent_seed": 100},
    # the PTB study's word-level d=200 model, 8 epochs, spawned at fractions of training (GPU)
    "paper": {**STUDY_DEFAULTS, "steps": 0, "epochs": 8,
              "spawn": [0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5], "parents": 3, "children": 3,
              "alphas": 31, "eval_tokens": 200000, "parent_seed": 100},
}


def spawn_steps(spawn: list, total: int) -> list[int]:
    """Spawn points as steps: floats in [0, 1) are fractions of training, ints are steps."""
    out = []
    for s in spawn:
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise ValueError(f"spawn point {s!r} must be a step (int) or a fraction of training (float)")
        k = int(round(s * total)) if isinstance(s, float) else int(s)
        if not 0 <= k < total:
            raise ValueError(f"spawn point {s!r} -> step {k} lies outside [0, T={total}); "
                             "use fractions in [0, 1) or steps below T")
        out.append(k)
    return sorted(set(out))


def check_params(p: dict) -> None:
    """Every check that needs no data (the spawn grid against T once T is known)."""
    check_lm_params(p)
    check_int("parents", p["parents"], 1)
    check_int("children", p["children"], 2)
    spawn = p["spawn"]
    if not isinstance(spawn, (list, tuple)) or not spawn:
        raise ConfigError(f"spawn={spawn!r}: give a non-empty list of spawn points, e.g. [0, 10, 100] (steps) or "
                          "[0.0, 0.01, 0.1] (fractions of training)")
    for s in spawn:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
            raise ConfigError(f"spawn point {s!r} must be a step (int >= 0) or a fraction of training in [0, 1)")
    for spec in parent_specs(p, 2, max(p["steps"] or 1, 1)):
        spec.validate()


def parent_specs(p: dict, vocab_size: int, T: int):
    """One single-copy spec per parent: parent j has init seed j and data/dropout seed parent_seed + j."""
    return [lm_spec(p, vocab_size, T, (Seeds(init=j, data=p["parent_seed"] + j, dropout=p["parent_seed"] + j),))
            for j in range(p["parents"])]


def child_seeds(p: dict) -> list[Seeds]:
    """The children's seeds (the same for every parent and spawn point; the init field is ignored)."""
    s0 = p["first_seed"]
    return [Seeds(init=0, data=s0 + c, dropout=s0 + c) for c in range(p["children"])]


def run(params: dict | None = None) -> StudyResult:
    """Train the parents and the spawned copies, interpolate every pair, write figures, CSVs and the summary."""
    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    corpus, T = load_study_corpus(p, cache_dir)
    try:
        ks = spawn_steps(list(p["spawn"]), T)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    alphas = alpha_grid(p["alphas"])
    specs = parent_specs(p, len(corpus.vocab), T)
    ev = eval_splits(corpus, specs[0].model.context, p["eval_tokens"], p["eval_seed"])
    curves, histories = [], []
    for j, spec in enumerate(specs):
        states = spawn_children(store, spec, ks, child_seeds(p), corpus.train, device, p["progress"])
        for k in ks:
            for a, b in pairs_of(p["children"]):
                c = interpolation_curve(spec.model, copy_state(states[k], a), copy_state(states[k], b), ev, alphas,
                                        None, p["eval_batch"], device)
                curves.append(c.assign(parent=j, k=k, k_frac=k / T, pair=f"{j}:{a}-{b}"))
        histories.append(parent_checkpoint(store, spec, max(ks)).log)
    curves = pd.concat(curves, ignore_index=True)
    barriers = barrier_table(curves, ("parent", "k", "k_frac", "pair"), METRICS)
    by_k = figs.per_k_table(barriers, p["definition"])
    onsets = figs.onset_table(barriers, T)
    res = StudyResult(params=p, tables={"curves": curves, "barriers": barriers, "by_k": by_k, "onset": onsets})
    res.tables["run"] = pd.DataFrame([{"parents": p["parents"], "parent": config_hash(parent_identity(s)), "T": T,
                                       "spawn_steps": ks, "children_per_k": p["children"],
                                       "pairs_per_k": p["parents"] * len(pairs_of(p["children"])),
                                       "copies": p["parents"] * len(ks) * p["children"], "device": str(device),
                                       "schedule": figs.schedule_words(s.train), "vocab": len(corpus.vocab),
                                       "eval_tokens": int(curves.tokens.iloc[0])} for s in specs])
    if p["tensorboard"]:  # every parent's and spawn point's loss logs, from the store
        tb_dirs = []
        for j, spec in enumerate(specs):
            tb_dir = tensorboard_dir(parent_dir(store, spec))
            write_history(tb_dir / "parent", pd.DataFrame(histories[j], columns=["step", "copy", "loss", "lr"]))
            for k in ks:
                write_history(tb_dir / f"spawn-k{k}", child_history(store, spec, k, tuple(
                    replace(c, init=spec.seeds[0].init) for c in child_seeds(p))))
            tb_dirs.append(tb_dir)
        res.tables["run"]["tensorboard"] = [shown(t) for t in tb_dirs]
        res.tensorboard = "\n".join(tb_command(t) for t in tb_dirs)
    fig, d = figs.parents_figure(histories, ks, res.tables["run"].schedule.iloc[0], p["profile"])
    res.add_figure(f"{PREFIX}_parents", fig, d)
    fig, d = figs.instability_vs_k_figure(barriers, onsets, T, p["profile"])
    res.add_figure(f"{PREFIX}_instability_vs_k", fig, d)
    fig, d = figs.curves_by_k_figure(curves, ks, T, p["profile"])
    res.add_figure(f"{PREFIX}_loss_vs_alpha_by_k", fig, d)
    fig, d = figs.definitions_figure(barriers, T, p["profile"])
    res.add_figure(f"{PREFIX}_instability_by_definition", fig, d)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.add_csv(f"{PREFIX}_curves", curves)  # every barrier in 02_barriers.csv can be recomputed from it
    res.add_csv(f"{PREFIX}_onset", onsets)
    res.publish(fig_dir, PREFIX, figs.describe(barriers, by_k, onsets, res.tables["run"], T, p))
    return res
