"""Notebook 03's encoder part: the shipped MiniLM (BERT family) fine-tuned on Shakespeare passages — full
fine-tuning, Houlsby adapters and LoRA (only the tuned parameters are interpolated); endpoints from different
seeds, from the two halves of the data and from two tasks (each endpoint keeping its own classifier).

Forgetting (Qin et al. 2022): on a sample of *training* passages (where their dataset cartography is measured:
each passage's confidence and variability during training), per pair, the passages right at endpoint A that
turn wrong somewhere inside the path, against a control path from A in a random direction of the same length.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import rng
from ..config import ConfigError, RunSpec, Seeds, TrainConfig, check_int
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..data.batches import Examples
from ..ensemble import copy_state
from ..families import family_of
from ..families.encoder import TASKS, TextDataConfig, encoder_config, text_examples
from ..runs.store import RunStore
from .common import check_alphas, check_positive
from .comparison_rows import curve_frame, pair_rows

MODES = ("full", "adapter", "lora")
MODE_NAMES = {"full": "full", "adapter": "adapter", "lora": "LoRA"}
ENCODER_DEFAULTS = dict(
    run_encoder=True, enc_task="verse_prose", enc_task2="genre", enc_layers=4, max_length=24, enc_steps=80,
    enc_batch=16, enc_lr={"full": 2e-4, "adapter": 2e-3, "lora": 2e-3}, enc_warmup=8, enc_pairs=2, half_pairs=1,
    enc_eval=256, enc_train_sample=256, enc_alphas=9, modes=list(MODES), adapter=24, lora_rank=8,
    enc_controls=True,  # also train the data-halves and two-task runs (their comparisons need MiniLM runs of their own)
)
ENCODER_SMOKE = dict(enc_layers=1, max_length=16, enc_steps=4, enc_batch=4, enc_warmup=1, enc_pairs=2, enc_eval=32,
                     enc_train_sample=32, enc_alphas=3)
ENCODER_PAPER = dict(enc_layers=6, enc_steps=1000, enc_batch=32, max_length=64, enc_warmup=60, enc_pairs=4,
                     half_pairs=4, enc_eval=4000, enc_train_sample=2000, enc_alphas=11)
PLATEAU = 0.02  # a test loss that still falls by more than this fraction over the last 40 % of steps: not converged
LEARNED = 0.9  # a test loss above this fraction of a uniform guess's: the endpoints did not learn the task (a flat
# loss there is a stall, not a plateau)


def check_params(p: dict) -> None:
    """The encoder part's parameters, checked before anything (the LM part included) trains."""
    if not p["run_encoder"]:
        return
    check_positive(p, "enc_steps", "enc_batch", "enc_eval", "enc_train_sample", "half_pairs")
    check_int("enc_pairs", p["enc_pairs"], 2)
    check_int("enc_layers", p["enc_layers"], 1, 6)
    check_alphas({"alphas": p["enc_alphas"]})
    if p["enc_task"] not in TASKS or p["enc_task2"] not in TASKS or p["enc_task"] == p["enc_task2"]:
        raise ConfigError(f"enc_task and enc_task2 must be two different tasks of {list(TASKS)}")
    bad = [m for m in p["modes"] if m not in MODES]
    if bad or "full" not in p["modes"]:
        raise ConfigError(f"modes={p['modes']!r} must include 'full' and come from {list(MODES)}")
    if not isinstance(p["enc_lr"], dict) or set(p["modes"]) - set(p["enc_lr"]):
        raise ConfigError(f"enc_lr={p['enc_lr']!r} must give a learning rate for every mode in {p['modes']}")
    check_int("adapter", p["adapter"], 1)
    check_int("lora_rank", p["lora_rank"], 1)
    if not isinstance(p["enc_controls"], bool):
        raise ConfigError(f"enc_controls={p['enc_controls']!r} must be True or False")
    TextDataConfig(task=p["enc_task"], max_length=p["max_length"]).validate()
    from ..models.pretrained import minilm_dir

    minilm_dir()  # the pretrained MiniLM package: missing, this names it before the LM part trains
    for mode in p["modes"]:
        enc_spec(p, mode, p["enc_task"]).validate()
    enc_spec(p, "full", p["enc_task2"]).validate()


def enc_spec(p: dict, mode: str, task: str, half: int = 0, seeds=None) -> RunSpec:
    """A MiniLM fine-tuning run: pairs share their classifier seed and differ in data order and dropout."""
    n_classes = 3 if task == "genre" else 2
    extra = {"adapter": p["adapter"]} if mode == "adapter" else {"lora_rank": p["lora_rank"]} if mode == "lora" else {}
    cfg = encoder_config(tune=mode, n_layers=p["enc_layers"], n_classes=n_classes, **extra)
    S = p["enc_steps"]
    train = TrainConfig(steps=S, batch_size=p["enc_batch"], optimizer="adamw", lr=p["enc_lr"][mode],
                        weight_decay=0.01, schedule="cosine", warmup_steps=p["enc_warmup"], clip_norm=1.0,
                        betas=(0.9, 0.999), eval_every=max(S // 5, 1), store_optimizer=False, save_every=0)
    if seeds is None:
        seeds = tuple(Seeds(init=1 + c // 2, data=20 + c, dropout=20 + c) for c in range(2 * p["enc_pairs"]))
    return RunSpec(model=cfg, data=TextDataConfig(task=task, max_length=p["max_length"], half=half), train=train,
                   seeds=tuple(seeds))


def endpoint_state(spec: RunSpec, run, chance: float) -> dict:
    """Where the copies' training ended: test error and loss (mean over copies), the loss of a uniform guess, and
    whether the test loss still fell by more than PLATEAU over the last 40 % of the monitored steps, and whether it
    is below LEARNED x the uniform guess's (converged: learned and no longer falling)."""
    h = run.history.dropna(subset=["test_loss"]) if "test_loss" in run.history else pd.DataFrame()
    if h.empty:
        return {"test_error": float("nan"), "test_loss": float("nan"), "chance_loss": chance, "converged": False}
    by_step = h.groupby("step")[["test_loss", "test_acc"]].mean().sort_index()
    last = by_step.iloc[-1]
    cut = by_step.index.max() * 0.6
    before = by_step[by_step.index <= cut].iloc[-1] if (by_step.index <= cut).any() else by_step.iloc[0]
    drop = float((before.test_loss - last.test_loss) / max(before.test_loss, 1e-12))
    learned = bool(last.test_loss < LEARNED * chance)
    return {"test_error": float(1 - last.test_acc), "test_loss": float(last.test_loss), "chance_loss": chance,
            "loss_drop_last_40pct": drop, "learned": learned, "converged": bool(drop < PLATEAU and learned)}


def encoder_part(p: dict, store: RunStore, device):
    """The encoder comparisons, the forgetting analysis and where the endpoints ended (main task enc_task,
    second task enc_task2)."""
    t1, t2 = p["enc_task"], p["enc_task2"]
    data = {t: text_examples(TextDataConfig(task=t, max_length=p["max_length"])) for t in (t1, t2)}
    tests = {t: d["test"].head(p["enc_eval"]) for t, d in data.items()}
    sample = data[t1]["train"].head(p["enc_train_sample"])  # cartography and forgetting: training passages
    runs, trained, ends = [], {}, []

    def get(name, spec, train_data, dynamics=False):
        monitor = {"test": tests[spec.data.task], **({"train_sample": sample} if dynamics else {})}
        r = store.get(spec, train_data, device, p["progress"], monitor=monitor,
                      dynamics="train_sample" if dynamics else None)
        runs.append({"model": "encoder", "run": f"MiniLM {name}", "copies": spec.k, "trained_now": r.trained_now,
                     "store": r.path})
        trained[name] = (spec, r)
        fam = family_of(spec.model)
        ends.append({"run": name, **endpoint_state(spec, r, fam.chance_loss(spec.model))})
        return r

    for mode in p["modes"]:
        get(mode, enc_spec(p, mode, t1), data[t1]["train"], dynamics=(mode == "full"))
    full_spec, full = trained["full"]
    own = tuple(full_spec.seeds[2 * i] for i in range(p["enc_pairs"]))  # the main-task copies' own seeds
    if p["enc_controls"]:
        get(t2, enc_spec(p, "full", t2, seeds=own), data[t2]["train"])
        for h in (1, 2):
            get(f"half {h}", enc_spec(p, "full", t1, half=h, seeds=own[: p["half_pairs"]]),
                text_examples(TextDataConfig(task=t1, max_length=p["max_length"], half=h))["train"])

    alphas = alpha_grid(p["enc_alphas"])
    rows, curves, forget = [], [], []
    start = family_of(full_spec.model).init(full_spec.model, [full_spec.seeds[0].init])  # MiniLM + a head

    def add(comparison, i, spec, a, b, keys=None):
        fam = family_of(spec.model)
        path = interpolate_states(a, b, alphas, keys)
        res = fam.evaluate(spec.model, path, fam.eval_examples(spec.model, tests[t1]), batch_size=64, device=device)
        c = curve_frame("encoder", comparison, i, "test", alphas, res, fam)
        curves.append(c)
        base = start if spec.model.tune == "full" else None
        rows.extend(pair_rows("encoder", comparison, i, a, b, c, fam.metrics, keys, base))

    for mode in p["modes"]:
        spec, r = trained[mode]
        keys = family_of(spec.model).interp_keys(spec.model, r.state)
        for i in range(p["enc_pairs"]):
            add(f"{MODE_NAMES[mode]} fine-tuning, SGD noise", i, spec, copy_state(r.state, 2 * i),
                copy_state(r.state, 2 * i + 1), keys)
    spec, r = trained["full"]
    fam = family_of(spec.model)
    for i in range(p["enc_pairs"]):  # forgetting along the path vs a random direction, on training passages
        forget.append(forgetting_rows(fam, spec.model, copy_state(r.state, 2 * i), copy_state(r.state, 2 * i + 1),
                                      alphas, sample, r.dynamics, 2 * i, i, device))
    for i in range(p["enc_pairs"] - 1):  # different seeds: another classifier init and other noise
        add("different seeds", i, spec, copy_state(r.state, 2 * i), copy_state(r.state, 2 * i + 2))
    if not p["enc_controls"]:
        return rows, curves, runs, pd.concat(forget, ignore_index=True), pd.DataFrame(ends)
    for i in range(p["half_pairs"]):
        add("two halves of the data", i, spec, copy_state(trained["half 1"][1].state, i),
            copy_state(trained["half 2"][1].state, i))
    for i in range(p["enc_pairs"]):  # two tasks: the backbone is interpolated, each task read with its own classifier
        g, v = copy_state(r.state, 2 * i), copy_state(trained[t2][1].state, i)
        spec2 = trained[t2][0]
        backbone = set(g) - fam.head_keys(spec.model, g)
        part = []
        for task, cfg, own_state in ((t1, spec.model, g), (t2, spec2.model, v)):
            path = {**interpolate_states({n: g[n] for n in backbone}, {n: v[n] for n in backbone}, alphas),
                    **{n: own_state[n].expand(len(alphas), *own_state[n].shape[1:]).clone()
                       for n in fam.head_keys(cfg, own_state)}}
            res = fam.evaluate(cfg, path, fam.eval_examples(cfg, tests[task]), batch_size=64, device=device)
            part.append(curve_frame("encoder", "two tasks (own heads)", i, "test" if task == t1 else task, alphas,
                                    res, fam))
        c = pd.concat(part)
        curves.append(c)
        rows += pair_rows("encoder", "two tasks (own heads)", i, {n: g[n] for n in backbone},
                          {n: v[n] for n in backbone}, c, fam.metrics, start={n: start[n] for n in backbone})
    return rows, curves, runs, pd.concat(forget, ignore_index=True), pd.DataFrame(ends)


def random_direction(a: dict, b: dict, keys, seed: int) -> dict:
    """A + r with r a Gaussian direction over the interpolated parameters, scaled so that |r| = |B - A|."""
    names = sorted(keys if keys is not None else a)
    g = rng.generator(seed, 0xD1E)
    r = {n: torch.randn(a[n].shape, generator=g, dtype=torch.float64) for n in names}
    norm = torch.sqrt(sum((r[n] ** 2).sum() for n in names))
    target = torch.sqrt(sum(((b[n].double() - a[n].double()) ** 2).sum() for n in names))
    return {n: (a[n].double() + r[n] * (target / norm)).to(a[n].dtype) if n in r else a[n] for n in a}


def forgetting_rows(fam, cfg, a, b, alphas, sample: Examples, dynamics: dict, copy: int, pair: int, device
                    ) -> pd.DataFrame:
    """Per training passage of the sample: right at A, wrong somewhere strictly inside the path A -> B
    (forgotten), the same on the control path A -> A + r (|r| = |B - A|, a random direction), and the passage's
    training dynamics under A (dataset cartography: mean and standard deviation of the probability of its true
    label over the monitored steps)."""
    keys = fam.interp_keys(cfg, a)
    ex = fam.eval_examples(cfg, sample)
    out = {}
    for name, end in (("path", b), ("random", random_direction(a, b, keys, 1000 + pair))):
        res = fam.evaluate(cfg, interpolate_states(a, end, alphas, keys), ex, batch_size=64, device=device,
                           keep=("examples",))
        out[name] = res.per_example_correct  # [n_alpha, N]
    corr, rnd = out["path"], out["random"]
    frame = pd.DataFrame({"pair": pair, "example": np.arange(corr.shape[1]), "split": "train (sample)",
                          "correct_a": corr[0], "correct_b": corr[-1],
                          "forgotten": corr[0] & (~corr[1:-1]).any(0),
                          "forgotten_random": rnd[0] & (~rnd[1:-1]).any(0)})
    if dynamics:
        prob = dynamics["dyn.prob"][:, copy].numpy()  # [E, N]
        frame["confidence"] = prob.mean(0)
        frame["variability"] = prob.std(0)
    return frame
