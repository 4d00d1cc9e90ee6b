"""Capped runs: a profile executed end to end at its real sizes with training cut short, to show that it runs and
to measure what the full run would cost.

Under a cap of C steps (``LMC_CAP_STEPS=C``, set for the duration of a study run by :func:`capping`), every training
run makes at most C real updates per call of the training loop and then *jumps*: its step counters move to where
the run would end (passing through every kept checkpoint and spawn step, which are saved with the weights as they
are), so spawning, kept checkpoints, resuming and every code path after training run as in the full profile, on
weights that are barely trained. Nothing else about the run changes: model sizes, data pipeline, schedule lengths.

A capped run is never a result: the cap enters every run's identity (``config.config_hash``), so a capped run never
answers for a real one in any run store, and the studies write capped runs to their own folders, marked.

While capped, the training loop records each call in :data:`LEDGER` (the model's size, its copies, the copy-steps
the full run would make and the ones made, and their wall time); :func:`project` turns the ledger into the full
run's projected cost.
"""
from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from typing import Iterator

ENV = "LMC_CAP_STEPS"
LEDGER: list[dict] = []  # one entry per training-loop call while capped (this process)
EVALUATION: list[float] = []  # seconds of each Family.evaluate call while capped (this process)

# The projection's stated assumptions: the dense bf16 peak of one H100 SXM (NVIDIA's data sheet, without sparsity),
# and the share of it that small models reach (the GPU target of docs/benchmarks.md: MFU >= 10 %)
H100_BF16_FLOPS = 989e12
H100_UTILISATION = 0.10


def cap_steps() -> int | None:
    """The active cap (updates per training-loop call), or None when runs are not capped.

    Raises ValueError naming LMC_CAP_STEPS when it is set to anything but a positive integer."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV}={raw!r} must be a positive integer (updates per training run), or unset")
    return n


@contextlib.contextmanager
def capping(steps: int | None) -> Iterator[list[dict]]:
    """Cap every training run in this process (and the worker processes it starts) at `steps` updates per call,
    with a fresh LEDGER (it keeps this block's entries afterwards); None leaves runs uncapped. Restores the previous
    setting on exit; yields the ledger."""
    before = os.environ.get(ENV)
    LEDGER.clear()
    EVALUATION.clear()
    if steps is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = str(int(steps))
    try:
        yield LEDGER
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def training_flops(params: int, tokens: int, layers: int = 0, context: int = 0, width: int = 0) -> float:
    """FLOPs of training on `tokens` tokens (or examples) with a model of `params` parameters: 6 N per token plus,
    for a transformer, attention's 6 n_layer n_ctx d_model per token (Kaplan et al. 2020, Table 1: the forward pass
    costs 2 N + 2 n_layer n_ctx d_attn per token; the backward twice that)."""
    return 6.0 * tokens * (params + layers * context * width)


def peak_memory_bytes() -> int:
    """This process's peak resident memory so far (bytes; Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class Timer:
    """Wall time of a block: `with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> "Timer":
        self.start, self.seconds = time.perf_counter(), 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def project(ledger: list[dict], other_seconds: float, other_scale: float, fixed_seconds: float = 0.0) -> dict:
    """The full run's cost from a capped run: its training-loop calls (`ledger`, entries as the loop records
    them), its evaluation (`other_seconds` at the capped sizes, scaled by `other_scale`, the ratio of the full run's
    evaluation work to the capped run's) and the rest (`fixed_seconds`: data, alignment, statistics, files; not
    scaled).

    Returns {"runs": one row per model size, "copy_steps", "flops", "train_seconds", "other_seconds",
    "cpu_seconds", "h100_seconds"} with the projected training time on this machine (each call's measured seconds
    per copy-step times the copy-steps the full call would make) and on one H100 at H100_UTILISATION of its bf16
    peak (training FLOPs only; evaluation scaled from this machine by the same FLOP-rate ratio)."""
    rows: dict[tuple, dict] = {}
    for e in ledger:
        key = (e["model"], e["params"])
        r = rows.setdefault(key, {"model": e["model"], "params": e["params"], "calls": 0, "copies": 0,
                                  "copy_steps": 0, "copy_steps_done": 0, "seconds_done": 0.0, "flops": 0.0,
                                  "train_seconds": 0.0})
        r["calls"] += 1
        r["copies"] += e["copies"]
        r["copy_steps"] += e["copy_steps"]
        r["copy_steps_done"] += e["copy_steps_done"]
        r["seconds_done"] += e["seconds"]
        r["flops"] += e["flops_per_copy_step"] * e["copy_steps"]
        if e["copy_steps_done"]:
            r["train_seconds"] += e["seconds"] / e["copy_steps_done"] * e["copy_steps"]
    runs = list(rows.values())
    for r in runs:
        r["copy_steps_per_s"] = r["copy_steps_done"] / r["seconds_done"] if r["seconds_done"] > 0 else float("nan")
    train_s = sum(r["train_seconds"] for r in runs)
    flops = sum(r["flops"] for r in runs)
    other_s = other_seconds * other_scale + fixed_seconds
    gpu_rate = H100_BF16_FLOPS * H100_UTILISATION
    measured_rate = flops / train_s if train_s > 0 else 0.0  # this machine's training FLOP/s
    other_gpu = other_s * measured_rate / gpu_rate if measured_rate > 0 else float("nan")
    return {"runs": runs, "copy_steps": sum(r["copy_steps"] for r in runs), "flops": flops,
            "train_seconds": train_s, "other_seconds": other_s, "cpu_seconds": train_s + other_s,
            "h100_seconds": flops / gpu_rate + (other_gpu if other_s > 0 else 0.0),
            "h100_assumption": f"one H100 at {H100_UTILISATION:.0%} of its {H100_BF16_FLOPS / 1e12:.0f} TFLOP/s "
                               "bf16 peak"}
