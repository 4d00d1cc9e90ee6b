"""Notebook 03's encoder part: the shipped MiniLM (BERT family) fine-tuned on Shakespeare passages — full
fine-tuning, Houlsby adapters and LoRA (only the tuned parameters are interpolated); endpoints from different
seeds, from the two halves of the data and from two tasks (each endpoint keeping its own classifier).

Forgetting (Qin et al. 2022; lmc_core.analysis.forgetting): on a sample of *training* passages (where their dataset
cartography is measured), per pair, the passages right at endpoint A that turn wrong somewhere inside the path,
against a control path from A in a random direction of the same length.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..analysis.pair_paths import PairPaths, curve_frame, endpoint_state, pair_distances
from ..analysis.forgetting import forgetting_rows
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..config import ConfigError
from ..ensemble import copy_state
from ..families import family_of
from ..families.encoder import TASKS, TextDataConfig, text_examples
from ..runs.finetune import enc_spec, train_encoder
from .params import (ALPHAS, BATCH, EXAMPLES, MAX_STEPS, MAX_UNITS, MAX_WIDTH, STEPS, UNITS, WIDTH, Bool, Choice, Int,
                     ListOf, Mapping, StudyParams, param)


MODES = ("full", "adapter", "lora")
MODE_NAMES = {"full": "full", "adapter": "adapter", "lora": "LoRA"}
CHAINED = "different seeds"  # its pairs chain through shared copies (2i with 2i + 2): one unit


@dataclass(frozen=True)
class EncoderParams(StudyParams):
    """The encoder part's parameters (defaults: the quick profile's)."""

    run_encoder: bool = param(True, "also run the MiniLM part", Bool())
    enc_task: str = param("verse_prose", "the main classification task", Choice(TASKS))
    enc_task2: str = param("genre", "the second task of the two-task pair", Choice(TASKS))
    enc_layers: int = param(4, "MiniLM's first layers kept (1-6)", Int(1, 6))
    max_length: int = param(24, "tokens per passage", WIDTH)
    enc_steps: int = param(60, "MiniLM fine-tuning steps", STEPS)
    enc_batch: int = param(16, "passages per step", BATCH)
    enc_lr: dict = param({"full": 2e-4, "adapter": 2e-3, "lora": 2e-3}, "learning rate per tuning mode", Mapping())
    enc_warmup: int = param(6, "warm-up steps", Int(0, MAX_STEPS))
    enc_pairs: int = param(2, "pairs per tuning mode (SGD noise)", Int(2, MAX_UNITS))
    half_pairs: int = param(1, "pairs of the data-halves comparison", UNITS)
    enc_eval: int = param(128, "test passages evaluated along each path", EXAMPLES)
    enc_train_sample: int = param(128, "training passages of the forgetting and cartography sample", EXAMPLES)
    enc_alphas: int = param(7, "points on each MiniLM path, endpoints included", ALPHAS)
    modes: list = param(["full", "lora"], "tuning modes (full is required)", ListOf(Choice(MODES)))
    adapter: int = param(24, "Houlsby adapters' bottleneck width", Int(1, MAX_WIDTH))
    lora_rank: int = param(8, "LoRA's rank", Int(1, MAX_WIDTH))
    enc_controls: bool = param(False, "also train the data-halves and two-task runs", Bool())

    def check(self) -> None:
        """The encoder part's rules, checked before anything (the LM part included) trains."""
        if not self.run_encoder:
            return
        if self.enc_task == self.enc_task2:
            raise ConfigError(f"enc_task and enc_task2 must be two different tasks of {list(TASKS)}")
        if "full" not in self.modes:
            raise ConfigError(f"modes={self.modes!r} must include 'full'")
        if set(self.modes) - set(self.enc_lr):
            raise ConfigError(f"enc_lr={self.enc_lr!r} must give a learning rate for every mode in {self.modes}")
        TextDataConfig(task=self.enc_task, max_length=self.max_length).validate()
        from ..models.pretrained import minilm_dir

        minilm_dir()  # the pretrained MiniLM package: missing, this names it before the LM part trains
        for mode in self.modes:
            enc_spec(self, mode, self.enc_task).validate()
        enc_spec(self, "full", self.enc_task2).validate()


def encoder_part(p: EncoderParams, store, device) -> dict:
    """The encoder comparisons, the forgetting analysis and where the endpoints ended (main task enc_task,
    second task enc_task2): tables rows, curves, runs, forgetting, endpoints."""
    t1 = p.enc_task
    data = {t: text_examples(TextDataConfig(task=t, max_length=p.max_length)) for t in (t1, p.enc_task2)}
    tests = {t: d["test"].head(p.enc_eval) for t, d in data.items()}
    sample = data[t1]["train"].head(p.enc_train_sample)  # cartography and forgetting: training passages
    trained, runs = train_encoder(p, store, device, data, tests, sample)
    ends = [{"run": name, **endpoint_state(r.history, family_of(spec.model).chance_loss(spec.model))}
            for name, (spec, r) in trained.items()]
    paths = PairPaths("encoder", alpha_grid(p.enc_alphas), device)
    spec, r = trained["full"]
    fam = family_of(spec.model)
    start = fam.init(spec.model, [spec.seeds[0].init])  # MiniLM + a head

    def add(comparison, i, spec, a, b, keys=None):
        paths.add(comparison, i, spec.model, a, b, fam.eval_examples(spec.model, tests[t1]), 64, keys,
                  start if spec.model.tune == "full" else None)

    for mode in p.modes:
        m_spec, m_run = trained[mode]
        keys = family_of(m_spec.model).interp_keys(m_spec.model, m_run.state)
        for i in range(p.enc_pairs):
            add(f"{MODE_NAMES[mode]} fine-tuning, SGD noise", i, m_spec, copy_state(m_run.state, 2 * i),
                copy_state(m_run.state, 2 * i + 1), keys)
    forget = [forgetting_rows(fam, spec.model, copy_state(r.state, 2 * i), copy_state(r.state, 2 * i + 1),
                              paths.alphas, sample, r.dynamics, 2 * i, i, device) for i in range(p.enc_pairs)]
    for i in range(p.enc_pairs - 1):  # different seeds: another classifier init and other noise
        add(CHAINED, i, spec, copy_state(r.state, 2 * i), copy_state(r.state, 2 * i + 2))
    if p.enc_controls:
        for i in range(p.half_pairs):
            add("two halves of the data", i, spec, copy_state(trained["half 1"][1].state, i),
                copy_state(trained["half 2"][1].state, i))
        two_tasks(p, paths, trained, tests, start)
    rows, curves = paths.tables()
    return {"rows": rows, "curves": curves, "runs": runs, "forgetting": pd.concat(forget, ignore_index=True),
            "endpoints": pd.DataFrame(ends)}


def two_tasks(p: EncoderParams, paths: PairPaths, trained: dict, tests: dict, start: dict) -> None:
    """Main-task copy 2i against second-task copy i: the backbone interpolated, each task read with its own
    classifier held at its endpoint's weights (split "test": the main task; the second task under its name)."""
    (spec, r), (spec2, r2) = trained["full"], trained[p.enc_task2]
    fam, alphas = family_of(spec.model), paths.alphas
    for i in range(p.enc_pairs):
        g, v = copy_state(r.state, 2 * i), copy_state(r2.state, i)
        backbone = set(g) - fam.head_keys(spec.model, g)
        ga, vb = {n: g[n] for n in backbone}, {n: v[n] for n in backbone}
        part = []
        for task, cfg, own in ((p.enc_task, spec.model, g), (p.enc_task2, spec2.model, v)):
            path = {**interpolate_states(ga, vb, alphas), **{n: own[n].expand(len(alphas), *own[n].shape[1:]).clone()
                                                             for n in fam.head_keys(cfg, own)}}
            res = fam.evaluate(cfg, path, fam.eval_examples(cfg, tests[task]), batch_size=64, device=paths.device)
            part.append(curve_frame("encoder", "two tasks (own heads)", i, "test" if task == p.enc_task else task,
                                    alphas, res, fam.metrics))
        paths.keep(pd.concat(part), pair_distances(ga, vb, None, {n: start[n] for n in backbone}))
