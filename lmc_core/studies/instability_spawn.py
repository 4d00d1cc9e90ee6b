"""Notebook 02: instability during training, spawning at step k (Frankle et al. 2020).

Several parents (each its own initialisation and data order) are trained to the spawn points; at every
spawn step k, copies of each parent continue to T with their own SGD noise (the parent's optimizer state and
learning rate carry over). Every pair of copies of one parent at one k is interpolated; pairs are averaged within
their parent (the independent unit). k* — the onset of stability — is read off the `chord` barrier (a convex path
is no barrier) by the findings layer: bracketed by the last k judged unstable and the first k from which every k
is judged stable (findings.onset).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import METRICS, barrier_table
from ..config import ConfigError, Seeds, config_hash
from ..ensemble import copy_state
from ..publish.paths import shown
from ..publish.tb import command as tb_command
from ..publish.tb import write_history
from ..runs.layout import parent_identity, tensorboard_dir
from ..runs.spawn import child_history, parent_checkpoint, parent_dir, spawn_children
from . import instability_spawn_figures as figs
from .base import Study
from .instability_init_figures import schedule_words
from .lm_setup import LMParams, eval_splits, lm_spec, load_study_corpus, pairs_of
from .params import MAX_SEED, MAX_UNITS, UNITS, Int, ListOf, Real, param


@dataclass(frozen=True)
class Params(LMParams):
    """Notebook 02's parameters (LMParams plus these)."""

    spawn: list = param([0, 5, 10, 25, 50, 100, 250], "spawn points: steps (ints) or fractions of training "
                        "(floats in [0, 1))", ListOf(Real(0)))
    parents: int = param(2, "parents (the independent units), each its own initialisation and data order", UNITS)
    children: int = param(3, "copies spawned per parent and spawn point (every pair is scored)", Int(2, MAX_UNITS))
    parent_seed: int = param(100, "the parents' data/dropout seeds start here", Int(0, MAX_SEED))

    def check(self) -> None:
        super().check()
        for s in self.spawn:
            if isinstance(s, bool) or (isinstance(s, float) and not s < 1):
                raise ConfigError(f"spawn point {s!r} must be a step (int >= 0) or a fraction of training in [0, 1)")
        for spec in parent_specs(self, 2, max(self.steps or 1, 1)):
            spec.validate()


# Notebook 01's quick model and recipe at its headline length T = 3000, where its copies from initialisation are
# unstable; 5 parents (the findings layer's minimum for a verdict) x 2 copies per spawn point. Trained compiled with
# the counter-based dropout masks and, on a CPU with bf16 instructions, bf16 autocast: 1.6-1.8x the eager fp32 step at
# K = 8 on one thread (bench/ensemble.py), which is what makes 5 parents at this T fit the quick budget.
QUICK = Params(level="char", model_overrides={"d_model": 64, "d_ff": 64}, steps=3000, eval_tokens=10000,
               decay_frac=0.25, parents=5, children=2, spawn=[0, 50, 250], precision="auto", dropout_masks="hash",
               compile=True)


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


def parent_specs(p: Params, vocab_size: int, T: int):
    """One single-copy spec per parent: parent j has init seed j and data/dropout seed parent_seed + j."""
    return [lm_spec(p, vocab_size, T, (Seeds(init=j, data=p.parent_seed + j, dropout=p.parent_seed + j),))
            for j in range(p.parents)]


def child_seeds(p: Params) -> list[Seeds]:
    """The children's seeds (the same for every parent and spawn point; the init field is ignored)."""
    s0 = p.first_seed
    return [Seeds(init=0, data=s0 + c, dropout=s0 + c) for c in range(p.children)]


class InstabilitySpawn(Study):
    """Copies spawned from a parent at step k: instability against k and the onset of stability k*."""

    prefix, notebook = "02", "02_instability_during_training"
    question = "From which spawn step k on are copies trained with different SGD noise linearly connected?"
    claim = ("Frankle et al. 2020: the error barrier falls below 2 points from k* ≈ 3 % of training on (ResNet-20, "
             "CIFAR-10); the PTB transformer study spawns at epochs 0-7 and reports its perplexity instability dropping "
             "after the first epoch (no number)")
    capped, capped_units = {"eval_tokens": 512, "parents": 2, "children": 2}, {"parents": "lm", "children": "lm"}
    capped_eval = {"eval_tokens": 1, "parents": 1, "children": 2}  # pairs per parent grow as children ** 2
    profiles = {
        "smoke": QUICK.replace(profile="smoke", model_overrides={"d_model": 32, "d_ff": 32}, vocab_cap=2000, steps=40,
                               spawn=[0, 4, 10], parents=2, children=2, alphas=5, eval_tokens=2000, precision="fp32",
                               dropout_masks="device", compile=False),
        # notebook 01's quick character model at its T = 3000; 5 parents x 2 copies at k = 0, 50, 250 (at T = 3000
        # copies spawned at k = 10-50 were still judged unstable or inconclusive); the rate decays over the last quarter
        "quick": QUICK,
        # the PTB study's word-level d=200 model, 8 epochs, spawned at fractions of training (GPU)
        "paper": Params(profile="paper", steps=0, epochs=8, precision="auto", dropout_masks="hash",
                        fused_cross_entropy=True,  # a 10,000-word output layer (as notebook 01's paper)
                        spawn=[0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3,
                        0.5], parents=5, alphas=31, eval_tokens=48000),  # as notebook 01's paper: sized by its standard error
    }

    def compute(self, p: Params, ctx) -> dict:
        """Train the parents and the spawned copies, interpolate every pair."""
        corpus, T = load_study_corpus(p, ctx.cache_dir)
        try:
            ks = spawn_steps(list(p.spawn), T)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        specs = parent_specs(p, len(corpus.vocab), T)
        ev = eval_splits(corpus, specs[0].model.context, p.eval_tokens, p.eval_seed)
        curves, histories = [], []
        for j, spec in enumerate(specs):
            states = spawn_children(ctx.store, spec, ks, child_seeds(p), corpus.train, ctx.device, p.progress)
            for k in ks:
                for a, b in pairs_of(p.children):
                    c = interpolation_curve(spec.model, copy_state(states[k], a), copy_state(states[k], b), ev,
                                            alpha_grid(p.alphas), None, p.eval_batch, ctx.device)
                    curves.append(c.assign(parent=j, k=k, k_frac=k / T, pair=f"{j}:{a}-{b}"))
            # the parent's loss log; a damaged checkpoint is moved aside and trained again from an earlier one
            histories.append(parent_checkpoint(ctx.store, spec, max(ks), corpus.train, ctx.device, p.progress).log)
        curves = pd.concat(curves, ignore_index=True)
        barriers = barrier_table(curves, ("parent", "k", "k_frac", "pair"), METRICS)
        run = pd.DataFrame([{"parents": p.parents, "parent": config_hash(parent_identity(s)), "T": T,
                             "spawn_steps": ks, "children_per_k": p.children,
                             "pairs_per_k": p.parents * len(pairs_of(p.children)),
                             "copies": p.parents * len(ks) * p.children, "device": str(ctx.device),
                             "schedule": schedule_words(s.train), "vocab": len(corpus.vocab),
                             "eval_tokens": int(curves.tokens.iloc[0])} for s in specs])
        data = {"curves": curves, "barriers": barriers, "by_k": figs.per_k_table(barriers, p.definition),
                "onset": figs.onset_table(barriers, T), "run": run, "T": T, "ks": ks, "histories": histories}
        if p.tensorboard:
            data["tensorboard"] = tensorboard(p, ctx, specs, ks, histories, run)
        return data

    def figures(self, p: Params, data: dict):
        T = data["T"]
        yield "parents", *figs.parents_figure(data["histories"], data["ks"], data["run"].schedule.iloc[0], p.profile)
        yield "instability_vs_k", *figs.instability_vs_k_figure(data["barriers"], data["onset"], T, p.profile)
        yield "loss_vs_alpha_by_k", *figs.curves_by_k_figure(data["curves"], data["ks"], T, p.profile)
        yield "instability_by_definition", *figs.definitions_figure(data["barriers"], T, p.profile)

    def csvs(self, p: Params, data: dict) -> dict:
        # every barrier in 02_barriers.csv can be recomputed from 02_curves.csv
        return {"barriers": data["barriers"], "curves": data["curves"], "onset": data["onset"]}

    def findings(self, p: Params, data: dict):
        return figs.describe(data["barriers"], data["onset"], data["run"], data["T"], p)

    def setting(self, p: Params) -> str:
        d = p.model_overrides.get("d_model", 200)
        length = f"{p.epochs} epochs" if p.epochs else f"T = {p.steps}"
        return f"{p.level} level, d = {d}, {length}, {p.parents} parents × {p.children} copies per k"


def tensorboard(p: Params, ctx, specs, ks, histories, run: pd.DataFrame) -> str:
    """Every parent's and spawn point's loss logs, from the store, for TensorBoard; the lines that open them."""
    tb_dirs = []
    for j, spec in enumerate(specs):
        tb_dir = tensorboard_dir(parent_dir(ctx.store, spec))
        write_history(tb_dir / "parent", pd.DataFrame(histories[j], columns=["step", "copy", "loss", "lr"]))
        for k in ks:
            write_history(tb_dir / f"spawn-k{k}", child_history(ctx.store, spec, k, tuple(
                replace(c, init=spec.seeds[0].init) for c in child_seeds(p))))
        tb_dirs.append(tb_dir)
    run["tensorboard"] = [shown(t) for t in tb_dirs]
    return "\n".join(tb_command(t) for t in tb_dirs)


STUDY = InstabilitySpawn()
run = STUDY.run
PROFILES = STUDY.profiles
