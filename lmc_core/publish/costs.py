"""What a capped run (lmc_core.capped) reports: the full run's projected cost, and the marks that keep it from ever
being read as a result.

A capped run trains every run of the profile at its real size for a few updates, so its ledger holds each training
call's measured seconds per copy-step at the profile's sizes and the copy-steps the full call makes: the projected
training time is exact up to the machine's noise (for the runs the capped run makes; a study that caps its number
of units, `Study.capped_units`, has the training of that family scaled by the ratio). Everything else (evaluation, alignment,
statistics): the evaluation calls (Family.evaluate, timed while capped) are scaled by the ratio of the main
evaluation's full sizes to the capped ones (an estimate); the rest is taken as measured.

The projection is shown in the capped run's summary, kept in its JSON (`capped.projection`) and its runs in
<prefix>_cost.csv;
`python -m lmc_core costs` collects them into docs/paper_costs.json and .md, and the README's profile table.
"""
from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path
from typing import Any

from ..capped import H100_BF16_FLOPS, H100_UTILISATION, Timer, peak_memory_bytes, project, training_flops
from ..machine import machine

BANNER = "CAPPED RUN — NOT A RESULT"


def size(value: Any) -> float | None:
    """How much work a parameter value stands for: a number itself, a list its length, a mapping of grids
    ([lo, hi, n] per optimizer) its points; None (a whole split) and booleans are unknown (None)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        parts = [size(v[-1]) if isinstance(v, (list, tuple)) and v else size(v) for v in value.values()]
        return None if any(x is None for x in parts) else float(sum(parts))
    if isinstance(value, (list, tuple)):
        return float(len(value))
    return None


def ratios(study, p) -> dict[str, float | None]:
    """Full size / capped size of every field the study caps (None where the full size is not a number)."""
    full = study.profiles[p.profile]
    out = {}
    for name in study.capped:
        a, b = size(getattr(full, name)), size(getattr(p, name))
        out[name] = a / b if a is not None and b else None
    return out


def projection(study, p, ledger: list[dict], seconds: float) -> dict:
    """The full run's projected cost from capped run `p` of `study`: its training ledger, its wall `seconds`."""
    r = ratios(study, p)
    known = {k: v for k, v in r.items() if v is not None}
    scale = {fam: math.prod(known.get(k, 1.0) for k, f in study.capped_units.items() if f == fam)
             for fam in set(study.capped_units.values())}
    eval_scale = math.prod(known.get(k, 1.0) ** power for k, power in study.capped_eval.items())
    from ..capped import EVALUATION

    train_real, eval_real = sum(e["seconds"] for e in ledger), sum(EVALUATION)
    scaled = [{**e, "copy_steps": e["copy_steps"] * scale.get(e["model"], 1.0)} for e in ledger]
    out = project(scaled, eval_real, eval_scale, max(seconds - train_real - eval_real, 0.0))
    import torch

    out.update(notebook=study.notebook, profile=p.profile, cap_steps=p.cap_steps, capped_seconds=seconds,
               capped_train_seconds=train_real, capped_eval_seconds=eval_real, unit_scale=scale, eval_scale=eval_scale,
               unknown_sizes=sorted(f"{k} (the full run evaluates the whole split)" for k, v in r.items()
                                    if v is None and k in study.capped_eval),
               eval_fields=dict(study.capped_eval),
               ratios=known,
               peak_memory_gb=peak_memory_bytes() / 2**30, device=device_words(),
               torch=torch.__version__, date=datetime.date.today().isoformat())
    return out


def time_updates(name: str, model, x, copy_steps: int, updates: int, layers: int = 0, width: int = 0) -> dict:
    """A ledger entry (lmc_core.capped) for a training loop of one's own: `updates` AdamW updates of `model` on
    input `x` [B] or [B, T] (a classifier's targets drawn at random, an LM's the input itself) timed here, and
    the `copy_steps` the full run makes."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with Timer() as t:
        for _ in range(updates):
            out = model(x)
            logits = getattr(out, "logits", out)
            y = x if x.dtype == torch.long else torch.randint(0, logits.shape[-1], logits.shape[:-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    n = sum(p.numel() for p in model.parameters())
    tokens = x.numel() if x.dtype == torch.long else x.shape[0]
    context = x.shape[-1] if x.dtype == torch.long else 0
    return {"model": name, "params": int(n), "copies": 1, "copy_steps": copy_steps, "copy_steps_done": updates,
            "seconds": t.seconds, "tokens_per_copy_step": int(tokens),
            "flops_per_copy_step": training_flops(n, tokens, layers, context, width)}


def own_loops(study, p, ledger: list[dict]) -> dict:
    """The projection of a notebook that trains with its own loops (`ledger`: time_updates entries); the rest of
    the capped run is not timed there, so the projection is training only (stated)."""
    out = project(ledger, 0.0, 1.0)
    import torch

    out.update(notebook=study.notebook, profile=p.profile, cap_steps=p.cap_steps, capped_seconds=float("nan"),
               capped_train_seconds=sum(e["seconds"] for e in ledger), unit_scale={}, eval_scale=1.0,
               unknown_sizes=["evaluation and alignment (not timed: the notebook's own cells)"], ratios={},
               peak_memory_gb=peak_memory_bytes() / 2**30, device=device_words(), torch=torch.__version__,
               date=datetime.date.today().isoformat())
    return out


def check_capped_folder(cap: int | None, figures_dir) -> None:
    """A capped run writes only to a folder named as one (<...>-capped, or any name holding 'capped'), never over
    a result: ConfigError naming figures_dir otherwise (before anything runs)."""
    if cap is not None and figures_dir is not None and "capped" not in Path(str(figures_dir)).name:
        from ..domains import ConfigError

        raise ConfigError(f"figures_dir={Path(str(figures_dir)).name!r}: a capped run (cap_steps={cap}) is not a "
                          "result and may not write where results go; leave figures_dir unset (figures/<profile>-"
                          "capped) or name a folder ending in -capped")


def fresh_store(prefix: str) -> Path:
    """The run store of a capped run of notebook `prefix` (store_dir not given): runs/capped/<prefix>, emptied
    first, so that every run is trained, and timed, by this run (capped runs are never results, and cheap)."""
    import shutil

    from .paths import resolve

    d = resolve(None, Path("runs") / "capped" / prefix)
    if d.exists():
        shutil.rmtree(d)
    return d


def device_words() -> str:
    """The machine a capped run measured: its GPU if one is used, else its CPU and the threads torch used."""
    m = machine()
    return m["gpu"] if m.get("gpu") else f"{m['cpu']}, {m['threads']} torch thread(s)"


def hours(seconds: float) -> str:
    """A duration in words: seconds under a minute, minutes under an hour, hours under two days, else days."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def scaled_by(cost: dict) -> str:
    """The fields whose full/capped ratios scale the projected evaluation, in words."""
    parts = [f"{k}{'' if p == 1 else f' ^ {p:g}'}" for k, p in cost.get("eval_fields", {}).items()
             if k in cost["ratios"]]
    return "the ratio of " + " x ".join(parts) if parts else "nothing (evaluation sizes not capped)"


def cost_lines(cost: dict) -> list[str]:
    """The projection in Markdown lines (the summary of a capped run, and docs/paper_costs.md)."""
    lines = [f"**Projected full `{cost['profile']}` run** (from this capped run on {cost['device']}, torch "
             f"{cost['torch']}, {cost['date']}): training {cost['copy_steps']:,.0f} copy-steps, "
             f"{cost['flops']:.3g} FLOPs; **{hours(cost['cpu_seconds'])} on this machine** (training "
             f"{hours(cost['train_seconds'])}; evaluation and the rest {hours(cost['other_seconds'])}: evaluation "
             f"measured at the capped sizes and scaled {cost['eval_scale']:.3g}x by {scaled_by(cost)}, the rest as "
             f"measured); **{hours(cost['h100_seconds'])} on "
             f"{cost['h100_assumption']}**; this capped run's peak memory {cost['peak_memory_gb']:.1f} GB.", ""]
    if cost["unknown_sizes"]:
        lines += [f"Not in the projection: {'; '.join(cost['unknown_sizes'])}; it is a lower bound there.", ""]
    lines += ["| model | parameters / copy | copies | copy-steps (full run) | copy-steps/s here | "
              "training here |", "|---|---:|---:|---:|---:|---:|"]
    for r in cost["runs"]:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['copies']} | {r['copy_steps']:,.0f} | "
                     f"{r['copy_steps_per_s']:.3g} | {hours(r['train_seconds'])} |")
    return lines


def mark_capped(res, summary, prefix: str, cap: int, cost: dict) -> None:
    """Mark a capped run everywhere it shows: the summary's setting and first line, its JSON (`capped`), every
    figure (a watermark and a title prefix), and a <prefix>_cost table of the projection."""
    import pandas as pd

    note = (f"{BANNER}: every training run stopped after {cap} update(s) per call and jumped to its end; the numbers "
            "below come from barely trained models and say nothing about the study's question.")
    summary.setting = f"{BANNER} (cap_steps={cap}). {summary.setting}"
    summary.body[:0] = [note, ""]
    summary.body += ["", *cost_lines(cost)]
    summary.numbers["capped"] = {"cap_steps": cap, "projection": json.loads(json.dumps(cost, default=float))}
    for fig in res.figures.values():
        fig.text(0.5, 0.5, BANNER, ha="center", va="center", rotation=25, fontsize=28, color="red", alpha=0.25,
                 transform=fig.transFigure, zorder=1000)
        st = getattr(fig, "_suptitle", None)
        top = 1.0 if st is None else max(1.0, st.get_position()[1] + 0.02 * (st.get_text().count("\n") + 2))
        fig.text(0.5, top, f"[{BANNER}]", ha="center", va="bottom", color="red", fontsize=13, weight="bold")
    res.add_csv(f"{prefix}_cost", pd.DataFrame(cost["runs"]))


# ------------------------------------------------------------------------------------- the committed projections
COSTS_JSON = "docs/paper_costs.json"
_PROFILES = re.compile(r"(<!-- profiles -->\n)(.*?)(<!-- /profiles -->)", re.S)
COLUMN = "`paper`: projected cost"


def collect(figures_dir: Path) -> dict[str, dict]:
    """{notebook prefix: the projection of its capped run of the paper profile} from the summaries in `figures_dir`."""
    out = {}
    for f in sorted(Path(figures_dir).glob("[0-9][0-9]_summary.json")):
        capped = json.loads(f.read_text(encoding="utf-8")).get("capped")
        if isinstance(capped, dict) and capped.get("projection", {}).get("profile") == "paper":
            out[f.name[:2]] = capped["projection"]
    return out


def cost_cell(c: dict) -> str:
    """One notebook's projection in a table cell."""
    return (f"{hours(c['cpu_seconds'])} on this CPU (1 thread), {hours(c['h100_seconds'])} on one H100 at "
            f"{H100_UTILISATION:.0%} MFU; {c['flops']:.2g} training FLOPs; capped run (cap {c.get('cap_steps', '?')}"
            f") peak memory {c['peak_memory_gb']:.1f} GB")


def render_profiles(readme: str, costs: dict[str, dict]) -> str:
    """The README with the profile table's last column set from `costs` (rows keyed by their first cell, NN)."""
    def repl(m: re.Match) -> str:
        rows = m.group(2).rstrip("\n").split("\n")
        out = []
        for i, row in enumerate(rows):
            if not row.startswith("|"):
                out.append(row)
                continue
            if i == 1:  # the separator
                out.append("|---|---|---|---|")
                continue
            cells = row.strip().strip("|").split(" | ")
            cells = [c.strip() for c in cells]
            head = cells[:3]
            if i == 0:
                seen = sorted({f"{c['device']}, torch {c['torch']}, {c['date']}" for c in costs.values()})
                extra = f"{COLUMN} (measured by capped runs: {'; '.join(seen) or 'not yet'})"
            else:
                c = costs.get(cells[0])
                extra = cost_cell(c) if c else "not measured yet"
            out.append("| " + " | ".join([*head, extra]) + " |")
        return m.group(1) + "\n".join(out) + "\n" + m.group(3)

    return _PROFILES.sub(repl, readme)


def write_costs(root: Path, figures_dir: Path) -> list[str]:
    """Merge the projections of the capped runs in `figures_dir` into docs/paper_costs.json (notebooks not run keep
    theirs) and the README's profile table; returns the prefixes updated."""
    path = Path(root) / COSTS_JSON
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    new = collect(figures_dir)
    merged = {**old, **new}
    path.write_text(json.dumps(merged, indent=1, sort_keys=True, default=float) + "\n", encoding="utf-8")
    lines = ["# What a `paper` run costs, projected from capped runs", "",
             "Written by `python -m lmc_core costs` from the capped runs' summaries (`python -m lmc_core figures "
             "--profile paper --cap-steps 2`); every number was measured by that run on the machine named. Training: "
             "each training call's measured seconds per copy-step at the paper sizes times the copy-steps of the full "
             "call (scaled by the ratio of units where a capped run trains fewer); evaluation and analysis: measured "
             "at the capped sizes and scaled by the ratio of the main evaluation's sizes (an estimate). One H100: "
             "training FLOPs at the stated utilisation of its bf16 peak, not a measurement.", ""]
    for k in sorted(merged):
        lines += [f"## {merged[k]['notebook']}", "", *cost_lines(merged[k]), ""]
    path.with_suffix(".md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    readme = Path(root) / "README.md"
    text = readme.read_text(encoding="utf-8")
    updated = render_profiles(text, merged)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return sorted(new)


def projection_lines(root: Path, notebooks: list[str] | None = None) -> list[str]:
    """What `make figures PROFILE=paper` prints before it starts: each notebook's projected cost (committed in
    docs/paper_costs.json by capped runs), or how to measure it."""
    path = Path(root) / COSTS_JSON
    costs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    keys = sorted(costs) if not notebooks else sorted({n[:2] for n in notebooks})
    lines = ["Projected cost of the paper profile (measured by capped runs; python -m lmc_core figures --profile paper "
             "--cap-steps 2 measures it again on this machine):"]
    for k in keys:
        c = costs.get(k)
        lines.append(f"  {k}: " + (f"{cost_cell(c)} (measured {c['date']} on {c['device']})" if c else
                                   "not measured yet"))
    return lines
